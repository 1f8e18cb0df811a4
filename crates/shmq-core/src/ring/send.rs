//! Sending: maxsize permits, reserving bytes at `tail` (SYNC P1), reclaiming consumed bytes
//! (`release`, SYNC F) and waiting for space.

use super::shutdown::Phase;
use super::{Message, Ring, Side, TrySendError};
use crate::backing::Backing;
use crate::layout::*;
use crate::sync::Ordering;
use std::time::Instant;

/// A queue's producers stay within the first `hot_span` bytes of a lap (or one
/// reservation's size) while the readers keep up (at most that span, or two reservations,
/// unread), then skip to the next lap (`hot_skip`). Reservations of `BIG_RESERVATION` bytes
/// or more use `HOT_SPAN`, about an L2 cache: 1 MiB messages ran faster with it than with
/// 4 MiB in A/B runs on the 2-core VM. Smaller ones use `SMALL_HOT_SPAN`, the default
/// capacity: with it a default ring of small messages behaves exactly as before the hot
/// restart (small records ran 0.93–0.94× the baseline with 1 MiB, which puts the producer's
/// writes on lines still in the consumer's L2), and a bigger ring as the default one.
const HOT_SPAN: u64 = if cfg!(loom) { 32 } else { 1 << 20 };
const SMALL_HOT_SPAN: u64 = if cfg!(loom) { 32 } else { 4 << 20 };
const BIG_RESERVATION: u64 = 64 << 10;

impl<B: Backing> Ring<B> {
    /// Sends one message if it fits now.
    pub fn try_send(&self, msg: Message<'_>) -> Result<(), TrySendError> {
        self.try_send_many(std::slice::from_ref(&msg))
    }

    /// Sends all of `msgs` (in order, contiguously) if they all fit now, or none of them.
    pub fn try_send_many(&self, msgs: &[Message<'_>]) -> Result<(), TrySendError> {
        if msgs.is_empty() {
            return Ok(());
        }
        match self.phase() {
            Ok(Phase::Open) => {}
            Ok(_) => return Err(TrySendError::ShutDown),
            Err(what) => return Err(TrySendError::Corrupted(what)),
        }
        let total = self.batch_size(msgs)?;
        let lane = self.try_lane().ok_or(TrySendError::Busy)?;
        let n = msgs.len() as u64;
        if self.g.maxsize > 0 {
            self.take_permits(lane.lane, n)?;
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
        if super::crash::hit(super::crash::CrashPoint::AfterReserveCas) {
            // Died between the CAS and marking the intent OWNED.
            let word = PutIntent::unpack(lane.lane.put_state.load(Ordering::Relaxed));
            lane.lane
                .put_state
                .store(word.with_state(INTENT_PENDING).pack(), Ordering::Relaxed);
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
        lane.lane
            .put_state
            .store(PutIntent::NONE.pack(), Ordering::Release);
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

    pub(super) fn batch_size(&self, msgs: &[Message<'_>]) -> Result<u64, TrySendError> {
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

    /// Whether `n` more messages fit beside `count` (a value of the shared `count` word, so
    /// untrusted): `Err` for a count no process can have produced.
    ///
    /// Every increment of `count` is the CAS in `take_permits`, made only when the sum stays
    /// within `max(maxsize, n)`, and a batch has at most `capacity / 16` messages; decrements
    /// saturate at 0 (`return_permits`). So `count <= max(maxsize, capacity / 16)` unless
    /// another process scribbled on it.
    pub(super) fn permits_fit(&self, count: u64, n: u64) -> Result<bool, TrySendError> {
        if count > self.g.maxsize.max(self.g.capacity / RECORD_ALIGN) {
            return Err(TrySendError::Corrupted("message count above its bound"));
        }
        Ok(count
            .checked_add(n)
            .is_some_and(|s| s <= self.g.maxsize.max(n)))
    }

    /// Takes `n` maxsize permits, recording them in the lane so a repairer can give them
    /// back. `Err(Full)` if they do not fit now.
    pub(super) fn take_permits(&self, lane: &Lane, n: u64) -> Result<(), TrySendError> {
        let c = self.control();
        let mut cur = c.count.load(Ordering::Relaxed);
        loop {
            if !self.permits_fit(cur, n)? {
                return Err(TrySendError::Full);
            }
            // Relaxed: the count only bounds how many messages exist; it publishes no data.
            // (`cur + n` cannot overflow: `permits_fit` checked the sum.)
            match c
                .count
                .compare_exchange_weak(cur, cur + n, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(x) => cur = x,
            }
        }
        lane.put_state.store(
            PutIntent {
                state: INTENT_NONE,
                permits: n,
            }
            .pack(),
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Takes `n` permits out of `count`, stopping at 0: a count another process scribbled
    /// on, or permits read from a scribbled record, must not wrap it around to "full
    /// forever". Relaxed: see `take_permits`.
    pub(super) fn return_permits(&self, n: u64) {
        if n > 0 {
            let _ = self
                .control()
                .count
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(n))
                });
        }
    }

    pub(super) fn give_back_permits(&self, lane: &Lane, n: u64) {
        self.return_permits(n);
        lane.put_state
            .store(PutIntent::NONE.pack(), Ordering::Relaxed);
        self.notify(Side::Space);
    }

    /// Reserves `total` bytes at the tail and returns where the first record goes. The
    /// reservation is announced in the lane first, so that a repairer can tell whose bytes
    /// they are if this process dies. On a queue whose readers have caught up, the
    /// reservation may start with a skip record that moves the first record to the start of
    /// the next lap (see [`Ring::hot_skip`]).
    pub(super) fn reserve(&self, lane: &Lane, total: u64) -> Result<u64, TrySendError> {
        let c = self.control();
        let cap = self.g.capacity;
        let intent = PutIntent::unpack(lane.put_state.load(Ordering::Acquire));
        // One reclaim per call on behalf of a skip: when it does not make the skip fit, the
        // records go on at `tail` as usual.
        let (mut may_skip, mut skip_reclaims) = (true, 1u32);
        // SYNC P1: Acquire pairs with the Release CAS of the producer that moved `tail` there
        // (and, through the release sequence of `tail`'s RMWs, of every earlier one): each had
        // read a `release` at most a ring behind its `tail`, so our `release` load below is no
        // older. With the loads of `tail` here Relaxed (this one, the reloads, the CAS failure),
        // the loom model `two_producers_blocked_on_a_full_ring_are_both_woken` reports a
        // spurious "tail is more than a ring ahead of release" (a stale `release` beside a
        // fresh `tail`; weakly ordered CPUs can do that).
        let mut tail = c.tail.load(Ordering::Acquire);
        loop {
            // SYNC F (free space): Acquire pairs with the Release CAS in `advance_release`, which
            // happens after the consumers' reads of the bytes we are about to overwrite.
            let release = c.release.load(Ordering::Acquire);
            if release > tail {
                tail = c.tail.load(Ordering::Acquire); // our tail may be stale
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
            let mut skip = if may_skip {
                self.hot_skip(tail, total)
            } else {
                0
            };
            if skip > 0 && tail - release + skip + total > cap {
                // The start of the lap may be read but not reclaimed yet (reclaims are lazy).
                if skip_reclaims > 0 {
                    skip_reclaims -= 1;
                    if self.reclaim(total)? {
                        tail = c.tail.load(Ordering::Acquire);
                        continue;
                    }
                }
                may_skip = false;
                skip = 0;
            }
            let need = skip + total; // `hot_skip` keeps it within the ring and a u32
            if tail.checked_add(need).is_none() {
                return Err(TrySendError::Corrupted(
                    "tail is at the end of the position space",
                ));
            }
            if tail - release + need > cap {
                // Reclaim, or find that another producer did: our `release` may be stale (see
                // `space_ready`), and then `Full` would be wrong.
                if self.reclaim(total)? || c.release.load(Ordering::Acquire) != release {
                    tail = c.tail.load(Ordering::Acquire);
                    continue;
                }
                return Err(TrySendError::Full);
            }
            lane.put_start.store(tail, Ordering::Relaxed);
            lane.put_end.store(tail + need, Ordering::Relaxed);
            lane.put_state
                .store(intent.with_state(INTENT_PENDING).pack(), Ordering::Relaxed);
            // SYNC P1 (reserve): Release publishes the lane intent to anyone who sees the new
            // tail (Acquire), e.g. a repairer, and the `release` we checked it against to the
            // next producer. Failure: Acquire, as the load above.
            match c.tail.compare_exchange_weak(
                tail,
                tail + need,
                Ordering::Release,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    lane.put_state
                        .store(intent.with_state(INTENT_OWNED).pack(), Ordering::Relaxed);
                    if skip > 0 {
                        #[cfg(feature = "crash-points")]
                        if super::crash::hit(super::crash::CrashPoint::BeforeSkip) {
                            // Dies with the skip unwritten: the caller's next point stops it.
                            super::crash::arm(super::crash::CrashPoint::AfterReserve);
                            return Ok(tail + skip);
                        }
                        self.write_skip(tail, skip);
                    }
                    return Ok(tail + skip);
                }
                Err(x) => tail = x,
            }
        }
    }

    /// Bytes to skip so that a reservation of `total` bytes at `tail` starts the next lap,
    /// or 0. A byte ring cycles through all of its memory, so a big ring is cold in every
    /// cache; when the readers are past the start of the current lap, the bytes there were
    /// read recently (they are hot) and free, and the next records go there instead.
    ///
    /// Only a heuristic: `head` is a hint (Relaxed), and the caller still checks that the
    /// skip and the records fit behind `release`, as for any reservation. Queues only: a
    /// broadcast ring's readers are its cursors, and a reclaim may drop a lagging one.
    fn hot_skip(&self, tail: u64, total: u64) -> u64 {
        if self.g.is_broadcast() {
            return 0;
        }
        let cap = self.g.capacity;
        let off = self.wrap(tail);
        let span = if total >= BIG_RESERVATION {
            HOT_SPAN
        } else {
            SMALL_HOT_SPAN
        };
        if off < span.max(total) {
            return 0; // still inside the hot start of the lap
        }
        // Small reservations look at `head` (a line the consumers keep writing: a cache miss)
        // only when they cross a quarter of the span, not at every send behind a backlog.
        let quarter = span / 4;
        if total < quarter && (off + total) / quarter == off / quarter {
            return 0;
        }
        let skip = cap - off; // >= 16: `off` and `cap` are multiples of 16
        if skip + total > u64::from(u32::MAX) {
            return 0; // a skip (or a repairer's ABANDONED record) stores its size in a u32
        }
        // Relaxed: a hint (see above). Unread records in the first `total` bytes of the lap
        // would keep them from being reclaimed. And the skipped bytes stay taken until the
        // readers pass them, so skipping while many records wait (readers slower than us)
        // would take room a backlog needs, for no gain: their bytes are cold anyway.
        let head = self.control().head.load(Ordering::Relaxed);
        if head < tail - off + total || tail.saturating_sub(head) > span.max(2 * total) {
            return 0;
        }
        skip
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
                match self.release_past(r) {
                    Some(now) => {
                        moved = true;
                        r = now;
                        continue;
                    }
                    None => return Ok(moved),
                }
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

    /// After a reclaim walk from `r` that freed nothing: the new `release` if it is past `r`
    /// by now. Our `r` may be stale: another producer may have reclaimed from it and
    /// written a new record there, which stops the walk at once; the caller then walks again
    /// from the new value (the bytes after it may be free).
    ///
    /// # Ordering
    ///
    /// Acquire, SYNC F. If the walk stopped at a newer record, our Acquire load of its stamp
    /// synchronised with its producer's commit (SYNC P2), which follows that producer's
    /// reclaim: this load sees it.
    pub(super) fn release_past(&self, r: u64) -> Option<u64> {
        let now = self.control().release.load(Ordering::Acquire);
        (now > r).then_some(now)
    }

    /// Whether `n` messages of `total` bytes could be reserved now (a check for waiters:
    /// `true` may be spurious, `false` must not be, see SYNC W).
    ///
    /// # Ordering
    ///
    /// The `release` we load first may be stale: another producer may have reclaimed the
    /// space meanwhile, and producers notify no one of a reclaim, so judging by it would put
    /// a waiter to sleep with space free (found by the loom model
    /// `two_producers_blocked_on_a_full_ring_are_both_woken`). So the bytes are judged again
    /// after `reclaim`, whatever it did: its own Acquire load of `release` (or of a stamp its
    /// walk stopped at, written by a producer after its reclaim, SYNC P2 after SYNC F) makes
    /// the second look at least as new.
    pub(super) fn space_ready(&self, n: u64, total: u64) -> bool {
        let c = self.control();
        // A corrupted count counts as ready: the attempt that follows reports it.
        if self.g.maxsize > 0
            && matches!(
                self.permits_fit(c.count.load(Ordering::Relaxed), n),
                Ok(false)
            )
        {
            return false;
        }
        let free = |c: &Control| {
            let tail = c.tail.load(Ordering::Relaxed);
            let release = c.release.load(Ordering::Acquire);
            tail.saturating_sub(release).saturating_add(total) <= self.g.capacity
        };
        // A corrupted segment counts as ready: the attempt that follows reports it.
        free(c) || self.reclaim(total).is_err() || free(c)
    }

    /// Waits until `n` messages of `total_bytes` may fit, at most until `until`. Another
    /// producer may take the space first.
    pub(super) fn wait_for_space(
        &self,
        n: u64,
        total_bytes: u64,
        until: Option<Instant>,
        now: Instant,
    ) -> bool {
        // A shutdown ends the wait: the attempt that follows fails.
        self.wait_for_copy(
            Side::Space,
            until,
            now,
            &|| self.is_shutdown() || self.space_ready(n, total_bytes),
            &|| self.space_stuck(),
            Some(&|| self.claimed_bytes()),
        )
    }

    /// Bytes of a queue's claimed records that are not reclaimed yet, `[release, head)`: what
    /// a producer short of room waits for consumers to copy out (the records reclaimable
    /// already are reclaimed by `space_ready` before this is asked). Within the capacity
    /// whatever shared memory says; 0 for a broadcast ring, whose readers claim nothing.
    fn claimed_bytes(&self) -> u64 {
        if self.g.is_broadcast() {
            return 0;
        }
        let c = self.control();
        // Relaxed: a hint for how long to spin; `ready` decides.
        let (release, head) = (
            c.release.load(Ordering::Relaxed),
            c.head.load(Ordering::Relaxed),
        );
        head.saturating_sub(release).min(self.g.capacity)
    }

    /// Whether producers short of room should poll: consumed records not yet reclaimed (a
    /// consumer may have died mid-take), or a broadcast ring that waits for subscribers.
    pub(super) fn space_stuck(&self) -> bool {
        let c = self.control();
        if self.g.is_broadcast() {
            return self.space_stuck_broadcast();
        }
        c.release.load(Ordering::Relaxed) < c.head.load(Ordering::Relaxed)
    }
}
