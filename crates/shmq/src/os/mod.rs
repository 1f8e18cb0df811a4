//! The thin OS layer: everything that makes a system call lives below this module, one file
//! per platform.

mod forks;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod readiness;
#[cfg(target_os = "linux")]
mod sigbus;
pub(crate) use forks::fork_generation;
#[cfg(target_os = "linux")]
pub use linux::{
    effective_uid, list_segments, random_u64, segment_exists, shm_free_bytes, Opened, Owner,
    ShmSegment, SEGMENT_PREFIX, SIDE_PREFIX,
};
#[cfg(target_os = "linux")]
pub(crate) use readiness::{
    eventfd, eventfd_clear, eventfd_signal, futex_wait_private, futex_waitv, futex_wake_private,
    WaitvEnd, WaitvEntry, WAITV_MAX,
};

#[cfg(not(target_os = "linux"))]
compile_error!(
    "shmq supports Linux only for now (futexes and OFD locks); macOS/Windows are planned"
);
