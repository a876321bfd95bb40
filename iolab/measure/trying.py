"""``--try KNOB=VALUE[,VALUE…]``: each knob value a variant of the user's scenarios, measured against as-is.

A variant is one more scenario (same path, its own fresh server per round, interleaved in the same rounds as
every other scenario) whose server starts with iolab/tryknobs first on PYTHONPATH and the knob values in
IOLAB_TRY. Nothing in the user's files changes. The knobs' own report (what they found and did in the server)
comes back through a temporary directory per server (IOLAB_TRY_REPORT) and is kept as ``try_applied``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import iolab
from iolab.errors import UsageError
from iolab.measure import tmpdirs
from iolab.measure.config import RunConfig, ScenarioSpec
from iolab.measure.targets import AppTarget, CommandTarget
from iolab.results import RunWarning, ScenarioResult

# Each knob's values, the as-is one first (docs/try.md).
KNOBS: Mapping[str, tuple[str, ...]] = {
    "logging": ("as-is", "off", "stream", "queue", "batch"),
    "access-log": ("on", "off"),
    "print": ("on", "off"),
    "buffering": ("as-is", "block", "line", "unbuffered"),
}
AS_IS: Mapping[str, str] = {k: v[0] for k, v in KNOBS.items()}
BOOT_DIR = Path(__file__).resolve().parent.parent / "tryknobs" / "boot"


@dataclass(frozen=True)
class TryRequest:
    """The parsed --try options: knob → the values asked for (as-is implied), and the combination mode."""

    knobs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    combinations: bool = False


def parse_try(items: Sequence[str], combinations: bool = False) -> TryRequest:
    """('logging=as-is,off,batch', 'access-log=on,off') → a TryRequest; a bad knob or value → UsageError."""
    knobs: dict[str, list[str]] = {}
    for item in items:
        knob, sep, values = item.partition("=")
        knob = knob.strip()
        if not sep or knob not in KNOBS:
            raise UsageError(f"--try {item!r}: expected KNOB=VALUE[,VALUE…] with KNOB one of "
                             f"{', '.join(KNOBS)}")
        for value in (v.strip() for v in values.split(",")):
            if value not in KNOBS[knob]:
                raise UsageError(f"--try {item!r}: {knob} takes {', '.join(KNOBS[knob])}, not {value!r}")
            if value not in knobs.setdefault(knob, []):
                knobs[knob].append(value)
    if combinations and not knobs:
        raise UsageError("--try-combinations needs at least one --try KNOB=VALUE")
    return TryRequest(tuple((k, tuple(v)) for k, v in knobs.items()), combinations)


def variants(request: TryRequest) -> list[dict[str, str]]:
    """Every knob setting to measure besides as-is: one knob at a time, or the full product."""
    if request.combinations:
        axes = [[(k, v) for v in dict.fromkeys((AS_IS[k], *vals))] for k, vals in request.knobs]
        out = [{**AS_IS, **dict(combo)} for combo in itertools.product(*axes)]
    else:
        out = [{**AS_IS, k: v} for k, vals in request.knobs for v in vals]
    unique: dict[str, dict[str, str]] = {}
    for v in out:
        if v != AS_IS:
            unique.setdefault(suffix(v), v)
    return list(unique.values())


def suffix(variant: Mapping[str, str]) -> str:
    """The knobs that differ from as-is, as the scenario name shows them: 'logging=off access-log=off'."""
    return " ".join(f"{k}={v}" for k, v in variant.items() if AS_IS.get(k) != v)


def expand(config: RunConfig, request: TryRequest) -> RunConfig:
    """The config with every scenario followed by its variants, each compared with its as-is scenario."""
    if not request.knobs:
        return config
    target = config.target
    if not isinstance(target, (AppTarget, CommandTarget)):
        raise UsageError("--try needs a server iolab starts (--app, or --cmd running Python): with --url "
                         "alone the server is already running and cannot be started with the knobs")
    if isinstance(target, AppTarget) and target.kind == "demo":
        raise UsageError("--try is for your own app (--app or --cmd); the demo's scenarios are its variants")
    scenarios: list[ScenarioSpec] = []
    pairs = list(config.compare)
    for spec in config.scenarios:
        base = replace(spec, variant=dict(AS_IS))
        scenarios.append(base)
        for v in variants(request):
            name = f"{spec.name} [{suffix(v)}]"
            scenarios.append(replace(spec, name=name, variant=v))
            pairs.append((base.name, name))
    return replace(config, scenarios=tuple(scenarios), compare=tuple(pairs))


def knobs_env(variant: Mapping[str, str] | None) -> Mapping[str, str]:
    """The knobs a variant sets (those not as-is)."""
    return {k: v for k, v in (variant or {}).items() if AS_IS.get(k) != v}


@contextlib.contextmanager
def knobs_for(spec: ScenarioSpec, env: dict[str, str], into: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Around one server of ``spec``: ``env`` gains the bootstrap and the knobs (when the variant sets any);
    after the block, what the server's processes reported applying is merged into ``into[spec.name]``."""
    knobs = knobs_env(spec.variant)
    if not knobs:
        yield
        return
    report_dir = tmpdirs.make("try")
    try:
        env["PYTHONPATH"] = os.pathsep.join([str(BOOT_DIR), *filter(None, [env.get("PYTHONPATH")])])
        env["IOLAB_TRY"] = json.dumps(dict(knobs))
        env["IOLAB_TRY_REPORT"] = report_dir
        env["IOLAB_TRY_IOLAB_PATH"] = str(Path(iolab.__file__).resolve().parent.parent)
        yield
        into[spec.name] = merge(into.get(spec.name, {}), collect(report_dir))
    finally:
        shutil.rmtree(report_dir, ignore_errors=True)


def collect(report_dir: str) -> dict[str, Any]:
    """The reports of one server's processes, merged: per knob, the most any one process found."""
    merged: dict[str, Any] = {"processes": 0}
    for path in sorted(Path(report_dir).glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        merged = merge(merged, {"processes": 1, **(doc.get("applied") or {})}, add_processes=True)
    return merged


def merge(a: Mapping[str, Any], b: Mapping[str, Any], add_processes: bool = False) -> dict[str, Any]:
    """Two reports as one: counts take the larger, flags either, lists the union, other facts the first."""
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in a.items()}
    for knob, facts in b.items():
        if knob == "processes":
            out[knob] = int(out.get(knob, 0)) + int(facts) if add_processes else max(int(out.get(knob, 0)),
                                                                                      int(facts))
            continue
        if not isinstance(facts, dict):
            continue
        into = out.setdefault(knob, {})
        for key, value in facts.items():
            if isinstance(value, bool):
                into[key] = bool(into.get(key)) or value
            elif isinstance(value, int):
                into[key] = max(int(into.get(key, 0)), value)
            elif isinstance(value, list):
                into[key] = sorted(set(into.get(key, [])) | set(value))
            else:
                into.setdefault(key, value)
    return out


def labelled(s: ScenarioResult, spec: ScenarioSpec, applied: Mapping[str, dict[str, Any]]) -> ScenarioResult:
    """A scenario's result with its variant; a variant's path shows its knobs, as every table labels it."""
    if spec.variant is None:
        return s
    label = f"{spec.path} [{suffix(spec.variant)}]" if knobs_env(spec.variant) else spec.path
    return replace(s, path=label, variant=dict(spec.variant), try_applied=applied.get(spec.name))


def idle_reason(knob: str, value: str, applied: Mapping[str, Any]) -> str | None:
    """Why a knob did nothing in the server, from its report; None when it acted."""
    if not applied.get("processes"):
        return "the server never loaded iolab's bootstrap (not a Python server, or its PYTHONPATH was replaced)"
    facts = applied.get(knob) or {}
    if knob == "logging" and not facts.get("handlers_replaced"):
        if facts.get("handlers_kept"):
            return "its logging handlers write to no stream (sockets, syslog …): they were kept"
        return "no logging handler was configured in the server (records went nowhere, or to lastResort)"
    if knob == "access-log" and not facts.get("loggers"):
        return "no access logger (uvicorn.access, gunicorn.access, hypercorn.access) was set up"
    if knob == "print" and not facts.get("called"):
        return "the app never called print"
    if knob == "buffering" and facts.get("before") == facts.get("after"):
        return f"stdout and stderr were already {value}-buffered"
    return None


def warnings(scenarios: Sequence[ScenarioResult]) -> list[RunWarning]:
    """A warning per knob value that did nothing in the server, naming the knob and why."""
    out = []
    for s in scenarios:
        for knob, value in knobs_env(s.variant).items():
            reason = idle_reason(knob, value, s.try_applied or {})
            if reason:
                out.append(RunWarning("try-knob-idle", f"{s.path}: {knob}={value} did nothing: {reason}. Its "
                                      "figures measure as-is again; the finding for it says so."))
    return out
