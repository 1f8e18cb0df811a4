//! Surviving a segment truncated under us. A process with write access to a segment can
//! `ftruncate` it; every page past the new end then raises SIGBUS in every process that
//! touches it, which kills them, even those asleep in a wait. This module keeps a table of
//! this process's shmq mappings and a SIGBUS handler: a fault inside one of them maps a page
//! of zeros (private to this process) over the faulting page, marks the mapping poisoned and
//! returns, so the access completes with zeros; the next operation on that segment sees the
//! mark and reports the segment as corrupted. A fault anywhere else goes to the handler that
//! was installed before ours (or the default action: the process dies as it would have).
//!
//! Cost on the hot path: none (the handler runs only on a fault); one relaxed load per call
//! to check the mark.
//!
//! Limits: a SIGBUS handler installed after ours (e.g. `faulthandler.enable()` called after
//! the first queue was opened) takes precedence, and a truncation then kills as before.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

/// Mappings tracked at once; more are mapped untracked (a truncation of those kills).
const REGIONS: usize = 1024;

/// One tracked mapping: `[start, end)`, `start == 0` when free.
struct Region {
    start: AtomicUsize,
    end: AtomicUsize,
    poisoned: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // the initialiser of the array below
const FREE: Region = Region {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    poisoned: AtomicBool::new(false),
};

static TABLE: [Region; REGIONS] = [FREE; REGIONS];

/// The action that was installed before ours (written once, before ours is installed).
static mut PREVIOUS: std::mem::MaybeUninit<libc::sigaction> = std::mem::MaybeUninit::uninit();
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// A tracked mapping; untracked (and never poisoned) when the table was full.
#[derive(Debug)]
pub struct Tracked(Option<usize>);

impl Tracked {
    /// Starts tracking `[start, start + len)`, a mapping just made.
    pub fn new(start: *mut u8, len: usize) -> Self {
        install();
        for (i, r) in TABLE.iter().enumerate() {
            // Acquire/Release: the handler reads `end` and `poisoned` of a region it finds by
            // `start`; they are written before `start` is published.
            if r.start.load(Ordering::Relaxed) == 0 {
                r.end.store(start as usize + len, Ordering::Relaxed);
                r.poisoned.store(false, Ordering::Relaxed);
                if r.start
                    .compare_exchange(0, start as usize, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    return Self(Some(i));
                }
            }
        }
        Self(None)
    }

    /// Whether a fault in this mapping was turned into zeros (the segment was truncated).
    #[inline]
    pub fn poisoned(&self) -> bool {
        // Relaxed: the flag is set by this process's own handler, which ran on a thread that
        // touched the page; any later operation seeing it is what matters, not ordering.
        self.0
            .is_some_and(|i| TABLE[i].poisoned.load(Ordering::Relaxed))
    }

    /// Stops tracking (right before the mapping is unmapped).
    pub fn forget(&self) {
        if let Some(i) = self.0 {
            TABLE[i].start.store(0, Ordering::Release);
        }
    }
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: an all-zero sigaction is a valid value of this C struct; sigaction(2)
        // installs our handler and returns the previous action into PREVIOUS, which nothing
        // reads before INSTALLED is set (Release below, Acquire in the handler).
        unsafe {
            let mut ours: libc::sigaction = std::mem::zeroed();
            ours.sa_sigaction = on_sigbus as *const () as usize;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
            libc::sigemptyset(&mut ours.sa_mask);
            let previous = std::ptr::addr_of_mut!(PREVIOUS).cast::<libc::sigaction>();
            if libc::sigaction(libc::SIGBUS, &ours, previous) == 0 {
                INSTALLED.store(true, Ordering::Release);
            }
        }
    });
}

/// The SIGBUS handler: async-signal-safe (atomics and `mmap`/`sigaction` system calls only).
extern "C" fn on_sigbus(signum: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let (addr, code) = unsafe { ((*info).si_addr() as usize, (*info).si_code) };
    // si_code > 0: raised by the kernel for a fault (not by kill or raise).
    if code > 0 {
        for r in &TABLE {
            let start = r.start.load(Ordering::Acquire);
            if start != 0 && addr >= start && addr < r.end.load(Ordering::Relaxed) {
                let page = addr & !(page_size() - 1);
                // SAFETY: `page` is a page of one of our own live mappings (tracked between
                // `map` and `munmap`); replacing it with a private zero page keeps the address
                // range mapped, so every reference into it stays valid.
                let p = unsafe {
                    libc::mmap(
                        page as *mut libc::c_void,
                        page_size(),
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                        -1,
                        0,
                    )
                };
                if p != libc::MAP_FAILED {
                    r.poisoned.store(true, Ordering::Relaxed);
                    return; // the access is retried and reads zeros
                }
            }
        }
    }
    chain(signum, info, ctx);
}

/// Hands a SIGBUS that is not ours to the action installed before ours.
fn chain(signum: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if !INSTALLED.load(Ordering::Acquire) {
        return;
    }
    // SAFETY: PREVIOUS was written before INSTALLED was set and never again.
    let prev = unsafe {
        std::ptr::addr_of!(PREVIOUS)
            .cast::<libc::sigaction>()
            .read()
    };
    let handler = prev.sa_sigaction;
    if handler == libc::SIG_IGN {
        return;
    }
    if handler == libc::SIG_DFL {
        // Restore the default and return: the faulting access happens again and the kernel
        // applies the default action (a core dump) as if we had never been installed.
        // SAFETY: installs the default action for SIGBUS.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
        }
        if info.is_null() {
            return;
        }
        // A SIGBUS sent by kill/raise (not a fault) would not come back: re-raise it.
        // SAFETY: valid siginfo, as above.
        if unsafe { (*info).si_code } <= 0 {
            // SAFETY: raise is async-signal-safe.
            unsafe { libc::raise(signum) };
        }
        return;
    }
    // SAFETY: a handler installed by someone else, called with its own convention.
    unsafe {
        if prev.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(handler);
            f(signum, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            f(signum);
        }
    }
}

fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions. (Called once from `Tracked::new` before any
    // fault can reach the handler, so the handler only reads the cached value.)
    let p = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    PAGE.store(p, Ordering::Relaxed);
    p
}

/// Caches the page size outside the handler (see `page_size`).
pub fn warm_up() {
    let _ = page_size();
}
