"""What to run (a Python script or any command) and the output settings to run it in.

Every setting builds the child's environment explicitly from iolab's own: ``PYTHONUNBUFFERED`` is
removed for every setting but "unbuffered", which sets it to 1 — a machine (or a Dockerfile) that
exports it must not silently turn the "default" measurement into an unbuffered one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from iolab.errors import UsageError
from iolab.measure import procs
from iolab.measure.micro.printoff import launcher_argv
from iolab.results.micro import PYTHON_MODES, STDOUT_KINDS, TargetInfo

UNBUFFERED_VAR = "PYTHONUNBUFFERED"
_PYTHON_NAME = re.compile(r"^(python|pypy)[0-9.]*$")
VERSION_PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Target:
    kind: Literal["python", "command"]
    user_argv: tuple[str, ...]
    program: tuple[str, ...]  # the argv that runs it as given: (python, script, *args) or (prog, *args)
    script: str | None = None
    script_args: tuple[str, ...] = ()
    interpreter: str | None = None


@dataclass(frozen=True)
class SettingSpec:
    name: str
    stdout: str
    mode: str
    buffering: str
    argv: tuple[str, ...]
    env_removed: tuple[str, ...]
    env_add: tuple[tuple[str, str], ...] = ()

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in base.items() if k not in self.env_removed}
        env.update(self.env_add)
        return env


def _has_python_shebang(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            first = fh.readline(256)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def _which(name: str, what: str) -> str:
    if "/" in name:
        p = Path(name)
        if not p.exists():
            raise UsageError(f"{name}: no such file")
        if p.is_dir() or not os.access(p, os.X_OK):
            raise UsageError(f"{name}: not an executable file")
        return str(p.absolute())
    found = shutil.which(name)
    if found is None:
        raise UsageError(f"{name}: {what} not found on PATH")
    return found


def _check_script(script: str) -> None:
    p = Path(script)
    if not p.exists():
        raise UsageError(f"{script}: no such file")
    if not p.is_file():
        raise UsageError(f"{script}: not a file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{script}: not readable")


def resolve_target(tokens: Sequence[str], python: str | None) -> Target:
    """A Python script (``x.py``, a python shebang, or ``python x.py …``) runs under the chosen
    interpreter in every Python mode; anything else runs as a command in its own buffering."""
    if not tokens:
        raise UsageError("nothing to run: give a script (iolab micro solution.py) or a command "
                         "after -- (iolab micro -- ./a.out)")
    first, rest = tokens[0], tuple(tokens[1:])
    if _PYTHON_NAME.match(Path(first).name) and rest and not rest[0].startswith("-"):
        if python is not None:
            raise UsageError(f"both --python {python} and a command starting with {first}: give one")
        interpreter = _which(first, "interpreter")
        _check_script(rest[0])
        return Target("python", tuple(tokens), (interpreter, *rest), rest[0], rest[1:], interpreter)
    if first.endswith(".py") or (Path(first).is_file() and _has_python_shebang(Path(first))):
        _check_script(first)
        # normpath, not realpath: a venv's python is a symlink whose target would lose the venv.
        interpreter = _which(python, "interpreter") if python else os.path.normpath(sys.executable)
        return Target("python", tuple(tokens), (interpreter, first, *rest), first, rest, interpreter)
    if python is not None:
        raise UsageError(f"--python applies to Python scripts; {first} is run as a command")
    return Target("command", tuple(tokens), (_which(first, "command"), *rest))


def interpreter_version(interpreter: str, env: Mapping[str, str]) -> str:
    probe = "import sys; print('%d.%d.%d' % sys.version_info[:3])"
    try:
        done = subprocess.run([interpreter, "-c", probe], env=dict(env), capture_output=True, text=True,
                              timeout=VERSION_PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False,
                              preexec_fn=procs.die_with_parent())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"{interpreter}: not a working Python interpreter ({exc})") from None
    if done.returncode != 0 or not done.stdout.strip():
        raise UsageError(f"{interpreter}: not a working Python 3 interpreter")
    return done.stdout.strip()


def _python_buffering(stdout: str, mode: str) -> str:
    if mode == "unbuffered":
        return "unbuffered"
    return "line" if stdout == "tty" else "block"


def build_settings(target: Target, stdout_kinds: Sequence[str], modes: Sequence[str],
                   parent_env: Mapping[str, str]) -> tuple[SettingSpec, ...]:
    removed = (UNBUFFERED_VAR,) if UNBUFFERED_VAR in parent_env else ()
    if target.kind == "command":
        return tuple(SettingSpec(k, k, "program", "program", target.program, removed) for k in stdout_kinds)
    assert target.script is not None and target.interpreter is not None
    specs: list[SettingSpec] = []
    for kind in stdout_kinds:
        for mode in modes:
            if mode == "default":
                specs.append(SettingSpec(f"{kind}/default", kind, mode, _python_buffering(kind, mode),
                                         target.program, removed))
            elif mode == "unbuffered":
                specs.append(SettingSpec(f"{kind}/unbuffered", kind, mode, "unbuffered", target.program,
                                         (), ((UNBUFFERED_VAR, "1"),)))
            elif mode == "print-off" and kind == stdout_kinds[0]:
                # With no prints left, where stdout goes hardly matters: one baseline, on the first target.
                argv = launcher_argv(target.interpreter, "off", target.script, target.script_args)
                specs.append(SettingSpec(f"{kind}/print-off", kind, mode, _python_buffering(kind, mode),
                                         argv, removed))
    return tuple(specs)


def parse_list(value: str, allowed: Sequence[str], option: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise UsageError(f"{option} takes a comma-separated list of {', '.join(allowed)} (got {value!r})")
    return tuple(v for v in allowed if v in items)  # a fixed order keeps tables comparable


def parse_stdout_kinds(value: str) -> tuple[str, ...]:
    return parse_list(value, STDOUT_KINDS, "--stdout")


def parse_modes(value: str) -> tuple[str, ...]:
    return parse_list(value, PYTHON_MODES, "--mode")


def describe(target: Target, input_path: str | None, interpreter_ver: str | None) -> TargetInfo:
    sha = size = None
    if target.script is not None:
        data = Path(target.script).read_bytes()
        sha, size = hashlib.sha256(data).hexdigest(), len(data)
    input_bytes = Path(input_path).stat().st_size if input_path else None
    return TargetInfo(
        kind=target.kind, argv=target.user_argv, script=target.script, script_sha256=sha,
        script_bytes=size, interpreter=target.interpreter, interpreter_version=interpreter_ver,
        input=input_path, input_bytes=input_bytes,
    )


def python_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables that change how Python runs (buffering, bytecode, encoding …), as recorded."""
    return {k: v for k, v in sorted(env.items()) if k.startswith("PYTHON")}
