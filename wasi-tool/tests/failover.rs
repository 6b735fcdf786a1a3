//! No single point of failure on the client side: the reference server as
//! a cluster of several nodes over one store, with the gateway in use
//! killed or black-holed in the middle of an import, an export and a
//! `serve` under qemu-io; every node down; and `export --salvage` around
//! an object the cluster lost.

mod common;

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::nbd::{client, ok, serve_with, under_wasmtime};
use common::*;
use sheepdog_tests::server::{spawn_nodes, Cluster, ClusterConfig, NetOptions, ServerHandle};

/// A cluster of `n` nodes, answering pipelined requests out of order.
fn nodes(n: usize) -> ServerHandle {
    spawn_nodes(
        Cluster::new(ClusterConfig::default()),
        n,
        NetOptions::reordering(),
    )
    .expect("start the nodes")
}

/// The tool given the nodes `which` of `h` (and nothing else).
fn at(h: &ServerHandle, which: &[usize]) -> Command {
    let addrs = h.addrs();
    let list: Vec<String> = which.iter().map(|&i| addrs[i].to_string()).collect();
    let mut c = bare_tool();
    c.arg("-a").arg(list.join(","));
    c
}

/// Wait until node `node` has served `n` more requests than `from`.
fn when_served(h: &ServerHandle, node: usize, from: u64, n: u64) {
    let start = Instant::now();
    while h.requests_served(node) < from + n {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "node {node} served {} requests",
            h.requests_served(node) - from
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Start `c` with stdout and stderr captured.
fn start(mut c: Command) -> Child {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.spawn().expect("spawn sheep-tool")
}

/// Wait for `child`; its exit status and stderr.
fn finish(child: Child) -> (Option<i32>, String) {
    let o = child.wait_with_output().expect("wait sheep-tool");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `vdi` exported through node `node`.
fn export_at(h: &ServerHandle, node: usize, vdi: &str) -> Vec<u8> {
    let mut c = at(h, &[node]);
    c.args(["export", vdi, "-"]);
    let r = run(c);
    assert_ok(&r);
    r.stdout
}

#[test]
fn import_fails_over_to_a_node_it_learned_when_its_gateway_is_killed() {
    let h = nodes(3);
    let dir = TempDir::new();
    let data = random(1, 64 * MIB);
    let f = dir.file("disk.raw", &data);
    // Only node 0 is given: the others come from GET_NODE_LIST.
    let mut c = at(&h, &[0]);
    c.args(["import", &f, "vol", "--queue-depth", "4"]);
    let before = h.requests_served(0);
    let child = start(c);
    when_served(&h, 0, before, 8);
    h.kill(0);
    let (code, log) = finish(child);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("failing over to 127.0.0.1:"), "{log}");
    assert!(
        export_at(&h, 1, "vol") == data,
        "the VDI differs from the image"
    );
}

/// Two nodes and `vol` holding `data` (imported through node 1); an
/// export of it started through nodes 0 and 1 (with `opts` first), once
/// node 0 has served `n` of its requests.
fn exporting(
    data: &[u8],
    opts: &[&str],
    n: u64,
) -> (ServerHandle, TempDir, std::path::PathBuf, Child) {
    let h = nodes(2);
    let dir = TempDir::new();
    let f = dir.file("disk.raw", data);
    let mut c = at(&h, &[1]);
    c.args(["import", &f, "vol"]);
    assert_ok(&run(c));
    let out = dir.path("out.raw");
    let mut c = at(&h, &[0, 1]);
    c.args(opts).args(["export", "vol", &s(&out)]);
    let before = h.requests_served(0);
    let child = start(c);
    when_served(&h, 0, before, n);
    (h, dir, out, child)
}

#[test]
fn export_fails_over_between_the_nodes_given_when_its_gateway_is_killed() {
    let data = random(2, 64 * MIB);
    let (h, _dir, out, child) = exporting(&data, &[], 16);
    h.kill(0);
    let (code, log) = finish(child);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains(&format!("failing over to {}", h.addrs()[1])),
        "{log}"
    );
    assert!(std::fs::read(&out).unwrap() == data, "the export differs");
}

#[test]
fn a_black_holed_gateway_is_left_after_the_timeout() {
    let data = random(3, 32 * MIB);
    let (h, _dir, out, child) = exporting(&data, &["--timeout", "1"], 8);
    // Node 0 still accepts and reads, and never answers.
    h.blackhole(0);
    let holed = Instant::now();
    let (code, log) = finish(child);
    let took = holed.elapsed();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("stopped answering"), "{log}");
    assert!(took >= Duration::from_secs(1), "left after {took:?}");
    assert!(std::fs::read(&out).unwrap() == data, "the export differs");
    h.revive(0);
    assert!(export_at(&h, 0, "vol") == data, "node 0 answers again");
}

#[test]
fn every_node_down_is_an_error_naming_each_node() {
    let h = nodes(2);
    let [a, b] = [h.addrs()[0].to_string(), h.addrs()[1].to_string()];
    h.kill(0);
    h.kill(1);
    let mut c = at(&h, &[0, 1]);
    c.args(["list"]);
    let r = run(c);
    assert_error(
        &r,
        &[
            "cannot connect to any node",
            &format!("{a} (connection refused)"),
            &format!("{b} (connection refused)"),
        ],
    );
}

#[test]
fn nodes_gone_mid_import_give_up_after_the_timeout_naming_the_nodes_tried() {
    let h = nodes(2);
    let dir = TempDir::new();
    let f = dir.file("disk.raw", &random(4, 64 * MIB));
    let mut c = at(&h, &[0]);
    c.args(["--timeout", "1", "import", &f, "vol"]);
    let before = h.requests_served(0);
    let child = start(c);
    when_served(&h, 0, before, 8);
    let gone = Instant::now();
    h.kill(1);
    h.kill(0);
    let (code, log) = finish(child);
    let took = gone.elapsed();
    assert_eq!(code, Some(1), "{log}");
    let last = log.lines().last().unwrap_or("");
    assert!(last.starts_with("error: "), "{log}");
    assert!(last.contains("no node answered within 1 s"), "{log}");
    for a in h.addrs() {
        assert!(last.contains(&a.to_string()), "{a} is named: {log}");
    }
    assert!(took < Duration::from_secs(10), "gave up after {took:?}");
}

#[test]
fn salvage_exports_around_a_lost_object_with_status_3() {
    let h = server();
    let dir = TempDir::new();
    let data = random(5, 16 * MIB);
    import(&h, &dir, "v", &data);
    let v = vid(&h, "v");
    assert!(h.cluster().lose_object(data_oid(v, 1)), "object 1 existed");

    // Without --salvage: an error that names the object and its bytes.
    let out = dir.path("out.raw");
    let r = sheep(&h, &["export", "v", &s(&out)]);
    assert_error(
        &r,
        &["object 1 of v", "bytes 4194304..8388608", "--salvage"],
    );
    assert!(!out.exists(), "no partial file is left");

    // With it: zeros for object 1, the rest as it is, status 3. (A WASI
    // 0.2 component can only exit with success or failure: 1 there.)
    let partial = Some(if under_wasmtime() { 1 } else { 3 });
    let mut want = data.clone();
    want[OBJ..2 * OBJ].fill(0);
    let r = sheep(&h, &["export", "--salvage", "v", &s(&out)]);
    assert_eq!(r.code, partial, "{r:?}");
    assert!(
        r.stderr
            .contains("object 1 of v (bytes 4194304..8388608) could not be read"),
        "{r:?}"
    );
    assert!(r.stderr.contains("1 unreadable object"), "{r:?}");
    assert!(std::fs::read(&out).unwrap() == want, "the salvaged export");
    // To a stream too, in order.
    let r = sheep(&h, &["export", "--salvage", "v", "-"]);
    assert_eq!(r.code, partial, "{r:?}");
    assert!(r.stdout == want, "the salvaged stream");
}

#[test]
fn serve_pauses_and_goes_on_when_its_gateway_is_killed_under_qemu_io() {
    let h = nodes(3);
    let mut c = at(&h, &[0]);
    c.args(["create", "vm", "32M"]);
    assert_ok(&run(c));
    let mut c = at(&h, &[0]);
    c.args(["--timeout", "10"]);
    let srv = serve_with(c, &["vm"]);
    // 32 writes of 1 MiB, each with its own pattern.
    let mut q = client("qemu-io");
    q.args(["-f", "raw"]);
    let mut want = vec![0u8; 32 * MIB];
    for i in 0..32u8 {
        let p = 0x20 + i;
        q.args(["-c", &format!("write -P {p} {}M 1M", i)]);
        want[i as usize * MIB..(i as usize + 1) * MIB].fill(p);
    }
    q.arg(srv.uri("vm"));
    let before = h.requests_served(0);
    let writer = thread::spawn(move || ok(q));
    when_served(&h, 0, before, 12);
    h.kill(0);
    let out = writer.join().expect("qemu-io");
    assert!(!out.contains("error"), "{out}");
    let (_, log) = srv.stop();
    assert!(log.contains("failing over to 127.0.0.1:"), "{log}");
    assert!(export_at(&h, 2, "vm") == want, "the VDI differs");
}

#[test]
fn a_node_that_answers_out_of_shape_is_left_for_a_healthy_one() {
    // Node 0 answers every READ_OBJ with a header claiming 4 GiB: the
    // request that got it is sent again to node 1, as after a lost
    // connection, and the export is whole.
    let h = nodes(2);
    let dir = TempDir::new();
    let data = random(4, 24 * MIB);
    let f = dir.file("disk.raw", &data);
    let mut c = at(&h, &[1]);
    c.args(["import", f.as_str(), "vm", "--size", "24M"]);
    assert_ok(&run(c));
    h.malform(0);
    let mut c = at(&h, &[0, 1]);
    c.args(["export", "vm", "-"]);
    let r = run(c);
    assert_ok(&r);
    assert!(r.stdout == data, "the export is whole");
    let err = &r.stderr;
    assert!(err.contains("sent a bad reply"), "{err}");
    assert!(err.contains("4294967040 bytes"), "{err}");
    assert!(err.contains("failing over to"), "{err}");
    // Writes go the same way: an import through the broken node first.
    let data2 = random(5, 24 * MIB);
    let f2 = dir.file("disk2.raw", &data2);
    let mut c = at(&h, &[0, 1]);
    c.args(["import", f2.as_str(), "vm"]);
    assert_ok(&run(c));
    assert!(export_at(&h, 1, "vm") == data2, "the import landed");
}

#[test]
fn every_node_answering_out_of_shape_is_one_error_naming_the_bad_reply() {
    let h = nodes(2);
    let dir = TempDir::new();
    let data = random(6, 8 * MIB);
    let f = dir.file("disk.raw", &data);
    let mut c = at(&h, &[0]);
    c.args(["import", f.as_str(), "vm", "--size", "8M"]);
    assert_ok(&run(c));
    h.malform(0);
    h.malform(1);
    let mut c = at(&h, &[0, 1]);
    c.args(["export", "vm", "-"]);
    let r = run(c);
    assert_eq!(r.code, Some(1), "{r:?}");
    let last = r.stderr.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("error: "), "{last}");
    assert!(last.contains("bad reply to READ_OBJ"), "{last}");
}
