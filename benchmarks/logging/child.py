"""One measured logger in a fresh process; started by benchmarks/bench_logging.py, not by hand.

usage: child.py CONFIG_JSON RESULT_FD
The sink is this process's stdout (fd 1): a pipe, a regular file or a pty, chosen by the parent. Every
logger writes "%(message)s"-formatted records of ~40 bytes to sys.stdout. The results go to RESULT_FD
as one JSON object, measured before anything is written there. "before"/"after" include the process's
CPU time (every thread: the caller and any writer thread), "after" taken once the logger has written
everything (its finish()), so their difference is the whole cost of the records.
"""

from __future__ import annotations

import array
import asyncio
import json
import logging
import logging.handlers
import os
import queue
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

MSG = "record %06d: the quick brown fox jumps"  # 40 bytes + newline
MSG_BRACES = "record {:06d}: the quick brown fox jumps"  # loguru's spelling of the same line

Info = Callable[[str, int], Any]
Finish = Callable[[], Any]


class NoopHandler(logging.Handler):
    """The floor: the stdlib Logger's own cost, with a handler that does nothing at all."""

    def emit(self, record: logging.LogRecord) -> None:
        pass


def stdlib_logger(handler: logging.Handler) -> logging.Logger:
    handler.setFormatter(logging.Formatter("%(message)s"))
    lg = logging.getLogger("bench")
    lg.propagate = False
    lg.handlers[:] = [handler]
    lg.setLevel(logging.INFO)
    return lg


Setup = tuple[Info, Finish, Finish, Callable[[], dict[str, Any]]]


def nothing() -> None:
    pass


def setup_floor(cfg: dict[str, Any]) -> Setup:
    return stdlib_logger(NoopHandler()).info, nothing, nothing, dict


def setup_print(cfg: dict[str, Any]) -> Setup:
    def info(fmt: str, i: int) -> None:
        print(fmt % i)
    return info, sys.stdout.flush, sys.stdout.flush, dict


def setup_stdlib(cfg: dict[str, Any]) -> Setup:
    return stdlib_logger(logging.StreamHandler(sys.stdout)).info, nothing, nothing, dict


def setup_queue(cfg: dict[str, Any]) -> Setup:
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    target = logging.StreamHandler(sys.stdout)
    target.setFormatter(logging.Formatter("%(message)s"))
    listener = logging.handlers.QueueListener(q, target)
    listener.start()
    lg = stdlib_logger(logging.handlers.QueueHandler(q))

    def settle() -> None:
        while not q.empty():
            time.sleep(0.001)
        time.sleep(0.01)
    return lg.info, settle, listener.stop, dict


def setup_loguru(cfg: dict[str, Any]) -> Setup:
    from loguru import logger

    logger.remove()
    logger.add(sys.stdout, format="{message}", enqueue=cfg["logger"] == "loguru_enqueue", catch=False)

    def finish() -> None:
        logger.complete()
        logger.remove()  # stops the enqueue thread

    def info(fmt: str, i: int) -> None:
        logger.info(MSG_BRACES, i)
    return info, logger.complete, finish, dict


def setup_structlog(cfg: dict[str, Any]) -> Setup:
    import structlog

    structlog.configure(
        processors=[lambda _logger, _name, event_dict: event_dict["event"]],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger().info, nothing, nothing, dict


def setup_picologging(cfg: dict[str, Any]) -> Setup:
    import picologging

    h = picologging.StreamHandler(sys.stdout)
    h.setFormatter(picologging.Formatter("%(message)s"))
    plg = picologging.getLogger("bench")
    plg.handlers[:] = [h]
    plg.setLevel(picologging.INFO)
    return plg.info, nothing, nothing, dict


def setup_ours(cfg: dict[str, Any]) -> Setup:
    import iolab.logging

    h = iolab.logging.BatchHandler(sys.stdout, **(cfg.get("ours_kwargs") or {}))
    lg = stdlib_logger(h)

    def natural() -> None:
        # Nothing to call in an application: records go out within the deadline by themselves.
        # Wait for that, without forcing it, so "flushed" shows the real output latency.
        end = time.monotonic() + 60
        while h.stats()["pending_bytes"] and time.monotonic() < end:
            time.sleep(0.001)

    def stats() -> dict[str, Any]:
        return {"handler": h.stats(), "max_bytes": h.max_bytes}
    return lg.info, natural, natural, stats


def setup_deferred(cfg: dict[str, Any]) -> Setup:
    import iolab.logging

    lg = logging.getLogger("bench")
    lg.propagate = False
    h = iolab.logging.install(logger=lg, stream=sys.stdout, fmt="%(message)s", defer=True, sigterm_flush=False,
                              **(cfg.get("ours_kwargs") or {}))
    assert isinstance(h, iolab.logging.DeferredHandler)

    def natural() -> None:
        # As for "ours": wait for the deadline to deliver, without forcing it.
        end = time.monotonic() + 60
        while h.stats()["pending_records"] and time.monotonic() < end:
            time.sleep(0.001)

    def stats() -> dict[str, Any]:
        return {"handler": h.stats(), "max_records": h.max_records, "deferred_loggers": h.deferred_loggers()}
    return lg.info, natural, natural, stats  # lg.info after install: the fast method


SETUPS: dict[str, Callable[[dict[str, Any]], Setup]] = {
    "floor": setup_floor, "print": setup_print, "stdlib": setup_stdlib, "queue": setup_queue,
    "loguru": setup_loguru, "loguru_enqueue": setup_loguru, "structlog": setup_structlog,
    "picologging": setup_picologging, "deferred": setup_deferred,
}


def setup(name: str, cfg: dict[str, Any]) -> Setup:
    """Return (info(fmt, i), settle, finish, stats).

    settle: wait until what was logged is out, keeping the logger usable (after the warm-up record);
    finish: what an application calls at the end to be sure everything is out (may stop the logger).
    """
    if name.startswith("ours"):
        return setup_ours(cfg)
    if name.startswith("deferred"):
        return setup_deferred(cfg)
    return SETUPS[name](cfg)


def syscw() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("syscw:"):
                return int(line.split()[1])
    return 0


def status_kb(field: str) -> int:
    """VmRSS now, or VmHWM: this process image's peak (ru_maxrss would include the parent's, from fork)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kb() -> int:
    return status_kb("VmRSS")


def counters() -> dict[str, int]:
    ru = resource.getrusage(resource.RUSAGE_SELF)  # every thread, the finished ones too
    rt = resource.getrusage(resource.RUSAGE_THREAD)
    return {"syscw": syscw(), "vcsw": ru.ru_nvcsw, "ivcsw": ru.ru_nivcsw, "main_vcsw": rt.ru_nvcsw,
            "cpu_ns": int((ru.ru_utime + ru.ru_stime) * 1e9)}


def loop_sync(info: Info, n: int, per_call: array.array[int] | None) -> None:
    if per_call is None:
        for i in range(n):
            info(MSG, i)
        return
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        info(MSG, i)
        per_call[i] = clock() - t0


async def loop_async(info: Info, n: int, per_call: array.array[int] | None) -> None:
    # An event loop gets to run the logger's tasks only when the caller yields; a server yields once per
    # request, here once per 100 records, and that time counts as the caller's.
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        info(MSG, i)
        if i % 100 == 99:
            await asyncio.sleep(0)
        if per_call is not None:
            per_call[i] = clock() - t0


def run_aiologger(cfg: dict[str, Any], n: int, per_call: array.array[int] | None) -> dict[str, Any]:
    from aiologger import Logger
    from aiologger.formatters.base import Formatter
    from aiologger.handlers.streams import AsyncStreamHandler
    from aiologger.levels import LogLevel

    out: dict[str, Any] = {}

    async def main() -> None:
        lg = Logger(name="bench", level=LogLevel.INFO)
        lg.add_handler(AsyncStreamHandler(stream=sys.stdout, formatter=Formatter("%(message)s")))
        out["before"] = counters()
        out["rss0"] = rss_kb()
        out["t_start"] = time.monotonic_ns()
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        def info(fmt: str, i: int) -> Any:
            return lg.info(fmt % i)  # aiologger takes only a mapping as args: format here, as it would
        await loop_async(info, n, per_call)
        out["loop_ns"] = time.perf_counter_ns() - t0
        out["loop_cpu_ns"] = time.thread_time_ns() - c0
        if cfg["mode"] != "exit":
            await lg.shutdown()
        out["t_done"] = time.monotonic_ns()
        out["after"] = counters()

    asyncio.run(main())
    return out


def main() -> None:
    cfg = json.loads(sys.argv[1])
    result_fd = int(sys.argv[2])
    name, n = cfg["logger"], cfg["records"]
    per_call = array.array("q", bytes(8 * n)) if cfg["mode"] == "slow" else None
    res: dict[str, Any] = {"logger": name}
    try:
        if name == "aiologger":
            res.update(run_aiologger(cfg, n, per_call))
            res["warmup_lines"] = 0
            extra: dict[str, Any] = {}
        else:
            info, settle, finish, stats = setup(name, cfg)
            info(MSG, 0)  # first call pays one-time costs (imports, thread start) outside the loop
            res["warmup_lines"] = 0 if name == "floor" else 1
            settle()
            res["before"] = counters()
            res["rss0"] = rss_kb()
            res["t_start"] = time.monotonic_ns()
            c0 = time.thread_time_ns()
            t0 = time.perf_counter_ns()
            loop_sync(info, n, per_call)
            res["loop_ns"] = time.perf_counter_ns() - t0
            # The calling thread's own CPU time: unlike the wall clock, it leaves out time spent waiting
            # for a CPU (other processes) or for the GIL (other threads of this process).
            res["loop_cpu_ns"] = time.thread_time_ns() - c0
            if cfg["mode"] != "exit":
                finish()
            res["t_done"] = time.monotonic_ns()
            res["after"] = counters()
            extra = stats()
    except Exception as exc:  # reported in the table instead of aborting the whole benchmark
        res = {"logger": name, "error": f"{type(exc).__name__}: {exc}"}
        extra = {}
    res.update(extra)
    res["maxrss_kb"] = status_kb("VmHWM")
    if per_call is not None and "error" not in res:
        s = sorted(per_call)
        res["per_call"] = {"p50": s[n // 2], "p99": s[int(n * 0.99)], "max": s[-1], "total": sum(s)}
    with os.fdopen(result_fd, "w") as f:
        json.dump(res, f)
    if cfg["mode"] == "exit" and cfg.get("exit") == "os_exit":
        os._exit(0)


if __name__ == "__main__":
    main()
