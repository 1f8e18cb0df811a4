"""What the shmq.compat.vllm tests run in child processes (importable by spawn children), and
the deterministic message plan the writer sends and the readers check."""

from __future__ import annotations

import random
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
    A ``PickleBuffer`` is described as the ``memoryview`` a reader gets when the buffer
    travelled out of band (in band, it would arrive as ``bytes``/``bytearray``)."""
    if isinstance(obj, dict):
        return ("dict", tuple((k, describe(v)) for k, v in sorted(obj.items())))
    if isinstance(obj, (tuple, list)):
        return (type(obj).__name__, tuple(describe(v) for v in obj))
    if isinstance(obj, PickleBuffer):
        obj = obj.raw()
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
