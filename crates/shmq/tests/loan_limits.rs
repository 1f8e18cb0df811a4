//! The per-thread limits of loans and holds on one handle (at most `LANES - 1` = 3 open):
//! what only the calling thread could end fails at once with `WouldDeadlock`.

use shmq::{Queue, RecvError, SendError, Wait};

fn queue(tag: &str) -> Queue {
    let q = Queue::create(&format!("ll{}-{tag}", std::process::id()), 1 << 16).unwrap();
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
