"""HdrHistogram interval logs (``--hdr-log FILE``), for HdrHistogram's own plotting and processing tools
(HistogramLogAnalyzer, HistogramLogProcessor …).

Values are microseconds. Each run (a scenario's round) contributes its intervals under a tag: one per
second where the driver says when each response completed (the builtin driver, open or closed loop), else one
for the whole run. In an open loop the corrected latencies (from when each request was due) go under the
run's tag and the uncorrected ones (from when it was sent) under the same tag with ``.uncorrected``
appended. Written with ``hdrh.log.HistogramLogWriter``; ``read_log`` reads a file back with
``HistogramLogReader``.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader, HistogramLogWriter

from iolab.analysis import latency
from iolab.measure.drivers.base import LoadResult
from iolab.measure.drivers.summary import histogram_of
from iolab.outputs import write_text_atomic

# The interval's max column is written in milliseconds (values are µs), as HdrHistogram's tools expect
# with their default output unit ratio for µs-recorded logs.
_MAX_VALUE_UNIT_RATIO = 1000.0


@dataclass(frozen=True)
class Entry:
    """One run to log: its tag (letters, digits, ``._-``), when its load started, what it measured."""

    tag: str
    started_epoch_s: float
    load: LoadResult


def tag_for(*parts: object) -> str:
    """A tag the log format accepts (no commas or spaces), e.g. ``tag_for("sync", "r1")`` → ``sync.r1``."""
    return ".".join(re.sub(r"[^A-Za-z0-9_-]+", "_", str(p)) for p in parts if str(p))


def intervals(entry: Entry) -> list[tuple[str, float, float, HdrHistogram]]:
    """(tag, start s, end s, histogram), start and end in seconds since the epoch."""
    load, t0 = entry.load, entry.started_epoch_s
    out: list[tuple[str, float, float, HdrHistogram]] = []
    if load.timeline_ms and len(load.timeline_ms) == len(load.latencies_us):
        series = [(entry.tag, load.latencies_us)]
        if len(load.latencies_uncorrected_us) == len(load.timeline_ms):
            series.append((entry.tag + ".uncorrected", load.latencies_uncorrected_us))
        seconds = max(load.timeline_ms) // 1000 + 1
        for tag, values in series:
            bins = [latency.new_histogram() for _ in range(seconds)]
            for at_ms, value in zip(load.timeline_ms, values, strict=True):
                bins[at_ms // 1000].record_value(max(latency.LOWEST_US, min(int(value), latency.HIGHEST_US)))
            out += [(tag, t0 + i, t0 + i + 1, h) for i, h in enumerate(bins)]
        return sorted(out, key=lambda item: (item[1], item[0]))
    hist, _, _ = histogram_of(load)
    if hist.get_total_count():
        out.append((entry.tag, t0, t0 + max(load.duration_s, 0.001), hist))
    if load.latencies_uncorrected_us:
        out.append((entry.tag + ".uncorrected", t0, t0 + max(load.duration_s, 0.001),
                    latency.histogram(load.latencies_uncorrected_us)))
    return out


def write_log(path: str | os.PathLike[str], entries: Sequence[Entry]) -> Path:
    """(Re)writes the whole log for ``entries`` atomically; call it again as runs are added."""
    write_text_atomic(path, render_log(entries))
    return Path(path)


def render_log(entries: Sequence[Entry]) -> str:
    """The whole log for ``entries`` as text."""
    buf = io.StringIO()
    writer = HistogramLogWriter(buf)
    writer.output_log_format_version()
    start = min((e.started_epoch_s for e in entries), default=0.0)
    # Written by hand: hdrh's output_start_time() calls a datetime method that does not exist.
    when = dt.datetime.fromtimestamp(start, dt.UTC).isoformat(sep=" ", timespec="milliseconds")
    buf.write(f"#[StartTime: {start:.3f} (seconds since epoch), {when}]\n")
    writer.output_comment("[iolab: latency in microseconds; Interval_Max in milliseconds; "
                          "tag <run>.uncorrected = from each request's send, not its due time]")
    approximate = sorted({e.tag for e in entries if histogram_of(e.load)[2]})
    if approximate:
        writer.output_comment("[iolab: rebuilt from the tool's percentile table, approximate: "
                              + " ".join(approximate) + "]")
    writer.output_legend()
    for tag, t_start, t_end, hist in sorted((i for e in entries for i in intervals(e)), key=lambda i: i[1]):
        line = io.StringIO()
        HistogramLogWriter(line).output_interval_histogram(hist, t_start, t_end, _MAX_VALUE_UNIT_RATIO)
        buf.write(f"Tag={tag},{line.getvalue()}")
    return buf.getvalue()


def read_log(path: str | os.PathLike[str]) -> list[HdrHistogram]:
    """Every interval histogram in the file, in order (each has its tag and start/end timestamps)."""
    reader = HistogramLogReader(str(path), latency.new_histogram())
    out: list[HdrHistogram] = []
    try:
        while (hist := reader.get_next_interval_histogram()) is not None:
            out.append(hist)
    finally:
        reader.input_file.close()
    return out


def merged(histograms: Iterable[HdrHistogram], tag: str | None = None) -> HdrHistogram:
    total = latency.new_histogram()
    for h in histograms:
        if tag is None or h.get_tag() == tag:
            total.add(h)
    return total
