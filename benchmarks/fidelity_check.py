"""One fidelity comparison, longer than the driver benchmark's: builtin open loop vs wrk paced, in pairs.

    .venv/bin/python benchmarks/fidelity_check.py --server nginx --rate 500 --pairs 16 --seconds 5
    .venv/bin/python benchmarks/fidelity_check.py --server uvicorn --concurrency-one

With --concurrency-one: both drivers in a closed loop over one connection (nothing queues) instead of paced.

Same servers, pinning and method as benchmarks/bench_drivers.py (see benchmarks/drivers/fidelity.py);
prints the medians and the median pair ratios of p50 and p99 with their 95 % intervals.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.drivers import fidelity, servers  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("nginx", "uvicorn"), default="nginx")
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second [500]")
    parser.add_argument("--concurrency-one", action="store_true",
                        help="closed loop over one connection instead of a fixed rate")
    parser.add_argument("--pairs", type=int, default=16, help="builtin/wrk pairs [16]")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per run [5]")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("needs two CPUs: one for the server, one for the driver")
    start = servers.nginx if args.server == "nginx" else servers.uvicorn_hello
    with tempfile.TemporaryDirectory(prefix="iolab-fidelity-") as tmp, start(Path(tmp) / args.server, cpus[0]) as url:
        if args.concurrency_one:
            found, ratios = fidelity.at_concurrency_one(url, args.seconds, cpus[1], args.pairs)
            mine, theirs, load = fidelity.med(found["builtin"]), fidelity.med(found["wrk"]), "concurrency 1"
        else:
            p = fidelity.at_rate(url, args.rate, args.seconds, cpus[1], args.pairs)
            mine, theirs, ratios, load = p.builtin, p.wrk, p.ratios, f"{args.rate:,.0f} req/s"
    print(f"{args.server}, {load}, {args.pairs} pairs of {args.seconds:g} s (from each send):")
    print(f"  builtin p50 {mine[0]:.4f} ms, p99 {mine[1]:.4f} ms; wrk p50 {theirs[0]:.4f}, p99 {theirs[1]:.4f}")
    print(f"  p50 builtin ÷ wrk {ratios[0].text()}")
    print(f"  p99 builtin ÷ wrk {ratios[1].text()}")
    if args.concurrency_one:  # ab and hey ran once each: ab's whole-ms resolution is the other bound
        for d in ("ab", "hey"):
            if found[d]:
                print(f"  {d} (once) p50 {found[d][0][0]:.4f} ms, p99 {found[d][0][1]:.4f} ms")
    return 0


if __name__ == "__main__":
    servers.exit_with(main)
