//! One cluster served as several nodes, one listener each, that tests can
//! kill, black-hole and revive to see a client fail over.
//!
//! * Killed ([`ServerHandle::kill`]), as `kill -9` does to a sheep: the
//!   listener is closed (connecting is refused), the node's connections
//!   are cut, it leaves GET_NODE_LIST and the epoch goes one on.
//! * Black-holed ([`ServerHandle::blackhole`]), as `kill -STOP` does: the
//!   node still accepts connections and reads requests, and neither
//!   applies nor answers any; it stays in GET_NODE_LIST.
//! * Malformed ([`ServerHandle::malform`]): the node answers READ_OBJ
//!   with a header that claims 4 GiB and sends none of it.
//! * Revived ([`ServerHandle::revive`]): listening again on the same
//!   port and answering; a killed node rejoins, one epoch on.
//!
//! Every node serves the same [`Cluster`], so what one node wrote is what
//! the others read.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::net::{start_accepting, NetOptions, ServerHandle, Shared};

/// How long [`ServerHandle::revive`] retries binding a port just closed.
const REBIND_FOR: Duration = Duration::from_secs(2);

/// One node of a running server.
#[derive(Debug)]
pub(super) struct Node {
    /// Where it listens (and listens again when revived).
    addr: SocketAddr,
    /// Its accept loop's and connections' state.
    pub(super) shared: Arc<Shared>,
    /// Its accept loop, while it has one.
    thread: Option<JoinHandle<()>>,
    /// Killed and not revived since.
    killed: bool,
}

impl Node {
    /// Stop accepting (the listener closes) and cut every connection.
    pub(super) fn stop(&mut self) {
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept loop; if that fails, leave the thread be rather
        // than wait for it forever.
        let woken = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok();
        if let Some(t) = self.thread.take() {
            if woken {
                let _ = t.join();
            }
        }
        self.shared.cut_all();
    }
}

/// Bind `addr` again, retrying for a while if it is still in use.
fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let deadline = Instant::now() + REBIND_FOR;
    loop {
        match TcpListener::bind(addr) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl ServerHandle {
    /// Every node's address, in node order (killed ones too).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes().iter().map(|n| n.addr).collect()
    }

    /// How many nodes there are, killed or not.
    pub fn node_count(&self) -> usize {
        self.nodes().len()
    }

    /// Requests node `node` has answered so far (over all its lives).
    ///
    /// Panics if there is no node `node`.
    pub fn requests_served(&self, node: usize) -> u64 {
        self.nodes()[node].shared.served.load(Ordering::SeqCst)
    }

    /// Kill node `node`: its listener closes, so that connecting is
    /// refused, its connections are cut, and it leaves GET_NODE_LIST, one
    /// epoch on. Killing a killed node does nothing.
    ///
    /// Panics if there is no node `node`.
    pub fn kill(&self, node: usize) {
        let mut nodes = self.nodes();
        if nodes[node].killed {
            return;
        }
        nodes[node].stop();
        nodes[node].killed = true;
        self.cluster().set_node_up(node, false);
    }

    /// Black-hole node `node`: it goes on accepting connections and reading
    /// requests, on new and existing connections alike, but applies and
    /// answers none of them. It stays in GET_NODE_LIST.
    ///
    /// Panics if there is no node `node`.
    pub fn blackhole(&self, node: usize) {
        let nodes = self.nodes();
        nodes[node].shared.blackhole.store(true, Ordering::SeqCst);
    }

    /// Make node `node` a broken one that still talks: every READ_OBJ it
    /// answers gets a header claiming
    /// [`MALFORMED_LENGTH`](super::net::MALFORMED_LENGTH) bytes, and
    /// none of them. Undone by [`revive`](ServerHandle::revive).
    ///
    /// Panics if there is no node `node`.
    pub fn malform(&self, node: usize) {
        let nodes = self.nodes();
        nodes[node].shared.malformed.store(true, Ordering::SeqCst);
    }

    /// Undo [`kill`](ServerHandle::kill) or
    /// [`blackhole`](ServerHandle::blackhole): node `node` answers again,
    /// listening on the same port; a killed node is back in GET_NODE_LIST,
    /// one epoch on. Reviving a live node does nothing.
    ///
    /// Panics if there is no node `node`, or if its port cannot be bound
    /// again (see [`try_revive`](ServerHandle::try_revive)).
    pub fn revive(&self, node: usize) {
        if let Err(e) = self.try_revive(node) {
            panic!("cannot revive node {node}: {e}");
        }
    }

    /// [`revive`](ServerHandle::revive), with an error if the port of a
    /// killed node cannot be bound again within a couple of seconds (it
    /// then stays killed).
    ///
    /// Panics if there is no node `node`.
    pub fn try_revive(&self, node: usize) -> io::Result<()> {
        let mut nodes = self.nodes();
        let n = &mut nodes[node];
        n.shared.blackhole.store(false, Ordering::SeqCst);
        n.shared.malformed.store(false, Ordering::SeqCst);
        if !n.killed {
            return Ok(());
        }
        let listener = rebind(n.addr)?;
        n.shared.stop.store(false, Ordering::SeqCst);
        n.thread = Some(start_accepting(
            listener,
            &self.cluster,
            self.opts,
            &n.shared,
            node,
        )?);
        n.killed = false;
        self.cluster().set_node_up(node, true);
        Ok(())
    }
}

/// Serve `cluster` as one node per listener, in background threads. Node
/// `i` of the cluster's node list reports listener `i`'s address; nodes
/// missing from the list are added, copies of the first in zone `i`.
///
/// Fails with `InvalidInput` if `listeners` is empty.
pub fn spawn_on(
    listeners: Vec<TcpListener>,
    mut cluster: Cluster,
    opts: NetOptions,
) -> io::Result<ServerHandle> {
    let addrs = (listeners.iter())
        .map(TcpListener::local_addr)
        .collect::<io::Result<Vec<_>>>()?;
    let Some(&addr) = addrs.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no listener to serve on",
        ));
    };
    for (i, a) in addrs.iter().enumerate() {
        cluster.set_node_addr(i, *a);
    }
    let cluster = Arc::new(Mutex::new(cluster));
    let mut nodes: Vec<Node> = Vec::with_capacity(listeners.len());
    for (node, (listener, addr)) in listeners.into_iter().zip(addrs).enumerate() {
        let shared = Arc::new(Shared::default());
        let thread = match start_accepting(listener, &cluster, opts, &shared, node) {
            Ok(t) => t,
            Err(e) => {
                nodes.iter_mut().for_each(Node::stop);
                return Err(e);
            }
        };
        nodes.push(Node {
            addr,
            shared,
            thread: Some(thread),
            killed: false,
        });
    }
    Ok(ServerHandle {
        addr,
        cluster,
        opts,
        nodes: Mutex::new(nodes),
    })
}

/// Serve `cluster` as `n` nodes (at least one) on 127.0.0.1, each on a
/// free port, in background threads. Node 0 is the handle's `addr`.
pub fn spawn_nodes(cluster: Cluster, n: usize, opts: NetOptions) -> io::Result<ServerHandle> {
    let listeners = (0..n.max(1))
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    spawn_on(listeners, cluster, opts)
}
