//! The nodes the tool may talk to: the ones given with `-a` (a comma
//! separated list) and the ones the cluster names (GET_NODE_LIST), and how
//! one is dialled. Every node of a Sheepdog cluster is a gateway to all of
//! its data, so when the one in use fails, any other will do.
//!
//! A node counts as answering once it has answered GET_NODE_LIST on a new
//! connection: that probe is the first request of every connection, so a
//! node that accepts and never answers (a stopped or wedged sheep) is
//! found out within the timeout before anything is resent to it, and the
//! list of nodes is fresh after every (re)connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use sheepdog_core::nodes::{GetNodeList, NODE_LIST_BUF_LEN};
use sheepdog_core::receive::{NoBuffers, Receiver};
use sheepdog_core::reply::Exchange;

use crate::error::{self, CliError};
use crate::io::readiness::{self, Want};

/// The id of the probe: the first request on a connection.
const PROBE_ID: u32 = 0x4e4f_4445;

/// The nodes, given and learned, and the timeout.
#[derive(Clone, Debug)]
pub struct Gateways {
    /// HOST[:PORT] as given, in order.
    given: Vec<String>,
    /// Addresses the cluster named, in its order.
    learned: Vec<SocketAddr>,
    /// How long a node may take to answer, and how long failing over may
    /// go on without any node answering.
    pub timeout: Duration,
}

impl Gateways {
    /// Parse `list` (`HOST[:PORT],HOST[:PORT]...`); every entry must be a
    /// valid address.
    pub fn parse(list: &str, timeout: Duration) -> Result<Gateways, CliError> {
        let mut given = Vec::new();
        for a in list.split(',').map(str::trim) {
            if a.is_empty() {
                return Err(CliError::msg(format!(
                    "bad address list '{list}': an empty entry"
                )));
            }
            let (a, _) = shown(a)?;
            if !given.contains(&a) {
                given.push(a);
            }
        }
        Ok(Gateways {
            given,
            learned: Vec::new(),
            timeout,
        })
    }

    /// Remember the nodes the cluster named (replacing what it said
    /// before: nodes that left are dropped).
    pub fn learn(&mut self, nodes: impl Iterator<Item = SocketAddr>) {
        self.learned.clear();
        for n in nodes {
            // What no client can connect to (an unset address, port 0,
            // multicast) is not a gateway.
            let ip = n.ip();
            if ip.is_unspecified() || ip.is_multicast() || n.port() == 0 {
                continue;
            }
            if !self.learned.contains(&n) {
                self.learned.push(n);
            }
        }
    }

    /// The nodes the cluster named last.
    pub fn learned(&self) -> &[SocketAddr] {
        &self.learned
    }

    /// Every node to try, as HOST:PORT text: the given ones, then the
    /// learned ones not among them.
    fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = self.given.clone();
        for n in &self.learned {
            let s = n.to_string();
            let known = all
                .iter()
                .any(|g| g == &s || resolve_one(g).is_some_and(|a| a == *n));
            if !known {
                all.push(s);
            }
        }
        all
    }

    /// The nodes in the order to try them after `failed` (HOST:PORT as
    /// dialled): the ones after it first, round the list, `failed` last (it
    /// may come back).
    pub fn after(&self, failed: Option<&str>) -> Vec<String> {
        let mut all = self.all();
        if let Some(f) = failed {
            if let Some(i) = all.iter().position(|a| a == f) {
                all.rotate_left(i + 1);
            }
        }
        all
    }
}

/// The first address `a` resolves to, when it is a literal (no lookups
/// for comparisons).
fn resolve_one(a: &str) -> Option<SocketAddr> {
    let hp = sheepdog_core::address::parse_host_port(a).ok()?;
    let ip: std::net::IpAddr = hp.host.parse().ok()?;
    Some(SocketAddr::new(
        ip,
        hp.port.unwrap_or(sheepdog_core::wire::DEFAULT_PORT),
    ))
}

/// HOST:PORT of `addr` as messages show it, the port defaulted.
pub fn shown(addr: &str) -> Result<(String, u16), CliError> {
    let hp = sheepdog_core::address::parse_host_port(addr)
        .map_err(|e| CliError::msg(format!("bad address '{addr}': {e}")))?;
    let port = hp.port.unwrap_or(sheepdog_core::wire::DEFAULT_PORT);
    let s = if hp.host.contains(':') {
        format!("[{}]:{port}", hp.host)
    } else {
        format!("{}:{port}", hp.host)
    };
    Ok((s, port))
}

/// A node that answered: the stream (non-blocking, ready for the engine),
/// its address as shown, and the nodes it named.
pub struct Dialled {
    /// The connection.
    pub stream: TcpStream,
    /// HOST:PORT.
    pub addr: String,
    /// The cluster's nodes, as this node knows them.
    pub nodes: Vec<SocketAddr>,
}

/// Why one node could not be used.
#[derive(Debug)]
pub struct Refused {
    /// HOST:PORT.
    pub addr: String,
    /// What happened, in a few words (for the list of nodes tried).
    pub reason: String,
    /// What happened, as the error of a command that had only this node.
    pub error: CliError,
}

impl Refused {
    /// The connection to `addr` failed with `e` (`dialling`: while
    /// connecting).
    pub fn io(addr: &str, e: &io::Error, dialling: bool) -> Refused {
        let reason = match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "no answer".to_owned(),
            io::ErrorKind::UnexpectedEof => "closed the connection".to_owned(),
            io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            _ => e.to_string(),
        };
        Refused {
            addr: addr.to_owned(),
            reason,
            error: if dialling {
                error::connect(addr, e)
            } else {
                error::lost(addr, e)
            },
        }
    }

    /// `addr` could not be used for a reason other than the connection.
    pub fn other(addr: &str, error: CliError) -> Refused {
        Refused {
            addr: addr.to_owned(),
            reason: error.to_string(),
            error,
        }
    }
}

/// Connect to `addr` and ask it for the node list, all within `timeout`;
/// large writes on the connection are then bounded by `io_timeout`.
pub fn dial(addr: &str, timeout: Duration, io_timeout: Duration) -> Result<Dialled, Refused> {
    let (shown, port) = shown(addr).map_err(|error| Refused::other(addr, error))?;
    let host = sheepdog_core::address::parse_host_port(addr)
        .map(|hp| hp.host.to_owned())
        .unwrap_or_default();
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| Refused::io(&shown, &e, true))?
        .collect();
    let start = Instant::now();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in &addrs {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            last = io::ErrorKind::TimedOut.into();
            break;
        }
        match connect(a, left) {
            Ok(stream) => {
                let nodes = probe(&stream, timeout.saturating_sub(start.elapsed()))
                    .map_err(|e| e.refused(&shown))?;
                let _ = stream.set_nodelay(true);
                // Where non-blocking mode is not to be had, every wait
                // still goes through poll, so reads never block; writes may.
                let _ = stream.set_nonblocking(true);
                let _ = stream.set_write_timeout(Some(io_timeout));
                return Ok(Dialled {
                    stream,
                    addr: shown,
                    nodes,
                });
            }
            Err(e) => last = e,
        }
    }
    Err(Refused::io(&shown, &last, true))
}

/// Connect within `timeout` where the platform can bound it.
fn connect(a: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    if cfg!(target_os = "wasi") {
        // wasi-libc has no non-blocking connect to bound; a refused or
        // unreachable loopback or LAN node fails at once anyway.
        TcpStream::connect(a)
    } else {
        TcpStream::connect_timeout(a, timeout.max(Duration::from_millis(1)))
    }
}

/// Why the probe failed.
enum ProbeError {
    Io(io::Error),
    Reply(sheepdog_core::engine::Error),
}

impl ProbeError {
    fn refused(self, addr: &str) -> Refused {
        match self {
            ProbeError::Io(e) => Refused::io(addr, &e, false),
            ProbeError::Reply(sheepdog_core::engine::Error::Server { result, .. }) => {
                Refused::other(
                    addr,
                    CliError::msg(format!(
                        "the node {addr} answered the node list with {result}"
                    )),
                )
            }
            ProbeError::Reply(e) => Refused::other(
                addr,
                CliError::msg(format!("the node {addr} sent a bad reply: {e}")),
            ),
        }
    }
}

/// Ask the node on `stream` for the cluster's nodes, within `timeout`.
/// The socket is non-blocking and every wait goes through the readiness
/// loop, as in the client (socket timeouts are not to be had everywhere).
fn probe(stream: &TcpStream, timeout: Duration) -> Result<Vec<SocketAddr>, ProbeError> {
    let mut s = stream;
    let deadline = Instant::now() + timeout;
    let wait = |read: bool| {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProbeError::Io(io::ErrorKind::TimedOut.into()));
        }
        let want = [Want {
            fd: stream.as_raw_fd(),
            read,
            write: !read,
        }];
        let mut ready = Vec::with_capacity(1);
        readiness::wait(&want, Some(left), &mut ready).map_err(ProbeError::Io)
    };
    let mut probe = Exchange::new(
        vec![0u8; NODE_LIST_BUF_LEN],
        PROBE_ID,
        GetNodeList::default(),
    );
    let _ = s.set_nonblocking(true);
    let Some(request) = probe.poll_transmit() else {
        return Err(ProbeError::Io(io::ErrorKind::InvalidInput.into()));
    };
    let mut sent = 0;
    while sent < request.len() {
        match s.write(&request[sent..]) {
            Ok(0) => return Err(ProbeError::Io(io::ErrorKind::WriteZero.into())),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait(false)?,
            Err(e) => return Err(ProbeError::Io(e)),
        }
    }
    let mut rx = Receiver::new();
    let mut scratch = [0u8; 0];
    let mut no_bufs = NoBuffers;
    loop {
        let into = rx.buffer(&mut probe, &mut no_bufs, &mut scratch);
        let n = match s.read(into) {
            Ok(0) => return Err(ProbeError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait(true)?;
                continue;
            }
            Err(e) => return Err(ProbeError::Io(e)),
        };
        match rx.advance(&mut probe, n, &scratch, 0) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(ProbeError::Reply(e)),
        }
    }
    match probe.outcome() {
        Some(Ok(list)) => Ok(list.iter().map(|n| n.addr).collect()),
        Some(Err(e)) => Err(ProbeError::Reply(e)),
        None => Err(ProbeError::Io(io::ErrorKind::UnexpectedEof.into())),
    }
}

/// The nodes tried and why each failed, for the final error.
pub fn tried(failures: &[Refused]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    let mut parts = Vec::new();
    // The last failure of each node says most.
    for f in failures.iter().rev() {
        if !seen.contains(&f.addr.as_str()) {
            seen.push(&f.addr);
            parts.push(format!("{} ({})", f.addr, f.reason));
        }
    }
    parts.reverse();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_order() {
        let t = Duration::from_secs(1);
        let mut g = Gateways::parse("127.0.0.1:7000, 127.0.0.1:7001", t).unwrap();
        g.learn(
            ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7000"]
                .iter()
                .map(|s| s.parse().unwrap()),
        );
        assert_eq!(
            g.after(None),
            ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]
        );
        assert_eq!(
            g.after(Some("127.0.0.1:7001")),
            ["127.0.0.1:7002", "127.0.0.1:7000", "127.0.0.1:7001"]
        );
        // The default port is the cluster's.
        let g = Gateways::parse("127.0.0.1", t).unwrap();
        g.learned().is_empty().then_some(()).unwrap();
        assert!(Gateways::parse("a:1,,b:2", t).is_err());
        assert!(Gateways::parse("a:99999", t).is_err());
    }
}
