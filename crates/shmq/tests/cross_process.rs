//! Real multi-process tests. The test binary re-executes itself as the child process
//! (`SHMQ_CHILD` names the role); every child runs under a watchdog and is killed on timeout.

use shmq::{OpenError, Queue, RecvError, Wait};
use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("rt{}-{tag}-{n}", std::process::id())
}

fn spawn_child(test: &str, role: &str, args: &[String]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("SHMQ_CHILD", role)
        .env("SHMQ_CHILD_ARGS", args.join(" "))
        .stdout(std::process::Stdio::null()) // the child's own test-harness summary is noise
        .spawn()
        .expect("spawn child")
}

/// Waits for `child` at most `limit`; kills it and fails the test on timeout.
fn join(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("watchdog: child did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn child_role() -> Option<(String, Vec<String>)> {
    let role = std::env::var("SHMQ_CHILD").ok()?;
    let args = std::env::var("SHMQ_CHILD_ARGS").unwrap_or_default();
    Some((role, args.split_whitespace().map(str::to_owned).collect()))
}

fn segment_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm")
        .join(shmq::segment_name(name))
        .exists()
}

const PER_PRODUCER: u64 = 50_000;

#[test]
fn two_producer_processes_every_message_once_fifo_per_producer() {
    if let Some((role, args)) = child_role() {
        if role == "producer" {
            let q = Queue::open(&args[0]).unwrap();
            let id: u8 = args[1].parse().unwrap();
            for seq in 0..PER_PRODUCER {
                let mut msg = vec![id; 9 + (seq % 50) as usize];
                msg[..8].copy_from_slice(&seq.to_le_bytes());
                q.send(&msg).unwrap();
            }
        }
        return;
    }
    let name = unique("mpsc");
    let q = Queue::create(&name, 1 << 16).unwrap();
    let test = "two_producer_processes_every_message_once_fifo_per_producer";
    let children: Vec<Child> = (0..2)
        .map(|id| spawn_child(test, "producer", &[name.clone(), id.to_string()]))
        .collect();
    let mut next: HashMap<u8, u64> = HashMap::new();
    let mut buf = Vec::new();
    for _ in 0..2 * PER_PRODUCER {
        q.recv_into(&mut buf, Wait::timeout(Duration::from_secs(30)))
            .expect("message within 30 s");
        let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
        let id = buf[8];
        assert_eq!(buf.len(), 9 + (seq % 50) as usize, "length");
        assert!(buf[8..].iter().all(|&b| b == id), "payload corrupted");
        let expected = next.entry(id).or_insert(0);
        assert_eq!(seq, *expected, "producer {id}: out of order or duplicated");
        *expected += 1;
    }
    for c in children {
        assert!(join(c, Duration::from_secs(60)).success());
    }
    assert!(q.try_recv().is_err(), "no extra message");
    let stats = q.stats();
    assert_eq!(
        (stats.puts, stats.gets),
        (2 * PER_PRODUCER, 2 * PER_PRODUCER)
    );
    drop(q);
    assert!(!segment_exists(&name), "last close removes the segment");
}

#[test]
fn a_killed_consumer_does_not_block_others_and_is_reaped() {
    if let Some((role, args)) = child_role() {
        if role == "blocked-consumer" {
            let q = Queue::open(&args[0]).unwrap();
            Queue::open(&args[1]).unwrap().send(b"ready").unwrap();
            // Blocks until killed.
            let _ = q.recv_timeout(Duration::from_secs(60));
        }
        return;
    }
    let name = unique("kill");
    let q = Queue::create(&name, 1 << 16).unwrap();
    let ctl_name = unique("kill-ctl");
    let ctl = Queue::create(&ctl_name, 4096).unwrap();
    let mut child = spawn_child(
        "a_killed_consumer_does_not_block_others_and_is_reaped",
        "blocked-consumer",
        &[name.clone(), ctl_name.clone()],
    );
    assert_eq!(ctl.recv_timeout(Duration::from_secs(30)).unwrap(), b"ready");
    assert_eq!(q.stats().attached, 2);
    // Give it time to go to sleep inside recv, then kill -9.
    std::thread::sleep(Duration::from_millis(50));
    child.kill().unwrap();
    child.wait().unwrap();
    // The queue keeps working for everybody else.
    q.send(b"after").unwrap();
    assert_eq!(q.recv_timeout(Duration::from_secs(5)).unwrap(), b"after");
    // A new process attaching reaps the dead one.
    let other = Queue::open(&name).unwrap();
    assert_eq!(other.stats().attached, 2, "dead consumer reaped on open");
    assert_eq!(other.stats().reaped, 1);
    drop(other);
    drop(q);
    assert!(!segment_exists(&name), "no leak after a kill -9");
    drop(ctl);
    assert!(!segment_exists(&ctl_name), "no leak after a kill -9");
}

#[test]
fn a_producer_that_exits_without_closing_leaves_its_messages() {
    if let Some((role, args)) = child_role() {
        if role == "exit-producer" {
            let q = Queue::open(&args[0]).unwrap();
            q.send(b"one").unwrap();
            q.send(b"two").unwrap();
            std::process::exit(0); // no destructor: as if killed after the puts
        }
        return;
    }
    let name = unique("exit");
    let q = Queue::create(&name, 1 << 16).unwrap();
    let c = spawn_child(
        "a_producer_that_exits_without_closing_leaves_its_messages",
        "exit-producer",
        std::slice::from_ref(&name),
    );
    assert!(join(c, Duration::from_secs(30)).success());
    assert_eq!(q.recv_timeout(Duration::from_secs(5)).unwrap(), b"one");
    assert_eq!(q.recv_timeout(Duration::from_secs(5)).unwrap(), b"two");
    assert_eq!(
        q.recv_timeout(Duration::from_millis(20)),
        Err(RecvError::Timeout)
    );
    drop(q);
    assert!(!segment_exists(&name));
}

#[test]
fn open_errors_are_specific() {
    if child_role().is_some() {
        return;
    }
    let name = unique("errs");
    assert!(matches!(
        Queue::open(&name),
        Err(OpenError::DoesNotExist(_))
    ));
    let q = Queue::create(&name, 4096).unwrap();
    assert!(matches!(
        Queue::create(&name, 4096),
        Err(OpenError::AlreadyExists(_))
    ));
    for bad in ["", "a/b", ".x", "white space", &"x".repeat(201)] {
        assert!(
            matches!(Queue::open(bad), Err(OpenError::InvalidName(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        Queue::create(&unique("cap"), 0),
        Err(OpenError::InvalidArgument(_))
    ));
    let big = vec![0u8; q.max_message_size() as usize + 1];
    assert!(matches!(
        q.send(&big),
        Err(shmq::SendError::TooLarge { .. })
    ));
    drop(q);

    // A segment of garbage under a queue's name is refused, not trusted.
    let garbage = unique("garbage");
    let path = std::path::Path::new("/dev/shm").join(shmq::segment_name(&garbage));
    std::fs::write(&path, vec![0xA5u8; 64 * 1024]).unwrap();
    let r = Queue::open(&garbage);
    std::fs::remove_file(&path).unwrap();
    assert!(
        matches!(
            r,
            Err(OpenError::NotInitialized(_) | OpenError::Corrupted { .. })
        ),
        "{r:?}"
    );
}
