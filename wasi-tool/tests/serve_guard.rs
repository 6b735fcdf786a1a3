//! `serve` against careless and hostile NBD clients, each case one that
//! once hurt every client of the server: an option flood whose replies
//! are never read, connections that pipeline reads and never take the
//! replies, connections that never finish the handshake under a low
//! descriptor limit; and the rails: `--allow`, `--pid-file`, socket
//! activation. Natively and (but socket activation) under wasmtime.

mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::nbd::{client, ok, output, serve, serve_with, under_wasmtime};
use common::raw_nbd::{self, flood, greeted, open_fds, opened, option, read, rss, OPT_LIST};
use common::*;

/// A VDI `vm` of 16 MiB of known bytes on `h`.
fn served(h: &sheepdog_tests::server::ServerHandle) -> (Vec<u8>, TempDir) {
    let dir = TempDir::new();
    let img = random(21, 16 * MIB);
    assert_ok(&import(h, &dir, "vm", &img));
    (img, dir)
}

#[test]
fn an_option_flood_whose_replies_are_never_read_costs_no_memory() {
    let h = server();
    let (img, _dir) = served(&h);
    let srv = serve(&h, &["vm"]);
    let pid = srv.child.id();
    let mut c = greeted(srv.port).expect("handshake");
    // Let the server settle, then flood: a million LIST options (16 MB),
    // never reading a reply. Before, each was answered into memory (about
    // 46 MiB per million); now the client is read no more once a few KiB
    // of replies wait, and TCP holds it back.
    thread::sleep(Duration::from_millis(300));
    let before = rss(pid);
    let burst: Vec<u8> = (0..4096).flat_map(|_| option(OPT_LIST, &[])).collect();
    let sent = flood(&mut c, &burst, 16_000_000, Duration::from_secs(2));
    thread::sleep(Duration::from_millis(300));
    let after = rss(pid);
    let grown = after.saturating_sub(before);
    println!("flood: {sent} bytes taken by the kernel and the server; RSS {before} -> {after}");
    assert!(
        sent < 16_000_000,
        "the flood was never held back ({sent} bytes)"
    );
    assert!(grown < 16 * MIB as u64, "RSS grew by {grown} bytes");
    // Meanwhile another client is served as ever.
    let mut other = opened(srv.port, "vm").expect("a second client");
    assert!(read(&mut other, 1, 0, 4096).unwrap() == img[..4096]);
    drop(c);
}

#[test]
fn clients_that_never_read_their_replies_do_not_stall_the_others() {
    let h = server();
    let (img, _dir) = served(&h);
    let srv = serve(&h, &["vm"]);
    // Four connections pipeline 10,000 reads of 64 KiB each and never read
    // a reply: each fills its own share and is read no more. Before, they
    // filled the server-wide figure and no connection's request was taken
    // until the stall timeout (60 s) dropped them.
    let mut hogs = Vec::new();
    for n in 0..4u64 {
        let mut s = opened(srv.port, "vm").expect("a hog");
        hogs.push(thread::spawn(move || {
            let reqs: Vec<u8> = (0..10_000u64)
                .flat_map(|i| raw_nbd::read_request(n << 32 | i, (i % 256) * 65536, 65536))
                .collect();
            flood(&mut s, &reqs, reqs.len() as u64, Duration::from_secs(3));
            s
        }));
    }
    let hogs: Vec<_> = hogs.into_iter().map(|t| t.join().unwrap()).collect();
    // A good client's 4 KiB reads, one at a time: each within 5 s (a
    // stall would leave it unanswered for a minute).
    let mut good = opened(srv.port, "vm").expect("the good client");
    good.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut took = Vec::new();
    for i in 0..200u64 {
        let at = (i * 7919 % 4096) * 4096;
        let start = Instant::now();
        let data = read(&mut good, 1000 + i, at, 4096).expect("a read within 5 s");
        took.push(start.elapsed());
        assert!(data == img[at as usize..at as usize + 4096], "read {i}");
    }
    took.sort();
    println!(
        "good client's 4 KiB reads while 4 hog: median {:?}, 99th {:?}",
        took[took.len() / 2],
        took[took.len() * 99 / 100]
    );
    drop(hogs);
}

/// `serve` under a descriptor limit of `nofile`, with `args`.
fn serve_limited(
    h: &sheepdog_tests::server::ServerHandle,
    nofile: u32,
    args: &[&str],
) -> common::nbd::Serve {
    let inner = tool(h);
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$@\""))
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    serve_with(c, args)
}

#[test]
fn connections_that_never_finish_the_handshake_are_closed_and_descriptors_never_run_out() {
    let h = server();
    let (img, _dir) = served(&h);
    // 256 descriptors: 96 connections by default, two descriptors each.
    // The component cannot see the host's limit: it is told.
    let mut args = vec!["vm", "--handshake-limit", "2"];
    if under_wasmtime() {
        args.extend(["--max-connections", "96"]);
    }
    let srv = serve_limited(&h, 256, &args);
    let pid = srv.child.id();
    // A VM that opened the export and then stays idle: never dropped.
    let mut idle_vm = opened(srv.port, "vm").expect("the idle VM");
    // 300 connections that never say a word.
    let mut idle = Vec::new();
    for _ in 0..300 {
        match std::net::TcpStream::connect(("127.0.0.1", srv.port)) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect refused by the kernel: {e}"),
        }
    }
    thread::sleep(Duration::from_millis(500));
    let fds = open_fds(pid);
    assert!(fds < 256, "{fds} descriptors open");
    // Once the handshake limit has passed, they are closed, and a new
    // client is served.
    thread::sleep(Duration::from_secs(3));
    let mut c = client("qemu-img");
    c.args(["info", "--output=json", &srv.uri("vm")]);
    assert!(ok(c).contains("\"virtual-size\": 16777216"));
    let after = open_fds(pid);
    assert!(after < 40, "{after} descriptors still open");
    // The idle VM reads as if nothing happened.
    assert!(read(&mut idle_vm, 7, 4096, 4096).unwrap() == img[4096..8192]);
    drop(idle);
    let (_, log) = srv.stop();
    assert!(log.contains("no handshake within 2 s"), "{log}");
    assert!(
        log.contains("connections already (--max-connections)"),
        "{log}"
    );
}

#[test]
fn allow_closes_other_clients_before_reading_a_byte() {
    let h = server();
    let (img, _dir) = served(&h);
    let srv = serve(
        &h,
        &["vm", "--allow", "10.0.0.0/8", "--allow", "192.168.0.0/16"],
    );
    let mut c = client("nbdinfo");
    c.arg(srv.uri("vm"));
    assert!(
        !output(c).status.success(),
        "a client outside --allow was served"
    );
    let (_, log) = srv.stop();
    assert!(log.contains("refused: not in --allow"), "{log}");
    let srv = serve(&h, &["vm", "--allow", "127.0.0.0/8"]);
    let mut s = opened(srv.port, "vm").expect("an allowed client");
    assert!(read(&mut s, 1, 0, 4096).unwrap() == img[..4096]);
    let mut c = bare_tool();
    c.args(["serve", "vm", "--allow", "10.0.0.0/33"]);
    let r = run(c);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("bad --allow '10.0.0.0/33'"), "{r:?}");
}

#[test]
fn the_pid_file_is_written_while_serving_and_removed_after() {
    if under_wasmtime() {
        // The component has no process id: refused with one line.
        let h = server();
        let mut c = tool(&h);
        c.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--pid-file",
            "/tmp/never.pid",
        ]);
        let r = run(c);
        assert!(r.stderr.contains("--pid-file"), "{r:?}");
        return;
    }
    let h = server();
    let (_, dir) = served(&h);
    let pid_file = s(&dir.path("serve.pid"));
    let srv = serve(&h, &["vm", "--pid-file", &pid_file]);
    let written = std::fs::read_to_string(&pid_file).expect("the pid file");
    assert_eq!(written.trim(), srv.child.id().to_string());
    let (code, log) = srv.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        std::fs::metadata(&pid_file).is_err(),
        "the pid file is left"
    );
}

#[test]
fn sockets_handed_over_by_systemd_socket_activate_are_served() {
    if under_wasmtime() {
        return;
    }
    let h = server();
    let (img, _dir) = served(&h);
    let port = dead_port();
    // systemd-socket-activate makes the socket and execs the tool with it
    // on the first connection (LISTEN_FDS=1, LISTEN_PID its own).
    let mut c = Command::new("systemd-socket-activate");
    c.args(["-l", &format!("127.0.0.1:{port}")])
        .arg(env!("CARGO_BIN_EXE_sheep-tool"))
        .args(["-a", &addr(&h), "serve", "vm"]);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("systemd-socket-activate");
    // It listens at once; the tool starts with the first client.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match opened(port, "vm") {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("no server on the activated socket: {e}"),
        }
    };
    assert!(read(&mut s, 1, 0, 4096).unwrap() == img[..4096]);
    let mut c = client("nbdinfo");
    c.arg(format!("nbd://127.0.0.1:{port}/vm"));
    assert!(ok(c).contains("export-size: 16777216"));
    let _ = child.kill();
    let _ = child.wait();
}
