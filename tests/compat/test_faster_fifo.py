"""shmq.compat.faster_fifo against faster-fifo 1.5's documentation: its README's examples with
only the import changed, one script run against both libraries (the same output), and the
original's bugs that the compat module fixes (each test says what the original did)."""

from __future__ import annotations

import gc
import importlib.util
import inspect
import json
import multiprocessing as mp
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import shmq
from _faster_fifo_children import (
    ff_blocked_get,
    ff_consume_until_closed,
    ff_produce,
    ff_put_forever,
    ff_put_from_child,
)
from _helpers import children, join_all
from shmq.compat import faster_fifo
from shmq.compat.faster_fifo import Closed, Queue, QueueError

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "_faster_fifo_script.py"
spawn = mp.get_context("spawn")


@pytest.fixture
def made() -> Iterator[list[Queue]]:
    """Queues a test appends here are detached at teardown (a closed compat queue is only
    shut down: its handle goes with the object)."""
    queues: list[Queue] = []
    yield queues
    for q in queues:
        q._q.close()
    queues.clear()
    gc.collect()


def _queue(made: list[Queue], *args: Any, **kwargs: Any) -> Queue:
    q = Queue(*args, **kwargs)
    made.append(q)
    return q


# -- the README, as written (only the import changed) ----------------------------------------


def test_readme_usage_example(made: list[Queue]) -> None:
    # The README's "Usage example": its steps and assertions, in its order.
    q = _queue(made, 1000 * 1000)
    py_obj = dict(a=42, b=33, c=(1, 2, 3), d=[1, 2, 3], e="123", f=b"kkk")
    q.put(py_obj)
    assert q.qsize() == 1
    retrieved = q.get()
    assert q.empty()
    assert py_obj == retrieved
    fulls = 0
    for _ in range(100):
        try:
            q.put(py_obj, timeout=0.1)
        except queue.Full:
            fulls += 1
    assert fulls == 0  # 100 small dicts fit in 1 MB
    num_received = 0
    while num_received < 100:
        messages = q.get_many(max_messages_to_get=100)
        assert all(m == py_obj for m in messages)
        num_received += len(messages)
    assert num_received == 100
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)


def test_readme_custom_serializers(made: list[Queue]) -> None:
    # The README's v1.3.0 note: Queue(max_size_bytes=..., loads=..., dumps=...).
    def custom_serializer(obj: Any) -> bytes:
        return json.dumps(obj).encode()

    def custom_deserializer(msg_bytes: bytes) -> Any:
        return json.loads(msg_bytes)

    q = _queue(made, max_size_bytes=100000, loads=custom_deserializer, dumps=custom_serializer)
    q.put_many([{"a": [1, 2]}, "x"])
    assert q.data_size() == 2 * faster_fifo.MESSAGE_HEADER + len(b'{"a": [1, 2]}') + len(b'"x"')
    assert q.get_many() == [{"a": [1, 2]}, "x"]


def test_same_script_same_output_as_faster_fifo() -> None:
    """One script (the README's example, batches, the byte bound, maxsize, serializers,
    children under every start method, threads, close) prints the same JSON with
    faster-fifo and with the compat module. ``make setup`` installs faster-fifo."""
    if importlib.util.find_spec("faster_fifo") is None:
        pytest.fail("faster-fifo is not installed (make setup installs it: pip install 'faster-fifo>=1.4')")
    outputs = []
    for module in ("faster_fifo", "shmq.compat.faster_fifo"):
        done = subprocess.run(
            [sys.executable, str(SCRIPT), module], capture_output=True, text=True, timeout=120, cwd=HERE
        )
        assert done.returncode == 0, f"{module}: {done.stderr}"
        outputs.append(json.loads(done.stdout))
    original, ours = outputs
    assert ours == original
    assert original["received"] == 100 and original["child_spawn"][1] == 0  # the script ran through


# -- fixed: the default timeout (faster-fifo issue #42) -----------------------------------------


@pytest.mark.parametrize("method", ["put", "put_many", "get", "get_many"])
def test_default_timeout_is_none_as_multiprocessing(method: str) -> None:
    # The original: timeout=10.0 by default (Full/Empty after 10 s), and None a TypeError.
    assert faster_fifo.DEFAULT_TIMEOUT is None
    assert inspect.signature(getattr(Queue, method)).parameters["timeout"].default is None


def test_timeout_none_blocks_until_a_message_arrives(made: list[Queue]) -> None:
    q = _queue(made, 10_000)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=None)))
    waits = q._q.stats().waits
    t.start()
    deadline = time.monotonic() + 10
    while q._q.stats().waits == waits and time.monotonic() < deadline:  # the getter sleeps
        time.sleep(0.002)
    assert q._q.stats().waits > waits and not got
    q.put("late")
    t.join(10)
    assert got == ["late"]


# -- fixed: close() is a shutdown every process sees -------------------------------------------


def test_close_drains_then_stops_consumers(made: list[Queue]) -> None:
    q = _queue(made, 100_000)
    results = _queue(made, 100_000)
    q.put_many(list(range(20)))
    q.close()
    assert q.is_closed()
    with pytest.raises(shmq.ShutDown):
        q.put(99)
    with children() as procs:
        p = spawn.Process(target=ff_consume_until_closed, args=(q, results))
        procs.append(p)
        p.start()
        assert results.get(timeout=60) == list(range(20))  # drained, then stopped
        join_all(procs)
    assert p.exitcode == 0
    with pytest.raises(Closed) as e:
        q.get()  # no timeout: raises at once instead of waiting forever
    assert isinstance(e.value, queue.Empty) and isinstance(e.value, shmq.ShutDown)
    q.close()  # twice is fine
    assert q.get_many_nowait.__name__ and q.is_closed()


@pytest.mark.timeout(180)
def test_producers_then_close_then_consumers_stop_with_every_message_once(made: list[Queue]) -> None:
    """faster-fifo's own producer/consumer test, scaled down: producers with its put loop,
    consumers with its get_many loop, close() once the producers are done; every message
    arrives exactly once and every consumer stops."""
    q = _queue(made, 20_000)  # small: producers meet Full, consumers Empty
    results = _queue(made, 10_000_000)
    n, producers, consumers = 3000, 4, 3
    with children() as procs:
        for c in range(consumers):
            procs.append(spawn.Process(target=ff_consume_until_closed, args=(q, results)))
        for p in range(producers):
            procs.append(spawn.Process(target=ff_produce, args=(q, p, n)))
        for p in procs:
            p.start()
        join_all(procs[consumers:], timeout=120)
        q.close()
        got = [m for _ in range(consumers) for m in results.get(timeout=60)]
        join_all(procs[:consumers], timeout=60)
    assert sorted(got) == [(p, i) for p in range(producers) for i in range(n)]  # each once


def test_close_wakes_a_blocked_consumer_in_another_process(made: list[Queue]) -> None:
    # The original's close() set a flag nobody waiting saw: a get() stayed blocked.
    q = _queue(made, 10_000)
    results = _queue(made, 10_000)
    with children() as procs:
        p = spawn.Process(target=ff_blocked_get, args=(q, results))
        procs.append(p)
        p.start()
        assert results.get(timeout=60) == "waiting"
        deadline = time.monotonic() + 10
        while q._q.stats().waits == 0 and time.monotonic() < deadline:  # the child sleeps in get
            time.sleep(0.002)
        q.close()
        assert results.get(timeout=30) == ["Closed", True, True]
        join_all(procs)


# -- fixed: too large, killed processes, pickling, errors --------------------------------------


def test_message_larger_than_the_buffer_raises_at_once(made: list[Queue]) -> None:
    # The original waited for the timeout (10 s by default) and raised Full.
    q = _queue(made, max_size_bytes=1000)
    fits = b"x" * 1000
    while len(pickle.dumps(fits)) + 8 > 1000:
        fits = fits[:-1]
    q.put(fits)  # exactly max_size_bytes as the original counts it
    assert q.data_size() == 1000 and q.get() == fits
    started = time.monotonic()
    with pytest.raises(shmq.MessageTooLargeError):
        q.put(fits + b"x")  # blocking, no timeout: still at once
    with pytest.raises(shmq.MessageTooLargeError):
        q.put_many([1, fits + b"x"])
    assert time.monotonic() - started < 5
    assert q.empty()


def test_killed_producer_does_not_deadlock_the_queue(made: list[Queue]) -> None:
    # The original's process-shared mutex is not robust: a producer killed inside put()
    # while holding it left every other process blocked on it forever.
    q = _queue(made, 200_000)
    pids = _queue(made, 10_000)
    for _ in range(3):
        with children() as procs:
            p = spawn.Process(target=ff_put_forever, args=(q, pids))
            procs.append(p)
            p.start()
            pid = pids.get(timeout=60)
            deadline = time.monotonic() + 30
            while q.qsize() < 2 and time.monotonic() < deadline:  # it is putting
                time.sleep(0.001)
            for _ in range(3):  # make room so that it keeps putting, then kill it mid-stream
                q.get(timeout=10)
            os.kill(pid, signal.SIGKILL)
            p.join(30)
        # The queue still works both ways, at once.
        while True:
            try:
                q.get_many_nowait()
            except queue.Empty:
                break
        q.put("after", timeout=10)
        assert q.get(timeout=10) == "after"


def test_pickled_through_another_queue_and_a_pool(made: list[Queue]) -> None:
    # The original could only be handed to a process as it started (pickle.dumps raised
    # TypeError: the queue lived in ctypes arrays shared by inheritance).
    q = _queue(made, 10_000, loads=bytes.decode, dumps=str.encode)
    carrier = _queue(made, 10_000)
    carrier.put(q)
    copy = carrier.get()
    made.append(copy)
    copy.put("via a queue")
    assert q.get() == "via a queue"  # the copy kept the instance's loads/dumps
    with spawn.Pool(1) as pool:
        pid = pool.apply(ff_put_from_child, (copy, ["1", "2", "3"]))
    assert pid != os.getpid()
    assert q.get_many(timeout=10) == ["1", "2", "3"]


def test_put_many_takes_any_iterable_and_refuses_others(made: list[Queue]) -> None:
    q = _queue(made, 10_000)
    q.put_many(i for i in range(3))  # the original: QueueError for anything but a list/tuple
    assert q.get_many() == [0, 1, 2]
    assert q.last_error is None
    with pytest.raises(QueueError):
        q.put_many(5)  # type: ignore[arg-type]
    assert q.last_error is not None and "iterable" in q.last_error
    for one_message in ("abc", b"abc"):  # not a batch of characters
        with pytest.raises(QueueError):
            q.put_many(one_message)
    assert q.empty()


def test_get_many_byte_bound_keyword(made: list[Queue]) -> None:
    q = _queue(made, 100_000)
    q.put_many([b"y" * 100] * 6)
    one = q.data_size() // 6
    assert len(q.get_many(max_size_bytes=2 * one)) == 2
    assert len(q.get_many(max_size_bytes=2 * one + 1)) == 3  # the last one may pass the bound
    assert len(q.get_many()) == 1  # the attribute's default: everything
    with pytest.raises(ValueError):
        q.get_many(block=False, max_size_bytes=0)


def test_maxsize_zero_is_unbounded_and_full_agrees_with_put(made: list[Queue]) -> None:
    q = _queue(made, 10_000, maxsize=0)
    q.put_many(list(range(100)))
    assert q.qsize() == 100 and not q.full()
    small = _queue(made, 10_000, maxsize=2)
    small.put_many([1, 2])
    assert small.full()
    with pytest.raises(queue.Full):
        small.put_nowait(3)
    with pytest.raises(queue.Full):
        small.put_many_nowait([3])
    with pytest.raises(queue.Full):
        small.put(3, timeout=0.05)
    assert small.get_many_nowait() == [1, 2]
    small.put(1)
    with pytest.raises(queue.Full):
        small.put_many_nowait([2, 3])  # fits maxsize but not now: all or nothing
    assert small.qsize() == 1
    with pytest.raises(queue.Full) as e:
        small.put_many_nowait([2, 3, 4])  # never fitted the original: goes in parts
    sent = e.value.sent  # type: ignore[attr-defined]
    assert small.get_many_nowait() == [1, 2, 3, 4][: 1 + sent]  # .sent says what went in


def test_block_and_timeout_take_ints(made: list[Queue]) -> None:
    q = _queue(made, 10_000)
    q.put(1, 1, 1)
    q.put_many([2], 0)
    assert q.get(0) == 1 and q.get_many(1, 1) == [2]
    with pytest.raises(queue.Empty):
        q.get(1, 0)
    with pytest.raises(ValueError):
        q.get(True, -1)  # as multiprocessing.Queue
