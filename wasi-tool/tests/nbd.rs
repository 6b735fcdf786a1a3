//! `serve`: the NBD server driven by the real clients (qemu-img, qemu-io,
//! nbdinfo, nbdcopy; `scripts/setup` installs them) and by a raw client
//! for what they never send, with the volume checked by `sheep-tool
//! export` afterwards. Natively and, with SHEEP_TOOL_UNDER_WASMTIME=1,
//! as the WASI component.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::nbd::*;
use common::*;
use sheepdog_tests::server::{ClusterConfig, LockState, ServerHandle};

fn create(h: &ServerHandle, name: &str, size: &str) {
    sheep_ok(h, &["create", name, size]);
}

#[test]
fn qemu_img_convert_compare_info_and_map() {
    let h = server();
    let dir = TempDir::new();
    // 16 MiB: data in objects 0 and 2, nothing in 1 and 3.
    let mut img = vec![0u8; 16 * MIB];
    img[..MIB].copy_from_slice(&random(1, MIB));
    img[9 * MIB..10 * MIB].copy_from_slice(&random(2, MIB));
    let raw = dir.file("img.raw", &img);
    let qcow = s(&dir.path("img.qcow2"));
    let mut c = client("qemu-img");
    c.args(["convert", "-f", "raw", "-O", "qcow2", &raw, &qcow]);
    ok(c);
    create(&h, "vm1", "16M");
    let srv = serve(&h, &["vm1"]);
    let uri = srv.uri("vm1");

    let mut c = client("qemu-img");
    c.args(["info", "--output=json", &uri]);
    let info: serde_json::Value = serde_json::from_str(&ok(c)).unwrap();
    assert_eq!(info["virtual-size"], 16 * MIB as u64);

    let mut c = client("qemu-img");
    c.args(["convert", "-n", "-f", "qcow2", "-O", "raw", &qcow, &uri]);
    ok(c);
    let mut c = client("qemu-img");
    c.args(["compare", "-f", "qcow2", "-F", "raw", &qcow, &uri]);
    assert!(ok(c).contains("identical"));

    // Holes where the objects are unallocated, data where they are not.
    let mut c = client("qemu-img");
    c.args(["map", "--output=json", "-f", "raw", &uri]);
    let map: serde_json::Value = serde_json::from_str(&ok(c)).unwrap();
    let extents: Vec<(u64, u64, bool)> = map
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["start"].as_u64().unwrap(),
                e["length"].as_u64().unwrap(),
                e["data"].as_bool().unwrap(),
            )
        })
        .collect();
    let o = OBJ as u64;
    assert_eq!(
        extents,
        [
            (0, o, true),
            (o, o, false),
            (2 * o, o, true),
            (3 * o, o, false)
        ]
    );
    drop(srv);
    assert!(export_bytes(&h, "vm1") == img);
    assert_eq!(entry(&h, vid(&h, "vm1"), 1), 0, "no zeros were written");
}

#[test]
fn qemu_io_patterns_zeroes_discard_and_many_in_flight() {
    let h = server();
    create(&h, "vm1", "32M");
    let srv = serve(&h, &["vm1"]);
    let mut model = vec![0u8; 32 * MIB];
    let mut c = client("qemu-io");
    c.args(["-f", "raw", "--cache", "none"]);
    let mut cmds: Vec<String> = vec![
        "write -P 0xab 0 6M".into(),
        "read -P 0xab 0 6M".into(),
        // Zeros over a whole object and part of another.
        "write -z 4M 3M".into(),
        "read -P 0 4M 3M".into(),
        // Discard a whole object, then read zeros.
        "write -P 0xcd 12M 4M".into(),
        "discard 12M 4M".into(),
        "read -P 0 12M 4M".into(),
    ];
    model[..6 * MIB].fill(0xab);
    model[4 * MIB..7 * MIB].fill(0);
    // 48 writes of 64 KiB in flight at once, then read them back the same
    // way.
    for i in 0..48usize {
        let at = 16 * MIB + i * 256 * 1024;
        cmds.push(format!("aio_write -P {} {at} 64k", 0x10 + i));
        model[at..at + 64 * 1024].fill(0x10 + i as u8);
    }
    cmds.push("aio_flush".into());
    for i in 0..48usize {
        let at = 16 * MIB + i * 256 * 1024;
        cmds.push(format!("aio_read -P {} {at} 64k", 0x10 + i));
    }
    cmds.push("aio_flush".into());
    for cmd in &cmds {
        c.args(["-c", cmd]);
    }
    c.arg(srv.uri("vm1"));
    let out = ok(c);
    assert!(!out.contains("fail"), "{out}");
    assert_eq!(out.matches("read ").count(), 3 + 48, "{out}");
    drop(srv);
    assert!(export_bytes(&h, "vm1") == model);
    let v = vid(&h, "vm1");
    assert_eq!(entry(&h, v, 3), 0, "the discarded object was released");
}

#[test]
fn polling_off_or_long_serves_the_same_bytes() {
    // Every other test serves with the default window; here none, and a
    // long one (the loop then polls 2 ms before each sleep while busy).
    let h = server();
    for (k, poll) in ["0", "2000"].into_iter().enumerate() {
        let name = format!("p{k}");
        create(&h, &name, "8M");
        let srv = serve(&h, &[name.as_str(), "--poll-max-us", poll]);
        let mut c = client("qemu-io");
        c.args(["-f", "raw", "--cache", "none"]);
        let mut model = vec![0u8; 8 * MIB];
        for i in 0..32usize {
            let at = i * 256 * 1024;
            c.args(["-c", &format!("aio_write -P {} {at} 4k", 0x40 + i)]);
            model[at..at + 4096].fill(0x40 + i as u8);
        }
        c.args(["-c", "aio_flush"]);
        for i in 0..32usize {
            c.args(["-c", &format!("read -P {} {} 4k", 0x40 + i, i * 256 * 1024)]);
        }
        c.arg(srv.uri(&name));
        let out = ok(c);
        assert!(!out.contains("fail"), "--poll-max-us {poll}: {out}");
        assert_eq!(out.matches("read ").count(), 32, "{out}");
        drop(srv);
        assert!(export_bytes(&h, &name) == model, "--poll-max-us {poll}");
    }
}

#[test]
fn nbdinfo_list_map_and_can() {
    let h = server();
    let dir = TempDir::new();
    let mut img = vec![0u8; 12 * MIB];
    img[8 * MIB..9 * MIB].copy_from_slice(&random(3, MIB));
    import(&h, &dir, "vm1", &img);
    sheep_ok(&h, &["snapshot", "create", "vm1", "--tag", "before"]);
    let srv = serve(&h, &["vm1", "vm1@before"]);
    let mut c = client("nbdinfo");
    c.args(["--list", &srv.uri("")]);
    let list = ok(c);
    assert!(list.contains("export=\"vm1\""), "{list}");
    assert!(list.contains("export=\"vm1@before\""), "{list}");

    let mut c = client("nbdinfo");
    c.args(["--map", &srv.uri("vm1@before")]);
    let map = ok(c);
    let rows: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{map}");
    assert_eq!(rows[0][..3], ["0", &(8 * MIB).to_string(), "3"], "{map}");
    assert_eq!(
        rows[1][..3],
        [&(8 * MIB).to_string(), &(4 * MIB).to_string(), "0"]
    );

    let can = |export: &str, what: &str| {
        let mut c = client("nbdinfo");
        c.args(["--can", what, &srv.uri(export)]);
        output(c).status.code()
    };
    for what in [
        "write",
        "flush",
        "fua",
        "trim",
        "zero",
        "fast-zero",
        "df",
        "multi-conn",
        "structured-reply",
    ] {
        assert_eq!(can("vm1", what), Some(0), "vm1 can {what}");
    }
    for what in ["write", "trim", "zero", "fua"] {
        assert_eq!(can("vm1@before", what), Some(2), "a snapshot cannot {what}");
    }
    assert_eq!(can("vm1@before", "read"), Some(0));
    assert_eq!(can("vm1", "cache"), Some(2));
}

#[test]
fn nbdcopy_both_ways_with_four_connections() {
    let h = server();
    let dir = TempDir::new();
    let img = mixed_image(40 * MIB);
    let raw = dir.file("img.raw", &img);
    create(&h, "vm1", "40M");
    let srv = serve(&h, &["vm1"]);
    let mut c = client("nbdcopy");
    c.args([
        "--connections",
        "4",
        "--requests",
        "16",
        &raw,
        &srv.uri("vm1"),
    ]);
    ok(c);
    let back = s(&dir.path("back.raw"));
    let mut c = client("nbdcopy");
    c.args(["--connections", "4", &srv.uri("vm1"), &back]);
    ok(c);
    assert!(std::fs::read(&back).unwrap() == img);
    drop(srv);
    assert!(export_bytes(&h, "vm1") == img);
    assert_eq!(
        entry(&h, vid(&h, "vm1"), 1),
        0,
        "the zero object stays a hole"
    );
}

/// An NBD client written out by hand, for requests the real clients
/// never send.
struct Raw(TcpStream);

impl Raw {
    fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut r = Raw(s);
        let mut greeting = [0u8; 18];
        r.0.read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting[..8], b"NBDMAGIC");
        r
    }

    /// Fixed newstyle, then GO `name` with simple replies.
    fn go(port: u16, name: &str) -> Raw {
        let mut r = Raw::connect(port);
        r.0.write_all(&3u32.to_be_bytes()).unwrap();
        let mut opt = Vec::new();
        opt.extend_from_slice(b"IHAVEOPT");
        opt.extend_from_slice(&7u32.to_be_bytes());
        opt.extend_from_slice(&(4 + name.len() as u32 + 2).to_be_bytes());
        opt.extend_from_slice(&(name.len() as u32).to_be_bytes());
        opt.extend_from_slice(name.as_bytes());
        opt.extend_from_slice(&0u16.to_be_bytes());
        r.0.write_all(&opt).unwrap();
        loop {
            let mut head = [0u8; 20];
            r.0.read_exact(&mut head).unwrap();
            let kind = u32::from_be_bytes(head[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(head[16..20].try_into().unwrap());
            let mut data = vec![0u8; len as usize];
            r.0.read_exact(&mut data).unwrap();
            assert!(
                kind < 1 << 31,
                "GO refused: {}",
                String::from_utf8_lossy(&data)
            );
            if kind == 1 {
                return r;
            }
        }
    }

    fn request(&mut self, command: u16, cookie: u64, offset: u64, len: u32, data: &[u8]) {
        let mut b = Vec::new();
        b.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&command.to_be_bytes());
        b.extend_from_slice(&cookie.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(data);
        self.0.write_all(&b).unwrap();
    }

    /// A simple reply: (error, cookie).
    fn reply(&mut self) -> (u32, u64) {
        let mut b = [0u8; 16];
        self.0.read_exact(&mut b).unwrap();
        assert_eq!(&b[..4], &0x6744_6698u32.to_be_bytes());
        (
            u32::from_be_bytes(b[4..8].try_into().unwrap()),
            u64::from_be_bytes(b[8..16].try_into().unwrap()),
        )
    }

    /// The server closed the connection (no more bytes).
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        loop {
            match self.0.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

#[test]
fn snapshot_writes_get_eperm_and_out_of_range_gets_einval() {
    let h = server();
    create(&h, "vm1", "8M");
    sheep_ok(&h, &["snapshot", "create", "vm1", "--tag", "s1"]);
    let srv = serve(&h, &["vm1", "vm1@s1"]);
    let mut snap = Raw::go(srv.port, "vm1@s1");
    snap.request(1, 11, 0, 4, b"abcd");
    assert_eq!(snap.reply(), (1, 11), "EPERM");
    snap.request(4, 12, 0, 4096, &[]);
    assert_eq!(snap.reply(), (1, 12), "TRIM: EPERM");
    let mut rw = Raw::go(srv.port, "vm1");
    rw.request(0, 13, 8 * MIB as u64 - 512, 1024, &[]);
    assert_eq!(rw.reply(), (22, 13), "EINVAL");
    // The connection goes on: a read in range works.
    rw.request(0, 14, 0, 512, &[]);
    assert_eq!(rw.reply(), (0, 14));
    let mut data = [1u8; 512];
    rw.0.read_exact(&mut data).unwrap();
    assert!(all_zero(&data));
    // An unknown export is refused, the default is the first.
    let mut c = client("qemu-img");
    c.args(["info", &srv.uri("nope")]);
    let o = output(c);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not exported"));
    let mut c = client("nbdinfo");
    c.args(["--size", &srv.uri("")]);
    assert_eq!(ok(c).trim(), (8 * MIB).to_string());
}

#[test]
fn a_client_sending_garbage_is_dropped_while_another_copies() {
    let h = server();
    let dir = TempDir::new();
    let img = random(5, 24 * MIB);
    let raw = dir.file("img.raw", &img);
    create(&h, "vm1", "24M");
    let srv = serve(&h, &["vm1"]);
    let uri = srv.uri("vm1");
    let copy = thread::spawn(move || {
        let mut c = client("nbdcopy");
        c.args(["--connections", "2", &raw, &uri]);
        output(c)
    });
    // Garbage instead of client flags and options.
    let mut g = Raw::connect(srv.port);
    g.0.write_all(&[0xff; 64]).unwrap();
    assert!(g.closed(), "garbage in the handshake closes");
    // Garbage instead of a request.
    let mut g = Raw::go(srv.port, "vm1");
    g.0.write_all(b"this is not an NBD request header").unwrap();
    assert!(g.closed(), "garbage in transmission closes");
    // A write longer than 32 MiB.
    let mut g = Raw::go(srv.port, "vm1");
    g.request(1, 1, 0, (32 << 20) + 1, &[]);
    assert!(g.closed(), "an oversized write closes");
    let o = copy.join().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drop(srv);
    assert!(export_bytes(&h, "vm1") == img);
}

#[test]
fn a_snapshot_taken_mid_copy_loses_no_acknowledged_write() {
    let h = server();
    let dir = TempDir::new();
    let img = random(6, 64 * MIB);
    let raw = dir.file("img.raw", &img);
    create(&h, "vm1", "64M");
    let srv = serve(&h, &["vm1"]);
    let uri = srv.uri("vm1");
    let copy = thread::spawn(move || {
        let mut c = client("nbdcopy");
        c.args(["--connections", "1", "--request-size", "65536", &raw, &uri]);
        output(c)
    });
    // Once some data is in, snapshot from another client.
    let v = vid(&h, "vm1");
    let deadline = Instant::now() + Duration::from_secs(60);
    while entry(&h, v, 2) == 0 {
        assert!(Instant::now() < deadline, "nbdcopy wrote nothing");
        thread::sleep(Duration::from_millis(5));
    }
    sheep_ok(&h, &["snapshot", "create", "vm1", "--tag", "mid"]);
    let o = copy.join().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drop(srv);
    // The working VDI has everything.
    assert!(export_bytes(&h, "vm1") == img);
    // The snapshot has, byte by byte, either what was there before (zeros)
    // or what was written; and some of the data.
    let snap = export_bytes(&h, "vm1@mid");
    assert_eq!(snap.len(), img.len());
    let bad = snap.iter().zip(&img).position(|(s, i)| *s != 0 && s != i);
    assert_eq!(bad, None, "the snapshot holds bytes nobody wrote");
    assert!(snap[..4 * OBJ / 2].iter().any(|&b| b != 0));
    assert!(snap != img, "the snapshot was taken before the copy ended");
}

#[test]
fn sigterm_finishes_writes_and_releases_the_lock() {
    let h = server_with(ClusterConfig::default().with_locking(true));
    create(&h, "vm1", "16M");
    let srv = serve(&h, &["vm1"]);
    let mut c = client("qemu-io");
    c.args(["-f", "raw", "-c", "write -P 0x5a 0 9M", &srv.uri("vm1")]);
    ok(c);
    // The lock is held while the export is open.
    let mut client_conn = Raw::go(srv.port, "vm1");
    let v = vid(&h, "vm1");
    assert_eq!(h.cluster().vdi_state(v).unwrap().lock, LockState::Locked);
    let r = sheep(&h, &["export", "vm1", "-", "--lock"]);
    assert_error(&r, &["VDI is locked: vm1"]);
    // A write in flight when the stop comes is finished and answered.
    client_conn.request(1, 77, 10 * MIB as u64, 4096, &[0x77; 4096]);
    thread::sleep(Duration::from_millis(50));
    let (code, log) = srv.stop();
    if !under_wasmtime() {
        // wasmtime dies of the signal: the component has none.
        assert_eq!(code, Some(0), "{log}");
        assert_eq!(client_conn.reply(), (0, 77));
        assert_eq!(h.cluster().vdi_state(v).unwrap().lock, LockState::Unlocked);
        let mut want = vec![0u8; 16 * MIB];
        want[..9 * MIB].fill(0x5a);
        want[10 * MIB..10 * MIB + 4096].fill(0x77);
        assert!(export_bytes(&h, "vm1") == want);
    }
}

#[test]
fn without_names_every_vdi_is_served_and_listed() {
    let h = server();
    create(&h, "a", "4M");
    create(&h, "b", "8M");
    sheep_ok(&h, &["snapshot", "create", "b", "--tag", "t"]);
    let srv = serve(&h, &[]);
    let mut c = client("nbdinfo");
    c.args(["--list", &srv.uri("")]);
    let list = ok(c);
    for name in ["\"a\"", "\"b\"", "\"b@t\""] {
        assert!(list.contains(&format!("export={name}")), "{list}");
    }
    let mut c = client("nbdinfo");
    c.args(["--size", &srv.uri("b")]);
    assert_eq!(ok(c).trim(), (8 * MIB).to_string());
    let mut c = client("qemu-img");
    c.args(["info", &srv.uri("nosuch")]);
    let o = output(c);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such VDI"));
}

#[test]
fn unix_socket() {
    let h = server();
    create(&h, "vm1", "4M");
    let dir = TempDir::new();
    let sock = s(&dir.path("nbd.sock"));
    let mut c = tool(&h);
    c.args(["serve", "vm1", "--socket", &sock]);
    if under_wasmtime() {
        let r = run(c);
        assert_error(&r, &["Unix sockets are not available"]);
        return;
    }
    c.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), format!("nbd+unix:///vm1?socket={sock}"));
    let mut q = client("qemu-io");
    q.args(["-f", "raw", "-c", "write -P 7 0 1M", line.trim()]);
    ok(q);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    assert!(!dir.path("nbd.sock").exists(), "the socket is removed");
    assert!(export_bytes(&h, "vm1")[..MIB].iter().all(|&b| b == 7));
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let h = server();
    let r = sheep(&h, &["serve", "nosuch", "--listen", "127.0.0.1:0"]);
    assert_error(&r, &["no such VDI: nosuch"]);
    create(&h, "vm1", "4M");
    let r = sheep(&h, &["serve", "vm1", "--listen", "256.0.0.1:1"]);
    assert_error(&r, &["cannot listen on 256.0.0.1:1"]);
}

#[test]
fn small_sequential_writes_reach_the_cluster_as_whole_objects() {
    use sheepdog_core::wire::Opcode;
    use sheepdog_tests::server::Matcher;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    let h = server();
    create(&h, "vm1", "16M");
    let writes = Arc::new(AtomicU32::new(0));
    let w = Arc::clone(&writes);
    h.cluster().inject(
        Matcher::custom(move |req| {
            if matches!(req.opcode, Opcode::WriteObj | Opcode::CreateAndWriteObj) {
                w.fetch_add(1, Ordering::SeqCst);
                // A cluster slower than the client, so that writes queue.
                thread::sleep(Duration::from_millis(5));
            }
            false
        }),
        sheepdog_tests::server::FaultAction::Fail(sheepdog_core::wire::ResultCode::SystemError),
        u32::MAX,
    );
    let srv = serve(&h, &["vm1"]);
    // 64 writes of 256 KiB, all in flight at once.
    let mut c = client("qemu-io");
    c.args(["-f", "raw"]);
    let mut want = vec![0u8; 16 * MIB];
    for i in 0..64usize {
        c.args([
            "-c",
            &format!("aio_write -P {} {} 256k", i + 1, i * 256 * 1024),
        ]);
        want[i * 256 * 1024..(i + 1) * 256 * 1024].fill(i as u8 + 1);
    }
    c.args(["-c", "aio_flush", &srv.uri("vm1")]);
    ok(c);
    drop(srv);
    assert!(export_bytes(&h, "vm1") == want);
    let n = writes.load(Ordering::SeqCst);
    assert!(
        n < 32,
        "{n} write requests for 64 NBD writes into 4 objects"
    );
}

#[test]
fn zeros_written_where_nothing_is_allocate_nothing_and_over_data_are_written() {
    use sheepdog_core::wire::Opcode;
    use sheepdog_tests::server::{FaultAction, Matcher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let h = server();
    create(&h, "vm1", "12M");
    let bytes = Arc::new(AtomicU64::new(0));
    let b = Arc::clone(&bytes);
    h.cluster().inject(
        Matcher::custom(move |req| {
            let data = req
                .obj()
                .is_some_and(|a| a.oid.kind() == sheepdog_core::oid::OidKind::Data);
            if data && matches!(req.opcode, Opcode::WriteObj | Opcode::CreateAndWriteObj) {
                b.fetch_add(u64::from(req.data_length), Ordering::SeqCst);
            }
            false
        }),
        FaultAction::Fail(sheepdog_core::wire::ResultCode::SystemError),
        u32::MAX,
    );
    let srv = serve(&h, &["vm1"]);
    let mut c = client("qemu-io");
    c.args([
        "-f",
        "raw",
        // All zeros into a hole: nothing to write.
        "-c",
        "write -P 0 0 4M",
        // 1 MiB of data then 3 MiB of zeros, as one write and as a write
        // then zeros: the zeros of a new object are not sent.
        "-c",
        "write -P 9 4M 1M",
        "-c",
        "write -P 0 5M 3M",
        // Zeros over data are written.
        "-c",
        "write -P 7 8M 4M",
        "-c",
        "write -P 0 8M 1M",
        &srv.uri("vm1"),
    ]);
    ok(c);
    drop(srv);
    let mut want = vec![0u8; 12 * MIB];
    want[4 * MIB..5 * MIB].fill(9);
    want[9 * MIB..12 * MIB].fill(7);
    assert!(export_bytes(&h, "vm1") == want);
    let v = vid(&h, "vm1");
    assert_eq!(entry(&h, v, 0), 0, "a write of zeros allocated object 0");
    let sent = bytes.load(Ordering::SeqCst);
    assert_eq!(
        sent,
        (MIB + 4 * MIB + MIB) as u64,
        "bytes written to the cluster"
    );
}

#[test]
fn a_misbehaving_gateway_gives_the_client_an_error_or_the_right_bytes_never_a_hang() {
    use sheepdog_core::wire::Opcode;
    use sheepdog_tests::server::{FaultAction, Matcher};

    let h = server();
    let dir = TempDir::new();
    let img = random(8, 8 * MIB);
    import(&h, &dir, "vm1", &img);
    let srv = serve(&h, &["vm1"]);
    let uri = srv.uri("vm1");
    let is_data_read = |req: &sheepdog_core::wire::Request| {
        req.opcode == Opcode::ReadObj
            && req
                .obj()
                .is_some_and(|a| a.oid.kind() == sheepdog_core::oid::OidKind::Data)
    };
    // A reply of the wrong length: the gateway counts as broken, the
    // connection to it is made again, and the read is sent again there:
    // the client gets the right bytes.
    h.cluster().inject(
        Matcher::custom(is_data_read),
        FaultAction::ApplyThenLength(100),
        1,
    );
    let mut c = client("qemu-io");
    c.args(["-f", "raw", "-c", "read -v 0 16", &uri]);
    let out = ok(c);
    let first: String = img[..4].iter().map(|b| format!("{b:02x} ")).collect();
    assert!(out.contains(first.trim_end()), "{out}");
    let mut c = client("qemu-io");
    c.args(["-f", "raw", "-c", "read -v 0 16", &uri]);
    let out = ok(c);
    let first: String = img[..4].iter().map(|b| format!("{b:02x} ")).collect();
    assert!(out.contains(first.trim_end()), "{out}");
    // A connection cut in the middle of a reply's payload, and one cut
    // after a write was applied: both are resent, and the bytes are right.
    h.cluster().inject(
        Matcher::custom(is_data_read),
        FaultAction::ApplyThenCutShort,
        1,
    );
    h.cluster().inject(
        Matcher::opcode(Opcode::WriteObj),
        FaultAction::ApplyThenDisconnect,
        1,
    );
    let back = s(&dir.path("back.raw"));
    let mut c = client("nbdcopy");
    c.args([&uri, &back]);
    ok(c);
    assert!(std::fs::read(&back).unwrap() == img);
    let mut c = client("qemu-io");
    c.args(["-f", "raw", "-c", "write -P 0x42 4096 4096", &uri]);
    ok(c);
    let (code, log) = srv.stop();
    assert!(log.contains("bad reply"), "the bad reply is logged: {log}");
    if !under_wasmtime() {
        assert_eq!(code, Some(0), "{log}");
    }
    let mut want = img.clone();
    want[4096..8192].fill(0x42);
    assert!(export_bytes(&h, "vm1") == want);
}
