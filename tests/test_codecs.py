"""Codecs: pickle (default), msgpack, raw, per-message codec ids, user codecs, decode errors
and allow_pickle=False."""

from __future__ import annotations

import array
import json
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import shmq

MakeQueue = Callable[..., shmq.Queue]


@dataclass
class Point:
    x: int
    y: list[Any]


class Unpicklable:
    """Pickles fine, but unpickling raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_explode, ("unpickling refused",))


def _explode(msg: str) -> None:
    raise RuntimeError(msg)


def _json_encode(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _json_decode(data: bytes) -> Any:
    return json.loads(data)


# "mine" is registered once for the whole module (registration is per process and global).
shmq.register_codec(1001, _json_encode, _json_decode, name="mine")


def _picky_decode(data: bytes) -> bytes:
    if data.startswith(b"bad"):
        raise ValueError(f"cannot decode {data!r}")
    return data


# 1002: bytes in, bytes out, but refuses to decode payloads starting with b"bad".
shmq.register_codec(1002, lambda b: b, _picky_decode)


# --------------------------------------------------------------------------------------
# pickle
# --------------------------------------------------------------------------------------


def test_pickle_is_the_default(queue: shmq.Queue) -> None:
    assert queue.codec_id == shmq.CODEC_PICKLE == 1
    nested = {"a": [1, (2, 3), {"b": {4, 5}}], "p": Point(1, [Point(2, [])]), None: b"\x00" * 10}
    queue.put(nested)
    queue.put(Point(3, ["x"]))
    assert queue.get() == nested
    got = queue.get()
    assert isinstance(got, Point) and got == Point(3, ["x"])


def test_pickle_large_object(make_queue: MakeQueue) -> None:
    q = make_queue(capacity="8MiB")
    big = [os.urandom(1000) for _ in range(5000)]  # ~5 MB pickled
    q.put(big)
    assert q.get() == big


def test_pickle_uses_protocol_5(make_queue: MakeQueue, qname: str) -> None:
    q = make_queue()
    strict = make_queue(qname, create=False, allow_pickle=False)
    q.put({"x": 1})
    with pytest.raises(shmq.PickleNotAllowedError) as ei:
        strict.get(timeout=5)
    assert ei.value.raw[:2] == b"\x80\x05"  # PROTO 5
    assert pickle.loads(ei.value.raw) == {"x": 1}


def test_unpicklable_object_raises_and_puts_nothing(queue: shmq.Queue) -> None:
    with pytest.raises(Exception):  # noqa: B017 - pickle's own error (see the report)
        queue.put(lambda: None)
    assert queue.empty()
    queue.put("next")
    assert queue.get_nowait() == "next"


# --------------------------------------------------------------------------------------
# msgpack
# --------------------------------------------------------------------------------------


def test_msgpack_round_trips(make_queue: MakeQueue) -> None:
    q = make_queue(codec="msgpack")
    assert q.codec_id == shmq.CODEC_MSGPACK == 2
    objs: list[Any] = [{"k": "v", "n": [1, 2.5, None, True]}, [1, [2, [3]]], b"\x00\x01bytes", "str ünï",
                       {1: "int key", b"b": "bytes key"}, 2**63 - 1, -(2**63), {"big": b"x" * 100_000}]
    for o in objs:
        q.put(o)
    got = [q.get(timeout=5) for _ in objs]
    assert got == objs
    assert type(got[2]) is bytes and type(got[3]) is str  # bin and str types stay distinct


def test_msgpack_turns_tuples_into_lists(make_queue: MakeQueue) -> None:
    q = make_queue(codec="msgpack")
    q.put((1, (2, 3)))
    assert q.get() == [1, [2, 3]]


@pytest.mark.parametrize("bad", [object(), {1, 2}, Point(1, []), 2**64, complex(1, 1)])
def test_msgpack_refuses_what_it_cannot_encode(make_queue: MakeQueue, bad: Any) -> None:
    q = make_queue(codec="msgpack")
    with pytest.raises(shmq.CodecError):
        q.put(bad)
    with pytest.raises(shmq.CodecError):
        q.put_many(["fine", bad])  # all or nothing: "fine" is not put either
    assert q.empty()


# --------------------------------------------------------------------------------------
# raw
# --------------------------------------------------------------------------------------


def test_raw_accepts_bytes_like_and_returns_bytes(make_queue: MakeQueue) -> None:
    q = make_queue(codec="raw", capacity="4MiB")
    assert q.codec_id == shmq.CODEC_RAW == 0
    big = os.urandom(1024 * 1024)  # above the size copied without the GIL
    ins: list[Any] = [b"bytes", bytearray(b"bytearray"), memoryview(b"memoryview"), memoryview(b"0123456789")[2:5],
                      array.array("B", [1, 2, 3]), b"", memoryview(bytearray(big)), bytearray(big)]
    for o in ins:
        q.put(o)
    got = [q.get(timeout=5) for _ in ins]
    assert all(type(g) is bytes for g in got)
    assert got == [bytes(o) for o in ins]


def test_raw_copies_the_buffer_at_put_time(make_queue: MakeQueue) -> None:
    q = make_queue(codec="raw")
    buf = bytearray(b"before")
    q.put(buf)
    buf[:] = b"after!"
    assert q.get() == b"before"


@pytest.mark.parametrize("bad", ["a str", 42, None, ["list"], memoryview(b"abcdef")[::2]])
def test_raw_refuses_non_bytes(make_queue: MakeQueue, bad: Any) -> None:
    q = make_queue(codec="raw")
    with pytest.raises(TypeError):
        q.put(bad)
    with pytest.raises(TypeError):
        q.put_many([b"ok", bad])
    assert q.empty()


# --------------------------------------------------------------------------------------
# Per-message codec ids
# --------------------------------------------------------------------------------------


def test_per_put_codec_override_takes_an_int_id(queue: shmq.Queue) -> None:
    queue.put({"m": 1}, codec=shmq.CODEC_MSGPACK)
    queue.put(b"raw", codec=shmq.CODEC_RAW)
    queue.put((1, 2), codec=shmq.CODEC_PICKLE)
    queue.put({"j": [1]}, codec=1001)
    assert queue.get() == {"m": 1}
    assert queue.get() == b"raw"
    assert queue.get() == (1, 2)  # pickle keeps the tuple
    assert queue.get() == {"j": [1]}


def test_per_put_codec_by_name(queue: shmq.Queue) -> None:
    # As the constructor takes it (more in test_bad_inputs.py).
    queue.put({"m": 1}, codec="msgpack")
    queue.put_many([b"r"], codec="raw")
    queue.put([1], codec="mine")
    assert queue.get_many() == [{"m": 1}, b"r", [1]]


def test_mixed_codecs_in_one_queue_each_decoded_with_its_own(make_queue: MakeQueue, qname: str) -> None:
    pickler = make_queue()
    raw = make_queue(qname, create=False, codec="raw")
    packer = make_queue(qname, create=False, codec="msgpack")
    mine = make_queue(qname, create=False, codec="mine")
    pickler.put((1, "pickled"))
    raw.put(b"raw bytes")
    packer.put({"packed": [1, 2]})
    mine.put({"json": True})
    pickler.put(b"pickled bytes")
    expected = [(1, "pickled"), b"raw bytes", {"packed": [1, 2]}, {"json": True}, b"pickled bytes"]
    # Whatever the receiving handle's own default codec, each message is decoded right.
    assert [raw.get(timeout=5) for _ in range(2)] == expected[:2]
    assert packer.get_many() == expected[2:]


def test_codec_id_helper() -> None:
    assert shmq.codec_id("pickle") == shmq.CODEC_PICKLE
    assert shmq.codec_id("msgpack") == shmq.CODEC_MSGPACK
    assert shmq.codec_id("raw") == shmq.CODEC_RAW
    assert shmq.codec_id("mine") == 1001
    assert shmq.codec_id(1001) == 1001
    assert shmq.codec_id(65535) == 65535
    assert shmq.FIRST_USER_CODEC == 1001
    for bad in (3, 1000, 65536, -1):
        with pytest.raises(ValueError):
            shmq.codec_id(bad)
    with pytest.raises(ValueError):
        shmq.codec_id("nope")


# --------------------------------------------------------------------------------------
# User codecs
# --------------------------------------------------------------------------------------


def test_user_codec_by_name(make_queue: MakeQueue) -> None:
    q = make_queue(codec="mine")
    assert q.codec_id == 1001
    q.put({"a": [1, 2, {"b": None}]})
    q.put_many([1, "two"])
    assert q.get() == {"a": [1, 2, {"b": None}]}
    assert q.get_many() == [1, "two"]


def test_user_codec_by_id_and_bytes_like_encoders(make_queue: MakeQueue) -> None:
    shmq.register_codec(2001, lambda s: bytearray(s.encode()), lambda b: b.decode())
    shmq.register_codec(2002, lambda s: memoryview(s.encode()), lambda b: b.decode()[::-1])
    q = make_queue(codec=2001)
    q.put("via bytearray")
    q.put("via memoryview", codec=2002)
    assert q.get() == "via bytearray"
    assert q.get() == "via memoryview"[::-1]  # decoded by 2002's decoder


def test_user_codec_decoder_receives_bytes(make_queue: MakeQueue) -> None:
    seen: list[Any] = []
    shmq.register_codec(2003, lambda o: bytes(o), lambda b: seen.append(type(b)) or b)
    q = make_queue(codec=2003)
    q.put(b"abc")
    assert q.get() == b"abc"
    assert seen == [bytes]


def test_user_codec_cannot_be_replaced(make_queue: MakeQueue) -> None:
    # Messages already sent with an id decode with its codec: a second registration of the
    # id with other functions is refused (test_bad_inputs.py has the rest).
    shmq.register_codec(2004, lambda o: b"v1", lambda b: b)
    with pytest.raises(shmq.InvalidArgumentError, match="already registered"):
        shmq.register_codec(2004, lambda o: b"v2", lambda b: b + b"!")
    q = make_queue(codec=2004)
    q.put(None)
    assert q.get() == b"v1"


@pytest.mark.parametrize("bad", [0, 1, 2, 3, 1000, 65536])
def test_register_codec_out_of_range_ids(bad: int) -> None:
    with pytest.raises(ValueError):
        shmq.register_codec(bad, bytes, bytes)


def test_per_put_codec_id_out_of_range(queue: shmq.Queue) -> None:
    with pytest.raises(ValueError):
        queue.put(b"x", codec=65536)
    with pytest.raises(ValueError):
        queue.put_many([b"x"], codec=70000)
    assert queue.empty()


def test_negative_codec_ids_are_value_errors(queue: shmq.Queue) -> None:
    with pytest.raises(ValueError):
        shmq.register_codec(-1, bytes, bytes)
    with pytest.raises(ValueError):
        shmq.register_codec(2**32, bytes, bytes)
    with pytest.raises(ValueError):
        queue.put(b"x", codec=-1)
    with pytest.raises(ValueError):
        queue.put_many([b"x"], codec=-1)


def test_register_codec_needs_callables() -> None:
    with pytest.raises(TypeError):
        shmq.register_codec(2005, b"not callable", bytes)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        shmq.register_codec(2005, bytes, None)  # type: ignore[arg-type]


def test_put_with_an_unregistered_codec_is_a_codec_error(queue: shmq.Queue) -> None:
    with pytest.raises(shmq.CodecError):
        queue.put(b"x", codec=4242)  # a user id nobody registered
    with pytest.raises(ValueError):
        queue.put(b"x", codec=500)  # reserved for shmq: as Queue(codec=500)
    with pytest.raises(ValueError):
        shmq.Queue(codec=500)
    assert queue.empty()


def test_encoder_errors_are_codec_errors_with_the_cause_and_put_nothing(queue: shmq.Queue) -> None:
    def boom(o: Any) -> bytes:
        raise ZeroDivisionError("encoder failed")

    shmq.register_codec(2006, boom, bytes)
    with pytest.raises(shmq.CodecError) as ei:
        queue.put(1, codec=2006)
    assert isinstance(ei.value.__cause__, ZeroDivisionError)
    shmq.register_codec(2007, lambda o: "a str, not bytes", bytes)  # type: ignore[arg-type,return-value]
    with pytest.raises(shmq.CodecError, match="returned str"):
        queue.put(1, codec=2007)
    with pytest.raises(shmq.CodecError) as ei:
        queue.put(lambda: None)  # pickle cannot pickle a lambda
    assert ei.value.__cause__ is not None
    assert isinstance(ei.value, TypeError)  # CodecError is a TypeError
    assert queue.empty()


# --------------------------------------------------------------------------------------
# Messages that cannot be decoded
# --------------------------------------------------------------------------------------

UNREGISTERED_PUT = textwrap.dedent(
    """
    import sys, shmq
    shmq.register_codec(3001, lambda s: s.encode(), lambda b: b.decode())
    q = shmq.Queue(sys.argv[1], create=False)
    q.put("only the sender knows codec 3001", codec=3001)
    q.put("pickled after it")
    q.close()
    """
)


@pytest.mark.timeout(60)
def test_message_with_a_codec_unknown_to_the_receiver(queue: shmq.Queue, qname: str) -> None:
    subprocess.run([sys.executable, "-c", UNREGISTERED_PUT, qname], check=True, timeout=60)
    with pytest.raises(shmq.DecodeError) as ei:
        queue.get(timeout=5)
    assert ei.value.raw == b"only the sender knows codec 3001"
    assert isinstance(ei.value.raw, bytes)
    assert ei.value.codec == 3001
    assert queue.get(timeout=5) == "pickled after it"  # nothing lost, the queue goes on
    assert queue.empty()


def test_decode_failure_carries_raw_bytes_and_the_queue_continues(queue: shmq.Queue) -> None:
    queue.put("first")
    queue.put(b"bad payload", codec=1002)
    queue.put(Unpicklable())
    queue.put("last")
    assert queue.get() == "first"
    with pytest.raises(shmq.DecodeError) as ei:
        queue.get()
    assert (ei.value.raw, ei.value.codec) == (b"bad payload", 1002)
    assert isinstance(ei.value.__cause__, ValueError)
    with pytest.raises(shmq.DecodeError) as ei2:
        queue.get()
    assert ei2.value.codec == shmq.CODEC_PICKLE
    assert isinstance(ei2.value.__cause__, RuntimeError)
    assert ei2.value.raw.startswith(b"\x80\x05")
    assert queue.get() == "last"
    assert queue.empty()


def test_decode_error_pickles_with_its_payload(queue: shmq.Queue) -> None:
    queue.put(b"bad again", codec=1002)
    with pytest.raises(shmq.DecodeError) as ei:
        queue.get()
    clone = pickle.loads(pickle.dumps(ei.value))
    assert type(clone) is shmq.DecodeError
    assert (clone.raw, clone.codec, str(clone)) == (ei.value.raw, ei.value.codec, str(ei.value))


def test_get_many_with_an_undecodable_message_loses_nothing(queue: shmq.Queue) -> None:
    queue.put("before")
    queue.put(b"bad one", codec=1002)
    queue.put("after")
    received: list[Any] = []
    raws: list[bytes] = []
    while True:
        try:
            received.extend(queue.get_many(10, block=False))
        except shmq.DecodeError as e:
            raws.append(e.raw)
        except shmq.Empty:
            break
    assert raws == [b"bad one"]
    assert received == ["before", "after"]


# --------------------------------------------------------------------------------------
# allow_pickle=False
# --------------------------------------------------------------------------------------


def test_allow_pickle_false_refuses_pickle_puts(make_queue: MakeQueue) -> None:
    q = make_queue(allow_pickle=False)  # default codec is still pickle
    assert q.allow_pickle is False
    with pytest.raises(shmq.PickleNotAllowedError) as ei:
        q.put({"x": 1})
    assert isinstance(ei.value, shmq.CodecError) and isinstance(ei.value, shmq.DecodeError)
    assert ei.value.raw == b""
    with pytest.raises(shmq.PickleNotAllowedError):
        q.put_nowait(1)
    with pytest.raises(shmq.PickleNotAllowedError):
        q.put(b"x", codec=shmq.CODEC_PICKLE)
    with pytest.raises(shmq.PickleNotAllowedError):
        q.put_many([1, 2])
    assert q.empty()
    # raw and msgpack still work
    q.put(b"raw", codec=shmq.CODEC_RAW)
    q.put({"m": [1]}, codec=shmq.CODEC_MSGPACK)
    assert q.get() == b"raw"
    assert q.get() == {"m": [1]}


def test_allow_pickle_false_refuses_pickled_messages_received(make_queue: MakeQueue, qname: str) -> None:
    sender = make_queue()
    strict = make_queue(qname, create=False, codec="msgpack", allow_pickle=False)
    sender.put(Point(1, [2]))
    sender.put({"ok": 1}, codec=shmq.CODEC_MSGPACK)
    sender.put(b"raw", codec=shmq.CODEC_RAW)
    with pytest.raises(shmq.PickleNotAllowedError) as ei:
        strict.get(timeout=5)
    assert isinstance(ei.value, shmq.DecodeError)
    assert ei.value.codec == shmq.CODEC_PICKLE
    assert pickle.loads(ei.value.raw) == Point(1, [2])  # the bytes are kept, never unpickled
    assert strict.get(timeout=5) == {"ok": 1}  # the queue continues
    assert strict.get(timeout=5) == b"raw"
    strict.put({"fine": True})
    assert sender.get(timeout=5) == {"fine": True}


def test_allow_pickle_false_refuses_pickled_messages_in_get_many(make_queue: MakeQueue, qname: str) -> None:
    sender = make_queue()
    strict = make_queue(qname, create=False, codec="raw", allow_pickle=False)
    sender.put("pickled")
    with pytest.raises(shmq.PickleNotAllowedError):
        strict.get_many(10, timeout=5)
    sender.put(b"next", codec=shmq.CODEC_RAW)
    assert strict.get_many(10, timeout=5) == [b"next"]


def test_allow_pickle_false_with_a_refused_object_is_picklable(make_queue: MakeQueue, qname: str) -> None:
    sender = make_queue()
    strict = make_queue(qname, create=False, allow_pickle=False)
    sender.put("p")
    with pytest.raises(shmq.PickleNotAllowedError) as ei:
        strict.get(timeout=5)
    clone = pickle.loads(pickle.dumps(ei.value))
    assert type(clone) is shmq.PickleNotAllowedError
    assert (clone.raw, clone.codec) == (ei.value.raw, shmq.CODEC_PICKLE)
