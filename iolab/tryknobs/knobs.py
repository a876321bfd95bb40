"""The --try knobs, applied inside the server process (stdlib only; loaded by boot/sitecustomize.py).

IOLAB_TRY holds the knobs as JSON, e.g. {"logging": "batch", "access-log": "off"}; IOLAB_TRY_REPORT a
directory where each process (gunicorn's workers too) writes ``<pid>.json``: what each knob found and did,
so iolab can say "logging=off did nothing: no logging handler was configured" instead of a silent no-op.

Logging is configured after start-up (uvicorn's dictConfig, the app's basicConfig in a lifespan handler or
at its first request), so the logging knobs are applied again after every dictConfig, fileConfig,
basicConfig and Logger.addHandler call, never only once at start-up.
"""

from __future__ import annotations

import atexit
import builtins
import io
import json
import logging
import logging.config
import logging.handlers
import os
import queue
import sys
import threading
from typing import Any

# The servers' access loggers: governed by the access-log knob, left alone by the logging knob.
ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access", "hypercorn.access")
_MARK = "_iolab_try"  # set on every handler this module installs, so a second pass leaves them be

_knobs: dict[str, str] = {}
_report: dict[str, dict[str, Any]] = {}
_report_dir: str | None = None
_busy = threading.local()
_listeners: list[tuple[logging.handlers.QueueHandler, logging.handlers.QueueListener]] = []


def _write_report() -> None:
    if not _report_dir:
        return
    path = os.path.join(_report_dir, f"{os.getpid()}.json")
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump({"pid": os.getpid(), "knobs": _knobs, "applied": _report}, fh)
        os.replace(path + ".tmp", path)
    except OSError:
        pass  # the report is a courtesy; the knob itself is applied


def _note(knob: str, **facts: Any) -> None:
    entry = _report.setdefault(knob, {"value": _knobs.get(knob)})
    for key, value in facts.items():
        if isinstance(value, int) and not isinstance(value, bool):
            entry[key] = entry.get(key, 0) + value
        elif isinstance(value, list):
            entry[key] = sorted(set(entry.get(key, [])) | set(value))
        else:
            entry[key] = value
    _write_report()


# ------------------------------------------------------------------------------------------ logging


def _loggers() -> list[tuple[str, logging.Logger]]:
    found: list[tuple[str, logging.Logger]] = [("root", logging.getLogger())]
    for name, lg in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(lg, logging.Logger):
            found.append((name, lg))
    return found


def _stream_of(h: logging.Handler) -> Any:
    return getattr(h, "stream", None)


def _like(new: logging.Handler, old: logging.Handler) -> logging.Handler:
    new.setLevel(old.level)
    new.setFormatter(old.formatter)
    for f in old.filters:
        new.addFilter(f)
    setattr(new, _MARK, True)
    return new


def _batch_handler(stream: Any) -> logging.Handler:
    try:
        from iolab.logging import BatchHandler
    except ImportError:  # a --cmd server in another environment: iolab.logging imports nothing of the lab
        sys.path.append(os.environ.get("IOLAB_TRY_IOLAB_PATH", ""))
        from iolab.logging import BatchHandler
    handler: logging.Handler = BatchHandler(stream)
    return handler


def _replacement(mode: str, old: list[logging.Handler]) -> tuple[list[logging.Handler], int]:
    """(the handlers that take the place of ``old``, how many of ``old`` had no stream to keep)."""
    if mode == "off":
        null = logging.NullHandler()
        setattr(null, _MARK, True)
        return [null], 0
    if mode == "queue":
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        qh = logging.handlers.QueueHandler(q)
        setattr(qh, _MARK, True)
        listener = logging.handlers.QueueListener(q, *old, respect_handler_level=True)
        listener.start()
        _listeners.append((qh, listener))
        return [qh], 0
    out: list[logging.Handler] = []
    kept = 0
    for h in old:
        stream = _stream_of(h)
        if stream is None:  # a socket, syslog or HTTP handler: no stream to write the same bytes to
            out.append(h)
            kept += 1
        elif mode == "stream":
            out.append(_like(logging.StreamHandler(stream), h))
        else:
            out.append(_like(_batch_handler(stream), h))
    return out, kept


def apply_logging() -> None:
    mode = _knobs.get("logging", "as-is")
    if mode == "as-is":
        return
    replaced, loggers, kept = 0, [], 0
    for name, lg in _loggers():
        if name in ACCESS_LOGGERS:
            continue
        theirs = [h for h in lg.handlers if not getattr(h, _MARK, False)]
        if not theirs:
            continue
        ours = [h for h in lg.handlers if getattr(h, _MARK, False)]
        new, k = _replacement(mode, theirs)
        lg.handlers = ours + new
        replaced += len(theirs) - k
        kept += k
        loggers.append(name)
    if replaced or kept or "logging" not in _report:
        _note("logging", handlers_replaced=replaced, handlers_kept=kept, loggers=loggers)


def apply_access_log() -> None:
    if _knobs.get("access-log", "on") != "off":
        return
    names = []
    for name in ACCESS_LOGGERS:
        lg = logging.getLogger(name)
        if lg.handlers:
            names.append(name)
        # No handler and no propagation: uvicorn then skips the access line altogether (hasHandlers()),
        # gunicorn's call returns at once (disabled).
        lg.handlers = []
        lg.propagate = False
        lg.disabled = True
    _note("access-log", loggers=names)


def _reapply() -> None:
    if getattr(_busy, "on", False):
        return
    _busy.on = True
    try:
        apply_logging()
        apply_access_log()
    finally:
        _busy.on = False


def _after(fn: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            _reapply()

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    wrapper.__name__ = getattr(fn, "__name__", "wrapper")
    return wrapper


def _hook_logging_config() -> None:
    logging.config.dictConfig = _after(logging.config.dictConfig)
    logging.config.fileConfig = _after(logging.config.fileConfig)
    logging.basicConfig = _after(logging.basicConfig)
    add = logging.Logger.addHandler

    def addHandler(self: logging.Logger, hdlr: logging.Handler) -> None:  # noqa: N802 - the stdlib's name
        add(self, hdlr)
        if not getattr(hdlr, _MARK, False):
            _reapply()

    logging.Logger.addHandler = addHandler  # type: ignore[method-assign]


def _restart_listeners() -> None:
    """A forked worker (gunicorn) inherits the queue but not the listener's thread: a new queue and thread of
    its own. Not the old queue: its lock may be held by the parent's listener at the fork, and the records
    in it are the parent's to write (the child would write them twice)."""
    for qh, listener in _listeners:
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        qh.queue = q
        listener.queue = q
        listener._thread = None  # type: ignore[attr-defined]
        listener.start()


def _stop_listeners() -> None:
    for _, listener in _listeners:
        try:
            listener.stop()
        except Exception:  # noqa: BLE001 - at exit, in someone else's process
            pass


# ------------------------------------------------------------------------------------------ print


def apply_print() -> None:
    if _knobs.get("print", "on") != "off":
        return
    called = {"n": 0}

    def print(*args: Any, **kwargs: Any) -> None:  # noqa: A001 - it stands in for the builtin
        if called["n"] == 0:
            called["n"] = 1
            _note("print", called=True)

    builtins.print = print
    _note("print", replaced=True, called=False)


# ------------------------------------------------------------------------------------------ buffering


def _describe(stream: Any) -> str:
    if getattr(stream, "write_through", False):
        return "unbuffered"
    return "line" if getattr(stream, "line_buffering", False) else "block"


def _reopen(fd: int, old: Any, mode: str) -> Any:
    raw = io.FileIO(fd, "wb", closefd=False)
    binary: Any = raw if mode == "unbuffered" else io.BufferedWriter(raw)
    return io.TextIOWrapper(binary, encoding=getattr(old, "encoding", None) or "utf-8",
                            errors=getattr(old, "errors", None) or "backslashreplace",
                            line_buffering=mode == "line", write_through=mode == "unbuffered")


def apply_buffering() -> None:
    mode = _knobs.get("buffering", "as-is")
    if mode == "as-is":
        return
    before = {"stdout": _describe(sys.stdout), "stderr": _describe(sys.stderr)}
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        if old is None:
            continue
        try:
            old.flush()
            new = _reopen(fd, old, mode)
        except (OSError, ValueError):
            continue
        setattr(sys, name, new)
        atexit.register(new.flush)
    _note("buffering", before=before, after={"stdout": _describe(sys.stdout), "stderr": _describe(sys.stderr)})


# ------------------------------------------------------------------------------------------ entry


def install(knobs: dict[str, str], report_dir: str | None = None) -> None:
    global _report_dir
    _knobs.clear()
    _knobs.update(knobs)
    _report_dir = report_dir
    apply_buffering()  # first: the logging handlers created later pick up the new streams
    apply_print()
    _hook_logging_config()
    _reapply()
    os.register_at_fork(after_in_child=_restart_listeners)
    atexit.register(_stop_listeners)


def install_from_env() -> None:
    text = os.environ.get("IOLAB_TRY")
    if not text:
        return
    knobs = json.loads(text)
    if isinstance(knobs, dict):
        install({str(k): str(v) for k, v in knobs.items()}, os.environ.get("IOLAB_TRY_REPORT") or None)
