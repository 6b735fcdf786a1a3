//! Reading and writing parts of inode objects through a [`Store`]: the
//! header, index entries and the server-maintained `gref` array
//! (PROTOCOL.md §8).

use sheepdog_core::inode::{InodeHeader, HEADER_AND_INDEX_LEN, HEADER_LEN, LOOKUP_LEN};
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::wire::ResultCode;

use super::store::Store;

/// Offset of `data_vdi_id[]`.
pub const INDEX_OFF: u64 = HEADER_LEN as u64;
/// Offset of `gref[]`.
pub const GREF_OFF: u64 = HEADER_AND_INDEX_LEN as u64;
/// Entries of the flat index.
pub const NR_ENTRIES: u32 = 1 << 20;
/// Bytes of one `gref` entry.
pub const GREF_LEN: u64 = 8;

/// Internal result: a protocol result code as the error.
pub type Res<T> = Result<T, ResultCode>;

/// Map a store failure to EIO.
pub fn eio(_: std::io::Error) -> ResultCode {
    ResultCode::Eio
}

/// The inode oid of a raw VID (any 24 bits, 0 included).
pub fn inode_oid(vid: u32) -> Oid {
    match Vid::new(vid) {
        Ok(v) => Oid::inode(v),
        Err(_) => Oid(sheepdog_core::oid::VDI_BIT | (u64::from(vid & 0x00ff_ffff) << 32)),
    }
}

/// The data oid of entry `idx` owned by a raw VID.
pub fn data_oid(vid: u32, idx: u32) -> Oid {
    Oid((u64::from(vid & 0x00ff_ffff) << 32) | u64::from(idx))
}

/// A generation reference (`struct generation_reference`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gref {
    /// Generation of this inode's reference.
    pub generation: u32,
    /// References handed to children.
    pub count: u32,
}

/// `len` bytes of `oid` at `offset`; `None` if the object is missing.
pub fn read_bytes(store: &dyn Store, oid: Oid, offset: u64, len: usize) -> Res<Option<Vec<u8>>> {
    let mut buf = vec![0u8; len];
    Ok(store
        .read(oid, offset, &mut buf)
        .map_err(eio)?
        .then_some(buf))
}

/// Little-endian u32s.
pub fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The header fields of `vid`'s inode (its first 572 bytes).
pub fn read_header(store: &dyn Store, vid: u32) -> Res<Option<InodeHeader>> {
    let Some(bytes) = read_bytes(store, inode_oid(vid), 0, 572)? else {
        return Ok(None);
    };
    Ok(InodeHeader::parse(&bytes).ok())
}

/// The first 568 bytes, as the server's own lookups read them.
pub fn read_lookup_header(store: &dyn Store, vid: u32) -> Res<Option<InodeHeader>> {
    let Some(bytes) = read_bytes(store, inode_oid(vid), 0, LOOKUP_LEN)? else {
        return Ok(None);
    };
    Ok(InodeHeader::parse(&bytes).ok())
}

/// `n` index entries from `start`.
pub fn read_entries(store: &dyn Store, oid: Oid, start: u32, n: u32) -> Res<Option<Vec<u32>>> {
    let off = INDEX_OFF + 4 * u64::from(start);
    Ok(read_bytes(store, oid, off, 4 * n as usize)?.map(|b| u32s(&b)))
}

/// `n` gref entries from `start`.
pub fn read_grefs(store: &dyn Store, oid: Oid, start: u32, n: u32) -> Res<Option<Vec<Gref>>> {
    let off = GREF_OFF + GREF_LEN * u64::from(start);
    let Some(b) = read_bytes(store, oid, off, (GREF_LEN as usize) * n as usize)? else {
        return Ok(None);
    };
    let words = u32s(&b);
    Ok(Some(
        words
            .chunks_exact(2)
            .map(|w| Gref {
                generation: w[0],
                count: w[1],
            })
            .collect(),
    ))
}

/// Encode gref entries.
pub fn encode_grefs(grefs: &[Gref]) -> Vec<u8> {
    let mut out = Vec::with_capacity(grefs.len() * GREF_LEN as usize);
    for g in grefs {
        out.extend_from_slice(&g.generation.to_le_bytes());
        out.extend_from_slice(&g.count.to_le_bytes());
    }
    out
}

/// Every non-zero entry of the whole index of `oid`, as `(idx, vid)`;
/// `None` if the inode is missing.
pub fn used_entries(store: &dyn Store, oid: Oid) -> Res<Option<Vec<(u32, u32)>>> {
    let Some(index) = read_entries(store, oid, 0, NR_ENTRIES)? else {
        return Ok(None);
    };
    Ok(Some(
        index
            .into_iter()
            .enumerate()
            .filter(|(_, v)| *v != 0)
            .map(|(i, v)| (i as u32, v))
            .collect(),
    ))
}

/// The span `first..=last` of `used`, or `None` if empty.
pub fn span(used: &[(u32, u32)]) -> Option<(u32, u32)> {
    Some((used.first()?.0, used.last()?.0))
}
