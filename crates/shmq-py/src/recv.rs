//! Taking messages off a queue or a subscription: one path for both handle types. Messages
//! are copied out while claimed; decoding (user code) happens after, in the caller.

use crate::attachment::{Attachment, Endpoint, Stopped};
use crate::buffer::{bytes_of_parts, large_bytes, Taken};
use crate::codec::{Codecs, RawMessage, Stash};
use crate::errors::{recv_error, Noun};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use shmq::{Received, RecvError, Wait, Waiter};

/// `get_many` stops before a message that would take a batch past this many payload bytes
/// (the first message always comes): holding many large `bytes` at once makes glibc's
/// allocator unmap and remap memory for every batch (measured: 1 MiB messages 10× slower).
const GET_MANY_MAX_BYTES: u64 = 1 << 20;
/// Room made at once for the messages of a `get_many` (more grow the vector as usual;
/// growing it message by message showed in profiles).
const BATCH_PREALLOC: usize = 1024;

/// What the binding receives from: `shmq::Queue` and `shmq::Subscriber`.
pub(crate) trait Receiver: Endpoint {
    fn name(&self) -> &str;
    fn recv_many_with<T>(
        &self,
        max: usize,
        max_bytes: u64,
        wait: Wait,
        waiter: &mut dyn Waiter,
        out: &mut Vec<T>,
        f: impl FnMut(Received<'_>) -> T,
    ) -> Result<usize, RecvError>;
    fn recv_with<T>(
        &self,
        wait: Wait,
        waiter: &mut dyn Waiter,
        f: impl FnMut(Received<'_>) -> T,
    ) -> Result<T, RecvError>;
}

macro_rules! receiver {
    ($t:ty) => {
        impl Receiver for $t {
            fn name(&self) -> &str {
                <$t>::name(self)
            }
            fn recv_many_with<T>(
                &self,
                max: usize,
                max_bytes: u64,
                wait: Wait,
                waiter: &mut dyn Waiter,
                out: &mut Vec<T>,
                f: impl FnMut(Received<'_>) -> T,
            ) -> Result<usize, RecvError> {
                <$t>::recv_many_with(self, max, max_bytes, wait, waiter, out, f)
            }
            fn recv_with<T>(
                &self,
                wait: Wait,
                waiter: &mut dyn Waiter,
                f: impl FnMut(Received<'_>) -> T,
            ) -> Result<T, RecvError> {
                <$t>::recv_with(self, wait, waiter, f)
            }
        }
    };
}
receiver!(shmq::Queue);
receiver!(shmq::Subscriber);

/// Takes up to `max` messages as raw bytes.
pub(crate) fn take<'py, T: Receiver>(
    att: &Attachment<T>,
    noun: Noun,
    py: Python<'py>,
    max: usize,
    wait: Wait,
) -> PyResult<Vec<RawMessage<'py>>> {
    let from = att.get(py)?;
    let mut taken = Vec::with_capacity(max.min(BATCH_PREALLOC));
    // A message in the ring becomes `bytes` while claimed. A large one is copied out of its
    // side segment after the claim (without the GIL if big): an empty `bytes` and its index
    // in `large` keep its place meanwhile. (An index, not a count: a lagging read may void
    // what it delivered, see `Handle::receive`, and deliver again.)
    let mut large = Vec::new();
    let mut failed = None; // a `bytes` that could not be allocated: raised after the claim
    let mut w = att.waiter(py);
    let r = from.recv_many_with(max, GET_MANY_MAX_BYTES, wait, &mut w, &mut taken, |m| {
        let codec = m.codec();
        match m.into_large() {
            Ok(l) => {
                large.push(l);
                (codec, PyBytes::new(py, b""), Some(large.len() - 1))
            }
            Err(m) => {
                let (a, b) = m.parts();
                let bytes = bytes_of_parts(py, a, b).unwrap_or_else(|e| {
                    failed.get_or_insert(e);
                    PyBytes::new(py, b"")
                });
                (codec, bytes, None)
            }
        }
    });
    let stopped = w.take_error();
    if let Some(e) = failed {
        return Err(e);
    }
    let raws = taken
        .into_iter()
        .map(|(codec, bytes, placeholder)| match placeholder {
            Some(i) => Ok((codec, large_bytes(py, &large[i])?)),
            None => Ok((codec, bytes)),
        })
        .collect::<PyResult<Vec<_>>>()?;
    match r {
        Ok(_) => Ok(raws),
        // Messages before a corrupted record are delivered; the next call raises.
        Err(RecvError::Corrupted(_)) if !raws.is_empty() => Ok(raws),
        Err(e) => Err(stopped.unwrap_or_else(|| recv_error(noun, from.name(), e))),
    }
}

/// Takes one message (no allocation for a small one but its `bytes`; a large one to decode
/// goes to the thread's scratch buffer, see [`Taken::of_one`]).
#[inline]
pub(crate) fn take_one<'py, T: Receiver>(
    att: &Attachment<T>,
    noun: Noun,
    codecs: &Codecs,
    py: Python<'py>,
    wait: Wait,
) -> PyResult<Taken<'py>> {
    let from = att.get(py)?;
    let mut w = att.waiter(py);
    from.recv_with(wait, &mut w, |m| {
        let scratch = codecs.decodes_from_buffer(m.codec());
        Taken::of_one(py, m, scratch)
    })
    .map_err(|e| {
        w.take_error()
            .unwrap_or_else(|| recv_error(noun, from.name(), e))
    })
}

/// `get`: the next object (the stash first), decoded once the message is no longer claimed.
#[inline]
pub(crate) fn get_decoded<'py, T: Receiver>(
    att: &Attachment<T>,
    noun: Noun,
    stash: &Stash,
    codecs: &Codecs,
    py: Python<'py>,
    wait: Wait,
) -> PyResult<Bound<'py, PyAny>> {
    if let Some(mut stashed) = stash.take(py, 1) {
        let (codec, raw) = stashed.remove(0);
        return codecs.decode(raw, codec);
    }
    let taken = take_one(att, noun, codecs, py, wait)?;
    codecs.decode_taken(py, taken)
}

/// `get_many`: 1 to `max` objects (the stash first), decoded once the messages are no longer
/// claimed; those after an undecodable one go to the stash.
pub(crate) fn get_many_decoded<'py, T: Receiver>(
    att: &Attachment<T>,
    noun: Noun,
    stash: &Stash,
    codecs: &Codecs,
    py: Python<'py>,
    max: usize,
    wait: Wait,
) -> PyResult<Bound<'py, PyList>> {
    let raws = match stash.take(py, max) {
        Some(stashed) => stashed,
        None => take(att, noun, py, max, wait)?,
    };
    PyList::new(py, codecs.decode_batch(raws, stash)?)
}
