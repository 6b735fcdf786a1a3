//! `core::btree::commit` against the reference server's B-tree, which is
//! written from sheep's `sd_inode.c` apart from it: what a commit writes,
//! sheep's lookup finds; sequential writes give the very shape dog's
//! inserts give; a dog-made tree takes our commits and ours take dog's
//! inserts; new leaves go out before the root and old ones after; a root
//! that cannot be is refused.

use sheepdog_core::btree::commit::{Buffer, Commit, Op, LEAF_BUF_LEN, ROOT_BUF_LEN};
use sheepdog_core::btree::{MAX_INDIRECT_ENTRIES, MAX_LEAF_ENTRIES};
use sheepdog_core::engine::Error;
use sheepdog_core::object_op::{ObjectKind, ObjectOp};
use sheepdog_core::oid::{Oid, OidKind, Vid};
use sheepdog_core::receive::{Receive, Replies};
use sheepdog_core::reply::Exchange;
use sheepdog_core::wire::{NewVdi, Request};
use sheepdog_tests::server::hyper::MAX_INDEX;
use sheepdog_tests::server::{Cluster, ClusterConfig};

const MAX: u32 = MAX_LEAF_ENTRIES;
const TIB: u64 = 1 << 40;

fn hyper(c: &mut Cluster, name: &str, size: u64) -> u32 {
    let new = NewVdi {
        vdi_size: size,
        store_policy: 1,
        block_size_shift: 22,
        ..NewVdi::default()
    };
    c.new_vdi(1 << 32, name, new).unwrap()
}

/// A flat index cache of `size` bytes of 4 MiB objects.
fn cache(size: u64) -> Vec<u8> {
    vec![0u8; (size >> 22) as usize * 4]
}

fn set(index: &mut [u8], idx: u32, vid: u32) {
    index[idx as usize * 4..idx as usize * 4 + 4].copy_from_slice(&vid.to_le_bytes());
}

struct Bufs {
    root: Vec<u8>,
    leaf: Vec<u8>,
}

impl Bufs {
    fn new() -> Bufs {
        Bufs {
            root: vec![0; ROOT_BUF_LEN],
            leaf: vec![0; LEAF_BUF_LEN],
        }
    }
}

/// Run a commit of `lo..=hi` against the cluster; the requests it made.
fn commit(c: &mut Cluster, vid: u32, index: &[u8], lo: u32, hi: u32) -> Result<Vec<Op>, Error> {
    let mut b = Bufs::new();
    let mut m = Commit::new(Vid::new(vid).unwrap(), 0, lo, hi);
    let mut ops = Vec::new();
    while let Some(step) = m.next(index, &mut b.root, &mut b.leaf)? {
        let buf = match step.buffer {
            Buffer::Root => &mut b.root[step.range.clone()],
            Buffer::Leaf => &mut b.leaf[step.range.clone()],
        };
        let mut op = Exchange::new(buf, 9, ObjectOp::new(step.oid, step.kind));
        let req = Request::parse_bytes(&op.poll_transmit().unwrap()).unwrap();
        let reply = c.handle(1 << 32, &req, op.payload());
        let incoming = op.handle_header(&reply.header.to_bytes())?;
        if let Receive::Own(r) = incoming.into {
            op.own_bytes_mut()[r].copy_from_slice(&reply.payload);
        }
        op.handle_payload();
        op.outcome().unwrap()?;
        m.done(index, &mut b.root)?;
        ops.push(step);
    }
    assert!(m.is_done());
    Ok(ops)
}

/// The requests in order: `r`/`R` inode read/write, `C`/`W` leaf
/// create/write.
fn kinds(ops: &[Op]) -> String {
    ops.iter()
        .map(|o| match (o.oid.kind(), o.kind) {
            (OidKind::Inode, ObjectKind::Read { .. }) => 'r',
            (OidKind::Inode, _) => 'R',
            (OidKind::Btree, ObjectKind::Create { .. }) => 'C',
            (OidKind::Btree, _) => 'W',
            _ => '?',
        })
        .collect()
}

/// Every index of the cache reads back through sheep's lookup as cached.
fn assert_found(c: &Cluster, vid: u32, index: &[u8]) {
    let tree = c.hyper_tree(vid).expect("a tree");
    for (idx, e) in index.chunks_exact(4).enumerate() {
        let want = u32::from_le_bytes(e.try_into().unwrap());
        assert_eq!(tree.lookup(idx as u32), want, "object {idx}");
    }
}

/// Every leaf holds at most 524,287 entries, all in its range, the root
/// entry naming its largest.
fn assert_well_formed(c: &Cluster, vid: u32) {
    let tree = c.hyper_tree(vid).unwrap();
    let shape = tree.shape();
    if shape.depth == 1 {
        assert!(shape.entries <= MAX_INDEX);
        return;
    }
    assert!(shape.leaves.len() <= MAX_INDIRECT_ENTRIES as usize);
    let mut prev: Option<u32> = None;
    for &(idx, _, n) in &shape.leaves {
        assert!(n <= MAX_INDEX && n > 0, "{shape:?}");
        assert!(prev.is_none_or(|p| p < idx), "root sorted");
        prev = Some(idx);
    }
    // The walk visits each entry once, sorted: ranges do not overlap.
    let all = tree.walk();
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "sorted, no duplicates"
    );
}

#[test]
fn a_depth_1_root_is_rebuilt_whole_and_sheep_finds_every_entry() {
    let mut c = Cluster::new(ClusterConfig::default());
    let size = 5 * TIB;
    let vid = hyper(&mut c, "hv", size);
    let mut index = cache(size);
    for idx in [0u32, 7, 1_000_000, 1_310_719] {
        set(&mut index, idx, vid);
    }
    let ops = commit(&mut c, vid, &index, 0, 1_310_719).unwrap();
    // The root (read head, write from 0): no leaf.
    assert_eq!(ops.len(), 2, "{ops:?}");
    assert_eq!(
        ops[1].kind,
        ObjectKind::Write {
            offset: 0,
            copies: 0
        }
    );
    assert_eq!(ops[1].range, 0..4664 + 8 + 4 * 8);
    assert_found(&c, vid, &index);
    // Again with more: the head and the old root are read, then written.
    set(&mut index, 8, vid);
    let ops = commit(&mut c, vid, &index, 8, 8).unwrap();
    assert_eq!(ops.len(), 3);
    assert_found(&c, vid, &index);
    assert_eq!(c.hyper_shape(vid).unwrap().entries, 5);
}

#[test]
fn sequential_writes_give_the_shape_dogs_inserts_give() {
    // 524,287 fill a root; 400,000 more make it depth 2 and fill the
    // right leaf, then open a third.
    let n = MAX + 400_000;
    let size = 5 * TIB;
    let mut c = Cluster::new(ClusterConfig::default());
    let ours = hyper(&mut c, "ours", size);
    let dogs = hyper(&mut c, "dogs", size);
    let mut index = cache(size);
    let mut lo = 0;
    // In commits of different sizes, as imports of parts would make.
    for hi in [1000, MAX - 1, MAX, MAX + 5000, n - 1] {
        for idx in lo..=hi {
            set(&mut index, idx, ours);
        }
        commit(&mut c, ours, &index, lo, hi).unwrap();
        lo = hi + 1;
    }
    let entries: Vec<(u32, u32)> = (0..n).map(|i| (i, dogs)).collect();
    c.hyper_set(dogs, &entries).unwrap();
    let a = c.hyper_shape(ours).unwrap();
    let b = c.hyper_shape(dogs).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.depth, 2);
    let left = MAX / 2;
    assert_eq!(
        a.leaves,
        vec![
            (left - 1, 0, left as usize),
            (left + MAX - 1, 1, MAX as usize),
            (n - 1, 2, (n - MAX - left) as usize)
        ]
    );
    assert_eq!(a.counter, 3);
    assert_found(&c, ours, &index);
    assert_well_formed(&c, ours);
}

#[test]
fn a_full_leaf_that_takes_more_is_split_and_new_leaves_go_out_before_the_root() {
    let size = 8 * TIB;
    let mut c = Cluster::new(ClusterConfig::default());
    let vid = hyper(&mut c, "hv", size);
    let mut index = cache(size);
    // Every third index: a left leaf whose range spans 786,427 indexes
    // after the split.
    let n = MAX + 1;
    for i in 0..n {
        set(&mut index, 3 * i, vid);
    }
    commit(&mut c, vid, &index, 0, 3 * n).unwrap();
    assert_eq!(c.hyper_shape(vid).unwrap().depth, 2);
    // Fill the left leaf's range: more entries than one leaf holds.
    let left_max = c.hyper_shape(vid).unwrap().leaves[0].0;
    assert_eq!(left_max, 3 * (MAX / 2 - 1));
    for i in 0..left_max {
        set(&mut index, i, vid);
    }
    let ops = commit(&mut c, vid, &index, 1, left_max - 1).unwrap();
    // Head and root read; one new leaf (the lower half); the root; the
    // old leaf with the upper half.
    assert_eq!(kinds(&ops), "rrCRW", "{ops:?}");
    let shape = c.hyper_shape(vid).unwrap();
    assert_eq!(shape.leaves.len(), 3, "{shape:?}");
    assert_eq!(shape.counter, 3);
    assert_found(&c, vid, &index);
    assert_well_formed(&c, vid);
}

#[test]
fn an_old_leaf_split_below_the_commit_still_gets_its_upper_part() {
    // Every third index: a left leaf, a full middle leaf, a last one.
    let size = 16 * TIB;
    let mut c = Cluster::new(ClusterConfig::default());
    let vid = hyper(&mut c, "hv", size);
    let mut index = cache(size);
    let n = MAX + 400_000;
    for i in 0..n {
        set(&mut index, 3 * i, vid);
    }
    commit(&mut c, vid, &index, 0, 3 * (n - 1)).unwrap();
    let shape = c.hyper_shape(vid).unwrap();
    assert_eq!(shape.leaves[1].2, MAX as usize, "{shape:?}");
    // One new index at the bottom of the full middle leaf: it splits, and
    // the old leaf's new range (its upper half) lies above the commit.
    let new = shape.leaves[0].0 + 1;
    set(&mut index, new, vid);
    let ops = commit(&mut c, vid, &index, new, new).unwrap();
    assert_eq!(kinds(&ops), "rrCRW", "{ops:?}");
    assert_found(&c, vid, &index);
    assert_well_formed(&c, vid);
    assert_eq!(c.hyper_shape(vid).unwrap().leaves.len(), 4);
}

#[test]
fn a_tree_dog_made_takes_our_commits_and_ours_takes_dogs_inserts() {
    let size = 16 * TIB;
    let mut c = Cluster::new(ClusterConfig::default());
    let vid = hyper(&mut c, "hv", size);
    let mut index = cache(size);
    // dog writes 600,000 scattered objects: a depth-2 tree.
    let mut x = 12345u64;
    let mut dog = Vec::new();
    for _ in 0..600_000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let idx = ((x >> 33) % (size >> 22)) as u32;
        dog.push((idx, vid));
        set(&mut index, idx, vid);
    }
    c.hyper_set(vid, &dog).unwrap();
    assert_eq!(c.hyper_shape(vid).unwrap().depth, 2);
    assert_found(&c, vid, &index);
    // We fill a dense range across leaves, and append past the end.
    let end = (size >> 22) as u32 - 1;
    for idx in (1_000_000..1_700_000).chain(end - 10..=end) {
        set(&mut index, idx, vid);
    }
    commit(&mut c, vid, &index, 1_000_000, end).unwrap();
    assert_found(&c, vid, &index);
    assert_well_formed(&c, vid);
    // dog inserts into what we wrote: holes low and high, and overwrites.
    let more: Vec<(u32, u32)> = (0..50u32).map(|i| (i * 7919 + 3, vid)).collect();
    for &(idx, v) in &more {
        set(&mut index, idx, v);
    }
    c.hyper_set(vid, &more).unwrap();
    assert_found(&c, vid, &index);
}

#[test]
fn a_root_that_cannot_be_is_refused() {
    let size = TIB;
    let mut c = Cluster::new(ClusterConfig::default());
    let vid = hyper(&mut c, "hv", size);
    let mut index = cache(size);
    set(&mut index, 3, vid);
    let inode = Oid::inode(Vid::new(vid).unwrap());
    let write = |c: &mut Cluster, at: u32, bytes: &[u8]| {
        let req = Request::write_obj(1, inode, at, bytes.len() as u32, 0);
        assert!(c.handle(1, &req, bytes).header.result.is_success());
    };
    // A depth 3.
    write(&mut c, 4664, &[0x74, 0x62, 3, 0, 0, 0, 0, 0]);
    let e = commit(&mut c, vid, &index, 3, 3).unwrap_err();
    assert!(e.to_string().contains("btree depth"), "{e}");
    // Another writer's entry the cache does not have: refused, nothing
    // written.
    let mut root = vec![0x74, 0x62, 1, 0, 1, 0, 0, 0];
    root.extend_from_slice(&9u32.to_le_bytes());
    root.extend_from_slice(&vid.to_le_bytes());
    write(&mut c, 4664, &root);
    let e = commit(&mut c, vid, &index, 3, 3).unwrap_err();
    assert_eq!(e, Error::TreeChanged { idx: 9 });
    assert_eq!(c.hyper_shape(vid).unwrap().entries, 1);
    // A depth-2 root naming another volume's leaf.
    let mut root = vec![0x74, 0x62, 2, 0, 1, 0, 0, 0];
    root.extend_from_slice(&9u32.to_le_bytes());
    root.extend_from_slice(&[0; 4]);
    root.extend_from_slice(&Oid::btree(Vid::new(vid + 1).unwrap(), 0).0.to_le_bytes());
    write(&mut c, 4664, &root);
    let e = commit(&mut c, vid, &index, 3, 3).unwrap_err();
    assert!(e.to_string().contains("btree leaf oid"), "{e}");
    // A depth-2 root naming no leaf would take the commit and map nothing.
    write(&mut c, 4664, &[0x74, 0x62, 2, 0, 0, 0, 0, 0]);
    let e = commit(&mut c, vid, &index, 3, 3).unwrap_err();
    assert!(e.to_string().contains("btree entries"), "{e}");
    // Buffers too small are refused before anything is sent.
    let mut m = Commit::new(Vid::new(vid).unwrap(), 0, 3, 3);
    let e = m.next(&index, &mut [0; 100], &mut [0; 100]).unwrap_err();
    assert!(matches!(e, Error::BufferTooSmall { .. }));
}

#[test]
fn mutated_roots_never_panic_or_stall_the_commit() {
    let size = TIB;
    let objects = (size >> 22) as u32;
    let vid = 0x1234u32;
    let v = Vid::new(vid).unwrap();
    let mut index = cache(size);
    for idx in (0..objects).step_by(97) {
        set(&mut index, idx, vid);
    }
    // A valid head (counter 3) and depth-2 root of three leaves.
    let mut head = vec![0u8; 4672];
    head[568..572].copy_from_slice(&3u32.to_le_bytes());
    head[4664..4672].copy_from_slice(&[0x74, 0x62, 2, 0, 3, 0, 0, 0]);
    let mut root = Vec::new();
    for (n, idx) in [(0u32, 1000u32), (1, 90_000), (2, 200_000)] {
        root.extend_from_slice(&idx.to_le_bytes());
        root.extend_from_slice(&[0; 4]);
        root.extend_from_slice(&Oid::btree(v, n).0.to_le_bytes());
    }
    let mut x = 99u64;
    let mut rnd = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    let mut b = Bufs::new();
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..3000 {
        let (mut h, mut r) = (head.clone(), root.clone());
        for _ in 0..1 + rnd() % 3 {
            if rnd() % 2 == 0 {
                let at = 4664 + rnd() % 8;
                h[at] = rnd() as u8;
            } else {
                let at = rnd() % r.len();
                r[at] = rnd() as u8;
            }
        }
        let mut m = Commit::new(v, 0, rnd() as u32 % objects, objects - 1);
        let mut steps = 0;
        let outcome = loop {
            let step = match m.next(&index, &mut b.root, &mut b.leaf) {
                Ok(Some(s)) => s,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            steps += 1;
            assert!(steps < 64, "bounded");
            if let ObjectKind::Read { offset } = step.kind {
                let src: &[u8] = if offset == 0 { &h } else { &r };
                let want = step.range.len();
                let got = &mut b.root[step.range.clone()];
                let n = want.min(src.len());
                got[..n].copy_from_slice(&src[..n]);
                got[n..].fill(0);
            }
            if let Err(e) = m.done(&index, &mut b.root) {
                break Err(e);
            }
        };
        match outcome {
            Ok(()) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(ok > 0 && refused > 0, "{ok} {refused}");
}
