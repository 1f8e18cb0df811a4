"""The native module of shmq (Rust, PyO3). Use the public names of :mod:`shmq` instead."""

from collections.abc import Callable, Iterable
from typing import Any, Literal, TypedDict, final

from typing_extensions import Self, disjoint_base

__all__ = [
    "_Queue",
    "_Publisher",
    "_Subscriber",
    "MessageView",
    "Reservation",
    "_Armed",
    "_Readiness",
    "register_codec",
    "list_queues",
    "validate_name",
    "gc",
    "inspect",
    "remove",
    "CODEC_RAW",
    "CODEC_PICKLE",
    "CODEC_MSGPACK",
    "CODEC_PICKLE_OOB",
    "FIRST_USER_CODEC",
    "SEGMENT_PREFIX",
]

CODEC_RAW: int
CODEC_PICKLE: int
CODEC_MSGPACK: int
CODEC_PICKLE_OOB: int
FIRST_USER_CODEC: int
SEGMENT_PREFIX: str

class _StatsDict(TypedDict):
    depth: int
    bytes_used: int
    capacity: int
    maxsize: int
    puts: int
    gets: int
    waits: int
    attached: int
    lost: int
    abandoned: int
    reaped: int
    dropped: int
    tail: int
    head: int

@disjoint_base
class _Queue:
    """The queue implementation; ``shmq.Queue`` subclasses it."""

    def __new__(
        cls,
        name: str,
        *,
        capacity: int,
        maxsize: int = 0,
        create: bool | None = None,
        mode: int = 0o600,
        codec: int = 1,
        allow_pickle: bool = True,
        persistent: bool = False,
        max_processes: int = 128,
        allow_large: bool = False,
        trusted_owners: list[int] | None = None,
        trust_any_owner: bool = False,
        keep_messages: bool = True,
    ) -> Self: ...
    def _arm(self, side: int) -> _Armed | None:
        """Announces an asynchronous wait (0 data, 1 space): ``None`` when the condition holds now."""
    def _spin(self, side: int) -> bool:
        """Spins about 50 µs without the GIL: whether a message may be ready."""
    @property
    def _access(self) -> tuple[int, list[int] | None]:
        """``(mode, trusted owners or None for any)``: how a pickled handle reopens."""
    def _keep_alive(self, grace: float) -> None:
        """Keeps the queue for ``grace`` seconds whatever its last process does meanwhile (for a
        handle on its way to another process: pickled, or inherited by a child)."""
    def _arrived(self) -> None:
        """A handle sent with ``_keep_alive`` arrived here (it was unpickled and attached)."""
    def put(self, obj: Any, block: bool = True, timeout: float | None = None, *, codec: int | str | None = None) -> None:
        """Puts ``obj``, waiting for space if ``block`` (at most ``timeout`` seconds if given).
        ``codec``: an id or a name, as the constructor's (default: the queue's)."""
    def put_nowait(self, obj: Any) -> None:
        """Puts ``obj`` without waiting; raises ``Full`` if there is no room."""
    def put_many(
        self, objs: Iterable[Any], block: bool = True, timeout: float | None = None, *, codec: int | str | None = None
    ) -> None:
        """Puts every object of ``objs``, in order (atomically when the batch fits in the ring).
        An exception has ``.sent``: how many of the objects were put before it."""
    def get(self, block: bool = True, timeout: float | None = None, *, copy: bool = True) -> Any:
        """Removes and returns an object, waiting if ``block``; raises ``Empty`` when there is none."""
    def get_nowait(self) -> Any:
        """Removes and returns an object without waiting; raises ``Empty`` if there is none."""
    def get_many(self, max_messages: int = 1000, block: bool = True, timeout: float | None = None) -> list[Any]:
        """Removes and returns 1 to ``max_messages`` objects, waiting for the first if ``block``."""
    def put_many_nowait(self, objs: Iterable[Any], *, codec: int | str | None = None) -> None:
        """Puts every object of ``objs`` without waiting (``put_many(objs, block=False)``)."""
    def get_many_nowait(self, max_messages: int = 1000) -> list[Any]:
        """Removes and returns 1 to ``max_messages`` objects without waiting
        (``get_many(max_messages, block=False)``)."""
    def reserve(
        self, size: int, block: bool = True, timeout: float | None = None, *, codec: int | str | None = None
    ) -> Reservation: ...
    def qsize(self) -> int:
        """Number of queued messages (a snapshot; exact with a ``maxsize``)."""
    def empty(self) -> bool:
        """Whether a ``get_nowait()`` now would raise ``Empty`` (a snapshot)."""
    def full(self) -> bool:
        """Whether ``maxsize`` messages are queued, or a message as large as the last one this
        handle put (or tried to put) would not fit now (a snapshot)."""
    def data_size(self) -> int:
        """Bytes of encoded payload queued (a snapshot, walked from the head: O(messages))."""
    def shutdown(self, immediate: bool = False) -> None:
        """Shuts the queue down for every process (Python 3.13's ``queue.Queue.shutdown``): puts
        raise ``ShutDown``; gets take what is left, then raise ``ShutDown`` instead of waiting;
        ``immediate`` drops what is left and makes gets raise at once."""
    @property
    def is_shutdown(self) -> bool:
        """Whether the queue was shut down (by any process)."""
    def close(self) -> None:
        """Detaches this process; the last process to detach removes a non-persistent queue."""
    def unlink(self) -> None:
        """Removes the queue's name now; attached processes keep using it."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    @property
    def name(self) -> str:
        """The queue's full name (namespace included)."""
    @property
    def codec_id(self) -> int:
        """Default codec id of ``put``."""
    @property
    def allow_pickle(self) -> bool:
        """Whether pickle is allowed."""
    @property
    def capacity(self) -> int:
        """Ring size in bytes."""
    @property
    def maxsize(self) -> int:
        """Message bound (0 = none)."""
    @property
    def max_message_size(self) -> int:
        """Largest encoded message the queue can hold."""
    @property
    def persistent(self) -> bool:
        """Whether the segment outlives its last process."""
    @property
    def allow_large(self) -> bool:
        """Whether this handle sends messages larger than the ring through side segments."""
    def _stats(self) -> _StatsDict: ...
    def _queued_payload(self) -> tuple[int, int]: ...
    def _reattach_after_fork(self) -> None: ...

class _SubscriberDict(TypedDict):
    pid: int
    position: int
    lag_messages: int
    lag_bytes: int
    missed_pending: int

class _BroadcastStatsDict(TypedDict):
    capacity: int
    bytes_used: int
    retained: int
    published: int
    delivered: int
    waits: int
    attached: int
    abandoned: int
    reaped: int
    tail: int
    subscribers: list[_SubscriberDict]

@disjoint_base
class _Publisher:
    """The publishing side of a broadcast; ``shmq.Broadcast`` subclasses it."""

    def __new__(
        cls,
        name: str,
        *,
        capacity: int,
        create: bool | None = None,
        mode: int = 0o600,
        codec: int = 1,
        allow_pickle: bool = True,
        persistent: bool = False,
        max_processes: int = 128,
        lag: bool = False,
        allow_large: bool = False,
        trusted_owners: list[int] | None = None,
        trust_any_owner: bool = False,
    ) -> Self: ...
    def _arm(self, side: int) -> _Armed | None:
        """Announces an asynchronous wait (0 data, 1 space): ``None`` when the condition holds now."""
    def _spin(self, side: int) -> bool:
        """Spins about 50 µs without the GIL: whether a message may be ready."""
    @property
    def _access(self) -> tuple[int, list[int] | None]:
        """``(mode, trusted owners or None for any)``: how a pickled handle reopens."""
    def _keep_alive(self, grace: float) -> None:
        """Keeps the broadcast for ``grace`` seconds (see ``_Queue._keep_alive``)."""
    def _arrived(self) -> None:
        """A handle sent with ``_keep_alive`` arrived here (it was unpickled and attached)."""
    def publish(self, obj: Any, block: bool = True, timeout: float | None = None, *, codec: int | str | None = None) -> None:
        """Publishes ``obj`` to every subscriber."""
    def reserve(
        self, size: int, block: bool = True, timeout: float | None = None, *, codec: int | str | None = None
    ) -> Reservation: ...
    def publish_many(
        self, objs: Iterable[Any], block: bool = True, timeout: float | None = None, *, codec: int | str | None = None
    ) -> None:
        """Publishes every object of ``objs``, in order (at once when the batch fits the ring).
        An exception has ``.sent``: how many of the objects were published before it."""
    def shutdown(self, immediate: bool = False) -> None:
        """Shuts the broadcast down for every process: publishes raise ``ShutDown``; subscribers
        read what they have not read yet, then raise ``ShutDown`` (at once if ``immediate``)."""
    @property
    def is_shutdown(self) -> bool:
        """Whether the broadcast was shut down (by any process)."""
    def close(self) -> None:
        """Detaches; the last process to detach removes a non-persistent broadcast."""
    def unlink(self) -> None:
        """Removes the name now; attached processes keep using the ring."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    @property
    def name(self) -> str:
        """The broadcast's full name."""
    @property
    def codec_id(self) -> int:
        """Default codec id of ``publish``."""
    @property
    def allow_pickle(self) -> bool:
        """Whether pickle is allowed."""
    @property
    def capacity(self) -> int:
        """Ring size in bytes."""
    @property
    def max_message_size(self) -> int:
        """Largest encoded message."""
    @property
    def policy(self) -> Literal["block", "lag"]:
        """``"lag"`` or ``"block"``."""
    @property
    def persistent(self) -> bool:
        """Whether the segment outlives its last process."""
    @property
    def allow_large(self) -> bool:
        """Whether this handle sends messages larger than the ring through side segments."""
    def _stats(self) -> _BroadcastStatsDict: ...
    def _reattach_after_fork(self) -> None: ...

@disjoint_base
class _Subscriber:
    """The reading side of a broadcast; ``shmq.Subscriber`` subclasses it."""

    def __new__(
        cls,
        name: str,
        *,
        allow_pickle: bool = True,
        mode: int = 0o600,
        trusted_owners: list[int] | None = None,
        trust_any_owner: bool = False,
    ) -> Self: ...
    def _arm(self, side: int) -> _Armed | None:
        """Announces an asynchronous wait (0 data, 1 space): ``None`` when the condition holds now."""
    def _spin(self, side: int) -> bool:
        """Spins about 50 µs without the GIL: whether a message may be ready."""
    @property
    def _access(self) -> tuple[int, list[int] | None]:
        """``(mode, trusted owners or None for any)``: how a pickled handle reopens."""
    def _keep_alive(self, grace: float) -> None:
        """Keeps the broadcast for ``grace`` seconds (see ``_Queue._keep_alive``)."""
    def _arrived(self) -> None:
        """A handle sent with ``_keep_alive`` arrived here (it was unpickled and attached)."""
    def get(self, block: bool = True, timeout: float | None = None, *, copy: bool = True) -> Any:
        """Returns the next message, waiting if ``block`` (at most ``timeout`` seconds if given).
        With ``copy=False`` (block policy), a raw message comes as a read-only ``MessageView``
        over the shared memory, valid until the next read of this subscription or its close().
        A memoryview or array of a view keeps its message held until it is released (at most
        3 per subscription: then ``copy=False`` copies)."""
    def get_nowait(self) -> Any:
        """Returns the next message without waiting; raises ``Empty`` if there is none."""
    def get_many(self, max_messages: int = 1000, block: bool = True, timeout: float | None = None) -> list[Any]:
        """Returns 1 to ``max_messages`` messages, waiting for the first if ``block``."""
    def close(self) -> None:
        """Unsubscribes and detaches (under a live buffer of a ``MessageView``, the subscription
        ends when the last one is released)."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    @property
    def name(self) -> str:
        """The broadcast's full name."""
    @property
    def allow_pickle(self) -> bool:
        """Whether pickle is allowed."""
    @property
    def capacity(self) -> int:
        """Ring size in bytes."""
    @property
    def policy(self) -> Literal["block", "lag"]:
        """``"lag"`` or ``"block"``."""
    @property
    def is_shutdown(self) -> bool:
        """Whether the broadcast was shut down (by any process)."""
    def _info(self) -> _SubscriberDict: ...
    def _reattach_after_fork(self) -> None: ...

@final
class Reservation:
    """Room for one message in a ring, filled in place (``Queue.reserve``)."""

    def __enter__(self) -> memoryview: ...
    def __exit__(self, exc_type: object, exc: object, tb: object, /) -> bool: ...
    def commit(self) -> None: ...
    def abandon(self) -> None: ...
    @property
    def open(self) -> bool: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...

@final
class _Armed:
    """One announced asynchronous wait (``shmq.asyncio``)."""

    def disarm(self) -> None:
        """Leaves the event's waiters (idempotent)."""

@final
class _Readiness:
    """One event loop's asynchronous waits and their eventfd (``shmq.asyncio``)."""

    def __new__(cls) -> _Readiness: ...
    def fileno(self) -> int: ...
    def register(self, token: int, armed: _Armed) -> bool:
        """Registers ``armed`` under ``token``; ``False`` if it was disarmed already."""
    def cancel(self, token: int) -> None: ...
    def take_ready(self) -> list[int]:
        """The tokens whose waits ended since the last call."""

@final
class MessageView:
    """A read-only buffer over a message in shared memory. ``Subscriber.get(copy=False)``
    returns one for a raw message, valid until the subscription's next read or close() (its
    memoryviews and arrays keep their bytes held until they are released, and its close()
    waits for them); queues
    and subscriptions also lend one to the pickle or msgpack decoder, to decode a message in
    place instead of copying it first."""

    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __len__(self) -> int: ...
    def __bytes__(self) -> bytes:
        """A copy of the bytes."""

def register_codec(codec_id: int, encode: Callable[[Any], Any], decode: Callable[[bytes], Any]) -> None:
    """Registers a user codec under ``codec_id`` (1001..65535) for every queue of this process."""

def list_queues() -> list[str]:
    """Names of the queues present in /dev/shm."""

def gc(init_grace: float = 60.0, drop_kept_after: float | None = None) -> list[str]:
    """Removes what no live process uses any more; returns the names removed."""

def inspect(name: str) -> dict[str, Any]:
    """A ring's state read without attaching to it, as a dict."""

def remove(name: str) -> bool:
    """Removes a ring by name (attached processes keep using it); whether there was one."""

def validate_name(name: str) -> None:
    """Checks a queue name; raises ``InvalidNameError``."""
