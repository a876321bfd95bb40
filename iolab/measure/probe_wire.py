"""The probe's readings and samples as JSON, for the agent's HTTP API (iolab/agent) and its client.

Plain dicts of the dataclasses' fields; per-thread counters as lists (a reading of a busy server has
hundreds of threads, so field names are written once). ``from_*`` raise ``ProbeError`` on anything that
does not fit, so a bad or hostile answer is an ``error:`` line, not a traceback.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from iolab.errors import ProbeError
from iolab.measure.probe import Counters, ThreadCounters
from iolab.results import Sample

_THREAD_FIELDS = tuple(f.name for f in fields(ThreadCounters))
_COUNTER_FIELDS = tuple(f.name for f in fields(Counters) if f.name != "per_thread")
_SAMPLE_FIELDS = tuple(f.name for f in fields(Sample))


def counters_to_json(c: Counters) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(c, name) for name in _COUNTER_FIELDS}
    out["thread_fields"] = list(_THREAD_FIELDS)
    out["per_thread"] = [[getattr(t, name) for name in _THREAD_FIELDS] for t in c.per_thread]
    return out


def counters_from_json(data: Any) -> Counters:
    try:
        names = data["thread_fields"]
        threads = tuple(ThreadCounters(**dict(zip(names, row, strict=True))) for row in data["per_thread"])
        values = {name: data[name] for name in _COUNTER_FIELDS}
        for name in ("t_s", "cpu_user_s", "cpu_sys_s"):
            values[name] = float(values[name])
        return Counters(**values, per_thread=threads)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProbeError(f"the agent sent a reading iolab cannot read ({exc!r})") from None


def samples_to_json(samples: tuple[Sample, ...] | list[Sample]) -> list[dict[str, Any]]:
    return [asdict(s) for s in samples]


def samples_from_json(data: Any) -> tuple[Sample, ...]:
    try:
        return tuple(Sample(**{name: item[name] for name in _SAMPLE_FIELDS}) for item in data)
    except (KeyError, TypeError) as exc:
        raise ProbeError(f"the agent sent samples iolab cannot read ({exc!r})") from None
