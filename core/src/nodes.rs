//! The cluster's nodes (GET_NODE_LIST, PROTOCOL.md §4.2): which gateways a
//! client can fail over to.
//!
//! [`GetNodeList`] is the conversation of an
//! [`Exchange`](crate::reply::Exchange): one request, the reply through
//! the one receive path into the caller's buffer, and then the
//! [`NodeList`] lent out of it. The reply is checked before it is
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

use crate::reply::{Accept, Conversation, Next, Problem};
use crate::wire::{Request, Response, ResponseArgs};

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

/// GET_NODE_LIST as an [`Exchange`]'s conversation; see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetNodeList {
    /// From the reply: entries, payload bytes, the answering node's epoch.
    nr_nodes: u32,
    len: u32,
    epoch: u32,
}

impl Conversation for GetNodeList {
    type Outcome<'a> = NodeList<'a>;

    fn request(&self, id: u32, buf_len: u32) -> Request {
        Request::get_node_list(id, buf_len)
    }

    fn accept(&mut self, _req: &Request, rsp: &Response) -> Result<Accept, Problem> {
        self.nr_nodes = match rsp.args {
            ResponseArgs::Raw(raw) => LittleEndian::read_u32(&raw[..4]),
            _ => 0,
        };
        self.len = rsp.data_length;
        self.epoch = rsp.epoch;
        Ok(Accept::Payload(0..self.len as usize))
    }

    fn check(&mut self, _req: &Request, bytes: &[u8]) -> Result<Next, Problem> {
        NodeList::parse(bytes, self.nr_nodes, self.epoch).map(|_| Next::Done)
    }

    fn outcome<'a>(&self, buf: &'a [u8]) -> Result<NodeList<'a>, Problem> {
        let bytes = buf.get(..self.len as usize).unwrap_or_default();
        NodeList::parse(bytes, self.nr_nodes, self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::{Error, Exchange, Receive, Replies};
    use crate::wire::{Opcode, ResultCode, HEADER_LEN};

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
        let mut p = Exchange::new(std::vec![0u8; NODE_LIST_BUF_LEN], 3, GetNodeList::default());
        let req = Request::parse_bytes(&p.poll_transmit().unwrap()).unwrap();
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
