"""The seed's base-station solution, reading the input from stdin; one print, the answer."""

import math
import sys


def solution(n, stations, w):
    answer = 0
    start = 1

    for station in stations:
        count = station - w - start
        if count > 0:
            answer += math.ceil(count / (2 * w + 1))
        start = station + w + 1

    if start <= n:
        count = n - start + 1
        answer += math.ceil(count / (2 * w + 1))

    return answer


def main():
    data = sys.stdin.buffer.read().split()
    n, w = int(data[0]), int(data[1])
    stations = [int(x) for x in data[2:]]
    print(solution(n, stations, w))


if __name__ == "__main__":
    main()
