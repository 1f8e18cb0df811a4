//! The methods `Queue`, `Broadcast` and `Subscriber` share, written once: each type's `impl`
//! block expands these macros over its private [`crate::handle::Handle`] (`self.h`).

/// Every handle type: naming, lifecycle across processes and forks, wake-ups.
macro_rules! handle_api {
    () => {
        /// The full name (namespace included).
        pub fn name(&self) -> &str {
            self.h.name()
        }
        /// Ring size in bytes.
        pub fn capacity(&self) -> u64 {
            self.h.capacity()
        }
        /// Counters of the ring (the broadcast's for a subscription).
        pub fn stats(&self) -> Stats {
            self.h.stats()
        }
        /// Whether it was shut down (by any process).
        pub fn is_shutdown(&self) -> bool {
            self.h.is_shutdown()
        }
        /// Removes the name now: processes attached keep using the ring, nobody new can
        /// open it, and its memory is freed when the last one detaches.
        pub fn unlink(&self) -> io::Result<()> {
            self.h.unlink()
        }
        /// Keeps the ring for `grace` even if its last process detaches meanwhile: for a
        /// handle about to reach another process (pickled, or inherited by a child that has
        /// not attached yet), so that the ring is still there when it attaches.
        pub fn keep_alive(&self, grace: Duration) {
            self.h.keep_alive(grace);
        }
        /// A handle sent with `keep_alive` (by another process) arrived: it no longer keeps
        /// the ring.
        pub fn arrived(&self) {
            self.h.arrived();
        }
        /// Tells this ring apart from others made under the same name later (see
        /// [`crate::remove_if_nonce`]).
        pub fn instance_id(&self) -> u64 {
            self.h.instance_id()
        }
        /// Wakes every thread blocked on this ring, in every process; they re-check their
        /// condition and sleep again if nothing changed (a binding's `close()` from another
        /// thread uses it so that its own blocked calls notice).
        pub fn wake_all_waiters(&self) {
            self.h.wake_all();
        }
        /// After `fork()`, in the child: drops the inherited handle without detaching it
        /// (never `drop` it, which would detach the parent's attachment).
        pub fn forget_in_child(self) {
            self.h.forget_in_child();
        }
    };
}

/// The types that send: `Queue` and `Broadcast` (whose sends publish to every subscriber).
macro_rules! sender_api {
    () => {
        /// Largest payload one message may have in the ring (larger ones need
        /// [`crate::Builder::allow_large`]).
        pub fn max_message_size(&self) -> u64 {
            self.h.max_message_size()
        }
        /// Whether the segment outlives its last process.
        pub fn is_persistent(&self) -> bool {
            self.h.is_persistent()
        }
        /// Whether this handle sends messages larger than the ring (through side segments).
        pub fn allows_large(&self) -> bool {
            self.h.allows_large()
        }
        /// Sends `msg` (raw codec), waiting for space as long as needed.
        pub fn send(&self, msg: &[u8]) -> Result<(), SendError> {
            self.send_message(Message::raw(msg), Wait::Forever)
        }
        /// Sends `msg` if it fits now (`Full` otherwise).
        pub fn try_send(&self, msg: &[u8]) -> Result<(), SendError> {
            self.send_message(Message::raw(msg), Wait::No)
        }
        /// Sends `msg`, waiting for space at most `timeout`.
        pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
            self.send_message(Message::raw(msg), Wait::timeout(timeout))
        }
        /// Sends one message with an explicit codec id.
        pub fn send_message(&self, msg: Message<'_>, wait: Wait) -> Result<(), SendError> {
            self.send_many_with(std::slice::from_ref(&msg), wait, &mut Plain)
                .map_err(|e| e.error)
        }
        /// Sends every message of `msgs`, in order: at once (all or nothing) when they fit
        /// in the ring together, otherwise in consecutive chunks that do. On an error, the
        /// [`SendManyError`] says how many went in.
        pub fn send_many(&self, msgs: &[Message<'_>], wait: Wait) -> Result<(), SendManyError> {
            self.send_many_with(msgs, wait, &mut Plain)
        }
        /// As `send_many`, with `waiter`'s hooks around every sleep (to release a lock
        /// meanwhile, or to give up on a signal).
        pub fn send_many_with(
            &self,
            msgs: &[Message<'_>],
            wait: Wait,
            waiter: &mut dyn Waiter,
        ) -> Result<(), SendManyError> {
            self.h.send_many(msgs, wait, waiter)
        }
    };
}
