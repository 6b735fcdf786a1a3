//! `snapshot create|list|delete|rollback`: snapshots of a VDI, with the VM
//! state QEMU's savevm kept beside one (`create --vmstate`).

use clap::Subcommand;
use sheepdog_core::engine::ControlDone;

use crate::cli::Global;
use crate::cluster::delete::delete;
use crate::cluster::session::{close, open, run, unexpected};
use crate::cluster::vdis::{collect, print_entries};
use crate::cluster::{vmstate, Client};
use crate::error::CliError;
use crate::io::input;
use crate::target::{Snap, Target};

/// Snapshot commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Snapshot a VDI
    Create {
        /// VDI name
        vdi: String,
        /// Tag for the snapshot
        #[arg(long)]
        tag: Option<String>,
        /// Store this file (- for stdin) as the snapshot's VM state, as QEMU's savevm did
        #[arg(long, value_name = "FILE")]
        vmstate: Option<String>,
        /// The VM clock (nanoseconds) to record with --vmstate
        #[arg(long, value_name = "NSEC", default_value_t = 0, requires = "vmstate")]
        vm_clock: u64,
    },
    /// List the snapshots of a VDI
    List {
        /// VDI name
        vdi: String,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Delete a snapshot
    Delete {
        /// VDI@SNAP
        snapshot: String,
    },
    /// Roll a VDI back to a snapshot
    Rollback {
        /// VDI@SNAP
        snapshot: String,
    },
}

pub fn exec(g: &Global, c: &Command) -> Result<(), CliError> {
    match c {
        Command::Create {
            vdi,
            tag,
            vmstate,
            vm_clock,
        } => create(
            g,
            vdi,
            tag.as_deref().unwrap_or(""),
            vmstate.as_deref(),
            *vm_clock,
        ),
        Command::List { vdi, json } => list(g, vdi, *json),
        Command::Delete { snapshot } => {
            let t = Target::parse_snapshot(snapshot)?;
            let mut client = g.connect(&t)?;
            let also = delete(&mut client, &t)?;
            g.say(format!("deleted {}{also}", t.display()));
            Ok(())
        }
        Command::Rollback { snapshot } => rollback(g, snapshot),
    }
}

/// `snapshot create VDI [--tag TAG] [--vmstate FILE [--vm-clock NSEC]]`
fn create(
    g: &Global,
    vdi: &str,
    tag: &str,
    vmstate: Option<&str>,
    vm_clock: u64,
) -> Result<(), CliError> {
    let t = Target::parse_plain(vdi)?;
    if !tag.is_empty() {
        if let Err(e) = sheepdog_core::address::parse_snapshot(tag) {
            return Err(CliError::msg(format!("bad tag '{tag}': {e}")));
        }
        if tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CliError::msg(format!(
                "bad tag '{tag}': a tag of digits only would read as a snapshot id"
            )));
        }
    }
    if let Some(file) = vmstate {
        return create_with_vmstate(g, &t, tag, file, vm_clock);
    }
    let mut client = g.connect(&t)?;
    open(&mut client, &t, false)?;
    let done = run(&mut client, &named(&t, tag), |e| e.snapshot(tag));
    close(&mut client, &t.name)?;
    match done? {
        ControlDone::Snapshot { snapshot, .. } => {
            g.say(format!(
                "snapshot of {} taken (vdi id {snapshot:x})",
                t.name
            ));
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

/// `VDI@TAG`, or `VDI` without a tag.
fn named(t: &Target, tag: &str) -> String {
    if tag.is_empty() {
        t.name.clone()
    } else {
        format!("{}@{tag}", t.name)
    }
}

/// Store `file` as the working VDI's vmstate objects, then snapshot it
/// with the size recorded, as QEMU's savevm did; undone if it fails.
fn create_with_vmstate(
    g: &Global,
    t: &Target,
    tag: &str,
    file: &str,
    clock_nsec: u64,
) -> Result<(), CliError> {
    let mut input = input::reader(file)?;
    let what = named(t, tag);
    let mut client = g.connect(t)?;
    if !tag.is_empty() {
        // A taken tag is refused before any object is written.
        let mut taken = t.clone();
        taken.snapshot = Some(Snap::Tag(tag.to_owned()));
        if open(&mut client, &taken, false).is_ok() {
            close(&mut client, &what)?;
            return Err(CliError::msg(format!("snapshot exists: {what}")));
        }
    }
    let info = open(&mut client, t, false)?;
    // The state goes into the working VID's vmstate objects, which become
    // the snapshot's.
    let mut written = Vec::new();
    let geometry = (info.vid, info.object_size, info.copies);
    let res = vmstate::store(
        &mut client,
        &mut *input,
        file,
        &t.name,
        geometry,
        &mut written,
    )
    .and_then(|size| {
        match run(&mut client, &what, |e| {
            e.snapshot_with_vmstate(tag, size, clock_nsec, info.vid)
        })? {
            ControlDone::Snapshot { snapshot, .. } if snapshot == info.vid => Ok(size),
            other => Err(unexpected(&other)),
        }
    });
    let res = res.map_err(|e| {
        let connect = || -> Result<Client, CliError> { g.connect(t) };
        vmstate::undo(connect, t, (info.vid, info.copies), &written, e)
    });
    let closed = close(&mut client, &t.name);
    let size = res?;
    closed?;
    g.note(format!(
        "snapshot {what} taken (vdi id {:x}) with {size} bytes of VM state",
        info.vid
    ));
    Ok(())
}

/// `snapshot list VDI [--json]`
fn list(g: &Global, vdi: &str, json: bool) -> Result<(), CliError> {
    let t = Target::parse_plain(vdi)?;
    let mut client = g.connect(&t)?;
    let all = collect(&mut client)?;
    if !all.iter().any(|r| r.name() == t.name) {
        return Err(CliError::msg(format!("no such VDI: {}", t.name)));
    }
    let rows: Vec<_> = all
        .into_iter()
        .filter(|r| r.is_snapshot_of(&t.name))
        .collect();
    print_entries(&rows, json, g.quiet);
    Ok(())
}

/// `snapshot rollback VDI@SNAP`
fn rollback(g: &Global, snapshot: &str) -> Result<(), CliError> {
    let t = Target::parse_snapshot(snapshot)?;
    let mut client = g.connect(&t)?;
    open(&mut client, &t, false)?;
    let done = run(&mut client, &t.display(), |e| e.rollback());
    close(&mut client, &t.display())?;
    match done? {
        ControlDone::RolledBack { vid } => {
            g.say(format!(
                "rolled {} back to {} (vdi id {vid:x})",
                t.name,
                t.display()
            ));
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}
