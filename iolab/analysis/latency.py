"""Latency samples in an HdrHistogram (µs, 3 significant digits) and the seed's percentile rows."""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

from iolab.results import LatencyMs

# 1 µs to 1 hour at 3 significant digits: every value is kept to within 0.1 %, never in whole-ms buckets.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3

# The seed's percentile rows plus 99.9 (design.md, "Measurements"): the one list that LatencyMs's fields,
# the drivers' tables, the report's rows and the gates' metric names (p99_9_ms) follow.
PERCENTILES: tuple[float, ...] = (50, 66, 75, 80, 90, 95, 98, 99, 99.9, 100)


def percentile_field(q: float) -> str:
    """The LatencyMs field of a percentile: 50 → "p50", 99.9 → "p99_9"."""
    return "p" + f"{q:g}".replace(".", "_")


def percentile_label(q: float) -> str:
    """A report's row header: 99.9 → "99.9%"."""
    return f"{q:g}%"


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def histogram(latencies_us: Iterable[int]) -> HdrHistogram:
    h = new_histogram()
    record = h.record_value
    for v in latencies_us:
        record(max(LOWEST_US, min(int(v), HIGHEST_US)))
    return h


def encode(h: HdrHistogram) -> str:
    return "" if h.get_total_count() == 0 else h.encode().decode("ascii")


def decode(text: str) -> HdrHistogram:
    if not text:
        return new_histogram()
    return HdrHistogram.decode(text.encode("ascii"))


def merge(encoded: Iterable[str]) -> HdrHistogram:
    total = new_histogram()
    for text in encoded:
        if text:
            total.add(decode(text))
    return total


def latency_ms(h: HdrHistogram) -> LatencyMs:
    if h.get_total_count() == 0:
        return LatencyMs()

    def at(q: float) -> float:
        return round(h.get_value_at_percentile(q) / 1000.0, 3)

    # p100 is the largest value recorded, not the top of its histogram bucket.
    values = {percentile_field(q): at(q) for q in PERCENTILES if q < 100}
    return LatencyMs(**values, p100=round(h.get_max_value() / 1000.0, 3),
                     mean=round(h.get_mean_value() / 1000.0, 3))


def spectrum(h: HdrHistogram, ticks_per_half: int = 5) -> list[tuple[float, float]]:
    """(percentile, ms) points for a percentile-spectrum chart (HdrHistogram's percentile iterator)."""
    points: list[tuple[float, float]] = []
    for item in h.get_percentile_iterator(ticks_per_half):
        points.append((float(item.percentile_level_iterated_to), item.value_iterated_to / 1000.0))
    return points
