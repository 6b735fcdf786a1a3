//! Scenario tests of the reference server's protocol logic, each named
//! after the behaviour of PROTOCOL.md it proves.

use sheepdog_core::address::{encode_name, encode_name_tag};
use sheepdog_core::hash::vid_hash;
use sheepdog_core::inode::{InodeRange, HEADER_LEN};
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::wire::{
    Flags, LockType, NewVdi, Opcode, Request, RequestArgs, ResponseArgs, ResultCode, VDI_BITMAP_LEN,
};
use sheepdog_tests::server::{
    Cluster, ClusterConfig, ClusterStatus, DirStore, FaultAction, LockState, Matcher, Reply,
};

const MIB: u64 = 1 << 20;

/// A cluster and a clock.
struct T {
    c: Cluster,
    now: u64,
}

fn vid(n: u32) -> Vid {
    Vid::new(n).unwrap()
}

fn data(v: u32, idx: u32) -> Oid {
    Oid::data(vid(v), idx)
}

fn inode(v: u32) -> Oid {
    Oid::inode(vid(v))
}

impl T {
    fn new() -> T {
        T::with(ClusterConfig::default())
    }

    fn with(config: ClusterConfig) -> T {
        T {
            c: Cluster::new(config),
            now: 1_700_000_000u64 << 32,
        }
    }

    fn send(&mut self, req: Request, payload: &[u8]) -> Reply {
        self.now += 1 << 32;
        let reply = self.c.handle(self.now, &req, payload);
        assert_eq!(reply.payload.len(), reply.header.data_length as usize);
        assert_eq!(reply.header.id, req.id);
        assert_eq!(reply.header.opcode, req.opcode);
        reply
    }

    fn new_vdi(&mut self, name: &str, new: NewVdi) -> Reply {
        let mut p = [0u8; 256];
        encode_name(name.as_bytes(), &mut p);
        self.send(Request::new_vdi(7, new), &p)
    }

    fn create(&mut self, name: &str, size: u64) -> u32 {
        let r = self.new_vdi(
            name,
            NewVdi {
                vdi_size: size,
                ..NewVdi::default()
            },
        );
        assert_eq!(r.result(), ResultCode::Success, "create {name}");
        r.vdi_id().unwrap()
    }

    /// NEW_VDI with the snapshot flag: snapshot (base = working) or rebase.
    fn snapshot(&mut self, name: &str, base: u32) -> Reply {
        let size = self.c.inode_header(base).map_or(0, |h| h.vdi_size);
        self.new_vdi(
            name,
            NewVdi {
                vdi_size: size,
                base_vdi_id: base,
                snapshot: true,
                ..NewVdi::default()
            },
        )
    }

    fn clone_of(&mut self, name: &str, base: u32) -> Reply {
        let size = self.c.inode_header(base).map_or(0, |h| h.vdi_size);
        self.new_vdi(
            name,
            NewVdi {
                vdi_size: size,
                base_vdi_id: base,
                ..NewVdi::default()
            },
        )
    }

    fn name_tag(name: &str, tag: &str) -> [u8; 512] {
        let mut p = [0u8; 512];
        encode_name_tag(name.as_bytes(), tag.as_bytes(), &mut p);
        p
    }

    fn info(&mut self, name: &str, tag: &str, snapid: u32) -> Reply {
        self.send(Request::get_vdi_info(1, snapid), &T::name_tag(name, tag))
    }

    fn del(&mut self, name: &str, tag: &str, snapid: u32) -> Reply {
        self.send(Request::del_vdi(2, snapid), &T::name_tag(name, tag))
    }

    fn create_obj(&mut self, oid: Oid, cow: Option<Oid>, off: u32, bytes: &[u8]) -> ResultCode {
        let req = Request::create_and_write(3, oid, cow, off, bytes.len() as u32, 0);
        self.send(req, bytes).result()
    }

    fn write(&mut self, oid: Oid, off: u32, bytes: &[u8]) -> ResultCode {
        let req = Request::write_obj(4, oid, off, bytes.len() as u32, 0);
        self.send(req, bytes).result()
    }

    fn read(&mut self, oid: Oid, off: u32, len: u32) -> Reply {
        self.send(Request::read_obj(5, oid, off, len), &[])
    }

    /// The 4-byte index update after a create (refcounted).
    fn set_entry(&mut self, v: u32, idx: u32, value: u32) -> ResultCode {
        let r = InodeRange::index_entry(idx).unwrap();
        self.write(inode(v), r.offset, &value.to_le_bytes())
    }

    /// What a client does to write a new object: CREATE, then the entry.
    fn write_new_object(&mut self, v: u32, idx: u32, bytes: &[u8]) {
        assert_eq!(
            self.create_obj(data(v, idx), None, 0, bytes),
            ResultCode::Success
        );
        assert_eq!(self.set_entry(v, idx, v), ResultCode::Success);
    }
}

#[test]
fn new_vdi_allocates_the_name_hash_and_writes_the_inode() {
    let mut t = T::new();
    let v = t.create("alice", 12 * MIB);
    assert_eq!(v, 0xa03907);
    assert_eq!(v, vid_hash(b"alice"));
    let r = t.new_vdi("alice", NewVdi::default());
    assert_eq!(r.result(), ResultCode::VdiExist);
    let h = t.c.inode_header(v).unwrap();
    assert_eq!(h.name(), b"alice");
    assert_eq!(h.vdi_size, 12 * MIB);
    assert_eq!((h.nr_copies, h.block_size_shift, h.snap_id), (3, 22, 1));
    assert_eq!(h.parent_vdi_id, 0);
    assert_eq!(h.vdi_id, v);
    assert_ne!(h.create_time, 0);
    assert!(t.c.is_in_use(v));
    // The response carries copies and the object size shift.
    assert!(matches!(
        t.info("alice", "", 0).header.args,
        ResponseArgs::Vdi {
            vdi_id: 0xa03907,
            copies: 3,
            block_size_shift: 22,
            ..
        }
    ));
}

#[test]
fn new_vdi_needs_a_256_byte_name() {
    let mut t = T::new();
    let mut req = Request::new_vdi(1, NewVdi::default());
    req.data_length = 512;
    assert_eq!(t.send(req, &[0u8; 512]).result(), ResultCode::InvalidParms);
}

#[test]
fn new_vdi_takes_cluster_defaults_and_request_overrides() {
    let mut t = T::with(
        ClusterConfig::default()
            .with_copies(2)
            .with_block_size_shift(20),
    );
    let r = t.new_vdi(
        "d",
        NewVdi {
            vdi_size: MIB,
            ..NewVdi::default()
        },
    );
    assert!(matches!(
        r.header.args,
        ResponseArgs::Vdi {
            copies: 2,
            block_size_shift: 20,
            ..
        }
    ));
    let r = t.new_vdi(
        "e",
        NewVdi {
            vdi_size: MIB,
            copy_policy: 0x22,
            copies: 1,
            block_size_shift: 23,
            ..NewVdi::default()
        },
    );
    // Erasure code 4:2 means six copies, whatever `copies` said.
    assert!(matches!(
        r.header.args,
        ResponseArgs::Vdi {
            copies: 6,
            block_size_shift: 23,
            ..
        }
    ));
    let def = t.send(Request::get_cluster_default(9), &[]);
    assert!(matches!(
        def.header.args,
        ResponseArgs::ClusterDefault {
            nr_copies: 2,
            copy_policy: 0,
            block_size_shift: 20
        }
    ));
}

#[test]
fn vid_allocation_probes_linearly_from_hash() {
    // Two names with the same 24-bit hash.
    assert_eq!(vid_hash(b"vdi-3498"), 0xcb532b);
    assert_eq!(vid_hash(b"vdi-30362"), 0xcb532b);
    let mut t = T::new();
    let a = t.create("vdi-3498", MIB);
    let b = t.create("vdi-30362", MIB);
    assert_eq!((a, b), (0xcb532b, 0xcb532c));
    // A snapshot of the first takes the next clear bit after the run.
    let r = t.snapshot("vdi-3498", a);
    assert_eq!(r.vdi_id(), Some(0xcb532d));
    // Both names still resolve through the shared probe run.
    assert_eq!(t.info("vdi-30362", "", 0).vdi_id(), Some(b));
    assert_eq!(t.info("vdi-3498", "", 0).vdi_id(), Some(0xcb532d));
}

#[test]
fn create_replaces_whole_object() {
    let mut t = T::new();
    let v = t.create("r", 8 * MIB);
    let o = data(v, 0);
    assert_eq!(t.create_obj(o, None, 0, &[0xaa; 1024]), ResultCode::Success);
    assert_eq!(t.create_obj(o, None, 512, b"new"), ResultCode::Success);
    let r = t.read(o, 0, 1024);
    assert!(
        r.payload[..512].iter().all(|&b| b == 0),
        "old bytes survived"
    );
    assert_eq!(&r.payload[512..515], b"new");
    assert!(r.payload[515..].iter().all(|&b| b == 0));
}

#[test]
fn create_without_payload_allocates_a_zero_object() {
    let mut t = T::new();
    let v = t.create("p", 8 * MIB);
    let mut req = Request::create_and_write(1, data(v, 1), None, 0, 0, 0);
    req.flags |= Flags::DIRECT;
    assert_eq!(t.send(req, &[]).result(), ResultCode::Success);
    let r = t.read(data(v, 1), 4 * MIB as u32 - 8, 8);
    assert_eq!((r.result(), r.payload), (ResultCode::Success, vec![0; 8]));
}

#[test]
fn cow_copies_then_overlays() {
    let mut t = T::new();
    let base = t.create("c", 8 * MIB);
    let src: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
    t.write_new_object(base, 0, &src);
    let snap_working = t.snapshot("c", base).vdi_id().unwrap();
    let o = data(snap_working, 0);
    assert_eq!(
        t.create_obj(o, Some(data(base, 0)), 100, b"XYZ"),
        ResultCode::Success
    );
    let got = t.read(o, 0, 4096).payload;
    let mut want = src.clone();
    want[100..103].copy_from_slice(b"XYZ");
    assert_eq!(got, want);
    // The source is untouched.
    assert_eq!(t.read(data(base, 0), 0, 4096).payload, src);
}

#[test]
fn cow_from_a_missing_object_is_no_obj() {
    let mut t = T::new();
    let v = t.create("m", 8 * MIB);
    let r = t.create_obj(data(v, 0), Some(data(v, 7)), 0, b"x");
    assert_eq!(r, ResultCode::NoObj);
    assert!(!t.c.object_exists(data(v, 0)));
}

#[test]
fn read_and_write_of_missing_objects_are_no_obj() {
    let mut t = T::new();
    let v = t.create("n", 8 * MIB);
    let r = t.read(data(v, 0), 0, 512);
    assert_eq!((r.result(), r.header.data_length), (ResultCode::NoObj, 0));
    assert_eq!(t.write(data(v, 0), 0, b"x"), ResultCode::NoObj);
}

#[test]
fn read_returns_exactly_data_length_with_zeros_past_the_written_extent() {
    let mut t = T::new();
    let v = t.create("z", 8 * MIB);
    t.write_new_object(v, 0, b"abc");
    let r = t.read(data(v, 0), 1, 10);
    assert_eq!(r.payload, b"bc\0\0\0\0\0\0\0\0");
    // The full inode read dog does at open.
    let r = t.read(inode(v), 0, 12_587_576);
    assert_eq!(r.payload.len(), 12_587_576);
    assert_eq!(&r.payload[4664..4668], &v.to_le_bytes());
}

#[test]
fn snapshot_makes_old_vid_readonly() {
    let mut t = T::new();
    let old = t.create("s", 8 * MIB);
    t.write_new_object(old, 0, b"before");
    let r = t.snapshot("s", old);
    assert_eq!(r.result(), ResultCode::Success);
    let new = r.vdi_id().unwrap();
    assert_eq!(new, old + 1);
    // Data objects of the snapshot are read-only, new or existing ...
    assert_eq!(t.write(data(old, 0), 0, b"x"), ResultCode::Readonly);
    assert_eq!(
        t.create_obj(data(old, 1), None, 0, b"x"),
        ResultCode::Readonly
    );
    // ... but its inode is writable.
    assert_eq!(t.write(inode(old), 256, &[0u8; 256]), ResultCode::Success);
    assert!(t.c.vdi_state(old).unwrap().snapshot);
    let (oh, nh) = (
        t.c.inode_header(old).unwrap(),
        t.c.inode_header(new).unwrap(),
    );
    assert!(oh.is_snapshot());
    assert!(!nh.is_snapshot());
    assert_eq!((nh.snap_id, nh.parent_vdi_id), (2, old));
    // The new working VDI shares the snapshot's object.
    assert_eq!(t.c.index_entry(new, 0), Some(old));
    assert_eq!(t.read(data(old, 0), 0, 6).payload, b"before");
}

#[test]
fn snapshot_behind_back_makes_client_writes_readonly() {
    let mut t = T::new();
    let v = t.create("vm", 8 * MIB);
    t.write_new_object(v, 0, b"data");
    let new = t.c.snapshot_behind_back(t.now, "vm", "nightly").unwrap();
    assert_eq!(t.write(data(v, 0), 0, b"late"), ResultCode::Readonly);
    // Re-resolving gives the new working VDI; the tag names the snapshot.
    assert_eq!(t.info("vm", "", 0).vdi_id(), Some(new));
    assert_eq!(t.info("vm", "nightly", 0).vdi_id(), Some(v));
    // Writing through COW to the new VID works.
    let r = t.create_obj(data(new, 0), Some(data(v, 0)), 0, b"late");
    assert_eq!(r, ResultCode::Success);
}

#[test]
fn rebase_turns_the_working_vdi_into_a_snapshot() {
    let mut t = T::new();
    let v1 = t.create("rb", 8 * MIB);
    let v2 = t.snapshot("rb", v1).vdi_id().unwrap();
    // NEW_VDI(snapshot flag, base = the snapshot v1): rollback.
    let r = t.snapshot("rb", v1);
    assert_eq!(r.result(), ResultCode::Success);
    let v3 = r.vdi_id().unwrap();
    assert_eq!(v3, v2 + 1);
    assert!(t.c.inode_header(v2).unwrap().is_snapshot());
    assert!(t.c.vdi_state(v2).unwrap().snapshot);
    let h3 = t.c.inode_header(v3).unwrap();
    assert_eq!((h3.parent_vdi_id, h3.snap_id), (v1, 3));
    assert_eq!(t.info("rb", "", 0).vdi_id(), Some(v3));
}

#[test]
fn snapshot_of_a_missing_working_vdi_is_no_vdi() {
    let mut t = T::new();
    let r = t.new_vdi(
        "ghost",
        NewVdi {
            base_vdi_id: 0x123,
            snapshot: true,
            ..NewVdi::default()
        },
    );
    assert_eq!(r.result(), ResultCode::NoVdi);
}

#[test]
fn clone_copies_the_index_and_keeps_its_own_name() {
    let mut t = T::new();
    let base = t.create("gold", 8 * MIB);
    t.write_new_object(base, 1, b"shared");
    t.snapshot("gold", base);
    let r = t.clone_of("copy", base);
    assert_eq!(r.result(), ResultCode::Success);
    let c = r.vdi_id().unwrap();
    let h = t.c.inode_header(c).unwrap();
    assert_eq!((h.snap_id, h.parent_vdi_id), (1, base));
    assert!(h.is_clone());
    assert_eq!(t.c.index_entry(c, 1), Some(base));
    let r = t.clone_of("copy2", 0x42);
    assert_eq!(r.result(), ResultCode::BaseVdiRead);
}

#[test]
fn lookup_prefers_newest_name_match() {
    let mut t = T::new();
    let v1 = t.create("l", 8 * MIB);
    t.write(inode(v1), 256, &T::name_tag("same", "")[..256]);
    let v2 = t.snapshot("l", v1).vdi_id().unwrap();
    t.write(inode(v2), 256, &T::name_tag("same", "")[..256]);
    let v3 = t.snapshot("l", v2).vdi_id().unwrap();
    // Two snapshots carry tag "same": the newer one wins.
    assert_eq!(t.info("l", "same", 0).vdi_id(), Some(v2));
    // By snap_id.
    assert_eq!(t.info("l", "", 1).vdi_id(), Some(v1));
    assert_eq!(t.info("l", "", 2).vdi_id(), Some(v2));
    // No selector: the working VDI.
    assert_eq!(t.info("l", "", 0).vdi_id(), Some(v3));
}

#[test]
fn lookup_distinguishes_no_tag_from_no_vdi() {
    let mut t = T::new();
    t.create("k", 8 * MIB);
    assert_eq!(t.info("k", "nope", 0).result(), ResultCode::NoTag);
    assert_eq!(t.info("k", "", 9).result(), ResultCode::NoTag);
    assert_eq!(t.info("other", "", 0).result(), ResultCode::NoVdi);
    assert_eq!(t.info("other", "tag", 0).result(), ResultCode::NoVdi);
    // Only 256 (name) or 512 (name + tag) bytes are accepted.
    let mut req = Request::get_vdi_info(1, 0);
    req.data_length = 300;
    assert_eq!(t.send(req, &[0; 300]).result(), ResultCode::InvalidParms);
    let mut req = Request::get_vdi_info(1, 0);
    req.data_length = 256;
    assert_eq!(
        t.send(req, &T::name_tag("k", "")[..256]).result(),
        ResultCode::Success
    );
}

#[test]
fn del_vdi_keeps_inode_while_index_not_empty() {
    let mut t = T::new();
    let v = t.create("busy", 8 * MIB);
    t.write_new_object(v, 0, b"x");
    let r = t.del("busy", "", 0);
    assert_eq!((r.result(), r.vdi_id()), (ResultCode::Success, Some(v)));
    assert!(t.c.is_deleted(v));
    assert!(t.c.vdi_state(v).unwrap().deleted);
    // The inode still owns the name: a new VDI of that name is refused.
    assert_eq!(t.c.inode_header(v).unwrap().name(), b"busy");
    assert!(t.c.object_exists(data(v, 0)));
    let r = t.new_vdi(
        "busy",
        NewVdi {
            vdi_size: MIB,
            ..NewVdi::default()
        },
    );
    assert_eq!(r.result(), ResultCode::VdiExist);
}

#[test]
fn del_vdi_tombstones_an_inode_whose_index_was_zeroed() {
    let mut t = T::new();
    let v = t.create("gone", 8 * MIB);
    t.write_new_object(v, 0, b"x");
    t.write(inode(v), 256, &T::name_tag("t", "")[..256]);
    assert_eq!(t.set_entry(v, 0, 0), ResultCode::Success);
    assert_eq!(t.del("gone", "", 0).vdi_id(), Some(v));
    let h = t.c.inode_header(v).unwrap();
    assert!(h.is_deleted());
    assert_eq!(h.vdi_size, 0);
    assert_eq!(h.tag(), b"t", "the tag stays");
    assert!(t.c.is_in_use(v), "bits are never cleared");
    assert_eq!(t.info("gone", "", 0).result(), ResultCode::NoVdi);
    // The name is free again; the old VID keeps its bit.
    assert_eq!(t.create("gone", MIB), v + 1);
}

#[test]
fn recreating_a_deleted_name_continues_its_snapshot_ids() {
    let mut t = T::new();
    let v1 = t.create("h", 8 * MIB);
    let v2 = t.snapshot("h", v1).vdi_id().unwrap();
    t.del("h", "", 0);
    assert!(t.c.inode_header(v2).unwrap().is_deleted());
    // The newest match is now a snapshot: no working VDI.
    assert_eq!(t.info("h", "", 0).result(), ResultCode::NoVdi);
    let v3 = t.create("h", MIB);
    assert_eq!(t.c.inode_header(v3).unwrap().snap_id, 2);
}

#[test]
fn index_zeroing_frees_unshared_objects() {
    let mut t = T::new();
    let v = t.create("f", 8 * MIB);
    t.write_new_object(v, 0, b"x");
    t.write_new_object(v, 1, b"y");
    // One range write zeroing both entries.
    let r = InodeRange::index_run(0, 2).unwrap();
    assert_eq!(t.write(inode(v), r.offset, &[0; 8]), ResultCode::Success);
    assert!(!t.c.object_exists(data(v, 0)));
    assert!(!t.c.object_exists(data(v, 1)));
}

#[test]
fn index_writes_from_offset_zero_skip_reference_counting() {
    let mut t = T::new();
    let v = t.create("leak", 8 * MIB);
    t.write_new_object(v, 0, b"x");
    let mut header_and_entry = t.read(inode(v), 0, HEADER_LEN as u32 + 4).payload;
    header_and_entry[HEADER_LEN..].fill(0);
    assert_eq!(t.write(inode(v), 0, &header_and_entry), ResultCode::Success);
    assert_eq!(t.c.index_entry(v, 0), Some(0));
    assert!(t.c.object_exists(data(v, 0)), "leaked, as on sheep");
}

#[test]
fn objects_shared_with_a_snapshot_live_until_the_last_reference_goes() {
    let mut t = T::new();
    let s = t.create("g", 8 * MIB);
    t.write_new_object(s, 0, b"x");
    let w = t.snapshot("g", s).vdi_id().unwrap();
    // The working VDI drops its reference (discard): still shared.
    assert_eq!(t.set_entry(w, 0, 0), ResultCode::Success);
    assert!(t.c.object_exists(data(s, 0)));
    // The snapshot drops the last one.
    assert_eq!(t.set_entry(s, 0, 0), ResultCode::Success);
    assert!(!t.c.object_exists(data(s, 0)));
    assert_eq!(t.c.ledger(data(s, 0)), None);
}

#[test]
fn cow_replacement_frees_the_old_object_once_nobody_uses_it() {
    let mut t = T::new();
    let s = t.create("q", 8 * MIB);
    t.write_new_object(s, 0, b"x");
    let w = t.snapshot("q", s).vdi_id().unwrap();
    assert_eq!(
        t.create_obj(data(w, 0), Some(data(s, 0)), 0, b"y"),
        ResultCode::Success
    );
    assert_eq!(t.set_entry(w, 0, w), ResultCode::Success);
    assert!(t.c.object_exists(data(s, 0)), "the snapshot still uses it");
    // Delete the snapshot as dog does: zero its index, then DEL_VDI.
    assert_eq!(t.set_entry(s, 0, 0), ResultCode::Success);
    assert!(!t.c.object_exists(data(s, 0)));
    t.write(inode(s), 256, &T::name_tag("old", "")[..256]);
    assert_eq!(t.del("q", "old", 0).result(), ResultCode::Success);
    assert!(t.c.inode_header(s).unwrap().is_deleted());
    assert_eq!(t.read(data(w, 0), 0, 1).payload, b"y");
}

#[test]
fn discard_obj_clears_the_entry_and_frees_the_object() {
    let mut t = T::new();
    let v = t.create("dsc", 8 * MIB);
    t.write_new_object(v, 3, b"x");
    let r = t.send(Request::discard_obj(1, data(v, 3)), &[]);
    assert_eq!(r.result(), ResultCode::Success);
    assert_eq!(t.c.index_entry(v, 3), Some(0));
    assert!(!t.c.object_exists(data(v, 3)));
    // Nothing to discard: still SUCCESS. Unknown VDI: NO_OBJ.
    let r = t.send(Request::discard_obj(1, data(v, 4)), &[]);
    assert_eq!(r.result(), ResultCode::Success);
    let r = t.send(Request::discard_obj(1, data(0x77, 0)), &[]);
    assert_eq!(r.result(), ResultCode::NoObj);
}

#[test]
fn locked_vdi_refuses_second_lock() {
    let mut t = T::with(ClusterConfig::default().with_locking(true));
    let v = t.create("lk", 8 * MIB);
    let lock = |t: &mut T| {
        t.send(
            Request::lock_vdi(1, 0, LockType::Normal),
            &T::name_tag("lk", ""),
        )
    };
    let r = lock(&mut t);
    assert_eq!((r.result(), r.vdi_id()), (ResultCode::Success, Some(v)));
    assert_eq!(t.c.vdi_state(v).unwrap().lock, LockState::Locked);
    // Locked in any mode, even by the same gateway.
    assert_eq!(lock(&mut t).result(), ResultCode::VdiLocked);
    let shared = t.send(
        Request::lock_vdi(1, 0, LockType::Shared),
        &T::name_tag("lk", ""),
    );
    assert_eq!(shared.result(), ResultCode::VdiLocked);
    // Release by VID, then the lock can be taken again.
    let r = t.send(Request::release_vdi(2, v, LockType::Normal), &[]);
    assert_eq!(r.result(), ResultCode::Success);
    assert_eq!(lock(&mut t).result(), ResultCode::Success);
    // Lookups of missing VDIs fail as GET_VDI_INFO does.
    let r = t.send(
        Request::lock_vdi(1, 0, LockType::Normal),
        &T::name_tag("nope", ""),
    );
    assert_eq!(r.result(), ResultCode::NoVdi);
}

#[test]
fn locks_are_not_taken_unless_the_cluster_uses_locking() {
    let mut t = T::new();
    t.create("free", 8 * MIB);
    for _ in 0..2 {
        let r = t.send(
            Request::lock_vdi(1, 0, LockType::Normal),
            &T::name_tag("free", ""),
        );
        assert_eq!(r.result(), ResultCode::Success);
    }
    let r = t.send(Request::release_vdi(2, 0x999, LockType::Normal), &[]);
    assert_eq!(r.result(), ResultCode::Success);
}

#[test]
fn proto_ver_rules_of_queue_request() {
    let mut t = T::new();
    let v = t.create("pv", 8 * MIB);
    for (pv, want) in [
        (0, ResultCode::Success),
        (1, ResultCode::Success),
        (2, ResultCode::Success),
        (3, ResultCode::VerMismatch),
        (0x0a, ResultCode::VerMismatch),
    ] {
        let mut req = Request::read_obj(1, inode(v), 0, 4664);
        req.proto_ver = pv;
        let r = t.send(req, &[]);
        assert_eq!(r.result(), want, "proto_ver {pv}");
        if want != ResultCode::Success {
            assert_eq!(r.header.data_length, 0);
        }
    }
    let node_list = |pv| Request {
        proto_ver: pv,
        opcode: Opcode::GetNodeList,
        flags: Flags::NONE,
        epoch: 0,
        id: 3,
        data_length: 491_520,
        args: RequestArgs::Raw([0; 32]),
    };
    assert_eq!(t.send(node_list(2), &[]).result(), ResultCode::VerMismatch);
    let r = t.send(node_list(0x0a), &[]);
    assert_eq!((r.result(), r.payload.len()), (ResultCode::Success, 80));
    let mut unknown = node_list(2);
    unknown.opcode = Opcode::Unknown(0x7f);
    assert_eq!(t.send(unknown, &[]).result(), ResultCode::InvalidParms);
}

#[test]
fn bitmaps_need_exactly_two_mib_and_read_del_vdis_needs_proto_0x0a() {
    let mut t = T::new();
    let v = t.create("bm", MIB);
    t.del("bm", "", 0);
    let r = t.send(Request::read_vdis(1), &[]);
    assert_eq!(r.payload.len(), VDI_BITMAP_LEN);
    assert_eq!(r.payload[(v >> 3) as usize] >> (v & 7) & 1, 1);
    let r = t.send(Request::read_del_vdis(1), &[]);
    assert_eq!(r.payload[(v >> 3) as usize] >> (v & 7) & 1, 1);
    let mut short = Request::read_vdis(1);
    short.data_length = 4096;
    assert_eq!(t.send(short, &[]).result(), ResultCode::InvalidParms);
    let mut old = Request::read_del_vdis(1);
    old.proto_ver = 2;
    assert_eq!(t.send(old, &[]).result(), ResultCode::VerMismatch);
}

#[test]
fn flush_vdi_is_always_invalid_parms_and_release_always_succeeds() {
    let mut t = T::new();
    let flush = Request {
        proto_ver: 2,
        opcode: Opcode::FlushVdi,
        flags: Flags::NONE,
        epoch: 0,
        id: 1,
        data_length: 0,
        args: RequestArgs::Empty,
    };
    assert_eq!(t.send(flush, &[]).result(), ResultCode::InvalidParms);
    let r = t.send(Request::release_vdi(1, 12345, LockType::Shared), &[]);
    assert_eq!(r.result(), ResultCode::Success);
}

#[test]
fn injected_faults_answer_the_next_matching_requests() {
    let mut t = T::new();
    let v = t.create("ft", 8 * MIB);
    t.write_new_object(v, 0, b"x");
    let o = data(v, 0);
    t.c.inject(
        Matcher::opcode(Opcode::WriteObj).oid(o),
        FaultAction::Fail(ResultCode::WaitForJoin),
        2,
    );
    assert_eq!(
        t.read(o, 0, 1).result(),
        ResultCode::Success,
        "reads are not matched"
    );
    assert_eq!(t.write(o, 0, b"a"), ResultCode::WaitForJoin);
    assert_eq!(t.write(o, 0, b"b"), ResultCode::WaitForJoin);
    assert_eq!(t.read(o, 0, 1).payload, b"x", "failed writes did nothing");
    assert_eq!(t.write(o, 0, b"c"), ResultCode::Success);
    // Applied, but answered with an error.
    t.c.inject(
        Matcher::object(o),
        FaultAction::ApplyThenFail(ResultCode::Halt),
        1,
    );
    assert_eq!(t.write(o, 0, b"d"), ResultCode::Halt);
    assert_eq!(t.read(o, 0, 1).payload, b"d");
    // Disconnects are flagged for the TCP wrapper.
    t.c.inject(Matcher::any(), FaultAction::Disconnect, 1);
    assert!(t.read(o, 0, 1).disconnect);
    assert_eq!(t.c.pending_faults(), 0);
}

#[test]
fn a_waiting_cluster_answers_only_force_ops() {
    let mut t = T::new();
    t.c.set_status(ClusterStatus::Wait);
    assert_eq!(t.info("x", "", 0).result(), ResultCode::WaitForJoin);
    assert_eq!(
        t.send(Request::read_vdis(1), &[]).result(),
        ResultCode::Success
    );
    t.c.set_status(ClusterStatus::Ok);
    assert_eq!(t.info("x", "", 0).result(), ResultCode::NoVdi);
}

#[test]
fn strict_bounds_refuse_io_past_the_object() {
    let mut t = T::with(ClusterConfig::default().with_strict_bounds(true));
    let v = t.create("b", 8 * MIB);
    let end = (4 * MIB) as u32;
    assert_eq!(
        t.create_obj(data(v, 0), None, end - 1, b"xy"),
        ResultCode::InvalidParms
    );
    assert_eq!(
        t.create_obj(data(v, 0), None, end - 2, b"xy"),
        ResultCode::Success
    );
    assert_eq!(
        t.read(data(v, 0), end - 1, 2).result(),
        ResultCode::InvalidParms
    );
}

#[test]
fn vdi_attributes_can_be_set_read_and_deleted() {
    let mut t = T::new();
    t.create("at", MIB);
    let attr = |flags: Flags, value: &[u8]| {
        let mut p = vec![0u8; 66_320];
        p[..2].copy_from_slice(b"at");
        p[528..531].copy_from_slice(b"key");
        p[524..528].copy_from_slice(&(value.len() as u32).to_le_bytes());
        p[784..784 + value.len()].copy_from_slice(value);
        let req = Request {
            proto_ver: 0x0a,
            opcode: Opcode::GetVdiAttr,
            flags: Flags::WRITE | flags,
            epoch: 0,
            id: 1,
            data_length: p.len() as u32,
            args: RequestArgs::Vdi(Default::default()),
        };
        (req, p)
    };
    let (req, p) = attr(Flags::CREAT, b"value");
    let r = t.send(req, &p);
    assert_eq!(r.result(), ResultCode::Success);
    let (hvid, attr_id) = match r.header.args {
        ResponseArgs::Vdi {
            vdi_id, attr_id, ..
        } => (vdi_id, attr_id),
        _ => unreachable!(),
    };
    assert_eq!(hvid, vid_hash(b"at"));
    let stored = t.read(Oid::attr(vid(hvid), attr_id), 784, 5).payload;
    assert_eq!(stored, b"value");
    let (req, p) = attr(Flags::CREAT | Flags::EXCL, b"other");
    assert_eq!(t.send(req, &p).result(), ResultCode::VdiExist);
    let (req, p) = attr(Flags::NONE, b"");
    assert_eq!(t.send(req, &p).result(), ResultCode::Success);
    let (req, p) = attr(Flags::DEL, b"");
    assert_eq!(t.send(req, &p).result(), ResultCode::Success);
    let (req, p) = attr(Flags::NONE, b"");
    assert_eq!(t.send(req, &p).result(), ResultCode::NoObj);
}

#[test]
fn a_directory_store_keeps_vdis_and_objects_across_restarts() {
    let dir = std::env::temp_dir().join(format!("sheep-ref-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let open = || {
        let store = DirStore::open(&dir).unwrap();
        Cluster::with_store(ClusterConfig::default(), Box::new(store)).unwrap()
    };
    let mut t = T {
        c: open(),
        now: 1 << 32,
    };
    let v = t.create("disk", 8 * MIB);
    t.write_new_object(v, 0, b"persist");
    let w = t.snapshot("disk", v).vdi_id().unwrap();
    drop(t);
    let mut t = T {
        c: open(),
        now: 2 << 32,
    };
    assert_eq!(t.info("disk", "", 0).vdi_id(), Some(w));
    assert_eq!(t.read(data(v, 0), 0, 7).payload, b"persist");
    assert_eq!(t.write(data(v, 0), 0, b"x"), ResultCode::Readonly);
    // Reference counts survived: dropping both references frees the object.
    assert_eq!(t.set_entry(w, 0, 0), ResultCode::Success);
    drop(t);
    let mut t = T {
        c: open(),
        now: 3 << 32,
    };
    assert!(t.c.object_exists(data(v, 0)));
    assert_eq!(t.set_entry(v, 0, 0), ResultCode::Success);
    assert!(!t.c.object_exists(data(v, 0)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_requests_never_panic() {
    let mut t = T::new();
    let v = t.create("fz", 8 * MIB);
    t.write_new_object(v, 0, b"x");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let opcodes = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x82, 0x86,
        0x87, 0x89, 0xab, 0xbe, 0xc9, 0x7f, 0xff,
    ];
    for _ in 0..3000 {
        let mut header = [0u8; 48];
        for b in header.iter_mut() {
            *b = next() as u8;
        }
        header[1] = opcodes[next() as usize % opcodes.len()];
        header[0] = [0, 1, 2, 0x0a][next() as usize % 4];
        // Keep lengths small, and oids near the VDI, so ops get deep.
        let len = (next() % 5000) as u32;
        header[12..16].copy_from_slice(&len.to_le_bytes());
        if next() % 2 == 0 {
            header[16..24].copy_from_slice(&data(v, (next() % 3) as u32).0.to_le_bytes());
        }
        let req = Request::parse_bytes(&header).unwrap();
        let payload: Vec<u8> = (0..req.payload_len()).map(|_| next() as u8).collect();
        let r = t.send(req, &payload);
        assert_eq!(r.payload.len(), r.header.data_length as usize);
    }
}

#[test]
fn hyper_volume_delete_removes_its_own_objects() {
    let mut t = T::new();
    let r = t.new_vdi(
        "hv",
        NewVdi {
            vdi_size: 1 << 40,
            store_policy: 1,
            ..NewVdi::default()
        },
    );
    let v = r.vdi_id().unwrap();
    // The server initialised an empty depth-1 B-tree root.
    let root = t.read(inode(v), HEADER_LEN as u32, 8).payload;
    assert_eq!(root, [0x74, 0x62, 1, 0, 0, 0, 0, 0]);
    // A client adds object 5 and writes the root with the header (from
    // offset 0, as dog does, so no reference counting runs).
    assert_eq!(t.create_obj(data(v, 5), None, 0, b"x"), ResultCode::Success);
    let mut head = t.read(inode(v), 0, HEADER_LEN as u32 + 16).payload;
    head[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&1u32.to_le_bytes());
    head[HEADER_LEN + 8..HEADER_LEN + 12].copy_from_slice(&5u32.to_le_bytes());
    head[HEADER_LEN + 12..HEADER_LEN + 16].copy_from_slice(&v.to_le_bytes());
    assert_eq!(t.write(inode(v), 0, &head), ResultCode::Success);
    assert_eq!(t.del("hv", "", 0).result(), ResultCode::Success);
    assert!(!t.c.object_exists(data(v, 5)));
    assert!(t.c.inode_header(v).unwrap().is_deleted());
}

#[test]
fn a_directory_without_saved_state_is_rebuilt_from_its_inodes() {
    let dir = std::env::temp_dir().join(format!("sheep-ref-rebuild-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let open = || {
        let store = DirStore::open(&dir).unwrap();
        Cluster::with_store(ClusterConfig::default(), Box::new(store)).unwrap()
    };
    let mut t = T {
        c: open(),
        now: 1 << 32,
    };
    let v = t.create("rb", 8 * MIB);
    let w = t.snapshot("rb", v).vdi_id().unwrap();
    drop(t);
    std::fs::remove_file(dir.join("cluster.meta")).unwrap();
    let mut t = T {
        c: open(),
        now: 2 << 32,
    };
    assert_eq!(t.info("rb", "", 0).vdi_id(), Some(w));
    assert!(t.c.vdi_state(v).unwrap().snapshot);
    assert_eq!(t.write(data(v, 0), 0, b"x"), ResultCode::Readonly);
    let _ = std::fs::remove_dir_all(&dir);
}
