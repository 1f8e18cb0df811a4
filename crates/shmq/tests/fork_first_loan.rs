//! A process that forks while another of its threads makes its first loan (when the crate
//! sets up its fork bookkeeping, `os::fork_generation`): the child must loan at once, not
//! wait for a set-up run by a thread it does not have.

use shmq::{Queue, Wait};
use std::sync::Barrier;

/// Fresh processes tried, each racing one first loan against one fork.
const ROUNDS: usize = 300;

fn unique(tag: &str) -> String {
    format!("ffl{}-{tag}", std::process::id())
}

/// Waits for `pid`: whether it exited 0.
fn exited_ok(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: waits for a child this process forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// One round, in a process forked for it from the single-threaded driver (so no loan was
/// ever made in it): a thread makes the first loan while this thread forks a child that
/// loans too. Exits 0 if the child did (a child that hangs is killed by its alarm).
fn round(parent: &Queue) -> ! {
    // SAFETY: a hang ends by SIGALRM instead of blocking the test.
    unsafe { libc::alarm(10) };
    let q = &parent.reopen_in_child().unwrap();
    let go = Barrier::new(2);
    let ok = std::thread::scope(|s| {
        s.spawn(|| {
            go.wait();
            q.loan(8, Wait::No).unwrap().commit();
        });
        go.wait();
        // SAFETY: the child only reopens, loans and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: a hang ends by SIGALRM instead of blocking the test.
            unsafe { libc::alarm(5) };
            let ok = q
                .reopen_in_child()
                .is_ok_and(|c| c.loan(8, Wait::No).map(|l| l.commit()).is_ok());
            // SAFETY: `_exit` skips the inherited handles' destructors (the parent's).
            unsafe { libc::_exit(if ok { 0 } else { 2 }) };
        }
        exited_ok(pid)
    });
    // SAFETY: as above.
    unsafe { libc::_exit(if ok { 0 } else { 3 }) }
}

/// In the re-executed driver (`SHMQ_FFL_CHILD` set): `ROUNDS` rounds, each in a process of
/// its own; exits 0 if every one passed.
fn run_driver() -> bool {
    if std::env::var("SHMQ_FFL_CHILD").is_err() {
        return false;
    }
    let q = Queue::create(&unique("q"), 1 << 20).unwrap();
    let mut failed = 0;
    for _ in 0..ROUNDS {
        // SAFETY: this thread is the only one that touched the queue; the round's process
        // ends with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            round(&q);
        }
        if !exited_ok(pid) {
            failed += 1;
        }
        while q.try_recv().is_ok() {}
    }
    eprintln!("{failed} of {ROUNDS} rounds: the forked child hung or failed");
    q.unlink().unwrap();
    drop(q);
    std::process::exit(i32::from(failed > 0));
}

#[test]
fn a_fork_during_the_first_loan_leaves_the_child_able_to_loan() {
    if run_driver() {
        return;
    }
    // Re-executed, so that the driver's first loan is in the rounds, not in the harness.
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_fork_during_the_first_loan_leaves_the_child_able_to_loan",
            "--nocapture",
        ])
        .env("SHMQ_FFL_CHILD", "1")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "a forked child hung or failed: {status:?}"
    );
}
