"""wrk paced to a fixed rate, for the fidelity check.

Debian's wrk is wrk 4: no ``-R`` (that is wrk2). Its Lua ``delay()`` hook runs before each request and
returns how many milliseconds to wait before sending it. This one keeps an absolute schedule per wrk
thread (LuaJIT's FFI reads CLOCK_MONOTONIC): request k of a thread is due at start + k / rate, and
``delay()`` returns the time left until then (0 when already late). With enough connections and a
server that keeps up, requests leave on schedule, as in an open loop; what wrk measures is still from
each actual send (wrk does not correct for lateness), which is why the check runs at a rate the server
sustains and also reports the builtin driver's corrected and uncorrected figures side by side.
Timer resolution is wrk's: whole milliseconds.
"""

from __future__ import annotations

PACE_LUA = """
local iolab_ffi = require("ffi")
pcall(iolab_ffi.cdef, [[
  typedef struct { long tv_sec; long tv_nsec; } iolab_timespec;
  int clock_gettime(int clk_id, iolab_timespec *tp);
]])
local iolab_ts = iolab_ffi.new("iolab_timespec")
local function iolab_now_ms()
  iolab_ffi.C.clock_gettime(1, iolab_ts)
  return tonumber(iolab_ts.tv_sec) * 1000 + tonumber(iolab_ts.tv_nsec) / 1e6
end
local iolab_interval_ms = 1000 / %(rate_per_thread).6f
local iolab_next_due = nil

function delay()
  local now = iolab_now_ms()
  if iolab_next_due == nil then iolab_next_due = now end
  local due = iolab_next_due
  iolab_next_due = iolab_next_due + iolab_interval_ms
  local wait = due - now
  if wait <= 0 then return 0 end
  return math.floor(wait + 0.5)
end
"""


def pace_lua(rate: float, threads: int) -> str:
    return PACE_LUA % {"rate_per_thread": rate / threads}
