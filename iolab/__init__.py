"""iolab: measure, explain and cut what I/O (print, logging, stdout) costs a Python program or service.

The command line (``iolab run``, ``iolab compare``, ``iolab micro`` …) is the main interface; these names
are the library's entry points (pinned by tests/test_public_api.py, an example in docs/architecture.md)::

    import iolab

    config = iolab.RunConfig(scenarios=(iolab.ScenarioSpec("sync", "/sync"),), requests=2_000, rounds=2)
    result = iolab.run_experiment(config)  # the demo app; iolab.AppTarget("mypkg.main:app") for yours
    print(result.scenarios[0].rps)

They are imported lazily, so ``import iolab.logging`` in a service does not pull in the measuring
machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AppTarget",
    "CommandTarget",
    "IolabError",
    "LimitsRequest",
    "RunConfig",
    "RunResult",
    "RunningTarget",
    "ScenarioSpec",
    "__version__",
    "load_results",
    "run_experiment",
]

_LAZY = {
    # What to run: the configuration, its scenarios, the server under test, the limits put on it.
    "RunConfig": ("iolab.measure.config", "RunConfig"),
    "ScenarioSpec": ("iolab.measure.config", "ScenarioSpec"),
    "AppTarget": ("iolab.measure.targets", "AppTarget"),
    "CommandTarget": ("iolab.measure.targets", "CommandTarget"),
    "RunningTarget": ("iolab.measure.targets", "RunningTarget"),
    "LimitsRequest": ("iolab.measure.limits", "LimitsRequest"),
    # Running it, and what comes back (also from a saved file of any iolab.run version).
    "run_experiment": ("iolab.measure.experiment", "run_experiment"),
    "RunResult": ("iolab.results", "RunResult"),
    "load_results": ("iolab.results", "load"),
    # The base of every error a user can cause or fix; its ``exit_code`` is what the CLI exits with.
    "IolabError": ("iolab.errors", "IolabError"),
}

if TYPE_CHECKING:  # the same names, seen by type checkers and IDEs
    from iolab.errors import IolabError
    from iolab.measure.config import RunConfig, ScenarioSpec
    from iolab.measure.experiment import run_experiment
    from iolab.measure.limits import LimitsRequest
    from iolab.measure.targets import AppTarget, CommandTarget, RunningTarget
    from iolab.results import RunResult
    from iolab.results import load as load_results


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'iolab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
