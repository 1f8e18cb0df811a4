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

/// A put to the handle `key`, in this thread's order: if this thread is already putting to
/// `key` (we are inside that put's encoder or wait), the put is deferred: `encode` makes its
/// messages, which wait in the outer put's frame, and the call returns. Otherwise this is an
/// outer put: `put` encodes and sends, then `send` sends what was deferred into it meanwhile,
/// in order, until nothing more is (sending may run signal handlers that put again); the
/// result is `put`'s. One thread-local lookup per put: in an extension module each costs a
/// call (`__tls_get_addr`), which showed in the put path.
pub(crate) fn in_order(
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
            let batch: Encoded = deferred.into_iter().flatten().collect();
            if batch.is_empty() {
                continue; // only puts whose encoding failed
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
