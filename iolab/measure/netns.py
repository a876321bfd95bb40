"""A real network between the server under test and a log collector: a namespace, a link, an impairment.

``Network`` builds, with iproute2's ``ip`` and ``tc`` (present wherever network namespaces are usable;
pyroute2 would be one more dependency for the same netlink calls):

- a network namespace ``iolab-<pid>-<n>`` for the collector, with ``lo`` up;
- a point-to-point link from the host namespace into it, addresses on a private /30 (10.234.x.y);
- the impairment on the collector's side (its egress, as ``tc qdisc … netem`` on that side does): a
  delay added to every round trip, a uniform jitter, a loss percentage; the loss also on the host's
  egress, so that a datagram towards the collector (syslog over UDP) can be lost as on a lossy link.

Two methods, reported as ``method``:

- ``netns+netem``: a veth pair, ``netem`` on the namespace's end (the kernel does everything);
- ``netns+tun-relay``: when the kernel has no netem (``CONFIG_NET_SCH_NETEM`` unset, no module) and an
  impairment was asked for, two TUN devices and a relay process (netrelay.py) that carries every packet
  between them and applies the same delay/jitter/loss in userspace. Both ends remain the kernel's TCP/UDP.

Without impairment the method is ``netns`` (a veth pair, no qdisc). A collector outage is the collector
stopped (SIGSTOP), not the link taken down: on a veth, datagrams sent while the peer was down were still
delivered here (6.18), so a link-down outage would not have been one; see collectors.py.

Leaving nothing behind: ``close()`` (also at exit) kills the relay and deletes the namespace, which takes
its end of the link, the qdisc and the addresses with it; the host end goes with its peer. The relay and
the collectors have a parent-death signal (procs.py), so a SIGKILL of iolab leaves at most the namespace
(and a veth pair) behind; ``sweep_stale()``, run before every new network, deletes the namespaces and links
whose owner PID is dead.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from types import TracebackType

from iolab.errors import NetworkError
from iolab.measure import procs

NETNS_DIR = "/run/netns"
_NS_RE = re.compile(r"^iolab-(\d+)-(\d+)$")
_LINK_RE = re.compile(r"^iol(\d+)[hc]\d+$")
_counter = itertools.count()
_OPEN: set[Network] = set()


@dataclass(frozen=True)
class Impairment:
    """What netem applies on the collector's side. All zero: a clean link."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.delay_ms or self.jitter_ms or self.loss_pct)


def unavailable_reason() -> str | None:
    """Why this process cannot build a namespace, or None if it can (root and ``ip``/``tc`` present)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN); run iolab as root or drop the --net-* options"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"'{tool}' (iproute2) is not installed; install iproute2 or drop the --net-* options"
    return None


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise NetworkError(f"'{' '.join(argv)}' failed: {msg[-1] if msg else f'exit {proc.returncode}'}")
    return proc


def _subnet(pid: int, n: int) -> tuple[str, str]:
    """A /30 in 10.234.0.0/16 from (pid, n): host .1, collector .2 of the block. Two live runs could only
    collide if their pid*8+n agree modulo 16384; ``ip addr add`` would then fail loudly, never mix."""
    idx = (pid * 8 + n) % 16384
    base = idx * 4
    third, fourth = base // 256, base % 256
    return f"10.234.{third}.{fourth + 1}", f"10.234.{third}.{fourth + 2}"


class Network:
    """One namespace + link + impairment. A context manager; ``close()`` is idempotent."""

    def __init__(self, impairment: Impairment | None = None) -> None:
        self.impairment = impairment or Impairment()
        pid, n = os.getpid(), next(_counter)
        self.name = f"iolab-{pid}-{n}"
        self.host_if = f"iol{pid}h{n}"
        self.ns_if = f"iol{pid}c{n}"
        self.host_addr, self.collector_addr = _subnet(pid, n)
        self.method = ""
        self._relay: subprocess.Popen[bytes] | None = None
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> Network:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise NetworkError(reason)
        sweep_stale()
        _OPEN.add(self)
        self._started = True
        try:
            _run(["ip", "netns", "add", self.name])
            _run(["ip", "-n", self.name, "link", "set", "lo", "up"])
            if self.impairment and not _has_netem():
                self._start_tun_relay()
                self.method = "netns+tun-relay"
            else:
                self._start_veth()
                self.method = "netns+netem" if self.impairment else "netns"
        except BaseException:
            self.close()
            raise

    def _start_veth(self) -> None:
        _run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if,
              "netns", self.name])
        _run(["ip", "addr", "add", f"{self.host_addr}/30", "dev", self.host_if])
        _run(["ip", "link", "set", self.host_if, "up"])
        _run(["ip", "-n", self.name, "addr", "add", f"{self.collector_addr}/30", "dev", self.ns_if])
        _run(["ip", "-n", self.name, "link", "set", self.ns_if, "up"])
        if self.impairment:
            _run(["tc", "-n", self.name, "qdisc", "add", "dev", self.ns_if, "root", *self.netem_args()])
        if self.impairment.loss_pct:  # loss both ways: a datagram to the collector can be lost too
            _run(["tc", "qdisc", "add", "dev", self.host_if, "root", "netem", "loss",
                  f"{self.impairment.loss_pct}%"])

    def netem_args(self) -> list[str]:
        imp = self.impairment
        args = ["netem"]
        if imp.delay_ms or imp.jitter_ms:
            args += ["delay", f"{imp.delay_ms}ms"]
            if imp.jitter_ms:
                args += [f"{imp.jitter_ms}ms"]
        if imp.loss_pct:
            args += ["loss", f"{imp.loss_pct}%"]
        return args

    def _start_tun_relay(self) -> None:
        imp = self.impairment
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netrelay.py")
        self._relay = subprocess.Popen(
            [sys.executable, "-I", "-S", script, self.host_if, os.path.join(NETNS_DIR, self.name), self.ns_if,
             str(imp.delay_ms), str(imp.jitter_ms), str(imp.loss_pct)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=procs.die_with_parent())  # noqa: PLW1509 - the parent-death signal is the point
        assert self._relay.stdout is not None
        line = self._relay.stdout.readline()
        if line.strip() != b"ready":
            self._relay.wait()
            assert self._relay.stderr is not None
            err = self._relay.stderr.read().decode(errors="replace").strip().splitlines()
            raise NetworkError(f"the TUN relay did not start: {err[-1] if err else 'no output'}")
        _run(["ip", "addr", "add", self.host_addr, "peer", self.collector_addr, "dev", self.host_if])
        _run(["ip", "link", "set", self.host_if, "up"])
        _run(["ip", "-n", self.name, "addr", "add", self.collector_addr, "peer", self.host_addr,
              "dev", self.ns_if])
        _run(["ip", "-n", self.name, "link", "set", self.ns_if, "up"])

    def close(self) -> None:
        if not self._started:
            return
        self._started = False
        _OPEN.discard(self)
        if self._relay is not None:
            with contextlib.suppress(ProcessLookupError):
                self._relay.kill()
            self._relay.wait()
            for pipe in (self._relay.stdout, self._relay.stderr):
                if pipe is not None:
                    pipe.close()
            self._relay = None
        _run(["ip", "netns", "del", self.name], check=False)
        _run(["ip", "link", "del", self.host_if], check=False)  # already gone with its peer, normally

    # -- use -------------------------------------------------------------------------------------------

    def exec_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace (``ip netns exec`` execs it: the PID is the command's)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def describe(self) -> dict[str, object]:
        return {"method": self.method, "delay_ms": self.impairment.delay_ms,
                "jitter_ms": self.impairment.jitter_ms, "loss_pct": self.impairment.loss_pct}


_NETEM: bool | None = None


def _has_netem() -> bool:
    """Whether the kernel can attach netem: tried on a throwaway veth in a throwaway namespace (loading
    sch_netem with modprobe first where there is one), since /proc/config.gz is not always there."""
    global _NETEM
    if _NETEM is None:
        if shutil.which("modprobe"):
            _run(["modprobe", "-q", "sch_netem"], check=False)
        probe = f"iolab-{os.getpid()}-{next(_counter)}"
        _run(["ip", "netns", "add", probe])
        try:
            _run(["ip", "-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1"])
            _NETEM = _run(["tc", "-n", probe, "qdisc", "add", "dev", "p0", "root", "netem", "delay", "1ms"],
                          check=False).returncode == 0
        finally:
            _run(["ip", "netns", "del", probe], check=False)
    return _NETEM


def sweep_stale() -> list[str]:
    """Delete the namespaces and host-side links left by dead iolab processes (the PID in the name)."""
    removed: list[str] = []
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(NETNS_DIR)):
            m = _NS_RE.match(name)
            if m and not procs.alive(int(m.group(1))):
                _kill_inside(name)
                if _run(["ip", "netns", "del", name], check=False).returncode == 0:
                    removed.append(name)
    with contextlib.suppress(OSError):
        for link in sorted(os.listdir("/sys/class/net")):
            m = _LINK_RE.match(link)
            if m and not procs.alive(int(m.group(1))):
                if _run(["ip", "link", "del", link], check=False).returncode == 0:
                    removed.append(link)
    return removed


def _kill_inside(name: str) -> None:
    """SIGKILL every process still in namespace ``name`` (a collector that outlived its iolab)."""
    proc = _run(["ip", "netns", "pids", name], check=False)
    for word in proc.stdout.split():
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(word), 9)


def list_ours(pid: int | None = None) -> list[str]:
    """Our namespaces and links on this machine (of ``pid`` if given): what a test checks is gone."""
    found: list[str] = []
    for where, regex in ((NETNS_DIR, _NS_RE), ("/sys/class/net", _LINK_RE)):
        with contextlib.suppress(OSError):
            for name in os.listdir(where):
                m = regex.match(name)
                if m and (pid is None or int(m.group(1)) == pid):
                    found.append(name)
    return sorted(found)


@atexit.register
def _close_open() -> None:
    for net in list(_OPEN):
        net.close()
