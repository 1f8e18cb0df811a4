"""Several processes on one queue: multiprocessing spawn and fork children, a process pool,
unrelated interpreters, many producers x many consumers, process accounting."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import _helpers as h
import shmq

MakeQueue = Callable[..., shmq.Queue]

SPAWN = multiprocessing.get_context("spawn")
FORK = multiprocessing.get_context("fork")

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------------------
# multiprocessing children: spawn (the queue pickled, or its name) and fork (inherited)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["object", "name"])
@pytest.mark.parametrize("ctx", [SPAWN, FORK], ids=["spawn", "fork"])
def test_child_process_shares_the_queue(make_queue: MakeQueue, ctx: Any, how: str) -> None:
    inbox = make_queue()
    outbox = make_queue()
    args = (inbox, outbox) if how == "object" else (inbox.name, outbox.name)
    with h.children() as procs:
        p = ctx.Process(target=h.child_echo, args=(*args, 3))
        p.start()
        procs.append(p)
        inbox.put_many(["a", {"b": 2}, None])
        got = [outbox.get(timeout=30) for _ in range(3)]
        h.join_all(procs, 30)
    assert p.exitcode == 0
    assert [(tag, obj) for tag, _, obj in got] == [("echo", "a"), ("echo", {"b": 2}), ("echo", None)]
    assert {pid for _, pid, _ in got} == {p.pid}
    assert inbox.empty() and outbox.empty()


def test_spawn_child_receives_anonymous_queue() -> None:
    with shmq.Queue() as inbox, shmq.Queue(capacity="64KiB") as outbox, h.children() as procs:
        p = SPAWN.Process(target=h.child_echo, args=(inbox, outbox, 1))
        p.start()
        procs.append(p)
        inbox.put("private")
        assert outbox.get(timeout=30)[2] == "private"
        h.join_all(procs, 30)
        assert p.exitcode == 0


def test_pickled_queue_keeps_codec_and_allow_pickle_in_child(make_queue: MakeQueue) -> None:
    inbox = make_queue(codec="msgpack", allow_pickle=False)
    outbox = make_queue(codec="msgpack", allow_pickle=False)
    with h.children() as procs:
        p = SPAWN.Process(target=h.child_echo, args=(inbox, outbox, 1))
        p.start()
        procs.append(p)
        inbox.put({"k": [1, 2]})
        # The child's handle encodes with msgpack (a tuple arrives as a list) and refuses pickle.
        assert outbox.get(timeout=30) == ["echo", p.pid, {"k": [1, 2]}]
        h.join_all(procs, 30)
    assert p.exitcode == 0


@pytest.mark.timeout(60)
def test_fork_child_uses_the_inherited_queue_object(make_queue: MakeQueue) -> None:
    q = make_queue()
    with h.children() as procs:
        p = FORK.Process(target=h.child_forked_uses_inherited, args=(q, 5))
        p.start()
        procs.append(p)
        q.put_many([1, 2, 3, 4, 5])
        h.join_all(procs, 30)
    assert p.exitcode == 0
    # The child took the five numbers and put back their squares.
    assert q.get_many(10, timeout=5) == [("sq", x * x) for x in [1, 2, 3, 4, 5]]


@pytest.mark.timeout(60)
def test_os_fork_child_gets_its_own_attachment(make_queue: MakeQueue) -> None:
    q = make_queue()
    results = make_queue()
    assert q.stats().attached == 1
    pid = os.fork()
    if pid == 0:  # child: use the inherited objects directly, then leave without close()
        code = 1
        try:
            results.put(("child", q.stats().attached, q.get(timeout=20)))
            q.put("from child")
            code = 0
        finally:
            os._exit(code)
    try:
        q.put("to child")
        tag, attached_in_child, got = results.get(timeout=30)
        assert (tag, got) == ("child", "to child")
        assert attached_in_child == 2  # the child took a process slot of its own
        assert q.get(timeout=30) == "from child"
    finally:
        assert h.reap_forked(pid, 30) == 0
    # The child left without close(): its slot is reaped by the next attach or detach.
    extra = shmq.Queue(q.name, create=False)
    extra.put("still works")
    extra.close()
    assert q.get(timeout=5) == "still works"
    s = q.stats()
    assert s.attached == 1
    assert s.reaped >= 1


@pytest.mark.parametrize("ctx", [SPAWN, FORK], ids=["spawn", "fork"])
def test_process_pool_initializer_receives_the_queue(make_queue: MakeQueue, ctx: Any) -> None:
    q = make_queue()
    ex = ProcessPoolExecutor(max_workers=2, mp_context=ctx, initializer=h.pool_init, initargs=(q,))
    try:
        futures = [ex.submit(h.pool_task, i) for i in range(40)]
        worker_pids = {f.result(timeout=60) for f in futures}
        got = [q.get(timeout=30) for _ in range(40)]
        ex.shutdown(wait=True)
    finally:
        h.kill_pool(ex)
        ex.shutdown(wait=False, cancel_futures=True)
    assert sorted(x for _, x, _ in got) == list(range(40))
    assert all(y == 3 * x for _, x, y in got)
    assert {pid for pid, _, _ in got} == worker_pids
    assert os.getpid() not in worker_pids
    assert q.empty()
    # Whatever the workers did at exit (fork workers leave with os._exit, without detaching),
    # the queue is left with this process only once it reaped them.
    shmq.Queue(q.name, create=False).close()
    assert q.stats().attached == 1


# --------------------------------------------------------------------------------------
# Unrelated interpreters (subprocess), opening the queue by name
# --------------------------------------------------------------------------------------

PRODUCER = textwrap.dedent(
    """
    import sys, shmq
    q = shmq.Queue(sys.argv[1], create=False)
    q.put_many(range(500))
    for i in range(500, 1000):
        q.put(i)
    q.put({"done": True})
    q.close()
    """
)

CONSUMER = textwrap.dedent(
    """
    import sys, shmq
    with shmq.Queue(sys.argv[1], create=False) as q:
        items = []
        while (x := q.get(timeout=30)) is not None:
            items.append(x)
    print(len(items), sum(items), items == sorted(items))
    """
)

CREATOR = textwrap.dedent(
    """
    import sys, shmq
    q = shmq.Queue(sys.argv[1], create=True, capacity="64KiB", maxsize=10)
    q.put("made by the child")
    print("created", flush=True)
    sys.stdin.readline()
    assert q.get(timeout=10) == "reply from the parent"
    q.close()
    print("bye", flush=True)
    """
)


def test_unrelated_producer_interpreter(queue: shmq.Queue, qname: str) -> None:
    with h.children() as procs:
        p = h.python(PRODUCER, qname)
        procs.append(p)
        got = []
        while (x := queue.get(timeout=30)) != {"done": True}:
            got.append(x)
        _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err.decode()
    assert got == list(range(1000))


def test_unrelated_consumer_interpreter(queue: shmq.Queue, qname: str) -> None:
    with h.children() as procs:
        p = h.python(CONSUMER, qname)
        procs.append(p)
        queue.put_many(range(300))
        queue.put(None)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err.decode()
    assert out.decode().split() == ["300", str(sum(range(300))), "True"]


def test_queue_created_by_an_unrelated_interpreter(qname: str) -> None:
    with h.children() as procs:
        p = h.python(CREATOR, qname, stdin=True)
        procs.append(p)
        lines = h.LineReader(p)
        lines.expect("created")
        with shmq.Queue(qname, create=False) as q:
            assert (q.capacity, q.maxsize) == (65536, 10)
            assert q.get(timeout=10) == "made by the child"
            q.put("reply from the parent")
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
            lines.expect("bye")
            h.join_all(procs, 30)
            assert p.returncode == 0
            assert q.stats().attached == 1
    assert qname not in shmq.list_queues()  # the parent closed last: the segment is gone


# --------------------------------------------------------------------------------------
# Many producers x many consumers: every message exactly once, intact, FIFO per producer
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ctx, producers, consumers, count, capacity, maxsize",
    [
        (FORK, 3, 3, 20_000, "64KiB", 0),
        (FORK, 3, 3, 20_000, "4KiB", 0),
        (SPAWN, 3, 3, 10_000, "16KiB", 16),
    ],
    ids=["fork-3x3-20k-64KiB", "fork-3x3-20k-4KiB", "spawn-3x3-10k-maxsize16"],
)
def test_many_producers_many_consumers(
    make_queue: MakeQueue, tmp_path: Path, ctx: Any, producers: int, consumers: int, count: int,
    capacity: str, maxsize: int,
) -> None:
    q = make_queue(capacity=capacity, maxsize=maxsize)
    prod_batches = [1, 50, 7][:producers]  # put() one by one, put_many of 50, of 7
    cons_batches = [1, 100, 9][:consumers]  # get() one by one, get_many of 100, of 9
    outs = [tmp_path / f"consumer{i}.pickle" for i in range(consumers)]
    with h.children() as procs:
        cons = [ctx.Process(target=h.consumer, args=(q.name, i, cons_batches[i], str(outs[i])))
                for i in range(consumers)]
        prods = [ctx.Process(target=h.producer, args=(q.name, i, count, prod_batches[i]))
                 for i in range(producers)]
        for p in cons + prods:
            p.start()
            procs.append(p)
        h.join_all(prods, 90)
        assert [p.exitcode for p in prods] == [0] * producers
        for _ in range(consumers):
            q.put(None, timeout=30)  # after every message: one end marker per consumer
        h.join_all(cons, 30)
        assert [p.exitcode for p in cons] == [0] * consumers

    results = [pickle.loads(o.read_bytes()) for o in outs]
    assert [r["bad"] for r in results] == [[]] * consumers, "corrupted messages"
    for i, r in enumerate(results):
        for prod, seqs in r["seen"].items():
            assert seqs == sorted(seqs), f"consumer {i} saw producer {prod}'s messages out of order"
    for prod in range(producers):
        seen = sorted(s for r in results for s in r["seen"].get(prod, []))
        assert len(seen) == count, f"producer {prod}: {len(seen)} messages delivered, {count} sent"
        assert seen == list(range(count)), f"producer {prod}: messages lost or duplicated"
    s = q.stats()
    assert s.puts == s.gets  # every message put was taken
    assert s.puts >= producers * count + consumers  # (+ end markers handed back by a consumer)
    assert (s.depth, s.lost, s.abandoned) == (0, 0, 0)
    assert q.empty()


# --------------------------------------------------------------------------------------
# Waking, accounting, processes that leave without close()
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ctx", [SPAWN, FORK], ids=["spawn", "fork"])
def test_blocked_get_in_child_is_woken_by_put_from_parent(make_queue: MakeQueue, ctx: Any) -> None:
    inbox = make_queue()
    outbox = make_queue()
    waits = inbox.stats().waits
    with h.children() as procs:
        p = ctx.Process(target=h.child_echo, args=(inbox.name, outbox.name, 1))
        p.start()
        procs.append(p)
        h.wait_for_sleeper(inbox, waits, 30)  # the child is asleep in get()
        t0 = time.monotonic()
        inbox.put("wake up")
        assert outbox.get(timeout=30)[2] == "wake up"
        woken_after = time.monotonic() - t0
        h.join_all(procs, 30)
    assert p.exitcode == 0
    assert woken_after < 10


def test_stats_attached_counts_processes(make_queue: MakeQueue) -> None:
    q = make_queue()
    release = SPAWN.Event()
    readies = [SPAWN.Event() for _ in range(2)]
    with h.children() as procs:
        for ready in readies:
            p = SPAWN.Process(target=h.child_hold, args=(q.name, ready, release))
            p.start()
            procs.append(p)
        for ready in readies:
            assert ready.wait(30), "child did not attach"
        assert q.stats().attached == 3
        release.set()
        h.join_all(procs, 30)
        assert [p.exitcode for p in procs] == [0, 0]
    assert q.stats().attached == 1


@pytest.mark.parametrize("ctx", [SPAWN, FORK], ids=["spawn", "fork"])
def test_child_exiting_without_close_leaves_the_queue_to_the_others(make_queue: MakeQueue, ctx: Any) -> None:
    q = make_queue()
    with h.children() as procs:
        p = ctx.Process(target=h.child_put_and_exit_without_close, args=(q, "left without close"))
        p.start()
        procs.append(p)
        h.join_all(procs, 30)
    assert p.exitcode == 0
    assert q.name in shmq.list_queues()
    assert q.get(timeout=5) == "left without close"
    assert q.stats().attached in (1, 2)  # the dead child may not be reaped yet
    # Another attach/detach reaps it; the queue keeps working throughout.
    other = shmq.Queue(q.name, create=False)
    other.put("after")
    other.close()
    assert q.get(timeout=5) == "after"
    s = q.stats()
    assert s.attached == 1
    assert s.reaped >= 1


def test_processes_racing_to_create_the_same_name_share_one_queue(qname: str) -> None:
    n = 4
    barrier = FORK.Barrier(n + 1)
    with h.children() as procs:
        for _ in range(n):
            p = FORK.Process(target=h.child_open_race, args=(qname, barrier))
            p.start()
            procs.append(p)
        barrier.wait(30)  # go
        barrier.wait(30)  # every child has opened or created the queue
        with shmq.Queue(qname, create=False) as q:
            assert q.stats().attached == n + 1
            pids = sorted(q.get(timeout=30) for _ in range(n))
            barrier.wait(30)
            h.join_all(procs, 30)
        assert pids == sorted(p.pid for p in procs)
        assert [p.exitcode for p in procs] == [0] * n
    assert qname not in shmq.list_queues()


def test_concurrent_open_and_last_close_churn(qname: str) -> None:
    """The last close removes the segment while others open the name again: every open gets
    a working queue (the old one or a new one), never an error, and nothing is left over."""
    with h.children() as procs:
        for _ in range(3):
            p = FORK.Process(target=h.child_churn, args=(qname, 1500))
            p.start()
            procs.append(p)
        h.join_all(procs, 90)
        assert [p.exitcode for p in procs] == [0, 0, 0]
    assert qname not in shmq.list_queues()


HOLDER = textwrap.dedent(
    """
    import sys, shmq
    q = shmq.Queue(sys.argv[1], create=False)
    print("attached", flush=True)
    if sys.argv[2] == "get":
        q.get()
    else:
        sys.stdin.readline()
    """
)


@pytest.mark.parametrize("blocked_in", ["idle", "get"])
def test_killed_child_is_reaped_and_the_last_close_removes_the_queue(qname: str, blocked_in: str) -> None:
    q = shmq.Queue(qname, create=True)
    try:
        waits = q.stats().waits
        with h.children() as procs:
            p = h.python(HOLDER, qname, blocked_in, stdin=True)
            procs.append(p)
            h.LineReader(p).expect("attached")
            if blocked_in == "get":
                h.wait_for_sleeper(q, waits, 30)
            assert q.stats().attached == 2
            p.kill()
            p.wait(timeout=30)
        assert p.returncode == -signal.SIGKILL
        q.put("the queue survives")
        assert q.get(timeout=5) == "the queue survives"
    finally:
        q.close()
    # Our close reaped the dead child and was then the last one out.
    assert qname not in shmq.list_queues()


def test_fork_child_outliving_the_parents_close_does_not_leak_the_segment(qname: str) -> None:
    q = shmq.Queue(qname, create=True)
    started, release = FORK.Event(), FORK.Event()
    try:
        with h.children() as procs:
            p = FORK.Process(target=h.child_wait, args=(started, release))  # never touches the queue
            p.start()
            procs.append(p)
            assert started.wait(30)
            assert q.stats().attached == 1  # a fork child attaches on first use only
            q.close()  # the parent is done with the queue...
            release.set()  # ... and the child then exits (os._exit, as every fork child)
            h.join_all(procs, 30)
            assert p.exitcode == 0
        assert not h.segment_path(qname).exists(), "segment left in /dev/shm"
    finally:
        q.close()
        h.remove_segment(qname)


def test_fork_child_that_cannot_attach_gets_a_meaningful_error(make_queue: MakeQueue, qname: str) -> None:
    q = make_queue(max_processes=2)
    make_queue(qname, create=False)  # both slots are taken
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            q.put("from the child")
            os.write(w, b"no error")
        except BaseException as e:  # noqa: BLE001
            os.write(w, type(e).__name__.encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        outcome = h.read_all(r, 30).decode()
    finally:
        os.close(r)
        h.reap_forked(pid, 30)
    assert outcome == "TooManyProcessesError"


def test_gc_removes_a_queue_whose_processes_all_died(qname: str) -> None:
    """A last process killed while attached leaves its segment (nobody is left to notice);
    ``shmq.gc()`` removes it, and leaves it alone while a live process is attached."""
    q = shmq.Queue(qname, create=True)
    started, release = FORK.Event(), FORK.Event()
    try:
        with h.children() as procs:
            p = FORK.Process(target=h.child_put_and_wait, args=(q, started, release))
            p.start()
            procs.append(p)
            assert started.wait(30)
            q.close()
            assert qname in shmq.list_queues()  # the child still has it
            assert qname not in shmq.gc()  # a live process is attached: left alone
            p.kill()  # the last process dies attached
            h.join_all(procs, 30)
        assert qname in shmq.list_queues()
        # The dead child's message is still in it: gc keeps it for a reader...
        assert qname not in shmq.gc()
        assert shmq.inspect(qname)["stats"]["depth"] == 1 and shmq.inspect(qname)["live"] == 0
        # ...unless told to drop what was left.
        assert qname in shmq.gc(drop_kept_after=0)
        assert qname not in shmq.list_queues()
    finally:
        h.remove_segment(qname)


def test_gc_leaves_live_and_persistent_queues_alone(make_queue: MakeQueue, qname: str) -> None:
    live = make_queue()
    kept = shmq.Queue(f"{qname}-persistent", create=True, persistent=True)
    try:
        kept.put("kept")
        kept.close()
        removed = shmq.gc()
        assert live.name not in removed and kept.name not in removed
        assert {live.name, kept.name} <= set(shmq.list_queues())
        live.put("still works")
        assert live.get(timeout=5) == "still works"
        with pytest.raises(ValueError):
            shmq.gc(-1)
    finally:
        h.remove_segment(f"{qname}-persistent")


DAEMON_BLOCKED = textwrap.dedent(
    """
    import sys, threading, shmq
    q = shmq.Queue(sys.argv[1], create=True)
    threading.Thread(target=q.get, daemon=True).start()  # a consumer thread, blocked at exit
    print("started", flush=True)
    sys.stdin.readline()
    q.close()  # even an explicit close()
    print("closed", flush=True)
    """
)


def test_process_exiting_with_a_daemon_thread_blocked_in_get_does_not_leak(qname: str) -> None:
    try:
        with h.children() as procs:
            p = h.python(DAEMON_BLOCKED, qname, stdin=True)
            procs.append(p)
            out = h.LineReader(p)
            out.expect("started")
            with shmq.Queue(qname, create=False) as q:
                h.wait_for_sleeper(q, 0, 20)
            assert p.stdin is not None
            p.stdin.write(b"\n")
            p.stdin.flush()
            out.expect("closed")
            p.wait(timeout=30)
            assert p.returncode == 0
        assert not h.segment_path(qname).exists(), "segment left in /dev/shm"
    finally:
        h.remove_segment(qname)
