//! Which `fork()` generation this process is. A lent message or an open loan made before a
//! fork is copied into the child with the rest of memory; the lane, the claim and the
//! reservation behind it stay the parent's, so the child's copy must never end them.

use std::sync::atomic::{AtomicU64, Ordering};

static FORKS: AtomicU64 = AtomicU64::new(0);
/// Whether the hook is registered: a `pthread_once`, not a `std::sync::Once`. A fork while
/// another thread runs the registration copies a `Once` marked "running" into the child,
/// whose every later loan then waits for a thread it does not have (it happened: one fork
/// in ~150 made at a first loan hung, `tests/fork_first_loan.rs`). glibc's `pthread_once`
/// tells that case apart (it stamps the run with its own fork count) and runs the routine
/// again in the child. The hook may then be registered twice there (if the parent's call
/// had registered it already): the count goes up by two per fork, which tells generations
/// apart as well.
static mut HOOK: libc::pthread_once_t = libc::PTHREAD_ONCE_INIT;

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
    extern "C" fn register() {
        // SAFETY: registers a child handler that only increments an atomic, which is
        // async-signal-safe, as a handler running right after `fork()` must be.
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    }
    // SAFETY: `HOOK` is only ever passed to `pthread_once` (by raw pointer, never borrowed),
    // which synchronises its accesses; `register` takes no arguments and does not unwind.
    unsafe { libc::pthread_once(&raw mut HOOK, register) };
    // Relaxed: see `forked_child`.
    FORKS.load(Ordering::Relaxed)
}
