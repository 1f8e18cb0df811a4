"""shmq.Broadcast / shmq.Subscriber: every subscriber gets every message published after it
subscribed, in order; the block policy loses nothing and waits for the slowest live
subscriber; the lag policy never waits and reports what a slow subscriber missed; a dead
subscriber never stalls publishers."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

import _helpers as h
import shmq


@pytest.fixture
def bcast(qname: str) -> Iterator[shmq.Broadcast]:
    b = shmq.Broadcast(qname, capacity="64KiB", create=True)
    yield b
    b.close()


def test_each_subscriber_gets_every_message_in_order(bcast: shmq.Broadcast) -> None:
    subs = [bcast.subscribe(), shmq.Subscriber(bcast.name), bcast.subscribe()]
    bcast.publish({"first": 1})
    bcast.publish_many(range(100))
    for s in subs:
        assert s.get(timeout=5) == {"first": 1}
        got = []
        while len(got) < 100:
            got.extend(s.get_many(1000, timeout=5))
        assert got == list(range(100))
        with pytest.raises(shmq.Empty):
            s.get_nowait()
        s.close()


def test_a_late_subscriber_only_sees_later_messages(bcast: shmq.Broadcast) -> None:
    early = bcast.subscribe()
    bcast.publish("before")
    late = bcast.subscribe()
    bcast.publish("after")
    assert early.get_many(10, timeout=5) == ["before", "after"]
    assert late.get_many(10, timeout=5) == ["after"]
    early.close()
    late.close()


def test_timeouts_and_nonblocking(bcast: shmq.Broadcast) -> None:
    sub = bcast.subscribe()
    t = time.monotonic()
    with pytest.raises(shmq.Empty):
        sub.get(timeout=0.2)
    assert 0.2 <= time.monotonic() - t < 2
    with pytest.raises(shmq.Empty):
        sub.get(timeout=0)
    with pytest.raises(shmq.Empty):
        sub.get(block=False)
    sub.close()


def test_block_policy_waits_for_the_slowest_subscriber(qname: str) -> None:
    with shmq.Broadcast(qname, capacity=4096, create=True, codec="raw") as b:
        fast, slow = b.subscribe(), b.subscribe()
        sent = 0
        while True:
            try:
                b.publish(sent.to_bytes(8, "little"), timeout=0)
            except shmq.Full:
                break
            sent += 1
            fast.get(timeout=5)
        assert sent > 50
        t = time.monotonic()
        with pytest.raises(shmq.Full):
            b.publish(b"x" * 8, timeout=0.2)
        assert time.monotonic() - t >= 0.2
        assert [b.stats().subscribers[i].lag_messages for i in range(2)] in ([0, sent], [sent, 0])
        # The slow one reads one message: there is room again, and nothing was lost.
        assert slow.get(timeout=5) == (0).to_bytes(8, "little")
        b.publish(b"y" * 8, timeout=5)
        rest = slow.get_many(10_000, timeout=5)
        assert len(rest) == sent and rest[-1] == b"y" * 8
        fast.close()
        slow.close()


def test_lag_policy_never_waits_and_reports_missed_messages(qname: str) -> None:
    with shmq.Broadcast(qname, capacity=4096, create=True, codec="raw", policy="lag") as b:
        assert b.policy == "lag"
        sub = b.subscribe()
        for i in range(1000):
            b.publish(i.to_bytes(8, "little"), timeout=0)  # never Full
        with pytest.raises(shmq.Lagged) as info:
            sub.get(timeout=5)
        missed = info.value.missed
        assert 0 < missed < 1000
        rest = []
        while True:
            try:
                rest.extend(sub.get_many(1000, timeout=0))
            except shmq.Empty:
                break
        values = [int.from_bytes(v, "little") for v in rest]
        assert values == list(range(missed, 1000)), "continues with the oldest message available"
        assert isinstance(info.value, shmq.ShmqError)
        assert pickle.loads(pickle.dumps(info.value)).missed == missed
        sub.close()


@pytest.mark.parametrize("policy, batch", [("block", 1), ("block", 256), ("lag", 256)])
def test_subscriber_processes_check_every_message(qname: str, tmp_path: Path, policy: str, batch: int) -> None:
    n, count = 3, 20_000
    ctx = mp.get_context("spawn")
    with shmq.Broadcast(qname, capacity="256KiB", create=True, policy=policy) as b, h.children() as procs:
        events = [ctx.Event() for _ in range(n)]
        outs = [str(tmp_path / f"sub{i}") for i in range(n)]
        for i in range(n):
            p = ctx.Process(target=h.subscriber_collect, args=(qname, events[i], count, outs[i], batch))
            p.start()
            procs.append(p)
        for e in events:
            assert e.wait(60)
        for start in range(0, count, 500):
            b.publish_many(range(start, start + 500), timeout=30)
        h.join_all(procs, timeout=90)
        assert [h.exitcode(p) for p in procs] == [0] * n
        for out in outs:
            got, missed, in_order, total = map(int, Path(out).read_text().split())
            assert got + missed == count and in_order == 1
            if policy == "block":
                assert (got, missed, total) == (count, 0, sum(range(count)))


def test_a_killed_subscriber_does_not_stall_the_publisher(qname: str) -> None:
    ctx = mp.get_context("spawn")
    with shmq.Broadcast(qname, capacity=4096, create=True, codec="raw") as b, h.children() as procs:
        ready = ctx.Event()
        p = ctx.Process(target=h.subscriber_hold, args=(qname, ready))
        p.start()
        procs.append(p)
        assert ready.wait(60)
        live = b.subscribe()
        # Fill the ring: the holder never reads, so the publisher must wait for it...
        while True:
            try:
                b.publish(b"x" * 100, timeout=0)
            except shmq.Full:
                break
            live.get(timeout=5)
        os.kill(p.pid, signal.SIGKILL)
        h.join_all(procs, timeout=30)
        before = b.stats()
        assert before.reaped == 0 and len(before.subscribers) == 2, before
        # ...until it is found dead and evicted, by the publisher itself while it waits (the
        # timeout is a watchdog for a publisher that never evicts it, not a speed bound).
        b.publish(b"after", timeout=60)
        assert live.get(timeout=5) == b"after"
        stats = b.stats()
        assert stats.reaped == 1, stats
        assert [s.pid for s in stats.subscribers] == [os.getpid()], stats
        live.close()


def test_close_from_another_thread_wakes_a_blocked_get(bcast: shmq.Broadcast) -> None:
    sub = bcast.subscribe()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            sub.get()
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion
            errors.append(e)

    waits = bcast.stats().waits
    t = threading.Thread(target=reader)
    t.start()
    h.wait_until(lambda: bcast.stats().waits > waits, what="the reader to sleep")
    sub.close()
    t.join(10)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], shmq.QueueClosedError)


def test_pickled_handles_reopen_by_name(bcast: shmq.Broadcast) -> None:
    sub = pickle.loads(pickle.dumps(bcast.subscribe()))
    pub = pickle.loads(pickle.dumps(bcast))
    assert isinstance(sub, shmq.Subscriber) and isinstance(pub, shmq.Broadcast)
    pub.publish("via the copy")
    assert sub.get(timeout=5) == "via the copy"
    sub.close()
    pub.close()


def test_broadcast_and_subscriber_of_a_type_are_plain_handles_and_pickle(qname: str) -> None:
    assert typing.get_args(shmq.Broadcast[int]) == typing.get_args(shmq.Subscriber[int]) == (int,)
    with shmq.Broadcast[int](qname, create=True) as pub, shmq.Subscriber[int](qname) as sub:
        assert type(pub) is shmq.Broadcast and type(sub) is shmq.Subscriber
        with pickle.loads(pickle.dumps(pub)) as pub2, pickle.loads(pickle.dumps(sub)) as sub2:
            assert type(pub2) is shmq.Broadcast and type(sub2) is shmq.Subscriber
            pub2.publish(1)
            assert sub.get(timeout=5) == sub2.get(timeout=5) == 1


def test_queue_and_broadcast_names_do_not_mix(qname: str, bcast: shmq.Broadcast) -> None:
    with pytest.raises(shmq.WrongKindError, match="is a broadcast, not a queue"):
        shmq.Queue(bcast.name, create=False)
    with shmq.Queue(f"{qname}-q", create=True) as q:
        with pytest.raises(shmq.WrongKindError, match="is a queue, not a broadcast"):
            shmq.Subscriber(q.name)
    with pytest.raises(shmq.QueueNotFoundError):
        shmq.Subscriber(f"{qname}-missing")


def test_bad_arguments(qname: str) -> None:
    with pytest.raises(ValueError, match="policy"):
        shmq.Broadcast(qname, policy="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="capacity"):
        shmq.Broadcast(qname, capacity="lots")
    with pytest.raises(TypeError, match="capacity"):
        shmq.Broadcast(qname, capacity=None)  # type: ignore[arg-type]  # as Queue's: no silent default
    assert qname not in shmq.list_queues()
    with shmq.Broadcast(qname, capacity=4096, create=True, codec="raw") as b:
        with pytest.raises(shmq.MessageTooLargeError):
            b.publish(b"x" * 5000)
        with pytest.raises(TypeError):
            b.publish("not bytes")


def test_stats_report_positions_and_lag(bcast: shmq.Broadcast) -> None:
    a, b = bcast.subscribe(), bcast.subscribe()
    bcast.publish_many(range(10))
    a.get_many(4, timeout=5)
    s = bcast.stats()
    assert (s.published, s.retained) == (10, 10)
    assert sorted(x.lag_messages for x in s.subscribers) == [6, 10]
    assert a.info().lag_messages == 6 and b.info().position < a.info().position
    assert s.subscribers[0].pid == os.getpid()
    a.close()
    b.close()


def test_codecs_travel_per_message(bcast: shmq.Broadcast) -> None:
    sub = bcast.subscribe()
    bcast.publish({"k": [1, 2]}, codec=shmq.CODEC_MSGPACK)
    bcast.publish(b"raw", codec=shmq.CODEC_RAW)
    bcast.publish({1, 2})
    assert sub.get_many(3, timeout=5) == [{"k": [1, 2]}, b"raw", {1, 2}]
    sub.close()


IDLE_SUBSCRIBER = textwrap.dedent(
    """
    import resource, sys, time, shmq
    sub = shmq.Subscriber(sys.argv[1])
    t0 = time.monotonic()
    try:
        sub.get(timeout=float(sys.argv[2]))
    except shmq.Empty:
        pass
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{wall:.3f} {ru.ru_utime + ru.ru_stime:.3f}", flush=True)
    sub.close()
    """
)


def test_an_idle_subscriber_uses_almost_no_cpu(bcast: shmq.Broadcast) -> None:
    def run(timeout: str) -> tuple[float, float]:
        r = subprocess.run([sys.executable, "-c", IDLE_SUBSCRIBER, bcast.name, timeout],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        wall, cpu = map(float, r.stdout.split())
        return wall, cpu

    wall, cpu_waiting = run("1.0")
    _, cpu_baseline = run("0")
    assert wall >= 1.0
    assert cpu_waiting - cpu_baseline < 0.1, (cpu_waiting, cpu_baseline)


def test_forked_child_subscribes_on_its_own(bcast: shmq.Broadcast) -> None:
    sub = bcast.subscribe()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            # The inherited subscription becomes the child's own, starting at first use.
            os.write(w, b"r")
            code = 0 if sub.get(timeout=10) == "for both" else 2
        finally:
            os._exit(code)
    os.close(w)
    assert os.read(r, 1) == b"r"
    os.close(r)
    # The child subscribed on first use (get above): publish once it is visible.
    h.wait_until(lambda: len(bcast.stats().subscribers) == 2, what="the child's subscription")
    bcast.publish("for both")
    assert sub.get(timeout=10) == "for both"
    assert h.reap_forked(pid) == 0
    sub.close()


def test_zero_copy_views_hold_the_message_until_the_next_read(qname: str) -> None:
    with shmq.Broadcast(qname, capacity=4096, create=True, codec="raw") as b, b.subscribe() as sub:
        b.publish(b"a" * 1000)
        view = sub.get(copy=False)
        assert isinstance(view, shmq.MessageView) and len(view) == 1000
        mv = memoryview(view)
        assert mv.readonly and bytes(mv) == b"a" * 1000 and bytes(view) == b"a" * 1000
        with pytest.raises(TypeError, match="read-only"):
            memoryview(view)[0:1] = b"x"
        # Held: the publisher cannot reuse those bytes (4 KiB ring, 1 KiB messages).
        sent = 0
        while True:
            try:
                b.publish(bytes([sent]) * 1000, timeout=0)
                sent += 1
            except shmq.Full:
                break
        assert sent == 3 and bytes(mv) == b"a" * 1000  # 4 records of 1 KiB, one of them held
        # Once its buffers are released, the next read releases it.
        mv.release()
        assert sub.get(timeout=5) == bytes([0]) * 1000
        b.publish(b"z" * 1000, timeout=5)
        with pytest.raises(shmq.ViewReleasedError):
            bytes(view)
        rest = [bytes(sub.get(copy=False)) for _ in range(3)]
        assert rest == [bytes([1]) * 1000, bytes([2]) * 1000, b"z" * 1000]


def test_large_messages_are_lent_in_one_piece_every_time(qname: str) -> None:
    """1 MiB messages in a 4 MiB ring: a record that would wrap around the ring's end is
    published at its start instead (behind a filler), so ``get(copy=False)`` lends every one
    in place rather than copying the ones that wrapped into ``bytes``."""
    size = 1 << 20
    with shmq.Broadcast(qname, capacity="4MiB", create=True, codec="raw") as b, b.subscribe() as sub:
        kinds = []
        for i in range(12):
            b.publish(bytearray([i]) * size, timeout=5)
            got = sub.get(copy=False, timeout=5)
            kinds.append(type(got).__name__)
            assert len(got) == size and bytes(got)[:1] == bytes([i]) and bytes(got)[-1:] == bytes([i])
        assert kinds == ["MessageView"] * 12
        publish_many = [bytearray([i]) * size for i in range(2)]
        b.publish_many(publish_many, timeout=5)  # batches still go as before
        assert [bytes(sub.get(timeout=5))[:1] for _ in range(2)] == [b"\x00", b"\x01"]


def test_a_large_publish_inside_an_open_reservation_of_the_same_thread_still_works(qname: str) -> None:
    # A large publish goes through a loan when it can; inside the thread's own open
    # reservation that loan would be refused (WouldDeadlock), so it is sent as before.
    size = 256 * 1024
    with shmq.Broadcast(qname, capacity="4MiB", create=True, codec="raw") as b, b.subscribe() as sub:
        with b.reserve(4) as buf:
            buf[:] = b"resv"
            b.publish(b"x" * size, timeout=5)
        assert bytes(sub.get(timeout=5)) == b"resv"
        assert bytes(sub.get(timeout=5)) == b"x" * size


def fill_and_read(b: shmq.Broadcast, sub: shmq.Subscriber[bytes], rounds: int) -> list[bytes]:
    """Publishes 1000-byte messages and reads each back (three kinds of read), ``rounds``
    times: what a live buffer of a lent view must survive. Returns the messages read."""
    got: list[bytes] = []
    for i in range(rounds):
        try:
            b.publish(bytes([i % 250]) * 1000, timeout=0)
        except shmq.Full:
            pass
        for read in (lambda: [sub.get_nowait()], lambda: sub.get_many(block=False),
                     lambda: [sub.get(copy=False, timeout=0)]):
            try:
                got += [bytes(m) for m in read()]
            except shmq.Empty:
                pass
    return got


def test_a_memoryview_of_a_subscriber_view_never_reads_another_message(qname: str) -> None:
    with shmq.Broadcast(qname, capacity=4096, create=True, codec="raw") as b, b.subscribe() as sub:
        b.publish(b"A" * 1000)
        view = sub.get(copy=False)
        mv = memoryview(view)
        # Reads go on behind the record `mv` shows, which stays held: publishers cannot
        # reuse its bytes, so once the ring comes round to it they wait (4 KiB ring).
        got = fill_and_read(b, sub, 10)
        assert bytes(mv) == b"A" * 1000
        assert got == [bytes([i]) * 1000 for i in range(3)]  # then the ring was full
        with pytest.raises(shmq.ViewReleasedError):
            memoryview(view)  # retired by the reads: no new buffer of it
        with pytest.raises(shmq.Full):
            b.publish(b"x" * 1000, timeout=0)
        mv.release()  # the record goes: publishers have room again
        b.publish(b"B" * 1000, timeout=5)
        assert sub.get(timeout=5) == b"B" * 1000


def test_a_view_loop_keeps_working_with_memoryviews_kept_across_reads(qname: str) -> None:
    """Both loops users write work: ``with memoryview(sub.get(copy=False))``, and a variable
    keeping the last memoryview across the next ``get`` (the record it shows stays held
    while the next one is read). Past three held records, ``get(copy=False)`` copies."""
    with shmq.Broadcast(qname, capacity=64 * 1024, create=True, codec="raw") as b, b.subscribe() as sub:
        for i in range(12):
            b.publish(bytes([i]) * 1000)
        seen = []
        for _ in range(3):
            with memoryview(sub.get(copy=False)) as m:
                seen.append(m[0])
        for _ in range(3):
            m = memoryview(sub.get(copy=False))  # the previous `m` is alive during this get
            seen.append(m[0])
        assert seen == [0, 1, 2, 3, 4, 5]
        m.release()
        kept = [memoryview(sub.get(copy=False)) for _ in range(3)]  # three held at once
        fourth = sub.get(copy=False)
        assert not isinstance(fourth, shmq.MessageView) and fourth == bytes([9]) * 1000  # a copy
        assert sub.get() == bytes([10]) * 1000
        assert [bytes(k) for k in kept] == [bytes([i]) * 1000 for i in (6, 7, 8)]
        for k in kept:
            k.release()
        assert isinstance(sub.get(copy=False), shmq.MessageView)  # room in the window again


def test_a_forked_child_never_ends_the_parents_holds(qname: str) -> None:
    with shmq.Broadcast(qname, capacity=4096, create=True, codec="raw") as b, b.subscribe() as sub:
        b.publish(b"A" * 1000)
        mv = memoryview(sub.get(copy=False))
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                try:
                    sub.get(copy=False, timeout=0)  # retires the inherited view (a subscription of its own)
                except shmq.Empty:
                    pass
                mv.release()  # its last buffer here: the record is the parent's to release
                code = 0
            finally:
                os._exit(code)
        assert h.reap_forked(pid) == 0
        sent = 0
        for i in range(10):
            try:
                b.publish(bytes([i]) * 1000, timeout=0)
                sent += 1
            except shmq.Full:
                pass
        assert sent == 3 and bytes(mv) == b"A" * 1000  # still held: 4 records of 1 KiB, one ours
        mv.release()


def test_a_numpy_array_of_a_subscriber_view_never_reads_another_message(qname: str) -> None:
    np = pytest.importorskip("numpy")
    with shmq.Broadcast(qname, capacity=4096, create=True, codec="raw") as b, b.subscribe() as sub:
        b.publish(b"A" * 1000)
        arr = np.frombuffer(sub.get(copy=False), dtype=np.uint8)  # the view lives in `arr`
        got = fill_and_read(b, sub, 10)
        assert arr.tobytes() == b"A" * 1000
        assert got == [bytes([i]) * 1000 for i in range(3)]
        del arr
        b.publish(b"B" * 1000, timeout=5)
        assert sub.get(timeout=5) == b"B" * 1000


def test_subscriber_copy_false_arrays_are_views_of_the_ring_held_until_garbage(qname: str) -> None:
    np = pytest.importorskip("numpy")
    with shmq.Broadcast(qname, capacity="1MiB", create=True) as b, b.subscribe() as sub:
        frames = [np.full((64, 64), i, dtype=np.float64) for i in range(4)]  # 32 KiB each
        for f in frames:
            b.publish({"frame": f})
        first = sub.get(copy=False)["frame"]
        assert not first.flags.writeable and not first.flags.owndata  # a view, no copy
        later = [sub.get(copy=False)["frame"] for _ in range(3)]  # three held: a copy
        assert [a.flags.writeable for a in later] == [False, False, True]
        assert all((a == i).all() for i, a in enumerate([first, *later]))
        del first, later
        b.publish({"frame": frames[0]})
        assert not sub.get(copy=False)["frame"].flags.writeable  # held again: the window emptied


CLOSE_UNDER_A_LIVE_BUFFER = """
import gc, sys, shmq
b = shmq.Broadcast(sys.argv[1], capacity=4096, create=True, codec="raw")
sub = b.subscribe()
b.publish(b"A" * 1000)
view = sub.get(copy=False)
mv = memoryview(view)
del view
sub.close()
try:
    bytes(sub.get_nowait())
except shmq.QueueClosedError:
    pass
# The closed subscription still holds the message for `mv`: the ring fills up behind it.
sent = 0
for i in range(20):
    try:
        b.publish(bytes([i]) * 1000, timeout=0)
        sent += 1
    except shmq.Full:
        pass
if sys.argv[2] == "publisher too":
    b.close()  # the last handle of the broadcast: the subscription's mapping must stay
    gc.collect()
assert bytes(mv) == b"A" * 1000, bytes(mv[:8])
assert sent == 3, sent
mv.release()  # the subscription ends now: publishers no longer wait for it
if sys.argv[2] != "publisher too":
    for i in range(20):
        b.publish(b"z" * 1000, timeout=5)
    b.close()
print("ok")
"""


@pytest.mark.parametrize("then", ["subscriber only", "publisher too"])
def test_close_keeps_a_live_buffer_of_a_view_mapped_and_its_message_held(qname: str, then: str) -> None:
    with h.children() as procs:
        p = h.python(CLOSE_UNDER_A_LIVE_BUFFER, qname, then)
        procs.append(p)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, (p.returncode, err.decode())  # never a signal (use after unmap)
    assert out.strip() == b"ok"


def test_zero_copy_is_refused_with_the_lag_policy(qname: str) -> None:
    with shmq.Broadcast(qname, create=True, policy="lag", codec="raw") as b, b.subscribe() as sub:
        b.publish(b"x")
        with pytest.raises(ValueError, match="policy='block'"):
            sub.get(copy=False)
        assert sub.get(timeout=5) == b"x"


class FailsToUnpickle:
    def __reduce__(self) -> tuple[type[int], tuple[str]]:
        return (int, ("not a number",))  # int("not a number") raises at load time


def test_pickled_messages_decode_in_place_and_bad_ones_keep_their_bytes(bcast: shmq.Broadcast) -> None:
    sub = bcast.subscribe()
    bcast.publish({"x": [1, 2, 3]})
    bcast.publish(FailsToUnpickle())
    bcast.publish("after")
    assert sub.get(timeout=5) == {"x": [1, 2, 3]}
    with pytest.raises(shmq.DecodeError) as info:
        sub.get(timeout=5)
    assert info.value.raw == pickle.dumps(FailsToUnpickle(), protocol=5)
    assert sub.get(timeout=5) == "after"
    sub.close()
