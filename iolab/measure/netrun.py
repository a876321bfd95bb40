"""A run's network (issue 20): the namespace and its collectors for the whole run, an outage mid-load, and
what reached the collector after each round.

The experiment calls, in this order: ``server_env`` (before a server starts: where the collectors are, the
round's tag and where the server writes its count), ``during_load`` (around the measured load: the outage
begins ``start`` seconds into it and lasts ``duration``), ``note_load`` (the load's latency per second),
``finish_round`` (after the server stopped: the collectors' counts become the round's ``delivery``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from iolab.errors import NetworkError
from iolab.measure import hdrlog
from iolab.measure.collectors import Collectors, rsyslogd_missing
from iolab.measure.drivers.base import LoadResult
from iolab.measure.netns import Impairment, Network, unavailable_reason
from iolab.results import RoundRecord, ScenarioResult
from iolab.results.network import Delivery, SecondLatency

# Which collector each demo scenario logs to (iolab/demo/remote.py); a user's app: "any".
COLLECTOR_OF = {"syslog-udp": "syslog", "syslog-tcp": "syslog", "socket-tcp": "jsonl", "ours-tcp": "jsonl",
                "http-per-record": "http", "queue-http": "http", "ours-http": "http"}
# After the server stopped, the collector's count must stop moving for this long (records in rsyslogd's
# queue, in a socket buffer) before it is read; never longer than _SETTLE_MAX_S in all.
_SETTLE_QUIET_S = 0.5
_SETTLE_MAX_S = 10.0


_DIR_PREFIX = "iolab-net-"  # + owner PID: the run's temporary directory (servers' counts, rsyslogd's files)


def sweep_stale_dirs() -> list[str]:
    """Remove the temporary directories of runs whose iolab is gone (killed with SIGKILL)."""
    removed = []
    base = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            pid = name[len(_DIR_PREFIX):].split("-")[0] if name.startswith(_DIR_PREFIX) else ""
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
                removed.append(name)
    return removed


@dataclass(frozen=True)
class NetRequest:
    """What ``--net-delay/--net-jitter/--net-loss/--collector-outage`` asked for."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    outage: tuple[float, float] | None = None  # (start, duration) in seconds into the measured load

    def impairment(self) -> Impairment:
        return Impairment(self.delay_ms, self.jitter_ms, self.loss_pct)


def per_second(load: LoadResult) -> tuple[SecondLatency, ...]:
    """The load's responses by the second they completed in: count, p50, p99, max (ms)."""
    if not load.timeline_ms or len(load.timeline_ms) != len(load.latencies_us):
        return ()
    bins: dict[int, list[int]] = {}
    for at_ms, us in zip(load.timeline_ms, load.latencies_us, strict=True):
        bins.setdefault(at_ms // 1000, []).append(us)
    out = []
    for sec in range(max(bins) + 1):
        values = sorted(bins.get(sec, ()))
        if not values:
            out.append(SecondLatency(sec, 0, 0.0, 0.0, 0.0))
            continue
        out.append(SecondLatency(sec, len(values), _rank(values, 0.5), _rank(values, 0.99),
                                 round(values[-1] / 1000, 3)))
    return tuple(out)


def _rank(sorted_us: list[int], q: float) -> float:
    """The nearest-rank ``q`` quantile of sorted µs values, in ms."""
    return round(sorted_us[min(len(sorted_us) - 1, max(0, math.ceil(q * len(sorted_us)) - 1))] / 1000, 3)


class NetSession:
    """The namespace, the link and the collectors, for one run."""

    def __init__(self, request: NetRequest) -> None:
        self.request = request
        self.net = Network(request.impairment())
        self._tmp: str | None = None
        self.collectors = Collectors(self.net)
        self._tag = ""
        self._report = ""
        self._before: dict[str, Any] = {}
        self._per_s: tuple[SecondLatency, ...] = ()
        self._outage_s: float | None = None
        self._server_data: dict[str, Any] = {}  # what the server wrote at its shutdown (demo/remote.py)

    def __enter__(self) -> NetSession:
        missing = unavailable_reason() or rsyslogd_missing()
        if missing:
            raise NetworkError(missing)
        sweep_stale_dirs()
        self._tmp = tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-")
        self.collectors = Collectors(self.net, self._tmp)
        try:
            self.net.start()
            self.collectors.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.collectors.close()
        self.net.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.net.describe())
        out["outage"] = ({"start_s": self.request.outage[0], "duration_s": self.request.outage[1],
                          "how": "collectors stopped (SIGSTOP) mid-load"} if self.request.outage else None)
        out["collector_addr"] = self.net.collector_addr
        return out

    # -------------------------------------------------------------------------------- per round
    def server_env(self, scenario: str, round_no: int) -> dict[str, str]:
        assert self._tmp is not None
        self._tag = hdrlog.tag_for(scenario, f"r{round_no}")
        self._report = os.path.join(self._tmp, f"{self._tag}.json")
        self._before = self.collectors.stats()
        self._per_s, self._outage_s = (), None
        return {**self.collectors.env(), "IOLAB_NET_TAG": self._tag, "IOLAB_NET_REPORT": self._report}

    @contextlib.contextmanager
    def during_load(self) -> Iterator[None]:
        """The outage, if one was asked for: the collectors stop ``start`` s into the load for ``duration`` s
        (or until the load ends, whichever comes first)."""
        if self.request.outage is None:
            yield
            return
        start_s, duration_s = self.request.outage
        done = threading.Event()
        began: list[float] = []

        def outage() -> None:  # signals only: this thread starts no process (procs.py)
            if done.wait(start_s):
                return
            began.append(time.monotonic())
            self.collectors.pause()
            done.wait(duration_s)
            self.collectors.resume()
            began.append(time.monotonic())

        thread = threading.Thread(target=outage, name="iolab-outage", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            self.collectors.resume()
            if began:
                self._outage_s = round(began[-1] - began[0], 3)

    def note_load(self, load: LoadResult) -> None:
        self._per_s = per_second(load)

    def finish_round(self, record: RoundRecord, scenario: str) -> RoundRecord:
        sent, dropped, counts_drops, flushed = self._server_count()
        peak, budget = self._server_data.get("buffer_peak_bytes"), self._server_data.get("buffer_budget_bytes")
        deadline = time.monotonic() + _SETTLE_MAX_S
        last, quiet_since = None, time.monotonic()
        while True:
            stats = self.collectors.stats()
            got = stats["tags"].get(self._tag, {}).get("received", 0)
            now = time.monotonic()
            if got != last:
                last, quiet_since = got, now
            if (sent is not None and got >= sent) or now - quiet_since >= _SETTLE_QUIET_S or now >= deadline:
                break
            time.sleep(0.1)
        delivery = replace(self._delivery(scenario, stats, sent, dropped if counts_drops else None), flushed=flushed,
                           buffer_peak_bytes=peak, buffer_budget_bytes=budget)
        return replace(record, delivery=delivery, latency_per_s=self._per_s)

    def _server_count(self) -> tuple[int | None, int | None, bool, bool | None]:
        """(sent, dropped, whether the handler counts drops, whether its handlers finished closing)."""
        self._server_data = {}
        try:
            with open(self._report) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return None, None, False, None  # the server never logged (a user's app), or died before its shutdown
        self._server_data = data
        return (int(data["sent"]), data.get("dropped"), bool(data.get("handler_counts_drops")),
                bool(data.get("final")))

    def _delivery(self, scenario: str, stats: dict[str, Any], sent: int | None, dropped: int | None) -> Delivery:
        tag = stats["tags"].get(self._tag, {})
        received = int(tag.get("received", 0))
        collector = COLLECTOR_OF.get(scenario, "any")
        conns = reqs = None
        trips = None
        if collector in ("http", "jsonl"):
            conns = stats["connections"][collector] - self._before["connections"][collector]
            reqs = stats["http_requests"] - self._before["http_requests"] if collector == "http" else 0
            if received:  # per record delivered: what each one cost in round trips
                trips = round((conns + reqs) / received, 3)
        sent_n = sent if sent is not None else received
        return Delivery(collector=collector, sent=sent_n, received=received, lost=max(0, sent_n - received),
                        duplicated=int(tag.get("duplicated", 0)), max_delay_ms=tag.get("max_delay_ms"),
                        dropped=dropped, connections=conns, http_requests=reqs, round_trips_per_record=trips,
                        outage_s=self._outage_s)


def scenario_delivery(scenario: ScenarioResult) -> ScenarioResult:
    """``scenario`` with its rounds' deliveries summed (max of the delays), or unchanged without any."""
    ds = [r.delivery for r in scenario.rounds if r.delivery is not None]
    if not ds:
        return scenario

    def total(key: str) -> int | None:
        values = [getattr(d, key) for d in ds]
        return None if any(v is None for v in values) else sum(values)

    sent, conns, reqs = sum(d.sent for d in ds), total("connections"), total("http_requests")
    received = sum(d.received for d in ds)
    delays = [d.max_delay_ms for d in ds if d.max_delay_ms is not None]
    outages = [d.outage_s for d in ds if d.outage_s is not None]
    peaks = [d.buffer_peak_bytes for d in ds if d.buffer_peak_bytes is not None]
    return replace(scenario, delivery=Delivery(
        collector=ds[0].collector, sent=sent, received=received, lost=sum(d.lost for d in ds),
        duplicated=sum(d.duplicated for d in ds), max_delay_ms=max(delays) if delays else None,
        dropped=total("dropped"), connections=conns, http_requests=reqs,
        round_trips_per_record=round((conns + (reqs or 0)) / received, 3) if conns is not None and received else None,
        outage_s=max(outages) if outages else None,
        flushed=None if any(d.flushed is None for d in ds) else all(d.flushed for d in ds),
        buffer_peak_bytes=max(peaks) if peaks else None, buffer_budget_bytes=ds[0].buffer_budget_bytes))


def session(request: NetRequest | None) -> contextlib.AbstractContextManager[NetSession | None]:
    """A NetSession for ``request``, or nothing (``None``) when the run has no network."""
    return NetSession(request) if request is not None else contextlib.nullcontext()
