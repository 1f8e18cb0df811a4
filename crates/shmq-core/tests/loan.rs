//! Zero-copy sends (loans) and receives (held claims) over heap rings: threads stand in for
//! processes. A loan is written in place and committed or abandoned; a dead lender or holder
//! is repaired like a producer or consumer killed mid-operation.

mod common;

use shmq_core::ring::{
    Delivery, Loan, Message, RecvTimeoutError, Ring, TryReadError, TryRecvError, TrySendError,
};
use shmq_core::{Geometry, HeapBacking, HeapRegion, Plain};
use std::time::{Duration, Instant};

fn region(capacity: u64, maxsize: u64) -> (HeapRegion, Ring<HeapBacking>) {
    let g = Geometry::new(capacity, maxsize, 8, 0, 0x10a7).unwrap();
    let r = HeapRegion::new(g.total_size);
    let ring = Ring::create(r.handle(), g, 0).map_err(|(_, e)| e).unwrap();
    (r, ring)
}

fn open(r: &HeapRegion) -> Ring<HeapBacking> {
    Ring::open(r.handle()).map_err(|(_, e)| e).unwrap()
}

/// Loans `payload.len()` bytes, writes `payload` in place and commits it.
fn send_loaned(ring: &Ring<HeapBacking>, payload: &[u8]) -> Result<(), TrySendError> {
    let loan = ring.try_loan(payload.len() as u64)?;
    write(ring, &loan, payload);
    ring.commit_loan(loan, 7, 0);
    Ok(())
}

fn write(ring: &Ring<HeapBacking>, loan: &Loan, payload: &[u8]) {
    assert_eq!(loan.len(), payload.len());
    // SAFETY: the loan is live and `len` bytes long.
    unsafe {
        let dst = std::slice::from_raw_parts_mut(ring.loan_bytes(loan), loan.len());
        dst.copy_from_slice(payload);
    }
}

fn recv(ring: &Ring<HeapBacking>) -> Result<(u16, Vec<u8>), TryRecvError> {
    ring.try_recv_with(|m| (m.codec, m.to_vec()))
}

fn recv_within(ring: &Ring<HeapBacking>, limit: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
    let mut out = None;
    ring.recv_many_blocking(1, u64::MAX, Some(Instant::now() + limit), &mut Plain, |m| {
        out = Some(m.to_vec())
    })?;
    Ok(out.unwrap())
}

#[test]
fn a_committed_loan_is_one_message_with_its_codec() {
    let (_r, ring) = region(4096, 0);
    send_loaned(&ring, b"written in place").unwrap();
    assert_eq!(recv(&ring), Ok((7, b"written in place".to_vec())));
    assert_eq!(recv(&ring), Err(TryRecvError::Empty));
    assert_eq!(ring.stats().abandoned, 0);
}

#[test]
fn an_abandoned_loan_delivers_nothing_and_the_queue_goes_on() {
    let (_r, ring) = region(4096, 0);
    let loan = ring.try_loan(100).unwrap();
    write(&ring, &loan, &[0xAA; 100]);
    ring.try_send(Message::raw(b"after")).unwrap(); // queued behind the loan
    ring.abandon_loan(loan);
    assert!(!ring.is_empty());
    assert_eq!(
        ring.len(),
        1,
        "the abandoned loan is passed at once: one message left"
    );
    assert_eq!(recv(&ring), Ok((0, b"after".to_vec())));
    assert_eq!(recv(&ring), Err(TryRecvError::Empty));
}

#[test]
fn an_abandoned_loan_leaves_an_empty_queue_empty() {
    let (_r, ring) = region(4096, 0);
    ring.abandon_loan(ring.try_loan(100).unwrap());
    assert!(ring.is_empty());
}

#[test]
fn consumers_wait_behind_a_loan_until_it_is_committed() {
    let (_r, ring) = region(4096, 0);
    let loan = ring.try_loan(8).unwrap();
    ring.try_send(Message::raw(b"second")).unwrap();
    assert_eq!(recv(&ring), Err(TryRecvError::Empty), "head of line");
    write(&ring, &loan, b"first..!");
    ring.commit_loan(loan, 0, 0);
    assert_eq!(recv(&ring).unwrap().1, b"first..!");
    assert_eq!(recv(&ring).unwrap().1, b"second");
}

/// Loans of every size across many laps: each payload is contiguous (a record that would
/// wrap goes to the ring's start behind a filler) and arrives intact and in order.
#[test]
fn loans_never_wrap_and_arrive_intact_across_laps() {
    let (_r, ring) = region(4096, 0);
    let mut expected = std::collections::VecDeque::new();
    for (n, len) in (0..600u64).map(|i| (i, (i * 97) % 1500)) {
        let payload: Vec<u8> = (0..len).map(|k| (k as u8) ^ (n as u8)).collect();
        while let Err(e) = send_loaned(&ring, &payload) {
            assert_eq!(e, TrySendError::Full);
            let got = recv(&ring).unwrap().1;
            assert_eq!(got, expected.pop_front().unwrap());
        }
        expected.push_back(payload);
    }
    while let Some(want) = expected.pop_front() {
        assert_eq!(recv(&ring).unwrap().1, want);
    }
    assert_eq!(recv(&ring), Err(TryRecvError::Empty));
}

#[test]
fn a_loan_larger_than_the_ring_is_refused() {
    let (_r, ring) = region(4096, 0);
    let max = ring.max_payload();
    assert!(matches!(
        ring.try_loan(max + 1),
        Err(TrySendError::TooLarge { .. })
    ));
    // The largest one fits an empty ring, wherever its tail is.
    ring.try_send(Message::raw(&[1; 40])).unwrap();
    recv(&ring).unwrap();
    // It cannot wrap: a filler takes the ring's end, then the loan starts the ring again
    // once the filler is passed, which the producer does itself (there may be no consumer
    // but this thread: it used to get `Full` here, and a blocking loan waited for ever).
    send_loaned(&ring, &vec![9; max as usize]).unwrap();
    assert_eq!(recv(&ring).unwrap().1, vec![9; max as usize]);
}

#[test]
fn a_loan_takes_a_maxsize_permit_and_abandoning_gives_it_back() {
    let (_r, ring) = region(4096, 1);
    let loan = ring.try_loan(10).unwrap();
    assert_eq!(ring.try_send(Message::raw(b"x")), Err(TrySendError::Full));
    ring.abandon_loan(loan);
    // The abandoned record carries the permit back once a consumer passes it.
    assert_eq!(recv(&ring), Err(TryRecvError::Empty));
    ring.try_send(Message::raw(b"y")).unwrap();
    assert_eq!(recv(&ring).unwrap().1, b"y");
}

/// Loans and holds keep lanes: at most three at once per attachment, and lane 0 stays for
/// the bounded sends and receives of the other threads.
#[test]
fn long_operations_leave_a_lane_for_everybody_else() {
    let (_r, ring) = region(1 << 16, 0);
    let loans: Vec<Loan> = (0..3).map(|_| ring.try_loan(16).unwrap()).collect();
    assert_eq!(ring.try_loan(16), Err(TrySendError::Busy));
    ring.try_send(Message::raw(b"still possible")).unwrap();
    for l in loans {
        write(&ring, &l, &[5; 16]);
        ring.commit_loan(l, 0, 0);
    }
    let mut got = Vec::new();
    while let Ok((_, m)) = recv(&ring) {
        got.push(m);
    }
    assert_eq!(got.len(), 4);
    assert_eq!(got.last().unwrap(), b"still possible");
}

#[test]
fn a_producer_killed_holding_a_loan_is_repaired_as_an_abandoned_send() {
    let (r, ring) = region(4096, 3);
    ring.try_send(Message::raw(b"before")).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let victim = open(&r);
            let loan = victim.try_loan(64).unwrap();
            write(&victim, &loan, &[0xEE; 64]);
            let _ = loan; // killed before committing: never committed nor abandoned
            victim.backing().die();
            common::bury(victim);
        });
    });
    ring.try_send(Message::raw(b"after")).unwrap();
    assert_eq!(
        recv_within(&ring, Duration::from_secs(5)).unwrap(),
        b"before"
    );
    assert_eq!(
        recv_within(&ring, Duration::from_secs(5)).unwrap(),
        b"after"
    );
    let s = ring.stats();
    assert_eq!((s.abandoned, s.reaped), (1, 1));
    // Its permit came back: three messages fit again under maxsize 3.
    for m in [b"1", b"2", b"3"] {
        ring.try_send(Message::raw(m)).unwrap();
    }
    assert_eq!(ring.try_send(Message::raw(b"4")), Err(TrySendError::Full));
}

#[test]
fn a_held_claim_is_read_in_place_and_consumed_on_release() {
    let (_r, ring) = region(4096, 0);
    ring.try_send(Message::raw(b"held")).unwrap();
    ring.try_send(Message::raw(b"next")).unwrap();
    let claim = ring.try_claim_held().unwrap();
    // SAFETY: the claim is live.
    let (a, b) = unsafe { ring.claim_payload(&claim) };
    assert_eq!([&a[..], &b[..]].concat(), b"held");
    // Later messages are not held back by the hold.
    assert_eq!(recv(&ring).unwrap().1, b"next");
    ring.release_claim(claim);
    assert_eq!(recv(&ring), Err(TryRecvError::Empty));
    assert_eq!(ring.stats().lost, 0);
}

#[test]
fn a_held_record_is_not_reclaimed_until_released() {
    let (_r, ring) = region(4096, 0);
    ring.try_send(Message::raw(&[1; 1000])).unwrap();
    let claim = ring.try_claim_held().unwrap();
    // Fill the rest of the ring and drain it: the space behind the hold stays taken.
    let mut sent = 0;
    while ring.try_send(Message::raw(&[2; 1000])).is_ok() {
        sent += 1;
    }
    while recv(&ring).is_ok() {}
    assert_eq!(
        ring.try_send(Message::raw(&[3; 1000])),
        Err(TrySendError::Full)
    );
    // SAFETY: the claim is live.
    let (a, b) = unsafe { ring.claim_payload(&claim) };
    assert_eq!(
        [&a[..], &b[..]].concat(),
        vec![1; 1000],
        "intact after {sent}"
    );
    ring.release_claim(claim);
    ring.try_send(Message::raw(&[3; 1000])).unwrap();
}

#[test]
fn a_consumer_killed_holding_a_claim_loses_that_message_and_frees_the_space() {
    let (r, ring) = region(4096, 1);
    ring.try_send(Message::raw(&[4; 3000])).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let victim = open(&r);
            let claim = victim.try_claim_held().unwrap();
            let _ = claim; // killed while holding it: never released
            victim.backing().die();
            common::bury(victim);
        });
    });
    // The ring is full behind the dead hold until a reap repairs it: a blocking send gets
    // through (its stuck poll finds the dead process).
    ring.send_many_blocking(
        &[Message::raw(&[5; 3000])],
        Some(Instant::now() + Duration::from_secs(5)),
        &mut Plain,
    )
    .unwrap();
    assert_eq!(recv(&ring).unwrap().1, vec![5; 3000]);
    let s = ring.stats();
    assert_eq!((s.lost, s.reaped), (1, 1));
}

#[test]
fn a_broadcast_loan_reaches_every_subscriber() {
    let g = Geometry::new(4096, 0, 8, 0, 0xB0AD).unwrap().broadcast();
    let r = HeapRegion::new(g.total_size);
    let publisher = Ring::create(r.handle(), g, 0).map_err(|(_, e)| e).unwrap();
    let subs: Vec<_> = (0..2)
        .map(|_| {
            let s = open(&r);
            s.subscribe();
            s
        })
        .collect();
    for i in 0..50u8 {
        let payload = vec![i; 100 + usize::from(i) * 7];
        let loan = publisher.try_loan(payload.len() as u64).unwrap();
        write(&publisher, &loan, &payload);
        publisher.commit_loan(loan, 0, 0);
        for s in &subs {
            let mut got = Vec::new();
            s.try_read_many_with(1, |d| {
                if let Delivery::Message(m) = d {
                    got = m.to_vec();
                }
            })
            .unwrap();
            assert_eq!(got, payload);
        }
    }
    assert!(matches!(
        subs[0].try_read_many_with(1, |_| {}),
        Err(TryReadError::Empty)
    ));
}
