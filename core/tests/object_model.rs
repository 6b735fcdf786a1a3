//! The object model against the vectors of PROTOCOL.md §7 and §9.

use sheepdog_core::bitmap::VdiBitmap;
use sheepdog_core::error::{DecodeError, SizeError};
use sheepdog_core::hash::{fnv1a64, vid_hash};
use sheepdog_core::index::{encode_entries, IndexView};
use sheepdog_core::inode::{self, InodeHeader, InodeRange};
use sheepdog_core::object_size::ObjectSize;
use sheepdog_core::oid::{Oid, OidKind, Vid};
use sheepdog_core::redundancy::Redundancy;
use sheepdog_core::wire::{
    Frame, Opcode, Request, Response, ResultClass, ResultCode, VDI_BITMAP_LEN,
};

#[test]
fn fnv1a64_and_vid_hash_match_the_protocol_vectors() {
    assert_eq!(fnv1a64(b"test"), 0xf9e6_e6ef_197c_2b25);
    assert_eq!(vid_hash(b"test"), 0x7c2b25);
    assert_eq!(vid_hash(b"alice"), 0xa03907);
    assert_eq!(vid_hash(b"a"), 0x01ec8c);
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
}

#[test]
fn oids_compose_and_decompose() {
    let v = Vid::new(vid_hash(b"test")).unwrap();
    assert_eq!(Oid::inode(v).0, 0x807c_2b25_0000_0000);
    assert_eq!(Oid::data(v, 5).0, 0x007c_2b25_0000_0005);
    assert_eq!(Oid::vmstate(v, 0).0, 0x407c_2b25_0000_0000);
    assert_eq!(Oid::btree(v, 0).0, 0x107c_2b25_0000_0000);
    assert_eq!(Oid::attr(v, 9).0, 0x207c_2b25_0000_0009);
    assert_eq!(Oid::data(v, 5).kind(), OidKind::Data);
    assert_eq!(Oid::inode(v).kind(), OidKind::Inode);
    assert_eq!(Oid::vmstate(v, 1).kind(), OidKind::Vmstate);
    assert_eq!(Oid::attr(v, 1).kind(), OidKind::Attr);
    assert_eq!(Oid::btree(v, 1).kind(), OidKind::Btree);
    assert_eq!(Oid(1 << 59 | 5).kind(), OidKind::Ledger);
    let big = Oid::data(v, 0xffff_ffff);
    assert_eq!((big.vid(), big.index()), (Some(v), 0xffff_ffff));
    assert_eq!(Oid::inode(v).to_string(), "807c2b2500000000");
}

#[test]
fn vids_are_24_bits_and_never_zero() {
    assert_eq!(Vid::new(0), Err(SizeError::BadVid(0)));
    assert_eq!(Vid::new(1 << 24), Err(SizeError::BadVid(1 << 24)));
    assert_eq!(Vid::new(0xff_ffff).unwrap().get(), 0xff_ffff);
    assert_eq!(Vid::from_entry(0), None);
}

#[test]
fn object_size_follows_block_size_shift() {
    assert_eq!(ObjectSize::default().bytes(), 4 << 20);
    assert_eq!(ObjectSize::from_shift(20).unwrap().bytes(), 1 << 20);
    assert_eq!(ObjectSize::from_shift(31).unwrap().bytes(), 1 << 31);
    assert_eq!(
        ObjectSize::from_shift(19),
        Err(SizeError::BadBlockSizeShift(19))
    );
    assert_eq!(
        ObjectSize::from_shift(32),
        Err(SizeError::BadBlockSizeShift(32))
    );
    assert_eq!(ObjectSize::from_bytes(8 << 20).unwrap().shift(), 23);
    assert_eq!(
        ObjectSize::from_bytes(3 << 20),
        Err(SizeError::BadObjectSize(3 << 20))
    );
    assert_eq!(
        ObjectSize::from_bytes(512),
        Err(SizeError::BadObjectSize(512))
    );
    let os = ObjectSize::default();
    assert_eq!(os.max_vdi_size(), 4 << 40);
    assert_eq!(ObjectSize::from_shift(31).unwrap().max_vdi_size(), 2 << 50);
    assert!(os.check_vdi_size(4 << 40).is_ok());
    assert_eq!(
        os.check_vdi_size((4 << 40) + 1),
        Err(SizeError::TooLarge {
            size: (4 << 40) + 1,
            max: 4 << 40
        })
    );
    assert_eq!(os.check_vdi_size(0), Err(SizeError::Zero));
    assert_eq!(os.locate((4 << 20) + 512), (1, 512));
    assert_eq!(os.object_count(12 << 20), 3);
    assert_eq!(os.object_count((12 << 20) + 1), 4);
    let msg = SizeError::TooLarge { size: 5, max: 4 }.to_string();
    assert!(msg.contains("too large"), "{msg}");
}

#[test]
fn inode_header_roundtrips_and_refuses_short_buffers() {
    let mut h = InodeHeader::default();
    h.name[..5].copy_from_slice(b"alice");
    h.tag[..4].copy_from_slice(b"snap");
    h.vdi_size = 12 << 20;
    h.nr_copies = 3;
    h.block_size_shift = 22;
    h.snap_id = 2;
    h.vdi_id = 0xa03907;
    h.parent_vdi_id = 0xa03906;
    h.snap_ctime = 1 << 32;
    let mut buf = vec![0xAAu8; inode::HEADER_LEN];
    h.emit(&mut buf).unwrap();
    assert!(buf[inode::HEADER_FIELDS_LEN..].iter().all(|&b| b == 0));
    let back = InodeHeader::parse(&buf).unwrap();
    assert_eq!(back, h);
    assert_eq!(back.name(), b"alice");
    assert_eq!(back.tag(), b"snap");
    assert!(back.is_snapshot());
    assert_eq!(back.index_len(), Ok(3));
    assert_eq!(
        InodeHeader::parse(&buf[..100]),
        Err(DecodeError::Truncated {
            need: 568,
            have: 100
        })
    );
    assert!(h.emit(&mut [0u8; 10]).is_err());
    let mut hyper = h;
    hyper.store_policy = 1;
    assert_eq!(hyper.index_len(), Err(SizeError::HyperVolume));
    let mut bad = h;
    bad.block_size_shift = 40;
    assert_eq!(bad.index_len(), Err(SizeError::BadBlockSizeShift(40)));
}

#[test]
fn inode_ranges_are_the_smallest_writes() {
    assert_eq!(inode::HEADER_AND_INDEX_LEN, 4_198_968);
    assert_eq!(inode::INODE_OBJECT_LEN, 12_587_576);
    assert_eq!(
        InodeRange::index_entry(0).unwrap(),
        InodeRange {
            offset: 4664,
            len: 4
        }
    );
    assert_eq!(InodeRange::index_entry(2).unwrap().offset, 4672);
    let run = InodeRange::index_run(10, 128).unwrap();
    assert_eq!((run.offset, run.len), (4664 + 40, 512));
    assert_eq!(run.index_entries(), Some(10..138));
    assert!(run.is_index_update());
    assert!(!InodeRange::TAG.is_index_update());
    assert!(!InodeRange::HEADER.is_index_update());
    assert!(InodeRange::index_run((1 << 20) - 1, 1).is_ok());
    assert!(InodeRange::index_run((1 << 20) - 1, 2).is_err());
    assert!(InodeRange::index_run(0, 0).is_err());
    assert_eq!(
        InodeRange::VDI_SIZE,
        InodeRange {
            offset: 536,
            len: 8
        }
    );
}

#[test]
fn index_view_reads_and_writes_entries_at_an_offset() {
    let mut buf = [0u8; 16];
    let mut view = IndexView::new(&mut buf[..], 100);
    assert!(view.set(101, 0xabc));
    assert!(view.set(103, 7));
    assert!(!view.set(104, 1));
    assert!(!view.set(99, 1));
    assert_eq!(view.get(101), Some(0xabc));
    assert_eq!(view.get(104), None);
    assert_eq!(view.usage(7), (1, 1));
    let mut out = [0u8; 8];
    assert_eq!(encode_entries(&[1, 2], &mut out), Some(8));
    assert_eq!(out, [1, 0, 0, 0, 2, 0, 0, 0]);
    assert_eq!(encode_entries(&[1, 2, 3], &mut out), None);
}

#[test]
fn bitmap_bits_iterate_and_allocate_by_linear_probing() {
    let mut buf = vec![0u8; VDI_BITMAP_LEN];
    let mut map = VdiBitmap::new_checked(&mut buf[..]).unwrap();
    let h = vid_hash(b"tv");
    assert_eq!(map.next_free(h), Some(h));
    map.insert(h);
    map.insert(h + 1);
    assert_eq!(map.next_free(h), Some(h + 2));
    assert_eq!(map.probe_run(h), (h, Some(h + 2)));
    map.insert(0xff_ffff);
    assert_eq!(map.next_free(0xff_ffff), Some(1), "wraps to 1");
    assert_eq!(map.next_free(0), Some(1), "hash 0 starts at 1");
    assert!(map.contains(h) && !map.contains(h + 2) && !map.contains(1 << 24));
    assert_eq!(map.iter().collect::<Vec<_>>(), [h, h + 1, 0xff_ffff]);
    assert_eq!(
        buf[(h >> 3) as usize] >> (h & 7) & 1,
        1,
        "bit n = byte[n>>3] >> (n&7)"
    );
    assert!(VdiBitmap::new_checked(&[0u8; 10][..]).is_err());
    let full = vec![0xffu8; VDI_BITMAP_LEN];
    assert_eq!(
        VdiBitmap::new_checked(&full[..]).unwrap().next_free(5),
        None
    );
}

#[test]
fn result_codes_have_classes_and_messages() {
    use ResultClass::*;
    let cases = [
        (0x00, Success),
        (0x08, Semantic),
        (0x04, Semantic),
        (0x07, Semantic),
        (0x0e, Semantic),
        (0x17, Transient),
        (0x19, Transient),
        (0x11, Transient),
        (0x8d, Transient),
        (0x91, Transient),
        (0x95, Transient),
        (0x8f, Transient),
        (0x86, Transient),
        (0x12, Transient),
        (0x1a, Reresolve),
        (0x1d, Reresolve),
        (0x03, Fatal),
        (0x14, Fatal),
        (0x15, Fatal),
        (0x16, Transient),
        (0x1234, Fatal),
    ];
    for (code, class) in cases {
        let r = ResultCode::from_u32(code);
        assert_eq!(r.class(), class, "{code:#x}");
        assert_eq!(r.to_u32(), code);
        assert!(!r.message().is_empty());
    }
    assert_eq!(ResultCode::from_u32(0x1234), ResultCode::Unknown(0x1234));
    assert!(ResultCode::Unknown(0x1234).to_string().contains("0x1234"));
    assert_eq!(ResultCode::NoVdi.to_string(), "no such VDI");
}

#[test]
fn every_opcode_byte_roundtrips() {
    for b in 0..=255u8 {
        let op = Opcode::from_u8(b);
        assert_eq!(op.to_u8(), b);
        assert_eq!(op.proto_ver(), if b >= 0x80 { 0x0a } else { 0x02 });
    }
}

#[test]
fn request_constructors_set_write_exactly_with_a_payload() {
    let v = Vid::new(5).unwrap();
    let cases = [
        (Request::read_obj(1, Oid::data(v, 0), 0, 4096), false),
        (Request::write_obj(1, Oid::data(v, 0), 0, 4096, 0), true),
        (
            Request::create_and_write(1, Oid::data(v, 0), None, 0, 10, 0),
            true,
        ),
        (Request::get_vdi_info(1, 0), true),
        (Request::del_vdi(1, 3), true),
        (Request::read_vdis(1), false),
        (Request::read_del_vdis(1), false),
        (Request::get_cluster_default(1), false),
        (
            Request::release_vdi(1, 5, sheepdog_core::wire::LockType::Normal),
            false,
        ),
    ];
    for (req, payload) in cases {
        assert_eq!(req.flags.has_payload(), payload, "{:?}", req.opcode);
        let bytes = req.to_bytes();
        assert_eq!(Request::parse_bytes(&bytes).unwrap(), req);
    }
    assert_eq!(Request::read_del_vdis(1).proto_ver, 0x0a);
    assert_eq!(Request::get_vdi_info(1, 0).data_length, 512);
    let release = Request::release_vdi(1, 0xabc, sheepdog_core::wire::LockType::Shared);
    assert_eq!(&release.to_bytes()[24..28], &[0xbc, 0x0a, 0, 0]);
    assert_eq!(&release.to_bytes()[36..40], &[1, 0, 0, 0]);
}

#[test]
fn frames_refuse_short_buffers_and_responses_parse_unknown_codes() {
    assert_eq!(
        Frame::new_checked(&[0u8; 47][..]).err(),
        Some(DecodeError::Truncated { need: 48, have: 47 })
    );
    let mut h = [0u8; 48];
    h[1] = 0x55;
    h[16..20].copy_from_slice(&0xdead_u32.to_le_bytes());
    h[30] = 9;
    let rsp = Response::parse_bytes(&h).unwrap();
    assert_eq!(rsp.opcode, Opcode::Unknown(0x55));
    assert_eq!(rsp.result, ResultCode::Unknown(0xdead));
    assert_eq!(rsp.to_bytes(), h);
}

#[test]
fn redundancy_maps_to_copies_and_policy() {
    assert_eq!(Redundancy::erasure_code(4, 2).unwrap().to_wire(), (6, 0x22));
    assert_eq!(Redundancy::erasure_code(2, 1).unwrap().to_wire(), (3, 0x11));
    assert_eq!(
        Redundancy::from_wire(6, 0x22),
        Redundancy::ErasureCode { data: 4, parity: 2 }
    );
    assert_eq!(Redundancy::from_wire(3, 0), Redundancy::Copies(3));
    assert_eq!(Redundancy::from_wire(0, 0), Redundancy::ClusterDefault);
    assert!(Redundancy::erasure_code(3, 1).is_err());
    assert!(Redundancy::erasure_code(4, 0).is_err());
    assert!(Redundancy::erasure_code(16, 16).is_err());
    assert!(Redundancy::copies(0).is_err());
    assert!(Redundancy::copies(32).is_err());
    assert_eq!(Redundancy::erasure_code(4, 2).unwrap().to_string(), "4:2");
}
