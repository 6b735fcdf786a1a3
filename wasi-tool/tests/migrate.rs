//! `migrate` and `restore`: whole VDIs with their history (tagged and
//! untagged snapshots, a clone, attributes with binary values, a VM state,
//! a sparse volume, a hyper volume) into a real Ceph through `rbd`, and
//! into a backup set that `restore` brings back and `rbd import-diff`
//! takes; incremental reruns that ship only the delta, `kill -9` and a
//! rerun, shards in parallel, `--verify` catching an object changed on the
//! target, and a foreign image refused.
//!
//! The rbd tests need a Ceph: `CEPH_CONF` names one (`scripts/ceph-dev`
//! starts one; `scripts/check` does, and sets `SHEEP_REQUIRE_CEPH=1` so
//! that they cannot pass there without it). Without one they say so and
//! check the backup set only.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;
use sheepdog_tests::server::ServerHandle;

const POOL: &str = "rbd";

/// Whether the tool runs as the WASI component (which cannot run `rbd`).
fn under_wasmtime() -> bool {
    std::env::var_os("SHEEP_TOOL_UNDER_WASMTIME").is_some()
}

/// Whether a Ceph answers (`CEPH_CONF`); with `SHEEP_REQUIRE_CEPH` set it
/// must.
fn ceph() -> bool {
    let up = std::env::var_os("CEPH_CONF").is_some()
        && Command::new("rbd")
            .args(["ls", POOL])
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
    if !up && std::env::var_os("SHEEP_REQUIRE_CEPH").is_some() {
        panic!("SHEEP_REQUIRE_CEPH is set but no Ceph answers `rbd ls {POOL}` (CEPH_CONF)");
    }
    if !up {
        eprintln!("no Ceph (CEPH_CONF): the rbd checks of this test are left out");
    }
    up
}

/// Run `rbd ARGS`, require success, its stdout.
fn rbd(args: &[&str]) -> Vec<u8> {
    let o = Command::new("rbd")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run rbd");
    assert!(
        o.status.success(),
        "rbd {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

fn rbd_json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--format", "json"]);
    let out = rbd(&a);
    if out.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(&out).expect("rbd JSON")
}

/// The snapshot names of an image, oldest first.
fn rbd_snaps(image: &str) -> Vec<String> {
    let v = rbd_json(&["snap", "ls", &format!("{POOL}/{image}")]);
    let mut s: Vec<(u64, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().unwrap(),
                s["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    s.sort();
    s.into_iter().map(|(_, n)| n).collect()
}

/// The bytes of `image@snap` (or the image).
fn rbd_export(at: &str) -> Vec<u8> {
    rbd(&["export", "--no-progress", &format!("{POOL}/{at}"), "-"])
}

fn rbd_meta(image: &str) -> Value {
    rbd_json(&["image-meta", "list", &format!("{POOL}/{image}")])
}

/// A name of its own for this test run (tests share the pool).
fn unique(p: &str) -> String {
    format!("{p}{}", std::process::id())
}

/// An rbd diff v1 that writes `data` at `offset` (no snapshot names).
fn diff_writing(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut d = b"rbd diff v1\n".to_vec();
    d.push(b'w');
    d.extend(offset.to_le_bytes());
    d.extend((data.len() as u64).to_le_bytes());
    d.extend(data);
    d.push(b'e');
    d
}

/// Write `data` into `vdi` at `offset`.
fn write_at(h: &ServerHandle, dir: &TempDir, vdi: &str, offset: u64, data: &[u8]) {
    let f = dir.file("write.diff", &diff_writing(offset, data));
    sheep_ok(h, &["import-diff", "--force", &f, vdi]);
}

/// The JSON summary a `--json` run printed.
fn summary(r: &Run) -> Value {
    serde_json::from_slice(&r.stdout).unwrap_or_else(|e| panic!("JSON summary: {e}: {r:?}"))
}

fn vdi_report<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["vdis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {j}"))
}

/// The source every test migrates: `P`vm with a tagged, an untagged and a
/// VM-state snapshot and changes after; `P`copy, a clone of
/// `P`vm@before with a change; attributes; a sparse 1 GiB `P`sparse; a
/// small hyper volume `P`hyper.
struct Source {
    vm: String,
    copy: String,
    sparse: String,
    hyper: String,
    state: Vec<u8>,
}

fn populate(h: &ServerHandle, dir: &TempDir, p: &str) -> Source {
    let s = Source {
        vm: format!("{p}vm"),
        copy: format!("{p}copy"),
        sparse: format!("{p}sparse"),
        hyper: format!("{p}hyper"),
        state: random(9, 5 * MIB + 3),
    };
    import(h, dir, &s.vm, &random(1, 6 * OBJ));
    sheep_ok(h, &["snapshot", "create", &s.vm, "--tag", "before"]);
    write_at(h, dir, &s.vm, 2 * OBJ as u64, &random(2, MIB));
    sheep_ok(h, &["snapshot", "create", &s.vm]);
    write_at(h, dir, &s.vm, 4 * OBJ as u64 + 4096, &random(3, 8192));
    let st = dir.file("state", &s.state);
    sheep_ok(
        h,
        &[
            "snapshot",
            "create",
            &s.vm,
            "--tag",
            "saved",
            "--vmstate",
            &st,
            "--vm-clock",
            "77",
        ],
    );
    write_at(h, dir, &s.vm, 5 * OBJ as u64, &random(4, 4096));
    sheep_ok(h, &["clone", &format!("{}@before", s.vm), &s.copy]);
    write_at(h, dir, &s.copy, OBJ as u64, &random(5, 4096));
    sheep_ok(h, &["attr", "set", &s.vm, "owner", "alice"]);
    let blob = dir.file("blob", &[0xff, 0, 1]);
    sheep_ok(h, &["attr", "set", &s.vm, "blob", "--file", &blob]);
    sheep_ok(
        h,
        &[
            "attr",
            "set",
            &format!("{}@before", s.vm),
            "note",
            "first one",
        ],
    );
    sheep_ok(h, &["create", &s.sparse, "1G"]);
    write_at(h, dir, &s.sparse, 512 << 20, &random(6, MIB));
    sheep_ok(h, &["create", "--hyper", &s.hyper, "64M"]);
    write_at(h, dir, &s.hyper, 3 * OBJ as u64, &random(7, OBJ));
    s
}

/// The one snapshot name starting `migrate-` in `names`.
fn migrate_snap(names: &[String]) -> String {
    let m: Vec<&String> = names.iter().filter(|n| n.starts_with("migrate-")).collect();
    assert_eq!(m.len(), 1, "one migrate snapshot in {names:?}");
    m[0].clone()
}

#[test]
fn history_clones_attributes_and_vm_states_go_into_ceph_and_reruns_ship_the_delta() {
    if under_wasmtime() {
        let h = server();
        let r = sheep(&h, &["migrate", "--to", "rbd:rbd"]);
        assert_error(&r, &["rbd", "WebAssembly"]);
        return;
    }
    if !ceph() {
        return;
    }
    let h = server();
    let dir = TempDir::new();
    let p = unique("hist");
    let s = populate(&h, &dir, &p);
    // The plan first: nothing shipped, nothing made.
    let r = sheep_ok(&h, &["migrate", "--to", "rbd:rbd", "--dry-run"]);
    assert!(r.out().contains(&format!("{}: create rbd:rbd/{}, ship before (whole), ship snap-2 from before, ship saved from snap-2", s.vm, s.vm)), "{r:?}");
    assert!(
        r.out().contains(&format!(
            "{}: clone rbd:rbd/{} from {}@before",
            s.copy, s.copy, s.vm
        )),
        "{r:?}"
    );
    assert!(Command::new("rbd")
        .args(["info", &format!("{POOL}/{}", s.vm)])
        .output()
        .is_ok_and(|o| !o.status.success()));

    let r = sheep_ok(
        &h,
        &[
            "migrate", "--to", "rbd:rbd", "--verify", "--jobs", "2", "--json",
        ],
    );
    let j = summary(&r);
    assert_eq!(j["failed"], 0, "{r:?}");
    let snaps = rbd_snaps(&s.vm);
    assert_eq!(snaps[..3], ["before", "snap-2", "saved"], "{snaps:?}");
    let live = migrate_snap(&snaps);
    for (src, dst) in [("before", "before"), ("2", "snap-2"), ("saved", "saved")] {
        assert_eq!(
            rbd_export(&format!("{}@{dst}", s.vm)),
            export_bytes(&h, &format!("{}@{src}", s.vm)),
            "{dst}"
        );
    }
    // The working state went through a snapshot of the source.
    assert_eq!(
        rbd_export(&format!("{}@{live}", s.vm)),
        export_bytes(&h, &s.vm)
    );
    let listed = sheep_ok(&h, &["snapshot", "list", &s.vm]).out();
    assert!(listed.contains(&live), "{listed}");
    // The clone is an rbd clone of its parent's snapshot, with its change.
    let info = rbd_json(&["info", &format!("{POOL}/{}", s.copy)]);
    assert_eq!(info["parent"]["image"], s.vm.as_str(), "{info}");
    assert_eq!(info["parent"]["snapshot"], "before", "{info}");
    let copy_live = migrate_snap(&rbd_snaps(&s.copy));
    assert_eq!(
        rbd_export(&format!("{}@{copy_live}", s.copy)),
        export_bytes(&h, &s.copy)
    );
    // Attributes as image-meta; a binary value in base64; the clone has
    // none of its parent's.
    let meta = rbd_meta(&s.vm);
    assert_eq!(meta["owner"], "alice", "{meta}");
    assert_eq!(meta["blob"], "base64:/wAB", "{meta}");
    assert_eq!(meta["sheepdog.snapshot.before.note"], "first one", "{meta}");
    assert_eq!(meta["sheepdog.vdi"], s.vm.as_str(), "{meta}");
    let copy_meta = rbd_meta(&s.copy);
    assert!(copy_meta.get("owner").is_none(), "{copy_meta}");
    // The VM state: an image of its own, named in the meta.
    let state_image = format!("{}.vmstate.saved", s.vm);
    assert_eq!(
        meta["sheepdog.vmstate.saved"],
        format!("{state_image} {} 77", s.state.len()),
        "{meta}"
    );
    assert_eq!(rbd_export(&state_image)[..s.state.len()], s.state[..]);
    // Sparse: Ceph holds the data, not the size.
    let du = rbd_json(&["du", &format!("{POOL}/{}", s.sparse)]);
    let used: u64 = du["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["used_size"].as_u64().unwrap())
        .sum();
    assert!(used <= 2 * OBJ as u64, "{du}");
    let sparse_live = migrate_snap(&rbd_snaps(&s.sparse));
    let got = rbd_export(&format!("{}@{sparse_live}", s.sparse));
    assert_eq!(got.len(), 1 << 30);
    assert_eq!(got[512 << 20..(512 << 20) + MIB], random(6, MIB)[..]);
    drop(got);
    // A hyper volume: its working VDI, whole.
    let hyper_live = migrate_snap(&rbd_snaps(&s.hyper));
    assert_eq!(
        rbd_export(&format!("{}@{hyper_live}", s.hyper)),
        export_bytes(&h, &s.hyper)
    );

    // A rerun after a small write ships that object only.
    write_at(&h, &dir, &s.vm, 4096, &random(8, 4096));
    let r = sheep_ok(&h, &["migrate", "--to", "rbd:rbd", "--verify", "--json"]);
    let j = summary(&r);
    assert_eq!(j["failed"], 0, "{r:?}");
    let vm = vdi_report(&j, &s.vm);
    assert_eq!(vm["shipped"].as_array().unwrap().len(), 1, "{vm}");
    let bytes = vm["bytes"].as_u64().unwrap();
    assert!(bytes > 4096 && bytes <= OBJ as u64 + 1024, "{vm}");
    for other in [&s.copy, &s.sparse] {
        let o = vdi_report(&j, other);
        assert!(o["bytes"].as_u64().unwrap() < 1024, "{o}");
    }
    // The last run's snapshot is gone from both sides; the new one holds
    // the write.
    let snaps = rbd_snaps(&s.vm);
    let newest = migrate_snap(&snaps);
    assert_ne!(newest, live);
    assert!(!sheep_ok(&h, &["snapshot", "list", &s.vm])
        .out()
        .contains(&live));
    assert_eq!(
        rbd_export(&format!("{}@{newest}", s.vm)),
        export_bytes(&h, &s.vm)
    );
    // The clone keeps its oldest snapshot: it names its origin.
    let copy_snaps = rbd_snaps(&s.copy);
    assert_eq!(copy_snaps.len(), 2, "{copy_snaps:?}");
    assert_eq!(copy_snaps[0], copy_live);
    // An attribute removed on the source goes from the target.
    sheep_ok(&h, &["attr", "delete", &s.vm, "owner"]);
    sheep_ok(&h, &["migrate", &s.vm, "--to", "rbd:rbd", "-q"]);
    assert!(rbd_meta(&s.vm).get("owner").is_none());
}

#[test]
fn a_flattened_clone_is_a_whole_image() {
    if under_wasmtime() || !ceph() {
        return;
    }
    let h = server();
    let dir = TempDir::new();
    let p = unique("flat");
    let s = populate(&h, &dir, &p);
    sheep_ok(
        &h,
        &[
            "migrate",
            &s.vm,
            &s.copy,
            "--to",
            "rbd:rbd",
            "--flatten",
            "-q",
        ],
    );
    let info = rbd_json(&["info", &format!("{POOL}/{}", s.copy)]);
    assert!(info.get("parent").is_none(), "{info}");
    let live = migrate_snap(&rbd_snaps(&s.copy));
    assert_eq!(
        rbd_export(&format!("{}@{live}", s.copy)),
        export_bytes(&h, &s.copy)
    );
}

/// Start `migrate ARGS`, wait until its stderr has said `after` lines
/// that contain `marker` (0: not at all), then `kill -9` it.
fn kill_midway(h: &ServerHandle, args: &[&str], marker: &str, after: usize, delay: Duration) {
    let mut c = tool(h);
    c.args(args).stderr(Stdio::piped()).stdout(Stdio::null());
    let mut child = c.spawn().expect("spawn");
    if after > 0 {
        let err = child.stderr.take().unwrap();
        let mut seen = 0;
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if line.contains(marker) {
                seen += 1;
                if seen == after {
                    break;
                }
            }
        }
    }
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_run_killed_anywhere_is_finished_by_the_next_without_redoing_what_is_done() {
    if under_wasmtime() || !ceph() {
        return;
    }
    let h = server();
    let dir = TempDir::new();
    let name = unique("kill");
    import(&h, &dir, &name, &random(11, 16 * OBJ));
    sheep_ok(&h, &["snapshot", "create", &name, "--tag", "one"]);
    write_at(&h, &dir, &name, 0, &random(12, 8 * OBJ));
    sheep_ok(&h, &["snapshot", "create", &name, "--tag", "two"]);
    write_at(&h, &dir, &name, 8 * OBJ as u64, &random(13, 8 * OBJ));
    let args = ["migrate", name.as_str(), "--to", "rbd:rbd"];
    // Killed right after the first snapshot reached Ceph...
    kill_midway(&h, &args, "shipped", 1, Duration::ZERO);
    let snaps = rbd_snaps(&name);
    assert!(snaps.starts_with(&["one".to_owned()]), "{snaps:?}");
    // ... and at a few moments in between.
    for ms in [30, 150, 400] {
        kill_midway(&h, &args, "", 0, Duration::from_millis(ms));
    }
    let r = sheep_ok(
        &h,
        &["migrate", &name, "--to", "rbd:rbd", "--verify", "--json"],
    );
    let j = summary(&r);
    let shipped = vdi_report(&j, &name)["shipped"].clone();
    assert!(!shipped.as_array().unwrap().contains(&"one".into()), "{j}");
    let snaps = rbd_snaps(&name);
    assert_eq!(snaps[..2], ["one", "two"], "{snaps:?}");
    let live = migrate_snap(&snaps);
    for (src, dst) in [("one", "one"), ("two", "two")] {
        assert_eq!(
            rbd_export(&format!("{name}@{dst}")),
            export_bytes(&h, &format!("{name}@{src}"))
        );
    }
    assert_eq!(
        rbd_export(&format!("{name}@{live}")),
        export_bytes(&h, &name)
    );
    // Every snapshot the killed runs took on the source is gone but the
    // newest.
    let listed = sheep_ok(&h, &["snapshot", "list", &name]).out();
    assert_eq!(listed.matches("migrate-").count(), 1, "{listed}");
}

#[test]
fn shards_in_parallel_migrate_every_vdi_once_with_clones_beside_their_parents() {
    if under_wasmtime() || !ceph() {
        return;
    }
    let h = server();
    let dir = TempDir::new();
    let p = unique("shard");
    let names: Vec<String> = (0..6).map(|i| format!("{p}-{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        import(&h, &dir, n, &random(20 + i as u64, OBJ));
    }
    sheep_ok(&h, &["snapshot", "create", &names[0], "--tag", "base"]);
    let clone = format!("{p}-clone");
    sheep_ok(&h, &["clone", &format!("{}@base", names[0]), &clone]);
    let spawn = |shard: &str| {
        let mut c = tool(&h);
        c.args(["migrate", "--to", "rbd:rbd", "--json", "--shard", shard]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().expect("spawn")
    };
    let (a, b) = (spawn("0/2"), spawn("1/2"));
    let mut seen: Vec<String> = Vec::new();
    let mut shard_of = std::collections::HashMap::new();
    for (i, c) in [a, b].into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let j: Value = serde_json::from_slice(&o.stdout).unwrap();
        for v in j["vdis"].as_array().unwrap() {
            assert_eq!(v["ok"], true, "{v}");
            let n = v["name"].as_str().unwrap().to_owned();
            shard_of.insert(n.clone(), i);
            seen.push(n);
        }
    }
    seen.sort();
    let mut all = names.clone();
    all.push(clone.clone());
    all.sort();
    assert_eq!(seen, all, "each VDI exactly once");
    assert_eq!(shard_of[&clone], shard_of[&names[0]]);
    let info = rbd_json(&["info", &format!("{POOL}/{clone}")]);
    assert_eq!(info["parent"]["image"], names[0].as_str(), "{info}");
}

#[test]
fn verify_names_the_object_changed_on_the_target() {
    if under_wasmtime() || !ceph() {
        return;
    }
    let h = server();
    let dir = TempDir::new();
    let name = unique("rot");
    import(&h, &dir, &name, &random(30, 4 * OBJ));
    sheep_ok(&h, &["migrate", &name, "--to", "rbd:rbd", "-q"]);
    // Object 1 of the image changes behind rbd's back (rados, as a disk
    // might): the next snapshot shares it.
    let info = rbd_json(&["info", &format!("{POOL}/{name}")]);
    let prefix = info["block_name_prefix"].as_str().unwrap();
    let junk = dir.file("junk", &random(31, 4096));
    let o = Command::new("rados")
        .args([
            "-p",
            POOL,
            "put",
            &format!("{prefix}.0000000000000001"),
            &junk,
        ])
        .output()
        .expect("run rados");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    write_at(&h, &dir, &name, 3 * OBJ as u64, &random(32, 4096));
    let r = sheep(&h, &["migrate", &name, "--to", "rbd:rbd", "--verify"]);
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr.lines().any(|l| l.starts_with(&format!(
            "error: {name}: verify failed: object 1 of snapshot migrate-"
        ))),
        "{r:?}"
    );
}

#[test]
fn an_image_that_is_not_the_vdis_migration_is_refused_and_left_alone() {
    if under_wasmtime() || !ceph() {
        return;
    }
    let h = server();
    let dir = TempDir::new();
    let name = unique("foreign");
    rbd(&["create", "--size", "16M", &format!("{POOL}/{name}")]);
    import(&h, &dir, &name, &random(40, OBJ));
    let other = unique("fine");
    import(&h, &dir, &other, &random(41, OBJ));
    let r = sheep(&h, &["migrate", "--to", "rbd:rbd"]);
    assert_ne!(r.code, Some(0), "{r:?}");
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert!(
        lines[0].contains(&name) && lines[0].contains("never overwritten"),
        "{r:?}"
    );
    assert!(lines[1].contains("1 of 2 VDIs"), "{r:?}");
    assert!(rbd_snaps(&name).is_empty());
    assert_eq!(rbd_meta(&name), Value::Null);
    // Nor did the source get a snapshot for it.
    let listed = sheep_ok(&h, &["snapshot", "list", &name]).out();
    assert!(!listed.contains("migrate-"), "{listed}");
    // The other VDI went on.
    assert_eq!(rbd_snaps(&other).len(), 1);
}

/// Snapshot names listed in a manifest.
fn manifest_snaps(m: &Value) -> Vec<String> {
    m["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

fn manifest(dir: &TempDir, set: &str, vdi: &str) -> Value {
    let p = dir.path(set).join(vdi).join("manifest.json");
    serde_json::from_slice(&std::fs::read(&p).expect("manifest")).expect("manifest JSON")
}

#[test]
fn a_backup_set_holds_the_history_and_restore_brings_it_back() {
    let h = server();
    let dir = TempDir::new();
    let s = populate(&h, &dir, "");
    let set = s_path(&dir, "set");
    let r = sheep_ok(&h, &["migrate", "--to", &set, "--verify", "--json"]);
    assert_eq!(summary(&r)["failed"], 0, "{r:?}");
    let m = manifest(&dir, "set", &s.vm);
    assert_eq!(m["format"], "sheep-tool backup set 1");
    assert_eq!(m["object_size"], OBJ as u64);
    assert_eq!(m["size"], 6 * OBJ as u64);
    let names = manifest_snaps(&m);
    assert_eq!(names[..3], ["before", "snap-2", "saved"]);
    let snaps = m["snapshots"].as_array().unwrap();
    assert_eq!(snaps[0]["tag"], "before");
    assert_eq!(snaps[1]["tag"], "");
    assert_eq!(snaps[1]["id"], 2);
    assert_eq!(snaps[0]["diff"], "0001-before.diff");
    assert_eq!(snaps[1]["from"], "before");
    for sn in snaps {
        assert_eq!(sn["crc32"].as_array().unwrap().len(), 6, "{sn}");
    }
    assert_eq!(snaps[2]["vm_state"]["file"], "saved.vmstate");
    assert_eq!(snaps[2]["vm_state"]["vm_clock_nsec"], 77);
    let attrs = m["attributes"].as_array().unwrap();
    assert!(attrs
        .iter()
        .any(|a| a["key"] == "blob" && a["value"] == "base64:/wAB"));
    assert!(attrs
        .iter()
        .any(|a| a["key"] == "note" && a["snapshot"] == "before"));
    let cm = manifest(&dir, "set", &s.copy);
    assert_eq!(cm["clone_of"]["vdi"], s.vm.as_str());
    assert_eq!(cm["clone_of"]["snapshot"], "before");
    // Nothing half-written is left.
    for e in std::fs::read_dir(dir.path("set").join(&s.vm)).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.ends_with(".tmp"), "{n}");
    }

    // Restore the VDI under another name: snapshots by name, attributes,
    // the VM state, the working state.
    sheep_ok(&h, &["restore", &set, &s.vm, "--as", "back"]);
    for (src, dst) in [("before", "before"), ("2", "snap-2"), ("saved", "saved")] {
        assert_eq!(
            export_bytes(&h, &format!("back@{dst}")),
            export_bytes(&h, &format!("{}@{src}", s.vm)),
            "{dst}"
        );
    }
    assert_eq!(export_bytes(&h, "back"), export_bytes(&h, &s.vm));
    let listed = sheep_ok(&h, &["snapshot", "list", "back"]).out();
    assert!(!listed.contains("migrate-"), "{listed}");
    assert_eq!(
        sheep_ok(&h, &["attr", "get", "back", "blob"]).stdout,
        [0xff, 0, 1]
    );
    assert_eq!(
        sheep_ok(&h, &["attr", "get", "back@before", "note"]).stdout,
        b"first one"
    );
    assert_eq!(
        sheep_ok(&h, &["vmstate", "export", "back@saved", "-"]).stdout,
        s.state
    );
    // The clone comes back a clone of its parent's snapshot.
    sheep_ok(&h, &["restore", &set, &s.copy, "--as", "back-copy"]);
    assert_eq!(export_bytes(&h, "back-copy"), export_bytes(&h, &s.copy));
    let j: Value =
        serde_json::from_slice(&sheep_ok(&h, &["info", "back-copy", "--json"]).stdout).unwrap();
    assert_eq!(
        j["parent_vdi_id"],
        format!("{:x}", vid_of_snapshot(&h, &s.vm, "before")),
        "{j}"
    );

    // Incremental both ways: a small write, a rerun, a second restore.
    write_at(&h, &dir, &s.vm, 4096, &random(50, 4096));
    let r = sheep_ok(&h, &["migrate", &s.vm, "--to", &set, "--json"]);
    let bytes = vdi_report(&summary(&r), &s.vm)["bytes"].as_u64().unwrap();
    assert!(bytes <= OBJ as u64 + 1024, "{r:?}");
    let r = sheep_ok(&h, &["restore", &set, &s.vm, "--as", "back", "--json"]);
    assert_eq!(
        vdi_report(&summary(&r), "back")["shipped"],
        Value::Array(vec![])
    );
    assert_eq!(export_bytes(&h, "back"), export_bytes(&h, &s.vm));
    // A VDI that is not the set's restore is refused.
    import(&h, &dir, "mine", &random(51, OBJ));
    let r = sheep(&h, &["restore", &set, &s.vm, "--as", "mine"]);
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr
            .contains("mine: the VDI exists and is not a restore of"),
        "{r:?}"
    );
    assert_eq!(export_bytes(&h, "mine"), random(51, OBJ));

    // Each diff is what `rbd import-diff` takes.
    if !under_wasmtime() && ceph() {
        let image = unique("fromset");
        rbd(&["create", "--size", "24M", &format!("{POOL}/{image}")]);
        let m = manifest(&dir, "set", &s.vm);
        for sn in m["snapshots"].as_array().unwrap() {
            let f = dir
                .path("set")
                .join(&s.vm)
                .join(sn["diff"].as_str().unwrap());
            rbd(&[
                "import-diff",
                "--no-progress",
                &s_path_of(&f),
                &format!("{POOL}/{image}"),
            ]);
        }
        assert_eq!(
            rbd_export(&format!("{image}@saved")),
            export_bytes(&h, &format!("{}@saved", s.vm))
        );
        let last = manifest_snaps(&m).pop().unwrap();
        assert_eq!(
            rbd_export(&format!("{image}@{last}")),
            export_bytes(&h, &s.vm)
        );
    }
}

#[test]
fn a_backup_run_killed_midway_leaves_nothing_that_looks_complete() {
    if under_wasmtime() {
        return;
    }
    let h = server();
    let dir = TempDir::new();
    import(&h, &dir, "vm", &random(60, 16 * OBJ));
    sheep_ok(&h, &["snapshot", "create", "vm", "--tag", "one"]);
    write_at(&h, &dir, "vm", 0, &random(61, 8 * OBJ));
    let set = s_path(&dir, "set");
    kill_midway(&h, &["migrate", "--to", &set], "shipped", 1, Duration::ZERO);
    for ms in [20, 80, 200] {
        kill_midway(
            &h,
            &["migrate", "--to", &set],
            "",
            0,
            Duration::from_millis(ms),
        );
    }
    // What the manifest lists is whole: each diff applies.
    if let Ok(text) = std::fs::read(dir.path("set").join("vm").join("manifest.json")) {
        let m: Value = serde_json::from_slice(&text).expect("a manifest is whole JSON");
        for sn in m["snapshots"].as_array().unwrap() {
            let f = dir
                .path("set")
                .join("vm")
                .join(sn["diff"].as_str().unwrap());
            assert!(f.is_file(), "{f:?}");
        }
    }
    let r = sheep_ok(&h, &["migrate", "--to", &set, "--verify", "--json"]);
    assert_eq!(summary(&r)["failed"], 0, "{r:?}");
    sheep_ok(&h, &["restore", &set, "vm", "--as", "again"]);
    assert_eq!(export_bytes(&h, "again@one"), export_bytes(&h, "vm@one"));
    assert_eq!(export_bytes(&h, "again"), export_bytes(&h, "vm"));
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let h = server();
    let dir = TempDir::new();
    import(&h, &dir, "vm", &random(70, OBJ));
    let set = s_path(&dir, "set");
    assert_error(
        &sheep(&h, &["migrate", "--to", &set, "--jobs", "0"]),
        &["--jobs 0"],
    );
    let r = sheep(&h, &["migrate", "--to", &set, "--shard", "2/2"]);
    assert!(
        r.code.is_some_and(|c| c != 0) && r.stderr.contains("bad shard '2/2'"),
        "{r:?}"
    );
    let r = sheep(&h, &["migrate", "nosuch", "--to", &set]);
    assert!(
        r.code.is_some_and(|c| c != 0) && r.stderr.contains("nosuch: no such VDI"),
        "{r:?}"
    );
    let r = sheep(&h, &["restore", &s_path(&dir, "nothing-here")]);
    assert_error(&r, &["nothing-here"]);
    let r = sheep(&h, &["restore", &set, "a", "b", "--as", "c"]);
    assert_error(&r, &["--as takes exactly one VDI"]);
}

fn s_path(dir: &TempDir, name: &str) -> String {
    s(&dir.path(name))
}

fn s_path_of(p: &std::path::Path) -> String {
    s(p)
}

/// The VID of snapshot `tag` of `vdi`.
fn vid_of_snapshot(h: &ServerHandle, vdi: &str, tag: &str) -> u32 {
    h.cluster()
        .lookup(vdi, tag, 0)
        .unwrap_or_else(|e| panic!("lookup {vdi}@{tag}: {e:?}"))
}

#[test]
fn a_target_ahead_of_the_source_is_brought_back_to_it() {
    if under_wasmtime() || !ceph() {
        return;
    }
    let h = server();
    let dir = TempDir::new();
    let name = unique("ahead");
    import(&h, &dir, &name, &padded(&random(80, OBJ), 2 * OBJ));
    sheep_ok(&h, &["snapshot", "create", &name, "--tag", "a"]);
    write_at(&h, &dir, &name, OBJ as u64, &random(81, OBJ));
    sheep_ok(&h, &["migrate", &name, "--to", "rbd:rbd", "-q"]);
    let first = migrate_snap(&rbd_snaps(&name));
    // The source goes back to a and drops the snapshot the target has
    // (another target's run would): object 1 is no more.
    sheep_ok(&h, &["snapshot", "rollback", &format!("{name}@a")]);
    sheep_ok(&h, &["snapshot", "delete", &format!("{name}@{first}")]);
    let r = sheep_ok(
        &h,
        &["migrate", &name, "--to", "rbd:rbd", "--verify", "--dry-run"],
    );
    assert!(
        r.out()
            .contains(&format!("from a, forget {first} on the target")),
        "{r:?}"
    );
    sheep_ok(&h, &["migrate", &name, "--to", "rbd:rbd", "--verify", "-q"]);
    let snaps = rbd_snaps(&name);
    assert_eq!(snaps[0], "a");
    let now = migrate_snap(&snaps);
    assert_ne!(now, first);
    assert_eq!(
        rbd_export(&format!("{name}@{now}")),
        padded(&random(80, OBJ), 2 * OBJ)
    );
}

#[test]
fn verify_names_the_object_a_changed_backup_file_holds() {
    let h = server();
    let dir = TempDir::new();
    import(&h, &dir, "vm", &random(90, 4 * OBJ));
    let set = s_path(&dir, "set");
    sheep_ok(&h, &["migrate", "--to", &set, "--verify", "-q"]);
    // A byte of the first diff's data changes on the backup's disk.
    let m = manifest(&dir, "set", "vm");
    let first = dir
        .path("set")
        .join("vm")
        .join(m["snapshots"][0]["diff"].as_str().unwrap());
    let mut bytes = std::fs::read(&first).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(&first, &bytes).unwrap();
    write_at(&h, &dir, "vm", 3 * OBJ as u64, &random(91, 4096));
    let r = sheep(&h, &["migrate", "--to", &set, "--verify"]);
    assert_ne!(r.code, Some(0), "{r:?}");
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("error: vm: verify failed: object ")
                && l.contains("of snapshot migrate-")),
        "{r:?}"
    );
}
