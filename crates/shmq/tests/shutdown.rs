//! `shutdown(immediate)`: sends fail, receives drain and then fail instead of waiting, every
//! handle sees it, sleepers are woken; the same for broadcasts.

use shmq::{Broadcast, Queue, RecvError, SendError, Wait};
use std::sync::mpsc;
use std::time::Duration;

fn name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("rs-shutdown-{tag}-{}-{nanos:x}", std::process::id())
}

/// Waits until `q` counts a sleeper beyond `before` (bounded: a hang fails the test).
fn wait_for_sleeper(stats: impl Fn() -> u64, before: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stats() <= before {
        assert!(std::time::Instant::now() < deadline, "nobody went to sleep");
        std::thread::yield_now();
    }
}

#[test]
fn a_queue_drains_then_reports_the_shutdown() {
    let q = Queue::create(&name("drain"), 1 << 16).unwrap();
    let other = Queue::open(q.name()).unwrap();
    q.send(b"a").unwrap();
    q.send(b"b").unwrap();
    assert!(!q.is_shutdown());
    q.shutdown(false);
    assert!(q.is_shutdown() && other.is_shutdown());
    assert_eq!(q.try_send(b"c"), Err(SendError::ShutDown));
    assert_eq!(other.send(b"c"), Err(SendError::ShutDown));
    assert_eq!(other.recv().unwrap(), b"a");
    assert_eq!(q.try_recv().unwrap(), b"b");
    // Would wait for ever on a queue that is not shut down.
    assert_eq!(q.recv(), Err(RecvError::ShutDown));
    assert_eq!(other.try_recv(), Err(RecvError::ShutDown));
    assert_eq!(q.stats().dropped, 0);
}

#[test]
fn an_immediate_shutdown_drops_what_is_left() {
    let q = Queue::create(&name("immediate"), 1 << 16).unwrap();
    for i in 0..7u8 {
        q.send(&[i]).unwrap();
    }
    q.shutdown(true);
    assert_eq!(q.try_recv(), Err(RecvError::ShutDown));
    assert_eq!(q.recv(), Err(RecvError::ShutDown));
    let stats = q.stats();
    assert_eq!((stats.dropped, stats.depth, q.len()), (7, 0, 0));
    assert!(stats.shut_down);
}

#[test]
fn a_shutdown_wakes_a_sleeping_receiver_and_a_sleeping_sender() {
    let q = std::sync::Arc::new(
        Queue::builder(&name("wake"))
            .capacity(1 << 16)
            .maxsize(1)
            .create()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    // A receiver asleep on the empty queue, then a sender asleep on the full one.
    let receiver = {
        let (q, tx) = (q.clone(), tx.clone());
        std::thread::spawn(move || tx.send(format!("{:?}", q.recv())).unwrap())
    };
    wait_for_sleeper(|| q.stats().waits, 0);
    q.shutdown(false);
    let said = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        said,
        format!("{:?}", Err::<Vec<u8>, _>(RecvError::ShutDown))
    );
    receiver.join().unwrap();

    let q2 = std::sync::Arc::new(
        Queue::builder(&name("wake2"))
            .capacity(1 << 16)
            .maxsize(1)
            .create()
            .unwrap(),
    );
    q2.send(b"y").unwrap();
    let sender = {
        let q2 = q2.clone();
        std::thread::spawn(move || tx.send(format!("{:?}", q2.send(b"z"))).unwrap())
    };
    wait_for_sleeper(|| q2.stats().waits, 0);
    q2.shutdown(false);
    let said = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(said, format!("{:?}", Err::<(), _>(SendError::ShutDown)));
    sender.join().unwrap();
    assert_eq!(q2.recv().unwrap(), b"y");
    assert_eq!(
        q2.recv_into(&mut Vec::new(), Wait::Forever),
        Err(RecvError::ShutDown)
    );
}

#[test]
fn a_broadcast_shutdown_lets_each_subscriber_drain() {
    let b = Broadcast::create(&name("bc"), 1 << 16).unwrap();
    let sub = b.subscribe().unwrap();
    b.send(b"m1").unwrap();
    b.shutdown(false);
    assert!(b.is_shutdown() && sub.is_shutdown());
    assert_eq!(b.send(b"m2"), Err(SendError::ShutDown));
    assert_eq!(sub.recv().unwrap(), b"m1");
    assert_eq!(sub.recv(), Err(RecvError::ShutDown));
    b.shutdown(true);
    assert_eq!(sub.try_recv(), Err(RecvError::ShutDown));
}
