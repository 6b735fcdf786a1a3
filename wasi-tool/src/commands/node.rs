//! `node list [--json]`: the cluster's nodes with their vnodes and zones,
//! as `dog node list` prints them (in sheep's node order: by address,
//! then port).

use clap::Subcommand;
use serde_json::json;
use sheepdog_core::wire::node_addr_bytes;

use crate::cli::Global;
use crate::error::CliError;
use crate::health::layout::Layout;

/// Node commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the nodes with their vnodes and zones
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

pub fn exec(g: &Global, c: &Command) -> Result<(), CliError> {
    let Command::List { json } = c;
    let mut client = g.connect_any()?;
    let layout = Layout::read(&mut client)?;
    let mut nodes = layout.nodes.clone();
    nodes.sort_by_key(|n| (node_addr_bytes(n.addr), n.addr.port().to_le_bytes()));
    if *json {
        let arr: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                json!({
                    "id": i,
                    "node": n.addr.to_string(),
                    "vnodes": n.nr_vnodes,
                    "zone": n.zone,
                })
            })
            .collect();
        crate::io::stdout::line(format_args!(
            "{}",
            json!({ "epoch": layout.epoch, "nodes": arr })
        ));
        return Ok(());
    }
    if g.quiet {
        return Ok(());
    }
    crate::io::stdout::line(format_args!("  Id   Host:Port         V-Nodes       Zone"));
    for (i, n) in nodes.iter().enumerate() {
        crate::io::stdout::line(format_args!(
            "{i:4}   {:<20}\t{:2}{:11}",
            n.addr.to_string(),
            n.nr_vnodes,
            n.zone
        ));
    }
    Ok(())
}
