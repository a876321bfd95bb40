"""Input for the seed's base-station problem, large enough that a debug print per station shows.

The problem (Programmers 12979, "기지국 설치"): apartments 1…N in a row, some already covered by stations
of reach W at the given positions; how many new stations cover the rest? Format read by the solutions
on stdin: the first line is ``N W``, the second the positions of the existing stations, ascending.

    python gen_input.py > in.txt                       # 200,000 stations, N = 1,000,000,000, W = 2
    python gen_input.py --stations 1000 > small.txt
"""

from __future__ import annotations

import argparse
import random
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=200_000, help="existing stations (output lines)")
    parser.add_argument("--n", type=int, default=1_000_000_000, help="apartments")
    parser.add_argument("--w", type=int, default=2, help="reach of a station on each side")
    parser.add_argument("--seed", type=int, default=12979, help="random seed (the same input every time)")
    args = parser.parse_args()
    if not 0 < args.stations <= args.n:
        parser.error("need 0 < --stations <= --n")
    rng = random.Random(args.seed)
    stations = sorted(rng.sample(range(1, args.n + 1), args.stations))
    sys.stdout.write(f"{args.n} {args.w}\n{' '.join(map(str, stations))}\n")


if __name__ == "__main__":
    main()
