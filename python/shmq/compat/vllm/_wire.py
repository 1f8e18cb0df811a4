"""The records of :mod:`shmq.compat.vllm`'s ring: their layout, the writer's encoder and the
readers' decoders."""

from __future__ import annotations

import io
import pickle
import struct
import threading
from typing import Any, Final

#: Pickle buffers of at least this many bytes travel out of band (the original's threshold).
OOB_MIN_BYTES: Final = 1024 * 1024

# A record is one of:
#   - a pickle (protocol 5, so its first byte is PROTO, 0x80): a message without
#     out-of-band buffers, published as the pickler wrote it;
#   - _OOB: a 16-byte header (kind, buffer count, length of the main pickle; little endian),
#     the main pickle, the out-of-band buffers, then one u64 length per buffer;
#   - _FIRST: (fragment count, length of the whole record) then its first bytes, and _MORE:
#     (fragment index, offset in the whole record) then the next bytes: a record larger than
#     the ring, in fragments;
#   - _READY: the handshake's end (a header with count and length 0);
#   - _CHUNK: (0, max_chunk_bytes) then a whole chunk written through acquire_write.
_HEADER: Final = struct.Struct("<B3xIQ")
_OOB: Final = 0
_FIRST: Final = 1
_MORE: Final = 2
_READY: Final = 3
_CHUNK: Final = 4
_PICKLE: Final = pickle.PROTO[0]
_READY_RECORD: Final = _HEADER.pack(_READY, 0, 0)
_EMPTY_HEADER: Final = bytes(_HEADER.size)
_NOTHING: Final = object()


class _Encoder:
    """Writes records (the pickle at protocol 5 alone, or with its out-of-band buffers behind
    an ``_OOB`` header) into one scratch buffer reused by every message of the writer: no
    allocation per message, and no regrowth of the buffer (which costs page faults for large
    ones)."""

    def __init__(self) -> None:
        self.bio = io.BytesIO()
        self.oob: list[memoryview] = []
        self.pickler = pickle.Pickler(self.bio, protocol=5, buffer_callback=self._buffer)
        # Re-entrant: an enqueue inside an acquire_write block of the same thread goes on.
        self.lock = threading.RLock()

    def _buffer(self, buf: pickle.PickleBuffer) -> bool:
        try:
            raw = buf.raw()
        except BufferError:  # not contiguous: pickle decides (in band)
            return True
        if raw.nbytes < OOB_MIN_BYTES:
            return True
        self.oob.append(raw)
        return False

    def encode(self, obj: Any) -> memoryview:
        """The record of ``obj``: a view of the scratch buffer, to ``release()`` after use
        (with ``lock`` held)."""
        head, oob = self.encode_split(obj)
        return self.join(head, oob)

    def encode_split(self, obj: Any) -> tuple[memoryview, list[memoryview]]:
        """The record of ``obj`` in parts, its out-of-band buffers not copied yet: the
        header and main pickle (a view of the scratch buffer) and the buffers (empty for a
        plain pickle, then the first part is the whole record). Call with ``lock`` held."""
        bio, oob = self.bio, self.oob
        bio.seek(0)
        bio.write(_EMPTY_HEADER)  # room for the header, used only with out-of-band buffers
        try:
            self.pickler.dump(obj)
            if not oob:
                return bio.getbuffer()[_HEADER.size : bio.tell()], []
            head = bio.getbuffer()[: bio.tell()]
            _HEADER.pack_into(head, 0, _OOB, len(oob), bio.tell() - _HEADER.size)
            return head, list(oob)
        finally:
            oob.clear()
            self.pickler.clear_memo()  # do not keep the message's objects alive

    def join(self, head: memoryview, oob: list[memoryview]) -> memoryview:
        """The whole record of parts from :meth:`encode_split` (the buffers copied behind
        the main pickle in the scratch buffer)."""
        if not oob:
            return head
        end = len(head)
        head.release()
        bio = self.bio
        bio.seek(end)
        for raw in oob:
            bio.write(raw)
        bio.write(struct.pack(f"<{len(oob)}Q", *(raw.nbytes for raw in oob)))
        return bio.getbuffer()[: bio.tell()]


def _decode(record: memoryview) -> Any:
    """The object of a record, or ``_NOTHING`` for the handshake's READY. Out-of-band
    buffers are rebuilt on one copy each (a ``bytearray``): a record of the ring is lent
    only until the next read, and every reader (local, remote, of a reassembled record)
    gets the same types."""
    kind = record[0]
    if kind == _PICKLE:
        return pickle.loads(record)
    if kind == _CHUNK:
        return _decode_chunk(record[_HEADER.size :])
    if kind != _OOB:
        return _NOTHING
    _, count, main_len = _HEADER.unpack_from(record)
    start = _HEADER.size
    lengths = struct.unpack_from(f"<{count}Q", record, len(record) - 8 * count)
    buffers = []
    pos = start + main_len
    for n in lengths:
        buffers.append(bytearray(record[pos : pos + n]))
        pos += n
    return pickle.loads(record[start : start + main_len], buffers=buffers)


def _decode_chunk(chunk: memoryview) -> Any:
    """The object of a chunk written through ``acquire_write`` in the layout the original's
    ``enqueue`` writes (byte 0: 0, then the pickle)."""
    if chunk[0] != 0:
        raise RuntimeError(
            "dequeue() read a chunk written with acquire_write() whose first byte is not 0 (the original's"
            " layout: 0, then a pickle; 1 meant 'sent over ZeroMQ', which this module never does):"
            " read such chunks with acquire_read()"
        )
    return pickle.loads(chunk[1:])
