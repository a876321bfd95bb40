"""``iolab run --try KNOB=VALUE[,VALUE…] [--try-combinations]``: the options and their one hook into the
config (iolab.measure.trying does the work; docs/try.md says what each knob does)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from iolab.measure.config import RunConfig

F = TypeVar("F", bound=Callable[..., Any])


def try_options(f: F) -> F:
    f = click.option("--try-combinations", "try_combinations", is_flag=True,
                     help="Measure every combination of the --try values, not one knob at a time.")(f)
    f = click.option("--try", "try_knobs", multiple=True, metavar="KNOB=VALUE[,VALUE…]",
                     help="Run your unmodified app (--app, or --cmd running Python) also with this knob set, "
                          "each value a variant measured against as-is in the same rounds: logging=as-is,off,"
                          "stream,queue,batch; access-log=on,off; print=on,off; buffering=as-is,block,line,"
                          "unbuffered. Repeatable (docs/try.md).")(f)
    return f


def apply_try(config: RunConfig, kw: dict[str, Any]) -> RunConfig:
    """The config with the --try variants added (UsageError, exit 2, for a bad knob or a server we do not
    start)."""
    from iolab.measure.trying import expand, parse_try

    return expand(config, parse_try(tuple(kw.get("try_knobs") or ()), bool(kw.get("try_combinations"))))
