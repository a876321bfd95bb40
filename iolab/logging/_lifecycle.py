"""Process-wide hooks: flush at exit, reset after fork, optional flush on SIGTERM, install()."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import weakref
from collections.abc import Iterable
from types import FrameType
from typing import Any

from iolab.logging.handler import BatchHandler

_live: weakref.WeakSet[BatchHandler] = weakref.WeakSet()


def register(handler: BatchHandler) -> None:
    _live.add(handler)


def unregister(handler: BatchHandler) -> None:
    _live.discard(handler)


def flush_all(timeout: float | None = None) -> bool:
    """Flush every live BatchHandler; True if all of them finished within their timeouts."""
    ok = True
    for handler in list(_live):
        try:
            ok = handler.flush(timeout) and ok
        except Exception:
            ok = False
    return ok


def _flush_at_exit() -> None:
    flush_all()


def _after_fork_in_child() -> None:
    for handler in list(_live):
        handler._after_fork_in_child()


# This module is imported after `logging`, whose own atexit hook (logging.shutdown) was registered first;
# atexit runs hooks in reverse, so ours flushes before logging.shutdown closes the handlers.
atexit.register(_flush_at_exit)
# threading's exit hooks run before non-daemon threads are joined, and also at the end of a
# multiprocessing child started by fork, which leaves through os._exit and never runs atexit.
_register_threading_atexit = getattr(threading, "_register_atexit", None)
if _register_threading_atexit is not None:
    try:
        _register_threading_atexit(_flush_at_exit)
    except RuntimeError:  # imported while the interpreter is already shutting down
        pass
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def install_sigterm_flush(timeout: float | None = None) -> bool:
    """On SIGTERM, flush every BatchHandler, then do what SIGTERM did before (chained).

    Needed because SIGTERM's default action kills the process without running atexit, and servers
    re-raise it: uvicorn catches SIGTERM, shuts down gracefully (logging as it goes), restores the
    previous handler and raises SIGTERM again. Installing this first puts the flush at the end of that.
    Only possible from the main thread; returns whether the handler is (now) installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)
    if getattr(previous, "_iolab_flush", False):
        return True

    def on_sigterm(signum: int, frame: FrameType | None) -> Any:
        flush_all(timeout)
        if callable(previous):
            return previous(signum, frame)
        if previous == signal.SIG_IGN:
            return None
        # SIG_DFL (or unknown): die of SIGTERM as the process would have, exit status included.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return None

    on_sigterm._iolab_flush = True  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, on_sigterm)
    return True


def install(
    *,
    logger: str | logging.Logger | Iterable[str | logging.Logger] | None = None,
    level: int | str | None = logging.INFO,
    stream: Any = None,
    fmt: str | None = logging.BASIC_FORMAT,
    datefmt: str | None = None,
    replace: bool = True,
    sigterm_flush: bool = True,
    defer: bool = False,
    **handler_kwargs: Any,
) -> BatchHandler:
    """One line to route a logger (default: the root logger) through a BatchHandler.

    `logger` may also be several names, e.g. ("", "uvicorn", "uvicorn.access") for a FastAPI app, which
    then share one handler and one writer thread. `replace` removes the loggers' existing handlers
    (without closing them: they may share a stream with others). `sigterm_flush` also installs
    install_sigterm_flush() (main thread only), so a server killed by SIGTERM still writes its last
    records. Returns the handler.

    defer=True returns a DeferredHandler and puts the loggers on its fast path: their calls only capture
    a tuple and the writer thread formats. It raises ValueError, changing nothing, when a logger could not
    be deferred with the stdlib's exact output (a filter, another handler its records also reach, a
    formatter it cannot render later): say why and what to change.
    """
    if defer:
        from iolab.logging._deferred import DeferredHandler
        from iolab.logging._fastpath import why_not

        handler: BatchHandler = DeferredHandler(stream if stream is not None else sys.stderr, **handler_kwargs)
    else:
        handler = BatchHandler(stream if stream is not None else sys.stderr, **handler_kwargs)
    if fmt is not None:
        handler.setFormatter(logging.Formatter(fmt, datefmt))
    if logger is None or isinstance(logger, str | logging.Logger):
        targets: list[str | logging.Logger] = [logger if logger is not None else ""]
    else:
        targets = list(logger)
    loggers = [t if isinstance(t, logging.Logger) else logging.getLogger(t or None) for t in targets]
    if isinstance(handler, DeferredHandler if defer else ()):
        # Check every logger against the handler lists install() is about to set, before changing any.
        planned: dict[logging.Logger, list[logging.Handler]] = {
            lg: [handler] if replace else [*lg.handlers, handler] for lg in loggers}
        for lg in loggers:
            reason = why_not(lg, handler, planned)
            if reason is not None:
                handler.close()
                raise ValueError(f"iolab.logging.install(defer=True): {reason}. Nothing was changed; "
                                 "remove the cause, or install without defer=True")
    for lg in loggers:
        if replace:
            for old in list(lg.handlers):
                lg.removeHandler(old)
        lg.addHandler(handler)
        if level is not None:
            lg.setLevel(level)
    if defer:
        for lg in loggers:
            reason = handler.promote(lg)  # type: ignore[attr-defined]
            if reason is not None:  # changed by another thread meanwhile: its calls take the stdlib path
                import warnings

                warnings.warn(f"iolab.logging.install(defer=True): {reason}", RuntimeWarning, stacklevel=2)
    if sigterm_flush:
        install_sigterm_flush()
    return handler
