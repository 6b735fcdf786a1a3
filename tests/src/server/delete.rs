//! DEL_VDI (PROTOCOL.md §9.6), following `vdi_delete()` and
//! `delete_vdi_work()`: the client reclaims objects by zeroing the index
//! first; the server only tombstones an inode whose index is empty, and
//! answers SUCCESS either way.

use sheepdog_core::inode::HEADER_LEN;
use sheepdog_core::wire::{Request, ResultCode};

use super::cluster::{Cluster, Outcome};
use super::inode_io::{eio, inode_oid, read_bytes, read_entries, read_header, Res};

impl Cluster {
    /// DEL_VDI: resolve, tombstone the inode if its index is empty, and in
    /// any case answer SUCCESS and mark the VID deleted (§9.6).
    pub(super) fn op_del_vdi(&mut self, req: &Request, payload: &[u8]) -> Outcome {
        let info = match self.lookup_request(req, payload) {
            Ok(info) => info,
            Err(ret) => return Outcome::vdi(ret, 0, 0, 0),
        };
        // sheep logs failures of the deletion work and still succeeds.
        let _ = self.delete_work(info.vid);
        self.deleted.set(info.vid);
        if let Some(s) = self.vdis.get_mut(&info.vid) {
            s.deleted = true;
        }
        self.save_meta();
        Outcome::vdi(ResultCode::Success, info.vid, 0, 0)
    }

    /// `delete_vdi_work()`. Only the entries that `vdi_size` covers are
    /// checked (`count_data_objs()`), as sheep does.
    fn delete_work(&mut self, vid: u32) -> Res<()> {
        let oid = inode_oid(vid);
        let Some(h) = read_header(&*self.store, vid)? else {
            return Ok(());
        };
        if h.vdi_size == 0 && h.is_deleted() {
            return Ok(());
        }
        if h.store_policy == 0 {
            let object = 1u64 << (h.block_size_shift & 63);
            let nr = h.vdi_size.div_ceil(object).min(1 << 20) as u32;
            let entries = read_entries(&*self.store, oid, 0, nr)?.unwrap_or_default();
            if entries.iter().any(|&e| e != 0) {
                return Ok(()); // "still has objects"
            }
        } else {
            for data in super::hyper::own_objects(&*self.store, vid)? {
                self.store.remove(data).map_err(eio)?;
            }
        }
        if h.is_deleted() {
            return Ok(());
        }
        let mut header = read_bytes(&*self.store, oid, 0, HEADER_LEN)?.ok_or(ResultCode::NoObj)?;
        header[..256].fill(0);
        header[536..544].fill(0);
        self.store.create(oid, 0, &header).map_err(eio)
    }
}
