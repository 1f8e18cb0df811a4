//! The errors of the public API: one type per direction (open, send, receive).

use shmq_core::LayoutError;
use std::fmt;
use std::io;

use crate::Kind;

/// Why a queue or broadcast could not be created or opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// `create` was asked for and the name exists.
    AlreadyExists(String),
    /// `open` was asked for and the name does not exist.
    DoesNotExist(String),
    /// The segment exists and this user may not open it.
    PermissionDenied(String),
    /// The name is empty, too long, or has characters other than `[A-Za-z0-9._-]`.
    InvalidName(String),
    /// A capacity, maxsize or process count out of range.
    InvalidArgument(String),
    /// The segment is not a shmq ring of this version, or is damaged.
    Corrupted {
        /// Queue name.
        name: String,
        /// What is wrong.
        reason: LayoutError,
    },
    /// The segment's creator never finished initialising it.
    NotInitialized(String),
    /// The name belongs to the other kind of ring (a broadcast opened as a queue, or the
    /// other way round).
    WrongKind {
        /// Queue name.
        name: String,
        /// What the segment is.
        found: Kind,
    },
    /// The segment belongs to another user, who is not trusted (see
    /// [`crate::Builder::trust_owner`]): its owner could read everything sent and inject
    /// messages (pickles that run code, in Python).
    UntrustedOwner {
        /// Queue name.
        name: String,
        /// The owner's user id.
        owner: u32,
    },
    /// The segment is writable by users this handle did not ask to share with (its mode has
    /// group/other write bits that [`crate::Builder::mode`] does not).
    TooWidelyWritable {
        /// Queue name.
        name: String,
        /// The segment's permission bits.
        mode: u32,
        /// The permission bits this handle asked for.
        asked: u32,
    },
    /// Something other than a segment has the name (a symbolic link, a FIFO, a directory).
    NotASegment(String),
    /// `/dev/shm` has no room for the ring: `needed` bytes, `free` left (when known).
    NoSpace {
        /// Queue name.
        name: String,
        /// Bytes the segment needs.
        needed: u64,
        /// Bytes free in `/dev/shm`.
        free: Option<u64>,
    },
    /// All process slots are taken by live processes.
    TooManyProcesses {
        /// Queue name.
        name: String,
        /// Size of the process table.
        max: u32,
    },
    /// Another OS error.
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyExists(n) => write!(f, "queue {n:?} already exists"),
            Self::DoesNotExist(n) => write!(f, "queue {n:?} does not exist"),
            Self::PermissionDenied(n) => write!(f, "permission denied for queue {n:?}"),
            Self::InvalidName(why) => write!(f, "invalid queue name: {why}"),
            Self::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Self::Corrupted { name, reason } => write!(f, "queue {name:?}: {reason}"),
            Self::NotInitialized(n) => {
                write!(f, "queue {n:?} was never initialised (its creator died?)")
            }
            Self::WrongKind { name, found } => {
                write!(f, "{name:?} is a {found}, not a {}", found.other())
            }
            Self::UntrustedOwner { name, owner } => write!(
                f,
                "queue {name:?} belongs to user {owner}, not to you ({}): refusing to use it \
                 (its owner could read what you send and forge what you receive); trust that \
                 user explicitly to share it",
                crate::os::effective_uid()
            ),
            Self::TooWidelyWritable { name, mode, asked } => write!(
                f,
                "queue {name:?} is writable by other users (mode {mode:#o}) but this handle \
                 asked for mode {asked:#o}: anyone could forge messages; open it with a mode \
                 that shares it as widely to accept that"
            ),
            Self::NotASegment(why) => write!(f, "{why}"),
            Self::NoSpace { name, needed, free } => {
                write!(
                    f,
                    "no room in /dev/shm for queue {name:?}: it needs {needed} bytes"
                )?;
                if let Some(free) = free {
                    write!(f, ", {free} are free")?;
                }
                write!(
                    f,
                    "; give /dev/shm more room (docker run --shm-size=..., or a larger tmpfs) \
                     or use a smaller capacity"
                )
            }
            Self::TooManyProcesses { name, max } => {
                write!(f, "queue {name:?}: all {max} process slots are in use")
            }
            Self::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Corrupted { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

impl OpenError {
    /// The open error for an OS error about queue `name`'s segment.
    pub(crate) fn from_io(name: &str, e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::NotFound => Self::DoesNotExist(name.to_owned()),
            io::ErrorKind::PermissionDenied => Self::PermissionDenied(name.to_owned()),
            io::ErrorKind::InvalidData => Self::NotASegment(e.to_string()),
            _ => Self::Io(e),
        }
    }
}

/// Why a send did not happen. Nothing of the message (or batch) was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No room now (a call that does not wait).
    Full,
    /// The deadline passed while the ring stayed full.
    Timeout,
    /// The message (or batch) can never fit.
    TooLarge {
        /// Payload bytes asked for.
        size: u64,
        /// The most allowed.
        max: u64,
    },
    /// A message larger than the ring could not be written to a side segment of its own
    /// (`/dev/shm` full, or a permission problem); see [`crate::Builder::allow_large`].
    /// Nothing of it is left behind.
    SideSegment {
        /// What went wrong (`StorageFull`: `/dev/shm` has no room).
        kind: io::ErrorKind,
        /// Bytes of the message.
        size: u64,
        /// Bytes free in `/dev/shm` when it failed (when known).
        free: Option<u64>,
    },
    /// The shared state is inconsistent (a buggy or hostile process wrote to it).
    Corrupted(&'static str),
    /// The caller's [`crate::Waiter`] stopped the wait.
    Interrupted,
    /// The queue or broadcast was shut down ([`crate::Queue::shutdown`]), by any process: no
    /// send succeeds any more.
    ShutDown,
    /// A loan that could only wait for the calling thread itself (see [`crate::Loan`]):
    /// refused at once rather than hanging.
    WouldDeadlock(&'static str),
    /// The call does not apply to this queue or broadcast (see
    /// [`shmq_core::TrySendError::Unsupported`]).
    Unsupported(&'static str),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => write!(f, "queue is full"),
            Self::Timeout => write!(f, "timed out waiting for space"),
            Self::TooLarge { size, max } => {
                write!(f, "message of {size} bytes can never fit (at most {max})")
            }
            Self::SideSegment { kind, size, free } => {
                write!(
                    f,
                    "could not write a message of {size} bytes (larger than the ring) into a \
                     side segment of its own: {}",
                    io::Error::from(*kind)
                )?;
                if *kind == io::ErrorKind::StorageFull {
                    if let Some(free) = free {
                        write!(f, " ({free} bytes free in /dev/shm)")?;
                    }
                    write!(
                        f,
                        "; give /dev/shm more room (docker run --shm-size=...) or send \
                         smaller messages"
                    )?;
                }
                Ok(())
            }
            Self::Corrupted(w) => write!(f, "corrupted queue: {w}"),
            Self::Interrupted => write!(f, "interrupted"),
            Self::ShutDown => write!(f, "queue was shut down"),
            Self::WouldDeadlock(w) => write!(f, "would deadlock: {w}"),
            Self::Unsupported(w) => write!(f, "unsupported: {w}"),
        }
    }
}
impl std::error::Error for SendError {}

/// A batch send that stopped part-way: the first `sent` messages went in (in order), the
/// rest did not, because of `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendManyError {
    /// Messages of the batch that were sent.
    pub sent: usize,
    /// Why the rest was not.
    pub error: SendError,
}

impl fmt::Display for SendManyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (after {} messages of the batch)",
            self.error, self.sent
        )
    }
}
impl std::error::Error for SendManyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Why a receive returned no message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvError {
    /// No message now (a call that does not wait).
    Empty,
    /// The deadline passed while nothing arrived.
    Timeout,
    /// The subscriber fell behind a lag-policy broadcast: `missed` messages were overwritten
    /// before it read them. The next read returns the oldest message still available.
    Lagged {
        /// Messages skipped.
        missed: u64,
    },
    /// The shared state is inconsistent.
    Corrupted(&'static str),
    /// The caller's [`crate::Waiter`] stopped the wait.
    Interrupted,
    /// The queue or broadcast was shut down and nothing is left to receive (at once after
    /// an immediate shutdown).
    ShutDown,
    /// A hold that could only wait for the calling thread itself (see [`crate::Loan`]).
    WouldDeadlock(&'static str),
    /// The call does not apply to this queue or subscription: a zero-copy read of a
    /// lag-policy broadcast (see [`shmq_core::TryRecvError::Unsupported`]).
    Unsupported(&'static str),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "queue is empty"),
            Self::Timeout => write!(f, "timed out waiting for a message"),
            Self::Lagged { missed } => write!(f, "subscriber lagged: {missed} messages missed"),
            Self::Corrupted(w) => write!(f, "corrupted queue: {w}"),
            Self::Interrupted => write!(f, "interrupted"),
            Self::ShutDown => write!(f, "queue was shut down and is empty"),
            Self::WouldDeadlock(w) => write!(f, "would deadlock: {w}"),
            Self::Unsupported(w) => write!(f, "unsupported: {w}"),
        }
    }
}
impl std::error::Error for RecvError {}

impl From<shmq_core::SendTimeoutError> for SendError {
    fn from(e: shmq_core::SendTimeoutError) -> Self {
        use shmq_core::SendTimeoutError as E;
        match e {
            E::Timeout => Self::Timeout,
            E::TooLarge { size, max } => Self::TooLarge { size, max },
            E::Corrupted(w) => Self::Corrupted(w),
            E::Unsupported(w) => Self::Unsupported(w),
            E::Interrupted => Self::Interrupted,
            E::ShutDown => Self::ShutDown,
        }
    }
}

impl From<shmq_core::TrySendError> for SendError {
    fn from(e: shmq_core::TrySendError) -> Self {
        use shmq_core::TrySendError as E;
        match e {
            // A non-blocking call that found our own threads on every lane: as full now.
            E::Full | E::Busy => Self::Full,
            E::TooLarge { size, max } => Self::TooLarge { size, max },
            E::Corrupted(w) => Self::Corrupted(w),
            E::Unsupported(w) => Self::Unsupported(w),
            E::ShutDown => Self::ShutDown,
        }
    }
}

impl From<shmq_core::RecvTimeoutError> for RecvError {
    fn from(e: shmq_core::RecvTimeoutError) -> Self {
        use shmq_core::RecvTimeoutError as E;
        match e {
            E::Timeout => Self::Timeout,
            E::Corrupted(w) => Self::Corrupted(w),
            E::Unsupported(w) => Self::Unsupported(w),
            E::Interrupted => Self::Interrupted,
            E::ShutDown => Self::ShutDown,
        }
    }
}

impl From<shmq_core::ReadTimeoutError> for RecvError {
    fn from(e: shmq_core::ReadTimeoutError) -> Self {
        use shmq_core::ReadTimeoutError as E;
        match e {
            E::Timeout => Self::Timeout,
            E::Lagged { missed } => Self::Lagged { missed },
            // `Subscriber` subscribes when it opens and unsubscribes only when it closes.
            E::NotSubscribed => Self::Corrupted("the subscription's cursor was removed"),
            E::Corrupted(w) => Self::Corrupted(w),
            E::Unsupported(w) => Self::Unsupported(w),
            E::Interrupted => Self::Interrupted,
            E::ShutDown => Self::ShutDown,
        }
    }
}
