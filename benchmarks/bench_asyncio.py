"""asyncio benchmark: shmq.asyncio against zmq.asyncio PUSH/PULL over ipc:// and against
multiprocessing.Queue driven by loop.run_in_executor (what asyncio programs do today).

In one run, each measured several times (medians reported, with the ratio to shmq):
- round trip: an async client in this process sends a 64 B message to an async echo server in
  a child process and awaits the reply;
- 1->1 throughput: an async producer in a child, an async consumer here, for 64 B, a small
  dict and 1 MiB; shmq and zmq with batches where the API has them (shmq put_many/get_many;
  zmq queues internally), multiprocessing.Queue one get per executor call; the baseline of
  what async costs: the same shmq workload with the blocking calls, in the same run.

    .venv/bin/python benchmarks/bench_asyncio.py [--runs 5] [--quick] [--uvloop]
        [--payloads "1 MiB"] [--no-round-trip]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import shmq
import shmq.asyncio as shmq_aio

try:
    import zmq
    import zmq.asyncio
except ImportError:  # pragma: no cover
    zmq = None  # type: ignore[assignment]

CTX = mp.get_context("fork")
PAYLOADS: dict[str, Callable[[], Any]] = {
    "64 B": lambda: b"x" * 64,
    "small dict": lambda: {"id": 12345, "name": "task", "args": [1, 2, 3], "ok": True},
    "1 MiB": lambda: b"x" * (1 << 20),
}
BATCH = 256


def run_loop(coro: Any, use_uvloop: bool) -> Any:
    if use_uvloop:
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


# ------------------------------------------------------------------ round trip


def shmq_echo(req: str, rep: str, use_uvloop: bool, spin: bool) -> None:
    async def main() -> None:
        a = shmq_aio.Queue(req, create=False, codec="raw")
        b = shmq_aio.Queue(rep, create=False, codec="raw")
        a.spin = b.spin = spin
        while True:
            m = await a.get()
            if m == b"stop":
                break
            await b.put(m)

    run_loop(main(), use_uvloop)


async def shmq_round_trip(n: int, use_uvloop: bool, spin: bool = True) -> float:
    req, rep = f"bench-req-{uuid.uuid4().hex[:8]}", f"bench-rep-{uuid.uuid4().hex[:8]}"
    a = shmq_aio.Queue(req, create=True, codec="raw", capacity="1MiB")
    b = shmq_aio.Queue(rep, create=True, codec="raw", capacity="1MiB")
    a.spin = b.spin = spin
    p = CTX.Process(target=shmq_echo, args=(req, rep, use_uvloop, spin))
    p.start()
    msg = b"x" * 64
    for _ in range(200):  # warm up
        await a.put(msg)
        await b.get()
    t0 = time.perf_counter()
    for _ in range(n):
        await a.put(msg)
        await b.get()
    dt = time.perf_counter() - t0
    await a.put(b"stop")
    p.join()
    a.close()
    b.close()
    return dt / n


async def shmq_round_trip_no_spin(n: int, use_uvloop: bool) -> float:
    return await shmq_round_trip(n, use_uvloop, spin=False)


def zmq_echo(req: str, rep: str, use_uvloop: bool) -> None:
    async def main() -> None:
        ctx = zmq.asyncio.Context()
        pull = ctx.socket(zmq.PULL)
        pull.bind(req)
        push = ctx.socket(zmq.PUSH)
        push.connect(rep)
        while True:
            m = await pull.recv()
            if m == b"stop":
                break
            await push.send(m)
        pull.close(0)
        push.close(0)
        ctx.term()

    run_loop(main(), use_uvloop)


def ipc() -> str:
    return f"ipc:///tmp/bench-aio-{uuid.uuid4().hex[:8]}"


async def zmq_round_trip(n: int, use_uvloop: bool) -> float:
    req, rep = ipc(), ipc()
    p = CTX.Process(target=zmq_echo, args=(req, rep, use_uvloop))
    p.start()  # before the context exists (see zmq_throughput)
    ctx = zmq.asyncio.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(rep)
    push = ctx.socket(zmq.PUSH)
    push.connect(req)
    msg = b"x" * 64
    for _ in range(200):
        await push.send(msg)
        await pull.recv()
    t0 = time.perf_counter()
    for _ in range(n):
        await push.send(msg)
        await pull.recv()
    dt = time.perf_counter() - t0
    await push.send(b"stop")
    p.join()
    push.close(0)
    pull.close(0)
    ctx.term()
    return dt / n


def mp_echo(a: Any, b: Any) -> None:
    while True:
        m = a.get()
        if m == b"stop":
            break
        b.put(m)


async def mp_round_trip(n: int, use_uvloop: bool) -> float:
    loop = asyncio.get_running_loop()
    a, b = CTX.Queue(), CTX.Queue()
    p = CTX.Process(target=mp_echo, args=(a, b))
    p.start()
    msg = b"x" * 64
    for _ in range(50):
        await loop.run_in_executor(None, a.put, msg)
        await loop.run_in_executor(None, b.get)
    t0 = time.perf_counter()
    for _ in range(n):
        await loop.run_in_executor(None, a.put, msg)
        await loop.run_in_executor(None, b.get)
    dt = time.perf_counter() - t0
    a.put(b"stop")
    p.join()
    return dt / n


# ------------------------------------------------------------------ throughput


def shmq_producer(name: str, kind: str, n: int, use_uvloop: bool) -> None:
    async def main() -> None:
        codec = "pickle" if kind == "small dict" else "raw"
        q = shmq_aio.Queue(name, create=False, codec=codec)
        m = PAYLOADS[kind]()
        batch = [m] * (BATCH if kind != "1 MiB" else 4)
        sent = 0
        while sent < n:
            k = min(len(batch), n - sent)
            await q.put_many(batch[:k])
            sent += k
        q.close()

    run_loop(main(), use_uvloop)


async def shmq_throughput(kind: str, n: int, use_uvloop: bool) -> float:
    name = f"bench-tp-{uuid.uuid4().hex[:8]}"
    codec = "pickle" if kind == "small dict" else "raw"
    q = shmq_aio.Queue(name, create=True, codec=codec, capacity="16MiB" if kind != "1 MiB" else "64MiB")
    p = CTX.Process(target=shmq_producer, args=(name, kind, n, use_uvloop))
    t0 = time.perf_counter()
    p.start()
    got = 0
    while got < n:
        got += len(await q.get_many(BATCH))
    dt = time.perf_counter() - t0
    p.join()
    q.close()
    return n / dt


def shmq_sync_producer(name: str, kind: str, n: int) -> None:
    codec = "pickle" if kind == "small dict" else "raw"
    q = shmq.Queue(name, create=False, codec=codec)
    m = PAYLOADS[kind]()
    batch = [m] * (BATCH if kind != "1 MiB" else 4)
    sent = 0
    while sent < n:
        k = min(len(batch), n - sent)
        q.put_many(batch[:k])
        sent += k
    q.close()


async def shmq_sync_throughput(kind: str, n: int, use_uvloop: bool) -> float:
    """The baseline: shmq_throughput's workload with the blocking calls (the loop idle)."""
    name = f"bench-tp-{uuid.uuid4().hex[:8]}"
    codec = "pickle" if kind == "small dict" else "raw"
    q = shmq.Queue(name, create=True, codec=codec, capacity="16MiB" if kind != "1 MiB" else "64MiB")
    p = CTX.Process(target=shmq_sync_producer, args=(name, kind, n))
    t0 = time.perf_counter()
    p.start()
    got = 0
    while got < n:
        got += len(q.get_many(BATCH))
    dt = time.perf_counter() - t0
    p.join()
    q.close()
    return n / dt


def zmq_producer(addr: str, kind: str, n: int, use_uvloop: bool) -> None:
    async def main() -> None:
        ctx = zmq.asyncio.Context()
        push = ctx.socket(zmq.PUSH)
        # No high-water mark: with one (1000), a producer that reached it waited for ever in
        # some runs (pyzmq 27 asyncio on this VM), hanging the benchmark; the runs are short.
        push.setsockopt(zmq.SNDHWM, 0)
        push.connect(addr)
        m = PAYLOADS[kind]()
        if kind == "small dict":
            for _ in range(n):
                await push.send_pyobj(m)
        else:
            for _ in range(n):
                await push.send(m, copy=len(m) < 65536)
        push.close(linger=-1)
        ctx.term()

    run_loop(main(), use_uvloop)


async def zmq_throughput(kind: str, n: int, use_uvloop: bool) -> float:
    addr = ipc()
    p = CTX.Process(target=zmq_producer, args=(addr, kind, n, use_uvloop))
    t0 = time.perf_counter()
    # The context is made after the fork: a child forked with a live context in its parent
    # sometimes never delivered (its connect raced with our bind), hanging the run.
    p.start()
    ctx = zmq.asyncio.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 0)
    pull.bind(addr)
    if kind == "small dict":
        for _ in range(n):
            await pull.recv_pyobj()
    else:
        for _ in range(n):
            await pull.recv()
    dt = time.perf_counter() - t0
    p.join()
    pull.close(0)
    ctx.term()
    return n / dt


def mp_producer(q: Any, kind: str, n: int) -> None:
    m = PAYLOADS[kind]()
    for _ in range(n):
        q.put(m)


async def mp_throughput(kind: str, n: int, use_uvloop: bool) -> float:
    loop = asyncio.get_running_loop()
    q = CTX.Queue()
    p = CTX.Process(target=mp_producer, args=(q, kind, n))
    t0 = time.perf_counter()
    p.start()
    for _ in range(n):
        await loop.run_in_executor(None, q.get)
    dt = time.perf_counter() - t0
    p.join()
    return n / dt


# ------------------------------------------------------------------ main


def median_of(runs: int, f: Callable[[], float]) -> float:
    return statistics.median(f() for _ in range(runs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer messages per run")
    ap.add_argument("--uvloop", action="store_true", help="run every event loop on uvloop")
    ap.add_argument("--payloads", nargs="+", choices=list(PAYLOADS), default=list(PAYLOADS),
                    help="throughput payloads to run (default: all)")
    ap.add_argument("--no-round-trip", action="store_true", help="skip the round trips")
    a = ap.parse_args()
    if zmq is None:
        sys.exit("bench_asyncio needs pyzmq")
    scale = 0.2 if a.quick else 1.0
    uv = a.uvloop
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, loop: {'uvloop' if uv else 'asyncio'}, "
          f"medians of {a.runs} runs")
    print()
    rt_n = int(2000 * scale)
    libs_rt = [
        ("shmq.asyncio", shmq_round_trip),
        ("shmq.asyncio, spin = False (every wait sleeps)", shmq_round_trip_no_spin),
        ("zmq.asyncio PUSH/PULL ipc://", zmq_round_trip),
        ("multiprocessing.Queue + run_in_executor", mp_round_trip),
    ]
    if not a.no_round_trip:
        print(f"round trip, 64 B ({rt_n} per run)")
    base = None
    for label, f in [] if a.no_round_trip else libs_rt:
        n = rt_n if f is not mp_round_trip else max(200, rt_n // 4)
        us = median_of(a.runs, lambda: run_loop(f(n, uv), uv)) * 1e6
        base = base or us
        print(f"  {label:48s} {us:9.1f} µs   x{us / base:6.2f} of shmq")
    print()
    counts = {"64 B": 1_000_000, "small dict": 300_000, "1 MiB": 2_000}
    mp_counts = {"64 B": 20_000, "small dict": 20_000, "1 MiB": 1_000}
    for kind in a.payloads:
        n = int(counts[kind] * scale)
        print(f"1->1 throughput, {kind}")
        base = None
        for label, f, k in [
            ("shmq.asyncio put_many/get_many", shmq_throughput, n),
            ("shmq (blocking) put_many/get_many, same loads", shmq_sync_throughput, n),
            ("zmq.asyncio PUSH/PULL ipc://", zmq_throughput, max(500, n // 10)),
            ("multiprocessing.Queue + run_in_executor", mp_throughput, int(mp_counts[kind] * scale)),
        ]:
            rate = median_of(a.runs, lambda: run_loop(f(kind, k, uv), uv))
            base = base or rate
            extra = f"  {rate * len(PAYLOADS[kind]()) / 1e9:6.2f} GB/s" if kind == "1 MiB" else ""
            print(f"  {label:48s} {rate:12,.0f} msg/s   x{rate / base:6.3f} of shmq{extra}")
        print()


if __name__ == "__main__":
    main()
