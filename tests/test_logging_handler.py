"""BatchHandler in this process: real threads, real pipes, files and ptys. Behaviour only, never timings."""

from __future__ import annotations

import fcntl
import io
import logging
import logging.config
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import iolab.logging
from iolab.logging import BatchHandler

F_SETPIPE_SZ = 1031
RECORD = "record %06d: the quick brown fox jumps"  # 40 bytes + newline


class Reader:
    """Drains a descriptor on a thread; remembers every read so tests can look at batching."""

    def __init__(self, fd: int, start: bool = True) -> None:
        # A descriptor of its own, closed by the thread when it ends: the test closes its copy at teardown,
        # and the next test's pipe reuses that number. A thread reading the number it was given would, if
        # slow to get there (a loaded machine), read the next test's pipe and steal its lines.
        self.fd = os.dup(fd)
        self.chunks: list[bytes] = []
        self.arrived: list[float] = []  # time.monotonic() of each read, for lower bounds on delays
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                b = os.read(self.fd, 1 << 16)
            except OSError:  # a pty master reads EIO once the slave side is closed
                b = b""
            with self.cond:
                if not b:
                    self.chunks.append(b"")
                    self.cond.notify_all()
                    os.close(self.fd)
                    return
                self.chunks.append(b)
                self.arrived.append(time.monotonic())
                self.cond.notify_all()

    def wait_for(self, needle: bytes, timeout: float = 10.0) -> list[bytes]:
        end = time.monotonic() + timeout
        with self.cond:
            while needle not in b"".join(self.chunks) and time.monotonic() < end:
                self.cond.wait(0.05)
        return self.data.splitlines()

    @property
    def data(self) -> bytes:
        with self.cond:
            return b"".join(self.chunks)

    def wait_lines(self, n: int, timeout: float = 10.0) -> list[bytes]:
        end = time.monotonic() + timeout
        with self.cond:
            while b"".join(self.chunks).count(b"\n") < n and time.monotonic() < end:
                self.cond.wait(0.05)
        return self.data.splitlines()


def reading(pipe: tuple[int, int]) -> tuple[Reader, int]:
    """A Reader draining the pipe's read end, and the write end to log to."""
    r, w = pipe
    return Reader(r), w


def threads_log_whole_lines_in_order(lg: logging.Logger, h: BatchHandler, reader: Reader, line: bytes,
                                     n_threads: int = 8, n: int = 5000) -> None:
    """Threads w0, w1 … log ``thread <t> record <i> x…`` n times each, all at once. Every line must arrive
    whole (match ``line``, whose groups are t, i and the x's) and each thread's lines in their order."""
    barrier = threading.Barrier(n_threads)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(n):
            lg.info("thread %d record %05d %s", t, i, "x" * (i % 50))

    threads = [threading.Thread(target=work, args=(t,), name=f"w{t}") for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert h.flush(10)
    lines = reader.wait_lines(n_threads * n)
    assert len(lines) == n_threads * n
    pat = re.compile(line)
    seen: dict[int, list[int]] = {t: [] for t in range(n_threads)}
    for got in lines:
        m = pat.fullmatch(got)
        assert m, f"line split or interleaved: {got!r}"
        t, i = int(m.group(1)), int(m.group(2))
        assert len(m.group(3)) == i % 50
        seen[t].append(i)
    assert all(seen[t] == list(range(n)) for t in range(n_threads)), "per-thread order kept"


def make_logger(handler: logging.Handler, name: str) -> logging.Logger:
    lg = logging.getLogger(f"iolab-test.{name}")
    lg.propagate = False
    lg.handlers[:] = [handler]
    lg.setLevel(logging.DEBUG)
    return lg


@pytest.fixture
def handlers() -> Iterator[list[BatchHandler]]:
    made: list[BatchHandler] = []
    yield made
    for h in made:
        h.close()


def new_handler(made: list[BatchHandler], *args: object, **kwargs: object) -> BatchHandler:
    h = BatchHandler(*args, **kwargs)  # type: ignore[arg-type]
    h.setFormatter(logging.Formatter("%(message)s"))
    made.append(h)
    return h


def syscw() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/self/io")


def test_many_records_few_writes(pipe: tuple[int, int], handlers: list[BatchHandler]) -> None:
    reader, w = reading(pipe)
    h = new_handler(handlers, w)
    lg = make_logger(h, "batching")
    before = syscw()
    for i in range(20_000):
        lg.info(RECORD, i)
    assert h.flush(10)
    writes = syscw() - before
    lines = reader.wait_lines(20_000)
    assert lines == [(RECORD % i).encode() for i in range(20_000)]
    # One write per record would be 20,000; batches of up to 64 KiB make it a few dozen.
    assert writes <= 200, writes
    assert h.stats()["write_syscalls"] <= 200


def test_a_single_record_goes_out_after_the_deadline_not_before(pipe: tuple[int, int],
                                                                 handlers: list[BatchHandler]) -> None:
    reader, w = reading(pipe)
    h = new_handler(handlers, w, deadline=0.5)
    lg = make_logger(h, "deadline")
    t0 = time.monotonic()
    lg.info("first")
    assert reader.wait_lines(1, timeout=5.0) == [b"first"]
    # A lower bound only, which a slow or busy machine can only make later: the writer waits the deadline
    # (a timed wait, which never returns early) before it writes a partial batch.
    waited = reader.arrived[0] - t0
    assert waited >= 0.5 - 0.005, f"the writer sent a partial batch after {waited:.3f} s, before its 0.5 s deadline"
    # Idle writer wakes again for a later record.
    time.sleep(0.3)
    lg.info("second")
    assert reader.wait_lines(2, timeout=5.0) == [b"first", b"second"]


def small_pipe(w: int) -> None:
    fcntl.fcntl(w, F_SETPIPE_SZ, 4096)


def log_range(lg: logging.Logger, start: int, stop: int) -> None:
    for i in range(start, stop):
        lg.info(RECORD, i)


def numbers(lines: list[bytes]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.match(rb"record (\d+):", line))]


def dropped_counts(lines: list[bytes]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.match(rb"\xe2\x80\xa6 (\d+) records dropped", line))]


def delivered_or_counted(lines: list[bytes], h: BatchHandler, last: int) -> list[int]:
    """The record numbers delivered, once each checked that a record up to ``last`` was either delivered,
    in order, or counted as dropped, and that every drop was reported, once."""
    got = numbers(lines)
    assert got[-1] == last
    assert sum(dropped_counts(lines)) == h.dropped, "every drop is reported, once"
    assert len(got) + h.dropped == last + 1, "a record is either delivered or counted as dropped"
    assert got == sorted(got)
    return got


def read_slowly(fd: int) -> tuple[threading.Thread, list[bytes]]:
    """A slow consumer: a thread reading ``fd`` 4 KiB at a time, 2 ms apart, until EOF; what it read."""
    got: list[bytes] = []

    def slow_reader() -> None:
        while True:
            b = os.read(fd, 4096)
            if not b:
                return
            got.append(b)
            time.sleep(0.002)

    t = threading.Thread(target=slow_reader, daemon=True)
    t.start()
    return t, got


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_drop_policies_count_and_report(policy: str, pipe: tuple[int, int],
                                        handlers: list[BatchHandler]) -> None:
    r, w = pipe
    small_pipe(w)
    reader = Reader(r, start=False)  # nobody reads: the sink is blocked
    h = new_handler(handlers, w, max_bytes=16 * 1024, policy=policy, deadline=0.01)
    lg = make_logger(h, policy)
    log_range(lg, 0, 5000)  # 205 KB into 4 KiB of pipe and 16 KiB of buffer: returns, does not block
    assert h.dropped > 0
    assert h.stats()["pending_bytes"] <= 16 * 1024 + 4096
    reader.start()
    time.sleep(0.2)
    log_range(lg, 5000, 5001)
    assert h.flush(10)
    lines = reader.wait_for(b"record 005000")
    got = delivered_or_counted(lines, h, last=5000)
    if policy == "drop_newest":
        # The oldest records survive. (A record the writer picked up before the caller could drop it
        # is delivered, so a later one may appear after a gap: the notice marks the gap.)
        assert got[:100] == list(range(100))
    else:
        assert 4999 in got, "the newest records survive"


def test_peak_bytes_counts_what_the_fast_path_buffered(tmp_path: Path, handlers: list[BatchHandler]) -> None:
    # Records that never leave the caller's fast path (far below the batch and the budget) are held until the
    # writer takes them: the peak must count them, not only what the slow path saw (it read 72 B of ~85 KB).
    h = new_handler(handlers, filename=str(tmp_path / "log"), deadline=60, batch_bytes=1 << 20, max_bytes=4 << 20)
    lg = make_logger(h, "peak")
    log_range(lg, 0, 1000)
    held = h.stats()["pending_bytes"]
    assert h.flush(10)
    size = (tmp_path / "log").stat().st_size
    assert size > 30_000
    assert h.stats()["peak_bytes"] >= size  # all of it sat in the buffer at once (deadline 60 s)
    assert held <= h.stats()["peak_bytes"]


def test_block_policy_waits_for_a_slow_reader_and_loses_nothing(pipe: tuple[int, int],
                                                                 handlers: list[BatchHandler]) -> None:
    r, w = pipe
    small_pipe(w)
    h = new_handler(handlers, w, max_bytes=8 * 1024, policy="block", block_timeout=30, deadline=0.01)
    lg = make_logger(h, "block")
    t, got = read_slowly(r)
    log_range(lg, 0, 3000)  # 120 KB through an 8 KiB budget: the caller has to wait
    assert h.flush(10)
    assert h.dropped == 0
    assert h.stats()["peak_bytes"] <= 8 * 1024 + 2 * 64
    h.close()
    os.close(w)
    t.join(10)
    assert numbers(b"".join(got).splitlines()) == list(range(3000))


def test_block_policy_times_out_then_drops_without_waiting_again(pipe: tuple[int, int],
                                                                 handlers: list[BatchHandler]) -> None:
    r, w = pipe
    small_pipe(w)
    reader = Reader(r, start=False)
    h = new_handler(handlers, w, max_bytes=8 * 1024, policy="block", block_timeout=0.2, deadline=0.01)
    lg = make_logger(h, "block-timeout")
    t0 = time.monotonic()
    log_range(lg, 0, 2000)
    # One wait of block_timeout, then "stalled": the rest drop at once (a generous bound, not a timing).
    assert time.monotonic() - t0 < 20
    assert h.dropped > 0
    reader.start()
    time.sleep(0.2)
    log_range(lg, 2000, 2001)
    assert h.flush(10)
    lines = reader.wait_for(b"record 002000")
    assert numbers(lines)[-1] == 2000
    assert sum(dropped_counts(lines)) == h.dropped
    assert len(numbers(lines)) + h.dropped == 2001


def test_many_threads_lose_nothing_and_never_split_a_line(pipe: tuple[int, int],
                                                          handlers: list[BatchHandler]) -> None:
    reader, w = reading(pipe)
    h = new_handler(handlers, w, max_bytes=1 << 30)
    lg = make_logger(h, "threads")
    threads_log_whole_lines_in_order(lg, h, reader, rb"thread (\d) record (\d{5}) (x*)")


def test_regular_file_and_filename(tmp_path: Path, handlers: list[BatchHandler]) -> None:
    path = tmp_path / "app.log"
    with open(path, "w") as f:
        h = new_handler(handlers, f)
        lg = make_logger(h, "file")
        log_range(lg, 0, 1000)
        assert h.flush(10)
        assert numbers(path.read_bytes().splitlines()) == list(range(1000))
    owned = tmp_path / "owned.log"
    h2 = new_handler(handlers, filename=str(owned))
    lg2 = make_logger(h2, "filename")
    log_range(lg2, 0, 10)
    h2.close()
    assert numbers(owned.read_bytes().splitlines()) == list(range(10))
    lg2.info("after close")  # written synchronously, or counted: never an exception
    assert h2.dropped == 1


def test_pty_sink_and_blocking_mode_untouched(handlers: list[BatchHandler]) -> None:
    master, slave = os.openpty()
    try:
        reader = Reader(master)
        flags = fcntl.fcntl(slave, fcntl.F_GETFL)
        h = new_handler(handlers, slave)
        lg = make_logger(h, "pty")
        log_range(lg, 0, 2000)
        assert h.flush(10)
        lines = [line.rstrip(b"\r") for line in reader.wait_lines(2000)]
        assert numbers(lines) == list(range(2000))
        assert fcntl.fcntl(slave, fcntl.F_GETFL) == flags
        assert not flags & os.O_NONBLOCK
    finally:
        h.close()
        os.close(slave)
        os.close(master)


def test_a_descriptor_made_non_blocking_by_someone_else_still_gets_everything(
        pipe: tuple[int, int], handlers: list[BatchHandler]) -> None:
    r, w = pipe
    small_pipe(w)
    os.set_blocking(w, False)  # what aiologger does to stdout; we must cope and leave it so
    h = new_handler(handlers, w, deadline=0.01)
    lg = make_logger(h, "nonblocking")
    log_range(lg, 0, 2000)
    reader = Reader(r)
    assert h.flush(10)
    assert numbers(reader.wait_lines(2000)) == list(range(2000))
    assert not os.get_blocking(w)


def log_each_kind(lg: logging.Logger) -> None:
    """A plain record, one with arguments, one with an exception, one with a stack."""
    lg.info("plain")
    lg.warning("args %s %d", [1, 2], 3)
    try:
        raise ValueError("boom")
    except ValueError:
        lg.exception("failed %s", "here")
    lg.info("with stack", stack_info=True)


def test_formatting_matches_the_stdlib(handlers: list[BatchHandler]) -> None:
    out = io.StringIO()  # no file descriptor: the stream fallback
    formats = [
        logging.Formatter("%(message)s"),
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M"),
        logging.Formatter("{levelname}:{message}", style="{"),
        logging.Formatter("%(levelname)s %(message)s %(custom)s", defaults={"custom": "-"}),
    ]
    h = BatchHandler(out)
    handlers.append(h)
    lg = make_logger(h, "format")
    expected = []
    for fmt in formats:
        h.setFormatter(fmt)
        log_each_kind(lg)
    assert h.flush(10)
    cap = logging.getLogger("iolab-test.format-capture")
    cap.propagate = False
    cap.setLevel(logging.DEBUG)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    cap.handlers[:] = [Keep()]
    for fmt in formats:
        start = len(records)
        log_each_kind(cap)
        expected += [fmt.format(r) for r in records[start:]]
    got = out.getvalue()

    def normalise(s: str) -> str:  # line numbers and logger names differ between the two loggers
        s = re.sub(r"line \d+", "line N", s)
        return s.replace("iolab-test.format-capture", "iolab-test.format").replace("(cap)", "(lg)")

    assert normalise(got) == normalise("".join(e + "\n" for e in expected))


def test_encodings_and_lone_surrogates(pipe: tuple[int, int], handlers: list[BatchHandler]) -> None:
    reader, w = reading(pipe)
    h = new_handler(handlers, w)
    lg = make_logger(h, "encoding")
    lg.info("caf\u00e9 \udcff end")  # a lone surrogate (undecodable file name) must not lose the record
    h.flush(10)
    h2 = new_handler(handlers, w, encoding="latin-1", errors="replace")
    lg.handlers[:] = [h2]
    lg.info("caf\u00e9 \u20ac")
    h2.flush(10)
    assert reader.wait_lines(2) == ["caf\u00e9 \\udcff end".encode(), b"caf\xe9 ?"]


def test_mutable_arguments_are_formatted_at_the_call(pipe: tuple[int, int],
                                                     handlers: list[BatchHandler]) -> None:
    reader, w = reading(pipe)
    h = new_handler(handlers, w, deadline=0.5)
    lg = make_logger(h, "mutable")
    items = [1]
    lg.info("items %s", items)
    items.append(2)
    assert h.flush(10)
    assert reader.wait_lines(1) == [b"items [1]"]


def test_filters_and_levels(pipe: tuple[int, int], handlers: list[BatchHandler]) -> None:
    reader, w = reading(pipe)
    h = new_handler(handlers, w, level=logging.INFO)
    h.addFilter(lambda rec: "secret" not in rec.getMessage())
    lg = make_logger(h, "filters")
    lg.debug("too low")
    lg.info("secret stuff")
    lg.info("kept")
    assert h.flush(10)
    assert reader.wait_lines(1) == [b"kept"]


def test_broken_sink_counts_and_does_not_raise(pipe: tuple[int, int], handlers: list[BatchHandler],
                                               capfd: pytest.CaptureFixture[str]) -> None:
    r, w = pipe
    os.close(r)  # EPIPE (SIGPIPE is ignored by Python)
    h = new_handler(handlers, w, deadline=0.01)
    lg = make_logger(h, "broken")
    log_range(lg, 0, 100)
    h.flush(2)
    assert h.dropped >= 100
    assert "cannot write to the log sink" in capfd.readouterr().err


def test_dict_config(tmp_path: Path) -> None:
    path = tmp_path / "dict.log"
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(message)s"}},
        "handlers": {"batch": {
            "class": "iolab.logging.BatchHandler", "formatter": "plain", "filename": str(path),
            "policy": "drop_oldest", "max_bytes": 1 << 20, "deadline": 0.02,
        }},
        "loggers": {"iolab-test.dict": {"handlers": ["batch"], "level": "INFO", "propagate": False}},
    })
    lg = logging.getLogger("iolab-test.dict")
    (h,) = lg.handlers
    assert isinstance(h, BatchHandler) and h.policy == "drop_oldest"
    lg.info("hello %s", "dict")
    h.close()
    lg.removeHandler(h)
    assert path.read_text() == "INFO hello dict\n"


def test_install_replaces_handlers_and_sets_level(pipe: tuple[int, int]) -> None:
    reader, w = reading(pipe)
    names = ["iolab-test.install-a", "iolab-test.install-b"]
    for name in names:
        logging.getLogger(name).addHandler(logging.NullHandler())
        logging.getLogger(name).propagate = False
    h = iolab.logging.install(logger=names, stream=w, level="WARNING", fmt="%(name)s %(message)s")
    try:
        for name in names:
            assert logging.getLogger(name).handlers == [h]
            assert logging.getLogger(name).level == logging.WARNING
        logging.getLogger(names[0]).warning("one")
        logging.getLogger(names[1]).info("ignored")
        logging.getLogger(names[1]).error("two")
        assert h.flush(10)
        assert reader.wait_lines(2) == [b"iolab-test.install-a one", b"iolab-test.install-b two"]
    finally:
        h.close()
        for name in names:
            logging.getLogger(name).handlers.clear()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        BatchHandler(1, policy="drop_everything")
    with pytest.raises(ValueError):
        BatchHandler(1, max_bytes=0)
