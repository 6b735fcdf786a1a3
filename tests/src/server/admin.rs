//! Helpers for tests: looking inside the cluster, and doing what another
//! client (`dog`) would do — create a VDI, take a snapshot "behind the
//! client's back" — without going through a connection.
//!
//! The `dog`-like helpers run the same code as requests, but skip fault
//! injection and the cluster status check.

use std::collections::BTreeMap;

use sheepdog_core::address::{encode_name, encode_name_tag};
use sheepdog_core::inode::{InodeHeader, InodeRange};
use sheepdog_core::oid::Oid;
use sheepdog_core::wire::{NewVdi, Request, ResultCode, NAME_LEN, TAG_LEN};

use super::cluster::{Cluster, Outcome};
use super::inode_io::{inode_oid, read_bytes, read_entries, read_header};
use super::snapshot_window::{PendingSnapshot, Restore};
use super::store::Store;
use super::vdi_state::VdiState;

fn vid_result(o: Outcome) -> Result<u32, ResultCode> {
    if o.result != ResultCode::Success {
        return Err(o.result);
    }
    match o.args {
        Some(sheepdog_core::wire::ResponseArgs::Vdi { vdi_id, .. }) => Ok(vdi_id),
        _ => Err(ResultCode::SystemError),
    }
}

impl Cluster {
    /// The object store.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The state of a VID, if the cluster knows it.
    pub fn vdi_state(&self, vid: u32) -> Option<VdiState> {
        self.vdis.get(&vid).copied()
    }

    /// Every known VID and its state.
    pub fn vdi_states(&self) -> &BTreeMap<u32, VdiState> {
        &self.vdis
    }

    /// Whether `vid` is set in the in-use bitmap.
    pub fn is_in_use(&self, vid: u32) -> bool {
        self.inuse.get(vid)
    }

    /// Whether `vid` is set in the deleted bitmap.
    pub fn is_deleted(&self, vid: u32) -> bool {
        self.deleted.get(vid)
    }

    /// Whether an object exists.
    pub fn object_exists(&self, oid: Oid) -> bool {
        self.store.exists(oid).unwrap_or(false)
    }

    /// `len` bytes of an object at `offset`, `None` if it does not exist.
    pub fn read_object(&self, oid: Oid, offset: u64, len: usize) -> Option<Vec<u8>> {
        read_bytes(&*self.store, oid, offset, len).ok().flatten()
    }

    /// The header fields of `vid`'s inode.
    pub fn inode_header(&self, vid: u32) -> Option<InodeHeader> {
        read_header(&*self.store, vid).ok().flatten()
    }

    /// Index entry `idx` of `vid`'s inode.
    pub fn index_entry(&self, vid: u32, idx: u32) -> Option<u32> {
        read_entries(&*self.store, inode_oid(vid), idx, 1)
            .ok()
            .flatten()
            .map(|e| e[0])
    }

    /// What hyper volume `vid`'s B-tree maps object `idx` to, looked up
    /// as sheep does (`None`: no tree).
    pub fn hyper_lookup(&self, vid: u32, idx: u32) -> Option<u32> {
        let tree = super::hyper::Tree::load(&*self.store, vid).ok().flatten()?;
        Some(tree.lookup(idx))
    }

    /// Hyper volume `vid`'s B-tree, read whole.
    pub fn hyper_tree(&self, vid: u32) -> Option<super::hyper::Tree> {
        super::hyper::Tree::load(&*self.store, vid).ok().flatten()
    }

    /// Every entry of hyper volume `vid`'s B-tree, as sheep's walk visits
    /// them.
    pub fn hyper_entries(&self, vid: u32) -> Option<Vec<(u32, u32)>> {
        let tree = super::hyper::Tree::load(&*self.store, vid).ok().flatten()?;
        Some(tree.walk())
    }

    /// The shape of hyper volume `vid`'s B-tree.
    pub fn hyper_shape(&self, vid: u32) -> Option<super::hyper::Shape> {
        let tree = super::hyper::Tree::load(&*self.store, vid).ok().flatten()?;
        Some(tree.shape())
    }

    /// Set entries of hyper volume `vid`'s B-tree one by one as dog's
    /// writes do (`sd_inode_set_vid`, then the inode write), without the
    /// data objects: what a test needs to stand for dog.
    pub fn hyper_set(&mut self, vid: u32, entries: &[(u32, u32)]) -> Result<(), ResultCode> {
        let mut tree = super::hyper::Tree::load(&*self.store, vid)?.ok_or(ResultCode::NoVdi)?;
        for &(idx, v) in entries {
            tree.set(idx, v)?;
        }
        tree.save(&mut *self.store)
    }

    /// The reference-count ledger of a data object: generation → count.
    /// `None` while untouched (the implicit `{0: 1}`).
    pub fn ledger(&self, data: Oid) -> Option<BTreeMap<u32, u32>> {
        self.ledgers.get(data).cloned()
    }

    /// GET_VDI_INFO by name, tag and snapshot id.
    pub fn lookup(&mut self, name: &str, tag: &str, snapid: u32) -> Result<u32, ResultCode> {
        let mut payload = [0u8; NAME_LEN + TAG_LEN];
        encode_name_tag(name.as_bytes(), tag.as_bytes(), &mut payload);
        let req = Request::get_vdi_info(0, snapid);
        vid_result(self.op_get_vdi_info(0, &req, &payload, false))
    }

    /// Delete a VDI or snapshot as `dog vdi delete` does (PROTOCOL.md
    /// §9.6): zero its index through the gateway, then DEL_VDI. Like dog,
    /// it leaves what no index names: a snapshot's VM state, the VDI's
    /// attributes. Returns the deleted VID.
    pub fn delete_vdi_as_dog(&mut self, name: &str, tag: &str) -> Result<u32, ResultCode> {
        let vid = self.lookup(name, tag, 0)?;
        let header = self.inode_header(vid).ok_or(ResultCode::NoVdi)?;
        let count = header.index_len().map_err(|_| ResultCode::InvalidParms)?;
        let oid = Oid::inode(sheepdog_core::oid::Vid::new(vid).map_err(|_| ResultCode::NoVdi)?);
        let zeros = vec![0u8; count as usize * 4];
        let req = Request::write_obj(
            0,
            oid,
            sheepdog_core::inode::INDEX_OFFSET,
            zeros.len() as u32,
            0,
        );
        let reply = self.handle(1 << 32, &req, &zeros);
        if reply.result() != ResultCode::Success {
            return Err(reply.result());
        }
        let mut payload = [0u8; NAME_LEN + TAG_LEN];
        encode_name_tag(name.as_bytes(), tag.as_bytes(), &mut payload);
        let reply = self.handle(1 << 32, &Request::del_vdi(0, 0), &payload);
        match reply.result() {
            ResultCode::Success => Ok(vid),
            other => Err(other),
        }
    }

    /// NEW_VDI as `dog vdi create` sends it (cluster defaults); the new VID.
    pub fn create_vdi(&mut self, now: u64, name: &str, size: u64) -> Result<u32, ResultCode> {
        let new = NewVdi {
            vdi_size: size,
            ..NewVdi::default()
        };
        self.new_vdi(now, name, new)
    }

    /// NEW_VDI with any arguments; the new (working) VID.
    pub fn new_vdi(&mut self, now: u64, name: &str, new: NewVdi) -> Result<u32, ResultCode> {
        let mut payload = [0u8; NAME_LEN];
        encode_name(name.as_bytes(), &mut payload);
        let req = Request::new_vdi(0, new);
        vid_result(self.op_new_vdi(now, &req, &payload))
    }

    /// Take a snapshot of the working VDI `name` the way `dog vdi snapshot
    /// -s tag` does from another client: write the tag into the working
    /// inode, then NEW_VDI with the snapshot flag. Returns the new working
    /// VID; the old one is now a read-only snapshot, so a client still
    /// writing to its data objects gets READONLY.
    pub fn snapshot_behind_back(
        &mut self,
        now: u64,
        name: &str,
        tag: &str,
    ) -> Result<u32, ResultCode> {
        let p = self.begin_snapshot_behind_back(now, name, tag)?;
        self.finish_snapshot_behind_back(p, Restore::All)
    }

    /// The first half of [`Cluster::snapshot_behind_back`], as sheep runs
    /// it: the tag is written, the VDI marked read-only and its inode read.
    /// Requests handled before [`Cluster::finish_snapshot_behind_back`] see
    /// the window sheep leaves (see `snapshot_window.rs`).
    pub fn begin_snapshot_behind_back(
        &mut self,
        now: u64,
        name: &str,
        tag: &str,
    ) -> Result<PendingSnapshot, ResultCode> {
        let vid = self.lookup(name, "", 0)?;
        let mut tag_field = [0u8; TAG_LEN];
        sheepdog_core::inode::encode_tag(tag.as_bytes(), &mut tag_field);
        let range = InodeRange::TAG;
        let req = Request::write_obj(0, inode_oid(vid), range.offset, range.len, 0);
        let r = self.op_write_obj(&req, &tag_field);
        if r.result != ResultCode::Success {
            return Err(r.result);
        }
        self.begin_snapshot(now, name.as_bytes())
    }

    /// The second half: the base inode is written back from what was read
    /// (`restore` says how much of its index) and the new working VDI
    /// created. Returns its VID.
    pub fn finish_snapshot_behind_back(
        &mut self,
        p: PendingSnapshot,
        restore: Restore,
    ) -> Result<u32, ResultCode> {
        self.finish_snapshot(p, restore)
    }
}
