//! A "process" (a heap handle on its own thread) dies at each crash point inside send and
//! recv; the survivors must repair what it left in flight and carry on: nothing committed is
//! lost, nothing partial is delivered, counts and space come back.

mod common;

use shmq_core::ring::crash::{arm, CrashPoint};
use shmq_core::ring::{Deadline, Message, RecvTimeoutError, Ring, TryRecvError, TrySendError};
use shmq_core::{Geometry, HeapBacking, HeapRegion};
use std::time::{Duration, Instant};

fn region(capacity: u64, maxsize: u64) -> (HeapRegion, Ring<HeapBacking>) {
    let g = Geometry::new(capacity, maxsize, 8, 0, 0x5eed).unwrap();
    let r = HeapRegion::new(g.total_size);
    let ring = Ring::create(r.handle(), g, 0).map_err(|(_, e)| e).unwrap();
    (r, ring)
}

fn open(r: &HeapRegion) -> Ring<HeapBacking> {
    Ring::open(r.handle()).map_err(|(_, e)| e).unwrap()
}

/// Runs `op` in a new "process" that crashes at `point`, then kills it.
fn die_at(r: &HeapRegion, point: CrashPoint, op: impl FnOnce(&Ring<HeapBacking>) + Send) {
    std::thread::scope(|s| {
        s.spawn(|| {
            let victim = open(r);
            arm(point);
            op(&victim);
            victim.backing().die();
            common::bury(victim); // killed: no detach, lane left taken
        });
    });
}

fn recv_within(ring: &Ring<HeapBacking>, limit: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
    let mut out = None;
    ring.recv_many_blocking(
        1,
        u64::MAX,
        Some(Instant::now() + limit),
        &mut shmq_core::Plain,
        |m| out = Some(m.to_vec()),
    )?;
    Ok(out.unwrap())
}

#[test]
fn producer_killed_after_reserving_is_skipped_and_counted() {
    for point in [CrashPoint::AfterReserve, CrashPoint::AfterReserveCas] {
        let (r, ring) = region(4096, 0);
        ring.try_send(Message::raw(b"before")).unwrap();
        die_at(&r, point, |v| {
            let _ = v.try_send(Message::raw(b"partial"));
        });
        ring.try_send(Message::raw(b"after")).unwrap();
        assert_eq!(
            recv_within(&ring, Duration::from_secs(5)).unwrap(),
            b"before"
        );
        // The dead reservation sits at head: a blocked consumer notices, repairs, goes on.
        assert_eq!(
            recv_within(&ring, Duration::from_secs(5)).unwrap(),
            b"after",
            "{point:?}"
        );
        let s = ring.stats();
        assert_eq!((s.abandoned, s.reaped, s.attached), (1, 1, 1), "{point:?}");
        assert_eq!(ring.try_recv_with(|m| m.to_vec()), Err(TryRecvError::Empty));
    }
}

/// The same with the deadlines of `Wait::Within` and `Wait::Forever` (`After`, `Never`), whose
/// first look does not read `tail` (`Look::Quick`): the wait (its stuck poll, or an attempt
/// in full) must still find the dead reservation at head. (`Never` would hang on a miss: a
/// watchdog aborts the test instead.)
#[test]
fn consumers_waiting_after_a_quick_first_look_get_past_a_dead_producer() {
    for deadline in [Deadline::After(Duration::from_secs(5)), Deadline::Never] {
        let (r, ring) = region(4096, 0);
        die_at(&r, CrashPoint::AfterReserve, |v| {
            let _ = v.try_send(Message::raw(b"partial"));
        });
        ring.try_send(Message::raw(b"after")).unwrap();
        let (done, watchdog) = std::sync::mpsc::channel::<()>();
        let guard = std::thread::spawn(move || {
            if watchdog.recv_timeout(Duration::from_secs(10)).is_err() {
                eprintln!("{deadline:?}: a consumer waiting behind a dead producer hung");
                std::process::abort();
            }
        });
        let mut out = None;
        let r = ring.recv_many_blocking(1, u64::MAX, deadline, &mut shmq_core::Plain, |m| {
            out = Some(m.to_vec())
        });
        let _ = done.send(());
        guard.join().unwrap();
        assert_eq!(r, Ok(1), "{deadline:?}");
        assert_eq!(out.as_deref(), Some(&b"after"[..]), "{deadline:?}");
    }
}

#[test]
fn nonblocking_consumers_also_get_past_a_dead_producer() {
    let (r, ring) = region(4096, 0);
    die_at(&r, CrashPoint::AfterReserve, |v| {
        let _ = v.try_send(Message::raw(b"partial"));
    });
    ring.try_send(Message::raw(b"after")).unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let got = loop {
        match ring.try_recv_with(|m| m.to_vec()) {
            Ok(m) => break m,
            Err(TryRecvError::Empty) if Instant::now() < end => std::thread::yield_now(),
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(got, b"after");
}

#[test]
fn batch_cut_short_delivers_what_was_committed_only() {
    let (r, ring) = region(4096, 0);
    die_at(&r, CrashPoint::AfterCommit, |v| {
        let msgs = [
            Message::raw(b"one"),
            Message::raw(b"two"),
            Message::raw(b"three"),
        ];
        let _ = v.try_send_many(&msgs);
    });
    ring.try_send(Message::raw(b"after")).unwrap();
    assert_eq!(recv_within(&ring, Duration::from_secs(5)).unwrap(), b"one");
    assert_eq!(
        recv_within(&ring, Duration::from_secs(5)).unwrap(),
        b"after"
    );
    assert_eq!(ring.stats().abandoned, 1);
}

#[test]
fn maxsize_permits_of_a_dead_producer_come_back() {
    for point in [
        CrashPoint::AfterPermits,
        CrashPoint::AfterReserveCas,
        CrashPoint::AfterReserve,
        CrashPoint::AfterCommit,
    ] {
        let (r, ring) = region(4096, 2);
        die_at(&r, point, |v| {
            let _ = v.try_send_many(&[Message::raw(b"a"), Message::raw(b"b")]);
        });
        // Whatever it left, once repaired (and drained), both permits are free again.
        ring.reap_dead();
        while let Ok(m) = ring.try_recv_with(|m| m.to_vec()) {
            assert_eq!(m, b"a", "{point:?}: only a committed message may come out");
        }
        assert_eq!(ring.len(), 0, "{point:?}");
        ring.try_send_many(&[Message::raw(b"x"), Message::raw(b"y")])
            .unwrap();
        assert_eq!(
            ring.try_send(Message::raw(b"z")),
            Err(TrySendError::Full),
            "{point:?}"
        );
    }
}

#[test]
fn consumer_killed_mid_claim_loses_one_counted_message_and_frees_space() {
    for point in [CrashPoint::AfterClaim, CrashPoint::AfterClaimCas] {
        let (r, ring) = region(4096, 0);
        let big = vec![7u8; 2000];
        ring.try_send(Message::raw(&big)).unwrap();
        die_at(&r, point, |v| {
            let _ = v.try_recv_with(|_| ());
        });
        ring.try_send(Message::raw(&big)).unwrap();
        // The ring is now full: the dead claim pins the first 2 KiB. A blocked producer
        // notices, repairs, and gets the space.
        let msg = vec![9u8; 2000];
        ring.send_many_blocking(
            &[Message::raw(&msg)],
            Some(Instant::now() + Duration::from_secs(5)),
            &mut shmq_core::Plain,
        )
        .unwrap_or_else(|e| panic!("{point:?}: {e:?}"));
        let s = ring.stats();
        assert_eq!((s.lost, s.reaped), (1, 1), "{point:?}");
        assert_eq!(recv_within(&ring, Duration::from_secs(5)).unwrap(), big);
        assert_eq!(recv_within(&ring, Duration::from_secs(5)).unwrap(), msg);
    }
}

#[test]
fn consumer_killed_mid_claim_gives_maxsize_permits_back() {
    for point in [CrashPoint::AfterClaim, CrashPoint::AfterClaimCas] {
        let (r, ring) = region(4096, 1);
        ring.try_send(Message::raw(b"m")).unwrap();
        die_at(&r, point, |v| {
            let _ = v.try_recv_with(|_| ());
        });
        ring.reap_dead();
        assert_eq!(ring.len(), 0, "{point:?}");
        ring.try_send(Message::raw(b"n")).unwrap();
        assert_eq!(ring.try_recv_with(|m| m.to_vec()).unwrap(), b"n");
    }
}

#[test]
fn a_process_killed_asleep_leaves_no_phantom_waiter() {
    let (r, ring) = region(4096, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let victim = open(&r);
            // Sleeps (counted in waiters) until the deadline, then "dies" as if killed asleep.
            let _ = victim.recv_many_blocking(
                1,
                u64::MAX,
                Some(Instant::now() + Duration::from_millis(100)),
                &mut shmq_core::Plain,
                |_| {},
            );
            victim.backing().die();
            common::bury(victim);
        });
    });
    assert_eq!(ring.reap_dead(), 1);
    assert_eq!(ring.stats().attached, 1);
}
