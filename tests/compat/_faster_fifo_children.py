"""What the faster-fifo compat tests run in child processes (spawn children import it: pytest
puts ``tests/compat`` on ``sys.path`` and they inherit it)."""

from __future__ import annotations

import os
import queue
from typing import Any

import shmq


def ff_consume_until_closed(q: Any, results: Any) -> None:
    """The original's consumer loop (get_many until Empty while the queue is closed); sends
    back what it received."""
    got: list[Any] = []
    while True:
        try:
            got.extend(q.get_many(timeout=30, max_messages_to_get=7))
        except queue.Empty:
            if q.is_closed():
                break
    results.put(got)


def ff_blocked_get(q: Any, results: Any) -> None:
    """Blocks in ``get()`` (no timeout) and reports how it ended."""
    results.put("waiting")
    try:
        q.get()
    except Exception as e:  # noqa: BLE001 - the type is the result
        results.put([type(e).__name__, isinstance(e, queue.Empty), isinstance(e, shmq.ShutDown)])
    else:
        results.put("got a message")


def ff_put_forever(q: Any, results: Any) -> None:
    """Puts large messages until killed (so that it is often inside a put)."""
    results.put(os.getpid())
    payload = b"p" * 50_000
    while True:
        try:
            q.put(payload, timeout=0.01)
        except queue.Full:
            pass


def ff_put_from_child(q: Any, values: list[Any]) -> int:
    """A pool task: puts ``values`` on the queue it was given as an argument."""
    q.put_many(values)
    return os.getpid()


def ff_produce(q: Any, producer: int, n: int) -> None:
    """The original's producer loop (put with a short timeout, again on Full)."""
    i = 0
    while i < n:
        try:
            q.put((producer, i), timeout=0.01)
            i += 1
        except queue.Full:
            pass
