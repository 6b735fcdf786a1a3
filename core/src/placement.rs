//! Where sheep puts each copy of an object (PROTOCOL.md §7.3): the
//! consistent-hash ring of virtual nodes and `oid_to_vnodes`.
//!
//! Every node owns `nr_vnodes` points on a ring of 64-bit hashes. The first
//! is `sd_hash_next` of the node's hash ([`node_hash`]), each next one
//! `sd_hash_next` of the one before. An object's copies go to the first
//! vnode at or after the object's hash ([`oid_hash`]), wrapping round to the
//! lowest, then to the next vnodes along the ring whose node is in a zone no
//! copy has taken yet. For an erasure-coded object, copy `i` is strip `i`
//! (its `ec_index`).
//!
//! Clients do not need this to read or write: any node is a gateway. It is
//! for tools that look at where objects live (`dog vdi check`, recovery
//! checks, a client that wants to ask the node holding a copy).
//!
//! [`Ring`] borrows a buffer the caller sizes with [`ring_len`]; nothing is
//! allocated. Sheep panics when two vnodes hash the same ("vdisk hash
//! collison") and when a walk comes back round before it has found every
//! copy ("can't find a valid vnode"); here equal hashes are ordered by node
//! and a walk that comes back round returns the copies it found.
//!
//! Only the plain vnode strategy is modelled (`nodes_to_vnodes`), not the
//! vnodes per disk of builds with `HAVE_DISKVNODES`.

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use crate::hash::{fnv1a64, fnv1a64_update, FNV1A64_OFFSET};
use crate::nodes::{Node, MAX_NODES};
use crate::oid::Oid;

/// The most copies of an object (`SD_MAX_COPIES`); also the most zones
/// sheep counts.
pub const MAX_COPIES: usize = 31;

/// The bytes of a `struct node_id` that sheep hashes: the 16-byte address
/// and the port (`offsetof(struct node_id, io_addr)`).
const NODE_ID_HASHED: usize = 18;

/// One point of the ring (`struct sd_vnode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Vnode {
    /// Its place on the ring.
    pub hash: u64,
    /// The node owning it: an index into the nodes the ring was built from.
    pub node: u16,
}

/// `fnv_64a_64`: FNV-1a over the eight bytes of `value`, least
/// significant first, continuing from `hval`.
const fn fnv_64a_64(value: u64, hval: u64) -> u64 {
    fnv1a64_update(hval, &value.to_le_bytes())
}

/// `sd_hash_next`: the hash after `hval` (a node's next vnode).
const fn sd_hash_next(hval: u64) -> u64 {
    fnv_64a_64(hval, hval)
}

/// A node's hash, `sd_hash(&nid, 18)`: FNV-1a over its address as 16 bytes
/// (IPv4 `a.b.c.d` as twelve zero bytes then `a, b, c, d`) and its port as
/// a little-endian `u16`, then `sd_hash_next`. Its vnodes are the hashes
/// after it.
pub fn node_hash(addr: SocketAddr) -> u64 {
    let mut id = [0u8; NODE_ID_HASHED];
    let (ip, port) = id.split_at_mut(16);
    match addr.ip() {
        IpAddr::V4(v4) => {
            if let Some(tail) = ip.get_mut(12..) {
                tail.copy_from_slice(&v4.octets());
            }
        }
        IpAddr::V6(v6) => ip.copy_from_slice(&v6.octets()),
    }
    port.copy_from_slice(&addr.port().to_le_bytes());
    sd_hash_next(fnv1a64(&id))
}

/// An object's place on the ring, `sd_hash_oid`: `fnv_64a_64` of the oid
/// from the FNV offset basis, then `sd_hash_next` (the same as
/// `sd_hash(&oid, 8)`).
pub const fn oid_hash(oid: Oid) -> u64 {
    sd_hash_next(fnv_64a_64(oid.0, FNV1A64_OFFSET))
}

/// How many vnodes the ring of `nodes` has: the sum of their `nr_vnodes`,
/// the length the buffer of [`Ring::new`] needs.
pub fn ring_len(nodes: &[Node]) -> usize {
    nodes.iter().fold(0usize, |n, node| {
        n.saturating_add(usize::from(node.nr_vnodes))
    })
}

/// Why a ring cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacementError {
    /// The vnode buffer is shorter than the ring.
    BufferTooSmall {
        /// The vnodes the ring has ([`ring_len`]).
        need: usize,
    },
    /// More nodes than a Sheepdog cluster has ([`MAX_NODES`]).
    TooManyNodes,
    /// No node has a vnode (an empty list, or gateways only): nothing can
    /// be placed.
    NoVnodes,
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PlacementError::BufferTooSmall { need } => {
                write!(f, "the vnode buffer must hold {need} vnodes")
            }
            PlacementError::TooManyNodes => {
                write!(f, "more than {MAX_NODES} nodes")
            }
            PlacementError::NoVnodes => f.write_str("no node has a vnode"),
        }
    }
}

impl core::error::Error for PlacementError {}

/// The nodes an object's copies are on, in copy order (copy `i` is strip
/// `i` of an erasure-coded object): indexes into the nodes of the
/// [`Ring`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Targets {
    nodes: [u16; MAX_COPIES],
    len: u8,
}

impl Targets {
    /// The node indexes, copy 0 first.
    pub fn as_slice(&self) -> &[u16] {
        self.nodes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// How many copies were placed.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a node; false when full.
    fn push(&mut self, node: u16) -> bool {
        match self.nodes.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = node;
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

/// The ring of a node list: every vnode, sorted by hash, and the nodes'
/// zones.
#[derive(Clone, Copy, Debug)]
pub struct Ring<'a> {
    nodes: &'a [Node],
    vnodes: &'a [Vnode],
    zones: usize,
}

impl<'a> Ring<'a> {
    /// Fills `buf` (at least [`ring_len`] long) with every node's vnodes and
    /// sorts it by hash (`nodes_to_vnodes`). Vnodes of equal hash, which
    /// sheep refuses, are ordered by node.
    pub fn new(nodes: &'a [Node], buf: &'a mut [Vnode]) -> Result<Ring<'a>, PlacementError> {
        if nodes.len() > MAX_NODES as usize {
            return Err(PlacementError::TooManyNodes);
        }
        let need = ring_len(nodes);
        if need == 0 {
            return Err(PlacementError::NoVnodes);
        }
        let ring = buf
            .get_mut(..need)
            .ok_or(PlacementError::BufferTooSmall { need })?;
        let mut slots = ring.iter_mut();
        for (i, node) in nodes.iter().enumerate() {
            // At most MAX_NODES nodes, so the index fits.
            let index = u16::try_from(i).map_err(|_| PlacementError::TooManyNodes)?;
            let mut hash = node_hash(node.addr);
            for _ in 0..node.nr_vnodes {
                hash = sd_hash_next(hash);
                if let Some(slot) = slots.next() {
                    *slot = Vnode { hash, node: index };
                }
            }
        }
        ring.sort_unstable_by_key(|v| (v.hash, v.node));
        Ok(Ring {
            nodes,
            vnodes: ring,
            zones: count_zones(nodes),
        })
    }

    /// How many distinct zones hold data (nodes with vnodes), at most 31 as
    /// sheep counts them: the most copies an object gets.
    pub fn zones(&self) -> usize {
        self.zones
    }

    /// The vnodes, sorted by hash.
    pub fn vnodes(&self) -> &'a [Vnode] {
        self.vnodes
    }

    /// The nodes the ring was built from.
    pub fn nodes(&self) -> &'a [Node] {
        self.nodes
    }

    /// The nodes (indexes into `nodes`) of copies 0.. of `oid`, in copy (=
    /// `ec_index`) order (`oid_to_nodes`): at most `copies` and at most 31
    /// ([`MAX_COPIES`]), fewer if there are fewer zones.
    pub fn targets(&self, oid: Oid, copies: usize) -> Targets {
        let mut targets = Targets::default();
        let mut zones = [0u32; MAX_COPIES];
        let copies = copies.min(MAX_COPIES);
        let len = self.vnodes.len();
        if copies == 0 || len == 0 {
            return targets;
        }
        // rb_nsearch: the first vnode at or after the hash, else the first.
        let key = oid_hash(oid);
        let first = self.vnodes.partition_point(|v| v.hash < key);
        let first = if first == len { 0 } else { first };
        // Walk the ring once from there; copy 0 takes the first vnode.
        let walk = self
            .vnodes
            .iter()
            .skip(first)
            .chain(self.vnodes.iter().take(first));
        for vnode in walk {
            let Some(zone) = self.nodes.get(usize::from(vnode.node)).map(|n| n.zone) else {
                continue;
            };
            let taken = zones.get(..targets.len()).unwrap_or_default();
            if taken.contains(&zone) {
                continue;
            }
            if let Some(slot) = zones.get_mut(targets.len()) {
                *slot = zone;
            }
            if !targets.push(vnode.node) || targets.len() == copies {
                break;
            }
        }
        targets
    }
}

/// `get_zones_nr_from`: the distinct zones of nodes with vnodes, counting
/// stops at [`MAX_COPIES`].
fn count_zones(nodes: &[Node]) -> usize {
    let mut zones = [0u32; MAX_COPIES];
    let mut n = 0;
    for node in nodes.iter().filter(|node| node.nr_vnodes > 0) {
        let seen = zones.get(..n).unwrap_or_default();
        if seen.contains(&node.zone) {
            continue;
        }
        match zones.get_mut(n) {
            Some(slot) => *slot = node.zone,
            None => break,
        }
        n += 1;
        if n == MAX_COPIES {
            break;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    extern crate std;

    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::vec;
    use std::vec::Vec;

    use super::*;

    fn node(port: u16, zone: u32, nr_vnodes: u16) -> Node {
        Node {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            zone,
            nr_vnodes,
        }
    }

    /// The real cluster: 127.0.0.1:7000, :7001, :7002 in zones 0, 1, 2,
    /// 128 vnodes each.
    fn cluster() -> [Node; 3] {
        [node(7000, 0, 128), node(7001, 1, 128), node(7002, 2, 128)]
    }

    #[test]
    fn hashes_match_sheep() {
        // From include/sheepdog_proto.h compiled: sd_hash(&nid, 18) and
        // sd_hash_oid.
        let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7000);
        assert_eq!(node_hash(v4), 0x9cb3_d6dd_0a4c_0f9f);
        let v6 = Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, 7);
        assert_eq!(
            node_hash(SocketAddr::new(IpAddr::V6(v6), 7000)),
            0x1330_b955_58f3_5d36
        );
        assert_eq!(oid_hash(Oid(0x0033_01f1_0000_0000)), 0xddbc_0d9d_5181_391b);
        // sd_hash_oid(oid) is sd_hash(&oid, 8).
        for oid in [0u64, 1, 0x0033_01f1_0000_0009, u64::MAX] {
            let h = fnv1a64(&oid.to_le_bytes());
            assert_eq!(oid_hash(Oid(oid)), sd_hash_next(h));
        }
    }

    #[test]
    fn targets_match_real_cluster() {
        // Where a Sheepdog 1.0 cluster stored strips 0, 1, 2 of objects of
        // 2:1 VDIs, as ports.
        const PLACED: [(u64, [u16; 3]); 11] = [
            (0x0033_01f1_0000_0000, [7001, 7002, 7000]),
            (0x0033_01f1_0000_0001, [7000, 7002, 7001]),
            (0x0033_01f1_0000_0002, [7001, 7002, 7000]),
            (0x0033_01f1_0000_0003, [7002, 7000, 7001]),
            (0x0033_01f1_0000_0004, [7002, 7000, 7001]),
            (0x0033_01f1_0000_0005, [7000, 7001, 7002]),
            (0x0033_01f1_0000_0006, [7002, 7001, 7000]),
            (0x0033_01f1_0000_0007, [7001, 7000, 7002]),
            (0x0033_01f1_0000_0008, [7000, 7001, 7002]),
            (0x0033_01f1_0000_0009, [7001, 7002, 7000]),
            (0x0039_33f9_0000_0000, [7002, 7001, 7000]),
        ];
        let nodes = cluster();
        let mut buf = [Vnode::default(); 384];
        assert_eq!(ring_len(&nodes), 384);
        let ring = Ring::new(&nodes, &mut buf).unwrap();
        assert_eq!(ring.zones(), 3);
        assert!(ring.vnodes().windows(2).all(|w| w[0].hash <= w[1].hash));
        for (oid, ports) in PLACED {
            let targets = ring.targets(Oid(oid), 3);
            let got: Vec<u16> = targets
                .as_slice()
                .iter()
                .map(|&i| nodes[usize::from(i)].addr.port())
                .collect();
            assert_eq!(got, ports, "oid {oid:016x}");
            // Fewer copies are a prefix.
            assert_eq!(
                ring.targets(Oid(oid), 2).as_slice(),
                &targets.as_slice()[..2]
            );
            assert_eq!(
                ring.targets(Oid(oid), 1).as_slice(),
                &targets.as_slice()[..1]
            );
        }
    }

    #[test]
    fn fewer_zones_give_fewer_targets() {
        let nodes = [node(7000, 0, 64), node(7001, 1, 64), node(7002, 1, 64)];
        let mut buf = [Vnode::default(); 192];
        let ring = Ring::new(&nodes, &mut buf).unwrap();
        assert_eq!(ring.zones(), 2);
        for i in 0..64 {
            let targets = ring.targets(Oid(0x0033_01f1_0000_0000 | i), 3);
            assert_eq!(targets.len(), 2);
            let zones: Vec<u32> = targets
                .as_slice()
                .iter()
                .map(|&n| nodes[usize::from(n)].zone)
                .collect();
            assert_ne!(zones[0], zones[1]);
        }
    }

    #[test]
    fn copies_are_capped() {
        let nodes: Vec<Node> = (0..40).map(|i| node(7000 + i, u32::from(i), 4)).collect();
        let mut buf = vec![Vnode::default(); ring_len(&nodes)];
        let ring = Ring::new(&nodes, &mut buf).unwrap();
        assert_eq!(ring.zones(), MAX_COPIES);
        assert!(ring.targets(Oid(1), 0).is_empty());
        let targets = ring.targets(Oid(1), 100);
        assert_eq!(targets.len(), MAX_COPIES);
        let mut sorted = targets.as_slice().to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), MAX_COPIES);
    }

    #[test]
    fn no_vnodes_is_an_error() {
        let mut buf = [Vnode::default(); 4];
        assert_eq!(
            Ring::new(&[], &mut buf).unwrap_err(),
            PlacementError::NoVnodes
        );
        let gateways = [node(7000, 0, 0), node(7001, 1, 0)];
        assert_eq!(
            Ring::new(&gateways, &mut buf).unwrap_err(),
            PlacementError::NoVnodes
        );
    }

    #[test]
    fn gateways_hold_nothing() {
        let nodes = [node(7000, 0, 0), node(7001, 1, 16), node(7002, 2, 16)];
        let mut buf = [Vnode::default(); 32];
        let ring = Ring::new(&nodes, &mut buf).unwrap();
        assert_eq!(ring.zones(), 2);
        for i in 0..32 {
            let targets = ring.targets(Oid(i), 3);
            assert_eq!(targets.len(), 2);
            assert!(!targets.as_slice().contains(&0));
        }
    }

    #[test]
    fn small_buffer_is_an_error() {
        let nodes = cluster();
        let mut buf = [Vnode::default(); 383];
        assert_eq!(
            Ring::new(&nodes, &mut buf).unwrap_err(),
            PlacementError::BufferTooSmall { need: 384 }
        );
        // A longer buffer is fine; only its head is used.
        let mut long = [Vnode::default(); 400];
        assert_eq!(Ring::new(&nodes, &mut long).unwrap().vnodes().len(), 384);
    }

    #[test]
    fn too_many_nodes_is_an_error() {
        let nodes = vec![node(7000, 0, 0); MAX_NODES as usize + 1];
        let mut buf = [Vnode::default(); 1];
        assert_eq!(
            Ring::new(&nodes, &mut buf).unwrap_err(),
            PlacementError::TooManyNodes
        );
    }

    #[test]
    fn equal_hashes_are_ordered_by_node() {
        // The same address twice: every vnode collides.
        let nodes = [node(7000, 0, 8), node(7000, 1, 8), node(7001, 2, 8)];
        let mut buf = [Vnode::default(); 24];
        let ring = Ring::new(&nodes, &mut buf).unwrap();
        let v = ring.vnodes();
        assert!(v
            .windows(2)
            .all(|w| (w[0].hash, w[0].node) <= (w[1].hash, w[1].node)));
        for i in 0..16 {
            assert_eq!(ring.targets(Oid(i), 3).len(), 3);
        }
    }

    #[test]
    fn errors_display() {
        let e = PlacementError::BufferTooSmall { need: 384 };
        assert_eq!(std::format!("{e}"), "the vnode buffer must hold 384 vnodes");
        assert_eq!(
            std::format!("{}", PlacementError::NoVnodes),
            "no node has a vnode"
        );
    }
}
