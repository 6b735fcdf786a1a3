//! Running `sheep-tool serve` and the real NBD clients in tests.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sheepdog_tests::server::ServerHandle;

use super::tool;

pub fn under_wasmtime() -> bool {
    std::env::var_os("SHEEP_TOOL_UNDER_WASMTIME").is_some()
}

/// A running `sheep-tool serve`.
pub struct Serve {
    pub child: Child,
    /// `nbd://127.0.0.1:PORT`
    pub base: String,
    pub port: u16,
    stderr: Option<thread::JoinHandle<String>>,
}

/// Start `serve ARGS --listen 127.0.0.1:0` against `h` and wait for it to
/// print its first URI.
pub fn serve(h: &ServerHandle, args: &[&str]) -> Serve {
    serve_with(tool(h), args)
}

/// Start `serve ARGS --listen 127.0.0.1:0` with the tool command `c` (its
/// address given) and wait for it to print its first URI.
pub fn serve_with(mut c: Command, args: &[&str]) -> Serve {
    c.arg("serve").args(args).args(["--listen", "127.0.0.1:0"]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn sheep-tool serve");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read the URI line");
    let err = child.stderr.take().expect("stderr");
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(err).read_to_string(&mut s);
        s
    });
    // Keep reading stdout so that the server never blocks on it.
    thread::spawn(move || {
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
    });
    let uri = line.split_whitespace().next().unwrap_or("").to_owned();
    assert!(uri.starts_with("nbd://127.0.0.1:"), "first line: {line:?}");
    let base = uri[..uri[6..].find('/').expect("a path") + 6].to_owned();
    let port = base.rsplit(':').next().unwrap().parse().expect("a port");
    Serve {
        child,
        base,
        port,
        stderr: Some(stderr),
    }
}

impl Serve {
    pub fn uri(&self, export: &str) -> String {
        format!("{}/{export}", self.base)
    }

    /// SIGTERM, then its exit status and what it logged.
    pub fn stop(mut self) -> (Option<i32>, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            thread::sleep(Duration::from_millis(20));
        };
        let log = self
            .stderr
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        (status.code(), log)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real NBD client, under `timeout` so that a hang fails the test.
pub fn client(program: &str) -> Command {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} is not installed: scripts/setup installs qemu-utils and libnbd-bin"
    );
    let mut c = Command::new("timeout");
    c.args(["120", program]);
    c
}

pub fn output(mut c: Command) -> Output {
    c.stdin(Stdio::null());
    c.output().expect("run client")
}

pub fn ok(c: Command) -> String {
    let what = format!("{c:?}");
    let o = output(c);
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
