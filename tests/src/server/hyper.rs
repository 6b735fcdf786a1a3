//! The little of hyper volumes (store_policy 1, a B-tree index; PROTOCOL.md
//! §7.5) that the server itself does: on delete it walks the tree and
//! removes the volume's own data objects.

use sheepdog_core::oid::Oid;

use super::inode_io::{data_oid, inode_oid, read_bytes, u32s, Res, INDEX_OFF};
use super::store::Store;

/// Bytes of a B-tree header (magic, depth, entries).
const HEADER: usize = 8;
/// Size of a leaf node object.
const NODE_SIZE: usize = 4 << 20;

/// Leaf entries `(idx, vid)` of a B-tree node held in `bytes`.
fn leaf_entries(bytes: &[u8]) -> Vec<(u32, u32)> {
    let n = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let n = n.min((bytes.len() - HEADER) / 8);
    u32s(&bytes[HEADER..HEADER + 8 * n])
        .chunks_exact(2)
        .map(|w| (w[0], w[1]))
        .collect()
}

/// The data objects of hyper volume `vid` that it owns itself (entries
/// equal to `vid`), depth 1 or 2.
pub fn own_objects(store: &dyn Store, vid: u32) -> Res<Vec<Oid>> {
    let root_len = 4 << 20;
    let Some(root) = read_bytes(store, inode_oid(vid), INDEX_OFF, root_len)? else {
        return Ok(Vec::new());
    };
    let depth = u16::from_le_bytes([root[2], root[3]]);
    let mut entries = Vec::new();
    match depth {
        1 => entries = leaf_entries(&root),
        2 => {
            let n = u32::from_le_bytes([root[4], root[5], root[6], root[7]]) as usize;
            let n = n.min((root.len() - HEADER) / 16);
            for i in 0..n {
                let at = HEADER + 16 * i + 8;
                let mut oid = [0u8; 8];
                oid.copy_from_slice(&root[at..at + 8]);
                let leaf = Oid(u64::from_le_bytes(oid));
                if let Some(node) = read_bytes(store, leaf, 0, NODE_SIZE)? {
                    entries.extend(leaf_entries(&node));
                }
            }
        }
        _ => {}
    }
    Ok(entries
        .into_iter()
        .filter(|&(_, v)| v == vid)
        .map(|(idx, v)| data_oid(v, idx))
        .collect())
}
