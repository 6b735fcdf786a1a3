//! `migrate [VDI...] --to rbd:POOL|DIR`: VDIs with their snapshots,
//! clones, attributes and VM states into a Ceph pool (through `rbd`) or a
//! backup set, incremental, resumable and verified (`crate::migrate`).

use std::time::Instant;

use crate::cli::Global;
use crate::cluster::DEFAULT_QUEUE_DEPTH;
use crate::error::CliError;
use crate::migrate::{self, rbd::Rbd, summary, Config, To};

/// Arguments of `migrate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// VDIs to migrate (none: every VDI of the cluster)
    vdis: Vec<String>,
    /// Where to: rbd:POOL (a Ceph pool, through the rbd command) or a directory (a backup set)
    #[arg(long, value_name = "TARGET")]
    to: String,
    /// VDIs migrated at once, each on its own connections
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Only the VDIs of shard I of N (by a stable hash of the name, clones with their parents)
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<(u32, u32)>,
    /// Read each shipped snapshot back from the target and compare CRC32 per object
    #[arg(long)]
    verify: bool,
    /// Make clones whole images instead of clones of their parents
    #[arg(long)]
    flatten: bool,
    /// Print the plan (VDIs, snapshots, bytes to ship) and ship nothing
    #[arg(long)]
    dry_run: bool,
    /// Print a JSON summary on stdout
    #[arg(long)]
    json: bool,
    /// An argument every rbd command gets first (--id, --keyring, -c, ...); repeat for more
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    rbd_arg: Vec<String>,
    /// Objects read at once per VDI
    #[arg(long, default_value_t = DEFAULT_QUEUE_DEPTH)]
    queue_depth: usize,
}

/// `I/N` with `I < N`.
fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("bad shard '{s}': use I/N with 0 <= I < N");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (u32, u32) = (i.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let to = match a.to.strip_prefix("rbd:") {
        Some(pool) if cfg!(target_os = "wasi") => {
            let _ = pool;
            return Err(CliError::msg(
                "--to rbd: needs the rbd command, which a WebAssembly component cannot run; \
                 migrate to a directory, or run the native build",
            ));
        }
        Some(pool) => To::Rbd(Rbd::new(pool, &a.rbd_arg)?),
        None if a.to.is_empty() => {
            return Err(CliError::msg("bad --to: name rbd:POOL or a directory"))
        }
        None => To::Dir(a.to.clone()),
    };
    let cfg = Config {
        gateways: g.gateways(None)?,
        vdis: a.vdis.clone(),
        jobs: a.jobs,
        shard: a.shard,
        verify: a.verify,
        flatten: a.flatten,
        dry_run: a.dry_run,
        quiet: g.quiet || a.json,
        depth: a.queue_depth,
        timeout: g.timeout,
    };
    let start = Instant::now();
    let reports = migrate::run(&cfg, &to)?;
    if a.json {
        println!("{}", summary(&reports, start.elapsed().as_secs_f64()));
    }
    let failed = reports.iter().filter(|r| r.error.is_some()).count();
    if failed > 0 {
        return Err(CliError::msg(format!(
            "{failed} of {} VDIs not migrated (each named above); run migrate again to finish",
            reports.len()
        )));
    }
    if reports.is_empty() && !a.json {
        g.note("nothing to migrate");
    }
    Ok(())
}
