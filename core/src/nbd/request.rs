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

#[cfg(test)]
mod tests {
    //! Request headers as QEMU's NBD client sends them (big-endian, the
    //! magic first), golden bytes from the spec's layout.
    use super::*;

    /// A 4 KiB READ at 1 MiB, cookie 0x0102030405060708.
    const READ: [u8; REQUEST_LEN] = [
        0x25, 0x60, 0x95, 0x13, // magic
        0x00, 0x00, // flags
        0x00, 0x00, // NBD_CMD_READ
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // cookie
        0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, // offset
        0x00, 0x00, 0x10, 0x00, // length
    ];

    #[test]
    fn a_read_header_parses_field_by_field() {
        let Ok(Parse::Complete(r)) = Request::parse(&READ) else {
            panic!("not parsed");
        };
        assert_eq!(r.command, Command::Read);
        assert_eq!(
            (r.cookie, r.offset, r.len),
            (0x0102_0304_0506_0708, 1 << 20, 4096)
        );
        assert_eq!(r.payload_len(), 0);
    }

    #[test]
    fn short_input_asks_for_the_whole_header() {
        for n in 0..REQUEST_LEN {
            assert_eq!(
                Request::parse(&READ[..n]),
                Ok(Parse::Partial { need: REQUEST_LEN })
            );
        }
    }

    #[test]
    fn a_write_carries_its_payload_and_is_bounded() {
        let mut w = READ;
        w[7] = 1; // NBD_CMD_WRITE
        w[4..6].copy_from_slice(&cmd_flags::FUA.to_be_bytes());
        let Ok(Parse::Complete(r)) = Request::parse(&w) else {
            panic!("not parsed");
        };
        assert_eq!((r.command, r.payload_len()), (Command::Write, 4096));
        let limits = Limits {
            size: 2 << 20,
            read_only: false,
            structured: true,
            base_allocation: false,
        };
        assert_eq!(r.check(&limits), Ok(()));
        let ro = Limits {
            read_only: true,
            ..limits
        };
        assert_eq!(r.check(&ro), Err(Errno::Perm));
        // Past the end, and a payload over 32 MiB.
        let small = Limits {
            size: 1 << 20,
            ..limits
        };
        assert_eq!(r.check(&small), Err(Errno::Inval));
        w[24..28].copy_from_slice(&(MAX_PAYLOAD + 1).to_be_bytes());
        assert_eq!(
            Request::parse(&w),
            Err(Error::PayloadTooLarge(MAX_PAYLOAD + 1))
        );
    }

    #[test]
    fn a_bad_magic_ends_the_connection() {
        let mut b = READ;
        b[0] = 0x26;
        assert!(matches!(Request::parse(&b), Err(Error::BadMagic { .. })));
        // Unknown commands parse, and are refused by the check.
        let mut o = READ;
        o[7] = 0x42;
        let Ok(Parse::Complete(r)) = Request::parse(&o) else {
            panic!("not parsed");
        };
        assert_eq!(r.command, Command::Other(0x42));
        let limits = Limits {
            size: 1 << 30,
            read_only: false,
            structured: false,
            base_allocation: false,
        };
        assert_eq!(r.check(&limits), Err(Errno::Inval));
    }
}
