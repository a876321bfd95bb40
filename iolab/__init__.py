"""iolab: measure, explain and cut what I/O (print, logging, stdout) costs a Python program or service.

The command line (``iolab run``, ``iolab compare``, ``iolab micro`` …) is the main interface; these names
are the library's entry points. They are imported lazily, so ``import iolab.logging`` in a service does
not pull in the measuring machinery.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["RunConfig", "RunResult", "ScenarioSpec", "__version__", "load_results", "run_experiment"]

_LAZY = {
    "RunConfig": ("iolab.measure.config", "RunConfig"),
    "ScenarioSpec": ("iolab.measure.config", "ScenarioSpec"),
    "RunResult": ("iolab.results", "RunResult"),
    "load_results": ("iolab.results", "load"),
    "run_experiment": ("iolab.measure.experiment", "run_experiment"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'iolab' has no attribute {name!r}")
