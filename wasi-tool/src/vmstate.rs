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
use sheepdog_core::object_op::{ObjectKind, ObjectOp};
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::wire::ResultCode;

use crate::cli::Cli;
use crate::client::Client;
use crate::error::{self, CliError};
use crate::raw::exchange;
use crate::session::{self, close, open, run, unexpected};
use crate::target::Target;

/// Run one object request to its end.
fn object(
    client: &mut Client,
    buf: Vec<u8>,
    oid: Oid,
    kind: ObjectKind,
) -> Result<ObjectOp<Vec<u8>>, CliError> {
    let addr = client.addr.clone();
    let mut op = ObjectOp::new(buf, 1, oid, kind);
    let header = op.request();
    let payload = op.payload().to_vec();
    let res = exchange(client.stream(), &addr, &mut op, &header, &payload);
    client.resume();
    res?;
    Ok(op)
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
            let op = object(&mut client, buf, oid, kind)?;
            written.push(oid);
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
        match run(&mut client, &what, |e| e.snapshot_with_vmstate(tag, size, clock_nsec))? {
            // The state went to the VID that became the snapshot.
            ControlDone::Snapshot { snapshot, .. } if snapshot == info.vid => Ok(()),
            ControlDone::Snapshot { snapshot, .. } => Err(CliError::msg(format!(
                "{} was snapshotted by someone else meanwhile: the snapshot taken ({snapshot:x}) has no VM state; take it again",
                t.name
            ))),
            other => Err(unexpected(&other)),
        }
    })();
    if res.is_err() {
        // Objects no snapshot names are not left behind.
        for oid in written {
            let _ = object(&mut client, Vec::new(), oid, ObjectKind::Remove);
        }
    }
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

/// Remove the vmstate objects of a snapshot that is gone: `size` bytes in
/// objects of `object_size` under `vid`. Objects already gone are fine.
pub fn remove(client: &mut Client, vid: u32, object_size: u32, size: u64) -> Result<u32, CliError> {
    let vid = vid_of(vid)?;
    let n = size.div_ceil(u64::from(object_size)) as u32;
    let mut removed = 0;
    for idx in 0..n {
        let op = object(
            client,
            Vec::new(),
            Oid::vmstate(vid, idx),
            ObjectKind::Remove,
        )?;
        match op.outcome() {
            Some(Ok(())) => removed += 1,
            Some(Err(sheepdog_core::engine::Error::Server {
                result: ResultCode::NoObj,
                ..
            })) => {}
            Some(Err(e)) => return Err(error::engine(&format!("vmstate object {idx}"), e)),
            None => return Err(CliError::msg("internal error: no reply")),
        }
    }
    Ok(removed)
}
