"""The HTML report builder on results made in code (no server, no browser): structure, escaping,
self-containment, older documents, size, and the comparison page."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import matplotlib
import pytest

from iolab import results
from iolab.analysis import latency, verdict
from iolab.analysis.aggregate import aggregate
from iolab.analysis.compare import compare_runs, parse_gate
from iolab.report import html
from iolab.report.tables import all_tables
from iolab.results import (
    DriverUsage,
    MainThread,
    PerRequest,
    RoundRecord,
    RunResult,
    RunWarning,
    Sample,
    StdoutInfo,
    Summary,
    ThreadTotal,
)
from tests.conftest import run_cli

RUN_CHARTS = ("latency-spectrum", "os-cost", "throughput", "time-series", "verdicts")
EVIL = "/<script>alert(1)</script>"


def make_round(rng: random.Random, n: int, rno: int, base_ms: float, samples: int, cost: float) -> RoundRecord:
    h = latency.histogram(int(rng.lognormvariate(0, 0.5) * base_ms * 1000) for _ in range(n))
    smp = tuple(
        Sample(t_s=1.0 + i, cswch_per_s=500 * cost + rng.random() * 50, nvcswch_per_s=300 + rng.random() * 30,
               main_cswch_per_s=20 + rng.random() * 5, main_nvcswch_per_s=290.0, cpu_user_pct=40.0,
               cpu_sys_pct=9.0 + rng.random(), write_syscalls_per_s=1500.0, write_bytes_per_s=1e5,
               rss_bytes=50_000_000, threads=12)
        for i in range(samples)
    )
    return RoundRecord(
        round=rno, status="ok", error=None, started="2026-01-01T00:00:00+00:00", duration_s=n / 1500,
        requests=n, failed=0, non_2xx=0, timeouts=0, connect_errors=0, rps=1500 / cost * rng.uniform(0.95, 1.05),
        server_cpu_s=0.5, rps_per_server_cpu_s=3000 / cost * rng.uniform(0.98, 1.02),
        latency_ms=latency.latency_ms(h), latency_hdr=latency.encode(h), cswch_per_s=Summary(), nvcswch_per_s=Summary(),
        main_thread=MainThread(),
        per_request=PerRequest(write_syscalls=3.0 + cost * rng.uniform(0.99, 1.01), write_bytes=200.0,
                               voluntary_ctx_switches=2.9 * cost * rng.uniform(0.97, 1.03),
                               involuntary_ctx_switches=0.5, cpu_ms=0.3 * cost * rng.uniform(0.97, 1.03)),
        stdout=StdoutInfo(lines=n), threads=(ThreadTotal("main", 1, 10, 20, 100.0),), samples=smp,
        driver=DriverUsage(cpu_pct_of_core=30.0), noise={"other_processes_pct_of_core": 3.0},
    )


def make_result(paths: list[str], rounds: int = 3, n: int = 2000, samples: int = 8, seed: int = 1) -> RunResult:
    rng = random.Random(seed)
    scenarios = []
    for i, p in enumerate(paths):
        rs = [make_round(rng, n, r + 1, 10 + 5 * i, samples, 1 + 0.3 * i) for r in range(rounds)]
        scenarios.append(aggregate(f"s{i}", p, f"scenario {i}", rs))
    comps = []
    for a, b in zip(scenarios, scenarios[1:], strict=False):
        comps += verdict.compare(a, b)
    return RunResult(
        schema=results.SCHEMA, created="2026-01-01T00:00:00+00:00", tool_version="0.1.0",
        machine={"cpu_model": "Test CPU", "cpu_count": 2, "kernel": "6.1"},
        target={"kind": "demo", "app": "iolab.demo.app:app"},
        load={"driver": "builtin", "mode": "closed", "requests": n, "concurrency": 50, "rounds": rounds},
        limits={"method": "cgroup2", "cpus": 0.5, "memory_bytes": 256 << 20},
        environment={"interval_s": 1.0, "stdout": {"kind": "pipe", "buffering": "block"},
                     "python": {"implementation": "CPython", "version": "3.11"}},
        scenarios=tuple(scenarios), comparisons=tuple(comps),
        warnings=(RunWarning("no-handler", "the logger has <no> handler & drops records. Add a handler."),),
        attribution=("/b vs /a: it is the `def` hand-off.",),
    )


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            self.attrs.append((tag, k, v or ""))
            if k == "id":
                self.ids.append(v or "")


def parse(doc: str) -> _Collector:
    c = _Collector()
    c.feed(doc)
    return c


@pytest.fixture(scope="module")
def result() -> RunResult:
    return make_result(["/sync", "/async", "/noop-sync"])


@pytest.fixture(scope="module")
def page(result: RunResult) -> str:
    return html.render(result)


def test_every_scenario_chart_and_table_is_there(result: RunResult, page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for chart_id in RUN_CHARTS:
        assert re.search(rf'<svg [^>]*data-chart="{chart_id}"', page), chart_id
    for t in all_tables(result):
        assert f'data-table="{html._slug(t.title)}"' in page, t.title
    assert 'data-table="verdicts-in-detail"' in page and 'data-table="scenarios"' in page
    for s in result.scenarios:
        assert s.path in page
    assert "no-handler" in page and 'data-box="warnings"' in page
    assert "it is the `def` hand-off." in page


def test_charts_are_accessible_and_follow_the_theme(page: str) -> None:
    doc = parse(page)
    svgs = [dict((k, v) for t, k, v in doc.attrs if t == "svg" and k in ("role", "aria-labelledby"))]
    assert svgs and all(s.get("role") == "img" for s in svgs)
    assert page.count("<title id=") == len(RUN_CHARTS)
    assert "currentColor" in page and "#010203" not in page  # axes and text use the page's colour
    assert "prefers-color-scheme:dark" in page
    assert "response time (ms)" in page and "percentile" in page  # axis labels stay text (fonttype none)
    assert "99.9 %" in page and "90 %" in page


def test_ids_are_unique_across_the_inline_svgs(page: str) -> None:
    ids = parse(page).ids
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1][:5]
    for ref in re.findall(r'(?:href="#|url\(#)([\w.-]+)', page):
        assert ref in ids, ref


def test_self_contained(page: str) -> None:
    doc = parse(page)
    for tag, key, value in doc.attrs:
        if key in ("src", "href", "xlink:href", "action", "poster", "srcset"):
            assert value.startswith("#"), (tag, key, value)
    assert "script" not in doc.tags and "link" not in doc.tags and "img" not in doc.tags
    assert "@import" not in page and not re.search(r"url\((?!#)", page)
    assert "default-src 'none'" in page
    assert not re.search(r"https?://", page.replace("http://www.w3.org/2000/svg", ""))


def test_strings_from_the_results_are_escaped() -> None:
    r = make_result([EVIL, "/price$/x_y", "_hidden"], rounds=2)
    r = replace(r, warnings=(RunWarning("<img src=x>", "a <b>bold</b> claim"),),
                attribution=("<i>x</i>",), target={"app": "<svg onload=alert(1)>", "kind": "demo"})
    doc = html.render(r)
    assert "<script>alert" not in doc and "<img src=x>" not in doc and "<svg onload" not in doc
    assert "<b>bold" not in doc and "<i>x</i>" not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert "/price$/x_y" in doc  # a $ is no mathtext for matplotlib: the path shows as written
    assert "script" not in parse(doc).tags


def test_a_minimal_older_document_still_renders() -> None:
    """No comparisons, no attribution, no warnings, no samples, no stability: every section still renders."""
    full = make_result(["/a", "/b"], rounds=1)
    doc = results.to_dict(full)
    doc.pop("comparisons"), doc.pop("warnings"), doc.pop("attribution"), doc.pop("status")
    for s in doc["scenarios"]:
        s.pop("stability_cv_pct")
        for r in s["rounds"]:
            r["samples"] = []
    old = results.loads(__import__("json").dumps(doc))
    page = html.render(old)
    assert 'data-empty="verdicts"' in page and 'data-chart="latency-spectrum"' in page
    assert 'data-chart="time-series"' not in page and 'data-chart="verdicts"' not in page


def test_a_run_without_scenarios_or_with_failed_rounds_renders(result: RunResult) -> None:
    empty = replace(result, scenarios=(), comparisons=(), status="interrupted")
    page = html.render(empty)
    assert "status: interrupted" in page and 'data-table="run-facts"' in page
    s = result.scenarios[0]
    bad = replace(s.rounds[0], status="failed", error="the server died <exit 1>", latency_hdr="",
                  server_log_tail=("Traceback <x>",))
    failed = aggregate(s.name, s.path, s.description, [bad])
    page = html.render(replace(result, scenarios=(failed, *result.scenarios[1:])))
    assert 'data-box="failures"' in page and "the server died &lt;exit 1&gt;" in page
    assert "Traceback &lt;x&gt;" in page


def test_a_default_sized_run_stays_small() -> None:
    """8 scenarios × 3 rounds × 10,000 requests, 10 s of 1 s samples per round — and one with 2,000
    samples per round (a long run at --interval 0.05), which downsampling must keep small."""
    paths = ["/sync", "/async", "/noop-sync", "/noop-async", "/sync-raw", "/async-raw", "/sync-handler",
             "/async-blocking-log"]
    page = html.render(make_result(paths, rounds=3, n=10_000, samples=10))
    assert len(page.encode()) < 1_000_000, len(page)
    many = make_result(paths[:4], rounds=3, n=1000, samples=2000)
    assert len(html.render(many).encode()) < 2_000_000


def test_many_scenarios_with_long_paths_render_without_warnings() -> None:
    """--app with 14 long paths: the charts shorten the labels (pytest turns a matplotlib layout warning
    into an error here), the tables keep them whole."""
    paths = [f"/api/v1/orders/{i}/items/with/a/very/long/path/name/that/goes/on" for i in range(14)]
    page = html.render(make_result(paths, rounds=2, n=300, samples=4))
    for p in paths:
        assert f"<th scope=\"row\">{p}</th>" in page
    assert "/api/v1/orders/13…" in page


def test_rendering_is_deterministic_and_leaves_matplotlib_alone(result: RunResult) -> None:
    before = dict(matplotlib.rcParams)
    assert html.render(result) == html.render(result)
    assert dict(matplotlib.rcParams) == before


def test_comparison_page() -> None:
    base = make_result(["/sync", "/async", "/gone"], seed=1)
    new = make_result(["/sync", "/async"], seed=2)
    new = replace(new, scenarios=tuple(replace(s, path=s.path) for s in new.scenarios))
    gates = [parse_gate("write_syscalls_per_request > 1"), parse_gate("p99_ms > +500%")]
    rc = compare_runs(base, new, gates)
    page = html.render_comparison(rc, ("base <a>.json", "new.json"), gates)
    for chart_id in ("compare-verdicts", "compare-spectrum", "compare-cost"):
        assert f'data-chart="{chart_id}"' in page
    assert 'data-box="gates"' in page and "gate failure" in page
    assert "base &lt;a&gt;.json" in page and "base <a>" not in page
    assert "only in base &lt;a&gt;.json: /gone" in page
    assert page.count('data-table="sync-new-vs-base"') == 1
    ids = parse(page).ids
    assert len(ids) == len(set(ids))
    assert "s2: missing in new" in page  # /gone: a scenario of the base lost in the new run fails every gate
    both = replace(base, scenarios=tuple(s for s in base.scenarios if s.path != "/gone"))
    passed = html.render_comparison(compare_runs(both, new, gates[1:]), gates=gates[1:])
    assert "All 1 gate(s) passed" in passed
    nothing = html.render_comparison(compare_runs(base, replace(new, scenarios=())))
    assert 'data-empty="verdicts"' in nothing


# The command line (needs the lead's wiring in cli.py / runner.py; see docs/html-report.md).

@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, result: RunResult) -> Path:
    return results.save(result, tmp_path_factory.mktemp("html") / "run.json")


def test_cli_report_writes_html(saved: Path) -> None:
    out = saved.parent / "r.html"
    proc = run_cli("report", str(saved), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert 'data-chart="latency-spectrum"' in out.read_text()
    proc = run_cli("report", str(saved), "--format", "html")
    assert proc.returncode == 0 and proc.stdout.startswith("<!DOCTYPE html>"), proc.stderr


def test_cli_compare_writes_html(saved: Path) -> None:
    out = saved.parent / "c.html"
    proc = run_cli("compare", str(saved), str(saved), "--html", str(out))
    assert proc.returncode == 0, proc.stderr
    assert 'data-chart="compare-verdicts"' in out.read_text()


def test_cli_run_writes_html(tmp_path: Path) -> None:
    out, page = tmp_path / "run.json", tmp_path / "run.html"
    proc = run_cli("run", "--scenario", "noop-async", "-n", "100", "-c", "5", "--warmup", "10", "--rounds", "1",
                   "--interval", "0.2", "-q", "-o", str(out), "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    doc = page.read_text()
    assert "/noop-async" in doc and 'data-chart="latency-spectrum"' in doc
