//! `attr list|get|set|delete`: VDI attributes set, replaced, read back
//! as they are (binary too), listed (the working VDI's and a snapshot's),
//! refused with --exclusive, deleted; and the errors.

mod common;

use common::*;

#[test]
fn attributes_round_trip() {
    let h = server();
    let dir = TempDir::new();
    import(&h, &dir, "vm", &random(1, MIB));
    sheep_ok(&h, &["snapshot", "create", "vm", "--tag", "s1"]);

    sheep_ok(&h, &["attr", "set", "vm", "owner", "alice"]);
    assert_eq!(
        sheep_ok(&h, &["attr", "get", "vm", "owner"]).stdout,
        b"alice"
    );
    // Replaced, unless --exclusive.
    sheep_ok(&h, &["attr", "set", "vm", "owner", "bob"]);
    assert_eq!(sheep_ok(&h, &["attr", "get", "vm", "owner"]).stdout, b"bob");
    assert_error(
        &sheep(&h, &["attr", "set", "--exclusive", "vm", "owner", "carol"]),
        &["attribute owner of vm exists"],
    );
    assert_eq!(sheep_ok(&h, &["attr", "get", "vm", "owner"]).stdout, b"bob");
    sheep_ok(&h, &["attr", "set", "--exclusive", "vm", "lock", "me"]);

    // A binary value of the largest size, from a file.
    let blob: Vec<u8> = random(2, 65_536);
    let f = dir.file("blob", &blob);
    sheep_ok(&h, &["attr", "set", "vm", "blob", "--file", &f]);
    assert!(sheep_ok(&h, &["attr", "get", "vm", "blob"]).stdout == blob);

    // A snapshot's own attribute is not the working VDI's.
    sheep_ok(&h, &["attr", "set", "vm@s1", "made", "monday"]);
    assert_eq!(
        sheep_ok(&h, &["attr", "get", "vm@s1", "made"]).stdout,
        b"monday"
    );
    assert_error(
        &sheep(&h, &["attr", "get", "vm", "made"]),
        &["no attribute made of vm"],
    );

    let list = sheep_ok(&h, &["attr", "list", "vm"]).out();
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        [
            "blob: 65536 bytes of binary data",
            "lock = me",
            "owner = bob",
            "made (snapshot s1) = monday"
        ],
        "{list}"
    );
    let list = sheep_ok(&h, &["attr", "list", "vm@s1", "--json"]).out();
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(v[0]["key"], "made");
    assert_eq!(v[0]["value"], "monday");

    // Deleted: gone from get and list.
    sheep_ok(&h, &["attr", "delete", "vm", "owner"]);
    assert_error(
        &sheep(&h, &["attr", "get", "vm", "owner"]),
        &["no attribute owner of vm"],
    );
    let list = sheep_ok(&h, &["attr", "list", "vm"]).out();
    assert!(!list.contains("owner"), "{list}");
    // Set again after the delete.
    sheep_ok(&h, &["attr", "set", "vm", "owner", "dave"]);
    assert_eq!(
        sheep_ok(&h, &["attr", "get", "vm", "owner"]).stdout,
        b"dave"
    );
}

#[test]
fn attribute_errors_name_the_problem() {
    let h = server();
    sheep_ok(&h, &["create", "vm", "4M"]);
    assert_error(
        &sheep(&h, &["attr", "set", "nosuch", "k", "v"]),
        &["no such VDI: nosuch"],
    );
    assert_error(
        &sheep(&h, &["attr", "list", "nosuch"]),
        &["no such VDI: nosuch"],
    );
    assert_error(
        &sheep(&h, &["attr", "get", "vm", "k"]),
        &["no attribute k of vm"],
    );
    let long = "k".repeat(256);
    assert_error(
        &sheep(&h, &["attr", "set", "vm", &long, "v"]),
        &["bad attribute key", "1 to 255 bytes"],
    );
    let dir = TempDir::new();
    let big = dir.file("big", &vec![1u8; 65_537]);
    assert_error(
        &sheep(&h, &["attr", "set", "vm", "k", "--file", &big]),
        &["more than 65536 bytes"],
    );
    let r = sheep_ok(&h, &["attr", "list", "vm"]);
    assert!(r.stdout.is_empty(), "{r:?}");
}
