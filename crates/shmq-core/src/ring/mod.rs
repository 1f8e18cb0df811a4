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
use crate::sync::{fence, spin_hint, yield_now, AtomicU32, AtomicU64, Ordering};

mod blocking;
mod broadcast;
#[cfg(feature = "crash-points")]
pub mod crash;
mod repair;

pub use blocking::{Plain, Waiter, CHECK_EVERY};
pub use broadcast::{Delivery, Held, ReadTimeoutError, SubscriberInfo, TryReadError};

/// At a crash point (tests only), stop here as a killed process would: keep the lane taken
/// and everything in shared memory as it is.
macro_rules! crash_point {
    ($point:ident, $lane:expr, $ret:expr) => {
        #[cfg(feature = "crash-points")]
        if crash::hit(crash::CrashPoint::$point) {
            core::mem::forget($lane);
            return $ret;
        }
    };
}
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// How long a waiter spins before it sleeps.
pub const SPIN: Duration = Duration::from_micros(50);

/// Longest single futex sleep: bounds the delay a notifier killed in the middle of a
/// wake-up can cause (see `Ring::wake_sleepers`).
pub const MAX_SLEEP: Duration = Duration::from_millis(100);

/// While the record at `head` (or at `release`) is in flight, sleepers wake this often to
/// check that its owner is still alive.
pub const STUCK_POLL: Duration = Duration::from_millis(2);

/// One message to send.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// Codec id stored in the record header.
    pub codec: u16,
    /// Flag bits stored in the record header (reserved for extensions; 0 today).
    pub flags: u16,
    /// The bytes.
    pub payload: &'a [u8],
}

impl<'a> Message<'a> {
    /// A message with codec 0 (raw bytes).
    pub fn raw(payload: &'a [u8]) -> Self {
        Self {
            codec: 0,
            flags: 0,
            payload,
        }
    }
}

/// A received record, borrowed from the ring while its claim is held. The payload may be in
/// two parts when the record wraps around the end of the ring.
#[derive(Debug)]
pub struct RecordView<'a> {
    /// Codec id from the record header.
    pub codec: u16,
    /// Flag bits from the record header.
    pub flags: u16,
    // Borrowed from shared memory; owned only for typed (model-checked) storage.
    first: Cow<'a, [u8]>,
    second: Cow<'a, [u8]>,
}

impl RecordView<'_> {
    /// Payload length.
    pub fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The payload as (up to) two slices.
    pub fn parts(&self) -> (&[u8], &[u8]) {
        (&self.first, &self.second)
    }
    /// Copies the payload into `dst`, which must be exactly [`RecordView::len`] bytes.
    pub fn copy_to(&self, dst: &mut [u8]) {
        let (a, b) = dst.split_at_mut(self.first.len());
        a.copy_from_slice(&self.first);
        b.copy_from_slice(&self.second);
    }
    /// Appends the payload to `dst`.
    pub fn extend_into(&self, dst: &mut Vec<u8>) {
        dst.extend_from_slice(&self.first);
        dst.extend_from_slice(&self.second);
    }
    /// The payload as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        self.extend_into(&mut v);
        v
    }
}

/// Why a non-blocking send did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrySendError {
    /// Not enough free bytes (or `maxsize` messages are queued).
    Full,
    /// The message (or batch) can never fit: `size` bytes of payload, `max` allowed.
    TooLarge {
        /// Bytes asked for.
        size: u64,
        /// The most one message (or batch) may have.
        max: u64,
    },
    /// The shared state is inconsistent (a buggy or hostile process wrote to it).
    Corrupted(&'static str),
    /// Every lane of this attachment is taken by its other threads: try again (after
    /// yielding). Never caused by another process.
    Busy,
}

/// Why a non-blocking receive returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// No message is ready.
    Empty,
    /// The shared state is inconsistent.
    Corrupted(&'static str),
    /// See [`TrySendError::Busy`].
    Busy,
}

/// Why a blocking send did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendTimeoutError {
    /// The deadline passed while the queue stayed full.
    Timeout,
    /// See [`TrySendError::TooLarge`].
    TooLarge {
        /// Bytes asked for.
        size: u64,
        /// The most one message (or batch) may have.
        max: u64,
    },
    /// See [`TrySendError::Corrupted`].
    Corrupted(&'static str),
    /// The caller's [`Waiter`] asked to stop (a signal, a handle closed meanwhile).
    Interrupted,
}

/// Why a blocking receive returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// The deadline passed while the queue stayed empty.
    Timeout,
    /// See [`TryRecvError::Corrupted`].
    Corrupted(&'static str),
    /// The caller's [`Waiter`] asked to stop.
    Interrupted,
}

/// Why attaching to a segment failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// The creator has not finished initialising the segment.
    NotReady,
    /// The last process detached and the segment is being removed.
    Closing,
    /// Every slot of the slot table is held by a live process.
    NoFreeSlot {
        /// Size of the slot table.
        max_slots: u32,
    },
    /// The segment is not a valid shmq queue.
    Layout(LayoutError),
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotReady => write!(f, "segment not initialised by its creator"),
            Self::Closing => write!(f, "segment is being removed by its last user"),
            Self::NoFreeSlot { max_slots } => {
                write!(f, "all {max_slots} process slots are in use")
            }
            Self::Layout(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AttachError {}

/// What [`Ring::detach`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detached {
    /// Other processes are still attached (or the segment is persistent).
    Others,
    /// This was the last process of a non-persistent segment: the caller must unlink it.
    Last,
}

/// A snapshot of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages in the queue (approximate while others are busy).
    pub depth: u64,
    /// Bytes of the ring in use (queued records and not yet reclaimed ones).
    pub bytes_used: u64,
    /// Bytes of the ring.
    pub capacity: u64,
    /// Message bound (0 = none).
    pub maxsize: u64,
    /// Messages committed since creation.
    pub puts: u64,
    /// Messages taken since creation.
    pub gets: u64,
    /// Times a thread slept waiting.
    pub waits: u64,
    /// Processes attached now.
    pub attached: u32,
    /// Messages lost because their consumer died while taking them.
    pub lost: u64,
    /// Reservations abandoned because their producer died.
    pub abandoned: u64,
    /// Dead processes detached by others.
    pub reaped: u64,
    /// Byte position (since creation) up to which producers reserved space.
    pub tail: u64,
    /// Byte position (since creation) up to which consumers claimed records.
    pub head: u64,
}

/// How one sleep ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    Ready,
    TimedOut,
    Interrupted,
    Again,
}

/// Which event a waiter sleeps on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Data,
    Space,
}

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
    /// Which of the slot's lanes this attachment's threads hold (bit `k` = lane `k`). Kept
    /// in process memory, not in the segment: lane allocation is a matter between our own
    /// threads, so no other process can make it spin by scribbling on the slot table.
    lanes_taken: AtomicU32,
    /// 1 while a thread of this attachment reads its subscription (one reader at a time per
    /// cursor, or two threads would deliver the same records). Process memory, as above.
    reader: AtomicU32,
    /// The record lent by `try_hold` and not yet released (`NO_CURSOR`: none): its position,
    /// the position after it, and its flags. Read and written only with the read turn held.
    lent_pos: AtomicU64,
    lent_next: AtomicU64,
    lent_flags: AtomicU32,
}

std::thread_local! {
    static LANE_HINT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// A lane taken for one attempt; given back on drop.
struct LaneGuard<'a> {
    lane: &'a Lane,
    bit: u32,
    taken: &'a AtomicU32,
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        // Relaxed: the shared `busy` word only informs debugging dumps; nobody decides on it.
        self.lane.busy.store(0, Ordering::Relaxed);
        // SYNC L (lane hand-over): Release pairs with the Acquire `fetch_or` in
        // `Ring::try_lane`, so the next thread to take the lane sees its cleared intents.
        self.taken.fetch_and(!self.bit, Ordering::Release);
    }
}

/// Rounds over the lanes a thread makes before it reports [`TrySendError::Busy`]: lanes are
/// held only for one bounded, non-blocking attempt, so a free one normally turns up within a
/// few rounds; if not, the caller waits with its hooks (a binding releases its interpreter
/// lock) and tries again, instead of spinning here.
const LANE_ROUNDS: usize = 8;

/// A process-local try-lock for one attempt (see `Ring::reader`); released on drop.
struct ReaderGuard<'a>(&'a AtomicU32);

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        // Release: the next reader sees our cursor bookkeeping (`expected_cursor`).
        self.0.store(0, Ordering::Release);
    }
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
        // SYNC R (ready): Release publishes the identity above to openers' Acquire load.
        c.id.ready.store(1, Ordering::Release);
        Self::attach(b)
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

    fn attach(b: B) -> Result<Self, (B, AttachError)> {
        if b.size() < control_size() {
            let len = b.size();
            return Err((b, AttachError::Layout(LayoutError::TooSmall { len })));
        }
        let c = Self::control_of(&b);
        // SYNC R (ready): Acquire pairs with the creator's Release store.
        if c.id.ready.load(Ordering::Acquire) != 1 {
            return Err((b, AttachError::NotReady));
        }
        let g = match Geometry::read(&c.id, b.size()) {
            Ok(g) => g,
            Err(e) => return Err((b, AttachError::Layout(e))),
        };
        // Count ourselves in first, so a concurrent last detach cannot unlink under us.
        let mut n = c.attached.load(Ordering::Acquire);
        loop {
            if n == ATTACHED_CLOSED {
                return Err((b, AttachError::Closing));
            }
            // SYNC A (attach count): AcqRel orders us against the last detacher's CAS to CLOSED.
            match c
                .attached
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(x) => n = x,
            }
        }
        let mut ring = Self {
            b,
            g,
            slot: u32::MAX,
            last_stuck_check: AtomicU64::new(0),
            epoch: Instant::now(),
            expected_cursor: AtomicU64::new(NO_CURSOR),
            lanes_taken: AtomicU32::new(0),
            reader: AtomicU32::new(0),
            lent_pos: AtomicU64::new(NO_CURSOR),
            lent_next: AtomicU64::new(0),
            lent_flags: AtomicU32::new(0),
        };
        match ring.claim_slot() {
            Some(slot) => {
                ring.slot = slot;
                // Detach whoever died since the last look, so `attached` and the last-close
                // decision only count the living.
                ring.reap_dead();
                Ok(ring)
            }
            None => {
                // Uncount ourselves; nobody can have closed the segment while we were counted.
                ring.control().attached.fetch_sub(1, Ordering::AcqRel);
                let max_slots = ring.g.max_slots;
                Err((ring.b, AttachError::NoFreeSlot { max_slots }))
            }
        }
    }

    /// Finds a free slot (reaping a dead holder's slot on the way) and takes it.
    fn claim_slot(&self) -> Option<u32> {
        for i in 0..self.g.max_slots {
            let s = self.slot_at(i);
            // Relaxed: only a hint; the CAS below decides.
            let state = s.state.load(Ordering::Relaxed);
            if state & 0xFF == SLOT_REAPING {
                continue;
            }
            if !self.b.try_lease(i) {
                continue; // a live process holds it
            }
            // We hold the lease: any holder of this slot is gone.
            let state = s.state.load(Ordering::Acquire);
            if state & 0xFF == SLOT_ATTACHED && !self.reap(i, state) {
                self.b.drop_lease(i);
                continue;
            }
            let free = s.state.load(Ordering::Acquire);
            if free & 0xFF != SLOT_FREE {
                self.b.drop_lease(i);
                continue;
            }
            let next = ((free >> 8).wrapping_add(1) << 8) | SLOT_ATTACHED;
            s.pid.store(self.b.pid(), Ordering::Relaxed);
            for c in [&s.counters.puts, &s.counters.gets, &s.counters.waits] {
                c.store(0, Ordering::Relaxed);
            }
            for l in &s.lanes {
                l.put_state.store(INTENT_NONE, Ordering::Relaxed);
                l.get_state.store(INTENT_NONE, Ordering::Relaxed);
                l.busy.store(0, Ordering::Relaxed);
            }
            s.cursor.store(NO_CURSOR, Ordering::Relaxed);
            s.missed.store(0, Ordering::Relaxed);
            // SYNC S (slot claim): AcqRel; Release publishes the cleared slot above.
            if s.state
                .compare_exchange(free, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // AcqRel: broadcast publishers scan the slots below this bound; it is raised
                // before this slot subscribes (SYNC J).
                self.control()
                    .slots_in_use
                    .fetch_max(i + 1, Ordering::AcqRel);
                return Some(i);
            }
            self.b.drop_lease(i);
        }
        None
    }

    /// Detaches a slot whose holder is dead. The caller holds the slot's lease, which proves
    /// the holder is gone. Returns false if another process is reaping it.
    fn reap(&self, i: u32, state: u64) -> bool {
        let s = self.slot_at(i);
        let reaping = (state & !0xFF) | SLOT_REAPING;
        if s.state
            .compare_exchange(state, reaping, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        if !self.repair_slot(i) {
            // Not finished: leave it attached (and dead) for a later reap to complete.
            s.state.store(state, Ordering::Release);
            return false;
        }
        let c = self.control();
        c.totals.reaped.fetch_add(1, Ordering::Relaxed);
        self.fold_counters(s);
        // SYNC A: the dead process's count goes; AcqRel as every change of `attached`.
        c.attached.fetch_sub(1, Ordering::AcqRel);
        s.state
            .store((state & !0xFF) | SLOT_FREE, Ordering::Release);
        true
    }

    fn fold_counters(&self, s: &Slot) {
        let t = &self.control().totals;
        // Relaxed: statistics only.
        t.puts.fetch_add(
            s.counters.puts.swap(0, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        t.gets.fetch_add(
            s.counters.gets.swap(0, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        t.waits.fetch_add(
            s.counters.waits.swap(0, Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }

    /// Detaches dead processes it finds, then this one. Returns [`Detached::Last`] when the
    /// caller was the last process of a non-persistent segment and must unlink it.
    pub fn detach(self) -> (B, Detached) {
        self.reap_dead();
        let c = self.control();
        let s = self.slot_at(self.slot);
        if s.cursor.load(Ordering::Relaxed) != NO_CURSOR {
            self.unsubscribe();
        }
        self.fold_counters(s);
        let state = s.state.load(Ordering::Relaxed);
        // SYNC S: Release publishes the folded counters before the slot is reused.
        s.state
            .store((state & !0xFF) | SLOT_FREE, Ordering::Release);
        self.b.drop_lease(self.slot);
        let persistent = self.g.flags & FLAG_PERSISTENT != 0;
        let mut n = c.attached.load(Ordering::Acquire);
        let outcome = loop {
            let (next, outcome) = if n <= 1 && !persistent {
                (ATTACHED_CLOSED, Detached::Last)
            } else {
                (n.saturating_sub(1), Detached::Others)
            };
            // SYNC A: AcqRel, see `attach`.
            match c
                .attached
                .compare_exchange_weak(n, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break outcome,
                Err(x) => n = x,
            }
        };
        if outcome == Detached::Last {
            self.release_all_sides();
        }
        (self.b, outcome)
    }

    /// Gives back the backing without detaching: for a child after `fork()`, whose inherited
    /// handle is the parent's attachment, not its own.
    pub fn into_backing_without_detach(self) -> B {
        self.b
    }

    /// Detaches every attached slot whose holder is dead. Returns how many.
    pub fn reap_dead(&self) -> u32 {
        let mut n = 0;
        for i in 0..self.g.max_slots {
            if i == self.slot {
                continue;
            }
            let s = self.slot_at(i);
            let state = s.state.load(Ordering::Acquire);
            if state & 0xFF != SLOT_ATTACHED || self.b.lease_held_elsewhere(i) {
                continue;
            }
            if self.b.try_lease(i) {
                let state = s.state.load(Ordering::Acquire);
                if state & 0xFF == SLOT_ATTACHED && self.reap(i, state) {
                    n += 1;
                }
                self.b.drop_lease(i);
            }
        }
        n
    }

    /// A human-readable dump of the shared positions, slots and lane intents (for debugging
    /// and for failing tests).
    pub fn debug_state(&self) -> String {
        use std::fmt::Write;
        let c = self.control();
        let mut out = format!(
            "tail={} head={} release={} count={} attached={} reaped={} abandoned={} lost={}\n",
            c.tail.load(Ordering::Relaxed),
            c.head.load(Ordering::Relaxed),
            c.release.load(Ordering::Relaxed),
            c.count.load(Ordering::Relaxed),
            c.attached.load(Ordering::Relaxed),
            c.totals.reaped.load(Ordering::Relaxed),
            c.totals.abandoned.load(Ordering::Relaxed),
            c.totals.lost.load(Ordering::Relaxed),
        );
        for i in 0..self.g.max_slots {
            let s = self.slot_at(i);
            let state = s.state.load(Ordering::Relaxed);
            let _ = write!(
                out,
                "slot {i}: gen={} state={} alive={} cursor={} missed={}",
                state >> 8,
                state & 0xFF,
                self.b.lease_held_elsewhere(i),
                s.cursor.load(Ordering::Relaxed) as i64,
                s.missed.load(Ordering::Relaxed),
            );
            for (k, l) in s.lanes.iter().enumerate() {
                let put = l.put_state.load(Ordering::Relaxed);
                let get = l.get_state.load(Ordering::Relaxed);
                if put & 0xFF != 0 || get != 0 || l.busy.load(Ordering::Relaxed) != 0 {
                    let _ = write!(
                        out,
                        " lane{k}[busy={} put={}:{}..{} get={}:{}..{}]",
                        l.busy.load(Ordering::Relaxed),
                        put,
                        l.put_start.load(Ordering::Relaxed),
                        l.put_end.load(Ordering::Relaxed),
                        get,
                        l.get_start.load(Ordering::Relaxed),
                        l.get_end.load(Ordering::Relaxed),
                    );
                }
            }
            out.push('\n');
        }
        let mut pos = c.release.load(Ordering::Relaxed);
        // At most one ring's worth of records, whatever a corrupted `tail` says.
        let end = c
            .tail
            .load(Ordering::Relaxed)
            .min(pos.saturating_add(self.g.capacity));
        while pos < end {
            let stamp = self.cell(pos).stamp.load(Ordering::Relaxed);
            let valid = stamp & !STATE_MASK == self.g.tag(pos);
            let _ = writeln!(
                out,
                "record @{pos}: valid={valid} state={}",
                stamp & STATE_MASK
            );
            pos += RECORD_ALIGN;
        }
        out
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

    /// The record header at ring position `pos`. Positions come from shared memory and may
    /// be corrupted: the offset is forced to a multiple of 16, so the reference is always
    /// aligned and in bounds; [`Ring::record`] reports a misaligned position as corruption.
    fn cell(&self, pos: u64) -> &Cell {
        let off = (pos % self.g.capacity) & !(RECORD_ALIGN - 1);
        if let Some(t) = self.b.typed() {
            return &t.cells[(off / RECORD_ALIGN) as usize];
        }
        // SAFETY: `off < capacity` and a multiple of 16, and `capacity` is a multiple of 16,
        // so the 16-byte cell lies inside the data ring, which `Geometry::read` checked lies
        // inside the segment; the data offset is page aligned. `Cell` is two atomics.
        unsafe { &*(self.b.base().add((self.g.data_offset + off) as usize) as *const Cell) }
    }

    /// The payload bytes of the record at `pos` as (up to) two slices.
    ///
    /// # Safety
    ///
    /// The caller must ensure:
    /// * it owns the record (a successful reservation or claim covers it), so no other
    ///   process writes these bytes while the slices live, and
    /// * `len <= capacity - RECORD_HEADER`.
    unsafe fn payload(&self, pos: u64, len: u64) -> (Cow<'_, [u8]>, Cow<'_, [u8]>) {
        let cap = self.g.capacity;
        let start = (pos + RECORD_HEADER) % cap;
        let first = len.min(cap - start);
        if let Some(t) = self.b.typed() {
            let copy = |from: u64, n: u64| {
                (from..from + n)
                    .map(|o| {
                        let chunk = &t.data[(o / RECORD_ALIGN) as usize];
                        // SAFETY: the caller owns these bytes (see `# Safety`); loom checks it.
                        chunk.with(|p| unsafe { (*p)[(o % RECORD_ALIGN) as usize] })
                    })
                    .collect::<Vec<u8>>()
            };
            return (
                Cow::Owned(copy(start, first)),
                Cow::Owned(copy(0, len - first)),
            );
        }
        // SAFETY: `start < cap` and `first <= cap - start`, so `[start, start + first)` is in
        // the data ring; the second part `[0, len - first)` is too because `len < cap`. The
        // caller owns the bytes (see `# Safety`).
        unsafe {
            let data = self.b.base().add(self.g.data_offset as usize);
            (
                Cow::Borrowed(std::slice::from_raw_parts(
                    data.add(start as usize),
                    first as usize,
                )),
                Cow::Borrowed(std::slice::from_raw_parts(data, (len - first) as usize)),
            )
        }
    }

    /// Copies `src` into the payload of the record at `pos`.
    ///
    /// # Safety
    ///
    /// As [`Ring::payload`]: the caller owns the record and `src.len() < capacity`.
    unsafe fn write_payload(&self, pos: u64, src: &[u8]) {
        let cap = self.g.capacity;
        let start = (pos + RECORD_HEADER) % cap;
        let first = (src.len() as u64).min(cap - start) as usize;
        if let Some(t) = self.b.typed() {
            for (k, &byte) in src.iter().enumerate() {
                let o = (start + k as u64) % cap;
                let chunk = &t.data[(o / RECORD_ALIGN) as usize];
                // SAFETY: the reservation makes these bytes ours alone; loom checks it.
                chunk.with_mut(|p| unsafe { (*p)[(o % RECORD_ALIGN) as usize] = byte });
            }
            return;
        }
        // SAFETY: bounds as in `payload`; the reservation makes these bytes ours alone.
        unsafe {
            let data = self.b.base().add(self.g.data_offset as usize);
            std::ptr::copy_nonoverlapping(src.as_ptr(), data.add(start as usize), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), data, src.len() - first);
        }
    }

    /// Takes a free lane of this process's slot for one attempt, or `None` if this
    /// attachment's other threads hold all of them for a while (the caller reports `Busy`).
    fn try_lane(&self) -> Option<LaneGuard<'_>> {
        let lanes = &self.slot_at(self.slot).lanes;
        // Models must be deterministic: loom runs its threads on one OS thread.
        let start = if cfg!(loom) {
            0
        } else {
            LANE_HINT.with(|h| {
                if h.get() == usize::MAX {
                    // Spread threads over lanes by the address of their thread-local.
                    h.set((h as *const _ as usize >> 6) % LANES);
                }
                h.get()
            })
        };
        for _ in 0..LANE_ROUNDS {
            // Relaxed: a hint; the `fetch_or` decides.
            let taken = self.lanes_taken.load(Ordering::Relaxed);
            for k in 0..LANES {
                let i = (start + k) % LANES;
                let bit = 1u32 << i;
                // SYNC L: Acquire pairs with the Release in `LaneGuard::drop`.
                if taken & bit == 0 && self.lanes_taken.fetch_or(bit, Ordering::Acquire) & bit == 0
                {
                    // Relaxed: informational (see `LaneGuard::drop`).
                    lanes[i].busy.store(1, Ordering::Relaxed);
                    return Some(LaneGuard {
                        lane: &lanes[i],
                        bit,
                        taken: &self.lanes_taken,
                    });
                }
            }
            spin_hint();
        }
        None
    }

    /// Takes this attachment's read turn for one attempt (broadcast subscriptions), or
    /// `None` if another of its threads is reading (the caller reports `Busy`).
    fn try_reader(&self) -> Option<ReaderGuard<'_>> {
        for _ in 0..LANE_ROUNDS {
            // Acquire pairs with the Release in `ReaderGuard::drop`.
            if self
                .reader
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Some(ReaderGuard(&self.reader));
            }
            spin_hint();
        }
        None
    }

    // ----------------------------------------------------------------------------------
    // Sending
    // ----------------------------------------------------------------------------------

    /// Sends one message if it fits now.
    pub fn try_send(&self, msg: Message<'_>) -> Result<(), TrySendError> {
        self.try_send_many(std::slice::from_ref(&msg))
    }

    /// Sends all of `msgs` (in order, contiguously) if they all fit now, or none of them.
    pub fn try_send_many(&self, msgs: &[Message<'_>]) -> Result<(), TrySendError> {
        if msgs.is_empty() {
            return Ok(());
        }
        let total = self.batch_size(msgs)?;
        let lane = self.try_lane().ok_or(TrySendError::Busy)?;
        let n = msgs.len() as u64;
        if self.g.maxsize > 0 && !self.take_permits(lane.lane, n) {
            return Err(TrySendError::Full);
        }
        crash_point!(AfterPermits, lane, Err(TrySendError::Corrupted("crashed")));
        let start = match self.reserve(lane.lane, total) {
            Ok(start) => start,
            Err(e) => {
                if self.g.maxsize > 0 {
                    self.give_back_permits(lane.lane, n);
                }
                return Err(e);
            }
        };
        #[cfg(feature = "crash-points")]
        if crash::hit(crash::CrashPoint::AfterReserveCas) {
            // Died between the CAS and marking the intent OWNED.
            let word = lane.lane.put_state.load(Ordering::Relaxed);
            lane.lane
                .put_state
                .store(word & !0xFF | INTENT_PENDING, Ordering::Relaxed);
            core::mem::forget(lane);
            return Err(TrySendError::Corrupted("crashed"));
        }
        crash_point!(AfterReserve, lane, Err(TrySendError::Corrupted("crashed")));
        let mut pos = start;
        for m in msgs {
            self.write_record(pos, m);
            pos += record_size(m.payload.len() as u64);
            crash_point!(AfterCommit, lane, Err(TrySendError::Corrupted("crashed")));
        }
        // The records now carry the permits; the lane no longer owns anything.
        lane.lane.put_state.store(INTENT_NONE, Ordering::Release);
        drop(lane);
        self.slot_at(self.slot)
            .counters
            .puts
            .fetch_add(n, Ordering::Relaxed);
        self.notify(Side::Data);
        if self.g.is_broadcast() {
            // Publishers may wait for space behind a record another publisher was writing
            // (reclaiming cannot pass a record in flight): our commit may be what they need.
            self.notify_again(Side::Space);
        }
        Ok(())
    }

    fn batch_size(&self, msgs: &[Message<'_>]) -> Result<u64, TrySendError> {
        let max = self.g.max_payload();
        let mut total = 0u64;
        for m in msgs {
            let len = m.payload.len() as u64;
            if len > max {
                return Err(TrySendError::TooLarge { size: len, max });
            }
            total += record_size(len);
        }
        if total > self.g.capacity || total > u64::from(u32::MAX) {
            let max = self.g.capacity.min(u64::from(u32::MAX));
            return Err(TrySendError::TooLarge { size: total, max });
        }
        Ok(total)
    }

    /// Takes `n` maxsize permits, recording them in the lane so a repairer can give them back.
    fn take_permits(&self, lane: &Lane, n: u64) -> bool {
        let c = self.control();
        let mut cur = c.count.load(Ordering::Relaxed);
        loop {
            if cur + n > self.g.maxsize.max(n) {
                return false;
            }
            // Relaxed: the count only bounds how many messages exist; it publishes no data.
            match c
                .count
                .compare_exchange_weak(cur, cur + n, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(x) => cur = x,
            }
        }
        lane.put_state
            .store(n << 32 | INTENT_NONE, Ordering::Relaxed);
        true
    }

    fn give_back_permits(&self, lane: &Lane, n: u64) {
        self.control().count.fetch_sub(n, Ordering::Relaxed);
        lane.put_state.store(INTENT_NONE, Ordering::Relaxed);
        self.notify(Side::Space);
    }

    /// Reserves `total` bytes at the tail. The reservation is announced in the lane first, so
    /// that a repairer can tell whose bytes they are if this process dies.
    fn reserve(&self, lane: &Lane, total: u64) -> Result<u64, TrySendError> {
        let c = self.control();
        let cap = self.g.capacity;
        let permits = lane.put_state.load(Ordering::Relaxed) & !0xFF;
        // Relaxed: the value is only a guess checked by the CAS.
        let mut tail = c.tail.load(Ordering::Relaxed);
        loop {
            // SYNC F (free space): Acquire pairs with the Release CAS in `advance_release`, which
            // happens after the consumers' reads of the bytes we are about to overwrite.
            let release = c.release.load(Ordering::Acquire);
            if release > tail {
                tail = c.tail.load(Ordering::Relaxed); // our tail may be stale
                if c.release.load(Ordering::Acquire) > tail {
                    return Err(TrySendError::Corrupted("release is ahead of tail"));
                }
                continue;
            }
            if tail - release > cap {
                return Err(TrySendError::Corrupted(
                    "tail is more than a ring ahead of release",
                ));
            }
            if (tail | release) % RECORD_ALIGN != 0 {
                return Err(TrySendError::Corrupted("misaligned tail or release"));
            }
            if tail.checked_add(total).is_none() {
                return Err(TrySendError::Corrupted(
                    "tail is at the end of the position space",
                ));
            }
            if tail - release + total > cap {
                if self.reclaim(total)? {
                    tail = c.tail.load(Ordering::Relaxed);
                    continue;
                }
                return Err(TrySendError::Full);
            }
            lane.put_start.store(tail, Ordering::Relaxed);
            lane.put_end.store(tail + total, Ordering::Relaxed);
            lane.put_state
                .store(permits | INTENT_PENDING, Ordering::Relaxed);
            // SYNC P1 (reserve): Release publishes the lane intent to anyone who sees the new
            // tail (Acquire), e.g. a repairer. Failure: Relaxed, we just retry.
            match c.tail.compare_exchange_weak(
                tail,
                tail + total,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    lane.put_state
                        .store(permits | INTENT_OWNED, Ordering::Relaxed);
                    return Ok(tail);
                }
                Err(x) => tail = x,
            }
        }
    }

    fn write_record(&self, pos: u64, m: &Message<'_>) {
        let cell = self.cell(pos);
        // Relaxed: published by the stamp's Release store below.
        cell.meta.store(
            pack_meta(m.payload.len() as u32, m.codec, m.flags),
            Ordering::Relaxed,
        );
        // SAFETY: `reserve` gave this lane `[pos, pos + record_size)`; `batch_size` checked
        // the payload is at most `max_payload() < capacity`.
        unsafe { self.write_payload(pos, m.payload) };
        // SYNC P2 (publish): Release pairs with the consumer's Acquire load of the stamp; a
        // consumer that sees COMMITTED sees the meta and payload written above.
        cell.stamp
            .store(self.g.tag(pos) | COMMITTED, Ordering::Release);
    }

    /// Reads and validates the header of the record at `pos`, which must lie within
    /// `[pos, limit)`. `Ok(None)`: no valid stamp for this position (not written yet, or the
    /// bytes were reused by a later lap). `Err`: a valid stamp with impossible lengths.
    ///
    /// # Ordering
    ///
    /// The stamp is loaded with Acquire (SYNC P2 / C3): a valid stamp makes the meta and the
    /// payload written before it visible.
    fn record(&self, pos: u64, limit: u64) -> Result<Option<Rec>, &'static str> {
        if pos % RECORD_ALIGN != 0 {
            return Err("misaligned position");
        }
        let cell = self.cell(pos);
        let stamp = cell.stamp.load(Ordering::Acquire);
        if stamp & !STATE_MASK != self.g.tag(pos) {
            return Ok(None);
        }
        let (len, codec, flags) = unpack_meta(cell.meta.load(Ordering::Relaxed));
        let state = stamp & STATE_MASK;
        let (size, permits) = match state {
            COMMITTED | CONSUMED => {
                if u64::from(len) > self.g.max_payload() {
                    return Err("record longer than the ring");
                }
                (record_size(u64::from(len)), 0)
            }
            ABANDONED => (u64::from(len), u64::from(codec) | u64::from(flags) << 16),
            _ => return Err("unknown record state"),
        };
        if size < RECORD_HEADER || size % RECORD_ALIGN != 0 || size > limit.saturating_sub(pos) {
            return Err("record crosses the end of its region");
        }
        Ok(Some(Rec {
            state,
            stamp,
            len: u64::from(len),
            codec,
            flags,
            size,
            permits,
        }))
    }

    /// Adds the side descriptor of the record at `pos` to `out` if it has one.
    fn note_side(&self, pos: u64, rec: &Rec, out: &mut Vec<SideDescriptor>) {
        if rec.flags & RECORD_FLAG_SIDE == 0 || rec.len != SideDescriptor::SIZE as u64 {
            return;
        }
        // SAFETY: `record` validated `len`; the record is below `head` (queue) or below every
        // cursor (broadcast), so nobody writes it until `release` passes it, which the caller
        // has not published yet.
        let (a, b) = unsafe { self.payload(pos, rec.len) };
        let mut bytes = [0u8; SideDescriptor::SIZE];
        bytes[..a.len()].copy_from_slice(&a);
        bytes[a.len()..].copy_from_slice(&b);
        if let Some(d) = SideDescriptor::decode(&bytes) {
            out.push(d);
        }
    }

    /// Releases the side segments of every record still in the ring: for the last process
    /// to detach, after which nobody can read them.
    fn release_all_sides(&self) {
        let c = self.control();
        let tail = c.tail.load(Ordering::Acquire);
        let mut pos = c.release.load(Ordering::Acquire);
        let mut sides = Vec::new();
        while pos < tail {
            match self.record(pos, tail) {
                Ok(Some(rec)) => {
                    if rec.state != ABANDONED {
                        self.note_side(pos, &rec, &mut sides);
                    }
                    pos += rec.size;
                }
                _ => break, // in flight (a dead producer) or garbage: stop
            }
        }
        for d in &sides {
            self.b.release_side(d);
        }
    }

    /// Frees ring bytes so that `total` more may fit: returns whether `release` moved.
    fn reclaim(&self, total: u64) -> Result<bool, TrySendError> {
        if self.g.is_broadcast() {
            self.advance_release_broadcast(total)
        } else {
            self.advance_release()
        }
    }

    /// Moves `release` over consumed (and skipped abandoned) records below `head`. Returns
    /// whether it moved.
    fn advance_release(&self) -> Result<bool, TrySendError> {
        let c = self.control();
        let cap = self.g.capacity;
        let mut moved = false;
        let mut r = c.release.load(Ordering::Acquire);
        loop {
            // SYNC C1: Acquire pairs with the consumers' Release CAS on head.
            let head = c.head.load(Ordering::Acquire);
            let mut end = r;
            let mut sides = Vec::new();
            // Walk locally, then publish the whole stretch with one CAS.
            while end < head && end - r < cap {
                // SYNC C3 (reclaim): `record` loads the stamp with Acquire, pairing with the
                // consumer's Release store of CONSUMED made after it read the payload.
                match self.record(end, head) {
                    Ok(Some(rec)) if rec.state == CONSUMED || rec.state == ABANDONED => {
                        if rec.state == CONSUMED {
                            self.note_side(end, &rec, &mut sides);
                        }
                        end += rec.size;
                    }
                    Ok(_) => break, // still being read (or not ours to judge)
                    Err(what) => {
                        if c.release.load(Ordering::Acquire) == r {
                            return Err(TrySendError::Corrupted(what));
                        }
                        break; // release moved meanwhile: the read may be stale
                    }
                }
            }
            if end == r {
                return Ok(moved);
            }
            // SYNC F: Release (see `reserve`); Acquire on both outcomes to continue the walk
            // from the newest value.
            match c
                .release
                .compare_exchange(r, end, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // Ours to reclaim: the side segments of those records go too (a consumer
                    // normally removed them already; this covers the ones whose consumer died).
                    for d in &sides {
                        self.b.release_side(d);
                    }
                    moved = true;
                    r = end;
                }
                Err(x) => {
                    moved |= x > r;
                    r = x;
                }
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // Receiving
    // ----------------------------------------------------------------------------------

    /// Receives one message if one is ready, handing it to `f` while it is claimed.
    ///
    /// `f` runs with one of this attachment's lanes held and the record claimed: it must copy
    /// what it needs and return, never block, wait for a lock, or run foreign code (a
    /// binding's user callbacks or deserialisers), or the attachment's other threads and
    /// every producer waiting for the space may wait on it.
    pub fn try_recv_with<R>(&self, f: impl FnOnce(RecordView<'_>) -> R) -> Result<R, TryRecvError> {
        let mut f = Some(f);
        let mut out = None;
        self.try_recv_many_with(1, |view| out = Some((f.take().unwrap())(view)))?;
        Ok(out.unwrap())
    }

    /// Receives up to `max` consecutive ready messages, handing each to `f` in order while it
    /// is claimed. Returns how many; `Err(Empty)` if none.
    pub fn try_recv_many_with(
        &self,
        max: usize,
        f: impl FnMut(RecordView<'_>),
    ) -> Result<usize, TryRecvError> {
        self.try_recv_many_limited(max, u64::MAX, f)
    }

    /// As [`Ring::try_recv_many_with`], stopping before a message that would take the payload
    /// bytes of the batch past `max_bytes` (the first message is always taken): a batch of
    /// large messages then holds only a bounded amount of memory at once.
    pub fn try_recv_many_limited(
        &self,
        max: usize,
        max_bytes: u64,
        mut f: impl FnMut(RecordView<'_>),
    ) -> Result<usize, TryRecvError> {
        if max == 0 {
            return Ok(0);
        }
        if self.g.is_broadcast() {
            return Err(TryRecvError::Corrupted(
                "a broadcast ring is read through a subscription",
            ));
        }
        // A run of only abandoned records is skipped and we look again; each pass moves
        // `head` forward, and a ring holds at most `capacity / 16` records.
        for _ in 0..=self.g.capacity / RECORD_ALIGN {
            match self.try_claim_and_take(max, max_bytes, &mut f) {
                Ok(0) => continue,
                r => return r,
            }
        }
        Err(TryRecvError::Corrupted(
            "more abandoned records than the ring can hold",
        ))
    }

    fn try_claim_and_take(
        &self,
        max: usize,
        max_bytes: u64,
        f: &mut impl FnMut(RecordView<'_>),
    ) -> Result<usize, TryRecvError> {
        let c = self.control();
        let lane = self.try_lane().ok_or(TryRecvError::Busy)?;
        // SYNC C1: Acquire pairs with the Release CAS of the consumer that moved head there; it
        // had read a tail at least that large, so our tail load below cannot be older (found
        // by the loom model `two_producers_two_consumers_each_message_once`).
        let mut head = c.head.load(Ordering::Acquire);
        let (end, count, permits) = loop {
            // Acquire: with head <= tail read after head, `[head, tail)` is reserved.
            let tail = c.tail.load(Ordering::Acquire);
            if head > tail {
                head = c.head.load(Ordering::Acquire);
                if head > c.tail.load(Ordering::Acquire) {
                    return Err(TryRecvError::Corrupted("head is ahead of tail"));
                }
                continue;
            }
            let Some((end, count, permits)) = self.scan(head, tail, max, max_bytes)? else {
                head = c.head.load(Ordering::Acquire); // stale: the records were reused
                continue;
            };
            if end == head {
                drop(lane);
                if head < tail {
                    self.check_stuck(); // a producer is writing at head, or died doing so
                }
                return Err(TryRecvError::Empty);
            }
            lane.lane.get_start.store(head, Ordering::Relaxed);
            lane.lane.get_end.store(end, Ordering::Relaxed);
            lane.lane.get_state.store(INTENT_PENDING, Ordering::Relaxed);
            // SYNC C1 (claim): Release publishes the lane intent to whoever sees the new head
            // (a reclaimer or repairer). The records' contents were acquired by the stamp loads
            // in `scan`; nothing else needs Acquire here.
            match c
                .head
                .compare_exchange_weak(head, end, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => break (end, count, permits),
                Err(x) => head = x,
            }
        };
        crash_point!(AfterClaimCas, lane, Err(TryRecvError::Corrupted("crashed")));
        if self.g.maxsize > 0 {
            // Relaxed: see `take_permits`. Done before OWNED, so a repairer knows an OWNED
            // claim has given its permits back.
            c.count.fetch_sub(count + permits, Ordering::Relaxed);
        }
        lane.lane.get_state.store(INTENT_OWNED, Ordering::Relaxed);
        crash_point!(AfterClaim, lane, Err(TryRecvError::Corrupted("crashed")));
        let mut pos = head;
        let mut result = Ok(count as usize);
        while pos < end {
            // Re-validated: another process could have scribbled on the header since `scan`.
            let rec = match self.record(pos, end) {
                Ok(Some(rec)) if rec.state == COMMITTED || rec.state == ABANDONED => rec,
                Ok(_) => {
                    result = Err(TryRecvError::Corrupted("claimed record changed state"));
                    break;
                }
                Err(what) => {
                    result = Err(TryRecvError::Corrupted(what));
                    break;
                }
            };
            if rec.state == COMMITTED {
                // SAFETY: the CAS on head gave this lane `[head, end)`; `record` checked that
                // `len <= max_payload() < capacity`.
                let (first, second) = unsafe { self.payload(pos, rec.len) };
                let done = MarkConsumed {
                    cell: self.cell(pos),
                    stamp: self.g.tag(pos) | CONSUMED,
                };
                f(RecordView {
                    codec: rec.codec,
                    flags: rec.flags,
                    first,
                    second,
                });
                drop(done);
            }
            pos += rec.size;
        }
        lane.lane.get_state.store(INTENT_NONE, Ordering::Release);
        drop(lane);
        self.slot_at(self.slot)
            .counters
            .gets
            .fetch_add(count, Ordering::Relaxed);
        self.notify(Side::Space);
        result
    }

    /// Scans ready records from `head` (below `tail`). Returns the end of the ready run, the
    /// messages in it and the permits carried by abandoned records in it; `None` if `head`
    /// moved meanwhile, so what was read may be stale.
    fn scan(
        &self,
        head: u64,
        tail: u64,
        max: usize,
        max_bytes: u64,
    ) -> Result<Option<(u64, u64, u64)>, TryRecvError> {
        let mut pos = head;
        let mut count = 0u64;
        let mut permits = 0u64;
        let mut bytes = 0u64;
        while pos < tail && (count as usize) < max {
            // SYNC P2 (publish): `record` loads the stamp with Acquire, pairing with the
            // producer's Release store.
            let rec = match self.record(pos, tail) {
                Ok(Some(rec)) if rec.state == COMMITTED || rec.state == ABANDONED => rec,
                Ok(_) => break, // not written yet (or being repaired)
                Err(what) => {
                    return if self.control().head.load(Ordering::Acquire) == head {
                        Err(TryRecvError::Corrupted(what))
                    } else {
                        Ok(None)
                    };
                }
            };
            if rec.state == COMMITTED {
                bytes = bytes.saturating_add(rec.len);
                if count > 0 && bytes > max_bytes {
                    break;
                }
                count += 1;
            } else {
                permits += rec.permits;
            }
            pos += rec.size;
        }
        Ok(Some((pos, count, permits)))
    }

    /// Whether a record is ready at `head` (a cheap check for waiters).
    fn data_ready(&self) -> bool {
        let c = self.control();
        let head = c.head.load(Ordering::Relaxed);
        if head >= c.tail.load(Ordering::Acquire) {
            return false;
        }
        let state = self.cell(head).stamp.load(Ordering::Acquire) ^ self.g.tag(head);
        state == COMMITTED || state == ABANDONED
    }

    /// Whether the record at `head` is reserved but not yet written (its producer is busy,
    /// or dead).
    fn head_in_flight(&self) -> bool {
        let c = self.control();
        c.head.load(Ordering::Relaxed) < c.tail.load(Ordering::Acquire) && !self.data_ready()
    }

    /// Whether `n` messages of `total` bytes could be reserved now.
    fn space_ready(&self, n: u64, total: u64) -> bool {
        let c = self.control();
        if self.g.maxsize > 0 && c.count.load(Ordering::Relaxed) + n > self.g.maxsize.max(n) {
            return false;
        }
        let free = |c: &Control| {
            let tail = c.tail.load(Ordering::Relaxed);
            let release = c.release.load(Ordering::Acquire);
            tail.saturating_sub(release).saturating_add(total) <= self.g.capacity
        };
        free(c) || (matches!(self.reclaim(total), Ok(true)) && free(c))
    }

    // ----------------------------------------------------------------------------------
    // Waiting
    // ----------------------------------------------------------------------------------

    fn event(&self, side: Side) -> &Event {
        match side {
            Side::Data => &self.control().data_event,
            Side::Space => &self.control().space_event,
        }
    }

    /// Wakes every sleeper of both events, in every process (they re-check and sleep again if
    /// nothing changed): used when a handle closes, so its own blocked calls notice.
    pub fn wake_all_waiters(&self) {
        for side in [Side::Data, Side::Space] {
            let ev = self.event(side);
            // Release: only changes the futex word; sleepers re-read the state.
            ev.seq.fetch_add(1, Ordering::Release);
            self.b.wake_all(&ev.seq);
        }
    }

    /// Wakes the sleepers of `side`, if there are any.
    fn notify(&self, side: Side) {
        // SYNC W (no lost wake-up): this SeqCst fence and the waiter's second SeqCst fence
        // order "publish, then read waiters and pending" against "count in waiters and clear
        // pending, then re-check": either we see the waiter (and no wake-up pending since it
        // cleared), or the waiter sees what we published.
        fence(Ordering::SeqCst);
        self.wake_sleepers(side);
    }

    /// As [`Ring::notify`], right after a `notify` of the other side (whose fence serves).
    fn notify_again(&self, side: Side) {
        self.wake_sleepers(side);
    }

    fn wake_sleepers(&self, side: Side) {
        let ev = self.event(side);
        // A wake-up already pending reaches every current sleeper: each loaded `seq` before
        // it cleared `pending`, so the pending notifier's increment (which follows its swap,
        // itself after their clear) changes the word they sleep on. Skipping the system call
        // then matters when sleepers are slow to run (more processes than CPUs): without it
        // every publish would wake them again. Relaxed loads: ordered by the fence above.
        if ev.waiters.load(Ordering::Relaxed) > 0
            && ev.pending.load(Ordering::Relaxed) == 0
            && ev.pending.swap(1, Ordering::AcqRel) == 0
        {
            // Release: a woken waiter re-reads the state anyway; this only changes the word.
            ev.seq.fetch_add(1, Ordering::Release);
            self.b.wake_all(&ev.seq);
        }
    }

    /// Spins, then sleeps once until `ready()`, a notification, the deadline or a signal.
    fn wait_once(
        &self,
        side: Side,
        until: Option<Instant>,
        ready: &dyn Fn() -> bool,
        stuck: &dyn Fn() -> bool,
    ) -> Wake {
        // More processes attached than CPUs: a pure spin would keep the CPU from the process
        // we wait for (measured: 1 publisher, 3 subscribers on 2 CPUs), so yield it between
        // checks, and for a shorter while (each check is then a system call).
        let cpus = self.b.cpus();
        let crowded = {
            let attached = self.control().attached.load(Ordering::Relaxed);
            attached != ATTACHED_CLOSED && attached > cpus
        };
        // Spinning only pays when the other side runs meanwhile on another CPU: a process
        // that may run on one CPU only (its affinity) goes straight to sleep.
        let spin = if cpus <= 1 {
            Duration::ZERO
        } else if crowded {
            SPIN / 5
        } else {
            SPIN
        };
        let spin_end = Instant::now() + spin;
        loop {
            for _ in 0..64 {
                if ready() {
                    return Wake::Ready;
                }
                if crowded {
                    yield_now();
                } else {
                    spin_hint();
                }
            }
            let now = Instant::now();
            if now >= spin_end {
                break;
            }
            if until.is_some_and(|d| now >= d) {
                return Wake::TimedOut;
            }
        }
        let ev = self.event(side);
        let sleeping = self.sleeping(side);
        // SYNC W: announce, fence, then read the word and re-check (see `notify`). The slot's
        // own count goes up after, and down before, the shared one: a process killed in between
        // leaves `waiters` too high (an extra wake-up call), never too low (a lost wake-up).
        ev.waiters.fetch_add(1, Ordering::SeqCst);
        sleeping.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let seq = ev.seq.load(Ordering::Acquire);
        // After loading `seq` (see `wake_sleepers`), before re-checking: from here on a
        // notifier either wakes us or finds a wake-up pending that changes `seq`.
        ev.pending.store(0, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let mut wake = Wake::Again;
        if ready() {
            wake = Wake::Ready;
        } else {
            let mut timeout = until.map(|d| d.saturating_duration_since(Instant::now()));
            // A notifier killed between setting `pending` and bumping `seq` would leave the
            // others skipping their wake-ups: no sleep is longer than MAX_SLEEP.
            timeout = Some(timeout.map_or(MAX_SLEEP, |t| t.min(MAX_SLEEP)));
            if stuck() {
                timeout = Some(timeout.map_or(STUCK_POLL, |t| t.min(STUCK_POLL)));
            }
            if timeout == Some(Duration::ZERO) {
                wake = Wake::TimedOut;
            } else {
                self.slot_at(self.slot)
                    .counters
                    .waits
                    .fetch_add(1, Ordering::Relaxed);
                if self.b.wait(&ev.seq, seq, timeout) {
                    wake = Wake::Interrupted;
                }
            }
        }
        sleeping.fetch_sub(1, Ordering::Relaxed);
        ev.waiters.fetch_sub(1, Ordering::Release);
        if wake == Wake::Again && stuck() {
            self.check_stuck();
        }
        wake
    }

    fn sleeping(&self, side: Side) -> &AtomicU32 {
        let s = self.slot_at(self.slot);
        match side {
            Side::Data => &s.sleeping_data,
            Side::Space => &s.sleeping_space,
        }
    }

    /// Waits until `ready()`: spins about [`SPIN`], then sleeps. Returns `true` when ready;
    /// `false` at `until` or when a signal interrupted the sleep.
    fn wait_for(
        &self,
        side: Side,
        until: Option<Instant>,
        ready: &dyn Fn() -> bool,
        stuck: &dyn Fn() -> bool,
    ) -> bool {
        loop {
            match self.wait_once(side, until, ready, stuck) {
                Wake::Ready => return true,
                Wake::TimedOut | Wake::Interrupted => return false,
                Wake::Again if until.is_some_and(|u| Instant::now() >= u) => return ready(),
                Wake::Again => {}
            }
        }
    }

    /// Waits until a message may be ready, at most until `until`. Another consumer may still
    /// take it first.
    fn wait_for_data(&self, until: Option<Instant>) -> bool {
        self.wait_for(Side::Data, until, &|| self.data_ready(), &|| {
            self.head_in_flight()
        })
    }

    /// Waits until `n` messages of `total_bytes` may fit, at most until `until`. Another
    /// producer may take the space first.
    fn wait_for_space(&self, n: u64, total_bytes: u64, until: Option<Instant>) -> bool {
        let stuck = || {
            let c = self.control();
            if self.g.is_broadcast() {
                return self.space_stuck_broadcast();
            }
            c.release.load(Ordering::Relaxed) < c.head.load(Ordering::Relaxed)
        };
        self.wait_for(
            Side::Space,
            until,
            &|| self.space_ready(n, total_bytes),
            &stuck,
        )
    }

    // ----------------------------------------------------------------------------------
    // Observing
    // ----------------------------------------------------------------------------------

    /// Messages in the queue (exact when `maxsize > 0`, otherwise approximate under load).
    pub fn len(&self) -> u64 {
        let c = self.control();
        if self.g.maxsize > 0 {
            return c.count.load(Ordering::Relaxed);
        }
        if self.g.is_broadcast() {
            // Messages still in the ring (published and not yet reclaimed).
            let release = c.release.load(Ordering::Acquire);
            let tail = c.tail.load(Ordering::Acquire);
            return self.count_messages(release, tail);
        }
        let s = self.stats_counters();
        s.0.saturating_sub(s.1)
    }

    /// Whether no message is queued.
    pub fn is_empty(&self) -> bool {
        let c = self.control();
        c.head.load(Ordering::Relaxed) >= c.tail.load(Ordering::Relaxed)
    }

    /// Whether a put of one small message would not fit now.
    pub fn is_full(&self) -> bool {
        !self.space_ready(1, RECORD_HEADER)
    }

    fn stats_counters(&self) -> (u64, u64, u64) {
        let t = &self.control().totals;
        let (mut puts, mut gets, mut waits) = (
            t.puts.load(Ordering::Relaxed),
            t.gets.load(Ordering::Relaxed),
            t.waits.load(Ordering::Relaxed),
        );
        for i in 0..self.g.max_slots {
            let s = self.slot_at(i);
            if s.state.load(Ordering::Relaxed) & 0xFF == SLOT_FREE {
                continue;
            }
            // Wrapping: counters come from shared memory (garbage must not panic), and the
            // atomics they fold into wrap too.
            puts = puts.wrapping_add(s.counters.puts.load(Ordering::Relaxed));
            gets = gets.wrapping_add(s.counters.gets.load(Ordering::Relaxed));
            waits = waits.wrapping_add(s.counters.waits.load(Ordering::Relaxed));
        }
        (puts, gets, waits)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let c = self.control();
        let (puts, gets, waits) = self.stats_counters();
        let attached = c.attached.load(Ordering::Relaxed);
        Stats {
            depth: self.len(),
            bytes_used: c
                .tail
                .load(Ordering::Relaxed)
                .saturating_sub(c.release.load(Ordering::Relaxed)),
            capacity: self.g.capacity,
            maxsize: self.g.maxsize,
            puts,
            gets,
            waits,
            attached: if attached == ATTACHED_CLOSED {
                0
            } else {
                attached
            },
            lost: c.totals.lost.load(Ordering::Relaxed),
            abandoned: c.totals.abandoned.load(Ordering::Relaxed),
            reaped: c.totals.reaped.load(Ordering::Relaxed),
            tail: c.tail.load(Ordering::Relaxed),
            head: c.head.load(Ordering::Relaxed),
        }
    }

    /// Walks the committed records from `head` and returns how many there are and the sum of
    /// their payload lengths (a snapshot; it stops at the first record not yet committed).
    /// O(messages queued): for occasional accounting, not for hot paths.
    pub fn queued_payload(&self) -> (u64, u64) {
        let c = self.control();
        let head = c.head.load(Ordering::Acquire);
        let tail = c.tail.load(Ordering::Acquire);
        let (mut pos, mut count, mut bytes) = (head, 0u64, 0u64);
        while pos < tail {
            match self.record(pos, tail) {
                Ok(Some(rec)) if rec.state == COMMITTED || rec.state == ABANDONED => {
                    if rec.state == COMMITTED {
                        count += 1;
                        bytes += rec.len;
                    }
                    pos += rec.size;
                }
                _ => break, // in flight, reused by a later lap, or garbage: stop the snapshot
            }
        }
        (count, bytes)
    }
}

/// A validated record header.
#[derive(Clone, Copy, Debug)]
struct Rec {
    state: u64,
    stamp: u64,
    len: u64,
    codec: u16,
    flags: u16,
    /// Bytes the record occupies (for ABANDONED: the bytes to skip).
    size: u64,
    /// Maxsize permits an ABANDONED record carries.
    permits: u64,
}

/// Marks a claimed record consumed when dropped, even if the receiving closure panics.
struct MarkConsumed<'a> {
    cell: &'a Cell,
    stamp: u64,
}

impl Drop for MarkConsumed<'_> {
    fn drop(&mut self) {
        // SYNC C3 (reclaim): Release; the reads of the payload happen before a producer that
        // sees CONSUMED (Acquire in `advance_release`) overwrites the bytes.
        self.cell.stamp.store(self.stamp, Ordering::Release);
    }
}

impl core::fmt::Display for TrySendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Full => write!(f, "queue is full"),
            Self::TooLarge { size, max } => {
                write!(f, "message of {size} bytes can never fit (at most {max})")
            }
            Self::Corrupted(w) => write!(f, "corrupted queue: {w}"),
            Self::Busy => write!(f, "{BUSY}"),
        }
    }
}
impl std::error::Error for TrySendError {}

const BUSY: &str = "every lane of this handle is in use by its other threads";

impl core::fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Empty => write!(f, "queue is empty"),
            Self::Corrupted(w) => write!(f, "corrupted queue: {w}"),
            Self::Busy => write!(f, "{BUSY}"),
        }
    }
}
impl std::error::Error for TryRecvError {}

impl core::fmt::Display for SendTimeoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Timeout => write!(f, "timed out waiting for space"),
            Self::TooLarge { size, max } => {
                write!(f, "message of {size} bytes can never fit (at most {max})")
            }
            Self::Corrupted(w) => write!(f, "corrupted queue: {w}"),
            Self::Interrupted => write!(f, "interrupted"),
        }
    }
}
impl std::error::Error for SendTimeoutError {}

impl core::fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Timeout => write!(f, "timed out waiting for a message"),
            Self::Corrupted(w) => write!(f, "corrupted queue: {w}"),
            Self::Interrupted => write!(f, "interrupted"),
        }
    }
}
impl std::error::Error for RecvTimeoutError {}

impl SendTimeoutError {
    /// The blocking-call error for a failed attempt that does not wait (not `Full`/`Busy`).
    fn from_attempt(e: TrySendError) -> Self {
        match e {
            TrySendError::TooLarge { size, max } => Self::TooLarge { size, max },
            TrySendError::Corrupted(w) => Self::Corrupted(w),
            TrySendError::Full | TrySendError::Busy => Self::Timeout,
        }
    }
}
