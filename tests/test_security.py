"""Another user's segment, and things that are not segments, under a queue's name.

A user who creates a queue's name first (a squatter) must not get the victim's messages, nor
run code in the victim's process through a pickle: by default a segment owned by another
user is refused (``UntrustedSegmentError``) before anything is read from it, and so is one
writable by more users than the opener's ``mode`` says. The tests that act as another user
make a throw-away account (``useradd``) and remove it; they need root.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import _helpers as h
import shmq

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="needs root and useradd to act as a throw-away user",
)


@pytest.fixture
def other_user() -> Iterator[pwd.struct_passwd]:
    """A throw-away unprivileged account, removed at teardown."""
    name = f"shmqt{secrets.token_hex(4)}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)


def as_user(user: pwd.struct_passwd, fn: Callable[[], str]) -> str:
    """Runs ``fn`` in a forked child that became ``user``; returns what it returned (or
    the exception it raised, as ``name|message``)."""
    import pickle  # noqa: F401  (the child cannot import from root's install once it is `user`)

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            msg = fn()
        except BaseException as e:  # noqa: BLE001
            msg = f"{type(e).__name__}|{e}"
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    try:
        return h.read_all(r, 30).decode()
    finally:
        os.close(r)
        h.reap_forked(pid, 30)


class RunsCode:
    """A pickle that runs a shell command when it is loaded."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return (os.system, (self.command,))


@needs_root
def test_a_squatted_name_is_refused_and_runs_nothing(
    qname: str, other_user: pwd.struct_passwd, tmp_path: Path
) -> None:
    proof = tmp_path / "pwned.txt"
    os.chmod(tmp_path, 0o777)  # so that the squatter's command could write the proof

    def squat() -> str:
        q = shmq.Queue(qname, mode=0o666, persistent=True)
        q.put(RunsCode(f"id > {proof}"))
        q.close()
        return "squatted"

    assert as_user(other_user, squat) == "squatted"
    try:
        assert h.segment_path(qname).stat().st_uid == other_user.pw_uid
        # The victim's default open-or-create, then with the mode the squatter chose.
        for kwargs in ({}, {"mode": 0o666}):
            with pytest.raises(shmq.UntrustedSegmentError) as e:
                shmq.Queue(qname, **kwargs)  # type: ignore[call-overload]
            assert str(other_user.pw_uid) in str(e.value) and qname in str(e.value)
            assert isinstance(e.value, PermissionError)
        with pytest.raises(shmq.UntrustedSegmentError):
            shmq.Broadcast(qname)
        assert not proof.exists()
        # Trusting that user (and accepting the mode it shares with) opens it, by uid or name.
        for trusted in ([other_user.pw_uid], [other_user.pw_name], "*"):
            q = shmq.Queue(qname, mode=0o666, trusted_owners=trusted)
            assert q.qsize() == 1
            q.close()
        assert not proof.exists()
    finally:
        h.segment_path(qname).unlink()


@needs_root
def test_another_users_empty_file_is_refused_at_once(qname: str, other_user: pwd.struct_passwd) -> None:
    path = h.segment_path(qname)
    path.touch()
    os.chown(path, other_user.pw_uid, other_user.pw_gid)
    try:
        start = time.monotonic()
        with pytest.raises(shmq.UntrustedSegmentError):
            shmq.Queue(qname)
        assert time.monotonic() - start < 1.5  # not the 2 s wait for a creator to finish
    finally:
        path.unlink()


def test_an_own_segment_writable_by_others_needs_the_same_mode(qname: str) -> None:
    q = shmq.Queue(qname, create=True, mode=0o666)
    try:
        with pytest.raises(shmq.UntrustedSegmentError) as e:
            shmq.Queue(qname)
        assert "0o666" in str(e.value)
        # Group-readable only is not a risk of forged messages: accepted.
        shmq.Queue(qname, mode=0o666).close()
    finally:
        q.close()
    with shmq.Queue(qname + "-r", create=True, mode=0o644):
        shmq.Queue(qname + "-r").close()


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_what_is_not_a_segment_is_a_clear_error(qname: str, kind: str, tmp_path: Path) -> None:
    path = h.segment_path(qname)
    if kind == "symlink":
        path.symlink_to(tmp_path / "elsewhere")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    try:
        start = time.monotonic()
        for open_ in (lambda: shmq.Queue(qname), lambda: shmq.Queue(qname, create=False), lambda: shmq.Subscriber(qname)):
            with pytest.raises(shmq.NotASegmentError) as e:
                open_()
            assert isinstance(e.value, shmq.ShmqError)
            assert {"symlink": "symbolic link", "fifo": "FIFO", "directory": "directory"}[kind] in str(e.value)
        assert time.monotonic() - start < 1.5
        assert not (tmp_path / "elsewhere").exists()
    finally:
        path.rmdir() if kind == "directory" else path.unlink()


def test_an_empty_file_of_our_own_says_never_initialised(qname: str) -> None:
    path = h.segment_path(qname)
    path.touch()
    try:
        with pytest.raises(shmq.CorruptedQueueError, match="never initialised"):
            shmq.Queue(qname, create=False)
    finally:
        path.unlink()


def test_a_handle_pickled_with_its_access_reopens_alike(qname: str) -> None:
    import pickle

    with shmq.Queue(qname, create=True, mode=0o666, trusted_owners="*") as q:
        q.put("x")
        # A child reopening from the pickle asks for the same sharing.
        code = (
            "import pickle, sys, shmq; q = pickle.loads(sys.stdin.buffer.read()); "
            "print(q.get(timeout=5)); q.close()"
        )
        r = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(q), capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"x\n"
