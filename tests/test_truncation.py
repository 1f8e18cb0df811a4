"""A segment truncated by a buggy or hostile process (``os.truncate(path, 0)``): every
attached process gets ``CorruptedQueueError`` on its next operation, those asleep in ``get``
included, instead of dying of SIGBUS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

import _helpers as h
import shmq

CHILD = """
import sys, time, shmq
role, name = sys.argv[1], sys.argv[2]
q = shmq.Queue(name, create=False)
print("ready", flush=True)
try:
    if role == "sleeper":
        q.get(timeout=30)                       # asleep on the futex when the file shrinks
    else:
        sys.stdin.readline()                    # told when the file has shrunk
        q.put(b"after" * 1000, timeout=5) if role == "producer" else q.get(timeout=5)
    print("no error", flush=True)
except shmq.CorruptedQueueError as e:
    print("corrupted:", e, flush=True)
try:
    q.close()
except shmq.ShmqError as e:
    print("close:", type(e).__name__, flush=True)
"""


@pytest.mark.parametrize("size", [0, 4096])
def test_truncation_is_an_error_in_every_attached_process(qname: str, size: int) -> None:
    q = shmq.Queue(qname, create=True, capacity="1MiB", codec="raw")
    kids = {
        role: subprocess.Popen(
            [sys.executable, "-c", CHILD, role, qname],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for role in ("sleeper", "producer", "consumer")
    }
    try:
        for k in kids.values():
            assert k.stdout is not None and k.stdout.readline() == "ready\n"
        h.wait_for_sleeper(q, 0)  # the sleeper is in its futex wait
        os.truncate(h.segment_path(qname), size)
        for role in ("producer", "consumer"):
            stdin = kids[role].stdin
            assert stdin is not None
            stdin.write("go\n")
            stdin.flush()
        for role, k in kids.items():
            out, _ = k.communicate(timeout=60)
            assert k.returncode == 0, f"{role} died with {signal.Signals(-k.returncode).name}: {out}"
            assert "corrupted:" in out and "truncated" in out, f"{role}: {out}"
        # This process too.
        with pytest.raises(shmq.CorruptedQueueError, match="truncated"):
            q.get(timeout=1)
    finally:
        for k in kids.values():
            if k.poll() is None:
                k.kill()
                k.wait()
        q.close()
        h.segment_path(qname).unlink(missing_ok=True)
