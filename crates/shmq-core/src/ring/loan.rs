//! Zero copy in both directions: a **loan** (bytes reserved at `tail` that the caller writes
//! in place, then commits or abandons) and a **claim held** on a queue record (claimed at
//! `head`, read in place, marked consumed when released).
//!
//! Both are ordinary protocol operations (SYNC P1/P2, C1/C3) stretched over the caller's
//! code: the lane that describes them stays taken until the commit or release, so that a
//! repairer attributes them if the process dies (a dead producer's loan becomes
//! `ABANDONED`, a dead consumer's held record is marked consumed and counted lost), exactly
//! as for a process killed inside a send or a receive. Long-lived operations only take lanes
//! `1..LANES`: lane 0 stays for the bounded attempts of the attachment's other threads, which
//! therefore always make progress (at most `LANES - 1` loans and holds per attachment at
//! once; a further one gets `Busy`).
//!
//! A loan's payload is contiguous: a record that would wrap around the end of the ring is
//! placed at the ring's start instead, behind a **filler** (an `ABANDONED` record carrying no
//! permits, written by the producer itself) that consumers, reclaimers and repairers skip as
//! they skip any abandoned record. No new record state, so no layout change.

use super::blocking::{block, Deadline, Next, Stop};
use super::recv::{Claimed, Look, Run};
use super::shutdown::Phase;
use super::{Ring, Side, TryRecvError, TrySendError, Waiter};
use crate::backing::Backing;
use crate::layout::*;
use crate::sync::Ordering;
use crate::{RecvTimeoutError, SendTimeoutError};

/// Bytes reserved in the ring for one message, written in place (see [`Ring::try_loan`]).
/// It must end with [`Ring::commit_loan`] or [`Ring::abandon_loan`] on the same ring;
/// dropping it keeps its lane and its bytes reserved until the process dies.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a loan must be committed or abandoned"]
pub struct Loan {
    lane: usize,
    /// The record's position (after a filler, if any).
    pos: u64,
    len: u64,
    permits: u64,
}

impl Loan {
    /// Payload bytes of the loan.
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// Whether the loan has no payload bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The long-lived lane it keeps (`1..LANES`): distinct among the attachment's open loans
    /// and holds, so a caller can index its own per-lane bookkeeping by it.
    pub fn lane(&self) -> usize {
        self.lane
    }
}

/// A queue record claimed and read in place (see [`Ring::try_claim_held`]). It must end with
/// [`Ring::release_claim`] on the same ring.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a held claim must be released"]
pub struct Claim {
    lane: usize,
    pos: u64,
    /// Codec id of the message.
    pub codec: u16,
    /// Flag bits of the record.
    pub flags: u16,
    /// Payload length.
    pub len: u64,
}

impl Claim {
    /// The long-lived lane it keeps (`1..LANES`), as [`Loan::lane`].
    pub fn lane(&self) -> usize {
        self.lane
    }
}

/// Rounds over the long-lived lanes before reporting `Busy` (as `LANE_ROUNDS` in slots.rs).
const LONG_LANE_ROUNDS: usize = 8;

/// The largest filler record (a multiple of 16 that fits a record's `u32` length).
const FILLER_MAX: u64 = 1 << 31;

impl<B: Backing> Ring<B> {
    /// Takes one of the lanes `1..LANES` (lane 0 is left to bounded attempts): its index.
    fn try_long_lane(&self) -> Option<usize> {
        for _ in 0..LONG_LANE_ROUNDS {
            for i in 1..LANES {
                // SYNC L: see `LaneLock::try_take`.
                if self.lanes_taken[i].try_take() {
                    // Relaxed: informational.
                    self.slot_at(self.slot).lanes[i]
                        .busy
                        .store(1, Ordering::Relaxed);
                    return Some(i);
                }
            }
            crate::sync::spin_hint();
        }
        None
    }

    /// Gives a long-lived lane back (its intents already cleared).
    fn give_back_long_lane(&self, i: usize) {
        self.slot_at(self.slot).lanes[i]
            .busy
            .store(0, Ordering::Relaxed);
        // SYNC L: see `LaneLock::give_back`.
        self.lanes_taken[i].give_back();
    }

    fn lane_at(&self, i: usize) -> &Lane {
        &self.slot_at(self.slot).lanes[i]
    }

    /// Writes fillers (`ABANDONED` records with no permits) over `[pos, pos + size)`: one,
    /// or several on rings larger than a record's `u32` length.
    fn write_filler(&self, mut pos: u64, size: u64) {
        let end = pos + size;
        while pos < end {
            let part = (end - pos).min(FILLER_MAX);
            let cell = self.cell(pos);
            // Relaxed: published by the stamp's Release store.
            cell.meta
                .store(pack_meta(part as u32, 0, 0), Ordering::Relaxed);
            // SYNC P2: Release, as a commit (consumers read the meta after the stamp).
            cell.stamp
                .store(self.g.tag(pos) | ABANDONED, Ordering::Release);
            pos += part;
        }
    }

    /// Bytes a loan of `len` payload bytes reserves at the current tail: the record, plus
    /// the bytes to the end of the ring if the record would wrap (a filler); or only those
    /// bytes if both would not fit in the ring together (the record then follows at the
    /// ring's start, in a second reservation).
    fn loan_need(&self, len: u64) -> u64 {
        let cap = self.g.capacity;
        let rs = record_size(len);
        let off = self.wrap(self.control().tail.load(Ordering::Relaxed));
        let pad = cap - off;
        if off + rs <= cap {
            rs
        } else if pad + rs <= cap {
            pad + rs
        } else {
            pad
        }
    }

    /// Reserves room for one message of `len` payload bytes, contiguous in the ring, and
    /// lends it to the caller, who writes it in place ([`Ring::loan_bytes`]) and then
    /// commits it ([`Ring::commit_loan`]) or abandons it ([`Ring::abandon_loan`]).
    ///
    /// Until then one of this attachment's lanes stays taken, and consumers wait at this
    /// record (it holds back every later one): commit soon. If the process dies meanwhile the
    /// reservation is repaired as an abandoned send. `Busy` if this attachment already has
    /// `LANES - 1` loans and holds (or its other threads hold the lanes for a moment).
    pub fn try_loan(&self, len: u64) -> Result<Loan, TrySendError> {
        let max = self.g.max_payload();
        if len > max {
            return Err(TrySendError::TooLarge { size: len, max });
        }
        if self.b.typed().is_some() {
            return Err(TrySendError::Unsupported("loans need a mapped ring"));
        }
        // After a shutdown no loan opens (as no send succeeds); one opened before it commits.
        match self.phase() {
            Ok(Phase::Open) => {}
            Ok(_) => return Err(TrySendError::ShutDown),
            Err(what) => return Err(TrySendError::Corrupted(what)),
        }
        let lane_i = self.try_long_lane().ok_or(TrySendError::Busy)?;
        let r = self.loan_on(lane_i, len);
        if r.is_err() {
            self.give_back_long_lane(lane_i);
        }
        r
    }

    fn loan_on(&self, lane_i: usize, len: u64) -> Result<Loan, TrySendError> {
        let lane = self.lane_at(lane_i);
        let cap = self.g.capacity;
        let rs = record_size(len);
        let permits = u64::from(self.g.maxsize > 0);
        if permits > 0 {
            self.take_permits(lane, 1)?;
        }
        // Each round either places the record or moves `tail` to the ring's start by a
        // filler; two rounds suffice unless other producers keep moving `tail` meanwhile.
        for _ in 0..8 {
            let need = self.loan_need(len);
            let mut reserved = self.reserve(lane, need);
            // Our own filler (or a dead producer's leftovers) at `head` may be all that keeps
            // the room from being free: a consumer would pass it, but the consumer may be
            // this very thread, waiting here. Pass it ourselves, as a consumer would.
            if reserved == Err(TrySendError::Full) && self.pass_abandoned_at_head(lane) {
                reserved = self.reserve(lane, need);
            }
            let start = match reserved {
                Ok(start) => start,
                Err(e) => {
                    if permits > 0 {
                        self.give_back_permits(lane, permits);
                    }
                    return Err(e);
                }
            };
            let end = start + need;
            let off = self.wrap(start);
            // Where the record fits contiguously inside `[start, end)`, if anywhere.
            let pos = if off + rs <= cap && rs <= need {
                Some(start)
            } else if cap - off + rs <= need {
                Some(start + (cap - off))
            } else {
                None
            };
            let Some(pos) = pos else {
                // Another producer moved `tail` since `loan_need`: this stretch is a filler,
                // and we try again from the ring's start. The lane keeps only the permits.
                self.write_filler(start, need);
                lane.put_state.store(
                    PutIntent {
                        state: INTENT_NONE,
                        permits,
                    }
                    .pack(),
                    Ordering::Release,
                );
                self.notify(Side::Data);
                continue;
            };
            if pos > start {
                self.write_filler(start, pos - start);
            }
            if pos + rs < end {
                self.write_filler(pos + rs, end - pos - rs);
            }
            return Ok(Loan {
                lane: lane_i,
                pos,
                len,
                permits,
            });
        }
        if permits > 0 {
            self.give_back_permits(lane, permits);
        }
        Err(TrySendError::Busy)
    }

    /// Claims the run of abandoned records at `head` of a queue, if there is one (as a
    /// consumer does when its claim holds only abandoned records: SYNC C1, permits returned),
    /// so that reclaim can free their bytes. Returns whether `head` moved. The claim goes in
    /// the get intent of our lane (which holds a put intent beside it).
    fn pass_abandoned_at_head(&self, lane: &Lane) -> bool {
        if self.g.is_broadcast() {
            return false; // no head: reclaim follows the subscribers' cursors
        }
        let c = self.control();
        // SYNC C1: Acquire, as every load of `head` (see `try_claim_and_take`).
        let head = c.head.load(Ordering::Acquire);
        let tail = c.tail.load(Ordering::Acquire);
        let (mut end, mut permits) = (head, 0u64);
        while end < tail {
            // SYNC P2: `record` loads the stamp with Acquire.
            match self.record(end, tail) {
                Ok(Some(rec)) if rec.state == ABANDONED => {
                    permits = permits.saturating_add(rec.permits); // from shared memory
                    end += rec.size;
                }
                _ => break, // a message, a record in flight, or garbage: not ours to judge
            }
        }
        if end == head {
            return false;
        }
        lane.get_start.store(head, Ordering::Relaxed);
        lane.get_end.store(end, Ordering::Relaxed);
        lane.get_state.store(INTENT_PENDING, Ordering::Relaxed);
        // SYNC C1 (claim): Release publishes the intent; a failure means another consumer
        // moved `head` (it passes the records itself).
        let won = c
            .head
            .compare_exchange(head, end, Ordering::Release, Ordering::Relaxed)
            .is_ok();
        if won {
            if self.g.maxsize > 0 {
                self.return_permits(permits); // before OWNED, as in `try_claim_and_take`
            }
            lane.get_state.store(INTENT_OWNED, Ordering::Relaxed);
        }
        lane.get_state.store(INTENT_NONE, Ordering::Release);
        if won {
            self.notify(Side::Space);
        }
        won
    }

    /// The loan's payload bytes, contiguous.
    ///
    /// # Safety
    ///
    /// `loan` must come from [`Ring::try_loan`] on this ring and not be committed or
    /// abandoned yet; the caller must not keep the pointer past that.
    pub unsafe fn loan_bytes(&self, loan: &Loan) -> *mut u8 {
        let start = self.wrap(loan.pos + RECORD_HEADER);
        debug_assert!(start + loan.len <= self.g.capacity);
        // SAFETY: `try_loan` placed `[pos + 16, pos + 16 + len)` inside the data ring without
        // wrapping, and refuses typed storage; the reservation makes the bytes ours alone.
        unsafe { self.b.base().add((self.g.data_offset + start) as usize) }
    }

    /// Publishes a loan as one message of `codec` and `flags` (SYNC P2).
    pub fn commit_loan(&self, loan: Loan, codec: u16, flags: u16) {
        let cell = self.cell(loan.pos);
        // Relaxed: published by the stamp's Release store.
        cell.meta
            .store(pack_meta(loan.len as u32, codec, flags), Ordering::Relaxed);
        // SYNC P2 (publish): Release, so a consumer that sees COMMITTED sees the bytes the
        // caller wrote through `loan_bytes` and the meta.
        cell.stamp
            .store(self.g.tag(loan.pos) | COMMITTED, Ordering::Release);
        self.end_loan(loan.lane);
        self.slot_at(self.slot)
            .counters
            .puts
            .fetch_add(1, Ordering::Relaxed);
        self.notify(Side::Data);
        if self.g.is_broadcast() {
            // As in `try_send_many`: publishers may wait behind this record.
            self.notify_again(Side::Space);
        }
    }

    /// Gives a loan up: its bytes become an `ABANDONED` record (carrying its maxsize permit)
    /// that consumers skip. Nothing is delivered.
    pub fn abandon_loan(&self, loan: Loan) {
        let cell = self.cell(loan.pos);
        // Relaxed: published by the stamp's Release store.
        // The record's own bytes: a trailing filler, if any, is a record of its own already.
        let size = record_size(loan.len);
        cell.meta.store(
            pack_meta(size as u32, loan.permits as u16, 0),
            Ordering::Relaxed,
        );
        // SYNC P2: Release, as a repairer's ABANDONED store.
        cell.stamp
            .store(self.g.tag(loan.pos) | ABANDONED, Ordering::Release);
        // At `head` (the usual case), pass it now: the queue is then empty again at once
        // (`is_empty` compares `head` and `tail`), and its bytes can be reclaimed.
        self.pass_abandoned_at_head(self.lane_at(loan.lane));
        self.end_loan(loan.lane);
        self.notify(Side::Data);
        if self.g.is_broadcast() {
            self.notify_again(Side::Space);
        }
    }

    fn end_loan(&self, lane_i: usize) {
        // The record now carries the permits; the lane owns nothing. Release: as in
        // `try_send_many` (a repairer that sees NONE sees the stamp).
        self.lane_at(lane_i)
            .put_state
            .store(PutIntent::NONE.pack(), Ordering::Release);
        self.give_back_long_lane(lane_i);
    }

    /// Loans room for one message, waiting for space until `deadline` (as
    /// [`Ring::send_many_blocking`]).
    pub fn loan_blocking(
        &self,
        len: u64,
        deadline: impl Into<Deadline>,
        w: &mut dyn Waiter,
    ) -> Result<Loan, SendTimeoutError>
    where
        B: Sync,
    {
        let attempt = || match self.try_loan(len) {
            Ok(l) => Ok(l),
            Err(TrySendError::Full) => Err(Next::Sleep),
            Err(TrySendError::Busy) => Err(Next::Held),
            Err(e) => Err(Next::Fail(SendTimeoutError::from_attempt(e))),
        };
        block(deadline.into(), w, attempt, |until, now| {
            self.wait_for_space(1, self.loan_need(len), until, now)
        })
        .map_err(|s| match s {
            Stop::Timeout => SendTimeoutError::Timeout,
            Stop::Interrupted => SendTimeoutError::Interrupted,
            Stop::Fail(e) => e,
        })
    }

    /// Claims the next message of a queue and keeps it claimed, so that the caller reads it
    /// in place ([`Ring::claim_payload`]) until [`Ring::release_claim`], which marks it
    /// consumed (SYNC C3). Later messages can be received meanwhile (by any thread or
    /// process), but the held record's bytes are not reclaimed: a hold kept long makes
    /// producers wait for space once the ring has gone round. One of this attachment's lanes
    /// stays taken (see the module's comment). If the process dies holding it, the message
    /// is counted lost (as a consumer killed inside a receive).
    pub fn try_claim_held(&self) -> Result<Claim, TryRecvError> {
        self.claim_held(Look::Full)
    }

    fn claim_held(&self, look: Look) -> Result<Claim, TryRecvError> {
        if self.g.is_broadcast() {
            return Err(TryRecvError::Unsupported(
                "a broadcast ring is read through a subscription",
            ));
        }
        if self.b.typed().is_some() {
            return Err(TryRecvError::Unsupported("holds need a mapped ring"));
        }
        // Loaded before the attempt, as in `recv_run`: after a shutdown, what is left is
        // held as usual, then `ShutDown`.
        let phase = self.phase().map_err(TryRecvError::Corrupted)?;
        if phase == Phase::Immediate {
            return Err(TryRecvError::ShutDown);
        }
        let lane_i = self.try_long_lane().ok_or(TryRecvError::Busy)?;
        // A run of only abandoned records is claimed, skipped, and we look again.
        for _ in 0..=self.g.capacity / RECORD_ALIGN {
            match self.claim_one(lane_i, look) {
                Ok(Some(claim)) => return Ok(claim),
                Ok(None) => continue,
                Err(e) => {
                    let e = match e {
                        TryRecvError::Empty
                            if self.drained(phase, self.control().head.load(Ordering::Acquire)) =>
                        {
                            TryRecvError::ShutDown
                        }
                        e => e,
                    };
                    self.lane_at(lane_i)
                        .get_state
                        .store(INTENT_NONE, Ordering::Release);
                    self.give_back_long_lane(lane_i);
                    return Err(e);
                }
            }
        }
        self.give_back_long_lane(lane_i);
        Err(TryRecvError::Corrupted(
            "more abandoned records than the ring can hold",
        ))
    }

    /// One claim at `head` of at most one message (and the abandoned records before it), as
    /// in `try_claim_and_take`. `None`: only abandoned records were claimed.
    fn claim_one(&self, lane_i: usize, look: Look) -> Result<Option<Claim>, TryRecvError> {
        let lane = self.lane_at(lane_i);
        let Claimed {
            head,
            end,
            count,
            permits,
        } = match self.claim_run(lane, 1, u64::MAX, look)? {
            Run::Claimed(c) => c,
            Run::Empty { in_flight } => {
                if in_flight {
                    self.check_stuck();
                }
                return Err(TryRecvError::Empty);
            }
        };
        if self.g.maxsize > 0 {
            // Before OWNED, as in `try_claim_and_take` (a repairer relies on it).
            self.return_permits(count.saturating_add(permits));
        }
        lane.get_state.store(INTENT_OWNED, Ordering::Relaxed);
        let mut pos = head;
        while pos < end {
            // Re-validated: the header may have been scribbled on since `scan`.
            let rec = match self.record(pos, end) {
                Ok(Some(rec)) if rec.state == COMMITTED || rec.state == ABANDONED => rec,
                Ok(_) => return Err(TryRecvError::Corrupted("claimed record changed state")),
                Err(what) => return Err(TryRecvError::Corrupted(what)),
            };
            if rec.state == COMMITTED {
                // `scan` with `max = 1` ends the run right after its one message.
                if pos + rec.size != end {
                    return Err(TryRecvError::Corrupted("claimed record changed size"));
                }
                return Ok(Some(Claim {
                    lane: lane_i,
                    pos,
                    codec: rec.codec,
                    flags: rec.flags,
                    len: rec.len,
                }));
            }
            pos += rec.size;
        }
        lane.get_state.store(INTENT_NONE, Ordering::Release);
        self.notify(Side::Space);
        Ok(None)
    }

    /// The payload of a held claim, in (up to) two parts.
    ///
    /// # Safety
    ///
    /// `claim` must come from [`Ring::try_claim_held`] on this ring and not be released yet;
    /// the slices must not be used past its release.
    pub unsafe fn claim_payload(
        &self,
        claim: &Claim,
    ) -> (std::borrow::Cow<'_, [u8]>, std::borrow::Cow<'_, [u8]>) {
        // SAFETY: `record` checked `len <= max_payload()`; the claim is ours (see above).
        unsafe { self.payload(claim.pos, claim.len) }
    }

    /// Ends a hold: the record is consumed (SYNC C3) and its lane given back.
    pub fn release_claim(&self, claim: Claim) {
        // SYNC C3 (consumed): Release; the caller's reads happen before a producer that sees
        // CONSUMED (Acquire) overwrites the bytes.
        self.cell(claim.pos)
            .stamp
            .store(self.g.tag(claim.pos) | CONSUMED, Ordering::Release);
        self.lane_at(claim.lane)
            .get_state
            .store(INTENT_NONE, Ordering::Release);
        self.give_back_long_lane(claim.lane);
        self.slot_at(self.slot)
            .counters
            .gets
            .fetch_add(1, Ordering::Relaxed);
        self.notify(Side::Space);
    }

    /// Holds the next message of a queue (as [`Ring::try_claim_held`]), waiting for one
    /// until `deadline`.
    pub fn claim_held_blocking(
        &self,
        deadline: impl Into<Deadline>,
        w: &mut dyn Waiter,
    ) -> Result<Claim, RecvTimeoutError>
    where
        B: Sync,
    {
        let deadline = deadline.into();
        let mut look = Look::first(deadline); // see `Look::Quick`
        let attempt = || match self.claim_held(std::mem::replace(&mut look, Look::Full)) {
            Ok(c) => Ok(c),
            Err(TryRecvError::Empty) => Err(Next::Sleep),
            Err(TryRecvError::Busy) => Err(Next::Held),
            Err(TryRecvError::Corrupted(w)) => Err(Next::Fail(RecvTimeoutError::Corrupted(w))),
            Err(TryRecvError::Unsupported(w)) => Err(Next::Fail(RecvTimeoutError::Unsupported(w))),
            Err(TryRecvError::ShutDown) => Err(Next::Fail(RecvTimeoutError::ShutDown)),
        };
        block(deadline, w, attempt, |until, now| {
            self.wait_for_data(until, now)
        })
        .map_err(|s| match s {
            Stop::Timeout => RecvTimeoutError::Timeout,
            Stop::Interrupted => RecvTimeoutError::Interrupted,
            Stop::Fail(e) => e,
        })
    }
}
