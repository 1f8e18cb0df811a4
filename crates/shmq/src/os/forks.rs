//! Which `fork()` generation this process is. A lent message or an open loan made before a
//! fork is copied into the child with the rest of memory; the lane, the claim and the
//! reservation behind it stay the parent's, so the child's copy must never end them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static FORKS: AtomicU64 = AtomicU64::new(0);
static HOOK: Once = Once::new();

extern "C" fn forked_child() {
    // Relaxed: it runs in the child's only thread, before `fork()` returns there; later
    // loads in that thread follow in program order, and threads started later synchronise
    // with their spawn.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Forks between this process and the first of its ancestors that called this (0 there).
/// A value stamped with it and dropped under another number is an ancestor's copy. (If
/// `pthread_atfork` fails, only for lack of memory, the number stays 0: children are then
/// not told apart, as before this existed.)
pub(crate) fn fork_generation() -> u64 {
    HOOK.call_once(|| {
        // SAFETY: registers a child handler that only increments an atomic, which is
        // async-signal-safe, as a handler running right after `fork()` must be.
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    });
    // Relaxed: see `forked_child`.
    FORKS.load(Ordering::Relaxed)
}
