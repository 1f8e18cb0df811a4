"""One script, run against faster-fifo and against shmq.compat.faster_fifo
(``python _faster_fifo_script.py MODULE``): every documented behaviour the two share,
printed as JSON for the test to compare. Written from faster-fifo's README and docstrings."""

from __future__ import annotations

import importlib
import json
import multiprocessing as mp
import queue
import sys
import threading
from typing import Any

faster_fifo: Any = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else "faster_fifo")
Queue = faster_fifo.Queue
seen: dict[str, Any] = {}


def outcome(call: Any) -> Any:
    try:
        return ["ok", call()]
    except queue.Full:
        return ["Full"]
    except queue.Empty:
        return ["Empty"]


def child_put(q: Any, base: int) -> None:
    q.put_many([base + i for i in range(5)], timeout=10)


class Reversing(Queue):  # type: ignore[misc, valid-type]
    """Class-level serializers, as the original allows."""

    def dumps(self, obj: Any) -> bytes:
        return str(obj).encode()[::-1]

    def loads(self, msg_bytes: Any) -> Any:
        return int(bytes(msg_bytes)[::-1])


def main() -> None:
    # The README's usage example: one object, then 100 puts and gets of batches.
    q = Queue(1000 * 1000)
    obj = dict(a=42, b=33, c=(1, 2, 3), d=[1, 2, 3], e="123", f=b"kkk")
    q.put(obj)
    seen["qsize_after_put"] = q.qsize()
    seen["roundtrip"] = q.get() == obj
    seen["empty_after_get"] = q.empty()
    fulls = 0
    for _ in range(100):
        try:
            q.put(obj, timeout=0.1)
        except queue.Full:
            fulls += 1
    seen["fulls"] = fulls
    received = 0
    while received < 100:
        received += len(q.get_many(max_messages_to_get=100))
    seen["received"] = received
    seen["get_when_empty"] = outcome(lambda: q.get(timeout=0.1))

    # Batches, order, the nowait forms, sizes.
    q.put_many([1, 2, 3])
    q.put_many_nowait((4, 5))
    q.put_nowait(6)
    seen["qsize"] = q.qsize()
    seen["data_size"] = q.data_size()
    seen["get_many_2"] = q.get_many(max_messages_to_get=2)
    seen["get_nowait"] = q.get_nowait()
    seen["get_many_nowait"] = q.get_many_nowait()
    seen["get_many_nowait_empty"] = outcome(q.get_many_nowait)
    seen["get_nowait_empty"] = outcome(q.get_nowait)
    seen["data_size_empty"] = q.data_size()

    # The byte bound of get_many: stops once the bytes taken reach max_bytes_to_read.
    q.put_many([b"x" * 100] * 10)
    one = q.data_size() // 10
    q.max_bytes_to_read = 3 * one - 1
    seen["bounded"] = len(q.get_many())
    q.max_bytes_to_read = 3 * one
    seen["bounded_exact"] = len(q.get_many())
    q.max_bytes_to_read = 1
    seen["bounded_one"] = len(q.get_many())
    q.max_bytes_to_read = q.max_size_bytes
    seen["rest"] = len(q.get_many())

    # maxsize bounds the number of messages.
    small = Queue(max_size_bytes=10_000, maxsize=3)
    small.put_many([1, 2, 3])
    seen["full_at_maxsize"] = small.full()
    seen["put_over_maxsize"] = outcome(lambda: small.put_nowait(4))
    seen["put_many_over_maxsize"] = outcome(lambda: small.put_many([4], block=False))
    seen["timed_put_over_maxsize"] = outcome(lambda: small.put(4, timeout=0.05))
    seen["after_full"] = small.get_many()
    seen["not_full"] = small.full()

    # Custom serializers (README, v1.3.0), per instance and per class.
    custom = Queue(max_size_bytes=100000, loads=lambda b: bytes(b).decode(), dumps=lambda s: s.encode())
    custom.put("héllo")
    seen["custom_data_size"] = custom.data_size()
    seen["custom"] = custom.get()
    rev = Reversing(10_000)
    rev.put_many([12, 345])
    seen["class_serializers"] = [rev.data_size(), rev.get_many()]

    # Other processes (every start method) and threads.
    for method in ("fork", "spawn", "forkserver"):
        mq = Queue(100_000)
        p = mp.get_context(method).Process(target=child_put, args=(mq, 100))
        p.start()
        got = [mq.get(timeout=30) for _ in range(5)]
        p.join(30)
        seen[f"child_{method}"] = [got, p.exitcode]
    tq = Queue(100_000)
    threads = [threading.Thread(target=child_put, args=(tq, 10 * t)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    seen["threads"] = sorted(tq.get(timeout=5) for _ in range(20))

    # The rest of the surface.
    seen["last_error"] = q.last_error
    seen["join_thread"] = [q.join_thread(), q.cancel_join_thread()]
    seen["attributes"] = [q.max_size_bytes, small.maxsize, Queue().max_size_bytes]
    q.put_many(["a", "b"])
    seen["closed_before"] = q.is_closed()
    q.close()
    seen["closed_after"] = q.is_closed()
    seen["drained_after_close"] = q.get_many(timeout=1)
    seen["get_after_drain"] = outcome(lambda: q.get(timeout=0.1))
    print(json.dumps(seen, sort_keys=True))


if __name__ == "__main__":
    main()
