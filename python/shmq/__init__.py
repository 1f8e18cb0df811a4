"""shmq: named shared-memory message queues for processes on one machine.

A :class:`Queue` is a lock-free ring in a POSIX shared-memory segment that any process opens
by name. It has the surface of :class:`multiprocessing.Queue` (``put``/``get``/``qsize``/...)
plus batches (``put_many``/``get_many``), ``stats()``, codecs and picklable handles.

>>> import shmq
>>> with shmq.Queue() as q:
...     q.put({"task": 1})
...     q.get()
{'task': 1}
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import sys
import weakref
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable, NamedTuple, Union

from . import _errors
from ._errors import (
    CodecError,
    CorruptedQueueError,
    DecodeError,
    Empty,
    Full,
    InvalidNameError,
    Lagged,
    MessageTooLargeError,
    PickleNotAllowedError,
    QueueClosedError,
    QueueExistsError,
    QueueNotFoundError,
    QueuePermissionError,
    ShmqError,
    TooManyProcessesError,
    WrongKindError,
)
from ._shmq import (
    CODEC_MSGPACK,
    MessageView,
    CODEC_PICKLE,
    CODEC_RAW,
    FIRST_USER_CODEC,
    SEGMENT_PREFIX,
    _Queue,
)
from ._shmq import gc as _gc
from ._shmq import list_queues as _list_queues
from ._shmq import register_codec as _register_codec
from ._shmq import validate_name as _validate_name

try:
    __version__ = version("shmq")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

#: Default ring size: 4 MiB (the largest message is 16 bytes less).
DEFAULT_CAPACITY = 4 * 1024 * 1024

_CODECS: dict[str, int] = {"raw": CODEC_RAW, "pickle": CODEC_PICKLE, "msgpack": CODEC_MSGPACK}
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}

Capacity = Union[int, str]
Codec = Union[str, int]


def parse_size(size: Capacity) -> int:
    """Turns ``4096``, ``"64MiB"``, ``"1.5 GB"`` or ``"512k"`` into a number of bytes."""
    if isinstance(size, bool):
        raise TypeError("capacity must be an int or a string such as '64MiB', not bool")
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"capacity must be positive, got {size}")
        return size
    if not isinstance(size, str):
        raise TypeError(f"capacity must be an int or a string such as '64MiB', not {type(size).__name__}")
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", size)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"cannot parse capacity {size!r}; use e.g. 65536, '64KiB', '64MiB', '1GiB'")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise ValueError(f"capacity must be positive, got {size!r}")
    return value


def codec_id(codec: Codec) -> int:
    """The numeric id of a codec given by name (``"pickle"``, ``"msgpack"``, ``"raw"``) or id."""
    if isinstance(codec, bool):
        raise TypeError("codec must be a name or an int id")
    if isinstance(codec, int):
        if codec in _CODECS.values() or FIRST_USER_CODEC <= codec <= 65535:
            return codec
        raise ValueError(f"codec id {codec} is neither built in (0, 1, 2) nor a user id (1001..65535)")
    if isinstance(codec, str):
        try:
            return _CODECS[codec]
        except KeyError:
            raise ValueError(f"unknown codec {codec!r}; choose one of {sorted(_CODECS)} or register one") from None
    raise TypeError(f"codec must be a name or an int id, not {type(codec).__name__}")


BytesLike = Union[bytes, bytearray, memoryview]


def register_codec(
    codec: int, encode: Callable[[Any], BytesLike], decode: Callable[[bytes], Any], *, name: str | None = None
) -> None:
    """Registers a codec under id ``codec`` (1001..65535) for every queue of this process.

    ``encode(obj)`` returns a bytes-like object; ``decode(data: bytes)`` returns the object.
    Every process that receives such messages must register the same codec. With ``name``,
    queues may also be created with ``codec=name``.
    """
    _register_codec(codec, encode, decode)
    if name is not None:
        _CODECS[name] = codec


def full_name(name: str, namespace: str | None = None) -> str:
    """The name a queue has in the system: ``namespace.name`` (or ``name``)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    _validate_name(name)
    if namespace is None:
        return name
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be a str, not {type(namespace).__name__}")
    _validate_name(namespace)
    return f"{namespace}.{name}"


def _check_open_arguments(name: str | None, create: bool | None, mode: int, max_processes: int) -> tuple[str, bool | None]:
    """Checks the arguments queues and broadcasts share; ``name=None`` becomes a unique
    private name (then ``create`` is ``True``). Returns ``(name, create)``."""
    if create is not None and not isinstance(create, bool):
        raise TypeError("create must be None, True or False")
    if name is None:
        if create is False:
            raise ValueError("create=False needs a name to open")
        name = f"anon-{os.getpid()}-{secrets.token_hex(6)}"
        create = True
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o777:
        raise ValueError(f"mode must be an int in 0..0o777, got {mode!r}")
    if not isinstance(max_processes, int) or isinstance(max_processes, bool) or not 1 <= max_processes <= 4096:
        raise ValueError(f"max_processes must be 1..4096, got {max_processes!r}")
    return name, create


class QueueStats(NamedTuple):
    """A snapshot of a queue's counters (``Queue.stats()``)."""

    depth: int
    """Messages in the queue."""
    bytes_used: int
    """Bytes of the ring holding queued (or not yet reclaimed) messages."""
    capacity: int
    """Bytes of the ring."""
    maxsize: int
    """Message bound (0 = none)."""
    puts: int
    """Messages put since the queue was created, by every process."""
    gets: int
    """Messages taken since the queue was created, by every process."""
    waits: int
    """Times a producer or consumer went to sleep waiting."""
    attached: int
    """Processes attached now."""
    lost: int
    """Messages lost because their consumer died while taking them."""
    abandoned: int
    """Puts abandoned because their producer died mid-put (never delivered)."""
    reaped: int
    """Dead processes detached by others."""
    tail: int
    """Byte position (since creation) up to which puts reserved space (monotonic)."""
    head: int
    """Byte position (since creation) up to which gets took messages (monotonic)."""


# Every open handle (queues, broadcasts, subscriptions): closed at exit, re-attached after fork.
_live_queues: weakref.WeakSet[Any] = weakref.WeakSet()


def _close_all() -> None:
    """Detaches every queue this process still has open (at interpreter exit, and at the exit
    of a ``multiprocessing`` child, which leaves through ``os._exit``)."""
    for q in list(_live_queues):
        q.close()


def _after_fork_in_child() -> None:
    # The child attaches to an inherited queue on first use only (a child that never uses
    # it never attaches), and detaches at exit.
    for q in list(_live_queues):
        q._reattach_after_fork()
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(None, _close_all, exitpriority=-100)


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork_in_child)


class Queue(_Queue):
    """A named shared-memory MPMC queue with the surface of :class:`multiprocessing.Queue`.

    ``Queue(name=None, maxsize=0, capacity=DEFAULT_CAPACITY, *, create=None, namespace=None,
    codec="pickle", allow_pickle=True, mode=0o600, persistent=False, max_processes=128)``

    - ``name``: any process opens the same queue by this name. ``None`` makes a unique
      private name (the queue still travels to children by pickling).
    - ``maxsize``: bound on the number of messages (0: only ``capacity`` bounds the queue).
    - ``capacity``: ring size in bytes, an int or a string such as ``"64MiB"``; the largest
      message is ``capacity - 16`` bytes. Ignored when opening an existing queue.
    - ``create``: ``None`` opens the queue or creates it; ``True`` insists on creating
      (:class:`QueueExistsError`), ``False`` on opening (:class:`QueueNotFoundError`).
    - ``namespace``: isolates names (the queue is ``namespace.name`` in the system).
    - ``codec``: how ``put`` encodes objects: ``"pickle"`` (default), ``"msgpack"``, ``"raw"``
      (bytes-like in, ``bytes`` out) or a registered codec. ``get`` decodes each message with
      the codec it was put with.
    - ``allow_pickle=False`` refuses pickle in both directions.
    - ``mode``: permission bits of the segment (``0o600``: this user only).
    - ``persistent``: keep the queue when the last process detaches (default: the last
      process to close it, or to die with it attached, removes it).
    - ``allow_large=True``: messages larger than the ring are not an error: each travels in
      a shared-memory segment of its own (``/dev/shm/shmqside-<name>-<id>``) referenced from
      the ring, which the consumer maps and then removes. Any consumer reads them; the
      setting is the producer's (default ``False``: ``MessageTooLargeError``).
    """

    def __new__(
        cls,
        name: str | None = None,
        maxsize: int = 0,
        capacity: Capacity = DEFAULT_CAPACITY,
        *,
        create: bool | None = None,
        namespace: str | None = None,
        codec: Codec = "pickle",
        allow_pickle: bool = True,
        mode: int = 0o600,
        persistent: bool = False,
        max_processes: int = 128,
        allow_large: bool = False,
    ) -> Queue:
        name, create = _check_open_arguments(name, create, mode, max_processes)
        if not isinstance(maxsize, int) or isinstance(maxsize, bool):
            raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}")
        if maxsize < 0:
            maxsize = 0  # multiprocessing.Queue treats maxsize <= 0 as "unbounded"
        self = super().__new__(
            cls,
            full_name(name, namespace),
            capacity=parse_size(capacity),
            maxsize=maxsize,
            create=create,
            mode=mode,
            codec=codec_id(codec),
            allow_pickle=bool(allow_pickle),
            persistent=bool(persistent),
            max_processes=max_processes,
            allow_large=bool(allow_large),
        )
        _live_queues.add(self)
        return self

    def __init__(
        self,
        name: str | None = None,
        maxsize: int = 0,
        capacity: Capacity = DEFAULT_CAPACITY,
        *,
        create: bool | None = None,
        namespace: str | None = None,
        codec: Codec = "pickle",
        allow_pickle: bool = True,
        mode: int = 0o600,
        persistent: bool = False,
        max_processes: int = 128,
        allow_large: bool = False,
    ) -> None:
        """Arguments are handled by ``__new__`` (the native object is built there)."""

    def stats(self) -> QueueStats:
        """Counters and occupancy, summed over every attached process."""
        return QueueStats(**self._stats())

    def join_thread(self) -> None:
        """As :meth:`multiprocessing.Queue.join_thread`: there is no feeder thread, so this
        returns at once; like the original it may only be called after :meth:`close`."""
        if not self.closed:
            raise ValueError("join_thread() may only be called after close()")

    def cancel_join_thread(self) -> None:
        """As :meth:`multiprocessing.Queue.cancel_join_thread`: nothing to cancel, a put
        returns only once its message is in shared memory."""

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Callable[..., Queue], tuple[Any, ...]]:
        # The handle travels by name: the receiving process attaches to the same queue.
        return (_reopen, (self.name, self.codec_id, self.allow_pickle, self.allow_large))

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmq.Queue {self.name!r} closed>"
        return (
            f"<shmq.Queue {self.name!r} qsize={self.qsize()} capacity={self.capacity}"
            f" maxsize={self.maxsize}>"
        )


from ._broadcast import Broadcast, BroadcastStats, Subscriber, SubscriberStats  # noqa: E402


def _reopen(name: str, codec: int, allow_pickle: bool, allow_large: bool = False) -> Queue:
    return Queue(name, create=False, codec=codec, allow_pickle=allow_pickle, allow_large=allow_large)


def list_queues() -> list[str]:
    """Names of the queues in ``/dev/shm`` (namespace included)."""
    return list(_list_queues())


def gc(init_grace: float = 60.0) -> list[str]:
    """Removes every non-persistent queue whose attached processes are all dead (and
    segments whose creator died before initialising them, after ``init_grace`` seconds).
    Queues with a live process, and persistent queues, are left alone. Also removes side
    segments (``shmqside-...``, messages larger than a ring) whose ring no longer exists.
    Returns the names removed (queue names, and side segments' full names). Never needed for correctness: the last process to leave a queue removes it, and
    dead processes are detached by whoever opens or closes the queue next."""
    return list(_gc(init_grace))


__all__ = [
    "Broadcast",
    "BroadcastStats",
    "Lagged",
    "MessageView",
    "Subscriber",
    "SubscriberStats",
    "WrongKindError",
    "CODEC_MSGPACK",
    "CODEC_PICKLE",
    "CODEC_RAW",
    "DEFAULT_CAPACITY",
    "FIRST_USER_CODEC",
    "SEGMENT_PREFIX",
    "CodecError",
    "CorruptedQueueError",
    "DecodeError",
    "Empty",
    "Full",
    "InvalidNameError",
    "MessageTooLargeError",
    "PickleNotAllowedError",
    "Queue",
    "QueueClosedError",
    "QueueExistsError",
    "QueueNotFoundError",
    "QueuePermissionError",
    "QueueStats",
    "ShmqError",
    "TooManyProcessesError",
    "__version__",
    "codec_id",
    "full_name",
    "gc",
    "list_queues",
    "parse_size",
    "register_codec",
]

del _errors
