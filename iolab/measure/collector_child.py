"""The log collectors, run inside iolab's network namespace: rsyslogd, a JSON-lines receiver, a ``_bulk`` endpoint.

Run as a script by collectors.py (``ip netns exec NS python -I -S collector_child.py ADDR WORKDIR``); it
imports only the stdlib, so it runs outside the lab. It starts:

- ``rsyslogd`` (UDP and TCP on ``SYSLOG_PORT``) with a configuration, pid file and work directory of its
  own, in the foreground, writing each message's text to a file that a thread here reads back;
- a TCP receiver of JSON lines (``JSONL_PORT``), as a ``logging.handlers.SocketHandler``-style shipper or a
  Logstash/Fluent Bit ``tcp`` input would take them;
- an HTTP endpoint (``HTTP_PORT``) accepting the Elasticsearch/OpenSearch ``POST /_bulk`` body (NDJSON:
  an action line, then a document line) and answering as they do: ``{"took":…,"errors":false,"items":[…]}``.

Each counts what it received. A record is recognised anywhere in a received line by its marker,
``iolab-rec TAG SEQ T`` (the demo's message: the scenario's tag, a sequence number in that server, the
``time.time()`` when it was logged), so the count is the same whatever framing each transport adds, a
record seen twice is a duplicate, and the delay from logging to receipt is known (one clock: the same
machine). Connections and HTTP requests are counted too: a round trip per record shows there.

Control on stdin, one word a line, answers on stdout as one JSON line: ``stats`` (the counts so far),
``quit``. The first line out is ``ready {"rsyslogd": PID}`` (or ``error …``).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SYSLOG_PORT = 5514
JSONL_PORT = 5170
HTTP_PORT = 9200
MARK = re.compile(rb"iolab-rec ([\w.-]+) (\d+) (\d+(?:\.\d+)?)")
_PR_SET_PDEATHSIG = 1

RSYSLOG_CONF = """\
global(workDirectory="{wd}" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp" AddtlFrameDelimiter="0")
input(type="imudp" address="{addr}" port="{port}")
input(type="imtcp" address="{addr}" port="{port}")
template(name="iolab_raw" type="string" string="%rawmsg%\\n")
action(type="omfile" file="{wd}/syslog.log" template="iolab_raw")
"""


class Counts:
    """What every collector received, per tag; one lock (a few hundred records a second at most)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tags: dict[str, dict[str, object]] = {}
        self.connections = {"jsonl": 0, "http": 0}  # rsyslogd counts its own, not here
        self.http_requests = 0
        self.bytes = 0

    def feed(self, data: bytes) -> int:
        now = time.time()
        found = 0
        with self.lock:
            self.bytes += len(data)
            for m in MARK.finditer(data):
                tag = m.group(1).decode()
                entry = self.tags.setdefault(tag, {"seen": set(), "duplicated": 0, "max_delay_ms": 0.0})
                seen: set[int] = entry["seen"]  # type: ignore[assignment]
                seq = int(m.group(2))
                if seq in seen:
                    entry["duplicated"] = int(entry["duplicated"]) + 1  # type: ignore[call-overload]
                else:
                    seen.add(seq)
                delay = (now - float(m.group(3))) * 1000.0
                if delay > float(entry["max_delay_ms"]):  # type: ignore[arg-type]
                    entry["max_delay_ms"] = delay
                found += 1
        return found

    def snapshot(self) -> dict[str, object]:
        with self.lock:
            tags = {t: {"received": len(e["seen"]), "duplicated": e["duplicated"],  # type: ignore[arg-type]
                        "max_delay_ms": round(float(e["max_delay_ms"]), 3)}  # type: ignore[arg-type]
                    for t, e in self.tags.items()}
            return {"tags": tags, "connections": dict(self.connections), "http_requests": self.http_requests,
                    "bytes": self.bytes}


COUNTS = Counts()


class _JsonLines(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        with COUNTS.lock:
            COUNTS.connections["jsonl"] += 1
        for line in self.rfile:
            COUNTS.feed(line)


class _Bulk(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Elasticsearch

    def setup(self) -> None:
        super().setup()
        with COUNTS.lock:
            COUNTS.connections["http"] += 1

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        # What a client's health check reads from Elasticsearch's root.
        self._answer(200, {"name": "iolab-collector", "cluster_name": "iolab",
                           "version": {"number": "8.0.0", "distribution": "iolab-bulk"},
                           "tagline": "You Know, for Search"})

    def do_POST(self) -> None:  # noqa: N802
        t0 = time.monotonic()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with COUNTS.lock:
            COUNTS.http_requests += 1
        if not self.path.split("?")[0].endswith("/_bulk"):
            self._answer(404, {"error": f"no handler for {self.path}", "status": 404})
            return
        lines = [ln for ln in body.split(b"\n") if ln.strip()]
        items: list[dict[str, object]] = []
        index = "logs"
        for i, line in enumerate(lines):
            if i % 2 == 0:  # the action line: {"index": {"_index": …}} or {"create": …}
                try:
                    action = json.loads(line)
                    verb = next(iter(action))
                    index = action[verb].get("_index", index) if isinstance(action[verb], dict) else index
                except (ValueError, StopIteration, AttributeError):
                    self._answer(400, {"error": {"type": "illegal_argument_exception",
                                                 "reason": f"Malformed action/metadata line [{i + 1}]"},
                                       "status": 400})
                    return
                continue
            COUNTS.feed(line)
            items.append({verb: {"_index": index, "_id": str(len(items)), "_version": 1, "result": "created",
                                 "_shards": {"total": 1, "successful": 1, "failed": 0}, "status": 201}})
        self._answer(200, {"took": int((time.monotonic() - t0) * 1000), "errors": False, "items": items})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def _tail(path: str, stop: threading.Event) -> None:
    """rsyslogd's output file, read as it grows."""
    while not os.path.exists(path) and not stop.is_set():
        time.sleep(0.02)
    with open(path, "rb") as f:
        rest = b""
        while not stop.is_set():
            chunk = f.read(1 << 20)
            if not chunk:
                time.sleep(0.02)
                continue
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            COUNTS.feed(data[:cut])


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _start_rsyslogd(addr: str, wd: str) -> subprocess.Popen[bytes] | None:
    exe = next((p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.path.exists(p)), None)
    if exe is None:
        return None
    conf = os.path.join(wd, "rsyslog.conf")
    with open(conf, "w") as f:
        f.write(RSYSLOG_CONF.format(wd=wd, addr=addr, port=SYSLOG_PORT))
    open(os.path.join(wd, "syslog.log"), "wb").close()
    return subprocess.Popen([exe, "-n", "-f", conf, "-i", os.path.join(wd, "rsyslogd.pid")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(wd, "rsyslogd.err"), "wb"),
                            preexec_fn=_die_with_parent)


def _wait_listening(addr: str, port: int, proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection((addr, port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def main(argv: list[str]) -> int:
    addr, wd = argv
    _die_with_parent()
    jsonl = _TCPServer((addr, JSONL_PORT), _JsonLines)
    http = _Server((addr, HTTP_PORT), _Bulk)
    for srv in (jsonl, http):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    stop = threading.Event()
    rsyslogd = _start_rsyslogd(addr, wd)
    if rsyslogd is not None:
        if not _wait_listening(addr, SYSLOG_PORT, rsyslogd):
            err = open(os.path.join(wd, "rsyslogd.err"), "rb").read().decode(errors="replace").strip()
            rsyslogd.kill()
            print(f"error rsyslogd did not start: {err.splitlines()[-1] if err else 'no output'}", flush=True)
            return 1
        threading.Thread(target=_tail, args=(os.path.join(wd, "syslog.log"), stop), daemon=True).start()
    print("ready " + json.dumps({"rsyslogd": rsyslogd.pid if rsyslogd else None}), flush=True)
    try:
        for line in sys.stdin:
            word = line.strip()
            if word == "stats":
                print(json.dumps(COUNTS.snapshot()), flush=True)
            elif word == "quit":
                break
    finally:
        stop.set()
        if rsyslogd is not None:
            rsyslogd.terminate()
            try:
                rsyslogd.wait(5)
            except subprocess.TimeoutExpired:
                rsyslogd.kill()
                rsyslogd.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
