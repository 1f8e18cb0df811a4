"""Fixtures shared by the Python test suite.

Every queue a test makes is named ``t<run>-<random>`` (fixture ``qname``; the run is the
id tests/leak_check.py passes in ``SHMQ_TEST_RUN``, else the pytest pid), so the
suite can tell its own segments in ``/dev/shm`` from anybody else's and check that it leaves
none behind: after each test (the test errors at teardown, naming the segment) and once more
at the end of the session.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import pytest

import shmq
from _helpers import SHM, kept_by_design

# tests/leak_check.py gives the run an id and judges only segments named with it (or
# anonymous ones of the pids listed in its file), so other runs' segments are left alone.
RUN_PREFIX = f"t{os.environ.get('SHMQ_TEST_RUN') or os.getpid()}-"
_RUN_PIDS = os.environ.get("SHMQ_TEST_RUN_PIDS")


def _note_pid() -> None:
    """Lists this process for leak_check (its anonymous queues are named with its pid)."""
    if _RUN_PIDS:
        with open(_RUN_PIDS, "a") as f:
            f.write(f"{os.getpid()}\n")


_note_pid()
os.register_at_fork(after_in_child=_note_pid)
_OWN_PREFIXES = (
    f"{shmq.SEGMENT_PREFIX}{RUN_PREFIX}",
    f"{shmq.SEGMENT_PREFIX}anon-{os.getpid()}-",
    # Side segments (messages larger than a ring) of those queues.
    f"shmqside-{RUN_PREFIX}",
    f"shmqside-anon-{os.getpid()}-",
)


def own_segments() -> set[str]:
    """Entries of /dev/shm created by this run (by name)."""
    return {p.name for p in SHM.iterdir() if p.name.startswith(_OWN_PREFIXES)}


def _remove(entries: set[str]) -> None:
    for e in entries:
        try:
            (SHM / e).unlink()
        except FileNotFoundError:
            pass


@pytest.fixture(scope="session", autouse=True)
def _session_leak_check() -> Iterator[None]:
    before = own_segments()
    yield
    gc.collect()
    leaked = own_segments() - before
    if leaked:
        _remove(leaked)
        pytest.fail(
            f"the test session left {len(leaked)} segment(s) in /dev/shm (now removed): "
            + ", ".join(sorted(leaked)),
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _test_leak_check() -> Iterator[None]:
    before = own_segments()
    yield
    leaked = own_segments() - before
    if leaked:
        gc.collect()  # a handle kept alive only by a reference cycle or a traceback
        leaked = own_segments() - before
    kept = {e for e in leaked if kept_by_design(e)}
    _remove(kept)
    leaked -= kept
    if leaked:
        _remove(leaked)
        pytest.fail(
            "test left segment(s) in /dev/shm (now removed): " + ", ".join(sorted(leaked)),
            pytrace=False,
        )


@pytest.fixture
def qname() -> str:
    """A queue name unique to this test (and recognisable as this run's)."""
    return f"{RUN_PREFIX}{uuid4().hex[:10]}"


@pytest.fixture
def make_queue(qname: str) -> Iterator[Callable[..., shmq.Queue]]:
    """``make_queue(**kwargs)`` creates (or with ``name=``/``create=`` opens) a queue; every
    queue made is closed at teardown. The first queue gets the test's ``qname``."""
    made: list[shmq.Queue] = []

    def make(name: str | None = None, **kwargs: Any) -> shmq.Queue:
        if name is None:
            name = qname if not made else f"{qname}-{len(made)}"
            kwargs.setdefault("create", True)
        q = shmq.Queue(name, **kwargs)
        made.append(q)
        return q

    yield make
    for q in made:
        q.close()


@pytest.fixture
def queue(make_queue: Callable[..., shmq.Queue]) -> shmq.Queue:
    """A fresh queue (64 KiB ring, pickle codec), closed at teardown."""
    return make_queue(capacity="64KiB")
