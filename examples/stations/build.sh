#!/bin/sh
# Builds the two C++ solutions with the system's g++ (-O2) when there is one; skips them otherwise.
set -eu
cd "$(dirname "$0")"
if ! command -v g++ >/dev/null 2>&1; then
    echo "build.sh: g++ not found, the C++ examples are not built (apt-get install g++)" >&2
    exit 0
fi
for name in solution_endl solution_newline; do
    g++ -O2 -std=c++17 -o "$name" "$name.cpp"
    echo "built $name"
done
