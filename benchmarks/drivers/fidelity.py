"""The driver benchmark's fidelity checks: does the builtin driver measure what wrk measures?

1. At a fixed rate, the builtin open loop against wrk paced to the same rate (``pacing.pace_lua``), both
   measured from each actual send, in back-to-back pairs of short runs, order alternating. Latencies of
   0.1–0.4 ms on a shared VM move by ±10–40 % from one run to the next (idle cores waking up), more than
   the 10 % being judged; a pair sees the same machine, so each pair gives one ratio, and the estimate
   is their median with a 95 % interval (``paired.ratio``).
2. How each one actually spaced its sends: every ``write`` the driver made, timestamped by the kernel
   (``perf record -e syscalls:sys_enter_write``; skipped when perf is missing). Agreement within 10 %
   only means something where both apply the same load, and wrk cannot pace below its event loop's 1 ms
   tick: it sends each tick's requests back to back (measured: 4–13 % of its sends at 1,000 req/s, 80 %
   at 7,800). The target is judged where both bunched at most 5 % of their sends; elsewhere the figures
   are shown, not judged.
3. At concurrency 1 (nothing queues, nothing is paced): builtin and wrk in pairs, and ab, which cannot
   pace, once, for its resolution.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.drivers import pacing, paired
from iolab.measure.drivers import get_driver
from iolab.measure.drivers.base import LoadResult, LoadSpec
from iolab.measure.drivers.summary import latency_summary, uncorrected_summary
from iolab.measure.drivers.wrk import WrkDriver

TOLERANCE = 0.10  # the target: within 10 % of wrk's
BUNCHED_US = 20  # a send this soon after the previous one left in the same burst
SAME_LOAD_BUNCHED = 0.05  # both drivers apply the same load when at most this share of sends is bunched
ALL_DRIVERS = ("builtin", "wrk", "ab", "hey")


@dataclass
class Pair:
    rate: float
    builtin: tuple[float, float]  # median p50, p99 (ms), from each send
    builtin_corrected: tuple[float, float]  # … from each due time
    wrk: tuple[float, float]
    ratios: tuple[paired.Ratio, paired.Ratio]  # builtin ÷ wrk for p50 and p99, pair by pair
    wrk_runs: list[tuple[float, float]]


def _builtin_paced(url: str, rate: float, duration: float, cpu: int) -> LoadResult:
    return get_driver("builtin").run(LoadSpec(url=url, rate=rate, duration_s=duration, concurrency=50,
                                              keepalive=True, cpus=(cpu,)))


def _wrk_paced(url: str, rate: float, duration: float, cpu: int) -> LoadResult:
    return WrkDriver(extra_lua=pacing.pace_lua(rate, threads=1)).run(
        LoadSpec(url=url, duration_s=duration, concurrency=50, keepalive=True, cpus=(cpu,)))


def _median(runs: list[tuple[float, float]], i: int) -> float:
    return float(statistics.median(r[i] for r in runs))


def med(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return _median(runs, 0), _median(runs, 1)


def _ratios(mine: list[tuple[float, float]], theirs: list[tuple[float, float]]) -> tuple[paired.Ratio, paired.Ratio]:
    return (paired.ratio([m[0] / t[0] for m, t in zip(mine, theirs, strict=True)]),
            paired.ratio([m[1] / t[1] for m, t in zip(mine, theirs, strict=True)]))


def at_rate(url: str, rate: float, duration: float, cpu: int, pairs: int) -> Pair:
    b_runs: list[tuple[float, float]] = []
    c_runs: list[tuple[float, float]] = []
    w_runs: list[tuple[float, float]] = []
    for i in range(pairs):
        for who in ("builtin", "wrk") if i % 2 == 0 else ("wrk", "builtin"):
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
    return Pair(rate, med(b_runs), med(c_runs), med(w_runs), _ratios(b_runs, w_runs), w_runs)


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
            gaps = _record_gaps(perf, data, cpu, lambda run=run: run(url, rate, 3.0, cpu))  # type: ignore[misc]
            if gaps is None:
                return None
            n = len(gaps)

            def q(p: float, gaps: list[float] = gaps, n: int = n) -> float:
                return gaps[min(n - 1, int(p * n))]

            out[name] = (q(0.10), q(0.50), q(0.90), sum(1 for g in gaps if g < BUNCHED_US) / n)
    return out


def _record_gaps(perf: str, data: Path, cpu: int, run: Callable[[], LoadResult]) -> list[float] | None:
    # perf follows the driver's process from outside: system-wide syscall tracepoints, filtered afterwards
    # to the driver's writes of a request (fds above 2: not its progress lines or its result).
    rec = subprocess.Popen([perf, "record", "-q", "-a", "-e", "syscalls:sys_enter_write", "-o", str(data)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = run()
    finally:
        rec.terminate()
        rec.wait()
    # The driver is the only process pinned to its CPU that writes to sockets (a Python server runs under
    # the same command name, on the other CPU).
    script = subprocess.run([perf, "script", "-i", str(data), "-F", "comm,cpu,time,trace"], capture_output=True,
                            text=True, check=False)
    wanted = "wrk" if result.driver == "wrk" else "python"
    times: list[float] = []
    for line in script.stdout.splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[0].startswith(wanted) or parts[1] != f"[{cpu:03d}]" or "fd:" not in line:
            continue
        fd = int(line.split("fd:")[1].split(",")[0], 16)
        if fd > 2:
            times.append(float(parts[2].rstrip(":")))
    times = times[len(times) // 6:]  # past connection set-up
    if len(times) < 100:
        return None
    return sorted((b - a) * 1e6 for a, b in zip(times, times[1:], strict=False))


def at_concurrency_one(url: str, duration: float, cpu: int, pairs: int
                       ) -> tuple[dict[str, list[tuple[float, float]]], tuple[paired.Ratio, paired.Ratio]]:
    """builtin and wrk in alternating pairs; ab and hey once each (for the table and ab's resolution)."""
    spec = LoadSpec(url=url, duration_s=duration, concurrency=1, keepalive=True, cpus=(cpu,))
    found: dict[str, list[tuple[float, float]]] = {d: [] for d in ALL_DRIVERS}
    order = [("builtin", "wrk") if i % 2 == 0 else ("wrk", "builtin") for i in range(pairs)] + [("ab", "hey")]
    for drivers in order:
        for d in drivers:
            ms = latency_summary(get_driver(d).run(spec)).latency_ms
            found[d].append((ms.p50, ms.p99))
    return found, _ratios(found["builtin"], found["wrk"])


def _judge(target: str, what: str, r: paired.Ratio, verdict: Callable[[bool | None, str], None],
           judged: bool, why: str) -> str:
    low, high = 1 - TOLERANCE, 1 + TOLERANCE
    text = f"{target} {what}: builtin ÷ wrk {r.text()}"
    if not judged:
        text += f" — not the same load ({why}): shown, not judged"
        verdict(None, text)
        return text
    shown = ("the interval too lies within 10 %" if low <= r.low and r.high <= high
             else "the interval reaches past 10 %: more pairs would tell")
    text += f" — target within 10 %; {shown}" + (f" ({why})" if why else "")
    verdict(low <= r.estimate <= high, text)
    return text


def report(target: str, url: str, rates: list[float], duration: float, cpu: int, pairs: int,
           verdict: Callable[[bool | None, str], None]) -> list[str]:
    """Runs the checks against one server; prints tables and verdicts; returns the verdict lines."""
    lines: list[str] = []
    gaps = {rate: send_gaps(url, rate, cpu) for rate in rates}
    found = [at_rate(url, rate, duration, cpu, pairs) for rate in rates]
    print(f"\n### fidelity at fixed rates against {target}: 50 connections, {pairs} pairs of {duration:g} s\n")
    print("| req/s | builtin p50 / p99 ms (from send) | wrk p50 / p99 ms | p50 ÷ wrk (95 % CI) | p99 ÷ wrk (95 % CI) "
          "| builtin from due time |")
    print("|---:|---:|---:|---:|---:|---:|")
    for p in found:
        r50, r99 = p.ratios
        print(f"| {p.rate:,.0f} | {p.builtin[0]:.3f} / {p.builtin[1]:.3f} | {p.wrk[0]:.3f} / {p.wrk[1]:.3f} | "
              f"{r50.estimate:.2f} ({r50.low:.2f}–{r50.high:.2f}) | {r99.estimate:.2f} ({r99.low:.2f}–{r99.high:.2f}) | "
              f"{p.builtin_corrected[0]:.3f} / {p.builtin_corrected[1]:.3f} |")
    print("\nLatencies: medians over the runs; a ratio: the median of the pairs' ratios, with its 95 % interval.")
    if any(gaps.values()):
        print(f"\nHow the sends were spaced (kernel timestamps of every request write, 3 s each; "
              f"'bunched': sent < {BUNCHED_US} µs after the previous):\n")
        print("| req/s | ideal gap µs | driver | gap p10 µs | p50 | p90 | bunched |")
        print("|---:|---:|---|---:|---:|---:|---:|")
        for rate, spacing in gaps.items():
            for name, (g10, g50, g90, share) in (spacing or {}).items():
                print(f"| {rate:,.0f} | {1e6 / rate:.0f} | {name} | {g10:.0f} | {g50:.0f} | {g90:.0f} | "
                      f"{100 * share:.1f} % |")
    for p in found:
        spacing = gaps[p.rate]
        # The same load: neither driver sent more than SAME_LOAD_BUNCHED of its requests in bursts (measured;
        # where perf is missing, assumed at 500 req/s or less, where wrk's 1 ms ticks seldom bunch).
        if spacing:
            same_load = max(share for *_, share in spacing.values()) <= SAME_LOAD_BUNCHED
            why = (f"{100 * spacing['wrk'][3]:.1f} % of wrk's sends bunched, "
                   f"{100 * spacing['builtin'][3]:.1f} % of builtin's")
        else:
            same_load, why = p.rate <= 500, "send spacing not measured: no perf"
        for q, r in zip(("p50", "p99"), p.ratios, strict=True):
            lines.append(_judge(target, f"{p.rate:,.0f} req/s {q}", r, verdict, same_load, why))
    single, ratios = at_concurrency_one(url, duration, cpu, pairs)
    print(f"\n### fidelity at concurrency 1 against {target} (nothing queues): builtin and wrk in {pairs} pairs "
          f"of {duration:g} s, ab and hey once\n")
    print("| driver | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for d, runs in single.items():
        print(f"| {d} | {_median(runs, 0):.3f} | {_median(runs, 1):.3f} |")
    for q, r in zip(("p50", "p99"), ratios, strict=True):
        lines.append(_judge(target, f"c=1 {q}", r, verdict, True, ""))
    for i, q in enumerate(("p50", "p99")):
        mine, ab_v = _median(single["builtin"], i), _median(single["ab"], i)
        lines.append(f"{target} c=1 builtin {q} {mine:.3f} ms vs ab {ab_v:.3f} ms (target: within ab's 1 ms)")
        verdict(abs(mine - ab_v) <= 1.0, lines[-1])
    return lines
