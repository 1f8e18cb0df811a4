"""Broadcast: one ring, many publishers, and subscribers that each receive every message."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable, Generic, Literal, NamedTuple, overload

from ._common import (
    DEFAULT_CAPACITY,
    DEFAULT_MAX_PROCESSES,
    DEFAULT_MODE,
    Capacity,
    HandleMixin,
    Codec,
    T,
    TrustedOwners,
    WhenCreating,
    access_arguments,
    access_of,
    check_bool,
    check_setting,
    full_name,
    open_arguments,
    register,
    ring_size,
    short,
)
from ._errors import InvalidArgumentError
from ._shmq import MessageView, Reservation, _Publisher, _Subscriber

Policy = Literal["block", "lag"]


class SubscriberStats(NamedTuple):
    """One subscriber of a broadcast, as :meth:`Broadcast.stats` reports it."""

    pid: int
    """Process id of the subscriber."""
    position: int
    """Byte position of the next message it reads."""
    lag_messages: int
    """Messages published that it has not read yet."""
    lag_bytes: int
    """Ring bytes published that it has not read yet."""
    missed_pending: int
    """Messages it missed (lag policy) and has not been told about yet."""


class BroadcastStats(NamedTuple):
    """A snapshot of a broadcast's counters (:meth:`Broadcast.stats`)."""

    capacity: int
    """Bytes of the ring."""
    bytes_used: int
    """Bytes holding messages not yet reclaimed."""
    retained: int
    """Messages still in the ring (published, not yet reclaimed)."""
    published: int
    """Messages published since creation, by every process."""
    delivered: int
    """Messages read since creation, summed over every subscriber."""
    waits: int
    """Times a publisher or subscriber went to sleep."""
    attached: int
    """Handles attached now (publishers and subscribers)."""
    abandoned: int
    """Publishes abandoned because their publisher died mid-write (never delivered)."""
    reaped: int
    """Dead processes detached by others (dead subscribers are evicted this way)."""
    tail: int
    """Byte position up to which messages were published."""
    subscribers: list[SubscriberStats]
    """Every live subscription."""


class Broadcast(_Publisher, HandleMixin, Generic[T]):
    """The publishing side of a named broadcast ring: every subscriber receives every message
    published after it subscribed, in publication order.

    ``Broadcast(name=None, *, capacity=DEFAULT_CAPACITY, policy="block", create=None,
    namespace=None, codec="pickle", allow_pickle=True, mode=0o600, persistent=False,
    max_processes=128, allow_large=False)``

    ``capacity`` is keyword-only: ``Queue("x", 100)`` means ``maxsize=100``, and a broadcast
    has no ``maxsize``, so ``Broadcast("x", 100)`` is a ``TypeError`` rather than a 100-byte
    ring. ``capacity`` and ``policy`` are the broadcast's own, set when it is created: left
    out, any existing broadcast opens; given, they must match it (:class:`shmq.MismatchError`).

    - ``policy="block"`` (default): a publisher waits (``block``/``timeout`` as ``Queue.put``)
      until the slowest live subscriber has read enough to make room. A subscriber that dies
      is evicted within milliseconds and never stalls publishers.
    - ``policy="lag"``: publishers never wait; a subscriber that fell behind gets
      :class:`shmq.Lagged` (with the number of messages it missed) and then continues with
      the oldest message still in the ring.
    - ``allow_large=True``: messages larger than the ring travel in side segments (as
      :class:`shmq.Queue`); each is removed once every subscriber has passed it.
    - Other arguments as :class:`shmq.Queue`. Any number of processes may publish.

    Generic for type checkers as :class:`shmq.Queue`: a ``Broadcast[T]`` publishes ``T``s
    and its subscriptions are ``Subscriber[T]``.
    """

    if TYPE_CHECKING:

        def __new__(
            cls,
            name: str | None = None,
            *,
            capacity: Capacity = DEFAULT_CAPACITY,
            policy: Policy = "block",
            create: bool | None = None,
            namespace: str | None = None,
            codec: Codec = "pickle",
            allow_pickle: bool = True,
            mode: int = DEFAULT_MODE,
            persistent: bool = False,
            max_processes: int = DEFAULT_MAX_PROCESSES,
            allow_large: bool = False,
            trusted_owners: TrustedOwners = None,
        ) -> Broadcast[T]: ...

    else:

        def __new__(cls, name=None, *positional, **kwargs):
            # A second positional gets a message that says why (see the class docstring).
            if positional:
                raise TypeError(
                    f"Broadcast() takes capacity by keyword only: Broadcast(name, capacity={positional[0]!r})"
                    " (in Queue(name, 100), 100 is maxsize; a broadcast has none)"
                )
            return cls._open(name, **kwargs)

    @classmethod
    def _open(
        cls,
        name: str | None = None,
        *,
        capacity: Capacity | WhenCreating[Capacity] = WhenCreating(DEFAULT_CAPACITY),
        policy: Policy | WhenCreating[Policy] = WhenCreating("block"),
        create: bool | None = None,
        namespace: str | None = None,
        codec: Codec = "pickle",
        allow_pickle: bool = True,
        mode: int = DEFAULT_MODE,
        persistent: bool = False,
        max_processes: int = DEFAULT_MAX_PROCESSES,
        allow_large: bool = False,
        trusted_owners: TrustedOwners = None,
    ) -> Broadcast[T]:
        # Given explicitly (not the defaults): checked against an existing broadcast's.
        check_capacity = not isinstance(capacity, WhenCreating)
        if isinstance(capacity, WhenCreating):
            capacity = capacity.value
        check_policy = not isinstance(policy, WhenCreating)
        if isinstance(policy, WhenCreating):
            policy = policy.value
        if not isinstance(policy, str):
            raise TypeError(f"policy must be 'block' or 'lag', not {type(policy).__name__} {short(policy)}")
        if policy not in ("block", "lag"):
            raise InvalidArgumentError(f"policy must be 'block' or 'lag', not {policy!r}")
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
        self = super().__new__(cls, full, lag=policy == "lag", **arguments)
        register(self)
        if check_capacity:
            ring = ring_size(arguments["capacity"])
            shown = repr(capacity) if capacity == ring else f"{capacity!r} (a ring of {ring} bytes)"
            check_setting(self, "broadcast", "capacity", ring, self.capacity, shown)
        if check_policy:
            check_setting(self, "broadcast", "policy", policy, self.policy)
        return self

    if TYPE_CHECKING:
        # The native methods, typed with the broadcast's T (see Queue).
        def publish(
            self, obj: T, block: bool = True, timeout: float | None = None, *, codec: Codec | None = None
        ) -> None: ...
        def publish_many(
            self, objs: Iterable[T], block: bool = True, timeout: float | None = None, *, codec: Codec | None = None
        ) -> None: ...
        def reserve(
            self, size: int, block: bool = True, timeout: float | None = None, *, codec: Codec | None = None
        ) -> Reservation: ...

    def put(self, obj: T, block: bool = True, timeout: float | None = None, *, codec: Codec | None = None) -> None:
        """Same as :meth:`publish` (so a broadcast can stand in for a queue's producer side)."""
        self.publish(obj, block, timeout, codec=codec)

    def subscribe(self, *, allow_pickle: bool | None = None) -> Subscriber[T]:
        """A new subscription of this process, receiving what is published from now on."""
        mode, trusted = access_of(self)
        return Subscriber(
            self.name,
            allow_pickle=self.allow_pickle if allow_pickle is None else check_bool("allow_pickle", allow_pickle),
            mode=mode,
            trusted_owners=trusted,
        )

    def stats(self) -> BroadcastStats:
        """Counters, occupancy and every subscriber's position and lag."""
        # The native dict's keys are BroadcastStats' fields (a new one fails here, loudly).
        native = self._stats()
        stats: dict[str, Any] = dict(native)
        stats["subscribers"] = [SubscriberStats(**s) for s in native["subscribers"]]
        return BroadcastStats(**stats)

    def _reopen_arguments(self) -> dict[str, Any]:
        mode, trusted = access_of(self)
        return dict(create=False, codec=self.codec_id, allow_pickle=self.allow_pickle,
                    allow_large=self.allow_large, mode=mode, trusted_owners=trusted)

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmq.Broadcast {self.name!r} closed>"
        return f"<shmq.Broadcast {self.name!r} capacity={self.capacity} policy={self.policy!r}>"


class Subscriber(_Subscriber, HandleMixin, Generic[T]):
    """A subscription to a named broadcast: ``get`` returns every message published after
    the subscription was made, in publication order.

    ``Subscriber(name, *, namespace=None, allow_pickle=True)``

    ``get``/``get_nowait``/``get_many`` behave as :class:`shmq.Queue`'s (``Empty`` on
    timeout). With ``policy="lag"`` they may raise :class:`shmq.Lagged`.

    Zero copy (block policy): ``get`` decodes pickle and msgpack messages straight from the
    ring, and ``get(copy=False)`` returns a raw message as a read-only
    :class:`shmq.MessageView` over the shared memory instead of ``bytes``. The view is valid
    until the subscription's next read or close() (the subscription holds the message until then, so
    publishers cannot overwrite it; copy what you keep). A memoryview or array of it keeps
    the message held until it is released (reads go on behind it; past 3 such messages
    ``get(copy=False)`` copies), and close() ends the subscription when the last one is. For large messages this saves the
    copy that dominates fan-out; for small ones ``bytes`` is cheaper. A subscription has
    one position: threads sharing it take turns. Pickled, it travels as the broadcast's name
    and the receiver gets a new subscription of its own (starting when it is unpickled).
    """

    def __new__(
        cls,
        name: str,
        *,
        namespace: str | None = None,
        allow_pickle: bool = True,
        mode: int = DEFAULT_MODE,
        trusted_owners: TrustedOwners = None,
    ) -> Subscriber[T]:
        access = access_arguments(mode, trusted_owners)
        allow_pickle = check_bool("allow_pickle", allow_pickle)
        self = super().__new__(cls, full_name(name, namespace), allow_pickle=allow_pickle, **access)
        register(self)
        return self

    if TYPE_CHECKING:
        # The native methods, typed with the subscription's T (see Queue). A raw message read
        # with copy=False is a MessageView instead.
        @overload
        def get(self, block: bool = True, timeout: float | None = None, *, copy: Literal[True] = True) -> T: ...
        @overload
        def get(self, block: bool = True, timeout: float | None = None, *, copy: bool = True) -> T | MessageView: ...
        def get(self, block: bool = True, timeout: float | None = None, *, copy: bool = True) -> T | MessageView: ...
        def get_nowait(self) -> T: ...
        def get_many(self, max_messages: int = 1000, block: bool = True, timeout: float | None = None) -> list[T]: ...

    def info(self) -> SubscriberStats:
        """This subscription's position and lag."""
        return SubscriberStats(**self._info())

    def __iter__(self) -> Subscriber[T]:
        return self

    def __next__(self) -> T:
        return self.get()

    def _reopen_arguments(self) -> dict[str, Any]:
        mode, trusted = access_of(self)
        return dict(allow_pickle=self.allow_pickle, mode=mode, trusted_owners=trusted)

    def __repr__(self) -> str:
        if self.closed:
            return f"<shmq.Subscriber {self.name!r} closed>"
        return f"<shmq.Subscriber {self.name!r} policy={self.policy!r}>"
