"""``shmq.Readiness``: waiting on queues from a ``selectors`` loop (no asyncio, no polling)."""

from __future__ import annotations

import selectors
import subprocess
import sys
import textwrap
import time

import pytest

import shmq

PUT_ON_GO = """
    import sys, shmq
    q = shmq.Queue(sys.argv[1], create=False)
    print("ready", flush=True)
    sys.stdin.readline()  # the parent armed its wait
    q.put("hello from the child")
    q.close()
"""

DRAIN_ON_GO = """
    import sys, shmq
    q = shmq.Queue(sys.argv[1], create=False)
    sys.stdin.readline()
    print(q.get(timeout=30), flush=True)
    q.close()
"""


def child(code: str, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def go(p: subprocess.Popen[str]) -> None:
    assert p.stdin is not None
    p.stdin.write("go\n")
    p.stdin.flush()


def wait_until(sel: selectors.BaseSelector, r: shmq.Readiness, q: shmq.Queue[str],
               side: str, timeout: float = 10.0) -> tuple[str | None, int]:
    """The documented loop: try, arm, try again, sleep in ``select`` until the fd is readable.
    Returns what a get gave (``None`` for a put) and how many times select returned."""
    def attempt() -> str | None:
        if side == "get":
            return q.get_nowait()
        q.put_nowait("x")
        return None

    deadline = time.monotonic() + timeout
    wakes = 0
    while True:
        try:
            return attempt(), wakes
        except (shmq.Empty, shmq.Full):
            pass
        if r.arm_get(q) if side == "get" else r.arm_put(q):
            try:
                return attempt(), wakes
            except (shmq.Empty, shmq.Full):
                pass
            left = deadline - time.monotonic()
            assert left > 0, "the descriptor never became readable"
            events = sel.select(left)
            assert events, "the descriptor never became readable"
            wakes += 1
            assert q in r.take_ready()


def test_a_selectors_loop_waits_for_a_message_of_another_process(qname: str) -> None:
    with shmq.Queue[str](qname, create=True) as q, shmq.Readiness() as r, \
            selectors.DefaultSelector() as sel:
        sel.register(r.fileno(), selectors.EVENT_READ)
        p = child(PUT_ON_GO, qname)
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        assert r.arm_get(q)  # nothing there: armed
        assert sel.select(0) == []  # not readable before anything happened
        t0 = time.monotonic()
        go(p)
        got, wakes = wait_until(sel, r, q, "get")
        elapsed = time.monotonic() - t0
        assert got == "hello from the child"
        # Woken by the put, not by polling: besides it, only the wait's own 100 ms poll
        # interval may end a wait (a poller, even every 1 ms, would return far more often).
        assert wakes <= 1 + int(elapsed / 0.1), (wakes, elapsed)
        assert p.wait(30) == 0


def test_a_selectors_loop_waits_for_room_another_process_makes(qname: str) -> None:
    with shmq.Queue[str](qname, create=True, maxsize=1) as q, shmq.Readiness() as r, \
            selectors.DefaultSelector() as sel:
        sel.register(r, selectors.EVENT_READ)
        q.put("first")
        p = child(DRAIN_ON_GO, qname)
        assert r.arm_put(q)
        with pytest.raises(shmq.Full):
            q.put_nowait("x")  # the attempt after arming: no room yet
        go(p)
        _, wakes = wait_until(sel, r, q, "put")
        assert wakes >= 1
        out, _ = p.communicate(timeout=30)
        assert out.strip() == "first"
        assert q.get_nowait() == "x"


def test_arm_get_says_false_when_a_message_is_there(qname: str) -> None:
    with shmq.Queue[str](qname, create=True) as q, shmq.Readiness() as r:
        q.put("m")
        assert not r.arm_get(q)
        assert "0 armed" in repr(r)


def test_a_cancelled_wait_no_longer_wakes_the_descriptor(qname: str) -> None:
    with shmq.Queue[str](qname, create=True) as q, shmq.Readiness() as r, \
            selectors.DefaultSelector() as sel:
        sel.register(r, selectors.EVENT_READ)
        other = shmq.Queue[str](qname, create=False)
        assert r.arm_get(q)
        assert r.arm_get(other)
        assert r.arm_get(q)  # armed already: still one wait
        assert "2 armed" in repr(r)
        r.cancel(q)
        q.put("m")
        events = sel.select(10)
        assert events  # `other` was woken ...
        assert r.take_ready() == [other]  # ... and only it
        other.close()
