//! `_Publisher` and `_Subscriber`: the Python handles of a broadcast ring (subclassed by
//! `shmq.Broadcast` and `shmq.Subscriber`).

use super::send::{send_objects, send_payloads};
use super::{
    deadline_of, error, open_error, to_bytes, Attachment, Codecs, Decoded, RawMessage, Stash, SLICE,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use shmq::{Delivery, Held, TryReadError};
use std::os::raw::c_int;
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn read_error(py: Python<'_>, name: &str, e: TryReadError) -> PyErr {
    match e {
        TryReadError::Lagged { missed } => {
            let make = || -> PyResult<PyErr> {
                let cls = py.import("shmq._errors")?.getattr("Lagged")?;
                Ok(PyErr::from_value(cls.call1((missed,))?))
            };
            make().unwrap_or_else(|e| e)
        }
        TryReadError::NotSubscribed => error(
            py,
            "CorruptedQueueError",
            format!("broadcast {name:?}: this subscription was cancelled"),
        ),
        TryReadError::Corrupted(w) => error(
            py,
            "CorruptedQueueError",
            format!("broadcast {name:?}: {w}"),
        ),
        TryReadError::Empty => error(py, "Empty", "no message"),
    }
}

/// The publishing side of a broadcast (subclassed by `shmq.Broadcast`).
#[pyclass(module = "shmq._shmq", subclass, frozen, name = "_Publisher")]
pub(crate) struct PyPublisher {
    att: Attachment<shmq::Broadcast>,
    codecs: Codecs,
}

#[pymethods]
impl PyPublisher {
    #[new]
    #[pyo3(signature = (name, *, capacity, create=None, mode=0o600, codec=1, allow_pickle=true,
                        persistent=false, max_processes=128, lag=false, allow_large=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: String,
        capacity: u64,
        create: Option<bool>,
        mode: u32,
        codec: u32,
        allow_pickle: bool,
        persistent: bool,
        max_processes: u32,
        lag: bool,
        allow_large: bool,
    ) -> PyResult<Self> {
        let codec = u16::try_from(codec)
            .map_err(|_| PyValueError::new_err(format!("codec id {codec} is out of range")))?;
        let b = shmq::Broadcast::builder(&name)
            .capacity(capacity)
            .mode(mode)
            .persistent(persistent)
            .max_processes(max_processes)
            .lag(lag)
            .allow_large(allow_large);
        let publisher = py
            .detach(|| match create {
                Some(true) => b.create(),
                Some(false) => b.open(),
                None => b.open_or_create(),
            })
            .map_err(|e| open_error(py, e))?;
        Ok(Self {
            att: Attachment::new(publisher, name, "broadcast"),
            codecs: Codecs {
                codec,
                allow_pickle,
            },
        })
    }

    /// Publishes `obj` to every subscriber.
    #[pyo3(signature = (obj, block=true, timeout=None, *, codec=None))]
    fn publish(
        &self,
        py: Python<'_>,
        obj: Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
        codec: Option<i64>,
    ) -> PyResult<()> {
        let deadline = deadline_of(block, timeout)?;
        let codec = self.codecs.resolve_codec(codec)?;
        let payload = self.codecs.encode(obj, codec)?;
        send_payloads(&self.att, py, &[(codec, payload)], deadline)
    }

    /// Publishes every object of `objs`, in order (at once when the batch fits the ring).
    #[pyo3(signature = (objs, block=true, timeout=None, *, codec=None))]
    fn publish_many(
        &self,
        py: Python<'_>,
        objs: Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
        codec: Option<i64>,
    ) -> PyResult<()> {
        let deadline = deadline_of(block, timeout)?;
        let codec = self.codecs.resolve_codec(codec)?;
        send_objects(&self.att, &self.codecs, py, objs, codec, deadline)
    }

    /// Detaches; the last process to detach removes a non-persistent broadcast.
    fn close(&self, py: Python<'_>) {
        self.att.shut(py);
    }

    /// Removes the name now; attached processes keep using the ring.
    fn unlink(&self, py: Python<'_>) -> PyResult<()> {
        self.att
            .get(py)?
            .unlink()
            .map_err(|e| PyErr::new::<pyo3::exceptions::PyOSError, _>(e.to_string()))
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.att.is_closed()
    }

    /// The broadcast's full name.
    #[getter]
    fn name(&self) -> &str {
        &self.att.name
    }

    /// Default codec id of `publish`.
    #[getter]
    fn codec_id(&self) -> u16 {
        self.codecs.codec
    }

    /// Whether pickle is allowed.
    #[getter]
    fn allow_pickle(&self) -> bool {
        self.codecs.allow_pickle
    }

    /// Ring size in bytes.
    #[getter]
    fn capacity(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.att.get(py)?.capacity())
    }

    /// Largest encoded message.
    #[getter]
    fn max_message_size(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.att.get(py)?.max_message_size())
    }

    /// `"lag"` or `"block"`.
    #[getter]
    fn policy(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(if self.att.get(py)?.is_lag() {
            "lag"
        } else {
            "block"
        })
    }

    /// Whether the segment outlives its last process.
    #[getter]
    fn persistent(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.att.get(py)?.is_persistent())
    }

    /// Whether this handle publishes messages larger than the ring through side segments.
    #[getter]
    fn allow_large(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.att.get(py)?.allows_large())
    }

    /// Counters as a dict, with a list of subscriber dicts.
    fn _stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let b = self.att.get(py)?;
        let s = b.stats();
        let d = PyDict::new(py);
        d.set_item("capacity", s.capacity)?;
        d.set_item("bytes_used", s.bytes_used)?;
        d.set_item("retained", s.depth)?;
        d.set_item("published", s.puts)?;
        d.set_item("delivered", s.gets)?;
        d.set_item("waits", s.waits)?;
        d.set_item("attached", s.attached)?;
        d.set_item("abandoned", s.abandoned)?;
        d.set_item("reaped", s.reaped)?;
        d.set_item("tail", s.tail)?;
        let subs = PyList::empty(py);
        for info in py.detach(|| b.subscribers()) {
            subs.append(subscriber_dict(py, &info)?)?;
        }
        d.set_item("subscribers", subs)?;
        Ok(d)
    }

    fn _reattach_after_fork(&self) {
        self.att.inherit_after_fork();
    }
}

fn subscriber_dict<'py>(py: Python<'py>, s: &shmq::SubscriberInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("pid", s.pid)?;
    d.set_item("position", s.position)?;
    d.set_item("lag_messages", s.lag_messages)?;
    d.set_item("lag_bytes", s.lag_bytes)?;
    d.set_item("missed_pending", s.missed_pending)?;
    Ok(d)
}

/// A message read in place from a broadcast ring (`Subscriber.get(copy=False)`): a
/// read-only buffer over the shared memory, valid until the subscription's next read or close() (the
/// subscription holds the record until then, so publishers cannot overwrite it).
#[pyclass(module = "shmq._shmq", frozen, name = "MessageView")]
pub(crate) struct PyMessageView {
    /// Keeps the mapping alive as long as any buffer of this view exists.
    _keep: Arc<dyn std::any::Any + Send + Sync>,
    ptr: usize,
    len: usize,
}

impl PyMessageView {
    /// A view of `data`, which lies in the mapping `keep` holds.
    pub(crate) fn new(keep: Arc<dyn std::any::Any + Send + Sync>, data: &[u8]) -> Self {
        Self {
            _keep: keep,
            ptr: data.as_ptr() as usize,
            len: data.len(),
        }
    }
}

#[pymethods]
impl PyMessageView {
    /// # Safety
    ///
    /// Called by CPython with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if flags & pyo3::ffi::PyBUF_WRITABLE != 0 {
            return Err(pyo3::exceptions::PyBufferError::new_err(
                "a MessageView is read-only",
            ));
        }
        let (ptr, len) = {
            let v = slf.get();
            (v.ptr, v.len)
        };
        // SAFETY: `ptr..ptr + len` lies in the ring mapping, which `_sub` keeps mapped for as
        // long as this object lives; PyBuffer_FillInfo takes a reference to `slf`, so the
        // object outlives the buffer. Read-only.
        let r = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                ptr as *mut std::ffi::c_void,
                len as pyo3::ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if r == -1 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    fn __len__(&self) -> usize {
        self.len
    }

    /// A copy of the bytes.
    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyBytes> {
        // SAFETY: see `__getbuffer__`.
        let data = unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) };
        pyo3::types::PyBytes::new(py, data)
    }

    fn __repr__(&self) -> String {
        format!("<shmq.MessageView of {} bytes>", self.len)
    }
}

/// The reading side of a broadcast (subclassed by `shmq.Subscriber`).
#[pyclass(module = "shmq._shmq", subclass, frozen, name = "_Subscriber")]
pub(crate) struct PySubscriber {
    att: Attachment<shmq::Subscriber>,
    /// A subscription has one position: reads of several threads take turns.
    reading: std::sync::Mutex<()>,
    /// The record lent to the last `get(copy=False)`, released by the next read.
    held: Mutex<Option<(Arc<shmq::Subscriber>, Held)>>,
    stash: Stash,
    codecs: Codecs,
}

impl PySubscriber {
    /// Gives back the record lent to the previous `get(copy=False)`, if any.
    fn release_held(&self) {
        if let Some((sub, h)) = self.held.lock().unwrap_or_else(|p| p.into_inner()).take() {
            sub.release_held(&h);
        }
    }

    /// The next message read in place (block policy): decoded straight from the ring for
    /// pickle and msgpack, lent as a `MessageView` for raw bytes when `copy` is false, else
    /// `None` (the caller copies).
    fn get_in_place<'py>(
        &self,
        py: Python<'py>,
        copy: bool,
        deadline: Option<Instant>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let sub: Arc<shmq::Subscriber> = self.att.get(py)?;
        let attempt = || -> PyResult<Option<Held>> {
            let _turn = self.reading.lock().unwrap_or_else(|p| p.into_inner());
            match sub.try_hold() {
                Ok(h) => Ok(Some(h)),
                Err(TryReadError::Empty) => Ok(None),
                Err(e) => Err(read_error(py, sub.name(), e)),
            }
        };
        let wait = |d| Ok(sub.wait_for_data(d, Some(SLICE)));
        let Some(h) = self.att.blocking(py, deadline, attempt, wait)? else {
            return Err(error(py, "Empty", "no message"));
        };
        // SAFETY: `h` is held (not released) until the end of this function or, for a lent
        // view, until the next read of this subscription.
        let (first, second) = unsafe { sub.held_payload(&h) };
        if h.flags & shmq::RECORD_FLAG_SIDE != 0 {
            // A message larger than the ring: copied out of its side segment.
            let mut desc = first.to_vec();
            desc.extend_from_slice(second);
            // Mapped before the release: once every cursor has passed the record, a publisher
            // may remove the segment's name (the mapping stays valid).
            let side = sub.open_side_raw(h.flags, &desc);
            sub.release_held(&h);
            let side = side
                .map_err(|w| read_error(py, sub.name(), TryReadError::Corrupted(w)))?
                .expect("flagged as a side record");
            let raw = pyo3::types::PyBytes::new(py, side.bytes());
            return self.codecs.decode(raw, h.codec).map(Some);
        }
        let contiguous = second.is_empty();
        let keep: Arc<dyn std::any::Any + Send + Sync> = sub.clone();
        let view = |data: &[u8]| Bound::new(py, PyMessageView::new(keep.clone(), data));
        if h.codec == super::CODEC_RAW && !copy && contiguous {
            let v = view(first)?;
            *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some((sub.clone(), h));
            return Ok(Some(v.into_any()));
        }
        let decoded = self
            .codecs
            .decode_in_place(py, || keep.clone(), h.codec, (first, second));
        sub.release_held(&h);
        match decoded? {
            Decoded::Object(obj) => Ok(Some(obj)),
            Decoded::Raw(codec, raw) => self.codecs.decode(raw, codec).map(Some),
        }
    }

    /// Reads up to `max` raw messages, waiting for the first until `deadline`.
    fn read_raw<'py>(
        &self,
        py: Python<'py>,
        max: usize,
        deadline: Option<Instant>,
    ) -> PyResult<Option<Vec<RawMessage<'py>>>> {
        let sub: Arc<shmq::Subscriber> = self.att.get(py)?;
        let attempt = || -> PyResult<Option<Vec<RawMessage<'py>>>> {
            let mut out = Vec::new();
            let mut alloc_err = None;
            let r = {
                let _turn = self.reading.lock().unwrap_or_else(|p| p.into_inner());
                sub.try_recv_many_limited(max, super::GET_MANY_MAX_BYTES, |d| match d {
                    Delivery::Message(m) => {
                        let b = match sub.open_side(&m) {
                            Ok(None) => to_bytes(py, &m),
                            Ok(Some(side)) => Ok(pyo3::types::PyBytes::new(py, side.bytes())),
                            Err(w) => Err(read_error(py, sub.name(), TryReadError::Corrupted(w))),
                        };
                        match b {
                            Ok(b) => out.push((m.codec, b)),
                            Err(e) => alloc_err = Some(e),
                        }
                    }
                    Delivery::Discard => {
                        out.clear();
                        alloc_err = None; // what failed may have been overwritten: moot
                    }
                })
            };
            match r {
                Ok(_) => match alloc_err {
                    Some(e) => Err(e),
                    None => Ok(Some(out)),
                },
                Err(TryReadError::Empty) => Ok(None),
                Err(e) => Err(read_error(py, sub.name(), e)),
            }
        };
        let wait = |d| Ok(sub.wait_for_data(d, Some(SLICE)));
        self.att.blocking(py, deadline, attempt, wait)
    }
}

#[pymethods]
impl PySubscriber {
    #[new]
    #[pyo3(signature = (name, *, allow_pickle=true))]
    fn new(py: Python<'_>, name: String, allow_pickle: bool) -> PyResult<Self> {
        let sub = py
            .detach(|| shmq::Subscriber::open(&name))
            .map_err(|e| open_error(py, e))?;
        Ok(Self {
            att: Attachment::new(sub, name, "subscription to"),
            reading: std::sync::Mutex::new(()),
            held: Mutex::new(None),
            stash: Stash::default(),
            codecs: Codecs {
                codec: 1,
                allow_pickle,
            },
        })
    }

    /// Returns the next message, waiting if `block` (at most `timeout` seconds if given).
    /// With `copy=False` (block policy), a raw message comes as a read-only `MessageView` over
    /// the shared memory, valid until the next read of this subscription or its close().
    #[pyo3(signature = (block=true, timeout=None, *, copy=true))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
        copy: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let deadline = deadline_of(block, timeout)?;
        self.release_held();
        if let Some(mut stashed) = self.stash.take(py, 1) {
            let (codec, raw) = stashed.remove(0);
            return self.codecs.decode(raw, codec);
        }
        if self.att.get(py)?.is_lag() {
            if !copy {
                return Err(PyValueError::new_err(
                    "copy=False needs a broadcast with policy='block' (with 'lag' publishers \
                     may overwrite a message while it is being read)",
                ));
            }
        } else if let Some(obj) = self.get_in_place(py, copy, deadline)? {
            return Ok(obj);
        }
        match self.read_raw(py, 1, deadline)? {
            Some(mut raws) if !raws.is_empty() => {
                let (codec, raw) = raws.remove(0);
                self.codecs.decode(raw, codec)
            }
            _ => Err(error(py, "Empty", "no message")),
        }
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
        max_messages: i64,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let Ok(max_messages @ 1..) = usize::try_from(max_messages) else {
            return Err(PyValueError::new_err(format!(
                "max_messages must be at least 1, got {max_messages}"
            )));
        };
        let deadline = deadline_of(block, timeout)?;
        self.release_held();
        if let Some(stashed) = self.stash.take(py, max_messages) {
            return PyList::new(py, self.codecs.decode_batch(stashed, &self.stash)?);
        }
        match self.read_raw(py, max_messages, deadline)? {
            Some(raws) if !raws.is_empty() => {
                PyList::new(py, self.codecs.decode_batch(raws, &self.stash)?)
            }
            _ => Err(error(py, "Empty", "no message")),
        }
    }

    /// Unsubscribes and detaches.
    fn close(&self, py: Python<'_>) {
        // A lent MessageView keeps the attachment (and its mapping) alive; the subscription
        // itself ends here, so publishers stop waiting for it.
        self.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.att.if_attached(|sub| sub.unsubscribe());
        self.att.shut(py);
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.att.is_closed()
    }

    /// The broadcast's full name.
    #[getter]
    fn name(&self) -> &str {
        &self.att.name
    }

    /// Whether pickle is allowed.
    #[getter]
    fn allow_pickle(&self) -> bool {
        self.codecs.allow_pickle
    }

    /// Ring size in bytes.
    #[getter]
    fn capacity(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.att.get(py)?.capacity())
    }

    /// `"lag"` or `"block"`.
    #[getter]
    fn policy(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(if self.att.get(py)?.is_lag() {
            "lag"
        } else {
            "block"
        })
    }

    /// This subscription's position and lag, as a dict.
    fn _info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let sub = self.att.get(py)?;
        match py.detach(|| sub.info()) {
            Some(info) => subscriber_dict(py, &info),
            None => Err(read_error(py, sub.name(), TryReadError::NotSubscribed)),
        }
    }

    fn _reattach_after_fork(&self) {
        self.att.inherit_after_fork();
        self.stash.clear_after_fork();
    }
}
