"""Zero copy: ``reserve`` (write a message in place), ``get(copy=False)`` on queues (read it
in place), and NumPy arrays through pickle protocol 5 out-of-band buffers (one copy in, one
or none out)."""

from __future__ import annotations

import gc
import os
import pickle
import signal
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import _helpers as h
import shmq

# --------------------------------------------------------------------------------------
# reserve
# --------------------------------------------------------------------------------------


def test_a_reservation_is_committed_when_its_block_ends(queue: shmq.Queue) -> None:
    with queue.reserve(5) as buf:
        assert isinstance(buf, memoryview) and not buf.readonly and len(buf) == 5
        buf[:] = b"hello"
    assert queue.get_nowait() == b"hello"


def test_a_reservation_is_abandoned_on_an_exception(queue: shmq.Queue) -> None:
    with pytest.raises(KeyError):
        with queue.reserve(100) as buf:
            buf[:3] = b"abc"
            raise KeyError("producer failed half-way")
    queue.put("next")
    assert queue.get_nowait() == "next"
    with pytest.raises(shmq.Empty):
        queue.get_nowait()


def test_the_memoryview_is_released_after_the_block(queue: shmq.Queue) -> None:
    with queue.reserve(8) as buf:
        buf[:] = b"12345678"
    with pytest.raises(ValueError, match="released"):
        buf[0] = 1
    with pytest.raises(ValueError, match="released"):
        bytes(buf)
    queue.put(b"another message", codec="raw")
    assert queue.get_nowait() == b"12345678"
    assert queue.get_nowait() == b"another message"


def test_a_view_that_outlives_its_block_cannot_write_into_another_message(queue: shmq.Queue) -> None:
    arr = None
    with pytest.raises(BufferError, match="outlived"):
        with queue.reserve(16) as buf:
            arr = np.frombuffer(buf, dtype=np.uint8)  # a view the block cannot release
            arr[:] = 7
    assert arr is not None
    # The reservation is not delivered, and it stays reserved while `arr` can reach it.
    queue.put(b"later", codec="raw")
    with pytest.raises(shmq.Empty):
        queue.get_nowait()  # head of line: the abandoned reservation is not yet given up
    arr[:] = 9  # still our own bytes: nobody else's message is there
    del arr
    gc.collect()
    assert queue.get_nowait() == b"later"


def test_reserve_with_a_codec_and_without_with(queue: shmq.Queue) -> None:
    payload = pickle.dumps({"k": 1})
    r = queue.reserve(len(payload), codec="pickle")
    assert r.open and len(r) == len(payload)
    memoryview(r)[:] = payload  # the temporary memoryview is released at once
    r.commit()
    assert not r.open
    with pytest.raises(shmq.ViewReleasedError):
        r.commit()
    with pytest.raises(shmq.ViewReleasedError):
        memoryview(r)
    assert queue.get_nowait() == {"k": 1}


def test_an_unused_reservation_is_abandoned_when_collected(queue: shmq.Queue) -> None:
    r = queue.reserve(10)
    del r
    gc.collect()
    queue.put(1)
    assert queue.get_nowait() == 1


def test_reserve_larger_than_the_ring_is_refused(queue: shmq.Queue) -> None:
    with pytest.raises(shmq.MessageTooLargeError):
        queue.reserve(queue.capacity)


def test_reserve_inside_reserve_of_the_same_thread_is_an_error_not_a_hang(queue: shmq.Queue) -> None:
    with queue.reserve(10) as outer:
        outer[:] = b"0123456789"
        with pytest.raises(shmq.WouldDeadlockError, match="already holds a loan"):
            queue.reserve(10)
        queue.put("puts still work inside a reservation")
    assert queue.get_nowait() == b"0123456789"
    assert queue.get_nowait() == "puts still work inside a reservation"


def test_eight_threads_reserving_at_once(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity="1MiB")
    per_thread = 300
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                with q.reserve(32) as buf:
                    buf[:] = t.to_bytes(1, "little") * 28 + i.to_bytes(4, "little")
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    got: dict[int, list[int]] = {t: [] for t in range(8)}
    total = 8 * per_thread
    while sum(map(len, got.values())) < total:
        m = q.get(timeout=30)
        got[m[0]].append(int.from_bytes(m[28:], "little"))
    for th in threads:
        th.join(timeout=30)
    assert not errors
    for t in range(8):
        assert got[t] == list(range(per_thread)), t  # each thread's messages in its order


def test_broadcast_reserve_reaches_every_subscriber(qname: str) -> None:
    b: shmq.Broadcast[Any] = shmq.Broadcast(qname, capacity="64KiB", create=True)
    subs = [shmq.Subscriber(qname) for _ in range(2)]
    try:
        with b.reserve(3) as buf:
            buf[:] = b"all"
        assert [s.get(timeout=5) for s in subs] == [b"all", b"all"]
    finally:
        for s in subs:
            s.close()
        b.close()


KILLED_MID_RESERVE = """
import os, signal, sys, shmq
q = shmq.Queue(sys.argv[1], create=False)
with q.reserve(1000) as buf:
    buf[:] = b"x" * 1000
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_child_killed_mid_reserve_and_the_queue_goes_on(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity="64KiB")
    q.put("before")
    with h.children() as procs:
        p = h.python(KILLED_MID_RESERVE, q.name)
        procs.append(p)
        p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    q.put("after")
    assert q.get(timeout=5) == "before"
    assert q.get(timeout=5) == "after"  # the dead reservation was repaired (abandoned)
    assert q.stats().abandoned == 1


# --------------------------------------------------------------------------------------
# Queue.get(copy=False)
# --------------------------------------------------------------------------------------


def test_get_copy_false_lends_a_raw_message_until_the_next_read(queue: shmq.Queue) -> None:
    queue.put(b"first", codec="raw")
    queue.put(b"second", codec="raw")
    view = queue.get(copy=False)
    assert isinstance(view, shmq.MessageView) and bytes(view) == b"first"
    assert queue.get() == b"second"  # the next read releases the view
    with pytest.raises(shmq.ViewReleasedError):
        bytes(view)
    with pytest.raises(shmq.ViewReleasedError):
        memoryview(view)


def test_a_memoryview_of_a_view_keeps_its_message_and_never_reads_another(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity="8KiB")
    q.put(b"A" * 1000, codec="raw")
    view = q.get(copy=False)
    mv = memoryview(view)
    # The ring goes round several times: the bytes behind `mv` are never reused meanwhile.
    for i in range(40):
        try:
            q.put(bytes([i % 250]) * 1000, codec="raw", timeout=0.05)
        except shmq.Full:
            break  # the held message keeps its bytes: the ring fills up behind it
        assert q.get_nowait() == bytes([i % 250]) * 1000
    assert bytes(mv) == b"A" * 1000
    with pytest.raises(shmq.ViewReleasedError):
        bytes(view)
    del mv
    gc.collect()
    for i in range(40):  # released now: the ring goes round freely
        q.put(b"B" * 1000, codec="raw", timeout=5)
        assert q.get_nowait() == b"B" * 1000


def test_close_releases_a_lent_view(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity="64KiB")
    q.put(b"x", codec="raw")
    view = q.get(copy=False)
    q.close()
    with pytest.raises(shmq.ViewReleasedError):
        bytes(view)


def test_get_copy_false_of_other_codecs_decodes_a_copy(queue: shmq.Queue) -> None:
    queue.put({"a": 1})
    queue.put([1, 2], codec="msgpack")
    assert queue.get(copy=False) == {"a": 1}
    assert queue.get(copy=False) == [1, 2]


def test_a_child_killed_holding_a_view_loses_only_that_message(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity="64KiB")
    q.put(b"held", codec="raw")
    q.put(b"kept", codec="raw")
    code = """
import os, signal, sys, shmq
q = shmq.Queue(sys.argv[1], create=False)
v = q.get(copy=False)
assert bytes(v) == b"held"
os.kill(os.getpid(), signal.SIGKILL)
"""
    with h.children() as procs:
        p = h.python(code, q.name)
        procs.append(p)
        p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    assert q.get(timeout=5) == b"kept"
    for _ in range(3 * q.capacity // 1000):  # round the ring: the dead hold's space comes back
        q.put(b"z" * 1000, codec="raw", timeout=5)
        assert q.get_nowait() == b"z" * 1000
    assert q.stats().lost == 1


# --------------------------------------------------------------------------------------
# NumPy and out-of-band buffers
# --------------------------------------------------------------------------------------

DTYPES = [
    np.bool_,
    np.int8,
    np.uint8,
    np.int16,
    np.uint16,
    np.int32,
    np.uint32,
    np.int64,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.longdouble,
    np.complex64,
    np.complex128,
    "datetime64[ns]",
    "timedelta64[s]",
    "S7",
    "U5",
    [("x", "<i4"), ("y", "<f8"), ("name", "S3")],
]


def sample(dtype: Any, shape: tuple[int, ...] = (37, 5)) -> np.ndarray[Any, Any]:
    n = int(np.prod(shape))
    raw = np.arange(n, dtype=np.int64)
    dt = np.dtype(dtype)
    if dt.fields:
        a = np.zeros(n, dtype=dt)
        for name in dt.names or ():
            a[name] = raw.astype(dt.fields[name][0])
        return a.reshape(shape)
    return raw.astype(dt).reshape(shape)


@pytest.mark.parametrize("copy", [True, False])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_arrays_of_every_dtype(make_queue: Callable[..., shmq.Queue], dtype: Any, copy: bool) -> None:
    q = make_queue(capacity="1MiB")
    a = sample(dtype)
    q.put(a)
    b = q.get(copy=copy)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(b, a)
    if copy:
        assert b.flags.writeable  # rebuilt over a private copy
    elif a.dtype.kind not in "mM":  # NumPy pickles datetimes in band: they come as a copy
        assert not b.flags.writeable  # a view of the ring


@pytest.mark.parametrize(
    "wrap",
    [
        lambda a: {"meta": [1, 2.5, "x"], "a": a},
        lambda a: [1, (None, a)],
        lambda a: (True, {"k": [a]}),
        lambda a: {"bytes": b"in band", "ba": bytearray(a.tobytes())},
    ],
    ids=["dict", "list-tuple", "tuple-dict-list", "bytearray"],
)
def test_buffers_inside_containers_of_scalars_go_out_of_band(
    make_queue: Callable[..., shmq.Queue], wrap: Callable[[Any], Any]
) -> None:
    """Small containers of scalars pickle without the buffer callback: one that holds an
    array or a bytearray (a few levels down) must still send its buffers out of band (a
    read-only view with copy=False) and come back equal."""
    q = make_queue(capacity="1MiB")
    a = np.arange(1000, dtype=np.float64)
    q.put(wrap(a))
    got = q.get(copy=False)
    views = [x for x in _leaves(got) if isinstance(x, (np.ndarray, bytearray, memoryview))]
    assert views, got
    for v in views:
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, a)
            assert not v.flags.writeable  # a view of the ring: it went out of band
        else:
            assert bytes(v) == a.tobytes()
    assert q.empty()


def _leaves(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _leaves(v)]
    if isinstance(obj, (list, tuple)):
        return [x for v in obj for x in _leaves(v)]
    return [obj]


def test_object_arrays_fall_back_to_an_in_band_pickle(queue: shmq.Queue) -> None:
    a = np.array([{"a": 1}, "text", None], dtype=object)
    queue.put(a)
    b = queue.get()
    assert b.dtype == object and list(b) == list(a)


@pytest.mark.parametrize("copy", [True, False])
def test_non_contiguous_fortran_0d_and_empty_arrays(make_queue: Callable[..., shmq.Queue], copy: bool) -> None:
    q = make_queue(capacity="1MiB")
    base = np.arange(400, dtype=np.float64).reshape(20, 20)
    cases = {
        "strided": base[::3, 1::2],  # pickled in band (a copy), as pickle does
        "fortran": np.asfortranarray(base),
        "zero-d": np.array(3.5),
        "empty": np.zeros((0, 4), dtype=np.int32),
    }
    for name, a in cases.items():
        q.put(a)
        b = q.get(copy=copy)
        np.testing.assert_array_equal(b, a, err_msg=name)
        assert b.shape == a.shape and b.dtype == a.dtype, name
    q.put(np.asfortranarray(base))
    assert q.get(copy=copy).flags.f_contiguous


def test_several_arrays_and_other_buffers_in_one_object(queue: shmq.Queue) -> None:
    obj = {
        "a": np.arange(1000, dtype=np.int32),
        "b": [np.ones(3), bytearray(b"bytes out of band"), pickle.PickleBuffer(b"pb")],
        "meta": "m",
    }
    queue.put(obj)
    got = queue.get()
    np.testing.assert_array_equal(got["a"], obj["a"])
    np.testing.assert_array_equal(got["b"][0], np.ones(3))
    assert got["b"][1] == bytearray(b"bytes out of band") and isinstance(got["b"][1], bytearray)
    assert bytes(got["b"][2]) == b"pb"
    assert got["meta"] == "m"


def test_a_copy_false_array_keeps_its_message_and_later_reads_go_on(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity="64KiB")
    q.put(np.full(1000, 7, dtype=np.int64))
    a = q.get(copy=False)
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0] = 1  # read-only view of the ring
    came_round = False
    for i in range(50):  # later reads go on until the ring comes round to the held message
        try:
            q.put(np.full(500, i, dtype=np.int64), timeout=0.05)
        except shmq.Full:
            came_round = True
            break
        np.testing.assert_array_equal(q.get(timeout=5), np.full(500, i))
    assert came_round, "a held message keeps its bytes: the ring fills up behind it"
    np.testing.assert_array_equal(a, np.full(1000, 7))  # never overwritten
    del a
    gc.collect()
    for i in range(50):  # released with its last array: the ring goes round freely
        q.put(np.full(500, i, dtype=np.int64), timeout=5)
        np.testing.assert_array_equal(q.get(timeout=5), np.full(500, i))


def test_a_dropped_view_frees_its_message_without_another_read(make_queue: Callable[..., shmq.Queue]) -> None:
    # One thread, producer and consumer: the message must not wait for the next read once
    # nothing can reach it (it did, and this put waited for ever behind it).
    q = make_queue(capacity="1MiB")
    for i in range(4):
        q.put(np.full(600_000 // 8, i, dtype=np.int64), timeout=5)  # most of the ring
        view = q.get(copy=False)
        assert int(view[0]) == i
        del view


def test_one_thread_putting_and_getting_large_arrays_never_waits_for_itself(make_queue: Callable[..., shmq.Queue]) -> None:
    # A frame that cannot wrap leaves a filler at the ring's end; with nobody but this
    # thread to pass it, the put used to wait for ever (here: Full after the timeout).
    q = make_queue(capacity="1MiB")
    for _ in range(3):
        q.put(b"r" * 400_000, codec="raw")
        q.get()
    a = np.arange(950_000 // 8, dtype=np.int64)
    for _ in range(4):
        q.put(a, timeout=5)
        np.testing.assert_array_equal(q.get(timeout=5), a)


def test_copy_false_beyond_three_live_messages_copies_instead_of_waiting(queue: shmq.Queue) -> None:
    for i in range(5):
        queue.put(np.full(10, i))
    kept = [queue.get(copy=False) for _ in range(5)]  # all alive at once
    assert [int(k[0]) for k in kept] == [0, 1, 2, 3, 4]
    assert [k.flags.writeable for k in kept] == [False, False, False, True, True]


def test_put_many_and_get_many_carry_arrays(queue: shmq.Queue) -> None:
    arrays = [np.arange(10 * i, dtype=np.float32) for i in range(1, 4)]
    queue.put_many(arrays)
    got = queue.get_many(10)
    assert len(got) == 3
    for a, b in zip(arrays, got):
        np.testing.assert_array_equal(a, b)
        assert b.flags.writeable


def test_arrays_larger_than_the_ring_travel_in_side_segments(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity="64KiB", allow_large=True)
    a = np.arange(100_000, dtype=np.float64)  # 800 kB
    q.put(a)
    np.testing.assert_array_equal(q.get(timeout=5), a)


def test_broadcast_arrays_to_subscribers(qname: str) -> None:
    b: shmq.Broadcast[Any] = shmq.Broadcast(qname, capacity="1MiB", create=True)
    subs = [shmq.Subscriber(qname) for _ in range(3)]
    try:
        a = np.arange(10_000, dtype=np.uint16).reshape(100, 100)
        b.publish(a)
        for s, copy in zip(subs, [True, False, True]):
            got = s.get(timeout=5, copy=copy)
            np.testing.assert_array_equal(got, a)
    finally:
        for s in subs:
            s.close()
        b.close()


def test_allow_pickle_false_refuses_array_frames_and_takes_raw_buffers(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue(capacity="1MiB")
    strict = make_queue(name=q.name, allow_pickle=False)
    with pytest.raises(shmq.PickleNotAllowedError):
        strict.put(np.arange(3))
    q.put(np.arange(3))
    with pytest.raises(shmq.PickleNotAllowedError) as e:
        strict.get(timeout=5)
    assert e.value.codec == shmq.CODEC_PICKLE_OOB
    # Raw buffers need no pickle: any C-contiguous buffer goes in, bytes (or a view) out.
    a = np.arange(12, dtype=np.float32)
    strict.put(a, codec="raw")
    view = strict.get(copy=False)
    np.testing.assert_array_equal(np.frombuffer(view, dtype=np.float32), a)
    with pytest.raises(shmq.CodecError):
        strict.put(a[::2], codec="raw")  # not contiguous: no raw bytes without a copy


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f[:10],  # truncated header
        lambda f: f[:8] + (2**31).to_bytes(4, "little") + f[12:],  # too many buffers
        lambda f: f[:16] + (2**40).to_bytes(8, "little") + f[24:],  # pickle overruns
        lambda f: f[:24] + (len(f) - 2).to_bytes(8, "little") + f[32:],  # buffer overruns
    ],
)
def test_a_malformed_frame_is_a_decode_error(make_queue: Callable[..., shmq.Queue], damage: Any) -> None:
    q = make_queue(capacity="64KiB")
    strict = make_queue(name=q.name, allow_pickle=False)
    q.put(np.arange(100, dtype=np.int64))
    with pytest.raises(shmq.PickleNotAllowedError) as e:
        strict.get(timeout=5)  # the frame's bytes, undecoded
    bad = damage(bytes(e.value.raw))
    with q.reserve(len(bad), codec=shmq.CODEC_PICKLE_OOB) as buf:
        buf[:] = bad
    with pytest.raises(shmq.DecodeError, match="malformed frame"):
        q.get(timeout=5)


def test_shutdown_ends_reservations_and_held_gets(make_queue: Callable[..., shmq.Queue]) -> None:
    # A shutdown stops the zero-copy paths as it stops put/get: no reservation opens after
    # it; get(copy=False) drains what is left, then raises ShutDown instead of waiting.
    q = make_queue(codec="raw")
    q.put(b"left")
    with q.reserve(5) as buf:
        buf[:] = b"kept!"
    open_before = q.reserve(3)
    q.shutdown()
    with open_before as buf:  # opened before the shutdown: commits
        buf[:] = b"end"
    with pytest.raises(shmq.ShutDown):
        q.reserve(4)
    assert bytes(q.get(copy=False)) == b"left"
    assert bytes(q.get(copy=False)) == b"kept!"
    assert bytes(q.get(copy=False)) == b"end"
    with pytest.raises(shmq.ShutDown):
        q.get(copy=False, timeout=5)
    with pytest.raises(shmq.ShutDown):
        q.put(np.arange(10))


def test_immediate_shutdown_ends_held_gets_at_once(make_queue: Callable[..., shmq.Queue]) -> None:
    q = make_queue()
    q.put(np.arange(100_000))
    q.shutdown(immediate=True)
    with pytest.raises(shmq.ShutDown):
        q.get(copy=False, timeout=5)


def _fill(q: shmq.Queue, payload: bytes) -> int:
    """Puts ``payload`` until the ring is full: how many went in."""
    n = 0
    while True:
        try:
            q.put(payload, block=False)
        except shmq.Full:
            return n
        n += 1


@pytest.mark.parametrize("fork", [False, True], ids=["no-fork", "child-drops-it"])
def test_a_forked_child_dropping_an_inherited_view_never_ends_the_parents_claim(
    make_queue: Callable[..., shmq.Queue], fork: bool
) -> None:
    """A child inherits the parent's `get(copy=False)` view and lets it go (as garbage): the
    claim stays the parent's, so producers cannot reuse the bytes under the parent's view
    (the no-fork case is the reference). Before the fix the child's drop released it: the
    parent put one message more and its view read that message's bytes."""
    q = make_queue(capacity="64KiB", codec="raw")
    q.put(b"A" * 8000)
    view = q.get(copy=False)
    if fork:
        pid = os.fork()
        if pid == 0:  # the child: drop the inherited view, then leave without cleanup
            try:
                del view
                gc.collect()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    fitted = _fill(q, b"B" * 8000)
    assert bytes(view) == b"A" * 8000
    # The held message keeps its room: 64 KiB holds 8 records of 8000 B, one of them held.
    assert fitted == 7
    del view
    assert q.get() == b"B" * 8000
