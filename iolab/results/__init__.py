"""Result records and the versioned ``iolab.run`` JSON document.

Every figure carries its unit in its name (``latency_ms``, ``rss_bytes``, ``cpu_ms``). Records are frozen:
raw samples are never edited after they are taken.

Schema history (the loader reads every version listed here; bump the minor number for additive changes,
the major one when a reader of the old version would misread the new one):

- ``iolab.run/1`` (0.1.0): first version.
- ``iolab.run/2`` (0.1.0): a figure that was not measured is ``null``, never ``0.0``: the fields of
  ``latency_ms`` and ``latency_uncorrected_ms`` (no successful request, or a closed loop for the
  uncorrected ones), ``rps``, ``rps_per_server_cpu_s`` and the fields of ``per_request`` (no successful
  request, or no server CPU measured: a ``--url`` run without ``--pid``). A round's and a scenario's
  ``status`` can be ``"degraded"`` (measured, but more than ``--max-error-pct`` of its requests did not
  succeed); rounds gain ``error_kind`` and rounds and scenarios ``successful`` (2xx/3xx responses). A v1
  reader would take those nulls for numbers, hence the major bump; the loader turns a v1 file's zeros
  that stood for "not measured" into nulls (``_upgrade``).
  Additive, optional: ``scenarios[].explain`` (the explain pass, docs/explain.md); absent → null.
  Additive, optional (issue 20, results/network.py): top-level ``network``, rounds' ``delivery`` and
  ``latency_per_s``, scenarios' ``delivery``; absent → null (``latency_per_s``: empty).
  Additive, optional (--try, docs/try.md): the run's ``findings``, a scenario's ``variant`` and
  ``try_applied``; absent → empty / null.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from iolab.errors import ResultsFileError
from iolab.outputs import write_text_atomic
from iolab.results.explain import BlockedSite, Explain, ExplainWrite  # noqa: F401 - re-exported
from iolab.results.network import Delivery, SecondLatency

SCHEMA_NAME = "iolab.run"
SCHEMA_VERSION = 2
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"

@dataclass(frozen=True)
class Summary:
    """Summary of per-second samples, the seed's columns: Count, Min, P50, P90, P95, P99, Max, Mean."""

    count: int = 0
    min: float = 0.0
    p50: float = 0.0
    p90: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    mean: float = 0.0


@dataclass(frozen=True)
class LatencyMs:
    """Response-time percentiles in milliseconds (microsecond resolution underneath), one field per
    entry of iolab.analysis.latency.PERCENTILES (a test keeps the two in step).

    Every field is None (JSON ``null``) when there is no latency to report: no request succeeded, or the
    figure does not apply (``latency_uncorrected_ms`` of a closed loop). Never 0.0 for "nothing".
    """

    p50: float | None = None
    p66: float | None = None
    p75: float | None = None
    p80: float | None = None
    p90: float | None = None
    p95: float | None = None
    p98: float | None = None
    p99: float | None = None
    p99_9: float | None = None
    p100: float | None = None
    mean: float | None = None

    @property
    def measured(self) -> bool:
        return self.p50 is not None


@dataclass(frozen=True)
class PerRequest:
    """Server-side OS cost divided by the requests completed in the measured window.

    None (JSON ``null``) when it cannot be divided out: no request succeeded, or iolab did not sample the
    server (``--url`` without ``--pid``).
    """

    write_syscalls: float | None = None
    write_bytes: float | None = None
    voluntary_ctx_switches: float | None = None
    involuntary_ctx_switches: float | None = None
    cpu_ms: float | None = None

    @property
    def measured(self) -> bool:
        return self.cpu_ms is not None


@dataclass(frozen=True)
class MainThread:
    """What ``pidstat -w`` shows: /proc/PID/status covers the main thread only."""

    cswch_per_s: Summary = field(default_factory=Summary)
    nvcswch_per_s: Summary = field(default_factory=Summary)


@dataclass(frozen=True)
class StdoutInfo:
    """Where the server's stdout went and how Python buffered it.

    kind: pipe | file | null | tty | slow.  buffering: block | line | unbuffered | unknown.
    bytes and lines: what the sink received from the server's stdout and stderr during the whole run
    of the server (start-up, warm-up and measured load).
    """

    kind: str = "pipe"
    buffering: str = "block"
    bytes: int = 0
    lines: int = 0


@dataclass(frozen=True)
class ThreadTotal:
    """Counters of every thread of one name over the measured window (exited threads included)."""

    name: str
    threads: int
    voluntary_ctx_switches: int
    involuntary_ctx_switches: int
    cpu_ms: float


@dataclass(frozen=True)
class Sample:
    """One probe interval (like one line of ``pidstat -w -u -r 1``), rates per second."""

    t_s: float
    cswch_per_s: float
    nvcswch_per_s: float
    main_cswch_per_s: float
    main_nvcswch_per_s: float
    cpu_user_pct: float
    cpu_sys_pct: float
    write_syscalls_per_s: float
    write_bytes_per_s: float
    rss_bytes: int
    threads: int


@dataclass(frozen=True)
class DriverUsage:
    """What the load generator itself cost (it must never be the bottleneck)."""

    name: str = "builtin"
    cpu_user_s: float = 0.0  # the whole driver process (wait4), start-up included
    cpu_sys_s: float = 0.0
    cpu_pct_of_core: float = 0.0  # over the load window alone where the driver measures it (builtin)
    cpu_load_s: float = 0.0  # CPU of the load window alone (builtin), else the whole process's


# A round or scenario: "ok"; "degraded" = measured, but more than the allowed share of its requests did
# not succeed (its figures stand, flagged); "failed" = nothing measured (no successful request, the server
# died, its output sink stalled): its latency, rates and per-request figures are null.
Status = Literal["ok", "degraded", "failed"]
# Why a round is not "ok" (RoundRecord.error_kind).
SERVER_DIED = "server-died"
NOTHING_MEASURED = "nothing-measured"
SINK_STALLED = "sink-stalled"
TOO_MANY_ERRORS = "too-many-errors"


@dataclass(frozen=True)
class RoundRecord:
    """One scenario measured once, on a fresh server.

    ``requests`` counts completed responses of any status, ``successful`` those with a 2xx or 3xx status;
    ``failed`` the requests that got no response (connect errors, timeouts, other errors). ``error`` says
    in words why the round is not "ok", ``error_kind`` as a word a program can test (the constants above).
    """

    round: int
    status: Status
    error: str | None
    started: str
    duration_s: float
    requests: int
    failed: int
    non_2xx: int
    timeouts: int
    connect_errors: int
    rps: float | None
    server_cpu_s: float
    rps_per_server_cpu_s: float | None
    latency_ms: LatencyMs
    latency_hdr: str
    cswch_per_s: Summary
    nvcswch_per_s: Summary
    main_thread: MainThread
    per_request: PerRequest
    stdout: StdoutInfo
    threads: tuple[ThreadTotal, ...]
    samples: tuple[Sample, ...]
    driver: DriverUsage
    rusage: dict[str, float] = field(default_factory=dict)
    noise: dict[str, float] = field(default_factory=dict)
    server_log_tail: tuple[str, ...] = ()
    # Open loop: latency from each request's actual send (latency_ms counts from when it was due).
    latency_uncorrected_ms: LatencyMs = field(default_factory=LatencyMs)
    latency_uncorrected_hdr: str = ""
    # How the load was applied (iolab.measure.drivers.summary.load_facts): driver, command, latency source and
    # resolution, whether latency_hdr is approximate (rebuilt from ab's/hey's percentiles) and which
    # percentiles the tool did not give, open loop's target and achieved rate, the tool's own facts.
    load: dict[str, Any] = field(default_factory=dict)
    driver_output: str = ""  # an external tool's own output, as printed
    error_kind: str | None = None  # SERVER_DIED | NOTHING_MEASURED | SINK_STALLED | TOO_MANY_ERRORS
    successful: int = 0  # completed responses with a 2xx or 3xx status
    # Logging across a network (issue 20): what reached the collector, and latency second by second.
    delivery: Delivery | None = None
    latency_per_s: tuple[SecondLatency, ...] = ()

    @property
    def measured(self) -> bool:
        """Its figures exist (status ok or degraded)."""
        return self.status != "failed"


@dataclass(frozen=True)
class ScenarioResult:
    """A scenario's rounds and their aggregates (design.md, "Results file")."""

    name: str
    path: str
    description: str
    status: Status  # "failed" if any round failed, else "degraded" if any was, else "ok"
    rounds: tuple[RoundRecord, ...]
    requests: int
    failed: int
    non_2xx: int
    rps: float | None
    rps_per_server_cpu_s: float | None
    latency_ms: LatencyMs
    latency_hdr: str
    cswch_per_s: Summary
    nvcswch_per_s: Summary
    main_thread: MainThread
    per_request: PerRequest
    stdout: StdoutInfo
    threads: tuple[ThreadTotal, ...]
    # Coefficient of variation (%) of each verdict metric over the successful rounds: how stable it was.
    stability_cv_pct: dict[str, float] = field(default_factory=dict)
    latency_uncorrected_ms: LatencyMs = field(default_factory=LatencyMs)  # open loop, merged over rounds
    latency_uncorrected_hdr: str = ""
    successful: int = 0  # completed responses with a 2xx or 3xx status, over the measured rounds
    delivery: Delivery | None = None  # issue 20: summed over the rounds
    explain: Explain | None = None  # the explain pass (iolab.measure.explain), never in the figures above
    # --try (docs/try.md): every knob's value, and what the knobs found and did in the server.
    variant: dict[str, str] | None = None
    try_applied: dict[str, Any] | None = None


@dataclass(frozen=True)
class Comparison:
    """A verdict on one metric between two scenarios: is b different from a, and by how much."""

    a: str
    b: str
    metric: str
    a_value: float
    b_value: float
    ratio: float
    ci95: tuple[float, float]
    p_value: float
    verdict: str
    method: str = ""
    note: str = ""


@dataclass(frozen=True)
class Finding:
    """One sentence of the answer (iolab.analysis.findings): b against a on one metric, with its figure.

    ``change`` is the relative change b/a − 1 (−0.21 = 21 % less), ``ci95`` its 95 % interval; a finding
    that states no measurable difference carries the interval that includes 0.
    """

    text: str
    metric: str
    scenario_a: str
    scenario_b: str
    change: float
    ci95: tuple[float, float]
    significant: bool = False


@dataclass(frozen=True)
class RunWarning:
    """Something the reader must know; ``message`` ends with what to do about it."""

    kind: str
    message: str


@dataclass(frozen=True)
class RunResult:
    schema: str
    created: str
    tool_version: str
    machine: dict[str, Any]
    target: dict[str, Any]
    load: dict[str, Any]
    limits: dict[str, Any]
    environment: dict[str, Any]
    scenarios: tuple[ScenarioResult, ...]
    comparisons: tuple[Comparison, ...] = ()
    warnings: tuple[RunWarning, ...] = ()
    attribution: tuple[str, ...] = ()
    status: str = "complete"
    # Issue 20: the network iolab built (method, delay_ms, jitter_ms, loss_pct, outage), None without one.
    network: dict[str, Any] | None = None
    findings: tuple[Finding, ...] = ()  # the answer first (iolab.analysis.findings), ranked by effect


# ---------------------------------------------------------------------------------------------- JSON

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """A JSON-ready copy of a record (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def dump_document(record: Any) -> str:
    """Any record as the JSON text iolab writes (no NaN or infinity: they are not JSON)."""
    return json.dumps(to_dict(record), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def save_document(record: Any, path: str | os.PathLike[str]) -> Path:
    """Write atomically (temp file + rename) so a crash mid-write never leaves half a document, and never
    over anything but a regular file (iolab.outputs.write_text_atomic). Raises OSError."""
    write_text_atomic(path, dump_document(record))
    return Path(path)


def read_document(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(text, source name) of a results file, with every way of failing mapped to ResultsFileError."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8"), str(p)
    except FileNotFoundError:
        raise ResultsFileError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"{p}: cannot read ({exc})") from None


def parse_document(text: str, source: str, cls: type[T], schema_name: str, schema_version: int,
                   upgrade: Callable[[dict[str, Any], int], dict[str, Any]] | None = None) -> T:
    """Parse, check the schema (a newer version is refused with a hint), upgrade, rebuild the record."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsFileError(f"{source} is not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict):
        raise ResultsFileError(f"{source} is not an iolab results file (top level is not an object)")
    name, version = parse_schema(doc.get("schema"))
    if name != schema_name:
        raise ResultsFileError(f"{source} has schema {doc.get('schema')!r}, expected {schema_name}/N")
    if version > schema_version:
        raise ResultsFileError(
            f"{source} was written by a newer iolab (schema {name}/{version}; this one reads up to "
            f"{schema_name}/{schema_version}): upgrade iolab"
        )
    if upgrade is not None:
        doc = upgrade(doc, version)
    try:
        return from_dict(cls, doc)
    except (TypeError, ValueError, KeyError) as exc:
        raise ResultsFileError(f"{source} is damaged: {exc}") from None


def dumps(result: RunResult) -> str:
    return dump_document(result)


def save(result: RunResult, path: str | os.PathLike[str]) -> Path:
    return save_document(result, path)


def _build(tp: Any, data: Any) -> Any:
    """Rebuild a value of type ``tp`` from JSON data; missing fields take their defaults."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if data is None:
            return None
        return _build(members[0], data)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v) for v in (data or ()))
        return tuple(_build(a, v) for a, v in zip(args, data, strict=False))
    if origin is Literal:
        return data
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, data)  # type: ignore[arg-type]
    if tp is float and isinstance(data, int):
        return float(data)
    return data


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    if not isinstance(data, dict):
        raise ResultsFileError(f"expected an object for {cls.__name__}, found {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _build(hints[f.name], data[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ResultsFileError(f"{cls.__name__} lacks the field {f.name!r}")
    return cls(**kwargs)


def parse_schema(schema: Any) -> tuple[str, int]:
    if not isinstance(schema, str) or "/" not in schema:
        raise ResultsFileError(f"not an iolab results file (schema: {schema!r})")
    name, _, version = schema.partition("/")
    try:
        return name, int(version)
    except ValueError:
        raise ResultsFileError(f"not an iolab results file (schema: {schema!r})") from None


def _upgrade(doc: dict[str, Any], version: int) -> dict[str, Any]:
    """Bring an older document up to the current version, one step at a time."""
    if version < 2:
        doc = _v1_to_v2(doc)
    return doc


_V1_NOT_MEASURED = "no request succeeded (an iolab.run/1 file, which recorded this round as ok)"


def _zeros_to_null(record: dict[str, Any], key: str, hdr_key: str | None = None) -> None:
    """A v1 object (latency_ms, per_request) whose every figure is 0 held no measurement: null them."""
    value = record.get(key)
    if not isinstance(value, dict):
        return
    if hdr_key is not None and record.get(hdr_key):
        return  # a histogram exists: the figures are real
    if all(v == 0 for v in value.values()):
        record[key] = {k: None for k in value}


def _v1_round(rec: dict[str, Any]) -> dict[str, Any]:
    rec = dict(rec)
    # v1 counted every status outside 200-299 as non-2xx (ab, hey, builtin): 3xx too, so this is a floor.
    rec.setdefault("successful", max(0, int(rec.get("requests") or 0) - int(rec.get("non_2xx") or 0)))
    if rec.get("status") == "failed":
        rec.setdefault("error_kind", SERVER_DIED)  # the only way a v1 round failed
    elif not rec.get("requests") and not rec.get("latency_hdr"):
        # v1 called a round with no response at all "ok", with 0.0 ms: that is what v2 calls failed.
        rec.update(status="failed", error=rec.get("error") or _V1_NOT_MEASURED, error_kind=NOTHING_MEASURED)
    if rec.get("status") == "failed":
        rec["latency_ms"] = {k: None for k in rec.get("latency_ms") or {}}
        rec["rps"] = rec["rps_per_server_cpu_s"] = None
        rec["per_request"] = {k: None for k in rec.get("per_request") or {}}
    _v1_figures(rec)
    return rec


def _v1_figures(rec: dict[str, Any]) -> None:
    """Zeros that v1 wrote for figures it did not have (no response, no server CPU, a closed loop)."""
    _zeros_to_null(rec, "latency_ms", "latency_hdr")
    _zeros_to_null(rec, "latency_uncorrected_ms", "latency_uncorrected_hdr")
    _zeros_to_null(rec, "per_request")
    for key in ("rps", "rps_per_server_cpu_s"):
        if rec.get(key) == 0:
            rec[key] = None


def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    doc = dict(doc)
    scenarios = []
    for sc in doc.get("scenarios") or []:
        if not isinstance(sc, dict):
            scenarios.append(sc)
            continue
        sc = dict(sc)
        rounds = [_v1_round(r) if isinstance(r, dict) else r for r in sc.get("rounds") or []]
        sc["rounds"] = rounds
        measured = [r for r in rounds if isinstance(r, dict) and r.get("status") != "failed"]
        sc.setdefault("successful", sum(int(r.get("successful") or 0) for r in measured))
        if len(measured) < len(rounds) or not rounds:
            sc["status"] = "failed"
        if not measured:
            sc["latency_ms"] = {k: None for k in sc.get("latency_ms") or {}}
            sc["rps"] = sc["rps_per_server_cpu_s"] = None
            sc["per_request"] = {k: None for k in sc.get("per_request") or {}}
        _v1_figures(sc)
        scenarios.append(sc)
    doc["scenarios"] = scenarios
    if doc.get("status", "complete") == "complete" and any(
            isinstance(sc, dict) and sc.get("status") == "failed" for sc in scenarios):
        doc["status"] = "failed"  # as v2 would have ended it: a round measured nothing
    doc["schema"] = SCHEMA
    return doc


def loads(text: str, source: str = "<string>") -> RunResult:
    return parse_document(text, source, RunResult, SCHEMA_NAME, SCHEMA_VERSION, _upgrade)


def load(path: str | os.PathLike[str]) -> RunResult:
    return loads(*read_document(path))
