//! Golden tests: every frame `dog` and a real Sheepdog 1.0 cluster exchanged
//! decodes and re-encodes byte for byte, and decodes to the facts the
//! protocol says it should.

use sheepdog_core::address::encode_name_tag;
use sheepdog_core::hash::vid_hash;
use sheepdog_core::index::IndexView;
use sheepdog_core::inode::{self, InodeHeader, InodeRange};
use sheepdog_core::object_size::ObjectSize;
use sheepdog_core::oid::{Oid, OidKind, Vid};
use sheepdog_core::wire::{
    Flags, Opcode, Request, RequestArgs, Response, ResponseArgs, ResultClass, ResultCode,
};
use sheepdog_tests::trace::{load_all, load_named, Dir, Trace};

fn requests(t: &Trace) -> Vec<Request> {
    t.frames
        .iter()
        .filter(|f| f.dir == Dir::Request)
        .map(|f| Request::parse_bytes(&f.header).unwrap())
        .collect()
}

fn opcodes(t: &Trace) -> Vec<Opcode> {
    requests(t).iter().map(|r| r.opcode).collect()
}

fn vid(n: u32) -> Vid {
    Vid::new(n).unwrap()
}

#[test]
fn every_header_reencodes_byte_for_byte() {
    let mut count = 0;
    for t in load_all() {
        for f in &t.frames {
            let emitted = match f.dir {
                Dir::Request => Request::parse_bytes(&f.header).unwrap().to_bytes(),
                Dir::Response => Response::parse_bytes(&f.header).unwrap().to_bytes(),
            };
            assert_eq!(emitted, f.header, "{} frame {}", t.name, f.seq);
            count += 1;
        }
    }
    assert!(count > 200, "only {count} frames");
}

#[test]
fn payloads_match_their_recorded_length_and_crc() {
    for t in load_all() {
        for f in &t.frames {
            if !f.truncated {
                assert_eq!(f.payload.len(), f.payload_len, "{} {}", t.name, f.seq);
                if let Some(crc) = f.payload_crc32 {
                    assert_eq!(crc32fast::hash(&f.payload), crc, "{} {}", t.name, f.seq);
                }
            }
        }
    }
}

#[test]
fn framing_rules_hold_for_every_dog_request() {
    for t in load_all() {
        let handmade = t.name.starts_with("21_");
        for x in t.exchanges() {
            let req = Request::parse_bytes(&x.request.header).unwrap();
            let rsp = Response::parse_bytes(&x.response.header).unwrap();
            // A payload follows exactly when WRITE is set.
            assert_eq!(
                req.payload_len() as usize,
                x.request.payload_len,
                "{}",
                t.name
            );
            // Responses always carry data_length bytes, whatever the result.
            assert_eq!(
                rsp.data_length as usize, x.response.payload_len,
                "{}",
                t.name
            );
            assert_eq!(rsp.id, req.id);
            assert_eq!(rsp.opcode, req.opcode);
            assert_eq!(rsp.proto_ver, 0, "v1.0 leaves the response proto_ver 0");
            if !handmade {
                assert_eq!(req.proto_ver, req.opcode.proto_ver(), "{}", t.name);
                assert_eq!(req.epoch, 0);
                // dog's snapshot checks that the tag is free: NO_TAG.
                let class = rsp.result.class();
                assert!(
                    matches!(class, ResultClass::Success | ResultClass::Semantic),
                    "{}: {:?}",
                    t.name,
                    rsp.result
                );
            }
        }
    }
}

#[test]
fn requests_built_by_the_core_equal_what_dog_sends() {
    // dog adds the ignored DIRECT flag to some requests; apart from that the
    // core's constructors produce dog's bytes.
    let t = load_named("03_vdi_write_off0");
    let reqs = requests(&t);
    let info = Request::get_vdi_info(0, 0);
    assert_eq!(info.to_bytes(), reqs[0].to_bytes());
    let create = Request::create_and_write(0, Oid::data(vid(0x6acfef), 0), None, 0, 512, 3);
    assert_eq!(create.to_bytes(), reqs[2].to_bytes());
    let r = InodeRange::index_entry(0).unwrap();
    let update = Request::write_obj(0, Oid::inode(vid(0x6acfef)), r.offset, r.len, 3);
    assert_eq!(update.to_bytes(), reqs[3].to_bytes());

    let t = load_named("09_clone_write_cow");
    let reqs = requests(&t);
    let cow = Request::create_and_write(
        0,
        Oid::data(vid(0xa7ec0c), 0),
        Some(Oid::data(vid(0x6acfef), 0)),
        0,
        512,
        3,
    );
    assert_eq!(cow.to_bytes(), reqs[2].to_bytes());

    let t = load_named("05_vdi_read_off0");
    let reqs = requests(&t);
    let read = Request::read_obj(0, Oid::data(vid(0x6acfef), 0), 0, 512);
    assert_eq!(read.to_bytes(), reqs[2].to_bytes());

    let t = load_named("14_vdi_list");
    let reqs = requests(&t);
    assert_eq!(Request::read_vdis(0).to_bytes(), reqs[0].to_bytes());
    assert_eq!(Request::read_del_vdis(0).to_bytes(), reqs[1].to_bytes());

    let t = load_named("15_vdi_delete_clone");
    let reqs = requests(&t);
    assert_eq!(Request::del_vdi(0, 0).to_bytes(), reqs[3].to_bytes());
}

#[test]
fn vdi_create_returns_the_hashed_vid_and_default_geometry() {
    let t = load_named("02_vdi_create");
    assert_eq!(
        opcodes(&t),
        [
            Opcode::GetNodeList,
            Opcode::StatCluster,
            Opcode::ClusterInfo,
            Opcode::NewVdi
        ]
    );
    let x = t.exchanges().into_iter().last().unwrap();
    let req = Request::parse_bytes(&x.request.header).unwrap();
    let args = req.vdi().unwrap();
    assert_eq!(args.vdi_size, 12 << 20);
    assert_eq!((args.base_vdi_id, args.snapid, args.copies), (0, 0, 0));
    assert_eq!(req.data_length, 256);
    assert_eq!(&x.request.payload[..3], b"tv\0");
    let rsp = Response::parse_bytes(&x.response.header).unwrap();
    match rsp.args {
        ResponseArgs::Vdi {
            vdi_id,
            copies,
            block_size_shift,
            ..
        } => {
            assert_eq!(vdi_id, 0x6acfef);
            assert_eq!(vdi_id, vid_hash(b"tv"), "fresh cluster: vid = hash");
            assert_eq!(copies, 3);
            assert_eq!(
                ObjectSize::from_shift(block_size_shift).unwrap().bytes(),
                4 << 20
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn lookups_send_name_and_tag() {
    let t = load_named("07_vdi_snapshot");
    let x = &t.exchanges()[0];
    let mut expect = [0u8; 512];
    encode_name_tag(b"tv", b"snap1", &mut expect);
    assert_eq!(x.request.payload, expect);
    let rsp = Response::parse_bytes(&x.response.header).unwrap();
    assert_eq!(rsp.result, ResultCode::NoTag);
    assert_eq!(rsp.result.class(), ResultClass::Semantic);
}

#[test]
fn snapshot_writes_the_tag_then_new_vdi_with_the_snapshot_flag() {
    let t = load_named("07_vdi_snapshot");
    assert_eq!(
        opcodes(&t),
        [
            Opcode::GetVdiInfo,
            Opcode::GetVdiInfo,
            Opcode::ReadObj,
            Opcode::WriteObj,
            Opcode::NewVdi
        ]
    );
    let x = t.exchanges();
    // The header read is exactly 4664 bytes and parses.
    let read = Request::parse_bytes(&x[2].request.header).unwrap();
    assert_eq!(read.data_length as usize, inode::HEADER_LEN);
    let header = InodeHeader::parse(&x[2].response.payload).unwrap();
    assert_eq!(header.name(), b"tv");
    assert_eq!(header.vdi_id, 0x6acfef);
    assert!(!header.is_snapshot());
    // The tag write is the 256 bytes at 256, nothing more.
    let tag = Request::parse_bytes(&x[3].request.header).unwrap();
    let obj = tag.obj().unwrap();
    assert_eq!(obj.oid, Oid::inode(vid(0x6acfef)));
    assert_eq!(obj.oid.kind(), OidKind::Inode);
    assert_eq!(
        InodeRange {
            offset: obj.offset,
            len: tag.data_length
        },
        InodeRange::TAG
    );
    assert_eq!(&x[3].request.payload[..6], b"snap1\0");
    // NEW_VDI: base = the working VDI, snapid = 1; the response's vid is
    // the new working VDI.
    let new = Request::parse_bytes(&x[4].request.header).unwrap();
    let args = new.vdi().unwrap();
    assert_eq!((args.base_vdi_id, args.snapid), (0x6acfef, 1));
    let rsp = Response::parse_bytes(&x[4].response.header).unwrap();
    assert_eq!(rsp.vdi_id(), Some(0x6acff0));
}

#[test]
fn inode_headers_reencode_byte_for_byte() {
    let mut checked = 0;
    for t in load_all() {
        for x in t.exchanges() {
            let req = Request::parse_bytes(&x.request.header).unwrap();
            let Some(obj) = req.obj() else { continue };
            if obj.oid.kind() != OidKind::Inode || obj.offset != 0 {
                continue;
            }
            // Inode header read back from the server, or written by dog.
            let bytes = if req.opcode == Opcode::ReadObj {
                &x.response.payload
            } else if req.opcode == Opcode::WriteObj {
                &x.request.payload
            } else {
                continue;
            };
            if bytes.len() < inode::LOOKUP_LEN {
                continue;
            }
            let h = InodeHeader::parse(bytes).unwrap();
            assert_eq!(h.vdi_id, obj.oid.vid_bits(), "{}", t.name);
            assert!(!h.is_hyper());
            let mut out = vec![0u8; inode::HEADER_LEN];
            h.emit(&mut out).unwrap();
            let n = bytes.len().min(inode::HEADER_LEN);
            assert_eq!(&out[..n], &bytes[..n], "{} seq {}", t.name, x.request.seq);
            checked += 1;
        }
    }
    assert!(checked >= 20, "checked {checked} inode headers");
}

#[test]
fn clone_is_new_vdi_based_on_the_snapshot() {
    let t = load_named("08_vdi_clone");
    let x = t.exchanges();
    let lookup = Request::parse_bytes(&x[0].request.header).unwrap();
    assert_eq!(lookup.opcode, Opcode::GetVdiInfo);
    let snap = InodeHeader::parse(&x[1].response.payload).unwrap();
    assert!(snap.is_snapshot());
    assert_eq!(snap.tag(), b"snap1");
    assert_eq!(snap.snap_id, 1);
    let new = Request::parse_bytes(&x[2].request.header).unwrap();
    let args = new.vdi().unwrap();
    assert_eq!((args.base_vdi_id, args.snapid), (0x6acfef, 0));
    assert_eq!(
        Response::parse_bytes(&x[2].response.header)
            .unwrap()
            .vdi_id(),
        Some(0xa7ec0c)
    );
}

#[test]
fn writes_choose_create_cow_or_plain_by_the_index_entry() {
    // 09: entry inherited from the snapshot → CREATE + COW from its object.
    let t = load_named("09_clone_write_cow");
    let reqs = requests(&t);
    let c = &reqs[2];
    assert_eq!(c.flags, Flags::WRITE | Flags::COW);
    assert_eq!(c.obj().unwrap().cow_oid, Oid::data(vid(0x6acfef), 0));
    // 10: entry 0 → plain CREATE of the clone's own object.
    let t = load_named("10_clone_write_new_object");
    let reqs = requests(&t);
    let c = &reqs[2];
    assert_eq!(c.flags, Flags::WRITE);
    let oid = c.obj().unwrap().oid;
    assert_eq!((oid.vid_bits(), oid.index()), (0xa7ec0c, 2));
    // and then the index entry 2, with the clone's vid.
    let update = &reqs[3];
    assert_eq!(
        update.obj().unwrap().offset,
        InodeRange::index_entry(2).unwrap().offset
    );
    let payload = &t.exchanges()[3].request.payload;
    assert_eq!(IndexView::new(&payload[..], 2).get(2), Some(0xa7ec0c));
}

#[test]
fn clone_reads_shared_objects_from_the_ancestor() {
    let t = load_named("12_clone_read_off4m512");
    let x = t.exchanges();
    let clone = InodeHeader::parse(&x[1].response.payload).unwrap();
    assert!(clone.is_clone());
    assert_eq!(clone.parent_vdi_id, 0x6acfef);
    let read = Request::parse_bytes(&x[2].request.header).unwrap();
    let obj = read.obj().unwrap();
    assert_eq!(obj.oid, Oid::data(vid(0x6acfef), 1));
    assert_eq!(obj.offset, 512);
    assert_eq!(x[2].response.payload, b"SHEEPDOG-TRACE-B".repeat(32));
}

#[test]
fn list_reads_bitmaps_headers_and_the_index_the_size_covers() {
    let t = load_named("14_vdi_list");
    let x = t.exchanges();
    assert_eq!(x[0].response.payload_len, 1 << 21);
    assert_eq!(x[1].response.payload_len, 1 << 21);
    let mut names = Vec::new();
    for pair in x[2..].chunks(2) {
        let h = InodeHeader::parse(&pair[0].response.payload).unwrap();
        let count = h.index_len().unwrap();
        assert_eq!(count, 3, "12 MiB at 4 MiB objects");
        let idx = Request::parse_bytes(&pair[1].request.header).unwrap();
        assert_eq!(idx.obj().unwrap().offset, inode::INDEX_OFFSET);
        assert_eq!(idx.data_length, count * 4);
        let view = IndexView::new(&pair[1].response.payload[..], 0);
        names.push((
            String::from_utf8_lossy(h.name()).into_owned(),
            h.is_snapshot(),
            view.usage(h.vdi_id),
        ));
    }
    assert_eq!(
        names,
        [
            ("tv".to_owned(), true, (2, 0)),
            ("tv".to_owned(), false, (1, 1)),
            ("tvclone".to_owned(), false, (2, 1)),
        ]
    );
}

#[test]
fn delete_zeroes_the_index_run_before_del_vdi() {
    let t = load_named("15_vdi_delete_clone");
    let x = t.exchanges();
    let zero = Request::parse_bytes(&x[2].request.header).unwrap();
    let range = InodeRange {
        offset: zero.obj().unwrap().offset,
        len: zero.data_length,
    };
    assert!(range.is_index_update());
    assert_eq!(range.index_entries(), Some(0..3));
    assert!(x[2].request.payload.iter().all(|&b| b == 0));
    let del = Request::parse_bytes(&x[3].request.header).unwrap();
    assert_eq!(del.opcode, Opcode::DelVdi);
    assert_eq!(
        Response::parse_bytes(&x[3].response.header)
            .unwrap()
            .vdi_id(),
        Some(0xa7ec0c)
    );
}

#[test]
fn resize_rewrites_only_the_size_field() {
    let t = load_named("16_vdi_resize");
    let x = t.exchanges();
    let before = InodeHeader::parse(&x[1].response.payload).unwrap();
    let after = InodeHeader::parse(&x[2].request.payload).unwrap();
    assert_eq!(before.vdi_size, 12 << 20);
    assert_eq!(after.vdi_size, 16 << 20);
    let mut expect = before;
    expect.vdi_size = 16 << 20;
    assert_eq!(after, expect, "dog changes nothing but vdi_size");
    assert_eq!(InodeRange::VDI_SIZE.offset as usize, inode::field::VDI_SIZE);
}

#[test]
fn prealloc_creates_empty_objects_then_index_entries() {
    let t = load_named("18_vdi_create_prealloc");
    let reqs = requests(&t);
    let creates: Vec<_> = reqs
        .iter()
        .filter(|r| r.opcode == Opcode::CreateAndWriteObj)
        .collect();
    assert_eq!(creates.len(), 2);
    for (i, c) in creates.iter().enumerate() {
        assert_eq!(c.data_length, 0);
        assert_eq!(c.payload_len(), 0);
        assert_eq!(c.obj().unwrap().oid, Oid::data(vid(0x612398), i as u32));
    }
}

#[test]
fn proto_ver_probe_results_classify() {
    let t = load_named("21_handmade_proto_ver_probe");
    let mut mismatches = 0;
    for x in t.exchanges() {
        let req = Request::parse_bytes(&x.request.header).unwrap();
        let rsp = Response::parse_bytes(&x.response.header).unwrap();
        let accepted = if req.opcode.is_internal() {
            req.proto_ver == 0x0a
        } else {
            req.proto_ver <= 2
        };
        if let Opcode::Unknown(code) = req.opcode {
            assert_eq!(code, 0x7f);
            assert_eq!(rsp.result, ResultCode::InvalidParms);
            assert!(matches!(req.args, RequestArgs::Raw(_)));
            continue;
        }
        if accepted {
            assert!(
                rsp.result.is_success(),
                "{:?} v{}",
                req.opcode,
                req.proto_ver
            );
        } else {
            assert_eq!(rsp.result, ResultCode::VerMismatch);
            assert_eq!(rsp.result.class(), ResultClass::Fatal);
            assert_eq!(rsp.data_length, 0);
            mismatches += 1;
        }
    }
    assert_eq!(mismatches, 7);
}

#[test]
fn read_data_matches_what_was_written() {
    let t = load_named("05_vdi_read_off0");
    let data = &t.exchanges()[2].response.payload;
    let expect: Vec<u8> = (0..512).map(|i| i as u8).collect();
    assert_eq!(data, &expect);
    assert_eq!(t.stdout.as_deref(), Some(&expect[..]));
}
