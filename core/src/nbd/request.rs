//! Transmission requests (`doc/proto.md`, "Transmission phase"): 28 header
//! bytes, then for a write its payload.
//!
//! ```text
//! C: 0x25609513 flags:16 type:16 cookie:64 offset:64 length:32  [data]
//! ```

use byteorder::{BigEndian, ByteOrder};

use super::{cmd, cmd_flags, Errno, Error, MAX_PAYLOAD, REQUEST_MAGIC};

/// Bytes of a request header.
pub const REQUEST_LEN: usize = 28;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// NBD_CMD_READ.
    Read,
    /// NBD_CMD_WRITE: `len` payload bytes follow the header.
    Write,
    /// NBD_CMD_DISC: finish what is in flight, then close.
    Disc,
    /// NBD_CMD_FLUSH.
    Flush,
    /// NBD_CMD_TRIM.
    Trim,
    /// NBD_CMD_CACHE (not advertised).
    Cache,
    /// NBD_CMD_WRITE_ZEROES.
    WriteZeroes,
    /// NBD_CMD_BLOCK_STATUS.
    BlockStatus,
    /// Anything else.
    Other(u16),
}

impl Command {
    fn from_u16(v: u16) -> Command {
        match v {
            cmd::READ => Command::Read,
            cmd::WRITE => Command::Write,
            cmd::DISC => Command::Disc,
            cmd::FLUSH => Command::Flush,
            cmd::TRIM => Command::Trim,
            cmd::CACHE => Command::Cache,
            cmd::WRITE_ZEROES => Command::WriteZeroes,
            cmd::BLOCK_STATUS => Command::BlockStatus,
            other => Command::Other(other),
        }
    }

    /// Whether it changes the export.
    pub fn writes(self) -> bool {
        matches!(self, Command::Write | Command::Trim | Command::WriteZeroes)
    }

    /// The spec's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Command::Read => "READ",
            Command::Write => "WRITE",
            Command::Disc => "DISC",
            Command::Flush => "FLUSH",
            Command::Trim => "TRIM",
            Command::Cache => "CACHE",
            Command::WriteZeroes => "WRITE_ZEROES",
            Command::BlockStatus => "BLOCK_STATUS",
            Command::Other(_) => "unknown command",
        }
    }
}

/// A request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Command flags (`NBD_CMD_FLAG_*`).
    pub flags: u16,
    /// The command.
    pub command: Command,
    /// The client's cookie, echoed in the reply.
    pub cookie: u64,
    /// Offset in the export.
    pub offset: u64,
    /// Length of the range (and of a write's payload).
    pub len: u32,
}

/// The result of parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// `need` bytes in all are needed.
    Partial {
        /// Bytes needed from the start of the input.
        need: usize,
    },
    /// A header (the first [`REQUEST_LEN`] bytes of the input).
    Complete(Request),
}

/// What the export allows, to check a request against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Export size in bytes.
    pub size: u64,
    /// Writes are refused with EPERM.
    pub read_only: bool,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// `base:allocation` was selected.
    pub base_allocation: bool,
}

impl Request {
    /// Parse a header at the start of `buf`. An error (a bad magic, or a
    /// write whose payload cannot be taken) means the stream cannot be
    /// followed: close the connection.
    pub fn parse(buf: &[u8]) -> Result<Parse, Error> {
        let Some(b) = buf.get(..REQUEST_LEN) else {
            return Ok(Parse::Partial { need: REQUEST_LEN });
        };
        let magic = BigEndian::read_u32(&b[0..4]);
        if magic != REQUEST_MAGIC {
            return Err(Error::BadMagic {
                what: "request",
                got: u64::from(magic),
            });
        }
        let req = Request {
            flags: BigEndian::read_u16(&b[4..6]),
            command: Command::from_u16(BigEndian::read_u16(&b[6..8])),
            cookie: BigEndian::read_u64(&b[8..16]),
            offset: BigEndian::read_u64(&b[16..24]),
            len: BigEndian::read_u32(&b[24..28]),
        };
        if req.command == Command::Write && req.len > MAX_PAYLOAD {
            return Err(Error::PayloadTooLarge(req.len));
        }
        Ok(Parse::Complete(req))
    }

    /// Payload bytes that follow the header.
    pub fn payload_len(&self) -> usize {
        if self.command == Command::Write {
            self.len as usize
        } else {
            0
        }
    }

    /// Whether the export can carry the request out: the error to reply
    /// with otherwise. Writes to a read-only export get EPERM before
    /// anything else is looked at.
    pub fn check(&self, limits: &Limits) -> Result<(), Errno> {
        use cmd_flags::*;
        let allowed = match self.command {
            Command::Read if limits.structured => DF,
            Command::Read => 0,
            Command::Write | Command::Trim => FUA,
            Command::WriteZeroes => FUA | NO_HOLE | FAST_ZERO,
            Command::BlockStatus => REQ_ONE,
            Command::Flush | Command::Disc => 0,
            Command::Cache | Command::Other(_) => return Err(Errno::Inval),
        };
        if self.command.writes() && limits.read_only {
            return Err(Errno::Perm);
        }
        if self.flags & !allowed != 0 {
            return Err(Errno::Inval);
        }
        if self.command == Command::BlockStatus && !limits.base_allocation {
            return Err(Errno::Inval);
        }
        if self.command == Command::Read && self.len > MAX_PAYLOAD {
            return Err(Errno::Overflow);
        }
        let ranged = !matches!(self.command, Command::Flush | Command::Disc);
        let end = self.offset.checked_add(u64::from(self.len));
        if ranged && end.is_none_or(|e| e > limits.size) {
            return Err(Errno::Inval);
        }
        Ok(())
    }
}
