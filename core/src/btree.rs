//! The B-tree index of a hyper volume (store_policy 1; PROTOCOL.md §7.5,
//! sheep's `lib/sd_inode.c`), read without an allocator: headers and
//! entries are parsed from the caller's bytes, a chunk at a time.
//!
//! The root sits where a flat inode has its index (offset 4664): an 8-byte
//! header (`magic` 0x6274, `depth`, `entries`), then at depth 1 the leaf
//! entries themselves (`idx`, `vdi_id`: 8 bytes, sorted), at depth 2
//! indirect entries (`idx` = the largest data index in the leaf, 4 pad
//! bytes, the leaf's oid: 16 bytes). A leaf is a 4 MiB object with the
//! same header (depth 1) and leaf entries.

use byteorder::{ByteOrder, LittleEndian};

use crate::engine::Problem;
use crate::inode;
use crate::oid::{Oid, OidKind};

/// The header's magic number.
pub const MAGIC: u16 = 0x6274;
/// Bytes of a header.
pub const HEADER_LEN: u32 = 8;
/// Bytes of a leaf entry, and of an indirect entry.
pub const LEAF_ENTRY_LEN: u32 = 8;
/// See [`LEAF_ENTRY_LEN`].
pub const INDIRECT_ENTRY_LEN: u32 = 16;
/// Where the root starts in the inode.
pub const ROOT_OFFSET: u32 = inode::INDEX_OFFSET;
/// The most leaf entries a root (depth 1) or a leaf holds.
pub const MAX_LEAF_ENTRIES: u32 = (4 << 20) / LEAF_ENTRY_LEN - 1;
/// The most indirect entries a root (depth 2) holds.
pub const MAX_INDIRECT_ENTRIES: u32 = (4 << 20) / INDIRECT_ENTRY_LEN - 1;

/// A node's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// 1: leaf entries follow; 2: indirect entries (the root only). 0: an
    /// empty tree (never written).
    pub depth: u16,
    /// How many entries follow.
    pub entries: u32,
}

impl Header {
    /// The header in `b` (8 bytes), checked: the magic, a depth of 1 or
    /// 2 (2 only where `root`), and no more entries than fit.
    pub fn parse(b: &[u8], root: bool) -> Result<Header, Problem> {
        let bad = |name, got: u64| Problem::Field {
            name,
            got,
            expected: 0,
        };
        if b.len() < HEADER_LEN as usize {
            return Err(Problem::Length {
                got: b.len() as u32,
                expected: HEADER_LEN,
            });
        }
        // sheep reads a zero first word as a tree never written.
        if root && b[..4] == [0; 4] {
            return Ok(Header {
                depth: 0,
                entries: 0,
            });
        }
        let magic = LittleEndian::read_u16(&b[..2]);
        if magic != MAGIC {
            return Err(bad("btree magic", magic.into()));
        }
        let depth = LittleEndian::read_u16(&b[2..4]);
        let entries = LittleEndian::read_u32(&b[4..8]);
        let max = match depth {
            1 => MAX_LEAF_ENTRIES,
            2 if root => MAX_INDIRECT_ENTRIES,
            d => return Err(bad("btree depth", d.into())),
        };
        if entries > max {
            return Err(bad("btree entries", entries.into()));
        }
        Ok(Header { depth, entries })
    }

    /// Bytes of one of its entries.
    pub fn entry_len(&self) -> u32 {
        if self.depth == 2 {
            INDIRECT_ENTRY_LEN
        } else {
            LEAF_ENTRY_LEN
        }
    }
}

/// The leaf entries in `b` (whole entries only): `(idx, vdi_id)`.
pub fn leaf_entries(b: &[u8]) -> impl Iterator<Item = (u32, u32)> + '_ {
    b.chunks_exact(LEAF_ENTRY_LEN as usize).map(|e| {
        (
            LittleEndian::read_u32(&e[..4]),
            LittleEndian::read_u32(&e[4..8]),
        )
    })
}

/// The indirect entry in `b` (16 bytes): the largest index its leaf holds,
/// and the leaf, refused unless it is a B-tree node of `vid`.
pub fn indirect_entry(b: &[u8], vid: u32) -> Result<(u32, Oid), Problem> {
    if b.len() < INDIRECT_ENTRY_LEN as usize {
        return Err(Problem::Length {
            got: b.len() as u32,
            expected: INDIRECT_ENTRY_LEN,
        });
    }
    let idx = LittleEndian::read_u32(&b[..4]);
    let oid = Oid(LittleEndian::read_u64(&b[8..16]));
    if oid.kind() != OidKind::Btree || oid.vid_bits() != vid {
        return Err(Problem::Field {
            name: "btree leaf oid",
            got: oid.0,
            expected: 0,
        });
    }
    Ok((idx, oid))
}

/// Objects the leaf entries in `b` name: owned by `vid`, and shared (named
/// with another VID).
pub fn usage(b: &[u8], vid: u32) -> (u32, u32) {
    leaf_entries(b).fold((0, 0), |(used, shared), (_, v)| match v {
        0 => (used, shared),
        v if v == vid => (used + 1, shared),
        _ => (used, shared + 1),
    })
}
