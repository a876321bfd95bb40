"""What a report says about the server under test, and what its write-syscall figure counts.

A ``--cmd`` or ``--url`` server is the user's: the report may say what iolab ran or saw in /proc, never
the demo's uvicorn, FastAPI, aiologger or AnyIO. And Python's ``http.server`` answers with ``send()``,
which ``/proc/PID/io`` ``syscw`` does not count: every output names the figure for what it is.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, run_cli

SMALL = ("-n", "200", "-c", "5", "--warmup", "20", "--interval", "0.2", "--rounds", "1")
# Words that describe the demo (iolab's own uvicorn, its FastAPI app and loggers), not a server iolab
# did not build: none may appear in what a report says about http.server. ("uvloop" alone may: the
# write-syscall caveat names "asyncio without uvloop" among the servers that answer with send.)
DEMO_WORDS = ("uvicorn", "fastapi", "aiologger", "anyio", "loop uvloop", "httptools", "event loop", "event-loop")
# The caveat, in every output: what syscw leaves out.
NOT_COUNTED = "send/sendto/sendmsg"


def _flat(text: str) -> str:
    """Lower case, whitespace collapsed: the terminal wraps long captions at any space."""
    return " ".join(text.split()).lower()


def _run(tmp: Path, *args: str) -> dict[str, Any]:
    out, md, html = tmp / "r.json", tmp / "r.md", tmp / "r.html"
    proc = run_cli("run", *args, *SMALL, "-o", str(out), "--markdown", str(md), "--html", str(html))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "error:" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return {"term": proc.stdout, "md": md.read_text(), "html": html.read_text(), "json": out.read_text(),
            "doc": json.loads(out.read_text())}


@pytest.fixture(scope="module")
def http_server_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of ``python3 -m http.server`` started by iolab (--cmd), every output written."""
    tmp = tmp_path_factory.mktemp("cmd_http_server")
    (tmp / "index.html").write_text("hello")
    port = free_port()
    cmd = f"{sys.executable} -m http.server {port} --bind 127.0.0.1 --directory {tmp}"
    return _run(tmp, "--cmd", cmd, "--url", f"http://127.0.0.1:{port}/index.html")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(tmp_path_factory.mktemp("demo"), "--scenario", "noop-sync")


# ------------------------------------------------------------------------- case 10: only what is known


@pytest.mark.parametrize("output", ["term", "md", "html", "json"])
def test_a_cmd_server_is_not_described_as_the_demo(http_server_run: dict[str, Any], output: str) -> None:
    text = _flat(http_server_run[output])
    said = [w for w in DEMO_WORDS if w in text]
    assert not said, f"the {output} output of a --cmd http.server run speaks of {said}"


def test_a_cmd_server_is_described_by_what_iolab_ran(http_server_run: dict[str, Any]) -> None:
    doc = http_server_run["doc"]
    server = doc["environment"]["server"]
    assert server["command"][:3] == [sys.executable, "-m", "http.server"]
    assert server["executable"] == sys.executable
    assert "uvicorn" not in doc["environment"] and "packages" not in doc["environment"]
    # Its buffering is its own: iolab only knows what it put in the environment.
    assert doc["environment"]["stdout"]["buffering"] == "unknown"
    assert "http.server" in _flat(http_server_run["term"]) and "http.server" in http_server_run["md"]


def test_the_demo_still_says_what_it_is(demo_run: dict[str, Any]) -> None:
    env = demo_run["doc"]["environment"]
    assert env["uvicorn"]["loop"] in ("uvloop", "asyncio") and env["uvicorn"]["access_log"] is True
    assert env["packages"]["fastapi"] and env["server"]["name"] == "uvicorn"
    for output in ("term", "md"):
        text = _flat(demo_run[output])
        for word in ("uvicorn", "fastapi", "aiologger", "anyio worker threads run `def` endpoints"):
            assert word in text, (output, word)


def test_a_running_server_is_described_by_its_proc_entry(running_http_server: tuple[int, int],
                                                         tmp_path: Path) -> None:
    port, pid = running_http_server
    out = tmp_path / "p.json"
    proc = run_cli("run", "--url", f"http://127.0.0.1:{port}/index.html", "--pid", str(pid), *SMALL, "-q",
                   "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    server = doc["environment"]["server"]
    assert server["pid"] == pid and server["cmdline"][1:3] == ["-m", "http.server"]
    assert os.path.realpath(server["executable"]) == os.path.realpath(sys.executable)
    said = [w for w in DEMO_WORDS if w in _flat(out.read_text())]
    assert not said, f"a --url --pid run of http.server speaks of {said}"


# --------------------------------------------------------------- case 9: what "write syscalls" counts


def test_syscw_leaves_out_the_sends_of_a_server_that_answers_with_send(http_server_run: dict[str, Any]) -> None:
    # http.server makes at least three output system calls per request: send() of the head, send() of
    # the body, and write() of its log line to stderr. syscw counts the write alone.
    writes = http_server_run["doc"]["scenarios"][0]["per_request"]["write_syscalls"]
    assert 0.5 < writes < 2, writes


@pytest.mark.parametrize("output", ["term", "md", "html"])
def test_every_table_names_what_syscw_counts(http_server_run: dict[str, Any], output: str) -> None:
    text = _flat(http_server_run[output])
    assert "write syscalls (syscw)" in text
    assert NOT_COUNTED in text and "are not counted" in text


def test_the_json_warns_that_this_servers_sends_are_not_counted(http_server_run: dict[str, Any],
                                                              demo_run: dict[str, Any]) -> None:
    found = [w for w in http_server_run["doc"]["warnings"] if w["kind"] == "write-syscalls-scope"]
    assert len(found) == 1 and NOT_COUNTED in found[0]["message"], http_server_run["doc"]["warnings"]
    # uvicorn on uvloop answers with write/writev (libuv): nothing to warn about.
    if demo_run["doc"]["environment"]["uvicorn"]["loop"] == "uvloop":
        assert not [w for w in demo_run["doc"]["warnings"] if w["kind"] == "write-syscalls-scope"]
