"""defer=True in this process: what the caller's thread does, the stdlib semantics it keeps, when it falls
back or refuses, and the BatchHandler guarantees (threads, policies, sinks). Behaviour only, no timings.

pytest puts its own handlers on the root logger, so these tests use named loggers that do not propagate
to it; the root logger is tested in child processes (test_logging_defer_process.py).
"""

from __future__ import annotations

import io
import logging
import logging.config
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import iolab.logging
from iolab.logging import BatchHandler, DeferredHandler
from tests.test_logging_handler import (
    Reader,
    delivered_or_counted,
    numbers,
    read_slowly,
    reading,
    small_pipe,
    syscw,
    threads_log_whole_lines_in_order,
)

RECORD = "record %06d: the quick brown fox jumps"


@pytest.fixture
def made() -> Iterator[list[logging.Handler]]:
    handlers: list[logging.Handler] = []
    yield handlers
    for h in handlers:
        h.close()


def fresh_logger(name: str, propagate: bool = False) -> logging.Logger:
    lg = logging.getLogger(f"iolab-defer.{name}")
    lg.handlers[:] = []
    lg.filters[:] = []
    lg.propagate = propagate
    lg.disabled = False
    lg.setLevel(logging.NOTSET)
    return lg


def deferred(made: list[logging.Handler], lg: logging.Logger, stream: object, fmt: str = "%(message)s",
             **kw: object) -> DeferredHandler:
    h = iolab.logging.install(logger=lg, stream=stream, fmt=fmt, defer=True, sigterm_flush=False, **kw)
    made.append(h)
    assert isinstance(h, DeferredHandler)
    assert h.why_not(lg) is None, h.why_not(lg)
    return h


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# ------------------------------------------------------------------------------ the caller's thread

def test_the_caller_only_captures_tuples_and_makes_no_syscall(pipe: tuple[int, int],
                                                              made: list[logging.Handler]) -> None:
    reader, w = reading(pipe)
    lg = fresh_logger("capture")
    h = deferred(made, lg, w, "%(levelname)s %(name)s: %(message)s", deadline=30.0)
    lg.info("warm-up")  # starts the writer thread
    assert h.flush(10)
    before = syscw()
    for i in range(2000):
        lg.info(RECORD, i)
    during = syscw() - before
    pending = list(h._buf)
    assert during == 0, "no write on any thread while the deadline (30 s) has not passed"
    assert len(pending) == 2000 and all(type(item) is tuple for item in pending), "captured, not formatted"
    assert pending[7][3:5] == (RECORD, 7), "the message and its one argument, as given"
    assert h.stats()["formatted_on_caller"] == 0
    assert h.flush(10)
    lines = reader.wait_lines(2001)
    assert lines[1:] == [f"INFO iolab-defer.capture: {RECORD % i}".encode() for i in range(2000)]
    assert h.stats()["deferred_records"] == 2001


def test_mutable_arguments_are_rendered_at_the_call_immutable_ones_kept(pipe: tuple[int, int],
                                                                       made: list[logging.Handler]) -> None:
    reader, w = reading(pipe)
    lg = fresh_logger("mutable")
    h = deferred(made, lg, w, deadline=30.0)

    class Counter:
        n = 0

        def __str__(self) -> str:
            return f"counter={self.n}"

    class Text(str):
        pass

    items, mapping, counter, big = [1], {"a": 1}, Counter(), 10**30
    lg.info("items %s", items)
    lg.info("mapping %(a)s", mapping)
    lg.info("object %s", counter)
    lg.info("subclass %s", Text("t"))
    lg.info("kept %s %s", big, "s")
    items.append(2)
    mapping["a"] = 2
    counter.n = 5
    kept = h._buf[-1]
    assert kept[4] == (big, "s") and kept[4][0] is big, "immutable arguments are kept, not copied or rendered"
    assert h._buf[0][3:5] == ("items [1]", ()), "a list argument: the message rendered at the call"
    assert h.flush(10)
    assert reader.wait_lines(5) == [b"items [1]", b"mapping 1", b"object counter=0", b"subclass t",
                                    b"kept 1000000000000000000000000000000 s"]


def test_levels_setlevel_disable_and_disabled_take_effect_after_install(pipe: tuple[int, int],
                                                                        made: list[logging.Handler]) -> None:
    reader, w = reading(pipe)
    lg = fresh_logger("levels")
    h = deferred(made, lg, w, "%(levelname)s %(message)s", level="INFO")
    lg.debug("1 no")
    lg.info("2 yes")
    assert lg.isEnabledFor(logging.INFO) and not lg.isEnabledFor(logging.DEBUG)
    lg.setLevel(logging.WARNING)
    lg.info("3 no")
    lg.warning("4 yes")
    logging.disable(logging.WARNING)
    try:
        lg.warning("5 no")
        lg.error("6 yes")
        assert not lg.isEnabledFor(logging.WARNING)
    finally:
        logging.disable(logging.NOTSET)
    lg.warning("7 yes")
    lg.disabled = True
    lg.critical("8 no")
    lg.disabled = False
    h.setLevel(logging.ERROR)
    lg.warning("9 no")
    lg.error("10 yes")
    h.setLevel(logging.NOTSET)
    lg.setLevel(logging.DEBUG)
    lg.debug("11 yes")
    lg.log(5, "12 no")
    lg.log(15, "13 yes")
    assert h.flush(10)
    assert reader.wait_lines(8) == [b"INFO 2 yes", b"WARNING 4 yes", b"ERROR 6 yes", b"WARNING 7 yes",
                                    b"ERROR 10 yes", b"DEBUG 11 yes", b"Level 15 13 yes"]
    assert h.deferred_loggers() == ["iolab-defer.levels"]
    assert h.stats()["formatted_on_caller"] == 0, "every one of them was decided on the fast path"


def test_exc_info_stack_info_stacklevel_take_the_stdlib_path_in_order(pipe: tuple[int, int],
                                                                      made: list[logging.Handler]) -> None:
    reader, w = reading(pipe)
    lg = fresh_logger("kwargs")
    h = deferred(made, lg, w, "%(funcName)s:%(lineno)d %(message)s")

    def helper() -> None:
        lg.info("from helper, reported at its caller", stacklevel=2)

    lg.info("before")
    line_before = currentline() - 1
    try:
        raise KeyError("k")
    except KeyError:
        lg.exception("caught %s", "it")
    line_exc = currentline() - 1
    helper()
    line_helper = currentline() - 1
    lg.info("with stack", stack_info=True)
    lg.info("after")
    assert h.flush(10)
    text = reader.wait_for(b"after")
    fn = "test_exc_info_stack_info_stacklevel_take_the_stdlib_path_in_order"
    assert text[0] == f"{fn}:{line_before} before".encode()
    assert text[1] == f"{fn}:{line_exc} caught it".encode()
    assert text[2] == b"Traceback (most recent call last):"
    assert text[-4] == b"KeyError: 'k'" or b"KeyError: 'k'" in text
    assert f"{fn}:{line_helper} from helper, reported at its caller".encode() in text
    assert b"Stack (most recent call last):" in text
    assert text[-1].endswith(b" after")
    assert h.stats()["formatted_on_caller"] == 3 and h.stats()["deferred_records"] == 2


def currentline() -> int:
    import sys

    return sys._getframe(1).f_lineno


def test_extra_adds_fields_and_a_key_clash_raises_keyerror_like_the_stdlib(
        pipe: tuple[int, int], made: list[logging.Handler]) -> None:
    reader, w = reading(pipe)
    lg = fresh_logger("extra")
    deferred(made, lg, w)
    plain = fresh_logger("extra-stdlib")
    plain.addHandler(logging.NullHandler())
    plain.setLevel(logging.INFO)
    for key in ("message", "asctime", "levelname", "msg"):
        with pytest.raises(KeyError) as theirs:
            plain.info("x", extra={key: 1})
        with pytest.raises(KeyError) as ours:
            lg.info("x", extra={key: 1})
        assert str(ours.value) == str(theirs.value) == repr(f"Attempt to overwrite {key!r} in LogRecord")
    lg.info("fine %s", "too", extra={"user": "u"})
    lg.info("empty extra", extra={})
    assert reader.wait_lines(2) == [b"fine too", b"empty extra"]


def test_log_needs_an_int_level_and_adapters_work(pipe: tuple[int, int], made: list[logging.Handler]) -> None:
    reader, w = reading(pipe)
    lg = fresh_logger("adapter")
    deferred(made, lg, w, "%(funcName)s %(message)s")
    with pytest.raises(TypeError, match="level must be an integer"):
        lg.log("INFO", "x")  # type: ignore[arg-type]
    adapter = logging.LoggerAdapter(lg, {"k": 1})
    adapter.info("adapted %d", 1)
    adapter.warning("warned")
    assert reader.wait_lines(2) == [b"test_log_needs_an_int_level_and_adapters_work adapted 1",
                                    b"test_log_needs_an_int_level_and_adapters_work warned"]


def test_formatter_change_applies_to_later_records_only(pipe: tuple[int, int], made: list[logging.Handler]) -> None:
    reader, w = reading(pipe)
    lg = fresh_logger("refmt")
    h = deferred(made, lg, w, "A %(message)s", deadline=30.0)
    lg.info("one")
    h.setFormatter(logging.Formatter("B %(levelname)s %(message)s"))
    lg.info("two")  # the first call after the change takes the stdlib path while the methods are remade
    lg.info("three")
    assert h.flush(10)
    assert reader.wait_lines(3) == [b"A one", b"B INFO two", b"B INFO three"]
    assert h.stats()["deferred_records"] == 2


# ------------------------------------------------------------------------------ fallback and refusal

def test_a_filter_added_later_applies_through_the_stdlib_path(pipe: tuple[int, int],
                                                               made: list[logging.Handler]) -> None:
    reader, w = reading(pipe)
    lg = fresh_logger("filter-later")
    h = deferred(made, lg, w)

    def no_secrets(record: logging.LogRecord) -> bool:
        return "secret" not in record.getMessage()

    lg.info("1 fast")
    lg.addFilter(no_secrets)
    assert "has filters" in (h.why_not(lg) or "")
    lg.info("2 secret")  # the first call after the change decides again: back to the stdlib's methods
    assert h.deferred_loggers() == [] and "info" not in vars(lg)
    lg.info("3 kept")
    lg.removeFilter(no_secrets)
    lg.info("4 back on the stdlib path once, which promotes it again")
    lg.info("5 fast")
    assert h.flush(10)
    assert reader.wait_lines(4) == [b"1 fast", b"3 kept", b"4 back on the stdlib path once, which promotes it again",
                                    b"5 fast"]
    assert h.deferred_loggers() == ["iolab-defer.filter-later"]
    # handler filters too
    h.addFilter(no_secrets)
    lg.info("6 secret")
    assert h.deferred_loggers() == []
    h.removeFilter(no_secrets)
    lg.info("7 kept")
    assert h.flush(10)
    assert reader.wait_lines(5)[-1] == b"7 kept"


def test_a_handler_on_an_ancestor_gets_its_records_too(pipe: tuple[int, int], made: list[logging.Handler]) -> None:
    reader, w = reading(pipe)
    parent = fresh_logger("anc")  # does not propagate to the root (pytest's handlers)
    child = fresh_logger("anc.child", propagate=True)
    h = deferred(made, child, w)
    child.info("1 only ours")
    keep = Keep()
    parent.addHandler(keep)
    child.info("2 both")
    parent.removeHandler(keep)
    child.info("3 only ours")
    parent.handlers = [keep]  # assignment, not a method call: noticed as well
    child.info("4 both")
    parent.handlers = []
    parent.propagate = True  # to the root, which has pytest's handlers: the stdlib path again
    assert h.why_not(child) is not None
    parent.propagate = False
    child.info("5 only ours")
    assert h.flush(10)
    assert reader.wait_lines(5) == [b"1 only ours", b"2 both", b"3 only ours", b"4 both", b"5 only ours"]
    assert [r.getMessage() for r in keep.records] == ["2 both", "4 both"]


def test_a_new_logger_between_child_and_handler_is_noticed(pipe: tuple[int, int],
                                                           made: list[logging.Handler]) -> None:
    reader, w = reading(pipe)
    top = fresh_logger("gap")
    leaf = logging.getLogger("iolab-defer.gap.middle.leaf")  # "middle" is only a placeholder for now
    h = deferred(made, top, w)
    leaf.info("1 promotes the leaf")
    leaf.info("2 fast")
    assert "iolab-defer.gap.middle.leaf" in h.deferred_loggers()
    middle = logging.getLogger("iolab-defer.gap.middle")  # now a logger: the leaf's parent changes
    keep = Keep()
    middle.addHandler(keep)
    leaf.info("3 both")
    assert h.flush(10)
    assert reader.wait_lines(3) == [b"1 promotes the leaf", b"2 fast", b"3 both"]
    assert [r.getMessage() for r in keep.records] == ["3 both"]
    middle.removeHandler(keep)


def test_a_formatter_subclass_falls_back_with_its_own_output(pipe: tuple[int, int],
                                                              made: list[logging.Handler]) -> None:
    reader, w = reading(pipe)
    lg = fresh_logger("subclass")
    h = deferred(made, lg, w)

    class Upper(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return super().format(record).upper()

    h.setFormatter(Upper("%(levelname)s %(message)s"))
    lg.info("shout %s", "this")
    assert "not the stdlib logging.Formatter" in (h.why_not(lg) or "")
    assert h.flush(10)
    assert reader.wait_lines(1) == [b"INFO SHOUT THIS"]
    assert h.stats()["formatted_on_caller"] == 1


def test_install_refuses_what_it_cannot_defer_and_changes_nothing(pipe: tuple[int, int]) -> None:
    _r, w = pipe
    with_filter = fresh_logger("refuse-filter")
    with_filter.addFilter(lambda rec: True)
    with pytest.raises(ValueError, match=r"install\(defer=True\): logger 'iolab-defer.refuse-filter' has filters"):
        iolab.logging.install(logger=with_filter, stream=w, defer=True, sigterm_flush=False)
    assert with_filter.handlers == []

    parent = fresh_logger("refuse-parent")
    keep = Keep()
    parent.addHandler(keep)
    child = fresh_logger("refuse-parent.child", propagate=True)
    child.addHandler(logging.NullHandler())
    with pytest.raises(ValueError, match=r"also go to <Keep \(NOTSET\)> on logger 'iolab-defer.refuse-parent'"):
        iolab.logging.install(logger=child, stream=w, defer=True, sigterm_flush=False)
    assert len(child.handlers) == 1 and isinstance(child.handlers[0], logging.NullHandler), "nothing changed"

    a = fresh_logger("refuse-twice")
    b = fresh_logger("refuse-twice.b", propagate=True)
    with pytest.raises(ValueError, match="reach the handler 2 times"):
        iolab.logging.install(logger=[a, b], stream=w, defer=True, sigterm_flush=False)
    assert a.handlers == [] and b.handlers == []

    with pytest.raises(ValueError, match="only `extra=` can supply"):
        iolab.logging.install(logger=a, stream=w, fmt="%(user)s %(message)s", defer=True, sigterm_flush=False)
    with pytest.raises(ValueError, match="prints the record's 'args'"):
        iolab.logging.install(logger=a, stream=w, fmt="%(message)s %(args)s", defer=True, sigterm_flush=False)
    assert a.handlers == []


def test_dictconfig_defer_option_promotes_on_the_first_record(tmp_path: Path) -> None:
    path = tmp_path / "dict.log"
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(name)s %(message)s"}},
        "handlers": {"deferred": {"class": "iolab.logging.BatchHandler", "defer": True, "formatter": "plain",
                                  "filename": str(path), "policy": "drop_oldest", "max_records": 1000}},
        "loggers": {"iolab-defer.dict": {"handlers": ["deferred"], "level": "INFO", "propagate": False}},
    })
    lg = logging.getLogger("iolab-defer.dict")
    (h,) = lg.handlers
    try:
        assert isinstance(h, DeferredHandler) and h.max_records == 1000 and h.policy == "drop_oldest"
        assert h.deferred_loggers() == []
        lg.info("first %d", 1)  # the stdlib path, which promotes the logger
        lg.info("second %d", 2)
        lg.getChild("sub").warning("child %s", "too")  # propagates here: promoted as well
        lg.getChild("sub").warning("child %s", "again")
        assert h.deferred_loggers() == ["iolab-defer.dict", "iolab-defer.dict.sub"]
        assert h.flush(10)
        assert path.read_text() == ("INFO iolab-defer.dict first 1\nINFO iolab-defer.dict second 2\n"
                                    "WARNING iolab-defer.dict.sub child too\nWARNING iolab-defer.dict.sub child again\n")
        assert h.stats()["deferred_records"] == 2
    finally:
        h.close()
        lg.removeHandler(h)


def test_close_demotes_and_later_records_are_written_synchronously(tmp_path: Path) -> None:
    path = tmp_path / "closed.log"
    lg = fresh_logger("close")
    h = iolab.logging.install(logger=lg, filename=str(path), fmt="%(message)s", defer=True, sigterm_flush=False)
    assert isinstance(h, DeferredHandler)
    lg.info("before close")
    assert "info" in vars(lg)
    h.close()
    assert "info" not in vars(lg) and h.deferred_loggers() == [], "back to the stdlib's methods"
    assert repr(lg) == "<Logger iolab-defer.close (INFO)>" and isinstance(lg, logging.Logger)
    lg.info("after close")  # the stdlib path, then the closed handler's synchronous path: never an error
    assert path.read_text() == "before close\n"
    assert h.dropped == 1, "the file was closed with the handler: counted, as BatchHandler does"


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="max_bytes does not apply with defer=True"):
        BatchHandler(1, defer=True, max_bytes=1024)
    with pytest.raises(ValueError, match="max_records and batch_records must be positive"):
        DeferredHandler(1, max_records=0)

    class Mine(BatchHandler):
        pass

    with pytest.raises(ValueError, match="Mine is a subclass of BatchHandler that cannot defer"):
        Mine(1, defer=True)


# ------------------------------------------------------------------------------ BatchHandler's guarantees

def test_many_threads_lose_nothing_and_never_split_a_line(pipe: tuple[int, int],
                                                          made: list[logging.Handler]) -> None:
    reader, w = reading(pipe)
    lg = fresh_logger("threads")
    h = deferred(made, lg, w, "%(threadName)s %(message)s", max_records=1 << 22)
    threads_log_whole_lines_in_order(lg, h, reader, rb"w(\d) thread \1 record (\d{5}) (x*)")  # threadName too
    assert h.stats()["deferred_records"] == 8 * 5000


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_drop_policies_count_and_report(policy: str, pipe: tuple[int, int], made: list[logging.Handler]) -> None:
    r, w = pipe
    small_pipe(w)
    reader = Reader(r, start=False)  # nobody reads: the sink is stuck
    lg = fresh_logger(f"drop-{policy}")
    h = deferred(made, lg, w, max_records=400, batch_records=50, policy=policy, deadline=0.01)
    for i in range(5000):
        lg.info(RECORD, i)  # returns, does not block
    assert h.dropped > 0
    # The budget, plus the record over it that the check is made after, plus the drop notice, plus (for
    # drop_oldest) the newest record, kept when everything older is in the batch being written.
    assert h.stats()["pending_records"] <= 400 + 3
    reader.start()
    time.sleep(0.2)
    lg.info(RECORD, 5000)
    assert h.flush(10)
    lines = reader.wait_for(b"record 005000")
    got = delivered_or_counted(lines, h, last=5000)
    assert b"400-record buffer full" in reader.data
    if policy == "drop_newest":
        assert got[:100] == list(range(100))
    else:
        assert 4999 in got


def test_block_policy_waits_for_a_slow_reader_and_loses_nothing(pipe: tuple[int, int],
                                                                 made: list[logging.Handler]) -> None:
    r, w = pipe
    small_pipe(w)
    lg = fresh_logger("block")
    h = deferred(made, lg, w, max_records=200, batch_records=50, policy="block", block_timeout=30, deadline=0.01)
    t, got = read_slowly(r)
    for i in range(3000):
        lg.info(RECORD, i)  # 3000 records through a 200-record budget: the caller has to wait
    assert h.flush(10)
    assert h.dropped == 0
    assert h.stats()["peak_records"] <= 200 + 2
    h.close()
    os.close(w)
    t.join(10)
    assert numbers(b"".join(got).splitlines()) == list(range(3000))


def test_pty_and_stream_without_descriptor(made: list[logging.Handler]) -> None:
    master, slave = os.openpty()
    try:
        reader = Reader(master)
        lg = fresh_logger("pty")
        h = deferred(made, lg, slave)
        for i in range(2000):
            lg.info(RECORD, i)
        assert h.flush(10)
        lines = [line.rstrip(b"\r") for line in reader.wait_lines(2000)]
        assert numbers(lines) == list(range(2000))
    finally:
        for h in made:
            h.close()
        os.close(slave)
        os.close(master)
    out = io.StringIO()
    lg = fresh_logger("stringio")
    h = deferred(made, lg, out)
    lg.info("caf\u00e9 %s", "\u2713")
    assert h.flush(10)
    assert out.getvalue() == "caf\u00e9 \u2713\n"


def test_a_record_that_fails_to_format_is_reported_like_the_stdlib(pipe: tuple[int, int],
                                                                   made: list[logging.Handler],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    reader, w = reading(pipe)
    lg = fresh_logger("bad-args")
    h = deferred(made, lg, w)
    lg.info("one %d", "not a number")  # formatted by the writer: TypeError there
    lg.info("next")
    assert h.flush(10)
    assert reader.wait_lines(1) == [b"next"], "the bad record is not written, the next one is"
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "TypeError" in err
    assert "Message: 'one %d'" in err and "Arguments: ('not a number',)" in err


def test_keywords_that_cannot_change_the_line_stay_on_the_fast_path(pipe: tuple[int, int],
                                                                     made: list[logging.Handler]) -> None:
    reader, w = reading(pipe)
    lg = fresh_logger("quiet")
    h = deferred(made, lg, w)
    lg.info("a", exc_info=False)
    lg.info("b %s", 1, extra={"user": "u"})
    lg.info("c", stack_info=False, stacklevel=3)  # the format does not print the caller
    lg.info("d", extra=None, exc_info=None)
    assert h.flush(10)
    assert h.stats()["deferred_records"] == 4 and h.stats()["formatted_on_caller"] == 0
    # The stdlib makes the record before the handler's level drops it, so a clash still raises.
    h.setLevel(logging.ERROR)
    with pytest.raises(KeyError, match="Attempt to overwrite 'message' in LogRecord"):
        lg.info("x", extra={"message": 1})
    lg.info("dropped by the handler's level", extra={"user": "u"})
    h.setLevel(logging.NOTSET)
    # An extra key can stand in for a default the format prints: that call takes the stdlib path.
    h.setFormatter(logging.Formatter("%(request)s %(message)s", defaults={"request": "-"}))
    lg.info("e")
    lg.info("f", extra={"request": "r1"})
    assert h.flush(10)
    assert reader.wait_lines(6) == [b"a", b"b 1", b"c", b"d", b"- e", b"r1 f"]


def test_an_argument_that_fails_to_render_at_the_call_is_reported_by_the_stdlib(
        pipe: tuple[int, int], made: list[logging.Handler], capsys: pytest.CaptureFixture[str]) -> None:
    reader, w = reading(pipe)
    lg = fresh_logger("bad-render")
    h = deferred(made, lg, w, "%(funcName)s %(message)s")
    lg.info("a list %d", [1])  # rendered at the call (a list): TypeError, so the stdlib path handles it
    lg.info("next")
    assert h.flush(10)
    fn = "test_an_argument_that_fails_to_render_at_the_call_is_reported_by_the_stdlib"
    assert reader.wait_lines(1) == [f"{fn} next".encode()]
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "Message: 'a list %d'" in err and "Arguments: ([1],)" in err
    assert h.stats()["formatted_on_caller"] == 0, "the failed record is not written, as with the stdlib"


def test_a_decimal_is_rendered_with_the_callers_decimal_context(pipe: tuple[int, int],
                                                                made: list[logging.Handler]) -> None:
    import decimal

    reader, w = reading(pipe)
    lg = fresh_logger("decimal")
    h = deferred(made, lg, w, deadline=30.0)
    with decimal.localcontext() as ctx:  # this thread's context only; the writer thread has its own
        ctx.capitals = 0
        lg.info("d=%s", decimal.Decimal("1E+5"))
    assert h.flush(10)
    assert reader.wait_lines(1) == [b"d=1e+5"], "as str() gives it on the calling thread"
