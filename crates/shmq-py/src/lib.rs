//! `shmq._shmq`: the Python binding of the `shmq` crate. It only converts: Python objects to
//! payloads and back (codecs, buffers), the GIL (released around every wait and large copy),
//! and errors (onto `shmq._errors`). The queues themselves are the crate's; no user code
//! (decoding) runs while a message is claimed or a lane is held.

#[macro_use]
mod handle_methods;
mod access;
mod admin;
mod args;
mod attachment;
mod broadcast;
mod buffer;
mod codec;
mod errors;
mod frame;
mod lent;
mod order;
mod queue;
mod readiness;
mod recv;
mod send;
mod subscriber;
mod zerocopy;

use pyo3::prelude::*;

// Free-threading safe: every shared state of a handle is behind a mutex or an atomic, and the
// rings are `Sync` (threads of one handle take turns on lanes and subscription reads).
#[pymodule(gil_used = false)]
fn _shmq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<queue::PyQueue>()?;
    m.add_class::<broadcast::PyPublisher>()?;
    m.add_class::<subscriber::PySubscriber>()?;
    m.add_class::<buffer::PyMessageView>()?;
    m.add_class::<zerocopy::PyReservation>()?;
    m.add_class::<readiness::PyReadiness>()?;
    m.add_class::<readiness::PyArmed>()?;
    m.add_function(wrap_pyfunction!(codec::register_codec, m)?)?;
    m.add_function(wrap_pyfunction!(admin::list_queues, m)?)?;
    m.add_function(wrap_pyfunction!(admin::validate_name, m)?)?;
    m.add_function(wrap_pyfunction!(admin::gc, m)?)?;
    m.add_function(wrap_pyfunction!(admin::inspect, m)?)?;
    m.add_function(wrap_pyfunction!(admin::remove, m)?)?;
    m.add("CODEC_RAW", codec::CODEC_RAW)?;
    m.add("CODEC_PICKLE", codec::CODEC_PICKLE)?;
    m.add("CODEC_MSGPACK", codec::CODEC_MSGPACK)?;
    m.add("CODEC_PICKLE_OOB", frame::CODEC_PICKLE_OOB)?;
    m.add("FIRST_USER_CODEC", codec::FIRST_USER_CODEC)?;
    m.add("SEGMENT_PREFIX", shmq::SEGMENT_PREFIX)?;
    Ok(())
}
