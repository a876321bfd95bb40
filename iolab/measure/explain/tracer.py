"""Trace every output syscall of a server's process tree: bpftrace first, strace if not, else nothing.

Both tracers give the same thing: per (process, thread, fd, syscall) the number of calls, the bytes they
returned, their total duration and a log2 histogram of it. Aggregating in the kernel (bpftrace maps) keeps
the cost per call to a few hundred nanoseconds; strace stops the thread at every call and costs far more,
which the explain record says (``slowdown``).

bpftrace also notes, in the kernel, which fds were returned by ``accept``/``accept4`` (a client's
connection) or passed to ``connect`` (a connection the server opened) since the trace began, so a client
socket that was opened and closed between two looks at /proc is still known for what it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from iolab.measure import procs

OUTPUT_SYSCALLS = ("write", "writev", "pwrite64", "pwritev", "send", "sendto", "sendmsg", "sendmmsg",
                   "sendfile64")
# The syscalls whose first argument is not called fd in the tracepoint's format.
_FD_ARG = {"sendfile64": "out_fd"}
# Return values that are not bytes: sendmmsg returns the number of messages sent.
_NOT_BYTES = {"sendmmsg"}
TRACEFS = "/sys/kernel/tracing"
_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0

# How the fd came to be, as bpftrace saw it since the trace began (0: before the trace, or otherwise).
ORIGIN_UNKNOWN, ORIGIN_ACCEPTED, ORIGIN_CONNECTED = 0, 1, 2


class TracerUnavailable(Exception):
    """This tracer cannot run here; the message says why, in words for the record."""


@dataclass
class CallGroup:
    """The output calls of one thread on one fd with one syscall."""

    pid: int
    tid: int
    fd: int
    syscall: str
    calls: int = 0
    bytes: int | None = 0
    total_ns: int = 0
    # log2 buckets of the call's duration: (lowest ns, highest ns, calls)
    hist: list[tuple[int, int, int]] = field(default_factory=list)
    origin: int = ORIGIN_UNKNOWN
    link: str | None = None  # strace -yy's description of the fd at the time of the call


@dataclass(frozen=True)
class Trace:
    method: str
    groups: tuple[CallGroup, ...]
    thread_names: dict[int, str] = field(default_factory=dict)  # tid → comm at the time of its calls
    note: str | None = None  # what went wrong with the trace itself (then its groups are not the whole story)


def tracefs_ready() -> str | None:
    """None when the syscall tracepoints can be used, else why not; mounts tracefs when root and absent."""
    events = f"{TRACEFS}/events/syscalls"
    if not os.path.isdir(events) and os.geteuid() == 0 and os.path.isdir(TRACEFS):
        subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if not os.path.isdir(events):
        return f"no syscall tracepoints ({events} is missing: tracefs not mounted, or a kernel without them)"
    return None


def available_syscalls() -> list[str]:
    """The output syscalls this kernel has tracepoints for (x86-64 has no plain send)."""
    return [s for s in OUTPUT_SYSCALLS if os.path.isdir(f"{TRACEFS}/events/syscalls/sys_enter_{s}")]


def bpftrace_program(pids: Sequence[int], syscalls: Sequence[str]) -> str:
    pred = " || ".join(f"pid == {p}" for p in pids)
    lines = ['BEGIN { printf("ready\\n"); }']
    for s in syscalls:
        # The syscall as its index in OUTPUT_SYSCALLS: a string in a map key trips bpftrace 0.17's stack
        # layout (a misaligned access the verifier refuses).
        i = OUTPUT_SYSCALLS.index(s)
        fd = _FD_ARG.get(s, "fd")
        lines.append(f"tracepoint:syscalls:sys_enter_{s} /{pred}/ {{ @fd[tid] = args->{fd}; @t0[tid] = nsecs; }}")
        ret = "0" if s in _NOT_BYTES else "(args->ret > 0 ? args->ret : 0)"
        lines.append(
            f"tracepoint:syscalls:sys_exit_{s} /@t0[tid]/ {{ $d = nsecs - @t0[tid]; $f = @fd[tid]; "
            f"$o = @origin[pid, $f]; "
            f"@n[pid, tid, $f, {i}, $o] = count(); @b[pid, tid, $f, {i}, $o] = sum({ret}); "
            f"@ns[pid, tid, $f, {i}, $o] = sum($d); @h[pid, tid, $f, {i}, $o] = hist($d); @comm[tid] = comm; "
            f"delete(@t0[tid]); delete(@fd[tid]); }}")
    for acc in ("accept", "accept4"):
        lines.append(f"tracepoint:syscalls:sys_exit_{acc} /({pred}) && args->ret >= 0/ "
                     f"{{ @origin[pid, args->ret] = {ORIGIN_ACCEPTED}; }}")
    lines.append(f"tracepoint:syscalls:sys_enter_connect /{pred}/ {{ @origin[pid, args->fd] = {ORIGIN_CONNECTED}; }}")
    lines.append(f"tracepoint:syscalls:sys_enter_close /{pred}/ {{ delete(@origin[pid, args->fd]); }}")
    lines.append("END { clear(@t0); clear(@fd); clear(@origin); }")
    return "\n".join(lines) + "\n"


def parse_bpftrace(text: str, names: dict[int, str] | None = None) -> list[CallGroup]:
    """bpftrace's JSON lines (``-f json``) at exit → call groups; thread names (comm) into ``names``."""
    groups: dict[tuple[int, int, int, str, int], CallGroup] = {}

    def group(key: str) -> CallGroup:
        pid, tid, fd, index, origin = key.split(",")
        syscall = OUTPUT_SYSCALLS[int(index)]
        k = (int(pid), int(tid), int(fd), syscall, int(origin))
        if k not in groups:
            groups[k] = CallGroup(k[0], k[1], k[2], syscall, origin=k[4],
                                  bytes=None if syscall in _NOT_BYTES else 0)
        return groups[k]

    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(doc, dict) or doc.get("type") not in ("map", "hist"):
            continue
        for name, values in (doc.get("data") or {}).items():
            if name == "@comm":
                if names is not None:
                    names.update({int(k): str(v) for k, v in values.items()})
                continue
            for key, value in values.items():
                g = group(key)
                if name == "@n":
                    g.calls = int(value)
                elif name == "@b" and g.bytes is not None:
                    g.bytes = int(value)
                elif name == "@ns":
                    g.total_ns = int(value)
                elif name == "@h":
                    g.hist = [(int(b.get("min", 0)), int(b.get("max", b.get("min", 0))), int(b["count"]))
                              for b in value]
    return [g for g in groups.values() if g.calls]


def _spawn(argv: list[str], *, stdout: int, stderr: int) -> subprocess.Popen[bytes]:
    """A tracer process that dies with iolab (procs.py), in its own group so a Ctrl-C reaches it through
    us, not the terminal: it has to print its maps after the load, not when the user presses keys."""
    procs.guard().start()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                            start_new_session=True, close_fds=True, preexec_fn=procs.die_with_parent())
    procs.guard().watch(proc.pid)
    return proc


def _end(proc: subprocess.Popen[bytes]) -> bool:
    """SIGINT (bpftrace prints its maps, strace detaches), SIGKILL after a grace; always reaped.
    True when it ended by itself."""
    ended = True
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        ended = False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    procs.guard().forget(proc.pid)
    return ended


class _Reader(threading.Thread):
    """Drains a pipe so the tracer never blocks on it; ``on_line`` sees each line."""

    def __init__(self, stream: object, on_line: object) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self._on_line = on_line
        self.ready = threading.Event()

    def run(self) -> None:
        for raw in self._stream:  # type: ignore[attr-defined]
            self._on_line(raw.decode(errors="replace"))  # type: ignore[operator]
        self.ready.set()


class BpftraceTracer:
    method = "bpftrace"

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: list[str] = []
        self._err: list[str] = []
        self._ready = threading.Event()
        self._readers: list[_Reader] = []

    @staticmethod
    def check() -> None:
        if shutil.which("bpftrace") is None:
            raise TracerUnavailable("bpftrace is not installed")
        if os.geteuid() != 0:
            raise TracerUnavailable("bpftrace needs root")
        why = tracefs_ready()
        if why:
            raise TracerUnavailable(why)

    def start(self, pids: Sequence[int]) -> None:
        self.check()
        prog = bpftrace_program(pids, available_syscalls())
        self._proc = _spawn(["bpftrace", "-f", "json", "-e", prog], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)

        def out(line: str) -> None:
            if '"printf"' in line and "ready" in line:
                self._ready.set()
            self._lines.append(line)

        self._readers = [_Reader(self._proc.stdout, out), _Reader(self._proc.stderr, self._err.append)]
        for r in self._readers:
            r.start()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not self._ready.wait(0.05):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                errors = [e.strip() for e in self._err if "ERROR" in e and "RLIMIT_MEMLOCK" not in e]
                raise TracerUnavailable("bpftrace did not start: " + ("; ".join(errors[:2]) or "no output"))

    def stop(self) -> Trace:
        ended = self.close()
        names: dict[int, str] = {}
        groups = parse_bpftrace("".join(self._lines), names)
        note = None
        if not ended:
            note = f"bpftrace did not end within {_STOP_TIMEOUT_S:g} s of SIGINT and was killed: its maps are lost"
        elif not groups:
            errors = [e.strip() for e in self._err if e.strip() and "RLIMIT_MEMLOCK" not in e]
            note = "bpftrace printed no calls" + (f" ({'; '.join(errors[:2])})" if errors else "")
        return Trace(self.method, tuple(groups), names, note)

    def close(self) -> bool:
        ended = True
        if self._proc is not None:
            ended = _end(self._proc)
            for r in self._readers:
                r.join(30)
            self._proc = None
        return ended


# strace -f -yy -T: "[pid 12] sendto(5<TCP:[127.0.0.1:80->127.0.0.1:5]>, ""..., 145, 0, NULL, 0) = 145 <0.000020>"
_CALL = re.compile(r"^(?:\[pid\s+(\d+)\] )?(\w+)\((\d+)(?:<(.*?)>)?, (.*)$")
_RESUMED = re.compile(r"^(?:\[pid\s+(\d+)\] )?<\.\.\. (\w+) resumed>(.*)$")
_RESULT = re.compile(r"= (-?\d+)(?: [A-Z]\w*.*?)? <(\d+\.\d+)>\s*$")


def _bucket(ns: int) -> tuple[int, int]:
    if ns <= 0:
        return 0, 0
    lo = 1 << (ns.bit_length() - 1)
    return lo, 2 * lo - 1


class StraceParser:
    """strace's lines → call groups, as they come (calls split by another thread's line included)."""

    def __init__(self, main_pid: int, tgid_of: dict[int, int]) -> None:
        self.main_pid = main_pid
        self.tgid_of = tgid_of  # thread id → process id, for the threads known when the trace began
        self.groups: dict[tuple[int, int, str, str | None], CallGroup] = {}
        self._hists: dict[tuple[int, int, str, str | None], dict[tuple[int, int], int]] = {}
        self._pending: dict[int, tuple[str, int, str | None]] = {}

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        m = _CALL.match(line)
        if m and m.group(2) in OUTPUT_SYSCALLS:
            tid = int(m.group(1) or self.main_pid)
            if line.endswith("<unfinished ...>"):
                self._pending[tid] = (m.group(2), int(m.group(3)), m.group(4))
                return
            self._add(tid, m.group(2), int(m.group(3)), m.group(4), line)
            return
        r = _RESUMED.match(line)
        if r:
            tid = int(r.group(1) or self.main_pid)
            pending = self._pending.pop(tid, None)
            if pending is not None and pending[0] == r.group(2):
                self._add(tid, pending[0], pending[1], pending[2], line)

    def _add(self, tid: int, syscall: str, fd: int, link: str | None, line: str) -> None:
        res = _RESULT.search(line)
        if res is None:
            return  # the thread was killed inside the call: no result, no duration
        ret, ns = int(res.group(1)), round(float(res.group(2)) * 1e9)
        key = (tid, fd, syscall, link)
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = CallGroup(self.tgid_of.get(tid, self.main_pid), tid, fd, syscall,
                                             bytes=None if syscall in _NOT_BYTES else 0, link=link)
            self._hists[key] = {}
        g.calls += 1
        if g.bytes is not None and ret > 0:
            g.bytes += ret
        g.total_ns += ns
        b = _bucket(ns)
        self._hists[key][b] = self._hists[key].get(b, 0) + 1

    def result(self) -> list[CallGroup]:
        for key, g in self.groups.items():
            g.hist = sorted((lo, hi, n) for (lo, hi), n in self._hists[key].items())
        return list(self.groups.values())


def _traced(pid: int) -> bool:
    """Is every thread of ``pid`` attached (TracerPid set)?"""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True  # gone: nothing left to wait for
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("TracerPid:") and line.split()[1] == "0":
                        return False
        except OSError:
            continue
    return True


class StraceTracer:
    method = "strace"

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._parser: StraceParser | None = None
        self._reader: _Reader | None = None

    @staticmethod
    def check() -> None:
        if shutil.which("strace") is None:
            raise TracerUnavailable("strace is not installed")

    def start(self, pids: Sequence[int]) -> None:
        self.check()
        tgid_of: dict[int, int] = {}
        for pid in pids:
            with contextlib.suppress(OSError):
                for t in os.listdir(f"/proc/{pid}/task"):
                    tgid_of[int(t)] = pid
        self._parser = StraceParser(pids[0], tgid_of)
        argv = ["strace", "-f", "-qq", "-yy", "-T", "-s", "0", "-e", "signal=none",
                "-e", "trace=" + ",".join(s for s in OUTPUT_SYSCALLS if s != "send" or _has_send())]
        for pid in pids:
            argv += ["-p", str(pid)]
        self._proc = _spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._reader = _Reader(self._proc.stderr, self._parser.feed)
        self._reader.start()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while not all(_traced(p) for p in pids):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise TracerUnavailable("strace could not attach to the server (ptrace not permitted?)")
            time.sleep(0.05)

    def stop(self) -> Trace:
        ended = self.close()
        assert self._parser is not None
        groups = self._parser.result()
        note = None if ended else f"strace did not detach within {_STOP_TIMEOUT_S:g} s and was killed"
        return Trace(self.method, tuple(groups), note=note)

    def close(self) -> bool:
        ended = True
        if self._proc is not None:
            ended = _end(self._proc)
            if self._reader is not None:
                self._reader.join(30)
            self._proc = None
        return ended


def _has_send() -> bool:
    """strace refuses a syscall name the architecture does not have (x86-64 has no send)."""
    return os.path.isdir(f"{TRACEFS}/events/syscalls/sys_enter_send")


Tracer = BpftraceTracer | StraceTracer


def choose(method: str) -> tuple[Tracer | None, list[str]]:
    """The tracer for ``method`` (auto: the best that can run), and why the better ones could not."""
    why: list[str] = []
    order = {"auto": ("bpftrace", "strace"), "bpftrace": ("bpftrace",), "strace": ("strace",)}.get(method, ())
    for name in order:
        tracer: Tracer = BpftraceTracer() if name == "bpftrace" else StraceTracer()
        try:
            tracer.check()
        except TracerUnavailable as exc:
            why.append(str(exc))
            continue
        return tracer, why
    if method == "none":
        why.append("--explain-method none")
    return None, why
