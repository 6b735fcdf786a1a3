//! What every command shares on its command line: the global options
//! (where the cluster is, how long to wait, how much to say) and the
//! transfer options of import and export. Each command's own arguments
//! live in its file under `commands/`.

use clap::Args;

use crate::cluster::client::{DEFAULT_QUEUE_DEPTH, QUEUE_MAX};
use crate::cluster::{Client, Gateways};
use crate::error::CliError;
use crate::target::Target;

/// The options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Sheepdog nodes HOST[:PORT], comma separated: the first that answers
    /// is the gateway, the others (and the ones the cluster names) are
    /// failed over to
    #[arg(
        short,
        long,
        global = true,
        env = "SHEEPDOG_ADDRESS",
        default_value = "127.0.0.1:7000",
        value_name = "NODES"
    )]
    pub address: String,
    /// How long a node may take to answer before the tool moves to another
    /// one, and how long it goes on trying when none answers (seconds, or
    /// with ms or s)
    #[arg(long, global = true, default_value = "30", value_name = "TIME",
          value_parser = parse_timeout)]
    pub timeout: std::time::Duration,
    /// Print nothing but errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Show progress on stderr even when it is not a terminal
    #[arg(long, global = true)]
    pub progress: bool,
}

impl Global {
    /// The nodes to use: `server` when a VDI argument names one, else
    /// the `-a` list.
    pub fn gateways(&self, server: Option<&str>) -> Result<Gateways, CliError> {
        Gateways::parse(server.unwrap_or(&self.address), self.timeout)
    }

    /// Connect to the server the target names, else to the nodes of `-a`.
    pub fn connect(&self, t: &Target) -> Result<Client, CliError> {
        Client::connect(self.gateways(t.server.as_deref())?, self.quiet)
    }

    /// Connect to the nodes of `-a`.
    pub fn connect_any(&self) -> Result<Client, CliError> {
        Client::connect(self.gateways(None)?, self.quiet)
    }

    /// Print `line` on stdout unless `--quiet`.
    pub fn say(&self, line: impl std::fmt::Display) {
        if !self.quiet {
            crate::io::stdout::line(format_args!("{line}"));
        }
    }

    /// Print `line` on stderr unless `--quiet`: what a command says
    /// beside its output (which may be stdout).
    pub fn note(&self, line: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
}

/// `30`, `2.5`, `30s` or `500ms`: at least 1 ms, at most 20 minutes (the
/// longest wait the retries of a cluster state add up to).
fn parse_timeout(v: &str) -> Result<std::time::Duration, String> {
    let (num, scale) = match v.strip_suffix("ms") {
        Some(n) => (n, 1e-3),
        None => (v.strip_suffix('s').unwrap_or(v), 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n * scale >= 1e-3 && n * scale <= 1_200.0 => {
            Ok(std::time::Duration::from_secs_f64(n * scale))
        }
        _ => Err(format!(
            "'{v}' is not a timeout: give seconds (30, 2.5, 30s) or milliseconds (500ms), from 1ms to 20 minutes"
        )),
    }
}

/// Options of import and export.
#[derive(Args, Debug, Clone)]
pub struct IoOpts {
    /// Requests in flight
    #[arg(long, default_value_t = DEFAULT_QUEUE_DEPTH)]
    pub queue_depth: usize,
    /// Largest request, a multiple of 4K up to 4M (default: whole objects up
    /// to 4M for import, 504K for export; see BENCHMARKS.md)
    #[arg(long, value_name = "SIZE")]
    pub request_size: Option<String>,
    /// Take the VDI lock (LOCK_VDI) for the duration; released on exit
    #[arg(long)]
    pub lock: bool,
    /// Then read every object again and compare its CRC32 with that of
    /// what was sent (import) or written out (export)
    #[arg(long)]
    pub verify: bool,
}

impl IoOpts {
    /// `--queue-depth`, checked.
    pub fn queue_depth(&self) -> Result<usize, CliError> {
        if self.queue_depth == 0 || self.queue_depth > QUEUE_MAX {
            return Err(CliError::msg(format!(
                "bad --queue-depth {}: use 1 to {QUEUE_MAX}",
                self.queue_depth
            )));
        }
        Ok(self.queue_depth)
    }

    /// The largest request: `--request-size` if given, else `default`.
    pub fn request_size(&self, default: u64) -> Result<u64, CliError> {
        crate::transfer::requests::request_size(self.request_size.as_deref(), default)
    }
}
