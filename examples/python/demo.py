#!/usr/bin/env python3
"""shmq demo: a multi-process job over shmq, then the same job over multiprocessing.Queue.

A producer process puts N small tasks ("count the primes in [lo, hi)", about 5-10 µs of CPU
each by default; --span makes them bigger) on a task queue; worker processes take tasks and
put results on a result queue; the main process collects the results behind a progress bar,
checks that every task's result arrived exactly once and is correct, and finally compares the
two runs side by side.

With tasks this small the queues are a large part of the cost: this is where shmq shines.

    .venv/bin/python examples/python/demo.py                   # or: make demo
    .venv/bin/python examples/python/demo.py --tasks 20000 --workers 3 --span 16
"""

from __future__ import annotations

import argparse
import glob
import multiprocessing as mp
import os
import queue as std_queue
import sys
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import shmq

SPAN = 8  # numbers per task: ~5-10 µs of trial division each (16: ~20 µs)
LO, HI = 100_000, 200_000  # tasks start in [LO, HI)
POLL = 0.5  # seconds between liveness checks while waiting
JOIN_TIMEOUT = 10.0

console = Console(highlight=False)


# --------------------------------------------------------------------------------------------
# The work


def task_range(i: int, span: int) -> tuple[int, int]:
    lo = LO + (i * 7919) % (HI - LO)
    return lo, lo + span


def count_primes(lo: int, hi: int) -> int:
    """Primes in [lo, hi) by trial division: deliberately plain Python, a few µs per number."""
    count = 0
    for n in range(max(lo, 2), hi):
        if n % 2 == 0:
            count += n == 2
            continue
        d = 3
        while d * d <= n:
            if n % d == 0:
                break
            d += 2
        else:
            count += 1
    return count


def prime_prefix(limit: int) -> list[int]:
    """prefix[k] = number of primes < k (a sieve: the collector's independent check)."""
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for p in range(2, int(limit**0.5) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, limit, p)))
    prefix = [0] * (limit + 1)
    total = 0
    for k in range(limit):
        prefix[k] = total
        total += sieve[k]
    prefix[limit] = total
    return prefix


# --------------------------------------------------------------------------------------------
# Processes. The same code runs over both queue types: shmq.Queue has the surface of
# multiprocessing.Queue.


def producer(tasks: Any, n_tasks: int, n_workers: int, span: int, start: Any) -> None:
    start.wait()
    for i in range(n_tasks):
        lo, hi = task_range(i, span)
        tasks.put({"id": i, "lo": lo, "hi": hi})
    for _ in range(n_workers):
        tasks.put(None)  # one sentinel per worker
    tasks.close()
    if hasattr(tasks, "join_thread"):
        tasks.join_thread()  # multiprocessing.Queue: flush the feeder thread


def worker(wid: int, tasks: Any, results: Any, start: Any) -> None:
    start.wait()
    while True:
        task = tasks.get()
        if task is None:
            break
        results.put({"id": task["id"], "count": count_primes(task["lo"], task["hi"]), "worker": wid})
    tasks.close()
    results.close()
    results.join_thread()


# --------------------------------------------------------------------------------------------
# The collector (this process)


@dataclass
class Outcome:
    backend: str
    seconds: float
    tasks: int
    per_worker: dict[int, int]


class JobFailed(RuntimeError):
    pass


def run_job(backend: str, n_tasks: int, n_workers: int, span: int, ctx: Any, prefix: list[int]) -> Outcome:
    if backend == "shmq":
        # Named queues: any process could open them with shmq.Queue(name, create=False).
        # Handed to the children by fork (or by pickling, which reopens them by name).
        tag = f"demo-{os.getpid()}"
        # keep_messages=False: a run stopped half-way leaves nothing in /dev/shm.
        tasks: Any = shmq.Queue(f"{tag}-tasks", capacity="4MiB", create=True, keep_messages=False)
        results: Any = shmq.Queue(f"{tag}-results", capacity="4MiB", create=True, keep_messages=False)
    else:
        tasks, results = ctx.Queue(), ctx.Queue()
    start = ctx.Barrier(n_workers + 2)  # producer, workers and this process start together
    procs = [ctx.Process(target=producer, args=(tasks, n_tasks, n_workers, span, start), name="producer")]
    procs += [
        ctx.Process(target=worker, args=(w, tasks, results, start), name=f"worker-{w}") for w in range(n_workers)
    ]
    seen = bytearray(n_tasks)
    per_worker: dict[int, int] = {}
    try:
        for p in procs:
            p.start()
        start.wait(timeout=60)
        t0 = time.perf_counter()
        with Progress(
            TextColumn(f"[bold]{backend:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9} tasks/s"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            bar = progress.add_task(backend, total=n_tasks, rate="")
            got = last_update = 0
            while got < n_tasks:
                try:
                    r = results.get(timeout=POLL)
                except std_queue.Empty:
                    if all(not p.is_alive() for p in procs[1:]):
                        raise JobFailed(f"all workers exited with {n_tasks - got} results missing") from None
                    if any(p.exitcode not in (None, 0) for p in procs):
                        raise JobFailed("a child process failed") from None
                    continue
                i = r["id"]
                if seen[i]:
                    raise JobFailed(f"result of task {i} arrived twice")
                seen[i] = 1
                lo, hi = task_range(i, span)
                if r["count"] != prefix[hi] - prefix[lo]:
                    raise JobFailed(f"task {i}: worker said {r['count']}, the sieve says {prefix[hi] - prefix[lo]}")
                per_worker[r["worker"]] = per_worker.get(r["worker"], 0) + 1
                got += 1
                if got - last_update >= 500 or got == n_tasks:
                    rate = got / (time.perf_counter() - t0)
                    progress.update(bar, completed=got, rate=f"{rate:,.0f}")
                    last_update = got
        seconds = time.perf_counter() - t0
    finally:
        for p in procs:
            p.join(JOIN_TIMEOUT)
            if p.is_alive():
                console.print(f"[red]{p.name} did not exit in {JOIN_TIMEOUT} s: terminating it")
                p.terminate()
                p.join(JOIN_TIMEOUT)
        for q in (tasks, results):
            q.close()
            if backend != "shmq":
                q.join_thread()
    bad = [p.name for p in procs if p.exitcode != 0]
    if bad:
        raise JobFailed(f"child processes failed: {bad}")
    if seen.count(1) != n_tasks:
        raise JobFailed(f"{n_tasks - seen.count(1)} results missing")
    console.print(
        f"[green]✔ verified:[/] all {n_tasks:,} results arrived exactly once and are correct"
        f" ({backend}, {seconds:.2f} s; per worker: {', '.join(str(per_worker[w]) for w in sorted(per_worker))})"
    )
    return Outcome(backend, seconds, n_tasks, per_worker)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="shmq demo: producer → workers → collector, vs multiprocessing.Queue")
    ap.add_argument("--tasks", type=int, default=400_000, help="number of tasks (default 400000)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument(
        "--span", type=int, default=SPAN, help=f"numbers per task: the task size (default {SPAN}, ~5-10 µs)"
    )
    ap.add_argument("--backend", choices=["both", "shmq", "mp"], default="both", help="which queues to run")
    ap.add_argument(
        "--start-method", choices=["fork", "spawn", "forkserver"], default="fork", help="multiprocessing start method"
    )
    args = ap.parse_args(argv)
    if args.tasks < 1 or args.workers < 1 or args.span < 1:
        ap.error("--tasks, --workers and --span must be at least 1")
    span = args.span
    ctx = mp.get_context(args.start_method)

    sample = range(0, args.tasks, max(args.tasks // 2000, 1))
    t = time.perf_counter()
    for i in sample:
        count_primes(*task_range(i, span))
    per_task_us = (time.perf_counter() - t) / len(sample) * 1e6
    console.print(
        f"[bold]shmq demo[/]: {args.tasks:,} tasks (count primes in {span} numbers, ~{per_task_us:.0f} µs of CPU each),"
        f" 1 producer → {args.workers} workers → 1 collector; {os.cpu_count()} CPUs, start method {args.start_method}"
    )
    console.print(
        "Tasks this small make the queue a large part of the cost: that is where shmq shines.",
        style="dim",
    )
    prefix = prime_prefix(HI + span + 1)

    backends = ["shmq", "mp.Queue"] if args.backend == "both" else ["shmq" if args.backend == "shmq" else "mp.Queue"]
    outcomes: list[Outcome] = []
    try:
        for backend in backends:
            outcomes.append(run_job(backend, args.tasks, args.workers, span, ctx, prefix))
    except JobFailed as e:
        console.print(f"[red]✘ job failed: {e}")
        return 1

    table = Table(title="same job, same code, two queues")
    table.add_column("queue")
    table.add_column("wall time", justify="right")
    table.add_column("tasks/s", justify="right")
    table.add_column("µs per task", justify="right")
    table.add_column("speed-up", justify="right")
    base = next((o for o in outcomes if o.backend == "mp.Queue"), None)
    for o in outcomes:
        label = "shmq.Queue" if o.backend == "shmq" else "multiprocessing.Queue"
        speed = f"{base.seconds / o.seconds:.2f}×" if base else "—"
        table.add_row(
            label, f"{o.seconds:.2f} s", f"{o.tasks / o.seconds:,.0f}", f"{o.seconds / o.tasks * 1e6:.1f}", speed
        )
    console.print(table)
    if base and len(outcomes) == 2:
        ideal = per_task_us / args.workers if args.workers <= (os.cpu_count() or 1) else per_task_us / (os.cpu_count() or 1)
        console.print(
            f"Pure compute would take ~{ideal:.0f} µs per task with {args.workers} workers on {os.cpu_count()} CPUs;"
            " the rest is queue overhead (pickling, wake-ups, copies) and the collector's checks."
        )

    # Only this run's queues (other programs may create queues meanwhile), and their side
    # segments, if any were made.
    left = set(glob.glob(f"/dev/shm/*{shmq.SEGMENT_PREFIX.rstrip('-')}*demo-{os.getpid()}-*"))
    if left:
        console.print(f"[red]queues left behind: {sorted(left)}")
        return 1
    console.print("clean-up: all children joined, no shmq segment left in /dev/shm", style="dim")
    return 0


if __name__ == "__main__":
    sys.exit(main())
