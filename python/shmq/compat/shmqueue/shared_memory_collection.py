"""``shmqueue.shared_memory_collection``'s public names, for code that imports them from there.

The original package re-exports them at its top level, where most code takes them; some code
(the original's own tests, for one) imports ``DebugRefLogAction`` from this submodule::

    from shmq.compat.shmqueue.shared_memory_collection import DebugRefLogAction

The original's ``ShmCollection`` (the shared-memory blocks and their lock, reached as the
private ``ShmQueue._shm_collection``) has no counterpart: shmq's ring replaces it.
"""

from __future__ import annotations

from . import SIZE_HEADER, SYSTEM_PAGESIZE, DebugRefLogAction, SerializationMethods, ShmRefDataSnapshot

__all__ = ["SIZE_HEADER", "SYSTEM_PAGESIZE", "DebugRefLogAction", "SerializationMethods", "ShmRefDataSnapshot"]
