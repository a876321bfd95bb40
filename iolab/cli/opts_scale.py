"""``iolab run`` options for measuring past one machine (issue 21): the remote probe and Locust's fleet.

One decorator (``scale_options``) on the run command, and ``scale_fields`` turning the parsed options
into RunConfig's ``agent`` and ``locust`` fields.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from iolab.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = (
    click.option("--agent", "agent_url", default=None, metavar="URL",
                 help="Sample --pid through an `iolab agent` on the server's host (http(s)://HOST:PORT) "
                      "instead of this host's /proc."),
    click.option("--agent-token-file", type=click.Path(path_type=Path), default=None,
                 help="The agent's bearer token (a file of mode 600)."),
    click.option("--agent-ca", type=click.Path(dir_okay=False, exists=True), default=None,
                 help="CA certificate to verify an https:// agent with."),
    click.option("--locust-workers", default=2, show_default=True, type=click.IntRange(0),
                 help="--driver locust: Locust worker processes started on this host."),
    click.option("--locust-master", default=None, metavar="HOST:PORT",
                 help="--driver locust: bind the master here so workers on other hosts can join "
                      "(python -m iolab.measure.locust_fleet worker HOST:PORT)."),
    click.option("--locust-remote-workers", default=0, show_default=True, type=click.IntRange(0),
                 help="--driver locust: how many workers from other hosts the master waits for."),
)


def scale_options(func: F) -> F:
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def host_port(text: str, option: str, example: str) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' → (host, port), no default host; UsageError naming ``option`` otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{option} {text!r}: expected HOST:PORT, e.g. {example}")
    return host, int(port)


def _locust_master(text: str) -> tuple[str, int]:
    host, port = host_port(text, "--locust-master", "10.0.0.7:5557")
    # Bound once now: an address that is not this host's, or a port in use, would otherwise fail in the
    # master's traceback after the server started (exit 6), as a driver failure rather than bad input.
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
    except OSError as exc:
        raise UsageError(f"--locust-master {text!r}: cannot bind ({exc.strerror or exc})") from None
    return host, port


def scale_fields(kw: dict[str, Any]) -> dict[str, Any]:
    """RunConfig's ``agent`` and ``locust`` from the options; UsageError for a combination that cannot run."""
    from iolab.measure.agent_client import agent_spec
    from iolab.measure.drivers.locust import LocustOptions

    out: dict[str, Any] = {"agent": None, "locust": None}
    url = kw.get("agent_url")
    if url:
        if kw.get("pid") is None or not kw.get("url") or kw.get("cmd"):
            raise UsageError("--agent samples a running server on another host: it needs --url and --pid")
        if kw.get("agent_token_file") is None:
            raise UsageError("--agent needs --agent-token-file (the agent refuses requests without its token)")
        out["agent"] = agent_spec(url, kw["agent_token_file"], kw.get("agent_ca"))
    elif kw.get("agent_token_file") or kw.get("agent_ca"):
        raise UsageError("--agent-token-file and --agent-ca go with --agent URL")
    locust_given = kw.get("locust_master") or kw.get("locust_remote_workers") or kw.get("locust_workers", 2) != 2
    if kw.get("driver") == "locust":
        master = _locust_master(kw["locust_master"]) if kw.get("locust_master") else None
        remote = kw.get("locust_remote_workers") or 0
        if remote and master is None:
            raise UsageError("--locust-remote-workers needs --locust-master HOST:PORT for them to join")
        workers = kw.get("locust_workers", 2)
        if workers + remote < 1:
            raise UsageError("--driver locust needs at least one worker (--locust-workers, --locust-remote-workers)")
        out["locust"] = LocustOptions(workers=workers, master=master, remote_workers=remote)
    elif locust_given:
        raise UsageError("--locust-* options go with --driver locust")
    return out
