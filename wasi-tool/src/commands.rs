//! The small commands: create, snapshot, clone, delete, resize, info.

use sheepdog_core::engine::{ControlDone, CreateOptions};
use sheepdog_core::object_size::ObjectSize;
use sheepdog_core::redundancy::Redundancy;

use crate::cli::Cli;
use crate::error::CliError;
use crate::list::{print_entries, VdiRow};
use crate::session::{self, close, open, run, unexpected};
use crate::size::parse_size;
use crate::target::Target;

fn say(cli: &Cli, line: String) {
    if !cli.quiet {
        println!("{line}");
    }
}

/// Parse `N` or `D:P`.
pub fn parse_redundancy(s: &str) -> Result<Redundancy, CliError> {
    let bad =
        |e: sheepdog_core::error::SizeError| CliError::msg(format!("bad --copies '{s}': {e}"));
    let num = |x: &str| {
        x.parse::<u8>()
            .map_err(|_| CliError::msg(format!("bad --copies '{s}': use N or D:P")))
    };
    match s.split_once(':') {
        Some((d, p)) => Redundancy::erasure_code(num(d)?, num(p)?).map_err(bad),
        None => Redundancy::copies(num(s)?).map_err(bad),
    }
}

/// `create VDI SIZE [--copies N|D:P] [--object-size SIZE] [--prealloc]`
pub fn create(
    cli: &Cli,
    vdi: &str,
    size: &str,
    copies: Option<&str>,
    object_size: Option<&str>,
    prealloc: bool,
    hyper: bool,
) -> Result<(), CliError> {
    let t = Target::parse_plain(vdi)?;
    let size = parse_size(size)?;
    let redundancy = copies
        .map(parse_redundancy)
        .transpose()?
        .unwrap_or(Redundancy::ClusterDefault);
    let block_size_shift = match object_size {
        None => 0,
        Some(s) => ObjectSize::from_bytes(parse_size(s)?)
            .map_err(|e| CliError::msg(format!("bad --object-size '{s}': {e}")))?
            .shift(),
    };
    let opts = CreateOptions {
        size,
        redundancy,
        block_size_shift,
        prealloc,
        hyper,
    };
    let mut client = session::connect(&t, cli)?;
    match run(&mut client, &t.name, |e| e.create(&t.name, opts))? {
        ControlDone::Created { vid } => {
            say(
                cli,
                format!("created {} ({size} bytes, vdi id {vid:x})", t.name),
            );
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

/// `snapshot create VDI [--tag TAG]`
pub fn snapshot(
    cli: &Cli,
    vdi: &str,
    tag: Option<&str>,
    vmstate: Option<&str>,
    vm_clock: u64,
) -> Result<(), CliError> {
    let t = Target::parse_plain(vdi)?;
    let tag = tag.unwrap_or("");
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
        return crate::vmstate::snapshot(cli, &t, tag, file, vm_clock);
    }
    let mut client = session::connect(&t, cli)?;
    open(&mut client, &t, false)?;
    let what = if tag.is_empty() {
        t.name.clone()
    } else {
        format!("{}@{tag}", t.name)
    };
    let done = run(&mut client, &what, |e| e.snapshot(tag));
    close(&mut client, &t.name)?;
    match done? {
        ControlDone::Snapshot { snapshot, .. } => {
            say(
                cli,
                format!("snapshot of {} taken (vdi id {snapshot:x})", t.name),
            );
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

/// `clone VDI@SNAP NEW_VDI`
pub fn clone(cli: &Cli, snapshot: &str, new_vdi: &str) -> Result<(), CliError> {
    let t = Target::parse_snapshot(snapshot)?;
    let new = Target::parse_plain(new_vdi)?;
    let mut client = session::connect(&t, cli)?;
    open(&mut client, &t, false)?;
    let done = run(&mut client, &new.name, |e| e.clone_snapshot(&new.name));
    close(&mut client, &t.display())?;
    match done? {
        ControlDone::Cloned { vid } => {
            say(
                cli,
                format!("cloned {} to {} (vdi id {vid:x})", t.display(), new.name),
            );
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

/// `delete VDI[@SNAP]` and `snapshot delete VDI@SNAP`
pub fn delete(cli: &Cli, vdi: &str, snapshot_only: bool) -> Result<(), CliError> {
    let t = if snapshot_only {
        Target::parse_snapshot(vdi)?
    } else {
        Target::parse(vdi)?
    };
    let mut client = session::connect(&t, cli)?;
    // A VM state is in objects no index names, which sheep leaves behind:
    // note where it is before the inode goes.
    // So are a hyper volume's B-tree leaves (0..btree_counter).
    let mut leaves = None;
    let vmstate = match open(&mut client, &t, false) {
        Ok(info) => {
            // sheep removes a hyper volume's objects before DEL_VDI
            // answers: 524,288 took 195 s on a 3-node cluster. Give it a
            // second per 1,000 objects.
            if info.hyper {
                let own = info.vid.to_le_bytes();
                let objects = client
                    .engine
                    .index_entries()
                    .chunks_exact(4)
                    .filter(|e| *e == own)
                    .count() as u64;
                client.allow_slow_reply(std::time::Duration::from_secs(objects / 1000));
            }
            let h = client.engine.header().copied();
            close(&mut client, &t.display())?;
            let size = h.map_or(0, |h| h.vm_state_size);
            if let Some(h) = h.filter(|h| h.is_hyper() && h.btree_counter > 0) {
                leaves = Some((info.vid, h.btree_counter, info.copies));
            }
            (size > 0).then_some((info.vid, info.object_size, info.copies, size))
        }
        // The delete says why, if it cannot be done either.
        Err(_) => None,
    };
    let deleted = match run(&mut client, &t.display(), |e| {
        e.delete(&t.name, t.selector())
    })? {
        ControlDone::Deleted { vid } => vid,
        other => return Err(unexpected(&other)),
    };
    let mut also = String::new();
    // Only the state of the VID that was deleted: the name may have moved
    // to another (a snapshot taken meanwhile) between the two lookups.
    if let Some((vid, os, copies, size)) = vmstate.filter(|v| v.0 == deleted) {
        let n = crate::vmstate::remove(&mut client, vid, os, copies, size).map_err(|e| {
            CliError::msg(format!(
                "deleted {}, but not all of its VM state objects: {e}",
                t.display()
            ))
        })?;
        also = format!(" and its VM state ({size} bytes, {n} objects)");
    }
    if let Some((vid, counter, copies)) = leaves.filter(|l| l.0 == deleted) {
        // After DEL_VDI: the server's walk reads them.
        let v = sheepdog_core::oid::Vid::new(vid)
            .map_err(|_| CliError::msg(format!("internal error: VID {vid:x}")))?;
        let n = crate::raw::remove_all(
            &mut client,
            (0..counter.min(MAX_LEAVES)).map(|n| sheepdog_core::oid::Oid::btree(v, n)),
            copies,
        )
        .map_err(|e| {
            CliError::msg(format!(
                "deleted {}, but not all of its B-tree leaves: {e}",
                t.display()
            ))
        })?;
        also = format!("{also} and its {n} B-tree leaves");
    }
    say(cli, format!("deleted {}{also}", t.display()));
    Ok(())
}

/// The most B-tree leaves a hyper volume can have had: a root's worth of
/// indirect entries, with room for the leaves splits left behind.
const MAX_LEAVES: u32 = 1 << 20;

/// `snapshot rollback VDI@SNAP`
pub fn rollback(cli: &Cli, snapshot: &str) -> Result<(), CliError> {
    let t = Target::parse_snapshot(snapshot)?;
    let mut client = session::connect(&t, cli)?;
    open(&mut client, &t, false)?;
    let done = run(&mut client, &t.display(), |e| e.rollback());
    close(&mut client, &t.display())?;
    match done? {
        ControlDone::RolledBack { vid } => {
            say(
                cli,
                format!("rolled {} back to {} (vdi id {vid:x})", t.name, t.display()),
            );
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

/// `resize VDI SIZE`
pub fn resize(cli: &Cli, vdi: &str, size: &str) -> Result<(), CliError> {
    let t = Target::parse_plain(vdi)?;
    let size = parse_size(size)?;
    let mut client = session::connect(&t, cli)?;
    open(&mut client, &t, false)?;
    let done = run(&mut client, &t.name, |e| e.resize(size));
    close(&mut client, &t.name)?;
    match done? {
        ControlDone::Resized { size } => {
            say(cli, format!("resized {} to {size} bytes", t.name));
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

/// `info VDI[@SNAP] [--json]`
pub fn info(cli: &Cli, vdi: &str, json: bool) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let mut client = session::connect(&t, cli)?;
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
    if json {
        // One object, as `qemu-img info --output=json` and `rbd info
        // --format json` print it.
        println!("{}", row.json());
    } else {
        print_entries(&[row], false, false);
    }
    Ok(())
}
