//! Per-thread order of puts that run inside another put of the same handle.
//!
//! A put runs user code before its message is in the ring: the encoder (`__reduce__`, with
//! allocations that may start the garbage collector, whose finalizers and weakref callbacks
//! run right there), and signal handlers while it waits for room. A put made from that code
//! would commit its message before the interrupted one, although it was called after it
//! (`queue.SimpleQueue` guarantees this order, bpo-14976). So a put of a handle that this
//! thread is already putting to is deferred: it encodes its message, leaves it in the outer
//! put's frame (in call order) and returns; the outer put sends the deferred messages right
//! after its own. The inner put never waits, so it cannot deadlock; a deferred message that
//! cannot be sent then (the outer put's wait ended with the queue still full, or the queue
//! was shut down) is reported as an unraisable exception, as the inner put's own error would
//! have been from a finalizer.
//!
//! The usual put (one thread at a time on a handle) keeps no thread-local frame: it takes
//! the handle's [`Owner`] word with its thread's id, and a put of the same thread that
//! finds the word holding its own id is inside it and defers into the handle's list. A
//! thread-local lookup costs a call (`__tls_get_addr`) in an extension module, which showed
//! in the put path; a put made while another thread owns the word, and every put of that
//! thread inside it, take the thread-local path.

use crate::buffer::Payload;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Encoded messages of one deferred put: `(codec, bytes)`.
pub(crate) type Encoded = Vec<(u16, Py<PyBytes>)>;

/// A put in progress on this thread: the handle it puts to, and the puts deferred into it.
struct Frame {
    key: usize,
    /// One entry per deferred put, in call order; empty while that put still encodes (or if
    /// its encoding failed).
    deferred: Vec<Encoded>,
}

thread_local! {
    /// The puts in progress on this thread, innermost last (a put to another handle inside
    /// a put has a frame of its own above).
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// A handle's record of the put in progress on it that took the fast path.
#[derive(Default)]
pub(crate) struct Owner {
    /// The thread (its `PyThreadState` address) in that put, or 0.
    thread: AtomicUsize,
    /// Puts of this handle in progress on the thread-local path: while there are any, a put
    /// must look its thread's frames up to know whether it is inside one of them.
    slow: AtomicUsize,
    /// The puts deferred into the fast put (only its thread touches them), as in [`Frame`].
    deferred: Mutex<Vec<Encoded>>,
    any_deferred: AtomicBool,
}

impl Owner {
    /// After `fork()`, in the child: a put in progress in another thread of the parent is
    /// not in progress here (and its thread id may be reused by a new thread).
    pub(crate) fn reset_after_fork(&self) {
        self.thread.store(0, Ordering::Relaxed);
        self.slow.store(0, Ordering::Relaxed);
        if let Ok(mut d) = self.deferred.try_lock() {
            d.clear();
        }
        self.any_deferred.store(false, Ordering::Relaxed);
    }
}

/// This thread's id while it holds the GIL: its thread state's address.
fn thread_id(_py: Python<'_>) -> usize {
    // SAFETY: we hold the GIL (`_py`), so this thread has a current thread state.
    unsafe { pyo3::ffi::PyThreadState_Get() as usize }
}

/// Gives the fast path's word back when the put ends, however it ends.
struct Release<'a>(&'a Owner);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        // Release: the next owner (Acquire CAS) sees this put's effects on the handle.
        self.0.thread.store(0, Ordering::Release);
    }
}

/// Counts a put on the thread-local path while it runs, however it ends.
struct Slow<'a>(&'a Owner);

impl Drop for Slow<'_> {
    fn drop(&mut self) {
        self.0.slow.fetch_sub(1, Ordering::Release);
    }
}

/// Whether this thread is in no put of the handle `owner` belongs to. A put that runs no user
/// code (a raw payload: no encoder) and does not wait (no signal handler) can then go straight
/// in: no put of this thread is in progress for it to overtake.
pub(crate) fn outside_puts(py: Python<'_>, owner: &Owner) -> bool {
    // Relaxed: as in `in_order`, a load that sees this thread's id is this thread's store.
    // Acquire: as in `in_order` (a put of this thread on the thread-local path counted
    // itself in `slow` before running user code that may put again).
    owner.thread.load(Ordering::Relaxed) != thread_id(py) && owner.slow.load(Ordering::Acquire) == 0
}

/// A put to a handle, in this thread's order (see the module documentation): `owner` is the
/// handle's, `key` its identity in the thread-local frames. Same contract as
/// [`in_order_local`].
pub(crate) fn in_order(
    py: Python<'_>,
    owner: &Owner,
    key: usize,
    encode: impl FnOnce() -> PyResult<Encoded>,
    put: impl FnOnce() -> PyResult<()>,
    mut send: impl FnMut(Encoded) -> PyResult<()>,
) -> PyResult<()> {
    let me = thread_id(py);
    // Relaxed: only this thread stores its own id, so a load that sees it is ours.
    let holder = owner.thread.load(Ordering::Relaxed);
    if holder == me {
        return defer_into_owner(owner, encode);
    }
    // Acquire: pairs with `Slow`'s Release (a put of this thread on the thread-local path
    // counted itself before running user code that may put again).
    if holder == 0
        && owner.slow.load(Ordering::Acquire) == 0
        && owner
            .thread
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    {
        let _release = Release(owner);
        let r = put();
        // Then what was deferred meanwhile, in order, until nothing more is.
        while owner.any_deferred.swap(false, Ordering::Acquire) {
            let deferred =
                std::mem::take(&mut *owner.deferred.lock().unwrap_or_else(|p| p.into_inner()));
            send_deferred(py, deferred, &mut send);
        }
        return r;
    }
    owner.slow.fetch_add(1, Ordering::AcqRel);
    let _slow = Slow(owner);
    in_order_local(py, key, encode, put, send)
}

/// A put inside this thread's fast put of the same handle: takes its place in the handle's
/// list first (a put made while it encodes comes after it), then encodes into it.
fn defer_into_owner(owner: &Owner, encode: impl FnOnce() -> PyResult<Encoded>) -> PyResult<()> {
    let place = {
        let mut d = owner.deferred.lock().unwrap_or_else(|p| p.into_inner());
        d.push(Vec::new());
        d.len() - 1
    };
    // No lock held across user code: the encoder may put again.
    let encoded = encode()?;
    if let Some(slot) = owner
        .deferred
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(place)
    {
        *slot = encoded;
    }
    owner.any_deferred.store(true, Ordering::Release);
    Ok(())
}

/// Sends deferred puts as one batch; a failure is unraisable (see the module documentation).
fn send_deferred(
    py: Python<'_>,
    deferred: Vec<Encoded>,
    send: &mut impl FnMut(Encoded) -> PyResult<()>,
) {
    let batch: Encoded = deferred.into_iter().flatten().collect();
    if batch.is_empty() {
        return; // only puts whose encoding failed
    }
    if let Err(err) = send(batch) {
        let what = PyString::new(
            py,
            "a put made inside another put of the same thread (from a finalizer or a \
             signal handler), deferred to keep the thread's order",
        );
        err.write_unraisable(py, Some(what.as_any()));
    }
}

/// A put to the handle `key`, in this thread's order: if this thread is already putting to
/// `key` (we are inside that put's encoder or wait), the put is deferred: `encode` makes its
/// messages, which wait in the outer put's frame, and the call returns. Otherwise this is an
/// outer put: `put` encodes and sends, then `send` sends what was deferred into it meanwhile,
/// in order, until nothing more is (sending may run signal handlers that put again); the
/// result is `put`'s. One thread-local lookup per put.
fn in_order_local(
    py: Python<'_>,
    key: usize,
    encode: impl FnOnce() -> PyResult<Encoded>,
    put: impl FnOnce() -> PyResult<()>,
    mut send: impl FnMut(Encoded) -> PyResult<()>,
) -> PyResult<()> {
    FRAMES.with(|frames| {
        // No borrow is held across user code (the encoders, `put`, `send`): they may put.
        let place = {
            let mut frames = frames.borrow_mut();
            match frames.iter_mut().rev().find(|f| f.key == key) {
                Some(outer) => {
                    // Our place first, so that a put made while we encode comes after us.
                    outer.deferred.push(Vec::new());
                    Some(outer.deferred.len() - 1)
                }
                None => {
                    frames.push(Frame {
                        key,
                        deferred: Vec::new(),
                    });
                    None
                }
            }
        };
        if let Some(place) = place {
            let encoded = encode()?;
            let mut frames = frames.borrow_mut();
            if let Some(slot) = frames
                .iter_mut()
                .rev()
                .find(|f| f.key == key)
                .and_then(|f| f.deferred.get_mut(place))
            {
                *slot = encoded;
            }
            return Ok(());
        }
        let _popped = Popped(frames);
        let r = put();
        loop {
            // Ours is the top frame: the frames pushed above it were popped on their way out.
            // (Nothing deferred is the usual case: it costs one check.)
            let deferred = match frames.borrow_mut().last_mut() {
                Some(top) if !top.deferred.is_empty() => std::mem::take(&mut top.deferred),
                _ => break,
            };
            send_deferred(py, deferred, &mut send);
        }
        r
    })
}

/// Pops this thread's frame even when the put unwinds.
struct Popped<'a>(&'a RefCell<Vec<Frame>>);

impl Drop for Popped<'_> {
    fn drop(&mut self) {
        self.0.borrow_mut().pop();
    }
}

/// A payload as bytes the deferred put owns (a `bytes` as is, a buffer copied).
pub(crate) fn owned(py: Python<'_>, p: Payload<'_>) -> Py<PyBytes> {
    match p {
        Payload::Bytes(b) => b.unbind(),
        buffer => PyBytes::new(py, buffer.as_slice()).unbind(),
    }
}
