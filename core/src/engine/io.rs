//! Reads and writes that callers submit: their progress through the
//! objects they span, and when they are done.

use crate::reply::{Error, Token};

/// A read or write of a byte range of the open VDI.
#[derive(Clone, Copy, Debug)]
pub(super) struct Io {
    pub token: Token,
    pub kind: IoKind,
    /// Start of the range in the VDI.
    pub offset: u64,
    /// Length of the range.
    pub len: u64,
    /// Bytes of the range already planned (sent, or found to be holes).
    pub cursor: u64,
    /// Requests sent (or waiting to be resent) and not yet answered.
    pub outstanding: u32,
    /// Objects it created whose index entries are not yet on the inode.
    pub unindexed: u32,
    /// The first failure, if any; nothing more is planned after one.
    pub error: Option<Error>,
    /// First and last object index the range touches.
    pub first_idx: u64,
    pub last_idx: u64,
    /// Done, waiting for the caller to take its event.
    pub finished: bool,
    /// A write whose data is all acknowledged while its index entries are
    /// still on their way: the caller may reuse its buffer. Set once.
    pub data_done: DataDone,
}

/// What an [`Io`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IoKind {
    /// Read into the caller's buffer.
    Read,
    /// Write the caller's data.
    Write,
    /// Clear the index entries of whole objects; no data is sent.
    Discard,
}

/// Whether the caller was told that a write's buffer is free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DataDone {
    /// Not yet.
    No,
    /// To be reported.
    Pending,
    /// Reported.
    Told,
}

impl Io {
    /// Whether it changes the VDI (a write or a discard).
    pub fn writes(&self) -> bool {
        self.kind != IoKind::Read
    }

    /// Whether work remains (to plan, in flight, or index updates).
    pub fn active(&self) -> bool {
        !self.finished
    }

    /// Whether two operations must not run at once: they touch a common
    /// object and one of them writes (one CREATE per object, and reads see
    /// whole writes).
    pub fn conflicts(&self, other: &Io) -> bool {
        (self.writes() || other.writes())
            && self.first_idx <= other.last_idx
            && other.first_idx <= self.last_idx
    }

    /// Record a failure and stop planning.
    pub fn fail(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self.cursor = self.len;
    }

    /// Mark finished if nothing remains; true if it just finished.
    pub fn settle(&mut self) -> bool {
        let sent = self.cursor >= self.len && self.outstanding == 0;
        if !self.finished && sent && self.unindexed == 0 {
            self.finished = true;
            return true;
        }
        if sent && self.writes() && self.data_done == DataDone::No {
            self.data_done = DataDone::Pending;
        }
        false
    }
}
