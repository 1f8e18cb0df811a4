"""Runs the demo end to end on a small job (both backends) and checks its verdict."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo.py")


def test_demo_small_job() -> None:
    before = set(glob.glob("/dev/shm/shmq-demo-*"))
    env = dict(os.environ, COLUMNS="200")  # one result line per line, whatever the terminal
    proc = subprocess.run(
        [sys.executable, DEMO, "--tasks", "3000", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    verified = [line for line in proc.stdout.splitlines() if "verified: all 3,000 results arrived exactly once" in line]
    assert len(verified) == 2, out  # shmq, then multiprocessing.Queue
    assert "(shmq," in verified[0] and "(mp.Queue," in verified[1], out
    assert "speed-up" in proc.stdout, out
    assert set(glob.glob("/dev/shm/shmq-demo-*")) <= before, "the demo left queues behind"
