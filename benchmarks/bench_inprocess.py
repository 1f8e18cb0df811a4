"""In-process costs of one shmq call (no second process: the cost of the binding and the
protocol, not of waking a peer), for A/B comparisons of two builds on one machine.

    python benchmarks/bench_inprocess.py                  # this build
    python benchmarks/bench_inprocess.py --json out.json  # also the raw numbers

Run it with two interpreters (two builds) alternately and compare medians: each case is
timed ``--repeat`` times, distinct payloads are cycled (not one hot object).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import shmq


def cases() -> dict[str, Callable[[int], float]]:
    def roundtrip(make: Callable[[int], object], codec: str, capacity: str = "4MiB") -> Callable[[int], float]:
        def run(n: int) -> float:
            q = shmq.Queue(capacity=capacity, codec=codec)
            items = [make(i) for i in range(64)]
            put, get = q.put, q.get
            t = time.perf_counter()
            for i in range(n):
                put(items[i & 63])
                get()
            dt = time.perf_counter() - t
            q.close()
            return dt / n

        return run

    def batched(n: int) -> float:
        q = shmq.Queue(capacity="4MiB", codec="raw")
        items = [bytes([i]) * 64 for i in range(256)]
        rounds = max(1, n // 256)
        t = time.perf_counter()
        for _ in range(rounds):
            q.put_many(items)
            q.get_many(256)
        dt = time.perf_counter() - t
        q.close()
        return dt / (rounds * 256)

    def broadcast(n: int) -> float:
        b = shmq.Broadcast(capacity="4MiB", codec="raw")
        s = b.subscribe()
        items = [bytes([i]) * 64 for i in range(64)]
        t = time.perf_counter()
        for i in range(n):
            b.publish(items[i & 63])
            s.get()
        dt = time.perf_counter() - t
        s.close()
        b.close()
        return dt / n

    return {
        "put+get 64 B raw": roundtrip(lambda i: bytes([i]) * 64, "raw"),
        "put+get small dict": roundtrip(lambda i: {"id": i, "name": f"task-{i}", "args": [i, i + 1]}, "pickle"),
        "put+get 64 KiB raw": roundtrip(lambda i: bytes([i]) * 65536, "raw"),
        "put+get 1 MiB raw": roundtrip(lambda i: bytes([i]) * (1 << 20), "raw", "16MiB"),
        "put+get 1 MiB bytes, pickled": roundtrip(lambda i: bytes([i]) * (1 << 20), "pickle", "16MiB"),
        "put_many+get_many 64 B raw (per msg)": batched,
        "publish+get 64 B raw": broadcast,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.3, help="target time of one timing")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    out: dict[str, list[float]] = {}
    for name, run in cases().items():
        per = run(50)  # warm-up and calibration
        n = max(256, int(args.seconds / max(per, 1e-9)))
        out[name] = [run(n) for _ in range(args.repeat)]
        print(f"{name:<40} {statistics.median(out[name]) * 1e6:10.2f} µs", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
