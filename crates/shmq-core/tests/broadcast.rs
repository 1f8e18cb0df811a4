//! Heap-backed tests of broadcast rings: threads stand in for processes.

mod common;

use shmq_core::layout::FLAG_LAG;
use shmq_core::ring::{Delivery, Message, ReadTimeoutError, Ring, TryReadError, TrySendError};
use shmq_core::{Geometry, HeapBacking, HeapRegion};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn region(capacity: u64, flags: u32) -> (HeapRegion, Ring<HeapBacking>) {
    let g = Geometry::new(capacity, 0, 16, flags, 0xB0AD_CA57)
        .unwrap()
        .broadcast();
    let r = HeapRegion::new(g.total_size);
    let ring = Ring::create(r.handle(), g, 0).map_err(|(_, e)| e).unwrap();
    (r, ring)
}

fn subscriber(r: &HeapRegion) -> Ring<HeapBacking> {
    let ring = Ring::open(r.handle()).map_err(|(_, e)| e).unwrap();
    ring.subscribe();
    ring
}

/// Reads up to `max` messages, keeping only what survives a `Discard`.
fn read(ring: &Ring<HeapBacking>, max: usize) -> Result<Vec<Vec<u8>>, TryReadError> {
    let mut out = Vec::new();
    ring.try_read_many_with(max, |d| match d {
        Delivery::Message(v) => out.push(v.to_vec()),
        Delivery::Discard => out.clear(),
    })?;
    Ok(out)
}

fn send(ring: &Ring<HeapBacking>, i: u64) -> Result<(), TrySendError> {
    ring.try_send(Message::raw(&i.to_le_bytes()))
}

fn num(v: &[u8]) -> u64 {
    u64::from_le_bytes(v.try_into().unwrap())
}

#[test]
fn every_subscriber_reads_every_message_in_order() {
    let (r, publisher) = region(4096, 0);
    let subs: Vec<_> = (0..3).map(|_| subscriber(&r)).collect();
    for i in 0..20 {
        send(&publisher, i).unwrap();
    }
    for s in &subs {
        let got: Vec<u64> = read(s, 100).unwrap().iter().map(|v| num(v)).collect();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
        assert_eq!(read(s, 100), Err(TryReadError::Empty));
    }
}

#[test]
fn a_late_subscriber_sees_only_later_messages() {
    let (r, publisher) = region(4096, 0);
    let early = subscriber(&r);
    send(&publisher, 1).unwrap();
    let late = subscriber(&r);
    send(&publisher, 2).unwrap();
    assert_eq!(read(&early, 10).unwrap().len(), 2);
    let got: Vec<u64> = read(&late, 10).unwrap().iter().map(|v| num(v)).collect();
    assert_eq!(got, vec![2]);
}

#[test]
fn without_subscribers_publishing_never_blocks() {
    let (_r, publisher) = region(4096, 0);
    for i in 0..10_000 {
        send(&publisher, i).unwrap();
    }
}

#[test]
fn block_policy_waits_for_the_slowest_subscriber() {
    let (r, publisher) = region(4096, 0);
    let fast = subscriber(&r);
    let slow = subscriber(&r);
    let mut sent = 0;
    while send(&publisher, sent).is_ok() {
        sent += 1;
        assert_eq!(read(&fast, 1).unwrap().len(), 1);
    }
    assert_eq!(sent, 4096 / 32, "a 24-byte record takes 32 bytes");
    // The fast one has read everything; the slow one holds the space.
    assert_eq!(send(&publisher, sent), Err(TrySendError::Full));
    assert_eq!(read(&slow, 1).unwrap().len(), 1);
    send(&publisher, sent).unwrap();
    let all: Vec<u64> = read(&slow, 1000).unwrap().iter().map(|v| num(v)).collect();
    assert_eq!(all, (1..=sent).collect::<Vec<_>>());
}

#[test]
fn an_unsubscribed_reader_no_longer_holds_publishers() {
    let (r, publisher) = region(4096, 0);
    let slow = subscriber(&r);
    let mut sent = 0;
    while send(&publisher, sent).is_ok() {
        sent += 1;
    }
    slow.unsubscribe();
    send(&publisher, sent).unwrap();
    assert_eq!(read(&slow, 1), Err(TryReadError::NotSubscribed));
}

#[test]
fn a_dead_subscriber_is_evicted_by_a_blocked_publisher() {
    let (r, publisher) = region(4096, 0);
    let b = r.handle();
    let dead = Ring::open(b).map_err(|(_, e)| e).unwrap();
    dead.subscribe();
    let mut sent = 0;
    while send(&publisher, sent).is_ok() {
        sent += 1;
    }
    dead.backing().die();
    common::bury(dead); // a killed process runs no destructor
    assert_eq!(publisher.subscribers().len(), 1);
    // The deadline is a watchdog for a publisher that never evicts the dead subscriber, not
    // a speed bound (a blocked publisher looks for dead processes every few milliseconds).
    let msgs = [Message::raw(&[0u8; 8])];
    let watchdog = Instant::now() + Duration::from_secs(60);
    publisher
        .send_many_blocking(&msgs, Some(watchdog), &mut shmq_core::Plain)
        .unwrap();
    assert_eq!(publisher.stats().reaped, 1);
    assert!(publisher.subscribers().is_empty());
}

#[test]
fn lag_policy_overwrites_and_reports_the_missed_count() {
    let (r, publisher) = region(4096, FLAG_LAG);
    let sub = subscriber(&r);
    // 1000 records of 32 bytes through a 4096-byte ring: the subscriber misses most.
    for i in 0..1000 {
        send(&publisher, i).unwrap();
    }
    let missed = match read(&sub, 1000) {
        Err(TryReadError::Lagged { missed }) => missed,
        other => panic!("expected Lagged, got {other:?}"),
    };
    let rest: Vec<u64> = read(&sub, 1000).unwrap().iter().map(|v| num(v)).collect();
    assert_eq!(
        missed + rest.len() as u64,
        1000,
        "missed {missed}, read {}",
        rest.len()
    );
    assert_eq!(*rest.last().unwrap(), 999);
    assert_eq!(
        rest.first().copied(),
        Some(missed),
        "continues with the oldest available"
    );
    assert_eq!(read(&sub, 10), Err(TryReadError::Empty));
}

#[test]
fn lag_policy_loses_nothing_for_a_subscriber_that_keeps_up() {
    let (r, publisher) = region(4096, FLAG_LAG);
    let sub = subscriber(&r);
    for i in 0..10_000 {
        send(&publisher, i).unwrap();
        assert_eq!(num(&read(&sub, 1).unwrap()[0]), i);
    }
}

#[test]
fn subscribers_report_their_lag() {
    let (r, publisher) = region(4096, 0);
    let sub = subscriber(&r);
    for i in 0..5 {
        send(&publisher, i).unwrap();
    }
    let info = publisher.subscribers();
    assert_eq!(info.len(), 1);
    assert_eq!((info[0].lag_messages, info[0].lag_bytes), (5, 5 * 32));
    read(&sub, 2).unwrap();
    assert_eq!(publisher.subscribers()[0].lag_messages, 3);
}

#[test]
fn threads_publish_and_subscribe_concurrently_in_both_policies() {
    let only: Option<u32> = std::env::var("BFLAGS").ok().map(|v| v.parse().unwrap());
    for flags in [0, FLAG_LAG] {
        if only.is_some_and(|o| o != flags) {
            continue;
        }
        let (r, _creator) = region(8192, flags);
        let r = Arc::new(r);
        const PER: u64 = 20_000;
        let subs: Vec<_> = (0..2)
            .map(|_| {
                let s = subscriber(&r);
                std::thread::spawn(move || {
                    let mut last = [None::<u64>; 2];
                    let (mut got, mut missed) = (0u64, 0u64);
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while got + missed < 2 * PER {
                        let mut batch = Vec::new();
                        let res = s.read_many_blocking(
                            64,
                            u64::MAX,
                            Some(deadline),
                            &mut shmq_core::Plain,
                            |d| match d {
                                Delivery::Message(v) => batch.push(num(&v.to_vec())),
                                Delivery::Discard => batch.clear(),
                            },
                        );
                        match res {
                            Ok(_) => {}
                            Err(ReadTimeoutError::Lagged { missed: m }) => {
                                missed += m;
                                continue;
                            }
                            Err(e) => panic!("{e:?} after {got} + {missed}"),
                        }
                        for v in batch {
                            let (p, i) = ((v >> 32) as usize, v & 0xFFFF_FFFF);
                            // FIFO per publisher, no duplicates.
                            assert!(last[p].is_none_or(|l| i > l), "{p}: {i} after {last:?}");
                            last[p] = Some(i);
                            got += 1;
                        }
                    }
                    (got, missed)
                })
            })
            .collect();
        let pubs: Vec<_> = (0..2u64)
            .map(|p| {
                let ring = Ring::open(r.handle()).map_err(|(_, e)| e).unwrap();
                std::thread::spawn(move || {
                    for i in 0..PER {
                        let v = ((p << 32) | i).to_le_bytes();
                        let m = [Message::raw(&v)];
                        let d = Some(Instant::now() + Duration::from_secs(10));
                        if let Err(e) = ring.send_many_blocking(&m, d, &mut shmq_core::Plain) {
                            panic!("{e:?}\n{}", ring.debug_state());
                        }
                    }
                })
            })
            .collect();
        for p in pubs {
            p.join().unwrap();
        }
        for s in subs {
            let (got, missed) = s.join().unwrap();
            assert_eq!(got + missed, 2 * PER);
            if flags == 0 {
                assert_eq!(missed, 0, "the block policy loses nothing");
            }
        }
    }
}

#[test]
fn is_full_is_a_query() {
    // Block policy: the bytes every subscriber read are free, but only a send reclaims them.
    let (r, publisher) = region(4096, 0);
    let sub = subscriber(&r);
    let mut sent = 0;
    while send(&publisher, sent).is_ok() {
        sent += 1;
    }
    assert!(publisher.is_full());
    assert_eq!(read(&sub, 1).unwrap().len(), 1);
    let before = publisher.stats();
    assert!(!publisher.is_full());
    assert_eq!(publisher.stats(), before, "is_full changed the ring");

    // Lag policy: a send would overwrite, so the ring is never full; asking must not evict
    // the subscriber that has read nothing yet.
    let (r, publisher) = region(4096, FLAG_LAG);
    let sub = subscriber(&r);
    let fit = 4096 / 32; // 8-byte payloads take 32 bytes
    for i in 0..fit {
        send(&publisher, i).unwrap();
    }
    assert!(!publisher.is_full());
    let got: Vec<u64> = read(&sub, 1000).unwrap().iter().map(|v| num(v)).collect();
    assert_eq!(
        got,
        (0..fit).collect::<Vec<_>>(),
        "is_full evicted the subscriber"
    );
}

/// The payload of a held record, as a number.
fn held_num(ring: &Ring<HeapBacking>, h: &shmq_core::ring::Held) -> u64 {
    // SAFETY: `h` is held by `ring` (not released yet).
    let (a, b) = unsafe { ring.held_payload(h) };
    num(&[&a[..], &b[..]].concat())
}

#[test]
fn a_subscriber_holds_up_to_a_window_of_records_and_reads_on_behind_them() {
    let (r, publisher) = region(4096, 0);
    let sub = subscriber(&r);
    for i in 0..10 {
        send(&publisher, i).unwrap();
    }
    let holds: Vec<_> = (0..shmq_core::ring::HOLD_WINDOW)
        .map(|_| sub.try_hold_more().unwrap().expect("room in the window"))
        .collect();
    assert_eq!(
        holds.iter().map(|h| held_num(&sub, h)).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(sub.try_hold_more(), Ok(None), "the window is full");
    // Reads go on behind the held records, which stay held.
    let got: Vec<u64> = read(&sub, 2).unwrap().iter().map(|v| num(v)).collect();
    assert_eq!(got, vec![3, 4]);
    assert!(holds.iter().all(|h| sub.is_held(h)));
    // The cursor stays at the oldest held record: publishers fill the ring behind it.
    let mut sent = 10;
    while send(&publisher, sent).is_ok() {
        sent += 1;
    }
    assert_eq!(
        held_num(&sub, &holds[0]),
        0,
        "a held record is never overwritten"
    );
    // Releasing a later one frees nothing; releasing the oldest moves the cursor up to the
    // oldest record still held (1).
    sub.release_held(&holds[2]);
    assert_eq!(send(&publisher, sent), Err(TrySendError::Full));
    sub.release_held(&holds[0]);
    send(&publisher, sent).unwrap(); // record 0's bytes are free
    sent += 1;
    assert_eq!(held_num(&sub, &holds[1]), 1);
    sub.release_held(&holds[1]);
    sub.release_held(&holds[1]); // twice: nothing more
    let rest: Vec<u64> = read(&sub, 1000).unwrap().iter().map(|v| num(v)).collect();
    assert_eq!(
        rest,
        (5..sent).collect::<Vec<_>>(),
        "every message once, in order"
    );
}

#[test]
fn try_hold_releases_the_records_held_before() {
    let (r, publisher) = region(4096, 0);
    let sub = subscriber(&r);
    for i in 0..4 {
        send(&publisher, i).unwrap();
    }
    let a = sub.try_hold_more().unwrap().unwrap();
    let b = sub.try_hold_more().unwrap().unwrap();
    let c = sub.try_hold().unwrap();
    assert!(!sub.is_held(&a) && !sub.is_held(&b) && sub.is_held(&c));
    assert_eq!(held_num(&sub, &c), 2);
    sub.release_held(&c);
    assert_eq!(
        read(&sub, 10)
            .unwrap()
            .iter()
            .map(|v| num(v))
            .collect::<Vec<_>>(),
        vec![3]
    );
}

#[test]
fn calls_that_do_not_apply_to_a_broadcast_ring_are_refused_as_unsupported() {
    use shmq_core::ring::TryRecvError;
    // A caller's mistake, not a corrupted ring: nothing in shared memory is wrong.
    let (r, publisher) = region(4096, 0);
    let sub = subscriber(&r);
    send(&publisher, 1).unwrap();
    assert!(matches!(
        sub.try_recv_many_limited(1, u64::MAX, |_| {}),
        Err(TryRecvError::Unsupported(_))
    ));
    assert!(matches!(
        sub.try_claim_held(),
        Err(TryRecvError::Unsupported(_))
    ));
    assert_eq!(
        read(&sub, 1).unwrap().len(),
        1,
        "the message is still there"
    );

    let (r, publisher) = region(4096, FLAG_LAG);
    let sub = subscriber(&r);
    send(&publisher, 1).unwrap();
    assert!(matches!(sub.try_hold(), Err(TryReadError::Unsupported(_))));
}
