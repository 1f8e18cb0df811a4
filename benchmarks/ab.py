#!/usr/bin/env python3
"""A/B run: the same benchmark script under two interpreters (two builds of shmq), alternated.

    python3 benchmarks/ab.py --base /path/to/base-venv/bin/python --new .venv/bin/python \\
        --rounds 3 bench.py --quick --libs shmq
    python3 benchmarks/ab.py --base ... --new ... bench_broadcast.py --quick --variants shmq-block

Each round runs the script once per build (the build that goes first alternates), with
`--json`; the table pools every round's runs per cell and shows both medians and new ÷ base
(> 1 = new is better: for round trips the ratio of times is inverted). The script is always
this checkout's (the same workloads for both builds); only `import shmq` differs. A base
build: `maturin build --release -o DIR` at the base commit, then `pip install` the wheel
(with rich, msgpack, pyzmq, faster-fifo) into a venv of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def cells(path: str) -> dict[str, tuple[str, list[float]]]:
    """(kind, values) per cell of a bench.py or bench_broadcast.py JSON file."""
    with open(path) as f:
        data = json.load(f)
    out: dict[str, tuple[str, list[float]]] = {}
    if "scenarios" in data:  # bench.py
        for key, sc in data["scenarios"].items():
            for lib, cell in sc["results"].items():
                out[f"{key} {lib}"] = (sc["kind"], list(cell["values"]))
                if cell.get("first_lap"):
                    out[f"{key} {lib} (1st lap)"] = ("tp", list(cell["first_lap"]))
    else:  # bench_broadcast.py
        for key, runs in data["results"].items():
            out[key] = ("tp", [r["rate"] for r in runs])
    return out


def fmt(kind: str, v: float) -> str:
    if kind == "rt":
        return f"{v:.2f} µs"
    for div, unit in ((1e6, "M/s"), (1e3, "k/s")):
        if v >= div:
            return f"{v / div:.2f} {unit}"
    return f"{v:.0f} /s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="interpreter of the baseline build")
    ap.add_argument("--new", required=True, help="interpreter of the build under test")
    ap.add_argument("--rounds", type=int, default=2, help="runs of the script per build (default 2)")
    ap.add_argument("script", help="bench.py or bench_broadcast.py")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="passed to the script")
    a = ap.parse_args()
    script = a.script if os.path.exists(a.script) else os.path.join(HERE, a.script)
    pooled: dict[str, dict[str, list[float]]] = {"base": {}, "new": {}}
    kinds: dict[str, str] = {}
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            order = [("base", a.base), ("new", a.new)]
            if r % 2:
                order.reverse()
            for label, py in order:
                path = os.path.join(tmp, f"{label}-{r}.json")
                print(f"round {r + 1}/{a.rounds}: {label} ({py})", file=sys.stderr, flush=True)
                proc = subprocess.run([py, script, *a.args, "--json", path], stdout=subprocess.DEVNULL)
                failed |= proc.returncode != 0
                if not os.path.exists(path):
                    continue
                for key, (kind, vals) in cells(path).items():
                    kinds[key] = kind
                    pooled[label].setdefault(key, []).extend(vals)
    print(f"{'cell':48} {'base':>12} {'new':>12} {'new/base':>9}")
    for key, kind in kinds.items():
        b, n = pooled["base"].get(key), pooled["new"].get(key)
        if not b or not n:
            print(f"{key:48} {'—' if not b else fmt(kind, statistics.median(b)):>12}"
                  f" {'—' if not n else fmt(kind, statistics.median(n)):>12}")
            continue
        mb, mn = statistics.median(b), statistics.median(n)
        ratio = mb / mn if kind == "rt" else mn / mb
        print(f"{key:48} {fmt(kind, mb):>12} {fmt(kind, mn):>12} {ratio:8.2f}×")
    if failed:
        print("a run failed (see its output above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
