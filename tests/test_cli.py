"""The ``shmq`` command line (``python -m shmq``): ls, stats, rm, gc."""

from __future__ import annotations

import subprocess
import sys

import _helpers as h
import shmq


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shmq", *args], capture_output=True, text=True, timeout=60)


def test_ls_and_stats_show_queues_and_broadcasts(qname: str) -> None:
    with shmq.Queue(qname, create=True, capacity="64KiB") as q, shmq.Broadcast(f"{qname}-b", create=True) as b:
        q.put_many(range(3))
        sub = b.subscribe()
        b.publish("x")
        out = run("ls")
        assert out.returncode == 0, out.stderr
        lines = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
        assert lines[qname][1] == "queue" and lines[qname][3] == "1"
        assert lines[f"{qname}-b"][1] == "broadcast" and lines[f"{qname}-b"][3] == "2"
        st = run("stats", qname)
        assert st.returncode == 0, st.stderr
        assert f"queue {qname!r}" in st.stdout and "depth        3" in st.stdout
        st = run("stats", f"{qname}-b")
        assert "behind by 1 messages" in st.stdout, st.stdout
        sub.close()


def test_stats_of_a_missing_name_fails_clearly(qname: str) -> None:
    out = run("stats", qname)
    assert out.returncode == 1 and "does not exist" in out.stderr


def test_rm_removes_the_name_and_gc_removes_dead_queues(qname: str) -> None:
    with shmq.Queue(qname, create=True) as q:
        assert run("rm", qname).returncode == 0
        assert not h.segment_path(qname).exists()
        q.put("still usable")
        assert q.get(timeout=5) == "still usable"
    assert run("rm", qname).returncode == 1
    # A queue whose only process died (no close): gc removes it.
    code = f"import os, shmq; q = shmq.Queue({qname!r}, create=True); os._exit(0)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert h.segment_path(qname).exists()
    out = run("gc")
    assert out.returncode == 0 and f"removed {qname}" in out.stdout
    assert not h.segment_path(qname).exists()
