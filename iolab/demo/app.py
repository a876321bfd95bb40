"""The seed's FastAPI app, verbatim, plus the controls that isolate what it really measured.

Each endpoint is one scenario; iolab starts a fresh server per scenario (aiologger's non-blocking
stdout must not leak from one scenario into the next). See ``iolab scenarios`` and design.md.
"""

import asyncio
import logging
import random
import sys
from asyncio import events

from aiologger import Logger as AsyncLogger
from aiologger.levels import LogLevel
from fastapi import FastAPI

app = FastAPI()

# --- The seed, verbatim (including its comments' intent) -------------------------------------------
# Synchronous logger (stdlib logging). Note: the seed never adds a handler, so with no handler on the
# logger or on root, records at INFO are dropped (logging.lastResort only prints WARNING and above).
sync_logger = logging.getLogger("sync-logger")
sync_logger.setLevel(logging.INFO)

# Asynchronous logger (aiologger). Its stdout handler puts fd 1 into non-blocking mode for the whole
# process the first time it writes.
async_logger = AsyncLogger.with_default_handlers(name="async-logger", level=LogLevel.INFO)


@app.get("/sync")
def sync_endpoint():
    """Synchronous logging (the seed's: a handler-less stdlib logger, so nothing is written)."""
    sync_logger.info(f"Sync log: {random.randint(0, 100)}")
    return {"message": "Synchronous logging to Elasticsearch complete"}


@app.get("/async")
async def async_endpoint():
    """Asynchronous logging with aiologger."""
    async_logger.info(f"Async log: {random.randint(0, 100)}")
    return {"message": "Asynchronous logging to Elasticsearch complete"}


@app.get("/sync-raw")
def sync_raw_endpoint():
    """A raw sys.stdout.write from a worker thread."""
    sys.stdout.write(f"Sync log: {random.randint(0, 100)}\n")
    return {"message": "Synchronous logging to stdout complete"}


@app.get("/async-raw")
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
async def noop_async_endpoint():
    """Baseline on the event loop: no logging."""
    random.randint(0, 100)
    return {"message": "no logging"}


@app.get("/noop-sync")
def noop_sync_endpoint():
    """The thread-pool hand-off alone: `def`, no logging."""
    random.randint(0, 100)
    return {"message": "no logging"}


@app.get("/sync-handler")
def sync_handler_endpoint():
    """A real blocking log call (StreamHandler to stdout, flushed per record) in a worker thread."""
    handler_logger.info(f"Sync log: {random.randint(0, 100)}")
    return {"message": "Synchronous logging to stdout complete"}


@app.get("/async-blocking-log")
async def async_blocking_log_endpoint():
    """The same blocking StreamHandler, called on the event loop thread."""
    handler_logger.info(f"Async log: {random.randint(0, 100)}")
    return {"message": "Synchronous logging to stdout complete"}
