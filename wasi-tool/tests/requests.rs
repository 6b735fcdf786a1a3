//! How import and export cut a VDI into requests: export reads below
//! sheep's 512 KiB mmap threshold by default, `--request-size` sets the
//! largest request, and any size reads back the same bytes.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::*;
use sheepdog_core::wire::Opcode;
use sheepdog_core::wire::ResultCode;
use sheepdog_tests::server::{FaultAction, Matcher, ServerHandle};

/// Largest data-object READ_OBJ and write (WRITE_OBJ or CREATE_AND_WRITE_OBJ)
/// the server has seen since the last `take`.
struct Largest {
    read: Arc<AtomicU32>,
    write: Arc<AtomicU32>,
}

impl Largest {
    fn watch(h: &ServerHandle) -> Largest {
        let read = Arc::new(AtomicU32::new(0));
        let write = Arc::new(AtomicU32::new(0));
        let (r, w) = (Arc::clone(&read), Arc::clone(&write));
        h.cluster().inject(
            Matcher::custom(move |req| {
                let Some(a) = req.obj() else { return false };
                if !a.oid.is_data() {
                    return false;
                }
                let n = req.data_length;
                match req.opcode {
                    Opcode::ReadObj => r.fetch_max(n, Ordering::SeqCst),
                    Opcode::WriteObj | Opcode::CreateAndWriteObj => {
                        w.fetch_max(n, Ordering::SeqCst)
                    }
                    _ => 0,
                };
                false
            }),
            FaultAction::Fail(ResultCode::Eio),
            u32::MAX,
        );
        Largest { read, write }
    }

    /// (largest read, largest write), reset to zero.
    fn take(&self) -> (u32, u32) {
        (
            self.read.swap(0, Ordering::SeqCst),
            self.write.swap(0, Ordering::SeqCst),
        )
    }
}

#[test]
fn export_reads_below_sheeps_mmap_threshold_by_default() {
    let h = server();
    let dir = TempDir::new();
    let data = mixed_image(3 * OBJ + 2 * MIB);
    import(&h, &dir, "vol", &data);
    let largest = Largest::watch(&h);
    // A 4 MiB object in nine reads of 456 KiB (the last 448 KiB).
    assert!(export_file(&h, &dir, "vol") == data);
    assert_eq!(largest.take().0, 456 << 10);
    assert!(export_bytes(&h, "vol") == data);
    assert_eq!(largest.take().0, 456 << 10);
    // Whole objects when asked.
    let out = dir.path("whole.img");
    sheep_ok(&h, &["export", "vol", &s(&out), "--request-size", "4M"]);
    assert_eq!(largest.take().0, 4 << 20);
    assert!(std::fs::read(&out).unwrap() == data);
}

#[test]
fn import_writes_whole_objects_by_default() {
    let h = server();
    let dir = TempDir::new();
    let largest = Largest::watch(&h);
    import(&h, &dir, "vol", &random(18, 2 * OBJ));
    assert_eq!(largest.take().1, 4 << 20);
}

#[test]
fn any_request_size_reads_back_equal() {
    let h = server();
    let dir = TempDir::new();
    let data = mixed_image(3 * OBJ + 2 * MIB);
    let f = dir.file("in.img", &data);
    let largest = Largest::watch(&h);
    sheep_ok(&h, &["import", &f, "vol", "--request-size", "1M"]);
    assert_eq!(largest.take().1, 1 << 20);
    for size in ["1M", "3M", "4M"] {
        let out = dir.path("out.img");
        sheep_ok(&h, &["export", "vol", &s(&out), "--request-size", size]);
        assert!(
            std::fs::read(&out).unwrap() == data,
            "--request-size {size}"
        );
        let (read, _) = largest.take();
        assert!(
            u64::from(read) <= sheep_tool_size(size),
            "{size}: read {read}"
        );
    }
    // Writing over what is there, in parts, with zeros where data was.
    let mut second = random(19, data.len());
    second[100..3 * MIB].fill(0);
    second[OBJ..2 * OBJ].fill(0);
    let f2 = dir.file("second.img", &second);
    sheep_ok(&h, &["import", &f2, "vol", "--request-size", "768K"]);
    assert!(export_bytes(&h, "vol") == second);
}

#[test]
fn small_requests_that_do_not_divide_the_object() {
    let h = server();
    let dir = TempDir::new();
    // 12 KiB does not divide 1 MiB: 86 parts of 12 KiB, the last shorter.
    sheep_ok(&h, &["create", "vol", "2M", "--object-size", "1M"]);
    let mut data = random(21, MIB + 300_000);
    data[MIB - 5000..MIB + 7000].fill(0);
    let f = dir.file("in.img", &data);
    let largest = Largest::watch(&h);
    let qd = ["--queue-depth", "8"];
    sheep_ok(
        &h,
        &[&["import", &f, "vol", "--request-size", "12K"][..], &qd].concat(),
    );
    let (_, write) = largest.take();
    assert!(write > 0 && write <= 12 << 10, "largest write {write}");
    for size in ["4K", "12K"] {
        let out = dir.path("out.img");
        let out = s(&out);
        sheep_ok(
            &h,
            &[&["export", "vol", &out, "--request-size", size][..], &qd].concat(),
        );
        assert!(
            std::fs::read(&out).unwrap()[..data.len()] == data[..],
            "--request-size {size}"
        );
        let (read, _) = largest.take();
        assert!(
            u64::from(read) <= sheep_tool_size(size),
            "{size}: read {read}"
        );
    }
}

#[test]
fn request_size_with_large_objects() {
    let h = server();
    let dir = TempDir::new();
    sheep_ok(&h, &["create", "big", "24M", "--object-size", "8M"]);
    let data = mixed_image(24 * MIB);
    let largest = Largest::watch(&h);
    import(&h, &dir, "big", &data);
    assert_eq!(largest.take().1, 4 << 20, "at most 4 MiB per write");
    assert!(export_file(&h, &dir, "big") == data);
    assert_eq!(largest.take().0, 484 << 10, "8 MiB objects in 17 reads");
}

#[test]
fn sparse_export_allocates_only_the_data_wherever_reads_are_cut() {
    let h = server();
    let dir = TempDir::new();
    // Eight 1 MiB regions: each ends inside a 456 KiB read and inside the
    // read's fourth 64 KiB block counted from the read's start.
    let mut data = vec![0u8; 64 * MIB];
    for i in 0..8 {
        let at = i * 8 * MIB;
        data[at..at + MIB].copy_from_slice(&random(30 + i as u64, MIB));
    }
    import(&h, &dir, "sparse", &data);
    for size in ["504K", "200K", "4M"] {
        let out = dir.path("out.img");
        let _ = std::fs::remove_file(&out);
        sheep_ok(&h, &["export", "sparse", &s(&out), "--request-size", size]);
        let allocated =
            std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&out).unwrap()) * 512;
        assert!(
            allocated <= 8 << 20,
            "--request-size {size}: {allocated} bytes allocated for 8 MiB of data"
        );
        assert!(std::fs::read(&out).unwrap() == data);
    }
}

#[test]
fn bad_request_size_is_refused() {
    let h = server();
    sheep_ok(&h, &["create", "v", "8M"]);
    for bad in ["0", "1000", "8M", "4K1", "x"] {
        let r = sheep(&h, &["export", "v", "-", "--request-size", bad]);
        assert_error(&r, &["bad --request-size"]);
    }
    let dir = TempDir::new();
    let f = dir.file("in.img", &random(20, MIB));
    let r = sheep(&h, &["import", &f, "w", "--request-size", "5M"]);
    assert_error(
        &r,
        &["bad --request-size 5M", "multiple of 4K from 4K to 4M"],
    );
    assert!(!exists(&h, "w"), "nothing is created on a bad option");
}

/// SIZE as the tool reads it.
fn sheep_tool_size(s: &str) -> u64 {
    let (n, unit) = s.split_at(s.len() - 1);
    let n: u64 = n.parse().unwrap();
    match unit {
        "K" => n << 10,
        "M" => n << 20,
        _ => unreachable!(),
    }
}
