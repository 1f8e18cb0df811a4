"""The exceptions of :mod:`shmq.compat.shmqueue`, with the names and base classes of
``shmqueue.exceptions`` 0.0.2.

Each class keeps the original's base (``ShmQueueEmpty`` is a :class:`queue.Empty`,
``ShmQueueValueError`` a :class:`ValueError`, ...). Where shmq has the same meaning the class
also derives from shmq's error, so ``except shmq.Empty`` catches ``ShmQueueEmpty`` too, and
``ShmQueueDeserializationError`` is a :class:`shmq.DecodeError`: it carries the message's
bytes (``.raw``) and serialization method (``.codec``), so a message that cannot be decoded is
never lost.
"""

from __future__ import annotations

import queue

from ..._errors import DecodeError, Empty, Full


class ShmQueueEmpty(Empty, queue.Empty):
    """The queue stayed empty (``get(block=False)``, or the timeout passed)."""


class ShmQueueFull(Full, queue.Full):
    """The queue stayed full (``put(block=False)``, or the timeout passed)."""


class ShmQueueException(Exception):
    """General error."""


class ShmQueueValueError(ValueError):
    """A bad argument value (or an item larger than the queue can ever hold)."""


class ShmQueueTypeError(TypeError):
    """An argument of the wrong type."""


class ShmQueueBufferOverflow(OverflowError):
    """Kept for compatibility; shmq never raises it."""


class ShmQueueRuntimeError(RuntimeError):
    """Inconsistent shared state."""


class ShmQueueNotInitializedError(RuntimeError):
    """The queue was shut down (``shutdown()``) and cannot be used any more."""


class ShmQueueSerializationError(Exception):
    """An object could not be serialized with the requested method (for instance pickle
    with ``allow_pickle=False``)."""


class ShmQueueDeserializationError(DecodeError):
    """A message could not be deserialized. It has been taken off the queue: its bytes are in
    :attr:`raw` and its serialization method in :attr:`codec`."""

    def __init__(self, message: str = "", raw: bytes = b"", codec: int = -1) -> None:
        super().__init__(message, raw, codec)


__all__ = [
    "ShmQueueBufferOverflow",
    "ShmQueueDeserializationError",
    "ShmQueueEmpty",
    "ShmQueueException",
    "ShmQueueFull",
    "ShmQueueNotInitializedError",
    "ShmQueueRuntimeError",
    "ShmQueueSerializationError",
    "ShmQueueTypeError",
    "ShmQueueValueError",
]
