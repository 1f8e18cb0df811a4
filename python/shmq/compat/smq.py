"""The ``shared-multiprocess-queue`` 0.1.5 API on shmq's ring.

Code written for `shared-multiprocess-queue
<https://pypi.org/project/shared-multiprocess-queue/0.1.5/>`_ runs unchanged once its import
is replaced::

    from shmq.compat.smq import SharedMemoryQueue, Empty, Full
    # was: from shared_multiprocess_queue import SharedMemoryQueue, Empty, Full

    q = SharedMemoryQueue("tasks", create=True, capacity=1000, item_size=4096, run_id="app")
    q.put({"task": 1})
    assert q.get() == {"task": 1}
    q.unlink()

A :class:`SharedMemoryQueue` is the :class:`shmq.Queue` ``run_id.name`` (``name`` when
``run_id`` is empty) with ``maxsize=capacity`` and a ring sized so that ``capacity`` items of
``item_size`` bytes always fit. Items are serialized with ``cloudpickle`` when it is installed
(``pickle`` otherwise) and travel as raw messages (shmq codec 0): a plain ``shmq.Queue``
consumer receives the pickled bytes.

Kept from the original: the constructor (``lock`` is accepted and ignored), ``put``/``get``
with ``block``/``timeout``, ``put_nowait``/``get_nowait``, all-or-nothing ``put_batch``
(:class:`Full` at once if the batch does not fit, :class:`ValueError` before anything is put
if an item cannot be serialized or is larger than ``item_size``), ``put_async``/
``get_async``, ``empty``/``full``/``qsize``, ``get_metrics()`` with its four keys,
``close``/``unlink``, pickling (the handle reattaches by name), ``run_id`` namespacing, and
the attributes ``name``, ``run_id``, ``capacity``, ``item_size``.

Differences from the original
-----------------------------
- :class:`Empty` and :class:`Full` derive from :class:`queue.Empty`/:class:`queue.Full` (and
  shmq's), and are also attributes of :class:`SharedMemoryQueue`: the original's README
  catches ``queue.Empty`` where ``queue`` is the queue object, which raised
  :class:`AttributeError` with the original.
- **Timeouts.** ``timeout=0`` means "do not wait" (the original waited forever); a negative
  timeout is treated as 0 (as the original did). Waiting ``put``/``get`` sleep on a futex
  and wake at once instead of polling every millisecond.
- **An item of exactly ``item_size`` bytes fits** (the original wrote its 4-byte length
  prefix past the slot, into the next item).
- **No lock.** A process killed inside ``put``/``get`` never deadlocks the queue (the
  original's lock could stay held); its half-done operation is repaired by the others.
- **Lifetime.** The queue lives while a process has it open, or until :meth:`unlink`; a
  process that exits (even the creator) never deletes a queue others still use, and
  :meth:`close` of the last handle removes it (the original left that to
  :mod:`multiprocessing.resource_tracker`, which removed the segment when the first
  process that had opened it exited).
- **Undecodable items are not lost.** An item that cannot be deserialized raises
  :class:`DecodeError` (a :class:`ValueError`, as the original's) carrying the item's bytes
  in ``.raw``; the original dropped it.
- ``put_async``/``get_async`` poll with a short backoff (up to 2 ms) so that a cancelled
  call never takes an item; the other calls never poll.
- ``create=True`` on an existing name raises :class:`shmq.QueueExistsError` (a
  :class:`FileExistsError`, as the original's); ``create=False`` on a missing one
  :class:`shmq.QueueNotFoundError` (a :class:`FileNotFoundError`). Names and ``run_id`` are
  shmq names (``[A-Za-z0-9._-]``).
- A handle opened by name (``create=False``) reads ``capacity`` from the queue and derives
  ``item_size`` from the ring size (shmq keeps no user metadata): the largest size of which
  ``capacity`` items fit the ring. It is at least the creator's (equal for the defaults);
  it can be larger when the ring was rounded up to a multiple of 4 KiB (a queue of 3 items
  of 100 bytes: 800). Every item it accepts still fits. Pickled handles carry the creator's
  exact values.
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from .. import Queue
from .._errors import DecodeError as _ShmqDecodeError
from .._errors import Empty as _ShmqEmpty
from .._errors import Full as _ShmqFull
from .._errors import MessageTooLargeError, QueueClosedError, QueueNotFoundError
from .._shmq import CODEC_RAW

try:
    _cloudpickle: Any = importlib.import_module("cloudpickle")
except ImportError:
    _cloudpickle = None

#: The serializer of items: ``cloudpickle.dumps`` when cloudpickle is installed, else pickle.
dumps: Callable[[Any], bytes] = (
    _cloudpickle.dumps if _cloudpickle is not None else (lambda obj: pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))
)
#: The deserializer (cloudpickle's output is read by :func:`pickle.loads`).
loads: Callable[[bytes], Any] = pickle.loads

#: Ring room for this many items besides ``capacity``, so consumers still copying items out
#: never make a put with fewer than ``capacity`` items queued wait.
_SPARE_SLOTS: Final = 2
_RECORD_HEADER: Final = 16
_ASYNC_MAX_DELAY: Final = 0.002


class Empty(_ShmqEmpty):
    """The queue stayed empty (nonblocking get, or the timeout passed). A
    :class:`queue.Empty`."""


class Full(_ShmqFull):
    """The queue stayed full (nonblocking put, or the timeout passed), or a batch does not
    fit. A :class:`queue.Full`."""


class DecodeError(_ShmqDecodeError, ValueError):
    """An item could not be deserialized. It has been taken off the queue; its bytes are in
    :attr:`raw`."""


def _slot(item_size: int) -> int:
    """Ring bytes a message of ``item_size`` bytes takes (16-byte header, padded to 16)."""
    return -(-(_RECORD_HEADER + item_size) // 16) * 16


def _ring_size(capacity: int, item_size: int) -> int:
    return (capacity + _SPARE_SLOTS) * _slot(item_size)


def _item_size_of(ring: int, capacity: int) -> int:
    """The largest ``item_size`` whose ring for ``capacity`` items fits in ``ring`` bytes."""
    return (ring // (capacity + _SPARE_SLOTS)) // 16 * 16 - _RECORD_HEADER


def _timeout(timeout: float | None) -> float | None:
    return None if timeout is None else max(0.0, float(timeout))


def _full_name(name: str, run_id: str) -> str:
    return f"{run_id}.{name}" if run_id else name


class SharedMemoryQueue:
    """A FIFO queue in shared memory, created or opened by name, with the API of
    ``shared_multiprocess_queue.SharedMemoryQueue`` 0.1.5.

    ``SharedMemoryQueue(name, create=False, capacity=1000, item_size=4096, run_id="",
    lock=None)``: ``create=True`` makes a new queue for ``capacity`` items of at most
    ``item_size`` serialized bytes; ``create=False`` opens an existing one (its
    ``capacity``/``item_size`` arguments are ignored). ``run_id`` namespaces the name;
    ``lock`` is ignored.
    """

    Empty = Empty
    Full = Full

    def __init__(
        self,
        name: str,
        create: bool = False,
        capacity: int = 1000,
        item_size: int = 4096,
        run_id: str = "",
        lock: Any = None,
    ) -> None:
        for what, value in (("capacity", capacity), ("item_size", item_size)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{what} must be an int, not {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{what} must be positive, got {value}")
        self.name = name
        self.run_id = run_id
        namespace = run_id or None
        if create:
            self._q = Queue(
                name,
                maxsize=capacity,
                capacity=_ring_size(capacity, item_size),
                create=True,
                namespace=namespace,
                codec=CODEC_RAW,
                keep_messages=False,  # the original's segment goes with its processes
            )
            self.capacity = capacity
            self.item_size = item_size
        else:
            self._q = Queue(name, create=False, namespace=namespace, codec=CODEC_RAW, keep_messages=False)
            self.capacity = self._q.maxsize
            if self.capacity > 0:
                self.item_size = min(_item_size_of(self._q.capacity, self.capacity), self._q.max_message_size)
            else:  # a queue made by plain shmq without a maxsize
                self.item_size = self._q.max_message_size

    # -- serialization ---------------------------------------------------------------------

    def _encode(self, item: Any) -> bytes:
        try:
            data = dumps(item)
        except Exception as e:
            raise ValueError(f"Failed to serialize item: {e}") from e
        if len(data) > self.item_size:
            raise MessageTooLargeError(f"Item too large: {len(data)} bytes > {self.item_size} bytes")
        return data

    @staticmethod
    def _decode(message: Any) -> Any:
        if not isinstance(message, bytes):
            return message  # put by a plain shmq producer with a codec: already decoded
        try:
            return loads(message)
        except Exception as e:
            raise DecodeError(
                f"Failed to deserialize item: {e!r}; its bytes are in .raw", message, CODEC_RAW
            ) from e

    # -- data ------------------------------------------------------------------------------

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Puts ``item``, waiting for room if ``block`` (at most ``timeout`` seconds if given;
        ``timeout=0`` does not wait). Raises :class:`Full` when there is no room and
        :class:`ValueError` if the item cannot be serialized or is larger than
        ``item_size``."""
        data = self._encode(item)
        try:
            self._q.put(data, block, _timeout(timeout))
        except _ShmqFull:
            raise Full("Queue is full" if not block else "Queue is full (timeout)") from None

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Removes and returns the oldest item, waiting if ``block`` (at most ``timeout``
        seconds if given; ``timeout=0`` does not wait). Raises :class:`Empty` when there is
        none."""
        try:
            message = self._q.get(block, _timeout(timeout))
        except _ShmqEmpty:
            raise Empty("Queue is empty" if not block else "Queue is empty (timeout)") from None
        return self._decode(message)

    def put_nowait(self, item: Any) -> None:
        """Puts ``item`` without waiting; raises :class:`Full` if the queue is full."""
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        """Removes and returns an item without waiting; raises :class:`Empty` if there is
        none."""
        return self.get(block=False)

    def put_batch(self, items: Iterable[Any]) -> None:
        """Puts every item, in order, all or nothing: raises :class:`Full` at once (putting
        nothing) if the queue has no room for all of them, and :class:`ValueError` (putting
        nothing) if one cannot be serialized or is larger than ``item_size``."""
        payloads = [self._encode(item) for item in items]
        if not payloads:
            return
        if len(payloads) > self.capacity > 0:
            raise Full(f"Queue full: batch of {len(payloads)} items exceeds capacity {self.capacity}")
        try:
            self._q.put_many(payloads, block=False)
        except _ShmqFull:
            raise Full(
                f"Queue full: {self._q.qsize()}/{self.capacity}, cannot add {len(payloads)} items"
            ) from None

    async def put_async(self, item: Any, timeout: float | None = None) -> None:
        """Puts ``item`` without blocking the event loop, waiting up to ``timeout`` seconds
        (forever if ``None``) for room; raises :class:`Full` when the time is up."""
        data = self._encode(item)
        wait = _timeout(timeout)
        deadline = None if wait is None else time.monotonic() + wait
        delay = 0.0001
        while True:
            try:
                self._q.put(data, block=False)
                return
            except _ShmqFull:
                if deadline is not None and time.monotonic() >= deadline:
                    raise Full("Queue is full (timeout)") from None
            delay = await _backoff(delay, deadline)

    async def get_async(self, timeout: float | None = None) -> Any:
        """Removes and returns an item without blocking the event loop, waiting up to
        ``timeout`` seconds (forever if ``None``); raises :class:`Empty` when the time is up.
        A cancelled call takes nothing."""
        wait = _timeout(timeout)
        deadline = None if wait is None else time.monotonic() + wait
        delay = 0.0001
        while True:
            try:
                message = self._q.get(block=False)
                break
            except _ShmqEmpty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise Empty("Queue is empty (timeout)") from None
            delay = await _backoff(delay, deadline)
        return self._decode(message)

    # -- state -----------------------------------------------------------------------------

    def empty(self) -> bool:
        """Whether the queue is empty (a snapshot)."""
        return self._q.empty()

    def full(self) -> bool:
        """Whether the queue holds ``capacity`` items (a snapshot)."""
        return self._q.full()

    def qsize(self) -> int:
        """Number of queued items."""
        return self._q.qsize()

    def get_metrics(self) -> dict[str, Any]:
        """``queue_size``, ``queue_capacity``, ``queue_utilization_percent`` and
        ``queue_item_size_bytes``; ``{}`` once the handle is closed."""
        try:
            size = self._q.qsize()
        except QueueClosedError:
            return {}
        return {
            "queue_size": size,
            "queue_capacity": self.capacity,
            "queue_utilization_percent": (size / self.capacity * 100) if self.capacity > 0 else 0.0,
            "queue_item_size_bytes": self.item_size,
        }

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Detaches this handle; the last handle to close removes the queue. Idempotent."""
        self._q.close()

    def unlink(self) -> None:
        """Removes the queue's name now (processes that have it open keep using it) and
        closes this handle."""
        if self._q.closed:
            try:
                q = Queue(_full_name(self.name, self.run_id), create=False)
            except QueueNotFoundError:
                return
        else:
            q = self._q
        try:
            q.unlink()
        except QueueNotFoundError:
            pass
        finally:
            q.close()
            self._q.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "run_id": self.run_id, "capacity": self.capacity, "item_size": self.item_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Reattach by name; keep the sender's exact capacity and item_size.
        self.__init__(state["name"], create=False, run_id=state["run_id"])  # type: ignore[misc]
        self.capacity = state["capacity"]
        self.item_size = state["item_size"]

    def __repr__(self) -> str:
        return (
            f"SharedMemoryQueue(name={self.name!r}, run_id={self.run_id!r}, "
            f"capacity={self.capacity}, item_size={self.item_size})"
        )


async def _backoff(delay: float, deadline: float | None) -> float:
    if deadline is not None:
        delay = min(delay, max(0.0, deadline - time.monotonic()))
    await asyncio.sleep(delay)
    return min(delay * 2 if delay > 0 else 0.0001, _ASYNC_MAX_DELAY)


__all__ = ["DecodeError", "Empty", "Full", "SharedMemoryQueue", "dumps", "loads"]
