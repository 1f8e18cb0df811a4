"""Functions the compat tests run in child processes (importable by spawn children: pytest
puts ``tests/compat`` on ``sys.path`` and spawn children inherit it)."""

from __future__ import annotations

import os
import struct
from typing import Any

import shmq.compat.shmqueue as shmqueue
from shmq.compat.smq import SharedMemoryQueue

# Custom ids are registered process-wide (shmq.register_codec): use one no other test uses
# (the README's FIRST_PUBLIC_NUMBER + 1 = 1002 is taken by tests/test_codecs.py).
CUSTOM = shmqueue.SerializationMethods.FIRST_PUBLIC_NUMBER + 7000


def _pack(method: int, data: Any) -> bytes:
    return struct.pack("I", data)


def _unpack(method: int, chunks: list[bytes]) -> int:
    return int(struct.unpack("I", b"".join(chunks))[0])


# -- shmqueue ------------------------------------------------------------------------------


def sq_echo(name: str, n: int) -> None:
    """Attaches to ``name``, gets ``n`` items and puts each back as ``("echo", item)``."""
    q = shmqueue.ShmQueue(name)
    q.custom_deserialize(_unpack)
    items = [q.get(timeout=30) for _ in range(n)]
    for item in items:
        q.put(["echo", item], timeout=30)
    q.shutdown()


def sq_custom_producer(name: str, values: list[int]) -> None:
    q = shmqueue.ShmQueue(name)
    q.custom_serialize(_pack)
    for v in values:
        q.put(v, serialization_method=CUSTOM, timeout=30)
    q.shutdown()


def sq_put_and_exit(name: str, item: Any) -> None:
    """Attaches, puts, and leaves without ``shutdown()``."""
    q = shmqueue.ShmQueue(name)
    q.put(item)
    os._exit(0)


def sq_put_forever(name: str, ready: Any) -> None:
    """Puts until killed (the queue is small, so it is often blocked)."""
    q = shmqueue.ShmQueue(name)
    ready.set()
    i = 0
    while True:
        q.put(i)
        i += 1


def sq_get_with_handle(q: shmqueue.ShmQueue, n: int, out_name: str) -> None:
    """Uses a pickled handle."""
    got = [q.get(timeout=30) for _ in range(n)]
    out = shmqueue.ShmQueue(out_name)
    out.put(got, timeout=30)
    out.shutdown()
    q.shutdown()


# -- smq -----------------------------------------------------------------------------------


def smq_consumer(name: str, run_id: str, out_name: str) -> None:
    """Takes items until ``None`` and puts the list of them on ``out_name``."""
    q = SharedMemoryQueue(name, create=False, run_id=run_id)
    got = []
    while True:
        item = q.get(timeout=30)
        if item is None:
            break
        got.append(item)
    out = SharedMemoryQueue(out_name, create=False, run_id=run_id)
    out.put(got, timeout=30)
    out.close()
    q.close()


def smq_producer(name: str, run_id: str, n: int) -> None:
    q = SharedMemoryQueue(name, create=False, run_id=run_id)
    for i in range(n):
        q.put({"i": i, "pid": os.getpid()}, timeout=30)
    q.close()


def smq_with_handle(q: SharedMemoryQueue, out: SharedMemoryQueue) -> None:
    """Uses pickled handles: reports what it sees of ``q`` and echoes one item."""
    out.put((q.capacity, q.item_size, q.get(timeout=30)), timeout=30)


def smq_put_and_exit(name: str, run_id: str, item: Any) -> None:
    q = SharedMemoryQueue(name, create=False, run_id=run_id)
    q.put(item)
    os._exit(0)


def smq_exit_normally(name: str, run_id: str, item: Any) -> None:
    """Opens by name, puts, returns without ``close()`` (a normal exit)."""
    q = SharedMemoryQueue(name, create=False, run_id=run_id)
    q.put(item)


def smq_put_forever(name: str, run_id: str, ready: Any) -> None:
    q = SharedMemoryQueue(name, create=False, run_id=run_id)
    ready.set()
    i = 0
    while True:
        q.put(i)
        i += 1


def smq_get_forever(name: str, run_id: str, ready: Any) -> None:
    q = SharedMemoryQueue(name, create=False, run_id=run_id)
    ready.set()
    while True:
        q.get()
