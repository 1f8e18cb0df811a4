//! `shmq._shmq`: the Python binding of the `shmq` crate. It converts types, applies codecs,
//! releases the GIL while waiting and maps errors; the queue logic is in the Rust crates.

mod broadcast;
mod send;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyType};
use shmq::{OpenError, TryRecvError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Codec ids. 0..=1000 are shmq's; 1001 and up are the users'.
const CODEC_RAW: u16 = 0;
const CODEC_PICKLE: u16 = 1;
const CODEC_MSGPACK: u16 = 2;
const FIRST_USER_CODEC: u16 = 1001;

/// Longest sleep without checking for Ctrl-C (a signal also ends the sleep at once).
const SLICE: Duration = Duration::from_millis(200);
/// Pickle/msgpack payloads at least this large are decoded straight from the ring; smaller
/// ones are cheaper to copy into `bytes` first than to wrap in a buffer object.
const DECODE_IN_PLACE_MIN: usize = 16 * 1024;
/// `get_many` stops before a message that would take a batch past this many payload bytes
/// (the first message always comes): holding many large `bytes` at once makes glibc's
/// allocator unmap and remap memory for every batch (measured: 1 MiB messages 10× slower).
const GET_MANY_MAX_BYTES: u64 = 1 << 20;
/// Payloads at least this large are copied into the ring without the GIL.
const COPY_WITHOUT_GIL: usize = 256 * 1024;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static PICKLE: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
static MSGPACK: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
static USER_CODECS: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

/// An exception of `shmq._errors` by class name.
fn error(py: Python<'_>, class: &str, msg: impl Into<String>) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let module = ERRORS.get_or_try_init(py, || py.import("shmq._errors").map(Bound::unbind))?;
        let cls = module.bind(py).getattr(class)?.cast_into::<PyType>()?;
        Ok(PyErr::from_type(cls, msg.into()))
    };
    make().unwrap_or_else(|e| e)
}

/// A `DecodeError` (or subclass) carrying the message's raw bytes and codec id.
fn decode_error(
    py: Python<'_>,
    class: &str,
    msg: String,
    raw: &Bound<'_, PyBytes>,
    codec: u16,
    cause: Option<PyErr>,
) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let module = ERRORS.get_or_try_init(py, || py.import("shmq._errors").map(Bound::unbind))?;
        let exc = module.bind(py).getattr(class)?.call1((msg, raw, codec))?;
        let err = PyErr::from_value(exc);
        err.set_cause(py, cause);
        Ok(err)
    };
    make().unwrap_or_else(|e| e)
}

fn open_error(py: Python<'_>, e: OpenError) -> PyErr {
    let msg = e.to_string();
    let class = match e {
        OpenError::AlreadyExists(_) => "QueueExistsError",
        OpenError::DoesNotExist(_) => "QueueNotFoundError",
        OpenError::PermissionDenied(_) => "QueuePermissionError",
        OpenError::InvalidName(_) => "InvalidNameError",
        OpenError::InvalidArgument(_) => return PyValueError::new_err(msg),
        OpenError::Corrupted { .. } | OpenError::NotInitialized(_) => "CorruptedQueueError",
        OpenError::TooManyProcesses { .. } => "TooManyProcessesError",
        OpenError::WrongKind { .. } => "WrongKindError",
        _ => return PyErr::new::<pyo3::exceptions::PyOSError, _>(msg),
    };
    error(py, class, msg)
}

fn pickle(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    PICKLE.get_or_try_init(py, || {
        let m = py.import("pickle")?;
        Ok((m.getattr("dumps")?.unbind(), m.getattr("loads")?.unbind()))
    })
}

fn msgpack(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    MSGPACK.get_or_try_init(py, || {
        let m = py.import("msgpack").map_err(|e| {
            let err = error(
                py,
                "CodecError",
                "the msgpack codec needs the 'msgpack' package",
            );
            err.set_cause(py, Some(e));
            err
        })?;
        let kw = PyDict::new(py);
        kw.set_item("use_bin_type", true)?;
        let packb = py
            .import("functools")?
            .getattr("partial")?
            .call((m.getattr("packb")?,), Some(&kw))?;
        let kw = PyDict::new(py);
        kw.set_item("raw", false)?;
        kw.set_item("strict_map_key", false)?;
        let unpackb = py
            .import("functools")?
            .getattr("partial")?
            .call((m.getattr("unpackb")?,), Some(&kw))?;
        Ok((packb.unbind(), unpackb.unbind()))
    })
}

fn user_codecs(py: Python<'_>) -> &Bound<'_, PyDict> {
    USER_CODECS
        .get_or_init(py, || PyDict::new(py).unbind())
        .bind(py)
}

/// Registers a user codec under `codec_id` (>= 1001) for every queue of this process.
#[pyfunction]
fn register_codec(
    py: Python<'_>,
    codec_id: i64,
    encode: Bound<'_, PyAny>,
    decode: Bound<'_, PyAny>,
) -> PyResult<()> {
    if !(i64::from(FIRST_USER_CODEC)..=i64::from(u16::MAX)).contains(&codec_id) {
        return Err(PyValueError::new_err(format!(
            "user codec ids are {FIRST_USER_CODEC}..=65535, got {codec_id}"
        )));
    }
    if !encode.is_callable() || !decode.is_callable() {
        return Err(PyTypeError::new_err("encode and decode must be callable"));
    }
    user_codecs(py).set_item(codec_id, (encode, decode))
}

/// A contiguous view of a bytes-like object, held for the duration of a put.
struct BufferView {
    view: Box<pyo3::ffi::Py_buffer>,
}

impl BufferView {
    fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
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

    fn as_slice(&self) -> &[u8] {
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
enum Payload<'py> {
    Bytes(Bound<'py, PyBytes>),
    Buffer(BufferView),
}

impl Payload<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Bytes(b) => b.as_bytes(),
            Payload::Buffer(v) => v.as_slice(),
        }
    }
}

fn bytes_like<'py>(obj: Bound<'py, PyAny>) -> PyResult<Payload<'py>> {
    match obj.cast_into::<PyBytes>() {
        Ok(b) => Ok(Payload::Bytes(b)),
        Err(e) => {
            let obj = e.into_inner();
            BufferView::get(&obj).map(Payload::Buffer).map_err(|_| {
                PyTypeError::new_err(format!(
                    "the raw codec needs a bytes-like object, not {}",
                    obj.get_type()
                        .name()
                        .map_or_else(|_| "?".into(), |n| n.to_string())
                ))
            })
        }
    }
}

/// What a Python handle can be attached to: a queue, a broadcast publisher or subscriber.
trait Endpoint: Send + Sync + Sized {
    /// After `fork()`, in the child: an attachment of the child's own.
    fn reopen_in_child(&self) -> Result<Self, OpenError>;
    /// After `fork()`, in the child: drop the parent's attachment without detaching it.
    fn forget_in_child(self);
    /// Wake every blocked call (so that a `close()` from another thread is noticed).
    fn wake_all_waiters(&self);
}

macro_rules! endpoint {
    ($t:ty) => {
        impl Endpoint for $t {
            fn reopen_in_child(&self) -> Result<Self, OpenError> {
                <$t>::reopen_in_child(self)
            }
            fn forget_in_child(self) {
                <$t>::forget_in_child(self)
            }
            fn wake_all_waiters(&self) {
                <$t>::wake_all_waiters(self)
            }
        }
    };
}
endpoint!(shmq::Queue);
endpoint!(shmq::Broadcast);
endpoint!(shmq::Subscriber);

/// This process's attachment, as seen by one Python handle.
enum Handle<T> {
    Attached(Arc<T>),
    /// Inherited across `fork()`: the parent's attachment. The child attaches on first use,
    /// so a child that never touches the queue never attaches (nor leaks it by dying).
    Inherited(Arc<T>),
    Closed,
}

/// The attachment behind a Python handle: lazily re-attached after `fork()`, closed once.
struct Attachment<T: Endpoint> {
    handle: Mutex<Handle<T>>,
    closed: AtomicBool,
    name: String,
    /// What the handle is called in errors: "queue", "broadcast".
    what: &'static str,
}

impl<T: Endpoint> Attachment<T> {
    fn new(t: T, name: String, what: &'static str) -> Self {
        Self {
            handle: Mutex::new(Handle::Attached(Arc::new(t))),
            closed: AtomicBool::new(false),
            name,
            what,
        }
    }

    fn get(&self, py: Python<'_>) -> PyResult<Arc<T>> {
        let mut handle = self.handle.lock().unwrap_or_else(|p| p.into_inner());
        match &*handle {
            Handle::Attached(q) => Ok(q.clone()),
            Handle::Closed => Err(self.closed_error(py)),
            Handle::Inherited(old) => {
                let fresh = py
                    .detach(|| old.reopen_in_child())
                    .map_err(|e| open_error(py, e))?;
                let fresh = Arc::new(fresh);
                if let Handle::Inherited(old) =
                    std::mem::replace(&mut *handle, Handle::Attached(fresh.clone()))
                {
                    match Arc::try_unwrap(old) {
                        Ok(q) => q.forget_in_child(),
                        // Clones held by threads that do not exist in the child: never dropped.
                        Err(arc) => std::mem::forget(arc),
                    }
                }
                Ok(fresh)
            }
        }
    }

    fn closed_error(&self, py: Python<'_>) -> PyErr {
        error(
            py,
            "QueueClosedError",
            format!("{} {:?} is closed", self.what, self.name),
        )
    }

    /// Runs `f` on this process's own attachment, if it has one (never attaches).
    fn if_attached(&self, f: impl FnOnce(&T)) {
        if let Handle::Attached(t) = &*self.handle.lock().unwrap_or_else(|p| p.into_inner()) {
            f(t);
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Detaches; idempotent. Calls of this handle blocked in other threads hold the
    /// attachment: they are woken, see `closed` and return, and the last one out detaches.
    fn shut(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::Release);
        let handle = std::mem::replace(
            &mut *self.handle.lock().unwrap_or_else(|p| p.into_inner()),
            Handle::Closed,
        );
        let q = match handle {
            Handle::Attached(q) => q,
            // Never attached in this process: nothing to detach, the parent's is the parent's.
            Handle::Inherited(q) => {
                match Arc::try_unwrap(q) {
                    Ok(q) => q.forget_in_child(),
                    Err(arc) => std::mem::forget(arc),
                }
                return;
            }
            Handle::Closed => return,
        };
        // Give blocked calls a moment (without the GIL, which they need) so that the detach
        // normally happens before we return.
        let weak = Arc::downgrade(&q);
        q.wake_all_waiters();
        drop(q);
        py.detach(|| {
            let until = Instant::now() + Duration::from_millis(500);
            while weak.strong_count() > 0 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
    }

    /// In a child after `fork()`: the handle is the parent's attachment; the child attaches
    /// on first use.
    fn inherit_after_fork(&self) {
        // A mutex another thread held at fork time stays locked in the child: then leave it.
        if let Ok(mut guard) = self.handle.try_lock() {
            *guard = match std::mem::replace(&mut *guard, Handle::Closed) {
                Handle::Attached(q) | Handle::Inherited(q) => Handle::Inherited(q),
                Handle::Closed => Handle::Closed,
            };
        }
    }

    /// Runs `attempt` (with the GIL) until it yields, waiting with `wait` (without the GIL)
    /// in between; `Ok(None)` at the deadline. Ctrl-C raises KeyboardInterrupt promptly.
    fn blocking<R>(
        &self,
        py: Python<'_>,
        deadline: Option<Instant>,
        mut attempt: impl FnMut() -> PyResult<Option<R>>,
        wait: impl Fn(Option<Instant>) -> PyResult<bool> + Sync,
    ) -> PyResult<Option<R>> {
        loop {
            if let Some(v) = attempt()? {
                return Ok(Some(v));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            py.detach(|| wait(deadline))?;
            py.check_signals()?;
            if self.is_closed() {
                return Err(self.closed_error(py)); // closed by another thread meanwhile
            }
        }
    }
}

/// Messages a handle already took but has not returned yet: those that followed an
/// undecodable one in a batch. Served first by the next get.
#[derive(Default)]
struct Stash {
    items: Mutex<VecDeque<(u16, Py<PyBytes>)>>,
    any: AtomicBool,
}

impl Stash {
    fn push_front<'py>(&self, items: impl Iterator<Item = RawMessage<'py>>) {
        let mut stash = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let items: Vec<_> = items.map(|(c, b)| (c, b.unbind())).collect();
        for item in items.into_iter().rev() {
            stash.push_front(item);
        }
        self.any.store(!stash.is_empty(), Ordering::Release);
    }

    /// Up to `max` stashed messages, if there are any.
    fn take<'py>(&self, py: Python<'py>, max: usize) -> Option<Vec<RawMessage<'py>>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let mut stash = self.items.lock().unwrap_or_else(|p| p.into_inner());
        let n = max.min(stash.len());
        let taken: Vec<_> = stash
            .drain(..n)
            .map(|(c, b)| (c, b.into_bound(py)))
            .collect();
        self.any.store(!stash.is_empty(), Ordering::Release);
        (!taken.is_empty()).then_some(taken)
    }

    /// After `fork()`: the stash holds messages the parent took; they are the parent's.
    fn clear_after_fork(&self) {
        if let Ok(mut stash) = self.items.try_lock() {
            stash.clear();
            self.any.store(false, Ordering::Release);
        }
    }
}

/// A message's payload as `bytes`, read from its side segment when it has one (then removed
/// if `take`: a queue's consumer owns the message).
fn message_bytes<'py>(
    py: Python<'py>,
    q: &shmq::Queue,
    m: &shmq::RecordView<'_>,
    take: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    match q.open_side(m) {
        Ok(None) => to_bytes(py, m),
        Ok(Some(side)) => {
            let b = PyBytes::new(py, side.bytes());
            if take {
                q.remove_side(&side);
            }
            Ok(b)
        }
        Err(w) => Err(recv_error(py, q, w)),
    }
}

fn to_bytes<'py>(py: Python<'py>, m: &shmq::RecordView<'_>) -> PyResult<Bound<'py, PyBytes>> {
    let (first, second) = m.parts();
    bytes_of_parts(py, first, second)
}

/// A payload in (up to) two parts as a new `bytes` object: one copy out of the ring
/// (`new_with` would zero-fill the buffer first, so it is used only when the payload wraps
/// around the ring).
fn bytes_of_parts<'py>(
    py: Python<'py>,
    first: &[u8],
    second: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    if second.is_empty() {
        return Ok(PyBytes::new(py, first));
    }
    PyBytes::new_with(py, first.len() + second.len(), |buf| {
        buf[..first.len()].copy_from_slice(first);
        buf[first.len()..].copy_from_slice(second);
        Ok(())
    })
}

/// A received message before decoding: codec id and bytes.
type RawMessage<'py> = (u16, Bound<'py, PyBytes>);

/// A message taken from a ring: decoded in place, or copied out to be decoded (or to raise
/// its decoding error with its bytes).
enum Decoded<'py> {
    Object(Bound<'py, PyAny>),
    Raw(u16, Bound<'py, PyBytes>),
}

/// The Python-visible queue (subclassed by `shmq.Queue`).
#[pyclass(module = "shmq._shmq", subclass, frozen, name = "_Queue")]
struct PyQueue {
    att: Attachment<shmq::Queue>,
    stash: Stash,
    codecs: Codecs,
}

/// How a handle encodes what it puts and decodes what it gets.
struct Codecs {
    /// Default codec of puts.
    codec: u16,
    allow_pickle: bool,
}

fn deadline_of(block: bool, timeout: Option<f64>) -> PyResult<Option<Instant>> {
    if !block {
        return Ok(Some(Instant::now()));
    }
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(
            "'timeout' must be a non-negative number",
        )),
        Some(t) => Ok(Some(
            Instant::now()
                .checked_add(Duration::from_secs_f64(t.min(1e9)))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86400 * 365 * 30)),
        )),
    }
}

impl PyQueue {
    fn queue(&self, py: Python<'_>) -> PyResult<Arc<shmq::Queue>> {
        self.att.get(py)
    }
}

impl Codecs {
    /// Wraps an encoder's failure in a `CodecError` (the original as its cause).
    fn encode_error(py: Python<'_>, what: String, cause: PyErr) -> PyErr {
        let err = error(py, "CodecError", format!("{what}: {cause}"));
        err.set_cause(py, Some(cause));
        err
    }

    fn encode<'py>(&self, obj: Bound<'py, PyAny>, codec: u16) -> PyResult<Payload<'py>> {
        let py = obj.py();
        match codec {
            CODEC_RAW => bytes_like(obj),
            CODEC_PICKLE => {
                if !self.allow_pickle {
                    return Err(error(
                        py,
                        "PickleNotAllowedError",
                        "pickle is disabled for this queue (allow_pickle=False)",
                    ));
                }
                let type_name = obj
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                let out = pickle(py)?.0.bind(py).call1((obj, 5)).map_err(|e| {
                    Self::encode_error(py, format!("could not pickle a {type_name}"), e)
                })?;
                Ok(Payload::Bytes(out.cast_into::<PyBytes>()?))
            }
            CODEC_MSGPACK => {
                let out = msgpack(py)?.0.bind(py).call1((obj,)).map_err(|e| {
                    let err = error(py, "CodecError", format!("msgpack could not encode: {e}"));
                    err.set_cause(py, Some(e));
                    err
                })?;
                Ok(Payload::Bytes(out.cast_into::<PyBytes>()?))
            }
            id => {
                let Some(pair) = user_codecs(py).get_item(id)? else {
                    return Err(error(
                        py,
                        "CodecError",
                        format!("no codec registered under id {id}"),
                    ));
                };
                let out = pair.get_item(0)?.call1((obj,)).map_err(|e| {
                    Self::encode_error(py, format!("the encoder of codec {id} failed"), e)
                })?;
                let type_name = out
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default();
                bytes_like(out).map_err(|_| {
                    error(
                        py,
                        "CodecError",
                        format!("the encoder of codec {id} returned {type_name}, not bytes-like"),
                    )
                })
            }
        }
    }

    fn decode<'py>(&self, raw: Bound<'py, PyBytes>, codec: u16) -> PyResult<Bound<'py, PyAny>> {
        let py = raw.py();
        let fail = |what: &str, e: PyErr| {
            let msg = format!("could not decode a message with codec {codec} ({what}): {e}");
            decode_error(py, "DecodeError", msg, &raw, codec, Some(e))
        };
        match codec {
            CODEC_RAW => Ok(raw.into_any()),
            CODEC_PICKLE => {
                if !self.allow_pickle {
                    let msg = "received a pickled message but allow_pickle=False; \
                               its bytes are in the exception's .raw"
                        .to_owned();
                    return Err(decode_error(
                        py,
                        "PickleNotAllowedError",
                        msg,
                        &raw,
                        codec,
                        None,
                    ));
                }
                pickle(py)?
                    .1
                    .bind(py)
                    .call1((&raw,))
                    .map_err(|e| fail("pickle", e))
            }
            CODEC_MSGPACK => msgpack(py)
                .and_then(|m| m.1.bind(py).call1((&raw,)))
                .map_err(|e| fail("msgpack", e)),
            id => match user_codecs(py).get_item(id)? {
                Some(pair) => pair
                    .get_item(1)
                    .and_then(|d| d.call1((&raw,)))
                    .map_err(|e| fail("user codec", e)),
                None => {
                    let msg = format!("no codec registered under id {id}; its bytes are in .raw");
                    Err(decode_error(py, "DecodeError", msg, &raw, codec, None))
                }
            },
        }
    }

    /// Decodes a pickle or msgpack message straight from a buffer object (no copy to
    /// `bytes` first). `None` when that is not possible or failed: the caller then decodes a
    /// copy with [`Codecs::decode`], which raises the proper error with the message's bytes.
    /// Exceptions that are not `Exception`s (KeyboardInterrupt, SystemExit) propagate.
    fn decode_buffer<'py>(
        &self,
        buf: &Bound<'py, PyAny>,
        codec: u16,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = buf.py();
        let loads = match codec {
            CODEC_PICKLE if self.allow_pickle => pickle(py)?.1.bind(py).clone(),
            CODEC_MSGPACK => match msgpack(py) {
                Ok(m) => m.1.bind(py).clone(),
                Err(_) => return Ok(None), // raised properly by `decode`
            },
            _ => return Ok(None),
        };
        match loads.call1((buf,)) {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyException>(py) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Decodes a message read in place from the ring (`parts`, borrowed while the caller holds
    /// it): pickle and msgpack straight from the shared memory, anything else (or a message
    /// that fails to decode, to raise the error with its bytes) from a copy.
    fn decode_in_place<'py>(
        &self,
        py: Python<'py>,
        keep_mapped: impl FnOnce() -> Arc<dyn std::any::Any + Send + Sync>,
        codec: u16,
        parts: (&[u8], &[u8]),
    ) -> PyResult<Decoded<'py>> {
        let (first, second) = parts;
        if second.is_empty()
            && first.len() >= DECODE_IN_PLACE_MIN
            && (codec == CODEC_PICKLE || codec == CODEC_MSGPACK)
        {
            let view = Bound::new(py, broadcast::PyMessageView::new(keep_mapped(), first))?;
            if let Some(obj) = self.decode_buffer(view.as_any(), codec)? {
                return Ok(Decoded::Object(obj));
            }
        }
        Ok(Decoded::Raw(codec, bytes_of_parts(py, first, second)?))
    }

    fn resolve_codec(&self, codec: Option<i64>) -> PyResult<u16> {
        let Some(c) = codec else {
            return Ok(self.codec);
        };
        match u16::try_from(c) {
            Ok(id) if id <= CODEC_MSGPACK || id >= FIRST_USER_CODEC => Ok(id),
            _ => Err(PyValueError::new_err(format!(
                "codec id {c} is neither built in (0, 1, 2) nor a user id \
                 ({FIRST_USER_CODEC}..=65535)"
            ))),
        }
    }

    /// Decodes a batch in order. At the first message that cannot be decoded: if messages
    /// before it decoded, returns them and keeps it and the rest for the next call;
    /// otherwise keeps the rest and raises its `DecodeError`. Nothing taken is lost.
    fn decode_batch<'py>(
        &self,
        raws: Vec<RawMessage<'py>>,
        stash: &Stash,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let mut out = Vec::with_capacity(raws.len());
        let mut rest = raws.into_iter();
        while let Some((codec, raw)) = rest.next() {
            match self.decode(raw.clone(), codec) {
                Ok(v) => out.push(v),
                Err(e) => {
                    let failed = (!out.is_empty()).then_some((codec, raw));
                    stash.push_front(failed.into_iter().chain(rest));
                    return if out.is_empty() { Err(e) } else { Ok(out) };
                }
            }
        }
        Ok(out)
    }
}

fn recv_error(py: Python<'_>, q: &shmq::Queue, what: &str) -> PyErr {
    error(
        py,
        "CorruptedQueueError",
        format!("queue {:?}: {what}", q.name()),
    )
}

#[pymethods]
impl PyQueue {
    #[new]
    #[pyo3(signature = (name, *, capacity, maxsize=0, create=None, mode=0o600, codec=1,
                        allow_pickle=true, persistent=false, max_processes=128, allow_large=false))]
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
    ) -> PyResult<Self> {
        let codec = u16::try_from(codec)
            .map_err(|_| PyValueError::new_err(format!("codec id {codec} is out of range")))?;
        let b = shmq::Queue::builder(&name)
            .capacity(capacity)
            .maxsize(maxsize)
            .mode(mode)
            .persistent(persistent)
            .max_processes(max_processes)
            .allow_large(allow_large);
        let q = py
            .detach(|| match create {
                Some(true) => b.create(),
                Some(false) => b.open(),
                None => b.open_or_create(),
            })
            .map_err(|e| open_error(py, e))?;
        Ok(Self {
            att: Attachment::new(q, name, "queue"),
            stash: Stash::default(),
            codecs: Codecs {
                codec,
                allow_pickle,
            },
        })
    }

    /// Puts `obj`, waiting for space if `block` (at most `timeout` seconds if given).
    #[pyo3(signature = (obj, block=true, timeout=None, *, codec=None))]
    fn put(
        &self,
        py: Python<'_>,
        obj: Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
        codec: Option<i64>,
    ) -> PyResult<()> {
        let deadline = deadline_of(block, timeout)?;
        let codec = self.codecs.resolve_codec(codec)?;
        let payload = self.codecs.encode(obj, codec)?;
        send::send_payloads(&self.att, py, &[(codec, payload)], deadline)
    }

    /// Puts `obj` without waiting; raises `Full` if there is no room.
    fn put_nowait(&self, py: Python<'_>, obj: Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, obj, false, None, None)
    }

    /// Puts every object of `objs`, in order. A batch that fits in the ring goes in at once
    /// (all or nothing); a larger one goes in consecutive chunks that do.
    #[pyo3(signature = (objs, block=true, timeout=None, *, codec=None))]
    fn put_many(
        &self,
        py: Python<'_>,
        objs: Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
        codec: Option<i64>,
    ) -> PyResult<()> {
        let deadline = deadline_of(block, timeout)?;
        let codec = self.codecs.resolve_codec(codec)?;
        // Encode and check everything first: a bad object or an oversized message raises
        // before anything is put.
        send::send_objects(&self.att, &self.codecs, py, objs, codec, deadline)
    }

    /// Removes and returns an object, waiting if `block` (at most `timeout` seconds if
    /// given); raises `Empty` when there is none.
    #[pyo3(signature = (block=true, timeout=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let deadline = deadline_of(block, timeout)?;
        if let Some(mut stashed) = self.stash.take(py, 1) {
            let (codec, raw) = stashed.remove(0);
            return self.codecs.decode(raw, codec);
        }
        let q = self.queue(py)?;
        let attempt = || -> PyResult<Option<Decoded<'py>>> {
            // Decoded while the record is claimed (no copy to `bytes` first): the claim keeps
            // the bytes in place; the claim ends (CONSUMED) even if decoding raises.
            let r = q.try_recv_with(|m| {
                if m.flags & shmq::RECORD_FLAG_SIDE != 0 {
                    let b = message_bytes(py, &q, &m, true)?;
                    return Ok(Decoded::Raw(m.codec, b));
                }
                let keep = || -> Arc<dyn std::any::Any + Send + Sync> { q.clone() };
                self.codecs.decode_in_place(py, keep, m.codec, m.parts())
            });
            match r {
                Ok(d) => d.map(Some),
                Err(TryRecvError::Empty) => Ok(None),
                Err(TryRecvError::Corrupted(w)) => Err(recv_error(py, &q, w)),
            }
        };
        let wait = |d| Ok(q.wait_for_data(d, Some(SLICE)));
        match self.att.blocking(py, deadline, attempt, wait)? {
            Some(Decoded::Object(obj)) => Ok(obj),
            Some(Decoded::Raw(codec, raw)) => self.codecs.decode(raw, codec),
            None => Err(error(py, "Empty", "queue is empty")),
        }
    }

    /// Removes and returns an object without waiting; raises `Empty` if there is none.
    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, false, None)
    }

    /// Removes and returns a list of 1 to `max_messages` objects, waiting for the first if
    /// `block`; raises `Empty` when there is none.
    #[pyo3(signature = (max_messages=1000, block=true, timeout=None))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        max_messages: i64,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let Ok(max_messages @ 1..) = usize::try_from(max_messages) else {
            return Err(PyValueError::new_err(format!(
                "max_messages must be at least 1, got {max_messages}"
            )));
        };
        let deadline = deadline_of(block, timeout)?;
        if let Some(stashed) = self.stash.take(py, max_messages) {
            return PyList::new(py, self.codecs.decode_batch(stashed, &self.stash)?);
        }
        let q = self.queue(py)?;
        let attempt = || -> PyResult<Option<Vec<RawMessage<'py>>>> {
            let mut out = Vec::new();
            let mut alloc_err = None;
            let r =
                q.try_recv_many_limited(max_messages, GET_MANY_MAX_BYTES, |m| match message_bytes(
                    py, &q, &m, true,
                ) {
                    Ok(b) => out.push((m.codec, b)),
                    Err(e) => alloc_err = Some(e),
                });
            if let Some(e) = alloc_err {
                return Err(e);
            }
            match r {
                Ok(_) => Ok(Some(out)),
                Err(TryRecvError::Empty) => Ok(None),
                Err(TryRecvError::Corrupted(w)) => Err(recv_error(py, &q, w)),
            }
        };
        let wait = |d| Ok(q.wait_for_data(d, Some(SLICE)));
        match self.att.blocking(py, deadline, attempt, wait)? {
            Some(raws) => PyList::new(py, self.codecs.decode_batch(raws, &self.stash)?),
            None => Err(error(py, "Empty", "queue is empty")),
        }
    }

    /// Approximate number of queued messages.
    fn qsize(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.queue(py)?.len())
    }

    /// Whether the queue is empty (a snapshot).
    fn empty(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.queue(py)?.is_empty())
    }

    /// Whether the queue is full (a snapshot: a small message would not fit).
    fn full(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.queue(py)?.is_full())
    }

    /// Detaches this process; the last process to detach removes a non-persistent queue.
    /// Idempotent.
    fn close(&self, py: Python<'_>) {
        self.att.shut(py);
    }

    /// Removes the queue's name now; attached processes keep using it.
    fn unlink(&self, py: Python<'_>) -> PyResult<()> {
        let q = self.queue(py)?;
        q.unlink()
            .map_err(|e| PyErr::new::<pyo3::exceptions::PyOSError, _>(e.to_string()))
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.att.is_closed()
    }

    /// The queue's full name (namespace included).
    #[getter]
    fn name(&self) -> &str {
        &self.att.name
    }

    /// Default codec id of `put`.
    #[getter]
    fn codec_id(&self) -> u16 {
        self.codecs.codec
    }

    /// Whether pickle is allowed.
    #[getter]
    fn allow_pickle(&self) -> bool {
        self.codecs.allow_pickle
    }

    /// Ring size in bytes.
    #[getter]
    fn capacity(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.queue(py)?.capacity())
    }

    /// Message bound (0 = none).
    #[getter]
    fn maxsize(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.queue(py)?.maxsize())
    }

    /// Largest encoded message the queue can hold.
    #[getter]
    fn max_message_size(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.queue(py)?.max_message_size())
    }

    /// Whether the segment outlives its last process.
    #[getter]
    fn persistent(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.queue(py)?.is_persistent())
    }

    /// Whether this handle puts messages larger than the ring through side segments.
    #[getter]
    fn allow_large(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.queue(py)?.allows_large())
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
    /// on first use (see `Handle::Inherited`).
    fn _reattach_after_fork(&self) {
        self.att.inherit_after_fork();
        self.stash.clear_after_fork();
    }
}

/// Names of the queues present in /dev/shm.
#[pyfunction]
fn list_queues() -> PyResult<Vec<String>> {
    shmq::list_queues().map_err(|e| PyErr::new::<pyo3::exceptions::PyOSError, _>(e.to_string()))
}

/// Removes the queues whose attached processes are all dead; returns their names.
#[pyfunction]
#[pyo3(signature = (init_grace=60.0))]
fn gc(py: Python<'_>, init_grace: f64) -> PyResult<Vec<String>> {
    if init_grace.is_nan() || init_grace < 0.0 {
        return Err(PyValueError::new_err(
            "init_grace must be a non-negative number of seconds",
        ));
    }
    let grace = Duration::from_secs_f64(init_grace.min(1e9));
    py.detach(|| shmq::gc(grace))
        .map_err(|e| PyErr::new::<pyo3::exceptions::PyOSError, _>(e.to_string()))
}

/// Checks a queue name; raises `InvalidNameError`.
#[pyfunction]
fn validate_name(py: Python<'_>, name: &str) -> PyResult<()> {
    shmq::validate_name(name).map_err(|e| open_error(py, e))
}

#[pymodule(gil_used = true)]
fn _shmq(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyQueue>()?;
    m.add_class::<broadcast::PyPublisher>()?;
    m.add_class::<broadcast::PySubscriber>()?;
    m.add_class::<broadcast::PyMessageView>()?;
    m.add_function(wrap_pyfunction!(register_codec, m)?)?;
    m.add_function(wrap_pyfunction!(list_queues, m)?)?;
    m.add_function(wrap_pyfunction!(validate_name, m)?)?;
    m.add_function(wrap_pyfunction!(gc, m)?)?;
    m.add("CODEC_RAW", CODEC_RAW)?;
    m.add("CODEC_PICKLE", CODEC_PICKLE)?;
    m.add("CODEC_MSGPACK", CODEC_MSGPACK)?;
    m.add("FIRST_USER_CODEC", FIRST_USER_CODEC)?;
    m.add("SEGMENT_PREFIX", shmq::SEGMENT_PREFIX)?;
    Ok(())
}
