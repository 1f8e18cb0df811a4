"""Runs the chaos test (tests/chaos.py) for a bounded time: random SIGKILLs of producers and
consumers under load; see that file for what is checked. Longer by hand:
``python tests/chaos.py --seconds 600`` or ``SHMQ_CHAOS_SECONDS=600 pytest tests/test_chaos.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.timeout(600)
def test_chaos_random_kills(tmp_path: Path) -> None:
    seconds = float(os.environ.get("SHMQ_CHAOS_SECONDS", "20"))
    out = tmp_path / "chaos.json"
    r = subprocess.run(
        [sys.executable, str(HERE / "chaos.py"), "--seconds", str(seconds), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    assert out.exists(), r.stdout + r.stderr
    report = json.loads(out.read_text())
    print(json.dumps(report, indent=2))
    assert report["problems"] == [], report
    assert r.returncode == 0, r.stderr
    assert report["kills"] >= 10
    assert report["messages_checked"] > 1000
