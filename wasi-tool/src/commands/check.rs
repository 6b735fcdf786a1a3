//! `check [VDI[@SNAP]...|--all] [--repair] [--json]`: every copy of every
//! object of the VDIs, where sheep's placement puts it; read-only unless
//! `--repair`. Exit 0 when all is good (or repaired), 1 with findings
//! left, 2 on an error.

use std::collections::HashMap;

use sheepdog_core::bitmap::VdiBitmap;
use sheepdog_core::inode::trim_nul;

use crate::cli::Global;
use crate::cluster::states;
use crate::error::CliError;
use crate::health::check::{check, Mode};
use crate::health::layout::Layout;
use crate::health::objects::{self, Known, Volume};
use crate::health::peers::Peers;
use crate::health::report;
use crate::target::Target;

/// Arguments of `check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// VDIs or snapshots (VDI@TAG, VDI@ID) to check
    #[arg(
        value_name = "VDI",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    vdis: Vec<String>,
    /// Check every VDI and snapshot
    #[arg(long)]
    all: bool,
    /// Repair bad and missing copies from a good one
    #[arg(long)]
    repair: bool,
    /// Read every replica whole and compare the bytes, rather than the
    /// digest each node gives (sheep caches a snapshot object's digest, so
    /// a copy corrupted since it was first checked hides from it)
    #[arg(long)]
    deep: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let mut client = g.connect_any()?;
    let mut layout = Layout::read(&mut client)?;
    let known: HashMap<u32, states::State> = states::vdi_states(&mut client)?
        .into_iter()
        .map(|s| (s.vid, s))
        .collect();
    let of = |vid: u32| {
        let s = known.get(&vid);
        Known {
            vid,
            copies: s.map_or(0, |s| s.nr_copies),
            copy_policy: s.map_or(0, |s| s.copy_policy),
            block_size_shift: s.map_or(22, |s| s.block_size_shift),
        }
    };
    let mut volumes: Vec<Volume> = Vec::new();
    if a.all {
        let in_use = states::bitmap(&mut client, false)?;
        let deleted = states::bitmap(&mut client, true)?;
        let in_use =
            VdiBitmap::new_checked(&in_use[..]).map_err(|e| CliError::msg(e.to_string()))?;
        let deleted =
            VdiBitmap::new_checked(&deleted[..]).map_err(|e| CliError::msg(e.to_string()))?;
        for vid in in_use.iter().filter(|v| !deleted.contains(*v)) {
            let mut v = objects::volume(&mut client, of(vid), format!("VID {vid:x}"))?;
            if let (None, Some(name)) = (&v.header, &v.name) {
                v.label = format!("{name} (VID {vid:x})");
            }
            if let Some(h) = &v.header {
                if h.is_deleted() {
                    continue;
                }
                let name = String::from_utf8_lossy(trim_nul(&h.name)).into_owned();
                v.label = if h.is_snapshot() {
                    format!("{name}@{}", h.snap_id)
                } else {
                    name
                };
            }
            volumes.push(v);
        }
    } else {
        for arg in &a.vdis {
            let t = Target::parse(arg)?;
            let vid = states::lookup(&mut client, &t.name, t.selector())?
                .ok_or_else(|| CliError::msg(format!("no VDI or snapshot {}", t.display())))?;
            volumes.push(objects::volume(&mut client, of(vid), t.display())?);
        }
    }
    let addrs = layout.addrs();
    let epoch = layout.epoch;
    let ring = layout.ring()?;
    let mut peers = Peers::new(addrs, epoch, g.timeout);
    let total: usize = volumes.iter().map(|v| v.objects.len()).sum();
    let show =
        g.progress || (!g.quiet && !a.json && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let mode = Mode {
        repair: a.repair,
        deep: a.deep,
    };
    let out = check(&mut peers, &ring, &volumes, mode, |done| {
        if show {
            eprint!("\rchecked {done}/{total} objects");
        }
    })?;
    if show {
        eprintln!();
    }
    // The node list, the VDI states (and the bitmaps for --all), each
    // inode read, and every request to a node about its copies.
    let requests = 2
        + if a.all { 2 } else { a.vdis.len() as u64 }
        + volumes.iter().map(|v| u64::from(v.reads)).sum::<u64>()
        + peers.requests;
    if a.json {
        crate::io::stdout::line(format_args!(
            "{}",
            report::check_json(&volumes, &out, requests)
        ));
    } else if !g.quiet {
        report::print_check(&volumes, &out);
    }
    let left = out.findings.iter().filter(|f| !f.repaired).count();
    let broken = volumes.iter().filter(|v| v.broken.is_some()).count();
    if left > 0 || broken > 0 {
        return Err(CliError::findings(format!(
            "{left} object{} with bad or missing copies left, {broken} broken inode{}",
            if left == 1 { "" } else { "s" },
            if broken == 1 { "" } else { "s" }
        )));
    }
    Ok(())
}
