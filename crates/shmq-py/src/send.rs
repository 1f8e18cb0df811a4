//! Putting encoded messages into a queue or a broadcast: one path for both handle types.

use crate::attachment::{Attachment, Endpoint, Stopped};
use crate::buffer::{Payload, COPY_WITHOUT_GIL};
use crate::codec::Codecs;
use crate::errors::{send_error, Noun};
use crate::order;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shmq::{Message, SendManyError, Wait, Waiter};
use std::sync::atomic::{AtomicU32, Ordering};

/// What the binding sends through: `shmq::Queue` and `shmq::Broadcast`.
pub(crate) trait Sender: Endpoint {
    fn send_many_with(
        &self,
        msgs: &[Message<'_>],
        wait: Wait,
        waiter: &mut dyn Waiter,
    ) -> Result<(), SendManyError>;
}

impl Sender for shmq::Queue {
    fn send_many_with(
        &self,
        msgs: &[Message<'_>],
        wait: Wait,
        waiter: &mut dyn Waiter,
    ) -> Result<(), SendManyError> {
        shmq::Queue::send_many_with(self, msgs, wait, waiter)
    }
}

impl Sender for shmq::Broadcast {
    fn send_many_with(
        &self,
        msgs: &[Message<'_>],
        wait: Wait,
        waiter: &mut dyn Waiter,
    ) -> Result<(), SendManyError> {
        shmq::Broadcast::send_many_with(self, msgs, wait, waiter)
    }
}

fn message<'a>((codec, p): &'a (u16, Payload<'_>)) -> Message<'a> {
    Message {
        codec: match p {
            Payload::Frame(_) => crate::frame::CODEC_PICKLE_OOB,
            _ => *codec,
        },
        flags: 0,
        payload: p.as_slice(),
    }
}

/// Sends `payloads` in order (at once when they fit in the ring together). Large payloads
/// are copied without the GIL.
pub(crate) fn send_payloads<T: Sender>(
    att: &Attachment<T>,
    noun: Noun,
    py: Python<'_>,
    payloads: &[(u16, Payload<'_>)],
    wait: Wait,
) -> PyResult<()> {
    send_counted(att, noun, py, payloads, wait).map_err(|(err, _)| err)
}

/// [`send_payloads`], with the number of payloads sent before an error.
fn send_counted<T: Sender>(
    att: &Attachment<T>,
    noun: Noun,
    py: Python<'_>,
    payloads: &[(u16, Payload<'_>)],
    wait: Wait,
) -> Result<(), (PyErr, usize)> {
    let to = att.get(py).map_err(|err| (err, 0))?;
    // One message (a put) goes without an allocation.
    let (one, many): ([Message<'_>; 1], Vec<Message<'_>>);
    let msgs: &[Message<'_>] = if let [single] = payloads {
        one = [message(single)];
        &one
    } else {
        many = payloads.iter().map(message).collect();
        &many
    };
    let bytes: usize = msgs.iter().map(|m| m.payload.len()).sum();
    let (r, stopped) = if bytes >= COPY_WITHOUT_GIL {
        let mut w = att.detached_waiter();
        let r = py.detach(|| to.send_many_with(msgs, wait, &mut w));
        (r, w.take_error())
    } else {
        let mut w = att.waiter(py);
        let r = to.send_many_with(msgs, wait, &mut w);
        (r, w.take_error())
    };
    r.map_err(|e| {
        let err = stopped.unwrap_or_else(|| send_error(noun, &att.name, e.error));
        if e.sent > 0 {
            let note = format!(
                "{} of the {} messages were put before this error",
                e.sent,
                msgs.len()
            );
            let _ = err.value(py).call_method1("add_note", (note,));
        }
        (err, e.sent)
    })
}

/// The key of a handle in this thread's puts in progress (see `order.rs`).
fn key_of<T: Sender>(att: &Attachment<T>) -> usize {
    att as *const Attachment<T> as usize
}

/// A payload as a deferred message: its codec (a frame's own) and bytes it owns.
fn deferred(py: Python<'_>, codec: u16, p: Payload<'_>) -> (u16, Py<pyo3::types::PyBytes>) {
    let codec = match p {
        Payload::Frame(_) => crate::frame::CODEC_PICKLE_OOB,
        _ => codec,
    };
    (codec, order::owned(py, p))
}

/// Deferred messages as payloads to send.
fn payloads_of<'py>(py: Python<'py>, batch: order::Encoded) -> Vec<(u16, Payload<'py>)> {
    batch
        .into_iter()
        .map(|(codec, b)| (codec, Payload::Bytes(b.into_bound(py))))
        .collect()
}

/// Payloads up to this size may take [`put_raw_now`]; larger ones are dominated by their copy
/// (and a broadcast writes them in place, see `put_in_place`).
const PUT_NOW_MAX: usize = crate::zerocopy::IN_PLACE_MIN;

/// Puts of a handle that go through the general path after [`put_raw_now`] found no room.
/// A ring full now is likely full for a while (its producers are ahead of its consumers),
/// and there a try that fails is a third attempt per put (the general path makes two), each
/// reading lines the consumers are writing: 1→1 64 B ran 0.89× the build before the fast
/// path in A/B runs with every put trying it (a miss then cost two attempts), 1.02× with
/// this; with a miss at one attempt, 6 alternated pairs gave medians of 5.8 M/s without the
/// back-off and 6.4 M/s with it.
const PUT_NOW_BACKOFF: u32 = 64;

/// A handle's state of [`put_raw_now`]: how many puts still skip it after a miss.
#[derive(Debug, Default)]
pub(crate) struct PutNow {
    skip: AtomicU32,
}

/// The usual put, tried before the general path of [`put_object`]: raw bytes sent at once if
/// there is room now and this thread is in no put of the handle (see
/// [`order::outside_puts`]). `false`: nothing was sent, and the general path sends the
/// payload (waiting as the call says) or reports why it cannot.
fn put_raw_now<T: Sender>(att: &Attachment<T>, py: Python<'_>, payload: &[u8]) -> bool {
    if payload.len() >= PUT_NOW_MAX || !order::outside_puts(py, &att.order) {
        return false;
    }
    // Relaxed: a hint; threads racing on it only skip a few puts more or fewer.
    let skip = att.put_now.skip.load(Ordering::Relaxed);
    if skip > 0 {
        att.put_now.skip.store(skip - 1, Ordering::Relaxed);
        return false;
    }
    let Ok(to) = att.get(py) else {
        return false;
    };
    let msg = Message {
        codec: crate::codec::CODEC_RAW,
        flags: 0,
        payload,
    };
    let sent = to
        .send_many_with(std::slice::from_ref(&msg), Wait::No, &mut att.waiter(py))
        .is_ok();
    if !sent {
        att.put_now.skip.store(PUT_NOW_BACKOFF, Ordering::Relaxed);
    }
    sent
}

/// Encodes `obj` and sends it, in this thread's order even when the encoder (or a signal
/// handler while it waits) puts to the same handle (see `order.rs`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn put_object<T: Sender + crate::zerocopy::Lends>(
    att: &Attachment<T>,
    noun: Noun,
    codecs: &Codecs,
    py: Python<'_>,
    obj: Bound<'_, PyAny>,
    codec: u16,
    wait: Wait,
) -> PyResult<()> {
    if codec == crate::codec::CODEC_RAW {
        if let Ok(bytes) = obj.cast::<PyBytes>() {
            if put_raw_now(att, py, bytes.as_bytes()) {
                return Ok(());
            }
        }
    }
    // The put may wait twice (for its message, then for messages its encoder deferred):
    // the timeout bounds both.
    let wait = wait.fixed();
    // `obj` goes to whichever of the two paths runs.
    let obj = std::cell::Cell::new(Some(obj));
    let take = || {
        obj.take()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("put: object taken twice"))
    };
    order::in_order(
        py,
        &att.order,
        key_of(att),
        || Ok(vec![deferred(py, codec, codecs.encode(take()?, codec)?)]),
        || match codecs.encode(take()?, codec)? {
            // An out-of-band pickle is laid out straight into the ring.
            Payload::Frame(frame) => crate::zerocopy::send_frame(att, noun, py, frame, wait),
            payload => {
                // A broadcast's large message goes in one piece (see `put_in_place`).
                if crate::zerocopy::put_in_place(att, noun, py, codec, payload.as_slice(), wait)? {
                    return Ok(());
                }
                send_payloads(att, noun, py, &[(codec, payload)], wait)
            }
        },
        |batch| send_payloads(att, noun, py, &payloads_of(py, batch), wait),
    )
}

/// The most payload slots a batch reserves from its length hint (a huge `len()` is no
/// reason to allocate before the first object is encoded).
const BATCH_HINT_MAX: usize = 4096;

/// Encodes every object of `objs` (all checked before anything is sent), then sends them,
/// in this thread's order as [`put_object`]. The exception of a failure has `sent`: how
/// many of the objects went in (in order), so that a retry of `objs[sent:]` puts each
/// exactly once.
pub(crate) fn send_objects<T: Sender>(
    att: &Attachment<T>,
    noun: Noun,
    codecs: &Codecs,
    py: Python<'_>,
    objs: Bound<'_, PyAny>,
    codec: u16,
    wait: Wait,
) -> PyResult<()> {
    let wait = wait.fixed(); // as in `put_object`
    let encode_all = || -> Result<Vec<(u16, Payload<'_>)>, PyErr> {
        // Sized up front when `objs` says its length (a list, a tuple): growing the vector
        // as it fills showed in profiles. A failed `len()` (a generator) only loses the hint.
        let mut payloads = Vec::with_capacity(objs.len().unwrap_or(0).min(BATCH_HINT_MAX));
        for obj in objs.try_iter()? {
            payloads.push((codec, codecs.encode(obj?, codec)?));
        }
        Ok(payloads)
    };
    let send = || {
        let payloads = encode_all().map_err(|err| (err, 0))?;
        send_counted(att, noun, py, &payloads, wait)
    };
    order::in_order(
        py,
        &att.order,
        key_of(att),
        || {
            let payloads = encode_all()?;
            Ok(payloads
                .into_iter()
                .map(|(codec, p)| deferred(py, codec, p))
                .collect())
        },
        || {
            send().map_err(|(err, sent)| {
                let _ = err.value(py).setattr("sent", sent);
                err
            })
        },
        |batch| send_payloads(att, noun, py, &payloads_of(py, batch), wait),
    )
}
