"""A Rust process and a Python process on the same queue: raw messages sent from Rust are
``bytes`` in Python, and the other way round (examples/rust/{producer,consumer}.rs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import shmq

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def examples() -> Path:
    subprocess.run(
        ["cargo", "build", "--quiet", "-p", "shmq", "--examples"],
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "examples"


def test_rust_producer_python_consumer(examples: Path, qname: str) -> None:
    with shmq.Queue(qname, create=True, codec="raw") as q:
        proc = subprocess.Popen([examples / "producer", qname, "1000"])
        try:
            got = [q.get(timeout=30) for _ in range(1001)]
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert got[:-1] == [f"msg-{i}".encode() for i in range(1000)]
    assert all(type(m) is bytes for m in got)
    assert got[-1] == b""


def test_python_producer_rust_consumer(examples: Path, qname: str) -> None:
    with shmq.Queue(qname, create=True, codec="raw") as q:
        proc = subprocess.Popen([examples / "consumer", qname], stdout=subprocess.PIPE, text=True)
        try:
            q.put_many(f"line {i}".encode() for i in range(500))
            q.put(bytearray(b"from a bytearray"))
            q.put(memoryview(b"and a memoryview"))
            q.put(b"")
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0
    lines = out.splitlines()
    assert lines == [f"line {i}" for i in range(500)] + ["from a bytearray", "and a memoryview"]


def test_rust_consumer_refuses_pickled_messages(examples: Path, qname: str) -> None:
    with shmq.Queue(qname, create=True) as q:  # default codec: pickle
        proc = subprocess.Popen(
            [examples / "consumer", qname], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            q.put({"not": "raw"})
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1
    assert "codec 1" in err, err


def test_python_publisher_rust_and_python_subscribers(examples: Path, qname: str) -> None:
    with shmq.Broadcast(qname, create=True, codec="raw") as b, b.subscribe() as mine:
        proc = subprocess.Popen([examples / "subscriber", qname], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            b.publish_many(f"line {i}".encode() for i in range(300))
            b.publish(b"")
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0
        assert out.splitlines() == [f"line {i}" for i in range(300)]
        assert mine.get_many(1000, timeout=5)[:300] == [f"line {i}".encode() for i in range(300)]


def test_rust_publisher_python_subscriber(examples: Path, qname: str) -> None:
    with shmq.Broadcast(qname, create=True, codec="raw") as b, b.subscribe() as sub:
        proc = subprocess.Popen([examples / "subscriber", qname, "500"])
        try:
            got = []
            while not got or got[-1] != b"":
                got.extend(sub.get_many(1000, timeout=30))
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert got == [f"bcast-{i}".encode() for i in range(500)] + [b""]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
