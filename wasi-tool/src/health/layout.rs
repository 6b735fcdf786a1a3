//! Where the cluster keeps each copy: its nodes (GET_NODE_LIST), with
//! their zones and vnodes, at the epoch the node asked answered for, and
//! sheep's placement over them (`core::placement`).

use std::net::SocketAddr;

use sheepdog_core::nodes::{GetNodeList, Node, NODE_LIST_BUF_LEN};
use sheepdog_core::placement::{ring_len, Ring, Vnode};
use sheepdog_core::reply::Exchange;

use crate::cluster::client::Client;
use crate::cluster::raw;
use crate::error::CliError;

/// The cluster's nodes at one epoch.
pub struct Layout {
    /// The nodes, in the order the list gave them (their indexes are
    /// what placement returns).
    pub nodes: Vec<Node>,
    /// The epoch of the list.
    pub epoch: u32,
    vnodes: Vec<Vnode>,
}

impl Layout {
    /// Ask the node `client` is connected to.
    pub fn read(client: &mut Client) -> Result<Layout, CliError> {
        let mut ex = Exchange::new(vec![0u8; NODE_LIST_BUF_LEN], 1, GetNodeList::default());
        raw::on_client(client, &mut ex)?;
        let (nodes, epoch) = match ex.outcome() {
            Some(Ok(list)) => (list.iter().collect::<Vec<Node>>(), list.epoch),
            Some(Err(e)) => {
                return Err(CliError::msg(format!(
                    "cannot read the node list from {}: {e}",
                    client.addr
                )))
            }
            None => return Err(CliError::msg("internal error: no node list")),
        };
        let vnodes = vec![Vnode::default(); ring_len(&nodes)];
        Ok(Layout {
            nodes,
            epoch,
            vnodes,
        })
    }

    /// The nodes' addresses, by index.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// sheep's ring over the nodes.
    pub fn ring(&mut self) -> Result<Ring<'_>, CliError> {
        Ring::new(&self.nodes, &mut self.vnodes)
            .map_err(|e| CliError::msg(format!("cannot place objects on the cluster's nodes: {e}")))
    }
}
