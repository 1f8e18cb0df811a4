//! The one attachment under every public handle type: the ring, its name, and what all of
//! them do the same way (sending with large messages and batch chunking, receiving, waiting,
//! closing, unlinking, fork support).

use crate::builder::attach_error;
use crate::large::{Received, Staged};
use crate::name::{removed_name, segment_name};
use crate::os::ShmSegment;
use crate::{OpenError, RecvError, SendError, SendManyError};
use shmq_core::layout::{record_size, SideDescriptor, FLAG_PERSISTENT};
use shmq_core::{Deadline, Delivery, Detached, Linger, Message, Ring, Stats, Waiter};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a call may wait for room or for a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Not at all: `Full` / `Empty` at once.
    No,
    /// Until this instant, then `Timeout`.
    Until(Instant),
    /// At most this long, from when the call first has to wait, then `Timeout`: the clock is
    /// read there, once, so a call that finds room or a message at once reads none (what
    /// [`Wait::timeout`] gives).
    Within(Duration),
    /// As long as it takes.
    Forever,
}

impl Wait {
    /// At most `timeout` (see [`Wait::Within`]; a timeout of centuries waits forever).
    pub fn timeout(timeout: Duration) -> Self {
        Self::Within(timeout)
    }

    /// `Within` made an instant from now (other waits unchanged), for code that makes several
    /// calls under one timeout: each call would otherwise count it from its own first wait.
    pub fn fixed(self) -> Self {
        match self {
            // An overflowing instant (a timeout of centuries) waits forever.
            Self::Within(t) => Instant::now()
                .checked_add(t)
                .map_or(Self::Forever, Self::Until),
            other => other,
        }
    }

    /// The deadline the core's blocking loop takes: "no wait" is a deadline already past when
    /// the call first has to wait, so that one loop serves every case (and lanes taken by our
    /// own threads are waited for, not reported as full or empty).
    pub(crate) fn deadline(self) -> Deadline {
        match self {
            Self::No => Deadline::After(Duration::ZERO),
            Self::Until(d) => Deadline::At(d),
            Self::Within(t) => Deadline::After(t),
            Self::Forever => Deadline::Never,
        }
    }
}

/// What a truncated segment (another process shrank it under us) is reported as.
pub(crate) const TRUNCATED: &str =
    "the segment was truncated by another process (its pages read as zeros \
     now): what was sent to it since may be lost; recreate the queue";

/// The caller's waiter, and the check that stops a wait on a segment truncated under us
/// (a consumer asleep on it would otherwise sleep for ever).
struct Guarded<'a> {
    inner: &'a mut dyn Waiter,
    seg: &'a ShmSegment,
}

impl Waiter for Guarded<'_> {
    fn park(&mut self, sleep: &mut (dyn FnMut() -> bool + Send)) -> bool {
        self.inner.park(sleep)
    }
    fn interrupted(&mut self) -> bool {
        self.seg.truncated() || self.inner.interrupted()
    }
}

/// Where a receive puts what its callback makes: a `Vec` for batches, an `Option` for one
/// message (no allocation).
pub(crate) trait Sink<T> {
    fn len(&self) -> usize;
    fn push(&mut self, v: T);
    fn truncate(&mut self, len: usize);
}

impl<T> Sink<T> for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn push(&mut self, v: T) {
        Vec::push(self, v);
    }
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
}

impl<T> Sink<T> for Option<T> {
    fn len(&self) -> usize {
        usize::from(self.is_some())
    }
    fn push(&mut self, v: T) {
        *self = Some(v);
    }
    fn truncate(&mut self, len: usize) {
        if len == 0 {
            *self = None;
        }
    }
}

/// One process's attachment to a ring (private: the public types wrap it).
pub struct Handle {
    ring: Option<Ring<ShmSegment>>,
    name: String,
    allow_large: bool,
    keep_messages: bool,
    /// Ring bytes of the last message this handle sent or tried to send (0: none yet): what
    /// `is_full` asks about, so that it agrees with the send that was just refused.
    last_record: AtomicU64,
    /// Its open loans and holds (see `crate::loan`), fresh in a reopened child's handle.
    open_loans: crate::loan::OpenLoans,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Handle {
    pub(crate) fn new(
        ring: Ring<ShmSegment>,
        name: String,
        allow_large: bool,
        keep_messages: bool,
    ) -> Self {
        Self {
            ring: Some(ring),
            name,
            allow_large,
            keep_messages,
            last_record: AtomicU64::new(0),
            open_loans: Default::default(),
        }
    }

    #[inline]
    pub(crate) fn ring(&self) -> &Ring<ShmSegment> {
        self.ring.as_ref().expect("attached until dropped")
    }
    pub(crate) fn open_loans(&self) -> &crate::loan::OpenLoans {
        &self.open_loans
    }
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
    pub(crate) fn allows_large(&self) -> bool {
        self.allow_large
    }
    pub(crate) fn capacity(&self) -> u64 {
        self.ring().geometry().capacity
    }
    pub(crate) fn max_message_size(&self) -> u64 {
        self.ring().max_payload()
    }
    pub(crate) fn is_persistent(&self) -> bool {
        self.ring().geometry().flags & FLAG_PERSISTENT != 0
    }
    /// Tells this ring apart from others made under the same name (its random nonce).
    pub(crate) fn instance_id(&self) -> u64 {
        self.ring().geometry().nonce
    }
    pub(crate) fn stats(&self) -> Stats {
        self.ring().stats()
    }
    /// Whether a message as large as the last one this handle sent (or tried to send) would
    /// not fit now, or `maxsize` messages are queued (a snapshot). A handle that sent nothing
    /// asks about the smallest message.
    pub(crate) fn is_full(&self) -> bool {
        // Relaxed: a hint of this handle's own last size.
        let record = self.last_record.load(Ordering::Relaxed);
        self.ring().is_full_for(record)
    }
    /// Ring bytes a message takes: its record, or a side-segment descriptor's when it is
    /// larger than the ring.
    fn stored_size(&self, m: &Message<'_>) -> u64 {
        let len = m.payload.len() as u64;
        record_size(if len > self.max_message_size() {
            SideDescriptor::SIZE as u64
        } else {
            len
        })
    }
    /// Shuts the ring down for every process (see [`crate::Queue::shutdown`]).
    pub(crate) fn shutdown(&self, immediate: bool) {
        self.ring().shutdown(immediate);
    }
    pub(crate) fn is_shutdown(&self) -> bool {
        self.ring().is_shutdown()
    }

    // ----------------------------------------------------------------------------------
    // Sending
    // ----------------------------------------------------------------------------------

    /// Sends `msgs` in order: all at once (all or nothing) if they fit in the ring together,
    /// otherwise in consecutive chunks that do (within the ring's bytes and `maxsize`).
    /// Every message is checked before anything is sent.
    pub(crate) fn send_many(
        &self,
        msgs: &[Message<'_>],
        wait: Wait,
        w: &mut dyn Waiter,
    ) -> Result<(), SendManyError> {
        let max = self.max_message_size();
        if let Some(last) = msgs.last() {
            // Relaxed: see `is_full`.
            self.last_record
                .store(self.stored_size(last), Ordering::Relaxed);
        }
        if let [one] = msgs {
            // The usual case: one message, sent at once if there is room (no deadline, no
            // waiter, no side segment to plan); a call that cannot wait is then told `Full`
            // (the blocking path would only try once more); otherwise, or on any other
            // error, the blocking path tries again and reports what it finds.
            if one.payload.len() as u64 <= max {
                match self.ring().try_send(*one) {
                    Ok(()) => {
                        return self
                            .unless_truncated(())
                            .map_err(|error| SendManyError { sent: 0, error })
                    }
                    Err(shmq_core::TrySendError::Full) if wait == Wait::No => {
                        let error = self.unless_truncated(()).err().unwrap_or(SendError::Full);
                        return Err(SendManyError { sent: 0, error });
                    }
                    Err(_) => {}
                }
            }
            return self
                .send_chunk(std::slice::from_ref(one), wait, w)
                .map_err(|error| SendManyError { sent: 0, error });
        }
        if !self.allow_large {
            if let Some(m) = msgs.iter().find(|m| m.payload.len() as u64 > max) {
                let size = m.payload.len() as u64;
                return Err(SendManyError {
                    sent: 0,
                    error: SendError::TooLarge { size, max },
                });
            }
        }
        // Bytes a message takes in the ring: a descriptor for a large one.
        let stored = |m: &Message<'_>| self.stored_size(m);
        let budget = self.capacity().min(u64::from(u32::MAX));
        let most = self.ring().geometry().maxsize;
        let mut start = 0;
        // Resolved to an instant once a second chunk is due: the timeout bounds the call.
        let mut wait = wait;
        while start < msgs.len() {
            let mut end = start;
            let mut bytes = 0u64;
            while end < msgs.len() && (most == 0 || ((end - start) as u64) < most) {
                let size = stored(&msgs[end]);
                if end > start && bytes + size > budget {
                    break;
                }
                bytes += size;
                end += 1;
            }
            if start == 0 && end < msgs.len() {
                wait = wait.fixed();
            }
            self.send_chunk(&msgs[start..end], wait, w)
                .map_err(|error| SendManyError { sent: start, error })?;
            start = end;
        }
        Ok(())
    }

    /// Sends `msgs`, which fit in the ring together, all or nothing.
    fn send_chunk(
        &self,
        msgs: &[Message<'_>],
        wait: Wait,
        w: &mut dyn Waiter,
    ) -> Result<(), SendError> {
        let max = self.max_message_size();
        let staged = if self.allow_large && msgs.iter().any(|m| m.payload.len() as u64 > max) {
            // Written once, before any waiting; removed again if the send fails.
            Staged::new(self.ring().backing(), msgs, max)?
        } else {
            Staged::default()
        };
        let batch = staged.messages(msgs);
        let seg = self.ring().backing();
        let mut w = Guarded { inner: w, seg };
        let r = self
            .ring()
            .send_many_blocking(&batch, wait.deadline(), &mut w);
        self.unless_truncated(())?;
        match r {
            Ok(()) => {
                drop(batch);
                staged.keep();
                Ok(())
            }
            Err(shmq_core::SendTimeoutError::Timeout) if wait == Wait::No => Err(SendError::Full),
            Err(e) => Err(e.into()),
        }
    }

    /// `ok`, unless the segment was truncated under us (see [`TRUNCATED`]).
    #[inline]
    fn unless_truncated<T>(&self, ok: T) -> Result<T, SendError> {
        if self.ring().backing().truncated() {
            return Err(SendError::Corrupted(TRUNCATED));
        }
        Ok(ok)
    }

    // ----------------------------------------------------------------------------------
    // Receiving
    // ----------------------------------------------------------------------------------

    /// Takes up to `max` queued messages (stopping before one that would take the batch's
    /// payload past `max_bytes`; the first is always taken), waiting for the first as `wait`
    /// says, and appends `f` of each to `out`. `f` runs while the message is claimed: it
    /// must copy what it needs and return, and never run foreign code or block. On a
    /// corrupted record, the messages before it are in `out` and the error is returned.
    pub(crate) fn recv_many<T>(
        &self,
        max: usize,
        max_bytes: u64,
        wait: Wait,
        w: &mut dyn Waiter,
        out: &mut impl Sink<T>,
        f: impl FnMut(Received<'_>) -> T,
    ) -> Result<usize, RecvError> {
        self.receive(w, out, f, true, |ring, w, deliver| {
            // A message ready now is taken without a deadline or a waiter. A call that cannot
            // wait looks in full and is told `Empty` at once (the blocking path would only look
            // again); one that may wait looks without `tail` (see
            // `try_recv_many_before_wait`). On anything else the blocking loop tries again and
            // reports what it finds.
            let mut first = |m: shmq_core::RecordView<'_>| deliver(Delivery::Message(m));
            let looked = if wait == Wait::No {
                ring.try_recv_many_limited(max, max_bytes, &mut first)
            } else {
                ring.try_recv_many_before_wait(max, max_bytes, &mut first)
            };
            match looked {
                Ok(n) if n > 0 => return Ok(n),
                Err(shmq_core::TryRecvError::Empty) if wait == Wait::No => {
                    return Err(RecvError::Empty)
                }
                _ => {}
            }
            ring.recv_many_blocking(max, max_bytes, wait.deadline(), w, first)
                .map_err(|e| match e {
                    shmq_core::RecvTimeoutError::Timeout if wait == Wait::No => RecvError::Empty,
                    e => e.into(),
                })
        })
    }

    /// As [`Handle::recv_many`], for a subscription: reads from this attachment's cursor.
    pub(crate) fn read_many<T>(
        &self,
        max: usize,
        max_bytes: u64,
        wait: Wait,
        w: &mut dyn Waiter,
        out: &mut impl Sink<T>,
        f: impl FnMut(Received<'_>) -> T,
    ) -> Result<usize, RecvError> {
        self.receive(w, out, f, false, |ring, w, deliver| {
            ring.read_many_blocking(max, max_bytes, wait.deadline(), w, deliver)
                .map_err(|e| match e {
                    shmq_core::ReadTimeoutError::Timeout if wait == Wait::No => RecvError::Empty,
                    e => e.into(),
                })
        })
    }

    /// What both receive directions share: large messages mapped while claimed (`take`:
    /// the caller owns them, as a queue's consumer does), deliveries a lagging read withdraws
    /// dropped, corrupted records and a truncated segment reported. `run` calls the core.
    fn receive<T>(
        &self,
        w: &mut dyn Waiter,
        out: &mut impl Sink<T>,
        mut f: impl FnMut(Received<'_>) -> T,
        take: bool,
        run: impl FnOnce(
            &Ring<ShmSegment>,
            &mut dyn Waiter,
            &mut dyn FnMut(Delivery<'_>),
        ) -> Result<usize, RecvError>,
    ) -> Result<usize, RecvError> {
        let seg = self.ring().backing();
        let mut bad = None;
        let before = out.len();
        let mut w = Guarded { inner: w, seg };
        let r = run(self.ring(), &mut w, &mut |d| match d {
            Delivery::Message(m) => match Received::of(seg, m, take) {
                Ok(m) => out.push(f(m)),
                Err(what) => bad = Some(what),
            },
            // Overwritten while we read (lag policy): what this call took is void.
            Delivery::Discard => {
                out.truncate(before);
                bad = None;
            }
        });
        if seg.truncated() {
            out.truncate(before);
            return Err(RecvError::Corrupted(TRUNCATED));
        }
        r?;
        match bad {
            Some(what) => Err(RecvError::Corrupted(what)),
            None => Ok(out.len() - before),
        }
    }

    // ----------------------------------------------------------------------------------
    // Lifecycle
    // ----------------------------------------------------------------------------------

    /// Wakes every thread blocked on this ring, in every process; they re-check and sleep
    /// again if nothing changed (a handle closed by another thread is noticed this way).
    pub(crate) fn wake_all(&self) {
        self.ring().wake_all_waiters();
    }

    /// Removes the ring's name now: attached processes keep using it, nobody new can open
    /// it, and its last process frees it (and its side segments), persistent or not. Until
    /// then it is kept under a hidden name (`.shmq-removed-...`) where `gc` finds it if its
    /// processes die. Removing twice, or after the name was given to another ring, is a
    /// no-op.
    pub(crate) fn unlink(&self) -> io::Result<()> {
        let seg = segment_name(&self.name);
        let ring = self.ring();
        if !ring.backing().is_linked_as(&seg) {
            return Ok(());
        }
        let hidden = removed_name(&self.name, ring.geometry().nonce);
        match ShmSegment::rename(&seg, &hidden) {
            Ok(()) => Ok(()),
            // Removed meanwhile by someone else.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Marks handles of this ring in flight for `grace` (a pickled handle, a forked child
    /// that has not attached yet): a last detach meanwhile keeps the ring for them.
    pub(crate) fn keep_alive(&self, grace: Duration) {
        let until = now_ns().saturating_add(grace.as_nanos() as u64);
        self.ring().keep_alive_until(until);
    }

    /// The handle sent with [`Handle::keep_alive`] arrived here.
    pub(crate) fn arrived(&self) {
        self.ring().arrived();
    }

    /// After `fork()`, in the child: an attachment of the child's own (its own process slot
    /// and leases), so that the parent's death or exit is seen correctly and the child's is
    /// too. Drop the inherited handle with [`Handle::forget_in_child`].
    pub(crate) fn reopen_in_child(&self) -> Result<Self, OpenError> {
        let fresh = self
            .ring()
            .backing()
            .reopen_after_fork()
            .map_err(OpenError::Io)?;
        let ring = Ring::open(fresh).map_err(|(_, e)| attach_error(&self.name, e))?;
        Ok(Self::new(
            ring,
            self.name.clone(),
            self.allow_large,
            self.keep_messages,
        ))
    }

    /// After `fork()`, in the child: drops the inherited attachment without detaching: it
    /// shares the parent's open file description, so the parent's slot and leases stay the
    /// parent's.
    pub(crate) fn forget_in_child(mut self) {
        if let Some(ring) = self.ring.take() {
            drop(ring.into_backing_without_detach());
        }
    }

    fn detach(&mut self) {
        let Some(ring) = self.ring.take() else { return };
        let seg = segment_name(&self.name);
        let named = ring.backing().is_linked_as(&seg);
        let hidden = removed_name(&self.name, ring.geometry().nonce);
        let linger = Linger {
            while_messages: self.keep_messages,
            now_ns: now_ns(),
            // Not under its name any more: removed (or replaced) by name.
            removed: !named,
        };
        let (b, outcome) = ring.detach_with(linger);
        if outcome == Detached::Last {
            if named {
                let _ = ShmSegment::unlink(&seg);
            } else if b.is_linked_as(&hidden) {
                let _ = ShmSegment::unlink(&hidden);
            }
        }
    }
}

/// Nanoseconds since the Unix epoch (the clock every process of the machine shares).
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.detach();
    }
}
