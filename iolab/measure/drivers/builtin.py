"""The built-in HTTP/1.1 load driver, parent side: starts the child, reads its result.

The load runs in a child process (``python -m iolab.measure.drivers.builtin_child``, see there), as pyperf runs
its workers, so it can be pinned to a core of its own and its CPU read apart from the server's: the spec
goes in as JSON on stdin, the result comes back as JSON on stdout, ``progress <done> <total>`` lines
come on stderr.

By default every request opens a new connection, sends pre-encoded bytes, reads to the end of the
response and closes, as ``ab`` does without ``-k``. Failures are counted by kind, never raised.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any

from iolab.errors import DriverError
from iolab.measure import procs
from iolab.measure.drivers.base import LoadResult, LoadSpec, ProgressCallback, Schedule
from iolab.measure.drivers.request import encode_request, spec_from_json, spec_to_json

__all__ = ["BuiltinDriver", "encode_request", "run_load", "spec_from_json", "spec_to_json"]

NAME = "builtin"
_STDERR_TAIL = 20
_READ_SIZE = 65536


class BuiltinDriver:
    """Runs the load in a child process. ``command`` replaces the child's argv (tests use it)."""

    name = NAME

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self._command = list(command or [sys.executable, "-m", "iolab.measure.drivers.builtin_child"])

    def run(self, spec: LoadSpec, progress: ProgressCallback | None = None) -> LoadResult:
        encode_request(spec)  # what this driver cannot send is a usage error, before any process starts
        payload = json.dumps(spec_to_json(spec)).encode()
        out, rusage, tail = _run_child(self._command, payload, progress)
        try:
            data = json.loads(out)
            return _result_from_json(data, rusage)
        except (ValueError, KeyError, TypeError) as exc:
            shown = out[:80].decode(errors="replace").strip() or "nothing"
            hint = f" (stderr: {tail[-1]})" if tail else ""
            raise DriverError(f"the builtin driver printed {shown!r}, not a result ({exc}){hint}") from None


def run_load(spec: LoadSpec, progress: ProgressCallback | None = None) -> LoadResult:
    return BuiltinDriver().run(spec, progress)


def _run_child(
    command: list[str], payload: bytes, progress: ProgressCallback | None
) -> tuple[bytes, Any, deque[str]]:
    # Its own session: a Ctrl-C in the terminal reaches us, not the child; we then kill its group below.
    try:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,
            # A SIGKILL of iolab kills the load too. The preexec_fn makes subprocess fork rather than vfork
            # (2-3 ms more CPU in the child): start-up, outside the window the child measures (cpu_load_*).
            preexec_fn=procs.die_with_parent(),
        )
    except OSError as exc:
        raise DriverError(f"cannot start the builtin driver: {exc}") from None
    try:
        out, tail = _exchange(proc, payload, progress)
        rusage = procs.reap(proc)  # rusage of the child alone: the driver's own CPU
    finally:
        procs.leave_nothing(proc)
    if proc.returncode != 0:
        how = (
            f"was killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exited with {proc.returncode}"
        )
        raise DriverError(f"the builtin driver {how}: {tail[-1] if tail else 'no message'}")
    return out, rusage, tail


def _exchange(
    proc: subprocess.Popen[bytes], payload: bytes, progress: ProgressCallback | None
) -> tuple[bytes, deque[str]]:
    """Feed stdin, collect stdout, turn stderr into progress calls, all on this thread (so Ctrl-C lands here)."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin_fd, out_fd, err_fd = proc.stdin.fileno(), proc.stdout.fileno(), proc.stderr.fileno()
    out, err = bytearray(), bytearray()
    tail: deque[str] = deque(maxlen=_STDERR_TAIL)
    pending = memoryview(payload)
    os.set_blocking(stdin_fd, False)
    with selectors.DefaultSelector() as sel:
        sel.register(stdin_fd, selectors.EVENT_WRITE)
        sel.register(out_fd, selectors.EVENT_READ)
        sel.register(err_fd, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                if key.fd == stdin_fd:
                    try:
                        pending = pending[os.write(stdin_fd, pending[:_READ_SIZE]) :]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # the child exited early; its stderr says why
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(stdin_fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(key.fd, _READ_SIZE)
                if not chunk:
                    sel.unregister(key.fd)
                elif key.fd == out_fd:
                    out += chunk
                else:
                    err += chunk
                    *lines, rest = err.split(b"\n")
                    err[:] = rest
                    _stderr_lines(lines, tail, progress)
    _stderr_lines([err], tail, progress)
    return bytes(out), tail


def _stderr_lines(lines: list[bytearray], tail: deque[str], progress: ProgressCallback | None) -> None:
    for raw in lines:
        line = raw.decode(errors="replace").rstrip()
        fields = line.split()
        if len(fields) == 3 and fields[0] == "progress" and fields[1].isdigit() and fields[2].isdigit():
            if progress is not None:
                progress(int(fields[1]), int(fields[2]))
        elif line:
            tail.append(line)






def _result_from_json(data: dict[str, Any], rusage: Any) -> LoadResult:
    return LoadResult(
        driver=NAME,
        requests=int(data["requests"]),
        completed=int(data["completed"]),
        ok_2xx=int(data["ok_2xx"]),
        non_2xx=int(data["non_2xx"]),
        connect_errors=int(data["connect_errors"]),
        timeouts=int(data["timeouts"]),
        other_errors=int(data["other_errors"]),
        status_counts={int(k): int(v) for k, v in data["status_counts"].items()},
        duration_s=float(data["duration_s"]),
        latencies_us=tuple(data["latencies_us"]),
        bytes_received=int(data["bytes_received"]),
        cpu_user_s=rusage.ru_utime,
        cpu_sys_s=rusage.ru_stime,
        errors_sample=tuple(str(e) for e in data["errors_sample"]),
        latencies_uncorrected_us=tuple(data.get("latencies_uncorrected_us", ())),
        timeline_ms=tuple(data.get("timeline_ms", ())),
        cpu_load_user_s=float(data["cpu_load_user_s"]),
        cpu_load_sys_s=float(data["cpu_load_sys_s"]),
        schedule=Schedule(**data["schedule"]) if data.get("schedule") else None,
    )
