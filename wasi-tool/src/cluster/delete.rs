//! Deleting a VDI or snapshot with everything sheep leaves behind: the VM
//! state objects of a snapshot taken by savevm, and a hyper volume's
//! B-tree leaves, which no index names and DEL_VDI does not remove.

use std::time::Duration;

use sheepdog_core::engine::ControlDone;
use sheepdog_core::oid::{Oid, Vid};

use super::client::Client;
use super::session::{close, open, run, unexpected};
use super::{raw, vmstate};
use crate::error::CliError;
use crate::target::Target;

/// The most B-tree leaves a hyper volume can have had: a root's worth of
/// indirect entries, with room for the leaves splits left behind.
const MAX_LEAVES: u32 = 1 << 20;

/// Delete `t` on `client`; returns what went with it beside the inode
/// (" and its VM state (…)", " and its N B-tree leaves"), for the message.
pub fn delete(client: &mut Client, t: &Target) -> Result<String, CliError> {
    // A VM state is in objects no index names, which sheep leaves behind:
    // note where it is before the inode goes. So are a hyper volume's
    // B-tree leaves (0..btree_counter).
    let mut leaves = None;
    let vmstate = match open(client, t, false) {
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
                client.allow_slow_reply(Duration::from_secs(objects / 1000));
            }
            let h = client.engine.header().copied();
            close(client, &t.display())?;
            let size = h.map_or(0, |h| h.vm_state_size);
            if let Some(h) = h.filter(|h| h.is_hyper() && h.btree_counter > 0) {
                leaves = Some((info.vid, h.btree_counter, info.copies));
            }
            (size > 0).then_some((info.vid, info.object_size, info.copies, size))
        }
        // The delete says why, if it cannot be done either.
        Err(_) => None,
    };
    let deleted = match run(client, &t.display(), |e| e.delete(&t.name, t.selector()))? {
        ControlDone::Deleted { vid } => vid,
        other => return Err(unexpected(&other)),
    };
    let mut also = String::new();
    // Only the state of the VID that was deleted: the name may have moved
    // to another (a snapshot taken meanwhile) between the two lookups.
    if let Some((vid, os, copies, size)) = vmstate.filter(|v| v.0 == deleted) {
        let n = vmstate::remove(client, vid, os, copies, size).map_err(|e| {
            CliError::msg(format!(
                "deleted {}, but not all of its VM state objects: {e}",
                t.display()
            ))
        })?;
        also = format!(" and its VM state ({size} bytes, {n} objects)");
    }
    if let Some((vid, counter, copies)) = leaves.filter(|l| l.0 == deleted) {
        // After DEL_VDI: the server's walk reads them.
        let v = Vid::new(vid).map_err(|_| CliError::msg(format!("internal error: VID {vid:x}")))?;
        let oids = (0..counter.min(MAX_LEAVES)).map(|n| Oid::btree(v, n));
        let n = raw::remove_all(client, oids, copies).map_err(|e| {
            CliError::msg(format!(
                "deleted {}, but not all of its B-tree leaves: {e}",
                t.display()
            ))
        })?;
        also = format!("{also} and its {n} B-tree leaves");
    }
    Ok(also)
}
