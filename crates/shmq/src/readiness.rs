//! Waiting without blocking a thread: what async runtimes (the Python `shmq.asyncio`) build
//! on. A waiter arms a ring's event (`Queue::arm`, the first half of SYNC W) and registers
//! the armed wait with a [`Readiness`], whose file descriptor (an eventfd) turns readable
//! once the event's futex word changed or the wait's poll interval passed; the runtime then
//! takes the tokens that are ready, disarms and tries again.
//!
//! One helper thread per process (started on the first registration) sleeps on the futex
//! words of every registered wait at once with `futex_waitv` (Linux 5.16), plus a private
//! word of its own that registrations bump. It never runs foreign code and holds no
//! interpreter lock. Notifiers are unchanged: an armed waiter counts in the event's
//! `waiters` like a sleeping thread, so they make their usual `FUTEX_WAKE`, and nothing at
//! all while nobody waits. See docs/protocol.md, "Asynchronous waiters".

use crate::os::{
    eventfd, eventfd_clear, eventfd_signal, futex_wait_private, futex_waitv, futex_wake_private,
    WaitvEnd, WaitvEntry, WAITV_MAX,
};
use crate::{Broadcast, Queue, Subscriber};
use shmq_core::{Armed, Interest};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// When more distinct words are awaited than one `futex_waitv` takes, the ones left out are
/// looked at this often (and on a kernel without `futex_waitv`, every word is).
const ROTATION: Duration = Duration::from_millis(1);

/// A ring handle whose events can be awaited (sealed: the crate's handle types).
pub trait Watch: Send + Sync + 'static + private::Sealed {
    /// Announces an asynchronous wait for `interest` (see [`shmq_core::Ring::arm`]): `None`
    /// when the condition holds now (try again), otherwise hand the result to
    /// [`Readiness::register`] and, once it is ready or given up, to [`Watch::disarm`].
    fn arm(&self, interest: Interest) -> Option<Armed>;
    /// Ends an asynchronous wait announced by [`Watch::arm`] (exactly once per `Some`).
    fn disarm(&self, interest: Interest, armed: Armed);
    /// The futex word the wait sleeps on.
    fn event_word(&self, interest: Interest) -> &AtomicU32;
    /// Spins as a blocking call does before it sleeps (about 50 µs): whether the condition
    /// of `interest` held meanwhile (see [`shmq_core::Ring::spin_until_ready`]).
    fn spin(&self, interest: Interest) -> bool;
}

mod private {
    pub trait Sealed {}
    impl Sealed for crate::Queue {}
    impl Sealed for crate::Broadcast {}
    impl Sealed for crate::Subscriber {}
}

macro_rules! watch {
    ($t:ty) => {
        impl Watch for $t {
            fn arm(&self, interest: Interest) -> Option<Armed> {
                self.h.ring().arm(interest)
            }
            fn disarm(&self, interest: Interest, armed: Armed) {
                self.h.ring().disarm(interest, armed)
            }
            fn event_word(&self, interest: Interest) -> &AtomicU32 {
                self.h.ring().event_word(interest)
            }
            fn spin(&self, interest: Interest) -> bool {
                self.h.ring().spin_until_ready(interest)
            }
        }
    };
}
watch!(Queue);
watch!(Broadcast);
watch!(Subscriber);

/// What one event loop waits on: an eventfd and the tokens that are ready.
struct Mailbox {
    fd: OwnedFd,
    ready: Mutex<Vec<u64>>,
}

/// A set of asynchronous waits with one file descriptor: readable when some are ready.
/// One per event loop; any number of waits on any rings.
pub struct Readiness {
    mailbox: Arc<Mailbox>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("fd", &self.mailbox.fd.as_raw_fd())
            .finish_non_exhaustive()
    }
}

impl Readiness {
    /// A new set, with its eventfd.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            mailbox: Arc::new(Mailbox {
                fd: eventfd()?,
                ready: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The descriptor to wait on for reading (an eventfd; never read it yourself: use
    /// [`Readiness::take_ready`]).
    pub fn fd(&self) -> RawFd {
        self.mailbox.fd.as_raw_fd()
    }

    /// Registers an armed wait on `target` under `token` (the caller's, unique in this
    /// set): the token turns ready once the event word no longer holds `armed.seq`, or after
    /// `armed.poll`. The registration keeps `target` attached until it is ready or cancelled.
    pub fn register(&self, token: u64, target: Arc<dyn Watch>, interest: Interest, armed: Armed) {
        let word: *const AtomicU32 = target.event_word(interest);
        let entry = Entry {
            mailbox: self.mailbox.clone(),
            token,
            word,
            seq: armed.seq,
            deadline: Instant::now() + armed.poll,
            _keep: target,
        };
        Reactor::get().add(entry);
    }

    /// Withdraws `token` (ready or not): its registration is dropped and it will not be
    /// among the tokens [`Readiness::take_ready`] returns.
    pub fn cancel(&self, token: u64) {
        let r = Reactor::get();
        let removed = {
            let mut t = r.lock();
            let before = t.len();
            // Dropped outside the lock: a registration may hold the last handle of a ring.
            let (gone, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut *t)
                .into_iter()
                .partition(|e| e.token == token && Arc::ptr_eq(&e.mailbox, &self.mailbox));
            *t = kept;
            (before != t.len()).then_some(gone)
        };
        if removed.is_some() {
            // The helper may be asleep on the word of a ring this releases: let it rebuild
            // its set so that it never waits on an address that may be unmapped.
            r.poke();
        }
        lock(&self.mailbox.ready).retain(|&t| t != token);
        drop(removed);
    }

    /// The tokens that turned ready since the last call (clears the descriptor first, so a
    /// token that turns ready meanwhile makes it readable again).
    pub fn take_ready(&self) -> Vec<u64> {
        eventfd_clear(&self.mailbox.fd);
        std::mem::take(&mut *lock(&self.mailbox.ready))
    }
}

/// One registered wait.
struct Entry {
    mailbox: Arc<Mailbox>,
    token: u64,
    /// The event word, in the mapping that `_keep` keeps alive.
    word: *const AtomicU32,
    seq: u32,
    deadline: Instant,
    _keep: Arc<dyn Watch>,
}

// SAFETY: `word` points into the segment mapping owned (kept mapped) by `_keep`, which is
// Send + Sync; the word itself is an atomic, safe to read from any thread.
unsafe impl Send for Entry {}

impl Entry {
    fn word(&self) -> &AtomicU32 {
        // SAFETY: `_keep` keeps the mapping holding the word alive as long as the entry.
        unsafe { &*self.word }
    }

    /// Whether the wait is over: the word changed (a notifier woke the event), or its poll
    /// interval passed. Relaxed: the waiter re-checks the ring itself after disarming.
    fn is_ready(&self, now: Instant) -> bool {
        self.word().load(Ordering::Relaxed) != self.seq || now >= self.deadline
    }
}

/// The process's helper thread and the registrations it waits on.
struct Reactor {
    pid: u32,
    table: Mutex<Vec<Entry>>,
    /// Bumped by every registration and cancellation: part of every wait set, so the helper
    /// rebuilds its set (a `futex_waitv` started with an older value returns at once).
    control: AtomicU32,
}

/// This process's reactor (a new one after `fork()`: the parent's thread is not in the
/// child, and its table may have been locked at the fork; it is leaked, never touched).
static CURRENT: AtomicPtr<Reactor> = AtomicPtr::new(std::ptr::null_mut());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reactor {
    fn get() -> &'static Reactor {
        let pid = std::process::id();
        let p = CURRENT.load(Ordering::Acquire);
        // SAFETY: a non-null pointer in CURRENT is a leaked (never freed) Reactor.
        if let Some(r) = unsafe { p.as_ref() } {
            if r.pid == pid {
                return r;
            }
        }
        let fresh: &'static Reactor = Box::leak(Box::new(Reactor {
            pid,
            table: Mutex::new(Vec::new()),
            control: AtomicU32::new(0),
        }));
        // AcqRel: publishes the new reactor; Acquire on failure to use the winner's.
        match CURRENT.compare_exchange(
            p,
            fresh as *const Reactor as *mut Reactor,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                std::thread::Builder::new()
                    .name("shmq-readiness".into())
                    .spawn(move || fresh.run())
                    .expect("spawn the shmq readiness thread");
                fresh
            }
            // Another thread installed one first (ours is leaked, a few bytes, once).
            // SAFETY: as above.
            Err(winner) => unsafe { &*winner },
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        lock(&self.table)
    }

    fn add(&self, e: Entry) {
        self.lock().push(e);
        self.poke();
    }

    /// Makes the helper rebuild its wait set.
    fn poke(&self) {
        // Release: orders the table change (also under its mutex) before the word the
        // helper re-reads before it next sleeps.
        self.control.fetch_add(1, Ordering::Release);
        futex_wake_private(&self.control);
    }

    /// The helper thread: fire what is ready, sleep on the rest, forever.
    fn run(&self) {
        let mut waitv_missing = false;
        let mut start = 0usize;
        loop {
            // Acquire: sees the registrations made before the bump (see `poke`).
            let control = self.control.load(Ordering::Acquire);
            let mut words = Vec::with_capacity(16);
            words.push(WaitvEntry::new(&self.control, control, false));
            let mut deadline: Option<Instant> = None;
            let mut partial = false;
            {
                let now = Instant::now();
                let mut t = self.lock();
                let mut fired: Vec<Entry> = Vec::new();
                let mut i = 0;
                while i < t.len() {
                    if t[i].is_ready(now) {
                        fired.push(t.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
                let n = t.len();
                for k in 0..n {
                    let e = &t[(start + k) % n];
                    deadline = Some(deadline.map_or(e.deadline, |d| d.min(e.deadline)));
                    // Several waits on one event armed at the same value share a word.
                    let w = WaitvEntry::new(e.word(), e.seq, true);
                    if words[1..].iter().any(|x| x.same(&w)) {
                        continue;
                    }
                    if words.len() == WAITV_MAX {
                        partial = true;
                        continue;
                    }
                    words.push(w);
                }
                start = start.wrapping_add(1);
                drop(t);
                deliver(fired);
            }
            if partial || waitv_missing {
                let rotation = Instant::now() + ROTATION;
                deadline = Some(deadline.map_or(rotation, |d| d.min(rotation)));
            }
            let rotate = |d: Option<Instant>| {
                let left = d.map_or(ROTATION, |d| d.saturating_duration_since(Instant::now()));
                futex_wait_private(&self.control, control, left.min(ROTATION));
            };
            if waitv_missing {
                rotate(deadline);
            } else {
                match futex_waitv(&words, deadline) {
                    WaitvEnd::Returned => {}
                    WaitvEnd::Unsupported => waitv_missing = true,
                    // It did not sleep: this round sleeps as the fallback does (never a spin).
                    WaitvEnd::Failed => rotate(deadline),
                }
            }
        }
    }
}

/// Hands fired waits to their mailboxes: a token into the list, and a signal on the
/// eventfd when the list was empty (the loop clears the fd before it empties the list).
fn deliver(fired: Vec<Entry>) {
    for e in &fired {
        let was_empty = {
            let mut ready = lock(&e.mailbox.ready);
            ready.push(e.token);
            ready.len() == 1
        };
        if was_empty {
            eventfd_signal(&e.mailbox.fd);
        }
    }
    // The registrations (and the ring handles they kept) go here, outside every lock.
    drop(fired);
}
