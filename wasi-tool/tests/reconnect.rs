//! A connection that drops in the middle of a transfer: the tool connects
//! again, the engine resends what was in flight, and the data arrives whole.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::wire::Opcode;
use sheepdog_tests::server::{FaultAction, Matcher};

#[test]
fn import_and_export_survive_a_dropped_connection() {
    let h = server();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk.raw");
    let size = 96 * MIB;
    let data: Vec<u8> = (0..size).map(|i| (i / 4096 * 7 + i) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    assert!(tool(&h)
        .args(["create", "vol", "96M"])
        .status()
        .unwrap()
        .success());
    let vid = h.cluster().lookup("vol", "", 0).unwrap();

    let mut child = tool(&h)
        .args([
            "import",
            file.to_str().unwrap(),
            "vol",
            "--queue-depth",
            "4",
        ])
        .spawn()
        .unwrap();
    // Cut the connection once the import is under way.
    let start = Instant::now();
    loop {
        let written = {
            let c = h.cluster();
            (0..24)
                .filter(|&i| c.object_exists(Oid::data(Vid::new(vid).unwrap(), i)))
                .count()
        };
        if written >= 2 || start.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    h.drop_connections();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "import did not survive the dropped connection"
    );

    let out = dir.path().join("out.raw");
    let export = tool(&h)
        .args(["export", "vol", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert!(
        std::fs::read(&out).unwrap() == data,
        "export differs from the file"
    );
}

#[test]
fn export_survives_a_reply_cut_short_by_a_dropped_connection() {
    // The connection closes half way through a READ_OBJ payload: the read
    // goes out again on a new connection, and the export is whole. (Once,
    // that read was forgotten and the export hung forever.)
    let h = server();
    let dir = TempDir::new();
    let data = random(9, 16 * MIB);
    import(&h, &dir, "v", &data);
    let v = vid(&h, "v");
    h.cluster().inject(
        Matcher::object(data_oid(v, 2)).with_opcode(Opcode::ReadObj),
        FaultAction::ApplyThenCutShort,
        1,
    );
    assert!(export_file(&h, &dir, "v") == data, "export differs");
    assert_eq!(h.cluster().pending_faults(), 0, "the cut happened");
}
