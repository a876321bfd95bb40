"""The builtin driver's open loop against a server that stalls, its timed closed loop, and the HDR log.

A closed loop (or an open loop measured from each send) hides a stall: while the server sleeps, the
client sends nothing, so only the request that hit the stall looks slow. Counted from when each request
was due, every request that fell due during the stall carries its share of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iolab.measure import hdrlog
from iolab.measure.drivers.base import LoadSpec
from iolab.measure.drivers.builtin import run_load
from iolab.measure.drivers.summary import behind_schedule, latency_summary, load_facts, uncorrected_summary
from tests.test_driver_builtin import uvicorn_serving

# /stall/N: every Nth request to it blocks the whole server (the event loop) for STALL_MS.
STALL_MS = 200.0  # the time.sleep(0.2) in APP
# /peer/TAG: counted per client port under TAG; /peers/TAG answers those counts ("port count" lines).
APP = """
import time

counts = {}
peers = {}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    counts[path] = counts.get(path, 0) + 1
    if path.startswith("/stall/") and counts[path] % int(path.rsplit("/", 1)[1]) == 0:
        time.sleep(0.2)  # STALL_MS
    body = b"ok"
    if path.startswith("/peer/"):
        by_port = peers.setdefault(path[6:], {})
        by_port[scope["client"][1]] = by_port.get(scope["client"][1], 0) + 1
    elif path.startswith("/peers/"):
        body = "".join(f"{p} {n}\\n" for p, n in peers.get(path[7:], {}).items()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


@pytest.fixture(scope="module")
def stalling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with uvicorn_serving(tmp_path_factory.mktemp("stall_app"), "stall_app", APP) as port:
        yield f"http://127.0.0.1:{port}"


def open_loop(url: str, **kw: object) -> LoadSpec:
    base: dict[str, object] = {"url": url, "rate": 250.0, "duration_s": 2.0, "concurrency": 1, "keepalive": True}
    base.update(kw)
    return LoadSpec(**base)  # type: ignore[arg-type]


def test_a_rare_stall_shows_in_the_corrected_p99_only(stalling: str) -> None:
    # One request in 200 (0.5 %) stalls the server 200 ms: too rare to reach anyone's p99 by itself.
    r = run_load(open_loop(f"{stalling}/stall/200"))
    corrected, uncorrected = latency_summary(r), uncorrected_summary(r)
    assert uncorrected is not None
    assert r.completed == r.requests == 500 and r.failed == 0
    # Counted from the due time, the ~50 requests that fell due during each stall waited for it. Bounds
    # are shares of the stall (a sleep: never shorter), not of anything the machine's speed sets.
    assert corrected.latency_ms.p99 > 0.5 * STALL_MS
    assert uncorrected.latency_ms.p99 < 0.25 * STALL_MS
    assert corrected.latency_ms.p99 > 3 * uncorrected.latency_ms.p99
    assert all(c >= u for c, u in zip(r.latencies_us, r.latencies_uncorrected_us, strict=True))


def test_a_stall_every_50th_request(stalling: str) -> None:
    # The example: 2 % of requests stall, so even counted from the send p99 is the stall itself;
    # the difference is in how many requests it reaches: counted from the due time, a quarter or more.
    r = run_load(open_loop(f"{stalling}/stall/50", rate=100.0))
    corrected, uncorrected = latency_summary(r), uncorrected_summary(r)
    assert uncorrected is not None
    assert uncorrected.latency_ms.p99 >= 0.75 * STALL_MS  # the stalled requests themselves
    assert uncorrected.latency_ms.p90 < 0.1 * STALL_MS
    assert corrected.latency_ms.p75 > 0.1 * STALL_MS and corrected.latency_ms.p90 > 5 * uncorrected.latency_ms.p90
    # With one connection every request due during a stall leaves late, and the driver says so.
    assert r.schedule is not None and r.schedule.late_no_connection > 0
    warning = behind_schedule(r)
    assert warning is not None and "all connections were busy" in warning
    facts = load_facts(r)
    assert facts["mode"] == "open" and facts["target_rate"] == 100.0


def test_enough_connections_keep_the_schedule(stalling: str) -> None:
    r = run_load(open_loop(f"{stalling}/ok", rate=200.0, duration_s=1.0, concurrency=8, arrival="poisson"))
    assert r.ok_2xx == r.requests == 200
    assert r.schedule is not None and r.schedule.arrival == "poisson"
    assert r.schedule.achieved_rate > 100  # Poisson gaps: about the rate, never exactly
    assert r.cpu_load_user_s is not None and r.cpu_load_s <= r.cpu_s  # the load window alone
    assert r.schedule.late_no_connection <= r.schedule.late < r.schedule.sent / 2


def test_the_connections_open_first_and_take_requests_in_turn(stalling: str) -> None:
    # wrk2's way, and what -c means: 10 connections share the load. Reusing the connection freed last
    # would keep one connection busy and nine idle at this rate (every response is back long before the
    # next request is due), and a round trip on a connection reused every 5 ms is not the one a server
    # shows over ten used in turn (docs/drivers.md).
    import urllib.request

    r = run_load(open_loop(f"{stalling}/peer/turns", rate=200.0, duration_s=1.0, concurrency=10))
    assert r.ok_2xx == r.requests == 200
    with urllib.request.urlopen(f"{stalling}/peers/turns", timeout=10) as answer:
        per_conn = [int(line.split()[1]) for line in answer.read().decode().splitlines()]
    # Ten client ports and no more: the connections opened once, none during the schedule. (Not
    # "late_no_connection == 0": that counts requests that found all ten busy, which a stall of the
    # machine itself causes — seen: 2 of 200 during a 57 ms stall on a shared 2-vCPU VM.)
    assert len(per_conn) == 10 and sum(per_conn) == 200 and r.connect_errors == 0
    assert max(per_conn) - min(per_conn) <= 2  # in turn; a response late past its turn may swap two


def test_the_warning_says_who_fell_behind() -> None:
    from dataclasses import replace

    from iolab.measure.drivers.base import LoadResult, Schedule

    kept = Schedule(target_rate=1000, achieved_rate=999, arrival="uniform", sent=10_000, late=30,
                    late_no_connection=0, lag_p50_us=50, lag_p99_us=900, lag_max_us=2500)
    load = LoadResult(driver="builtin", requests=10_000, completed=10_000, ok_2xx=10_000, non_2xx=0,
                      connect_errors=0, timeouts=0, other_errors=0, status_counts={200: 10_000}, duration_s=10,
                      latencies_us=(), bytes_received=0, cpu_user_s=1, cpu_sys_s=1, errors_sample=(), schedule=kept)
    assert behind_schedule(load) is None  # 0.3 % late: timer noise
    slow = replace(kept, achieved_rate=700, late=3000, late_no_connection=1000)
    warning = behind_schedule(replace(load, schedule=slow))
    assert warning is not None and "700 req/s sent of 1,000" in warning
    assert "1000 of them because all connections were busy" in warning
    assert "2000 because the driver itself could not send on time" in warning


def test_poisson_schedules_repeat_with_the_seed() -> None:
    from iolab.measure.drivers.builtin_child import Load

    def dues(seed: int) -> list[int]:
        load = Load(LoadSpec(url="http://x/", rate=100.0, duration_s=1.0, arrival="poisson", seed=seed),
                     "x", 80, b"")
        return [load.due(i) for i in range(20)]

    assert dues(1) == dues(1) != dues(2)
    gaps = [b - a for a, b in zip(dues(3), dues(3)[1:], strict=False)]
    assert len(set(gaps)) > 10  # not a fixed interval


def test_a_timed_closed_loop(stalling: str) -> None:
    seen: list[tuple[int, int]] = []
    r = run_load(LoadSpec(url=f"{stalling}/ok", duration_s=0.5, concurrency=4, keepalive=True),
                 progress=lambda d, t: seen.append((d, t)))
    assert r.ok_2xx == r.requests > 0 and r.failed == 0
    assert 0.8 < r.duration_s / 0.5 < 3  # it stops about when asked: no request starts after 0.5 s
    assert seen[-1] == (500, 500)  # milliseconds: a timed run cannot count requests in advance
    assert r.schedule is None and r.latencies_uncorrected_us == ()


def test_the_hdr_log_round_trips(stalling: str, tmp_path: Path) -> None:
    r = run_load(open_loop(f"{stalling}/stall/200", duration_s=1.5))
    path = tmp_path / "run.hlog"
    hdrlog.write_log(path, [hdrlog.Entry(hdrlog.tag_for("stall", "r1"), 1_700_000_000.0, r)])
    back = hdrlog.read_log(path)
    tags = {h.get_tag() for h in back}
    assert tags == {"stall.r1", "stall.r1.uncorrected"}
    assert len(back) == 2 * 2  # one interval per second of the run (1.5 s → 2), for each tag
    corrected = hdrlog.merged(back, "stall.r1")
    assert corrected.get_total_count() == r.completed
    assert corrected.get_max_value() == pytest.approx(max(r.latencies_us), rel=1e-3)
    assert back[0].get_start_time_stamp() == pytest.approx(1_700_000_000_000, abs=1)
    text = path.read_text()
    assert text.startswith("#[Histogram log format version") and "#[StartTime: 1700000000.000" in text


@pytest.mark.parametrize("pacing", ["timerfd", "loop"])
@pytest.mark.parametrize("keepalive", [True, False], ids=["keep-alive", "new-connection"])
def test_both_timers_and_both_connection_modes_keep_the_schedule(stalling: str, pacing: str, keepalive: bool) -> None:
    r = run_load(open_loop(f"{stalling}/ok", rate=400.0, duration_s=0.5, concurrency=4, keepalive=keepalive,
                           pacing=pacing))
    assert r.ok_2xx == r.requests == 200 and r.failed == 0
    assert r.schedule is not None and r.schedule.sent == 200
    assert r.schedule.timer == ("timerfd" if pacing == "timerfd" else "event loop (1 ms)")
    assert len(r.latencies_uncorrected_us) == len(r.timeline_ms) == r.completed
    assert all(c >= u for c, u in zip(r.latencies_us, r.latencies_uncorrected_us, strict=True))
    assert load_facts(r)["pacing_timer"] == r.schedule.timer


def test_an_open_loop_counts_refused_connections() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_load(LoadSpec(url=f"http://127.0.0.1:{port}/", rate=200.0, duration_s=0.25, concurrency=2,
                          keepalive=True))
    assert r.connect_errors == r.requests == 50 and r.completed == 0
    assert r.schedule is not None and r.schedule.sent == 50


def test_the_precise_timer_never_fires_early() -> None:
    import asyncio
    import time

    from iolab.measure.drivers.pacer import PreciseTimer

    async def fire_times(precise: bool) -> tuple[bool, list[tuple[int, int]]]:
        loop = asyncio.get_running_loop()
        fired: list[int] = []
        timer = PreciseTimer(loop, lambda: fired.append(time.perf_counter_ns()), precise=precise)
        asked = []
        try:
            for delay_us in (300, 1500, 50, 2500):
                at = time.perf_counter_ns() + delay_us * 1000
                asked.append(at)
                timer.arm(at + 10_000_000)  # replaced by the next arm: must not fire
                timer.arm(at)
                while len(fired) < len(asked):
                    await asyncio.sleep(0.0005)
            return timer.precise, list(zip(asked, fired, strict=True))
        finally:
            timer.close()

    precise, pairs = asyncio.run(fire_times(True))
    assert precise  # Linux: a timerfd, through os or ctypes
    assert all(fired >= asked for asked, fired in pairs)
    coarse, pairs = asyncio.run(fire_times(False))
    assert not coarse and len(pairs) == 4  # the loop's own timers: on time to a millisecond, maybe early
