//! Index entries that a CREATE set in the cache but that are not yet written
//! to the inode, and how they are batched into range writes.

use heapless::Vec;

use crate::reply::Token;

/// Most entries waiting for their index write at once.
pub const DIRTY_CAP: usize = 128;
/// Most entries in one index write (4 KiB of payload).
pub const MAX_RUN: u32 = 1024;

#[derive(Clone, Copy, Debug)]
struct Entry {
    idx: u32,
    token: Token,
    /// The key of the index write (or check) that carries it.
    run: Option<u32>,
    /// The inode may hold this value already (the VDI's id changed while
    /// it was on its way): read before writing. An index write resets the
    /// server's generation count of every entry it covers, so an entry that
    /// did not change must never be written again.
    recheck: bool,
    /// Index writes of this entry that failed with a transient result, or
    /// had to be sent again because the VDI changed under them.
    attempts: u8,
}

/// The dirty entries, each with the operation that waits for it.
#[derive(Debug, Default)]
pub struct Dirty {
    entries: Vec<Entry, DIRTY_CAP>,
}

/// A contiguous run of index entries to write (or, for a recheck, to read
/// first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First index.
    pub first: u32,
    /// Number of entries.
    pub count: u32,
    /// Read the entries before writing them.
    pub recheck: bool,
    /// Failed writes so far (for the retry bound).
    pub attempt: u8,
}

impl Dirty {
    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries wait for a run to be sent.
    pub fn unsent(&self) -> usize {
        self.entries.iter().filter(|e| e.run.is_none()).count()
    }

    /// Add an entry; false if full (callers reserve room before creating).
    pub fn push(&mut self, idx: u32, token: Token) -> bool {
        self.entries
            .push(Entry {
                idx,
                token,
                run: None,
                recheck: false,
                attempts: 0,
            })
            .is_ok()
    }

    /// Choose the next run among unsent entries: the lowest one and the
    /// dirty entries right after it (with the same recheck state), and mark
    /// them as carried by `key`. Runs never cover an entry that is not
    /// dirty.
    pub fn take_run(&mut self, key: u32) -> Option<Run> {
        let start = self
            .entries
            .iter()
            .filter(|e| e.run.is_none())
            .min_by_key(|e| e.idx)?;
        let (first, recheck) = (start.idx, start.recheck);
        let mut end = first + 1;
        while end - first < MAX_RUN
            && self
                .entries
                .iter()
                .any(|e| e.run.is_none() && e.idx == end && e.recheck == recheck)
        {
            end += 1;
        }
        let mut attempt = 0;
        for e in self.entries.iter_mut() {
            if e.run.is_none() && e.idx >= first && e.idx < end && e.recheck == recheck {
                e.run = Some(key);
                attempt = attempt.max(e.attempts);
            }
        }
        Some(Run {
            first,
            count: end - first,
            recheck,
            attempt,
        })
    }

    /// Take one unsent entry (not awaiting a check) for which `pick` holds,
    /// marking it as carried by `key`; returns its index.
    pub fn take_one(&mut self, key: u32, pick: impl Fn(u32) -> bool) -> Option<u32> {
        let e = self
            .entries
            .iter_mut()
            .filter(|e| e.run.is_none() && !e.recheck && pick(e.idx))
            .min_by_key(|e| e.idx)?;
        e.run = Some(key);
        Some(e.idx)
    }

    /// The entries carried by `key` go back to waiting for a write.
    pub fn release(&mut self, key: u32) {
        for e in self.entries.iter_mut() {
            if e.run == Some(key) {
                e.run = None;
                e.recheck = false;
            }
        }
    }

    /// The run carried by `id` is over (on the inode, or failed for
    /// good): drop its entries and call `done` with each waiting
    /// operation's token.
    pub fn complete(&mut self, id: u32, mut done: impl FnMut(Token)) {
        self.entries.retain(|e| {
            if e.run == Some(id) {
                done(e.token);
                false
            } else {
                true
            }
        });
    }

    /// The run carried by `key` must be sent again; `recheck` when the
    /// inode it goes to may already hold the values.
    pub fn requeue(&mut self, key: u32, recheck: bool) {
        for e in self.entries.iter_mut() {
            if e.run == Some(key) {
                e.run = None;
                e.recheck |= recheck;
                e.attempts = e.attempts.saturating_add(1);
            }
        }
    }

    /// Mark every unsent entry that was tried more than `max` times as
    /// carried by `key`, to be failed; returns whether there was any.
    pub fn take_exhausted(&mut self, key: u32, max: u8) -> bool {
        let mut any = false;
        for e in self.entries.iter_mut() {
            if e.run.is_none() && e.attempts > max {
                e.run = Some(key);
                any = true;
            }
        }
        any
    }

    /// The write carrying `key` failed with a transient result and may or
    /// may not have been applied: its entries stay with `key` (a check will
    /// read them back) and count one more attempt.
    pub fn failed_once(&mut self, key: u32, attempt: u8) {
        for e in self.entries.iter_mut() {
            if e.run == Some(key) {
                e.attempts = e.attempts.max(attempt);
            }
        }
    }

    /// Every entry must be checked against a new inode (the VDI's id
    /// changed).
    pub fn requeue_all(&mut self) {
        for e in self.entries.iter_mut() {
            e.run = None;
            e.recheck = true;
            e.attempts = e.attempts.saturating_add(1);
        }
    }

    /// The recheck `key` read the inode: entries whose value the inode
    /// already holds stay with `key` (whether the inode is still the
    /// working one is checked next); the others are written next. Returns
    /// whether any entry stayed.
    pub fn checked(&mut self, key: u32, holds: impl Fn(u32) -> bool) -> bool {
        let mut stayed = false;
        for e in self.entries.iter_mut() {
            if e.run != Some(key) {
                continue;
            }
            if holds(e.idx) {
                e.recheck = false;
                stayed = true;
            } else {
                e.run = None;
                e.recheck = false;
            }
        }
        stayed
    }
}
