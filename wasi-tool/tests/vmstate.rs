//! The VM state of a snapshot: stored with `snapshot create --vmstate` as
//! QEMU's savevm stored it (vmstate objects of the VID that becomes the
//! snapshot, `vm_state_size` and `vm_clock_nsec` in its inode), shown by
//! info and list, exported byte for byte, and removed with the snapshot.

mod common;

use common::*;
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::wire::{Opcode, ResultCode};
use sheepdog_tests::server::{FaultAction, Matcher};

fn vmstate_oid(vid: u32, idx: u32) -> Oid {
    Oid::vmstate(Vid::new(vid).unwrap(), idx)
}

#[test]
fn a_vm_state_goes_in_and_comes_out_the_same() {
    let h = server();
    let dir = TempDir::new();
    import(&h, &dir, "vm", &random(1, 8 * MIB));
    let working = vid(&h, "vm");
    // Two objects and a part: 9 MiB and 5 bytes.
    let state = random(2, 9 * MIB + 5);
    let f = dir.file("vm.state", &state);
    let r = sheep_ok(
        &h,
        &[
            "snapshot",
            "create",
            "vm",
            "--tag",
            "saved",
            "--vmstate",
            &f,
            "--vm-clock",
            "42",
        ],
    );
    assert!(
        r.stderr
            .contains(&format!("with {} bytes of VM state", state.len())),
        "{r:?}"
    );
    // The state is the snapshot's: the VID that was working.
    let hd = header(&h, working);
    assert_eq!(
        (hd.vm_state_size, hd.vm_clock_nsec),
        (state.len() as u64, 42)
    );
    assert!(hd.is_snapshot());
    for idx in 0..3 {
        assert!(
            h.cluster().object_exists(vmstate_oid(working, idx)),
            "{idx}"
        );
    }
    let now = vid(&h, "vm");
    assert_eq!(
        header(&h, now).vm_state_size,
        0,
        "the new working VDI has none"
    );

    let info = sheep_ok(&h, &["info", "--json", "vm@saved"]).out();
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(v["vm_state_size"], state.len() as u64);
    assert_eq!(v["vm_clock_nsec"], 42);
    let list = sheep_ok(&h, &["list"]).out();
    assert!(list.lines().next().unwrap().ends_with("VM state"), "{list}");
    assert!(list.contains("9.0 MB"), "{list}");

    let out = dir.path("out.state");
    sheep_ok(&h, &["vmstate", "export", "vm@saved", &s(&out)]);
    assert!(std::fs::read(&out).unwrap() == state);
    let r = sheep_ok(&h, &["vmstate", "export", "vm@saved", "-"]);
    assert!(r.stdout == state);

    // Deleted with the snapshot.
    let r = sheep_ok(&h, &["delete", "vm@saved"]);
    assert!(r.out().contains("and its VM state"), "{r:?}");
    for idx in 0..3 {
        assert!(
            !h.cluster().object_exists(vmstate_oid(working, idx)),
            "{idx}"
        );
    }
}

#[test]
fn vm_state_errors_name_the_problem() {
    let h = server();
    let dir = TempDir::new();
    import(&h, &dir, "vm", &random(3, MIB));
    sheep_ok(&h, &["snapshot", "create", "vm", "--tag", "plain"]);
    assert_error(
        &sheep(&h, &["vmstate", "export", "vm@plain", "-"]),
        &["vm@plain has no VM state"],
    );
    assert_error(&sheep(&h, &["vmstate", "export", "vm", "-"]), &["snapshot"]);
    // An empty state: no snapshot, no objects.
    let before = vid(&h, "vm");
    let empty = dir.file("empty", b"");
    assert_error(
        &sheep(
            &h,
            &[
                "snapshot",
                "create",
                "vm",
                "--tag",
                "e",
                "--vmstate",
                &empty,
            ],
        ),
        &["is empty"],
    );
    assert_eq!(vid(&h, "vm"), before);
    assert!(!h.cluster().object_exists(vmstate_oid(before, 0)));
    // A taken tag: refused before any object is written.
    let f = dir.file("state", &random(4, 5 * MIB));
    assert_error(
        &sheep(
            &h,
            &[
                "snapshot",
                "create",
                "vm",
                "--tag",
                "plain",
                "--vmstate",
                &f,
            ],
        ),
        &["snapshot exists: vm@plain"],
    );
    assert_eq!(vid(&h, "vm"), before);
    for idx in 0..2 {
        assert!(
            !h.cluster().object_exists(vmstate_oid(before, idx)),
            "{idx}"
        );
    }
    // The snapshot fails after the state was written: its objects are
    // removed, none are left behind.
    h.cluster().inject(
        Matcher::opcode(Opcode::NewVdi),
        FaultAction::Fail(ResultCode::SystemError),
        1,
    );
    assert_error(
        &sheep(
            &h,
            &["snapshot", "create", "vm", "--tag", "x", "--vmstate", &f],
        ),
        &["vm@x"],
    );
    assert_eq!(vid(&h, "vm"), before);
    let hd = header(&h, before);
    assert_eq!(
        (hd.vm_state_size, hd.vm_clock_nsec),
        (0, 0),
        "the fields the failed snapshot wrote are cleared"
    );
    for idx in 0..2 {
        assert!(
            !h.cluster().object_exists(vmstate_oid(before, idx)),
            "{idx}"
        );
    }
}
