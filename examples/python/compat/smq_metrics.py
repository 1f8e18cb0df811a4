"""From the shared-multiprocess-queue 0.1.5 README, section "Queue Metrics".

The README block runs as written; only its import is changed to shmq.compat. What is
not from the README is marked (the imports and definitions a fragment assumes, and checks).
"""

# --- not in the README: what the fragment assumes ---------------------------------
from shmq.compat.smq import SharedMemoryQueue, Empty, Full

# --- the README block, as written (only the import changed) --------------------------
queue = SharedMemoryQueue("monitored_queue", create=True, capacity=1000)

# Add some items
for i in range(100):
    queue.put(f"item_{i}")

metrics = queue.get_metrics()
print(f"Queue size: {metrics['queue_size']}")
print(f"Capacity: {metrics['queue_capacity']}")
print(f"Utilization: {metrics['queue_utilization_percent']:.1f}%")
print(f"Item size limit: {metrics['queue_item_size_bytes']} bytes")

# --- not in the README: checks ------------------------------------------------------
assert metrics == {"queue_size": 100, "queue_capacity": 1000, "queue_utilization_percent": 10.0, "queue_item_size_bytes": 4096}, metrics
