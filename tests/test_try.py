"""--try: the knobs inside a real Python process, the variants of a run, the findings, and real apps.

The real apps: mock-me (a FastAPI mock server from PyPI that prints a line per request) and httpbin (Flask,
from PyPI) on gunicorn via --cmd; and two small FastAPI apps in tests/fixtures/try_apps that pin the
logging patterns the issue names (basicConfig to stdout; dictConfig in the lifespan handler, plus print).
Every assertion is about what the kernel or the sink counted (writes per request, lines), never a time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from iolab.analysis import verdict
from iolab.analysis.findings import findings, lines, with_findings
from iolab.analysis.knowledge import ScenarioKnowledge
from iolab.demo.scenarios import knowledge
from iolab.errors import UsageError
from iolab.measure.config import RunConfig, ScenarioSpec
from iolab.measure.targets import AppTarget, RunningTarget
from iolab.measure.trying import BOOT_DIR, expand, parse_try, variants
from iolab.report import markdown, terminal
from iolab.results import RunResult
from tests.conftest import run_cli
from tests.test_verdict import round_record, scenario

APPS = Path(__file__).resolve().parent / "fixtures" / "try_apps"
BIN = Path(sys.executable).parent
# One round where only counts are asserted (each server start costs seconds); two where a claim must be made.
SMALL = ("-n", "200", "-c", "4", "--warmup", "40", "--interval", "0.2", "--rounds", "1", "-q",
         "--cpus", "0", "--memory", "0", "--no-explain")  # the explain pass has its own tests
TWO_ROUNDS = (*SMALL, "--rounds", "2")


# ------------------------------------------------------------------------------ parsing and variants


def test_one_knob_at_a_time_and_combinations() -> None:
    req = parse_try(["logging=as-is,off,batch", "access-log=on,off"])
    assert [(v["logging"], v["access-log"]) for v in variants(req)] == [("off", "on"), ("batch", "on"),
                                                                         ("as-is", "off")]
    combo = parse_try(["logging=off,batch", "access-log=off"], combinations=True)
    assert len(variants(combo)) == 5  # {as-is, off, batch} × {on, off} minus as-is itself


def test_variants_are_scenarios_named_after_their_knobs() -> None:
    config = RunConfig(scenarios=(ScenarioSpec("/orders", "/orders"),), target=AppTarget("main:app"))
    out = expand(config, parse_try(["logging=off", "print=off"]))
    assert [s.name for s in out.scenarios] == ["/orders", "/orders [logging=off]", "/orders [print=off]"]
    assert out.scenarios[1].variant == {"logging": "off", "access-log": "on", "print": "on", "buffering": "as-is"}
    assert out.compare == (("/orders", "/orders [logging=off]"), ("/orders", "/orders [print=off]"))


@pytest.mark.parametrize("items", [["logging=loud"], ["colour=off"], ["logging"]])
def test_a_bad_knob_is_a_usage_error(items: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_try(items)


def test_try_on_a_running_server_is_refused() -> None:
    config = RunConfig(scenarios=(ScenarioSpec("/x", "/x"),), target=RunningTarget("http://127.0.0.1:1/x"))
    with pytest.raises(UsageError, match="--try needs a server iolab starts"):
        expand(config, parse_try(["logging=off"]))


def test_cli_try_with_url_exits_2() -> None:
    proc = run_cli("run", "--url", "http://127.0.0.1:9/x", "--try", "logging=off", "-q")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --try needs a server iolab starts")
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------ the knobs in a process

LATE = """
import logging, sys
print("print line")
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")  # late: after the bootstrap
for i in range(5):
    logging.getLogger("app").info("record %d", i)
"""


def _python(code: str, knobs: dict[str, str], tmp_path: Path, extra_path: str = "") -> tuple[str, dict[str, object]]:
    report = Path(tempfile.mkdtemp(dir=tmp_path))  # one per process: its report alone
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(BOOT_DIR), extra_path])), IOLAB_TRY=json.dumps(knobs),
               IOLAB_TRY_REPORT=str(report))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(p.read_text()) for p in report.glob("*.json")]
    return proc.stdout + proc.stderr, (docs[0]["applied"] if docs else {})


@pytest.mark.parametrize(("mode", "records"), [("off", 0), ("stream", 5), ("queue", 5), ("batch", 5)])
def test_logging_knob_reapplied_after_a_late_basicconfig(tmp_path: Path, mode: str, records: int) -> None:
    out, applied = _python(LATE, {"logging": mode}, tmp_path)
    assert sum(line.startswith("record") for line in out.splitlines()) == records
    assert applied["logging"]["handlers_replaced"] == 1  # type: ignore[index]


def test_queue_knob_survives_a_fork(tmp_path: Path) -> None:
    """gunicorn forks its workers after logging is set up: each child gets its own queue and listener."""
    code = ("import logging, os, sys\nlogging.basicConfig(stream=sys.stdout, level=logging.INFO, format='%(message)s')\n"
            "for i in range(50): logging.info('parent')\npid = os.fork()\nif pid == 0:\n"
            "    for i in range(50): logging.info('child')\n    sys.exit(0)\nos.waitpid(pid, 0)\n")
    out, _ = _python(code, {"logging": "queue"}, tmp_path)
    assert (out.count("parent"), out.count("child")) == (50, 50)  # none lost, none written twice


def test_print_knob_and_its_report(tmp_path: Path) -> None:
    out, applied = _python(LATE, {"print": "off"}, tmp_path)
    assert "print line" not in out and out.count("record") == 5
    assert applied["print"] == {"value": "off", "replaced": True, "called": True}


def test_buffering_knob_turns_every_print_into_a_write(tmp_path: Path) -> None:
    code = "import sys\nfor i in range(50): print(i)\nimport os\nprint(open(f'/proc/{os.getpid()}/io').read())"
    counts = {}
    for mode in ("block", "unbuffered"):
        out, applied = _python(code, {"buffering": mode}, tmp_path)
        counts[mode] = int(next(x for x in out.splitlines() if x.startswith("syscw:")).split()[1])
        assert applied["buffering"]["after"]["stdout"] == mode  # type: ignore[index]
    assert counts["unbuffered"] - counts["block"] >= 90  # 50 prints = 100 writes (text, then "\n")


def test_an_existing_sitecustomize_still_runs(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("import sys\nprint('their sitecustomize ran', file=sys.stderr)\n")
    out, _ = _python("pass", {"print": "off"}, tmp_path, extra_path=str(theirs))
    assert "their sitecustomize ran" in out


# ------------------------------------------------------------------------------ findings (pure)


def _result(*scenarios: object, kind: str = "app") -> RunResult:
    return RunResult(schema="iolab.run/2", created="", tool_version="", machine={}, target={"kind": kind},
                     load={}, limits={}, environment={}, scenarios=tuple(scenarios))  # type: ignore[arg-type]


def test_findings_state_significant_changes_first_with_figures_and_intervals() -> None:
    base = replace(scenario("orders", [round_record(i, writes=4.0 + i / 100, p50=10 + i / 10) for i in range(3)]),
                   name="/orders", variant={"logging": "as-is"})
    off = replace(scenario("orders", [round_record(i, writes=1.0 + i / 100, p50=8 + i / 10) for i in range(3)]),
                  name="/orders [logging=off]", path="/orders [logging=off]", variant={"logging": "off"})
    same = replace(scenario("orders", [round_record(i, writes=4.0 + i / 100, p50=10 + i / 7) for i in range(3)]),
                   name="/orders [print=off]", path="/orders [print=off]", variant={"print": "off"})
    found = findings(_result(base, same, off))
    assert [f.scenario_b for f in found] == ["/orders [logging=off]", "/orders [print=off]"]
    assert found[0].significant and found[0].metric == "write_syscalls_per_request"
    assert found[0].text.startswith("logging=off removes 3.00 of 4.01 write syscalls per request (−75 %, CI")
    assert found[0].ci95[0] <= found[0].change <= found[0].ci95[1] < 0
    assert not found[1].significant and "no measurable difference" in found[1].text and "CI" in found[1].text
    assert lines(found)[0].endswith(".")


def test_every_report_opens_with_the_findings() -> None:
    sc = [scenario(n, [round_record(i, writes=w + i / 100) for i in range(3)]) for n, w in (("a", 1.0), ("b", 2.0))]
    result = with_findings(replace(_result(*sc), comparisons=tuple(verdict.compare_all({s.name: s for s in sc}))))
    assert markdown.render(result).split("\n")[2] == "## Findings"
    assert terminal.render(result).startswith("Findings\n• /b instead of /a adds 1.00 write syscalls")


def test_findings_of_the_demo_split_the_seed_gap() -> None:
    rounds = {"sync": 12.0, "async": 9.0, "noop-sync": 11.9, "noop-async": 9.0}
    sc = [scenario(n, [round_record(i, p50=v + i / 20, cpu_ms=v / 20 + i / 1000) for i in range(3)])
          for n, v in rounds.items()]
    found = findings(_result(*sc, kind="demo"), ScenarioKnowledge(**knowledge()))
    text = " ".join(lines(found))
    assert "/async instead of /sync cuts mean latency by 25 %" in text
    assert "/sync − /async in mean latency: +3.00 ms (CI" in text and "accounts for +2.90 ms (CI" in text


# ------------------------------------------------------------------------------ real apps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scenarios(out: Path) -> dict[str, dict[str, object]]:
    doc = json.loads(out.read_text())
    assert doc["findings"], "the results carry the findings"
    return {s["name"]: s for s in doc["scenarios"]}


def _per_request(s: dict[str, object], key: str) -> float:
    return float(s["per_request"][key])  # type: ignore[index]


def _lines_per_request(s: dict[str, object]) -> float:
    """Lines the sink received per request sent (the warm-up's 40 per round included)."""
    rounds = len(s["rounds"])  # type: ignore[arg-type]
    return s["stdout"]["lines"] / (s["requests"] + rounds * 40)  # type: ignore[index, operator]


def test_fastapi_basicconfig_app_logging_off_and_batch(tmp_path: Path, nothing_left_behind: None) -> None:
    out = tmp_path / "r.json"
    proc = run_cli("run", "--app", "basicconfig_app:app", "--app-dir", str(APPS), "--path", "/orders",
                   "--try", "logging=as-is,off,batch", *TWO_ROUNDS, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Findings\n")  # the answer first, before the latency table
    sc = _scenarios(out)
    writes = {n: _per_request(s, "write_syscalls") for n, s in sc.items()}
    # As-is: 3 records (each StreamHandler.flush a write) + the access line + the response.
    assert writes["/orders"] - writes["/orders [logging=off]"] >= 2.7
    assert writes["/orders"] - writes["/orders [logging=batch]"] >= 2.5  # batched, written by one thread
    assert _lines_per_request(sc["/orders [logging=off]"]) < 1.2 <= 3.5 <= _lines_per_request(sc["/orders"])
    assert _lines_per_request(sc["/orders [logging=batch]"]) >= 3.5  # the records still arrive
    assert "logging=off removes" in proc.stdout


def test_lifespan_dictconfig_app_is_caught_late(tmp_path: Path, nothing_left_behind: None) -> None:
    out = tmp_path / "r.json"
    proc = run_cli("run", "--app", "lifespan_app:app", "--app-dir", str(APPS), "--path", "/cart",
                   "--try", "logging=off", "--try", "print=off", *SMALL, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    sc = _scenarios(out)
    applied = sc["/cart [logging=off]"]["try_applied"]
    assert "shop" in applied["logging"]["loggers"]  # type: ignore[index]
    # As-is: 2 records + 1 print + 1 access line per request.
    assert _lines_per_request(sc["/cart"]) >= 3.5
    assert 1.5 <= _lines_per_request(sc["/cart [logging=off]"]) <= 2.5
    assert 2.5 <= _lines_per_request(sc["/cart [print=off]"]) <= 3.5
    assert _per_request(sc["/cart"], "write_syscalls") - _per_request(sc["/cart [logging=off]"],
                                                                      "write_syscalls") >= 1.5


def test_mock_me_from_pypi_print_off(tmp_path: Path, nothing_left_behind: None) -> None:
    pytest.importorskip("mock_me")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"name": "t", "port": 8000, "endpoints": [
        {"path": "/hello", "method": "GET", "response": {"status": 200, "body": {"m": {"type": "string",
                                                                                       "value": "hi"}}}}]}))
    port, out = _free_port(), tmp_path / "r.json"
    proc = run_cli("run", "--cmd", f"{BIN / 'mock-me'} start {config} --host 127.0.0.1 --port {port}",
                   "--url", f"http://127.0.0.1:{port}/hello", "--try", "print=off", "--try", "buffering=unbuffered",
                   *SMALL, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    sc = _scenarios(out)
    assert _lines_per_request(sc["/hello"]) >= 0.9  # mock-me prints one line per request
    assert sc["/hello [print=off]"]["stdout"]["lines"] == 0  # type: ignore[index]
    assert _per_request(sc["/hello [buffering=unbuffered]"], "write_syscalls") - \
        _per_request(sc["/hello"], "write_syscalls") >= 1.5  # the line and its "\n", each a write


def test_httpbin_on_gunicorn_access_log_off(tmp_path: Path, nothing_left_behind: None) -> None:
    pytest.importorskip("httpbin")
    port, out = _free_port(), tmp_path / "r.json"
    proc = run_cli("run", "--cmd", f"{BIN / 'gunicorn'} -b 127.0.0.1:{port} -w 1 --access-logfile - httpbin:app",
                   "--url", f"http://127.0.0.1:{port}/get", "--try", "access-log=off", "--try", "print=off",
                   *SMALL, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    sc = _scenarios(out)
    assert _per_request(sc["/get"], "write_syscalls") - _per_request(sc["/get [access-log=off]"],
                                                                     "write_syscalls") >= 0.9
    assert sc["/get [access-log=off]"]["try_applied"]["access-log"]["loggers"] == ["gunicorn.access"]  # type: ignore[index]
    doc = json.loads(out.read_text())
    assert any(w["kind"] == "try-knob-idle" and "print=off did nothing: the app never called print" in w["message"]
               for w in doc["warnings"])
    assert "print=off: not tested, too few rounds" in proc.stdout  # one round: no interval to state


def test_report_and_compare_regenerate_the_findings(tmp_path: Path) -> None:
    from iolab import results

    base = [scenario("orders", [round_record(i, writes=4.0 + i / 100) for i in range(3)])]
    new = [scenario("orders", [round_record(i, writes=1.0 + i / 100) for i in range(3)])]
    results.save(_result(*base), tmp_path / "base.json")  # saved without findings, as an older iolab did
    results.save(_result(*new), tmp_path / "new.json")
    proc = run_cli("compare", str(tmp_path / "base.json"), str(tmp_path / "new.json"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Findings\n• /orders: ")
    assert "removes 3.00 of 4.01 write syscalls per request" in proc.stdout.split("\n")[1]
    report = run_cli("report", str(tmp_path / "new.json"), "--format", "md")
    assert "## Findings" in report.stdout


def test_a_server_that_never_loads_the_bootstrap_is_named(tmp_path: Path, nothing_left_behind: None) -> None:
    # python -S skips site, hence sitecustomize: as a server in another language would, it ignores the knobs.
    port, out = _free_port(), tmp_path / "r.json"
    proc = run_cli("run", "--cmd", f"{sys.executable} -S -m http.server {port} --bind 127.0.0.1",
                   "--url", f"http://127.0.0.1:{port}/", "--try", "logging=off", *SMALL, "-n", "50",
                   "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert any(w["kind"] == "try-knob-idle" and "logging=off did nothing: the server never loaded iolab's "
               "bootstrap" in w["message"] for w in doc["warnings"])
