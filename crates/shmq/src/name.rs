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
