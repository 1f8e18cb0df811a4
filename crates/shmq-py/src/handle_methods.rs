//! The methods the three handle classes share, written once: each class gets them as a
//! `#[pymethods]` block of its own (PyO3's `multiple-pymethods`). The macros are untyped on
//! purpose: `self.att.get(py)?` is a `shmq::Queue`, `Broadcast` or `Subscriber`, and each
//! has the inherent method called.

/// Every handle: `Queue`, `Broadcast` (publisher) and `Subscriber`. The class has the
/// fields `att` (its [`crate::attachment::Attachment`]), `access` and `codecs`.
macro_rules! handle_methods {
    ($class:ty) => {
        #[pyo3::pymethods]
        impl $class {
            /// Spins about 50 µs (without the GIL) for `side` (0 data, 1 space): whether it
            /// may be ready.
            fn _spin(&self, py: Python<'_>, side: u8) -> PyResult<bool> {
                crate::readiness::spin(py, &*self.att.get(py)?, side)
            }

            /// Announces an asynchronous wait for `side` (0 data, 1 space; `shmq.asyncio`):
            /// `None` when the condition holds now.
            fn _arm(
                &self,
                py: Python<'_>,
                side: u8,
            ) -> PyResult<Option<crate::readiness::PyArmed>> {
                crate::readiness::arm(self.att.get(py)?.to_arc(), side)
            }

            /// Whether it was shut down (by any process).
            #[getter]
            fn is_shutdown(&self, py: Python<'_>) -> PyResult<bool> {
                Ok(self.att.get(py)?.is_shutdown())
            }

            /// Keeps the ring for `grace` seconds whatever its last process does meanwhile
            /// (for a handle on its way to another process: pickled, or inherited by a
            /// forked child).
            fn _keep_alive(&self, grace: f64) {
                self.att.keep_alive(grace);
            }

            /// A handle sent with `_keep_alive` arrived here (it was unpickled and attached).
            fn _arrived(&self) {
                self.att.arrived();
            }

            /// Whether `close()` was called.
            #[getter]
            fn closed(&self) -> bool {
                self.att.is_closed()
            }

            /// The full name (namespace included).
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

            /// `(mode, trusted owners or None for any)`: how a pickled handle reopens.
            #[getter]
            fn _access(&self) -> (u32, Option<Vec<u32>>) {
                self.access.as_tuple()
            }
        }
    };
}

/// The handles that send (and own a name): `Queue` and `Broadcast`.
macro_rules! sender_methods {
    ($class:ty) => {
        #[pyo3::pymethods]
        impl $class {
            /// Removes the name now; attached processes keep using the ring.
            fn unlink(&self, py: Python<'_>) -> PyResult<()> {
                self.att.unlink(py)
            }

            /// Default codec id of a send.
            #[getter]
            fn codec_id(&self) -> u16 {
                self.codecs.codec
            }

            /// Largest encoded message the ring can hold.
            #[getter]
            fn max_message_size(&self, py: Python<'_>) -> PyResult<u64> {
                Ok(self.att.get(py)?.max_message_size())
            }

            /// Whether the segment outlives its last process.
            #[getter]
            fn persistent(&self, py: Python<'_>) -> PyResult<bool> {
                Ok(self.att.get(py)?.is_persistent())
            }

            /// Whether this handle sends messages larger than the ring through side
            /// segments.
            #[getter]
            fn allow_large(&self, py: Python<'_>) -> PyResult<bool> {
                Ok(self.att.get(py)?.allows_large())
            }
        }
    };
}
