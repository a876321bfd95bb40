"""iolab agent: tokens enforced, read-only windows equal to the local probe, /metrics, TLS, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from iolab.errors import AgentError
from iolab.measure.agent_client import AgentProbe, AgentSpec
from iolab.measure.drivers.base import LoadSpec
from iolab.measure.drivers.builtin import BuiltinDriver
from iolab.measure.probe import Probe, delta
from tests.conftest import REPO, processes_matching, run_cli

TOKEN = "t0ken-for-tests-0123456789abcdef"


def token_file(tmp: Path, mode: int = 0o600, text: str = TOKEN) -> Path:
    path = tmp / "token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def start_agent(argv_prefix: list[str], *args: str) -> tuple[subprocess.Popen[str], str]:
    """``iolab agent`` (under ``argv_prefix``, e.g. ``ip netns exec NS``); returns it and its URL."""
    proc = subprocess.Popen([*argv_prefix, sys.executable, "-m", "iolab", "agent", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the agent did not start: {line!r} {err!r}")
    return proc, line.split()[-1]


def stop_agent(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    return proc.returncode, err


def start_server(argv_prefix: list[str], host: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([*argv_prefix, sys.executable, "-m", "uvicorn", "iolab.demo.app:app", "--host", host,
                             "--port", str(port), "--no-access-log", "--log-level", "warning"], cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://{host}:{port}/noop-async", proc)
    return proc


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{url} never answered")


def get(url: str, token: str | None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def server() -> Iterator[subprocess.Popen[bytes]]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start_server([], "127.0.0.1", port)
    proc.port = port  # type: ignore[attr-defined]
    yield proc
    proc.terminate()
    proc.wait(timeout=20)


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    out = run_cli("agent", "--listen", "127.0.0.1:0", "--token-file", str(token_file(tmp_path, 0o644)),
                  "--allow-pid", "1")
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "readable by group or others" in out.stderr
    assert "Traceback" not in out.stderr
    out = run_cli("agent", "--listen", "127.0.0.1:0", "--token-file", str(tmp_path / "missing"), "--allow-pid", "1")
    assert out.returncode == 2 and "error: --token-file" in out.stderr


@pytest.mark.parametrize("pattern", ["", "uvicorn|", "^", "(", "x*"])
def test_an_allow_cmdline_that_is_bad_or_allows_every_process_is_refused(tmp_path: Path, pattern: str) -> None:
    out = run_cli("agent", "--listen", "127.0.0.1:0", "--token-file", str(token_file(tmp_path)),
                  "--allow-cmdline", pattern, timeout=10)
    assert out.returncode == 2 and out.stderr.startswith(f"error: --allow-cmdline {pattern!r}"), out.stderr


def test_a_listen_address_that_cannot_be_bound_is_one_error_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        out = run_cli("agent", "--listen", f"127.0.0.1:{taken.getsockname()[1]}", "--token-file",
                      str(token_file(tmp_path)), "--allow-pid", "1", timeout=30)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: --listen") and "cannot bind" in out.stderr


def test_tokens_and_pids_enforced_and_sigterm_ends_cleanly(tmp_path: Path,
                                                           server: subprocess.Popen[bytes]) -> None:
    agent, url = start_agent([], "--listen", "127.0.0.1:0", "--token-file", str(token_file(tmp_path)),
                             "--allow-pid", str(server.pid))
    try:
        assert get(url + "/metrics", None)[0] == 401
        assert get(url + "/metrics", "wrong-token-wrong-token")[0] == 401
        assert get(url + f"/v1/processes/{os.getpid()}", TOKEN)[0] == 403
        status, body = get(url + "/metrics", TOKEN)
        assert status == 200
        # One series per allowed process, in Prometheus's text format, usable without iolab.
        for name in ("iolab_process_voluntary_ctxt_switches_total", "iolab_process_write_syscalls_total",
                     "iolab_process_cpu_seconds_total", "iolab_process_thread_voluntary_ctxt_switches_total",
                     "iolab_process_resident_memory_bytes", "iolab_process_threads"):
            assert f'{name}{{comm="' in body and f'pid="{server.pid}"' in body, name
        with pytest.raises(AgentError, match="refused the token"):
            AgentProbe(server.pid, AgentSpec(url, "not-the-token-xxxxxxxx")).start()
        with pytest.raises(AgentError, match="403"):
            AgentProbe(os.getpid(), AgentSpec(url, TOKEN)).start()
    finally:
        code, err = stop_agent(agent)
    assert code == 0 and "iolab agent: stopped" in err and "Traceback" not in err


def test_a_window_gives_the_local_probes_figures(tmp_path: Path, server: subprocess.Popen[bytes]) -> None:
    """Both probes read the same kernel counters around the same load: per-request figures agree."""
    agent, url = start_agent([], "--listen", "127.0.0.1:0", "--token-file", str(token_file(tmp_path)),
                             "--allow-pid", str(server.pid))
    try:
        remote, local = AgentProbe(server.pid, AgentSpec(url, TOKEN), interval_s=0.2), Probe(server.pid)
        remote.start()
        r0, l0 = remote.read(), local.read()
        load = BuiltinDriver().run(LoadSpec(url=f"http://127.0.0.1:{server.port}/sync-raw",  # type: ignore[attr-defined]
                                            requests=1500, concurrency=10))
        r1, l1 = remote.read(), local.read()
        remote.stop()
        assert load.ok_2xx == 1500
        rw, lw = delta(r0, r1), delta(l0, l1)
        assert lw.voluntary > 0 and lw.write_syscalls >= 1500
        assert 0.8 < rw.voluntary / lw.voluntary < 1.25
        assert 0.9 < rw.write_syscalls / lw.write_syscalls < 1.1
        assert 0.7 < (rw.cpu_user_s + rw.cpu_sys_s) / (lw.cpu_user_s + lw.cpu_sys_s) < 1.4
        assert len(remote.samples) >= 2 and remote.cost["readings"] >= 3
        assert remote.cost["cpu_ms_per_reading"] > 0
    finally:
        stop_agent(agent)


def test_tls_with_a_given_ca(tmp_path: Path, server: subprocess.Popen[bytes]) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                           "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                           "-out", str(cert)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate here")
    agent, url = start_agent([], "--listen", "127.0.0.1:0", "--token-file", str(token_file(tmp_path)),
                             "--allow-cmdline", "uvicorn iolab.demo", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert url.startswith("https://")
        probe = AgentProbe(server.pid, AgentSpec(url, TOKEN, str(cert)))
        assert probe.process()["alive"] is True
        with pytest.raises(AgentError, match="cannot reach"):  # the system's CAs do not know this certificate
            AgentProbe(server.pid, AgentSpec(url, TOKEN)).process()
    finally:
        stop_agent(agent)
    assert not processes_matching(url.rsplit(":", 1)[-1] + " --token-file")


def test_run_agent_options_are_checked(tmp_path: Path) -> None:
    out = run_cli("run", "--agent", "http://127.0.0.1:1", "--agent-token-file", str(token_file(tmp_path)))
    assert out.returncode == 2 and "needs --url and --pid" in out.stderr
    out = run_cli("run", "--url", "http://127.0.0.1:1/", "--pid", "999999", "--agent", "http://127.0.0.1:1",
                  "--agent-token-file", str(token_file(tmp_path, 0o640)))
    assert out.returncode == 2 and "--agent-token-file" in out.stderr and "readable" in out.stderr
    out = run_cli("run", "--url", "http://127.0.0.1:1/", "--pid", "999999", "--agent", "http://127.0.0.1:1",
                  "--agent-token-file", str(token_file(tmp_path)), "--rounds", "1", "-o", str(tmp_path / "r.json"))
    assert out.returncode == 10 and "error: cannot reach the agent" in out.stderr


def test_a_reading_survives_the_wire_and_bad_answers_are_errors() -> None:
    from iolab.errors import ProbeError
    from iolab.measure.probe_wire import counters_from_json, counters_to_json, samples_from_json

    reading = Probe(os.getpid()).read()
    assert counters_from_json(json.loads(json.dumps(counters_to_json(reading)))) == reading
    with pytest.raises(ProbeError, match="cannot read"):
        counters_from_json({"t_s": 1.0})
    with pytest.raises(ProbeError, match="cannot read"):
        samples_from_json([{"t_s": 1}])


def test_windows_are_capped_and_idle_ones_close() -> None:
    from iolab.agent.windows import TooManyWindows, UnknownWindow, Windows

    seen: list[float] = []
    windows = Windows(max_windows=1, idle_s=3600, on_reading=seen.append)
    first, _ = windows.open(os.getpid(), 0.05)
    with pytest.raises(TooManyWindows):
        windows.open(os.getpid(), 0.05)
    assert seen and all(s >= 0 for s in seen)  # every reading's CPU is counted
    windows.idle_s = 0
    windows.expire()
    with pytest.raises(UnknownWindow):
        windows.get(first.id)
    assert len(windows) == 0


def test_run_agent_pid_gone_is_bad_input_and_explain_stays_local(tmp_path: Path,
                                                                  server: subprocess.Popen[bytes]) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    agent, url = start_agent([], "--listen", "127.0.0.1:0", "--token-file", str(token_file(tmp_path)),
                             "--allow-pid", str(gone.pid), "--allow-pid", str(server.pid))
    try:
        common = ("--url", f"http://127.0.0.1:{server.port}/noop-async",  # type: ignore[attr-defined]
                  "--agent", url, "--agent-token-file", str(token_file(tmp_path)), "-n", "100", "--warmup", "10",
                  "--rounds", "1", "-c", "2")
        # A PID that the agent allows but that does not exist on its host: bad input before any load.
        out = run_cli("run", *common, "--pid", str(gone.pid), "-o", str(tmp_path / "gone.json"))
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert f"--pid {gone.pid}: no such process" in out.stderr and not (tmp_path / "gone.json").exists()
        # The PID is the agent host's: the explain pass must not trace whatever has that PID here.
        out = run_cli("run", *common, "--pid", str(server.pid), "--explain", "-o", str(tmp_path / "r.json"))
        assert out.returncode == 0, out.stderr
        explain = json.loads((tmp_path / "r.json").read_text())["scenarios"][0]["explain"]
        assert explain["method"] == "none" and "agent" in explain["reason"], explain
    finally:
        stop_agent(agent)
