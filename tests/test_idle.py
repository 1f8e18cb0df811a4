"""A consumer blocked in ``get`` sleeps (futex), it does not poll: its CPU time over a second
of waiting stays near zero. And shmq never involves ``multiprocessing.resource_tracker``: a
child that opens a queue and exits prints no leak warning and does not remove the queue."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import _helpers as h
import shmq

IDLE_CHILD = textwrap.dedent(
    """
    import resource, sys, time, shmq
    q = shmq.Queue(sys.argv[1], create=False)
    t0 = time.monotonic()
    try:
        q.get(timeout=1.0)
    except shmq.Empty:
        pass
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{wall:.3f} {ru.ru_utime + ru.ru_stime:.3f}", flush=True)
    q.close()
    """
)


def test_an_idle_consumer_uses_almost_no_cpu(qname: str) -> None:
    with shmq.Queue(qname, create=True):
        # CPU time of the whole child (interpreter start-up included) against a baseline
        # child that does everything but wait.
        r = subprocess.run([sys.executable, "-c", IDLE_CHILD, qname], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        wall, cpu_waiting = map(float, r.stdout.split())
        baseline = subprocess.run(
            [sys.executable, "-c", IDLE_CHILD.replace("timeout=1.0", "timeout=0"), qname],
            capture_output=True,
            text=True,
            timeout=60,
        )
        _, cpu_baseline = map(float, baseline.stdout.split())
    assert wall >= 1.0
    # A poller or a spinner would burn most of the second; a sleeper only its 50 µs spin.
    assert cpu_waiting - cpu_baseline < 0.1, (cpu_waiting, cpu_baseline)


CHILD_EXITS = "import sys, shmq; q = shmq.Queue(sys.argv[1], create=False); q.put('from child')"


def test_no_resource_tracker_warning_and_the_queue_survives_a_childs_exit(qname: str) -> None:
    with shmq.Queue(qname, create=True) as q:
        for _ in range(3):
            r = subprocess.run([sys.executable, "-c", CHILD_EXITS, qname], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            assert "resource_tracker" not in r.stderr and "leaked" not in r.stderr, r.stderr
        assert [q.get(timeout=5) for _ in range(3)] == ["from child"] * 3
        assert h.segment_path(qname).exists()
