#!/usr/bin/env python3
"""NumPy arrays between processes: shmq (one copy in, one copy out, or none with
``get(copy=False)``) against ``multiprocessing.Queue``, faster-fifo and a hand-rolled
``multiprocessing.shared_memory`` + pickle-5 scheme, with the in-process ``memcpy``
bandwidth as the limit. One run of the script measures everything it reports.

    .venv/bin/python benchmarks/bench_numpy.py              # 3 runs per cell
    .venv/bin/python benchmarks/bench_numpy.py --quick      # 1 short run per cell
    .venv/bin/python benchmarks/bench_numpy.py --runs 5 --json out.json

Cells: float32 arrays of 64 KiB, 1 MiB and 16 MiB; 1→1 (a producer process, a consumer
process) and 1→3 (a publisher, three subscriber processes: shmq.Broadcast; the others put
each array into one queue per reader). The producer cycles through 4 distinct arrays. A
consumer that copies gets its own array of every message ("copy"); ``copy=False`` drops the
view after touching its first and last element. Figures: messages/s and GB/s per reader
(median over runs), and GB/s as a fraction of memcpy's. Also: ``put`` + ``get`` of one
64 MiB array in one process, as a multiple of one memcpy of it, for shmq's out-of-band path
and for the in-band pickle that ``put`` used before (``pickle.dumps`` then a raw put; a get,
then ``pickle.loads``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import platform
import statistics
import sys
import time
from multiprocessing import shared_memory
from typing import Any, Callable

import numpy as np

import shmq

try:
    import faster_fifo
except ImportError:  # reported in the output
    faster_fifo = None

CTX = mp.get_context("fork")
SIZES = {"64KiB": 64 << 10, "1MiB": 1 << 20, "16MiB": 16 << 20}


def arrays(nbytes: int) -> list[np.ndarray[Any, Any]]:
    return [np.full(nbytes // 4, i, dtype=np.float32) for i in range(4)]


def capacity_for(nbytes: int) -> int:
    return max(4 << 20, 4 * nbytes + (1 << 20))


# ---------------------------------------------------------------------------------------
# In-process limits
# ---------------------------------------------------------------------------------------


def memcpy_gbs(nbytes: int, seconds: float) -> float:
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        np.copyto(dst, src)
        n += 1
    return n * nbytes / (time.perf_counter() - t0) / 1e9


def one_process_ratio(runs: int) -> dict[str, float]:
    """put+get of a 64 MiB array in one process, as multiples of one memcpy of it."""
    a = np.random.default_rng(1).random((64 << 20) // 8)
    dst = np.empty_like(a)

    def median_time(f: Callable[[], None]) -> float:
        f()
        times = []
        for _ in range(runs + 2):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    copy_t = median_time(lambda: np.copyto(dst, a))
    with shmq.Queue(capacity="80MiB") as q:

        def oob() -> None:
            q.put(a)
            q.get()

        def oob_view() -> None:
            q.put(a)
            v = q.get(copy=False)
            del v

        def in_band() -> None:  # what put and get did before: in-band pickle, raw bytes
            q.put(pickle.dumps(a, protocol=5), codec="raw")
            pickle.loads(q.get())

        return {
            "memcpy_ms": copy_t * 1e3,
            "before_in_band": median_time(in_band) / copy_t,
            "after_one_copy_each_way": median_time(oob) / copy_t,
            "after_copy_false": median_time(oob_view) / copy_t,
        }


def get_cost_us(runs: int) -> dict[str, dict[str, float]]:
    """The consumer's side alone, in one process: µs per `get()` and per `get(copy=False)`
    (the array then dropped) of an array already in the queue, for each size."""
    out: dict[str, dict[str, float]] = {}
    for size, nbytes in SIZES.items():
        a = arrays(nbytes)[0]
        with shmq.Queue(capacity=capacity_for(nbytes)) as q:
            cell = {}
            for label, copy in (("copy", True), ("copy=False", False)):
                times = []
                for _ in range(10 * runs + 2):
                    q.put(a)
                    t0 = time.perf_counter()
                    v = q.get(copy=copy)
                    times.append(time.perf_counter() - t0)
                    del v
                cell[label] = statistics.median(times[2:]) * 1e6
            out[size] = cell
    return out


# ---------------------------------------------------------------------------------------
# Readers and writers (child processes, fork)
# ---------------------------------------------------------------------------------------


def consume(make_get: Callable[[], Callable[[], Any]], n: int, copy: bool, out: Any, ready: Any) -> None:
    get = make_get()  # a subscriber subscribes here, before the publisher starts
    ready.put(1)
    first = get()
    del first  # a copy=False result kept alive holds its message: the ring would fill behind it
    t0 = time.perf_counter()
    for _ in range(n - 1):
        a = get()
        if not copy:
            float(a[0]) + float(a[-1])  # touch the view, then drop it
        del a
    out.put((time.perf_counter() - t0, n - 1))


def run_cell(lib: str, nbytes: int, readers: int, copy: bool, n: int) -> float:
    """Messages per second per reader (median over the readers) for one run."""
    data = arrays(nbytes)
    out, ready = CTX.Queue(), CTX.Queue()
    procs: list[Any] = []
    cleanup: list[Callable[[], None]] = []
    if lib == "shmq":
        name = f"bnp-{os.getpid()}-{time.monotonic_ns()}"
        if readers == 1:
            q: Any = shmq.Queue(name, capacity=capacity_for(nbytes), create=True)
            cleanup.append(q.close)
            put = q.put
            getters = [lambda: (lambda: q.get(copy=copy))]  # type: ignore[misc]
        else:
            pub: Any = shmq.Broadcast(name, capacity=capacity_for(nbytes), create=True)
            cleanup.append(pub.close)
            put = pub.publish
            getters = [lambda: shmq.Subscriber(name).get] * readers
            if not copy:
                getters = [lambda: (lambda s: lambda: s.get(copy=False))(shmq.Subscriber(name))] * readers
    elif lib == "mp.Queue":
        qs = [CTX.Queue() for _ in range(readers)]
        put = lambda a: [x.put(a) for x in qs]  # noqa: E731
        getters = [lambda x=x: x.get for x in qs]  # type: ignore[misc]
    elif lib == "faster-fifo":
        assert faster_fifo is not None
        qs = [faster_fifo.Queue(max_size_bytes=capacity_for(nbytes)) for _ in range(readers)]
        put = lambda a: [x.put(a, timeout=60) for x in qs]  # noqa: E731
        getters = [lambda x=x: (lambda: x.get(timeout=60)) for x in qs]
    elif lib == "shm+pickle5":
        return hand_rolled(data, n, copy)
    else:
        raise ValueError(lib)
    for g in getters:
        p = CTX.Process(target=lambda g=g: consume(g, n, copy, out, ready))
        p.start()
        procs.append(p)
    for _ in procs:
        ready.get(timeout=60)
    for i in range(n):
        put(data[i % len(data)])
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
    for c in cleanup:
        c()
    return statistics.median(k / t for t, k in results)


def hand_rolled(data: list[np.ndarray[Any, Any]], n: int, copy: bool) -> float:
    """What people write by hand: a pool of shared-memory slots; the producer pickles with
    protocol 5, copies the out-of-band buffers into a free slot and sends (slot, pickle,
    lengths) over a multiprocessing.Queue; the consumer rebuilds over the slot (copy: then
    copies the array out) and sends the slot back."""
    nbytes = data[0].nbytes
    slots = 4
    shm = shared_memory.SharedMemory(create=True, size=slots * nbytes)
    meta, free, out = CTX.Queue(), CTX.Queue(), CTX.Queue()
    for s in range(slots):
        free.put(s)

    def consumer() -> None:
        mine = shared_memory.SharedMemory(name=shm.name)

        def get() -> Any:
            slot, main, lengths = meta.get()
            off, bufs = slot * nbytes, []
            for ln in lengths:
                bufs.append(mine.buf[off : off + ln])
                off += ln
            a = pickle.loads(main, buffers=bufs)
            if copy:
                a = a.copy()
            del bufs
            free.put(slot)
            return a

        consume(lambda: get, n, copy, out, CTX.Queue())
        mine.close()

    p = CTX.Process(target=consumer)
    p.start()
    for i in range(n):
        bufs: list[pickle.PickleBuffer] = []
        main = pickle.dumps(data[i % len(data)], protocol=5, buffer_callback=bufs.append)
        slot = free.get()
        off, lengths = slot * nbytes, []
        for b in bufs:
            raw = b.raw()
            shm.buf[off : off + raw.nbytes] = raw
            off += raw.nbytes
            lengths.append(raw.nbytes)
        meta.put((slot, main, lengths))
    t, k = out.get(timeout=600)
    p.join(60)
    shm.close()
    shm.unlink()
    return k / t


# ---------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=0.6, help="rough length of one run")
    ap.add_argument("--json", help="write every measurement here")
    args = ap.parse_args()
    runs = 1 if args.quick else args.runs
    seconds = 0.25 if args.quick else args.seconds
    libs = ["shmq", "mp.Queue", "shm+pickle5"] + (["faster-fifo"] if faster_fifo else [])
    report: dict[str, Any] = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "faster_fifo": getattr(faster_fifo, "__version__", "installed") if faster_fifo else None,
        "cells": [],
    }
    print(f"# bench_numpy: {report['machine']}, {report['cpus']} CPUs, numpy {np.__version__}")
    if not faster_fifo:
        print("# faster-fifo: not installed (pip install faster-fifo): its rows are missing")
    memcpy = {k: statistics.median(memcpy_gbs(v, 0.2) for _ in range(3)) for k, v in SIZES.items()}
    report["memcpy_gbs"] = memcpy
    print("memcpy GB/s (in process): " + ", ".join(f"{k} {v:.1f}" for k, v in memcpy.items()))
    ratio = one_process_ratio(runs)
    report["one_process_64MiB"] = ratio
    print(
        "put+get of a 64 MiB array in one process, in memcpys of it: "
        f"before (in-band pickle) {ratio['before_in_band']:.1f}x, "
        f"after {ratio['after_one_copy_each_way']:.1f}x, copy=False {ratio['after_copy_false']:.1f}x "
        f"(memcpy {ratio['memcpy_ms']:.1f} ms)"
    )
    cost = get_cost_us(runs)
    report["get_cost_us"] = cost
    print(
        "one get, consumer side only (µs): "
        + ", ".join(f"{k} copy {v['copy']:.0f} / copy=False {v['copy=False']:.0f}" for k, v in cost.items())
    )
    print()
    print(f"| readers | size | library | msg/s per reader | GB/s per reader | of memcpy |")
    print(f"|---|---|---|---:|---:|---:|")
    for readers in (1, 3):
        for size, nbytes in SIZES.items():
            variants = [(lib, True) for lib in libs] + [("shmq", False)]
            if readers == 3:
                variants = [v for v in variants if v[0] != "shm+pickle5"]  # 1 reader only
            for lib, copy in variants:
                label = lib if lib != "shmq" else f"shmq {'copy' if copy else 'copy=False'}"
                # Calibrate the count for a run of about `seconds`, then measure.
                rate = run_cell(lib, nbytes, readers, copy, 8)
                n = int(min(max(rate * seconds, 8), 20000))
                rates = [run_cell(lib, nbytes, readers, copy, n) for _ in range(runs)]
                med = statistics.median(rates)
                gbs = med * nbytes / 1e9
                cell = {"readers": readers, "size": size, "lib": label, "rates": rates, "msg_s": med, "gb_s": gbs}
                report["cells"].append(cell)
                frac = gbs / memcpy[size]
                print(f"| 1→{readers} | {size} | {label} | {med:,.0f} | {gbs:.2f} | {frac:.2f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
