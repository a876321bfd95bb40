"""The bearer token shared by ``iolab agent`` and ``iolab run --agent``, read from a file.

Refused when the file is missing, empty, shorter than 16 characters, or readable by the group or by others
(as ssh refuses a private key others can read), so a mistake is caught at start-up, not after a leak.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from iolab.errors import UsageError


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
