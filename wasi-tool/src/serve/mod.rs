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
//! Memory is bounded and shared fairly (`budget.rs`): a connection stops
//! being read while it is at its own share of requests in flight and of
//! bytes in buffers and replies, and while the server as a whole is at its
//! figure, the connections over their fair part of it stop too; TCP then
//! holds those clients back. Negotiation is read only while few replies
//! wait. A handshake has a time limit; connections in transmission, busy
//! or idle, have none.

mod activation;
mod allow;
mod budget;
mod conn;
mod export;
mod listen;
mod negotiate;
mod reply;
mod signal;
mod status;
mod tls;
mod transmit;
#[cfg(target_os = "linux")]
mod vhost;
#[cfg(target_os = "linux")]
mod virtio_blk;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::time::{Duration, Instant};

use sheepdog_core::nbd::handshake::{GREETING_LEN, REPLY_BUF_LEN};
use sheepdog_core::nbd::request::{Parse, Request};

use crate::cluster::session::{close, open};
use crate::cluster::{Client, Gateways};
use crate::error::CliError;
use crate::io::readiness::{self, Want};
use crate::io::spin::Spin;
use crate::target::Target;
use conn::{Conn, Phase};
use export::{ConnId, Export, State};
use listen::Listener;

pub use allow::Cidr;
pub use sheepdog_core::nbd::handshake::Tls;
pub use tls::Creds;

/// How long an export nobody uses stays open (QEMU and qemu-img often
/// connect twice in a row).
const LINGER: Duration = Duration::from_secs(2);
/// How long a stop waits for requests in flight.
const STOP_WAIT: Duration = Duration::from_secs(60);
/// The longest sleep of the loop (a signal also ends it).
const TICK: Duration = Duration::from_secs(1);
/// The same notice (a refused client, a failed accept) is logged at most
/// this often.
const NOTICE_EVERY: Duration = Duration::from_secs(10);

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
    /// TLS: offered or required with these credentials, or off.
    pub tls: Tls,
    /// The credentials (`--tls-creds`).
    pub creds: Option<Creds>,
    /// Client addresses accepted (none: any).
    pub allow: Vec<Cidr>,
    /// Connections at once; more are closed at once.
    pub max_connections: usize,
    /// How long a client may take to finish the handshake.
    pub handshake_limit: Duration,
    /// Write the process id here once listening.
    pub pid_file: Option<String>,
    /// Serve the one VDI as a vhost-user-blk device on this Unix socket
    /// instead of over NBD.
    pub vhost_user_blk: Option<String>,
    /// How long the loop looks at its sockets without sleeping before a
    /// wait while busy (see [`Spin`]; zero: never).
    pub poll_max: Duration,
}

/// Serve until SIGINT or SIGTERM (natively; the WASI component until it
/// is killed).
pub fn run(cfg: &Config) -> Result<(), CliError> {
    budget::keep_freed_buffers();
    if let Some(path) = &cfg.vhost_user_blk {
        return vhost_user_blk(cfg, path);
    }
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
    let listeners = listen_on(cfg)?;
    for l in &listeners {
        if let (Some(a), false) = (l.beyond_loopback(), cfg.tls == Tls::Require) {
            eprintln!(
                "sheep-tool: warning: listening on {a}, beyond loopback, without TLS required: \
                 anyone who reaches it reads and writes the volumes (--tls-creds, --allow)"
            );
        }
    }
    // Before anyone can know the server is up (the pid file, the URIs): a
    // supervisor that stops it as soon as it sees them must get a clean
    // stop (pid file removed, locks released), not the default death.
    signal::install();
    let pid_file = PidFile::write(cfg.pid_file.as_deref())?;
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
        noticed: HashMap::new(),
        listed: None,
        readable: std::collections::HashSet::new(),
        spin: Spin::new(cfg.poll_max),
    };
    let res = server.run();
    drop(pid_file);
    res
}

/// `--vhost-user-blk SOCKET VDI`: Linux only (vhost-user needs shared
/// memory and file descriptors passed over a Unix socket).
fn vhost_user_blk(cfg: &Config, path: &str) -> Result<(), CliError> {
    let [vdi] = cfg.vdis.as_slice() else {
        return Err(CliError::msg(
            "--vhost-user-blk serves exactly one VDI: give one VDI or VDI@SNAP",
        ));
    };
    #[cfg(target_os = "linux")]
    {
        vhost::run(cfg, path, vdi)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (path, vdi);
        Err(CliError::msg(
            "--vhost-user-blk needs Linux (shared guest memory): the WASI component serves NBD only",
        ))
    }
}

/// The listeners: those a service manager handed over, else
/// `--socket` and `--listen` (127.0.0.1:10809 by default).
fn listen_on(cfg: &Config) -> Result<Vec<Listener>, CliError> {
    if let Some(handed) = activation::listeners()? {
        if cfg.socket.is_some() || cfg.listen.is_some() {
            return Err(CliError::msg(
                "sockets were handed over (LISTEN_FDS): --listen and --socket cannot be given too",
            ));
        }
        return Ok(handed);
    }
    let mut listeners = Vec::new();
    if let Some(path) = &cfg.socket {
        listeners.push(Listener::unix(path)?);
    }
    if cfg.socket.is_none() || cfg.listen.is_some() {
        let addr = cfg.listen.as_deref().unwrap_or("127.0.0.1:10809");
        listeners.push(Listener::tcp(addr)?);
    }
    Ok(listeners)
}

/// `--pid-file`: written once the server listens, removed when it ends.
struct PidFile(Option<String>);

impl PidFile {
    fn write(path: Option<&str>) -> Result<PidFile, CliError> {
        let Some(path) = path else {
            return Ok(PidFile(None));
        };
        if cfg!(target_os = "wasi") {
            return Err(CliError::msg(
                "--pid-file: the WASI component has no process id to write",
            ));
        }
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| crate::error::file(path, "write", &e))?;
        Ok(PidFile(Some(path.to_owned())))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Open and close `t` once, so that a name that does not exist is an
/// error at start, not when a client comes.
fn check_exists(cfg: &Config, t: &Target) -> Result<(), CliError> {
    let mut client = Client::connect(cfg.gateways.clone(), cfg.quiet)?;
    open(&mut client, t, false)?;
    close(&mut client, &t.display())
}

/// What all connections hold, for the budget.
#[derive(Clone, Copy, Debug)]
struct Held {
    /// Bytes in buffers and replies.
    total: usize,
    /// Connections in transmission.
    active: usize,
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
    /// When each kind of notice was last logged, and how many were left
    /// out since.
    noticed: HashMap<&'static str, (Instant, u64)>,
    /// The cluster's VDIs as last listed for NBD_OPT_LIST, and when.
    listed: Option<(Instant, Vec<String>)>,
    /// Connections the last wait said readable (or new since): the others
    /// are not read, so that no call is spent to learn nothing is there.
    readable: std::collections::HashSet<ConnId>,
    /// How long the loop looks at its sockets before it sleeps.
    spin: Spin,
}

impl Server<'_> {
    /// Log `msg` of the kind `kind`, at most once per [`NOTICE_EVERY`]
    /// (a flood of refused clients does not flood the log).
    fn notice(&mut self, kind: &'static str, msg: &str) {
        let now = Instant::now();
        let (last, left_out) = self.noticed.entry(kind).or_insert((now - NOTICE_EVERY, 0));
        if now.duration_since(*last) < NOTICE_EVERY {
            *left_out += 1;
            return;
        }
        let more = match std::mem::take(left_out) {
            0 => String::new(),
            n => format!(" ({n} more like it since the last)"),
        };
        *last = now;
        if !self.cfg.quiet {
            eprintln!("nbd: {msg}{more}");
        }
    }

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
                let read = self.readable.remove(&id);
                self.service(id, read);
            }
            self.pump_exports();
            // An export that opened just now answers its clients now.
            self.answer_waiting();
            for c in self.conns.values_mut() {
                c.flush();
            }
            self.reap();
            let (wants, ids, exports, timeout) = self.wants();
            readiness::wait_polling(&wants, Some(timeout), &mut ready, true, &mut self.spin)
                .map_err(|e| CliError::msg(format!("cannot wait for sockets: {e}")))?;
            let nl = self.listeners.len();
            for (k, id) in ids.iter().enumerate() {
                if ready.get(nl + k).is_some_and(|r| r.read) {
                    self.readable.insert(*id);
                }
            }
            for (k, name) in exports.iter().enumerate() {
                if ready.get(nl + ids.len() + k).is_some_and(|r| r.read) {
                    if let Some(e) = self.exports.get_mut(name) {
                        e.readable();
                    }
                }
            }
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
                Ok(Some(a)) => {
                    let allowed = self.cfg.allow.is_empty()
                        || a.ip
                            .is_none_or(|ip| self.cfg.allow.iter().any(|c| c.contains(ip)));
                    if !allowed {
                        // Closed before a byte is read from it.
                        drop(a.stream);
                        self.notice("allow", &format!("{}: refused: not in --allow", a.peer));
                        continue;
                    }
                    if self.conns.len() >= self.cfg.max_connections {
                        drop(a.stream);
                        let max = self.cfg.max_connections;
                        let msg = format!(
                            "{}: refused: {max} connections already (--max-connections)",
                            a.peer
                        );
                        self.notice("max-connections", &msg);
                        continue;
                    }
                    let id = self.next_conn;
                    self.next_conn += 1;
                    let creds = self.cfg.creds.clone();
                    let mut c = Box::new(Conn::new(id, a.stream, a.peer, self.cfg.tls, creds));
                    let mut g = [0u8; GREETING_LEN];
                    match c.hs.greeting(&mut g) {
                        Ok(n) => c.out.put(&g[..n]),
                        Err(_) => c.dead = true,
                    }
                    self.conns.insert(id, c);
                }
                Ok(None) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors (EMFILE, ENFILE), say: the
                    // listener stays readable, so wait a little before
                    // trying again; the connections there are go on.
                    self.notice("accept", &format!("accept: {e}"));
                    self.accept_pause = Some(Instant::now() + Duration::from_millis(100));
                    return;
                }
            }
        }
    }

    /// Bytes held in buffers and replies, in all, and the connections in
    /// transmission.
    fn held(&self) -> Held {
        let active = (self.conns.values())
            .filter(|c| matches!(c.phase, Phase::Transmission { .. }))
            .count();
        let total = self.exports.values().map(|e| e.held).sum::<usize>()
            + self
                .conns
                .values()
                .map(|c| c.unsent() + c.incoming.as_ref().map_or(0, |i| i.buf.len()))
                .sum::<usize>();
        Held { total, active }
    }

    /// Whether connection `c` (in transmission) may take another request
    /// now: within its own share, and within its fair part of the
    /// server's while the server is at its figure.
    fn may_take(&self, c: &Conn, held: Held) -> bool {
        !c.closing && !c.dead && budget::may_take(c.own(), c.inflight, held.total, held.active)
    }

    /// Whether connection `c` may be read in its phase.
    fn readable(&self, c: &Conn, held: Held) -> bool {
        match c.phase {
            Phase::Negotiating => {
                !c.dead && !c.closing && !c.tls_pending() && budget::may_negotiate(c.unsent())
            }
            Phase::Waiting(..) => false,
            Phase::Transmission { .. } => self.may_take(c, held) || c.incoming.is_some(),
        }
    }

    /// Read (when `read`: the socket was said readable, or TLS holds
    /// plaintext) and handle what connection `id` sent.
    fn service(&mut self, id: ConnId, read: bool) {
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        let mut held = self.held();
        let read = read || c.tls_plaintext();
        for _ in 0..64 {
            if !read || !self.readable(&c, held) {
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

    fn parse(&mut self, c: &mut Conn, held: &mut Held) {
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
        // A handshake has a time limit (the TLS one included); a
        // connection in transmission, busy or idle, has none.
        let limit = self.cfg.handshake_limit;
        let mut late = Vec::new();
        for c in self.conns.values_mut() {
            if matches!(c.phase, Phase::Negotiating) && !c.dead && c.since.elapsed() > limit {
                c.dead = true;
                late.push(c.peer.clone());
            }
        }
        for peer in late {
            let msg = format!(
                "{peer}: closed: no handshake within {} s",
                limit.as_secs_f64()
            );
            self.notice("handshake", &msg);
        }
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
    fn wants(&self) -> (Vec<Want>, Vec<ConnId>, Vec<String>, Duration) {
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
            let read = self.readable(c, held);
            wants.push(Want {
                fd: c.fd(),
                read,
                write: c.wants_write(),
            });
            ids.push(c.id);
        }
        // Requests read before the connection had to pause, which it may
        // take now: no socket will say so.
        let buffered = self.conns.values().any(|c| {
            let takes = matches!(c.phase, Phase::Transmission { .. }) && self.may_take(c, held);
            (takes
                && c.incoming.is_none()
                && matches!(Request::parse(c.input()), Ok(Parse::Complete(_))))
                || (self.readable(c, held) && c.tls_plaintext())
        });
        if buffered {
            timeout = Duration::ZERO;
        }
        let mut exports = Vec::new();
        for (name, e) in &self.exports {
            if matches!(e.state, State::Failed(_) | State::Closed) {
                continue;
            }
            wants.push(e.want());
            exports.push(name.clone());
            if let Some(w) = e.next_wake() {
                timeout = timeout.min(w);
            }
        }
        (wants, ids, exports, timeout)
    }
}
