//! The cluster's nodes as GET_NODE_LIST reports them, which of them are up,
//! its epoch, and objects lost on every node: what a cluster whose nodes
//! die and come back looks like to a client.

use std::net::SocketAddr;

use sheepdog_core::oid::Oid;

use super::cluster::Cluster;
use super::config::NodeInfo;

impl Cluster {
    /// Report node `node` of the configured node list at `addr` (the port
    /// its listener actually got). A node past the end of the list is
    /// added, a copy of the first one in zone `node`.
    pub fn set_node_addr(&mut self, node: usize, addr: SocketAddr) {
        let nodes = &mut self.config.nodes;
        while nodes.len() <= node {
            let zone = nodes.len() as u32;
            let template = nodes.first().copied().unwrap_or_default();
            nodes.push(NodeInfo { zone, ..template });
        }
        nodes[node].addr = addr;
    }

    /// Mark node `node` up (back in GET_NODE_LIST) or down (gone from it).
    /// A change is a membership change: the epoch goes one on, as sheep
    /// counts every leave and join.
    pub fn set_node_up(&mut self, node: usize, up: bool) {
        let changed = if up {
            self.down.remove(&node)
        } else {
            node < self.config.nodes.len() && self.down.insert(node)
        };
        if changed {
            self.bump_epoch();
        }
    }

    /// One epoch on, as sheep counts every leave and join (0, "no epoch",
    /// is skipped on wrap-around).
    pub fn bump_epoch(&mut self) {
        self.config.epoch = self.config.epoch.wrapping_add(1).max(1);
    }

    /// Whether node `node` is configured and up.
    pub fn node_is_up(&self, node: usize) -> bool {
        node < self.config.nodes.len() && !self.down.contains(&node)
    }

    /// The nodes that are up, in node order: what GET_NODE_LIST,
    /// STAT_CLUSTER and CLUSTER_INFO report.
    pub fn live_nodes(&self) -> Vec<NodeInfo> {
        (self.config.nodes.iter().enumerate())
            .filter(|(i, _)| !self.down.contains(i))
            .map(|(_, n)| *n)
            .collect()
    }

    /// The object is gone from the store, as if every copy of it were lost:
    /// reads of it answer NO_OBJ, as sheep's do, and every node's own copy
    /// (see [`copy_of`](Cluster::copy_of)) is gone too; index entries that
    /// name it stay. True if the gateway had it.
    pub fn lose_object(&mut self, oid: Oid) -> bool {
        self.follow_gateway();
        self.replicas.clear_object(oid);
        self.store.remove(oid).unwrap_or(false)
    }
}
