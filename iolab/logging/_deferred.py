"""DeferredHandler (`BatchHandler(defer=True)`): the caller captures a tuple; the writer formats in batches.

The buffer, budget, overflow policies, writer thread, flushes and fork handling are BatchHandler's; the
unit of the budget is the record instead of the byte (see "units of the budget" in handler.py). What is
different:

* Loggers whose records reach this handler, and only it, are *promoted* (_fastpath.py): their log
  methods append a tuple of what the format needs, and nothing else happens on the caller's thread.
  `install(defer=True)` promotes the loggers it is given; any other logger is promoted by the first
  record it sends here through the stdlib path (so `dictConfig` and `getLogger(__name__)` loggers are
  covered too), if it qualifies (see `_fastpath.why_not`).
* Records that arrive the stdlib way (`handle()`: a logger that does not qualify, or a call the fast
  path hands back, e.g. with exc_info) are formatted on the caller's thread as BatchHandler does, and
  go into the same buffer as bytes, so the order of records is kept.
* The writer renders tuples with the compiled plan (_plan.py) of the formatter they were captured for.
"""

from __future__ import annotations

import logging
from typing import Any

from iolab.logging import _fastpath, _plan
from iolab.logging.handler import BatchHandler


class DeferredHandler(BatchHandler):
    """A BatchHandler whose loggers leave formatting to the writer thread (see docs/logging.md).

    max_records: the memory budget, in records captured or formatted and not yet written (the batch
        being written included); each holds a small tuple plus the call's immutable arguments.
    batch_records: once this many are waiting, the writer is woken without waiting for the deadline.
    The other parameters are BatchHandler's; max_bytes/batch_bytes do not apply.
    """

    _units_are_bytes = False
    _unit_name = "record"

    def __init__(
        self,
        stream: Any = None,
        *,
        defer: bool = True,
        max_records: int = 32768,
        batch_records: int = 4096,
        **kwargs: Any,
    ) -> None:
        if not defer:
            raise ValueError("DeferredHandler always defers; use BatchHandler for defer=False")
        for name in ("max_bytes", "batch_bytes"):
            if name in kwargs:
                raise TypeError(f"{name} does not apply with defer=True (records are buffered unformatted): "
                                f"use max_records / batch_records")
        if max_records <= 0 or batch_records <= 0:
            raise ValueError("max_records and batch_records must be positive")
        self.max_records = int(max_records)
        self.batch_records = int(batch_records)
        self._retired = False
        self._considered: set[str] = set()
        self._plans: dict[int, _plan.Plan] = {}
        self._capture: _plan.Plan | None = None
        self._plan_error = "no formatter compiled yet"
        self._deferred_records = 0  # rendered by the writer (written, unless the sink failed)
        self._formatted_here = 0  # formatted on the caller's thread (the stdlib path)
        super().__init__(stream, **kwargs)  # sets formatter (None: the default's plan), level, filters
        _fastpath._handlers.add(self)

    # -------------------------------------------------------------- what decides where records go
    # level, filters and formatter decide whether a promoted logger may capture; every change to them
    # makes the promoted loggers decide again (properties, so the hot path's own attributes stay plain).
    @property  # type: ignore[override]
    def level(self) -> int:
        return self._level

    @level.setter
    def level(self, value: int) -> None:
        self._level = value
        _fastpath.changed()

    @property  # type: ignore[override]
    def filters(self) -> list[Any]:
        return self._filters

    @filters.setter
    def filters(self, value: list[Any]) -> None:
        self._filters = _fastpath.observed_list(value)
        _fastpath.changed()

    @property  # type: ignore[override]
    def formatter(self) -> logging.Formatter | None:
        return self._formatter

    @formatter.setter
    def formatter(self, value: logging.Formatter | None) -> None:
        self._formatter = value
        try:
            plan: _plan.Plan | None = _plan.compile_plan(value)
        except _plan.NotDeferrable as exc:
            plan, self._plan_error = None, str(exc)
        if plan is not None:
            self._plans[plan.id] = plan  # kept: records captured for an older formatter still use it
        self._capture = plan
        _fastpath.changed()

    @property
    def _max_units(self) -> int:
        return self.max_records

    @property
    def _batch_units(self) -> int:
        return self.batch_records

    def _size(self, item: Any) -> int:
        return 1 if item else 0  # a record (tuple or bytes) or a notice; b"" is a blanked slot

    def _reset_state(self) -> None:
        # The promoted loggers' methods hold `_buf.append`: keep the same list, emptied (a forked child
        # starts empty; the parent's writer writes what was captured before the fork).
        buf = self.__dict__.get("_buf")
        super()._reset_state()
        if buf is not None:
            buf.clear()
            self._buf = buf

    # ------------------------------------------------------------------ the stdlib path
    def handle(self, record: logging.LogRecord) -> Any:
        """A LogRecord the stdlib made: promote its logger if it qualifies, and format this one here."""
        name = record.name
        if name not in self._considered:
            self._consider(name)
        if self.filters:
            rv = self.filter(record)
            if not rv:
                return rv
            if isinstance(rv, logging.LogRecord):
                record = rv
        self._append_formatted(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self._append_formatted(record)

    def _append_formatted(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record) + self.terminator
            try:
                data = msg.encode() if self._utf8 else msg.encode(self.encoding, self.errors)
            except UnicodeEncodeError:
                data = msg.encode(self.encoding, self.errors)
            self._formatted_here += 1
            self._buf.append(data)
            n = self._in + 1
            self._in = n
            if n > self._limit:
                self._slow(data)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _consider(self, name: str) -> None:
        self._considered.add(name)
        root = logging.root
        lg = root if name == root.name else logging.Logger.manager.loggerDict.get(name)
        if isinstance(lg, logging.Logger):
            _fastpath.promote(lg, self)

    # ------------------------------------------------------------------ promotion, for install()
    def promote(self, logger: logging.Logger) -> str | None:
        """Put `logger` on the fast path; None when done, else why its calls keep the stdlib path."""
        self._considered.add(logger.name)
        return _fastpath.promote(logger, self)

    def why_not(self, logger: logging.Logger) -> str | None:
        """None when `logger`'s calls are captured for this handler, else why they take the stdlib path."""
        if _fastpath._promoted.get(logger) is not self:
            return _fastpath.why_not(logger, self) or f"logger {logger.name!r} has not sent a record here yet"
        return _fastpath.why_not(logger, self)

    def deferred_loggers(self) -> list[str]:
        """Names of the loggers currently on the fast path for this handler."""
        return _fastpath.promoted(self)

    # ------------------------------------------------------------------ writer side
    def _render(self, parts: list[Any]) -> bytes:
        """Format captured records (tuples) and pass formatted ones (bytes) through, in order."""
        term = self.terminator
        first = parts[0] if parts else None
        if type(first) is tuple:
            plan = self._plans[first[0]]
            if plan.lines is not None:
                try:  # the common batch: records of one plan, nothing that fails to format
                    lines = plan.lines(parts)
                except RecursionError:
                    raise
                except Exception:
                    pass  # a notice, a formatted record, another plan or a formatting error: one by one
                else:
                    self._deferred_records += len(lines)
                    self._check_factory()
                    return self._encode_lines(lines, term)
        return self._render_each(parts, term)

    def _render_each(self, parts: list[Any], term: str) -> bytes:
        """A mixed batch: runs of records of one plan, formatted records, notices, formatting errors."""
        plans = self._plans
        segments: list[bytes] = []
        lines: list[str] = []
        rendered = 0
        i, n = 0, len(parts)
        while i < n:
            item = parts[i]
            if type(item) is tuple:
                pid = item[0]
                j = i + 1
                while j < n and type(parts[j]) is tuple and parts[j][0] == pid:
                    j += 1
                plan = plans[pid]
                run = parts[i:j]
                try:
                    got = plan.lines(run) if plan.lines is not None else [plan.line(r) for r in run]
                except RecursionError:
                    raise
                except Exception:  # one of them does not format: find it, report it like the stdlib
                    got = []
                    for r in run:
                        try:
                            got.append(plan.line(r))
                        except RecursionError:
                            raise
                        except Exception:
                            self._render_failed(r)
                lines += got
                rendered += len(got)
                i = j
                continue
            if item:
                if lines:
                    segments.append(self._encode_lines(lines, term))
                    lines = []
                segments.append(item)
            i += 1
        if lines:
            segments.append(self._encode_lines(lines, term))
        self._deferred_records += rendered
        if rendered:
            self._check_factory()
        return segments[0] if len(segments) == 1 else b"".join(segments)

    def _check_factory(self) -> None:
        if logging.getLogRecordFactory() is not logging.LogRecord:
            _fastpath.changed()  # a factory appeared: the next calls take the stdlib path (see docs)

    def _encode_lines(self, lines: list[str], term: str) -> bytes:
        text = term.join(lines) + term
        try:
            return text.encode() if self._utf8 else text.encode(self.encoding, self.errors)
        except UnicodeEncodeError:
            return text.encode(self.encoding, self.errors)

    def _render_failed(self, item: tuple[Any, ...]) -> None:
        """The stdlib would have called handleError on the caller's thread; we do it here (and the record,
        as there, is not written)."""
        try:
            record = self._plans[item[0]].record(item)
        except Exception:
            record = logging.makeLogRecord({"name": item[1], "levelno": item[2], "msg": item[3],
                                            "args": item[4]})
        self.handleError(record)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Put the loggers back on the stdlib path, then flush and close as BatchHandler does."""
        self._retired = True
        _fastpath.demote_all(self)
        super().close()
        _fastpath._handlers.discard(self)

    def stats(self) -> dict[str, int]:
        out = super().stats()
        out["deferred_records"] = self._deferred_records
        out["formatted_on_caller"] = self._formatted_here
        out["pending_records"] = out.pop("pending_bytes")
        out["peak_records"] = out.pop("peak_bytes")
        return out

    def __repr__(self) -> str:
        where = f"fd={self._fd}" if self._fd is not None else repr(self._stream)
        level = logging.getLevelName(self.level)
        return (f"<{type(self).__name__} {where} ({level}) policy={self.policy} "
                f"max_records={self.max_records}>")
