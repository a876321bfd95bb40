"""measure/netns.py: a real namespace and link, the impairment on real packets, nothing left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from iolab.errors import NetworkError
from iolab.measure import netns
from iolab.measure.netns import Impairment, Network
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(netns.unavailable_reason() is not None,
                                reason=str(netns.unavailable_reason()))

ECHO = textwrap.dedent("""
    import socket, sys
    s = socket.socket()
    s.bind((sys.argv[1], 9000))
    s.listen()
    print("up", flush=True)
    while True:
        c, _ = s.accept()
        while d := c.recv(100):
            c.sendall(d)
""")

def _inside(net: Network, code: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(net.exec_argv([sys.executable, "-c", code, net.collector_addr]),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    return proc


@pytest.fixture
def echo_net() -> Iterator[tuple[Network, subprocess.Popen[str]]]:
    with Network(Impairment(delay_ms=20)) as net:
        proc = _inside(net, ECHO)
        try:
            yield net, proc
        finally:
            proc.kill()
            proc.communicate()


def test_delay_is_on_every_round_trip_including_the_handshake(echo_net: tuple[Network, subprocess.Popen[str]]
                                                                ) -> None:
    net, _ = echo_net
    assert net.method in ("netns+netem", "netns+tun-relay")
    # A lower bound only: noise can add to a round trip, never take the 20 ms delay away.
    t0 = time.monotonic()
    conn = socket.create_connection((net.collector_addr, 9000), timeout=10)
    assert time.monotonic() - t0 >= 0.019  # the SYN-ACK crossed the delayed direction
    for _ in range(5):
        t = time.monotonic()
        conn.sendall(b"x")
        assert conn.recv(10) == b"x"
        assert time.monotonic() - t >= 0.019
    conn.close()


def test_close_removes_namespace_links_and_relay() -> None:
    before = netns.list_ours(os.getpid())
    with Network(Impairment(delay_ms=1)) as net:
        assert net.name in netns.list_ours(os.getpid())
        assert net.host_if in netns.list_ours(os.getpid())
    assert netns.list_ours(os.getpid()) == before == []


def test_a_killed_owner_is_swept_by_the_next_network() -> None:
    code = textwrap.dedent("""
        import sys, time
        from iolab.measure.netns import Network, Impairment
        net = Network(Impairment(delay_ms=1)); net.start()
        print(net.name, net.host_if, flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    name, host_if = proc.stdout.readline().split()
    assert {name, host_if} <= set(netns.list_ours(proc.pid))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    # SIGKILL runs no atexit: the namespace stays until someone sweeps.
    assert name in netns.list_ours(proc.pid)
    with Network():
        pass
    assert netns.list_ours(proc.pid) == []


def test_without_root_the_reason_is_given() -> None:
    # The system interpreter as nobody: the venv's may sit under a directory nobody cannot enter.
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        pytest.skip("no /usr/bin/python3 to run as nobody")
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from iolab.measure import netns; " \
           "print(netns.unavailable_reason())"
    out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=True,
                         user=65534, group=65534, extra_groups=[]).stdout
    assert "need root" in out


def test_a_failed_step_raises_network_error_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    net = Network()
    monkeypatch.setattr(net, "_start_veth", lambda: netns._run(["ip", "link", "add", "x" * 40, "type", "veth"]))
    with pytest.raises(NetworkError, match="failed"):
        net.start()
    assert netns.list_ours(os.getpid()) == []
