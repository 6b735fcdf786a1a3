//! `check`, `orphans`, `lock`, `tree`, `node list` and `cluster info`
//! against the reference server's per-node copies: check finds exactly
//! the copies a test removed or corrupted, repair restores them and a
//! second check is clean (replicas and erasure-coded strips); a broken
//! inode is reported; orphans are found and only they deleted; locks are
//! listed with the gateway that holds them and released. Natively and
//! under wasmtime (scripts/check).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use serde_json::Value;
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::wire::{LockType, Request, Response, ResultCode};
use sheepdog_tests::server::{spawn_nodes, Cluster, ClusterConfig, NetOptions, ServerHandle};

/// `n` nodes (zones 0..n) over one cluster with `copies` copies.
fn nodes_with(n: usize, config: ClusterConfig) -> ServerHandle {
    spawn_nodes(Cluster::new(config), n, NetOptions::reordering()).expect("start the nodes")
}

fn nodes(n: usize, copies: u8) -> ServerHandle {
    nodes_with(n, ClusterConfig::default().with_copies(copies))
}

/// The tool pointed at node 0 of `h`.
fn at(h: &ServerHandle, args: &[&str]) -> Run {
    let mut c = bare_tool();
    c.arg("-a").arg(h.addrs()[0].to_string()).args(args);
    run(c)
}

fn json(r: &Run) -> Value {
    serde_json::from_slice(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"))
}

/// `(oid, node, state)` of every bad copy a check reported.
fn bad_copies(v: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for f in v["findings"].as_array().unwrap() {
        for c in f["copies"].as_array().unwrap() {
            if c["state"] != "good" {
                out.push((
                    f["oid"].as_str().unwrap().to_string(),
                    c["node"].as_str().unwrap().to_string(),
                    c["state"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// A VDI `name` of `size` holding `data`, made through the tool.
fn volume(h: &ServerHandle, name: &str, copies: &str, data: &[u8]) {
    let dir = TempDir::new();
    let f = dir.file("in.raw", data);
    assert_ok(&at(
        h,
        &["create", name, &data.len().to_string(), "--copies", copies],
    ));
    assert_ok(&at(h, &["import", &f, name]));
}

fn export(h: &ServerHandle, name: &str) -> Vec<u8> {
    let r = at(h, &["export", name, "-"]);
    assert_ok(&r);
    r.stdout
}

#[test]
fn check_finds_the_copies_removed_and_corrupted_and_repair_restores_them() {
    let h = nodes(3, 3);
    let data = random(7, 3 * OBJ);
    volume(&h, "v", "3", &data);
    let vid = vid(&h, "v");
    let (a, b) = (data_oid(vid, 0), data_oid(vid, 2));
    let addrs = h.addrs();
    let (bad, gone) = {
        let mut c = h.cluster();
        let bad = c.holder(a, 1).unwrap();
        let gone = c.holder(b, 0).unwrap();
        assert!(c.corrupt_copy(bad, a, 0));
        assert!(c.remove_copy(gone, b, 0));
        (bad, gone)
    };
    let r = at(&h, &["check", "v", "--json"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let v = json(&r);
    assert_eq!(
        bad_copies(&v),
        vec![
            (a.to_string(), addrs[bad].to_string(), "differs".into()),
            (b.to_string(), addrs[gone].to_string(), "missing".into()),
        ]
    );
    assert_eq!(v["objects"], 4, "the inode and three data objects");
    assert_eq!(v["copies"], 12);
    // Read-only: nothing changed.
    assert!(h.cluster().copy_of(gone, b, 0).is_none());

    let r = at(&h, &["check", "v", "--repair"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.out().matches("; repaired").count(), 2, "{r:?}");
    let r = at(&h, &["check", "--all"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.out().contains("all good"), "{r:?}");
    {
        let mut c = h.cluster();
        let first = c.holder(a, 0).unwrap();
        let good = c.copy_of(first, a, 0).unwrap();
        assert_eq!(c.copy_of(bad, a, 0).unwrap(), good);
        assert_eq!(&c.copy_of(gone, b, 0).unwrap()[..], &data[2 * OBJ..]);
    }
    assert!(export(&h, "v") == data);
}

#[test]
fn a_tie_is_reported_and_left_alone() {
    let h = nodes(3, 3);
    volume(&h, "t", "3", &random(8, OBJ));
    let a = data_oid(vid(&h, "t"), 0);
    {
        let mut c = h.cluster();
        let (n0, n1) = (c.holder(a, 0).unwrap(), c.holder(a, 1).unwrap());
        c.corrupt_copy(n0, a, 0);
        c.remove_copy(n1, a, 0);
    }
    let r = at(&h, &["check", "t", "--repair", "--json"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let v = json(&r);
    let f = &v["findings"][0];
    assert_eq!(
        (f["repairable"].clone(), f["repaired"].clone()),
        (Value::Bool(false), Value::Bool(false))
    );
    assert!(h.cluster().holders(a).len() == 2, "nothing was written");
}

#[test]
fn erasure_coded_strips_are_rebuilt_and_a_corrupt_one_found() {
    let h = nodes(6, 3);
    let data = random(9, 3 * OBJ);
    volume(&h, "ec", "4:2", &data);
    let vid = vid(&h, "ec");
    let (a, b) = (data_oid(vid, 0), data_oid(vid, 1));
    let addrs = h.addrs();
    let (bad, gone1, gone5) = {
        let mut c = h.cluster();
        let bad = c.holder(a, 2).unwrap();
        assert!(c.corrupt_copy(bad, a, 2));
        let (g1, g5) = (c.holder(b, 1).unwrap(), c.holder(b, 5).unwrap());
        assert!(c.remove_copy(g1, b, 1));
        assert!(c.remove_copy(g5, b, 5));
        (bad, g1, g5)
    };
    let r = at(&h, &["check", "ec", "--json"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let mut want = vec![
        (a.to_string(), addrs[bad].to_string(), "differs".to_string()),
        (
            b.to_string(),
            addrs[gone1].to_string(),
            "missing".to_string(),
        ),
        (
            b.to_string(),
            addrs[gone5].to_string(),
            "missing".to_string(),
        ),
    ];
    want.sort();
    assert_eq!(bad_copies(&json(&r)), want);
    let r = at(&h, &["check", "ec", "--repair"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.out().contains("strip 2 on"), "{r:?}");
    let r = at(&h, &["check", "ec"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(export(&h, "ec") == data);
    // 2:1 cannot tell which strip is wrong: reported, not repaired.
    volume(&h, "ec21", "2:1", &random(10, OBJ));
    let o = data_oid(vid_of(&h, "ec21"), 0);
    {
        let mut c = h.cluster();
        let n = c.holder(o, 0).unwrap();
        c.corrupt_copy(n, o, 0);
    }
    let r = at(&h, &["check", "ec21", "--repair"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.out().contains("not repairable"), "{r:?}");
}

fn vid_of(h: &ServerHandle, name: &str) -> u32 {
    vid(h, name)
}

#[test]
fn a_broken_inode_is_reported_and_the_others_checked() {
    let h = nodes(3, 3);
    volume(&h, "ok", "3", &random(11, OBJ));
    volume(&h, "broken", "3", &random(12, OBJ));
    let inode = Oid::inode(Vid::new(vid(&h, "broken")).unwrap());
    // Every copy says its objects are 2^99 bytes (block_size_shift).
    let req = Request::write_obj(1, inode, 555, 1, 0);
    assert_eq!(call(h.addrs()[0], req, &[99]).result, ResultCode::Success);
    let r = at(&h, &["check", "--all"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let out = r.out();
    assert!(
        out.contains("broken (VID") && out.contains("is broken"),
        "{r:?}"
    );
    assert!(out.contains("1 broken inode"), "{r:?}");
    let r = at(&h, &["check", "ok"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    // A check of a VDI that does not exist is an error, exit 2 (WASI 0.2
    // carries only success or failure: 1 there).
    let r = at(&h, &["check", "nosuch"]);
    assert_error(&r, &["nosuch"]);
    let error = if std::env::var_os("SHEEP_TOOL_UNDER_WASMTIME").is_some() {
        1
    } else {
        2
    };
    assert_eq!(r.code, Some(error));
    // The orphan census will not guess what the broken inode reaches,
    // and deletes nothing while it cannot.
    let stray = Oid::data(Vid::new(0x00ab_cdef).unwrap(), 1);
    h.cluster().add_copy(2, stray, 0, &[1u8; 512]);
    let r = at(&h, &["orphans", "--json"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(json(&r)["unreadable"].as_array().unwrap().len(), 1);
    let r = at(&h, &["orphans", "--delete"]);
    assert_error(&r, &["could not be read"]);
    assert!(h.cluster().copy_of(2, stray, 0).is_some());
}

#[test]
fn orphans_are_found_and_only_they_deleted() {
    let h = nodes(3, 3);
    let data = random(13, 2 * OBJ);
    volume(&h, "keep", "3", &data);
    volume(&h, "gone", "3", &random(14, OBJ));
    let dir = TempDir::new();
    let state = dir.file("state.bin", &random(15, OBJ + 5));
    assert_ok(&at(&h, &["snapshot", "create", "keep", "--tag", "s1"]));
    assert_ok(&at(
        &h,
        &[
            "snapshot",
            "create",
            "keep",
            "--tag",
            "vm",
            "--vmstate",
            &state,
        ],
    ));
    let vm_vid = h.cluster().lookup("keep", "vm", 0).unwrap();
    assert_ok(&at(&h, &["attr", "set", "gone", "owner", "bob"]));
    // As dog vdi delete leaves them: the snapshot's VM state, the
    // attributes of a deleted VDI; and a stray copy on one node.
    h.cluster().delete_vdi_as_dog("keep", "vm").unwrap();
    h.cluster().delete_vdi_as_dog("gone", "").unwrap();
    let stray = Oid::data(Vid::new(0x00ab_cdef).unwrap(), 3);
    h.cluster().add_copy(1, stray, 0, &[7u8; 4096]);

    let r = at(&h, &["orphans", "--json"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let v = json(&r);
    let mut found: Vec<String> = v["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object"].as_str().unwrap().to_string() + " " + o["vid"].as_str().unwrap())
        .collect();
    found.sort();
    let vm = format!("{vm_vid:x}");
    let mut want = vec![
        format!("data 3 abcdef"),
        format!("vmstate 0 {vm}"),
        format!("vmstate 1 {vm}"),
    ];
    want.sort();
    let attrs = found.iter().filter(|f| f.starts_with("attribute")).count();
    assert_eq!(attrs, 1, "{found:?}");
    found.retain(|f| !f.starts_with("attribute"));
    assert_eq!(found, want);

    let r = at(&h, &["orphans", "--delete"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = at(&h, &["orphans"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(r.out().starts_with("0 orphan objects"), "{r:?}");
    // What is reached is whole.
    assert_ok(&at(&h, &["check", "--all"]));
    assert!(export(&h, "keep") == data);
    assert!(export(&h, "keep@s1") == data);
}

/// Send one request to `addr` and read its reply.
fn call(addr: SocketAddr, req: Request, payload: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = req.to_bytes().to_vec();
    out.extend_from_slice(payload);
    s.write_all(&out).unwrap();
    let mut hdr = [0u8; 48];
    s.read_exact(&mut hdr).unwrap();
    let rsp = Response::parse_bytes(&hdr).unwrap();
    let mut data = vec![0u8; rsp.data_length as usize];
    s.read_exact(&mut data).unwrap();
    rsp
}

fn name_tag(name: &str) -> [u8; 512] {
    let mut p = [0u8; 512];
    p[..name.len()].copy_from_slice(name.as_bytes());
    p
}

#[test]
fn locks_are_listed_with_their_gateway_and_released() {
    let h = nodes_with(
        3,
        ClusterConfig::default().with_copies(3).with_locking(true),
    );
    volume(&h, "db", "3", &random(16, OBJ));
    assert_ok(&at(&h, &["snapshot", "create", "db", "--tag", "s1"]));
    let addrs = h.addrs();
    // The VDI locked through node 1, its snapshot through node 2.
    let r = call(
        addrs[1],
        Request::lock_vdi(1, 0, LockType::Normal),
        &name_tag("db"),
    );
    assert_eq!(r.result, ResultCode::Success);
    let r = call(
        addrs[2],
        Request::lock_vdi(1, 1, LockType::Normal),
        &name_tag("db"),
    );
    assert_eq!(r.result, ResultCode::Success);

    let r = at(&h, &["lock", "list"]);
    assert_ok(&r);
    let lines: Vec<String> = r.out().lines().map(str::to_string).collect();
    assert_eq!(
        lines[0],
        "  Name         Id  VDI id  Tag            Owner node(s)"
    );
    assert_eq!(lines.len(), 3, "{r:?}");
    let snap = lines.iter().find(|l| l.starts_with('s')).unwrap();
    assert!(
        snap.contains("s1")
            && snap.ends_with(&format!("IPv4 ip:127.0.0.1 port:{}", addrs[2].port())),
        "{snap}"
    );
    let work = lines.iter().find(|l| l.starts_with("  db")).unwrap();
    assert!(
        work.ends_with(&format!("port:{}", addrs[1].port())),
        "{work}"
    );
    let v = json(&at(&h, &["lock", "list", "--json"]));
    assert_eq!(v.as_array().unwrap().len(), 2);

    assert_ok(&at(&h, &["lock", "unlock", "db@s1"]));
    let r = at(&h, &["lock", "unlock", "db@s1"]);
    assert_error(&r, &["db@s1", "not locked"]);
    assert_ok(&at(&h, &["lock", "unlock", "db"]));
    let r = at(&h, &["lock", "list"]);
    assert_eq!(r.out().lines().count(), 1, "{r:?}");
    // The lock can be taken again.
    let r = call(
        addrs[0],
        Request::lock_vdi(1, 0, LockType::Normal),
        &name_tag("db"),
    );
    assert_eq!(r.result, ResultCode::Success);
}

#[test]
fn tree_nodes_and_cluster_info() {
    let h = nodes(3, 3);
    volume(&h, "base", "3", &random(17, OBJ));
    assert_ok(&at(&h, &["snapshot", "create", "base", "--tag", "a"]));
    assert_ok(&at(&h, &["snapshot", "create", "base", "--tag", "b"]));
    assert_ok(&at(&h, &["clone", "base@a", "kid"]));
    let r = at(&h, &["tree"]);
    assert_ok(&r);
    let out = r.out();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let base = lines.iter().find(|l| l.starts_with("base---[")).unwrap();
    assert_eq!(base.matches("]---[").count(), 1, "{out}");
    assert!(base.ends_with("]---(you are here)"), "{out}");
    assert!(lines.contains(&"kid---(you are here)"), "{out}");
    let v = json(&at(&h, &["tree", "base", "--json"]));
    let a = &v[0];
    assert_eq!(
        (a["tag"].as_str(), a["snapshot"].as_bool()),
        (Some("a"), Some(true))
    );
    assert_eq!(a["children"][0]["tag"], "b");
    assert_eq!(a["children"][0]["children"][0]["snapshot"], false);
    assert_error(&at(&h, &["tree", "nosuch"]), &["nosuch"]);

    let r = at(&h, &["node", "list"]);
    assert_ok(&r);
    let out = r.out();
    assert_eq!(
        out.lines().next(),
        Some("  Id   Host:Port         V-Nodes       Zone")
    );
    assert_eq!(out.lines().count(), 4, "{out}");
    let v = json(&at(&h, &["node", "list", "--json"]));
    let zones: Vec<u64> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["zone"].as_u64().unwrap())
        .collect();
    let mut sorted = zones.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "distinct zones: {v}");

    let r = at(&h, &["cluster", "info"]);
    assert_ok(&r);
    let out = r.out();
    assert!(
        out.starts_with("Cluster status: running, auto-recovery enabled\n"),
        "{out}"
    );
    assert!(out.contains("with 3 redundancy policy"), "{out}");
    assert!(
        out.contains("Epoch Time           Version [Host:Port:V-Nodes,,,]"),
        "{out}"
    );
    let v = json(&at(&h, &["cluster", "info", "--json"]));
    assert_eq!(v["status"], "running");
    assert_eq!(v["epochs"][0]["nodes"].as_array().unwrap().len(), 3);
}

#[test]
fn a_reader_that_stops_reading_is_no_panic() {
    let h = nodes(3, 3);
    volume(&h, "p", "3", &random(18, OBJ));
    for args in [
        &["cluster", "info"][..],
        &["tree"],
        &["node", "list"],
        &["check", "--all"],
    ] {
        let mut c = bare_tool();
        c.arg("-a").arg(h.addrs()[0].to_string()).args(args);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("spawn sheep-tool");
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
    }
}

#[test]
fn hyper_volumes_and_vm_states_are_checked_too() {
    let h = nodes(3, 3);
    let dir = TempDir::new();
    // A hyper volume: its data objects are found through its B-tree.
    assert_ok(&at(&h, &["create", "--hyper", "hv", "1T"]));
    let img = dir.file("hv.raw", &random(19, 3 * OBJ));
    assert_ok(&at(&h, &["import", &img, "hv"]));
    let r = at(&h, &["check", "hv", "--json"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(json(&r)["objects"], 4, "the inode and three objects");
    let o = data_oid(vid(&h, "hv"), 2);
    let gone = {
        let mut c = h.cluster();
        let n = c.holder(o, 2).unwrap();
        c.remove_copy(n, o, 0);
        n
    };
    let r = at(&h, &["check", "hv", "--repair", "--json"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(
        bad_copies(&json(&r)),
        vec![(o.to_string(), h.addrs()[gone].to_string(), "missing".into())]
    );
    assert!(h.cluster().copy_of(gone, o, 0).is_some());

    // A savevm snapshot: its VM state objects are checked.
    volume(&h, "vm", "3", &random(20, OBJ));
    let state = dir.file("state.bin", &random(21, OBJ + 5));
    assert_ok(&at(
        &h,
        &[
            "snapshot",
            "create",
            "vm",
            "--tag",
            "saved",
            "--vmstate",
            &state,
        ],
    ));
    let snap = h.cluster().lookup("vm", "saved", 0).unwrap();
    let vm1 = Oid::vmstate(Vid::new(snap).unwrap(), 1);
    let bad = {
        let mut c = h.cluster();
        let n = c.holder(vm1, 0).unwrap();
        c.corrupt_copy(n, vm1, 0);
        n
    };
    let r = at(&h, &["check", "vm@saved", "--json"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    let v = json(&r);
    assert_eq!(v["objects"], 4, "inode, data and two VM state objects: {v}");
    assert_eq!(v["findings"][0]["object"], "vmstate 1");
    assert_eq!(
        bad_copies(&v),
        vec![(
            vm1.to_string(),
            h.addrs()[bad].to_string(),
            "differs".into()
        )]
    );
    assert_ok(&at(&h, &["check", "vm@saved", "--repair"]));
    assert_ok(&at(&h, &["check", "--all"]));
}

#[test]
fn a_node_that_stops_answering_is_one_clear_error_not_a_hang() {
    let h = nodes(3, 3);
    volume(&h, "q", "3", &random(22, OBJ));
    // Node 2 takes its requests and never answers; node 0 is the gateway.
    h.blackhole(2);
    let start = std::time::Instant::now();
    let mut c = bare_tool();
    c.arg("-a")
        .arg(h.addrs()[0].to_string())
        .args(["--timeout", "2", "check", "q"]);
    let r = run(c);
    assert_error(&r, &[&h.addrs()[2].to_string()]);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "{r:?}"
    );
    h.revive(2);
}
