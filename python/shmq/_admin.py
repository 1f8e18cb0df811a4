"""Functions over every segment in ``/dev/shm`` (what ``shmq ls``, ``stats``, ``rm`` and
``gc`` run). Looking (``list_queues``, ``inspect``) never attaches: it cannot become a
queue's last process and remove it."""

from __future__ import annotations

from typing import Any, TypedDict

from ._errors import InvalidArgumentError
from ._shmq import gc as _gc
from ._shmq import inspect as _inspect
from ._shmq import list_queues as _list_queues
from ._shmq import remove as _remove


def list_queues() -> list[str]:
    """Names of the queues and broadcasts in ``/dev/shm`` (namespace included)."""
    return list(_list_queues())


class Inspection(TypedDict):
    """What :func:`inspect` read."""

    kind: str
    """``"queue"`` or ``"broadcast"``."""
    segment_bytes: int
    live: int
    """Processes attached and alive."""
    persistent: bool
    owner: int
    """The owner's uid."""
    mode: int
    kept_for: float | None
    """Seconds since its last process left it with messages in it (None: in use)."""
    stats: dict[str, int]
    """As ``stats()`` of a handle (``attached`` counts handles, dead ones included)."""
    subscribers: list[dict[str, Any]]


def inspect(name: str) -> Inspection:
    """A ring's counters and lifecycle, read through a read-only mapping (never attaches)."""
    d = _inspect(name)
    return Inspection(
        kind=d["kind"],
        segment_bytes=d["segment_bytes"],
        live=d["live"],
        persistent=d["persistent"],
        owner=d["owner"],
        mode=d["mode"],
        kept_for=d["kept_for"],
        stats=d["stats"],
        subscribers=d["subscribers"],
    )


def remove(name: str) -> bool:
    """Removes ring ``name`` by name, as ``Queue.unlink()``: processes still attached keep
    using it and the last of them frees it (with its side segments); with none, it goes now.
    Returns whether there was one."""
    return bool(_remove(name))


def gc(init_grace: float = 60.0, drop_kept_after: float | None = None) -> list[str]:
    """Removes what no live process uses any more: non-persistent queues whose attached
    processes are all dead (unless the lifecycle keeps them: messages left in a queue, a
    handle in flight), removed queues whose processes all died, segments whose creator died
    before initialising them (after ``init_grace`` seconds, whatever their size), and side
    segments (``shmqside-...``) of rings that no longer exist. Queues kept for their messages
    stay until read, unless ``drop_kept_after`` seconds have passed since their last process
    left (then they go, messages and all). Returns the names removed."""
    for what, value in (("init_grace", init_grace), ("drop_kept_after", drop_kept_after)):
        if value is None and what == "drop_kept_after":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
        if not value >= 0:  # NaN included
            raise InvalidArgumentError(f"{what} must be a non-negative number of seconds, got {value!r}")
    # Beyond ~30 years is forever (and stays a float).
    return list(_gc(min(init_grace, 1e9), None if drop_kept_after is None else min(drop_kept_after, 1e9)))
