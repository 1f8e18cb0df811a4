//! The process-private geometry of a segment: read once from its control block, validated
//! against the segment's size and this build's layout, and never re-read afterwards.

use super::*;

/// Process-private copy of a validated geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes of the whole segment.
    pub total_size: u64,
    /// Offset of the slot table.
    pub slots_offset: u64,
    /// Offset of the data ring.
    pub data_offset: u64,
    /// Bytes of the data ring.
    pub capacity: u64,
    /// Message bound (0 = none).
    pub maxsize: u64,
    /// Stamp key.
    pub nonce: u64,
    /// Slots in the table.
    pub max_slots: u32,
    /// `FLAG_*`.
    pub flags: u32,
    /// [`KIND_QUEUE`] or [`KIND_BROADCAST`].
    pub kind: u32,
}

/// Why a region is not a valid shmq segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The region is smaller than a header.
    TooSmall {
        /// Bytes available.
        len: u64,
    },
    /// The magic number does not match: not a shmq segment.
    BadMagic,
    /// A shmq segment of another layout version.
    VersionMismatch {
        /// Version found.
        found: u32,
        /// Version this library speaks.
        expected: u32,
    },
    /// Another kind of shmq segment (e.g. a broadcast ring opened as a queue).
    WrongKind {
        /// Kind found.
        found: u32,
    },
    /// A size or offset field is inconsistent.
    Corrupted(&'static str),
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooSmall { len } => write!(f, "segment too small for a header ({len} bytes)"),
            Self::BadMagic => write!(f, "not a shmq segment (bad magic)"),
            Self::VersionMismatch { found, expected } => {
                write!(f, "layout version {found}, this library speaks {expected}")
            }
            Self::WrongKind { found } => write!(f, "wrong segment kind {found}"),
            Self::Corrupted(what) => write!(f, "corrupted segment header: {what}"),
        }
    }
}

impl std::error::Error for LayoutError {}

impl Geometry {
    /// The geometry of a new segment. `capacity` is rounded up to a multiple of the page size.
    pub fn new(
        capacity: u64,
        maxsize: u64,
        max_slots: u32,
        flags: u32,
        nonce: u64,
    ) -> Option<Self> {
        if capacity == 0 || capacity > MAX_CAPACITY || max_slots == 0 || max_slots > MAX_SLOTS {
            return None;
        }
        let capacity = capacity.max(MIN_CAPACITY).div_ceil(CAPACITY_QUANTUM) * CAPACITY_QUANTUM;
        let slots_offset = control_size();
        let data_offset = (slots_offset + u64::from(max_slots) * slot_size()).div_ceil(PAGE) * PAGE;
        Some(Self {
            total_size: data_offset + capacity,
            slots_offset,
            data_offset,
            capacity,
            maxsize,
            nonce,
            max_slots,
            flags,
            kind: KIND_QUEUE,
        })
    }

    /// This geometry for a broadcast ring (which has no message bound).
    pub fn broadcast(mut self) -> Self {
        self.kind = KIND_BROADCAST;
        self.maxsize = 0;
        self
    }

    /// Whether this is a broadcast ring.
    pub fn is_broadcast(&self) -> bool {
        self.kind == KIND_BROADCAST
    }

    /// Reads and validates the identity of a segment of `len` bytes whose `ready` flag was
    /// seen set (Acquire). Every bound used later is checked here.
    pub fn read(id: &Identity, len: u64) -> Result<Self, LayoutError> {
        // Relaxed: these were published by the creator's Release store of `ready`, which the
        // caller observed with Acquire.
        let magic = id.magic.load(Ordering::Relaxed);
        if magic != MAGIC {
            return Err(LayoutError::BadMagic);
        }
        let version = id.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(LayoutError::VersionMismatch {
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let kind = id.kind.load(Ordering::Relaxed);
        if kind != KIND_QUEUE && kind != KIND_BROADCAST {
            return Err(LayoutError::WrongKind { found: kind });
        }
        if id.lanes.load(Ordering::Relaxed) != LANES as u32 {
            return Err(LayoutError::Corrupted("lanes per slot"));
        }
        let g = Self {
            total_size: id.total_size.load(Ordering::Relaxed),
            slots_offset: id.slots_offset.load(Ordering::Relaxed),
            data_offset: id.data_offset.load(Ordering::Relaxed),
            capacity: id.capacity.load(Ordering::Relaxed),
            maxsize: id.maxsize.load(Ordering::Relaxed),
            nonce: id.nonce.load(Ordering::Relaxed),
            max_slots: id.max_slots.load(Ordering::Relaxed),
            flags: id.flags.load(Ordering::Relaxed),
            kind,
        };
        g.check(len)?;
        Ok(g)
    }

    fn check(&self, len: u64) -> Result<(), LayoutError> {
        use LayoutError::Corrupted;
        if self.total_size != len {
            return Err(Corrupted("total size differs from the segment size"));
        }
        if self.capacity < MIN_CAPACITY
            || self.capacity > MAX_CAPACITY
            || self.capacity % RECORD_ALIGN != 0
        {
            return Err(Corrupted("capacity"));
        }
        if self.kind == KIND_BROADCAST && self.maxsize != 0 {
            return Err(Corrupted("a broadcast ring has no message bound"));
        }
        if self.max_slots == 0 || self.max_slots > MAX_SLOTS {
            return Err(Corrupted("slot count"));
        }
        if self.slots_offset != control_size() {
            return Err(Corrupted("slot table offset"));
        }
        let slots_end = self.slots_offset + u64::from(self.max_slots) * slot_size();
        if self.data_offset < slots_end || self.data_offset % PAGE != 0 {
            return Err(Corrupted("data offset"));
        }
        if self.data_offset.checked_add(self.capacity) != Some(self.total_size) {
            return Err(Corrupted("data ring exceeds the segment"));
        }
        Ok(())
    }

    /// Writes this geometry into a fresh identity (the caller then sets `ready`).
    pub fn write(&self, id: &Identity, created_ns: u64) {
        // Relaxed: published by the Release store of `ready` that follows.
        id.magic.store(MAGIC, Ordering::Relaxed);
        id.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        id.kind.store(self.kind, Ordering::Relaxed);
        id.total_size.store(self.total_size, Ordering::Relaxed);
        id.slots_offset.store(self.slots_offset, Ordering::Relaxed);
        id.data_offset.store(self.data_offset, Ordering::Relaxed);
        id.capacity.store(self.capacity, Ordering::Relaxed);
        id.maxsize.store(self.maxsize, Ordering::Relaxed);
        id.nonce.store(self.nonce, Ordering::Relaxed);
        id.max_slots.store(self.max_slots, Ordering::Relaxed);
        id.flags.store(self.flags, Ordering::Relaxed);
        id.lanes.store(LANES as u32, Ordering::Relaxed);
        id.created_ns.store(created_ns, Ordering::Relaxed);
    }

    /// Largest payload a single message may have.
    pub fn max_payload(&self) -> u64 {
        (self.capacity - RECORD_HEADER).min(MAX_PAYLOAD)
    }

    /// The stamp tag of position `pos` (a multiple of 16): a bijection of `pos / 16` keyed by
    /// the segment nonce, shifted clear of the state bits.
    #[inline]
    pub fn tag(&self, pos: u64) -> u64 {
        ((pos >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.nonce) << 4
    }
}
