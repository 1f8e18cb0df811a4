//! The slot table and the lanes: attaching (taking a slot), detaching, reaping the slots of
//! dead processes, and the process-local allocation of lanes and of the read turn.

use super::{AttachError, Ring};
use crate::backing::Backing;
use crate::layout::*;
use crate::sync::{spin_hint, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// What [`Ring::detach`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detached {
    /// Other processes are still attached (or the segment is persistent).
    Others,
    /// This was the last process of a non-persistent segment: the caller must unlink it.
    Last,
    /// This was the last process, and the segment stays for a later one (see [`Linger`]).
    Kept,
}

/// What the last process to detach from a segment keeps it for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linger {
    /// Keep a queue while messages are queued in it (nothing is lost when a producer exits
    /// before any consumer came).
    pub while_messages: bool,
    /// The time now (ns since the Unix epoch): a `keep_until_ns` later than it (a handle in
    /// flight, see [`Ring::keep_alive_until`]) keeps the segment.
    pub now_ns: u64,
    /// The segment's name was removed: persistence no longer applies, the last detach frees
    /// it whatever it holds.
    pub removed: bool,
}

impl Linger {
    /// Never keep a non-persistent segment (the behaviour of [`Ring::detach`]).
    pub const NEVER: Self = Self {
        while_messages: false,
        now_ns: 0,
        removed: false,
    };
}

/// The lane a thread tries first, so that a few threads of one attachment seldom meet on
/// one: from where its stack is. Threads' stacks are mappings of their own, a stack size
/// apart (2 MiB for Rust's threads, 8 MiB for C's and Python's by default), so both spacings
/// are folded in. A thread-local would do as well, but in a shared library (the Python
/// extension) each access is a `__tls_get_addr` call: about 25 instructions per attempt,
/// measured. Only a hint: any start is correct.
#[inline]
fn lane_hint() -> usize {
    let marker = 0u8;
    let at = std::ptr::addr_of!(marker) as usize;
    ((at >> 21) ^ (at >> 23)) % LANES
}

/// A lane taken for one attempt; given back on drop.
pub(super) struct LaneGuard<'a> {
    pub(super) lane: &'a Lane,
    taken: &'a LaneLock,
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        // Relaxed: the shared `busy` word only informs debugging dumps; nobody decides on it.
        self.lane.busy.store(0, Ordering::Relaxed);
        self.taken.give_back();
    }
}

/// A process-local try-lock of one lane, alone on its cache line (two lines: the adjacent
/// line prefetcher pairs them).
#[repr(align(128))]
#[derive(Debug, Default)]
pub(super) struct LaneLock(AtomicU32);

impl LaneLock {
    /// Takes the lane if it is free.
    #[inline]
    pub(super) fn try_take(&self) -> bool {
        // Relaxed: a hint; the swap decides. SYNC L (lane hand-over): the swap's Acquire
        // pairs with the Release in `give_back`, so we see the last holder's cleared intents.
        self.0.load(Ordering::Relaxed) == 0 && self.0.swap(1, Ordering::Acquire) == 0
    }

    /// Gives the lane back. SYNC L: Release, so the lane's next holder sees its cleared
    /// intents.
    #[inline]
    pub(super) fn give_back(&self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Rounds over the lanes a thread makes before it reports [`super::TrySendError::Busy`]:
/// lanes are held only for one bounded, non-blocking attempt, so a free one normally turns
/// up within a few rounds; if not, the caller waits with its hooks (a binding releases its
/// interpreter lock) and tries again, instead of spinning here.
const LANE_ROUNDS: usize = 8;

/// A process-local try-lock for one attempt (see `Ring::reader`); released on drop.
pub(super) struct ReaderGuard<'a>(&'a AtomicU32);

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        // Release: the next reader sees our cursor bookkeeping (`expected_cursor`).
        self.0.store(0, Ordering::Release);
    }
}

impl<B: Backing> Ring<B> {
    /// A `Ring` over a validated segment, holding slot `slot` (not claimed here).
    pub(super) fn unattached(b: B, g: Geometry, slot: u32) -> Self {
        Self {
            b,
            g,
            slot,
            last_stuck_check: AtomicU64::new(0),
            epoch: Instant::now(),
            expected_cursor: AtomicU64::new(NO_CURSOR),
            lanes_taken: Default::default(),
            reader: AtomicU32::new(0),
            holds: std::array::from_fn(|_| super::holds::HoldEntry::free()),
            ahead: AtomicU64::new(NO_CURSOR),
            sides_ahead: AtomicU32::new(0),
        }
    }

    /// Checks that `b` holds an initialised segment of this layout; its geometry.
    pub(super) fn validate(b: B) -> Result<(B, Geometry), (B, AttachError)> {
        if b.size() < control_size() {
            let len = b.size();
            return Err((b, AttachError::Layout(LayoutError::TooSmall { len })));
        }
        let c = Self::control_of(&b);
        // SYNC R (ready): Acquire pairs with the creator's Release store.
        if c.id.ready.load(Ordering::Acquire) != 1 {
            return Err((b, AttachError::NotReady));
        }
        match Geometry::read(&c.id, b.size()) {
            Ok(g) => Ok((b, g)),
            Err(e) => Err((b, AttachError::Layout(e))),
        }
    }

    pub(super) fn attach(b: B) -> Result<Self, (B, AttachError)> {
        let (b, g) = Self::validate(b)?;
        let c = Self::control_of(&b);
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
        Self::take_slot(b, g)
    }

    /// The creator's attach: it was counted in `attached` before the segment was published
    /// (see [`Ring::create`]), so it only takes a slot.
    pub(super) fn attach_counted(b: B) -> Result<Self, (B, AttachError)> {
        let (b, g) = Self::validate(b)?;
        Self::take_slot(b, g)
    }

    /// The rest of an attach, once counted in `attached`: a slot, or uncounted again.
    fn take_slot(b: B, g: Geometry) -> Result<Self, (B, AttachError)> {
        let mut ring = Self::unattached(b, g, u32::MAX);
        match ring.claim_slot() {
            Some(slot) => {
                // Relaxed: informational (a kept segment is in use again).
                ring.control()
                    .life
                    .kept_since_ns
                    .store(0, Ordering::Relaxed);
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
            let state = SlotWord::unpack(s.state.load(Ordering::Relaxed));
            if state.state == SLOT_REAPING {
                continue;
            }
            if !self.b.try_lease(i) {
                continue; // a live process holds it
            }
            // We hold the lease: any holder of this slot is gone.
            let state = SlotWord::unpack(s.state.load(Ordering::Acquire));
            if state.state == SLOT_ATTACHED && !self.reap(i, state) {
                self.b.drop_lease(i);
                continue;
            }
            let free = SlotWord::unpack(s.state.load(Ordering::Acquire));
            if free.state != SLOT_FREE {
                self.b.drop_lease(i);
                continue;
            }
            let next = free.next_claim(SLOT_ATTACHED);
            s.pid.store(self.b.pid(), Ordering::Relaxed);
            for c in [&s.counters.puts, &s.counters.gets, &s.counters.waits] {
                c.store(0, Ordering::Relaxed);
            }
            for l in &s.lanes {
                l.put_state.store(PutIntent::NONE.pack(), Ordering::Relaxed);
                l.get_state.store(INTENT_NONE, Ordering::Relaxed);
                l.busy.store(0, Ordering::Relaxed);
            }
            s.cursor.store(NO_CURSOR, Ordering::Relaxed);
            s.missed.store(0, Ordering::Relaxed);
            // SYNC S (slot claim): AcqRel; Release publishes the cleared slot above.
            if s.state
                .compare_exchange(
                    free.pack(),
                    next.pack(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
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
    fn reap(&self, i: u32, state: SlotWord) -> bool {
        let s = self.slot_at(i);
        let reaping = state.with_state(SLOT_REAPING).pack();
        if s.state
            .compare_exchange(state.pack(), reaping, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        if !self.repair_slot(i) {
            // Not finished: leave it attached (and dead) for a later reap to complete.
            s.state.store(state.pack(), Ordering::Release);
            return false;
        }
        let c = self.control();
        c.totals.reaped.fetch_add(1, Ordering::Relaxed);
        self.fold_counters(s);
        // SYNC A: the dead process's count goes; AcqRel as every change of `attached`.
        c.attached.fetch_sub(1, Ordering::AcqRel);
        s.state
            .store(state.with_state(SLOT_FREE).pack(), Ordering::Release);
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
        self.detach_with(Linger::NEVER)
    }

    /// Marks handles of this segment in flight until `ns` (since the Unix epoch): until then
    /// a last detach keeps it, so that the process they reach can still attach.
    pub fn keep_alive_until(&self, ns: u64) {
        let life = &self.control().life;
        // Relaxed: hints read by the last detacher; the attach count (SYNC A) orders the
        // rest, and a late update only keeps the segment longer (or shorter, never past
        // `keep_until_ns`).
        life.in_flight.fetch_add(1, Ordering::Relaxed);
        life.keep_until_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// A handle sent with [`Ring::keep_alive_until`] arrived (its process attached): one
    /// fewer reason to keep the segment.
    pub fn arrived(&self) {
        // Relaxed: see `keep_alive_until`. Saturating: one sent handle may be received twice.
        let _ =
            self.control()
                .life
                .in_flight
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// As [`Ring::detach`], keeping the segment as `linger` says when this is the last
    /// process. A kept segment has no attached process; the next to open it attaches as
    /// usual, and `gc` decides about those kept too long.
    pub fn detach_with(self, linger: Linger) -> (B, Detached) {
        self.reap_dead();
        let c = self.control();
        let s = self.slot_at(self.slot);
        if s.cursor.load(Ordering::Relaxed) != NO_CURSOR {
            self.unsubscribe();
        }
        self.fold_counters(s);
        let state = SlotWord::unpack(s.state.load(Ordering::Relaxed));
        // SYNC S: Release publishes the folded counters before the slot is reused.
        s.state
            .store(state.with_state(SLOT_FREE).pack(), Ordering::Release);
        self.b.drop_lease(self.slot);
        let persistent = self.g.flags & FLAG_PERSISTENT != 0 && !linger.removed;
        // Decided before we leave: while we are attached nobody can close the segment.
        let keep = !linger.removed
            && ((linger.while_messages && !self.g.is_broadcast() && !self.is_empty())
                || (c.life.in_flight.load(Ordering::Relaxed) > 0
                    && c.life.keep_until_ns.load(Ordering::Relaxed) > linger.now_ns));
        let mut n = c.attached.load(Ordering::Acquire);
        let outcome = loop {
            let (next, outcome) = if n > 1 || persistent {
                (n.saturating_sub(1), Detached::Others)
            } else if keep {
                (0, Detached::Kept)
            } else {
                (ATTACHED_CLOSED, Detached::Last)
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
        match outcome {
            Detached::Last => self.release_all_sides(),
            // Relaxed: informational (for gc), as `keep_until_ns`.
            Detached::Kept => c
                .life
                .kept_since_ns
                .store(linger.now_ns.max(1), Ordering::Relaxed),
            Detached::Others => {}
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
            let state = SlotWord::unpack(s.state.load(Ordering::Acquire));
            if state.state != SLOT_ATTACHED || self.b.lease_held_elsewhere(i) {
                continue;
            }
            if self.b.try_lease(i) {
                let state = SlotWord::unpack(s.state.load(Ordering::Acquire));
                if state.state == SLOT_ATTACHED && self.reap(i, state) {
                    n += 1;
                }
                self.b.drop_lease(i);
            }
        }
        n
    }

    /// Takes a free lane of this process's slot for one attempt, or `None` if this
    /// attachment's other threads hold all of them for a while (the caller reports `Busy`).
    pub(super) fn try_lane(&self) -> Option<LaneGuard<'_>> {
        let lanes = &self.slot_at(self.slot).lanes;
        // Models must be deterministic: loom runs its threads on one OS thread.
        let start = if cfg!(loom) { 0 } else { lane_hint() };
        for _ in 0..LANE_ROUNDS {
            for k in 0..LANES {
                let i = (start + k) % LANES;
                if self.lanes_taken[i].try_take() {
                    // Relaxed: informational (see `LaneGuard::drop`).
                    lanes[i].busy.store(1, Ordering::Relaxed);
                    return Some(LaneGuard {
                        lane: &lanes[i],
                        taken: &self.lanes_taken[i],
                    });
                }
            }
            spin_hint();
        }
        None
    }

    /// Takes this attachment's read turn for one attempt (broadcast subscriptions), or
    /// `None` if another of its threads is reading (the caller reports `Busy`).
    pub(super) fn try_reader(&self) -> Option<ReaderGuard<'_>> {
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

    /// Releases the side segments of every record still in the ring: for the last process
    /// to detach, after which nobody can read them.
    pub(super) fn release_all_sides(&self) {
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
}
