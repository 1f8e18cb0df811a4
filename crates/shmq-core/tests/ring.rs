//! Heap-backed tests of the ring protocol: threads stand in for processes (each has its own
//! `HeapBacking`, i.e. its own slot and leases). Sizes shrink under Miri.

mod common;

use shmq_core::ring::{Detached, Message, RecvTimeoutError, Ring, TryRecvError, TrySendError};
use shmq_core::{Geometry, HeapBacking, HeapRegion};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn region(capacity: u64, maxsize: u64) -> (HeapRegion, Ring<HeapBacking>) {
    let g = Geometry::new(capacity, maxsize, 16, 0, 0x1234_5678_9abc_def0).unwrap();
    let r = HeapRegion::new(g.total_size);
    let ring = Ring::create(r.handle(), g, 0).map_err(|(_, e)| e).unwrap();
    (r, ring)
}

fn open(r: &HeapRegion) -> Ring<HeapBacking> {
    Ring::open(r.handle()).map_err(|(_, e)| e).unwrap()
}

fn recv(ring: &Ring<HeapBacking>) -> Result<Vec<u8>, TryRecvError> {
    ring.try_recv_with(|m| m.to_vec())
}

const fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        n / 100 + 1
    } else {
        n
    }
}

#[test]
fn send_then_recv_in_order() {
    let (_r, ring) = region(4096, 0);
    for i in 0..10u32 {
        ring.try_send(Message::raw(&i.to_le_bytes())).unwrap();
    }
    assert_eq!(ring.len(), 10);
    for i in 0..10u32 {
        assert_eq!(recv(&ring).unwrap(), i.to_le_bytes());
    }
    assert_eq!(recv(&ring), Err(TryRecvError::Empty));
    assert!(ring.is_empty());
}

#[test]
fn codec_and_flags_travel_with_the_record() {
    let (_r, ring) = region(4096, 0);
    ring.try_send(Message {
        codec: 1001,
        flags: 3,
        payload: b"x",
    })
    .unwrap();
    let (codec, flags, bytes) = ring
        .try_recv_with(|m| (m.codec, m.flags, m.to_vec()))
        .unwrap();
    assert_eq!((codec, flags, bytes.as_slice()), (1001, 3, &b"x"[..]));
}

#[test]
fn empty_payload_is_a_message() {
    let (_r, ring) = region(4096, 0);
    ring.try_send(Message::raw(b"")).unwrap();
    assert_eq!(recv(&ring).unwrap(), b"");
    assert_eq!(recv(&ring), Err(TryRecvError::Empty));
}

#[test]
fn full_then_one_slot_frees_per_recv_over_many_laps() {
    let (_r, ring) = region(4096, 0);
    // 100-byte payloads take 128 bytes: 32 fit in 4096.
    let msg = |i: u8| vec![i; 100];
    let mut sent = 0u8;
    while ring.try_send(Message::raw(&msg(sent))).is_ok() {
        sent = sent.wrapping_add(1);
    }
    assert_eq!(sent, 32);
    assert_eq!(
        ring.try_send(Message::raw(&msg(0))),
        Err(TrySendError::Full)
    );
    assert!(ring.is_full());
    let mut next = 0u8;
    for _ in 0..scaled(3000) {
        assert_eq!(recv(&ring).unwrap(), msg(next));
        next = next.wrapping_add(1);
        ring.try_send(Message::raw(&msg(sent))).unwrap();
        sent = sent.wrapping_add(1);
        assert_eq!(
            ring.try_send(Message::raw(&msg(0))),
            Err(TrySendError::Full)
        );
    }
}

#[test]
fn records_straddling_the_end_are_intact() {
    let (_r, ring) = region(4096, 0);
    let mut expect = std::collections::VecDeque::new();
    for i in 0..scaled(5000) {
        let len = (i * 37) % 900;
        let payload: Vec<u8> = (0..len).map(|k| (k + i) as u8).collect();
        while ring.try_send(Message::raw(&payload)).is_err() {
            assert_eq!(recv(&ring).unwrap(), expect.pop_front().unwrap());
        }
        expect.push_back(payload);
    }
    while let Some(e) = expect.pop_front() {
        assert_eq!(recv(&ring).unwrap(), e);
    }
}

#[test]
fn too_large_is_an_error_not_a_hang() {
    let (_r, ring) = region(4096, 0);
    let max = ring.max_payload() as usize;
    assert_eq!(max, 4096 - 16);
    ring.try_send(Message::raw(&vec![7; max])).unwrap();
    assert_eq!(recv(&ring).unwrap().len(), max);
    let e = ring.try_send(Message::raw(&vec![7; max + 1])).unwrap_err();
    assert!(matches!(e, TrySendError::TooLarge { size, .. } if size == max as u64 + 1));
    let e = ring
        .send_many_blocking(
            &[Message::raw(&vec![7; max + 1])],
            None,
            &mut shmq_core::Plain,
        )
        .unwrap_err();
    assert!(matches!(e, shmq_core::SendTimeoutError::TooLarge { .. }));
}

#[test]
fn maxsize_bounds_the_message_count() {
    let (_r, ring) = region(4096, 3);
    for _ in 0..3 {
        ring.try_send(Message::raw(b"a")).unwrap();
    }
    assert_eq!(ring.try_send(Message::raw(b"a")), Err(TrySendError::Full));
    assert!(ring.is_full());
    assert_eq!(ring.len(), 3);
    recv(&ring).unwrap();
    ring.try_send(Message::raw(b"b")).unwrap();
    assert_eq!(ring.len(), 3);
    // A batch needs room for all of it.
    recv(&ring).unwrap();
    let batch = [Message::raw(b"1"), Message::raw(b"2")];
    assert_eq!(ring.try_send_many(&batch), Err(TrySendError::Full));
    assert_eq!(ring.len(), 2);
}

#[test]
fn batches_are_all_or_nothing_and_recv_many_takes_a_run() {
    let (_r, ring) = region(4096, 0);
    let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 50]).collect();
    let msgs: Vec<Message<'_>> = payloads.iter().map(|p| Message::raw(p)).collect();
    ring.try_send_many(&msgs).unwrap();
    let big: Vec<Vec<u8>> = (0..25u8).map(|i| vec![i; 100]).collect();
    let big_msgs: Vec<Message<'_>> = big.iter().map(|p| Message::raw(p)).collect();
    assert_eq!(ring.try_send_many(&big_msgs), Err(TrySendError::Full));
    let mut got = Vec::new();
    assert_eq!(
        ring.try_recv_many_with(15, |m| got.push(m.to_vec()))
            .unwrap(),
        15
    );
    assert_eq!(
        ring.try_recv_many_with(15, |m| got.push(m.to_vec()))
            .unwrap(),
        5
    );
    assert_eq!(got, payloads);
}

#[test]
fn recv_timeout_times_out_and_zero_does_not_wait_forever() {
    let (_r, ring) = region(4096, 0);
    let t0 = Instant::now();
    let r = ring.recv_many_blocking(
        1,
        u64::MAX,
        Some(Instant::now()),
        &mut shmq_core::Plain,
        |_| {},
    );
    assert_eq!(r, Err(RecvTimeoutError::Timeout));
    let r = ring.recv_many_blocking(
        1,
        u64::MAX,
        Some(Instant::now() + Duration::from_millis(20)),
        &mut shmq_core::Plain,
        |_| {},
    );
    assert_eq!(r, Err(RecvTimeoutError::Timeout));
    assert!(t0.elapsed() >= Duration::from_millis(20));
}

#[test]
fn last_detach_is_reported_once() {
    let (r, a) = region(4096, 0);
    let b = open(&r);
    assert_eq!(a.stats().attached, 2);
    assert_eq!(a.detach().1, Detached::Others);
    assert_eq!(b.detach().1, Detached::Last);
    assert!(matches!(
        Ring::open(r.handle()),
        Err((_, shmq_core::AttachError::Closing))
    ));
}

#[test]
fn a_dead_process_is_reaped_and_its_slot_reused() {
    let (r, a) = region(4096, 0);
    let b = open(&r);
    b.try_send(Message::raw(b"from b")).unwrap();
    b.backing().die();
    common::bury(b); // killed: no detach
    assert_eq!(a.stats().attached, 2);
    assert_eq!(a.reap_dead(), 1);
    let s = a.stats();
    assert_eq!((s.attached, s.reaped, s.puts), (1, 1, 1));
    assert_eq!(recv(&a).unwrap(), b"from b");
    assert_eq!(a.detach().1, Detached::Last);
}

#[test]
fn mpmc_every_message_exactly_once_fifo_per_producer() {
    const PRODUCERS: usize = 3;
    const CONSUMERS: usize = 3;
    let per = scaled(20_000);
    let (r, ring) = region(8192, 0);
    let r = Arc::new(r);
    let mut handles = Vec::new();
    for p in 0..PRODUCERS {
        let r = r.clone();
        handles.push(std::thread::spawn(move || {
            let ring = open(&r);
            for i in 0..per {
                let len = 9 + (i % 40);
                let mut msg = vec![p as u8; len];
                msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
                ring.send_many_blocking(&[Message::raw(&msg)], None, &mut shmq_core::Plain)
                    .unwrap();
            }
            Vec::new()
        }));
    }
    for _ in 0..CONSUMERS {
        let r = r.clone();
        handles.push(std::thread::spawn(move || {
            let ring = open(&r);
            let mut got = Vec::new();
            loop {
                let mut batch = Vec::new();
                match ring.recv_many_blocking(
                    7,
                    u64::MAX,
                    Some(Instant::now() + Duration::from_millis(500)),
                    &mut shmq_core::Plain,
                    |m| batch.push(m.to_vec()),
                ) {
                    Ok(_) => got.extend(batch),
                    Err(RecvTimeoutError::Timeout) => return got,
                    Err(e) => panic!("{e:?}"),
                }
            }
        }));
    }
    let mut last: HashMap<u8, Vec<u64>> = HashMap::new();
    for h in handles {
        let mut seen_by_this_consumer: HashMap<u8, u64> = HashMap::new();
        for m in h.join().unwrap() {
            let seq = u64::from_le_bytes(m[..8].try_into().unwrap());
            let p = m[8];
            assert!(m[8..].iter().all(|&b| b == p), "payload corrupted");
            assert_eq!(m.len(), 9 + (seq as usize % 40), "length corrupted");
            // FIFO per producer: one consumer sees a producer's messages in order.
            if let Some(prev) = seen_by_this_consumer.insert(p, seq) {
                assert!(seq > prev, "producer {p}: {seq} after {prev}");
            }
            last.entry(p).or_default().push(seq);
        }
    }
    for (p, mut seqs) in last {
        let n = seqs.len();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), n, "producer {p}: duplicates");
        assert_eq!(n, per, "producer {p}: lost messages");
    }
    drop(ring);
}

#[test]
fn is_full_is_a_query() {
    // `is_full` must not reclaim (move `release`), which only sends do.
    let (_r, ring) = region(4096, 0);
    while ring.try_send(Message::raw(&[1; 100])).is_ok() {}
    assert!(ring.is_full());
    recv(&ring).unwrap();
    let before = ring.stats();
    assert!(
        !ring.is_full(),
        "the consumed record's bytes are free for a send"
    );
    assert_eq!(ring.stats(), before, "is_full changed the ring");
    ring.try_send(Message::raw(&[2; 100])).unwrap();
    assert!(ring.is_full());
}
