"""The locustfile iolab's Locust fleet runs (master and workers): never imported by iolab itself.

Locust imports gevent and monkey-patches the standard library at import; in iolab's own process that would
break SIGCHLD handling and subprocess (the server, the probe's thread), so only Locust's processes load
this file (``locust -f``; see measure/locust_fleet.py).

Latency, exact to the microsecond: each worker records every completed response's time (Locust's
``request`` event, ``FastHttpUser``: from sending the request to the last byte) in its own HdrHistogram
(1 µs … 1 h, 3 significant digits), and sends it with every stats report (``report_to_master``, every
3 s), then starts a fresh one. The master adds every report into one histogram (``worker_report``). At
the end of the run (``-t``), before it tells the workers to quit, the master asks each for its last
histogram (custom message ``iolab_flush``: the worker stops its users, then answers ``iolab_final``) and
waits for every answer, so nothing is lost to a race; then it writes the merged histogram, the counts and
the CPU figures as JSON to ``IOLAB_LOCUST_RESULT``. Locust's own percentiles (rounded to
2 significant digits above 100 ms) are not used.

The load is one command-line option of the master, ``--iolab-load`` (base64 of a JSON object: path,
method, headers, body, keep-alive, timeout and, for an open loop, each user's rate), which Locust passes
to every worker with its spawn message (custom arguments), so a worker started on another host by hand
needs nothing but the master's address. The target's scheme://host:port is Locust's own ``--host``.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import time
from typing import Any

import gevent
from hdrh.histogram import HdrHistogram
from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

_ENV = os.environ
LOWEST_US, HIGHEST_US, DIGITS = 1, 3_600_000_000, 3
FLUSH_TIMEOUT_S = 30.0  # the master's wait for every worker's last histogram


def _new_hist() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def _cpu() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime


class _Tally:
    """What one process has seen since its last report (a worker) or in all (the master)."""

    def __init__(self) -> None:
        self.hist = _new_hist()
        self.status: dict[str, int] = {}
        self.connect_errors = self.timeouts = self.other_errors = 0
        self.bytes = 0
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.errors: list[str] = []


_tally = _Tally()
_cpu_mark = _cpu()
_master: dict[str, Any] = {"workers": set(), "finals": set(), "cpu_user": 0.0, "cpu_sys": 0.0, "reports": 0}


def _classify(exc: BaseException) -> str:
    name = type(exc).__name__.lower()
    text = str(exc).lower()
    if "timeout" in name or "timed out" in text:
        return "timeouts"
    if "refused" in text or "reset" in text or "connection" in name or "unreachable" in text:
        return "connect_errors"
    return "other_errors"


@events.request.add_listener
def _on_request(request_type: str, name: str, response_time: float, response_length: int,
                response: Any = None, exception: BaseException | None = None, **_kw: Any) -> None:
    now = time.time()
    t = _tally
    start = now - response_time / 1000.0
    t.first_start = start if t.first_start is None else min(t.first_start, start)
    t.last_end = now if t.last_end is None else max(t.last_end, now)
    status = int(getattr(response, "status_code", 0) or 0)
    if status > 0:  # a whole response arrived (any status): its time is a latency, as for every driver
        t.hist.record_value(max(LOWEST_US, min(HIGHEST_US, round(response_time * 1000.0))))
        t.status[str(status)] = t.status.get(str(status), 0) + 1
        t.bytes += int(response_length or 0)
    else:
        kind = _classify(exception) if exception is not None else "other_errors"
        setattr(t, kind, getattr(t, kind) + 1)
        if exception is not None and len(t.errors) < 5 and str(exception) not in t.errors:
            t.errors.append(str(exception)[:200])


def _take() -> dict[str, Any]:
    """This worker's tally since its last report, and a fresh one started."""
    global _tally, _cpu_mark
    t, _tally = _tally, _Tally()
    user, sys_ = _cpu()
    part = {
        "hist": t.hist.encode().decode("ascii") if t.hist.get_total_count() else "",
        "status": t.status, "connect_errors": t.connect_errors, "timeouts": t.timeouts,
        "other_errors": t.other_errors, "bytes": t.bytes, "first_start": t.first_start, "last_end": t.last_end,
        "errors": t.errors, "cpu_user": user - _cpu_mark[0], "cpu_sys": sys_ - _cpu_mark[1],
    }
    _cpu_mark = (user, sys_)
    return part


@events.report_to_master.add_listener
def _on_report(client_id: str, data: dict[str, Any]) -> None:
    data["iolab"] = _take()


def _on_flush(environment: Environment, msg: Any, **_kw: Any) -> None:
    """Worker: the master's last call. Stop the users first, so no request ends after the tally is taken."""
    runner = environment.runner
    assert runner is not None
    runner.stop()
    runner.send_message("iolab_final", _take())


def _on_final(environment: Environment, msg: Any, **_kw: Any) -> None:
    _master["finals"].add(msg.node_id)
    _on_worker_report(msg.node_id, {"iolab": msg.data})


@events.worker_report.add_listener
def _on_worker_report(client_id: str, data: dict[str, Any]) -> None:
    part = data.get("iolab")
    if not part:
        return
    m, t = _master, _tally
    m["workers"].add(client_id)
    m["reports"] += 1
    if part["hist"]:
        t.hist.decode_and_add(part["hist"])
    for code, n in part["status"].items():
        t.status[code] = t.status.get(code, 0) + n
    for key in ("connect_errors", "timeouts", "other_errors", "bytes"):
        setattr(t, key, getattr(t, key) + part[key])
    if part["first_start"] is not None:
        t.first_start = part["first_start"] if t.first_start is None else min(t.first_start, part["first_start"])
    if part["last_end"] is not None:
        t.last_end = part["last_end"] if t.last_end is None else max(t.last_end, part["last_end"])
    t.errors.extend(e for e in part["errors"] if e not in t.errors and len(t.errors) < 5)
    m["cpu_user"] += part["cpu_user"]
    m["cpu_sys"] += part["cpu_sys"]


@events.init.add_listener
def _on_init(environment: Environment, **_kw: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        environment.runner.register_message("iolab_flush", _on_flush)
    elif isinstance(environment.runner, MasterRunner):
        environment.runner.register_message("iolab_final", _on_final)


@events.test_stopping.add_listener
def _on_test_stopping(environment: Environment, **_kw: Any) -> None:
    """Master, at the end (-t reached: quit() stops the test, then sends quit): collect every last tally."""
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return
    expected = {c.id for c in runner.clients.all}
    runner.send_message("iolab_flush")
    deadline = time.monotonic() + FLUSH_TIMEOUT_S
    while not expected <= _master["finals"] and time.monotonic() < deadline:
        gevent.sleep(0.05)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_kw: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        _master["cpu0"] = _cpu()


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_kw: Any) -> None:
    path = _ENV.get("IOLAB_LOCUST_RESULT")
    if not path or isinstance(environment.runner, WorkerRunner):
        return
    t, m = _tally, _master
    user, sys_ = _cpu()
    u0, s0 = m.get("cpu0", (user, sys_))
    total = environment.runner.stats.total if environment.runner is not None else None
    out = {
        "hist": t.hist.encode().decode("ascii") if t.hist.get_total_count() else "",
        "status": t.status, "connect_errors": t.connect_errors, "timeouts": t.timeouts,
        "other_errors": t.other_errors, "bytes": t.bytes, "first_start": t.first_start, "last_end": t.last_end,
        "errors": t.errors, "workers_cpu_user": m["cpu_user"], "workers_cpu_sys": m["cpu_sys"],
        "master_cpu_user": user - u0, "master_cpu_sys": sys_ - s0,
        "workers": sorted(m["workers"]), "finals": sorted(m["finals"]), "reports": m["reports"],
        "locust_requests": total.num_requests if total else None,
        "locust_failures": total.num_failures if total else None,
    }
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(out, fh)
    os.replace(tmp, path)


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    parser.add_argument("--iolab-load", type=str, default="", help="iolab's load (base64 JSON); set by iolab")


_load: dict[str, Any] | None = None


def _load_of(environment: Environment) -> dict[str, Any]:
    global _load
    if _load is None:
        raw = getattr(environment.parsed_options, "iolab_load", "") if environment.parsed_options else ""
        if not raw:
            raise RuntimeError("no --iolab-load: start workers with python -m iolab.measure.locust_fleet worker")
        _load = json.loads(base64.b64decode(raw))
        headers = dict(_load["headers"])
        if not _load["keepalive"]:
            headers.setdefault("Connection", "close")
        _load["headers"], _load["body"] = headers, base64.b64decode(_load["body"]) or None
    return _load


class IolabUser(FastHttpUser):
    # Set per user from --iolab-load in on_start; a class-level default keeps Locust's checks quiet.
    wait_time = constant(0)

    def __init__(self, environment: Environment) -> None:
        # The spawn message (with --iolab-load) is handled before any user is made, on every worker.
        load = _load_of(environment)
        self.connection_timeout = self.network_timeout = load["timeout_s"]
        super().__init__(environment)
        if load["user_rate"] > 0:
            pacer = constant_throughput(load["user_rate"])
            self.wait_time = lambda: pacer(self)  # type: ignore[method-assign]

    @task
    def hit(self) -> None:
        load = _load_of(self.environment)
        self.client.request(load["method"], load["path"], headers=load["headers"], data=load["body"])
