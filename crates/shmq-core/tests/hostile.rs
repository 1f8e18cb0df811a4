//! Shared memory is untrusted input: a segment whose bytes are garbage, or a valid queue that
//! a buggy process scribbles on mid-flight, must give clear errors (or skip and count bad
//! records), never a panic, an out-of-bounds access or a hang. Property tests over segment
//! bytes (proptest); run longer with `PROPTEST_CASES=100000 cargo test -p shmq-core --test
//! hostile --release`.

use proptest::prelude::*;
use shmq_core::layout::{control_size, Identity, LANES};
use shmq_core::ring::{AttachError, Message, Ring};
use shmq_core::{Backing, Geometry, HeapBacking, HeapRegion};

const CAPACITY: u64 = 4096;

fn fresh(maxsize: u64) -> (HeapRegion, Ring<HeapBacking>, Geometry) {
    let g = Geometry::new(CAPACITY, maxsize, 4, 0, 0xFACE).unwrap();
    let r = HeapRegion::new(g.total_size);
    let ring = Ring::create(r.handle(), g, 0).map_err(|(_, e)| e).unwrap();
    (r, ring, g)
}

fn poke(b: &HeapBacking, offset: u64, bytes: &[u8]) {
    let end = (offset as usize + bytes.len()).min(b.size() as usize);
    let n = end.saturating_sub(offset as usize);
    // SAFETY: the range is clamped inside the region; the test is single-threaded here, and
    // scribbling on the segment is the point of the test.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), b.base().add(offset as usize), n) };
}

/// Every operation must return: run each a bounded number of times.
fn exercise(ring: &Ring<HeapBacking>) {
    for i in 0..20u8 {
        let payload = vec![i; usize::from(i) * 37];
        let _ = ring.try_send(Message::raw(&payload));
        let _ = ring.try_send_many(&[Message::raw(b"a"), Message::raw(&payload)]);
        let _ = ring.try_recv_with(|m| {
            let v = m.to_vec();
            assert!(v.len() as u64 <= CAPACITY, "a payload longer than the ring");
        });
        let _ = ring.try_recv_many_with(5, |m| assert!(m.len() as u64 <= CAPACITY));
        let _ = ring.len();
        let _ = ring.is_full();
        let _ = ring.is_empty();
        let _ = ring.stats();
    }
    let _ = ring.reap_dead();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    /// Any bytes where a header should be: open gives an error or a valid geometry.
    #[test]
    fn garbage_headers_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..4096usize), extra in 0u64..100_000) {
        let len = (bytes.len() as u64).max(control_size()) + extra;
        let r = HeapRegion::new(len.div_ceil(4096) * 4096);
        let h = r.handle();
        poke(&h, 0, &bytes);
        match Ring::open(h) {
            Ok(ring) => exercise(&ring),
            Err((_, AttachError::NotReady | AttachError::Layout(_) | AttachError::NoFreeSlot { .. })) => {}
            Err((_, e)) => prop_assert!(false, "unexpected {e:?}"),
        }
    }

    /// A valid identity with one field changed: refused or consistent.
    #[test]
    fn one_bad_identity_field_is_refused(field in 0usize..14, value in any::<u64>()) {
        let g = Geometry::new(CAPACITY, 0, 4, 0, 1).unwrap();
        let id = Identity::default();
        g.write(&id, 0);
        let r = HeapRegion::new(g.total_size);
        let h = r.handle();
        // Serialise the identity, change one 8-byte word, write it back.
        // SAFETY: `Identity` is plain atomics (repr C); reading its bytes is reading u64s.
        let mut raw: Vec<u8> = unsafe {
            std::slice::from_raw_parts(&id as *const Identity as *const u8, std::mem::size_of::<Identity>())
        }.to_vec();
        let off = (field * 8).min(raw.len() - 8);
        raw[off..off + 8].copy_from_slice(&value.to_le_bytes());
        poke(&h, 0, &raw);
        poke(&h, 88, &1u32.to_le_bytes()); // ready
        if let Ok(ring) = Ring::open(h) {
            exercise(&ring);
        }
    }

    /// A live queue scribbled on anywhere outside the identity and outside our own slot's
    /// lanes (a thread of ours would be blocked on them, which is not a protocol question):
    /// operations keep returning, payloads never exceed the ring.
    #[test]
    fn scribbles_on_a_live_queue_never_crash_or_hang(
        maxsize in 0u64..4,
        writes in proptest::collection::vec((any::<u64>(), proptest::collection::vec(any::<u8>(), 1..24)), 1..12),
    ) {
        let (r, ring, g) = fresh(maxsize);
        let other = Ring::open(r.handle()).map_err(|(_, e)| e).unwrap();
        for i in 0..6u8 {
            let _ = ring.try_send(Message::raw(&vec![i; usize::from(i) * 100]));
        }
        let _ = other.try_recv_with(|_| ());
        let own = g.slots_offset + u64::from(ring.slot_index()) * shmq_core::layout::slot_size();
        let own_lanes = own + 64..own + 64 + 64 * LANES as u64;
        for (offset, bytes) in &writes {
            let offset = 128 + offset % (g.total_size - 128);
            if own_lanes.contains(&offset) || own_lanes.contains(&(offset + bytes.len() as u64)) {
                continue;
            }
            poke(ring.backing(), offset, bytes);
        }
        exercise(&ring);
        exercise(&other);
    }
}

/// Regression (found by `scribbles_on_a_live_queue_never_crash_or_hang` in CI): per-process
/// counters near `u64::MAX` in two slots made `stats()`/`len()` overflow (a panic in debug).
#[test]
fn huge_counters_in_slots_do_not_overflow() {
    let (r, ring, g) = fresh(0);
    let other = Ring::open(r.handle()).map_err(|(_, e)| e).unwrap();
    for slot in 0..2u64 {
        let counters = g.slots_offset
            + slot * shmq_core::layout::slot_size()
            + core::mem::offset_of!(shmq_core::layout::Slot, counters) as u64;
        poke(ring.backing(), counters, &[0xFF; 24]);
    }
    let _ = ring.stats();
    let _ = ring.len();
    let _ = other.stats();
}

/// Regression: `count` read from shared memory was summed unchecked (`cur + n` in
/// `take_permits` and `space_ready`): a count near `u64::MAX` panicked in debug builds. A
/// count no process can produce is now reported as corruption, by blocking sends too.
#[test]
fn a_scribbled_message_count_is_corruption_not_a_panic() {
    use shmq_core::layout::Control;
    use shmq_core::ring::{SendTimeoutError, TrySendError};
    for bad in [u64::MAX, u64::MAX - 1, 1 << 40] {
        let (_r, ring, _g) = fresh(4);
        poke(
            ring.backing(),
            core::mem::offset_of!(Control, count) as u64,
            &bad.to_le_bytes(),
        );
        let e = ring.try_send(Message::raw(b"x"));
        assert!(matches!(e, Err(TrySendError::Corrupted(_))), "{e:?}");
        assert!(ring.is_full(), "no send can succeed");
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let e = ring.send_many_blocking(&[Message::raw(b"x")], Some(until), &mut shmq_core::Plain);
        assert!(matches!(e, Err(SendTimeoutError::Corrupted(_))), "{e:?}");
    }
}

/// Regression: the permits an `ABANDONED` record carries come from shared memory; a
/// consumer that skips a scribbled one returned them with a wrapping `fetch_sub`, turning
/// `count` into "full forever". Returns now stop at 0.
#[test]
fn permits_of_a_scribbled_abandoned_record_do_not_wrap_the_count() {
    use shmq_core::layout::{pack_meta, ABANDONED};
    let (_r, ring, g) = fresh(4);
    ring.try_send(Message::raw(b"a")).unwrap(); // a 32-byte record at position 0
    let stamp = g.tag(0) | ABANDONED;
    poke(ring.backing(), g.data_offset, &stamp.to_le_bytes());
    let meta = pack_meta(32, u16::MAX, u16::MAX); // u32::MAX permits
    poke(ring.backing(), g.data_offset + 8, &meta.to_le_bytes());
    assert!(ring.try_recv_with(|_| ()).is_err(), "nothing to deliver");
    assert_eq!(ring.len(), 0);
    for _ in 0..4 {
        ring.try_send(Message::raw(b"b")).unwrap();
    }
    assert_eq!(
        ring.try_send(Message::raw(b"b")),
        Err(shmq_core::ring::TrySendError::Full)
    );
}
