//! The rbd diff stream (`sheepdog_core::rbd_diff`) against golden bytes
//! written by hand from Ceph's published format (`doc/dev/rbd-diff.rst`),
//! fed to the decoder in pieces of every size, and against broken streams.

use sheepdog_core::rbd_diff::{
    encode, magic, Decoder, DiffError, EncodeError, Item, Record, Version, MAX_RECORD_HEADER,
};
use sheepdog_core::stream::StreamDecoder;

/// `rbd diff v1`: from "s1" to "s2", size 8 MiB, 5 bytes at 4096, 4 KiB of
/// zeros at 1 MiB, end.
fn golden_v1() -> Vec<u8> {
    let mut b = b"rbd diff v1\n".to_vec();
    b.extend_from_slice(&[b'f', 2, 0, 0, 0, b's', b'1']);
    b.extend_from_slice(&[b't', 2, 0, 0, 0, b's', b'2']);
    b.extend_from_slice(&[b's', 0, 0, 0x80, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&[b'w', 0, 0x10, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(b"hello");
    b.extend_from_slice(&[b'z', 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0]);
    b.push(b'e');
    b
}

/// The same diff as `rbd diff v2`: each record's tag is followed by the
/// le64 length of what follows it (none for `e`).
fn golden_v2() -> Vec<u8> {
    let mut b = b"rbd diff v2\n".to_vec();
    b.extend_from_slice(&[b'f', 6, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, b's', b'1']);
    b.extend_from_slice(&[b't', 6, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, b's', b'2']);
    b.extend_from_slice(&[b's', 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&[b'w', 21, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&[0, 0x10, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(b"hello");
    b.extend_from_slice(&[b'z', 16, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&[0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0]);
    b.push(b'e');
    b
}

/// What the golden streams hold, as owned values.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Header(Version),
    From(Vec<u8>),
    To(Vec<u8>),
    Size(u64),
    Write(u64, u64),
    Data(u64, Vec<u8>),
    Zero(u64, u64),
    Skipped(u8),
    End,
}

/// Decode `stream` handing the decoder at most `piece` new bytes at a time
/// (records split anywhere); data items of one record are joined.
fn decode(stream: &[u8], piece: usize) -> Result<Vec<Got>, DiffError> {
    let mut d = Decoder::new();
    let mut got: Vec<Got> = Vec::new();
    let mut have = 0; // bytes of `stream` the caller has "read"
    let mut at = 0; // bytes consumed
    loop {
        let (used, item) = d.next(&stream[at..have])?;
        at += used;
        match item {
            Some(Item::Header(v)) => got.push(Got::Header(v)),
            Some(Item::Record(r)) => got.push(match r {
                Record::From(n) => Got::From(n.to_vec()),
                Record::To(n) => Got::To(n.to_vec()),
                Record::Size(s) => Got::Size(s),
                Record::Write { offset, len } => Got::Write(offset, len),
                Record::Zero { offset, len } => Got::Zero(offset, len),
                Record::End => Got::End,
            }),
            Some(Item::Data { offset, bytes }) => match got.last_mut() {
                Some(Got::Data(o, b)) if *o + b.len() as u64 == offset => {
                    b.extend_from_slice(bytes)
                }
                _ => got.push(Got::Data(offset, bytes.to_vec())),
            },
            Some(Item::Skipped(t)) => got.push(Got::Skipped(t)),
            None if used == 0 => {
                if have == stream.len() {
                    d.finish()?;
                    return Ok(got);
                }
                have = (have + piece).min(stream.len());
            }
            None => {}
        }
        assert_eq!(d.position(), at as u64, "position counts consumed bytes");
    }
}

fn expected(v: Version) -> Vec<Got> {
    vec![
        Got::Header(v),
        Got::From(b"s1".to_vec()),
        Got::To(b"s2".to_vec()),
        Got::Size(8 << 20),
        Got::Write(4096, 5),
        Got::Data(4096, b"hello".to_vec()),
        Got::Zero(1 << 20, 4096),
        Got::End,
    ]
}

#[test]
fn golden_v1_and_v2_decode_in_pieces_of_every_size() {
    for (bytes, v) in [(golden_v1(), Version::V1), (golden_v2(), Version::V2)] {
        for piece in 1..=bytes.len() {
            assert_eq!(
                decode(&bytes, piece).unwrap(),
                expected(v),
                "{v:?} in pieces of {piece}"
            );
        }
    }
}

#[test]
fn encoding_gives_the_golden_bytes() {
    for (golden, v) in [(golden_v1(), Version::V1), (golden_v2(), Version::V2)] {
        let mut out = magic(v).to_vec();
        let mut buf = [0u8; MAX_RECORD_HEADER];
        let records = [
            Record::From(b"s1"),
            Record::To(b"s2"),
            Record::Size(8 << 20),
            Record::Write {
                offset: 4096,
                len: 5,
            },
        ];
        for r in &records {
            let n = encode(v, r, &mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        out.extend_from_slice(b"hello");
        for r in [
            Record::Zero {
                offset: 1 << 20,
                len: 4096,
            },
            Record::End,
        ] {
            let n = encode(v, &r, &mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, golden, "{v:?}");
    }
    let mut small = [0u8; 8];
    assert_eq!(
        encode(Version::V2, &Record::Size(1), &mut small),
        Err(EncodeError::BufferTooSmall { need: 17 })
    );
    let long = vec![b'x'; 4097];
    assert_eq!(
        encode(Version::V1, &Record::To(&long), &mut [0u8; 8192]),
        Err(EncodeError::NameTooLong)
    );
}

#[test]
fn v2_skips_records_it_does_not_know() {
    let mut b = golden_v2();
    // A record of tag 'X' with 3 bytes, before the size record.
    let at = 12 + 15 + 15;
    assert_eq!(b[at], b's');
    b.splice(at..at, [b'X', 3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
    let mut want = expected(Version::V2);
    want.insert(3, Got::Skipped(b'X'));
    for piece in [1, 5, 1000] {
        assert_eq!(decode(&b, piece).unwrap(), want);
    }
}

#[test]
fn broken_streams_say_where_they_broke() {
    let v1 = golden_v1();
    // Cut anywhere before the end record: truncated, at the cut.
    for cut in 12..v1.len() {
        match decode(&v1[..cut], 7) {
            Err(DiffError::Truncated { at }) => assert!(at <= cut as u64, "cut {cut}: at {at}"),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    assert_eq!(decode(b"rbd diff v3\nxx", 100), Err(DiffError::NotADiff));
    assert_eq!(decode(b"GARBAGE", 100), Err(DiffError::NotADiff));
    assert_eq!(decode(b"", 100), Err(DiffError::Truncated { at: 0 }));
    // v1 has no length to skip an unknown tag by.
    let mut b = golden_v1();
    b[12] = b'X';
    assert_eq!(
        decode(&b, 100),
        Err(DiffError::UnknownTag { tag: b'X', at: 12 })
    );
    // A v2 length that does not match the record.
    let mut b = golden_v2();
    b[13] = 7;
    assert!(matches!(
        decode(&b, 100),
        Err(DiffError::Bad { at: 12, .. })
    ));
    // Metadata after data.
    let mut b = golden_v1();
    b.pop();
    b.extend_from_slice(&[b's', 0, 0, 0, 0, 0, 0, 0, 0, b'e']);
    assert!(matches!(decode(&b, 100), Err(DiffError::Bad { .. })));
    // Bytes after the end record.
    let mut b = golden_v1();
    b.push(b'e');
    assert_eq!(
        decode(&b, 100),
        Err(DiffError::AfterEnd {
            at: v1.len() as u64
        })
    );
    // A range past 2^64.
    let mut b = b"rbd diff v1\nz".to_vec();
    b.extend_from_slice(&u64::MAX.to_le_bytes());
    b.extend_from_slice(&2u64.to_le_bytes());
    b.push(b'e');
    assert!(matches!(
        decode(&b, 100),
        Err(DiffError::Bad { at: 12, .. })
    ));
    // A name longer than any snapshot's.
    let mut b = b"rbd diff v1\nt".to_vec();
    b.extend_from_slice(&100_000u32.to_le_bytes());
    assert!(matches!(
        decode(&b, 100),
        Err(DiffError::Bad { at: 12, .. })
    ));
}

#[test]
fn arbitrary_bytes_never_panic_nor_stall() {
    // A small deterministic generator: streams that start right and go
    // wrong anywhere, fed in pieces.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let base = if next() % 2 == 0 {
            golden_v1()
        } else {
            golden_v2()
        };
        let mut b = base.clone();
        for _ in 0..(next() % 4) {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        b.truncate(12 + (next() as usize) % (b.len() - 11));
        let piece = 1 + (next() as usize) % 40;
        // Ends in a result either way; a stall would loop forever here.
        let _ = decode(&b, piece);
    }
}
