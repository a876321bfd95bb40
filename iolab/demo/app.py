"""The seed's FastAPI app, verbatim, plus the controls that isolate what it really measured.

Each endpoint is one scenario; iolab starts a fresh server per scenario (aiologger's non-blocking
stdout must not leak from one scenario into the next). See ``iolab scenarios`` and design.md.

The catalog of further logging strategies is in ``strategies.py``; the two knobs (CPU work per request,
a slow log sink) are in ``work.py``. The knobs wrap the seed's endpoints from outside (``@with_work``)
and swap ``sys.stdout`` before any handler below binds it; the endpoints' bodies are the seed's, and with
both knobs at 0 (the default) nothing is wrapped or swapped.
"""

import asyncio
import logging
import random
import sys
from asyncio import events
from contextlib import asynccontextmanager

from aiologger import Logger as AsyncLogger
from aiologger.levels import LogLevel
from fastapi import FastAPI

from iolab.demo import remote, strategies, work
from iolab.demo.work import with_work

# Before anything binds sys.stdout (aiologger's and the control's handlers below, the catalog's loggers).
work.install_slow_stdout(work.SINK_LATENCY_MS)
if work.WORK_US > 0 or work.SINK_LATENCY_MS > 0:
    print(work.describe(), file=sys.stderr, flush=True)


@asynccontextmanager
async def lifespan(app):
    yield
    # Stop the catalog's listener threads and queues, writing their backlog before the server exits.
    strategies.shutdown()
    remote.shutdown()  # the remote-logging scenarios (issue 20): their backlog, then their counts


app = FastAPI(lifespan=lifespan)

# --- The seed, verbatim (including its comments' intent) -------------------------------------------
# Synchronous logger (stdlib logging). Note: the seed never adds a handler, so with no handler on the
# logger or on root, records at INFO are dropped (logging.lastResort only prints WARNING and above).
sync_logger = logging.getLogger("sync-logger")
sync_logger.setLevel(logging.INFO)

# Asynchronous logger (aiologger). Its stdout handler puts fd 1 into non-blocking mode for the whole
# process the first time it writes.
async_logger = AsyncLogger.with_default_handlers(name="async-logger", level=LogLevel.INFO)


@app.get("/sync")
@with_work
def sync_endpoint():
    """Synchronous logging (the seed's: a handler-less stdlib logger, so nothing is written)."""
    sync_logger.info(f"Sync log: {random.randint(0, 100)}")
    return {"message": "Synchronous logging to Elasticsearch complete"}


@app.get("/async")
@with_work
async def async_endpoint():
    """Asynchronous logging with aiologger."""
    async_logger.info(f"Async log: {random.randint(0, 100)}")
    return {"message": "Asynchronous logging to Elasticsearch complete"}


@app.get("/sync-raw")
@with_work
def sync_raw_endpoint():
    """A raw sys.stdout.write from a worker thread."""
    sys.stdout.write(f"Sync log: {random.randint(0, 100)}\n")
    return {"message": "Synchronous logging to stdout complete"}


@app.get("/async-raw")
@with_work
async def async_raw_endpoint():
    """A raw sys.stdout.write deferred to a task on the event loop."""

    async def write_log(buffer):
        sys.stdout.write(buffer)
        await asyncio.sleep(0)

    loop = events.get_running_loop()
    loop.create_task(write_log(f"Async log: {random.randint(0, 100)}\n"))

    return {"message": "Asynchronous logging to stdout complete"}


# --- Controls ---------------------------------------------------------------------------------------
# A stdlib logger that really writes: the blocking log call the seed meant to measure.
handler_logger = logging.getLogger("iolab-demo-handler")
handler_logger.setLevel(logging.INFO)
handler_logger.propagate = False
_stream_handler = logging.StreamHandler(sys.stdout)
_stream_handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
handler_logger.addHandler(_stream_handler)


@app.get("/noop-async")
@with_work
async def noop_async_endpoint():
    """Baseline on the event loop: no logging."""
    random.randint(0, 100)
    return {"message": "no logging"}


@app.get("/noop-sync")
@with_work
def noop_sync_endpoint():
    """The thread-pool hand-off alone: `def`, no logging."""
    random.randint(0, 100)
    return {"message": "no logging"}


@app.get("/sync-handler")
@with_work
def sync_handler_endpoint():
    """A real blocking log call (StreamHandler to stdout, flushed per record) in a worker thread."""
    handler_logger.info(f"Sync log: {random.randint(0, 100)}")
    return {"message": "Synchronous logging to stdout complete"}


@app.get("/async-blocking-log")
@with_work
async def async_blocking_log_endpoint():
    """The same blocking StreamHandler, called on the event loop thread."""
    handler_logger.info(f"Async log: {random.randint(0, 100)}")
    return {"message": "Synchronous logging to stdout complete"}


# --- The catalog (strategies.py) --------------------------------------------------------------------
app.include_router(strategies.router)
app.include_router(remote.router)  # logging across a network (issue 20)
