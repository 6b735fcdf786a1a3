//! Index entries that a CREATE set in the cache but that are not yet written
//! to the inode, and how they are batched into range writes.

use heapless::Vec;

use super::event::Token;

/// Most entries waiting for their index write at once.
pub const DIRTY_CAP: usize = 128;
/// Most entries in one index write (4 KiB of payload).
pub const MAX_RUN: u32 = 1024;
/// Entries between two dirty ones that a run may rewrite with their cached
/// (unchanged) values rather than start a new run.
pub const MAX_GAP: u32 = 8;

#[derive(Clone, Copy, Debug)]
struct Entry {
    idx: u32,
    token: Token,
    /// The id of the index write that carries it, if one is under way.
    run: Option<u32>,
}

/// The dirty entries, each with the operation that waits for it.
#[derive(Debug, Default)]
pub struct Dirty {
    entries: Vec<Entry, DIRTY_CAP>,
}

/// A contiguous run of index entries to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First index.
    pub first: u32,
    /// Number of entries.
    pub count: u32,
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
            })
            .is_ok()
    }

    /// Choose the next run among unsent entries, starting at the lowest, and
    /// mark its entries as carried by request `id`.
    pub fn take_run(&mut self, id: u32) -> Option<Run> {
        let first = self
            .entries
            .iter()
            .filter(|e| e.run.is_none())
            .map(|e| e.idx)
            .min()?;
        let mut end = first + 1;
        loop {
            let next = self
                .entries
                .iter()
                .filter(|e| e.run.is_none() && e.idx >= end)
                .map(|e| e.idx)
                .min();
            match next {
                Some(n) if n - end <= MAX_GAP && n + 1 - first <= MAX_RUN => end = n + 1,
                _ => break,
            }
        }
        for e in self.entries.iter_mut() {
            if e.run.is_none() && e.idx >= first && e.idx < end {
                e.run = Some(id);
            }
        }
        Some(Run {
            first,
            count: end - first,
        })
    }

    /// The run carried by `id` is on the inode: drop its entries and call
    /// `done` with each waiting operation's token.
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

    /// The run carried by `id` must be sent again.
    pub fn requeue(&mut self, id: u32) {
        for e in self.entries.iter_mut() {
            if e.run == Some(id) {
                e.run = None;
            }
        }
    }

    /// Every entry must be sent again (the VDI's id changed).
    pub fn requeue_all(&mut self) {
        for e in self.entries.iter_mut() {
            e.run = None;
        }
    }

    /// Drop the entries of the run `id` and call `failed` for each waiting
    /// operation: the index write failed for good.
    pub fn fail(&mut self, id: u32, failed: impl FnMut(Token)) {
        self.complete(id, failed);
    }
}
