//! The VM state of a snapshot (PROTOCOL.md §9.9): what QEMU's `savevm`
//! stored beside a Sheepdog snapshot, in vmstate objects of the VID that
//! became the snapshot (oid bit 62, one per object size, in order), with
//! `vm_state_size` and `vm_clock_nsec` in its inode.
//!
//! - [`read`]: the state as the byte stream QEMU saved, objects in order,
//!   cut to `vm_state_size` (`vmstate export`).
//! - [`store`]: a stream as the vmstate objects of the working VDI, which
//!   the caller then snapshots with the size recorded, as QEMU did
//!   (CREATE_AND_WRITE of each object, then the inode fields, then
//!   NEW_VDI: `snapshot create --vmstate`); [`undo`] when that fails.
//! - [`remove`]: the objects of a snapshot that is gone, which sheep never
//!   removes (`delete_vdi_work()` removes data objects only).

use std::io::{self, Read, Write};

use sheepdog_core::object_op::ObjectKind;
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::wire::ResultCode;

use super::client::Client;
use super::raw::{object, remove_all};
use super::session::{close, open};
use crate::error::{self, CliError};
use crate::io::input::read_full;
use crate::target::Target;

/// Where the inode keeps the VM clock and the state's size.
const VM_CLOCK_NSEC: u32 = 528;
const VM_STATE_SIZE: u32 = 544;
/// The most vmstate objects a state may take: as many as a VDI's index.
const MAX_OBJECTS: u32 = 1 << 20;

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

/// Write the VM state of `vid` (`size` bytes in objects of
/// `object_size`) to `out`, in order; `what` names the snapshot in
/// messages, `out_err` a failed write.
pub fn read(
    client: &mut Client,
    out: &mut dyn Write,
    what: &str,
    (vid, object_size, size): (u32, u32, u64),
    out_err: &dyn Fn(&io::Error) -> CliError,
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
        if op.refused_with(ResultCode::NoObj) {
            return Err(CliError::msg(format!(
                "vmstate object {idx} of {what} ({oid}) is missing: the VM state is incomplete"
            )));
        }
        match op.outcome() {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                return Err(error::engine(&format!("vmstate object {idx} of {what}"), e))
            }
            None => return Err(CliError::msg("internal error: no reply")),
        }
        out.write_all(op.buf()).map_err(|e| out_err(&e))?;
        at += n as u64;
    }
    out.flush().map_err(|e| out_err(&e))
}

/// Store all of `input` (named `file` in messages) as the vmstate objects
/// of the open working VDI `vid`, named `what` (objects of `object_size`,
/// `copies` each), and return its size. Every object a create was sent for is in
/// `written`, whether it succeeded or not, for [`undo`].
pub fn store(
    client: &mut Client,
    input: &mut dyn Read,
    file: &str,
    what: &str,
    (vid, object_size, copies): (u32, u32, u8),
    written: &mut Vec<Oid>,
) -> Result<u64, CliError> {
    let v = vid_of(vid)?;
    let os = object_size as usize;
    let mut size = 0u64;
    let mut idx = 0u32;
    loop {
        let mut buf = vec![0u8; os];
        let n = read_full(input, &mut buf).map_err(|e| error::file(file, "read", &e))?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        let oid = Oid::vmstate(v, idx);
        let kind = ObjectKind::Create { offset: 0, copies };
        // Counted before it is sent: a create whose reply is lost may
        // have landed.
        written.push(oid);
        let op = object(client, buf, oid, kind)?;
        if let Some(Err(e)) = op.outcome() {
            return Err(error::engine(&format!("vmstate object {idx} of {what}"), e));
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
    Ok(size)
}

/// A `snapshot create --vmstate` failed with `e`: if `vid` is still the
/// working VDI `t` (no snapshot took the state), clear the vmstate fields
/// the snapshot may have written into its inode and remove the objects
/// `written`; if it is not, they belong to a snapshot now and stay. Looked
/// at on a connection of its own (`connect`), as the one that failed may
/// be gone.
pub fn undo(
    connect: impl FnOnce() -> Result<Client, CliError>,
    t: &Target,
    (vid, copies): (u32, u8),
    written: &[Oid],
    e: CliError,
) -> CliError {
    if written.is_empty() {
        return e;
    }
    let working = connect().and_then(|mut c| {
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
        let gone = match &op {
            Ok(o) => o.refused_with(ResultCode::NoObj) || matches!(o.outcome(), Some(Ok(()))),
            Err(_) => false,
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
