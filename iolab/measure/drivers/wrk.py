"""wrk as a load driver (wrk 4, as Debian ships it; not wrk2).

wrk runs for a time (``-d``), never for a number of requests, and always keeps connections alive (without
keep-alive iolab sends ``Connection: close``, and wrk reconnects after each response).

Latency: wrk keeps every latency in a histogram of 1 µs buckets, but prints only a few percentiles.
iolab's Lua ``done()`` hook reads the whole histogram out (through LuaJIT's FFI, straight from wrk's
``stats`` struct; else, slower, through ``latency(i)``) and prints it as one JSON line. Before that hook
runs, wrk 4 has already *added* synthetic samples to the histogram (``stats_correct``: for every sample
longer than twice the mean per-connection interval ``e = duration / (requests / connections)``, copies at
v−e, v−2e, …, down to e), a rough coordinated-omission adjustment. It changes wrk's percentiles (the
count grows by a few % to tens of %) and makes them incomparable with any other closed-loop tool. The
adjustment is exactly invertible, since wrk reports ``e``'s inputs: iolab subtracts it and records what
wrk measured (send to last byte, as ab, hey and the builtin driver do), and keeps wrk's own adjusted
percentiles in ``facts`` next to it.

Counting: wrk counts a response with a status of 400 or more as "Non-2xx or 3xx" (``errors.status``):
3xx responses are counted as fine and no per-status table exists. Its ``timeout`` figure is a count of
events (a connection found waiting longer than ``--timeout``, checked every 2 s), not of requests.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from dataclasses import replace
from typing import Any

from iolab.errors import DriverError, UsageError
from iolab.measure import tmpdirs
from iolab.measure.drivers.base import LoadResult, LoadSpec, ProgressCallback
from iolab.measure.drivers.external import (
    check_url,
    find_binary,
    refuse_open_loop,
    run_tool,
    whole_seconds,
)

NAME = "wrk"
MARKER = "@@iolab-wrk "

# Lua run by wrk: the request (method, body, headers) and a done() hook that prints one JSON line.
_DONE_LUA = r"""
local iolab_connections = %(connections)d

local function histogram_ffi(latency)
  local ffi = require("ffi")
  pcall(ffi.cdef, [[ typedef struct { uint64_t count, limit, min, max; uint64_t data[1]; } iolab_stats; ]])
  local s = ffi.cast("iolab_stats**", latency)[0]
  local parts = {}
  local lo, hi = tonumber(s.min), tonumber(s.max)
  if lo <= hi then
    for v = lo, hi do
      local c = tonumber(s.data[v])
      if c > 0 then parts[#parts + 1] = string.format("[%%d,%%d]", v, c) end
    end
  end
  return "[" .. table.concat(parts, ",") .. "]"
end

local function histogram_calls(latency)
  -- latency(i) scans the buckets from the minimum every call: give up past a CPU budget
  local parts, started = {}, os.clock()
  for i = 1, #latency do
    local v, c = latency(i)
    parts[#parts + 1] = string.format("[%%d,%%d]", v, c)
    if os.clock() - started > 5 then return "null" end
  end
  return "[" .. table.concat(parts, ",") .. "]"
end

done = function(summary, latency, requests)
  local ok, counts = pcall(histogram_ffi, latency)
  local source = "ffi"
  if not ok then counts, source = histogram_calls(latency), "calls" end
  local e = summary.errors
  local pct = {}
  for _, p in ipairs({50, 75, 90, 99, 99.9, 100}) do
    -- wrk's percentile(100) looks for a rank past the last sample and returns 0: use the maximum
    local v = p == 100 and latency.max or latency:percentile(p)
    pct[#pct + 1] = string.format("[%%s,%%d]", tostring(p), v)
  end
  io.write(string.format(
    "%(marker)s{\"duration_us\":%%d,\"requests\":%%d,\"bytes\":%%d,\"connections\":%%d," ..
    "\"errors\":{\"connect\":%%d,\"read\":%%d,\"write\":%%d,\"status\":%%d,\"timeout\":%%d}," ..
    "\"mean_us\":%%.3f,\"source\":\"%%s\",\"percentiles\":[%%s],\"counts\":%%s}\n",
    summary.duration, summary.requests, summary.bytes, iolab_connections,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, source, table.concat(pct, ","), counts))
end
"""

_REQUESTS_LINE = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)?, ", re.M)


class WrkDriver:
    """``extra_lua`` is appended to iolab's script: wrk's own hooks (e.g. a ``delay()`` that paces requests,
    as the driver benchmark does) without giving up iolab's ``done()``."""

    name = NAME

    def __init__(self, extra_lua: str = "") -> None:
        self.extra_lua = extra_lua

    def run(self, spec: LoadSpec, progress: ProgressCallback | None = None) -> LoadResult:
        args = build_args(spec)
        binary = find_binary("wrk")
        with tmpdirs.owned("wrk") as tmp:
            script = os.path.join(tmp, "iolab.lua")
            with open(script, "w", encoding="utf-8") as fh:
                fh.write(lua_script(spec) + self.extra_lua)
            argv = [binary, *args[:-1], "-s", script, args[-1]]
            done = run_tool(argv, spec, progress, spec.duration_s)
        try:
            result = parse(done.stdout, done.stderr)
        except DriverError as exc:
            if done.returncode != 0 or done.stderr.strip():
                last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
                raise DriverError(f"wrk failed: {last[:200]}") from None
            raise exc from None
        facts = dict(result.facts)
        if whole_seconds(spec.timeout_s) != spec.timeout_s:
            facts["timeout_rounded_up_s"] = whole_seconds(spec.timeout_s)
        return replace(result, cpu_user_s=done.cpu_user_s, cpu_sys_s=done.cpu_sys_s,
                       raw_output=done.output, command=done.command, facts=facts)


def threads_for(spec: LoadSpec) -> int:
    """One wrk thread per CPU it is pinned to (one when not pinned), never more than connections."""
    return max(1, min(len(spec.cpus) if spec.cpus else 1, spec.concurrency))


def build_args(spec: LoadSpec) -> list[str]:
    """wrk's options for ``spec`` (the URL last; ``-s script`` goes before it)."""
    check_url(NAME, spec)
    refuse_open_loop(NAME, spec, "wrk 4 has no request rate (wrk2's -R is a different program)")
    if not spec.timed or spec.duration_s is None:
        raise UsageError("wrk runs for a time, not a number of requests: give a duration (e.g. --duration 10s)")
    if spec.method.upper() == "HEAD":
        raise UsageError("wrk cannot send HEAD requests (it would wait for a body)")
    # wrk reads -d and --timeout as whole seconds (or m, h); below one second it would read 0.
    duration_ms = max(1, round(spec.duration_s * 1000))
    duration = f"{duration_ms // 1000}s" if duration_ms % 1000 == 0 else f"{math.ceil(duration_ms / 1000)}s"
    args = ["-t", str(threads_for(spec)), "-c", str(spec.concurrency), "-d", duration,
            "--timeout", f"{whole_seconds(spec.timeout_s)}s", "--latency"]
    headers = list(spec.headers)
    if not spec.keepalive and not any(k.lower() == "connection" for k, _ in headers):
        headers.append(("Connection", "close"))
    for name, value in headers:
        args += ["-H", f"{name}: {value}"]
    return [*args, spec.url]


def _lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'  # decimal escapes: any byte, no quoting issues


def lua_script(spec: LoadSpec) -> str:
    lines = [f"wrk.method = {_lua_string(spec.method.upper().encode())}"]
    if spec.body:
        lines.append(f"wrk.body = {_lua_string(spec.body)}")
    return "\n".join(lines) + "\n" + _DONE_LUA % {"connections": spec.concurrency, "marker": MARKER}


_UNABLE = re.compile(r"^unable to connect to (\S+) (.+?)\s*$", re.M)


def parse(stdout: str, stderr: str = "") -> LoadResult:
    """wrk's output with iolab's JSON line → a LoadResult (CPU, command and raw output left empty).

    Raises ``DriverError`` with a one-line reason on anything else.
    """
    unable = _UNABLE.search(stderr)
    if unable is not None and MARKER not in stdout:
        # wrk tries one connection before it starts and gives up at once if that fails.
        return LoadResult(
            driver=NAME, requests=1, completed=0, ok_2xx=0, non_2xx=0, connect_errors=1, timeouts=0,
            other_errors=0, status_counts={}, duration_s=0.0, latencies_us=(), bytes_received=0,
            cpu_user_s=0.0, cpu_sys_s=0.0,
            errors_sample=(f"wrk: unable to connect to {unable.group(1)}: {unable.group(2)} (wrk tries one "
                           "connection before it starts, and does not start if that fails)",),
            facts={"aborted": unable.group(0).strip()})
    data = _json_line(stdout)
    try:
        duration_us, requests, nbytes, connections = (
            _count(data[k], k) for k in ("duration_us", "requests", "bytes", "connections"))
        errors = {k: _count(data["errors"][k], k) for k in ("connect", "read", "write", "status", "timeout")}
        raw_counts = data["counts"]
        reported = {float(p): _count(v, "percentile") for p, v in data["percentiles"]}
        mean_us = float(data["mean_us"])
        source = str(data["source"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DriverError(f"wrk's result line is incomplete or malformed ({type(exc).__name__}: {exc})") from None
    if connections < 1:
        raise DriverError("wrk's result line says it ran 0 connections")
    text = _REQUESTS_LINE.search(stdout)
    if text is None or int(text.group(1)) != requests:
        raise DriverError("wrk's 'N requests in …' line is missing or disagrees with its result line")
    if errors["status"] > requests:
        raise DriverError(f"wrk reports {errors['status']} non-2xx/3xx responses of {requests}")
    interval = duration_us // (requests // connections) if requests // connections > 0 else 0
    facts: dict[str, object] = {"latency_source": f"wrk's histogram (1 µs buckets), read with {source}",
                                "co_interval_us": interval, "co_adjusted_percentiles_us": reported}
    counts: tuple[tuple[int, int], ...] = ()
    percentiles: dict[float, int] = {}
    if raw_counts is None:  # too wide to read out in time: wrk's own (adjusted) percentiles, flagged
        percentiles = reported
        facts["latency_source"] = "wrk's percentiles, which include its coordinated-omission adjustment"
    else:
        adjusted = _pairs(raw_counts)
        measured = uncorrect(adjusted, interval)
        if sum(measured.values()) > requests:
            raise DriverError("wrk's histogram holds more samples than its requests after undoing its "
                              "coordinated-omission adjustment")
        counts = tuple(sorted(measured.items()))
        facts["co_synthetic_samples"] = sum(adjusted.values()) - sum(measured.values())
        if counts:
            mean_us = sum(v * c for v, c in counts) / sum(c for _, c in counts)
    return LoadResult(
        driver=NAME, requests=requests + errors["connect"] + errors["read"] + errors["write"],
        completed=requests, ok_2xx=requests - errors["status"], non_2xx=errors["status"],
        connect_errors=errors["connect"], timeouts=errors["timeout"],
        other_errors=errors["read"] + errors["write"], status_counts={}, duration_s=duration_us / 1e6,
        latencies_us=(), bytes_received=nbytes, cpu_user_s=0.0, cpu_sys_s=0.0,
        errors_sample=_error_notes(errors), latency_counts_us=counts, percentiles_us=percentiles,
        latency_mean_us=mean_us if requests else None, latency_resolution_us=1, facts=facts,
    )


def _json_line(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            try:
                data = json.loads(line[len(MARKER):])
            except ValueError as exc:
                raise DriverError(f"wrk's result line is not JSON ({exc})") from None
            if not isinstance(data, dict):
                raise DriverError("wrk's result line is not a JSON object")
            return data
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    shown = lines[-1][:120] if lines else "nothing"
    raise DriverError(f"wrk printed no result line from iolab's Lua script (last line: {shown!r})")


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise DriverError(f"wrk's {what} is {value!r}, not a count")
    return int(value)


def _pairs(raw: object) -> dict[int, int]:
    if not isinstance(raw, list):
        raise DriverError("wrk's histogram is not a list")
    out: dict[int, int] = {}
    for pair in raw:
        if not isinstance(pair, list) or len(pair) != 2:
            raise DriverError(f"wrk's histogram has a bad entry {pair!r}")
        value, count = _count(pair[0], "latency"), _count(pair[1], "count")
        out[value] = out.get(value, 0) + count
    return out


def uncorrect(adjusted: dict[int, int], interval: int) -> dict[int, int]:
    """Undo wrk 4's ``stats_correct(stats, interval)``: the histogram as measured.

    ``stats_correct`` adds, for each value n ≥ 2e with (original) count c, c samples at n−e, n−2e, … while
    they stay above e. So, from the top down, a value m > e holds its own samples plus those copied from
    m+e, m+2e, …: subtract the running total of originals in m's residue class modulo e.
    """
    if interval <= 0:
        return dict(adjusted)
    above: defaultdict[int, int] = defaultdict(int)  # residue mod e → originals seen above
    out: dict[int, int] = {}
    for value in sorted(adjusted, reverse=True):
        count = adjusted[value]
        if value > interval:
            count -= above[value % interval]
        if count < 0:
            raise DriverError("wrk's histogram does not match its coordinated-omission adjustment "
                              f"(interval {interval} µs)")
        above[value % interval] += count
        if count:
            out[value] = count
    return out


def _error_notes(errors: dict[str, int]) -> tuple[str, ...]:
    notes = []
    socket_errors = {k: errors[k] for k in ("connect", "read", "write", "timeout") if errors[k]}
    if socket_errors:
        notes.append("wrk socket errors: " + ", ".join(f"{k} {v}" for k, v in socket_errors.items()))
    if errors["timeout"]:
        notes.append("wrk's timeout figure counts connections found waiting past --timeout (checked every "
                     "2 s), not requests")
    return tuple(notes)
