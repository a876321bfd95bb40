"""hey as a load driver.

Latency: hey's summary gives the fastest, slowest and average request and the 10th, 25th, 50th, 75th,
90th, 95th and 99th percentiles, in seconds with four decimals: a resolution of 100 µs. That table is
what iolab keeps (``percentiles_us``, with fastest as 0 % and slowest as 100 %). hey's ``-o csv`` would
give every request, at the same resolution, but then hey prints no error distribution at all (failed
requests vanish from its output), so iolab reads the summary.

Counting: "Status code distribution" gives the responses by status; "Error distribution" gives each
distinct error message with its count, which iolab sorts into refused connections, timeouts and the rest
by their text. "Total data" counts response bodies only. With ``-n N -c C`` each of hey's C workers
sends N // C requests: 50 requests on 4 workers are 48 (noted in ``facts``). hey's ``-t`` is a whole number of seconds
(0 would mean none): iolab rounds a shorter timeout up to 1 s and notes it.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

from iolab.errors import DriverError
from iolab.measure import tmpdirs
from iolab.measure.drivers.base import LoadResult, LoadSpec, ProgressCallback
from iolab.measure.drivers.external import (
    body_args,
    check_url,
    duration_arg,
    find_binary,
    refuse_open_loop,
    run_tool,
    whole_seconds,
)

NAME = "hey"
_SECS = r"(\d+(?:\.\d+)?) secs"
_SUMMARY = {
    "total": re.compile(rf"^\s*Total:\s+{_SECS}\s*$", re.M),
    "slowest": re.compile(rf"^\s*Slowest:\s+{_SECS}\s*$", re.M),
    "fastest": re.compile(rf"^\s*Fastest:\s+{_SECS}\s*$", re.M),
    "average": re.compile(r"^\s*Average:\s+(\S+) secs\s*$", re.M),
}
_TOTAL_DATA = re.compile(r"^\s*Total data:\s+(\d+) bytes\s*$", re.M)
_PERCENTILE = re.compile(rf"^\s*(\d+)% in {_SECS}\s*$")
_STATUS = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses\s*$")
_ERROR = re.compile(r"^\s*\[(\d+)\]\s+(.+?)\s*$")
_SECTIONS = ("Latency distribution:", "Status code distribution:", "Error distribution:", "Details")
_ERRORS_KEPT = 5


class HeyDriver:
    name = NAME

    def run(self, spec: LoadSpec, progress: ProgressCallback | None = None) -> LoadResult:
        args, body = build_args(spec)
        binary = find_binary("hey")
        with tmpdirs.owned("hey") as tmp:
            argv = [binary, *body_args("-D", tmp, body), *args]
            done = run_tool(argv, spec, progress, spec.duration_s if spec.timed else None)
        try:
            result = parse(done.stdout)
        except DriverError:
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
                raise DriverError(f"hey failed: {last[:200]}") from None
            raise
        facts = dict(result.facts)
        workers = min(spec.concurrency, spec.requests)
        if not spec.timed and spec.requests % workers:  # each of hey's workers sends n // c requests
            facts["requests_rounded_down_to"] = spec.requests // workers * workers
        if whole_seconds(spec.timeout_s) != spec.timeout_s:
            facts["timeout_rounded_up_s"] = whole_seconds(spec.timeout_s)
        return replace(result, cpu_user_s=done.cpu_user_s, cpu_sys_s=done.cpu_sys_s,
                       raw_output=done.output, command=done.command, facts=facts)


def build_args(spec: LoadSpec) -> tuple[list[str], bytes | None]:
    """hey's options for ``spec`` (after ``-D body``), and the body to send from a file, if any."""
    check_url(NAME, spec)
    refuse_open_loop(NAME, spec, "hey's -q paces each worker but still waits for every response")
    if spec.timed and spec.duration_s is not None:
        args = ["-z", duration_arg(spec.duration_s), "-c", str(spec.concurrency)]
    else:  # hey refuses fewer requests than workers
        args = ["-n", str(spec.requests), "-c", str(min(spec.concurrency, spec.requests))]
    args += ["-t", str(whole_seconds(spec.timeout_s)), "-cpus", str(len(spec.cpus) if spec.cpus else 1),
             "-m", spec.method.upper()]
    if not spec.keepalive:
        args.append("-disable-keepalive")
    for name, value in spec.headers:
        if name.lower() == "content-type":
            args += ["-T", value]
        elif name.lower() == "host":
            args += ["-host", value]
        else:
            args += ["-H", f"{name}: {value}"]
    return [*args, spec.url], (spec.body if spec.body else None)


def parse(stdout: str) -> LoadResult:
    """hey's summary → a LoadResult (CPU, command and raw output left empty).

    Raises ``DriverError`` with a one-line reason on anything that is not a complete hey summary.
    """
    if "Summary:" not in stdout:
        lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
        raise DriverError(f"hey printed no summary (last line: {(lines[-1][:120] if lines else 'nothing')!r})")
    found = {k: rx.search(stdout) for k, rx in _SUMMARY.items()}
    if found["total"] is None:
        raise DriverError("hey's summary has no 'Total:' line")
    sections = _sections(stdout)
    status_counts: dict[int, int] = {}
    for line in sections["Status code distribution:"]:
        match = _STATUS.match(line)
        if match is None:
            raise DriverError(f"hey's status code distribution has a line {line.strip()[:60]!r}")
        status_counts[int(match.group(1))] = status_counts.get(int(match.group(1)), 0) + int(match.group(2))
    kinds = {"connect_errors": 0, "timeouts": 0, "other_errors": 0}
    messages: list[str] = []
    for line in sections["Error distribution:"]:
        match = _ERROR.match(line)
        if match is None:
            raise DriverError(f"hey's error distribution has a line {line.strip()[:60]!r}")
        kinds[_error_kind(match.group(2))] += int(match.group(1))
        if len(messages) < _ERRORS_KEPT:
            messages.append(match.group(2))
    completed = sum(status_counts.values())
    percentiles: dict[float, int] = {}
    mean_us = None
    if completed:
        percentiles, mean_us = _latency(found, sections["Latency distribution:"])
    non_2xx = sum(n for code, n in status_counts.items() if not 200 <= code < 300)
    data = _TOTAL_DATA.search(stdout)
    return LoadResult(
        driver=NAME, requests=completed + sum(kinds.values()), completed=completed,
        ok_2xx=completed - non_2xx, non_2xx=non_2xx, status_counts=status_counts,
        duration_s=float(found["total"].group(1)), latencies_us=(),
        bytes_received=int(data.group(1)) if data else 0, cpu_user_s=0.0, cpu_sys_s=0.0,
        errors_sample=tuple(messages), percentiles_us=percentiles, latency_mean_us=mean_us,
        latency_resolution_us=100,
        facts={"latency_source": "hey's summary: fastest, 10-99th percentiles, slowest (100 µs)",
               "bytes_are": "response bodies only"},
        connect_errors=kinds["connect_errors"], timeouts=kinds["timeouts"], other_errors=kinds["other_errors"],
    )


def _sections(stdout: str) -> dict[str, list[str]]:
    """The lines under each heading of interest, up to the next blank line."""
    out: dict[str, list[str]] = {name: [] for name in _SECTIONS}
    current: str | None = None
    for line in stdout.splitlines():
        heading = next((name for name in _SECTIONS if line.strip().startswith(name)), None)
        if heading is not None:
            current = heading
        elif not line.strip():
            current = None
        elif current is not None:
            out[current].append(line)
    return out


def _latency(found: dict[str, re.Match[str] | None], lines: list[str]) -> tuple[dict[float, int], float]:
    for key in ("slowest", "fastest", "average"):
        if found[key] is None:
            raise DriverError(f"hey's summary has no '{key.title()}:' line")
    try:
        mean_s = float(found["average"].group(1))  # type: ignore[union-attr]
    except ValueError:
        raise DriverError("hey's average is not a number") from None
    if not math.isfinite(mean_s) or mean_s < 0:
        raise DriverError(f"hey's average is {mean_s}, with {len(lines)} latency lines")
    points = {0.0: _us(found["fastest"].group(1))}  # type: ignore[union-attr]
    for line in lines:
        match = _PERCENTILE.match(line)
        if match is None:
            raise DriverError(f"hey's latency distribution has a line {line.strip()[:60]!r}")
        percent = float(match.group(1))
        if percent == 0 and _us(match.group(2)) == 0:
            continue  # hey's placeholder for a percentile its few samples never reached ("0% in 0.0000")
        if not 0 < percent < 100 or percent in points:
            raise DriverError(f"hey's latency distribution has a {percent:g}% line out of place")
        points[percent] = _us(match.group(2))
    if len(points) < 2:
        raise DriverError("hey's summary has no latency distribution")
    points[100.0] = _us(found["slowest"].group(1))  # type: ignore[union-attr]
    ordered = [points[p] for p in sorted(points)]
    if any(b < a for a, b in zip(ordered, ordered[1:], strict=False)):
        raise DriverError("hey's latency percentiles are not in increasing order")
    return dict(sorted(points.items())), mean_s * 1e6


def _us(seconds: str) -> int:
    return round(float(seconds) * 1e6)


def _error_kind(message: str) -> str:
    text = message.lower()
    if "timeout" in text or "deadline exceeded" in text:
        return "timeouts"
    if "connection refused" in text or "dial tcp" in text or "connect:" in text:
        return "connect_errors"
    return "other_errors"
