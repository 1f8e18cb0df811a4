//! Helpers shared by the heap-backed test files.

use shmq_core::ring::Ring;
use shmq_core::HeapBacking;
use std::sync::Mutex;

/// Handles of "killed processes": never dropped (a killed process runs no destructor), and
/// reachable until the test binary exits, so that the leak checker of `make asan` does not
/// report them (a `mem::forget` would leak them).
static GRAVE: Mutex<Vec<Ring<HeapBacking>>> = Mutex::new(Vec::new());

/// Ends `ring`'s "process" as a kill would: no detach, no destructor.
pub fn bury(ring: Ring<HeapBacking>) {
    GRAVE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(ring);
}
