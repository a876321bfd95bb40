"""Who waits: py-spy samples the server's Python stacks (idle threads included, native frames on) and
this module keeps the samples whose thread was inside an output syscall or waiting for the GIL.

py-spy pauses the process at every sample to read its memory: that is the cost of this view, so it
samples at a low rate and only during the second half of the explain round (the first half measures the
tracer's own cost; the record gives both slowdowns).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from iolab.measure.explain.tracer import _end, _Reader, _spawn

RATE_HZ = 47  # prime, so the samples do not lock onto a periodic timer of the server
# libc's entry points of the output syscalls, as py-spy names native frames.
_OUTPUT_FRAMES = {"write", "__write", "__libc_write", "writev", "__writev", "pwrite", "pwrite64", "__pwrite64",
                  "pwritev", "send", "__send", "__libc_send", "sendto", "__sendto", "__libc_sendto", "sendmsg",
                  "__sendmsg", "__libc_sendmsg", "sendmmsg", "sendfile", "sendfile64", "uv__write", "uv_try_write"}
# CPython waits for the GIL on a condition variable in take_gil (its own locks use semaphores).
_GIL_FRAMES = {"take_gil", "pthread_cond_timedwait", "pthread_cond_wait", "__pthread_cond_timedwait",
               "__pthread_cond_wait", "PyEval_RestoreThread"}
_FRAME = re.compile(r"^(.*) \((.*?)\)$")
_THREAD = re.compile(r"^thread \((\d+|0x[0-9a-fA-F]+)\): ?(.*)$")


@dataclass(frozen=True)
class Sample:
    tid: int | None
    thread: str
    state: str  # "output-syscall" | "gil-wait" | "other"
    site: str | None  # innermost Python frame "function (file:line)"
    count: int


def py_spy() -> str | None:
    """py-spy from iolab's own environment (a dependency), else from PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def _is_python(loc: str) -> bool:
    return bool(re.search(r"\.pyx?:\d+$", loc))


def parse_raw(text: str) -> list[Sample]:
    """py-spy's raw (collapsed) lines → samples with their thread, state and Python site."""
    out: list[Sample] = []
    for line in text.splitlines():
        if line.startswith("py-spy>") or not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        thread, tid = "?", None
        if frames:
            t = _THREAD.match(frames[0])
            if t:
                thread, frames = t.group(2) or "?", frames[1:]
                tid = int(t.group(1)) if t.group(1).isdigit() else None
        site: str | None = None
        after: list[str] = []  # native frames inside the innermost Python frame
        for f in frames:
            m = _FRAME.match(f)
            if m and _is_python(m.group(2)):
                site, after = f, []
            elif m:
                after.append(m.group(1))
        state = "other"
        if any(name in _OUTPUT_FRAMES for name in after):
            state = "output-syscall"
        elif any(name in _GIL_FRAMES for name in after):
            state = "gil-wait"
        out.append(Sample(tid, thread, state, site, int(count)))
    return out


class Sampler:
    method = "py-spy"

    def __init__(self, pid: int, rate_hz: int = RATE_HZ) -> None:
        self.pid = pid
        self.rate_hz = rate_hz
        self._lines: list[str] = []
        self._err: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._readers: list[_Reader] = []

    def start(self) -> str | None:
        """Start sampling; None, or why it cannot."""
        exe = py_spy()
        if exe is None:
            return "py-spy is not installed"
        argv = [exe, "record", "-p", str(self.pid), "-r", str(self.rate_hz), "--idle", "--threads", "--native",
                "--subprocesses", "-f", "raw", "-o", "/dev/stdout"]
        self._proc = _spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._readers = [_Reader(self._proc.stdout, self._lines.append),
                         _Reader(self._proc.stderr, self._err.append)]
        for r in self._readers:
            r.start()
        return None

    def stop(self) -> tuple[list[Sample], str | None]:
        """The samples, and why there are none when there are none."""
        if self._proc is None:
            return [], "py-spy did not run"
        _end(self._proc)
        for r in self._readers:
            r.join(10)
        self._proc = None
        samples = parse_raw("".join(self._lines))
        if not samples:
            # py-spy's first error line, without the Rust backtrace that follows it
            err = next((e.strip() for e in self._err if e.strip().startswith("Error")), "")[:200]
            return [], f"py-spy gave no samples{': ' + err if err else ''}"
        return samples, None


def counts_by_thread(samples: list[Sample]) -> Counter[str]:
    c: Counter[str] = Counter()
    for s in samples:
        c[s.thread] += s.count
    return c
