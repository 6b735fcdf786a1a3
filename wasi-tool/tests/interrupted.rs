//! An import killed halfway: every index entry that is set points to an
//! object that exists and holds the file's data (objects are written
//! before index entries), and running the same import again completes it.

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sheepdog_core::wire::{Opcode, ResultCode};
use sheepdog_tests::server::{FaultAction, Matcher};

/// Poll `done` every few milliseconds for at most `limit`.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn interrupted_import_leaves_no_dangling_entries_and_can_be_rerun() {
    const OBJECTS: u32 = 16;

    let h = server();
    let dir = TempDir::new();
    let data = random(99, OBJECTS as usize * OBJ);
    let f = dir.file("big.img", &data);

    // Hold the server at the first data object creation that comes after
    // an index update (the matcher runs with the cluster locked) until the
    // tool is dead. A write completes only once its index entry is written,
    // so with 8 requests in flight the 9th creation comes after one: by
    // then some entries are set, and the held object never gets its own.
    let index_writes = Arc::new(AtomicU32::new(0));
    let held = Arc::new(AtomicBool::new(false));
    let release = Arc::new(AtomicBool::new(false));
    let (w, hd, r) = (
        Arc::clone(&index_writes),
        Arc::clone(&held),
        Arc::clone(&release),
    );
    h.cluster().inject(
        Matcher::custom(move |req| {
            let Some(a) = req.obj() else { return false };
            match req.opcode {
                Opcode::WriteObj if !a.oid.is_data() => {
                    w.fetch_add(1, Ordering::SeqCst);
                }
                Opcode::CreateAndWriteObj if a.oid.is_data() && w.load(Ordering::SeqCst) > 0 => {
                    hd.store(true, Ordering::SeqCst);
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !r.load(Ordering::SeqCst) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                _ => {}
            }
            false
        }),
        FaultAction::Fail(ResultCode::SystemError),
        u32::MAX,
    );

    let mut cmd = tool(&h);
    cmd.args(["import", &f, "big"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn sheep-tool");
    wait_for(
        Duration::from_secs(60),
        "the server to hold a creation",
        || held.load(Ordering::SeqCst),
    );
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the import cannot have finished"
    );
    child.kill().expect("kill");
    child.wait().expect("wait");
    release.store(true, Ordering::SeqCst);
    // Let the server finish whatever it had read of the dead connection.
    wait_for(Duration::from_secs(30), "the connection to close", || {
        h.connection_count() == 0
    });
    h.cluster().clear_faults();

    let v = vid(&h, "big");
    assert_eq!(vdi_size(&h, v), data.len() as u64);
    let mut set = 0;
    let mut existing = 0;
    for idx in 0..OBJECTS {
        let e = entry(&h, v, idx);
        let present = h.cluster().object_exists(data_oid(v, idx));
        existing += u32::from(present);
        if e == 0 {
            continue;
        }
        set += 1;
        assert_eq!(e, v, "index entry {idx}");
        assert!(
            present,
            "index entry {idx} is set but its object is missing"
        );
        let obj = h
            .cluster()
            .read_object(data_oid(v, idx), 0, OBJ)
            .expect("object");
        let at = idx as usize * OBJ;
        assert!(obj == data[at..at + OBJ], "object {idx} holds other data");
    }
    assert!(set > 0, "some index entries were written");
    assert!(
        set < OBJECTS,
        "the import was interrupted ({set} entries set)"
    );
    assert!(existing > set, "the held object exists without its entry");

    // The same import again completes it.
    let r = sheep_ok(&h, &["import", &f, "big"]);
    assert!(r.stderr.contains("imported"), "{r:?}");
    assert_eq!(vid(&h, "big"), v);
    for idx in 0..OBJECTS {
        assert_eq!(entry(&h, v, idx), v, "index entry {idx}");
    }
    assert!(
        export_bytes(&h, "big") == data,
        "the export equals the file"
    );
}
