//! `_Subscriber`: the Python handle of a broadcast subscription (subclassed by
//! `shmq.Subscriber`), and the records it lends to `get(copy=False)` views.

use crate::access::Access;
use crate::args;
use crate::attachment::{wait_of, Attachment, ForkCount, ForkStamp, Stopped};
use crate::broadcast::{policy_name, subscriber_dict};
use crate::buffer::{large_bytes, Lender, PyMessageView};
use crate::codec::{Codecs, Stash, CODEC_PICKLE, CODEC_RAW};
use crate::errors::{
    open_error, recv_error, CorruptedQueueError, InvalidArgumentError, SUBSCRIPTION,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use shmq::ext::Lend;
use shmq::{Policy, Wait};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

#[derive(Default)]
struct LentState {
    /// Live buffers (memoryviews, arrays) of the view.
    exports: usize,
    /// A later read or close() began: the view refuses new buffers from now on, and the
    /// record goes once no buffer of it is alive.
    retired: bool,
    /// The hold ended (the record may be overwritten from now on).
    released: bool,
    /// close() came while buffers were alive: see [`Closing`].
    closing: Option<Arc<Closing>>,
}

/// A subscription closed while buffers of its views were alive: it ends when the last of
/// them is released (they keep their records, and the mapping, until then).
struct Closing {
    records_with_buffers: AtomicUsize,
}

/// Retired views whose records no buffer keeps: the next hold ends them all at once
/// (`ext::lend`); if the read returns before that hold, they are released here.
struct Retired<'a> {
    att: &'a Attachment<shmq::Subscriber>,
    pending: bool,
}

impl Retired<'_> {
    /// The hold about to be made releases every record held before.
    fn released_by_the_hold(mut self) {
        self.pending = false;
    }
}

impl Drop for Retired<'_> {
    fn drop(&mut self) {
        if self.pending {
            self.att.if_attached(shmq::ext::release_all);
        }
    }
}

/// A record lent to a `MessageView`: the subscription (kept mapped as long as the view or
/// any buffer of it lives) and the held record. A later read retires the view; the record
/// stays held while a buffer of it (a memoryview, an array rebuilt over it) is alive, so a
/// buffer never shows another message's bytes, and is released when the last one goes.
/// Reads go on behind held records (a subscription holds up to `HOLD_WINDOW`).
struct LentRecord {
    sub: Arc<shmq::Subscriber>,
    held: shmq::ext::Held,
    state: Mutex<LentState>,
    /// Only the process that lent it ends the hold (see [`ForkCount`]).
    lent: ForkStamp,
}

impl LentRecord {
    fn state(&self) -> MutexGuard<'_, LentState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release(&self, st: &mut LentState) {
        if !std::mem::replace(&mut st.released, true) && self.lent.ours() {
            shmq::ext::release(&self.sub, &self.held);
        }
    }

    /// A later read of the subscription (called with the GIL, as the buffer hooks are):
    /// no new buffer from now on; the record goes now unless a buffer of it is alive.
    /// Returns whether it is still held.
    fn retire(&self) -> bool {
        let mut st = self.state();
        st.retired = true;
        if st.exports == 0 {
            self.release(&mut st);
        }
        !st.released
    }
}

impl Lender for LentRecord {
    fn still_lent(&self) -> bool {
        let st = self.state();
        !st.retired && !st.released
    }
    // Both hooks run with the GIL, as does every retirement: no buffer is made between a
    // read's retirement of a view and its reading on.
    fn exported(&self) {
        self.state().exports += 1;
    }
    fn unexported(&self) {
        let mut st = self.state();
        st.exports = st.exports.saturating_sub(1);
        if st.exports > 0 || !st.retired {
            return;
        }
        self.release(&mut st);
        if let Some(closing) = st.closing.take() {
            drop(st);
            if closing.records_with_buffers.fetch_sub(1, Ordering::AcqRel) == 1 && self.lent.ours()
            {
                self.sub.unsubscribe(); // the deferred end of a closed subscription
            }
        }
    }
}

/// The reading side of a broadcast.
#[pyclass(module = "shmq._shmq", subclass, frozen, name = "_Subscriber")]
pub(crate) struct PySubscriber {
    att: Attachment<shmq::Subscriber>,
    access: Access,
    stash: Stash,
    codecs: Codecs,
    /// The records lent by `get(copy=False)` that may still be held, with their views' lenders
    /// (weak: a record whose view is gone with all its buffers is released by the next read,
    /// as before the window: a subscription keeps its last message until it reads on).
    lent: Mutex<Vec<(Weak<LentRecord>, shmq::ext::Held)>>,
    /// Forks this handle went through: see [`ForkCount`].
    forks: ForkCount,
}

impl PySubscriber {
    /// Called (with the GIL) before every read: the views lent before are retired; their
    /// records go, except those a live buffer still shows, which stay held (reads go on
    /// behind them).
    ///
    /// `lending`: the read is a `get(copy=False)`. When no buffer keeps any record, they are
    /// handed back as [`Retired`] instead: the hold that read makes next ends them all at
    /// once, in the same read turn (`ext::lend`, as before the window).
    fn retire_lent(&self, lending: bool) -> Option<Retired<'_>> {
        let mut lent = self.lent.lock().unwrap_or_else(|p| p.into_inner());
        if lending
            && !lent.is_empty()
            && lent
                .iter()
                .all(|(w, _)| w.upgrade().is_none_or(|rec| rec.state().exports == 0))
        {
            for (w, _) in lent.iter() {
                if let Some(rec) = w.upgrade() {
                    let mut st = rec.state();
                    st.retired = true;
                    st.released = true; // by `Retired`, before anyone can look
                }
            }
            lent.clear();
            return Some(Retired {
                att: &self.att,
                pending: true,
            });
        }
        lent.retain(|(w, held)| match w.upgrade() {
            Some(rec) => rec.retire(),
            None => {
                // Nothing can read it any more (a release of a released record does nothing).
                self.att.if_attached(|sub| shmq::ext::release(sub, held));
                false
            }
        });
        None
    }

    fn remember(&self, rec: &Arc<LentRecord>) {
        self.lent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Arc::downgrade(rec), rec.held));
    }

    /// The next message lent in place (block policy): a `MessageView` for a raw message in
    /// one piece, an out-of-band pickle's object rebuilt over read-only views of it;
    /// anything else is copied (and decoded after the record is released), as is the next
    /// message when `HOLD_WINDOW` records are held by live buffers already.
    fn lend<'py>(
        &self,
        py: Python<'py>,
        wait: Wait,
        retired: Option<Retired<'_>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let sub = self.att.get(py)?;
        let mut w = self.att.waiter(py);
        let lend = match retired {
            Some(retired) => {
                retired.released_by_the_hold();
                shmq::ext::lend(&sub, wait, &mut w).map(Some)
            }
            None => shmq::ext::lend_more(&sub, wait, &mut w),
        };
        let lend = lend.map_err(|e| {
            w.take_error()
                .unwrap_or_else(|| recv_error(SUBSCRIPTION, sub.name(), e))
        })?;
        let Some(lend) = lend else {
            let taken = crate::recv::take_one(&self.att, SUBSCRIPTION, &self.codecs, py, wait)?;
            return self.codecs.decode_taken(py, taken);
        };
        let (codec, raw) = match lend {
            Lend::Large(large) => (large.codec(), large_bytes(py, &large)?),
            Lend::Ring(held) => {
                // SAFETY: `held` was just lent and is released only by its `LentRecord` (once
                // no buffer of the view is alive) or below, after the copy.
                let (first, second) = unsafe { shmq::ext::lent_parts(&sub, &held) };
                let oob = held.codec == crate::frame::CODEC_PICKLE_OOB && self.codecs.allow_pickle;
                if second.is_empty() && (held.codec == CODEC_RAW || oob) {
                    let lender = Arc::new(LentRecord {
                        sub: sub.to_arc(),
                        held,
                        state: Mutex::default(),
                        lent: self.forks.stamp(),
                    });
                    self.remember(&lender);
                    let view = Bound::new(py, PyMessageView::new(lender, first))?;
                    if held.codec == CODEC_RAW {
                        return Ok(view.into_any());
                    }
                    // The arrays are buffers of the view: they keep the record held.
                    return crate::frame::loads(
                        &crate::codec::pickle_loads(py)?,
                        view.as_any(),
                        first,
                        false,
                    );
                }
                if held.codec == crate::frame::CODEC_PICKLE_OOB {
                    let buf = crate::zerocopy::copy_of(py, first, second);
                    shmq::ext::release(&sub, &held);
                    return crate::zerocopy::loads_copied(&self.codecs, buf?);
                }
                let bytes = crate::buffer::bytes_of_parts(py, first, second);
                shmq::ext::release(&sub, &held);
                (held.codec, bytes?)
            }
        };
        self.codecs.decode(raw, codec)
    }
}

handle_methods!(PySubscriber);

#[pymethods]
impl PySubscriber {
    #[new]
    #[pyo3(signature = (name, *, allow_pickle=true, mode=0o600, trusted_owners=None,
                        trust_any_owner=false))]
    fn new(
        py: Python<'_>,
        name: String,
        allow_pickle: bool,
        mode: u32,
        trusted_owners: Option<Vec<u32>>,
        trust_any_owner: bool,
    ) -> PyResult<Self> {
        let access = Access::new(mode, trusted_owners, trust_any_owner);
        let b = access.apply(shmq::Broadcast::builder(&name));
        let sub = py
            .detach(|| shmq::Subscriber::open_with(b))
            .map_err(|e| open_error(&name, e))?;
        Ok(Self {
            att: Attachment::new(sub, name, SUBSCRIPTION.what),
            access,
            stash: Stash::default(),
            codecs: Codecs {
                codec: CODEC_PICKLE,
                allow_pickle,
            },
            lent: Mutex::default(),
            forks: ForkCount::default(),
        })
    }

    /// Returns the next message, waiting if `block` (at most `timeout` seconds if given).
    /// With `copy=False` (block policy), a raw message comes as a read-only `MessageView` over
    /// the shared memory, valid until the next read of this subscription or its close().
    /// A memoryview or array of a view keeps its message held until it is released (at
    /// most `HOLD_WINDOW` per subscription: then `copy=False` copies).
    #[pyo3(signature = (block=true, timeout=None, *, copy=true))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::truthy)] block: bool,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
        copy: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let wait = wait_of(block, timeout)?;
        let retired = self.retire_lent(!copy);
        if !copy && !self.stash.has_any() {
            if self.att.get(py)?.policy() == Policy::Lag {
                return Err(InvalidArgumentError::new_err(
                    "copy=False needs a broadcast with policy='block' (with 'lag' publishers \
                     may overwrite a message while it is being read)",
                ));
            }
            return self.lend(py, wait, retired);
        }
        crate::recv::get_decoded(&self.att, SUBSCRIPTION, &self.stash, &self.codecs, py, wait)
    }

    /// Returns the next message without waiting; raises `Empty` if there is none.
    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, false, None, true)
    }

    /// Returns 1 to `max_messages` messages, waiting for the first if `block`.
    #[pyo3(signature = (max_messages=1000, block=true, timeout=None))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::max_messages)] max_messages: usize,
        #[pyo3(from_py_with = args::truthy)] block: bool,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let wait = wait_of(block, timeout)?;
        self.retire_lent(false);
        crate::recv::get_many_decoded(
            &self.att,
            SUBSCRIPTION,
            &self.stash,
            &self.codecs,
            py,
            max_messages,
            wait,
        )
    }

    /// Unsubscribes and detaches (under live buffers of `MessageView`s, the subscription
    /// ends when the last one is released).
    fn close(&self, py: Python<'_>) {
        // A lent MessageView keeps the attachment (and its mapping) alive. The subscription
        // ends here (releasing the held records, so publishers stop waiting for them), or,
        // while buffers of views are alive, when the last one is released: they keep their
        // bytes.
        let lent: Vec<Arc<LentRecord>> =
            std::mem::take(&mut *self.lent.lock().unwrap_or_else(|p| p.into_inner()))
                .iter()
                .filter_map(|(w, _)| w.upgrade())
                .collect();
        let closing = Arc::new(Closing {
            records_with_buffers: AtomicUsize::new(0),
        });
        for rec in &lent {
            let mut st = rec.state();
            st.retired = true;
            if st.exports > 0 && !st.released {
                closing.records_with_buffers.fetch_add(1, Ordering::AcqRel);
                st.closing = Some(closing.clone());
            }
        }
        if closing.records_with_buffers.load(Ordering::Acquire) == 0 {
            self.att.if_attached(|sub| sub.unsubscribe());
        }
        self.att.shut(py);
    }

    /// `"lag"` or `"block"`.
    #[getter]
    fn policy(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(policy_name(self.att.get(py)?.policy()))
    }

    /// This subscription's position and lag, as a dict.
    fn _info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let sub = self.att.get(py)?;
        match py.detach(|| sub.info()) {
            Some(info) => subscriber_dict(py, &info),
            None => Err(CorruptedQueueError::new_err(format!(
                "broadcast {:?}: this subscription was cancelled",
                sub.name()
            ))),
        }
    }

    fn _reattach_after_fork(&self) {
        self.forks.forked();
        self.att.inherit_after_fork();
        self.stash.clear_after_fork();
    }
}
