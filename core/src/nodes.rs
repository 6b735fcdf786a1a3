//! The cluster's nodes (GET_NODE_LIST, PROTOCOL.md §4.2): which gateways a
//! client can fail over to.
//!
//! A [`NodeProbe`] is sans-IO like the [`Lister`](crate::list::Lister): it
//! writes one request ([`NodeProbe::request`]), takes the reply through the
//! one receive path ([`crate::receive::Receiver`]) into the caller's buffer,
//! and then lends out the [`NodeList`]. The reply is checked before it is
//! believed: its id and opcode, its length against the buffer offered, and
//! that `data_length` is a whole number of entries of a size that can hold
//! an address. The entry size is `data_length / nr_nodes`, not a constant:
//! builds of sheep differ in it (80 bytes in 1.0). The first 24 bytes of
//! each entry are junk (the server's in-memory tree pointers) and are never
//! read.
//!
//! sheep writes the whole list whatever `data_length` says, so the buffer
//! must have room for every node a cluster can have:
//! [`NODE_LIST_BUF_LEN`], as dog offers.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use byteorder::{ByteOrder, LittleEndian};

use crate::engine::reply::{self, Asked, Want};
use crate::engine::{Error, Incoming, Problem, Receive};
use crate::receive::Replies;
use crate::wire::{Request, ResponseArgs, HEADER_LEN};

/// The most nodes a Sheepdog 1.0 cluster has (`SD_MAX_NODES`).
pub const MAX_NODES: u32 = 6144;
/// The entry size of Sheepdog 1.0 (`struct sd_node`).
pub const NODE_ENTRY_LEN: u32 = 80;
/// The buffer to offer: room for [`MAX_NODES`] entries of 1.0's size.
pub const NODE_LIST_BUF_LEN: usize = (MAX_NODES * NODE_ENTRY_LEN) as usize;

/// Where an entry's address is: `addr[16]` then `port` u16.
const ADDR: usize = 24;
const PORT: usize = 40;
const NR_VNODES: usize = 64;
const ZONE: usize = 68;
/// An entry must hold the address and port at least.
const MIN_ENTRY: u32 = (PORT + 2) as u32;
/// Larger entries than this are not a node list.
const MAX_ENTRY: u32 = 4096;

/// One node of the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// Where clients reach it.
    pub addr: SocketAddr,
    /// Its failure zone, when the entry holds one (else 0).
    pub zone: u32,
    /// Its virtual nodes, when the entry holds them (else 0).
    pub nr_vnodes: u16,
}

/// The nodes of a checked reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeList<'a> {
    bytes: &'a [u8],
    entry: usize,
    /// The epoch of the node that answered.
    pub epoch: u32,
}

impl<'a> NodeList<'a> {
    /// The nodes a payload of `nr_nodes` entries holds, checked: a whole
    /// number of entries, each long enough for an address.
    pub fn parse(payload: &'a [u8], nr_nodes: u32, epoch: u32) -> Result<NodeList<'a>, Problem> {
        let len = payload.len() as u32;
        let bad = |got: u64| Problem::Field {
            name: "nr_nodes",
            got,
            expected: 0,
        };
        if nr_nodes == 0 || nr_nodes > MAX_NODES || len % nr_nodes != 0 {
            return Err(bad(nr_nodes.into()));
        }
        let entry = len / nr_nodes;
        if !(MIN_ENTRY..=MAX_ENTRY).contains(&entry) {
            return Err(Problem::Length {
                got: len,
                expected: nr_nodes * NODE_ENTRY_LEN,
            });
        }
        Ok(NodeList {
            bytes: payload,
            entry: entry as usize,
            epoch,
        })
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.entry
    }

    /// Whether there are none (never, for a checked list).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The nodes, in the server's order.
    pub fn iter(&self) -> impl Iterator<Item = Node> + 'a {
        let entry = self.entry;
        self.bytes.chunks_exact(entry).map(move |e| node(e, entry))
    }
}

/// Decode one entry of `entry` bytes (at least [`MIN_ENTRY`]).
fn node(e: &[u8], entry: usize) -> Node {
    let mut a = [0u8; 16];
    a.copy_from_slice(&e[ADDR..ADDR + 16]);
    let ip = if a[..12].iter().all(|&b| b == 0) {
        // IPv4 sits in the last four bytes, the rest zero.
        IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(a))
    };
    let port = LittleEndian::read_u16(&e[PORT..PORT + 2]);
    let zone = if entry >= ZONE + 4 {
        LittleEndian::read_u32(&e[ZONE..ZONE + 4])
    } else {
        0
    };
    let nr_vnodes = if entry >= NR_VNODES + 2 {
        LittleEndian::read_u16(&e[NR_VNODES..NR_VNODES + 2])
    } else {
        0
    };
    Node {
        addr: SocketAddr::new(ip, port),
        zone,
        nr_vnodes,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The request is to be sent, or on the wire.
    Asking,
    /// The payload of this many entries is being read.
    Reading {
        nr_nodes: u32,
        len: u32,
        epoch: u32,
    },
    /// The list is in the buffer.
    Done {
        nr_nodes: u32,
        len: u32,
        epoch: u32,
    },
    Failed(Error),
}

/// Asks one node for the node list; see the module docs.
#[derive(Debug)]
pub struct NodeProbe<B> {
    buf: B,
    id: u32,
    state: State,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> NodeProbe<B> {
    /// A probe whose reply goes into `buf` (offer [`NODE_LIST_BUF_LEN`]
    /// bytes: sheep writes past a shorter one), with request id `id`.
    pub fn new(buf: B, id: u32) -> NodeProbe<B> {
        NodeProbe {
            buf,
            id,
            state: State::Asking,
        }
    }

    fn asked(&self) -> Request {
        Request::get_node_list(
            self.id,
            self.buf.as_ref().len().min(u32::MAX as usize) as u32,
        )
    }

    /// The request to send.
    pub fn request(&self) -> [u8; HEADER_LEN] {
        self.asked().to_bytes()
    }

    /// A reply header arrived: where its payload goes. An error means the
    /// connection is out of step: drop it without reading the payload.
    pub fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        let waiting = self.state == State::Asking;
        let rsp = match reply::screen(header, waiting, &self.asked(), Want::Ignored) {
            Ok(rsp) => rsp,
            Err(r) => return r.settle(|e| self.state = State::Failed(e)),
        };
        let nr_nodes = match rsp.args {
            ResponseArgs::Raw(raw) => LittleEndian::read_u32(&raw[..4]),
            _ => 0,
        };
        let len = rsp.data_length;
        self.state = State::Reading {
            nr_nodes,
            len,
            epoch: rsp.epoch,
        };
        Ok(Incoming {
            len,
            into: Receive::Own(0..len as usize),
        })
    }

    /// The payload is in the buffer: check it.
    pub fn handle_payload(&mut self) {
        if let State::Reading {
            nr_nodes,
            len,
            epoch,
        } = self.state
        {
            let bytes = &self.buf.as_ref()[..len as usize];
            self.state = match NodeList::parse(bytes, nr_nodes, epoch) {
                Ok(_) => State::Done {
                    nr_nodes,
                    len,
                    epoch,
                },
                Err(p) => State::Failed(Error::BadReply(Asked::of(&self.asked()).bad(p))),
            };
        }
    }

    /// The outcome once the reply is in: the nodes, or why not.
    pub fn outcome(&self) -> Option<Result<NodeList<'_>, Error>> {
        match self.state {
            State::Asking | State::Reading { .. } => None,
            State::Failed(e) => Some(Err(e)),
            State::Done {
                nr_nodes,
                len,
                epoch,
            } => Some(
                NodeList::parse(&self.buf.as_ref()[..len as usize], nr_nodes, epoch)
                    .map_err(|p| Error::BadReply(Asked::of(&self.asked()).bad(p))),
            ),
        }
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Replies for NodeProbe<B> {
    fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        NodeProbe::handle_header(self, header)
    }
    fn handle_payload(&mut self, _now: u64, _scratch: &[u8]) {
        NodeProbe::handle_payload(self)
    }
    fn own_bytes_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Opcode, Response, ResultCode};

    fn reply(id: u32, nr: u32, payload_len: u32, result: ResultCode) -> [u8; HEADER_LEN] {
        let req = Request::get_node_list(id, NODE_LIST_BUF_LEN as u32);
        let mut rsp = Response::to_request(&req, result, payload_len);
        let mut raw = [0u8; 28];
        raw[..4].copy_from_slice(&nr.to_le_bytes());
        rsp.args = ResponseArgs::Raw(raw);
        rsp.epoch = 7;
        rsp.to_bytes()
    }

    fn entry(ip: [u8; 4], port: u16, zone: u32) -> [u8; 80] {
        let mut e = [0xa5u8; 80];
        e[24..36].fill(0);
        e[36..40].copy_from_slice(&ip);
        e[40..42].copy_from_slice(&port.to_le_bytes());
        e[64..66].copy_from_slice(&128u16.to_le_bytes());
        e[68..72].copy_from_slice(&zone.to_le_bytes());
        e
    }

    fn probe(header: &[u8; HEADER_LEN], payload: &[u8]) -> Result<std::vec::Vec<Node>, Error> {
        let mut p = NodeProbe::new(std::vec![0u8; NODE_LIST_BUF_LEN], 3);
        let req = Request::parse_bytes(&p.request()).unwrap();
        assert_eq!(req.opcode, Opcode::GetNodeList);
        assert_eq!(req.proto_ver, crate::wire::SHEEP_PROTO_VER);
        assert_eq!(req.data_length, NODE_LIST_BUF_LEN as u32);
        let inc = p.handle_header(header)?;
        if let Receive::Own(r) = inc.into {
            p.own_bytes_mut()[r].copy_from_slice(payload);
        }
        p.handle_payload();
        p.outcome().expect("an outcome").map(|l| l.iter().collect())
    }

    extern crate std;

    #[test]
    fn reads_addresses_and_skips_the_junk() {
        let mut payload = std::vec::Vec::new();
        payload.extend_from_slice(&entry([127, 0, 0, 1], 7000, 0));
        payload.extend_from_slice(&entry([10, 1, 2, 3], 7002, 2));
        let nodes = probe(&reply(3, 2, 160, ResultCode::Success), &payload).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].addr, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(nodes[1].addr, "10.1.2.3:7002".parse().unwrap());
        assert_eq!((nodes[1].zone, nodes[1].nr_vnodes), (2, 128));
    }

    #[test]
    fn entry_size_comes_from_the_reply() {
        // A build whose sd_node is 88 bytes: the address is still at 24.
        let mut payload = std::vec::Vec::new();
        for port in [7000u16, 7001] {
            let mut e = [0u8; 88];
            e[..80].copy_from_slice(&entry([127, 0, 0, 1], port, 1));
            payload.extend_from_slice(&e);
        }
        let nodes = probe(&reply(3, 2, 176, ResultCode::Success), &payload).unwrap();
        assert_eq!(nodes[1].addr.port(), 7001);
    }

    #[test]
    fn ipv6_addresses() {
        let mut e = entry([0, 0, 0, 0], 7000, 0);
        e[24..40].copy_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        e[40..42].copy_from_slice(&7000u16.to_le_bytes());
        let nodes = probe(&reply(3, 1, 80, ResultCode::Success), &e).unwrap();
        assert_eq!(nodes[0].addr, "[fe80::1]:7000".parse().unwrap());
    }

    #[test]
    fn refuses_what_cannot_be_a_node_list() {
        let e = entry([127, 0, 0, 1], 7000, 0);
        // No nodes, a length that is not whole entries, tiny entries.
        for (nr, len) in [(0, 80), (3, 80 * 2), (4, 80)] {
            let payload = std::vec![0u8; len as usize];
            let got = probe(&reply(3, nr, len, ResultCode::Success), &payload);
            assert!(
                matches!(got, Err(Error::BadReply(_))),
                "{nr} {len}: {got:?}"
            );
        }
        // Another id, another opcode, more than offered.
        assert!(matches!(
            probe(&reply(4, 1, 80, ResultCode::Success), &e),
            Err(Error::UnexpectedReply { id: 4 })
        ));
        let mut other = reply(3, 1, 80, ResultCode::Success);
        other[1] = Opcode::ReadVdis.to_u8();
        assert!(matches!(probe(&other, &e), Err(Error::BadReply(_))));
        let long = reply(3, 1, NODE_LIST_BUF_LEN as u32 + 80, ResultCode::Success);
        assert!(matches!(probe(&long, &e), Err(Error::BadReply(_))));
        // A failure is the server's.
        let got = probe(&reply(3, 0, 0, ResultCode::WaitForFormat), &[]);
        assert!(matches!(
            got,
            Err(Error::Server {
                result: ResultCode::WaitForFormat,
                ..
            })
        ));
    }
}
