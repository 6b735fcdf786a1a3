//! `orphans [--delete] [--json]`: objects the nodes store that nothing
//! reaches, with their sizes; removed only with `--delete`, and never
//! when an inode could not be read. Exit 0 when none are left, 1 when
//! some are, 2 on an error.

use std::collections::HashMap;

use crate::cli::Global;
use crate::cluster::states;
use crate::error::CliError;
use crate::health::layout::Layout;
use crate::health::orphans::{census, delete};
use crate::health::peers::Peers;
use crate::health::report;

/// Arguments of `orphans`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove the orphans from every node that holds them
    #[arg(long)]
    delete: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let mut client = g.connect_any()?;
    let mut layout = Layout::read(&mut client)?;
    let addrs = layout.addrs();
    let c = census(&mut client, &addrs, g.timeout)?;
    let mut deleted = None;
    if a.delete && !c.orphans.is_empty() {
        if !c.unknown.is_empty() {
            return Err(CliError::msg(format!(
                "not deleting: {} inode(s) could not be read, so what they reach is not known ({})",
                c.unknown.len(),
                c.unknown[0]
            )));
        }
        let policy: HashMap<u32, u8> = states::vdi_states(&mut client)?
            .into_iter()
            .map(|s| (s.vid, s.copy_policy))
            .collect();
        let epoch = layout.epoch;
        let ring = layout.ring()?;
        let mut peers = Peers::new(addrs.clone(), epoch, g.timeout);
        let (removed, failures) = delete(&mut peers, &ring, &c.orphans, |vid| {
            policy.get(&vid).copied().unwrap_or(0)
        })?;
        for f in &failures {
            eprintln!("sheep-tool: {f}");
        }
        deleted = Some(removed);
    }
    if a.json {
        crate::io::stdout::line(format_args!("{}", report::census_json(&c, &addrs, deleted)));
    } else if !g.quiet {
        report::print_census(&c, &addrs);
        if let Some(n) = deleted {
            crate::io::stdout::line(format_args!(
                "deleted {n} of {} orphan objects",
                c.orphans.len()
            ));
        }
    }
    let left = c.orphans.len() - deleted.unwrap_or(0);
    if left > 0 {
        return Err(CliError::findings(format!(
            "{left} orphan object{} left{}",
            if left == 1 { "" } else { "s" },
            if a.delete {
                ""
            } else {
                " (remove them with --delete)"
            }
        )));
    }
    Ok(())
}
