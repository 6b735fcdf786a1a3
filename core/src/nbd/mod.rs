//! The server side of the NBD protocol (`doc/proto.md` of
//! NetworkBlockDevice/nbd; the parts used are in `docs/NBD.md`), sans-IO
//! like the Sheepdog side: bytes from the client in, bytes to send out,
//! both in the caller's buffers. No allocation, no I/O, and no panic on
//! anything a client sends.
//!
//! - [`handshake`]: the fixed newstyle negotiation as a state machine.
//!   [`handshake::Handshake::parse`] takes the client's bytes and either
//!   answers by itself (structured replies, metadata contexts, abort,
//!   unsupported and malformed options) or asks the caller a
//!   [`handshake::Question`] that needs the exports (`NBD_OPT_GO`,
//!   `NBD_OPT_INFO`, `NBD_OPT_EXPORT_NAME`, `NBD_OPT_LIST`), which the
//!   caller answers with the `answer_*` methods. It ends with transmission
//!   starting for one export ([`handshake::Negotiated`]).
//! - [`request`]: transmission requests parsed from 28 header bytes
//!   ([`request::Request::parse`] says how many bytes it still needs, as
//!   httparse's `Partial` does) and checked against the export
//!   ([`request::Request::check`]).
//! - [`reply`]: simple replies and structured reply chunks (OFFSET_DATA,
//!   OFFSET_HOLE, BLOCK_STATUS, ERROR, NONE) written into caller buffers;
//!   read data follows its header from wherever the caller holds it.
//!
//! Nothing here knows Sheepdog: the tool joins the two protocols.

pub mod handshake;
pub mod reply;
pub mod request;

use core::fmt;

/// The default NBD port.
pub const DEFAULT_PORT: u16 = 10809;
/// "NBDMAGIC", the first 8 bytes the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT": after NBDMAGIC from the server, and before every option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// The magic of option replies.
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// The magic of transmission requests.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// The magic of simple replies.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// The magic of structured reply chunks.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// The largest string the protocol allows (export names, messages).
pub const MAX_STRING: usize = 4096;
/// The largest request payload (a write) the server takes and the largest
/// read it answers: 32 MiB, the size the spec says no one should consider
/// a denial of service.
pub const MAX_PAYLOAD: u32 = 32 << 20;

/// Handshake flags the server sends.
pub mod handshake_flags {
    /// The fixed newstyle protocol.
    pub const FIXED_NEWSTYLE: u16 = 1 << 0;
    /// No 124 zero bytes after the `NBD_OPT_EXPORT_NAME` reply.
    pub const NO_ZEROES: u16 = 1 << 1;
}

/// Client flags, the client's answer to the handshake flags.
pub mod client_flags {
    /// The client speaks fixed newstyle.
    pub const FIXED_NEWSTYLE: u32 = 1 << 0;
    /// The client wants no zero padding.
    pub const NO_ZEROES: u32 = 1 << 1;
}

/// Transmission flags (per export).
pub mod transmission_flags {
    /// Always set: the other flags mean something.
    pub const HAS_FLAGS: u16 = 1 << 0;
    /// The export is read-only.
    pub const READ_ONLY: u16 = 1 << 1;
    /// NBD_CMD_FLUSH is supported.
    pub const SEND_FLUSH: u16 = 1 << 2;
    /// NBD_CMD_FLAG_FUA is supported.
    pub const SEND_FUA: u16 = 1 << 3;
    /// The export is rotational media.
    pub const ROTATIONAL: u16 = 1 << 4;
    /// NBD_CMD_TRIM is supported.
    pub const SEND_TRIM: u16 = 1 << 5;
    /// NBD_CMD_WRITE_ZEROES is supported.
    pub const SEND_WRITE_ZEROES: u16 = 1 << 6;
    /// NBD_CMD_FLAG_DF is supported.
    pub const SEND_DF: u16 = 1 << 7;
    /// Several connections to the export see one consistent volume.
    pub const CAN_MULTI_CONN: u16 = 1 << 8;
    /// NBD_CMD_CACHE is supported.
    pub const SEND_CACHE: u16 = 1 << 10;
    /// NBD_CMD_FLAG_FAST_ZERO is supported.
    pub const SEND_FAST_ZERO: u16 = 1 << 11;
}

/// Option numbers (`NBD_OPT_*`).
pub mod opt {
    /// Choose an export and start transmission (old style).
    pub const EXPORT_NAME: u32 = 1;
    /// End the negotiation.
    pub const ABORT: u32 = 2;
    /// List the exports.
    pub const LIST: u32 = 3;
    /// Withdrawn.
    pub const PEEK_EXPORT: u32 = 4;
    /// TLS.
    pub const STARTTLS: u32 = 5;
    /// Ask about an export.
    pub const INFO: u32 = 6;
    /// Ask about an export and start transmission.
    pub const GO: u32 = 7;
    /// Structured replies.
    pub const STRUCTURED_REPLY: u32 = 8;
    /// List metadata contexts.
    pub const LIST_META_CONTEXT: u32 = 9;
    /// Select metadata contexts.
    pub const SET_META_CONTEXT: u32 = 10;
    /// 64-bit headers.
    pub const EXTENDED_HEADERS: u32 = 11;
}

/// Option reply types (`NBD_REP_*`).
pub mod rep {
    /// The option was handled.
    pub const ACK: u32 = 1;
    /// One export, in reply to LIST.
    pub const SERVER: u32 = 2;
    /// Information about an export.
    pub const INFO: u32 = 3;
    /// A metadata context.
    pub const META_CONTEXT: u32 = 4;
    /// The option is unknown or not supported.
    pub const ERR_UNSUP: u32 = (1 << 31) + 1;
    /// Forbidden by the server's policy.
    pub const ERR_POLICY: u32 = (1 << 31) + 2;
    /// Malformed, or not valid now.
    pub const ERR_INVALID: u32 = (1 << 31) + 3;
    /// Not supported on this platform.
    pub const ERR_PLATFORM: u32 = (1 << 31) + 4;
    /// TLS is required first.
    pub const ERR_TLS_REQD: u32 = (1 << 31) + 5;
    /// No such export.
    pub const ERR_UNKNOWN: u32 = (1 << 31) + 6;
    /// The server is shutting down.
    pub const ERR_SHUTDOWN: u32 = (1 << 31) + 7;
    /// The client must ask for block sizes.
    pub const ERR_BLOCK_SIZE_REQD: u32 = (1 << 31) + 8;
    /// The request is too large.
    pub const ERR_TOO_BIG: u32 = (1 << 31) + 9;
}

/// Information types in NBD_REP_INFO (`NBD_INFO_*`).
pub mod info {
    /// Size and transmission flags.
    pub const EXPORT: u16 = 0;
    /// The export's canonical name.
    pub const NAME: u16 = 1;
    /// A description for people.
    pub const DESCRIPTION: u16 = 2;
    /// Minimum, preferred and maximum block sizes.
    pub const BLOCK_SIZE: u16 = 3;
}

/// Command types (`NBD_CMD_*`).
pub mod cmd {
    /// Read.
    pub const READ: u16 = 0;
    /// Write (a payload follows the request).
    pub const WRITE: u16 = 1;
    /// Disconnect.
    pub const DISC: u16 = 2;
    /// Flush.
    pub const FLUSH: u16 = 3;
    /// Trim.
    pub const TRIM: u16 = 4;
    /// Prefetch.
    pub const CACHE: u16 = 5;
    /// Write zeros.
    pub const WRITE_ZEROES: u16 = 6;
    /// Block status.
    pub const BLOCK_STATUS: u16 = 7;
}

/// Command flags (`NBD_CMD_FLAG_*`).
pub mod cmd_flags {
    /// Force unit access.
    pub const FUA: u16 = 1 << 0;
    /// WRITE_ZEROES must not punch holes.
    pub const NO_HOLE: u16 = 1 << 1;
    /// Do not fragment a structured read reply.
    pub const DF: u16 = 1 << 2;
    /// One extent only in BLOCK_STATUS.
    pub const REQ_ONE: u16 = 1 << 3;
    /// WRITE_ZEROES fails fast unless it is fast.
    pub const FAST_ZERO: u16 = 1 << 4;
    /// Extended headers only.
    pub const PAYLOAD_LEN: u16 = 1 << 5;
}

/// Structured reply chunk types (`NBD_REPLY_TYPE_*`).
pub mod chunk {
    /// No payload; ends a reply.
    pub const NONE: u16 = 0;
    /// Data at an offset.
    pub const OFFSET_DATA: u16 = 1;
    /// A run of zeros at an offset.
    pub const OFFSET_HOLE: u16 = 2;
    /// Block status descriptors.
    pub const BLOCK_STATUS: u16 = 5;
    /// An error.
    pub const ERROR: u16 = (1 << 15) + 1;
    /// The DONE flag: the last chunk of its reply.
    pub const FLAG_DONE: u16 = 1 << 0;
}

/// The `base:allocation` metadata context and its status flags.
pub mod base_allocation {
    /// Its name.
    pub const NAME: &[u8] = b"base:allocation";
    /// The id this server gives it.
    pub const ID: u32 = 1;
    /// The extent is not allocated.
    pub const HOLE: u32 = 1 << 0;
    /// The extent reads as zeros.
    pub const ZERO: u32 = 1 << 1;
}

/// Error values in replies (`NBD_E*`, POSIX numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Errno {
    /// Operation not permitted (a write to a read-only export).
    Perm = 1,
    /// Input/output error (what the cluster refused).
    Io = 5,
    /// Out of memory.
    NoMem = 12,
    /// Invalid argument (out of range, unknown command, bad flags).
    Inval = 22,
    /// No space left.
    NoSpc = 28,
    /// Value too large.
    Overflow = 75,
    /// Not supported (a FAST_ZERO that would be slow).
    NotSup = 95,
    /// The server is shutting down.
    Shutdown = 108,
}

impl Errno {
    /// The value on the wire.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The name the spec gives it.
    pub fn name(self) -> &'static str {
        match self {
            Errno::Perm => "EPERM",
            Errno::Io => "EIO",
            Errno::NoMem => "ENOMEM",
            Errno::Inval => "EINVAL",
            Errno::NoSpc => "ENOSPC",
            Errno::Overflow => "EOVERFLOW",
            Errno::NotSup => "ENOTSUP",
            Errno::Shutdown => "ESHUTDOWN",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a connection cannot go on: the caller closes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A magic number that is not the protocol's.
    BadMagic {
        /// Where it was expected.
        what: &'static str,
        /// What came.
        got: u64,
    },
    /// Client flags this server does not know, or without fixed newstyle.
    ClientFlags(u32),
    /// A write whose payload is larger than [`MAX_PAYLOAD`].
    PayloadTooLarge(u32),
    /// Bytes that belong to another phase of the protocol.
    OutOfPhase,
    /// NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS where TLS is required:
    /// the option has no error reply, so the connection closes.
    TlsRequired,
    /// The caller's output buffer is too small.
    BufferTooSmall {
        /// Bytes it must hold.
        need: usize,
    },
}

impl core::error::Error for Error {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::BadMagic { what, got } => write!(f, "bad {what} magic {got:#x}"),
            Error::ClientFlags(flags) => write!(f, "unsupported client flags {flags:#x}"),
            Error::PayloadTooLarge(len) => {
                write!(f, "write of {len} bytes, more than {MAX_PAYLOAD}")
            }
            Error::OutOfPhase => f.write_str("message out of phase"),
            Error::TlsRequired => f.write_str("EXPORT_NAME without TLS, which is required"),
            Error::BufferTooSmall { need } => {
                write!(f, "output buffer too small: need {need} bytes")
            }
        }
    }
}

/// Copy `src` into `out` at `at`, or say how large `out` must be.
pub(crate) fn put(out: &mut [u8], at: usize, src: &[u8]) -> Result<usize, Error> {
    let end = at + src.len();
    match out.get_mut(at..end) {
        Some(dst) => {
            dst.copy_from_slice(src);
            Ok(end)
        }
        None => Err(Error::BufferTooSmall { need: end }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_values_are_posix() {
        assert_eq!(Errno::Perm.code(), 1);
        assert_eq!(Errno::Io.code(), 5);
        assert_eq!(Errno::Inval.code(), 22);
        assert_eq!(Errno::Shutdown.code(), 108);
        assert_eq!(Errno::NotSup.name(), "ENOTSUP");
    }
}
