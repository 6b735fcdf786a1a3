//! What the engine hands back: transmits, events and the outcomes of
//! control operations (its errors are [`crate::reply::Error`]).

use crate::reply::{DataRange, Error, Token};

/// A request ready to go on the wire: `header_len` bytes that the engine
/// wrote into the caller's buffer (the 48-byte header and any small payload
/// the engine owns, such as a name or index entries), then, if `data` is
/// set, that range of the caller's own bytes for the write `token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The request id.
    pub id: u32,
    /// Bytes of the caller's buffer to send first.
    pub header_len: usize,
    /// Caller data to send after them.
    pub data: Option<DataRange>,
}

/// The facts about an open VDI that callers need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Its VID.
    pub vid: u32,
    /// Virtual size in bytes.
    pub size: u64,
    /// Object size in bytes.
    pub object_size: u32,
    /// Copies (d+p for erasure coding).
    pub copies: u8,
    /// 0 replication, else the erasure-code byte.
    pub copy_policy: u8,
    /// Whether it is a snapshot (read-only).
    pub snapshot: bool,
    /// Snapshot id.
    pub snap_id: u32,
    /// Parent VID, 0 if none.
    pub parent: u32,
    /// A hyper volume (B-tree index): writes are taken only by a caller
    /// that commits them ([`super::Engine::accept_hyper_writes`]).
    pub hyper: bool,
}

/// Completions and notices, in the order they happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A read or write finished (all its data and index updates are done).
    Done {
        /// The operation.
        token: Token,
        /// Its outcome.
        result: Result<(), Error>,
    },
    /// Every byte of a write is on the cluster and will not be sent again:
    /// its buffer may be reused. Its index entries may still be on their
    /// way; [`Event::Done`] follows when they are on the inode.
    DataDone {
        /// The write.
        token: Token,
    },
    /// Part of a read lies in unallocated objects: the caller fills these
    /// bytes of its buffer with zeros (or leaves a hole).
    Zeros(DataRange),
    /// A control operation finished.
    Control(ControlDone),
}

/// The outcome of a control operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlDone {
    /// The cluster's defaults.
    ClusterDefault {
        /// Default copies.
        copies: u8,
        /// Default copy policy.
        copy_policy: u8,
        /// Default object size shift.
        block_size_shift: u8,
    },
    /// A VDI was created.
    Created {
        /// Its VID.
        vid: u32,
    },
    /// The VDI is open.
    Opened(VolumeInfo),
    /// The VDI was closed (and its lock released).
    Closed,
    /// A snapshot was taken: `snapshot` is the old VID, now read-only, and
    /// the open VDI continues as `working`.
    Snapshot {
        /// VID of the new snapshot.
        snapshot: u32,
        /// VID of the working VDI that continues.
        working: u32,
    },
    /// A clone of the open snapshot was created.
    Cloned {
        /// Its VID.
        vid: u32,
    },
    /// The VDI was grown.
    Resized {
        /// The new size.
        size: u64,
    },
    /// A VDI or snapshot was deleted.
    Deleted {
        /// Its VID.
        vid: u32,
    },
    /// The working VDI was rolled back to the open snapshot.
    RolledBack {
        /// VID of the new working VDI.
        vid: u32,
    },
    /// A control operation failed.
    Failed(Error),
}
