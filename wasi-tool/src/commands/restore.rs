//! `restore DIR [VDI...] [--as NAME]`: a backup set that `migrate --to DIR`
//! wrote, back into the cluster with its snapshots, clones, attributes and
//! VM states (`crate::migrate::restore`).

use std::time::Instant;

use crate::cli::Global;
use crate::cluster::DEFAULT_QUEUE_DEPTH;
use crate::error::CliError;
use crate::migrate::{restore, summary};
use crate::target::Target;

/// Arguments of `restore`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The backup set (a directory migrate --to wrote)
    dir: String,
    /// VDIs of the set to restore (none: every one)
    vdis: Vec<String>,
    /// Restore the one VDI named under this name
    #[arg(long = "as", value_name = "NAME")]
    rename: Option<String>,
    /// Print a JSON summary on stdout
    #[arg(long)]
    json: bool,
    /// Writes in flight
    #[arg(long, default_value_t = DEFAULT_QUEUE_DEPTH)]
    queue_depth: usize,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    if let Some(n) = &a.rename {
        Target::parse_plain(n)?;
    }
    let cfg = restore::Config {
        gateways: g.gateways(None)?,
        dir: a.dir.clone(),
        vdis: a.vdis.clone(),
        rename: a.rename.clone(),
        quiet: g.quiet || a.json,
        depth: a.queue_depth,
    };
    let start = Instant::now();
    let reports = restore::run(&cfg)?;
    if a.json {
        println!("{}", summary(&reports, start.elapsed().as_secs_f64()));
    }
    let failed = reports.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        return Err(CliError::msg(format!(
            "{failed} of {} VDIs not restored (each named above); run restore again to finish",
            reports.len()
        )));
    }
    Ok(())
}
