//! Error types. Each is a small `Copy` enum with a message a person can act
//! on: [`DecodeError`] for bytes from the network, [`SizeError`] for sizes
//! and object geometry, [`AddressError`] for VDI names and addresses typed by
//! a user.

use core::fmt;

/// Bytes from the network (or a file) that cannot be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The buffer is shorter than the structure.
    Truncated {
        /// Bytes the structure needs.
        need: usize,
        /// Bytes there were.
        have: usize,
    },
    /// A buffer that must have one exact length has another.
    BadLength {
        /// What the buffer holds.
        what: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it has.
        got: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::Truncated { need, have } => {
                write!(f, "truncated: need {need} bytes, have {have}")
            }
            DecodeError::BadLength {
                what,
                expected,
                got,
            } => write!(f, "{what} must be {expected} bytes, got {got}"),
        }
    }
}

/// A size, offset or object geometry outside what Sheepdog allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeError {
    /// `block_size_shift` outside 20..=31 (1 MiB to 2 GiB objects).
    BadBlockSizeShift(u8),
    /// An object size that is not a power of two between 1 MiB and 2 GiB.
    BadObjectSize(u64),
    /// A VDI size of zero.
    Zero,
    /// A VDI size past the limit for its object size.
    TooLarge {
        /// The size asked for.
        size: u64,
        /// The largest size allowed.
        max: u64,
    },
    /// A data object index past the flat index (2^20 entries).
    IndexOutOfRange(u64),
    /// A VID of 0 or of 2^24 and above.
    BadVid(u32),
    /// A copies count outside 1..=31.
    BadCopies(u8),
    /// An erasure code `D:P` with D not in {2,4,8,16} or P not in 1..=15.
    BadErasureCode {
        /// Data strips.
        data: u8,
        /// Parity strips.
        parity: u8,
    },
    /// A hyper volume (B-tree index), which this client refuses.
    HyperVolume,
    /// A hyper volume's B-tree cannot take more leaves (262,143).
    BtreeFull,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SizeError::BadBlockSizeShift(s) => write!(
                f,
                "object size shift {s} is out of range (20 to 31, i.e. 1 MiB to 2 GiB)"
            ),
            SizeError::BadObjectSize(n) => write!(
                f,
                "object size {n} is not a power of two between 1 MiB and 2 GiB"
            ),
            SizeError::Zero => f.write_str("size must not be zero"),
            SizeError::TooLarge { size, max } => write!(
                f,
                "size {size} is too large for the object size (at most {max} bytes)"
            ),
            SizeError::IndexOutOfRange(i) => {
                write!(f, "data object index {i} is past the 2^20-entry index")
            }
            SizeError::BadVid(v) => write!(f, "vdi id {v:#x} is out of range (1 to 0xffffff)"),
            SizeError::BadCopies(c) => write!(f, "copies {c} is out of range (1 to 31)"),
            SizeError::BadErasureCode { data, parity } => write!(
                f,
                "erasure code {data}:{parity} is invalid (data 2, 4, 8 or 16; parity 1 to 15)"
            ),
            SizeError::HyperVolume => f.write_str("hyper volumes (B-tree index) are not supported"),
            SizeError::BtreeFull => {
                f.write_str("the hyper volume's B-tree is full (262,143 leaves of 524,287 entries)")
            }
        }
    }
}

/// A VDI name, tag, snapshot id or address that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// The VDI name is empty.
    EmptyName,
    /// The VDI name is longer than 255 bytes.
    NameTooLong(usize),
    /// The snapshot tag after `@`, `:` or `#` is empty.
    EmptyTag,
    /// The snapshot tag is longer than 255 bytes.
    TagTooLong(usize),
    /// A name or tag holds a NUL byte, which would cut it short on the wire.
    NulByte,
    /// Snapshot id 0 names no snapshot.
    ZeroSnapshotId,
    /// A snapshot id past 2^32 - 1.
    SnapshotIdTooLarge,
    /// The host part is empty.
    EmptyHost,
    /// The port is not a number from 1 to 65535.
    BadPort,
    /// A URI scheme other than `sheepdog` or `sheepdog+tcp`.
    UnsupportedScheme,
    /// `sheepdog+unix` and other transports this client cannot use.
    UnsupportedTransport,
    /// A URI without a VDI name in its path.
    MissingName,
    /// A URI path with more than one segment.
    PathHasSlash,
    /// A URI with a query string.
    UnexpectedQuery,
    /// An IPv6 literal without its closing bracket.
    UnclosedBracket,
    /// More than three `:` in the QEMU form `host:port:vdi:snap`.
    TooManyColons,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AddressError::EmptyName => f.write_str("VDI name is empty"),
            AddressError::NameTooLong(n) => {
                write!(f, "VDI name is {n} bytes long; at most 255 are allowed")
            }
            AddressError::EmptyTag => f.write_str("snapshot tag is empty"),
            AddressError::TagTooLong(n) => {
                write!(f, "snapshot tag is {n} bytes long; at most 255 are allowed")
            }
            AddressError::NulByte => f.write_str("VDI name or tag contains a NUL byte"),
            AddressError::ZeroSnapshotId => f.write_str("snapshot id 0 names no snapshot"),
            AddressError::SnapshotIdTooLarge => {
                f.write_str("snapshot id is too large (at most 4294967295)")
            }
            AddressError::EmptyHost => f.write_str("host is empty"),
            AddressError::BadPort => f.write_str("port must be a number from 1 to 65535"),
            AddressError::UnsupportedScheme => {
                f.write_str("unsupported URI scheme (use sheepdog:// or sheepdog+tcp://)")
            }
            AddressError::UnsupportedTransport => {
                f.write_str("only the TCP transport is supported (not sheepdog+unix)")
            }
            AddressError::MissingName => f.write_str("URI has no VDI name after the host"),
            AddressError::PathHasSlash => f.write_str("VDI name in a URI must not contain '/'"),
            AddressError::UnexpectedQuery => f.write_str("URI query strings are not supported"),
            AddressError::UnclosedBracket => f.write_str("IPv6 host is missing its ']'"),
            AddressError::TooManyColons => f.write_str(
                "too many ':' (expected vdi, vdi:snap, host:port:vdi or host:port:vdi:snap)",
            ),
        }
    }
}

impl core::error::Error for DecodeError {}
impl core::error::Error for SizeError {}
impl core::error::Error for AddressError {}
