//! The one receive path: reading replies off a byte stream into the buffers
//! they belong in (PROTOCOL.md §1: a 48-byte header, then exactly
//! `data_length` payload bytes), for every machine that takes replies
//! ([`Replies`]: the engine, the lister, an exchange) and for blocking and
//! non-blocking callers alike.
//!
//! A [`Receiver`] says where the next bytes from the connection go
//! ([`Receiver::buffer`]: the header, the caller's read buffer, the
//! engine's index, the scratch buffer, or a sink for bytes nobody needs);
//! the caller reads as many as it can into that buffer and says how many
//! ([`Receiver::advance`]). No byte is copied twice. A blocking caller
//! loops until a reply is whole ([`Receiver::receive`] does that over any
//! `embedded-io` reader); a non-blocking one reads what the socket has and
//! comes back when it is readable again.
//!
//! ```
//! use sheepdog_core::engine::{Engine, RetryPolicy, SCRATCH_LEN};
//! use sheepdog_core::receive::{NoBuffers, Receiver};
//!
//! let mut engine: Engine<[u8; 64], 4> = Engine::new([0; 64], RetryPolicy::default());
//! let mut rx = Receiver::new();
//! let mut scratch = [0u8; SCRATCH_LEN];
//! // Where the first bytes go: the 48-byte header.
//! assert_eq!(rx.buffer(&mut engine, &mut NoBuffers, &mut scratch).len(), 48);
//! ```

use crate::reply::{Error, Token};
use crate::wire::HEADER_LEN;

pub use crate::reply::{Incoming, Receive, Replies};

/// The caller's read buffers, by token ([`Receive::Data`]).
pub trait ReadBuffers {
    /// The whole buffer of read `token`, or `None` if it was given up (the
    /// bytes are then dropped).
    fn read_buffer(&mut self, token: Token) -> Option<&mut [u8]>;
}

/// No read buffers: control operations and listings only.
pub struct NoBuffers;

impl ReadBuffers for NoBuffers {
    fn read_buffer(&mut self, _token: Token) -> Option<&mut [u8]> {
        None
    }
}

/// Where a reply being read stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// `have` bytes of the header.
    Header { have: usize },
    /// `have` of the `len` payload bytes, going `into` there.
    Payload {
        into: Receive,
        len: usize,
        have: usize,
        /// The buffer they had to go into was not there (too small, out of
        /// range): the reply cannot be handed over.
        lost: bool,
    },
}

/// Reads replies off one connection; see the module docs.
#[derive(Clone, Debug)]
pub struct Receiver {
    header: [u8; HEADER_LEN],
    state: State,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver::new()
    }
}

/// Why [`Receiver::receive`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ReceiveError<E> {
    /// The reply was refused ([`Replies::handle_header`]): drop the
    /// connection.
    Reply(Error),
    /// The connection failed.
    Io(E),
    /// The connection closed.
    Closed,
}

impl<E: core::fmt::Debug> core::fmt::Display for ReceiveError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReceiveError::Reply(e) => e.fmt(f),
            ReceiveError::Io(e) => write!(f, "connection error: {e:?}"),
            ReceiveError::Closed => f.write_str("connection closed by the server"),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for ReceiveError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ReceiveError::Reply(e) => Some(e),
            _ => None,
        }
    }
}

impl Receiver {
    /// A receiver at the start of a reply.
    pub const fn new() -> Receiver {
        Receiver {
            header: [0; HEADER_LEN],
            state: State::Header { have: 0 },
        }
    }

    /// The connection was lost: whatever part of a reply was read is
    /// forgotten (the engine resends its request).
    pub fn reset(&mut self) {
        self.state = State::Header { have: 0 };
    }

    /// Whether part of a reply has been read.
    pub fn in_reply(&self) -> bool {
        self.state != State::Header { have: 0 }
    }

    /// Where the next bytes from the connection go: never empty. `scratch`
    /// must hold what the replies ask for ([`crate::engine::SCRATCH_LEN`]
    /// for the engine, the lister's `scratch_len`); a payload whose buffer
    /// is missing or too small is read and dropped, and
    /// [`Receiver::advance`] then fails instead of handing it over.
    pub fn buffer<'a, R: Replies>(
        &'a mut self,
        replies: &'a mut R,
        bufs: &'a mut dyn ReadBuffers,
        scratch: &'a mut [u8],
    ) -> &'a mut [u8] {
        let (into, len, have) = match &self.state {
            State::Header { have } => return &mut self.header[*have..],
            State::Payload {
                into, len, have, ..
            } => (into.clone(), *len, *have),
        };
        let lost = match into {
            Receive::Data(d) => {
                let range = d.range.start as usize..d.range.end as usize;
                // None: the read was given up, its bytes are dropped.
                match bufs.read_buffer(d.token) {
                    Some(b) if b.len() >= range.end && range.len() == len => {
                        return &mut b[range][have..];
                    }
                    Some(_) => true,
                    None => false,
                }
            }
            Receive::Own(r) => {
                if r.len() == len {
                    if let Some(b) = replies.own_bytes_mut().get_mut(r) {
                        return &mut b[have..];
                    }
                }
                true
            }
            Receive::Scratch if len <= scratch.len() => return &mut scratch[have..len],
            Receive::Scratch => true,
            Receive::Discard => false,
        };
        if let State::Payload { lost: l, .. } = &mut self.state {
            *l |= lost;
        }
        // Bytes nobody keeps: through the scratch buffer (or, if there is
        // none, the header's, which a payload does not need).
        let rest = len - have;
        if scratch.is_empty() {
            let n = rest.min(HEADER_LEN);
            &mut self.header[..n]
        } else {
            let n = rest.min(scratch.len());
            &mut scratch[..n]
        }
    }

    /// `n` bytes were read into the last [`Receiver::buffer`]; true when
    /// that made a reply whole and it was handed over to `replies`. An
    /// error means the header was refused, or the payload had nowhere to
    /// go: drop the connection (and [`Receiver::reset`]).
    pub fn advance<R: Replies>(
        &mut self,
        replies: &mut R,
        n: usize,
        scratch: &[u8],
        now: u64,
    ) -> Result<bool, Error> {
        match &mut self.state {
            State::Header { have } => {
                *have += n;
                if *have < HEADER_LEN {
                    return Ok(false);
                }
                self.state = State::Header { have: 0 };
                let incoming = replies.handle_header(&self.header)?;
                let len = incoming.len as usize;
                if len > 0 {
                    self.state = State::Payload {
                        into: incoming.into,
                        len,
                        have: 0,
                        lost: false,
                    };
                    return Ok(false);
                }
                replies.handle_payload(now, &[]);
            }
            State::Payload {
                into,
                len,
                have,
                lost,
            } => {
                *have += n;
                if *have < *len {
                    return Ok(false);
                }
                if *lost {
                    // Never handed over as if it had arrived: drop the
                    // connection, and the request goes out again.
                    self.state = State::Header { have: 0 };
                    return Err(Error::Internal("a reply's payload had nowhere to go"));
                }
                let payload = match into {
                    Receive::Scratch if *len <= scratch.len() => &scratch[..*len],
                    _ => &[][..],
                };
                self.state = State::Header { have: 0 };
                replies.handle_payload(now, payload);
            }
        }
        Ok(true)
    }

    /// Read one whole reply from a blocking `conn` and hand it over, with
    /// the time `now` gives once its bytes are in (retry pauses count from
    /// then).
    pub fn receive<R: Replies, C: embedded_io::Read>(
        &mut self,
        replies: &mut R,
        conn: &mut C,
        bufs: &mut dyn ReadBuffers,
        scratch: &mut [u8],
        now: &mut dyn FnMut() -> u64,
    ) -> Result<(), ReceiveError<C::Error>> {
        loop {
            let buf = self.buffer(replies, bufs, scratch);
            let n = conn.read(buf).map_err(ReceiveError::Io)?;
            if n == 0 {
                self.reset();
                return Err(ReceiveError::Closed);
            }
            if self
                .advance(replies, n, scratch, now())
                .map_err(ReceiveError::Reply)?
            {
                return Ok(());
            }
        }
    }
}
