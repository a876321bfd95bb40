"""Options that more than one command takes, declared and parsed once (``iolab run``, ``iolab sweep``),
and :func:`option_group`, which makes one decorator of several options."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import click

from iolab.errors import UsageError
from iolab.measure.limits import LimitsRequest, check_memory_limit, parse_cpus, parse_memory

F = TypeVar("F", bound=Callable[..., Any])


class FiniteRange(click.FloatRange):
    """click.FloatRange that refuses nan and inf: nan passes every range check (all its comparisons are
    false), then reaches the results as invalid JSON or makes a threshold that never trips."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


class Options(Protocol):
    """A decorator that adds click options to a command function."""

    def __call__(self, f: F, /) -> F: ...


def option_group(*options: Options) -> Options:
    """Several click options as one decorator, applied in the order given (so `--help` lists them so)."""

    def apply(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


# --cpus, --memory, --pin/--no-pin, --require-limits (the seed's 0.5 CPU and 256 MB by default).
limit_options = option_group(
    click.option("--cpus", default="0.5", show_default=True,
                 help="CPU limit for the server (0 = none; at least 0.01)."),
    click.option("--memory", default="256M", show_default=True,
                 help="Memory limit for the server (0 = none; at least 32M)."),
    click.option("--pin/--no-pin", default=True, show_default=True,
                 help="Pin the server and the load driver to different cores."),
    click.option("--require-limits", is_flag=True, help="Fail instead of running without the limits."),
)


def limits_request(kw: dict[str, Any]) -> LimitsRequest:
    """The parsed values of :func:`limit_options`; unreadable or too small ones are a one-line UsageError.

    Checked before anything starts: a limit below the minimum (limits.MIN_MEMORY_BYTES, MIN_CPUS) would
    only measure the OOM killer or the throttle.
    """
    try:
        cpus = parse_cpus(str(kw["cpus"]))
    except ValueError as exc:
        raise UsageError(f"--cpus {kw['cpus']}: {exc}") from None
    text = str(kw["memory"]).strip()
    try:
        memory = None if text in ("0", "none", "") else parse_memory(text)
        check_memory_limit(memory)
    except ValueError as exc:
        raise UsageError(f"--memory {kw['memory']}: {exc}") from None
    return LimitsRequest(cpus=cpus, memory_bytes=memory, pin=kw["pin"], require=kw["require_limits"])
