//! Why an operation or an exchange failed: the errors every layer above
//! the wire names, kept here below them all so that none has to import a
//! higher module to name a failure ([`Error`], and [`BadReply`] with its
//! [`Problem`] for a reply that does not fit its request).

use core::fmt;

use crate::error::{AddressError, DecodeError, SizeError};
use crate::oid::Oid;
use crate::wire::{Opcode, ResultCode};

/// Why an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The server answered an operation with a failure.
    Server {
        /// The operation.
        opcode: Opcode,
        /// The result.
        result: ResultCode,
    },
    /// A transient failure persisted through every retry.
    RetriesExhausted {
        /// The operation.
        opcode: Opcode,
        /// The last result.
        result: ResultCode,
    },
    /// A size or geometry problem.
    Size(SizeError),
    /// A bad name, tag or address.
    Address(AddressError),
    /// A malformed reply.
    Decode(DecodeError),
    /// A reply whose id names no request in flight: the stream is out of
    /// step, and the connection must be dropped.
    UnexpectedReply {
        /// The reply's id.
        id: u32,
    },
    /// A reply that does not fit the request it answers: nothing it
    /// claimed was believed, and the connection must be dropped.
    BadReply(BadReply),
    /// An index write failed for good, so the inode may or may not hold
    /// the entries the cache has: writes are refused until the VDI is
    /// opened again (reads still work).
    IndexUnsettled,
    /// The caller's transmit buffer is too small.
    BufferTooSmall {
        /// Bytes it must hold.
        need: usize,
    },
    /// The request could not be built any more (the state it depended on
    /// is gone); a bug, reported instead of waiting forever.
    Internal(&'static str),
    /// As many operations are running as the engine holds; drain events.
    Busy,
    /// No VDI is open.
    NotOpen,
    /// A VDI is already open.
    AlreadyOpen,
    /// Writes to a snapshot are refused.
    ReadOnly,
    /// The operation needs an open snapshot.
    NotSnapshot,
    /// A range past the end of the VDI.
    OutOfRange {
        /// Offset asked for.
        offset: u64,
        /// Length asked for.
        len: u64,
        /// The VDI's size.
        size: u64,
    },
    /// The caller's index buffer cannot hold the VDI's index.
    IndexBufferTooSmall {
        /// Bytes needed.
        need: u64,
    },
    /// Shrinking is refused.
    Shrink {
        /// Current size.
        size: u64,
        /// Size asked for.
        new_size: u64,
    },
    /// A snapshot with that tag exists already.
    TagExists,
    /// The working VDI is not the one the operation was prepared for (it
    /// was snapshotted behind our back): now it is this VID.
    WorkingVdiMoved {
        /// The working VDI's VID now.
        vid: u32,
    },
    /// The connection was lost as often as the retry policy allows while
    /// the operation was in flight.
    ConnectionLost,
    /// A hyper volume's B-tree names another object for index `idx` than
    /// the cache loaded at open: someone else wrote the volume meanwhile,
    /// and rebuilding the tree from the cache would lose that write.
    TreeChanged {
        /// The index.
        idx: u32,
    },
}

/// The request a bad reply answered, and what was wrong with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadReply {
    /// The request's opcode.
    pub opcode: Opcode,
    /// What it was about.
    pub target: Target,
    /// What did not fit.
    pub problem: Problem,
}

/// What a request was about, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// An object.
    Oid(Oid),
    /// A VDI, by VID (0: looked up by name).
    Vdi(u32),
    /// The cluster.
    Cluster,
}

/// How a reply did not fit its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A payload of another length than the request fixes.
    Length {
        /// Bytes the reply announced.
        got: u32,
        /// Bytes the request asked for.
        expected: u32,
    },
    /// A payload longer than the buffer the request offered.
    TooLong {
        /// Bytes the reply announced.
        got: u32,
        /// The most the request allows.
        max: u32,
    },
    /// The opcode is not the request's.
    Opcode {
        /// The opcode in the reply.
        got: u8,
    },
    /// A VID of 0 or 2^24 and above where a VDI was named.
    Vid {
        /// The value.
        got: u32,
    },
    /// A field of the payload (an inode header, index entries, cluster
    /// defaults) with a value that cannot be.
    Field {
        /// The field.
        name: &'static str,
        /// Its value.
        got: u64,
        /// What it had to be (0: any valid value).
        expected: u64,
    },
}

impl fmt::Display for BadReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad reply to {}", self.opcode)?;
        match self.target {
            Target::Oid(oid) => write!(f, " of oid {oid}")?,
            Target::Vdi(0) | Target::Cluster => {}
            Target::Vdi(vid) => write!(f, " for VDI {vid:x}")?,
        }
        write!(f, ": {}", self.problem)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Problem::Length { got, expected } => write!(f, "{got} bytes, expected {expected}"),
            Problem::TooLong { got, max } => write!(f, "{got} bytes, at most {max} expected"),
            Problem::Opcode { got } => write!(f, "opcode {got:#04x}"),
            Problem::Vid { got } => write!(f, "VID {got:#x} is out of range"),
            Problem::Field {
                name,
                got,
                expected: 0,
            } => write!(f, "{name} {got} cannot be"),
            Problem::Field {
                name,
                got,
                expected,
            } => write!(f, "{name} {got:#x}, expected {expected:#x}"),
        }
    }
}

impl From<SizeError> for Error {
    fn from(e: SizeError) -> Error {
        Error::Size(e)
    }
}

impl From<AddressError> for Error {
    fn from(e: AddressError) -> Error {
        Error::Address(e)
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Error {
        Error::Decode(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Server { opcode, result } => write!(f, "{result} ({opcode})"),
            Error::RetriesExhausted { opcode, result } => {
                write!(f, "{result} ({opcode}), still failing after retries")
            }
            Error::Size(e) => e.fmt(f),
            Error::Address(e) => e.fmt(f),
            Error::Decode(e) => write!(f, "malformed reply: {e}"),
            Error::UnexpectedReply { id } => {
                write!(f, "reply with id {id}, which no request in flight has")
            }
            Error::BadReply(b) => b.fmt(f),
            Error::IndexUnsettled => f.write_str(
                "an index write failed, so the VDI's index is not known: open it again to write",
            ),
            Error::BufferTooSmall { need } => {
                write!(f, "transmit buffer too small: need {need} bytes")
            }
            Error::Internal(what) => write!(f, "internal error: {what}"),
            Error::Busy => f.write_str("too many operations in flight"),
            Error::NotOpen => f.write_str("no VDI is open"),
            Error::AlreadyOpen => f.write_str("a VDI is already open"),
            Error::ReadOnly => f.write_str("snapshots are read-only"),
            Error::NotSnapshot => f.write_str("the open VDI is not a snapshot"),
            Error::OutOfRange { offset, len, size } => write!(
                f,
                "range {offset}+{len} is past the end of the VDI ({size} bytes)"
            ),
            Error::IndexBufferTooSmall { need } => {
                write!(f, "index buffer too small: the VDI needs {need} bytes")
            }
            Error::Shrink { size, new_size } => write!(
                f,
                "cannot shrink a VDI from {size} to {new_size} bytes (grow only)"
            ),
            Error::TagExists => f.write_str("a snapshot with that tag already exists"),
            Error::WorkingVdiMoved { vid } => write!(
                f,
                "the VDI was snapshotted by another client meanwhile (its working VDI is now {vid:x})"
            ),
            Error::ConnectionLost => {
                f.write_str("connection lost too many times while the request was in flight")
            }
            Error::TreeChanged { idx } => write!(
                f,
                "the hyper volume's B-tree changed since it was opened (object {idx}): \
                 another client wrote it"
            ),
        }
    }
}

impl core::error::Error for BadReply {}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Size(e) => Some(e),
            Error::Address(e) => Some(e),
            Error::Decode(e) => Some(e),
            Error::BadReply(e) => Some(e),
            _ => None,
        }
    }
}
