"""Segments are created 0600 (``mode`` widens it, exactly: the umask does not apply), and a
user without permission gets a clear ``QueuePermissionError`` (a ``PermissionError``)."""

from __future__ import annotations

import os
import stat

import pytest

import _helpers as h
import shmq

NOBODY = h.NOBODY


def test_default_mode_is_0600_and_mode_is_exact(qname: str) -> None:
    old = os.umask(0o077)  # a umask that would strip group bits
    try:
        with shmq.Queue(qname, create=True) as q:
            assert stat.S_IMODE(os.stat(h.segment_path(qname)).st_mode) == 0o600
            q.put(1)
        with shmq.Queue(qname + "-g", create=True, mode=0o660):
            assert stat.S_IMODE(os.stat(h.segment_path(qname + "-g")).st_mode) == 0o660
    finally:
        os.umask(old)


def _open_as_nobody(name: str, **kwargs: object) -> str:
    """In a forked child that dropped root: what opening ``name`` raises."""
    return h.open_as(NOBODY, name, **kwargs)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_another_user_gets_a_permission_error(qname: str) -> None:
    with shmq.Queue(qname, create=True):
        outcome = _open_as_nobody(qname)
    name, is_permission_error, message = outcome.split("|", 2)
    assert name == "QueuePermissionError"
    assert is_permission_error == "True"
    assert qname in message


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_group_mode_lets_the_group_in(qname: str) -> None:
    with shmq.Queue(qname, create=True, mode=0o666) as q:
        q.put("for nobody")
        # Sharing is explicit on both sides: the mode the creator shares with, and its owner.
        assert _open_as_nobody(qname, mode=0o666, trusted_owners=[0]) == "opened"
        assert _open_as_nobody(qname).startswith("UntrustedSegmentError|True|")
