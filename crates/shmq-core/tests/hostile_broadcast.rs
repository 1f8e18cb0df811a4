//! Broadcast rings over untrusted shared memory, and their delivery guarantees.
//!
//! * `scribbles_on_a_live_broadcast_ring_never_crash_or_hang`: a live broadcast ring (a
//!   publisher, one or two subscribers, both policies) is scribbled on (random bytes
//!   anywhere, and targeted values in the subscribers' `cursor`/`missed`, in `Control`, in
//!   slot states and in record headers of the data ring); every operation must then keep
//!   returning (errors are fine), and payloads never exceed the ring.
//! * `block_policy_delivers_everything_in_order` / `lag_policy_accounts_for_every_message`:
//!   without corruption, random interleavings of publishing, reading, subscribing and
//!   unsubscribing against a model.
//!
//! Run longer with `PROPTEST_CASES=20000 cargo test -p shmq-core --test hostile_broadcast
//! --release`.

use proptest::prelude::*;
use shmq_core::layout::{
    record_size, slot_size, Cell, Control, Event, Identity, Lane, Padded, Slot, Totals, ABANDONED,
    COMMITTED, CONSUMED, FLAG_LAG, LANES, NO_CURSOR, SLOT_ATTACHED, SLOT_FREE, SLOT_REAPING,
};
use shmq_core::ring::{AttachError, Delivery, Message, Ring, TryReadError, TrySendError};
use shmq_core::{Backing, Geometry, HeapBacking, HeapRegion};
use std::collections::VecDeque;
use std::mem::offset_of;

const CAPACITY: u64 = 4096;
const NONCE: u64 = 0xB0AD_CA57;
/// Slots of the slot table: a publisher, two subscribers and one more attachment.
const SLOTS: u32 = 4;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(512),
        ..ProptestConfig::default()
    }
}

/// A broadcast ring with a publisher (the creator) and `subs` subscribers.
struct World {
    region: HeapRegion,
    g: Geometry,
    publisher: Ring<HeapBacking>,
    subs: Vec<Ring<HeapBacking>>,
}

fn world(flags: u32, subs: usize) -> World {
    let g = Geometry::new(CAPACITY, 0, SLOTS, flags, NONCE)
        .unwrap()
        .broadcast();
    let region = HeapRegion::new(g.total_size);
    let publisher = Ring::create(region.handle(), g, 0)
        .map_err(|(_, e)| e)
        .unwrap();
    let subs = (0..subs)
        .map(|_| {
            let s = Ring::open(region.handle()).map_err(|(_, e)| e).unwrap();
            s.subscribe();
            s
        })
        .collect();
    World {
        region,
        g,
        publisher,
        subs,
    }
}

fn poke(b: &HeapBacking, offset: u64, bytes: &[u8]) {
    let end = (offset as usize + bytes.len()).min(b.size() as usize);
    let n = end.saturating_sub(offset as usize);
    // SAFETY: the range is clamped inside the region; the test is single-threaded here, and
    // scribbling on the segment is the point of the test.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), b.base().add(offset as usize), n) };
}

/// The bytes of the identity (creator-written, read by every later open).
fn identity_bytes(b: &HeapBacking) -> Vec<u8> {
    let start = offset_of!(Control, id) + offset_of!(Padded<Identity>, 0);
    let mut v = vec![0u8; std::mem::size_of::<Identity>()];
    // SAFETY: the identity lies inside the segment; single-threaded here.
    unsafe { std::ptr::copy_nonoverlapping(b.base().add(start), v.as_mut_ptr(), v.len()) };
    v
}

fn peek_u64(b: &HeapBacking, offset: u64) -> u64 {
    let mut v = [0u8; 8];
    // SAFETY: callers pass offsets of u64 fields inside the segment; single-threaded here.
    unsafe { std::ptr::copy_nonoverlapping(b.base().add(offset as usize), v.as_mut_ptr(), 8) };
    u64::from_le_bytes(v)
}

/// A value written into a position field, relative to the live state where that matters.
#[derive(Clone, Debug)]
enum Val {
    Any(u64),
    /// `tail + 16 * k + misalign`.
    NearTail(i64, u64),
    /// `u64::MAX - k` (overflow bait).
    NearMax(u64),
    Small(u64),
    NoCursor,
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        any::<u64>().prop_map(Val::Any),
        (-600i64..600, prop_oneof![4 => Just(0u64), 1 => 1u64..16])
            .prop_map(|(k, m)| Val::NearTail(k, m)),
        (0u64..10_000).prop_map(Val::NearMax),
        (0u64..20_000).prop_map(Val::Small),
        Just(Val::NoCursor),
    ]
}

impl Val {
    fn resolve(&self, tail: u64) -> u64 {
        match *self {
            Val::Any(v) => v,
            Val::NearTail(k, m) => tail.wrapping_add_signed(k * 16).wrapping_add(m),
            Val::NearMax(k) => u64::MAX - k,
            Val::Small(v) => v,
            Val::NoCursor => NO_CURSOR,
        }
    }
}

/// A `Control` field: (offset, width in bytes).
fn control_field(i: usize) -> (u64, usize) {
    let ev = |o: usize| o + offset_of!(Event, waiters);
    let fields = [
        (offset_of!(Control, tail), 8),
        (offset_of!(Control, release), 8),
        (offset_of!(Control, head), 8),
        (offset_of!(Control, count), 8),
        (offset_of!(Control, slots_in_use), 4),
        (offset_of!(Control, attached), 4),
        (ev(offset_of!(Control, data_event)), 4),
        (ev(offset_of!(Control, space_event)), 4),
        (offset_of!(Control, totals) + offset_of!(Totals, reaped), 8),
    ];
    let (o, w) = fields[i % fields.len()];
    (o as u64, w)
}

const CONTROL_FIELDS: usize = 9;

#[derive(Clone, Debug)]
enum Scribble {
    /// Random bytes anywhere (the identity included: only later opens read it).
    Raw {
        offset: u64,
        bytes: Vec<u8>,
    },
    Cursor {
        slot: u32,
        v: Val,
    },
    Missed {
        slot: u32,
        v: u64,
    },
    Control {
        field: usize,
        v: Val,
    },
    SlotState {
        slot: u32,
        v: u64,
    },
    /// A header with a valid stamp for `pos` and the given state and meta.
    Record {
        pos: Val,
        state: u64,
        meta: u64,
    },
    /// A new meta (length) for whatever header is at `pos`.
    Meta {
        pos: Val,
        meta: u64,
    },
}

fn meta() -> impl Strategy<Value = u64> {
    let len = prop_oneof![
        0u64..64,
        0u64..5000,
        Just(CAPACITY - 16),
        Just(CAPACITY - 15),
        Just(CAPACITY),
        Just(u64::from(u32::MAX)),
        any::<u32>().prop_map(u64::from),
    ];
    (len, any::<u16>(), any::<u16>(), any::<bool>()).prop_map(|(l, c, f, keep)| {
        if keep {
            l
        } else {
            l | u64::from(c) << 32 | u64::from(f) << 48
        }
    })
}

fn scribble() -> impl Strategy<Value = Scribble> {
    prop_oneof![
        3 => (any::<u64>(), proptest::collection::vec(any::<u8>(), 1..24))
            .prop_map(|(offset, bytes)| Scribble::Raw { offset, bytes }),
        3 => (0..SLOTS, val()).prop_map(|(slot, v)| Scribble::Cursor { slot, v }),
        1 => (0..SLOTS, prop_oneof![any::<u64>(), 0u64..100])
            .prop_map(|(slot, v)| Scribble::Missed { slot, v }),
        3 => (0..CONTROL_FIELDS, val()).prop_map(|(field, v)| Scribble::Control { field, v }),
        1 => (0..SLOTS, (0u64..4, 0u64..4, any::<u64>()))
            .prop_map(|(slot, (s, g, any))| Scribble::SlotState {
                slot,
                v: if g == 3 { any } else { g << 8 | [SLOT_FREE, SLOT_ATTACHED, SLOT_REAPING, 7][s as usize] },
            }),
        3 => (val(), prop_oneof![Just(COMMITTED), Just(ABANDONED), Just(CONSUMED), 0u64..16], meta())
            .prop_map(|(pos, state, meta)| Scribble::Record { pos, state, meta }),
        2 => (val(), meta()).prop_map(|(pos, meta)| Scribble::Meta { pos, meta }),
    ]
}

fn apply(w: &World, s: &Scribble) {
    let b = w.publisher.backing();
    let g = &w.g;
    let tail = peek_u64(b, offset_of!(Control, tail) as u64);
    let slot = |i: u32| g.slots_offset + u64::from(i) * slot_size();
    let cell = |pos: u64| g.data_offset + ((pos % g.capacity) & !15);
    match s {
        Scribble::Raw { offset, bytes } => poke(b, offset % g.total_size, bytes),
        Scribble::Cursor { slot: i, v } => poke(
            b,
            slot(*i) + offset_of!(Slot, cursor) as u64,
            &v.resolve(tail).to_le_bytes(),
        ),
        Scribble::Missed { slot: i, v } => poke(
            b,
            slot(*i) + offset_of!(Slot, missed) as u64,
            &v.to_le_bytes(),
        ),
        Scribble::Control { field, v } => {
            let (o, width) = control_field(*field);
            let v = v.resolve(tail);
            poke(b, o, &v.to_le_bytes()[..width]);
        }
        Scribble::SlotState { slot: i, v } => poke(
            b,
            slot(*i) + offset_of!(Slot, state) as u64,
            &v.to_le_bytes(),
        ),
        Scribble::Record { pos, state, meta } => {
            let pos = pos.resolve(tail) & !15;
            let (stamp, meta_at) = (
                offset_of!(Cell, stamp) as u64,
                offset_of!(Cell, meta) as u64,
            );
            poke(b, cell(pos) + stamp, &(g.tag(pos) | state).to_le_bytes());
            poke(b, cell(pos) + meta_at, &meta.to_le_bytes());
        }
        Scribble::Meta { pos, meta } => {
            let meta_at = offset_of!(Cell, meta) as u64;
            poke(b, cell(pos.resolve(tail)) + meta_at, &meta.to_le_bytes());
        }
    }
}

/// A lane whose `busy` word is garbage blocks its own process's next operation forever (it
/// waits for its own threads): not a protocol question. Clear them in the slots we hold.
fn clear_own_busy_words(w: &World) {
    for ring in std::iter::once(&w.publisher).chain(&w.subs) {
        let base = w.g.slots_offset + u64::from(ring.slot_index()) * slot_size();
        for k in 0..LANES {
            let o = base
                + (offset_of!(Slot, lanes) + k * std::mem::size_of::<Lane>()) as u64
                + offset_of!(Lane, busy) as u64;
            poke(ring.backing(), o, &0u32.to_le_bytes());
        }
    }
}

fn read_checked(ring: &Ring<HeapBacking>, max: usize) -> Result<usize, TryReadError> {
    ring.try_read_many_with(max, |d| match d {
        Delivery::Message(m) => {
            assert!(m.len() as u64 <= CAPACITY, "a payload longer than the ring");
            let v = m.to_vec();
            assert_eq!(v.len(), m.len());
        }
        Delivery::Discard => {}
    })
}

/// Every operation must return: each runs a bounded number of times.
fn exercise(publisher: &Ring<HeapBacking>, subs: &[&Ring<HeapBacking>]) {
    let sizes = [
        0usize,
        8,
        100,
        1000,
        2000,
        CAPACITY as usize - 16,
        CAPACITY as usize,
    ];
    for i in 0..10usize {
        let payload = vec![i as u8; sizes[i % sizes.len()]];
        let _ = publisher.try_send(Message::raw(&payload));
        let _ = publisher.try_send_many(&[
            Message::raw(b"a"),
            Message::raw(&payload[..payload.len().min(500)]),
        ]);
        for (k, s) in subs.iter().enumerate() {
            let _ = read_checked(s, 1 + (i + k) % 4);
            let _ = s.try_send(Message::raw(&payload[..payload.len().min(40)]));
            if (i + k) % 4 == 3 {
                s.unsubscribe();
                let _ = read_checked(s, 2);
                s.subscribe();
            }
            let _ = s.is_subscribed();
        }
        for r in std::iter::once(publisher).chain(subs.iter().copied()) {
            let _ = r.subscribers();
            let _ = r.stats();
            let _ = r.len();
            let _ = r.is_full();
            let _ = r.is_empty();
            let _ = r.queued_payload();
        }
        if i % 3 == 0 {
            let _ = publisher.reap_dead();
            let _ = subs.first().map(|s| s.reap_dead());
        }
    }
    // Drain what can be drained (bounded).
    for s in subs {
        for _ in 0..20 {
            if read_checked(s, 64).is_err() {
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The model-based properties (no corruption).
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    /// Publish messages of these payload sizes (one: `try_send`, more: `try_send_many`).
    Publish(Vec<usize>),
    Read {
        sub: usize,
        max: usize,
    },
    Subscribe(usize),
    Unsubscribe(usize),
}

fn op(subs: usize) -> impl Strategy<Value = Op> {
    let size = prop_oneof![8 => 8usize..120, 2 => 8usize..1500, 1 => Just(CAPACITY as usize - 16)];
    prop_oneof![
        6 => proptest::collection::vec(size, 1..4).prop_map(Op::Publish),
        5 => (0..subs, 1usize..8).prop_map(|(sub, max)| Op::Read { sub, max }),
        1 => (0..subs).prop_map(Op::Subscribe),
        1 => (0..subs).prop_map(Op::Unsubscribe),
    ]
}

fn payload(id: u64, size: usize) -> Vec<u8> {
    let mut v = vec![id as u8; size];
    v[..8].copy_from_slice(&id.to_le_bytes());
    v
}

/// The model of one subscriber: the messages (id, size) published since it subscribed that
/// it has neither read nor been told it missed.
#[derive(Default)]
struct Sub {
    subscribed: bool,
    pending: VecDeque<(u64, usize)>,
    got: u64,
    missed: u64,
    published: u64,
}

/// Reads from `ring` and checks the result against `model`. Returns whether the read ended
/// with `Empty`.
fn read_and_check(ring: &Ring<HeapBacking>, model: &mut Sub, max: usize, lag: bool) -> bool {
    let mut got = Vec::new();
    let res = ring.try_read_many_with(max, |d| match d {
        Delivery::Message(m) => got.push(m.to_vec()),
        Delivery::Discard => panic!("Discard without a concurrent publisher"),
    });
    match res {
        Ok(n) => {
            assert_eq!(n, got.len());
            assert!(n >= 1 && n <= max, "{n} messages for max {max}");
            for v in got {
                let (id, size) = model
                    .pending
                    .pop_front()
                    .unwrap_or_else(|| panic!("read a message that was not expected: {v:?}"));
                assert_eq!(v, payload(id, size), "message {id}: wrong bytes or order");
                model.got += 1;
            }
            false
        }
        Err(TryReadError::Empty) => {
            assert!(got.is_empty());
            assert!(model.subscribed, "Empty for an unsubscribed attachment");
            assert_eq!(
                model.pending.len(),
                0,
                "Empty with {:?} pending",
                model.pending
            );
            true
        }
        Err(TryReadError::NotSubscribed) => {
            assert!(!model.subscribed, "NotSubscribed for a subscriber");
            true
        }
        Err(TryReadError::Lagged { missed }) => {
            assert!(lag, "Lagged in the block policy");
            assert!(got.is_empty());
            assert!(
                missed as usize <= model.pending.len(),
                "missed {missed} of {} pending",
                model.pending.len()
            );
            model.pending.drain(..missed as usize);
            model.missed += missed;
            false
        }
        Err(e) => panic!("{e:?}\n{}", ring.debug_state()),
    }
}

fn check_subscribers(w: &World, models: &[Sub], lag: bool) {
    let info = w.publisher.subscribers();
    let subscribed = models.iter().filter(|m| m.subscribed).count();
    assert_eq!(info.len(), subscribed, "{info:?}");
    for (ring, m) in w.subs.iter().zip(models) {
        assert_eq!(ring.is_subscribed(), m.subscribed);
        if !m.subscribed {
            continue;
        }
        let i = info
            .iter()
            .find(|i| i.slot == ring.slot_index())
            .expect("a subscriber is listed");
        assert_eq!(
            i.lag_messages + i.missed_pending,
            m.pending.len() as u64,
            "{i:?}"
        );
        if !lag {
            let bytes: u64 = m.pending.iter().map(|&(_, s)| record_size(s as u64)).sum();
            assert_eq!(i.lag_bytes, bytes, "{i:?}");
            assert_eq!(i.missed_pending, 0);
        }
    }
}

fn run_model(flags: u32, nsubs: usize, start_subscribed: bool, ops: &[Op]) {
    let lag = flags & FLAG_LAG != 0;
    let w = world(flags, nsubs);
    let mut models: Vec<Sub> = (0..nsubs).map(|_| Sub::default()).collect();
    for (s, m) in w.subs.iter().zip(&mut models) {
        if start_subscribed {
            m.subscribed = true;
        } else {
            s.unsubscribe();
        }
    }
    let mut next_id = 0u64;
    for op in ops {
        match op {
            Op::Publish(sizes) => {
                let bufs: Vec<Vec<u8>> = sizes
                    .iter()
                    .enumerate()
                    .map(|(k, &s)| payload(next_id + k as u64, s))
                    .collect();
                let msgs: Vec<Message<'_>> = bufs.iter().map(|b| Message::raw(b)).collect();
                let total: u64 = sizes.iter().map(|&s| record_size(s as u64)).sum();
                let res = if msgs.len() == 1 {
                    w.publisher.try_send(msgs[0])
                } else {
                    w.publisher.try_send_many(&msgs)
                };
                // Block policy: the ring holds exactly what the slowest subscriber has not
                // read, so a batch fits if and only if that plus the batch fits.
                let held: u64 = models
                    .iter()
                    .filter(|m| m.subscribed)
                    .map(|m| m.pending.iter().map(|&(_, s)| record_size(s as u64)).sum())
                    .max()
                    .unwrap_or(0);
                match res {
                    Ok(()) => {
                        if !lag {
                            assert!(held + total <= CAPACITY, "sent {total} with {held} held");
                        }
                        for (k, &s) in sizes.iter().enumerate() {
                            for m in models.iter_mut().filter(|m| m.subscribed) {
                                m.pending.push_back((next_id + k as u64, s));
                                m.published += 1;
                            }
                        }
                        next_id += sizes.len() as u64;
                    }
                    Err(TrySendError::Full) => {
                        assert!(!lag, "Full in the lag policy");
                        assert!(
                            held + total > CAPACITY,
                            "Full with {held} held, {total} asked"
                        );
                    }
                    Err(TrySendError::TooLarge { .. }) => {
                        assert!(total > CAPACITY, "TooLarge for {total} bytes");
                    }
                    Err(e) => panic!("{e:?}\n{}", w.publisher.debug_state()),
                }
            }
            Op::Read { sub, max } => {
                read_and_check(&w.subs[*sub], &mut models[*sub], *max, lag);
            }
            Op::Subscribe(sub) => {
                w.subs[*sub].subscribe();
                let m = &mut models[*sub];
                // Re-subscribing starts afresh at the tail: what was not read is dropped.
                m.pending.clear();
                m.got = 0;
                m.missed = 0;
                m.published = 0;
                m.subscribed = true;
            }
            Op::Unsubscribe(sub) => {
                w.subs[*sub].unsubscribe();
                models[*sub].subscribed = false;
                models[*sub].pending.clear();
            }
        }
        check_subscribers(&w, &models, lag);
    }
    // Drain: every subscriber reads until Empty (a bounded number of reads).
    for (ring, m) in w.subs.iter().zip(&mut models) {
        let mut drained = false;
        for _ in 0..1000 {
            if read_and_check(ring, m, 7, lag) {
                drained = true;
                break;
            }
        }
        assert!(drained, "a subscriber never drained");
        if m.subscribed {
            assert_eq!(
                m.got + m.missed,
                m.published,
                "got {} + missed {}",
                m.got,
                m.missed
            );
            if !lag {
                assert_eq!(m.missed, 0);
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// A live broadcast ring scribbled on: every operation keeps returning, payloads never
    /// exceed the ring, and another process can still attach (or is refused).
    #[test]
    fn scribbles_on_a_live_broadcast_ring_never_crash_or_hang(
        lag in any::<bool>(),
        nsubs in 1usize..=2,
        warmup in proptest::collection::vec((0usize..400, any::<bool>()), 0..40),
        scribbles in proptest::collection::vec(scribble(), 1..10),
        more in proptest::collection::vec(scribble(), 0..6),
    ) {
        let w = world(if lag { FLAG_LAG } else { 0 }, nsubs);
        let identity = identity_bytes(w.publisher.backing());
        for (i, (size, read)) in warmup.iter().enumerate() {
            let _ = w.publisher.try_send(Message::raw(&vec![i as u8; *size]));
            if *read {
                let _ = read_checked(&w.subs[i % nsubs], 1 + i % 3);
            }
        }
        for s in &scribbles {
            apply(&w, s);
        }
        clear_own_busy_words(&w);
        let subs: Vec<&Ring<HeapBacking>> = w.subs.iter().collect();
        exercise(&w.publisher, &subs);
        // Damage after operations ran on damaged state.
        for s in &more {
            apply(&w, s);
        }
        clear_own_busy_words(&w);
        exercise(&w.publisher, &subs);
        // A later process attaching to the damaged segment. Only a damaged identity may
        // make the segment unreadable; otherwise it is refused only for want of a free slot
        // or because the (scribbled) attach count says it is closing.
        let intact = identity_bytes(w.publisher.backing()) == identity;
        match Ring::open(w.region.handle()) {
            Ok(late) => {
                prop_assert!(late.is_broadcast() || !intact, "an intact broadcast ring opened as a queue");
                if late.is_broadcast() {
                    late.subscribe();
                    exercise(&late, &[&late]);
                    exercise(&w.publisher, &[&late, subs[0]]);
                }
            }
            Err((_, AttachError::NoFreeSlot { .. } | AttachError::Closing)) => {}
            Err((_, e)) => prop_assert!(!intact, "intact identity refused: {e:?}"),
        }
    }

    /// Block policy: every subscriber reads exactly the messages published while it was
    /// subscribed, in order, byte for byte; publishing is refused (`Full`) exactly when the
    /// slowest subscriber holds too much of the ring.
    #[test]
    fn block_policy_delivers_everything_in_order(
        nsubs in 1usize..=2,
        start_subscribed in any::<bool>(),
        ops in proptest::collection::vec(op(2), 1..120),
    ) {
        let ops: Vec<Op> = ops.into_iter().map(|o| clamp(o, nsubs)).collect();
        run_model(0, nsubs, start_subscribed, &ops);
    }

    /// Lag policy: publishing never fails; each subscriber reads the messages published
    /// while it was subscribed in order, except runs of the oldest it is told it missed; once
    /// drained, `got + missed == published`.
    #[test]
    fn lag_policy_accounts_for_every_message(
        nsubs in 1usize..=2,
        start_subscribed in any::<bool>(),
        ops in proptest::collection::vec(op(2), 1..120),
    ) {
        let ops: Vec<Op> = ops.into_iter().map(|o| clamp(o, nsubs)).collect();
        run_model(FLAG_LAG, nsubs, start_subscribed, &ops);
    }
}

fn clamp(op: Op, nsubs: usize) -> Op {
    match op {
        Op::Read { sub, max } => Op::Read {
            sub: sub % nsubs,
            max,
        },
        Op::Subscribe(s) => Op::Subscribe(s % nsubs),
        Op::Unsubscribe(s) => Op::Unsubscribe(s % nsubs),
        p => p,
    }
}

// ---------------------------------------------------------------------------------------
// Regressions: arithmetic overflows on positions a corrupted segment puts near `u64::MAX`,
// found by the fuzz property above (which generates such values: `Val::NearMax`, in every
// build). Each test pins one fix; before it, debug builds (overflow checks on) panicked and
// release builds wrapped (see each test for what that did). They run with the others.
// ---------------------------------------------------------------------------------------

/// Sets `tail` and `release` of the segment (a buggy process wrote them).
fn set_positions(w: &World, tail: u64, release: u64) {
    let b = w.publisher.backing();
    poke(b, offset_of!(Control, tail) as u64, &tail.to_le_bytes());
    poke(
        b,
        offset_of!(Control, release) as u64,
        &release.to_le_bytes(),
    );
}

/// Regression (found by the fuzz property): `Ring::reserve` (ring/send.rs, queues too) computed `tail + total` after checking only
/// `tail - release <= capacity`: with both near `u64::MAX` it overflows (debug: panic;
/// release: `tail` wraps to a small value and every later send reports "release is ahead of
/// tail"). Fix: refuse a `tail` with `tail.checked_add(total) == None` as `Corrupted`.
#[test]
fn reserve_refuses_a_tail_near_u64_max() {
    for flags in [0, FLAG_LAG] {
        let w = world(flags, 1);
        let tail = u64::MAX - 15; // a multiple of 16
        set_positions(&w, tail, tail);
        let r = w.publisher.try_send(Message::raw(b"x"));
        assert!(matches!(r, Err(TrySendError::Corrupted(_))), "{r:?}");
        assert_eq!(w.publisher.stats().tail, tail, "tail wrapped around");
    }
}

/// Regression: `Ring::space_ready` (then behind `is_full` and blocking sends, queues too; now
/// ring/send.rs, and `is_full` in ring/observe.rs is a pure query) computed
/// `tail.saturating_sub(release) + total`: with `tail - release` near `u64::MAX` it overflows
/// (debug: panic; release: wraps, so `is_full()` says there is room although every send fails
/// as `Corrupted`). Fix: `saturating_add(total)`; `is_full` reports such positions as full.
#[test]
fn is_full_does_not_overflow_on_a_tail_near_u64_max() {
    let w = world(0, 1);
    set_positions(&w, u64::MAX, 0);
    assert!(w.publisher.try_send(Message::raw(b"x")).is_err());
    assert!(w.publisher.is_full(), "no send can succeed");
}

/// Regression, lag policy: `advance_release_broadcast` (ring/broadcast.rs) computed `t0 + total` and
/// `r + capacity / 16` unchecked: with `tail` near `u64::MAX` and a full ring they overflow
/// (debug: panic; release: `want` wraps, the walk stops at once and the send reports `Full`,
/// which is harmless). Fix: `saturating_add` in both. `try_send` no longer gets there (its
/// reservation refuses such a `tail` first); `is_full` does (`space_ready` reclaims).
#[test]
fn lag_reclaim_does_not_overflow_on_a_tail_near_u64_max() {
    let w = world(FLAG_LAG, 1);
    // Full, so that `is_full` reclaims.
    let tail = u64::MAX - 15;
    set_positions(&w, tail, tail - CAPACITY);
    let _ = w.publisher.is_full();
    let r = w.publisher.try_send(Message::raw(&[0; 100]));
    assert!(matches!(r, Err(TrySendError::Corrupted(_))), "{r:?}");
    let release = peek_u64(w.publisher.backing(), offset_of!(Control, release) as u64);
    assert!(
        release <= tail,
        "reclaim moved release {release:#x} past tail {tail:#x}"
    );
}
