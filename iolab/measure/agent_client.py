"""``AgentProbe``: the local ``Probe``'s interface, served by an ``iolab agent`` on the server's host.

The experiment loop calls start / read / stop / samples / started_t_s / error exactly as on the local
probe; readings and samples come from the agent's own clock and /proc, so every per-request count is
computed the same way as locally (probe.delta, thread_totals, window_samples). HTTP with the stdlib
(urllib): one request per reading, a few per round. The agent's CPU per reading comes back when the
window closes and goes into the record (``environment.probe``).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from iolab.errors import AgentError, NoSuchProcess, UsageError
from iolab.measure.probe import Counters, Probe, SamplingWindow
from iolab.measure.probe_wire import counters_from_json, samples_from_json
from iolab.measure.tokenfile import read_token
from iolab.results import Sample

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class AgentSpec:
    url: str  # http(s)://host:port of the agent
    token: str
    ca_file: str | None = None  # verify an HTTPS agent against this CA (else the system's)

    def describe(self) -> dict[str, object]:
        return {"kind": "agent", "url": self.url, "tls": self.url.startswith("https:")}


def agent_spec(url: str, token_file: Path, ca_file: str | None) -> AgentSpec:
    """Check the options; the token file is read as the agent reads it (mode 600, at least 16 characters)."""
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--agent {url!r}: expected http://HOST:PORT or https://HOST:PORT")
    if ca_file is not None and not url.startswith("https://"):
        raise UsageError("--agent-ca goes with an https:// agent")
    try:
        token = read_token(token_file)
    except UsageError as exc:
        raise UsageError(str(exc).replace("--token-file", "--agent-token-file", 1)) from None
    return AgentSpec(url.rstrip("/"), token, ca_file)


class ProbeLike(Protocol):
    """What the experiment loop uses of a probe (measure/probe.py's Probe, or AgentProbe)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def read(self) -> Counters: ...
    @property
    def samples(self) -> tuple[Sample, ...]: ...
    @property
    def started_t_s(self) -> float: ...
    @property
    def error(self) -> BaseException | None: ...


class AgentClient:
    def __init__(self, spec: AgentSpec) -> None:
        self.spec = spec
        self._ctx: ssl.SSLContext | None = None
        if spec.url.startswith("https://"):
            self._ctx = ssl.create_default_context(cafile=spec.ca_file)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.spec.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.spec.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S, context=self._ctx) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AgentError(f"cannot reach the agent at {self.spec.url}: {reason}") from None

    def _http_error(self, exc: urllib.error.HTTPError) -> Exception:
        try:
            msg = str(json.loads(exc.read()).get("error"))
        except (ValueError, AttributeError, OSError):
            msg = exc.reason
        if exc.code == 401:
            return AgentError(f"the agent at {self.spec.url} refused the token (401); check --agent-token-file")
        if exc.code == 403:
            return AgentError(f"the agent at {self.spec.url} refused (403): {msg}")
        if exc.code == 404 and "no window" not in msg and "no such route" not in msg:
            return NoSuchProcess(f"the agent says: {msg}")
        return AgentError(f"the agent at {self.spec.url} answered {exc.code}: {msg}")


class AgentProbe(SamplingWindow):
    """A sampling window on the agent; the same calls as ``Probe``."""

    def __init__(self, pid: int, spec: AgentSpec, *, interval_s: float = 1.0) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self._client = AgentClient(spec)
        self._id: str | None = None
        self._started_t_s: float | None = None
        self._final: tuple[Sample, ...] | None = None
        self._error: BaseException | None = None
        self.cost: dict[str, Any] = {}

    def start(self) -> None:
        if self._id is not None:
            raise RuntimeError("AgentProbe.start() called twice")
        out = self._client.call("POST", "/v1/windows", {"pid": self.pid, "interval_s": self.interval_s})
        self._id, self._started_t_s = str(out["id"]), float(out["started_t_s"])

    def read(self) -> Counters:
        if self._id is None:  # a one-off reading, as Probe.read() before start()
            out = self._client.call("POST", "/v1/windows", {"pid": self.pid, "interval_s": self.interval_s})
            self._client.call("DELETE", f"/v1/windows/{out['id']}")
            return counters_from_json(out["reading"])
        return counters_from_json(self._client.call("GET", f"/v1/windows/{self._id}")["reading"])

    def stop(self) -> None:
        if self._id is None or self._final is not None:
            return
        try:
            out = self._client.call("DELETE", f"/v1/windows/{self._id}")
            self._final = samples_from_json(out.get("samples"))
            self.cost = dict(out.get("cost") or {})
            if out.get("error"):
                self._error = NoSuchProcess(f"the agent's sampling stopped: {out['error']}")
        except (AgentError, NoSuchProcess) as exc:  # stop() runs in a finally: keep the error, do not mask
            self._final, self._error = (), exc

    @property
    def samples(self) -> tuple[Sample, ...]:
        if self._final is not None:
            return self._final
        if self._id is None:
            return ()
        return samples_from_json(self._client.call("GET", f"/v1/windows/{self._id}/samples")["samples"])

    def process(self) -> dict[str, Any]:
        """What the agent knows of the process: alive, cmdline, executable."""
        out: dict[str, Any] = self._client.call("GET", f"/v1/processes/{self.pid}")
        return out


def make_probe(agent: AgentSpec | None, pid: int, interval_s: float) -> ProbeLike:
    return AgentProbe(pid, agent, interval_s=interval_s) if agent is not None else Probe(pid, interval_s=interval_s)
