//! Linux, for readiness (the async helper thread): `futex_waitv` over many rings' event
//! words, a private futex, eventfds.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// The most futexes one `futex_waitv` call takes (the kernel's `FUTEX_WAITV_MAX`).
pub const WAITV_MAX: usize = 128;

/// One word of a `futex_waitv` call (the kernel's `struct futex_waitv`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WaitvEntry {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

/// `FUTEX2_SIZE_U32`: every word is a u32.
const FUTEX2_SIZE_U32: u32 = 0x02;
/// `FUTEX2_PRIVATE`: the word is in this process's memory only.
const FUTEX2_PRIVATE: u32 = 128;

impl WaitvEntry {
    /// Sleep while `word` holds `val`; `shared` for a word in a MAP_SHARED segment.
    pub fn new(word: &AtomicU32, val: u32, shared: bool) -> Self {
        Self {
            val: u64::from(val),
            uaddr: word.as_ptr() as u64,
            flags: FUTEX2_SIZE_U32 | if shared { 0 } else { FUTEX2_PRIVATE },
            reserved: 0,
        }
    }

    /// Whether both wait on the same word for the same value.
    pub fn same(&self, other: &Self) -> bool {
        self.uaddr == other.uaddr && self.val == other.val
    }
}

/// How a `futex_waitv` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitvEnd {
    /// Woken, a word did not hold its value (`EAGAIN`), a signal or the deadline: the
    /// caller re-checks every word.
    Returned,
    /// This kernel has no `futex_waitv` (before Linux 5.16).
    Unsupported,
    /// Any other error (`EFAULT`, `EINVAL`, `EPERM` under a seccomp filter...): it did not
    /// sleep, so the caller must not simply call again (that would spin).
    Failed,
}

/// Sleeps until one of `words` is woken or does not hold its value, or until `deadline`
/// (CLOCK_MONOTONIC, as `Instant`). The addresses are only keys and read by the kernel,
/// which reports an unmapped one as `EFAULT`: no memory of ours is dereferenced.
pub fn futex_waitv(words: &[WaitvEntry], deadline: Option<Instant>) -> WaitvEnd {
    let ts = deadline.map(|d| {
        // `Instant` is CLOCK_MONOTONIC on Linux: the absolute timeout is now's clock value
        // plus what is left until `d`.
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec we pass.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let left = d.saturating_duration_since(Instant::now());
        let mut sec = now
            .tv_sec
            .saturating_add(left.as_secs().min(i64::MAX as u64 / 2) as libc::time_t);
        let mut nsec = now.tv_nsec + left.subsec_nanos() as libc::c_long;
        if nsec >= 1_000_000_000 {
            sec += 1;
            nsec -= 1_000_000_000;
        }
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        }
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `words` is a valid array of `words.len()` (<= 128) kernel futex_waitv entries;
    // the kernel only reads them and the timespec; flags 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            words.as_ptr(),
            words.len() as libc::c_uint,
            0u32,
            ts_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r >= 0 {
        return WaitvEnd::Returned;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN | libc::ETIMEDOUT | libc::EINTR) => WaitvEnd::Returned,
        Some(libc::ENOSYS) => WaitvEnd::Unsupported,
        _ => WaitvEnd::Failed,
    }
}

/// Sleeps on one private futex word while it holds `val`, at most `timeout`.
pub fn futex_wait_private(word: &AtomicU32, val: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT_PRIVATE reads the aligned u32 at `word` (process memory we own);
    // every outcome means "re-check".
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            val,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes the sleepers of a private futex word.
pub fn futex_wake_private(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// A non-blocking, close-on-exec eventfd (a counter an event loop waits on).
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; a non-negative result is a new fd we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes an eventfd readable (adds 1).
pub fn eventfd_signal(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an fd we own. EAGAIN (the counter at its
    // maximum) still leaves it readable, which is all a signal means.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Makes an eventfd unreadable again (reads its counter; nothing to read is fine).
pub fn eventfd_clear(fd: &OwnedFd) {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a live u64 from a non-blocking fd we own.
    unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
}
