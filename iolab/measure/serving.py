"""Start a server iolab launches (a demo/app target or a --cmd) under a limit session and wait until it
answers: what the measured rounds and the explain round share, so that both start it the same way."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from iolab.errors import ServerStartError
from iolab.measure.limits import LimitSession
from iolab.measure.server import LOOPBACK, ServerProcess
from iolab.measure.sinks import Sink
from iolab.measure.targets import AppTarget, CommandTarget, app_port, command_port, url_for, wait_http_ready


@contextlib.contextmanager
def serve(target: AppTarget | CommandTarget, path: str, session: LimitSession, env: dict[str, str],
          sink: Sink, ready_timeout_s: float,
          detail: Callable[[], str] = lambda: "") -> Iterator[tuple[ServerProcess, str]]:
    """(server, url of ``path``) once the server is ready; stops it and closes ``sink`` on the way out.

    ``detail`` is read when the server fails to start (the tail of its output, say). A server the limit
    session's memory limit killed before it was ready says so instead of only "exited".
    """
    if isinstance(target, AppTarget):
        port = app_port(target)
        argv, url = target.argv(port), f"http://{LOOPBACK}:{port}{path}"
    else:
        command_port(target)
        argv, url = target.argv(), url_for(target.url, path)
    server = ServerProcess(session.wrap_command(argv), env=env, sink=sink, attach=session.attach, cwd=None)
    try:
        try:
            if isinstance(target, CommandTarget):
                wait_http_ready(url, server, ready_timeout_s, detail)
            else:
                server.wait_ready(LOOPBACK, port, ready_timeout_s, failure_detail=detail)
        except ServerStartError:
            oom = session.memory_limit_kill(server.poll())  # before the cgroup goes
            if oom:
                raise ServerStartError(f"{oom} before it was ready{detail()}") from None
            raise
        yield server, url
    finally:
        server.stop()
        sink.close()
