//! Shutting a ring down, as Python 3.13's `queue.Queue.shutdown` does, for every process at
//! once: a word in the Control block (`SHUTDOWN`, `SHUTDOWN_IMMEDIATE`, only ever set) that
//! sends and receives check, and a wake-up of every sleeper so that none sleeps through it.
//!
//! After a shutdown a send fails with `ShutDown`; a receive takes what is left and fails
//! with `ShutDown` once nothing is left and nothing is being written (instead of waiting);
//! after an immediate one a receive fails at once, and the caller of the shutdown dropped
//! what was left (counted in `Totals::dropped`). See docs/protocol.md, "Shutdown".

use super::Ring;
use crate::backing::Backing;
use crate::layout::*;
use crate::sync::{fence, Ordering};

/// What the shutdown word says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not shut down.
    Open,
    /// Shut down: sends fail, receives drain.
    Draining,
    /// Shut down immediately: sends and receives fail.
    Immediate,
}

/// Rounds of yielding an immediate shutdown's drop makes while this attachment's other
/// threads hold every lane (each holds one for one bounded attempt).
const DROP_BUSY_ROUNDS: u32 = 1000;

impl<B: Backing> Ring<B> {
    /// The shutdown phase; `Err` for a word no process can have written.
    ///
    /// # Ordering
    ///
    /// Acquire, pairing with the Release half of the shutdown's `fetch_or`: a receive that
    /// sees the word set (before its attempt and its load of `tail`) sees every reservation
    /// and commit made before the shutdown (in its caller's happens-before): it takes such a
    /// message, or sees it coming, so "drained" is true of them.
    pub(super) fn phase(&self) -> Result<Phase, &'static str> {
        let word = self.control().shutdown.load(Ordering::Acquire);
        match word {
            0 => Ok(Phase::Open),
            SHUTDOWN => Ok(Phase::Draining),
            w if w == SHUTDOWN | SHUTDOWN_IMMEDIATE => Ok(Phase::Immediate),
            _ => Err("shutdown word has unknown bits"),
        }
    }

    /// Whether the ring was shut down (by any process). A corrupted word counts as shut down:
    /// every call on the ring then fails (with `Corrupted`).
    pub fn is_shutdown(&self) -> bool {
        self.phase() != Ok(Phase::Open)
    }

    /// Shuts the ring down for every process (see the module documentation). Idempotent; an
    /// immediate shutdown after a plain one makes it immediate. Returns how many messages an
    /// immediate shutdown of a queue dropped now (a broadcast drops none: its subscribers
    /// fail at once and their cursors stay where they were).
    pub fn shutdown(&self, immediate: bool) -> u64 {
        let bits = if immediate {
            SHUTDOWN | SHUTDOWN_IMMEDIATE
        } else {
            SHUTDOWN
        };
        let c = self.control();
        // SeqCst: Release for `phase`'s Acquire; its place in the total order serves the
        // wake-up argument below with the fence.
        c.shutdown.fetch_or(bits, Ordering::SeqCst);
        // SYNC W: a sleeper re-checks its condition (which looks at the word) after its own
        // SeqCst fences: either it sees the word, or it loaded `seq` before the bump that
        // follows this fence and the futex wait returns at once.
        fence(Ordering::SeqCst);
        self.wake_all_waiters();
        if !immediate || self.g.is_broadcast() {
            return 0;
        }
        let dropped = self.drop_queued();
        // Relaxed: a statistic.
        c.totals.dropped.fetch_add(dropped, Ordering::Relaxed);
        // Producers waiting for that space are failing anyway; wake them once more so that
        // a sleeper that raced the first wake-up does not wait for its timeout slice.
        self.wake_all_waiters();
        dropped
    }

    /// Takes every message ready in the queue and drops it (the receive path, so permits,
    /// side segments and consumed records are handled as by any consumer). Stops at the
    /// first record in flight, or when the ring is corrupted.
    fn drop_queued(&self) -> u64 {
        let mut dropped = 0u64;
        let mut busy = 0;
        // Each pass moves `head` forward: at most a ring's worth of records.
        for _ in 0..=self.g.capacity / RECORD_ALIGN {
            match self.recv_any(usize::MAX, u64::MAX, &mut |_| {}, super::recv::Look::Full) {
                Ok(n) => dropped += n as u64,
                Err(super::TryRecvError::Busy) if busy < DROP_BUSY_ROUNDS => {
                    busy += 1;
                    crate::sync::yield_now();
                }
                Err(_) => break,
            }
        }
        dropped
    }

    /// Whether a receive of this ring that found nothing should report the shutdown: the
    /// phase seen before the attempt is not open, and no record is reserved ahead of `from`
    /// (a put that began before the shutdown is still waited for). `from` is `head`, or a
    /// subscriber's cursor.
    pub(super) fn drained(&self, phase: Phase, from: u64) -> bool {
        match phase {
            Phase::Open => false,
            Phase::Immediate => true,
            // Acquire: as the receive path's loads of `tail`.
            Phase::Draining => from >= self.control().tail.load(Ordering::Acquire),
        }
    }

    /// For waiters: whether a receive would now stop on the shutdown (see [`Ring::drained`]).
    /// A corrupted word counts as yes: the attempt that follows reports it.
    pub(super) fn receive_stops(&self, from: u64) -> bool {
        match self.phase() {
            Ok(phase) => self.drained(phase, from),
            Err(_) => true,
        }
    }
}
