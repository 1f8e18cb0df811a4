"""From the shared-multiprocess-queue 0.1.5 README, section "Use Cases / 1. High-Throughput Task Distribution".

The README block runs as written; only its import is changed to shmq.compat. What is
not from the README is marked (the imports and definitions a fragment assumes, and checks).
"""

# --- not in the README: what the fragment assumes ---------------------------------
from shmq.compat.smq import SharedMemoryQueue, Empty, Full
import time


def generate_large_task_list():
    return [{"task": i} for i in range(1000)]


def process_task(task):
    pass

# --- the README block, as written (only the import changed) --------------------------
# Distribute work across multiple worker processes
task_queue = SharedMemoryQueue("tasks", create=True, capacity=50000, item_size=8192)

# Producer adds tasks
tasks = generate_large_task_list()
task_queue.put_batch(tasks)  # Efficient batch insertion

# Multiple workers consume tasks
def worker():
    while True:
        try:
            task = task_queue.get_nowait()
            process_task(task)
        except Empty:
            time.sleep(0.01)

# --- not in the README: checks ------------------------------------------------------
assert task_queue.qsize() == 1000, task_queue.qsize()
