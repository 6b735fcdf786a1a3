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
mod negotiate;
mod reply;
mod signal;
mod status;
mod transmit;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::time::{Duration, Instant};

use sheepdog_core::nbd::handshake::{GREETING_LEN, REPLY_BUF_LEN};
use sheepdog_core::nbd::request::{Parse, Request};

use crate::cluster::session::{close, open};
use crate::cluster::{Client, Gateways};
use crate::error::CliError;
use crate::io::readiness::{self, Want};
use crate::target::Target;
use conn::{Conn, Phase};
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

/// What `serve` serves, where, and how.
pub struct Config {
    /// Exports (VDI or VDI@SNAP); the first is the default export. None:
    /// every VDI of the cluster can be opened by name.
    pub vdis: Vec<String>,
    /// TCP HOST:PORT to listen on.
    pub listen: Option<String>,
    /// Unix socket to listen on.
    pub socket: Option<String>,
    /// Every export read-only (snapshots always are).
    pub read_only: bool,
    /// Requests in flight to the cluster per export.
    pub queue_depth: usize,
    /// Writable exports take no VDI lock.
    pub no_lock: bool,
    /// The cluster's nodes.
    pub gateways: Gateways,
    /// Log nothing but errors.
    pub quiet: bool,
}

/// Serve until SIGINT or SIGTERM (natively; the WASI component until it
/// is killed).
pub fn run(cfg: &Config) -> Result<(), CliError> {
    let mut allowed = Vec::new();
    for v in &cfg.vdis {
        let t = Target::parse(v)?;
        if t.server.is_some() {
            return Err(CliError::msg(format!(
                "'{v}' names a server; give the gateway with -a"
            )));
        }
        check_exists(cfg, &t)?;
        allowed.push((t.display(), t));
    }
    let mut listeners = Vec::new();
    if let Some(path) = &cfg.socket {
        listeners.push(Listener::unix(path)?);
    }
    if cfg.socket.is_none() || cfg.listen.is_some() {
        let addr = cfg.listen.as_deref().unwrap_or("127.0.0.1:10809");
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
        cfg,
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
fn check_exists(cfg: &Config, t: &Target) -> Result<(), CliError> {
    let mut client = Client::connect(cfg.gateways.clone(), cfg.quiet)?;
    open(&mut client, t, false)?;
    close(&mut client, &t.display())
}

struct Server<'a> {
    cfg: &'a Config,
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
        if !self.cfg.quiet {
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
