"""iolab.analysis.verdict on small ScenarioResults built in code (only the numbers are made up)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from iolab.analysis import verdict
from iolab.analysis.knowledge import ScenarioKnowledge
from iolab.analysis.stats import RATIO_UNBOUNDED
from iolab.demo.scenarios import knowledge
from iolab.results import (
    Comparison,
    DriverUsage,
    LatencyMs,
    MainThread,
    PerRequest,
    RoundRecord,
    ScenarioResult,
    StdoutInfo,
    Summary,
    to_dict,
)


def round_record(
    i: int,
    *,
    p50: float = 50.0,
    p99: float = 90.0,
    rps: float = 1000.0,
    writes: float = 0.0,
    vcsw: float = 1.0,
    cpu_ms: float = 0.5,
    status: str = "ok",
    lines: int = 0,
    requests: int = 2000,
) -> RoundRecord:
    return RoundRecord(
        round=i,
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "boom",
        started="2025-01-01T00:00:00Z",
        duration_s=2.0,
        requests=requests,
        failed=0,
        non_2xx=0,
        timeouts=0,
        connect_errors=0,
        rps=rps,
        server_cpu_s=requests * cpu_ms / 1000,
        rps_per_server_cpu_s=1000.0 / cpu_ms,
        latency_ms=LatencyMs(p50=p50, p66=p50, p75=p50, p80=p50, p90=p99, p95=p99, p98=p99, p99=p99, p99_9=p99,
                             p100=p99, mean=p50),
        latency_hdr="",
        cswch_per_s=Summary(),
        nvcswch_per_s=Summary(),
        main_thread=MainThread(),
        per_request=PerRequest(
            write_syscalls=writes, voluntary_ctx_switches=vcsw, involuntary_ctx_switches=0.1, cpu_ms=cpu_ms
        ),
        stdout=StdoutInfo(lines=lines),
        threads=(),
        samples=(),
        driver=DriverUsage(),
    )


def scenario(name: str, rounds: Sequence[RoundRecord]) -> ScenarioResult:
    ok = [r for r in rounds if r.status == "ok"]
    return ScenarioResult(
        name=name,
        path=f"/{name}",
        description="",
        status="ok",
        rounds=tuple(rounds),
        requests=sum(r.requests for r in ok),
        failed=0,
        non_2xx=0,
        rps=0.0,
        rps_per_server_cpu_s=0.0,
        latency_ms=LatencyMs(),
        latency_hdr="",
        cswch_per_s=Summary(),
        nvcswch_per_s=Summary(),
        main_thread=MainThread(),
        per_request=PerRequest(),
        stdout=StdoutInfo(lines=sum(r.stdout.lines for r in ok)),
        threads=(),
    )


def make(name: str, p50: Sequence[float], **same: float) -> ScenarioResult:
    return scenario(name, [round_record(i, p50=v, **same) for i, v in enumerate(p50)])  # type: ignore[arg-type]


def by_metric(cs: list[Comparison]) -> dict[str, Comparison]:
    return {c.metric: c for c in cs}


# ------------------------------------------------------------------------------------------ metrics


def test_metric_registry_and_values() -> None:
    r = round_record(0, p50=12.5, p99=40.0, rps=900.0, writes=1.02, vcsw=3.1, cpu_ms=0.25)
    assert verdict.metric_value(r, "p50_ms") == 12.5
    assert verdict.metric_value(r, "p99_ms") == 40.0
    assert verdict.metric_value(r, "rps") == 900.0
    assert verdict.metric_value(r, "rps_per_server_cpu_s") == 4000.0
    assert verdict.metric_value(r, "cpu_ms_per_request") == 0.25
    assert verdict.metric_value(r, "write_syscalls_per_request") == 1.02
    assert verdict.metric_value(r, "voluntary_ctx_switches_per_request") == 3.1
    assert verdict.metric_value(r, "involuntary_ctx_switches_per_request") == 0.1
    s = scenario("x", [r])
    # A scenario's value is the median over its successful rounds (what tables and gates show), not the
    # pooled aggregate stored in the record (rps=0.0 in this hand-made one).
    assert verdict.metric_value(s, "rps") == 900.0
    assert verdict.METRICS["rps"].higher_is_better and not verdict.METRICS["p99_ms"].higher_is_better
    assert set(verdict.DEFAULT_METRICS) < set(verdict.METRICS)
    assert verdict.metric_value(r, "p99_9_ms") == r.latency_ms.p99_9


def test_unknown_metric_lists_known_names() -> None:
    with pytest.raises(KeyError) as err:
        verdict.metric_value(round_record(0), "p42_ms")
    assert "p42_ms" in str(err.value) and "write_syscalls_per_request" in str(err.value)
    with pytest.raises(KeyError):
        verdict.compare(make("a", [1, 2]), make("b", [1, 2]), metrics=["nope"])


# ------------------------------------------------------------------------------------------ compare


def test_faster_latency_and_describe() -> None:
    a = make("sync", [92.4, 91.0, 93.8])
    b = make("async", [73.1, 72.0, 74.5])
    c = by_metric(verdict.compare(a, b, metrics=["p50_ms"]))["p50_ms"]
    assert (c.a, c.b, c.a_value, c.b_value) == ("sync", "async", 92.4, 73.1)
    assert c.verdict == "faster" and c.ci95[1] < 1 and c.p_value < 0.05
    assert c.note.startswith("lower p50 latency by 21 % (CI ")
    text = verdict.describe(c)
    assert text.startswith("async vs sync: p50_ms 73.1 vs 92.4 ms — faster by 21 % (95 % CI ")
    assert "p=" in text or "p<0.001" in text
    back = by_metric(verdict.compare(b, a, metrics=["p50_ms"]))["p50_ms"]
    assert back.verdict == "slower" and back.note.startswith("higher p50 latency by 26 %")


def test_higher_is_better_rps() -> None:
    a = scenario("a", [round_record(i, rps=v) for i, v in enumerate([1000, 1010, 990])])
    b = scenario("b", [round_record(i, rps=v) for i, v in enumerate([1200, 1190, 1215])])
    c = by_metric(verdict.compare(a, b, metrics=["rps"]))["rps"]
    assert c.verdict == "faster" and c.note.startswith("higher throughput by 20 %")
    assert "faster by 20 %" in verdict.describe(c) and "req/s" in verdict.describe(c)
    c2 = by_metric(verdict.compare(b, a, metrics=["rps"]))["rps"]
    assert c2.verdict == "slower"


def test_no_significant_difference() -> None:
    a = make("a", [50.0, 55.0, 47.0])
    b = make("b", [51.0, 46.0, 54.0])
    c = verdict.compare(a, b, metrics=["p50_ms"])[0]
    assert c.verdict == "no significant difference"
    assert c.note.startswith("no significant difference in p50 latency (ratio ")
    assert "— no significant difference (ratio " in verdict.describe(c)


def test_below_minimum_effect_is_not_significant() -> None:
    # Very stable rounds, 0.5 % apart: p is tiny but the effect is below MIN_EFFECT.
    a = make("a", [100.0, 100.01, 99.99, 100.0])
    b = make("b", [100.5, 100.51, 100.49, 100.5])
    c = verdict.compare(a, b, metrics=["p50_ms"])[0]
    assert c.p_value < 0.001 and c.ci95[0] > 1
    assert c.verdict == "no significant difference" and "minimum effect" in c.note
    assert "below the 1.0 % minimum effect" in verdict.describe(c)


def test_count_metric_note_and_zero_baseline() -> None:
    a = scenario("sync-raw", [round_record(i, writes=w) for i, w in enumerate([1.0, 1.01, 0.99])])
    b = scenario("sync-queue", [round_record(i, writes=w) for i, w in enumerate([0.02, 0.021, 0.019])])
    c = verdict.compare(a, b, metrics=["write_syscalls_per_request"])[0]
    assert c.verdict == "faster"
    assert c.note.startswith("fewer write syscalls (syscw) per request by 98 % (CI ")
    assert "— fewer write syscalls (syscw) per request by 98 % (95 % CI" in verdict.describe(c)

    zero = scenario("noop-sync", [round_record(i, writes=0.0) for i in range(3)])
    one = scenario("sync-raw", [round_record(i, writes=1.0) for i in range(3)])
    z = verdict.compare(zero, one, metrics=["write_syscalls_per_request"])[0]
    assert z.verdict == "slower" and z.ratio == RATIO_UNBOUNDED
    assert z.note == "more write syscalls (syscw) per request, from 0.00 to 1.00"
    assert verdict.describe(z).endswith("— more write syscalls (syscw) per request, from 0.00 to 1.00 (p<0.001)")
    json.dumps(to_dict(z), allow_nan=False)
    both_zero = verdict.compare(zero, zero, metrics=["write_syscalls_per_request"])[0]
    assert both_zero.verdict == "no significant difference" and both_zero.ratio == 1.0


def test_failed_rounds_are_ignored_and_too_few_rounds() -> None:
    a = scenario("a", [round_record(0, p50=10.0), round_record(1, p50=999.0, status="failed")])
    b = make("b", [5.0, 5.1, 4.9])
    c = verdict.compare(a, b, metrics=["p50_ms"])[0]
    assert c.a_value == 10.0 and c.verdict == "no significant difference"
    assert c.note.startswith("too few successful rounds")
    assert "too few rounds to test" in verdict.describe(c)


def test_all_comparisons_are_json_safe() -> None:
    a = make("a", [10.0, 11.0, 12.0], writes=0.0)
    b = make("b", [20.0, 21.0, 19.0], writes=1.0)
    out = verdict.compare(a, b)
    assert [c.metric for c in out] == list(verdict.DEFAULT_METRICS)
    json.dumps([to_dict(c) for c in out], allow_nan=False)
    assert all(c.verdict in ("faster", "slower", "no significant difference") for c in out)


# ---------------------------------------------------------------------------------- demo structure

DEMO = ScenarioKnowledge(**knowledge())  # what the demo tells the analysis; a user's app passes nothing


def test_default_pairs() -> None:
    names = ["sync", "async", "sync-raw", "async-raw", "noop-sync", "noop-async"]
    pairs = verdict.default_pairs(names, DEMO)
    assert pairs[0] == ("noop-sync", "noop-async")
    assert ("noop-sync", "sync") in pairs and ("noop-async", "async-raw") in pairs
    assert pairs[-2:] == [("sync", "async"), ("sync-raw", "async-raw")]
    assert verdict.default_pairs(["sync", "async"], DEMO) == [("sync", "async")]
    assert verdict.default_pairs(["/orders", "/health", "/x"], DEMO) == [("/orders", "/health"), ("/orders", "/x")]
    assert verdict.default_pairs(["one"], DEMO) == []


def demo_results() -> dict[str, ScenarioResult]:
    # Round means: sync − async = 92.4 − 73.1 = 19.3 ms; noop-sync − noop-async = 91.9 − 73.0 = 18.9 ms;
    # the logging code: (92.4 − 91.9) − (73.1 − 73.0) = 0.4 ms.
    return {
        "noop-async": make("noop-async", [73.0, 73.4, 72.6]),
        "noop-sync": make("noop-sync", [91.9, 92.1, 91.7]),
        "async": make("async", [73.1, 73.6, 72.6]),
        "sync": make("sync", [92.4, 91.9, 92.9], writes=0.0),
    }


def test_attribute_decomposes_the_seed_pair() -> None:
    lines = verdict.attribute(demo_results(), knowledge=DEMO)
    first = lines[0]
    assert first.startswith("/sync vs /async: p50 latency +19.3 ms (95 % CI ")
    assert "Of that, `def` vs `async def` (/noop-sync vs /noop-async) accounts for +18.9 ms" in first
    assert (
        "; the logging code (the handler-less logger.info call vs aiologger's info call) accounts for "
        "+0.40 ms (95 % CI -" in first
    )
    assert first.endswith(", not significant).")
    assert any(s.startswith("/sync vs /noop-sync: the handler-less logger.info call changes") for s in lines)
    assert any(s.startswith("/async vs /noop-async: aiologger's info call changes") for s in lines)
    assert lines[-1].startswith("Method: differences of the means")
    assert not any("/sync-raw" in s for s in lines)  # missing scenarios are skipped


def test_attribute_without_controls_and_with_other_metric() -> None:
    res = demo_results()
    only = {k: res[k] for k in ("sync", "async")}
    lines = verdict.attribute(only, knowledge=DEMO)
    assert len(lines) == 2 and "Of that" not in lines[0]
    controls = {k: res[k] for k in ("noop-sync", "noop-async")}
    assert verdict.attribute(controls, knowledge=DEMO)[0].startswith(
        "/noop-sync vs /noop-async: `def` instead of `async def` changes p50 latency by +18.9 ms"
    )
    writes = verdict.attribute(res, metric="write_syscalls_per_request", knowledge=DEMO)
    assert writes[0].startswith("/sync vs /async: write syscalls (syscw) per request 0.00 (95 % CI 0.00 to 0.00, not")
    assert verdict.attribute({}, knowledge=DEMO) == []
    with pytest.raises(KeyError):
        verdict.attribute(res, metric="bogus", knowledge=DEMO)


def test_stdout_notes() -> None:
    res = {
        "noop-sync": scenario("noop-sync", [round_record(i, lines=0) for i in range(3)]),
        "sync": scenario("sync", [round_record(i, lines=0) for i in range(3)]),
        "sync-raw": scenario("sync-raw", [round_record(i, lines=2000) for i in range(3)]),
        "async": scenario("async", [round_record(i, lines=0) for i in range(2)]),
    }
    notes = verdict.stdout_notes(res, DEMO)
    assert notes[0].startswith("/sync wrote 0 lines: its logger has no handler")
    assert any(n.startswith("/async wrote 0 lines: its log calls produced no output") for n in notes)
    assert not any("/sync-raw" in n for n in notes)
    # With an access log, the control writes a line per request too: compare per request.
    access = {
        "noop-sync": scenario("noop-sync", [round_record(i, lines=2004, requests=2000) for i in range(3)]),
        "sync": scenario("sync", [round_record(i, lines=1994, requests=1990) for i in range(3)]),
        "sync-raw": scenario("sync-raw", [round_record(i, lines=4004, requests=2000) for i in range(3)]),
    }
    notes = verdict.stdout_notes(access, DEMO)
    assert notes == [
        "/sync wrote no more stdout lines than /noop-sync (1.00 vs 1.00 per request): its logger has no "
        "handler, so its INFO records are dropped: it measures a `def` endpoint, not logging"
    ]
