"""From the shmqueue 0.0.2 README, section "Serialization (this one ends by raising ShmQueueSerializationError, as the README says)".

The README block runs as written; only its import is changed to shmq.compat. What is
not from the README is marked (the imports and definitions a fragment assumes, and checks).
"""

# --- not in the README: what the fragment assumes ---------------------------------
import shmq.compat.shmqueue as shmqueue

# --- the README block, as written (only the import changed) --------------------------
# Disable pickle:
q = shmqueue.ShmQueue("my_queue", allow_pickle=False)

# Explicit serialization method per put. If picke is disabled, this will raise ShmQueueSerializationError:
q.put("test", serialization_method=shmqueue.SerializationMethods.PICKLE)
