//! What the protocol needs from the memory and the OS, and a heap implementation for tests.

use crate::layout::{Cell, Control, Geometry, Slot, RECORD_ALIGN};
use crate::sync::{AtomicU32, AtomicU64, Condvar, Mutex, Ordering, UnsafeCell};
use std::sync::Arc;
use std::time::Duration;

/// A region holding one segment, plus the few OS services the protocol uses.
///
/// # Safety
///
/// Implementors must ensure:
/// * `base()` points to `len()` bytes, aligned to 4096, readable and writable for as long as
///   the implementor lives, and never moved;
/// * the lease methods give mutual exclusion between *handles* (two live handles never hold
///   the same slot's lease), and a dead handle's leases are released by the OS.
pub unsafe trait Backing {
    /// Start of the segment.
    fn base(&self) -> *mut u8;
    /// Length of the segment in bytes.
    fn size(&self) -> u64;
    /// Takes the liveness lease of `slot` for this handle; `false` if a live handle holds it.
    fn try_lease(&self, slot: u32) -> bool;
    /// Gives back a lease taken with [`Backing::try_lease`].
    fn drop_lease(&self, slot: u32);
    /// Whether a handle other than this one holds the lease of `slot` (i.e. it is alive).
    fn lease_held_elsewhere(&self, slot: u32) -> bool;
    /// Sleeps while `*word == expected`, at most `timeout` (forever if `None`). May return
    /// early, spuriously or on a signal; returns `true` if a signal interrupted the sleep.
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool;
    /// Wakes every thread sleeping in [`Backing::wait`] on `word`.
    fn wake_all(&self, word: &AtomicU32);
    /// Id of the calling process, recorded in the slot for `stats()`.
    fn pid(&self) -> u32;
    /// Removes the side segment a reclaimed record referenced (messages larger than the
    /// ring; see [`crate::layout::SideDescriptor`]). Called at most once per record by the
    /// process that reclaimed it, and for every record left when the last process detaches.
    /// Default: nothing (heap backings have no side segments).
    fn release_side(&self, _descriptor: &crate::layout::SideDescriptor) {}
    /// CPUs this process may run on (its affinity). A waiter does not spin when it is 1 (the
    /// other side cannot progress meanwhile), and yields between checks while more processes
    /// than that are attached. Default: unbounded.
    fn cpus(&self) -> u32 {
        u32::MAX
    }
    /// Typed storage, for backings that cannot be addressed as bytes (loom models); `None`
    /// (the default) means the segment is the bytes at `base()`.
    fn typed(&self) -> Option<&Typed> {
        None
    }
}

/// A segment as typed objects instead of bytes: the control block, the slots, one record
/// header per 16 bytes of ring, and the payload bytes in 16-byte cells whose accesses loom
/// checks for data races. Record headers and payload bytes do not alias here (they do in a
/// byte segment); the protocol never relies on that aliasing.
#[derive(Debug)]
pub struct Typed {
    pub(crate) control: Control,
    pub(crate) slots: Vec<Slot>,
    pub(crate) cells: Vec<Cell>,
    pub(crate) data: Vec<UnsafeCell<[u8; RECORD_ALIGN as usize]>>,
}

// SAFETY: the payload cells are accessed only under the protocol's ownership rules (a
// reservation or a claim); everything else is atomics.
unsafe impl Sync for Typed {}
// SAFETY: as above.
unsafe impl Send for Typed {}

impl Typed {
    fn new(g: &Geometry) -> Self {
        let chunks = (g.capacity / RECORD_ALIGN) as usize;
        Self {
            control: Control::default(),
            slots: (0..g.max_slots).map(|_| Slot::default()).collect(),
            cells: (0..chunks).map(|_| Cell::default()).collect(),
            data: (0..chunks)
                .map(|_| UnsafeCell::new([0; RECORD_ALIGN as usize]))
                .collect(),
        }
    }
}

/// Leases shared by the handles of one [`HeapRegion`]: one atomic per slot holding the
/// holder's id (0 = free). Taking a lease is an AcqRel CAS and giving it back (or dying) a
/// Release CAS, so, as the kernel's lock hand-over does for a dead process, a handle that
/// finds a lease free also sees everything its last holder wrote (loom checks this).
#[derive(Debug)]
struct Leases {
    held: Vec<AtomicU64>,
    next_holder: AtomicU64,
}

impl Leases {
    fn new(slots: usize) -> Self {
        Self {
            held: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            next_holder: AtomicU64::new(1),
        }
    }
}

/// Lease slots of a raw heap region (tests use far fewer process slots).
const HEAP_LEASES: usize = 256;

/// The futex of a [`HeapRegion`]: one lock and condition variable for all its words. As the
/// kernel does under its hash-bucket lock, a waiter compares the word and goes to sleep
/// atomically with respect to a waker, who changes the word before it takes the lock: a
/// wake-up cannot fall between the comparison and the sleep. Under loom these are loom's, so
/// a waiter nobody wakes stays blocked and loom reports the lost wake-up as a deadlock.
#[derive(Debug, Default)]
struct Futex {
    lock: Mutex<()>,
    woken: Condvar,
}

/// A segment on the heap, shared between threads that stand in for processes. Each
/// [`HeapBacking`] made from it is one "process"; [`HeapBacking::die`] simulates `kill -9`.
#[derive(Debug, Clone)]
pub struct HeapRegion {
    mem: Arc<Mem>,
    leases: Arc<Leases>,
    futex: Arc<Futex>,
}

#[derive(Debug)]
enum Mem {
    Raw(HeapMem),
    Typed(Box<Typed>, u64),
}

#[derive(Debug)]
struct HeapMem {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

// SAFETY: the memory is only accessed through atomics and through copies the protocol
// orders with them, exactly as shared memory between processes is.
unsafe impl Send for HeapMem {}
// SAFETY: as above.
unsafe impl Sync for HeapMem {}

impl Drop for HeapMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `HeapRegion::new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

impl HeapRegion {
    /// A zeroed region of `len` bytes.
    pub fn new(len: u64) -> Self {
        let layout = std::alloc::Layout::from_size_align(len as usize, 4096).expect("layout");
        // SAFETY: `len` is non-zero for any geometry (a header is at least 4 KiB).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "allocation failed");
        Self {
            mem: Arc::new(Mem::Raw(HeapMem { ptr, layout })),
            leases: Arc::new(Leases::new(HEAP_LEASES)),
            futex: Arc::default(),
        }
    }

    /// A region of typed storage for geometry `g` (what loom models use).
    pub fn typed(g: &Geometry) -> Self {
        Self {
            mem: Arc::new(Mem::Typed(Box::new(Typed::new(g)), g.total_size)),
            leases: Arc::new(Leases::new(g.max_slots as usize)),
            futex: Arc::default(),
        }
    }

    /// A new handle ("process") on this region.
    pub fn handle(&self) -> HeapBacking {
        // Relaxed: a unique id is all that is needed.
        let holder = self.leases.next_holder.fetch_add(1, Ordering::Relaxed);
        HeapBacking {
            region: self.clone(),
            holder,
        }
    }
}

/// One handle on a [`HeapRegion`].
#[derive(Debug)]
pub struct HeapBacking {
    region: HeapRegion,
    holder: u64,
}

impl HeapBacking {
    /// Releases every lease of this handle, as the kernel does when a process dies.
    pub fn die(&self) {
        for lease in &self.region.leases.held {
            // Release: whoever later finds the lease free sees all this "process" wrote.
            let _ = lease.compare_exchange(self.holder, 0, Ordering::Release, Ordering::Relaxed);
        }
    }

    fn lease(&self, slot: u32) -> Option<&AtomicU64> {
        self.region.leases.held.get(slot as usize)
    }
}

// SAFETY: the region is 4096-aligned, `size` bytes (or typed), alive as long as any handle;
// leases are exclusive per holder through the CAS on the slot's lease word.
unsafe impl Backing for HeapBacking {
    fn base(&self) -> *mut u8 {
        match &*self.region.mem {
            Mem::Raw(m) => m.ptr,
            Mem::Typed(..) => std::ptr::null_mut(),
        }
    }
    fn size(&self) -> u64 {
        match &*self.region.mem {
            Mem::Raw(m) => m.layout.size() as u64,
            Mem::Typed(_, size) => *size,
        }
    }
    fn typed(&self) -> Option<&Typed> {
        match &*self.region.mem {
            Mem::Raw(_) => None,
            Mem::Typed(t, _) => Some(t),
        }
    }
    fn try_lease(&self, slot: u32) -> bool {
        let Some(lease) = self.lease(slot) else {
            return false;
        };
        // AcqRel: Acquire sees everything a dead previous holder wrote (as the kernel's lock
        // hand-over does); Release publishes ours to the next holder.
        match lease.compare_exchange(0, self.holder, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(h) => h == self.holder,
        }
    }
    fn drop_lease(&self, slot: u32) {
        if let Some(lease) = self.lease(slot) {
            let _ = lease.compare_exchange(self.holder, 0, Ordering::Release, Ordering::Relaxed);
        }
    }
    fn lease_held_elsewhere(&self, slot: u32) -> bool {
        // Acquire: a lease seen free synchronises with its holder's release of it.
        self.lease(slot).is_none_or(|l| {
            let h = l.load(Ordering::Acquire);
            h != 0 && h != self.holder
        })
    }
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
        let f = &self.region.futex;
        // A panic elsewhere cannot leave `()` inconsistent: ignore poisoning.
        let mut guard = f.lock.lock().unwrap_or_else(|e| e.into_inner());
        // Under loom the timeout is ignored: a waiter sleeps until it is woken (see `Futex`).
        #[cfg(not(loom))]
        let until = timeout.map(|t| std::time::Instant::now() + t);
        #[cfg(loom)]
        let _ = timeout;
        // Acquire, as the kernel's comparison (a full barrier) is at least; the lock orders
        // it against `wake_all`, which follows the waker's change of the word.
        while word.load(Ordering::Acquire) == expected {
            #[cfg(not(loom))]
            if let Some(until) = until {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                guard = f
                    .woken
                    .wait_timeout(guard, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            guard = f.woken.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        drop(guard);
        false
    }
    fn wake_all(&self, _word: &AtomicU32) {
        // One condition variable for every word of the region: sleepers on another word
        // wake, see their word unchanged and sleep again.
        let _guard = self
            .region
            .futex
            .lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.region.futex.woken.notify_all();
    }
    fn pid(&self) -> u32 {
        std::process::id()
    }
}
