//! Cluster-wide reads: READ_VDIS, READ_DEL_VDIS, GET_CLUSTER_DEFAULT, and
//! the internal ops `dog` uses to find its way around — GET_NODE_LIST,
//! STAT_SHEEP, STAT_CLUSTER, CLUSTER_INFO and GET_VDI_COPIES — in the
//! layouts of PROTOCOL.md §4.2.

use sheepdog_core::wire::{Request, RequestArgs, ResponseArgs, ResultCode, VDI_BITMAP_LEN};

use super::cluster::{Cluster, Outcome};
use super::config::{ClusterStatus, NodeInfo};
use super::vdi_state::LockState;

/// Size of `struct sd_node`.
const SD_NODE_LEN: usize = 80;
/// Nodes in `struct cluster_info` (`SD_MAX_NODES`).
const MAX_NODES: usize = 6144;
/// Size of the `cluster_info` header before its node array.
const CINFO_HEADER_LEN: usize = 48;
/// Size of an `epoch_log` header.
const ELOG_HEADER_LEN: usize = 48;
/// Size of `struct vdi_state`.
const VDI_STATE_LEN: usize = 1428;
/// Internal protocol version reported in CLUSTER_INFO.
const SHEEP_PROTO_VER: u8 = 0x0a;
/// Length of the store name fields.
const STORE_LEN: usize = 16;

fn put_u16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

impl Cluster {
    /// READ_VDIS / READ_DEL_VDIS: the 2 MiB bitmap, nothing else accepted.
    pub(super) fn op_read_bitmap(&mut self, req: &Request, deleted: bool) -> Outcome {
        if req.data_length as usize != VDI_BITMAP_LEN {
            return Outcome::err(ResultCode::InvalidParms);
        }
        let map = if deleted { &self.deleted } else { &self.inuse };
        Outcome::data(map.bytes().to_vec())
    }

    /// GET_CLUSTER_DEFAULT.
    pub(super) fn op_cluster_default(&mut self) -> Outcome {
        Outcome::with_args(
            ResultCode::Success,
            ResponseArgs::ClusterDefault {
                nr_copies: self.config.copies,
                copy_policy: self.config.copy_policy,
                block_size_shift: self.config.block_size_shift,
            },
            Vec::new(),
        )
    }

    /// The live nodes' `sd_node`s, back to back.
    fn node_list(&self) -> Vec<u8> {
        self.live_nodes()
            .iter()
            .flat_map(NodeInfo::sd_node)
            .collect()
    }

    /// GET_NODE_LIST: `nr_nodes` × 80 bytes whatever buffer was asked for
    /// (sheep does not bounds-check it).
    pub(super) fn op_node_list(&mut self) -> Outcome {
        let mut raw = [0u8; 28];
        let mut list = self.node_list();
        put_u32(&mut raw, 0, (list.len() / SD_NODE_LEN) as u32);
        // Bytes 0..24 of each entry are the server's tree pointers: junk a
        // client must never read, so never zero bytes here.
        for (i, e) in list.chunks_mut(SD_NODE_LEN).enumerate() {
            for (j, b) in e[..24].iter_mut().enumerate() {
                *b = 0x80 | (0x25 ^ (i as u8).wrapping_mul(31) ^ j as u8);
            }
        }
        Outcome::with_args(ResultCode::Success, ResponseArgs::Raw(raw), list)
    }

    /// STAT_SHEEP: this node's space and free space.
    pub(super) fn op_stat_sheep(&mut self) -> Outcome {
        let size = self.config.nodes.first().map_or(0, |n| n.space);
        let free = size.saturating_sub(self.store.used_bytes());
        let mut raw = [0u8; 28];
        put_u64(&mut raw, 12, size);
        put_u64(&mut raw, 20, free);
        Outcome::with_args(ResultCode::Success, ResponseArgs::Raw(raw), Vec::new())
    }

    /// The result that reports the cluster's status.
    fn status_result(&self) -> ResultCode {
        match self.status {
            ClusterStatus::Ok => ResultCode::Success,
            ClusterStatus::Wait if self.config.ctime == 0 => ResultCode::WaitForFormat,
            ClusterStatus::Wait => ResultCode::WaitForJoin,
            ClusterStatus::Shutdown => ResultCode::Shutdown,
            ClusterStatus::Killed => ResultCode::Killed,
        }
    }

    /// STAT_CLUSTER: newest-first epoch logs, each a 48-byte header plus
    /// `nodes_nr` node slots, as many as fit; the result is the status.
    pub(super) fn op_stat_cluster(&mut self, req: &Request) -> Outcome {
        let nodes_nr = match req.args {
            RequestArgs::Raw(raw) => u32::from_le_bytes([raw[24], raw[25], raw[26], raw[27]]),
            _ => 0,
        } as usize;
        let status = self.status_result();
        if self.config.ctime == 0 {
            return Outcome::err(status);
        }
        let rec = ELOG_HEADER_LEN as u64 + nodes_nr as u64 * SD_NODE_LEN as u64;
        let max_elogs = u64::from(req.data_length) / rec;
        let nodes = self.node_list();
        let nr_nodes = nodes.len() / SD_NODE_LEN;
        let mut data = Vec::new();
        let mut epoch = self.config.epoch;
        let mut i = 0;
        while i < max_elogs && epoch > 0 {
            let mut elog = vec![0u8; rec as usize];
            if i == 0 {
                put_u64(&mut elog, 0, self.config.ctime);
                elog[25] = self.config.copies;
                elog[26] = self.config.copy_policy;
                put_u16(&mut elog, 30, self.config.flags);
                let name = self.config.store_name.as_bytes();
                let n = name.len().min(STORE_LEN - 1);
                elog[32..32 + n].copy_from_slice(&name[..n]);
            }
            put_u32(&mut elog, 16, epoch);
            if nodes_nr > 0 {
                if nodes_nr < nr_nodes {
                    return Outcome {
                        data,
                        ..Outcome::err(ResultCode::BufferSmall)
                    };
                }
                put_u64(&mut elog, 8, self.config.ctime >> 32);
                put_u32(&mut elog, 20, nr_nodes as u32);
                elog[ELOG_HEADER_LEN..ELOG_HEADER_LEN + nodes.len()].copy_from_slice(&nodes);
            }
            data.extend_from_slice(&elog);
            epoch -= 1;
            i += 1;
        }
        Outcome {
            data,
            ..Outcome::err(status)
        }
    }

    /// CLUSTER_INFO: `struct cluster_info` with its 6144-node array.
    pub(super) fn op_cluster_info(&mut self) -> Outcome {
        let mut data = vec![0u8; CINFO_HEADER_LEN + MAX_NODES * SD_NODE_LEN];
        data[0] = SHEEP_PROTO_VER;
        let nodes = self.node_list();
        put_u16(&mut data, 2, (nodes.len() / SD_NODE_LEN) as u16);
        put_u32(&mut data, 4, self.config.epoch);
        put_u64(&mut data, 8, self.config.ctime);
        put_u16(&mut data, 16, self.config.flags);
        data[18] = self.config.copies;
        data[19] = self.config.copy_policy;
        data[20] = self.status.to_u8();
        data[21] = self.config.block_size_shift;
        let name = self.config.store_name.as_bytes();
        let n = name.len().min(STORE_LEN - 1);
        data[25..25 + n].copy_from_slice(&name[..n]);
        let n = nodes.len().min(MAX_NODES * SD_NODE_LEN);
        data[CINFO_HEADER_LEN..CINFO_HEADER_LEN + n].copy_from_slice(&nodes[..n]);
        Outcome::data(data)
    }

    /// GET_OBJ_LIST on node `node`: every object it holds a copy of (see
    /// `replicas`) as a le64 oid, ascending, each once however many strips
    /// it holds (`get_obj_list()`); BUFFER_SMALL if they do not fit.
    pub(super) fn op_obj_list(&mut self, node: usize, req: &Request) -> Outcome {
        let oids = match self.node_objects(node) {
            Ok(o) => o,
            Err(e) => return Outcome::err(e),
        };
        if (req.data_length as usize) < oids.len() * 8 {
            return Outcome::err(ResultCode::BufferSmall);
        }
        let mut data = Vec::with_capacity(oids.len() * 8);
        for o in oids {
            data.extend_from_slice(&o.0.to_le_bytes());
        }
        Outcome::data(data)
    }

    /// GET_VDI_COPIES: one 1428-byte `vdi_state` per known VID, ascending;
    /// BUFFER_SMALL if they do not fit.
    pub(super) fn op_vdi_copies(&mut self, req: &Request) -> Outcome {
        let need = self.vdis.len() * VDI_STATE_LEN;
        if (req.data_length as usize) < need {
            return Outcome::err(ResultCode::BufferSmall);
        }
        let mut data = vec![0u8; need];
        for ((vid, s), out) in self.vdis.iter().zip(data.chunks_exact_mut(VDI_STATE_LEN)) {
            let me = self
                .config
                .nodes
                .get(s.owner)
                .map_or([0u8; 40], NodeInfo::node_id);
            put_u32(out, 0, *vid);
            out[4] = s.nr_copies;
            out[5] = u8::from(s.snapshot);
            out[6] = u8::from(s.deleted);
            out[7] = s.copy_policy;
            out[8] = s.block_size_shift;
            put_u32(out, 12, s.parent_vid);
            put_u32(out, 16, s.lock.to_u32());
            match s.lock {
                LockState::Unlocked => {}
                LockState::Locked => out[20..60].copy_from_slice(&me),
                LockState::Shared => {
                    put_u32(out, 60, 1);
                    put_u32(out, 64, 1); // SHARED_LOCK_STATE_MODIFIED
                    out[188..228].copy_from_slice(&me);
                }
            }
        }
        Outcome::data(data)
    }
}
