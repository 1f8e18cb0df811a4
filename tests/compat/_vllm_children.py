"""What the shmq.compat.vllm tests run in child processes (importable by spawn children), and
the deterministic message plan the writer sends and the readers check."""

from __future__ import annotations

import random
import time
import traceback
import zlib
from collections.abc import Callable
from pickle import PickleBuffer
from typing import Any

from shmq.compat.vllm import Handle, MessageQueue

MiB = 1024 * 1024


def pattern(seed: int, n: int) -> bytes:
    """``n`` pseudo-random bytes (position-dependent, so misplaced fragments show)."""
    return random.Random(seed).randbytes(n)


def message(i: int, oversized: bool = False) -> Any:
    """Message ``i`` of the plan: small dicts, out-of-band buffers (a ``PickleBuffer`` and a
    ``bytearray`` of 1 MiB or more), and (``oversized``) 16 MiB with a 3 MiB buffer."""
    if oversized:
        return {"seq": i, "huge": pattern(i, 13 * MiB), "oob": PickleBuffer(bytearray(pattern(-i, 3 * MiB)))}
    if i % 10 == 3:
        return {"seq": i, "oob": PickleBuffer(bytearray(pattern(i, 3 * MiB // 2)))}
    if i % 10 == 7:
        return ("bytearray", i, bytearray(pattern(i, 5 * MiB // 4)), "small")
    return {"seq": i, "payload": pattern(i, i % 97), "nested": [i, str(i), {"x": i * 0.5}]}


def describe(obj: Any) -> Any:
    """A comparable summary of an object as a reader receives it: types, lengths and CRCs.
    A ``PickleBuffer`` is described as the ``bytearray`` every reader gets (a copy out of
    the ring, the ZeroMQ frame or the reassembled record)."""
    if isinstance(obj, dict):
        return ("dict", tuple((k, describe(v)) for k, v in sorted(obj.items())))
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__, tuple(describe(v) for v in obj))
    if isinstance(obj, PickleBuffer):
        obj = bytearray(obj.raw())
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return (type(obj).__name__, len(obj), zlib.crc32(obj))
    return ("value", repr(obj))


def expected(n: int, oversized: bool) -> list[Any]:
    """What a reader of the whole plan (``run_plan``) sees."""
    out = [describe(message(i)) for i in range(n)]
    out.append(describe(("broadcast", n)))
    if oversized:
        out.append(describe(message(n, oversized=True)))
    return out


def run_plan(mq: MessageQueue, n: int, oversized: bool) -> list[Any]:
    """The writer sends the plan; a reader receives it. Returns what was seen/sent."""
    seen = []
    for i in range(n):
        if mq._is_writer:
            mq.enqueue(message(i), timeout=60)
            seen.append(describe(message(i)))
        else:
            seen.append(describe(mq.dequeue(timeout=60)))
    seen.append(describe(mq.broadcast_object(("broadcast", n) if mq._is_writer else None)))
    if oversized:
        if mq._is_writer:
            mq.enqueue(message(n, oversized=True), timeout=60)
            seen.append(describe(message(n, oversized=True)))
        else:
            seen.append(describe(mq.dequeue(timeout=60)))
    return seen


def _reporting(conn: Any, body: Callable[[], Any]) -> None:
    try:
        conn.send(("ok", body()))
    except BaseException:  # noqa: BLE001 - the parent shows it
        conn.send(("error", traceback.format_exc()))
        raise


def writer(conn: Any, kwargs: dict[str, Any], n: int, oversized: bool) -> None:
    """Creates the writer, sends its handle, runs the plan, reports, and shuts down once
    the parent says the readers are done."""
    mq = MessageQueue(**kwargs)
    conn.send(mq.export_handle())

    def body() -> list[Any]:
        mq.wait_until_ready(timeout=60)
        return run_plan(mq, n, oversized)

    _reporting(conn, body)
    if not conn.poll(120):
        raise SystemExit("the parent never released the writer")
    conn.recv()
    mq.shutdown()


def reader(conn: Any, handle: Handle, rank: int, n: int, oversized: bool) -> None:
    """Reader ``rank``: handshake, then the plan; reports what it received."""
    mq = MessageQueue.create_from_handle(handle, rank)

    def body() -> tuple[bool, bool, list[Any]]:
        mq.wait_until_ready(timeout=60)
        return mq._is_local_reader, mq._is_remote_reader, run_plan(mq, n, oversized)

    try:
        _reporting(conn, body)
    finally:
        mq.shutdown()


def stuck_reader(conn: Any, handle: Handle, rank: int) -> None:
    """A local reader that completes the handshake, then never reads (until it is killed)."""
    mq = MessageQueue.create_from_handle(handle, rank)
    mq.wait_until_ready(timeout=60)
    conn.send("ready")
    conn.poll(120)
    mq.shutdown()


def reader_until_none(conn: Any, handle: Handle, rank: int) -> None:
    """Reads until ``None``; reports everything read before it."""
    mq = MessageQueue.create_from_handle(handle, rank)

    def body() -> list[Any]:
        mq.wait_until_ready(timeout=60)
        return list(iter(lambda: mq.dequeue(timeout=60), None))

    try:
        _reporting(conn, body)
    finally:
        mq.shutdown()


# -- create_from_process_group over a duck-typed group ------------------------------------------


class PipeGroup:
    """A process group with vLLM's ``StatelessProcessGroup`` surface (``rank``,
    ``world_size``, ``broadcast_obj``), over one ``multiprocessing`` queue per rank.
    Collectives are numbered: every rank calls them in the same order, and a message that
    arrives ahead of its turn (another source was quicker) waits in ``early``. With
    ``remote`` (ranks the writer's node does not have), it also has the same-node check."""

    def __init__(self, rank: int, inboxes: list[Any], remote: frozenset[int] | None = None) -> None:
        self.rank = rank
        self.world_size = len(inboxes)
        self.inboxes = inboxes
        self.seq = 0
        self.early: dict[int, Any] = {}
        if remote is not None:
            self.remote = remote
            self.in_the_same_node_as = self._same_node

    def broadcast_obj(self, obj: Any, src: int) -> Any:
        self.seq += 1
        if self.rank == src:
            for r, box in enumerate(self.inboxes):
                if r != src:
                    box.put((self.seq, obj))
            return obj
        while self.seq not in self.early:
            seq, value = self.inboxes[self.rank].get(timeout=60)
            self.early[seq] = value
        return self.early.pop(self.seq)

    def _same_node(self, source_rank: int) -> list[bool]:
        return [r not in self.remote for r in range(self.world_size)]


def array_plan(i: int, seed: int) -> Any:
    """Array ``i`` of the plan: random dtype and size (0 to 2,000 elements), now and then 2 MiB
    (out of band) or 6 MiB (larger than the test's ring: in fragments)."""
    import numpy as np

    rng = np.random.default_rng([seed, i])
    if i % 250 == 249:
        return rng.integers(0, 255, size=(6 if i % 500 == 499 else 2) * MiB, dtype=np.uint8)
    dtype = (np.int64, np.float32, np.uint8, np.int16)[int(rng.integers(4))]
    size = int(rng.integers(0, 2000))
    return (rng.random(size) * 1000).astype(dtype)


def group_rank(
    conn: Any, inboxes: list[Any], rank: int, n: int, seed: int, remote: frozenset[int] | None, writer_rank: int
) -> None:
    """One rank: ``create_from_process_group`` over a ``PipeGroup``, then ``n`` arrays through
    ``broadcast_object`` with random sleeps; readers compare each with the plan."""
    import numpy as np

    sleeps = random.Random(seed * 100 + rank)

    def body() -> tuple[bool, bool, int, int]:
        group = PipeGroup(rank, inboxes, remote)
        mq = MessageQueue.create_from_process_group(group, 1 * MiB, 4, writer_rank=writer_rank)
        try:
            checked = 0
            for i in range(n):
                if sleeps.random() < 0.01:
                    time.sleep(sleeps.random() * 0.005)
                want = array_plan(i, seed)
                got = mq.broadcast_object(want if mq._is_writer else None)
                if not (got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)):
                    raise AssertionError(
                        f"rank {rank}: array {i} differs ({got.dtype}{got.shape} != {want.dtype}{want.shape})"
                    )
                checked += 1
            last = mq.broadcast_object("done" if mq._is_writer else None)
            if last != "done":
                raise AssertionError(f"rank {rank}: got {last!r} after the arrays")
            # A barrier: the writer's socket must outlive the remote readers' last message.
            for r in range(group.world_size):
                group.broadcast_obj(rank, r)
            return mq._is_local_reader, mq._is_remote_reader, checked, len(group.early)
        finally:
            mq.shutdown()

    _reporting(conn, body)
