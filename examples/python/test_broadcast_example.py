"""Runs the broadcast example end to end and checks its verdict."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "broadcast.py")


def test_broadcast_example() -> None:
    before = set(glob.glob("/dev/shm/shmq-example-*"))
    proc = subprocess.run(
        [sys.executable, EXAMPLE, "--workers", "3", "--steps", "50", "--size", "2000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "every total verified" in proc.stdout
    assert "51 published, 153 delivered" in proc.stdout, proc.stdout
    assert set(glob.glob("/dev/shm/shmq-example-*")) <= before, "the example left segments behind"
