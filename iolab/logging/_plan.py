"""What a Formatter needs captured at the call, and how the writer turns a captured record into its line.

A captured record is a tuple (plan id, logger name, level, msg, args, *extras), where args is the call's
argument itself when there was exactly one (never a tuple or a mapping then: those are rendered at the
call), else the tuple of arguments, () for none; the plan decides which
extras follow, in this order: time, thread ident, thread name, process name, task name (3.12+), and the
caller's (pathname, lineno, funcName). Nothing the format does not use is captured, because each costs
the caller: see CAPTURE_COST_NOTE in docs/logging.md.

For the exact stdlib `Formatter` with %-style, the format is compiled into one positional %-format and
a generated function that fills it straight from the tuple: no LogRecord, no dict. The other styles
(`{`, `$`) rebuild a LogRecord from the tuple on the writer and call `Formatter.format`, which is the
stdlib's own code. Both give the stdlib's bytes; tests/test_logging_defer_identity.py holds them to it.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import string
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# LogRecord takes time.time() up to 3.12 and time.time_ns() from 3.13 (gh-102402); msecs and
# relativeCreated are derived from it differently. Capture what the running stdlib captures.
NS_CLOCK = sys.version_info >= (3, 13)
now: Callable[[], float | int] = time.time_ns if NS_CLOCK else time.time

# Fields of a LogRecord and what capturing them costs the caller. Fields not listed here (msg, args,
# exc_info, exc_text, stack_info) describe the call itself; a format that prints them is not deferred.
TIME_FIELDS = frozenset({"asctime", "created", "msecs", "relativeCreated"})
CALLER_FIELDS = frozenset({"pathname", "filename", "module", "lineno", "funcName"})
FREE_FIELDS = frozenset({"name", "levelno", "levelname", "message", "process"})
KNOWN_FIELDS = TIME_FIELDS | CALLER_FIELDS | FREE_FIELDS | {"thread", "threadName", "processName", "taskName"}
_TEMPLATE = logging.LogRecord("", logging.INFO, "", 0, "", (), None)
RECORD_FIELDS = frozenset(_TEMPLATE.__dict__) | {"message", "asctime"}

# %(name)flags width .precision conversion, or a literal %%; exactly what PercentStyle accepts.
_PERCENT_FIELD = re.compile(r"%%|%\((\w+)\)([#0+ -]*(?:\d+)?(?:\.\d+)?[diouxefgcrsa%])", re.I)

_ids = itertools.count(1)


class Mixed(Exception):
    """A batch holds something other than records of one plan: render it item by item."""


def mixed(item: Any) -> str:
    raise Mixed


class NotDeferrable(ValueError):
    """The formatter cannot be rendered off the caller's thread with the stdlib's exact output."""


@dataclass(eq=False)
class Plan:
    id: int
    formatter: logging.Formatter
    time: bool = False
    thread: bool = False
    thread_name: bool = False
    process_name: bool = False
    task_name: bool = False
    caller: bool = False
    defaults: frozenset[str] = frozenset()  # fields the format takes from the formatter's defaults
    line: Callable[[tuple[Any, ...]], str] = field(default=lambda r: "", repr=False)
    # Every item of a batch rendered at once; raises Mixed when an item is not a record of this plan.
    lines: Callable[[list[Any]], list[str]] | None = field(default=None, repr=False)
    source: str = field(default="", repr=False)  # the generated code, for reading and debugging

    @property
    def extras(self) -> tuple[str, ...]:
        """The extras' names, in tuple order after (plan id, name, level, msg, args)."""
        names = [("time", self.time), ("thread", self.thread), ("threadName", self.thread_name),
                 ("processName", self.process_name), ("taskName", self.task_name)]
        out = tuple(n for n, on in names if on)
        return out + (("pathname", "lineno", "funcName") if self.caller else ())

    def record(self, r: tuple[Any, ...]) -> logging.LogRecord:
        """The LogRecord the stdlib would have made for this call (the writer's general path)."""
        rec = logging.LogRecord.__new__(logging.LogRecord)
        d = rec.__dict__
        d.update(_TEMPLATE.__dict__)
        level, msg, args = r[2], r[3], r[4]
        args = args if type(args) is tuple else (args,)
        d.update(name=r[1], msg=msg, args=args, levelno=level, levelname=logging.getLevelName(level),
                 process=os.getpid() if logging.logProcesses else None)
        values = dict(zip(self.extras, r[5:], strict=True))
        t = values.pop("time", None)
        if t is not None:
            d.update(created=created(t), msecs=msecs(t), relativeCreated=relative(t))
        if "pathname" in values:
            d["filename"], d["module"] = _file_module(values["pathname"])
        d.update(values)
        return rec


def created(t: float | int) -> float:
    return t / 1e9 if NS_CLOCK else float(t)


def msecs(t: float | int) -> float:
    if NS_CLOCK:
        return (int(t) % 1_000_000_000) // 1_000_000 + 0.0
    return int((t - int(t)) * 1000) + 0.0  # LogRecord.__init__ of 3.11/3.12, to the bit


def relative(t: float | int) -> float:
    start = logging._startTime  # type: ignore[attr-defined]
    return (t - start) / 1e6 if NS_CLOCK else (t - start) * 1000


def _file_module(pathname: str) -> tuple[str, str]:
    try:
        filename = os.path.basename(pathname)
        return filename, os.path.splitext(filename)[0]
    except (TypeError, ValueError, AttributeError):
        return pathname, "Unknown module"


def compile_plan(formatter: logging.Formatter | None) -> Plan:
    """The plan for this handler's formatter; NotDeferrable says why not."""
    f = formatter if formatter is not None else logging._defaultFormatter  # type: ignore[attr-defined]
    if type(f) is not logging.Formatter:
        raise NotDeferrable(f"its formatter is a {type(f).__module__}.{type(f).__qualname__}, not the stdlib "
                            "logging.Formatter: a subclass may read more than the record (contextvars, the "
                            "clock, the thread) when it formats")
    for attr in ("format", "formatMessage", "formatTime", "formatException", "formatStack", "usesTime"):
        if attr in vars(f):
            raise NotDeferrable(f"its formatter's {attr}() is replaced on the instance")
    style = f._style
    fmt = style._fmt
    if not isinstance(fmt, str):
        raise NotDeferrable(f"its format is not a string: {fmt!r}")
    if type(style) is logging.PercentStyle:
        fields, positional = _parse_percent(fmt)
    elif type(style) is logging.StrFormatStyle:
        fields, positional = _parse_brace(fmt), None
    elif type(style) is logging.StringTemplateStyle:
        fields, positional = _parse_dollar(fmt), None
    else:
        raise NotDeferrable(f"its format style is a {type(style).__qualname__}")
    defaults = getattr(style, "_defaults", None) or {}
    for k in fields:
        if k in ("msg", "args", "exc_info", "exc_text", "stack_info"):
            raise NotDeferrable(f"its format prints the record's {k!r}, which is the call's own objects "
                                "(mutable arguments are rendered at the call, so that would differ)")
        if k not in KNOWN_FIELDS and k not in defaults and k in RECORD_FIELDS:
            raise NotDeferrable(f"its format uses the record's {k!r}, a LogRecord field this Python has and "
                                "iolab does not capture")
        if k not in RECORD_FIELDS and k not in defaults:
            raise NotDeferrable(f"its format uses {k!r}, which only `extra=` can supply (every call without "
                                "it fails to format)")
    used = set(fields)
    plan = Plan(next(_ids), f, time=bool(used & TIME_FIELDS), thread="thread" in used,
                thread_name="threadName" in used, process_name="processName" in used,
                task_name="taskName" in used and "taskName" in _TEMPLATE.__dict__,
                caller=bool(used & CALLER_FIELDS), defaults=frozenset(used - RECORD_FIELDS))
    if positional is None:
        def general(r: tuple[Any, ...], f: logging.Formatter = f, record: Callable[..., Any] = plan.record) -> str:
            return f.format(record(r))

        def general_lines(items: list[Any], pid: int = plan.id) -> list[str]:
            return [general(r) if type(r) is tuple and r[0] == pid else mixed(r) for r in items]
        plan.line, plan.lines = general, general_lines
    else:
        plan.line = _generate_percent(plan, f, positional, fields, defaults)
    return plan


def _parse_percent(fmt: str) -> tuple[list[str], str]:
    """Fields in order of use, and the format rewritten with positional conversions."""
    fields: list[str] = []
    out: list[str] = []
    pos = 0
    for m in _PERCENT_FIELD.finditer(fmt):
        literal = fmt[pos:m.start()]
        if "%" in literal:
            raise NotDeferrable(f"its format has a % that is not a %(field) conversion: {fmt!r}")
        out.append(literal)
        if m.group(0) == "%%":
            out.append("%%")
        elif m.group(2).endswith("%"):
            raise NotDeferrable(f"its format has a %(field)% conversion: {fmt!r}")
        else:
            fields.append(m.group(1))
            out.append("%" + m.group(2))
        pos = m.end()
    if "%" in fmt[pos:]:
        raise NotDeferrable(f"its format has a % that is not a %(field) conversion: {fmt!r}")
    out.append(fmt[pos:])
    return fields, "".join(out)


def _parse_brace(fmt: str) -> list[str]:
    """The record fields a {-style format reads (the name before any .attribute or [key])."""
    fields: list[str] = []
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise NotDeferrable(f"its {{-style format does not parse: {exc}") from None
    for _literal, name, spec, _conversion in parsed:
        if name is None:
            continue
        root = re.match(r"\w*", name).group(0)  # type: ignore[union-attr]
        if not root or root.isdigit():
            raise NotDeferrable(f"its {{-style format has a positional field: {fmt!r}")
        fields.append(root)
        if spec and "{" in spec:
            fields += _parse_brace(spec)
    return fields


def _parse_dollar(fmt: str) -> list[str]:
    """The record fields a $-style format reads."""
    fields: list[str] = []
    for m in string.Template.pattern.finditer(fmt):
        if m.group("invalid") is not None:
            raise NotDeferrable(f"its $-style format has an invalid placeholder: {fmt!r}")
        name = m.group("named") or m.group("braced")
        if name:
            fields.append(name)
    return fields


def _date_part(f: logging.Formatter) -> tuple[Callable[[int, float], str], bool]:
    """Formatter.formatTime's strftime part for a time, and whether it may be cached per whole second.

    Caching is exact for time.localtime and time.gmtime, whose result depends on the whole seconds only;
    any other converter is called for every record, as the stdlib does.
    """
    conv, datefmt = f.converter, f.datefmt
    pattern = datefmt if datefmt else f.default_time_format
    cache: dict[int, str] = {}
    if conv not in (time.localtime, time.gmtime):
        return (lambda sec, c: time.strftime(pattern, conv(c))), False

    def fill(sec: int, c: float) -> str:
        if len(cache) > 64:
            cache.clear()
        s = cache[sec] = time.strftime(pattern, conv(c))
        return s
    fill.cache = cache  # type: ignore[attr-defined]
    return fill, True


# The per-record statements for each field group, in LogRecord.__init__'s and formatTime's arithmetic
# (3.13 captures nanoseconds). `t` is the captured time; `c` is record.created.
_TIME_311 = {"c": "c = t", "ms": "ms = int((t - int(t)) * 1000) + 0.0", "rel": "rel = (t - start) * 1000"}
_TIME_313 = {"c": "c = t / 1e9", "ms": "ms = (t % 1_000_000_000) // 1_000_000 + 0.0",
             "rel": "rel = (t - start) / 1e6"}


def _statements(used: set[str], idx: dict[str, int], tm: dict[str, str], cached: bool,
                f: logging.Formatter) -> tuple[list[str], list[str]]:
    """The generated code's per-batch and per-record statements for the fields the format uses."""
    batch: list[str] = []
    pre: list[str] = []
    if "process" in used:
        batch.append("pid = _getpid() if _logging.logProcesses else None")
    if "relativeCreated" in used:
        batch.append("start = _logging._startTime")
    if used & TIME_FIELDS:
        pre.append(f"t = r[{idx['time']}]")
        if used & {"asctime", "created"}:
            pre.append(tm["c"])
        if used & {"asctime", "msecs"}:
            pre.append(tm["ms"])
        if "relativeCreated" in used:
            pre.append(tm["rel"])
        if "asctime" in used:
            pre.append("sec = int(c)")
            pre.append("ds = _dates.get(sec) if _cached else None" if cached else "ds = None")
            pre.append("if ds is None: ds = _date_fill(sec, c)")
            pre.append("asc = _dmf % (ds, ms)" if not f.datefmt and f.default_msec_format else "asc = ds")
    if "levelname" in used:
        pre.append("ln = _lvl.get(r[2])")
        pre.append("if ln is None: ln = _levelname(r[2])")
    if used & {"filename", "module"}:
        pre.append(f"pn = r[{idx['pathname']}]")
        pre.append("fm = _fm.get(pn)")
        pre.append("if fm is None:\n            if len(_fm) > 1024: _fm.clear()\n"
                   "            fm = _fm[pn] = _file_module(pn)")
    if "message" in used:
        pre.append("m = r[3]")
        pre.append("a = r[4]")
        pre.append("if a != (): m = m % a")
    return batch, pre


def _generate_percent(plan: Plan, f: logging.Formatter, positional: str, fields: list[str],
                      defaults: dict[str, Any]) -> Callable[[tuple[Any, ...]], str]:
    """Generate `lines(items)` and `line(r)`: formatted text of captured records, as Formatter.format.

    Per batch: the pid, the start time. Per second: the strftime part of asctime. Per pathname:
    filename and module. Per record: the rest, in straight-line code.
    """
    idx = {name: 5 + i for i, name in enumerate(plan.extras)}
    tm = _TIME_313 if NS_CLOCK else _TIME_311
    date_fill, cached = _date_part(f)
    env: dict[str, Any] = {"_levelname": logging.getLevelName, "_lvl": logging._levelToName,  # type: ignore[attr-defined]
                           "_date_fill": date_fill, "_dates": getattr(date_fill, "cache", {}),
                           "_dmf": f.default_msec_format, "_fm": {}, "_file_module": _file_module,
                           "_getpid": os.getpid, "_logging": logging, "_defaults": defaults, "_mixed": mixed}
    used = set(fields)
    batch, pre = _statements(used, idx, tm, cached, f)
    env["_cached"] = cached
    exprs: list[str] = []
    simple = {"message": "m", "name": "r[1]", "levelno": "r[2]", "levelname": "ln", "asctime": "asc",
              "created": "c", "msecs": "ms", "relativeCreated": "rel", "process": "pid",
              "filename": "fm[0]", "module": "fm[1]"}
    for k in fields:
        if k in simple:
            exprs.append(simple[k])
        elif k in idx:  # thread, threadName, processName, taskName, pathname, lineno, funcName
            exprs.append(f"r[{idx[k]}]")
        else:  # from the formatter's defaults (record fields win over defaults, as in PercentStyle)
            exprs.append(f"_defaults[{k!r}]")
    if not fields:
        body = repr(positional % ())
    elif positional == "%s" and fields == ["message"]:
        body = "m"  # "%(message)s", the default: the message is the line
    else:
        body = f"{positional!r} % ({', '.join(exprs)},)"
    indent = "\n        "
    src = ("def lines(items):\n"
           + "".join(f"    {b}\n" for b in batch)
           + "    out = []\n    add = out.append\n"
           + "    for r in items:\n"
           + f"        if type(r) is not tuple or r[0] != {plan.id}: _mixed(r)\n"
           + "".join(f"        {st}\n" for st in pre)
           + f"        add({body})\n"
           + "    return out\n"
           + "def line(r):\n    return lines((r,))[0]\n")
    del indent
    exec(compile(src, f"<iolab.logging plan {plan.id}: {positional!r}>", "exec"), env)
    plan.lines = env["lines"]
    plan.source = src
    line: Callable[[tuple[Any, ...]], str] = env["line"]
    return line


def thread_name() -> str | None:
    return threading.current_thread().name


def process_name() -> str | None:
    """LogRecord's processName, as LogRecord.__init__ finds it."""
    if not logging.logMultiprocessing:
        return None
    mp = sys.modules.get("multiprocessing")
    if mp is not None:
        try:
            return mp.current_process().name  # type: ignore[no-any-return]
        except Exception:
            pass
    return "MainProcess"


def task_name() -> str | None:
    """LogRecord's taskName (Python 3.12+), as LogRecord.__init__ finds it."""
    if not getattr(logging, "logAsyncioTasks", True):
        return None
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        task = asyncio.current_task()
        return task.get_name() if task is not None else None
    except Exception:
        return None
