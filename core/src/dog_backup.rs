//! The stream `dog vdi backup -F FROM -s TO` writes and `dog vdi restore`
//! reads (Sheepdog 1.0, `dog/vdi.c`; PROTOCOL.md §10.1):
//!
//! ```text
//! header:  u32 version (1), u32 magic (0x11921192)
//! records: u32 idx, u32 offset, u32 length, u32 reserved, then length bytes:
//!          bytes offset..offset+length of data object idx
//! end:     a record with idx 0xFFFFFFFF (and no data)
//! ```
//!
//! dog writes its structs as they are in memory, so the integers are in
//! the byte order of the host that made the stream. The header tells which:
//! both orders of version 1 and of the magic are distinct, so the decoder
//! reads either. The stream names no snapshots and no size, and its
//! offsets are within objects: the object size is the caller's (the VDI's,
//! since dog compacts against the snapshots' own objects).
//!
//! [`Decoder`] is sans-IO and copies nothing, as [`crate::rbd_diff`]'s:
//! data comes back as slices of the caller's bytes, as they arrive, at
//! their offset in the volume. Every error names its byte in the stream.

use core::fmt;

use byteorder::{BigEndian, ByteOrder, LittleEndian};

use crate::stream::StreamDecoder;

/// The version dog 1.0 writes.
pub const VERSION: u32 = 1;
/// The header's magic number.
pub const MAGIC: u32 = 0x1192_1192;
/// Bytes in the header.
pub const HEADER_LEN: usize = 8;
/// Bytes in a record header.
pub const RECORD_LEN: usize = 16;
/// The `idx` of the end record.
pub const END_IDX: u32 = u32::MAX;

/// Whether `prefix` (the first bytes of a stream, at least
/// [`HEADER_LEN`] of them to be sure) can be a dog backup stream.
pub fn is_backup(prefix: &[u8]) -> bool {
    let n = prefix.len().min(HEADER_LEN);
    [header(false), header(true)]
        .iter()
        .any(|h| h[..n] == prefix[..n])
}

/// The header in either byte order.
pub fn header(big_endian: bool) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    if big_endian {
        BigEndian::write_u32(&mut h[..4], VERSION);
        BigEndian::write_u32(&mut h[4..], MAGIC);
    } else {
        LittleEndian::write_u32(&mut h[..4], VERSION);
        LittleEndian::write_u32(&mut h[4..], MAGIC);
    }
    h
}

/// A record header in the given byte order (`idx` [`END_IDX`] for the end).
pub fn record(big_endian: bool, idx: u32, offset: u32, length: u32) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    let put = if big_endian {
        BigEndian::write_u32
    } else {
        LittleEndian::write_u32
    };
    put(&mut r[..4], idx);
    put(&mut r[4..8], offset);
    put(&mut r[8..12], length);
    r
}

/// What [`Decoder::next`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// The header; the stream's integers are big-endian if so.
    Header {
        /// The byte order of the host that wrote the stream.
        big_endian: bool,
    },
    /// A record: `len` bytes at `offset` in the volume follow, as `Data`.
    Record {
        /// The data object.
        idx: u32,
        /// Where its bytes go, in the volume.
        offset: u64,
        /// How many.
        len: u32,
    },
    /// Data of the current record, at this offset in the volume.
    Data {
        /// Where these bytes go.
        offset: u64,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// The end record.
    End,
}

/// Why a stream cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupError {
    /// The first bytes are not a dog backup header.
    NotABackup,
    /// A header of a version other than 1.
    Version(u32),
    /// A record whose bytes do not fit in its object, at this stream offset.
    OutsideObject {
        /// The object.
        idx: u32,
        /// Where in the stream.
        at: u64,
    },
    /// Bytes after the end record.
    AfterEnd {
        /// Where in the stream.
        at: u64,
    },
    /// The stream ended before its end record.
    Truncated {
        /// Where it ended.
        at: u64,
    },
}

impl core::error::Error for BackupError {}

impl fmt::Display for BackupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BackupError::NotABackup => f.write_str("not a dog vdi backup stream"),
            BackupError::Version(v) => {
                write!(f, "a dog vdi backup stream of version {v} (only 1 exists)")
            }
            BackupError::OutsideObject { idx, at } => write!(
                f,
                "the record at byte {at} writes past the end of object {idx}"
            ),
            BackupError::AfterEnd { at } => write!(f, "data after the end record, at byte {at}"),
            BackupError::Truncated { at } => {
                write!(f, "the stream ends at byte {at}, before its end record")
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    Records,
    Data { offset: u64, left: u32 },
    Ended,
}

/// Reads a dog backup stream; see the module docs.
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
    big_endian: bool,
    object_size: u32,
    at: u64,
}

impl StreamDecoder for Decoder {
    type Item<'a> = Item<'a>;
    type Error = BackupError;

    fn position(&self) -> u64 {
        self.at
    }

    fn is_done(&self) -> bool {
        self.state == State::Ended
    }

    fn truncated(at: u64) -> BackupError {
        BackupError::Truncated { at }
    }

    fn step<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Item<'a>>), BackupError> {
        self.decode(input)
    }

    fn consumed(&mut self, used: usize) {
        self.at += used as u64;
    }
}

impl Decoder {
    /// A decoder at the start of a stream for a volume of `object_size`
    /// byte objects.
    pub const fn new(object_size: u32) -> Decoder {
        Decoder {
            state: State::Header,
            big_endian: false,
            object_size,
            at: 0,
        }
    }

    fn u32_at(&self, b: &[u8], i: usize) -> u32 {
        if self.big_endian {
            BigEndian::read_u32(&b[i..i + 4])
        } else {
            LittleEndian::read_u32(&b[i..i + 4])
        }
    }

    /// One item from `input` ([`StreamDecoder::step`]); 16 bytes always
    /// suffice for a header or record.
    fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Item<'a>>), BackupError> {
        let at = self.at;
        match self.state {
            State::Header => {
                if !is_backup(input) {
                    // Tell a wrong version from not a backup at all.
                    if input.len() >= HEADER_LEN {
                        for be in [false, true] {
                            let h = header(be);
                            if input[4..8] == h[4..8] {
                                self.big_endian = be;
                                return Err(BackupError::Version(self.u32_at(input, 0)));
                            }
                        }
                    }
                    return Err(BackupError::NotABackup);
                }
                if input.len() < HEADER_LEN {
                    return Ok((0, None));
                }
                self.big_endian = input[..HEADER_LEN] == header(true);
                self.state = State::Records;
                Ok((
                    HEADER_LEN,
                    Some(Item::Header {
                        big_endian: self.big_endian,
                    }),
                ))
            }
            State::Records => {
                if input.len() < RECORD_LEN {
                    return Ok((0, None));
                }
                let idx = self.u32_at(input, 0);
                if idx == END_IDX {
                    self.state = State::Ended;
                    return Ok((RECORD_LEN, Some(Item::End)));
                }
                let (offset, len) = (self.u32_at(input, 4), self.u32_at(input, 8));
                if u64::from(offset) + u64::from(len) > u64::from(self.object_size) {
                    return Err(BackupError::OutsideObject { idx, at });
                }
                let offset = u64::from(idx) * u64::from(self.object_size) + u64::from(offset);
                if len > 0 {
                    self.state = State::Data { offset, left: len };
                }
                Ok((RECORD_LEN, Some(Item::Record { idx, offset, len })))
            }
            State::Data { offset, left } => {
                if input.is_empty() {
                    return Ok((0, None));
                }
                let n = (left as usize).min(input.len());
                let left = left - n as u32;
                self.state = if left == 0 {
                    State::Records
                } else {
                    State::Data {
                        offset: offset + n as u64,
                        left,
                    }
                };
                Ok((
                    n,
                    Some(Item::Data {
                        offset,
                        bytes: &input[..n],
                    }),
                ))
            }
            State::Ended => {
                if input.is_empty() {
                    Ok((0, None))
                } else {
                    Err(BackupError::AfterEnd { at })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_in_both_orders() {
        assert_eq!(header(false), [1, 0, 0, 0, 0x92, 0x11, 0x92, 0x11]);
        assert_eq!(header(true), [0, 0, 0, 1, 0x11, 0x92, 0x11, 0x92]);
        assert!(is_backup(&[1, 0, 0]));
        assert!(!is_backup(b"rbd diff v1\n"));
    }
}
