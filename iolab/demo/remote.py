"""Remote logging scenarios: the demo's endpoints that log to a collector across a network (issue 20).

Every endpoint is ``async def`` (as the seed's "log to Elasticsearch" endpoints) and logs one record whose
message carries a marker the collectors count: ``iolab-rec TAG SEQ T`` (collector_child.py). Where the
collectors are is read from the environment iolab sets (``IOLAB_COLLECTOR_HOST``, ``IOLAB_SYSLOG_PORT``,
``IOLAB_JSONL_PORT``, ``IOLAB_BULK_URL``; docs/network.md); a user's app can read the same variables.

- ``syslog-udp`` / ``syslog-tcp``: the stdlib ``SysLogHandler`` (a datagram, or a send on a kept stream);
- ``socket-tcp``: the stdlib ``SocketHandler`` sending JSON lines instead of pickles;
- ``http-per-record``: one HTTP request per record on a new connection, as the stdlib ``HTTPHandler``
  does: the naive "log to Elasticsearch" (a ``_bulk`` body of one document);
- ``queue-http``: the same handler behind a ``QueueHandler`` + ``QueueListener`` (unbounded queue);
- ``ours-tcp`` / ``ours-http``: ``iolab.logging.BatchHandler`` with ``TCPSink`` / ``BulkHTTPSink``.

The server counts what it logged (``sent``) and, for ours-*, what the handler dropped; it writes them to
``IOLAB_NET_REPORT`` when it shuts down (first the count, then again once its handlers are closed).
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import logging.handlers
import os
import socket
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from iolab.demo.strategies import Lazy
from iolab.demo.work import with_work

router = APIRouter()
FORMAT = "%(levelname)s:%(name)s:%(message)s"
_seq = itertools.count(1)
_sent = 0
_TAG = os.environ.get("IOLAB_NET_TAG", "demo")
_ALL: list[Lazy[Any]] = []
_handlers: list[logging.Handler] = []
_sinks: list[Any] = []  # ours-*: the network sinks, for their counts
_batching: list[Any] = []  # ours-*: their BatchHandlers, whose buffer is sampled


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: the remote logging scenarios need iolab's collectors "
                           "(iolab run --scenario network …)")
    return value


_SAMPLE_EVERY = 32  # records between two looks at the batching handler's buffer (a lock each time)
_buffer_peak: int | None = None


def _record_text() -> str:
    global _sent, _buffer_peak
    seq = next(_seq)
    _sent = seq  # the highest number handed out is how many records were logged (one per request)
    if seq % _SAMPLE_EVERY == 0 and _batching:
        # The handler's own peak_bytes is kept on its slow path only; what it holds now is exact enough.
        held = max(h.stats()["pending_bytes"] for h in _batching)
        _buffer_peak = held if _buffer_peak is None else max(_buffer_peak, held)
    return f"iolab-rec {_TAG} {seq} {time.time():.6f}"


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger(f"iolab-demo-{name}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    _handlers.append(handler)
    return logger


def _lazy(build: Callable[[], tuple[logging.Logger, Callable[[], None] | None]]) -> Lazy[logging.Logger]:
    lazy: Lazy[logging.Logger] = Lazy(build)
    _ALL.append(lazy)
    return lazy


# ----------------------------------------------------------------------------------- the handlers


class JSONSocketHandler(logging.handlers.SocketHandler):
    """The stdlib SocketHandler (its connect, retry back-off, silent drop on error), JSON lines on the wire."""

    def makePickle(self, record: logging.LogRecord) -> bytes:  # noqa: N802 - the stdlib's name
        return (json.dumps({"level": record.levelname, "logger": record.name, "message": self.format(record)})
                + "\n").encode()


class PerRecordBulkHandler(logging.Handler):
    """What ``logging.handlers.HTTPHandler.emit`` does, with an Elasticsearch ``_bulk`` body: per record a
    new connection, one POST, wait for the answer, close. No timeout, as HTTPHandler."""

    def __init__(self, url: str) -> None:
        super().__init__()
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "", parts.port, parts.path or "/_bulk"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            body = ('{"index":{"_index":"logs"}}\n' + json.dumps({"message": self.format(record)}) + "\n").encode()
            conn = http.client.HTTPConnection(self.host, self.port)
            conn.request("POST", self.path, body=body, headers={"Content-Type": "application/x-ndjson"})
            conn.getresponse().read()
            conn.close()
        except Exception:
            self.handleError(record)


def _syslog(socktype: socket.SocketKind) -> tuple[logging.Logger, Callable[[], None]]:
    handler = logging.handlers.SysLogHandler((_env("IOLAB_COLLECTOR_HOST"), int(_env("IOLAB_SYSLOG_PORT"))),
                                             socktype=socktype)
    name = "syslog-udp" if socktype == socket.SOCK_DGRAM else "syslog-tcp"
    return _logger(name, handler), handler.close


def _socket_tcp() -> tuple[logging.Logger, Callable[[], None]]:
    handler = JSONSocketHandler(_env("IOLAB_COLLECTOR_HOST"), int(_env("IOLAB_JSONL_PORT")))
    return _logger("socket-tcp", handler), handler.close


def _http_per_record() -> tuple[logging.Logger, Callable[[], None]]:
    handler = PerRecordBulkHandler(_env("IOLAB_BULK_URL"))
    return _logger("http-per-record", handler), handler.close


def _queue_http() -> tuple[logging.Logger, Callable[[], None]]:
    import queue

    from iolab.demo.strategies import _NamedQueueListener

    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    target = PerRecordBulkHandler(_env("IOLAB_BULK_URL"))
    target.setFormatter(logging.Formatter(FORMAT))
    listener = _NamedQueueListener(records, target)
    listener.start()
    return _logger("queue-http", logging.handlers.QueueHandler(records)), listener.stop


def _ours(sink: Any, name: str) -> tuple[logging.Logger, Callable[[], None]]:
    from iolab.logging import BatchHandler

    handler = BatchHandler(sink)
    _sinks.append(sink)
    _batching.append(handler)

    def close() -> None:
        handler.close()  # writes what is buffered (bounded by its flush_timeout)
        sink.close()  # a handler does not close a stream it did not open

    return _logger(name, handler), close


def _ours_tcp() -> tuple[logging.Logger, Callable[[], None]]:
    from iolab.logging.sinks import TCPSink

    return _ours(TCPSink(_env("IOLAB_COLLECTOR_HOST"), int(_env("IOLAB_JSONL_PORT"))), "ours-tcp")


def _ours_http() -> tuple[logging.Logger, Callable[[], None]]:
    from iolab.logging.sinks import BulkHTTPSink

    return _ours(BulkHTTPSink(_env("IOLAB_BULK_URL")), "ours-http")


_syslog_udp_l = _lazy(lambda: _syslog(socket.SOCK_DGRAM))
_syslog_tcp_l = _lazy(lambda: _syslog(socket.SOCK_STREAM))
_socket_tcp_l = _lazy(_socket_tcp)
_http_per_record_l = _lazy(_http_per_record)
_queue_http_l = _lazy(_queue_http)
_ours_tcp_l = _lazy(_ours_tcp)
_ours_http_l = _lazy(_ours_http)


# ----------------------------------------------------------------------------------- the endpoints


@router.get("/syslog-udp")
@with_work
async def syslog_udp_endpoint():
    _syslog_udp_l.get().info(_record_text())
    return {"message": "logged to syslog (UDP)"}


@router.get("/syslog-tcp")
@with_work
async def syslog_tcp_endpoint():
    _syslog_tcp_l.get().info(_record_text())
    return {"message": "logged to syslog (TCP)"}


@router.get("/socket-tcp")
@with_work
async def socket_tcp_endpoint():
    _socket_tcp_l.get().info(_record_text())
    return {"message": "logged as a JSON line over TCP"}


@router.get("/http-per-record")
@with_work
async def http_per_record_endpoint():
    _http_per_record_l.get().info(_record_text())
    return {"message": "logged to Elasticsearch"}


@router.get("/queue-http")
@with_work
async def queue_http_endpoint():
    _queue_http_l.get().info(_record_text())
    return {"message": "queued for Elasticsearch"}


@router.get("/ours-tcp")
@with_work
async def ours_tcp_endpoint():
    _ours_tcp_l.get().info(_record_text())
    return {"message": "batched to TCP"}


@router.get("/ours-http")
@with_work
async def ours_http_endpoint():
    _ours_http_l.get().info(_record_text())
    return {"message": "batched to _bulk"}


# ----------------------------------------------------------------------------------- shutdown


def _report(final: bool) -> None:
    path = os.environ.get("IOLAB_NET_REPORT")
    if not path:
        return
    dropped = sum(getattr(h, "dropped", 0) for h in _handlers)
    sinks = [s.stats() for s in _sinks]
    budget = max((h.max_bytes for h in _batching), default=0) or None
    data = {"tag": _TAG, "sent": _sent, "final": final, "dropped": dropped if final else None,
            "buffer_peak_bytes": _buffer_peak if _batching else None, "buffer_budget_bytes": budget,
            "handler_counts_drops": any(hasattr(h, "dropped") for h in _handlers), "sinks": sinks}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def shutdown() -> None:
    """Write the count, close every handler (their backlog goes out), write the count and the drops."""
    _report(final=False)
    for lazy in reversed(_ALL):
        lazy.close()
    _report(final=True)
