//! Named shared-memory message queues for processes on one machine.
//!
//! A [`Queue`] lives in one POSIX shared-memory segment (`/dev/shm/shmq-<name>` on Linux).
//! Any process on the machine opens it by name; many producers and many consumers use it at
//! once; each message goes to exactly one consumer, in FIFO order per producer. A
//! [`Broadcast`] ring delivers every message to every [`Subscriber`]. Messages are byte
//! strings tagged with a codec id (0 = raw bytes), so that Python and Rust processes can
//! share a ring.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let name = format!("doc-{}", std::process::id());
//! let q = shmq::Queue::builder(&name).capacity(1 << 16).create()?;
//! q.send(b"hello")?;
//! assert_eq!(q.recv()?, b"hello");
//! # Ok(()) }
//! ```
//!
//! # Waiting
//!
//! Blocking calls spin for about 50 µs, then sleep on a futex in the segment; producers and
//! consumers make a wake-up system call only when someone sleeps. Timeouts use the monotonic
//! clock. A [`Waiter`] passed to the `*_with` calls runs around every sleep (a binding
//! releases its interpreter lock there, and checks for signals after).
//!
//! # Threads
//!
//! Every handle is `Send + Sync`; any number of threads may use one at once. Receive
//! callbacks run while a message is claimed: they must copy what they need and return.
//!
//! # Lifetime
//!
//! Each process that opens a ring is attached to it until it drops the handle (or dies).
//! The last process to detach removes the segment, unless it was created
//! [persistent](Builder::persistent). Processes that died are detached by whoever notices
//! (on open and on close).
//!
//! # Process crashes
//!
//! No lock is ever held across processes; a process killed at any point cannot block the
//! others' progress forever. See `docs/protocol.md` for the exact guarantees.
//!
//! # Capacity and memory layout (may change between versions)
//!
//! A message occupies 16 bytes of header plus its payload, rounded up to 16 bytes. The
//! largest message in the ring is `capacity - 16` bytes; larger ones travel in side segments
//! of their own with [`Builder::allow_large`]. The segment also holds a header and a table of
//! `max_processes` slots of 384 bytes.

#![warn(missing_docs)]

#[macro_use]
mod handle_api;
mod admin;
mod broadcast;
mod builder;
mod error;
mod handle;
mod large;
mod loan;
mod name;
mod os;
mod queue;
pub mod readiness;

pub use admin::{gc, inspect, list_queues, remove, remove_if_nonce, GcPolicy, Inspection};
#[doc(hidden)]
pub use broadcast::ext;
pub use broadcast::{Broadcast, Lent, Subscriber};
pub use builder::{
    Builder, Kind, Open, Policy, DEFAULT_CAPACITY, DEFAULT_MAX_PROCESSES, DEFAULT_MODE,
};
pub use error::{OpenError, RecvError, SendError, SendManyError};
pub use handle::Wait;
pub use large::{LargeMessage, Received};
pub use loan::Loan;
#[doc(hidden)]
pub use loan::{ext as zero_copy, Hold};
pub use name::{segment_name, validate_name, SEGMENT_PREFIX};
pub use queue::Queue;
pub use shmq_core::{Armed, Interest, LayoutError, Message, Plain, Stats, SubscriberInfo, Waiter};

/// Codec id of raw bytes (no serialisation): what Rust sends by default, and what Python
/// receives as `bytes`.
pub const CODEC_RAW: u16 = 0;
