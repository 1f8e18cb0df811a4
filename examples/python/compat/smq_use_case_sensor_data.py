"""From the shared-multiprocess-queue 0.1.5 README, section "Use Cases / 3. Real-Time Data Processing".

The README block runs as written; only its import is changed to shmq.compat. What is
not from the README is marked (the imports and definitions a fragment assumes, and checks).
"""

# --- not in the README: what the fragment assumes ---------------------------------
from shmq.compat.smq import SharedMemoryQueue, Empty, Full


def read_sensor():
    return 42.0

# --- the README block, as written (only the import changed) --------------------------
# High-frequency data ingestion
data_queue = SharedMemoryQueue("sensor_data", create=True, capacity=100000, item_size=1024)

# Sensor data producer
def collect_sensor_data():
    batch = []
    while True:
        reading = read_sensor()
        batch.append(reading)
        if len(batch) >= 100:  # Batch for efficiency
            data_queue.put_batch(batch)
            batch = []

# --- not in the README: checks ------------------------------------------------------
assert data_queue.empty() and data_queue.capacity == 100000 and data_queue.item_size == 1024
