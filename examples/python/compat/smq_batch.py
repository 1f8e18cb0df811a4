"""From the shared-multiprocess-queue 0.1.5 README, section "Batch Operations".

The README block runs as written; only its import is changed to shmq.compat. What is
not from the README is marked (the imports and definitions a fragment assumes, and checks).
"""

# --- not in the README: what the fragment assumes ---------------------------------
from shmq.compat.smq import SharedMemoryQueue, Empty, Full

# --- the README block, as written (only the import changed) --------------------------
queue = SharedMemoryQueue("batch_queue", create=True, capacity=10000)

# Process items in batches for better performance
batch = []
for i in range(100):
    batch.append(f"item_{i}")
    if len(batch) >= 50:
        queue.put_batch(batch)
        batch = []

# Don't forget remaining items
if batch:
    queue.put_batch(batch)

# --- not in the README: checks ------------------------------------------------------
assert queue.qsize() == 100, queue.qsize()
assert [queue.get_nowait() for _ in range(100)] == [f"item_{i}" for i in range(100)]
