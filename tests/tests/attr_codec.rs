//! VDI attributes (`sheepdog_core::attr`) against the byte layout of
//! `struct sheepdog_vdi_attr` (sheepdog_proto.h), and the exchange against
//! replies made by hand: the right attribute is read back, a wrong one or
//! a bad length is refused, NO_OBJ says "missing". Also GET_OBJ_LIST.

use sheepdog_core::attr::{encode, Attr, AttrDone, AttrKind, AttrOp, ATTR_LEN};
use sheepdog_core::hash::vid_hash;
use sheepdog_core::obj_list::GetObjList;
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::reply::Exchange;
use sheepdog_core::wire::{Flags, Opcode, Request, Response, ResponseArgs, ResultCode, HEADER_LEN};

fn attr(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; ATTR_LEN];
    encode(&mut b, b"vm", b"", 0, key, value).unwrap();
    b
}

#[test]
fn the_struct_is_laid_out_as_sheep_has_it() {
    let mut b = vec![0xeeu8; ATTR_LEN];
    encode(&mut b, b"vm", b"t1", 7, b"owner", b"alice").unwrap();
    assert_eq!(&b[..3], b"vm\0");
    assert_eq!(&b[256..259], b"t1\0");
    assert_eq!(&b[512..520], &[0; 8], "ctime, the server's");
    assert_eq!(&b[520..524], &7u32.to_le_bytes());
    assert_eq!(&b[524..528], &5u32.to_le_bytes());
    assert_eq!(&b[528..534], b"owner\0");
    assert_eq!(&b[784..789], b"alice");
    assert!(b[789..].iter().all(|&x| x == 0), "zero padded");
    let a = Attr::parse(&b).unwrap();
    assert_eq!(
        (a.name, a.tag, a.snap_id, a.key, a.value),
        (&b"vm"[..], &b"t1"[..], 7, &b"owner"[..], &b"alice"[..])
    );
    // Refused: an empty key, a NUL in the name, a value over 64 KiB, a
    // short buffer; a value length past the object.
    assert!(encode(&mut b, b"vm", b"", 0, b"", b"").is_err());
    assert!(encode(&mut b, b"v\0m", b"", 0, b"k", b"").is_err());
    assert!(encode(&mut b, b"vm", b"", 0, b"k", &vec![0; 65_537]).is_err());
    assert!(encode(&mut [0u8; 100], b"vm", b"", 0, b"k", b"").is_err());
    b[524..528].copy_from_slice(&65_537u32.to_le_bytes());
    assert!(Attr::parse(&b).is_err());
}

/// The exchange of attribute `buf` (as [`encode`] wrote it).
fn exchange(buf: Vec<u8>, id: u32, kind: AttrKind) -> Exchange<Vec<u8>, AttrOp> {
    let op = AttrOp::new(&buf, kind).unwrap();
    Exchange::new(buf, id, op)
}

/// Feed `op` the reply `rsp` with `payload`, as the receive path would.
fn reply(op: &mut Exchange<Vec<u8>, AttrOp>, rsp: Response, payload: &[u8]) -> Result<(), ()> {
    let incoming = op.handle_header(&rsp.to_bytes()).map_err(|_| ())?;
    if let sheepdog_core::engine::Receive::Own(r) = incoming.into {
        sheepdog_core::receive::Replies::own_bytes_mut(op)[r.clone()]
            .copy_from_slice(&payload[..r.len()]);
    }
    op.handle_payload();
    Ok(())
}

fn sent(op: &mut Exchange<Vec<u8>, AttrOp>) -> Request {
    let h = op.poll_transmit().expect("a request");
    Request::parse_bytes(&h[..HEADER_LEN]).unwrap()
}

fn attr_reply(req: &Request, result: ResultCode, hvid: u32, attr_id: u32) -> Response {
    let mut r = Response::to_request(req, result, 0);
    r.args = ResponseArgs::Vdi {
        rsvd: 0,
        vdi_id: hvid,
        attr_id,
        copies: 3,
        block_size_shift: 0,
    };
    r
}

/// A get of "owner" that was told slot `attr_id`, and its read request.
fn at_slot(hvid: u32, attr_id: u32) -> (Exchange<Vec<u8>, AttrOp>, Request) {
    let mut op = exchange(attr(b"owner", b""), 1, AttrKind::Get);
    let req = sent(&mut op);
    reply(
        &mut op,
        attr_reply(&req, ResultCode::Success, hvid, attr_id),
        &[],
    )
    .unwrap();
    let read = sent(&mut op);
    (op, read)
}

#[test]
fn get_asks_then_reads_the_slot_and_checks_it() {
    let hvid = vid_hash(b"vm");
    let mut op = exchange(attr(b"owner", b""), 1, AttrKind::Get);
    let req = sent(&mut op);
    assert_eq!(req.opcode, Opcode::GetVdiAttr);
    assert_eq!(req.proto_ver, 0x0a);
    assert!(req.flags.has_payload() && !req.flags.contains(Flags::CREAT));
    assert_eq!(req.data_length as usize, ATTR_LEN);
    assert!(op.poll_transmit().is_none(), "one request at a time");
    reply(
        &mut op,
        attr_reply(&req, ResultCode::Success, hvid, 42),
        &[],
    )
    .unwrap();
    let read = sent(&mut op);
    let slot = Oid::attr(Vid::new(hvid).unwrap(), 42);
    assert_eq!(read.opcode, Opcode::ReadObj);
    assert_eq!(read.obj().unwrap().oid, slot);
    let stored = attr(b"owner", b"alice");
    reply(
        &mut op,
        Response::to_request(&read, ResultCode::Success, ATTR_LEN as u32),
        &stored,
    )
    .unwrap();
    match op.outcome() {
        Some(Ok(AttrDone::Value(a, oid))) => {
            assert_eq!(a.value, b"alice");
            assert_eq!(oid, slot);
        }
        other => panic!("{other:?}"),
    }

    // The slot holds another key: not believed.
    let (mut op, read) = at_slot(hvid, 42);
    reply(
        &mut op,
        Response::to_request(&read, ResultCode::Success, ATTR_LEN as u32),
        &attr(b"other", b"x"),
    )
    .unwrap();
    assert!(matches!(op.outcome(), Some(Err(_))), "{:?}", op.outcome());

    // A short read: refused at the header.
    let (mut op, read) = at_slot(hvid, 42);
    assert!(reply(
        &mut op,
        Response::to_request(&read, ResultCode::Success, 100),
        &[0; 100]
    )
    .is_err());
    assert!(matches!(op.outcome(), Some(Err(_))));

    // NO_OBJ: the key is not there.
    let mut op = exchange(attr(b"owner", b""), 1, AttrKind::Get);
    let req = sent(&mut op);
    reply(&mut op, attr_reply(&req, ResultCode::NoObj, 0, 0), &[]).unwrap();
    assert!(op.refused_with(ResultCode::NoObj));

    // A reply to another id is out of step.
    let mut op = exchange(attr(b"owner", b""), 1, AttrKind::Get);
    let mut req = sent(&mut op);
    req.id += 5;
    assert!(reply(&mut op, attr_reply(&req, ResultCode::Success, hvid, 1), &[]).is_err());
}

#[test]
fn set_and_delete_are_one_request_with_their_flags() {
    for (kind, flags) in [
        (AttrKind::Set { exclusive: false }, Flags::CREAT),
        (
            AttrKind::Set { exclusive: true },
            Flags::CREAT | Flags::EXCL,
        ),
        (AttrKind::Delete, Flags::DEL),
    ] {
        let mut op = exchange(attr(b"k", b"v"), 9, kind);
        let h = op.poll_transmit().unwrap();
        assert!(!op.payload().is_empty());
        assert_eq!(&op.payload()[784..785], b"v");
        let req = Request::parse_bytes(&h).unwrap();
        assert!(
            req.flags.contains(flags) && req.flags.has_payload(),
            "{kind:?}"
        );
        reply(&mut op, attr_reply(&req, ResultCode::Success, 1, 1), &[]).unwrap();
        assert_eq!(op.outcome(), Some(Ok(AttrDone::Done)));
        assert!(op.poll_transmit().is_none());
    }
}

#[test]
fn obj_list_takes_whole_oids_and_says_when_its_buffer_is_small() {
    let mut p = Exchange::new(vec![0u8; 64], 3, GetObjList::default());
    let req = Request::parse_bytes(&p.poll_transmit().unwrap()).unwrap();
    assert_eq!(
        (req.opcode, req.proto_ver, req.data_length),
        (Opcode::GetObjList, 0x0a, 64)
    );
    let payload: Vec<u8> = [1u64 << 61 | 5 << 32 | 9, 7]
        .iter()
        .flat_map(|o| o.to_le_bytes())
        .collect();
    let inc = p
        .handle_header(&Response::to_request(&req, ResultCode::Success, 16).to_bytes())
        .unwrap();
    if let sheepdog_core::engine::Receive::Own(r) = inc.into {
        sheepdog_core::receive::Replies::own_bytes_mut(&mut p)[r].copy_from_slice(&payload);
    }
    p.handle_payload();
    let oids: Vec<Oid> = p.outcome().unwrap().unwrap().collect();
    assert_eq!(oids, [Oid(1 << 61 | 5 << 32 | 9), Oid(7)]);

    let mut p = Exchange::new(vec![0u8; 64], 3, GetObjList::default());
    let req = Request::parse_bytes(&p.poll_transmit().unwrap()).unwrap();
    p.handle_header(&Response::to_request(&req, ResultCode::BufferSmall, 0).to_bytes())
        .unwrap();
    assert!(p.refused_with(ResultCode::BufferSmall));
    // Not whole oids, or longer than the buffer: refused.
    let mut p = Exchange::new(vec![0u8; 64], 3, GetObjList::default());
    let req = Request::parse_bytes(&p.poll_transmit().unwrap()).unwrap();
    let _ = p.handle_header(&Response::to_request(&req, ResultCode::Success, 12).to_bytes());
    assert!(matches!(p.outcome(), Some(Err(_))));
    let mut p = Exchange::new(vec![0u8; 64], 3, GetObjList::default());
    let req = Request::parse_bytes(&p.poll_transmit().unwrap()).unwrap();
    assert!(p
        .handle_header(&Response::to_request(&req, ResultCode::Success, 72).to_bytes())
        .is_err());
}
