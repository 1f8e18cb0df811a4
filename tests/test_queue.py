"""Single-process semantics of shmq.Queue, mirroring multiprocessing.Queue where it applies."""

from __future__ import annotations

import math
import os
import pickle
import queue as stdqueue
import re
import stat
import threading
import time
import typing
from collections.abc import Callable
from typing import Any

import pytest

import shmq
import _helpers as h
from _helpers import remove_segment, segment_path

MakeQueue = Callable[..., shmq.Queue]


def elapsed(f: Callable[[], Any], exc: type[BaseException]) -> float:
    """Runs ``f``, which must raise ``exc``; returns how long it took."""
    t0 = time.monotonic()
    with pytest.raises(exc):
        f()
    return time.monotonic() - t0


# --------------------------------------------------------------------------------------
# put / get basics
# --------------------------------------------------------------------------------------


def test_fifo_order(queue: shmq.Queue) -> None:
    for i in range(200):
        queue.put(i)
    assert [queue.get() for _ in range(200)] == list(range(200))
    assert queue.empty()


def test_put_get_round_trips_objects(queue: shmq.Queue) -> None:
    objs: list[Any] = [None, 0, -1, 2**100, 1.5, math.inf, "", "text", "ünïcødé", b"\x00\xff", (1, 2), [1, [2]],
                       {"k": {"n": [1, 2]}}, {1, 2}, frozenset({3}), True, complex(1, 2)]
    for o in objs:
        queue.put(o)
    got = [queue.get(timeout=5) for _ in objs]
    assert got == objs
    assert [type(g) for g in got] == [type(o) for o in objs]


def test_put_nowait_get_nowait(queue: shmq.Queue) -> None:
    queue.put_nowait("a")
    queue.put_nowait("b")
    assert queue.get_nowait() == "a"
    assert queue.get_nowait() == "b"
    with pytest.raises(shmq.Empty):
        queue.get_nowait()


@pytest.mark.timeout(20)
def test_nonblocking_get_on_empty_queue_raises_empty(queue: shmq.Queue) -> None:
    with pytest.raises(shmq.Empty):
        queue.get(block=False)
    with pytest.raises(shmq.Empty):
        queue.get(False)
    # As multiprocessing.Queue: with block=False the timeout is ignored (no wait).
    assert elapsed(lambda: queue.get(block=False, timeout=30), shmq.Empty) < 10
    with pytest.raises(stdqueue.Empty):  # the standard exception catches it too
        queue.get_nowait()


def test_nonblocking_get_returns_available_item(queue: shmq.Queue) -> None:
    queue.put("x")
    assert queue.get(block=False) == "x"


@pytest.mark.timeout(20)
def test_timeout_zero_means_do_not_wait(make_queue: MakeQueue) -> None:
    q = make_queue(maxsize=1, capacity="64KiB")
    # Empty queue: every get flavour with timeout=0 raises at once, never waits forever.
    assert elapsed(lambda: q.get(timeout=0), shmq.Empty) < 5
    assert elapsed(lambda: q.get(True, 0), shmq.Empty) < 5
    assert elapsed(lambda: q.get(timeout=0.0), shmq.Empty) < 5
    assert elapsed(lambda: q.get_many(10, timeout=0), shmq.Empty) < 5
    # ... and a timeout=0 call that can proceed does proceed.
    q.put("one", timeout=0)
    # Full queue (maxsize=1): puts with timeout=0 raise Full at once.
    assert elapsed(lambda: q.put("two", timeout=0), shmq.Full) < 5
    assert elapsed(lambda: q.put_many(["two"], timeout=0), shmq.Full) < 5
    assert q.get(timeout=0) == "one"
    q.put_many(["three"], timeout=0)
    assert q.get_many(5, timeout=0) == ["three"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("t", [0.05, 0.3])
def test_positive_timeout_get_waits_at_least_that_long(queue: shmq.Queue, t: float) -> None:
    assert elapsed(lambda: queue.get(timeout=t), shmq.Empty) >= t
    assert elapsed(lambda: queue.get(True, t), shmq.Empty) >= t
    assert elapsed(lambda: queue.get_many(3, timeout=t), shmq.Empty) >= t


@pytest.mark.timeout(30)
def test_positive_timeout_put_on_full_queue_waits_at_least_that_long(make_queue: MakeQueue) -> None:
    q = make_queue(maxsize=2)
    q.put(1)
    q.put(2)
    assert elapsed(lambda: q.put(3, timeout=0.3), shmq.Full) >= 0.3
    assert elapsed(lambda: q.put(3, True, 0.1), shmq.Full) >= 0.1
    assert elapsed(lambda: q.put_many([3], timeout=0.2), shmq.Full) >= 0.2
    assert [q.get_nowait(), q.get_nowait()] == [1, 2]  # the failed puts left nothing


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan"), -math.inf])
def test_negative_or_nan_timeout_is_a_value_error(make_queue: MakeQueue, bad: float) -> None:
    q = make_queue(maxsize=1)
    with pytest.raises(ValueError):
        q.get(timeout=bad)
    with pytest.raises(ValueError):
        q.get_many(2, timeout=bad)
    with pytest.raises(ValueError):
        q.put("x", timeout=bad)
    with pytest.raises(ValueError):
        q.put_many(["x"], timeout=bad)
    assert q.empty()  # the rejected puts did not put anything


def test_exception_hierarchy() -> None:
    assert issubclass(shmq.Empty, stdqueue.Empty)
    assert issubclass(shmq.Full, stdqueue.Full)
    for exc in (shmq.Empty, shmq.Full, shmq.QueueNotFoundError, shmq.QueueExistsError, shmq.InvalidNameError,
                shmq.MessageTooLargeError, shmq.CorruptedQueueError, shmq.QueueClosedError, shmq.CodecError,
                shmq.DecodeError, shmq.PickleNotAllowedError, shmq.QueuePermissionError,
                shmq.TooManyProcessesError):
        assert issubclass(exc, shmq.ShmqError), exc
    assert issubclass(shmq.QueueNotFoundError, FileNotFoundError)
    assert issubclass(shmq.QueueExistsError, FileExistsError)
    assert issubclass(shmq.QueuePermissionError, PermissionError)
    assert issubclass(shmq.InvalidNameError, ValueError)
    assert issubclass(shmq.MessageTooLargeError, ValueError)
    assert issubclass(shmq.QueueClosedError, ValueError)
    assert issubclass(shmq.PickleNotAllowedError, shmq.DecodeError)
    assert issubclass(shmq.PickleNotAllowedError, shmq.CodecError)


# --------------------------------------------------------------------------------------
# Bounds: maxsize (messages) and capacity (bytes)
# --------------------------------------------------------------------------------------


def test_maxsize_bounds_message_count(make_queue: MakeQueue) -> None:
    q = make_queue(maxsize=3)
    assert q.maxsize == 3
    assert not q.full()
    for i in range(3):
        q.put_nowait(i)
    assert q.full()
    assert q.qsize() == 3
    with pytest.raises(shmq.Full):
        q.put_nowait(99)
    with pytest.raises(shmq.Full):
        q.put(99, block=False)
    with pytest.raises(stdqueue.Full):
        q.put(99, False)
    assert q.get_nowait() == 0
    assert not q.full()
    q.put_nowait(3)
    assert [q.get_nowait() for _ in range(3)] == [1, 2, 3]
    assert q.empty() and q.qsize() == 0


def test_an_int_first_argument_is_maxsize_as_in_multiprocessing() -> None:
    # multiprocessing.Queue(2) holds at most 2 messages: so does shmq.Queue(2)
    with shmq.Queue(2) as q:
        assert q.maxsize == 2 and q.name.startswith("anon-")
        q.put_nowait("a")
        q.put_nowait("b")
        with pytest.raises(shmq.Full):
            q.put_nowait("c")


@pytest.mark.parametrize(
    "make",
    [
        lambda name: shmq.Queue(name, 3),
        lambda name: shmq.Queue(name, 3, "64KiB"),
        lambda name: shmq.Queue(name, maxsize=3),
        lambda name: shmq.Queue(name=name, maxsize=3),
        lambda name: shmq.Queue(3, name=name),
        lambda name: shmq.Queue(3, name=name, capacity="64KiB"),
    ],
    ids=["name-maxsize", "name-maxsize-capacity", "name-kw", "kw-kw", "maxsize-name", "maxsize-name-capacity"],
)
def test_name_and_maxsize_in_every_spelling(qname: str, make: Callable[[str], shmq.Queue]) -> None:
    with make(qname) as q:
        assert (q.name, q.maxsize) == (qname, 3)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((100, 5), {}, "takes maxsize alone when it comes first"),
        ((100, "64KiB"), {}, "takes maxsize alone when it comes first"),
        ((100,), {"maxsize": 5}, "multiple values for argument 'maxsize'"),
        ((True,), {}, "first argument is maxsize (an int) or name (a str or None), not bool"),
        ((1.5,), {}, "first argument is maxsize (an int) or name (a str or None), not float"),
        ((b"jobs",), {}, "not bytes"),
        ((["jobs"],), {}, "not list"),
    ],
)
def test_a_first_argument_neither_maxsize_nor_name_is_a_type_error(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        shmq.Queue(*args, **kwargs)


@pytest.mark.parametrize("maxsize", [0, -1, -100])
def test_maxsize_zero_or_negative_means_unbounded(make_queue: MakeQueue, maxsize: int) -> None:
    q = make_queue(maxsize=maxsize)
    assert q.maxsize == 0
    q.put_many(range(5000))
    assert q.qsize() == 5000
    assert not q.full()


def test_put_many_never_exceeds_maxsize(make_queue: MakeQueue) -> None:
    q = make_queue(maxsize=3)
    try:
        q.put_many(range(10), timeout=0.5)
    except shmq.Full:
        pass  # acceptable: the batch could not go in within the bound
    assert q.qsize() <= 3


def test_capacity_bounds_bytes(make_queue: MakeQueue) -> None:
    q = make_queue(capacity=4096, codec="raw")
    assert q.capacity == 4096
    rec = b"x" * (1024 - 16)  # one record = 16-byte header + payload = 1024 bytes
    for _ in range(4):
        q.put_nowait(rec)
    assert q.full()
    assert q.qsize() == 4
    with pytest.raises(shmq.Full):
        q.put_nowait(b"")
    with pytest.raises(shmq.Full):
        q.put(b"y", timeout=0.01)
    assert q.get_nowait() == rec
    assert not q.full()
    q.put_nowait(b"z" * 100)
    assert [q.get_nowait() for _ in range(4)] == [rec, rec, rec, b"z" * 100]


@pytest.mark.parametrize(
    "capacity, expected",
    [
        ("64KiB", 65536),
        ("1MiB", 1 << 20),
        (65536, 65536),
        ("64 KiB", 65536),
        (" 2mib ", 2 << 20),
        ("128k", 131072),  # 128000 bytes, rounded up to whole pages
        (1, 4096),  # at least one page
        ("10000b", 12288),
    ],
)
def test_capacity_accepts_ints_and_size_strings(make_queue: MakeQueue, capacity: Any, expected: int) -> None:
    q = make_queue(capacity=capacity)
    assert q.capacity == expected
    assert q.max_message_size == expected - 16
    assert q.stats().capacity == expected


def test_parse_size() -> None:
    assert shmq.parse_size(4096) == 4096
    assert shmq.parse_size("64KiB") == 64 * 1024
    assert shmq.parse_size("64MiB") == 64 * 1024**2
    assert shmq.parse_size("1GiB") == 1024**3
    assert shmq.parse_size("1.5 GB") == 1_500_000_000
    assert shmq.parse_size("512k") == 512_000
    assert shmq.parse_size("7") == 7


@pytest.mark.parametrize("bad", ["", "abc", "12 parsecs", "-1", "0", "0KiB", "1e6", "KiB", -1, 0, -4096, 2**41])
def test_invalid_capacity_is_a_value_error(qname: str, bad: Any) -> None:
    with pytest.raises(ValueError):
        shmq.Queue(qname, capacity=bad)
    assert qname not in shmq.list_queues()


@pytest.mark.parametrize("bad", [True, False, 1.5, None, [4096], b"64KiB"])
def test_capacity_of_wrong_type_is_a_type_error(qname: str, bad: Any) -> None:
    with pytest.raises(TypeError):
        shmq.Queue(qname, capacity=bad)
    assert qname not in shmq.list_queues()


def test_capacity_and_maxsize_of_an_existing_queue_win(make_queue: MakeQueue, qname: str) -> None:
    a = make_queue(capacity="64KiB", maxsize=7)
    b = make_queue(qname)  # opens: left out, the sizes are the existing queue's
    assert b.capacity == a.capacity == 65536
    assert b.maxsize == 7
    with pytest.raises(shmq.MismatchError):  # given, they must match (test_bad_inputs.py)
        make_queue(qname, capacity="1MiB", maxsize=100)


# --------------------------------------------------------------------------------------
# qsize / empty / full, batches
# --------------------------------------------------------------------------------------


def test_qsize_empty_full(queue: shmq.Queue) -> None:
    assert queue.qsize() == 0 and queue.empty() and not queue.full()
    queue.put("a")
    assert queue.qsize() == 1 and not queue.empty()
    queue.put_many(["b", "c"])
    assert queue.qsize() == 3
    queue.get()
    assert queue.qsize() == 2
    queue.get_many()
    assert queue.qsize() == 0 and queue.empty()


def test_qsize_is_shared_between_handles(make_queue: MakeQueue, qname: str) -> None:
    a = make_queue()
    b = make_queue(qname, create=False)
    a.put_many(range(5))
    assert b.qsize() == 5 and not b.empty()
    assert b.get() == 0
    assert a.qsize() == 4


def test_put_many_get_many_keep_order(queue: shmq.Queue) -> None:
    queue.put_many(range(10))
    queue.put_many(iter(["a", "b"]))  # any iterable
    queue.put_many(x * x for x in range(3))  # a generator
    queue.put_many([])  # nothing
    assert queue.get_many() == [*range(10), "a", "b", 0, 1, 4]
    assert queue.empty()


def test_get_many_max_messages(queue: shmq.Queue) -> None:
    queue.put_many(range(10))
    assert queue.get_many(4) == [0, 1, 2, 3]
    assert queue.get_many(max_messages=1) == [4]
    assert queue.get_many(100) == [5, 6, 7, 8, 9]
    with pytest.raises(shmq.Empty):
        queue.get_many(5, block=False)


@pytest.mark.timeout(20)
def test_get_many_returns_what_is_there_without_waiting_for_more(queue: shmq.Queue) -> None:
    queue.put("only one")
    assert queue.get_many(100, timeout=10) == ["only one"]
    queue.put("and another")
    assert queue.get_many(100) == ["and another"]  # blocking: returns once one is there


@pytest.mark.timeout(20)
def test_infinite_timeout_means_block(queue: shmq.Queue) -> None:
    queue.put(1, timeout=math.inf)
    assert queue.get(timeout=math.inf) == 1
    queue.put_many([2], timeout=1e300)
    assert queue.get_many(5, timeout=1e300) == [2]


def test_get_many_zero_is_a_value_error(queue: shmq.Queue) -> None:
    queue.put(1)
    with pytest.raises(ValueError):
        queue.get_many(0)
    assert queue.get() == 1  # nothing was taken


def test_get_many_negative_is_a_value_error(queue: shmq.Queue) -> None:
    with pytest.raises(ValueError):
        queue.get_many(-1)


@pytest.mark.timeout(60)
def test_put_many_larger_than_capacity_is_split_and_delivered_in_order(make_queue: MakeQueue, qname: str) -> None:
    q = make_queue(capacity=4096, codec="raw")
    reader = make_queue(qname, create=False)
    msgs = [i.to_bytes(4, "little") * 100 for i in range(300)]  # 300 x 416-byte records ~ 30 rings
    got: list[bytes] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            while len(got) < len(msgs):
                got.extend(reader.get_many(7, timeout=30))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=consume)
    t.start()
    try:
        q.put_many(msgs, timeout=30)
    finally:
        t.join(40)
    assert not t.is_alive()
    assert not errors, errors
    assert got == msgs


@pytest.mark.timeout(60)
def test_put_many_of_largest_messages(make_queue: MakeQueue, qname: str) -> None:
    q = make_queue(capacity=4096, codec="raw")
    reader = make_queue(qname, create=False)
    msgs = [bytes([i]) * q.max_message_size for i in range(5)]  # each fills the whole ring
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.extend(reader.get(timeout=30) for _ in msgs))
    t.start()
    try:
        q.put_many(msgs, timeout=30)
    finally:
        t.join(40)
    assert not t.is_alive()
    assert got == msgs


def test_put_many_with_codec_override(queue: shmq.Queue) -> None:
    queue.put_many([b"a", b"b"], codec=shmq.CODEC_RAW)
    queue.put_many([{"k": 1}], codec=shmq.CODEC_MSGPACK)
    queue.put_many([("t",)])
    assert queue.get_many() == [b"a", b"b", {"k": 1}, ("t",)]


@pytest.mark.timeout(30)
def test_many_messages_wrap_around_a_small_ring(make_queue: MakeQueue) -> None:
    q = make_queue(capacity=4096, codec="raw")
    for i in range(20_000):
        m = bytes([i % 251]) * (i % 397)
        q.put(m)
        if i % 3 == 0:
            q.put(m)
            assert q.get_many(2) == [m, m]
        else:
            assert q.get() == m
    assert q.empty()
    s = q.stats()
    assert s.puts == s.gets == 20_000 + len(range(0, 20_000, 3))


# --------------------------------------------------------------------------------------
# stats, repr, list_queues
# --------------------------------------------------------------------------------------


def test_stats_fields(make_queue: MakeQueue) -> None:
    q = make_queue(capacity="64KiB", maxsize=50)
    s = q.stats()
    assert isinstance(s, shmq.QueueStats)
    assert s == shmq.QueueStats(depth=0, bytes_used=0, capacity=65536, maxsize=50, puts=0, gets=0, waits=0,
                                attached=1, lost=0, abandoned=0, reaped=0, tail=0, head=0)
    q.put_many(range(10))
    q.put("x")
    q.get()
    q.get_many(3)
    s = q.stats()
    assert (s.puts, s.gets, s.depth) == (11, 4, 7)
    assert s.tail > s.head > 0 and s.tail - s.head <= s.bytes_used
    count, payload = q._queued_payload()
    assert count == 7
    assert payload == sum(len(pickle.dumps(x, protocol=5)) for x in [4, 5, 6, 7, 8, 9, "x"])
    assert 0 < s.bytes_used <= s.capacity
    assert s.attached == 1
    assert s._asdict().keys() == {"depth", "bytes_used", "capacity", "maxsize", "puts", "gets", "waits",
                                  "attached", "lost", "abandoned", "reaped", "tail", "head", "dropped"}


def test_stats_are_shared_and_count_attached_handles(make_queue: MakeQueue, qname: str) -> None:
    a = make_queue()
    b = make_queue(qname, create=False)
    assert a.stats().attached == 2
    a.put(1)
    b.put(2)
    assert b.get() == 1
    s = a.stats()
    assert (s.puts, s.gets, s.depth, s.attached) == (2, 1, 1, 2)
    b.close()
    s = a.stats()
    assert s.attached == 1
    assert (s.puts, s.gets) == (2, 1)  # the closed handle's counters are kept


def test_repr(make_queue: MakeQueue, qname: str) -> None:
    q = make_queue(capacity="64KiB", maxsize=5)
    q.put(1)
    r = repr(q)
    assert r == f"<shmq.Queue {qname!r} qsize=1 capacity=65536 maxsize=5>"
    q.close()
    assert repr(q) == f"<shmq.Queue {qname!r} closed>"


def test_list_queues(make_queue: MakeQueue, qname: str) -> None:
    q = make_queue()
    assert qname in shmq.list_queues()
    assert all(isinstance(n, str) and not n.startswith(shmq.SEGMENT_PREFIX) for n in shmq.list_queues())
    q.close()
    assert qname not in shmq.list_queues()


# --------------------------------------------------------------------------------------
# Lifetime: close, context manager, join_thread, use after close
# --------------------------------------------------------------------------------------


def test_context_manager_closes(qname: str) -> None:
    with shmq.Queue(qname, create=True) as q:
        assert isinstance(q, shmq.Queue)
        assert not q.closed
        q.put("in")
        assert q.get() == "in"
    assert q.closed
    assert not segment_path(qname).exists()


def test_context_manager_closes_on_exception(qname: str) -> None:
    with pytest.raises(RuntimeError), shmq.Queue(qname, create=True) as q:
        raise RuntimeError("boom")
    assert q.closed
    assert not segment_path(qname).exists()


USE_AFTER_CLOSE: list[tuple[str, Callable[[shmq.Queue], Any]]] = [
    ("put", lambda q: q.put(1)),
    ("put_nowait", lambda q: q.put_nowait(1)),
    ("put_many", lambda q: q.put_many([1])),
    ("get", lambda q: q.get()),
    ("get_timeout", lambda q: q.get(timeout=1)),
    ("get_nowait", lambda q: q.get_nowait()),
    ("get_many", lambda q: q.get_many()),
    ("qsize", lambda q: q.qsize()),
    ("empty", lambda q: q.empty()),
    ("full", lambda q: q.full()),
    ("stats", lambda q: q.stats()),
    ("capacity", lambda q: q.capacity),
    ("maxsize", lambda q: q.maxsize),
    ("max_message_size", lambda q: q.max_message_size),
    ("persistent", lambda q: q.persistent),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("op", [f for _, f in USE_AFTER_CLOSE], ids=[n for n, _ in USE_AFTER_CLOSE])
def test_use_after_close_raises_queue_closed_error(queue: shmq.Queue, op: Callable[[shmq.Queue], Any]) -> None:
    queue.put("left behind")
    queue.close()
    with pytest.raises(shmq.QueueClosedError):
        op(queue)
    with pytest.raises(ValueError):  # as multiprocessing.Queue after close()
        op(queue)


def test_closed_queue_keeps_its_identity(queue: shmq.Queue, qname: str) -> None:
    queue.close()
    assert queue.closed
    assert queue.name == qname
    assert queue.codec_id == shmq.CODEC_PICKLE
    assert queue.allow_pickle is True


def test_close_is_idempotent(queue: shmq.Queue, qname: str) -> None:
    queue.close()
    queue.close()
    assert queue.closed
    assert qname not in shmq.list_queues()


def test_join_thread_only_after_close(queue: shmq.Queue) -> None:
    with pytest.raises(ValueError):
        queue.join_thread()
    queue.cancel_join_thread()  # allowed at any time, does nothing
    queue.put(1)
    queue.close()
    queue.join_thread()
    queue.cancel_join_thread()


# --------------------------------------------------------------------------------------
# Names, create/open, namespaces
# --------------------------------------------------------------------------------------


def test_create_true_on_existing_name(make_queue: MakeQueue, qname: str) -> None:
    q = make_queue()
    q.put("original")
    with pytest.raises(shmq.QueueExistsError) as ei:
        shmq.Queue(qname, create=True)
    assert isinstance(ei.value, FileExistsError)
    assert q.get_nowait() == "original"  # the existing queue is untouched


def test_create_false_on_missing_name(qname: str) -> None:
    with pytest.raises(shmq.QueueNotFoundError) as ei:
        shmq.Queue(qname, create=False)
    assert isinstance(ei.value, FileNotFoundError)
    assert not segment_path(qname).exists()


def test_create_none_opens_or_creates(make_queue: MakeQueue, qname: str) -> None:
    a = make_queue(qname)  # create=None: creates
    b = make_queue(qname)  # create=None: opens
    a.put("shared")
    assert b.get(timeout=5) == "shared"
    assert a.stats().attached == 2


def test_create_false_without_name_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        shmq.Queue(None, create=False)


@pytest.mark.parametrize("bad", ["", "a/b", "x" * 201, ".hidden", "sp ace", "tab\t", "new\nline", "é", "a\0b",
                                 "..", "/abs", "semi;colon", "star*"])
def test_invalid_names(bad: str) -> None:
    for create in (None, True, False):
        with pytest.raises(shmq.InvalidNameError) as ei:
            shmq.Queue(bad, create=create)
        assert isinstance(ei.value, ValueError)


@pytest.mark.parametrize("bad", ["", "a/b", ".hidden", "sp ace", "x" * 201])
def test_invalid_namespaces(qname: str, bad: str) -> None:
    with pytest.raises(shmq.InvalidNameError):
        shmq.Queue(qname, namespace=bad)
    assert qname not in shmq.list_queues()


def test_longest_name_is_accepted(make_queue: MakeQueue, qname: str) -> None:
    name = (qname + "-" + "n" * 200)[:200]
    q = make_queue(name, create=True)
    assert q.name == name
    assert segment_path(name).exists()


@pytest.mark.parametrize("bad", [123, b"bytes", ["x"]])
def test_name_of_wrong_type_is_a_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="name must be a str"):
        shmq.Queue(name=bad)  # positional: see test_a_first_argument_neither_maxsize_nor_name_...


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"maxsize": "3"}, TypeError),
        ({"maxsize": True}, TypeError),
        ({"maxsize": 1.5}, TypeError),
        ({"mode": 0o1000}, ValueError),
        ({"mode": -1}, ValueError),
        ({"mode": "600"}, TypeError),
        ({"max_processes": 0}, ValueError),
        ({"max_processes": 5000}, ValueError),
        ({"create": "yes"}, TypeError),
        ({"create": 1}, TypeError),
        ({"codec": "no-such-codec"}, ValueError),
        ({"codec": 3}, ValueError),
        ({"codec": 1000}, ValueError),
        ({"codec": 65536}, ValueError),
        ({"codec": True}, TypeError),
        ({"codec": 1.0}, TypeError),
    ],
)
def test_invalid_arguments(qname: str, kwargs: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        shmq.Queue(qname, **kwargs)
    assert qname not in shmq.list_queues()


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o666, 0o400])
def test_mode_sets_segment_permissions(make_queue: MakeQueue, qname: str, mode: int) -> None:
    make_queue(mode=mode)
    assert stat.S_IMODE(segment_path(qname).stat().st_mode) == mode  # not masked by the umask


def test_default_mode_is_owner_only(make_queue: MakeQueue, qname: str) -> None:
    make_queue()
    assert stat.S_IMODE(segment_path(qname).stat().st_mode) == 0o600


def test_namespaces_isolate_names(make_queue: MakeQueue, qname: str) -> None:
    a = make_queue("q", namespace=f"{qname}-A", create=True)
    b = make_queue("q", namespace=f"{qname}-B", create=True)  # same name, another namespace
    a2 = make_queue("q", namespace=f"{qname}-A", create=False)  # same namespace: same queue
    assert a.name == f"{qname}-A.q"
    assert b.name == f"{qname}-B.q"
    assert shmq.full_name("q", f"{qname}-A") == a.name
    a.put("for A")
    b.put("for B")
    assert a2.get(timeout=5) == "for A"
    assert b.get(timeout=5) == "for B"
    assert a.empty() and b.empty()
    assert {a.name, b.name} <= set(shmq.list_queues())
    with pytest.raises(shmq.QueueNotFoundError):
        shmq.Queue("q", namespace=f"{qname}-C", create=False)


def test_name_none_makes_distinct_private_queues() -> None:
    with shmq.Queue() as a, shmq.Queue() as b:
        assert a.name != b.name
        assert a.name.startswith("anon-") and b.name.startswith("anon-")
        assert {a.name, b.name} <= set(shmq.list_queues())
        a.put("a")
        with pytest.raises(shmq.Empty):
            b.get_nowait()
        assert a.get_nowait() == "a"
        names = (a.name, b.name)
    assert not set(names) & set(shmq.list_queues())


# --------------------------------------------------------------------------------------
# Message sizes
# --------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_message_too_large_raises_at_once_even_when_blocking(make_queue: MakeQueue) -> None:
    q = make_queue(capacity="64KiB", codec="raw")
    too_big = b"x" * (q.max_message_size + 1)
    for put in (lambda: q.put(too_big), lambda: q.put(too_big, block=True, timeout=None),
                lambda: q.put_nowait(too_big), lambda: q.put(too_big, timeout=5),
                lambda: q.put_many([too_big]), lambda: q.put(bytearray(10**6))):
        with pytest.raises(shmq.MessageTooLargeError) as ei:
            put()
        assert isinstance(ei.value, ValueError)
    # Still never a hang when the queue is full of other messages.
    while not q.full():
        q.put_nowait(b"y" * 1000)
    with pytest.raises(shmq.MessageTooLargeError):
        q.put(too_big)
    # Pickled objects are measured after encoding.
    p = make_queue(capacity="64KiB")
    with pytest.raises(shmq.MessageTooLargeError):
        p.put(b"x" * p.max_message_size)  # the pickle framing makes it too large
    assert p.empty()


def test_max_message_size_is_accepted_exactly(make_queue: MakeQueue) -> None:
    q = make_queue(capacity="64KiB", codec="raw")
    assert q.max_message_size == 65536 - 16
    big = os.urandom(q.max_message_size)
    q.put(big)
    assert q.full()
    assert q.get() == big
    q.put(big, timeout=0)  # again, after the ring has moved
    assert q.get() == big


@pytest.mark.parametrize("codec", ["raw", "pickle", "msgpack"])
def test_empty_bytes_message(make_queue: MakeQueue, codec: str) -> None:
    q = make_queue(codec=codec)
    q.put(b"")
    q.put(b"")
    assert q.qsize() == 2
    assert q.get() == b""
    assert q.get_many() == [b""]


def test_large_pickled_object(make_queue: MakeQueue) -> None:
    q = make_queue(capacity="4MiB")
    obj = {"blob": os.urandom(3 * 1024 * 1024), "list": list(range(1000))}
    q.put(obj)
    assert q.get() == obj


# --------------------------------------------------------------------------------------
# Segment lifetime: last close, persistent, unlink, several handles
# --------------------------------------------------------------------------------------


def test_last_close_removes_segment(qname: str) -> None:
    a = shmq.Queue(qname, create=True)
    b = shmq.Queue(qname, create=False)
    assert segment_path(qname).exists()
    assert not a.persistent
    a.close()
    assert segment_path(qname).exists()  # b still attached
    b.put("still here")
    assert b.get() == "still here"
    b.close()
    assert not segment_path(qname).exists()
    with pytest.raises(shmq.QueueNotFoundError):
        shmq.Queue(qname, create=False)


def test_persistent_queue_survives_last_close_until_unlink(qname: str) -> None:
    try:
        q = shmq.Queue(qname, create=True, persistent=True)
        assert q.persistent
        q.put("kept")
        q.close()
        assert segment_path(qname).exists()
        assert qname in shmq.list_queues()
        q = shmq.Queue(qname, create=False)
        assert q.persistent
        assert q.get(timeout=5) == "kept"
        q.unlink()
        assert not segment_path(qname).exists()
        q.put("after unlink")  # the attached handle keeps working
        assert q.get(timeout=5) == "after unlink"
        q.close()
        assert not segment_path(qname).exists()
    finally:
        remove_segment(qname)


def test_unlink_while_attached(make_queue: MakeQueue, qname: str) -> None:
    a = make_queue()
    b = make_queue(qname, create=False)
    a.unlink()
    assert not segment_path(qname).exists()
    assert qname not in shmq.list_queues()
    a.unlink()  # unlinking again is harmless
    with pytest.raises(shmq.QueueNotFoundError):
        shmq.Queue(qname, create=False)
    # Attached handles still share the old queue.
    a.put("old")
    assert b.get(timeout=5) == "old"
    # The name is free again: a new, different queue.
    c = make_queue(qname, create=True)
    c.put("new")
    with pytest.raises(shmq.Empty):
        a.get_nowait()
    a.unlink()  # the name now belongs to the new queue: this must not remove it
    assert segment_path(qname).exists()
    a.close()
    b.close()  # last handle of the old queue: must not remove the new queue's name either
    assert segment_path(qname).exists()
    assert c.get_nowait() == "new"
    d = make_queue(qname, create=False)
    assert d.stats().attached == 2  # c and d


def test_too_many_processes(make_queue: MakeQueue, qname: str) -> None:
    a = make_queue(max_processes=2)
    b = make_queue(qname, create=False)
    with pytest.raises(shmq.TooManyProcessesError):
        shmq.Queue(qname, create=False)
    b.close()
    c = make_queue(qname, create=False)  # the slot is free again
    c.put("ok")
    assert a.get_nowait() == "ok"
    assert a.stats().attached == 2


def test_two_handles_in_one_process(make_queue: MakeQueue, qname: str) -> None:
    a = make_queue()
    b = make_queue(qname, create=False)
    assert a is not b and a.name == b.name
    a.put_many(range(100))
    assert b.get_many(50) == list(range(50))
    b.put("from b")
    assert a.get_many() == [*range(50, 100), "from b"]


# --------------------------------------------------------------------------------------
# Pickling the queue itself
# --------------------------------------------------------------------------------------


def test_queue_pickles_by_name(make_queue: MakeQueue, qname: str) -> None:
    q = make_queue(codec="msgpack", allow_pickle=False)
    clone = pickle.loads(pickle.dumps(q))
    try:
        assert isinstance(clone, shmq.Queue) and clone is not q
        assert clone.name == qname
        assert clone.codec_id == shmq.CODEC_MSGPACK
        assert clone.allow_pickle is False
        assert q.stats().attached == 2
        clone.put({"via": "clone"})
        assert q.get(timeout=5) == {"via": "clone"}
    finally:
        clone.close()


def test_queue_in_a_namespace_pickles_by_its_full_name(make_queue: MakeQueue, qname: str) -> None:
    q = make_queue("q", namespace=f"{qname}-ns", create=True)
    clone = pickle.loads(pickle.dumps(q))
    try:
        assert clone.name == f"{qname}-ns.q"
        clone.put(1)
        assert q.get(timeout=5) == 1
    finally:
        clone.close()


def test_queue_of_a_type_is_a_plain_queue_and_pickles_by_name(qname: str) -> None:
    alias = shmq.Queue[int]  # as queue.Queue[int]; the type is for checkers only
    assert typing.get_origin(alias) is shmq.Queue and typing.get_args(alias) == (int,)
    with alias(qname, create=True, maxsize=3) as q:
        assert type(q) is shmq.Queue
        clone = pickle.loads(pickle.dumps(q))
        with clone:
            assert type(clone) is shmq.Queue and clone.name == qname and clone.maxsize == 3
            clone.put(7)
            assert q.get(timeout=5) == 7


def test_unpickling_a_queue_that_is_gone_raises_not_found(qname: str) -> None:
    with shmq.Queue(qname, create=True) as q:
        data = pickle.dumps(q)
        q.unlink()  # a pickled handle keeps the queue through a close, not through a removal
    with pytest.raises(shmq.QueueNotFoundError):
        pickle.loads(data)


def test_a_pickled_handle_keeps_the_queue_until_it_arrives(qname: str) -> None:
    with shmq.Queue(qname, create=True) as q:
        data = pickle.dumps(q)
    # Closed by its only process, empty: kept for the handle in flight...
    assert h.segment_path(qname).exists()
    q2 = pickle.loads(data)
    q2.put("arrived")
    assert q2.get(timeout=5) == "arrived"
    q2.close()
    # ...which arrived: its close is the last, and the queue goes.
    assert not h.segment_path(qname).exists()


@pytest.mark.parametrize("order", ["close-unlink", "unlink-close"])
def test_close_and_unlink_work_in_either_order_and_twice(qname: str, order: str) -> None:
    q = shmq.Queue(qname, create=True)
    q.put("x")
    steps = [q.close, q.unlink] if order == "close-unlink" else [q.unlink, q.close]
    for step in steps + steps:
        step()
    assert not h.segment_path(qname).exists()
    assert qname not in shmq.list_queues()


def test_unlink_after_close_does_not_remove_a_new_queue_of_the_same_name(qname: str) -> None:
    old = shmq.Queue(qname, create=True, keep_messages=False)
    old.close()
    with shmq.Queue(qname, create=True) as new:
        old.unlink()  # the old one is gone; the name is the new queue's
        assert h.segment_path(qname).exists()
        new.put(1)
        assert new.get(timeout=5) == 1


def test_queue_travels_through_a_queue(make_queue: MakeQueue) -> None:
    outer = make_queue()
    inner = make_queue()
    outer.put(inner)
    received = outer.get(timeout=5)
    try:
        assert received.name == inner.name
        received.put("through the handle")
        assert inner.get(timeout=5) == "through the handle"
    finally:
        received.close()


class _FailsToUnpickle:
    """Pickles fine (with a large padding), fails when unpickled."""

    def __init__(self) -> None:
        self.padding = b"p" * 100_000

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (int, ("not a number", self.padding))  # int(str, bytes) raises TypeError at load


def test_large_pickles_decode_in_place_and_bad_ones_keep_their_bytes(make_queue: MakeQueue) -> None:
    q = make_queue(capacity="1MiB")
    big = {"blob": b"x" * 200_000, "rows": list(range(10_000))}
    q.put(big)
    q.put(_FailsToUnpickle())
    q.put_many([big, "small"])
    assert q.get(timeout=5) == big
    with pytest.raises(shmq.DecodeError) as info:
        q.get(timeout=5)
    assert info.value.raw == pickle.dumps(_FailsToUnpickle(), protocol=5)
    assert q.get(timeout=5) == big and q.get(timeout=5) == "small"
    assert q.empty()
