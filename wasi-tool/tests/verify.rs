//! `import --verify` and `export --verify`: every object read again and its
//! CRC32 compared with what was sent or written out. The server is made to
//! lie once, as a failing disk or a buggy gateway would: a write answered
//! SUCCESS and never applied, a read answered SUCCESS with zeros. Without
//! `--verify` the lie goes unseen; with it, the command fails naming the
//! object.

mod common;

use common::*;
use sheepdog_core::wire::{Opcode, ResultCode};
use sheepdog_tests::server::{FaultAction, Matcher, ServerHandle};

/// The next `op` on object `idx` of `vdi` is answered SUCCESS and not done
/// (a read gets zeros).
fn lie_once(h: &ServerHandle, vdi: &str, op: Opcode, idx: u32) {
    let oid = data_oid(vid(h, vdi), idx);
    h.cluster().inject(
        Matcher::custom(move |req| {
            req.opcode == op && req.obj().is_some_and(|a| a.oid == oid && a.offset == 0)
        }),
        FaultAction::Fail(ResultCode::Success),
        1,
    );
}

#[test]
fn verified_copies_say_so() {
    let h = server();
    let dir = TempDir::new();
    // Data, an all-zero object and a short last object.
    let mut a = random(1, 3 * OBJ + MIB);
    a[OBJ..2 * OBJ].fill(0);
    let f = dir.file("a.raw", &a);
    let r = sheep_ok(&h, &["import", "--verify", &f, "vm"]);
    assert!(
        r.stderr
            .contains("verified 4 objects (13631488 bytes) of vm"),
        "{r:?}"
    );
    let out = dir.path("out.raw");
    let r = sheep_ok(&h, &["export", "--verify", "vm", &s(&out)]);
    assert!(r.stderr.contains("verified 4 objects"), "{r:?}");
    assert!(std::fs::read(&out).unwrap() == padded(&a, 13631488));
    let r = sheep_ok(&h, &["export", "--verify", "vm", "-"]);
    assert!(r.stdout == padded(&a, 13631488));
}

#[test]
fn import_verify_finds_a_write_the_cluster_dropped() {
    let h = server();
    let dir = TempDir::new();
    import(&h, &dir, "vm", &random(2, 4 * OBJ));
    let b = random(3, 4 * OBJ);
    let f = dir.file("b.raw", &b);

    // Unverified, the dropped write goes unseen.
    lie_once(&h, "vm", Opcode::WriteObj, 2);
    sheep_ok(&h, &["import", &f, "vm"]);
    assert!(export_bytes(&h, "vm") != b, "the write was dropped");

    lie_once(&h, "vm", Opcode::WriteObj, 2);
    let r = sheep(&h, &["import", "--verify", &f, "vm"]);
    assert_error(
        &r,
        &[
            "verify failed: object 2 of vm",
            &format!("bytes {}..{}", 2 * OBJ, 3 * OBJ),
            "what was sent",
        ],
    );
    // Imported again, it verifies.
    sheep_ok(&h, &["import", "--verify", &f, "vm"]);
    assert!(export_bytes(&h, "vm") == b);
}

#[test]
fn export_verify_finds_a_read_that_lied() {
    let h = server();
    let dir = TempDir::new();
    let a = random(4, 4 * OBJ);
    import(&h, &dir, "vm", &a);
    for target in ["file", "-"] {
        lie_once(&h, "vm", Opcode::ReadObj, 1);
        let out = dir.path("out.raw");
        let file = if target == "-" {
            "-".to_owned()
        } else {
            s(&out)
        };
        let r = sheep(&h, &["export", "--verify", "vm", &file]);
        if target == "-" {
            // The stream went out; the status and the last line say it
            // is not to be trusted.
            assert_ne!(r.code, Some(0), "{r:?}");
            assert!(r.stderr.contains("verify failed: object 1 of vm"), "{r:?}");
        } else {
            assert_error(
                &r,
                &["verify failed: object 1 of vm", "what was written out"],
            );
        }
        assert!(!out.exists(), "a copy that failed its check is removed");
    }
    // Unverified, the zeros go out as data.
    lie_once(&h, "vm", Opcode::ReadObj, 1);
    let got = sheep_ok(&h, &["export", "vm", "-"]).stdout;
    assert!(all_zero(&got[OBJ..OBJ + 4096]) && got != a);
}
