"""``iolab micro`` pieces without the CLI: the kernel facts it relies on, target resolution, the JSON
document, and the derived figures and explanation on known numbers."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

from iolab.analysis.micro.derive import derive_all, explain
from iolab.errors import ResultsFileError, UsageError
from iolab.measure.micro.spawn import read_proc_io
from iolab.measure.micro.target import build_settings, parse_modes, parse_stdout_kinds, resolve_target
from iolab.results.micro import (
    SCHEMA,
    Derived,
    MicroConfig,
    MicroResult,
    PrintCount,
    RunRecord,
    SettingResult,
    Stat,
    TargetInfo,
    dumps,
    loads,
    summarize,
)


def test_proc_io_of_a_zombie_is_readable_and_final() -> None:
    """The fact the runner is built on: after waitid(WNOWAIT) the exited, unreaped child's counters are
    still in /proc/PID/io, threads' and reaped children's writes included."""
    code = ("import os, subprocess, threading\n"
            "t = threading.Thread(target=lambda: [os.write(1, b'x') for _ in range(300)]); t.start(); t.join()\n"
            "subprocess.run(['/bin/sh', '-c', 'for i in 1 2 3 4 5; do echo y; done'])\n"
            "for _ in range(200): os.write(1, b'z')\n")
    with open(os.devnull, "wb") as null:
        pid = os.posix_spawn(sys.executable, [sys.executable, "-c", code], {"PATH": os.defpath},
                             file_actions=[(os.POSIX_SPAWN_DUP2, null.fileno(), 1)])
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    io = read_proc_io(pid)
    _, status, _ = os.wait4(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert io is not None and io.write_syscalls >= 300 + 5 + 200


def test_resolve_target(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print(1)\n")
    t = resolve_target([str(script), "a"], None)
    assert t.kind == "python" and t.script == str(script) and t.script_args == ("a",)
    assert t.interpreter == sys.executable
    t = resolve_target(["python3", str(script)], None)
    assert t.kind == "python" and t.interpreter is not None and t.interpreter.endswith("python3")
    assert resolve_target(["python3", "-c", "pass"], None).kind == "command"
    shebang = tmp_path / "tool"
    shebang.write_text("#!/usr/bin/env python3\nprint(1)\n")
    assert resolve_target([str(shebang)], None).kind == "python"
    with pytest.raises(UsageError, match="no such file"):
        resolve_target([str(tmp_path / "missing.py")], None)
    with pytest.raises(UsageError, match="not found"):
        resolve_target(["no-such-command-iolab"], None)
    with pytest.raises(UsageError, match="nothing to run"):
        resolve_target([], None)


def test_settings_and_environment(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print(1)\n")
    t = resolve_target([str(script)], None)
    specs = build_settings(t, ("pipe", "tty"), ("default", "unbuffered", "print-off"), {"PYTHONUNBUFFERED": "1"})
    by = {s.name: s for s in specs}
    assert list(by) == ["pipe/default", "pipe/unbuffered", "pipe/print-off", "tty/default", "tty/unbuffered"]
    parent = {"PYTHONUNBUFFERED": "1", "PATH": "/bin"}
    assert "PYTHONUNBUFFERED" not in by["pipe/default"].env(parent)
    assert by["tty/unbuffered"].env(parent)["PYTHONUNBUFFERED"] == "1"
    assert by["tty/default"].buffering == "line" and by["pipe/print-off"].argv[1] == "-c"
    assert parse_stdout_kinds("tty,pipe") == ("pipe", "tty")
    with pytest.raises(UsageError):
        parse_modes("default,fast")


def _run(setting: str, i: int, wall: float, writes: int, cpu_sys: float = 1.0) -> RunRecord:
    return RunRecord(setting=setting, run=i, status="ok", pid=100 + i, exit_code=0, wall_ms=wall,
                     cpu_user_ms=wall - cpu_sys, cpu_sys_ms=cpu_sys, write_syscalls=writes, write_bytes=writes * 10,
                     read_syscalls=5, stdout_bytes=1_000_000, stdout_lines=100_000, voluntary_ctx_switches=2,
                     involuntary_ctx_switches=3, rss_peak_bytes=10 << 20)


def _setting(name: str, mode: str, buffering: str, walls: list[float], writes: int) -> SettingResult:
    runs = tuple(_run(name, i + 1, w, writes) for i, w in enumerate(walls))
    stdout = name.split("/")[0]
    return SettingResult(name=name, stdout=stdout, mode=mode, buffering=buffering,  # type: ignore[arg-type]
                         argv=("python", "x.py"), python_env={}, env_removed=(), summary=summarize(runs),
                         derived=Derived(), runs=runs)


def _result(settings: tuple[SettingResult, ...], prints: PrintCount | None) -> MicroResult:
    return MicroResult(schema=SCHEMA, created="2026-01-01T00:00:00+00:00", tool_version="0", machine={},
                       target=TargetInfo(kind="python", argv=("x.py",)),
                       config=MicroConfig(3, 1, 60.0, False, ("pipe",), ("default",)), environment={},
                       settings=settings, prints=prints)


def test_derived_costs_and_explanation_from_known_medians() -> None:
    prints = PrintCount(calls=100_000, to_stdout=100_000)
    settings = (
        _setting("pipe/default", "default", "block", [120.0, 100.0, 110.0], 150),
        _setting("pipe/unbuffered", "unbuffered", "unbuffered", [400.0, 420.0, 410.0], 200_000),
        _setting("pipe/print-off", "print-off", "block", [50.0, 55.0, 45.0], 0),
        _setting("tty/default", "default", "line", [300.0, 310.0, 320.0], 100_000),
    )
    d = derive_all(settings, prints, "python")
    assert d["pipe/default"].stdout_write_syscalls == 150
    assert d["pipe/default"].extra_wall_us_per_call == pytest.approx((110 - 50) * 1000 / 100_000)
    assert d["pipe/unbuffered"].write_syscalls_per_call == pytest.approx(2.0)
    assert d["pipe/unbuffered"].write_baseline == "pipe/default"
    assert d["pipe/unbuffered"].extra_wall_us_per_write_syscall == pytest.approx(300 * 1000 / (200_000 - 150))
    assert d["tty/default"].why == "line-buffered on a tty: 100,000 write syscalls for 100,000 prints"
    assert d["pipe/default"].why == "block-buffered: 150 write syscalls for 100,000 prints"
    final = tuple(dataclasses.replace(s, derived=d[s.name]) for s in settings)
    text = " ".join(explain(final, prints, "python"))
    assert "Removing the prints would save 60.0 ms of 110 ms (55%)" in text
    assert "150 write syscalls on a pipe" in text and "2.0 per print" in text


def test_noise_is_not_called_a_saving() -> None:
    settings = (
        _setting("pipe/default", "default", "block", [50.0, 40.0, 60.0], 1),
        _setting("pipe/print-off", "print-off", "block", [45.0, 55.0, 49.0], 0),
    )
    for prints, says in ((PrintCount(1000, 1000), "within the spread of the runs"),
                         (PrintCount(1, 1), "only 1 print call")):
        d = derive_all(settings, prints, "python")
        # A difference inside the runs' min–max is no per-print cost, however many prints.
        assert d["pipe/default"].extra_wall_us_per_call is None
        final = tuple(dataclasses.replace(s, derived=d[s.name]) for s in settings)
        assert says in explain(final, prints, "python")[0]


def test_json_round_trip_and_schema_checks() -> None:
    s = _setting("pipe/default", "default", "block", [1.0, 2.0], 3)
    result = _result((s,), PrintCount(1, 1))
    text = dumps(result)
    again = loads(text)
    assert again == result
    assert again.settings[0].summary.wall_ms == Stat(1.5, 1.0, 2.0)
    with pytest.raises(ResultsFileError, match="expected iolab.micro"):
        loads(text.replace('"iolab.micro/1"', '"iolab.run/1"'))
    with pytest.raises(ResultsFileError, match="newer iolab"):
        loads(text.replace('"iolab.micro/1"', '"iolab.micro/9"'))
    with pytest.raises(ResultsFileError, match="not JSON"):
        loads("{")
