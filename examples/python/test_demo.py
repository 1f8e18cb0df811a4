"""Runs the demo end to end on a small job (both backends) and checks its verdict."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo.py")


def test_demo_small_job() -> None:
    env = dict(os.environ, COLUMNS="200")  # one result line per line, whatever the terminal
    with subprocess.Popen(
        [sys.executable, DEMO, "--tasks", "3000", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        stdout, stderr = proc.communicate(timeout=90)
    out = stdout + stderr
    assert proc.returncode == 0, out
    verified = [line for line in stdout.splitlines() if "verified: all 3,000 results arrived exactly once" in line]
    assert len(verified) == 2, out  # shmq, then multiprocessing.Queue
    assert "(shmq," in verified[0] and "(mp.Queue," in verified[1], out
    assert "speed-up" in stdout, out
    # Its own queues (named after its pid) and their side segments; other programs' queues
    # may come and go meanwhile.
    left = glob.glob(f"/dev/shm/*shmq*demo-{proc.pid}-*")
    assert not left, f"the demo left {left} behind"
