"""The semantics of ``queue.Queue`` / ``multiprocessing.Queue`` that shmq keeps, down to the
corner cases (issue 11): shutdown across processes, truth values and numbers as arguments,
full()/empty()/qsize() against what put_nowait/get_nowait would do, per-thread order under
re-entrant puts, closed handles."""

from __future__ import annotations

import gc
import multiprocessing
import queue
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest

import shmq
from _helpers import children, join_all, wait_for_sleeper, wait_until
from _semantics_children import get_until_shutdown, put_after_shutdown, subscriber_until_shutdown

SPAWN = multiprocessing.get_context("spawn")

# --------------------------------------------------------------------------------------
# shutdown()
# --------------------------------------------------------------------------------------


def test_shutdown_is_a_shmq_error_and_the_stdlib_one_where_it_exists() -> None:
    assert issubclass(shmq.ShutDown, shmq.ShmqError)
    if sys.version_info >= (3, 13):
        assert issubclass(shmq.ShutDown, queue.ShutDown)


def test_put_after_shutdown_raises(queue: shmq.Queue) -> None:
    assert queue.is_shutdown is False
    queue.shutdown()
    assert queue.is_shutdown is True
    for put in (lambda: queue.put(1), lambda: queue.put_nowait(1), lambda: queue.put_many([1, 2])):
        with pytest.raises(shmq.ShutDown):
            put()
    assert queue.qsize() == 0


def test_get_drains_what_is_left_then_raises_instead_of_blocking(queue: shmq.Queue) -> None:
    queue.put_many(["a", "b", "c", "d"])
    queue.shutdown()
    assert queue.get() == "a"
    assert queue.get_nowait() == "b"
    assert queue.get_many(10) == ["c", "d"]
    # Nothing left: each of these would block (or raise Empty) on a queue that is not shut down.
    for get in (queue.get, queue.get_nowait, lambda: queue.get(timeout=30), lambda: queue.get_many(10)):
        with pytest.raises(shmq.ShutDown):
            get()


def test_shutdown_wakes_a_get_asleep_in_another_process(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity="64KiB")
    results = make_queue(capacity="64KiB")
    q.put_many([1, 2])
    with children() as procs:
        p = SPAWN.Process(target=get_until_shutdown, args=(q.name, results.name))
        procs.append(p)
        waits = q.stats().waits
        p.start()
        # The child took both messages and sleeps in get() with no timeout.
        wait_until(lambda: q.stats().gets == 2, what="the child to take the messages")
        wait_for_sleeper(q, waits)
        q.shutdown()
        assert results.get(timeout=30) == ([1, 2], "ShutDown")
        join_all(procs)
        assert p.exitcode == 0


def test_put_raises_in_another_process_after_shutdown(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity="64KiB")
    go = make_queue(capacity="64KiB")
    results = make_queue(capacity="64KiB")
    with children() as procs:
        p = SPAWN.Process(target=put_after_shutdown, args=(q.name, go.name, results.name))
        procs.append(p)
        p.start()
        q.shutdown()
        go.put("go")
        assert results.get(timeout=30) == "ShutDown"
        join_all(procs)
    assert q.qsize() == 0


def test_shutdown_wakes_a_put_blocked_on_a_full_queue(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity="64KiB", maxsize=1)
    q.put("first")
    errors: list[BaseException] = []

    def blocked_put() -> None:
        try:
            q.put("second")
        except BaseException as e:
            errors.append(e)

    waits = q.stats().waits
    t = threading.Thread(target=blocked_put)
    t.start()
    wait_for_sleeper(q, waits)
    q.shutdown()
    t.join(30)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], shmq.ShutDown)
    assert q.get() == "first"


def test_immediate_shutdown_drops_what_is_left_and_gets_raise_at_once(queue: shmq.Queue) -> None:
    queue.put_many(range(5))
    queue.shutdown(immediate=True)
    assert queue.is_shutdown
    with pytest.raises(shmq.ShutDown):
        queue.get_nowait()
    with pytest.raises(shmq.ShutDown):
        queue.get()
    with pytest.raises(shmq.ShutDown):
        queue.put(1)
    stats = queue.stats()
    assert stats.dropped == 5
    assert stats.depth == 0
    assert queue.qsize() == 0


def test_immediate_after_plain_shutdown_drops_the_rest(queue: shmq.Queue) -> None:
    queue.put_many(range(3))
    queue.shutdown()
    assert queue.get() == 0
    queue.shutdown(immediate=1)  # any truth value
    with pytest.raises(shmq.ShutDown):
        queue.get_nowait()
    assert queue.stats().dropped == 2


def test_shutdown_is_seen_by_every_handle(make_queue: Callable[..., shmq.Queue]) -> None:
    a = make_queue(capacity="64KiB")
    b = make_queue(name=a.name, create=False)
    a.put("x")
    a.shutdown()
    assert b.is_shutdown
    assert b.get() == "x"
    with pytest.raises(shmq.ShutDown):
        b.get()


def test_broadcast_shutdown(qname: str, make_queue: Callable[..., shmq.Queue]) -> None:
    results = make_queue(capacity="64KiB")
    ready = make_queue(capacity="64KiB")
    name = f"{qname}-bc"
    with shmq.Broadcast(name, capacity="64KiB") as pub, shmq.Subscriber(name) as local:
        with children() as procs:
            p = SPAWN.Process(target=subscriber_until_shutdown, args=(name, results.name, ready.name))
            procs.append(p)
            p.start()
            assert ready.get(timeout=30) == "subscribed"
            pub.publish_many(["m1", "m2"])
            waits = pub.stats().waits
            wait_until(lambda: pub.stats().waits > waits, what="the remote subscriber to sleep")
            assert not pub.is_shutdown
            pub.shutdown()
            assert pub.is_shutdown and local.is_shutdown
            with pytest.raises(shmq.ShutDown):
                pub.publish("m3")
            with pytest.raises(shmq.ShutDown):
                pub.publish_many(["m3"])
            assert results.get(timeout=30) == (["m1", "m2"], "ShutDown")
            join_all(procs)
        # The local subscriber drains what it had not read, then raises.
        assert local.get() == "m1"
        assert local.get_many(10) == ["m2"]
        with pytest.raises(shmq.ShutDown):
            local.get()
        with pytest.raises(shmq.ShutDown):
            local.get_nowait()


def test_broadcast_immediate_shutdown_stops_subscribers_at_once(qname: str) -> None:
    with shmq.Broadcast(qname, capacity="64KiB") as pub, shmq.Subscriber(qname) as sub:
        pub.publish("unread")
        pub.shutdown(immediate=True)
        with pytest.raises(shmq.ShutDown):
            sub.get()


def test_shutdown_of_a_closed_handle_is_an_error(queue: shmq.Queue) -> None:
    queue.close()
    with pytest.raises(shmq.QueueClosedError):
        queue.shutdown()


# --------------------------------------------------------------------------------------
# full() / empty() / qsize() against what put_nowait / get_nowait would do
# --------------------------------------------------------------------------------------


def test_full_is_true_right_after_put_nowait_raised_full(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity=4096)
    puts = 0
    with pytest.raises(shmq.Full):
        while True:
            q.put_nowait((1, 2))
            puts += 1
    assert puts == 85  # the numbers: 85 records of 48 bytes, 16 bytes left
    assert q.full()
    assert q.qsize() == puts
    q.get_nowait()
    assert not q.full()
    q.put_nowait((1, 2))  # as full() said
    assert q.full()


# Record sizes (16 + size, rounded up to 16) that do not divide the ring: space is left over.
@pytest.mark.parametrize("size", [20, 50, 300, 700, 3000])
def test_full_agrees_with_put_nowait_of_the_same_message(make_queue: Callable[..., shmq.Queue], size: int) -> None:
    q = make_queue(capacity=8192, codec="raw")
    msg = b"x" * size
    for _ in range(3):  # around the ring a few times
        went_in = 0
        while True:
            predicted_full = q.full()
            try:
                q.put_nowait(msg)
            except shmq.Full:
                assert predicted_full, f"full() was False but the put after {went_in} was refused"
                break
            # A handle that has not put yet asks about the smallest message, which fits here.
            assert not predicted_full or went_in == 0, f"full() was True but put {went_in + 1} went in"
            went_in += 1
        assert q.full()
        for _ in range(went_in // 2 + 1):
            q.get_nowait()


def test_full_with_maxsize(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity="64KiB", maxsize=2)
    q.put(1)
    assert not q.full()
    q.put(2)
    assert q.full()
    with pytest.raises(shmq.Full):
        q.put_nowait(3)
    q.get()
    assert not q.full()


def test_empty_and_qsize_agree_with_get_nowait(queue: shmq.Queue) -> None:
    assert queue.empty() and queue.qsize() == 0
    with pytest.raises(shmq.Empty):
        queue.get_nowait()
    queue.put_many(range(5))
    for left in range(5, 0, -1):
        assert not queue.empty() and queue.qsize() == left
        queue.get_nowait()
    assert queue.empty() and queue.qsize() == 0
    with pytest.raises(shmq.Empty):
        queue.get_nowait()


# --------------------------------------------------------------------------------------
# put_many_nowait / get_many_nowait / data_size (faster-fifo's names)
# --------------------------------------------------------------------------------------


def test_put_many_nowait_and_get_many_nowait(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity=4096, codec="raw")
    with pytest.raises(shmq.Empty):
        q.get_many_nowait()
    q.put_many_nowait([b"a", b"bb", b"ccc"])
    assert q.data_size() == 6
    assert q.get_many_nowait(max_messages=2) == [b"a", b"bb"]
    assert q.data_size() == 3
    with pytest.raises(shmq.Full) as e:
        # More than the ring: in chunks of what the ring holds (3 records of 1120 bytes), then Full.
        q.put_many_nowait([b"y" * 1100] * 10)
    assert e.value.sent == 3  # type: ignore[attr-defined]
    assert q.get_many_nowait() == [b"ccc"] + [b"y" * 1100] * e.value.sent  # type: ignore[attr-defined]
    assert q.data_size() == 0


# --------------------------------------------------------------------------------------
# Per-thread order when a put runs inside another put (finalizers run by the GC)
# --------------------------------------------------------------------------------------


class _Finalized:
    """Garbage whose finalizer puts on a queue (a reference cycle: only the GC frees it)."""

    def __init__(self, put: Callable[[object], None], k: int) -> None:
        self.put, self.k, self.me = put, k, self

    def __del__(self) -> None:
        self.put(("fin", self.k))


class _Dirty:
    """An object whose pickling makes garbage cycles with finalizers that put on the queue,
    and lets the GC run (as an allocation inside ``__reduce__`` may)."""

    def __init__(self, put: Callable[[object], None], k: int, weak: bool = False) -> None:
        self.put, self.k, self.weak = put, k, weak

    def __reduce__(self) -> tuple[Any, ...]:
        if self.weak:
            # The weak reference outlives the cycle (one that is garbage itself never calls
            # back), and its callback runs when the GC frees the cycle.
            cycle = _Cycle()
            _LIVE_REFS.append(weakref.ref(cycle.other, lambda _: self.put(("fin", self.k))))
            del cycle
        else:
            _Finalized(self.put, self.k)
        gc.collect()
        return (tuple, (("obj", self.k),))


class _Other:
    pass


class _Cycle:
    def __init__(self) -> None:
        self.other = _Other()
        self.other.back = self  # type: ignore[attr-defined]


_LIVE_REFS: list[Any] = []


@pytest.mark.parametrize("weak", [False, True], ids=["__del__", "weakref-callback"])
@pytest.mark.parametrize("how", ["put", "put_many", "put_nowait"])
def test_a_put_from_a_finalizer_during_another_puts_pickling_comes_after_it(
    queue: shmq.Queue, weak: bool, how: str
) -> None:
    def put(obj: object) -> None:
        queue.put(obj)

    for k in range(5):
        obj = _Dirty(put, k, weak)
        if how == "put":
            queue.put(obj)
        elif how == "put_many":
            queue.put_many([obj])
        else:
            queue.put_nowait(obj)
    _LIVE_REFS.clear()
    got = [queue.get(timeout=5) for _ in range(10)]
    assert got == [m for k in range(5) for m in (("obj", k), ("fin", k))]
    assert queue.empty()


class _PutsWhilePickled:
    """Puts to the queue from its own pickling, a nested message whose pickling puts again."""

    def __init__(self, put: Callable[[object], None], tag: object, depth: int) -> None:
        self.put, self.tag, self.depth = put, tag, depth

    def __reduce__(self) -> tuple[Any, ...]:
        if self.depth > 0:
            self.put(_PutsWhilePickled(self.put, (self.tag, "inner"), self.depth - 1))
        return (tuple, ((self.tag, self.depth),))


@pytest.mark.parametrize("threads", [1, 4])
def test_puts_made_while_pickling_follow_their_put_in_every_thread(
    make_queue: Callable[..., shmq.Queue], threads: int
) -> None:
    """Each thread's puts keep its call order, nested ones included, while other threads put
    to the same handle at the same time (one of them at a time takes the put's fast path, the
    others the thread-local one; nested puts must be found in either)."""
    q = make_queue(capacity="4MiB")
    per_thread = 150
    start = threading.Barrier(threads)

    def worker(t: int) -> None:
        start.wait()
        for k in range(per_thread):
            q.put(_PutsWhilePickled(q.put, (t, k), depth=2))

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join(60)
    got = q.get_many(10 * threads * per_thread, timeout=5)
    assert q.empty()
    for t in range(threads):
        mine = [m for m in got if _thread_of(m) == t]
        expected = []
        for k in range(per_thread):
            expected += [((t, k), 2), (((t, k), "inner"), 1), ((((t, k), "inner"), "inner"), 0)]
        assert mine == expected


def _thread_of(m: Any) -> int:
    tag = m[0]
    while isinstance(tag, tuple) and len(tag) == 2 and tag[1] == "inner":
        tag = tag[0]
    return int(tag[0])


def test_a_raw_put_from_a_finalizer_during_another_puts_pickling_comes_after_it(queue: shmq.Queue) -> None:
    """A raw put first tries to go in at once; inside another put of the handle it must be
    deferred as any other put is."""

    def put(obj: object) -> None:
        queue.put(repr(obj).encode(), codec="raw")

    for k in range(5):
        queue.put(_Dirty(put, k))
    _LIVE_REFS.clear()
    got = [queue.get(timeout=5) for _ in range(10)]
    assert got == [m for k in range(5) for m in (("obj", k), repr(("fin", k)).encode())]
    assert queue.empty()


def test_a_broadcast_publish_from_a_finalizer_comes_after_the_interrupted_one(qname: str) -> None:
    with shmq.Broadcast(qname, capacity="64KiB") as pub, shmq.Subscriber(qname) as sub:
        for k in range(5):
            pub.publish(_Dirty(pub.publish, k))
        assert sub.get_many(100) == [m for k in range(5) for m in (("obj", k), ("fin", k))]


@pytest.mark.parametrize("codec", ["pickle", "raw"])
def test_a_put_from_a_signal_handler_while_a_put_waits_comes_after_it(
    make_queue: Callable[..., shmq.Queue], codec: str
) -> None:
    """The handler runs while the outer put waits for room (the binding checks for signals
    between sleeps): its put goes in after the outer one, and waits for nothing. Raw bytes
    first try a put at once (no room here): the handler's raw put must not take that path
    while the outer put waits."""
    q = make_queue(capacity="64KiB", maxsize=1, codec=codec)
    first, outer, inner = ("first", "outer", "from the handler")
    if codec == "raw":
        first, outer, inner = (b"first", b"outer", b"from the handler")  # type: ignore[assignment]
    q.put(first)
    handled = threading.Event()
    got: list[object] = []

    def handler(signum: int, frame: object) -> None:
        q.put(inner, timeout=30)
        handled.set()

    def consumer() -> None:
        if handled.wait(30):
            got.extend(q.get(timeout=30) for _ in range(3))

    old = signal.signal(signal.SIGALRM, handler)
    t = threading.Thread(target=consumer)
    t.start()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        q.put(outer, timeout=30)  # waits until the consumer makes room
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        t.join(60)
    assert handled.is_set()
    assert got == [first, outer, inner]


# --------------------------------------------------------------------------------------
# block: any truth value; timeout: any real number (int, float subclass, __float__, __index__)
# --------------------------------------------------------------------------------------
# The arguments that the standard library's queues have take what they take there
# (``block``, ``timeout``, ``immediate``); shmq's own flags (``persistent``, ``copy``, ...)
# take a bool only (docs/errors.md, "The rule").


class _Seconds(float):
    """A float subclass (as numpy.float64 is)."""


class _FloatLike:
    """Converts to float through ``__float__`` only (as numpy.float32 scalars do)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __float__(self) -> float:
        return self.value


class _IndexLike:
    """An integer through ``__index__`` only (as numpy.int64 scalars do)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


TIMEOUTS = [0, 1, 0.01, _Seconds(0.01), _FloatLike(0.01), _IndexLike(0), True]
TIMEOUT_IDS = ["int-0", "int-1", "float", "float-subclass", "__float__", "__index__", "bool"]
NOT_WAITING = [0, False, None, "", [], 0.0]
WAITING = [1, True, "yes", [0], 2.5]


@pytest.mark.parametrize("block", NOT_WAITING, ids=repr)
def test_block_false_by_its_truth_value_everywhere(make_queue: Callable[..., shmq.Queue], qname: str,
                                                    block: object) -> None:
    q = make_queue(capacity=4096, maxsize=1)
    q.put(1, block)
    with pytest.raises(shmq.Full):
        q.put(2, block)  # would wait for ever with a true block
    with pytest.raises(shmq.Full):
        q.put_many([2], block)
    assert q.get(block) == 1
    with pytest.raises(shmq.Empty):
        q.get(block)
    with pytest.raises(shmq.Empty):
        q.get_many(10, block)
    with shmq.Broadcast(f"{qname}-bc", capacity=4096) as pub, shmq.Subscriber(f"{qname}-bc") as sub:
        pub.publish(1, block)
        pub.publish_many([2], block)
        assert sub.get(block) == 1
        assert sub.get_many(10, block) == [2]
        with pytest.raises(shmq.Empty):
            sub.get(block)


@pytest.mark.parametrize("block", WAITING, ids=repr)
def test_block_true_by_its_truth_value_everywhere(make_queue: Callable[..., shmq.Queue], qname: str,
                                                   block: object) -> None:
    q = make_queue(capacity=4096, maxsize=1)
    q.put(1, block, 0.01)
    with pytest.raises(shmq.Full):
        q.put(2, block, 0.01)
    assert q.get(block, 0.01) == 1
    waits = q.stats().waits
    with pytest.raises(shmq.Empty):
        q.get(block, 0.01)  # waited (a sleep is counted), then gave up
    assert q.stats().waits > waits
    with pytest.raises(shmq.Empty):
        q.get_many(10, block, 0.01)
    with shmq.Broadcast(f"{qname}-bc", capacity=4096) as pub, shmq.Subscriber(f"{qname}-bc") as sub:
        pub.publish(1, block, 0.01)
        pub.publish_many([2], block, 0.01)
        assert sub.get(block, 0.01) == 1
        assert sub.get_many(10, block, 0.01) == [2]
        with pytest.raises(shmq.Empty):
            sub.get(block, 0.01)


@pytest.mark.parametrize("timeout", TIMEOUTS, ids=TIMEOUT_IDS)
def test_timeout_any_real_number(make_queue: Callable[..., shmq.Queue], qname: str, timeout: object) -> None:
    q = make_queue(capacity=4096, maxsize=1)
    q.put(1, True, timeout)
    with pytest.raises(shmq.Full):
        q.put(2, True, timeout)
    with pytest.raises(shmq.Full):
        q.put_many([2], True, timeout)
    assert q.get(True, timeout) == 1
    with pytest.raises(shmq.Empty):
        q.get(True, timeout)
    with pytest.raises(shmq.Empty):
        q.get_many(10, True, timeout)
    with shmq.Broadcast(f"{qname}-bc", capacity=4096) as pub, shmq.Subscriber(f"{qname}-bc") as sub:
        pub.publish(1, True, timeout)
        pub.publish_many([2], True, timeout)
        assert sub.get(True, timeout) == 1
        assert sub.get_many(10, True, timeout) == [2]
        with pytest.raises(shmq.Empty):
            sub.get(True, timeout)


@pytest.mark.parametrize("timeout", TIMEOUTS, ids=TIMEOUT_IDS)
@pytest.mark.parametrize("block", [0, 1], ids=["block=0", "block=1"])
def test_compat_smq_block_and_timeout(qname: str, block: int, timeout: object) -> None:
    from shmq.compat import smq

    q = smq.SharedMemoryQueue(qname, create=1, capacity=1, item_size=64)
    try:
        q.put("a", block, timeout)  # type: ignore[arg-type]
        with pytest.raises(smq.Full):
            q.put("b", block, timeout)  # type: ignore[arg-type]
        assert q.get(block, timeout) == "a"  # type: ignore[arg-type]
        with pytest.raises(smq.Empty):
            q.get(block, timeout)  # type: ignore[arg-type]
    finally:
        q.close()
        q.unlink()


@pytest.mark.parametrize("timeout", TIMEOUTS, ids=TIMEOUT_IDS)
def test_compat_smq_async_timeouts(qname: str, timeout: object) -> None:
    import asyncio

    from shmq.compat import smq

    q = smq.SharedMemoryQueue(qname, create=True, capacity=1, item_size=64)
    try:
        asyncio.run(q.put_async("a", timeout))  # type: ignore[arg-type]
        with pytest.raises(smq.Full):
            asyncio.run(q.put_async("b", timeout))  # type: ignore[arg-type]
        assert asyncio.run(q.get_async(timeout)) == "a"  # type: ignore[arg-type]
        with pytest.raises(smq.Empty):
            asyncio.run(q.get_async(timeout))  # type: ignore[arg-type]
    finally:
        q.close()
        q.unlink()


@pytest.mark.parametrize("timeout", TIMEOUTS, ids=TIMEOUT_IDS)
@pytest.mark.parametrize("block", [0, 1], ids=["block=0", "block=1"])
def test_compat_shmqueue_block_and_timeout(qname: str, block: int, timeout: object) -> None:
    from shmq.compat import shmqueue

    q = shmqueue.ShmQueue(qname)
    try:
        # Fill it: a bounded number of 4 KiB items fits in the one-page default buffer.
        with pytest.raises(shmqueue.ShmQueueFull):
            for i in range(10_000):
                q.put(i, block, timeout)  # type: ignore[arg-type]
        assert q.get(block, timeout) == 0  # type: ignore[arg-type]
        while True:
            try:
                q.get(block, timeout)  # type: ignore[arg-type]
            except shmqueue.ShmQueueEmpty:
                break
    finally:
        q.shutdown()


# --------------------------------------------------------------------------------------
# A closed handle (as multiprocessing.Queue after close())
# --------------------------------------------------------------------------------------


def test_a_closed_queue_refuses_every_call_with_a_value_error_and_closes_twice(queue: shmq.Queue) -> None:
    """multiprocessing.Queue raises ``ValueError("Queue ... is closed")`` from put/get after
    close(); shmq's QueueClosedError is a ValueError, and its queries (qsize, empty, full,
    ...) refuse too: the handle is detached and cannot look (3.12's multiprocessing also
    raises from empty() of a closed queue)."""
    queue.put(1)
    queue.close()
    queue.close()  # a no-op, as multiprocessing's
    assert queue.closed
    assert "closed" in repr(queue)
    calls: dict[str, Callable[[], object]] = {
        "put": lambda: queue.put(2),
        "put_nowait": lambda: queue.put_nowait(2),
        "put_many": lambda: queue.put_many([2]),
        "put_many_nowait": lambda: queue.put_many_nowait([2]),
        "get": queue.get,
        "get_nowait": queue.get_nowait,
        "get_many": queue.get_many,
        "get_many_nowait": queue.get_many_nowait,
        "qsize": queue.qsize,
        "empty": queue.empty,
        "full": queue.full,
        "data_size": queue.data_size,
        "stats": queue.stats,
        "shutdown": queue.shutdown,
        "is_shutdown": lambda: queue.is_shutdown,
    }
    for what, call in calls.items():
        with pytest.raises(ValueError, match="is closed") as e:
            call()
        assert isinstance(e.value, shmq.QueueClosedError), what
    queue.join_thread()  # allowed after close(), as in multiprocessing


def test_a_closed_broadcast_and_subscriber_refuse_every_call(qname: str) -> None:
    pub = shmq.Broadcast(qname, capacity="64KiB")
    sub = shmq.Subscriber(qname)
    pub.close()
    pub.close()
    sub.close()
    sub.close()
    for call in (lambda: pub.publish(1), lambda: pub.shutdown(), lambda: pub.is_shutdown,
                 sub.get, lambda: sub.get_many(), lambda: sub.is_shutdown):
        with pytest.raises(shmq.QueueClosedError, match="is closed"):
            call()


def test_the_compat_queues_raise_shutdown_once_a_shmq_handle_shut_the_queue_down(qname: str) -> None:
    """Their own shutdown()/close() only detach (as the originals'); a shmq.Queue of the same
    name can still end the queue for everybody (docs/compat.md)."""
    from shmq.compat import shmqueue, smq

    a = smq.SharedMemoryQueue(f"{qname}-smq", create=True, capacity=4, item_size=64)
    b = shmqueue.ShmQueue(f"{qname}-shmqueue")
    try:
        for compat, name in ((a, f"{qname}-smq"), (b, f"{qname}-shmqueue")):
            compat.put("left")
            with shmq.Queue(name, create=False) as q:
                q.shutdown()
            assert compat.get() == "left"
            with pytest.raises(shmq.ShutDown):
                compat.get()
            with pytest.raises(shmq.ShutDown):
                compat.put("late")
    finally:
        a.close()
        a.unlink()
        b.shutdown()
