//! Pickles with out-of-band buffers (protocol 5: NumPy arrays, `bytearray`, `PickleBuffer`)
//! as one message of codec [`CODEC_PICKLE_OOB`]: a small header, the pickle stream, then each
//! buffer at a 64-byte aligned offset. A put writes the buffers straight from the objects
//! into the ring (one copy); a get rebuilds them over one copy out of the ring, or over the
//! ring itself (`copy=False`). Every offset and length of a received frame is checked.
//!
//! ```text
//! +0   magic  "SHMQPB5\0"
//! +8   n      u32  number of buffers        +12  0 u32 (reserved)
//! +16  main   u64  length of the pickle stream, which follows the table
//! +24  n x (offset u64, length u64)         offsets from the frame's start
//! ```

use crate::buffer::BufferView;
use crate::errors::decode_error;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyMemoryView, PySlice};
use std::sync::OnceLock;

/// Codec id of a frame (a pickle with out-of-band buffers).
pub(crate) const CODEC_PICKLE_OOB: u16 = 3;

const MAGIC: &[u8; 8] = b"SHMQPB5\0";
const HEAD: usize = 24;
const ENTRY: usize = 16;
const ALIGN: usize = 64;

std::thread_local! {
    /// A list collecting a pickle's out-of-band buffers and the keyword arguments that make
    /// `pickle.dumps` fill it, reused by the thread's puts (building them costs as much as a
    /// small pickle's other overheads together).
    static COLLECTOR: std::cell::Cell<Option<(Py<PyList>, Py<PyDict>)>> =
        const { std::cell::Cell::new(None) };
}

/// A pickle stream and the out-of-band buffers it refers to, not yet laid out.
pub(crate) struct Frame<'py> {
    main: Bound<'py, PyBytes>,
    bufs: Vec<BufferView>,
    /// The frame laid out in private memory, for the paths that send from a slice (batches,
    /// messages larger than the ring): made on first use.
    flat: OnceLock<Vec<u8>>,
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

impl<'py> Frame<'py> {
    /// `obj` pickled at protocol 5, its buffers out of band; `Ok(Err(bytes))` when it has
    /// none (the plain pickle, as before).
    pub(crate) fn pickle(
        dumps: &Bound<'py, PyAny>,
        obj: Bound<'py, PyAny>,
    ) -> PyResult<Result<Self, Bound<'py, PyBytes>>> {
        let py = obj.py();
        // The thread's list and keyword arguments, taken out while in use (a nested put, from
        // a `__reduce__`, makes its own).
        let (bufs, kw) = match COLLECTOR.with(|c| c.take()) {
            Some((bufs, kw)) => (bufs.into_bound(py), kw.into_bound(py)),
            None => {
                let bufs = PyList::empty(py);
                let kw = PyDict::new(py);
                // `list.append` returns None: every buffer goes out of band.
                kw.set_item("buffer_callback", bufs.getattr("append")?)?;
                (bufs, kw)
            }
        };
        let main = dumps.call((obj, 5), Some(&kw));
        let found: Vec<Bound<'py, PyAny>> = bufs.iter().collect();
        if !found.is_empty() {
            bufs.call_method0("clear")?;
        }
        COLLECTOR.with(|c| c.set(Some((bufs.unbind(), kw.unbind()))));
        let main = main?.cast_into::<PyBytes>()?;
        if found.is_empty() {
            return Ok(Err(main));
        }
        let bufs = found;
        let bufs = bufs
            .into_iter()
            // `raw()`: the bytes of a C- or Fortran-contiguous buffer, flat (pickle hands
            // out-of-band only such buffers; a non-contiguous array is copied in band).
            .map(|pb| BufferView::get(&pb.call_method0("raw")?))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Ok(Self {
            main,
            bufs,
            flat: OnceLock::new(),
        }))
    }

    /// Bytes of the laid-out frame.
    pub(crate) fn len(&self) -> usize {
        let mut end = HEAD + ENTRY * self.bufs.len() + self.main.as_bytes().len();
        for b in &self.bufs {
            end = align(end) + b.as_slice().len();
        }
        end
    }

    /// The pickle stream's bytes and the buffers, to lay out with [`write_parts`] (possibly
    /// without the GIL: `main`'s bytes are immutable, the buffers are held).
    pub(crate) fn parts(&self) -> (&[u8], &[BufferView]) {
        (self.main.as_bytes(), &self.bufs)
    }

    /// The frame laid out in private memory (for the paths that send a slice).
    pub(crate) fn flat(&self) -> &[u8] {
        self.flat.get_or_init(|| {
            let mut v = vec![0u8; self.len()];
            write_parts(self.main.as_bytes(), &self.bufs, &mut v);
            v
        })
    }
}

/// Lays a frame out into `dst` (exactly [`Frame::len`] bytes).
pub(crate) fn write_parts(main: &[u8], bufs: &[BufferView], dst: &mut [u8]) {
    let n = bufs.len();
    dst[..8].copy_from_slice(MAGIC);
    dst[8..12].copy_from_slice(&(n as u32).to_le_bytes());
    dst[12..16].fill(0);
    dst[16..24].copy_from_slice(&(main.len() as u64).to_le_bytes());
    let mut end = HEAD + ENTRY * n;
    dst[end..end + main.len()].copy_from_slice(main);
    end += main.len();
    for (i, b) in bufs.iter().enumerate() {
        let src = b.as_slice();
        let off = align(end);
        dst[end..off].fill(0);
        let e = HEAD + ENTRY * i;
        dst[e..e + 8].copy_from_slice(&(off as u64).to_le_bytes());
        dst[e + 8..e + 16].copy_from_slice(&(src.len() as u64).to_le_bytes());
        dst[off..off + src.len()].copy_from_slice(src);
        end = off + src.len();
    }
}

/// The pickle's range and each buffer's range inside a received frame of `len` bytes, or
/// what is wrong with it (its bytes come from shared memory: anything may be there).
fn parse(data: &[u8]) -> Result<(std::ops::Range<usize>, Vec<std::ops::Range<usize>>), String> {
    let len = data.len();
    if len < HEAD || &data[..8] != MAGIC {
        return Err("not an out-of-band pickle frame".into());
    }
    let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
    let n = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes")) as usize;
    if n > (len - HEAD) / ENTRY {
        return Err(format!("{n} buffers cannot fit in a frame of {len} bytes"));
    }
    let table_end = HEAD + ENTRY * n;
    let main_len = u64_at(16);
    if main_len > (len - table_end) as u64 {
        return Err(format!("a pickle of {main_len} bytes overruns the frame"));
    }
    let main = table_end..table_end + main_len as usize;
    let mut bufs = Vec::with_capacity(n);
    for i in 0..n {
        let (off, blen) = (u64_at(HEAD + ENTRY * i), u64_at(HEAD + ENTRY * i + 8));
        if off > len as u64 || blen > len as u64 - off {
            return Err(format!(
                "buffer {i} ({blen} bytes at {off}) overruns the frame"
            ));
        }
        bufs.push(off as usize..(off + blen) as usize);
    }
    Ok((main, bufs))
}

/// Rebuilds the object of a frame whose bytes are `data`, lying in `src` (an object with the
/// buffer protocol over exactly those bytes: a `bytearray`, `bytes` or `MessageView`, which
/// stays exported, so unresizable, until `data`'s last use).
/// Buffers are views of `src` (a `bytes` source is copied per buffer, so that arrays come
/// out writable); `loads` runs user code, so no protocol resource may be held, except the
/// hold of a `copy=False` read, which is what the views are for.
pub(crate) fn loads<'py>(
    loads: &Bound<'py, PyAny>,
    src: &Bound<'py, PyAny>,
    data: &[u8],
    copy_buffers: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let py = src.py();
    let bad = |msg: String, cause: Option<PyErr>| {
        let raw = PyBytes::new(py, data);
        decode_error(py, false, msg, &raw, CODEC_PICKLE_OOB, cause)
    };
    let (main, ranges) =
        parse(data).map_err(|what| bad(format!("malformed frame: {what}"), None))?;
    let mv = PyMemoryView::from(src)?;
    let slice = |r: &std::ops::Range<usize>| {
        let s = PySlice::new(py, r.start as isize, r.end as isize, 1);
        mv.get_item(s)
    };
    let bufs = PyList::empty(py);
    let bytearray = py.get_type::<pyo3::types::PyByteArray>();
    for r in &ranges {
        let view = slice(r)?;
        if copy_buffers {
            bufs.append(bytearray.call1((view,))?)?;
        } else {
            bufs.append(view)?;
        }
    }
    let kw = PyDict::new(py);
    kw.set_item("buffers", bufs)?;
    let main = slice(&main)?;
    // A failure keeps the message's bytes (`DecodeError.raw`), copied before the views go.
    let r = loads.call((&main,), Some(&kw)).map_err(|e| {
        if e.is_instance_of::<pyo3::exceptions::PyException>(py) {
            bad(
                format!("could not decode a message with codec 3 (pickle): {e}"),
                Some(e),
            )
        } else {
            e
        }
    });
    // The pickle stream's view goes now; the buffers' views live on in what was rebuilt.
    let _ = main.call_method0("release");
    let _ = mv.call_method0("release");
    r
}

/// The error for a frame received by a handle with `allow_pickle=False`.
pub(crate) fn refused<'py>(py: Python<'py>, data: &[u8]) -> PyErr {
    let raw = PyBytes::new(py, data);
    decode_error(
        py,
        true,
        "received a pickle with out-of-band buffers but allow_pickle=False; its bytes are in \
         the exception's .raw (send arrays as raw bytes, codec='raw', to such a handle)"
            .into(),
        &raw,
        CODEC_PICKLE_OOB,
        None,
    )
}
