"""Warnings as data: what the reader must know about a run, each message ending with what to do.

Pure functions over the results (no I/O), like hyperfine's ``output/warnings.rs``. Thresholds are named
and explained here so a reader of a report can check why a warning fired.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from iolab.analysis.knowledge import NONE, ScenarioKnowledge
from iolab.analysis.stats import outliers
from iolab.analysis.verdict import stdout_notes
from iolab.results import (
    NOTHING_MEASURED,
    SINK_STALLED,
    TOO_MANY_ERRORS,
    RoundRecord,
    RunWarning,
    ScenarioResult,
)

# The driver is the bottleneck when it uses most of its core: its own latency then leaks into ours.
DRIVER_SATURATED_PCT = 90.0
# Other processes using this much of a core (on average over a round) disturb a 2-core measurement.
OTHER_LOAD_PCT = 25.0
# A hypervisor stealing this much means the VM's CPU time is not the wall time.
STEAL_PCT = 5.0
# Throttled in more than this share of CFS periods: latency includes quota stalls (up to period − quota).
THROTTLED_MOST_PCT = 50.0
# Below this share of the CPU quota, something other than CPU limited the server.
QUOTA_REACHED_SHARE = 0.8
# A percentile needs about 1/(1−q) samples to mean anything: p99 needs 100.
MIN_SAMPLES_P99 = 100
MIN_REQUESTS_P99_9 = 1000


def _w(kind: str, message: str) -> RunWarning:
    return RunWarning(kind, message)


def buffering_warnings(kind: str, buffering: str) -> list[RunWarning]:
    out = []
    if buffering == "unbuffered":
        out.append(_w("stdout-unbuffered",
                      "The server's stdout was unbuffered (PYTHONUNBUFFERED=1 or -u): every print or log line "
                      "is a write() system call. Unset PYTHONUNBUFFERED in production images unless you need "
                      "it, or log through a batching handler (iolab.logging)."))
    if kind == "tty":
        out.append(_w("stdout-tty",
                      "The server's stdout was a terminal: Python line-buffers it, so every line is a write() "
                      "system call. Services rarely log to a tty; measure with --stdout pipe to see production "
                      "costs."))
    return out


def write_syscalls_scope(server: Mapping[str, object], measured: bool) -> list[RunWarning]:
    """The write-syscall figure leaves a server's responses out when it sends them with send*(): say so,
    unless the server is known to write them with write/writev (uvicorn or hypercorn on uvloop)."""
    how = server.get("responses_sent_with")
    if not measured or how == "write/writev":
        return []
    counted = ("write syscalls per request count write, writev, pwrite and sendfile calls (/proc/PID/io "
               "syscw); send/sendto/sendmsg are not counted")
    if how == "send":
        what = (f"{counted}, and this server ({server.get('name')} on the {server.get('loop')} loop) answers "
                "with send(), so the figure leaves out every response it sent.")
    else:
        what = (f"{counted}, and how this server sends its responses is not known to iolab: one that "
                "answers with send() (Python's http.server, gunicorn's sync workers, asyncio without uvloop) "
                "makes more output system calls than the figure shows.")
    return [_w("write-syscalls-scope", what + " Compare the figure only between runs of the same server, or "
               "count every call with strace -f -c -p PID.")]


# p50 varying this much (CV %) over rounds while the mean varies under half of it: a bimodal distribution.
UNSTABLE_P50_CV_PCT = 20.0
# The modified z-score needs a handful of rounds: with 3, two close values make the third an "outlier".
MIN_ROUNDS_FOR_OUTLIERS = 5

_HINTS: dict[str, tuple[str, str]] = {
    # kind: (what happened, in which scenarios/rounds: {where}; what to do)
    "stdout-nonblocking": (
        "the app switched its stdout to non-blocking mode in {where} (aiologger does this for the whole "
        "process); a later print() can raise BlockingIOError when the pipe is full.",
        "Keep aiologger away from shared descriptors, or use a handler that leaves them as they are.",
    ),
    "driver-saturated": (
        f"the load driver used ≥ {DRIVER_SATURATED_PCT:.0f} % of its core in {{where}}, so it may have "
        "limited the load.",
        "Lower -c, use --keepalive, or give the driver a core of its own.",
    ),
    "other-load": (
        f"other processes used ≥ {OTHER_LOAD_PCT:.0f} % of a core during {{where}}.",
        "Stop other work on the machine, or add --rounds and rely on the per-request counts, which noise "
        "barely moves.",
    ),
    "cpu-steal": (
        f"the hypervisor stole ≥ {STEAL_PCT:.0f} % of a core during {{where}}.",
        "Use a dedicated machine, or compare per-request counts.",
    ),
    "throttled": (
        f"the CPU quota throttled the server in more than {THROTTLED_MOST_PCT:.0f} % of its periods in "
        "{where}: latency includes quota stalls of up to a period's unused share.",
        "That is the seed's setup; compare requests per server CPU-second and the per-request costs, which "
        "do not depend on the stalls.",
    ),
    "quota-not-reached": (
        f"the server used less than {QUOTA_REACHED_SHARE:.0%} of its CPU quota in {{where}}, so CPU was "
        "not all that limited it (the driver, I/O waits or a lock did too).",
        "Raise -c, or check the driver's CPU in the noise table.",
    ),
    "disturbed-round": (
        "{where} stand out from the other rounds in req/s (modified z-score > 3.5).",
        "Rerun with more --rounds on a quiet machine.",
    ),
    "unstable-p50": (
        "p50 latency moved a lot from round to round while the mean stayed steady (coefficient of variation "
        "of {where}): under "
        "a CPU quota the latency distribution has two modes (served inside the quota, or after waiting out "
        "a throttled period) and the median can land in either.",
        "Read the mean, req/s and the per-request costs for verdicts, or raise --rounds.",
    ),
    "few-samples": (
        f"the per-second tables have fewer than {MIN_SAMPLES_P99} samples in {{where}}, so their P99 is "
        "close to their Max.",
        "Use more requests or a shorter --interval for tail figures.",
    ),
    "few-requests": (
        f"fewer than {MIN_REQUESTS_P99_9} requests were measured in {{where}}, too few for a 99.9th "
        "percentile.",
        "Raise -n.",
    ),
}


def scenario_warnings(scenarios: Mapping[str, ScenarioResult], cpus_limit: float | None,
                      knowledge: ScenarioKnowledge = NONE) -> list[RunWarning]:
    """One warning per kind, naming every scenario (and round) it concerns."""
    out: list[RunWarning] = []
    for note in stdout_notes(scenarios, knowledge):
        out.append(_w("no-handler", note + ". Add a handler (logging.basicConfig or a StreamHandler) if the "
                                          "records are meant to be written, or remove the log call."))
    where: dict[str, list[str]] = {}
    for s in scenarios.values():
        for kind, rounds in _findings(s, cpus_limit).items():
            label = s.path if rounds is None else f"{s.path} (round {_rounds(rounds)})"
            if kind == "unstable-p50":
                label = f"{s.path}: p50 {s.stability_cv_pct.get('p50_ms', 0.0):.0f} %, mean " \
                        f"{s.stability_cv_pct.get('mean_ms', 0.0):.0f} %"
            where.setdefault(kind, []).append(label)
    for kind, (what, todo) in _HINTS.items():
        if kind in where:
            out.append(_w(kind, f"{what.format(where=', '.join(where[kind]))} {todo}"))
    return out


def _findings(s: ScenarioResult, cpus_limit: float | None) -> dict[str, list[int] | None]:
    """kind -> the rounds concerned (None: the scenario as a whole)."""
    ok = [r for r in s.rounds if r.measured]
    found: dict[str, list[int] | None] = {}

    def rounds_where(pred: Callable[[RoundRecord], bool], kind: str) -> None:
        hit = [r.round for r in ok if pred(r)]
        if hit:
            found[kind] = hit

    rounds_where(lambda r: bool(r.noise.get("stdout_nonblocking")), "stdout-nonblocking")
    rounds_where(lambda r: r.driver.cpu_pct_of_core >= DRIVER_SATURATED_PCT, "driver-saturated")
    rounds_where(lambda r: r.noise.get("other_processes_pct_of_core", 0.0) >= OTHER_LOAD_PCT, "other-load")
    rounds_where(lambda r: r.noise.get("steal_pct_of_core", 0.0) >= STEAL_PCT, "cpu-steal")
    rounds_where(lambda r: r.noise.get("cgroup_throttled_pct", 0.0) > THROTTLED_MOST_PCT, "throttled")
    if cpus_limit:
        rounds_where(lambda r: r.duration_s > 0
                     and r.server_cpu_s / r.duration_s < QUOTA_REACHED_SHARE * cpus_limit, "quota-not-reached")
    rated = [r for r in ok if r.rps is not None]
    if len(rated) >= MIN_ROUNDS_FOR_OUTLIERS:
        flagged = [rated[i].round for i in outliers([r.rps for r in rated if r.rps is not None])]
        if flagged:
            found["disturbed-round"] = flagged
    cv = s.stability_cv_pct
    if cv.get("p50_ms", 0.0) > UNSTABLE_P50_CV_PCT and cv.get("mean_ms", 100.0) < UNSTABLE_P50_CV_PCT / 2:
        found["unstable-p50"] = None
    if s.rounds and 0 < s.cswch_per_s.count < MIN_SAMPLES_P99:
        found["few-samples"] = None
    if 0 < s.requests < MIN_REQUESTS_P99_9:
        found["few-requests"] = None
    return found


# What to do, per reason a round is not ok (RoundRecord.error_kind). The round's own error says what
# happened; a server that died is the run's error line (exit 4) and the report's failed-rounds list.
_OUTCOME_HINTS: dict[str, tuple[str, str]] = {
    NOTHING_MEASURED: (
        "nothing-measured",
        "Its latency, rates and per-request figures are null. Check that the server answers at that address "
        "(curl -v URL), read its log (server_log_tail in the results), or raise --timeout.",
    ),
    SINK_STALLED: (
        "sink-stalled",
        "The round was stopped and its figures are null. Drain the log faster (a faster --sink-rate, another "
        "--stdout), or log less; a server that logs to a pipe nobody reads blocks as this one did.",
    ),
    TOO_MANY_ERRORS: (
        "too-many-errors",
        "Its latency covers only the responses that arrived, so its tail figures do not describe the "
        "requests made. Find the cause in the server's log (server_log_tail in the results), lower -c, or raise "
        "--max-error-pct if these errors are expected.",
    ),
}


def outcome_warnings(scenarios: Sequence[ScenarioResult]) -> list[RunWarning]:
    """One warning per scenario and reason a round of it measured nothing or too many errors."""
    out: list[RunWarning] = []
    for s in scenarios:
        by_kind: dict[str, list[RoundRecord]] = {}
        for r in s.rounds:
            if r.error_kind in _OUTCOME_HINTS and r.status != "ok":
                by_kind.setdefault(r.error_kind, []).append(r)
        for kind, rounds in by_kind.items():
            name, todo = _OUTCOME_HINTS[kind]
            which = f"round {_rounds([r.round for r in rounds])}"
            out.append(_w(name, f"{s.path} ({which}): {rounds[0].error}. {todo}"))
    return out


def _rounds(rounds: Sequence[int]) -> str:
    return ", ".join(str(r) for r in rounds)


def dedupe(warnings: Sequence[RunWarning]) -> list[RunWarning]:
    seen: set[tuple[str, str]] = set()
    out = []
    for w in warnings:
        if (w.kind, w.message) not in seen:
            seen.add((w.kind, w.message))
            out.append(w)
    return out
