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
//! With [`Policy::Block`] (the default) publishers wait for the slowest live subscriber (a
//! dead one is detached within milliseconds); with [`Policy::Lag`] publishers never wait and
//! a subscriber that fell behind gets [`RecvError::Lagged`] with the number of messages it
//! missed, then continues with the oldest message still in the ring.

use crate::builder::{Builder, Kind, Open, Policy};
use crate::handle::{Handle, Wait};
use crate::large::{LargeMessage, Received};
use crate::loan::Hold;

use crate::{OpenError, RecvError, SendError, SendManyError, Stats};
use shmq_core::{Message, Plain, SubscriberInfo, Waiter};
use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::time::Duration;

/// A named broadcast ring, attached to by this process as a publisher.
///
/// `Broadcast` is `Send + Sync`; any number of processes and threads may publish at once.
pub struct Broadcast {
    pub(crate) h: Handle,
}

impl fmt::Debug for Broadcast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broadcast")
            .field("name", &self.h.name())
            .finish_non_exhaustive()
    }
}

impl Open for Broadcast {
    const KIND: Kind = Kind::Broadcast;
    fn from_handle(h: Handle) -> Result<Self, OpenError> {
        Ok(Self { h })
    }
}

fn policy_of(h: &Handle) -> Policy {
    if h.ring().lag_policy() {
        Policy::Lag
    } else {
        Policy::Block
    }
}

impl Broadcast {
    handle_api!();
    sender_api!();

    /// Settings for the broadcast `name`.
    pub fn builder(name: &str) -> Builder<Broadcast> {
        Builder::new(name)
    }
    /// Creates broadcast `name` with a ring of `capacity` bytes (block policy).
    pub fn create(name: &str, capacity: u64) -> Result<Self, OpenError> {
        Self::builder(name).capacity(capacity).create()
    }
    /// Opens the existing broadcast `name` to publish.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        Self::builder(name).open()
    }

    /// What publishers do when a subscriber falls a ring behind.
    pub fn policy(&self) -> Policy {
        policy_of(&self.h)
    }
    /// Room for one message of `len` bytes, written in place and published by
    /// [`crate::Loan::commit`] (see [`crate::Queue::loan`]).
    pub fn loan(&self, len: usize, wait: Wait) -> Result<crate::Loan<'_>, SendError> {
        let l = self.h.loan(len, wait, &mut Plain)?;
        Ok(crate::Loan::new(&self.h, l))
    }
    pub(crate) fn handle(&self) -> &Handle {
        &self.h
    }
    /// A new subscription to this broadcast (a new attachment of this process).
    pub fn subscribe(&self) -> Result<Subscriber, OpenError> {
        Subscriber::open(self.name())
    }

    /// The subscribers and how far behind they are.
    pub fn subscribers(&self) -> Vec<SubscriberInfo> {
        self.h.ring().subscribers()
    }
    /// Shuts the broadcast down for every process (as [`crate::Queue::shutdown`]): sends
    /// fail with [`SendError::ShutDown`]; each subscriber reads what it has not read yet and
    /// then gets [`RecvError::ShutDown`]. With `immediate`, subscribers get it at once (their
    /// unread messages are not counted as dropped: each subscriber has its own).
    pub fn shutdown(&self, immediate: bool) {
        self.h.shutdown(immediate);
    }
    /// After `fork()`, in the child: an attachment of the child's own (see
    /// [`crate::Queue::reopen_in_child`]).
    pub fn reopen_in_child(&self) -> Result<Self, OpenError> {
        Ok(Self {
            h: self.h.reopen_in_child()?,
        })
    }
    /// Detaches now (as drop does).
    pub fn close(self) {}
}

/// A subscription to a named broadcast: reads every message published after it was opened.
///
/// `Subscriber` is `Send + Sync`; threads sharing one take turns, and each message goes to
/// one of them (a subscription has one position).
pub struct Subscriber {
    pub(crate) h: Handle,
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("name", &self.h.name())
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    handle_api!();

    /// Subscribes to the existing broadcast `name`.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        Self::open_with(Broadcast::builder(name))
    }
    /// Subscribes to the existing broadcast that `settings` name, with their access settings
    /// ([`Builder::mode`], [`Builder::trust_owner`]); size settings do not apply.
    pub fn open_with(settings: Builder<Broadcast>) -> Result<Self, OpenError> {
        Ok(Self::of(settings.open()?.h))
    }
    fn of(h: Handle) -> Self {
        h.ring().subscribe();
        Self { h }
    }

    /// What publishers do when a subscriber falls a ring behind.
    pub fn policy(&self) -> Policy {
        policy_of(&self.h)
    }

    /// Receives the next message, waiting as long as needed.
    pub fn recv(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_wait(Wait::Forever)
    }
    /// Receives the next message if one is ready (`Empty` otherwise).
    pub fn try_recv(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_wait(Wait::No)
    }
    /// Receives the next message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        self.recv_wait(Wait::timeout(timeout))
    }
    fn recv_wait(&self, wait: Wait) -> Result<Vec<u8>, RecvError> {
        let mut v = Vec::new();
        self.recv_into(&mut v, wait)?;
        Ok(v)
    }
    /// Receives the next message into `buf` (cleared first); returns its codec id.
    pub fn recv_into(&self, buf: &mut Vec<u8>, wait: Wait) -> Result<u16, RecvError> {
        self.recv_with(wait, &mut Plain, |m| {
            buf.clear();
            m.extend_into(buf);
            m.codec()
        })
    }
    /// Reads up to `max` messages (see [`crate::Queue::recv_many_with`], whose rules for `f`
    /// apply: it runs while the subscription's read turn is held). With the lag policy, `f`
    /// may also see messages that are then withdrawn because publishers overwrote them
    /// meanwhile: `out` only keeps the ones delivered.
    pub fn recv_many_with<T>(
        &self,
        max: usize,
        max_bytes: u64,
        wait: Wait,
        waiter: &mut dyn Waiter,
        out: &mut Vec<T>,
        f: impl FnMut(Received<'_>) -> T,
    ) -> Result<usize, RecvError> {
        self.h.read_many(max, max_bytes, wait, waiter, out, f)
    }
    /// Reads one message, handing it to `f` (see [`Subscriber::recv_many_with`]).
    pub fn recv_with<T>(
        &self,
        wait: Wait,
        waiter: &mut dyn Waiter,
        f: impl FnMut(Received<'_>) -> T,
    ) -> Result<T, RecvError> {
        let mut out = None;
        self.h.read_many(1, u64::MAX, wait, waiter, &mut out, f)?;
        out.ok_or(RecvError::Corrupted("a read of one message returned none"))
    }
    /// Lends the next message without copying it (block policy only): publishers cannot
    /// overwrite it until the returned [`Lent`] is dropped. `&mut self` keeps other reads of
    /// this subscription away meanwhile.
    pub fn recv_lent(&mut self, wait: Wait) -> Result<Lent<'_>, RecvError> {
        let lend = ext::lend(self, wait, &mut Plain)?;
        Ok(Lent::of(LentFrom::Subscription(self, lend)))
    }

    /// This subscriber's position, lag and pending missed count.
    pub fn info(&self) -> Option<SubscriberInfo> {
        let me = self.h.ring().slot_index();
        self.h
            .ring()
            .subscribers()
            .into_iter()
            .find(|s| s.slot == me)
    }
    /// After `fork()`, in the child: a new subscription of the child's own, starting now.
    pub fn reopen_in_child(&self) -> Result<Self, OpenError> {
        Ok(Self::of(self.h.reopen_in_child()?))
    }
    /// Stops reading now, although this handle stays attached (until dropped): publishers no
    /// longer wait for it. Reads then fail with `Corrupted`.
    pub fn unsubscribe(&self) {
        self.h.ring().unsubscribe();
    }
    /// Unsubscribes and detaches now (as drop does).
    pub fn close(self) {}
}

/// A message lent by [`Subscriber::recv_lent`] or [`crate::Queue::recv_lent`]: read in
/// place; released on drop.
///
/// The hold belongs to the process that took it: the copy a `fork()` child inherits can be
/// read, but dropping it there releases nothing (nor removes a large message's segment),
/// so the parent's hold lasts until the parent drops its own.
#[derive(Debug)]
pub struct Lent<'a> {
    /// Dropped by hand in `drop`, and only in the process that took the hold: in a fork
    /// child it is left alone (a queue's large message would remove its segment otherwise).
    from: ManuallyDrop<LentFrom<'a>>,
    /// The fork generation it was lent in (see `os::fork_generation`).
    forks: u64,
}

#[derive(Debug)]
enum LentFrom<'a> {
    Subscription(&'a Subscriber, ext::Lend),
    /// `None` once released (in drop).
    Queue(&'a Handle, Option<Hold>),
}

impl<'a> Lent<'a> {
    fn of(from: LentFrom<'a>) -> Self {
        Self {
            from: ManuallyDrop::new(from),
            forks: crate::os::fork_generation(),
        }
    }
    pub(crate) fn of_queue(h: &'a Handle, hold: Hold) -> Self {
        Self::of(LentFrom::Queue(h, Some(hold)))
    }
    /// Codec id of the message.
    pub fn codec(&self) -> u16 {
        match &*self.from {
            LentFrom::Subscription(_, ext::Lend::Ring(h)) => h.codec,
            LentFrom::Subscription(_, ext::Lend::Large(l)) => l.codec(),
            LentFrom::Queue(_, Some(Hold::Ring(c))) => c.codec,
            LentFrom::Queue(_, Some(Hold::Large(l))) => l.codec(),
            LentFrom::Queue(_, None) => unreachable!("released only in drop"),
        }
    }
    /// The payload as (up to) two slices (it may wrap around the end of the ring).
    pub fn parts(&self) -> (&[u8], &[u8]) {
        match &*self.from {
            // SAFETY: the hold is ours until drop, and `&mut Subscriber` (borrowed by `self`)
            // keeps every other read of this attachment, which would release it, away.
            LentFrom::Subscription(sub, ext::Lend::Ring(h)) => unsafe { ext::lent_parts(sub, h) },
            LentFrom::Subscription(_, ext::Lend::Large(l)) => (l.bytes(), &[]),
            // SAFETY: the claim is ours until drop; nothing else releases a queue's hold.
            LentFrom::Queue(h, Some(Hold::Ring(c))) => unsafe { h.held_parts(c) },
            LentFrom::Queue(_, Some(Hold::Large(l))) => (l.bytes(), &[]),
            LentFrom::Queue(_, None) => unreachable!("released only in drop"),
        }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if crate::os::fork_generation() != self.forks {
            return; // a fork child's copy: the hold is the parent's (see `from`)
        }
        match &mut *self.from {
            LentFrom::Subscription(sub, ext::Lend::Ring(h)) => ext::release(sub, h),
            LentFrom::Queue(h, hold) => {
                if let Some(Hold::Ring(c)) = hold.take() {
                    h.release(c);
                }
            }
            LentFrom::Subscription(_, ext::Lend::Large(_)) => {}
        }
        // SAFETY: `from` is dropped once, here, and `self` is not used after.
        unsafe { ManuallyDrop::drop(&mut self.from) };
    }
}

/// Zero-copy reads for bindings, whose lent buffers outlive any Rust borrow: the caller
/// keeps the [`Subscriber`] alive and stops using a lent record once it is released.
#[doc(hidden)]
pub mod ext {
    use super::*;
    pub use shmq_core::ring::Held;

    /// What [`lend`] returns.
    #[derive(Debug)]
    pub enum Lend {
        /// A record held in the ring (release it with [`release`]).
        Ring(Held),
        /// A message larger than the ring, mapped from its side segment (nothing held).
        Large(LargeMessage),
    }

    /// Holds the next message of `sub` (block policy). The record stays held until
    /// [`release`] or the next [`lend`] of `sub` by any thread (reads and [`lend_more`] go
    /// on behind it).
    pub fn lend(sub: &Subscriber, wait: Wait, waiter: &mut dyn Waiter) -> Result<Lend, RecvError> {
        let held = match sub.h.ring().hold_blocking(wait.deadline(), waiter) {
            Ok(h) => h,
            Err(shmq_core::ReadTimeoutError::Timeout) if wait == Wait::No => {
                return Err(RecvError::Empty)
            }
            Err(e) => return Err(e.into()),
        };
        lent(sub, held)
    }

    /// As [`lend`], keeping the records `sub` holds already: `Ok(None)` when it holds
    /// [`shmq_core::ring::HOLD_WINDOW`] of them. Each stays held until its [`release`].
    pub fn lend_more(
        sub: &Subscriber,
        wait: Wait,
        waiter: &mut dyn Waiter,
    ) -> Result<Option<Lend>, RecvError> {
        match sub.h.ring().hold_more_blocking(wait.deadline(), waiter) {
            Ok(Some(h)) => lent(sub, h).map(Some),
            Ok(None) => Ok(None),
            Err(shmq_core::ReadTimeoutError::Timeout) if wait == Wait::No => Err(RecvError::Empty),
            Err(e) => Err(e.into()),
        }
    }

    fn lent(sub: &Subscriber, held: Held) -> Result<Lend, RecvError> {
        let ring = sub.h.ring();
        if held.flags & shmq_core::layout::RECORD_FLAG_SIDE == 0 {
            return Ok(Lend::Ring(held));
        }
        // A large message: mapped while the record is held, then the record goes (the
        // mapping stays valid whoever removes the segment's name).
        // SAFETY: just held, not released.
        let (a, b) = unsafe { ring.held_payload(&held) };
        let large = LargeMessage::open(ring.backing(), held.codec, (&a, &b), false);
        ring.release_held(&held);
        large.map(Lend::Large).map_err(RecvError::Corrupted)
    }

    /// The payload of a record lent by [`lend`].
    ///
    /// # Safety
    ///
    /// `h` must come from [`lend`] on `sub` and not be released yet, and no other read of
    /// `sub` may happen while the slices live (it would release the record, and publishers
    /// could then overwrite the bytes).
    pub unsafe fn lent_parts<'a>(sub: &'a Subscriber, h: &Held) -> (&'a [u8], &'a [u8]) {
        // SAFETY: the caller guarantees the hold (see `# Safety`).
        let (a, b) = unsafe { sub.h.ring().held_payload(h) };
        match (a, b) {
            (std::borrow::Cow::Borrowed(a), std::borrow::Cow::Borrowed(b)) => (a, b),
            // Only typed (model-checking) storage copies, and shm segments are not typed.
            _ => unreachable!("shared-memory rings lend borrowed bytes"),
        }
    }

    /// Whether a record lent by [`lend`] is still lent (a snapshot).
    pub fn is_lent(sub: &Subscriber, h: &Held) -> bool {
        sub.h.ring().is_held(h)
    }

    /// Releases every record `sub` holds.
    pub fn release_all(sub: &Subscriber) {
        sub.h.ring().release_all_held();
    }

    /// Releases a record lent by [`lend`] (nothing if a later read released it already).
    pub fn release(sub: &Subscriber, h: &Held) {
        sub.h.ring().release_held(h);
    }
}
