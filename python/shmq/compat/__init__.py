"""Drop-in surfaces of other shared-memory queues, backed by :class:`shmq.Queue` (vLLM's by
:class:`shmq.Broadcast`).

Each module lets users of another shared-memory queue move to shmq by changing one import:

- :mod:`shmq.compat.shmqueue`: ``shmqueue`` 0.0.2 (``import shmq.compat.shmqueue as shmqueue``)
- :mod:`shmq.compat.smq`: ``shared-multiprocess-queue`` 0.1.5
  (``from shmq.compat.smq import SharedMemoryQueue, Empty, Full``)
- :mod:`shmq.compat.faster_fifo`: ``faster-fifo`` 1.5
  (``from shmq.compat.faster_fifo import Queue``, was ``from faster_fifo import Queue``)
- :mod:`shmq.compat.vllm`: vLLM's shared-memory broadcast ``MessageQueue``
  (``from shmq.compat.vllm import MessageQueue``, was
  ``from vllm.distributed.device_communicators.shm_broadcast import MessageQueue``)

The modules are thin: they translate arguments, results and exceptions; the ring, the waiting,
the lifecycle and the crash handling are shmq's. Each module's docstring (and
``docs/compat.md``) lists its *Differences from the original*: the documented behaviour is
kept, the originals' bugs are not.
"""

from __future__ import annotations

__all__: list[str] = []
