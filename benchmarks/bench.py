#!/usr/bin/env python3
"""Cross-library benchmark: shmq vs multiprocessing.Queue vs faster-fifo.

Every scenario runs its producers and consumers in separate processes (``fork`` start
method). Libraries are interleaved: for each repetition every library runs once, in an order
that rotates from one repetition to the next, so that a noisy phase of the machine hits all of
them alike. Each cell of the table is the median of ``--repeat`` runs; the ratio is against
``multiprocessing.Queue`` measured in the same run of this script. With ``--interleave`` the
scenarios take turns as well (one run of each per round): use it to compare scenarios with
each other, such as ring sizes.

    .venv/bin/python benchmarks/bench.py                 # full run (~65 s on 2 cores)
    .venv/bin/python benchmarks/bench.py --quick         # short run
    .venv/bin/python benchmarks/bench.py --json out.json # also write the raw results

See benchmarks/README.md for the method and the latest results.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import glob
import itertools
import json
import multiprocessing as mp
import os
import platform
import queue as _queue
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable, Literal

import shmq

try:
    import faster_fifo
except ImportError:  # pragma: no cover - reported in the output
    faster_fifo = None

CTX = mp.get_context("fork")  # one start method for every library; fork is the fastest to start
# Ring bytes of shmq and buffer bytes of faster-fifo (--capacity). The default is shmq's own
# default, 4 MiB: room for three 1 MiB messages. Cells with a ring of their own (tp-1MiB-16x,
# the --all cells) show what bigger rings cost (see benchmarks/README.md).
CAPACITY = shmq.DEFAULT_CAPACITY
BATCH = 256  # messages per put_many
# Producers cycle through this many distinct payloads (distinct objects, distinct bytes): a
# single hot `bytes` object would stay in cache and flatter large messages.
DISTINCT = 16
GET_MANY = 1000  # most messages per get_many
FF_TIMEOUT = 60.0  # faster-fifo's default blocking timeout is 10 s: make it explicit
CHILD_TIMEOUT = 120.0  # a run that takes longer than this is a failure (children killed)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DICT_MSG = {"id": 0, "name": "task", "values": [1.0, 2.0, 3.0]}


# --------------------------------------------------------------------------------------------
# Library adapters. Children are forked, so closures and lambdas are fine.


class Lib:
    name = ""
    batched = False

    def make(self, raw: bool, capacity: int) -> Any:
        raise NotImplementedError

    def put(self, q: Any) -> Callable[[Any], None]:
        put: Callable[[Any], None] = q.put
        return put

    def get(self, q: Any, timeout: float | None = None) -> Callable[[], Any]:
        if timeout is not None:
            return lambda: q.get(True, timeout)
        get: Callable[[], Any] = q.get
        return get

    def put_many(self, q: Any) -> Callable[[list[Any]], None]:
        raise NotImplementedError

    def get_many(self, q: Any) -> Callable[[], list[Any]]:
        raise NotImplementedError

    def close_child(self, q: Any) -> None:
        q.close()

    def close_parent(self, q: Any) -> None:
        q.close()


class ShmqLib(Lib):
    name = "shmq"
    batched = True

    def make(self, raw: bool, capacity: int) -> Any:
        # codec="raw" is the raw-bytes path (bytes in, bytes out); dicts use the default pickle.
        return shmq.Queue(capacity=capacity, codec="raw" if raw else "pickle")

    def put_many(self, q: Any) -> Callable[[list[Any]], None]:
        put_many: Callable[[list[Any]], None] = q.put_many
        return put_many

    def get_many(self, q: Any) -> Callable[[], list[Any]]:
        return lambda: q.get_many(GET_MANY)


def _ff_loads_raw(mv: memoryview) -> bytes:
    return mv.tobytes()


def _ff_dumps_raw(b: bytes) -> bytes:
    return b


class FasterFifoLib(Lib):
    name = "faster-fifo"
    batched = True

    def __init__(self, pickle_bytes: bool) -> None:
        self.pickle_bytes = pickle_bytes

    def make(self, raw: bool, capacity: int) -> Any:
        if raw and not self.pickle_bytes:
            # Like shmq's raw codec: bytes go in as they are (faster-fifo's loads gets a
            # memoryview of its own buffer; .tobytes() is the copy shmq also makes).
            return faster_fifo.Queue(max_size_bytes=capacity, dumps=_ff_dumps_raw, loads=_ff_loads_raw)
        return faster_fifo.Queue(max_size_bytes=capacity)  # pickles, its default

    def put(self, q: Any) -> Callable[[Any], None]:
        return lambda x: q.put(x, True, FF_TIMEOUT)

    def get(self, q: Any, timeout: float | None = None) -> Callable[[], Any]:
        return lambda: q.get(True, FF_TIMEOUT)  # always a timeout (see FF_TIMEOUT)

    def put_many(self, q: Any) -> Callable[[list[Any]], None]:
        return lambda xs: q.put_many(xs, True, FF_TIMEOUT)

    def get_many(self, q: Any) -> Callable[[], list[Any]]:
        return lambda: q.get_many(True, FF_TIMEOUT, GET_MANY)


class MpLib(Lib):
    name = "mp.Queue"

    def make(self, raw: bool, capacity: int) -> Any:
        return CTX.Queue()  # always pickles

    def close_child(self, q: Any) -> None:
        q.close()
        q.join_thread()  # flush the feeder thread

    def close_parent(self, q: Any) -> None:
        q.close()
        q.join_thread()


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    kind: str  # "rt" (round trip, µs) or "tp" (throughput, msg/s)
    payload: str  # "bytes" or "dict"
    size: int = 0  # payload bytes for "bytes"
    producers: int = 1
    consumers: int = 1
    batched: bool = False
    n_calibrate: int = 10_000  # messages (or round trips) of the calibration run
    baseline: str = ""  # scenario whose mp.Queue median is the ratio's baseline (default: own)
    one_cpu: bool = False  # pin every process of the run to the same CPU
    target: tuple[str, float] | None = None  # shmq target: ("<=", µs) or (">=", msg/s)
    capacity: int = 0  # ring/buffer bytes for this scenario (0: --capacity)
    timeout: float | None = None  # round trips: the timeout passed to get (None: forever)
    default: bool = True  # part of a run without --scenarios

    @property
    def ring(self) -> int:
        return self.capacity or CAPACITY

    @property
    def raw(self) -> bool:
        return self.payload == "bytes"


SCENARIOS = [
    Scenario("rt-64B", "round trip, 64 B bytes", "rt", "bytes", 64, n_calibrate=2_000, target=("<=", 2.0)),
    # As users often write it: get(True, timeout) (issue 13's target: ≤ 1 µs).
    Scenario(
        "rt-64B-timeout",
        "round trip, 64 B, get with a timeout",
        "rt",
        "bytes",
        64,
        n_calibrate=2_000,
        timeout=60.0,
        target=("<=", 1.0),
    ),
    Scenario("rt-dict", "round trip, small dict", "rt", "dict", n_calibrate=2_000),
    # Both ends on one CPU, as on a busy or oversubscribed machine: every hand-off needs the
    # waiting side to give the CPU up. No target; it shows how a library waits.
    Scenario("rt-64B-1cpu", "round trip, 64 B, one CPU", "rt", "bytes", 64, n_calibrate=500, one_cpu=True),
    Scenario("tp-64B", "1→1, 64 B bytes", "tp", "bytes", 64, n_calibrate=20_000, target=(">=", 1e6)),
    Scenario(
        "tp-64B-batch",
        "1→1, 64 B bytes, batches",
        "tp",
        "bytes",
        64,
        batched=True,
        n_calibrate=50_000,
        baseline="tp-64B",
        target=(">=", 3e6),
    ),
    Scenario("tp-4KiB", "1→1, 4 KiB bytes", "tp", "bytes", 4096, n_calibrate=10_000),
    Scenario("tp-1MiB", "1→1, 1 MiB bytes", "tp", "bytes", 1 << 20, n_calibrate=100, target=(">=", 16e3)),
    # The ring a user sizes for the message: 16 × 1 MiB (issue 13's workload and target).
    Scenario(
        "tp-1MiB-16x",
        "1→1, 1 MiB bytes, ring 16 MiB",
        "tp",
        "bytes",
        1 << 20,
        n_calibrate=100,
        target=(">=", 30e3),
        capacity=16 << 20,
    ),
    # Generous rings (the ring-size cliff); only when asked for (--scenarios, --all).
    *(
        Scenario(
            f"tp-1MiB-{label}",
            f"1→1, 1 MiB bytes, ring {label}",
            "tp",
            "bytes",
            1 << 20,
            n_calibrate=100,
            capacity=cap,
            default=False,
        )
        for label, cap in (("64MiB", 64 << 20), ("256MiB", 256 << 20), ("1GiB", 1 << 30))
    ),
    Scenario("tp-dict", "1→1, small dict", "tp", "dict", n_calibrate=20_000, target=(">=", 5e5)),
    Scenario(
        "tp-2x2-64B",
        "2→2, 64 B bytes",
        "tp",
        "bytes",
        64,
        producers=2,
        consumers=2,
        n_calibrate=20_000,
        target=(">=", 1e6),
    ),
]


class RunError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# Child processes. Each reports on `ctl` (a multiprocessing.Queue used only for control).


def _child(ctl: Any, role: str, body: Callable[[], Any]) -> None:
    try:
        out = body()
        ctl.put(("ok", role, out))
    except BaseException:  # noqa: BLE001 - report everything to the parent
        ctl.put(("error", role, traceback.format_exc()))
    finally:
        ctl.close()
        ctl.join_thread()


def _payloads(sc: Scenario) -> list[Any]:
    """DISTINCT different payloads of the scenario's size (the sentinel b"" is never one)."""
    return [bytes([1 + k]) * sc.size for k in range(DISTINCT)] if sc.raw else [None]


def _producer(lib: Lib, q: Any, ctl: Any, go: Any, sc: Scenario, n: int, sentinel: Any) -> None:
    def body() -> float:
        try:
            put = lib.put(q)
            msgs = _payloads(sc)
            ctl.put(("ready", "producer", None))
            if not go.wait(CHILD_TIMEOUT):
                raise RunError("never got the go signal")
            t0 = time.perf_counter()
            if sc.batched:
                put_many = lib.put_many(q)
                chunk = list(itertools.islice(itertools.cycle(msgs), BATCH))
                full, rest = divmod(n, BATCH)
                for _ in range(full):
                    put_many(chunk)
                if rest:
                    put_many(chunk[:rest])
            elif sc.raw:
                for msg in itertools.islice(itertools.cycle(msgs), n):
                    put(msg)
            else:
                for i in range(n):
                    put({"id": i, "name": "task", "values": [1.0, 2.0, 3.0]})
            put(sentinel)
            return t0
        finally:
            lib.close_child(q)

    _child(ctl, "producer", body)


def _first_lap(sc: Scenario, n: int) -> int:
    """Messages that fill the ring once (records have a 16-byte header, padded to 16)."""
    record = 16 + (sc.size + 15) // 16 * 16 if sc.raw else 96
    return max(1, min(n, sc.ring // record))


def _consumer(lib: Lib, q: Any, ctl: Any, sc: Scenario, lap: int) -> None:
    # The sentinel is b"" (bytes) or None (dicts): the only falsy message. Returns the end
    # time, the count, and when the first `lap` messages (one pass over the ring) were in.
    def body() -> tuple[float, int, float]:
        try:
            count = 0
            t_lap = 0.0
            ctl.put(("ready", "consumer", None))
            if sc.batched:
                get_many = lib.get_many(q)
                while True:
                    items = get_many()
                    if items[-1]:
                        count += len(items)
                    else:  # 1 producer: its sentinel is its last message
                        count += len(items) - 1
                        break
                    if not t_lap and count >= lap:
                        t_lap = time.perf_counter()
            else:
                get = lib.get(q)
                for _ in range(lap):  # a separate loop: no per-message test in the timed one
                    if not get():
                        return time.perf_counter(), count, time.perf_counter()
                    count += 1
                t_lap = time.perf_counter()
                while True:
                    if not get():
                        break
                    count += 1
            end = time.perf_counter()
            return end, count, t_lap or end
        finally:
            lib.close_child(q)

    _child(ctl, "consumer", body)


def _echo(lib: Lib, a: Any, b: Any, ctl: Any, rounds: int, cpu: int | None, timeout: float | None) -> None:
    def body() -> None:
        try:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            get, put = lib.get(a, timeout), lib.put(b)
            ctl.put(("ready", "echo", None))
            for _ in range(rounds):
                put(get())
        finally:
            lib.close_child(a)
            lib.close_child(b)

    _child(ctl, "echo", body)


# --------------------------------------------------------------------------------------------
# Parent side


def _collect(ctl: Any, what: str, count: int, procs: list[Any], deadline: float) -> list[Any]:
    got: list[Any] = []
    while len(got) < count:
        try:
            kind, role, out = ctl.get(timeout=0.5)
        except _queue.Empty:
            if time.monotonic() > deadline:
                raise RunError(f"timed out waiting for {what}") from None
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RunError(f"a child died (exit code {dead[0].exitcode}) before {what}") from None
            continue
        if kind == "error":
            raise RunError(f"{role} failed:\n{out}")
        if kind == what:
            got.append(out)
    return got


def _finish(procs: list[Any], queues: list[Any], lib: Lib, ctl: Any, ok: bool) -> None:
    """Joins every child (killing those that outstay the timeout, or at once after a failure,
    when they may wait forever), then closes the queues."""
    stuck = []
    for p in procs:
        p.join(CHILD_TIMEOUT if ok else 2.0)
        if p.is_alive():
            stuck.append(p)
            p.terminate()
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
    for q in queues:
        lib.close_parent(q)
    ctl.close()
    ctl.join_thread()
    if stuck and ok:  # after a failure, the original exception is the one to report
        raise RunError(f"{len(stuck)} child process(es) did not finish in {CHILD_TIMEOUT} s")


def run_roundtrip(lib: Lib, sc: Scenario, n: int) -> float:
    """Microseconds per round trip (parent → echo child → parent), after a warm-up."""
    warmup = min(1000, max(n // 10, 10))
    a, b = lib.make(sc.raw, sc.ring), lib.make(sc.raw, sc.ring)
    ctl = CTX.Queue()
    cpus = os.sched_getaffinity(0)
    cpu = max(cpus) if sc.one_cpu else None
    procs = [CTX.Process(target=_echo, args=(lib, a, b, ctl, warmup + n, cpu, sc.timeout), daemon=True)]
    ok = False
    try:
        for p in procs:
            p.start()
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        deadline = time.monotonic() + CHILD_TIMEOUT
        _collect(ctl, "ready", 1, procs, deadline)
        put, get = lib.put(a), lib.get(b, sc.timeout)
        msg = b"\xab" * sc.size if sc.raw else DICT_MSG
        for _ in range(warmup):
            put(msg)
            get()
        t0 = time.perf_counter()
        for _ in range(n):
            put(msg)
            get()
        elapsed = time.perf_counter() - t0
        _collect(ctl, "ok", 1, procs, deadline)
        ok = True
    finally:
        if cpu is not None:
            os.sched_setaffinity(0, cpus)
        _finish(procs, [a, b], lib, ctl, ok)
    return elapsed / n * 1e6


def run_throughput(lib: Lib, sc: Scenario, n: int) -> tuple[float, float]:
    """Messages per second from the first put to the last consumer having everything, and
    the rate of the first lap (one ring's worth of messages, from the first put)."""
    if sc.producers != sc.consumers:
        raise ValueError("the sentinel scheme needs as many producers as consumers")
    if sc.batched and sc.consumers != 1:
        raise ValueError("batched scenarios have one consumer")
    q = lib.make(sc.raw, sc.ring)
    ctl = CTX.Queue()
    go = CTX.Event()
    sentinel = b"" if sc.raw else None
    per, extra = divmod(n, sc.producers)
    lap = _first_lap(sc, n // sc.consumers)
    procs = [
        CTX.Process(target=_producer, args=(lib, q, ctl, go, sc, per + (i < extra), sentinel), daemon=True)
        for i in range(sc.producers)
    ] + [CTX.Process(target=_consumer, args=(lib, q, ctl, sc, lap), daemon=True) for _ in range(sc.consumers)]
    ok = False
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + CHILD_TIMEOUT
        _collect(ctl, "ready", len(procs), procs, deadline)
        go.set()
        outs = _collect(ctl, "ok", len(procs), procs, deadline)
        ok = True
    finally:
        _finish(procs, [q], lib, ctl, ok)
    starts = [o for o in outs if isinstance(o, float)]
    ends = [o for o in outs if isinstance(o, tuple)]
    received = sum(c for _, c, _ in ends)
    if received != n:
        raise RunError(f"consumers received {received} messages, expected {n}")
    t0 = min(starts)
    elapsed: float = max(t for t, _, _ in ends) - t0
    lap_elapsed = max(t for _, _, t in ends) - t0
    return n / elapsed, lap * sc.consumers / max(lap_elapsed, 1e-9)


def run_once(lib: Lib, sc: Scenario, n: int) -> tuple[float, float | None]:
    """The run's figure, and for throughput the first lap's rate."""
    if sc.kind == "rt":
        return run_roundtrip(lib, sc, n), None
    return run_throughput(lib, sc, n)


def calibrate(lib: Lib, sc: Scenario, target_s: float) -> tuple[int, float]:
    """Message count for a run of about `target_s` seconds, from short runs (also a warm-up),
    and the figure of the first of them (the warm-up, reported apart from the timed runs).

    A short run underestimates the rate (start-up costs weigh more), so this runs again with
    the estimate until a run lasts at least a third of the target.
    """
    n = sc.n_calibrate
    lo = max(sc.n_calibrate // 4, 10)
    first = None
    for _ in range(3):
        value, _ = run_once(lib, sc, n)
        first = value if first is None else first
        per_second = 1e6 / value if sc.kind == "rt" else value
        took = n / per_second
        n = max(lo, min(int(per_second * target_s), 50_000_000))
        if took >= target_s / 3:
            break
    digits = max(len(str(n)) - 2, 0)  # two significant digits
    assert first is not None
    return max(lo, round(n, -digits)), first


# --------------------------------------------------------------------------------------------
# Reporting


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    virt = []
    for kind in ("--vm", "--container"):
        try:
            v = subprocess.run(["systemd-detect-virt", kind], capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            v = ""
        if v and v != "none":
            virt.append(v)
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "virtualization": "/".join(virt),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "shmq": shmq.__version__,
        "shmq_git": commit,
        "faster_fifo": _version("faster-fifo"),
        "start_method": "fork",
        "loadavg_at_start": os.getloadavg()[0],
    }


def fmt_value(sc: Scenario, v: float) -> str:
    if sc.kind == "rt":
        return f"{v:.2f} µs" if v < 100 else f"{v:.0f} µs"
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.2f} {unit}/s" if v / div < 100 else f"{v / div:.0f} {unit}/s"
    return f"{v:.0f} /s"


def fmt_bandwidth(sc: Scenario, v: float) -> str:
    if sc.kind != "tp" or sc.payload != "bytes" or sc.size < 4096:
        return ""
    return f"{v * sc.size / 2**30:.2f}"


def speedup(sc: Scenario, v: float, base: float | None) -> float | None:
    if base is None:
        return None
    return base / v if sc.kind == "rt" else v / base


def target_text(sc: Scenario) -> str:
    if sc.target is None:
        return ""
    op, val = sc.target
    return ("≤ " if op == "<=" else "≥ ") + fmt_value(sc, val)


def target_met(sc: Scenario, v: float) -> bool | None:
    if sc.target is None:
        return None
    op, val = sc.target
    return v <= val if op == "<=" else v >= val


def quartiles(vals: list[float]) -> tuple[float, float]:
    if len(vals) < 2:
        return vals[0], vals[0]
    q = statistics.quantiles(vals, n=4, method="inclusive")
    return q[0], q[2]


def render(results: dict[str, dict[str, dict[str, Any]]], scenarios: list[Scenario], libs: list[str], info: dict[str, Any], args: Any) -> int:
    """Prints the table; returns the number of missed targets."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    width = max(shutil.get_terminal_size((160, 24)).columns, 150)
    console = Console(width=width, highlight=False)
    console.print(
        f"[bold]machine[/]: {info['nproc']} CPUs ({info['cpus_usable']} usable), {info['cpu_model']}"
        f"{', ' + info['virtualization'] if info['virtualization'] not in ('', 'none') else ''}, Linux {info['kernel']}"
    )
    console.print(
        f"[bold]versions[/]: Python {info['python']}, shmq {info['shmq']} ({info['shmq_git'] or '?'}),"
        f" faster-fifo {info['faster_fifo']}; start method fork; {info['date']}"
    )
    load = info["loadavg_at_start"]
    console.print(
        f"[bold]load average[/] (1 min) before the run: {load:.2f}"
        + ("  [yellow](something else was running: numbers may be pessimistic)[/]" if load > 0.7 else "")
    )
    console.print(
        f"[bold]method[/]: median of {args.repeat} interleaved runs (rotating library order) of ~{args.seconds:g} s;"
        f" ring/buffer {CAPACITY / 2**20:g} MiB;"
        f" speed-up = vs multiprocessing.Queue in this run (>1 = faster)"
    )
    table = Table(box=box.MARKDOWN if args.markdown else box.SIMPLE_HEAD, show_lines=False, pad_edge=False)
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("scenario", "left"),
        ("library", "left"),
        ("median", "right"),
        ("GiB/s", "right"),
        ("IQR", "right"),
        ("min … max", "right"),
        ("1st lap", "right"),
        ("warm-up", "right"),
        ("vs mp.Queue", "right"),
        ("n/run", "right"),
        ("shmq target", "left"),
    )
    for col, just in columns:
        table.add_column(col, justify=just, no_wrap=True)
    missed = 0
    for si, sc in enumerate(scenarios):
        base_key = sc.baseline or sc.key
        base_cell = results.get(base_key, {}).get("mp.Queue")
        base = statistics.median(base_cell["values"]) if base_cell and base_cell["values"] else None
        first = True
        present = [lib for lib in libs if lib in results.get(sc.key, {})]
        for lib in present:
            cell = results[sc.key][lib]
            vals = cell["values"]
            if not vals:
                row = [sc.title if first else "", lib, "FAILED", "", "", "", "", "", "", "", cell.get("error", "")[:40]]
                table.add_row(*row)
                first = False
                continue
            med = statistics.median(vals)
            q1, q3 = quartiles(vals)
            bw = fmt_bandwidth(sc, med)
            ratio = speedup(sc, med, base)
            ratio_s = f"{ratio:.1f}×" if ratio is not None else "—"
            if sc.baseline and ratio is not None:
                ratio_s += "¹"
            tgt = ""
            if lib == "shmq" and sc.target is not None:
                ok = target_met(sc, med)
                missed += not ok
                tgt = f"{target_text(sc)} " + ("[green]✔ met[/]" if ok else "[red]✘ missed[/]")
            iqr = f"{fmt_value(sc, q1)} … {fmt_value(sc, q3)}" if len(vals) >= 4 else ""
            table.add_row(
                sc.title if first else "",
                lib,
                fmt_value(sc, med),
                bw,
                iqr,
                f"{fmt_value(sc, min(vals))} … {fmt_value(sc, max(vals))}",
                fmt_value(sc, statistics.median(cell["first_lap"])) if cell.get("first_lap") else "",
                fmt_value(sc, cell["warmup"]) if "warmup" in cell else "",
                ratio_s,
                f"{cell['n']:,}",
                tgt,
                end_section=not args.markdown and si != len(scenarios) - 1 and lib == present[-1],
            )
            first = False
    console.print(table)
    if any(sc.baseline for sc in scenarios):
        console.print("¹ mp.Queue has no batch API: ratio against its unbatched 1→1 64 B result.")
    console.print(
        "Round trips: parent → echo child → parent over two queues. Throughput: first put → consumer has all.\n"
        "Bytes: shmq codec=\"raw\"" + ("" if args.ff_pickle else ", faster-fifo raw (identity dumps)")
        + ", mp.Queue pickles. Dicts: everyone pickles.\n"
        f"Bytes payloads: {DISTINCT} distinct objects cycled. Fresh queue and processes per run.\n"
        "1st lap: rate over the first ring's worth of messages of each run (median); warm-up: the first"
        " calibration run."
    )
    n_targets = sum(1 for sc in scenarios if sc.target is not None and results.get(sc.key, {}).get("shmq", {}).get("values"))
    console.print(f"[bold]shmq targets met: {n_targets - missed}/{n_targets}[/]")
    return missed


def shm_segments() -> set[str]:
    return set(glob.glob(f"/dev/shm/{shmq.SEGMENT_PREFIX}*"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per library and scenario (median; default 5)")
    ap.add_argument("--seconds", type=float, default=0.4, help="target duration of one run (default 0.4 s)")
    ap.add_argument("--quick", action="store_true", help="short run: --repeat 3 --seconds 0.1")
    ap.add_argument(
        "--capacity", default="4MiB", help="ring size of shmq and buffer size of faster-fifo (default 4MiB)"
    )
    ap.add_argument("--all", action="store_true", help="also the big-ring scenarios (tp-1MiB-64MiB … -1GiB)")
    ap.add_argument("--json", metavar="PATH", help="write raw results and machine info as JSON")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument(
        "--interleave",
        action="store_true",
        help="run the scenarios in rounds (one run of each per round) instead of one after another",
    )
    ap.add_argument("--scenarios", help="comma-separated scenario keys: " + ",".join(s.key for s in SCENARIOS))
    ap.add_argument("--libs", help="comma-separated libraries (default: shmq,faster-fifo,mp.Queue)")
    ap.add_argument(
        "--ff-pickle", action="store_true", help="let faster-fifo pickle bytes too (its default) instead of raw"
    )
    args = ap.parse_args(argv)
    global CAPACITY
    CAPACITY = shmq.parse_size(args.capacity)
    if args.quick:
        args.repeat = min(args.repeat, 3)
        args.seconds = min(args.seconds, 0.1)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    all_libs: list[Lib] = [ShmqLib(), MpLib()]
    if faster_fifo is not None:
        all_libs.insert(1, FasterFifoLib(args.ff_pickle))
    else:
        print("faster-fifo is not installed (pip install faster-fifo): skipping it", file=sys.stderr)
    if args.libs:
        wanted = args.libs.split(",")
        unknown = set(wanted) - {lib.name for lib in all_libs}
        if unknown:
            ap.error(f"unknown or unavailable libraries: {sorted(unknown)}")
        all_libs = [lib for lib in all_libs if lib.name in wanted]
    scenarios = SCENARIOS if args.all else [s for s in SCENARIOS if s.default]
    if args.scenarios:
        keys = args.scenarios.split(",")
        unknown = set(keys) - {s.key for s in SCENARIOS}
        if unknown:
            ap.error(f"unknown scenarios: {sorted(unknown)}")
        scenarios = [s for s in SCENARIOS if s.key in keys]

    def libs_of(sc: Scenario) -> list[Lib]:
        return [lib for lib in all_libs if not sc.batched or lib.batched]

    info = machine_info()
    before = shm_segments()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    t_start = time.monotonic()
    rotation = 0
    counts: dict[str, dict[str, int]] = {}

    def prepare(sc: Scenario) -> None:
        """Calibrates every library on `sc` (its warm-up run is kept apart)."""
        cells = results.setdefault(sc.key, {})
        counts[sc.key] = {}
        for lib in libs_of(sc):
            cells[lib.name] = {
                "n": 0,
                "values": [],
                "first_lap": [],
                "unit": "us/roundtrip" if sc.kind == "rt" else "msg/s",
            }
            try:
                counts[sc.key][lib.name], cells[lib.name]["warmup"] = calibrate(lib, sc, args.seconds)
                cells[lib.name]["n"] = counts[sc.key][lib.name]
            except RunError as e:
                cells[lib.name]["error"] = str(e)
                print(f"  {sc.key} {lib.name}: calibration failed: {e}", file=sys.stderr)

    def run_round(sc: Scenario, rotation: int) -> None:
        """One timed run of every library on `sc`, in a rotating order."""
        libs = libs_of(sc)
        cells = results[sc.key]
        for lib in libs[rotation % len(libs) :] + libs[: rotation % len(libs)]:
            if lib.name not in counts[sc.key]:
                continue
            try:
                value, lap = run_once(lib, sc, counts[sc.key][lib.name])
                cells[lib.name]["values"].append(value)
                if lap is not None:
                    cells[lib.name]["first_lap"].append(lap)
            except RunError as e:
                cells[lib.name]["error"] = str(e)
                print(f"  {sc.key} {lib.name}: run failed: {e}", file=sys.stderr)

    def report(sc: Scenario) -> None:
        summary = ", ".join(
            f"{name} {fmt_value(sc, statistics.median(c['values']))}"
            for name, c in results[sc.key].items()
            if c["values"]
        )
        print(f"[{time.monotonic() - t_start:5.1f} s] {sc.title}: {summary}", file=sys.stderr, flush=True)

    try:
        if args.interleave:
            # Rounds over the scenarios: a slow spell of the machine then hits one run of
            # each scenario, not every run of one (the ring-size comparison needs that).
            for sc in scenarios:
                prepare(sc)
            for r in range(args.repeat):
                for k in range(len(scenarios)):
                    run_round(scenarios[(r + k) % len(scenarios)], r)
            for sc in scenarios:
                report(sc)
        else:
            for sc in scenarios:
                prepare(sc)
                for _ in range(args.repeat):
                    run_round(sc, rotation)
                    rotation += 1
                report(sc)
    except KeyboardInterrupt:
        print("interrupted: partial results", file=sys.stderr)
    elapsed = time.monotonic() - t_start

    lib_names = [lib.name for lib in all_libs]
    missed = render(results, scenarios, lib_names, info, args)
    left = shm_segments() - before
    if left:
        print(f"WARNING: queues left in /dev/shm: {sorted(left)}", file=sys.stderr)
    else:
        print(f"clean-up: no {shmq.SEGMENT_PREFIX}* segment left in /dev/shm; total time {elapsed:.0f} s")
    if args.json:
        out = {
            "machine": info,
            "args": {
                "repeat": args.repeat,
                "seconds": args.seconds,
                "ff_pickle": args.ff_pickle,
                "capacity": CAPACITY,
                "interleave": args.interleave,
            },
            "elapsed_s": elapsed,
            "scenarios": {
                sc.key: {
                    "title": sc.title,
                    "kind": sc.kind,
                    "payload": sc.payload,
                    "size": sc.size,
                    "producers": sc.producers,
                    "consumers": sc.consumers,
                    "batched": sc.batched,
                    "target": sc.target,
                    "results": results.get(sc.key, {}),
                }
                for sc in scenarios
            },
            "leftover_segments": sorted(left),
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"raw results written to {args.json}")
    failed = any("error" in c for cells in results.values() for c in cells.values())
    return 1 if failed or left else 0


if __name__ == "__main__":
    sys.exit(main())
