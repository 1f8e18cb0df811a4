//! Receiving from a queue: scanning ready records from `head`, claiming them (SYNC C1),
//! handing them to the caller and marking them consumed (SYNC C3), and waiting for data.

use super::record::MarkConsumed;
use super::shutdown::Phase;
use super::{RecordView, Ring, Side, TryRecvError};
use crate::backing::Backing;
use crate::layout::*;
use crate::sync::Ordering;
use std::time::Instant;

/// What [`Ring::claim_run`] found at `head`.
pub(super) enum Run {
    Claimed(Claimed),
    /// Nothing ready; `in_flight`: a record is reserved at `head` but not committed (its
    /// producer is writing it, or died doing so).
    Empty {
        in_flight: bool,
    },
}

/// How an attempt that finds nothing ready at `head` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Look {
    /// Loads `tail` to tell an empty queue from a record in flight at `head` (whose
    /// producer may have died: `check_stuck`), and checks `head <= tail`.
    Full,
    /// Reports `Empty` without loading `tail`: the first look of a call that waits when
    /// nothing is ready, whose later attempts look in full. `tail` is the line producers
    /// CAS: read by a consumer that is about to wait, it is away from the producer whose
    /// message the consumer waits for, one more line transfer on that message's way (a
    /// two-process round trip ran ~15 % faster without it).
    Quick,
}

impl Look {
    /// The first attempt of a blocking call: `Quick` if the call then waits, for its later
    /// attempts (always `Full`) to look in full; `Full` for a call that cannot wait. (An `At`
    /// deadline may be past already: one attempt, in full.)
    pub(super) fn first(deadline: super::Deadline) -> Self {
        match deadline {
            super::Deadline::Never => Look::Quick,
            super::Deadline::After(d) if !d.is_zero() => Look::Quick,
            _ => Look::Full,
        }
    }
}

/// A claim made by [`Ring::claim_run`]: `[head, end)`, with `count` messages and the
/// `permits` of the abandoned records in it.
pub(super) struct Claimed {
    pub(super) head: u64,
    pub(super) end: u64,
    pub(super) count: u64,
    pub(super) permits: u64,
}

impl<B: Backing> Ring<B> {
    /// Receives one message if one is ready, handing it to `f` while it is claimed.
    ///
    /// `f` runs with one of this attachment's lanes held and the record claimed: it must copy
    /// what it needs and return, never block, wait for a lock, or run foreign code (a
    /// binding's user callbacks or deserialisers), or the attachment's other threads and
    /// every producer waiting for the space may wait on it.
    pub fn try_recv_with<R>(&self, f: impl FnOnce(RecordView<'_>) -> R) -> Result<R, TryRecvError> {
        let mut f = Some(f);
        let mut out = None;
        self.recv_run(
            1,
            u64::MAX,
            &mut |view| out = f.take().map(|f| f(view)),
            Look::Full,
        )?;
        // `Ok` from `recv_run` means at least one message, and `max = 1` means at most one.
        Ok(out.expect("one message was handed over"))
    }

    /// Receives up to `max` consecutive ready messages, handing each to `f` in order while it
    /// is claimed (as [`Ring::try_recv_with`]). Returns how many; `Err(Empty)` if none.
    pub fn try_recv_many_with(
        &self,
        max: usize,
        mut f: impl FnMut(RecordView<'_>),
    ) -> Result<usize, TryRecvError> {
        self.recv_run(max, u64::MAX, &mut f, Look::Full)
    }

    /// As [`Ring::try_recv_many_with`], stopping before a message that would take the payload
    /// bytes of the batch past `max_bytes` (the first message is always taken): a batch of
    /// large messages then holds only a bounded amount of memory at once.
    ///
    /// On a broadcast ring this is [`TryRecvError::Unsupported`]: a broadcast ring is read
    /// through a subscription ([`Ring::try_read_many_with`]).
    pub fn try_recv_many_limited(
        &self,
        max: usize,
        max_bytes: u64,
        mut f: impl FnMut(RecordView<'_>),
    ) -> Result<usize, TryRecvError> {
        self.recv_run(max, max_bytes, &mut f, Look::Full)
    }

    /// As [`Ring::try_recv_many_limited`], for the attempt a receive makes before it waits
    /// (a blocking receive's first look, followed by the blocking loop's attempts when it
    /// finds nothing): on an empty queue it does not load `tail`, so it neither checks for
    /// a producer stuck at `head` nor for `head <= tail` (the loop's later attempts do).
    pub fn try_recv_many_before_wait(
        &self,
        max: usize,
        max_bytes: u64,
        mut f: impl FnMut(RecordView<'_>),
    ) -> Result<usize, TryRecvError> {
        self.recv_run(max, max_bytes, &mut f, Look::Quick)
    }

    /// The one non-blocking receive behind the public ones (and `recv_many_blocking`): up to
    /// `max` messages and, past the first, `max_bytes` of payload; after a shutdown, what is
    /// left, then `ShutDown` (see `shutdown.rs`).
    pub(super) fn recv_run(
        &self,
        max: usize,
        max_bytes: u64,
        f: &mut impl FnMut(RecordView<'_>),
        look: Look,
    ) -> Result<usize, TryRecvError> {
        if max == 0 {
            return Ok(0);
        }
        // Loaded before the attempt: seen set, it makes every message committed before the
        // shutdown visible to the attempt (see `Ring::phase`).
        let phase = self.phase().map_err(TryRecvError::Corrupted)?;
        if phase == Phase::Immediate {
            return Err(TryRecvError::ShutDown);
        }
        match self.recv_any(max, max_bytes, f, look) {
            Err(TryRecvError::Empty)
                if self.drained(phase, self.control().head.load(Ordering::Acquire)) =>
            {
                Err(TryRecvError::ShutDown)
            }
            r => r,
        }
    }

    /// [`Ring::recv_run`] whatever the shutdown word says (an immediate shutdown drops what
    /// is left through it).
    pub(super) fn recv_any(
        &self,
        max: usize,
        max_bytes: u64,
        f: &mut impl FnMut(RecordView<'_>),
        look: Look,
    ) -> Result<usize, TryRecvError> {
        if self.g.is_broadcast() {
            return Err(TryRecvError::Unsupported(
                "a broadcast ring is read through a subscription",
            ));
        }
        // A run of only abandoned records is skipped and we look again; each pass moves
        // `head` forward, and a ring holds at most `capacity / 16` records.
        for _ in 0..=self.g.capacity / RECORD_ALIGN {
            match self.try_claim_and_take(max, max_bytes, f, look) {
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
        look: Look,
    ) -> Result<usize, TryRecvError> {
        let lane = self.try_lane().ok_or(TryRecvError::Busy)?;
        let Claimed {
            head,
            end,
            count,
            permits,
        } = match self.claim_run(lane.lane, max, max_bytes, look)? {
            Run::Claimed(c) => c,
            Run::Empty { in_flight } => {
                drop(lane);
                if in_flight {
                    self.check_stuck(); // a producer is writing at head, or died doing so
                }
                return Err(TryRecvError::Empty);
            }
        };
        crash_point!(AfterClaimCas, lane, Err(TryRecvError::Corrupted("crashed")));
        if self.g.maxsize > 0 {
            // Relaxed: see `take_permits`. Done before OWNED, so a repairer knows an OWNED
            // claim has given its permits back.
            self.return_permits(count.saturating_add(permits));
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

    /// Claims the run of records at `head` (at most `max` messages, `max_bytes` of payload
    /// after the first) for `lane`: writes the claim intent and CASes `head` past it.
    ///
    /// `tail` is not read while records are there to take: a record's stamp carries the
    /// keyed tag of its exact position, so a `COMMITTED` (or `ABANDONED`) stamp of this lap
    /// is proof that its producer's CAS of `tail` went past it (SYNC P1 happens before its
    /// stamp store, SYNC P2, which our Acquire load of the stamp synchronises with). The
    /// scan is bounded by the ring (`head + capacity`) instead; `tail`, the line every
    /// producer writes, is read only when nothing is ready, to tell an empty queue from a
    /// record in flight and to check `head <= tail`.
    // Always inlined into its two callers: called, it cost each single-message get about
    // 50 instructions (callgrind).
    #[inline(always)]
    pub(super) fn claim_run(
        &self,
        lane: &Lane,
        max: usize,
        max_bytes: u64,
        look: Look,
    ) -> Result<Run, TryRecvError> {
        let c = self.control();
        // SYNC C1: Acquire pairs with the Release CAS of the consumer that moved head there;
        // it had acquired the stamps below it, whose producers had moved `tail` past them,
        // so our `tail` load below cannot be older. The same holds for every load of `head`
        // here (the reloads, the CAS failure): with them Relaxed the loom model
        // `one_producer_two_consumers_each_message_once` reports a spurious "head is ahead
        // of tail".
        let mut head = c.head.load(Ordering::Acquire);
        loop {
            let limit = head.saturating_add(self.g.capacity);
            let Some((end, count, permits)) = self.scan(head, limit, max, max_bytes)? else {
                head = c.head.load(Ordering::Acquire); // stale: the records were reused
                continue;
            };
            if end == head && look == Look::Quick {
                return Ok(Run::Empty { in_flight: false }); // see `Look::Quick`
            }
            if end == head {
                // Acquire: with head <= tail read after head, `[head, tail)` is reserved.
                let tail = c.tail.load(Ordering::Acquire);
                if head > tail {
                    head = c.head.load(Ordering::Acquire);
                    if head > c.tail.load(Ordering::Acquire) {
                        return Err(TryRecvError::Corrupted("head is ahead of tail"));
                    }
                    continue;
                }
                return Ok(Run::Empty {
                    in_flight: head < tail,
                });
            }
            lane.get_start.store(head, Ordering::Relaxed);
            lane.get_end.store(end, Ordering::Relaxed);
            lane.get_state.store(INTENT_PENDING, Ordering::Relaxed);
            // SYNC C1 (claim): Release publishes the lane intent to whoever sees the new head
            // (a reclaimer or repairer), and the stamps we acquired (hence the `tail` their
            // producers wrote) to the next consumer. The records' contents were acquired by
            // the stamp loads in `scan`; nothing else needs Acquire here.
            match c
                .head
                .compare_exchange_weak(head, end, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok(Run::Claimed(Claimed {
                        head,
                        end,
                        count,
                        permits,
                    }))
                }
                Err(x) => head = x,
            }
        }
    }

    /// Scans ready records from `head` (below `tail`). Returns the end of the ready run, the
    /// messages in it and the permits carried by abandoned records in it; `None` if `head`
    /// moved meanwhile, so what was read may be stale.
    pub(super) fn scan(
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
                permits = permits.saturating_add(rec.permits); // from shared memory
            }
            pos += rec.size;
        }
        Ok(Some((pos, count, permits)))
    }

    /// Whether a record is ready at `head` (a cheap check for waiters: `true` may be
    /// spurious, `false` must not be, see SYNC W).
    ///
    /// # Ordering
    ///
    /// The `head` we read may be stale: another consumer may have claimed and consumed the
    /// record there meanwhile, and consumers notify only producers, so a waiter that judged
    /// the stale record would sleep with the next one ready (found by the loom model
    /// `two_blocked_consumers_are_both_woken`). A record not ready at `head` is therefore
    /// judged only if `head` is unchanged on a second load: if the stamp was CONSUMED (or of
    /// a later lap), our Acquire load of it synchronised with the consumer's Release store
    /// (SYNC C3, or a later producer's P2), which follows its CAS of `head`, so the second
    /// load sees the new `head`.
    pub(super) fn data_ready(&self) -> bool {
        let c = self.control();
        // Relaxed: a hint; the second load below decides (see `# Ordering`).
        let head = c.head.load(Ordering::Relaxed);
        // Only the stamp at `head`, not `tail`: a waiter polls this, and reading `tail` too
        // would take that line from the producer at every poll, so that its next `tail` CAS
        // waits for the line to come back. A stamp of this lap's tag is proof enough that
        // `tail` is past it (as in `claim_run`); with `head` unchanged, an empty queue shows
        // the stale stamp of an earlier lap (or none), which is "not ready".
        let state = self.cell(head).stamp.load(Ordering::Acquire) ^ self.g.tag(head);
        if state == COMMITTED || state == ABANDONED {
            return true;
        }
        // Relaxed: ordered after the stamp's Acquire load (see `# Ordering`).
        c.head.load(Ordering::Relaxed) != head
    }

    /// Whether the record at `head` is reserved but not yet written (its producer is busy,
    /// or dead).
    pub(super) fn head_in_flight(&self) -> bool {
        let c = self.control();
        c.head.load(Ordering::Relaxed) < c.tail.load(Ordering::Acquire) && !self.data_ready()
    }

    /// Bytes reserved from `head` on while the record there is not yet written (0 when it is,
    /// or none is reserved): what a waiting consumer waits for producers to copy. Within the
    /// capacity whatever shared memory says; a hint (a skip counts, it is soon passed).
    fn head_in_flight_bytes(&self) -> u64 {
        let c = self.control();
        // Relaxed: a hint for how long to spin; `ready` decides.
        let (head, tail) = (
            c.head.load(Ordering::Relaxed),
            c.tail.load(Ordering::Relaxed),
        );
        if head < tail && !self.data_ready() {
            (tail - head).min(self.g.capacity)
        } else {
            0
        }
    }

    /// Waits until a message may be ready, at most until `until`. Another consumer may still
    /// take it first.
    /// Also ends when a receive would stop on a shutdown.
    pub(super) fn wait_for_data(&self, until: Option<Instant>, now: Instant) -> bool {
        let ready =
            || self.data_ready() || self.receive_stops(self.control().head.load(Ordering::Relaxed));
        self.wait_for_copy(
            Side::Data,
            until,
            now,
            &ready,
            &|| self.head_in_flight(),
            Some(&|| self.head_in_flight_bytes()),
        )
    }
}
