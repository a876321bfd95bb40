"""The caller's side of defer=True: loggers whose log calls only capture a tuple, and how they stay exact.

A promoted logger gets its own `debug/info/warning/error/critical/log` (instance attributes, generated
for its handler's format, see `_TEMPLATE`). A call checks one cached decision, builds a tuple and appends
it; `Logger.exception`, `fatal` and `warn` are the stdlib's and reach these through `self.error` etc.
The decision per level lives in the logger's own `_cache` dict, under string keys the stdlib never uses,
so everything that clears that cache (`setLevel`, `logging.disable`) also makes the next call decide
again. Everything else that changes where a record goes (handlers, filters, propagate, disabled,
parent, level, on the logger or any ancestor it propagates through; the handler's level, filters and
formatter) is observed and clears those decisions too:

* every logger on the way from a promoted logger to its handler becomes a subclass of its own class
  (same name, so reprs do not change) whose `__setattr__` notices assignments to those attributes;
* their `handlers` and `filters` lists become a list subclass that notices every mutation.

A decision is only stored when nothing changed while it was computed (a generation counter), so a
concurrent change can delay the switch back to the stdlib path by one call at most, as the stdlib's own
level cache would. Anything the fast path cannot reproduce exactly goes through the stdlib's
`Logger._log` for that call (exc_info, stack_info, extra, stacklevel, an argument whose %-formatting
raises), or for the logger for good (see `why_not`).
"""

from __future__ import annotations

import datetime
import itertools
import logging
import os
import sys
import threading
import uuid
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from iolab.logging import _plan

if TYPE_CHECKING:
    from iolab.logging._deferred import DeferredHandler

# Arguments of these exact types are kept as they are and formatted by the writer: their %-formatting
# depends on nothing but the value, so it cannot change between the call and the write, nor differ
# between threads. Anything else (lists, dicts, objects, subclasses, which may override __str__) is
# rendered into the message at the call. Not here on purpose: Decimal (str() reads the thread's decimal
# context), datetime and time (a tzinfo's utcoffset() is arbitrary code). See docs/logging.md.
IMMUTABLE_TYPES: frozenset[type] = frozenset({
    str, int, float, bool, type(None), bytes, complex, uuid.UUID, datetime.date, datetime.timedelta,
})
LEVEL_METHODS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
                 "error": logging.ERROR, "critical": logging.CRITICAL}
METHODS = (*LEVEL_METHODS, "log")
# Assignments to these change where a logger's records go, or whether they are made at all.
_WATCHED = frozenset({"handlers", "filters", "propagate", "disabled", "parent", "level", "name"})
_STDLIB_BASES = (logging.Logger, logging.RootLogger)

_gen = 0  # bumped by every observed change; a decision computed across a change is not stored
_promoted: dict[logging.Logger, DeferredHandler] = {}
_installed: dict[logging.Logger, tuple[Any, ...]] = {}  # what each logger's current methods were made for
_handlers: weakref.WeakSet[DeferredHandler] = weakref.WeakSet()
_classes: dict[type, type] = {}
_serial = itertools.count(1)
# The logging module's own lock: dictConfig and logging.shutdown hold it while they close handlers (which
# demotes loggers here), and observe() needs it while it swaps a logger's lists; one lock, no ordering.
_lock: threading.RLock = logging._lock  # type: ignore[attr-defined]


def changed() -> None:
    """Something that decides where records go has changed: every promoted logger decides again."""
    global _gen
    _gen += 1
    for lg in list(_promoted):
        lg._cache.clear()  # type: ignore[attr-defined]
    for h in list(_handlers):
        h._considered.clear()


class _ObservedList(list):  # type: ignore[type-arg]
    """A logger's (or our handler's) handlers/filters list: every mutation calls changed()."""

    __slots__ = ()

    def append(self, x: Any) -> None:
        super().append(x)
        changed()

    def extend(self, xs: Any) -> None:
        super().extend(xs)
        changed()

    def insert(self, i: Any, x: Any) -> None:
        super().insert(i, x)
        changed()

    def remove(self, x: Any) -> None:
        super().remove(x)
        changed()

    def pop(self, i: Any = -1) -> Any:
        try:
            return super().pop(i)
        finally:
            changed()

    def clear(self) -> None:
        super().clear()
        changed()

    def sort(self, **kw: Any) -> None:
        super().sort(**kw)
        changed()

    def reverse(self) -> None:
        super().reverse()
        changed()

    def __setitem__(self, i: Any, x: Any) -> None:
        super().__setitem__(i, x)
        changed()

    def __delitem__(self, i: Any) -> None:
        super().__delitem__(i)
        changed()

    def __iadd__(self, xs: Any) -> _ObservedList:  # type: ignore[misc,override]
        super().__iadd__(xs)
        changed()
        return self

    def __imul__(self, n: Any) -> _ObservedList:  # type: ignore[misc,override]
        super().__imul__(n)
        changed()
        return self


def observed_list(value: Any) -> Any:
    return _ObservedList(value) if type(value) is list else value


def _observed_class(base: type) -> type:
    cls = _classes.get(base)
    if cls is not None:
        return cls
    setattr_: Any = base.__setattr__
    delattr_: Any = base.__delattr__

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if name in _WATCHED:
            if name in ("handlers", "filters"):
                value = observed_list(value)
            setattr_(self, name, value)
            changed()
        else:
            setattr_(self, name, value)

    def __delattr__(self: Any, name: str) -> None:
        delattr_(self, name)
        if name in _WATCHED:
            changed()

    cls = type(base.__name__, (base,), {
        "__setattr__": __setattr__, "__delattr__": __delattr__, "__module__": base.__module__,
        "__qualname__": base.__qualname__, "__doc__": base.__doc__, "_iolab_base": base,
    })
    _classes[base] = cls
    return cls


def observe(lg: logging.Logger) -> str | None:
    """Make changes to this logger visible (see the module docstring); a reason if that is impossible."""
    if "_iolab_base" in type(lg).__dict__:
        return None
    with _lock:  # addHandler/removeHandler hold it too
        try:
            lg.__class__ = _observed_class(type(lg))
        except TypeError as exc:
            return f"logger {lg.name!r} cannot be observed for changes ({exc})"
        d = lg.__dict__
        for k in ("handlers", "filters"):
            d[k] = observed_list(d.get(k))
    return None


def base_class(lg: logging.Logger) -> type:
    return type(lg).__dict__.get("_iolab_base", type(lg))  # type: ignore[no-any-return]


def why_not(lg: logging.Logger, h: DeferredHandler,
            planned: Mapping[logging.Logger, list[logging.Handler]] | None = None) -> str | None:
    """None when `lg`'s records can be captured for `h` with the stdlib's exact result, else why not.

    planned: handler lists to assume instead of the loggers' current ones (install() asks before it
    changes anything); without it, the loggers on the way are observed as a side effect.
    """
    return _why_not_here(lg, h) or _why_not_chain(lg, h, planned)


def _why_not_here(lg: logging.Logger, h: DeferredHandler) -> str | None:
    """Everything but the propagation chain: the handler, the logger itself, the logging module."""
    if h._closed or h._retired:
        return "the handler is closed"
    plan = h._capture
    if plan is None:
        return f"the handler's formatter cannot be rendered off the caller's thread: {h._plan_error}"
    base = base_class(lg)
    if base not in _STDLIB_BASES:
        return (f"logger {lg.name!r} is a {base.__module__}.{base.__qualname__}, which may change how records "
                "are made; only logging.Logger and the root logger are deferred")
    for attr in ("makeRecord", "_log", "handle", "callHandlers", "findCaller", "isEnabledFor", "filter"):
        if attr in lg.__dict__:
            return f"logger {lg.name!r} has its own {attr}()"
    if lg.filters:
        return f"logger {lg.name!r} has filters {lg.filters!r}, which read the LogRecord at the call"
    if h.filters:
        return f"the handler has filters {h.filters!r}, which read the LogRecord at the call"
    if logging.getLogRecordFactory() is not logging.LogRecord:
        return "a LogRecord factory is set (logging.setLogRecordFactory), which runs at the call"
    if plan.caller and logging._srcfile is None:  # type: ignore[attr-defined]
        return "logging._srcfile is None (no caller lookup), and the format prints the caller"
    if (plan.thread or plan.thread_name) and not logging.logThreads:
        return "logging.logThreads is off, and the format prints the thread"
    return None


def _why_not_chain(lg: logging.Logger, h: DeferredHandler,
                   planned: Mapping[logging.Logger, list[logging.Handler]] | None) -> str | None:
    """Logger.callHandlers' walk: the records must reach `h` exactly once and no other handler."""
    seen = 0
    c: logging.Logger | None = lg
    while c is not None:
        if planned is None:
            reason = observe(c)
            if reason is not None:
                return reason
        hs = planned.get(c, c.handlers) if planned is not None else c.handlers
        for x in hs:
            if x is h:
                seen += 1
            else:
                return (f"records of {lg.name!r} also go to {x!r} on logger {c.name!r}; deferred records "
                        "go to one handler only")
        if not c.propagate:
            break
        c = c.parent
    if seen == 0:
        return f"records of {lg.name!r} do not reach the handler"
    if seen > 1:
        return (f"records of {lg.name!r} reach the handler {seen} times (it is on the logger and on an "
                f"ancestor it propagates to), so each would be written {seen} times")
    return None


def decide(lg: logging.Logger, level: int, k: str, made_for: tuple[Any, ...]) -> int | None:
    """The fast path's answer for `level`: 1 capture; 0 not enabled (no record is made); 2 enabled, and the
    handler's level drops the record (the stdlib makes it first, which matters only for keyword
    arguments: an `extra` key clash raises); None: the stdlib path for this call.

    Stored in lg._cache[k] (except None) unless something changed meanwhile.
    """
    g = _gen
    if not lg.isEnabledFor(level):
        ok = 0
    else:
        with _lock:
            h = _promoted.get(lg)
            if h is None:
                return None
            reason = why_not(lg, h)
            if reason is not None:
                demote(lg)
                return None
            current = (h, h._capture, lg.name)
            if made_for != current:
                # Made for another formatter, name or handler (a stale reference to an old method, or the
                # current one after a change): regenerate if needed; this call takes the stdlib path.
                if _installed.get(lg) != current:
                    install_methods(lg, h)
                return None
        ok = 1 if level >= h.level else 2
    if g == _gen:
        lg._cache[k] = ok  # type: ignore[attr-defined]
    return ok


def promote(lg: logging.Logger, h: DeferredHandler) -> str | None:
    """Put `lg` on the fast path for `h`; None when done, else why it stays on the stdlib path."""
    with _lock:
        current = _promoted.get(lg)
        if current is not None and current is not h and not current._closed:
            return f"logger {lg.name!r} is already deferred to {current!r}"
        reason = why_not(lg, h)
        if reason is not None:
            demote(lg)
            return reason
        install_methods(lg, h)
    return None


def demote(lg: logging.Logger) -> None:
    """Back to the stdlib's methods (the logger stays observed: harmless, and its lists stay ours)."""
    with _lock:
        _installed.pop(lg, None)
        if _promoted.pop(lg, None) is not None:
            for name in METHODS:
                lg.__dict__.pop(name, None)
            lg._cache.clear()  # type: ignore[attr-defined]


def demote_all(h: DeferredHandler) -> None:
    with _lock:
        for lg in [lg for lg, owner in _promoted.items() if owner is h]:
            demote(lg)


def promoted(h: DeferredHandler) -> list[str]:
    return sorted(lg.name for lg, owner in list(_promoted.items()) if owner is h)


# ------------------------------------------------------------------------------- generated methods

def render(msg: Any, args: tuple[Any, ...]) -> str:
    """LogRecord.getMessage() at the call: for arguments that might change before the writer runs."""
    msg = str(msg)
    if args:
        if len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
            return msg % args[0]
        msg = msg % args
    return msg


def quiet(kw: dict[str, Any], plan: _plan.Plan) -> bool:
    """True when these keyword arguments cannot change the line (exc_info and stack_info false, extra
    with no key the format reads, stacklevel 1 or not read); an `extra` key clash raises KeyError here
    with the stdlib's message, as Logger.makeRecord would."""
    for name, value in kw.items():
        if name == "extra":
            if value is None:
                continue
            if plan.defaults:  # an extra key may stand in for a default the format prints
                return False
            for key in value:
                if key in _plan.RECORD_FIELDS:
                    raise KeyError("Attempt to overwrite %r in LogRecord" % key)  # noqa: UP031  # the stdlib's
        elif name in ("exc_info", "stack_info"):
            if value:
                return False
        elif name == "stacklevel":
            if type(value) is not int or (value != 1 and plan.caller):
                return False
        else:
            return False  # an unknown keyword: the stdlib raises TypeError
    return True


def _is_internal_frame(frame: Any) -> bool:
    """logging._is_internal_frame, for the Python versions that predate it (findCaller skipped only
    logging's own frames then)."""
    return os.path.normcase(frame.f_code.co_filename) == logging._srcfile  # type: ignore[attr-defined]


def _walk(f: Any) -> Any:
    """Logger.findCaller's walk for stacklevel=1, from the frame that called the fast method."""
    internal = getattr(logging, "_is_internal_frame", _is_internal_frame)
    while internal(f):
        nf = f.f_back
        if nf is None:
            break
        f = nf
    return f


# One template for every method; {level} is a constant, or `level` for log(). The fast path: the cached
# decision, no keyword arguments, a str message, immutable arguments (else the message is rendered here).
# Keyword arguments that can change the line take the stdlib's own path for the call (`stacklevel + 1`
# skips this frame, which findCaller would otherwise count as the caller).
_TEMPLATE = '''
def {name}({params}msg, *args, **kw):
{level_check}    try:
        ok = cache[{key}]
    except KeyError:
        ok = decide(lg, {level}, {key}, made_for)
    if ok == 1:
        if kw and not quiet(kw, plan):
            kw["stacklevel"] = kw.get("stacklevel", 1) + 1
            return _log(lg, {level}, msg, args, **kw)
        # One argument is stored as itself: the *args tuple then dies here, and each buffered record
        # keeps one object for the garbage collector to visit instead of two (measured: ~0.1 us/record).
        a = args
        if type(msg) is str:
            if not args:
                keep = True
            elif len(args) == 1:
                a = args[0]
                keep = type(a) in imm_types
            else:
                keep = immutable(map(type, args))
        else:
            keep = False
        if not keep:
            try:
                msg = render(msg, args)
            except Exception:  # let the stdlib meet the same error, and report it as it does
                kw["stacklevel"] = kw.get("stacklevel", 1) + 1
                return _log(lg, {level}, msg, args, **kw)
            a = ()
{caller}        rec = (plan_id, name, {level}, msg, a{extras})
        append(rec)
        n = h._in + 1
        h._in = n
        if n > h._limit:
            h._slow(rec)
    elif ok is None or (ok == 2 and kw):
        kw["stacklevel"] = kw.get("stacklevel", 1) + 1
        return _log(lg, {level}, msg, args, **kw)
'''
_LOG_LEVEL_CHECK = '''    if not isinstance(level, int):
        if _logging.raiseExceptions:
            raise TypeError("level must be an integer")
        return
    k = keys.get(level) or key(level)
'''
_CALLER = '''        f = getframe(1)
        co = f.f_code
        fn = co.co_filename
        if fn == srcfile or "_bootstrap" in fn:
            f = walk(f)
            co = f.f_code
            fn = co.co_filename
'''


def install_methods(lg: logging.Logger, h: DeferredHandler) -> None:
    """Generate lg's fast methods for h's current plan and set them on the instance. _lock held."""
    plan = h._capture
    assert plan is not None
    serial = next(_serial)
    keys: dict[int, str] = {}

    def key(level: int) -> str:
        # Per generation of methods, so a stale method never trusts a decision made for newer ones.
        k = keys.get(level)
        if k is None:
            k = keys[level] = f"iolab.logging:{serial}:{level}"
        return k

    extras = {"time": "now()", "thread": "ident()", "threadName": "thread_name()",
              "processName": "process_name()", "taskName": "task_name()",
              "pathname": "fn", "lineno": "f.f_lineno", "funcName": "co.co_name"}
    extra_src = "".join(", " + extras[e] for e in plan.extras)
    env: dict[str, Any] = {
        "cache": lg._cache, "lg": lg, "h": h, "append": h._buf.append, "decide": decide, "key": key,  # type: ignore[attr-defined]
        "keys": keys, "made_for": (h, plan, lg.name), "plan_id": plan.id, "plan": plan, "quiet": quiet, "name": lg.name,
        "_log": logging.Logger._log, "_logging": logging, "immutable": IMMUTABLE_TYPES.issuperset,
        "imm_types": IMMUTABLE_TYPES,
        "render": render, "now": _plan.now, "ident": threading.get_ident, "thread_name": _plan.thread_name,
        "process_name": _plan.process_name, "task_name": _plan.task_name, "getframe": sys._getframe,
        "srcfile": logging._srcfile, "walk": _walk,  # type: ignore[attr-defined]
    }
    src = []
    for meth, level in LEVEL_METHODS.items():
        env[f"k_{meth}"] = key(level)
        src.append(_TEMPLATE.format(name=meth, params="", level_check="", key=f"k_{meth}", level=level,
                                    caller=_CALLER if plan.caller else "", extras=extra_src))
    src.append(_TEMPLATE.format(name="log", params="level, ", level_check=_LOG_LEVEL_CHECK, key="k",
                                level="level", caller=_CALLER if plan.caller else "", extras=extra_src))
    exec(compile("".join(src), f"<iolab.logging fast path for {lg.name!r}>", "exec"), env)
    for meth in METHODS:
        lg.__dict__[meth] = env[meth]
    lg._cache.clear()  # type: ignore[attr-defined]
    _promoted[lg] = h
    _installed[lg] = (h, plan, lg.name)
