//! Broadcast: one ring that many publishers write and every subscriber reads in full.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let name = format!("doc-bcast-{}", std::process::id());
//! let publisher = shmq::Broadcast::builder(&name).capacity(1 << 16).create()?;
//! let a = publisher.subscribe()?;
//! let b = shmq::Subscriber::open(&name)?;
//! publisher.send(b"to everyone")?;
//! assert_eq!(a.recv()?, b"to everyone");
//! assert_eq!(b.recv()?, b"to everyone");
//! # Ok(()) }
//! ```
//!
//! Subscribers receive every message published after they subscribed, in publication order.
//! With the default policy publishers wait for the slowest live subscriber (a dead one is
//! detached within milliseconds); with [`BroadcastBuilder::lag`] publishers never wait and a
//! subscriber that fell behind gets [`ReadError::Lagged`] with the number of messages it
//! missed, then continues with the oldest message still in the ring.

use crate::{OpenError, Queue, QueueBuilder, SendError, SendTimeoutError, Stats, TrySendError};
use shmq_core::ring::{Delivery, Held, ReadTimeoutError, SubscriberInfo, TryReadError};
use shmq_core::Message;
use std::borrow::Cow;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

/// Why a blocking read failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The subscriber fell behind a lag-policy broadcast: `missed` messages were overwritten
    /// before it read them. The next read returns the oldest message still available.
    Lagged {
        /// Messages skipped.
        missed: u64,
    },
    /// The shared state is inconsistent.
    Corrupted(&'static str),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lagged { missed } => write!(f, "subscriber lagged: {missed} messages missed"),
            Self::Corrupted(w) => write!(f, "corrupted broadcast: {w}"),
        }
    }
}
impl std::error::Error for ReadError {}

/// Settings for creating or opening a [`Broadcast`].
#[derive(Clone, Debug)]
pub struct BroadcastBuilder {
    inner: QueueBuilder,
}

impl BroadcastBuilder {
    /// Ring size in bytes (rounded up to a multiple of 4096). Ignored when opening.
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.inner = self.inner.capacity(bytes);
        self
    }
    /// How many processes (publishers and subscribers) may be attached at once.
    pub fn max_processes(mut self, n: u32) -> Self {
        self.inner = self.inner.max_processes(n);
        self
    }
    /// Permission bits of the segment (default `0o600`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.inner = self.inner.mode(mode);
        self
    }
    /// Keep the segment when the last process detaches (default `false`).
    pub fn persistent(mut self, yes: bool) -> Self {
        self.inner = self.inner.persistent(yes);
        self
    }
    /// The slow-subscriber policy, fixed at creation: `false` (default) makes publishers
    /// wait for the slowest live subscriber; `true` makes them overwrite what lagging
    /// subscribers have not read (those get [`ReadError::Lagged`]).
    pub fn lag(mut self, yes: bool) -> Self {
        self.inner.lag = yes;
        self
    }
    /// Let this handle publish messages larger than the ring, through side segments (see
    /// [`QueueBuilder::allow_large`]); they are removed once every subscriber passed them.
    pub fn allow_large(mut self, yes: bool) -> Self {
        self.inner = self.inner.allow_large(yes);
        self
    }
    /// Creates the broadcast; fails if the name exists.
    pub fn create(self) -> Result<Broadcast, OpenError> {
        self.inner.create().map(|inner| Broadcast { inner })
    }
    /// Opens the existing broadcast.
    pub fn open(self) -> Result<Broadcast, OpenError> {
        self.inner.open().map(|inner| Broadcast { inner })
    }
    /// Opens the broadcast if it exists, creates it otherwise.
    pub fn open_or_create(self) -> Result<Broadcast, OpenError> {
        self.inner.open_or_create().map(|inner| Broadcast { inner })
    }
}

/// A named broadcast ring, attached to by this process as a publisher.
///
/// `Broadcast` is `Send + Sync`; any number of processes and threads may publish at once.
#[derive(Debug)]
pub struct Broadcast {
    inner: Queue,
}

impl Broadcast {
    /// Settings for the broadcast `name`.
    pub fn builder(name: &str) -> BroadcastBuilder {
        let mut inner = Queue::builder(name);
        inner.kind = shmq_core::layout::KIND_BROADCAST;
        BroadcastBuilder { inner }
    }
    /// Creates broadcast `name` with a ring of `capacity` bytes (block policy).
    pub fn create(name: &str, capacity: u64) -> Result<Self, OpenError> {
        Self::builder(name).capacity(capacity).create()
    }
    /// Opens the existing broadcast `name`.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        Self::builder(name).open()
    }
    /// The broadcast's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }
    /// Ring size in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity()
    }
    /// Largest message.
    pub fn max_message_size(&self) -> u64 {
        self.inner.max_message_size()
    }
    /// Whether publishers overwrite what lagging subscribers have not read.
    pub fn is_lag(&self) -> bool {
        self.inner.ring().lag_policy()
    }
    /// Whether the segment outlives its last process.
    pub fn is_persistent(&self) -> bool {
        self.inner.is_persistent()
    }
    /// A new subscriber of this broadcast (a new attachment of this process).
    pub fn subscribe(&self) -> Result<Subscriber, OpenError> {
        Subscriber::open(self.name())
    }

    /// Publishes `msg` (raw codec), waiting for room as long as needed (block policy).
    pub fn send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.inner.send(msg)
    }
    /// Publishes `msg` if there is room now.
    pub fn try_send(&self, msg: &[u8]) -> Result<(), TrySendError> {
        self.inner.try_send(msg)
    }
    /// Publishes `msg`, waiting for room at most `timeout`.
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendTimeoutError> {
        self.inner.send_timeout(msg, timeout)
    }
    /// Publishes a message with an explicit codec id, waiting until `deadline`.
    pub fn send_message(
        &self,
        msg: Message<'_>,
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        self.inner.send_message(msg, deadline)
    }
    /// See [`Queue::stage_large`].
    pub fn stage_large(&self, msgs: &[Message<'_>]) -> Result<crate::Staged, TrySendError> {
        self.inner.stage_large(msgs)
    }
    /// Whether this handle publishes messages larger than the ring through side segments.
    pub fn allows_large(&self) -> bool {
        self.inner.allows_large()
    }
    /// Publishes every message of `msgs`, contiguously and in order, or none.
    pub fn try_send_many(&self, msgs: &[Message<'_>]) -> Result<(), TrySendError> {
        self.inner.try_send_many(msgs)
    }
    /// As [`Queue::send_many_deadline`].
    pub fn send_many_deadline(
        &self,
        msgs: &[Message<'_>],
        deadline: Option<Instant>,
        slice: Option<Duration>,
    ) -> Result<(), SendTimeoutError> {
        self.inner.send_many_deadline(msgs, deadline, slice)
    }
    /// The subscribers, with their positions and how far behind they are.
    pub fn subscribers(&self) -> Vec<SubscriberInfo> {
        self.inner.ring().subscribers()
    }
    /// Counters (`gets` sums the reads of every subscriber; `depth` is the number of
    /// messages still in the ring).
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
    /// Wakes every blocked thread of this broadcast, in every process.
    pub fn wake_all_waiters(&self) {
        self.inner.wake_all_waiters();
    }
    /// Removes the name now (attached processes keep using the ring).
    pub fn unlink(&self) -> io::Result<()> {
        self.inner.unlink()
    }
    /// After `fork()`, in the child: a handle of the child's own.
    pub fn reopen_in_child(&self) -> Result<Broadcast, OpenError> {
        self.inner
            .reopen_in_child()
            .map(|inner| Broadcast { inner })
    }
    /// After `fork()`, in the child: drops the inherited handle without detaching.
    pub fn forget_in_child(self) {
        self.inner.forget_in_child();
    }
    /// Waits until a batch like `msgs` may fit (see [`Queue::wait_for_space`]).
    pub fn wait_for_space(
        &self,
        msgs: &[Message<'_>],
        deadline: Option<Instant>,
        slice: Option<Duration>,
    ) -> Result<bool, TrySendError> {
        self.inner.wait_for_space(msgs, deadline, slice)
    }
    /// Detaches now; the last process of a non-persistent broadcast removes it.
    pub fn close(self) {
        self.inner.close();
    }
}

/// A subscription to a named broadcast: reads every message published after it was opened.
///
/// Reads take `&self` but a subscription has one position: use it from one thread at a time
/// (reads from several threads at once may deliver a message twice).
#[derive(Debug)]
pub struct Subscriber {
    inner: Queue,
}

impl Subscriber {
    /// Subscribes to the existing broadcast `name`.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        let inner = Broadcast::builder(name).inner.open()?;
        inner.ring().subscribe();
        Ok(Self { inner })
    }
    /// The broadcast's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }
    /// Ring size in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity()
    }
    /// Whether the broadcast uses the lag policy.
    pub fn is_lag(&self) -> bool {
        self.inner.ring().lag_policy()
    }

    /// Receives the next message, waiting as long as needed.
    pub fn recv(&self) -> Result<Vec<u8>, ReadError> {
        let mut v = Vec::new();
        self.recv_into_deadline(&mut v, None)
            .map(|_| v)
            .map_err(|e| match e {
                ReadTimeoutError::Lagged { missed } => ReadError::Lagged { missed },
                ReadTimeoutError::Corrupted(w) => ReadError::Corrupted(w),
                ReadTimeoutError::NotSubscribed => ReadError::Corrupted("subscription lost"),
                ReadTimeoutError::Timeout => unreachable!("no deadline"),
            })
    }
    /// Receives the next message if one is ready.
    pub fn try_recv(&self) -> Result<Vec<u8>, TryReadError> {
        let mut out = None;
        self.try_recv_many_with(1, |d| match d {
            Delivery::Message(v) => {
                let mut buf = Vec::new();
                out = Some(self.inner.extend_payload(&v, &mut buf).map(|()| buf));
            }
            Delivery::Discard => out = None,
        })?;
        out.expect("one message read")
            .map_err(TryReadError::Corrupted)
    }
    /// Receives the next message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>, ReadTimeoutError> {
        let mut v = Vec::new();
        self.recv_into_deadline(&mut v, Some(Instant::now() + timeout))
            .map(|_| v)
    }
    /// Receives the next message into `buf` (cleared first); returns its codec id.
    pub fn recv_into_deadline(
        &self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<u16, ReadTimeoutError> {
        buf.clear();
        let mut codec = 0;
        let mut side = Ok(());
        self.read_many_deadline(1, deadline, None, |d| match d {
            Delivery::Message(v) => {
                codec = v.codec;
                side = self.inner.extend_payload(&v, buf);
            }
            Delivery::Discard => {
                buf.clear();
                side = Ok(());
            }
        })?;
        side.map_err(ReadTimeoutError::Corrupted)?;
        Ok(codec)
    }
    /// Reads up to `max` ready messages, handing each to `f`; `f` may receive
    /// [`Delivery::Discard`] (lag policy), then the call returns [`TryReadError::Lagged`].
    pub fn try_recv_many_with(
        &self,
        max: usize,
        f: impl FnMut(Delivery<'_>),
    ) -> Result<usize, TryReadError> {
        self.inner.ring().try_read_many_with(max, f)
    }
    /// As [`Subscriber::try_recv_many_with`], stopping before a message that would take the
    /// batch's payload bytes past `max_bytes` (the first message is always read).
    pub fn try_recv_many_limited(
        &self,
        max: usize,
        max_bytes: u64,
        f: impl FnMut(Delivery<'_>),
    ) -> Result<usize, TryReadError> {
        self.inner.ring().try_read_many_limited(max, max_bytes, f)
    }
    /// Reads up to `max` messages, waiting for the first until `deadline`; `slice` as in
    /// [`Queue::send_many_deadline`].
    pub fn read_many_deadline(
        &self,
        max: usize,
        deadline: Option<Instant>,
        slice: Option<Duration>,
        f: impl FnMut(Delivery<'_>),
    ) -> Result<usize, ReadTimeoutError> {
        self.inner
            .ring()
            .read_many_deadline(max, deadline, slice, f)
    }
    /// If `m` references a side segment (a message larger than the ring), maps it.
    pub fn open_side(
        &self,
        m: &shmq_core::RecordView<'_>,
    ) -> Result<Option<crate::SideMessage>, &'static str> {
        self.inner.open_side(m)
    }
    /// As [`Subscriber::open_side`], from a record's flags and payload.
    pub fn open_side_raw(
        &self,
        flags: u16,
        payload: &[u8],
    ) -> Result<Option<crate::SideMessage>, &'static str> {
        self.inner.open_side_raw(flags, payload)
    }
    /// Finds the next message and holds it in place (zero-copy): publishers cannot reclaim
    /// it until [`Subscriber::release_held`]. Block policy only (`Corrupted` with the lag
    /// policy, where publishers may overwrite it). Hold one record at a time.
    pub fn try_hold(&self) -> Result<Held, TryReadError> {
        self.inner.ring().try_hold()
    }
    /// The payload of a held record, in (up to) two parts (two when it wraps around the end
    /// of the ring).
    ///
    /// # Safety
    ///
    /// `h` must come from [`Subscriber::try_hold`] on this subscriber and not be released
    /// yet; the slices must not be used after [`Subscriber::release_held`].
    pub unsafe fn held_payload(&self, h: &Held) -> (&[u8], &[u8]) {
        // SAFETY: forwarded contract.
        let (a, b) = unsafe { self.inner.ring().held_payload(h) };
        match (a, b) {
            (Cow::Borrowed(a), Cow::Borrowed(b)) => (a, b),
            _ => unreachable!("shared-memory rings lend their bytes"),
        }
    }
    /// Moves past a held record.
    pub fn release_held(&self, h: &Held) {
        self.inner.ring().release_held(h);
    }
    /// Waits until a read may find something (see [`Queue::wait_for_data`]).
    pub fn wait_for_data(&self, deadline: Option<Instant>, slice: Option<Duration>) -> bool {
        self.inner.ring().wait_for_read(deadline, slice)
    }
    /// This subscriber's position, lag and pending missed count.
    pub fn info(&self) -> Option<SubscriberInfo> {
        let me = self.inner.ring().slot_index();
        self.inner
            .ring()
            .subscribers()
            .into_iter()
            .find(|s| s.slot == me)
    }
    /// Counters of the broadcast.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
    /// Wakes every blocked thread of this broadcast, in every process.
    pub fn wake_all_waiters(&self) {
        self.inner.wake_all_waiters();
    }
    /// After `fork()`, in the child: a new subscription of the child's own, starting now.
    pub fn reopen_in_child(&self) -> Result<Subscriber, OpenError> {
        let inner = self.inner.reopen_in_child()?;
        inner.ring().subscribe();
        Ok(Self { inner })
    }
    /// After `fork()`, in the child: drops the inherited handle without detaching.
    pub fn forget_in_child(self) {
        self.inner.forget_in_child();
    }
    /// Stops reading now, although this handle stays attached (until dropped): publishers no
    /// longer wait for it. Reads then fail with `NotSubscribed`.
    pub fn unsubscribe(&self) {
        self.inner.ring().unsubscribe();
    }
    /// Unsubscribes and detaches now (as drop does).
    pub fn close(self) {
        self.inner.close();
    }
}
