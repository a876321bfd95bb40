#!/bin/sh
# Builds the two C++ solutions from solution.cpp with the system's g++ (-O2) when there is one; skips them
# otherwise. solution_endl ends each line with std::endl, solution_newline with '\n'.
set -eu
cd "$(dirname "$0")"
if ! command -v g++ >/dev/null 2>&1; then
    echo "build.sh: g++ not found, the C++ examples are not built (apt-get install g++)" >&2
    exit 0
fi
g++ -O2 -std=c++17 -DENDL -o solution_endl solution.cpp
echo "built solution_endl"
g++ -O2 -std=c++17 -o solution_newline solution.cpp
echo "built solution_newline"
