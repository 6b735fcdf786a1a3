//! Striping a byte range over a VDI's objects, and choosing for each piece
//! what to send (PROTOCOL.md §9.4). Pure functions of the index entry.

use crate::object_size::ObjectSize;
use crate::oid::{Oid, Vid};

/// One object's share of a byte range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Data object index.
    pub idx: u32,
    /// Offset inside the object.
    pub offset: u32,
    /// Length of the piece.
    pub len: u32,
    /// Offset of the piece inside the caller's range.
    pub data_offset: u64,
}

/// The pieces of `offset..offset + len`, one per object touched, in order.
/// Never crosses an object boundary.
pub fn pieces(object_size: ObjectSize, offset: u64, len: u64) -> impl Iterator<Item = Piece> {
    let obj = u64::from(object_size.bytes());
    let end = offset.saturating_add(len);
    let mut pos = offset;
    core::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let (idx, inner) = object_size.locate(pos);
        let take = (obj - u64::from(inner)).min(end - pos);
        let piece = Piece {
            idx: idx as u32,
            offset: inner,
            len: take as u32,
            data_offset: pos - offset,
        };
        pos += take;
        Some(piece)
    })
}

/// How to read an object given its index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAction {
    /// Unallocated: zeros, no request.
    Zeros,
    /// READ_OBJ of this oid (own, or an ancestor's for shared objects).
    Read(Oid),
}

/// How to write an object given its index entry and the VDI's own VID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteAction {
    /// The object is the VDI's own: WRITE_OBJ.
    Write(Oid),
    /// Unallocated: CREATE_AND_WRITE_OBJ of the own oid.
    Create(Oid),
    /// Shared with an ancestor: CREATE_AND_WRITE_OBJ of the own oid with COW
    /// from the ancestor's object.
    CreateCow {
        /// The VDI's own object.
        oid: Oid,
        /// The ancestor's object to copy.
        cow: Oid,
    },
}

impl WriteAction {
    /// Whether this creates an object (and so needs an index update after).
    pub fn creates(self) -> bool {
        !matches!(self, WriteAction::Write(_))
    }

    /// The object written.
    pub fn oid(self) -> Oid {
        match self {
            WriteAction::Write(oid) | WriteAction::Create(oid) => oid,
            WriteAction::CreateCow { oid, .. } => oid,
        }
    }
}

/// What a read of object `idx` with index entry `entry` does.
pub fn read_action(entry: u32, idx: u32) -> ReadAction {
    match Vid::from_entry(entry) {
        None => ReadAction::Zeros,
        Some(owner) => ReadAction::Read(Oid::data(owner, idx)),
    }
}

/// What a write to object `idx` with index entry `entry` does for `vid`.
pub fn write_action(vid: Vid, entry: u32, idx: u32) -> WriteAction {
    let own = Oid::data(vid, idx);
    match Vid::from_entry(entry) {
        None => WriteAction::Create(own),
        Some(owner) if owner == vid => WriteAction::Write(own),
        Some(owner) => WriteAction::CreateCow {
            oid: own,
            cow: Oid::data(owner, idx),
        },
    }
}
