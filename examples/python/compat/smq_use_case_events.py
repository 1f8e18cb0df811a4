"""From the shared-multiprocess-queue 0.1.5 README, section "Use Cases / 2. Inter-Service Communication".

The README block runs as written; only its import is changed to shmq.compat. What is
not from the README is marked (the imports and definitions a fragment assumes, and checks).
"""

# --- not in the README: what the fragment assumes ---------------------------------
from shmq.compat.smq import SharedMemoryQueue, Empty, Full
import sys
import threading
import time

# The fragment's service B loops forever on get(): a thread plays a publisher that opens the
# queue once service A created it, publishes three events and "STOP"; handle_event ends the
# script at "STOP".
received = []


def publisher():
    deadline = time.monotonic() + 30
    while True:
        try:
            q = SharedMemoryQueue("events", create=False, run_id="system")
            break
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)
    for event in ["started", "working", "done", "STOP"]:
        q.put(event)
    q.close()


def handle_event(event):
    if event == "STOP":
        assert received == ["started", "working", "done"], received
        sys.exit(0)
    received.append(event)


threading.Thread(target=publisher, daemon=True).start()

# --- the README block, as written (only the import changed) --------------------------
# Service A publishes events
event_queue = SharedMemoryQueue("events", create=True, capacity=10000, run_id="system")

# Service B subscribes to events
event_queue = SharedMemoryQueue("events", create=False, run_id="system")
while True:
    event = event_queue.get()
    handle_event(event)
