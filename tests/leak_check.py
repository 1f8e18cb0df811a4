"""Fails if the test suite left shared-memory segments behind.

Run after pytest (``make test-python``): lists every ``/dev/shm/shmq-t*`` (the tests'
queues, named ``t<pid>-...``) and ``/dev/shm/shmq-anon-*`` (queues made with ``name=None``)
entry, removes them, and exits with status 1 if there was any.
"""

from __future__ import annotations

import sys
from pathlib import Path

SHM = Path("/dev/shm")
PATTERNS = ("shmq-t*", "shmq-anon-*", "shmqside-t*", "shmqside-anon-*")


def main() -> int:
    if not SHM.is_dir():
        print(f"leak_check: {SHM} does not exist; nothing to check")
        return 0
    leftovers = sorted({p for pattern in PATTERNS for p in SHM.glob(pattern)})
    if not leftovers:
        print("leak_check: no shmq test segment left in /dev/shm")
        return 0
    print(f"leak_check: {len(leftovers)} segment(s) left in {SHM}:", file=sys.stderr)
    for p in leftovers:
        try:
            size = p.stat().st_size
        except OSError:
            size = -1
        print(f"  {p.name} ({size} bytes)", file=sys.stderr)
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            print(f"  could not remove {p.name}: {e}", file=sys.stderr)
    print("leak_check: removed them; failing", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
