//! `tree [VDI] [--json]`: the snapshot and clone hierarchy, as `dog vdi
//! tree` draws it.

use crate::cli::Global;
use crate::cluster::tree::Tree;
use crate::cluster::vdis::collect;
use crate::error::CliError;

/// Arguments of `tree`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only the tree of this VDI
    vdi: Option<String>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let mut client = g.connect_any()?;
    let rows = collect(&mut client)?;
    let only = a.vdi.as_deref();
    if let Some(name) = only {
        if !rows.iter().any(|r| r.name() == name) {
            return Err(CliError::msg(format!("no VDI named {name}")));
        }
    }
    let tree = Tree::new(&rows);
    if a.json {
        crate::io::stdout::line(format_args!("{}", tree.json(&rows, only)));
    } else if !g.quiet {
        crate::io::stdout::text(&tree.draw(only));
    }
    Ok(())
}
