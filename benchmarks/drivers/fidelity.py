"""The driver benchmark's fidelity checks: does the builtin driver measure what wrk measures?

1. At a fixed rate, the builtin open loop against wrk paced to the same rate (``pacing.pace_lua``), both
   measured from each actual send, ``reps`` runs each in alternating order, medians compared.
2. How each one actually spaces its sends at that rate: every ``write`` the driver makes, timestamped by
   the kernel (``perf record -e syscalls:sys_enter_write``; skipped when perf is missing). A 10 %
   agreement only means something where both apply the same load, and wrk cannot pace below its event
   loop's 1 ms tick: above ~1 request per millisecond it sends each tick's requests back to back.
3. Every driver at concurrency 1 (nothing queues, nothing is paced), for ab's sake: ab cannot pace.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.drivers import pacing
from iolab.drivers import get_driver
from iolab.drivers.base import LoadResult, LoadSpec
from iolab.drivers.summary import latency_summary, uncorrected_summary
from iolab.drivers.wrk import WrkDriver

TOLERANCE = 0.10  # the target: within 10 % of wrk's
BUNCHED_US = 20  # a send this soon after the previous one left in the same burst
ALL_DRIVERS = ("builtin", "wrk", "ab", "hey")


@dataclass
class Pair:
    rate: float
    builtin: tuple[float, float]  # median p50, p99 (ms), from each send
    builtin_corrected: tuple[float, float]  # … from each due time
    wrk: tuple[float, float]
    builtin_runs: list[tuple[float, float]]
    wrk_runs: list[tuple[float, float]]


def _builtin_paced(url: str, rate: float, duration: float, cpu: int) -> LoadResult:
    return get_driver("builtin").run(LoadSpec(url=url, rate=rate, duration_s=duration, concurrency=50,
                                              keepalive=True, cpus=(cpu,)))


def _wrk_paced(url: str, rate: float, duration: float, cpu: int) -> LoadResult:
    return WrkDriver(extra_lua=pacing.pace_lua(rate, threads=1)).run(
        LoadSpec(url=url, duration_s=duration, concurrency=50, keepalive=True, cpus=(cpu,)))


def at_rate(url: str, rate: float, duration: float, cpu: int, reps: int) -> Pair:
    b_runs: list[tuple[float, float]] = []
    c_runs: list[tuple[float, float]] = []
    w_runs: list[tuple[float, float]] = []
    for rep in range(reps):
        for who in ("builtin", "wrk") if rep % 2 == 0 else ("wrk", "builtin"):
            if who == "builtin":
                r = _builtin_paced(url, rate, duration, cpu)
                u = uncorrected_summary(r)
                assert u is not None
                b_runs.append((u.latency_ms.p50, u.latency_ms.p99))
                c = latency_summary(r).latency_ms
                c_runs.append((c.p50, c.p99))
            else:
                w = latency_summary(_wrk_paced(url, rate, duration, cpu)).latency_ms
                w_runs.append((w.p50, w.p99))

    def med(runs: list[tuple[float, float]]) -> tuple[float, float]:
        return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)

    return Pair(rate, med(b_runs), med(c_runs), med(w_runs), b_runs, w_runs)


def send_gaps(url: str, rate: float, cpu: int) -> dict[str, tuple[float, float, float, float]] | None:
    """Per driver: gap p10, p50, p90 (µs) between consecutive request writes, and the share sent within
    BUNCHED_US of the previous one; None when perf cannot record syscalls here."""
    perf = shutil.which("perf")
    if perf is None:
        return None
    out: dict[str, tuple[float, float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="iolab-gaps-") as tmp:
        for name, run in (("builtin", _builtin_paced), ("wrk", _wrk_paced)):
            data = Path(tmp) / f"{name}.data"
            gaps = _record_gaps(perf, data, lambda run=run: run(url, rate, 3.0, cpu))  # type: ignore[misc]
            if gaps is None:
                return None
            n = len(gaps)

            def q(p: float, gaps: list[float] = gaps, n: int = n) -> float:
                return gaps[min(n - 1, int(p * n))]

            out[name] = (q(0.10), q(0.50), q(0.90), sum(1 for g in gaps if g < BUNCHED_US) / n)
    return out


def _record_gaps(perf: str, data: Path, run: Callable[[], LoadResult]) -> list[float] | None:
    # perf follows the driver's process from outside: system-wide syscall tracepoints, filtered afterwards
    # to the driver's writes of a request (fds above 2: not its progress lines or its result).
    rec = subprocess.Popen([perf, "record", "-q", "-a", "-e", "syscalls:sys_enter_write", "-o", str(data)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = run()
    finally:
        rec.terminate()
        rec.wait()
    comms = {"wrk"} if result.driver == "wrk" else {"python", "python3", "python3.11", "python3.12", "python3.13"}
    script = subprocess.run([perf, "script", "-i", str(data), "-F", "comm,time,trace"], capture_output=True,
                            text=True, check=False)
    times: list[float] = []
    for line in script.stdout.splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0] not in comms or "fd:" not in line:
            continue
        fd = int(line.split("fd:")[1].split(",")[0], 16)
        if fd > 2:
            times.append(float(parts[1].rstrip(":")))
    times = times[len(times) // 6:]  # past connection set-up
    if len(times) < 100:
        return None
    return sorted((b - a) * 1e6 for a, b in zip(times, times[1:], strict=False))


def at_concurrency_one(url: str, duration: float, cpu: int) -> dict[str, tuple[float, float]]:
    spec = LoadSpec(url=url, duration_s=duration, concurrency=1, keepalive=True, cpus=(cpu,))
    found = {}
    for d in ALL_DRIVERS:
        ms = latency_summary(get_driver(d).run(spec)).latency_ms
        found[d] = (ms.p50, ms.p99)
    return found


def report(target: str, url: str, rates: list[float], duration: float, cpu: int, reps: int,
           verdict: Callable[[bool | None, str], None]) -> list[str]:
    """Runs the checks against one server; prints tables and verdicts; returns the verdict lines."""
    lines: list[str] = []
    pairs = [at_rate(url, rate, duration, cpu, reps) for rate in rates]
    print(f"\n### fidelity at fixed rates against {target}: 50 connections, {duration:g} s, medians of {reps}\n")
    print("| req/s | builtin p50 / p99 ms (from send) | wrk p50 / p99 ms | p50 ÷ wrk | p99 ÷ wrk | "
          "builtin from due time |")
    print("|---:|---:|---:|---:|---:|---:|")
    for p in pairs:
        print(f"| {p.rate:,.0f} | {p.builtin[0]:.3f} / {p.builtin[1]:.3f} | {p.wrk[0]:.3f} / {p.wrk[1]:.3f} | "
              f"{p.builtin[0] / p.wrk[0]:.2f} | {p.builtin[1] / p.wrk[1]:.2f} | "
              f"{p.builtin_corrected[0]:.3f} / {p.builtin_corrected[1]:.3f} |")
    gaps = send_gaps(url, max(rates), cpu)
    if gaps:
        print(f"\nHow the sends were spaced at {max(rates):,.0f} req/s (ideal gap {1e6 / max(rates):.0f} µs; "
              "kernel write timestamps, 3 s each):\n")
        print(f"| driver | gap p10 µs | p50 | p90 | sent < {BUNCHED_US} µs after the previous |")
        print("|---|---:|---:|---:|---:|")
        for name, (g10, g50, g90, share) in gaps.items():
            print(f"| {name} | {g10:.0f} | {g50:.0f} | {g90:.0f} | {100 * share:.0f} % |")
    for p in pairs:
        same_load = p.rate <= 1000  # at most one request per millisecond tick: wrk's ticks do not bunch
        bunched = gaps["wrk"][3] if gaps and p.rate == max(rates) else None
        for i, q in enumerate(("p50", "p99")):
            off = p.builtin[i] / p.wrk[i] - 1
            text = (f"{target} {p.rate:,.0f} req/s: builtin {q} {p.builtin[i]:.3f} ms vs wrk {p.wrk[i]:.3f} ms: "
                    f"{100 * off:+.1f} %")
            if same_load:
                lines.append(text + " (same load: target within 10 %)")
                verdict(abs(off) <= TOLERANCE, lines[-1])
            else:
                why = f"; {100 * bunched:.0f} % of wrk's sends left in bursts" if bunched is not None else ""
                lines.append(text + f" (not the same load: wrk sends each millisecond's requests together{why})")
                verdict(None, lines[-1])
    single = at_concurrency_one(url, max(2.0, duration / 2), cpu)
    print(f"\n### fidelity at concurrency 1 against {target} (nothing queues), {max(2.0, duration / 2):g} s each\n")
    print("| driver | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for d, (p50, p99) in single.items():
        print(f"| {d} | {p50:.3f} | {p99:.3f} |")
    for i, q in enumerate(("p50", "p99")):
        mine, wrk_v, ab_v = single["builtin"][i], single["wrk"][i], single["ab"][i]
        lines.append(f"{target} c=1 builtin {q} {mine:.3f} ms vs wrk {wrk_v:.3f} ms: {100 * (mine / wrk_v - 1):+.1f} % "
                     "(target: within 10 %)")
        verdict(abs(mine / wrk_v - 1) <= TOLERANCE, lines[-1])
        lines.append(f"{target} c=1 builtin {q} {mine:.3f} ms vs ab {ab_v:.3f} ms (target: within ab's 1 ms)")
        verdict(abs(mine - ab_v) <= 1.0, lines[-1])
    return lines

