//! The attachment behind a Python handle (re-attached lazily after `fork()`, closed once),
//! and the waiters that let blocking calls release the GIL and notice Ctrl-C or a `close()`
//! from another thread.

use crate::errors::{InvalidArgumentError, QueueClosedError};
use pyo3::prelude::*;
use shmq::{OpenError, Wait, Waiter};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long `close()` gives calls of the same handle blocked in other threads to notice and
/// let go of the attachment, so that the detach normally happens before `close()` returns.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// Poll interval of that wait.
const CLOSE_POLL: Duration = Duration::from_millis(1);

/// The forks a handle went through, counted in each child by its at-fork hook: a record a
/// handle lends (a queue claim, a subscription's hold) is stamped with it, and only the
/// process that lent it ends it. A child inherits the views (they still read) but ending
/// the parent's claim there would let producers overwrite the bytes under the parent's
/// view. (Not the pid: `getpid` is a system call per message.)
#[derive(Clone, Debug, Default)]
pub(crate) struct ForkCount(Arc<AtomicUsize>);

impl ForkCount {
    /// In the child, from the handle's at-fork hook.
    pub(crate) fn forked(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// A stamp of now, for a record lent now.
    pub(crate) fn stamp(&self) -> ForkStamp {
        ForkStamp {
            count: self.clone(),
            // Relaxed: bumped by this process's at-fork hook before any Python code runs.
            at: self.0.load(Ordering::Relaxed),
        }
    }
}

/// See [`ForkCount`].
#[derive(Debug)]
pub(crate) struct ForkStamp {
    count: ForkCount,
    at: usize,
}

impl ForkStamp {
    /// Whether this process lent the record (not a child that inherited it).
    pub(crate) fn ours(&self) -> bool {
        // Relaxed: as in `ForkCount::stamp`.
        self.count.0.load(Ordering::Relaxed) == self.at
    }
}

/// What a Python handle can be attached to: a queue, a broadcast publisher or subscriber.
pub(crate) trait Endpoint: Send + Sync + Sized + 'static {
    /// After `fork()`, in the child: an attachment of the child's own.
    fn reopen_in_child(&self) -> Result<Self, OpenError>;
    /// After `fork()`, in the child: drop the parent's attachment without detaching it.
    fn forget_in_child(self);
    /// Wake every blocked call (so that a `close()` from another thread is noticed).
    fn wake_all_waiters(&self);
    /// The ring's instance id.
    fn instance_id(&self) -> u64;
    /// Removes the ring's name (attached processes keep using it).
    fn unlink(&self) -> std::io::Result<()>;
    /// Keeps the ring for `grace` whatever its last process does meanwhile.
    fn keep_alive(&self, grace: Duration);
    /// A handle sent with `keep_alive` arrived.
    fn arrived(&self);
}

macro_rules! endpoint {
    ($t:ty) => {
        impl Endpoint for $t {
            fn reopen_in_child(&self) -> Result<Self, OpenError> {
                <$t>::reopen_in_child(self)
            }
            fn forget_in_child(self) {
                <$t>::forget_in_child(self)
            }
            fn wake_all_waiters(&self) {
                <$t>::wake_all_waiters(self)
            }
            fn instance_id(&self) -> u64 {
                <$t>::instance_id(self)
            }
            fn unlink(&self) -> std::io::Result<()> {
                <$t>::unlink(self)
            }
            fn keep_alive(&self, grace: Duration) {
                <$t>::keep_alive(self, grace)
            }
            fn arrived(&self) {
                <$t>::arrived(self)
            }
        }
    };
}
endpoint!(shmq::Queue);
endpoint!(shmq::Broadcast);
endpoint!(shmq::Subscriber);

/// This process's attachment, as seen by one Python handle.
enum State<T> {
    Attached(Arc<T>),
    /// Inherited across `fork()`: the parent's attachment. The child attaches on first use,
    /// so a child that never touches the queue never attaches (nor leaks it by dying).
    Inherited(Arc<T>),
    Closed,
}

/// The attachment behind a Python handle.
///
/// A call borrows the endpoint without the mutex: it counts itself in `users`, then loads
/// `live`, which points into the `Arc` of `State::Attached` while there is one. `shut` puts
/// that `Arc` in `orphan`, clears `live`, then looks at `users`: with none counted it drops
/// the orphan, otherwise the last call out (which sees `live` cleared) does. Both sides are
/// SeqCst (a write then a load on each side, Dekker's pattern): either the call sees `live`
/// cleared, or `shut` sees the call counted; a call that sees it cleared also sees the
/// orphan stored before. Two atomic read-modify-writes per call (enter, leave) where a
/// mutex and an `Arc` clone took four.
pub(crate) struct Attachment<T: Endpoint> {
    state: Mutex<State<T>>,
    /// `Arc::as_ptr` of `State::Attached`'s endpoint, or null (closed, inherited, or not
    /// yet re-attached after `fork()`: the calls then take the mutex).
    live: AtomicPtr<T>,
    /// Calls borrowing through `live` now.
    users: AtomicUsize,
    /// Bumped in a `fork()` child: a borrow made before the fork does not leave the
    /// child's count (which starts again at 0).
    forks: AtomicUsize,
    /// The endpoint `shut` took out (`Arc::into_raw`, or null), for the last call out to
    /// drop. An atomic, not a mutex: a mutex some thread held at `fork()` stays locked in the
    /// child.
    orphan: AtomicPtr<T>,
    closed: AtomicBool,
    pub(crate) name: String,
    /// What the handle is called in errors: "queue", "broadcast".
    what: &'static str,
    /// The ring's instance id: `unlink()` after `close()` removes this ring, not another
    /// made under the name since.
    instance: u64,
    /// The put in progress on this handle, for the order of puts made inside it.
    pub(crate) order: crate::order::Owner,
    /// See [`crate::send::PutNow`].
    pub(crate) put_now: crate::send::PutNow,
}

fn forget<T: Endpoint>(t: Arc<T>) {
    match Arc::try_unwrap(t) {
        Ok(t) => t.forget_in_child(),
        // Clones held by threads that do not exist in the child: never dropped.
        Err(arc) => std::mem::forget(arc),
    }
}

impl<T: Endpoint> Attachment<T> {
    pub(crate) fn new(t: T, name: String, what: &'static str) -> Self {
        let t = Arc::new(t);
        Self {
            instance: t.instance_id(),
            live: AtomicPtr::new(Arc::as_ptr(&t).cast_mut()),
            state: Mutex::new(State::Attached(t)),
            users: AtomicUsize::new(0),
            forks: AtomicUsize::new(0),
            orphan: AtomicPtr::new(std::ptr::null_mut()),
            closed: AtomicBool::new(false),
            name,
            what,
            order: Default::default(),
            put_now: Default::default(),
        }
    }

    /// Removes the ring's name: through this process's attachment if it has one, otherwise
    /// (closed, or inherited and never attached) by name, if the name is still this ring's.
    /// Either way twice is a no-op, so `close()` and `unlink()` work in either order.
    pub(crate) fn unlink(&self, py: Python<'_>) -> PyResult<()> {
        let attached = match &*self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Attached(t) => Some(t.clone()),
            _ => None,
        };
        match attached {
            Some(t) => py.detach(|| t.unlink()).map_err(crate::errors::os_error),
            None => py
                .detach(|| shmq::remove_if_nonce(&self.name, self.instance))
                .map(drop)
                .map_err(|e| crate::errors::open_error(&self.name, e)),
        }
    }

    /// A handle sent with `keep_alive` arrived in this process.
    pub(crate) fn arrived(&self) {
        if let State::Attached(t) = &*self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            t.arrived();
        }
    }

    /// Keeps the ring for `grace` seconds for a handle on its way to another process.
    pub(crate) fn keep_alive(&self, grace: f64) {
        let grace = Duration::from_secs_f64(grace.clamp(0.0, 1e9));
        if let State::Attached(t) | State::Inherited(t) =
            &*self.state.lock().unwrap_or_else(|p| p.into_inner())
        {
            t.keep_alive(grace);
        }
    }

    /// This process's attachment (made now if the handle was inherited across `fork()`),
    /// for the duration of a call.
    #[inline]
    pub(crate) fn get(&self, py: Python<'_>) -> PyResult<Attached<'_, T>> {
        // SeqCst: see the type's documentation (pairs with `shut`).
        let forks = self.forks.load(Ordering::Relaxed);
        self.users.fetch_add(1, Ordering::SeqCst);
        let live = self.live.load(Ordering::SeqCst);
        if !live.is_null() {
            return Ok(Attached(Borrow::Live {
                att: self,
                ptr: live,
                forks,
            }));
        }
        self.leave(forks);
        self.get_locked(py).map(|t| Attached(Borrow::Owned(t)))
    }

    /// A call that borrowed through `live` is done with it.
    #[inline]
    fn leave(&self, forks: usize) {
        // Relaxed: only this process's at-fork hook bumps `forks`, before any Python code
        // runs in the child (a borrow it made before is the parent's count).
        if self.forks.load(Ordering::Relaxed) != forks {
            return;
        }
        // SeqCst: see the type's documentation; the last call out after `shut` drops the
        // endpoint (nobody can borrow it any more: `live` is null for good).
        if self.users.fetch_sub(1, Ordering::SeqCst) == 1
            && self.live.load(Ordering::SeqCst).is_null()
        {
            self.drop_orphan();
        }
    }

    /// The orphan, taken once (whoever swaps it out drops it).
    fn take_orphan(&self) -> Option<Arc<T>> {
        // Acquire: pairs with the (SeqCst) store in `shut` that published the pointer. One
        // swap sees it; any other sees null.
        let p = self.orphan.swap(std::ptr::null_mut(), Ordering::Acquire);
        // SAFETY: a non-null `orphan` is an `Arc::into_raw` of `shut`'s, and the swap hands
        // it to exactly one caller.
        (!p.is_null()).then(|| unsafe { Arc::from_raw(p) })
    }

    fn drop_orphan(&self) {
        drop(self.take_orphan()); // detaches if it was the last reference
    }

    /// [`Attachment::get`] under the mutex: closed, or inherited across `fork()` (attached
    /// now).
    #[cold]
    fn get_locked(&self, py: Python<'_>) -> PyResult<Arc<T>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &*state {
            State::Attached(t) => Ok(t.clone()),
            State::Closed => Err(self.closed_error()),
            State::Inherited(old) => {
                let fresh = py
                    .detach(|| old.reopen_in_child())
                    .map_err(|e| crate::errors::open_error(&self.name, e))?;
                // The parent marked the handle in flight when it forked (the package's
                // at-fork hook, `_before_fork`): it has arrived.
                fresh.arrived();
                let fresh = Arc::new(fresh);
                // SeqCst: as the other accesses of `live` (under the mutex, so `shut` comes
                // before or after this whole block).
                self.live
                    .store(Arc::as_ptr(&fresh).cast_mut(), Ordering::SeqCst);
                if let State::Inherited(old) =
                    std::mem::replace(&mut *state, State::Attached(fresh.clone()))
                {
                    forget(old);
                }
                Ok(fresh)
            }
        }
    }

    fn closed_error(&self) -> PyErr {
        QueueClosedError::new_err(format!("{} {:?} is closed", self.what, self.name))
    }

    /// Runs `f` on this process's own attachment, if it has one (never attaches).
    pub(crate) fn if_attached(&self, f: impl FnOnce(&T)) {
        if let State::Attached(t) = &*self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            f(t);
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Detaches; idempotent. Calls of this handle blocked in other threads hold the
    /// attachment: they are woken, see `closed` and return, and the last one out detaches.
    pub(crate) fn shut(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::Release);
        let state = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let state = std::mem::replace(&mut *state, State::Closed);
            if let State::Attached(t) = &state {
                // In `orphan` before `live` is cleared: a call that then sees it cleared
                // (SeqCst store and load: they synchronise) finds it there if it is the last
                // one out. Under the state mutex, so that a re-attach after `fork()` cannot
                // publish a pointer after this.
                self.orphan
                    .store(Arc::into_raw(t.clone()).cast_mut(), Ordering::SeqCst);
                self.live.store(std::ptr::null_mut(), Ordering::SeqCst);
            }
            state
        };
        let t = match state {
            State::Attached(t) => t,
            // Never attached in this process: the parent's attachment is the parent's. But the
            // parent marked the handle in flight when it forked, and may have left meanwhile,
            // keeping the ring for us: hand it back by attaching and detaching as its last
            // process would (which removes it if nothing else keeps it).
            State::Inherited(t) => {
                py.detach(|| {
                    t.arrived();
                    drop(t.reopen_in_child());
                });
                return forget(t);
            }
            State::Closed => return,
        };
        let weak = Arc::downgrade(&t);
        t.wake_all_waiters();
        drop(t);
        // Calls borrowing it now leave it to the last of them; if there are none, it goes now.
        // (SeqCst: after the store of `live`; see the type's documentation.)
        if self.users.load(Ordering::SeqCst) == 0 {
            self.drop_orphan();
        }
        // Without the GIL, which the blocked calls need to return.
        py.detach(|| {
            let until = Instant::now() + CLOSE_GRACE;
            while weak.strong_count() > 0 && Instant::now() < until {
                std::thread::sleep(CLOSE_POLL);
            }
        });
    }

    /// In a child after `fork()`: the handle is the parent's attachment; the child attaches
    /// on first use.
    pub(crate) fn inherit_after_fork(&self) {
        self.order.reset_after_fork();
        // The parent's calls do not exist here: borrows start again (and a borrow this thread
        // made before the fork does not leave the new count, see `leave`).
        self.forks.fetch_add(1, Ordering::Relaxed);
        self.users.store(0, Ordering::Relaxed);
        self.live.store(std::ptr::null_mut(), Ordering::SeqCst);
        if let Some(t) = self.take_orphan() {
            forget(t); // the parent's attachment
        }
        // A mutex another thread held at fork time stays locked in the child: then leave it.
        if let Ok(mut state) = self.state.try_lock() {
            *state = match std::mem::replace(&mut *state, State::Closed) {
                State::Attached(t) | State::Inherited(t) => State::Inherited(t),
                State::Closed => State::Closed,
            };
        }
    }

    /// A waiter for a blocking call made with the GIL held: sleeps without it.
    pub(crate) fn waiter<'a, 'py>(&'a self, py: Python<'py>) -> GilWaiter<'a, 'py, T> {
        GilWaiter {
            py,
            att: self,
            err: None,
        }
    }

    /// A waiter for a blocking call made without the GIL (a large copy): takes it only to
    /// check for signals.
    pub(crate) fn detached_waiter(&self) -> FreeWaiter<'_, T> {
        FreeWaiter {
            att: self,
            err: None,
        }
    }

    /// Why a blocking call must stop: a pending signal handler raised, or the handle was
    /// closed by another thread meanwhile.
    fn stop_reason(&self, py: Python<'_>) -> Option<PyErr> {
        if let Err(e) = py.check_signals() {
            return Some(e);
        }
        self.is_closed().then(|| self.closed_error())
    }
}

impl<T: Endpoint> Drop for Attachment<T> {
    fn drop(&mut self) {
        // No call is in progress (they borrow the attachment): an orphan left is ours to drop.
        self.drop_orphan();
    }
}

/// The endpoint for the duration of a call (see [`Attachment::get`]).
pub(crate) struct Attached<'a, T: Endpoint>(Borrow<'a, T>);

enum Borrow<'a, T: Endpoint> {
    /// Counted in `att.users`, which keeps `ptr` alive (see [`Attachment`]).
    Live {
        att: &'a Attachment<T>,
        ptr: *const T,
        forks: usize,
    },
    Owned(Arc<T>),
}

// SAFETY: `Live` is a shared reference to a `T` (Send + Sync, see `Endpoint`) kept alive by
// the count, and the count may be left from any thread.
unsafe impl<T: Endpoint> Send for Attached<'_, T> {}
// SAFETY: as above: only shared access to `T`.
unsafe impl<T: Endpoint> Sync for Attached<'_, T> {}

impl<T: Endpoint> Attached<'_, T> {
    /// An `Arc` of the endpoint, for what outlives the call (a lent view, a reservation).
    pub(crate) fn to_arc(&self) -> Arc<T> {
        match &self.0 {
            Borrow::Live { ptr, .. } => {
                // SAFETY: `ptr` is `Arc::as_ptr` of an `Arc` that stays alive while this
                // borrow is counted (held by the state or, after `shut`, by `orphan`, dropped
                // only when the count is 0), so the strong count is at least 1 here.
                unsafe {
                    Arc::increment_strong_count(*ptr);
                    Arc::from_raw(*ptr)
                }
            }
            Borrow::Owned(t) => t.clone(),
        }
    }
}

impl<T: Endpoint> Deref for Attached<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        match &self.0 {
            // SAFETY: as in `to_arc`: alive while this borrow is counted.
            Borrow::Live { ptr, .. } => unsafe { &**ptr },
            Borrow::Owned(t) => t,
        }
    }
}

impl<T: Endpoint> Drop for Attached<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if let Borrow::Live { att, forks, .. } = &self.0 {
            att.leave(*forks);
        }
    }
}

/// What stopped a blocking call (see [`Attachment::waiter`]), to raise instead of the
/// call's own `Interrupted`.
pub(crate) trait Stopped {
    fn take_error(&mut self) -> Option<PyErr>;
}

pub(crate) struct GilWaiter<'a, 'py, T: Endpoint> {
    py: Python<'py>,
    att: &'a Attachment<T>,
    err: Option<PyErr>,
}

impl<T: Endpoint> Waiter for GilWaiter<'_, '_, T> {
    fn park(&mut self, sleep: &mut (dyn FnMut() -> bool + Send)) -> bool {
        self.py.detach(sleep)
    }
    fn interrupted(&mut self) -> bool {
        self.err = self.att.stop_reason(self.py);
        self.err.is_some()
    }
}

impl<T: Endpoint> Stopped for GilWaiter<'_, '_, T> {
    fn take_error(&mut self) -> Option<PyErr> {
        self.err.take()
    }
}

pub(crate) struct FreeWaiter<'a, T: Endpoint> {
    att: &'a Attachment<T>,
    err: Option<PyErr>,
}

impl<T: Endpoint> Waiter for FreeWaiter<'_, T> {
    fn interrupted(&mut self) -> bool {
        self.err = Python::attach(|py| self.att.stop_reason(py));
        self.err.is_some()
    }
}

impl<T: Endpoint> Stopped for FreeWaiter<'_, T> {
    fn take_error(&mut self) -> Option<PyErr> {
        self.err.take()
    }
}

/// `block`/`timeout` as the stdlib's queues take them.
#[inline]
pub(crate) fn wait_of(block: bool, timeout: Option<f64>) -> PyResult<Wait> {
    if !block {
        return Ok(Wait::No);
    }
    match timeout {
        None => Ok(Wait::Forever),
        Some(t) if t.is_nan() || t < 0.0 => Err(InvalidArgumentError::new_err(format!(
            "'timeout' must be a non-negative number of seconds or None (forever), got {t}"
        ))),
        // Beyond ~30 years is forever (and keeps `Duration` in range).
        Some(t) if t > 1e9 => Ok(Wait::Forever),
        // Nanoseconds by one multiplication (at most 1e18: within u64): `from_secs_f64`'s
        // exact conversion showed in the profile of a timed get (~50 instructions).
        Some(t) => Ok(Wait::timeout(Duration::from_nanos((t * 1e9) as u64))),
    }
}
