"""Helpers shared by the test modules, and the functions child processes run.

This module is importable by ``multiprocessing`` spawn children and by pool workers (pytest
puts ``tests/`` on ``sys.path`` and spawn children inherit it), so everything a child runs
lives here rather than in a test module.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import shmq

SHM = Path("/dev/shm")

# --------------------------------------------------------------------------------------
# Synchronisation helpers (bounded waits on a condition, never a bare sleep)
# --------------------------------------------------------------------------------------


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Polls ``pred`` until it is true; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.002)


def wait_for_sleeper(q: shmq.Queue, waits_before: int, timeout: float = 10.0) -> None:
    """Waits until some process/thread attached to ``q`` went to sleep in a blocking call
    (the ``waits`` counter grew past ``waits_before``)."""
    wait_until(lambda: q.stats().waits > waits_before, timeout, "a blocked put/get to go to sleep")


# --------------------------------------------------------------------------------------
# Child processes: always joined with a timeout, killed on failure
# --------------------------------------------------------------------------------------


def _alive(p: Any) -> bool:
    if isinstance(p, subprocess.Popen):
        return p.poll() is None
    return bool(p.is_alive())


def _join(p: Any, timeout: float) -> None:
    if isinstance(p, subprocess.Popen):
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    else:
        p.join(timeout)


def join_all(procs: list[Any], timeout: float = 60.0) -> None:
    """Joins every process within ``timeout`` seconds overall; fails if one is still alive
    (the ``children()`` context manager then kills it)."""
    deadline = time.monotonic() + timeout
    for p in procs:
        _join(p, max(0.0, deadline - time.monotonic()))
    alive = [p for p in procs if _alive(p)]
    if alive:
        raise AssertionError(f"{len(alive)} child process(es) still running after {timeout}s: {alive}")


def exitcode(p: Any) -> int | None:
    return p.returncode if isinstance(p, subprocess.Popen) else p.exitcode


@contextlib.contextmanager
def children(grace: float = 5.0) -> Iterator[list[Any]]:
    """Yields a list; processes appended to it (``multiprocessing.Process`` or
    ``subprocess.Popen``) are terminated, then killed, if still alive when the block exits
    (normally the test has joined them already)."""
    procs: list[Any] = []
    try:
        yield procs
    finally:
        for p in procs:
            if _alive(p):
                p.terminate()
        deadline = time.monotonic() + grace
        for p in procs:
            _join(p, max(0.0, deadline - time.monotonic()))
        for p in procs:
            if _alive(p):
                p.kill()
                _join(p, grace)
        for p in procs:
            if isinstance(p, subprocess.Popen):
                for f in (p.stdin, p.stdout, p.stderr):
                    if f is not None:
                        f.close()


def reap_forked(pid: int, timeout: float = 30.0) -> int:
    """Waits for a child made with ``os.fork()``; kills it if it is still running after
    ``timeout`` seconds (and fails). Returns its exit status (``os.waitstatus_to_exitcode``)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"forked child {pid} still running after {timeout}s: killed")
        time.sleep(0.005)


def read_all(fd: int, timeout: float = 30.0) -> bytes:
    """Reads a pipe until EOF, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"pipe not closed within {timeout}s (got {data!r})")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                return data
            data += chunk


NOBODY = 65534


def open_as(uid: int, name: str) -> str:
    """In a forked child that dropped root to ``uid`` (group too): ``"opened"``, or what
    opening ``name`` read-write raised, as ``"<type>|<is a PermissionError>|<message>"``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            shmq.Queue(name, create=False)
            msg = "opened"
        except BaseException as e:  # noqa: BLE001
            msg = f"{type(e).__name__}|{isinstance(e, PermissionError)}|{e}"
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    try:
        return read_all(r, 30).decode()
    finally:
        os.close(r)
        reap_forked(pid, 30)


def kill_pool(executor: Any) -> None:
    """Kills the worker processes of a ``ProcessPoolExecutor`` that may be stuck."""
    for p in list((getattr(executor, "_processes", None) or {}).values()):
        if p.is_alive():
            p.kill()
            p.join(5)


def python(code: str, *args: str, stdin: bool = False) -> subprocess.Popen[bytes]:
    """Starts an unrelated interpreter running ``code`` (``sys.argv[1:]`` = ``args``)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


class LineReader:
    """Reads lines from a child's stdout with a deadline (no blocking forever)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.proc = proc
        self.buf = b""

    def readline(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line from the child within {timeout}s (got {self.buf!r})")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                chunk = os.read(self.fd, 4096)
                if not chunk:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise AssertionError(f"child closed stdout (got {self.buf!r}); stderr:\n{err}")
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def expect(self, marker: str, timeout: float = 20.0) -> None:
        line = self.readline(timeout)
        assert line == marker, f"expected {marker!r} from the child, got {line!r}"


# --------------------------------------------------------------------------------------
# Segments in /dev/shm
# --------------------------------------------------------------------------------------


def segment_path(name: str) -> Path:
    return SHM / f"{shmq.SEGMENT_PREFIX}{name}"


def remove_segment(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        segment_path(name).unlink()


# --------------------------------------------------------------------------------------
# Functions run in children (multiprocessing targets, pool initialisers and tasks)
# --------------------------------------------------------------------------------------


def child_echo(inbox: shmq.Queue | str, outbox: shmq.Queue | str, n: int) -> None:
    """Gets ``n`` objects from ``inbox`` and puts ``("echo", obj)`` for each on ``outbox``.
    Either may be a queue object (pickled or inherited) or a name."""
    qi = shmq.Queue(inbox, create=False) if isinstance(inbox, str) else inbox
    qo = shmq.Queue(outbox, create=False) if isinstance(outbox, str) else outbox
    for _ in range(n):
        qo.put(("echo", os.getpid(), qi.get(timeout=30)), timeout=30)
    qi.close()
    qo.close()


def child_hold(name: str, ready: Any, release: Any) -> None:
    """Opens ``name``, signals ``ready``, keeps the queue open until ``release`` is set."""
    q = shmq.Queue(name, create=False)
    ready.set()
    if not release.wait(30):
        raise SystemExit(3)
    q.close()


def child_wait(started: Any, release: Any) -> None:
    """Does nothing with any queue: signals ``started``, waits for ``release``, returns (a
    fork child then leaves with ``os._exit``)."""
    started.set()
    release.wait(30)


def child_put_and_wait(q: shmq.Queue, started: Any, release: Any) -> None:
    """Uses an inherited queue (so it attaches), signals ``started``, waits for ``release``."""
    q.put("attached")
    started.set()
    release.wait(30)


def child_put_and_exit_without_close(q: shmq.Queue, obj: Any) -> None:
    """Uses an inherited/pickled queue, then leaves without ``close()`` (``os._exit``)."""
    q.put(obj)
    os._exit(0)


def child_forked_uses_inherited(q: shmq.Queue, n: int) -> None:
    """After fork: takes ``n`` numbers from ``q`` and puts back their squares."""
    got = [q.get(timeout=30) for _ in range(n)]
    q.put_many([("sq", x * x) for x in got], timeout=30)


def child_open_race(name: str, barrier: Any) -> None:
    """Opens-or-creates ``name`` at the same moment as its siblings, then puts its pid."""
    barrier.wait(30)  # start together
    q = shmq.Queue(name, capacity=8192)
    barrier.wait(30)  # everyone (parent included) attached
    q.put(os.getpid(), timeout=30)
    barrier.wait(30)  # the parent took the pids
    q.close()


def child_churn(name: str, n: int) -> None:
    """Opens (or creates) and closes ``name`` ``n`` times, with one put and one get each."""
    for i in range(n):
        with shmq.Queue(name, capacity=8192) as q:
            q.put(i, timeout=30)
            q.get(timeout=30)


_POOL_QUEUE: shmq.Queue | None = None


def pool_init(q: shmq.Queue) -> None:
    global _POOL_QUEUE
    _POOL_QUEUE = q


def pool_task(x: int) -> int:
    assert _POOL_QUEUE is not None, "initializer did not run"
    _POOL_QUEUE.put((os.getpid(), x, x * 3), timeout=30)
    return os.getpid()


# Many producers x many consumers -------------------------------------------------------


def payload_of(producer: int, seq: int) -> bytes:
    """Deterministic payload of variable length (0..~300 bytes)."""
    return (b"%d:%d;" % (producer, seq)) * (seq % 23)


def producer(name: str, producer_id: int, count: int, batch: int) -> None:
    q = shmq.Queue(name, create=False)
    msgs = []
    for seq in range(count):
        data = payload_of(producer_id, seq)
        msgs.append((producer_id, seq, data, zlib.crc32(data)))
        if len(msgs) >= batch:
            if batch == 1:
                q.put(msgs[0], timeout=60)
            else:
                q.put_many(msgs, timeout=60)
            msgs = []
    if msgs:
        q.put_many(msgs, timeout=60)
    q.close()


def consumer(name: str, consumer_id: int, batch: int, out: str) -> None:
    """Takes messages until it gets a ``None`` sentinel; records the sequence numbers seen
    per producer, in the order seen, and every malformed message; writes them to ``out``."""
    import pickle

    q = shmq.Queue(name, create=False)
    seen: dict[int, list[int]] = {}
    bad: list[Any] = []
    done = False
    while not done:
        items = [q.get(timeout=60)] if batch == 1 else q.get_many(batch, timeout=60)
        extra_sentinels = -1
        for m in items:
            if m is None:
                # The sentinels come after every message: nothing follows them.
                done = True
                extra_sentinels += 1
                continue
            try:
                p, seq, data, crc = m
                ok = zlib.crc32(data) == crc and data == payload_of(p, seq)
            except Exception:  # noqa: BLE001 - anything malformed is recorded
                ok = False
            if ok:
                seen.setdefault(p, []).append(seq)
            else:
                bad.append(m)
        for _ in range(extra_sentinels):
            q.put(None, timeout=60)  # a batch took another consumer's end marker: give it back
    q.close()
    with open(out, "wb") as f:
        pickle.dump({"seen": seen, "bad": bad}, f)


def install_default_sigint() -> None:
    """Children of a shell that ignores SIGINT inherit SIG_IGN; make Ctrl-C raise."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


# --------------------------------------------------------------------------------------
# Broadcast children
# --------------------------------------------------------------------------------------


def subscriber_collect(name: str, ready: Any, count: int, out: str, batch: int) -> None:
    """Subscribes, signals ``ready``, reads ``count`` messages (with ``get_many`` when
    ``batch > 1``), and writes ``got missed`` and a checksum of the order to ``out``."""
    with shmq.Subscriber(name) as sub:
        ready.set()
        got: list[int] = []
        missed = 0
        while len(got) + missed < count:
            try:
                if batch > 1:
                    got.extend(sub.get_many(batch, timeout=30))
                else:
                    got.append(sub.get(timeout=30))
            except shmq.Lagged as e:
                missed += e.missed
        in_order = all(a < b for a, b in zip(got, got[1:]))
        Path(out).write_text(f"{len(got)} {missed} {int(in_order)} {sum(got)}")


def subscriber_hold(name: str, ready: Any) -> None:
    """Subscribes, signals ``ready`` and never reads (until killed)."""
    sub = shmq.Subscriber(name)
    ready.set()
    while True:
        time.sleep(3600)
        sub.get_nowait()


def side_segments(name: str) -> list[str]:
    """Side segments (messages larger than the ring) of queue or broadcast ``name``."""
    return sorted(p.name for p in SHM.glob(f"shmqside-{name}-*"))


def consume_large(name: str, n: int, out: str) -> None:
    """Takes ``n`` messages from queue ``name`` and writes their lengths and checksums."""
    with shmq.Queue(name, create=False) as q:
        got = [q.get(timeout=60) for _ in range(n)]
    Path(out).write_text(" ".join(f"{len(m)}:{zlib.crc32(m)}" for m in got))
