//! A Rust consumer of a queue that Python (or Rust) produces.
//!
//! ```text
//! cargo run -p shmq --example consumer -- <queue-name>
//! ```
//!
//! Receives raw messages until an empty one, printing each as a line of UTF-8 text (Python
//! side: `Queue(name, codec="raw")`, `put(b"...")`). Exits 1 if a message was not raw bytes.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let Some(name) = std::env::args().nth(1) else {
        eprintln!("usage: consumer <queue-name>");
        return ExitCode::from(2);
    };
    let queue = match shmq::Queue::open(&name) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("consumer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    let wait = || shmq::Wait::timeout(Duration::from_secs(30));
    loop {
        match queue.recv_into(&mut buf, wait()) {
            Ok(shmq::CODEC_RAW) if buf.is_empty() => return ExitCode::SUCCESS,
            Ok(shmq::CODEC_RAW) => {
                let _ = writeln!(out, "{}", String::from_utf8_lossy(&buf));
            }
            Ok(codec) => {
                eprintln!("consumer: message with codec {codec}, expected raw bytes (0)");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("consumer: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}
