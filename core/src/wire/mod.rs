//! The wire format: 48-byte request and response headers, opcodes, flags
//! and result codes (PROTOCOL.md §1–§6).
//!
//! [`Frame`] is a checked view over header bytes; [`Request`] and
//! [`Response`] are the parsed representations with `parse` and `emit`.
//! Decoding a header never fails once 48 bytes are there: unknown opcodes,
//! flags and results are kept as values.

mod flags;
pub mod frame;
mod opcode;
mod peer;
mod request;
mod response;
mod result;

pub use flags::Flags;
pub use frame::Frame;
pub use opcode::{ArgsKind, Opcode};
pub use peer::node_addr_bytes;
pub use request::{LockType, NewVdi, ObjArgs, Request, RequestArgs, VdiArgs};
pub use response::{Response, ResponseArgs, DIGEST_LEN};
pub use result::{ResultClass, ResultCode};

/// Size of a request or response header.
pub const HEADER_LEN: usize = 48;
/// `proto_ver` for client operations (opcodes below 0x80).
pub const PROTO_VER: u8 = 0x02;
/// `proto_ver` for internal operations (opcodes 0x80 and above).
pub const SHEEP_PROTO_VER: u8 = 0x0A;
/// Default TCP port of a sheep daemon.
pub const DEFAULT_PORT: u16 = 7000;
/// Length of the NUL-padded name field.
pub const NAME_LEN: usize = 256;
/// Length of the NUL-padded tag field.
pub const TAG_LEN: usize = 256;
/// Length of a name + tag lookup payload.
pub const NAME_TAG_LEN: usize = NAME_LEN + TAG_LEN;
/// Length of the READ_VDIS / READ_DEL_VDIS bitmaps (2^24 bits).
pub const VDI_BITMAP_LEN: usize = 1 << 21;
