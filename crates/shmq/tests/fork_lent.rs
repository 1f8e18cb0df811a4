//! A child forked while its parent holds a lent message (`recv_lent`) or an open loan
//! (`loan`) inherits the value; dropping it in the child must leave the parent's hold or
//! reservation alone (the lane and the record are the parent's), as the Python binding's
//! views do.

use shmq::{Queue, Wait};

const PAYLOAD: usize = 8000;
/// 64 KiB of ring hold 8 records of 8000 B (each takes 8016 B).
const CAPACITY: u64 = 64 << 10;

fn unique(tag: &str) -> String {
    format!("fl{}-{tag}", std::process::id())
}

/// Forks: `None` in the child (which must end with [`child_exit`]), the child's pid in the
/// parent.
fn fork() -> Option<libc::pid_t> {
    // SAFETY: this process is single-threaded (re-executed for it, see `reexec`); the child
    // only drops an inherited value and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: a hang ends by SIGALRM instead of blocking the test.
        unsafe { libc::alarm(5) };
        return None;
    }
    Some(pid)
}

fn child_exit() -> ! {
    // SAFETY: `_exit` skips the inherited handles' destructors (the parent's).
    unsafe { libc::_exit(0) }
}

/// Whether the child `pid` exited 0.
fn child_ok(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// How many more `PAYLOAD`-byte messages fit now.
fn fill(q: &Queue) -> usize {
    let mut n = 0;
    while q.try_send(&[b'B'; PAYLOAD]).is_ok() {
        n += 1;
    }
    n
}

fn held_message_stays_the_parents() {
    let q = Queue::create(&unique("lent"), CAPACITY).unwrap();
    q.send(&[b'A'; PAYLOAD]).unwrap();
    let lent = q.recv_lent(Wait::No).unwrap();
    let Some(pid) = fork() else {
        drop(lent);
        child_exit();
    };
    assert!(child_ok(pid), "the child failed");
    // Released by the child, the record's bytes would be reclaimed: 8 messages would fit,
    // and the next would overwrite what `lent` shows.
    assert_eq!(fill(&q), 7, "the held record keeps its room");
    assert_eq!(lent.parts().0, &[b'A'; PAYLOAD][..]);
    drop(lent);
    assert_eq!(q.try_recv().unwrap(), vec![b'B'; PAYLOAD]);
    q.unlink().unwrap();
}

fn open_loan_stays_the_parents() {
    let q = Queue::create(&unique("loan"), CAPACITY).unwrap();
    let mut loan = q.loan(PAYLOAD, Wait::No).unwrap();
    let Some(pid) = fork() else {
        drop(loan);
        child_exit();
    };
    assert!(child_ok(pid), "the child failed");
    // Abandoned by the child, the reservation would be skipped by consumers (and the
    // parent's commit lost): the message must arrive as the parent writes it.
    loan.copy_from_slice(&[b'L'; PAYLOAD]);
    loan.commit();
    assert_eq!(q.try_recv().unwrap(), vec![b'L'; PAYLOAD]);
    assert_eq!(q.len(), 0);
    q.unlink().unwrap();
}

/// In the re-executed process (`SHMQ_FL_CHILD` names the case): runs it and exits.
fn run_case() -> bool {
    let Ok(case) = std::env::var("SHMQ_FL_CHILD") else {
        return false;
    };
    match case.as_str() {
        "lent" => held_message_stays_the_parents(),
        "loan" => open_loan_stays_the_parents(),
        other => panic!("unknown case {other}"),
    }
    std::process::exit(0);
}

/// Runs `case` in a fresh, single-threaded process (fork from the multi-threaded test
/// harness is not safe).
fn reexec(test: &str, case: &str) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture"])
        .env("SHMQ_FL_CHILD", case)
        .status()
        .unwrap();
    assert!(status.success(), "{case}: {status}");
}

#[test]
fn a_lent_message_dropped_in_a_fork_child_stays_held_by_the_parent() {
    if run_case() {
        return;
    }
    reexec(
        "a_lent_message_dropped_in_a_fork_child_stays_held_by_the_parent",
        "lent",
    );
}

#[test]
fn a_loan_dropped_in_a_fork_child_stays_open_in_the_parent() {
    if run_case() {
        return;
    }
    reexec(
        "a_loan_dropped_in_a_fork_child_stays_open_in_the_parent",
        "loan",
    );
}
