"""Temporary directories named after the iolab that owns them, and the sweep of those whose owner is gone.

A ``with tempfile.TemporaryDirectory()`` is removed on every way out of Python, but not when iolab is
killed with SIGKILL (or the OOM killer): its children die with it (procs.die_with_parent) and the directory
stays. So each one carries its owner's PID, ``iolab-<kind>-<pid>-XXXX``, and every new one first removes
those of an owner that no longer runs, as the network's directories are (netrun.sweep_stale_dirs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

KINDS = ("ab", "wrk", "hey", "locust", "micro", "try")


def sweep_stale() -> list[str]:
    """Remove ``iolab-<kind>-<pid>-*`` directories whose <pid> is not running; their names."""
    removed = []
    base = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            parts = name.split("-")
            if len(parts) < 4 or parts[0] != "iolab" or parts[1] not in KINDS or not parts[2].isdigit():
                continue
            if not os.path.exists(f"/proc/{parts[2]}"):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
                removed.append(name)
    return removed


def make(kind: str) -> str:
    """A new directory ``iolab-<kind>-<our pid>-XXXX`` (the caller removes it), after the sweep."""
    assert kind in KINDS, kind
    sweep_stale()
    return tempfile.mkdtemp(prefix=f"iolab-{kind}-{os.getpid()}-")


@contextlib.contextmanager
def owned(kind: str) -> Iterator[str]:
    """:func:`make`, removed on the way out (TemporaryDirectory's job, with the owner in the name)."""
    path = make(kind)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
