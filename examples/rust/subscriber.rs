//! A Rust subscriber of a broadcast that Python (or Rust) publishes to, and a Rust
//! publisher when given a count.
//!
//! ```text
//! cargo run -p shmq --example subscriber -- <broadcast-name>           # print until b""
//! cargo run -p shmq --example subscriber -- <broadcast-name> <count>   # publish instead
//! ```
//!
//! As a subscriber: prints `ready` once subscribed, then every raw message (codec 0) as a
//! line until an empty message. As a publisher: sends `count` raw messages `b"bcast-<i>"`
//! and an empty end marker.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(name) = args.get(1) else {
        eprintln!("usage: subscriber <broadcast-name> [<count to publish>]");
        return ExitCode::from(2);
    };
    if let Some(count) = args.get(2).and_then(|c| c.parse::<u64>().ok()) {
        let publisher = match shmq::Broadcast::open(name) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("publisher: {e}");
                return ExitCode::FAILURE;
            }
        };
        for i in 0..count {
            publisher
                .send(format!("bcast-{i}").as_bytes())
                .expect("publish");
        }
        publisher.send(b"").expect("end marker");
        return ExitCode::SUCCESS;
    }
    let sub = match shmq::Subscriber::open(name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("subscriber: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("ready");
    let mut buf = Vec::new();
    loop {
        match sub.recv_into(&mut buf, shmq::Wait::Forever) {
            Ok(0) if buf.is_empty() => return ExitCode::SUCCESS,
            Ok(0) => println!("{}", String::from_utf8_lossy(&buf)),
            Ok(codec) => {
                eprintln!("subscriber: message with codec {codec} is not raw bytes");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("subscriber: {e:?}");
                return ExitCode::FAILURE;
            }
        }
    }
}
