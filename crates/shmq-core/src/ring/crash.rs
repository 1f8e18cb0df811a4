//! Test-only crash points: a thread arms one, and the next operation it runs stops there as
//! if its process had been killed (the lane stays taken, shared memory stays as it is). Used
//! with `HeapBacking::die` to test repair without real processes.

use std::cell::Cell;

/// Where an operation stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Send: after taking maxsize permits, before reserving.
    AfterPermits,
    /// Send: right after the CAS on `tail`, before the intent says OWNED.
    AfterReserveCas,
    /// Send: after a reservation that starts with a skip, before the skip is written (the
    /// operation stops at `AfterReserve`).
    BeforeSkip,
    /// Send: after reserving, before writing anything.
    AfterReserve,
    /// Send: after committing the first record of the batch.
    AfterCommit,
    /// Receive: right after the CAS on `head`, before giving permits back.
    AfterClaimCas,
    /// Receive: after claiming, before reading anything.
    AfterClaim,
}

// loom runs its threads on one OS thread: the flag must be one of loom's thread-locals.
#[cfg(loom)]
loom::thread_local! {
    static ARMED: Cell<Option<CrashPoint>> = Cell::new(None);
}
#[cfg(not(loom))]
std::thread_local! {
    static ARMED: Cell<Option<CrashPoint>> = const { Cell::new(None) };
}

/// Arms `point` for the calling thread's next operation.
pub fn arm(point: CrashPoint) {
    ARMED.with(|a| a.set(Some(point)));
}

pub(super) fn hit(point: CrashPoint) -> bool {
    ARMED.with(|a| {
        if a.get() == Some(point) {
            a.set(None);
            true
        } else {
            false
        }
    })
}
