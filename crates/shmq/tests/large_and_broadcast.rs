//! Rust API: messages larger than the ring through side segments (queue and broadcast), and
//! zero-copy held reads of a broadcast.

use shmq::{Broadcast, Queue, SendError, Subscriber, Wait};
use std::time::Duration;

fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("rl{}-{tag}-{n}", std::process::id())
}

fn side_segments(name: &str) -> usize {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("shmqside-{name}-"))
        })
        .count()
}

fn big(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn queue_sends_messages_larger_than_the_ring_when_allowed() {
    let name = unique("q");
    let strict = Queue::builder(&name).capacity(1 << 16).create().unwrap();
    assert!(matches!(
        strict.send(&big(0, 1 << 20)),
        Err(SendError::TooLarge { .. })
    ));
    let q = Queue::builder(&name).allow_large(true).open().unwrap();
    q.send(&big(1, 1 << 20)).unwrap();
    q.send(b"small").unwrap();
    q.try_send(&big(2, 300_000)).unwrap();
    assert_eq!(side_segments(&name), 2);
    // The strict handle receives them too: receiving needs no setting.
    assert_eq!(strict.recv().unwrap(), big(1, 1 << 20));
    assert_eq!(
        strict.recv_timeout(Duration::from_secs(5)).unwrap(),
        b"small"
    );
    let mut buf = Vec::new();
    strict.recv_into(&mut buf, Wait::Forever).unwrap();
    assert_eq!(buf, big(2, 300_000));
    assert_eq!(side_segments(&name), 0);
    // A refused send leaves nothing behind.
    let full = Queue::builder(&unique("full"))
        .capacity(4096)
        .maxsize(1)
        .allow_large(true)
        .keep_messages(false) // a test's leftover message is nobody's: no segment left behind
        .create()
        .unwrap();
    full.send(b"x").unwrap();
    assert_eq!(full.try_send(&big(3, 10_000)), Err(SendError::Full));
    assert_eq!(side_segments(full.name()), 0);
}

#[test]
fn broadcast_large_messages_and_held_reads() {
    let name = unique("b");
    let publisher = Broadcast::builder(&name)
        .capacity(1 << 16)
        .allow_large(true)
        .create()
        .unwrap();
    let mut a = publisher.subscribe().unwrap();
    let b = Subscriber::open(&name).unwrap();
    publisher.send(&big(4, 1 << 20)).unwrap();
    publisher.send(b"held").unwrap();
    assert_eq!(a.recv().unwrap(), big(4, 1 << 20));
    assert_eq!(b.try_recv().unwrap(), big(4, 1 << 20));
    // Zero copy: the record stays put until released.
    let lent = a.recv_lent(Wait::No).unwrap();
    let (first, second) = lent.parts();
    assert_eq!([first, second].concat(), b"held");
    drop(lent);
    assert_eq!(b.recv().unwrap(), b"held");
    // Every subscriber passed the large one: reclaiming removes its segment.
    for i in 0..5000u32 {
        publisher.send(&i.to_le_bytes()).unwrap();
        a.recv().unwrap();
        b.recv().unwrap();
    }
    assert_eq!(side_segments(&name), 0);
}
