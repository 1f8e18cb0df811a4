//! Zero copy through the public handles: a [`Loan`] is room for one message in the ring,
//! written in place and then committed (dropped: abandoned); a queue's [`Lent`] message is
//! read in place until dropped (see `shmq_core::ring::loan` for the protocol side).
//!
//! **The contract.** A loan or a hold is an operation of the protocol left open while the
//! caller's code runs: the calling attachment keeps one of its lanes, other processes see
//! nothing of a loan until it is committed, and consumers wait at it (a loan held long holds
//! the ring's head back; a hold held long keeps its bytes from being reclaimed). Other
//! threads of the handle go on sending and receiving (a lane is kept for them). At most
//! `LANES - 1` = 3 loans and holds are open per handle at once; a further one waits for one
//! of them to end, unless every open one belongs to the calling thread, which nobody else
//! can end: then it fails at once ([`SendError::WouldDeadlock`]) instead of hanging. A
//! thread that asks for a loan while it holds one on the same handle gets that error too
//! (a blocking loan behind one's own uncommitted record may wait for ever).

use crate::handle::{Handle, Wait};
use crate::large::LargeMessage;
use crate::{RecvError, SendError};
use shmq_core::layout::{LANES, RECORD_FLAG_SIDE};
use shmq_core::{Claim, Waiter};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The loans and holds open on one handle: one word per long-lived lane (`1..LANES`, the
/// lanes the core gives them), 0 when free, else the opening thread's token shifted left by
/// one, bit 0 set for a loan. Per handle and lock-free: loans of different handles (or
/// threads) never wait for each other here, and a child forked at any moment inherits no
/// lock held by a thread that does not exist in it.
///
/// Orderings: every access is Relaxed. A word's writers are ordered by the lane itself: it
/// is written only while its lane is ours (taken with the core's Acquire, cleared before
/// the core's Release gives the lane back), so a next holder's word lands after our clear.
/// What decides a caller's result is its own thread's words, which it wrote itself (program
/// order), or cleared by another thread it handed a loan to (seen once the caller
/// synchronizes with that thread, as for any handover). Other threads' words are only a
/// hint ([`hold_available`]).
#[derive(Debug, Default)]
pub(crate) struct OpenLoans([AtomicU64; LANES - 1]);

/// A number for the calling thread, unique in the process (0: not drawn yet). Not
/// `ThreadId`: its number is unstable API, and a token is one thread-local read.
fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static TOKEN: Cell<u64> = const { Cell::new(0) });
    TOKEN.with(|t| {
        if t.get() == 0 {
            // Relaxed: only uniqueness matters, which the RMW gives.
            t.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

impl OpenLoans {
    /// Whether the calling thread may open a loan (`loan`) or a hold: its word to record,
    /// or why it would deadlock.
    fn check(&self, loan: bool) -> Result<u64, &'static str> {
        let me = thread_token() << 1;
        let mut mine = 0;
        for w in &self.0 {
            let v = w.load(Ordering::Relaxed); // Relaxed: see the type's comment.
            if v & !1 == me {
                if loan && v & 1 == 1 {
                    return Err("this thread already holds a loan of this handle: commit it first");
                }
                mine += 1;
            }
        }
        if mine >= LANES - 1 {
            return Err(
                "this thread holds every loan and hold this handle may have open (3): end one first",
            );
        }
        Ok(me | u64::from(loan))
    }

    fn word(&self, lane: usize) -> Option<&AtomicU64> {
        // Lanes come from the core (`1..LANES`); `get` keeps a surprise from panicking.
        self.0.get(lane.wrapping_sub(1))
    }

    /// Records `word` (from [`OpenLoans::check`]) on `lane`, just taken.
    fn open(&self, lane: usize, word: u64) {
        if let Some(w) = self.word(lane) {
            w.store(word, Ordering::Relaxed); // Relaxed: see the type's comment.
        }
    }

    /// Clears `lane`'s word: called before the core gives the lane back (see the type's
    /// comment), by whichever thread ends the loan or hold.
    fn close(&self, lane: usize) {
        if let Some(w) = self.word(lane) {
            w.store(0, Ordering::Relaxed); // Relaxed: see the type's comment.
        }
    }

    fn count(&self) -> usize {
        // Relaxed: a hint.
        self.0
            .iter()
            .filter(|w| w.load(Ordering::Relaxed) != 0)
            .count()
    }
}

/// Whether a hold could be taken now without waiting for a lane (fewer than 3 open).
pub(crate) fn hold_available(h: &Handle) -> bool {
    h.open_loans().count() < LANES - 1
}

impl Handle {
    /// Opens a loan of `len` bytes (see the module's comment), waiting for room as `wait`
    /// says.
    pub(crate) fn loan(
        &self,
        len: usize,
        wait: Wait,
        w: &mut dyn Waiter,
    ) -> Result<shmq_core::Loan, SendError> {
        let word = self
            .open_loans()
            .check(true)
            .map_err(SendError::WouldDeadlock)?;
        let r = self
            .ring()
            .loan_blocking(len as u64, wait.deadline(), w)
            .map_err(|e| match e {
                shmq_core::SendTimeoutError::Timeout if wait == Wait::No => SendError::Full,
                e => e.into(),
            });
        if self.ring().backing().truncated() {
            if let Ok(l) = r {
                self.ring().abandon_loan(l);
            }
            return Err(SendError::Corrupted(crate::handle::TRUNCATED));
        }
        let l = r?;
        self.open_loans().open(l.lane(), word);
        Ok(l)
    }

    pub(crate) fn end_loan(&self, loan: shmq_core::Loan, commit: Option<u16>) {
        self.open_loans().close(loan.lane());
        match commit {
            Some(codec) => self.ring().commit_loan(loan, codec, 0),
            None => self.ring().abandon_loan(loan),
        }
    }

    /// Holds the next message of a queue in place, waiting as `wait` says. A message larger
    /// than the ring is mapped from its side segment and its record released at once.
    pub(crate) fn hold(&self, wait: Wait, w: &mut dyn Waiter) -> Result<Hold, RecvError> {
        let word = self
            .open_loans()
            .check(false)
            .map_err(RecvError::WouldDeadlock)?;
        let ring = self.ring();
        let claim = match ring.claim_held_blocking(wait.deadline(), w) {
            Ok(c) => c,
            Err(e) => {
                return Err(match e {
                    shmq_core::RecvTimeoutError::Timeout if wait == Wait::No => RecvError::Empty,
                    e => e.into(),
                });
            }
        };
        if claim.flags & RECORD_FLAG_SIDE == 0 {
            self.open_loans().open(claim.lane(), word);
            return Ok(Hold::Ring(claim));
        }
        // SAFETY: just claimed, released right below.
        let (a, b) = unsafe { ring.claim_payload(&claim) };
        let large = LargeMessage::open(ring.backing(), claim.codec, (&a, &b), true);
        ring.release_claim(claim);
        large.map(Hold::Large).map_err(RecvError::Corrupted)
    }

    /// The payload of a held record, in (up to) two parts.
    ///
    /// # Safety
    ///
    /// `claim` must come from [`Handle::hold`] on this handle and not be released yet; the
    /// slices must not be used after its release.
    pub(crate) unsafe fn held_parts(&self, claim: &Claim) -> (&[u8], &[u8]) {
        // SAFETY: see `# Safety`.
        match unsafe { self.ring().claim_payload(claim) } {
            (std::borrow::Cow::Borrowed(a), std::borrow::Cow::Borrowed(b)) => (a, b),
            // Only typed (model-checking) storage copies, and it refuses holds.
            _ => unreachable!("shared-memory rings lend borrowed bytes"),
        }
    }

    pub(crate) fn release(&self, claim: Claim) {
        self.open_loans().close(claim.lane());
        self.ring().release_claim(claim);
    }
}

/// What a hold of a queue or subscription returns (the handle's private `hold`).
#[derive(Debug)]
pub enum Hold {
    /// A record held in the ring.
    Ring(Claim),
    /// A message larger than the ring, mapped from its side segment (nothing held).
    Large(LargeMessage),
}

/// Room for one message in a ring, written in place (it derefs to the bytes, zeroed or
/// not: whatever the ring held) and published by [`Loan::commit`]. Dropped without a
/// commit, it is abandoned: nothing is delivered. See [`crate::Queue::loan`].
///
/// A loan belongs to the process that opened it: the copy a `fork()` child inherits
/// publishes and abandons nothing (its commit, abandon and drop do nothing), so the parent
/// still ends the loan itself.
#[derive(Debug)]
pub struct Loan<'a> {
    h: &'a Handle,
    loan: Option<shmq_core::Loan>,
    codec: u16,
    /// The fork generation it was opened in (see `os::fork_generation`).
    forks: u64,
}

impl<'a> Loan<'a> {
    pub(crate) fn new(h: &'a Handle, loan: shmq_core::Loan) -> Self {
        Self {
            h,
            loan: Some(loan),
            codec: crate::CODEC_RAW,
            forks: crate::os::fork_generation(),
        }
    }
    /// Sets the codec id the message is published with (raw bytes by default).
    pub fn set_codec(&mut self, codec: u16) {
        self.codec = codec;
    }
    /// Publishes the message.
    pub fn commit(mut self) {
        self.end(Some(self.codec));
    }
    /// Gives the room back without publishing anything (as dropping does).
    pub fn abandon(mut self) {
        self.end(None);
    }
    /// Ends the loan (published with `commit`'s codec, or abandoned), once, and only in
    /// the process that opened it: the lane and the reservation are that process's.
    fn end(&mut self, commit: Option<u16>) {
        if let Some(l) = self.loan.take() {
            if crate::os::fork_generation() == self.forks {
                self.h.end_loan(l, commit);
            }
        }
    }
}

impl std::ops::Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let l = self.loan.as_ref().expect("open until commit or drop");
        // SAFETY: the loan is open (it ends only by consuming `self`); its bytes are ours
        // alone, contiguous, `len` long, and the borrow of `self` bounds the slice.
        unsafe { std::slice::from_raw_parts(self.h.ring().loan_bytes(l), l.len()) }
    }
}

impl std::ops::DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let l = self.loan.as_ref().expect("open until commit or drop");
        // SAFETY: as in `deref`, with `&mut self` making the slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.h.ring().loan_bytes(l), l.len()) }
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        self.end(None);
    }
}

/// Zero-copy sends and queue holds for bindings, whose buffers outlive any Rust borrow: the
/// caller keeps the handle alive and ends every loan and hold exactly once.
#[doc(hidden)]
pub mod ext {
    use super::*;
    pub use shmq_core::{Claim, Loan as RawLoan};

    /// Opens a loan on `q` (see [`crate::Queue::loan`]).
    pub fn loan(
        q: &crate::Queue,
        len: usize,
        wait: Wait,
        w: &mut dyn Waiter,
    ) -> Result<RawLoan, SendError> {
        q.handle().loan(len, wait, w)
    }
    /// Opens a loan on a broadcast.
    pub fn publish_loan(
        b: &crate::Broadcast,
        len: usize,
        wait: Wait,
        w: &mut dyn Waiter,
    ) -> Result<RawLoan, SendError> {
        b.handle().loan(len, wait, w)
    }
    /// The bytes of an open loan.
    ///
    /// # Safety
    ///
    /// `l` must be open on the handle it was made on, and the pointer unused after it ends.
    pub unsafe fn loan_ptr(q: &crate::Queue, l: &RawLoan) -> *mut u8 {
        // SAFETY: see `# Safety`.
        unsafe { q.handle().ring().loan_bytes(l) }
    }
    /// As [`loan_ptr`], for a broadcast.
    ///
    /// # Safety
    ///
    /// As [`loan_ptr`].
    pub unsafe fn publish_loan_ptr(b: &crate::Broadcast, l: &RawLoan) -> *mut u8 {
        // SAFETY: see `# Safety`.
        unsafe { b.handle().ring().loan_bytes(l) }
    }
    /// Commits (`Some(codec)`) or abandons (`None`) a loan of `q`.
    pub fn end_loan(q: &crate::Queue, l: RawLoan, commit: Option<u16>) {
        q.handle().end_loan(l, commit);
    }
    /// As [`end_loan`], for a broadcast.
    pub fn end_publish_loan(b: &crate::Broadcast, l: RawLoan, commit: Option<u16>) {
        b.handle().end_loan(l, commit);
    }
    /// Whether a loan of `b` could open now without waiting for a lane (fewer than 3 loans
    /// open; a snapshot).
    pub fn publish_loan_available(b: &crate::Broadcast) -> bool {
        super::hold_available(b.handle())
    }

    /// Holds the next message of `q` in place (see [`crate::Queue::recv_lent`]).
    pub fn hold(q: &crate::Queue, wait: Wait, w: &mut dyn Waiter) -> Result<Hold, RecvError> {
        q.handle().hold(wait, w)
    }
    /// Whether `q` could hold one more message now (fewer than 3 loans and holds open).
    pub fn hold_available(q: &crate::Queue) -> bool {
        super::hold_available(q.handle())
    }
    /// The payload of a held record.
    ///
    /// # Safety
    ///
    /// `c` must come from [`hold`] on `q` and not be released; the slices are not used after.
    pub unsafe fn held_parts<'a>(q: &'a crate::Queue, c: &Claim) -> (&'a [u8], &'a [u8]) {
        // SAFETY: see `# Safety`.
        unsafe { q.handle().held_parts(c) }
    }
    /// Ends a hold: the message is consumed.
    pub fn release(q: &crate::Queue, c: Claim) {
        q.handle().release(c);
    }
}
