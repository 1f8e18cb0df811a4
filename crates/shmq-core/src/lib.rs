//! The protocol core of shmq: a lock-free multi-producer multi-consumer ring of
//! variable-size records that lives in any shared region, on the heap (for tests, loom and
//! Miri) or in a POSIX shared-memory segment (through the `shmq` crate's OS layer).
//!
//! The crate makes no system call of its own: everything it needs from the OS (leases that
//! die with a process, futex-style wait and wake) comes through [`Backing`].
//!
//! The protocol, its record states and every synchronisation point are written down in
//! `docs/protocol.md`; code comments name the points (`SYNC P2`, ...) where they happen.

pub mod backing;
pub mod layout;
pub mod ring;
mod sync;

pub use backing::{Backing, HeapBacking, HeapRegion};
pub use layout::{Geometry, LayoutError};
pub use ring::{
    Armed, AttachError, Claim, Deadline, Delivery, Detached, Interest, Linger, Loan, Message,
    Plain, ReadTimeoutError, RecordView, RecvTimeoutError, Ring, SendTimeoutError, Stats,
    SubscriberInfo, TryReadError, TryRecvError, TrySendError, Waiter,
};
