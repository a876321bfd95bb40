"""Driver benchmark (a benchmark, not a test): iolab's builtin load driver side by side with wrk, ab and hey.

    .venv/bin/python benchmarks/bench_drivers.py            # ~13 minutes
    .venv/bin/python benchmarks/bench_drivers.py --quick    # ~4 minutes: one repetition of 3 s, 6 pairs of 3 s

Against nginx (installed with apt-get when missing and root; one worker pinned to the first CPU, a 6-byte
static file, keep-alive, no access log) and a uvicorn hello-world (uvloop + httptools, pinned to the
same CPU), each driver runs pinned to the second CPU, keep-alive, for --duration seconds in its duration
mode (ab: -t), one after the other in the same minute, the order rotated every repetition, --reps times.
Per driver: requests per second, p50 and p99, and the driver's CPU per request (user + sys from wait4,
start-up included, ÷ responses), each also as a ratio to wrk's. Medians over the repetitions. Then
builtin and wrk back to back in --pairs pairs against each server (benchmarks/drivers/paired.py): the
ratio of their CPU per request and of their rates, with a confidence interval that a shared machine's
drift over minutes does not move. The ratios differ by machine, so the output names the CPU
(/proc/cpuinfo) they were measured on.

Fidelity (benchmarks/drivers/fidelity.py), against each server: the builtin open loop and wrk paced to
the same rate with a Lua ``delay()`` (Debian's wrk has no -R; see benchmarks/drivers/pacing.py) at
500 req/s and at a tenth of wrk's closed-loop rate, in --fidelity-pairs back-to-back pairs of 2 s, with
how each spaced its sends (perf, when present: the 10 % target is judged where both apply the same load);
and at concurrency 1, where nothing queues, builtin and wrk in pairs and ab (which cannot pace) and hey.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.drivers import fidelity, paired, servers  # noqa: E402
from iolab.measure import facts  # noqa: E402
from iolab.measure.drivers import get_driver  # noqa: E402
from iolab.measure.drivers.base import LoadResult, LoadSpec  # noqa: E402
from iolab.measure.drivers.summary import latency_summary  # noqa: E402

DRIVERS = ("builtin", "wrk", "ab", "hey")
TARGETS = ("nginx", "uvicorn")


@dataclass
class Run:
    target: str
    driver: str
    rep: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_req: float  # wait4: the whole process
    cpu_load_us_per_req: float | None  # the load window alone, where the driver measures it
    completed: int
    failed: int


def one(driver: str, spec: LoadSpec, target: str, rep: int) -> Run:
    r = get_driver(driver).run(spec)
    return summarize(r, target, rep)


def summarize(r: LoadResult, target: str, rep: int, driver: str | None = None) -> Run:
    s = latency_summary(r)
    n = max(1, r.completed)
    load = (1e6 * r.cpu_load_s / n) if r.cpu_load_user_s is not None else None
    return Run(target, driver or r.driver, rep, round(r.rps, 1), s.latency_ms.p50, s.latency_ms.p99,
               round(1e6 * r.cpu_s / n, 2), round(load, 2) if load is not None else None, r.completed, r.failed)


def median(runs: list[Run], attr: str) -> float:
    return float(statistics.median(getattr(r, attr) for r in runs))


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "—"


def print_table(runs: list[Run], target: str) -> dict[str, dict[str, float]]:
    by = {d: [r for r in runs if r.target == target and r.driver == d] for d in DRIVERS}
    med = {d: {k: median(rs, k) for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")} for d, rs in by.items() if rs}
    wrk = med.get("wrk")
    print(f"\n### {target}: medians of {len(by['wrk'])} runs each\n")
    print("| driver | rps | p50 ms | p99 ms | CPU µs/req | rps ÷ wrk | p50 ÷ wrk | p99 ÷ wrk | CPU ÷ wrk | rps range |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for d, m in med.items():
        rs = [r.rps for r in by[d]]
        cells = [f"{m['rps']:,.0f}", f"{m['p50_ms']:.3f}", f"{m['p99_ms']:.3f}", f"{m['cpu_us_per_req']:.2f}"]
        cells += [ratio(m[k], wrk[k]) if wrk else "—" for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")]
        print(f"| {d} | " + " | ".join(cells) + f" | {min(rs):,.0f}–{max(rs):,.0f} |")
    loads = [r.cpu_load_us_per_req for r in by["builtin"] if r.cpu_load_us_per_req is not None]
    if loads:
        print(f"\nbuiltin CPU µs/req in its load window alone (no interpreter start-up): "
              f"{statistics.median(loads):.2f}")
    return med


def verdict(ok: bool | None, text: str) -> None:
    print(f"{'INFO' if ok is None else 'PASS' if ok else 'MISS'}  {text}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition of 3 s per driver")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per driver run [10]")
    parser.add_argument("--reps", type=int, default=3, help="repetitions, order rotated each time [3]")
    parser.add_argument("--concurrency", type=int, default=50, help="connections [50]")
    parser.add_argument("--rate", type=float, default=None, help="fidelity's higher rate [a tenth of wrk's]")
    parser.add_argument("--pairs", type=int, default=6,
                        help="builtin/wrk back-to-back pairs against each server [6; a CI needs 6]")
    parser.add_argument("--fidelity-pairs", type=int, default=8, help="fidelity: builtin/wrk pairs of 2 s [8]")
    parser.add_argument("--json", type=Path, default=None, help="also write every run here")
    args = parser.parse_args()
    if args.quick:  # still 6 pairs: fewer give no confidence interval for the CPU ratio
        args.duration, args.reps, args.pairs, args.fidelity_pairs = 3.0, 1, 6, 2
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("the benchmark needs two CPUs: one for the server, one for the driver")
    server_cpu, driver_cpu = cpus[0], cpus[1]

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # the servers' finally blocks stop them

    signal.signal(signal.SIGTERM, _terminate)
    runs: list[Run] = []
    fidelity_lines: list[str] = []
    pair_ratios: dict[str, tuple[paired.Ratio, paired.Ratio]] = {}
    started = time.time()
    machine = f"{facts.cpu_model()} ({os.cpu_count()} CPUs)"
    print(f"# driver benchmark on {machine}: server on CPU {server_cpu}, driver on CPU {driver_cpu}, "
          f"{args.duration:g} s per run, {args.reps} repetition(s), -c {args.concurrency}, keep-alive")
    with tempfile.TemporaryDirectory(prefix="iolab-bench-") as tmp:
        for target in TARGETS:
            start = servers.nginx if target == "nginx" else servers.uvicorn_hello
            with start(Path(tmp) / target, server_cpu) as url:
                spec = LoadSpec(url=url, duration_s=args.duration, concurrency=args.concurrency, keepalive=True,
                                cpus=(driver_cpu,), timeout_s=10)
                get_driver("builtin").run(LoadSpec(url=url, duration_s=1.0, concurrency=args.concurrency,
                                                   keepalive=True, cpus=(driver_cpu,)))  # warm-up
                for rep in range(args.reps):
                    order = DRIVERS[rep % len(DRIVERS):] + DRIVERS[: rep % len(DRIVERS)]
                    for driver in order:
                        run = one(driver, spec, target, rep + 1)
                        runs.append(run)
                        print(f"  {target} rep {rep + 1} {driver:>7}: {run.rps:>9,.0f} req/s  "
                              f"p50 {run.p50_ms:.3f} ms  p99 {run.p99_ms:.3f} ms  "
                              f"{run.cpu_us_per_req:.2f} µs CPU/req  ({run.failed} failed)", flush=True)
                if args.pairs:
                    print(f"\n### builtin and wrk back to back against {target}: {args.pairs} pairs of "
                          f"{min(5.0, args.duration):g} s\n", flush=True)
                    pair_ratios[target] = paired.compare(url, driver_cpu, args.pairs, min(5.0, args.duration),
                                                         args.concurrency)
                wrk_rps = median([r for r in runs if r.target == target and r.driver == "wrk"], "rps")
                rates = sorted({500.0, args.rate or max(1000.0, round(wrk_rps / 10, -2))})
                fidelity_lines += fidelity.report(target, url, rates, 2.0, driver_cpu, args.fidelity_pairs,
                                                  verdict)
    medians = {t: print_table(runs, t) for t in TARGETS}
    print()
    # Side by side, medians of --reps runs minutes apart: no interval, so information only; the pairs
    # below carry the verdicts.
    for target in TARGETS:
        m = medians[target]
        if "builtin" in m and "wrk" in m:
            b, w = m["builtin"], m["wrk"]
            verdict(None, f"{target}, side by side: builtin CPU {b['cpu_us_per_req']:.2f} µs/req vs wrk "
                          f"{w['cpu_us_per_req']:.2f} (÷ {ratio(b['cpu_us_per_req'], w['cpu_us_per_req'])}), "
                          f"{b['rps']:,.0f} req/s vs {w['rps']:,.0f} (÷ {ratio(b['rps'], w['rps'])})")
    for target, (cpu_ratio, rps_ratio) in pair_ratios.items():
        # PASS only when the whole interval is at or below 1: an estimate under 1 with an interval across it
        # is no evidence that the builtin costs no more than wrk on this machine.
        below = not math.isnan(cpu_ratio.high) and cpu_ratio.high <= 1.0
        verdict(below, f"{target}, paired, on {machine}: builtin ÷ wrk CPU per request {cpu_ratio.text()} "
                       "(target: ≤ 1, the whole 95 % CI)")
        verdict(rps_ratio.estimate >= 0.95, f"{target}, paired, on {machine}: builtin ÷ wrk req/s "
                                            f"{rps_ratio.text()} (target: ≥ 0.95)")
    if pair_ratios:
        print("\n### CPU per request, builtin ÷ wrk, in pairs\n")
        for target, (cpu_ratio, rps_ratio) in pair_ratios.items():
            print(paired.summary(target, machine, cpu_ratio, rps_ratio))
    print(f"\ntook {time.time() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "machine": facts.machine(), "runs": [asdict(r) for r in runs], "medians": medians,
            "paired": {t: {"cpu_per_request": asdict(c), "rps": asdict(r)} for t, (c, r) in pair_ratios.items()},
            "fidelity": fidelity_lines}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    servers.exit_with(main)
