//! Writing a hyper volume's B-tree (PROTOCOL.md §7.5): the entries a
//! writer set in the flat index cache go into the tree the way dog's
//! inserts lay them out (`sd_inode_set_vid` in sheep's `lib/sd_inode.c`),
//! sans-IO and without an allocator, from two caller buffers: the inode's
//! head and root ([`ROOT_BUF_LEN`]) and one leaf ([`LEAF_BUF_LEN`]).
//!
//! The tree is rebuilt from the cache, not patched: the cache holds every
//! entry of the volume (the open loaded them all), so each node that
//! covers an index in the range committed is written again whole with the
//! entries the cache has for its range. The shape follows dog's:
//! - a depth-1 root holds up to 524,287 entries; past that it becomes a
//!   depth-2 root over a left leaf of the first 262,143 entries and right
//!   leaves filled to 524,287 each, as dog's split and later appends make;
//! - at depth 2 a leaf covers the indexes above its left neighbour's root
//!   entry up to its own, whose `idx` is the largest index in the leaf;
//!   indexes above the last entry go to the last leaf until it is full,
//!   then to new leaves;
//! - a leaf that would hold more than 524,287 entries is split evenly, the
//!   old leaf keeping the upper part (dog's split into halves); the new
//!   leaf's root entry names its own largest index, where sheep 1.0 names
//!   index 0 (the bug §7.5 describes);
//! - new leaves are objects `btree_counter`, `btree_counter + 1` ..., and
//!   the counter at offset 568 goes out with the root.
//!
//! The order keeps every state a reader can see consistent: new leaves
//! are created first (nothing names them yet), then the root is written
//! from offset 0 (an inode write from 0 is not refcounted, one at 4664
//! would be: PROTOCOL.md §8), then the old leaves get their new entries.
//! Stopped anywhere, the tree still maps every index committed before to
//! the object it mapped, and at worst misses some of the new ones; an old
//! leaf not yet rewritten keeps copies of entries outside its new range,
//! which lookups (and [`super::Walk::range`]) never reach.
//!
//! Run: [`Commit::next`] gives the request to make over a range of one of
//! the buffers (an [`ObjectKind`] for [`crate::object_op::ObjectOp`]), and
//! [`Commit::done`] is told once it succeeded, until `next` gives `None`.
//! Reads of the inode are checked before they are believed.

use core::ops::Range;

use byteorder::{ByteOrder, LittleEndian};

use super::{
    indirect_entry, leaf_entries, Header, HEADER_LEN, INDIRECT_ENTRY_LEN, LEAF_ENTRY_LEN, MAGIC,
    MAX_INDIRECT_ENTRIES, MAX_LEAF_ENTRIES,
};
use crate::error::SizeError;
use crate::inode;
use crate::object_op::ObjectKind;
use crate::oid::{Oid, Vid};
use crate::reply::{BadReply, Error, Problem, Target};
use crate::wire::Opcode;

/// Bytes of the root buffer: the inode's header and its whole index area.
pub const ROOT_BUF_LEN: usize = inode::HEADER_LEN + (4 << 20);
/// Bytes of the leaf buffer: one leaf object.
pub const LEAF_BUF_LEN: usize = 4 << 20;
/// Where the inode keeps `btree_counter`.
const COUNTER_OFFSET: usize = 568;
/// Where the root's header starts in the root buffer.
const ROOT: usize = inode::HEADER_LEN;
/// Where the root's entries start.
const ENTRIES: usize = ROOT + HEADER_LEN as usize;
/// The left leaf of a root that outgrew depth 1: dog splits a full root
/// (524,287 entries) at `entries / 2`.
const FIRST_LEFT: u32 = MAX_LEAF_ENTRIES / 2;

/// Which caller buffer an [`Op`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buffer {
    /// The inode's head and root.
    Root,
    /// One leaf.
    Leaf,
}

/// One request of a commit: `kind` on `oid`, its payload (or where its
/// reply goes) `range` of `buffer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The object.
    pub oid: Oid,
    /// The request.
    pub kind: ObjectKind,
    /// Which buffer.
    pub buffer: Buffer,
    /// The bytes of it.
    pub range: Range<usize>,
}

/// How many entries each new node of one old node's range gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sizes {
    /// `c` entries over `p` nodes, evenly (an old leaf split).
    Even { c: u64, p: u32 },
    /// The last leaf: `a` entries up to its old largest index over `pa`
    /// nodes evenly (none if `a` is 0); the last of them, or a first one
    /// when there are none, takes `top` of the `b` entries above; the
    /// rest go to full leaves after it.
    Last {
        a: u64,
        pa: u32,
        top: u64,
        rest: u64,
    },
    /// A root that outgrew depth 1: `n` entries, the first leaf
    /// [`FIRST_LEFT`] of them, then full leaves.
    Convert { n: u64 },
}

fn even(c: u64, p: u32, j: u32) -> u64 {
    c / u64::from(p) + u64::from(u64::from(j) < c % u64::from(p))
}

fn leaves_for(n: u64) -> u64 {
    n.div_ceil(u64::from(MAX_LEAF_ENTRIES))
}

impl Sizes {
    fn count(self) -> u64 {
        match self {
            Sizes::Even { p, .. } => u64::from(p),
            Sizes::Last { pa, rest, .. } => u64::from(pa.max(1)) + leaves_for(rest),
            Sizes::Convert { n } => 1 + leaves_for(n.saturating_sub(u64::from(FIRST_LEFT))),
        }
    }

    fn size(self, j: u32) -> u64 {
        let max = u64::from(MAX_LEAF_ENTRIES);
        match self {
            Sizes::Even { c, p } => even(c, p, j),
            Sizes::Last { a, pa, top, rest } => {
                let own = pa.max(1);
                if j < own {
                    let base = if pa == 0 { 0 } else { even(a, pa, j) };
                    base + if j + 1 == own { top } else { 0 }
                } else {
                    let done = u64::from(j - own) * max;
                    rest.saturating_sub(done).min(max)
                }
            }
            Sizes::Convert { n } => {
                if j == 0 {
                    n.min(u64::from(FIRST_LEFT))
                } else {
                    let done = u64::from(FIRST_LEFT) + u64::from(j - 1) * max;
                    n.saturating_sub(done).min(max)
                }
            }
        }
    }
}

/// The nodes that replace one old node (or a depth-1 root), made one at a
/// time from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pieces {
    /// Root position of the first of them.
    k: u32,
    sizes: Sizes,
    /// Which keeps the old leaf's oid (`None`: all are new).
    old: Option<(u32, Oid)>,
    /// The next to make.
    j: u32,
    /// The index its entries start from.
    cursor: u32,
    /// Where the next old node's range starts (depth 2).
    next_lower: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    ReadHead,
    ReadRoot,
    /// Depth 2: old node `k` of the root, whose range starts at `lower`.
    Update {
        k: u32,
        lower: u32,
    },
    Make(Pieces),
    WriteRoot,
    /// Old leaves from root position `k` on get their entries.
    Rewrite {
        k: u32,
    },
    Done,
}

/// What the request [`Commit::next`] gave was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Head,
    Root,
    Create,
    WriteRoot,
    Rewrite { k: u32 },
}

/// Writing the entries of indexes `lo..=hi` of hyper volume `vid` into its
/// tree; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    vid: Vid,
    copies: u8,
    lo: u32,
    hi: u32,
    state: State,
    pending: Option<Pending>,
    /// The root's depth and entries, as read and then as rebuilt.
    depth: u16,
    entries: u32,
    /// `btree_counter` as read: leaves below it are old.
    counter_start: u32,
    counter: u32,
    /// The old ranges of the nodes that met `lo..=hi`: an old leaf in it
    /// is rewritten, even one whose new range, after a split, lies
    /// wholly above or below the entries committed.
    touched: Option<(u32, u32)>,
}

fn entry(index: &[u8], idx: u32) -> u32 {
    let at = idx as usize * 4;
    index.get(at..at + 4).map_or(0, LittleEndian::read_u32)
}

fn last_idx(index: &[u8]) -> u32 {
    (index.len() / 4).saturating_sub(1) as u32
}

/// Entries set in `lower..=upper` of the cache.
fn count(index: &[u8], lower: u32, upper: u32) -> u64 {
    let end = (upper as usize + 1).min(index.len() / 4);
    let start = (lower as usize).min(end);
    index[start * 4..end * 4]
        .chunks_exact(4)
        .filter(|e| *e != [0; 4])
        .count() as u64
}

/// Copy the next `n` entries set from index `from` on into `out` as leaf
/// entries; the largest index copied and the index after it.
fn fill(index: &[u8], from: u32, n: u64, out: &mut [u8]) -> (u32, u32) {
    let mut written = 0u64;
    let mut largest = from;
    let mut idx = from as usize;
    let total = index.len() / 4;
    while written < n && idx < total {
        let v = LittleEndian::read_u32(&index[idx * 4..idx * 4 + 4]);
        if v != 0 {
            let at = written as usize * LEAF_ENTRY_LEN as usize;
            LittleEndian::write_u32(&mut out[at..at + 4], idx as u32);
            LittleEndian::write_u32(&mut out[at + 4..at + 8], v);
            written += 1;
            largest = idx as u32;
        }
        idx += 1;
    }
    (largest, idx.min(u32::MAX as usize) as u32)
}

fn write_header(out: &mut [u8], depth: u16, entries: u32) {
    LittleEndian::write_u16(&mut out[..2], MAGIC);
    LittleEndian::write_u16(&mut out[2..4], depth);
    LittleEndian::write_u32(&mut out[4..8], entries);
}

fn root_entry(root: &[u8], k: u32) -> (u32, Oid) {
    let at = ENTRIES + k as usize * INDIRECT_ENTRY_LEN as usize;
    (
        LittleEndian::read_u32(&root[at..at + 4]),
        Oid(LittleEndian::read_u64(&root[at + 8..at + 16])),
    )
}

fn set_root_entry(root: &mut [u8], k: u32, idx: u32, oid: Oid) {
    let at = ENTRIES + k as usize * INDIRECT_ENTRY_LEN as usize;
    LittleEndian::write_u32(&mut root[at..at + 4], idx);
    root[at + 4..at + 8].fill(0);
    LittleEndian::write_u64(&mut root[at + 8..at + 16], oid.0);
}

impl Commit {
    /// Commit indexes `lo..=hi` of hyper volume `vid`, whose objects have
    /// `copies` copies (0: the VDI's own).
    pub fn new(vid: Vid, copies: u8, lo: u32, hi: u32) -> Commit {
        Commit {
            vid,
            copies,
            lo,
            hi: hi.max(lo),
            state: State::ReadHead,
            pending: None,
            depth: 0,
            entries: 0,
            counter_start: 0,
            counter: 0,
            touched: None,
        }
    }

    /// Whether every request is made.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The root's depth once the commit is done (or as far as it got).
    pub fn depth(&self) -> u16 {
        self.depth
    }

    /// Leaves the commit made.
    pub fn leaves_made(&self) -> u32 {
        self.counter - self.counter_start
    }

    fn inode(&self) -> Oid {
        Oid::inode(self.vid)
    }

    fn bad(&self, problem: Problem) -> Error {
        Error::BadReply(BadReply {
            opcode: Opcode::ReadObj,
            target: Target::Oid(self.inode()),
            problem,
        })
    }

    fn root_len(&self) -> usize {
        let per = if self.depth == 2 {
            INDIRECT_ENTRY_LEN
        } else {
            LEAF_ENTRY_LEN
        };
        ENTRIES + self.entries as usize * per as usize
    }

    /// The next request, with what it sends built in its buffer; `None`
    /// when the commit is done. `index` is the volume's flat index cache
    /// (4 bytes per object, every object of the volume).
    pub fn next(
        &mut self,
        index: &[u8],
        root: &mut [u8],
        leaf: &mut [u8],
    ) -> Result<Option<Op>, Error> {
        if root.len() < ROOT_BUF_LEN || leaf.len() < LEAF_BUF_LEN {
            return Err(Error::BufferTooSmall {
                need: ROOT_BUF_LEN.max(LEAF_BUF_LEN),
            });
        }
        if self.pending.is_some() {
            return Err(Error::Internal("a B-tree request is still unanswered"));
        }
        loop {
            let (op, pending) = match self.state {
                State::Done => return Ok(None),
                State::ReadHead => (
                    Op {
                        oid: self.inode(),
                        kind: ObjectKind::Read { offset: 0 },
                        buffer: Buffer::Root,
                        range: 0..ENTRIES,
                    },
                    Pending::Head,
                ),
                State::ReadRoot => (
                    Op {
                        oid: self.inode(),
                        kind: ObjectKind::Read {
                            offset: ENTRIES as u32,
                        },
                        buffer: Buffer::Root,
                        range: ENTRIES..self.root_len(),
                    },
                    Pending::Root,
                ),
                State::Update { k, lower } => {
                    self.plan_leaf(index, root, k, lower)?;
                    continue;
                }
                State::Make(p) => match self.make(index, root, leaf, p)? {
                    Some(op) => (op, Pending::Create),
                    None => continue,
                },
                State::WriteRoot => {
                    LittleEndian::write_u32(
                        &mut root[COUNTER_OFFSET..COUNTER_OFFSET + 4],
                        self.counter,
                    );
                    write_header(&mut root[ROOT..ENTRIES], self.depth, self.entries);
                    (
                        Op {
                            oid: self.inode(),
                            kind: ObjectKind::Write {
                                offset: 0,
                                copies: self.copies,
                            },
                            buffer: Buffer::Root,
                            range: 0..self.root_len(),
                        },
                        Pending::WriteRoot,
                    )
                }
                State::Rewrite { k } => match self.rewrite(index, root, leaf, k) {
                    Some((op, k)) => (op, Pending::Rewrite { k }),
                    None => {
                        self.state = State::Done;
                        continue;
                    }
                },
            };
            self.pending = Some(pending);
            return Ok(Some(op));
        }
    }

    /// The request [`Commit::next`] gave succeeded (a read's bytes are in
    /// its range of `root`).
    pub fn done(&mut self, index: &[u8], root: &mut [u8]) -> Result<(), Error> {
        let Some(pending) = self.pending.take() else {
            return Err(Error::Internal("no B-tree request is waiting"));
        };
        match pending {
            Pending::Head => {
                let h = Header::parse(&root[ROOT..ENTRIES], true).map_err(|p| self.bad(p))?;
                self.counter_start =
                    LittleEndian::read_u32(&root[COUNTER_OFFSET..COUNTER_OFFSET + 4]);
                self.counter = self.counter_start;
                // A depth-2 root names at least one leaf (an empty one
                // would take the commit and map nothing).
                if h.depth == 2 && h.entries == 0 {
                    return Err(self.bad(Problem::Field {
                        name: "btree entries",
                        got: 0,
                        expected: 1,
                    }));
                }
                // sheep makes an unwritten root depth 1 on its first insert.
                self.depth = h.depth.max(1);
                self.entries = h.entries;
                self.state = if h.entries > 0 {
                    State::ReadRoot
                } else {
                    self.plan_root(index, root)?
                };
            }
            Pending::Root => {
                self.check_root(index, root)?;
                self.state = self.plan_root(index, root)?;
            }
            Pending::Create => {
                if let State::Make(mut p) = self.state {
                    p.j += 1;
                    self.state = State::Make(p);
                }
            }
            Pending::WriteRoot => {
                self.state = if self.depth == 2 {
                    State::Rewrite { k: 0 }
                } else {
                    State::Done
                };
            }
            Pending::Rewrite { k } => self.state = State::Rewrite { k: k + 1 },
        }
        Ok(())
    }

    /// The root read must be a tree of this volume that agrees with the
    /// cache it is rebuilt from: another writer's entries would be lost.
    fn check_root(&self, index: &[u8], root: &[u8]) -> Result<(), Error> {
        let bytes = &root[ENTRIES..self.root_len()];
        let last = last_idx(index);
        if self.depth == 1 {
            let mut prev: Option<u32> = None;
            for (idx, v) in leaf_entries(bytes) {
                if prev.is_some_and(|p| idx <= p) || idx > last {
                    return Err(self.bad(Problem::Field {
                        name: "btree entry idx",
                        got: idx.into(),
                        expected: 0,
                    }));
                }
                prev = Some(idx);
                let ours = (self.lo..=self.hi).contains(&idx);
                if v != 0 && !ours && entry(index, idx) != v {
                    return Err(Error::TreeChanged { idx });
                }
            }
            return Ok(());
        }
        let mut prev: Option<u32> = None;
        for e in bytes.chunks_exact(INDIRECT_ENTRY_LEN as usize) {
            let (idx, oid) = indirect_entry(e, self.vid.get()).map_err(|p| self.bad(p))?;
            if prev.is_some_and(|p| idx <= p) || idx > last || oid.index() >= self.counter_start {
                return Err(self.bad(Problem::Field {
                    name: "btree root entry",
                    got: oid.0,
                    expected: 0,
                }));
            }
            prev = Some(idx);
        }
        Ok(())
    }

    /// What follows reading the root: a depth-1 root rebuilt whole, or
    /// made depth 2; a depth-2 root's nodes visited.
    fn plan_root(&mut self, index: &[u8], root: &mut [u8]) -> Result<State, Error> {
        if self.depth == 2 {
            return Ok(State::Update { k: 0, lower: 0 });
        }
        let n = count(index, 0, last_idx(index));
        if n <= u64::from(MAX_LEAF_ENTRIES) {
            fill(index, 0, n, &mut root[ENTRIES..]);
            self.entries = n as u32;
            return Ok(State::WriteRoot);
        }
        let sizes = Sizes::Convert { n };
        if sizes.count() > u64::from(MAX_INDIRECT_ENTRIES) {
            return Err(SizeError::BtreeFull.into());
        }
        self.depth = 2;
        self.entries = sizes.count() as u32;
        Ok(State::Make(Pieces {
            k: 0,
            sizes,
            old: None,
            j: 0,
            cursor: 0,
            next_lower: 0,
        }))
    }

    /// Depth 2: old node `k`, covering indexes from `lower` on, and the
    /// nodes that replace it, if it changes shape.
    fn plan_leaf(
        &mut self,
        index: &[u8],
        root: &mut [u8],
        k: u32,
        lower: u32,
    ) -> Result<(), Error> {
        if k >= self.entries {
            self.state = State::WriteRoot;
            return Ok(());
        }
        let last = k + 1 == self.entries;
        let (old_max, oid) = root_entry(root, k);
        let upper = if last { last_idx(index) } else { old_max };
        let next = State::Update {
            k: k + 1,
            lower: old_max.saturating_add(1),
        };
        if upper < self.lo || lower > self.hi {
            self.state = next;
            return Ok(());
        }
        self.touched = Some(match self.touched {
            None => (lower, upper),
            Some((a, b)) => (a.min(lower), b.max(upper)),
        });
        let max = u64::from(MAX_LEAF_ENTRIES);
        let (sizes, old_j) = if last {
            let a = count(index, lower, old_max);
            let b = if old_max < upper {
                count(index, old_max + 1, upper)
            } else {
                0
            };
            if b == 0 && a <= max {
                self.state = next;
                return Ok(());
            }
            let pa = leaves_for(a) as u32;
            let first = if pa == 0 { 0 } else { even(a, pa, pa - 1) };
            let top = b.min(max - first);
            let sizes = Sizes::Last {
                a,
                pa,
                top,
                rest: b - top,
            };
            (sizes, pa.max(1) - 1)
        } else {
            let c = count(index, lower, upper);
            if c <= max {
                self.state = next;
                return Ok(());
            }
            let p = leaves_for(c) as u32;
            (Sizes::Even { c, p }, p - 1)
        };
        let p = sizes.count();
        let total = u64::from(self.entries) + p - 1;
        if total > u64::from(MAX_INDIRECT_ENTRIES) {
            return Err(SizeError::BtreeFull.into());
        }
        // Room for the new nodes' root entries, right after node k.
        let per = INDIRECT_ENTRY_LEN as usize;
        let from = ENTRIES + (k as usize + 1) * per;
        let to = ENTRIES + self.entries as usize * per;
        root.copy_within(from..to, from + (p as usize - 1) * per);
        self.entries = total as u32;
        self.state = State::Make(Pieces {
            k,
            sizes,
            old: Some((old_j, oid)),
            j: 0,
            cursor: lower,
            next_lower: old_max.saturating_add(1),
        });
        Ok(())
    }

    /// Node `p.j` of pieces `p`: a new leaf built in `leaf` to create, or
    /// the old one kept (its entries go out after the root); its root
    /// entry is set either way. `None` once it needs no request.
    fn make(
        &mut self,
        index: &[u8],
        root: &mut [u8],
        leaf: &mut [u8],
        mut p: Pieces,
    ) -> Result<Option<Op>, Error> {
        loop {
            if u64::from(p.j) >= p.sizes.count() {
                self.state = if self.depth == 2 && p.old.is_some() {
                    State::Update {
                        k: p.k + p.sizes.count() as u32,
                        lower: p.next_lower,
                    }
                } else {
                    State::WriteRoot
                };
                return Ok(None);
            }
            let n = p.sizes.size(p.j);
            let (largest, after) = fill(index, p.cursor, n, &mut leaf[HEADER_LEN as usize..]);
            p.cursor = after;
            let at = p.k + p.j;
            match p.old {
                Some((old_j, oid)) if old_j == p.j => {
                    set_root_entry(root, at, largest, oid);
                    p.j += 1;
                }
                _ => {
                    let oid = Oid::btree(self.vid, self.counter);
                    self.counter = self.counter.checked_add(1).ok_or(SizeError::BtreeFull)?;
                    set_root_entry(root, at, largest, oid);
                    write_header(&mut leaf[..HEADER_LEN as usize], 1, n as u32);
                    self.state = State::Make(p);
                    return Ok(Some(Op {
                        oid,
                        kind: ObjectKind::Create {
                            offset: 0,
                            copies: self.copies,
                        },
                        buffer: Buffer::Leaf,
                        range: 0..HEADER_LEN as usize + n as usize * LEAF_ENTRY_LEN as usize,
                    }));
                }
            }
        }
    }

    /// The next old leaf from root position `k` on whose range meets the
    /// old ranges of the nodes the commit touched, built in `leaf` from
    /// the cache.
    fn rewrite(&self, index: &[u8], root: &[u8], leaf: &mut [u8], k: u32) -> Option<(Op, u32)> {
        let mut k = k;
        while k < self.entries {
            let lower = if k == 0 {
                0
            } else {
                root_entry(root, k - 1).0.saturating_add(1)
            };
            let (upper, oid) = root_entry(root, k);
            let (lo, hi) = self.touched?;
            if oid.index() < self.counter_start && upper >= lo && lower <= hi {
                let n = count(index, lower, upper);
                fill(index, lower, n, &mut leaf[HEADER_LEN as usize..]);
                write_header(&mut leaf[..HEADER_LEN as usize], 1, n as u32);
                let op = Op {
                    oid,
                    kind: ObjectKind::Write {
                        offset: 0,
                        copies: self.copies,
                    },
                    buffer: Buffer::Leaf,
                    range: 0..HEADER_LEN as usize + n as usize * LEAF_ENTRY_LEN as usize,
                };
                return Some((op, k));
            }
            k += 1;
        }
        None
    }
}
