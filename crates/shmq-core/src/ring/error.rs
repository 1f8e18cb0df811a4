//! The error types of the queue calls (broadcast reads have theirs in `broadcast.rs`):
//! small, honest enums with a short lowercase `Display`.

use crate::layout::LayoutError;

/// Why a non-blocking send did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrySendError {
    /// Not enough free bytes (or `maxsize` messages are queued).
    Full,
    /// The message (or batch) can never fit: `size` bytes of payload, `max` allowed.
    TooLarge {
        /// Bytes asked for.
        size: u64,
        /// The most one message (or batch) may have.
        max: u64,
    },
    /// The shared state is inconsistent (a buggy or hostile process wrote to it).
    Corrupted(&'static str),
    /// The call does not apply to this ring: a queue call on a broadcast ring, a loan or
    /// hold on a heap-backed ring, a zero-copy read of a lag-policy ring. A mistake of the
    /// caller, never caused by another process.
    Unsupported(&'static str),
    /// Every lane of this attachment is taken by its other threads: try again (after
    /// yielding). Never caused by another process.
    Busy,
    /// The ring was shut down ([`Ring::shutdown`](super::Ring::shutdown)): no send succeeds
    /// any more.
    ShutDown,
}

/// Why a non-blocking receive returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// No message is ready.
    Empty,
    /// The shared state is inconsistent.
    Corrupted(&'static str),
    /// See [`TrySendError::Unsupported`].
    Unsupported(&'static str),
    /// See [`TrySendError::Busy`].
    Busy,
    /// The ring was shut down and nothing is left to receive (or it was shut down
    /// immediately).
    ShutDown,
}

/// Why a blocking send did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendTimeoutError {
    /// The deadline passed while the queue stayed full.
    Timeout,
    /// See [`TrySendError::TooLarge`].
    TooLarge {
        /// Bytes asked for.
        size: u64,
        /// The most one message (or batch) may have.
        max: u64,
    },
    /// See [`TrySendError::Corrupted`].
    Corrupted(&'static str),
    /// See [`TrySendError::Unsupported`].
    Unsupported(&'static str),
    /// The caller's [`Waiter`](super::Waiter) asked to stop (a signal, a handle closed meanwhile).
    Interrupted,
    /// See [`TrySendError::ShutDown`].
    ShutDown,
}

/// Why a blocking receive returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// The deadline passed while the queue stayed empty.
    Timeout,
    /// See [`TryRecvError::Corrupted`].
    Corrupted(&'static str),
    /// See [`TrySendError::Unsupported`].
    Unsupported(&'static str),
    /// The caller's [`Waiter`](super::Waiter) asked to stop.
    Interrupted,
    /// See [`TryRecvError::ShutDown`].
    ShutDown,
}

/// Why attaching to a segment failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// The creator has not finished initialising the segment.
    NotReady,
    /// The last process detached and the segment is being removed.
    Closing,
    /// Every slot of the slot table is held by a live process.
    NoFreeSlot {
        /// Size of the slot table.
        max_slots: u32,
    },
    /// The segment is not a valid shmq queue.
    Layout(LayoutError),
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotReady => write!(f, "segment not initialised by its creator"),
            Self::Closing => write!(f, "segment is being removed by its last user"),
            Self::NoFreeSlot { max_slots } => {
                write!(f, "all {max_slots} process slots are in use")
            }
            Self::Layout(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AttachError {}

impl core::fmt::Display for TrySendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Full => write!(f, "queue is full"),
            Self::TooLarge { size, max } => {
                write!(f, "message of {size} bytes can never fit (at most {max})")
            }
            Self::Corrupted(w) => write!(f, "corrupted queue: {w}"),
            Self::Unsupported(w) => write!(f, "unsupported: {w}"),
            Self::Busy => write!(f, "{BUSY}"),
            Self::ShutDown => write!(f, "{SHUT_DOWN}"),
        }
    }
}
impl std::error::Error for TrySendError {}

const BUSY: &str = "every lane of this handle is in use by its other threads";
const SHUT_DOWN: &str = "queue was shut down";

impl core::fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Empty => write!(f, "queue is empty"),
            Self::Corrupted(w) => write!(f, "corrupted queue: {w}"),
            Self::Unsupported(w) => write!(f, "unsupported: {w}"),
            Self::Busy => write!(f, "{BUSY}"),
            Self::ShutDown => write!(f, "{SHUT_DOWN}"),
        }
    }
}
impl std::error::Error for TryRecvError {}

impl core::fmt::Display for SendTimeoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Timeout => write!(f, "timed out waiting for space"),
            Self::TooLarge { size, max } => {
                write!(f, "message of {size} bytes can never fit (at most {max})")
            }
            Self::Corrupted(w) => write!(f, "corrupted queue: {w}"),
            Self::Unsupported(w) => write!(f, "unsupported: {w}"),
            Self::Interrupted => write!(f, "interrupted"),
            Self::ShutDown => write!(f, "{SHUT_DOWN}"),
        }
    }
}
impl std::error::Error for SendTimeoutError {}

impl core::fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Timeout => write!(f, "timed out waiting for a message"),
            Self::Corrupted(w) => write!(f, "corrupted queue: {w}"),
            Self::Unsupported(w) => write!(f, "unsupported: {w}"),
            Self::Interrupted => write!(f, "interrupted"),
            Self::ShutDown => write!(f, "{SHUT_DOWN}"),
        }
    }
}
impl std::error::Error for RecvTimeoutError {}

impl SendTimeoutError {
    /// The blocking-call error for a failed attempt that does not wait (not `Full`/`Busy`).
    pub(super) fn from_attempt(e: TrySendError) -> Self {
        match e {
            TrySendError::TooLarge { size, max } => Self::TooLarge { size, max },
            TrySendError::Corrupted(w) => Self::Corrupted(w),
            TrySendError::Unsupported(w) => Self::Unsupported(w),
            TrySendError::ShutDown => Self::ShutDown,
            TrySendError::Full | TrySendError::Busy => Self::Timeout,
        }
    }
}
