//! A child forked while another thread of its parent is inside a loan loop can loan at once:
//! no loan bookkeeping lock (held by a thread the child does not have) is inherited.

use shmq::{Queue, Wait};

/// Forks of one process; the parent's other thread loans all the while.
const FORKS: usize = 100;

fn unique(tag: &str) -> String {
    format!("lf{}-{tag}", std::process::id())
}

/// In the re-executed child (`SHMQ_LF_CHILD` set): a thread loans in a loop on one handle
/// while this thread forks `FORKS` grandchildren, each of which reopens a second queue, loans,
/// commits and exits; a grandchild that hangs is killed by its alarm. Exits 0 if every
/// grandchild exited 0.
fn run_child() -> bool {
    if std::env::var("SHMQ_LF_CHILD").is_err() {
        return false;
    }
    let q = Queue::create(&unique("q"), 1 << 20).unwrap();
    let out = Queue::create(&unique("out"), 1 << 20).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let failed = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                q.loan(64, Wait::Forever).unwrap().commit();
                q.try_recv().unwrap();
            }
        });
        let mut failed = 0;
        for _ in 0..FORKS {
            // SAFETY: the grandchild only reopens, loans and `_exit`s (the allocator is
            // fork-safe; no lock of this crate may be inherited: what this test checks).
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                // SAFETY: a hang ends by SIGALRM instead of blocking the test.
                unsafe { libc::alarm(3) };
                let ok = out.reopen_in_child().is_ok_and(|o| {
                    let sent = o.loan(8, Wait::No).map(|l| l.commit()).is_ok();
                    drop(o);
                    sent
                });
                // SAFETY: `_exit` skips the inherited handles' destructors (the parent's).
                unsafe { libc::_exit(if ok { 0 } else { 2 }) };
            }
            let mut status = 0;
            // SAFETY: waits for the grandchild just forked.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                failed += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        failed
    });
    eprintln!("{failed} of {FORKS} forked children hung or failed");
    assert_eq!(out.len(), (FORKS - failed) as u64);
    // Removed and dropped before `exit`, which runs no destructors: the segments go.
    out.unlink().unwrap();
    drop((q, out));
    std::process::exit(i32::from(failed > 0));
}

#[test]
fn a_child_forked_during_loans_loans_at_once() {
    if run_child() {
        return;
    }
    // Re-executed rather than forked from the multi-threaded test harness.
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_child_forked_during_loans_loans_at_once",
            "--nocapture",
        ])
        .env("SHMQ_LF_CHILD", "1")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "a forked child hung or failed: {status:?}"
    );
}
