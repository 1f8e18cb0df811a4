//! Linux: POSIX shared memory (`/dev/shm`), OFD byte-range locks as liveness leases, futexes
//! (the waits of the rings; the async helper thread's waits are in `readiness.rs`).

use super::sigbus::{self, Tracked};
use shmq_core::Backing;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Leases are byte-range locks far past the end of the segment, one byte per slot: the
/// kernel drops them when the last descriptor of the open file description closes, which is
/// when the process dies, however it dies.
const LEASE_BASE: i64 = 1 << 50;

/// Prefix of ring segments (`shmq-<name>`).
pub const SEGMENT_PREFIX: &str = "shmq-";
/// Prefix of side segments (`shmqside-<name>-<id>`), holding messages larger than a ring.
pub const SIDE_PREFIX: &str = "shmqside-";

/// A mapped shared-memory segment and the descriptor that holds its leases.
#[derive(Debug)]
pub struct ShmSegment {
    fd: OwnedFd,
    ptr: *mut u8,
    len: u64,
    pid: u32,
    /// The name it was created or opened under (side segments are named after it).
    name: String,
    /// Owner and permission bits of the file, from `fstat` on the open descriptor.
    owner: Owner,
    /// The mapping in the table of the SIGBUS handler (see `sigbus`).
    tracked: Tracked,
}

/// What [`ShmSegment::open`] found.
#[derive(Debug)]
pub enum Opened {
    /// A sized segment, mapped.
    Ready(ShmSegment),
    /// An empty file: a segment being created (or whose creator died before sizing it),
    /// its owner and its age.
    Empty(Owner, Duration),
}

/// Who owns a segment file and who may write to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The owner's user id.
    pub uid: u32,
    /// Permission bits (`0o777` at most).
    pub mode: u32,
}

/// The caller's effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Bytes free for an unprivileged writer in `/dev/shm` (`None` if it cannot be told).
pub fn shm_free_bytes() -> Option<u64> {
    let path = CString::new(SHM_DIR).ok()?;
    // SAFETY: an all-zero `statvfs` is a valid value; statvfs fills it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` a valid out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

// SAFETY: the mapping is shared memory, accessed only through atomics and through copies the
// protocol orders with them; the descriptor is an ordinary fd.
unsafe impl Send for ShmSegment {}
// SAFETY: as above; every method takes `&self` and is safe to call from several threads.
unsafe impl Sync for ShmSegment {}

fn cpath(name: &str) -> io::Result<CString> {
    CString::new(format!("/{name}")).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl ShmSegment {
    /// Creates `name` exclusively with `len` zeroed bytes and permissions `mode` (not masked
    /// by the umask). The memory is reserved now (`posix_fallocate`): a `/dev/shm` too small
    /// fails here with `StorageFull`, never later with SIGBUS on first touch; nothing is
    /// left behind on failure.
    pub fn create(name: &str, len: u64, mode: u32) -> io::Result<Self> {
        let path = cpath(name)?;
        // SAFETY: `path` is a valid NUL-terminated string.
        let fd = cvt(unsafe {
            libc::shm_open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                mode as libc::mode_t,
            )
        })?;
        // SAFETY: `shm_open` returned a fresh descriptor that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let setup = || -> io::Result<Self> {
            // SAFETY: `fd` is a valid descriptor; fchmod has no memory effects.
            cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
            let size = libc::off_t::try_from(len)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            // SAFETY: as above. posix_fallocate returns the error number instead of setting
            // errno; on tmpfs it allocates (and zeroes) the pages.
            match unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, size) } {
                0 => {}
                libc::EOPNOTSUPP | libc::EINVAL => {
                    // A file system without fallocate: size it the old way.
                    // SAFETY: as above.
                    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })?;
                }
                e => return Err(io::Error::from_raw_os_error(e)),
            }
            let owner = owner_of(&fstat(&fd)?);
            Self::map(fd.try_clone()?, len, name, owner)
        };
        setup().inspect_err(|_| {
            let _ = Self::unlink(name);
        })
    }

    /// Opens `name`. A segment whose creator has not sized it yet yields
    /// [`Opened::Empty`]. Anything but a regular file (a symbolic link, a FIFO, a directory)
    /// is refused with `InvalidData` naming what it is.
    pub fn open(name: &str) -> io::Result<Opened> {
        Self::open_as(name, false)
    }

    /// As [`ShmSegment::open`], mapped read-only: for looking without touching (`shmq ls`,
    /// `stats`). A store through it faults.
    pub fn open_read_only(name: &str) -> io::Result<Opened> {
        Self::open_as(name, true)
    }

    fn open_as(name: &str, read_only: bool) -> io::Result<Opened> {
        let path = cpath(name)?;
        let access = if read_only {
            libc::O_RDONLY
        } else {
            libc::O_RDWR
        };
        // SAFETY: `path` is a valid NUL-terminated string. glibc adds O_NOFOLLOW (a symbolic
        // link fails with ELOOP); O_NONBLOCK keeps a FIFO planted under the name from
        // blocking the open.
        let fd = unsafe {
            libc::shm_open(
                path.as_ptr(),
                access | libc::O_CLOEXEC | libc::O_NONBLOCK,
                0,
            )
        };
        let fd = match cvt(fd) {
            Ok(fd) => fd,
            Err(e) => {
                // A symbolic link (ELOOP), a directory (EISDIR or EINVAL) under the name: say
                // what it is rather than the raw error.
                let what = std::fs::symlink_metadata(std::path::Path::new(SHM_DIR).join(name))
                    .ok()
                    .and_then(|m| file_kind(m.file_type()));
                return Err(match what {
                    Some(what) if e.kind() != io::ErrorKind::NotFound => not_a_segment(name, what),
                    _ => e,
                });
            }
        };
        // SAFETY: fresh descriptor we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = fstat(&fd)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            let what = match st.st_mode & libc::S_IFMT {
                libc::S_IFIFO => "a FIFO",
                libc::S_IFDIR => "a directory",
                libc::S_IFSOCK => "a socket",
                libc::S_IFCHR | libc::S_IFBLK => "a device",
                _ => "not a regular file",
            };
            return Err(not_a_segment(name, what));
        }
        let len = st.st_size as u64;
        if len == 0 {
            return Ok(Opened::Empty(owner_of(&st), age_of(&st)));
        }
        let prot = if read_only {
            libc::PROT_READ
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        Self::map_with(fd, len, name, owner_of(&st), prot).map(Opened::Ready)
    }

    /// Renames segment `from` to `to` (which must not exist): attached processes keep using
    /// it, and it stays discoverable by `gc` under its new name.
    pub fn rename(from: &str, to: &str) -> io::Result<()> {
        let dir = std::path::Path::new(SHM_DIR);
        std::fs::rename(dir.join(from), dir.join(to))
    }

    /// Whether another process truncated the segment under us: a page we touched was gone
    /// (and reads as zeros since; see `sigbus`).
    #[inline]
    pub fn truncated(&self) -> bool {
        self.tracked.poisoned()
    }

    /// Owner and permission bits of the segment, as `fstat` said when it was opened.
    pub fn owner(&self) -> Owner {
        self.owner
    }

    fn map(fd: OwnedFd, len: u64, name: &str, owner: Owner) -> io::Result<Self> {
        Self::map_with(fd, len, name, owner, libc::PROT_READ | libc::PROT_WRITE)
    }

    fn map_with(
        fd: OwnedFd,
        len: u64,
        name: &str,
        owner: Owner,
        prot: libc::c_int,
    ) -> io::Result<Self> {
        let size = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        // SAFETY: mapping a shared file of `len` bytes at an address the kernel chooses; the
        // result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        sigbus::warm_up();
        Ok(Self {
            fd,
            ptr: ptr.cast(),
            len,
            pid: std::process::id(),
            name: name.to_owned(),
            owner,
            tracked: Tracked::new(ptr.cast(), size),
        })
    }

    /// Removes the name `name` (mappings stay valid until unmapped).
    pub fn unlink(name: &str) -> io::Result<()> {
        let path = cpath(name)?;
        // SAFETY: `path` is a valid NUL-terminated string.
        cvt(unsafe { libc::shm_unlink(path.as_ptr()) }).map(drop)
    }

    /// Whether `name` still names this very segment (same inode).
    pub fn is_linked_as(&self, name: &str) -> bool {
        let Ok(path) = cpath(name) else { return false };
        // SAFETY: `path` is valid; the descriptor returned is closed by `OwnedFd`.
        let fd = unsafe { libc::shm_open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) };
        if fd < 0 {
            return false;
        }
        // SAFETY: fresh descriptor we now own.
        let other = unsafe { OwnedFd::from_raw_fd(fd) };
        match (fstat(&other), fstat(&self.fd)) {
            (Ok(a), Ok(b)) => a.st_ino == b.st_ino && a.st_dev == b.st_dev,
            _ => false,
        }
    }

    /// Time since the segment was last modified (its size set, for a segment never
    /// initialised).
    pub fn age(&self) -> io::Result<Duration> {
        Ok(age_of(&fstat(&self.fd)?))
    }

    /// A new handle on the same mapping with its own open file description, for a child after
    /// `fork()`: the child's leases must not be the parent's.
    pub fn reopen_after_fork(&self) -> io::Result<Self> {
        let path = CString::new(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `path` is a valid NUL-terminated string.
        let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
        // SAFETY: fresh descriptor we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Self::map(fd, self.len, &self.name, self.owner)
    }

    /// The name of this ring's side segment `id`: `shmqside-<ring name>-<id>`, outside the
    /// `shmq-` prefix so that listings of queues do not show it.
    pub fn side_name(&self, id: u64) -> String {
        let ring = self.name.strip_prefix(SEGMENT_PREFIX).unwrap_or(&self.name);
        format!("{SIDE_PREFIX}{ring}-{id:016x}")
    }

    /// Writes `data` into a new side segment `id` with this segment's permission bits.
    pub fn side_create(&self, id: u64, data: &[u8]) -> io::Result<()> {
        let name = self.side_name(id);
        let side = Self::create(&name, data.len() as u64, self.owner.mode)?;
        // SAFETY: the fresh mapping is `data.len()` bytes long and ours alone (created with
        // O_EXCL under a random name).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), side.ptr, data.len()) };
        Ok(())
    }

    /// Maps side segment `id`, which must hold exactly `len` bytes.
    pub fn side_open(&self, id: u64, len: u64) -> io::Result<ShmSegment> {
        let name = self.side_name(id);
        let path = cpath(&name)?;
        // SAFETY: `path` is a valid NUL-terminated string.
        let fd = cvt(unsafe { libc::shm_open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) })?;
        // SAFETY: fresh descriptor we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = fstat(&fd)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size as u64 != len || len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("side segment {name:?} does not hold the {len} bytes its record says"),
            ));
        }
        // Producers make side segments with O_EXCL under a random name and their ring's
        // permission bits: one more open to others than its ring was made by someone else.
        let owner = owner_of(&st);
        if owner.mode & !self.owner.mode != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("side segment {name:?} is more widely writable than its ring"),
            ));
        }
        Self::map(fd, len, &name, owner)
    }

    /// The bytes of a mapped segment (a side segment's message).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes, alive as long as `self`. Side segments are
        // written once before their record is published and never again.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len as usize) }
    }

    fn lock(&self, slot: u32, cmd: libc::c_int, kind: libc::c_short) -> io::Result<libc::flock> {
        // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = LEASE_BASE + i64::from(slot);
        fl.l_len = 1;
        // SAFETY: `fl` is a valid, exclusively borrowed `flock` for the duration of the call.
        cvt(unsafe { libc::fcntl(self.fd.as_raw_fd(), cmd, &mut fl as *mut libc::flock) })?;
        Ok(fl)
    }
}

/// Time since the file was last modified.
fn age_of(st: &libc::stat) -> Duration {
    let mtime = std::time::UNIX_EPOCH
        + Duration::new(
            st.st_mtime.max(0) as u64,
            st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
        );
    std::time::SystemTime::now()
        .duration_since(mtime)
        .unwrap_or_default()
}

fn owner_of(st: &libc::stat) -> Owner {
    Owner {
        uid: st.st_uid,
        mode: st.st_mode & 0o777,
    }
}

/// What a file type is, if it is not a regular file.
fn file_kind(t: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        None
    } else if t.is_symlink() {
        Some("a symbolic link")
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else {
        Some("not a regular file")
    }
}

fn not_a_segment(name: &str, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("/dev/shm/{name} is {what}, not a shared-memory segment"),
    )
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is valid and `st` is a valid out-pointer.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

impl Drop for ShmSegment {
    fn drop(&mut self) {
        self.tracked.forget();
        // SAFETY: `ptr`/`len` are the mapping made in `map`, unmapped exactly once here; no
        // reference into it outlives `self` (the ring borrows from `self`).
        unsafe { libc::munmap(self.ptr.cast(), self.len as usize) };
    }
}

// SAFETY: `mmap` returns page-aligned memory of `len` bytes that stays mapped until drop;
// OFD locks exclude other open file descriptions and are released by the kernel when the
// description's last descriptor closes (process death included).
unsafe impl Backing for ShmSegment {
    fn base(&self) -> *mut u8 {
        self.ptr
    }
    fn size(&self) -> u64 {
        self.len
    }
    fn try_lease(&self, slot: u32) -> bool {
        self.lock(slot, libc::F_OFD_SETLK, libc::F_WRLCK as libc::c_short)
            .is_ok()
    }
    fn drop_lease(&self, slot: u32) {
        let _ = self.lock(slot, libc::F_OFD_SETLK, libc::F_UNLCK as libc::c_short);
    }
    fn lease_held_elsewhere(&self, slot: u32) -> bool {
        match self.lock(slot, libc::F_OFD_GETLK, libc::F_WRLCK as libc::c_short) {
            Ok(fl) => fl.l_type != libc::F_UNLCK as libc::c_short,
            Err(_) => true, // cannot tell: assume alive, never reap on doubt
        }
    }
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: FUTEX_WAIT (shared: the word is in a MAP_SHARED mapping) reads the aligned
        // u32 at `word`, which lives as long as the mapping; the timeout is relative and
        // measured on CLOCK_MONOTONIC. Errors (EAGAIN: value changed, EINTR, ETIMEDOUT) all
        // mean "return and let the caller re-check".
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                ts_ptr,
                std::ptr::null::<u32>(),
                0u32,
            )
        };
        r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    }
    fn wake_all(&self, word: &AtomicU32) {
        // SAFETY: FUTEX_WAKE only uses the address as a key.
        unsafe {
            libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
        }
    }
    fn release_side(&self, d: &shmq_core::layout::SideDescriptor) {
        // Gone already (its consumer removed it) is the normal case for queues.
        let _ = Self::unlink(&self.side_name(d.id));
    }
    fn pid(&self) -> u32 {
        self.pid
    }
    fn cpus(&self) -> u32 {
        cpus_available()
    }
}

/// CPUs this process may run on (its affinity mask), re-read at most every 100 ms.
fn cpus_available() -> u32 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CACHE: AtomicU64 = AtomicU64::new(0); // (checked_at_ms << 16) | cpus
    let now_ms = {
        // SAFETY: an all-zero timespec is valid; clock_gettime fills it.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC_COARSE is a cheap vDSO read.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
    };
    // Relaxed: a cache of a value any thread may recompute.
    let cached = CACHE.load(Ordering::Relaxed);
    if cached != 0 && now_ms.saturating_sub(cached >> 16) < 100 {
        return (cached & 0xFFFF) as u32;
    }
    // SAFETY: an all-zero cpu_set_t is a valid empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid out-pointer of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    let cpus = if r == 0 {
        // SAFETY: `set` was filled by sched_getaffinity.
        (unsafe { libc::CPU_COUNT(&set) }).clamp(1, 0xFFFF) as u32
    } else {
        2 // unknown: assume spinning may help
    };
    CACHE.store((now_ms << 16) | u64::from(cpus), Ordering::Relaxed);
    cpus
}

/// Where POSIX shared memory lives on Linux.
const SHM_DIR: &str = "/dev/shm";

/// Names of shmq segments currently in `/dev/shm`.
pub fn list_segments(prefix: &str) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(SHM_DIR)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a segment (or anything else) is named `name` in `/dev/shm`.
pub fn segment_exists(name: &str) -> bool {
    std::path::Path::new(SHM_DIR).join(name).exists()
}

/// Random bytes for the segment nonce.
pub fn random_u64() -> u64 {
    let mut v = 0u64;
    // SAFETY: writes at most 8 bytes into `v`.
    let n = unsafe { libc::getrandom((&mut v as *mut u64).cast(), 8, 0) };
    if n != 8 {
        // Extremely unlikely; fall back to time and pid, still unpredictable enough to keep
        // stale payload bytes from looking like stamps by accident.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        v = t ^ (u64::from(std::process::id()) << 32);
    }
    v
}
