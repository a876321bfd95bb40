"""The strategy catalog: one small endpoint per way of logging a line, beyond the seed's eight.

Each endpoint writes exactly one line per request (the CPU-only control writes none) to
:func:`iolab.demo.work.log_stream` — ``sys.stdout``, which the sink-latency knob makes slow. Each
strategy is set up the first time its endpoint is called (the warm-up's first request does it), so a
server that measures another scenario carries none of its threads, queues or imports: the seed's servers
stay exactly what they were. Whatever was started is stopped, and its backlog written, by the app's
lifespan (:func:`shutdown`), before uvicorn exits.

The optional loggers (loguru, structlog, picologging: ``pip install 'iolab[loggers]'``) are imported
there too, so the app starts without them; ``iolab run`` refuses to select their scenarios when they
are missing (``iolab.demo.scenarios.select``).
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import random
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from fastapi import APIRouter

from iolab.demo.work import fd_writer_stream, log_stream, with_work

T = TypeVar("T")
router = APIRouter()
# The seed's control handler's format, so stdlib-based strategies format the same text.
STDLIB_FORMAT = "%(levelname)s:%(name)s:%(message)s"


class Lazy(Generic[T]):
    """A value built once, on first use, by any thread; ``close()`` undoes it if it was built.

    The fast path is one attribute read: after the first call no lock is taken.
    """

    def __init__(self, build: Callable[[], tuple[T, Callable[[], None] | None]]) -> None:
        self._build = build
        self._value: T | None = None
        self._close: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value, self._close = self._build()
                value = self._value
        return value

    def close(self) -> None:
        with self._lock:
            close, self._close, self._value = self._close, None, None
        if close is not None:
            close()


_ALL: list[Lazy[Any]] = []


def _lazy(build: Callable[[], tuple[T, Callable[[], None] | None]]) -> Lazy[T]:
    lazy: Lazy[T] = Lazy(build)
    _ALL.append(lazy)
    return lazy


def shutdown() -> None:
    """Stop every strategy that was started, writing what it still holds (the app's lifespan calls it)."""
    for lazy in reversed(_ALL):
        lazy.close()


def _stdlib_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


# ----------------------------------------------------------------------------- CPU-only control


class FormatOnlyHandler(logging.Handler):
    """StreamHandler.emit without the write: format the record, build the line, drop it."""

    terminator = "\n"

    def emit(self, record: logging.LogRecord) -> None:
        self.last_line = self.format(record) + self.terminator


def _build_cpu_only() -> tuple[logging.Logger, None]:
    handler = FormatOnlyHandler()
    handler.setFormatter(logging.Formatter(STDLIB_FORMAT))
    return _stdlib_logger("iolab-demo-cpu-only", handler), None


_cpu_only = _lazy(_build_cpu_only)


@router.get("/cpu-only")
@with_work
async def cpu_only_endpoint():
    """The same record creation and formatting as /async-blocking-log, and no write."""
    _cpu_only.get().info(f"Async log: {random.randint(0, 100)}")
    return {"message": "formatted, not written"}


# ------------------------------------------------------------------ stdlib QueueHandler + listener


class _NamedQueueListener(logging.handlers.QueueListener):
    """QueueListener.start as in the stdlib, with a thread name the per-thread table can show."""

    def start(self) -> None:
        self._thread = t = threading.Thread(target=self._monitor, name="log-queue", daemon=True)
        t.start()


def _build_queue() -> tuple[logging.Logger, Callable[[], None]]:
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    # The QueueHandler has no formatter: prepare() only merges msg and args on the caller's thread;
    # the listener's StreamHandler formats and writes, so the caller never touches stdout.
    target = logging.StreamHandler(log_stream())
    target.setFormatter(logging.Formatter(STDLIB_FORMAT))
    listener = _NamedQueueListener(records, target)
    listener.start()
    logger = _stdlib_logger("iolab-demo-queue", logging.handlers.QueueHandler(records))
    return logger, listener.stop  # stop() writes every queued record before it returns


_queue = _lazy(_build_queue)


@router.get("/queue-sync")
@with_work
def queue_sync_endpoint():
    """QueueHandler from a worker thread; a listener thread writes."""
    _queue.get().info(f"Sync log: {random.randint(0, 100)}")
    return {"message": "Synchronous logging to a queue complete"}


@router.get("/queue-async")
@with_work
async def queue_async_endpoint():
    """QueueHandler on the event loop; a listener thread writes."""
    _queue.get().info(f"Async log: {random.randint(0, 100)}")
    return {"message": "Asynchronous logging to a queue complete"}


# ---------------------------------------------------------------------------------------- loguru

_loguru_lock = threading.Lock()
_loguru_default_removed = False


def _build_loguru(enqueue: bool) -> tuple[Any, Callable[[], None]]:
    global _loguru_default_removed
    from loguru import logger

    tag = "enqueue" if enqueue else "plain"
    with _loguru_lock:
        if not _loguru_default_removed:  # loguru starts with a stderr handler (id 0) on its one logger
            logger.remove(0)
            _loguru_default_removed = True
    # loguru has one global logger: each strategy's sink takes only the records bound to its tag.
    # Everything else is loguru's default handler configuration (format, level DEBUG, no colors on a
    # pipe), with stdout instead of stderr so that the sink-latency knob reaches it.
    handler_id = logger.add(log_stream(), enqueue=enqueue,
                            filter=lambda record: record["extra"].get("iolab") == tag)
    return logger.bind(iolab=tag), lambda: logger.remove(handler_id)  # remove() drains the queue


_loguru = _lazy(lambda: _build_loguru(enqueue=False))
_loguru_enqueue = _lazy(lambda: _build_loguru(enqueue=True))


@router.get("/loguru")
@with_work
async def loguru_endpoint():
    """loguru's default handler on the event loop: format and write in the caller."""
    _loguru.get().info(f"Async log: {random.randint(0, 100)}")
    return {"message": "loguru logging complete"}


@router.get("/loguru-enqueue")
@with_work
async def loguru_enqueue_endpoint():
    """loguru with enqueue=True: format in the caller, pickle into a multiprocessing queue, a thread writes."""
    _loguru_enqueue.get().info(f"Async log: {random.randint(0, 100)}")
    return {"message": "loguru enqueued logging complete"}


# ------------------------------------------------------------------------------------- structlog


def _build_structlog() -> tuple[Any, None]:
    import structlog

    # A typical production chain: level, ISO timestamp, one JSON object per line. PrintLogger prints
    # with flush=True under a per-file lock. wrap_logger leaves structlog's global config alone.
    logger = structlog.wrap_logger(
        structlog.PrintLogger(file=log_stream()),
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    return logger, None


_structlog = _lazy(_build_structlog)


@router.get("/structlog")
@with_work
async def structlog_endpoint():
    """structlog's PrintLogger, called synchronously on the event loop."""
    _structlog.get().info("Async log", n=random.randint(0, 100))
    return {"message": "structlog logging complete"}


@router.get("/structlog-ainfo")
@with_work
async def structlog_ainfo_endpoint():
    """structlog's ainfo: the whole call (processors and print) runs in the loop's default executor."""
    await _structlog.get().ainfo("Async log", n=random.randint(0, 100))
    return {"message": "structlog async logging complete"}


# ----------------------------------------------------------------------------------- picologging


def _build_picologging() -> tuple[Any, None]:
    import picologging

    handler = picologging.StreamHandler(log_stream())
    handler.setFormatter(picologging.Formatter(STDLIB_FORMAT))
    logger = picologging.getLogger("iolab-demo-picologging")
    logger.setLevel(picologging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    return logger, None


_picologging = _lazy(_build_picologging)


@router.get("/picologging")
@with_work
async def picologging_endpoint():
    """picologging's StreamHandler (the logging API in C) on the event loop."""
    _picologging.get().info(f"Async log: {random.randint(0, 100)}")
    return {"message": "picologging logging complete"}


# ----------------------------------------------------------------------------------------- print


@router.get("/print")
@with_work
async def print_endpoint():
    """print on the event loop: block-buffered on a pipe, so a write(2) every ~8 KiB."""
    print(f"Async log: {random.randint(0, 100)}")
    return {"message": "printed"}


@router.get("/print-flush")
@with_work
async def print_flush_endpoint():
    """print(flush=True) on the event loop: a write(2) per call."""
    print(f"Async log: {random.randint(0, 100)}", flush=True)
    return {"message": "printed and flushed"}


# ----------------------------------------------------------------- iolab.logging.BatchHandler


def _build_ours() -> tuple[logging.Logger, Callable[[], None]]:
    from iolab.logging import BatchHandler

    handler = BatchHandler(fd_writer_stream())
    handler.setFormatter(logging.Formatter(STDLIB_FORMAT))
    return _stdlib_logger("iolab-demo-ours", handler), handler.close  # close() writes what is buffered


_ours = _lazy(_build_ours)


@router.get("/ours-sync")
@with_work
def ours_sync_endpoint():
    """iolab.logging.BatchHandler from a worker thread: buffer in memory, a writer thread batches."""
    _ours.get().info(f"Sync log: {random.randint(0, 100)}")
    return {"message": "Synchronous logging to a batch complete"}


@router.get("/ours-async")
@with_work
async def ours_async_endpoint():
    """iolab.logging.BatchHandler on the event loop."""
    _ours.get().info(f"Async log: {random.randint(0, 100)}")
    return {"message": "Asynchronous logging to a batch complete"}


# ------------------------------------------------- iolab.logging.install(defer=True): capture only


def _build_deferred() -> tuple[logging.Logger, Callable[[], None]]:
    import iolab.logging

    logger = logging.getLogger("iolab-demo-deferred")
    logger.propagate = False  # its records go to its own handler only, as the other strategies' do
    # sigterm_flush=False: the app's lifespan closes the handler (writing what is pending) before uvicorn
    # exits, as for /ours-*; and this runs on a request, not where a signal handler belongs.
    handler = iolab.logging.install(logger=logger, stream=fd_writer_stream(), fmt=STDLIB_FORMAT, defer=True,
                                    sigterm_flush=False)
    return logger, handler.close


_deferred = _lazy(_build_deferred)


@router.get("/deferred-sync")
@with_work
def deferred_sync_endpoint():
    """iolab.logging.install(defer=True) from a worker thread: the call appends a tuple, the writer
    thread formats and writes in batches."""
    _deferred.get().info(f"Sync log: {random.randint(0, 100)}")
    return {"message": "Synchronous deferred logging complete"}


@router.get("/deferred-async")
@with_work
async def deferred_async_endpoint():
    """iolab.logging.install(defer=True) on the event loop."""
    _deferred.get().info(f"Async log: {random.randint(0, 100)}")
    return {"message": "Asynchronous deferred logging complete"}
