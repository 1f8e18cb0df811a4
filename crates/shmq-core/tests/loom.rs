//! loom models of the ring protocol over typed storage: loom explores the interleavings of
//! the atomics (threads stand in for processes) and reports unsynchronised payload access as
//! a data race. Every "process" attaches before the threads start, so the models explore the
//! data path, the repair and the wake-up protocol (SYNC W: a lost wake-up is a deadlock),
//! not the attach scan. Run with `make loom`:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 LOOM_MAX_BRANCHES=100000 \
//!     cargo test -p shmq-core --test loom --release
//! ```
#![cfg(loom)]

use loom::thread;
use shmq_core::ring::crash::{arm, CrashPoint};
use shmq_core::ring::{
    Message, RecvTimeoutError, Ring, SendTimeoutError, TryRecvError, TrySendError,
};
use shmq_core::{Backing, Geometry, HeapBacking, HeapRegion, Interest, Plain};

type R = Ring<HeapBacking>;

/// A 64-byte ring (two 8-byte messages, 32-byte records, fill it, so models wrap around)
/// and `n` attached "processes".
fn rings(n: usize, maxsize: u64) -> Vec<R> {
    let g = Geometry::new(64, maxsize, n as u32, 0, 0x1005).unwrap();
    assert_eq!(g.capacity, 64);
    let r = HeapRegion::typed(&g);
    let mut out = vec![Ring::create(r.handle(), g, 0).map_err(|(_, e)| e).unwrap()];
    for _ in 1..n {
        out.push(Ring::open(r.handle()).map_err(|(_, e)| e).unwrap());
    }
    out
}

fn recv_spin(ring: &R) -> Vec<u8> {
    loop {
        match ring.try_recv_with(|m| m.to_vec()) {
            Ok(v) => return v,
            Err(TryRecvError::Empty) => thread::yield_now(),
            Err(e) => panic!("{e:?}"),
        }
    }
}

fn send_spin(ring: &R, msg: &[u8]) {
    loop {
        match ring.try_send(Message::raw(msg)) {
            Ok(()) => return,
            Err(TrySendError::Full) => thread::yield_now(),
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// A "process" killed at `point` during `op`: its lease goes, its memory stays.
fn die_at(ring: R, point: CrashPoint, op: impl FnOnce(&R)) {
    arm(point);
    op(&ring);
    ring.backing().die();
    std::mem::forget(ring);
}

#[test]
fn spsc_in_order_across_wraparound() {
    loom::model(|| {
        let mut rs = rings(2, 0);
        let producer = rs.pop().unwrap();
        let p = thread::spawn(move || {
            for i in 0..3u8 {
                send_spin(&producer, &[i; 8]);
            }
        });
        for i in 0..3u8 {
            assert_eq!(recv_spin(&rs[0]), [i; 8]);
        }
        p.join().unwrap();
    });
}

#[test]
fn two_producers_one_consumer_each_message_once() {
    loom::model(|| {
        let mut rs = rings(3, 0);
        let (p1, p2) = (rs.pop().unwrap(), rs.pop().unwrap());
        let t1 = thread::spawn(move || send_spin(&p1, &[1; 4]));
        let t2 = thread::spawn(move || send_spin(&p2, &[2; 4]));
        let mut got = [recv_spin(&rs[0])[0], recv_spin(&rs[0])[0]];
        t1.join().unwrap();
        t2.join().unwrap();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

#[test]
fn one_producer_two_consumers_each_message_once() {
    loom::model(|| {
        let mut rs = rings(3, 0);
        let (c1, c2) = (rs.pop().unwrap(), rs.pop().unwrap());
        // Consumers race the producer and each other for a bounded number of attempts (two
        // unbounded spinners only exhaust loom); what they leave is drained after.
        let take = |c: R| {
            thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..2 {
                    match c.try_recv_with(|m| m.to_vec()) {
                        Ok(m) => got.push(m[0]),
                        Err(TryRecvError::Empty) => thread::yield_now(),
                        Err(e) => panic!("{e:?}"),
                    }
                }
                got
            })
        };
        let (t1, t2) = (take(c1), take(c2));
        send_spin(&rs[0], &[1; 4]);
        send_spin(&rs[0], &[2; 4]);
        let mut got = t1.join().unwrap();
        got.extend(t2.join().unwrap());
        while let Ok(m) = rs[0].try_recv_with(|m| m.to_vec()) {
            got.push(m[0]);
        }
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

#[test]
fn batch_send_and_batch_claim() {
    loom::model(|| {
        let mut rs = rings(2, 0);
        let producer = rs.pop().unwrap();
        let p = thread::spawn(move || loop {
            match producer.try_send_many(&[Message::raw(b"ab"), Message::raw(b"cd")]) {
                Ok(()) => break,
                Err(TrySendError::Full) => thread::yield_now(),
                Err(e) => panic!("{e:?}"),
            }
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            match rs[0].try_recv_many_with(2, |m| got.push(m.to_vec())) {
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
        let mut rs = rings(2, 1);
        let consumer = rs.pop().unwrap();
        let producer = &rs[0];
        producer.try_send(Message::raw(b"1")).unwrap();
        assert_eq!(
            producer.try_send(Message::raw(b"2")),
            Err(TrySendError::Full)
        );
        let c = thread::spawn(move || recv_spin(&consumer));
        send_spin(producer, b"2");
        assert_eq!(c.join().unwrap(), b"1");
        assert_eq!(recv_spin(producer), b"2");
    });
}

/// Tries to receive, repairing dead processes' leftovers when stuck: a few attempts while
/// the other threads still run (racing them), the rest after they are joined. (An unbounded
/// spin against threads loom has stopped scheduling would only exhaust the model.)
fn recv_repairing(consumer: &R, join: impl FnOnce()) -> Vec<u8> {
    let attempt = || match consumer.try_recv_with(|m| m.to_vec()) {
        Ok(m) => Some(m),
        Err(TryRecvError::Empty) => {
            consumer.reap_dead();
            None
        }
        Err(e) => panic!("{e:?}"),
    };
    for _ in 0..2 {
        if let Some(m) = attempt() {
            join();
            return m;
        }
        thread::yield_now();
    }
    join();
    for _ in 0..50 {
        if let Some(m) = attempt() {
            return m;
        }
    }
    panic!(
        "no progress after the others finished: {:#?}",
        consumer.debug_state()
    );
}

#[test]
fn a_dead_producers_reservation_is_repaired_while_another_sends() {
    loom::model(|| {
        let mut rs = rings(3, 0);
        let (victim, survivor) = (rs.pop().unwrap(), rs.pop().unwrap());
        let v = thread::spawn(move || {
            die_at(victim, CrashPoint::AfterReserve, |v| {
                let _ = v.try_send(Message::raw(b"partial"));
            })
        });
        let s = thread::spawn(move || send_spin(&survivor, b"ok"));
        // The consumer may meet the dead reservation before or after "ok": it repairs it.
        let got = recv_repairing(&rs[0], || {
            v.join().unwrap();
            s.join().unwrap();
        });
        assert_eq!(got, b"ok");
        assert!(
            rs[0].try_recv_with(|m| m.to_vec()).is_err(),
            "the partial message never shows"
        );
    });
}

/// The ring is drained past its hot span, so the next reservation starts with a skip to the
/// next lap (docs/protocol.md, *Hot restart*); its producer died before writing the skip. A
/// survivor sends while the consumer repairs.
#[test]
fn a_producer_killed_before_its_skip_is_repaired_while_another_sends() {
    loom::model(|| {
        let mut rs = rings(3, 0);
        rs[0].try_send(Message::raw(b"drained!")).unwrap();
        assert_eq!(rs[0].try_recv_with(|m| m.to_vec()).unwrap(), b"drained!");
        let (victim, survivor) = (rs.pop().unwrap(), rs.pop().unwrap());
        die_at(victim, CrashPoint::BeforeSkip, |v| {
            let _ = v.try_send(Message::raw(b"partial"));
        });
        assert_eq!(
            rs[0].stats().tail,
            96,
            "the victim reserved a skip and a record"
        );
        let s = thread::spawn(move || send_spin(&survivor, b"ok"));
        let got = recv_repairing(&rs[0], || s.join().unwrap());
        assert_eq!(got, b"ok");
        assert!(
            rs[0].try_recv_with(|m| m.to_vec()).is_err(),
            "the partial message never shows"
        );
    });
}

#[test]
fn a_dead_consumers_claim_is_counted_lost_and_its_space_comes_back() {
    loom::model(|| {
        let mut rs = rings(2, 0);
        let victim = rs.pop().unwrap();
        let producer = &rs[0];
        producer.try_send(Message::raw(&[1; 8])).unwrap();
        producer.try_send(Message::raw(&[2; 8])).unwrap();
        let v = thread::spawn(move || {
            die_at(victim, CrashPoint::AfterClaim, |v| {
                let _ = v.try_recv_with(|_| ());
            })
        });
        // Full until the dead claim is repaired: two tries racing the victim, then the rest.
        let mut sent = false;
        for _ in 0..2 {
            match producer.try_send(Message::raw(&[3; 8])) {
                Ok(()) => {
                    sent = true;
                    break;
                }
                Err(TrySendError::Full) => {
                    producer.reap_dead();
                    thread::yield_now();
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        v.join().unwrap();
        while !sent {
            match producer.try_send(Message::raw(&[3; 8])) {
                Ok(()) => sent = true,
                Err(TrySendError::Full) => {
                    producer.reap_dead();
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(producer.stats().lost, 1);
        assert_eq!(recv_spin(producer), [2; 8]);
        assert_eq!(recv_spin(producer), [3; 8]);
    });
}

// ---------------------------------------------------------------------------------------
// SYNC W (wake-up). Under loom `HeapBacking::wait` blocks on a loom condition variable
// until a `wake_all` (no timeout) and `wait_once` has no spin phase and no clock, so a lost
// wake-up leaves a thread blocked for good and loom reports a deadlock. The waiters block
// with no deadline, through the same loop as every blocking call.
// ---------------------------------------------------------------------------------------

/// `loom::model` with at most `bound` preemptions (or fewer if `LOOM_MAX_PREEMPTIONS` says
/// so). The three-thread models of SYNC W take minutes at 3 and found nothing more there
/// (two consumers: 100 s at 3, 4 s at 2, on 2 CPUs), while 2 already finds every broken
/// variant we tried (see `docs/protocol.md`, "Model checking").
fn model_bounded(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(model.preemption_bound.map_or(bound, |b| b.min(bound)));
    model.check(f);
}

/// Blocks until one message arrives and returns its first byte.
fn recv_blocking(ring: &R) -> u8 {
    let mut got = None;
    let n = ring
        .recv_many_blocking(1, u64::MAX, None, &mut Plain, |m| {
            got = Some(m.parts().0[0])
        })
        .unwrap();
    assert_eq!(n, 1);
    got.unwrap()
}

#[test]
fn a_blocked_consumer_is_woken_by_a_send() {
    loom::model(|| {
        let mut rs = rings(2, 0);
        let consumer = rs.pop().unwrap();
        let c = thread::spawn(move || recv_blocking(&consumer));
        rs[0].try_send(Message::raw(&[7; 8])).unwrap();
        assert_eq!(c.join().unwrap(), 7);
    });
}

#[test]
fn a_producer_blocked_on_a_full_ring_is_woken_when_space_frees() {
    loom::model(|| {
        let mut rs = rings(2, 0);
        let producer = rs.pop().unwrap();
        let consumer = &rs[0];
        // Two 32-byte records fill the 64-byte ring.
        producer.try_send(Message::raw(&[1; 8])).unwrap();
        producer.try_send(Message::raw(&[2; 8])).unwrap();
        let p = thread::spawn(move || {
            producer
                .send_many_blocking(&[Message::raw(&[3; 8])], None, &mut Plain)
                .unwrap()
        });
        assert_eq!(consumer.try_recv_with(|m| m.to_vec()).unwrap(), [1; 8]);
        p.join().unwrap();
        assert_eq!(recv_spin(consumer), [2; 8]);
        assert_eq!(recv_spin(consumer), [3; 8]);
    });
}

#[test]
fn two_blocked_consumers_are_both_woken() {
    // Two sleepers and two notifications: the second notifier may find the first one's
    // wake-up pending and skip its own (the `pending` part of SYNC W).
    model_bounded(2, || {
        let mut rs = rings(3, 0);
        let (c1, c2) = (rs.pop().unwrap(), rs.pop().unwrap());
        let t1 = thread::spawn(move || recv_blocking(&c1));
        let t2 = thread::spawn(move || recv_blocking(&c2));
        rs[0].try_send(Message::raw(&[1; 8])).unwrap();
        rs[0].try_send(Message::raw(&[2; 8])).unwrap();
        let mut got = [t1.join().unwrap(), t2.join().unwrap()];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

#[test]
fn a_producer_blocked_by_maxsize_is_woken_by_a_recv() {
    loom::model(|| {
        let mut rs = rings(2, 1);
        let producer = rs.pop().unwrap();
        let consumer = &rs[0];
        producer.try_send(Message::raw(b"1")).unwrap();
        let p = thread::spawn(move || {
            producer
                .send_many_blocking(&[Message::raw(b"2")], None, &mut Plain)
                .unwrap()
        });
        assert_eq!(consumer.try_recv_with(|m| m.to_vec()).unwrap(), b"1");
        p.join().unwrap();
        assert_eq!(recv_spin(consumer), b"2");
    });
}

#[test]
fn two_producers_blocked_on_a_full_ring_are_both_woken() {
    model_bounded(2, || {
        let mut rs = rings(3, 0);
        let (p1, p2) = (rs.pop().unwrap(), rs.pop().unwrap());
        let consumer = &rs[0];
        consumer.try_send(Message::raw(&[1; 8])).unwrap();
        consumer.try_send(Message::raw(&[2; 8])).unwrap();
        let send = |p: R, i: u8| {
            thread::spawn(move || {
                p.send_many_blocking(&[Message::raw(&[i; 8])], None, &mut Plain)
                    .unwrap()
            })
        };
        let (t1, t2) = (send(p1, 3), send(p2, 4));
        // Both records in one claim: one notification, so the model stays small; the
        // producers race each other for the space (one reclaims what the other needs).
        let mut freed = Vec::new();
        let n = consumer
            .try_recv_many_with(2, |m| freed.push(m.to_vec()))
            .unwrap();
        assert_eq!((n, freed), (2, vec![vec![1; 8], vec![2; 8]]));
        t1.join().unwrap();
        t2.join().unwrap();
        let mut got = [recv_spin(consumer)[0], recv_spin(consumer)[0]];
        got.sort_unstable();
        assert_eq!(got, [3, 4]);
    });
}

/// A broadcast ring of 64 bytes with `n` attached "processes".
fn broadcast_rings(n: usize) -> Vec<R> {
    let g = Geometry::new(64, 0, n as u32, 0, 0xB00)
        .unwrap()
        .broadcast();
    let r = HeapRegion::typed(&g);
    let mut out = vec![Ring::create(r.handle(), g, 0).map_err(|(_, e)| e).unwrap()];
    for _ in 1..n {
        out.push(Ring::open(r.handle()).map_err(|(_, e)| e).unwrap());
    }
    out
}

fn read_spin(ring: &R) -> Vec<u8> {
    use shmq_core::ring::{Delivery, TryReadError};
    loop {
        let mut got = None;
        match ring.try_read_many_with(1, |d| match d {
            Delivery::Message(v) => got = Some(v.to_vec()),
            Delivery::Discard => got = None,
        }) {
            Ok(_) => return got.unwrap(),
            Err(TryReadError::Empty) => thread::yield_now(),
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn a_blocked_subscriber_is_woken_by_a_publish() {
    use shmq_core::ring::Delivery;
    loom::model(|| {
        let mut rs = broadcast_rings(2);
        let sub = rs.pop().unwrap();
        sub.subscribe();
        let s = thread::spawn(move || {
            let mut got = None;
            sub.read_many_blocking(1, u64::MAX, None, &mut Plain, |d| {
                if let Delivery::Message(m) = d {
                    got = Some(m.to_vec());
                }
            })
            .unwrap();
            got.unwrap()
        });
        rs[0].try_send(Message::raw(&[5; 8])).unwrap();
        assert_eq!(s.join().unwrap(), [5; 8]);
    });
}

#[test]
fn a_publisher_blocked_by_a_slow_subscriber_is_woken_by_its_read() {
    loom::model(|| {
        let mut rs = broadcast_rings(2);
        let publisher = rs.pop().unwrap();
        let sub = &rs[0];
        sub.subscribe();
        publisher.try_send(Message::raw(&[1; 8])).unwrap();
        publisher.try_send(Message::raw(&[2; 8])).unwrap();
        let p = thread::spawn(move || {
            publisher
                .send_many_blocking(&[Message::raw(&[3; 8])], None, &mut Plain)
                .unwrap()
        });
        assert_eq!(read_spin(sub), [1; 8]);
        p.join().unwrap();
        assert_eq!(read_spin(sub), [2; 8]);
        assert_eq!(read_spin(sub), [3; 8]);
    });
}

#[test]
fn broadcast_subscriber_reads_everything_across_wraparound() {
    // Block policy: the publisher reclaims only what the subscriber read (loom reports a data
    // race if it overwrote a payload the subscriber is still copying). Two subscribers with
    // wrap-around exceed loom's branch budget; the heap tests cover several subscribers.
    loom::model(|| {
        let mut rs = broadcast_rings(2);
        let publisher = rs.pop().unwrap();
        rs[0].subscribe();
        let p = thread::spawn(move || {
            for i in 0..3u8 {
                send_spin(&publisher, &[i; 8]);
            }
        });
        let mine: Vec<u8> = (0..3u8).map(|_| read_spin(&rs[0])[0]).collect();
        assert_eq!(mine, [0, 1, 2]);
        p.join().unwrap();
    });
}

#[test]
fn broadcast_join_races_with_reclaim() {
    // A subscriber joins while the publisher is reclaiming and wrapping around: it must never
    // read reclaimed bytes (a data race under loom) and must receive the message published
    // after its subscribe returned.
    loom::model(|| {
        let mut rs = broadcast_rings(2);
        let publisher = rs.pop().unwrap();
        let sub = rs.pop().unwrap();
        let (tx, rx) = loom::sync::mpsc::channel::<()>();
        let p = thread::spawn(move || {
            for i in 0..3u8 {
                send_spin(&publisher, &[i; 8]);
            }
            rx.recv().unwrap();
            send_spin(&publisher, &[9; 8]);
        });
        sub.subscribe();
        tx.send(()).unwrap();
        let mut last = read_spin(&sub);
        while last != [9; 8] {
            last = read_spin(&sub);
        }
        p.join().unwrap();
    });
}

// ---------------------------------------------------------------------------------------
// Shutdown (`ring/shutdown.rs`): its wake-up follows SYNC W, so a sleeper never sleeps
// through it (a lost wake-up is a deadlock here), and a receive that sees the word set has
// seen every message committed before it (drained means drained).
// ---------------------------------------------------------------------------------------

#[test]
fn a_blocked_consumer_is_woken_by_a_shutdown() {
    loom::model(|| {
        let mut rs = rings(2, 0);
        let consumer = rs.pop().unwrap();
        let c = thread::spawn(move || {
            consumer.recv_many_blocking(1, u64::MAX, None, &mut Plain, |_| {})
        });
        rs[0].shutdown(false);
        assert_eq!(c.join().unwrap(), Err(RecvTimeoutError::ShutDown));
    });
}

#[test]
fn a_message_sent_before_the_shutdown_is_received_first() {
    loom::model(|| {
        let mut rs = rings(2, 0);
        let consumer = rs.pop().unwrap();
        let c = thread::spawn(move || {
            let first = recv_blocking(&consumer);
            let then = consumer.recv_many_blocking(1, u64::MAX, None, &mut Plain, |_| {});
            (first, then)
        });
        rs[0].try_send(Message::raw(&[5; 8])).unwrap();
        rs[0].shutdown(false);
        assert_eq!(
            rs[0].try_send(Message::raw(&[6; 8])),
            Err(TrySendError::ShutDown)
        );
        assert_eq!(c.join().unwrap(), (5, Err(RecvTimeoutError::ShutDown)));
    });
}

#[test]
fn a_producer_blocked_on_a_full_ring_is_woken_by_a_shutdown() {
    loom::model(|| {
        let mut rs = rings(2, 0);
        let producer = rs.pop().unwrap();
        producer.try_send(Message::raw(&[1; 8])).unwrap();
        producer.try_send(Message::raw(&[2; 8])).unwrap();
        let p = thread::spawn(move || {
            producer.send_many_blocking(&[Message::raw(&[3; 8])], None, &mut Plain)
        });
        rs[0].shutdown(false);
        assert_eq!(p.join().unwrap(), Err(SendTimeoutError::ShutDown));
        // What was sent before is still there to drain.
        assert_eq!(rs[0].try_recv_with(|m| m.to_vec()).unwrap(), [1; 8]);
    });
}

// ---------------------------------------------------------------------------------------
// Asynchronous waiters (`Ring::arm` / `disarm`, the helper thread's futex wait elsewhere)
// ---------------------------------------------------------------------------------------

/// What `shmq.asyncio`'s get does, with the helper thread's sleep made in place: a
/// non-blocking attempt, arm (announce + re-check), sleep on the event word while it holds
/// the armed value, disarm, again.
fn recv_async(ring: &R) -> u8 {
    loop {
        match ring.try_recv_with(|m| m.to_vec()[0]) {
            Ok(v) => return v,
            Err(TryRecvError::Empty) => {}
            Err(e) => panic!("{e:?}"),
        }
        if let Some(armed) = ring.arm(Interest::Data) {
            ring.backing()
                .wait(ring.event_word(Interest::Data), armed.seq, None);
            ring.disarm(Interest::Data, armed);
        }
    }
}

/// What its put does: for room the re-check after arming is the send attempt itself.
fn send_async(ring: &R, msg: &[u8]) {
    loop {
        match ring.try_send(Message::raw(msg)) {
            Ok(()) => return,
            Err(TrySendError::Full) => {}
            Err(e) => panic!("{e:?}"),
        }
        let armed = ring
            .arm(Interest::Space)
            .expect("room is never judged by arm");
        let sent = match ring.try_send(Message::raw(msg)) {
            Ok(()) => true,
            Err(TrySendError::Full) => false,
            Err(e) => panic!("{e:?}"),
        };
        if !sent {
            ring.backing()
                .wait(ring.event_word(Interest::Space), armed.seq, None);
        }
        ring.disarm(Interest::Space, armed);
        if sent {
            return;
        }
    }
}

#[test]
fn an_async_consumer_is_woken_by_a_send() {
    loom::model(|| {
        let mut rs = rings(2, 0);
        let consumer = rs.pop().unwrap();
        let c = thread::spawn(move || recv_async(&consumer));
        rs[0].try_send(Message::raw(&[7; 8])).unwrap();
        assert_eq!(c.join().unwrap(), 7);
    });
}

#[test]
fn an_async_producer_on_a_full_ring_is_woken_when_space_frees() {
    loom::model(|| {
        let mut rs = rings(2, 0);
        let producer = rs.pop().unwrap();
        let consumer = &rs[0];
        producer.try_send(Message::raw(&[1; 8])).unwrap();
        producer.try_send(Message::raw(&[2; 8])).unwrap();
        let p = thread::spawn(move || send_async(&producer, &[3; 8]));
        assert_eq!(consumer.try_recv_with(|m| m.to_vec()).unwrap(), [1; 8]);
        p.join().unwrap();
        assert_eq!(recv_spin(consumer), [2; 8]);
        assert_eq!(recv_spin(consumer), [3; 8]);
    });
}

#[test]
fn an_async_and_a_blocked_consumer_are_both_woken() {
    // A thread asleep in place and a waiter armed elsewhere on one event, two notifications
    // (the second may find the first one's wake-up pending and skip its own).
    model_bounded(2, || {
        let mut rs = rings(3, 0);
        let (c1, c2) = (rs.pop().unwrap(), rs.pop().unwrap());
        let t1 = thread::spawn(move || recv_async(&c1));
        let t2 = thread::spawn(move || recv_blocking(&c2));
        rs[0].try_send(Message::raw(&[1; 8])).unwrap();
        rs[0].try_send(Message::raw(&[2; 8])).unwrap();
        let mut got = [t1.join().unwrap(), t2.join().unwrap()];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// The hold window (`try_hold_more`): a subscriber holds the two records of a full 64-byte
/// ring and reads each in place after releasing the other, while the publisher tries to
/// publish a third. The publisher may reclaim the older record only once it is released,
/// whatever the order of the releases (loom reports a data race if it overwrote a held
/// payload, and the bytes would differ); then the third comes.
fn held_records_stay_until_released(newest_first: bool) {
    loom::model(move || {
        let mut rs = broadcast_rings(2);
        let publisher = rs.pop().unwrap();
        let sub = rs.pop().unwrap();
        sub.subscribe();
        publisher.try_send(Message::raw(&[1; 8])).unwrap();
        publisher.try_send(Message::raw(&[2; 8])).unwrap();
        let p = thread::spawn(move || send_spin(&publisher, &[3; 8]));
        let older = (sub.try_hold().unwrap(), [1u8; 8]);
        let newer = (
            sub.try_hold_more()
                .unwrap()
                .expect("room for a second hold"),
            [2u8; 8],
        );
        let order = if newest_first {
            [newer, older]
        } else {
            [older, newer]
        };
        // Each record is read after the other one's release, while the publisher runs.
        for (h, want) in &order {
            // SAFETY: held by this attachment and not released yet.
            let (a, b) = unsafe { sub.held_payload(h) };
            assert_eq!([&a[..], &b[..]].concat(), want);
            sub.release_held(h);
        }
        assert_eq!(read_spin(&sub), [3; 8]);
        p.join().unwrap();
    });
}

#[test]
fn held_records_stay_until_released_oldest_first() {
    held_records_stay_until_released(false);
}

#[test]
fn held_records_stay_until_released_newest_first() {
    held_records_stay_until_released(true);
}

/// An opener that attaches the moment a new segment is ready and leaves at once is not its
/// last process: the creator was counted in before the segment was published, so the
/// opener's detach must not close it under the creator (whose create then failed, and whose
/// caller removed the name: "does not exist" from an open-or-create).
#[test]
fn an_opener_leaving_at_once_does_not_close_a_new_ring_under_its_creator() {
    loom::model(|| {
        let g = Geometry::new(64, 0, 2, 0, 0x1005).unwrap();
        let r = HeapRegion::typed(&g);
        let mut h = r.handle();
        let opener = thread::spawn(move || loop {
            match Ring::open(h) {
                Ok(ring) => return ring.detach().1,
                Err((b, shmq_core::AttachError::NotReady)) => {
                    h = b;
                    thread::yield_now();
                }
                Err((_, e)) => panic!("open: {e:?}"),
            }
        });
        let creator = Ring::create(r.handle(), g, 0).map_err(|(_, e)| e);
        assert!(creator.is_ok(), "create: {:?}", creator.err());
        assert_eq!(opener.join().unwrap(), shmq_core::Detached::Others);
        assert_eq!(creator.unwrap().detach().1, shmq_core::Detached::Last);
    });
}
