//! `_Publisher`: the Python handle that publishes to a broadcast ring (subclassed by
//! `shmq.Broadcast`); `_Subscriber` is in `subscriber.rs`.

use crate::access::Access;
use crate::args;
use crate::attachment::{wait_of, Attachment};
use crate::codec::Codecs;
use crate::errors::{open_error, InvalidArgumentError, BROADCAST};
use crate::send::{put_object, send_objects};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use shmq::Policy;

pub(crate) fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::Block => "block",
        Policy::Lag => "lag",
    }
}

/// The publishing side of a broadcast.
#[pyclass(module = "shmq._shmq", subclass, frozen, name = "_Publisher")]
pub(crate) struct PyPublisher {
    att: Attachment<shmq::Broadcast>,
    access: Access,
    codecs: Codecs,
}

handle_methods!(PyPublisher);

sender_methods!(PyPublisher);

#[pymethods]
impl PyPublisher {
    #[new]
    #[pyo3(signature = (name, *, capacity, create=None, mode=0o600, codec=1, allow_pickle=true,
                        persistent=false, max_processes=128, lag=false, allow_large=false,
                        trusted_owners=None, trust_any_owner=false))]
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
        trusted_owners: Option<Vec<u32>>,
        trust_any_owner: bool,
    ) -> PyResult<Self> {
        let codec = u16::try_from(codec).map_err(|_| {
            InvalidArgumentError::new_err(format!("codec id {codec} is out of range"))
        })?;
        let access = Access::new(mode, trusted_owners, trust_any_owner);
        let b = access
            .apply(shmq::Broadcast::builder(&name))
            .capacity(capacity)
            .persistent(persistent)
            .max_processes(max_processes)
            .policy(if lag { Policy::Lag } else { Policy::Block })
            .allow_large(allow_large);
        let publisher = py
            .detach(|| match create {
                Some(true) => b.create(),
                Some(false) => b.open(),
                None => b.open_or_create(),
            })
            .map_err(|e| open_error(&name, e))?;
        Ok(Self {
            att: Attachment::new(publisher, name, BROADCAST.what),
            access,
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
        #[pyo3(from_py_with = args::truthy)] block: bool,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
        codec: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let wait = wait_of(block, timeout)?;
        let codec = self.codecs.resolve(codec.as_ref())?;
        put_object(&self.att, BROADCAST, &self.codecs, py, obj, codec, wait)
    }

    /// Room for one message of `size` bytes in the ring, filled in place (see
    /// `Queue.reserve`): committed at the end of a `with` block, abandoned on an exception.
    #[pyo3(signature = (size, block=true, timeout=None, *, codec=None))]
    fn reserve(
        &self,
        py: Python<'_>,
        size: usize,
        #[pyo3(from_py_with = args::truthy)] block: bool,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
        codec: Option<Bound<'_, PyAny>>,
    ) -> PyResult<crate::zerocopy::PyReservation> {
        let wait = wait_of(block, timeout)?;
        let codec = crate::zerocopy::reservation_codec(&self.codecs, codec)?;
        crate::zerocopy::reserve(&self.att, BROADCAST, py, size, wait, codec)
    }

    /// Publishes every object of `objs`, in order (at once when the batch fits the ring).
    /// An exception has `sent`: how many of the objects went in before it.
    #[pyo3(signature = (objs, block=true, timeout=None, *, codec=None))]
    fn publish_many(
        &self,
        py: Python<'_>,
        objs: Bound<'_, PyAny>,
        #[pyo3(from_py_with = args::truthy)] block: bool,
        #[pyo3(from_py_with = args::timeout)] timeout: Option<f64>,
        codec: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let wait = wait_of(block, timeout)?;
        let codec = self.codecs.resolve(codec.as_ref())?;
        send_objects(&self.att, BROADCAST, &self.codecs, py, objs, codec, wait)
    }

    /// Shuts the broadcast down for every process: publishes raise `ShutDown`; subscribers
    /// read what they have not read yet, then raise `ShutDown` (at once if `immediate`).
    #[pyo3(signature = (immediate=false))]
    fn shutdown(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::truthy)] immediate: bool,
    ) -> PyResult<()> {
        let b = self.att.get(py)?;
        py.detach(|| b.shutdown(immediate));
        Ok(())
    }

    /// Detaches; the last process to detach removes a non-persistent broadcast.
    fn close(&self, py: Python<'_>) {
        self.att.shut(py);
    }

    /// `"lag"` or `"block"`.
    #[getter]
    fn policy(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(policy_name(self.att.get(py)?.policy()))
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

pub(crate) fn subscriber_dict<'py>(
    py: Python<'py>,
    s: &shmq::SubscriberInfo,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("pid", s.pid)?;
    d.set_item("position", s.position)?;
    d.set_item("lag_messages", s.lag_messages)?;
    d.set_item("lag_bytes", s.lag_bytes)?;
    d.set_item("missed_pending", s.missed_pending)?;
    Ok(d)
}
