"""Type-checked use of the public API: ``mypy`` (strict, see pyproject.toml) checks this file
in ``make lint``; pytest runs it, so the typed code is also known to work."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

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
        producer.put("shout", codec=cid)
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
