//! The hold window of a broadcast subscription: records read in place (zero copy) without
//! moving the cursor, up to [`HOLD_WINDOW`] at once, with reads going on behind them. The
//! cursor stays at the oldest held record, so publishers (block policy) cannot reclaim any
//! of them; each release moves it up to the oldest still held (`Ring::settle`). See
//! `docs/protocol.md` ("Broadcast", holds).

use super::broadcast::{Delivery, TryReadError};
use super::{RecordView, Ring, Side};
use crate::backing::Backing;
use crate::layout::*;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// A record a subscriber holds (see [`Ring::try_hold`]): publishers cannot reclaim it until
/// it is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pos: u64,
    next: u64,
    /// Codec id of the message.
    pub codec: u16,
    /// Flag bits of the record.
    pub flags: u16,
    /// Payload length.
    pub len: u64,
}

/// Records one subscription holds at most at once ([`Ring::try_hold_more`]).
pub const HOLD_WINDOW: usize = 3;

/// A record this attachment holds (`pos == NO_CURSOR`: a free entry). Process memory.
#[derive(Debug)]
pub(super) struct HoldEntry {
    pos: AtomicU64,
    next: AtomicU64,
    flags: AtomicU32,
}

impl HoldEntry {
    pub(super) fn free() -> Self {
        Self {
            pos: AtomicU64::new(NO_CURSOR),
            next: AtomicU64::new(0),
            flags: AtomicU32::new(0),
        }
    }
}

impl<B: Backing> Ring<B> {
    /// Finds the next message at this subscriber's cursor without moving the cursor, so that
    /// publishers (block policy) cannot reclaim it: the caller reads it in place with
    /// [`Ring::held_payload`] and then calls [`Ring::release_held`]. Abandoned records on the
    /// way are stepped over. Lag policy: refused (`Corrupted`), since publishers may
    /// overwrite a held record.
    ///
    /// The records this attachment held before are released first (see
    /// [`Ring::try_hold_more`] to keep them). A call made while another thread of this
    /// attachment reads returns [`TryReadError::Busy`]. After a shutdown, as
    /// [`Ring::try_read_many_limited`].
    pub fn try_hold(&self) -> Result<Held, TryReadError> {
        // With every earlier hold released there is room (another thread's hold in between
        // would have to take the read turn first): `Busy` only as a bound.
        self.unless_shut_down(|| self.hold_any(false)?.ok_or(TryReadError::Busy))
    }

    /// As [`Ring::try_hold`], keeping the records held before: the next message after the
    /// newest of them is held too. At most [`HOLD_WINDOW`] are held at once: `Ok(None)` when
    /// that many are. The cursor stays at the oldest held record (publishers wait there once
    /// the ring comes round to it); reads go on behind the held records, and each record is
    /// released on its own ([`Ring::release_held`]).
    pub fn try_hold_more(&self) -> Result<Option<Held>, TryReadError> {
        self.unless_shut_down(|| self.hold_any(true))
    }

    fn hold_any(&self, keep: bool) -> Result<Option<Held>, TryReadError> {
        if self.lag_policy() {
            return Err(TryReadError::Unsupported(
                "zero-copy reads need the block policy",
            ));
        }
        let _turn = self.try_reader().ok_or(TryReadError::Busy)?;
        if !keep {
            self.release_lent();
        }
        // Relaxed: the entries are ours, ordered by the read turn.
        let Some(entry) = self
            .holds
            .iter()
            .find(|e| e.pos.load(Ordering::Relaxed) == NO_CURSOR)
        else {
            return Ok(None);
        };
        let c = self.control();
        let s = self.slot_at(self.slot);
        // Only this call (with the read turn) changes what we hold until it returns.
        let holding = keep && self.held_count() > 0;
        for _ in 0..=self.g.capacity / RECORD_ALIGN {
            let cur = s.cursor.load(Ordering::Acquire);
            if cur == NO_CURSOR {
                return Err(TryReadError::NotSubscribed);
            }
            let from = if holding {
                self.ahead.load(Ordering::Relaxed)
            } else {
                cur
            };
            let tail = c.tail.load(Ordering::Acquire);
            if from >= tail {
                if from > tail && s.cursor.load(Ordering::Acquire) == cur {
                    return Err(TryReadError::Corrupted("cursor is ahead of tail"));
                }
                return Err(TryReadError::Empty);
            }
            // SYNC P2: `record` loads the stamp with Acquire.
            match self.record(from, tail) {
                Ok(Some(rec)) if rec.state == COMMITTED => {
                    // Relaxed: only read under the read turn, which orders them.
                    entry.next.store(from + rec.size, Ordering::Relaxed);
                    entry.flags.store(u32::from(rec.flags), Ordering::Relaxed);
                    entry.pos.store(from, Ordering::Relaxed);
                    self.ahead.store(from + rec.size, Ordering::Relaxed);
                    return Ok(Some(Held {
                        pos: from,
                        next: from + rec.size,
                        codec: rec.codec,
                        flags: rec.flags,
                        len: rec.len,
                    }));
                }
                Ok(Some(rec)) if rec.state == ABANDONED => {
                    if holding {
                        // Passed when the cursor moves over it (`settle`).
                        self.ahead.store(from + rec.size, Ordering::Relaxed);
                        continue;
                    }
                    // SYNC B, as a read of nothing.
                    let _ = s.cursor.compare_exchange(
                        cur,
                        cur + rec.size,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    self.expected_cursor
                        .store(cur + rec.size, Ordering::Relaxed);
                }
                Ok(_) => {
                    self.check_stuck();
                    return Err(TryReadError::Empty);
                }
                Err(what) => return Err(TryReadError::Corrupted(what)),
            }
        }
        Err(TryReadError::Corrupted(
            "more abandoned records than the ring can hold",
        ))
    }

    /// How many records this attachment holds (the caller holds the read turn, or takes a
    /// snapshot).
    pub(super) fn held_count(&self) -> usize {
        self.holds
            .iter()
            .filter(|e| e.pos.load(Ordering::Relaxed) != NO_CURSOR)
            .count()
    }

    /// Where a read starts: after the records this attachment holds, or at `cursor`.
    pub(super) fn read_from(&self, cursor: u64) -> u64 {
        if self.held_count() > 0 {
            self.ahead.load(Ordering::Relaxed)
        } else {
            cursor
        }
    }

    /// A copy read while records are held (block policy): records from `ahead` on are
    /// delivered and `ahead` moves past them; the cursor does not (it moves when the held
    /// records are released, see `settle`). Publishers cannot reclaim anything at or above
    /// the cursor, and only we move it (no lag policy), so the bytes stay ours to read.
    pub(super) fn read_ahead(
        &self,
        max: usize,
        max_bytes: u64,
        f: &mut dyn FnMut(Delivery<'_>),
    ) -> Result<usize, TryReadError> {
        let c = self.control();
        let s = self.slot_at(self.slot);
        for _ in 0..=self.g.capacity / RECORD_ALIGN {
            let from = self.ahead.load(Ordering::Relaxed);
            let tail = c.tail.load(Ordering::Acquire);
            if from > tail {
                return Err(TryReadError::Corrupted("cursor is ahead of tail"));
            }
            let (mut pos, mut count, mut bytes) = (from, 0usize, 0u64);
            while pos < tail && count < max {
                // SYNC P2: `record` loads the stamp with Acquire.
                let rec = match self.record(pos, tail) {
                    Ok(Some(rec)) if rec.state == COMMITTED || rec.state == ABANDONED => rec,
                    Ok(_) => break,
                    Err(what) => return Err(TryReadError::Corrupted(what)),
                };
                if rec.state == COMMITTED {
                    bytes = bytes.saturating_add(rec.len);
                    if count > 0 && bytes > max_bytes {
                        break;
                    }
                    if rec.flags & RECORD_FLAG_SIDE != 0 {
                        self.sides_ahead.store(1, Ordering::Relaxed);
                    }
                    // SAFETY: `record` checked `len <= max_payload() < capacity`; the bytes
                    // are above our cursor, so no publisher reclaims them (SYNC B).
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
            if pos == from {
                if from < tail {
                    self.check_stuck();
                }
                return Err(TryReadError::Empty);
            }
            self.ahead.store(pos, Ordering::Relaxed);
            s.counters.gets.fetch_add(count as u64, Ordering::Relaxed);
            if count > 0 {
                return Ok(count);
            }
        }
        Err(TryReadError::Corrupted(
            "more abandoned records than the ring can hold",
        ))
    }

    /// The payload of a record returned by [`Ring::try_hold`], in (up to) two parts.
    ///
    /// # Safety
    ///
    /// `h` must come from `try_hold` on this attachment and not have been released: the
    /// cursor then still points at it, so publishers do not reclaim its bytes (SYNC B).
    pub unsafe fn held_payload(
        &self,
        h: &Held,
    ) -> (std::borrow::Cow<'_, [u8]>, std::borrow::Cow<'_, [u8]>) {
        // SAFETY: `record` checked `len <= max_payload()`; the caller guarantees the hold.
        unsafe { self.payload(h.pos, h.len) }
    }

    /// Releases a held record (SYNC B: our reads of it are done), unless it was released
    /// already; the cursor moves up to the oldest record still held.
    pub fn release_held(&self, h: &Held) {
        // Our threads hold the turn for one bounded attempt each: waiting for it is short.
        let _turn = loop {
            if let Some(turn) = self.try_reader() {
                break turn;
            }
            crate::sync::yield_now();
        };
        if let Some(e) = self.held_entry(h) {
            e.pos.store(NO_CURSOR, Ordering::Relaxed);
            self.settle(1, h.flags & RECORD_FLAG_SIDE != 0);
        }
    }

    /// Releases every record this attachment holds.
    pub fn release_all_held(&self) {
        let _turn = loop {
            if let Some(turn) = self.try_reader() {
                break turn;
            }
            crate::sync::yield_now();
        };
        self.release_lent();
    }

    /// Whether `h` is still held (not released by this attachment). A snapshot: another
    /// thread of the attachment may release it right after.
    pub fn is_held(&self, h: &Held) -> bool {
        self.held_entry(h).is_some()
    }

    fn held_entry(&self, h: &Held) -> Option<&HoldEntry> {
        // Relaxed: advisory outside the read turn; the turn orders the bookkeeping itself.
        self.holds.iter().find(|e| {
            e.pos.load(Ordering::Relaxed) == h.pos && e.next.load(Ordering::Relaxed) == h.next
        })
    }

    /// Releases every held record (the caller holds the read turn).
    fn release_lent(&self) {
        let (mut n, mut side) = (0, false);
        for e in &self.holds {
            if e.pos.swap(NO_CURSOR, Ordering::Relaxed) != NO_CURSOR {
                n += 1;
                side |= e.flags.load(Ordering::Relaxed) & u32::from(RECORD_FLAG_SIDE) != 0;
            }
        }
        if n > 0 {
            self.settle(n, side);
        }
    }

    /// Held records go without moving the cursor (unsubscribing, or subscribing anew).
    pub(super) fn forget_holds(&self) {
        for e in &self.holds {
            e.pos.store(NO_CURSOR, Ordering::Relaxed);
        }
    }

    /// After `released` holds ended: moves the cursor up to the oldest record still held, or
    /// to `ahead` when none is (the caller holds the read turn). Every record below is read.
    /// `side`: a released record referenced a side segment (records read ahead may too:
    /// `sides_ahead`), so the records passed are looked through for side segments.
    pub(super) fn settle(&self, released: u64, side: bool) {
        let s = self.slot_at(self.slot);
        s.counters.gets.fetch_add(released, Ordering::Relaxed);
        let cur = s.cursor.load(Ordering::Acquire);
        let target = self
            .holds
            .iter()
            .map(|e| e.pos.load(Ordering::Relaxed))
            .filter(|&p| p != NO_CURSOR)
            .min()
            .unwrap_or_else(|| self.ahead.load(Ordering::Relaxed));
        if cur == NO_CURSOR || target <= cur {
            return;
        }
        // Side segments of the records passed: still intact below `target` (no publisher
        // reclaims at or above our cursor).
        let mut sides = Vec::new();
        let mut pos = cur;
        let walk = self.sides_ahead.swap(0, Ordering::Relaxed) != 0 || side;
        while walk && pos < target {
            match self.record(pos, target) {
                Ok(Some(rec)) if rec.state == COMMITTED || rec.state == ABANDONED => {
                    if rec.state == COMMITTED {
                        self.note_side(pos, &rec, &mut sides);
                    }
                    pos += rec.size;
                }
                _ => break,
            }
        }
        // SYNC B (read done): Release publishes that our reads below `target` are over.
        if s.cursor
            .compare_exchange(cur, target, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.expected_cursor.store(target, Ordering::Relaxed);
            self.notify(Side::Space);
            self.release_sides_passed_by_all(target, &sides);
        }
    }
}
