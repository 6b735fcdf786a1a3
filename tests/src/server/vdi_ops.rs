//! NEW_VDI: fresh VDIs, clones, snapshots and rebases (PROTOCOL.md §9.3),
//! following `cluster_new_vdi()`, `vdi_create()` and `vdi_snapshot()` of
//! sheep 1.0, plus the per-VID state they update (`notify_vdi_add()`).

use sheepdog_core::inode::{trim_nul, InodeHeader, HEADER_LEN};
use sheepdog_core::wire::{Request, ResultCode, VdiArgs};

use super::cluster::{Cluster, Outcome};
use super::inode_io::{
    eio, encode_grefs, inode_oid, span, used_entries, Gref, Res, GREF_LEN, GREF_OFF, INDEX_OFF,
};
use super::lookup::LookupKey;
use super::vdi_state::{LockState, VdiState};

/// The B-tree root magic of a hyper volume (store_policy 1).
const BTREE_MAGIC: u16 = 0x6274;

/// A base inode's used entries `(idx, vid)` and their grefs after the
/// count was raised.
type BaseIndex<'a> = (&'a [(u32, u32)], &'a [Gref]);

/// The parameters of a NEW_VDI after defaults are applied (`struct
/// vdi_iocb`).
pub(super) struct NewVdiIocb<'a> {
    pub(super) name: &'a [u8],
    pub(super) size: u64,
    pub(super) base_vid: u32,
    pub(super) copy_policy: u8,
    pub(super) store_policy: u8,
    pub(super) nr_copies: u8,
    pub(super) block_size_shift: u8,
    pub(super) time: u64,
}

impl Cluster {
    /// The copies a VID is answered with (its state, else the default).
    pub(super) fn copies_of(&self, vid: u32) -> u8 {
        self.vdis
            .get(&vid)
            .map_or(self.config.copies, |s| s.nr_copies)
    }

    /// The object size shift of a VID (its state, else the default).
    pub(super) fn shift_of(&self, vid: u32) -> u8 {
        self.vdis
            .get(&vid)
            .map_or(self.config.block_size_shift, |s| s.block_size_shift)
    }

    /// `add_vdi_state()`.
    fn add_state(&mut self, vid: u32, copies: u8, snapshot: bool, cp: u8, shift: u8, parent: u32) {
        let entry = self.vdis.entry(vid).or_insert(VdiState {
            nr_copies: copies,
            snapshot,
            deleted: false,
            copy_policy: cp,
            block_size_shift: shift,
            parent_vid: parent,
            lock: LockState::Unlocked,
            owner: 0,
        });
        entry.nr_copies = copies;
        entry.snapshot = snapshot;
        entry.copy_policy = cp;
        entry.block_size_shift = shift;
        if parent != 0 {
            entry.parent_vid = parent;
        }
    }

    /// `notify_vdi_add()`: the new VID's state, and `old` (if any) becomes
    /// a snapshot, so writes to its data objects get READONLY from now on.
    pub(super) fn notify_vdi_add(&mut self, new: u32, copies: u8, old: u32, cp: u8, shift: u8) {
        if old != 0 {
            let (c, s) = (self.copies_of(old), self.shift_of(old));
            self.add_state(old, c, true, cp, s, 0);
        }
        self.add_state(new, copies, false, cp, shift, old);
    }

    /// NEW_VDI.
    pub(super) fn op_new_vdi(&mut self, now: u64, req: &Request, payload: &[u8]) -> Outcome {
        let a: VdiArgs = req.vdi().copied().unwrap_or_default();
        let (mut nr_copies, mut copy_policy) = (a.copies, a.copy_policy);
        if a.copies == 0 {
            nr_copies = self.config.copies;
            copy_policy = self.config.copy_policy;
        }
        if copy_policy != 0 {
            let (d, p) = (copy_policy >> 4, copy_policy & 0xf);
            if p == 0 {
                // sheep panics on such a policy.
                return Outcome::vdi(ResultCode::InvalidParms, 0, 0, 0);
            }
            nr_copies = d * 2 + p;
        }
        let shift = if a.block_size_shift == 0 {
            self.config.block_size_shift
        } else {
            a.block_size_shift
        };
        if req.data_length != 256 {
            return Outcome::vdi(ResultCode::InvalidParms, 0, 0, 0);
        }
        let name = trim_nul(&payload[..payload.len().min(256)]);
        let iocb = NewVdiIocb {
            name,
            size: a.vdi_size,
            base_vid: a.base_vdi_id,
            copy_policy,
            store_policy: a.store_policy,
            nr_copies,
            block_size_shift: shift,
            time: now,
        };
        let (result, vid) = if a.snapid != 0 {
            self.vdi_snapshot(&iocb)
        } else {
            self.vdi_create(&iocb)
        };
        if result == ResultCode::Success {
            self.inuse.set(vid);
        }
        self.save_meta();
        Outcome::vdi(result, vid, nr_copies, shift)
    }

    /// `vdi_create()`: a fresh VDI or a clone; the name must be free.
    fn vdi_create(&mut self, iocb: &NewVdiIocb<'_>) -> (ResultCode, u32) {
        let key = LookupKey {
            name: iocb.name,
            tag: None,
            snapid: 0,
        };
        let (ret, info) = self.vdi_lookup(&key);
        match ret {
            ResultCode::Success => return (ResultCode::VdiExist, 0),
            ResultCode::NoVdi => {}
            other => return (other, 0),
        }
        let snapid = info.snapid.max(1);
        let new_vid = info.free_bit;
        let old = if iocb.base_vid == 0 {
            info.vid
        } else {
            iocb.base_vid
        };
        self.notify_vdi_add(
            new_vid,
            iocb.nr_copies,
            old,
            iocb.copy_policy,
            iocb.block_size_shift,
        );
        let r = if iocb.base_vid == 0 {
            self.write_new_inode(iocb, snapid, new_vid, None)
                .map_err(|_| ResultCode::VdiWrite)
        } else {
            self.clone_vdi(iocb, snapid, new_vid)
        };
        (r.err().unwrap_or(ResultCode::Success), new_vid)
    }

    /// `vdi_snapshot()`: snapshot (base = the working VDI) or rebase (base
    /// = another VID); the working VDI must exist.
    fn vdi_snapshot(&mut self, iocb: &NewVdiIocb<'_>) -> (ResultCode, u32) {
        let key = LookupKey {
            name: iocb.name,
            tag: None,
            snapid: 0,
        };
        let (ret, info) = self.vdi_lookup(&key);
        if ret != ResultCode::Success {
            return (ret, 0);
        }
        let new_vid = info.free_bit;
        self.notify_vdi_add(
            new_vid,
            iocb.nr_copies,
            info.vid,
            iocb.copy_policy,
            iocb.block_size_shift,
        );
        let r = if iocb.base_vid == info.vid {
            self.snapshot_vdi(iocb, info.snapid, new_vid)
        } else {
            self.rebase_vdi(iocb, info.snapid, new_vid, info.vid)
        };
        (r.err().unwrap_or(ResultCode::Success), new_vid)
    }

    /// Read the base's used entries, or BASE_VDI_READ.
    fn base_entries(&self, base_vid: u32) -> Res<Vec<(u32, u32)>> {
        match used_entries(&*self.store, inode_oid(base_vid)) {
            Ok(Some(used)) => Ok(used),
            _ => Err(ResultCode::BaseVdiRead),
        }
    }

    /// `clone_vdi()`.
    fn clone_vdi(&mut self, iocb: &NewVdiIocb<'_>, snapid: u32, new_vid: u32) -> Res<()> {
        let used = self.base_entries(iocb.base_vid)?;
        let grefs = self
            .bump_grefs(inode_oid(iocb.base_vid), &used)
            .map_err(|_| ResultCode::BaseVdiWrite)?;
        self.write_new_inode(iocb, snapid, new_vid, Some((&used, &grefs)))
            .map_err(|_| ResultCode::VdiWrite)
    }

    /// `snapshot_vdi()`: the base (working VDI) gets `snap_ctime`.
    pub(super) fn snapshot_vdi(
        &mut self,
        iocb: &NewVdiIocb<'_>,
        snapid: u32,
        new_vid: u32,
    ) -> Res<()> {
        let base = inode_oid(iocb.base_vid);
        let used = self.base_entries(iocb.base_vid)?;
        let written = self
            .store
            .write(base, 520, &iocb.time.to_le_bytes())
            .map_err(eio);
        if written != Ok(true) {
            return Err(ResultCode::BaseVdiWrite);
        }
        let grefs = self
            .bump_grefs(base, &used)
            .map_err(|_| ResultCode::BaseVdiWrite)?;
        self.write_new_inode(iocb, snapid, new_vid, Some((&used, &grefs)))
            .map_err(|_| ResultCode::VdiWrite)
    }

    /// `rebase_vdi()`: the current working VDI `cur` gets `snap_ctime`; the
    /// new working VDI is based on the snapshot `iocb.base_vid`.
    fn rebase_vdi(
        &mut self,
        iocb: &NewVdiIocb<'_>,
        snapid: u32,
        new_vid: u32,
        cur: u32,
    ) -> Res<()> {
        let used = self.base_entries(iocb.base_vid)?;
        let written = self
            .store
            .write(inode_oid(cur), 520, &iocb.time.to_le_bytes())
            .map_err(eio);
        if written != Ok(true) {
            return Err(ResultCode::VdiWrite);
        }
        let grefs = self
            .bump_grefs(inode_oid(iocb.base_vid), &used)
            .map_err(|_| ResultCode::VdiWrite)?;
        self.write_new_inode(iocb, snapid, new_vid, Some((&used, &grefs)))
            .map_err(|_| ResultCode::VdiWrite)
    }

    /// `alloc_inode()` + write: the new inode with its header, and for
    /// clones/snapshots the base's index with generations one higher.
    fn write_new_inode(
        &mut self,
        iocb: &NewVdiIocb<'_>,
        snapid: u32,
        new_vid: u32,
        base: Option<BaseIndex<'_>>,
    ) -> Res<()> {
        let mut h = InodeHeader::default();
        let n = iocb.name.len().min(255);
        h.name[..n].copy_from_slice(&iocb.name[..n]);
        h.vdi_id = new_vid;
        h.create_time = iocb.time;
        h.vdi_size = iocb.size;
        h.copy_policy = iocb.copy_policy;
        h.store_policy = iocb.store_policy;
        h.nr_copies = iocb.nr_copies;
        // find_next_bit(1 << shift) of a 32-bit shift.
        h.block_size_shift = iocb.block_size_shift & 31;
        h.snap_id = snapid;
        h.parent_vdi_id = iocb.base_vid;
        let mut bytes = vec![0u8; HEADER_LEN];
        h.emit(&mut bytes).map_err(|_| ResultCode::VdiWrite)?;
        if base.is_none() && iocb.store_policy != 0 {
            bytes.extend_from_slice(&BTREE_MAGIC.to_le_bytes());
            bytes.extend_from_slice(&1u16.to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
        }
        let oid = inode_oid(new_vid);
        self.store.create(oid, 0, &bytes).map_err(eio)?;
        let Some((used, grefs)) = base else {
            return Ok(());
        };
        let Some((first, last)) = span(used) else {
            return Ok(());
        };
        let n = (last - first + 1) as usize;
        let mut index = vec![0u8; 4 * n];
        let mut gens = vec![Gref::default(); n];
        for (&(idx, vid), g) in used.iter().zip(grefs) {
            let at = (idx - first) as usize;
            index[4 * at..4 * at + 4].copy_from_slice(&vid.to_le_bytes());
            gens[at].generation = g.generation.wrapping_add(1);
        }
        self.store
            .write(oid, INDEX_OFF + 4 * u64::from(first), &index)
            .map_err(eio)?;
        self.store
            .write(
                oid,
                GREF_OFF + GREF_LEN * u64::from(first),
                &encode_grefs(&gens),
            )
            .map_err(eio)?;
        Ok(())
    }
}
