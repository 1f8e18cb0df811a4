//! [`Queue`]: each message to exactly one consumer.

use crate::builder::{Builder, Kind, Open};
use crate::handle::{Handle, Wait};
use crate::large::Received;
use crate::{Lent, Loan, OpenError, RecvError, SendError, SendManyError, Stats};
use shmq_core::{Message, Plain, Waiter};
use std::fmt;
use std::io;
use std::time::Duration;

/// A named shared-memory queue, attached to by this process.
///
/// `Queue` is `Send + Sync`: share it between threads by reference or `Arc`; any number of
/// threads may send and receive on one handle at once.
pub struct Queue {
    pub(crate) h: Handle,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.h.name())
            .finish_non_exhaustive()
    }
}

impl Open for Queue {
    const KIND: Kind = Kind::Queue;
    fn from_handle(h: Handle) -> Result<Self, OpenError> {
        Ok(Self { h })
    }
}

impl Queue {
    handle_api!();
    sender_api!();

    /// Settings for the queue `name`.
    pub fn builder(name: &str) -> Builder<Queue> {
        Builder::new(name)
    }
    /// Creates queue `name` with a ring of `capacity` bytes.
    pub fn create(name: &str, capacity: u64) -> Result<Self, OpenError> {
        Self::builder(name).capacity(capacity).create()
    }
    /// Opens the existing queue `name`.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        Self::builder(name).open()
    }
    /// Opens queue `name`, creating it with `capacity` bytes if it does not exist.
    pub fn open_or_create(name: &str, capacity: u64) -> Result<Self, OpenError> {
        Self::builder(name).capacity(capacity).open_or_create()
    }

    /// Message bound (0 = none).
    pub fn maxsize(&self) -> u64 {
        self.h.ring().geometry().maxsize
    }

    /// Receives a message, waiting as long as needed.
    pub fn recv(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_wait(Wait::Forever)
    }
    /// Receives a message if one is ready (`Empty` otherwise).
    pub fn try_recv(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_wait(Wait::No)
    }
    /// Receives a message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        self.recv_wait(Wait::timeout(timeout))
    }
    fn recv_wait(&self, wait: Wait) -> Result<Vec<u8>, RecvError> {
        let mut v = Vec::new();
        self.recv_into(&mut v, wait)?;
        Ok(v)
    }
    /// Receives a message into `buf` (cleared first, its allocation reused); returns the
    /// message's codec id.
    pub fn recv_into(&self, buf: &mut Vec<u8>, wait: Wait) -> Result<u16, RecvError> {
        buf.clear();
        self.recv_with(wait, &mut Plain, |m| {
            m.extend_into(buf);
            m.codec()
        })
    }
    /// Receives up to `max` messages (stopping before one that would take the batch's
    /// payload past `max_bytes`; the first is always taken), waiting for the first as
    /// `wait` says, and appends `f` of each message to `out`. Returns how many.
    ///
    /// `f` runs while the message is claimed: copy what you need and return; never block,
    /// wait for a lock or run foreign code in it (other threads of this handle, and producers
    /// waiting for space, may wait on it). A large message can be kept past `f` with
    /// [`Received::into_large`] and copied afterwards.
    pub fn recv_many_with<T>(
        &self,
        max: usize,
        max_bytes: u64,
        wait: Wait,
        waiter: &mut dyn Waiter,
        out: &mut Vec<T>,
        f: impl FnMut(Received<'_>) -> T,
    ) -> Result<usize, RecvError> {
        self.h.recv_many(max, max_bytes, wait, waiter, out, f)
    }

    /// Receives one message, handing it to `f` while it is claimed (the rules of
    /// [`Queue::recv_many_with`] apply to `f`), waiting as `wait` says.
    pub fn recv_with<T>(
        &self,
        wait: Wait,
        waiter: &mut dyn Waiter,
        f: impl FnMut(Received<'_>) -> T,
    ) -> Result<T, RecvError> {
        let mut out = None;
        self.h.recv_many(1, u64::MAX, wait, waiter, &mut out, f)?;
        out.ok_or(RecvError::Corrupted(
            "a receive of one message returned none",
        ))
    }

    /// Room for one message of `len` bytes in the ring, to write in place and then
    /// [`Loan::commit`] (zero copy; dropped uncommitted, it is abandoned), waiting for room
    /// as `wait` says. At most [`Queue::max_message_size`] bytes (no side segments). Read the
    /// contract in [`Loan`]'s module: consumers wait at an uncommitted loan.
    pub fn loan(&self, len: usize, wait: Wait) -> Result<Loan<'_>, SendError> {
        let l = self.h.loan(len, wait, &mut Plain)?;
        Ok(Loan::new(&self.h, l))
    }

    /// The next message, read in place (zero copy) until the returned [`Lent`] is dropped,
    /// which consumes it; waits as `wait` says. Other messages can be received meanwhile,
    /// but the held one's bytes are not reclaimed until then. If this process dies holding
    /// it, the message is counted lost (`stats().lost`), as for a consumer killed inside a
    /// receive.
    pub fn recv_lent(&self, wait: Wait) -> Result<Lent<'_>, RecvError> {
        let hold = self.h.hold(wait, &mut Plain)?;
        Ok(Lent::of_queue(&self.h, hold))
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.h
    }

    /// Messages queued (approximate while others are busy, exact with a `maxsize`).
    pub fn len(&self) -> u64 {
        self.h.ring().len()
    }
    /// Whether no message is ready: a [`Queue::try_recv`] now would find none, if nothing else
    /// ran meanwhile (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.h.ring().none_ready()
    }
    /// Whether `maxsize` messages are queued, or a message as large as the last one this
    /// handle sent (or tried to send) would not fit now; a handle that sent nothing asks
    /// about the smallest message. So right after a [`Queue::try_send`] returned `Full`, this
    /// is `true` until something is taken (if nothing else runs). A snapshot.
    pub fn is_full(&self) -> bool {
        self.h.is_full()
    }

    /// Shuts the queue down for every process attached to it, now and later (the word is in
    /// the segment, as Python 3.13's `queue.Queue.shutdown`): sends fail with
    /// [`SendError::ShutDown`]; receives take what is left and then fail with
    /// [`RecvError::ShutDown`] instead of waiting (blocked ones are woken). With `immediate`,
    /// what is left is dropped (counted in [`Stats::dropped`]) and receives fail at once.
    /// Idempotent; an immediate shutdown may follow a plain one. A send racing with the
    /// shutdown may still go in (it is delivered, or dropped by an immediate shutdown, or
    /// stays queued if every receiver stopped already).
    pub fn shutdown(&self, immediate: bool) {
        self.h.shutdown(immediate);
    }
    /// `(messages, payload bytes)` waiting, walked from the head (O(messages); a snapshot).
    pub fn queued_payload(&self) -> (u64, u64) {
        self.h.ring().queued_payload()
    }

    /// After `fork()`, in the child: a new attachment of the child's own. Then drop the
    /// inherited handle with [`Queue::forget_in_child`] (never with `drop`, which would
    /// detach the parent's attachment).
    pub fn reopen_in_child(&self) -> Result<Self, OpenError> {
        Ok(Self {
            h: self.h.reopen_in_child()?,
        })
    }
    /// Detaches now (as drop does); the last process of a non-persistent queue removes it.
    pub fn close(self) {}
}
