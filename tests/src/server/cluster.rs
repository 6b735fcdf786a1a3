//! [`Cluster`]: the whole protocol state of a reference cluster (one
//! store, however many nodes serve it) and [`Cluster::handle`], which
//! answers one request.
//!
//! Everything here is deterministic: no clock (the caller passes `now`), no
//! randomness, no I/O except through the [`Store`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use sheepdog_core::wire::{Opcode, Request, Response, ResultCode, PROTO_VER, SHEEP_PROTO_VER};

use super::config::{ClusterConfig, ClusterStatus};
use super::faults::{FaultAction, Faults, Matcher};
use super::meta;
use super::refcount::Ledgers;
use super::replicas::Replicas;
pub(super) use super::reply::Outcome;
pub use super::reply::Reply;
use super::store::{MemStore, Store};
use super::vdi_state::{VdiState, VidBitmap};
use super::watch::{Watch, Watched};

/// A Sheepdog 1.0 cluster over one store: VID bitmaps, VDI states, locks,
/// reference counts and objects, answering requests as sheep does; and
/// each node's own copies of the objects (see `replicas`).
pub struct Cluster {
    pub(super) config: ClusterConfig,
    pub(super) status: ClusterStatus,
    pub(super) store: Box<dyn Store>,
    pub(super) inuse: VidBitmap,
    pub(super) deleted: VidBitmap,
    pub(super) vdis: BTreeMap<u32, VdiState>,
    pub(super) ledgers: Ledgers,
    pub(super) faults: Faults,
    /// Indices of configured nodes that are down (killed): left out of
    /// the node lists.
    pub(super) down: BTreeSet<usize>,
    /// Dropped references waiting for their delayed reclaim: requests left,
    /// data object, reference.
    /// READ_OBJ requests of data objects answered: what a test counts to
    /// show which objects a command read.
    pub(super) data_reads: u64,
    pub(super) reclaims:
        std::collections::VecDeque<(u32, sheepdog_core::oid::Oid, super::inode_io::Gref)>,
    /// Where the nodes' own copies differ from what placement gives them.
    pub(super) replicas: Replicas,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("config", &self.config)
            .field("status", &self.status)
            .field("vdis", &self.vdis)
            .field("faults", &self.faults)
            .field("down", &self.down)
            .finish_non_exhaustive()
    }
}

/// Whether an opcode still runs while the cluster waits (`force` ops).
fn is_force(op: Opcode) -> bool {
    matches!(
        op,
        Opcode::ReadVdis
            | Opcode::ReadDelVdis
            | Opcode::GetClusterDefault
            | Opcode::GetNodeList
            | Opcode::StatCluster
            | Opcode::GetVdiCopies
            | Opcode::ClusterInfo
    )
}

impl Cluster {
    /// A fresh, formatted, empty cluster in memory.
    pub fn new(config: ClusterConfig) -> Cluster {
        let watch = Arc::new(Watch::default());
        Cluster {
            config,
            status: ClusterStatus::Ok,
            store: Box::new(Watched::new(Box::new(MemStore::new()), Arc::clone(&watch))),
            inuse: VidBitmap::default(),
            deleted: VidBitmap::default(),
            vdis: BTreeMap::new(),
            ledgers: Ledgers::default(),
            faults: Faults::default(),
            down: BTreeSet::new(),
            data_reads: 0,
            reclaims: Default::default(),
            replicas: Replicas::new(watch),
        }
    }

    /// A cluster over `store`, picking up the bitmaps, VDI states and
    /// reference counts saved there by an earlier run (or, if none were
    /// saved, rebuilding them from the inodes found).
    pub fn with_store(config: ClusterConfig, store: Box<dyn Store>) -> io::Result<Cluster> {
        let saved = match store.load_meta()? {
            Some(bytes) => meta::decode(&bytes)?,
            None => meta::rebuild(&*store)?,
        };
        let ledgers = Ledgers::load(&*store)?;
        let watch = Arc::new(Watch::default());
        Ok(Cluster {
            config,
            status: ClusterStatus::Ok,
            store: Box::new(Watched::new(store, Arc::clone(&watch))),
            inuse: saved.inuse,
            deleted: saved.deleted,
            vdis: saved.vdis,
            ledgers,
            faults: Faults::default(),
            down: BTreeSet::new(),
            data_reads: 0,
            reclaims: Default::default(),
            replicas: Replicas::new(watch),
        })
    }

    /// READ_OBJ requests of data objects answered so far.
    pub fn data_reads(&self) -> u64 {
        self.data_reads
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The status every request sees from now on (WAIT, SHUTDOWN ...).
    pub fn set_status(&mut self, status: ClusterStatus) {
        self.status = status;
    }

    /// Report this node (the first of the node list) at `addr`, e.g. the
    /// port a listener actually got.
    pub fn set_local_addr(&mut self, addr: SocketAddr) {
        if let Some(node) = self.config.nodes.first_mut() {
            node.addr = addr;
        }
    }

    /// Make the next `times` requests matching `matcher` get `action`.
    pub fn inject(&mut self, matcher: Matcher, action: FaultAction, times: u32) {
        self.faults.push(matcher, action, times);
    }

    /// Fault uses not yet consumed.
    pub fn pending_faults(&self) -> u32 {
        self.faults.pending()
    }

    /// Forget every pending fault.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Save bitmaps and states to the store (best effort: a failure only
    /// loses them for a later restart).
    pub(super) fn save_meta(&mut self) {
        let bytes = meta::encode(&self.inuse, &self.deleted, &self.vdis);
        let _ = self.store.save_meta(&bytes);
    }

    /// Answer one request arriving on node 0. `now` is the time
    /// (`sec << 32 | nsec`) stamped into inodes created by NEW_VDI;
    /// `payload` is what followed the header (exactly `data_length` bytes
    /// when WRITE is set, else ignored).
    ///
    /// Never panics on any header or payload.
    pub fn handle(&mut self, now: u64, req: &Request, payload: &[u8]) -> Reply {
        self.handle_on(0, now, req, payload)
    }

    /// Answer one request arriving on node `node` (an index into the
    /// configured node list), as [`handle`](Cluster::handle) does. Gateway
    /// requests are answered alike on every node; the peer requests, hash
    /// and object list are about the node's own copies (see
    /// [`copy_of`](Cluster::copy_of)).
    ///
    /// Never panics on any header or payload.
    pub fn handle_on(&mut self, node: usize, now: u64, req: &Request, payload: &[u8]) -> Reply {
        // Gateway work done outside requests (the dog-like helpers) first.
        self.follow_gateway();
        self.run_due_reclaims();
        let mut disconnect = false;
        let mut cut_short = false;
        let mut length = None;
        let outcome = if let Some(early) = self.precheck(req, payload) {
            early
        } else {
            match self.faults.take(req) {
                None => self.dispatch(node, now, req, payload),
                // A success as sheep sends it carries the bytes a read
                // asked for (zeros here): nothing else would be believed.
                Some(FaultAction::Fail(ResultCode::Success)) if !req.flags.has_payload() => {
                    Outcome::data(vec![0; req.data_length as usize])
                }
                Some(FaultAction::Fail(r)) => Outcome::err(r),
                Some(FaultAction::ApplyThenFail(r)) => {
                    self.dispatch(node, now, req, payload);
                    Outcome::err(r)
                }
                Some(FaultAction::Disconnect) => {
                    disconnect = true;
                    Outcome::err(ResultCode::NetworkError)
                }
                Some(FaultAction::ApplyThenDisconnect) => {
                    disconnect = true;
                    self.dispatch(node, now, req, payload);
                    Outcome::err(ResultCode::NetworkError)
                }
                Some(FaultAction::ApplyThenCutShort) => {
                    cut_short = true;
                    self.dispatch(node, now, req, payload)
                }
                Some(FaultAction::ApplyThenLength(n)) => {
                    length = Some(n);
                    self.dispatch(node, now, req, payload)
                }
            }
        };
        // The copies follow what this request did to the objects.
        self.follow_gateway();
        let mut outcome = outcome;
        if let Some(n) = length {
            outcome.data.resize(n as usize, 0x5a);
        }
        let mut header = Response::to_request(req, outcome.result, outcome.data.len() as u32);
        header.epoch = self.config.epoch;
        if let Some(args) = outcome.args {
            header.args = args;
        }
        Reply {
            header,
            payload: outcome.data,
            disconnect,
            cut_short,
        }
    }

    /// What `queue_request()` answers before running the op: protocol
    /// version, unknown opcodes, cluster status; plus malformed framing.
    fn precheck(&self, req: &Request, payload: &[u8]) -> Option<Outcome> {
        let internal = req.opcode.to_u8() >= 0x80;
        if (internal && req.proto_ver != SHEEP_PROTO_VER)
            || (!internal && req.proto_ver > PROTO_VER)
        {
            return Some(Outcome::err(ResultCode::VerMismatch));
        }
        if matches!(req.opcode, Opcode::Unknown(_)) {
            return Some(Outcome::err(ResultCode::InvalidParms));
        }
        match self.status {
            ClusterStatus::Killed => return Some(Outcome::err(ResultCode::Killed)),
            ClusterStatus::Shutdown => return Some(Outcome::err(ResultCode::Shutdown)),
            ClusterStatus::Wait if !is_force(req.opcode) => {
                let r = if self.config.ctime == 0 {
                    ResultCode::WaitForFormat
                } else {
                    ResultCode::WaitForJoin
                };
                return Some(Outcome::err(r));
            }
            _ => {}
        }
        if req.data_length > self.config.max_data_length {
            return Some(Outcome::err(ResultCode::NoMem));
        }
        if req.flags.has_payload() && payload.len() != req.data_length as usize {
            return Some(Outcome::err(ResultCode::InvalidParms));
        }
        None
    }

    /// Run the operation on node `node`.
    fn dispatch(&mut self, node: usize, now: u64, req: &Request, payload: &[u8]) -> Outcome {
        // Without WRITE the server's buffer holds no client bytes; zeros
        // stand in for the uninitialised memory sheep would use.
        let input: Cow<'_, [u8]> = if req.flags.has_payload() {
            Cow::Borrowed(payload)
        } else {
            Cow::Borrowed(&[])
        };
        let zeros = || vec![0u8; req.data_length as usize];
        match req.opcode {
            Opcode::CreateAndWriteObj => {
                let data = if req.flags.has_payload() {
                    input
                } else {
                    Cow::Owned(zeros())
                };
                self.op_create_obj(req, &data)
            }
            Opcode::ReadObj => {
                if req.obj().is_some_and(|a| a.oid.is_data()) {
                    self.data_reads += 1;
                }
                self.op_read_obj(req)
            }
            Opcode::WriteObj => {
                let data = if req.flags.has_payload() {
                    input
                } else {
                    Cow::Owned(zeros())
                };
                self.op_write_obj(req, &data)
            }
            Opcode::RemoveObj => self.op_remove_obj(req),
            Opcode::DiscardObj => self.op_discard_obj(req),
            Opcode::NewVdi => self.op_new_vdi(now, req, &input),
            Opcode::LockVdi => self.op_get_vdi_info(node, req, &input, true),
            Opcode::ReleaseVdi => self.op_release_vdi(req),
            Opcode::GetVdiInfo => self.op_get_vdi_info(node, req, &input, false),
            Opcode::ReadVdis => self.op_read_bitmap(req, false),
            Opcode::FlushVdi => Outcome::err(ResultCode::InvalidParms),
            Opcode::DelVdi => self.op_del_vdi(req, &input),
            Opcode::GetClusterDefault => self.op_cluster_default(),
            Opcode::GetNodeList => self.op_node_list(),
            Opcode::StatSheep => self.op_stat_sheep(),
            Opcode::StatCluster => self.op_stat_cluster(req),
            Opcode::GetVdiAttr => {
                let data = if req.flags.has_payload() {
                    input
                } else {
                    Cow::Owned(zeros())
                };
                self.op_vdi_attr(req, &data)
            }
            Opcode::GetObjList => self.op_obj_list(node, req),
            Opcode::GetVdiCopies => self.op_vdi_copies(req),
            Opcode::ClusterInfo => self.op_cluster_info(),
            Opcode::ReadDelVdis => self.op_read_bitmap(req, true),
            Opcode::GetHash => self.op_get_hash(node, req),
            Opcode::ReadPeer => self.op_read_peer(node, req),
            Opcode::WritePeer => {
                let data = if req.flags.has_payload() {
                    input
                } else {
                    Cow::Owned(zeros())
                };
                self.op_write_peer(node, req, &data)
            }
            Opcode::CreateAndWritePeer => {
                let data = if req.flags.has_payload() {
                    input
                } else {
                    Cow::Owned(zeros())
                };
                self.op_create_peer(node, req, &data)
            }
            Opcode::RemovePeer => self.op_remove_peer(node, req),
            Opcode::RepairReplica => self.op_repair_replica(node, req),
            Opcode::Unknown(_) => Outcome::err(ResultCode::InvalidParms),
        }
    }
}
