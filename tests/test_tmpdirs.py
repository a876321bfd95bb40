"""Temporary directories of a SIGKILLed iolab (ab, wrk, hey, locust, micro) are swept by the next run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import iolab_env, run_cli


@pytest.mark.skipif(shutil.which("ab") is None, reason="ab is not installed (make test-deps)")
def test_the_next_run_sweeps_the_directories_a_killed_run_left(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    stale = [tmp / f"iolab-locust-{gone.pid}-abcd1234", tmp / f"iolab-ab-{gone.pid}-efgh5678"]
    kept = [tmp / f"iolab-locust-{os.getpid()}-live0000",  # its owner runs: not ours to remove
            tmp / "iolab-wrk-noowner1", tmp / f"other-{gone.pid}-x"]  # not a name this sweep knows
    for d in (*stale, *kept):
        d.mkdir()
        (d / "result.json").write_text("{}")
    out = run_cli("run", "--driver", "ab", "-n", "20", "-c", "2", "--warmup", "0", "--rounds", "1", "-q",
                  "--scenario", "noop-async", "-o", str(tmp_path / "r.json"), env=iolab_env(TMPDIR=str(tmp)))
    assert out.returncode == 0, out.stderr
    assert not any(d.exists() for d in stale)
    assert all(d.exists() for d in kept)
    assert sorted(p.name for p in tmp.iterdir()) == sorted(d.name for d in kept)  # the run's own one is gone
