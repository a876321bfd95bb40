"""Locust as a load driver (``--driver locust``): a master and N workers, for load past one process.

Runs for a time (``--duration``, whole seconds, as Locust's ``-t``): ``-c`` users spread over the
workers, each sending its next request as soon as the last one's response is in (closed loop), or, with
``--rate R``, at most R/c requests per second each (Locust's ``constant_throughput``). That open loop is
paced per user: a late response delays that user's next request, and latency counts from the moment each
request was sent, not from when it was due (no coordinated-omission correction, unlike the builtin
driver's open loop); the record says so (``facts.latency``, ``facts.loop``).

Latency is exact to the microsecond: the workers' HdrHistograms merged in the master (locustfile.py),
turned into (µs, count) pairs as wrk's histogram is. The driver's CPU is that of the master and the local
workers (wait4), and over the load window alone as the processes measured it themselves (getrusage).
Locust is an optional extra (``pip install 'iolab[scale]'``); without it ``--driver locust`` is an error.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from hdrh.histogram import HdrHistogram

from iolab.errors import DriverError, UsageError
from iolab.measure.drivers.base import LoadResult, LoadSpec, ProgressCallback

NAME = "locust"


@dataclass(frozen=True)
class LocustOptions:
    workers: int = 2  # local worker processes
    master: tuple[str, int] | None = None  # bind address for workers on other machines to join
    remote_workers: int = 0  # how many of those the master waits for


def build_args(spec: LoadSpec) -> list[str]:
    """Check what Locust cannot do (and that it is installed), before any server starts."""
    from iolab.measure.locust_fleet import locust_available

    if not locust_available():
        raise UsageError("--driver locust needs Locust, which is not installed: pip install 'iolab[scale]'")
    if spec.duration_s is None:
        raise UsageError("--driver locust runs for a time, not a number of requests: add --duration (e.g. 10s)")
    if spec.rate is not None and spec.arrival != "uniform":
        raise UsageError("--driver locust paces each user at a constant rate: --arrival poisson is builtin only")
    return []


def load_args(spec: LoadSpec) -> list[str]:
    """The master's ``--host`` and ``--iolab-load`` (passed on to every worker: locustfile.py)."""
    parts = urlsplit(spec.url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    load = {"path": path, "method": spec.method, "headers": [list(h) for h in spec.headers],
            "body": base64.b64encode(spec.body).decode(), "timeout_s": spec.timeout_s, "keepalive": spec.keepalive,
            "user_rate": spec.rate / spec.concurrency if spec.rate else 0.0}
    return ["--host", f"{parts.scheme}://{parts.netloc}",
            "--iolab-load", base64.b64encode(json.dumps(load).encode()).decode()]


def counts_of(encoded: str) -> tuple[tuple[int, int], ...]:
    if not encoded:
        return ()
    hist = HdrHistogram.decode(encoded.encode("ascii"))
    return tuple((int(hist.get_highest_equivalent_value(item.value_iterated_to)),
                  int(item.count_added_in_this_iter_step)) for item in hist.get_recorded_iterator())


class LocustDriver:
    name = NAME

    def __init__(self, options: LocustOptions | None = None) -> None:
        self.options = options or LocustOptions()

    def run(self, spec: LoadSpec, progress: ProgressCallback | None = None) -> LoadResult:
        from iolab.measure.locust_fleet import run_fleet

        build_args(spec)
        assert spec.duration_s is not None
        opts = self.options
        fin = run_fleet(load_args(spec), users=spec.concurrency, duration_s=spec.duration_s,
                        local_workers=opts.workers, remote_workers=opts.remote_workers, master=opts.master,
                        progress=progress)
        r: dict[str, Any] = fin.result
        expected = opts.workers + opts.remote_workers
        finals = r.get("finals") or []
        if not isinstance(finals, list) or len(finals) < expected:
            raise DriverError(f"Locust: {expected - len(finals) if isinstance(finals, list) else expected} of "
                              f"{expected} workers did not send their last histogram; the run is incomplete. "
                              f"Master: {fin.master_log.strip().splitlines()[-1:] or ''}")
        status = {int(k): int(v) for k, v in dict(r.get("status") or {}).items()}
        completed = sum(status.values())
        ok = sum(n for code, n in status.items() if 200 <= code < 300)
        failed = sum(int(r.get(k) or 0) for k in ("connect_errors", "timeouts", "other_errors"))
        first, last = r.get("first_start"), r.get("last_end")
        duration = float(last) - float(first) if isinstance(first, (int, float)) and isinstance(last, (int, float)) \
            else 0.0
        load_u = float(r.get("workers_cpu_user") or 0.0) + float(r.get("master_cpu_user") or 0.0)
        load_s = float(r.get("workers_cpu_sys") or 0.0) + float(r.get("master_cpu_sys") or 0.0)
        loop = (f"open: {spec.rate:g} req/s as {spec.concurrency} users at {spec.rate / spec.concurrency:g} "
                "req/s each (Locust constant_throughput)") if spec.rate else f"closed: {spec.concurrency} users"
        return LoadResult(
            driver=NAME, requests=completed + failed, completed=completed, ok_2xx=ok, non_2xx=completed - ok,
            connect_errors=int(r.get("connect_errors") or 0),
            timeouts=int(r.get("timeouts") or 0),
            other_errors=int(r.get("other_errors") or 0),
            status_counts=status, duration_s=duration, latencies_us=(),
            bytes_received=int(r.get("bytes") or 0),
            cpu_user_s=fin.cpu_user_s, cpu_sys_s=fin.cpu_sys_s,
            errors_sample=tuple(str(e) for e in (r.get("errors") or [])),
            raw_output=fin.master_log,
            latency_counts_us=counts_of(str(r.get("hist") or "")),
            latency_resolution_us=1,
            cpu_load_user_s=load_u, cpu_load_sys_s=load_s,
            command=fin.command,
            facts={"latency": "HdrHistogram per Locust worker (µs, 3 significant digits) from its request "
                              "events (FastHttpUser: request sent to last byte), merged in the master",
                   "loop": loop, "coordinated_omission_corrected": False,
                   "workers": {"local": opts.workers, "remote": opts.remote_workers,
                               "reported": len(r.get("workers") or [])},
                   "locust_requests": r.get("locust_requests"), "locust_failures": r.get("locust_failures"),
                   "locust_version": _version()},
        )


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("locust")
    except PackageNotFoundError:
        return None
