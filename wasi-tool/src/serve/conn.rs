//! One NBD client connection: its socket, the bytes read and not yet
//! parsed, a write's payload on its way in, and the replies on their way
//! out.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use sheepdog_core::nbd::handshake::{Handshake, Negotiated, Question, Step};
use sheepdog_core::nbd::request::{Limits, Request};
use sheepdog_core::nbd::Error as NbdError;

use super::export::ConnId;
use super::listen::Stream;

/// Room for whole options and many small requests per read.
const INPUT_LEN: usize = 64 << 10;
/// A client that takes none of its replies for this long is dropped.
const STALL: Duration = Duration::from_secs(60);

/// Where a connection is in the protocol.
pub enum Phase {
    /// Options are being negotiated.
    Negotiating,
    /// A GO, INFO or EXPORT_NAME waits for its export to open.
    Waiting(Box<Question>, String),
    /// Requests flow to the export named.
    Transmission {
        /// The export's name.
        export: String,
        /// What was negotiated.
        neg: Negotiated,
        /// What requests are checked against.
        limits: Limits,
        /// The volume's object size, for block status.
        object_size: u32,
    },
}

/// A write whose payload is still arriving.
pub struct Incoming {
    /// Its header.
    pub req: Request,
    /// The payload so far.
    pub buf: Vec<u8>,
    /// Bytes of it received.
    pub have: usize,
}

/// A client connection.
pub struct Conn {
    /// Its number.
    pub id: ConnId,
    /// Who it is, for messages.
    pub peer: String,
    stream: Stream,
    /// The negotiation.
    pub hs: Handshake,
    /// Where it is.
    pub phase: Phase,
    input: Vec<u8>,
    start: usize,
    end: usize,
    /// A write's payload on its way in.
    pub incoming: Option<Incoming>,
    /// Replies not yet sent.
    pub out: Vec<u8>,
    sent: usize,
    /// Requests taken and not yet replied to.
    pub inflight: usize,
    /// Take no more requests; close once everything is replied to.
    pub closing: bool,
    /// Close now.
    pub dead: bool,
    stalled_since: Option<Instant>,
}

impl Conn {
    /// A new connection.
    pub fn new(id: ConnId, stream: Stream, peer: String) -> Conn {
        Conn {
            id,
            peer,
            stream,
            hs: Handshake::new(),
            phase: Phase::Negotiating,
            input: vec![0u8; INPUT_LEN],
            start: 0,
            end: 0,
            incoming: None,
            out: Vec::new(),
            sent: 0,
            inflight: 0,
            closing: false,
            dead: false,
            stalled_since: None,
        }
    }

    /// The socket's descriptor.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.stream.fd()
    }

    /// Bytes received and not yet parsed.
    pub fn input(&self) -> &[u8] {
        &self.input[self.start..self.end]
    }

    /// Hand the input to the negotiation.
    pub fn negotiate(&mut self, out: &mut [u8]) -> Result<Step, NbdError> {
        self.hs.parse(&self.input[self.start..self.end], out)
    }

    /// Mark `n` bytes of the input parsed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Move what the input holds into a write's payload.
    pub fn feed_incoming(&mut self) {
        let Some(inc) = self.incoming.as_mut() else {
            return;
        };
        let avail = self.end - self.start;
        let n = avail.min(inc.buf.len() - inc.have);
        inc.buf[inc.have..inc.have + n].copy_from_slice(&self.input[self.start..self.start + n]);
        inc.have += n;
        self.consume(n);
    }

    /// Read what has arrived: a payload straight into its buffer, else
    /// into the input. Ok(false) when the client closed; WouldBlock when
    /// nothing is there.
    pub fn fill(&mut self) -> io::Result<bool> {
        if let Some(inc) = self.incoming.as_mut() {
            if self.start == self.end && inc.have < inc.buf.len() {
                let n = self.stream.read(&mut inc.buf[inc.have..])?;
                inc.have += n;
                return Ok(n > 0);
            }
        }
        if self.end == self.input.len() {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.input.len() {
            // Full of a message larger than any this server takes; the
            // parser will have refused it. Read nothing more.
            return Err(io::ErrorKind::InvalidData.into());
        }
        let n = self.stream.read(&mut self.input[self.end..])?;
        self.end += n;
        Ok(n > 0)
    }

    /// Send what the socket takes of the replies; a client that takes
    /// nothing for a long time, or a broken socket, marks the connection
    /// dead.
    pub fn flush(&mut self) {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => {
                    self.dead = true;
                    return;
                }
                Ok(n) => {
                    self.sent += n;
                    self.stalled_since = None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let since = *self.stalled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > STALL {
                        self.dead = true;
                    }
                    return;
                }
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        self.out.clear();
        self.sent = 0;
        if self.closing && self.inflight == 0 && self.incoming.is_none() {
            self.dead = true;
        }
    }

    /// Bytes of replies not yet sent.
    pub fn unsent(&self) -> usize {
        self.out.len() - self.sent
    }
}
