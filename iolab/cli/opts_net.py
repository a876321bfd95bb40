"""``iolab run``'s network options (issue 20), declared and parsed here: one decorator, one parse call.

    --net-delay 2ms --net-jitter 0.5ms --net-loss 1 --collector-outage 5s:3s

Any of them, or a scenario of the ``network`` group, makes iolab build its namespace, link and collectors
(measure/netns.py, collectors.py); see docs/network.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from iolab.cli.options import FiniteRange
from iolab.errors import UsageError
from iolab.measure.drivers.base import parse_duration
from iolab.measure.netrun import NetRequest

F = TypeVar("F", bound=Callable[..., Any])


def net_options(f: F) -> F:
    """--net-delay, --net-jitter, --net-loss, --collector-outage."""
    for option in reversed((
        click.option("--net-delay", "net_delay", default=None, metavar="D",
                     help="Add this delay to every round trip between the server and its log collector "
                          "(e.g. 2ms): iolab builds a network namespace with the collectors in it."),
        click.option("--net-jitter", "net_jitter", default=None, metavar="D",
                     help="Uniform jitter on that delay (e.g. 0.5ms)."),
        click.option("--net-loss", "net_loss", default=None, type=FiniteRange(0, 100, max_open=True),
                     metavar="PCT", help="Lose this percentage of the packets on the link, each way."),
        click.option("--collector-outage", "collector_outage", default=None, metavar="START:DURATION",
                     help="Stop the collectors START into each measured load for DURATION (e.g. 5s:3s)."),
    )):
        f = option(f)
    return f


def _ms(text: str | None, option: str) -> float:
    if text is None:
        return 0.0
    if text.strip() in ("0", "0ms", "0s"):
        return 0.0
    try:
        return round(parse_duration(text) * 1000.0, 6)
    except UsageError as exc:
        raise UsageError(f"{option} {text!r}: {exc}") from None


def net_request(kw: dict[str, Any], scenarios: Sequence[Any]) -> NetRequest | None:
    """The run's network, or None: only when a --net-* option was given or a network scenario selected."""
    outage = None
    if kw.get("collector_outage"):
        start, sep, duration = str(kw["collector_outage"]).partition(":")
        if not sep:
            raise UsageError(f"--collector-outage {kw['collector_outage']!r}: expected START:DURATION (e.g. 5s:3s)")
        try:
            begin = 0.0 if start.strip() in ("0", "0s") else parse_duration(start)
            outage = (begin, parse_duration(duration))
        except UsageError as exc:
            raise UsageError(f"--collector-outage {kw['collector_outage']!r}: {exc}") from None
    request = NetRequest(delay_ms=_ms(kw.get("net_delay"), "--net-delay"),
                         jitter_ms=_ms(kw.get("net_jitter"), "--net-jitter"),
                         loss_pct=float(kw.get("net_loss") or 0.0), outage=outage)
    asked = any(kw.get(k) is not None for k in ("net_delay", "net_jitter", "net_loss", "collector_outage"))
    from iolab.demo.scenarios import BY_NAME

    networked = any(getattr(BY_NAME.get(s.name), "network", False) for s in scenarios)
    if not (asked or networked):
        return None
    if kw.get("url"):
        raise UsageError("--net-* and the network scenarios need a server that iolab starts (the demo, --app or "
                         "--cmd): a running server at --url cannot be given the collector's address")
    if not networked and not (kw.get("app") or kw.get("cmd")):
        # A demo scenario that logs to stdout never reaches the collectors: the link's delay, loss or outage
        # would be recorded with the run, but could not have changed a figure.
        names = ",".join(s.name for s in scenarios)
        raise UsageError(f"--net-* impairs the link to the log collectors, and none of the scenarios given ({names}) "
                         "logs across it: add a network scenario (--scenario network, see iolab scenarios) or "
                         "use --app/--cmd")
    return request
