#!/usr/bin/env python3
"""shmq.compat.vllm ``MessageQueue`` throughput: 1 writer → 2 local readers, each in its own
process (spawned), with the queue's defaults (``MessageQueue(2, 2)``) unless a case says
otherwise.

Cases: a small dict (a scheduler step), a 1 MiB ``bytes`` payload (pickled in band), a 1 MiB
out-of-band buffer (a NumPy array if NumPy is installed, else a ``PickleBuffer`` over a
``bytearray``), and a 16 MiB ``bytes`` message through a 4 MiB ring (4× the ring). The
writer enqueues for ``--seconds``, then ``None``; each reader dequeues until ``None`` and
checks the order. The figure is messages per second from the writer's first ``enqueue`` to
the last reader's ``None`` (``time.monotonic`` is system-wide); median of ``--runs`` runs.

    .venv/bin/python benchmarks/bench_vllm.py                  # 3 runs of 2 s per case
    .venv/bin/python benchmarks/bench_vllm.py --cases 1mib-bytes --runs 5
    .venv/bin/python benchmarks/bench_vllm.py --impl /tmp/old_vllm.py   # another version

``--impl FILE`` benchmarks another version of the module, a single file (loaded as a module
of ``shmq.compat``): ``git show REV:python/shmq/compat/vllm.py`` of a revision before the
module became a package. To compare later versions, run the script under two builds with
``benchmarks/ab.py``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import multiprocessing as mp
import os
import pickle
import statistics
import sys
import time
import traceback
from typing import Any

CTX = mp.get_context("spawn")
MiB = 1024 * 1024
# name: (description, MessageQueue keyword arguments)
CASES: dict[str, tuple[str, dict[str, int]]] = {
    "small-dict": ("small dict (~200 B pickled)", {}),
    "1mib-bytes": ("1 MiB bytes (in band)", {}),
    "1mib-oob": ("1 MiB out-of-band buffer", {}),
    "16mib-4x-ring": ("16 MiB bytes, 4 MiB ring (4x)", {"max_chunk_bytes": MiB, "max_chunks": 4}),
}


def load(impl: str | None) -> Any:
    """The ``MessageQueue`` class: ``shmq.compat.vllm``'s, or the one of file ``impl``."""
    if impl is None:
        return importlib.import_module("shmq.compat.vllm").MessageQueue
    importlib.import_module("shmq.compat")
    spec = importlib.util.spec_from_file_location("shmq.compat._bench_impl", impl)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.MessageQueue


def make_message(case: str, oob_kind: str) -> Any:
    """A function ``i -> message i`` of the case (built once, payloads reused)."""
    if case == "small-dict":
        return lambda i: {"step": i, "req_ids": ["req-1", "req-2", "req-3"], "num_tokens": [17, 1, 1], "finished": []}
    if case == "1mib-bytes":
        payload = os.urandom(MiB)
        return lambda i: (i, payload)
    if case == "16mib-4x-ring":
        big = os.urandom(16 * MiB)
        return lambda i: (i, big)
    if oob_kind == "numpy":
        import numpy as np

        arr = np.frombuffer(os.urandom(MiB), dtype=np.uint8).copy()
        return lambda i: (i, arr)
    buf = bytearray(os.urandom(MiB))
    return lambda i: (i, pickle.PickleBuffer(buf))


def writer(conn: Any, impl: str | None, case: str, oob_kind: str, seconds: float, kwargs: dict[str, int]) -> None:
    try:
        MessageQueue = load(impl)
        mq = MessageQueue(2, 2, **kwargs)
        conn.send(pickle.dumps(mq.export_handle()))  # bytes: the parent need not load `impl`
        mq.wait_until_ready(timeout=60)
        msg = make_message(case, oob_kind)
        conn.recv()  # the readers are ready
        n = 0
        t0 = time.monotonic()
        end = t0 + seconds
        while True:
            mq.enqueue(msg(n), timeout=60)
            n += 1
            if n % 16 == 0 and time.monotonic() >= end:
                break
        mq.enqueue(None, timeout=60)
        conn.send(("ok", (t0, n)))
        conn.recv()  # the readers are done
        mq.shutdown()
    except BaseException:  # noqa: BLE001 - shown by the parent
        conn.send(("error", traceback.format_exc()))


def reader(conn: Any, impl: str | None, handle: bytes, rank: int) -> None:
    try:
        MessageQueue = load(impl)
        mq = MessageQueue.create_from_handle(pickle.loads(handle), rank)
        mq.wait_until_ready(timeout=60)
        conn.send("ready")
        n = 0
        while True:
            obj = mq.dequeue(timeout=60)
            if obj is None:
                break
            seq = obj["step"] if isinstance(obj, dict) else obj[0]
            if seq != n:
                raise AssertionError(f"message {n} arrived as {seq}")
            n += 1
        t_end = time.monotonic()
        conn.send(("ok", (t_end, n)))
        mq.shutdown()
    except BaseException:  # noqa: BLE001 - shown by the parent
        conn.send(("error", traceback.format_exc()))


def answer(conn: Any, timeout: float = 120.0) -> Any:
    if not conn.poll(timeout):
        raise RuntimeError("a child did not answer")
    status, value = conn.recv()
    if status != "ok":
        raise RuntimeError(f"a child failed:\n{value}")
    return value


def run(impl: str | None, case: str, oob_kind: str, seconds: float) -> float:
    """One run: messages per second."""
    w_conn, w_child = CTX.Pipe()
    procs = [CTX.Process(target=writer, args=(w_child, impl, case, oob_kind, seconds, CASES[case][1]))]
    procs[0].start()
    try:
        if not w_conn.poll(60):
            raise RuntimeError("the writer sent no handle")
        handle = w_conn.recv()
        conns = []
        for rank in (0, 1):
            conn, child = CTX.Pipe()
            procs.append(CTX.Process(target=reader, args=(child, impl, handle, rank)))
            procs[-1].start()
            conns.append(conn)
        for c in conns:
            if not c.poll(60) or c.recv() != "ready":
                raise RuntimeError("a reader did not get ready")
        w_conn.send("go")
        t0, sent = answer(w_conn)
        ends = [answer(c) for c in conns]
        w_conn.send("done")
        for p in procs:
            p.join(30)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    if any(n != sent for _, n in ends):
        raise RuntimeError(f"sent {sent}, readers got {[n for _, n in ends]}")
    return sent / (max(t for t, _ in ends) - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, among {', '.join(CASES)}")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="writer's sending time per run")
    ap.add_argument("--impl", help="a copy of shmq/compat/vllm/__init__.py to benchmark instead")
    ap.add_argument("--max-chunk-bytes", type=int, help="MessageQueue argument for every case")
    ap.add_argument("--max-chunks", type=int, help="MessageQueue argument for every case")
    args = ap.parse_args()
    for key in ("max_chunk_bytes", "max_chunks"):
        if getattr(args, key) is not None:
            for _, kwargs in CASES.values():
                kwargs[key] = getattr(args, key)
    try:
        import numpy  # noqa: F401

        oob_kind = "numpy"
    except ImportError:
        oob_kind = "picklebuffer"
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r}")
    print(f"shmq.compat.vllm: 1 writer -> 2 local readers (separate processes), {os.cpu_count()} CPUs, "
          f"{args.runs} runs of {args.seconds:g} s, impl={args.impl or 'shmq.compat.vllm'}, oob={oob_kind}")
    for c in cases:
        rates = [run(args.impl, c, oob_kind, args.seconds) for _ in range(args.runs)]
        runs = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"  {CASES[c][0]:<34} {statistics.median(rates):>10,.0f} msg/s   (runs: {runs})", flush=True)


if __name__ == "__main__":
    main()
