"""Messages larger than the ring (``allow_large=True``): each travels in a side segment of its
own, referenced from the ring; the receiver maps it; nothing is left in /dev/shm after it is
consumed, reclaimed, refused, or the queue is removed."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import os

import pytest

import _helpers as h
import shmq

MakeQueue = Callable[..., shmq.Queue]
BIG = 3 * 1024 * 1024  # three times the ring below


def blob(i: int, n: int = BIG) -> bytes:
    return bytes([i % 251]) * n


def test_without_allow_large_a_big_message_is_refused(make_queue: MakeQueue) -> None:
    q = make_queue(capacity="1MiB", codec="raw")
    with pytest.raises(shmq.MessageTooLargeError, match="allow_large=True"):
        q.put(blob(1))
    assert not q.allow_large


def test_big_and_small_messages_keep_their_order(make_queue: MakeQueue, qname: str) -> None:
    q = make_queue(capacity="1MiB", codec="raw", allow_large=True)
    q.put(blob(1))
    q.put(b"small")
    q.put_many([blob(2), b"tiny", blob(3, 5000)])
    assert len(h.side_segments(qname)) == 2
    got = [q.get(timeout=5) for _ in range(5)]
    assert got == [blob(1), b"small", blob(2), b"tiny", blob(3, 5000)]
    assert h.side_segments(qname) == [], "a consumed message's segment is removed"


def test_get_many_keeps_big_and_small_messages_in_order(make_queue: MakeQueue, qname: str) -> None:
    # A batch copies the big ones out of their segments after the claim, each into its place.
    q = make_queue(capacity="1MiB", codec="raw", allow_large=True)
    sent = [blob(1), b"small", blob(2), b"", blob(3, 5000), blob(4)]
    q.put_many(sent)
    got: list[bytes] = []
    while len(got) < len(sent):
        got += q.get_many(100, timeout=5)
    assert got == sent
    assert h.side_segments(qname) == [], "a consumed message's segment is removed"


def test_get_without_copy_of_a_big_message_gives_its_bytes(make_queue: MakeQueue, qname: str) -> None:
    # A side message has no place in the ring to lend: `copy=False` copies it out instead.
    q = make_queue(capacity="1MiB", codec="raw", allow_large=True)
    q.put(blob(5))
    assert bytes(q.get(copy=False, timeout=5)) == blob(5)
    p = make_queue(capacity="64KiB", allow_large=True)
    big = {"rows": list(range(100_000))}
    p.put(big)
    assert p.get(copy=False, timeout=5) == big
    with shmq.Broadcast(f"{qname}-b", create=True, capacity="1MiB", codec="raw", allow_large=True) as bc:
        with bc.subscribe() as sub:
            bc.publish(blob(6))
            assert bytes(sub.get(copy=False, timeout=5)) == blob(6)


def test_codecs_work_through_side_segments(make_queue: MakeQueue) -> None:
    q = make_queue(capacity="64KiB", allow_large=True)
    big = {"rows": list(range(100_000))}
    q.put(big)
    assert q.get(timeout=5) == big


def test_another_process_reads_them(make_queue: MakeQueue, qname: str, tmp_path: Path) -> None:
    q = make_queue(capacity="1MiB", codec="raw", allow_large=True)
    out = tmp_path / "got"
    ctx = mp.get_context("spawn")
    with h.children() as procs:
        p = ctx.Process(target=h.consume_large, args=(qname, 4, str(out)))
        p.start()
        procs.append(p)
        for i in range(4):
            q.put(blob(i, BIG + i), timeout=30)
        h.join_all(procs, timeout=60)
    assert h.exitcode(p) == 0
    assert out.read_text() == " ".join(f"{BIG + i}:{zlib.crc32(blob(i, BIG + i))}" for i in range(4))
    assert h.side_segments(qname) == []


def test_a_put_that_times_out_leaves_no_segment(make_queue: MakeQueue, qname: str) -> None:
    q = make_queue(capacity=4096, maxsize=1, codec="raw", allow_large=True)
    q.put(b"fills maxsize")
    with pytest.raises(shmq.Full):
        q.put(blob(1), timeout=0.1)
    assert h.side_segments(qname) == []


def test_closing_the_queue_removes_unconsumed_side_segments(qname: str) -> None:
    q = shmq.Queue(qname, create=True, capacity="1MiB", codec="raw", allow_large=True, keep_messages=False)
    q.put(blob(1))
    q.put(blob(2))
    assert len(h.side_segments(qname)) == 2
    q.close()
    assert h.side_segments(qname) == [] and not h.segment_path(qname).exists()


def test_side_segments_go_with_their_ring_never_while_it_is_in_use(qname: str) -> None:
    q = shmq.Queue(qname, create=True, capacity="1MiB", codec="raw", allow_large=True)
    q.put(blob(1))
    shmq.remove(qname)  # shmq rm: the name goes, this process still uses the ring
    assert shmq.gc() == [] or all(qname not in n for n in shmq.gc())
    assert len(h.side_segments(qname)) == 1  # gc left the in-use ring's side segment
    assert q.get(timeout=5) == blob(1)  # nothing lost
    assert q.stats().lost == 0
    q.put(blob(2))
    q.close()  # the last process of a removed ring frees it, messages and side segments
    assert h.side_segments(qname) == []
    assert not any(qname in e for e in os.listdir("/dev/shm"))


def test_gc_removes_side_segments_of_a_vanished_queue(qname: str) -> None:
    # A process puts a large message and dies without closing; then the ring's name goes
    # (an administrator's rm): its side segment is an orphan that only gc can find.
    code = (
        "import os, sys, shmq; "
        "q = shmq.Queue(sys.argv[1], create=True, capacity='1MiB', codec='raw', allow_large=True); "
        "q.put(bytes(3 << 20)); os._exit(0)"
    )
    r = subprocess.run([sys.executable, "-c", code, qname], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    (side,) = h.side_segments(qname)
    h.remove_segment(qname)
    removed = shmq.gc(0)
    assert side in removed
    assert h.side_segments(qname) == []


def test_broadcast_large_messages_reach_every_subscriber(qname: str) -> None:
    with shmq.Broadcast(qname, capacity="1MiB", create=True, codec="raw", allow_large=True) as b:
        subs = [b.subscribe(), b.subscribe()]
        b.publish(blob(7))
        b.publish(b"after")
        assert len(h.side_segments(qname)) == 1
        assert subs[0].get(timeout=5) == blob(7)
        assert len(h.side_segments(qname)) == 1, "the other subscriber has not read it yet"
        assert subs[1].get(timeout=5) == blob(7)
        assert h.side_segments(qname) == [], "removed once every subscriber passed it"
        # Zero-copy reads fall back to a copy for side messages.
        assert subs[0].get(copy=False) is not None
        assert subs[1].get_many(10, timeout=5) == [b"after"]
        # Once every subscriber passed it, the next reclaim removes its segment.
        for i in range(200):
            b.publish(blob(i, 20_000), timeout=5)
            for s in subs:
                s.get(timeout=5)
        assert h.side_segments(qname) == []
        for s in subs:
            s.close()


def test_get_many_bounds_the_bytes_of_a_batch(make_queue: MakeQueue, qname: str) -> None:
    # Many large bytes objects alive at once are slow to allocate (glibc unmaps and remaps
    # them per batch): a batch stops before 1 MiB of payload, after at least one message.
    q = make_queue(capacity="8MiB", codec="raw")
    q.put_many([blob(i, 600_000) for i in range(3)] + [b"s"] * 5)
    batches = []
    while sum(len(b) for b in batches) < 8:
        batches.append(q.get_many(100, timeout=5))
    assert [len(b) for b in batches] == [1, 1, 6]
    assert [m for b in batches for m in b] == [blob(i, 600_000) for i in range(3)] + [b"s"] * 5
    with shmq.Broadcast(f"{qname}-b", create=True, capacity="8MiB", codec="raw") as bc, bc.subscribe() as sub:
        bc.publish_many([blob(7, 700_000), blob(8, 700_000), b"x"])
        assert [len(sub.get_many(100, timeout=5)) for _ in range(2)] == [1, 2]
