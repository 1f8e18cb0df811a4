//! Repair of the operations a dead process left in flight.
//!
//! Runs only on a slot whose holder is proven dead (the caller holds the slot's lease and
//! moved it to `REAPING`, so exactly one process repairs it). Each lane of the slot may hold:
//!
//! * a **put intent** `[start, end)`: records the producer committed are left alone (they
//!   carry their messages); the first record it did not commit, and everything after it in
//!   the reservation, becomes one `ABANDONED` record that consumers skip. Maxsize permits the
//!   producer held for uncommitted messages ride on that record (or go straight back to
//!   `count` when nothing was reserved).
//! * a **get intent** `[start, end)`: records the consumer had claimed but not marked
//!   `CONSUMED` are marked consumed and counted in `totals.lost` (at-most-once delivery).
//!
//! A `PENDING` intent is ambiguous: the process died either just before its CAS (nothing to
//! repair) or just after it (the range is its own). The range is its own when the position
//! was taken (`tail` or `head` is past `start`) and no other lane has an intent starting at
//! the same position (the CAS winner publishes its intent before its CAS).

use super::{Ring, Side, ABANDONED, COMMITTED, CONSUMED};
use crate::backing::Backing;
use crate::layout::*;
use crate::sync::Ordering;
use std::time::Duration;

/// How often a stuck process looks for dead processes (each look costs one system call per
/// attached process).
const STUCK_CHECK_INTERVAL: Duration = Duration::from_millis(2);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Put,
    Get,
}

impl<B: Backing> Ring<B> {
    /// Called when the queue looks stuck (the record at `head` stays unwritten, or a claimed
    /// record keeps `release` from moving): at most every 2 ms, detaches dead processes and
    /// repairs what they left in flight.
    pub(super) fn check_stuck(&self) {
        if cfg!(loom) {
            // Models must be deterministic: no clock.
            self.reap_dead();
            return;
        }
        let now = self.epoch.elapsed().as_nanos() as u64;
        let last = self.last_stuck_check.load(Ordering::Relaxed);
        if now.saturating_sub(last) < STUCK_CHECK_INTERVAL.as_nanos() as u64 && last != 0 {
            return;
        }
        // Relaxed: a process-local rate limit, not shared state.
        if self
            .last_stuck_check
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.reap_dead();
        }
    }

    /// Repairs everything the dead holder of slot `i` left in flight, and takes its sleepers
    /// out of the wake-up counts. Returns `false` if a repair had to wait (another lane's
    /// intent still covers the bytes, typically a live producer between a lost CAS and its
    /// retry): the caller keeps the slot attached so that a later reap finishes the job.
    pub(super) fn repair_slot(&self, i: u32) -> bool {
        let s = self.slot_at(i);
        let c = self.control();
        // A dead subscriber no longer holds back (or is credited by) publishers. Release: as
        // the subscriber's own unsubscribe (SYNC B); its reads ended with its death.
        s.cursor.store(NO_CURSOR, Ordering::Release);
        for (sleeping, ev) in [
            (&s.sleeping_data, &c.data_event),
            (&s.sleeping_space, &c.space_event),
        ] {
            let n = sleeping.swap(0, Ordering::Relaxed);
            if n > 0 {
                // Relaxed: a count of sleepers; a too-high value only costs wake-up calls.
                let _ = ev
                    .waiters
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                        Some(w.saturating_sub(n))
                    });
            }
        }
        let mut done = true;
        for lane in &s.lanes {
            done &= self.repair_put(lane);
            done &= self.repair_get(lane);
        }
        self.notify(Side::Data);
        self.notify(Side::Space);
        done
    }

    /// Whether a lane other than `me` has an intent of `kind` starting at `start`.
    fn other_intent_starts_at(&self, kind: Kind, start: u64, me: &Lane) -> bool {
        self.other_intent(kind, me, true, |s, _| s == start)
    }

    /// Whether a lane other than `me` has an intent of `kind` covering `pos`: then the bytes
    /// at `pos` are (or may be) that lane's, and a repair must not touch them. A `PENDING`
    /// intent of a dead process may be stale (its CAS lost) and does not count.
    fn other_intent_covers(&self, kind: Kind, pos: u64, me: &Lane) -> bool {
        self.other_intent(kind, me, false, |s, e| s <= pos && pos < e)
    }

    fn other_intent(
        &self,
        kind: Kind,
        me: &Lane,
        dead_pending_counts: bool,
        matches: impl Fn(u64, u64) -> bool,
    ) -> bool {
        (0..self.g.max_slots).any(|i| {
            let s = self.slot_at(i);
            if SlotWord::unpack(s.state.load(Ordering::Acquire)).state == SLOT_FREE {
                return false;
            }
            let alive = || i == self.slot || self.b.lease_held_elsewhere(i);
            s.lanes.iter().any(|l| {
                if std::ptr::eq(l, me) {
                    return false;
                }
                // Acquire: pairs with the Release store of `INTENT_NONE` that ends the other
                // lane's operation (`try_send_many`, `try_claim_and_take`): a lane seen idle
                // has its stamps (P2) and CONSUMED stores (C3) visible to our record loads
                // that follow. The intent fields themselves are Relaxed; what publishes them
                // is the other lane's Release CAS on `tail`/`head` (SYNC P1/C1), paired with
                // our Acquire load of that position in `repair_put`/`repair_get`, and for the
                // dead slot's own lanes the lease hand-over (`Backing::try_lease`).
                let (state, start, end) = match kind {
                    Kind::Put => (
                        PutIntent::unpack(l.put_state.load(Ordering::Acquire)).state,
                        &l.put_start,
                        &l.put_end,
                    ),
                    Kind::Get => (
                        l.get_state.load(Ordering::Acquire),
                        &l.get_start,
                        &l.get_end,
                    ),
                };
                state != INTENT_NONE
                    && matches(start.load(Ordering::Relaxed), end.load(Ordering::Relaxed))
                    && (state == INTENT_OWNED || dead_pending_counts || alive())
            })
        })
    }

    /// The next record position to look at from `pos` inside `[pos, end)`: positions below
    /// `release` were consumed and possibly reused, so skip to `release`.
    fn skip_reclaimed(&self, pos: u64, end: u64) -> Option<u64> {
        let release = self.control().release.load(Ordering::Acquire);
        let pos = pos.max(release);
        (pos < end).then_some(pos)
    }

    fn repair_put(&self, lane: &Lane) -> bool {
        let c = self.control();
        let PutIntent { state, permits } =
            PutIntent::unpack(lane.put_state.load(Ordering::Acquire));
        let give_back = |n: u64| {
            if self.g.maxsize > 0 {
                self.return_permits(n);
            }
        };
        let start = lane.put_start.load(Ordering::Relaxed);
        let end = lane.put_end.load(Ordering::Relaxed);
        let bogus = end <= start || end - start > self.g.capacity || start % RECORD_ALIGN != 0;
        if state == INTENT_NONE || bogus {
            give_back(permits);
            lane.put_state
                .store(PutIntent::NONE.pack(), Ordering::Relaxed);
            return true;
        }
        if state == INTENT_PENDING
            && (c.tail.load(Ordering::Acquire) <= start
                || self.other_intent_starts_at(Kind::Put, start, lane))
        {
            give_back(permits); // its CAS did not happen or did not win
            lane.put_state
                .store(PutIntent::NONE.pack(), Ordering::Relaxed);
            return true;
        }
        // The reservation is the dead producer's: walk its records.
        let mut committed = 0u64;
        let mut pos = start;
        while let Some(p) = self.skip_reclaimed(pos, end) {
            pos = p;
            match self.record(pos, end) {
                Ok(Some(rec)) => {
                    committed += u64::from(rec.state == COMMITTED || rec.state == CONSUMED);
                    pos += rec.size;
                }
                Ok(None) if self.other_intent_covers(Kind::Put, pos, lane) => return false,
                Ok(None) => {
                    // Not written, and no other lane claims these bytes: abandon the rest of
                    // the reservation. Only this repairer touches them (the producer is dead).
                    let cell = self.cell(pos);
                    let left = permits.saturating_sub(committed).min(u64::from(u32::MAX));
                    let meta = pack_meta((end - pos) as u32, left as u16, (left >> 16) as u16);
                    cell.meta.store(meta, Ordering::Relaxed);
                    // SYNC P2: Release publishes the meta to consumers, as a commit does.
                    cell.stamp
                        .store(self.g.tag(pos) | ABANDONED, Ordering::Release);
                    c.totals.abandoned.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(_) => break, // damaged: leave it to the consumers to report
            }
        }
        lane.put_state
            .store(PutIntent::NONE.pack(), Ordering::Release);
        true
    }

    fn repair_get(&self, lane: &Lane) -> bool {
        let c = self.control();
        let state = lane.get_state.load(Ordering::Acquire);
        let start = lane.get_start.load(Ordering::Relaxed);
        let end = lane.get_end.load(Ordering::Relaxed);
        if state == INTENT_NONE || end <= start || end - start > self.g.capacity {
            lane.get_state.store(INTENT_NONE, Ordering::Relaxed);
            return true;
        }
        let head = c.head.load(Ordering::Acquire);
        if state == INTENT_PENDING
            && (head <= start || self.other_intent_starts_at(Kind::Get, start, lane))
        {
            lane.get_state.store(INTENT_NONE, Ordering::Relaxed);
            return true;
        }
        // A PENDING claim that won had not yet given its permits back (see
        // `try_claim_and_take`: permits go back before the lane says OWNED).
        let permits_owed = state == INTENT_PENDING && self.g.maxsize > 0;
        let mut pos = start;
        let end = end.min(head);
        while let Some(p) = self.skip_reclaimed(pos, end) {
            pos = p;
            let Ok(Some(rec)) = self.record(pos, end) else {
                break; // reclaimed and reused meanwhile, or damaged: nothing left to repair
            };
            if rec.state == COMMITTED && self.other_intent_covers(Kind::Get, pos, lane) {
                return false; // the range overlaps another lane's claim: not ours to judge yet
            }
            if rec.state == COMMITTED {
                // SYNC C3: Release, as a consumer's CONSUMED store (nothing was read here).
                let lost = self
                    .cell(pos)
                    .stamp
                    .compare_exchange(
                        rec.stamp,
                        self.g.tag(pos) | CONSUMED,
                        Ordering::Release,
                        Ordering::Relaxed,
                    )
                    .is_ok();
                if lost {
                    c.totals.lost.fetch_add(1, Ordering::Relaxed);
                    if permits_owed {
                        self.return_permits(1);
                    }
                }
            } else if rec.state == ABANDONED && permits_owed {
                // One atomic clamp at 0 (a load, then a `fetch_sub` of the minimum, could
                // underflow when a consumer returns permits in between).
                self.return_permits(rec.permits);
            }
            pos += rec.size;
        }
        lane.get_state.store(INTENT_NONE, Ordering::Release);
        true
    }
}
