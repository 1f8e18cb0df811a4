//! `Ring::none_ready` (a queue's `empty()`) agrees with what a non-blocking receive would do:
//! records abandoned by a dead producer are stepped over, a record being written hides the
//! ones after it. `Ring::is_empty` stays "no record at all" (what the lifecycle asks).

mod common;

use shmq_core::ring::crash::{arm, CrashPoint};
use shmq_core::ring::{Message, Ring, TryRecvError};
use shmq_core::{Geometry, HeapBacking, HeapRegion};

fn region() -> (HeapRegion, Ring<HeapBacking>) {
    let g = Geometry::new(4096, 0, 8, 0, 0x5eed).unwrap();
    let r = HeapRegion::new(g.total_size);
    let ring = Ring::create(r.handle(), g, 0).map_err(|(_, e)| e).unwrap();
    (r, ring)
}

/// A producer "process" that reserves a record and dies before committing it.
fn producer_dies_mid_put(r: &HeapRegion) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let victim = Ring::open(r.handle()).map_err(|(_, e)| e).unwrap();
            arm(CrashPoint::AfterReserve);
            let _ = victim.try_send(Message::raw(b"partial"));
            victim.backing().die();
            common::bury(victim);
        });
    });
}

#[test]
fn an_abandoned_record_alone_is_nothing_ready() {
    let (r, ring) = region();
    producer_dies_mid_put(&r);
    // Opening reaps the dead producer and abandons its reservation.
    let other = Ring::open(r.handle()).map_err(|(_, e)| e).unwrap();
    assert_eq!(ring.stats().abandoned, 1);
    // A record is left (the lifecycle keeps such a ring), but no message: a receive finds
    // nothing, and so does `none_ready` (a queue's empty() was `head >= tail`: False).
    assert!(!ring.is_empty());
    assert!(ring.none_ready());
    assert_eq!(ring.try_recv_with(|m| m.to_vec()), Err(TryRecvError::Empty));
    other.try_send(Message::raw(b"after")).unwrap();
    assert!(!ring.none_ready());
    assert_eq!(ring.try_recv_with(|m| m.to_vec()).unwrap(), b"after");
    assert!(ring.none_ready() && ring.is_empty());
}

#[test]
fn a_record_being_written_hides_the_ones_after_it() {
    let (r, ring) = region();
    ring.try_send(Message::raw(b"first")).unwrap();
    assert!(!ring.none_ready());
    assert_eq!(ring.try_recv_with(|m| m.to_vec()).unwrap(), b"first");
    assert!(ring.none_ready());
    // In flight at head (its producer is gone but not yet reaped by anyone): a message
    // committed after it is not ready to take until the record at head is resolved.
    producer_dies_mid_put(&r);
    ring.try_send(Message::raw(b"second")).unwrap();
    assert!(!ring.is_empty());
    assert!(ring.none_ready());
}
