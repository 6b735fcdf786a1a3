//! Fills an empty hyper volume's B-tree with `COUNT` entries from index
//! `FROM` on, naming objects of the volume that are not written, through
//! `core::btree::commit`: a tree of depth 2 in seconds, where writing
//! 524,288 objects would take a cluster terabytes. For checking, against
//! a real cluster, how dog reads trees the commit lays out and how dog's
//! own inserts and root split work on them (PROTOCOL.md §7.5). Reads of
//! the named objects fail (no object), so the checks read elsewhere.
//!
//! `hyper-fill HOST:PORT VID_HEX FROM COUNT`

use std::io::{Read, Write};
use std::net::TcpStream;

use sheepdog_core::btree::commit::{Buffer, Commit, LEAF_BUF_LEN, ROOT_BUF_LEN};
use sheepdog_core::inode::{InodeHeader, HEADER_LEN};
use sheepdog_core::object_op::{ObjectKind, ObjectOp};
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::receive::{Receive, Replies};
use sheepdog_core::reply::Exchange;
use sheepdog_core::wire;

fn fail(msg: String) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}

/// One request and its reply on `s`.
fn run<B: AsRef<[u8]> + AsMut<[u8]>>(s: &mut TcpStream, op: &mut Exchange<B, ObjectOp>) {
    s.write_all(&op.poll_transmit().unwrap())
        .and_then(|()| s.write_all(op.payload()))
        .unwrap_or_else(|e| fail(format!("send: {e}")));
    let mut h = [0u8; wire::HEADER_LEN];
    s.read_exact(&mut h)
        .unwrap_or_else(|e| fail(format!("receive: {e}")));
    let incoming = op
        .handle_header(&h)
        .unwrap_or_else(|e| fail(format!("reply: {e}")));
    let mut sink = vec![0u8; incoming.len as usize];
    let into = match incoming.into {
        Receive::Own(r) => &mut op.own_bytes_mut()[r],
        _ => &mut sink[..],
    };
    s.read_exact(into)
        .unwrap_or_else(|e| fail(format!("receive: {e}")));
    op.handle_payload();
    if let Some(Err(e)) = op.outcome() {
        fail(format!("{e}"));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, vid, from, count] = &args[..] else {
        fail("usage: hyper-fill HOST:PORT VID_HEX FROM COUNT".into())
    };
    let vid = u32::from_str_radix(vid, 16)
        .ok()
        .and_then(|v| Vid::new(v).ok())
        .unwrap_or_else(|| fail(format!("bad VID {vid}")));
    let (from, count): (u32, u32) = match (from.parse(), count.parse()) {
        (Ok(f), Ok(c)) => (f, c),
        _ => fail("FROM and COUNT are numbers".into()),
    };
    let mut s = TcpStream::connect(addr.as_str())
        .unwrap_or_else(|e| fail(format!("cannot connect to {addr}: {e}")));
    let mut head = Exchange::new(
        vec![0u8; HEADER_LEN + 8],
        1,
        ObjectOp::new(Oid::inode(vid), ObjectKind::Read { offset: 0 }),
    );
    run(&mut s, &mut head);
    let h = InodeHeader::parse(&head.buf()[..HEADER_LEN])
        .unwrap_or_else(|e| fail(format!("inode: {e}")));
    let root = &head.buf()[HEADER_LEN..];
    if !h.is_hyper() || root[4..8] != [0; 4] {
        fail("not a hyper volume with an empty B-tree".into());
    }
    let objects = h.vdi_size.div_ceil(1 << 22);
    let end = u64::from(from) + u64::from(count);
    if end > objects {
        fail(format!("the volume has {objects} objects"));
    }
    let mut index = vec![0u8; objects as usize * 4];
    for idx in from..end as u32 {
        index[idx as usize * 4..idx as usize * 4 + 4].copy_from_slice(&vid.get().to_le_bytes());
    }
    let mut rootb = vec![0u8; ROOT_BUF_LEN];
    let mut leaf = vec![0u8; LEAF_BUF_LEN];
    let mut m = Commit::new(vid, 0, from, (end - 1) as u32);
    let mut requests = 0;
    loop {
        let step = m
            .next(&index, &mut rootb, &mut leaf)
            .unwrap_or_else(|e| fail(format!("{e}")));
        let Some(step) = step else { break };
        let buf = match step.buffer {
            Buffer::Root => &mut rootb[step.range.clone()],
            Buffer::Leaf => &mut leaf[step.range.clone()],
        };
        let mut op = Exchange::new(buf, 2, ObjectOp::new(step.oid, step.kind));
        run(&mut s, &mut op);
        m.done(&index, &mut rootb)
            .unwrap_or_else(|e| fail(format!("{e}")));
        requests += 1;
    }
    println!(
        "{count} entries from {from}: depth {}, {} leaves made, {requests} requests",
        m.depth(),
        m.leaves_made()
    );
}
