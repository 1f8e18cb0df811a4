"""The ``faster-fifo`` 1.5 API on shmq's ring: ``from shmq.compat.faster_fifo import Queue``.

Code written for `faster-fifo <https://pypi.org/project/faster-fifo/>`_ runs unchanged once
its import is replaced::

    from shmq.compat.faster_fifo import Queue      # was: from faster_fifo import Queue
    from queue import Full, Empty

    q = Queue(1000 * 1000)                          # max_size_bytes: the size of the buffer
    q.put({"a": 42})
    q.put_many([1, 2, 3])
    assert q.get() == {"a": 42}
    assert q.get_many(max_messages_to_get=100) == [1, 2, 3]

A :class:`Queue` is a private :class:`shmq.Queue` (``codec="raw"``) whose messages are the
bytes of ``dumps(obj)`` (by default ``multiprocessing``'s ``ForkingPickler``, as the
original's), turned back into objects with ``loads`` by the receiving handle. Handles travel
to other processes by pickling (``Process`` arguments with any start method, or through
another queue) and reattach by name.

Kept from the original: ``Queue(max_size_bytes=1_000_000, maxsize=int(1e9), loads=None,
dumps=None)``; per-instance ``loads``/``dumps`` and class-level ones in a subclass;
``put(obj, block=True, timeout=...)``, ``put_nowait``, ``put_many(xs, block=True,
timeout=...)`` (all or nothing when the batch fits the ring), ``put_many_nowait``, ``get``,
``get_nowait``, ``get_many(block=True, timeout=..., max_messages_to_get=int(1e9))`` (as many
waiting messages as the bounds allow, at least one), ``get_many_nowait``, the byte bound of
``get_many`` (the attribute ``max_bytes_to_read``, default ``max_size_bytes``: a call stops
taking messages once it took that many bytes, counted as the original counts them, 8 bytes
plus the serialized message each; here also a ``max_size_bytes=`` keyword for one call),
``qsize``, ``empty``, ``full``, ``data_size()`` (those same bytes of every waiting message),
``close()``/``is_closed()`` as a flag shared by every process, ``last_error``,
``join_thread``/``cancel_join_thread`` (no thread: they return at once), the attributes
``max_size_bytes``, ``maxsize``, ``max_bytes_to_read``, :class:`QueueError`, and
:class:`queue.Full`/:class:`queue.Empty` (shmq's, subclasses of them).

Differences from the original
-----------------------------
- **Timeouts default to None: wait as long as it takes**, as :mod:`multiprocessing` and
  :mod:`queue` do. The original's ``put``/``get`` gave up after 10 s by default and raised
  ``Full``/``Empty``, and ``timeout=None`` raised ``TypeError``; its users asked for
  ``multiprocessing``'s semantics (faster-fifo issue #42, which its maintainer agreed needs
  the fix). Pass ``timeout=10`` where the old default was relied on. ``timeout=0`` does not
  wait; a negative timeout raises ``ValueError``, as ``multiprocessing.Queue`` (the
  original's ``get(timeout=-1)`` never returned: it turned -1 s into a huge unsigned wait).
  Waits are timed on the monotonic clock (the original's on the wall clock, which a clock
  change moves). (``test_default_timeout_is_none_as_multiprocessing``,
  ``test_timeout_none_blocks_until_a_message_arrives``, ``test_block_and_timeout_take_ints``)
- **close() is a shutdown that every process sees at once.** ``close()`` shuts the queue down
  (:meth:`shmq.Queue.shutdown`): consumers drain what is left, then ``get``/``get_many``
  raise :class:`Closed` (a ``queue.Empty``, so the original's consumer loop ``except Empty:
  if q.is_closed(): break`` stops, and a :class:`shmq.ShutDown`) without waiting, and a
  consumer blocked in another process is woken. ``put`` after ``close()`` raises
  :class:`shmq.ShutDown` (the original's ``close`` only set a flag, which it warned might not
  propagate between processes at once, and puts and gets went on). ``is_closed()`` reads the
  shared flag. (``test_close_wakes_a_blocked_consumer_in_another_process``,
  ``test_close_drains_then_stops_consumers``)
- **A message that can never fit raises at once**: a message of more than
  ``max_size_bytes - 8`` serialized bytes raises :class:`shmq.MessageTooLargeError` (a
  ``ValueError``) without waiting and puts nothing; the original waited for the whole
  timeout (forever, had it honoured ``None``) and raised ``Full``.
  (``test_message_larger_than_the_buffer_raises_at_once``)
- **A killed process never deadlocks the queue.** The original guarded the buffer with a
  process-shared pthread mutex that is not robust: a process killed while holding it (inside
  ``put``/``get``) left every other process blocked forever. shmq has no lock; a dead
  process's half-done operation is repaired by the others.
  (``test_killed_producer_does_not_deadlock_the_queue``)
- **Pickling works anywhere.** The original's queue could only be handed to a child
  process as it started (``pickle.dumps(q)`` raised ``TypeError``); a :class:`Queue` pickles
  by name, so it also travels through another queue or a pool's task arguments. A pickled
  copy keeps the instance's ``loads``/``dumps`` (they must be picklable) and attributes.
  (``test_pickled_through_another_queue_and_a_pool``)
- **get_many never raises Empty before its timeout.** When its receive buffer was too small
  for the waiting messages, the original grew it and tried once more *without waiting*: if
  another consumer took the messages meanwhile, a blocking ``get_many`` raised ``Empty``
  early. Messages here are copied out of the ring as they are taken; there is no receive
  buffer to grow.
- **Errors.** ``put_many`` takes any iterable (the original only a list or tuple, else
  :class:`QueueError`; something not iterable, a ``str`` or bytes still raise it); a
  ``Full`` or ``ShutDown`` of ``put_many`` has ``.sent``, the number of objects put before it. The original's bare ``Exception``
  for an internal error is gone: errors are :class:`shmq.ShmqError` subclasses
  (:class:`shmq.CorruptedQueueError` for a damaged segment).
- **Ring accounting.** The ring is ``max_size_bytes + 8`` bytes rounded up to 4 KiB (at
  least 4 KiB), so the largest message the original accepts fits; but each message takes a
  16-byte header plus its bytes padded to 16 in it (the original: 8 bytes plus its bytes),
  so it holds fewer *small* messages at once; ``full()`` is shmq's (``maxsize`` messages
  wait, or one as large as the last this handle put would not fit; the original asked about
  a 1-byte message). A batch that fits the ring and ``maxsize`` goes in at once or not at
  all, as the original's; a larger one (which never fitted the original: ``Full``) goes in
  consecutive parts, in order (``put_many`` waits for room between them;
  ``put_many_nowait`` raises ``Full`` when a part does not fit, with ``.sent`` saying how many
  went in).
  ``data_size()`` walks the waiting messages. ``maxsize=0`` (or less) means no bound on the
  number of messages, as in :mod:`multiprocessing` (the original's 0 refused every put).
- A ``get_many`` with a ``max_bytes_to_read`` smaller than the ring takes its messages one
  at a time (other consumers may take messages between them); with the default it takes
  them in one batch. ``loads`` receives ``bytes`` (the original passed a ``memoryview``).
"""

from __future__ import annotations

import queue
from collections.abc import Iterable
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Final

from .. import Queue as _ShmqQueue
from .._common import MAX_MAXSIZE, is_int, short
from .._errors import Empty as _ShmqEmpty
from .._errors import MessageTooLargeError, ShmqError, ShutDown

__all__ = [
    "DEFAULT_CIRCULAR_BUFFER_SIZE",
    "DEFAULT_TIMEOUT",
    "Closed",
    "Empty",
    "Full",
    "Queue",
    "QueueError",
]

#: Default ``max_size_bytes`` (the original's: 1 MB).
DEFAULT_CIRCULAR_BUFFER_SIZE: Final = 1000 * 1000
#: Default ``timeout`` of every call: wait as long as it takes (the original's was 10 s).
DEFAULT_TIMEOUT: Final = None
#: Bytes the original counts for each message besides its serialized bytes (its length).
MESSAGE_HEADER: Final = 8
_DEFAULT_MAXSIZE: Final = int(1e9)
_ALL: Final = int(1e9)

Full = queue.Full
"""The standard :class:`queue.Full`, as the original's (what is raised is shmq's subclass)."""
Empty = queue.Empty
"""The standard :class:`queue.Empty`, as the original's (what is raised is shmq's subclass)."""


class QueueError(ShmqError):
    """A call the queue cannot make sense of (``put_many`` of something not iterable); the
    original's ``QueueError``. Its message is also in :attr:`Queue.last_error`."""


class Closed(ShutDown, _ShmqEmpty):
    """Raised by a get once the queue was closed (:meth:`Queue.close`, by any process) and
    nothing is left: a :class:`queue.Empty` (the original's consumer loops catch it and check
    :meth:`Queue.is_closed`) and a :class:`shmq.ShutDown`."""


def _shut_down(q: _ShmqQueue[bytes]) -> None:
    """Closes the queue for every process (the one place that says how: swap it here)."""
    q.shutdown(immediate=False)


def _is_shut_down(q: _ShmqQueue[bytes]) -> bool:
    return q.is_shutdown


class Queue:
    """A multi-producer multi-consumer queue between processes with faster-fifo's API.

    ``Queue(max_size_bytes=1_000_000, maxsize=int(1e9), loads=None, dumps=None)``:
    ``max_size_bytes`` bounds the bytes waiting (see the module documentation for how they
    are counted), ``maxsize`` the number of messages; ``dumps(obj) -> bytes`` and
    ``loads(bytes) -> obj`` replace pickle for this queue.
    """

    def __init__(
        self,
        max_size_bytes: int = DEFAULT_CIRCULAR_BUFFER_SIZE,
        maxsize: int = _DEFAULT_MAXSIZE,
        loads: Callable[[bytes], Any] | None = None,
        dumps: Callable[[Any], bytes] | None = None,
    ) -> None:
        if not is_int(max_size_bytes):
            raise TypeError(
                f"max_size_bytes must be an int, not {type(max_size_bytes).__name__} {short(max_size_bytes)}"
            )
        if max_size_bytes <= MESSAGE_HEADER:
            raise ValueError(f"max_size_bytes must be more than {MESSAGE_HEADER}, got {max_size_bytes}")
        if not is_int(maxsize):
            raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__} {short(maxsize)}")
        self.max_size_bytes = max_size_bytes
        self.maxsize = maxsize
        self.max_bytes_to_read = max_size_bytes  # the byte bound of get_many
        if loads is not None:
            self.loads = loads  # type: ignore[method-assign, assignment]  # per instance, as the original
        if dumps is not None:
            self.dumps = dumps  # type: ignore[method-assign, assignment]
        self.last_error: str | None = None
        self._q: _ShmqQueue[bytes] = _ShmqQueue(
            None,
            maxsize=max(0, min(maxsize, MAX_MAXSIZE)),
            capacity=max_size_bytes + MESSAGE_HEADER,
            codec="raw",
        )

    # -- serialization (overridable per instance or in a subclass, as the original) --------

    def loads(self, msg_bytes: bytes) -> Any:
        """The object of a message (default: ``multiprocessing``'s pickle)."""
        return ForkingPickler.loads(msg_bytes)

    def dumps(self, obj: Any) -> bytes:
        """The bytes of ``obj`` (default: ``multiprocessing``'s pickle)."""
        return bytes(ForkingPickler.dumps(obj))

    def _error(self, message: str) -> QueueError:
        self.last_error = message
        return QueueError(message)

    def _encode(self, obj: Any) -> bytes:
        data = self.dumps(obj)
        size = MESSAGE_HEADER + memoryview(data).nbytes
        if size > self.max_size_bytes:
            raise MessageTooLargeError(
                f"a message of {size - MESSAGE_HEADER} bytes (8 more counted) never fits a queue of"
                f" max_size_bytes={self.max_size_bytes}"
            )
        return data

    # -- put ---------------------------------------------------------------------------------

    def put(self, x: Any, block: bool = True, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Puts ``x``, waiting for room if ``block`` (at most ``timeout`` seconds if given)."""
        self._q.put(self._encode(x), block, timeout)

    def put_nowait(self, x: Any) -> None:
        """Puts ``x`` without waiting; raises :class:`queue.Full` if there is no room."""
        self._q.put(self._encode(x), False)

    def put_many(self, xs: Iterable[Any], block: bool = True, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Puts every object of ``xs`` in order: all or nothing when the batch fits the ring
        (see the module documentation for a larger one)."""
        if not isinstance(xs, Iterable) or isinstance(xs, (str, bytes, bytearray, memoryview)):
            # A string is one message, not a batch of characters (the original: QueueError).
            raise self._error(f"put_many() expects an iterable such as a list or tuple, got {type(xs)}")
        self._q.put_many([self._encode(x) for x in xs], block, timeout)

    def put_many_nowait(self, xs: Iterable[Any]) -> None:
        """``put_many(xs, block=False)``."""
        self.put_many(xs, block=False)

    # -- get ---------------------------------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """Removes and returns one object, waiting for it if ``block`` (at most ``timeout``
        seconds if given); :class:`queue.Empty` if there is none, :class:`Closed` once the
        queue was closed and drained."""
        try:
            data = self._q.get(block, timeout)
        except ShutDown:
            raise Closed("the queue was closed and nothing is left") from None
        return self.loads(data)

    def get_nowait(self) -> Any:
        """``get(block=False)``."""
        return self.get(False)

    def get_many(
        self,
        block: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_messages_to_get: int = _ALL,
        max_size_bytes: int | None = None,
    ) -> list[Any]:
        """Removes and returns 1 to ``max_messages_to_get`` waiting objects, waiting for the
        first if ``block`` (at most ``timeout`` seconds if given). Stops once the messages
        taken reach ``max_size_bytes`` bytes (default: the attribute ``max_bytes_to_read``),
        counted as :meth:`data_size` counts them; the last one may go past the bound."""
        bound = self.max_bytes_to_read if max_size_bytes is None else max_size_bytes
        if not is_int(bound) or bound < 1:
            raise ValueError(f"max_size_bytes must be a positive int, got {short(bound)}")
        try:
            if bound >= self.max_size_bytes:
                # The original never holds more than max_size_bytes: a bound that large never
                # stops it early (the default). One batch.
                taken = self._q.get_many(max_messages_to_get, block, timeout)
            else:
                taken = self._take_bounded(max_messages_to_get, bound, block, timeout)
        except ShutDown:
            raise Closed("the queue was closed and nothing is left") from None
        loads = self.loads
        return [loads(data) for data in taken]

    def _take_bounded(self, most: int, bound: int, block: bool, timeout: float | None) -> list[bytes]:
        taken = self._q.get_many(1, block, timeout)
        size = MESSAGE_HEADER + len(taken[0])
        while len(taken) < most and size < bound:
            try:
                data = self._q.get_nowait()
            except (_ShmqEmpty, ShutDown):
                break
            taken.append(data)
            size += MESSAGE_HEADER + len(data)
        return taken

    def get_many_nowait(self, max_messages_to_get: int = _ALL) -> list[Any]:
        """``get_many(block=False, max_messages_to_get=...)``."""
        return self.get_many(False, None, max_messages_to_get)

    # -- state -------------------------------------------------------------------------------

    def qsize(self) -> int:
        """Messages waiting."""
        return self._q.qsize()

    def empty(self) -> bool:
        """Whether no message waits (a snapshot)."""
        return self._q.empty()

    def full(self) -> bool:
        """Whether ``maxsize`` messages wait, or a message as large as the last one this
        handle put would not fit now (a snapshot)."""
        return self._q.full()

    def data_size(self) -> int:
        """Bytes of the waiting messages as the original counts them: 8 plus the serialized
        bytes of each."""
        messages, payload = self._q._queued_payload()
        return MESSAGE_HEADER * messages + payload

    def close(self) -> None:
        """Closes the queue for every process: puts raise :class:`shmq.ShutDown`; gets take
        what is left, then raise :class:`Closed` instead of waiting. Closing twice is fine."""
        _shut_down(self._q)

    def is_closed(self) -> bool:
        """Whether :meth:`close` was called, by any process."""
        return _is_shut_down(self._q)

    def join_thread(self) -> None:
        """Returns at once: there is no feeder thread (as the original)."""

    def cancel_join_thread(self) -> None:
        """Returns at once: there is no feeder thread (as the original)."""

    def __repr__(self) -> str:
        return (
            f"<shmq.compat.faster_fifo.Queue {self._q.name!r} max_size_bytes={self.max_size_bytes}"
            f" qsize={self.qsize()}{' closed' if self.is_closed() else ''}>"
        )
