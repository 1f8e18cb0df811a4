//! `Queue.get(copy=False)`: a message held in the ring and lent to a `MessageView` and to the
//! buffers made from it (arrays rebuilt over it), released once it is superseded by the
//! handle's next read and no buffer of it is alive (the rules: `crate::zerocopy`'s module).

use crate::attachment::{Attachment, ForkCount, ForkStamp, Stopped};
use crate::buffer::{Lender, PyMessageView};
use crate::codec::{Codecs, CODEC_RAW};
use crate::errors::{recv_error, Noun};
use crate::frame::{self, CODEC_PICKLE_OOB};
use pyo3::prelude::*;
use shmq::zero_copy::{self as ext, Claim};
use shmq::{Hold, Wait};
use std::sync::{Arc, Mutex};

struct ClaimState {
    claim: Option<Claim>,
    exports: usize,
    superseded: bool,
}

/// A queue message held in the ring for `get(copy=False)`: lent to a `MessageView` (valid
/// until the handle's next read) and to every buffer made from it (arrays rebuilt over it):
/// the record is released once it is superseded and no buffer of it is alive, or when the
/// view itself goes (every buffer holds a reference to it).
pub(crate) struct LentClaim {
    q: Arc<shmq::Queue>,
    state: Mutex<ClaimState>,
    /// Only the process that lent it ends the claim (see [`ForkCount`]).
    lent: ForkStamp,
}

impl LentClaim {
    fn state(&self) -> std::sync::MutexGuard<'_, ClaimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the claim, in the process that made it (in a child it is just forgotten).
    fn end(&self, c: Claim) {
        if self.lent.ours() {
            ext::release(&self.q, c);
        }
    }

    fn release_if_unused(&self, st: &mut ClaimState) {
        if st.superseded && st.exports == 0 {
            if let Some(c) = st.claim.take() {
                self.end(c);
            }
        }
    }

    /// A later read (or close) of the handle: the view refuses from now on, and the record
    /// goes as soon as no buffer of it is alive.
    fn supersede(&self) {
        let mut st = self.state();
        st.superseded = true;
        self.release_if_unused(&mut st);
    }
}

impl Lender for LentClaim {
    fn still_lent(&self) -> bool {
        let st = self.state();
        !st.superseded && st.claim.is_some()
    }
    fn exported(&self) {
        self.state().exports += 1;
    }
    fn unexported(&self) {
        let mut st = self.state();
        st.exports = st.exports.saturating_sub(1);
        self.release_if_unused(&mut st);
    }
}

impl Drop for LentClaim {
    fn drop(&mut self) {
        if let Some(c) = self.state().claim.take() {
            self.end(c);
        }
    }
}

/// The message a queue handle lent last (superseded by its next read or close). Weak: a
/// message whose view and arrays are all gone is released at once (nothing can read it), so
/// a thread that drops its view can put again into a ring the message would fill.
#[derive(Default)]
pub(crate) struct Lending {
    last: Mutex<Option<std::sync::Weak<LentClaim>>>,
    any: std::sync::atomic::AtomicBool,
    /// Forks this handle went through: see [`ForkCount`].
    forks: ForkCount,
}

impl Lending {
    /// After `fork()`, in the child: the messages lent so far are the parent's (their views
    /// still read, but only the parent ends the claims), and none is the child's last.
    pub(crate) fn after_fork(&self) {
        self.forks.forked();
        if let Ok(mut last) = self.last.try_lock() {
            *last = None;
        }
        self.any.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Called by every read and by close(): the message lent before is superseded.
    #[inline]
    pub(crate) fn supersede(&self) {
        if self.any.load(std::sync::atomic::Ordering::Acquire) {
            self.supersede_slow();
        }
    }

    #[cold]
    fn supersede_slow(&self) {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.any.store(false, std::sync::atomic::Ordering::Release);
        if let Some(l) = last.and_then(|w| w.upgrade()) {
            l.supersede();
        }
    }

    fn lend(&self, l: &Arc<LentClaim>) {
        let prev = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(Arc::downgrade(l));
        self.any.store(true, std::sync::atomic::Ordering::Release);
        if let Some(p) = prev.and_then(|w| w.upgrade()) {
            p.supersede(); // another thread's copy=False read came in between
        }
    }
}

/// `Queue.get(copy=False)`: the next message held in the ring. A raw message comes as a
/// read-only `MessageView`, an out-of-band pickle as its object rebuilt over read-only views
/// of the ring; anything else (other codecs, a message that wraps around the ring's end, one
/// larger than the ring, or a handle that already lends 3 messages still in use) is copied
/// and decoded as by `get()`.
pub(crate) fn get_lent<'py>(
    att: &Attachment<shmq::Queue>,
    lending: &Lending,
    codecs: &Codecs,
    noun: Noun,
    py: Python<'py>,
    wait: Wait,
) -> PyResult<Bound<'py, PyAny>> {
    lending.supersede();
    let q = att.get(py)?;
    if !ext::hold_available(&q) {
        let taken = crate::recv::take_one(att, noun, codecs, py, wait)?;
        return codecs.decode_taken(py, taken);
    }
    let mut w = att.waiter(py);
    let hold = ext::hold(&q, wait, &mut w).map_err(|e| {
        w.take_error()
            .unwrap_or_else(|| recv_error(noun, &att.name, e))
    })?;
    let claim = match hold {
        Hold::Large(large) => {
            return codecs.decode(crate::buffer::large_bytes(py, &large)?, large.codec());
        }
        Hold::Ring(c) => c,
    };
    // SAFETY: just held; released below or by the lender, never while a view can read it.
    let (first, second) = unsafe { ext::held_parts(&q, &claim) };
    let in_place = second.is_empty()
        && (claim.codec == CODEC_RAW || (claim.codec == CODEC_PICKLE_OOB && codecs.allow_pickle));
    if !in_place {
        let bytes = crate::buffer::bytes_of_parts(py, first, second);
        let codec = claim.codec;
        ext::release(&q, claim);
        return codecs.decode(bytes?, codec);
    }
    let codec = claim.codec;
    let lender = Arc::new(LentClaim {
        q: q.to_arc(),
        state: Mutex::new(ClaimState {
            claim: Some(claim),
            exports: 0,
            superseded: false,
        }),
        lent: lending.forks.stamp(),
    });
    lending.lend(&lender);
    let view = Bound::new(py, PyMessageView::new(lender, first))?;
    if codec == CODEC_RAW {
        return Ok(view.into_any());
    }
    frame::loads(
        &crate::codec::pickle_loads(py)?,
        view.as_any(),
        first,
        false,
    )
}
