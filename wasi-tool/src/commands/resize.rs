//! `resize VDI SIZE`: grow a VDI.

use sheepdog_core::engine::ControlDone;

use crate::cli::Global;
use crate::cluster::session::{close, open, run, unexpected};
use crate::error::CliError;
use crate::size::parse_size;
use crate::target::Target;

/// Arguments of `resize`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// VDI name
    vdi: String,
    /// New size (grow only)
    size: String,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let t = Target::parse_plain(&a.vdi)?;
    let size = parse_size(&a.size)?;
    let mut client = g.connect(&t)?;
    open(&mut client, &t, false)?;
    let done = run(&mut client, &t.name, |e| e.resize(size));
    close(&mut client, &t.name)?;
    match done? {
        ControlDone::Resized { size } => {
            g.say(format!("resized {} to {size} bytes", t.name));
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}
