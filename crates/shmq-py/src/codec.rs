//! Codecs: Python objects to payloads and back (raw bytes, pickle, msgpack, user codecs),
//! and the stash of messages taken but not yet returned.

use crate::buffer::{bytes_like, Payload, PyMessageView, Taken};
use crate::errors::{decode_error, CodecError, InvalidArgumentError, PickleNotAllowedError};
use crate::frame::{Frame, CODEC_PICKLE_OOB};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyInt, PyString};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Codec ids. 0..=1000 are shmq's; 1001 and up are the users'.
pub(crate) const CODEC_RAW: u16 = 0;
pub(crate) const CODEC_PICKLE: u16 = 1;
pub(crate) const CODEC_MSGPACK: u16 = 2;
pub(crate) const FIRST_USER_CODEC: u16 = 1001;

/// The pickle protocol of every pickled message: 5 (Python 3.8+) carries large buffers
/// without an extra copy.
const PICKLE_PROTOCOL: u8 = 5;

static PICKLE: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
static MSGPACK: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
static USER_CODECS: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
/// `shmq._common.codec_id`: codec names are the Python package's (`register_codec(name=)`).
static CODEC_ID: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn pickle(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    PICKLE.get_or_try_init(py, || {
        let m = py.import("pickle")?;
        Ok((m.getattr("dumps")?.unbind(), m.getattr("loads")?.unbind()))
    })
}

/// `pickle.loads`.
pub(crate) fn pickle_loads(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    Ok(pickle(py)?.1.bind(py).clone())
}

/// Whether `obj` pickles without out-of-band buffers for sure: built-in scalars and text,
/// and small dicts, lists and tuples of them (a few levels deep). Those skip the buffer
/// callback, whose keyword call and list cost about a tenth of a small dict's put.
fn plain_pickle(obj: &Bound<'_, PyAny>) -> bool {
    let mut budget = PLAIN_PICKLE_BUDGET;
    plain_within(obj, PLAIN_PICKLE_DEPTH, &mut budget)
}

/// Objects [`plain_pickle`] looks at before it gives up (and the buffer callback is used).
const PLAIN_PICKLE_BUDGET: usize = 64;
/// Container levels it looks into.
const PLAIN_PICKLE_DEPTH: u32 = 3;

fn plain_within(obj: &Bound<'_, PyAny>, depth: u32, budget: &mut usize) -> bool {
    use pyo3::ffi;
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let p = obj.as_ptr();
    // SAFETY: `p` is a live object (we hold the GIL through `obj`); comparing its type
    // pointer with the built-in types' reads nothing else. Exact types only: a subclass may
    // pickle through its own `__reduce__`.
    let t = unsafe { ffi::Py_TYPE(p) };
    let is = |ty: *mut ffi::PyTypeObject| std::ptr::eq(t, ty);
    // The addresses of the interpreter's static type objects (taking one reads nothing).
    let scalar = is(std::ptr::addr_of_mut!(ffi::PyUnicode_Type))
        || is(std::ptr::addr_of_mut!(ffi::PyLong_Type))
        || is(std::ptr::addr_of_mut!(ffi::PyFloat_Type))
        || is(std::ptr::addr_of_mut!(ffi::PyBytes_Type))
        || is(std::ptr::addr_of_mut!(ffi::PyBool_Type));
    if scalar || obj.is_none() {
        return true;
    }
    if depth == 0 {
        return false;
    }
    let py = obj.py();
    let (dict, list, tuple) = (
        is(std::ptr::addr_of_mut!(ffi::PyDict_Type)),
        is(std::ptr::addr_of_mut!(ffi::PyList_Type)),
        is(std::ptr::addr_of_mut!(ffi::PyTuple_Type)),
    );
    if dict {
        let d = obj.cast::<pyo3::types::PyDict>().expect("checked: a dict");
        return d.len() <= *budget
            && d.iter().all(|(k, v)| {
                plain_within(&k, depth - 1, budget) && plain_within(&v, depth - 1, budget)
            });
    }
    if list || tuple {
        // Borrowed items, no reference counting: nothing runs between the reads (no user
        // code can change the container meanwhile; we hold the GIL).
        // SAFETY: `p` is a list or a tuple (checked above).
        let n = unsafe {
            if list {
                ffi::PyList_GET_SIZE(p)
            } else {
                ffi::PyTuple_GET_SIZE(p)
            }
        } as usize;
        if n > *budget {
            return false;
        }
        return (0..n).all(|i| {
            // SAFETY: `i < n`, the container's size; the item is a borrowed reference
            // kept alive by the container, which `obj` keeps alive.
            let item = unsafe {
                if list {
                    ffi::PyList_GET_ITEM(p, i as ffi::Py_ssize_t)
                } else {
                    ffi::PyTuple_GET_ITEM(p, i as ffi::Py_ssize_t)
                }
            };
            // SAFETY: as above: a live object for as long as this borrow.
            let item = unsafe { Bound::from_borrowed_ptr(py, item) };
            plain_within(&item, depth - 1, budget)
        });
    }
    false
}

fn msgpack(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    MSGPACK.get_or_try_init(py, || {
        let m = py.import("msgpack").map_err(|e| {
            let err = CodecError::new_err("the msgpack codec needs the 'msgpack' package");
            err.set_cause(py, Some(e));
            err
        })?;
        let partial = py.import("functools")?.getattr("partial")?;
        let kw = PyDict::new(py);
        kw.set_item("use_bin_type", true)?;
        let packb = partial.call((m.getattr("packb")?,), Some(&kw))?;
        let kw = PyDict::new(py);
        kw.set_item("raw", false)?;
        kw.set_item("strict_map_key", false)?;
        let unpackb = partial.call((m.getattr("unpackb")?,), Some(&kw))?;
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
pub(crate) fn register_codec(
    py: Python<'_>,
    codec_id: i64,
    encode: Bound<'_, PyAny>,
    decode: Bound<'_, PyAny>,
) -> PyResult<()> {
    if !(i64::from(FIRST_USER_CODEC)..=i64::from(u16::MAX)).contains(&codec_id) {
        return Err(InvalidArgumentError::new_err(format!(
            "user codec ids are {FIRST_USER_CODEC}..65535, got {codec_id}"
        )));
    }
    if !encode.is_callable() || !decode.is_callable() {
        return Err(PyTypeError::new_err("encode and decode must be callable"));
    }
    user_codecs(py).set_item(codec_id, (encode, decode))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// How a handle encodes what it puts and decodes what it gets.
pub(crate) struct Codecs {
    /// Default codec of puts.
    pub(crate) codec: u16,
    pub(crate) allow_pickle: bool,
}

impl Codecs {
    /// Wraps an encoder's failure in a `CodecError` (the original as its cause).
    fn encode_error(py: Python<'_>, what: String, cause: PyErr) -> PyErr {
        let err = CodecError::new_err(format!("{what}: {cause}"));
        err.set_cause(py, Some(cause));
        err
    }

    /// The codec of a put: the handle's default, or the one given, by id or by name (as
    /// the constructors take it: `shmq.codec_id`).
    #[inline]
    pub(crate) fn resolve(&self, codec: Option<&Bound<'_, PyAny>>) -> PyResult<u16> {
        let Some(c) = codec else {
            return Ok(self.codec);
        };
        if c.is_exact_instance_of::<PyInt>() {
            if let Ok(id @ (..=CODEC_MSGPACK | FIRST_USER_CODEC..)) = c.extract::<u16>() {
                return Ok(id);
            }
        }
        self.resolve_other(c)
    }

    /// [`Codecs::resolve`] of `None`, a name, or an id out of range.
    #[cold]
    #[inline(never)]
    fn resolve_other(&self, c: &Bound<'_, PyAny>) -> PyResult<u16> {
        if c.is_none() {
            return Ok(self.codec);
        }
        if c.is_exact_instance_of::<PyInt>() {
            return Err(InvalidArgumentError::new_err(format!(
                "codec id {c} is neither built in (0, 1, 2) nor a user id \
                 ({FIRST_USER_CODEC}..65535)"
            )));
        }
        // The built-in names (which register_codec refuses to take over) without a call.
        if let Ok(name) = c.cast::<PyString>() {
            match name.to_str()? {
                "raw" => return Ok(CODEC_RAW),
                "pickle" => return Ok(CODEC_PICKLE),
                "msgpack" => return Ok(CODEC_MSGPACK),
                _ => {}
            }
        }
        // A registered name, or something codec_id refuses with the constructor's message.
        let py = c.py();
        let codec_id = CODEC_ID.get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("shmq._common")?.getattr("codec_id")?.unbind())
        })?;
        codec_id.bind(py).call1((c,))?.extract()
    }

    pub(crate) fn encode<'py>(&self, obj: Bound<'py, PyAny>, codec: u16) -> PyResult<Payload<'py>> {
        let py = obj.py();
        match codec {
            CODEC_RAW => bytes_like(obj),
            CODEC_PICKLE => {
                if !self.allow_pickle {
                    return Err(PickleNotAllowedError::new_err(
                        "pickle is disabled for this queue (allow_pickle=False)",
                    ));
                }
                // The type, for an error message (its name is made only then).
                let ty = obj.get_type();
                let failed = |e| {
                    let name = ty.name().map(|n| n.to_string()).unwrap_or_default();
                    Self::encode_error(py, format!("could not pickle a {name}"), e)
                };
                let dumps = pickle(py)?.0.bind(py);
                if plain_pickle(&obj) {
                    let out = dumps.call1((obj, PICKLE_PROTOCOL)).map_err(failed)?;
                    return Ok(Payload::Bytes(out.cast_into::<PyBytes>()?));
                }
                // Buffers (arrays, bytearrays) out of band: written straight into the ring.
                match Frame::pickle(dumps, obj).map_err(failed)? {
                    Ok(frame) => Ok(Payload::Frame(frame)),
                    Err(bytes) => Ok(Payload::Bytes(bytes)),
                }
            }
            CODEC_MSGPACK => {
                let out =
                    msgpack(py)?.0.bind(py).call1((obj,)).map_err(|e| {
                        Self::encode_error(py, "msgpack could not encode".into(), e)
                    })?;
                Ok(Payload::Bytes(out.cast_into::<PyBytes>()?))
            }
            id => {
                let Some(pair) = user_codecs(py).get_item(id)? else {
                    return Err(CodecError::new_err(format!(
                        "no codec registered under id {id}"
                    )));
                };
                let out = pair.get_item(0)?.call1((obj,)).map_err(|e| {
                    Self::encode_error(py, format!("the encoder of codec {id} failed"), e)
                })?;
                let name = type_name(&out);
                bytes_like(out).map_err(|_| {
                    CodecError::new_err(format!(
                        "the encoder of codec {id} returned {name}, not bytes-like"
                    ))
                })
            }
        }
    }

    /// Decodes a message taken off a ring (user code may run here: never with a protocol
    /// resource held). A message that cannot be decoded raises `DecodeError` with its bytes.
    pub(crate) fn decode<'py>(
        &self,
        raw: Bound<'py, PyBytes>,
        codec: u16,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = raw.py();
        let fail = |what: &str, e: PyErr| {
            let msg = format!("could not decode a message with codec {codec} ({what}): {e}");
            decode_error(py, false, msg, &raw, codec, Some(e))
        };
        match codec {
            CODEC_RAW => Ok(raw.into_any()),
            CODEC_PICKLE => {
                if !self.allow_pickle {
                    let msg = "received a pickled message but allow_pickle=False; \
                               its bytes are in the exception's .raw";
                    return Err(decode_error(py, true, msg.into(), &raw, codec, None));
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
            CODEC_PICKLE_OOB => crate::zerocopy::loads_bytes(self, &raw),
            id => match user_codecs(py).get_item(id)? {
                Some(pair) => pair
                    .get_item(1)
                    .and_then(|d| d.call1((&raw,)))
                    .map_err(|e| fail("user codec", e)),
                None => {
                    let msg = format!("no codec registered under id {id}; its bytes are in .raw");
                    Err(decode_error(py, false, msg, &raw, codec, None))
                }
            },
        }
    }

    /// Whether a message of `codec` is decoded from a buffer object by this handle (pickle,
    /// if allowed, and msgpack): then a large one may be copied to scratch rather than
    /// `bytes` (see [`crate::buffer::Taken::of_one`]).
    pub(crate) fn decodes_from_buffer(&self, codec: u16) -> bool {
        (codec == CODEC_PICKLE && self.allow_pickle) || codec == CODEC_MSGPACK
    }

    /// Decodes a message taken off a ring: from the scratch buffer through a `MessageView`
    /// (pickle, msgpack), otherwise from `bytes`.
    #[inline(always)]
    pub(crate) fn decode_taken<'py>(
        &self,
        py: Python<'py>,
        taken: Taken<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let taken = match taken {
            // Raw bytes are the object: nothing to decode.
            Taken::Bytes(CODEC_RAW, bytes) => return Ok(bytes?.into_any()),
            Taken::Frame(buf) => return crate::zerocopy::loads_copied(self, buf?),
            other => other,
        };
        let Taken::Scratch(codec, scratch) = taken else {
            let (codec, raw) = taken.into_raw(py)?;
            return self.decode(raw, codec);
        };
        let loads = match codec {
            CODEC_PICKLE => pickle(py)?.1.bind(py).clone(),
            _ => msgpack(py)?.1.bind(py).clone(),
        };
        let view = Bound::new(py, PyMessageView::new(scratch.clone(), scratch.bytes()))?;
        let result = loads.call1((&view,));
        drop(view);
        let result = match result {
            Ok(obj) => Ok(obj),
            // A failure to decode keeps the message's bytes (`DecodeError.raw`), from the
            // scratch before it is reused; KeyboardInterrupt and the like pass through.
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyException>(py) => {
                let raw = PyBytes::new(py, scratch.bytes());
                let what = if codec == CODEC_PICKLE {
                    "pickle"
                } else {
                    "msgpack"
                };
                let msg = format!("could not decode a message with codec {codec} ({what}): {e}");
                Err(decode_error(py, false, msg, &raw, codec, Some(e)))
            }
            Err(e) => Err(e),
        };
        scratch.give_back();
        result
    }

    /// Decodes a batch in order. At the first message that cannot be decoded: if messages
    /// before it decoded, returns them and keeps it and the rest for the next call;
    /// otherwise keeps the rest and raises its `DecodeError`. Nothing taken is lost.
    pub(crate) fn decode_batch<'py>(
        &self,
        raws: Vec<RawMessage<'py>>,
        stash: &Stash,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let mut out = Vec::with_capacity(raws.len());
        let mut rest = raws.into_iter();
        while let Some((codec, raw)) = rest.next() {
            if codec == CODEC_RAW {
                out.push(raw.into_any()); // cannot fail: no clone kept for the stash
                continue;
            }
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

/// A received message before decoding: codec id and bytes.
pub(crate) type RawMessage<'py> = (u16, Bound<'py, PyBytes>);

/// Messages a handle already took but has not returned yet: those that followed an
/// undecodable one in a batch. Served first by the next get.
#[derive(Default)]
pub(crate) struct Stash {
    items: Mutex<VecDeque<(u16, Py<PyBytes>)>>,
    any: AtomicBool,
}

impl Stash {
    fn push_front<'py>(&self, items: impl Iterator<Item = RawMessage<'py>>) {
        let items: Vec<_> = items.map(|(c, b)| (c, b.unbind())).collect();
        let mut stash = self.items.lock().unwrap_or_else(|p| p.into_inner());
        for item in items.into_iter().rev() {
            stash.push_front(item);
        }
        self.any.store(!stash.is_empty(), Ordering::Release);
    }

    /// Whether messages are stashed.
    pub(crate) fn has_any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Up to `max` stashed messages, if there are any.
    #[inline]
    pub(crate) fn take<'py>(&self, py: Python<'py>, max: usize) -> Option<Vec<RawMessage<'py>>> {
        if !self.any.load(Ordering::Acquire) {
            return None; // the usual case: one load, in the caller
        }
        self.take_stashed(py, max)
    }

    #[cold]
    fn take_stashed<'py>(&self, py: Python<'py>, max: usize) -> Option<Vec<RawMessage<'py>>> {
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
    pub(crate) fn clear_after_fork(&self) {
        if let Ok(mut stash) = self.items.try_lock() {
            stash.clear();
            self.any.store(false, Ordering::Release);
        }
    }
}
