#!/usr/bin/env python3
"""The memory-bandwidth bound of the 1 MiB benchmarks: how long one copy of a 1 MiB
payload takes when a producer cycles K distinct payloads (as ``bench.py``'s bytes cells do
with K = 16), in process, with no queue. A producer that copies its payload into a ring
cannot send faster than one message per copy.

    python3 benchmarks/copy_bound.py            # K = 1, 2, 4, 8, 12, 16, 24, 32
"""

from __future__ import annotations

import os
import statistics
import time

SIZE = 1 << 20


def copy_time(k: int, copies: int = 2000, runs: int = 5) -> float:
    """Seconds per copy of one payload out of `k` distinct ones (median of `runs`)."""
    payloads = [os.urandom(SIZE) for _ in range(k)]
    dst = [memoryview(bytearray(SIZE)) for _ in range(2)]
    for i in range(200):  # warm up: touch the destinations, fill the caches
        dst[i & 1][:] = payloads[i % k]
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        for i in range(copies):
            dst[i & 1][:] = payloads[i % k]
        times.append((time.perf_counter() - t) / copies)
    return statistics.median(times)


def main() -> None:
    print(f"copy of one {SIZE >> 20} MiB payload out of K distinct ones (median of 5 runs of 2000 copies)")
    for k in (1, 2, 4, 8, 12, 16, 24, 32):
        per = copy_time(k)
        print(f"  K = {k:2d}: {per * 1e6:6.1f} us per copy, {SIZE / per / 1e9:5.1f} GB/s, "
              f"at most {1 / per / 1e3:5.1f} k copies/s")


if __name__ == "__main__":
    main()
