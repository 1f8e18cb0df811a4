//! Named shared-memory MPMC message queues.
//!
//! A [`Queue`] lives in one POSIX shared-memory segment (`/dev/shm/shmq-<name>` on Linux).
//! Any process on the machine opens it by name; many producers and many consumers use it at
//! once; each message goes to exactly one consumer, in FIFO order per producer. Messages are
//! byte strings of any size up to the ring's capacity, tagged with a codec id (0 = raw bytes)
//! so that Python and Rust processes can share a queue.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let name = format!("doc-{}", std::process::id());
//! let q = shmq::Queue::builder(&name).capacity(1 << 16).create()?;
//! q.send(b"hello")?;
//! assert_eq!(q.recv()?, b"hello");
//! # Ok(()) }
//! ```
//!
//! # Waiting
//!
//! Blocking calls spin for about 50 µs, then sleep on a futex in the segment; producers and
//! consumers make a wake-up system call only when someone sleeps. Timeouts use the monotonic
//! clock.
//!
//! # Lifetime
//!
//! Each process that opens a queue is attached to it until it drops the [`Queue`] (or dies).
//! The last process to detach removes the segment, unless it was created
//! [persistent](QueueBuilder::persistent). Processes that died are detached by whoever notices
//! (on open and on close).
//!
//! # Process crashes
//!
//! No lock is ever held; a process killed at any point cannot block the others' progress
//! forever. See `docs/protocol.md` for the exact guarantees.
//!
//! # Capacity and memory layout (may change between versions)
//!
//! A message occupies 16 bytes of header plus its payload, rounded up to 16 bytes. The
//! largest message is `capacity - 16` bytes. The segment also holds a header and a table of
//! `max_processes` slots of 384 bytes.

#![warn(missing_docs)]

mod broadcast;
mod os;

pub use broadcast::{Broadcast, BroadcastBuilder, ReadError, Subscriber};
pub use shmq_core::ring::{Delivery, Held, ReadTimeoutError, SubscriberInfo, TryReadError};

pub use shmq_core::ring::{RecvTimeoutError, SendTimeoutError, TryRecvError, TrySendError};
pub use shmq_core::{LayoutError, Message, RecordView, Stats};

use os::ShmSegment;
use shmq_core::{AttachError, Detached, Geometry, Ring};
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

pub use shmq_core::layout::RECORD_FLAG_SIDE;

/// Bytes a message larger than the ring takes in it: its side-segment descriptor.
pub const SIDE_DESCRIPTOR_SIZE: usize = shmq_core::layout::SideDescriptor::SIZE;

/// Codec id of raw bytes (no serialisation): what Rust sends by default, and what Python
/// receives as `bytes`.
pub const CODEC_RAW: u16 = 0;

/// Prefix of every segment name in `/dev/shm`.
pub const SEGMENT_PREFIX: &str = "shmq-";

/// Default ring size: 1 MiB.
pub const DEFAULT_CAPACITY: u64 = 1 << 20;
/// Default size of the process table.
pub const DEFAULT_MAX_PROCESSES: u32 = 128;

/// Why a queue could not be created or opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// `create` was asked for and the name exists.
    AlreadyExists(String),
    /// `open` was asked for and the name does not exist.
    DoesNotExist(String),
    /// The segment exists and this user may not open it.
    PermissionDenied(String),
    /// The name is empty, too long, or has characters other than `[A-Za-z0-9._-]`.
    InvalidName(String),
    /// A capacity, maxsize or process count out of range.
    InvalidArgument(String),
    /// The segment is not a shmq queue of this version, or is damaged.
    Corrupted {
        /// Queue name.
        name: String,
        /// What is wrong.
        reason: LayoutError,
    },
    /// The segment's creator never finished initialising it.
    NotInitialized(String),
    /// The name belongs to the other kind of segment (a broadcast opened as a queue, or the
    /// other way round).
    WrongKind {
        /// Queue name.
        name: String,
        /// What the segment is: `"queue"` or `"broadcast"`.
        found: &'static str,
    },
    /// All process slots are taken by live processes.
    TooManyProcesses {
        /// Queue name.
        name: String,
        /// Size of the process table.
        max: u32,
    },
    /// Another OS error.
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyExists(n) => write!(f, "queue {n:?} already exists"),
            Self::DoesNotExist(n) => write!(f, "queue {n:?} does not exist"),
            Self::PermissionDenied(n) => write!(f, "permission denied for queue {n:?}"),
            Self::InvalidName(why) => write!(f, "invalid queue name: {why}"),
            Self::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            Self::Corrupted { name, reason } => write!(f, "queue {name:?}: {reason}"),
            Self::NotInitialized(n) => {
                write!(f, "queue {n:?} was never initialised (its creator died?)")
            }
            Self::WrongKind { name, found } => {
                write!(f, "{name:?} is a {found}, not a {}", other_kind(found))
            }
            Self::TooManyProcesses { name, max } => {
                write!(f, "queue {name:?}: all {max} process slots are in use")
            }
            Self::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Corrupted { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

fn other_kind(kind: &str) -> &'static str {
    if kind == "queue" {
        "broadcast"
    } else {
        "queue"
    }
}

fn kind_name(kind: u32) -> &'static str {
    if kind == shmq_core::layout::KIND_BROADCAST {
        "broadcast"
    } else {
        "queue"
    }
}

/// Why a blocking send failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The message (or batch) can never fit in this queue.
    TooLarge {
        /// Payload bytes asked for.
        size: u64,
        /// The most allowed.
        max: u64,
    },
    /// The shared state is inconsistent.
    Corrupted(&'static str),
    /// A message larger than the ring could not be put in a side segment (see
    /// [`QueueBuilder::allow_large`]).
    SideSegment,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { size, max } => {
                write!(f, "message of {size} bytes can never fit (at most {max})")
            }
            Self::Corrupted(w) => write!(f, "corrupted queue: {w}"),
            Self::SideSegment => write!(f, "{}", TrySendError::SideSegment),
        }
    }
}
impl std::error::Error for SendError {}

/// Why a blocking receive failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The shared state is inconsistent.
    Corrupted(&'static str),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Corrupted(w) => write!(f, "corrupted queue: {w}"),
        }
    }
}
impl std::error::Error for RecvError {}

/// Checks a queue name (or namespace): 1 to 200 characters of `[A-Za-z0-9._-]`, not starting
/// with a dot.
pub fn validate_name(name: &str) -> Result<(), OpenError> {
    let bad = |why: &str| Err(OpenError::InvalidName(format!("{name:?}: {why}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 200 {
        return bad("longer than 200 characters");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return bad("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// The `/dev/shm` entry name of queue `name`.
pub fn segment_name(name: &str) -> String {
    format!("{SEGMENT_PREFIX}{name}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Create,
    Open,
    OpenOrCreate,
}

/// Settings for creating or opening a [`Queue`].
#[derive(Clone, Debug)]
pub struct QueueBuilder {
    name: String,
    capacity: u64,
    maxsize: u64,
    max_processes: u32,
    mode: u32,
    persistent: bool,
    kind: u32,
    lag: bool,
    allow_large: bool,
}

impl QueueBuilder {
    /// Let this handle send messages larger than the ring (default `false`: they are
    /// refused with `TooLarge`). Such a message travels in a shared-memory segment of its own
    /// (`/dev/shm/shmqside-<name>-<id>`) referenced from the ring; receivers map it, and it
    /// is removed once the message is consumed (or reclaimed, or the queue is removed).
    /// Receiving needs no setting.
    pub fn allow_large(mut self, yes: bool) -> Self {
        self.allow_large = yes;
        self
    }
    /// Ring size in bytes (rounded up to a multiple of 4096; at least 4096). Ignored when
    /// opening an existing queue.
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.capacity = bytes;
        self
    }
    /// Bound on the number of queued messages (0, the default: only bytes bound it).
    pub fn maxsize(mut self, messages: u64) -> Self {
        self.maxsize = messages;
        self
    }
    /// How many processes may be attached at once (default 128).
    pub fn max_processes(mut self, n: u32) -> Self {
        self.max_processes = n;
        self
    }
    /// Permission bits of the segment (default `0o600`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
    /// Keep the segment when the last process detaches (default `false`).
    pub fn persistent(mut self, yes: bool) -> Self {
        self.persistent = yes;
        self
    }
    /// Creates the queue; fails if the name exists.
    pub fn create(self) -> Result<Queue, OpenError> {
        self.build(Mode::Create)
    }
    /// Opens the existing queue; fails if it does not exist.
    pub fn open(self) -> Result<Queue, OpenError> {
        self.build(Mode::Open)
    }
    /// Opens the queue if it exists, creates it otherwise.
    pub fn open_or_create(self) -> Result<Queue, OpenError> {
        self.build(Mode::OpenOrCreate)
    }

    fn build(self, mode: Mode) -> Result<Queue, OpenError> {
        validate_name(&self.name)?;
        if self.mode > 0o777 {
            return Err(OpenError::InvalidArgument(format!(
                "mode {:o} is not 0..=0o777",
                self.mode
            )));
        }
        let mut flags = if self.persistent {
            shmq_core::layout::FLAG_PERSISTENT
        } else {
            0
        };
        if self.lag {
            flags |= shmq_core::layout::FLAG_LAG;
        }
        let kind = self.kind;
        let geometry = if mode == Mode::Open {
            None
        } else {
            Some(
                Geometry::new(
                    self.capacity,
                    self.maxsize,
                    self.max_processes,
                    flags,
                    os::random_u64(),
                )
                .map(|g| {
                    if kind == shmq_core::layout::KIND_BROADCAST {
                        g.broadcast()
                    } else {
                        g
                    }
                })
                .ok_or_else(|| {
                    OpenError::InvalidArgument(format!(
                        "capacity {} (must be 1..=2^40) or max_processes {} (1..=4096)",
                        self.capacity, self.max_processes
                    ))
                })?,
            )
        };
        let seg = segment_name(&self.name);
        let give_up = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(g) = geometry {
                match ShmSegment::create(&seg, g.total_size, self.mode) {
                    Ok(b) => {
                        let ring = Ring::create(b, g, now_ns()).map_err(|(_, e)| {
                            let _ = ShmSegment::unlink(&seg);
                            self.attach_error(e)
                        })?;
                        return Ok(Queue {
                            ring: Some(ring),
                            name: self.name,
                            allow_large: self.allow_large,
                        });
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::AlreadyExists
                            && mode == Mode::OpenOrCreate => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(OpenError::AlreadyExists(self.name));
                    }
                    Err(e) => return Err(self.io_error(e)),
                }
            }
            match ShmSegment::open(&seg) {
                Ok(Some(b)) => match Ring::open(b) {
                    Ok(ring) if ring.geometry().kind != kind => {
                        let found = kind_name(ring.geometry().kind);
                        drop(Queue {
                            ring: Some(ring),
                            name: self.name.clone(),
                            allow_large: false,
                        });
                        return Err(OpenError::WrongKind {
                            name: self.name,
                            found,
                        });
                    }
                    Ok(ring) => {
                        return Ok(Queue {
                            ring: Some(ring),
                            name: self.name,
                            allow_large: self.allow_large,
                        })
                    }
                    // Being created or being removed: try again shortly.
                    Err((_, AttachError::NotReady | AttachError::Closing))
                        if Instant::now() < give_up =>
                    {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err((_, e)) => return Err(self.attach_error(e)),
                },
                Ok(None) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Ok(None) => return Err(OpenError::NotInitialized(self.name)),
                Err(e) if e.kind() == io::ErrorKind::NotFound && mode == Mode::OpenOrCreate => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(OpenError::DoesNotExist(self.name));
                }
                Err(e) => return Err(self.io_error(e)),
            }
        }
    }

    fn io_error(&self, e: io::Error) -> OpenError {
        match e.kind() {
            io::ErrorKind::PermissionDenied => OpenError::PermissionDenied(self.name.clone()),
            _ => OpenError::Io(e),
        }
    }

    fn attach_error(&self, e: AttachError) -> OpenError {
        let name = self.name.clone();
        match e {
            AttachError::NotReady => OpenError::NotInitialized(name),
            AttachError::Closing => OpenError::DoesNotExist(name),
            AttachError::NoFreeSlot { max_slots } => OpenError::TooManyProcesses {
                name,
                max: max_slots,
            },
            AttachError::Layout(reason) => OpenError::Corrupted { name, reason },
        }
    }
}

/// Side segments made for a send (see [`Queue::stage_large`]): removed on drop unless kept.
#[derive(Debug, Default)]
pub struct Staged {
    /// (index in the batch, encoded descriptor)
    sides: Vec<(usize, [u8; shmq_core::layout::SideDescriptor::SIZE])>,
    names: Vec<String>,
}

impl Staged {
    /// The batch to send: `msgs` with every staged message replaced by its descriptor.
    #[inline]
    pub fn messages<'a, 'm>(
        &'a self,
        msgs: &'m [Message<'a>],
    ) -> std::borrow::Cow<'m, [Message<'a>]> {
        if self.sides.is_empty() {
            return std::borrow::Cow::Borrowed(msgs); // the usual case: no allocation
        }
        let mut out = msgs.to_vec();
        for (i, d) in &self.sides {
            out[*i] = Message {
                codec: msgs[*i].codec,
                flags: msgs[*i].flags | shmq_core::layout::RECORD_FLAG_SIDE,
                payload: d,
            };
        }
        std::borrow::Cow::Owned(out)
    }
    /// Whether nothing was staged.
    pub fn is_empty(&self) -> bool {
        self.sides.is_empty()
    }
    /// The batch was sent: its segments now belong to the queue.
    #[inline]
    pub fn keep(mut self) {
        self.names.clear();
    }
}

impl Drop for Staged {
    #[inline]
    fn drop(&mut self) {
        for name in &self.names {
            let _ = ShmSegment::unlink(name);
        }
    }
}

/// A message larger than the ring, mapped from its side segment.
#[derive(Debug)]
pub struct SideMessage {
    seg: ShmSegment,
    id: u64,
}

impl SideMessage {
    /// The message.
    pub fn bytes(&self) -> &[u8] {
        self.seg.bytes()
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A named shared-memory queue, attached to by this process.
///
/// `Queue` is `Send + Sync`: share it between threads by reference or `Arc`.
pub struct Queue {
    ring: Option<Ring<ShmSegment>>,
    name: String,
    /// Messages larger than the ring travel in side segments (see [`QueueBuilder::allow_large`]).
    allow_large: bool,
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Settings for the queue `name`.
    pub fn builder(name: &str) -> QueueBuilder {
        QueueBuilder {
            name: name.to_owned(),
            capacity: DEFAULT_CAPACITY,
            maxsize: 0,
            max_processes: DEFAULT_MAX_PROCESSES,
            mode: 0o600,
            persistent: false,
            kind: shmq_core::layout::KIND_QUEUE,
            lag: false,
            allow_large: false,
        }
    }
    /// Creates queue `name` with a ring of `capacity` bytes.
    pub fn create(name: &str, capacity: u64) -> Result<Self, OpenError> {
        Self::builder(name).capacity(capacity).create()
    }
    /// Opens the existing queue `name`.
    pub fn open(name: &str) -> Result<Self, OpenError> {
        Self::builder(name).open()
    }
    /// Opens queue `name`, creating it with `capacity` bytes if it does not exist.
    pub fn open_or_create(name: &str, capacity: u64) -> Result<Self, OpenError> {
        Self::builder(name).capacity(capacity).open_or_create()
    }

    #[inline]
    pub(crate) fn ring(&self) -> &Ring<ShmSegment> {
        self.ring.as_ref().expect("queue is attached until dropped")
    }

    /// The queue's name.
    #[inline]
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Ring size in bytes.
    #[inline]
    pub fn capacity(&self) -> u64 {
        self.ring().geometry().capacity
    }
    /// Message bound (0 = none).
    #[inline]
    pub fn maxsize(&self) -> u64 {
        self.ring().geometry().maxsize
    }
    /// Largest payload one message may have.
    #[inline]
    pub fn max_message_size(&self) -> u64 {
        self.ring().max_payload()
    }
    /// Whether the segment outlives its last process.
    pub fn is_persistent(&self) -> bool {
        self.ring().geometry().flags & shmq_core::layout::FLAG_PERSISTENT != 0
    }

    /// Sends `msg` (raw codec), waiting for space as long as needed.
    pub fn send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.send_message(Message::raw(msg), None)
    }
    /// Sends `msg` if it fits now.
    pub fn try_send(&self, msg: &[u8]) -> Result<(), TrySendError> {
        self.try_send_many(&[Message::raw(msg)])
    }
    /// Sends `msg`, waiting for space at most `timeout`.
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendTimeoutError> {
        self.send_many_deadline(&[Message::raw(msg)], Some(Instant::now() + timeout), None)
    }
    /// Sends a message with an explicit codec id, waiting until `deadline` (forever if `None`).
    pub fn send_message(
        &self,
        msg: Message<'_>,
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        match self.send_many_deadline(&[msg], deadline, None) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::TooLarge { size, max }) => Err(SendError::TooLarge { size, max }),
            Err(SendTimeoutError::Corrupted(w)) => Err(SendError::Corrupted(w)),
            Err(SendTimeoutError::SideSegment) => Err(SendError::SideSegment),
            Err(SendTimeoutError::Timeout) => unreachable!("no deadline"),
        }
    }
    /// Sends every message of `msgs`, contiguously and in order, or none of them.
    #[inline]
    pub fn try_send_many(&self, msgs: &[Message<'_>]) -> Result<(), TrySendError> {
        if !self.allow_large {
            return self.ring().try_send_many(msgs);
        }
        let staged = self.stage_large(msgs)?;
        self.ring().try_send_many(&staged.messages(msgs))?;
        staged.keep();
        Ok(())
    }
    /// Sends every message of `msgs` or none, waiting until `deadline` (forever if `None`).
    /// With `slice`, gives up with `Timeout` after at most that long (to let a caller check
    /// for interrupts, then call again).
    pub fn send_many_deadline(
        &self,
        msgs: &[Message<'_>],
        deadline: Option<Instant>,
        slice: Option<Duration>,
    ) -> Result<(), SendTimeoutError> {
        let staged = self.stage_large(msgs)?;
        self.ring()
            .send_many_deadline(&staged.messages(msgs), deadline, slice)?;
        staged.keep();
        Ok(())
    }

    /// Whether this handle sends messages larger than the ring through side segments.
    #[inline]
    pub fn allows_large(&self) -> bool {
        self.allow_large
    }

    /// Puts every message of `msgs` larger than the ring into a side segment of its own
    /// (when [`QueueBuilder::allow_large`] was set; otherwise they stay and the send refuses
    /// them). Send [`Staged::messages`], then call [`Staged::keep`]; dropping a `Staged`
    /// without `keep` removes its segments.
    #[inline]
    pub fn stage_large(&self, msgs: &[Message<'_>]) -> Result<Staged, TrySendError> {
        if !self.allow_large {
            return Ok(Staged::default());
        }
        self.stage_large_slow(msgs)
    }

    fn stage_large_slow(&self, msgs: &[Message<'_>]) -> Result<Staged, TrySendError> {
        let max = self.max_message_size();
        let mut staged = Staged::default();
        if msgs.iter().all(|m| m.payload.len() as u64 <= max) {
            return Ok(staged);
        }
        let seg = self.ring().backing();
        for (i, m) in msgs.iter().enumerate() {
            if m.payload.len() as u64 <= max {
                continue;
            }
            let id = os::random_u64();
            seg.side_create(id, m.payload)
                .map_err(|_| TrySendError::SideSegment)?;
            staged.names.push(seg.side_name(id));
            let d = shmq_core::layout::SideDescriptor {
                len: m.payload.len() as u64,
                id,
            };
            staged.sides.push((i, d.encode()));
        }
        Ok(staged)
    }

    /// If `m` references a side segment, maps it; `Ok(None)` for an ordinary record.
    #[inline]
    pub fn open_side(&self, m: &RecordView<'_>) -> Result<Option<SideMessage>, &'static str> {
        if m.flags & shmq_core::layout::RECORD_FLAG_SIDE == 0 {
            return Ok(None);
        }
        self.open_side_raw(m.flags, &m.to_vec())
    }

    /// As [`Queue::open_side`], from a record's flags and payload.
    pub fn open_side_raw(
        &self,
        flags: u16,
        payload: &[u8],
    ) -> Result<Option<SideMessage>, &'static str> {
        if flags & shmq_core::layout::RECORD_FLAG_SIDE == 0 {
            return Ok(None);
        }
        let d = shmq_core::layout::SideDescriptor::decode(payload)
            .ok_or("a record flagged as a side-segment reference holds no descriptor")?;
        self.ring()
            .backing()
            .side_open(d.id, d.len)
            .map(|seg| Some(SideMessage { seg, id: d.id }))
            .map_err(|_| "the side segment of a large message is missing or has the wrong size")
    }

    /// The payload of `m` appended to `out`, from its side segment if it has one (which a
    /// queue's consumer then removes: the message is its alone).
    fn extend_payload(&self, m: &RecordView<'_>, out: &mut Vec<u8>) -> Result<(), &'static str> {
        match self.open_side(m)? {
            None => m.extend_into(out),
            Some(side) => {
                out.extend_from_slice(side.bytes());
                if !self.ring().is_broadcast() {
                    self.remove_side(&side);
                }
            }
        }
        Ok(())
    }

    /// Removes a side segment whose message was taken (queues; broadcast rings remove them
    /// when they reclaim the record).
    pub fn remove_side(&self, side: &SideMessage) {
        let _ = ShmSegment::unlink(&self.ring().backing().side_name(side.id));
    }

    /// Receives a message (any codec), waiting as long as needed.
    pub fn recv(&self) -> Result<Vec<u8>, RecvError> {
        let mut v = Vec::new();
        match self.recv_into_deadline(&mut v, None) {
            Ok(_) => Ok(v),
            Err(RecvTimeoutError::Corrupted(w)) => Err(RecvError::Corrupted(w)),
            Err(RecvTimeoutError::Timeout) => unreachable!("no deadline"),
        }
    }
    /// Receives a message if one is ready.
    pub fn try_recv(&self) -> Result<Vec<u8>, TryRecvError> {
        let mut v = Vec::new();
        self.ring()
            .try_recv_with(|m| self.extend_payload(&m, &mut v))?
            .map_err(TryRecvError::Corrupted)?;
        Ok(v)
    }
    /// Receives a message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        let mut v = Vec::new();
        self.recv_into_deadline(&mut v, Some(Instant::now() + timeout))
            .map(|_| v)
    }
    /// Receives a message into `buf` (cleared first), reusing its allocation; returns the
    /// message's codec id.
    pub fn recv_into(&self, buf: &mut Vec<u8>) -> Result<u16, RecvError> {
        self.recv_into_deadline(buf, None).map_err(|e| match e {
            RecvTimeoutError::Corrupted(w) => RecvError::Corrupted(w),
            RecvTimeoutError::Timeout => unreachable!("no deadline"),
        })
    }
    /// As [`Queue::recv_into`], waiting until `deadline` (forever if `None`).
    pub fn recv_into_deadline(
        &self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<u16, RecvTimeoutError> {
        buf.clear();
        let mut codec = 0;
        let mut side = Ok(());
        self.recv_many_deadline(1, deadline, None, |m| {
            codec = m.codec;
            side = self.extend_payload(&m, buf);
        })?;
        side.map_err(RecvTimeoutError::Corrupted)?;
        Ok(codec)
    }
    /// Receives up to `max` ready messages into `out` (appended); returns how many.
    pub fn try_recv_many(&self, max: usize, out: &mut Vec<Vec<u8>>) -> Result<usize, TryRecvError> {
        let mut side = Ok(());
        let n = self.ring().try_recv_many_with(max, |m| {
            let mut v = Vec::new();
            if let Err(e) = self.extend_payload(&m, &mut v) {
                side = Err(e);
            }
            out.push(v);
        })?;
        side.map_err(TryRecvError::Corrupted)?;
        Ok(n)
    }
    /// Receives up to `max` messages, handing each to `f` while it is still in the ring
    /// (zero-copy); waits for the first until `deadline`; `slice` as in
    /// [`Queue::send_many_deadline`].
    pub fn recv_many_deadline(
        &self,
        max: usize,
        deadline: Option<Instant>,
        slice: Option<Duration>,
        f: impl FnMut(RecordView<'_>),
    ) -> Result<usize, RecvTimeoutError> {
        self.ring().recv_many_deadline(max, deadline, slice, f)
    }
    /// Receives up to `max` ready messages, handing each to `f` while it is still in the ring.
    pub fn try_recv_many_with(
        &self,
        max: usize,
        f: impl FnMut(RecordView<'_>),
    ) -> Result<usize, TryRecvError> {
        self.ring().try_recv_many_with(max, f)
    }
    /// As [`Queue::try_recv_many_with`], stopping before a message that would take the
    /// batch's payload bytes past `max_bytes` (the first message is always taken).
    #[inline]
    pub fn try_recv_many_limited(
        &self,
        max: usize,
        max_bytes: u64,
        f: impl FnMut(RecordView<'_>),
    ) -> Result<usize, TryRecvError> {
        self.ring().try_recv_many_limited(max, max_bytes, f)
    }
    /// Receives one ready message, handing it to `f` while it is still in the ring.
    #[inline]
    pub fn try_recv_with<R>(&self, f: impl FnOnce(RecordView<'_>) -> R) -> Result<R, TryRecvError> {
        self.ring().try_recv_with(f)
    }

    /// Wakes every thread blocked on this queue, in every process; they re-check their
    /// condition and sleep again if nothing changed. Used by bindings whose `close()` must
    /// release their own blocked calls.
    pub fn wake_all_waiters(&self) {
        self.ring().wake_all_waiters();
    }

    /// Messages queued (approximate while others are busy, exact with a `maxsize`).
    pub fn len(&self) -> u64 {
        self.ring().len()
    }
    /// Whether no message is queued.
    pub fn is_empty(&self) -> bool {
        self.ring().is_empty()
    }
    /// Whether a small message would not fit now.
    pub fn is_full(&self) -> bool {
        self.ring().is_full()
    }
    /// Counters and occupancy.
    pub fn stats(&self) -> Stats {
        self.ring().stats()
    }
    /// `(messages, payload bytes)` waiting, walked from the head (O(messages); a snapshot).
    pub fn queued_payload(&self) -> (u64, u64) {
        self.ring().queued_payload()
    }

    /// Removes the queue's name now: processes attached keep using it, nobody new can open
    /// it, and its memory is freed when the last one detaches.
    pub fn unlink(&self) -> io::Result<()> {
        let seg = segment_name(&self.name);
        if self.ring().backing().is_linked_as(&seg) {
            ShmSegment::unlink(&seg)
        } else {
            Ok(())
        }
    }

    /// After `fork()`, in the child: a new attachment with the child's own process slot and
    /// leases, so the parent's death or exit is seen correctly and the child's is too.
    /// Then drop the inherited handle with [`Queue::forget_in_child`].
    pub fn reopen_in_child(&self) -> Result<Queue, OpenError> {
        let fresh = self
            .ring()
            .backing()
            .reopen_after_fork()
            .map_err(OpenError::Io)?;
        let name = self.name.clone();
        let ring = Ring::open(fresh).map_err(|(_, e)| match e {
            AttachError::NoFreeSlot { max_slots } => OpenError::TooManyProcesses {
                name: name.clone(),
                max: max_slots,
            },
            AttachError::Layout(reason) => OpenError::Corrupted {
                name: name.clone(),
                reason,
            },
            _ => OpenError::DoesNotExist(name.clone()),
        })?;
        Ok(Queue {
            ring: Some(ring),
            name,
            allow_large: self.allow_large,
        })
    }

    /// After `fork()`, in the child: drops the inherited handle without detaching. It shares
    /// the parent's open file description, so the parent's slot and leases stay the parent's.
    pub fn forget_in_child(mut self) {
        if let Some(ring) = self.ring.take() {
            drop(ring.into_backing_without_detach());
        }
    }

    /// After `fork()`, in the child: replaces this handle by one of the child's own (see
    /// [`Queue::reopen_in_child`]). Call it before using the queue in the child.
    pub fn reattach_after_fork(&mut self) -> Result<(), OpenError> {
        let fresh = self.reopen_in_child()?;
        std::mem::replace(self, fresh).forget_in_child();
        Ok(())
    }

    /// Waits until a message may be ready: `true` when one is, `false` at `deadline`, after
    /// `slice`, or when a signal interrupted the sleep. Spins about 50 µs, then sleeps.
    #[inline]
    pub fn wait_for_data(&self, deadline: Option<Instant>, slice: Option<Duration>) -> bool {
        self.ring().wait_for_data(deadline, slice)
    }

    /// Waits until the batch `msgs` may fit (see [`Queue::wait_for_data`]).
    #[inline]
    pub fn wait_for_space(
        &self,
        msgs: &[Message<'_>],
        deadline: Option<Instant>,
        slice: Option<Duration>,
    ) -> Result<bool, TrySendError> {
        let total = self.ring().batch_bytes(msgs)?;
        Ok(self
            .ring()
            .wait_for_space(msgs.len() as u64, total, deadline, slice))
    }

    /// Detaches now (as drop does); the last process of a non-persistent queue removes it.
    pub fn close(mut self) {
        self.detach();
    }

    fn detach(&mut self) {
        if let Some(ring) = self.ring.take() {
            let (seg, outcome) = ring.detach();
            if outcome == Detached::Last {
                let name = segment_name(&self.name);
                if seg.is_linked_as(&name) {
                    let _ = ShmSegment::unlink(&name);
                }
            }
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Removes every non-persistent queue whose attached processes are all dead (it attaches,
/// reaps the dead, detaches, and the last one out removes the segment), and segments whose
/// creator died before initialising them (after `init_grace`). Leaves everything else alone:
/// queues with a live process, persistent queues, segments of other layout versions.
/// Also removes side segments (`shmqside-...`) whose ring no longer exists. Returns the names
/// removed (queue names, and side segments' full names).
pub fn gc(init_grace: Duration) -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in list_queues()? {
        let seg = segment_name(&name);
        match ShmSegment::open(&seg) {
            Ok(Some(b)) => match Ring::open(b) {
                Ok(ring) => {
                    let (b, outcome) = ring.detach();
                    if outcome == Detached::Last && b.is_linked_as(&seg) {
                        ShmSegment::unlink(&seg)?;
                        removed.push(name);
                    }
                }
                Err((b, AttachError::NotReady)) if b.age()? > init_grace => {
                    if b.is_linked_as(&seg) {
                        ShmSegment::unlink(&seg)?;
                        removed.push(name);
                    }
                }
                Err(_) => {}
            },
            Ok(None) => {} // being created
            Err(_) => {}   // gone, or not ours to open
        }
    }
    // Side segments whose ring is gone (its last process died before removing them).
    for side in os::list_segments(os::SIDE_PREFIX)? {
        let ring = side[os::SIDE_PREFIX.len()..]
            .rsplit_once('-')
            .map(|(ring, _)| ring.to_owned());
        if let Some(ring) = ring {
            let alive = std::path::Path::new("/dev/shm")
                .join(segment_name(&ring))
                .exists();
            if !alive && ShmSegment::unlink(&side).is_ok() {
                removed.push(side);
            }
        }
    }
    Ok(removed)
}

/// Names of the queues in `/dev/shm` (without the `shmq-` prefix).
pub fn list_queues() -> io::Result<Vec<String>> {
    Ok(os::list_segments(SEGMENT_PREFIX)?
        .into_iter()
        .map(|s| s[SEGMENT_PREFIX.len()..].to_owned())
        .collect())
}
