"""iolab.logging: a logging handler that keeps I/O off the caller's thread, with bounded memory.

    import iolab.logging
    iolab.logging.install()            # root logger -> BatchHandler on stderr
    iolab.logging.install(defer=True)  # ... and the caller only captures; the writer thread formats

See docs/logging.md for the policies, guarantees and their limits.

Note: this package is `iolab.logging`; inside it (and anywhere else) `import logging` is the standard
library, because imports are absolute. Only running Python with the `iolab/` directory itself as the
current directory or on sys.path would shadow the stdlib.
"""

from iolab.logging._deferred import DeferredHandler
from iolab.logging._lifecycle import flush_all, install, install_sigterm_flush
from iolab.logging.handler import POLICIES, BatchHandler, Policy

__all__ = ["POLICIES", "BatchHandler", "DeferredHandler", "Policy", "flush_all", "install",
           "install_sigterm_flush"]
