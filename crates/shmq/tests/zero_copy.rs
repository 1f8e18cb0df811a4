//! Loans (zero-copy sends) and queue holds (zero-copy receives) through the public API,
//! including a forked child killed holding a loan or a hold.

use shmq::{Broadcast, Queue, RecvError, SendError, Subscriber, Wait};
use std::time::Duration;

fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("zc{}-{tag}-{n}", std::process::id())
}

fn queue(tag: &str, capacity: u64) -> Queue {
    Queue::builder(&unique(tag))
        .capacity(capacity)
        .keep_messages(false) // what a test leaves queued is nobody's: nothing stays behind
        .create()
        .unwrap()
}

#[test]
fn a_loan_is_written_in_place_and_committed() {
    let q = queue("commit", 1 << 16);
    let mut loan = q.loan(5, Wait::No).unwrap();
    loan.copy_from_slice(b"hello");
    loan.set_codec(3);
    loan.commit();
    let mut buf = Vec::new();
    assert_eq!(q.recv_into(&mut buf, Wait::No).unwrap(), 3);
    assert_eq!(buf, b"hello");
}

#[test]
fn a_dropped_loan_is_abandoned_and_the_queue_goes_on() {
    let q = queue("drop", 1 << 16);
    {
        let mut loan = q.loan(100, Wait::No).unwrap();
        loan.fill(7);
    }
    q.send(b"next").unwrap();
    assert_eq!(q.try_recv().unwrap(), b"next");
    assert_eq!(q.try_recv(), Err(RecvError::Empty));
}

#[test]
fn a_loan_inside_a_loan_of_the_same_thread_is_refused_not_a_hang() {
    let q = queue("nested", 1 << 16);
    let outer = q.loan(10, Wait::Forever).unwrap();
    assert!(matches!(
        q.loan(10, Wait::Forever),
        Err(SendError::WouldDeadlock(_))
    ));
    outer.commit();
    q.loan(10, Wait::Forever).unwrap().commit();
    assert_eq!(q.len(), 2);
}

#[test]
fn eight_threads_loaning_at_once_all_get_through() {
    let q = queue("threads", 1 << 20);
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let q = &q;
            s.spawn(move || {
                for i in 0..200u32 {
                    let mut loan = q.loan(64, Wait::Forever).unwrap();
                    loan.fill(t);
                    loan[..4].copy_from_slice(&i.to_le_bytes());
                    loan.commit();
                    if i % 16 == 0 {
                        // Interleave receives on the same handle: lane 0 stays free for them.
                        while q.try_recv().is_ok() {}
                    }
                }
            });
        }
    });
    while let Ok(m) = q.try_recv() {
        assert_eq!(m.len(), 64);
        assert!(m[4..].iter().all(|&b| b == m[4]));
    }
}

#[test]
fn a_queue_hold_reads_in_place_and_consumes_on_drop() {
    let q = queue("hold", 1 << 16);
    q.send(b"first").unwrap();
    q.send(b"second").unwrap();
    let held = q.recv_lent(Wait::No).unwrap();
    assert_eq!(held.parts().0, b"first");
    assert_eq!(q.try_recv().unwrap(), b"second", "not held back");
    drop(held);
    assert_eq!(q.try_recv(), Err(RecvError::Empty));
    assert_eq!(q.stats().lost, 0);
}

#[test]
fn a_broadcast_loan_reaches_a_subscriber() {
    let name = unique("bcast");
    let b = Broadcast::create(&name, 1 << 16).unwrap();
    let mut sub = Subscriber::open(&name).unwrap();
    let mut loan = b.loan(3, Wait::No).unwrap();
    loan.copy_from_slice(b"pub");
    loan.commit();
    let lent = sub.recv_lent(Wait::No).unwrap();
    assert_eq!(lent.parts().0, b"pub");
}

/// Runs this test binary again as a child that opens queue `name`, does `role` and kills
/// itself with SIGKILL inside it (re-executed rather than forked: a fork of the
/// multi-threaded test harness could inherit a lock another test holds).
fn child_killed_inside(test: &str, role: &str, name: &str) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("SHMQ_ZC_CHILD", role)
        .env("SHMQ_ZC_QUEUE", name)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child must die by SIGKILL inside the loan or hold ({status:?})"
    );
}

/// In a child: does what `SHMQ_ZC_CHILD` says, then dies by SIGKILL. `false` in the parent.
fn run_child() -> bool {
    let Ok(role) = std::env::var("SHMQ_ZC_CHILD") else {
        return false;
    };
    let q = Queue::open(&std::env::var("SHMQ_ZC_QUEUE").unwrap()).unwrap();
    match role.as_str() {
        "loan" => {
            let mut loan = q.loan(1000, Wait::No).unwrap();
            loan.fill(0xEE);
            std::mem::forget(loan); // the kill comes before any commit or drop
        }
        "hold" => {
            let lent = q.recv_lent(Wait::No).unwrap();
            assert_eq!(lent.parts().0, b"held by the child");
            std::mem::forget(lent);
        }
        _ => unreachable!(),
    }
    // SAFETY: ends this process at once, as `kill -9` would.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("killed");
}

#[test]
fn a_child_killed_mid_loan_is_repaired_and_the_queue_goes_on() {
    if run_child() {
        return;
    }
    let q = queue("killloan", 1 << 16);
    q.send(b"before").unwrap();
    child_killed_inside(
        "a_child_killed_mid_loan_is_repaired_and_the_queue_goes_on",
        "loan",
        q.name(),
    );
    q.send(b"after").unwrap();
    let t = Duration::from_secs(5);
    assert_eq!(q.recv_timeout(t).unwrap(), b"before");
    assert_eq!(q.recv_timeout(t).unwrap(), b"after");
    assert_eq!(q.stats().abandoned, 1);
}

#[test]
fn a_child_killed_holding_a_message_loses_only_that_one() {
    if run_child() {
        return;
    }
    let q = queue("killhold", 1 << 16);
    q.send(b"held by the child").unwrap();
    q.send(b"kept").unwrap();
    child_killed_inside(
        "a_child_killed_holding_a_message_loses_only_that_one",
        "hold",
        q.name(),
    );
    assert_eq!(q.recv_timeout(Duration::from_secs(5)).unwrap(), b"kept");
    // The dead hold is reaped (the blocked send's stuck poll finds it) and counted lost; its
    // space comes back: a message of most of the ring fits.
    let big = vec![1u8; (q.max_message_size() - 64) as usize];
    q.send_timeout(&big, Duration::from_secs(5)).unwrap();
    assert_eq!(q.stats().lost, 1);
}
