"""The ``shmqueue`` 0.0.2 API on shmq's ring: ``import shmq.compat.shmqueue as shmqueue``.

Code written for `shmqueue <https://pypi.org/project/shmqueue/0.0.2/>`_ runs unchanged once
its import is replaced::

    import shmq.compat.shmqueue as shmqueue          # was: import shmqueue
    from shmq.compat.shmqueue import SerializationMethods
    from shmq.compat.shmqueue.exceptions import ShmQueueEmpty

    q = shmqueue.ShmQueue("my_queue", buffer_size=shmqueue.SYSTEM_PAGESIZE)
    q.put({"hello": "world"})
    assert q.get() == {"hello": "world"}
    q.shutdown()

A :class:`ShmQueue` is a :class:`shmq.Queue` named ``queue_name`` whose ring is
``buffer_size`` plus one page. Messages are msgpack by default (shmq codec 2, with a fallback
to pickle, codec 1, for what msgpack cannot encode); serialization methods from
``SerializationMethods.FIRST_PUBLIC_NUMBER`` (1001) up to 65535 use the queue's
``custom_serialize``/``custom_deserialize`` functions, and each message carries its method, so
a ``shmq.Queue(queue_name, codec="msgpack")`` can talk to a :class:`ShmQueue`.

Kept from the original: one call creates or attaches (attaching ignores ``buffer_size``);
``buffer_size`` rounded up to a multiple of :data:`SYSTEM_PAGESIZE`; ``put``/``get`` with
``block``/``timeout``; the ``serialization_method`` ids and the msgpack → pickle fallback;
``allow_pickle=False`` refusing pickle both ways (:class:`ShmQueueSerializationError` on
``put``); ``qsize``/``empty``/``full``/``buffer_occupancy`` (``SIZE_HEADER`` = 8 bytes plus
the serialized bytes per message)/``max_buffer_size``/``snapshot``/``clear``;
``shutdown(use_gc=True)`` where the last handle to close frees the memory;
``set_console_handlers``; ``refs``; ``identifier``; the exception classes and their bases;
the submodules ``exceptions`` and ``shared_memory_collection`` (its public names only).
Added, as the original's README asked: ``put_nowait``/``get_nowait``.

Differences from the original
-----------------------------
- **No lock, no polling.** The original serialised every call through a shared-memory mutex
  and polled every 10 ms; a process killed inside ``put``/``get`` could leave that mutex
  locked and hang every other process. shmq has no lock to leave behind: a killed process
  never deadlocks the queue (its half-done operation is repaired by the others), and waiting
  ``put``/``get`` sleep on a futex and wake at once. ``set_console_handlers`` is therefore
  not needed; it still installs the handlers, but they chain to the previous handler (Ctrl-C
  still raises :class:`KeyboardInterrupt`, SIGTERM still ends the process) instead of
  swallowing the signal and leaving the program running with a closed queue.
- **Timeouts.** ``timeout=0`` means "do not wait"; a negative timeout is treated as 0.
- **Exit and lifetime.** The queue lives while a process has it open: ``shutdown()``, the
  handle being garbage collected, the process exiting or being killed all detach it, and the
  last one to leave removes the segment. A process that exits never removes a queue others
  still use, and shmq does not use :mod:`multiprocessing.resource_tracker`, so there are no
  leak warnings (``track_resources`` is accepted and ignored). Inherited handles in
  ``fork()`` children attach on first use and detach at exit, so ``add_ref_manually`` and
  ``reduce_ref_counter`` are accepted and do nothing (on a shut-down handle they raise
  :class:`ShmQueueNotInitializedError`, as the original; its ``ShmQueueValueError`` for
  dropping the last reference is not kept: there is no count to protect).
- **Undecodable messages are not lost.** A message that cannot be deserialized (pickle with
  ``allow_pickle=False``, a class the consumer cannot import, a custom method without a
  deserializer, or a deserializer that raises) raises
  :class:`~shmq.compat.shmqueue.exceptions.ShmQueueDeserializationError` carrying the
  message's bytes in ``.raw`` and its method in ``.codec``; the original dropped it.
- **Ring accounting.** ``buffer_occupancy()`` reports the original's accounting (8 bytes
  plus the serialized bytes per waiting message; it walks the waiting messages). The ring
  itself stores each message in a 16-byte header padded to 16 bytes, so it holds fewer
  *tiny* messages than the original's ``buffer_size`` would (a one-byte msgpack message takes
  32 bytes instead of 9), and ``full()`` means "a small message would not fit now".
  ``snapshot()`` fields ``put_pos``/``get_pos``/``same_lap`` describe shmq's ring (positions
  modulo its size, ``buffer_size + SYSTEM_PAGESIZE``), ``ref_count`` counts attached handles,
  and the fields are read one after the other, not under a lock.
- **Largest item**, as documented: an item occupies ``SIZE_HEADER + len(serialized)`` bytes,
  and one larger than the queue's ``buffer_size`` raises :class:`ShmQueueValueError` at once
  (never waiting, whatever ``block``/``timeout``); exactly ``buffer_size`` fits. To know the
  serialized length before the put, a msgpack or pickle item is encoded once more in Python.
  (``test_item_one_byte_over_buffer_size_is_refused_at_once``)
- **Names and methods.** Queue names are shmq names (``[A-Za-z0-9._-]``, at most 200
  characters; others raise :class:`ShmQueueValueError`). Custom serialization ids are
  1001..65535 (the original allowed up to 2**32 - 1). A custom method id is registered with
  :func:`shmq.register_codec` in each process that puts with it (process-wide): do not
  register the same id for another purpose in that process.
- ``qsize()`` is exact when no put or get is in flight (approximate under load).
  ``clear()`` takes the waiting messages one by one rather than resetting positions, so
  messages put concurrently may or may not survive it.
- ``debug_ref_to_file_log`` writes the original's JSON file (``<tempdir>/shmqueue/
  _ref_log_<name>.json``) with an exclusive ``flock`` around each update.
"""

from __future__ import annotations

import atexit
import datetime
import fcntl
import gc
import importlib
import json
import logging
import mmap
import os
import pickle
import signal
import tempfile
import threading
import uuid
import weakref
from collections.abc import Callable
from enum import Enum
from types import FrameType
from typing import Any, Final, NamedTuple

from ... import Queue
from ..._common import WhenCreating, exit_on_sigterm
from ..._errors import (
    CodecError,
    DecodeError,
    Empty,
    Full,
    InvalidNameError,
    MessageTooLargeError,
    PickleNotAllowedError,
    QueueClosedError,
)
from ..._shmq import CODEC_MSGPACK, CODEC_PICKLE, FIRST_USER_CODEC
from ..._shmq import register_codec as _register_codec
from . import exceptions
from .exceptions import (
    ShmQueueDeserializationError,
    ShmQueueEmpty,
    ShmQueueFull,
    ShmQueueNotInitializedError,
    ShmQueueSerializationError,
    ShmQueueTypeError,
    ShmQueueValueError,
)

#: The system page size; ``buffer_size`` is rounded up to a multiple of it.
SYSTEM_PAGESIZE: Final[int] = mmap.PAGESIZE
#: Bytes each waiting message adds to :meth:`ShmQueue.buffer_occupancy` besides its payload.
SIZE_HEADER: Final[int] = 8

_MAX_CUSTOM_METHOD: Final = 65535
_PICKLE_PROTOCOL: Final = 5  # shmq's pickle codec's (the size check measures what it writes)
_CLOSED_MSG: Final = "shared memory has not been initialized or already shut down."


class SerializationMethods:
    """Serialization method ids of :meth:`ShmQueue.put` (``serialization_method=``)."""

    MSGPACK: Final = 0
    """msgpack (the default); objects msgpack cannot encode fall back to pickle."""
    DEFAULT: Final = MSGPACK
    PICKLE: Final = 1
    """pickle (refused with ``allow_pickle=False``)."""
    FIRST_PUBLIC_NUMBER: Final = 1001
    """First id of user methods (``custom_serialize``/``custom_deserialize``)."""


class DebugRefLogAction(Enum):
    """What a ``debug_ref_to_file_log`` entry records."""

    CREATE = "create"
    SHUTDOWN = "shutdown"


class ShmRefDataSnapshot(NamedTuple):
    """The queue's state as :meth:`ShmQueue.snapshot` reports it."""

    ref_count: int
    put_pos: int
    get_pos: int
    buffer_size: int
    qsize: int
    same_lap: int


class _Custom(NamedTuple):
    """A message of a custom serialization method, before ``custom_deserialize``."""

    method: int
    raw: bytes


def _passthrough(payload: Any) -> Any:
    return payload  # the bytes from custom_serialize; shmq checks they are bytes-like


_registered: set[int] = set()
_registered_lock = threading.Lock()


def _ensure_custom_codec(method: int) -> None:
    """Registers ``method`` with shmq in this process: the payload goes as is, and a consumer
    gets a :class:`_Custom` to hand to its ``custom_deserialize``."""
    if method in _registered:
        return
    with _registered_lock:
        if method not in _registered:

            def decode(raw: bytes, method: int = method) -> _Custom:
                return _Custom(method, raw)

            _register_codec(method, _passthrough, decode)
            _registered.add(method)


def _packb(data: Any) -> bytes:
    """``data`` in msgpack as shmq's msgpack codec writes it (to measure it before the put)."""
    msgpack: Any = importlib.import_module("msgpack")  # untyped; imported on first use, as shmq's codec
    packed: bytes = msgpack.packb(data, use_bin_type=True)
    return packed


def _timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    return max(0.0, float(timeout))


def _default_custom_serialize(method: int, data: Any) -> bytes:
    raise NotImplementedError(
        "Custom serialization is not implemented yet. Please use either msgpack or pickle "
        "serialization methods or set one with custom_serialize()."
    )


def _default_custom_deserialize(method: int, chunks: list[bytes]) -> Any:
    raise NotImplementedError(
        "Custom deserialization is not implemented yet. Please use either msgpack or pickle "
        "serialization methods or set one with custom_deserialize()."
    )


class ShmQueue:
    """A named inter-process FIFO queue with the API of ``shmqueue.ShmQueue`` 0.0.2.

    ``ShmQueue(queue_name, *, logger=None, buffer_size=SYSTEM_PAGESIZE,
    debug_ref_to_file_log=False, allow_pickle=True, track_resources=False)`` creates the
    queue, or attaches to it if it exists (then ``buffer_size`` is ignored). ``buffer_size``
    is rounded up to a multiple of :data:`SYSTEM_PAGESIZE`. See the module docstring for the
    differences from the original.
    """

    def __init__(
        self,
        queue_name: str,
        *,
        logger: logging.Logger | None = None,
        buffer_size: int = SYSTEM_PAGESIZE,
        debug_ref_to_file_log: bool = False,
        allow_pickle: bool = True,
        track_resources: bool = False,
    ) -> None:
        if logger is not None and not isinstance(logger, logging.Logger):
            raise ValueError(f"logger must be of type logging.Logger, instead got {type(logger)}")
        self._logger = logger
        self._debug_ref_to_file_log = False
        if not isinstance(queue_name, str):
            raise ShmQueueTypeError("queue_name must be a string")
        if not isinstance(buffer_size, int):
            raise ShmQueueTypeError("buffer_size must be an integer")
        if buffer_size < 0:
            raise ShmQueueValueError("buffer_size must be a positive integer")
        if buffer_size % SYSTEM_PAGESIZE != 0:
            buffer_size = (buffer_size // SYSTEM_PAGESIZE + 1) * SYSTEM_PAGESIZE
            self._log(
                logging.WARNING,
                "buffer_size is not a multiple of the system pagesize %s. It will be rounded up "
                "to the next multiple of the system pagesize.",
                SYSTEM_PAGESIZE,
            )
        if buffer_size < SYSTEM_PAGESIZE:
            raise ShmQueueValueError(
                f"buffer_size must be a multiple of the system pagesize ({SYSTEM_PAGESIZE} bytes)"
            )
        try:
            # Attaching ignores buffer_size (as the original does): the size applies only
            # if this call creates the queue (no MismatchError for another size).
            self._q: Queue[Any] = Queue._open(
                queue_name,
                capacity=WhenCreating(buffer_size + SYSTEM_PAGESIZE),
                codec=CODEC_MSGPACK,
                allow_pickle=bool(allow_pickle),
                keep_messages=False,  # the original removes the queue at the last shutdown
            )
        except InvalidNameError as e:
            raise ShmQueueValueError(str(e)) from e
        ring = self._q.capacity
        # The creator made the ring one page larger than its buffer_size (see the module doc).
        self._buffer_size = ring - SYSTEM_PAGESIZE if ring > SYSTEM_PAGESIZE else ring
        self._identifier = queue_name
        self._allow_pickle = bool(allow_pickle)
        self._custom_serialize: Callable[[int, Any], Any] = _default_custom_serialize
        self._custom_deserialize: Callable[[int, list[bytes]], Any] = _default_custom_deserialize
        self._uuid = uuid.uuid4().hex
        self._debug_ref_to_file_log = bool(debug_ref_to_file_log)
        self._log(
            logging.INFO,
            "pid %s: opened shared memory queue %s (buffer size %s, %s handle(s) attached)",
            os.getpid(),
            queue_name,
            self._buffer_size,
            self._q.stats().attached,
        )
        if self._debug_ref_to_file_log:
            self._debug_ref_log(DebugRefLogAction.CREATE)

    # -- logging ---------------------------------------------------------------------------

    def _log(self, level: int, msg: str, *args: object) -> None:
        if self._logger is not None:
            self._logger.log(level, msg, *args)

    def _debug_ref_log(self, action: DebugRefLogAction, path: str | None = None) -> None:
        """Records this handle's creation or shutdown and the ref count in a JSON file."""
        directory = os.path.join(path or tempfile.gettempdir(), "shmqueue")
        os.makedirs(directory, exist_ok=True)
        file = os.path.join(directory, f"_ref_log_{self._identifier}.json")
        now = datetime.datetime.now().isoformat()
        refs = self._q.stats().attached if not self._q.closed else 0
        with open(file, "a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            try:
                data: dict[str, dict[str, Any]] = json.loads(f.read() or "{}")
            except json.JSONDecodeError:
                data = {}
            if action is DebugRefLogAction.CREATE:
                data[self._uuid] = {"created": now, "ref_count": refs}
            else:
                data.setdefault(self._uuid, {"ref_count": refs})["shutdown"] = now
            f.seek(0)
            f.truncate()
            json.dump(data, f, indent=4)
        self._log(logging.INFO, "Debug log written to %s", file)

    # -- helpers ---------------------------------------------------------------------------

    def _live(self) -> Queue:
        if self._q.closed:
            raise ShmQueueNotInitializedError(_CLOSED_MSG)
        return self._q

    def __repr__(self) -> str:
        return f"ShmQueue(queue_name={self._identifier}, buffer_size={self._buffer_size})"

    def __reduce__(self) -> tuple[Callable[..., ShmQueue], tuple[Any, ...]]:
        # Travels by name, like shmq.Queue: the receiving process attaches to the same queue.
        return (_reopen, (self._identifier, self._allow_pickle))

    # -- data ------------------------------------------------------------------------------

    def put(
        self,
        data: Any,
        block: bool = True,
        timeout: float | None = None,
        serialization_method: int = SerializationMethods.DEFAULT,
    ) -> None:
        """Puts ``data``, waiting for room if ``block`` (at most ``timeout`` seconds if given;
        ``timeout=0`` does not wait). Raises :class:`ShmQueueFull` when there is no room."""
        if not isinstance(serialization_method, int):
            raise ShmQueueValueError(
                f"serialization method must be of type int, but got {type(serialization_method)}"
            )
        timeout = _timeout(timeout)
        q = self._live()
        try:
            if serialization_method == SerializationMethods.MSGPACK:
                try:
                    packed = _packb(data)
                except (TypeError, ValueError, OverflowError) as e:  # what msgpack cannot encode
                    if not self._allow_pickle:
                        raise ShmQueueSerializationError(
                            f"msgpack cannot serialize {type(data).__name__} and pickle is "
                            "disabled (allow_pickle=False)"
                        ) from e
                    self._log(logging.INFO, "msgpack failed (%s); falling back to pickle", e)
                    self._put_pickled(q, data, block, timeout)
                else:
                    self._check_size(packed)
                    q.put(data, block, timeout, codec=CODEC_MSGPACK)
            elif serialization_method == SerializationMethods.PICKLE:
                self._put_pickled(q, data, block, timeout)
            elif FIRST_USER_CODEC <= serialization_method <= _MAX_CUSTOM_METHOD:
                payload = self._custom_serialize(serialization_method, data)
                self._check_size(payload)  # not bytes-like: the put below refuses it
                _ensure_custom_codec(serialization_method)
                q.put(payload, block, timeout, codec=serialization_method)
            elif serialization_method > _MAX_CUSTOM_METHOD:
                raise ShmQueueValueError(
                    f"custom serialization methods are {FIRST_USER_CODEC}..{_MAX_CUSTOM_METHOD}, "
                    f"got {serialization_method}"
                )
            else:
                raise NotImplementedError(f"Serialization method {serialization_method} is not implemented.")
        except Full as e:
            raise ShmQueueFull(str(e)) from None
        except MessageTooLargeError as e:
            raise ShmQueueValueError(f"data size is larger than overall buffer size: {e}") from None
        except (PickleNotAllowedError, CodecError) as e:
            raise ShmQueueSerializationError(str(e)) from e
        except QueueClosedError:
            raise ShmQueueNotInitializedError(_CLOSED_MSG) from None

    def _check_size(self, serialized: Any) -> None:
        """The documented limit: an item occupies ``SIZE_HEADER + len(serialized)`` bytes and
        one larger than ``buffer_size`` is refused at once (it would never fit the original)."""
        try:
            size = SIZE_HEADER + memoryview(serialized).nbytes
        except TypeError:
            return
        if size > self._buffer_size:
            raise ShmQueueValueError(
                f"data size is larger than overall buffer size: the item occupies {size} bytes"
                f" (SIZE_HEADER + {size - SIZE_HEADER} serialized), buffer_size is {self._buffer_size}"
            )

    def _put_pickled(self, q: Queue, data: Any, block: bool, timeout: float | None) -> None:
        if not self._allow_pickle:
            raise PickleNotAllowedError("pickle is disabled for this queue (allow_pickle=False)")
        try:
            pickled = pickle.dumps(data, protocol=_PICKLE_PROTOCOL)
        except Exception as e:
            raise ShmQueueSerializationError(f"could not pickle a {type(data).__name__}: {e}") from e
        self._check_size(pickled)
        q.put(data, block, timeout, codec=CODEC_PICKLE)

    def put_nowait(self, data: Any, serialization_method: int = SerializationMethods.DEFAULT) -> None:
        """``put(data, block=False)``: raises :class:`ShmQueueFull` if there is no room."""
        self.put(data, False, None, serialization_method)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Removes and returns the oldest item, waiting if ``block`` (at most ``timeout``
        seconds if given; ``timeout=0`` does not wait). Raises :class:`ShmQueueEmpty` when
        there is none, and :class:`ShmQueueDeserializationError` (with the message's bytes)
        when the item cannot be deserialized."""
        q = self._live()
        try:
            obj = q.get(block, _timeout(timeout))
        except Empty as e:
            raise ShmQueueEmpty(str(e)) from None
        except QueueClosedError:
            raise ShmQueueNotInitializedError(_CLOSED_MSG) from None
        except DecodeError as e:
            if e.codec >= FIRST_USER_CODEC and not isinstance(e, PickleNotAllowedError):
                obj = _Custom(e.codec, e.raw)  # this process never put with that method
            elif e.codec == CODEC_MSGPACK:
                obj = self._msgpack_raw_fallback(e)
            else:
                raise ShmQueueDeserializationError(str(e), e.raw, e.codec) from e
        if type(obj) is _Custom:
            try:
                return self._custom_deserialize(obj.method, [obj.raw])
            except Exception as e:
                raise ShmQueueDeserializationError(
                    f"custom deserialization of method {obj.method} failed ({e!r}); the "
                    "message's bytes are in .raw",
                    obj.raw,
                    obj.method,
                ) from e
        return obj

    @staticmethod
    def _msgpack_raw_fallback(e: DecodeError) -> Any:
        # As the original: strings that are not UTF-8 come back as bytes.
        try:
            return importlib.import_module("msgpack").unpackb(e.raw, raw=True, strict_map_key=False)
        except Exception:
            raise ShmQueueDeserializationError(str(e), e.raw, e.codec) from e

    def get_nowait(self) -> Any:
        """``get(block=False)``: raises :class:`ShmQueueEmpty` if there is no item."""
        return self.get(False)

    def custom_serialize(self, callable_function: Callable[[int, Any], Any]) -> None:
        """Sets this handle's serializer for methods >= 1001: ``f(method, data) -> bytes``."""
        self._custom_serialize = callable_function

    def custom_deserialize(self, callable_function: Callable[[int, list[bytes]], Any]) -> None:
        """Sets this handle's deserializer for methods >= 1001: ``f(method, chunks) -> obj``
        where ``chunks`` is a list of bytes objects to join."""
        self._custom_deserialize = callable_function

    def clear(self) -> None:
        """Removes every waiting message (one by one; undecodable ones too)."""
        q = self._live()
        self._log(logging.INFO, "Clearing shared memory queue %s", self._identifier)
        while True:
            try:
                q.get_many(1000, block=False)
            except Empty:
                return
            except DecodeError:
                continue

    # -- state -----------------------------------------------------------------------------

    def qsize(self) -> int:
        """Number of waiting messages."""
        return self._live().qsize()

    def empty(self) -> bool:
        """Whether no message is waiting."""
        return self._live().empty()

    def full(self) -> bool:
        """Whether the ring has no room for a small message now."""
        return self._live().full()

    def max_buffer_size(self) -> int:
        """``buffer_size`` of the queue, rounded up to the page size."""
        self._live()
        return self._buffer_size

    def buffer_occupancy(self) -> int:
        """Bytes the waiting messages occupy in the original's accounting:
        ``SIZE_HEADER`` (8) plus the serialized bytes, per message."""
        messages, payload = self._live()._queued_payload()
        return SIZE_HEADER * messages + payload

    def snapshot(self) -> ShmRefDataSnapshot:
        """``ShmRefDataSnapshot(ref_count, put_pos, get_pos, buffer_size, qsize, same_lap)``;
        positions are those of shmq's ring (see the module docstring)."""
        s = self._live().stats()
        ring = s.capacity
        return ShmRefDataSnapshot(
            ref_count=s.attached,
            put_pos=s.tail % ring,
            get_pos=s.head % ring,
            buffer_size=self._buffer_size,
            qsize=s.depth,
            same_lap=int(s.tail // ring == s.head // ring),
        )

    @property
    def debug_ref_data(self) -> ShmRefDataSnapshot:
        """The same as :meth:`snapshot`."""
        return self.snapshot()

    @property
    def refs(self) -> int:
        """Handles attached to the queue, in every process."""
        return self._live().stats().attached

    @property
    def identifier(self) -> str:
        """The queue's name."""
        return self._identifier

    # -- lifetime --------------------------------------------------------------------------

    def shutdown(self, use_gc: bool = True) -> None:
        """Closes this handle; the last handle to close frees the shared memory. Idempotent."""
        if not self._q.closed:
            self._log(logging.INFO, "closing shared memory queue %s", self._identifier)
            if self._debug_ref_to_file_log:
                self._debug_ref_log(DebugRefLogAction.SHUTDOWN)
            self._q.close()
        if use_gc:
            gc.collect()

    def set_console_handlers(self, register_atexit: bool = False) -> None:
        """Shuts this handle down on SIGINT, SIGTERM and SIGHUP (then runs the previous
        handler, so the signal keeps its effect), when the handle is garbage collected, and,
        with ``register_atexit``, at interpreter exit. Not needed with shmq (a process that
        dies is detached by the others); kept for compatibility. Call it from the main
        thread."""
        ref = weakref.ref(self)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous = signal.getsignal(signum)
            if previous is exit_on_sigterm:  # shmq's stand-in for the default: as the default
                previous = signal.SIG_DFL
            signal.signal(signum, _chained_handler(ref, previous))
        weakref.finalize(self, self._q.close)
        if register_atexit:
            atexit.register(self.shutdown, use_gc=False)

    def add_ref_manually(self, pid: int) -> None:
        """Does nothing: a ``fork()`` child attaches to an inherited queue when it uses it.
        Raises :class:`ShmQueueNotInitializedError` after :meth:`shutdown`, as the original."""
        self._live()
        self._log(logging.INFO, "add_ref_manually(%s): not needed with shmq", pid)

    def reduce_ref_counter(self) -> None:
        """Does nothing: handles detach when closed, collected, or when their process ends.
        Raises :class:`ShmQueueNotInitializedError` after :meth:`shutdown`, as the original
        (which also refused to drop the last reference; there is nothing to drop here)."""
        self._live()
        self._log(logging.INFO, "reduce_ref_counter(): not needed with shmq")


_Handler = Callable[[int, FrameType | None], Any] | int | None


def _chained_handler(ref: weakref.ref[ShmQueue], previous: _Handler) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        q = ref()
        if q is not None:
            q.shutdown(use_gc=False)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return handler


def _reopen(name: str, allow_pickle: bool) -> ShmQueue:
    return ShmQueue(name, allow_pickle=allow_pickle)


__all__ = [
    "SIZE_HEADER",
    "SYSTEM_PAGESIZE",
    "DebugRefLogAction",
    "SerializationMethods",
    "ShmQueue",
    "ShmRefDataSnapshot",
    "exceptions",
]
