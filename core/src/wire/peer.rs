//! The internal requests a client sends to one node about that node's
//! own copy of an object, as `dog vdi check` and `dog cluster info` do
//! (PROTOCOL.md §4.3): all carry `proto_ver` 0x0A.
//!
//! Peer requests (READ_PEER, WRITE_PEER, CREATE_AND_WRITE_PEER,
//! REMOVE_PEER) are answered only when their `epoch` is the node's: an
//! older one gets OLD_NODE_VER, a newer one waits for the node to catch
//! up. `ec_index` names the strip of an erasure-coded object (0 for a
//! replica).

use core::net::SocketAddr;

use super::{Flags, ObjArgs, Opcode, Request, RequestArgs};
use crate::oid::Oid;

/// Where REPAIR_REPLICA's `forw` arguments are, from the request's
/// argument bytes (offset 16 of the header): oid, then `addr[16]`, then
/// the port.
const FORW_OID: core::ops::Range<usize> = 0..8;
const FORW_ADDR: core::ops::Range<usize> = 8..24;
const FORW_PORT: core::ops::Range<usize> = 24..26;
/// STAT_CLUSTER's `cluster.nodes_nr`, from the argument bytes.
const CLUSTER_NODES_NR: core::ops::Range<usize> = 24..28;

/// A node address as sheep's `node_id.addr` holds it: IPv6 as is, IPv4 in
/// the last four bytes after twelve zeros.
pub fn node_addr_bytes(addr: SocketAddr) -> [u8; 16] {
    match addr {
        SocketAddr::V4(v4) => {
            let mut out = [0u8; 16];
            out[12..].copy_from_slice(&v4.ip().octets());
            out
        }
        SocketAddr::V6(v6) => v6.ip().octets(),
    }
}

impl Request {
    fn peer(opcode: Opcode, flags: Flags, id: u32, len: u32, epoch: u32, args: ObjArgs) -> Request {
        let mut req = Request::new(opcode, flags, id, len, RequestArgs::Obj(args));
        req.epoch = epoch;
        req
    }

    /// GET_HASH (local to the node asked): the SHA-1 of the node's copy of
    /// `oid` as it stands at `epoch`, in the reply header
    /// ([`Response::digest`](super::Response::digest)); NO_OBJ when the
    /// node has none.
    pub fn get_hash(id: u32, oid: Oid, epoch: u32) -> Request {
        let args = ObjArgs {
            oid,
            tgt_epoch: epoch,
            ..ObjArgs::default()
        };
        Request::new(Opcode::GetHash, Flags::NONE, id, 0, RequestArgs::Obj(args))
    }

    /// READ_PEER of `len` bytes of the node's copy (strip `ec_index`) of
    /// `oid`.
    pub fn read_peer(id: u32, oid: Oid, ec_index: u8, len: u32, epoch: u32) -> Request {
        let args = ObjArgs {
            oid,
            ec_index,
            tgt_epoch: epoch,
            ..ObjArgs::default()
        };
        Request::peer(Opcode::ReadPeer, Flags::NONE, id, len, epoch, args)
    }

    /// CREATE_AND_WRITE_PEER: the node stores `len` payload bytes as its
    /// whole copy (strip `ec_index`) of `oid`, replacing what it had.
    pub fn create_and_write_peer(id: u32, oid: Oid, ec_index: u8, len: u32, epoch: u32) -> Request {
        let args = ObjArgs {
            oid,
            ec_index,
            ..ObjArgs::default()
        };
        Request::peer(
            Opcode::CreateAndWritePeer,
            Flags::WRITE,
            id,
            len,
            epoch,
            args,
        )
    }

    /// WRITE_PEER of `len` payload bytes at `offset` into the node's
    /// existing copy (strip `ec_index`) of `oid`.
    pub fn write_peer(
        id: u32,
        oid: Oid,
        ec_index: u8,
        offset: u32,
        len: u32,
        epoch: u32,
    ) -> Request {
        let args = ObjArgs {
            oid,
            ec_index,
            offset,
            ..ObjArgs::default()
        };
        Request::peer(Opcode::WritePeer, Flags::WRITE, id, len, epoch, args)
    }

    /// REMOVE_PEER: the node removes its copy (strip `ec_index`) of `oid`.
    pub fn remove_peer(id: u32, oid: Oid, ec_index: u8, epoch: u32) -> Request {
        let args = ObjArgs {
            oid,
            ec_index,
            ..ObjArgs::default()
        };
        Request::peer(Opcode::RemovePeer, Flags::NONE, id, 0, epoch, args)
    }

    /// REPAIR_REPLICA, sent to the node whose copy is bad or missing: it
    /// reads `oid` whole from the node at `from` (READ_PEER) and stores
    /// it as its own copy.
    pub fn repair_replica(id: u32, oid: Oid, epoch: u32, from: SocketAddr) -> Request {
        let mut raw = [0u8; 32];
        raw[FORW_OID].copy_from_slice(&oid.0.to_le_bytes());
        raw[FORW_ADDR].copy_from_slice(&node_addr_bytes(from));
        raw[FORW_PORT].copy_from_slice(&from.port().to_le_bytes());
        let mut req = Request::new(
            Opcode::RepairReplica,
            Flags::NONE,
            id,
            0,
            RequestArgs::Raw(raw),
        );
        req.epoch = epoch;
        req
    }

    /// GET_VDI_COPIES: the node's table of VDI states (copies, policy,
    /// locks) into a buffer of `buf_len` bytes.
    pub fn get_vdi_copies(id: u32, buf_len: u32) -> Request {
        Request::new(
            Opcode::GetVdiCopies,
            Flags::NONE,
            id,
            buf_len,
            RequestArgs::Raw([0; 32]),
        )
    }

    /// STAT_CLUSTER: the cluster's status in the reply's result and its
    /// epoch log, newest first, each record with room for `nodes_nr`
    /// nodes, into a buffer of `buf_len` bytes.
    pub fn stat_cluster(id: u32, buf_len: u32, nodes_nr: u32) -> Request {
        let mut raw = [0u8; 32];
        raw[CLUSTER_NODES_NR].copy_from_slice(&nodes_nr.to_le_bytes());
        Request::new(
            Opcode::StatCluster,
            Flags::NONE,
            id,
            buf_len,
            RequestArgs::Raw(raw),
        )
    }

    /// The oid and source node of a REPAIR_REPLICA request.
    pub fn repair_source(&self) -> Option<(Oid, [u8; 16], u16)> {
        match (self.opcode, self.args) {
            (Opcode::RepairReplica, RequestArgs::Raw(raw)) => {
                let mut oid = [0u8; 8];
                oid.copy_from_slice(&raw[FORW_OID]);
                let mut addr = [0u8; 16];
                addr.copy_from_slice(&raw[FORW_ADDR]);
                Some((
                    Oid(u64::from_le_bytes(oid)),
                    addr,
                    u16::from_le_bytes([raw[FORW_PORT.start], raw[FORW_PORT.start + 1]]),
                ))
            }
            _ => None,
        }
    }

    /// The `cluster.nodes_nr` of a STAT_CLUSTER request.
    pub fn stat_cluster_nodes(&self) -> Option<u32> {
        match (self.opcode, self.args) {
            (Opcode::StatCluster, RequestArgs::Raw(raw)) => Some(u32::from_le_bytes([
                raw[CLUSTER_NODES_NR.start],
                raw[CLUSTER_NODES_NR.start + 1],
                raw[CLUSTER_NODES_NR.start + 2],
                raw[CLUSTER_NODES_NR.start + 3],
            ])),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Response;

    #[test]
    fn repair_replica_carries_oid_and_source() {
        let from: SocketAddr = "127.0.0.1:7002".parse().unwrap();
        let req = Request::repair_replica(9, Oid(0x00f4_a020_0000_0001), 3, from);
        let bytes = req.to_bytes();
        assert_eq!((bytes[0], bytes[1]), (0x0A, 0xC5));
        assert_eq!(&bytes[16..24], &0x00f4_a020_0000_0001u64.to_le_bytes());
        assert_eq!(&bytes[36..42], &[127, 0, 0, 1, 0x5A, 0x1B]);
        let back = Request::parse_bytes(&bytes).unwrap();
        assert_eq!(back.epoch, 3);
        assert_eq!(
            back.repair_source(),
            Some((Oid(0x00f4_a020_0000_0001), node_addr_bytes(from), 7002))
        );
    }

    #[test]
    fn get_hash_reply_gives_its_digest() {
        let req = Request::get_hash(1, Oid(7), 2);
        let bytes = req.to_bytes();
        assert_eq!(&bytes[36..40], &2u32.to_le_bytes(), "tgt_epoch");
        let mut rsp = [0u8; 48];
        rsp[1] = 0xB4;
        for (i, b) in rsp[24..44].iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        let parsed = Response::parse_bytes(&rsp).unwrap();
        let digest = parsed.digest().unwrap();
        assert_eq!(digest[0], 1);
        assert_eq!(digest[19], 20);
        let emitted = parsed.to_bytes();
        assert_eq!(&emitted[24..44], &rsp[24..44]);
    }

    #[test]
    fn peer_requests_carry_epoch_and_strip() {
        let req = Request::read_peer(4, Oid(0x0033_01f1_0000_0002), 1, 2 << 20, 5);
        let b = req.to_bytes();
        assert_eq!((b[0], b[1], b[34]), (0x0A, 0xA4, 1));
        assert_eq!(&b[4..8], &5u32.to_le_bytes());
        assert_eq!(&b[12..16], &(2u32 << 20).to_le_bytes());
        let c = Request::create_and_write_peer(4, Oid(1), 2, 512, 5).to_bytes();
        assert_eq!((c[1], c[2] & 1, c[34]), (0xA3, 1, 2));
        let r = Request::stat_cluster(1, 4096, 6);
        assert_eq!(
            Request::parse_bytes(&r.to_bytes())
                .unwrap()
                .stat_cluster_nodes(),
            Some(6)
        );
    }
}
