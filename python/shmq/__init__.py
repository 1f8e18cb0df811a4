"""shmq: named shared-memory message queues for processes on one machine.

A :class:`Queue` is a lock-free ring in a POSIX shared-memory segment that any process opens
by name. It has the surface of :class:`multiprocessing.Queue` (``put``/``get``/``qsize``/...)
plus batches (``put_many``/``get_many``), ``stats()``, codecs and picklable handles. A
:class:`Broadcast` delivers every message to each :class:`Subscriber`.

>>> import shmq
>>> with shmq.Queue() as q:
...     q.put({"task": 1})
...     q.get()
{'task': 1}

``shmq.asyncio`` (``import shmq.asyncio as shmq_aio``) has the same classes for asyncio
programs, over the same segments (imported on demand: ``import shmq`` does not load asyncio).

This module is the package's face: the bodies live in ``_common`` (sizes, codecs, names,
shared argument checks, the handle registry), ``_queue``, ``_broadcast``, ``_admin``,
``_errors`` and the native ``_shmq``.
"""

from importlib import metadata as _metadata

from ._admin import Inspection, gc, inspect, list_queues, remove
from ._broadcast import Broadcast, BroadcastStats, Subscriber, SubscriberStats
from ._common import DEFAULT_CAPACITY, BytesLike, Capacity, Codec, codec_id, full_name, parse_size, register_codec
from ._errors import (
    CodecError,
    CorruptedQueueError,
    DecodeError,
    Empty,
    Full,
    InvalidArgumentError,
    InvalidNameError,
    Lagged,
    MessageTooLargeError,
    MismatchError,
    NotASegmentError,
    PickleNotAllowedError,
    QueueClosedError,
    QueueExistsError,
    QueueNotFoundError,
    QueuePermissionError,
    SharedMemoryError,
    SharedMemoryFullError,
    ShmqError,
    ShutDown,
    TooManyOpenFilesError,
    TooManyProcessesError,
    UntrustedSegmentError,
    ViewReleasedError,
    WouldDeadlockError,
    WrongKindError,
)
from ._queue import Queue, QueueStats
from ._readiness import Readiness
from ._shmq import (
    CODEC_MSGPACK,
    CODEC_PICKLE,
    CODEC_PICKLE_OOB,
    CODEC_RAW,
    FIRST_USER_CODEC,
    SEGMENT_PREFIX,
    MessageView,
    Reservation,
)

try:
    __version__ = _metadata.version("shmq")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    # queues and broadcasts
    "Queue",
    "QueueStats",
    "Broadcast",
    "BroadcastStats",
    "Subscriber",
    "SubscriberStats",
    "MessageView",
    "Reservation",
    "Readiness",
    # helpers and administration
    "codec_id",
    "full_name",
    "gc",
    "inspect",
    "remove",
    "Inspection",
    "list_queues",
    "parse_size",
    "register_codec",
    # types of arguments
    "BytesLike",
    "Capacity",
    "Codec",
    # constants
    "CODEC_MSGPACK",
    "CODEC_PICKLE",
    "CODEC_PICKLE_OOB",
    "CODEC_RAW",
    "DEFAULT_CAPACITY",
    "FIRST_USER_CODEC",
    "SEGMENT_PREFIX",
    # errors
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
    "__version__",
]
