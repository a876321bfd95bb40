"""Driver benchmark (a benchmark, not a test): iolab's builtin load driver side by side with wrk, ab and hey.

    .venv/bin/python benchmarks/bench_drivers.py            # ~6 minutes
    .venv/bin/python benchmarks/bench_drivers.py --quick    # ~1 minute, one repetition of 3 s

Against nginx (installed with apt-get when missing and root; one worker pinned to the first CPU, a 6-byte
static file, keep-alive, no access log) and a uvicorn hello-world (uvloop + httptools, pinned to the
same CPU), each driver runs pinned to the second CPU, keep-alive, for --duration seconds in its duration
mode (ab: -t), one after the other in the same minute, the order rotated every repetition, --reps times.
Per driver: requests per second, p50 and p99, and the driver's CPU per request (user + sys from wait4,
start-up included, ÷ responses), each also as a ratio to wrk's. Medians over the repetitions.

Fidelity: at a fixed rate that nginx and every driver sustain (a tenth of wrk's rate there), the builtin driver's open loop
against wrk paced to the same schedule with a Lua ``delay()`` (Debian's wrk has no -R; see
benchmarks/drivers/pacing.py); and every driver at concurrency 1, where no request ever queues, for ab's
sake (ab cannot pace).
"""

from __future__ import annotations

import argparse
import json
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

from benchmarks.drivers import pacing, servers  # noqa: E402
from iolab.drivers import get_driver  # noqa: E402
from iolab.drivers.base import LoadResult, LoadSpec  # noqa: E402
from iolab.drivers.summary import latency_summary, uncorrected_summary  # noqa: E402
from iolab.drivers.wrk import WrkDriver  # noqa: E402

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


def verdict(ok: bool, text: str) -> None:
    print(f"{'PASS' if ok else 'MISS'}  {text}")


def fidelity(url: str, rate: float, duration: float, cpu: int) -> list[str]:
    """Builtin open loop at ``rate`` vs wrk paced to the same schedule; then every driver at c=1."""
    lines: list[str] = []
    spec = LoadSpec(url=url, rate=rate, duration_s=duration, concurrency=50, keepalive=True, cpus=(cpu,))
    b = get_driver("builtin").run(spec)
    bc, bu = latency_summary(b), uncorrected_summary(b)
    w = WrkDriver(extra_lua=pacing.pace_lua(rate, threads=1)).run(
        LoadSpec(url=url, duration_s=duration, concurrency=50, keepalive=True, cpus=(cpu,)))
    ws = latency_summary(w)
    assert bu is not None and b.schedule is not None
    print(f"\n### fidelity at a fixed rate: {rate:,.0f} req/s against nginx, 50 connections, {duration:g} s\n")
    print("| driver | achieved req/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    print(f"| builtin open loop, corrected (from due time) | {b.schedule.achieved_rate:,.0f} | "
          f"{bc.latency_ms.p50:.3f} | {bc.latency_ms.p99:.3f} |")
    print(f"| builtin open loop, uncorrected (from send) | | {bu.latency_ms.p50:.3f} | {bu.latency_ms.p99:.3f} |")
    print(f"| wrk paced by Lua delay() (from send) | {w.rps:,.0f} | {ws.latency_ms.p50:.3f} | "
          f"{ws.latency_ms.p99:.3f} |")
    # wrk paced measures from each send: the builtin figure measured the same way is the uncorrected one.
    # The corrected one adds the driver's own schedule jitter (sends up to ~1 ms off their due time).
    for q in ("p50", "p99"):
        mine, corrected, theirs = getattr(bu.latency_ms, q), getattr(bc.latency_ms, q), getattr(ws.latency_ms, q)
        lines.append(f"builtin {q} {mine:.3f} ms (from send; {corrected:.3f} from due time, "
                     f"{100 * (corrected / theirs - 1):+.1f} %) vs wrk {theirs:.3f} ms at {rate:,.0f} req/s: "
                     f"{100 * (mine / theirs - 1):+.1f} % (target: within 10 %)")
        verdict(abs(mine / theirs - 1) <= 0.10, lines[-1])
    one_spec = LoadSpec(url=url, duration_s=max(2.0, duration / 2), concurrency=1, keepalive=True, cpus=(cpu,))
    single = {d: latency_summary(get_driver(d).run(one_spec)).latency_ms for d in DRIVERS}
    print(f"\n### fidelity at concurrency 1 (no queueing anywhere), {one_spec.duration_s:g} s each\n")
    print("| driver | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for d, ms in single.items():
        print(f"| {d} | {ms.p50:.3f} | {ms.p99:.3f} |")
    for q in ("p50", "p99"):
        mine, wrk_v, ab_v = (getattr(single[d], q) for d in ("builtin", "wrk", "ab"))
        lines.append(f"c=1 builtin {q} {mine:.3f} ms vs wrk {wrk_v:.3f} ms: {100 * (mine / wrk_v - 1):+.1f} %")
        verdict(abs(mine / wrk_v - 1) <= 0.10, lines[-1] + " (target: within 10 %)")
        lines.append(f"c=1 builtin {q} {mine:.3f} ms vs ab {ab_v:.3f} ms (ab prints whole ms)")
        verdict(abs(mine - ab_v) <= 1.0, lines[-1] + " (target: within ab's 1 ms)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition of 3 s per driver")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per driver run [10]")
    parser.add_argument("--reps", type=int, default=3, help="repetitions, order rotated each time [3]")
    parser.add_argument("--concurrency", type=int, default=50, help="connections [50]")
    parser.add_argument("--rate", type=float, default=None, help="fidelity rate [a tenth of wrk's on nginx]")
    parser.add_argument("--json", type=Path, default=None, help="also write every run here")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.reps = 3.0, 1
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("the benchmark needs two CPUs: one for the server, one for the driver")
    server_cpu, driver_cpu = cpus[0], cpus[1]

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # the servers' finally blocks stop them

    signal.signal(signal.SIGTERM, _terminate)
    runs: list[Run] = []
    fidelity_lines: list[str] = []
    started = time.time()
    print(f"# driver benchmark: server on CPU {server_cpu}, driver on CPU {driver_cpu}, "
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
                if target == "nginx":
                    wrk_rps = median([r for r in runs if r.target == "nginx" and r.driver == "wrk"], "rps")
                    rate = args.rate or max(100.0, round(wrk_rps / 10, -2))
                    fidelity_lines = fidelity(url, rate, args.duration, driver_cpu)
    medians = {t: print_table(runs, t) for t in TARGETS}
    print()
    nginx = medians["nginx"]
    verdict(nginx["builtin"]["cpu_us_per_req"] <= nginx["wrk"]["cpu_us_per_req"],
            f"nginx: builtin CPU {nginx['builtin']['cpu_us_per_req']:.2f} µs/req vs wrk "
            f"{nginx['wrk']['cpu_us_per_req']:.2f} (target: ≤ wrk's)")
    verdict(nginx["builtin"]["rps"] >= 0.95 * nginx["wrk"]["rps"],
            f"nginx: builtin {nginx['builtin']['rps']:,.0f} req/s = {nginx['builtin']['rps'] / nginx['wrk']['rps']:.2f}"
            f"× wrk's {nginx['wrk']['rps']:,.0f} (target: ≥ 0.95×)")
    print(f"\ntook {time.time() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"runs": [asdict(r) for r in runs], "medians": medians,
                                         "fidelity": fidelity_lines}, indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
