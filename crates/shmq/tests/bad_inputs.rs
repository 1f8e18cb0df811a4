//! Out-of-range settings name the one that is wrong, and its range.

use shmq::{OpenError, Queue};

fn refused(b: shmq::Builder<Queue>) -> OpenError {
    match b.create() {
        Ok(_) => panic!("created a queue with an out-of-range setting"),
        Err(e) => e,
    }
}

#[test]
fn capacity_out_of_range_names_the_capacity_only() {
    for capacity in [0, (1 << 40) + 1, 1 << 63] {
        let e = refused(Queue::builder("bad-inputs-never-created").capacity(capacity));
        let msg = e.to_string();
        assert!(matches!(e, OpenError::InvalidArgument(_)), "{e:?}");
        assert!(
            msg.contains(&format!(
                "capacity {capacity} is out of range: it must be 1..=1099511627776 bytes"
            )),
            "{msg}"
        );
        assert!(!msg.contains("max_processes"), "{msg}");
    }
}

#[test]
fn max_processes_out_of_range_names_max_processes_only() {
    for n in [0, 4097] {
        let e = refused(Queue::builder("bad-inputs-never-created").max_processes(n));
        let msg = e.to_string();
        assert!(
            msg.contains(&format!(
                "max_processes {n} is out of range: it must be 1..=4096"
            )),
            "{msg}"
        );
        assert!(!msg.contains("capacity"), "{msg}");
    }
}
