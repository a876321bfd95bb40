"""Who may ask the agent, and about which process.

The token is a shared secret in a file (read by measure/tokenfile.py, which refuses a file others can
read, as the client does). The bearer header is compared with ``hmac.compare_digest`` so the time taken does not tell how much matched.
A PID is allowed when listed (``--allow-pid``) or when its command line matches ``--allow-cmdline``; the
agent never starts, signals or traces a process, it only reads /proc.
"""

from __future__ import annotations

import hmac
import os
import re
from dataclasses import dataclass, field

from iolab.errors import ProbeError, UsageError
from iolab.measure import procfs

# HTTP statuses the server answers with: no or a wrong token, a PID outside the allow-list.
UNAUTHORIZED = 401
FORBIDDEN = 403


def _cmdline(pid: int, proc: str = "/proc") -> str:
    try:
        return " ".join(procfs.cmdline(pid, proc))
    except ProbeError:  # exited, or not ours to read
        return ""


@dataclass(frozen=True)
class Access:
    token: str
    pids: frozenset[int] = frozenset()
    cmdline: re.Pattern[str] | None = None
    proc: str = field(default="/proc")

    def authorized(self, header: str | None) -> bool:
        """Is ``header`` (the Authorization header's value) ``Bearer <token>``? Constant-time compare."""
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer "):].strip().encode(), self.token.encode())

    def allowed(self, pid: int) -> bool:
        if pid in self.pids:
            return True
        return self.cmdline is not None and bool(self.cmdline.search(_cmdline(pid, self.proc)))

    def allowed_pids(self) -> list[int]:
        """Every live process the agent may report on: the listed PIDs, then those whose cmdline matches."""
        found = {p for p in self.pids if os.path.exists(f"{self.proc}/{p}")}
        if self.cmdline is not None:
            me = os.getpid()
            for pid in procfs.pids(self.proc):
                if pid != me and self.cmdline.search(_cmdline(pid, self.proc)):
                    found.add(pid)
        return sorted(found)


def compile_cmdline(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"--allow-cmdline {pattern!r}: {exc}") from None
    if compiled.search(""):  # '', 'x*', '^': found in every command line, so every process would be allowed
        raise UsageError(f"--allow-cmdline {pattern!r} matches an empty command line, so every process of the "
                         "host would be allowed: give a pattern that names the server (e.g. uvicorn)")
    return compiled
