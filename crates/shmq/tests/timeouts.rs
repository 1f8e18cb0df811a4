//! A timeout (`Wait::timeout`, `*_timeout`) starts its clock when the call first has to wait,
//! and bounds the whole call, even one that waits more than once.

use shmq::{Message, Queue, SendError, Wait};
use std::time::{Duration, Instant};

const PAYLOAD: usize = 8000;
/// 64 KiB of ring hold 8 records of 8000 B (each takes 8016 B).
const CAPACITY: u64 = 64 << 10;
const FIT: usize = 8;

fn unique(tag: &str) -> String {
    format!("to{}-{tag}", std::process::id())
}

#[test]
fn a_timeout_bounds_a_batch_sent_in_several_chunks() {
    let q = Queue::create(&unique("chunks"), CAPACITY).unwrap();
    let timeout = Duration::from_secs(1);
    let payload = [b'x'; PAYLOAD];
    for _ in 0..FIT {
        q.try_send(&payload).unwrap();
    }
    // Two ringfuls: the first chunk waits until the consumer drains the ring once, halfway
    // through the timeout; the second then waits for room that never comes.
    let batch = vec![Message::raw(&payload); 2 * FIT];
    let drained = std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            std::thread::sleep(timeout / 2);
            let mut n = 0;
            while q.try_recv().is_ok() {
                n += 1;
            }
            n
        });
        let start = Instant::now();
        let e = q.send_many(&batch, Wait::timeout(timeout)).unwrap_err();
        let took = start.elapsed();
        assert_eq!(e.sent, FIT, "the first chunk went in: {e}");
        assert!(matches!(e.error, SendError::Timeout), "{e}");
        // Counted from each chunk's own wait, the second would end at 1.5 s.
        assert!(
            took >= timeout && took < timeout * 13 / 10,
            "the batch gave up after {took:?}, its timeout was {timeout:?}"
        );
        consumer.join().unwrap()
    });
    assert_eq!(drained, FIT);
    q.unlink().unwrap();
}

#[test]
fn a_receive_that_waits_times_out_after_its_timeout() {
    let q = Queue::create(&unique("recv"), CAPACITY).unwrap();
    for timeout in [Duration::from_millis(30), Duration::from_millis(200)] {
        let start = Instant::now();
        assert!(q.recv_timeout(timeout).is_err());
        let took = start.elapsed();
        assert!(
            took >= timeout,
            "gave up after {took:?}, before {timeout:?}"
        );
    }
    // A message there at once is taken whatever the timeout (none even counted).
    q.send(b"now").unwrap();
    assert_eq!(q.recv_timeout(Duration::ZERO).unwrap(), b"now");
    q.unlink().unwrap();
}
