//! The reference server as a cluster of nodes over one store: GET_NODE_LIST
//! lists the live ones, a killed node refuses connections and cuts its
//! own, a black-holed one swallows requests, revived nodes answer again,
//! lost objects read as NO_OBJ — and the `sheep-ref` binary's `--nodes`
//! and stdin controls.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::wire::{Request, Response, ResultCode};
use sheepdog_tests::server::{spawn_nodes, Cluster, ClusterConfig, NetOptions, ServerHandle};

/// Encode a request with its payload.
fn frame(req: Request, payload: &[u8]) -> Vec<u8> {
    assert_eq!(req.payload_len() as usize, payload.len());
    let mut out = req.to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Read one response: header, its raw bytes, and payload.
fn read_response(s: &mut TcpStream) -> io::Result<(Response, [u8; 48], Vec<u8>)> {
    let mut h = [0u8; 48];
    s.read_exact(&mut h)?;
    let rsp = Response::parse_bytes(&h).unwrap();
    let mut payload = vec![0u8; rsp.data_length as usize];
    s.read_exact(&mut payload)?;
    Ok((rsp, h, payload))
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Send one request, read its answer.
fn call(s: &mut TcpStream, req: Request, payload: &[u8]) -> (Response, [u8; 48], Vec<u8>) {
    let id = req.id;
    s.write_all(&frame(req, payload)).unwrap();
    let answer = read_response(s).unwrap();
    assert_eq!(answer.0.id, id);
    answer
}

/// A node as GET_NODE_LIST reports it.
#[derive(Debug, PartialEq, Eq)]
struct Listed {
    addr: SocketAddr,
    nr_vnodes: u16,
    zone: u32,
}

/// GET_NODE_LIST through `addr`: the epoch and the nodes.
fn node_list(addr: SocketAddr) -> (u32, Vec<Listed>) {
    let mut s = connect(addr);
    let (rsp, raw, payload) = call(&mut s, Request::get_node_list(1, 80 * 64), &[]);
    assert_eq!(rsp.result, ResultCode::Success);
    let nr_nodes = u32::from_le_bytes(raw[20..24].try_into().unwrap()) as usize;
    assert_eq!(rsp.data_length as usize, nr_nodes * 80);
    let nodes = payload
        .chunks_exact(80)
        .map(|e| {
            assert!(e[..24].iter().all(|&b| b != 0), "junk, not zeros: {e:?}");
            assert_eq!(&e[24..36], &[0u8; 12], "an IPv4 address");
            let ip: [u8; 4] = e[36..40].try_into().unwrap();
            let port = u16::from_le_bytes([e[40], e[41]]);
            Listed {
                addr: SocketAddr::from((ip, port)),
                nr_vnodes: u16::from_le_bytes([e[64], e[65]]),
                zone: u32::from_le_bytes(e[68..72].try_into().unwrap()),
            }
        })
        .collect();
    (rsp.epoch, nodes)
}

fn three_nodes() -> ServerHandle {
    spawn_nodes(
        Cluster::new(ClusterConfig::default()),
        3,
        NetOptions::default(),
    )
    .unwrap()
}

fn listed(h: &ServerHandle, nodes: &[usize]) -> Vec<Listed> {
    let addrs = h.addrs();
    (nodes.iter())
        .map(|&i| Listed {
            addr: addrs[i],
            nr_vnodes: 128,
            zone: i as u32,
        })
        .collect()
}

/// A data object of some VDI, with its 5 bytes written through `s`.
fn create(s: &mut TcpStream, id: u32, obj: Oid) -> (Response, [u8; 48], Vec<u8>) {
    call(
        s,
        Request::create_and_write(id, obj, None, 0, 5, 0),
        b"hello",
    )
}

fn data_oid(n: u32) -> Oid {
    Oid::data(Vid::new(0x00ab_cdef).unwrap(), n)
}

/// Whether a request on `s` goes unanswered for 300 ms.
fn unanswered(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let silent = matches!(
        s.read(&mut byte),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
    );
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    silent
}

#[test]
fn the_node_list_has_every_node_with_its_own_port() {
    let h = three_nodes();
    let addrs = h.addrs();
    assert_eq!(h.node_count(), 3);
    assert_eq!(addrs.len(), 3);
    assert_eq!(h.addr, addrs[0]);
    assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    assert!(addrs[0].port() != addrs[1].port() && addrs[1].port() != addrs[2].port());
    for a in &addrs {
        let (epoch, nodes) = node_list(*a);
        assert_eq!(epoch, 1);
        assert_eq!(nodes, listed(&h, &[0, 1, 2]), "via {a}");
    }
}

#[test]
fn a_killed_node_refuses_connections_cuts_its_own_and_leaves_the_list() {
    let h = three_nodes();
    let addrs = h.addrs();
    let mut on_1 = connect(addrs[1]);
    let mut on_0 = connect(addrs[0]);
    call(&mut on_1, Request::get_cluster_default(1), &[]);
    call(&mut on_0, Request::get_cluster_default(1), &[]);
    assert_eq!(h.connection_count(), 2);

    h.kill(1);
    let err = TcpStream::connect(addrs[1]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    let mut byte = [0u8; 1];
    assert!(
        matches!(on_1.read(&mut byte), Ok(0) | Err(_)),
        "node 1's connection was cut"
    );
    // Node 0's connection is untouched.
    call(&mut on_0, Request::get_cluster_default(2), &[]);
    let (epoch, nodes) = node_list(addrs[0]);
    assert_eq!(epoch, 2);
    assert_eq!(nodes, listed(&h, &[0, 2]));
    assert_eq!(h.cluster().config().epoch, 2);
    h.kill(1);
    assert_eq!(node_list(addrs[2]).0, 2, "killing it again changes nothing");

    h.revive(1);
    let mut again = connect(addrs[1]);
    let (rsp, _, _) = call(&mut again, Request::get_cluster_default(3), &[]);
    assert_eq!((rsp.result, rsp.epoch), (ResultCode::Success, 3));
    assert_eq!(node_list(addrs[1]), (3, listed(&h, &[0, 1, 2])));
}

#[test]
fn a_blackholed_node_swallows_requests_until_revived() {
    let h = three_nodes();
    let addrs = h.addrs();
    let mut old = connect(addrs[2]);
    call(&mut old, Request::get_cluster_default(1), &[]);
    let served = h.requests_served(2);

    h.blackhole(2);
    let obj = data_oid(7);
    let mut new = connect(addrs[2]);
    new.write_all(&frame(
        Request::create_and_write(2, obj, None, 0, 5, 0),
        b"hello",
    ))
    .unwrap();
    assert!(unanswered(&mut new), "no answer on a new connection");
    old.write_all(&frame(Request::get_cluster_default(3), &[]))
        .unwrap();
    assert!(unanswered(&mut old), "no answer on an old connection");
    assert_eq!(h.requests_served(2), served);
    // Not applied, and the node is still listed, at the same epoch.
    let mut on_0 = connect(addrs[0]);
    let (rsp, _, _) = call(&mut on_0, Request::read_obj(4, obj, 0, 5), &[]);
    assert_eq!(rsp.result, ResultCode::NoObj);
    assert!(!h.cluster().object_exists(obj));
    assert_eq!(node_list(addrs[0]), (1, listed(&h, &[0, 1, 2])));

    h.revive(2);
    // What was swallowed stays unanswered; what comes next is answered.
    let (rsp, _, _) = call(&mut old, Request::get_cluster_default(5), &[]);
    assert_eq!((rsp.result, rsp.epoch), (ResultCode::Success, 1));
    let (rsp, _, _) = create(&mut new, 6, obj);
    assert_eq!(rsp.result, ResultCode::Success);
    let (rsp, _, data) = call(&mut on_0, Request::read_obj(7, obj, 0, 5), &[]);
    assert_eq!(
        (rsp.result, &data[..]),
        (ResultCode::Success, &b"hello"[..])
    );
    assert_eq!(h.requests_served(2), served + 2);
}

#[test]
fn a_lost_object_reads_as_no_obj_on_every_node() {
    let h = three_nodes();
    let addrs = h.addrs();
    let obj = data_oid(1);
    let mut on_1 = connect(addrs[1]);
    assert_eq!(create(&mut on_1, 1, obj).0.result, ResultCode::Success);
    let mut on_2 = connect(addrs[2]);
    let (rsp, _, data) = call(&mut on_2, Request::read_obj(2, obj, 0, 5), &[]);
    assert_eq!(
        (rsp.result, &data[..]),
        (ResultCode::Success, &b"hello"[..])
    );

    assert!(h.cluster().lose_object(obj));
    assert!(!h.cluster().lose_object(obj), "already gone");
    assert!(!h.cluster().lose_object(data_oid(2)), "never was");
    for a in &addrs {
        let mut s = connect(*a);
        let (rsp, _, data) = call(&mut s, Request::read_obj(3, obj, 0, 5), &[]);
        assert_eq!(rsp.result, ResultCode::NoObj, "via {a}");
        assert!(data.is_empty());
    }
}

#[test]
fn requests_are_counted_per_node() {
    let h = three_nodes();
    let addrs = h.addrs();
    let mut on_0 = connect(addrs[0]);
    let mut on_2 = connect(addrs[2]);
    for id in 0..3 {
        call(&mut on_0, Request::get_cluster_default(id), &[]);
    }
    call(&mut on_2, Request::get_cluster_default(9), &[]);
    let counts: Vec<u64> = (0..3).map(|i| h.requests_served(i)).collect();
    assert_eq!(counts, vec![3, 0, 1]);
    // A killed and revived node keeps its count.
    h.kill(2);
    h.revive(2);
    let mut on_2 = connect(addrs[2]);
    call(&mut on_2, Request::get_cluster_default(10), &[]);
    assert_eq!(h.requests_served(2), 2);
}

#[test]
fn one_node_spawns_as_before() {
    let h = spawn_nodes(
        Cluster::new(ClusterConfig::default()),
        0,
        NetOptions::default(),
    )
    .unwrap();
    assert_eq!(h.node_count(), 1, "at least one node");
    assert_eq!(h.addrs(), vec![h.addr]);
    assert_eq!(node_list(h.addr), (1, listed(&h, &[0])));
}

/// A child process killed when dropped, also when a test fails.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next line `sheep-ref` printed, trimmed.
fn next_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.trim().to_owned()
}

#[test]
fn sheep_ref_serves_nodes_controlled_from_stdin() {
    let mut child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_sheep-ref"))
            .args(["--listen", "127.0.0.1:0", "--nodes", "2"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let addrs: Vec<SocketAddr> = (0..2)
        .map(|_| {
            let l = next_line(&mut out);
            (l.strip_prefix("sheep-ref listening on "))
                .unwrap_or_else(|| panic!("unexpected line {l:?}"))
                .parse()
                .unwrap()
        })
        .collect();
    assert_ne!(addrs[0], addrs[1]);
    let (epoch, nodes) = node_list(addrs[1]);
    assert_eq!(nodes.iter().map(|n| n.addr).collect::<Vec<_>>(), addrs);

    stdin.write_all(b"kill 1\n").unwrap();
    assert_eq!(next_line(&mut out), "ok");
    let err = TcpStream::connect(addrs[1]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    stdin
        .write_all(b"kill 7\nlose 0x00abcdef00000001\nfrobnicate\n")
        .unwrap();
    for _ in 0..3 {
        let l = next_line(&mut out);
        assert!(l.starts_with("error: "), "{l:?}");
    }
    // The end of stdin ends the controls, not the server.
    drop(stdin);
    std::thread::sleep(Duration::from_millis(50));
    let (after, nodes) = node_list(addrs[0]);
    assert_eq!(after, epoch + 1);
    assert_eq!(
        nodes.iter().map(|n| n.addr).collect::<Vec<_>>(),
        vec![addrs[0]]
    );
}
