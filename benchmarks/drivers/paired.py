"""builtin against wrk in back-to-back pairs: the ratio of their CPU per request and of their rates.

Run against each server of the benchmark (nginx and uvicorn): the CPU ratio differs by server and by
machine (measured: 0.93 against nginx on an AMD EPYC VM; 1.10 against nginx and 1.30 against uvicorn on
an Intel Xeon), so ``summary`` names both. On a shared VM the machine drifts by ±10 % over minutes
(other tenants, frequency), more than the difference being judged. Runs a few seconds apart see the
same machine, so each pair gives one ratio, and the drift cancels out of it. Order alternates within
pairs. The estimate is the median of the ratios with a distribution-free 95 % confidence interval
(``ratio``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from iolab.analysis import stats
from iolab.measure.drivers import get_driver
from iolab.measure.drivers.base import LoadSpec


@dataclass(frozen=True)
class Ratio:
    estimate: float  # median of builtin ÷ wrk over the pairs
    low: float  # a ≥ 95 % confidence interval for that median (nan with too few pairs)
    high: float
    each: tuple[float, ...]

    def text(self) -> str:
        ci = f"95 % CI {self.low:.3f}–{self.high:.3f}" if not math.isnan(self.low) else "too few pairs for a CI"
        return f"{self.estimate:.3f} ({ci}; pairs {', '.join(f'{r:.2f}' for r in self.each)})"


def ratio(values: list[float]) -> Ratio:
    """The median ratio and its distribution-free interval: the order statistics X(k) and X(n+1-k) with the
    largest k for which P(Binomial(n, 1/2) < k) <= 2.5 % (Hollander & Wolfe, Nonparametric Statistical
    Methods, 3.6). A median, not a mean: one pair caught by a VM stall (a p99 five times the other's) is
    one vote, not a pull. Needs 6 pairs for an interval at all."""
    xs = sorted(values)
    n = len(xs)
    k, below = 0, 0.0
    while k < n:
        below += math.comb(n, k) / 2**n  # P(Binomial(n, 1/2) <= k)
        if below > 0.025:
            break
        k += 1
    if k == 0:
        return Ratio(stats.median(xs), math.nan, math.nan, tuple(values))
    return Ratio(stats.median(xs), xs[k - 1], xs[n - k], tuple(values))


def summary(target: str, machine: str, cpu: Ratio, rps: Ratio) -> str:
    """One line for the report: builtin ÷ wrk against ``target`` on ``machine``, each ratio with its CI."""
    return (f"builtin ÷ wrk against {target} on {machine}, {len(cpu.each)} pairs: CPU per request "
            f"{cpu.text()}; req/s {rps.text()}")


def compare(url: str, cpu: int, pairs: int, duration: float, concurrency: int) -> tuple[Ratio, Ratio]:
    """(CPU per request ratio, requests per second ratio), builtin ÷ wrk."""
    spec = LoadSpec(url=url, duration_s=duration, concurrency=concurrency, keepalive=True, cpus=(cpu,),
                    timeout_s=10)
    cpu_ratios: list[float] = []
    rps_ratios: list[float] = []
    for i in range(pairs):
        found = {}
        for driver in ("builtin", "wrk") if i % 2 == 0 else ("wrk", "builtin"):
            r = get_driver(driver).run(spec)
            found[driver] = (r.cpu_s / max(1, r.completed), r.rps)
        cpu_ratios.append(found["builtin"][0] / found["wrk"][0])
        rps_ratios.append(found["builtin"][1] / found["wrk"][1])
        print(f"  pair {i + 1}: CPU/req builtin ÷ wrk {cpu_ratios[-1]:.3f}, req/s {rps_ratios[-1]:.3f}", flush=True)
    return ratio(cpu_ratios), ratio(rps_ratios)
