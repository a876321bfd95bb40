"""Who may ask the agent, and about which process.

The token is a shared secret in a file: refused when the file is missing, empty, or readable by the group
or by others (as ssh refuses a private key), so a mistake is caught at start-up, not after a leak. The
bearer header is compared with ``hmac.compare_digest`` so the time taken does not tell how much matched.
A PID is allowed when listed (``--allow-pid``) or when its command line matches ``--allow-cmdline``; the
agent never starts, signals or traces a process, it only reads /proc.
"""

from __future__ import annotations

import hmac
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from iolab.errors import UsageError

# HTTP statuses the server answers with: no or a wrong token, a PID outside the allow-list.
UNAUTHORIZED = 401
FORBIDDEN = 403


def read_token(path: Path) -> str:
    """The token in ``path``; ``UsageError`` if missing, empty, or readable by anyone but its owner."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UsageError(f"--token-file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"--token-file {path}: not a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"--token-file {path}: readable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
                         f"run: chmod 600 {path}")
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--token-file {path}: cannot read it ({exc})") from None
    if len(token) < 16:
        raise UsageError(f"--token-file {path}: the token must be at least 16 characters "
                         "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def _cmdline(pid: int, proc: str = "/proc") -> str:
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
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
            for name in os.listdir(self.proc):
                if name.isdigit() and int(name) != me and self.cmdline.search(_cmdline(int(name), self.proc)):
                    found.add(int(name))
        return sorted(found)


def compile_cmdline(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"--allow-cmdline {pattern!r}: {exc}") from None
