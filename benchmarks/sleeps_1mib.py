#!/usr/bin/env python3
"""How often the two sides of a 1→1 queue of 1 MiB messages go to sleep, per ring size.

    python3 benchmarks/sleeps_1mib.py --rounds 8 --base /work/base-venv/bin/python --new .venv/bin/python

A producer (16 distinct payloads cycled) and a consumer in forked processes, the parent
attached as in bench.py; each child reports its voluntary context switches (a futex sleep
is one) and CPU time. With --base/--new the two interpreters (two builds of shmq) alternate
per round and the table shows medians of each; without them, this interpreter runs alone.
Sleeps are the figure this script is for: a wall-clock rate on a shared machine varies more
than the builds differ (use ab.py and bench.py for rates).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

SIZES = ("4MiB", "16MiB", "64MiB", "256MiB", "1GiB")
MSG = 1 << 20
DISTINCT = 16


def _usage() -> tuple[int, float]:
    with open("/proc/self/status") as f:
        vcs = next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt"))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return vcs, ru.ru_utime + ru.ru_stime


def _producer(q: Any, go: Any, out: Any, n: int) -> None:
    msgs = [bytes([1 + k]) * MSG for k in range(DISTINCT)]
    go.wait()
    v0, c0 = _usage()
    for m in itertools.islice(itertools.cycle(msgs), n):
        q.put(m)
    q.put(b"")
    v1, c1 = _usage()
    out.put(("put", v1 - v0, c1 - c0))
    q.close()


def _consumer(q: Any, go: Any, out: Any, n: int) -> None:
    go.wait()
    v0, c0 = _usage()
    t0 = time.perf_counter()
    while q.get():
        pass
    elapsed = time.perf_counter() - t0
    v1, c1 = _usage()
    out.put(("get", v1 - v0, c1 - c0, n / elapsed))
    q.close()


def run_one(size: str, n: int) -> dict[str, float]:
    import shmq

    ctx = mp.get_context("fork")
    q = shmq.Queue(capacity=shmq.parse_size(size), codec="raw")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_producer, args=(q, go, out, n)), ctx.Process(target=_consumer, args=(q, go, out, n))]
    for p in procs:
        p.start()
    time.sleep(0.2)  # both children blocked on `go`: the start is the same for both
    go.set()
    got = {r[0]: r for r in (out.get(timeout=120), out.get(timeout=120))}
    for p in procs:
        p.join()
    q.close()
    return {
        "rate": got["get"][3],
        "consumer_sleeps": got["get"][1] / n,
        "producer_sleeps": got["put"][1] / n,
        "consumer_cpu_us": got["get"][2] / n * 1e6,
        "producer_cpu_us": got["put"][2] / n * 1e6,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--base", help="interpreter of the baseline build")
    ap.add_argument("--new", help="interpreter of the build under test")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child mode: one run, JSON out
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.messages)))
        return 0
    builds = {"base": args.base, "new": args.new} if args.base and args.new else {"this": sys.executable}
    sizes = args.sizes.split(",")
    res: dict[tuple[str, str], list[dict[str, float]]] = {}
    for r in range(args.rounds):
        names = list(builds) if r % 2 == 0 else list(reversed(builds))
        for name in names:
            for size in sizes:
                cmd = [builds[name], os.path.abspath(__file__), "--one", size, "--messages", str(args.messages)]
                line = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                res.setdefault((size, name), []).append(json.loads(line))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"{'ring':7} {'build':5} {'msg/s':>7} {'cons sleeps/msg':>16} {'prod sleeps/msg':>16} {'cons µs cpu/msg':>16}")
    for size in sizes:
        for name in builds:
            runs = res[(size, name)]

            def med(key: str, runs: list[dict[str, float]] = runs) -> float:
                return statistics.median(x[key] for x in runs)

            print(
                f"{size:7} {name:5} {med('rate'):7.0f} {med('consumer_sleeps'):16.3f} "
                f"{med('producer_sleeps'):16.3f} {med('consumer_cpu_us'):16.0f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
