"""Ctrl-C interrupts blocked calls promptly; blocked calls release the GIL."""

from __future__ import annotations

import signal
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import _helpers as h
import shmq

MakeQueue = Callable[..., shmq.Queue]

pytestmark = pytest.mark.timeout(60)

# The child reports what happened on stdout; the parent checks the markers.
BLOCKED_CHILD = textwrap.dedent(
    """
    import signal, sys, time, shmq
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    op = sys.argv[2]
    q = shmq.Queue(sys.argv[1], create=False)
    try:
        print("blocking", flush=True)
        if op == "get":
            q.get()
        elif op == "get_many":
            q.get_many(10)
        elif op == "put":
            q.put("from child")
        elif op == "put_many":
            q.put_many(["from child"] * 3)
        print("returned", flush=True)  # must not happen: nobody makes room / puts
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    # The child's own handle is intact after the interrupt.
    if op.startswith("get"):
        q.put_many([b"after", b"interrupt"], codec=shmq.CODEC_RAW, timeout=10)
    q.close()
    print("closed", flush=True)
    """
)


@pytest.mark.parametrize("op", ["get", "get_many", "put", "put_many"])
def test_ctrl_c_interrupts_a_blocked_call_in_another_interpreter(make_queue: MakeQueue, qname: str, op: str) -> None:
    # maxsize=1 makes the child's put block; a get child puts two messages afterwards.
    q = make_queue(maxsize=1 if op.startswith("put") else 0, capacity="64KiB")
    if op.startswith("put"):
        q.put("fills the queue")  # maxsize=1: the child's put blocks
    waits = q.stats().waits
    with h.children() as procs:
        p = h.python(BLOCKED_CHILD, qname, op)
        procs.append(p)
        out = h.LineReader(p)
        out.expect("blocking")
        h.wait_for_sleeper(q, waits, 20)  # the child is asleep inside the call
        assert q.stats().attached == 2
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out.expect("interrupted", timeout=10)
        interrupted_after = time.monotonic() - t0
        out.expect("closed", timeout=10)
        p.wait(timeout=10)
        assert p.stderr is not None
        assert p.returncode == 0, p.stderr.read().decode()
    assert interrupted_after < 5
    # The queue is intact: nothing was half put or half taken.
    s = q.stats()
    assert (s.lost, s.abandoned) == (0, 0)
    assert s.attached == 1
    if op.startswith("put"):
        assert q.get_nowait() == "fills the queue"
        with pytest.raises(shmq.Empty):
            q.get_nowait()
    else:
        assert [q.get(timeout=5), q.get(timeout=5)] == [b"after", b"interrupt"]
    q.put("parent still works")
    assert q.get(timeout=5) == "parent still works"
    assert q.empty()


class _Interrupted(Exception):
    pass


@pytest.fixture
def sigint_raises_interrupted() -> Iterator[None]:
    """SIGINT raises ``_Interrupted`` in the main thread for the duration of the test (a stray
    signal then cannot abort the whole test session)."""

    def handler(signum: int, frame: Any) -> None:
        raise _Interrupted()

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.mark.parametrize("op", ["get", "put"])
def test_signal_handlers_run_while_the_main_thread_is_blocked(
    make_queue: MakeQueue, sigint_raises_interrupted: None, op: str
) -> None:
    q = make_queue(maxsize=1)
    if op == "put":
        q.put("full")
    waits = q.stats().waits
    errors: list[BaseException] = []

    def send_sigint() -> None:
        try:
            h.wait_for_sleeper(q, waits, 20)
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=send_sigint)
    t.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(_Interrupted):
            if op == "get":
                q.get(timeout=30)
            else:
                q.put("blocked", timeout=30)
    finally:
        t.join(30)
    assert not errors, errors
    assert time.monotonic() - t0 < 25  # well before the 30 s timeout
    assert q.qsize() == (1 if op == "put" else 0)


# --------------------------------------------------------------------------------------
# The GIL is released while waiting
# --------------------------------------------------------------------------------------


def test_blocked_get_in_a_thread_is_released_by_a_put_from_another(make_queue: MakeQueue) -> None:
    q = make_queue()
    got: list[Any] = []
    waits = q.stats().waits

    def consume() -> None:
        try:
            got.append(q.get(timeout=20))
        except BaseException as e:  # noqa: BLE001 - checked below
            got.append(e)

    t = threading.Thread(target=consume)
    t.start()
    try:
        # This thread runs Python code (needs the GIL) while the other one is blocked.
        h.wait_for_sleeper(q, waits, 15)
        assert t.is_alive() and not got
        q.put("hello")
        t.join(20)
    finally:
        t.join(30)
    assert got == ["hello"]


def test_blocked_put_in_a_thread_is_released_by_a_get_from_another(make_queue: MakeQueue) -> None:
    q = make_queue(maxsize=1)
    q.put("first")
    done: list[Any] = []
    waits = q.stats().waits

    def produce() -> None:
        try:
            q.put("second", timeout=20)
            done.append("ok")
        except BaseException as e:  # noqa: BLE001 - checked below
            done.append(e)

    t = threading.Thread(target=produce)
    t.start()
    try:
        h.wait_for_sleeper(q, waits, 15)
        assert t.is_alive() and not done
        assert q.get(timeout=5) == "first"
        t.join(20)
    finally:
        t.join(30)
    assert done == ["ok"]
    assert q.get(timeout=5) == "second"


def test_threads_share_a_handle(make_queue: MakeQueue) -> None:
    q = make_queue(capacity="64KiB", maxsize=100)
    n, producers = 5000, 3
    received: list[Any] = []
    errors: list[BaseException] = []

    def produce(pid: int) -> None:
        try:
            for i in range(n):
                q.put((pid, i), timeout=30)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def consume() -> None:
        try:
            while len(received) < n * producers:
                received.extend(q.get_many(50, timeout=30))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    threads.append(threading.Thread(target=consume))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert sorted(received) == sorted((p, i) for p in range(producers) for i in range(n))
    for p in range(producers):
        assert [i for pp, i in received if pp == p] == list(range(n))  # FIFO per producer
