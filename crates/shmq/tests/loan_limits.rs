//! The per-thread limits of loans and holds on one handle (at most `LANES - 1` = 3 open):
//! what only the calling thread could end fails at once with `WouldDeadlock`.

use shmq::{Queue, RecvError, SendError, Wait};

fn queue(tag: &str) -> Queue {
    let q = Queue::builder(&format!("ll{}-{tag}", std::process::id()))
        .capacity(1 << 16)
        .keep_messages(false) // the messages left at the end are nobody's: nothing stays behind
        .create()
        .unwrap();
    for i in 0..8u8 {
        q.send(&[i]).unwrap();
    }
    q
}

#[test]
fn a_fourth_hold_of_one_thread_is_refused_and_allowed_once_one_ends() {
    let q = queue("holds");
    let held: Vec<_> = (0..3).map(|_| q.recv_lent(Wait::No).unwrap()).collect();
    assert!(matches!(
        q.recv_lent(Wait::Forever),
        Err(RecvError::WouldDeadlock(_))
    ));
    assert!(matches!(
        q.loan(8, Wait::Forever),
        Err(SendError::WouldDeadlock(_))
    ));
    drop(held);
    let next = q.recv_lent(Wait::No).unwrap();
    assert_eq!(next.parts().0, [3]);
}

/// While another thread's holds keep every long-lived lane, a hold or loan that must not
/// wait returns at once, and one with a timeout returns at its deadline (it used to spin at
/// 100 % CPU for as long as the other thread held them, whatever the deadline).
#[test]
fn lanes_held_by_another_thread_do_not_stop_a_deadline() {
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, Instant};
    let q = Arc::new(queue("other"));
    let (taken, done) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let holder = {
        let (q, taken, done) = (q.clone(), taken.clone(), done.clone());
        std::thread::spawn(move || {
            let held: Vec<_> = (0..3).map(|_| q.recv_lent(Wait::No).unwrap()).collect();
            taken.wait();
            done.wait();
            drop(held);
        })
    };
    taken.wait();
    let t0 = Instant::now();
    assert!(matches!(q.recv_lent(Wait::No), Err(RecvError::Empty)));
    assert!(matches!(q.loan(8, Wait::No), Err(SendError::Full)));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    let t0 = Instant::now();
    let r = q.recv_lent(Wait::timeout(Duration::from_millis(50)));
    assert!(matches!(r, Err(RecvError::Timeout)), "{:?}", r.err());
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(50) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    // Short operations of this thread still go through lane 0 meanwhile.
    assert_eq!(q.recv().unwrap(), [3]);
    done.wait();
    holder.join().unwrap();
    assert_eq!(q.recv_lent(Wait::No).unwrap().parts().0, [4]);
}
