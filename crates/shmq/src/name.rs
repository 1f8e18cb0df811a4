//! Queue names and the segment names they map to.

use crate::OpenError;

/// Prefix of every ring segment's name in `/dev/shm`.
pub const SEGMENT_PREFIX: &str = crate::os::SEGMENT_PREFIX;

/// Checks a queue name (or namespace): 1 to 200 characters of `[A-Za-z0-9._-]`, not starting
/// with a dot.
pub fn validate_name(name: &str) -> Result<(), OpenError> {
    let bad = |why: &str| Err(OpenError::InvalidName(format!("{name:?}: {why}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 200 {
        return bad("longer than 200 characters");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return bad("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// The `/dev/shm` entry name of queue `name`.
pub fn segment_name(name: &str) -> String {
    format!("{SEGMENT_PREFIX}{name}")
}

/// Prefix of a removed ring that processes still use: `unlink` renames `shmq-<name>` to
/// `.shmq-removed-<nonce>-<name>` (hidden from listings, found by `gc`), and its last process
/// frees it.
pub(crate) const REMOVED_PREFIX: &str = ".shmq-removed-";

/// The name a removed ring with this nonce is kept under while processes still use it.
pub(crate) fn removed_name(name: &str, nonce: u64) -> String {
    format!("{REMOVED_PREFIX}{nonce:016x}-{name}")
}

/// The ring name inside a removed ring's segment name.
pub(crate) fn ring_of_removed(segment: &str) -> Option<&str> {
    let rest = segment.strip_prefix(REMOVED_PREFIX)?;
    let (nonce, name) = rest.split_at_checked(16)?;
    (nonce.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())?;
    name.strip_prefix('-')
}
