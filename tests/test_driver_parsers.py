"""The ab, wrk and hey parsers on real captured outputs (tests/fixtures/drivers), and fuzzed on mangled ones:
whatever the text, a parser returns a consistent result or raises DriverError, never anything else."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iolab.errors import DriverError
from iolab.measure.drivers import ab, hey, wrk
from iolab.measure.drivers.base import LoadResult
from iolab.measure.drivers.summary import latency_summary, rebuild

FIXTURES = Path(__file__).parent / "fixtures" / "drivers"


def text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def maybe(name: str) -> str | None:
    path = FIXTURES / name
    return path.read_text(encoding="utf-8") if path.exists() else None


def parse_ab(case: str) -> LoadResult:
    return ab.parse(text(f"ab_{case}.stdout.txt"), text(f"ab_{case}.stderr.txt"), maybe(f"ab_{case}.e.csv"))


def consistent(r: LoadResult) -> None:
    assert r.completed == r.ok_2xx + r.non_2xx
    assert min(r.completed, r.ok_2xx, r.non_2xx, r.connect_errors, r.timeouts, r.other_errors) >= 0
    if r.status_counts:
        assert sum(r.status_counts.values()) == r.completed
    assert r.requests >= r.completed
    assert r.duration_s >= 0


# ------------------------------------------------------------------------------------------------- ab


def test_ab_ok() -> None:
    r = parse_ab("ok")
    consistent(r)
    assert (r.requests, r.completed, r.ok_2xx, r.failed) == (500, 500, 500, 0)
    assert set(r.percentiles_us) == {float(p) for p in range(101)}
    assert r.percentiles_us[0.0] <= r.percentiles_us[50.0] <= r.percentiles_us[100.0]
    # The -e table is to the µs, the printed table in whole ms: they agree to the ms.
    printed = int(re.search(r"^\s+50%\s+(\d+)$", text("ab_ok.stdout.txt"), re.M).group(1))  # type: ignore[union-attr]
    assert abs(r.percentiles_us[50.0] / 1000 - printed) <= 1
    assert r.latency_mean_us is not None and r.latency_mean_us % 1000 == 0  # ab's mean: whole ms


def test_ab_non_2xx_with_keepalive() -> None:
    r = parse_ab("keepalive_404")
    consistent(r)
    assert (r.completed, r.non_2xx, r.ok_2xx, r.failed) == (300, 300, 0, 0)


def test_ab_refused_connections_are_connect_errors() -> None:
    r = parse_ab("refused")
    consistent(r)
    assert (r.completed, r.connect_errors, r.requests) == (0, 20, 20)
    assert r.percentiles_us == {}
    assert any("exceptions" in e for e in r.errors_sample)


def test_ab_timeout_aborts_the_run() -> None:
    r = parse_ab("timeout")
    consistent(r)
    assert (r.timeouts, r.completed) == (1, 0)
    assert "timeout specified has expired" in r.errors_sample[0]


def test_ab_garbage_is_a_driver_error() -> None:
    with pytest.raises(DriverError, match="no report"):
        ab.parse("Segmentation fault\n")
    with pytest.raises(DriverError, match="-e"):
        ab.parse(text("ab_ok.stdout.txt"), "", None)


# ------------------------------------------------------------------------------------------------ wrk


def test_wrk_ok_histogram_is_measured_not_adjusted() -> None:
    r = wrk.parse(text("wrk_ok.stdout.txt"))
    consistent(r)
    assert r.completed == int(re.search(r"(\d+) requests in", text("wrk_ok.stdout.txt")).group(1))  # type: ignore[union-attr]
    # wrk added synthetic samples before printing; undone, the histogram holds one sample per response.
    assert sum(c for _, c in r.latency_counts_us) == r.completed
    assert r.facts["co_synthetic_samples"] > 0
    assert r.facts["co_interval_us"] > 0


def test_wrk_non_2xx_and_connection_close() -> None:
    r = wrk.parse(text("wrk_404_close.stdout.txt"))
    consistent(r)
    assert r.non_2xx == r.completed > 0 and r.ok_2xx == 0


def test_wrk_refused_does_not_start() -> None:
    r = wrk.parse(text("wrk_refused.stdout.txt"), text("wrk_refused.stderr.txt"))
    assert (r.connect_errors, r.completed) == (1, 0)
    assert "Connection refused" in r.errors_sample[0]


def test_wrk_timeouts() -> None:
    r = wrk.parse(text("wrk_timeout.stdout.txt"))
    consistent(r)
    assert r.timeouts == 2 and r.latency_counts_us == ()


def stats_correct(data: dict[int, int], e: int) -> dict[int, int]:
    """wrk 4's stats_correct (src/stats.c), transcribed."""
    out = dict(data)
    for n in range(2 * e, max(data, default=0) + 1):
        count = out.get(n, 0)
        m = n - e
        while count and m > e:
            out[m] = out.get(m, 0) + count
            m -= e
    return out


@given(st.dictionaries(st.integers(1, 3000), st.integers(1, 50), max_size=40), st.integers(1, 400))
def test_wrk_adjustment_is_undone_exactly(measured: dict[int, int], interval: int) -> None:
    assert wrk.uncorrect(stats_correct(measured, interval), interval) == measured


# ------------------------------------------------------------------------------------------------ hey


def test_hey_ok() -> None:
    r = hey.parse(text("hey_ok.stdout.txt"))
    consistent(r)
    assert (r.completed, r.ok_2xx, r.status_counts, r.failed) == (500, 500, {200: 500}, 0)
    assert set(r.percentiles_us) == {0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 100.0}
    assert all(v % 100 == 0 for v in r.percentiles_us.values())  # four decimals of a second
    assert r.latency_resolution_us == 100


def test_hey_404() -> None:
    r = hey.parse(text("hey_404.stdout.txt"))
    consistent(r)
    assert (r.non_2xx, r.status_counts) == (100, {404: 100})


def test_hey_refused_and_timeouts_are_told_apart() -> None:
    refused = hey.parse(text("hey_refused.stdout.txt"))
    assert (refused.connect_errors, refused.completed, refused.requests) == (20, 0, 20)
    timeout = hey.parse(text("hey_timeout.stdout.txt"))
    assert (timeout.timeouts, timeout.completed) == (4, 0)
    assert "Client.Timeout" in timeout.errors_sample[0]


# ------------------------------------------------------------------- one record, whichever the driver


def test_percentile_tables_become_the_same_record() -> None:
    a = latency_summary(parse_ab("ok"))
    assert a.source == "percentiles" and a.approximate and a.filled == ("p99_9",)
    assert a.latency_ms.p50 == parse_ab("ok").percentiles_us[50.0] / 1000
    h = latency_summary(hey.parse(text("hey_ok.stdout.txt")))
    assert h.filled == ("p66", "p80", "p98", "p99_9")
    w = latency_summary(wrk.parse(text("wrk_ok.stdout.txt")))
    assert w.source == "histogram" and not w.approximate and w.filled == ()
    assert w.latency_ms.p50 <= w.latency_ms.p99 <= w.latency_ms.p100


@given(st.lists(st.integers(1, 10**6), min_size=2, max_size=12), st.integers(1, 100_000))
def test_a_rebuilt_histogram_keeps_count_and_order(values: list[int], count: int) -> None:
    values.sort()
    points = {100.0 * i / (len(values) - 1): v for i, v in enumerate(values)}
    h = rebuild(points, count)
    assert h.get_total_count() == count
    assert values[0] * 0.99 <= h.get_value_at_percentile(50) <= values[-1] * 1.01


# -------------------------------------------------------------------------------------------- fuzzing

_CASES: list[tuple[str, Callable[[str], LoadResult]]] = [
    ("ab_ok.stdout.txt", lambda t: ab.parse(t, "", text("ab_ok.e.csv"))),
    ("ab_ok.e.csv", lambda t: ab.parse(text("ab_ok.stdout.txt"), "", t)),
    ("ab_refused.stdout.txt", lambda t: ab.parse(t, "", text("ab_refused.e.csv"))),
    ("ab_timeout.stderr.txt", lambda t: ab.parse(text("ab_timeout.stdout.txt"), t, None)),
    ("wrk_ok.stdout.txt", lambda t: wrk.parse(t)),
    ("wrk_404_close.stdout.txt", lambda t: wrk.parse(t)),
    ("wrk_refused.stderr.txt", lambda t: wrk.parse("", t)),
    ("hey_ok.stdout.txt", hey.parse),
    ("hey_refused.stdout.txt", hey.parse),
    ("hey_timeout.stdout.txt", hey.parse),
]


@st.composite
def mangled(draw: st.DrawFn, original: str) -> str:
    lines = original.splitlines(keepends=True)
    how = draw(st.sampled_from(["truncate", "shuffle", "numbers", "drop", "bytes"]))
    if how == "truncate":
        return original[: draw(st.integers(0, len(original)))]
    if how == "shuffle":
        return "".join(draw(st.permutations(lines)))
    if how == "drop" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        return "".join(lines[:i] + lines[i + 1 :])
    if how == "numbers":
        garbage = st.sampled_from(["x", "-1", "1e999", "NaN", "", "99999999999999999999", "0.", "١٢"])
        return re.sub(r"\d+", lambda m: draw(garbage) if draw(st.booleans()) else m.group(0), original)
    pos = draw(st.integers(0, len(original)))
    return original[:pos] + draw(st.text(max_size=20)) + original[pos:]


@pytest.mark.parametrize(("fixture", "parse"), _CASES, ids=[c[0] for c in _CASES])
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mangled_outputs_never_escape_as_other_errors(fixture: str, parse: Callable[[str], LoadResult],
                                                      data: st.DataObject) -> None:
    bad = data.draw(mangled(text(fixture)))
    try:
        result = parse(bad)
    except DriverError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message
        return
    consistent(result)
    latency_summary(result)  # whatever parsed must also summarise
