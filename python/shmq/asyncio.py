"""``shmq.asyncio``: the queues for asyncio programs (``import shmq.asyncio as shmq_aio``).

:class:`Queue`, :class:`Broadcast` and :class:`Subscriber` take the synchronous classes'
arguments and open the same segments, so a synchronous (or Rust) producer and an async
consumer share one queue. ``put``/``get``/``put_many``/``get_many``/``publish`` are
coroutines, the ``*_nowait`` calls stay synchronous, ``async for`` reads until the handle is
closed or the ring shut down (``shutdown()``: waiting gets take what is left, then raise
:class:`shmq.ShutDown`), and ``async with`` closes it.

>>> import asyncio, shmq.asyncio as shmq_aio
>>> async def main():
...     async with shmq_aio.Queue() as q:
...         await q.put("hello")
...         return await q.get()
>>> asyncio.run(main())
'hello'

Waiting costs no thread per call and no polling: every waiting call of the process sleeps
in one helper thread's ``futex_waitv`` and is woken through its loop's eventfd (see
``docs/protocol.md``, *Asynchronous waiters*). Cancelling a call (``asyncio.timeout``,
``wait_for``, ``task.cancel()``) is safe: messages are taken by a synchronous attempt between
waits, so a cancelled ``get`` took nothing and a cancelled ``put`` put nothing.
Works with any asyncio event loop that has ``add_reader`` (the default one, uvloop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Generic, TypeVar

from . import _broadcast, _queue
from ._common import Codec
from ._errors import Empty, Full, QueueClosedError, ShutDown
from ._waits import DATA, SPACE, Armable, Waiting, waits_of

__all__ = ["Queue", "Broadcast", "Subscriber"]

T = TypeVar("T")
R = TypeVar("R")


async def _retry(
    h: Armable,
    side: int,
    attempt: Callable[[], R],
    miss: type[Exception],
    timeout: float | None,
    waiting: Waiting,
    spinner: _Spinner | None = None,
) -> R:
    """``attempt()`` until it does not raise ``miss`` (``Empty``/``Full``), waiting on the
    ring's event of ``side`` in between; after ``timeout`` seconds the last attempt's
    ``miss`` is raised. Awaits only between attempts: a cancellation never interrupts one."""
    try:
        return attempt()
    except miss:
        pass
    # As a blocking call: a short spin first (about 50 µs, without the GIL) when the other
    # side may be about to publish; it keeps a round trip off the helper thread's path.
    if spinner is not None and spinner.should_spin():
        if spinner.paid_off(h._spin(DATA)):
            try:
                return attempt()
            except miss:
                pass
    loop = asyncio.get_running_loop()
    waits = waits_of(loop)
    # The end by the real clock: `loop.time()` may lag it (uvloop's is cached, in whole
    # milliseconds), and a wait must not end before `timeout` seconds have passed.
    end = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
    while True:
        deadline = None if end is None else loop.time() + max(0.0, end - time.monotonic())
        # SYNC W as a sleeping thread runs it: announce (arm), re-check, sleep, leave.
        armed = h._arm(side)
        if armed is not None:
            try:
                if side == SPACE:
                    # The ring cannot judge the room a put needs: the re-check is the attempt.
                    try:
                        return attempt()
                    except miss:
                        pass
                await waits.wait(armed, deadline, waiting)
            finally:
                armed.disarm()
        try:
            return attempt()
        except miss:
            if end is not None and time.monotonic() >= end:
                raise


class _Spinner:
    """Whether a get spins before it waits: always while spins pay off; after a spin that
    found nothing, the next 1, 3, 7 ... 63 gets do not (a loaded machine, where the other
    side rarely runs within 50 µs, or a slow producer: the spin would only burn the CPU)."""

    __slots__ = ("enabled", "misses", "skip")

    def __init__(self) -> None:
        self.enabled = True
        self.misses = 0
        self.skip = 0

    def should_spin(self) -> bool:
        if not self.enabled:
            return False
        if self.skip:
            self.skip -= 1
            return False
        return True

    def paid_off(self, ready: bool) -> bool:
        if ready:
            self.misses = 0
        else:
            self.misses = min(self.misses + 1, 6)
            self.skip = (1 << self.misses) - 1
        return ready


class _Handle:
    """What the three classes share: the synchronous handle, its waits, closing."""

    _h: Any

    def __init__(self) -> None:
        self._waiting = Waiting()
        self._spinner = _Spinner()

    @property
    def spin(self) -> bool:
        """Whether a get that finds nothing may spin about 50 µs (without the GIL, as a
        blocking get does) before it waits: a message that comes within that time costs no
        wake-up, but the loop runs nothing else meanwhile. Spins that find nothing make the
        next gets skip it for a while. Set it to ``False`` on a handle of a busy loop."""
        return self._spinner.enabled

    @spin.setter
    def spin(self, on: bool) -> None:
        self._spinner.enabled = bool(on)

    @property
    def name(self) -> str:
        """The ring's name."""
        return str(self._h.name)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return bool(self._h.closed)

    def close(self) -> None:
        """Detaches (as the synchronous ``close``); calls waiting on this handle raise
        :class:`shmq.QueueClosedError` (and ``async for`` ends)."""
        self._waiting.end_all()
        self._h.close()

    async def __aenter__(self: _H) -> _H:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


_H = TypeVar("_H", bound=_Handle)


class Queue(_Handle, Generic[T]):
    """An async handle of a :class:`shmq.Queue`: ``Queue(...)`` takes the same arguments and
    opens (or creates) the same queue; ``Queue.wrap(sync_queue)`` shares a handle."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._h: _queue.Queue[T] = _queue.Queue(*args, **kwargs)

    @classmethod
    def wrap(cls, queue: _queue.Queue[T]) -> Queue[T]:
        """An async view of an open synchronous queue (closing either closes both)."""
        self = cls.__new__(cls)
        _Handle.__init__(self)
        self._h = queue
        return self

    @property
    def sync(self) -> _queue.Queue[T]:
        """The synchronous handle underneath (to pass to another process, for instance)."""
        return self._h

    async def put(self, obj: T, timeout: float | None = None, *, codec: Codec | None = None) -> None:
        """Puts ``obj``, waiting for room (raises :class:`shmq.Full` after ``timeout`` seconds)."""
        q = self._h
        await _retry(q, SPACE, lambda: q.put(obj, False, codec=codec), Full, timeout, self._waiting)

    def put_nowait(self, obj: T) -> None:
        """Puts ``obj`` without waiting; raises :class:`shmq.Full` if there is no room."""
        self._h.put_nowait(obj)

    async def put_many(self, objs: Iterable[T], timeout: float | None = None, *, codec: Codec | None = None) -> None:
        """Puts every object of ``objs`` in order, waiting for room as it goes (atomically
        when the batch fits the ring). An exception has ``.sent``: how many went in. A
        cancelled call put nothing if the batch fits the ring at once; a larger one goes in
        chunks that each fit, and a cancellation between two leaves the chunks before it
        put (``qsize()`` tells; or send batches that fit)."""
        todo = list(objs)
        sent = 0
        q = self._h

        def attempt() -> None:
            nonlocal sent
            try:
                q.put_many(todo[sent:], False, codec=codec)
            except (Full, QueueClosedError) as e:
                sent += getattr(e, "sent", 0)
                setattr(e, "sent", sent)  # counted from the first call's objects
                raise

        await _retry(q, SPACE, attempt, Full, timeout, self._waiting)

    async def get(self, timeout: float | None = None) -> T:
        """Removes and returns an object, waiting for one (raises :class:`shmq.Empty` after
        ``timeout`` seconds)."""
        return await _retry(self._h, DATA, self._h.get_nowait, Empty, timeout, self._waiting, self._spinner)

    def get_nowait(self) -> T:
        """Removes and returns an object without waiting; raises :class:`shmq.Empty`."""
        return self._h.get_nowait()

    async def get_many(self, max_messages: int = 1000, timeout: float | None = None) -> list[T]:
        """Removes and returns 1 to ``max_messages`` objects, waiting for the first."""
        q = self._h
        return await _retry(q, DATA, lambda: q.get_many(max_messages, False), Empty, timeout, self._waiting, self._spinner)

    def qsize(self) -> int:
        """Messages in the queue now."""
        return self._h.qsize()

    def empty(self) -> bool:
        """Whether the queue is empty now."""
        return self._h.empty()

    def full(self) -> bool:
        """Whether a put would have to wait now."""
        return self._h.full()

    def stats(self) -> _queue.QueueStats:
        """The queue's counters (as :meth:`shmq.Queue.stats`)."""
        return self._h.stats()

    def unlink(self) -> None:
        """Removes the name now (as :meth:`shmq.Queue.unlink`)."""
        self._h.unlink()

    def shutdown(self, immediate: bool = False) -> None:
        """Shuts the queue down for every process (as :meth:`shmq.Queue.shutdown`): puts
        raise :class:`shmq.ShutDown`; waiting gets take what is left, then raise it."""
        self._h.shutdown(immediate)

    @property
    def is_shutdown(self) -> bool:
        """Whether the queue was shut down (by any process)."""
        return self._h.is_shutdown

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.get()
        except (QueueClosedError, ShutDown):
            raise StopAsyncIteration from None

    def __reduce__(self) -> tuple[Callable[..., Queue[Any]], tuple[Any, ...]]:
        return (Queue.wrap, (self._h,))

    def __repr__(self) -> str:
        return f"<shmq.asyncio.Queue of {self._h!r}>"


class Broadcast(_Handle, Generic[T]):
    """An async publisher of a :class:`shmq.Broadcast` (same arguments, same ring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._h: _broadcast.Broadcast[T] = _broadcast.Broadcast(*args, **kwargs)

    @classmethod
    def wrap(cls, broadcast: _broadcast.Broadcast[T]) -> Broadcast[T]:
        """An async view of an open synchronous publisher."""
        self = cls.__new__(cls)
        _Handle.__init__(self)
        self._h = broadcast
        return self

    @property
    def sync(self) -> _broadcast.Broadcast[T]:
        """The synchronous handle underneath."""
        return self._h

    async def publish(self, obj: T, timeout: float | None = None, *, codec: Codec | None = None) -> None:
        """Publishes ``obj`` to every subscriber, waiting for room under the ``block`` policy."""
        b = self._h
        await _retry(b, SPACE, lambda: b.publish(obj, False, codec=codec), Full, timeout, self._waiting)

    put = publish

    def publish_nowait(self, obj: T) -> None:
        """Publishes without waiting; raises :class:`shmq.Full` if there is no room."""
        self._h.publish(obj, False)

    async def publish_many(self, objs: Iterable[T], timeout: float | None = None, *, codec: Codec | None = None) -> None:
        """Publishes every object of ``objs`` in order (``.sent`` on an exception)."""
        todo = list(objs)
        sent = 0
        b = self._h

        def attempt() -> None:
            nonlocal sent
            try:
                b.publish_many(todo[sent:], False, codec=codec)
            except (Full, QueueClosedError) as e:
                sent += getattr(e, "sent", 0)
                setattr(e, "sent", sent)  # counted from the first call's objects
                raise

        await _retry(b, SPACE, attempt, Full, timeout, self._waiting)

    def subscribe(self, *, allow_pickle: bool | None = None) -> Subscriber[T]:
        """A new async subscription of this process (from what is published next)."""
        return Subscriber.wrap(self._h.subscribe(allow_pickle=allow_pickle))

    def stats(self) -> _broadcast.BroadcastStats:
        """The ring's counters and subscribers."""
        return self._h.stats()

    def unlink(self) -> None:
        """Removes the name now."""
        self._h.unlink()

    def shutdown(self, immediate: bool = False) -> None:
        """Shuts the broadcast down for every process (as :meth:`shmq.Broadcast.shutdown`)."""
        self._h.shutdown(immediate)

    @property
    def is_shutdown(self) -> bool:
        """Whether the broadcast was shut down."""
        return self._h.is_shutdown

    def __reduce__(self) -> tuple[Callable[..., Broadcast[Any]], tuple[Any, ...]]:
        return (Broadcast.wrap, (self._h,))

    def __repr__(self) -> str:
        return f"<shmq.asyncio.Broadcast of {self._h!r}>"


class Subscriber(_Handle, Generic[T]):
    """An async subscription of a broadcast (same arguments as :class:`shmq.Subscriber`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._h: _broadcast.Subscriber[T] = _broadcast.Subscriber(*args, **kwargs)

    @classmethod
    def wrap(cls, subscriber: _broadcast.Subscriber[T]) -> Subscriber[T]:
        """An async view of an open synchronous subscription."""
        self = cls.__new__(cls)
        _Handle.__init__(self)
        self._h = subscriber
        return self

    @property
    def sync(self) -> _broadcast.Subscriber[T]:
        """The synchronous handle underneath."""
        return self._h

    async def get(self, timeout: float | None = None, *, copy: bool = True) -> Any:
        """The next message (raises :class:`shmq.Empty` after ``timeout`` seconds,
        :class:`shmq.Lagged` if it was overwritten); ``copy=False`` as the synchronous call."""
        s = self._h
        return await _retry(s, DATA, lambda: s.get(False, copy=copy), Empty, timeout, self._waiting, self._spinner)

    def get_nowait(self) -> T:
        """The next message without waiting; raises :class:`shmq.Empty`."""
        return self._h.get_nowait()

    async def get_many(self, max_messages: int = 1000, timeout: float | None = None) -> list[T]:
        """1 to ``max_messages`` messages, waiting for the first."""
        s = self._h
        return await _retry(s, DATA, lambda: s.get_many(max_messages, False), Empty, timeout, self._waiting, self._spinner)

    @property
    def is_shutdown(self) -> bool:
        """Whether the broadcast was shut down."""
        return self._h.is_shutdown

    def info(self) -> _broadcast.SubscriberStats:
        """This subscription's position and lag."""
        return self._h.info()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.get()  # type: ignore[no-any-return]
        except (QueueClosedError, ShutDown):
            raise StopAsyncIteration from None

    def __reduce__(self) -> tuple[Callable[..., Subscriber[Any]], tuple[Any, ...]]:
        return (Subscriber.wrap, (self._h,))

    def __repr__(self) -> str:
        return f"<shmq.asyncio.Subscriber of {self._h!r}>"
