//! One NBD client connection: its socket, the bytes read and not yet
//! parsed, a write's payload on its way in, and the replies on their way
//! out.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sheepdog_core::nbd::handshake::{Handshake, Negotiated, Question, Step, Tls};
use sheepdog_core::nbd::request::{Limits, Request};
use sheepdog_core::nbd::Error as NbdError;

use super::export::ConnId;
use super::listen::Stream;
use super::tls::{Creds, Session};

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
    pub out: Output,
    /// Requests taken and not yet replied to.
    pub inflight: usize,
    /// Buffer bytes those requests hold (a read's buffer, a write's
    /// payload) until their replies are queued.
    pub held: usize,
    /// Take no more requests; close once everything is replied to.
    pub closing: bool,
    /// Close now.
    pub dead: bool,
    stalled_since: Option<Instant>,
    /// When the handshake's time limit started (the accept, or the end of
    /// a wait for an export).
    pub since: Instant,
    /// The TLS credentials, for NBD_OPT_STARTTLS.
    creds: Option<Creds>,
    /// STARTTLS was acknowledged: TLS starts once the ACK is out.
    upgrade: bool,
    /// The TLS session, once started.
    tls: Option<Session>,
}

impl Conn {
    /// A new connection, offering TLS with `creds` as `tls` says.
    pub fn new(id: ConnId, stream: Stream, peer: String, tls: Tls, creds: Option<Creds>) -> Conn {
        let tls = if creds.is_some() { tls } else { Tls::Off };
        Conn {
            id,
            peer,
            stream,
            hs: Handshake::with_tls(tls),
            phase: Phase::Negotiating,
            input: vec![0u8; INPUT_LEN],
            start: 0,
            end: 0,
            incoming: None,
            out: Output::default(),
            inflight: 0,
            held: 0,
            closing: false,
            dead: false,
            stalled_since: None,
            since: Instant::now(),
            creds,
            upgrade: false,
            tls: None,
        }
    }

    /// Bytes this connection holds: replies not yet sent, a write's
    /// payload on its way in, the buffers of its requests in flight.
    pub fn own(&self) -> usize {
        self.unsent() + self.incoming.as_ref().map_or(0, |i| i.buf.len()) + self.held
    }

    /// STARTTLS was acknowledged and TLS has not started yet: nothing is
    /// read meanwhile.
    pub fn tls_pending(&self) -> bool {
        self.upgrade
    }

    /// The client asked for TLS and its ACK is queued: start TLS once the
    /// ACK is out.
    pub fn start_tls(&mut self) {
        self.upgrade = true;
    }

    /// Whether the socket should be watched for writing.
    pub fn wants_write(&self) -> bool {
        self.out.len > 0 || self.tls.as_ref().is_some_and(Session::wants_write)
    }

    /// Whether decrypted plain text waits in the TLS session, which no
    /// socket will say.
    pub fn tls_plaintext(&self) -> bool {
        self.tls.as_ref().is_some_and(Session::has_plaintext)
    }

    /// Read into `buf` from the socket, through TLS once it is on.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_mut() {
            Some(t) => t.read(&mut self.stream, buf),
            None => self.stream.read(buf),
        }
    }

    /// The ACK of STARTTLS is out: the session starts, and what the client
    /// sent after the option (if anything) is its first ciphertext.
    fn begin_tls(&mut self) {
        self.upgrade = false;
        let Some(creds) = &self.creds else {
            self.dead = true;
            return;
        };
        let started = creds.session().and_then(|mut session| {
            session.feed(&self.input[self.start..self.end])?;
            Ok(session)
        });
        match started {
            Ok(session) => {
                self.start = 0;
                self.end = 0;
                self.tls = Some(session);
                self.hs.tls_started();
            }
            Err(_) => self.dead = true,
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
        if let Some(mut inc) = self.incoming.take() {
            if self.start == self.end && inc.have < inc.buf.len() {
                let got = self.read_some(&mut inc.buf[inc.have..]);
                if let Ok(n) = got {
                    inc.have += n;
                }
                self.incoming = Some(inc);
                return got.map(|n| n > 0);
            }
            self.incoming = Some(inc);
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
        let room = self.input.len() - self.end;
        let mut input = std::mem::take(&mut self.input);
        let got = self.read_some(&mut input[self.end..]);
        self.input = input;
        let n = got?;
        self.end += n;
        if n > 0 && n < room {
            // The socket is drained: say so without another read.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n > 0)
    }

    /// Send what the socket takes of the replies; a client that takes
    /// nothing for a long time, or a broken socket, marks the connection
    /// dead.
    pub fn flush(&mut self) {
        loop {
            // Ciphertext first: the handshake's, an alert, or replies
            // already sealed.
            if let Some(t) = self.tls.as_mut() {
                match t.send(&mut self.stream) {
                    Ok(true) => {}
                    Ok(false) => return self.stalled(),
                    Err(_) => {
                        self.dead = true;
                        return;
                    }
                }
            }
            if self.out.len == 0 || self.dead {
                break;
            }
            let written = match self.tls.as_mut() {
                Some(t) => self.out.write_to(&mut t.writer()),
                None => self.out.write_to(&mut self.stream),
            };
            match written {
                // The session's buffer is full: its ciphertext goes first.
                Ok(0) if self.tls.as_ref().is_some_and(Session::wants_write) => {}
                Ok(0) => {
                    self.dead = true;
                    return;
                }
                Ok(_) => self.stalled_since = None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return self.stalled(),
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        if self.upgrade && !self.dead {
            self.begin_tls();
        }
        if self.closing && self.inflight == 0 && self.incoming.is_none() {
            self.dead = true;
        }
    }

    /// The client takes none of its replies now; one that takes none for
    /// a long time is dropped.
    fn stalled(&mut self) {
        let since = *self.stalled_since.get_or_insert_with(Instant::now);
        if since.elapsed() > STALL {
            self.dead = true;
        }
    }

    /// Bytes of replies not yet sent.
    pub fn unsent(&self) -> usize {
        self.out.len
    }
}

/// Replies on their way out: small bytes (headers, simple replies) copied
/// into the queue, read data queued as the buffer it was read into, so
/// that the data is never copied on its way to the socket.
#[derive(Default)]
pub struct Output {
    segments: VecDeque<(Rc<Vec<u8>>, Range<usize>)>,
    /// Small bytes not yet made a segment.
    tail: Vec<u8>,
    /// Bytes not yet sent, in all.
    len: usize,
}

impl Output {
    /// Queue `bytes` (copied).
    pub fn put(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Queue `range` of `data` (not copied).
    pub fn data(&mut self, data: &Rc<Vec<u8>>, range: Range<usize>) {
        self.seal();
        self.len += range.len();
        self.segments.push_back((Rc::clone(data), range));
    }

    fn seal(&mut self) {
        if !self.tail.is_empty() {
            let tail = std::mem::take(&mut self.tail);
            let n = tail.len();
            self.segments.push_back((Rc::new(tail), 0..n));
        }
    }

    /// Write as much as one vectored write takes.
    fn write_to(&mut self, w: &mut impl Write) -> io::Result<usize> {
        self.seal();
        let slices: Vec<IoSlice<'_>> = self
            .segments
            .iter()
            .take(64)
            .map(|(b, r)| IoSlice::new(&b[r.clone()]))
            .collect();
        let mut n = w.write_vectored(&slices)?;
        drop(slices);
        self.len -= n;
        let written = n;
        while n > 0 {
            let Some((_, r)) = self.segments.front_mut() else {
                break;
            };
            let take = n.min(r.len());
            r.start += take;
            n -= take;
            if r.start >= r.end {
                self.segments.pop_front();
            }
        }
        Ok(written)
    }
}

/// Where reply bytes go (a connection's output, or a plain vector).
pub trait Sink {
    /// Copy `bytes`.
    fn put(&mut self, bytes: &[u8]);
    /// `range` of `data`, copied or not.
    fn data(&mut self, data: &Rc<Vec<u8>>, range: Range<usize>);
}

impl Sink for Output {
    fn put(&mut self, bytes: &[u8]) {
        Output::put(self, bytes);
    }
    fn data(&mut self, data: &Rc<Vec<u8>>, range: Range<usize>) {
        Output::data(self, data, range);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn data(&mut self, data: &Rc<Vec<u8>>, range: Range<usize>) {
        self.extend_from_slice(&data[range]);
    }
}
