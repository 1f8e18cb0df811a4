//! Putting encoded messages into a queue or a broadcast: one implementation for both handle
//! types (staging of messages larger than the ring, the blocking loop, batch chunking).

use super::{error, Attachment, Codecs, Endpoint, Payload, COPY_WITHOUT_GIL, SLICE};
use pyo3::prelude::*;
use shmq::{Message, Staged, TrySendError};
use std::time::{Duration, Instant};

/// What the binding sends through: `shmq::Queue` and `shmq::Broadcast`.
pub(crate) trait Sender: Endpoint {
    /// "queue" or "broadcast", for messages.
    const WHAT: &'static str;
    /// Said by `Full` when a blocking send gives up.
    const FULL: &'static str;
    fn name(&self) -> &str;
    fn capacity(&self) -> u64;
    /// Message bound (0 = none).
    fn maxsize(&self) -> u64;
    fn max_message_size(&self) -> u64;
    fn allows_large(&self) -> bool;
    fn stage_large(&self, msgs: &[Message<'_>]) -> Result<Staged, TrySendError>;
    fn try_send_many(&self, msgs: &[Message<'_>]) -> Result<(), TrySendError>;
    fn wait_for_space(
        &self,
        msgs: &[Message<'_>],
        deadline: Option<Instant>,
        slice: Option<Duration>,
    ) -> Result<bool, TrySendError>;
}

macro_rules! sender {
    ($t:ty, $what:literal, $full:literal, $maxsize:expr) => {
        impl Sender for $t {
            const WHAT: &'static str = $what;
            const FULL: &'static str = $full;
            fn name(&self) -> &str {
                <$t>::name(self)
            }
            fn capacity(&self) -> u64 {
                <$t>::capacity(self)
            }
            fn maxsize(&self) -> u64 {
                $maxsize(self)
            }
            fn max_message_size(&self) -> u64 {
                <$t>::max_message_size(self)
            }
            fn allows_large(&self) -> bool {
                <$t>::allows_large(self)
            }
            fn stage_large(&self, msgs: &[Message<'_>]) -> Result<Staged, TrySendError> {
                <$t>::stage_large(self, msgs)
            }
            fn try_send_many(&self, msgs: &[Message<'_>]) -> Result<(), TrySendError> {
                <$t>::try_send_many(self, msgs)
            }
            fn wait_for_space(
                &self,
                msgs: &[Message<'_>],
                deadline: Option<Instant>,
                slice: Option<Duration>,
            ) -> Result<bool, TrySendError> {
                <$t>::wait_for_space(self, msgs, deadline, slice)
            }
        }
    };
}
sender!(shmq::Queue, "queue", "queue is full", shmq::Queue::maxsize);
sender!(
    shmq::Broadcast,
    "broadcast",
    "broadcast is full: the slowest subscriber has not read the oldest messages",
    |_: &shmq::Broadcast| 0
);

/// The Python exception for a failed send.
pub(crate) fn send_error<T: Sender>(py: Python<'_>, to: &T, e: TrySendError) -> PyErr {
    let (what, name) = (T::WHAT, to.name());
    match e {
        TrySendError::TooLarge { size, max } => error(
            py,
            "MessageTooLargeError",
            format!(
                "message of {size} bytes can never fit in {what} {name:?} (at most {max} bytes; \
                 create it with a larger capacity, or pass allow_large=True)"
            ),
        ),
        TrySendError::Corrupted(w) => {
            error(py, "CorruptedQueueError", format!("{what} {name:?}: {w}"))
        }
        TrySendError::Full => error(py, "Full", T::FULL),
        e @ TrySendError::SideSegment => error(py, "ShmqError", format!("{what} {name:?}: {e}")),
    }
}

/// Sends `payloads` at once (all or nothing), waiting for room until `deadline`.
pub(crate) fn send_payloads<T: Sender>(
    att: &Attachment<T>,
    py: Python<'_>,
    payloads: &[(u16, Payload<'_>)],
    deadline: Option<Instant>,
) -> PyResult<()> {
    let to = att.get(py)?;
    let originals: Vec<Message<'_>> = payloads
        .iter()
        .map(|(codec, p)| Message {
            codec: *codec,
            flags: 0,
            payload: p.as_slice(),
        })
        .collect();
    let big = originals.iter().map(|m| m.payload.len()).sum::<usize>() >= COPY_WITHOUT_GIL;
    // Messages larger than the ring go to side segments once, before any waiting.
    let staged = if big {
        py.detach(|| to.stage_large(&originals))
    } else {
        to.stage_large(&originals)
    }
    .map_err(|e| send_error(py, &*to, e))?;
    let msgs = staged.messages(&originals);
    let attempt = || -> PyResult<Option<()>> {
        let r = if big {
            py.detach(|| to.try_send_many(&msgs))
        } else {
            to.try_send_many(&msgs)
        };
        match r {
            Ok(()) => Ok(Some(())),
            Err(TrySendError::Full) => Ok(None),
            Err(e) => Err(send_error(py, &*to, e)),
        }
    };
    let wait = |d| {
        to.wait_for_space(&msgs, d, Some(SLICE))
            .map_err(|e| Python::attach(|py| send_error(py, &*to, e)))
    };
    match att.blocking(py, deadline, attempt, wait)? {
        Some(()) => {
            staged.keep();
            Ok(())
        }
        None => Err(error(py, "Full", T::FULL)),
    }
}

/// Encodes every object of `objs` (all checked before anything is sent), then sends them in
/// order, in consecutive chunks that fit at once (within the ring and within `maxsize`).
pub(crate) fn send_objects<T: Sender>(
    att: &Attachment<T>,
    codecs: &Codecs,
    py: Python<'_>,
    objs: Bound<'_, PyAny>,
    codec: u16,
    deadline: Option<Instant>,
) -> PyResult<()> {
    let to = att.get(py)?;
    let max = to.max_message_size();
    let mut payloads = Vec::new();
    for obj in objs.try_iter()? {
        let p = codecs.encode(obj?, codec)?;
        let len = p.as_slice().len() as u64;
        if len > max && !to.allows_large() {
            return Err(send_error(
                py,
                &*to,
                TrySendError::TooLarge { size: len, max },
            ));
        }
        payloads.push((codec, p));
    }
    let (budget, most) = (to.capacity(), to.maxsize());
    let mut start = 0;
    while start < payloads.len() {
        let mut end = start;
        let mut bytes = 0u64;
        while end < payloads.len() && (most == 0 || ((end - start) as u64) < most) {
            let size = record_size(stored_len(payloads[end].1.as_slice().len(), max));
            if end > start && bytes + size > budget {
                break;
            }
            bytes += size;
            end += 1;
        }
        send_payloads(att, py, &payloads[start..end], deadline)?;
        start = end;
    }
    Ok(())
}

/// Bytes a payload of `len` takes in a ring whose largest message is `max`: a side-segment
/// descriptor when it is larger.
fn stored_len(len: usize, max: u64) -> usize {
    if len as u64 > max {
        shmq::SIDE_DESCRIPTOR_SIZE
    } else {
        len
    }
}

fn record_size(len: usize) -> u64 {
    (16 + len as u64).div_ceil(16) * 16
}
