"""From the shared-multiprocess-queue 0.1.5 README, section "Timeout Handling".

The README block runs as written; only its import is changed to shmq.compat. What is
not from the README is marked (the imports and definitions a fragment assumes, and checks).
"""

# --- not in the README: what the fragment assumes ---------------------------------
from shmq.compat.smq import SharedMemoryQueue, Empty, Full

# --- the README block, as written (only the import changed) --------------------------
queue = SharedMemoryQueue("timeout_queue", create=True, capacity=10)

try:
    # Will wait up to 5 seconds for space
    queue.put("item", block=True, timeout=5.0)
except Full:
    print("Queue was full for 5 seconds")

try:
    # Will wait up to 2 seconds for an item
    item = queue.get(block=True, timeout=2.0)
except Empty:
    print("No items available for 2 seconds")

# --- not in the README: checks ------------------------------------------------------
assert item == "item"
