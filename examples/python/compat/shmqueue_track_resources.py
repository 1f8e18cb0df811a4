"""From the shmqueue 0.0.2 README, section "Resource Tracking".

The README block runs as written; only its import is changed to shmq.compat. What is
not from the README is marked (the imports and definitions a fragment assumes, and checks).
"""

# --- not in the README: what the fragment assumes ---------------------------------
import shmq.compat.shmqueue as shmqueue

# --- the README block, as written (only the import changed) --------------------------
q = shmqueue.ShmQueue("my_queue", track_resources=True)
