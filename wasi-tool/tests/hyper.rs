//! Hyper volumes (store_policy 1, a B-tree index): `create --hyper` makes
//! one as dog's `-y` does, `info` and `list` count its objects from the
//! tree, `export` reads through it, `import` writes it and commits its
//! entries into the tree (checked with the reference server's own lookup,
//! written from sheep's), and `delete` removes it without touching its
//! B-tree.

mod common;

use common::*;
use sheepdog_core::btree;
use sheepdog_core::inode;
use sheepdog_core::oid::Oid;
use sheepdog_core::wire::Request;
use sheepdog_tests::server::ServerHandle;

#[test]
fn a_hyper_volume_is_created_read_refused_and_deleted() {
    let h = server();
    let dir = TempDir::new();
    let r = sheep_ok(&h, &["create", "--hyper", "hv", "1T"]);
    assert!(r.out().contains("created hv (1099511627776 bytes"), "{r:?}");
    let v = vid(&h, "hv");
    let hd = header(&h, v);
    assert_eq!((hd.store_policy, hd.block_size_shift), (1, 22));

    // Object 7 holds data, named by the root as dog's write leaves it.
    let data = random(1, OBJ);
    {
        let mut c = h.cluster();
        let now = 1 << 32;
        let req = Request::create_and_write(1, data_oid(v, 7), None, 0, OBJ as u32, 0);
        c.handle(now, &req, &data);
        let mut b = c
            .read_object(
                Oid::inode(sheepdog_core::oid::Vid::new(v).unwrap()),
                0,
                inode::HEADER_LEN,
            )
            .unwrap();
        b.extend_from_slice(&btree::MAGIC.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&7u32.to_le_bytes());
        b.extend_from_slice(&v.to_le_bytes());
        let inode_oid = Oid::inode(sheepdog_core::oid::Vid::new(v).unwrap());
        let req = Request::write_obj(2, inode_oid, 0, b.len() as u32, 0);
        c.handle(now, &req, &b);
    }

    let info = sheep_ok(&h, &["info", "--json", "hv"]).out();
    let j: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(j["hyper"], true);
    assert_eq!(j["used"], OBJ as u64);
    assert!(sheep_ok(&h, &["list"]).out().contains("hv"));

    // Exported sparse: the object where the tree says, zeros elsewhere.
    let out = dir.path("hv.raw");
    sheep_ok(&h, &["export", "hv", &s(&out)]);
    let f = std::fs::File::open(&out).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 40);
    let mut got = vec![0u8; 2 * OBJ];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut got, 6 * OBJ as u64).unwrap();
    assert!(all_zero(&got[..OBJ]));
    assert!(got[OBJ..] == data[..]);

    // Imported into: objects 0 and 2 written, the zeros of object 1 not
    // sent, object 7 left as it was; sheep's lookup finds what the tree
    // commit wrote.
    let mut img = random(2, 3 * OBJ);
    img[OBJ..2 * OBJ].fill(0);
    let file = dir.file("img", &img);
    let r = sheep_ok(&h, &["import", &file, "hv"]);
    assert!(r.stderr.contains("B-tree of hv"), "{r:?}");
    {
        let c = h.cluster();
        assert_eq!(c.hyper_lookup(v, 0), Some(v));
        assert_eq!(c.hyper_lookup(v, 1), Some(0));
        assert_eq!(c.hyper_lookup(v, 2), Some(v));
        assert_eq!(c.hyper_lookup(v, 7), Some(v));
        assert_eq!(c.hyper_shape(v).unwrap().entries, 3);
    }
    let out = dir.path("hv2.raw");
    sheep_ok(&h, &["export", "hv", &s(&out)]);
    let f = std::fs::File::open(&out).unwrap();
    let mut got = vec![0u8; 8 * OBJ];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut got, 0).unwrap();
    assert!(got[..3 * OBJ] == img[..]);
    assert!(got[7 * OBJ..] == data[..]);
    // Zeros over data are written as zeros (the tree takes no removals).
    let zeros = dir.file("zeros", &vec![0u8; OBJ]);
    sheep_ok(&h, &["import", &zeros, "hv"]);
    assert_eq!(h.cluster().hyper_lookup(v, 0), Some(v));
    sheep_ok(&h, &["export", "hv", &s(&out)]);
    let f = std::fs::File::open(&out).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut got, 0).unwrap();
    assert!(all_zero(&got[..OBJ]));
    // What is still refused says what.
    assert_error(
        &sheep(&h, &["snapshot", "create", "hv", "--tag", "s"]),
        &["hv", "hyper volumes"],
    );
    // dog's limits: 16 PiB at most, 4 MiB objects, no preallocation.
    assert_error(
        &sheep(&h, &["create", "--hyper", "big", "17P"]),
        &["too large"],
    );
    let r = sheep(&h, &["create", "--hyper", "--prealloc", "p", "1T"]);
    assert_ne!(r.code, Some(0), "{r:?}");

    sheep_ok(&h, &["delete", "hv"]);
    assert!(!exists(&h, "hv"));
    assert!(
        !h.cluster().object_exists(data_oid(v, 7)),
        "the server's walk removed it"
    );

    // Depth 2: two leaves (btree_counter 2) and object 3 in the second.
    sheep_ok(&h, &["create", "--hyper", "deep", "1T"]);
    let d = vid(&h, "deep");
    let dv = sheepdog_core::oid::Vid::new(d).unwrap();
    let obj = random(3, 4096);
    {
        let mut c = h.cluster();
        let now = 1 << 32;
        let req = Request::create_and_write(1, data_oid(d, 3), None, 0, 4096, 0);
        c.handle(now, &req, &obj);
        let mut root = Vec::new();
        for (n, idx) in [(0u32, 1u32), (1, 3)] {
            let leaf = Oid::btree(dv, n);
            let mut b = btree::MAGIC.to_le_bytes().to_vec();
            b.extend_from_slice(&1u16.to_le_bytes());
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&idx.to_le_bytes());
            b.extend_from_slice(&if idx == 3 { d } else { 0 }.to_le_bytes());
            let req = Request::create_and_write(1, leaf, None, 0, b.len() as u32, 0);
            c.handle(now, &req, &b);
            root.extend_from_slice(&idx.to_le_bytes());
            root.extend_from_slice(&[0; 4]);
            root.extend_from_slice(&leaf.0.to_le_bytes());
        }
        let mut b = c.read_object(Oid::inode(dv), 0, inode::HEADER_LEN).unwrap();
        b[568..572].copy_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&btree::MAGIC.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&root);
        let req = Request::write_obj(2, Oid::inode(dv), 0, b.len() as u32, 0);
        c.handle(now, &req, &b);
    }
    let out = dir.path("deep.raw");
    sheep_ok(&h, &["export", "deep", &s(&out)]);
    let f = std::fs::File::open(&out).unwrap();
    let mut got = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut got, 3 * OBJ as u64).unwrap();
    assert!(got == obj);
    // Deleted: the server's walk removes the data, ours the leaves it
    // leaves behind.
    // Imported into at depth 2: objects 0 and 1 go to the first leaf, 2
    // to 4 to the last, whose root entry now names 4.
    let img = random(4, 5 * OBJ);
    let file = dir.file("deep.img", &img);
    sheep_ok(&h, &["import", &file, "deep"]);
    {
        let c = h.cluster();
        let shape = c.hyper_shape(d).unwrap();
        assert_eq!(shape.leaves, vec![(1, 0, 2), (4, 1, 3)], "{shape:?}");
        for idx in 0..5 {
            assert_eq!(c.hyper_lookup(d, idx), Some(d), "object {idx}");
        }
    }
    assert!(exported_head(&h, &dir, "deep", 5 * OBJ) == img);
    let r = sheep_ok(&h, &["delete", "deep"]);
    assert!(r.out().contains("and its 2 B-tree leaves"), "{r:?}");
    for n in 0..2 {
        assert!(!h.cluster().object_exists(Oid::btree(dv, n)), "leaf {n}");
    }
    for idx in 0..5 {
        assert!(!h.cluster().object_exists(data_oid(d, idx)));
    }
}

#[test]
fn a_tree_dog_made_past_one_leaf_takes_an_import_and_dogs_inserts_after() {
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "--hyper", "big", "5T"]);
    let v = vid(&h, "big");
    // dog's inserts of 600,000 objects from index 100 on (their data is
    // not needed here): a depth-2 tree of three leaves.
    let dogs: Vec<(u32, u32)> = (100..600_100).map(|i| (i, v)).collect();
    h.cluster().hyper_set(v, &dogs).unwrap();
    assert_eq!(h.cluster().hyper_shape(v).unwrap().depth, 2);
    let img = random(5, 3 * OBJ);
    let file = dir.file("img", &img);
    sheep_ok(&h, &["import", &file, "big"]);
    // dog writes again after us, into the leaf we rewrote.
    h.cluster().hyper_set(v, &[(50, v), (600_200, v)]).unwrap();
    let c = h.cluster();
    for idx in [0, 1, 2, 50, 100, 300_000, 600_099, 600_200] {
        assert_eq!(c.hyper_lookup(v, idx), Some(v), "object {idx}");
    }
    assert_eq!(c.hyper_lookup(v, 3), Some(0));
    assert_eq!(c.hyper_lookup(v, 600_100), Some(0));
    drop(c);
    let out = dir.path("big.raw");
    let r = sheep(&h, &["export", "big", &s(&out)]);
    // Objects dog indexed without data: the export names the first.
    assert_error(&r, &["object 50 of big"]);
    let f = std::fs::File::open(&out);
    assert!(f.is_err(), "a failed export leaves no file");
    let info = sheep_ok(&h, &["info", "--json", "big"]).out();
    let j: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(j["used"], (600_005u64) * OBJ as u64);
}

#[test]
fn an_rbd_diff_applies_to_a_hyper_volume_zeros_written_not_released() {
    let h = server();
    let dir = TempDir::new();
    // A flat VDI's change between two snapshots: object 0 rewritten,
    // object 1 zeroed (a z record), object 2 untouched.
    let s1 = random(6, 3 * OBJ);
    let mut s2 = s1.clone();
    s2[..OBJ].copy_from_slice(&random(7, OBJ));
    s2[OBJ..2 * OBJ].fill(0);
    let f1 = dir.file("s1", &s1);
    let f2 = dir.file("s2", &s2);
    sheep_ok(&h, &["import", &f1, "flat"]);
    sheep_ok(&h, &["snapshot", "create", "flat", "--tag", "s1"]);
    sheep_ok(&h, &["import", &f2, "flat"]);
    sheep_ok(&h, &["snapshot", "create", "flat", "--tag", "s2"]);
    let diff = dir.path("d");
    sheep_ok(&h, &["export-diff", "--from", "s1", "flat@s2", &s(&diff)]);
    // The hyper volume holds s1; it has no snapshot s1, hence --force.
    sheep_ok(&h, &["create", "--hyper", "hv", "1T"]);
    sheep_ok(&h, &["import", &f1, "hv"]);
    let r = sheep_ok(&h, &["import-diff", "--force", &s(&diff), "hv"]);
    assert!(
        r.stderr.contains("hyper volumes have no snapshots"),
        "{r:?}"
    );
    let v = vid(&h, "hv");
    assert_eq!(
        h.cluster().hyper_lookup(v, 1),
        Some(v),
        "zeroed, not released"
    );
    assert!(exported_head(&h, &dir, "hv", 3 * OBJ) == s2);
}

/// The first `len` bytes of `vdi`, exported to a sparse file (the volume
/// is too large to hold).
fn exported_head(h: &ServerHandle, dir: &TempDir, vdi: &str, len: usize) -> Vec<u8> {
    let out = dir.path(&format!("{vdi}.head.raw"));
    sheep_ok(h, &["export", vdi, &s(&out)]);
    let f = std::fs::File::open(&out).unwrap();
    let mut got = vec![0u8; len];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut got, 0).unwrap();
    got
}

#[test]
fn a_commit_the_server_breaks_fails_with_one_clear_error_and_a_rerun_completes_it() {
    use sheepdog_core::wire::{Opcode, ResultCode};
    use sheepdog_tests::server::{FaultAction, Matcher};
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "--hyper", "hv", "1T"]);
    let v = vid(&h, "hv");
    let inode = Oid::inode(sheepdog_core::oid::Vid::new(v).unwrap());
    let root_write = move |req: &Request| {
        req.opcode == Opcode::WriteObj && req.obj().is_some_and(|a| a.oid == inode && a.offset == 0)
    };
    let img = random(8, 2 * OBJ);
    let file = dir.file("img", &img);
    let lines = |r: &Run| r.stderr.lines().filter(|l| l.contains("error")).count();

    // The connection cut as the root goes out: one error, nothing mapped.
    h.cluster()
        .inject(Matcher::custom(root_write), FaultAction::Disconnect, 1);
    let r = sheep(&h, &["import", &file, "hv"]);
    assert_error(&r, &["hv", "closed the connection"]);
    assert_eq!(lines(&r), 1, "{r:?}");
    assert_eq!(h.cluster().hyper_lookup(v, 0), Some(0));

    // The head read answered with the wrong length: refused by name.
    h.cluster().inject(
        Matcher::custom(move |req| {
            req.opcode == Opcode::ReadObj
                && req.obj().is_some_and(|a| a.oid == inode && a.offset == 0)
                && req.data_length == inode::HEADER_LEN as u32 + 8
        }),
        FaultAction::ApplyThenLength(100),
        1,
    );
    let r = sheep(&h, &["import", &file, "hv"]);
    assert_error(&r, &["B-tree of hv", "100 bytes, expected 4672"]);
    assert_eq!(h.cluster().hyper_lookup(v, 1), Some(0));

    // A transient refusal of the root write is waited out; this run
    // completes what the others wrote.
    h.cluster().inject(
        Matcher::custom(root_write),
        FaultAction::Fail(ResultCode::WaitForJoin),
        2,
    );
    sheep_ok(&h, &["import", &file, "hv"]);
    for idx in 0..2 {
        assert_eq!(h.cluster().hyper_lookup(v, idx), Some(v), "object {idx}");
    }
    assert!(exported_head(&h, &dir, "hv", 2 * OBJ) == img);
}
