//! sheep-tool's failures: each exits non-zero with one line on stderr,
//! `error: ...`, naming the problem, and leaves the cluster as it was.
//! Also `--lock`: the lock is taken, and released at the end and on error.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::*;
use sheepdog_core::address::encode_name_tag;
use sheepdog_core::wire::{
    LockType, Opcode, Request, Response, ResultCode, HEADER_LEN, NAME_TAG_LEN,
};
use sheepdog_tests::server::{ClusterConfig, FaultAction, LockState, Matcher, ServerHandle};

fn sheep_err(h: &ServerHandle, args: &[&str], needles: &[&str]) -> Run {
    let r = sheep(h, args);
    assert_error(&r, needles);
    r
}

#[test]
fn error_no_such_vdi() {
    let h = server();
    let dir = TempDir::new();
    let out = s(&dir.path("out.img"));
    for args in [
        &["export", "nope", "-"][..],
        &["export", "nope", &out],
        &["info", "nope"],
        &["info", "nope", "--json"],
        &["delete", "nope"],
        &["resize", "nope", "8M"],
        &["snapshot", "create", "nope"],
        &["snapshot", "list", "nope"],
    ] {
        sheep_err(&h, args, &["no such VDI", "nope"]);
    }
    assert!(
        !dir.path("out.img").exists(),
        "no output file for a missing VDI"
    );
    assert!(h.cluster().vdi_states().is_empty(), "nothing was created");
}

#[test]
fn error_no_such_snapshot() {
    let h = server();
    sheep_ok(&h, &["create", "v", "8M"]);
    sheep_ok(&h, &["snapshot", "create", "v", "--tag", "real"]);
    for (args, what) in [
        (&["export", "v@missing", "-"][..], "v@missing"),
        (&["info", "v@missing"], "v@missing"),
        (&["clone", "v@missing", "c"], "v@missing"),
        (&["snapshot", "delete", "v@missing"], "v@missing"),
        (&["snapshot", "rollback", "v@missing"], "v@missing"),
        (&["delete", "v@missing"], "v@missing"),
        (&["export", "v@7", "-"], "v@7"),
    ] {
        sheep_err(&h, args, &[&format!("no such snapshot: {what}")]);
    }
    assert!(!exists(&h, "c"));
    assert!(h.cluster().lookup("v", "real", 0).is_ok());
}

#[test]
fn error_vdi_exists() {
    let h = server();
    sheep_ok(&h, &["create", "v", "8M"]);
    let v = vid(&h, "v");
    sheep_err(&h, &["create", "v", "16M"], &["VDI exists: v"]);
    assert_eq!(vdi_size(&h, v), 8 << 20, "the VDI is unchanged");

    sheep_ok(&h, &["snapshot", "create", "v", "--tag", "t"]);
    sheep_ok(&h, &["create", "taken", "4M"]);
    sheep_err(&h, &["clone", "v@t", "taken"], &["VDI exists", "taken"]);
}

#[test]
fn error_snapshot_tag_exists() {
    let h = server();
    sheep_ok(&h, &["create", "v", "8M"]);
    sheep_ok(&h, &["snapshot", "create", "v", "--tag", "t"]);
    sheep_err(
        &h,
        &["snapshot", "create", "v", "--tag", "t"],
        &["snapshot exists", "v@t"],
    );
    sheep_err(
        &h,
        &["snapshot", "create", "v", "--tag", "123"],
        &["bad tag '123'"],
    );
}

/// Take the lock of `name` as another client would: LOCK_VDI on a raw
/// connection, name and empty tag as the 512-byte payload.
fn lock_from_elsewhere(h: &ServerHandle, name: &str) {
    let mut conn = TcpStream::connect(h.addr).expect("connect");
    let mut payload = [0u8; NAME_TAG_LEN];
    encode_name_tag(name.as_bytes(), b"", &mut payload);
    conn.write_all(&Request::lock_vdi(1, 0, LockType::Normal).to_bytes())
        .unwrap();
    conn.write_all(&payload).unwrap();
    let mut rsp = [0u8; HEADER_LEN];
    conn.read_exact(&mut rsp).unwrap();
    let rsp = Response::parse_bytes(&rsp).unwrap();
    assert_eq!(rsp.result, ResultCode::Success);
}

fn lock_state(h: &ServerHandle, name: &str) -> LockState {
    let v = vid(h, name);
    h.cluster().vdi_state(v).expect("state").lock
}

#[test]
fn error_vdi_locked() {
    let h = server_with(ClusterConfig::default().with_locking(true));
    let dir = TempDir::new();
    let data = random(1, 2 * MIB);
    import(&h, &dir, "v", &data);
    lock_from_elsewhere(&h, "v");
    assert_eq!(lock_state(&h, "v"), LockState::Locked);

    sheep_err(&h, &["export", "v", "-", "--lock"], &["VDI is locked: v"]);
    let f = dir.file("other.img", &random(2, MIB));
    sheep_err(&h, &["import", &f, "v", "--lock"], &["VDI is locked: v"]);
    // Nothing was written.
    assert!(export_bytes(&h, "v") == data);
    // The other client's lock is still there.
    assert_eq!(lock_state(&h, "v"), LockState::Locked);
}

/// Count LOCK_VDI and RELEASE_VDI requests the server sees.
fn count_locks(h: &ServerHandle) -> (Arc<AtomicU32>, Arc<AtomicU32>) {
    let locks = Arc::new(AtomicU32::new(0));
    let releases = Arc::new(AtomicU32::new(0));
    let (l, r) = (Arc::clone(&locks), Arc::clone(&releases));
    h.cluster().inject(
        Matcher::custom(move |req| {
            match req.opcode {
                Opcode::LockVdi => l.fetch_add(1, Ordering::SeqCst),
                Opcode::ReleaseVdi => r.fetch_add(1, Ordering::SeqCst),
                _ => 0,
            };
            false
        }),
        FaultAction::Fail(ResultCode::SystemError),
        u32::MAX,
    );
    (locks, releases)
}

#[test]
fn lock_is_taken_and_released_by_import_and_export() {
    let h = server_with(ClusterConfig::default().with_locking(true));
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "v", "3M"]);
    let (locks, releases) = count_locks(&h);
    let data = random(3, 3 * MIB);
    let f = dir.file("in.img", &data);
    sheep_ok(&h, &["import", &f, "v", "--lock"]);
    assert_eq!(locks.load(Ordering::SeqCst), 1);
    assert_eq!(releases.load(Ordering::SeqCst), 1);
    assert_eq!(lock_state(&h, "v"), LockState::Unlocked);

    let r = sheep_ok(&h, &["export", "v", "-", "--lock"]);
    assert!(r.stdout == data);
    assert_eq!(locks.load(Ordering::SeqCst), 2);
    assert_eq!(releases.load(Ordering::SeqCst), 2);
    assert_eq!(lock_state(&h, "v"), LockState::Unlocked);

    // Without --lock, no lock is taken.
    sheep_ok(&h, &["export", "v", "-"]);
    assert_eq!(locks.load(Ordering::SeqCst), 2);
}

#[test]
fn lock_is_released_when_import_fails() {
    let h = server_with(ClusterConfig::default().with_locking(true));
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "v", "8M"]);
    h.cluster().inject(
        Matcher::opcode(Opcode::CreateAndWriteObj),
        FaultAction::Fail(ResultCode::NoSpace),
        1000,
    );
    let data = random(4, 6 * MIB);
    let f = dir.file("in.img", &data);
    sheep_err(&h, &["import", &f, "v", "--lock"], &["no space"]);
    assert_eq!(lock_state(&h, "v"), LockState::Unlocked);

    // VDI too small: also an error after the lock was taken.
    let big = dir.file("big.img", &random(5, 9 * MIB));
    sheep_err(&h, &["import", &big, "v", "--lock"], &["VDI too small"]);
    assert_eq!(lock_state(&h, "v"), LockState::Unlocked);

    h.cluster().clear_faults();
    sheep_ok(&h, &["import", &f, "v", "--lock"]);
    assert_eq!(lock_state(&h, "v"), LockState::Unlocked);
    assert!(export_bytes(&h, "v") == padded(&data, 8 * MIB));
}

#[test]
fn error_no_space() {
    let h = server();
    let dir = TempDir::new();
    h.cluster().inject(
        Matcher::opcode(Opcode::CreateAndWriteObj),
        FaultAction::Fail(ResultCode::NoSpace),
        1000,
    );
    let f = dir.file("in.img", &random(6, 5 * MIB));
    sheep_err(&h, &["import", &f, "v"], &["no space left", "v"]);
    let v = vid(&h, "v");
    assert_eq!(entry(&h, v, 0), 0);
    assert_eq!(entry(&h, v, 1), 0);
    sheep_err(
        &h,
        &["create", "pre", "8M", "--prealloc"],
        &["no space left"],
    );
}

#[test]
fn error_too_large_for_object_size() {
    let h = server();
    // 4 MiB objects and a 2^20-entry index: at most 4 TiB.
    sheep_err(
        &h,
        &["create", "huge", "5T"],
        &["huge", "too large for its object size"],
    );
    assert!(!exists(&h, "huge"));
    sheep_err(
        &h,
        &["create", "huge", "2T", "--object-size", "1M"],
        &["too large"],
    );
    assert!(!exists(&h, "huge"));
    // Bigger objects allow it.
    sheep_ok(&h, &["create", "huge", "5T", "--object-size", "8M"]);
    sheep_ok(&h, &["create", "v", "8M"]);
    sheep_err(&h, &["resize", "v", "5T"], &["v", "too large"]);
    assert_eq!(vdi_size(&h, vid(&h, "v")), 8 << 20);
}

#[test]
fn error_bad_size() {
    let h = server();
    let dir = TempDir::new();
    sheep_err(&h, &["create", "v", "12Q"], &["bad size '12Q'"]);
    sheep_err(&h, &["create", "v", "1.5G"], &["bad size '1.5G'"]);
    let f = dir.file("in.img", &random(7, MIB));
    sheep_err(
        &h,
        &["import", &f, "v", "--size", "12Q"],
        &["bad size '12Q'"],
    );
    assert!(!exists(&h, "v"));
    sheep_ok(&h, &["create", "v", "8M"]);
    sheep_err(&h, &["resize", "v", "12Q"], &["bad size '12Q'"]);
    sheep_err(&h, &["create", "w", "0"], &["w"]);
    assert!(!exists(&h, "w"));
}

#[test]
fn error_bad_options() {
    let h = server();
    sheep_err(
        &h,
        &["create", "v", "8M", "--copies", "3:1"],
        &["bad --copies '3:1'"],
    );
    sheep_err(
        &h,
        &["create", "v", "8M", "--copies", "x"],
        &["bad --copies 'x'"],
    );
    sheep_err(
        &h,
        &["create", "v", "8M", "--copies", "0"],
        &["bad --copies '0'"],
    );
    sheep_err(
        &h,
        &["create", "v", "8M", "--object-size", "3M"],
        &["bad --object-size '3M'"],
    );
    assert!(!exists(&h, "v"));
    sheep_ok(&h, &["create", "v", "8M"]);
    sheep_err(
        &h,
        &["export", "v", "-", "--queue-depth", "0"],
        &["bad --queue-depth 0"],
    );
    // A server that would spin a tenth of a second per wait is refused
    // before it listens.
    sheep_err(
        &h,
        &["serve", "v", "--poll-max-us", "100001"],
        &["bad --poll-max-us 100001", "at most 100000"],
    );
}

#[test]
fn error_bad_name() {
    let h = server();
    sheep_err(&h, &["create", "", "8M"], &["bad VDI ''", "empty"]);
    let long = "n".repeat(256);
    sheep_err(&h, &["create", &long, "8M"], &["bad VDI", "256 bytes"]);
    let dir = TempDir::new();
    let f = dir.file("in.img", &random(8, MIB));
    sheep_err(&h, &["import", &f, ""], &["bad VDI ''"]);
    sheep_err(&h, &["export", &long, "-"], &["bad VDI"]);
    assert!(h.cluster().vdi_states().is_empty());
    // 255 bytes is fine.
    sheep_ok(&h, &["create", &"n".repeat(255), "8M"]);
}

#[test]
fn error_snapshot_where_a_vdi_is_needed_and_back() {
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "v", "8M"]);
    sheep_ok(&h, &["snapshot", "create", "v", "--tag", "t"]);
    let f = dir.file("in.img", &random(9, MIB));
    sheep_err(&h, &["import", &f, "v@t"], &["'v@t' names a snapshot"]);
    sheep_err(&h, &["resize", "v@t", "16M"], &["names a snapshot"]);
    sheep_err(&h, &["clone", "v", "c"], &["'v' names no snapshot"]);
    sheep_err(&h, &["snapshot", "rollback", "v"], &["names no snapshot"]);
    sheep_err(&h, &["snapshot", "delete", "v"], &["names no snapshot"]);
    assert!(exists(&h, "v"));
}

#[test]
fn error_connection_refused() {
    let port = dead_port();
    let at = format!("127.0.0.1:{port}");
    let dir = TempDir::new();
    let f = dir.file("in.img", &random(10, MIB));
    for args in [
        &["list"][..],
        &["create", "v", "8M"],
        &["import", &f, "v"],
        &["export", "v", "-"],
        &["info", "v"],
    ] {
        let mut c = bare_tool();
        c.arg("-a").arg(&at).args(args);
        let r = run(c);
        assert_error(
            &r,
            &[&format!("cannot connect to {at}: connection refused")],
        );
    }
    // The address in a URI is the one named.
    let mut c = bare_tool();
    c.args(["info", &format!("sheepdog://127.0.0.1:{port}/v")]);
    assert_error(&run(c), &[&at, "connection refused"]);
}

#[test]
fn error_file_not_found_creates_no_vdi() {
    let h = server();
    let dir = TempDir::new();
    let missing = s(&dir.path("missing.img"));
    sheep_err(
        &h,
        &["import", &missing, "v"],
        &[&format!("file not found: {missing}")],
    );
    sheep_err(
        &h,
        &["import", &missing, "v", "--size", "8M"],
        &["file not found"],
    );
    assert!(!exists(&h, "v"));
    assert!(h.cluster().vdi_states().is_empty());
}

#[test]
fn error_unreadable_input_creates_no_vdi() {
    let h = server();
    let dir = TempDir::new();
    let d = s(&dir.path(""));
    let d = d.trim_end_matches('/');
    sheep_err(&h, &["import", d, "v"], &["cannot read", "directory"]);
    assert!(!exists(&h, "v"));
}

#[test]
fn error_vdi_too_small_for_the_file() {
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "small", "4M"]);
    let f = dir.file("big.img", &random(11, 5 * MIB));
    sheep_err(
        &h,
        &["import", &f, "small"],
        &["VDI too small for the file", "small"],
    );
    let v = vid(&h, "small");
    assert_eq!(entry(&h, v, 0), 0, "nothing was written");
    assert_eq!(vdi_size(&h, v), 4 << 20);
}

#[test]

fn error_import_size_smaller_than_file_creates_no_vdi() {
    let h = server();
    let dir = TempDir::new();
    let f = dir.file("big.img", &random(15, 2 * MIB));
    sheep_err(
        &h,
        &["import", &f, "v", "--size", "1M"],
        &["VDI too small for the file", "v"],
    );
    assert!(!exists(&h, "v"), "no VDI is left behind");
}

#[test]
fn error_stdin_larger_than_the_vdi() {
    let h = server();
    sheep_ok(&h, &["create", "small", "4M"]);
    let mut c = tool(&h);
    c.args(["import", "-", "small"]);
    let r = run_with_stdin(c, &random(12, 5 * MIB));
    assert_error(&r, &["VDI too small for the input", "small"]);
}

#[test]
fn error_import_from_stdin_without_size_needs_the_vdi() {
    let h = server();
    let mut c = tool(&h);
    c.args(["import", "-", "piped"]);
    let r = run_with_stdin(c, &random(13, MIB));
    assert_error(&r, &["piped", "needs --size"]);
    assert!(!exists(&h, "piped"));
}

#[test]
fn error_resize_refuses_to_shrink() {
    let h = server();
    let dir = TempDir::new();
    let data = random(14, 6 * MIB);
    import(&h, &dir, "v", &data);
    sheep_err(&h, &["resize", "v", "4M"], &["v", "cannot shrink"]);
    assert_eq!(vdi_size(&h, vid(&h, "v")), 6 << 20);
    assert!(export_bytes(&h, "v") == data);
}

#[test]
fn error_empty_input_creates_no_vdi() {
    let h = server();
    let dir = TempDir::new();
    let f = dir.file("empty.img", &[]);
    sheep_err(&h, &["import", &f, "v"], &["v", "empty"]);
    assert!(!exists(&h, "v"));
}

#[test]
fn error_bad_reply_names_the_request_and_the_lengths() {
    // A server that answers a 4 MiB read with 4096 bytes every time: the
    // export fails with one line naming the request, the object and both
    // lengths; it never writes a hole where the data should be and calls
    // it done.
    let h = server();
    let dir = TempDir::new();
    let data = random(8, 8 * MIB);
    import(&h, &dir, "v", &data);
    let v = vid(&h, "v");
    // Once: the node counts as broken, the read is sent again on a new
    // connection, and the export is whole.
    h.cluster().inject(
        Matcher::object(data_oid(v, 1)).with_opcode(Opcode::ReadObj),
        FaultAction::ApplyThenLength(4096),
        1,
    );
    let once = dir.path("once.img");
    let mut c = tool(&h);
    c.args(["-q", "export", "v", &s(&once), "--request-size", "4M"]);
    assert_ok(&run(c));
    assert!(std::fs::read(&once).unwrap() == data, "the export is whole");
    h.cluster().inject(
        Matcher::object(data_oid(v, 1)).with_opcode(Opcode::ReadObj),
        FaultAction::ApplyThenLength(4096),
        1000,
    );
    let out = dir.path("out.img");
    let r = sheep_err(
        &h,
        // Quiet: the reconnect after the bad reply is not reported.
        &["-q", "export", "v", &s(&out), "--request-size", "4M"],
        &[
            "bad reply to READ_OBJ",
            &format!("{}", data_oid(v, 1)),
            "4096 bytes, expected 4194304",
        ],
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        !out.exists(),
        "a failed export leaves no file that looks like a copy"
    );
}

#[test]
fn error_lost_gateway_says_what_happened_and_what_to_do() {
    // Every write is answered by a closed connection: after its reconnects
    // (each reported on stderr unless quiet) the tool gives up with one
    // line that names the node and the job.
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "v", "8M"]);
    h.cluster().inject(
        Matcher::opcode(Opcode::CreateAndWriteObj),
        FaultAction::Disconnect,
        1000,
    );
    let f = dir.file("in.img", &random(3, 8 * MIB));
    let r = sheep_err(
        &h,
        &["-q", "import", &f, "v"],
        &[
            &format!("the node {}", addr(&h)),
            "during import of v",
            "run the same import again",
        ],
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}
