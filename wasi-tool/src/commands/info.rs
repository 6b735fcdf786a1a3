//! `info VDI[@SNAP] [--json]`: one VDI or snapshot, as `list` shows it.

use crate::cli::Global;
use crate::cluster::session::{close, open};
use crate::cluster::vdis::{print_entries, VdiRow};
use crate::error::CliError;
use crate::target::Target;

/// Arguments of `info`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// VDI[@SNAP]
    vdi: String,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let t = Target::parse(&a.vdi)?;
    let mut client = g.connect(&t)?;
    let info = open(&mut client, &t, false)?;
    let header = *client
        .engine
        .header()
        .ok_or_else(|| CliError::msg("internal error: no header"))?;
    // Every object of its size (a hyper volume's B-tree is in the same
    // cache).
    let count = info.size.div_ceil(u64::from(info.object_size)) as u32;
    let (mut used, mut shared) = (0u32, 0u32);
    for idx in 0..count {
        match client.engine.entry(idx) {
            Some(0) | None => {}
            Some(e) if e == info.vid => used += 1,
            Some(_) => shared += 1,
        }
    }
    close(&mut client, &t.display())?;
    let row = VdiRow::new(&header, used, shared);
    if a.json {
        // One object, as `qemu-img info --output=json` and `rbd info
        // --format json` print it.
        println!("{}", row.json());
    } else {
        print_entries(&[row], false, false);
    }
    Ok(())
}
