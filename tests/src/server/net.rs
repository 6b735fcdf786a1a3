//! Serving a [`Cluster`] over TCP: one thread per connection, requests
//! read whole (header, then exactly the payload), answered in order — or,
//! with [`NetOptions::reorder`], up to eight already-buffered requests are
//! handled in order and answered in reverse, so that clients must match
//! responses by `id`.
//!
//! Each listener is one node of the cluster with its own connections;
//! [`spawn_nodes`](super::spawn_nodes) starts several over one cluster,
//! which the [`ServerHandle`] can kill, black-hole and revive one by one.
//!
//! A connection that closes mid-request just ends its thread. A request
//! whose `data_length` exceeds the cluster's `max_data_length` closes the
//! connection, as sheep does when it cannot allocate the buffer.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sheepdog_core::wire::{Opcode, Request, HEADER_LEN};

use super::cluster::{Cluster, Reply};
use super::nodes::{spawn_on, Node};

/// How connections are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetOptions {
    /// Answer batches of pipelined requests in reverse order.
    pub reorder: bool,
    /// Most requests handled as one batch when reordering.
    pub max_batch: usize,
    /// How long to wait for the next pipelined request to arrive before a
    /// batch is closed.
    pub reorder_window: Duration,
}

impl Default for NetOptions {
    fn default() -> NetOptions {
        NetOptions {
            reorder: false,
            max_batch: 8,
            reorder_window: Duration::from_millis(5),
        }
    }
}

impl NetOptions {
    /// Options that answer pipelined requests out of order.
    pub fn reordering() -> NetOptions {
        NetOptions {
            reorder: true,
            ..NetOptions::default()
        }
    }
}

/// Lock the cluster, also after a panic in another connection's thread.
pub fn lock(cluster: &Mutex<Cluster>) -> MutexGuard<'_, Cluster> {
    cluster.lock().unwrap_or_else(|e| e.into_inner())
}

/// The wall clock as sheep stamps it: `sec << 32 | usec * 1000`.
pub fn wall_clock() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() << 32) | u64::from(d.subsec_micros() * 1000)
}

/// What one node's accept loop and connection threads share with its
/// controls: whether to stop accepting, whether to answer, what it
/// answered, and its open connections, so that they can be cut.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// The accept loop ends at the next connection.
    pub(super) stop: AtomicBool,
    /// Requests are read and dropped: never applied, never answered.
    pub(super) blackhole: AtomicBool,
    /// READ_OBJ is answered out of shape: a header that claims
    /// [`MALFORMED_LENGTH`] bytes, and none of them.
    pub(super) malformed: AtomicBool,
    /// Requests answered (counted as their reply goes out).
    pub(super) served: AtomicU64,
    next_id: AtomicU64,
    conns: Mutex<Vec<(u64, TcpStream)>>,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Vec<(u64, TcpStream)>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, stream: &TcpStream) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            self.conns().push((id, clone));
        }
        id
    }

    fn unregister(&self, id: u64) {
        self.conns().retain(|(i, _)| *i != id);
    }

    /// Shut every open connection down, both ways.
    pub(super) fn cut_all(&self) {
        for (_, s) in self.conns().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// How many connections are open.
    pub(super) fn connection_count(&self) -> usize {
        self.conns().len()
    }
}

/// What a malformed node's READ_OBJ replies claim to carry (and do not).
pub const MALFORMED_LENGTH: u32 = 0xFFFF_FF00;

/// Serve `cluster` on `listener` until the process ends, as node 0.
pub fn serve(listener: TcpListener, cluster: Arc<Mutex<Cluster>>, opts: NetOptions) {
    accept_loop(listener, cluster, opts, Arc::new(Shared::default()), 0);
}

/// Run [`accept_loop`] for node `node` in a background thread.
pub(super) fn start_accepting(
    listener: TcpListener,
    cluster: &Arc<Mutex<Cluster>>,
    opts: NetOptions,
    shared: &Arc<Shared>,
    node: usize,
) -> io::Result<JoinHandle<()>> {
    let cluster = Arc::clone(cluster);
    let shared = Arc::clone(shared);
    thread::Builder::new()
        .name("sheep-ref-accept".into())
        .spawn(move || accept_loop(listener, cluster, opts, shared, node))
}

/// Accept for node `node` until `shared.stop` is set (checked at each new
/// connection); the listener closes when this returns.
fn accept_loop(
    listener: TcpListener,
    cluster: Arc<Mutex<Cluster>>,
    opts: NetOptions,
    shared: Arc<Shared>,
    node: usize,
) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            // Out of descriptors and the like: back off a little.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        // Registered here, not in the connection's thread, so that once
        // this loop has ended every connection it accepted can be cut.
        let id = shared.register(&stream);
        let cluster = Arc::clone(&cluster);
        let conn_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("sheep-ref-conn".into())
            .spawn(move || {
                let _ = connection(stream, &cluster, opts, &conn_shared, node);
                conn_shared.unregister(id);
            });
        if spawned.is_err() {
            shared.unregister(id);
        }
    }
}

/// Read one request: `Ok(None)` on a clean or mid-request close, and on
/// a `data_length` the server will not allocate.
fn read_request<R: Read>(r: &mut R, max: u32) -> io::Result<Option<(Request, Vec<u8>)>> {
    let mut header = [0u8; HEADER_LEN];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let req = Request::parse_bytes(&header).map_err(|_| io::ErrorKind::InvalidData)?;
    if req.data_length > max {
        return Ok(None);
    }
    let mut payload = vec![0u8; req.payload_len() as usize];
    match r.read_exact(&mut payload) {
        Ok(()) => Ok(Some((req, payload))),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether another request header is already there (or arrives within
/// `window`).
fn header_ready(reader: &BufReader<TcpStream>, window: Duration) -> bool {
    let buffered = reader.buffer().len();
    if buffered >= HEADER_LEN {
        return true;
    }
    let stream = reader.get_ref();
    let deadline = Instant::now() + window;
    let mut peek = [0u8; HEADER_LEN];
    let ready = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break false;
        }
        match stream.peek(&mut peek[..HEADER_LEN - buffered]) {
            Ok(0) => break false,
            Ok(n) if buffered + n >= HEADER_LEN => break true,
            Ok(_) => thread::sleep(Duration::from_micros(200)),
            Err(_) => break false,
        }
    };
    let _ = stream.set_read_timeout(None);
    ready
}

fn send(w: &mut TcpStream, reply: &Reply) -> io::Result<()> {
    w.write_all(&reply.header.to_bytes())?;
    w.write_all(&reply.payload)
}

/// Serve one connection to node `node`.
fn connection(
    stream: TcpStream,
    cluster: &Mutex<Cluster>,
    opts: NetOptions,
    shared: &Shared,
    node: usize,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    loop {
        let max = lock(cluster).config().max_data_length;
        let Some(first) = read_request(&mut reader, max)? else {
            return Ok(());
        };
        let mut batch = vec![first];
        while opts.reorder
            && batch.len() < opts.max_batch
            && header_ready(&reader, opts.reorder_window)
        {
            match read_request(&mut reader, max)? {
                Some(r) => batch.push(r),
                None => return Ok(()),
            }
        }
        if shared.blackhole.load(Ordering::SeqCst) {
            // A node that hangs: the kernel takes the bytes, nothing
            // happens.
            continue;
        }
        let mut replies = Vec::with_capacity(batch.len());
        for (req, payload) in &batch {
            let mut reply = lock(cluster).handle_on(node, wall_clock(), req, payload);
            if shared.malformed.load(Ordering::SeqCst) && req.opcode == Opcode::ReadObj {
                reply.header.data_length = MALFORMED_LENGTH;
                reply.payload.clear();
            }
            if reply.disconnect {
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(());
            }
            if reply.cut_short {
                // What was answered before goes out first; then this reply
                // stops half way through its payload.
                for r in &replies {
                    shared.served.fetch_add(1, Ordering::SeqCst);
                    send(&mut writer, r)?;
                }
                writer.write_all(&reply.header.to_bytes())?;
                writer.write_all(&reply.payload[..reply.payload.len() / 2])?;
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(());
            }
            replies.push(reply);
        }
        if opts.reorder {
            replies.reverse();
        }
        for reply in &replies {
            // Counted first, so that a client holding the reply sees it
            // counted.
            shared.served.fetch_add(1, Ordering::SeqCst);
            send(&mut writer, reply)?;
        }
    }
}

/// A server running in background threads: one node, or several serving
/// one cluster ([`spawn_nodes`](super::spawn_nodes)).
#[derive(Debug)]
pub struct ServerHandle {
    /// Where node 0 listens.
    pub addr: SocketAddr,
    /// The cluster it serves: inject faults, take snapshots behind the
    /// client's back, inspect objects.
    pub cluster: Arc<Mutex<Cluster>>,
    /// How connections are served, also by a revived node.
    pub(super) opts: NetOptions,
    /// The nodes, in node order.
    pub(super) nodes: Mutex<Vec<Node>>,
}

impl ServerHandle {
    /// Lock the cluster.
    pub fn cluster(&self) -> MutexGuard<'_, Cluster> {
        lock(&self.cluster)
    }

    /// Lock the nodes.
    pub(super) fn nodes(&self) -> MutexGuard<'_, Vec<Node>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cut every open client connection of every node (a gateway restart,
    /// from the client's point of view). The nodes keep accepting new ones.
    pub fn drop_connections(&self) {
        for n in self.nodes().iter() {
            n.shared.cut_all();
        }
    }

    /// How many client connections are open, over all nodes.
    pub fn connection_count(&self) -> usize {
        self.nodes()
            .iter()
            .map(|n| n.shared.connection_count())
            .sum()
    }

    /// Stop accepting and cut every connection.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        for n in self.nodes().iter_mut() {
            n.stop();
        }
    }
}

/// Serve `cluster` on `listener` in background threads.
pub fn spawn(
    listener: TcpListener,
    cluster: Cluster,
    opts: NetOptions,
) -> io::Result<ServerHandle> {
    spawn_on(vec![listener], cluster, opts)
}

/// Serve `cluster` on 127.0.0.1 with a free port, in background threads.
pub fn spawn_loopback(cluster: Cluster, opts: NetOptions) -> io::Result<ServerHandle> {
    spawn(TcpListener::bind("127.0.0.1:0")?, cluster, opts)
}
