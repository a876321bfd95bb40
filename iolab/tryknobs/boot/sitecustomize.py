"""iolab --try bootstrap: Python imports this at start-up because iolab put its folder first on PYTHONPATH.

It runs the sitecustomize that this one hides (a distribution's or a virtualenv's), so the server starts as
it would have, then applies the knobs named in IOLAB_TRY (JSON) through ../knobs.py. Stdlib only; it never
raises into the server: a knob that fails is reported, not fatal.
"""

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _chain() -> None:
    """Run the next sitecustomize on sys.path, the one Python would have found without us."""
    for entry in list(sys.path):
        if os.path.abspath(entry or os.getcwd()) == _HERE:
            continue
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", [entry])
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return


def _knobs() -> None:
    path = os.path.join(os.path.dirname(_HERE), "knobs.py")
    spec = importlib.util.spec_from_file_location("_iolab_tryknobs", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["_iolab_tryknobs"] = module
    spec.loader.exec_module(module)
    module.install_from_env()


# Theirs first, as the server would have started without us; the knobs then apply to what it set up.
_chain()
try:
    _knobs()
except Exception as exc:  # never break the server under test; say why in its output
    print(f"iolab --try: the knobs could not be installed: {exc!r}", file=sys.stderr)
