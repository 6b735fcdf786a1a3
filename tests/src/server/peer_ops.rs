//! The requests a client sends to one node about that node's own copy of
//! an object (PROTOCOL.md §4.3), answered from the node's view of the
//! copies (`replicas`) as sheep 1.0's `ops.c` answers them: GET_HASH,
//! READ_PEER, WRITE_PEER, CREATE_AND_WRITE_PEER, REMOVE_PEER,
//! REPAIR_REPLICA, and GET_OBJ_LIST of the node's own objects.
//!
//! Peer requests naming an object pass `check_request_epoch()` first: an
//! `epoch` older than the node's gets OLD_NODE_VER, a newer one
//! NEW_NODE_VER (sheep parks such a request until its own epoch catches
//! up; here it is answered at once). Local ops (GET_HASH, REPAIR_REPLICA,
//! GET_OBJ_LIST) are not checked. Every node of the reference cluster
//! runs the cluster's one epoch.

use sha1::{Digest, Sha1};
use sheepdog_core::oid::Oid;
use sheepdog_core::wire::{Request, ResponseArgs, ResultCode, DIGEST_LEN};

use super::cluster::{Cluster, Outcome};
use super::replicas::Layout;

/// Where GET_HASH's digest is in the response's argument bytes (header
/// bytes 24..44, `rsp.hash.digest`).
const DIGEST_AT: usize = 4;

impl Cluster {
    /// `check_request_epoch()` of a peer request at `epoch` naming `oid`:
    /// the refusal, if any. Requests naming no object (oid 0) pass.
    fn epoch_refusal(&self, epoch: u32, oid: Oid) -> Option<Outcome> {
        if oid.0 == 0 {
            return None;
        }
        // sheep's before() / after(): serial-number arithmetic.
        let ahead = epoch.wrapping_sub(self.config.epoch) as i32;
        match ahead {
            0 => None,
            a if a < 0 => Some(Outcome::err(ResultCode::OldNodeVer)),
            _ => Some(Outcome::err(ResultCode::NewNodeVer)),
        }
    }

    /// Whether `len` bytes at `at` would end further past the copy's end
    /// than `max_data_length`: refused with INVALID_PARMS (sheep grows the
    /// file; this process would allocate it), and with `strict_bounds`
    /// anything past the end is.
    fn grows_too_far(&self, lay: &Layout, at: usize, len: usize) -> bool {
        let end = at.saturating_add(len);
        let slack = if self.config.strict_bounds {
            0
        } else {
            self.config.max_data_length as usize
        };
        end > lay.copy_len.saturating_add(slack)
    }

    /// The layout of the object a request names, its `ec_index` and its
    /// `offset`.
    fn peer_target(&self, req: &Request) -> (Layout, u8, u32) {
        let a = req.obj().copied().unwrap_or_default();
        (self.layout(a.oid), a.ec_index, a.offset)
    }

    /// GET_HASH (`local_get_hash()`, `default_get_hash()`): the SHA-1 of
    /// the node's copy as the store reads it, `get_store_objsize()` bytes
    /// with zeros past what was written; NO_OBJ when it has none.
    ///
    /// For an erasure-coded object sheep 1.0 looks for a file without the
    /// strip suffix, which never exists, and answers NO_OBJ whatever the
    /// node holds; so does this (`dog vdi check` reads strips instead).
    /// sheep caches the digest of a snapshot's object in an xattr; here it
    /// is always computed.
    pub(super) fn op_get_hash(&mut self, node: usize, req: &Request) -> Outcome {
        let (lay, _, _) = self.peer_target(req);
        if lay.code.is_some() {
            return Outcome::err(ResultCode::NoObj);
        }
        let copy = match self.node_copy(&lay, node, 0) {
            Ok(Some(c)) => c,
            Ok(None) => return Outcome::err(ResultCode::NoObj),
            Err(e) => return Outcome::err(e),
        };
        let mut sha = Sha1::new();
        let n = copy.len().min(lay.copy_len);
        sha.update(&copy[..n]);
        // A short file reads as zeros to the end of the object.
        let mut left = lay.copy_len - n;
        let zeros = [0u8; 4096];
        while left > 0 {
            let k = left.min(zeros.len());
            sha.update(&zeros[..k]);
            left -= k;
        }
        let digest: [u8; DIGEST_LEN] = sha.finalize().into();
        let mut raw = [0u8; 28];
        raw[DIGEST_AT..DIGEST_AT + DIGEST_LEN].copy_from_slice(&digest);
        Outcome::with_args(ResultCode::Success, ResponseArgs::Raw(raw), Vec::new())
    }

    /// READ_PEER (`peer_read_obj()`): `data_length` bytes at `offset` of
    /// the node's copy (strip `ec_index`), zeros past its end; NO_OBJ when
    /// it has none.
    pub(super) fn op_read_peer(&mut self, node: usize, req: &Request) -> Outcome {
        let (lay, ec, offset) = self.peer_target(req);
        if let Some(no) = self.epoch_refusal(req.epoch, lay.oid) {
            return no;
        }
        let len = req.data_length as usize;
        match self.node_copy_range(&lay, node, ec, u64::from(offset), len) {
            Ok(Some(data)) => Outcome::data(data),
            Ok(None) => Outcome::err(ResultCode::NoObj),
            Err(e) => Outcome::err(e),
        }
    }

    /// CREATE_AND_WRITE_PEER (`peer_create_and_write_obj()`): the node's
    /// copy (strip `ec_index`) becomes the payload at `offset` and zeros
    /// elsewhere, replacing whatever it held.
    pub(super) fn op_create_peer(&mut self, node: usize, req: &Request, input: &[u8]) -> Outcome {
        let (lay, ec, offset) = self.peer_target(req);
        if let Some(no) = self.epoch_refusal(req.epoch, lay.oid) {
            return no;
        }
        let at = offset as usize;
        if self.grows_too_far(&lay, at, input.len()) {
            return Outcome::err(ResultCode::InvalidParms);
        }
        let mut copy = vec![0u8; lay.copy_len.max(at + input.len())];
        copy[at..at + input.len()].copy_from_slice(input);
        self.put_copy(&lay, node, ec, copy);
        Outcome::ok()
    }

    /// WRITE_PEER (`peer_write_obj()`): the payload at `offset` of the
    /// node's existing copy (strip `ec_index`); NO_OBJ when it has none.
    pub(super) fn op_write_peer(&mut self, node: usize, req: &Request, input: &[u8]) -> Outcome {
        let (lay, ec, offset) = self.peer_target(req);
        if let Some(no) = self.epoch_refusal(req.epoch, lay.oid) {
            return no;
        }
        let mut copy = match self.node_copy(&lay, node, ec) {
            Ok(Some(c)) => c,
            Ok(None) => return Outcome::err(ResultCode::NoObj),
            Err(e) => return Outcome::err(e),
        };
        let at = offset as usize;
        if self.grows_too_far(&lay, at, input.len()) {
            return Outcome::err(ResultCode::InvalidParms);
        }
        if copy.len() < at + input.len() {
            copy.resize(at + input.len(), 0);
        }
        copy[at..at + input.len()].copy_from_slice(input);
        self.put_copy(&lay, node, ec, copy);
        Outcome::ok()
    }

    /// REMOVE_PEER (`peer_remove_obj()`, `default_remove_object()`): the
    /// node's copy (strip `ec_index`) is gone; NO_OBJ when it had none.
    /// The last target's copy gone, the object is gone from the gateway's
    /// store too.
    pub(super) fn op_remove_peer(&mut self, node: usize, req: &Request) -> Outcome {
        let (lay, ec, _) = self.peer_target(req);
        if let Some(no) = self.epoch_refusal(req.epoch, lay.oid) {
            return no;
        }
        match self.drop_copy(&lay, node, ec) {
            Ok(true) => Outcome::ok(),
            Ok(false) => Outcome::err(ResultCode::NoObj),
            Err(e) => Outcome::err(e),
        }
    }

    /// REPAIR_REPLICA (`local_repair_replica()`): the node reads the object
    /// from the node named in `forw` as a READ_PEER at the request's epoch
    /// would (strip 0, `get_store_objsize()` bytes) and stores it as its
    /// own copy. A source that is not a live node of the cluster is
    /// NETWORK_ERROR (sheep cannot connect to it); the source's refusal
    /// (NO_OBJ, OLD_NODE_VER ...) is the answer.
    pub(super) fn op_repair_replica(&mut self, node: usize, req: &Request) -> Outcome {
        let Some((oid, addr, port)) = req.repair_source() else {
            return Outcome::err(ResultCode::InvalidParms);
        };
        let source = (self.config.nodes.iter())
            // `node_id`: the 16-byte address, then the port.
            .position(|n| n.node_id()[..16] == addr && n.addr.port() == port)
            .filter(|&i| !self.down.contains(&i));
        let Some(source) = source else {
            return Outcome::err(ResultCode::NetworkError);
        };
        if let Some(no) = self.epoch_refusal(req.epoch, oid) {
            return no;
        }
        let lay = self.layout(oid);
        match self.node_copy_range(&lay, source, 0, 0, lay.copy_len) {
            Ok(Some(data)) => {
                self.put_copy(&lay, node, 0, data);
                Outcome::ok()
            }
            Ok(None) => Outcome::err(ResultCode::NoObj),
            Err(e) => Outcome::err(e),
        }
    }
}
