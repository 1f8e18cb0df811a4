//! `_Queue`: the Python handle of a queue (subclassed by `shmq.Queue`).

use crate::access::Access;
use crate::args;
use crate::attachment::{wait_of, Attached, Attachment};
use crate::codec::{Codecs, Stash};
use crate::errors::{open_error, InvalidArgumentError, QUEUE};
use crate::lent::{self, Lending};
use crate::send::{put_object, send_objects};
use crate::zerocopy;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// The Python-visible queue.
#[pyclass(module = "shmq._shmq", subclass, frozen, name = "_Queue")]
pub(crate) struct PyQueue {
    att: Attachment<shmq::Queue>,
    access: Access,
    stash: Stash,
    codecs: Codecs,
    /// The message `get(copy=False)` lent last.
    lending: Lending,
}

impl PyQueue {
    fn queue(&self, py: Python<'_>) -> PyResult<Attached<'_, shmq::Queue>> {
        self.att.get(py)
    }

    /// `get_many`: 1 to `max` objects, the stash first.
    fn take_many<'py>(
        &self,
        py: Python<'py>,
        max: usize,
        wait: shmq::Wait,
    ) -> PyResult<Bound<'py, PyList>> {
        self.lending.supersede(); // a read ends the views of the message lent before
        crate::recv::get_many_decoded(&self.att, QUEUE, &self.stash, &self.codecs, py, max, wait)
    }
}

handle_methods!(PyQueue);

sender_methods!(PyQueue);

#[pymethods]
impl PyQueue {
    #[new]
    #[pyo3(signature = (name, *, capacity, maxsize=0, create=None, mode=0o600, codec=1,
                        allow_pickle=true, persistent=false, max_processes=128, allow_large=false,
                        trusted_owners=None, trust_any_owner=false, keep_messages=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: String,
        capacity: u64,
        maxsize: u64,
        create: Option<bool>,
        mode: u32,
        codec: u32,
        allow_pickle: bool,
        persistent: bool,
        max_processes: u32,
        allow_large: bool,
        trusted_owners: Option<Vec<u32>>,
        trust_any_owner: bool,
        keep_messages: bool,
    ) -> PyResult<Self> {
        let codec = u16::try_from(codec).map_err(|_| {
            InvalidArgumentError::new_err(format!("codec id {codec} is out of range"))
        })?;
        let access = Access::new(mode, trusted_owners, trust_any_owner);
        let b = access
            .apply(shmq::Queue::builder(&name))
            .capacity(capacity)
            .maxsize(maxsize)
            .persistent(persistent)
            .max_processes(max_processes)
            .allow_large(allow_large)
            .keep_messages(keep_messages);
        let q = py
            .detach(|| match create {
                Some(true) => b.create(),
                Some(false) => b.open(),
                None => b.open_or_create(),
            })
            .map_err(|e| open_error(&name, e))?;
        Ok(Self {
            att: Attachment::new(q, name, QUEUE.what),
            access,
            stash: Stash::default(),
            codecs: Codecs {
                codec,
                allow_pickle,
            },
            lending: Lending::default(),
        })
    }

    /// Puts `obj`, waiting for space if `block` (at most `timeout` seconds if given).
    /// `codec`: an id or a name, as the constructor's (default: the queue's).
    #[pyo3(signature = (obj, block=true, timeout=None, *, codec=None))]
    fn put(
        &self,
        py: Python<'_>,
        obj: Bound<'_, PyAny>,
        #[pyo3(from_py_with = args::truthy)] block: bool,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
        codec: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let wait = wait_of(block, timeout)?;
        let codec = self.codecs.resolve(codec.as_ref())?;
        put_object(&self.att, QUEUE, &self.codecs, py, obj, codec, wait)
    }

    /// Room for one message of `size` bytes in the ring, to fill in place: `with
    /// q.reserve(n) as buf:` (a writable memoryview) commits the message when the block
    /// ends and abandons it on an exception. Waits for room as `put` does. The message is
    /// sent with codec `codec` (default: raw bytes, which `get` returns as `bytes`).
    #[pyo3(signature = (size, block=true, timeout=None, *, codec=None))]
    fn reserve(
        &self,
        py: Python<'_>,
        size: usize,
        #[pyo3(from_py_with = args::truthy)] block: bool,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
        codec: Option<Bound<'_, PyAny>>,
    ) -> PyResult<zerocopy::PyReservation> {
        let wait = wait_of(block, timeout)?;
        let codec = zerocopy::reservation_codec(&self.codecs, codec)?;
        zerocopy::reserve(&self.att, QUEUE, py, size, wait, codec)
    }

    /// Puts `obj` without waiting; raises `Full` if there is no room.
    fn put_nowait(&self, py: Python<'_>, obj: Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, obj, false, None, None)
    }

    /// Puts every object of `objs`, in order. A batch that fits in the ring goes in at once
    /// (all or nothing); a larger one goes in consecutive chunks that do. An exception has
    /// `sent`: how many of the objects went in before it (retry with `objs[sent:]`).
    #[pyo3(signature = (objs, block=true, timeout=None, *, codec=None))]
    fn put_many(
        &self,
        py: Python<'_>,
        objs: Bound<'_, PyAny>,
        #[pyo3(from_py_with = args::truthy)] block: bool,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
        codec: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let wait = wait_of(block, timeout)?;
        let codec = self.codecs.resolve(codec.as_ref())?;
        send_objects(&self.att, QUEUE, &self.codecs, py, objs, codec, wait)
    }

    /// Removes and returns an object, waiting if `block` (at most `timeout` seconds if
    /// given); raises `Empty` when there is none.
    /// With `copy=False` the message stays in the ring: a raw message comes as a read-only
    /// `MessageView`, a pickle with out-of-band buffers (NumPy arrays) is rebuilt over
    /// read-only views of the ring, valid until this handle's next read or close() (arrays
    /// keep their message held until they are garbage).
    #[pyo3(signature = (block=true, timeout=None, *, copy=true))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::truthy)] block: bool,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
        copy: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let wait = wait_of(block, timeout)?;
        if !copy && !self.stash.has_any() {
            return lent::get_lent(&self.att, &self.lending, &self.codecs, QUEUE, py, wait);
        }
        self.lending.supersede();
        crate::recv::get_decoded(&self.att, QUEUE, &self.stash, &self.codecs, py, wait)
    }

    /// Removes and returns an object without waiting; raises `Empty` if there is none.
    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, false, None, true)
    }

    /// Removes and returns a list of 1 to `max_messages` objects, waiting for the first if
    /// `block`; raises `Empty` when there is none.
    #[pyo3(signature = (max_messages=1000, block=true, timeout=None))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::max_messages)] max_messages: usize,
        #[pyo3(from_py_with = args::truthy)] block: bool,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.take_many(py, max_messages, wait_of(block, timeout)?)
    }

    /// Puts every object of `objs` without waiting (`put_many(objs, block=False)`).
    #[pyo3(signature = (objs, *, codec=None))]
    fn put_many_nowait(
        &self,
        py: Python<'_>,
        objs: Bound<'_, PyAny>,
        codec: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let codec = self.codecs.resolve(codec.as_ref())?;
        send_objects(
            &self.att,
            QUEUE,
            &self.codecs,
            py,
            objs,
            codec,
            shmq::Wait::No,
        )
    }

    /// Removes and returns 1 to `max_messages` objects without waiting
    /// (`get_many(max_messages, block=False)`).
    #[pyo3(signature = (max_messages=1000))]
    fn get_many_nowait<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::max_messages)] max_messages: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        self.take_many(py, max_messages, shmq::Wait::No)
    }

    /// Number of queued messages (a snapshot; exact with a `maxsize`).
    fn qsize(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.queue(py)?.len())
    }

    /// Whether a `get_nowait()` now would raise `Empty` (a snapshot).
    fn empty(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.queue(py)?.is_empty())
    }

    /// Whether `maxsize` messages are queued, or a message as large as the last one this
    /// handle put (or tried to put) would not fit now (a snapshot).
    fn full(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.queue(py)?.is_full())
    }

    /// Bytes of encoded payload queued (a snapshot, walked from the head: O(messages)).
    fn data_size(&self, py: Python<'_>) -> PyResult<u64> {
        let q = self.queue(py)?;
        Ok(py.detach(|| q.queued_payload().1))
    }

    /// Shuts the queue down for every process (Python 3.13's `queue.Queue.shutdown`): puts
    /// raise `ShutDown`; gets take what is left, then raise `ShutDown` instead of waiting;
    /// `immediate` drops what is left and makes gets raise at once.
    #[pyo3(signature = (immediate=false))]
    fn shutdown(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::truthy)] immediate: bool,
    ) -> PyResult<()> {
        let q = self.queue(py)?;
        py.detach(|| q.shutdown(immediate));
        Ok(())
    }

    /// Detaches this process; the last process to detach removes a non-persistent queue.
    /// Idempotent.
    fn close(&self, py: Python<'_>) {
        self.lending.supersede();
        self.att.shut(py);
    }

    /// Message bound (0 = none).
    #[getter]
    fn maxsize(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.queue(py)?.maxsize())
    }

    /// Counters and occupancy as a dict.
    fn _stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.queue(py)?.stats();
        let d = PyDict::new(py);
        d.set_item("depth", s.depth)?;
        d.set_item("bytes_used", s.bytes_used)?;
        d.set_item("capacity", s.capacity)?;
        d.set_item("maxsize", s.maxsize)?;
        d.set_item("puts", s.puts)?;
        d.set_item("gets", s.gets)?;
        d.set_item("waits", s.waits)?;
        d.set_item("attached", s.attached)?;
        d.set_item("lost", s.lost)?;
        d.set_item("abandoned", s.abandoned)?;
        d.set_item("reaped", s.reaped)?;
        d.set_item("dropped", s.dropped)?;
        d.set_item("tail", s.tail)?;
        d.set_item("head", s.head)?;
        Ok(d)
    }

    /// `(messages, payload bytes)` of the committed messages waiting, walked from the head.
    fn _queued_payload(&self, py: Python<'_>) -> PyResult<(u64, u64)> {
        let q = self.queue(py)?;
        Ok(py.detach(|| q.queued_payload()))
    }

    /// In a child after `fork()`: the handle is the parent's attachment; the child attaches
    /// on first use.
    fn _reattach_after_fork(&self) {
        self.lending.after_fork();
        self.att.inherit_after_fork();
        self.stash.clear_after_fork();
    }
}
