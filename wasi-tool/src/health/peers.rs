//! Requests to each node about its own copies (PROTOCOL.md §4.3), many in
//! flight: a batch of asks is written out to every node first, then every
//! node's replies are read, so a batch costs one round trip whatever its
//! size and the nodes work on it at once. Replies may come in any order;
//! each is matched by its id to the ask it answers, and believed only if
//! core's `peer_reply` says it is the reply that ask can have. It works
//! the same in the WASI component (no threads).

use std::collections::HashMap;
use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sheepdog_core::oid::Oid;
use sheepdog_core::peer_reply::{self, PeerReply};
use sheepdog_core::verdict::Digest;
use sheepdog_core::wire::{Request, Response, ResultCode, HEADER_LEN};

use crate::cluster::gateways;
use crate::error::{self, CliError};

/// What to ask a node.
#[derive(Clone, Debug)]
pub enum Ask {
    /// GET_HASH of its copy.
    Hash(Oid),
    /// READ_PEER of `len` bytes of its strip `ec_index`.
    Read {
        /// The object.
        oid: Oid,
        /// The strip.
        ec_index: u8,
        /// Bytes.
        len: u32,
    },
    /// CREATE_AND_WRITE_PEER: `data` becomes its strip `ec_index`.
    Create {
        /// The object.
        oid: Oid,
        /// The strip.
        ec_index: u8,
        /// The whole strip.
        data: Vec<u8>,
    },
    /// REPAIR_REPLICA: it copies `oid` from `from`.
    Repair {
        /// The object.
        oid: Oid,
        /// The node with the good copy.
        from: SocketAddr,
    },
    /// REMOVE_PEER of its strip `ec_index`.
    Remove {
        /// The object.
        oid: Oid,
        /// The strip (0 for a replica).
        ec_index: u8,
    },
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// GET_HASH: the copy's SHA-1.
    Hash(Digest),
    /// READ_PEER: the bytes.
    Data(Vec<u8>),
    /// A write, repair or remove was done.
    Done,
    /// The node answered with this result.
    Refused(ResultCode),
}

struct Conn {
    stream: TcpStream,
    shown: String,
}

/// One connection per node, opened when first needed.
pub struct Peers {
    addrs: Vec<SocketAddr>,
    conns: Vec<Option<Conn>>,
    epoch: u32,
    timeout: Duration,
    /// Requests sent.
    pub requests: u64,
}

impl Peers {
    /// Peers for the nodes at `addrs` (indexes as in the node list), at
    /// the cluster's `epoch`.
    pub fn new(addrs: Vec<SocketAddr>, epoch: u32, timeout: Duration) -> Peers {
        let conns = addrs.iter().map(|_| None).collect();
        Peers {
            addrs,
            conns,
            epoch,
            timeout,
            requests: 0,
        }
    }

    /// The address of node `n`.
    pub fn addr(&self, n: usize) -> SocketAddr {
        self.addrs[n]
    }

    fn conn(&mut self, n: usize) -> Result<&mut Conn, CliError> {
        if self.conns[n].is_none() {
            let addr = self.addrs[n].to_string();
            let d = gateways::dial(&addr, self.timeout, self.timeout).map_err(|r| {
                CliError::msg(format!("cannot reach the node {}: {}", r.addr, r.reason))
            })?;
            let stream = d.stream;
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(self.timeout));
            self.conns[n] = Some(Conn {
                stream,
                shown: d.addr,
            });
        }
        Ok(self.conns[n].as_mut().expect("just opened"))
    }

    /// Ask each `(node, ask)` and return the answers in the same order.
    pub fn run(&mut self, asks: &[(usize, Ask)]) -> Result<Vec<Answer>, CliError> {
        let mut answers: Vec<Option<Answer>> = vec![None; asks.len()];
        let mut by_node: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, (n, _)) in asks.iter().enumerate() {
            if *n >= self.addrs.len() {
                return Err(CliError::msg(format!("internal error: no node {n}")));
            }
            by_node.entry(*n).or_default().push(i);
        }
        let mut nodes: Vec<usize> = by_node.keys().copied().collect();
        nodes.sort_unstable();
        let epoch = self.epoch;
        for &n in &nodes {
            let conn = self.conn(n)?;
            let mut w = BufWriter::with_capacity(256 << 10, &conn.stream);
            for &i in &by_node[&n] {
                let (req, payload) = request(i as u32, &asks[i].1, epoch);
                w.write_all(&req.to_bytes())
                    .and_then(|()| w.write_all(payload))
                    .map_err(|e| error::lost(&conn.shown, &e))?;
            }
            w.flush().map_err(|e| error::lost(&conn.shown, &e))?;
            drop(w);
            self.requests += by_node[&n].len() as u64;
        }
        for &n in &nodes {
            let conn = self.conn(n)?;
            for _ in 0..by_node[&n].len() {
                let (i, answer) = receive(conn, asks, &by_node[&n], &answers)?;
                answers[i] = Some(answer);
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.expect("every ask answered"))
            .collect())
    }
}

/// The request for `ask`, and its payload.
fn request(id: u32, ask: &Ask, epoch: u32) -> (Request, &[u8]) {
    match ask {
        Ask::Hash(oid) => (Request::get_hash(id, *oid, epoch), &[]),
        Ask::Read { oid, ec_index, len } => {
            (Request::read_peer(id, *oid, *ec_index, *len, epoch), &[])
        }
        Ask::Create {
            oid,
            ec_index,
            data,
        } => (
            Request::create_and_write_peer(id, *oid, *ec_index, data.len() as u32, epoch),
            data,
        ),
        Ask::Repair { oid, from } => (Request::repair_replica(id, *oid, epoch, *from), &[]),
        Ask::Remove { oid, ec_index } => (Request::remove_peer(id, *oid, *ec_index, epoch), &[]),
    }
}

/// Read one reply from `conn`, one of the asks `mine` not answered yet.
fn receive(
    conn: &mut Conn,
    asks: &[(usize, Ask)],
    mine: &[usize],
    answered: &[Option<Answer>],
) -> Result<(usize, Answer), CliError> {
    let bad =
        |what: String| CliError::msg(format!("the node {} sent a bad reply: {what}", conn.shown));
    let mut header = [0u8; HEADER_LEN];
    conn.stream
        .read_exact(&mut header)
        .map_err(|e| error::lost(&conn.shown, &e))?;
    let rsp = Response::parse_bytes(&header).map_err(|e| bad(e.to_string()))?;
    let i = rsp.id as usize;
    if !mine.contains(&i) || answered[i].is_some() {
        return Err(bad(format!("id {} answers nothing asked", rsp.id)));
    }
    let (req, _) = request(rsp.id, &asks[i].1, 0);
    let checked = peer_reply::check(&req, &rsp).map_err(|p| bad(format!("{} {p}", req.opcode)))?;
    let len = match checked {
        PeerReply::Data(n) | PeerReply::Refused(_, n) => n,
        PeerReply::Hash(_) | PeerReply::Done => 0,
    };
    let mut data = vec![0u8; len as usize];
    conn.stream
        .read_exact(&mut data)
        .map_err(|e| error::lost(&conn.shown, &e))?;
    let answer = match checked {
        PeerReply::Hash(d) => Answer::Hash(d),
        PeerReply::Data(_) => Answer::Data(data),
        PeerReply::Done => Answer::Done,
        PeerReply::Refused(r, _) => Answer::Refused(r),
    };
    Ok((i, answer))
}
