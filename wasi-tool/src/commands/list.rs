//! `list [--json]`: every VDI and snapshot, as `dog vdi list` shows them.

use crate::cli::Global;
use crate::cluster::vdis::{collect, print_entries};
use crate::error::CliError;

/// Arguments of `list`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let mut client = g.connect_any()?;
    let rows = collect(&mut client)?;
    print_entries(&rows, a.json, g.quiet);
    Ok(())
}
