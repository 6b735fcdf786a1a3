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

pub mod commit;

use byteorder::{ByteOrder, LittleEndian};

use crate::inode;
use crate::oid::{Oid, OidKind};
use crate::reply::Problem;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// The root's header.
    Root,
    /// Depth 1: the root's leaf entries from `next` of `count`.
    Entries {
        next: u32,
        count: u32,
    },
    /// Depth 2: indirect entry `k` of `count`, whose leaf's range starts
    /// at `low`.
    Indirect {
        k: u32,
        count: u32,
        low: u32,
    },
    /// Depth 2: the header of leaf `oid`, named by entry `k`, which sheep's
    /// lookup reaches for indexes `low..=high`.
    LeafHeader {
        k: u32,
        count: u32,
        oid: Oid,
        low: u32,
        high: u32,
    },
    /// Depth 2: that leaf's entries from `next` of `entries`.
    LeafEntries {
        k: u32,
        count: u32,
        oid: Oid,
        next: u32,
        entries: u32,
        low: u32,
        high: u32,
    },
    Done,
}

/// A walk over every leaf entry of hyper volume `vid`'s B-tree, one read
/// at a time, of at most `chunk` bytes of entries: [`Walk::read`] says
/// what to read next, [`Walk::advance`] takes its bytes and hands back
/// the leaf entries among them. Bounded: at most one read per chunk of
/// entries and two per leaf, each checked before it is believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    vid: u32,
    per: u32,
    at: At,
}

impl Walk {
    /// A walk from the root of `vid`'s tree, reading entries `chunk`
    /// bytes at a time (at least one entry's worth).
    pub fn new(vid: u32, chunk: u32) -> Walk {
        Walk {
            vid,
            per: (chunk / LEAF_ENTRY_LEN).max(1),
            at: At::Root,
        }
    }

    /// Whether every entry has been handed out.
    pub fn is_done(&self) -> bool {
        self.at == At::Done
    }

    /// The indexes sheep's lookup reaches in the node [`Walk::read`]
    /// reads: all of them in a depth-1 root; in a leaf, those above the
    /// previous root entry's `idx` up to its own. A leaf may hold entries
    /// outside (a split stopped halfway leaves copies there); sheep never
    /// reads them, nor should a cache. (Call before [`Walk::advance`].)
    pub fn range(&self) -> (u32, u32) {
        match self.at {
            At::LeafHeader { low, high, .. } | At::LeafEntries { low, high, .. } => (low, high),
            _ => (0, u32::MAX),
        }
    }

    /// The next read: object, offset in it, length; `None` when done.
    pub fn read(&self) -> Option<(Oid, u32, u32)> {
        let inode = Oid::inode(crate::oid::Vid::new(self.vid).ok()?);
        let root = ROOT_OFFSET + HEADER_LEN;
        Some(match self.at {
            At::Root => (inode, ROOT_OFFSET, HEADER_LEN),
            At::Entries { next, count } => (
                inode,
                root + next * LEAF_ENTRY_LEN,
                self.per.min(count - next) * LEAF_ENTRY_LEN,
            ),
            At::Indirect { k, .. } => (inode, root + k * INDIRECT_ENTRY_LEN, INDIRECT_ENTRY_LEN),
            At::LeafHeader { oid, .. } => (oid, 0, HEADER_LEN),
            At::LeafEntries {
                oid, next, entries, ..
            } => (
                oid,
                HEADER_LEN + next * LEAF_ENTRY_LEN,
                self.per.min(entries - next) * LEAF_ENTRY_LEN,
            ),
            At::Done => return None,
        })
    }

    /// The bytes of [`Walk::read`] arrived: the leaf entries among them
    /// (none for a header), or why the tree cannot be.
    pub fn advance<'a>(&mut self, payload: &'a [u8]) -> Result<&'a [u8], Problem> {
        let Some((_, _, len)) = self.read() else {
            return Ok(&[]);
        };
        if payload.len() != len as usize {
            return Err(Problem::Length {
                got: payload.len() as u32,
                expected: len,
            });
        }
        let next_leaf = |k: u32, count: u32, high: u32| match high.checked_add(1) {
            Some(low) if k + 1 < count => At::Indirect {
                k: k + 1,
                count,
                low,
            },
            _ => At::Done,
        };
        let (at, entries) = match self.at {
            At::Root => {
                let h = Header::parse(payload, true)?;
                let at = match (h.depth, h.entries) {
                    (_, 0) => At::Done,
                    (1, count) => At::Entries { next: 0, count },
                    (_, count) => At::Indirect {
                        k: 0,
                        count,
                        low: 0,
                    },
                };
                (at, &payload[..0])
            }
            At::Entries { next, count } => {
                let next = next + len / LEAF_ENTRY_LEN;
                let at = if next < count {
                    At::Entries { next, count }
                } else {
                    At::Done
                };
                (at, payload)
            }
            At::Indirect { k, count, low } => {
                let (high, oid) = indirect_entry(payload, self.vid)?;
                let at = At::LeafHeader {
                    k,
                    count,
                    oid,
                    low,
                    high,
                };
                (at, &payload[..0])
            }
            At::LeafHeader {
                k,
                count,
                oid,
                low,
                high,
            } => {
                let h = Header::parse(payload, false)?;
                let at = if h.entries == 0 {
                    next_leaf(k, count, high)
                } else {
                    At::LeafEntries {
                        k,
                        count,
                        oid,
                        next: 0,
                        entries: h.entries,
                        low,
                        high,
                    }
                };
                (at, &payload[..0])
            }
            At::LeafEntries {
                k,
                count,
                ref mut next,
                entries,
                high,
                ..
            } => {
                *next += len / LEAF_ENTRY_LEN;
                if *next >= entries {
                    self.at = next_leaf(k, count, high);
                }
                return Ok(payload);
            }
            At::Done => (At::Done, &payload[..0]),
        };
        self.at = at;
        Ok(entries)
    }
}
