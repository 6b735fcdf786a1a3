//! One connection to a gateway and the engine that runs over it: sending
//! what the engine asks, reading replies where it says, waiting for retry
//! deadlines.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use sheepdog_core::engine::{
    ControlDone, Engine, Event, RetryPolicy, Token, SCRATCH_LEN, TRANSMIT_BUF_LEN,
};
use sheepdog_core::receive::{ReadBuffers, Receiver};

use crate::error::{self, CliError};
use crate::sendfile;

/// The most requests in flight the tool allows.
pub const QUEUE_MAX: usize = 64;
/// Requests in flight by default (see BENCHMARKS.md).
pub const DEFAULT_QUEUE_DEPTH: usize = 4;
/// The engine the tool uses.
pub type Eng = Engine<Vec<u8>, QUEUE_MAX>;
/// How long a reply may take before the tool gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// The index cache: room for the largest flat VDI (2^20 entries).
const INDEX_CACHE_LEN: usize = 4 << 20;
/// Times a dropped connection is re-established before giving up.
const MAX_RECONNECTS: u32 = 5;

/// Connect to HOST[:PORT]; returns the stream and the address as shown in
/// messages.
fn open_stream(addr: &str) -> Result<(TcpStream, String), CliError> {
    let hp = sheepdog_core::address::parse_host_port(addr)
        .map_err(|e| CliError::msg(format!("bad address '{addr}': {e}")))?;
    let port = hp.port.unwrap_or(sheepdog_core::wire::DEFAULT_PORT);
    let shown = if hp.host.contains(':') {
        format!("[{}]:{port}", hp.host)
    } else {
        format!("{}:{port}", hp.host)
    };
    let addrs: Vec<_> = (hp.host, port)
        .to_socket_addrs()
        .map_err(|e| error::connect(&shown, &e))?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in &addrs {
        match TcpStream::connect(a) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let _ = stream.set_read_timeout(Some(REPLY_TIMEOUT));
                return Ok((stream, shown));
            }
            Err(e) => last = e,
        }
    }
    Err(error::connect(&shown, &last))
}

/// The caller's data of reads and writes in flight, by token.
pub trait Buffers {
    /// The bytes of write `token`.
    fn data(&self, token: Token) -> &[u8];
    /// Where the bytes of write `token` are when they are not in memory:
    /// a file and the offset of the first byte.
    fn file_data(&self, _token: Token) -> Option<(&File, u64)> {
        None
    }
    /// The buffer of read `token`.
    fn data_mut(&mut self, token: Token) -> &mut [u8];
}

/// The read buffers of a [`Buffers`], for the receiver.
struct Reads<'a>(&'a mut dyn Buffers);

impl ReadBuffers for Reads<'_> {
    fn read_buffer(&mut self, token: Token) -> Option<&mut [u8]> {
        // An empty buffer is one given up (the transfer is failing): the
        // receiver drops its bytes.
        Some(self.0.data_mut(token))
    }
}

/// No data: control operations only.
pub struct NoBuffers;

impl Buffers for NoBuffers {
    fn data(&self, _: Token) -> &[u8] {
        &[]
    }
    fn data_mut(&mut self, _: Token) -> &mut [u8] {
        &mut []
    }
}

/// A connection and its engine.
pub struct Client {
    /// Where we are connected, for messages.
    pub addr: String,
    stream: TcpStream,
    /// The protocol engine.
    pub engine: Box<Eng>,
    tx: Vec<u8>,
    scratch: Vec<u8>,
    rx: Receiver,
    start: Instant,
    /// HOST[:PORT] as given, to connect again.
    target: String,
    /// Times the connection was re-established.
    reconnects: u32,
}

impl Client {
    /// Connect to `addr` (HOST[:PORT]).
    pub fn connect(addr: &str) -> Result<Client, CliError> {
        let (stream, shown) = open_stream(addr)?;
        Ok(Client {
            addr: shown,
            target: addr.to_owned(),
            stream,
            engine: Box::new(Engine::new(
                vec![0u8; INDEX_CACHE_LEN],
                RetryPolicy::default(),
            )),
            tx: vec![0u8; TRANSMIT_BUF_LEN],
            scratch: vec![0u8; SCRATCH_LEN],
            rx: Receiver::new(),
            start: Instant::now(),
            reconnects: 0,
        })
    }

    /// The connection failed with `e`: connect again (a few times, with a
    /// growing pause) and let the engine resend what was in flight; or give
    /// up with the error.
    fn recover(&mut self, e: io::Error) -> Result<(), CliError> {
        let timeout = matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        );
        if timeout || self.reconnects >= MAX_RECONNECTS {
            return Err(error::lost(&self.addr, &e));
        }
        let mut last = e;
        while self.reconnects < MAX_RECONNECTS {
            std::thread::sleep(Duration::from_millis(200 << self.reconnects));
            self.reconnects += 1;
            match open_stream(&self.target) {
                Ok((stream, _)) => {
                    self.stream = stream;
                    self.rx.reset();
                    self.engine.handle_connection_lost();
                    return Ok(());
                }
                Err(_) => {
                    last = io::Error::new(io::ErrorKind::ConnectionRefused, "reconnect failed")
                }
            }
        }
        Err(error::lost(&self.addr, &last))
    }

    /// The server sent a reply the engine refused: drop the connection and
    /// resend what was in flight on a new one (the number of reconnects is
    /// bounded), or give up naming the bad reply.
    fn resync(&mut self, e: sheepdog_core::engine::Error) -> Result<(), CliError> {
        let bad = CliError::msg(format!("the server at {} sent a bad reply: {e}", self.addr));
        if self.reconnects >= MAX_RECONNECTS {
            return Err(bad);
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        let lost = io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string());
        self.recover(lost).map_err(|_| bad)
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Send every request the engine has ready, without waiting.
    pub fn transmit(&mut self, bufs: &dyn Buffers) -> Result<(), CliError> {
        while let Some(t) = self
            .engine
            .poll_transmit(&mut self.tx)
            .map_err(|e| CliError::msg(format!("internal error: {e}")))?
        {
            let head = &self.tx[..t.header_len];
            let res = match &t.data {
                Some(d) => match bufs.file_data(d.token) {
                    Some((f, at)) => {
                        let len = (d.range.end - d.range.start) as usize;
                        let from = at + d.range.start;
                        match self.stream.write_all(head) {
                            Ok(()) => match sendfile::send(&self.stream, f, from, len) {
                                // The file got shorter: resending cannot help.
                                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                                    return Err(CliError::msg(
                                        "cannot read the input: the file got shorter during the import",
                                    ))
                                }
                                r => r,
                            },
                            Err(e) => Err(e),
                        }
                    }
                    None => {
                        let data =
                            &bufs.data(d.token)[d.range.start as usize..d.range.end as usize];
                        write_both(&mut self.stream, head, data)
                    }
                },
                None => self.stream.write_all(head),
            };
            if let Err(e) = res {
                return self.recover(e);
            }
        }
        Ok(())
    }

    /// Send what can be sent, hand over events, and then wait for one
    /// reply (or a retry deadline). Returns after at most one reply.
    pub fn step(
        &mut self,
        bufs: &mut dyn Buffers,
        events: &mut Vec<Event>,
    ) -> Result<(), CliError> {
        self.transmit(bufs)?;
        while let Some(ev) = self.engine.poll_event() {
            events.push(ev);
        }
        if !events.is_empty() {
            return Ok(());
        }
        if self.engine.in_flight() > 0 {
            return self.receive(bufs);
        }
        if let Some(deadline) = self.engine.poll_timeout() {
            let now = self.now();
            if deadline > now {
                std::thread::sleep(Duration::from_nanos(deadline - now));
            }
            let now = self.now();
            self.engine.handle_timeout(now);
        } else if !self.engine.is_idle() {
            // The engine promises this cannot happen; never spin on it.
            return Err(CliError::msg(
                "internal error: the engine has nothing to send, receive or wait for",
            ));
        }
        Ok(())
    }

    /// Read one whole reply into where the engine says.
    fn receive(&mut self, bufs: &mut dyn Buffers) -> Result<(), CliError> {
        let mut reads = Reads(bufs);
        loop {
            let buf = self
                .rx
                .buffer(&mut *self.engine, &mut reads, &mut self.scratch);
            let n = match self.stream.read(buf) {
                Ok(0) => return self.recover(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.recover(e),
            };
            let now = self.now();
            match self.rx.advance(&mut *self.engine, n, &self.scratch, now) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                // The stream is out of step: the operation that owned the
                // reply has failed with the reason; the rest goes out again
                // on a new connection.
                Err(e) => return self.resync(e),
            }
        }
    }

    /// Run the control operation just started to its end.
    pub fn control(&mut self) -> Result<ControlDone, CliError> {
        let mut events = Vec::new();
        loop {
            self.step(&mut NoBuffers, &mut events)?;
            for ev in events.drain(..) {
                if let Event::Control(done) = ev {
                    return Ok(done);
                }
            }
            if self.engine.is_idle() {
                return Err(CliError::msg(
                    "internal error: the operation ended without an answer",
                ));
            }
        }
    }

    /// Send raw requests and read raw replies (used by `list`).
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

/// Write a header and a data slice, in as few system calls as the socket
/// allows.
fn write_both(stream: &mut TcpStream, head: &[u8], data: &[u8]) -> io::Result<()> {
    let total = head.len() + data.len();
    let mut done = 0;
    while done < total {
        let n = if done < head.len() {
            stream.write_vectored(&[IoSlice::new(&head[done..]), IoSlice::new(data)])?
        } else {
            stream.write(&data[done - head.len()..])?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
}
