//! The shared layout: a `#[repr(C)]`, pointer-free, versioned segment.
//!
//! ```text
//! offset 0              Control     identity + geometry (immutable after `ready`), then one
//!                                   128-byte line per hot counter (tail, head, release, ...)
//! control_size()        Slot[max_slots]   one per attached process: liveness lease index,
//!                                   per-process counters, LANES lanes of in-flight intents
//! data_offset           data[capacity]    the byte ring of records
//! ```
//!
//! Every field is an atomic, even the ones that never change after creation: another process
//! may write anything at any time, and atomics make such a race defined behaviour. The
//! geometry is read once, validated, and kept in a process-private [`Geometry`]; it is never
//! re-read from shared memory afterwards.
//!
//! A record in the data ring (16-byte aligned; a record may wrap around the end of the ring,
//! its 16-byte header never does because the capacity is a multiple of 16):
//!
//! ```text
//! +0  stamp: u64   tag(pos) | state      state: COMMITTED, CONSUMED or ABANDONED
//! +8  meta:  u64   len: u32 | codec: u16 << 32 | flags: u16 << 48
//! +16 payload[len], then padding to 16
//! ```
//!
//! See `docs/protocol.md` for the states and the synchronisation points.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// `b"SHMQRNG1"` read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMQRNG1");
/// Bumped on any change of the shared layout or of the protocol.
pub const LAYOUT_VERSION: u32 = 5;
/// Segment kind: a queue (each message goes to one consumer).
pub const KIND_QUEUE: u32 = 1;
/// Segment kind: a broadcast ring (each subscriber reads every message).
pub const KIND_BROADCAST: u32 = 2;
/// Size of the record header (stamp + meta).
pub const RECORD_HEADER: u64 = 16;
/// Records start at multiples of this.
pub const RECORD_ALIGN: u64 = 16;
/// Lanes (concurrent operations) per attached process.
pub const LANES: usize = 4;
/// Smallest ring accepted (tiny rings under loom keep the models small).
pub const MIN_CAPACITY: u64 = if cfg!(loom) { 64 } else { 4096 };
/// Capacities are rounded up to a multiple of this (the page size, so the ring could be
/// mirror-mapped; 16 under loom).
pub const CAPACITY_QUANTUM: u64 = if cfg!(loom) { RECORD_ALIGN } else { PAGE };
/// Largest ring accepted (1 TiB): positions stay far from `u64` overflow.
pub const MAX_CAPACITY: u64 = 1 << 40;
/// Largest slot table accepted.
pub const MAX_SLOTS: u32 = 4096;
/// Largest payload of one record; larger ones are refused (the record length is a `u32`).
pub const MAX_PAYLOAD: u64 = u32::MAX as u64 - PAYLOAD_HEADROOM;
/// Room left below `u32::MAX` for a record's header and padding: a whole record must have a
/// size that fits the `u32` length field, because an `ABANDONED` record stores the bytes to
/// skip there and batches are bounded by it (header + padding take at most 31 bytes).
const PAYLOAD_HEADROOM: u64 = 64;
const _: () = assert!(MAX_PAYLOAD + RECORD_HEADER + RECORD_ALIGN - 1 <= u32::MAX as u64);

/// Flag bit in `Control::flags`: the segment outlives its last attached process.
pub const FLAG_PERSISTENT: u32 = 1;
/// Flag bit in `Control::flags` of a broadcast ring: publishers never wait for slow
/// subscribers; they overwrite the oldest records and the subscribers that lagged are told
/// how many messages they missed. Without it publishers wait for the slowest subscriber.
pub const FLAG_LAG: u32 = 2;

/// Bit of `Control::shutdown`: the ring was shut down; sends fail, receives take what is left
/// and then fail instead of waiting.
pub const SHUTDOWN: u32 = 1;
/// Bit of `Control::shutdown` (set with [`SHUTDOWN`]): receives fail at once too; what was left
/// was dropped.
pub const SHUTDOWN_IMMEDIATE: u32 = 2;

/// Record flag: the payload is a side-segment descriptor ([`SideDescriptor`]), the message
/// itself is in its own shared-memory segment (messages larger than the ring).
pub const RECORD_FLAG_SIDE: u16 = 1;

/// The payload of a record flagged [`RECORD_FLAG_SIDE`]: `magic | len | id`, 24 bytes,
/// little-endian. The segment's name is derived from the ring's name and `id` by the OS layer
/// (never taken from shared memory, so a corrupted descriptor cannot name another segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SideDescriptor {
    /// Bytes of the message.
    pub len: u64,
    /// Random identifier of the side segment.
    pub id: u64,
}

/// `b"SHMQSIDE"` read as a little-endian u64.
pub const SIDE_MAGIC: u64 = u64::from_le_bytes(*b"SHMQSIDE");

impl SideDescriptor {
    /// Size of an encoded descriptor.
    pub const SIZE: usize = 24;

    /// The record payload.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[..8].copy_from_slice(&SIDE_MAGIC.to_le_bytes());
        out[8..16].copy_from_slice(&self.len.to_le_bytes());
        out[16..].copy_from_slice(&self.id.to_le_bytes());
        out
    }

    /// Parses a record payload; `None` if it is not a descriptor (corrupted).
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let bytes: &[u8; Self::SIZE] = payload.try_into().ok()?;
        let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        (word(0) == SIDE_MAGIC).then(|| Self {
            len: word(8),
            id: word(16),
        })
    }
}

/// `Slot::cursor` of a slot whose holder is not a subscriber.
pub const NO_CURSOR: u64 = u64::MAX;

/// State bits in the low 4 bits of a record stamp.
pub const STATE_MASK: u64 = 0xF;
/// The payload is written and may be claimed by a consumer.
pub const COMMITTED: u64 = 1;
/// A consumer has copied the payload out; the bytes may be reused once `release` passes.
pub const CONSUMED: u64 = 2;
/// No message: bytes to pass over (its `len` is the skip length). Written by a repairer for a
/// producer that died before committing (with the permits it held), or by a producer that
/// moves its records to the hot start of the next lap (no permits; docs/protocol.md).
pub const ABANDONED: u64 = 3;

/// Value of `Control::attached` once the last process detached and the segment is being
/// unlinked: nobody may attach any more.
pub const ATTACHED_CLOSED: u32 = u32::MAX;

/// Lane intent state: nothing in flight.
pub const INTENT_NONE: u64 = 0;
/// Lane intent state: the range is published, the CAS that takes it is not done (yet).
pub const INTENT_PENDING: u64 = 1;
/// Lane intent state: the CAS succeeded; the range belongs to this lane.
pub const INTENT_OWNED: u64 = 2;

/// Slot state: free.
pub const SLOT_FREE: u64 = 0;
/// Slot state: attached (the holder of the slot's lease is alive while it holds it).
pub const SLOT_ATTACHED: u64 = 1;
/// Slot state: a process is reaping this slot after its holder died.
pub const SLOT_REAPING: u64 = 2;

/// Bits of a packed word (`SlotWord`, `PutIntent`) that hold its state.
const STATE_BITS: u32 = 8;
/// Mask of those bits.
const STATE_BITS_MASK: u64 = (1 << STATE_BITS) - 1;

/// The word in [`Slot::state`]: `generation << 8 | SLOT_*`. The generation goes up by one
/// (wrapping in its 56 bits) each time the slot is claimed, so a CAS on the word never
/// mistakes a later holder for an earlier one. Unpacking and packing round-trip every
/// `u64` exactly, so a word read from shared memory (even garbage) can be the expected
/// value of a CAS after a round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotWord {
    /// Claim count of the slot (56 bits).
    pub(crate) gen: u64,
    /// `SLOT_FREE`, `SLOT_ATTACHED` or `SLOT_REAPING` (any 8-bit value in a scribbled word).
    pub(crate) state: u64,
}

impl SlotWord {
    /// Decodes a slot state word.
    #[inline]
    pub(crate) const fn unpack(word: u64) -> Self {
        Self {
            gen: word >> STATE_BITS,
            state: word & STATE_BITS_MASK,
        }
    }

    /// Encodes it (the generation's bits above 56 are dropped).
    #[inline]
    pub(crate) const fn pack(self) -> u64 {
        self.gen << STATE_BITS | (self.state & STATE_BITS_MASK)
    }

    /// The same generation in another state.
    #[inline]
    pub(crate) const fn with_state(self, state: u64) -> Self {
        Self { state, ..self }
    }

    /// The word of the next claim: generation + 1, in `state`.
    #[inline]
    pub(crate) const fn next_claim(self, state: u64) -> Self {
        Self {
            gen: self.gen.wrapping_add(1) & (u64::MAX >> STATE_BITS),
            state,
        }
    }
}

/// The word in [`Lane::put_state`]: `permits << 32 | INTENT_*`, the intent of the put in
/// the low 8 bits and the maxsize permits the lane holds in the high 32 (bits 8..32 are 0).
/// [`Lane::get_state`] holds a bare `INTENT_*` (a claim holds no permits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PutIntent {
    /// `INTENT_NONE`, `INTENT_PENDING` or `INTENT_OWNED`.
    pub(crate) state: u64,
    /// Maxsize permits taken for the messages of this put (at most `u32::MAX`).
    pub(crate) permits: u64,
}

/// Where [`PutIntent::permits`] starts.
const PERMITS_SHIFT: u32 = 32;

impl PutIntent {
    /// No put in flight and no permits held.
    pub(crate) const NONE: Self = Self {
        state: INTENT_NONE,
        permits: 0,
    };

    /// Decodes a put intent word.
    #[inline]
    pub(crate) const fn unpack(word: u64) -> Self {
        Self {
            state: word & STATE_BITS_MASK,
            permits: word >> PERMITS_SHIFT,
        }
    }

    /// Encodes it (permits above 32 bits are dropped; a batch holds far fewer).
    #[inline]
    pub(crate) const fn pack(self) -> u64 {
        self.permits << PERMITS_SHIFT | (self.state & STATE_BITS_MASK)
    }

    /// The same permits in another intent state.
    #[inline]
    pub(crate) const fn with_state(self, state: u64) -> Self {
        Self { state, ..self }
    }
}

/// A 128-byte aligned cell: two cache lines, so the adjacent-line prefetcher does not make
/// neighbours share.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct Padded<T>(pub T);

impl<T> core::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// An event count: waiters bump `waiters`, re-check their condition, then sleep on `seq`;
/// notifiers bump `seq` and wake only when `waiters` is non-zero.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Event {
    /// Futex word: changes on every notification that found a waiter.
    pub seq: AtomicU32,
    /// Number of threads between "announced" and "returned" in the sleep path.
    pub waiters: AtomicU32,
    /// 1 while a wake-up is under way that every current sleeper will see: notifiers skip
    /// their own system call. A sleeper clears it before it re-checks and sleeps.
    pub pending: AtomicU32,
    _reserved: AtomicU32,
}

/// Identity and geometry: written once by the creator before `ready` is set.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Identity {
    /// [`MAGIC`].
    pub magic: AtomicU64,
    /// [`LAYOUT_VERSION`].
    pub version: AtomicU32,
    /// [`KIND_QUEUE`] or [`KIND_BROADCAST`].
    pub kind: AtomicU32,
    /// Bytes of the whole segment.
    pub total_size: AtomicU64,
    /// Offset of the slot table.
    pub slots_offset: AtomicU64,
    /// Offset of the data ring (page aligned).
    pub data_offset: AtomicU64,
    /// Bytes of the data ring: a multiple of [`RECORD_ALIGN`].
    pub capacity: AtomicU64,
    /// Bound on the number of messages; 0 = only the bytes bound it.
    pub maxsize: AtomicU64,
    /// Random per-segment key mixed into record stamps, so stale payload bytes never look
    /// like a valid stamp.
    pub nonce: AtomicU64,
    /// Number of slots in the slot table.
    pub max_slots: AtomicU32,
    /// [`FLAG_PERSISTENT`], ...
    pub flags: AtomicU32,
    /// 0 while the creator initialises, 1 when everything above is valid (Release/Acquire).
    pub ready: AtomicU32,
    /// Lanes per slot (must equal [`LANES`]).
    pub lanes: AtomicU32,
    /// Creation time, nanoseconds since the Unix epoch (informational).
    pub created_ns: AtomicU64,
}

/// Totals folded in from slots that detached or were reaped, and repair counters.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Totals {
    /// Messages committed by processes no longer attached.
    pub puts: AtomicU64,
    /// Messages taken by processes no longer attached.
    pub gets: AtomicU64,
    /// Sleeps of processes no longer attached.
    pub waits: AtomicU64,
    /// Messages lost because their consumer died while copying them out.
    pub lost: AtomicU64,
    /// Reservations abandoned because their producer died before committing.
    pub abandoned: AtomicU64,
    /// Processes found dead and detached by others.
    pub reaped: AtomicU64,
    /// Messages dropped unread by an immediate shutdown (layout version 4).
    pub dropped: AtomicU64,
}

/// The segment header.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Control {
    /// Immutable after creation.
    pub id: Padded<Identity>,
    /// Producers' reservation position (bytes, monotonic).
    pub tail: Padded<AtomicU64>,
    /// Consumers' claim position (bytes, monotonic).
    pub head: Padded<AtomicU64>,
    /// Reclaim position: bytes below it may be overwritten (monotonic, `<= head`).
    pub release: Padded<AtomicU64>,
    /// Messages reserved and not yet claimed (only maintained when `maxsize > 0`). Never
    /// above `max(maxsize, capacity / 16)` (a larger value is reported as corruption).
    pub count: Padded<AtomicU64>,
    /// Consumers sleep here waiting for data.
    pub data_event: Padded<Event>,
    /// Producers sleep here waiting for space.
    pub space_event: Padded<Event>,
    /// Number of attached processes, or [`ATTACHED_CLOSED`].
    pub attached: Padded<AtomicU32>,
    /// Folded counters.
    pub totals: Padded<Totals>,
    /// One more than the highest slot index ever claimed (a bound for scans of the table).
    pub slots_in_use: Padded<AtomicU32>,
    /// When the segment may go (layout version 3).
    pub life: Padded<Lifecycle>,
    /// [`SHUTDOWN`] and [`SHUTDOWN_IMMEDIATE`] bits, only ever set (layout version 4); other
    /// bits are corruption.
    pub shutdown: Padded<AtomicU32>,
}

/// What decides whether the last process to detach removes the segment (besides
/// `FLAG_PERSISTENT`). Times are nanoseconds since the Unix epoch (`CLOCK_REALTIME`, shared by
/// every process of the machine).
#[repr(C)]
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// Handles may be in flight until then (pickled, or inherited by a child that has not
    /// attached yet): a last detach before it keeps the segment if `in_flight > 0`. Only
    /// ever raised.
    pub keep_until_ns: AtomicU64,
    /// Handles sent and not yet arrived (see `Ring::keep_alive_until` and `Ring::arrived`).
    pub in_flight: AtomicU64,
    /// When a last detach kept the segment (0: it was never kept, or has been reopened).
    pub kept_since_ns: AtomicU64,
}

/// One in-flight operation of an attached process. A lane is taken for the duration of one
/// non-blocking attempt, never across a wait.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct Lane {
    /// 0 = free, 1 = taken (by a thread of the slot's process).
    pub busy: AtomicU32,
    _reserved: AtomicU32,
    /// `INTENT_*` in the low 8 bits; maxsize permits held in the high 32 bits (decoded by the
    /// crate's `PutIntent`).
    pub put_state: AtomicU64,
    /// Reservation `[put_start, put_end)` this lane is taking or owns.
    pub put_start: AtomicU64,
    /// End of the reservation.
    pub put_end: AtomicU64,
    /// `INTENT_*` of the claim.
    pub get_state: AtomicU64,
    /// Claim `[get_start, get_end)` this lane is taking or owns.
    pub get_start: AtomicU64,
    /// End of the claim.
    pub get_end: AtomicU64,
}

/// Per-process counters; only the owning process writes them (Relaxed adds). `gets` is on
/// the slot's second line, `puts` on its first: a producer thread and a consumer thread of
/// one process would otherwise move one line back and forth on every message.
#[repr(C)]
#[derive(Debug, Default)]
pub struct SlotCounters {
    /// Messages committed.
    pub puts: AtomicU64,
    /// Times a thread went to sleep.
    pub waits: AtomicU64,
    _apart: [u64; 6],
    /// Messages taken.
    pub gets: AtomicU64,
}

/// One attached process.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct Slot {
    /// `generation << 8 | SLOT_*` (decoded by the crate's `SlotWord`).
    pub state: AtomicU64,
    /// Process id of the holder (informational: liveness comes from the lease).
    pub pid: AtomicU32,
    /// Threads of the holder counted in `Control::data_event.waiters` (so a reaper can take
    /// a dead process's sleepers out of the count).
    pub sleeping_data: AtomicU32,
    /// Counters of the holder.
    pub counters: SlotCounters,
    /// As `sleeping_data`, for `Control::space_event.waiters`.
    pub sleeping_space: AtomicU32,
    _reserved: AtomicU32,
    /// Broadcast rings: the position of the next record this subscriber reads, or
    /// [`NO_CURSOR`]. Moved by the subscriber, and (with [`FLAG_LAG`]) by publishers that
    /// overwrite records it has not read.
    pub cursor: AtomicU64,
    /// Broadcast rings with [`FLAG_LAG`]: messages publishers skipped this subscriber over
    /// that it has not been told about yet.
    pub missed: AtomicU64,
    /// In-flight operations.
    pub lanes: [Lane; LANES],
}

/// The 16-byte header of a record in the data ring.
#[repr(C, align(16))]
#[derive(Debug, Default)]
pub struct Cell {
    /// `tag(pos) | state`.
    pub stamp: AtomicU64,
    /// `len | codec << 32 | flags << 48`.
    pub meta: AtomicU64,
}

const _: () = {
    assert!(core::mem::size_of::<Cell>() as u64 == RECORD_HEADER);
    assert!(core::mem::size_of::<Lane>() == 64);
    assert!(core::mem::size_of::<Slot>() % 128 == 0);
    // The counters' two halves on two lines (see `SlotCounters`).
    assert!(
        core::mem::offset_of!(Slot, counters) / 64
            != (core::mem::offset_of!(Slot, counters) + core::mem::offset_of!(SlotCounters, gets))
                / 64
    );
    assert!(core::mem::size_of::<Control>() % 128 == 0);
    assert!(core::mem::size_of::<Control>() <= 4096);
};

/// Packs a record's meta word.
#[inline]
pub fn pack_meta(len: u32, codec: u16, flags: u16) -> u64 {
    u64::from(len) | (u64::from(codec) << 32) | (u64::from(flags) << 48)
}

/// Unpacks a record's meta word into `(len, codec, flags)`.
#[inline]
pub fn unpack_meta(meta: u64) -> (u32, u16, u16) {
    (meta as u32, (meta >> 32) as u16, (meta >> 48) as u16)
}

/// Bytes a record with `len` payload bytes occupies in the ring.
#[inline]
pub fn record_size(len: u64) -> u64 {
    (RECORD_HEADER + len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// Size of the control block.
pub const fn control_size() -> u64 {
    core::mem::size_of::<Control>() as u64
}

/// Size of one slot.
pub const fn slot_size() -> u64 {
    core::mem::size_of::<Slot>() as u64
}

/// Page size used to align the data ring.
pub const PAGE: u64 = 4096;

mod geometry;
pub use geometry::{Geometry, LayoutError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_sizes() {
        // docs/protocol.md states these; keep them in step.
        assert_eq!(control_size(), 1536);
        assert_eq!(slot_size(), 384);
        assert_eq!(core::mem::size_of::<Lane>(), 64);
    }

    #[test]
    fn packed_words_keep_their_encoding() {
        // docs/protocol.md states these encodings; the shared layout must not change.
        let w = SlotWord {
            gen: 3,
            state: SLOT_ATTACHED,
        };
        assert_eq!(w.pack(), 3 << 8 | SLOT_ATTACHED);
        assert_eq!(w.with_state(SLOT_REAPING).pack(), 3 << 8 | SLOT_REAPING);
        assert_eq!(w.next_claim(SLOT_ATTACHED).pack(), 4 << 8 | SLOT_ATTACHED);
        // The generation wraps in its 56 bits.
        let last = SlotWord::unpack(u64::MAX);
        assert_eq!((last.gen, last.state), (u64::MAX >> 8, 0xFF));
        assert_eq!(last.next_claim(SLOT_FREE).pack(), SLOT_FREE);
        // Any word, garbage included, round-trips (it may be the expected value of a CAS).
        for word in [0, 1, 0x1234_5678_9abc_def0, u64::MAX, u64::MAX - 0xFF] {
            assert_eq!(SlotWord::unpack(word).pack(), word);
        }
        let p = PutIntent {
            state: INTENT_OWNED,
            permits: 5,
        };
        assert_eq!(p.pack(), 5 << 32 | INTENT_OWNED);
        assert_eq!(PutIntent::unpack(p.pack()), p);
        assert_eq!(
            p.with_state(INTENT_PENDING).pack(),
            5 << 32 | INTENT_PENDING
        );
        assert_eq!(PutIntent::NONE.pack(), INTENT_NONE);
        assert_eq!(
            PutIntent::unpack(u64::MAX),
            PutIntent {
                state: 0xFF,
                permits: u64::from(u32::MAX)
            }
        );
    }

    #[test]
    fn tags_are_distinct_per_position_and_clear_of_state_bits() {
        let g = Geometry::new(4096, 0, 1, 0, 0xDEAD_BEEF).unwrap();
        let tags: std::collections::HashSet<u64> = (0..10_000u64).map(|i| g.tag(i * 16)).collect();
        assert_eq!(tags.len(), 10_000);
        assert!(tags.iter().all(|t| t & STATE_MASK == 0));
    }

    #[test]
    fn geometry_round_trips_and_rejects_inconsistent_sizes() {
        let g = Geometry::new(10_000, 5, 8, FLAG_PERSISTENT, 42).unwrap();
        assert_eq!(g.capacity, 12_288);
        let id = Identity::default();
        g.write(&id, 0);
        assert_eq!(Geometry::read(&id, g.total_size), Ok(g));
        assert!(matches!(
            Geometry::read(&id, g.total_size + 1),
            Err(LayoutError::Corrupted(_))
        ));
        id.capacity.store(g.capacity + 16, Ordering::Relaxed);
        assert!(matches!(
            Geometry::read(&id, g.total_size),
            Err(LayoutError::Corrupted(_))
        ));
        id.capacity.store(g.capacity, Ordering::Relaxed);
        id.version.store(99, Ordering::Relaxed);
        assert!(matches!(
            Geometry::read(&id, g.total_size),
            Err(LayoutError::VersionMismatch { found: 99, .. })
        ));
        id.magic.store(0, Ordering::Relaxed);
        assert_eq!(
            Geometry::read(&id, g.total_size),
            Err(LayoutError::BadMagic)
        );
    }
}
