"""Latency samples in an HdrHistogram (µs, 3 significant digits) and the seed's percentile rows."""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

from iolab.results import LatencyMs

# 1 µs to 1 hour at 3 significant digits: every value is kept to within 0.1 %, never in whole-ms buckets.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3


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

    return LatencyMs(
        p50=at(50), p66=at(66), p75=at(75), p80=at(80), p90=at(90), p95=at(95), p98=at(98), p99=at(99),
        p99_9=at(99.9), p100=round(h.get_max_value() / 1000.0, 3), mean=round(h.get_mean_value() / 1000.0, 3),
    )


def spectrum(h: HdrHistogram, ticks_per_half: int = 5) -> list[tuple[float, float]]:
    """(percentile, ms) points for a percentile-spectrum chart (HdrHistogram's percentile iterator)."""
    points: list[tuple[float, float]] = []
    for item in h.get_percentile_iterator(ticks_per_half):
        points.append((float(item.percentile_level_iterated_to), item.value_iterated_to / 1000.0))
    return points
