"""shmq.compat.vllm against vLLM's ``shm_broadcast.MessageQueue``: its surface and handshake,
writer and readers in separate processes (shared-memory readers and a remote reader over TCP
loopback), out-of-band buffers, timeouts, shutdown, and the original's complaints that this
module fixes (marked "fixed:": a dead reader stalls the writer, idle readers spin, messages
larger than a chunk leave shared memory, readers cannot join late)."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pickle import PickleBuffer
from typing import Any

import pytest

import shmq
from _helpers import children, join_all, segment_path, wait_until
from _vllm_children import (
    MiB,
    PipeGroup,
    describe,
    expected,
    group_rank,
    message,
    pattern,
    reader,
    reader_until_none,
    stuck_reader,
    writer,
)
from shmq.compat.vllm import CHUNK_OVERHEAD, Handle, MessageQueue

SPAWN = mp.get_context("spawn")

Make = Callable[..., MessageQueue]


@pytest.fixture
def made() -> Iterator[list[MessageQueue]]:
    """Every MessageQueue a test appends here is shut down at teardown (readers first)."""
    mqs: list[MessageQueue] = []
    yield mqs
    for mq in sorted(mqs, key=lambda m: m._is_writer):
        mq.shutdown()


def setup(made: list[MessageQueue], *args: Any, ranks: list[int], **kwargs: Any) -> tuple[MessageQueue, list[MessageQueue]]:
    """A writer and one reader per rank in this process, handshake done."""
    w = MessageQueue(*args, **kwargs)
    made.append(w)
    handle = pickle.loads(pickle.dumps(w.export_handle()))
    rs = [MessageQueue.create_from_handle(handle, r) for r in ranks]
    made.extend(rs)
    w.wait_until_ready(timeout=10)  # the writer only waits for connections, so one thread works
    for r in rs:
        r.wait_until_ready(timeout=10)
    return w, rs


def recv(conn: Any, timeout: float = 120) -> Any:
    assert conn.poll(timeout), f"no answer from a child within {timeout}s"
    status, value = conn.recv()
    assert status == "ok", f"child failed:\n{value}"
    return value


def ring_name(handle: Handle) -> str:
    assert handle.buffer_handle is not None
    return handle.buffer_handle[3]


# -- surface -------------------------------------------------------------------------------


def test_handle_fields_defaults_and_pickling(made: list[MessageQueue]) -> None:
    w = MessageQueue(3, 2, local_reader_ranks=[1, 2], max_chunk_bytes=65536, max_chunks=4)
    made.append(w)
    h = w.export_handle()
    assert h is w.handle and isinstance(h, Handle)
    assert h.local_reader_ranks == [1, 2]
    assert h.buffer_handle is not None and h.buffer_handle[:3] == (2, 65536, 4)
    assert h.remote_subscribe_addr is not None and h.remote_subscribe_addr.startswith("tcp://127.0.0.1:")
    assert h.remote_addr_ipv6 is False
    assert (h.local_subscribe_addr, h.local_notify_addr, h.tensor_arena_handle) == (None, None, None)
    assert pickle.loads(pickle.dumps(h)) == h
    # ring = max_chunks + 1 chunks (and each chunk's record overhead), rounded up to 4 KiB
    assert w._ring is not None and w._ring.capacity == -(-(65536 + CHUNK_OVERHEAD) * 5 // 4096) * 4096
    assert (w._is_writer, w._is_local_reader, w._is_remote_reader) == (True, False, False)
    assert (w.n_local_reader, w.n_remote_reader) == (2, 1)

    d = MessageQueue(2, 2)  # vLLM's defaults: 24 MiB chunks, 10 of them, ranks 0..n_local-1
    made.append(d)
    assert d.handle.local_reader_ranks == [0, 1]
    assert d.handle.buffer_handle is not None and d.handle.buffer_handle[:3] == (2, 24 * MiB, 10)
    assert d.handle.remote_subscribe_addr is None
    with pytest.raises(ValueError):
        MessageQueue(2, 2, local_reader_ranks=[0])
    with pytest.raises(ValueError):
        MessageQueue(1, 2)


def test_create_from_handle_roles_by_rank(made: list[MessageQueue]) -> None:
    w, (r1, r2, r3) = setup(made, 3, 2, local_reader_ranks=[1, 2], max_chunk_bytes=4096, max_chunks=4, ranks=[1, 2, 0])
    assert (r1._is_writer, r1._is_local_reader, r1._is_remote_reader, r1.local_reader_rank) == (False, True, False, 0)
    assert (r2._is_local_reader, r2.local_reader_rank) == (True, 1)
    assert (r3._is_local_reader, r3._is_remote_reader, r3.local_reader_rank) == (False, True, -1)
    with pytest.raises(AssertionError, match="Only writers can enqueue"):
        r1.enqueue("x")
    with pytest.raises(RuntimeError, match="Only readers can dequeue"):
        w.dequeue(timeout=0)
    assert w.broadcast_object({"k": 1}) == {"k": 1}
    assert [r.broadcast_object() for r in (r1, r2, r3)] == [{"k": 1}] * 3
    local_only = MessageQueue(1, 1)
    made.append(local_only)
    with pytest.raises(ValueError, match="no remote readers"):
        MessageQueue.create_from_handle(local_only.export_handle(), 5)


def test_import_and_local_queues_without_pyzmq() -> None:
    code = (
        "import sys; sys.modules['zmq'] = None\n"
        "from shmq.compat.vllm import MessageQueue\n"
        "w = MessageQueue(1, 1, max_chunk_bytes=4096, max_chunks=2)\n"
        "r = MessageQueue.create_from_handle(w.export_handle(), 0)\n"
        "w.wait_until_ready(timeout=10); r.wait_until_ready(timeout=10)\n"
        "w.enqueue('hi'); assert r.dequeue(timeout=10) == 'hi'\n"
        "r.shutdown(); w.shutdown()\n"
        "try:\n"
        "    MessageQueue(2, 1)\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pyzmq" in out.stdout and "shmq[vllm]" in out.stdout


# -- across processes ----------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_local_and_remote_readers_across_processes() -> None:
    """Writer, two shared-memory readers and one remote reader over TCP loopback, each in its
    own process: every message (small, with out-of-band buffers, broadcast_object, and one
    4x larger than the ring) arrives at every reader, intact and in order."""
    n = 60
    kwargs = dict(n_reader=3, n_local_reader=2, local_reader_ranks=[1, 2], max_chunk_bytes=MiB, max_chunks=4)
    with children() as procs:
        w_conn, w_child = SPAWN.Pipe()
        procs.append(SPAWN.Process(target=writer, args=(w_child, kwargs, n, True)))
        procs[-1].start()
        assert w_conn.poll(60), "the writer sent no handle"
        handle = w_conn.recv()
        assert handle.remote_subscribe_addr.startswith("tcp://127.0.0.1:")
        conns = []
        for rank in (1, 2, 3):
            conn, child = SPAWN.Pipe()
            procs.append(SPAWN.Process(target=reader, args=(child, handle, rank, n, True)))
            procs[-1].start()
            conns.append(conn)
        sent = recv(w_conn)
        results = [recv(c) for c in conns]
        w_conn.send("readers done")
        join_all(procs)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    want = expected(n, oversized=True)
    assert sent == want
    assert [(local, remote) for local, remote, _ in results] == [(True, False), (True, False), (False, True)]
    for _, _, got in results:
        assert len(got) == len(want)
        for i, (g, e) in enumerate(zip(got, want)):
            assert g == e, f"message {i} differs"
    assert not segment_path(ring_name(handle)).exists()


@pytest.mark.timeout(120)
def test_fixed_killed_local_reader_does_not_stall_the_writer(made: list[MessageQueue]) -> None:
    """A reader that does not read stalls the writer once the ring is full (TimeoutError);
    after it is killed with SIGKILL, the writer goes on at once (vLLM's writer would wait
    for its flag forever) and the live reader gets every message, in order."""
    w = MessageQueue(2, 2, max_chunk_bytes=4096, max_chunks=4)
    made.append(w)
    handle = w.export_handle()
    with children() as procs:
        stuck_conn, stuck_child = SPAWN.Pipe()
        live_conn, live_child = SPAWN.Pipe()
        procs.append(SPAWN.Process(target=stuck_reader, args=(stuck_child, handle, 0)))
        procs.append(SPAWN.Process(target=reader_until_none, args=(live_child, handle, 1)))
        for p in procs:
            p.start()
        w.wait_until_ready(timeout=60)
        assert stuck_conn.poll(60) and stuck_conn.recv() == "ready"
        blob = b"x" * 1000
        seq = 0
        with pytest.raises(TimeoutError):
            while seq < 1000:  # a 16 KiB ring: full after about 15 messages
                w.enqueue((seq, blob), timeout=0.2)
                seq += 1
        assert 5 < seq < 1000
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].join(30)
        t0 = time.monotonic()
        for i in range(seq, 500):  # 500 KB through a 16 KiB ring
            w.enqueue((i, blob), timeout=10)
        w.enqueue(None, timeout=10)
        elapsed = time.monotonic() - t0
        got = recv(live_conn)
        join_all(procs[1:])
        assert procs[1].exitcode == 0
    assert got == [(i, blob) for i in range(500)]
    print(f"writer after the kill: {500 - seq} messages in {elapsed:.3f}s")


# -- in one process ------------------------------------------------------------------------


def test_out_of_band_buffers_are_private_copies(made: list[MessageQueue]) -> None:
    w, (r,) = setup(made, 1, 1, max_chunk_bytes=MiB, max_chunks=8, ranks=[0])
    big = bytearray(pattern(1, 2 * MiB))
    small = bytearray(b"s" * 100)
    w.enqueue({"big": PickleBuffer(big), "ba": big, "small": PickleBuffer(small)})
    got = r.dequeue(timeout=10)
    assert type(got["big"]) is bytearray and got["big"] == big  # out of band: one copy out of the ring
    assert isinstance(got["ba"], bytearray) and got["ba"] == big  # rebuilt as a copy, as pickle does
    assert type(got["small"]) is bytearray and got["small"] == small  # < 1 MiB: in band (a copy), as vLLM


def test_out_of_band_buffers_stay_valid_after_the_ring_is_reused(made: list[MessageQueue]) -> None:
    """What dequeue returned is the reader's: its out-of-band buffers are copies, which the
    writer's later messages (over the same bytes of the ring) never change, and holding
    them never stops the next dequeue (a view of a lent record would: BufferError)."""
    w, (r,) = setup(made, 1, 1, max_chunk_bytes=MiB, max_chunks=8, ranks=[0])
    first = bytearray(pattern(1, 2 * MiB))
    w.enqueue({"oob": PickleBuffer(first), "ba": first, "bytes": bytes(first[:1000])})
    got = r.dequeue(timeout=10)
    assert got["oob"] == first and got["ba"] == first
    for i in range(2, 40):  # 76 MiB through the ring: every byte of it is written again
        w.enqueue({"oob": PickleBuffer(bytearray(pattern(i, 2 * MiB)))})
        assert r.dequeue(timeout=10)["oob"] == pattern(i, 2 * MiB)
    assert got["oob"] == first and got["ba"] == first and got["bytes"] == first[:1000]


@pytest.mark.timeout(60)
def test_timeouts_raise_the_builtin_timeout_error(made: list[MessageQueue]) -> None:
    w, (local, remote) = setup(made, 2, 1, max_chunk_bytes=4096, max_chunks=2, ranks=[0, 1])
    for r in (local, remote):
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            r.dequeue(timeout=0.2)
        assert time.monotonic() - t0 >= 0.19
        with pytest.raises(TimeoutError):
            r.dequeue(timeout=0)
    with pytest.raises(TimeoutError):  # nobody reads: the ring (8 KiB) fills up
        for i in range(100):
            w.enqueue(b"x" * 1000, timeout=0.1)
    assert 5 < i < 100
    assert [local.dequeue(timeout=5) for _ in range(i)] == [b"x" * 1000] * i  # nothing was half-sent


@pytest.mark.timeout(60)
def test_shutdown_cancels_blocked_readers_and_writer(made: list[MessageQueue]) -> None:
    w, (local, remote) = setup(made, 2, 1, max_chunk_bytes=4096, max_chunks=2, ranks=[0, 1])
    assert w._ring is not None
    errors: dict[str, BaseException] = {}

    def call(name: str, fn: Callable[[], Any]) -> threading.Thread:
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # noqa: BLE001
                errors[name] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    waits = w._ring.stats().waits
    t_local = call("local", local.dequeue)
    wait_until(lambda: w._ring is not None and w._ring.stats().waits > waits, what="the local reader to sleep")
    t_remote = call("remote", remote.dequeue)
    local.shutdown()
    remote.shutdown()
    for t in (t_local, t_remote):
        t.join(10)
        assert not t.is_alive(), "shutdown did not wake a blocked dequeue"
    for name in ("local", "remote"):
        assert type(errors[name]) is RuntimeError and str(errors[name]) == "cancelled"
    with pytest.raises(RuntimeError, match="cancelled"):
        local.dequeue(timeout=1)  # and later calls too

    # The writer: blocked on a full ring (the local reader is gone, but a new one subscribes
    # and never reads).
    stuck = MessageQueue.create_from_handle(w.export_handle(), 0)
    made.append(stuck)
    with pytest.raises(TimeoutError):
        for _ in range(100):
            w.enqueue(b"y" * 1000, timeout=0.1)
    waits = w._ring.stats().waits
    t_writer = call("writer", lambda: w.enqueue(b"z" * 1000))
    wait_until(lambda: w._ring is not None and w._ring.stats().waits > waits, what="the writer to sleep")
    w.shutdown()
    t_writer.join(10)
    assert not t_writer.is_alive()
    assert type(errors["writer"]) is RuntimeError and str(errors["writer"]) == "cancelled"


@pytest.mark.timeout(60)
def test_fixed_idle_reader_uses_no_cpu(made: list[MessageQueue]) -> None:
    """vLLM's reader busy-spins (sched_yield) for a second after each message; here a waiting
    reader sleeps on a futex."""
    w, (r,) = setup(made, 1, 1, max_chunk_bytes=4096, max_chunks=2, ranks=[0])
    w.enqueue("wake")
    assert r.dequeue(timeout=5) == "wake"
    cpu0, t0 = time.process_time(), time.monotonic()
    with pytest.raises(TimeoutError):
        r.dequeue(timeout=1.0)  # right after a message: vLLM's reader would spin all this second
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    assert wall >= 0.99
    assert cpu < 0.2, f"a waiting reader used {cpu:.3f}s of CPU in {wall:.2f}s"


@pytest.mark.timeout(60)
def test_fixed_oversized_message_in_fragments(made: list[MessageQueue]) -> None:
    """A message 100x larger than the ring stays in shared memory (vLLM: ZeroMQ), and a
    writer that times out in the middle of one leaves readers consistent."""
    w, (r,) = setup(made, 1, 1, max_chunk_bytes=4096, max_chunks=4, ranks=[0])
    assert w._ring is not None
    huge = {"bytes": pattern(7, 1600 * 1024), "oob": PickleBuffer(bytearray(pattern(8, 3 * MiB // 2)))}
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.extend(r.dequeue(timeout=30) for _ in range(2)))
    t.start()
    w.enqueue(huge, timeout=30)
    w.enqueue("after", timeout=30)
    t.join(30)
    assert not t.is_alive()
    assert describe(got[0]) == describe(huge) and got[1] == "after"
    published = w._ring.stats().published
    assert published > 100  # it went in fragments

    with pytest.raises(TimeoutError):  # nobody reads: the writer gives up part-way
        w.enqueue(huge, timeout=0.3)
    assert w._ring.stats().published > published  # some fragments were published
    t = threading.Thread(target=lambda: got.extend(r.dequeue(timeout=30) for _ in range(3)))
    t.start()
    w.enqueue("next", timeout=30)
    huge2 = {"bytes": pattern(9, 900 * 1024)}
    w.enqueue(huge2, timeout=30)
    w.enqueue("last", timeout=30)
    t.join(30)
    assert not t.is_alive()
    # The unfinished message was dropped, and nothing of it was glued to the next ones.
    assert got[2] == "next" and describe(got[3]) == describe(huge2) and got[4] == "last"


def test_fixed_late_local_reader_joins(made: list[MessageQueue]) -> None:
    w, (r,) = setup(made, 1, 1, max_chunk_bytes=4096, max_chunks=4, ranks=[0])
    w.enqueue("before")
    late = MessageQueue.create_from_handle(w.export_handle(), 0)
    made.append(late)
    late.wait_until_ready(timeout=0.5)  # the handshake is over: returns at once
    w.enqueue("after")
    assert r.dequeue(timeout=5) == "before" and r.dequeue(timeout=5) == "after"
    assert late.dequeue(timeout=5) == "after"


def test_ipv6_remote_reader(made: list[MessageQueue]) -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    w, (r,) = setup(made, 1, 0, connect_ip="::1", ranks=[0])
    assert w.handle.remote_addr_ipv6 is True
    assert w.handle.remote_subscribe_addr is not None and w.handle.remote_subscribe_addr.startswith("tcp://[::1]:")
    assert w.handle.buffer_handle is None
    w.enqueue(message(3))
    assert describe(r.dequeue(timeout=10)) == describe(message(3))


def test_ring_removed_after_everyone_shuts_down() -> None:
    w = MessageQueue(1, 1, max_chunk_bytes=4096, max_chunks=2)
    r = MessageQueue.create_from_handle(w.export_handle(), 0)
    name = ring_name(w.handle)
    w.wait_until_ready(timeout=10)
    r.wait_until_ready(timeout=10)
    w.enqueue(1)
    w.shutdown()
    assert segment_path(name).exists()  # the reader still uses it
    assert r.dequeue(timeout=5) == 1  # and still reads what was sent
    r.shutdown()
    assert not segment_path(name).exists()
    assert name not in shmq.list_queues()


# -- create_from_process_group --------------------------------------------------------------


def _run_group(n: int, remote: frozenset[int] | None, writer_rank: int = 0, world: int = 4) -> list[Any]:
    """``world`` ranks as spawn processes over a ``PipeGroup``; returns each rank's report."""
    seed = int.from_bytes(os.urandom(4), "little")
    inboxes = [SPAWN.Queue() for _ in range(world)]
    with children() as procs:
        conns = []
        for rank in range(world):
            conn, child = SPAWN.Pipe()
            procs.append(
                SPAWN.Process(target=group_rank, args=(child, inboxes, rank, n, seed, remote, writer_rank))
            )
            procs[-1].start()
            conns.append(conn)
        reports = [recv(c, timeout=180) for c in conns]
        join_all(procs)
        assert [p.exitcode for p in procs] == [0] * world, f"seed {seed}"
    return reports


@pytest.mark.timeout(240)
def test_create_from_process_group_broadcasts_numpy_arrays_to_every_rank() -> None:
    """vLLM's own test of the broadcast (there: 10,000 arrays): 4 ranks, one writer, random
    array sizes and dtypes, random sleeps on every rank, every rank checks every array. Here
    3,000 arrays, some out of band (2 MiB) and some larger than the 4 MiB ring (6 MiB). The
    same-node check is the shared-memory probe (the group has none)."""
    n = 3000
    reports = _run_group(n, remote=None)
    assert [(local, remote) for local, remote, _, _ in reports] == [(False, False)] + [(True, False)] * 3
    assert all(checked == n for _, _, checked, _ in reports)


@pytest.mark.timeout(240)
def test_create_from_process_group_with_the_groups_same_node_check() -> None:
    """The group says rank 1 is on another node: it becomes a remote reader (ZeroMQ), the
    others local ones; the writer is rank 2 (not 0)."""
    n = 600
    reports = _run_group(n, remote=frozenset({1}), writer_rank=2)
    roles = [(local, remote) for local, remote, _, _ in reports]
    assert roles == [(True, False), (False, True), (False, False), (True, False)]
    assert all(checked == n for _, _, checked, _ in reports)


def test_create_from_process_group_refuses_what_is_not_a_group() -> None:
    with pytest.raises(TypeError, match="broadcast_obj"):
        MessageQueue.create_from_process_group(object(), MiB, 4)
    single = PipeGroup(0, [SPAWN.Queue()])
    with pytest.raises(ValueError, match="writer_rank"):
        MessageQueue.create_from_process_group(single, MiB, 4, writer_rank=1)


# -- acquire_write / acquire_read -----------------------------------------------------------


def test_acquire_write_lends_a_chunk_that_acquire_read_lends_back(made: list[MessageQueue]) -> None:
    w, (r,) = setup(made, 1, 1, max_chunk_bytes=10_000, max_chunks=3, ranks=[0])
    for i in range(7):  # more than max_chunks: the ring goes round
        with w.acquire_write(timeout=5) as buf:
            assert len(buf) == 10_000 and not buf.readonly
            buf[:6] = b"chunk%d" % i
            buf[-1] = i
        with r.acquire_read(timeout=5) as got:
            assert len(got) == 10_000 and got.readonly
            assert bytes(got[:6]) == b"chunk%d" % i and got[-1] == i
    with pytest.raises(ValueError):
        buf[0] = 1  # released when the block ended


def test_acquire_write_holds_max_chunks_chunks_then_times_out(made: list[MessageQueue]) -> None:
    w, (r,) = setup(made, 1, 1, max_chunk_bytes=5000, max_chunks=3, ranks=[0])
    with w.acquire_write(timeout=5) as buf:
        buf[0] = 100
    with r.acquire_read(timeout=5) as got:  # the reader now holds this record
        assert got[0] == 100
    for i in range(3):  # the original's ring holds max_chunks chunks: so does this one
        with w.acquire_write(timeout=5) as buf:
            buf[0] = i
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        with w.acquire_write(timeout=0.2) as buf:
            buf[0] = 99
    assert time.monotonic() - started >= 0.19
    with pytest.raises(KeyError):
        with w.acquire_write(timeout=5) as buf:  # wait: the reader is behind
            raise KeyError("an exception in the block sends nothing")
    for i in range(3):
        with r.acquire_read(timeout=5) as got:
            assert got[0] == i
    with pytest.raises(TimeoutError):
        with r.acquire_read(timeout=0.1):
            pass


def test_acquire_and_enqueue_dequeue_share_the_original_layout(made: list[MessageQueue]) -> None:
    w, (r,) = setup(made, 1, 1, max_chunk_bytes=4096, max_chunks=4, ranks=[0])
    obj = {"step": 3, "ids": list(range(50))}
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    with w.acquire_write() as buf:  # what the original's enqueue writes: 0, then the pickle
        buf[0] = 0
        buf[1 : 1 + len(data)] = data
    assert r.dequeue(timeout=5) == obj
    w.enqueue(obj)
    with r.acquire_read(timeout=5) as got:
        assert got[0] == 0 and pickle.loads(got[1:]) == obj
    w.enqueue(b"x" * 5000)  # larger than a chunk: left for dequeue, not lost
    with pytest.raises(RuntimeError, match="dequeue"):
        with r.acquire_read(timeout=5):
            pass
    assert r.dequeue(timeout=5) == b"x" * 5000
    with w.acquire_write() as buf:
        buf[0] = 1  # the original's "sent over ZeroMQ" flag
    with pytest.raises(RuntimeError, match="acquire_read"):
        r.dequeue(timeout=5)


def test_acquire_roles_and_chunks_larger_than_the_ring(made: list[MessageQueue]) -> None:
    w, (r,) = setup(made, 1, 1, max_chunk_bytes=100_000, max_chunks=1, ranks=[0])
    with pytest.raises(AssertionError, match="Only writers"):
        with r.acquire_write():
            pass
    with pytest.raises(AssertionError, match="Only readers"):
        with w.acquire_read():
            pass
    for i in range(3):  # one chunk per ring (in fragments if it must be), in order
        with w.acquire_write(timeout=5) as buf:
            buf[:] = pattern(i, 100_000)
        with r.acquire_read(timeout=5) as got:
            assert bytes(got) == pattern(i, 100_000)
