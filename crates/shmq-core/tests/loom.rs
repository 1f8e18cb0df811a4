//! loom models of the ring protocol over typed storage: loom explores the interleavings of
//! the atomics (threads stand in for processes) and reports unsynchronised payload access as
//! a data race. Run with `make loom`:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 LOOM_MAX_BRANCHES=100000 cargo test -p shmq-core --test loom --release
//! ```
#![cfg(loom)]

use loom::thread;
use shmq_core::ring::crash::{arm, CrashPoint};
use shmq_core::ring::{Message, Ring, TryRecvError, TrySendError};
use shmq_core::{Geometry, HeapBacking, HeapRegion};
use std::sync::Arc;

/// A 64-byte ring: two 8-byte messages (32-byte records) fill it, so models wrap around.
fn ring(maxsize: u64) -> (Arc<HeapRegion>, Ring<HeapBacking>) {
    let g = Geometry::new(64, maxsize, 5, 0, 0x1005).unwrap();
    assert_eq!(g.capacity, 64);
    let r = HeapRegion::typed(&g);
    let ring = Ring::create(r.handle(), g, 0).map_err(|(_, e)| e).unwrap();
    (Arc::new(r), ring)
}

fn open(r: &HeapRegion) -> Ring<HeapBacking> {
    Ring::open(r.handle()).map_err(|(_, e)| e).unwrap()
}

fn recv_spin(ring: &Ring<HeapBacking>) -> Vec<u8> {
    loop {
        match ring.try_recv_with(|m| m.to_vec()) {
            Ok(v) => return v,
            Err(TryRecvError::Empty) => thread::yield_now(),
            Err(e) => panic!("{e:?}"),
        }
    }
}

fn send_spin(ring: &Ring<HeapBacking>, msg: &[u8]) {
    loop {
        match ring.try_send(Message::raw(msg)) {
            Ok(()) => return,
            Err(TrySendError::Full) => thread::yield_now(),
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn spsc_in_order_across_wraparound() {
    loom::model(|| {
        let (r, consumer) = ring(0);
        let p = thread::spawn(move || {
            let producer = open(&r);
            for i in 0..3u8 {
                send_spin(&producer, &[i; 8]);
            }
        });
        for i in 0..3u8 {
            assert_eq!(recv_spin(&consumer), [i; 8]);
        }
        p.join().unwrap();
    });
}

#[test]
fn two_producers_two_consumers_each_message_once() {
    loom::model(|| {
        let (r, main) = ring(0);
        let producers: Vec<_> = (0..2u8)
            .map(|id| {
                let r = r.clone();
                thread::spawn(move || send_spin(&open(&r), &[id; 4]))
            })
            .collect();
        let r2 = r.clone();
        let c = thread::spawn(move || recv_spin(&open(&r2)));
        let mine = recv_spin(&main);
        let theirs = c.join().unwrap();
        for p in producers {
            p.join().unwrap();
        }
        let mut got = [mine[0], theirs[0]];
        got.sort_unstable();
        assert_eq!(got, [0, 1]);
    });
}

#[test]
fn batch_send_and_batch_claim() {
    loom::model(|| {
        let (r, consumer) = ring(0);
        let p = thread::spawn(move || {
            let producer = open(&r);
            loop {
                match producer.try_send_many(&[Message::raw(b"ab"), Message::raw(b"cd")]) {
                    Ok(()) => break,
                    Err(TrySendError::Full) => thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            }
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            match consumer.try_recv_many_with(2, |m| got.push(m.to_vec())) {
                Ok(_) => {}
                Err(TryRecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(got, [b"ab".to_vec(), b"cd".to_vec()]);
        p.join().unwrap();
    });
}

#[test]
fn full_then_space_with_maxsize() {
    loom::model(|| {
        let (r, producer) = ring(1);
        producer.try_send(Message::raw(b"1")).unwrap();
        assert_eq!(
            producer.try_send(Message::raw(b"2")),
            Err(TrySendError::Full)
        );
        let c = thread::spawn(move || recv_spin(&open(&r)));
        send_spin(&producer, b"2");
        assert_eq!(c.join().unwrap(), b"1");
        assert_eq!(recv_spin(&producer), b"2");
    });
}

#[test]
fn a_dead_producers_reservation_is_repaired_while_others_run() {
    loom::model(|| {
        let (r, consumer) = ring(0);
        let r2 = r.clone();
        let victim = thread::spawn(move || {
            let v = open(&r2);
            arm(CrashPoint::AfterReserve);
            let _ = v.try_send(Message::raw(b"partial"));
            v.backing().die();
            std::mem::forget(v);
        });
        let survivor = thread::spawn(move || send_spin(&open(&r), b"ok"));
        survivor.join().unwrap();
        victim.join().unwrap();
        // The consumer may find the dead reservation before or after "ok"; it repairs it.
        let got = loop {
            match consumer.try_recv_with(|m| m.to_vec()) {
                Ok(v) => break v,
                Err(TryRecvError::Empty) => {
                    consumer.reap_dead();
                    thread::yield_now();
                }
                Err(e) => panic!("{e:?}"),
            }
        };
        assert_eq!(got, b"ok");
        assert!(consumer.stats().abandoned <= 1);
    });
}

#[test]
fn a_dead_consumers_claim_is_counted_lost_and_space_comes_back() {
    loom::model(|| {
        let (r, producer) = ring(0);
        producer.try_send(Message::raw(&[1; 8])).unwrap();
        let victim = thread::spawn(move || {
            let v = open(&r);
            arm(CrashPoint::AfterClaim);
            let _ = v.try_recv_with(|_| ());
            v.backing().die();
            std::mem::forget(v);
        });
        producer.try_send(Message::raw(&[2; 8])).unwrap();
        victim.join().unwrap();
        // Full until the dead claim is repaired.
        loop {
            match producer.try_send(Message::raw(&[3; 8])) {
                Ok(()) => break,
                Err(TrySendError::Full) => {
                    producer.reap_dead();
                    thread::yield_now();
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(producer.stats().lost, 1);
        assert_eq!(recv_spin(&producer), [2; 8]);
        assert_eq!(recv_spin(&producer), [3; 8]);
    });
}
