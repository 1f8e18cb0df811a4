"""Functions over every segment in ``/dev/shm`` (what ``shmq ls`` and ``shmq gc`` run)."""

from __future__ import annotations

from ._errors import InvalidArgumentError
from ._shmq import gc as _gc
from ._shmq import list_queues as _list_queues


def list_queues() -> list[str]:
    """Names of the queues in ``/dev/shm`` (namespace included)."""
    return list(_list_queues())


def gc(init_grace: float = 60.0) -> list[str]:
    """Removes every non-persistent queue whose attached processes are all dead (and
    segments whose creator died before initialising them, after ``init_grace`` seconds).
    Queues with a live process, and persistent queues, are left alone. Also removes side
    segments (``shmqside-...``, messages larger than a ring) whose ring no longer exists.
    Returns the names removed (queue names, and side segments' full names). Never needed for
    correctness: the last process to leave a queue removes it, and dead processes are detached
    by whoever opens or closes the queue next."""
    if isinstance(init_grace, bool) or not isinstance(init_grace, (int, float)):
        raise TypeError(f"init_grace must be a number of seconds, not {type(init_grace).__name__}")
    if not init_grace >= 0:  # NaN included
        raise InvalidArgumentError(f"init_grace must be a non-negative number of seconds, got {init_grace!r}")
    return list(_gc(min(init_grace, 1e9)))  # beyond ~30 years is forever (and stays a float)
