"""``shmq.Readiness``: a file descriptor that turns readable when a queue may be ready, for
event loops other than asyncio (``selectors``; any loop that can wait for a readable fd).

It is the eventfd ``shmq.asyncio`` puts under each loop (docs/protocol.md, *Asynchronous
waiters*): arming a handle announces a waiter, as a blocking call does before it sleeps,
and the process's helper thread makes the descriptor readable once the handle's event was
notified (or its poll interval, at most 100 ms, passed: a readable descriptor means "try
again", not "a message is there").
"""

from __future__ import annotations

import itertools
from typing import Any, Union

from ._broadcast import Broadcast, Subscriber
from ._queue import Queue
from ._shmq import _Armed, _Readiness

__all__ = ["Readiness"]

_DATA, _SPACE = 0, 1  # as shmq._waits (not imported: ``import shmq`` loads no asyncio)

Handle = Union[Queue[Any], Broadcast[Any], Subscriber[Any]]
"""What a :class:`Readiness` waits on."""


class Readiness:
    """Waits on any number of queues, broadcasts or subscriptions through one descriptor.

    The loop: try the ``*_nowait`` call; on ``Empty`` (``Full``) :meth:`arm_get`
    (:meth:`arm_put`) the handle and, if that returned ``True``, try once more, then wait
    until :meth:`fileno` is readable; :meth:`take_ready` returns the handles whose wait
    ended (disarmed): try them again, and arm again what is still not ready. Arming what is
    armed already keeps its one wait. One thread per ``Readiness``; it never takes or sends.
    """

    def __init__(self) -> None:
        self._r = _Readiness()
        self._tokens = itertools.count(1)
        self._waits: dict[int, tuple[Handle, int, _Armed]] = {}
        self._token_of: dict[tuple[int, int], int] = {}  # (id(handle), side) -> token

    def fileno(self) -> int:
        """The descriptor to wait on for reading (never read it yourself)."""
        return self._r.fileno()

    def arm_get(self, handle: Queue[Any] | Subscriber[Any]) -> bool:
        """Announces a wait for a message on ``handle``: ``False`` if one may be there now
        (nothing armed: try the get again), ``True`` if the descriptor will tell."""
        return self._arm(handle, _DATA)

    def arm_put(self, handle: Queue[Any] | Broadcast[Any]) -> bool:
        """Announces a wait for room on ``handle`` (a queue or a broadcast). The ring cannot
        tell the room a message needs: after ``True`` try the put once more before waiting
        (a put that fails after arming is certain to be woken)."""
        return self._arm(handle, _SPACE)

    def _arm(self, handle: Handle, side: int) -> bool:
        key = (id(handle), side)
        if key in self._token_of:
            return True
        armed = handle._arm(side)
        if armed is None:
            return False
        token = next(self._tokens)
        if not self._r.register(token, armed):
            return False  # disarmed meanwhile (the handle was closed): try again
        self._waits[token] = (handle, side, armed)
        self._token_of[key] = token
        return True

    def take_ready(self) -> list[Handle]:
        """The handles whose wait ended since the last call, disarmed (each once); an empty
        list when the descriptor was woken for nothing."""
        ready: list[Handle] = []
        for token in self._r.take_ready():
            wait = self._waits.pop(token, None)
            if wait is None:
                continue
            handle, side, armed = wait
            del self._token_of[(id(handle), side)]
            armed.disarm()
            if all(h is not handle for h in ready):
                ready.append(handle)
        return ready

    def cancel(self, handle: Handle) -> None:
        """Withdraws the waits on ``handle`` (do so before closing it)."""
        for side in (_DATA, _SPACE):
            token = self._token_of.pop((id(handle), side), None)
            if token is not None:
                self._r.cancel(token)
                self._waits.pop(token)[2].disarm()

    def close(self) -> None:
        """Withdraws every wait (the descriptor closes when the object is collected)."""
        for handle, _, _ in list(self._waits.values()):
            self.cancel(handle)

    def __enter__(self) -> Readiness:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<shmq.Readiness fd={self.fileno()}, {len(self._waits)} armed>"
