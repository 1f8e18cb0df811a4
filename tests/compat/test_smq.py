"""shmq.compat.smq against the shared-multiprocess-queue 0.1.5 README
(examples/python/compat/shared-multiprocess-queue-README.md): every documented call, across
processes, the README's examples as written (only the import changed), and the original's
bugs that the compat module fixes (marked "fixed:")."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import pickle
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import shmq
import shmq.compat.smq as smq
from _compat_children import (
    smq_consumer,
    smq_exit_normally,
    smq_get_forever,
    smq_producer,
    smq_put_and_exit,
    smq_put_forever,
    smq_with_handle,
)
from _helpers import children, join_all, segment_path, wait_until
from shmq.compat.smq import Empty, Full, SharedMemoryQueue

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "python" / "compat"
README = EXAMPLES / "shared-multiprocess-queue-README.md"  # the original's README, as published
RUN = "smqtest"  # run_id of the tests' queues: segments are shmq-smqtest.t<pid>-...


@pytest.fixture
def make(qname: str) -> Iterator[Callable[..., SharedMemoryQueue]]:
    """``make(name=qname, **kwargs)``; every handle is closed at teardown."""
    made: list[SharedMemoryQueue] = []

    def _make(name: str = qname, **kwargs: Any) -> SharedMemoryQueue:
        kwargs.setdefault("run_id", RUN)
        q = SharedMemoryQueue(name, **kwargs)
        made.append(q)
        return q

    yield _make
    for q in made:
        q.close()


def _gone(name: str, run_id: str = RUN) -> bool:
    return not segment_path(f"{run_id}.{name}" if run_id else name).exists()


@pytest.fixture(autouse=True)
def _no_leftover(qname: str) -> Iterator[None]:
    # conftest's leak check knows names starting with t<pid>-; ours carry the run_id first.
    yield
    for suffix in ("", "-out", "-2"):
        for run_id in (RUN, "", "other"):
            path = segment_path(f"{run_id}.{qname}{suffix}" if run_id else f"{qname}{suffix}")
            if path.exists():
                path.unlink()
                pytest.fail(f"test left {path.name} in /dev/shm (now removed)")


def sized(n: int) -> bytes:
    """A bytes object whose serialized form is exactly ``n`` bytes."""
    k = n
    while len(smq.dumps(b"x" * k)) > n:
        k -= 1
    assert len(smq.dumps(b"x" * k)) == n
    return b"x" * k


# -- surface -------------------------------------------------------------------------------


def test_exceptions() -> None:
    assert issubclass(Empty, queue.Empty) and issubclass(Full, queue.Full)
    assert issubclass(Empty, shmq.Empty) and issubclass(Full, shmq.Full)
    assert SharedMemoryQueue.Empty is Empty and SharedMemoryQueue.Full is Full
    assert issubclass(smq.DecodeError, ValueError) and issubclass(smq.DecodeError, shmq.DecodeError)


def test_create_and_connect(make: Callable[..., SharedMemoryQueue], qname: str) -> None:
    a = make(create=True, capacity=1000, item_size=4096, lock=object())  # lock is ignored
    b = make()  # create=False is the default
    assert (a.name, a.run_id, a.capacity, a.item_size) == (qname, RUN, 1000, 4096)
    assert (b.name, b.run_id, b.capacity, b.item_size) == (qname, RUN, 1000, 4096)
    a.put("hello")
    assert b.get(timeout=5) == "hello"
    with pytest.raises(FileExistsError):
        SharedMemoryQueue(qname, create=True, run_id=RUN)
    with pytest.raises(FileNotFoundError):
        SharedMemoryQueue(qname + "-2", run_id=RUN)
    with pytest.raises(ValueError):
        SharedMemoryQueue(qname + "-2", create=True, capacity=0, run_id=RUN)
    assert _gone(qname + "-2")


def test_run_id_namespaces(make: Callable[..., SharedMemoryQueue], qname: str) -> None:
    a = make(create=True)
    other = make(create=True, run_id="other")
    a.put("a")
    other.put("other")
    assert segment_path(f"{RUN}.{qname}").exists() and segment_path(f"other.{qname}").exists()
    assert make().get(timeout=5) == "a"
    assert make(run_id="other").get(timeout=5) == "other"
    with pytest.raises(FileNotFoundError):
        SharedMemoryQueue(qname, run_id="")


def test_put_get_fifo_and_sizes(make: Callable[..., SharedMemoryQueue]) -> None:
    q = make(create=True, capacity=5, item_size=256)
    assert q.empty() and not q.full() and q.qsize() == 0
    for i in range(5):
        q.put({"i": i})
    assert q.full() and q.qsize() == 5 and not q.empty()
    with pytest.raises(Full):
        q.put_nowait("one too many")
    with pytest.raises(Full):
        q.put("one too many", block=False)
    assert [q.get() for _ in range(5)] == [{"i": i} for i in range(5)]
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):  # the README's `except queue.Empty`
        q.get(block=False)


def test_capacity_items_of_item_size_fit(make: Callable[..., SharedMemoryQueue]) -> None:
    q = make(create=True, capacity=10, item_size=1000)
    item = sized(1000)  # fixed: an item of exactly item_size bytes fits
    for _ in range(10):
        q.put_nowait(item)
    assert q.full()
    assert all(q.get_nowait() == item for _ in range(10))
    with pytest.raises(ValueError, match="Item too large: 1001 bytes > 1000 bytes"):
        q.put(sized(1001))
    with pytest.raises(ValueError, match="Failed to serialize"):
        q.put(threading.Lock())  # neither pickle nor cloudpickle can
    assert q.empty()


@pytest.mark.timeout(30)
def test_fixed_timeout_zero_does_not_wait_forever(make: Callable[..., SharedMemoryQueue]) -> None:
    q = make(create=True, capacity=1)
    with pytest.raises(Empty):
        q.get(timeout=0)
    with pytest.raises(Empty):
        q.get(timeout=-1)  # negative: no wait, as the original
    q.put(1)
    with pytest.raises(Full):
        q.put(2, timeout=0)
    t = time.monotonic()
    with pytest.raises(Full):
        q.put(2, block=True, timeout=0.1)
    assert time.monotonic() - t >= 0.1
    q.get()
    t = time.monotonic()
    with pytest.raises(Empty):
        q.get(block=True, timeout=0.1)
    assert time.monotonic() - t >= 0.1


def test_put_batch_is_all_or_nothing(make: Callable[..., SharedMemoryQueue]) -> None:
    q = make(create=True, capacity=10, item_size=200)
    q.put_batch([])
    q.put_batch([f"item_{i}" for i in range(6)])
    assert q.qsize() == 6
    with pytest.raises(Full):
        q.put_batch(["a", "b", "c", "d", "e"])  # 6 + 5 > 10: nothing is put
    assert q.qsize() == 6
    with pytest.raises(Full):
        q.put_batch(["x"] * 11)
    with pytest.raises(ValueError):
        q.put_batch(["ok", sized(201)])  # one too large: nothing is put
    assert q.qsize() == 6
    q.put_batch(iter(["g", "h", "i", "j"]))
    assert q.full()
    assert [q.get() for _ in range(10)] == [f"item_{i}" for i in range(6)] + ["g", "h", "i", "j"]


def test_get_metrics(make: Callable[..., SharedMemoryQueue]) -> None:
    q = make(create=True, capacity=1000)
    for i in range(100):
        q.put(f"item_{i}")
    assert q.get_metrics() == {
        "queue_size": 100,
        "queue_capacity": 1000,
        "queue_utilization_percent": 10.0,
        "queue_item_size_bytes": 4096,
    }
    q.close()
    assert q.get_metrics() == {}


def test_async_put_and_get(make: Callable[..., SharedMemoryQueue]) -> None:
    q = make(create=True, capacity=2)

    async def main() -> None:
        waiter = asyncio.ensure_future(q.get_async(timeout=10))
        await asyncio.sleep(0)  # the waiter found the queue empty and yields
        assert not waiter.done()
        await q.put_async("x")
        assert await waiter == "x"
        await q.put_async(1)
        await q.put_async(2)
        with pytest.raises(Full):
            await q.put_async(3, timeout=0)
        with pytest.raises(Full):
            await q.put_async(3, timeout=0.05)
        assert [await q.get_async(), await q.get_async(0)] == [1, 2]
        with pytest.raises(Empty):
            await q.get_async(timeout=0)
        # A cancelled get takes nothing.
        waiter = asyncio.ensure_future(q.get_async())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        q.put("kept")

    asyncio.run(asyncio.wait_for(main(), 30))
    assert q.get_nowait() == "kept"


def test_close_and_unlink(make: Callable[..., SharedMemoryQueue], qname: str) -> None:
    a = make(create=True)
    b = make()
    a.put(1)
    a.close()
    a.close()  # idempotent
    assert not _gone(qname) and b.get(timeout=5) == 1
    c = make()
    c.unlink()  # removes the name; b keeps working
    assert _gone(qname)
    with pytest.raises(FileNotFoundError):
        SharedMemoryQueue(qname, run_id=RUN)
    b.put(2)
    assert b.get() == 2
    a.unlink()  # on a closed handle, with the name gone: nothing to do


def test_unlink_after_close_removes_the_queue(make: Callable[..., SharedMemoryQueue], qname: str) -> None:
    a = make(create=True)
    b = make()
    a.close()
    a.unlink()  # the original's order in its examples also works
    assert _gone(qname)
    b.put(1)
    assert b.get() == 1


def test_last_close_removes_the_queue(make: Callable[..., SharedMemoryQueue], qname: str) -> None:
    a = make(create=True)
    b = make()
    a.close()
    assert not _gone(qname)
    b.close()
    assert _gone(qname)


def test_pickling(make: Callable[..., SharedMemoryQueue]) -> None:
    q = make(create=True, capacity=3, item_size=100)
    assert make().item_size >= 100  # by name: derived from the ring (see the module doc)
    r = pickle.loads(pickle.dumps(q))
    try:
        assert (r.name, r.run_id, r.capacity, r.item_size) == (q.name, q.run_id, 3, 100)
        q.put("via original")
        assert r.get(timeout=5) == "via original"
        assert r.__getstate__() == {"name": q.name, "run_id": RUN, "capacity": 3, "item_size": 100}
    finally:
        r.close()


def test_undecodable_item_is_not_lost(make: Callable[..., SharedMemoryQueue], qname: str) -> None:
    q = make(create=True)
    bad = b"cno_such_module_for_shmq_tests\nThing\n)R."  # a pickle of a class that is not there
    with shmq.Queue(f"{RUN}.{qname}", create=False, codec="raw") as plain:
        plain.put(bad)
        with pytest.raises(ValueError) as ei:  # the original's error type
            q.get(timeout=5)
        assert isinstance(ei.value, smq.DecodeError) and ei.value.raw == bad  # fixed: not dropped
        q.put({"k": 1})  # and a plain shmq consumer gets the pickled bytes
        assert pickle.loads(plain.get(timeout=5)) == {"k": 1}


def test_serializer_is_cloudpickle_when_installed(tmp_path: Path) -> None:
    fake = tmp_path / "cloudpickle.py"
    fake.write_text("import pickle\ncalls = []\ndef dumps(obj):\n    calls.append(obj)\n    return pickle.dumps(obj)\n")
    code = (
        "import cloudpickle, pickle, shmq.compat.smq as smq\n"
        "assert smq.dumps is cloudpickle.dumps and smq.loads is pickle.loads\n"
        "q = smq.SharedMemoryQueue('t%d-cp', create=True, capacity=2, item_size=64)\n"
        "q.put('x'); assert q.get() == 'x' and cloudpickle.calls == ['x']\n"
        "q.unlink()\n" % os.getpid()
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    code = "import sys; sys.modules['cloudpickle'] = None\nimport shmq.compat.smq as smq\nassert smq._cloudpickle is None\nassert smq.loads(smq.dumps({1: 2})) == {1: 2}\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_lambda_round_trip_with_real_cloudpickle(make: Callable[..., SharedMemoryQueue]) -> None:
    pytest.importorskip("cloudpickle")
    q = make(create=True)
    q.put(lambda x: x + 1)
    assert q.get()(1) == 2


# -- across processes ----------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_producers_and_consumers_across_processes(
    make: Callable[..., SharedMemoryQueue], qname: str, start_method: str
) -> None:
    q = make(create=True, capacity=50, item_size=256)
    out = make(qname + "-out", create=True, capacity=10, item_size=1 << 16)
    ctx = mp.get_context(start_method)
    with children() as procs:
        for _ in range(2):
            procs.append(ctx.Process(target=smq_producer, args=(qname, RUN, 300)))
        for _ in range(2):
            procs.append(ctx.Process(target=smq_consumer, args=(qname, RUN, qname + "-out")))
        for p in procs:
            p.start()
        join_all(procs[:2])
        q.put_batch([None, None])
        got = out.get(timeout=60) + out.get(timeout=60)
        join_all(procs)
    assert all(p.exitcode == 0 for p in procs)
    by_pid: dict[int, list[int]] = {}
    for item in got:
        by_pid.setdefault(item["pid"], []).append(item["i"])
    assert sorted(len(v) for v in by_pid.values()) == [300, 300]
    assert all(sorted(v) == list(range(300)) for v in by_pid.values())


@pytest.mark.timeout(60)
def test_pickled_handles_in_a_spawn_child(make: Callable[..., SharedMemoryQueue], qname: str) -> None:
    q = make(create=True, capacity=7, item_size=100)
    out = make(qname + "-out", create=True)
    q.put("ping")
    with children() as procs:
        p = mp.get_context("spawn").Process(target=smq_with_handle, args=(q, out))
        procs.append(p)
        p.start()
        assert out.get(timeout=30) == (7, 100, "ping")
        join_all(procs)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["os._exit", "return"])
def test_fixed_exiting_process_does_not_delete_the_queue(
    make: Callable[..., SharedMemoryQueue], qname: str, how: str
) -> None:
    q = make(create=True)
    target = smq_put_and_exit if how == "os._exit" else smq_exit_normally
    with children() as procs:
        p = mp.get_context("spawn").Process(target=target, args=(qname, RUN, "from child"))
        procs.append(p)
        p.start()
        join_all(procs)
    assert p.exitcode == 0
    assert q.get(timeout=10) == "from child"
    assert make().capacity == 1000  # others can still open it by name


@pytest.mark.timeout(90)
@pytest.mark.parametrize("role", ["producer", "consumer"])
def test_fixed_killed_process_does_not_deadlock(make: Callable[..., SharedMemoryQueue], qname: str, role: str) -> None:
    q = make(create=True, capacity=64, item_size=64)
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    target = smq_put_forever if role == "producer" else smq_get_forever
    with children() as procs:
        p = ctx.Process(target=target, args=(qname, RUN, ready))
        procs.append(p)
        p.start()
        assert ready.wait(30)
        for i in range(2000):  # keep it busy in put/get while it is killed
            if role == "producer":
                q.get(timeout=30)
            else:
                q.put(i, timeout=30)
        os.kill(p.pid, signal.SIGKILL)
        join_all(procs)
    while True:
        try:
            q.get(timeout=0)
        except Empty:
            break
    q.put_batch(list(range(64)))
    assert [q.get(timeout=5) for _ in range(64)] == list(range(64))
    assert q.empty()


@pytest.mark.timeout(60)
def test_blocked_get_wakes_when_another_process_puts(make: Callable[..., SharedMemoryQueue], qname: str) -> None:
    q = make(create=True)
    out = make(qname + "-out", create=True)
    with children() as procs:
        p = mp.get_context("spawn").Process(target=smq_consumer, args=(qname, RUN, qname + "-out"))
        procs.append(p)
        p.start()
        wait_until(lambda: shmq.Queue(f"{RUN}.{qname}", create=False).stats().attached >= 3, what="child attached")
        q.put("wake")
        q.put(None)
        assert out.get(timeout=30) == ["wake"]
        join_all(procs)


# -- the README's examples -----------------------------------------------------------------

SCRIPTS = sorted(EXAMPLES.glob("smq_*.py"))


def _shm_entries() -> set[str]:
    return {p.name for p in Path("/dev/shm").iterdir() if p.name.startswith(shmq.SEGMENT_PREFIX)}


def test_examples_are_the_readme_blocks_as_written() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    texts = [s.read_text() for s in SCRIPTS]
    assert len(blocks) == len(SCRIPTS) == 8
    for block in blocks:
        rewritten = block.replace("from shared_multiprocess_queue import", "from shmq.compat.smq import")
        assert any(rewritten in t for t in texts), block


@pytest.mark.timeout(120)
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_readme_example_runs(script: Path) -> None:
    before = _shm_entries()
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90, cwd=EXAMPLES)
    assert r.returncode == 0, r.stderr
    if script.stem == "smq_quick_start":
        done = re.findall(r"Worker \d processing: (task_\d+)", r.stdout)  # the workers' lines may interleave
        assert sorted(done) == sorted(f"task_{i}" for i in range(20)), r.stdout
        assert r.stdout.endswith("Final queue size: 0\n")
    if script.stem == "smq_metrics":
        assert "Queue size: 100\nCapacity: 1000\nUtilization: 10.0%\nItem size limit: 4096 bytes\n" in r.stdout
    # Names the compat examples use; other processes of the machine (another test run, a
    # benchmark) may create test (`t...`) or anonymous (`anon-<pid>-...`) queues meanwhile.
    others = (f"{shmq.SEGMENT_PREFIX}t", f"{shmq.SEGMENT_PREFIX}anon-")
    left = {e for e in _shm_entries() - before if not e.startswith(others)}
    assert not left, f"the example left {left} in /dev/shm"
