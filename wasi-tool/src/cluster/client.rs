//! One connection to a gateway and the engine that runs over it: sending
//! what the engine asks, reading replies where it says, waiting for retry
//! deadlines. The socket is non-blocking and every wait goes through the
//! readiness loop ([`crate::readiness`]): a reply half read never holds
//! the process, natively and under WASI. Only a request with a large
//! payload is written in one blocking call (see [`BLOCKING_WRITE`]),
//! bounded by the write timeout.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use sheepdog_core::engine::{
    ControlDone, Engine, Event, RetryPolicy, Token, SCRATCH_LEN, TRANSMIT_BUF_LEN,
};
use sheepdog_core::receive::{ReadBuffers, Receiver};

use super::gateways::{self, Gateways, Refused};
use crate::error::CliError;
use crate::io::readiness::{self, Want};
use crate::io::sendfile;

/// The most requests in flight the tool allows.
pub const QUEUE_MAX: usize = 64;
/// Requests in flight by default (see BENCHMARKS.md).
pub const DEFAULT_QUEUE_DEPTH: usize = 4;
/// The engine the tool uses.
pub type Eng = Engine<Vec<u8>, QUEUE_MAX>;
/// The index cache: room for the largest flat VDI (2^20 entries). A hyper
/// volume larger than 4 TiB gets a larger one when it is opened
/// (`session::open`).
const INDEX_CACHE_LEN: usize = 4 << 20;
/// Requests carrying more than this are written with the socket in
/// blocking mode: the kernel then moves the whole payload in one call (one
/// `sendfile` for a 4 MiB object) instead of as much as the send buffer
/// holds per wake-up, which cost import half again its CPU. The cluster
/// reads every request whole before the next, so such a write waits on
/// nothing but the network, and the write timeout bounds it. Natively
/// only: under WASI the socket's write timeout is not to be had, and an
/// unbounded write to a node that died would outlast `--timeout`; there
/// the write goes through the readiness loop like the rest (no slower,
/// measured with a 256 MiB import).
const BLOCKING_WRITE: usize = 256 << 10;
/// The longest pause between rounds over the nodes while none answers.
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// How often the list of nodes is asked for again on a connection that
/// lasts (nodes join and leave a cluster while a VM runs).
const REFRESH_NODES: Duration = Duration::from_secs(60);

/// How long one node may take to answer a new connection while others
/// wait to be tried: a node that accepts and never answers must not take
/// all the time there is from the others.
fn per_node(timeout: Duration) -> Duration {
    (timeout / 4).max(Duration::from_secs(1)).min(timeout)
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
        let buf = self.0.data_mut(token);
        (!buf.is_empty()).then_some(buf)
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
    /// The request being written, when the socket took only part of it.
    out: Option<Outgoing>,
    /// When the last byte arrived, or the last request went out with
    /// nothing in flight before it: the reply timeout counts from there.
    heard: Instant,
    start: Instant,
    /// The nodes to fail over to, and the timeout.
    gateways: Gateways,
    /// How long a reply may take (the timeout, or more for a request the
    /// server is known to take long over); dialling keeps the timeout.
    reply_timeout: Duration,
    /// Say nothing of failovers.
    quiet: bool,
    /// Connections given up for another node, and requests resent.
    pub failovers: Failovers,
    /// Bad replies since the last good one: a node that keeps sending
    /// them is not resent to forever.
    bad_replies: u32,
    /// Connections lost since the last reply, and how many make the tool
    /// give up (before the engine's own limit, so that the error names
    /// the node).
    losses: u32,
    max_losses: u32,
    /// When the list of nodes was last asked for.
    refreshed: Instant,
    /// Failing over gave up with this error: every later call returns it
    /// at once, instead of failing over all over again.
    dead: Option<CliError>,
    /// The last read took all the socket had (fewer bytes than asked, or
    /// none): no read until the socket is said readable again
    /// ([`Client::readable`]), so that no call is spent to learn that
    /// nothing is there.
    drained: bool,
}

/// What failing over cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Failovers {
    /// Connections lost and made again (to the same or another node).
    pub count: u32,
    /// Requests that were on the wire when a connection was lost, and go
    /// out again.
    pub resent: u32,
    /// Their payload bytes (writes) and reply bytes asked for (reads).
    pub resent_bytes: u64,
}

/// Bad replies in a row after which the tool gives up.
const MAX_BAD_REPLIES: u32 = 5;

impl Client {
    /// Connect to the first of `gateways` that answers (each is tried
    /// once), and learn the cluster's nodes from it.
    pub fn connect(mut gateways: Gateways, quiet: bool) -> Result<Client, CliError> {
        let mut failures = Vec::new();
        for a in gateways.after(None) {
            match gateways::dial(&a, per_node(gateways.timeout), gateways.timeout) {
                Ok(d) => {
                    gateways.learn(d.nodes.iter().copied());
                    let retry = RetryPolicy::lasting(gateways.timeout.as_nanos() as u64);
                    return Ok(Client {
                        addr: d.addr,
                        stream: d.stream,
                        engine: Box::new(Engine::new(vec![0u8; INDEX_CACHE_LEN], retry)),
                        tx: vec![0u8; TRANSMIT_BUF_LEN],
                        scratch: vec![0u8; SCRATCH_LEN],
                        rx: Receiver::new(),
                        out: None,
                        heard: Instant::now(),
                        start: Instant::now(),
                        reply_timeout: gateways.timeout,
                        gateways,
                        quiet,
                        failovers: Failovers::default(),
                        bad_replies: 0,
                        losses: 0,
                        max_losses: u32::from(retry.max_retries.saturating_sub(1)).clamp(1, 8),
                        refreshed: Instant::now(),
                        dead: None,
                        drained: false,
                    });
                }
                Err(r) => failures.push(r),
            }
        }
        match failures.len() {
            1 => Err(failures.remove(0).error),
            _ => Err(CliError::msg(format!(
                "cannot connect to any node: tried {}",
                gateways::tried(&failures)
            ))),
        }
    }

    /// The connection failed with `e`: fail over to a node that answers,
    /// the next one first, and let the engine resend what was in flight;
    /// give up when none answered within the timeout, naming every node
    /// tried.
    fn recover(&mut self, e: io::Error) -> Result<(), CliError> {
        let first = Refused::io(&self.addr, &e, false);
        self.recover_from(first, 0)
    }

    /// [`Client::recover`] from `first` (why the node in use is left),
    /// with `requeued` requests already set to go out again (a bad
    /// reply's), counted in what is resent.
    fn recover_from(&mut self, first: Refused, requeued: u32) -> Result<(), CliError> {
        self.alive()?;
        let res = self.fail_over(first, requeued);
        if let Err(e) = &res {
            self.dead = Some(e.clone());
        }
        res
    }

    /// The error failing over gave up with, if it did.
    fn alive(&self) -> Result<(), CliError> {
        match &self.dead {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn fail_over(&mut self, first: Refused, requeued: u32) -> Result<(), CliError> {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.losses += 1;
        if self.losses > self.max_losses {
            // Every node answers a new connection and loses it before any
            // reply: resending cannot help.
            return Err(first.error.with_detail(&format!(
                "{} connections in a row lost before a reply",
                self.losses
            )));
        }
        let timeout = self.gateways.timeout;
        let since = Instant::now();
        let mut failures = vec![first];
        let per_node = per_node(timeout);
        let mut pause = Duration::from_millis(100);
        loop {
            for a in self.gateways.after(Some(&self.addr)) {
                let left = timeout.saturating_sub(since.elapsed());
                if left.is_zero() {
                    break;
                }
                match gateways::dial(&a, per_node.min(left), timeout) {
                    Ok(d) => {
                        self.switch(d, &failures[0].error, requeued);
                        return Ok(());
                    }
                    Err(r) => failures.push(r),
                }
            }
            let left = timeout.saturating_sub(since.elapsed());
            if left.is_zero() {
                let lost = failures.remove(0).error;
                let secs = timeout.as_secs_f64();
                return Err(lost.with_detail(&format!(
                    "no node answered within {secs} s; tried {}",
                    gateways::tried(&failures)
                )));
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Go on over the connection `d`, resending what was in flight (and
    /// the `requeued` requests already set to go out again).
    fn switch(&mut self, d: gateways::Dialled, why: &CliError, requeued: u32) {
        let (n, bytes) = self.engine.on_wire();
        let n = n + requeued;
        self.failovers.count += 1;
        self.failovers.resent += n;
        self.failovers.resent_bytes += bytes;
        if !self.quiet {
            let to = if d.addr == self.addr {
                format!("reconnected to {}", d.addr)
            } else {
                format!("failing over to {}", d.addr)
            };
            let what = match n {
                0 => "nothing was in flight".to_owned(),
                1 => format!("resending 1 request ({})", crate::size::human(bytes)),
                n => format!("resending {n} requests ({})", crate::size::human(bytes)),
            };
            eprintln!("sheep-tool: {why}; {to}, {what}");
        }
        self.gateways.learn(d.nodes.iter().copied());
        self.refreshed = Instant::now();
        self.addr = d.addr;
        self.stream = d.stream;
        self.drained = false;
        self.rx.reset();
        // What was being written goes out again, with the rest.
        self.out = None;
        self.heard = Instant::now();
        self.engine.handle_connection_lost();
    }

    /// The server sent a reply the engine refused: drop the connection and
    /// resend what was in flight on a new one (the number of bad replies
    /// in a row is bounded), or give up naming the bad reply.
    fn resync(&mut self, e: sheepdog_core::engine::Error) -> Result<(), CliError> {
        let bad = CliError::msg(format!("the server at {} sent a bad reply: {e}", self.addr));
        self.bad_replies += 1;
        if self.bad_replies > MAX_BAD_REPLIES {
            // The stream is out of step: nothing more goes over it.
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
            self.dead = Some(bad.clone());
            return Err(bad);
        }
        // The engine has set the request that got it to go out again
        // (a header out of shape), unless it was a reply to nothing.
        let requeued = u32::from(matches!(e, sheepdog_core::engine::Error::BadReply(_)));
        let first = Refused::other(&self.addr, bad.clone());
        self.recover_from(first, requeued)
            .map_err(|gave_up| bad.with_detail(&format!("then: {gave_up}")))
    }

    /// Ask the gateway for the list of nodes again, on a connection of
    /// its own, when the last answer is old: a failover hours later then
    /// knows the nodes that joined since. A node that does not answer
    /// quickly is left to the engine's connection to find out.
    fn refresh_nodes(&mut self) {
        if self.refreshed.elapsed() < REFRESH_NODES {
            return;
        }
        self.refreshed = Instant::now();
        let quick = self.gateways.timeout.min(Duration::from_secs(2));
        if let Ok(d) = gateways::dial(&self.addr, quick, quick) {
            self.gateways.learn(d.nodes.iter().copied());
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Send every request the engine has ready, as far as the socket
    /// takes them without waiting; true when all went out.
    pub fn transmit(&mut self, bufs: &dyn Buffers) -> Result<bool, CliError> {
        self.alive()?;
        loop {
            if self.out.is_none() {
                let Some(t) = self
                    .engine
                    .poll_transmit(&mut self.tx)
                    .map_err(|e| CliError::msg(format!("internal error: {e}")))?
                else {
                    return Ok(true);
                };
                if self.engine.in_flight() == 1 {
                    // The first request in flight: its reply is awaited
                    // from now on.
                    self.heard = Instant::now();
                }
                self.out = Some(Outgoing {
                    head_len: t.header_len,
                    data: t
                        .data
                        .map(|d| (d.token, d.range.start as usize..d.range.end as usize)),
                    sent: 0,
                });
            }
            let Some(out) = self.out.as_mut() else {
                continue;
            };
            let large = cfg!(not(target_os = "wasi")) && out.len() > BLOCKING_WRITE;
            if large {
                let _ = self.stream.set_nonblocking(false);
            }
            let written = out.write(&mut self.stream, &self.tx, bufs);
            if large {
                let _ = self.stream.set_nonblocking(true);
            }
            match written {
                Ok(true) => {
                    // A node taking a large request is not a silent one.
                    self.heard = Instant::now();
                    self.out = None;
                }
                Ok(false) => return Ok(false),
                // The file got shorter: resending cannot help.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(CliError::msg(
                        "cannot read the input: the file got shorter during the import",
                    ))
                }
                Err(e) => {
                    self.recover(e)?;
                }
            }
        }
    }

    /// Send what can be sent, hand over events, read what has arrived,
    /// and wait (for the socket, or a retry's time) only when none of
    /// that can go on. Returns once events are there, or after a wait for
    /// a retry's time.
    pub fn step(
        &mut self,
        bufs: &mut dyn Buffers,
        events: &mut Vec<Event>,
    ) -> Result<(), CliError> {
        self.alive()?;
        self.refresh_nodes();
        loop {
            let sent_all = self.transmit(bufs)?;
            while let Some(ev) = self.engine.poll_event() {
                events.push(ev);
            }
            if !events.is_empty() {
                return Ok(());
            }
            let waiting = self.engine.in_flight() > 0;
            if waiting && self.read_available(bufs)? {
                // Replies came: they may have made events or requests.
                continue;
            }
            if !waiting && sent_all {
                return self.wait_for_retry();
            }
            self.wait(waiting, !sent_all)?;
        }
    }

    /// Nothing on the wire: sleep until the engine's next retry is due.
    fn wait_for_retry(&mut self) -> Result<(), CliError> {
        match self.engine.poll_timeout() {
            Some(deadline) => {
                let now = self.now();
                if deadline > now {
                    std::thread::sleep(Duration::from_nanos(deadline - now));
                }
                let now = self.now();
                self.engine.handle_timeout(now);
                Ok(())
            }
            None if self.engine.is_idle() => Ok(()),
            // The engine promises this cannot happen; never spin on it.
            None => Err(CliError::msg(
                "internal error: the engine has nothing to send, receive or wait for",
            )),
        }
    }

    /// Wait until the socket can be read (`read`) or written (`write`), or
    /// a retry is due; a reply that takes longer than the reply timeout
    /// means the node stopped answering.
    fn wait(&mut self, read: bool, write: bool) -> Result<(), CliError> {
        let timeout = self.gateways.timeout;
        let silent = self.heard.elapsed();
        if silent >= timeout {
            // Nothing heard, and nothing taken, for the whole timeout.
            return self.recover(io::ErrorKind::TimedOut.into());
        }
        let mut limit = timeout.saturating_sub(silent);
        if let Some(deadline) = self.engine.poll_timeout() {
            limit = limit.min(Duration::from_nanos(deadline.saturating_sub(self.now())));
        }
        let want = [Want {
            fd: self.stream.as_raw_fd(),
            read,
            write,
        }];
        // Which of them it is does not matter: the loop tries both.
        let mut ready = Vec::with_capacity(1);
        if let Err(e) = readiness::wait(&want, Some(limit), &mut ready) {
            return self.recover(e);
        }
        self.drained = false;
        let now = self.now();
        self.engine.handle_timeout(now);
        Ok(())
    }

    /// The socket is readable (a readiness loop said so): the next
    /// [`Client::read_available`] reads.
    pub fn readable(&mut self) {
        self.drained = false;
    }

    /// Read whatever has arrived into where the engine says, handing over
    /// each whole reply; true if any bytes came. After a read that drained
    /// the socket, nothing is read until [`Client::readable`].
    pub fn read_available(&mut self, bufs: &mut dyn Buffers) -> Result<bool, CliError> {
        self.alive()?;
        let mut reads = Reads(bufs);
        let mut got = false;
        loop {
            if self.drained {
                return Ok(got);
            }
            let buf = self
                .rx
                .buffer(&mut *self.engine, &mut reads, &mut self.scratch);
            let want = buf.len();
            let n = match self.stream.read(buf) {
                Ok(0) => {
                    self.recover(io::ErrorKind::UnexpectedEof.into())?;
                    return Ok(true);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained = true;
                    return Ok(got);
                }
                Err(e) => {
                    self.recover(e)?;
                    return Ok(true);
                }
            };
            // Fewer bytes than asked for: the socket had no more.
            self.drained = n < want;
            got = true;
            self.heard = Instant::now();
            let now = self.now();
            match self.rx.advance(&mut *self.engine, n, &self.scratch, now) {
                // Hand each whole reply's consequences over at once: the
                // caller refills the pipeline before more replies are read,
                // so the cluster never waits for a batch to be handled.
                Ok(true) => {
                    self.bad_replies = 0;
                    self.losses = 0;
                    // Nothing in flight: nothing more can come, so no
                    // read is spent to find the socket empty.
                    if self.engine.in_flight() == 0 {
                        self.drained = true;
                    }
                    return Ok(true);
                }
                Ok(false) => {}
                // The stream is out of step: the operation that owned the
                // reply has failed with the reason; the rest goes out again
                // on a new connection.
                Err(e) => {
                    self.resync(e)?;
                    return Ok(true);
                }
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

    /// The socket's descriptor, for a readiness loop of the caller's own.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.stream.as_raw_fd()
    }

    /// Whether a request is partly written and waits for the socket.
    pub fn wants_write(&self) -> bool {
        self.out.is_some()
    }

    /// Whether replies are awaited.
    pub fn awaiting(&self) -> bool {
        self.engine.in_flight() > 0
    }

    /// How long the loop may wait before [`Client::tick`] must run: the
    /// engine's next retry, or the end of the reply timeout.
    pub fn next_wake(&self) -> Option<Duration> {
        let retry = self
            .engine
            .poll_timeout()
            .map(|d| Duration::from_nanos(d.saturating_sub(self.now())));
        let silence = self
            .awaiting()
            .then(|| self.reply_timeout.saturating_sub(self.heard.elapsed()));
        match (retry, silence) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Tell the engine the time; a reply awaited for longer than the
    /// timeout means the node stopped answering: fail over.
    pub fn tick(&mut self) -> Result<(), CliError> {
        self.alive()?;
        if self.awaiting() && self.heard.elapsed() >= self.reply_timeout {
            self.recover(io::ErrorKind::TimedOut.into())?;
        }
        self.refresh_nodes();
        let now = self.now();
        self.engine.handle_timeout(now);
        Ok(())
    }

    /// Back to the readiness loop after raw requests on [`Client::stream`].
    pub fn resume(&mut self) {
        let _ = self.stream.set_nonblocking(true);
    }

    /// The cluster's nodes as the gateway named them.
    pub fn nodes(&self) -> Vec<std::net::SocketAddr> {
        self.gateways.learned().to_vec()
    }

    /// Wait at least `t` for a reply before the node counts as stopped:
    /// for a request the server takes long over (DEL_VDI of a volume with
    /// many objects removes each before it answers).
    pub fn allow_slow_reply(&mut self, t: Duration) {
        self.reply_timeout = self.gateways.timeout.max(t);
    }

    /// The socket in blocking mode with the engine beside it, for raw
    /// requests built from the engine's state (a hyper volume's B-tree
    /// commit); the readiness loop takes the socket back after.
    pub fn raw_with_engine<T>(&mut self, f: impl FnOnce(&mut TcpStream, &str, &Eng) -> T) -> T {
        let _ = self.stream.set_nonblocking(false);
        let _ = self.stream.set_read_timeout(Some(self.reply_timeout));
        let out = f(&mut self.stream, &self.addr, &self.engine);
        self.resume();
        out
    }

    /// The socket in blocking mode, for raw requests and replies (used by
    /// `list`).
    pub fn stream(&mut self) -> &mut TcpStream {
        let _ = self.stream.set_nonblocking(false);
        let _ = self.stream.set_read_timeout(Some(self.gateways.timeout));
        &mut self.stream
    }
}

/// A request on its way out: the header (and small payload) the engine
/// wrote into the transmit buffer, which stays as it is until this request
/// is all out (nothing else is polled meanwhile), then the range of the
/// caller's data for a write, from memory or straight from the input file.
struct Outgoing {
    head_len: usize,
    data: Option<(Token, Range<usize>)>,
    /// Bytes of head and data written so far.
    sent: usize,
}

impl Outgoing {
    /// Header and data bytes in all.
    fn len(&self) -> usize {
        self.head_len + self.data.as_ref().map_or(0, |(_, r)| r.len())
    }

    /// Write as much as the socket takes now; true when all is out.
    fn write(&mut self, stream: &mut TcpStream, tx: &[u8], bufs: &dyn Buffers) -> io::Result<bool> {
        let head = &tx[..self.head_len];
        let total = self.len();
        while self.sent < total {
            let res = match (&self.data, self.sent < self.head_len) {
                (_, true) | (None, _) => {
                    let data = match &self.data {
                        Some((t, r)) if bufs.file_data(*t).is_none() => data_of(bufs, *t, r)?,
                        _ => &[][..],
                    };
                    let rest = &head[self.sent..];
                    write_pieces(stream, &[IoSlice::new(rest), IoSlice::new(data)])
                }
                (Some((t, r)), false) => {
                    let at = self.sent - self.head_len;
                    match bufs.file_data(*t) {
                        Some((f, from)) => {
                            let start = from + (r.start + at) as u64;
                            sendfile::send_some(stream, f, start, r.len() - at)
                        }
                        None => stream.write(&data_of(bufs, *t, r)?[at..]),
                    }
                }
            };
            match res {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// One `writev` of `pieces`. Under WASI a write of the first piece only:
/// wasi-libc's `writev` on a socket waits until all is written,
/// non-blocking or not, and a node that stopped reading would hold the
/// process past every timeout.
fn write_pieces(stream: &mut TcpStream, pieces: &[IoSlice<'_>]) -> io::Result<usize> {
    if cfg!(target_os = "wasi") {
        return match pieces.iter().find(|p| !p.is_empty()) {
            Some(p) => stream.write(p),
            None => Ok(0),
        };
    }
    stream.write_vectored(pieces)
}

/// The bytes of write `token` at `range`. They are gone only if the write
/// was answered before it was all sent, which a server that reads each
/// request whole cannot do: the stream is out of step.
fn data_of<'a>(bufs: &'a dyn Buffers, token: Token, range: &Range<usize>) -> io::Result<&'a [u8]> {
    bufs.data(token).get(range.clone()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the server answered a write before it was all sent",
        )
    })
}
