//! Arguments of the blocking methods, converted as the standard library's queues take them
//! (`#[pyo3(from_py_with = ...)]`), with errors that name the argument.

use crate::errors::InvalidArgumentError;
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::PyInt;

/// `block`: any object, by its truth value (`queue.Queue.put(x, block=0)` does not wait).
#[inline]
pub(crate) fn truthy(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    obj.is_truthy()
}

/// `timeout`: `None` or a number of seconds. An int too large for a float is forever (as
/// `1e300` is); a negative one is refused by [`crate::attachment::wait_of`].
#[inline]
pub(crate) fn timeout(obj: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    if obj.is_none() {
        return Ok(None);
    }
    match obj.extract::<f64>() {
        Ok(t) => Ok(Some(t)),
        Err(e)
            if e.is_instance_of::<PyOverflowError>(obj.py()) && obj.is_instance_of::<PyInt>() =>
        {
            Ok(Some(if obj.lt(0)? {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }))
        }
        Err(e) => Err(e),
    }
}

/// `max_messages` of `get_many`: 1 or more.
pub(crate) fn max_messages(obj: &Bound<'_, PyAny>) -> PyResult<usize> {
    let out_of_range = || {
        InvalidArgumentError::new_err(format!(
            "max_messages must be at least 1 (an int up to 2**63 - 1), got {obj}"
        ))
    };
    match obj.extract::<i64>() {
        Ok(n) => usize::try_from(n)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(out_of_range),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Err(out_of_range()),
        Err(e) => Err(e),
    }
}
