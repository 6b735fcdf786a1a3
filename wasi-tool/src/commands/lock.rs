//! `lock list [--json]` and `lock unlock VDI[@SNAP]`: the VDI locks of a
//! cluster formatted with locking (`dog cluster format -l`), as `dog vdi
//! lock list/unlock` show and release them: snapshot locks and the owner
//! gateway included.

use std::collections::HashMap;

use clap::Subcommand;
use serde_json::json;
use sheepdog_core::vdi_state::LockState;

use crate::cli::Global;
use crate::cluster::states::{self, State};
use crate::cluster::vdis::collect;
use crate::error::CliError;
use crate::target::Target;

/// Lock commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List locked VDIs and snapshots with the gateway(s) holding them
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Release a VDI's or snapshot's lock, whoever holds it
    Unlock {
        /// VDI or VDI@SNAP
        vdi: String,
    },
}

pub fn exec(g: &Global, c: &Command) -> Result<(), CliError> {
    match c {
        Command::List { json } => list(g, *json),
        Command::Unlock { vdi } => unlock(g, vdi),
    }
}

/// A node as dog's `node_id_to_str` names it.
fn node(addr: std::net::SocketAddr) -> String {
    let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
    format!("{family} ip:{} port:{}", addr.ip(), addr.port())
}

fn list(g: &Global, as_json: bool) -> Result<(), CliError> {
    let mut client = g.connect_any()?;
    let states: HashMap<u32, State> = states::vdi_states(&mut client)?
        .into_iter()
        .map(|s| (s.vid, s))
        .collect();
    let rows = collect(&mut client)?;
    let locked: Vec<_> = rows
        .iter()
        .filter_map(|r| {
            let s = states.get(&r.vid)?;
            matches!(s.lock, LockState::Locked | LockState::Shared).then_some((r, s))
        })
        .collect();
    if as_json {
        let arr: Vec<_> = locked
            .iter()
            .map(|(r, s)| {
                json!({
                    "name": r.name(),
                    "snapshot_id": r.snap_id(),
                    "tag": r.tag(),
                    "vid": format!("{:x}", r.vid),
                    "kind": r.kind.to_string(),
                    "lock": if s.lock == LockState::Shared { "shared" } else { "locked" },
                    "owner": (s.lock == LockState::Locked).then(|| s.owner.to_string()),
                    "participants": s.participants.iter().map(|(a, st)| json!({
                        "node": a.to_string(), "state": st.name()
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        crate::io::stdout::line(format_args!("{}", serde_json::Value::Array(arr)));
        return Ok(());
    }
    if g.quiet {
        return Ok(());
    }
    crate::io::stdout::line(format_args!(
        "  Name         Id  VDI id  Tag            Owner node(s)"
    ));
    for (r, s) in locked {
        let mut line = format!(
            "{} {:<8}  {:>5}  {:>6x}  {:<13} ",
            r.kind,
            r.name(),
            r.snap_id(),
            r.vid,
            r.tag()
        );
        if s.lock == LockState::Locked {
            line.push_str(&format!(" {}", node(s.owner)));
        } else {
            for (a, st) in &s.participants {
                line.push_str(&format!(" {}({})", node(*a), st.name()));
            }
        }
        crate::io::stdout::line(format_args!("{line}"));
    }
    Ok(())
}

fn unlock(g: &Global, vdi: &str) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let mut client = g.connect(&t)?;
    let vid = states::lookup(&mut client, &t.name, t.selector())?
        .ok_or_else(|| CliError::msg(format!("no VDI or snapshot {}", t.display())))?;
    let s = states::vdi_states(&mut client)?
        .into_iter()
        .find(|s| s.vid == vid)
        .ok_or_else(|| CliError::msg(format!("the cluster keeps no state for {}", t.display())))?;
    match s.lock {
        LockState::Unlocked => Err(CliError::msg(format!("{} is not locked", t.display()))),
        LockState::Unknown(v) => Err(CliError::msg(format!(
            "{} has an unknown lock state {v}",
            t.display()
        ))),
        lock => {
            states::unlock(&mut client, vid, lock == LockState::Shared)?;
            g.say(format!("unlocked {}", t.display()));
            Ok(())
        }
    }
}
