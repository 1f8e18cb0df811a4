"""Drop-in surfaces of other shared-memory queues, backed by :class:`shmq.Queue`.

Each module lets users of one of shmq's predecessors move to shmq by changing one import:

- :mod:`shmq.compat.shmqueue`: ``shmqueue`` 0.0.2 (``import shmq.compat.shmqueue as shmqueue``)
- :mod:`shmq.compat.smq`: ``shared-multiprocess-queue`` 0.1.5
  (``from shmq.compat.smq import SharedMemoryQueue, Empty, Full``)

The modules are thin: they translate arguments, results and exceptions; the ring, the waiting,
the lifecycle and the crash handling are shmq's. Each module's docstring (and
``docs/compat.md``) lists its *Differences from the original*: the documented behaviour is
kept, the originals' bugs are not.
"""

from __future__ import annotations

__all__: list[str] = []
