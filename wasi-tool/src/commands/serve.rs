//! `serve [VDI[@SNAP]...]`: VDIs and snapshots over NBD, to QEMU, qemu-img,
//! nbdcopy and the kernel (the `serve` room does the serving).

use crate::cli::Global;
use crate::cluster::QUEUE_MAX;
use crate::error::CliError;
use crate::serve::{self, Config};

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
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let cfg = Config {
        vdis: a.vdis.clone(),
        listen: a.listen.clone(),
        socket: a.socket.clone(),
        read_only: a.read_only,
        queue_depth: a.queue_depth,
        no_lock: a.no_lock,
        gateways: g.gateways(None)?,
        quiet: g.quiet,
    };
    serve::run(&cfg)
}
