//! `serve [VDI[@SNAP]...]`: VDIs and snapshots over NBD, to QEMU, qemu-img,
//! nbdcopy and the kernel (the `serve` room does the serving), with the
//! deployment habits of qemu-nbd and nbdkit: TLS with x509 credentials,
//! a handshake time limit, a connection limit, `--allow`, a pid file, and
//! sockets handed over by systemd (`LISTEN_FDS`).

use std::time::Duration;

use clap::ValueEnum;

use crate::cli::Global;
use crate::cluster::QUEUE_MAX;
use crate::error::CliError;
use crate::serve::{self, Cidr, Config, Creds, Tls};

/// Arguments of `serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Exports (VDI or VDI@SNAP); the first is the default export. Without
    /// any, every VDI of the cluster can be opened by name
    vdis: Vec<String>,
    /// Listen on HOST:PORT (default 127.0.0.1:10809, unless --socket is given)
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Listen on a Unix socket (nbd+unix:///VDI?socket=PATH)
    #[arg(long, value_name = "PATH")]
    socket: Option<String>,
    /// Serve every export read-only (snapshots always are)
    #[arg(long)]
    read_only: bool,
    /// Requests in flight to the cluster per export
    #[arg(long, default_value_t = QUEUE_MAX)]
    queue_depth: usize,
    /// Do not take the VDI lock (LOCK_VDI) for writable exports
    #[arg(long)]
    no_lock: bool,
    /// TLS credentials: a directory with server-cert.pem and
    /// server-key.pem (and ca-cert.pem for --tls-verify-peer), as QEMU's
    /// tls-creds-x509 and nbdkit lay them out
    #[arg(long, value_name = "DIR")]
    tls_creds: Option<String>,
    /// TLS: require it (the default with --tls-creds), offer it (on), or
    /// not (off)
    #[arg(long, value_name = "MODE", requires = "tls_creds")]
    tls: Option<TlsMode>,
    /// Require client certificates signed by a CA of ca-cert.pem
    #[arg(long, requires = "tls_creds")]
    tls_verify_peer: bool,
    /// Accept clients from this address or block only (ADDR or
    /// ADDR/PREFIX; repeat for more); others are closed at once
    #[arg(long, value_name = "CIDR")]
    allow: Vec<String>,
    /// Connections at once; more are closed at once (default: as many as
    /// the descriptor limit allows, two per connection)
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Seconds a client may take to finish the handshake (as qemu-nbd's
    /// --handshake-limit)
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    handshake_limit: u64,
    /// Write the process id to this file once listening; removed at exit
    #[arg(long, value_name = "PATH")]
    pid_file: Option<String>,
    /// Serve the one VDI as a vhost-user-blk device on this Unix socket
    /// (QEMU: -chardev socket,path=SOCKET -device vhost-user-blk-pci),
    /// instead of over NBD; Linux only
    #[arg(long, value_name = "SOCKET", conflicts_with_all = ["listen", "socket", "tls_creds", "allow"])]
    vhost_user_blk: Option<String>,
    /// Microseconds the server looks at its sockets without sleeping
    /// before each wait while busy (answers came within four times this),
    /// as QEMU's IOThread poll-max-ns and SPDK poll; an idle server never
    /// does. Trades CPU for latency; 0 turns it off
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 50)]
    poll_max_us: u64,
}

/// The most `--poll-max-us` may ask for: a tenth of a second of looking
/// per wait is already a server that hardly sleeps.
const POLL_MAX_US: u64 = 100_000;

/// `--tls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TlsMode {
    /// Clients must upgrade with NBD_OPT_STARTTLS first
    Require,
    /// Clients may upgrade, or go on in plain text
    On,
    /// No TLS
    Off,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let tls = match (a.tls_creds.is_some(), a.tls) {
        (false, _) | (true, Some(TlsMode::Off)) => Tls::Off,
        (true, Some(TlsMode::On)) => Tls::On,
        (true, Some(TlsMode::Require) | None) => Tls::Require,
    };
    let creds = match &a.tls_creds {
        Some(dir) if tls != Tls::Off => Some(Creds::load(dir, a.tls_verify_peer)?),
        _ => None,
    };
    let allow = a
        .allow
        .iter()
        .map(|s| Cidr::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let max_connections = match a.max_connections {
        Some(0) => return Err(CliError::msg("bad --max-connections 0: at least 1")),
        Some(n) => n,
        None => default_max_connections(),
    };
    if a.poll_max_us > POLL_MAX_US {
        return Err(CliError::msg(format!(
            "bad --poll-max-us {}: at most {POLL_MAX_US}",
            a.poll_max_us
        )));
    }
    if a.handshake_limit == 0 {
        return Err(CliError::msg("bad --handshake-limit 0: at least 1 second"));
    }
    let cfg = Config {
        vdis: a.vdis.clone(),
        listen: a.listen.clone(),
        socket: a.socket.clone(),
        read_only: a.read_only,
        queue_depth: a.queue_depth,
        no_lock: a.no_lock,
        gateways: g.gateways(None)?,
        quiet: g.quiet,
        tls,
        creds,
        allow,
        max_connections,
        handshake_limit: Duration::from_secs(a.handshake_limit),
        pid_file: a.pid_file.clone(),
        vhost_user_blk: a.vhost_user_blk.clone(),
        poll_max: Duration::from_micros(a.poll_max_us),
    };
    serve::run(&cfg)
}

/// As many connections as the descriptor limit allows with room to spare:
/// each takes one, and at most one gateway connection more for its export.
fn default_max_connections() -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is valid for writes; getrlimit only fills it.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            let soft = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
            return (soft.saturating_sub(64) / 2).clamp(8, 16_384);
        }
    }
    // The WASI component cannot see the host's limit: 256 connections
    // fit the common 1,024 descriptors with room to spare; --max-connections
    // says otherwise.
    256
}
