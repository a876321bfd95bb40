"""Network sinks for BatchHandler: a batch of records is one ``sendall`` on a kept TCP connection, or one
Elasticsearch/OpenSearch ``_bulk`` request on a kept HTTP/1.1 connection.

    from iolab.logging import BatchHandler
    from iolab.logging.sinks import BulkHTTPSink, TCPSink

    handler = BatchHandler(BulkHTTPSink("http://es:9200/_bulk", index="app-logs"), policy="drop_newest")
    handler = BatchHandler(TCPSink("logstash", 5170))  # one line per record (use a JSON formatter)

Both are file-like objects without a file descriptor (``write(text)``, ``flush()``), which BatchHandler
writes from its writer thread only, so the caller's thread never waits on the network: a slow or dead
collector costs the caller nothing until the handler's memory budget (``max_bytes``) is full, and then
what ``policy`` says (block up to ``block_timeout``, or drop and count). A write that fails (refused,
reset, timed out, an HTTP error, ``"errors": true`` in the answer) raises ``OSError``: the handler counts
the batch's records as dropped (``handler.dropped``) and the next batch reconnects. No retries: a batch
the collector may have half-received is never sent twice, so a loss is counted, a duplicate never made.

Counts, for whoever measures the sink: ``records`` sent, ``batches``, ``connections`` opened,
``failures``.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
from typing import Generic, TypeVar

# The connection a sink keeps between batches.
_Conn = TypeVar("_Conn", socket.socket, http.client.HTTPConnection)


class _NetSink(Generic[_Conn]):
    def __init__(self, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = float(timeout)
        self.records = self.batches = self.connections = self.failures = 0
        self._lock = threading.Lock()  # close() may come from another thread than the writer
        self._conn: _Conn | None = None  # opened by _send, forgotten after a failure: the next batch reconnects

    def fileno(self) -> int:
        # BatchHandler asks; having none makes it call write() with whole batches.
        raise OSError("a network sink has no file descriptor")

    def flush(self) -> None:
        pass

    def write(self, text: str) -> int:
        lines = [ln for ln in text.split("\n") if ln]
        with self._lock:
            try:
                self._send(lines)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.failures += 1
                self._drop_connection()
                raise OSError(f"{type(self).__name__}: {exc}") from exc
            self.records += len(lines)
            self.batches += 1
        return len(text)

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    def _send(self, lines: list[str]) -> None:
        raise NotImplementedError

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stats(self) -> dict[str, int]:
        return {"records": self.records, "batches": self.batches, "connections": self.connections,
                "failures": self.failures}


class TCPSink(_NetSink[socket.socket]):
    """Newline-terminated records on one kept TCP connection (a Logstash/Fluent Bit/Vector ``tcp`` input)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        super().__init__(timeout)
        self.address = (host, int(port))

    def _send(self, lines: list[str]) -> None:
        if self._conn is None:
            self._conn = socket.create_connection(self.address, timeout=self.timeout)
            self._conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections += 1
        self._conn.sendall(("\n".join(lines) + "\n").encode("utf-8", "backslashreplace"))

    def __repr__(self) -> str:
        return f"<TCPSink {self.address[0]}:{self.address[1]}>"


class BulkHTTPSink(_NetSink[http.client.HTTPConnection]):
    """Each batch one ``POST …/_bulk``: an ``index`` action and a ``{"@timestamp", "message"}`` document per
    record, on a kept HTTP/1.1 connection. A record that is already a JSON object is sent as the document."""

    def __init__(self, url: str, index: str = "logs", timeout: float = 10.0) -> None:
        super().__init__(timeout)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._path = parts.path or "/_bulk"
        self._action = json.dumps({"index": {"_index": index}}, separators=(",", ":"))

    def _document(self, line: str) -> str:
        if line.startswith("{") and line.endswith("}"):
            return line
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return json.dumps({"@timestamp": ts, "message": line}, separators=(",", ":"))

    def _send(self, lines: list[str]) -> None:
        body = "".join(f"{self._action}\n{self._document(ln)}\n" for ln in lines).encode("utf-8", "backslashreplace")
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.timeout)
            self._conn.connect()
            self.connections += 1
        self._conn.request("POST", self._path, body=body, headers={"Content-Type": "application/x-ndjson"})
        resp = self._conn.getresponse()
        answer = resp.read()
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status} from {self.url}: {answer[:200]!r}")
        if json.loads(answer).get("errors"):
            raise OSError(f"{self.url} answered errors: true (some documents were rejected)")
        if resp.will_close:
            self._drop_connection()

    def __repr__(self) -> str:
        return f"<BulkHTTPSink {self.url}>"
