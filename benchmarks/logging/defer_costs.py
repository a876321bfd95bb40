"""What each part of a deferred record costs; started by benchmarks/bench_logging.py, not by hand.

usage: defer_costs.py CALLS REPS        prints one JSON object

caller: the calling thread's own CPU time per call (time.thread_time_ns: the writer thread's work and
waiting for the GIL are not in it), for one variant of the call or the format at a time, each against the
baseline `log.info("record %06d: ...", i)` with format "%(message)s". The writer runs as usual (sink:
/dev/null), so the caller pays its share of garbage collection as it would in a program.
writer: the writer thread's CPU per record to format a batch of captured records and encode it, per
format, measured on the writer's own code (the plan the handler compiles) in this thread.
The figures are the minimum over REPS repetitions: the cost on an undisturbed core.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import iolab.logging
from iolab.logging import _plan

MSG = "record %06d: the quick brown fox jumps"
BASE = "%(message)s"
# (label, format, call): the call gets the logger and the record number.
CALLER_VARIANTS: list[tuple[str, str, Callable[[logging.Logger, int], Any]]] = [
    ("baseline: %(message)s, one int argument", BASE, lambda lg, i: lg.info(MSG, i)),
    ("no argument", BASE, lambda lg, i: lg.info("record: the quick brown fox jumps")),
    ("two arguments (str, int)", BASE, lambda lg, i: lg.info("record %s %d", "x", i)),
    ("a list argument (rendered at the call)", BASE, lambda lg, i: lg.info("record %s", [i, 1])),
    ("a dict argument (rendered at the call)", BASE, lambda lg, i: lg.info("record %(i)d", {"i": i})),
    ("a level below the logger's (dropped)", BASE, lambda lg, i: lg.debug(MSG, i)),
    ("+ %(asctime)s (the clock)", "%(asctime)s %(message)s", lambda lg, i: lg.info(MSG, i)),
    ("+ %(thread)d", "%(thread)d %(message)s", lambda lg, i: lg.info(MSG, i)),
    ("+ %(threadName)s", "%(threadName)s %(message)s", lambda lg, i: lg.info(MSG, i)),
    ("+ %(processName)s", "%(processName)s %(message)s", lambda lg, i: lg.info(MSG, i)),
    ("+ %(funcName)s:%(lineno)d (the caller's frame)", "%(funcName)s:%(lineno)d %(message)s",
     lambda lg, i: lg.info(MSG, i)),
    ("extra={'user': 'u'} (not printed: checked, then ignored)", BASE,
     lambda lg, i: lg.info(MSG, i, extra={"user": "u"})),
    ("exc_info=True outside an exception (the stdlib path)", BASE, lambda lg, i: lg.info(MSG, i, exc_info=True)),
]
WRITER_FORMATS = [
    "%(message)s", logging.BASIC_FORMAT, "%(asctime)s %(message)s", "%(msecs)d %(message)s",
    "%(relativeCreated)d %(message)s", "%(thread)d %(threadName)s %(message)s",
    "%(funcName)s:%(lineno)d %(message)s", "%(filename)s %(module)s %(message)s", "%(process)d %(message)s",
    "%(asctime)s %(levelname)s %(name)s: %(message)s", "{asctime} {levelname} {name}: {message}",
]


def caller_costs(calls: int, reps: int, sink: int) -> list[dict[str, Any]]:
    out = []
    for k, (label, fmt, call) in enumerate(CALLER_VARIANTS):
        lg = logging.getLogger(f"costs{k}")
        lg.propagate = False
        h = iolab.logging.install(logger=lg, stream=sink, fmt=fmt, defer=True, sigterm_flush=False)
        call(lg, 0)
        best = float("inf")
        for _ in range(reps):
            assert h.flush(30)
            c0 = time.thread_time_ns()
            for i in range(calls):
                call(lg, i)
            best = min(best, (time.thread_time_ns() - c0) / calls)
        assert h.flush(30)
        out.append({"label": label, "format": fmt, "caller_ns": best,
                    "deferred": h.stats()["deferred_records"], "on_caller": h.stats()["formatted_on_caller"]})
        h.close()
    return out


def writer_costs(records: int, reps: int) -> list[dict[str, Any]]:
    out = []
    handler = iolab.logging.DeferredHandler(os.open(os.devnull, os.O_WRONLY))
    for fmt in WRITER_FORMATS:
        style = "{" if fmt.startswith("{") else "%"
        handler.setFormatter(logging.Formatter(fmt, style=style))
        plan = handler._capture
        assert plan is not None
        values = {"time": _plan.now(), "thread": threading.get_ident(), "threadName": "MainThread",
                  "processName": "MainProcess", "taskName": None, "pathname": __file__, "lineno": 42,
                  "funcName": "handler"}
        items = []
        for i in range(records):
            step = i * (1_000_000 if _plan.NS_CLOCK else 0.001)  # a record per millisecond
            extras = tuple(values[e] + step if e == "time" else values[e] for e in plan.extras)
            items.append((plan.id, "app", logging.INFO, MSG, i, *extras))
        best = float("inf")
        for _ in range(reps):
            c0 = time.thread_time_ns()
            handler._render(items)
            best = min(best, (time.thread_time_ns() - c0) / records)
        out.append({"format": fmt, "writer_ns": best})
    handler.close()
    return out


def main() -> None:
    calls, reps = int(sys.argv[1]), int(sys.argv[2])
    sink = os.open(os.devnull, os.O_WRONLY)
    res = {"caller": caller_costs(calls, reps, sink), "writer": writer_costs(min(calls, 20_000), reps)}
    json.dump(res, sys.stdout)


if __name__ == "__main__":
    main()
