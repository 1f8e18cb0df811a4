//! One builder for every kind of handle: settings, then `create`, `open` or
//! `open_or_create`.

use crate::handle::Handle;
use crate::name::{segment_name, validate_name};
use crate::os::{self, Opened, Owner, ShmSegment};
use crate::OpenError;
use shmq_core::layout::{FLAG_LAG, FLAG_PERSISTENT, KIND_BROADCAST, MAX_CAPACITY, MAX_SLOTS};
use shmq_core::{AttachError, Geometry, Ring};
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// Default ring size: 4 MiB (the largest message is 16 bytes less), in Rust as in Python.
pub const DEFAULT_CAPACITY: u64 = 4 << 20;
/// Default size of the process table.
pub const DEFAULT_MAX_PROCESSES: u32 = 128;
/// Default permission bits of a new segment: the creating user only.
pub const DEFAULT_MODE: u32 = 0o600;

/// How long an open waits for a segment that is being created (or removed) by another
/// process before it reports it as never initialised: creation takes microseconds, so only
/// a creator that died (or stopped) half-way makes an open wait this long.
const OPEN_SETTLE: Duration = Duration::from_secs(2);
/// Poll interval while waiting for a segment to settle.
const OPEN_POLL: Duration = Duration::from_micros(200);

/// What a ring is: a queue (each message to one consumer) or a broadcast (each message to
/// every subscriber).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A [`crate::Queue`].
    Queue,
    /// A [`crate::Broadcast`] ring, read through [`crate::Subscriber`]s.
    Broadcast,
}

impl Kind {
    pub(crate) fn of_layout(kind: u32) -> Self {
        if kind == KIND_BROADCAST {
            Self::Broadcast
        } else {
            Self::Queue
        }
    }
    pub(crate) fn other(self) -> Self {
        match self {
            Self::Queue => Self::Broadcast,
            Self::Broadcast => Self::Queue,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Queue => "queue",
            Self::Broadcast => "broadcast",
        })
    }
}

/// What a broadcast's publishers do when the slowest subscriber is a ring behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Wait for it (a dead subscriber is detached within milliseconds).
    #[default]
    Block,
    /// Overwrite: the subscriber's next read reports [`crate::RecvError::Lagged`] with the
    /// count it missed, then continues with the oldest message still in the ring.
    Lag,
}

/// A handle type the builder makes.
pub trait Open: Sized + private::Sealed {
    /// The kind of ring it attaches to.
    const KIND: Kind;
    #[doc(hidden)]
    fn from_handle(h: Handle) -> Result<Self, OpenError>;
}

mod private {
    pub trait Sealed {}
    impl Sealed for crate::Queue {}
    impl Sealed for crate::Broadcast {}
}

/// Settings for creating or opening a [`crate::Queue`] or [`crate::Broadcast`]: made by
/// `Queue::builder(name)` or `Broadcast::builder(name)`. Size settings apply when the ring
/// is created; opening an existing one uses its own.
pub struct Builder<T> {
    pub(crate) opts: Options,
    _kind: PhantomData<fn() -> T>,
}

impl<T> Clone for Builder<T> {
    fn clone(&self) -> Self {
        Self {
            opts: self.opts.clone(),
            _kind: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Builder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Builder").field(&self.opts).finish()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) name: String,
    capacity: u64,
    maxsize: u64,
    max_processes: u32,
    mode: u32,
    persistent: bool,
    policy: Policy,
    pub(crate) allow_large: bool,
    /// Users besides ourselves whose segments we accept (`None`: anyone).
    trusted: Option<Vec<u32>>,
    /// The last detach keeps a queue that still holds messages.
    keep_messages: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Create,
    Open,
    OpenOrCreate,
}

impl<T: Open> Builder<T> {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            opts: Options {
                name: name.to_owned(),
                capacity: DEFAULT_CAPACITY,
                maxsize: 0,
                max_processes: DEFAULT_MAX_PROCESSES,
                mode: DEFAULT_MODE,
                persistent: false,
                policy: Policy::Block,
                allow_large: false,
                trusted: Some(Vec::new()),
                keep_messages: true,
            },
            _kind: PhantomData,
        }
    }

    /// Ring size in bytes (rounded up to a multiple of 4096; default 4 MiB).
    pub fn capacity(mut self, bytes: u64) -> Self {
        self.opts.capacity = bytes;
        self
    }
    /// Size of the process table: how many processes may be attached at once (default 128).
    pub fn max_processes(mut self, n: u32) -> Self {
        self.opts.max_processes = n;
        self
    }
    /// Permission bits of a new segment (default `0o600`: the creating user only).
    pub fn mode(mut self, mode: u32) -> Self {
        self.opts.mode = mode;
        self
    }
    /// Whether the ring outlives its last process (default: removed by the last detach).
    pub fn persistent(mut self, yes: bool) -> Self {
        self.opts.persistent = yes;
        self
    }
    /// Whether this handle sends messages larger than the ring, each in a side segment of
    /// its own (`shmqside-<name>-<id>`) referenced from the ring. Every handle receives them.
    pub fn allow_large(mut self, yes: bool) -> Self {
        self.opts.allow_large = yes;
        self
    }

    /// Accepts an existing segment owned by user `uid` as well as our own (by default a
    /// segment of another user is refused: its owner could read what we send and forge what
    /// we receive).
    pub fn trust_owner(mut self, uid: u32) -> Self {
        if let Some(t) = &mut self.opts.trusted {
            t.push(uid);
        }
        self
    }
    /// Accepts an existing segment whoever owns it.
    pub fn trust_any_owner(mut self) -> Self {
        self.opts.trusted = None;
        self
    }

    /// Whether this handle, if it is the last to detach from a non-persistent queue that
    /// still holds messages, keeps the queue (and the messages) for a later process (default
    /// `true`: a producer that exits before any consumer came loses nothing). `false` suits
    /// private queues nobody else can open by name.
    pub fn keep_messages(mut self, yes: bool) -> Self {
        self.opts.keep_messages = yes;
        self
    }

    /// Creates the ring; fails if the name exists.
    pub fn create(self) -> Result<T, OpenError> {
        self.build(Mode::Create)
    }
    /// Opens the existing ring; fails if it does not exist.
    pub fn open(self) -> Result<T, OpenError> {
        self.build(Mode::Open)
    }
    /// Opens the ring if it exists, creates it otherwise.
    pub fn open_or_create(self) -> Result<T, OpenError> {
        self.build(Mode::OpenOrCreate)
    }

    fn build(self, mode: Mode) -> Result<T, OpenError> {
        T::from_handle(self.opts.attach(T::KIND, mode)?)
    }
}

impl Builder<crate::Queue> {
    /// Most messages queued at once (0, the default: bounded by bytes only).
    pub fn maxsize(mut self, messages: u64) -> Self {
        self.opts.maxsize = messages;
        self
    }
}

impl Builder<crate::Broadcast> {
    /// What publishers do when a subscriber falls a ring behind (default [`Policy::Block`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.opts.policy = policy;
        self
    }
}

impl Options {
    fn geometry(&self, kind: Kind) -> Result<Geometry, OpenError> {
        let mut flags = if self.persistent { FLAG_PERSISTENT } else { 0 };
        if self.policy == Policy::Lag {
            flags |= FLAG_LAG;
        }
        if !(1..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(OpenError::InvalidArgument(format!(
                "capacity {} is out of range: it must be 1..={MAX_CAPACITY} bytes (1 TiB)",
                self.capacity
            )));
        }
        if !(1..=MAX_SLOTS).contains(&self.max_processes) {
            return Err(OpenError::InvalidArgument(format!(
                "max_processes {} is out of range: it must be 1..={MAX_SLOTS}",
                self.max_processes
            )));
        }
        let g = Geometry::new(
            self.capacity,
            self.maxsize,
            self.max_processes,
            flags,
            os::random_u64(),
        )
        .ok_or_else(|| {
            OpenError::InvalidArgument(format!(
                "capacity {} or max_processes {} is out of range",
                self.capacity, self.max_processes
            ))
        })?;
        Ok(if kind == Kind::Broadcast {
            g.broadcast()
        } else {
            g
        })
    }

    fn attach(self, kind: Kind, mode: Mode) -> Result<Handle, OpenError> {
        validate_name(&self.name)?;
        if self.mode > 0o777 {
            return Err(OpenError::InvalidArgument(format!(
                "mode {:#o} is out of range: it must be 0..=0o777",
                self.mode
            )));
        }
        let geometry = match mode {
            Mode::Open => None,
            Mode::Create | Mode::OpenOrCreate => Some(self.geometry(kind)?),
        };
        let seg = segment_name(&self.name);
        let give_up = Instant::now() + OPEN_SETTLE;
        loop {
            if let Some(g) = geometry {
                match ShmSegment::create(&seg, g.total_size, self.mode) {
                    Ok(b) => {
                        let ring =
                            Ring::create(b, g, crate::handle::now_ns()).map_err(|(_, e)| {
                                let _ = ShmSegment::unlink(&seg);
                                self.attach_error(e)
                            })?;
                        return Ok(Handle::new(
                            ring,
                            self.name,
                            self.allow_large,
                            self.keep_messages,
                        ));
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
                Ok(Opened::Ready(b)) => {
                    self.check_owner(b.owner())?;
                    match Ring::open(b) {
                        Ok(ring) => {
                            let found = Kind::of_layout(ring.geometry().kind);
                            // Dropped (detached) at once if it is the other kind.
                            let h = Handle::new(
                                ring,
                                self.name.clone(),
                                self.allow_large,
                                self.keep_messages,
                            );
                            if found != kind {
                                return Err(OpenError::WrongKind {
                                    name: self.name,
                                    found,
                                });
                            }
                            return Ok(h);
                        }
                        // Being created or being removed: try again shortly.
                        Err((_, AttachError::NotReady | AttachError::Closing))
                            if Instant::now() < give_up =>
                        {
                            std::thread::sleep(OPEN_POLL);
                        }
                        Err((_, e)) => return Err(self.attach_error(e)),
                    }
                }
                Ok(Opened::Empty(owner, _)) => {
                    // Someone else's empty file is not a segment being created for us.
                    self.check_owner(owner)?;
                    if Instant::now() >= give_up {
                        return Err(OpenError::NotInitialized(self.name));
                    }
                    std::thread::sleep(OPEN_POLL);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && mode == Mode::OpenOrCreate => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(OpenError::DoesNotExist(self.name));
                }
                Err(e) => return Err(self.io_error(e)),
            }
        }
    }

    /// Refuses a segment of an untrusted user, or one more widely writable than asked.
    /// `fstat` on the open descriptor said who owns it: the name cannot be swapped under us.
    fn check_owner(&self, owner: Owner) -> Result<(), OpenError> {
        let me = os::effective_uid();
        let trusted = owner.uid == me
            || self
                .trusted
                .as_ref()
                .is_none_or(|uids| uids.contains(&owner.uid));
        if !trusted {
            return Err(OpenError::UntrustedOwner {
                name: self.name.clone(),
                owner: owner.uid,
            });
        }
        // Group/other write bits the caller did not ask for.
        if owner.mode & 0o022 & !self.mode != 0 {
            return Err(OpenError::TooWidelyWritable {
                name: self.name.clone(),
                mode: owner.mode,
                asked: self.mode,
            });
        }
        Ok(())
    }

    fn io_error(&self, e: io::Error) -> OpenError {
        if e.kind() == io::ErrorKind::StorageFull {
            return OpenError::NoSpace {
                name: self.name.clone(),
                needed: self.geometry_size(),
                free: os::shm_free_bytes(),
            };
        }
        OpenError::from_io(&self.name, e)
    }

    /// Bytes a segment with these settings takes (for messages; 0 if they are invalid).
    fn geometry_size(&self) -> u64 {
        Geometry::new(self.capacity, self.maxsize, self.max_processes, 0, 0)
            .map_or(0, |g| g.total_size)
    }

    fn attach_error(&self, e: AttachError) -> OpenError {
        attach_error(&self.name, e)
    }
}

/// The open error for a failed attach to queue `name`.
pub(crate) fn attach_error(name: &str, e: AttachError) -> OpenError {
    let name = name.to_owned();
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
