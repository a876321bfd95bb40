#!/bin/sh
# Measures the four stations solutions with iolab micro, as in README.md. Results go to ./results/.
#   sh reproduce.sh            # 5 runs per setting (the default)
#   RUNS=2 sh reproduce.sh     # quicker
set -eu
cd "$(dirname "$0")"
IOLAB="${IOLAB:-../../.venv/bin/python -m iolab}"
RUNS="${RUNS:-5}"
mkdir -p results
[ -f in.txt ] || python3 gen_input.py > in.txt
sh build.sh
$IOLAB micro solution_print.py --input in.txt --runs "$RUNS" -o results/print.json --markdown results/print.md
$IOLAB micro solution.py --input in.txt --runs "$RUNS" -o results/noprint.json --markdown results/noprint.md
for name in solution_endl solution_newline; do
    if [ -x "$name" ]; then
        $IOLAB micro --input in.txt --runs "$RUNS" -o "results/$name.json" --markdown "results/$name.md" -- "./$name"
    fi
done
