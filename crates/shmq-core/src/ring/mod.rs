//! The MPMC ring of variable-size records.
//!
//! Producers reserve bytes with a CAS on `tail`, write the record, and publish it by storing
//! its stamp (`tag(pos) | COMMITTED`, Release). Consumers claim one or more consecutive
//! committed records with a CAS on `head`, copy them out, and store `CONSUMED` (Release).
//! Producers that run short of space advance `release` over consumed records. No lock is
//! held across a copy, and every in-flight operation is described in its process's lane so
//! that the operation of a process that died can be repaired (see `docs/protocol.md`).

use crate::backing::Backing;
use crate::layout::*;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// At a crash point (tests only), stop here as a killed process would: keep the lane taken
/// and everything in shared memory as it is.
macro_rules! crash_point {
    ($point:ident, $lane:expr, $ret:expr) => {
        #[cfg(feature = "crash-points")]
        if $crate::ring::crash::hit($crate::ring::crash::CrashPoint::$point) {
            core::mem::forget($lane);
            return $ret;
        }
    };
}

mod blocking;
mod broadcast;
#[cfg(feature = "crash-points")]
pub mod crash;
mod error;
mod event;
mod holds;
mod loan;
mod observe;
mod record;
mod recv;
mod repair;
mod send;
mod shutdown;
mod slots;

pub use blocking::{Deadline, Plain, Waiter, CHECK_EVERY};
pub use broadcast::{Delivery, ReadTimeoutError, SubscriberInfo, TryReadError};
pub use error::{AttachError, RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};
pub use event::{spin_budget, Armed, Interest, MAX_SLEEP, MAX_SPIN, SPIN, STUCK_POLL};
pub use holds::{Held, HOLD_WINDOW};
pub use loan::{Claim, Loan};
pub use observe::LifeInfo;
pub use observe::Stats;
pub use record::{Message, RecordView};
pub use slots::{Detached, Linger};

use event::Side;
use std::time::Instant;

/// One process's attachment to a ring.
#[derive(Debug)]
pub struct Ring<B: Backing> {
    b: B,
    g: Geometry,
    slot: u32,
    /// When this process last looked for dead processes because the queue seemed stuck
    /// (nanoseconds since `epoch`); rate-limits those checks.
    last_stuck_check: AtomicU64,
    epoch: Instant,
    /// Broadcast subscribers: where this process last left its cursor; a different value in
    /// the slot means a lag-mode publisher moved it.
    expected_cursor: AtomicU64,
    /// Which of the slot's lanes this attachment's threads hold (1 = taken), one word per
    /// lane on a line of its own: threads that use different lanes (a producer and a
    /// consumer thread) then share no line. Kept in process memory, not in the segment:
    /// lane allocation is a matter between our own threads, so no other process can make it
    /// spin by scribbling on the slot table.
    lanes_taken: [slots::LaneLock; LANES],
    /// 1 while a thread of this attachment reads its subscription (one reader at a time per
    /// cursor, or two threads would deliver the same records). Process memory, as above.
    reader: AtomicU32,
    /// Broadcast subscribers: the records held by `try_hold`/`try_hold_more` and not yet
    /// released (in no order), and the position after the newest of them, where reads go on
    /// while any is held (the cursor stays at the oldest). Written only with the read turn
    /// held (`is_held` and the waiters' `read_ready` read snapshots).
    holds: [holds::HoldEntry; holds::HOLD_WINDOW],
    ahead: AtomicU64,
    /// A record read ahead of held ones referenced a side segment (released when the
    /// cursor passes it).
    sides_ahead: AtomicU32,
}

impl<B: Backing> Ring<B> {
    /// Initialises a fresh zeroed region with geometry `g` and attaches to it.
    ///
    /// The region must be exclusively the caller's (just created) and `g.total_size` long.
    pub fn create(b: B, g: Geometry, created_ns: u64) -> Result<Self, (B, AttachError)> {
        if b.size() != g.total_size {
            let len = b.size();
            return Err((b, AttachError::Layout(LayoutError::TooSmall { len })));
        }
        let c = Self::control_of(&b);
        g.write(&c.id, created_ns);
        // The creator is counted in before anyone can attach. Counted after `ready`, an
        // opener could attach in between, detach as the last process (closing the segment and
        // removing its name) and leave the creator's attach to find it closed: its create
        // then failed ("does not exist") and removed the name, maybe a newer queue's.
        // Relaxed: published with the identity by the Release below (SYNC R).
        c.attached.store(1, Ordering::Relaxed);
        // SYNC R (ready): Release publishes the identity above to openers' Acquire load.
        c.id.ready.store(1, Ordering::Release);
        Self::attach_counted(b)
    }

    /// Validates the segment in `b` and attaches to it.
    pub fn open(b: B) -> Result<Self, (B, AttachError)> {
        Self::attach(b)
    }

    fn control_of(b: &B) -> &Control {
        if let Some(t) = b.typed() {
            return &t.control;
        }
        debug_assert!(b.size() >= control_size());
        // SAFETY: `Backing` guarantees `base()` is 4096-aligned and `size()` bytes long; callers
        // checked `size() >= control_size()`. `Control` is made only of atomics, valid for any
        // bit pattern, and shared mutation through atomics is sound.
        unsafe { &*(b.base() as *const Control) }
    }

    /// The backing (for the OS layer).
    pub fn backing(&self) -> &B {
        &self.b
    }

    /// The validated geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.g
    }

    /// This process's slot index.
    pub fn slot_index(&self) -> u32 {
        self.slot
    }

    /// Largest payload a single message may have.
    pub fn max_payload(&self) -> u64 {
        self.g.max_payload()
    }

    fn control(&self) -> &Control {
        Self::control_of(&self.b)
    }

    fn slot_at(&self, i: u32) -> &Slot {
        assert!(i < self.g.max_slots);
        if let Some(t) = self.b.typed() {
            return &t.slots[i as usize];
        }
        let off = self.g.slots_offset + u64::from(i) * slot_size();
        // SAFETY: `Geometry::read` checked that the slot table (`max_slots` slots from
        // `slots_offset`) lies inside the segment and `i < max_slots`; the offset is a multiple
        // of 128 from a 4096-aligned base; `Slot` is made of atomics only.
        unsafe { &*(self.b.base().add(off as usize) as *const Slot) }
    }
}
