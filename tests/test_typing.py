"""Type-checked use of the public API: ``mypy`` (strict, see pyproject.toml) checks this file
in ``make lint``; pytest runs it, so the typed code is also known to work."""

from __future__ import annotations

import queue
import re
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import pytest

import shmq


def open_pair(name: str) -> tuple[shmq.Queue, shmq.Queue]:
    producer: shmq.Queue = shmq.Queue(name, 0, "64KiB", create=True, codec="pickle", mode=0o600)
    consumer: shmq.Queue = shmq.Queue(name, create=False, allow_pickle=True)
    return producer, consumer


def send_all(q: shmq.Queue, items: Iterable[object]) -> int:
    n = 0
    for item in items:
        q.put(item, block=True, timeout=5.0)
        n += 1
    q.put_many([b"raw"], timeout=None, codec=shmq.CODEC_RAW)
    q.put_nowait({"msgpack": 1})
    return n + 2


def drain(q: shmq.Queue) -> list[Any]:
    out: list[Any] = []
    while True:
        try:
            batch: list[Any] = q.get_many(max_messages=16, block=True, timeout=0)
        except queue.Empty:
            return out
        out.extend(batch)


def describe(q: shmq.Queue) -> dict[str, int | bool | str]:
    s: shmq.QueueStats = q.stats()
    capacity: int = q.capacity
    size: int = q.qsize()
    return {
        "name": q.name,
        "capacity": capacity,
        "max_message_size": q.max_message_size,
        "maxsize": q.maxsize,
        "qsize": size,
        "empty": q.empty(),
        "full": q.full(),
        "closed": q.closed,
        "persistent": q.persistent,
        "codec": q.codec_id,
        "depth": s.depth,
        "attached": s.attached,
        "puts": s.puts,
        "gets": s.gets,
    }


def classify(exc: BaseException) -> str:
    if isinstance(exc, shmq.DecodeError):
        raw: bytes = exc.raw
        codec: int = exc.codec
        return f"undecodable {codec} {len(raw)}"
    if isinstance(exc, (shmq.QueueNotFoundError, shmq.QueueExistsError, shmq.InvalidNameError)):
        return "name"
    if isinstance(exc, shmq.ShmqError):
        return "shmq"
    return "other"


def upper_encode(obj: Any) -> bytes:
    return str(obj).upper().encode()


def upper_decode(data: bytes) -> str:
    return data.decode()


def test_typed_usage(qname: str) -> None:
    shmq.register_codec(2501, upper_encode, upper_decode, name="upper")
    size: int = shmq.parse_size("1MiB")
    cid: int = shmq.codec_id("upper")
    full: str = shmq.full_name("x", namespace="ns")
    assert (size, cid, full) == (1 << 20, 2501, "ns.x")
    producer, consumer = open_pair(qname)
    with producer, consumer:
        assert send_all(producer, ["a", ("b", 2)]) == 4
        producer.put("shout", codec="upper")  # by name, as the constructor's
        info = describe(consumer)
        assert info["qsize"] == 5 and info["attached"] == 2 and info["name"] == qname
        assert drain(consumer) == ["a", ("b", 2), b"raw", {"msgpack": 1}, "SHOUT"]
        with pytest.raises(shmq.QueueExistsError) as ei:
            shmq.Queue(qname, create=True)
        assert classify(ei.value) == "name"
    assert producer.closed and consumer.closed
    names: list[str] = shmq.list_queues()
    assert qname not in names
    producer.join_thread()
    version: str = shmq.__version__
    assert version


def open_broadcast(name: str) -> tuple[shmq.Broadcast, shmq.Subscriber]:
    publisher = shmq.Broadcast(
        name,
        capacity="64KiB",
        policy="lag",
        create=True,
        namespace=None,
        codec="msgpack",
        allow_pickle=False,
        mode=0o600,
        persistent=False,
        max_processes=8,
        allow_large=False,
    )
    return publisher, shmq.Subscriber(name, namespace=None, allow_pickle=False)


def test_typed_broadcast(qname: str) -> None:
    publisher, subscriber = open_broadcast(qname)
    with publisher, subscriber:
        policy: Literal["block", "lag"] = subscriber.policy
        assert policy == publisher.policy == "lag"
        publisher.publish({"step": 1})
        publisher.publish_many([b"raw"], codec=shmq.CODEC_RAW)
        assert subscriber.get(timeout=5) == {"step": 1}
        assert subscriber.get_many(timeout=5) == [b"raw"]
        stats: shmq.BroadcastStats = publisher.stats()
        mine: shmq.SubscriberStats = stats.subscribers[0]
        assert mine.lag_messages == 0 and mine == subscriber.info()


def test_typed_readiness(qname: str) -> None:
    import selectors

    publisher, subscriber = open_broadcast(qname)
    with publisher, subscriber, shmq.Readiness() as ready, selectors.DefaultSelector() as sel:
        sel.register(ready, selectors.EVENT_READ)
        assert ready.arm_get(subscriber)
        publisher.publish({"step": 2})
        assert sel.select(10), "the descriptor never became readable"
        woken: list[shmq.Queue[Any] | shmq.Broadcast[Any] | shmq.Subscriber[Any]] = ready.take_ready()
        assert woken == [subscriber]
        assert subscriber.get_nowait() == {"step": 2}
        fd: int = ready.fileno()
        assert fd >= 0


def typed_round_trip(q: shmq.Queue[int], b: shmq.Broadcast[bytes]) -> tuple[int, list[int], bytes]:
    q.put(1)
    q.put_many([2, 3])
    first: int = q.get(timeout=5)
    rest: list[int] = q.get_many(timeout=5)
    with b.subscribe() as sub:
        b.publish(b"frame")
        frame: bytes = sub.get(timeout=5)
    return first, rest, frame


def test_typed_generics(qname: str) -> None:
    with shmq.Queue[int](qname, create=True) as q, shmq.Broadcast[bytes](f"{qname}-b", codec="raw") as b:
        assert typed_round_trip(q, b) == (1, [2, 3], b"frame")


# --------------------------------------------------------------------------------------
# mypy itself (in process; mypy is a test dependency: `make setup` installs it)
# --------------------------------------------------------------------------------------

MypyRun = Callable[..., "tuple[int, str]"]


@pytest.fixture(scope="module")
def mypy_run(tmp_path_factory: pytest.TempPathFactory) -> MypyRun:
    import mypy.api as api

    cache = tmp_path_factory.mktemp("mypy-cache")

    def run(*files: str) -> tuple[int, str]:
        out, err, status = api.run(["--strict", "--cache-dir", str(cache), *files])
        return int(status), str(out) + str(err)

    return run


@pytest.mark.timeout(120)
def test_this_file_passes_mypy_strict(mypy_run: MypyRun) -> None:
    status, out = mypy_run(__file__)
    assert status == 0, out


@pytest.mark.timeout(120)
def test_queue_constructor_arguments_are_type_checked(mypy_run: MypyRun, tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text("import shmq\n\nshmq.Queue('x', capacity=1.5, no_such_argument=True)\n")
    status, out = mypy_run(str(snippet))
    assert status == 1, out
    assert "capacity" in out and "no_such_argument" in out, out


def check_snippet(mypy_run: MypyRun, tmp_path: Path, code: str) -> None:
    """Type-checks ``code``: each line marked ``# E: text`` must have an error containing
    ``text``, and no other line an error."""
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(code))
    _, out = mypy_run(str(snippet))
    errors: dict[int, list[str]] = {}
    for m in re.finditer(rf"^{re.escape(str(snippet))}:(\d+): error: (.*)$", out, flags=re.M):
        errors.setdefault(int(m[1]), []).append(m[2])
    marks = [re.search(r"# E: (.*)$", line) for line in snippet.read_text().splitlines()]
    expected = {n: mark[1] for n, mark in enumerate(marks, 1) if mark}
    for n, text in expected.items():
        assert any(text in e for e in errors.get(n, [])), f"line {n}: no error with {text!r}\n{out}"
    assert set(errors) <= set(expected), f"unexpected errors on lines {sorted(set(errors) - set(expected))}\n{out}"


@pytest.mark.timeout(120)
def test_broadcast_and_subscriber_constructors_are_type_checked(mypy_run: MypyRun, tmp_path: Path) -> None:
    check_snippet(
        mypy_run,
        tmp_path,
        """
        from typing import Literal
        from typing_extensions import assert_type
        import shmq

        b = shmq.Broadcast("x", capacity="64KiB", policy="lag", create=True, namespace="ns", codec="msgpack",
                           allow_pickle=False, mode=0o600, persistent=False, max_processes=8, allow_large=True)
        assert_type(b.policy, Literal["block", "lag"])
        shmq.Broadcast(capacity=4096, codec=1001)
        s = shmq.Subscriber("x", namespace="ns", allow_pickle=False)
        assert_type(s.policy, Literal["block", "lag"])
        assert_type(b.stats().subscribers, list[shmq.SubscriberStats])

        shmq.Broadcast("x", policy="drop")  # E: "policy"
        shmq.Broadcast("x", capacity=1.5)  # E: "capacity"
        shmq.Broadcast("x", codec=b"raw")  # E: "codec"
        shmq.Broadcast("x", 4096, "lag")  # E: Too many positional arguments
        shmq.Broadcast("x", no_such_argument=True)  # E: "no_such_argument"
        shmq.Subscriber()  # E: Missing positional argument "name"
        shmq.Subscriber("x", capacity=4096)  # E: "capacity"
        """,
    )


@pytest.mark.timeout(120)
def test_generics_are_type_checked(mypy_run: MypyRun, tmp_path: Path) -> None:
    check_snippet(
        mypy_run,
        tmp_path,
        """
        from typing import Any
        from typing_extensions import assert_type
        import shmq

        q: shmq.Queue[int] = shmq.Queue("x")
        assert_type(q.get(), int)
        assert_type(q.get_nowait(), int)
        assert_type(q.get_many(), list[int])
        q.put(1)
        q.put_nowait(2)
        q.put_many([3, 4])
        with q as same:
            assert_type(same, shmq.Queue[int])
        assert_type(shmq.Queue[str]("y").get(), str)
        assert_type(shmq.Queue("z"), shmq.Queue[Any])

        def takes_any_queue(q: shmq.Queue) -> None: ...  # a bare Queue is fine under --strict

        b: shmq.Broadcast[bytes] = shmq.Broadcast("b", codec="raw")
        b.publish(b"x")
        b.put(b"y")
        b.publish_many([b"z"])
        s = b.subscribe()
        assert_type(s, shmq.Subscriber[bytes])
        assert_type(s.get(), bytes)
        assert_type(s.get(copy=False), bytes | shmq.MessageView)
        assert_type(s.get_many(), list[bytes])
        assert_type(next(s), bytes)
        with shmq.Subscriber[bytes]("b") as s2:
            assert_type(s2, shmq.Subscriber[bytes])

        q.put("x")  # E: incompatible type "str"; expected "int"
        q.put_nowait("x")  # E: incompatible type "str"; expected "int"
        q.put_many(["x"])  # E: incompatible type "str"; expected "int"
        text: str = q.get()  # E: Incompatible types in assignment
        b.publish(1)  # E: incompatible type "int"; expected "bytes"
        b.put(1)  # E: incompatible type "int"; expected "bytes"
        ints: shmq.Subscriber[int] = b.subscribe()  # E: Incompatible types in assignment
        """,
    )


@pytest.mark.timeout(120)
def test_maxsize_first_is_type_checked(mypy_run: MypyRun, tmp_path: Path) -> None:
    check_snippet(
        mypy_run,
        tmp_path,
        """
        from typing import Any
        from typing_extensions import assert_type
        import shmq

        assert_type(shmq.Queue(100), shmq.Queue[Any])  # multiprocessing.Queue(100): maxsize=100
        shmq.Queue(100, name="jobs", capacity="1MiB", create=True)
        shmq.Queue("jobs", 100)
        shmq.Queue("jobs", 100, "1MiB")
        shmq.Queue(None, 5)
        shmq.Queue(maxsize=100)
        shmq.Queue(name="jobs", maxsize=5)
        assert_type(shmq.Queue[int](100), shmq.Queue[int])

        shmq.Queue(100, 5)  # E: No overload variant
        shmq.Queue(100, "1MiB")  # E: No overload variant
        shmq.Queue(100, maxsize=5)  # E: No overload variant
        shmq.Queue(1.5)  # E: No overload variant
        shmq.Queue(b"jobs")  # E: No overload variant
        """,
    )
