"""Runs a test command and fails if it left shared-memory segments behind.

    python tests/leak_check.py -- python -m pytest tests examples/python -q

Only this run's segments are judged (other runs of the suite, benchmarks and users on the
same machine share /dev/shm, and their segments are none of our business):

- the command runs with ``SHMQ_TEST_RUN=<id>`` in its environment, and tests/conftest.py
  names every test queue ``t<id>-...`` (``shmq-t<id>-...``, side segments
  ``shmqside-t<id>-...``);
- queues made with ``name=None`` are named ``anon-<pid>-...`` by the process that made them:
  only the anonymous segments of the command's own pid and of the pids conftest lists (the
  pytest process and every process forked from it, appended to the file named by
  ``SHMQ_TEST_RUN_PIDS``) are judged
  (a process started with exec, e.g. ``subprocess``, is not listed: the test that starts it
  checks what it leaves);
- and only entries that were not there before the command started.

Such entries left when the command ends are listed, removed, and the exit status is 1 (or
the command's own, if it failed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

SHM = Path("/dev/shm")
PREFIXES = ("shmq-", "shmqside-")


def entries() -> set[str]:
    if not SHM.is_dir():
        return set()
    return {p.name for p in SHM.iterdir() if p.name.startswith(PREFIXES)}


def pids_of(path: str) -> set[str]:
    try:
        with open(path) as f:
            return {line.strip() for line in f if line.strip().isdigit()}
    except FileNotFoundError:
        return set()


def is_this_runs(entry: str, run: str, pids: set[str]) -> bool:
    for prefix in PREFIXES:
        if not entry.startswith(prefix):
            continue
        rest = entry[len(prefix) :]
        if rest.startswith(f"t{run}-"):
            return True
        if rest.startswith("anon-"):
            pid = rest[len("anon-") :].split("-", 1)[0]
            return pid in pids
    return False


def report(leaked: list[str]) -> None:
    print(f"leak_check: this run left {len(leaked)} segment(s) in {SHM}:", file=sys.stderr)
    for name in leaked:
        p = SHM / name
        try:
            size = p.stat().st_size
        except OSError:
            size = -1
        print(f"  {name} ({size} bytes)", file=sys.stderr)
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            print(f"  could not remove {name}: {e}", file=sys.stderr)
    print("leak_check: removed them; failing", file=sys.stderr)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    run = str(os.getpid())  # unique among live processes while the command runs
    fd, pids_file = tempfile.mkstemp(prefix=f"shmq-leak-check-{run}-", suffix=".pids")
    os.close(fd)
    try:
        before = entries()
        env = dict(os.environ, SHMQ_TEST_RUN=run, SHMQ_TEST_RUN_PIDS=pids_file)
        with subprocess.Popen(argv, env=env) as proc:
            code = proc.wait()
        pids = pids_of(pids_file) | {str(proc.pid)}
    finally:
        os.unlink(pids_file)
    leaked = sorted(e for e in entries() - before if is_this_runs(e, run, pids))
    if not leaked:
        print(f"leak_check: this run left no segment in {SHM}")
        return code
    report(leaked)
    return code or 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
