//! Waiting and waking (SYNC W only): the two event counts (`Side`), notifying sleepers, and
//! one spin-then-sleep step (`wait_once`) with the loop around it (`wait_for`). The
//! conditions waited for live with their direction (`send.rs`, `recv.rs`, `broadcast.rs`).

use super::Ring;
use crate::backing::Backing;
use crate::layout::*;
use crate::sync::{fence, spin_hint, yield_now, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a waiter spins before it sleeps.
pub const SPIN: Duration = Duration::from_micros(50);

/// The longest spin of a waiter whose condition waits on a record in flight (being written,
/// or being read): see [`spin_budget`].
pub const MAX_SPIN: Duration = Duration::from_millis(1);

/// The copy rate a waiter assumes of the peer it waits for, in bytes per microsecond (2 GB/s):
/// a few times slower than a copy from memory on the 2-core VM (~11 GB/s alone, ~5.5 GB/s with
/// both sides copying), so the spin outlasts a copy slowed by a busy machine.
const SLOW_COPY_BYTES_PER_US: u64 = 2000;

/// Longest single futex sleep: bounds the delay a notifier killed in the middle of a
/// wake-up can cause (see `Ring::wake_sleepers`).
pub const MAX_SLEEP: Duration = Duration::from_millis(100);

/// While the record at `head` (or at `release`) is in flight, sleepers wake this often to
/// check that its owner is still alive.
pub const STUCK_POLL: Duration = Duration::from_millis(2);

/// Condition checks a spinning waiter makes between two reads of the clock: a check is a
/// few loads, a clock read a call into the vDSO, so the clock costs little and the spin
/// still ends close to its budget (when crowded, each check yields the CPU and the spin may
/// run longer: it gives the CPU away meanwhile).
const CHECKS_PER_CLOCK_READ: usize = 64;

/// A gap between two clock reads of a spinner longer than this means it lost its CPU
/// meanwhile (64 checks take a few microseconds): a longer spin then stops.
const PREEMPTED: Duration = Duration::from_micros(200);

/// How long a waiter spins when `in_flight` bytes of records are being copied by the peers
/// whose progress it waits for: the time such a copy may take at [`SLOW_COPY_BYTES_PER_US`],
/// within [`SPIN`] and [`MAX_SPIN`]. A large record takes far longer to copy than [`SPIN`],
/// and a sleeper woken when it is done pays a futex wake-up (a system call for the peer,
/// tens of µs for a halted CPU to run the sleeper again) per message: a spin that covers the
/// copy saves both. `in_flight` is read from shared memory: any value gives a bounded spin.
pub fn spin_budget(in_flight: u64) -> Duration {
    Duration::from_micros(in_flight / SLOW_COPY_BYTES_PER_US).clamp(SPIN, MAX_SPIN)
}

/// How one sleep ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wake {
    Ready,
    TimedOut,
    Interrupted,
    Again,
}

/// Which event a waiter sleeps on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Data,
    Space,
}

impl<B: Backing> Ring<B> {
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
    pub(super) fn notify(&self, side: Side) {
        // SYNC W (no lost wake-up): this SeqCst fence against the waiter's two, in the single
        // total order of SeqCst fences. If ours comes before its second, its re-check sees
        // what we published. Otherwise our loads below see its `waiters += 1` (before its
        // first fence) and its `pending = 0` (before its second): we wake it, or skip because
        // `pending` is 1 again, set by a notifier after its clear, whose `seq` increment then
        // follows the waiter's load of `seq`. The whole argument: docs/protocol.md, SYNC W.
        fence(Ordering::SeqCst);
        self.wake_sleepers(side);
    }

    /// As [`Ring::notify`], right after a `notify` of the other side (whose fence serves).
    pub(super) fn notify_again(&self, side: Side) {
        self.wake_sleepers(side);
    }

    fn wake_sleepers(&self, side: Side) {
        let ev = self.event(side);
        // A wake-up already pending reaches every current sleeper: each loaded `seq` before
        // it cleared `pending`, so the pending notifier's increment (which follows its swap,
        // itself after their clear) changes the word they sleep on. Skipping the system call
        // then matters when sleepers are slow to run (more processes than CPUs): without it
        // every publish would wake them again. Relaxed loads: ordered by the fence above. The
        // swap makes one notifier of a burst the one that bumps `seq` (its atomicity matters,
        // its AcqRel is more than the argument needs).
        if ev.waiters.load(Ordering::Relaxed) > 0
            && ev.pending.load(Ordering::Relaxed) == 0
            && ev.pending.swap(1, Ordering::AcqRel) == 0
        {
            // Release: pairs with the waiter's Acquire load of `seq` (a waiter that loads the
            // bumped value sees the `pending = 1` before it, see the argument).
            ev.seq.fetch_add(1, Ordering::Release);
            self.b.wake_all(&ev.seq);
        }
    }

    /// Spins, then sleeps once until `ready()`, a notification, the deadline or a signal.
    ///
    /// Under loom there is no spin phase, no clock and no timeout: models must be
    /// deterministic, and a lost wake-up must leave the waiter blocked for good (which loom
    /// reports as a deadlock) instead of being hidden by `MAX_SLEEP`. Nor is there a stuck
    /// poll: it is a timeout, and the models of SYNC W have no dead processes.
    fn wait_once(
        &self,
        side: Side,
        until: Option<Instant>,
        start: Option<Instant>,
        ready: &dyn Fn() -> bool,
        stuck: &dyn Fn() -> bool,
        in_flight: Option<&dyn Fn() -> u64>,
    ) -> Wake {
        if !cfg!(loom) {
            if let Some(wake) = self.spin(until, start, ready, in_flight) {
                return wake;
            }
        }
        let ev = self.event(side);
        let seq = self.announce(side);
        let mut wake = Wake::Again;
        if ready() {
            wake = Wake::Ready;
        } else {
            let timeout = if cfg!(loom) {
                None
            } else {
                let mut timeout = until.map(|d| d.saturating_duration_since(Instant::now()));
                // A notifier killed between setting `pending` and bumping `seq` would leave
                // the others skipping their wake-ups: no sleep is longer than MAX_SLEEP.
                timeout = Some(timeout.map_or(MAX_SLEEP, |t| t.min(MAX_SLEEP)));
                if stuck() {
                    timeout = Some(timeout.map_or(STUCK_POLL, |t| t.min(STUCK_POLL)));
                }
                timeout
            };
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
        self.leave(side);
        if !cfg!(loom) && wake == Wake::Again && stuck() {
            self.check_stuck();
        }
        wake
    }

    /// SYNC W, a waiter's announcement on `side`: join the waiters, fence, read the word,
    /// clear `pending`, fence; the caller then re-checks its condition and sleeps on the word
    /// while it holds the returned value (in place or, for an asynchronous waiter, in the
    /// helper thread), then calls [`Ring::leave`]. The slot's own count goes up after, and
    /// down before, the shared one: a process killed in between leaves `waiters` too high (an
    /// extra wake-up call), never too low (a lost wake-up).
    fn announce(&self, side: Side) -> u32 {
        let ev = self.event(side);
        // Relaxed: ordered by the fence that follows (the argument needs nothing more).
        ev.waiters.fetch_add(1, Ordering::Relaxed);
        self.sleeping(side).fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        // Acquire: pairs with a notifier's Release increment (the pending case of SYNC W).
        let seq = ev.seq.load(Ordering::Acquire);
        // After loading `seq` (see `wake_sleepers`), before re-checking: from here on a
        // notifier either wakes us or finds a wake-up pending that changes `seq`. Relaxed:
        // ordered by the fence that follows.
        ev.pending.store(0, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        seq
    }

    /// SYNC W, a waiter's departure from `side` (after its sleep, however it ended).
    fn leave(&self, side: Side) {
        self.sleeping(side).fetch_sub(1, Ordering::Relaxed);
        // Release: orders our reads before the departure (a count, not a publication).
        self.event(side).waiters.fetch_sub(1, Ordering::Release);
    }

    /// The spin phase of [`Ring::wait_once`]: checks `ready()` for about [`SPIN`], and when
    /// that ends, if `in_flight` says records are being copied, on until the
    /// [`spin_budget`] of their size (from the start; judged once). `None` when the caller
    /// should go on to sleep.
    fn spin(
        &self,
        until: Option<Instant>,
        start: Option<Instant>,
        ready: &dyn Fn() -> bool,
        mut in_flight: Option<&dyn Fn() -> u64>,
    ) -> Option<Wake> {
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
        let scale = |spin: Duration| {
            if cpus <= 1 {
                Duration::ZERO
            } else if crowded {
                spin / 5
            } else {
                spin
            }
        };
        // The caller's clock reading when it has one (taken just before, see `block`).
        let start = start.unwrap_or_else(Instant::now);
        let mut spin_end = start + scale(SPIN);
        let (mut last, mut extended) = (start, false);
        loop {
            for _ in 0..CHECKS_PER_CLOCK_READ {
                if ready() {
                    return Some(Wake::Ready);
                }
                if crowded {
                    yield_now();
                } else {
                    spin_hint();
                }
            }
            let now = Instant::now();
            // A spin that lost its CPU between two clock reads (they are microseconds apart
            // otherwise) runs on a machine with more work than CPUs, where it keeps a CPU
            // from others, maybe from the peer it waits for: a longer spin ends there. (A
            // crowded spinner gives its CPU away at every check: its gaps say nothing.)
            if extended && !crowded && now.saturating_duration_since(last) > PREEMPTED {
                return None;
            }
            last = now;
            if now >= spin_end {
                // The longer budget is judged when the short one ends, so that a wait that
                // began before a record was reserved (or claimed) gets it too.
                // Not shortened when crowded: the peer is busy copying, and our checks yield
                // it the CPU if it shares ours (measured: the benchmark's parent stays
                // attached, so 1→1 on 2 CPUs is crowded).
                match in_flight
                    .take()
                    .filter(|_| cpus > 1)
                    .map(|f| spin_budget(f()))
                {
                    Some(budget) if start + budget > now => {
                        spin_end = start + budget;
                        extended = true;
                    }
                    _ => return None,
                }
            }
            if until.is_some_and(|d| now >= d) {
                return Some(Wake::TimedOut);
            }
        }
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
    pub(super) fn wait_for(
        &self,
        side: Side,
        until: Option<Instant>,
        now: Instant,
        ready: &dyn Fn() -> bool,
        stuck: &dyn Fn() -> bool,
    ) -> bool {
        self.wait_for_copy(side, until, now, ready, stuck, None)
    }

    /// As [`Ring::wait_for`], for a condition that peers make true when they finish copying
    /// a record: `in_flight()` is how many bytes of such records are in flight (0: none),
    /// and the first spin lasts their [`spin_budget`]. Later rounds, after a sleep, spin
    /// [`SPIN`]: a record still in flight after a long spin and a sleep is a slow, stopped
    /// or dead peer's, for the stuck poll to watch, not for a spinner.
    pub(super) fn wait_for_copy(
        &self,
        side: Side,
        until: Option<Instant>,
        now: Instant,
        ready: &dyn Fn() -> bool,
        stuck: &dyn Fn() -> bool,
        mut in_flight: Option<&dyn Fn() -> u64>,
    ) -> bool {
        // The first round's spin starts from the caller's clock reading; later ones read it.
        let mut start = Some(now);
        loop {
            match self.wait_once(side, until, start.take(), ready, stuck, in_flight.take()) {
                Wake::Ready => return true,
                Wake::TimedOut | Wake::Interrupted => return false,
                // (No clock under loom, see `wait_once`.)
                Wake::Again if !cfg!(loom) && until.is_some_and(|u| Instant::now() >= u) => {
                    return ready()
                }
                Wake::Again => {}
            }
        }
    }
}

/// What an asynchronous waiter waits for (see [`Ring::arm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    /// A queue's next message, or the next message of this attachment's subscription.
    Data,
    /// Room to send. The ring cannot judge the room a caller needs, so [`Ring::arm`] makes no
    /// check for it: the caller's next send attempt is the re-check of SYNC W.
    Space,
}

impl Interest {
    /// The event this interest waits on.
    fn side(self) -> Side {
        match self {
            Interest::Data => Side::Data,
            Interest::Space => Side::Space,
        }
    }
}

/// An asynchronous wait announced by [`Ring::arm`]: whoever waits for the caller (a helper
/// thread on a futex, an event loop) sleeps while [`Ring::event_word`] still holds `seq`,
/// and at most until `poll` from now; then the caller hands it back to [`Ring::disarm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Armed {
    /// The value of the event word when the wait was announced.
    pub seq: u32,
    /// The longest sleep: [`MAX_SLEEP`], or [`STUCK_POLL`] while the record waited for is
    /// in flight (its owner may be dead: `disarm` then checks).
    pub poll: Duration,
    stuck: bool,
}

impl<B: Backing> Ring<B> {
    /// The first half of one round of SYNC W for a waiter that sleeps elsewhere (an async
    /// runtime): announces the waiter and re-checks the condition, exactly as
    /// [`Ring::wait_once`] does before its futex wait. `None` when the condition holds now
    /// (nothing to hand back: try again); otherwise the caller must sleep on
    /// [`Ring::event_word`] while it holds `Armed::seq` (for [`Interest::Space`]: after one
    /// more send attempt failed), and then call [`Ring::disarm`] exactly once.
    pub fn arm(&self, interest: Interest) -> Option<Armed> {
        // SYNC W, the waiter's half: the same steps as `wait_once` (docs/protocol.md, "SYNC
        // W in detail"); only the sleep happens elsewhere.
        let seq = self.announce(interest.side());
        let (ready, stuck) = match interest {
            Interest::Data if self.g.is_broadcast() => {
                (self.async_data_ready(), self.read_in_flight())
            }
            Interest::Data => (self.async_data_ready(), self.head_in_flight()),
            Interest::Space => (false, self.space_stuck()),
        };
        let armed = Armed {
            seq,
            poll: if stuck { STUCK_POLL } else { MAX_SLEEP },
            stuck,
        };
        if ready {
            self.disarm(interest, armed);
            return None;
        }
        Some(armed)
    }

    /// The second half of an asynchronous round (after the sleep, however it ended): leaves
    /// the waiters of the event, and checks for a dead owner if the wait was on a record in
    /// flight (as a sleeper in `wait_once` does).
    pub fn disarm(&self, interest: Interest, armed: Armed) {
        self.leave(interest.side());
        if !cfg!(loom) && armed.stuck {
            self.check_stuck();
        }
    }

    /// The spin phase of a sleeping waiter, for an asynchronous one: checks the condition of
    /// `interest` for about [`SPIN`] (less when crowded, none on one CPU, as `wait_once`
    /// does) and says whether it held. Only [`Interest::Data`] has a condition to check:
    /// for room it returns `false` at once.
    pub fn spin_until_ready(&self, interest: Interest) -> bool {
        if cfg!(loom) || interest == Interest::Space {
            return false;
        }
        matches!(
            self.spin(None, None, &|| self.async_data_ready(), None),
            Some(Wake::Ready)
        )
    }

    /// The condition a receiving waiter re-checks, as `wait_for_data` / `wait_for_read`
    /// judge it: a message may be ready, or a receive would stop on a shutdown.
    fn async_data_ready(&self) -> bool {
        if self.g.is_broadcast() {
            self.read_ready() || self.receive_stops(self.own_cursor())
        } else {
            self.data_ready() || self.receive_stops(self.control().head.load(Ordering::Relaxed))
        }
    }

    /// The futex word of `interest`'s event (in the segment): an armed waiter sleeps on it.
    pub fn event_word(&self, interest: Interest) -> &AtomicU32 {
        &self.event(interest.side()).seq
    }
}
