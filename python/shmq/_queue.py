"""``shmq.Queue``: a named shared-memory MPMC queue with the surface of ``multiprocessing.Queue``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, Generic, Literal, NamedTuple, overload

from ._common import (
    DEFAULT_CAPACITY,
    DEFAULT_MAX_PROCESSES,
    DEFAULT_MODE,
    MAX_MAXSIZE,
    Capacity,
    HandleMixin,
    Codec,
    T,
    TrustedOwners,
    WhenCreating,
    access_of,
    check_setting,
    is_int,
    open_arguments,
    register,
    ring_size,
    short,
)
from ._errors import InvalidArgumentError
from ._shmq import MessageView, Reservation, _Queue


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
    dropped: int = 0
    """Messages dropped unread by ``shutdown(immediate=True)`` (last, so that positional
    construction keeps its meaning)."""


QueueStats.__module__ = "shmq"  # pickled and printed as before the package split


class Queue(_Queue, HandleMixin, Generic[T]):
    """A named shared-memory MPMC queue with the surface of :class:`multiprocessing.Queue`.

    ``Queue(name=None, maxsize=0, capacity=DEFAULT_CAPACITY, *, create=None, namespace=None,
    codec="pickle", allow_pickle=True, mode=0o600, persistent=False, max_processes=128,
    allow_large=False)``, or ``Queue(maxsize, *, name=None, ...)``: an int first argument is
    ``maxsize``, as in ``multiprocessing.Queue(100)``.

    - ``name``: any process opens the same queue by this name. ``None`` makes a unique
      private name (the queue still travels to children by pickling).
    - ``maxsize``: bound on the number of messages (0: only ``capacity`` bounds the queue).
    - ``capacity``: ring size in bytes, an int or a string such as ``"64MiB"``; the largest
      message is ``capacity - 16`` bytes.
    - ``maxsize`` and ``capacity`` are the queue's own, set when it is created: opening an
      existing queue keeps them. Left out, any existing queue opens; given, they must match
      it (``capacity`` rounded up to a multiple of 4096), or :class:`MismatchError`.
    - ``create``: ``None`` opens the queue or creates it; ``True`` insists on creating
      (:class:`QueueExistsError`), ``False`` on opening (:class:`QueueNotFoundError`).
    - ``namespace``: isolates names (the queue is ``namespace.name`` in the system).
    - ``codec``: how ``put`` encodes objects: ``"pickle"`` (default), ``"msgpack"``, ``"raw"``
      (bytes-like in, ``bytes`` out) or a registered codec. ``get`` decodes each message with
      the codec it was put with.
    - ``allow_pickle=False`` refuses pickle in both directions.
    - ``mode``: permission bits of the segment (``0o600``: this user only). Opening an
      existing segment that is writable by more users than ``mode`` says raises
      :class:`UntrustedSegmentError`: pass the same ``mode`` to share it.
    - ``trusted_owners``: users (uids or names) whose segments are accepted besides this
      process's own, or ``"*"`` for anyone. By default a segment another user created under
      the name is refused (:class:`UntrustedSegmentError`): its owner could read what you
      put and forge what you get, pickles that run code included.
    - ``persistent``: keep the queue when the last process detaches (default: the last
      process to close it, or to die with it attached, removes it).
    - ``keep_messages``: whether this handle, if it is the last to leave a non-persistent
      queue that still holds messages, keeps the queue for a later reader (default ``True``
      for named queues: a producer that exits before any consumer came loses nothing;
      ``False`` for private ones). See the lifecycle table in the README.
    - ``allow_large=True``: messages larger than the ring are not an error: each travels in
      a shared-memory segment of its own (``/dev/shm/shmqside-<name>-<id>``) referenced from
      the ring, which the consumer maps and then removes. Any consumer reads them; the
      setting is the producer's (default ``False``: ``MessageTooLargeError``).

    Generic for type checkers: ``shmq.Queue[Task]`` is a queue whose ``get`` returns a
    ``Task`` (nothing checks this at run time).
    """

    __module__ = "shmq"  # printed (and a pickled class found) as before the package split

    @overload
    def __new__(
        cls,
        maxsize: int,
        /,
        *,
        name: str | None = None,
        capacity: Capacity = DEFAULT_CAPACITY,
        create: bool | None = None,
        namespace: str | None = None,
        codec: Codec = "pickle",
        allow_pickle: bool = True,
        mode: int = DEFAULT_MODE,
        persistent: bool = False,
        max_processes: int = DEFAULT_MAX_PROCESSES,
        allow_large: bool = False,
        trusted_owners: TrustedOwners = None,
        keep_messages: bool | None = None,
    ) -> Queue[T]: ...
    @overload
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
        mode: int = DEFAULT_MODE,
        persistent: bool = False,
        max_processes: int = DEFAULT_MAX_PROCESSES,
        allow_large: bool = False,
        trusted_owners: TrustedOwners = None,
        keep_messages: bool | None = None,
    ) -> Queue[T]: ...
    def __new__(cls, *args: Any, **kwargs: Any) -> Queue[T]:
        # The first positional is told by its type, so that multiprocessing.Queue(100), which
        # means maxsize=100, keeps its meaning: an int is maxsize (and comes alone, as there),
        # a str or None is the name. Python binds the rest in _open.
        if args and is_int(args[0]):
            if len(args) > 1:
                raise TypeError(
                    "Queue() takes maxsize alone when it comes first, as multiprocessing.Queue(maxsize);"
                    f" got {len(args)} positional arguments (pass name=, capacity= by keyword)"
                )
            if "maxsize" in kwargs:
                raise TypeError("Queue() got multiple values for argument 'maxsize'")
            return cls._open(maxsize=args[0], **kwargs)
        if args and args[0] is not None and not isinstance(args[0], str):
            raise TypeError(
                "Queue()'s first argument is maxsize (an int) or name (a str or None),"
                f" not {type(args[0]).__name__}"
            )
        return cls._open(*args, **kwargs)

    @classmethod
    def _open(
        cls,
        name: str | None = None,
        maxsize: int | WhenCreating[int] = WhenCreating(0),
        capacity: Capacity | WhenCreating[Capacity] = WhenCreating(DEFAULT_CAPACITY),
        *,
        create: bool | None = None,
        namespace: str | None = None,
        codec: Codec = "pickle",
        allow_pickle: bool = True,
        mode: int = DEFAULT_MODE,
        persistent: bool = False,
        max_processes: int = DEFAULT_MAX_PROCESSES,
        allow_large: bool = False,
        trusted_owners: TrustedOwners = None,
        keep_messages: bool | None = None,
    ) -> Queue[T]:
        # Given explicitly (not the defaults): checked against an existing queue's.
        check_maxsize = not isinstance(maxsize, WhenCreating)
        if isinstance(maxsize, WhenCreating):
            maxsize = maxsize.value
        check_capacity = not isinstance(capacity, WhenCreating)
        if isinstance(capacity, WhenCreating):
            capacity = capacity.value
        if not is_int(maxsize):
            raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__} {short(maxsize)}")
        if maxsize > MAX_MAXSIZE:
            raise InvalidArgumentError(f"maxsize must be at most 2**64 - 1 (0 or less: unbounded), got {maxsize}")
        maxsize = max(maxsize, 0)  # multiprocessing.Queue treats maxsize <= 0 as "unbounded"
        full, arguments = open_arguments(
            name,
            capacity=capacity,
            create=create,
            namespace=namespace,
            codec=codec,
            allow_pickle=allow_pickle,
            mode=mode,
            persistent=persistent,
            max_processes=max_processes,
            allow_large=allow_large,
            trusted_owners=trusted_owners,
        )
        if keep_messages is None:
            # A private queue nobody can open by name is not kept for its messages when its
            # last process leaves (a handle in flight keeps it, see __reduce__).
            keep_messages = not (name is None or name.startswith("anon-"))
        elif not isinstance(keep_messages, bool):
            raise TypeError(f"keep_messages must be a bool, not {type(keep_messages).__name__}")
        self = super().__new__(cls, full, maxsize=maxsize, keep_messages=keep_messages, **arguments)
        register(self)
        if check_maxsize:
            check_setting(self, "queue", "maxsize", maxsize, self.maxsize)
        if check_capacity:
            ring = ring_size(arguments["capacity"])
            shown = repr(capacity) if capacity == ring else f"{capacity!r} (a ring of {ring} bytes)"
            check_setting(self, "queue", "capacity", ring, self.capacity, shown)
        return self

    if TYPE_CHECKING:
        # The native methods, typed with the queue's T (at run time they are _Queue's own:
        # a Python wrapper would cost a call per message).
        def put(
            self, obj: T, block: bool = True, timeout: float | None = None, *, codec: Codec | None = None
        ) -> None: ...
        def put_nowait(self, obj: T) -> None: ...
        def put_many(
            self, objs: Iterable[T], block: bool = True, timeout: float | None = None, *, codec: Codec | None = None
        ) -> None: ...
        # With copy=False a raw message is a MessageView, anything else the decoded object.
        @overload
        def get(self, block: bool = True, timeout: float | None = None, *, copy: Literal[True] = True) -> T: ...
        @overload
        def get(self, block: bool = True, timeout: float | None = None, *, copy: bool = True) -> T | MessageView: ...
        def get(self, block: bool = True, timeout: float | None = None, *, copy: bool = True) -> T | MessageView: ...
        def reserve(
            self, size: int, block: bool = True, timeout: float | None = None, *, codec: Codec | None = None
        ) -> Reservation: ...
        def get_nowait(self) -> T: ...
        def get_many(self, max_messages: int = 1000, block: bool = True, timeout: float | None = None) -> list[T]: ...
        def put_many_nowait(self, objs: Iterable[T], *, codec: Codec | None = None) -> None: ...
        def get_many_nowait(self, max_messages: int = 1000) -> list[T]: ...

    def stats(self) -> QueueStats:
        """Counters and occupancy, summed over every attached process."""
        return QueueStats(**self._stats())

    def join_thread(self) -> None:
        """As :meth:`multiprocessing.Queue.join_thread`: there is no feeder thread, so this
        returns at once; like the original it may only be called after :meth:`close`."""
        if not self.closed:
            raise InvalidArgumentError("join_thread() may only be called after close()")

    def cancel_join_thread(self) -> None:
        """As :meth:`multiprocessing.Queue.cancel_join_thread`: nothing to cancel, a put
        returns only once its message is in shared memory."""

    def _reopen_arguments(self) -> dict[str, Any]:
        mode, trusted = access_of(self)
        return dict(create=False, codec=self.codec_id, allow_pickle=self.allow_pickle,
                    allow_large=self.allow_large, mode=mode, trusted_owners=trusted)

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmq.Queue {self.name!r} closed>"
        return (
            f"<shmq.Queue {self.name!r} qsize={self.qsize()} capacity={self.capacity}"
            f" maxsize={self.maxsize}>"
        )
