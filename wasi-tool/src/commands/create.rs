//! `create VDI SIZE [--copies N|D:P] [--object-size SIZE] [--prealloc] [--hyper]`

use sheepdog_core::engine::{ControlDone, CreateOptions};
use sheepdog_core::object_size::ObjectSize;
use sheepdog_core::redundancy::Redundancy;

use crate::cli::Global;
use crate::cluster::session::{run, unexpected};
use crate::error::CliError;
use crate::size::{parse_copies, parse_size};
use crate::target::Target;

/// Arguments of `create`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// VDI name
    vdi: String,
    /// Size (bytes, or with K, M, G, T, P)
    size: String,
    /// Copies (N) or erasure code (D:P); the cluster default if omitted
    #[arg(long)]
    copies: Option<String>,
    /// Object size, a power of two from 1M to 2G; the cluster default if omitted
    #[arg(long)]
    object_size: Option<String>,
    /// Allocate every object now
    #[arg(long)]
    prealloc: bool,
    /// A hyper volume (B-tree index, dog's -y): up to 16 PiB, 4 MiB objects
    #[arg(long, conflicts_with_all = ["prealloc", "object_size"])]
    hyper: bool,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let t = Target::parse_plain(&a.vdi)?;
    let size = parse_size(&a.size)?;
    let redundancy = a
        .copies
        .as_deref()
        .map(|c| parse_copies(c).map_err(CliError::msg))
        .transpose()?
        .unwrap_or(Redundancy::ClusterDefault);
    let block_size_shift = match a.object_size.as_deref() {
        None => 0,
        Some(s) => ObjectSize::from_bytes(parse_size(s)?)
            .map_err(|e| CliError::msg(format!("bad --object-size '{s}': {e}")))?
            .shift(),
    };
    let opts = CreateOptions {
        size,
        redundancy,
        block_size_shift,
        prealloc: a.prealloc,
        hyper: a.hyper,
    };
    let mut client = g.connect(&t)?;
    match run(&mut client, &t.name, |e| e.create(&t.name, opts))? {
        ControlDone::Created { vid } => {
            g.say(format!("created {} ({size} bytes, vdi id {vid:x})", t.name));
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}
