//! Where a reply's payload goes, and what takes replies: the contract
//! between the one receive path ([`crate::receive::Receiver`]) and every
//! machine that reads replies (the engine, the lister, an
//! [`Exchange`](super::Exchange)). It names no machine: each says in its
//! own module that it takes replies (`impl Replies`).

use core::ops::Range;

/// A caller's token for a read or write, echoed in its completion.
pub type Token = u64;

/// A range of the data a caller gave with a write, or the buffer it gave
/// with a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRange {
    /// The operation.
    pub token: Token,
    /// Offsets relative to the start of the operation's range.
    pub range: Range<u64>,
}

/// Where the payload of a reply goes: what a machine's `handle_header`
/// answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Receive {
    /// Into the buffer of the read `token`, at this range.
    Data(DataRange),
    /// Into the machine's own buffer ([`Replies::own_bytes_mut`]) at this
    /// byte range: the engine's index cache, the bitmap the lister is
    /// reading, an exchange's buffer.
    Own(Range<usize>),
    /// Into the caller's scratch buffer, then to `handle_payload`.
    Scratch,
    /// Read and drop.
    Discard,
}

/// What to do with the payload that follows a reply header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// Payload bytes that follow the header.
    pub len: u32,
    /// Where they go.
    pub into: Receive,
}

/// What reads replies: the engine, the lister, an exchange.
pub trait Replies {
    /// A reply header arrived: where its payload goes. An error means the
    /// connection is out of step: drop it without reading the payload.
    fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, super::Error>;
    /// The payload has been read; `scratch` holds it when it went to
    /// [`Receive::Scratch`]. `now` is the time it came (retry pauses count
    /// from then).
    fn handle_payload(&mut self, now: u64, scratch: &[u8]);
    /// The buffer of [`Receive::Own`].
    fn own_bytes_mut(&mut self) -> &mut [u8];
}
