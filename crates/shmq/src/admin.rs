//! Looking after `/dev/shm`: listing and inspecting rings (read-only: looking never attaches,
//! reaps or removes anything), removing them by name, and collecting what dead processes
//! left.

use crate::builder::{attach_error, Kind};
use crate::handle::now_ns;
use crate::name::{removed_name, ring_of_removed, segment_name, REMOVED_PREFIX, SEGMENT_PREFIX};
use crate::os::{self, Opened, ShmSegment};
use crate::OpenError;
use shmq_core::{AttachError, Detached, Linger, Ring, Stats, SubscriberInfo};
use std::io;
use std::time::Duration;

/// What [`inspect`] saw in a ring, without attaching to it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Inspection {
    /// Queue or broadcast.
    pub kind: Kind,
    /// Bytes of the segment file.
    pub segment_bytes: u64,
    /// Counters (as a handle's `stats()`; `attached` counts handles, dead ones included).
    pub stats: Stats,
    /// Processes attached and alive.
    pub live: u32,
    /// Whether it outlives its last process.
    pub persistent: bool,
    /// The owner's user id.
    pub owner: u32,
    /// Permission bits.
    pub mode: u32,
    /// How long ago the last process left it with messages in it (`None`: it is in use, or
    /// was never left).
    pub kept_for: Option<Duration>,
    /// A broadcast's subscribers.
    pub subscribers: Vec<SubscriberInfo>,
}

/// Reads a ring's state through a read-only mapping: never attaches (so it cannot become
/// its last process and remove it), never reaps, never writes.
pub fn inspect(name: &str) -> Result<Inspection, OpenError> {
    let seg = segment_name(name);
    let b = match ShmSegment::open_read_only(&seg) {
        Ok(Opened::Ready(b)) => b,
        Ok(Opened::Empty(..)) => return Err(OpenError::NotInitialized(name.to_owned())),
        Err(e) => return Err(OpenError::from_io(name, e)),
    };
    let owner = b.owner();
    let segment_bytes = shmq_core::Backing::size(&b);
    let ring = Ring::observe(b).map_err(|(_, e)| attach_error(name, e))?;
    let g = *ring.geometry();
    let life = ring.lifecycle();
    let out = Inspection {
        kind: Kind::of_layout(g.kind),
        segment_bytes,
        stats: ring.stats(),
        live: life.live,
        persistent: g.flags & shmq_core::layout::FLAG_PERSISTENT != 0,
        owner: owner.uid,
        mode: owner.mode,
        kept_for: (life.kept_since_ns != 0)
            .then(|| Duration::from_nanos(now_ns().saturating_sub(life.kept_since_ns))),
        subscribers: if g.is_broadcast() {
            ring.subscribers()
        } else {
            Vec::new()
        },
    };
    drop(ring.into_backing_without_detach());
    Ok(out)
}

/// Removes ring `name` by name (`shmq rm`): processes attached keep using it and the last
/// of them frees it; with none, it goes now, with its side segments. Returns whether there
/// was a ring to remove.
pub fn remove(name: &str) -> Result<bool, OpenError> {
    remove_if(name, |_| true)
}

/// As [`remove`], only if the ring under the name has nonce `nonce` (the very ring a
/// handle was attached to, not one made since under the same name).
pub fn remove_if_nonce(name: &str, nonce: u64) -> Result<bool, OpenError> {
    remove_if(name, |n| n == nonce)
}

fn remove_if(name: &str, wanted: impl Fn(u64) -> bool) -> Result<bool, OpenError> {
    let seg = segment_name(name);
    let b = match ShmSegment::open(&seg) {
        Ok(Opened::Ready(b)) => b,
        // Never initialised: nobody can be using it.
        Ok(Opened::Empty(..)) => {
            return ShmSegment::unlink(&seg)
                .map(|()| true)
                .map_err(|e| OpenError::from_io(name, e))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(OpenError::from_io(name, e)),
    };
    let observer = Ring::observe(b).map_err(|(_, e)| attach_error(name, e))?;
    let nonce = observer.geometry().nonce;
    let b = observer.into_backing_without_detach();
    if !wanted(nonce) || !b.is_linked_as(&seg) {
        return Ok(false);
    }
    let hidden = removed_name(name, nonce);
    ShmSegment::rename(&seg, &hidden).map_err(|e| OpenError::from_io(name, e))?;
    free_if_unused(b, &hidden);
    Ok(true)
}

/// Frees a removed ring (`hidden` is its name now) if no live process uses it: attaching
/// reaps the dead, and our detach is then the last.
fn free_if_unused(b: ShmSegment, hidden: &str) {
    let Ok(ring) = Ring::open(b) else { return };
    let linger = Linger {
        removed: true,
        ..Linger::NEVER
    };
    let (b, outcome) = ring.detach_with(linger);
    if outcome == Detached::Last && b.is_linked_as(hidden) {
        let _ = ShmSegment::unlink(hidden);
    }
}

/// What [`gc`] may remove.
#[derive(Clone, Copy, Debug)]
pub struct GcPolicy {
    /// Segments never initialised by their creator are removed once this old.
    pub init_grace: Duration,
    /// Queues that their last process left with messages in them are removed (messages and
    /// all) once kept this long; `None` (default): kept until someone reads them.
    pub drop_kept_after: Option<Duration>,
}

impl Default for GcPolicy {
    fn default() -> Self {
        Self {
            init_grace: Duration::from_secs(60),
            drop_kept_after: None,
        }
    }
}

/// Removes what no live process uses any more: non-persistent rings whose attached
/// processes are all dead (it attaches, reaps the dead, detaches, and as the last one out
/// removes the ring, unless the lifecycle keeps it: messages left in a queue, a handle in
/// flight), removed rings (`.shmq-removed-...`) whose processes all died, segments whose
/// creator died before initialising them (after `init_grace`, whatever their size), and side
/// segments (`shmqside-...`) of rings that no longer exist. Leaves everything else alone:
/// rings with a live process, persistent ones, other layout versions, other users' files.
/// Returns the names removed (queue names, other segments' full names).
pub fn gc(policy: GcPolicy) -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in list_queues()? {
        let seg = segment_name(&name);
        match ShmSegment::open(&seg) {
            Ok(Opened::Ready(b)) => {
                if collect_ring(b, &seg, &policy) {
                    removed.push(name);
                }
            }
            Ok(Opened::Empty(_, age)) if age > policy.init_grace => {
                if ShmSegment::unlink(&seg).is_ok() {
                    removed.push(name);
                }
            }
            Ok(Opened::Empty(..)) => {} // being created
            Err(_) => {}                // gone, not ours to open, or not a segment
        }
    }
    for hidden in os::list_segments(REMOVED_PREFIX)? {
        if let Ok(Opened::Ready(b)) = ShmSegment::open(&hidden) {
            free_if_unused(b, &hidden);
            if !os::segment_exists(&hidden) {
                removed.push(hidden);
            }
        }
    }
    // Side segments whose ring is gone (its last process died before removing them). A
    // removed ring still in use keeps its side segments (it is found under its hidden name).
    let rings_in_use: Vec<String> = os::list_segments(REMOVED_PREFIX)?
        .iter()
        .filter_map(|h| ring_of_removed(h).map(str::to_owned))
        .collect();
    for side in os::list_segments(os::SIDE_PREFIX)? {
        let Some((ring, _)) = side[os::SIDE_PREFIX.len()..].rsplit_once('-') else {
            continue;
        };
        let alive =
            os::segment_exists(&segment_name(ring)) || rings_in_use.iter().any(|r| r == ring);
        if !alive && ShmSegment::unlink(&side).is_ok() {
            removed.push(side);
        }
    }
    Ok(removed)
}

/// Attaches to ring `seg` (reaping its dead) and detaches as `policy` says; whether the
/// ring was removed.
fn collect_ring(b: ShmSegment, seg: &str, policy: &GcPolicy) -> bool {
    let b = match Ring::observe(b) {
        Ok(observer) => {
            let since = observer.lifecycle().kept_since_ns;
            let holds_messages = !observer.is_empty();
            let b = observer.into_backing_without_detach();
            // Never kept (its processes died attached) counts as kept from now on.
            let kept_for = Duration::from_nanos(now_ns().saturating_sub(since));
            let kept_too_long = policy.drop_kept_after.is_some_and(|after| {
                if since == 0 {
                    after.is_zero()
                } else {
                    kept_for > after
                }
            });
            if since != 0 && holds_messages && !kept_too_long {
                // Kept for its messages, with nobody attached: nothing to reap, and attaching
                // would restart the clock of `drop_kept_after`.
                return false;
            }
            (b, kept_too_long)
        }
        // Its creator died before initialising it (a leftover of any size).
        Err((b, AttachError::NotReady)) => {
            let old = b.age().is_ok_and(|age| age > policy.init_grace);
            return old && b.is_linked_as(seg) && ShmSegment::unlink(seg).is_ok();
        }
        Err(_) => return false, // another layout version, or damaged: not ours to judge
    };
    let (b, drop_kept) = b;
    match Ring::open(b) {
        Ok(ring) => {
            let linger = Linger {
                while_messages: !drop_kept,
                now_ns: now_ns(),
                removed: false,
            };
            let (b, outcome) = ring.detach_with(linger);
            outcome == Detached::Last && b.is_linked_as(seg) && ShmSegment::unlink(seg).is_ok()
        }
        Err(_) => false,
    }
}

/// Names of the rings (queues and broadcasts) in `/dev/shm`, without the `shmq-` prefix.
pub fn list_queues() -> io::Result<Vec<String>> {
    Ok(os::list_segments(SEGMENT_PREFIX)?
        .into_iter()
        .map(|s| s[SEGMENT_PREFIX.len()..].to_owned())
        .collect())
}
