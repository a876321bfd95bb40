"""The one reader of /proc: every file iolab reads there, parsed into small frozen records.

Modelled on psutil's ``_pslinux.py``: one read per file, parsed from bytes, errors translated once.

- A process or thread that exits between listing and reading shows as ENOENT or ESRCH, or as an empty
  read of a file opened just before it went: ``Vanished`` (a ``NoSuchProcess``). Callers that walk the
  threads of a process skip a vanished thread; for the process itself it means "gone".
- EACCES/EPERM (another user's process, a ``hidepid=`` mount): ``AccessDenied``. Any other error, or content
  that does not parse (a kernel without the line): ``ProbeError`` naming the file.
- ``root`` (default ``/proc``) lets tests feed fake /proc bytes for what a real process cannot stage.

Fields of ``/proc/PID/stat``: the command name (comm) may hold spaces and parentheses, so the line is split
at its last ')'; field N of proc(5) is then ``fields[N - 3]``. comm is printed there unescaped, exactly as
``/proc/PID/task/TID/comm`` prints it (both via ``proc_task_name(..., escape=false)``), so the name is
taken from stat: one file fewer per thread in the probe's sampling loop.

Two readers stay outside, on purpose: ``procs._start_time`` runs in the guard process, a script started
with ``python -I -S`` that cannot import iolab; ``outputs._umask`` sits below the measure layer (results
import it).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from iolab.errors import AccessDenied, NoSuchProcess, ProbeError

ROOT = "/proc"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Larger than any status/stat/io file; proc's seq_file fills the whole buffer, so a short read is EOF.
_READ_SIZE = 16384
_VOL = b"\nvoluntary_ctxt_switches:"
_INVOL = b"\nnonvoluntary_ctxt_switches:"
_IO_LINE_RE = re.compile(rb"^(\w+):\s*(\d+)", re.M)


class Vanished(NoSuchProcess):
    """The process or thread exited between listing and reading (ENOENT, ESRCH, or an empty read)."""


@contextlib.contextmanager
def _translated(path: str) -> Iterator[None]:
    """OSError → Vanished, AccessDenied or ProbeError, each naming the path (psutil's wrap_exceptions)."""
    try:
        yield
    except (FileNotFoundError, ProcessLookupError):
        raise Vanished(f"{path}: gone (the process or thread exited)") from None
    except PermissionError:
        raise AccessDenied(f"{path}: permission denied (run iolab as the server's user, or as root)") from None
    except OSError as exc:
        raise ProbeError(f"{path}: {exc.strerror}") from None


def _read(path: str, *, empty_ok: bool = False) -> bytes:
    """The whole file, in as few reads as the kernel allows; errors translated as the module says."""
    with _translated(path):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, _READ_SIZE)
            if len(data) == _READ_SIZE:
                chunks = [data]
                while chunk := os.read(fd, _READ_SIZE):
                    chunks.append(chunk)
                data = b"".join(chunks)
        finally:
            os.close(fd)
    if not data and not empty_ok:  # a task that exited after open
        raise Vanished(f"{path}: empty (the process or thread exited)")
    return data


def _unexpected(path: str, data: bytes) -> ProbeError:
    return ProbeError(f"{path}: unexpected content {data[:200]!r}")


def _nth_number(path: str, n: int) -> int:
    """The n-th number of a one-line file (statm, schedstat)."""
    data = _read(path)
    try:
        return int(data.split()[n])
    except (IndexError, ValueError):
        raise _unexpected(path, data) from None


def _base(pid: int | str, tid: int | None, root: str) -> str:
    return f"{root}/{pid}" if tid is None else f"{root}/{pid}/task/{tid}"


# ------------------------------------------------------------------------------------------ /PID/stat


@dataclass(frozen=True)
class Stat:
    """One line of /proc/PID/stat (or task/TID/stat): the fields iolab uses."""

    name: str  # comm, 15 bytes at most, as the process set it
    state: str  # one letter: R, S, D, Z (zombie), X (dead) …
    ppid: int
    session: int
    utime_ticks: int  # this task (or, for the process file, all its threads, exited ones too)
    stime_ticks: int
    start_ticks: int  # clock ticks after boot: with the pid, names the process across pid reuse

    @property
    def gone(self) -> bool:
        """Exited, not reaped yet: a zombie still has /proc entries."""
        return self.state in ("Z", "X")


def _parse_stat(data: bytes, path: str) -> Stat:
    rpar = data.rfind(b")")
    fields = data[rpar + 2 :].split()
    try:
        # Field N of proc(5) is fields[N - 3]: state 3, ppid 4, session 6, utime 14, stime 15, starttime 22.
        return Stat(
            name=data[data.find(b"(") + 1 : rpar].decode("utf-8", "replace"),
            state=fields[0].decode("ascii", "replace"),
            ppid=int(fields[1]),
            session=int(fields[3]),
            utime_ticks=int(fields[11]),
            stime_ticks=int(fields[12]),
            start_ticks=int(fields[19]),
        )
    except (IndexError, ValueError):
        raise _unexpected(path, data) from None


def stat(pid: int, tid: int | None = None, root: str = ROOT) -> Stat:
    path = f"{_base(pid, tid, root)}/stat"
    return _parse_stat(_read(path), path)


# ---------------------------------------------------------------------------------------- /PID/status


@dataclass(frozen=True)
class CtxSwitches:
    """/proc/PID/status's two counters: of that one task (the leader's file: the main thread only)."""

    voluntary: int
    involuntary: int


def _parse_ctx_switches(data: bytes, path: str) -> CtxSwitches:
    # The two lines close the status file; rfind beats a regex over ~1.5 kB, once per thread per tick.
    i = data.rfind(_VOL)
    j = data.find(_INVOL, i)
    try:
        if i < 0 or j < 0:
            raise ValueError
        return CtxSwitches(int(data[i + len(_VOL) : j]), int(data[j + len(_INVOL) :].split(b"\n", 1)[0]))
    except ValueError:
        raise ProbeError(f"{path}: no voluntary_ctxt_switches lines (Linux older than 2.6.23?)") from None


def ctx_switches(pid: int, tid: int | None = None, root: str = ROOT) -> CtxSwitches:
    path = f"{_base(pid, tid, root)}/status"
    return _parse_ctx_switches(_read(path), path)


# ------------------------------------------------------------------------------ /PID/io, statm, schedstat


@dataclass(frozen=True)
class IoCounters:
    """/proc/PID/io: every thread of the process, exited ones and reaped children included."""

    write_syscalls: int  # syscw: write, writev, pwrite, sendfile … on every descriptor
    wchar_bytes: int  # what those calls were given (not what reached a disk)
    read_syscalls: int | None  # syscr; None where the kernel does not print it
    rchar_bytes: int | None


def _parse_io(data: bytes, path: str) -> IoCounters:
    lines = {k: int(v) for k, v in _IO_LINE_RE.findall(data)}
    if b"syscw" not in lines or b"wchar" not in lines:
        raise ProbeError(f"{path}: no syscw/wchar lines")
    return IoCounters(write_syscalls=lines[b"syscw"], wchar_bytes=lines[b"wchar"],
                      read_syscalls=lines.get(b"syscr"), rchar_bytes=lines.get(b"rchar"))


def io(pid: int, root: str = ROOT) -> IoCounters:
    """Readable for a zombie too: after ``waitid(WNOWAIT)`` its counters are final."""
    path = f"{root}/{pid}/io"
    return _parse_io(_read(path), path)


def rss_bytes(pid: int, root: str = ROOT) -> int:
    """Resident set size from statm (one small line; status's VmRSS is the same figure in kB)."""
    return _nth_number(f"{root}/{pid}/statm", 1) * PAGE_SIZE


def has_schedstat(root: str = ROOT) -> bool:
    """Kernels without CONFIG_SCHEDSTATS/SCHED_INFO have no schedstat."""
    return os.path.exists(f"{root}/self/schedstat")


def run_time_ns(pid: int, tid: int | None = None, root: str = ROOT) -> int:
    """Time on the CPU from schedstat, in ns (stat's ticks of 10 ms round a quiet thread's share to 0)."""
    return _nth_number(f"{_base(pid, tid, root)}/schedstat", 0)


# ------------------------------------------------------------------------------- threads and processes


def task_ids(pid: int, root: str = ROOT) -> list[int]:
    """The threads of a process, as listed now (any may exit before it is read)."""
    path = f"{root}/{pid}/task"
    with _translated(path):
        return [int(t) for t in os.listdir(path)]


def has_children_files(pid: int, root: str = ROOT) -> bool:
    """Kernels without CONFIG_PROC_CHILDREN have no task/TID/children."""
    return os.path.exists(f"{root}/{pid}/task/{pid}/children")


def children(pid: int, tid: int, root: str = ROOT) -> list[int]:
    """The children the thread forked (each thread lists its own); empty when it has none."""
    return [int(c) for c in _read(f"{root}/{pid}/task/{tid}/children", empty_ok=True).split()]


def pids(root: str = ROOT) -> list[int]:
    """Every process, as listed now."""
    return [int(e.name) for e in os.scandir(root) if e.name.isdigit()]


def cmdline(pid: int, root: str = ROOT) -> list[str]:
    """The arguments (empty for a kernel thread or a zombie)."""
    data = _read(f"{root}/{pid}/cmdline", empty_ok=True)
    return [a.decode(errors="replace") for a in data.split(b"\0") if a]


def exe(pid: int, root: str = ROOT) -> str:
    """The executable's path (a link only its owner, or root, may follow)."""
    path = f"{root}/{pid}/exe"
    with _translated(path):
        return os.readlink(path)


def fd_flags(pid: int, fd: int, root: str = ROOT) -> int:
    """The open flags of one descriptor (fdinfo's ``flags:``, octal), O_NONBLOCK among them."""
    path = f"{root}/{pid}/fdinfo/{fd}"
    data = _read(path)
    for line in data.splitlines():
        if line.startswith(b"flags:"):
            try:
                return int(line.split()[1], 8)
            except (IndexError, ValueError):
                break
    raise ProbeError(f"{path}: no flags line")


# --------------------------------------------------------------------- descriptors and sockets (explain)


def fd_links(pid: int, root: str = ROOT) -> dict[int, str]:
    """Every open descriptor and where its link points ("pipe:[5]", "socket:[7]", a path …), as seen now;
    a descriptor closed between the listing and its readlink is left out."""
    path = f"{root}/{pid}/fd"
    with _translated(path):
        names = os.listdir(path)
    out: dict[int, str] = {}
    for name in names:
        with contextlib.suppress(OSError):
            out[int(name)] = os.readlink(f"{path}/{name}")
    return out


@dataclass(frozen=True)
class SocketInfo:
    """One socket of a network namespace, from /proc/PID/net/{tcp,tcp6,udp,udp6,unix}."""

    proto: str  # tcp | udp | unix
    local_port: int | None
    remote: str  # "ip:port", a unix socket's path, or ""
    listening: bool


def _hex_addr(text: str) -> tuple[str, int]:
    """'0100007F:1F90' → ('127.0.0.1', 8080); an IPv4-mapped IPv6 address as IPv4, others in brackets."""
    addr, _, port = text.partition(":")
    if len(addr) == 8:
        ip = ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
    else:
        raw = b"".join(bytes.fromhex(addr[i:i + 8])[::-1] for i in range(0, 32, 8))
        if raw[:12] == b"\0" * 10 + b"\xff\xff":
            ip = ".".join(str(b) for b in raw[12:])
        else:
            ip = "[" + ":".join(raw[i:i + 2].hex() for i in range(0, 16, 2)) + "]"
    return ip, int(port, 16)


def _parse_net_inet(text: str, proto: str) -> dict[int, SocketInfo]:
    out: dict[int, SocketInfo] = {}
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 10:
            continue
        try:
            _, lport = _hex_addr(f[1])
            rip, rport = _hex_addr(f[2])
            inode = int(f[9])
        except ValueError:
            continue
        if inode:  # 0: a TIME_WAIT entry, no socket any more
            out[inode] = SocketInfo(proto, lport, f"{rip}:{rport}", proto == "tcp" and f[3] == "0A")
    return out


def _parse_net_unix(text: str) -> dict[int, SocketInfo]:
    out: dict[int, SocketInfo] = {}
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 7:
            continue
        with contextlib.suppress(ValueError):
            out[int(f[6])] = SocketInfo("unix", None, f[7] if len(f) > 7 else "", f[3] == "00010000")
    return out


def sockets(pid: int, root: str = ROOT) -> dict[int, SocketInfo]:
    """Every socket of the process's network namespace, by inode (a table that cannot be read is skipped)."""
    out: dict[int, SocketInfo] = {}
    for name, proto in (("tcp", "tcp"), ("tcp6", "tcp"), ("udp", "udp"), ("udp6", "udp")):
        with contextlib.suppress(NoSuchProcess, AccessDenied, ProbeError):
            out.update(_parse_net_inet(_read(f"{root}/{pid}/net/{name}", empty_ok=True).decode("ascii", "replace"),
                                       proto))
    with contextlib.suppress(NoSuchProcess, AccessDenied, ProbeError):
        out.update(_parse_net_unix(_read(f"{root}/{pid}/net/unix", empty_ok=True).decode(errors="replace")))
    return out


# ------------------------------------------------------------------------------------- cgroups, mounts


@dataclass(frozen=True)
class CgroupLine:
    """One line of /proc/PID/cgroup: a v1 hierarchy names its controllers, the v2 line names none."""

    controllers: frozenset[str]
    path: str


def cgroups(pid: int | str = "self", root: str = ROOT) -> list[CgroupLine]:
    out = []
    for line in _read(f"{root}/{pid}/cgroup").decode(errors="replace").splitlines():
        _, ctrls, path = line.split(":", 2)
        out.append(CgroupLine(frozenset(c for c in ctrls.split(",") if c), path))
    return out


@dataclass(frozen=True)
class Mount:
    """One mount as /proc/self/mountinfo shows it (octal escapes undone)."""

    point: str
    root: str  # which directory of the file system is mounted there ("/" unless bind-mounted)
    fstype: str
    options: frozenset[str]  # the mount's and the super block's, together


def _unescape(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mounts(root: str = ROOT) -> list[Mount]:
    """Every mount; from /proc/mounts (which lacks the root column) where there is no mountinfo."""
    found: list[Mount] = []
    try:
        text = _read(f"{root}/self/mountinfo").decode(errors="replace")
    except NoSuchProcess:
        pass
    else:
        for line in text.splitlines():
            pre, _, post = line.partition(" - ")
            fields, tail = pre.split(), post.split()
            if len(fields) >= 6 and len(tail) >= 3:
                found.append(Mount(_unescape(fields[4]), _unescape(fields[3]), tail[0],
                                   frozenset(fields[5].split(",")) | frozenset(tail[2].split(","))))
        return found
    try:  # odd chroots
        text = _read(f"{root}/mounts").decode(errors="replace")
    except NoSuchProcess:
        return found
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4:
            found.append(Mount(_unescape(f[1]), "/", f[2], frozenset(f[3].split(","))))
    return found


# --------------------------------------------------------------------------------------- the machine


@dataclass(frozen=True)
class CpuTimes:
    """/proc/stat's first line: all CPUs together, in clock ticks."""

    user_ticks: int  # guest time is already inside user
    nice_ticks: int
    system_ticks: int
    idle_ticks: int
    iowait_ticks: int
    irq_ticks: int
    softirq_ticks: int
    steal_ticks: int  # 0 on kernels that do not print it

    @property
    def busy_ticks(self) -> int:
        return self.user_ticks + self.nice_ticks + self.system_ticks + self.irq_ticks + self.softirq_ticks


def cpu_times(root: str = ROOT) -> CpuTimes:
    path = f"{root}/stat"
    first = _read(path).split(b"\n", 1)[0]
    try:
        fields = [int(x) for x in first.split()[1:]]
    except ValueError:
        raise _unexpected(path, first) from None
    if len(fields) < 4:
        raise _unexpected(path, first)
    return CpuTimes(*(fields + [0] * 8)[:8])


def cpu_model(root: str = ROOT) -> str | None:
    """The CPU as /proc/cpuinfo names it (its first "model name"); None where it names none (ARM)."""
    for line in _read(f"{root}/cpuinfo").decode(errors="replace").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None
