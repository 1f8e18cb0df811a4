//! Many threads on one handle: more threads than lanes, every message exactly once.

use shmq::{Broadcast, Queue, RecvError};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

fn name(tag: &str) -> String {
    format!("rs-threads-{tag}-{}-{:x}", std::process::id(), rand_u32())
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// Runs `f` on a thread and fails the test if it does not finish within `limit` (a hang
/// is a failure, not a stuck test run).
fn with_watchdog(limit: Duration, what: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => t.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => t.join().unwrap(), // panicked: re-raise
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung: {what} after {limit:?}"),
    }
}

fn queue_threads(producers: usize, consumers: usize) {
    const PER_PRODUCER: u32 = 2_000;
    let q = Queue::builder(&name("q"))
        .capacity(1 << 16)
        .create()
        .unwrap();
    let q = std::sync::Arc::new(q);
    let done = std::sync::Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        let mut takers = Vec::new();
        for _ in 0..consumers {
            let (q, done) = (q.clone(), done.clone());
            takers.push(s.spawn(move || {
                let mut got = Vec::new();
                loop {
                    match q.recv_timeout(Duration::from_millis(50)) {
                        Ok(m) => got.push(u64::from_le_bytes(m[..8].try_into().unwrap())),
                        Err(RecvError::Timeout) if done.load(Ordering::Acquire) => break,
                        Err(RecvError::Timeout) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                got
            }));
        }
        let putters: Vec<_> = (0..producers)
            .map(|p| {
                let q = q.clone();
                s.spawn(move || {
                    for i in 0..PER_PRODUCER {
                        let id = (p as u64) << 32 | u64::from(i);
                        let mut msg = id.to_le_bytes().to_vec();
                        msg.resize(8 + (i as usize % 200), 0xAB);
                        q.send(&msg).unwrap();
                    }
                })
            })
            .collect();
        for p in putters {
            p.join().unwrap();
        }
        done.store(true, Ordering::Release);
        let mut seen = HashSet::new();
        let mut last = vec![None; producers];
        for t in takers {
            let got = t.join().unwrap();
            last.iter_mut().for_each(|l| *l = None);
            for id in got {
                assert!(seen.insert(id), "message {id:#x} delivered twice");
                // FIFO per producer, as one consumer thread sees it.
                let (p, i) = ((id >> 32) as usize, id as u32);
                assert!(
                    last[p].is_none_or(|l| l < i),
                    "producer {p}: {i} after {last:?}"
                );
                last[p] = Some(i);
            }
        }
        assert_eq!(
            seen.len(),
            producers * PER_PRODUCER as usize,
            "messages lost"
        );
    });
}

#[test]
fn eight_threads_on_one_queue_handle() {
    with_watchdog(
        Duration::from_secs(60),
        "4 + 8 threads on one queue",
        || queue_threads(4, 8),
    );
}

#[test]
fn sixty_four_threads_on_one_queue_handle() {
    with_watchdog(
        Duration::from_secs(120),
        "32 + 32 threads on one queue",
        || queue_threads(32, 32),
    );
}

#[test]
fn sixty_four_threads_on_one_subscriber() {
    with_watchdog(
        Duration::from_secs(120),
        "64 threads on one subscriber",
        || {
            const N: u32 = 5_000;
            let name = name("b");
            let publisher = Broadcast::builder(&name)
                .capacity(1 << 16)
                .create()
                .unwrap();
            let sub = std::sync::Arc::new(publisher.subscribe().unwrap());
            let done = std::sync::Arc::new(AtomicBool::new(false));
            std::thread::scope(|s| {
                let readers: Vec<_> = (0..64)
                    .map(|_| {
                        let (sub, done) = (sub.clone(), done.clone());
                        s.spawn(move || {
                            let mut got = Vec::new();
                            loop {
                                match sub.recv_timeout(Duration::from_millis(50)) {
                                    Ok(m) => got.push(u32::from_le_bytes(m.try_into().unwrap())),
                                    Err(RecvError::Timeout) if done.load(Ordering::Acquire) => {
                                        break
                                    }
                                    Err(RecvError::Timeout) => {}
                                    Err(e) => panic!("{e}"),
                                }
                            }
                            got
                        })
                    })
                    .collect();
                for i in 0..N {
                    publisher.send(&i.to_le_bytes()).unwrap();
                }
                // Block policy: the last send returns once there is room; wait until read.
                while sub.info().unwrap().lag_messages > 0 {
                    std::thread::yield_now();
                }
                done.store(true, Ordering::Release);
                let mut seen = HashSet::new();
                for r in readers {
                    for i in r.join().unwrap() {
                        assert!(seen.insert(i), "message {i} delivered twice");
                    }
                }
                assert_eq!(seen.len(), N as usize, "messages lost");
            });
            assert_eq!(sub.try_recv(), Err(RecvError::Empty));
        },
    );
}
