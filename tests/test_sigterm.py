"""SIGTERM (``docker stop``, ``kill``, ``Process.terminate()``) of the last process of a queue:
the handles close and the segment goes, as at a normal exit; a program's own SIGTERM
handler is never replaced."""

from __future__ import annotations

import signal
import subprocess
import sys

import _helpers as h


def _run(code: str, qname: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, qname], capture_output=True, text=True, timeout=60)


def test_sigterm_of_the_last_process_removes_its_queue(qname: str) -> None:
    # Blocked in get when the signal comes, as a worker waiting for work is.
    code = (
        "import os, signal, sys, threading, shmq\n"
        "q = shmq.Queue(sys.argv[1])\n"
        "threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
        "q.get()\n"
    )
    r = _run(code, qname)
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    assert not h.segment_path(qname).exists()


def test_an_anonymous_queue_goes_too(qname: str) -> None:
    code = (
        "import os, signal, sys, shmq\n"
        "q = shmq.Queue()\n"
        "print(q.name, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "q.get()\n"
    )
    r = _run(code, qname)
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    assert not h.segment_path(r.stdout.strip()).exists()


def test_the_programs_own_handler_is_kept(qname: str) -> None:
    code = (
        "import os, signal, sys, shmq\n"
        "signal.signal(signal.SIGTERM, lambda *a: print('mine', flush=True))\n"
        "q = shmq.Queue(sys.argv[1])\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "q.close()\n"
    )
    r = _run(code, qname)
    assert r.returncode == 0 and r.stdout == "mine\n", r
