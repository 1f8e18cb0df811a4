#!/usr/bin/env python3
"""Issue 13's performance targets, all measured in one run: each shmq figure beside the peer
a user would otherwise pick and the machine's bound for it, measured minutes apart on the
same machine, with a verdict.

    .venv/bin/python benchmarks/targets.py             # ~6 min
    .venv/bin/python benchmarks/targets.py --quick     # ~2 min, fewer and shorter runs
    .venv/bin/python benchmarks/targets.py --markdown --json out.json

It runs the other benchmarks of this directory (each one's own figures are medians of
interleaved runs in fresh processes; see their docstrings) and `cargo bench -p shmq --bench
ring`, then prints one table. The iceoryx2 row needs `pip install iceoryx2` in this
interpreter; without it that row says so. Exit status 1 if a benchmark failed to run (a
target not met is a result, not a failure).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import copy_bound  # noqa: E402

MiB = 1 << 20


@dataclass
class Row:
    target: str
    goal: str
    shmq: str
    peer: str
    bound: str
    met: bool | None  # None: not measured


def _run(cmd: list[str], what: str, failures: list[str]) -> str:
    """Runs one benchmark, echoing its progress; returns its stdout ("" if it failed)."""
    print(f"--- {what}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    t = time.monotonic()
    p = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    print(f"    {time.monotonic() - t:.0f} s, exit status {p.returncode}", file=sys.stderr, flush=True)
    if p.returncode != 0:
        failures.append(f"{what} exited with {p.returncode}")
    return p.stdout


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def paired_ratio(a: list[float], b: list[float]) -> float | None:
    """The median of a[k] / b[k]: runs k of two cells made in the same round, next to each other
    (a slow spell of the machine, seconds long, then tends to hit both)."""
    ratios = [x / y for x, y in zip(a, b) if y > 0]
    return statistics.median(ratios) if ratios else None


def _rate(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v / 1e6:.2f} M/s" if v >= 1e6 else f"{v / 1e3:.2f} k/s"


def _us(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f} µs"


def _ns(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} ns"


def python_cells(py: str, args: Any, failures: list[str], tmp: Path) -> dict[str, dict[str, list[float]]]:
    """bench.py's medians: {scenario: {library: [run values]}} (µs for round trips, msg/s else)."""
    out: dict[str, dict[str, list[float]]] = {}
    common = ["--repeat", str(args.repeat), "--seconds", str(args.seconds)]
    # The ring sizes in one call of their own, interleaved: the machine has slow spells of
    # seconds (its cache-line floor then grows tenfold), which must hit every size alike.
    calls = [
        ("peers", "shmq,faster-fifo,mp.Queue", "rt-64B,rt-64B-timeout,tp-1MiB-16x,tp-1MiB"),
        ("sizes", "shmq", "tp-1MiB,tp-1MiB-16x,tp-1MiB-64MiB,tp-1MiB-256MiB,tp-1MiB-1GiB"),
    ]
    for what, libs, scenarios in calls:
        path = tmp / f"bench-{what}.json"
        _run([py, "benchmarks/bench.py", *common, "--interleave", "--libs", libs, "--scenarios", scenarios,
              "--json", str(path)], f"bench.py {scenarios}", failures)
        if path.exists():
            for key, sc in json.loads(path.read_text())["scenarios"].items():
                out[f"{what}:{key}"] = {lib: r.get("values", []) for lib, r in sc["results"].items()}
    return out


def broadcast_cells(py: str, args: Any, failures: list[str], tmp: Path) -> dict[str, list[float]]:
    """bench_broadcast.py, 1 MiB 1→3: {variant: [per-run median rate per subscriber]}."""
    path = tmp / "broadcast.json"
    _run([py, "benchmarks/bench_broadcast.py", "--runs", str(args.repeat), "--seconds", str(args.seconds),
          "--sizes", "1MiB", "--fanout", "3", "--variants", "shmq-block,shmq-block-view,zmq-ipc",
          "--json", str(path)], "bench_broadcast.py 1 MiB 1→3", failures)
    if not path.exists():
        return {}
    res = json.loads(path.read_text())["results"]
    return {key.split()[-1]: [r["rate"] for r in runs] for key, runs in res.items()}


def iceoryx2_cells(py: str, args: Any, failures: list[str], tmp: Path) -> dict[str, list[float]] | None:
    """bench_iceoryx2.py's rates, or None when iceoryx2 is not installed here."""
    if subprocess.run([py, "-c", "import iceoryx2"], capture_output=True).returncode != 0:
        return None
    path = tmp / "iceoryx2.json"
    _run([py, "benchmarks/bench_iceoryx2.py", "--runs", str(args.repeat), "--messages", str(args.messages),
          "--json", str(path)], "bench_iceoryx2.py", failures)
    return json.loads(path.read_text())["rates"] if path.exists() else {}


_UNITS = {"ns": 1.0, "µs": 1e3, "ms": 1e6, "s": 1e9}


def parse_divan(text: str) -> dict[str, dict[str, float]]:
    """divan's tree as {"group/bench": {"median_ns": .., "median_items": ..}}. Columns are
    counted from the right (median, mean, samples, iters): the tree's own bars come first."""
    out: dict[str, dict[str, float]] = {}
    stack: list[str] = []
    last = None
    for line in text.splitlines():
        # A bench or group line: "ring" at the root, else a name after a branch ("├─ "/"╰─ ");
        # the lines of items/s under a bench have no branch.
        m = re.match(r"^(ring)\s|^([│ ]*)[├╰]─ (\S+)", line)
        cols = line.split("│")
        if m:
            depth, name = (0, "ring") if m.group(1) else (len(m.group(2)) // 3 + 1, m.group(3))
            stack = stack[:depth] + [name]
            last = "/".join(stack[1:]) if stack and stack[0] == "ring" else "/".join(stack)
            t = re.search(r"([\d.]+)\s*(ns|µs|ms|s)\b", cols[-4] if len(cols) > 4 else "")
            if t:
                out.setdefault(last, {})["median_ns"] = float(t.group(1)) * _UNITS[t.group(2)]
            continue
        items = re.search(r"([\d.]+)\s*(K|M|G)?item/s", cols[-4] if len(cols) > 4 else "")
        if last and items:
            scale = {"K": 1e3, "M": 1e6, "G": 1e9, None: 1.0}[items.group(2)]
            out.setdefault(last, {})["median_items"] = float(items.group(1)) * scale
    return out


def rust_cells(failures: list[str]) -> dict[str, dict[str, float]]:
    if shutil.which("cargo") is None:
        failures.append("cargo not found: no Rust figures")
        return {}
    text = _run(["cargo", "bench", "-p", "shmq", "--bench", "ring"], "cargo bench (Rust)", failures)
    return parse_divan(text)


def commit() -> str:
    p = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return (p.stdout.strip() or "unknown") + ("+changes" if dirty else "")


def rows(py_cells: Any, bc: Any, iox: Any, rust: Any, copy_s: float) -> list[Row]:
    def runs(scenario: str, lib: str = "shmq", call: str = "peers") -> list[float]:
        return list(py_cells.get(f"{call}:{scenario}", {}).get(lib, []))

    def med(scenario: str, lib: str = "shmq", call: str = "peers") -> float | None:
        return _median(runs(scenario, lib, call))

    def best_rate(xs: list[float]) -> str:
        # This machine has slow spells in which a run is ~3x slower for every library; the
        # best run shows what the code does outside them (the verdict stays on the median).
        return f" (best run {_rate(max(xs))})" if xs else ""

    copy_bound_rate = 1 / copy_s
    r: list[Row] = []
    one16 = med("tp-1MiB-16x")
    ff16 = med("tp-1MiB-16x", "faster-fifo")
    r.append(Row("1→1 1 MiB, 16 distinct payloads, ring 16 MiB", "≥ 30 k/s",
                 _rate(one16) + best_rate(runs("tp-1MiB-16x")),
                 f"faster-fifo {_rate(ff16)}, mp.Queue {_rate(med('tp-1MiB-16x', 'mp.Queue'))}",
                 f"{_rate(copy_bound_rate)} (one copy of a payload)", None if one16 is None else one16 >= 30e3))
    if iox is None:
        r.append(Row("… ahead of iceoryx2, same run", "ahead", "—", "iceoryx2 not installed (pip install iceoryx2)",
                     "", None))
    else:
        i = _median(iox.get("iceoryx2 0.10, 16 samples", []))
        s16 = _median(iox.get("shmq, ring 16 MiB", []))
        paired = paired_ratio(iox.get("shmq, ring 16 MiB", []), iox.get("iceoryx2 0.10, 16 samples", []))
        r.append(Row("… ahead of iceoryx2, same run (bench_iceoryx2.py)", "ahead",
                     _rate(s16) + best_rate(iox.get("shmq, ring 16 MiB", [])),
                     f"iceoryx2 0.10 {_rate(i)}{best_rate(iox.get('iceoryx2 0.10, 16 samples', []))}"
                     + ("" if paired is None else f"; shmq ÷ iceoryx2 per round: median {paired:.2f}×"), "",
                     None if i is None or s16 is None else s16 > i))
    size_cells = [("4 MiB", "tp-1MiB"), ("16 MiB", "tp-1MiB-16x"), ("64 MiB", "tp-1MiB-64MiB"),
                  ("256 MiB", "tp-1MiB-256MiB"), ("1 GiB", "tp-1MiB-1GiB")]
    sizes = {label: med(key, call="sizes") for label, key in size_cells}
    sizes_keys = [key for _, key in size_cells]
    got = [v for v in sizes.values() if v is not None]
    spread = min(got) / max(got) if len(got) == len(sizes) else None
    bests = [max(xs) for xs in (runs(k, call="sizes") for k in sizes_keys) if xs]
    best_spread = f"; best runs {min(bests) / max(bests):.2f}×" if len(bests) == len(sizes) else ""
    r.append(Row("1→1 1 MiB across ring sizes 4 MiB … 1 GiB", "slowest ≥ 0.8 × fastest",
                 ("—" if spread is None else f"{spread:.2f}× ")
                 + "(" + ", ".join(f"{k} {'—' if v is None else f'{v / 1e3:.1f}'}" for k, v in sizes.items())
                 + f" k/s{best_spread})",
                 "", "", None if spread is None else spread >= 0.8))
    copying, view = _median(bc.get("shmq-block", [])), _median(bc.get("shmq-block-view", []))
    # Copying out, each message is copied 4 times (the publisher's copy in, one out per
    # subscriber), by 4 processes sharing the machine's CPUs: at best cpus × the copy rate / 4.
    cpus = os.cpu_count() or 1
    fanout_bound = copy_bound_rate * min(cpus, 4) / 4
    zmq = _median(bc.get("zmq-ipc", []))
    r.append(Row("broadcast 1 MiB 1→3, copying out, per subscriber", "≥ 10 k/s",
                 _rate(copying) + best_rate(bc.get("shmq-block", [])),
                 f"pyzmq ipc {_rate(zmq)}",
                 f"{_rate(fanout_bound)} (4 copies of each message on {cpus} CPUs)",
                 None if copying is None else copying >= 10e3))
    r.append(Row("broadcast 1 MiB 1→3, get(copy=False)", "≥ 30 k/s",
                 _rate(view) + best_rate(bc.get("shmq-block-view", [])), f"pyzmq ipc {_rate(zmq)}",
                 f"{_rate(copy_bound_rate)} (the publisher's copy)", None if view is None else view >= 30e3))
    rt_t = med("rt-64B-timeout")
    rt_runs = runs("rt-64B-timeout")
    r.append(Row("Python round trip, get with a timeout", "≤ 1 µs",
                 _us(rt_t) + (f" (best run {_us(min(rt_runs))})" if rt_runs else ""),
                 f"faster-fifo {_us(med('rt-64B-timeout', 'faster-fifo'))}, "
                 f"mp.Queue {_us(med('rt-64B-timeout', 'mp.Queue'))}", "", None if rt_t is None else rt_t <= 1.0))

    def rs(key: str, field: str) -> float | None:
        return rust.get(key, {}).get(field)

    floor = rs("floor/cache_line_round_trip", "median_ns")
    rt = rs("round_trip_64b", "median_ns")
    r.append(Row("Rust round trip, 64 B (two threads)", "≤ 250 ns", _ns(rt),
                 f"crossbeam-channel {_ns(rs('crossbeam/round_trip_64b', 'median_ns'))}",
                 f"{_ns(floor)} (one cache line bounced)", None if rt is None else rt <= 250))
    un = rs("throughput_64b", "median_items")
    r.append(Row("Rust 1→1 64 B, unbatched", "≥ 20 M/s", _rate(un),
                 f"crossbeam-channel {_rate(rs('crossbeam/throughput_64b', 'median_items'))}", "",
                 None if un is None else un >= 20e6))
    b16, b256 = rs("throughput_64b_batched/16", "median_items"), rs("throughput_64b_batched/256", "median_items")
    best = max((x for x in (b16, b256) if x is not None), default=None)
    r.append(Row("Rust 1→1 64 B, batched", "≥ 100 M/s", f"{_rate(b16)} (16), {_rate(b256)} (256)", "", "",
                 None if best is None else best >= 100e6))
    l64, l4m = rs("round_trip_loan/64", "median_ns"), rs("round_trip_loan/4194304", "median_ns")
    r.append(Row("loan round trip: 4 MiB within 2 × 64 B", "≤ 2×", f"{_ns(l4m)} vs {_ns(l64)}", "", "",
                 None if l64 is None or l4m is None else l4m <= 2 * l64))
    return r


def render(rs: list[Row], markdown: bool) -> str:
    head = ["target", "goal", "shmq", "peers, same run", "bound here", "met"]
    cells = [[x.target, x.goal, x.shmq, x.peer, x.bound, {True: "✔", False: "✘", None: "not measured"}[x.met]]
             for x in rs]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    width = [max(len(str(c[i])) for c in [head, *cells]) for i in range(len(head))]
    return "\n".join("  ".join(str(c[i]).ljust(width[i]) for i in range(len(head))) for c in [head, *cells])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 runs of 0.2 s per cell, 1500 iceoryx2 messages")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--json", metavar="PATH", help="also write every figure behind the table")
    ap.add_argument("--no-rust", action="store_true", help="skip cargo bench")
    args = ap.parse_args()
    args.repeat, args.seconds, args.messages = (3, 0.2, 1500) if args.quick else (5, 0.4, 3000)
    py = sys.executable
    failures: list[str] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    print("--- copy bound: one copy of a 1 MiB payload out of 16 distinct ones", file=sys.stderr, flush=True)
    copy_s = copy_s_start = copy_bound.copy_time(16)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        py_cells = python_cells(py, args, failures, tmp)
        bc = broadcast_cells(py, args, failures, tmp)
        iox = iceoryx2_cells(py, args, failures, tmp)
    # Again after the 1 MiB cells: the machine's copy rate moves by a third within one run
    # here, and a bound is the faster of the two (the slower is in the JSON).
    print("--- copy bound again", file=sys.stderr, flush=True)
    copy_s_end = copy_bound.copy_time(16)
    copy_s = min(copy_s, copy_s_end)
    rust = {} if args.no_rust else rust_cells(failures)
    table = rows(py_cells, bc, iox, rust, copy_s)
    print(f"shmq {commit()}, {started}, {os.cpu_count()} CPUs, load average {load:.2f} before the run; "
          f"medians of {args.repeat} runs per cell")
    print(render(table, args.markdown))
    met = sum(1 for x in table if x.met)
    print(f"targets met: {met} of {len(table)}")
    for f in failures:
        print(f"FAILED: {f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"commit": commit(), "started": started, "load_before": load, "copy_s": copy_s,
                       "copy_s_start_end": [copy_s_start, copy_s_end],
                       "python": py_cells, "broadcast": bc, "iceoryx2": iox, "rust": rust,
                       "rows": [x.__dict__ for x in table]}, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
