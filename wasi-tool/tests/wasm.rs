//! sheep-tool as a WASI 0.2 component under wasmtime: every command against
//! the reference server, and the messages that name the missing grant.
//!
//! scripts/check builds the component and sets SHEEP_TOOL_WASM and
//! SHEEP_REQUIRE_WASMTIME=1, so there these tests always run. Elsewhere
//! they are skipped (with a note) when the component or wasmtime is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sheepdog_tests::server::{spawn_loopback, Cluster, ClusterConfig, NetOptions, ServerHandle};

fn wasm() -> Option<PathBuf> {
    let required = std::env::var_os("SHEEP_REQUIRE_WASMTIME").is_some();
    let path = std::env::var_os("SHEEP_TOOL_WASM").map(PathBuf::from);
    let found = path.filter(|p| p.exists());
    let wasmtime = Command::new("wasmtime").arg("--version").output().is_ok();
    match (found, wasmtime) {
        (Some(p), true) => Some(p),
        _ if required => panic!(
            "SHEEP_TOOL_WASM must name a built sheep-tool.wasm and wasmtime must be on the PATH"
        ),
        _ => {
            eprintln!(
                "skipped: set SHEEP_TOOL_WASM and install wasmtime (scripts/check does both)"
            );
            None
        }
    }
}

struct Env {
    wasm: PathBuf,
    dir: tempfile::TempDir,
    server: ServerHandle,
}

impl Env {
    fn new() -> Option<Env> {
        let wasm = wasm()?;
        let server = spawn_loopback(
            Cluster::new(ClusterConfig::default()),
            NetOptions::reordering(),
        )
        .expect("reference server");
        Some(Env {
            wasm,
            dir: tempfile::tempdir().expect("temp dir"),
            server,
        })
    }

    fn addr(&self) -> String {
        self.server.addr.to_string()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `wasmtime run [grants] sheep-tool.wasm -a ADDR args...` in the temp dir.
    fn run_with(&self, grants: &[&str], args: &[&str]) -> Output {
        let addr = self.addr();
        Command::new("wasmtime")
            .arg("run")
            .args(grants)
            .arg(&self.wasm)
            .args(["-a", &addr])
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run wasmtime")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(&["-S", "inherit-network", "--dir", "."], args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn err(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        one_line_error(&out)
    }
}

fn one_line_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line of error, got {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr:?}");
    lines[0].to_owned()
}

fn image(path: &Path, size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    let mut x = 0x1234_5678_9abc_def0u64;
    // Random data in the first and third quarter, zeros elsewhere.
    for (i, b) in data.iter_mut().enumerate() {
        if (i / (size / 4)) % 2 == 0 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    std::fs::write(path, &data).expect("write image");
    data
}

#[test]
fn every_command_works_under_wasmtime() {
    let Some(env) = Env::new() else { return };
    let data = image(&env.path("disk.raw"), 20 << 20);

    env.ok(&["create", "made", "12M", "--copies", "2"]);
    env.ok(&["import", "disk.raw", "vol"]);
    env.ok(&["export", "vol", "out.raw"]);
    assert_eq!(std::fs::read(env.path("out.raw")).unwrap(), data);

    env.ok(&["snapshot", "create", "vol", "--tag", "v1"]);
    let snaps = env.ok(&["snapshot", "list", "vol", "--json"]);
    assert!(snaps.contains("\"tag\":\"v1\""), "{snaps}");
    env.ok(&["clone", "vol@v1", "copy"]);
    env.ok(&["export", "copy", "copy.raw"]);
    assert_eq!(std::fs::read(env.path("copy.raw")).unwrap(), data);

    // Overwrite the working VDI, then roll back to the snapshot.
    std::fs::write(env.path("zeros.raw"), vec![0u8; 20 << 20]).unwrap();
    env.ok(&["import", "zeros.raw", "vol"]);
    env.ok(&["export", "vol", "z.raw"]);
    assert!(std::fs::read(env.path("z.raw"))
        .unwrap()
        .iter()
        .all(|&b| b == 0));
    env.ok(&["snapshot", "rollback", "vol@v1"]);
    env.ok(&["export", "vol", "back.raw"]);
    assert_eq!(std::fs::read(env.path("back.raw")).unwrap(), data);

    env.ok(&["resize", "vol", "32M"]);
    let info = env.ok(&["info", "vol", "--json"]);
    assert!(info.contains("\"size\":33554432"), "{info}");
    let list = env.ok(&["list", "--json"]);
    for name in ["\"made\"", "\"vol\"", "\"copy\""] {
        assert!(list.contains(name), "{list}");
    }
    let table = env.ok(&["list"]);
    assert!(
        table.starts_with("  Name        Id    Size    Used  Shared"),
        "{table}"
    );

    env.ok(&["snapshot", "delete", "vol@v1"]);
    env.ok(&["delete", "copy"]);
    let list = env.ok(&["list", "--json"]);
    assert!(!list.contains("\"copy\""), "{list}");
}

#[test]
fn a_lone_double_dash_before_the_command_is_accepted() {
    let Some(env) = Env::new() else { return };
    let addr = env.addr();
    let out = Command::new("wasmtime")
        .args(["run", "-S", "inherit-network"])
        .arg(&env.wasm)
        .args(["--", "-a", &addr, "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn missing_grants_name_the_flag_that_grants_them() {
    let Some(env) = Env::new() else { return };
    image(&env.path("disk.raw"), 1 << 20);
    let out = env.run_with(&["--dir", "."], &["list"]);
    let line = one_line_error(&out);
    assert!(line.contains("-S inherit-network"), "{line}");
    let out = env.run_with(&["-S", "inherit-network"], &["import", "disk.raw", "v"]);
    let line = one_line_error(&out);
    assert!(line.contains("--dir"), "{line}");
    // No VDI was created when the file could not be read.
    assert!(env.server.cluster().lookup("v", "", 0).is_err());
}

#[test]
fn errors_are_one_line_under_wasmtime() {
    let Some(env) = Env::new() else { return };
    assert!(env
        .err(&["export", "nosuch", "x.raw"])
        .contains("no such VDI: nosuch"));
    assert!(env.err(&["create", "big", "5T"]).contains("too large"));
    assert!(env.err(&["create", "x", "12Q"]).contains("bad size"));
    let out = Command::new("wasmtime")
        .args(["run", "-S", "inherit-network"])
        .arg(&env.wasm)
        .args(["-a", "127.0.0.1:1", "list"])
        .output()
        .unwrap();
    assert!(one_line_error(&out).contains("connection refused"));
}
