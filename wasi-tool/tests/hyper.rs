//! Hyper volumes as far as sheep-tool handles them yet: `create --hyper`
//! makes one as dog's `-y` does, `info` and `list` show it, reading or
//! writing it is refused with a clear error, and `delete` removes it
//! without touching its B-tree.

mod common;

use common::*;

#[test]
fn a_hyper_volume_is_created_listed_refused_and_deleted() {
    let h = server();
    let r = sheep_ok(&h, &["create", "--hyper", "hv", "5T"]);
    assert!(r.out().contains("created hv (5497558138880 bytes"), "{r:?}");
    let v = vid(&h, "hv");
    let hd = header(&h, v);
    assert_eq!((hd.store_policy, hd.block_size_shift), (1, 22));
    assert_eq!(hd.vdi_size, 5 << 40);

    let info = sheep_ok(&h, &["info", "--json", "hv"]).out();
    let j: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(j["hyper"], true);
    assert_eq!(j["size"], 5u64 << 40);
    assert!(sheep_ok(&h, &["list"]).out().contains("hv"));

    assert_error(
        &sheep(&h, &["export", "hv", "-"]),
        &["hv: hyper volumes (B-tree index) cannot be read or written yet"],
    );
    // dog's limits: 16 PiB at most, 4 MiB objects, no preallocation.
    assert_error(
        &sheep(&h, &["create", "--hyper", "big", "17P"]),
        &["too large"],
    );
    let r = sheep(&h, &["create", "--hyper", "--prealloc", "p", "1T"]);
    assert_ne!(r.code, Some(0), "{r:?}");

    sheep_ok(&h, &["delete", "hv"]);
    assert!(!exists(&h, "hv"));
}
