//! Zero copy for Python: `reserve(n)` (a `Reservation`, a writable buffer over a loan in the
//! ring), puts of out-of-band pickles written through a loan, and the copies of out-of-band
//! pickles taken off a ring. `Queue.get(copy=False)` (a message held in the ring, lent to a
//! `MessageView` and to the arrays rebuilt over it) is in `lent.rs`.
//!
//! A loan or a hold is a protocol resource held while user code runs, by design: the rules
//! are in `shmq::Loan`'s module. Here the bytes are only reachable through buffer exports
//! that are counted, so a loan ends (commit or abandon) and a hold is released only once no
//! Python object can reach the bytes any more: a view used afterwards raises, and never
//! reads or writes another message.

use crate::attachment::{Attachment, Endpoint, Stopped};

use crate::codec::{Codecs, CODEC_RAW};
use crate::errors::{send_error, Noun, ViewReleasedError};
use crate::frame::{self, Frame, CODEC_PICKLE_OOB};
use pyo3::exceptions::PyBufferError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView};
use shmq::zero_copy::{self as ext, RawLoan};
use shmq::{SendError, Wait, Waiter};
use std::os::raw::c_int;
use std::sync::{Arc, Mutex};

/// What can lend room for a message: a queue or a broadcast.
pub(crate) trait Lends: Endpoint {
    fn loan(&self, len: usize, wait: Wait, w: &mut dyn Waiter) -> Result<RawLoan, SendError>;
    /// # Safety
    ///
    /// As `shmq::zero_copy::loan_ptr`.
    unsafe fn ptr(&self, l: &RawLoan) -> *mut u8;
    fn end(&self, l: RawLoan, commit: Option<u16>);
    fn max_message_size(&self) -> u64;
    /// Whether a `put` of a large payload goes through a loan (see [`put_in_place`]) when
    /// one is free now.
    fn large_puts_in_place(&self) -> bool {
        false
    }
}

impl Lends for shmq::Queue {
    fn loan(&self, len: usize, wait: Wait, w: &mut dyn Waiter) -> Result<RawLoan, SendError> {
        ext::loan(self, len, wait, w)
    }
    unsafe fn ptr(&self, l: &RawLoan) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { ext::loan_ptr(self, l) }
    }
    fn end(&self, l: RawLoan, commit: Option<u16>) {
        ext::end_loan(self, l, commit);
    }
    fn max_message_size(&self) -> u64 {
        shmq::Queue::max_message_size(self)
    }
}

impl Lends for shmq::Broadcast {
    fn loan(&self, len: usize, wait: Wait, w: &mut dyn Waiter) -> Result<RawLoan, SendError> {
        ext::publish_loan(self, len, wait, w)
    }
    unsafe fn ptr(&self, l: &RawLoan) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { ext::publish_loan_ptr(self, l) }
    }
    fn end(&self, l: RawLoan, commit: Option<u16>) {
        ext::end_publish_loan(self, l, commit);
    }
    fn max_message_size(&self) -> u64 {
        shmq::Broadcast::max_message_size(self)
    }
    fn large_puts_in_place(&self) -> bool {
        ext::publish_loan_available(self)
    }
}

/// An open loan and the handle it is on (kept alive by it).
struct Open {
    to: Arc<dyn LendsDyn>,
    loan: RawLoan,
}

/// [`Lends`] without its generic bound, for `Reservation` (one Python type for both).
trait LendsDyn: Send + Sync {
    fn ptr(&self, l: &RawLoan) -> *mut u8;
    fn end(&self, l: RawLoan, commit: Option<u16>);
}

impl<T: Lends> LendsDyn for T {
    fn ptr(&self, l: &RawLoan) -> *mut u8 {
        // SAFETY: only called on an open loan of this handle (`Reservation` keeps it open
        // while any buffer of it exists).
        unsafe { Lends::ptr(self, l) }
    }
    fn end(&self, l: RawLoan, commit: Option<u16>) {
        Lends::end(self, l, commit);
    }
}

/// Opens a loan of `len` bytes on `att` (the GIL released while waiting for room).
fn open_loan<T: Lends>(
    att: &Attachment<T>,
    noun: Noun,
    py: Python<'_>,
    len: usize,
    wait: Wait,
) -> PyResult<(Arc<T>, RawLoan)> {
    let to = att.get(py)?;
    let mut w = att.detached_waiter();
    let r = py.detach(|| to.loan(len, wait, &mut w));
    match r {
        Ok(l) => Ok((to.to_arc(), l)),
        Err(e) => Err(w
            .take_error()
            .unwrap_or_else(|| send_error(noun, &att.name, e))),
    }
}

struct ReservationState {
    open: Option<Open>,
    /// Buffers of this reservation alive now.
    exports: usize,
    /// Ended while buffers were still alive: abandoned when the last goes.
    abandon_when_unexported: bool,
    /// The memoryview `__enter__` handed out.
    view: Option<Py<PyAny>>,
}

/// Room for one message in the ring (`Queue.reserve(n)`, `Broadcast.reserve(n)`): a writable
/// buffer over the shared memory. `with q.reserve(n) as buf:` gives a `memoryview`; the
/// message is committed when the block ends normally and abandoned (nothing delivered) on an
/// exception. Afterwards the memoryview is released: using it raises.
#[pyclass(module = "shmq._shmq", frozen, name = "Reservation")]
pub(crate) struct PyReservation {
    state: Mutex<ReservationState>,
    len: usize,
    codec: u16,
}

impl PyReservation {
    fn state(&self) -> std::sync::MutexGuard<'_, ReservationState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the loan now (`Some(codec)`: commit), if no buffer of it is alive.
    fn end(&self, commit: Option<u16>) -> PyResult<()> {
        let mut st = self.state();
        if st.exports > 0 {
            return Err(PyBufferError::new_err(
                "a buffer of this reservation is still in use (release the memoryview, and \
                 every view made from it, first)",
            ));
        }
        match st.open.take() {
            Some(o) => {
                o.to.end(o.loan, commit);
                Ok(())
            }
            None => Err(ViewReleasedError::new_err(
                "this reservation was committed or abandoned already",
            )),
        }
    }
}

/// The codec a reservation's message is sent with: `codec` as `put` takes it, or the
/// out-of-band pickle frame (which a caller may lay out by hand: see frame.rs); raw bytes
/// by default.
pub(crate) fn reservation_codec(codecs: &Codecs, codec: Option<Bound<'_, PyAny>>) -> PyResult<u16> {
    match codec {
        Some(c) if c.extract::<u16>().ok() == Some(CODEC_PICKLE_OOB) => Ok(CODEC_PICKLE_OOB),
        Some(c) => codecs.resolve(Some(&c)),
        None => Ok(CODEC_RAW),
    }
}

/// `q.reserve(n)` of a queue or a broadcast.
pub(crate) fn reserve<T: Lends>(
    att: &Attachment<T>,
    noun: Noun,
    py: Python<'_>,
    len: usize,
    wait: Wait,
    codec: u16,
) -> PyResult<PyReservation> {
    let (to, loan) = open_loan(att, noun, py, len, wait)?;
    Ok(PyReservation {
        state: Mutex::new(ReservationState {
            open: Some(Open { to, loan }),
            exports: 0,
            abandon_when_unexported: false,
            view: None,
        }),
        len,
        codec,
    })
}

#[pymethods]
impl PyReservation {
    /// A writable `memoryview` of the reserved bytes.
    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        let view = PyMemoryView::from(slf.as_any())?.into_any();
        slf.get().state().view = Some(view.clone().unbind());
        Ok(view)
    }

    /// Commits (no exception) or abandons (an exception) the message; the memoryview is
    /// released. A view made from it that is still alive (a slice, a NumPy array) makes
    /// this raise `BufferError` and abandons the message once the view goes.
    fn __exit__(
        slf: Bound<'_, Self>,
        exc_type: Option<Bound<'_, PyAny>>,
        _exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let py = slf.py();
        let view = slf.get().state().view.take();
        let released = match view {
            Some(v) => v.bind(py).call_method0("release").map(drop),
            None => Ok(()),
        };
        let failed = exc_type.is_some_and(|t| !t.is_none());
        let leaked = {
            let mut st = slf.get().state();
            // A slice or an array of the memoryview (which then cannot be released), or a
            // buffer taken from the reservation itself.
            let leaked = released.is_err() || st.exports > 0;
            st.abandon_when_unexported |= leaked;
            leaked
        };
        if leaked {
            if failed {
                return Ok(false); // the block's own exception goes on
            }
            let err = PyBufferError::new_err(
                "a view of the reservation outlived its with block: the message is abandoned \
                 (when that view goes); copy into the memoryview, keep no slice or array of it",
            );
            err.set_cause(py, released.err());
            return Err(err);
        }
        let codec = slf.get().codec;
        slf.get().end((!failed).then_some(codec))?;
        Ok(false)
    }

    /// Publishes the message (without `with`): every buffer of it must be released first.
    fn commit(&self) -> PyResult<()> {
        self.end(Some(self.codec))
    }

    /// Gives the room back without publishing anything.
    fn abandon(&self) -> PyResult<()> {
        self.end(None)
    }

    /// Whether the reservation is still open (neither committed nor abandoned).
    #[getter]
    fn open(&self) -> bool {
        self.state().open.is_some()
    }

    fn __len__(&self) -> usize {
        self.len
    }

    /// # Safety
    ///
    /// Called by CPython with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let ptr = {
            let mut st = slf.get().state();
            let ptr = match &st.open {
                Some(o) if !st.abandon_when_unexported => o.to.ptr(&o.loan),
                _ => {
                    return Err(ViewReleasedError::new_err(
                        "this reservation was committed or abandoned: its bytes are no longer \
                         yours",
                    ))
                }
            };
            st.exports += 1;
            ptr
        };
        // SAFETY: `ptr..ptr + len` is the loan's bytes in the ring mapping, kept open (and
        // mapped, through the handle in `Open`) while `exports > 0`; PyBuffer_FillInfo takes a
        // reference to `slf`, so the object outlives the buffer. Writable.
        let r = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                ptr.cast(),
                slf.get().len as pyo3::ffi::Py_ssize_t,
                0,
                flags,
            )
        };
        if r == -1 {
            slf.get().state().exports -= 1;
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    /// # Safety
    ///
    /// Called by CPython for a buffer filled by `__getbuffer__`.
    unsafe fn __releasebuffer__(slf: Bound<'_, Self>, _view: *mut pyo3::ffi::Py_buffer) {
        let mut st = slf.get().state();
        st.exports = st.exports.saturating_sub(1);
        if st.exports == 0 && st.abandon_when_unexported {
            if let Some(o) = st.open.take() {
                o.to.end(o.loan, None);
            }
        }
    }

    fn __repr__(&self) -> String {
        let what = if self.open() { "open" } else { "ended" };
        format!("<shmq.Reservation of {} bytes, {what}>", self.len)
    }
}

impl Drop for PyReservation {
    fn drop(&mut self) {
        // Never entered nor ended (and no buffer can be alive: each holds a reference).
        if let Some(o) = self.state().open.take() {
            o.to.end(o.loan, None);
        }
    }
}

/// Sends an out-of-band pickle: laid out straight into a loan when it fits the ring (one copy
/// of each buffer, no intermediate `bytes`), otherwise from private memory (side segments).
pub(crate) fn send_frame<T: Lends + crate::send::Sender>(
    att: &Attachment<T>,
    noun: Noun,
    py: Python<'_>,
    frame: Frame<'_>,
    wait: Wait,
) -> PyResult<()> {
    let len = frame.len();
    let max = att.get(py)?.max_message_size();
    if len as u64 > max {
        let payload = crate::buffer::Payload::Frame(frame);
        return crate::send::send_payloads(att, noun, py, &[(CODEC_PICKLE_OOB, payload)], wait);
    }
    let (to, loan) = open_loan(att, noun, py, len, wait)?;
    let (main, bufs) = frame.parts();
    let write = move || {
        // SAFETY: the loan is open until `end` below, `len` bytes long, and only this call
        // can reach it.
        let dst = unsafe { std::slice::from_raw_parts_mut(Lends::ptr(&*to, &loan), len) };
        frame::write_parts(main, bufs, dst);
        Lends::end(&*to, loan, Some(CODEC_PICKLE_OOB));
    };
    if len >= crate::buffer::COPY_WITHOUT_GIL {
        py.detach(write);
    } else {
        write();
    }
    Ok(())
}

/// Encoded payloads of a broadcast at least this large are published through a loan.
pub(crate) const IN_PLACE_MIN: usize = 64 * 1024;

/// Publishes a large encoded payload of a broadcast through a loan, whose record never wraps
/// around the ring's end (the core puts a filler before it instead): every subscriber finds
/// it in one piece, so `get(copy=False)` lends it instead of copying it out (1 MiB messages
/// in a 4 MiB ring wrapped one time in four), and a copy out is one `memcpy`. Returns
/// `false`, having sent nothing, when the plain send is for it: a queue, a small payload, one
/// for a side segment, no loan free now (other threads' reservations hold them: a put does
/// not wait for those), or this thread holds a reservation of the handle (a loan inside it
/// is refused: it could wait behind that uncommitted record for ever).
pub(crate) fn put_in_place<T: Lends>(
    att: &Attachment<T>,
    noun: Noun,
    py: Python<'_>,
    codec: u16,
    payload: &[u8],
    wait: Wait,
) -> PyResult<bool> {
    let len = payload.len();
    if len < IN_PLACE_MIN {
        return Ok(false);
    }
    let to = att.get(py)?;
    if len as u64 > to.max_message_size() || !to.large_puts_in_place() {
        return Ok(false);
    }
    let mut w = att.detached_waiter();
    let loan = match py.detach(|| to.loan(len, wait, &mut w)) {
        Ok(l) => l,
        Err(SendError::WouldDeadlock(_)) => return Ok(false),
        Err(e) => {
            return Err(w
                .take_error()
                .unwrap_or_else(|| send_error(noun, &att.name, e)))
        }
    };
    let write = move || {
        // SAFETY: the loan is open until `end` below, `len` bytes long, and only this call
        // can reach it.
        let dst = unsafe { std::slice::from_raw_parts_mut(Lends::ptr(&*to, &loan), len) };
        dst.copy_from_slice(payload);
        Lends::end(&*to, loan, Some(codec));
    };
    if len >= crate::buffer::COPY_WITHOUT_GIL {
        py.detach(write);
    } else {
        write();
    }
    Ok(true)
}

/// `numpy.empty`, if NumPy is installed: its large allocations are backed by huge pages
/// (`madvise`), where a fresh `bytearray` of the same size takes a page fault per 4 KiB
/// (measured on this 2-core VM: a 64 MiB copy into a new bytearray 140 ms, into a new NumPy
/// array 38 ms, into memory already touched 10 ms).
static NUMPY_EMPTY: pyo3::sync::PyOnceLock<Option<Py<PyAny>>> = pyo3::sync::PyOnceLock::new();

/// A new writable buffer object of `len` bytes, uninitialised: a NumPy `uint8` array, or a
/// `bytearray` without NumPy.
fn fresh_buffer(py: Python<'_>, len: usize) -> PyResult<Bound<'_, PyAny>> {
    let empty = NUMPY_EMPTY.get_or_init(py, || {
        py.import("numpy")
            .and_then(|np| np.getattr("empty"))
            .ok()
            .map(Bound::unbind)
    });
    if let Some(empty) = empty {
        return empty.bind(py).call1((len, "u1"));
    }
    // SAFETY: a NULL source makes an uninitialised bytearray of `len` bytes (no zero-fill);
    // the caller writes every byte before Python code sees it.
    unsafe {
        let p = pyo3::ffi::PyByteArray_FromStringAndSize(std::ptr::null(), len as isize);
        if p.is_null() {
            return Err(PyErr::fetch(py));
        }
        Ok(Bound::from_owned_ptr(py, p))
    }
}

/// A frame copied out of the ring into a new private buffer (one copy; the arrays rebuilt
/// over it are writable).
pub(crate) fn copy_of<'py>(
    py: Python<'py>,
    first: &[u8],
    second: &[u8],
) -> PyResult<Bound<'py, PyAny>> {
    let obj = fresh_buffer(py, first.len() + second.len())?;
    let mut view = WritableView::of(&obj)?;
    let dst = view.as_mut_slice();
    dst[..first.len()].copy_from_slice(first);
    dst[first.len()..].copy_from_slice(second);
    Ok(obj)
}

/// A writable view of a buffer object, released on drop.
struct WritableView(Box<pyo3::ffi::Py_buffer>);

impl WritableView {
    fn of(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        // SAFETY: Py_buffer is a plain C struct; all-zero is its documented empty state.
        let mut view: Box<pyo3::ffi::Py_buffer> = Box::new(unsafe { std::mem::zeroed() });
        let flags = pyo3::ffi::PyBUF_SIMPLE | pyo3::ffi::PyBUF_WRITABLE;
        // SAFETY: `obj` is valid (GIL held through `Bound`); `view` is a valid out-pointer.
        let r = unsafe { pyo3::ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags) };
        if r != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(Self(view))
    }

    fn as_slice(&self) -> &[u8] {
        if self.0.len <= 0 || self.0.buf.is_null() {
            return &[];
        }
        // SAFETY: a successful PyBUF_SIMPLE request: `len` contiguous bytes, kept alive (and
        // unresizable) until PyBuffer_Release in drop.
        unsafe { std::slice::from_raw_parts(self.0.buf as *const u8, self.0.len as usize) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.0.len <= 0 || self.0.buf.is_null() {
            return &mut [];
        }
        // SAFETY: as `as_slice`, and PyBUF_WRITABLE was granted; `&mut self` makes it unique.
        unsafe { std::slice::from_raw_parts_mut(self.0.buf as *mut u8, self.0.len as usize) }
    }
}

impl Drop for WritableView {
    fn drop(&mut self) {
        // SAFETY: filled by a successful PyObject_GetBuffer, released once; we hold the GIL
        // (made and dropped inside functions that take `Python`).
        unsafe { pyo3::ffi::PyBuffer_Release(&mut *self.0) }
    }
}

/// Decodes a frame copied into a private buffer by [`copy_of`].
pub(crate) fn loads_copied<'py>(
    codecs: &Codecs,
    buf: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = buf.py();
    // Exported (so unresizable) while `data` is used.
    let view = WritableView::of(&buf)?;
    let data = view.as_slice();
    if !codecs.allow_pickle {
        return Err(frame::refused(py, data));
    }
    frame::loads(&crate::codec::pickle_loads(py)?, &buf, data, false)
}

/// Decodes a frame that arrived as `bytes` (a batch): buffers copied out, so arrays come
/// out writable.
pub(crate) fn loads_bytes<'py>(
    codecs: &Codecs,
    raw: &Bound<'py, PyBytes>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = raw.py();
    if !codecs.allow_pickle {
        return Err(frame::refused(py, raw.as_bytes()));
    }
    frame::loads(
        &crate::codec::pickle_loads(py)?,
        raw.as_any(),
        raw.as_bytes(),
        true,
    )
}
