//! Ceph's `rbd diff` stream, v1 and v2 (Ceph's `doc/dev/rbd-diff.rst`):
//! the format `rbd export-diff` writes and `rbd import-diff` reads, and so
//! what a migration from Sheepdog into Ceph consumes.
//!
//! ```text
//! v1: "rbd diff v1\n", then records: a one-byte tag and its fields
//! v2: "rbd diff v2\n", then records: a tag, a le64 length of what follows
//!     (so that unknown tags can be skipped), and the fields
//! 'f' from snap: le32 name length, name     't' to snap: likewise
//! 's' size: le64 (ending) image size
//! 'w' data: le64 offset, le64 length, then length bytes
//! 'z' zeros: le64 offset, le64 length
//! 'e' end (no length, in v2 too)
//! ```
//!
//! Metadata records (`f`, `t`, `s`) come before the data records. All
//! integers are little-endian.
//!
//! [`Decoder`] is sans-IO and copies nothing: it is handed the bytes the
//! caller has and says how many it used and what they were; the data of a
//! `w` record comes back as slices of the caller's bytes, as they arrive.
//! Every error names the offset in the stream where it broke.
//! [`encode`] writes the header of any record into a caller buffer.

use core::fmt;

use byteorder::{ByteOrder, LittleEndian};

use crate::stream::StreamDecoder;

/// The first bytes of a v1 stream.
pub const V1_MAGIC: &[u8; 12] = b"rbd diff v1\n";
/// The first bytes of a v2 stream.
pub const V2_MAGIC: &[u8; 12] = b"rbd diff v2\n";
/// The longest snapshot name accepted (Sheepdog's tags are at most 256
/// bytes; rbd's names are shorter still).
pub const MAX_NAME: usize = 4096;
/// The most bytes any record header takes, name included: what a caller's
/// buffer must be able to hold for [`Decoder::next`] to make progress.
pub const MAX_RECORD_HEADER: usize = 1 + 8 + 4 + MAX_NAME;

/// Which version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `rbd diff v1`: fields follow the tag.
    V1,
    /// `rbd diff v2`: a le64 length follows the tag.
    V2,
}

/// One record, as the stream holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// `f`: the snapshot the diff starts from.
    From(&'a [u8]),
    /// `t`: the snapshot the diff leads to.
    To(&'a [u8]),
    /// `s`: the image size at the end.
    Size(u64),
    /// `w`: `len` bytes of data at `offset`; they follow the record header.
    Write {
        /// Where, in the image.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// `z`: `len` bytes of zeros at `offset`.
    Zero {
        /// Where, in the image.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// `e`: the end of the stream.
    End,
}

/// What [`Decoder::next`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// The stream's header.
    Header(Version),
    /// A record. A `Write` is followed by its data, as `Data` items.
    Record(Record<'a>),
    /// Data of the current `w` record, at this offset in the image.
    Data {
        /// Where these bytes go.
        offset: u64,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// A v2 record of a tag this decoder does not know, skipped.
    Skipped(u8),
}

/// Why a stream cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffError {
    /// Not an rbd diff stream (the first bytes).
    NotADiff,
    /// A tag no version has (v1), at this stream offset.
    UnknownTag {
        /// The tag.
        tag: u8,
        /// Where in the stream.
        at: u64,
    },
    /// A record whose fields cannot be: a name too long, a v2 length that
    /// does not match the record, a range past 2^64, metadata after data.
    Bad {
        /// What is wrong.
        what: &'static str,
        /// Where in the stream.
        at: u64,
    },
    /// A record after the end record.
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

impl fmt::Display for DiffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DiffError::NotADiff => {
                f.write_str("not an rbd diff stream (no 'rbd diff v1' or 'v2' header)")
            }
            DiffError::UnknownTag { tag, at } => {
                write!(f, "unknown record tag {tag:#04x} at byte {at}")
            }
            DiffError::Bad { what, at } => write!(f, "bad record at byte {at}: {what}"),
            DiffError::AfterEnd { at } => write!(f, "data after the end record, at byte {at}"),
            DiffError::Truncated { at } => {
                write!(f, "the stream ends at byte {at}, before its end record")
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Magic,
    Records {
        data_seen: bool,
    },
    /// Data of a `w` record: where the next byte goes, how many are left.
    Data {
        offset: u64,
        left: u64,
    },
    /// Bytes of an unknown v2 record left to skip.
    Skip {
        left: u64,
        data_seen: bool,
    },
    Ended,
}

/// Reads an rbd diff stream; see the module docs.
#[derive(Clone, Debug)]
pub struct Decoder {
    state: State,
    version: Version,
    /// Stream bytes consumed so far.
    at: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl StreamDecoder for Decoder {
    type Item<'a> = Item<'a>;
    type Error = DiffError;

    fn position(&self) -> u64 {
        self.at
    }

    fn is_done(&self) -> bool {
        self.state == State::Ended
    }

    fn truncated(at: u64) -> DiffError {
        DiffError::Truncated { at }
    }

    fn step<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Item<'a>>), DiffError> {
        self.decode(input)
    }

    fn consumed(&mut self, used: usize) {
        self.at += used as u64;
    }
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub const fn new() -> Decoder {
        Decoder {
            state: State::Magic,
            version: Version::V1,
            at: 0,
        }
    }

    /// One item from `input` ([`StreamDecoder::step`]); a buffer of
    /// [`MAX_RECORD_HEADER`] bytes always suffices for a record header.
    fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Item<'a>>), DiffError> {
        let at = self.at;
        match self.state {
            State::Magic => {
                if input.len() < V1_MAGIC.len() {
                    let prefix = |m: &[u8]| m.starts_with(input);
                    return if prefix(V1_MAGIC) || prefix(V2_MAGIC) {
                        Ok((0, None))
                    } else {
                        Err(DiffError::NotADiff)
                    };
                }
                let version = match &input[..12] {
                    m if m == V1_MAGIC => Version::V1,
                    m if m == V2_MAGIC => Version::V2,
                    _ => return Err(DiffError::NotADiff),
                };
                self.version = version;
                self.state = State::Records { data_seen: false };
                Ok((12, Some(Item::Header(version))))
            }
            State::Data { offset, left } => {
                if input.is_empty() {
                    return Ok((0, None));
                }
                let n = (left.min(input.len() as u64)) as usize;
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::Records { data_seen: true }
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
            State::Skip { left, data_seen } => {
                if input.is_empty() {
                    return Ok((0, None));
                }
                let n = (left.min(input.len() as u64)) as usize;
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::Records { data_seen }
                } else {
                    State::Skip { left, data_seen }
                };
                Ok((n, None))
            }
            State::Ended => {
                if input.is_empty() {
                    Ok((0, None))
                } else {
                    Err(DiffError::AfterEnd { at })
                }
            }
            State::Records { data_seen } => self.record(input, data_seen),
        }
    }

    fn record<'a>(
        &mut self,
        input: &'a [u8],
        data_seen: bool,
    ) -> Result<(usize, Option<Item<'a>>), DiffError> {
        let at = self.at;
        let Some(&tag) = input.first() else {
            return Ok((0, None));
        };
        let bad = |what| DiffError::Bad { what, at };
        if tag == b'e' {
            self.state = State::Ended;
            return Ok((1, Some(Item::Record(Record::End))));
        }
        // The fields, and (v2) the length that says how long they are.
        let (fields, declared) = match self.version {
            Version::V1 => (&input[1..], None),
            Version::V2 => {
                if input.len() < 9 {
                    return Ok((0, None));
                }
                (&input[9..], Some(LittleEndian::read_u64(&input[1..9])))
            }
        };
        let head = input.len() - fields.len();
        let u64_at = |i: usize| LittleEndian::read_u64(&fields[i..i + 8]);
        let (len, record) = match tag {
            b'f' | b't' => {
                if data_seen {
                    return Err(bad("a snapshot name after data records"));
                }
                if fields.len() < 4 {
                    return Ok((0, None));
                }
                let n = LittleEndian::read_u32(&fields[..4]) as usize;
                if n > MAX_NAME {
                    return Err(bad("a snapshot name longer than 4096 bytes"));
                }
                if fields.len() < 4 + n {
                    return Ok((0, None));
                }
                let name = &fields[4..4 + n];
                let r = if tag == b'f' {
                    Record::From(name)
                } else {
                    Record::To(name)
                };
                (4 + n, r)
            }
            b's' => {
                if data_seen {
                    return Err(bad("a size record after data records"));
                }
                if fields.len() < 8 {
                    return Ok((0, None));
                }
                (8, Record::Size(u64_at(0)))
            }
            b'w' | b'z' => {
                if fields.len() < 16 {
                    return Ok((0, None));
                }
                let (offset, len) = (u64_at(0), u64_at(8));
                if offset.checked_add(len).is_none() {
                    return Err(bad("a range past the largest offset"));
                }
                let r = if tag == b'w' {
                    Record::Write { offset, len }
                } else {
                    Record::Zero { offset, len }
                };
                (16, r)
            }
            other => match declared {
                // v2: a record of a tag we do not know, skipped whole.
                Some(n) => {
                    self.state = if n == 0 {
                        State::Records { data_seen }
                    } else {
                        State::Skip { left: n, data_seen }
                    };
                    return Ok((head, Some(Item::Skipped(other))));
                }
                None => return Err(DiffError::UnknownTag { tag: other, at }),
            },
        };
        if let Some(declared) = declared {
            let want = match record {
                Record::Write { len: data, .. } => 16u64.checked_add(data),
                _ => Some(len as u64),
            };
            if want != Some(declared) {
                return Err(bad("a v2 record length that does not match its fields"));
            }
        }
        self.state = match record {
            Record::Write { offset, len } if len > 0 => State::Data { offset, left: len },
            Record::Write { .. } | Record::Zero { .. } => State::Records { data_seen: true },
            _ => State::Records { data_seen },
        };
        Ok((head + len, Some(Item::Record(record))))
    }
}

impl core::error::Error for DiffError {}

/// Why a record cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The buffer is smaller than the record header.
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
    },
    /// A name longer than [`MAX_NAME`].
    NameTooLong,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall { need } => {
                write!(f, "a record needs a buffer of {need} bytes")
            }
            EncodeError::NameTooLong => {
                write!(f, "a snapshot name is longer than {MAX_NAME} bytes")
            }
        }
    }
}

impl core::error::Error for EncodeError {}

/// The header of a stream of `version`.
pub fn magic(version: Version) -> &'static [u8; 12] {
    match version {
        Version::V1 => V1_MAGIC,
        Version::V2 => V2_MAGIC,
    }
}

/// Write `record` (for a `Write`, only its header: its data follows) into
/// `out`; returns the bytes written.
pub fn encode(version: Version, record: &Record<'_>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let v2 = version == Version::V2;
    let (tag, fields, appended): (u8, usize, u64) = match *record {
        Record::From(n) | Record::To(n) => {
            if n.len() > MAX_NAME {
                return Err(EncodeError::NameTooLong);
            }
            let tag = if matches!(record, Record::From(_)) {
                b'f'
            } else {
                b't'
            };
            (tag, 4 + n.len(), 4 + n.len() as u64)
        }
        Record::Size(_) => (b's', 8, 8),
        Record::Write { len, .. } => (b'w', 16, 16 + len),
        Record::Zero { .. } => (b'z', 16, 16),
        Record::End => (b'e', 0, 0),
    };
    let length_field = if v2 && tag != b'e' { 8 } else { 0 };
    let need = 1 + length_field + fields;
    let out = out
        .get_mut(..need)
        .ok_or(EncodeError::BufferTooSmall { need })?;
    out[0] = tag;
    if length_field > 0 {
        LittleEndian::write_u64(&mut out[1..9], appended);
    }
    let f = &mut out[1 + length_field..];
    match *record {
        Record::From(n) | Record::To(n) => {
            LittleEndian::write_u32(&mut f[..4], n.len() as u32);
            f[4..].copy_from_slice(n);
        }
        Record::Size(s) => LittleEndian::write_u64(f, s),
        Record::Write { offset, len } | Record::Zero { offset, len } => {
            LittleEndian::write_u64(&mut f[..8], offset);
            LittleEndian::write_u64(&mut f[8..16], len);
        }
        Record::End => {}
    }
    Ok(need)
}
