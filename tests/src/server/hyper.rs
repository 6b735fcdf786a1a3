//! Hyper volumes (store_policy 1, a B-tree index; PROTOCOL.md §7.5) as
//! sheep's `lib/sd_inode.c` handles them, written apart from the client's
//! code so that each checks the other:
//! - lookups as `sd_inode_get_vid` makes them (a binary search of the
//!   root; at depth 2, the first root entry whose `idx` is not below the
//!   index, then a binary search of that leaf);
//! - inserts as `sd_inode_set_vid` makes them for dog's writes and for
//!   DISCARD_OBJ: a full depth-1 root split into two leaves, a full leaf
//!   split into halves (its root entry naming the new leaf's largest
//!   index, where sheep 1.0 names index 0), appends to the last leaf,
//!   then a new leaf; written back as `sd_inode_write` does (new leaves
//!   created whole, changed ones written whole, the root from offset 0);
//! - on delete, the walk over every entry (`sd_inode_index_walk`) that
//!   removes the volume's own data objects.

use std::collections::{BTreeMap, BTreeSet};

use sheepdog_core::inode::HEADER_LEN;
use sheepdog_core::oid::{Oid, Vid, VDI_BTREE_BIT};
use sheepdog_core::wire::ResultCode;

use super::inode_io::{data_oid, eio, inode_oid, read_bytes, Res, INDEX_OFF};
use super::store::Store;

/// Bytes of a B-tree header (magic, depth, entries).
const HEADER: usize = 8;
/// Size of a leaf node object, and of the root's area in the inode.
const NODE_SIZE: usize = 4 << 20;
/// The header's magic.
const MAGIC: u16 = 0x6274;
/// Entries a depth-1 root or a leaf holds.
pub const MAX_INDEX: usize = (NODE_SIZE - HEADER) / 8;
/// Entries a depth-2 root holds.
pub const MAX_INDIRECT: usize = (NODE_SIZE - HEADER) / 16;
/// Where the inode keeps `btree_counter`.
const COUNTER_OFF: usize = 568;

/// A leaf: entries `(idx, vid)`, sorted.
type Leaf = Vec<(u32, u32)>;

/// The shape of a tree, for tests: the depth and, at depth 2, each leaf's
/// root entry `idx`, its node number and how many entries it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// 1 or 2.
    pub depth: u16,
    /// Entries of a depth-1 root.
    pub entries: usize,
    /// At depth 2: `(idx, node, entries)` per root entry.
    pub leaves: Vec<(u32, u32, usize)>,
    /// `btree_counter`.
    pub counter: u32,
}

/// One hyper volume's tree, read whole.
#[derive(Clone, Debug)]
pub struct Tree {
    vid: u32,
    depth: u16,
    /// Depth 1: the root's entries.
    root: Leaf,
    /// Depth 2: the root's entries `(idx, leaf oid)`.
    indirect: Vec<(u32, Oid)>,
    leaves: BTreeMap<Oid, Leaf>,
    counter: u32,
    /// Leaves to create, and to write, when saved.
    created: BTreeSet<Oid>,
    written: BTreeSet<Oid>,
}

fn entries_of(bytes: &[u8], limit: usize) -> Leaf {
    let n = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let n = n.min(limit).min((bytes.len() - HEADER) / 8);
    bytes[HEADER..HEADER + 8 * n]
        .chunks_exact(8)
        .map(|w| {
            (
                u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
                u32::from_le_bytes([w[4], w[5], w[6], w[7]]),
            )
        })
        .collect()
}

fn node_bytes(depth: u16, n: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + 16 * n);
    b.extend_from_slice(&MAGIC.to_le_bytes());
    b.extend_from_slice(&depth.to_le_bytes());
    b.extend_from_slice(&(n as u32).to_le_bytes());
    b
}

fn leaf_bytes(leaf: &Leaf) -> Vec<u8> {
    let mut b = node_bytes(1, leaf.len());
    for (idx, vid) in leaf {
        b.extend_from_slice(&idx.to_le_bytes());
        b.extend_from_slice(&vid.to_le_bytes());
    }
    b.resize(NODE_SIZE, 0);
    b
}

impl Tree {
    /// The tree of hyper volume `vid`; `None` if its inode is missing or
    /// its root is not a tree of depth 1 or 2 (a zero word 0 is an empty
    /// tree, as sheep reads it).
    pub fn load(store: &dyn Store, vid: u32) -> Res<Option<Tree>> {
        let Some(head) = read_bytes(store, inode_oid(vid), 0, HEADER_LEN + HEADER)? else {
            return Ok(None);
        };
        let counter = u32::from_le_bytes(head[COUNTER_OFF..COUNTER_OFF + 4].try_into().unwrap());
        let root = &head[HEADER_LEN..];
        let mut tree = Tree {
            vid,
            depth: 1,
            root: Vec::new(),
            indirect: Vec::new(),
            leaves: BTreeMap::new(),
            counter,
            created: BTreeSet::new(),
            written: BTreeSet::new(),
        };
        if root[..4] == [0; 4] {
            return Ok(Some(tree));
        }
        let magic = u16::from_le_bytes([root[0], root[1]]);
        let depth = u16::from_le_bytes([root[2], root[3]]);
        let n = u32::from_le_bytes([root[4], root[5], root[6], root[7]]) as usize;
        if magic != MAGIC {
            return Ok(None);
        }
        match depth {
            1 => {
                let n = n.min(MAX_INDEX);
                let bytes = read_bytes(store, inode_oid(vid), INDEX_OFF, HEADER + 8 * n)?
                    .ok_or(ResultCode::NoObj)?;
                tree.root = entries_of(&bytes, MAX_INDEX);
            }
            2 => {
                let n = n.min(MAX_INDIRECT);
                let bytes = read_bytes(store, inode_oid(vid), INDEX_OFF, HEADER + 16 * n)?
                    .ok_or(ResultCode::NoObj)?;
                for e in bytes[HEADER..].chunks_exact(16) {
                    let idx = u32::from_le_bytes(e[..4].try_into().unwrap());
                    let oid = Oid(u64::from_le_bytes(e[8..16].try_into().unwrap()));
                    tree.indirect.push((idx, oid));
                    // A leaf that cannot be read is skipped, as the walk
                    // logs and skips it.
                    if let Some(node) = read_bytes(store, oid, 0, NODE_SIZE)? {
                        tree.leaves.insert(oid, entries_of(&node, MAX_INDEX));
                    }
                }
            }
            _ => return Ok(None),
        }
        tree.depth = depth;
        Ok(Some(tree))
    }

    /// `sd_inode_get_vid`: the VID that holds object `idx` (0: none).
    pub fn lookup(&self, idx: u32) -> u32 {
        let find = |leaf: &Leaf| {
            leaf.binary_search_by_key(&idx, |e| e.0)
                .map_or(0, |at| leaf[at].1)
        };
        if self.depth == 1 {
            return find(&self.root);
        }
        let at = self.indirect.partition_point(|e| e.0 < idx);
        match self.indirect.get(at) {
            Some((_, oid)) => self.leaves.get(oid).map_or(0, find),
            None => 0,
        }
    }

    /// Every entry `sd_inode_index_walk` visits, in its order.
    pub fn walk(&self) -> Vec<(u32, u32)> {
        if self.depth == 1 {
            return self.root.clone();
        }
        self.indirect
            .iter()
            .filter_map(|(_, oid)| self.leaves.get(oid))
            .flatten()
            .copied()
            .collect()
    }

    /// The tree's shape.
    pub fn shape(&self) -> Shape {
        Shape {
            depth: self.depth,
            entries: self.root.len(),
            leaves: self
                .indirect
                .iter()
                .map(|(idx, oid)| {
                    let n = self.leaves.get(oid).map_or(0, Vec::len);
                    (*idx, oid.index(), n)
                })
                .collect(),
            counter: self.counter,
        }
    }

    fn new_leaf(&mut self, leaf: Leaf) -> Res<Oid> {
        let vid = Vid::new(self.vid).map_err(|_| ResultCode::InvalidParms)?;
        let oid = Oid::btree(vid, self.counter);
        debug_assert_eq!(oid.0 & VDI_BTREE_BIT, VDI_BTREE_BIT);
        self.counter = self.counter.checked_add(1).ok_or(ResultCode::NoSpace)?;
        self.leaves.insert(oid, leaf);
        self.created.insert(oid);
        Ok(oid)
    }

    /// `sd_inode_set_vid`: object `idx` is held by `value` now.
    pub fn set(&mut self, idx: u32, value: u32) -> Res<()> {
        loop {
            if self.depth == 1 {
                match self.root.binary_search_by_key(&idx, |e| e.0) {
                    Ok(at) => self.root[at].1 = value,
                    Err(at) if self.root.len() < MAX_INDEX => self.root.insert(at, (idx, value)),
                    Err(_) => {
                        // transfer_to_idx_root(): halves into two new leaves.
                        let right = self.root.split_off(self.root.len() / 2);
                        let left = std::mem::take(&mut self.root);
                        let (lmax, rmax) = (left.last().unwrap().0, right.last().unwrap().0);
                        let l = self.new_leaf(left)?;
                        let r = self.new_leaf(right)?;
                        self.indirect = vec![(lmax, l), (rmax, r)];
                        self.depth = 2;
                        continue;
                    }
                }
                return Ok(());
            }
            let at = self.indirect.partition_point(|e| e.0 < idx);
            if at < self.indirect.len() {
                let oid = self.indirect[at].1;
                let leaf = self.leaves.entry(oid).or_default();
                match leaf.binary_search_by_key(&idx, |e| e.0) {
                    Ok(i) => leaf[i].1 = value,
                    Err(i) if leaf.len() < MAX_INDEX => leaf.insert(i, (idx, value)),
                    Err(_) => {
                        // split_index_node(): the new leaf takes the lower
                        // half; its root entry names its largest index.
                        let upper = leaf.split_off(leaf.len() / 2);
                        let lower = std::mem::replace(leaf, upper);
                        if self.indirect.len() >= MAX_INDIRECT {
                            return Err(ResultCode::NoSpace);
                        }
                        let max = lower.last().unwrap().0;
                        let new = self.new_leaf(lower)?;
                        self.indirect.insert(at, (max, new));
                        self.written.insert(oid);
                        continue;
                    }
                }
                self.written.insert(oid);
                return Ok(());
            }
            // Above every root entry: the last leaf, while it has room.
            let last = self.indirect.len() - 1;
            let oid = self.indirect[last].1;
            let leaf = self.leaves.entry(oid).or_default();
            if leaf.len() < MAX_INDEX {
                leaf.push((idx, value));
                self.indirect[last].0 = idx;
                self.written.insert(oid);
            } else {
                if self.indirect.len() >= MAX_INDIRECT {
                    return Err(ResultCode::NoSpace);
                }
                let new = self.new_leaf(vec![(idx, value)])?;
                self.indirect.push((idx, new));
            }
            return Ok(());
        }
    }

    /// Write what [`Tree::set`] changed as dog does: new leaves created
    /// whole, changed leaves written whole, then the root (with the
    /// counter) from offset 0 of the inode.
    pub fn save(&mut self, store: &mut dyn Store) -> Res<()> {
        for oid in std::mem::take(&mut self.created) {
            self.written.remove(&oid);
            store
                .create(oid, 0, &leaf_bytes(&self.leaves[&oid]))
                .map_err(eio)?;
        }
        for oid in std::mem::take(&mut self.written) {
            store
                .write(oid, 0, &leaf_bytes(&self.leaves[&oid]))
                .map_err(eio)?;
        }
        let mut b =
            read_bytes(store, inode_oid(self.vid), 0, HEADER_LEN)?.ok_or(ResultCode::NoObj)?;
        b[COUNTER_OFF..COUNTER_OFF + 4].copy_from_slice(&self.counter.to_le_bytes());
        if self.depth == 1 {
            b.extend_from_slice(&node_bytes(1, self.root.len()));
            for (idx, vid) in &self.root {
                b.extend_from_slice(&idx.to_le_bytes());
                b.extend_from_slice(&vid.to_le_bytes());
            }
        } else {
            b.extend_from_slice(&node_bytes(2, self.indirect.len()));
            for (idx, oid) in &self.indirect {
                b.extend_from_slice(&idx.to_le_bytes());
                b.extend_from_slice(&[0; 4]);
                b.extend_from_slice(&oid.0.to_le_bytes());
            }
        }
        store.write(inode_oid(self.vid), 0, &b).map_err(eio)?;
        Ok(())
    }
}

/// The data objects of hyper volume `vid` that it owns itself (entries
/// equal to `vid`), depth 1 or 2, as the deletion walk finds them.
pub fn own_objects(store: &dyn Store, vid: u32) -> Res<Vec<Oid>> {
    let Some(tree) = Tree::load(store, vid)? else {
        return Ok(Vec::new());
    };
    Ok(tree
        .walk()
        .into_iter()
        .filter(|&(_, v)| v == vid)
        .map(|(idx, v)| data_oid(v, idx))
        .collect())
}
