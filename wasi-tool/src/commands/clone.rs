//! `clone VDI@SNAP NEW_VDI`: a writable copy of a snapshot that shares its
//! objects.

use sheepdog_core::engine::ControlDone;

use crate::cli::Global;
use crate::cluster::session::{close, open, run, unexpected};
use crate::error::CliError;
use crate::target::Target;

/// Arguments of `clone`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// VDI@SNAP
    snapshot: String,
    /// Name of the new VDI
    new_vdi: String,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let t = Target::parse_snapshot(&a.snapshot)?;
    let new = Target::parse_plain(&a.new_vdi)?;
    let mut client = g.connect(&t)?;
    open(&mut client, &t, false)?;
    let done = run(&mut client, &new.name, |e| e.clone_snapshot(&new.name));
    close(&mut client, &t.display())?;
    match done? {
        ControlDone::Cloned { vid } => {
            g.say(format!(
                "cloned {} to {} (vdi id {vid:x})",
                t.display(),
                new.name
            ));
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}
