//! Records in the data ring: what a caller sends ([`Message`]) and receives ([`RecordView`]),
//! the validated header ([`Rec`]), and every raw-memory access of the ring: the record header
//! at a position (`cell`), the payload bytes (`payload`, `write_payload`), writing and
//! reading a record (`write_record`, `record`) and the side descriptor (`note_side`). All the
//! `unsafe` that touches the data ring lives in this room.

use super::Ring;
use crate::backing::Backing;
use crate::layout::*;
use crate::sync::Ordering;
use std::borrow::Cow;

/// One message to send.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// Codec id stored in the record header.
    pub codec: u16,
    /// Flag bits stored in the record header (reserved for extensions; 0 today).
    pub flags: u16,
    /// The bytes.
    pub payload: &'a [u8],
}

impl<'a> Message<'a> {
    /// A message with codec 0 (raw bytes).
    pub fn raw(payload: &'a [u8]) -> Self {
        Self {
            codec: 0,
            flags: 0,
            payload,
        }
    }
}

/// A received record, borrowed from the ring while its claim is held. The payload may be in
/// two parts when the record wraps around the end of the ring.
#[derive(Debug)]
pub struct RecordView<'a> {
    /// Codec id from the record header.
    pub codec: u16,
    /// Flag bits from the record header.
    pub flags: u16,
    // Borrowed from shared memory; owned only for typed (model-checked) storage.
    pub(super) first: Cow<'a, [u8]>,
    pub(super) second: Cow<'a, [u8]>,
}

impl RecordView<'_> {
    /// Payload length.
    pub fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The payload as (up to) two slices.
    pub fn parts(&self) -> (&[u8], &[u8]) {
        (&self.first, &self.second)
    }
    /// Copies the payload into `dst`, which must be exactly [`RecordView::len`] bytes.
    pub fn copy_to(&self, dst: &mut [u8]) {
        let (a, b) = dst.split_at_mut(self.first.len());
        a.copy_from_slice(&self.first);
        b.copy_from_slice(&self.second);
    }
    /// Appends the payload to `dst`.
    pub fn extend_into(&self, dst: &mut Vec<u8>) {
        dst.extend_from_slice(&self.first);
        dst.extend_from_slice(&self.second);
    }
    /// The payload as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        self.extend_into(&mut v);
        v
    }
}

/// A validated record header.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rec {
    pub(super) state: u64,
    pub(super) stamp: u64,
    pub(super) len: u64,
    pub(super) codec: u16,
    pub(super) flags: u16,
    /// Bytes the record occupies (for ABANDONED: the bytes to skip).
    pub(super) size: u64,
    /// Maxsize permits an ABANDONED record carries.
    pub(super) permits: u64,
}

/// Marks a claimed record consumed when dropped, even if the receiving closure panics.
pub(super) struct MarkConsumed<'a> {
    pub(super) cell: &'a Cell,
    pub(super) stamp: u64,
}

impl Drop for MarkConsumed<'_> {
    fn drop(&mut self) {
        // SYNC C3 (reclaim): Release; the reads of the payload happen before a producer that
        // sees CONSUMED (Acquire in `advance_release`) overwrites the bytes.
        self.cell.stamp.store(self.stamp, Ordering::Release);
    }
}

impl<B: Backing> Ring<B> {
    /// The offset in the data ring of position `pos`: a mask when the capacity is a power of
    /// two (the usual sizes), since a 64-bit division costs tens of cycles and a message
    /// takes several. The test is `cap & (cap - 1)` (`cap >= MIN_CAPACITY` in a validated
    /// geometry, so `cap - 1` does not wrap), a little shorter than `is_power_of_two`, which
    /// also rules out 0: a 64 B send + receive 966 → 950 instructions (callgrind).
    #[inline]
    pub(super) fn wrap(&self, pos: u64) -> u64 {
        let cap = self.g.capacity;
        if cap & (cap - 1) == 0 {
            pos & (cap - 1)
        } else {
            pos % cap
        }
    }

    /// The record header at ring position `pos`. Positions come from shared memory and may
    /// be corrupted: the offset is forced to a multiple of 16, so the reference is always
    /// aligned and in bounds; [`Ring::record`] reports a misaligned position as corruption.
    pub(super) fn cell(&self, pos: u64) -> &Cell {
        let off = self.wrap(pos) & !(RECORD_ALIGN - 1);
        if let Some(t) = self.b.typed() {
            return &t.cells[(off / RECORD_ALIGN) as usize];
        }
        // SAFETY: `off < capacity` and a multiple of 16, and `capacity` is a multiple of 16,
        // so the 16-byte cell lies inside the data ring, which `Geometry::read` checked lies
        // inside the segment; the data offset is page aligned. `Cell` is two atomics.
        unsafe { &*(self.b.base().add((self.g.data_offset + off) as usize) as *const Cell) }
    }

    /// The payload bytes of the record at `pos` as (up to) two slices.
    ///
    /// # Safety
    ///
    /// The caller must ensure:
    /// * it owns the record (a successful reservation or claim covers it), so no other
    ///   process writes these bytes while the slices live, and
    /// * `len <= capacity - RECORD_HEADER`.
    pub(super) unsafe fn payload(&self, pos: u64, len: u64) -> (Cow<'_, [u8]>, Cow<'_, [u8]>) {
        let cap = self.g.capacity;
        let start = self.wrap(pos + RECORD_HEADER);
        let first = len.min(cap - start);
        if let Some(t) = self.b.typed() {
            let copy = |from: u64, n: u64| {
                (from..from + n)
                    .map(|o| {
                        let chunk = &t.data[(o / RECORD_ALIGN) as usize];
                        // SAFETY: the caller owns these bytes (see `# Safety`); loom checks it.
                        chunk.with(|p| unsafe { (*p)[(o % RECORD_ALIGN) as usize] })
                    })
                    .collect::<Vec<u8>>()
            };
            return (
                Cow::Owned(copy(start, first)),
                Cow::Owned(copy(0, len - first)),
            );
        }
        // SAFETY: `start < cap` and `first <= cap - start`, so `[start, start + first)` is in
        // the data ring; the second part `[0, len - first)` is too because `len < cap`. The
        // caller owns the bytes (see `# Safety`).
        unsafe {
            let data = self.b.base().add(self.g.data_offset as usize);
            (
                Cow::Borrowed(std::slice::from_raw_parts(
                    data.add(start as usize),
                    first as usize,
                )),
                Cow::Borrowed(std::slice::from_raw_parts(data, (len - first) as usize)),
            )
        }
    }

    /// Copies `src` into the payload of the record at `pos`.
    ///
    /// # Safety
    ///
    /// As [`Ring::payload`]: the caller owns the record and `src.len() < capacity`.
    pub(super) unsafe fn write_payload(&self, pos: u64, src: &[u8]) {
        let cap = self.g.capacity;
        let start = self.wrap(pos + RECORD_HEADER);
        let first = (src.len() as u64).min(cap - start) as usize;
        if let Some(t) = self.b.typed() {
            for (k, &byte) in src.iter().enumerate() {
                let o = (start + k as u64) % cap;
                let chunk = &t.data[(o / RECORD_ALIGN) as usize];
                // SAFETY: the reservation makes these bytes ours alone; loom checks it.
                chunk.with_mut(|p| unsafe { (*p)[(o % RECORD_ALIGN) as usize] = byte });
            }
            return;
        }
        // SAFETY: bounds as in `payload`; the reservation makes these bytes ours alone.
        unsafe {
            let data = self.b.base().add(self.g.data_offset as usize);
            std::ptr::copy_nonoverlapping(src.as_ptr(), data.add(start as usize), first);
            std::ptr::copy_nonoverlapping(src.as_ptr().add(first), data, src.len() - first);
        }
    }

    pub(super) fn write_record(&self, pos: u64, m: &Message<'_>) {
        let cell = self.cell(pos);
        // Relaxed: published by the stamp's Release store below.
        cell.meta.store(
            pack_meta(m.payload.len() as u32, m.codec, m.flags),
            Ordering::Relaxed,
        );
        // SAFETY: `reserve` gave this lane `[pos, pos + record_size)`; `batch_size` checked
        // the payload is at most `max_payload() < capacity`.
        unsafe { self.write_payload(pos, m.payload) };
        // SYNC P2 (publish): Release pairs with the consumer's Acquire load of the stamp; a
        // consumer that sees COMMITTED sees the meta and payload written above.
        cell.stamp
            .store(self.g.tag(pos) | COMMITTED, Ordering::Release);
    }

    /// Writes a skip of `size` bytes at `pos`: an `ABANDONED` record carrying no permits,
    /// which readers, reclaimers and repairers pass over as they pass a repairer's. The
    /// caller owns `[pos, pos + size)` (its reservation) and `size` fits a u32.
    pub(super) fn write_skip(&self, pos: u64, size: u64) {
        let cell = self.cell(pos);
        // Relaxed: published by the stamp's Release store below.
        cell.meta
            .store(pack_meta(size as u32, 0, 0), Ordering::Relaxed);
        // SYNC P2 (publish): Release, as a commit: a reader that sees the stamp sees the size.
        cell.stamp
            .store(self.g.tag(pos) | ABANDONED, Ordering::Release);
    }

    /// Reads and validates the header of the record at `pos`, which must lie within
    /// `[pos, limit)`. `Ok(None)`: no valid stamp for this position (not written yet, or the
    /// bytes were reused by a later lap). `Err`: a valid stamp with impossible lengths.
    ///
    /// # Ordering
    ///
    /// The stamp is loaded with Acquire (SYNC P2 / C3): a valid stamp makes the meta and the
    /// payload written before it visible.
    #[inline]
    pub(super) fn record(&self, pos: u64, limit: u64) -> Result<Option<Rec>, &'static str> {
        if pos % RECORD_ALIGN != 0 {
            return Err("misaligned position");
        }
        let cell = self.cell(pos);
        let stamp = cell.stamp.load(Ordering::Acquire);
        if stamp & !STATE_MASK != self.g.tag(pos) {
            return Ok(None);
        }
        let (len, codec, flags) = unpack_meta(cell.meta.load(Ordering::Relaxed));
        let state = stamp & STATE_MASK;
        let (size, permits) = match state {
            COMMITTED | CONSUMED => {
                if u64::from(len) > self.g.max_payload() {
                    return Err("record longer than the ring");
                }
                (record_size(u64::from(len)), 0)
            }
            ABANDONED => (u64::from(len), u64::from(codec) | u64::from(flags) << 16),
            _ => return Err("unknown record state"),
        };
        if size < RECORD_HEADER || size % RECORD_ALIGN != 0 || size > limit.saturating_sub(pos) {
            return Err("record crosses the end of its region");
        }
        Ok(Some(Rec {
            state,
            stamp,
            len: u64::from(len),
            codec,
            flags,
            size,
            permits,
        }))
    }

    /// Adds the side descriptor of the record at `pos` to `out` if it has one.
    pub(super) fn note_side(&self, pos: u64, rec: &Rec, out: &mut Vec<SideDescriptor>) {
        if rec.flags & RECORD_FLAG_SIDE == 0 || rec.len != SideDescriptor::SIZE as u64 {
            return;
        }
        // SAFETY: `record` validated `len`; the record is below `head` (queue) or below every
        // cursor (broadcast), so nobody writes it until `release` passes it, which the caller
        // has not published yet.
        let (a, b) = unsafe { self.payload(pos, rec.len) };
        let mut bytes = [0u8; SideDescriptor::SIZE];
        bytes[..a.len()].copy_from_slice(&a);
        bytes[a.len()..].copy_from_slice(&b);
        if let Some(d) = SideDescriptor::decode(&bytes) {
            out.push(d);
        }
    }
}
