"""Past one machine, with real processes: Locust's fleet against the demo, and the two-host recipe (the
server and its agent in a network namespace, iolab and the Locust workers outside, over the veth)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iolab.analysis import latency
from iolab.measure import netns
from iolab.measure.drivers.base import LoadSpec
from iolab.measure.drivers.builtin import BuiltinDriver
from iolab.measure.drivers.locust import LocustDriver, LocustOptions
from iolab.measure.drivers.summary import histogram_of
from iolab.measure.locust_fleet import free_port
from iolab.measure.netns import Network
from tests.conftest import REPO, processes_matching, run_cli
from tests.test_agent import start_agent, start_server, stop_agent, token_file


def _no_locust_left() -> None:
    assert not [c for c in processes_matching("-m locust") if "iolab" in c and "locustfile" in c]


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    port = free_port()
    proc = start_server([], "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)


def test_locust_percentiles_agree_with_the_builtin_driver(demo: str) -> None:
    """Same scenario, same concurrency: the two engines' medians and p99 agree within a wide ratio."""
    spec = LoadSpec(url=demo + "/noop-async", concurrency=8, duration_s=2.0)
    builtin = BuiltinDriver().run(spec)
    loc = LocustDriver(LocustOptions(workers=2)).run(spec)
    _no_locust_left()
    assert loc.failed == 0 and loc.ok_2xx > 100 and loc.completed == loc.ok_2xx
    assert loc.facts["workers"]["reported"] == 2  # both workers' histograms were merged
    assert loc.facts["locust_requests"] == loc.completed  # Locust's own count agrees with the histograms
    assert loc.cpu_s > 0 and 0 < loc.cpu_load_s <= loc.cpu_s
    hb, _, _ = histogram_of(builtin)
    hl, source, approximate = histogram_of(loc)
    assert source == "histogram" and not approximate and hl.get_total_count() == loc.completed
    # Wide: on 2 shared cores, Locust's three processes take CPU from the server (measured: p50 1.9x, p99
    # 1.1x-14x the builtin's under a load average of 9); the check is that both describe the same service.
    for q, low, high in ((50, 0.25, 8), (99, 0.1, 30)):
        ratio = hl.get_value_at_percentile(q) / hb.get_value_at_percentile(q)
        assert low < ratio < high, (q, ratio)
    assert latency.LOWEST_US <= hl.get_min_value()


def test_locust_open_loop_keeps_its_rate(demo: str) -> None:
    """--rate R with c users: each user at R/c requests per second (constant_throughput)."""
    loc = LocustDriver(LocustOptions(workers=2)).run(LoadSpec(url=demo + "/noop-async", concurrency=4, rate=100,
                                                              duration_s=3.0))
    assert loc.failed == 0 and loc.facts["coordinated_omission_corrected"] is False
    assert loc.facts["loop"].startswith("open: 100 req/s as 4 users at 25 req/s each")
    assert 0.6 < loc.rps / 100 < 1.25, loc.rps


def test_a_locust_master_address_that_cannot_be_bound_is_bad_input(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        for where in ("192.0.2.1:5557", f"127.0.0.1:{taken.getsockname()[1]}"):  # not local (TEST-NET-1); in use
            out = run_cli("run", "--driver", "locust", "--duration", "1s", "--scenario", "noop-async",
                          "--locust-master", where, "-o", str(tmp_path / "r.json"))
            assert out.returncode == 2, out.stderr
            assert out.stderr.startswith(f"error: --locust-master {where!r}: cannot bind") and "Traceback" not in out.stderr
            assert not (tmp_path / "r.json").exists()


def test_locust_at_a_closed_port_measured_nothing_and_says_what_its_warm_up_was(tmp_path: Path) -> None:
    out = run_cli("run", "--driver", "locust", "--duration", "1s", "--warmup", "20", "--rounds", "1", "-q",
                  "--url", f"http://127.0.0.1:{free_port()}/", "-o", str(tmp_path / "r.json"))
    assert out.returncode == 7, out.stderr
    assert "no request succeeded in the warm-up (" in out.stderr and " requests in 1 s)" in out.stderr
    assert "20 requests, --warmup" not in out.stderr  # Locust warms up for a second, not for --warmup requests
    latency = json.loads((tmp_path / "r.json").read_text())["scenarios"][0]["latency_ms"]
    assert set(latency.values()) == {None}  # not 0.0


def test_without_locust_the_driver_is_an_error(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['locust'] = None; from iolab.cli.main import main; "
            "sys.argv = ['iolab', 'run', '--driver', 'locust', '--duration', '1s', '-o', sys.argv[1]]; main()")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.json")], cwd=REPO, capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("error: --driver locust needs Locust")
    out = run_cli("run", "--driver", "locust", "-n", "100")
    assert out.returncode == 2 and "add --duration" in out.stderr
    out = run_cli("run", "--locust-workers", "4")
    assert out.returncode == 2 and "go with --driver locust" in out.stderr


@pytest.mark.skipif(netns.unavailable_reason() is not None, reason=str(netns.unavailable_reason()))
def test_two_host_recipe_across_namespaces(tmp_path: Path, nothing_left_behind: None) -> None:
    """README's recipe: the server and `iolab agent` on host A (a namespace); iolab, Locust's master and
    workers on host B (this namespace) plus one worker joining from A; everything over the veth."""
    before = netns.list_ours(os.getpid())
    with Network() as net:
        inside = net.exec_argv([])
        server = start_server(inside, net.collector_addr, 8000)
        agent, agent_url = start_agent(inside, "--listen", f"{net.collector_addr}:9464", "--token-file",
                                       str(token_file(tmp_path)), "--allow-pid", str(server.pid))
        master_port = free_port(net.host_addr)
        remote = subprocess.Popen([*inside, sys.executable, "-m", "iolab.measure.locust_fleet", "worker",
                                   f"{net.host_addr}:{master_port}"], cwd=REPO, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            out = run_cli("run", "--url", f"http://{net.collector_addr}:8000/sync-raw", "--allow-remote",
                          "--pid", str(server.pid), "--agent", agent_url, "--agent-token-file",
                          str(token_file(tmp_path)), "--driver", "locust", "--locust-workers", "1",
                          "--locust-master", f"{net.host_addr}:{master_port}", "--locust-remote-workers", "1",
                          "-c", "8", "--duration", "2s", "--warmup", "0", "--rounds", "1", "-q",
                          "-o", str(tmp_path / "run.json"), timeout=180)
            assert out.returncode == 0, out.stderr[-2000:]
            run = json.loads((tmp_path / "run.json").read_text())
            assert run["environment"]["probe"]["kind"] == "agent"
            assert run["environment"]["probe"]["agent_cpu_ms_per_reading"] > 0
            assert run["environment"]["server"]["known_from"] == f"agent {agent_url}"
            rnd = run["scenarios"][0]["rounds"][0]
            assert rnd["status"] == "ok" and rnd["load"]["driver"] == "locust"
            assert rnd["load"]["workers"] == {"local": 1, "remote": 1, "reported": 2}
            # /sync-raw writes one line per request: the agent saw the server's writes over the link.
            per = rnd["per_request"]
            assert per["write_syscalls"] >= 0.9, per
            assert per["voluntary_ctx_switches"] > 0 and per["cpu_ms"] > 0, per
            assert len(rnd["samples"]) >= 1  # per-second samples came from the agent's window
            shown = run_cli("report", str(tmp_path / "run.json")).stdout
            assert f"iolab agent at {agent_url}" in " ".join(shown.split())
        finally:
            remote.send_signal(signal.SIGTERM)
            remote.wait(timeout=20)
            code, err = stop_agent(agent)
            server.terminate()
            server.wait(timeout=20)
        assert code == 0, err
    assert netns.list_ours(os.getpid()) == before == []
    _no_locust_left()
    assert not processes_matching("iolab agent --listen")


def test_a_killed_iolab_leaves_no_locust_process(tmp_path: Path, demo: str, nothing_left_behind: None) -> None:
    """SIGKILL runs no cleanup: the master and workers go by their parent-death signal. (A running server:
    a demo run's cgroup would be left for the next run's sweep, as after any SIGKILL.)"""
    ours = str(REPO / "iolab" / "measure" / "drivers" / "locustfile.py")
    proc = subprocess.Popen([sys.executable, "-m", "iolab", "run", "--url", demo + "/noop-async", "--driver", "locust",
                             "--duration", "30s", "--warmup", "0", "--rounds", "1", "-c", "4", "-q",
                             "-o", str(tmp_path / "r.json")], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(processes_matching(ours)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(processes_matching(ours)) >= 3  # the master and two workers
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while processes_matching(ours) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_matching(ours) == []
