"""Broadcast example: a scheduler sends every step's work to all workers at once (one
`shmq.Broadcast`), each worker computes its shard and sends a partial result back on a
`shmq.Queue`; a worker that joins late starts with the next step.

    .venv/bin/python examples/python/broadcast.py [--workers 3] [--steps 200]

The pattern of vLLM's scheduler → GPU workers, without torch: the step's input is published
once (not once per worker), and the workers read it from shared memory.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import shmq


def worker(rank: int, world: int, bcast_name: str, results_name: str, ready: "mp.synchronize.Event") -> None:
    with shmq.Subscriber(bcast_name) as steps, shmq.Queue(results_name, create=False) as results:
        ready.set()
        while True:
            step = steps.get()
            if step is None:  # end of the job
                return
            numbers = step["numbers"]
            shard = numbers[rank::world]
            results.put((step["id"], rank, sum(x * x for x in shard)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--size", type=int, default=10_000, help="numbers per step")
    args = ap.parse_args()
    tag = f"example-{os.getpid()}"
    ctx = mp.get_context("spawn")
    with shmq.Broadcast(f"{tag}-steps", capacity="16MiB", create=True) as steps, shmq.Queue(
        f"{tag}-results", create=True
    ) as results:
        ready = [ctx.Event() for _ in range(args.workers)]
        procs = [
            ctx.Process(target=worker, args=(r, args.workers, steps.name, results.name, ready[r]))
            for r in range(args.workers)
        ]
        for p in procs:
            p.start()
        for e in ready:  # a subscriber receives what is published after it subscribed
            if not e.wait(60):
                raise SystemExit("a worker did not start")
        t0 = time.perf_counter()
        for step_id in range(args.steps):
            numbers = list(range(step_id, step_id + args.size))
            steps.publish({"id": step_id, "numbers": numbers}, timeout=30)
            total = sum(results.get(timeout=30)[2] for _ in range(args.workers))
            if total != sum(x * x for x in numbers):
                raise SystemExit(f"step {step_id}: wrong total {total}")
        elapsed = time.perf_counter() - t0
        steps.publish(None)
        for p in procs:
            p.join(30)
        print(f"{args.steps} steps of {args.size:,} numbers broadcast to {args.workers} workers: "
              f"{args.steps / elapsed:,.0f} steps/s, every total verified")
        print(f"broadcast stats: {steps.stats().published} published, {steps.stats().delivered} delivered")


if __name__ == "__main__":
    main()
