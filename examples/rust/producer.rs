//! A Rust producer for a queue that Python (or Rust) consumes.
//!
//! ```text
//! cargo run -p shmq --example producer -- <queue-name> <count>
//! ```
//!
//! Sends `count` raw messages `b"msg-<i>"` (codec 0: Python's `get()` returns them as
//! `bytes`), then a final empty message as an end marker. The queue must exist.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(count)) = (args.get(1), args.get(2).and_then(|c| c.parse::<u64>().ok()))
    else {
        eprintln!("usage: producer <queue-name> <count>");
        return ExitCode::from(2);
    };
    let queue = match shmq::Queue::open(name) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("producer: {e}");
            return ExitCode::FAILURE;
        }
    };
    for i in 0..count {
        if let Err(e) = queue.send(format!("msg-{i}").as_bytes()) {
            eprintln!("producer: {e}");
            return ExitCode::FAILURE;
        }
    }
    queue.send(b"").expect("end marker");
    ExitCode::SUCCESS
}
