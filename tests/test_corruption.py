"""Segments that are not (valid) queues: opening them raises CorruptedQueueError, never a
crash or a hang; damaged shared state is reported, not trusted."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import _helpers as h
import shmq

MakeQueue = Callable[..., shmq.Queue]

pytestmark = pytest.mark.timeout(30)

# Offsets in the segment header (docs/protocol.md, layout version 5; checked against a live
# segment by test_header_offsets_are_those_of_the_layout, so the pokes below cannot land in padding).
VERSION, KIND, TOTAL_SIZE, SLOTS_OFFSET, DATA_OFFSET, CAPACITY = 8, 12, 16, 24, 32, 40
MAX_SLOTS, READY, LANES = 64, 72, 76
TAIL, HEAD, RELEASE = 128, 256, 384
SHUTDOWN = 1408
CONTROL_SIZE = 1536
LAYOUT_VERSION = 5


@pytest.fixture
def seg(qname: str) -> Iterator[Path]:
    """The /dev/shm path of this test's queue name; removed at teardown whatever happened."""
    path = h.segment_path(qname)
    yield path
    h.remove_segment(qname)


def poke(path: Path, offset: int, fmt: str, value: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


def peek(path: Path, offset: int, fmt: str) -> int:
    with open(path, "rb") as f:
        f.seek(offset)
        return int(struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0])


def with_ready_flag(data: bytes) -> bytes:
    """Garbage that claims to be initialised, so that the header itself gets validated."""
    return data[:READY] + struct.pack("<I", 1) + data[READY + 4:]


GARBAGE = {
    "random": lambda: os.urandom(64 * 1024),
    "zeros": lambda: bytes(64 * 1024),
    "truncated-100-bytes": lambda: os.urandom(100),
    "one-byte-short-of-a-header": lambda: with_ready_flag(os.urandom(CONTROL_SIZE - 1)),
    "zero-length": lambda: b"",
    "random-marked-ready": lambda: with_ready_flag(os.urandom(64 * 1024)),
}
# Files whose "ready" flag is not set look like a queue being created (or whose creator died
# before initialising it): opening waits ~2 s for the creator, then gives up.
SLOW = {"random", "zeros", "zero-length"}


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_garbage_segment_raises_corrupted(qname: str, seg: Path, kind: str) -> None:
    content = GARBAGE[kind]()
    seg.write_bytes(content)
    assert qname in shmq.list_queues()
    with pytest.raises(shmq.CorruptedQueueError):
        shmq.Queue(qname, create=False)
    if kind not in SLOW:
        with pytest.raises(shmq.CorruptedQueueError):
            shmq.Queue(qname)  # open-or-create must not clobber it either
    with pytest.raises(shmq.QueueExistsError):
        shmq.Queue(qname, create=True)
    assert seg.read_bytes() == content  # never written to


def test_header_offsets_are_those_of_the_layout(make_queue: MakeQueue, seg: Path) -> None:
    q = make_queue(capacity="64KiB", codec="raw")
    size = seg.stat().st_size
    assert seg.read_bytes()[:8] == b"SHMQRNG1"
    assert (peek(seg, VERSION, "<I"), peek(seg, KIND, "<I")) == (LAYOUT_VERSION, 1)  # a queue
    assert (peek(seg, READY, "<I"), peek(seg, LANES, "<I")) == (1, 4)
    assert peek(seg, TOTAL_SIZE, "<Q") == size
    assert peek(seg, SLOTS_OFFSET, "<Q") == CONTROL_SIZE
    data_offset, capacity = peek(seg, DATA_OFFSET, "<Q"), peek(seg, CAPACITY, "<Q")
    assert capacity == 64 * 1024 and data_offset + capacity == size and data_offset % 4096 == 0
    assert CONTROL_SIZE + peek(seg, MAX_SLOTS, "<I") * 384 <= data_offset  # 384: slot size
    q.put(b"x")  # one record: a 16-byte header and 1 byte, padded to 16
    assert (peek(seg, TAIL, "<Q"), peek(seg, HEAD, "<Q")) == (32, 0)
    assert q.get(timeout=5) == b"x"
    assert (peek(seg, TAIL, "<Q"), peek(seg, HEAD, "<Q")) == (32, 32)
    assert peek(seg, RELEASE, "<Q") in (0, 32)
    assert peek(seg, SHUTDOWN, "<I") == 0
    q.shutdown()
    assert peek(seg, SHUTDOWN, "<I") == 1
    q.shutdown(immediate=True)
    assert peek(seg, SHUTDOWN, "<I") == 3


@pytest.mark.parametrize("word", [2, 4, 0xFFFFFFFF])
def test_shutdown_word_with_unknown_bits(make_queue: MakeQueue, seg: Path, word: int) -> None:
    """A scribbled shutdown word is corruption, reported by puts and gets alike (never a
    hang: a blocking get with it returns at once)."""
    q = make_queue(capacity="64KiB")
    q.put("x")
    poke(seg, SHUTDOWN, "<I", word)
    assert q.is_shutdown
    with pytest.raises(shmq.CorruptedQueueError, match="shutdown word"):
        q.put("y")
    with pytest.raises(shmq.CorruptedQueueError, match="shutdown word"):
        q.get()
    poke(seg, SHUTDOWN, "<I", 0)
    assert q.get(timeout=5) == "x"


def test_valid_queue_with_overwritten_magic(make_queue: MakeQueue, qname: str, seg: Path) -> None:
    q = make_queue(capacity="64KiB")
    q.put("before")
    with open(seg, "r+b") as f:
        assert f.read(8) == b"SHMQRNG1"
        f.seek(0)
        f.write(b"NOTMAGIC")
    with pytest.raises(shmq.CorruptedQueueError, match="magic"):
        shmq.Queue(qname, create=False)
    with pytest.raises(shmq.CorruptedQueueError):
        shmq.Queue(qname)
    # The attached handle validated the header when it opened and keeps working.
    assert q.get(timeout=5) == "before"
    q.put("after")
    assert q.get(timeout=5) == "after"


@pytest.mark.parametrize("version", [0, 1, 2, 3, 0xFFFFFFFF])
def test_valid_queue_with_another_layout_version(make_queue: MakeQueue, qname: str, seg: Path,
                                                 version: int) -> None:
    make_queue(capacity="64KiB")
    assert peek(seg, VERSION, "<I") == LAYOUT_VERSION
    poke(seg, VERSION, "<I", version)
    with pytest.raises(shmq.CorruptedQueueError, match="version"):
        shmq.Queue(qname, create=False)


@pytest.mark.parametrize(
    "field, offset, fmt, value",
    [
        ("kind", KIND, "<I", 7),
        ("lanes", LANES, "<I", 99),
        ("total_size", TOTAL_SIZE, "<Q", 1 << 20),
        ("slots_offset", SLOTS_OFFSET, "<Q", 64),
        ("data_offset", DATA_OFFSET, "<Q", 1 << 40),
        ("data_offset-unaligned", DATA_OFFSET, "<Q", 4097),
        ("capacity", CAPACITY, "<Q", 1 << 50),
        ("capacity-zero", CAPACITY, "<Q", 0),
        ("max_slots-zero", MAX_SLOTS, "<I", 0),
        ("max_slots-huge", MAX_SLOTS, "<I", 1 << 30),
    ],
)
def test_valid_queue_with_inconsistent_header(make_queue: MakeQueue, qname: str, seg: Path, field: str,
                                              offset: int, fmt: str, value: int) -> None:
    q = make_queue(capacity="64KiB")
    poke(seg, offset, fmt, value)
    with pytest.raises(shmq.CorruptedQueueError):
        shmq.Queue(qname, create=False)
    q.put(field)  # the existing handle never re-reads the header
    assert q.get(timeout=5) == field


def test_damaged_persistent_queue_with_nobody_attached(qname: str, seg: Path) -> None:
    q = shmq.Queue(qname, create=True, persistent=True)
    q.put("lost")
    q.close()
    poke(seg, VERSION, "<I", 42)
    with pytest.raises(shmq.CorruptedQueueError):
        shmq.Queue(qname, create=False)
    assert seg.exists()  # left for the operator to inspect (the fixture removes it)


# --------------------------------------------------------------------------------------
# Damaged shared positions / records in a live queue
# --------------------------------------------------------------------------------------


def test_head_ahead_of_tail_is_reported(make_queue: MakeQueue, seg: Path) -> None:
    q = make_queue(capacity="64KiB")
    poke(seg, HEAD, "<Q", 1 << 40)
    with pytest.raises(shmq.CorruptedQueueError):
        q.get(timeout=5)
    with pytest.raises(shmq.CorruptedQueueError):
        q.get_many(10, block=False)


def test_tail_more_than_a_ring_ahead_is_reported(make_queue: MakeQueue, seg: Path) -> None:
    q = make_queue(capacity="64KiB")
    poke(seg, TAIL, "<Q", 10 * 65536)
    with pytest.raises(shmq.CorruptedQueueError):
        q.put("x", timeout=5)
    with pytest.raises(shmq.CorruptedQueueError):
        q.put_many(["x", "y"], block=False)


def test_record_with_a_bad_length_is_reported(make_queue: MakeQueue, seg: Path) -> None:
    q = make_queue(capacity="64KiB", codec="raw")
    q.put(b"payload")
    data_offset = peek(seg, DATA_OFFSET, "<Q")
    assert peek(seg, data_offset + 8, "<I") == len(b"payload")  # the record's length
    poke(seg, data_offset + 8, "<I", 0xFFFFFF00)
    with pytest.raises(shmq.CorruptedQueueError):
        q.get(timeout=5)


# --------------------------------------------------------------------------------------
# Permissions
# --------------------------------------------------------------------------------------


def test_segment_without_permission(make_queue: MakeQueue, qname: str) -> None:
    make_queue(mode=0o400)  # read-only even for its owner: opening read-write is refused
    if os.geteuid() != 0:
        with pytest.raises(shmq.QueuePermissionError) as ei:
            shmq.Queue(qname, create=False)
        assert isinstance(ei.value, PermissionError)
        return
    # Root opens any segment whatever its mode (CI runs as root): give the segment to nobody
    # and open it as nobody, its owner now, in a child that dropped root.
    os.chown(h.segment_path(qname), h.NOBODY, h.NOBODY)
    outcome = h.open_as(h.NOBODY, qname)  # "QueuePermissionError|<is a PermissionError>|<message>"
    assert outcome.startswith("QueuePermissionError|True|") and qname in outcome, outcome
