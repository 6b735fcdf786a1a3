//! The reference server over TCP: pipelining with id matching, out-of-order
//! answers, connections that die mid-request, disconnect faults, and the
//! `sheep-ref` binary.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use sheepdog_core::address::{encode_name, encode_name_tag};
use sheepdog_core::hash::vid_hash;
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::wire::{NewVdi, Opcode, Request, Response, ResultCode};
use sheepdog_tests::server::{
    spawn_loopback, Cluster, ClusterConfig, FaultAction, Matcher, NetOptions,
};

/// Encode a request with its payload.
fn frame(req: Request, payload: &[u8]) -> Vec<u8> {
    assert_eq!(req.payload_len() as usize, payload.len());
    let mut out = req.to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Read one response and its payload.
fn read_response(s: &mut TcpStream) -> std::io::Result<(Response, Vec<u8>)> {
    let mut h = [0u8; 48];
    s.read_exact(&mut h)?;
    let rsp = Response::parse_bytes(&h).unwrap();
    let mut payload = vec![0u8; rsp.data_length as usize];
    s.read_exact(&mut payload)?;
    Ok((rsp, payload))
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// NEW_VDI, GET_VDI_INFO, CREATE, WRITE, READ, READ with ids 1..=6, all
/// in one write.
fn pipelined_batch(name: &str) -> (Vec<u8>, Oid) {
    let vid = Vid::new(vid_hash(name.as_bytes())).unwrap();
    let obj = Oid::data(vid, 0);
    let mut n = [0u8; 256];
    encode_name(name.as_bytes(), &mut n);
    let mut nt = [0u8; 512];
    encode_name_tag(name.as_bytes(), b"", &mut nt);
    let new = NewVdi {
        vdi_size: 1 << 30,
        ..NewVdi::default()
    };
    let mut wire = frame(Request::new_vdi(1, new), &n);
    wire.extend(frame(Request::get_vdi_info(2, 0), &nt));
    wire.extend(frame(
        Request::create_and_write(3, obj, None, 0, 5, 0),
        b"hello",
    ));
    wire.extend(frame(Request::write_obj(4, obj, 5, 6, 0), b" world"));
    wire.extend(frame(Request::read_obj(5, obj, 0, 11), &[]));
    wire.extend(frame(Request::read_obj(6, obj, 6, 5), &[]));
    (wire, obj)
}

fn check_batch(by_id: &HashMap<u32, (Response, Vec<u8>)>, name: &str) {
    assert_eq!(by_id.len(), 6);
    for (id, (rsp, _)) in by_id {
        assert_eq!(rsp.result, ResultCode::Success, "id {id}");
        assert_eq!(rsp.epoch, 1);
    }
    assert_eq!(by_id[&1].0.opcode, Opcode::NewVdi);
    assert_eq!(by_id[&1].0.vdi_id(), Some(vid_hash(name.as_bytes())));
    assert_eq!(by_id[&2].0.vdi_id(), Some(vid_hash(name.as_bytes())));
    assert_eq!(by_id[&5].1, b"hello world");
    assert_eq!(by_id[&6].1, b"world");
}

#[test]
fn pipelined_requests_are_answered_in_reverse_when_reordering() {
    let opts = NetOptions {
        reorder_window: Duration::from_millis(300),
        ..NetOptions::reordering()
    };
    let server = spawn_loopback(Cluster::new(ClusterConfig::default()), opts).unwrap();
    let mut s = connect(server.addr);
    let (wire, obj) = pipelined_batch("pipe");
    s.write_all(&wire).unwrap();
    let mut order = Vec::new();
    let mut by_id = HashMap::new();
    for _ in 0..6 {
        let (rsp, payload) = read_response(&mut s).unwrap();
        order.push(rsp.id);
        by_id.insert(rsp.id, (rsp, payload));
    }
    check_batch(&by_id, "pipe");
    assert_eq!(order, vec![6, 5, 4, 3, 2, 1], "answered out of order");
    assert!(server.cluster().object_exists(obj));
}

#[test]
fn pipelined_requests_are_answered_in_order_by_default() {
    let server = spawn_loopback(
        Cluster::new(ClusterConfig::default()),
        NetOptions::default(),
    )
    .unwrap();
    let mut s = connect(server.addr);
    let (wire, _) = pipelined_batch("inorder");
    s.write_all(&wire).unwrap();
    let mut by_id = HashMap::new();
    for expected in 1..=6 {
        let (rsp, payload) = read_response(&mut s).unwrap();
        assert_eq!(rsp.id, expected);
        by_id.insert(rsp.id, (rsp, payload));
    }
    check_batch(&by_id, "inorder");
}

#[test]
fn connections_dying_mid_request_do_not_hurt_the_server() {
    let server = spawn_loopback(
        Cluster::new(ClusterConfig::default()),
        NetOptions::reordering(),
    )
    .unwrap();
    // Half a header.
    let mut s = connect(server.addr);
    s.write_all(&[0x02, 0x14, 0x01]).unwrap();
    drop(s);
    // A header announcing 512 payload bytes, then only 10.
    let mut s = connect(server.addr);
    let mut wire = Request::get_vdi_info(1, 0).to_bytes().to_vec();
    wire.extend_from_slice(&[0u8; 10]);
    s.write_all(&wire).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).unwrap(),
        0,
        "no answer to half a request"
    );
    // A data_length the server will not allocate closes the connection.
    let mut s = connect(server.addr);
    let mut huge = Request::read_obj(9, Oid(1), 0, 0);
    huge.data_length = u32::MAX;
    s.write_all(&huge.to_bytes()).unwrap();
    assert!(read_response(&mut s).is_err());
    // The server still answers.
    let mut s = connect(server.addr);
    s.write_all(&frame(Request::get_cluster_default(7), &[]))
        .unwrap();
    let (rsp, _) = read_response(&mut s).unwrap();
    assert_eq!((rsp.id, rsp.result), (7, ResultCode::Success));
}

#[test]
fn disconnect_faults_and_dropped_connections_close_the_socket() {
    let server = spawn_loopback(
        Cluster::new(ClusterConfig::default()),
        NetOptions::default(),
    )
    .unwrap();
    server.cluster().inject(
        Matcher::opcode(Opcode::GetClusterDefault),
        FaultAction::Disconnect,
        1,
    );
    let mut s = connect(server.addr);
    s.write_all(&frame(Request::get_cluster_default(1), &[]))
        .unwrap();
    assert!(read_response(&mut s).is_err(), "closed without an answer");

    let mut s = connect(server.addr);
    s.write_all(&frame(Request::get_cluster_default(2), &[]))
        .unwrap();
    assert_eq!(read_response(&mut s).unwrap().0.id, 2);
    server.drop_connections();
    let mut byte = [0u8; 1];
    assert!(matches!(s.read(&mut byte), Ok(0) | Err(_)));
}

#[test]
fn sheep_ref_binary_serves_until_killed() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sheep-ref"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--copies",
            "2",
            "--block-size-shift",
            "23",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("sheep-ref listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    let mut s = connect(addr);
    s.write_all(&frame(Request::get_cluster_default(1), &[]))
        .unwrap();
    let reply = read_response(&mut s);
    child.kill().unwrap();
    child.wait().unwrap();
    let (rsp, _) = reply.unwrap();
    assert_eq!(rsp.result, ResultCode::Success);
    assert!(matches!(
        rsp.args,
        sheepdog_core::wire::ResponseArgs::ClusterDefault {
            nr_copies: 2,
            block_size_shift: 23,
            ..
        }
    ));
}

#[test]
fn sheep_ref_rejects_bad_usage_with_exit_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_sheep-ref"))
        .arg("--copies")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one-line error: {err:?}");
}

#[test]
fn a_snapshot_behind_the_clients_back_turns_its_writes_readonly() {
    let server = spawn_loopback(
        Cluster::new(ClusterConfig::default()),
        NetOptions::default(),
    )
    .unwrap();
    let mut s = connect(server.addr);
    let (wire, obj) = pipelined_batch("live");
    s.write_all(&wire).unwrap();
    for _ in 0..6 {
        read_response(&mut s).unwrap();
    }
    let now = sheepdog_tests::server::net::wall_clock();
    let new = server
        .cluster()
        .snapshot_behind_back(now, "live", "backup")
        .unwrap();
    assert_eq!(new, vid_hash(b"live") + 1);
    s.write_all(&frame(Request::write_obj(7, obj, 0, 1, 0), b"!"))
        .unwrap();
    let (rsp, _) = read_response(&mut s).unwrap();
    assert_eq!((rsp.id, rsp.result), (7, ResultCode::Readonly));
}
