//! How a reference cluster is set up: the defaults `dog cluster format`
//! would record, its flags, and the nodes it reports.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Cluster flag USE_LOCK (`dog cluster format -l`): LOCK_VDI takes locks.
pub const FLAG_USE_LOCK: u16 = 0x8;
/// Cluster flag AUTO_VNODES, set by a default `dog cluster format`.
pub const FLAG_AUTO_VNODES: u16 = 0x4;

/// The cluster's state as STAT_CLUSTER and every non-"force" op see it
/// (PROTOCOL.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterStatus {
    /// Serving.
    Ok,
    /// Waiting: WAIT_FOR_FORMAT if `ctime` is 0, else WAIT_FOR_JOIN.
    Wait,
    /// SHUTDOWN for every op.
    Shutdown,
    /// KILLED for every op.
    Killed,
}

impl ClusterStatus {
    /// The `enum sd_status` byte of CLUSTER_INFO.
    pub fn to_u8(self) -> u8 {
        match self {
            ClusterStatus::Ok => 1,
            ClusterStatus::Wait => 2,
            ClusterStatus::Shutdown => 3,
            ClusterStatus::Killed => 4,
        }
    }
}

/// One node as GET_NODE_LIST, STAT_CLUSTER and CLUSTER_INFO report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Client address of the node.
    pub addr: SocketAddr,
    /// Virtual nodes on the hash ring.
    pub nr_vnodes: u16,
    /// Failure zone.
    pub zone: u32,
    /// Disk space in bytes.
    pub space: u64,
}

impl NodeInfo {
    /// The 40-byte `struct node_id` (address, port, no separate I/O
    /// address).
    pub fn node_id(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        match self.addr.ip() {
            IpAddr::V4(v4) => out[12..16].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out[..16].copy_from_slice(&v6.octets()),
        }
        out[16..18].copy_from_slice(&self.addr.port().to_le_bytes());
        out
    }

    /// The 80-byte `struct sd_node`; the first 24 bytes (the server's
    /// in-memory tree pointers) are zero.
    pub fn sd_node(&self) -> [u8; 80] {
        let mut out = [0u8; 80];
        out[24..64].copy_from_slice(&self.node_id());
        out[64..66].copy_from_slice(&self.nr_vnodes.to_le_bytes());
        out[68..72].copy_from_slice(&self.zone.to_le_bytes());
        out[72..80].copy_from_slice(&self.space.to_le_bytes());
        out
    }
}

impl Default for NodeInfo {
    fn default() -> NodeInfo {
        NodeInfo {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7000),
            nr_vnodes: 128,
            zone: 0,
            space: 100 << 30,
        }
    }
}

/// Settings of a reference cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Default copies (`dog cluster format -c`), 3.
    pub copies: u8,
    /// Default copy policy (erasure code byte), 0.
    pub copy_policy: u8,
    /// Default object size shift (`-z`), 22.
    pub block_size_shift: u8,
    /// Cluster flags; [`FLAG_USE_LOCK`] turns VDI locking on.
    pub flags: u16,
    /// Format time (`sec << 32 | nsec`); 0 means "not formatted".
    pub ctime: u64,
    /// The cluster epoch stamped on every response (a real cluster that was
    /// just formatted answers 1).
    pub epoch: u32,
    /// The store driver name reported by STAT_CLUSTER and CLUSTER_INFO.
    pub store_name: String,
    /// The nodes reported; the first one is "this" node (the lock owner).
    pub nodes: Vec<NodeInfo>,
    /// Requests whose `data_length` is larger get NO_MEM (and the TCP
    /// wrapper closes the connection, as sheep does when it cannot allocate
    /// the buffer). Default 256 MiB.
    pub max_data_length: u32,
    /// Refuse object I/O that crosses the end of the object with
    /// INVALID_PARMS. A real sheep silently extends (writes) or returns
    /// uninitialised memory (reads); off by default.
    pub strict_bounds: bool,
    /// Reference counts dropped by an index write are applied only after
    /// this many further requests, as sheep's queued reclaim work does (a
    /// released object lingers, and its reclaim can hit a new object of the
    /// same oid). 0, the default, applies them at once.
    pub reclaim_delay: u32,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            copies: 3,
            copy_policy: 0,
            block_size_shift: 22,
            flags: FLAG_AUTO_VNODES,
            // 2024-01-01T00:00:00Z; any non-zero value means "formatted".
            ctime: 1_704_067_200u64 << 32,
            epoch: 1,
            store_name: "plain".to_owned(),
            nodes: vec![NodeInfo::default()],
            max_data_length: 256 << 20,
            strict_bounds: false,
            reclaim_delay: 0,
        }
    }
}

impl ClusterConfig {
    /// Whether VDI locking is on.
    pub fn use_lock(&self) -> bool {
        self.flags & FLAG_USE_LOCK != 0
    }

    /// This config with locking turned on or off.
    pub fn with_locking(mut self, on: bool) -> ClusterConfig {
        if on {
            self.flags |= FLAG_USE_LOCK;
        } else {
            self.flags &= !FLAG_USE_LOCK;
        }
        self
    }

    /// This config with another default copy count.
    pub fn with_copies(mut self, copies: u8) -> ClusterConfig {
        self.copies = copies;
        self
    }

    /// This config with another default object size shift.
    pub fn with_block_size_shift(mut self, shift: u8) -> ClusterConfig {
        self.block_size_shift = shift;
        self
    }

    /// This config with reclaims applied `requests` requests late (see
    /// `reclaim_delay`).
    pub fn with_reclaim_delay(mut self, requests: u32) -> ClusterConfig {
        self.reclaim_delay = requests;
        self
    }

    /// Refuse object I/O past the end of the object (see `strict_bounds`).
    pub fn with_strict_bounds(mut self, on: bool) -> ClusterConfig {
        self.strict_bounds = on;
        self
    }
}
