//! `export-diff` and `import-diff`: a chain of snapshots, with writes,
//! released objects and a resize between them, rebuilt on a fresh VDI from
//! its diffs; what a diff of identical snapshots holds; rbd diff v2; and
//! broken streams.

mod common;

use common::nbd::under_wasmtime;
use common::*;
use sheepdog_core::rbd_diff::{encode, magic, Decoder, Item, Record, Version, MAX_RECORD_HEADER};
use sheepdog_core::stream::StreamDecoder;

/// The records of a v1 or v2 stream, data left out.
fn records(stream: &[u8]) -> Vec<String> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let (used, item) = d.next(&stream[at..]).expect("a valid stream");
        at += used;
        match item {
            Some(Item::Record(r)) => out.push(format!("{r:?}")),
            Some(_) => {}
            None if used == 0 => break,
            None => {}
        }
    }
    d.finish().expect("the stream ends with its end record");
    out
}

/// The image offset of the `w` record whose data the stream byte `cut`
/// falls in.
fn broken_record(stream: &[u8], cut: usize) -> u64 {
    let mut d = Decoder::new();
    let mut at = 0;
    let mut current = None;
    loop {
        let (used, item) = d.next(&stream[at..]).expect("a valid stream");
        match item {
            Some(Item::Record(Record::Write { offset, .. })) => current = Some(offset),
            Some(Item::Data { .. }) if at + used > cut => {
                return current.expect("data belongs to a record")
            }
            None if used == 0 => panic!("the cut is not inside a record's data"),
            _ => {}
        }
        at += used;
    }
}

#[test]
fn a_chain_of_diffs_rebuilds_every_snapshot() {
    let h = server();
    let dir = TempDir::new();
    // s1: data in objects 0..4; s2: object 1 rewritten, object 2 released,
    // a few bytes changed in 3; then grown to 24 MiB with data at the end.
    let a = random(1, 16 * MIB);
    import(&h, &dir, "vm", &a);
    sheep_ok(&h, &["snapshot", "create", "vm", "--tag", "s1"]);
    let mut b = a.clone();
    b[OBJ..OBJ + MIB].copy_from_slice(&random(2, MIB));
    b[2 * OBJ..3 * OBJ].fill(0);
    b[3 * OBJ + 100..3 * OBJ + 200].fill(7);
    import(&h, &dir, "vm", &b);
    sheep_ok(&h, &["snapshot", "create", "vm", "--tag", "s2"]);
    sheep_ok(&h, &["resize", "vm", "24M"]);
    let mut c = padded(&b, 24 * MIB);
    c[20 * MIB..21 * MIB].copy_from_slice(&random(3, MIB));
    import(&h, &dir, "vm", &c);
    sheep_ok(&h, &["snapshot", "create", "vm", "--tag", "s3"]);

    sheep_ok(&h, &["create", "copy", "16M"]);
    let mut from: Option<&str> = None;
    for (snap, want) in [("s1", &a), ("s2", &b), ("s3", &c)] {
        let f = dir.path(&format!("{snap}.diff"));
        let mut args = vec!["export-diff".to_owned(), format!("vm@{snap}"), s(&f)];
        if let Some(p) = from {
            args.extend(["--from".to_owned(), p.to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sheep_ok(&h, &args);
        sheep_ok(&h, &["import-diff", &s(&f), "copy"]);
        let got = export_bytes(&h, &format!("copy@{snap}"));
        assert!(got == **want, "copy@{snap} differs from vm@{snap}");
        from = Some(snap);
    }
    // The snapshots carry the same tags, and the working data is TO's.
    let list = sheep_ok(&h, &["snapshot", "list", "copy"]).out();
    for tag in ["s1", "s2", "s3"] {
        assert!(list.contains(tag), "{list}");
    }
    assert!(export_bytes(&h, "copy") == c);

    // s2 from s1: object 2 released (a z record), object 3's zeros sent
    // as z records, not data.
    let d = std::fs::read(dir.path("s2.diff")).unwrap();
    let recs = records(&d);
    assert!(
        recs.contains(&format!("Zero {{ offset: {}, len: {} }}", 2 * OBJ, OBJ)),
        "{recs:?}"
    );
    assert!(recs.iter().any(|r| r.starts_with("From")), "{recs:?}");
}

#[test]
fn a_diff_of_identical_snapshots_holds_no_data() {
    let h = server();
    let dir = TempDir::new();
    import(&h, &dir, "vm", &random(4, 8 * MIB));
    sheep_ok(&h, &["snapshot", "create", "vm", "--tag", "a"]);
    sheep_ok(&h, &["snapshot", "create", "vm", "--tag", "b"]);
    let r = sheep_ok(&h, &["export-diff", "vm@b", "--from", "a", "-"]);
    let recs = records(&r.stdout);
    assert!(
        !recs
            .iter()
            .any(|r| r.starts_with("Write") || r.starts_with("Zero")),
        "{recs:?}"
    );
    assert_eq!(recs.last().map(String::as_str), Some("End"));
}

#[test]
fn import_diff_takes_v2_from_stdin() {
    let h = server();
    sheep_ok(&h, &["create", "vm", "8M"]);
    let mut s = magic(Version::V2).to_vec();
    let mut buf = [0u8; MAX_RECORD_HEADER];
    for r in [
        Record::To(b"t1"),
        Record::Size(12 << 20),
        Record::Write {
            offset: 10 << 20,
            len: 4,
        },
    ] {
        let n = encode(Version::V2, &r, &mut buf).unwrap();
        s.extend_from_slice(&buf[..n]);
    }
    s.extend_from_slice(b"abcd");
    let n = encode(Version::V2, &Record::End, &mut buf).unwrap();
    s.extend_from_slice(&buf[..n]);
    let mut c = tool(&h);
    c.args(["import-diff", "-", "vm"]);
    assert_ok(&run_with_stdin(c, &s));
    let got = export_bytes(&h, "vm@t1");
    assert_eq!(got.len(), 12 << 20, "grown by the size record");
    assert_eq!(&got[10 << 20..(10 << 20) + 4], b"abcd");
    assert!(all_zero(&got[..10 << 20]));
}

#[test]
fn broken_streams_are_refused_and_leave_the_vdi_readable() {
    let h = server();
    let dir = TempDir::new();
    let a = random(5, 8 * MIB);
    import(&h, &dir, "vm", &a);
    sheep_ok(&h, &["snapshot", "create", "vm", "--tag", "s1"]);
    let f = dir.path("full.diff");
    sheep_ok(&h, &["export-diff", "vm@s1", &s(&f)]);
    let full = std::fs::read(&f).unwrap();

    // Cut in the middle of a record's data: the records before it are
    // applied, none of it, and no snapshot is made.
    sheep_ok(&h, &["create", "t", "8M"]);
    let cut_at = full.len() - MIB;
    let broken = broken_record(&full, cut_at);
    assert!(broken >= OBJ as u64, "the cut is in the second object");
    let broken = broken as usize;
    let cut = dir.file("cut.diff", &full[..cut_at]);
    let r = sheep(&h, &["import-diff", &cut, "t"]);
    assert_error(
        &r,
        &["is broken at byte", "before its end record", "t holds what"],
    );
    let got = export_bytes(&h, "t");
    assert!(
        got[..broken] == a[..broken],
        "the whole records before the break are there"
    );
    assert!(all_zero(&got[broken..]), "nothing of the record that broke");
    assert_ne!(
        sheep(&h, &["info", "t@s1"]).code,
        Some(0),
        "no snapshot made"
    );

    // Garbage, and a diff from a snapshot the VDI does not have.
    let junk = dir.file("junk.diff", b"not a diff at all");
    assert_error(
        &sheep(&h, &["import-diff", &junk, "t"]),
        &[
            "cannot apply",
            "neither an rbd diff stream nor a dog vdi backup stream",
            "t is unchanged",
        ],
    );
    sheep_ok(&h, &["snapshot", "create", "vm", "--tag", "s2"]);
    let inc = dir.path("inc.diff");
    sheep_ok(&h, &["export-diff", "vm@s2", "--from", "s1", &s(&inc)]);
    sheep_ok(&h, &["create", "u", "8M"]);
    assert_error(
        &sheep(&h, &["import-diff", &s(&inc), "u"]),
        &["starts from snapshot s1", "--force"],
    );
    sheep_ok(&h, &["import-diff", "--force", &s(&inc), "u"]);
    // The diff's TO exists already: refused before anything is written.
    assert_error(
        &sheep(&h, &["import-diff", "--force", &s(&inc), "u"]),
        &["snapshot exists: u@s2"],
    );
}

#[test]
fn compare_follows_qemu_img_compare() {
    let h = server();
    let dir = TempDir::new();
    // Data in objects 0 and 2; object 1 and 3 unallocated.
    let mut a = vec![0u8; 16 * MIB];
    a[..OBJ].copy_from_slice(&random(6, OBJ));
    a[2 * OBJ..3 * OBJ].copy_from_slice(&random(7, OBJ));
    import(&h, &dir, "vm", &a);
    sheep_ok(&h, &["snapshot", "create", "vm", "--tag", "s1"]);
    let f = dir.file("a.raw", &a);
    let same = |x: &str, y: &str| {
        let r = sheep(&h, &["compare", x, y]);
        assert_eq!(r.code, Some(0), "{r:?}");
        assert_eq!(r.out().trim(), "Images are identical.");
    };
    same("vm", "vm@s1");
    same(&f, "vm");
    same("vm@s1", &f);
    // A shorter file whose missing end is zeros in the VDI is equal.
    let short = dir.file("short.raw", &a[..3 * OBJ]);
    same(&short, "vm");

    // One byte changed in object 2: exit 1 and the offset.
    let at = 2 * OBJ + 12345;
    let mut b = a.clone();
    b[at] ^= 0xff;
    let g = dir.file("b.raw", &b);
    let r = sheep(&h, &["compare", "vm", &g]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(r.out().trim(), format!("Content mismatch at offset {at}!"));
    // A byte where the VDI holds nothing.
    let mut c = a.clone();
    c[OBJ + 7] = 1;
    let g = dir.file("c.raw", &c);
    let r = sheep(&h, &["compare", &g, "vm@s1"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(
        r.out().trim(),
        format!("Content mismatch at offset {}!", OBJ + 7)
    );

    // An error is 2 (1 from the WASI component, which has no other
    // failure status; its "error:" line on stderr tells them apart).
    let r = sheep(&h, &["compare", "vm", "nosuch"]);
    let error = if under_wasmtime() { 1 } else { 2 };
    assert_eq!(r.code, Some(error), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
    assert!(r.stderr.contains("no such VDI: nosuch"), "{r:?}");
}

/// An rbd diff v1 stream of `w` records, for changing a few bytes.
fn writes(to: Option<&[u8]>, records: &[(u64, &[u8])]) -> Vec<u8> {
    let mut s = magic(Version::V1).to_vec();
    let mut buf = [0u8; MAX_RECORD_HEADER];
    if let Some(t) = to {
        let n = encode(Version::V1, &Record::To(t), &mut buf).unwrap();
        s.extend_from_slice(&buf[..n]);
    }
    for &(offset, data) in records {
        let w = Record::Write {
            offset,
            len: data.len() as u64,
        };
        let n = encode(Version::V1, &w, &mut buf).unwrap();
        s.extend_from_slice(&buf[..n]);
        s.extend_from_slice(data);
    }
    let n = encode(Version::V1, &Record::End, &mut buf).unwrap();
    s.extend_from_slice(&buf[..n]);
    s
}

#[test]
fn export_diff_reads_only_the_changed_objects() {
    let h = server();
    let dir = TempDir::new();
    let mut a = random(8, 16 * OBJ);
    import(&h, &dir, "vm", &a);
    sheep_ok(&h, &["snapshot", "create", "vm", "--tag", "s1"]);
    // Two objects of sixteen change: a diff is a write.
    let d = writes(
        Some(b"s2"),
        &[(3 * OBJ as u64 + 9, b"three"), (11 * OBJ as u64, b"eleven")],
    );
    let f = dir.file("change.diff", &d);
    sheep_ok(&h, &["import-diff", &f, "vm"]);
    a[3 * OBJ + 9..3 * OBJ + 14].copy_from_slice(b"three");
    a[11 * OBJ..11 * OBJ + 6].copy_from_slice(b"eleven");

    let before = h.cluster().data_reads();
    let out = dir.path("s2.diff");
    let r = sheep_ok(&h, &["export-diff", "vm@s2", "--from", "s1", &s(&out)]);
    let reads = h.cluster().data_reads() - before;
    // Each object in export's parts: 4 MiB in 9 parts of 456 KiB.
    assert_eq!(reads, 2 * 9, "{r:?}");
    assert!(
        r.stderr.contains("2 objects read (18 read requests)"),
        "{r:?}"
    );
    // Objects 3 and 11 whole (in parts, as they were read), nothing else.
    let mut d = Decoder::new();
    let (mut at, stream) = (0, std::fs::read(&out).unwrap());
    let mut sent = Vec::new();
    loop {
        let (used, item) = d.next(&stream[at..]).unwrap();
        at += used;
        match item {
            Some(Item::Record(Record::Write { offset, len })) => sent.push((offset, len)),
            Some(Item::Record(Record::Zero { .. })) => panic!("no zeros were written"),
            None if used == 0 => break,
            _ => {}
        }
    }
    let in_object = |i: usize| {
        sent.iter()
            .filter(|(o, _)| *o as usize / OBJ == i)
            .map(|(_, l)| *l as usize)
            .sum::<usize>()
    };
    assert_eq!((in_object(3), in_object(11)), (OBJ, OBJ), "{sent:?}");
    assert_eq!(
        in_object(3) + in_object(11),
        sent.iter().map(|s| s.1 as usize).sum::<usize>()
    );
    // Applied on a copy of s1, it gives s2.
    sheep_ok(&h, &["create", "copy", "64M"]);
    let full = dir.path("s1.diff");
    sheep_ok(&h, &["export-diff", "vm@s1", &s(&full)]);
    sheep_ok(&h, &["import-diff", &s(&full), "copy"]);
    sheep_ok(&h, &["import-diff", &s(&out), "copy"]);
    assert!(export_bytes(&h, "copy@s2") == a);
}

#[test]
fn exact_sends_only_the_sectors_that_differ() {
    let h = server();
    let dir = TempDir::new();
    let mut a = random(9, 2 * OBJ);
    import(&h, &dir, "vm", &a);
    sheep_ok(&h, &["snapshot", "create", "vm", "--tag", "s1"]);
    // In object 1: 5 bytes in one sector, and 1024 bytes of zeros over two
    // sectors.
    let z = [0u8; 1024];
    let at = OBJ as u64 + 4096;
    let d = writes(Some(b"s2"), &[(OBJ as u64 + 700, b"exact"), (at, &z)]);
    sheep_ok(&h, &["import-diff", &dir.file("c.diff", &d), "vm"]);
    a[OBJ + 700..OBJ + 705].copy_from_slice(b"exact");
    a[OBJ + 4096..OBJ + 5120].fill(0);

    let out = dir.path("exact.diff");
    let r = sheep_ok(
        &h,
        &["export-diff", "vm@s2", "--from", "s1", "--exact", &s(&out)],
    );
    assert!(
        r.stderr
            .contains("1 object read (18 read requests, FROM's copies included)"),
        "{r:?}"
    );
    let recs = records(&std::fs::read(&out).unwrap());
    let data: Vec<_> = recs
        .iter()
        .filter(|r| r.starts_with("Write") || r.starts_with("Zero"))
        .collect();
    assert_eq!(
        data,
        [
            &format!("Write {{ offset: {}, len: 512 }}", OBJ + 512),
            &format!("Zero {{ offset: {at}, len: 1024 }}"),
        ]
    );
    // It rebuilds s2 from s1 all the same.
    sheep_ok(&h, &["create", "copy", "8M"]);
    let full = dir.path("s1.diff");
    sheep_ok(&h, &["export-diff", "vm@s1", &s(&full)]);
    sheep_ok(&h, &["import-diff", &s(&full), "copy"]);
    sheep_ok(&h, &["import-diff", &s(&out), "copy"]);
    assert!(export_bytes(&h, "copy@s2") == a);
    // --exact needs a FROM.
    assert_error(
        &sheep(&h, &["export-diff", "vm@s2", "--exact", "-"]),
        &["--exact compares with the FROM snapshot"],
    );
}

#[test]
fn a_dog_backup_stream_applies_as_dog_vdi_restore_would() {
    use sheepdog_core::dog_backup::{header, record, END_IDX};
    let h = server();
    let dir = TempDir::new();
    let mut a = random(10, 4 * OBJ);
    import(&h, &dir, "vm", &a);
    // As `dog vdi backup` writes it on x86: sectors 1..3 of object 0, and
    // object 2 whole as zeros (TO had released it).
    let mut s = header(false).to_vec();
    let sectors = random(11, 1024);
    s.extend_from_slice(&record(false, 0, 512, 1024));
    s.extend_from_slice(&sectors);
    s.extend_from_slice(&record(false, 2, 0, OBJ as u32));
    s.extend_from_slice(&vec![0u8; OBJ]);
    s.extend_from_slice(&record(false, END_IDX, 0, 0));
    a[512..1536].copy_from_slice(&sectors);
    a[2 * OBJ..3 * OBJ].fill(0);
    let mut c = tool(&h);
    c.args(["import-diff", "-", "vm"]);
    let r = run_with_stdin(c, &s);
    assert_ok(&r);
    assert!(r.stderr.contains("dog vdi backup stream"), "{r:?}");
    assert!(export_bytes(&h, "vm") == a);
    assert_eq!(
        entry(&h, vid(&h, "vm"), 2),
        0,
        "the zero object is released"
    );

    // Big-endian, cut in its second record: the first is applied, the
    // error names the byte.
    let mut be = header(true).to_vec();
    be.extend_from_slice(&record(true, 1, 0, 5));
    be.extend_from_slice(b"first");
    be.extend_from_slice(&record(true, 3, 0, 6));
    be.extend_from_slice(b"sec");
    let r = sheep(&h, &["-q", "import-diff", &dir.file("cut.bak", &be), "vm"]);
    assert_error(&r, &["is broken at byte 48", "before its end record"]);
    a[OBJ..OBJ + 5].copy_from_slice(b"first");
    assert!(export_bytes(&h, "vm") == a);
}
