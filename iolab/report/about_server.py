"""What a report says about the server under test: only what iolab chose or saw, never the demo's facts.

iolab serves the demo and ``--app`` itself (uvicorn by default, from its own interpreter), so the server,
its loop, parser and access log are iolab's choices, and the demo's own packages are known. A ``--cmd``
server is the command the user gave; a ``--url`` server is known by ``/proc/PID`` (with ``--pid``) or not
at all: its language, event loop and threads are its own. These phrases are built from a results file's
``target`` and ``environment`` (older files, without ``environment.server``, read the same way).
"""

from __future__ import annotations

from collections.abc import Mapping

from iolab.results import RunResult


def _dict(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def served(target: Mapping[str, object]) -> bool:
    """Did iolab serve the app itself (the demo, --app)?"""
    return target.get("kind") in ("demo", "app")


def uvicorn_served(target: Mapping[str, object]) -> bool:
    # Files older than --server have no "server": only uvicorn existed then.
    return served(target) and target.get("server", "uvicorn") == "uvicorn"


def target_text(target: Mapping[str, object]) -> str:
    kind = target.get("kind")
    if served(target):
        return f"{target.get('app')} ({kind}, served by iolab with {target.get('server', 'uvicorn')})"
    if kind == "command":
        return f"{target.get('command')} (command started by iolab, ready at {target.get('url')})"
    if kind == "running":
        pid = target.get("pid")
        return f"{target.get('url')} (running server, " + (f"pid {pid})" if pid else "no --pid: not measured)")
    return f"{target.get('app') or target.get('url') or 'unknown'} ({kind})"


def server_text(result: RunResult) -> str:
    """The facts table's "server" row."""
    target, env = result.target, result.environment
    srv, pk, uv = _dict(env.get("server")), _dict(env.get("packages")), _dict(env.get("uvicorn"))
    kind = target.get("kind")
    if served(target):
        name = str(target.get("server", "uvicorn"))
        if name == "uvicorn":
            text = f"uvicorn {pk.get('uvicorn')} (loop {uv.get('loop')}, http {uv.get('http')}, access log on)"
        else:
            text = f"{name} {srv.get('version') or pk.get(name) or '(version not recorded)'} (access log on)"
        if kind == "demo":
            text += f"; the demo app: fastapi {pk.get('fastapi')}, aiologger {pk.get('aiologger')}"
        return text
    if kind == "command":
        argv = srv.get("command")
        command = " ".join(str(a) for a in argv) if isinstance(argv, list) else target.get("command")
        exe = srv.get("executable")
        return (f"{command} (executable {exe or 'not recorded'}); nothing else about it is known to iolab")
    cmdline = srv.get("cmdline")
    if kind == "running" and isinstance(cmdline, list):
        return f"pid {srv.get('pid')}: {' '.join(str(a) for a in cmdline)} (/proc/PID/cmdline)"
    return "unknown: iolab did not start this server and was given no --pid"


def stdout_text(result: RunResult) -> str:
    stdout = _dict(result.environment.get("stdout"))
    removed = bool(stdout.get("pythonunbuffered_in_our_env") and not stdout.get("pythonunbuffered_in_server_env"))
    note = " (PYTHONUNBUFFERED removed from the server's environment)" if removed else ""
    if served(result.target):
        return f"{stdout.get('kind')}, {stdout.get('buffering')}-buffered{note}"
    if result.target.get("kind") == "command":
        return f"{stdout.get('kind')}{note}; how the server buffers it is its own"
    return "not iolab's: a server iolab did not start keeps its own stdout"


def main_thread(target: Mapping[str, object]) -> str:
    """What the main thread is, where iolab knows it: uvicorn's event loop in a server iolab serves."""
    return "the main (event-loop) thread" if uvicorn_served(target) else "the main thread"


def threads_caption(result: RunResult) -> str:
    target = result.target
    if target.get("kind") == "demo" and uvicorn_served(target):
        return "`main` is the event loop; AnyIO worker threads run `def` endpoints"
    if uvicorn_served(target):
        return ("`main` is uvicorn's event loop; other threads carry their Python names (iolab names each OS "
                "thread after its Python thread)")
    return ("`main` is each server process's first thread; other threads carry the names the server gave "
            "them (/proc/PID/task/TID/comm)")
