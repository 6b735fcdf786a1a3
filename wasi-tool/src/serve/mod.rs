//! `serve`: Sheepdog volumes over NBD, for QEMU, qemu-img, nbdcopy and
//! the kernel. One readiness loop holds the listeners, every client
//! connection and one gateway connection per open export:
//!
//! ```text
//! poll(listeners, NBD connections, gateway connections)
//!   listener readable   -> accept, send the greeting
//!   NBD bytes           -> core::nbd parses options or requests
//!                          -> the export's engine (read, write, discard)
//!   gateway             -> engine transmit / receive (Export::pump)
//!   engine events       -> core::nbd replies -> the connection's output
//! ```
//!
//! Memory is bounded: a connection stops being read while it has
//! [`CONN_INFLIGHT`] requests in flight or [`CONN_HELD`] bytes in
//! buffers and replies, and every connection does while the server holds
//! [`SERVER_HELD`] bytes in all; TCP then holds the clients back.

mod conn;
mod export;
mod listen;
mod reply;
mod signal;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::time::{Duration, Instant};

use sheepdog_core::nbd::handshake::{Answer, Export as NbdExport, Outcome, Question, Refusal};
use sheepdog_core::nbd::handshake::{GREETING_LEN, REPLY_BUF_LEN};
use sheepdog_core::nbd::request::{Command, Limits, Parse, Request};
use sheepdog_core::nbd::{cmd_flags, transmission_flags as tf, Errno, MAX_PAYLOAD};

use crate::cli::{Cli, ServeArgs};
use crate::error::{CliError, Kind};
use crate::readiness::{self, Want};
use crate::target::Target;
use conn::{Conn, Incoming, Phase};
use export::{ConnId, Export, State};
use listen::Listener;

/// Requests one connection may have in flight before it is read no more.
pub const CONN_INFLIGHT: usize = 256;
/// Buffer and reply bytes one connection may hold before it is read no
/// more (a request of up to 32 MiB can come on top).
pub const CONN_HELD: usize = 32 << 20;
/// Buffer and reply bytes of all connections before none is read.
pub const SERVER_HELD: usize = 128 << 20;
/// How long an export nobody uses stays open (QEMU and qemu-img often
/// connect twice in a row).
const LINGER: Duration = Duration::from_secs(2);
/// How long a stop waits for requests in flight.
const STOP_WAIT: Duration = Duration::from_secs(60);
/// The longest sleep of the loop (a signal also ends it).
const TICK: Duration = Duration::from_secs(1);

/// `serve [VDI[@SNAP]...]`
pub fn serve(cli: &Cli, args: &ServeArgs) -> Result<(), CliError> {
    let mut allowed = Vec::new();
    for v in &args.vdis {
        let t = Target::parse(v)?;
        if t.server.is_some() {
            return Err(CliError::msg(format!(
                "'{v}' names a server; give the gateway with -a"
            )));
        }
        check_exists(cli, &t)?;
        allowed.push((t.display(), t));
    }
    let mut listeners = Vec::new();
    if let Some(path) = &args.socket {
        listeners.push(Listener::unix(path)?);
    }
    if args.socket.is_none() || args.listen.is_some() {
        let addr = args.listen.as_deref().unwrap_or("127.0.0.1:10809");
        listeners.push(Listener::tcp(addr)?);
    }
    for l in &listeners {
        if allowed.is_empty() {
            println!(
                "{} (any VDI of the cluster: add VDI or VDI@SNAP)",
                l.uri("")
            );
        }
        for (name, _) in &allowed {
            println!("{}", l.uri(name));
        }
    }
    use std::io::Write;
    let _ = io::stdout().flush();
    signal::install();
    let mut server = Server {
        cli,
        args,
        allowed,
        listeners,
        conns: BTreeMap::new(),
        exports: HashMap::new(),
        next_conn: 1,
        stopping: None,
        accept_pause: None,
        scratch: vec![0u8; REPLY_BUF_LEN],
    };
    server.run()
}

/// Open and close `t` once, so that a name that does not exist is an
/// error at start, not when a client comes.
fn check_exists(cli: &Cli, t: &Target) -> Result<(), CliError> {
    let mut client = crate::session::connect(t, cli)?;
    crate::session::open(&mut client, t, false)?;
    crate::session::close(&mut client, &t.display())
}

struct Server<'a> {
    cli: &'a Cli,
    args: &'a ServeArgs,
    /// The exports named on the command line (none: any VDI).
    allowed: Vec<(String, Target)>,
    listeners: Vec<Listener>,
    /// Boxed: a connection is taken out of the map while it is served,
    /// and it holds kilobytes (the handshake keeps an export name).
    conns: BTreeMap<ConnId, Box<Conn>>,
    exports: HashMap<String, Export>,
    next_conn: ConnId,
    /// When a stop was asked for.
    stopping: Option<Instant>,
    /// No accepting before then (after an accept failed).
    accept_pause: Option<Instant>,
    scratch: Vec<u8>,
}

impl Server<'_> {
    fn log(&self, msg: &str) {
        if !self.cli.quiet {
            eprintln!("nbd: {msg}");
        }
    }

    fn run(&mut self) -> Result<(), CliError> {
        let mut ready = Vec::new();
        loop {
            if signal::stop_requested() && self.stopping.is_none() {
                self.begin_stop();
            }
            if let Some(since) = self.stopping {
                if self.conns.is_empty() {
                    break;
                }
                if since.elapsed() > STOP_WAIT {
                    eprintln!("nbd: stopping although requests are still in flight");
                    break;
                }
            }
            self.pump_exports();
            self.answer_waiting();
            for id in self.conns.keys().copied().collect::<Vec<_>>() {
                self.service(id);
            }
            self.pump_exports();
            // An export that opened just now answers its clients now.
            self.answer_waiting();
            for c in self.conns.values_mut() {
                c.flush();
            }
            self.reap();
            let (wants, ids, timeout) = self.wants();
            readiness::wait_or_signal(&wants, Some(timeout), &mut ready, true)
                .map_err(|e| CliError::msg(format!("cannot wait for sockets: {e}")))?;
            let nl = self.listeners.len();
            for (i, r) in ready.iter().enumerate().take(nl) {
                if r.read && wants[i].read {
                    self.accept(i);
                }
            }
            // A connection waited on for nothing that poll still reports
            // hung up or failed: its client is gone (and would make poll
            // return at once, forever).
            for (k, id) in ids.iter().enumerate() {
                let (w, r) = (
                    wants[nl + k],
                    ready.get(nl + k).copied().unwrap_or_default(),
                );
                if !w.read && !w.write && (r.read || r.write) {
                    if let Some(c) = self.conns.get_mut(id) {
                        c.dead = true;
                    }
                }
            }
        }
        self.close_exports();
        Ok(())
    }

    fn begin_stop(&mut self) {
        self.log("stopping: finishing what is in flight");
        self.stopping = Some(Instant::now());
        self.listeners.clear();
        for c in self.conns.values_mut() {
            match c.phase {
                Phase::Transmission { .. } => c.closing = true,
                _ => c.dead = true,
            }
        }
    }

    /// Write every index, release every lock.
    fn close_exports(&mut self) {
        for (name, mut e) in self.exports.drain() {
            if let Err(err) = e.close_now() {
                eprintln!("nbd: closing {name}: {err}");
            }
        }
    }

    fn accept(&mut self, i: usize) {
        loop {
            let got = match self.listeners.get(i) {
                Some(l) => l.accept(),
                None => return,
            };
            match got {
                Ok(Some((stream, peer))) => {
                    let id = self.next_conn;
                    self.next_conn += 1;
                    let mut c = Box::new(Conn::new(id, stream, peer));
                    let mut g = [0u8; GREETING_LEN];
                    match c.hs.greeting(&mut g) {
                        Ok(n) => c.out.put(&g[..n]),
                        Err(_) => c.dead = true,
                    }
                    self.conns.insert(id, c);
                }
                Ok(None) => return,
                Err(e) => {
                    // Out of descriptors, say: the listener stays
                    // readable, so wait a little before trying again.
                    self.log(&format!("accept: {e}"));
                    self.accept_pause = Some(Instant::now() + Duration::from_millis(100));
                    return;
                }
            }
        }
    }

    /// Bytes held in buffers and replies, in all.
    fn held(&self) -> usize {
        self.exports.values().map(|e| e.held).sum::<usize>()
            + self
                .conns
                .values()
                .map(|c| c.unsent() + c.incoming.as_ref().map_or(0, |i| i.buf.len()))
                .sum::<usize>()
    }

    /// Whether connection `c` may take another request now.
    fn may_take(&self, c: &Conn, held: usize) -> bool {
        let own = c.unsent() + c.incoming.as_ref().map_or(0, |i| i.buf.len()) + c.held;
        !c.closing && !c.dead && c.inflight < CONN_INFLIGHT && own < CONN_HELD && held < SERVER_HELD
    }

    /// Read and handle what connection `id` sent.
    fn service(&mut self, id: ConnId) {
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        let mut held = self.held();
        for _ in 0..64 {
            let readable = match c.phase {
                Phase::Negotiating => !c.dead && !c.closing,
                Phase::Waiting(..) => false,
                Phase::Transmission { .. } => self.may_take(&c, held) || c.incoming.is_some(),
            };
            if !readable {
                break;
            }
            match c.fill() {
                Ok(true) => {}
                Ok(false) => {
                    c.dead = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.log(&format!("{}: {e}", c.peer));
                    c.dead = true;
                    break;
                }
            }
            self.parse(&mut c, &mut held);
        }
        // Input that was read before a pause (a wait for an export, or
        // for room) is handled once it can be.
        self.parse(&mut c, &mut held);
        self.conns.insert(id, c);
    }

    fn parse(&mut self, c: &mut Conn, held: &mut usize) {
        loop {
            if c.dead {
                return;
            }
            let progressed = match c.phase {
                Phase::Negotiating => self.negotiate(c),
                Phase::Waiting(..) => false,
                Phase::Transmission { .. } => self.transmission(c, held),
            };
            if !progressed {
                return;
            }
        }
    }

    /// Handle one handshake message, if a whole one is there.
    fn negotiate(&mut self, c: &mut Conn) -> bool {
        let step = c.negotiate(&mut self.scratch);
        use sheepdog_core::nbd::handshake::Step;
        match step {
            Err(e) => {
                self.log(&format!("{}: closing: {e}", c.peer));
                c.dead = true;
                false
            }
            Ok(Step::NeedMore { .. }) => false,
            Ok(Step::Answered { consumed, reply }) => {
                c.consume(consumed);
                c.out.put(&self.scratch[..reply]);
                true
            }
            Ok(Step::Close { consumed, reply }) => {
                c.consume(consumed);
                c.out.put(&self.scratch[..reply]);
                c.closing = true;
                false
            }
            Ok(Step::Ask { consumed, question }) => {
                c.consume(consumed);
                self.ask(c, question);
                true
            }
        }
    }

    /// Answer a question about the exports, or park the connection until
    /// its export is open.
    fn ask(&mut self, c: &mut Conn, q: Question) {
        if q == Question::List {
            return self.list(c);
        }
        let name = q.name().unwrap_or_default().to_vec();
        let (key, target, writable) = match self.resolve(&name) {
            Ok(r) => r,
            Err((why, msg)) => return self.refuse(c, &q, why, &msg),
        };
        if self.stopping.is_some() {
            return self.refuse(c, &q, Refusal::Shutdown, "the server is stopping");
        }
        if !self.exports.contains_key(&key) {
            let lock = writable && !self.args.no_lock;
            let opened = Export::open(
                key.clone(),
                target,
                writable,
                lock,
                self.args.queue_depth,
                self.cli,
            );
            match opened {
                Ok(e) => {
                    self.exports.insert(key.clone(), e);
                }
                Err(e) => return self.refuse(c, &q, Refusal::Failed, &e.to_string()),
            }
        }
        c.phase = Phase::Waiting(Box::new(q), key);
        self.answer_one(c);
    }

    /// Answer a parked connection whose export has come to a state.
    fn answer_one(&mut self, c: &mut Conn) {
        let Phase::Waiting(q, key) = std::mem::replace(&mut c.phase, Phase::Negotiating) else {
            return;
        };
        let q = *q;
        let Some(e) = self.exports.get_mut(&key) else {
            // Closed meanwhile: open it again.
            return self.ask(c, q);
        };
        match &e.state {
            State::Opening | State::Closing => {
                c.phase = Phase::Waiting(Box::new(q), key);
            }
            State::Closed => {
                self.exports.remove(&key);
                self.ask(c, q);
            }
            State::Failed(err) => {
                let why = match err.kind() {
                    Kind::NoSuchVdi => Refusal::Unknown,
                    _ if err.to_string().contains("locked") => Refusal::Policy,
                    _ => Refusal::Failed,
                };
                let msg = err.to_string();
                if e.users == 0 && e.quiet() {
                    self.exports.remove(&key);
                }
                self.refuse(c, &q, why, &msg);
            }
            State::Open(info) => {
                let info = *info;
                let mut flags = tf::SEND_FLUSH | tf::SEND_DF | tf::CAN_MULTI_CONN;
                // A hyper volume is served read-only: its B-tree inserts
                // are not written yet.
                if e.writable && !info.hyper {
                    flags |=
                        tf::SEND_FUA | tf::SEND_TRIM | tf::SEND_WRITE_ZEROES | tf::SEND_FAST_ZERO;
                } else {
                    flags |= tf::READ_ONLY;
                }
                let description = format!(
                    "Sheepdog {} {} (VID {:x}, {} copies)",
                    if info.snapshot { "snapshot" } else { "VDI" },
                    key,
                    info.vid,
                    info.copies
                );
                let export = NbdExport {
                    name: key.as_bytes(),
                    description: description.as_bytes(),
                    size: info.size,
                    flags,
                    min_block: 1,
                    // The spec wants it no larger than the maximum.
                    preferred_block: info.object_size.min(MAX_PAYLOAD),
                    max_block: MAX_PAYLOAD,
                };
                let answer = c.hs.answer_export(&mut self.scratch, &q, Ok(&export));
                match answer {
                    Ok(Answer { reply, outcome }) => {
                        c.out.put(&self.scratch[..reply]);
                        match outcome {
                            Outcome::Continue => {}
                            Outcome::Close => c.closing = true,
                            Outcome::Transmission(neg) => {
                                e.users += 1;
                                e.idle_since = None;
                                let limits = Limits {
                                    size: info.size,
                                    read_only: !e.writable || info.hyper,
                                    structured: neg.structured,
                                    base_allocation: neg.base_allocation,
                                };
                                let mode = if e.writable && !info.hyper {
                                    "read-write"
                                } else {
                                    "read-only"
                                };
                                let msg = format!("{}: {key} ({mode})", c.peer);
                                c.phase = Phase::Transmission {
                                    export: key,
                                    neg,
                                    limits,
                                    object_size: info.object_size,
                                };
                                self.log(&msg);
                            }
                        }
                    }
                    Err(err) => {
                        self.log(&format!("{}: closing: {err}", c.peer));
                        c.dead = true;
                    }
                }
            }
        }
    }

    fn refuse(&mut self, c: &mut Conn, q: &Question, why: Refusal, msg: &str) {
        self.log(&format!("{}: refused: {msg}", c.peer));
        match c.hs.answer_export(&mut self.scratch, q, Err((why, msg))) {
            Ok(Answer { reply, outcome }) => {
                c.out.put(&self.scratch[..reply]);
                if outcome == Outcome::Close {
                    c.closing = true;
                }
            }
            Err(_) => c.dead = true,
        }
    }

    /// The export an NBD name means: its key, what it opens, whether it
    /// is writable.
    fn resolve(&self, name: &[u8]) -> Result<(String, Target, bool), (Refusal, String)> {
        let unknown = |m: String| (Refusal::Unknown, m);
        let Ok(name) = std::str::from_utf8(name) else {
            return Err(unknown("the export name is not UTF-8".into()));
        };
        let t = if name.is_empty() {
            match self.allowed.first() {
                Some((_, t)) => t.clone(),
                None => return Err(unknown("no default export: name a VDI".into())),
            }
        } else {
            Target::parse(name).map_err(|e| unknown(e.to_string()))?
        };
        if t.server.is_some() {
            return Err(unknown(format!("'{name}' names a server")));
        }
        let key = t.display();
        if !self.allowed.is_empty() && !self.allowed.iter().any(|(k, _)| *k == key) {
            return Err(unknown(format!("{key} is not exported here")));
        }
        let writable = t.snapshot.is_none() && !self.args.read_only;
        Ok((key, t, writable))
    }

    /// NBD_OPT_LIST: the exports named on the command line, or every VDI
    /// and snapshot of the cluster.
    fn list(&mut self, c: &mut Conn) {
        let names: Result<Vec<String>, CliError> = if self.allowed.is_empty() {
            self.cli
                .gateways(None)
                .and_then(|g| crate::client::Client::connect(g, self.cli.quiet))
                .and_then(|mut client| crate::list::collect(&mut client))
                .map(|rows| rows.iter().map(|r| r.export_name()).collect())
        } else {
            Ok(self.allowed.iter().map(|(k, _)| k.clone()).collect())
        };
        let mut buf = vec![0u8; REPLY_BUF_LEN];
        match names {
            Ok(names) => {
                for n in names {
                    if let Ok(len) = c.hs.answer_list_entry(&mut buf, n.as_bytes()) {
                        c.out.put(&buf[..len]);
                    }
                }
                if let Ok(len) = c.hs.answer_list_end(&mut buf) {
                    c.out.put(&buf[..len]);
                }
            }
            Err(e) => {
                self.log(&format!("{}: cannot list: {e}", c.peer));
                if let Ok(len) = c.hs.answer_list_error(&mut buf, &e.to_string()) {
                    c.out.put(&buf[..len]);
                }
            }
        }
    }

    /// Take one request (and its payload), if a whole one is there and
    /// the connection may take it.
    fn transmission(&mut self, c: &mut Conn, held: &mut usize) -> bool {
        if c.incoming.is_some() {
            c.feed_incoming();
            let Some(inc) = c.incoming.take_if(|i| i.have == i.buf.len()) else {
                return false;
            };
            self.dispatch(c, inc.req, inc.buf);
            return true;
        }
        if !self.may_take(c, *held) {
            return false;
        }
        match Request::parse(c.input()) {
            Ok(Parse::Partial { .. }) => false,
            Err(e) => {
                self.log(&format!("{}: closing: {e}", c.peer));
                c.dead = true;
                false
            }
            Ok(Parse::Complete(req)) => {
                c.consume(sheepdog_core::nbd::request::REQUEST_LEN);
                let n = req.payload_len();
                if n > 0 {
                    *held += n;
                    c.incoming = Some(Incoming {
                        req,
                        buf: vec![0u8; n],
                        have: 0,
                    });
                    return true;
                }
                if req.command == Command::Read {
                    // Its buffer is allocated now: count it before the
                    // next request is looked at.
                    *held += req.len as usize;
                }
                self.dispatch(c, req, Vec::new());
                true
            }
        }
    }

    /// Carry out a request, or reply to it at once.
    fn dispatch(&mut self, c: &mut Conn, req: Request, buf: Vec<u8>) {
        let Phase::Transmission {
            export,
            neg,
            limits,
            object_size,
        } = &c.phase
        else {
            c.dead = true;
            return;
        };
        let (neg, limits, object_size) = (*neg, *limits, *object_size);
        if let Err(errno) = req.check(&limits) {
            let msg = format!(
                "{} {}+{}: {}",
                req.command.name(),
                req.offset,
                req.len,
                match errno {
                    Errno::Perm => "the export is read-only",
                    Errno::Overflow => "longer than 32 MiB",
                    _ => "invalid (out of range, or a flag or command not offered)",
                }
            );
            self.log(&format!("{}: {export}: {msg} ({errno})", c.peer));
            reply::answer(&mut c.out, &neg, &req, Err((errno, &msg)));
            return;
        }
        let Some(e) = self.exports.get_mut(export.as_str()) else {
            c.dead = true;
            return;
        };
        match req.command {
            Command::Disc => c.closing = true,
            Command::BlockStatus => {
                let req_one = req.flags & cmd_flags::REQ_ONE != 0;
                let extents = if req.len == 0 {
                    Vec::new()
                } else {
                    status::extents(
                        req.offset,
                        req.len,
                        limits.size,
                        object_size,
                        req_one,
                        |i| e.allocated(i),
                    )
                };
                let result = if extents.is_empty() {
                    Err((Errno::Inval, "empty block status request"))
                } else {
                    Ok(reply::Payload::Status(&extents))
                };
                reply::answer(&mut c.out, &neg, &req, result);
            }
            _ if !matches!(e.state, State::Open(_)) => {
                let msg = "the export's gateway connection failed";
                reply::answer(&mut c.out, &neg, &req, Err((Errno::Io, msg)));
                c.closing = true;
            }
            _ => {
                c.inflight += 1;
                if matches!(req.command, Command::Read | Command::Write) {
                    c.held += req.len as usize;
                }
                e.start(c.id, req, buf);
            }
        }
    }

    /// Run every export's engine and route what finished to its client.
    fn pump_exports(&mut self) {
        let quiet = self.cli.quiet;
        for e in self.exports.values_mut() {
            if matches!(e.state, State::Failed(_) | State::Closed) {
                continue;
            }
            if let Err(err) = e.pump() {
                eprintln!("nbd: {}: {err}", e.name);
                e.fail_all(err);
            }
            for mut p in e.take_finished() {
                let Some(c) = self.conns.get_mut(&p.conn) else {
                    continue;
                };
                c.inflight = c.inflight.saturating_sub(1);
                if matches!(p.req.command, Command::Read | Command::Write) {
                    c.held = c.held.saturating_sub(p.req.len as usize);
                }
                let Phase::Transmission { neg, .. } = &c.phase else {
                    continue;
                };
                let r = &p.req;
                let result = match &p.error {
                    Some((errno, msg)) => {
                        if !quiet {
                            eprintln!(
                                "nbd: {}: {} {} {}+{}: {msg} ({errno})",
                                c.peer,
                                e.name,
                                r.command.name(),
                                r.offset,
                                r.len
                            );
                        }
                        Err((*errno, msg.as_str()))
                    }
                    None if r.command == Command::Read => Ok(reply::Payload::Read {
                        data: std::rc::Rc::new(std::mem::take(&mut p.buf)),
                        holes: &mut p.holes,
                    }),
                    None => Ok(reply::Payload::None),
                };
                reply::answer(&mut c.out, neg, r, result);
            }
        }
    }

    /// Connections parked on an export whose state changed.
    fn answer_waiting(&mut self) {
        let waiting: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Waiting(..)))
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            if let Some(mut c) = self.conns.remove(&id) {
                self.answer_one(&mut c);
                self.conns.insert(id, c);
            }
        }
    }

    /// Drop closed connections; close exports nobody has used for a while.
    fn reap(&mut self) {
        let dead: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.dead)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            let Some(c) = self.conns.remove(&id) else {
                continue;
            };
            if let Phase::Transmission { export, .. } = &c.phase {
                if let Some(e) = self.exports.get_mut(export.as_str()) {
                    e.users = e.users.saturating_sub(1);
                    if e.users == 0 {
                        e.idle_since = Some(Instant::now());
                    }
                }
                self.log(&format!("{}: {export}: disconnected", c.peer));
            }
        }
        // Connections on an export whose gateway failed end once their
        // replies are out.
        for c in self.conns.values_mut() {
            if let Phase::Transmission { export, .. } = &c.phase {
                let failed = self
                    .exports
                    .get(export.as_str())
                    .is_none_or(|e| matches!(e.state, State::Failed(_)));
                if failed {
                    c.closing = true;
                }
            }
        }
        let waited_on: Vec<String> = self
            .conns
            .values()
            .filter_map(|c| match &c.phase {
                Phase::Waiting(_, k) => Some(k.clone()),
                _ => None,
            })
            .collect();
        self.exports.retain(|key, e| {
            if waited_on.contains(key) || e.users > 0 || !e.quiet() {
                return true;
            }
            match e.state {
                State::Closed | State::Failed(_) => false,
                State::Open(_) if e.idle_since.is_some_and(|t| t.elapsed() >= LINGER) => {
                    e.start_close();
                    true
                }
                State::Open(_) if e.idle_since.is_none() => {
                    e.idle_since = Some(Instant::now());
                    true
                }
                _ => true,
            }
        });
    }

    /// What the loop waits for (listeners, then the connections named,
    /// then the gateways), and for how long at most.
    fn wants(&self) -> (Vec<Want>, Vec<ConnId>, Duration) {
        let mut wants = Vec::new();
        let mut timeout = TICK;
        let paused = self.accept_pause.filter(|&t| t > Instant::now());
        if let Some(t) = paused {
            timeout = timeout.min(t - Instant::now());
        }
        for l in &self.listeners {
            wants.push(Want {
                fd: l.fd(),
                read: paused.is_none(),
                write: false,
            });
        }
        let mut ids = Vec::new();
        let held = self.held();
        for c in self.conns.values() {
            let read = match c.phase {
                Phase::Negotiating => !c.closing,
                Phase::Waiting(..) => false,
                Phase::Transmission { .. } => self.may_take(c, held) || c.incoming.is_some(),
            };
            wants.push(Want {
                fd: c.fd(),
                read,
                write: c.unsent() > 0,
            });
            ids.push(c.id);
        }
        // Requests read before the connection had to pause, which it may
        // take now: no socket will say so.
        let buffered = self.conns.values().any(|c| {
            matches!(c.phase, Phase::Transmission { .. })
                && c.incoming.is_none()
                && self.may_take(c, held)
                && matches!(Request::parse(c.input()), Ok(Parse::Complete(_)))
        });
        if buffered {
            timeout = Duration::ZERO;
        }
        for e in self.exports.values() {
            if matches!(e.state, State::Failed(_) | State::Closed) {
                continue;
            }
            wants.push(e.want());
            if let Some(w) = e.next_wake() {
                timeout = timeout.min(w);
            }
        }
        (wants, ids, timeout)
    }
}
