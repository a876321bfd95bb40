"""The explain pass's options of ``iolab run`` (issue 17, docs/explain.md), as one decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from iolab.errors import TracerError

F = TypeVar("F", bound=Callable[..., Any])


def explain_options(f: F) -> F:
    """--explain/--no-explain, --explain-requests, --explain-method."""
    for option in reversed((
        click.option("--explain/--no-explain", "explain", default=True, show_default=True,
                     help="After the measured rounds, one traced round per scenario: where each output syscall "
                          "goes, from which thread, and which Python line waits (never in the measured figures)."),
        click.option("--explain-requests", default=2000, show_default=True, type=click.IntRange(2),
                     metavar="N", help="Requests of each explain round."),
        click.option("--explain-method", type=click.Choice(["auto", "bpftrace", "strace", "none"]),
                     default="auto", show_default=True,
                     help="The tracer: auto = bpftrace where it can run, else strace."),
    )):
        f = option(f)
    return f


def explain_config(kw: dict[str, Any]) -> dict[str, Any]:
    """RunConfig's explain fields from the parsed options (absent options: the pass is off).

    A tracer named by the user that cannot run here stops the run before anything is measured (exit 5), as
    a network that cannot be built does: `auto` falls back and says so, a named one would silently be none.
    """
    method = kw.get("explain_method")
    if kw.get("explain") and method in ("bpftrace", "strace") and not kw.get("agent"):
        from iolab.measure.explain.tracer import choose

        tracer, why = choose(method)
        if tracer is None:
            raise TracerError(f"--explain-method {method}: {'; '.join(why)} (--explain-method auto takes what "
                              "can run, --no-explain skips the pass)")
    return {"explain": bool(kw.get("explain", False)), "explain_requests": int(kw.get("explain_requests") or 2000),
            "explain_method": kw.get("explain_method") or "auto"}
