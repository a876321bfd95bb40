"""``iolab agent``: serve the probe of this host's processes to a remote ``iolab run`` and to Prometheus."""

from __future__ import annotations

import resource
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from iolab.cli.opts_scale import host_port
from iolab.errors import UsageError


@click.command("agent")
@click.option("--listen", required=True, metavar="HOST:PORT",
              help="Address to bind (only this one); port 0 picks a free port, printed at start.")
@click.option("--token-file", required=True, type=click.Path(path_type=Path),
              help="File holding the bearer token (mode 600; refused if the group or others can read it).")
@click.option("--allow-pid", "allow_pids", multiple=True, type=click.IntRange(1), metavar="PID",
              help="A process the agent may report on (repeatable).")
@click.option("--allow-cmdline", default=None, metavar="REGEX",
              help="Also allow every process whose command line matches this regular expression.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), default=None, help="Serve HTTPS.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), default=None)
def agent_command(listen: str, token_file: Path, allow_pids: tuple[int, ...], allow_cmdline: str | None,
                  tls_cert: str | None, tls_key: str | None) -> None:
    """Serve /metrics and sampling windows of this host's processes, read-only, behind a token.

    \b
    Examples:
      iolab agent --listen 10.0.0.5:9464 --token-file ~/.iolab-token --allow-cmdline uvicorn
      iolab run --url http://10.0.0.5:8000/ --allow-remote --pid 4242 \\
                --agent http://10.0.0.5:9464 --agent-token-file ~/.iolab-token --duration 20s
    """
    from iolab.agent.access import Access, compile_cmdline
    from iolab.agent.server import AgentServer, AgentState, tls_context
    from iolab.measure.tokenfile import read_token

    # The agent binds only the host it is given: no default.
    host, port = host_port(listen, "--listen", "10.0.0.5:9464")
    if bool(tls_cert) != bool(tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    if not allow_pids and allow_cmdline is None:
        raise UsageError("allow at least one process: --allow-pid PID or --allow-cmdline REGEX")
    access = Access(read_token(token_file), frozenset(allow_pids), compile_cmdline(allow_cmdline))
    try:
        tls = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--tls-cert/--tls-key: {exc}") from None
    state = AgentState(access)
    try:
        server = AgentServer(host, port, state, tls)
    except OSError as exc:
        raise UsageError(f"--listen {listen}: cannot bind ({exc.strerror})") from None
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Our own handlers: a SIGTERM ends the agent cleanly (exit 0), not as an interrupted run.
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=server.serve_forever, name="iolab-agent", daemon=True)
    thread.start()
    click.echo(f"iolab agent: listening on {server.url}", err=False)
    sys.stdout.flush()
    try:
        while not stop.wait(3600):
            pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        for s, h in previous.items():
            signal.signal(s, h)
    cpu_s, readings = state.cost()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    each = f", {1000 * cpu_s / readings:.3f} ms CPU each" if readings else ""
    click.echo(f"iolab agent: stopped; {readings} readings for sampling windows{each}; "
               f"agent CPU {ru.ru_utime + ru.ru_stime:.2f} s in all", err=True)
