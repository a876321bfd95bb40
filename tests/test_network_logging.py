"""Issue 20: logging across a real network. Real collectors (rsyslogd, a JSON-lines receiver, a ``_bulk``
endpoint) in a real namespace, real kernel TCP/UDP between them and the server; counts, not times."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from iolab import results
from iolab.analysis.network_findings import network_findings
from iolab.logging import BatchHandler
from iolab.logging.sinks import BulkHTTPSink, TCPSink
from iolab.measure import netns, netrun
from iolab.measure.collectors import Collectors, rsyslogd_missing
from iolab.measure.netns import Impairment, Network
from iolab.report import delivery
from tests.conftest import processes_matching, run_cli

_why = netns.unavailable_reason() or rsyslogd_missing()
pytestmark = pytest.mark.skipif(_why is not None, reason=str(_why))


def _owner(name: str) -> int:
    m = netns._NS_RE.match(name) or netns._LINK_RE.match(name)
    assert m is not None
    return int(m.group(1))


def _ours_left() -> list[str]:
    """Namespaces and links of this process or of a dead one (another live iolab's are not ours to judge),
    and collector processes."""
    left = [n for n in netns.list_ours() if _owner(n) == os.getpid() or not os.path.exists(f"/proc/{_owner(n)}")]
    return left + processes_matching("collector_child.py") + processes_matching("iolab-collect-")


@pytest.fixture
def collectors() -> Iterator[Collectors]:
    before = _ours_left()
    with Network(Impairment(delay_ms=1)) as net, Collectors(net) as c:
        yield c
    assert _ours_left() == before


def _rec(tag: str, seq: int) -> str:
    return f"iolab-rec {tag} {seq} {time.time():.6f}"


def _settle(c: Collectors, tag: str, want: int) -> dict[str, object]:
    for _ in range(50):
        got = c.stats()["tags"].get(tag, {})
        if got.get("received", 0) >= want:
            return dict(got)
        time.sleep(0.1)
    return dict(c.stats()["tags"].get(tag, {}))


def test_each_collector_counts_records_duplicates_and_round_trips(collectors: Collectors) -> None:
    env = collectors.env()
    host = env["IOLAB_COLLECTOR_HOST"]
    for kind, sock in (("udp", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM)):
        h = logging.handlers.SysLogHandler((host, int(env["IOLAB_SYSLOG_PORT"])), socktype=sock)
        for i in range(1, 21):
            h.emit(logging.makeLogRecord({"msg": _rec(f"syslog-{kind}", i)}))
        h.close()
    with socket.create_connection((host, int(env["IOLAB_JSONL_PORT"]))) as s:
        lines = [json.dumps({"message": _rec("jsonl", i)}) for i in (1, 2, 3, 3)]  # one duplicate
        s.sendall(("\n".join(lines) + "\n").encode())
    body = "".join(f'{{"index":{{"_index":"t"}}}}\n{json.dumps({"message": _rec("bulk", i)})}\n' for i in range(5))
    req = urllib.request.Request(env["IOLAB_BULK_URL"], data=body.encode(),
                                 headers={"Content-Type": "application/x-ndjson"})
    answer = json.loads(urllib.request.urlopen(req, timeout=10).read())
    assert answer["errors"] is False and "took" in answer
    assert [it["index"]["status"] for it in answer["items"]] == [201] * 5
    assert _settle(collectors, "syslog-tcp", 20)["received"] == 20
    assert _settle(collectors, "syslog-udp", 20)["received"] == 20  # a clean link loses no datagram here
    jsonl = _settle(collectors, "jsonl", 3)
    assert (jsonl["received"], jsonl["duplicated"]) == (3, 1)
    assert _settle(collectors, "bulk", 5)["received"] == 5
    stats = collectors.stats()
    assert stats["connections"] == {"jsonl": 1, "http": 1} and stats["http_requests"] == 1


def test_batching_sinks_deliver_everything_in_few_requests(collectors: Collectors) -> None:
    env = collectors.env()
    before = collectors.stats()
    for tag, sink in (("tcp", TCPSink(env["IOLAB_COLLECTOR_HOST"], int(env["IOLAB_JSONL_PORT"]))),
                      ("http", BulkHTTPSink(env["IOLAB_BULK_URL"]))):
        handler = BatchHandler(sink)
        for i in range(1, 501):
            handler.emit(logging.makeLogRecord({"msg": _rec(tag, i)}))
        handler.close()
        sink.close()  # the handler does not own its stream, as StreamHandler
        assert handler.dropped == 0 and sink.records == 500 and sink.connections == 1
        got = _settle(collectors, tag, 500)
        assert (got["received"], got["duplicated"]) == (500, 0)
    after = collectors.stats()
    assert after["http_requests"] - before["http_requests"] < 50  # batches, not 500 requests


def test_a_full_budget_during_an_outage_drops_and_counts_every_loss(collectors: Collectors) -> None:
    env = collectors.env()
    sink = BulkHTTPSink(env["IOLAB_BULK_URL"], timeout=30)
    handler = BatchHandler(sink, max_bytes=20_000, policy="drop_newest", deadline=0.01)
    handler.emit(logging.makeLogRecord({"msg": _rec("outage", 1)}))
    handler.flush()
    collectors.pause()
    try:
        for i in range(2, 3001):  # ~60 bytes each: far more than 20 kB while nothing is answered
            handler.emit(logging.makeLogRecord({"msg": _rec("outage", i)}))
        held = handler.stats()["pending_bytes"]
    finally:
        collectors.resume()
    handler.close()
    sink.close()
    assert held <= 20_000 + 4096  # bounded: the budget, not the 3,000 records
    got = _settle(collectors, "outage", 3000 - handler.dropped)
    assert handler.dropped > 2000
    assert got["received"] + handler.dropped == 3000  # every record delivered or counted as dropped
    assert got["duplicated"] == 0


def _run(tmp: Path, scenarios: str, *extra: str) -> results.RunResult:
    before = _ours_left()
    out = tmp / "run.json"
    proc = run_cli("run", "--scenario", scenarios, "--rounds", "1", "-q", "--cpus", "0", "--memory", "0",
                   "--warmup", "30", "-c", "20", "--no-explain", "-o", str(out), *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _ours_left() == before  # namespace, links, relay, collectors, rsyslogd: all gone
    return results.load(out)


@pytest.mark.usefixtures("nothing_left_behind")
def test_two_ms_delay_costs_http_per_record_two_round_trips_per_record(tmp_path: Path) -> None:
    result = _run(tmp_path, "http-per-record,ours-http,syslog-tcp", "-n", "150", "--net-delay", "2ms")
    assert result.network is not None and result.network["delay_ms"] == 2.0
    assert result.network["method"] in ("netns+netem", "netns+tun-relay")
    d = {s.name: s.delivery for s in result.scenarios}
    naive, ours, syslog = d["http-per-record"], d["ours-http"], d["syslog-tcp"]
    assert naive and ours and syslog
    assert naive.round_trips_per_record is not None and ours.round_trips_per_record is not None
    assert 1.9 <= naive.round_trips_per_record <= 2.1  # a connection and a request per record
    assert ours.round_trips_per_record < 0.3
    for one in (naive, ours, syslog):  # every record delivered, without an outage
        assert (one.sent, one.received, one.lost, one.duplicated) == (180, 180, 0, 0)
    assert ours.dropped == 0
    findings = network_findings(result)
    assert any("round trips to the collector per record" in f for f in findings)
    text = "\n".join(r for t in delivery.tables(result) for row in t.rows for r in row)
    assert "2.00" in text


@pytest.mark.usefixtures("nothing_left_behind")
def test_through_an_outage_the_blocking_handler_stalls_and_ours_stays_bounded(tmp_path: Path) -> None:
    result = _run(tmp_path, "http-per-record,ours-http", "--duration", "3s", "--collector-outage", "0.5s:2s",
                  "--html", str(tmp_path / "r.html"))
    page = (tmp_path / "r.html").read_text()
    assert 'data-figure="latency-over-time"' in page and "Delivery to the log collector" in page
    by = {s.name: s for s in result.scenarios}
    naive, ours = by["http-per-record"], by["ours-http"]
    assert naive.delivery and ours.delivery and naive.delivery.outage_s and ours.delivery.outage_s

    def completed(s: results.ScenarioResult, seconds: tuple[int, ...]) -> int:
        return sum(p.count for r in s.rounds for p in r.latency_per_s if p.second in seconds)

    # Counts, not times: the event loop waited on the collector in http-per-record, so no response at all
    # completed in 1.0–2.0 s, inside the 0.5–2.5 s outage; ours-http kept answering through it.
    assert completed(naive, (1,)) == 0
    assert completed(ours, (1, 2)) > 0
    assert ours.delivery.dropped is not None and ours.delivery.lost <= ours.delivery.dropped
    # Memory stayed bounded: what the handler held through the outage never passed its budget.
    peak, budget = ours.delivery.buffer_peak_bytes, ours.delivery.buffer_budget_bytes
    assert peak is not None and budget is not None and 0 < peak <= budget
    assert any(r.latency_per_s for r in naive.rounds)
    assert any("outage" in f for f in network_findings(result))
    again = results.loads(results.dumps(result))
    assert again.scenarios[0].delivery == result.scenarios[0].delivery and again.network == result.network


def test_latency_per_second_bins_by_completion_and_leaves_empty_seconds_empty() -> None:
    from iolab.measure.drivers.base import LoadResult
    from iolab.measure.netrun import per_second

    load = LoadResult(driver="builtin", requests=5, completed=5, ok_2xx=5, non_2xx=0, connect_errors=0, timeouts=0,
                      other_errors=0, status_counts={200: 5}, duration_s=3.0,
                      latencies_us=(1000, 3000, 2000, 2_500_000, 4000), bytes_received=0, cpu_user_s=0,
                      cpu_sys_s=0, errors_sample=(), timeline_ms=(10, 20, 900, 2600, 2700))
    secs = per_second(load)
    assert [(s.second, s.count) for s in secs] == [(0, 3), (1, 0), (2, 2)]
    assert (secs[0].p50_ms, secs[0].max_ms, secs[2].max_ms) == (2.0, 3.0, 2500.0)


def test_a_killed_run_leaves_no_collector_and_the_next_sweeps_the_rest(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import tempfile

    from tests.conftest import REPO

    proc = subprocess.Popen([sys.executable, "-m", "iolab", "run", "--scenario", "ours-http", "--rounds", "1",
                             "-q", "--cpus", "0", "--memory", "0", "--no-explain", "--duration", "30s", "-o",
                             str(tmp_path / "r.json")], cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if any(str(proc.pid) in n for n in netns.list_ours(proc.pid)) and processes_matching("rsyslogd -n"):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the run never built its network")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for _ in range(50):  # the parent-death signal reaches the relay, the collectors, then rsyslogd
        if not (processes_matching("collector_child.py") or processes_matching("netrelay.py")
                or processes_matching(f"iolab-net-{proc.pid}-")):
            break
        time.sleep(0.1)
    assert processes_matching("collector_child.py") == processes_matching(f"iolab-net-{proc.pid}-") == []
    left_dirs = [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(f"iolab-net-{proc.pid}-")]
    assert left_dirs  # SIGKILL runs no clean-up: the namespace and the directory stay until the next run
    with netrun.NetSession(netrun.NetRequest()):
        pass
    assert netns.list_ours(proc.pid) == []
    assert not [n for n in os.listdir(tempfile.gettempdir()) if n.startswith(f"iolab-net-{proc.pid}-")]


@pytest.mark.parametrize(("args", "message"), [
    (("--collector-outage", "5s"), "expected START:DURATION"),
    (("--net-delay", "fast"), "--net-delay 'fast'"),
    (("--net-delay", "2ms", "--url", "http://127.0.0.1:9/"), "need a server that iolab starts"),
    (("--net-loss", "nan"), "not a finite number"),
    (("--net-delay", "2ms", "--scenario", "print,noop-async"), "none of the scenarios"),
])
def test_bad_network_options_are_one_error_line(args: tuple[str, ...], message: str) -> None:
    proc = run_cli("run", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: ") or "Invalid value for '--net-loss'" in proc.stderr  # click's range check
