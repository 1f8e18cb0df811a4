//! The Python exceptions (defined in `shmq._errors`, bound here once) and the mapping of the
//! crate's errors onto them.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use shmq::{OpenError, RecvError, SendError};

pyo3::import_exception!(shmq._errors, ShmqError);
pyo3::import_exception!(shmq._errors, Full);
pyo3::import_exception!(shmq._errors, Empty);
pyo3::import_exception!(shmq._errors, QueueNotFoundError);
pyo3::import_exception!(shmq._errors, QueueExistsError);
pyo3::import_exception!(shmq._errors, QueuePermissionError);
pyo3::import_exception!(shmq._errors, InvalidNameError);
pyo3::import_exception!(shmq._errors, MessageTooLargeError);
pyo3::import_exception!(shmq._errors, CorruptedQueueError);
pyo3::import_exception!(shmq._errors, TooManyProcessesError);
pyo3::import_exception!(shmq._errors, WrongKindError);
pyo3::import_exception!(shmq._errors, Lagged);
pyo3::import_exception!(shmq._errors, QueueClosedError);
pyo3::import_exception!(shmq._errors, CodecError);
pyo3::import_exception!(shmq._errors, DecodeError);
pyo3::import_exception!(shmq._errors, PickleNotAllowedError);
pyo3::import_exception!(shmq._errors, UntrustedSegmentError);
pyo3::import_exception!(shmq._errors, NotASegmentError);
pyo3::import_exception!(shmq._errors, SharedMemoryFullError);
pyo3::import_exception!(shmq._errors, SharedMemoryError);
pyo3::import_exception!(shmq._errors, TooManyOpenFilesError);
pyo3::import_exception!(shmq._errors, InvalidArgumentError);
pyo3::import_exception!(shmq._errors, ViewReleasedError);
pyo3::import_exception!(shmq._errors, ShutDown);
pyo3::import_exception!(shmq._errors, WouldDeadlockError);

/// Linux's errno values for "too many open files": in this process, and in the system.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// What a handle is called in messages, and what its `Full` says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Noun {
    /// "queue", "broadcast", "subscription to".
    pub(crate) what: &'static str,
    /// Said by `Full` when a send gives up.
    pub(crate) full: &'static str,
    /// Said by `Empty` when a receive gives up.
    pub(crate) empty: &'static str,
}

pub(crate) const QUEUE: Noun = Noun {
    what: "queue",
    full: "queue is full",
    empty: "queue is empty",
};
pub(crate) const BROADCAST: Noun = Noun {
    what: "broadcast",
    full: "broadcast is full: the slowest subscriber has not read the oldest messages",
    empty: "",
};
pub(crate) const SUBSCRIPTION: Noun = Noun {
    what: "subscription to",
    full: "",
    empty: "no message",
};

/// The exception for a failed open of queue or broadcast `name`.
pub(crate) fn open_error(name: &str, e: OpenError) -> PyErr {
    let msg = e.to_string();
    match e {
        OpenError::AlreadyExists(_) => QueueExistsError::new_err(msg),
        OpenError::DoesNotExist(_) => QueueNotFoundError::new_err(msg),
        OpenError::PermissionDenied(_) => QueuePermissionError::new_err(msg),
        OpenError::InvalidName(_) => InvalidNameError::new_err(msg),
        OpenError::InvalidArgument(_) => InvalidArgumentError::new_err(msg),
        OpenError::Corrupted { .. } | OpenError::NotInitialized(_) => {
            CorruptedQueueError::new_err(msg)
        }
        OpenError::TooManyProcesses { .. } => TooManyProcessesError::new_err(msg),
        OpenError::WrongKind { .. } => WrongKindError::new_err(msg),
        OpenError::UntrustedOwner { .. } | OpenError::TooWidelyWritable { .. } => {
            UntrustedSegmentError::new_err(msg)
        }
        OpenError::NotASegment(_) => NotASegmentError::new_err(msg),
        OpenError::NoSpace { .. } => SharedMemoryFullError::new_err(msg),
        OpenError::Io(e) => os_error_of(&format!("cannot open {name:?}"), &e),
        _ => SharedMemoryError::new_err(msg),
    }
}

/// An OS error as a `ShmqError` that is also an `OSError` (with its errno): running out of
/// file descriptors is a `TooManyOpenFilesError` that says what to do.
pub(crate) fn os_error(e: std::io::Error) -> PyErr {
    os_error_of("shmq", &e)
}

fn os_error_of(what: &str, e: &std::io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(EMFILE) => TooManyOpenFilesError::new_err((
            format!(
                "{what}: too many open files in this process (each open queue, broadcast and \
                 subscription keeps a file descriptor): close the handles you no longer use, or \
                 raise the limit (ulimit -n, resource.setrlimit(resource.RLIMIT_NOFILE, ...))"
            ),
            EMFILE,
        )),
        Some(ENFILE) => TooManyOpenFilesError::new_err((
            format!(
                "{what}: the system's table of open files is full: close handles you no longer \
                 use, or raise the system's limit (sysctl fs.file-max)"
            ),
            ENFILE,
        )),
        Some(code) => SharedMemoryError::new_err((code, format!("{what}: {e}"))),
        None => SharedMemoryError::new_err(format!("{what}: {e}")),
    }
}

/// The exception for a failed send to `name`. `Interrupted` never gets here: the waiter
/// keeps the exception that stopped the wait.
pub(crate) fn send_error(noun: Noun, name: &str, e: SendError) -> PyErr {
    let what = noun.what;
    match e {
        SendError::Full | SendError::Timeout => Full::new_err(noun.full),
        SendError::ShutDown => ShutDown::new_err(format!("{what} {name:?} was shut down")),
        SendError::WouldDeadlock(w) => {
            WouldDeadlockError::new_err(format!("{what} {name:?}: would deadlock: {w}"))
        }
        SendError::TooLarge { size, max } => MessageTooLargeError::new_err(format!(
            "message of {size} bytes can never fit in {what} {name:?} (at most {max} bytes; \
             create it with a larger capacity, or pass allow_large=True)"
        )),
        SendError::Corrupted(w) => CorruptedQueueError::new_err(format!("{what} {name:?}: {w}")),
        SendError::Unsupported(w) => InvalidArgumentError::new_err(format!("{what} {name:?}: {w}")),
        SendError::SideSegment {
            kind: std::io::ErrorKind::StorageFull,
            ..
        } => SharedMemoryFullError::new_err(format!("{what} {name:?}: {e}")),
        e => ShmqError::new_err(format!("{what} {name:?}: {e}")),
    }
}

/// The exception for a failed receive from `name` (see [`send_error`] for `Interrupted`).
pub(crate) fn recv_error(noun: Noun, name: &str, e: RecvError) -> PyErr {
    let what = noun.what;
    match e {
        RecvError::Empty | RecvError::Timeout => Empty::new_err(noun.empty),
        RecvError::ShutDown => ShutDown::new_err(format!("{what} {name:?} was shut down")),
        RecvError::Lagged { missed } => Lagged::new_err((missed,)),
        RecvError::WouldDeadlock(w) => {
            WouldDeadlockError::new_err(format!("{what} {name:?}: would deadlock: {w}"))
        }
        RecvError::Corrupted(w) => CorruptedQueueError::new_err(format!("{what} {name:?}: {w}")),
        RecvError::Unsupported(w) => InvalidArgumentError::new_err(format!("{what} {name:?}: {w}")),
        e => ShmqError::new_err(format!("{what} {name:?}: {e}")),
    }
}

/// A `DecodeError` (or `PickleNotAllowedError`) carrying the message's bytes and codec id.
pub(crate) fn decode_error(
    py: Python<'_>,
    pickle_refused: bool,
    msg: String,
    raw: &Bound<'_, PyBytes>,
    codec: u16,
    cause: Option<PyErr>,
) -> PyErr {
    let err = if pickle_refused {
        PickleNotAllowedError::new_err((msg, raw.clone().unbind(), codec))
    } else {
        DecodeError::new_err((msg, raw.clone().unbind(), codec))
    };
    err.set_cause(py, cause);
    err
}
