//! A connection that drops in the middle of a transfer: the tool connects
//! again, the engine resends what was in flight, and the data arrives whole.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sheepdog_core::oid::{Oid, Vid};

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
