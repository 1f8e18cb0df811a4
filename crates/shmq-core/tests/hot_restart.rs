//! A queue whose consumers have caught up starts its next records at the start of the next
//! lap (a skip record passes over the rest of the ring), so a big ring reuses the bytes it
//! just read, which are hot in cache, instead of cycling through all of its memory.

mod common;

use shmq_core::ring::crash::{arm, CrashPoint};
use shmq_core::ring::{Message, Ring, TryRecvError};
use shmq_core::{Geometry, HeapBacking, HeapRegion};

const CAP: u64 = 8 << 20;
/// Payload of the messages here: two of them stay below the hot span (1 MiB, `HOT_SPAN` in
/// ring/send.rs), a third is past it.
const BIG: usize = 600 << 10;
/// Bytes a BIG record takes (16-byte header, payload padded to 16).
const REC: u64 = 16 + BIG as u64;

fn region(maxsize: u64) -> (HeapRegion, Ring<HeapBacking>) {
    let g = Geometry::new(CAP, maxsize, 8, 0, 0x407).unwrap();
    assert_eq!(g.capacity, CAP);
    let r = HeapRegion::new(g.total_size);
    let ring = Ring::create(r.handle(), g, 0).map_err(|(_, e)| e).unwrap();
    (r, ring)
}

fn msg(i: u8) -> Vec<u8> {
    vec![i; BIG]
}

fn recv(ring: &Ring<HeapBacking>) -> Vec<u8> {
    ring.try_recv_with(|m| m.to_vec()).unwrap()
}

#[test]
fn a_drained_queue_starts_the_next_lap_instead_of_going_on() {
    let (_r, ring) = region(0);
    for i in 0..2 {
        ring.try_send(Message::raw(&msg(i))).unwrap();
        assert_eq!(recv(&ring), msg(i));
    }
    assert_eq!(ring.stats().tail, 2 * REC, "below the hot span: no skip");
    ring.try_send(Message::raw(&msg(2))).unwrap();
    assert_eq!(
        ring.stats().tail,
        CAP + REC,
        "the third record starts the next lap"
    );
    assert_eq!(recv(&ring), msg(2));
    assert_eq!(ring.try_recv_with(|_| ()).unwrap_err(), TryRecvError::Empty);
    assert_eq!(
        ring.stats().abandoned,
        0,
        "a skip is not an abandoned message"
    );
    // And it goes on: many laps' worth of messages, all delivered in order.
    for i in 3..100u8 {
        ring.try_send(Message::raw(&msg(i))).unwrap();
        assert_eq!(recv(&ring), msg(i));
    }
    assert!(
        ring.stats().tail > 30 * CAP,
        "every third record skips a lap"
    );
}

#[test]
fn unread_records_at_the_start_of_the_lap_keep_the_records_in_place() {
    let (_r, ring) = region(0);
    for i in 0..3 {
        ring.try_send(Message::raw(&msg(i))).unwrap();
    }
    assert_eq!(
        ring.stats().tail,
        3 * REC,
        "the consumer is behind: no skip"
    );
    for i in 0..3 {
        assert_eq!(recv(&ring), msg(i));
    }
}

#[test]
fn a_batch_after_a_skip_arrives_whole_and_in_order_with_exact_counts() {
    let (_r, ring) = region(10);
    for i in 0..2 {
        ring.try_send(Message::raw(&msg(i))).unwrap();
        assert_eq!(recv(&ring), msg(i));
    }
    // (A batch bigger than the bytes before it would not skip: they could not hold it.)
    let batch: Vec<Vec<u8>> = (2..4).map(msg).collect();
    let msgs: Vec<Message<'_>> = batch.iter().map(|b| Message::raw(b)).collect();
    ring.try_send_many(&msgs).unwrap();
    assert_eq!(ring.stats().tail, CAP + 2 * REC);
    assert_eq!(ring.len(), 2, "the skip carries no permit");
    let mut got = Vec::new();
    assert_eq!(ring.try_recv_many_with(10, |m| got.push(m.to_vec())), Ok(2));
    assert_eq!(got, batch);
    assert_eq!(ring.len(), 0);
}

#[test]
fn a_producer_killed_around_its_skip_is_repaired() {
    for point in [CrashPoint::BeforeSkip, CrashPoint::AfterReserve] {
        let (r, ring) = region(4);
        for i in 0..2 {
            ring.try_send(Message::raw(&msg(i))).unwrap();
            assert_eq!(recv(&ring), msg(i));
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                let victim = Ring::open(r.handle()).map_err(|(_, e)| e).unwrap();
                arm(point);
                let _ = victim.try_send(Message::raw(&msg(9)));
                victim.backing().die();
                common::bury(victim);
            });
        });
        assert_eq!(
            ring.stats().tail,
            CAP + REC,
            "{point:?}: the victim reserved a skip"
        );
        // The consumer finds the dead reservation, repairs it and gets past it.
        ring.try_send(Message::raw(&msg(3))).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let got = loop {
            match ring.try_recv_with(|m| m.to_vec()) {
                Ok(v) => break v,
                Err(TryRecvError::Empty) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("{point:?}: {e:?}"),
            }
        };
        assert_eq!(got, msg(3), "{point:?}");
        assert_eq!(ring.stats().abandoned, 1, "{point:?}");
        assert_eq!(
            ring.len(),
            0,
            "{point:?}: the dead producer's permit came back"
        );
        for i in 4..40u8 {
            ring.try_send(Message::raw(&msg(i))).unwrap();
            assert_eq!(recv(&ring), msg(i), "{point:?}");
        }
    }
}

#[test]
fn a_backlog_keeps_the_records_in_place_and_its_room() {
    // Skipped bytes stay taken until the consumer passes them: with records waiting, a skip
    // would take the room the backlog needs.
    let (_r, ring) = region(0);
    for i in 0..5 {
        ring.try_send(Message::raw(&msg(i))).unwrap();
    }
    for i in 0..2 {
        assert_eq!(recv(&ring), msg(i));
    }
    ring.try_send(Message::raw(&msg(5))).unwrap();
    assert_eq!(ring.stats().tail, 6 * REC, "three records unread: no skip");
    for i in 2..6 {
        assert_eq!(recv(&ring), msg(i));
    }
}

#[test]
fn small_messages_skip_too_once_past_their_span() {
    // Records under 64 KiB use a 4 MiB span (the default capacity: a default ring of small
    // messages never skips) and look for a skip only where they cross a quarter of it, so
    // the skip comes within a quarter span (1 MiB) past 4 MiB.
    let (_r, ring) = region(0);
    let small = [7u8; 64];
    let mut before = 0;
    for _ in 0..80_000 {
        ring.try_send(Message::raw(&small)).unwrap();
        assert_eq!(recv(&ring), small);
        let tail = ring.stats().tail;
        if tail > CAP {
            assert_eq!(tail, CAP + 80, "the record after the skip starts the lap");
            let window = (4 << 20)..(5 << 20) + 80;
            assert!(window.contains(&before), "skipped at {before}");
            return;
        }
        before = tail;
    }
    panic!("no skip after {before} bytes");
}
