"""The agent against the local probe on the same load: both read one server around the same requests.

    python benchmarks/bench_agent.py [--requests N] [--path /sync-raw]

Starts the demo (uvicorn) and ``iolab agent`` on loopback, opens a sampling window (1 s interval) and a
local Probe on the server, drives N requests with the builtin driver, and prints per-request voluntary
context switches, write syscalls and CPU as each probe saw them, and the agent's CPU per /proc reading.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from iolab.measure.agent_client import AgentProbe, AgentSpec
from iolab.measure.drivers.base import LoadSpec
from iolab.measure.drivers.builtin import BuiltinDriver
from iolab.measure.locust_fleet import free_port
from iolab.measure.probe import Probe, delta


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--path", default="/sync-raw")
    args = ap.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "iolab.demo.app:app", "--port", str(port),
                               "--no-access-log", "--log-level", "warning"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        token = Path(tmp) / "token"
        token.write_text("bench-token-0123456789abcdef")
        token.chmod(0o600)
        agent = subprocess.Popen([sys.executable, "-m", "iolab", "agent", "--listen", "127.0.0.1:0",
                                  "--token-file", str(token), "--allow-pid", str(server.pid)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert agent.stdout is not None
            url = agent.stdout.readline().split()[-1]
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/noop-async", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            BuiltinDriver().run(LoadSpec(url=f"http://127.0.0.1:{port}{args.path}", requests=1000, concurrency=10))
            remote, local = AgentProbe(server.pid, AgentSpec(url, token.read_text())), Probe(server.pid)
            remote.start()
            r0, l0 = remote.read(), local.read()
            load = BuiltinDriver().run(LoadSpec(url=f"http://127.0.0.1:{port}{args.path}", requests=args.requests,
                                                concurrency=args.concurrency))
            r1, l1 = remote.read(), local.read()
            remote.stop()
            n = load.ok_2xx
            print(f"{n} requests to {args.path}, {load.rps:.0f} req/s, {len(remote.samples)} agent samples")
            print(f"{'':>8} {'vol ctx/req':>12} {'syscw/req':>10} {'CPU ms/req':>11}")
            for name, w in (("agent", delta(r0, r1)), ("local", delta(l0, l1))):
                print(f"{name:>8} {w.voluntary / n:12.3f} {w.write_syscalls / n:10.3f} "
                      f"{1000 * (w.cpu_user_s + w.cpu_sys_s) / n:11.4f}")
            print(f"agent: {remote.cost['readings']} readings of {r1.threads} threads, "
                  f"{remote.cost['cpu_ms_per_reading']} ms CPU each "
                  f"(load average {os.getloadavg()[0]:.1f})")
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait()
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
