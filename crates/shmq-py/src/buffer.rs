//! Bytes between Python and the rings: payloads borrowed from Python objects for a put,
//! received messages copied into `bytes`, and `MessageView` over a lent record.

use crate::errors::{CodecError, ViewReleasedError};
use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shmq::{LargeMessage, Received};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Payloads at least this large are copied without the GIL (into a ring, or out of a side
/// segment): below it, releasing and taking the GIL back costs more than the copy.
pub(crate) const COPY_WITHOUT_GIL: usize = 256 * 1024;

/// A contiguous view of a bytes-like object, held for the duration of a put.
pub(crate) struct BufferView {
    view: Box<pyo3::ffi::Py_buffer>,
}

impl BufferView {
    pub(crate) fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut view: Box<pyo3::ffi::Py_buffer> = Box::new(
            // SAFETY: Py_buffer is a plain C struct; all-zero is its documented empty state.
            unsafe { std::mem::zeroed() },
        );
        // SAFETY: `obj` is a valid object (we hold the GIL through `Bound`); `view` is a valid
        // out-pointer. PyBUF_SIMPLE asks for C-contiguous bytes.
        let r = unsafe {
            pyo3::ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, pyo3::ffi::PyBUF_SIMPLE)
        };
        if r != 0 {
            return Err(PyErr::take(obj.py())
                .unwrap_or_else(|| PyTypeError::new_err("a bytes-like object is required")));
        }
        Ok(Self { view })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.view.len <= 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: PyObject_GetBuffer succeeded with PyBUF_SIMPLE, so `buf` points to `len`
        // contiguous bytes kept alive until PyBuffer_Release in drop.
        unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, self.view.len as usize) }
    }
}

impl Drop for BufferView {
    fn drop(&mut self) {
        // Releasing a buffer may run Python code (the exporter's release hook): take the GIL.
        Python::attach(|_| {
            // SAFETY: the view was filled by a successful PyObject_GetBuffer and is released
            // exactly once.
            unsafe { pyo3::ffi::PyBuffer_Release(&mut *self.view) }
        });
    }
}

// SAFETY: the view only points into the exporter's memory, which stays valid until
// `PyBuffer_Release` (done with the GIL in `drop`); reading it from another thread while the
// owning thread waits is what `Py_buffer` consumers such as `socket.send` do.
unsafe impl Send for BufferView {}
// SAFETY: as above: shared read-only access.
unsafe impl Sync for BufferView {}

/// An encoded message.
pub(crate) enum Payload<'py> {
    Bytes(Bound<'py, PyBytes>),
    Buffer(BufferView),
    /// A pickle with out-of-band buffers (`put` writes it through a loan; other paths lay it
    /// out in private memory first).
    Frame(crate::frame::Frame<'py>),
}

impl Payload<'_> {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Bytes(b) => b.as_bytes(),
            Payload::Buffer(v) => v.as_slice(),
            Payload::Frame(f) => f.flat(),
        }
    }
}

/// `obj` as a payload of the raw codec: `bytes` as is, anything else through the buffer
/// protocol (no copy).
pub(crate) fn bytes_like<'py>(obj: Bound<'py, PyAny>) -> PyResult<Payload<'py>> {
    match obj.cast_into::<PyBytes>() {
        Ok(b) => Ok(Payload::Bytes(b)),
        Err(e) => buffer_of(e.into_inner()),
    }
}

/// [`bytes_like`] of anything but `bytes`.
#[cold]
#[inline(never)]
fn buffer_of(obj: Bound<'_, PyAny>) -> PyResult<Payload<'_>> {
    BufferView::get(&obj).map(Payload::Buffer).map_err(|_| {
        let name = obj
            .get_type()
            .name()
            .map_or_else(|_| "?".into(), |n| n.to_string());
        CodecError::new_err(format!(
            "the raw codec needs a bytes-like object, not {name}"
        ))
    })
}

/// A payload in (up to) two parts as a new `bytes` object: one copy (`PyBytes::new_with`
/// would zero-fill the buffer first: a `memset` as long as the copy).
#[inline(always)]
pub(crate) fn bytes_of_parts<'py>(
    py: Python<'py>,
    first: &[u8],
    second: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    if second.is_empty() {
        return Ok(PyBytes::new(py, first));
    }
    let len = first.len() + second.len();
    // SAFETY: a NULL source makes an uninitialised `bytes` of `len` bytes (CPython's
    // documented way to build one in place); every byte is written below, before any Python
    // code can see the object.
    unsafe {
        let p = pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), len as isize);
        if p.is_null() {
            return Err(PyErr::fetch(py));
        }
        let dst = pyo3::ffi::PyBytes_AsString(p).cast::<u8>();
        std::ptr::copy_nonoverlapping(first.as_ptr(), dst, first.len());
        std::ptr::copy_nonoverlapping(second.as_ptr(), dst.add(first.len()), second.len());
        Ok(Bound::from_owned_ptr(py, p).cast_into_unchecked())
    }
}

/// Messages at least this large that will be unpickled (or unpacked) anyway are copied
/// into the thread's scratch buffer and decoded from there, rather than into a `bytes` made
/// for the purpose: a fresh large allocation costs a page fault per 4 KiB (measured: a 1 MiB
/// pickled message 2.4x slower).
pub(crate) const DECODE_FROM_SCRATCH_MIN: usize = 16 * 1024;

/// Scratch buffers above this size are not kept for the next message.
const SCRATCH_KEEP_MAX: usize = 64 << 20;

/// A thread's reusable private copy of a received message, decoded through a
/// `MessageView` once the message has left the ring. A view that outlives the decoding
/// keeps its scratch alive (and refuses to be read); the thread then takes a new one.
#[derive(Default)]
pub(crate) struct Scratch {
    bytes: Vec<u8>,
    lent: AtomicBool,
}

impl Lender for Scratch {
    fn still_lent(&self) -> bool {
        self.lent.load(Ordering::Acquire)
    }
}

std::thread_local! {
    static SCRATCH: std::cell::RefCell<Option<Arc<Scratch>>> = const { std::cell::RefCell::new(None) };
}

impl Scratch {
    /// The thread's scratch holding a copy of `parts` (a new one if the last is still lent).
    fn filled(first: &[u8], second: &[u8]) -> Arc<Scratch> {
        let mut s = SCRATCH.with(|c| c.borrow_mut().take()).unwrap_or_default();
        let unique = match Arc::get_mut(&mut s) {
            Some(unique) => unique,
            None => {
                s = Arc::default();
                Arc::get_mut(&mut s).expect("a new Arc is unique")
            }
        };
        unique.bytes.clear();
        unique.bytes.extend_from_slice(first);
        unique.bytes.extend_from_slice(second);
        *unique.lent.get_mut() = true;
        s
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Decoding is over: later reads of a view of it raise; the buffer is kept for the
    /// thread's next message.
    pub(crate) fn give_back(self: Arc<Self>) {
        self.lent.store(false, Ordering::Release);
        if self.bytes.capacity() <= SCRATCH_KEEP_MAX {
            SCRATCH.with(|c| *c.borrow_mut() = Some(self));
        }
    }
}

/// A message taken off a ring by a single get, before decoding. Made inside the receive
/// callback, which must only copy: a large message is kept mapped and copied after the claim
/// ends. (`get_many` makes `(codec, bytes)` pairs directly, see `recv::take`.)
pub(crate) enum Taken<'py> {
    Bytes(u16, PyResult<Bound<'py, PyBytes>>),
    /// Boxed: keeps the usual variants' `Taken` small (it is returned by value).
    Large(Box<LargeMessage>),
    /// A large message to unpickle or unpack, copied to the thread's scratch buffer.
    Scratch(u16, Arc<Scratch>),
    /// A pickle with out-of-band buffers, copied into a new `bytearray` (its arrays are
    /// rebuilt over it).
    Frame(PyResult<Bound<'py, PyAny>>),
}

impl<'py> Taken<'py> {
    /// The message `m`: a message in the ring as `bytes`, or, when `decodes_from_buffer` and
    /// it is big, copied into the scratch buffer instead; a pickle with out-of-band buffers
    /// into a new `bytearray`; a large one kept mapped.
    #[inline(always)]
    pub(crate) fn of_one(py: Python<'py>, m: Received<'_>, decodes_from_buffer: bool) -> Self {
        if m.codec() == crate::frame::CODEC_PICKLE_OOB {
            let (a, b) = m.parts();
            return Self::Frame(crate::zerocopy::copy_of(py, a, b));
        }
        let to_scratch = decodes_from_buffer && m.len() >= DECODE_FROM_SCRATCH_MIN;
        match m.into_large() {
            // A side segment's mapping is a private copy already.
            Ok(large) => Self::Large(Box::new(large)),
            Err(m) => {
                let (a, b) = m.parts();
                if to_scratch {
                    Self::Scratch(m.codec(), Scratch::filled(a, b))
                } else {
                    Self::Bytes(m.codec(), bytes_of_parts(py, a, b))
                }
            }
        }
    }

    /// The codec id and the bytes (a large message copied out now, without the GIL).
    pub(crate) fn into_raw(self, py: Python<'py>) -> PyResult<(u16, Bound<'py, PyBytes>)> {
        match self {
            Self::Bytes(codec, bytes) => Ok((codec, bytes?)),
            Self::Frame(buf) => {
                let bytes = py.get_type::<PyBytes>().call1((buf?,))?.cast_into()?;
                Ok((crate::frame::CODEC_PICKLE_OOB, bytes))
            }
            Self::Scratch(codec, s) => {
                let bytes = PyBytes::new(py, s.bytes());
                s.give_back();
                Ok((codec, bytes))
            }
            Self::Large(large) => Ok((large.codec(), large_bytes(py, &large)?)),
        }
    }
}

/// A large message (mapped from its side segment) as `bytes`: a big one is copied without
/// the GIL.
pub(crate) fn large_bytes<'py>(
    py: Python<'py>,
    large: &LargeMessage,
) -> PyResult<Bound<'py, PyBytes>> {
    let src = large.bytes();
    if src.len() >= COPY_WITHOUT_GIL {
        PyBytes::new_with(py, src.len(), |dst| {
            py.detach(|| dst.copy_from_slice(src));
            Ok(())
        })
    } else {
        Ok(PyBytes::new(py, src))
    }
}

/// Whether the lent record behind a view is still lent (a later read releases it).
pub(crate) trait Lender: Send + Sync {
    fn still_lent(&self) -> bool;
    /// A buffer of a view of it was made (an array, a memoryview): a lender that must
    /// outlive such buffers counts them.
    fn exported(&self) {}
    /// One of those buffers was released.
    fn unexported(&self) {}
}

/// A message read in place from the shared memory (`Subscriber.get(copy=False)`): a
/// read-only buffer over the ring, valid until the subscription's next read or close().
#[pyclass(module = "shmq._shmq", frozen, name = "MessageView")]
pub(crate) struct PyMessageView {
    /// Keeps the mapping alive as long as any buffer of this view exists.
    lender: Arc<dyn Lender>,
    ptr: usize,
    len: usize,
}

impl PyMessageView {
    /// A view of `data`, which lies in a mapping `lender` keeps alive.
    pub(crate) fn new(lender: Arc<dyn Lender>, data: &[u8]) -> Self {
        Self {
            lender,
            ptr: data.as_ptr() as usize,
            len: data.len(),
        }
    }

    fn check(&self) -> PyResult<()> {
        if self.lender.still_lent() {
            Ok(())
        } else {
            Err(ViewReleasedError::new_err(
                "this MessageView was released by a later read (or close()) of its \
                 subscription: copy what you need before reading again",
            ))
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
            return Err(PyBufferError::new_err("a MessageView is read-only"));
        }
        let (ptr, len) = {
            let v = slf.get();
            v.check()?;
            (v.ptr, v.len)
        };
        // SAFETY: `ptr..ptr + len` lies in the ring mapping, which `lender` keeps mapped for
        // as long as this object lives; PyBuffer_FillInfo takes a reference to `slf`, so the
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
        slf.get().lender.exported();
        Ok(())
    }

    /// # Safety
    ///
    /// Called by CPython for a buffer filled by `__getbuffer__`.
    unsafe fn __releasebuffer__(slf: Bound<'_, Self>, _view: *mut pyo3::ffi::Py_buffer) {
        slf.get().lender.unexported();
    }

    fn __len__(&self) -> usize {
        self.len
    }

    /// A copy of the bytes.
    fn __bytes__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.check()?;
        // SAFETY: the mapping is alive (see `__getbuffer__`) and the record still lent.
        let data = unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) };
        Ok(PyBytes::new(py, data))
    }

    fn __repr__(&self) -> String {
        format!("<shmq.MessageView of {} bytes>", self.len)
    }
}
