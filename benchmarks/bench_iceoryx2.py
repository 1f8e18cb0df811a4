#!/usr/bin/env python3
"""1→1, 1 MiB messages: shmq against iceoryx2's Python binding (pip `iceoryx2`), same run.

Issue 13's workload: fresh processes per run (fork), the producer cycles 16 distinct 1 MiB
payloads, the consumer copies each message out (`bytes`); shmq with a ring of 16 × the
message and with its 4 MiB default; iceoryx2 publish/subscribe of a byte slice with a
16-sample subscriber buffer, backpressure RetryUntilDelivered, the publisher copying into a loaned
sample and the subscriber polling (`receive()` in a loop, as its spinning subscriber).

    python benchmarks/bench_iceoryx2.py --runs 5 --messages 3000

Needs `iceoryx2` and `shmq` in the same interpreter (e.g. a venv with both installed).
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import Any, Callable

import shmq

CTX = mp.get_context("fork")
SIZE = 1 << 20
DISTINCT = 16


def _payloads() -> list[bytes]:
    return [bytes([1 + k]) * SIZE for k in range(DISTINCT)]


def _shmq_producer(q: Any, go: Any, n: int) -> None:
    msgs = _payloads()
    go.wait()
    for m in itertools.islice(itertools.cycle(msgs), n):
        q.put(m)
    q.put(b"")
    q.close()


def _shmq_consumer(q: Any, out: Any) -> None:
    get = q.get
    first = get()  # the clock starts at the first message
    t0 = time.perf_counter()
    count = 1 if first else 0
    while get():
        count += 1
    out.put((count, time.perf_counter() - t0))
    q.close()


def run_shmq(capacity: int, n: int) -> float:
    q = shmq.Queue(capacity=capacity, codec="raw")
    go, out = CTX.Event(), CTX.Queue()
    procs = [CTX.Process(target=_shmq_producer, args=(q, go, n)), CTX.Process(target=_shmq_consumer, args=(q, out))]
    for p in procs:
        p.start()
    time.sleep(0.2)
    go.set()
    count, dt = out.get(timeout=120)
    for p in procs:
        p.join(30)
    q.close()
    assert count == n, (count, n)
    return (count - 1) / dt


def _iox_service(name: str) -> tuple[Any, Any]:
    import iceoryx2 as iox

    iox.set_log_level_from_env_or(iox.LogLevel.Error)
    node = iox.NodeBuilder.new().create(iox.ServiceType.Ipc)
    svc = (
        node.service_builder(iox.ServiceName.new(name))
        .publish_subscribe(iox.Slice[ctypes.c_uint8])
        .subscriber_max_buffer_size(DISTINCT)
        .enable_safe_overflow(False)
        .open_or_create()
    )
    return node, svc


def _iox_producer(name: str, go: Any, ready: Any, n: int) -> None:
    import iceoryx2 as iox

    node, svc = _iox_service(name)
    pub = (
        svc.publisher_builder()
        .initial_max_slice_len(SIZE)
        .backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered)
        .create()
    )
    msgs = _payloads()
    ready.set()
    go.wait()
    for m in itertools.islice(itertools.cycle(msgs), n):
        s = pub.loan_slice_uninit(SIZE)
        ctypes.memmove(s.payload_ptr, m, SIZE)
        s.assume_init().send()
    time.sleep(1.0)  # let the subscriber take the last samples before the service goes
    del pub, svc, node


def _iox_consumer(name: str, ready: Any, out: Any, n: int) -> None:
    node, svc = _iox_service(name)
    sub = svc.subscriber_builder().create()
    ready.set()
    count = 0
    t0 = 0.0
    while count < n:
        s = sub.receive()
        if s is None:
            continue
        bytes(s.payload().as_memory_view())  # copy out, as shmq's get
        del s
        count += 1
        if count == 1:
            t0 = time.perf_counter()
    out.put((count, time.perf_counter() - t0))
    del sub, svc, node


def run_iceoryx2(n: int) -> float:
    name = f"shmq-bench-{os.getpid()}-{time.monotonic_ns()}"
    go, out = CTX.Event(), CTX.Queue()
    sub_ready, pub_ready = CTX.Event(), CTX.Event()
    cons = CTX.Process(target=_iox_consumer, args=(name, sub_ready, out, n))
    cons.start()
    sub_ready.wait(30)
    prod = CTX.Process(target=_iox_producer, args=(name, go, pub_ready, n))
    prod.start()
    pub_ready.wait(30)
    time.sleep(0.2)
    go.set()
    count, dt = out.get(timeout=120)
    for p in (prod, cons):
        p.join(30)
    return (count - 1) / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--json", metavar="PATH", help="also write every run's rate (messages/s) as JSON")
    args = ap.parse_args()
    cells: dict[str, Callable[[], float]] = {
        "shmq, ring 16 MiB": lambda: run_shmq(16 * SIZE, args.messages),
        "shmq, ring 4 MiB": lambda: run_shmq(4 * SIZE, args.messages),
        "iceoryx2 0.10, 16 samples": lambda: run_iceoryx2(args.messages),
    }
    results: dict[str, list[float]] = {k: [] for k in cells}
    for r in range(args.runs):  # interleaved, rotating order
        keys = list(cells)
        keys = keys[r % len(keys) :] + keys[: r % len(keys)]
        for k in keys:
            results[k].append(cells[k]())
    print(f"1→1, 1 MiB, {DISTINCT} distinct payloads, copy out; median of {args.runs} runs; load {os.getloadavg()[0]:.2f}")
    for k, v in results.items():
        print(f"{k:28} {statistics.median(v) / 1e3:8.2f} k/s   (min {min(v) / 1e3:.2f}, max {max(v) / 1e3:.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": args.runs, "messages": args.messages, "rates": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
