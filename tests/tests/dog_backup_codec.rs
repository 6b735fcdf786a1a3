//! The `dog vdi backup` stream (`sheepdog_core::dog_backup`) against golden
//! bytes written by hand from dog 1.0's structs (`dog/vdi.c`: `struct
//! backup_hdr`, `struct obj_backup` less its data pointer), in both byte
//! orders, fed to the decoder in pieces of every size, and broken streams.

use sheepdog_core::dog_backup::{header, record, BackupError, Decoder, Item, END_IDX};
use sheepdog_core::stream::StreamDecoder;

/// Object size of the volume the golden streams are for: 4 MiB.
const OS: u32 = 4 << 20;

/// From an x86 host: header, 5 bytes at offset 512 of object 1, 2 bytes at
/// offset 0 of object 3, end.
fn golden_le() -> Vec<u8> {
    let mut b = vec![1, 0, 0, 0, 0x92, 0x11, 0x92, 0x11];
    b.extend_from_slice(&[1, 0, 0, 0, 0, 2, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(b"hello");
    b.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(b"hi");
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    b
}

/// The same from a big-endian host.
fn golden_be() -> Vec<u8> {
    let mut b = vec![0, 0, 0, 1, 0x11, 0x92, 0x11, 0x92];
    b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 2, 0, 0, 0, 0, 5, 0, 0, 0, 0]);
    b.extend_from_slice(b"hello");
    b.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);
    b.extend_from_slice(b"hi");
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    b
}

#[derive(Debug, PartialEq, Eq)]
enum Got {
    Header(bool),
    Record(u32, u64, u32),
    Data(u64, Vec<u8>),
    End,
}

/// Decode `stream` handed over `piece` bytes at a time, joining the data
/// of each record.
fn decode(stream: &[u8], piece: usize) -> Result<Vec<Got>, BackupError> {
    let mut d = Decoder::new(OS);
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0, 0);
    loop {
        let (used, item) = d.next(&stream[lo..hi])?;
        lo += used;
        match item {
            Some(Item::Header { big_endian }) => out.push(Got::Header(big_endian)),
            Some(Item::Record { idx, offset, len }) => out.push(Got::Record(idx, offset, len)),
            Some(Item::Data { offset, bytes }) => match out.last_mut() {
                Some(Got::Data(at, b)) if *at + b.len() as u64 == offset => {
                    b.extend_from_slice(bytes)
                }
                _ => out.push(Got::Data(offset, bytes.to_vec())),
            },
            Some(Item::End) => out.push(Got::End),
            None if used == 0 => {
                if hi == stream.len() {
                    d.finish()?;
                    return Ok(out);
                }
                hi = (hi + piece).min(stream.len());
            }
            None => {}
        }
    }
}

fn expected(big_endian: bool) -> Vec<Got> {
    let os = u64::from(OS);
    vec![
        Got::Header(big_endian),
        Got::Record(1, os + 512, 5),
        Got::Data(os + 512, b"hello".to_vec()),
        Got::Record(3, 3 * os, 2),
        Got::Data(3 * os, b"hi".to_vec()),
        Got::End,
    ]
}

#[test]
fn golden_streams_of_both_byte_orders_decode_in_pieces_of_every_size() {
    for piece in 1..=40 {
        assert_eq!(decode(&golden_le(), piece), Ok(expected(false)), "{piece}");
        assert_eq!(decode(&golden_be(), piece), Ok(expected(true)), "{piece}");
    }
}

#[test]
fn encoding_gives_the_golden_bytes() {
    for (be, golden) in [(false, golden_le()), (true, golden_be())] {
        let mut b = header(be).to_vec();
        b.extend_from_slice(&record(be, 1, 512, 5));
        b.extend_from_slice(b"hello");
        b.extend_from_slice(&record(be, 3, 0, 2));
        b.extend_from_slice(b"hi");
        b.extend_from_slice(&record(be, END_IDX, 0, 0));
        assert_eq!(b, golden);
    }
}

#[test]
fn broken_streams_say_where_they_broke() {
    let g = golden_le();
    // Cut anywhere before the end record: truncated, at the cut or at
    // the start of the record header it cut.
    for cut in 8..g.len() {
        match decode(&g[..cut], 64) {
            Err(BackupError::Truncated { at }) => {
                assert!(at <= cut as u64 && at + 16 > cut as u64, "{cut}: {at}")
            }
            other => panic!("{cut}: {other:?}"),
        }
    }
    assert_eq!(decode(b"rbd diff v1\n", 4), Err(BackupError::NotABackup));
    // Version 2 of the same magic.
    let mut v2 = g.clone();
    v2[0] = 2;
    assert_eq!(decode(&v2, 64), Err(BackupError::Version(2)));
    // A record past the end of its object.
    let mut b = header(false).to_vec();
    b.extend_from_slice(&record(false, 0, OS - 4, 5));
    assert_eq!(
        decode(&b, 64),
        Err(BackupError::OutsideObject { idx: 0, at: 8 })
    );
    // Bytes after the end record.
    let mut after = g.clone();
    after.push(0);
    assert_eq!(
        decode(&after, 64),
        Err(BackupError::AfterEnd { at: g.len() as u64 })
    );
}

#[test]
fn arbitrary_bytes_never_panic_nor_stall() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let g = golden_le();
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut s = g.clone();
        let at = (x % s.len() as u64) as usize;
        s[at] = (x >> 32) as u8;
        s.truncate(((x >> 40) as usize % (s.len() + 1)).max(at));
        // Every call uses bytes or asks for more; at most a few calls per
        // byte.
        let mut d = Decoder::new(OS);
        let mut lo = 0;
        let mut calls = 0;
        loop {
            calls += 1;
            assert!(calls < 4 * s.len() + 8, "stalled on {s:?}");
            match d.next(&s[lo..]) {
                Err(_) => break,
                Ok((0, None)) => break,
                Ok((n, _)) => lo += n,
            }
        }
    }
}
