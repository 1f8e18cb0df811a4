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


def open_as(uid: int, name: str, **kwargs: Any) -> str:
    """In a forked child that dropped root to ``uid`` (group too): ``"opened"``, or what
    opening ``name`` read-write (with ``kwargs``) raised, as
    ``"<type>|<is a PermissionError>|<message>"``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            shmq.Queue(name, create=False, **kwargs)
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


def kept_by_design(entry: str) -> bool:
    """Whether a leftover entry of /dev/shm is a ring the lifecycle keeps on purpose: its
    last process left it with messages in it, or with a handle in flight (pickled for a child
    that never attached). Nobody is attached; ``shmq gc`` or a reader deals with it. Anything
    else left behind is a leak."""
    if not entry.startswith(shmq.SEGMENT_PREFIX):
        return False
    try:
        i = shmq.inspect(entry[len(shmq.SEGMENT_PREFIX) :])
    except (shmq.ShmqError, OSError):
        return False
    return i["live"] == 0 and i["kept_for"] is not None


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


# --------------------------------------------------------------------------------------
# Watchdog: a workload that may hang runs in other processes, watched for progress
# --------------------------------------------------------------------------------------

TESTS_DIR = str(Path(__file__).resolve().parent)


def python_call(func: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """Starts an unrelated interpreter running ``_helpers.<func>(*args)``, with faulthandler
    on (SIGABRT dumps every thread's stack) and stdout/stderr going to ``log`` (a file: a
    child that dumps 64 stacks can never block on a full pipe)."""
    code = f"import sys; sys.path.insert(0, {TESTS_DIR!r}); import _helpers; _helpers.{func}(*sys.argv[1:])"
    with open(log, "wb") as f:
        return subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-c", code, *args],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
        )


def _log_tail(log: Path, lines: int = 60) -> str:
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    tail = text.splitlines()[-lines:]
    return "\n".join(tail)


def watchdog(
    procs: list[Any],
    progress: Callable[[], Any],
    what: str,
    *,
    total: float = 60.0,
    stall: float = 20.0,
    logs: tuple[Path, ...] = (),
) -> float:
    """Waits until every process of ``procs`` has exited, and returns the time that took.

    Fails with ``hung: <what>: ...`` as soon as ``progress()`` (e.g. a queue's counters,
    which every attached process updates in shared memory) stayed the same for ``stall``
    seconds, or after ``total`` seconds in all. A hung child is first sent SIGABRT (with
    faulthandler enabled it prints every thread's stack: the tail of ``logs`` is quoted in
    the failure), then killed; the caller's ``children()`` block reaps what is left."""
    start = time.monotonic()
    last = progress()
    last_change = start
    while any(_alive(p) for p in procs):
        now = time.monotonic()
        cur = progress()
        if cur != last:
            last, last_change = cur, now
        if now - last_change > stall or now - start > total:
            if now - last_change > stall:
                reason = f"no progress for {stall:.0f} s (progress stuck at {last})"
            else:
                reason = f"still running after {total:.0f} s (progress {last})"
            alive = [p for p in procs if _alive(p)]
            for p in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGABRT)  # faulthandler: dump the stacks, then die
            deadline = time.monotonic() + 10
            for p in alive:
                _join(p, max(0.0, deadline - time.monotonic()))
            for p in alive:
                if _alive(p):
                    p.kill()
                    _join(p, 5)
            stacks = "\n".join(f"--- {log.name} ---\n{_log_tail(log)}" for log in logs)
            raise AssertionError(
                f"hung: {what}: {reason}; {len(alive)} child process(es) killed"
                + (f"\n{stacks}" if stacks else "")
            )
        time.sleep(0.05)
    return time.monotonic() - start


# --------------------------------------------------------------------------------------
# Threads on one handle: payloads whose unpickling runs Python code
# --------------------------------------------------------------------------------------

#: Pickles at least this large are decoded straight from shared memory (in place) by
#: ``Queue.get``/``Subscriber.get``; smaller ones from a copy. "Large" payloads are padded
#: comfortably past it, "small" ones stay far below it.
IN_PLACE_MIN = 16 * 1024
LARGE_PAD = IN_PLACE_MIN + 3616  # 20,000 bytes (+ up to 666 more)


def slow_decode(producer: int, thread: int, seq: int, crc: int, pad: bytes, work: int) -> tuple[int, int, int, bool]:
    """What a ``SlowDecode`` unpickles to: runs ``work`` iterations of Python code (so the
    GIL changes hands while the message is being decoded), then checks the padding."""
    s = 0
    for k in range(work):
        s += k
    return (producer, thread, seq, zlib.crc32(pad) == crc)


def thread_pad(producer: int, thread: int, seq: int, large: bool) -> bytes:
    unit = b"%d.%d.%d;" % (producer, thread, seq)
    n = LARGE_PAD + (seq % 7) * 111 if large else (seq % 50) * 7
    return (unit * (n // len(unit) + 1))[:n]


class SlowDecode:
    """A message ``(producer, thread, seq)`` whose unpickling runs Python code
    (``slow_decode``); ``large`` pads it past ``IN_PLACE_MIN``."""

    def __init__(self, producer: int, thread: int, seq: int, large: bool, work: int) -> None:
        self.key = (producer, thread, seq)
        self.pad = thread_pad(producer, thread, seq, large)
        self.work = work

    def __reduce__(self) -> tuple[Any, ...]:
        return (slow_decode, (*self.key, zlib.crc32(self.pad), self.pad, self.work))


def is_large(payload: str, seq: int) -> bool:
    return payload == "large" or (payload == "mixed" and seq % 2 == 0)


def produce_thread(
    q: Any, producer: int, thread: int, count: int, payload: str, work: int, publish: bool = False
) -> None:
    """Puts ``count`` messages ``(producer, thread, 0..count-1)`` in order, rotating through
    put(timeout)/put_many/put_nowait (publish/publish_many for a broadcast)."""
    seq = 0
    k = 0
    while seq < count:
        way = (thread + k) % 3
        k += 1
        if way == 1:
            n = min(1 + k % 5, count - seq)
            batch = [SlowDecode(producer, thread, s, is_large(payload, s), work) for s in range(seq, seq + n)]
            (q.publish_many if publish else q.put_many)(batch, timeout=30)
            seq += n
            continue
        msg = SlowDecode(producer, thread, seq, is_large(payload, seq), work)
        if way == 0 or publish:
            (q.publish if publish else q.put)(msg, timeout=30)
        else:
            try:
                q.put_nowait(msg)
            except shmq.Full:
                time.sleep(0.001)
                continue
        seq += 1


def consume_thread(src: Any, thread: int, done: Any, got: list[Any], errors: list[str]) -> None:
    """Takes messages from ``src`` (a Queue or a Subscriber), rotating through
    get(timeout)/get_nowait/get_many, appending each to ``got`` in the order taken, until it
    finds nothing left once ``done`` (every producer finished) is set."""
    k = 0
    try:
        while True:
            way = (thread + k) % 3
            k += 1
            # Once every producer finished, waits are short: what is left is there already
            # (and an implementation that serialises waits too is not slowed to a crawl).
            finishing = done.is_set()
            timeout = 0.02 if finishing else 0.2
            try:
                if way == 0:
                    got.append(src.get(timeout=timeout))
                elif way == 1:
                    got.append(src.get_nowait())
                else:
                    got.extend(src.get_many(1 + k % 7, timeout=timeout))
            except shmq.Empty:
                if finishing:
                    return
    except BaseException as e:  # noqa: BLE001 - reported to the test
        errors.append(f"consumer thread {thread}: {type(e).__name__}: {e}")


def _start_all(threads: list[Any]) -> None:
    for t in threads:
        t.start()


def threads_queue_child(name: str, out: str, spec: str) -> None:
    """Runs in a watched interpreter: the main thread puts ``backlog`` messages, then
    ``producers`` threads put ``count`` messages each while ``consumers`` threads get, all
    on ONE handle of queue ``name``. Writes what each consumer thread took, in order, to
    ``out`` (JSON)."""
    import json
    import threading

    cfg = json.loads(spec)
    sys.setswitchinterval(cfg.get("switch", 0.0005))  # threads interleave inside decoding
    q = shmq.Queue(name, create=False)
    done = threading.Event()
    errors: list[str] = []
    got: list[list[Any]] = [[] for _ in range(cfg["consumers"])]
    producers = []

    def produce(t: int) -> None:
        try:
            produce_thread(q, 0, t, cfg["count"], cfg["payload"], cfg["work"])
        except BaseException as e:  # noqa: BLE001
            errors.append(f"producer thread {t}: {type(e).__name__}: {e}")

    if cfg["backlog"]:
        # The main thread fills the queue first (as producer thread ``producers``): the
        # consumers start with work waiting, as they would behind a burst of puts.
        produce_thread(q, 0, cfg["producers"], cfg["backlog"], cfg["backlog_payload"], cfg["work"])
    producers = [threading.Thread(target=produce, args=(t,)) for t in range(cfg["producers"])]
    consumers = [
        threading.Thread(target=consume_thread, args=(q, i, done, got[i], errors)) for i in range(cfg["consumers"])
    ]
    _start_all(consumers + producers)
    for t in producers:
        t.join()
    done.set()
    for t in consumers:
        t.join()
    q.close()
    Path(out).write_text(json.dumps({"got": got, "errors": errors}))


def threads_subscribers_child(name: str, out: str, spec: str) -> None:
    """Runs in a watched interpreter: ``subscribers`` Subscribers of broadcast ``name``, each
    read by ``threads`` threads, while the main thread publishes ``count`` messages. Writes
    what each thread of each subscriber read, in order, to ``out`` (JSON)."""
    import json
    import threading

    cfg = json.loads(spec)
    sys.setswitchinterval(cfg.get("switch", 0.0005))
    pub = shmq.Broadcast(name, create=False)
    subs = [shmq.Subscriber(name) for _ in range(cfg["subscribers"])]  # before the first publish
    done = threading.Event()
    errors: list[str] = []
    got: list[list[list[Any]]] = [[[] for _ in range(cfg["threads"])] for _ in subs]
    readers = [
        threading.Thread(target=consume_thread, args=(sub, i, done, got[s][i], errors))
        for s, sub in enumerate(subs)
        for i in range(cfg["threads"])
    ]
    _start_all(readers)
    try:
        produce_thread(pub, 0, 0, cfg["count"], cfg["payload"], cfg["work"], publish=True)
    except BaseException as e:  # noqa: BLE001
        errors.append(f"publisher: {type(e).__name__}: {e}")
    done.set()
    for t in readers:
        t.join()
    for sub in subs:
        sub.close()
    pub.close()
    Path(out).write_text(json.dumps({"got": got, "errors": errors}))


# Processes x threads on one queue ---------------------------------------------------------


def stress_producer(name: str, producer: int, threads: int, count: int, work: int) -> None:
    """A producer process: ``threads`` threads on one handle, each putting ``count``
    messages ``(producer, thread, seq)`` (mixed sizes, decoding runs Python code)."""
    import faulthandler
    import threading

    faulthandler.enable()
    sys.setswitchinterval(0.0005)
    q = shmq.Queue(name, create=False)
    errors: list[str] = []

    def run(t: int) -> None:
        try:
            produce_thread(q, producer, t, count, "mixed" if t % 2 else "small", work)
        except BaseException as e:  # noqa: BLE001
            errors.append(f"producer {producer} thread {t}: {type(e).__name__}: {e}")

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    _start_all(ts)
    for t in ts:
        t.join()
    q.close()
    if errors:
        raise SystemExit("; ".join(errors))


def stress_consumer(name: str, consumer: int, threads: int, done: Any, out: str) -> None:
    """A consumer process: ``threads`` threads on one handle taking messages until the queue
    is empty once ``done`` is set; writes what each thread took, in order, to ``out``."""
    import faulthandler
    import json
    import threading

    faulthandler.enable()
    sys.setswitchinterval(0.0005)
    q = shmq.Queue(name, create=False)
    errors: list[str] = []
    got: list[list[Any]] = [[] for _ in range(threads)]
    ts = [threading.Thread(target=consume_thread, args=(q, i, done, got[i], errors)) for i in range(threads)]
    _start_all(ts)
    for t in ts:
        t.join()
    q.close()
    Path(out).write_text(json.dumps({"got": got, "errors": errors}))
