//! Looking after `/dev/shm`: listing rings and removing what dead processes left.

use crate::name::{segment_name, SEGMENT_PREFIX};
use crate::os::{self, Opened, ShmSegment};
use shmq_core::{AttachError, Detached, Ring};
use std::io;
use std::time::Duration;

/// Removes every non-persistent ring whose attached processes are all dead (it attaches,
/// reaps the dead, detaches, and the last one out removes the segment), and segments whose
/// creator died before initialising them (after `init_grace`). Leaves everything else alone:
/// rings with a live process, persistent ones, segments of other layout versions.
/// Also removes side segments (`shmqside-...`) whose ring no longer exists. Returns the names
/// removed (queue names, and side segments' full names).
pub fn gc(init_grace: Duration) -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for name in list_queues()? {
        let seg = segment_name(&name);
        match ShmSegment::open(&seg) {
            Ok(Opened::Ready(b)) => match Ring::open(b) {
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
            Ok(Opened::Empty(_)) => {} // being created
            Err(_) => {}               // gone, or not ours to open
        }
    }
    // Side segments whose ring is gone (its last process died before removing them).
    for side in os::list_segments(os::SIDE_PREFIX)? {
        let ring = side[os::SIDE_PREFIX.len()..]
            .rsplit_once('-')
            .map(|(ring, _)| ring.to_owned());
        if let Some(ring) = ring {
            if !os::segment_exists(&segment_name(&ring)) && ShmSegment::unlink(&side).is_ok() {
                removed.push(side);
            }
        }
    }
    Ok(removed)
}

/// Names of the rings (queues and broadcasts) in `/dev/shm`, without the `shmq-` prefix.
pub fn list_queues() -> io::Result<Vec<String>> {
    Ok(os::list_segments(SEGMENT_PREFIX)?
        .into_iter()
        .map(|s| s[SEGMENT_PREFIX.len()..].to_owned())
        .collect())
}
