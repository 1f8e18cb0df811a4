//! `is_full`/`is_empty`/`len` agree with what `try_send`/`try_recv` would do at that instant
//! when nothing else runs.

use shmq::{Queue, SendError};

fn name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("rs-full-{tag}-{}-{nanos:x}", std::process::id())
}

#[test]
fn is_full_right_after_try_send_was_refused() {
    // 20-byte messages take 48-byte records: 85 fit in 4096 bytes, 16 bytes are left over.
    let q = Queue::builder(&name("refused"))
        .capacity(4096)
        .keep_messages(false) // what a test leaves queued is nobody\'s
        .create()
        .unwrap();
    let msg = [7u8; 20];
    let mut sent = 0;
    loop {
        let predicted = q.is_full();
        match q.try_send(&msg) {
            Ok(()) => {
                assert!(
                    !predicted || sent == 0,
                    "is_full() was true, send {sent} went in"
                );
                sent += 1;
            }
            Err(SendError::Full) => {
                assert!(predicted, "is_full() was false, send {sent} was refused");
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(sent, 85);
    assert!(q.is_full());
    assert_eq!(q.len(), 85);
    q.try_recv().unwrap();
    assert!(!q.is_full());
}

#[test]
fn is_empty_and_len_follow_try_recv() {
    let q = Queue::builder(&name("empty"))
        .capacity(4096)
        .keep_messages(false) // what a test leaves queued is nobody\'s
        .create()
        .unwrap();
    assert!(q.is_empty());
    assert_eq!(q.len(), 0);
    for i in 0..3u8 {
        q.send(&[i]).unwrap();
    }
    for left in (1..=3).rev() {
        assert!(!q.is_empty());
        assert_eq!(q.len(), left);
        q.try_recv().unwrap();
    }
    assert!(q.is_empty());
    assert!(q.try_recv().is_err());
}
