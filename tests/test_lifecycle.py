"""The lifecycle table of the README, row by row: when a queue is removed, and what happens
to the messages left in it. Nothing is lost, and nothing is deleted by looking."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
from typing import Any

import pytest

import _helpers as h
import shmq


def consume_ten(q: Any, out: Any) -> None:
    out.put(sorted(q.get(timeout=30) for _ in range(10)))


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_the_multiprocessing_idiom_delivers_everything(qname: str, method: str) -> None:
    # p.start(); q.put(...) x10; q.close(); q.join_thread(); p.join(): the parent may close its
    # handle before the child attached (multiprocessing.Queue delivers all 10 in all three).
    ctx = mp.get_context(method)
    out = ctx.Queue()
    q = shmq.Queue(qname)
    p = ctx.Process(target=consume_ten, args=(q, out))
    p.start()
    for i in range(10):
        q.put(i)
    q.close()
    q.join_thread()
    try:
        assert out.get(timeout=60) == list(range(10))
    finally:
        p.join(60)
        if p.is_alive():
            p.kill()
    assert p.exitcode == 0
    assert not h.segment_path(qname).exists()  # the child's close was the last, and it was empty


def test_a_producer_that_exits_before_any_consumer_loses_nothing(qname: str) -> None:
    code = "import sys, shmq; q = shmq.Queue(sys.argv[1]); q.put_many(['a', 'b', 'c'])"
    r = subprocess.run([sys.executable, "-c", code, qname], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # Its last (only) process left it with messages: kept, nobody attached.
    i = shmq.inspect(qname)
    assert i["live"] == 0 and i["stats"]["depth"] == 3 and i["kept_for"] is not None
    with shmq.Queue(qname, create=False) as q:
        assert [q.get(timeout=5) for _ in range(3)] == ["a", "b", "c"]
    assert not h.segment_path(qname).exists()  # emptied, then its last process left


def test_keep_messages_false_removes_the_queue_with_its_messages(qname: str) -> None:
    q = shmq.Queue(qname, keep_messages=False)
    q.put("dropped")
    q.close()
    assert not h.segment_path(qname).exists()


def test_an_anonymous_queue_goes_with_its_last_process_messages_and_all() -> None:
    q = shmq.Queue()
    q.put("unreachable")
    path = h.segment_path(q.name)
    assert path.exists()
    q.close()
    assert not path.exists()


def test_looking_never_removes_a_queue(qname: str) -> None:
    # A queue whose processes all died with 3 messages in it: ls and stats used to attach,
    # become its last process, and remove it with its messages.
    code = (
        "import os, sys, shmq; q = shmq.Queue(sys.argv[1]); q.put_many([1, 2, 3]); "
        "os.kill(os.getpid(), 9)"
    )
    r = subprocess.run([sys.executable, "-c", code, qname], capture_output=True, text=True, timeout=60)
    assert r.returncode == -9
    for _ in range(3):
        ls = subprocess.run([sys.executable, "-m", "shmq", "ls"], capture_output=True, text=True, timeout=60)
        assert ls.returncode == 0 and qname in ls.stdout, ls
        st = subprocess.run(
            [sys.executable, "-m", "shmq", "stats", qname], capture_output=True, text=True, timeout=60
        )
        assert st.returncode == 0, st.stderr
        assert "depth        3" in st.stdout and "live         0" in st.stdout, st.stdout
    with shmq.Queue(qname, create=False) as q:
        assert q.get_many(10, timeout=5) == [1, 2, 3]


def test_gc_removes_never_initialised_leftovers_of_any_size(qname: str) -> None:
    path = h.segment_path(qname)
    path.write_bytes(b"\0" * 65536)  # a creator that died after sizing, before initialising
    old = time.time() - 3600
    os.utime(path, (old, old))
    assert qname in shmq.gc(init_grace=60)
    assert not path.exists()


def test_a_stray_symlink_does_not_break_ls(qname: str, tmp_path: Any) -> None:
    h.segment_path(qname).symlink_to(tmp_path / "nowhere")
    try:
        ls = subprocess.run([sys.executable, "-m", "shmq", "ls"], capture_output=True, text=True, timeout=60)
        assert ls.returncode == 0 and "Traceback" not in ls.stderr, ls
        assert qname in ls.stdout and "NotASegmentError" in ls.stdout
    finally:
        h.segment_path(qname).unlink()


def use_after_parent_closed(q: Any, parent_closed: Any, out: Any) -> None:
    parent_closed.wait(30)
    q.put("from the child")
    out.put(q.get(timeout=10))


def leave_untouched(q: Any) -> None:
    return None


@pytest.mark.parametrize("anonymous", [False, True])
def test_a_fork_child_that_has_not_attached_yet_keeps_an_empty_queue(
    qname: str, anonymous: bool
) -> None:
    # A handle inherited across fork() is in flight until the child attaches (on first use):
    # the parent closing the empty queue first must not remove it under the child.
    ctx = mp.get_context("fork")
    parent_closed, out = ctx.Event(), ctx.Queue()
    q: shmq.Queue[str] = shmq.Queue() if anonymous else shmq.Queue(qname)
    path = h.segment_path(q.name)
    p = ctx.Process(target=use_after_parent_closed, args=(q, parent_closed, out))
    p.start()
    q.close()  # empty, and the parent's was the only attachment
    parent_closed.set()
    try:
        assert out.get(timeout=60) == "from the child"
    finally:
        p.join(60)
        if p.is_alive():
            p.kill()
    assert p.exitcode == 0
    assert not path.exists()  # the child was its last process, and left it empty


def test_a_fork_child_that_never_attaches_still_lets_the_queue_go(qname: str) -> None:
    # The other side of the rule above: a child that exits without using the queue hands the
    # removal back (no 60 s grace for a queue nobody will use).
    ctx = mp.get_context("fork")
    q: shmq.Queue[str] = shmq.Queue(qname)
    path = h.segment_path(q.name)
    p = ctx.Process(target=leave_untouched, args=(q,))
    p.start()
    q.close()
    p.join(60)
    assert p.exitcode == 0
    assert not path.exists()
