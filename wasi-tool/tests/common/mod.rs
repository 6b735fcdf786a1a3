//! Helpers for the sheep-tool integration tests: a reference server per
//! test, running the tool binary, temporary files, test data and looking
//! inside the cluster.

#![allow(dead_code)]

pub mod certs;
pub mod nbd;
pub mod raw_nbd;

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sheepdog_core::inode::InodeHeader;
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_tests::server::{spawn_loopback, Cluster, ClusterConfig, NetOptions, ServerHandle};

/// 1 MiB.
pub const MIB: usize = 1 << 20;
/// The default object size (4 MiB).
pub const OBJ: usize = 4 << 20;

/// A reference server with the default configuration, answering pipelined
/// requests out of order.
pub fn server() -> ServerHandle {
    server_with(ClusterConfig::default())
}

/// A reference server with `config`.
pub fn server_with(config: ClusterConfig) -> ServerHandle {
    spawn_loopback(Cluster::new(config), NetOptions::reordering()).expect("start server")
}

/// `HOST:PORT` of a server.
pub fn addr(h: &ServerHandle) -> String {
    h.addr.to_string()
}

/// A loopback port nobody listens on (bound, then released).
pub fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("local addr").port();
    drop(l);
    port
}

/// The tool, without any address: the native binary, or with
/// SHEEP_TOOL_UNDER_WASMTIME=1 the WASI component (SHEEP_TOOL_WASM) under
/// wasmtime with the network, the whole file system and SHEEPDOG_ADDRESS
/// granted, so that every test runs both ways (scripts/check does both).
pub fn bare_tool() -> Command {
    let mut c = match std::env::var_os("SHEEP_TOOL_UNDER_WASMTIME") {
        Some(_) => {
            let wasm = std::env::var_os("SHEEP_TOOL_WASM")
                .expect("SHEEP_TOOL_WASM names the component to test");
            let mut c = Command::new("wasmtime");
            c.args([
                "run",
                "-S",
                "inherit-network",
                "--dir",
                "/::/",
                "--env",
                "SHEEPDOG_ADDRESS",
            ]);
            c.arg(wasm);
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_sheep-tool")),
    };
    c.env_remove("SHEEPDOG_ADDRESS");
    c.stdin(Stdio::null());
    c
}

/// The tool pointed at `h`.
pub fn tool(h: &ServerHandle) -> Command {
    let mut c = bare_tool();
    c.arg("-a").arg(addr(h));
    c
}

/// What a run of the tool did.
pub struct Run {
    /// Exit status.
    pub code: Option<i32>,
    /// Standard output, raw.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: String,
    /// The command line, for messages.
    pub cmdline: String,
}

impl Run {
    /// Standard output as text.
    pub fn out(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let out = String::from_utf8_lossy(&self.stdout);
        let out: String = out.chars().take(2000).collect();
        write!(
            f,
            "`{}` exited {:?}\n--- stdout ---\n{out}\n--- stderr ---\n{}",
            self.cmdline, self.code, self.stderr
        )
    }
}

fn describe(c: &Command) -> String {
    let mut s = String::from("sheep-tool");
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn finish(cmdline: String, o: Output) -> Run {
    Run {
        code: o.status.code(),
        stdout: o.stdout,
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        cmdline,
    }
}

/// Run a command to its end.
pub fn run(mut c: Command) -> Run {
    let cmdline = describe(&c);
    let o = c.output().expect("run sheep-tool");
    finish(cmdline, o)
}

/// Run a command with `input` on its standard input.
pub fn run_with_stdin(mut c: Command, input: &[u8]) -> Run {
    let cmdline = describe(&c);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn sheep-tool");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // Feed stdin from another thread: the tool may stop reading early.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let o = child.wait_with_output().expect("wait sheep-tool");
    let _ = feeder.join();
    finish(cmdline, o)
}

/// `tool(h)` with `args`, run.
pub fn sheep(h: &ServerHandle, args: &[&str]) -> Run {
    let mut c = tool(h);
    c.args(args);
    run(c)
}

/// Run `args` and require success.
pub fn sheep_ok(h: &ServerHandle, args: &[&str]) -> Run {
    let r = sheep(h, args);
    assert_ok(&r);
    r
}

/// Require a zero exit status.
pub fn assert_ok(r: &Run) {
    assert_eq!(r.code, Some(0), "expected success: {r:?}");
}

/// Require a failure whose standard error is one line, `error: ...`,
/// containing every one of `needles`; nothing on standard output.
pub fn assert_error(r: &Run, needles: &[&str]) {
    assert!(
        r.code.is_some_and(|c| c != 0),
        "expected a non-zero exit: {r:?}"
    );
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr: {r:?}");
    assert!(
        lines[0].starts_with("error: "),
        "stderr must start with 'error: ': {r:?}"
    );
    for n in needles {
        assert!(lines[0].contains(n), "stderr should mention {n:?}: {r:?}");
    }
    assert!(r.stdout.is_empty(), "expected nothing on stdout: {r:?}");
}

/// A temporary directory, removed on drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A new empty directory.
    pub fn new() -> TempDir {
        TempDir(tempfile::tempdir().expect("create temp dir"))
    }

    /// A path inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// Write `data` to `name` and return its path as a string.
    pub fn file(&self, name: &str, data: &[u8]) -> String {
        let p = self.path(name);
        fs::write(&p, data).expect("write test file");
        s(&p)
    }
}

/// A path as a `&str` argument.
pub fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

/// Random data (at least 2 objects and 1 MiB long) with an all-zero
/// object, a zero stretch inside the third object and a zero tail.
pub fn mixed_image(len: usize) -> Vec<u8> {
    let mut d = random(7, len);
    d[OBJ..2 * OBJ].fill(0);
    d[2 * OBJ + 1000..2 * OBJ + MIB].fill(0);
    let tail = len.saturating_sub(100_000);
    d[tail..].fill(0);
    d
}

/// `len` pseudo-random bytes (xorshift64*), never a run of 16 zeros.
pub fn random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D) | 0x0101_0101_0101_0101;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Whether every byte is zero.
pub fn all_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// The working VID of `name`.
pub fn vid(h: &ServerHandle, name: &str) -> u32 {
    h.cluster()
        .lookup(name, "", 0)
        .unwrap_or_else(|e| panic!("lookup {name}: {e:?}"))
}

/// Whether `name` (working VDI) exists.
pub fn exists(h: &ServerHandle, name: &str) -> bool {
    h.cluster().lookup(name, "", 0).is_ok()
}

/// Data object `idx` of `vid`.
pub fn data_oid(vid: u32, idx: u32) -> Oid {
    Oid::data(Vid::new(vid).expect("vid in range"), idx)
}

/// Index entry `idx` of `vid`'s inode (0 = unallocated).
pub fn entry(h: &ServerHandle, vid: u32, idx: u32) -> u32 {
    h.cluster().index_entry(vid, idx).expect("inode exists")
}

/// The inode header of `vid`.
pub fn header(h: &ServerHandle, vid: u32) -> InodeHeader {
    h.cluster()
        .inode_header(vid)
        .unwrap_or_else(|| panic!("no inode for {vid:x}"))
}

/// The size of `vid` as its inode says.
pub fn vdi_size(h: &ServerHandle, vid: u32) -> u64 {
    h.cluster()
        .inode_header(vid)
        .expect("inode exists")
        .vdi_size
}

/// Export `vdi` to stdout and return the bytes.
pub fn export_bytes(h: &ServerHandle, vdi: &str) -> Vec<u8> {
    let r = sheep(h, &["export", vdi, "-"]);
    assert_ok(&r);
    r.stdout
}

/// Export `vdi` to a file in `dir` and return its bytes.
pub fn export_file(h: &ServerHandle, dir: &TempDir, vdi: &str) -> Vec<u8> {
    let p = dir.path("export.img");
    let r = sheep(h, &["export", vdi, &s(&p)]);
    assert_ok(&r);
    fs::read(&p).expect("read export")
}

/// Import `data` (written to a file in `dir`) into `vdi`.
pub fn import(h: &ServerHandle, dir: &TempDir, vdi: &str, data: &[u8]) -> Run {
    let f = dir.file("import.img", data);
    sheep_ok(h, &["import", &f, vdi])
}

/// `data` padded with zeros to `len`.
pub fn padded(data: &[u8], len: usize) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(len, 0);
    v
}
