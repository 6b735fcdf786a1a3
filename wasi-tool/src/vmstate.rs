//! The VM state of a snapshot (PROTOCOL.md §9.9): what QEMU's `savevm`
//! stored beside a Sheepdog snapshot, in vmstate objects of the VID that
//! became the snapshot (oid bit 62, one per object size, in order), with
//! `vm_state_size` and `vm_clock_nsec` in its inode.
//!
//! - `vmstate export VDI@SNAP FILE|-`: the state as the byte stream QEMU
//!   saved, objects in order, cut to `vm_state_size`; `qemu-system-*
//!   -incoming "exec:cat FILE"` takes it.
//! - `snapshot create VDI --vmstate FILE`: stores FILE as the vmstate
//!   objects of the working VDI, then snapshots it with the size recorded,
//!   as QEMU did (CREATE_AND_WRITE of each object, then the inode fields,
//!   then NEW_VDI).
//! - Deleting a snapshot removes its vmstate objects too, which sheep
//!   never does (`delete_vdi_work()` removes data objects only).

use std::io::{self, Read, Write};

use sheepdog_core::engine::ControlDone;
use sheepdog_core::object_op::ObjectKind;
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::wire::ResultCode;

use crate::cli::Cli;
use crate::client::Client;
use crate::error::{self, CliError};
use crate::raw::{object, remove_all};
use crate::session::{self, close, open, run, unexpected};
use crate::target::Target;

/// Where the inode keeps the VM clock and the state's size.
const VM_CLOCK_NSEC: u32 = 528;
const VM_STATE_SIZE: u32 = 544;
/// The most vmstate objects a state may take: as many as a VDI's index.
const MAX_OBJECTS: u32 = 1 << 20;

/// Run one object request to its end.
/// The objects a state of `size` bytes takes: refused when an inode
/// claims more than a VDI can hold (it is read from the cluster).
fn objects(size: u64, object_size: u32) -> Result<u32, CliError> {
    u32::try_from(size.div_ceil(u64::from(object_size)))
        .ok()
        .filter(|&n| n <= MAX_OBJECTS)
        .ok_or_else(|| {
            CliError::msg(format!(
                "the inode records a VM state of {size} bytes, more than a VDI can hold"
            ))
        })
}

fn vid_of(v: u32) -> Result<Vid, CliError> {
    Vid::new(v).map_err(|_| CliError::msg(format!("internal error: VID {v:x}")))
}

/// `vmstate export VDI@SNAP FILE|-`
pub fn export(cli: &Cli, vdi: &str, file: &str) -> Result<(), CliError> {
    let t = Target::parse_snapshot(vdi)?;
    let mut client = session::connect(&t, cli)?;
    let info = open(&mut client, &t, false)?;
    let size = client.engine.header().map_or(0, |h| h.vm_state_size);
    close(&mut client, &t.display())?;
    if size == 0 {
        return Err(CliError::msg(format!(
            "{} has no VM state (it was not taken by savevm or snapshot create --vmstate)",
            t.display()
        )));
    }
    let mut out: Box<dyn Write> = if file == "-" {
        Box::new(io::BufWriter::with_capacity(1 << 20, io::stdout().lock()))
    } else {
        Box::new(std::fs::File::create(file).map_err(|e| error::file(file, "write", &e))?)
    };
    let res = copy_out(
        &mut client,
        &mut *out,
        &t,
        info.vid,
        info.object_size,
        size,
        file,
    );
    if res.is_err() && file != "-" {
        let _ = std::fs::remove_file(file);
    }
    res?;
    if !cli.quiet && file != "-" {
        eprintln!(
            "exported the VM state of {} ({size} bytes) to {file}",
            t.display()
        );
    }
    Ok(())
}

fn copy_out(
    client: &mut Client,
    out: &mut dyn Write,
    t: &Target,
    vid: u32,
    object_size: u32,
    size: u64,
    file: &str,
) -> Result<(), CliError> {
    let vid = vid_of(vid)?;
    objects(size, object_size)?;
    let os = u64::from(object_size);
    let mut at = 0u64;
    while at < size {
        let idx = (at / os) as u32;
        let n = os.min(size - at) as usize;
        let oid = Oid::vmstate(vid, idx);
        let op = object(client, vec![0u8; n], oid, ObjectKind::Read { offset: 0 })?;
        match op.outcome() {
            Some(Ok(())) => {}
            Some(Err(sheepdog_core::engine::Error::Server {
                result: ResultCode::NoObj,
                ..
            })) => {
                return Err(CliError::msg(format!(
                    "vmstate object {idx} of {} ({oid}) is missing: the VM state is incomplete",
                    t.display()
                )))
            }
            Some(Err(e)) => {
                return Err(error::engine(
                    &format!("vmstate object {idx} of {}", t.display()),
                    e,
                ))
            }
            None => return Err(CliError::msg("internal error: no reply")),
        }
        out.write_all(op.buf())
            .map_err(|e| error::file(file, "write", &e))?;
        at += n as u64;
    }
    out.flush().map_err(|e| error::file(file, "write", &e))
}

/// `snapshot create VDI [--tag T] --vmstate FILE [--vm-clock NSEC]`
pub fn snapshot(
    cli: &Cli,
    t: &Target,
    tag: &str,
    file: &str,
    clock_nsec: u64,
) -> Result<(), CliError> {
    let mut input: Box<dyn Read> = if file == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(file).map_err(|e| error::file(file, "read", &e))?)
    };
    let what = if tag.is_empty() {
        t.name.clone()
    } else {
        format!("{}@{tag}", t.name)
    };
    let mut client = session::connect(t, cli)?;
    if !tag.is_empty() {
        // A taken tag is refused before any object is written.
        let mut taken = t.clone();
        taken.snapshot = Some(crate::target::Snap::Tag(tag.to_owned()));
        if open(&mut client, &taken, false).is_ok() {
            close(&mut client, &what)?;
            return Err(CliError::msg(format!("snapshot exists: {what}")));
        }
    }
    let info = open(&mut client, t, false)?;
    let vid = vid_of(info.vid)?;
    let os = info.object_size as usize;
    // The state goes into the working VID's vmstate objects, which become
    // the snapshot's.
    let mut size = 0u64;
    let mut idx = 0u32;
    let mut written = Vec::new();
    let res = (|| -> Result<(), CliError> {
        loop {
            let mut buf = vec![0u8; os];
            let n = crate::import::read_full(&mut *input, &mut buf)
                .map_err(|e| error::file(file, "read", &e))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            let oid = Oid::vmstate(vid, idx);
            let kind = ObjectKind::Create {
                offset: 0,
                copies: info.copies,
            };
            // Counted before it is sent: a create whose reply is lost
            // may have landed.
            written.push(oid);
            let op = object(&mut client, buf, oid, kind)?;
            if let Some(Err(e)) = op.outcome() {
                return Err(error::engine(
                    &format!("vmstate object {idx} of {}", t.name),
                    e,
                ));
            }
            size += n as u64;
            idx += 1;
            if n < os {
                break;
            }
        }
        if size == 0 {
            return Err(CliError::msg(format!(
                "cannot save the VM state: {file} is empty"
            )));
        }
        match run(&mut client, &what, |e| {
            e.snapshot_with_vmstate(tag, size, clock_nsec, info.vid)
        })? {
            ControlDone::Snapshot { snapshot, .. } if snapshot == info.vid => Ok(()),
            other => Err(unexpected(&other)),
        }
    })();
    let res = match res {
        Ok(()) => Ok(()),
        Err(e) => Err(undo(cli, t, info.vid, info.copies, &written, e)),
    };
    let closed = close(&mut client, &t.name);
    res?;
    closed?;
    if !cli.quiet {
        eprintln!(
            "snapshot {what} taken (vdi id {:x}) with {size} bytes of VM state",
            info.vid
        );
    }
    Ok(())
}

/// A `snapshot create --vmstate` failed with `e`: if `vid` is still the
/// working VDI (no snapshot took the state), clear the vmstate fields the
/// snapshot may have written into its inode and remove the objects
/// written; if it is not, they belong to a snapshot now and stay. Looked
/// at on a connection of its own, as the one that failed may be gone.
fn undo(cli: &Cli, t: &Target, vid: u32, copies: u8, written: &[Oid], e: CliError) -> CliError {
    if written.is_empty() {
        return e;
    }
    let working = session::connect(t, cli).and_then(|mut c| {
        let now = open(&mut c, t, false)?.vid;
        close(&mut c, &t.name)?;
        Ok((c, now))
    });
    let (mut c, now) = match working {
        Ok(w) => w,
        Err(why) => {
            return CliError::msg(format!(
                "{}; and its {} vmstate objects could not be checked or removed: {why}",
                e,
                written.len()
            ))
        }
    };
    if now != vid {
        return CliError::msg(format!(
            "{}; {vid:x} is a snapshot now, so its vmstate objects are left as they are",
            e
        ));
    }
    let inode = Oid::inode(match vid_of(vid) {
        Ok(v) => v,
        Err(x) => return x,
    });
    let mut left = 0;
    for field in [VM_CLOCK_NSEC, VM_STATE_SIZE] {
        let kind = ObjectKind::Write {
            offset: field,
            copies,
        };
        if !matches!(
            object(&mut c, vec![0u8; 8], inode, kind).map(|o| o.outcome()),
            Ok(Some(Ok(())))
        ) {
            left += 1;
        }
    }
    let mut kept = 0;
    for &oid in written {
        let op = object(&mut c, Vec::new(), oid, ObjectKind::Remove { copies });
        let gone = match op.as_ref().map(|o| o.outcome()) {
            Ok(Some(Ok(()))) => true,
            Ok(Some(Err(sheepdog_core::engine::Error::Server { result, .. }))) => {
                result == ResultCode::NoObj
            }
            _ => false,
        };
        if !gone {
            kept += 1;
        }
    }
    if left + kept == 0 {
        return e;
    }
    CliError::msg(format!(
        "{}; and {kept} of its {} vmstate objects (and {left} of 2 inode fields) could not be undone",
        e,
        written.len()
    ))
}

/// Remove the vmstate objects of a snapshot that is gone: `size` bytes in
/// objects of `object_size` (`copies` each) under `vid`. Objects already
/// gone are fine.
pub fn remove(
    client: &mut Client,
    vid: u32,
    object_size: u32,
    copies: u8,
    size: u64,
) -> Result<u32, CliError> {
    let vid = vid_of(vid)?;
    let n = objects(size, object_size)?;
    remove_all(client, (0..n).map(|idx| Oid::vmstate(vid, idx)), copies)
}
