//! `delete VDI[@SNAP]`: a VDI or a snapshot, its objects freed, and what
//! sheep leaves behind removed (VM state, B-tree leaves).

use crate::cli::Global;
use crate::cluster::delete::delete;
use crate::error::CliError;
use crate::target::Target;

/// Arguments of `delete`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// VDI[@SNAP]
    vdi: String,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let t = Target::parse(&a.vdi)?;
    let mut client = g.connect(&t)?;
    let also = delete(&mut client, &t)?;
    g.say(format!("deleted {}{also}", t.display()));
    Ok(())
}
