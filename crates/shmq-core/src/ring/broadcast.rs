//! Broadcast rings: the same ring, records, publishing and waiting as the queue, but instead
//! of one shared `head` each subscriber has its own cursor (in its slot), and every subscriber
//! reads every record. Publishers reclaim bytes (move `release`) only below the slowest live
//! subscriber's cursor, or, with [`FLAG_LAG`], they move lagging cursors forward themselves
//! and count the messages those subscribers missed.
//!
//! See `docs/protocol.md` ("Broadcast") for the synchronisation points J, B and E.

use super::shutdown::Phase;
use super::{Ring, Side, TrySendError};
use crate::backing::Backing;
use crate::layout::*;
use crate::ring::RecordView;
use crate::sync::Ordering;
use std::time::Instant;

/// What a broadcast read hands to its callback.
#[derive(Debug)]
pub enum Delivery<'a> {
    /// The next message (borrowed from the ring).
    Message(RecordView<'a>),
    /// The messages delivered so far in this call may have been overwritten while they were
    /// read (the subscriber lagged, [`FLAG_LAG`] only): drop them.
    Discard,
}

/// Why a non-blocking broadcast read returned no message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryReadError {
    /// No message published since the last one read.
    Empty,
    /// The subscriber fell behind and publishers overwrote `missed` messages it had not read
    /// ([`FLAG_LAG`] rings only). The next read continues with the oldest message available.
    Lagged {
        /// Messages skipped.
        missed: u64,
    },
    /// This attachment is not subscribed.
    NotSubscribed,
    /// The shared memory holds impossible values.
    Corrupted(&'static str),
    /// See [`TrySendError::Unsupported`].
    Unsupported(&'static str),
    /// Another thread of this attachment is reading: try again (after yielding).
    Busy,
    /// The ring was shut down and nothing is left to read (or it was shut down immediately).
    ShutDown,
}

/// Why a blocking broadcast read returned no message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadTimeoutError {
    /// The deadline passed.
    Timeout,
    /// See [`TryReadError::Lagged`].
    Lagged {
        /// Messages skipped.
        missed: u64,
    },
    /// See [`TryReadError::NotSubscribed`].
    NotSubscribed,
    /// See [`TryReadError::Corrupted`].
    Corrupted(&'static str),
    /// See [`TrySendError::Unsupported`].
    Unsupported(&'static str),
    /// The caller's [`super::Waiter`] asked to stop.
    Interrupted,
    /// See [`TryReadError::ShutDown`].
    ShutDown,
}

/// One subscriber, as [`Ring::subscribers`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriberInfo {
    /// Slot index (stable while it stays subscribed).
    pub slot: u32,
    /// Process id of the subscriber (informational).
    pub pid: u32,
    /// Byte position of the next record it reads.
    pub position: u64,
    /// Bytes published that it has not read yet.
    pub lag_bytes: u64,
    /// Messages published that it has not read yet (counted up to the first record in flight).
    pub lag_messages: u64,
    /// Messages it missed (overwritten before it read them) and has not been told about yet.
    pub missed_pending: u64,
}

/// How many bytes a lag-mode publisher frees at least when it must overwrite: freeing a
/// sixteenth of the ring at once amortises the scan of the subscriber table.
const LAG_CHUNK_DIVISOR: u64 = 16;

/// Rounds a publisher makes to reclaim before it settles for what it got. A round ends
/// without reclaiming only when `release` moved under it (another publisher reclaimed: the
/// progress it wanted may already be there) or the segment holds garbage that keeps
/// changing; live publishers never need more than a few. The bound keeps a send on a
/// scribbled segment from looping forever.
const RECLAIM_ROUNDS: usize = 1000;

/// How many times a subscriber whose cursor a lag-mode publisher moved looks for the
/// `missed` count that publisher adds right after its CAS on the cursor (a few instructions
/// later, see `evict`): tens of microseconds of `pause`, far longer than that gap unless the
/// publisher is descheduled in it. A count that arrives later is reported with the next read.
const LATE_MISSED_SPINS: usize = 10_000;

impl<B: Backing> Ring<B> {
    /// Whether this is a broadcast ring.
    pub fn is_broadcast(&self) -> bool {
        self.g.is_broadcast()
    }

    /// Whether publishers overwrite records lagging subscribers have not read.
    pub fn lag_policy(&self) -> bool {
        self.g.flags & FLAG_LAG != 0
    }

    /// Makes this attachment a subscriber: it reads every message published from now on.
    ///
    /// # Ordering (SYNC J, join)
    ///
    /// Publishers reclaim bytes only below the cursors they see in a scan that follows an
    /// AcqRel read-modify-write `t0` of `tail` (`fetch_add(0)`), and never beyond `t0`. We
    /// store a first cursor, then read `floor` from `tail` with the same kind of RMW. RMWs of
    /// `tail` are totally ordered: if the publisher's came first, `t0 <= floor` and it cannot
    /// reclaim past `floor`; if ours came first, the publisher's RMW acquires ours, so our
    /// cursor store happens before its scan and it does not pass that cursor. Moving the
    /// cursor to `floor` therefore never leaves it below `release`: a subscriber never reads
    /// reclaimed bytes (in the default policy; with [`FLAG_LAG`] publishers move cursors, see
    /// `evict`). (RMWs rather than SeqCst loads: the argument then needs no single total order
    /// of SeqCst operations, and loom, which models SeqCst as AcqRel, can check it.)
    pub fn subscribe(&self) {
        debug_assert!(self.is_broadcast());
        let c = self.control();
        let s = self.slot_at(self.slot);
        s.missed.store(0, Ordering::Relaxed);
        self.forget_holds();
        let first = c.tail.load(Ordering::Acquire);
        s.cursor.store(first, Ordering::Release);
        let floor = c.tail.fetch_add(0, Ordering::AcqRel);
        let now = match s
            .cursor
            .compare_exchange(first, floor, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => floor,
            Err(moved) => moved, // a lag-mode publisher moved us already
        };
        self.expected_cursor.store(now, Ordering::Relaxed);
    }

    /// Stops reading: publishers no longer wait for (or count) this attachment.
    pub fn unsubscribe(&self) {
        // Held records go with the subscription.
        self.forget_holds();
        let s = self.slot_at(self.slot);
        // SYNC B: Release, as a read: publishers that see NO_CURSOR may reclaim everything.
        s.cursor.store(NO_CURSOR, Ordering::Release);
        self.notify(Side::Space);
    }

    /// Whether this attachment is subscribed.
    pub fn is_subscribed(&self) -> bool {
        self.slot_at(self.slot).cursor.load(Ordering::Relaxed) != NO_CURSOR
    }

    /// Reclaims bytes of a broadcast ring so that `total` more bytes fit. Returns whether
    /// `release` moved.
    pub(super) fn advance_release_broadcast(&self, total: u64) -> Result<bool, TrySendError> {
        let c = self.control();
        let cap = self.g.capacity;
        let lag = self.lag_policy();
        let mut moved = false;
        // SYNC F: Acquire, as in the queue.
        let mut r = c.release.load(Ordering::Acquire);
        for _ in 0..RECLAIM_ROUNDS {
            // SYNC J: an AcqRel RMW before the scan of the cursors (see `subscribe`).
            let t0 = c.tail.fetch_add(0, Ordering::AcqRel);
            if r > t0 {
                let again = c.release.load(Ordering::Acquire);
                if again == r {
                    return Err(TrySendError::Corrupted("release is ahead of tail"));
                }
                r = again;
                continue;
            }
            let want = if lag {
                // Free what this send needs, at least a chunk; never more than is published.
                t0.saturating_add(total)
                    .saturating_sub(cap)
                    .max(r.saturating_add(cap / LAG_CHUNK_DIVISOR))
                    .min(t0)
            } else {
                self.slowest_cursor(r, t0)
            };
            // Walk whole published records from `r` towards `want`.
            let mut end = r;
            let mut before = r;
            let mut sides = Vec::new();
            let mut sides_before = 0;
            while end < want {
                match self.record(end, t0) {
                    Ok(Some(rec)) if rec.state == COMMITTED || rec.state == ABANDONED => {
                        before = end;
                        sides_before = sides.len();
                        if rec.state == COMMITTED {
                            self.note_side(end, &rec, &mut sides);
                        }
                        end += rec.size;
                    }
                    Ok(_) => break, // in flight: its producer is still writing it
                    Err(what) => {
                        if c.release.load(Ordering::Acquire) == r {
                            return Err(TrySendError::Corrupted(what));
                        }
                        break; // stale: another publisher reclaimed meanwhile
                    }
                }
            }
            if !lag && end > want {
                end = before; // a cursor inside a record is garbage: never pass it
                sides.truncate(sides_before);
            }
            if end == r {
                match self.release_past(r) {
                    Some(now) => {
                        moved = true;
                        r = now;
                        continue;
                    }
                    None => return Ok(moved),
                }
            }
            if lag {
                self.evict(r, end)?;
            }
            // SYNC F: Release publishes, with the Acquire loads of the cursors (SYNC B) or the
            // evictions (SYNC E) before it, that no subscriber reads below `end` any more.
            match c
                .release
                .compare_exchange(r, end, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    for d in &sides {
                        self.b.release_side(d);
                    }
                    return Ok(true);
                }
                Err(x) => {
                    moved |= x > r;
                    r = x;
                }
            }
        }
        Ok(moved)
    }

    /// The lowest cursor in `[r, t0]` of the subscribers (`t0` if none): bytes below it are
    /// read by everyone. Loads only (`is_full` uses it as a snapshot, with a plain load of
    /// `tail` for `t0`).
    pub(super) fn slowest_cursor(&self, r: u64, t0: u64) -> u64 {
        let c = self.control();
        // Acquire: after the RMW of `t0` (SYNC J), so it covers every subscriber whose join
        // RMW came before ours.
        let n = c.slots_in_use.load(Ordering::Acquire).min(self.g.max_slots);
        let mut bound = t0;
        for i in 0..n {
            // SYNC B (read done): Acquire pairs with the subscriber's Release CAS of its
            // cursor, made after it copied the records below.
            let cur = self.slot_at(i).cursor.load(Ordering::Acquire);
            // A cursor outside `[r, t0]` is not a live subscriber's (NO_CURSOR, or garbage
            // left by a buggy process): it cannot hold back reclaiming.
            if cur >= r && cur <= t0 {
                bound = bound.min(cur);
            }
        }
        bound
    }

    /// Lag policy: moves every cursor inside `[r, end)` to `end` before those bytes are
    /// reclaimed, and credits its subscriber with the messages it missed.
    ///
    /// # Ordering (SYNC E, evict)
    ///
    /// The CAS on the cursor is AcqRel: if the subscriber's own CAS (after it copied records)
    /// came first, ours fails and we see its new cursor; if ours came first, its CAS fails
    /// and it discards what it read. Either way no copy the subscriber keeps overlaps our
    /// later overwrite. `missed` is added after the move (Release): a subscriber may see its
    /// cursor moved a moment before the count arrives; the count is then reported with its
    /// next read.
    fn evict(&self, r: u64, end: u64) -> Result<(), TrySendError> {
        let c = self.control();
        let n = c.slots_in_use.load(Ordering::Acquire).min(self.g.max_slots);
        for i in 0..n {
            let s = self.slot_at(i);
            let mut cur = s.cursor.load(Ordering::Acquire);
            while cur >= r && cur < end {
                let missed = self.count_messages(cur, end);
                match s
                    .cursor
                    .compare_exchange(cur, end, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        if missed > 0 {
                            s.missed.fetch_add(missed, Ordering::Release);
                        }
                        break;
                    }
                    Err(x) => cur = x,
                }
            }
        }
        Ok(())
    }

    /// Committed records in `[from, to)` (both record boundaries), walking their headers;
    /// stops counting at anything unexpected.
    pub(super) fn count_messages(&self, from: u64, to: u64) -> u64 {
        let mut pos = from;
        let mut n = 0;
        while pos < to {
            match self.record(pos, to) {
                Ok(Some(rec)) if rec.state == COMMITTED || rec.state == ABANDONED => {
                    n += u64::from(rec.state == COMMITTED);
                    pos += rec.size;
                }
                _ => break,
            }
        }
        n
    }

    /// Reads up to `max` messages from this subscriber's cursor, handing each to `f`; if the
    /// subscriber lagged while reading, `f` receives [`Delivery::Discard`] and the call
    /// returns [`TryReadError::Lagged`]. Returns how many messages `f` may keep.
    ///
    /// Threads of one attachment take turns: a call made while another thread reads returns
    /// [`TryReadError::Busy`].
    pub fn try_read_many_with(
        &self,
        max: usize,
        f: impl FnMut(Delivery<'_>),
    ) -> Result<usize, TryReadError> {
        self.try_read_many_limited(max, u64::MAX, f)
    }

    /// As [`Ring::try_read_many_with`], stopping before a message that would take the payload
    /// bytes of the batch past `max_bytes` (the first message is always read).
    ///
    /// After a shutdown: what is left, then [`TryReadError::ShutDown`] (at once after an
    /// immediate one).
    pub fn try_read_many_limited(
        &self,
        max: usize,
        max_bytes: u64,
        f: impl FnMut(Delivery<'_>),
    ) -> Result<usize, TryReadError> {
        if max == 0 {
            return Ok(0);
        }
        self.unless_shut_down(|| self.read_any(max, max_bytes, f))
    }

    /// A read (`attempt`) as the shutdown word allows: not at all after an immediate
    /// shutdown; `ShutDown` for `Empty` once this subscription is drained. The word is loaded
    /// before the attempt (see `Ring::phase`).
    pub(super) fn unless_shut_down<T>(
        &self,
        attempt: impl FnOnce() -> Result<T, TryReadError>,
    ) -> Result<T, TryReadError> {
        let phase = self.phase().map_err(TryReadError::Corrupted)?;
        if phase == Phase::Immediate {
            return Err(TryReadError::ShutDown);
        }
        match attempt() {
            Err(TryReadError::Empty) if self.drained(phase, self.own_cursor()) => {
                Err(TryReadError::ShutDown)
            }
            r => r,
        }
    }

    /// Where this attachment reads next: its cursor (Acquire: as the read path's loads of
    /// it), or the position after the records it holds.
    pub(super) fn own_cursor(&self) -> u64 {
        let cur = self.slot_at(self.slot).cursor.load(Ordering::Acquire);
        if cur == NO_CURSOR {
            return cur;
        }
        self.read_from(cur)
    }

    fn read_any(
        &self,
        max: usize,
        max_bytes: u64,
        mut f: impl FnMut(Delivery<'_>),
    ) -> Result<usize, TryReadError> {
        let _turn = self.try_reader().ok_or(TryReadError::Busy)?;
        let c = self.control();
        let s = self.slot_at(self.slot);
        // Runs of abandoned records are skipped and we look again; the ring holds at most
        // `capacity / 16` records.
        for _ in 0..=self.g.capacity / RECORD_ALIGN {
            // Acquire: pairs with a publisher's eviction (SYNC E).
            let cur = s.cursor.load(Ordering::Acquire);
            if cur == NO_CURSOR {
                return Err(TryReadError::NotSubscribed);
            }
            if self.held_count() > 0 {
                // Block policy (holds need it): we read behind the records we hold, and the
                // cursor stays at the oldest of them until they are released.
                return self.read_ahead(max, max_bytes, &mut f);
            }
            if let Some(missed) = self.take_lag(cur) {
                return Err(TryReadError::Lagged { missed });
            }
            // Acquire: with `cur <= tail`, `[cur, tail)` is reserved.
            let tail = c.tail.load(Ordering::Acquire);
            if cur > tail {
                if c.tail.load(Ordering::Acquire) < cur && s.cursor.load(Ordering::Acquire) == cur {
                    return Err(TryReadError::Corrupted("cursor is ahead of tail"));
                }
                continue;
            }
            let mut pos = cur;
            let mut count = 0usize;
            let mut stale = false;
            let mut sides = Vec::new();
            let mut bytes = 0u64;
            while pos < tail && count < max {
                // SYNC P2: `record` loads the stamp with Acquire.
                let rec = match self.record(pos, tail) {
                    Ok(Some(rec)) if rec.state == COMMITTED || rec.state == ABANDONED => rec,
                    Ok(_) => break, // not written yet, or overwritten (then the CAS fails)
                    Err(what) => {
                        if s.cursor.load(Ordering::Acquire) == cur {
                            return Err(TryReadError::Corrupted(what));
                        }
                        stale = true;
                        break;
                    }
                };
                if rec.state == COMMITTED {
                    bytes = bytes.saturating_add(rec.len);
                    if count > 0 && bytes > max_bytes {
                        break;
                    }
                    self.note_side(pos, &rec, &mut sides);
                    // SAFETY: `record` checked `len <= max_payload() < capacity`. The bytes
                    // are not ours alone: publishers reclaim them only after our cursor passes
                    // them (SYNC B) or after moving our cursor (lag policy, SYNC E), in which
                    // case the CAS below fails and `f` is told to discard what it read.
                    let (first, second) = unsafe { self.payload(pos, rec.len) };
                    f(Delivery::Message(RecordView {
                        codec: rec.codec,
                        flags: rec.flags,
                        first,
                        second,
                    }));
                    count += 1;
                }
                pos += rec.size;
            }
            if pos == cur && !stale {
                if cur < tail {
                    self.check_stuck(); // a publisher is writing at our cursor, or died
                }
                return Err(TryReadError::Empty);
            }
            // SYNC B (read done): Release publishes "our copies are done" to publishers that
            // load the cursor before reclaiming. SYNC E: fails if a publisher moved us.
            let ok = !stale
                && s.cursor
                    .compare_exchange(cur, pos, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
            if ok {
                self.expected_cursor.store(pos, Ordering::Relaxed);
                s.counters.gets.fetch_add(count as u64, Ordering::Relaxed);
                if !self.lag_policy() {
                    self.notify(Side::Space);
                }
                self.release_sides_passed_by_all(pos, &sides);
                if count > 0 {
                    return Ok(count);
                }
                continue; // only abandoned records: look again
            }
            if count > 0 {
                f(Delivery::Discard);
            }
        }
        Err(TryReadError::Corrupted(
            "more abandoned records than the ring can hold",
        ))
    }

    /// Removes the side segments (messages larger than the ring) we just read, below `end`,
    /// if every subscriber has passed them: they need not wait for the record to be reclaimed,
    /// which happens only when publishers run short of ring space. A subscriber still before
    /// `end` keeps them (it removes them itself when it passes, or a reclaimer does); one
    /// that joins later starts beyond them. Removing twice is harmless.
    pub(super) fn release_sides_passed_by_all(&self, end: u64, sides: &[SideDescriptor]) {
        if sides.is_empty() {
            return;
        }
        let c = self.control();
        let n = c.slots_in_use.load(Ordering::Acquire).min(self.g.max_slots);
        let release = c.release.load(Ordering::Acquire);
        let behind = (0..n).any(|i| {
            // Acquire: a subscriber whose cursor moved past `end` has mapped what it needed.
            let cur = self.slot_at(i).cursor.load(Ordering::Acquire);
            cur != NO_CURSOR && cur >= release && cur < end
        });
        if !behind {
            for d in sides {
                self.b.release_side(d);
            }
        }
    }

    /// If publishers moved our cursor (lag policy), the messages we missed; the count may
    /// arrive a moment after the move (see `evict`): we wait for it briefly.
    fn take_lag(&self, cur: u64) -> Option<u64> {
        let s = self.slot_at(self.slot);
        if cur == self.expected_cursor.load(Ordering::Relaxed) {
            let late = s.missed.swap(0, Ordering::Acquire);
            return (late > 0).then_some(late);
        }
        self.expected_cursor.store(cur, Ordering::Relaxed);
        let mut missed = s.missed.swap(0, Ordering::Acquire);
        for _ in 0..LATE_MISSED_SPINS {
            if missed > 0 {
                break;
            }
            crate::sync::spin_hint();
            missed = s.missed.swap(0, Ordering::Acquire);
        }
        (missed > 0).then_some(missed)
    }

    /// Whether a read may find something now (a cheap check for waiters).
    pub(super) fn read_ready(&self) -> bool {
        let c = self.control();
        let s = self.slot_at(self.slot);
        let cur = s.cursor.load(Ordering::Relaxed);
        if cur == NO_CURSOR
            || cur != self.expected_cursor.load(Ordering::Relaxed)
            || s.missed.load(Ordering::Relaxed) > 0
        {
            return true;
        }
        let cur = self.read_from(cur);
        if cur >= c.tail.load(Ordering::Acquire) {
            return false;
        }
        let state = self.cell(cur).stamp.load(Ordering::Acquire) ^ self.g.tag(cur);
        state == COMMITTED || state == ABANDONED
    }

    /// Whether the record at our cursor is reserved but not yet written.
    pub(super) fn read_in_flight(&self) -> bool {
        let cur = self.slot_at(self.slot).cursor.load(Ordering::Relaxed);
        cur != NO_CURSOR
            && self.read_from(cur) < self.control().tail.load(Ordering::Acquire)
            && !self.read_ready()
    }

    /// Waits until a read may find something, at most until `until`.
    pub(super) fn wait_for_read(&self, until: Option<Instant>, now: Instant) -> bool {
        // Also ends when a read would stop on a shutdown.
        let ready = || self.read_ready() || self.receive_stops(self.own_cursor());
        self.wait_for(Side::Data, until, now, &ready, &|| self.read_in_flight())
    }

    /// The subscribers and how far behind they are.
    pub fn subscribers(&self) -> Vec<SubscriberInfo> {
        let c = self.control();
        let tail = c.tail.load(Ordering::Acquire);
        let n = c.slots_in_use.load(Ordering::Acquire).min(self.g.max_slots);
        let mut out = Vec::new();
        for i in 0..n {
            let s = self.slot_at(i);
            if SlotWord::unpack(s.state.load(Ordering::Acquire)).state != SLOT_ATTACHED {
                continue;
            }
            let cur = s.cursor.load(Ordering::Acquire);
            if cur == NO_CURSOR {
                continue;
            }
            out.push(SubscriberInfo {
                slot: i,
                pid: s.pid.load(Ordering::Relaxed),
                position: cur,
                lag_bytes: tail.saturating_sub(cur),
                lag_messages: if cur <= tail {
                    self.count_messages(cur, tail)
                } else {
                    0
                },
                missed_pending: s.missed.load(Ordering::Relaxed),
            });
        }
        out
    }

    /// Publishers: whether a full ring would make `send` wait (the default policy) rather
    /// than overwrite (lag policy). Blocked publishers poll for dead subscribers.
    pub(super) fn space_stuck_broadcast(&self) -> bool {
        !self.lag_policy()
    }
}
