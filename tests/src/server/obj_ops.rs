//! Object I/O: CREATE_AND_WRITE_OBJ (plain and copy-on-write), READ_OBJ,
//! WRITE_OBJ (with the index-range reference counting), REMOVE_OBJ and
//! DISCARD_OBJ (PROTOCOL.md §9.4, §9.7, §8).

use std::borrow::Cow;

use sheepdog_core::inode::INODE_OBJECT_LEN;
use sheepdog_core::oid::{Oid, OidKind};
use sheepdog_core::wire::{Flags, ObjArgs, Request, ResultCode};

use super::cluster::{Cluster, Outcome};
use super::inode_io::{eio, inode_oid, read_bytes, read_entries, read_header, INDEX_OFF};
use super::refcount::is_index_update;

/// Size of an attribute object.
const ATTR_OBJ_SIZE: u64 = 66_320;
/// Size of B-tree nodes and ledgers.
const NODE_OBJ_SIZE: u64 = 4 << 20;

impl Cluster {
    /// `get_objsize()`: how long an object is.
    pub(super) fn object_size(&self, oid: Oid) -> u64 {
        match oid.kind() {
            OidKind::Inode => u64::from(INODE_OBJECT_LEN),
            OidKind::Attr => ATTR_OBJ_SIZE,
            OidKind::Btree | OidKind::Ledger => NODE_OBJ_SIZE,
            OidKind::Data | OidKind::Vmstate => 1u64 << (self.shift_of(oid.vid_bits()) & 31),
        }
    }

    /// `oid_is_readonly()`: data objects of snapshot VIDs.
    fn is_readonly(&self, oid: Oid) -> bool {
        oid.kind() == OidKind::Data && self.vdis.get(&oid.vid_bits()).is_some_and(|s| s.snapshot)
    }

    /// Whether `len` bytes at `offset` leave the object (only refused with
    /// `strict_bounds`).
    fn out_of_bounds(&self, a: &ObjArgs, len: u32) -> bool {
        self.config.strict_bounds && u64::from(a.offset) + u64::from(len) > self.object_size(a.oid)
    }

    /// READ_OBJ: exactly `data_length` bytes, zeros past what was written.
    pub(super) fn op_read_obj(&mut self, req: &Request) -> Outcome {
        let a = req.obj().copied().unwrap_or_default();
        if self.out_of_bounds(&a, req.data_length) {
            return Outcome::err(ResultCode::InvalidParms);
        }
        match read_bytes(
            &*self.store,
            a.oid,
            u64::from(a.offset),
            req.data_length as usize,
        ) {
            Ok(Some(data)) => Outcome::data(data),
            Ok(None) => Outcome::err(ResultCode::NoObj),
            Err(e) => Outcome::err(e),
        }
    }

    /// WRITE_OBJ into an existing object.
    pub(super) fn op_write_obj(&mut self, req: &Request, input: &[u8]) -> Outcome {
        let a = req.obj().copied().unwrap_or_default();
        if self.is_readonly(a.oid) {
            return Outcome::err(ResultCode::Readonly);
        }
        if self.out_of_bounds(&a, req.data_length) {
            return Outcome::err(ResultCode::InvalidParms);
        }
        if is_index_update(a.oid, a.offset, req.data_length) {
            return Outcome::from(self.index_write(a.oid, a.offset, input));
        }
        match self.store.write(a.oid, u64::from(a.offset), input) {
            Ok(true) => Outcome::ok(),
            Ok(false) => Outcome::err(ResultCode::NoObj),
            Err(e) => Outcome::err(eio(e)),
        }
    }

    /// CREATE_AND_WRITE_OBJ: replace the object wholesale; with COW start
    /// from a copy of `cow_oid`.
    pub(super) fn op_create_obj(&mut self, req: &Request, input: &[u8]) -> Outcome {
        let a = req.obj().copied().unwrap_or_default();
        if self.is_readonly(a.oid) {
            return Outcome::err(ResultCode::Readonly);
        }
        if !req.flags.contains(Flags::COW) {
            if self.out_of_bounds(&a, req.data_length) {
                return Outcome::err(ResultCode::InvalidParms);
            }
            return match self.store.create(a.oid, u64::from(a.offset), input) {
                Ok(()) => Outcome::ok(),
                Err(e) => Outcome::err(eio(e)),
            };
        }
        // gateway_handle_cow()
        let len = self.object_size(a.oid);
        let end = u64::from(a.offset) + input.len() as u64;
        if end > len {
            // sheep would overflow its buffer.
            return Outcome::err(ResultCode::InvalidParms);
        }
        if len > u64::from(self.config.max_data_length) {
            return Outcome::err(ResultCode::NoMem);
        }
        let mut buf: Cow<'_, [u8]> = Cow::Owned(vec![0u8; len as usize]);
        if input.len() as u64 != len {
            match read_bytes(&*self.store, a.cow_oid, 0, len as usize) {
                Ok(Some(data)) => buf = Cow::Owned(data),
                Ok(None) => return Outcome::err(ResultCode::NoObj),
                Err(e) => return Outcome::err(e),
            }
        }
        let at = a.offset as usize;
        buf.to_mut()[at..at + input.len()].copy_from_slice(input);
        match self.store.create(a.oid, 0, &buf) {
            Ok(()) => Outcome::ok(),
            Err(e) => Outcome::err(eio(e)),
        }
    }

    /// REMOVE_OBJ (internal; no reference counting).
    pub(super) fn op_remove_obj(&mut self, req: &Request) -> Outcome {
        let a = req.obj().copied().unwrap_or_default();
        match self.store.remove(a.oid) {
            Ok(true) => Outcome::ok(),
            Ok(false) => Outcome::err(ResultCode::NoObj),
            Err(e) => Outcome::err(eio(e)),
        }
    }

    /// DISCARD_OBJ: if entry `idx` of the oid's VDI is set, zero it with a
    /// refcounted index write and remove the oid (`local_discard_obj()`).
    pub(super) fn op_discard_obj(&mut self, req: &Request) -> Outcome {
        let a = req.obj().copied().unwrap_or_default();
        let vid = a.oid.vid_bits();
        let idx = a.oid.index() & ((1 << 20) - 1);
        let ioid = inode_oid(vid);
        let header = match read_header(&*self.store, vid) {
            Ok(Some(h)) => h,
            Ok(None) => return Outcome::err(ResultCode::NoObj),
            Err(e) => return Outcome::err(e),
        };
        if header.store_policy != 0 {
            // The tree's entry becomes 0 (it stays in the tree), then the
            // object goes.
            let tree = match super::hyper::Tree::load(&*self.store, vid) {
                Ok(Some(t)) => t,
                Ok(None) => return Outcome::ok(),
                Err(e) => return Outcome::err(e),
            };
            if tree.lookup(idx) != 0 {
                let mut tree = tree;
                if let Err(e) = tree.set(idx, 0).and_then(|()| tree.save(&mut *self.store)) {
                    return Outcome::err(e);
                }
                let _ = self.store.remove(a.oid);
            }
            return Outcome::ok();
        }
        let entry = match read_entries(&*self.store, ioid, idx, 1) {
            Ok(Some(e)) => e[0],
            Ok(None) => return Outcome::err(ResultCode::NoObj),
            Err(e) => return Outcome::err(e),
        };
        if entry != 0 {
            let offset = INDEX_OFF as u32 + 4 * idx;
            if let Err(e) = self.index_write(ioid, offset, &[0; 4]) {
                return Outcome::err(e);
            }
            // Failure to remove is ignored: the index was updated.
            let _ = self.store.remove(a.oid);
        }
        Outcome::ok()
    }
}
