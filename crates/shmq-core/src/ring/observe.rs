//! Observing a ring: lengths, counters, a debug dump.

use super::{AttachError, Ring};
use crate::backing::Backing;
use crate::layout::*;
use crate::sync::Ordering;

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
    /// Messages dropped unread by an immediate shutdown.
    pub dropped: u64,
    /// Whether the ring was shut down.
    pub shut_down: bool,
    /// Byte position (since creation) up to which producers reserved space.
    pub tail: u64,
    /// Byte position (since creation) up to which consumers claimed records.
    pub head: u64,
}

/// Slot index of an observer: it has no slot (see [`Ring::observe`]).
const NO_SLOT: u32 = u32::MAX;

/// What [`Ring::lifecycle`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifeInfo {
    /// Processes attached and alive (their lease is held).
    pub live: u32,
    /// Handles may be in flight until then (ns since the Unix epoch).
    pub keep_until_ns: u64,
    /// When the last detach kept the segment (0: not kept).
    pub kept_since_ns: u64,
}

impl<B: Backing> Ring<B> {
    /// Validates the segment in `b` without attaching to it: for reading its counters,
    /// subscribers and lifecycle (`shmq ls`, `stats`, `gc`). Nothing is written to the
    /// segment, so `b` may be a read-only mapping; an observer holds no slot and counts as
    /// no process. Give the backing back with [`Ring::into_backing_without_detach`]: an
    /// observer must not be detached (it panics in any slot-bound operation).
    pub fn observe(b: B) -> Result<Self, (B, AttachError)> {
        let (b, g) = Self::validate(b)?;
        Ok(Self::unattached(b, g, NO_SLOT))
    }

    /// Who is attached and alive, and what keeps the segment (a snapshot).
    pub fn lifecycle(&self) -> LifeInfo {
        let c = self.control();
        let n = c.slots_in_use.load(Ordering::Acquire).min(self.g.max_slots);
        let live = (0..n)
            .filter(|&i| {
                let state = SlotWord::unpack(self.slot_at(i).state.load(Ordering::Acquire));
                state.state == SLOT_ATTACHED && (i == self.slot || self.b.lease_held_elsewhere(i))
            })
            .count() as u32;
        // Relaxed: informational (see `Lifecycle`).
        LifeInfo {
            live,
            keep_until_ns: c.life.keep_until_ns.load(Ordering::Relaxed),
            kept_since_ns: c.life.kept_since_ns.load(Ordering::Relaxed),
        }
    }

    /// Removes the side segments (messages larger than the ring) of the records still in
    /// the ring. Only for a segment nobody can read any more: no live process attached, and
    /// its name removed.
    pub fn release_sides(&self) {
        self.release_all_sides();
    }

    /// Messages in the queue (exact when `maxsize > 0`, otherwise approximate under load:
    /// a message being written at the head hides those after it).
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
        // Counted in the ring itself, not as `puts - gets`: a process killed between its
        // record and its counter would leave that difference wrong for good, while the ring
        // converges to the truth once its operations are done or repaired. O(messages
        // queued), at most a ring's worth of record headers.
        self.queued_payload().0
    }

    /// Whether no message is ready to take (a snapshot): what a non-blocking receive would
    /// find at this instant if nothing else ran. Records abandoned by dead producers are
    /// stepped over, as a receive steps over them; a record still being written at the head
    /// hides the ones after it, as it does from a receive. A corrupted ring is not empty (a
    /// receive reports the corruption).
    pub fn is_empty(&self) -> bool {
        let c = self.control();
        // Acquire: as the receive path's loads (SYNC C1, P2 through `record`).
        let head = c.head.load(Ordering::Acquire);
        let tail = c.tail.load(Ordering::Acquire);
        let mut pos = head;
        // Each step passes a record of at least 16 bytes: at most a ring's worth.
        for _ in 0..=self.g.capacity / RECORD_ALIGN {
            if pos >= tail {
                return true;
            }
            match self.record(pos, tail) {
                Ok(Some(rec)) if rec.state == ABANDONED => pos += rec.size,
                Ok(Some(rec)) if rec.state == COMMITTED => return false,
                // Not written yet: a receive finds nothing (it waits for the writer).
                Ok(None) => return true,
                // Consumed or reused meanwhile (a stale `head`), or garbage.
                _ => return c.head.load(Ordering::Acquire) != head || pos >= tail,
            }
        }
        false
    }

    /// Whether a put of one small message would not fit now (a snapshot); see
    /// [`Ring::is_full_for`].
    pub fn is_full(&self) -> bool {
        self.is_full_for(RECORD_HEADER)
    }

    /// Whether a put of one message taking `record` bytes of the ring (its header and padded
    /// payload, [`record_size`]) would not fit now (a snapshot), or `maxsize` messages are
    /// queued.
    ///
    /// A query: it loads positions and changes nothing. Bytes a send could reclaim first
    /// count as free: in a queue everything below `head` (claimed; a record still being
    /// copied out may make that send wait a moment), in a broadcast ring everything below
    /// the slowest subscriber. A lag-policy broadcast ring is never full: a send overwrites.
    pub fn is_full_for(&self, record: u64) -> bool {
        let c = self.control();
        if self.g.maxsize > 0 {
            // Relaxed: a snapshot of the count (see `take_permits`). A corrupted count is
            // full: every send fails.
            let count = c.count.load(Ordering::Relaxed);
            if !matches!(self.permits_fit(count, 1), Ok(true)) {
                return true;
            }
        }
        // Relaxed: a snapshot of positions; nothing is read through them.
        let release = c.release.load(Ordering::Relaxed);
        let tail = c.tail.load(Ordering::Relaxed);
        if tail.saturating_sub(release) > self.g.capacity {
            return true; // corrupted positions: every send fails
        }
        let oldest_kept = if !self.g.is_broadcast() {
            c.head.load(Ordering::Relaxed)
        } else if self.lag_policy() {
            return false;
        } else {
            self.slowest_cursor(release, tail)
        };
        tail.saturating_sub(oldest_kept.max(release))
            .saturating_add(record.max(RECORD_HEADER))
            > self.g.capacity
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
            if SlotWord::unpack(s.state.load(Ordering::Relaxed)).state == SLOT_FREE {
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
            dropped: c.totals.dropped.load(Ordering::Relaxed),
            shut_down: self.is_shutdown(),
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

    /// A human-readable dump of the shared positions, slots and lane intents (for debugging
    /// and for failing tests).
    pub fn debug_state(&self) -> String {
        use std::fmt::Write;
        let c = self.control();
        let mut out = format!(
            "tail={} head={} release={} count={} attached={} reaped={} abandoned={} lost={} \
             shutdown={}\n",
            c.tail.load(Ordering::Relaxed),
            c.head.load(Ordering::Relaxed),
            c.release.load(Ordering::Relaxed),
            c.count.load(Ordering::Relaxed),
            c.attached.load(Ordering::Relaxed),
            c.totals.reaped.load(Ordering::Relaxed),
            c.totals.abandoned.load(Ordering::Relaxed),
            c.totals.lost.load(Ordering::Relaxed),
            c.shutdown.load(Ordering::Relaxed),
        );
        for i in 0..self.g.max_slots {
            let s = self.slot_at(i);
            let state = SlotWord::unpack(s.state.load(Ordering::Relaxed));
            let _ = write!(
                out,
                "slot {i}: gen={} state={} alive={} cursor={} missed={}",
                state.gen,
                state.state,
                self.b.lease_held_elsewhere(i),
                s.cursor.load(Ordering::Relaxed) as i64,
                s.missed.load(Ordering::Relaxed),
            );
            for (k, l) in s.lanes.iter().enumerate() {
                let put = PutIntent::unpack(l.put_state.load(Ordering::Relaxed));
                let get = l.get_state.load(Ordering::Relaxed);
                if put.state != INTENT_NONE || get != 0 || l.busy.load(Ordering::Relaxed) != 0 {
                    let _ = write!(
                        out,
                        " lane{k}[busy={} put={}+{}p:{}..{} get={}:{}..{}]",
                        l.busy.load(Ordering::Relaxed),
                        put.state,
                        put.permits,
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
}
