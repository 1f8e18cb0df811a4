"""How ``shmq.asyncio`` waits: one ``_Readiness`` (an eventfd the process's helper thread
signals) per event loop, watched with ``loop.add_reader``, and one future per waiting call.

A call arms the ring's event (``_arm``: it counts as a sleeper, so notifiers wake it as they
wake a thread), registers the armed wait under a token and awaits the token's future. The
helper thread, which waits on the futex words of every registered wait at once, puts the
token in the loop's ready list once the word changed; the reader callback resolves the
future. Nothing here takes a message: the caller retries its ``*_nowait`` attempt after the
wait, so a cancellation can only land between attempts.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import weakref
from typing import Protocol

from ._shmq import _Armed, _Readiness

DATA = 0
"""Waiting for a message."""
SPACE = 1
"""Waiting for room to send."""


class Armable(Protocol):
    def _arm(self, side: int) -> _Armed | None: ...
    def _spin(self, side: int) -> bool: ...


_tokens = itertools.count(1)


class LoopWaits:
    """The waits of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: the registry's key must be able to die (the loop holds us through its reader).
        self._loop = weakref.ref(loop)
        self.thread = threading.get_ident()
        self.readiness = _Readiness()
        self.futures: dict[int, asyncio.Future[None]] = {}
        loop.add_reader(self.readiness.fileno(), self._on_ready)

    def _on_ready(self) -> None:
        for token in self.readiness.take_ready():
            fut = self.futures.pop(token, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def wait(self, armed: _Armed, deadline: float | None, owner: Waiting) -> None:
        """Until the armed event is notified, its poll interval passed, ``deadline``
        (``loop.time()``) or ``owner`` is closed. Never takes anything."""
        loop = asyncio.get_running_loop()
        token = next(_tokens)
        fut = loop.create_future()
        self.futures[token] = fut
        if not self.readiness.register(token, armed):
            del self.futures[token]  # disarmed by a close meanwhile
            return
        timer = None if deadline is None else loop.call_at(deadline, _expire, fut)
        owner.waits[token] = (self, armed)
        try:
            await fut
        finally:
            owner.waits.pop(token, None)
            if timer is not None:
                timer.cancel()
            if self.futures.pop(token, None) is not None:
                self.readiness.cancel(token)

    def wake(self, token: int) -> None:
        """Ends the wait of ``token`` now (from any thread)."""
        if threading.get_ident() == self.thread:
            self._wake(token)
        else:
            loop = self._loop()
            if loop is None:
                return
            try:
                loop.call_soon_threadsafe(self._wake, token)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _wake(self, token: int) -> None:
        fut = self.futures.pop(token, None)
        if fut is not None:
            self.readiness.cancel(token)
            if not fut.done():
                fut.set_result(None)


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Waiting:
    """The waits in progress on one handle, so that ``close()`` ends them."""

    def __init__(self) -> None:
        self.waits: dict[int, tuple[LoopWaits, _Armed]] = {}

    def end_all(self) -> None:
        for token, (waits, armed) in list(self.waits.items()):
            armed.disarm()  # lets go of the ring before the handle detaches
            waits.wake(token)


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWaits] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def waits_of(loop: asyncio.AbstractEventLoop) -> LoopWaits:
    """The waits of ``loop`` (made on its first wait)."""
    w = _by_loop.get(loop)
    if w is None:
        with _lock:
            w = _by_loop.get(loop)
            if w is None:
                w = _by_loop[loop] = LoopWaits(loop)
    return w
