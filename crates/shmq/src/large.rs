//! Messages larger than the ring: each travels in a side segment of its own
//! (`shmqside-<ring name>-<id>`), referenced from the ring by a 24-byte descriptor record.
//! Everything about them stays in this crate: callers send and receive plain payloads.

use crate::os::{self, ShmSegment};
use crate::SendError;
use shmq_core::layout::{SideDescriptor, RECORD_FLAG_SIDE};
use shmq_core::{Message, RecordView};
use std::borrow::Cow;

/// Side segments made for one send: removed on drop unless the send went through.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// (index in the batch, encoded descriptor)
    sides: Vec<(usize, [u8; SideDescriptor::SIZE])>,
    names: Vec<String>,
}

impl Staged {
    /// Puts every message of `msgs` larger than `max` into a side segment of `ring`'s.
    pub(crate) fn new(
        ring: &ShmSegment,
        msgs: &[Message<'_>],
        max: u64,
    ) -> Result<Self, SendError> {
        let mut staged = Self::default();
        for (i, m) in msgs.iter().enumerate() {
            if m.payload.len() as u64 <= max {
                continue;
            }
            let id = os::random_u64();
            ring.side_create(id, m.payload)
                .map_err(|e| SendError::SideSegment {
                    kind: e.kind(),
                    size: m.payload.len() as u64,
                    free: os::shm_free_bytes(),
                })?;
            staged.names.push(ring.side_name(id));
            let d = SideDescriptor {
                len: m.payload.len() as u64,
                id,
            };
            staged.sides.push((i, d.encode()));
        }
        Ok(staged)
    }

    /// The batch to send: `msgs` with every staged message replaced by its descriptor.
    pub(crate) fn messages<'a, 'm>(&'a self, msgs: &'m [Message<'a>]) -> Cow<'m, [Message<'a>]> {
        if self.sides.is_empty() {
            return Cow::Borrowed(msgs); // the usual case: no allocation
        }
        let mut out = msgs.to_vec();
        for (i, d) in &self.sides {
            out[*i] = Message {
                codec: msgs[*i].codec,
                flags: msgs[*i].flags | RECORD_FLAG_SIDE,
                payload: d,
            };
        }
        Cow::Owned(out)
    }

    /// The batch was sent: its segments now belong to the ring.
    pub(crate) fn keep(mut self) {
        self.names.clear();
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = ShmSegment::unlink(name);
        }
    }
}

/// A message larger than the ring, mapped from its side segment. Its bytes stay valid as
/// long as this value lives, whoever removes the segment's name meanwhile.
#[derive(Debug)]
pub struct LargeMessage {
    codec: u16,
    seg: ShmSegment,
    /// A queue's consumer owns the message: its segment goes when this does.
    remove: Option<String>,
}

impl LargeMessage {
    /// Maps the side segment whose descriptor (in up to two parts) is a record's payload.
    pub(crate) fn open(
        ring: &ShmSegment,
        codec: u16,
        (first, second): (&[u8], &[u8]),
        take: bool,
    ) -> Result<Self, &'static str> {
        const NO_DESCRIPTOR: &str =
            "a record flagged as a side-segment reference holds no descriptor";
        let mut bytes = [0u8; SideDescriptor::SIZE];
        if first.len() + second.len() != bytes.len() {
            return Err(NO_DESCRIPTOR);
        }
        bytes[..first.len()].copy_from_slice(first);
        bytes[first.len()..].copy_from_slice(second);
        let d = SideDescriptor::decode(&bytes).ok_or(NO_DESCRIPTOR)?;
        let seg = ring
            .side_open(d.id, d.len)
            .map_err(|_| "the side segment of a large message is missing or has the wrong size")?;
        Ok(Self {
            codec,
            seg,
            remove: take.then(|| ring.side_name(d.id)),
        })
    }

    /// Codec id of the message.
    pub fn codec(&self) -> u16 {
        self.codec
    }
    /// The message.
    pub fn bytes(&self) -> &[u8] {
        self.seg.bytes()
    }
}

impl Drop for LargeMessage {
    fn drop(&mut self) {
        if let Some(name) = &self.remove {
            // Gone already (a reclaimer removed it) is fine.
            let _ = ShmSegment::unlink(name);
        }
    }
}

/// A message handed to a receive callback: in the ring (borrowed while the record is
/// claimed), or a large one mapped from its side segment.
#[derive(Debug)]
pub struct Received<'a>(Body<'a>);

#[derive(Debug)]
enum Body<'a> {
    Ring(RecordView<'a>),
    Large(LargeMessage),
}

impl<'a> Received<'a> {
    /// The message behind record `m` of `ring`: a large one is mapped now, while the record
    /// is still claimed (or held), so nobody can remove its segment before we map it.
    /// `take`: the caller owns the message (queues), so its segment goes with it.
    // Inlined into the binding's batch receive: 848 -> 806 instructions per message there
    // (callgrind). The Rust API's own batch path, where the compiler then moves the message
    // with `memcpy`, pays 448 -> 495; the Python path is the one users run most.
    #[inline]
    pub(crate) fn of(
        ring: &ShmSegment,
        m: RecordView<'a>,
        take: bool,
    ) -> Result<Self, &'static str> {
        if m.flags & RECORD_FLAG_SIDE == 0 {
            return Ok(Self(Body::Ring(m)));
        }
        LargeMessage::open(ring, m.codec, m.parts(), take).map(|l| Self(Body::Large(l)))
    }

    /// Codec id of the message.
    pub fn codec(&self) -> u16 {
        match &self.0 {
            Body::Ring(m) => m.codec,
            Body::Large(l) => l.codec,
        }
    }
    /// Payload length.
    pub fn len(&self) -> usize {
        match &self.0 {
            Body::Ring(m) => m.len(),
            Body::Large(l) => l.bytes().len(),
        }
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The payload as (up to) two slices: a message in the ring may wrap around its end.
    pub fn parts(&self) -> (&[u8], &[u8]) {
        match &self.0 {
            Body::Ring(m) => m.parts(),
            Body::Large(l) => (l.bytes(), &[]),
        }
    }
    /// Copies the payload into `dst`, which must be exactly [`Received::len`] bytes.
    pub fn copy_to(&self, dst: &mut [u8]) {
        let (a, b) = self.parts();
        let (x, y) = dst.split_at_mut(a.len());
        x.copy_from_slice(a);
        y.copy_from_slice(b);
    }
    /// Appends the payload to `dst`.
    pub fn extend_into(&self, dst: &mut Vec<u8>) {
        let (a, b) = self.parts();
        dst.reserve(a.len() + b.len());
        dst.extend_from_slice(a);
        dst.extend_from_slice(b);
    }
    /// The payload as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.extend_into(&mut v);
        v
    }
    /// A large message, to keep past the callback (and copy out of it after the record is
    /// released, which a large copy should not delay); `Err(self)` for one in the ring.
    #[inline]
    pub fn into_large(self) -> Result<LargeMessage, Self> {
        match self.0 {
            Body::Large(l) => Ok(l),
            body => Err(Self(body)),
        }
    }
}
