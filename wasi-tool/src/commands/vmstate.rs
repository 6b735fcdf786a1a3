//! `vmstate export VDI@SNAP FILE|-`: the VM state QEMU's savevm kept with
//! a snapshot, as the byte stream QEMU saved; `qemu-system-* -incoming
//! "exec:cat FILE"` takes it.

use clap::Subcommand;

use crate::cli::Global;
use crate::cluster::session::{close, open};
use crate::cluster::vmstate;
use crate::error::CliError;
use crate::io::output::OutputPath;
use crate::target::Target;

/// VM state commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write a snapshot's VM state (QEMU savevm) as the stream QEMU saved
    Export {
        /// VDI@SNAP
        snapshot: String,
        /// Output file, or - for stdout
        file: String,
    },
}

pub fn exec(g: &Global, c: &Command) -> Result<(), CliError> {
    match c {
        Command::Export { snapshot, file } => export(g, snapshot, file),
    }
}

fn export(g: &Global, vdi: &str, file: &str) -> Result<(), CliError> {
    let t = Target::parse_snapshot(vdi)?;
    let mut client = g.connect(&t)?;
    let info = open(&mut client, &t, false)?;
    let size = client.engine.header().map_or(0, |h| h.vm_state_size);
    close(&mut client, &t.display())?;
    if size == 0 {
        return Err(CliError::msg(format!(
            "{} has no VM state (it was not taken by savevm or snapshot create --vmstate)",
            t.display()
        )));
    }
    let path = OutputPath::new(file);
    let mut out = path.writer()?;
    let state = (info.vid, info.object_size, size);
    let res = vmstate::read(&mut client, &mut *out, &t.display(), state, &|e| {
        path.error(e)
    });
    if res.is_err() {
        path.abandon();
    }
    res?;
    if !path.is_stdout() {
        g.note(format!(
            "exported the VM state of {} ({size} bytes) to {file}",
            t.display()
        ));
    }
    Ok(())
}
