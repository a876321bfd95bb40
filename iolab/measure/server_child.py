"""Entry point of a server process that iolab starts: ``python -m iolab.measure.server_child [uvicorn options] APP``.

It runs uvicorn's own command line unchanged (so uvicorn's defaults hold: access log on, loop and http
"auto" = uvloop/httptools when installed) after one addition: every Python thread gives its name to the
OS thread (``prctl(PR_SET_NAME)``), so the probe's per-thread table can tell the event loop, AnyIO's
worker threads and a log writer apart. Without it every thread's ``comm`` is just "python".
"""

from __future__ import annotations

import ctypes
import sys
import threading
from typing import Any

_PR_SET_NAME = 15


def name_os_threads() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):  # not glibc/Linux: names stay as they are
        return
    original = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def _bootstrap_inner(self: threading.Thread) -> Any:
        # 15 bytes + NUL is the kernel's TASK_COMM_LEN.
        prctl(_PR_SET_NAME, self.name.encode("utf-8", "replace")[:15], 0, 0, 0)
        return original(self)

    threading.Thread._bootstrap_inner = _bootstrap_inner  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    name_os_threads()
    import uvicorn.main

    sys.argv = ["uvicorn", *(sys.argv[1:] if argv is None else argv)]
    uvicorn.main.main()


if __name__ == "__main__":
    main()
