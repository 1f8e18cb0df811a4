//! `_Readiness` and `_Armed`: the asynchronous waits behind `shmq.asyncio` (see the crate's
//! `shmq::readiness`). Conversions only: the waiting is the crate's helper thread's.

use pyo3::prelude::*;
use shmq::readiness::{Readiness, Watch};
use shmq::{Armed, Interest};
use std::sync::{Arc, Mutex};

/// `0` is data (a message to take), `1` space (room to send), as `shmq.asyncio` passes them.
pub(crate) fn interest_of(side: u8) -> PyResult<Interest> {
    match side {
        0 => Ok(Interest::Data),
        1 => Ok(Interest::Space),
        _ => Err(crate::errors::InvalidArgumentError::new_err(format!(
            "side {side} is not 0 (data) or 1 (space)"
        ))),
    }
}

/// Arms `target` for `side`: `None` when the condition holds already.
pub(crate) fn arm(target: Arc<dyn Watch>, side: u8) -> PyResult<Option<PyArmed>> {
    let interest = interest_of(side)?;
    Ok(target.arm(interest).map(|armed| PyArmed {
        inner: Mutex::new(Some((target, interest, armed))),
        pid: std::process::id(),
    }))
}

/// Spins (without the GIL) as a blocking call does before it sleeps: whether a message
/// may be ready now.
pub(crate) fn spin(py: Python<'_>, target: &dyn Watch, side: u8) -> PyResult<bool> {
    let interest = interest_of(side)?;
    Ok(py.detach(|| target.spin(interest)))
}

/// An armed wait: the ring it is on, what for, and the value armed at.
type Wait = (Arc<dyn Watch>, Interest, Armed);

/// One announced wait: disarmed by `disarm()` or, failing that, when collected.
#[pyclass(module = "shmq._shmq", frozen, name = "_Armed")]
pub(crate) struct PyArmed {
    inner: Mutex<Option<Wait>>,
    /// The process that armed it: a copy inherited across `fork()` is the parent's wait
    /// (its counts in the parent's slot), which the child must neither disarm nor detach.
    pid: u32,
}

impl PyArmed {
    fn take(&self) -> Option<Wait> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[pymethods]
impl PyArmed {
    /// Leaves the event's waiters (idempotent) and lets go of the ring.
    fn disarm(&self) {
        if let Some((t, i, a)) = self.take() {
            if self.pid == std::process::id() {
                t.disarm(i, a);
            } else {
                // The parent's attachment, inherited: dropping it here would detach it.
                std::mem::forget(t);
            }
        }
    }
}

impl Drop for PyArmed {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// One event loop's set of waits and its eventfd.
#[pyclass(module = "shmq._shmq", frozen, name = "_Readiness")]
pub(crate) struct PyReadiness {
    r: Readiness,
}

#[pymethods]
impl PyReadiness {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(Self {
            r: Readiness::new().map_err(crate::errors::os_error)?,
        })
    }

    fn fileno(&self) -> i32 {
        self.r.fd()
    }

    /// Registers `armed` under `token`; a wait already disarmed is ready at once.
    fn register(&self, token: u64, armed: &PyArmed) -> bool {
        let inner = armed.inner.lock().unwrap_or_else(|p| p.into_inner());
        match &*inner {
            Some((t, i, a)) => {
                self.r.register(token, t.clone(), *i, *a);
                true
            }
            None => false,
        }
    }

    fn cancel(&self, token: u64) {
        self.r.cancel(token);
    }

    fn take_ready(&self) -> Vec<u64> {
        self.r.take_ready()
    }
}
