"""Runs the broadcast chaos test (tests/chaos_broadcast.py) for a bounded time in both
policies: publishers and subscribers under load in a 64 KiB ring, SIGKILLed at random (also
while blocked, and while a stalled subscriber holds the publishers back) and respawned; see
that file for the rules checked. Longer by hand:
``python tests/chaos_broadcast.py --seconds 600 --policy block`` or
``SHMQ_CHAOS_SECONDS=300 pytest tests/test_chaos_broadcast.py`` (seconds per policy)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import shmq

HERE = Path(__file__).resolve().parent


@pytest.mark.timeout(600)
@pytest.mark.parametrize("policy", ["block", "lag"])
def test_broadcast_chaos_random_kills(tmp_path: Path, policy: str) -> None:
    seconds = float(os.environ.get("SHMQ_CHAOS_SECONDS", "10"))
    out = tmp_path / "chaos.json"
    r = subprocess.run(
        [
            sys.executable,
            str(HERE / "chaos_broadcast.py"),
            "--seconds",
            str(seconds),
            "--policy",
            policy,
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    assert out.exists(), r.stdout + r.stderr
    report = json.loads(out.read_text())
    print(json.dumps(report, indent=2))
    assert report["violations"] == [], report["violations"]
    assert r.returncode == 0, r.stderr
    assert report["publisher_kills"] >= 3
    assert report["subscriber_kills"] >= 5
    assert report["subscriber_detaches"] >= 1
    assert report["survivors_checked_to_the_end"] == report["subscribers"]
    assert report["messages_checked"] > 10_000
    assert report["leaked_segments"] == []
    if policy == "block":
        assert report["recovery_after_kill_of_subscriber_holding_publishers"]["n"] >= 1
    else:
        assert report["missed_reported_by_lagged"] > 0  # the ring did overrun


@pytest.mark.timeout(30)
def test_close_with_a_live_view_frees_publishers(qname: str) -> None:
    pub = shmq.Broadcast(qname, create=True, capacity="64KiB", codec="raw")
    sub = pub.subscribe()
    try:
        pub.publish(b"x" * 1000)
        view = sub.get(copy=False)
        sub.close()  # unsubscribed at once: must no longer hold the publishers back (issue 4)
        assert pub.stats().subscribers == []
        for _ in range(200):  # 200 KB through a 64 KiB ring
            pub.publish(b"y" * 1000, timeout=0.5)
        del view
    finally:
        view = None
        gc.collect()
        pub.close()
