//! `serve --vhost-user-blk` with a real Linux guest under QEMU: the guest
//! makes ext4 on the volume, writes, trims and powers off; the volume then
//! passes `e2fsck -fn` and holds what the guest wrote. A snapshot is taken
//! and a gateway killed while the guest writes: the guest sees a pause,
//! not an error, the lock moves with the export, and the snapshot opens.
//!
//! Needs the guest of `scripts/guest-image` (`SHEEP_GUEST_DIR`) and QEMU's
//! system emulator (`QEMU`, `QEMU_ARGS`, as `scripts/guest-run` takes
//! them); `scripts/check` provides both and sets `SHEEP_REQUIRE_GUEST=1`
//! so that the test cannot pass there without them. The WASI component
//! refuses the option: under wasmtime only that is checked.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use sheepdog_tests::server::{spawn_nodes, Cluster, ClusterConfig, NetOptions, ServerHandle};

fn under_wasmtime() -> bool {
    std::env::var_os("SHEEP_TOOL_UNDER_WASMTIME").is_some()
}

/// The guest image, when there is one; with `SHEEP_REQUIRE_GUEST` there
/// must be.
fn guest() -> Option<PathBuf> {
    let dir = std::env::var_os("SHEEP_GUEST_DIR").map(PathBuf::from);
    let ok = dir
        .as_ref()
        .is_some_and(|d| d.join("vmlinuz").is_file() && d.join("initramfs.cpio.gz").is_file());
    if !ok && std::env::var_os("SHEEP_REQUIRE_GUEST").is_some() {
        panic!(
            "SHEEP_REQUIRE_GUEST is set but SHEEP_GUEST_DIR holds no guest (scripts/guest-image)"
        );
    }
    if !ok {
        eprintln!("no guest (SHEEP_GUEST_DIR): the vhost-user-blk guest test is left out");
    }
    dir.filter(|_| ok)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A server that is killed if the test ends without stopping it.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The native tool (vhost-user needs Linux) serving `vdi` of `h` on
/// `sock`, started once the socket is there.
fn serve(h: &ServerHandle, vdi: &str, sock: &Path) -> Served {
    let list: Vec<String> = h.addrs().iter().map(|a| a.to_string()).collect();
    let child = Command::new(env!("CARGO_BIN_EXE_sheep-tool"))
        .args(["-a", &list.join(","), "serve", vdi, "--vhost-user-blk"])
        .arg(sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sheep-tool");
    let served = Served(child);
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "no socket");
        thread::sleep(Duration::from_millis(20));
    }
    served
}

/// Boot the guest with the device on `sock` and run `script`; every line
/// of its console goes to `lines` as it comes. The exit status.
fn boot(dir: &Path, script: &Path, sock: &Path, lines: mpsc::Sender<String>) -> Option<i32> {
    let mut c = Command::new(repo().join("scripts/guest-run"));
    c.arg(dir).arg(script).args([
        "-object",
        "memory-backend-memfd,id=mem,size=512M,share=on",
        "-numa",
        "node,memdev=mem",
        "-chardev",
    ]);
    c.arg(format!("socket,id=c,path={}", sock.display()));
    c.args(["-device", "vhost-user-blk-pci,chardev=c,num-queues=2"]);
    c.env("GUEST_MEM", "512M").env("GUEST_TIMEOUT", "400");
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = c.spawn().expect("spawn guest-run");
    let out = child.stdout.take().expect("stdout");
    for line in BufReader::new(out).lines().map_while(Result::ok) {
        eprintln!("guest: {line}");
        let _ = lines.send(line);
    }
    child.wait().expect("wait guest-run").code()
}

fn script(dir: &TempDir, name: &str, body: &str) -> PathBuf {
    let p = dir.path(name);
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(body.as_bytes()).unwrap();
    p
}

/// The lines `tag value` the guest printed, as (tag, value).
fn tagged(lines: &[String], tag: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(tag))
        .map(|v| v.trim().to_string())
        .collect()
}

#[test]
fn a_guest_makes_ext4_on_a_vhost_user_blk_volume_through_a_snapshot_and_a_lost_gateway() {
    if under_wasmtime() {
        let r = run({
            let mut c = bare_tool();
            c.args([
                "-a",
                "127.0.0.1:1",
                "serve",
                "v",
                "--vhost-user-blk",
                "s.sock",
            ]);
            c
        });
        assert_error(&r, &["--vhost-user-blk", "Linux"]);
        return;
    }
    let Some(image) = guest() else { return };
    let h = spawn_nodes(
        Cluster::new(ClusterConfig::default().with_locking(true)),
        3,
        NetOptions::reordering(),
    )
    .expect("start the nodes");
    let tool = |args: &[&str]| {
        let mut c = bare_tool();
        c.arg("-a").arg(h.addrs()[1].to_string()).args(args);
        run(c)
    };
    assert_ok(&tool(&["create", "g", "256M"]));
    let dir = TempDir::new();
    let sock = dir.path("g.sock");
    let mut server = serve(&h, "g", &sock);

    // First boot: ext4, a file, then a long write during which the host
    // takes a snapshot and kills the gateway; trim; a clean fsck.
    let first = script(
        &dir,
        "first.sh",
        r#"set -e
mkfs.ext4 -q /dev/vda
mkdir -p /mnt && mount /dev/vda /mnt
dd if=/dev/urandom of=/mnt/a bs=1M count=8 2>/dev/null
sync
echo "SUM-A $(sha256sum /mnt/a | cut -d' ' -f1)"
echo WRITING
dd if=/dev/urandom of=/mnt/b bs=1M count=48 conv=fsync 2>/dev/null
echo "SUM-B $(sha256sum /mnt/b | cut -d' ' -f1)"
rm /mnt/a
sync
fstrim -v /mnt
umount /mnt
e2fsck -fn /dev/vda
"#,
    );
    let (tx, rx) = mpsc::channel();
    let guest_dir = image.clone();
    let (first_c, sock_c) = (first.clone(), sock.clone());
    let booted = thread::spawn(move || boot(&guest_dir, &first_c, &sock_c, tx));
    let mut lines = Vec::new();
    for line in rx.iter() {
        let writing = line.trim() == "WRITING";
        lines.push(line);
        if writing {
            // While the guest writes: a snapshot; once the export has
            // moved its lock to the new working VDI (its next write does
            // that), a gateway lost. (Lost while the lock moves, the new
            // working VDI can stay locked: README, Limits.)
            thread::sleep(Duration::from_millis(300));
            assert_ok(&tool(&["snapshot", "create", "g", "--tag", "live"]));
            let start = Instant::now();
            loop {
                let r = tool(&["lock", "list", "--json"]);
                let locks: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
                let held: Vec<u64> = locks
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["snapshot_id"].as_u64().unwrap())
                    .collect();
                if held == [0] {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the lock did not move: {locks}"
                );
                thread::sleep(Duration::from_millis(50));
            }
            h.kill(0);
        }
    }
    let code = booted.join().unwrap();
    assert_eq!(code, Some(0), "the guest's script failed: {lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("bytes trimmed")),
        "{lines:?}"
    );
    let sum_b = tagged(&lines, "SUM-B");
    assert_eq!(sum_b.len(), 1, "{lines:?}");

    // Second boot, on the same server (a second QEMU is served once the
    // first has left): the file reads back as the guest wrote it.
    let second = script(
        &dir,
        "second.sh",
        r#"set -e
e2fsck -fn /dev/vda >/dev/null
mkdir -p /mnt && mount -o ro /dev/vda /mnt
echo "SUM-B $(sha256sum /mnt/b | cut -d' ' -f1)"
test ! -e /mnt/a
"#,
    );
    let (tx, rx) = mpsc::channel();
    let (guest_dir, sock_c) = (image.clone(), sock.clone());
    let booted = thread::spawn(move || boot(&guest_dir, &second, &sock_c, tx));
    let again: Vec<String> = rx.iter().collect();
    assert_eq!(booted.join().unwrap(), Some(0), "{again:?}");
    assert_eq!(tagged(&again, "SUM-B"), sum_b);
    // A stop ends the server, releases the lock and removes the socket.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.0.id() as i32, libc::SIGTERM) };
    let status = server.0.wait().expect("wait sheep-tool");
    assert_eq!(status.code(), Some(0));
    assert!(!sock.exists());
    let r = tool(&["lock", "list", "--json"]);
    assert_eq!(r.out().trim(), "[]", "{r:?}");

    // The volume and the live snapshot, from the host: e2fsck is clean on
    // the volume, and the snapshot exports whole.
    let raw = dir.path("g.raw");
    assert_ok(&tool(&["export", "g", &s(&raw)]));
    let fsck = Command::new("e2fsck").args(["-fn"]).arg(&raw).output();
    if let Ok(o) = fsck {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }
    let snap = dir.path("live.raw");
    assert_ok(&tool(&["export", "g@live", &s(&snap)]));
    assert_eq!(std::fs::metadata(&snap).unwrap().len(), 256 << 20);
}
