//! Who a handle shares its segment with: the permission bits it asked for and the users it
//! trusts besides itself. Kept with the handle so that a pickled handle reopens alike.

use shmq::{Builder, Open};

#[derive(Clone, Debug)]
pub(crate) struct Access {
    pub(crate) mode: u32,
    /// Other owners accepted (`None`: any owner).
    pub(crate) trusted: Option<Vec<u32>>,
}

impl Access {
    pub(crate) fn new(mode: u32, trusted_owners: Option<Vec<u32>>, trust_any_owner: bool) -> Self {
        Self {
            mode,
            trusted: if trust_any_owner {
                None
            } else {
                Some(trusted_owners.unwrap_or_default())
            },
        }
    }

    pub(crate) fn apply<T: Open>(&self, b: Builder<T>) -> Builder<T> {
        let b = b.mode(self.mode);
        match &self.trusted {
            None => b.trust_any_owner(),
            Some(uids) => uids.iter().fold(b, |b, &uid| b.trust_owner(uid)),
        }
    }

    /// `(mode, trusted owners or None for any)`, as the constructors take them back.
    pub(crate) fn as_tuple(&self) -> (u32, Option<Vec<u32>>) {
        (self.mode, self.trusted.clone())
    }
}
