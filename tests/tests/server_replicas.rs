//! The reference server's per-node copies over TCP, as `dog vdi check`
//! and orphan hunting see them: GET_HASH and READ_PEER on each node answer
//! about that node's own copy, a copy removed, corrupted or added on one
//! node shows on that node only, REPAIR_REPLICA and CREATE_AND_WRITE_PEER
//! put copies back, strips of an erasure-coded object are the code's, and
//! GET_OBJ_LIST and REMOVE_PEER work per node.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sha1::{Digest, Sha1};
use sheepdog_core::erasure::Code;
use sheepdog_core::inode::INODE_OBJECT_LEN;
use sheepdog_core::nodes::Node;
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::placement::{ring_len, Ring, Vnode};
use sheepdog_core::wire::{NewVdi, Request, Response, ResultCode};
use sheepdog_tests::server::{spawn_nodes, Cluster, ClusterConfig, NetOptions, ServerHandle};

/// A data object's size (the default object size shift, 22).
const OBJECT: usize = 4 << 20;

/// Send one request with its payload on a connection of its own; the
/// response header and payload.
fn call(addr: SocketAddr, req: Request, payload: &[u8]) -> (Response, Vec<u8>) {
    assert_eq!(req.payload_len() as usize, payload.len());
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = req.to_bytes().to_vec();
    out.extend_from_slice(payload);
    s.write_all(&out).unwrap();
    let mut h = [0u8; 48];
    s.read_exact(&mut h).unwrap();
    let rsp = Response::parse_bytes(&h).unwrap();
    assert_eq!(rsp.id, req.id);
    let mut data = vec![0u8; rsp.data_length as usize];
    s.read_exact(&mut data).unwrap();
    (rsp, data)
}

/// `n` nodes in zones 0..n over one fresh cluster with `copies` copies.
fn nodes(n: usize, copies: u8) -> ServerHandle {
    let config = ClusterConfig::default().with_copies(copies);
    spawn_nodes(Cluster::new(config), n, NetOptions::default()).unwrap()
}

/// NEW_VDI `name` through node 0: its VID.
fn new_vdi(h: &ServerHandle, name: &str, copies: u8, copy_policy: u8) -> u32 {
    let req = Request::new_vdi(
        1,
        NewVdi {
            vdi_size: 64 << 20,
            copies,
            copy_policy,
            ..NewVdi::default()
        },
    );
    let mut payload = [0u8; 256];
    payload[..name.len()].copy_from_slice(name.as_bytes());
    let (rsp, _) = call(h.addr, req, &payload);
    assert_eq!(rsp.result, ResultCode::Success);
    rsp.vdi_id().unwrap()
}

/// Some bytes that are not all alike.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Data object 0 of `vid` with `data` at `offset`, created through the
/// gateway (node 0); the whole object as every copy should hold it.
fn write_object(h: &ServerHandle, vid: u32, offset: usize, data: &[u8]) -> (Oid, Vec<u8>) {
    let oid = Oid::data(Vid::new(vid).unwrap(), 0);
    let req = Request::create_and_write(2, oid, None, offset as u32, data.len() as u32, 0);
    let (rsp, _) = call(h.addr, req, data);
    assert_eq!(rsp.result, ResultCode::Success);
    let mut object = vec![0u8; OBJECT];
    object[offset..offset + data.len()].copy_from_slice(data);
    (oid, object)
}

fn sha1(bytes: &[u8]) -> [u8; 20] {
    Sha1::digest(bytes).into()
}

/// GET_HASH of `oid` on the node at `addr`: the digest, or the refusal.
fn hash_on(addr: SocketAddr, oid: Oid, epoch: u32) -> Result<[u8; 20], ResultCode> {
    let (rsp, data) = call(addr, Request::get_hash(3, oid, epoch), &[]);
    assert_eq!(rsp.data_length, 0);
    assert!(data.is_empty());
    match rsp.result {
        ResultCode::Success => Ok(rsp.digest().unwrap()),
        r => Err(r),
    }
}

/// READ_PEER of `len` bytes of strip `ec` of `oid` on the node at `addr`.
fn read_peer(
    addr: SocketAddr,
    oid: Oid,
    ec: u8,
    len: usize,
    epoch: u32,
) -> Result<Vec<u8>, ResultCode> {
    let (rsp, data) = call(addr, Request::read_peer(4, oid, ec, len as u32, epoch), &[]);
    match rsp.result {
        ResultCode::Success => {
            assert_eq!(data.len(), len);
            Ok(data)
        }
        r => Err(r),
    }
}

/// GET_OBJ_LIST on the node at `addr`.
fn obj_list(addr: SocketAddr) -> Vec<Oid> {
    let (rsp, data) = call(addr, Request::get_obj_list(5, 1 << 20), &[]);
    assert_eq!(rsp.result, ResultCode::Success);
    data.chunks_exact(8)
        .map(|c| Oid(u64::from_le_bytes(c.try_into().unwrap())))
        .collect()
}

/// A gateway READ_OBJ of the first `len` bytes of `oid`.
fn gateway_read(h: &ServerHandle, oid: Oid, len: usize) -> Result<Vec<u8>, ResultCode> {
    let (rsp, data) = call(h.addr, Request::read_obj(6, oid, 0, len as u32), &[]);
    match rsp.result {
        ResultCode::Success => Ok(data),
        r => Err(r),
    }
}

fn epoch(h: &ServerHandle) -> u32 {
    h.cluster().config().epoch
}

#[test]
fn every_target_hashes_its_copy_as_the_whole_padded_object() {
    let h = nodes(3, 3);
    let addrs = h.addrs();
    let vid = new_vdi(&h, "alpha", 3, 0);
    let (oid, object) = write_object(&h, vid, 4096, &pattern(10_000, 1));
    let e = epoch(&h);
    let mut targets = h.cluster().targets(oid);
    targets.sort_unstable();
    assert_eq!(targets, [0, 1, 2], "3 copies in 3 zones: every node");
    let want = sha1(&object);
    for a in &addrs {
        assert_eq!(hash_on(*a, oid, e), Ok(want), "on {a}");
        assert_eq!(read_peer(*a, oid, 0, OBJECT, e).as_deref(), Ok(&object[..]));
    }
    // The inode too: 12,587,576 bytes, zeros where never written.
    let inode = Oid::inode(Vid::new(vid).unwrap());
    let whole = gateway_read(&h, inode, INODE_OBJECT_LEN as usize).unwrap();
    for a in &addrs {
        assert_eq!(hash_on(*a, inode, e), Ok(sha1(&whole)));
    }
    assert_eq!(h.cluster().copy_of(1, oid, 0), Some(object));
}

#[test]
fn copies_go_where_placement_puts_them_and_nowhere_else() {
    // Four nodes, two copies: two nodes hold each object, as core's ring
    // over the node list says.
    let h = nodes(4, 2);
    let addrs = h.addrs();
    let vid = new_vdi(&h, "beta", 2, 0);
    let (oid, object) = write_object(&h, vid, 0, b"placed");
    let ring_nodes: Vec<Node> = (addrs.iter().enumerate())
        .map(|(i, a)| Node {
            addr: *a,
            zone: i as u32,
            nr_vnodes: 128,
        })
        .collect();
    let mut buf = vec![Vnode::default(); ring_len(&ring_nodes)];
    let ring = Ring::new(&ring_nodes, &mut buf).unwrap();
    let want: Vec<usize> = (ring.targets(oid, 2).as_slice().iter())
        .map(|&i| usize::from(i))
        .collect();
    assert_eq!(h.cluster().targets(oid), want);
    assert_eq!(h.cluster().holder(oid, 1), Some(want[1]));
    let e = epoch(&h);
    for (i, a) in addrs.iter().enumerate() {
        let got = hash_on(*a, oid, e);
        if want.contains(&i) {
            assert_eq!(got, Ok(sha1(&object)), "target {i}");
            assert!(obj_list(*a).contains(&oid));
        } else {
            assert_eq!(got, Err(ResultCode::NoObj), "not a target: {i}");
            assert!(!obj_list(*a).contains(&oid));
        }
    }
    // A stray copy on a node that is no target: that node lists and
    // hashes it, the gateway and the targets are untouched, and
    // REMOVE_PEER there takes it away.
    let stray = (0..4).find(|i| !want.contains(i)).unwrap();
    h.cluster().add_copy(stray, oid, 0, b"stale");
    let mut stale = vec![0u8; OBJECT];
    stale[..5].copy_from_slice(b"stale");
    assert_eq!(hash_on(addrs[stray], oid, e), Ok(sha1(&stale)));
    assert!(obj_list(addrs[stray]).contains(&oid));
    assert_eq!(gateway_read(&h, oid, 6).unwrap(), b"placed");
    let mut holders = vec![(want[0], 0), (want[1], 0), (stray, 0)];
    holders.sort_unstable();
    assert_eq!(h.cluster().holders(oid), holders);
    let (rsp, _) = call(addrs[stray], Request::remove_peer(1, oid, 0, e), &[]);
    assert_eq!(rsp.result, ResultCode::Success);
    assert_eq!(hash_on(addrs[stray], oid, e), Err(ResultCode::NoObj));
    assert_eq!(hash_on(addrs[want[0]], oid, e), Ok(sha1(&object)));
}

#[test]
fn a_removed_copy_is_missing_on_that_node_only() {
    let h = nodes(3, 3);
    let addrs = h.addrs();
    let vid = new_vdi(&h, "gamma", 3, 0);
    let (oid, object) = write_object(&h, vid, 0, &pattern(512, 2));
    let e = epoch(&h);
    assert!(h.cluster().remove_copy(1, oid, 0));
    assert!(
        !h.cluster().remove_copy(1, oid, 0),
        "nothing left to remove"
    );
    assert_eq!(hash_on(addrs[1], oid, e), Err(ResultCode::NoObj));
    assert_eq!(read_peer(addrs[1], oid, 0, 512, e), Err(ResultCode::NoObj));
    assert_eq!(hash_on(addrs[0], oid, e), Ok(sha1(&object)));
    assert_eq!(hash_on(addrs[2], oid, e), Ok(sha1(&object)));
    assert_eq!(h.cluster().holders(oid), [(0, 0), (2, 0)]);
    // The gateway still has it.
    assert_eq!(gateway_read(&h, oid, 512).unwrap(), object[..512]);
}

#[test]
fn a_corrupt_copy_hashes_differently_until_repaired_from_a_good_one() {
    let h = nodes(3, 3);
    let addrs = h.addrs();
    let vid = new_vdi(&h, "delta", 3, 0);
    let (oid, object) = write_object(&h, vid, 100, &pattern(3000, 3));
    let e = epoch(&h);
    let good = sha1(&object);
    assert!(h.cluster().corrupt_copy(2, oid, 0));
    let bad = hash_on(addrs[2], oid, e).unwrap();
    assert_ne!(bad, good);
    assert_eq!(hash_on(addrs[0], oid, e), Ok(good));
    assert_eq!(hash_on(addrs[1], oid, e), Ok(good));
    assert_eq!(
        gateway_read(&h, oid, OBJECT).unwrap(),
        object,
        "gateway untouched"
    );

    let (rsp, _) = call(addrs[2], Request::repair_replica(7, oid, e, addrs[0]), &[]);
    assert_eq!(rsp.result, ResultCode::Success);
    assert_eq!(hash_on(addrs[2], oid, e), Ok(good));
    assert_eq!(h.cluster().copy_of(2, oid, 0), Some(object.clone()));

    // A missing copy is repaired alike.
    assert!(h.cluster().remove_copy(0, oid, 0));
    let (rsp, _) = call(addrs[0], Request::repair_replica(8, oid, e, addrs[1]), &[]);
    assert_eq!(rsp.result, ResultCode::Success);
    assert_eq!(hash_on(addrs[0], oid, e), Ok(good));
    // From a node that has none, the source's NO_OBJ is the answer.
    assert!(h.cluster().remove_copy(1, oid, 0));
    let (rsp, _) = call(addrs[0], Request::repair_replica(9, oid, e, addrs[1]), &[]);
    assert_eq!(rsp.result, ResultCode::NoObj);
    assert_eq!(hash_on(addrs[0], oid, e), Ok(good), "left as it was");
}

#[test]
fn peer_requests_at_another_epoch_are_refused() {
    let h = nodes(3, 3);
    let addrs = h.addrs();
    let vid = new_vdi(&h, "epsilon", 3, 0);
    let (oid, object) = write_object(&h, vid, 0, b"epoch");
    h.cluster().bump_epoch();
    let e = epoch(&h);
    assert_eq!(e, 2);
    assert_eq!(
        read_peer(addrs[0], oid, 0, 5, e - 1),
        Err(ResultCode::OldNodeVer)
    );
    assert_eq!(
        read_peer(addrs[0], oid, 0, 5, e + 1),
        Err(ResultCode::NewNodeVer)
    );
    assert_eq!(read_peer(addrs[0], oid, 0, 5, e).unwrap(), b"epoch");
    let (rsp, _) = call(addrs[1], Request::remove_peer(1, oid, 0, e - 1), &[]);
    assert_eq!((rsp.result, rsp.epoch), (ResultCode::OldNodeVer, e));
    let (rsp, _) = call(
        addrs[1],
        Request::create_and_write_peer(1, oid, 0, 3, e - 1),
        b"old",
    );
    assert_eq!(rsp.result, ResultCode::OldNodeVer);
    assert_eq!(
        h.cluster().copy_of(1, oid, 0),
        Some(object.clone()),
        "untouched"
    );
    // GET_HASH is a local op: no epoch check.
    assert_eq!(hash_on(addrs[0], oid, e - 1), Ok(sha1(&object)));
    // REPAIR_REPLICA reads at its epoch: the source refuses a stale one.
    let (rsp, _) = call(
        addrs[2],
        Request::repair_replica(2, oid, e - 1, addrs[0]),
        &[],
    );
    assert_eq!(rsp.result, ResultCode::OldNodeVer);
    // And a source that is not a node cannot be reached.
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (rsp, _) = call(addrs[2], Request::repair_replica(3, oid, e, nowhere), &[]);
    assert_eq!(rsp.result, ResultCode::NetworkError);
}

#[test]
fn write_peer_changes_one_copy_and_needs_one() {
    let h = nodes(3, 3);
    let addrs = h.addrs();
    let vid = new_vdi(&h, "zeta", 3, 0);
    let (oid, mut object) = write_object(&h, vid, 0, b"0123456789");
    let e = epoch(&h);
    let (rsp, _) = call(addrs[1], Request::write_peer(1, oid, 0, 2, 3, e), b"abc");
    assert_eq!(rsp.result, ResultCode::Success);
    object[2..5].copy_from_slice(b"abc");
    assert_eq!(hash_on(addrs[1], oid, e), Ok(sha1(&object)));
    assert_ne!(hash_on(addrs[0], oid, e), Ok(sha1(&object)));
    assert_eq!(gateway_read(&h, oid, 10).unwrap(), b"0123456789");
    // A gateway write reaches every copy, the odd one too.
    let (rsp, _) = call(h.addr, Request::write_obj(2, oid, 0, 5, 0), b"ABCDE");
    assert_eq!(rsp.result, ResultCode::Success);
    object[..5].copy_from_slice(b"ABCDE");
    for a in &addrs {
        assert_eq!(hash_on(*a, oid, e), Ok(sha1(&object)), "on {a}");
    }
    assert!(h.cluster().remove_copy(2, oid, 0));
    let (rsp, _) = call(addrs[2], Request::write_peer(3, oid, 0, 0, 1, e), b"x");
    assert_eq!(rsp.result, ResultCode::NoObj);
    // A gateway create replaces every target's copy: the lost one is back.
    let (rsp, _) = call(
        h.addr,
        Request::create_and_write(4, oid, None, 0, 2, 0),
        b"hi",
    );
    assert_eq!(rsp.result, ResultCode::Success);
    let mut fresh = vec![0u8; OBJECT];
    fresh[..2].copy_from_slice(b"hi");
    for a in &addrs {
        assert_eq!(hash_on(*a, oid, e), Ok(sha1(&fresh)), "on {a}");
    }
}

#[test]
fn erasure_coded_strips_are_the_codes_and_a_lost_one_is_rebuilt() {
    // 2:1 (copy policy 0x11): strips 0 and 1 are data, 2 is parity.
    let h = nodes(3, 3);
    let addrs = h.addrs();
    let vid = new_vdi(&h, "eta", 3, 0x11);
    let (oid, object) = write_object(&h, vid, 0, &pattern(OBJECT, 4));
    let e = epoch(&h);
    let code = Code::from_policy(0x11).unwrap();
    let strip_len = code.strip_len(OBJECT);
    assert_eq!(h.cluster().copy_len(oid), strip_len);
    let holders = h.cluster().targets(oid);
    assert_eq!(holders.len(), 3);
    let strips: Vec<Vec<u8>> = (0..3u8)
        .map(|k| read_peer(addrs[holders[usize::from(k)]], oid, k, strip_len, e).unwrap())
        .collect();
    let mut joined = vec![0u8; OBJECT];
    code.join(&[&strips[0], &strips[1]], &mut joined).unwrap();
    assert_eq!(joined, object);
    let mut parity = vec![0u8; strip_len];
    code.strip(&object, 2, &mut parity).unwrap();
    assert_eq!(strips[2], parity);
    // A node holds only its own strip.
    assert_eq!(
        read_peer(addrs[holders[0]], oid, 1, 512, e),
        Err(ResultCode::NoObj)
    );
    // sheep 1.0 hashes no strip: GET_HASH of an erasure-coded object is
    // NO_OBJ on every node.
    assert_eq!(hash_on(addrs[holders[0]], oid, e), Err(ResultCode::NoObj));

    // Strip 1 lost, rebuilt from 0 and 2, written back.
    assert!(h.cluster().remove_copy(holders[1], oid, 1));
    assert_eq!(
        read_peer(addrs[holders[1]], oid, 1, strip_len, e),
        Err(ResultCode::NoObj)
    );
    let mut rebuilt = vec![0u8; strip_len];
    code.rebuild(&[(0, &strips[0]), (2, &strips[2])], 1, &mut rebuilt)
        .unwrap();
    assert_eq!(rebuilt, strips[1]);
    let req = Request::create_and_write_peer(9, oid, 1, strip_len as u32, e);
    let (rsp, _) = call(addrs[holders[1]], req, &rebuilt);
    assert_eq!(rsp.result, ResultCode::Success);
    assert_eq!(
        read_peer(addrs[holders[1]], oid, 1, strip_len, e),
        Ok(strips[1].clone())
    );
    assert_eq!(h.cluster().holders(oid), {
        let mut all: Vec<(usize, u8)> = (0..3u8).map(|k| (holders[usize::from(k)], k)).collect();
        all.sort_unstable();
        all
    });
    assert_eq!(gateway_read(&h, oid, OBJECT).unwrap(), object);
}

#[test]
fn object_lists_follow_removed_and_added_copies() {
    let h = nodes(3, 3);
    let addrs = h.addrs();
    let vid = new_vdi(&h, "theta", 3, 0);
    let (oid, _) = write_object(&h, vid, 0, b"listed");
    let inode = Oid::inode(Vid::new(vid).unwrap());
    for a in &addrs {
        assert_eq!(obj_list(*a), [oid, inode], "on {a}");
    }
    assert!(h.cluster().remove_copy(0, oid, 0));
    assert_eq!(obj_list(addrs[0]), [inode]);
    assert_eq!(obj_list(addrs[1]), [oid, inode]);

    // An orphan: a copy on node 1 only of an object no VDI has.
    let orphan = Oid::data(Vid::new(0x00ab_cdef).unwrap(), 5);
    h.cluster().add_copy(1, orphan, 0, b"stray");
    let mut with_orphan = vec![orphan, oid, inode];
    with_orphan.sort_unstable();
    assert_eq!(obj_list(addrs[1]), with_orphan, "ascending");
    assert_eq!(obj_list(addrs[2]), [oid, inode]);
    assert_eq!(obj_list(addrs[0]), [inode]);
    let e = epoch(&h);
    let got = read_peer(addrs[1], orphan, 0, 5, e).unwrap();
    assert_eq!(got, b"stray");
    assert_eq!(hash_on(addrs[2], orphan, e), Err(ResultCode::NoObj));
    // Node 1 is one of its targets: the gateway reads it there.
    assert_eq!(gateway_read(&h, orphan, 5).unwrap(), b"stray");
    let (rsp, _) = call(addrs[1], Request::remove_peer(1, orphan, 0, e), &[]);
    assert_eq!(rsp.result, ResultCode::Success);
    assert_eq!(obj_list(addrs[1]), [oid, inode]);
    assert_eq!(gateway_read(&h, orphan, 5), Err(ResultCode::NoObj));
    let (rsp, _) = call(addrs[1], Request::remove_peer(2, orphan, 0, e), &[]);
    assert_eq!(rsp.result, ResultCode::NoObj);
}

#[test]
fn removing_every_copy_removes_the_object_from_the_gateway() {
    let h = nodes(3, 3);
    let addrs = h.addrs();
    let vid = new_vdi(&h, "iota", 3, 0);
    let (oid, object) = write_object(&h, vid, 0, b"doomed");
    let e = epoch(&h);
    for (i, a) in addrs.iter().enumerate() {
        assert_eq!(gateway_read(&h, oid, 6).unwrap(), object[..6], "before {i}");
        let (rsp, _) = call(*a, Request::remove_peer(1, oid, 0, e), &[]);
        assert_eq!(rsp.result, ResultCode::Success, "on {a}");
    }
    assert_eq!(gateway_read(&h, oid, 6), Err(ResultCode::NoObj));
    assert!(!h.cluster().object_exists(oid));
    assert!(h.cluster().holders(oid).is_empty());
    for a in &addrs {
        assert!(!obj_list(*a).contains(&oid));
        let (rsp, _) = call(*a, Request::remove_peer(2, oid, 0, e), &[]);
        assert_eq!(rsp.result, ResultCode::NoObj);
    }
    // A copy put back on a target gives the gateway the object again.
    let target = h.cluster().holder(oid, 0).unwrap();
    let req = Request::create_and_write_peer(3, oid, 0, 6, e);
    let (rsp, _) = call(addrs[target], req, b"reborn");
    assert_eq!(rsp.result, ResultCode::Success);
    assert_eq!(gateway_read(&h, oid, 6).unwrap(), b"reborn");
    assert_eq!(h.cluster().holders(oid), [(target, 0)]);
}

#[test]
fn a_gateway_remove_takes_every_targets_copy_the_odd_ones_too() {
    let h = nodes(3, 3);
    let addrs = h.addrs();
    let vid = new_vdi(&h, "kappa", 3, 0);
    let (oid, _) = write_object(&h, vid, 0, b"gone soon");
    let e = epoch(&h);
    assert!(h.cluster().corrupt_copy(1, oid, 0));
    assert!(h.cluster().remove_copy(2, oid, 0));
    let (rsp, _) = call(h.addr, Request::remove_obj(1, oid, 0), &[]);
    assert_eq!(rsp.result, ResultCode::Success);
    for a in &addrs {
        assert_eq!(hash_on(*a, oid, e), Err(ResultCode::NoObj), "on {a}");
    }
    assert!(h.cluster().holders(oid).is_empty());
    assert_eq!(h.cluster().copy_of(1, oid, 0), None);
}

#[test]
fn repair_from_a_killed_node_cannot_connect() {
    let h = nodes(3, 3);
    let addrs = h.addrs();
    let vid = new_vdi(&h, "lambda", 3, 0);
    let (oid, object) = write_object(&h, vid, 0, b"repair me");
    assert!(h.cluster().remove_copy(2, oid, 0));
    h.kill(0);
    let e = epoch(&h);
    let (rsp, _) = call(addrs[2], Request::repair_replica(1, oid, e, addrs[0]), &[]);
    assert_eq!(rsp.result, ResultCode::NetworkError);
    // Two zones left: two copies, on nodes 1 and 2; node 2's is still lost.
    assert_eq!(hash_on(addrs[2], oid, e), Err(ResultCode::NoObj));
    let (rsp, _) = call(addrs[2], Request::repair_replica(2, oid, e, addrs[1]), &[]);
    assert_eq!(rsp.result, ResultCode::Success);
    assert_eq!(hash_on(addrs[2], oid, e), Ok(sha1(&object)));
}
