"""ApacheBench (``ab``) as a load driver.

Latency: ab prints its percentile table and its Connection Times in whole milliseconds, but with ``-e
FILE`` it writes the same percentiles, 0 % to 100 % in steps of 1, as milliseconds with three decimals:
each is one request's own time, to the microsecond. That table is what iolab keeps (``percentiles_us``);
``-g`` would give every request, but rounded to whole milliseconds, so it is not used. ab gives no 99.9th
percentile (iolab shows its 100th, an upper bound, and says so) and its mean only in whole ms (the
"Total" row of Connection Times, which is what iolab records as ab's mean).

Counting, as ab counts (ab.c): "Complete requests" counts every request that ended, failed or not;
"Receive" failures (an error from recv, such as a refused or reset connection) are among them, "Connect"
failures are not (ab retries the connection, and gives up after 10). "Length" failures are responses
whose length differed from the first one's: normal for dynamic pages, so iolab counts them as responses
and only notes them. "Exceptions" are poll errors on a socket before ab retries it, not requests.
A timeout (``-s``) makes ab abort the whole run: iolab then reports the requests it had completed and one
timeout, with ab's message. iolab always passes ``-r`` so a receive error is counted instead of ending
the run.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace

from iolab.errors import DriverError, UsageError
from iolab.measure import tmpdirs
from iolab.measure.drivers.base import LoadResult, LoadSpec, ProgressCallback
from iolab.measure.drivers.external import (
    body_args,
    check_url,
    find_binary,
    refuse_open_loop,
    run_tool,
    whole_seconds,
)

NAME = "ab"
# -t with a large -n: ab allocates its per-request array for -n up front (calloc: only what is used is
# ever touched), and without -n after -t it would stop at 50,000 requests.
_TIMED_REQUESTS_PER_S = 200_000

_NUM = r"(\d+)"
_DEC = r"(\d+(?:\.\d+)?)"
_LINES = {
    "complete": re.compile(rf"^Complete requests:\s+{_NUM}\s*$", re.M),
    "failed": re.compile(rf"^Failed requests:\s+{_NUM}\s*$", re.M),
    "breakdown": re.compile(
        rf"^\s+\(Connect: {_NUM}, Receive: {_NUM}, Length: {_NUM}, Exceptions: {_NUM}\)\s*$", re.M),
    "non_2xx": re.compile(rf"^Non-2xx responses:\s+{_NUM}\s*$", re.M),
    "time": re.compile(rf"^Time taken for tests:\s+{_DEC} seconds\s*$", re.M),
    "transferred": re.compile(rf"^Total transferred:\s+{_NUM} bytes\s*$", re.M),
    "total_row": re.compile(rf"^Total:\s+{_NUM}\s+{_NUM}\s+{_DEC}\s+{_NUM}\s+{_NUM}\s*$", re.M),
}
# How ab dies: "apr_pollset_poll: The timeout specified has expired (70007)"
# (stderr; on a terminal it lands right after stdout's "Benchmarking … (be patient)...").
_ABORT = re.compile(r"(apr_\w+(?:\(\))?): (.+?) \((\d+)\)\s*$", re.M)
_COMPLETED_BEFORE_ABORT = re.compile(rf"^Total of {_NUM} requests completed\s*$", re.M)
_CSV_ROW = re.compile(rf"^{_NUM},{_DEC}$")


class AbDriver:
    name = NAME

    def run(self, spec: LoadSpec, progress: ProgressCallback | None = None) -> LoadResult:
        argv_tail, body = build_args(spec)
        binary = find_binary("ab")
        with tmpdirs.owned("ab") as tmp:
            csv_path = os.path.join(tmp, "percentiles.csv")
            body_flag = "-p" if spec.method.upper() == "POST" else "-u"
            argv = [binary, "-e", csv_path, *body_args(body_flag, tmp, body), *argv_tail]
            done = run_tool(argv, spec, progress, spec.duration_s if spec.timed else None)
            csv_text = _read(csv_path)
        try:
            result = parse(done.stdout, done.stderr, csv_text)
        except DriverError as exc:
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                raise DriverError(f"ab exited with {done.returncode}: {last}") from None
            raise exc from None
        facts = dict(result.facts)
        if spec.timed and spec.duration_s is not None and whole_seconds(spec.duration_s) != spec.duration_s:
            facts["duration_rounded_up_s"] = whole_seconds(spec.duration_s)
        if whole_seconds(spec.timeout_s) != spec.timeout_s:
            facts["timeout_rounded_up_s"] = whole_seconds(spec.timeout_s)
        return replace(result, cpu_user_s=done.cpu_user_s, cpu_sys_s=done.cpu_sys_s,
                       raw_output=done.output, command=done.command, facts=facts)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None  # ab aborted before writing it


def build_args(spec: LoadSpec) -> tuple[list[str], bytes | None]:
    """ab's options for ``spec`` (after -e), and the body to send from a file, if any."""
    check_url(NAME, spec)
    refuse_open_loop(NAME, spec, "ab has no request rate")
    args = ["-r", "-s", str(whole_seconds(spec.timeout_s))]
    if spec.timed and spec.duration_s is not None:
        seconds = whole_seconds(spec.duration_s)  # ab's -t counts whole seconds
        args += ["-t", str(seconds), "-n", str(seconds * _TIMED_REQUESTS_PER_S + 50_000),
                 "-c", str(spec.concurrency)]
    else:  # ab refuses a concurrency above the number of requests
        args += ["-n", str(spec.requests), "-c", str(min(spec.concurrency, spec.requests))]
    if spec.keepalive:
        args.append("-k")
    method = spec.method.upper()
    body: bytes | None = None
    if spec.body or method in ("POST", "PUT"):
        if method not in ("POST", "PUT"):
            raise UsageError(f"ab sends a body with POST or PUT only (got {method})")
        body = spec.body
        ctype = next((v for k, v in spec.headers if k.lower() == "content-type"), "application/octet-stream")
        args += ["-T", ctype]
    elif method == "HEAD":
        args.append("-i")
    elif method != "GET":
        args += ["-m", method]
    for name, value in spec.headers:
        if name.lower() != "content-type" or body is None:
            args += ["-H", f"{name}: {value}"]
    url = spec.url if "/" in spec.url.split("://", 1)[1] else spec.url + "/"  # ab needs a path
    return [*args, url], body


def parse(stdout: str, stderr: str = "", csv_text: str | None = None) -> LoadResult:
    """ab's report (and its ``-e`` table) → a LoadResult (CPU, command and raw output left empty).

    Raises ``DriverError`` with a one-line reason on anything that is not a complete ab report.
    """
    found = {key: rx.search(stdout) for key, rx in _LINES.items()}
    if found["complete"] is None:
        return _aborted(stdout + "\n" + stderr)
    missing = [k for k in ("failed", "time", "transferred") if found[k] is None]
    if missing:
        raise DriverError(f"ab's report has no {', '.join(missing)} line (truncated or not ab's output?)")
    ended = _int(found, "complete")
    failed = _int(found, "failed")
    connect = receive = length = exceptions = 0
    if failed:
        if found["breakdown"] is None:
            raise DriverError("ab reports failed requests but not their breakdown (Connect, Receive, …)")
        connect, receive, length, exceptions = (int(g) for g in found["breakdown"].groups())
        if connect + receive + length + exceptions != failed:
            raise DriverError(f"ab's failed requests ({failed}) are not the sum of their breakdown")
    non_2xx = _int(found, "non_2xx") if found["non_2xx"] else 0
    completed = ended - receive  # responses fully read, whatever their status or length
    if completed < 0 or non_2xx > completed:
        raise DriverError(f"ab's counts do not add up: {ended} complete, {receive} receive errors, "
                          f"{non_2xx} non-2xx")
    percentiles = _percentiles(csv_text, ended) if completed else {}
    mean_us = None
    if found["total_row"] is not None:
        mean_us = float(found["total_row"].group(2)) * 1000.0
    elif completed:
        raise DriverError("ab's report has no Connection Times 'Total:' row")
    notes = []
    if length:
        notes.append(f"ab counted {length} responses as 'Length' failures (their length differed from the "
                     "first response's); iolab counts them as responses")
    if exceptions:
        notes.append(f"ab saw {exceptions} socket exceptions (poll errors) and retried those connections")
    if receive:
        notes.append(f"ab: {receive} connections failed on receive (refused or reset; ab does not say which)")
    return LoadResult(
        driver=NAME, requests=ended + connect, completed=completed, ok_2xx=completed - non_2xx,
        non_2xx=non_2xx, connect_errors=receive + connect, timeouts=0, other_errors=0, status_counts={},
        duration_s=float(found["time"].group(1)),  # type: ignore[union-attr]
        latencies_us=(), bytes_received=_int(found, "transferred"), cpu_user_s=0.0, cpu_sys_s=0.0,
        errors_sample=tuple(notes), percentiles_us=percentiles, latency_mean_us=mean_us,
        latency_resolution_us=1,
        facts={"latency_source": "ab -e percentile table (0-100 %, µs); mean: Connection Times, whole ms",
               "length_failures": length, "socket_exceptions": exceptions},
    )


def _int(found: dict[str, re.Match[str] | None], key: str) -> int:
    match = found[key]
    assert match is not None
    return int(match.group(1))


def _aborted(text: str) -> LoadResult:
    """ab stopped mid-run (a timeout, a refused connect after 10 tries …): what it had done, and why."""
    abort = _ABORT.search(text)
    if abort is None:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        shown = lines[-1][:120] if lines else "nothing"
        raise DriverError(f"ab printed no report (last line: {shown!r})")
    call, message, code = abort.groups()
    before = _COMPLETED_BEFORE_ABORT.search(text)
    completed = int(before.group(1)) if before else 0
    lowered = message.lower()
    kind = "timeouts" if "timeout" in lowered else "connect_errors" if "connect" in call else "other_errors"
    counts = {"timeouts": 0, "connect_errors": 0, "other_errors": 0, kind: 1}
    return LoadResult(
        driver=NAME, requests=completed + 1, completed=completed, ok_2xx=0, non_2xx=0, status_counts={},
        duration_s=0.0, latencies_us=(), bytes_received=0, cpu_user_s=0.0, cpu_sys_s=0.0,
        errors_sample=(f"ab aborted the run: {call}: {message} ({code}); it reports nothing of the "
                       f"{completed} requests it had completed",),
        facts={"aborted": f"{call}: {message} ({code})"}, connect_errors=counts["connect_errors"],
        timeouts=counts["timeouts"], other_errors=counts["other_errors"],
    )


def _percentiles(csv_text: str | None, done: int) -> dict[float, int]:
    """ab -e: 'Percentage served,Time in ms' then one row per percent, 0 to 100.

    Row i (0 < i < 100) is request number int(0.5 + done·i/100) in time order; with fewer than 100
    requests that index can reach ``done``, past the last one, and ab prints whatever memory holds there
    (seen: a 99th percentile below the 98th). Such rows are dropped.
    """
    if csv_text is None:
        raise DriverError("ab did not write its -e percentile table")
    lines = [ln.strip() for ln in csv_text.splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("Percentage served"):
        raise DriverError("ab's -e table has no 'Percentage served' header")
    out: dict[float, int] = {}
    for expected, line in enumerate(lines[1:]):
        row = _CSV_ROW.match(line)
        if row is None or int(row.group(1)) != expected:
            raise DriverError(f"ab's -e table: row {expected + 1} is {line[:40]!r}, expected '{expected},<ms>'")
        if expected in (0, 100) or int(0.5 + done * expected / 100.0) < done:
            out[float(expected)] = round(float(row.group(2)) * 1000)
    if 100.0 not in out or len(lines) != 102:
        raise DriverError(f"ab's -e table has {len(lines) - 1} rows, expected 101 (0 to 100 %)")
    values = list(out.values())
    if any(b < a for a, b in zip(values, values[1:], strict=False)):
        raise DriverError("ab's -e table is not in increasing order")
    return out
