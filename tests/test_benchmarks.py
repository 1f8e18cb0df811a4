"""The parser behind `benchmarks/targets.py`'s Rust rows: divan's tree, read back."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import targets  # noqa: E402

# A trimmed `cargo bench -p shmq --bench ring` output; "41 Mitem/s" has no decimal point
# (divan prints what it measured), which the first parser took for a bench name.
DIVAN = """\
Timer precision: 20 ns
ring                         fastest       │ slowest       │ median        │ mean          │ samples │ iters
├─ round_trip_64b            446.9 ns      │ 1.903 µs      │ 493.1 ns      │ 553.8 ns      │ 200     │ 200000
├─ round_trip_loan                         │               │               │               │         │
│  ├─ 64                     664.6 ns      │ 1.941 µs      │ 894.1 ns      │ 941.8 ns      │ 200     │ 20000
│  ╰─ 4194304                641.9 ns      │ 1.585 µs      │ 803 ns        │ 804.4 ns      │ 200     │ 20000
├─ throughput_64b            617.9 µs      │ 1.576 ms      │ 854.1 µs      │ 920 µs        │ 200     │ 200
│                            16.18 Mitem/s │ 6.344 Mitem/s │ 11.7 Mitem/s  │ 10.86 Mitem/s │         │
├─ throughput_64b_batched                  │               │               │               │         │
│  ├─ 16                     243 µs        │ 1.664 ms      │ 408.7 µs      │ 498.4 µs      │ 200     │ 200
│  │                         41 Mitem/s    │ 6.006 Mitem/s │ 24.46 Mitem/s │ 20.06 Mitem/s │         │
│  ╰─ 256                    229.9 µs      │ 1.155 ms      │ 391.1 µs      │ 465.8 µs      │ 200     │ 200
│                            43.48 Mitem/s │ 8.654 Mitem/s │ 25.56 Mitem/s │ 21.46 Mitem/s │         │
├─ crossbeam                               │               │               │               │         │
│  ├─ round_trip_64b         406.1 ns      │ 617.3 ns      │ 450.5 ns      │ 453.9 ns      │ 200     │ 200000
│  ╰─ throughput_64b         330.4 µs      │ 566.4 µs      │ 360.3 µs      │ 369.1 µs      │ 200     │ 200
│                            30.25 Mitem/s │ 17.65 Mitem/s │ 27.74 Mitem/s │ 27.08 Mitem/s │         │
╰─ floor                                   │               │               │               │         │
   ╰─ cache_line_round_trip  78.23 ns      │ 193.3 ns      │ 85.57 ns      │ 88.32 ns      │ 200     │ 200000
"""


def test_every_bench_gets_its_median_and_rate() -> None:
    got = targets.parse_divan(DIVAN)
    assert got == {
        "round_trip_64b": {"median_ns": 493.1},
        "round_trip_loan/64": {"median_ns": 894.1},
        "round_trip_loan/4194304": {"median_ns": 803.0},
        "throughput_64b": {"median_ns": 854_100.0, "median_items": 11.7e6},
        "throughput_64b_batched/16": {"median_ns": 408_700.0, "median_items": 24.46e6},
        "throughput_64b_batched/256": {"median_ns": 391_100.0, "median_items": 25.56e6},
        "crossbeam/round_trip_64b": {"median_ns": 450.5},
        "crossbeam/throughput_64b": {"median_ns": 360_300.0, "median_items": 27.74e6},
        "floor/cache_line_round_trip": {"median_ns": 85.57},
    }


def test_a_target_without_figures_is_not_measured_rather_than_met() -> None:
    rows = targets.rows({}, {}, None, {}, copy_s=1e-4)
    assert rows and all(r.met is None for r in rows)


def test_the_paired_ratio_compares_runs_of_the_same_round() -> None:
    # Slow spells hit rounds 2 and 3 of both and shmq's run of round 5: the medians of each
    # cell alone say 3.1 against 7.0 (behind); run by run, shmq is ahead in four rounds of five.
    shmq = [9.0, 3.0, 3.1, 9.2, 2.9]
    peer = [8.0, 2.5, 2.9, 8.1, 7.0]
    assert targets.paired_ratio(shmq, peer) == 9.0 / 8.0
    assert targets.paired_ratio([], peer) is None
    assert targets.paired_ratio([1.0], [0.0]) is None
