"""Options that more than one command takes, declared and parsed once (``iolab run``, ``iolab sweep``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from iolab.errors import UsageError
from iolab.limits import LimitsRequest, parse_cpus, parse_memory

F = TypeVar("F", bound=Callable[..., Any])


def limit_options(f: F) -> F:
    """--cpus, --memory, --pin/--no-pin, --require-limits (the seed's 0.5 CPU and 256 MB by default)."""
    for option in reversed((
        click.option("--cpus", default="0.5", show_default=True, help="CPU limit for the server (0 = none)."),
        click.option("--memory", default="256M", show_default=True,
                     help="Memory limit for the server (0 = none)."),
        click.option("--pin/--no-pin", default=True, show_default=True,
                     help="Pin the server and the load driver to different cores."),
        click.option("--require-limits", is_flag=True, help="Fail instead of running without the limits."),
    )):
        f = option(f)
    return f


def limits_request(kw: dict[str, Any]) -> LimitsRequest:
    """The parsed values of :func:`limit_options`; unreadable ones are a one-line UsageError."""
    try:
        cpus = parse_cpus(str(kw["cpus"]))
    except ValueError:
        raise UsageError(f"cannot read --cpus {kw['cpus']!r} (e.g. 0.5, 2, or 0 for none)") from None
    text = str(kw["memory"]).strip()
    try:
        memory = None if text in ("0", "none", "") else parse_memory(text)
    except ValueError:
        raise UsageError(f"cannot read --memory {kw['memory']!r} (e.g. 256M, 1G, or 0 for none)") from None
    return LimitsRequest(cpus=cpus, memory_bytes=memory, pin=kw["pin"], require=kw["require_limits"])
