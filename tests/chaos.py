"""Chaos test: producers and consumers under load, killed with SIGKILL at random and respawned.

    python tests/chaos.py --seconds 60            # by hand, as long as you like
    python tests/chaos.py --seconds 20 --json out.json

Every message carries (producer, generation, sequence, length, CRC32 of the payload). Each
producer records, in shared memory, the highest sequence whose ``put`` *returned* (an
acknowledged put). Each consumer appends what it received to a file of its own, one
``os.write`` per batch. At the end the checker verifies:

- no corruption: every payload matches its CRC and length;
- no duplicates: no (producer, generation, sequence) is received twice (at-most-once);
- FIFO per producer: within one consumer, a producer generation's sequences increase;
- no loss of acknowledged puts beyond the documented rule: a message missing at the end was
  either taken by a consumer that was killed while taking it (counted in ``stats().lost``)
  or handed to a consumer that was killed before it could record it (at most one batch per
  consumer kill) — the report gives both numbers;
- no deadlock: a watchdog fails the run if nothing is delivered for 10 s;
- no leak: no segment of the run is left in /dev/shm.

It prints a JSON report (kills, messages checked, recovery time after each kill: the time
from the kill until the next message is delivered).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import statistics
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import shmq
import _helpers as h

HEADER = struct.Struct("<IIQII")  # producer, generation, seq, payload length, crc32
RECORD = struct.Struct("<IIQ")  # what a consumer logs: producer, generation, seq
BATCH = 64


def producer(name: str, pid_: int, gen: int, acked: Any, stop: Any) -> None:
    q = shmq.Queue(name, create=False, codec="raw")
    rng = random.Random(pid_ * 1000 + gen)
    seq = 0
    while not stop.value:
        payload = rng.randbytes(rng.randrange(0, 3000))
        msg = HEADER.pack(pid_, gen, seq, len(payload), zlib.crc32(payload)) + payload
        try:
            q.put(msg, timeout=0.5)
        except shmq.Full:
            continue
        acked[pid_] = seq  # the put returned: acknowledged
        seq += 1
    q.close()


def consumer(name: str, cid: int, log_path: str, progress: Any, stop: Any, bad: Any) -> None:
    q = shmq.Queue(name, create=False, codec="raw")
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    while not stop.value:
        try:
            msgs = q.get_many(BATCH, timeout=0.2)
        except shmq.Empty:
            continue
        out = bytearray()
        for m in msgs:
            p, g, s, n, crc = HEADER.unpack_from(m)
            payload = m[HEADER.size :]
            if len(payload) != n or zlib.crc32(payload) != crc:
                bad.value += 1
            out += RECORD.pack(p, g, s)
        os.write(fd, out)  # one write per batch: all or nothing if we are killed
        progress[cid] += len(msgs)
    os.close(fd)
    q.close()


MIN_KILLS = 10


def run(seconds: float, producers: int, consumers: int, kill_every: float, seed: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    name = f"chaos-{os.getpid()}-{random.randrange(1 << 30)}"
    rng = random.Random(seed)
    q = shmq.Queue(name, create=True, capacity="256KiB", codec="raw")
    # Producers and consumers stop separately: consumers must keep draining after the
    # producers stopped (with one flag they left too, and the drain found nobody to drain).
    stop = ctx.Value("b", 0, lock=False)
    stop_consumers = ctx.Value("b", 0, lock=False)
    bad = ctx.Value("q", 0, lock=False)
    acked = ctx.Array("q", [-1] * producers, lock=False)
    progress = ctx.Array("q", [0] * consumers, lock=False)
    tmp = Path(tempfile.mkdtemp(prefix="shmq-chaos-"))
    acked_by_gen: dict[tuple[int, int], int] = {}
    gens = {("p", i): 0 for i in range(producers)} | {("c", i): 0 for i in range(consumers)}
    procs: dict[tuple[str, int], Any] = {}
    consumer_kills = 0

    def start(role: str, i: int) -> None:
        gen = gens[(role, i)]
        if role == "p":
            acked[i] = -1
            p = ctx.Process(target=producer, args=(name, i, gen, acked, stop), daemon=True)
        else:
            log = str(tmp / f"c{i}-g{gen}.log")
            p = ctx.Process(target=consumer, args=(name, i, log, progress, stop_consumers, bad), daemon=True)
        p.start()
        procs[(role, i)] = p

    for key in gens:
        start(*key)
    recoveries: list[float] = []
    kills = 0
    deadline = time.monotonic() + seconds
    last_progress, last_change = 0, time.monotonic()
    hard_end = deadline + max(60.0, seconds)
    try:
        # At least MIN_KILLS kills however slow the machine: past the deadline the run goes on
        # (to a hard end) until it has them.
        while time.monotonic() < deadline or (kills < MIN_KILLS and time.monotonic() < hard_end):
            time.sleep(rng.uniform(0.5, 1.5) * kill_every)
            role, i = rng.choice(list(procs))
            victim = procs[(role, i)]
            before = sum(progress)
            t0 = time.monotonic()
            os.kill(victim.pid, signal.SIGKILL)
            victim.join(5)
            # Recovery: until the survivors deliver again (watchdog: 10 s). A consumer's
            # progress shows once per batch, so this is an upper bound.
            while sum(progress) == before:
                if time.monotonic() - t0 > 10:
                    raise AssertionError(f"deadlock: no delivery for 10 s after killing {role}{i}")
                time.sleep(0.0002)
            recoveries.append(time.monotonic() - t0)
            kills += 1
            if role == "p":
                acked_by_gen[(i, gens[("p", i)])] = acked[i]
            else:
                consumer_kills += 1
            gens[(role, i)] += 1
            start(role, i)
            now_progress = sum(progress)
            if now_progress != last_progress:
                last_progress, last_change = now_progress, time.monotonic()
            elif time.monotonic() - last_change > 10:
                raise AssertionError("deadlock: no progress for 10 s")
        # Stop producers first, then let consumers drain.
        stop.value = 1
        for (role, i), p in procs.items():
            if role == "p":
                p.join(10)
                acked_by_gen[(i, gens[("p", i)])] = acked[i]
        for (role, i), p in procs.items():
            if role == "p" and p.is_alive():
                raise AssertionError(f"producer {i} did not stop")
        # Drained when nothing is reserved and unconsumed (head == tail) and qsize() agrees: a
        # dead producer's unrepaired reservation at the head hides the messages behind it from
        # qsize() until a consumer notices it (within milliseconds) and repairs it.
        drain_end = time.monotonic() + 10

        def drained() -> bool:
            s = q.stats()
            return s.head == s.tail and q.qsize() == 0

        while not drained() and time.monotonic() < drain_end:
            time.sleep(0.01)
        stop_consumers.value = 1
        for (role, i), p in procs.items():
            if role == "c":
                p.join(10)
                if p.is_alive():
                    raise AssertionError(f"consumer {i} did not stop")
        stats = q.stats()
        final_qsize = q.qsize()
    finally:
        for p in procs.values():
            if p.is_alive():
                p.kill()
                p.join(5)
        q.close()

    received: dict[tuple[int, int, int], int] = {}
    fifo_violations = 0
    for log in sorted(tmp.glob("*.log")):
        data = log.read_bytes()
        data = data[: len(data) - len(data) % RECORD.size]
        last: dict[tuple[int, int], int] = {}
        for p, g, s in RECORD.iter_unpack(data):
            received[(p, g, s)] = received.get((p, g, s), 0) + 1
            if last.get((p, g), -1) >= s:
                fifo_violations += 1
            last[(p, g)] = s
        log.unlink()
    tmp.rmdir()
    duplicates = sum(n - 1 for n in received.values() if n > 1)
    missing = sum(
        1 for (p, g), top in acked_by_gen.items() for s in range(top + 1) if (p, g, s) not in received
    )
    # Kept on purpose (a killed child's pickled handle never arrived, so it stays in flight
    # until its grace passes): removed by name, with its side segments; anything else is a leak.
    leaked = [n for n in shmq.list_queues() if n == name and not h.kept_by_design(shmq.SEGMENT_PREFIX + n)]
    shmq.remove(name)
    report = {
        "seconds": seconds,
        "producers": producers,
        "consumers": consumers,
        "kills": kills,
        "consumer_kills": consumer_kills,
        "messages_checked": len(received),
        "acknowledged_puts": sum(top + 1 for top in acked_by_gen.values()),
        "corrupted": bad.value,
        "duplicates": duplicates,
        "fifo_violations": fifo_violations,
        "missing_acknowledged": missing,
        "lost_counted_by_queue": stats.lost,
        "abandoned_puts_repaired": stats.abandoned,
        "dead_processes_reaped": stats.reaped,
        "missing_allowed": stats.lost + consumer_kills * BATCH,
        "recovery_ms_median": round(statistics.median(recoveries) * 1e3, 2) if recoveries else None,
        "recovery_ms_max": round(max(recoveries) * 1e3, 2) if recoveries else None,
        "leaked_segments": leaked,
        "final_qsize": final_qsize,
        "final_head_minus_tail": stats.tail - stats.head,
    }
    return report


def check(report: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("corrupted", "duplicates", "fifo_violations"):
        if report[key]:
            problems.append(f"{key}: {report[key]}")
    if report["missing_acknowledged"] > report["missing_allowed"]:
        problems.append(
            f"lost acknowledged puts: {report['missing_acknowledged']} missing, "
            f"at most {report['missing_allowed']} allowed"
        )
    # Depth converges to the truth once the dust settles (it used to drift for good after kills:
    # `puts - gets` lost increments of processes killed between a record and its counter).
    if report["final_qsize"] != 0 or report["final_head_minus_tail"] != 0:
        problems.append(
            f"not drained: qsize() {report['final_qsize']}, tail - head {report['final_head_minus_tail']}"
        )
    if report["leaked_segments"]:
        problems.append(f"leaked segments: {report['leaked_segments']}")
    if report["kills"] == 0 or report["messages_checked"] == 0:
        problems.append("nothing happened")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SHMQ_CHAOS_SECONDS", 20)))
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--consumers", type=int, default=2)
    ap.add_argument("--kill-every", type=float, default=0.15, help="mean seconds between kills")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    report = run(args.seconds, args.producers, args.consumers, args.kill_every, args.seed)
    report["seed"] = args.seed
    report["problems"] = check(report)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
