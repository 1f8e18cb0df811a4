"""tests/leak_check.py judges only the segments of the run it wraps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import shmq
from _helpers import SHM, remove_segment

LEAK_CHECK = Path(__file__).with_name("leak_check.py")

# Run by leak_check: leaks a queue named as a test queue of its run, an anonymous queue of
# its own pid, and makes (then leaves) a queue named like another run's test queue, which
# leak_check must not touch.
COMMAND = """
import os, sys, shmq
run = os.environ["SHMQ_TEST_RUN"]
shmq.Queue(f"t{run}-leaked", persistent=True).close()
anon = shmq.Queue(persistent=True)
print(f"t{run}-leaked", anon.name)
anon.close()
shmq.Queue(sys.argv[1], persistent=True).close()
"""


def run_leak_check(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(LEAK_CHECK), "--", *command],
                          capture_output=True, text=True, timeout=60)


def test_a_leak_of_the_run_fails_and_other_runs_segments_are_left_alone(qname: str) -> None:
    foreign = f"{qname}-other-run"  # a name of this (outer) pytest run: not the inner run's
    try:
        r = run_leak_check(sys.executable, "-c", COMMAND, foreign)
        assert r.returncode == 1, r.stdout + r.stderr
        leaked = r.stdout.split()
        assert len(leaked) == 2, r.stdout
        for name in leaked:
            assert name in r.stderr, r.stderr  # reported
            assert not (SHM / f"{shmq.SEGMENT_PREFIX}{name}").exists()  # and removed
        assert foreign not in r.stderr, r.stderr
        assert (SHM / f"{shmq.SEGMENT_PREFIX}{foreign}").exists()  # another run's: kept
    finally:
        remove_segment(foreign)


def test_a_clean_run_passes_and_a_failing_command_keeps_its_status() -> None:
    ok = run_leak_check(sys.executable, "-c", "import shmq; shmq.Queue().close()")
    assert ok.returncode == 0, ok.stderr
    assert "left no segment" in ok.stdout
    failing = run_leak_check(sys.executable, "-c", "raise SystemExit(3)")
    assert failing.returncode == 3, failing.stderr
