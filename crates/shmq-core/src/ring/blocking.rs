//! Blocking calls: one loop for every direction (send, receive, read, hold). An attempt that
//! finds the ring full or empty sleeps on the event of its side; one that finds this
//! attachment's lanes taken by its other threads yields; between sleeps the caller's
//! [`Waiter`] decides whether to go on. A binding uses the waiter to release its interpreter
//! lock around sleeps and to check for signals; Rust callers use [`Plain`].

use super::recv::Look;
use super::{
    Delivery, Held, Message, ReadTimeoutError, RecordView, RecvTimeoutError, Ring,
    SendTimeoutError, TryReadError, TryRecvError, TrySendError,
};
use crate::backing::Backing;
use crate::sync::yield_now;
use std::time::{Duration, Instant};

/// A blocking call returns to its [`Waiter`] at least this often, even if its deadline is
/// later: the waiter's chance to see a signal or a handle closed by another thread.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// What a blocking call does around its sleeps.
pub trait Waiter {
    /// Runs `sleep` (a futex wait, or a yield while this attachment's lanes are taken) and
    /// returns its result. A binding releases its interpreter lock around it; no attempt on
    /// the ring runs inside.
    fn park(&mut self, sleep: &mut (dyn FnMut() -> bool + Send)) -> bool {
        sleep()
    }
    /// Called after each sleep: `true` stops the call with an `Interrupted` error.
    fn interrupted(&mut self) -> bool {
        false
    }
}

/// A [`Waiter`] without hooks: sleeps in place, never interrupted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Waiter for Plain {}

/// When a blocking call gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// At this instant (an instant already past: one attempt, no wait).
    At(Instant),
    /// This long after the call first has to wait. The clock is read there, once, and that
    /// reading also starts the wait's spin: a call that never waits reads no clock (a clock
    /// read is about 40 ns on a VM, a sizeable part of a put). The attempt before it is
    /// bounded (it failed without copying), so the deadline is later by that much at most.
    After(Duration),
    /// Never: wait as long as it takes.
    Never,
}

impl Deadline {
    /// The instant this deadline is at, given the clock read at the call's first wait
    /// (`None`: never; an overflowing one is never too).
    fn at(self, now: Instant) -> Option<Instant> {
        match self {
            Self::At(d) => Some(d),
            Self::After(t) => now.checked_add(t),
            Self::Never => None,
        }
    }
}

impl From<Option<Instant>> for Deadline {
    fn from(d: Option<Instant>) -> Self {
        d.map_or(Self::Never, Self::At)
    }
}

impl From<Instant> for Deadline {
    fn from(d: Instant) -> Self {
        Self::At(d)
    }
}

/// How a failed attempt goes on.
pub(super) enum Next<E> {
    /// Full or empty: sleep on the event until the deadline.
    Sleep,
    /// Lanes (or the read turn) taken by our other threads: yield, then try again.
    Yield,
    /// The long-lived lanes taken by loans or holds of our other threads, which end when
    /// their owners' code says so: wait a little (not a spin), until the deadline.
    Held,
    /// Give up with this error.
    Fail(E),
}

/// Why a blocking loop ended without a result.
pub(super) enum Stop<E> {
    Timeout,
    Interrupted,
    Fail(E),
}

/// The loop behind every blocking call: `attempt` until it succeeds; `sleep(until, now)`
/// (inside the waiter's `park`) when it says so, never past `deadline` nor longer than
/// [`CHECK_EVERY`], where `now` is the clock read just before (the sleep's spin starts from
/// it rather than read the clock again). The attempt right after the deadline is the last.
pub(super) fn block<T, E>(
    deadline: Deadline,
    w: &mut dyn Waiter,
    mut attempt: impl FnMut() -> Result<T, Next<E>>,
    sleep: impl Fn(Option<Instant>, Instant) -> bool + Sync,
) -> Result<T, Stop<E>> {
    // Resolved at the first wait (see `Deadline::After`), then fixed for the call.
    let mut resolved: Option<Option<Instant>> = None;
    let mut due = |now: Instant| *resolved.get_or_insert_with(|| deadline.at(now));
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(Next::Fail(e)) => return Err(Stop::Fail(e)),
            Err(Next::Yield) => {
                // Our own threads hold the lanes for one bounded attempt each: a yield is
                // enough, and the deadline does not apply (the ring itself is not full).
                w.park(&mut || {
                    yield_now();
                    true
                });
            }
            Err(Next::Held) => {
                let now = Instant::now();
                if due(now).is_some_and(|d| now >= d) {
                    return Err(Stop::Timeout);
                }
                w.park(&mut || {
                    pause(HELD_PAUSE);
                    true
                });
            }
            Err(Next::Sleep) => {
                let now = Instant::now();
                let deadline = due(now);
                if deadline.is_some_and(|d| now >= d) {
                    return Err(Stop::Timeout);
                }
                let slice = now + CHECK_EVERY;
                let until = deadline.map_or(slice, |d| d.min(slice));
                w.park(&mut || sleep(Some(until), now));
            }
        }
        if w.interrupted() {
            return Err(Stop::Interrupted);
        }
    }
}

/// How long a call waits between attempts while loans or holds of the attachment's other
/// threads keep every long-lived lane (no event marks their end; it is rare, and such a wait
/// is long anyway).
const HELD_PAUSE: Duration = Duration::from_micros(200);

/// Sleeps for `d` (under loom: a yield, so the model goes on).
fn pause(d: Duration) {
    #[cfg(loom)]
    {
        let _ = d;
        yield_now();
    }
    #[cfg(not(loom))]
    std::thread::sleep(d);
}

impl<B: Backing + Sync> Ring<B> {
    /// Sends all of `msgs` or none, waiting for space until `deadline` (forever if `None`).
    pub fn send_many_blocking(
        &self,
        msgs: &[Message<'_>],
        deadline: impl Into<Deadline>,
        w: &mut dyn Waiter,
    ) -> Result<(), SendTimeoutError> {
        let total = self
            .batch_size(msgs)
            .map_err(SendTimeoutError::from_attempt)?;
        let n = msgs.len() as u64;
        let attempt = || match self.try_send_many(msgs) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full) => Err(Next::Sleep),
            Err(TrySendError::Busy) => Err(Next::Yield),
            Err(e) => Err(Next::Fail(SendTimeoutError::from_attempt(e))),
        };
        block(deadline.into(), w, attempt, |until, now| {
            self.wait_for_space(n, total, until, now)
        })
        .map_err(|s| match s {
            Stop::Timeout => SendTimeoutError::Timeout,
            Stop::Interrupted => SendTimeoutError::Interrupted,
            Stop::Fail(e) => e,
        })
    }

    /// Receives up to `max` consecutive messages (stopping before one that would take the
    /// batch's payload past `max_bytes`; the first is always taken), waiting for the first
    /// until `deadline`. `f` gets each message while it is claimed (see
    /// [`Ring::try_recv_many_limited`]: it must not block or run foreign code).
    pub fn recv_many_blocking(
        &self,
        max: usize,
        max_bytes: u64,
        deadline: impl Into<Deadline>,
        w: &mut dyn Waiter,
        mut f: impl FnMut(RecordView<'_>),
    ) -> Result<usize, RecvTimeoutError> {
        let deadline = deadline.into();
        let mut look = Look::first(deadline); // see `Look::Quick`
        let attempt = || match self.recv_run(
            max,
            max_bytes,
            &mut f,
            std::mem::replace(&mut look, Look::Full),
        ) {
            Ok(n) => Ok(n),
            Err(TryRecvError::Empty) => Err(Next::Sleep),
            Err(TryRecvError::Busy) => Err(Next::Yield),
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

    /// Reads up to `max` messages of this subscription (as
    /// [`Ring::try_read_many_limited`]), waiting for the first until `deadline`.
    pub fn read_many_blocking(
        &self,
        max: usize,
        max_bytes: u64,
        deadline: impl Into<Deadline>,
        w: &mut dyn Waiter,
        mut f: impl FnMut(Delivery<'_>),
    ) -> Result<usize, ReadTimeoutError> {
        let attempt = || {
            self.try_read_many_limited(max, max_bytes, &mut f)
                .map_err(read_next)
        };
        block(deadline.into(), w, attempt, |until, now| {
            self.wait_for_read(until, now)
        })
        .map_err(read_stop)
    }

    /// Holds the next message of this subscription (as [`Ring::try_hold`]), waiting for one
    /// until `deadline`.
    pub fn hold_blocking(
        &self,
        deadline: impl Into<Deadline>,
        w: &mut dyn Waiter,
    ) -> Result<Held, ReadTimeoutError> {
        block(
            deadline.into(),
            w,
            || self.try_hold().map_err(read_next),
            |until, now| self.wait_for_read(until, now),
        )
        .map_err(read_stop)
    }

    /// [`Ring::try_hold_more`], waiting for a message until `deadline`; `Ok(None)` at once
    /// when [`super::HOLD_WINDOW`] records are held.
    pub fn hold_more_blocking(
        &self,
        deadline: impl Into<Deadline>,
        w: &mut dyn Waiter,
    ) -> Result<Option<Held>, ReadTimeoutError> {
        block(
            deadline.into(),
            w,
            || self.try_hold_more().map_err(read_next),
            |until, now| self.wait_for_read(until, now),
        )
        .map_err(read_stop)
    }
}

fn read_next(e: TryReadError) -> Next<ReadTimeoutError> {
    match e {
        TryReadError::Empty => Next::Sleep,
        TryReadError::Busy => Next::Yield,
        TryReadError::Lagged { missed } => Next::Fail(ReadTimeoutError::Lagged { missed }),
        TryReadError::NotSubscribed => Next::Fail(ReadTimeoutError::NotSubscribed),
        TryReadError::Corrupted(w) => Next::Fail(ReadTimeoutError::Corrupted(w)),
        TryReadError::Unsupported(w) => Next::Fail(ReadTimeoutError::Unsupported(w)),
        TryReadError::ShutDown => Next::Fail(ReadTimeoutError::ShutDown),
    }
}

fn read_stop(s: Stop<ReadTimeoutError>) -> ReadTimeoutError {
    match s {
        Stop::Timeout => ReadTimeoutError::Timeout,
        Stop::Interrupted => ReadTimeoutError::Interrupted,
        Stop::Fail(e) => e,
    }
}
