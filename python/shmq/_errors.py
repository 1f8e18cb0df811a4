"""Exceptions raised by shmq. Every one derives from :class:`ShmqError`; those with a
standard meaning also derive from the matching built-in (``FileNotFoundError``, ...), and
``Full``/``Empty`` derive from :mod:`queue`'s, as ``multiprocessing.Queue`` raises them.

The one exception to "every error is a ``ShmqError``": an argument of the wrong type is a
plain ``TypeError`` (naming the argument), as the standard library raises it. A value of the
right type that shmq cannot accept is an :class:`InvalidArgumentError` (a ``ValueError``).
docs/errors.md lists every bad input and what it raises."""

from __future__ import annotations

import errno
import queue
import sys


class ShmqError(Exception):
    """Base class of every shmq error."""


class Full(ShmqError, queue.Full):
    """The queue stayed full (nonblocking put, or the timeout passed)."""


class Empty(ShmqError, queue.Empty):
    """The queue stayed empty (nonblocking get, or the timeout passed)."""


if sys.version_info >= (3, 13):

    class ShutDown(ShmqError, queue.ShutDown):
        """The queue (or broadcast) was shut down (``shutdown()``, by any process): raised by a
        put after it, and by a get once nothing is left (at once after an immediate one). A
        :class:`queue.ShutDown` too, as the standard library's queues raise it."""

else:

    class ShutDown(ShmqError):
        """The queue (or broadcast) was shut down (``shutdown()``, by any process): raised by a
        put after it, and by a get once nothing is left (at once after an immediate one). On
        Python 3.13 and later also a :class:`queue.ShutDown`."""


class WouldDeadlockError(ShmqError, RuntimeError):
    """A reservation (or an in-place get) that could only wait for one the calling thread
    itself holds: a second ``reserve()`` inside an open one, or a fourth reservation or view
    of one handle all held by this thread. Raised at once instead of hanging."""


class QueueNotFoundError(ShmqError, FileNotFoundError):
    """Opening a queue that does not exist (``create=False``)."""


class QueueExistsError(ShmqError, FileExistsError):
    """Creating a queue whose name is taken (``create=True``)."""


class QueuePermissionError(ShmqError, PermissionError):
    """The queue's segment belongs to another user and its mode does not allow us in."""


class UntrustedSegmentError(QueuePermissionError):
    """The segment belongs to another user who is not trusted (``trusted_owners``), or is
    writable by more users than this handle's ``mode`` shares it with: its owner (or those
    users) could read what is sent and forge what is received, pickles that run code
    included. Nothing was read from it."""


class SharedMemoryError(ShmqError, OSError):
    """An operating-system error on a queue's segment or on ``/dev/shm`` (``errno`` and
    ``strerror`` as in any ``OSError``)."""


class SharedMemoryFullError(SharedMemoryError):
    """``/dev/shm`` has no room for the queue (or for a message larger than the ring): the
    message says how much was needed and how much is free. Docker's default ``/dev/shm`` is
    64 MiB (``docker run --shm-size=...``). Nothing is left behind."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[type[SharedMemoryFullError], tuple[str]]:
        return (SharedMemoryFullError, (str(self.strerror),))


class TooManyOpenFilesError(SharedMemoryError):
    """The process (``EMFILE``) or the system (``ENFILE``) ran out of file descriptors while
    opening a queue: every open handle keeps one. Close handles you no longer use, or raise
    the limit (``ulimit -n``, ``resource.setrlimit(resource.RLIMIT_NOFILE, ...)``)."""

    def __init__(self, message: str, code: int = errno.EMFILE) -> None:
        super().__init__(code, message)

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[type[TooManyOpenFilesError], tuple[str, int]]:
        return (TooManyOpenFilesError, (str(self.strerror), self.errno or errno.EMFILE))


class InvalidArgumentError(ShmqError, ValueError):
    """An argument of the right type with a value shmq cannot accept (out of its range, a
    size that cannot be parsed, an unknown codec, a codec registration that conflicts), or a
    call the object's state does not allow (``join_thread()`` before ``close()``). The
    message names the argument and what it accepts."""


class MismatchError(InvalidArgumentError):
    """A setting given explicitly (``maxsize``, ``capacity``, ``policy``) differs from the
    existing queue's or broadcast's: opening never changes them, so the call would silently
    get another queue than asked for. Leave the argument out to open whatever exists.
    ``setting`` names it; ``requested`` and ``existing`` are the two values. Nothing stays
    attached."""

    def __init__(self, message: str, setting: str = "", requested: object = None, existing: object = None) -> None:
        super().__init__(message)
        self.setting = setting
        self.requested = requested
        self.existing = existing

    def __reduce__(self) -> tuple[type[MismatchError], tuple[str, str, object, object]]:
        return (type(self), (str(self), self.setting, self.requested, self.existing))


class InvalidNameError(InvalidArgumentError):
    """A queue name or namespace with characters other than ``[A-Za-z0-9._-]``, empty, or
    longer than 200 characters."""


class MessageTooLargeError(ShmqError, ValueError):
    """A message larger than the queue can ever hold (see ``Queue.max_message_size``)."""


class CorruptedQueueError(ShmqError):
    """The segment is not a shmq queue of this version, or its shared state is damaged
    (bad magic, layout version or sizes; a record that breaks the protocol)."""


class NotASegmentError(CorruptedQueueError):
    """Something other than a shared-memory segment has the queue's name in ``/dev/shm`` (a
    symbolic link, a FIFO, a directory)."""


class TooManyProcessesError(ShmqError):
    """Every process slot of the queue is held by a live process (see ``max_processes``)."""


class WrongKindError(ShmqError, TypeError):
    """The name belongs to the other kind of segment (a broadcast opened as a queue, or the
    other way round)."""


class Lagged(ShmqError):
    """A subscriber of a ``policy="lag"`` broadcast fell behind: publishers overwrote
    ``missed`` messages before it read them. The next ``get`` returns the oldest message still
    available; the subscription stays usable."""

    def __init__(self, missed: int) -> None:
        super().__init__(f"subscriber lagged behind the publishers: {missed} messages missed")
        self.missed = missed

    def __reduce__(self) -> tuple[type[Lagged], tuple[int]]:
        return (Lagged, (self.missed,))


class QueueClosedError(ShmqError, ValueError):
    """The queue object was closed (``close()``) and cannot be used any more."""


class ViewReleasedError(ShmqError, ValueError):
    """A :class:`shmq.MessageView` used after it was released by a later read (or
    ``close()``) of its subscription: the ring may already hold other bytes there."""


class CodecError(ShmqError, TypeError):
    """An object could not be encoded, or a codec is unknown or unavailable."""


class DecodeError(ShmqError):
    """A received message could not be decoded. It has been taken off the queue; its bytes
    are in :attr:`raw` and its codec id in :attr:`codec`, so nothing is lost."""

    def __init__(self, message: str, raw: bytes, codec: int) -> None:
        super().__init__(message)
        self.raw = raw
        self.codec = codec

    def __reduce__(self) -> tuple[type[DecodeError], tuple[str, bytes, int]]:
        return (type(self), (str(self), self.raw, self.codec))


class PickleNotAllowedError(DecodeError, CodecError):
    """Pickle is disabled for this queue (``allow_pickle=False``): raised by ``put`` of a
    pickled message (with ``raw`` empty) and by ``get`` of one (with its bytes in ``raw``)."""

    def __init__(self, message: str, raw: bytes = b"", codec: int = 1) -> None:
        super().__init__(message, raw, codec)


__all__ = [
    "CodecError",
    "CorruptedQueueError",
    "DecodeError",
    "Empty",
    "Full",
    "InvalidArgumentError",
    "InvalidNameError",
    "Lagged",
    "MessageTooLargeError",
    "MismatchError",
    "NotASegmentError",
    "PickleNotAllowedError",
    "QueueClosedError",
    "QueueExistsError",
    "QueueNotFoundError",
    "QueuePermissionError",
    "SharedMemoryError",
    "SharedMemoryFullError",
    "ShmqError",
    "ShutDown",
    "TooManyOpenFilesError",
    "TooManyProcessesError",
    "UntrustedSegmentError",
    "ViewReleasedError",
    "WouldDeadlockError",
    "WrongKindError",
]
