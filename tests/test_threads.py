"""Threads sharing one handle: many threads on one ``Queue`` and on one ``Subscriber``, with
payloads whose unpickling runs Python code (so the GIL changes hands in the middle of a
``get``), large enough (>= 16 KiB) to be decoded in place from shared memory, and small;
processes x threads on one queue; a scribbled lane table.

What is checked: every message is received exactly once (by a queue's consumers; by each
subscriber), intact, in order per producer thread as seen by each consumer thread; nothing
hangs. Every workload that could hang runs in other processes under a watchdog
(``_helpers.watchdog``): a hang fails the test within ``STALL`` seconds of the last progress
seen in the queue's shared counters, with the stacks of the hung child's threads, instead
of hanging the suite.
"""

from __future__ import annotations

import json
import mmap
import multiprocessing
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import _helpers as h
import shmq

MakeQueue = Callable[..., shmq.Queue]

pytestmark = pytest.mark.timeout(240)  # backstop only: every workload has its own watchdog

#: A hang is declared when the queue's counters did not move for this long...
STALL = 20.0
#: ... or when a workload (normally 1-5 s on a loaded 2-core machine) is still running.
TOTAL = 60.0
#: Iterations of Python code run by the unpickling of each message (1-2 ms; with the GIL
#: switch interval the children set, 0.5 ms, a decode is interrupted a few times).
WORK = 30_000


def _check_exactly_once(
    per_thread: list[list[list[Any]]], expected: set[tuple[int, int, int]], who: str
) -> None:
    """``per_thread[i]``: the ``(producer, thread, seq, intact)`` messages consumer thread
    ``i`` received, in order. Every expected message exactly once, intact, and in order per
    producer thread within each consumer thread."""
    seen = Counter(tuple(m[:3]) for msgs in per_thread for m in msgs)
    corrupt = [m for msgs in per_thread for m in msgs if not m[3]]
    dups = {k: n for k, n in seen.items() if n > 1}
    missing = expected - set(seen)
    unexpected = set(seen) - expected
    assert not corrupt, f"{who}: {len(corrupt)} corrupted message(s), e.g. {corrupt[:3]}"
    assert not dups, (
        f"{who}: {sum(seen.values())} received for {len(expected)} sent: "
        f"{len(dups)} duplicated, e.g. {sorted(dups.items())[:5]}"
    )
    assert not missing, f"{who}: {len(missing)} of {len(expected)} lost, e.g. {sorted(missing)[:5]}"
    assert not unexpected, f"{who}: unexpected messages {sorted(unexpected)[:5]}"
    for i, msgs in enumerate(per_thread):
        last: dict[tuple[int, int], int] = {}
        for p, t, seq, _ in msgs:
            assert last.get((p, t), -1) < seq, (
                f"{who}: consumer thread {i} got producer {p} thread {t}'s message {seq} "
                f"after its message {last[(p, t)]} (FIFO per producer thread)"
            )
            last[(p, t)] = seq


def _run_watched(
    tmp_path: Path, func: str, name: str, spec: dict[str, Any], progress: Callable[[], Any], what: str
) -> tuple[dict[str, Any], float]:
    out, log = tmp_path / "result.json", tmp_path / "child.log"
    with h.children() as procs:
        p = h.python_call(func, name, str(out), json.dumps(spec), log=log)
        procs.append(p)
        elapsed = h.watchdog(procs, progress, what, total=TOTAL, stall=STALL, logs=(log,))
    assert p.returncode == 0, f"{what}: child exited with {p.returncode}:\n{h._log_tail(log)}"
    result = json.loads(out.read_text())
    assert result["errors"] == [], f"{what}: {result['errors'][:5]}"
    return result, elapsed


def _queue_progress(q: shmq.Queue) -> Callable[[], Any]:
    def progress() -> Any:
        s = q.stats()
        return {"puts": s.puts, "gets": s.gets, "attached": s.attached}

    return progress


def _check_queue_drained(q: shmq.Queue) -> None:
    s = q.stats()
    assert (s.depth, s.lost, s.abandoned) == (0, 0, 0), s
    assert s.puts == s.gets, s
    assert q.empty()


# --------------------------------------------------------------------------------------
# Queue: N threads on one handle
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", ["large", "small"])
@pytest.mark.parametrize("threads", [1, 8, 64])
def test_threads_on_one_queue_handle_consume(
    make_queue: MakeQueue, tmp_path: Path, threads: int, payload: str
) -> None:
    """The queue is filled first (``put``/``put_many``/``put_nowait`` from one thread),
    then ``threads`` threads of one process, on one handle, take everything with
    ``get(timeout=...)``, ``get_nowait`` and ``get_many``."""
    count = 400
    q = make_queue(capacity="16MiB")
    what = f"{threads} thread(s) on one Queue handle getting {count} {payload} pickles that run Python while decoded"
    spec = {
        "consumers": threads,
        "producers": 0,
        "count": 0,
        "payload": payload,
        "backlog": count,
        "backlog_payload": payload,
        "work": WORK,
    }
    result, elapsed = _run_watched(tmp_path, "threads_queue_child", q.name, spec, _queue_progress(q), what)
    expected = {(0, 0, s) for s in range(count)}
    _check_exactly_once(result["got"], expected, what)
    if threads == 1:
        assert [m[2] for m in result["got"][0]] == list(range(count)), "one consumer: FIFO"
    _check_queue_drained(q)
    print(f"{what}: {elapsed:.2f} s")


@pytest.mark.parametrize("producers, consumers", [(1, 1), (2, 8), (16, 48)], ids=["1+1", "2+8", "16+48"])
def test_threads_on_one_queue_handle_put_while_others_get(
    make_queue: MakeQueue, tmp_path: Path, producers: int, consumers: int
) -> None:
    """Threads of one handle put (``put(timeout=...)``, ``put_many``, ``put_nowait``) while
    others get (``get(timeout=...)``, ``get_nowait``, ``get_many``) from a queue that starts
    with a backlog (150 large messages, put by the main thread: the ring is nearly full, so
    puts wait for space too). Decoding is the slow side, so there are more consumers."""
    backlog, per_producer = 150, max(300 // producers, 12)
    q = make_queue(capacity="4MiB")
    what = (
        f"{producers + consumers} threads on one Queue handle ({producers} putting, {consumers} "
        f"getting pickles that run Python while decoded)"
    )
    spec = {
        "consumers": consumers,
        "producers": producers,
        "count": per_producer,
        "payload": "mixed",
        "backlog": backlog,
        "backlog_payload": "large",
        "work": WORK,
    }
    result, elapsed = _run_watched(tmp_path, "threads_queue_child", q.name, spec, _queue_progress(q), what)
    expected = {(0, t, s) for t in range(producers) for s in range(per_producer)}
    expected |= {(0, producers, s) for s in range(backlog)}  # the main thread's
    _check_exactly_once(result["got"], expected, what)
    _check_queue_drained(q)
    print(f"{what}: {elapsed:.2f} s")


# --------------------------------------------------------------------------------------
# Broadcast: N threads on one Subscriber, several Subscribers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subscribers, threads",
    [(1, 2), (1, 8), (1, 64), (3, 4)],
    ids=["1sub-2threads", "1sub-8threads", "1sub-64threads", "3subs-4threads"],
)
def test_threads_on_one_subscriber(qname: str, tmp_path: Path, subscribers: int, threads: int) -> None:
    """``threads`` threads read one Subscriber (block policy) with ``get(timeout=...)``,
    ``get_nowait`` and ``get_many`` while the messages (mixed sizes, decoding runs Python
    code) are published: each subscriber receives every message exactly once (over all its
    threads), each thread in publication order."""
    count = 300 if subscribers == 1 else 200
    b = shmq.Broadcast(qname, capacity="4MiB", create=True)
    try:
        what = (
            f"{threads} threads on each of {subscribers} Subscriber(s) reading {count} mixed "
            f"pickles that run Python while decoded"
        )

        def progress() -> Any:
            s = b.stats()
            return {"published": s.published, "delivered": s.delivered, "attached": s.attached}

        spec = {"subscribers": subscribers, "threads": threads, "count": count, "payload": "mixed", "work": WORK}
        result, elapsed = _run_watched(tmp_path, "threads_subscribers_child", qname, spec, progress, what)
        expected = {(0, 0, s) for s in range(count)}
        for i, per_thread in enumerate(result["got"]):
            _check_exactly_once(per_thread, expected, f"{what}: subscriber {i}")
        s = b.stats()
        assert s.published == count
        assert s.subscribers == []  # the child's subscriptions are gone
        print(f"{what}: {elapsed:.2f} s")
    finally:
        b.close()


# --------------------------------------------------------------------------------------
# Processes x threads on one queue
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["spawn", "fork", "forkserver"])
def test_processes_times_threads_on_one_queue(make_queue: MakeQueue, tmp_path: Path, method: str) -> None:
    """3 producer processes x 4 threads and 3 consumer processes x 4 threads on one queue
    (256 KiB: producers often wait for space); each message carries (producer, thread,
    seq) and a CRC of its padding; mixed sizes, decoding runs Python code. Every message is
    taken exactly once, intact, and in order per producer thread within each consumer
    thread."""
    ctx: Any = multiprocessing.get_context(method)
    producers, consumers, threads, count = 3, 3, 4, 250
    q = make_queue(capacity="256KiB")
    done = ctx.Event()
    outs = [tmp_path / f"consumer{i}.json" for i in range(consumers)]
    what = f"{producers}x{threads} producer and {consumers}x{threads} consumer threads ({method}) on one queue"
    with h.children() as procs:
        cons = [ctx.Process(target=h.stress_consumer, args=(q.name, i, threads, done, str(outs[i])))
                for i in range(consumers)]
        prods = [ctx.Process(target=h.stress_producer, args=(q.name, i, threads, count, WORK // 5))
                 for i in range(producers)]
        for p in cons + prods:
            p.start()
            procs.append(p)
        progress = _queue_progress(q)
        elapsed = h.watchdog(prods, progress, what + " (producing)", total=TOTAL, stall=STALL)
        assert [p.exitcode for p in prods] == [0] * producers
        done.set()
        elapsed += h.watchdog(cons, progress, what + " (draining)", total=TOTAL, stall=STALL)
        assert [p.exitcode for p in cons] == [0] * consumers
    results = [json.loads(o.read_text()) for o in outs]
    assert [r["errors"] for r in results] == [[]] * consumers
    per_thread = [msgs for r in results for msgs in r["got"]]
    expected = {(p, t, s) for p in range(producers) for t in range(threads) for s in range(count)}
    _check_exactly_once(per_thread, expected, what)
    assert all(r["got"] for r in results)  # sanity: work was spread, nothing was skipped
    _check_queue_drained(q)
    print(f"{what}: {elapsed:.2f} s")


# --------------------------------------------------------------------------------------
# A scribbled lane table must not hang
# --------------------------------------------------------------------------------------

# Offsets from crates/shmq-core/src/layout/mod.rs (all little-endian, #[repr(C)]). The header
# (`Identity`, at offset 0) says where the slot table is and how many slots and lanes it has;
# what the Python API does not expose is the size of a `Slot` and where its lanes are.
MAGIC = b"SHMQRNG1"
LAYOUT_VERSION = 5
ID_VERSION, ID_SLOTS_OFFSET, ID_DATA_OFFSET, ID_CAPACITY = 8, 24, 32, 40
ID_MAX_SLOTS, ID_LANES = 64, 76
SLOT_SIZE = 384  # size_of::<Slot>(): 112 bytes of fields, then 4 lanes of 64 from offset 128
SLOT_STATE, SLOT_PID, SLOT_PUTS = 0, 8, 16  # state: generation << 8 | SLOT_*; counters.puts
SLOT_LANES, LANE_SIZE = 128, 64  # Slot::lanes; Lane::busy is its first word
SLOT_ATTACHED = 1


def _slot_of(seg: mmap.mmap, q: shmq.Queue, pid: int) -> tuple[int, int]:
    """``(offset of pid's slot, lanes per slot)``, with the layout cross-checked against what
    the queue reports (a layout change fails here, not by scribbling elsewhere)."""
    layout_changed = "the segment layout changed: update the offsets in tests/test_threads.py from layout/mod.rs"
    assert seg[:8] == MAGIC, layout_changed
    version, = struct.unpack_from("<I", seg, ID_VERSION)
    assert version == LAYOUT_VERSION, f"{layout_changed} (layout version {version})"
    slots_offset, data_offset, capacity = struct.unpack_from("<QQQ", seg, ID_SLOTS_OFFSET)
    max_slots, = struct.unpack_from("<I", seg, ID_MAX_SLOTS)
    lanes, = struct.unpack_from("<I", seg, ID_LANES)
    assert capacity == q.capacity and data_offset == len(seg) - q.capacity, layout_changed
    assert slots_offset + max_slots * SLOT_SIZE <= data_offset, layout_changed
    assert SLOT_LANES + lanes * LANE_SIZE <= SLOT_SIZE, layout_changed
    found = []
    for i in range(max_slots):
        off = slots_offset + i * SLOT_SIZE
        state, = struct.unpack_from("<Q", seg, off + SLOT_STATE)
        slot_pid, = struct.unpack_from("<I", seg, off + SLOT_PID)
        if state & 0xFF == SLOT_ATTACHED and slot_pid == pid:
            found.append(off)
    assert len(found) == 1, f"{layout_changed} (slots of pid {pid}: {found})"
    return found[0], lanes


SCRIBBLED = """
import sys, shmq
q = shmq.Queue(sys.argv[1], create=False)
q.put_many(["a", "b", "c"])  # attached (and the gets below have something to take)
print("attached", flush=True)
sys.stdin.readline()
op = sys.argv[2]
print("calling", op, flush=True)
try:
    if op == "put":
        q.put("x")
    elif op == "put_many":
        q.put_many(["x", "y"])
    elif op == "get":
        q.get()
    elif op == "get_timeout":
        q.get(timeout=5)
    elif op == "get_nowait":
        q.get_nowait()
    elif op == "get_many":
        q.get_many(2)
    print("ok", flush=True)
except shmq.CorruptedQueueError as e:
    print("CorruptedQueueError", flush=True)
except BaseException as e:
    print("unexpected", type(e).__name__, e, flush=True)
"""

SCRIBBLED_OPS = ["put", "put_many", "get", "get_timeout", "get_nowait", "get_many"]


def test_scribbled_lane_table_does_not_hang(make_queue: MakeQueue) -> None:
    """Another process (here the test, through the segment file) sets every lane's ``busy``
    word of a process's slot: that process's next put/get (one child per operation) must
    work or raise ``CorruptedQueueError``, never hang (the watchdog gives it 30 s)."""
    q = make_queue(capacity="64KiB", max_processes=len(SCRIBBLED_OPS) + 1)
    path = h.segment_path(q.name)
    outcomes: dict[str, str] = {}
    with h.children() as procs, open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as seg:
        children = []
        for op in SCRIBBLED_OPS:
            p = h.python(SCRIBBLED, q.name, op, stdin=True)
            procs.append(p)
            children.append((op, p, h.LineReader(p)))
        for op, p, r in children:
            r.expect("attached", timeout=30)
        for op, p, r in children:
            slot, lanes = _slot_of(seg, q, p.pid)
            puts, = struct.unpack_from("<Q", seg, slot + SLOT_PUTS)
            assert puts == 3, f"the slot found for pid {p.pid} did not count its 3 puts ({puts}): layout changed?"
            for k, word in zip(range(lanes), [1, 0xFFFFFFFF, 0xDEADBEEF, 1] * lanes):
                busy = slot + SLOT_LANES + k * LANE_SIZE
                assert struct.unpack_from("<I", seg, busy) == (0,), "an idle process has a busy lane"
                struct.pack_into("<I", seg, busy, word)
        assert q.get(timeout=5) in ("a", "b", "c")  # our own slot is intact
        for op, p, r in children:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        deadline = time.monotonic() + 30
        for op, p, r in children:
            r.expect(f"calling {op}", timeout=30)
            try:
                outcomes[op] = r.readline(timeout=max(0.1, deadline - time.monotonic()))
            except AssertionError:
                outcomes[op] = "HUNG (no answer within 30 s: killed)"
        h.join_all([p for op, p, _ in children if not outcomes[op].startswith("HUNG")], 30)
    print(outcomes)
    hung = [op for op, o in outcomes.items() if o.startswith("HUNG")]
    assert not hung, f"hung: {', '.join(hung)} with every lane of the process's slot scribbled busy: {outcomes}"
    bad = {op: o for op, o in outcomes.items() if o not in ("ok", "CorruptedQueueError")}
    assert not bad, f"with a scribbled lane table, expected success or CorruptedQueueError: {bad}"
    q.put("the queue still works for the others")
    left = q.get_many(100, timeout=5)
    assert "the queue still works for the others" in left


@pytest.mark.parametrize("threads", [8, 64])
def test_close_while_threads_are_in_calls_detaches_once_they_are_out(qname: str, threads: int) -> None:
    """``close()`` from one thread while the others put, take and wait on the same handle:
    every other thread's next call (or its wait) ends with ``QueueClosedError``, nothing
    else goes wrong, and the last call out of the handle detaches it, so the only handle's
    close removes the segment (calls borrow the attachment without a lock; the last one to
    leave after ``close()`` must drop it)."""
    for round_ in range(3):
        # keep_messages=False: messages left in it must not keep the segment.
        q = shmq.Queue(qname, capacity="64KiB", codec="raw", create=True, keep_messages=False)
        errors: list[BaseException] = []
        busy = threading.Barrier(threads + 1)

        def worker(k: int) -> None:
            try:
                busy.wait(30)
                while True:
                    if k % 2:
                        q.get(timeout=10)  # mostly waits: the even threads take most messages
                    else:
                        q.put(b"x" * 64)
                        q.qsize()
                        try:
                            q.get_nowait()
                        except shmq.Empty:
                            pass
            except shmq.QueueClosedError:
                pass
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        busy.wait(30)
        time.sleep(0.05)  # let them be in calls: what is measured does not depend on when
        q.close()
        for t in ts:
            t.join(30)
        assert not [t for t in ts if t.is_alive()], f"round {round_}: threads still in calls after close()"
        assert not errors, f"round {round_}: {errors[:3]}"
        assert not h.segment_path(qname).exists(), f"round {round_}: the segment outlived every handle"
