//! Shared memory is untrusted input: a segment whose bytes are garbage, or a valid queue that
//! a buggy process scribbles on mid-flight, must give clear errors (or skip and count bad
//! records), never a panic, an out-of-bounds access or a hang. Property tests over segment
//! bytes (proptest); run longer with `PROPTEST_CASES=100000 cargo test -p shmq-core --test
//! hostile --release`.
//!
//! Every offset into the segment is derived with `offset_of!` from the `#[repr(C)]` structs
//! in `layout/`, never written as a number.

use core::mem::{offset_of, size_of};
use proptest::prelude::*;
use shmq_core::layout::{
    control_size, slot_size, Control, Identity, Lane, LayoutError, Padded, Slot, SlotCounters,
    KIND_BROADCAST, KIND_QUEUE, LANES, LAYOUT_VERSION, MAGIC, PAGE,
};
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

fn peek(b: &HeapBacking, offset: u64, width: usize) -> u64 {
    assert!(width <= 8 && offset as usize + width <= b.size() as usize);
    let mut v = [0u8; 8];
    // SAFETY: the range is inside the region (asserted); single-threaded here.
    unsafe { std::ptr::copy_nonoverlapping(b.base().add(offset as usize), v.as_mut_ptr(), width) };
    u64::from_le_bytes(v)
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

// ---------------------------------------------------------------------------------------
// The identity, field by field.
// ---------------------------------------------------------------------------------------

/// One field of [`Identity`] in the segment.
#[derive(Clone, Copy, Debug)]
struct Field {
    name: &'static str,
    /// Offset from the start of the segment.
    offset: u64,
    /// Bytes (4 or 8).
    width: usize,
}

fn width_of<T>(_: impl Fn(&Identity) -> &T) -> usize {
    size_of::<T>()
}

/// Offset of the identity in the segment.
const IDENTITY: usize = offset_of!(Control, id) + offset_of!(Padded<Identity>, 0);

macro_rules! identity_fields {
    ($($f:ident),* $(,)?) => {{
        // No `..`: this stops compiling when a field is added to `Identity` and not here.
        let Identity { $($f: _),* } = Identity::default();
        [$(Field {
            name: stringify!($f),
            offset: (IDENTITY + offset_of!(Identity, $f)) as u64,
            width: width_of(|i: &Identity| &i.$f),
        }),*]
    }};
}

/// Every field of [`Identity`], in declaration order.
fn identity_fields() -> [Field; 14] {
    identity_fields!(
        magic,
        version,
        kind,
        total_size,
        slots_offset,
        data_offset,
        capacity,
        maxsize,
        nonce,
        max_slots,
        flags,
        ready,
        lanes,
        created_ns,
    )
}

fn field(name: &str) -> Field {
    *identity_fields()
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no identity field {name}"))
}

/// The fields tile the identity: each starts where the previous one ends, from 0 to
/// `size_of::<Identity>()` (so the list misses no bytes, and no field is written as padding).
#[test]
fn identity_fields_tile_the_identity() {
    let mut end = IDENTITY as u64;
    for f in identity_fields() {
        assert_eq!(f.offset, end, "{f:?} does not follow the previous field");
        assert!(f.width == 4 || f.width == 8, "{f:?}");
        end += f.width as u64;
    }
    assert_eq!(end, (IDENTITY + size_of::<Identity>()) as u64);
}

/// A region of `len` bytes holding the identity a creator writes for `g`, with `ready` still
/// 0 and nobody attached.
fn written(g: &Geometry, len: u64) -> HeapRegion {
    let id = Identity::default();
    g.write(&id, 0x1234_5678);
    // SAFETY: `Identity` is `#[repr(C)]` atomics without padding (see
    // `identity_fields_tile_the_identity`); nothing writes `id` while its bytes are read.
    let raw = unsafe {
        std::slice::from_raw_parts(&id as *const Identity as *const u8, size_of::<Identity>())
    };
    let r = HeapRegion::new(len);
    poke(&r.handle(), IDENTITY as u64, raw);
    r
}

fn set(b: &HeapBacking, name: &str, v: u64) {
    let f = field(name);
    poke(b, f.offset, &v.to_le_bytes()[..f.width]);
}

fn truncate(v: u64, width: usize) -> u64 {
    if width == 4 {
        v & u64::from(u32::MAX)
    } else {
        v
    }
}

/// What opening a segment must do.
#[derive(Debug, PartialEq)]
enum Expect {
    Opens(Geometry),
    /// `AttachError::Layout(_)`.
    Refused,
    NotReady,
}

/// What opening the segment of `g` must do once identity field `f` holds `v` (and, unless `f`
/// is `ready`, `ready` is 1). Written from the layout's rules, independently of
/// `Geometry::read`.
fn expected(g: &Geometry, f: &Field, v: u64, original: u64) -> Expect {
    let broadcast = g.kind == KIND_BROADCAST;
    let mut e = *g;
    let accepted = match f.name {
        "magic" => v == MAGIC,
        "version" => v == u64::from(LAYOUT_VERSION),
        "kind" => {
            e.kind = v as u32;
            // A queue may have a message bound, a broadcast ring may not.
            v == u64::from(KIND_QUEUE) || (v == u64::from(KIND_BROADCAST) && g.maxsize == 0)
        }
        "total_size" | "slots_offset" | "data_offset" | "capacity" => v == original,
        "maxsize" => {
            e.maxsize = v;
            !broadcast || v == 0
        }
        "max_slots" => {
            e.max_slots = v as u32;
            v >= 1 && control_size() + v * slot_size() <= g.data_offset
        }
        "lanes" => v == LANES as u64,
        "ready" if v != 1 => return Expect::NotReady,
        "nonce" => {
            e.nonce = v;
            true
        }
        "flags" => {
            e.flags = v as u32;
            true
        }
        "ready" | "created_ns" => true,
        other => panic!("no rule for identity field {other}"),
    };
    if accepted {
        Expect::Opens(e)
    } else {
        Expect::Refused
    }
}

/// Writes the identity of `g`, sets field `f` to `v`, sets `ready` (unless `f` is `ready`),
/// opens, and checks the outcome against [`expected`]. Returns the outcome.
fn open_with_one_field(g: &Geometry, f: &Field, v: u64) -> Result<Expect, TestCaseError> {
    let r = written(g, g.total_size);
    let h = r.handle();
    let original = peek(&h, f.offset, f.width);
    let v = truncate(v, f.width);
    poke(&h, f.offset, &v.to_le_bytes()[..f.width]);
    if f.name != "ready" {
        set(&h, "ready", 1);
    }
    let want = expected(g, f, v, original);
    let got = match Ring::open(h) {
        Ok(ring) => {
            let got = Expect::Opens(*ring.geometry());
            if got == want {
                exercise(&ring);
            }
            got
        }
        Err((_, AttachError::NotReady)) => Expect::NotReady,
        Err((_, AttachError::Layout(_))) => Expect::Refused,
        Err((_, e)) => {
            let why = format!("{}: {original:#x} -> {v:#x}: {e:?}", f.name);
            return Err(TestCaseError::fail(why));
        }
    };
    prop_assert_eq!(&got, &want, "{}: {:#x} -> {:#x}", f.name, original, v);
    Ok(got)
}

/// The identity tests run on a queue with a message bound and on a broadcast ring.
fn base_geometries() -> [Geometry; 2] {
    let queue = Geometry::new(CAPACITY, 3, 4, 0, 0x1D).unwrap();
    [
        queue,
        Geometry::new(CAPACITY, 0, 4, 0, 0x1D).unwrap().broadcast(),
    ]
}

/// Candidate values for a field that held `original`: the original, its neighbours at the
/// layout's granularities, and values that are valid for some other field.
fn interesting(original: u64) -> Vec<u64> {
    let mut v = vec![
        0,
        1,
        2,
        7,
        8,
        u64::from(u32::MAX),
        u64::MAX,
        MAGIC,
        u64::from(LAYOUT_VERSION),
        u64::from(KIND_QUEUE),
        u64::from(KIND_BROADCAST),
        LANES as u64,
    ];
    for d in [0, 1, 16, slot_size(), PAGE, CAPACITY] {
        v.push(original.wrapping_add(d));
        v.push(original.wrapping_sub(d));
    }
    v
}

/// Each identity field, set to each of a list of values: the segment opens exactly when the
/// layout's rules allow that value (and then with that geometry), else it is refused.
#[test]
fn every_identity_field_is_validated() {
    for g in base_geometries() {
        for f in identity_fields() {
            let original = peek(&written(&g, g.total_size).handle(), f.offset, f.width);
            let (mut opened, mut refused) = (0, 0);
            for v in interesting(original) {
                match open_with_one_field(&g, &f, v) {
                    Ok(Expect::Opens(_)) => opened += 1,
                    Ok(_) => refused += 1,
                    Err(e) => panic!("kind {}: {e}", g.kind),
                }
            }
            // The unchanged identity opens: `ready` really was set, validation was reached.
            assert!(opened > 0, "{}: nothing opened", f.name);
            let free = ["nonce", "flags", "created_ns"]; // no rule constrains these
            let unconstrained = free.contains(&f.name) || (f.name == "maxsize" && g.maxsize > 0);
            assert_eq!(refused == 0, unconstrained, "{}: {refused} refused", f.name);
        }
    }
}

/// Identity fields to set, by name.
type Fields<'a> = &'a [(&'static str, u64)];

/// Identities whose fields agree with each other except for one rule each (so no other check
/// refuses them first): each must be refused, for that rule. `capacity > MAX_CAPACITY` is
/// missing: consistent, it needs a 1 TiB region.
#[test]
fn consistent_geometries_breaking_one_rule_are_refused() {
    let g = Geometry::new(2 * CAPACITY, 0, 4, 0, 0x1D).unwrap();
    assert_eq!((g.data_offset, g.capacity), (PAGE, 2 * CAPACITY));
    let (d, total) = (g.data_offset, g.total_size);
    // (rule, region length, fields to set)
    let cases: &[(&str, u64, Fields<'_>)] = &[
        // The identity describes a segment larger than the region: the data ring would run
        // past its end.
        (
            "total size differs from the segment size",
            total - PAGE,
            &[],
        ),
        (
            "capacity",
            total + 8,
            &[("capacity", g.capacity + 8), ("total_size", total + 8)],
        ),
        (
            "capacity",
            d + 2048,
            &[("capacity", 2048), ("total_size", d + 2048)],
        ),
        (
            "a broadcast ring has no message bound",
            total,
            &[("kind", KIND_BROADCAST as u64), ("maxsize", 1)],
        ),
        ("slot count", total, &[("max_slots", 0)]),
        ("slot table offset", total, &[("slots_offset", 0)]),
        ("slot table offset", total, &[("slots_offset", 1024)]),
        // The data ring would overlap the control block and the slot table.
        (
            "data offset",
            total,
            &[("data_offset", 0), ("capacity", total)],
        ),
        // A data ring not page aligned.
        (
            "data offset",
            total,
            &[("data_offset", d + 2048), ("capacity", g.capacity - 2048)],
        ),
        // `data_offset + capacity` wraps around to `total_size`.
        (
            "data ring exceeds the segment",
            total,
            &[
                ("data_offset", total.wrapping_sub(total + PAGE)),
                ("capacity", total + PAGE),
            ],
        ),
    ];
    for &(rule, len, fields) in cases {
        let r = written(&g, len);
        let h = r.handle();
        for &(name, v) in fields {
            set(&h, name, v);
        }
        set(&h, "ready", 1);
        match Ring::open(h) {
            Err((_, AttachError::Layout(LayoutError::Corrupted(why)))) => {
                assert_eq!(
                    why, rule,
                    "{fields:?} in {len} bytes refused for another rule"
                )
            }
            Err((_, e)) => panic!("{fields:?} in {len} bytes: {e:?}, expected {rule:?}"),
            Ok(ring) => panic!(
                "{fields:?} in {len} bytes opened as {:?}, expected {rule:?}",
                ring.geometry()
            ),
        }
    }
}

/// Offsets of the lanes of `ring`'s own slot.
fn own_lanes(ring: &Ring<HeapBacking>) -> std::ops::Range<u64> {
    let g = ring.geometry();
    let start = g.slots_offset
        + u64::from(ring.slot_index()) * slot_size()
        + offset_of!(Slot, lanes) as u64;
    start..start + (LANES * size_of::<Lane>()) as u64
}

/// A value for a field, relative to what it held.
#[derive(Clone, Debug)]
enum Val {
    Any(u64),
    Delta(i64),
    Small(u64),
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        any::<u64>().prop_map(Val::Any),
        prop_oneof![-64i64..64, (-8i64..8).prop_map(|k| k * PAGE as i64)].prop_map(Val::Delta),
        (0u64..16).prop_map(Val::Small),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    /// Any bytes where a header should be: open gives an error or a valid geometry. `stamp`
    /// makes the garbage pass the first checks (`ready`, then magic and version, then kind
    /// and lanes), so the later ones see garbage too.
    #[test]
    fn garbage_headers_are_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096usize),
        extra in 0u64..100_000,
        stamp in 0u8..4,
    ) {
        let len = (bytes.len() as u64).max(control_size()) + extra;
        let len = len.div_ceil(4096) * 4096;
        let r = HeapRegion::new(len);
        let h = r.handle();
        poke(&h, 0, &bytes);
        if stamp >= 1 {
            set(&h, "ready", 1);
        }
        if stamp >= 2 {
            set(&h, "magic", MAGIC);
            set(&h, "version", u64::from(LAYOUT_VERSION));
        }
        if stamp >= 3 {
            set(&h, "kind", u64::from(KIND_QUEUE));
            set(&h, "lanes", LANES as u64);
        }
        match Ring::open(h) {
            Ok(ring) => {
                let g = *ring.geometry();
                prop_assert_eq!(g.total_size, len);
                prop_assert_eq!(g.slots_offset, control_size());
                prop_assert!(g.max_slots >= 1);
                prop_assert!(g.slots_offset + u64::from(g.max_slots) * slot_size() <= g.data_offset);
                prop_assert_eq!(g.data_offset.checked_add(g.capacity), Some(len));
                exercise(&ring);
            }
            Err((_, AttachError::NotReady)) => prop_assert!(stamp < 1, "NotReady with ready = 1"),
            Err((_, AttachError::Layout(LayoutError::BadMagic | LayoutError::VersionMismatch { .. }))) => {
                prop_assert!(stamp < 2, "magic and version are valid")
            }
            Err((_, AttachError::Layout(LayoutError::WrongKind { .. }))) => {
                prop_assert!(stamp < 3, "the kind is valid")
            }
            Err((_, AttachError::Layout(LayoutError::Corrupted(_)) | AttachError::NoFreeSlot { .. })) => {}
            Err((_, e)) => prop_assert!(false, "unexpected {e:?}"),
        }
    }

    /// A valid identity with one field changed: refused, or opened with exactly the geometry
    /// that field now describes (see [`expected`]); for every field in turn.
    #[test]
    fn one_bad_identity_field_is_refused(broadcast in any::<bool>(), v in val()) {
        let g = base_geometries()[usize::from(broadcast)];
        for f in identity_fields() {
            let original = peek(&written(&g, g.total_size).handle(), f.offset, f.width);
            let v = match v {
                Val::Any(v) | Val::Small(v) => v,
                Val::Delta(d) => original.wrapping_add_signed(d),
            };
            open_with_one_field(&g, &f, v)?;
        }
    }

    /// A live queue scribbled on anywhere outside the identity and outside the lanes of the
    /// slots this test holds (a thread of ours would be blocked on them, which is not a
    /// protocol question): operations keep returning, payloads never exceed the ring.
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
        let held = [own_lanes(&ring), own_lanes(&other)];
        let after_identity = offset_of!(Control, tail) as u64;
        assert!(after_identity >= (IDENTITY + size_of::<Identity>()) as u64);
        for (offset, bytes) in &writes {
            let offset = after_identity + offset % (g.total_size - after_identity);
            let end = offset + bytes.len() as u64;
            if held.iter().any(|l| offset < l.end && l.start < end) {
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
        let counters = g.slots_offset + slot * slot_size() + offset_of!(Slot, counters) as u64;
        for field in [
            offset_of!(SlotCounters, puts),
            offset_of!(SlotCounters, gets),
            offset_of!(SlotCounters, waits),
        ] {
            poke(ring.backing(), counters + field as u64, &[0xFF; 8]);
        }
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
