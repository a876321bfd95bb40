"""Load drivers: the builtin one and wrappers around ab, wrk and hey, all giving the same ``LoadResult``.

``get_driver(name)`` returns a driver ready to run; for an external tool it first checks that the binary
is installed (``DriverError: wrk not found — install it (Debian/Ubuntu: apt-get install wrk)``).
Imports are lazy: the builtin driver's child process imports this package and must start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from iolab.errors import UsageError

if TYPE_CHECKING:
    from iolab.measure.drivers.base import Driver, LoadSpec

# name → (module, class)
DRIVERS: dict[str, tuple[str, str]] = {
    "builtin": ("iolab.measure.drivers.builtin", "BuiltinDriver"),
    "ab": ("iolab.measure.drivers.ab", "AbDriver"),
    "wrk": ("iolab.measure.drivers.wrk", "WrkDriver"),
    "hey": ("iolab.measure.drivers.hey", "HeyDriver"),
    "locust": ("iolab.measure.drivers.locust", "LocustDriver"),
}
EXTERNAL = ("ab", "wrk", "hey")


def get_driver(name: str, options: object | None = None) -> Driver:
    """The driver called ``name``. Raises ``UsageError`` for an unknown name and ``DriverError`` when an
    external tool's binary is missing, so a run fails before any server starts."""
    if name not in DRIVERS:
        raise UsageError(f"unknown driver {name!r} (choose from {', '.join(DRIVERS)})")
    module, cls = DRIVERS[name]
    if name in EXTERNAL:
        from iolab.measure.drivers.external import find_binary

        find_binary(name)
    factory = getattr(importlib.import_module(module), cls)
    driver: Driver = factory(options) if options is not None else factory()
    return driver


def validate(name: str, spec: LoadSpec) -> None:
    """Raises ``UsageError`` if driver ``name`` cannot run ``spec`` (open loop on ab, a count on wrk …),
    without running anything: call it before any server starts, with a placeholder URL if need be."""
    if name not in DRIVERS:
        raise UsageError(f"unknown driver {name!r} (choose from {', '.join(DRIVERS)})")
    if name == "builtin":
        from iolab.measure.drivers.request import encode_request

        encode_request(spec)
    else:
        importlib.import_module(DRIVERS[name][0]).build_args(spec)
