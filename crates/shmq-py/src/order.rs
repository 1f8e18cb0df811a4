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

use crate::buffer::Payload;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use std::cell::RefCell;

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

/// Whether this thread is inside a put to the handle `key` (then a put to it must defer).
pub(crate) fn in_progress(key: usize) -> bool {
    FRAMES.with_borrow(|frames| frames.iter().any(|f| f.key == key))
}

/// A deferred put: takes its place in the frame of `key` first (so that a put made while
/// this one encodes comes after it), then encodes with `encode`.
pub(crate) fn defer(key: usize, encode: impl FnOnce() -> PyResult<Encoded>) -> PyResult<()> {
    let place = FRAMES.with_borrow_mut(|frames| {
        let frame = frames.iter_mut().rev().find(|f| f.key == key)?;
        frame.deferred.push(Vec::new());
        Some(frame.deferred.len() - 1)
    });
    // Not in progress any more: nothing to defer to (the caller checked; cannot happen).
    let Some(place) = place else {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "a deferred put found no put in progress",
        ));
    };
    let encoded = encode()?;
    FRAMES.with_borrow_mut(|frames| {
        if let Some(frame) = frames.iter_mut().rev().find(|f| f.key == key) {
            if let Some(slot) = frame.deferred.get_mut(place) {
                *slot = encoded;
            }
        }
    });
    Ok(())
}

/// Pops this thread's frame even when the put unwinds.
struct Popped;

impl Drop for Popped {
    fn drop(&mut self) {
        FRAMES.with_borrow_mut(|frames| frames.pop());
    }
}

/// Runs an outer put to `key` (`put`: encode and send), then sends what was deferred into it
/// meanwhile with `send`, in order, until nothing more is deferred (sending may run signal
/// handlers that put again). Returns the outer put's result.
pub(crate) fn outer(
    py: Python<'_>,
    key: usize,
    put: impl FnOnce() -> PyResult<()>,
    mut send: impl FnMut(Encoded) -> PyResult<()>,
) -> PyResult<()> {
    FRAMES.with_borrow_mut(|frames| {
        frames.push(Frame {
            key,
            deferred: Vec::new(),
        })
    });
    let _popped = Popped;
    let r = put();
    loop {
        // Ours is the top frame: the frames pushed above it were popped on their way out.
        let batch: Encoded = FRAMES.with_borrow_mut(|frames| {
            frames
                .last_mut()
                .map(|f| std::mem::take(&mut f.deferred))
                .unwrap_or_default()
                .into_iter()
                .flatten()
                .collect()
        });
        if batch.is_empty() {
            break;
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
    r
}

/// A payload as bytes the deferred put owns (a `bytes` as is, a buffer copied).
pub(crate) fn owned(py: Python<'_>, p: Payload<'_>) -> Py<PyBytes> {
    match p {
        Payload::Bytes(b) => b.unbind(),
        buffer => PyBytes::new(py, buffer.as_slice()).unbind(),
    }
}
