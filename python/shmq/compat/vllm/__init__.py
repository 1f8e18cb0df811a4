"""vLLM's shared-memory broadcast ``MessageQueue`` on shmq's broadcast ring.

vLLM (``vllm/distributed/device_communicators/shm_broadcast.py``) sends every scheduler step
from one writer process to its worker processes through a ``MessageQueue``: a shared-memory
ring for the readers on the writer's node ("local" readers) and a ZeroMQ socket for the
others ("remote" readers). This module has the same public surface and semantics on top of
:class:`shmq.Broadcast`; code that uses it moves by changing one import::

    from shmq.compat.vllm import MessageQueue
    # was: from vllm.distributed.device_communicators.shm_broadcast import MessageQueue

    writer = MessageQueue(n_reader=1, n_local_reader=1)   # in the writer process
    handle = writer.export_handle()                       # picklable: send it to the readers
    reader = MessageQueue.create_from_handle(handle, 0)   # in each reader (here rank 0)
    writer.wait_until_ready()                             # collective: every process calls it
    reader.wait_until_ready()
    writer.enqueue({"step": 1})
    assert reader.dequeue(timeout=5) == {"step": 1}
    reader.shutdown()
    writer.shutdown()

Kept from the original: ``MessageQueue(n_reader, n_local_reader, local_reader_ranks=None,
max_chunk_bytes=24 MiB, max_chunks=10, connect_ip=None)`` (``local_reader_ranks=None`` means
ranks ``0..n_local_reader-1``), the :class:`Handle` dataclass and its fields,
``export_handle()``, ``create_from_process_group(pg, max_chunk_bytes, max_chunks,
writer_rank=0, external_writer_handle=None, blocking=True)``, ``create_from_handle(handle, rank)`` (a rank in
``handle.local_reader_ranks`` is a local reader, any other rank a remote one), the roles
(``_is_writer``, ``_is_local_reader``, ``_is_remote_reader``, ``local_reader_rank``),
``wait_until_ready()`` as a collective handshake (the writer waits until all ``n_reader``
readers are connected, then sends READY), ``enqueue(obj, timeout=None)`` on the writer only,
``dequeue(timeout=None, indefinite=False)`` on readers only, ``broadcast_object(obj=None)``,
``shutdown()`` (a reader blocked in ``dequeue`` in another thread raises
``RuntimeError("cancelled")``), the builtin :class:`TimeoutError` on timeouts, pickle protocol
5 with out-of-band buffers of 1 MiB or more (as the original), and remote readers on a pyzmq
XPUB socket bound on ``connect_ip`` (IPv6 addresses included, ``Handle.remote_addr_ipv6``).

How it maps: the writer creates one :class:`shmq.Broadcast` (``policy="block"``, ``raw``
codec) of ``(max_chunk_bytes + 48) * (max_chunks + 1)`` bytes (room for ``max_chunks`` chunks
of ``acquire_write`` besides the record each reader holds; at least 4 KiB); each local reader is one
:class:`shmq.Subscriber` of it. A message is one ring record: its pickle as written, or, with
out-of-band buffers, a 16-byte header, the main pickle, the buffers and their lengths. Local
readers read records in place (``Subscriber.get(copy=False)``) and unpickle them straight
from the shared memory. Remote readers receive the same bytes over ZeroMQ.
``Handle.buffer_handle`` is ``(n_local_reader, max_chunk_bytes, max_chunks, ring name)``.

Differences from the original
-----------------------------
- **No busy spin.** A waiting reader or writer spins about 50 µs, then sleeps on a futex and
  is woken by the next message: an idle reader uses no CPU. The original's readers
  ``sched_yield`` in a loop for a second after every message (100 % of a core) before they
  park on a ZeroMQ notification. (``test_fixed_idle_reader_uses_no_cpu``)
- **A dead local reader does not stall the writer.** A reader process that dies (even by
  ``kill -9``) is evicted from the ring within milliseconds and the writer goes on; the
  original's writer waits forever for the dead reader's flag.
  (``test_fixed_killed_local_reader_does_not_stall_the_writer``)
- **Slow readers.** The ring holds about ``max_chunk_bytes * (max_chunks + 1)`` bytes of messages, not
  ``max_chunks`` messages: a slow reader stalls the writer only once that many bytes wait
  for it (thousands of small messages instead of 10). It still stalls it then (the ring is
  lossless, as the original's); ``enqueue(timeout=...)`` raises :class:`TimeoutError`.
- **Messages larger than a chunk stay in shared memory.** A message up to the ring's size
  is one record; a larger one is split into fragments of at most a quarter of the ring,
  published in order (readers reassemble them; the writer's ``timeout`` covers the whole
  message; readers copy the fragments straight from the ring into the message). The
  original sent every message of ``max_chunk_bytes`` or more through a ZeroMQ socket, even
  to local readers. (``test_local_and_remote_readers_across_processes``,
  ``test_fixed_oversized_message_in_fragments``) The ring's side segments
  (``allow_large=True``) were measured instead: 2.5-3.5x slower for a message 4x the ring
  (a new segment to fault in per message) and, as the ring removes a side segment only when
  it reclaims its record (when it needs room), read messages would stay in ``/dev/shm``.
- **Late local readers.** A local reader created after the writer's ``wait_until_ready``
  returned can join: its ``wait_until_ready`` returns at once and it receives every message
  enqueued after it was created (not earlier ones). The original's readers could not join
  late. Remote readers cannot (ZeroMQ subscriptions, as the original).
  (``test_fixed_late_local_reader_joins``)
- **Messages enqueued before the handshake** reach only the local readers already created
  (a subscription receives what is published after it was made); the original's ring kept
  them for every reader rank. Call ``wait_until_ready`` first, as vLLM does.
- **Out-of-band buffers are private copies.** A buffer of 1 MiB or more (a
  ``pickle.PickleBuffer``, a NumPy array) travels out of band, straight into the ring; a
  local reader's object is rebuilt on one copy of it out of the ring (a writable
  ``bytearray``; a NumPy array is writeable), so what ``dequeue`` returns stays valid for
  ever. The original's local readers got writable views of its ring, which its writer could
  overwrite once it came round again (``max_chunks`` messages later, whether or not the
  reader dequeued again); it copied only torch tensors (here tensors are pickled in band by
  torch's reducer: copies). Views of the ring, kept past the next read, would either show
  another message's bytes or (shmq's rule for lent messages) keep it held, so the writer
  would wait for it once the ring came round. Remote readers and messages larger than the ring (reassembled in
  private memory) get the same copies, so every reader sees the same types.
- **Remote readers** work as the original's: pyzmq ``XPUB``/``SUB`` sockets, with ZeroMQ's
  publish semantics (a remote reader that falls more than the high-water mark behind, 1000
  messages, loses messages; a dead one is dropped). ``connect_ip=None`` binds on
  ``127.0.0.1`` (the original used the host's outward IP address): pass ``connect_ip`` for
  readers on other hosts. pyzmq is imported only when a queue has remote readers (install
  the ``shmq[vllm]`` extra or ``pyzmq>=25``).
- **Errors.** Wrong arguments raise :class:`ValueError` (the original asserted);
  ``enqueue`` on a reader raises :class:`AssertionError` and ``dequeue`` on the writer
  ``RuntimeError("Only readers can dequeue")``, as the original. After ``shutdown()``,
  ``enqueue``, ``dequeue`` and ``wait_until_ready`` raise ``RuntimeError("cancelled")``
  (the original's ``shutdown`` only woke idle local readers), and a writer blocked in
  ``enqueue`` in another thread is cancelled too. ``wait_until_ready`` takes an optional
  ``timeout`` (:class:`TimeoutError`); during the handshake the writer polls the ring's
  subscriber count (every 1-10 ms, setup only).
- **Lifetime.** The ring is removed when the last process detaches (``shutdown()``, exit or
  death), never while a reader still uses it; the original's creator unlinked it when
  garbage-collected. The writer pickles into one reused scratch buffer, which keeps the
  size of the largest message sent.
- **create_from_process_group** works without torch: besides a ``torch.distributed``
  ``ProcessGroup`` (when torch is installed) it takes any group with vLLM's
  ``StatelessProcessGroup`` surface (``rank``, ``world_size``, ``broadcast_obj``). The ranks
  on the writer's node come from vLLM's ``in_the_same_node_as`` when vLLM is installed, else
  from the group's own ``in_the_same_node_as(source_rank)``, else from a shared-memory probe
  (the writer creates a queue under a random name; a rank that can open it shares the node),
  whose results are gathered with the group's ``all_gather_obj`` or, lacking it, one
  ``broadcast_obj`` per rank. (``test_create_from_process_group_*``)
- **acquire_write/acquire_read** lend a chunk of ``max_chunk_bytes`` bytes as the
  original's, but ``acquire_write``'s chunk is the writer's own buffer and the whole chunk is
  copied into the ring when its block ends (the original's writer wrote into the ring
  itself), so it costs a copy of ``max_chunk_bytes`` per message; prefer ``enqueue``. The
  chunk keeps what earlier blocks wrote, as the original's ring did; an exception in the
  block sends nothing. ``acquire_read`` lends a chunk of ``acquire_write`` read-only, in the
  ring itself; a message of ``enqueue`` without out-of-band buffers in the original's layout
  (byte 0 is 0, then the pickle; a copy); any other message it leaves for ``dequeue``
  (``RuntimeError``), and ``dequeue`` reads a chunk written in that layout. A chunk reaches
  local readers only (as the original's). (``test_acquire_*``)
- **Not implemented:** ``create_from_process_group_single_reader`` (it needs
  ``torch.distributed`` and a GPU count), and the shared-memory tensor arena
  (``enable_shm_tensor_arena`` is accepted and ignored; CPU tensors are pickled by torch's
  own reducer, in band). Waits longer than 60 s are logged at INFO level like the
  original's (not with ``indefinite=True``).
"""

from __future__ import annotations

import ipaddress
import logging
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from ... import Broadcast, Subscriber
from ..._errors import Empty, Full, QueueClosedError
from ._groups import _Group, _same_node_as
from ._remote import _Cancelled, _deadline, _remaining, _Zmq
from ._wire import OOB_MIN_BYTES as OOB_MIN_BYTES  # public: the out-of-band threshold
from ._wire import (
    _CHUNK,
    _FIRST,
    _HEADER,
    _MORE,
    _NOTHING,
    _PICKLE,
    _READY,
    _READY_RECORD,
    _decode,
    _Encoder,
)

__all__ = ["Handle", "MessageQueue"]

logger = logging.getLogger(__name__)

#: Default size of one chunk of the original's ring (vLLM: 24 MiB).
DEFAULT_MAX_CHUNK_BYTES: Final = 24 * 1024 * 1024
#: Default number of chunks (vLLM: 10).
DEFAULT_MAX_CHUNKS: Final = 10
#: Ring bytes a chunk of ``acquire_write`` takes besides its ``max_chunk_bytes``: the ring's
#: record header, this module's header and the padding to 16 (so ``max_chunks`` chunks fit).
CHUNK_OVERHEAD: Final = 48
#: Log a long wait every this many seconds (the original's VLLM_RINGBUFFER_WARNING_INTERVAL).
WARNING_INTERVAL: Final = 60.0



@dataclass
class Handle:
    """What a reader needs to connect to a writer's queue (picklable), as vLLM's ``Handle``.

    ``buffer_handle`` is ``(n_local_reader, max_chunk_bytes, max_chunks, ring name)``;
    ``local_subscribe_addr``, ``local_notify_addr`` and ``tensor_arena_handle`` are always
    ``None`` (local readers need no socket here).
    """

    local_reader_ranks: list[int] = field(default_factory=list)
    buffer_handle: tuple[int, int, int, str] | None = None
    local_subscribe_addr: str | None = None
    local_notify_addr: str | None = None
    remote_subscribe_addr: str | None = None
    remote_addr_ipv6: bool = False
    tensor_arena_handle: tuple[int, int, int, str] | None = None


class MessageQueue:
    """One writer broadcasting to ``n_reader`` readers: ``n_local_reader`` of them read a
    shared-memory ring, the others a ZeroMQ socket. vLLM's ``MessageQueue`` surface (see the
    module documentation for the differences).

    ``MessageQueue(n_reader, n_local_reader, local_reader_ranks=None,
    max_chunk_bytes=24 MiB, max_chunks=10, connect_ip=None)`` creates the writer; readers
    are made with :meth:`create_from_handle`.
    """

    handle: Handle
    n_local_reader: int
    n_remote_reader: int
    local_reader_rank: int
    shutting_down: bool
    _is_writer: bool
    _is_local_reader: bool
    _is_remote_reader: bool
    _ring: Broadcast | None
    _sub: Subscriber | None
    _zmq: _Zmq | None
    _encoder: _Encoder

    def __init__(
        self,
        n_reader: int,
        n_local_reader: int,
        local_reader_ranks: list[int] | None = None,
        max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
        max_chunks: int = DEFAULT_MAX_CHUNKS,
        connect_ip: str | None = None,
        enable_shm_tensor_arena: bool = False,
    ) -> None:
        if not 0 <= n_local_reader <= n_reader:
            raise ValueError(f"need 0 <= n_local_reader <= n_reader, got {n_local_reader} and {n_reader}")
        if max_chunk_bytes <= 0 or max_chunks <= 0:
            raise ValueError("max_chunk_bytes and max_chunks must be positive")
        if local_reader_ranks is None:
            local_reader_ranks = list(range(n_local_reader))
        elif len(local_reader_ranks) != n_local_reader:
            raise ValueError(
                f"local_reader_ranks has {len(local_reader_ranks)} ranks, n_local_reader is {n_local_reader}"
            )
        self._init_state(Handle(local_reader_ranks=list(local_reader_ranks)))
        self._is_writer = True
        self._encoder = _Encoder()
        self.n_local_reader = n_local_reader
        self.n_remote_reader = n_reader - n_local_reader

        if n_local_reader > 0:
            # max_chunks chunks of acquire_write fit besides the one each reader holds (a
            # subscription keeps its last record until its next read).
            ring = (max_chunk_bytes + CHUNK_OVERHEAD) * (max_chunks + 1)
            self._ring = Broadcast(None, capacity=ring, codec="raw")
            self.handle.buffer_handle = (n_local_reader, max_chunk_bytes, max_chunks, self._ring.name)
        if self.n_remote_reader > 0:
            ip = connect_ip or "127.0.0.1"
            if ip.startswith("[") and ip.endswith("]"):
                ip = ip[1:-1]
            try:
                ipv6 = ipaddress.ip_address(ip).version == 6
            except ValueError:  # a host name
                ipv6 = False
            self._zmq = _Zmq(self, "xpub")
            sock = self._zmq.socket
            # Every subscription is delivered to wait_until_ready (not only the first).
            sock.setsockopt(self._zmq.zmq.XPUB_VERBOSE, 1)
            if ipv6:
                sock.setsockopt(self._zmq.zmq.IPV6, 1)
                ip = f"[{ip}]"
            sock.bind(f"tcp://{ip}:*")
            port = sock.getsockopt(self._zmq.zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1]
            self.handle.remote_subscribe_addr = f"tcp://{ip}:{port}"
            self.handle.remote_addr_ipv6 = ipv6
        logger.debug("shmq vLLM message queue handle: %s", self.handle)

    def _init_state(self, handle: Handle) -> None:
        self.handle = handle
        self._is_writer = False
        self._is_local_reader = False
        self._is_remote_reader = False
        self.local_reader_rank = -1
        self.n_local_reader = 0
        self.n_remote_reader = 0
        self.shutting_down = False
        self._ring = None
        self._sub = None
        self._zmq = None
        self._late = False  # a local reader that joined after the handshake
        self._pending: deque[bytes] = deque()  # records a reader took before READY
        self._partial: bytearray | None = None  # fragments of a large record, reassembled
        self._filled = 0
        self._next_fragment = 0
        self._fragments = 0
        self._chunk: bytearray | None = None  # the writer's chunk for acquire_write
        self._classic: bytearray | None = None  # a reader's chunk for acquire_read of enqueue()

    def export_handle(self) -> Handle:
        """The picklable :class:`Handle` readers connect with."""
        return self.handle

    @staticmethod
    def create_from_handle(handle: Handle, rank: int) -> MessageQueue:
        """The reader of rank ``rank``: local (shared memory) if ``rank`` is in
        ``handle.local_reader_ranks``, remote (ZeroMQ) otherwise."""
        self = MessageQueue.__new__(MessageQueue)
        self._init_state(handle)
        if rank in handle.local_reader_ranks:
            if handle.buffer_handle is None:
                raise ValueError("the handle has local reader ranks but no ring")
            self._is_local_reader = True
            self.local_reader_rank = handle.local_reader_ranks.index(rank)
            self._sub = Subscriber(handle.buffer_handle[3])
            # Position 0: nothing was published before we subscribed, so READY is still to
            # come. Otherwise the writer's handshake is over (READY is its first record).
            self._late = self._sub.info().position != 0
        else:
            if handle.remote_subscribe_addr is None:
                raise ValueError(f"rank {rank} is not a local reader and the queue has no remote readers")
            self._is_remote_reader = True
            self._zmq = _Zmq(self, "sub")
            sock = self._zmq.socket
            sock.setsockopt_string(self._zmq.zmq.SUBSCRIBE, "")
            if handle.remote_addr_ipv6:
                sock.setsockopt(self._zmq.zmq.IPV6, 1)
            sock.connect(handle.remote_subscribe_addr)
        return self

    @staticmethod
    def create_from_process_group(
        pg: Any,
        max_chunk_bytes: int,
        max_chunks: int,
        writer_rank: int = 0,
        external_writer_handle: Handle | None = None,
        blocking: bool = True,
    ) -> MessageQueue:
        """Collective, as vLLM's: every rank of ``pg`` calls it. Rank ``writer_rank`` (a rank
        in the group) creates the writer, with the ranks on its node as local readers and the
        others remote, and broadcasts its handle; every other rank becomes a reader of it.
        With ``external_writer_handle``, the writer rank joins that queue instead of creating
        one (vLLM's data-parallel case). ``blocking``: ends with :meth:`wait_until_ready`.

        ``pg`` is a ``torch.distributed.ProcessGroup`` (when torch is installed) or any
        object with vLLM's ``StatelessProcessGroup`` surface: ``rank``, ``world_size`` and
        ``broadcast_obj(obj, src)``. Which ranks share the writer's node: vLLM's
        ``in_the_same_node_as`` when vLLM is installed, else the group's own
        ``in_the_same_node_as(source_rank)`` if it has one, else a shared-memory probe."""
        group = _Group(pg)
        if not 0 <= writer_rank < group.world_size:
            raise ValueError(f"writer_rank must be a rank of the group (0..{group.world_size - 1}), got {writer_rank}")
        same_node = _same_node_as(pg, group, writer_rank)
        if group.rank == writer_rank:
            if external_writer_handle is not None:
                mq = MessageQueue.create_from_handle(external_writer_handle, group.rank)
            else:
                local = [r for r, here in enumerate(same_node) if here and r != writer_rank]
                mq = MessageQueue(
                    n_reader=group.world_size - 1,
                    n_local_reader=len(local),
                    local_reader_ranks=local,
                    max_chunk_bytes=max_chunk_bytes,
                    max_chunks=max_chunks,
                )
            group.broadcast(mq.export_handle(), writer_rank)
        else:
            handle = group.broadcast(None, writer_rank)
            if not isinstance(handle, Handle):
                raise TypeError(f"rank {writer_rank} broadcast a {type(handle).__name__}, not a Handle")
            mq = MessageQueue.create_from_handle(handle, group.rank)
        if blocking:
            mq.wait_until_ready()
        return mq

    # -- handshake -----------------------------------------------------------------------

    def wait_until_ready(self, timeout: float | None = None) -> None:
        """Collective: the writer waits until every reader is connected and sends READY;
        each reader waits for READY. ``timeout`` (an addition) raises :class:`TimeoutError`."""
        deadline = _deadline(timeout)
        try:
            if self._is_writer:
                self._writer_handshake(deadline)
            elif self._is_local_reader:
                self._local_handshake(deadline)
            else:
                frame = self._zmq_side().recv(deadline)
                if bytes(frame.buffer) != _READY_RECORD:
                    raise RuntimeError("the writer sent data before READY")
        except (_Cancelled, QueueClosedError):
            raise RuntimeError("cancelled") from None

    def _writer_handshake(self, deadline: float | None) -> None:
        if self._ring is not None:
            delay = 0.001
            while len(self._ring.stats().subscribers) < self.n_local_reader:
                if self.shutting_down:
                    raise _Cancelled
                left = _remaining(deadline)
                if left == 0.0:
                    raise TimeoutError("local readers did not all connect in time")
                time.sleep(delay if left is None else min(delay, left))
                delay = min(delay * 2, 0.01)
            self._publish(_READY_RECORD, deadline)
        if self.n_remote_reader > 0:
            z = self._zmq_side()
            subscribed = 0
            while subscribed < self.n_remote_reader:
                msg = z.recv(deadline)
                if bytes(msg.buffer[:1]) == b"\x01":  # a subscription (b"\x00": unsubscribe)
                    subscribed += 1
            z.send(_READY_RECORD)

    def _local_handshake(self, deadline: float | None) -> None:
        if self._late:
            return
        while True:
            record = memoryview(self._get(deadline))
            if record[0] == _READY:
                return
            self._pending.append(bytes(record))  # the writer enqueued before its handshake

    # -- writer --------------------------------------------------------------------------

    def enqueue(self, obj: Any, timeout: float | None = None) -> None:
        """Sends ``obj`` to every reader; waits for room in the ring at most ``timeout``
        seconds (:class:`TimeoutError`). Writer only."""
        if not self._is_writer:
            raise AssertionError("Only writers can enqueue")
        if self.shutting_down:
            raise RuntimeError("cancelled")
        deadline = _deadline(timeout)
        with self._encoder.lock:
            head, oob = self._encoder.encode_split(obj)
            size = len(head) + sum(raw.nbytes for raw in oob) + 8 * len(oob)
            ring = self._ring
            if oob and ring is not None and self.n_remote_reader == 0 and size <= ring.max_message_size:
                # Local readers only: the buffers go straight into the ring (shmq's reserve,
                # as any put of an out-of-band pickle), one copy instead of two.
                try:
                    self._publish_parts(head, oob, size, deadline)
                except (_Cancelled, QueueClosedError):
                    raise RuntimeError("cancelled") from None
                finally:
                    head.release()
                return
            record = self._encoder.join(head, oob)
            try:
                if self._ring is not None:
                    if len(record) <= self._ring.max_message_size:
                        self._publish(record, deadline)
                    else:
                        self._publish_fragments(record, deadline)
                if self.n_remote_reader > 0:
                    self._zmq_side().send(record)
            except (_Cancelled, QueueClosedError):
                raise RuntimeError("cancelled") from None
            finally:
                record.release()

    def _publish(self, record: Any, deadline: float | None) -> None:
        assert self._ring is not None
        while True:
            left = _remaining(deadline)
            wait = WARNING_INTERVAL if left is None else min(left, WARNING_INTERVAL)
            try:
                self._ring.publish(record, timeout=wait)
                return
            except Full:
                if left is not None and left <= WARNING_INTERVAL:
                    raise TimeoutError("no room in the ring: a local reader is behind") from None
                logger.info("enqueue has waited %.0f s for a slow local reader", WARNING_INTERVAL)

    def _publish_parts(self, head: memoryview, oob: list[memoryview], size: int, deadline: float | None) -> None:
        """Publishes the record ``head`` + buffers + lengths, laid out in a reservation."""
        assert self._ring is not None
        while True:
            left = _remaining(deadline)
            wait = WARNING_INTERVAL if left is None else min(left, WARNING_INTERVAL)
            try:
                with self._ring.reserve(size, timeout=wait) as buf:
                    pos = len(head)
                    buf[:pos] = head
                    for raw in oob:
                        buf[pos : pos + raw.nbytes] = raw
                        pos += raw.nbytes
                    struct.pack_into(f"<{len(oob)}Q", buf, pos, *(raw.nbytes for raw in oob))
                return
            except Full:
                if left is not None and left <= WARNING_INTERVAL:
                    raise TimeoutError("no room in the ring: a local reader is behind") from None
                logger.info("enqueue has waited %.0f s for a slow local reader", WARNING_INTERVAL)

    def _publish_fragments(self, record: memoryview, deadline: float | None) -> None:
        assert self._ring is not None
        size = min(self._ring.max_message_size, self._ring.capacity // 4) - _HEADER.size
        count = -(-len(record) // size)
        for i in range(count):
            start = i * size
            header = _HEADER.pack(_FIRST, count, len(record)) if i == 0 else _HEADER.pack(_MORE, i, start)
            self._publish(b"".join((header, record[start : start + size])), deadline)

    @contextmanager
    def acquire_write(self, timeout: float | None = None) -> Iterator[memoryview]:
        """vLLM's: lends a writable chunk of ``max_chunk_bytes`` bytes; when the block ends
        the whole chunk goes to the local readers (read with :meth:`acquire_read`, or with
        :meth:`dequeue` if it holds 0 then a pickle, as the original's ``enqueue`` writes).
        Waits at most ``timeout`` seconds for room (:class:`TimeoutError`). An exception in
        the block sends nothing. Remote readers get nothing (as the original)."""
        if not self._is_writer:
            raise AssertionError("Only writers can acquire write")
        if self._ring is None or self.handle.buffer_handle is None:
            raise RuntimeError("acquire_write lends a chunk of the shared-memory ring; this queue has no local readers")
        if self.shutting_down:
            raise RuntimeError("cancelled")
        deadline = _deadline(timeout)
        with self._encoder.lock:
            if self._chunk is None:
                # The chunk keeps what the last block wrote, as the original's ring does.
                self._chunk = bytearray(_HEADER.size + self.handle.buffer_handle[1])
                _HEADER.pack_into(self._chunk, 0, _CHUNK, 0, self.handle.buffer_handle[1])
            record = memoryview(self._chunk)
            try:
                with record[_HEADER.size :] as chunk:
                    yield chunk
                if len(record) <= self._ring.max_message_size:
                    self._publish(record, deadline)
                else:
                    self._publish_fragments(record, deadline)
            except (_Cancelled, QueueClosedError):
                raise RuntimeError("cancelled") from None
            finally:
                record.release()

    # -- readers -------------------------------------------------------------------------

    @contextmanager
    def acquire_read(self, timeout: float | None = None, indefinite: bool = False) -> Iterator[memoryview]:
        """vLLM's: lends the next chunk, read-only, for the time of the block (local readers
        only). A chunk of :meth:`acquire_write` is lent as written, in the ring itself; a
        message of :meth:`enqueue` without out-of-band buffers in the original's layout (0,
        then the pickle; copied). Any other message is left for :meth:`dequeue`
        (``RuntimeError``). Waits at most ``timeout`` seconds (:class:`TimeoutError`)."""
        if not self._is_local_reader:
            raise AssertionError("Only readers can acquire read")
        deadline = _deadline(timeout)
        try:
            while True:
                record = self._pending.popleft() if self._pending else self._get(deadline, not indefinite)
                whole = self._complete(memoryview(record))
                if whole is not None and whole[0] != _READY:
                    break
        except (_Cancelled, QueueClosedError):
            raise RuntimeError("cancelled") from None
        if whole[0] == _CHUNK:
            with whole[_HEADER.size :].toreadonly() as chunk:
                yield chunk
            return
        if whole[0] != _PICKLE:
            self._pending.appendleft(bytes(whole))  # not lost: the next dequeue returns it
            raise RuntimeError("the next message has out-of-band buffers: read it with dequeue()")
        assert self.handle.buffer_handle is not None
        size = self.handle.buffer_handle[1]
        if len(whole) + 1 > size:
            self._pending.appendleft(bytes(whole))
            raise RuntimeError("the next message is larger than a chunk: read it with dequeue()")
        if self._classic is None:
            self._classic = bytearray(size)
        self._classic[0] = 0
        self._classic[1 : 1 + len(whole)] = whole
        with memoryview(self._classic).toreadonly() as chunk:
            yield chunk

    def dequeue(self, timeout: float | None = None, indefinite: bool = False) -> Any:
        """The next object, waiting at most ``timeout`` seconds (:class:`TimeoutError`).
        Readers only. ``indefinite=True`` only silences the long-wait log message."""
        if not (self._is_local_reader or self._is_remote_reader):
            raise RuntimeError("Only readers can dequeue")
        deadline = _deadline(timeout)
        try:
            while True:
                if self._is_remote_reader:
                    record: Any = self._zmq_side().recv(deadline).buffer
                    obj = _decode(memoryview(record))
                else:
                    record = self._pending.popleft() if self._pending else self._get(deadline, not indefinite)
                    obj = self._assemble(memoryview(record))
                if obj is not _NOTHING:
                    return obj
        except (_Cancelled, QueueClosedError):
            raise RuntimeError("cancelled") from None

    def _get(self, deadline: float | None, warn: bool = False) -> Any:
        """The next record: a ``MessageView`` of the ring, valid until the next read (or
        ``bytes`` for a record the ring cannot lend)."""
        sub = self._sub
        if sub is None or self.shutting_down:
            raise _Cancelled
        while True:
            left = _remaining(deadline)
            wait = WARNING_INTERVAL if left is None else min(left, WARNING_INTERVAL)
            try:
                return sub.get(timeout=wait, copy=False)
            except Empty:
                if left is not None and left <= WARNING_INTERVAL:
                    raise TimeoutError from None
                if warn:
                    logger.info("dequeue has waited %.0f s for the writer", WARNING_INTERVAL)

    def _assemble(self, record: memoryview) -> Any:
        """The object of ``record``, or ``_NOTHING`` if it is a fragment of an unfinished
        record or the READY of the handshake."""
        whole = self._complete(record)
        return _NOTHING if whole is None else _decode(whole)

    def _complete(self, record: memoryview) -> memoryview | None:
        """The whole record ``record`` is or completes, or ``None`` while fragments of a
        large record are missing. Fragments are copied straight from the ring into the
        reassembled record."""
        kind = record[0]
        if kind == _MORE:
            part = self._partial
            if part is None:
                return None  # joined in the middle of a large record
            _, index, offset = _HEADER.unpack_from(record)
            if index != self._next_fragment or offset != self._filled:
                self._partial = None  # the writer gave up on that record (timeout)
                return None
            n = len(record) - _HEADER.size
            part[self._filled : self._filled + n] = record[_HEADER.size :]
            self._filled += n
            self._next_fragment += 1
            if self._next_fragment < self._fragments:
                return None
            self._partial = None
            return memoryview(part)
        self._partial = None  # any other record ends an unfinished one (the writer gave up)
        if kind == _FIRST:
            _, count, total = _HEADER.unpack_from(record)
            part = bytearray(total)
            n = len(record) - _HEADER.size
            part[:n] = record[_HEADER.size :]
            self._partial, self._filled, self._fragments, self._next_fragment = part, n, count, 1
            return None
        return record

    # -- both ----------------------------------------------------------------------------

    def broadcast_object(self, obj: Any = None) -> Any:
        """The writer enqueues ``obj`` and returns it; a reader returns what it dequeues."""
        if self._is_writer:
            self.enqueue(obj)
            return obj
        return self.dequeue()

    def shutdown(self) -> None:
        """Closes this process's side: a thread blocked in ``dequeue`` (or ``enqueue``,
        ``wait_until_ready``) raises ``RuntimeError("cancelled")``, and so do later calls.
        The ring is removed once the writer and every local reader have shut down (or
        exited)."""
        self.shutting_down = True
        if self._sub is not None:
            self._sub.close()
        if self._ring is not None:
            self._ring.close()
        if self._zmq is not None:
            self._zmq.cancel()

    def _zmq_side(self) -> _Zmq:
        if self._zmq is None:
            raise _Cancelled
        return self._zmq

    def __repr__(self) -> str:
        role = "writer" if self._is_writer else "local reader" if self._is_local_reader else "remote reader"
        return f"<shmq.compat.vllm.MessageQueue {role} {self.handle!r}>"
