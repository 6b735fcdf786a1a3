//! A snapshot taken in two steps, with other requests in between, the way
//! sheep 1.0 takes one: `vdi_snapshot()` first marks the base read-only
//! (`notify_vdi_add()`), then `snapshot_vdi()` reads the whole base inode,
//! writes it back with `snap_ctime` and the reference counts updated, and
//! creates the new working inode from the same copy. An index write that
//! lands on the base between the read and the write-back is lost from both
//! inodes; a client learns of the snapshot only from READONLY on a data
//! object of the base. [`Cluster::snapshot_behind_back`] runs both steps at
//! once; scenario tests and the simulation put engine requests between
//! them.
//!
//! The write-back restores the header and the index. sheep writes the
//! reference counts back from its copy too, and an entry it restores over
//! one a client changed or cleared meanwhile names an object whose
//! reference was already dropped: counts that no longer match the index,
//! and objects freed while a snapshot still names them. That is sheep's own
//! race, which no client can repair, so reference counts are not restored,
//! and [`Restore::AddedOnly`] leaves changed and cleared entries alone for
//! long simulations whose snapshots must stay whole.

use sheepdog_core::inode::{HEADER_AND_INDEX_LEN, HEADER_LEN};
use sheepdog_core::wire::ResultCode;

use super::cluster::Cluster;
use super::inode_io::inode_oid;
use super::lookup::LookupKey;
use super::vdi_ops::NewVdiIocb;

/// What the write-back of the base's index restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// Every entry, as sheep does: whatever was written meanwhile is gone.
    All,
    /// Only entries that were empty in the copy: entries added meanwhile
    /// are gone, changed and cleared ones stay as they are now.
    AddedOnly,
}

/// A snapshot between its two steps: the base is read-only and its inode
/// has been read; nothing is written yet and lookups still find the base.
#[derive(Debug)]
pub struct PendingSnapshot {
    name: Vec<u8>,
    size: u64,
    base_vid: u32,
    new_vid: u32,
    snapid: u32,
    copy_policy: u8,
    store_policy: u8,
    nr_copies: u8,
    block_size_shift: u8,
    time: u64,
    /// The base inode's header and index as read.
    base: Vec<u8>,
}

impl PendingSnapshot {
    /// The VID that becomes the snapshot.
    pub fn base_vid(&self) -> u32 {
        self.base_vid
    }

    /// The VID the new working VDI will have.
    pub fn new_vid(&self) -> u32 {
        self.new_vid
    }

    fn iocb(&self) -> NewVdiIocb<'_> {
        NewVdiIocb {
            name: &self.name,
            size: self.size,
            base_vid: self.base_vid,
            copy_policy: self.copy_policy,
            store_policy: self.store_policy,
            nr_copies: self.nr_copies,
            block_size_shift: self.block_size_shift,
            time: self.time,
        }
    }
}

impl Cluster {
    /// First step of a snapshot of the working VDI `name` (its tag already
    /// written): mark it read-only and read its inode.
    pub(super) fn begin_snapshot(
        &mut self,
        now: u64,
        name: &[u8],
    ) -> Result<PendingSnapshot, ResultCode> {
        let key = LookupKey {
            name,
            tag: None,
            snapid: 0,
        };
        let (ret, info) = self.vdi_lookup(&key);
        if ret != ResultCode::Success {
            return Err(ret);
        }
        let base_vid = info.vid;
        let h = self.inode_header(base_vid).ok_or(ResultCode::BaseVdiRead)?;
        let (copies, cp, shift) = (h.nr_copies, h.copy_policy, h.block_size_shift);
        self.notify_vdi_add(info.free_bit, copies, base_vid, cp, shift);
        let mut base = vec![0u8; HEADER_AND_INDEX_LEN as usize];
        match self.store.read(inode_oid(base_vid), 0, &mut base) {
            Ok(true) => {}
            _ => return Err(ResultCode::BaseVdiRead),
        }
        Ok(PendingSnapshot {
            name: name.to_vec(),
            size: h.vdi_size,
            base_vid,
            new_vid: info.free_bit,
            snapid: info.snapid,
            copy_policy: cp,
            store_policy: h.store_policy,
            nr_copies: copies,
            block_size_shift: shift,
            time: now,
            base,
        })
    }

    /// Second step: write the base's header and index back from the copy
    /// (whatever was written to them meanwhile is gone), then finish as
    /// `snapshot_vdi()`.
    /// Returns the new working VID.
    pub(super) fn finish_snapshot(
        &mut self,
        mut p: PendingSnapshot,
        restore: Restore,
    ) -> Result<u32, ResultCode> {
        let oid = inode_oid(p.base_vid);
        if restore == Restore::AddedOnly {
            let mut now = vec![0u8; p.base.len()];
            match self.store.read(oid, 0, &mut now) {
                Ok(true) => {}
                _ => return Err(ResultCode::BaseVdiRead),
            }
            let index = HEADER_LEN..p.base.len();
            for (was, is) in p.base[index.clone()]
                .chunks_exact_mut(4)
                .zip(now[index].chunks_exact(4))
            {
                if was != [0u8; 4] {
                    was.copy_from_slice(is);
                }
            }
        }
        match self.store.write(oid, 0, &p.base) {
            Ok(true) => {}
            _ => return Err(ResultCode::BaseVdiWrite),
        }
        self.snapshot_vdi(&p.iocb(), p.snapid, p.new_vid)?;
        self.inuse.set(p.new_vid);
        self.save_meta();
        Ok(p.new_vid)
    }
}
