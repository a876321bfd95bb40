"""A userspace netem: carries IP packets between two TUN devices, delaying, jittering and dropping them.

Used by netns.py when the kernel has no ``sch_netem`` (``CONFIG_NET_SCH_NETEM`` unset and no module to
load). Both ends stay real kernel TCP/UDP stacks: the server's in the host namespace, the collector's in
iolab's namespace; only the wire between them is this process. Every packet goes through it (SYN, ACK,
data), so a connection's handshake costs a round trip as it would on a real link.

Run as a script (``python -I -S netrelay.py HOST_TUN NETNS_PATH NS_TUN DELAY_MS JITTER_MS LOSS_PCT``): it
creates the host TUN, enters the namespace, creates the other one, prints ``ready`` and relays until
killed. Its TUN devices are not persistent: they vanish with the process, so a SIGKILL leaves none.

netem semantics on the collector's side: the delay and jitter apply to packets *from* the collector (one
direction), so ``DELAY_MS`` adds that much to every round trip; the loss applies in both directions, as
netns.py sets it on both ends of a veth (a datagram to the collector can be lost too). Jitter is uniform in ±JITTER_MS and
never reorders packets (each leaves no earlier than the one before it), as netem with ``rate`` behaves.
Imports only the stdlib: it runs with -I -S, outside the lab.
"""

from __future__ import annotations

import ctypes
import fcntl
import heapq
import os
import random
import select
import struct
import sys
import time
from collections.abc import Iterator

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_CLONE_NEWNET = 0x40000000
_MTU = 65536


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


def enter_netns(path: str) -> None:
    # os.setns arrived in Python 3.12; iolab supports 3.11.
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path, "rb") as f:
        if libc.setns(f.fileno(), _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)


def _arrived(fd: int, loss: float, rng: random.Random) -> Iterator[bytes]:
    """The packets waiting on ``fd`` (non-blocking), less those a lossy link drops."""
    while True:
        try:
            pkt = os.read(fd, _MTU)
        except BlockingIOError:
            return
        if not (loss and rng.random() < loss):
            yield pkt


def relay(host_fd: int, ns_fd: int, delay_s: float, jitter_s: float, loss: float) -> None:
    rng = random.Random()
    pending: list[tuple[float, int, bytes]] = []  # (due, seq, packet) towards the host
    seq = 0
    last_due = 0.0
    while True:
        timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else None
        readable, _, _ = select.select([host_fd, ns_fd], [], [], timeout)
        if host_fd in readable:  # server → collector: not delayed, but lost as often (a lossy link)
            for pkt in _arrived(host_fd, loss, rng):
                try:
                    os.write(ns_fd, pkt)
                except OSError:  # the link is down (outage, teardown): the packet is lost, as on a wire
                    pass
        if ns_fd in readable:  # collector → server: delayed, jittered, maybe dropped
            for pkt in _arrived(ns_fd, loss, rng):
                due = time.monotonic() + delay_s + (rng.uniform(-jitter_s, jitter_s) if jitter_s else 0.0)
                due = max(due, last_due)
                last_due = due
                seq += 1
                heapq.heappush(pending, (due, seq, pkt))
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, pkt = heapq.heappop(pending)
            try:
                os.write(host_fd, pkt)
            except OSError:
                pass


def main(argv: list[str]) -> None:
    host_tun, netns_path, ns_tun, delay_ms, jitter_ms, loss_pct = argv
    host_fd = open_tun(host_tun)
    enter_netns(netns_path)
    ns_fd = open_tun(ns_tun)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    relay(host_fd, ns_fd, float(delay_ms) / 1000, float(jitter_ms) / 1000, float(loss_pct) / 100)


if __name__ == "__main__":
    main(sys.argv[1:])
