"""Where a server's fds lead: /proc/PID/fd links looked at while the explain round runs, socket inodes
matched against the server's own /proc/PID/net/{tcp,tcp6,udp,udp6,unix}, and thread names.

A client's connection may open and close between two looks, and its fd number is reused at once: what
bpftrace saw in the kernel (accept/connect, tracer.py) or strace printed at the call wins over the looks.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from iolab.errors import AccessDenied, NoSuchProcess, ProbeError
from iolab.measure import procfs
from iolab.measure.explain.tracer import ORIGIN_ACCEPTED, ORIGIN_CONNECTED
from iolab.measure.procfs import SocketInfo

DESTINATIONS = ("client-socket", "stdout", "stderr", "loop-wakeup", "file", "collector-socket", "other")


@dataclass(frozen=True)
class Where:
    destination: str
    target: str
    fd_kind: str


_SOCKET = re.compile(r"socket:\[(\d+)\]")
_PIPE = re.compile(r"pipe:\[(\d+)\]")


def classify(fd: int, link: str, sockets: dict[int, SocketInfo], held: set[str], server_port: int | None) -> Where:
    """One fd of a process: its destination, target and kind, from its /proc link.

    ``held``: every link the process was seen holding, to tell an event loop's self-pipe or socketpair
    (both ends held by the process itself) from a pipe or socket to someone else.
    """
    if fd == 1:
        return Where("stdout", link, _kind(link))
    if fd == 2:
        return Where("stderr", link, _kind(link))
    if link == "anon_inode:[eventfd]":
        return Where("loop-wakeup", "eventfd", "eventfd")
    if _PIPE.fullmatch(link):
        return Where("loop-wakeup" if link in held else "other", "self-pipe" if link in held else link, "pipe")
    m = _SOCKET.fullmatch(link)
    if m:
        inode = int(m.group(1))
        info = sockets.get(inode)
        if info is None:
            return Where("other", link, "socket")
        if info.proto == "unix":
            if info.remote:
                return Where("collector-socket", f"unix:{info.remote}", "unix")
            pair = {f"socket:[{inode - 1}]", f"socket:[{inode + 1}]"}
            pair = {p for p in pair if p in held and sockets.get(int(p[8:-1]), info).proto == "unix"}
            if pair:
                return Where("loop-wakeup", "socketpair", "unix")
            return Where("other", "unix socket", "unix")
        if info.proto == "tcp" and server_port is not None and info.local_port == server_port:
            return Where("client-socket", f"port {server_port}", "tcp")
        return Where("collector-socket", f"{info.proto} {info.remote}", info.proto)
    if link.startswith("/"):
        return Where("file", link, "file")
    return Where("other", link, _kind(link))


def _kind(link: str) -> str:
    if link.startswith("pipe:"):
        return "pipe"
    if link.startswith("socket:"):
        return "socket"
    if link.startswith("/dev/"):
        return "device"
    if link.startswith("/"):
        return "file"
    return link.split(":")[0] or "unknown"


_STRACE_INET = re.compile(r"(TCP|UDP)v?6?:\[(.*):(\d+)->(.*):(\d+)\]")
_STRACE_UNIX = re.compile(r"UNIX(?:-\w+)?:\[(\d+)(?:->(\d+))?(?:,\"?(.*?)\"?)?\]")


def classify_strace(fd: int, link: str, held: set[str], server_port: int | None) -> Where | None:
    """strace -yy's own description of the fd at the call, when it says enough (None: ask /proc)."""
    if fd in (1, 2):
        return Where("stdout" if fd == 1 else "stderr", link, _kind(link))
    m = _STRACE_INET.fullmatch(link)
    if m:
        proto = m.group(1).lower()
        if proto == "tcp" and server_port is not None and int(m.group(3)) == server_port:
            return Where("client-socket", f"port {server_port}", "tcp")
        return Where("collector-socket", f"{proto} {m.group(4)}:{m.group(5)}", proto)
    u = _STRACE_UNIX.fullmatch(link)
    if u:
        if u.group(3):
            return Where("collector-socket", f"unix:{u.group(3)}", "unix")
        if u.group(2) and f"socket:[{u.group(2)}]" in held:
            return Where("loop-wakeup", "socketpair", "unix")
        return Where("other", "unix socket", "unix")
    if link.startswith(("pipe:", "anon_inode:")):
        return None
    return classify(fd, link, {}, held, server_port)


class FdWatch:
    """Looks at the server's fds and thread names every ``interval_s`` on a thread of its own."""

    def __init__(self, pids: Callable[[], Iterable[int]], server_port: int | None, interval_s: float = 0.05):
        self._pids = pids
        self.server_port = server_port
        self._interval_s = interval_s
        self.seen: dict[tuple[int, int], Counter[str]] = {}
        self.held: dict[int, set[str]] = {}
        self.sockets: dict[int, SocketInfo] = {}
        self.thread_names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="iolab-fdwatch", daemon=True)

    def start(self) -> None:
        self.look()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.look()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.look()

    def look(self) -> None:
        for pid in list(self._pids()):
            try:
                links = procfs.fd_links(pid)
            except (NoSuchProcess, AccessDenied, ProbeError):
                continue
            held = self.held.setdefault(pid, set())
            unknown = False
            for fd, link in links.items():
                self.seen.setdefault((pid, fd), Counter())[link] += 1
                held.add(link)
                m = _SOCKET.fullmatch(link)
                unknown = unknown or bool(m and int(m.group(1)) not in self.sockets)
            if unknown:  # a socket not seen before: read the namespace's tables again
                self.sockets.update(procfs.sockets(pid))
            with contextlib.suppress(NoSuchProcess, AccessDenied, ProbeError):
                for tid in procfs.task_ids(pid):
                    if tid not in self.thread_names:
                        with contextlib.suppress(NoSuchProcess, AccessDenied, ProbeError):
                            self.thread_names[tid] = procfs.stat(pid, tid).name

    def where(self, pid: int, fd: int, origin: int = 0, link: str | None = None) -> Where:
        """What the calls of ``pid`` on ``fd`` wrote to, from the best evidence there is."""
        held = self.held.get(pid, set())
        if link is not None:
            w = classify_strace(fd, link, held, self.server_port)
            if w is not None:
                return w
        if origin == ORIGIN_ACCEPTED:
            return Where("client-socket", f"port {self.server_port}" if self.server_port else "accepted", "tcp")
        links = self.seen.get((pid, fd))
        if origin == ORIGIN_CONNECTED:
            if links:
                w = classify(fd, links.most_common(1)[0][0], self.sockets, held, self.server_port)
                if w.destination == "collector-socket":
                    return w
            return Where("collector-socket", "a connection the server opened", "socket")
        if not links:
            return Where("other", f"fd {fd}, closed before iolab could look at it", "unknown")
        return classify(fd, links.most_common(1)[0][0], self.sockets, held, self.server_port)
