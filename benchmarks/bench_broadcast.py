#!/usr/bin/env python3
"""Broadcast benchmark: shmq.Broadcast (1 publisher → N subscriber processes) vs pyzmq PUB/SUB.

Every subscriber checks every message it gets (a sequence number in the first 8 bytes) and
reports how many it got, how many it missed, duplicates / out-of-order messages (must be 0)
and its own time from its first to its last message. The figure is messages per second per
subscriber: the median over the subscribers of a run, then the median over runs. Variants
are interleaved (the order rotates from one run to the next).

    .venv/bin/python benchmarks/bench_broadcast.py            # full run (5 runs per cell)
    .venv/bin/python benchmarks/bench_broadcast.py --quick    # 1 short run per cell
    .venv/bin/python benchmarks/bench_broadcast.py --runs 3 --json out.json

See benchmarks/README.md ("Broadcast") for the method and the latest results.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import glob
import json
import multiprocessing as mp
import os
import platform
import queue as _queue
import resource
import secrets
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from array import array
from dataclasses import dataclass
from typing import Any, Callable

import shmq

try:
    import zmq
except ImportError:  # pragma: no cover - reported in the output
    zmq = None  # type: ignore[assignment]

CTX = mp.get_context("fork")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMALL = 64
BIG = 1 << 20
CAPACITY = shmq.DEFAULT_CAPACITY  # 4 MiB: three 1 MiB messages fit
SEQ = struct.Struct("<Q")
FIRST = struct.Struct("B")
END = b"E"  # END + 8-byte count of messages sent: 9 bytes, never a payload size
PROBE = b"P"  # pyzmq only: sent until every subscriber has seen one (slow-joiner problem)

# 64 B messages come from a pool of prebuilt `bytes` (no per-message work in the publisher's
# Python loop): message i is POOL[i % 65536] and carries i % 65536, so the subscribers check
# the sequence modulo 65536. 1 MiB messages cycle through DISTINCT bytearrays (distinct
# memory, as a real producer's fresh data), whose first 8 bytes get the full 64-bit sequence
# number before each publish (shmq and pyzmq both copy it).
POOL = 1 << 16
DISTINCT = 16
BATCH = {SMALL: 256, BIG: 2}  # messages per publish_many
CHUNK = {SMALL: 4096, BIG: 4}  # messages between two looks at the clock in the publisher
GET_MANY = 1000  # most messages per get_many
RUN_TIMEOUT = 60.0  # a run taking longer than --seconds + this fails (children killed)


@dataclass(frozen=True)
class Variant:
    key: str
    title: str
    lib: str  # "shmq" or "pyzmq"
    policy: str = "block"  # shmq: block/lag
    batched: bool = False  # shmq: publish_many + get_many
    transport: str = "ipc"  # pyzmq: ipc/tcp
    nodrop: bool = False  # pyzmq: XPUB with ZMQ_XPUB_NODROP (publisher blocks at the HWM)
    view: bool = False  # shmq: get(copy=False), a zero-copy view into the ring

    @property
    def lossless(self) -> bool:
        return (self.lib == "shmq" and self.policy == "block") or self.nodrop


VARIANTS = [
    Variant("shmq-block", "shmq block, publish/get", "shmq"),
    Variant("shmq-block-batch", "shmq block, publish_many/get_many", "shmq", batched=True),
    Variant("shmq-block-view", "shmq block, publish/get(copy=False)", "shmq", view=True),
    Variant("shmq-lag", "shmq lag, publish/get", "shmq", policy="lag"),
    Variant("shmq-lag-batch", "shmq lag, publish_many/get_many", "shmq", policy="lag", batched=True),
    Variant("zmq-ipc", "pyzmq PUB/SUB ipc://", "pyzmq"),
    Variant("zmq-tcp", "pyzmq PUB/SUB tcp 127.0.0.1", "pyzmq", transport="tcp"),
    Variant("zmq-ipc-nodrop", "pyzmq XPUB(nodrop)/SUB ipc://", "pyzmq", nodrop=True),
]
REFERENCE = "zmq-ipc"
# Targets of issue 4 (shmq, block policy, per subscriber, 1 → 3, zero loss).
TARGETS = {SMALL: 1e6, BIG: 1e4}


class RunError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# Children (forked). Each reports on `ctl`: ("ready"|"ok"|"error", role, payload).


def _child(ctl: Any, role: str, body: Callable[[], Any]) -> None:
    try:
        ctl.put(("ok", role, body()))
    except BaseException:  # noqa: BLE001 - everything goes to the parent
        ctl.put(("error", role, traceback.format_exc()))
    finally:
        ctl.close()
        ctl.join_thread()


def _usage() -> tuple[float, float, int, int, int]:
    """CPU seconds (user, system), context switches (voluntary, involuntary) and minor page
    faults of this process, every thread included (pyzmq's I/O thread too)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_nvcsw, r.ru_nivcsw, r.ru_minflt


def _delta(before: tuple[float, float, int, int, int]) -> list[float]:
    return [b - a for a, b in zip(before, _usage())]


def _small_pool() -> tuple[list[bytes], int]:
    pad = b"\xab" * (SMALL - 8)
    return [SEQ.pack(i) + pad for i in range(POOL)], POOL - 1


def _publish_loop(size: int, batched: bool, one: Callable[[Any], Any], many: Callable[[Any], Any] | None,
                  seconds: float) -> tuple[int, float, float]:
    """Publishes for `seconds` (whole chunks); returns (sent, t0, t1)."""
    chunk = CHUNK[size]
    sent = 0
    if size == SMALL:
        pool, mask = _small_pool()
        if batched:
            b = BATCH[SMALL]
            batches = [pool[k : k + b] for k in range(0, POOL, b)]
            bmask = len(batches) - 1

            def step(start: int) -> None:
                for j in range(start // b, (start + chunk) // b):
                    many(batches[j & bmask])  # type: ignore[misc]
        else:

            def step(start: int) -> None:
                for i in range(start, start + chunk):
                    one(pool[i & mask])
    else:
        pack_into = SEQ.pack_into
        # DISTINCT buffers cycled (one hot buffer would stay in cache and flatter the copy).
        pool_big = [bytearray(bytes([1 + k]) * size) for k in range(DISTINCT)]
        if batched:
            b = BATCH[BIG]

            def step(start: int) -> None:
                for i in range(start, start + chunk, b):
                    bufs = [pool_big[(i + k) % DISTINCT] for k in range(b)]
                    for k, buf in enumerate(bufs):
                        pack_into(buf, 0, i + k)
                    many(bufs)  # type: ignore[misc]
        else:

            def step(start: int) -> None:
                for i in range(start, start + chunk):
                    buf = pool_big[i % DISTINCT]
                    pack_into(buf, 0, i)
                    one(buf)

    clock = time.perf_counter
    t0 = clock()
    end = t0 + seconds
    while True:
        step(sent)
        sent += chunk
        if clock() >= end:
            break
    return sent, t0, clock()


def _pub_shmq(bc: Any, ctl: Any, go: Any, done: Any, v: Variant, size: int, seconds: float) -> None:
    def body() -> tuple[int, float, float, list[float]]:
        try:
            ctl.put(("ready", "publisher", None))
            if not go.wait(RUN_TIMEOUT):
                raise RunError("never got the go signal")
            u0 = _usage()
            sent, t0, t1 = _publish_loop(size, v.batched, bc.publish, bc.publish_many, seconds)
            out = (sent, t0, t1, _delta(u0))
            end = END + SEQ.pack(sent)
            while True:  # one END is enough for shmq; repeated as for pyzmq, until all are done
                try:
                    bc.publish(end, timeout=0.5)
                except shmq.Full:
                    pass
                if done.wait(0.0005):
                    break
            return out
        finally:
            bc.close()

    _child(ctl, "publisher", body)


def _zmq_endpoint(v: Variant) -> str:
    if v.transport == "tcp":
        return "tcp://127.0.0.1"
    return f"ipc://{tempfile.gettempdir()}/shmq-bench-{os.getpid()}-{secrets.token_hex(4)}.sock"


def _pub_zmq(endpoint: str, ctl: Any, go: Any, done: Any, v: Variant, size: int, seconds: float) -> None:
    def body() -> tuple[int, float, float, list[float]]:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.XPUB if v.nodrop else zmq.PUB)
        sock.linger = 0
        try:
            if v.nodrop:
                sock.setsockopt(zmq.XPUB_NODROP, 1)
            if endpoint.startswith("tcp"):
                port = sock.bind_to_random_port(endpoint)
                addr = f"{endpoint}:{port}"
            else:
                sock.bind(endpoint)
                addr = endpoint
            ctl.put(("ready", "publisher", addr))
            # Probes until the parent says go (= every subscriber has received one).
            t_limit = time.monotonic() + RUN_TIMEOUT
            while not go.wait(0.001):
                try:
                    sock.send(PROBE, zmq.NOBLOCK)
                except zmq.Again:
                    pass
                if time.monotonic() > t_limit:
                    raise RunError("never got the go signal")
            send = sock.send
            u0 = _usage()
            sent, t0, t1 = _publish_loop(size, False, send, None, seconds)
            out = (sent, t0, t1, _delta(u0))
            end = END + SEQ.pack(sent)
            while True:  # PUB drops at the HWM: repeat END until every subscriber is done
                try:
                    sock.send(end, zmq.NOBLOCK)
                except zmq.Again:
                    pass
                if done.wait(0.0005):
                    break
            return out
        finally:
            sock.close(0)
            ctx.term()
            if endpoint.startswith("ipc://"):
                try:
                    os.unlink(endpoint[len("ipc://") :])
                except OSError:
                    pass

    _child(ctl, "publisher", body)


def _consume(recv: Callable[[], Any], recv_many: Callable[[], list[Any]] | None, size: int, mask: int,
             lagged: type[BaseException]) -> dict[str, Any]:
    """Reads until END; checks every message's sequence number (modulo mask + 1)."""
    unpack = SEQ.unpack_from
    first_byte = FIRST.unpack_from  # any buffer (a MessageView has no indexing)
    clock = time.perf_counter
    half = (mask + 1) // 2
    exp = 0  # next expected sequence number (mod mask + 1)
    n = gaps = disorder = missed = 0
    t_first = 0.0
    sent = -1
    vector = recv_many is not None and size == SMALL
    words = size // 8
    join = b"".join

    def check(m: Any) -> None:
        nonlocal exp, gaps, disorder
        s = unpack(m)[0]
        if s != exp:
            d = (s - exp) & mask
            if d < half:
                gaps += d  # messages skipped (pyzmq drops them silently)
            else:
                disorder += 1  # a step back: duplicate or out of order
        exp = (s + 1) & mask

    while True:
        try:
            if recv_many is None:
                if not n:  # first data message: starts the clock
                    while True:
                        m = recv()
                        if len(m) == size:
                            break
                        if len(m) == 9 and first_byte(m)[0] == 69:
                            return _sub_result(0, 0, 0, missed, clock(), clock(), unpack(m, 1)[0])
                    t_first = clock()
                    check(m)
                    n = 1
                while True:
                    m = recv()
                    if len(m) == size:
                        s = unpack(m)[0]
                        if s != exp:
                            d = (s - exp) & mask
                            if d < half:
                                gaps += d
                            else:
                                disorder += 1
                        exp = (s + 1) & mask
                        n += 1
                    elif len(m) == 9 and first_byte(m)[0] == 69:
                        return _sub_result(n, gaps, disorder, missed, t_first, clock(), unpack(m, 1)[0])
            else:
                while True:
                    items = recv_many()
                    if not t_first:
                        t_first = clock()
                    k = len(items)
                    if vector and exp + k <= mask + 1:
                        blob = join(items)
                        if len(blob) == k * size:  # only data messages (END/probe are shorter)
                            seqs = memoryview(blob).cast("Q")[::words]
                            if seqs == memoryview(array("Q", range(exp, exp + k))):
                                exp = (exp + k) & mask
                                n += k
                                continue
                    for m in items:  # per message: END, or a gap / disorder to count
                        if len(m) == size:
                            check(m)
                            n += 1
                        elif len(m) == 9 and first_byte(m)[0] == 69:
                            return _sub_result(n, gaps, disorder, missed, t_first, clock(), unpack(m, 1)[0])
        except lagged as e:  # shmq lag policy: the ring moved on without us
            missed += e.missed  # type: ignore[attr-defined]
            exp = (exp + e.missed) & mask  # type: ignore[attr-defined]
            if not t_first:
                t_first = clock()


def _sub_result(n: int, gaps: int, disorder: int, missed: int, t0: float, t1: float, sent: int) -> dict[str, Any]:
    return {"received": n, "gaps": gaps, "disorder": disorder, "lagged_missed": missed, "t_first": t0,
            "t_end": t1, "sent": sent}


class _NeverRaised(Exception):
    pass


def _sub_shmq(name: str, ctl: Any, v: Variant, size: int) -> None:
    def body() -> dict[str, Any]:
        sub = shmq.Subscriber(name)
        try:
            ctl.put(("ready", "subscriber", None))
            mask = POOL - 1 if size == SMALL else (1 << 64) - 1
            get_many = None
            if v.batched:
                gm = sub.get_many
                get_many = lambda: gm(GET_MANY)  # noqa: E731
            recv: Callable[[], Any] = sub.get
            if v.view:
                # The MessageView itself, not a memoryview of it: `_consume` reads it through
                # struct, whose buffer is released at once, so its record goes at the next
                # read (a `memoryview` kept in `m` across the next get keeps its record held
                # meanwhile: it works, at the cost of a release per message).
                g = sub.get
                recv = lambda: g(copy=False)  # noqa: E731
            u0 = _usage()
            out = _consume(recv, get_many, size, mask, shmq.Lagged)
            out["usage"] = _delta(u0)
            return out
        finally:
            sub.close()

    _child(ctl, "subscriber", body)


def _sub_zmq(endpoint: str, ctl: Any, v: Variant, size: int) -> None:
    def body() -> dict[str, Any]:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.linger = 0
        try:
            sock.connect(endpoint)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            if not sock.poll(int(RUN_TIMEOUT * 1000)):
                raise RunError("no probe from the publisher")
            sock.recv()
            ctl.put(("ready", "subscriber", None))
            mask = POOL - 1 if size == SMALL else (1 << 64) - 1
            recv: Callable[[], Any]
            if size == BIG:  # zero-copy receive: the best pyzmq offers for big messages
                r = sock.recv
                recv = lambda: r(copy=False).buffer  # noqa: E731
            else:
                recv = sock.recv
            u0 = _usage()
            out = _consume(recv, None, size, mask, _NeverRaised)
            out["usage"] = _delta(u0)
            return out
        finally:
            sock.close(0)
            ctx.term()

    _child(ctl, "subscriber", body)


# --------------------------------------------------------------------------------------------
# Parent


def _collect(ctl: Any, what: str, count: int, procs: list[Any], deadline: float) -> list[tuple[str, Any]]:
    got: list[tuple[str, Any]] = []
    while len(got) < count:
        try:
            kind, role, out = ctl.get(timeout=0.2)
        except _queue.Empty:
            if time.monotonic() > deadline:
                raise RunError(f"timed out waiting for {what} ({len(got)}/{count})") from None
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RunError(f"a child died (exit code {dead[0].exitcode}) before {what}") from None
            continue
        if kind == "error":
            raise RunError(f"{role} failed:\n{out}")
        if kind == what:
            got.append((role, out))
    return got


def _finish(procs: list[Any], ok: bool) -> None:
    for p in procs:
        p.join(10 if ok else 1)
        if p.is_alive():
            p.terminate()
            p.join(3)
            if p.is_alive():
                p.kill()
                p.join(3)


def run_once(v: Variant, size: int, nsubs: int, seconds: float) -> dict[str, Any]:
    ctl = CTX.Queue()
    go, done = CTX.Event(), CTX.Event()
    procs: list[Any] = []
    bc = None
    ok = False
    deadline = time.monotonic() + seconds + RUN_TIMEOUT
    try:
        if v.lib == "shmq":
            bc = shmq.Broadcast(capacity=CAPACITY, policy=v.policy, codec="raw")
            pub = CTX.Process(target=_pub_shmq, args=(bc, ctl, go, done, v, size, seconds), daemon=True)
            procs.append(pub)
            pub.start()
            _collect(ctl, "ready", 1, procs, deadline)
            for _ in range(nsubs):
                procs.append(CTX.Process(target=_sub_shmq, args=(bc.name, ctl, v, size), daemon=True))
                procs[-1].start()
        else:
            pub = CTX.Process(target=_pub_zmq, args=(_zmq_endpoint(v), ctl, go, done, v, size, seconds), daemon=True)
            procs.append(pub)
            pub.start()
            ((_, addr),) = _collect(ctl, "ready", 1, procs, deadline)
            for _ in range(nsubs):
                procs.append(CTX.Process(target=_sub_zmq, args=(addr, ctl, v, size), daemon=True))
                procs[-1].start()
        _collect(ctl, "ready", nsubs, procs, deadline)
        go.set()
        subs = [out for _, out in _collect(ctl, "ok", nsubs, procs, deadline)]
        done.set()
        ((_, (sent, t0, t1, pub_usage)),) = _collect(ctl, "ok", 1, procs, deadline)
        ok = True
    finally:
        done.set()
        _finish(procs, ok)
        if bc is not None:
            try:
                bc.unlink()
            except Exception:  # noqa: BLE001 - already gone
                pass
            bc.close()
        ctl.close()
        ctl.join_thread()
    rates = []
    for s in subs:
        if s["sent"] != sent:
            raise RunError(f"END says {s['sent']} sent, publisher says {sent}")
        s["lost"] = sent - s["received"]
        el = s["t_end"] - s["t_first"]
        s["rate"] = (s["received"] - 1) / el if el > 0 and s["received"] > 1 else 0.0
        rates.append(s["rate"])
    sub_cpu = [(s["usage"][0] + s["usage"][1]) / max(s["received"], 1) * 1e6 for s in subs]
    sub_sys = [s["usage"][1] / max(s["usage"][0] + s["usage"][1], 1e-9) for s in subs]
    return {
        "sent": sent,
        "pub_rate": sent / (t1 - t0),
        # CPU µs per message (user + system), share of system time, voluntary context switches
        # per 1000 messages: where the time goes (see --cpu).
        "pub_cpu_us": (pub_usage[0] + pub_usage[1]) / sent * 1e6,
        "pub_sys": pub_usage[1] / max(pub_usage[0] + pub_usage[1], 1e-9),
        "pub_vcsw_k": pub_usage[2] / sent * 1e3,
        "pub_busy": (pub_usage[0] + pub_usage[1]) / (t1 - t0),
        "pub_faults": pub_usage[4] / sent,
        "sub_faults": statistics.median(s["usage"][4] / max(s["received"], 1) for s in subs),
        "sub_cpu_us": statistics.median(sub_cpu),
        "sub_sys": statistics.median(sub_sys),
        "sub_vcsw_k": statistics.median(s["usage"][2] / max(s["received"], 1) * 1e3 for s in subs),
        "sub_busy": statistics.median((s["usage"][0] + s["usage"][1]) / max(s["t_end"] - s["t_first"], 1e-9)
                                      for s in subs),
        "rate": statistics.median(rates),
        "subs": subs,
        "loss_pct": 100.0 * sum(s["lost"] for s in subs) / (sent * nsubs),
        # pyzmq PUB/SUB drops silently, in runs that may exceed half the 64 B pool (65536):
        # then a gap looks like a step back, so steps back are not errors there. Its loss is
        # counted exactly all the same (sent − received).
        "seq_checked": v.lossless or v.lib == "shmq" or size != SMALL,
        "disorder": sum(s["disorder"] for s in subs),
        # shmq: every lost message must be announced by Lagged (missed); pyzmq: not applicable.
        "unexplained": sum(s["lost"] - s["lagged_missed"] for s in subs) if v.lib == "shmq" else 0,
    }


# --------------------------------------------------------------------------------------------
# Reporting


def fmt_rate(r: float) -> str:
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if r >= div:
            x = r / div
            return f"{x:.2f} {unit}/s" if x < 100 else f"{x:.0f} {unit}/s"
    return f"{r:.0f} /s"


def fmt_size(size: int) -> str:
    return "1 MiB" if size == BIG else f"{size} B"


def machine_info() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "shmq": f"{shmq.__version__} ({commit})",
        "pyzmq": f"{zmq.__version__} (libzmq {zmq.zmq_version()})" if zmq else "not installed",
        "loadavg_before": os.getloadavg(),
    }


def render(results: dict[tuple[int, int, str], list[dict[str, Any]]], errors: dict[tuple[int, int, str], str],
           sizes: list[int], fanouts: list[int], variants: list[Variant]) -> list[str]:
    lines = [
        "| payload | subscribers | library, mode | msg/s per subscriber | min … max | vs pyzmq ipc | vs 1→1 |"
        " loss | publisher msg/s | dup/ooo | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    target_lines = []

    def med(key: tuple[int, int, str], field: str) -> float | None:
        runs = results.get(key)
        return statistics.median(r[field] for r in runs) if runs else None

    for size in sizes:
        for nsubs in fanouts:
            ref = med((size, nsubs, REFERENCE), "rate")
            for v in variants:
                key = (size, nsubs, v.key)
                runs = results.get(key)
                head = f"| {fmt_size(size)} | 1→{nsubs} | {v.title} |"
                if not runs:
                    lines.append(head + f" failed: {errors.get(key, 'no run')[:60]!r} | | | | | | | |")
                    continue
                rate = med(key, "rate")
                assert rate is not None
                all_rates = [s["rate"] for r in runs for s in r["subs"]]
                bw = f" ({rate * size / 2**30:.1f} GiB/s)" if size == BIG else ""
                ratio = f"{rate / ref:.1f}×" if ref else ""
                one = med((size, 1, v.key), "rate") if nsubs != 1 else None
                vs1 = f"{rate / one:.2f}" if one else ""
                loss = med(key, "loss_pct")
                assert loss is not None
                worst = max(r["loss_pct"] for r in runs)
                loss_s = "0" if worst == 0 else f"{loss:.2g} %" + (f" (max {worst:.2g} %)" if loss == 0 else "")
                dis = str(sum(r["disorder"] for r in runs)) if all(r["seq_checked"] for r in runs) else "n/a¹"
                tgt = ""
                if v.lib == "shmq" and v.policy == "block" and nsubs == 3:
                    want = TARGETS[size]
                    lossless = all(r["loss_pct"] == 0 for r in runs)
                    met = rate >= want and lossless
                    tgt = f"≥ {fmt_rate(want)}: " + ("✔ met" if met else "✘ not met")
                    how = "" if met else f" ({rate / want:.0%} of target{'' if lossless else ', LOSS'})"
                    target_lines.append(
                        f"target {fmt_size(size)} 1→3 {v.title}: {fmt_rate(rate)} per subscriber, loss "
                        f"{loss_s} → {'met' if met else 'NOT met'}{how}"
                    )
                lines.append(
                    f"{head} **{fmt_rate(rate)}**{bw} | {fmt_rate(min(all_rates))} … {fmt_rate(max(all_rates))} |"
                    f" {ratio} | {vs1} | {loss_s} | {fmt_rate(med(key, 'pub_rate') or 0)} | {dis} | {tgt} |"
                )
    return lines + [""] + target_lines


def render_cpu(results: dict[tuple[int, int, str], list[dict[str, Any]]], sizes: list[int], fanouts: list[int],
               variants: list[Variant]) -> list[str]:
    """Where the time goes: CPU per message and context switches, publisher and subscribers."""
    lines = [
        "| payload | subscribers | library, mode | publisher CPU/msg | (sys) | busy | csw/1k msg |"
        " subscriber CPU/msg | (sys) | busy | csw/1k msg | page faults/msg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        for nsubs in fanouts:
            for v in variants:
                runs = results.get((size, nsubs, v.key))
                if not runs:
                    continue

                def m(f: str) -> float:
                    return float(statistics.median(r[f] for r in runs))  # noqa: B023

                lines.append(
                    f"| {fmt_size(size)} | 1→{nsubs} | {v.title} | {m('pub_cpu_us'):.3g} µs | {m('pub_sys'):.0%} |"
                    f" {m('pub_busy'):.0%} | {m('pub_vcsw_k'):.3g} | {m('sub_cpu_us'):.3g} µs | {m('sub_sys'):.0%} |"
                    f" {m('sub_busy'):.0%} | {m('sub_vcsw_k'):.3g} | {m('sub_faults'):.3g} |"
                )
    return lines


def shm_segments() -> set[str]:
    return set(glob.glob(f"/dev/shm/{shmq.SEGMENT_PREFIX}*"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per cell (median; default 5)")
    ap.add_argument("--seconds", type=float, default=0.5, help="publishing time of one run (default 0.5 s)")
    ap.add_argument("--quick", action="store_true", help="1 run of 0.15 s per cell, no warm-up")
    ap.add_argument("--variants", help="comma-separated: " + ",".join(v.key for v in VARIANTS))
    ap.add_argument("--sizes", default="64,1MiB", help="payloads (default 64,1MiB)")
    ap.add_argument("--fanout", default="1,3", help="subscriber counts (default 1,3)")
    ap.add_argument("--cpu", action="store_true", help="also print CPU per message and context switches")
    ap.add_argument("--capacity", default="4MiB", help="shmq ring size (default 4MiB)")
    ap.add_argument("--json", metavar="PATH", help="write every run's raw results as JSON")
    args = ap.parse_args(argv)
    global CAPACITY
    CAPACITY = shmq.parse_size(args.capacity)
    if args.quick:
        args.runs = 1
        args.seconds = min(args.seconds, 0.15)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    sizes = [shmq.parse_size(s) for s in args.sizes.split(",")]
    if set(sizes) - {SMALL, BIG}:
        ap.error("sizes: 64 and/or 1MiB")
    fanouts = [int(x) for x in args.fanout.split(",")]
    variants = VARIANTS
    if args.variants:
        keys = args.variants.split(",")
        if set(keys) - {v.key for v in VARIANTS}:
            ap.error(f"unknown variants: {sorted(set(keys) - {v.key for v in VARIANTS})}")
        variants = [v for v in VARIANTS if v.key in keys]
    if zmq is None:
        print("pyzmq is not installed (.venv/bin/python -m pip install pyzmq): skipping it", file=sys.stderr)
        variants = [v for v in variants if v.lib != "pyzmq"]

    info = machine_info()
    print(f"machine: {info['nproc']} CPUs ({info['cpus_usable']} usable), {info['cpu_model']}, Linux {info['kernel']}")
    print(f"versions: Python {info['python']}, shmq {info['shmq']}, pyzmq {info['pyzmq']}; fork; {info['date']}")
    print(f"load average before the run: {' '.join(f'{x:.2f}' for x in info['loadavg_before'])}")
    print(f"method: 1 publisher → N subscriber processes, {args.runs} interleaved run(s) of {args.seconds} s "
          f"publishing per cell; shmq ring {CAPACITY >> 20} MiB, pyzmq default HWM (1000)")
    before = shm_segments()
    results: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
    errors: dict[tuple[int, int, str], str] = {}
    t_start = time.monotonic()
    rotation = 0
    try:
        for size in sizes:
            for nsubs in fanouts:
                if not args.quick:  # warm-up (page faults, imports, first-run effects): discarded
                    for v in variants:
                        try:
                            run_once(v, size, nsubs, min(0.1, args.seconds))
                        except RunError as e:
                            print(f"  warm-up {fmt_size(size)} 1→{nsubs} {v.key}: {e}", file=sys.stderr)
                for _ in range(args.runs):
                    k = rotation % len(variants)
                    rotation += 1
                    for v in variants[k:] + variants[:k]:
                        key = (size, nsubs, v.key)
                        try:
                            results.setdefault(key, []).append(run_once(v, size, nsubs, args.seconds))
                        except RunError as e:
                            errors[key] = str(e)
                            print(f"  {fmt_size(size)} 1→{nsubs} {v.key}: run failed: {e}", file=sys.stderr)
                summary = ", ".join(
                    f"{v.key} {fmt_rate(statistics.median(r['rate'] for r in results[(size, nsubs, v.key)]))}"
                    for v in variants if results.get((size, nsubs, v.key))
                )
                print(f"[{time.monotonic() - t_start:5.1f} s] {fmt_size(size)} 1→{nsubs}: {summary}",
                      file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted: partial results", file=sys.stderr)
    elapsed = time.monotonic() - t_start
    load_after = os.getloadavg()
    print()
    print("\n".join(render(results, errors, sizes, fanouts, variants)))
    print()
    print("msg/s per subscriber: (messages received − 1) ÷ its time from first to last message; median over the"
          " subscribers of a run, then over runs. min … max: every subscriber of every run.")
    print("loss: messages sent but not received, % of sent × subscribers (median over runs); dup/ooo: duplicates"
          " or out-of-order messages seen, summed over runs (must be 0). vs 1→1: this row ÷ the same mode with"
          " one subscriber.")
    if any(not r["seq_checked"] for runs in results.values() for r in runs):
        print("¹ pyzmq PUB/SUB, 64 B: it drops runs of messages longer than the 65536-message sequence space of"
              " the 64 B pool, so a step back cannot be told from a gap; loss is exact (sent − received).")
    if args.cpu:
        print()
        print("\n".join(render_cpu(results, sizes, fanouts, variants)))
        print("CPU/msg: user + system CPU time of the process ÷ messages it published or received (median);"
              " busy: CPU time ÷ its wall time; csw: voluntary context switches (sleeps); page faults:"
              " minor faults of a subscriber per message received (a fresh 1 MiB buffer costs 256).")
    print(f"load average after the run: {' '.join(f'{x:.2f}' for x in load_after)}; total time {elapsed:.0f} s")
    bad = [f"{fmt_size(k[0])} 1→{k[1]} {k[2]}: {r['disorder']} dup/ooo, {r['unexplained']} unexplained losses"
           for k, runs in results.items() for r in runs if (r["seq_checked"] and r["disorder"]) or r["unexplained"]]
    bad += [f"{fmt_size(k[0])} 1→{k[1]} {k[2]}: loss in a lossless mode ({r['loss_pct']:.3g} %)"
            for k, runs in results.items() for r in runs
            if r["loss_pct"] and next(v for v in VARIANTS if v.key == k[2]).lossless]
    for b in bad:
        print(f"ERROR: {b}")
    left = shm_segments() - before
    if left:
        print(f"WARNING: segments left in /dev/shm: {sorted(left)}", file=sys.stderr)
    else:
        print(f"clean-up: no {shmq.SEGMENT_PREFIX}* segment left in /dev/shm")
    if args.json:
        out = {"machine": info, "load_after": load_after, "args": vars(args), "elapsed_s": elapsed,
               "results": {f"{fmt_size(k[0])} 1->{k[1]} {k[2]}": v for k, v in results.items()},
               "errors": {f"{fmt_size(k[0])} 1->{k[1]} {k[2]}": v for k, v in errors.items()}}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"raw results written to {args.json}")
    return 1 if errors or bad or left else 0


if __name__ == "__main__":
    sys.exit(main())
