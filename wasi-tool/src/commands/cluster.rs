//! `cluster info [--json]`: the cluster's status, store, copies and
//! policy, vnode strategy, creation time and epoch history, as `dog
//! cluster info -v` prints them (times in UTC).

use clap::Subcommand;
use serde_json::json;
use sheepdog_core::epoch_log::{FLAG_AUTO_VNODES, FLAG_DISKMODE, FLAG_USE_LOCK};
use sheepdog_core::redundancy::Redundancy;

use crate::cli::Global;
use crate::cluster::status::status;
use crate::date;
use crate::error::CliError;
use crate::health::layout::Layout;

/// Cluster commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the cluster's status, policy and epoch history
    Info {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

pub fn exec(g: &Global, c: &Command) -> Result<(), CliError> {
    let Command::Info { json } = c;
    let mut client = g.connect_any()?;
    let layout = Layout::read(&mut client)?;
    let s = status(&mut client, layout.epoch, layout.nodes.len() as u32)?;
    let running = s.status.is_success();
    let copies = Redundancy::from_wire(s.nr_copies, s.copy_policy).to_string();
    if *json {
        let epochs: Vec<_> = s
            .epochs
            .iter()
            .map(|e| {
                json!({
                    "epoch": e.epoch,
                    "time": date::iso(e.time),
                    "nodes": e.nodes.iter().map(|(a, v)| json!({"node": a.to_string(), "vnodes": v})).collect::<Vec<_>>(),
                })
            })
            .collect();
        crate::io::stdout::line(format_args!(
            "{}",
            json!({
                "status": if running { "running".to_string() } else { s.status.name().to_string() },
                "epoch": layout.epoch,
                "recovery": !s.disable_recovery,
                "store": s.driver,
                "copies": copies,
                "nr_copies": s.nr_copies,
                "copy_policy": s.copy_policy,
                "locking": s.flags & FLAG_USE_LOCK != 0,
                "vnodes": if s.flags & FLAG_AUTO_VNODES != 0 { "auto" } else { "fixed" },
                "vnode_mode": if s.flags & FLAG_DISKMODE != 0 { "disk" } else { "node" },
                "flags": s.flags,
                "created": (s.created > 0).then(|| date::iso(s.created)),
                "epochs": epochs,
            })
        ));
        return Ok(());
    }
    if g.quiet {
        return Ok(());
    }
    if !running {
        crate::io::stdout::line(format_args!("Cluster status: {}", s.status.name()));
        return Ok(());
    }
    crate::io::stdout::line(format_args!(
        "Cluster status: running, auto-recovery {}",
        if s.disable_recovery {
            "disabled"
        } else {
            "enabled"
        }
    ));
    crate::io::stdout::line(format_args!(
        "Cluster store: {} with {copies} redundancy policy",
        s.driver
    ));
    crate::io::stdout::line(format_args!(
        "Cluster vnodes strategy: {}",
        if s.flags & FLAG_AUTO_VNODES != 0 {
            "auto"
        } else {
            "fixed"
        }
    ));
    crate::io::stdout::line(format_args!(
        "Cluster vnode mode: {}",
        if s.flags & FLAG_DISKMODE != 0 {
            "disk"
        } else {
            "node"
        }
    ));
    crate::io::stdout::line(format_args!(
        "Cluster created at {}\n",
        date::ctime(s.created)
    ));
    crate::io::stdout::line(format_args!(
        "Epoch Time           Version [Host:Port:V-Nodes,,,]"
    ));
    for e in &s.epochs {
        let nodes: Vec<String> = e.nodes.iter().map(|(a, v)| format!("{a}:{v}")).collect();
        crate::io::stdout::line(format_args!(
            "{} {:6} [{}]",
            date::seconds(e.time),
            e.epoch,
            nodes.join(", ")
        ));
    }
    Ok(())
}
