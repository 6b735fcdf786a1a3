//! Replays a simulation recording (SIM_RECORD) against a server over TCP,
//! one request at a time, and reports where its replies differ from the
//! reference server's: a differential check against a real cluster.
//!
//! `replay FILE [HOST:PORT]`

use std::io::{Read, Write};
use std::net::TcpStream;

use sheepdog_core::wire::{Opcode, Request, Response, HEADER_LEN};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: replay FILE [HOST:PORT]");
        std::process::exit(2);
    };
    let addr = args.get(2).map_or("127.0.0.1:7000", String::as_str);
    let data = std::fs::read(path).unwrap_or_else(|e| {
        eprintln!("error: cannot read {path}: {e}");
        std::process::exit(1)
    });
    let mut items = Vec::new();
    let mut at = 0;
    while at + 4 <= data.len() {
        let n = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        items.push(&data[at + 4..at + 4 + n]);
        at += 4 + n;
    }
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| {
        eprintln!("error: cannot connect to {addr}: {e}");
        std::process::exit(1)
    });
    let mut differ = 0;
    for (i, pair) in items.chunks(2).enumerate() {
        let (req_bytes, want) = (pair[0], pair[1]);
        let req = Request::parse_bytes(req_bytes).unwrap();
        s.write_all(req_bytes).unwrap();
        let mut h = [0u8; HEADER_LEN];
        s.read_exact(&mut h).unwrap();
        let got = Response::parse_bytes(&h).unwrap();
        let mut payload = vec![0u8; got.data_length as usize];
        s.read_exact(&mut payload).unwrap();
        let want_rsp = Response::parse_bytes(want).unwrap();
        let want_payload = &want[HEADER_LEN..];
        let inode_read = req.opcode == Opcode::ReadObj
            && req
                .obj()
                .is_some_and(|o| o.oid.0 >> 63 == 1 && o.offset == 0);
        let same_payload = if inode_read && payload.len() >= 528 && want_payload.len() >= 528 {
            payload[..512] == want_payload[..512] && payload[528..] == want_payload[528..]
        } else {
            payload == want_payload
        };
        if got.result != want_rsp.result || got.vdi_id() != want_rsp.vdi_id() || !same_payload {
            differ += 1;
            println!(
                "#{i} {:?} {:?}: real {:?} vid {:?}, reference {:?} vid {:?}, payload {}",
                req.opcode,
                req.obj()
                    .map(|o| (o.oid.to_string(), o.offset, req.data_length)),
                got.result,
                got.vdi_id(),
                want_rsp.result,
                want_rsp.vdi_id(),
                if same_payload { "same" } else { "differs" }
            );
            if differ > 20 {
                break;
            }
        }
    }
    println!("{} requests replayed, {differ} differ", items.len() / 2);
}
