//! Benchmarks of the Rust API between two threads of one process (the segment is shared memory
//! all the same; processes add nothing but a second mapping).
//!
//! ```text
//! cargo bench -p shmq --bench ring
//! ```
//!
//! - `round_trip_64b`: one iteration is a 64 B message to an echo thread and back, over two
//!   queues.
//! - `throughput_64b`: one iteration sends `N` messages of 64 B, one at a time, to a consumer
//!   thread and waits until it has received them all (it acknowledges on a second queue);
//!   divan reports items per second.
//! - `throughput_64b_batched`: the same with `send_many_deadline` batches of `batch` messages
//!   and a consumer taking up to 1024 at a time with `recv_many_deadline` (copying each out).
//!
//! - `round_trip_loan`: as `round_trip_64b` with loans and in-place reads (zero copy), for a
//!   64 B and a 4 MiB message.
//!
//! - `floor::cache_line_round_trip`: two threads bouncing one cache line, the round trip no
//!   queue between two threads can beat (measured in the same run as the others).
//!
//! An empty message tells the helper thread to stop. Every queue gets a unique name (process
//! id and a counter) and is dropped at the end of its benchmark, which removes the segment.

use divan::counter::ItemsCount;
use divan::Bencher;
use shmq::{Message, Queue};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

fn main() {
    divan::main();
}

const MSG: [u8; 64] = [0xab; 64];
const CAPACITY: u64 = 4 << 20;
/// Messages per iteration of the throughput benchmarks.
const N: usize = 10_000;

fn create(what: &str) -> Queue {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "bench-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    Queue::create(&name, CAPACITY).expect("create a benchmark queue")
}

/// Sends the stop message when dropped, so that the helper thread ends (and the scope joins
/// it) even if the benchmark panics.
struct StopOnDrop<'a>(&'a Queue);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.send(b"");
    }
}

#[divan::bench(sample_count = 200, sample_size = 1000)]
fn round_trip_64b(bencher: Bencher) {
    let ping = create("ping");
    let pong = create("pong");
    thread::scope(|s| {
        s.spawn(|| {
            let mut buf = Vec::with_capacity(64);
            loop {
                ping.recv_into(&mut buf, shmq::Wait::Forever)
                    .expect("echo recv");
                if buf.is_empty() {
                    // Nothing is sent back: a message left in `pong` would keep its segment in
                    // /dev/shm after the benchmark (a queue with messages outlives its last
                    // handle, as `keep_messages` says).
                    break;
                }
                pong.send(&buf).expect("echo send");
            }
        });
        let _stop = StopOnDrop(&ping);
        let mut buf = Vec::with_capacity(64);
        bencher.bench_local(|| {
            ping.send(&MSG).expect("send");
            pong.recv_into(&mut buf, shmq::Wait::Forever).expect("recv");
            debug_assert_eq!(buf.len(), MSG.len());
        });
    });
}

/// Zero copy: one iteration loans a `size`-byte message in a 16 MiB ring, writes its first 8
/// bytes and commits it; an echo thread reads it in place (`recv_lent`, first 8 bytes) and
/// answers with a loaned 8-byte message, read in place too. Flat in `size` is the point:
/// nothing copies the payload.
#[divan::bench(args = [64, 4 << 20], sample_count = 200, sample_size = 100)]
fn round_trip_loan(bencher: Bencher, size: usize) {
    let mk = |what: &str| {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bench-{what}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Queue::create(&name, 16 << 20).expect("create a benchmark queue")
    };
    let (ping, pong) = (mk("lping"), mk("lpong"));
    thread::scope(|s| {
        s.spawn(|| loop {
            let m = ping.recv_lent(shmq::Wait::Forever).expect("echo recv");
            let (a, _) = m.parts();
            if a.is_empty() {
                break;
            }
            let seq: [u8; 8] = a[..8].try_into().expect("8 bytes");
            drop(m);
            let mut l = pong.loan(8, shmq::Wait::Forever).expect("echo loan");
            l.copy_from_slice(&seq);
            l.commit();
        });
        let _stop = StopOnDrop(&ping);
        let mut seq = 0u64;
        bencher.bench_local(|| {
            seq += 1;
            let mut l = ping.loan(size, shmq::Wait::Forever).expect("loan");
            l[..8].copy_from_slice(&seq.to_le_bytes());
            l.commit();
            let m = pong.recv_lent(shmq::Wait::Forever).expect("recv");
            debug_assert_eq!(m.parts().0, seq.to_le_bytes());
        });
    });
}

/// Spawns (in `s`) a consumer that receives `N` messages from `data` then acknowledges on `ack`,
/// until it gets an empty message; `batched` takes up to 1024 at a time.
fn spawn_consumer<'s>(
    s: &'s thread::Scope<'s, '_>,
    data: &'s Queue,
    ack: &'s Queue,
    batched: bool,
) {
    s.spawn(move || {
        let mut buf = vec![0u8; MSG.len()];
        let mut vec_buf = Vec::with_capacity(MSG.len());
        let mut sink: Vec<()> = Vec::new();
        let mut got = 0;
        let mut stop = false;
        while !stop {
            if batched {
                data.recv_many_with(
                    1024,
                    u64::MAX,
                    shmq::Wait::Forever,
                    &mut shmq::Plain,
                    &mut sink,
                    |m| {
                        if m.is_empty() {
                            stop = true;
                        } else {
                            m.copy_to(&mut buf[..m.len()]);
                            got += 1;
                        }
                    },
                )
                .expect("consumer recv_many");
            } else {
                data.recv_into(&mut vec_buf, shmq::Wait::Forever)
                    .expect("consumer recv");
                if vec_buf.is_empty() {
                    stop = true;
                } else {
                    got += 1;
                }
            }
            if got >= N {
                got -= N;
                ack.send(b"k").expect("ack");
            }
        }
    });
}

#[divan::bench(sample_count = 200)]
fn throughput_64b(bencher: Bencher) {
    let data = create("data");
    let ack = create("ack");
    thread::scope(|s| {
        spawn_consumer(s, &data, &ack, false);
        let _stop = StopOnDrop(&data);
        let mut buf = Vec::new();
        bencher.counter(ItemsCount::new(N)).bench_local(|| {
            for _ in 0..N {
                data.send(&MSG).expect("send");
            }
            ack.recv_into(&mut buf, shmq::Wait::Forever)
                .expect("wait for the ack");
        });
    });
}

#[divan::bench(args = [16, 256], sample_count = 200)]
fn throughput_64b_batched(bencher: Bencher, batch: usize) {
    let data = create("data");
    let ack = create("ack");
    let msgs = vec![Message::raw(&MSG); batch];
    thread::scope(|s| {
        spawn_consumer(s, &data, &ack, true);
        let _stop = StopOnDrop(&data);
        let mut buf = Vec::new();
        bencher.counter(ItemsCount::new(N)).bench_local(|| {
            let mut left = N;
            while left > 0 {
                let k = left.min(batch);
                data.send_many(&msgs[..k], shmq::Wait::Forever)
                    .expect("send_many");
                left -= k;
            }
            ack.recv_into(&mut buf, shmq::Wait::Forever)
                .expect("wait for the ack");
        });
    });
}

/// The in-process bound: the same three benchmarks over `crossbeam-channel` (bounded, 64 B
/// arrays by value; no shared memory, no crash safety), measured in the same run.
mod crossbeam {
    use super::{ItemsCount, MSG, N};
    use crossbeam_channel::{bounded, Receiver, Sender};
    use divan::Bencher;
    use std::thread;

    /// Slots of the channels: about what shmq's 4 MiB ring holds of 64 B messages (80 B
    /// records) would be 52 k; 4096 is plenty to keep both sides busy.
    const SLOTS: usize = 4096;

    type Msg = Option<[u8; 64]>; // None stops the helper thread

    #[divan::bench(sample_count = 200, sample_size = 1000)]
    fn round_trip_64b(bencher: Bencher) {
        let (ping_tx, ping_rx) = bounded::<Msg>(SLOTS);
        let (pong_tx, pong_rx) = bounded::<Msg>(SLOTS);
        thread::scope(|s| {
            s.spawn(move || {
                while let Ok(Some(m)) = ping_rx.recv() {
                    pong_tx.send(Some(m)).expect("echo send");
                }
            });
            bencher.bench_local(|| {
                ping_tx.send(Some(MSG)).expect("send");
                pong_rx.recv().expect("recv");
            });
            ping_tx.send(None).expect("stop");
        });
    }

    fn consumer(data: Receiver<Msg>, ack: Sender<()>) {
        let mut got = 0;
        let mut sink = [0u8; 64];
        while let Ok(Some(m)) = data.recv() {
            sink.copy_from_slice(&m);
            got += 1;
            if got == N {
                got = 0;
                ack.send(()).expect("ack");
            }
        }
        std::hint::black_box(sink);
    }

    #[divan::bench(sample_count = 200)]
    fn throughput_64b(bencher: Bencher) {
        let (tx, rx) = bounded::<Msg>(SLOTS);
        let (ack_tx, ack_rx) = bounded::<()>(1);
        thread::scope(|s| {
            s.spawn(move || consumer(rx, ack_tx));
            bencher.counter(ItemsCount::new(N)).bench_local(|| {
                for _ in 0..N {
                    tx.send(Some(MSG)).expect("send");
                }
                ack_rx.recv().expect("wait for the ack");
            });
            tx.send(None).expect("stop");
        });
    }
}

/// The machine's floor for a round trip: two threads hand one cache line back and forth (an
/// atomic counter each bumps when it sees the other's bump, spinning). No queue can cross
/// between two threads faster than this; the Rust round-trip target is judged against it,
/// measured in the same run.
mod floor {
    use divan::Bencher;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::thread;

    #[divan::bench(sample_count = 200, sample_size = 1000)]
    fn cache_line_round_trip(bencher: Bencher) {
        // Odd values are the helper's turn; u64::MAX stops it.
        let turn = AtomicU64::new(0);
        thread::scope(|s| {
            s.spawn(|| loop {
                // Acquire/Release: a hand-off, as a queue's publish and claim are.
                let v = turn.load(Ordering::Acquire);
                if v == u64::MAX {
                    break;
                }
                if v % 2 == 1 {
                    turn.store(v + 1, Ordering::Release);
                }
                std::hint::spin_loop();
            });
            let mut next = 0u64;
            bencher.bench_local(|| {
                turn.store(next + 1, Ordering::Release);
                next += 2;
                while turn.load(Ordering::Acquire) != next {
                    std::hint::spin_loop();
                }
            });
            turn.store(u64::MAX, Ordering::Release);
        });
    }
}
