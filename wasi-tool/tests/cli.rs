//! sheep-tool end to end, natively, against the reference server: every
//! command's normal behaviour and its real effect on the cluster.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::*;
use sheepdog_tests::server::ClusterConfig;

// ----- create ---------------------------------------------------------------

/// `created NAME (SIZE bytes, vdi id HEX)`: the VID it names.
fn created_vid(r: &Run, name: &str, size: u64) -> u32 {
    let out = r.out();
    let prefix = format!("created {name} ({size} bytes, vdi id ");
    let rest = out
        .trim_end()
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("unexpected create output: {r:?}"));
    let hex = rest.strip_suffix(')').expect("closing parenthesis");
    u32::from_str_radix(hex, 16).expect("hex vdi id")
}

#[test]
fn create_accepts_sizes_with_suffixes() {
    let h = server();
    for (name, arg, size) in [
        ("bytes", "1048576", 1u64 << 20),
        ("kib", "4K", 4 << 10),
        ("mib", "12M", 12 << 20),
        ("gib", "3G", 3 << 30),
        ("tib", "2T", 2 << 40),
        ("mib-long", "5MiB", 5 << 20),
    ] {
        let r = sheep_ok(&h, &["create", name, arg]);
        let v = vid(&h, name);
        assert_eq!(created_vid(&r, name, size), v, "{r:?}");
        assert!(r.stderr.is_empty(), "{r:?}");
        let hdr = header(&h, v);
        assert_eq!(hdr.vdi_size, size, "{name}");
        assert_eq!(hdr.name(), name.as_bytes());
        assert!(!hdr.is_snapshot());
        // Nothing allocated without --prealloc.
        assert_eq!(entry(&h, v, 0), 0);
    }
}

#[test]
fn create_uses_cluster_defaults() {
    let h = server_with(ClusterConfig::default().with_copies(2));
    sheep_ok(&h, &["create", "v", "8M"]);
    let hdr = header(&h, vid(&h, "v"));
    assert_eq!(hdr.nr_copies, 2);
    assert_eq!(hdr.copy_policy, 0);
    assert_eq!(hdr.block_size_shift, 22);
}

#[test]
fn create_with_copies() {
    let h = server();
    sheep_ok(&h, &["create", "two", "8M", "--copies", "2"]);
    let hdr = header(&h, vid(&h, "two"));
    assert_eq!((hdr.nr_copies, hdr.copy_policy), (2, 0));

    sheep_ok(&h, &["create", "ec", "8M", "--copies", "4:2"]);
    let v = vid(&h, "ec");
    let hdr = header(&h, v);
    // 4 data + 2 parity strips: 6 copies, policy (4/2) << 4 | 2.
    assert_eq!((hdr.nr_copies, hdr.copy_policy), (6, 0x22));
    let state = h.cluster().vdi_state(v).expect("state");
    assert_eq!((state.nr_copies, state.copy_policy), (6, 0x22));

    let r = sheep_ok(&h, &["info", "ec", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).expect("JSON");
    assert_eq!(j["copies"], "4:2");
}

#[test]
fn create_with_object_size() {
    let h = server();
    sheep_ok(&h, &["create", "big", "64M", "--object-size", "8M"]);
    sheep_ok(&h, &["create", "small", "3M", "--object-size", "1M"]);
    let big = header(&h, vid(&h, "big"));
    let small = header(&h, vid(&h, "small"));
    assert_eq!(big.block_size_shift, 23);
    assert_eq!(small.block_size_shift, 20);
    assert_eq!(
        h.cluster().vdi_state(big.vdi_id).unwrap().block_size_shift,
        23
    );

    // Data lands in objects of that size.
    let dir = TempDir::new();
    let data = random(1, 3 * MIB);
    import(&h, &dir, "small", &data);
    for idx in 0..3 {
        assert_eq!(entry(&h, small.vdi_id, idx), small.vdi_id);
        let obj = h
            .cluster()
            .read_object(data_oid(small.vdi_id, idx), 0, MIB)
            .expect("object");
        let at = idx as usize * MIB;
        assert_eq!(obj, &data[at..at + MIB], "object {idx}");
    }
    assert_eq!(export_bytes(&h, "small"), data);
}

#[test]
fn create_prealloc_allocates_every_object() {
    let h = server();
    // 10 MiB in 4 MiB objects: 3 objects, the last one partly used.
    sheep_ok(&h, &["create", "pre", "10M", "--prealloc"]);
    let v = vid(&h, "pre");
    for idx in 0..3 {
        assert_eq!(entry(&h, v, idx), v, "index entry {idx}");
        assert!(h.cluster().object_exists(data_oid(v, idx)), "object {idx}");
    }
    assert_eq!(entry(&h, v, 3), 0);
    assert!(!h.cluster().object_exists(data_oid(v, 3)));
    assert_eq!(export_bytes(&h, "pre"), vec![0u8; 10 * MIB]);

    sheep_ok(
        &h,
        &["create", "pre1m", "5M", "--prealloc", "--object-size", "1M"],
    );
    let v = vid(&h, "pre1m");
    for idx in 0..5 {
        assert_eq!(entry(&h, v, idx), v, "index entry {idx}");
        assert!(h.cluster().object_exists(data_oid(v, idx)), "object {idx}");
    }
}

// ----- import and export ----------------------------------------------------

/// Random data with zero regions: whole zero objects, a zero range inside an
/// object, and zeros at the end.
#[test]
fn import_then_export_is_byte_identical() {
    let h = server();
    let dir = TempDir::new();
    let data = mixed_image(3 * OBJ + 2 * MIB);
    let f = dir.file("in.img", &data);
    let r = sheep_ok(&h, &["import", &f, "vol"]);
    assert!(r.stdout.is_empty(), "{r:?}");
    assert!(
        r.stderr.contains("imported") && r.stderr.contains("vol"),
        "{r:?}"
    );
    let v = vid(&h, "vol");
    assert_eq!(vdi_size(&h, v), data.len() as u64);

    let out = dir.path("out.img");
    let r = sheep_ok(&h, &["export", "vol", &s(&out)]);
    assert!(r.stderr.contains("exported vol"), "{r:?}");
    assert!(fs::read(&out).unwrap() == data, "file export differs");
    assert!(export_bytes(&h, "vol") == data, "stdout export differs");
}

#[test]
fn import_creates_vdi_with_file_size_rounded_up_to_512() {
    let h = server();
    let dir = TempDir::new();
    let data = random(2, 5 * MIB + 1000);
    let f = dir.file("odd.img", &data);
    sheep_ok(&h, &["import", &f, "odd"]);
    let v = vid(&h, "odd");
    let rounded = (5 * MIB + 1024) as u64;
    assert_eq!(vdi_size(&h, v), rounded);
    assert_eq!(header(&h, v).block_size_shift, 22);
    let out = export_bytes(&h, "odd");
    assert_eq!(out.len() as u64, rounded);
    assert!(out[..data.len()] == data[..]);
    assert!(all_zero(&out[data.len()..]));
}

#[test]
fn import_with_size_creates_vdi_of_that_size() {
    let h = server();
    let dir = TempDir::new();
    let data = random(3, 5 * MIB);
    let f = dir.file("in.img", &data);
    sheep_ok(&h, &["import", &f, "sized", "--size", "32M"]);
    let v = vid(&h, "sized");
    assert_eq!(vdi_size(&h, v), 32 << 20);
    // Only the objects the file covers are allocated.
    assert_eq!(entry(&h, v, 0), v);
    assert_eq!(entry(&h, v, 1), v);
    for idx in 2..8 {
        assert_eq!(entry(&h, v, idx), 0, "index entry {idx}");
    }
    assert!(export_bytes(&h, "sized") == padded(&data, 32 * MIB));
}

#[test]
fn import_into_existing_larger_vdi() {
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "big", "20M"]);
    let v = vid(&h, "big");
    let data = random(4, 6 * MIB + 512);
    import(&h, &dir, "big", &data);
    assert_eq!(vid(&h, "big"), v, "the VDI was not recreated");
    assert_eq!(vdi_size(&h, v), 20 << 20);
    assert!(export_bytes(&h, "big") == padded(&data, 20 * MIB));
}

#[test]
fn import_never_allocates_all_zero_objects() {
    let h = server();
    let dir = TempDir::new();
    // Objects: data, zeros, half zeros, zeros, data.
    let mut data = random(5, 5 * OBJ);
    data[OBJ..2 * OBJ].fill(0);
    data[2 * OBJ..2 * OBJ + OBJ / 2].fill(0);
    data[3 * OBJ..4 * OBJ].fill(0);
    import(&h, &dir, "sparse", &data);
    let v = vid(&h, "sparse");
    for (idx, allocated) in [(0, true), (1, false), (2, true), (3, false), (4, true)] {
        let want = if allocated { v } else { 0 };
        assert_eq!(entry(&h, v, idx), want, "index entry {idx}");
        assert_eq!(
            h.cluster().object_exists(data_oid(v, idx)),
            allocated,
            "object {idx}"
        );
    }
    assert!(export_bytes(&h, "sparse") == data);
}

#[test]
fn reimport_releases_zeroed_objects_and_writes_partial_zeros() {
    let h = server();
    let dir = TempDir::new();
    let first = random(6, 4 * OBJ);
    import(&h, &dir, "re", &first);
    let v = vid(&h, "re");
    for idx in 0..4 {
        assert_eq!(entry(&h, v, idx), v);
    }

    // New content, 14 MiB: object 1 all zeros (released), a zero range at
    // the start of object 2 (inside a data chunk), and object 3's first
    // 2 MiB zeros: a zero chunk that is not a whole object.
    let mut second = random(60, 3 * OBJ + 2 * MIB);
    second[OBJ..2 * OBJ].fill(0);
    second[2 * OBJ..2 * OBJ + MIB].fill(0);
    second[3 * OBJ..].fill(0);
    let f = dir.file("second.img", &second);
    sheep_ok(&h, &["import", &f, "re"]);

    assert_eq!(entry(&h, v, 0), v);
    assert_eq!(entry(&h, v, 1), 0, "the all-zero object is released");
    assert!(!h.cluster().object_exists(data_oid(v, 1)));
    assert_eq!(entry(&h, v, 2), v);
    assert_eq!(entry(&h, v, 3), v, "a partly zeroed object stays");
    let obj3 = h
        .cluster()
        .read_object(data_oid(v, 3), 0, OBJ)
        .expect("object 3");
    assert!(all_zero(&obj3[..2 * MIB]), "zeros were written");
    assert!(
        obj3[2 * MIB..] == first[3 * OBJ + 2 * MIB..],
        "past the file: old data"
    );

    let mut expect = second.clone();
    expect.extend_from_slice(&first[second.len()..]);
    assert!(export_bytes(&h, "re") == expect);
}

#[test]
fn reimport_zeros_with_large_objects_reads_back_equal() {
    // With 8 MiB objects the tool moves 4 MiB chunks, so an all-zero chunk
    // is only half an object.
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "big", "24M", "--object-size", "8M"]);
    import(&h, &dir, "big", &random(8, 24 * MIB));
    let mut second = random(80, 24 * MIB);
    second[4 * MIB..8 * MIB].fill(0);
    second[8 * MIB..16 * MIB].fill(0);
    import(&h, &dir, "big", &second);
    let v = vid(&h, "big");
    let obj0 = h.cluster().read_object(data_oid(v, 0), 0, 8 * MIB).unwrap();
    assert!(obj0[..4 * MIB] == second[..4 * MIB]);
    assert!(all_zero(&obj0[4 * MIB..]));
    assert!(export_bytes(&h, "big") == second);
}

#[test]

fn reimport_releases_all_zero_large_objects() {
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "big", "16M", "--object-size", "8M"]);
    import(&h, &dir, "big", &random(81, 16 * MIB));
    let second = padded(&random(82, 8 * MIB), 16 * MIB);
    import(&h, &dir, "big", &second);
    let v = vid(&h, "big");
    assert_eq!(entry(&h, v, 0), v);
    assert_eq!(entry(&h, v, 1), 0, "the all-zero object is released");
    assert!(export_bytes(&h, "big") == second);
}

#[test]
fn import_from_stdin_creates_vdi_with_size() {
    let h = server();
    let data = random(9, 5 * MIB + 3);
    let mut c = tool(&h);
    c.args(["import", "-", "piped", "--size", "8M"]);
    let r = run_with_stdin(c, &data);
    assert_ok(&r);
    let v = vid(&h, "piped");
    assert_eq!(vdi_size(&h, v), 8 << 20);
    assert!(export_bytes(&h, "piped") == padded(&data, 8 * MIB));
}

#[test]
fn import_from_stdin_into_existing_vdi() {
    let h = server();
    sheep_ok(&h, &["create", "piped", "12M"]);
    let mut data = random(10, 9 * MIB);
    data[..OBJ].fill(0);
    let mut c = tool(&h);
    c.args(["import", "-", "piped"]);
    let r = run_with_stdin(c, &data);
    assert_ok(&r);
    let v = vid(&h, "piped");
    assert_eq!(vdi_size(&h, v), 12 << 20);
    assert_eq!(entry(&h, v, 0), 0, "zeros from a pipe are skipped too");
    assert!(export_bytes(&h, "piped") == padded(&data, 12 * MIB));
}

#[test]
fn export_to_regular_file_is_sparse() {
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "mostly-empty", "64M"]);
    let data = random(11, MIB);
    import(&h, &dir, "mostly-empty", &data);
    let out = dir.path("sparse.img");
    sheep_ok(&h, &["export", "mostly-empty", &s(&out)]);
    let meta = fs::metadata(&out).unwrap();
    assert_eq!(meta.len(), 64 << 20);
    let allocated = meta.blocks() * 512;
    assert!(
        allocated < 8 << 20,
        "{allocated} bytes allocated for 1 MiB of data"
    );
    assert!(fs::read(&out).unwrap() == padded(&data, 64 * MIB));
}

#[test]
fn export_to_stdout_writes_zeros_in_holes() {
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "holes", "12M"]);
    let mut data = random(12, 2 * OBJ);
    data[..OBJ].fill(0);
    import(&h, &dir, "holes", &data);
    let v = vid(&h, "holes");
    assert_eq!(entry(&h, v, 0), 0);
    assert_eq!(entry(&h, v, 2), 0);
    let r = sheep_ok(&h, &["export", "holes", "-"]);
    assert_eq!(r.stdout.len(), 12 * MIB);
    assert!(r.stdout == padded(&data, 12 * MIB));
    assert!(r.stderr.is_empty(), "{r:?}");
}

#[test]

fn export_to_a_character_device() {
    let h = server();
    sheep_ok(&h, &["create", "v", "8M"]);
    sheep_ok(&h, &["export", "v", "/dev/null"]);
}

#[test]
fn export_overwrites_a_larger_file() {
    let h = server();
    let dir = TempDir::new();
    let data = random(13, 2 * MIB);
    import(&h, &dir, "v", &data);
    let out = dir.file("out.img", &random(14, 5 * MIB));
    sheep_ok(&h, &["export", "v", &out]);
    assert!(fs::read(&out).unwrap() == data);
}

/// A VDI with two generations: `a` in snapshot `t1` (id 1), `b` now.
fn two_generations(h: &sheepdog_tests::server::ServerHandle, dir: &TempDir) -> (Vec<u8>, Vec<u8>) {
    let a = random(20, 6 * MIB);
    import(h, dir, "v", &a);
    sheep_ok(h, &["snapshot", "create", "v", "--tag", "t1"]);
    let mut b = random(21, 6 * MIB);
    b[OBJ..].fill(0);
    import(h, dir, "v", &b);
    (a, b)
}

#[test]
fn export_snapshot_by_tag_and_id() {
    let h = server();
    let dir = TempDir::new();
    let (a, b) = two_generations(&h, &dir);
    assert!(export_bytes(&h, "v@t1") == a);
    assert!(export_bytes(&h, "v@1") == a);
    assert!(export_bytes(&h, "v") == b);
    assert!(export_file(&h, &dir, "v@t1") == a);
    let r = sheep_ok(&h, &["export", "v@t1", &s(&dir.path("x"))]);
    assert!(r.stderr.contains("exported v@t1"), "{r:?}");
}

#[test]
fn sheepdog_uri_names_the_server() {
    let h = server();
    let dir = TempDir::new();
    let (a, b) = two_generations(&h, &dir);
    // -a points nowhere: the URI's server must be used.
    let nowhere = format!("127.0.0.1:{}", dead_port());
    let base = format!("sheepdog://{}", addr(&h));
    let mut c = bare_tool();
    c.args(["-a", &nowhere, "export", &format!("{base}/v#t1"), "-"]);
    let r = run(c);
    assert_ok(&r);
    assert!(r.stdout == a);

    let mut c = bare_tool();
    c.args(["-a", &nowhere, "export", &format!("{base}/v"), "-"]);
    let r = run(c);
    assert_ok(&r);
    assert!(r.stdout == b);

    let mut c = bare_tool();
    c.args(["-a", &nowhere, "info", &format!("{base}/v#1"), "--json"]);
    let r = run(c);
    assert_ok(&r);
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(j["tag"], "t1");
}

#[test]
fn address_from_environment() {
    let h = server();
    sheep_ok(&h, &["create", "env-vdi", "4M"]);
    let mut c = bare_tool();
    c.env("SHEEPDOG_ADDRESS", addr(&h)).args(["list", "--json"]);
    let r = run(c);
    assert_ok(&r);
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(j[0]["name"], "env-vdi");

    // -a wins over the environment.
    let mut c = bare_tool();
    c.env("SHEEPDOG_ADDRESS", format!("127.0.0.1:{}", dead_port()))
        .args(["-a", &addr(&h), "info", "env-vdi"]);
    assert_ok(&run(c));
}

#[test]
fn lone_leading_double_dash_is_dropped() {
    let h = server();
    sheep_ok(&h, &["create", "dash", "4M"]);
    let mut c = bare_tool();
    c.env("SHEEPDOG_ADDRESS", addr(&h)).args(["--", "list"]);
    let r = run(c);
    assert_ok(&r);
    assert!(r.out().lines().any(|l| l.contains("dash")), "{r:?}");

    let mut c = bare_tool();
    c.args(["--", "-a", &addr(&h), "info", "dash"]);
    assert_ok(&run(c));
}

// ----- snapshots and clones ---------------------------------------------------

#[test]
fn snapshot_create_with_and_without_tag() {
    let h = server();
    sheep_ok(&h, &["create", "v", "8M"]);
    let v0 = vid(&h, "v");
    let r = sheep_ok(&h, &["snapshot", "create", "v", "--tag", "before"]);
    assert_eq!(
        r.out().trim_end(),
        format!("snapshot of v taken (vdi id {v0:x})")
    );
    let tagged = h
        .cluster()
        .lookup("v", "before", 0)
        .expect("tagged snapshot");
    assert_eq!(tagged, v0, "the old working VDI became the snapshot");
    assert!(header(&h, tagged).is_snapshot());
    assert_eq!(header(&h, tagged).tag(), b"before");
    let v1 = vid(&h, "v");
    assert_ne!(v1, v0);
    assert!(!header(&h, v1).is_snapshot());

    sheep_ok(&h, &["snapshot", "create", "v"]);
    let untagged = h.cluster().lookup("v", "", 2).expect("snapshot id 2");
    assert_eq!(untagged, v1);
    let hdr = header(&h, untagged);
    assert!(hdr.is_snapshot());
    assert!(hdr.tag().is_empty());
    assert_eq!(header(&h, vid(&h, "v")).snap_id, 3);
}

#[test]
fn snapshot_list_shows_only_that_vdis_snapshots() {
    let h = server();
    sheep_ok(&h, &["create", "v", "8M"]);
    sheep_ok(&h, &["create", "other", "8M"]);
    sheep_ok(&h, &["snapshot", "create", "v", "--tag", "one"]);
    sheep_ok(&h, &["snapshot", "create", "v"]);
    sheep_ok(&h, &["snapshot", "create", "other", "--tag", "x"]);

    let r = sheep_ok(&h, &["snapshot", "list", "v"]);
    let out = r.out();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{r:?}");
    assert!(lines[0].contains("Name") && lines[0].contains("Tag"));
    assert!(lines[1].starts_with("s v "), "{r:?}");
    assert!(lines[1].contains("one"), "{r:?}");
    assert!(lines[2].starts_with("s v "), "{r:?}");

    let r = sheep_ok(&h, &["snapshot", "list", "v", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let arr = j.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    let mut ids: Vec<(u64, String)> = arr
        .iter()
        .map(|e| {
            assert_eq!(e["name"], "v");
            assert_eq!(e["snapshot"], true);
            (
                e["snapshot_id"].as_u64().unwrap(),
                e["tag"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    ids.sort();
    assert_eq!(ids, vec![(1, "one".to_owned()), (2, String::new())]);

    // A VDI without snapshots: just the header, or [].
    sheep_ok(&h, &["create", "lonely", "4M"]);
    let r = sheep_ok(&h, &["snapshot", "list", "lonely"]);
    assert_eq!(r.out().lines().count(), 1, "{r:?}");
    let r = sheep_ok(&h, &["snapshot", "list", "lonely", "--json"]);
    assert_eq!(r.out().trim(), "[]");
}

#[test]
fn snapshot_delete_removes_only_the_snapshot() {
    let h = server();
    let dir = TempDir::new();
    let (_, b) = two_generations(&h, &dir);
    let snap = h.cluster().lookup("v", "t1", 0).unwrap();
    let r = sheep_ok(&h, &["snapshot", "delete", "v@t1"]);
    assert_eq!(r.out().trim_end(), "deleted v@t1");
    assert!(h.cluster().lookup("v", "t1", 0).is_err());
    assert!(h.cluster().vdi_state(snap).is_none_or(|s| s.deleted));
    assert!(export_bytes(&h, "v") == b, "the working VDI is untouched");
    let r = sheep_ok(&h, &["snapshot", "list", "v", "--json"]);
    assert_eq!(r.out().trim(), "[]");
}

#[test]
fn snapshot_rollback_brings_data_back() {
    let h = server();
    let dir = TempDir::new();
    let (a, b) = two_generations(&h, &dir);
    assert!(export_bytes(&h, "v") == b);
    let r = sheep_ok(&h, &["snapshot", "rollback", "v@t1"]);
    let out = r.out();
    assert!(out.starts_with("rolled v back to v@t1 (vdi id "), "{r:?}");
    assert!(export_bytes(&h, "v") == a, "data went back");
    // The snapshot is still there and the working VDI is writable.
    assert!(export_bytes(&h, "v@t1") == a);
    let c = random(22, MIB);
    import(&h, &dir, "v", &c);
    let mut expect = a.clone();
    expect[..MIB].copy_from_slice(&c);
    assert!(export_bytes(&h, "v") == expect);
    assert!(export_bytes(&h, "v@t1") == a);
}

#[test]
fn clone_reads_like_the_snapshot_and_writes_stay_apart() {
    let h = server();
    let dir = TempDir::new();
    let (a, b) = two_generations(&h, &dir);
    let r = sheep_ok(&h, &["clone", "v@t1", "copy"]);
    let cv = vid(&h, "copy");
    assert_eq!(
        r.out().trim_end(),
        format!("cloned v@t1 to copy (vdi id {cv:x})")
    );
    let hdr = header(&h, cv);
    assert!(hdr.is_clone());
    assert_eq!(hdr.parent_vdi_id, h.cluster().lookup("v", "t1", 0).unwrap());
    assert!(export_bytes(&h, "copy") == a);

    let mut c = random(23, 6 * MIB);
    c[..OBJ].fill(0);
    import(&h, &dir, "copy", &c);
    assert!(export_bytes(&h, "copy") == c);
    assert!(export_bytes(&h, "v@t1") == a, "the snapshot is unchanged");
    assert!(export_bytes(&h, "v") == b, "the origin is unchanged");

    // By snapshot id too.
    sheep_ok(&h, &["clone", "v@1", "copy2"]);
    assert!(export_bytes(&h, "copy2") == a);
}

// ----- list, info -----------------------------------------------------------

const DOG_HEADER: &str = "  Name        Id    Size    Used  Shared    Creation time   VDI id  Copies  Tag   Block Size Shift";

#[test]
fn list_prints_dogs_table() {
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "alpha", "12M"]);
    import(&h, &dir, "alpha", &random(30, 2 * OBJ));
    sheep_ok(&h, &["snapshot", "create", "alpha", "--tag", "snap"]);
    sheep_ok(&h, &["create", "beta", "1G", "--copies", "2"]);
    let r = sheep_ok(&h, &["list"]);
    let out = r.out();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], DOG_HEADER, "{r:?}");
    assert_eq!(lines.len(), 4, "{r:?}");
    let snap = lines
        .iter()
        .find(|l| l.starts_with("s alpha"))
        .unwrap_or_else(|| panic!("no snapshot row: {r:?}"));
    assert!(snap.contains(" 12 MB ") && snap.contains("snap"), "{snap}");
    let beta = lines
        .iter()
        .find(|l| l.starts_with("  beta"))
        .unwrap_or_else(|| panic!("no beta row: {r:?}"));
    assert!(beta.contains("1.0 GB"), "{beta}");
    assert!(beta.contains(&format!("{:x}", vid(&h, "beta"))), "{beta}");
    assert!(lines.iter().any(|l| l.starts_with("  alpha")), "{r:?}");

    // Quiet: nothing at all.
    let r = sheep_ok(&h, &["-q", "list"]);
    assert!(r.stdout.is_empty(), "{r:?}");
}

#[test]
fn list_json_has_every_field() {
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "alpha", "12M", "--copies", "2"]);
    import(&h, &dir, "alpha", &random(31, OBJ + 5));
    sheep_ok(&h, &["snapshot", "create", "alpha", "--tag", "s1"]);
    let r = sheep_ok(&h, &["list", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).expect("valid JSON");
    let arr = j.as_array().expect("an array");
    assert_eq!(arr.len(), 2);
    for e in arr {
        for key in [
            "name",
            "snapshot_id",
            "tag",
            "size",
            "used",
            "shared",
            "creation_time",
            "vdi_id",
            "copies",
            "object_size",
        ] {
            assert!(e.get(key).is_some(), "missing {key} in {e}");
        }
        assert_eq!(e["name"], "alpha");
        assert_eq!(e["size"], 12u64 << 20);
        assert_eq!(e["copies"], "2");
        assert_eq!(e["object_size"], 4u64 << 20);
        assert!(e["creation_time"].as_u64().unwrap() > 1_600_000_000);
    }
    let snap = arr.iter().find(|e| e["snapshot"] == true).unwrap();
    let work = arr.iter().find(|e| e["snapshot"] == false).unwrap();
    let snap_vid = h.cluster().lookup("alpha", "s1", 0).unwrap();
    assert_eq!(snap["vdi_id"], format!("{snap_vid:x}"));
    assert_eq!(snap["tag"], "s1");
    assert_eq!(snap["snapshot_id"], 1);
    assert_eq!(snap["used"], 8u64 << 20, "two objects of its own");
    assert_eq!(work["vdi_id"], format!("{:x}", vid(&h, "alpha")));
    assert_eq!(work["used"], 0);
    assert_eq!(work["shared"], 8u64 << 20, "two objects shared");
}

#[test]
fn info_shows_one_vdi() {
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "v", "20M", "--object-size", "2M"]);
    import(&h, &dir, "v", &random(32, 3 * MIB));
    sheep_ok(&h, &["snapshot", "create", "v", "--tag", "t"]);
    let r = sheep_ok(&h, &["info", "v"]);
    let out = r.out();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert_eq!(lines[0], DOG_HEADER);
    assert!(
        lines[1].starts_with("c v ") || lines[1].starts_with("  v "),
        "{r:?}"
    );
    assert!(lines[1].contains("20 MB"), "{r:?}");

    let r = sheep_ok(&h, &["info", "v", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    // One object, as `qemu-img info --output=json` and `rbd info
    // --format json` print it.
    let e = j.as_object().expect("one object, not an array");
    assert_eq!(e["name"], "v");
    assert_eq!(e["size"], 20u64 << 20);
    assert_eq!(e["object_size"], 2u64 << 20);
    assert_eq!(e["block_size_shift"], 21);
    assert_eq!(e["vdi_id"], format!("{:x}", vid(&h, "v")));
    assert_eq!(e["used"], 0);
    assert_eq!(e["shared"], 4u64 << 20);

    let r = sheep_ok(&h, &["info", "v@t", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let e = j.as_object().expect("one object");
    assert_eq!(e["snapshot"], true);
    assert_eq!(e["tag"], "t");
    assert_eq!(e["used"], 4u64 << 20);
}

// ----- delete, resize ---------------------------------------------------------

#[test]
fn delete_vdi() {
    let h = server();
    let dir = TempDir::new();
    import(&h, &dir, "gone", &random(40, 2 * OBJ));
    let v = vid(&h, "gone");
    let r = sheep_ok(&h, &["delete", "gone"]);
    assert_eq!(r.out().trim_end(), "deleted gone");
    assert!(!exists(&h, "gone"));
    assert!(h.cluster().is_deleted(v));
    assert!(!h.cluster().object_exists(data_oid(v, 0)), "objects freed");
    let r = sheep_ok(&h, &["list", "--json"]);
    assert_eq!(r.out().trim(), "[]");
}

#[test]
fn delete_snapshot_with_delete() {
    let h = server();
    let dir = TempDir::new();
    let (_, b) = two_generations(&h, &dir);
    let r = sheep_ok(&h, &["delete", "v@1"]);
    assert_eq!(r.out().trim_end(), "deleted v@1");
    assert!(h.cluster().lookup("v", "t1", 0).is_err());
    assert!(export_bytes(&h, "v") == b);
}

#[test]
fn resize_grows_and_keeps_data() {
    let h = server();
    let dir = TempDir::new();
    let data = random(41, 5 * MIB);
    import(&h, &dir, "v", &data);
    let v = vid(&h, "v");
    let r = sheep_ok(&h, &["resize", "v", "40M"]);
    assert_eq!(r.out().trim_end(), "resized v to 41943040 bytes");
    assert_eq!(vdi_size(&h, v), 40 << 20);
    assert_eq!(vid(&h, "v"), v);
    let tail = random(42, MIB);
    let f = dir.file("tail.img", &tail);
    sheep_ok(&h, &["import", &f, "v"]);
    let out = export_bytes(&h, "v");
    assert_eq!(out.len(), 40 * MIB);
    assert!(out[..MIB] == tail[..]);
    assert!(out[MIB..5 * MIB] == data[MIB..]);
    assert!(all_zero(&out[5 * MIB..]));
}
