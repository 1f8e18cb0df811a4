//! Module-level functions: listing, garbage collection, name checks.

use crate::errors::{open_error, os_error, InvalidArgumentError};
use pyo3::prelude::*;
use std::time::Duration;

/// Names of the queues present in /dev/shm.
#[pyfunction]
pub(crate) fn list_queues() -> PyResult<Vec<String>> {
    shmq::list_queues().map_err(os_error)
}

/// Removes the queues whose attached processes are all dead; returns their names.
#[pyfunction]
#[pyo3(signature = (init_grace=60.0))]
pub(crate) fn gc(py: Python<'_>, init_grace: f64) -> PyResult<Vec<String>> {
    if init_grace.is_nan() || init_grace < 0.0 {
        return Err(InvalidArgumentError::new_err(
            "init_grace must be a non-negative number of seconds",
        ));
    }
    let grace = Duration::from_secs_f64(init_grace.min(1e9));
    py.detach(|| shmq::gc(grace)).map_err(os_error)
}

/// Checks a queue name; raises `InvalidNameError`.
#[pyfunction]
pub(crate) fn validate_name(name: &str) -> PyResult<()> {
    shmq::validate_name(name).map_err(|e| open_error(name, e))
}
