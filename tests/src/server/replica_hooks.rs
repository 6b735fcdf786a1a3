//! Test hooks on the nodes' own copies of objects: where placement puts
//! them, what each node holds, and losing, corrupting and adding copies on
//! one node, as disks and sheep bugs do, for `dog vdi check`-like tools to
//! find and repair (see `replicas` for the model).
//!
//! Nodes are indexes into the configured node list (as
//! [`ServerHandle::addrs`](super::ServerHandle::addrs) lists them).
//! `ec_index` names the strip of an erasure-coded object and is ignored
//! for a replicated one. The hooks that look take `&mut self`: gateway
//! work done since the last request (through the `dog`-like helpers) is
//! applied to the copies first.

use std::net::SocketAddr;

use sheepdog_core::oid::Oid;

use super::cluster::Cluster;

impl Cluster {
    /// The nodes placement puts `oid`'s copies on, copy 0 first (sheep's
    /// `oid_to_vnodes` over the live nodes, `min(copies, zones)` of
    /// them). For an erasure-coded object, copy `k` is strip `k`.
    pub fn targets(&self, oid: Oid) -> Vec<usize> {
        self.layout(oid).targets
    }

    /// The node placement puts copy `copy` (strip `copy` of an
    /// erasure-coded object) of `oid` on.
    pub fn holder(&self, oid: Oid, copy: usize) -> Option<usize> {
        self.targets(oid).get(copy).copied()
    }

    /// Bytes of one node's copy of `oid` (`get_store_objsize`): the object
    /// size, or `object size / d` for a strip of an erasure-coded object.
    pub fn copy_len(&self, oid: Oid) -> usize {
        self.layout(oid).copy_len
    }

    /// Where node `node` listens.
    pub fn node_addr(&self, node: usize) -> Option<SocketAddr> {
        self.config.nodes.get(node).map(|n| n.addr)
    }

    /// Node `node`'s whole copy (strip `ec_index`) of `oid`, as READ_PEER
    /// reads it and GET_HASH hashes it; `None` if it holds none.
    pub fn copy_of(&mut self, node: usize, oid: Oid, ec_index: u8) -> Option<Vec<u8>> {
        self.follow_gateway();
        let lay = self.layout(oid);
        self.node_copy(&lay, node, ec_index).ok().flatten()
    }

    /// Every `(node, ec_index)` holding a copy of `oid`, placed or not,
    /// in node order.
    pub fn holders(&mut self, oid: Oid) -> Vec<(usize, u8)> {
        self.follow_gateway();
        let lay = self.layout(oid);
        let mut out = Vec::new();
        for node in 0..self.config.nodes.len() {
            let strips = lay.code.map_or(1, |c| c.strips());
            for ec in 0..strips.max(1) {
                if self.node_holds(&lay, node, ec).unwrap_or(false) {
                    out.push((node, ec));
                }
            }
        }
        // Stored copies under other strip indexes (orphans).
        for (n, ec) in self.replicas.keys_of(oid) {
            if !out.contains(&(n, ec)) && self.node_holds(&lay, n, ec).unwrap_or(false) {
                out.push((n, ec));
            }
        }
        out.sort_unstable();
        out
    }

    /// The objects node `node` holds, ascending: what GET_OBJ_LIST answers
    /// on it.
    pub fn objects_on(&mut self, node: usize) -> Vec<Oid> {
        self.follow_gateway();
        self.node_objects(node).unwrap_or_default()
    }

    /// Node `node` loses its copy (strip `ec_index`) of `oid`, as a disk
    /// would: it answers NO_OBJ for it, the other nodes are untouched. If
    /// no target holds a copy any more, the object is gone for the gateway
    /// too. False if the node held none.
    pub fn remove_copy(&mut self, node: usize, oid: Oid, ec_index: u8) -> bool {
        self.follow_gateway();
        let lay = self.layout(oid);
        self.drop_copy(&lay, node, ec_index).unwrap_or(false)
    }

    /// Node `node`'s copy (strip `ec_index`) of `oid` gets some bytes
    /// flipped (its first, middle and last byte, inverted), so that its
    /// digest and content differ from every other copy's; gateway reads
    /// are untouched. False if the node holds none.
    pub fn corrupt_copy(&mut self, node: usize, oid: Oid, ec_index: u8) -> bool {
        self.follow_gateway();
        let lay = self.layout(oid);
        let Some(mut copy) = self.node_copy(&lay, node, ec_index).ok().flatten() else {
            return false;
        };
        let n = copy.len().min(lay.copy_len).max(1);
        if copy.is_empty() {
            copy.push(0);
        }
        // Byte 0 is flipped an odd number of times however short the copy.
        for at in [0, n / 2, n - 1] {
            copy[at] ^= 0xff;
        }
        self.put_copy(&lay, node, ec_index, copy);
        true
    }

    /// Node `node` holds `bytes` (padded with zeros to
    /// [`copy_len`](Cluster::copy_len)) as its copy (strip `ec_index`) of
    /// `oid`, replacing what it held: an orphan when placement puts no
    /// such copy there or the object does not exist, a stale or foreign
    /// copy otherwise. A copy on a target of a replicated object the
    /// gateway does not have gives the gateway that object back.
    pub fn add_copy(&mut self, node: usize, oid: Oid, ec_index: u8, bytes: &[u8]) {
        self.follow_gateway();
        let lay = self.layout(oid);
        self.put_copy(&lay, node, ec_index, bytes.to_vec());
    }
}
