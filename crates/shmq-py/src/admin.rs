//! Module-level functions: listing, read-only inspection, removal by name, garbage
//! collection, name checks.

use crate::errors::{open_error, os_error, InvalidArgumentError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::time::Duration;

fn seconds(what: &str, s: f64) -> PyResult<Duration> {
    if s.is_nan() || s < 0.0 {
        return Err(InvalidArgumentError::new_err(format!(
            "{what} must be a non-negative number of seconds, got {s}"
        )));
    }
    Ok(Duration::from_secs_f64(s.min(1e9)))
}

/// Names of the queues present in /dev/shm.
#[pyfunction]
pub(crate) fn list_queues() -> PyResult<Vec<String>> {
    shmq::list_queues().map_err(os_error)
}

/// Removes what no live process uses any more; returns the names removed.
#[pyfunction]
#[pyo3(signature = (init_grace=60.0, drop_kept_after=None))]
pub(crate) fn gc(
    py: Python<'_>,
    init_grace: f64,
    drop_kept_after: Option<f64>,
) -> PyResult<Vec<String>> {
    let policy = shmq::GcPolicy {
        init_grace: seconds("init_grace", init_grace)?,
        drop_kept_after: drop_kept_after
            .map(|s| seconds("drop_kept_after", s))
            .transpose()?,
    };
    py.detach(|| shmq::gc(policy)).map_err(os_error)
}

/// A ring's state read without attaching to it, as a dict.
#[pyfunction]
pub(crate) fn inspect<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
    let i = py
        .detach(|| shmq::inspect(name))
        .map_err(|e| open_error(name, e))?;
    let d = PyDict::new(py);
    d.set_item("kind", i.kind.to_string())?;
    d.set_item("segment_bytes", i.segment_bytes)?;
    d.set_item("live", i.live)?;
    d.set_item("persistent", i.persistent)?;
    d.set_item("owner", i.owner)?;
    d.set_item("mode", i.mode)?;
    d.set_item("kept_for", i.kept_for.map(|d| d.as_secs_f64()))?;
    let s = &i.stats;
    let stats = PyDict::new(py);
    for (k, v) in [
        ("depth", s.depth),
        ("bytes_used", s.bytes_used),
        ("capacity", s.capacity),
        ("maxsize", s.maxsize),
        ("puts", s.puts),
        ("gets", s.gets),
        ("waits", s.waits),
        ("attached", u64::from(s.attached)),
        ("lost", s.lost),
        ("abandoned", s.abandoned),
        ("reaped", s.reaped),
        ("tail", s.tail),
        ("head", s.head),
    ] {
        stats.set_item(k, v)?;
    }
    d.set_item("stats", stats)?;
    let subs = PyList::empty(py);
    for sub in &i.subscribers {
        subs.append(crate::broadcast::subscriber_dict(py, sub)?)?;
    }
    d.set_item("subscribers", subs)?;
    Ok(d)
}

/// Removes a ring by name (attached processes keep using it); whether there was one.
#[pyfunction]
pub(crate) fn remove(py: Python<'_>, name: &str) -> PyResult<bool> {
    py.detach(|| shmq::remove(name))
        .map_err(|e| open_error(name, e))
}

/// Checks a queue name; raises `InvalidNameError`.
#[pyfunction]
pub(crate) fn validate_name(name: &str) -> PyResult<()> {
    shmq::validate_name(name).map_err(|e| open_error(name, e))
}
