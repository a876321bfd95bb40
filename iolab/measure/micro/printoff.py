"""Run a Python script with ``print`` replaced, without editing the file.

The launcher is passed with ``python -c`` rather than ``-m iolab.micro…`` so that it works with any
interpreter (``--python``), even one that cannot import iolab, and imports nothing a plain
``python script.py`` would not. It compiles the script under its own path and runs it in the real
``__main__`` module, as ``python script.py`` does (so ``if __name__ == "__main__"``, pickling of classes
defined in the script, and ``sys.path[0]`` behave the same); runpy.run_path would run it in a temporary
module instead.

Modes: ``off`` makes every ``print`` a no-op (whatever its ``file=``); ``count`` wraps the real ``print``
to count calls, and writes ``calls to_stdout`` to ``$IOLAB_MICRO_COUNT_FILE`` at exit. Counting costs a
Python function call per print, so the counting run is never timed.
"""

from __future__ import annotations

from pathlib import Path

COUNT_FILE_ENV = "IOLAB_MICRO_COUNT_FILE"

# Plain %-formatting and no walrus: the launcher must run on whatever Python 3 the user names.
LAUNCHER = r'''
def _iolab_launch():
    import builtins, os, sys
    mode, path = sys.argv[1], sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path[0] = os.path.dirname(os.path.realpath(path))
    real_print = builtins.print
    counts = [0, 0]
    if mode == "off":
        def print(*args, **kwargs):
            return None
    else:
        def print(*args, **kwargs):
            counts[0] += 1
            out = kwargs.get("file")
            if out is None or out is sys.stdout:
                counts[1] += 1
            return real_print(*args, **kwargs)

        def write_count():
            with open(os.environ["IOLAB_MICRO_COUNT_FILE"], "w") as fh:
                fh.write("%d %d" % (counts[0], counts[1]))

        import atexit
        atexit.register(write_count)  # registered first, so it runs after the script's own handlers
    builtins.print = print
    with open(path, "rb") as fh:
        source = fh.read()
    code = compile(source, path, "exec", dont_inherit=True)
    namespace = sys.modules["__main__"].__dict__
    del namespace["_iolab_launch"]
    namespace["__file__"] = os.path.abspath(path)  # as python script.py sets it since 3.9
    namespace["__cached__"] = None
    exec(code, namespace)
_iolab_launch()
'''


def launcher_argv(interpreter: str, mode: str, script: str, args: tuple[str, ...]) -> tuple[str, ...]:
    if mode not in ("off", "count"):
        raise ValueError(f"unknown launcher mode {mode!r}")
    return (interpreter, "-c", LAUNCHER, mode, script, *args)


def read_count(path: Path) -> tuple[int, int] | None:
    """(all print calls, calls to stdout), or None when the script left without running atexit
    handlers (``os._exit``, a fatal signal)."""
    try:
        calls, to_stdout = path.read_text().split()
        return int(calls), int(to_stdout)
    except (OSError, ValueError):
        return None
    finally:
        path.unlink(missing_ok=True)
