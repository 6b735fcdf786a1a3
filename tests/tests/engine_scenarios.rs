//! The volume engine against the pure reference server, one scenario per
//! rule of PROTOCOL.md §9 and §12. Each test is named after what it proves;
//! together they read as the engine's specification.
//!
//! The engine talks to [`Cluster`] over the simulated [`Wire`]. What the
//! engine sent is taken from the wire's recording (every request as the
//! server saw it, with the result it got); what it achieved is checked on
//! the server itself, not only through the engine's own reads.

use std::collections::HashMap;
use std::ops::Range;

use sheepdog_core::address::{encode_name_tag, Snapshot};
use sheepdog_core::btree;
use sheepdog_core::engine::{ControlDone, CreateOptions, Error, Event, Token};
use sheepdog_core::error::SizeError;
use sheepdog_core::hash::vid_hash;
use sheepdog_core::inode;
use sheepdog_core::list::ListEntry;
use sheepdog_core::oid::{Oid, Vid};
use sheepdog_core::wire::{Flags, LockType, NewVdi, Opcode, Request, ResultCode, NAME_TAG_LEN};
use sheepdog_tests::server::{Cluster, ClusterConfig, FaultAction, LockState, Matcher, Restore};
use sheepdog_tests::sim::rng::Rng;
use sheepdog_tests::sim::wire::Wire;

mod scenario;
use scenario::*;

// ===== reads ==========================================================================

#[test]
fn unallocated_objects_read_as_zeros_without_a_request() {
    let mut w = wire();
    let vid = create(&mut w, "disk", 8 * OBJ);
    open(&mut w, "disk");
    record(&mut w);
    let got = read(&mut w, 0, 8 * OBJ).unwrap();
    assert!(got.iter().all(|&b| b == 0), "holes read as zeros");
    assert!(recorded(&mut w).is_empty(), "no request for holes");

    // One allocated object among holes: only it is read.
    let bytes = pattern(1, 1000);
    write(&mut w, 2 * OBJ + 100, &bytes).unwrap();
    record(&mut w);
    let got = read(&mut w, OBJ, 3 * OBJ).unwrap();
    let seen = recorded(&mut w);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].is(Opcode::ReadObj, data(vid, 2)));
    let mut want = vec![0u8; 3 * OBJ as usize];
    want[(OBJ + 100) as usize..(OBJ + 1100) as usize].copy_from_slice(&bytes);
    assert_same(&got, &want, "read across holes");
}

#[test]
fn reads_of_shared_objects_go_to_the_ancestor() {
    let mut w = wire();
    create(&mut w, "vm", 4 * OBJ);
    open(&mut w, "vm");
    let before = pattern(2, 2 * OBJ);
    write(&mut w, 0, &before).unwrap();
    let (snap, working) = snapshot(&mut w, "s1");
    assert_eq!(w.engine.volume().unwrap().vid, working);

    // Object 1 is shared with the snapshot: read from the snapshot's object.
    record(&mut w);
    let got = read(&mut w, OBJ + 10, 5000).unwrap();
    let seen = recorded(&mut w);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].is(Opcode::ReadObj, data(snap, 1)), "{seen:?}");
    assert_eq!(seen[0].req.obj().unwrap().offset, 10);
    assert_same(
        &got,
        &before[(OBJ + 10) as usize..(OBJ + 5010) as usize],
        "shared",
    );

    // Object 0 after a write is the working VDI's own.
    write(&mut w, 0, &[1; 512]).unwrap();
    record(&mut w);
    read(&mut w, 0, 512).unwrap();
    let seen = recorded(&mut w);
    assert!(seen[0].is(Opcode::ReadObj, data(working, 0)), "{seen:?}");

    // A clone of the snapshot reads the snapshot's objects as well.
    close(&mut w);
    open_snapshot(&mut w, "vm", "s1");
    let clone = match control(&mut w, |e| e.clone_snapshot("copy")) {
        ControlDone::Cloned { vid } => vid,
        other => panic!("{other:?}"),
    };
    close(&mut w);
    assert_eq!(open(&mut w, "copy").vid, clone);
    record(&mut w);
    let got = read(&mut w, 0, 2 * OBJ).unwrap();
    let seen = recorded(&mut w);
    assert!(seen.iter().all(|s| s.req.opcode == Opcode::ReadObj));
    let oids: Vec<Oid> = seen.iter().filter_map(Seen::oid).collect();
    assert!(oids.contains(&data(snap, 0)) && oids.contains(&data(snap, 1)));
    assert_same(&got, &before, "clone reads the snapshot");
}

#[test]
fn responses_in_any_order_are_matched_by_id() {
    let mut reordered = false;
    for seed in 1..=5 {
        let mut w = small_objects(seed);
        w.faults.reorder = true;
        create(&mut w, "disk", 16 * MIB);
        open(&mut w, "disk");
        let contents = pattern(seed, 16 * MIB);
        write(&mut w, 0, &contents).unwrap();

        let mut reads = Vec::new();
        for idx in 0..16u64 {
            let off = idx * MIB + idx * 1000;
            let len = 4096 * (idx + 1);
            reads.push((submit_read(&mut w, off, len), off, len));
        }
        let mut order = Vec::new();
        let mut done = HashMap::new();
        w.drive_until(|w, ev| {
            if let Event::Done { token, .. } = ev {
                order.push(*token);
            }
            on_io_event(w, ev, &mut done);
            done.len() == 16
        });
        for (t, off, len) in reads.iter().copied() {
            assert_eq!(done[&t], Ok(()));
            let got = w.bufs.remove(&t).unwrap();
            assert_same(&got, &contents[off as usize..(off + len) as usize], "read");
        }
        let submitted: Vec<Token> = reads.iter().map(|r| r.0).collect();
        reordered |= order != submitted;
    }
    assert!(
        reordered,
        "some run completed reads out of submission order"
    );
}

// ===== writes =========================================================================

#[test]
fn first_write_to_an_object_creates_it_then_writes_its_index_entry() {
    let mut w = wire();
    let vid = create(&mut w, "disk", 8 * OBJ);
    open(&mut w, "disk");
    record(&mut w);
    let bytes = pattern(3, 4096);
    write(&mut w, 2 * OBJ + 1000, &bytes).unwrap();
    let seen = recorded(&mut w);

    let create_at = seen
        .iter()
        .position(|s| s.is(Opcode::CreateAndWriteObj, data(vid, 2)))
        .expect("a CREATE of the object");
    let c = &seen[create_at];
    assert!(!c.req.flags.contains(Flags::COW), "a plain create");
    assert_eq!(c.req.obj().unwrap().offset, 1000);
    assert_eq!(c.payload, bytes);
    let index_at = seen
        .iter()
        .position(|s| s.index_update(vid).is_some_and(|(r, _)| r.contains(&2)))
        .expect("an index write of entry 2");
    let (range, values) = seen[index_at].index_update(vid).unwrap();
    assert_eq!(values[(2 - range.start) as usize], vid);
    assert_eq!(range, 2..3, "only the new entry is written");
    assert!(create_at < index_at, "data first, then the index");

    assert!(w.cluster.object_exists(data(vid, 2)));
    assert_eq!(
        w.cluster.read_object(data(vid, 2), 1000, 4096).unwrap(),
        bytes
    );
    assert_eq!(w.cluster.index_entry(vid, 2), Some(vid));

    // The index write fails: the object exists but the entry stays 0, so
    // nobody ever sees an unindexed (garbage) object.
    w.cluster.inject(
        Matcher::opcode(Opcode::WriteObj).oid(inode_of(vid)),
        FaultAction::Fail(ResultCode::Eio),
        1,
    );
    let r = write(&mut w, 5 * OBJ, &pattern(4, 512));
    assert_eq!(
        r,
        Err(Error::Server {
            opcode: Opcode::WriteObj,
            result: ResultCode::Eio
        })
    );
    assert!(w.cluster.object_exists(data(vid, 5)));
    assert_eq!(w.cluster.index_entry(vid, 5), Some(0));
    close(&mut w);
    open(&mut w, "disk");
    assert!(read(&mut w, 5 * OBJ, 512).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn second_create_waits_for_first() {
    for seed in 1..=4 {
        let mut w = Wire::new(Cluster::new(ClusterConfig::default()), seed, INDEX_ENTRIES);
        w.faults.reorder = true;
        let vid = create(&mut w, "disk", 8 * OBJ);
        open(&mut w, "disk");
        record(&mut w);
        let a = pattern(5, 8192);
        let b = pattern(6, 8192);
        let ta = submit_write(&mut w, 3 * OBJ, &a);
        let tb = submit_write(&mut w, 3 * OBJ + 4096, &b);
        finish_ok(&mut w, &[ta, tb]);
        let seen = recorded(&mut w);

        let on_object: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.oid() == Some(data(vid, 3)))
            .collect();
        let ops: Vec<Opcode> = on_object.iter().map(|s| s.req.opcode).collect();
        assert_eq!(
            ops,
            [Opcode::CreateAndWriteObj, Opcode::WriteObj],
            "exactly one CREATE; the second write is a WRITE_OBJ"
        );
        let index_at = seen
            .iter()
            .position(|s| s.index_update(vid).is_some())
            .unwrap();
        let write_at = seen
            .iter()
            .position(|s| s.is(Opcode::WriteObj, data(vid, 3)))
            .unwrap();
        assert!(index_at < write_at, "the second waits for the first");

        let mut want = a.clone();
        want.resize(12288, 0);
        want[4096..].copy_from_slice(&b);
        assert_eq!(w.cluster.read_object(data(vid, 3), 0, 12288).unwrap(), want);
        assert_same(&read(&mut w, 3 * OBJ, 12288).unwrap(), &want, "read back");
    }
}

#[test]
fn index_updates_are_batched_into_runs() {
    let mut w = small_objects(1);
    let vid = create(&mut w, "disk", 32 * MIB);
    open(&mut w, "disk");
    record(&mut w);
    let bytes = pattern(7, 32 * MIB);
    write(&mut w, 0, &bytes).unwrap();
    let seen = recorded(&mut w);
    let creates = seen
        .iter()
        .filter(|s| s.req.opcode == Opcode::CreateAndWriteObj)
        .count();
    assert_eq!(creates, 32);
    let runs: Vec<(Range<u32>, Vec<u32>)> =
        seen.iter().filter_map(|s| s.index_update(vid)).collect();
    assert!(
        runs.len() < 32 / 2,
        "{} index writes for 32 objects: {:?}",
        runs.len(),
        runs.iter().map(|r| r.0.clone()).collect::<Vec<_>>()
    );
    let written: u32 = runs.iter().map(|r| r.0.len() as u32).sum();
    assert_eq!(written, 32, "each entry is written once");
    for (_, values) in &runs {
        assert!(values.iter().all(|&v| v == vid));
    }
    for idx in 0..32 {
        assert_eq!(w.cluster.index_entry(vid, idx), Some(vid));
    }
    assert_same(&server_contents(&w.cluster, vid), &bytes, "server");
}

#[test]
fn write_to_clone_copies_on_write_from_the_snapshot() {
    let mut w = wire();
    create(&mut w, "base", 4 * OBJ);
    open(&mut w, "base");
    let before = pattern(8, 2 * OBJ);
    write(&mut w, 0, &before).unwrap();
    let (snap, _) = snapshot(&mut w, "s1");
    close(&mut w);
    let info = open_snapshot(&mut w, "base", "s1");
    assert!(info.snapshot && info.vid == snap);
    let clone = match control(&mut w, |e| e.clone_snapshot("clone")) {
        ControlDone::Cloned { vid } => vid,
        other => panic!("{other:?}"),
    };
    close(&mut w);
    let info = open(&mut w, "clone");
    assert_eq!((info.vid, info.parent), (clone, snap));

    record(&mut w);
    let patch = pattern(9, 4096);
    write(&mut w, 8192, &patch).unwrap();
    let seen = recorded(&mut w);
    let cow = seen
        .iter()
        .find(|s| s.is(Opcode::CreateAndWriteObj, data(clone, 0)))
        .expect("a CREATE of the clone's object");
    let a = cow.req.obj().unwrap();
    assert!(cow.req.flags.contains(Flags::COW));
    assert_eq!(a.cow_oid, data(snap, 0));
    assert_eq!((a.offset, cow.req.data_length), (8192, 4096));
    assert!(!seen
        .iter()
        .any(|s| s.writes_data() && s.oid() == Some(data(snap, 0))));

    let mut want = before.clone();
    want[8192..8192 + 4096].copy_from_slice(&patch);
    assert_same(&read(&mut w, 0, 2 * OBJ).unwrap(), &want, "the clone");
    assert_same(
        &server_contents(&w.cluster, clone)[..2 * OBJ as usize],
        &want,
        "the clone on the server",
    );
    assert_eq!(w.cluster.index_entry(clone, 0), Some(clone));
    assert_eq!(w.cluster.index_entry(clone, 1), Some(snap), "still shared");
    assert_same(
        &server_contents(&w.cluster, snap)[..2 * OBJ as usize],
        &before,
        "the snapshot is unchanged",
    );
}

#[test]
fn a_failed_write_is_reported_and_not_retried() {
    let mut w = wire();
    let vid = create(&mut w, "disk", 2 * OBJ);
    open(&mut w, "disk");
    w.cluster.inject(
        Matcher::opcode(Opcode::CreateAndWriteObj),
        FaultAction::Fail(ResultCode::NoSpace),
        2,
    );
    record(&mut w);
    let r = write(&mut w, 0, &[7; 4096]);
    assert_eq!(
        r,
        Err(Error::Server {
            opcode: Opcode::CreateAndWriteObj,
            result: ResultCode::NoSpace
        })
    );
    assert_eq!(w.cluster.pending_faults(), 1, "sent once");
    assert!(recorded(&mut w)
        .iter()
        .all(|s| s.index_update(vid).is_none()));
    assert_eq!(w.cluster.index_entry(vid, 0), Some(0));
    w.cluster.clear_faults();
    write(&mut w, 0, &[7; 4096]).unwrap();
    assert_eq!(read(&mut w, 0, 4096).unwrap(), vec![7; 4096]);
}

#[test]
fn lost_acknowledgements_are_resent_harmlessly() {
    let mut w = wire();
    create(&mut w, "vm", 4 * OBJ);
    open(&mut w, "vm");
    let before = pattern(10, 2 * OBJ);
    write(&mut w, 0, &before).unwrap();
    let (_, working) = snapshot(&mut w, "s");
    // The COW create, the index write and a plain write are each applied
    // but answered with a transient result: the resends change nothing.
    w.cluster.inject(
        Matcher::opcode(Opcode::CreateAndWriteObj),
        FaultAction::ApplyThenFail(ResultCode::WaitForJoin),
        1,
    );
    w.cluster.inject(
        Matcher::opcode(Opcode::WriteObj).oid(inode_of(working)),
        FaultAction::ApplyThenFail(ResultCode::WaitForJoin),
        1,
    );
    let patch = pattern(11, 3000);
    write(&mut w, 100, &patch).unwrap();
    w.cluster.inject(
        Matcher::opcode(Opcode::WriteObj).oid(data(working, 0)),
        FaultAction::ApplyThenFail(ResultCode::Halt),
        1,
    );
    write(&mut w, 200, &patch).unwrap();
    assert_eq!(w.cluster.pending_faults(), 0);
    let mut want = before.clone();
    want.resize(4 * OBJ as usize, 0);
    want[100..3100].copy_from_slice(&patch);
    want[200..3200].copy_from_slice(&patch);
    assert_same(&server_contents(&w.cluster, working), &want, "server");
    assert_same(&read(&mut w, 0, 4 * OBJ).unwrap(), &want, "read back");
}

#[test]
fn close_lets_writes_in_flight_finish_first() {
    let mut w = wire();
    let vid = create(&mut w, "disk", 4 * OBJ);
    open(&mut w, "disk");
    let bytes = pattern(12, 3 * OBJ);
    let t = submit_write(&mut w, 0, &bytes);
    w.engine.close().unwrap();
    let (mut wrote, mut closed) = (None, false);
    w.drive_until(|_, ev| {
        match ev {
            Event::Done { token, result } if *token == t => wrote = Some(*result),
            Event::DataDone { token } if *token == t => {}
            Event::Control(ControlDone::Closed) => closed = true,
            other => panic!("unexpected {other:?}"),
        }
        wrote.is_some() && closed
    });
    assert_eq!(wrote, Some(Ok(())));
    assert!(w.engine.volume().is_none());
    assert_same(
        &server_contents(&w.cluster, vid)[..3 * OBJ as usize],
        &bytes,
        "server",
    );
}

// ===== snapshots behind the engine's back (READONLY) ===================================

#[test]
fn snapshot_taken_behind_our_back_redirects_the_write_as_cow() {
    let mut w = wire();
    let old = create(&mut w, "vm", 4 * OBJ);
    open(&mut w, "vm");
    let before = pattern(13, OBJ);
    write(&mut w, 0, &before).unwrap();

    let now = w.now;
    let new = w.cluster.snapshot_behind_back(now, "vm", "ext").unwrap();
    assert_ne!(new, old);

    // Spans the end of object 0 (ours, now the snapshot's) and the start of
    // object 1 (a hole).
    record(&mut w);
    let patch = pattern(14, 4096);
    write(&mut w, OBJ - 2048, &patch).unwrap();
    let seen = recorded(&mut w);
    assert_eq!(w.engine.volume().unwrap().vid, new, "adopted the new VID");

    for s in seen.iter().filter(|s| s.writes_data()) {
        if s.oid().unwrap().vid_bits() == old {
            assert_eq!(s.result, ResultCode::Readonly, "{s:?}");
        }
    }
    let cow = seen
        .iter()
        .find(|s| s.is(Opcode::CreateAndWriteObj, data(new, 0)) && s.result.is_success())
        .expect("COW create of the new VDI's object 0");
    assert!(cow.req.flags.contains(Flags::COW));
    assert_eq!(cow.req.obj().unwrap().cow_oid, data(old, 0));
    assert!(
        seen.iter().any(|s| s.req.opcode == Opcode::GetVdiInfo),
        "the working VDI was looked up again"
    );

    let mut want = before.clone();
    want.resize(4 * OBJ as usize, 0);
    want[(OBJ - 2048) as usize..(OBJ + 2048) as usize].copy_from_slice(&patch);
    let mut was = before.clone();
    was.resize(4 * OBJ as usize, 0);
    assert_same(&server_contents(&w.cluster, new), &want, "working VDI");
    assert_same(&server_contents(&w.cluster, old), &was, "snapshot");
    assert!(!w.cluster.object_exists(data(old, 1)));
    assert_eq!(w.cluster.index_entry(old, 1), Some(0));
    assert_eq!(w.cluster.index_entry(new, 0), Some(new));
    assert_eq!(w.cluster.index_entry(new, 1), Some(new));

    assert_same(&read(&mut w, 0, 4 * OBJ).unwrap(), &want, "read back");
    close(&mut w);
    assert_eq!(open(&mut w, "vm").vid, new);
    assert_same(&read(&mut w, 0, 4 * OBJ).unwrap(), &want, "reopened");
    close(&mut w);
    assert_eq!(open_snapshot(&mut w, "vm", "ext").vid, old);
    assert_same(&read(&mut w, 0, 4 * OBJ).unwrap(), &was, "snapshot");
}

#[test]
fn a_locked_vdi_snapshotted_behind_our_back_moves_its_lock_to_the_new_working_vdi() {
    let mut w = wire_on(ClusterConfig::default().with_locking(true));
    let old = create(&mut w, "vm", 2 * OBJ);
    assert!(matches!(
        open_at(&mut w, "vm", None, true),
        ControlDone::Opened(_)
    ));
    write(&mut w, 0, &pattern(21, 4096)).unwrap();
    assert_eq!(w.cluster.vdi_state(old).unwrap().lock, LockState::Locked);
    let now = w.now;
    let new = w.cluster.snapshot_behind_back(now, "vm", "ext").unwrap();
    // sheep leaves the lock on the VID that became the snapshot.
    assert_eq!(w.cluster.vdi_state(new).unwrap().lock, LockState::Unlocked);

    record(&mut w);
    write(&mut w, 8192, &pattern(22, 4096)).unwrap();
    let seen = recorded(&mut w);
    assert_eq!(w.engine.volume().unwrap().vid, new);
    let lock = seen.iter().position(|s| s.req.opcode == Opcode::LockVdi);
    let release = seen.iter().position(|s| s.req.opcode == Opcode::ReleaseVdi);
    let cow = seen
        .iter()
        .position(|s| s.writes_data() && s.oid().unwrap().vid_bits() == new);
    assert!(
        lock < release && release < cow,
        "lock, release, then the write: {seen:?}"
    );
    assert_eq!(w.cluster.vdi_state(new).unwrap().lock, LockState::Locked);
    assert_eq!(w.cluster.vdi_state(old).unwrap().lock, LockState::Unlocked);
    close(&mut w);
    assert_eq!(w.cluster.vdi_state(new).unwrap().lock, LockState::Unlocked);

    // Unlocked, the re-resolution takes no lock.
    let mut w = wire();
    create(&mut w, "vm", 2 * OBJ);
    open(&mut w, "vm");
    write(&mut w, 0, &pattern(23, 4096)).unwrap();
    let now = w.now;
    w.cluster.snapshot_behind_back(now, "vm", "ext").unwrap();
    record(&mut w);
    write(&mut w, 8192, &pattern(24, 4096)).unwrap();
    let seen = recorded(&mut w);
    assert!(!seen
        .iter()
        .any(|s| matches!(s.req.opcode, Opcode::LockVdi | Opcode::ReleaseVdi)));
}

/// An 8 MiB VDI on small objects, its first half written, and eight random
/// writes (from `rng_seed`) submitted but not yet sent.
struct InFlight {
    w: Wire,
    size: u64,
    /// The contents before the eight writes.
    before: Vec<u8>,
    /// The contents once they are done.
    want: Vec<u8>,
    /// (offset, bytes) of each write.
    writes: Vec<(u64, Vec<u8>)>,
    tokens: Vec<Token>,
}

fn writes_in_flight(seed: u64, rng_seed: u64) -> InFlight {
    let mut w = small_objects(seed);
    w.faults.reorder = true;
    let size = 8 * MIB;
    create(&mut w, "vm", size);
    open(&mut w, "vm");
    let mut want = pattern(seed, size / 2);
    write(&mut w, 0, &want).unwrap();
    want.resize(size as usize, 0);
    let before = want.clone();
    let mut rng = Rng::new(rng_seed);
    let mut writes = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..8 {
        let off = rng.below(size - 1);
        let len = 1 + rng.below((2 * MIB).min(size - off));
        let bytes = pattern(rng_seed * 10 + i, len);
        want[off as usize..(off + len) as usize].copy_from_slice(&bytes);
        tokens.push(submit_write(&mut w, off, &bytes));
        writes.push((off, bytes));
    }
    InFlight {
        w,
        size,
        before,
        want,
        writes,
        tokens,
    }
}

/// Writes in flight while another client snapshots: every write completes,
/// the working VDI ends up with all of them, and the snapshot holds, byte
/// by byte, either the old contents or a byte one of the writes wrote.
#[test]
fn snapshot_mid_write_loses_nothing() {
    for seed in 1..=6u64 {
        for delay in [0usize, 1, 2, 3, 5, 8, 13] {
            let ctx = format!("seed {seed}, snapshot after {delay} steps");
            let InFlight {
                mut w,
                size,
                before,
                want,
                writes,
                tokens,
            } = writes_in_flight(seed, seed * 1000 + delay as u64);
            let old = w.cluster.lookup("vm", "", 0).unwrap();
            for _ in 0..delay {
                w.step();
            }
            let now = w.now;
            let new = w.cluster.snapshot_behind_back(now, "vm", "mid").unwrap();
            let done = finish(&mut w, &tokens);
            for t in &tokens {
                assert_eq!(done[t], Ok(()), "{ctx}: write {t}");
            }
            // (The engine adopts the new VID only if a write met READONLY.)
            assert_same(&server_contents(&w.cluster, new), &want, &ctx);
            assert_same(&read(&mut w, 0, size).unwrap(), &want, &ctx);

            let snap = try_server_contents(&w.cluster, old)
                .unwrap_or_else(|e| panic!("{ctx}: the snapshot lost an object: {e}"));
            for (i, &b) in snap.iter().enumerate() {
                let at = i as u64;
                let written = writes.iter().any(|(off, bytes)| {
                    (*off..*off + bytes.len() as u64).contains(&at)
                        && bytes[(at - off) as usize] == b
                });
                assert!(
                    b == before[i] || written,
                    "{ctx}: snapshot byte {i} is neither old nor written"
                );
            }
        }
    }
}

/// How long sheep's copy of an inode takes, at most, in nanoseconds: a
/// window ends there (a retry's pause is longer).
const SNAPSHOT_WINDOW: u64 = 20_000_000;

/// A scenario around sheep's two-step snapshot: an 8 MiB VDI half written,
/// eight random writes submitted, `delay` steps, then the snapshot's first
/// step (the VDI read-only, its inode read), `inside` (given the time the
/// window opened), the second step (the index restored from the copy, the
/// new working VDI made). Every write must succeed and the new working VDI
/// hold them all, before and after opening it again.
fn snapshot_window_case(
    seed: u64,
    rng_seed: u64,
    delay: usize,
    ctx: &str,
    inside: impl FnOnce(&mut Wire, u64),
) {
    let InFlight {
        mut w,
        size,
        want,
        tokens,
        ..
    } = writes_in_flight(seed, rng_seed);
    for _ in 0..delay {
        w.step();
    }
    let now = w.now;
    let pending = w
        .cluster
        .begin_snapshot_behind_back(now, "vm", "mid")
        .unwrap();
    inside(&mut w, now);
    let new = w
        .cluster
        .finish_snapshot_behind_back(pending, Restore::All)
        .unwrap();
    let done = finish(&mut w, &tokens);
    for t in &tokens {
        assert_eq!(done[t], Ok(()), "{ctx}: write {t}");
    }
    let got = try_server_contents(&w.cluster, new)
        .unwrap_or_else(|e| panic!("{ctx}: the working VDI lost an object: {e}"));
    assert_same(&got, &want, ctx);
    assert_same(&read(&mut w, 0, size).unwrap(), &want, ctx);
    close(&mut w);
    assert_eq!(open(&mut w, "vm").vid, new, "{ctx}");
    assert_same(&read(&mut w, 0, size).unwrap(), &want, ctx);
}

/// Step the wire until the window closes (or nothing is left to do).
fn step_in_window(w: &mut Wire, opened: u64, steps: usize) {
    for _ in 0..steps {
        if w.now - opened > SNAPSHOT_WINDOW || !w.step() {
            break;
        }
    }
}

/// sheep takes a snapshot in two steps: it marks the VDI read-only, then
/// copies the inode (index included) into the new working VDI and writes
/// the copy back. An index write landing in between is lost from both, and
/// a lookup in between still names the old VID. The engine must not take
/// its entries for written when it reads them back from the old inode: it
/// waits for the new working VDI and writes them there.
#[test]
fn index_writes_inside_a_snapshots_window_reach_the_new_working_vdi() {
    for seed in 1..=3u64 {
        for delay in [0usize, 1, 3, 8] {
            for window in [1usize, 3, 8, 16] {
                let ctx = format!("seed {seed}, window opens after {delay} steps for {window}");
                let rng_seed = seed * 31 + delay as u64 * 7 + window as u64;
                snapshot_window_case(seed, rng_seed, delay, &ctx, |w, opened| {
                    step_in_window(w, opened, window)
                });
            }
        }
    }
}

/// The same with the connection dropped inside the window: index writes
/// in flight may or may not have landed, so the engine reads them back,
/// finds them on the inode, and must still check that the VDI is writable
/// before it calls them written: the snapshot's copy may overwrite them.
#[test]
fn entries_read_back_inside_a_snapshots_window_are_not_taken_for_written() {
    for seed in 1..=3u64 {
        for delay in [0usize, 1, 3, 8] {
            for cut in [0usize, 1, 2, 4] {
                let ctx = format!("seed {seed}, window after {delay} steps, cut after {cut}");
                let rng_seed = seed * 37 + delay as u64 * 5 + cut as u64;
                snapshot_window_case(seed, rng_seed, delay, &ctx, |w, opened| {
                    for _ in 0..cut {
                        w.step();
                    }
                    w.disconnect();
                    step_in_window(w, opened, 8);
                });
            }
        }
    }
}

/// The same, then the snapshot is deleted: the working VDI must still have
/// every object it references (the server's reference counts were kept
/// right by the index writes the engine made).
#[test]
fn deleting_a_snapshot_taken_mid_write_keeps_the_working_vdi_whole() {
    for seed in 1..=4u64 {
        for delay in [1usize, 2, 3, 5, 8] {
            let ctx = format!("seed {seed}, snapshot after {delay} steps");
            let InFlight {
                mut w,
                size,
                want,
                tokens,
                ..
            } = writes_in_flight(seed, seed * 7 + delay as u64);
            for _ in 0..delay {
                w.step();
            }
            let now = w.now;
            let new = w.cluster.snapshot_behind_back(now, "vm", "mid").unwrap();
            finish_ok(&mut w, &tokens);
            close(&mut w);
            match control(&mut w, |e| e.delete("vm", Some(Snapshot::Tag("mid")))) {
                ControlDone::Deleted { .. } => {}
                other => panic!("{ctx}: {other:?}"),
            }
            let got = try_server_contents(&w.cluster, new)
                .unwrap_or_else(|e| panic!("{ctx}: the working VDI lost an object: {e}"));
            assert_same(&got, &want, &ctx);
            assert_eq!(open(&mut w, "vm").vid, new);
            assert_same(&read(&mut w, 0, size).unwrap(), &want, &ctx);
        }
    }
}

/// A discard only writes index entries, so it never meets READONLY. When
/// the VDI was snapshotted behind the engine's back, zeroing entries of
/// the old VID would zero the *snapshot's* entries.
#[test]
fn discard_after_a_snapshot_behind_our_back_leaves_the_snapshot_intact() {
    let mut w = small_objects(1);
    let old = create(&mut w, "vm", 4 * MIB);
    open(&mut w, "vm");
    let before = pattern(15, 4 * MIB);
    write(&mut w, 0, &before).unwrap();
    let now = w.now;
    let new = w.cluster.snapshot_behind_back(now, "vm", "ext").unwrap();

    discard(&mut w, MIB, 2 * MIB).unwrap();
    let mut want = before.clone();
    want[MIB as usize..3 * MIB as usize].fill(0);
    assert_same(&read(&mut w, 0, 4 * MIB).unwrap(), &want, "read back");
    assert_same(&server_contents(&w.cluster, new), &want, "working VDI");
    for idx in 0..4 {
        assert_eq!(
            w.cluster.index_entry(old, idx),
            Some(old),
            "the snapshot's entry {idx}"
        );
    }
    assert_same(&server_contents(&w.cluster, old), &before, "the snapshot");
}

/// Submit a write to a hole and step until its CREATE was answered but its
/// index entry not yet written; then another client snapshots. The entry
/// lands on the old inode (now the snapshot), and the engine also puts it
/// on the new working VDI's inode.
fn create_then_snapshot_before_indexing(w: &mut Wire, idx: u64, bytes: &[u8]) -> (u32, u32) {
    let old = create(w, "vm", 4 * MIB);
    open(w, "vm");
    let t = submit_write(w, idx * MIB, bytes);
    w.step();
    assert!(w.cluster.object_exists(data(old, idx as u32)), "created");
    assert_eq!(
        w.cluster.index_entry(old, idx as u32),
        Some(0),
        "not indexed"
    );
    let now = w.now;
    let new = w.cluster.snapshot_behind_back(now, "vm", "ext").unwrap();
    finish_ok(w, &[t]);
    assert_eq!(w.engine.volume().unwrap().vid, new);
    (old, new)
}

#[test]
fn an_object_indexed_after_a_snapshot_survives_a_cow_in_the_working_vdi() {
    let mut w = small_objects(1);
    let first = pattern(26, 4096);
    let (old, new) = create_then_snapshot_before_indexing(&mut w, 2, &first);
    let mut want = vec![0u8; 4 * MIB as usize];
    want[2 * MIB as usize..2 * MIB as usize + 4096].copy_from_slice(&first);
    assert_same(&server_contents(&w.cluster, new), &want, "working VDI");
    let snap_before = server_contents(&w.cluster, old);

    // The working VDI writes the object again: a COW from the snapshot's.
    let second = pattern(27, 512);
    write(&mut w, 2 * MIB + 8192, &second).unwrap();
    want[2 * MIB as usize + 8192..2 * MIB as usize + 8704].copy_from_slice(&second);
    assert_same(&server_contents(&w.cluster, new), &want, "working VDI");
    let snap = try_server_contents(&w.cluster, old)
        .unwrap_or_else(|e| panic!("the snapshot lost an object: {e}"));
    assert_same(&snap, &snap_before, "the snapshot");
}

#[test]
fn an_object_indexed_after_a_snapshot_survives_deleting_the_snapshot() {
    let mut w = small_objects(1);
    let first = pattern(28, 4096);
    let (_, new) = create_then_snapshot_before_indexing(&mut w, 2, &first);
    let mut want = vec![0u8; 4 * MIB as usize];
    want[2 * MIB as usize..2 * MIB as usize + 4096].copy_from_slice(&first);
    close(&mut w);
    assert!(matches!(
        control(&mut w, |e| e.delete("vm", Some(Snapshot::Tag("ext")))),
        ControlDone::Deleted { .. }
    ));
    let got = try_server_contents(&w.cluster, new)
        .unwrap_or_else(|e| panic!("the working VDI lost an object: {e}"));
    assert_same(&got, &want, "working VDI");
}

/// A resize writes `vdi_size` into the inode of the VID the engine knows.
/// After a snapshot behind the engine's back that is the snapshot's.
#[test]
fn resize_after_a_snapshot_behind_our_back_grows_the_working_vdi() {
    let mut w = small_objects(1);
    let old = create(&mut w, "vm", 4 * MIB);
    open(&mut w, "vm");
    write(&mut w, 0, &pattern(16, MIB)).unwrap();
    let now = w.now;
    let new = w.cluster.snapshot_behind_back(now, "vm", "ext").unwrap();
    assert_eq!(
        control(&mut w, |e| e.resize(8 * MIB)),
        ControlDone::Resized { size: 8 * MIB }
    );
    assert_eq!(
        w.cluster.inode_header(new).unwrap().vdi_size,
        8 * MIB,
        "the working VDI grew"
    );
    assert_eq!(
        w.cluster.inode_header(old).unwrap().vdi_size,
        4 * MIB,
        "the snapshot kept its size"
    );
}

// ===== retries ========================================================================

#[test]
fn transient_results_are_retried_with_backoff() {
    let mut w = wire();
    let vid = create(&mut w, "disk", 2 * OBJ);
    open(&mut w, "disk");
    w.cluster.inject(
        Matcher::opcode(Opcode::CreateAndWriteObj),
        FaultAction::Fail(ResultCode::WaitForJoin),
        3,
    );
    let bytes = pattern(17, 5000);
    let t = submit_write(&mut w, 10, &bytes);
    record(&mut w);
    // Step by step, noting when each CREATE went out.
    let start = w.now;
    let mut sent_at = Vec::new();
    let mut done = HashMap::new();
    while !done.contains_key(&t) {
        let at = w.now;
        assert!(w.step(), "stalled");
        for s in recorded(&mut w) {
            if s.req.opcode == Opcode::CreateAndWriteObj {
                sent_at.push(at);
            }
        }
        while let Some(ev) = w.engine.poll_event() {
            on_io_event(&mut w, &ev, &mut done);
        }
    }
    assert_eq!(done[&t], Ok(()));
    assert_eq!(w.cluster.pending_faults(), 0);
    assert_eq!(sent_at.len(), 4, "three failures, then success");
    for (i, pair) in sent_at.windows(2).enumerate() {
        let wait = FIRST_BACKOFF << i;
        assert!(
            pair[1] - pair[0] >= wait,
            "retry {} after {} ns, backoff {wait}",
            i + 1,
            pair[1] - pair[0]
        );
    }
    assert!(w.now - start >= 7 * FIRST_BACKOFF);
    assert_eq!(
        w.cluster.read_object(data(vid, 0), 10, 5000).unwrap(),
        bytes
    );
    assert_eq!(w.cluster.index_entry(vid, 0), Some(vid));
}

#[test]
fn retries_are_bounded() {
    let mut w = wire();
    let vid = create(&mut w, "disk", 2 * OBJ);
    open(&mut w, "disk");
    w.cluster.inject(
        Matcher::opcode(Opcode::CreateAndWriteObj),
        FaultAction::Fail(ResultCode::WaitForJoin),
        100,
    );
    let r = write(&mut w, 0, &[1; 4096]);
    assert_eq!(
        r,
        Err(Error::RetriesExhausted {
            opcode: Opcode::CreateAndWriteObj,
            result: ResultCode::WaitForJoin
        })
    );
    assert_eq!(
        w.cluster.pending_faults(),
        100 - (1 + MAX_RETRIES),
        "one attempt and max_retries retries"
    );
    assert!(!w.cluster.object_exists(data(vid, 0)));
    assert_eq!(w.cluster.index_entry(vid, 0), Some(0));
    // The engine is still usable.
    w.cluster.clear_faults();
    write(&mut w, 0, &[1; 4096]).unwrap();
}

#[test]
fn connection_loss_resends_everything_in_flight() {
    for seed in 1..=4u64 {
        let mut w = small_objects(seed);
        w.faults.reorder = true;
        let size = 16 * MIB;
        let vid = create(&mut w, "disk", size);
        open(&mut w, "disk");
        let mut model = pattern(seed, size / 2);
        write(&mut w, 0, &model).unwrap();
        model.resize(size as usize, 0);

        // Writes and reads, several in flight; reads see the writes
        // submitted before them.
        let mut rng = Rng::new(seed);
        let mut expected: HashMap<Token, Vec<u8>> = HashMap::new();
        let mut tokens = Vec::new();
        for i in 0..12 {
            let off = rng.below(size - 1);
            let len = 1 + rng.below((3 * MIB).min(size - off));
            let range = off as usize..(off + len) as usize;
            if i % 3 == 2 {
                let t = submit_read(&mut w, off, len);
                expected.insert(t, model[range].to_vec());
                tokens.push(t);
            } else {
                let bytes = pattern(seed * 10 + i, len);
                model[range].copy_from_slice(&bytes);
                tokens.push(submit_write(&mut w, off, &bytes));
            }
        }
        let mut done = HashMap::new();
        let mut steps = 0;
        while done.len() < tokens.len() {
            while let Some(ev) = w.engine.poll_event() {
                on_io_event(&mut w, &ev, &mut done);
            }
            if done.len() == tokens.len() {
                break;
            }
            steps += 1;
            if (steps % 3 == 0 || w.stats.disconnects == 0)
                && w.stats.disconnects < 5
                && w.engine.in_flight() > 0
                && w.replies_pending() > 0
            {
                w.disconnect();
            }
            w.step();
        }
        assert!(
            w.stats.disconnects > 0,
            "seed {seed}: no disconnect happened"
        );
        for t in &tokens {
            assert_eq!(done[t], Ok(()), "seed {seed}: operation {t}");
            if let Some(want) = expected.get(t) {
                assert_same(&w.bufs[t], want, &format!("seed {seed}: read {t}"));
            }
        }
        assert_same(&server_contents(&w.cluster, vid), &model, "server");
        assert_same(&read(&mut w, 0, size).unwrap(), &model, "read back");
    }
}

// ===== opening ========================================================================

#[test]
fn readonly_snapshot_refuses_writes() {
    let mut w = wire();
    create(&mut w, "vm", 2 * OBJ);
    open(&mut w, "vm");
    let before = pattern(18, OBJ);
    write(&mut w, 0, &before).unwrap();
    snapshot(&mut w, "s");
    close(&mut w);
    let info = open_snapshot(&mut w, "vm", "s");
    assert!(info.snapshot);

    record(&mut w);
    assert_eq!(w.engine.write(token(), 0, 512), Err(Error::ReadOnly));
    assert_eq!(w.engine.discard(token(), 0, OBJ), Err(Error::ReadOnly));
    assert_eq!(w.engine.resize(4 * OBJ), Err(Error::ReadOnly));
    assert_eq!(w.engine.snapshot("again"), Err(Error::ReadOnly));
    assert_same(&read(&mut w, 0, OBJ).unwrap(), &before, "reads work");
    let seen = recorded(&mut w);
    assert!(
        seen.iter().all(|s| s.req.opcode == Opcode::ReadObj),
        "{seen:?}"
    );
}

#[test]
fn open_reads_only_the_index_the_size_covers() {
    let mut w = wire();
    let vid = create(&mut w, "small", 10 * OBJ);
    record(&mut w);
    open(&mut w, "small");
    let seen = recorded(&mut w);
    assert_eq!(
        opcodes(&seen),
        [Opcode::GetVdiInfo, Opcode::ReadObj, Opcode::ReadObj]
    );
    let reads: Vec<(u32, u32)> = seen[1..]
        .iter()
        .map(|s| (s.req.obj().unwrap().offset, s.req.data_length))
        .collect();
    assert!(seen[1..].iter().all(|s| s.oid() == Some(inode_of(vid))));
    assert_eq!(
        reads,
        [(0, inode::HEADER_LEN as u32), (inode::INDEX_OFFSET, 10 * 4)],
        "the header, then 10 entries"
    );

    // The largest flat VDI: the whole index, read in pieces, never the
    // 4,198,968-byte header+index or the 12.5 MB inode in one request.
    let mut w = Wire::new(Cluster::new(ClusterConfig::default()), 1, 1 << 20);
    let vid = create(&mut w, "huge", OBJ << 20);
    record(&mut w);
    open(&mut w, "huge");
    let seen = recorded(&mut w);
    let mut index_bytes = 0u64;
    for s in &seen {
        assert!(s.req.data_length <= 1 << 20, "{s:?}");
        if s.req.opcode == Opcode::ReadObj && s.req.obj().unwrap().offset >= inode::INDEX_OFFSET {
            assert_eq!(s.oid(), Some(inode_of(vid)));
            index_bytes += u64::from(s.req.data_length);
        }
    }
    assert_eq!(index_bytes, 4 << 20, "every entry once");
}

#[test]
fn open_honours_the_vdi_block_size_shift() {
    let mut w = wire();
    assert_eq!(w.cluster.config().block_size_shift, 22);
    // Created by another client with 8 MiB objects.
    let now = w.now;
    let big = 8 * MIB;
    let vid = w
        .cluster
        .new_vdi(
            now,
            "wide",
            NewVdi {
                vdi_size: 8 * big,
                block_size_shift: 23,
                ..NewVdi::default()
            },
        )
        .unwrap();
    let info = open(&mut w, "wide");
    assert_eq!(info.object_size, big as u32);

    record(&mut w);
    let bytes = pattern(19, 8192);
    write(&mut w, big - 4096, &bytes).unwrap();
    let seen = recorded(&mut w);
    let first = seen
        .iter()
        .find(|s| s.is(Opcode::CreateAndWriteObj, data(vid, 0)))
        .expect("object 0");
    let second = seen
        .iter()
        .find(|s| s.is(Opcode::CreateAndWriteObj, data(vid, 1)))
        .expect("object 1");
    assert_eq!(
        (first.req.obj().unwrap().offset, first.req.data_length),
        ((big - 4096) as u32, 4096)
    );
    assert_eq!(
        (second.req.obj().unwrap().offset, second.req.data_length),
        (0, 4096)
    );
    assert_eq!(
        w.cluster
            .read_object(data(vid, 0), big - 4096, 4096)
            .unwrap(),
        bytes[..4096]
    );
    assert_eq!(
        w.cluster.read_object(data(vid, 1), 0, 4096).unwrap(),
        bytes[4096..]
    );
    assert!(
        !w.cluster.object_exists(data(vid, 2)),
        "no 4 MiB arithmetic"
    );
    assert_eq!(read(&mut w, big - 4096, 8192).unwrap(), bytes);

    // Created through the engine with an explicit shift.
    close(&mut w);
    record(&mut w);
    let opts = CreateOptions {
        block_size_shift: 23,
        ..opts(8 * big)
    };
    let vid = match control(&mut w, |e| e.create("wide2", opts)) {
        ControlDone::Created { vid } => vid,
        other => panic!("{other:?}"),
    };
    let seen = recorded(&mut w);
    let new_vdi = seen
        .iter()
        .find(|s| s.req.opcode == Opcode::NewVdi)
        .unwrap();
    assert_eq!(new_vdi.req.vdi().unwrap().block_size_shift, 23);
    assert_eq!(w.cluster.inode_header(vid).unwrap().block_size_shift, 23);
    assert_eq!(open(&mut w, "wide2").object_size, big as u32);
    write(&mut w, 7 * big + 100, &bytes).unwrap();
    assert!(w.cluster.object_exists(data(vid, 7)));
}

/// A hyper volume "hyper" of `size` bytes, made on the server directly.
fn new_hyper(w: &mut Wire, size: u64) -> u32 {
    new_hyper_named(w, "hyper", size)
}

fn new_hyper_named(w: &mut Wire, name: &str, size: u64) -> u32 {
    let now = w.now;
    w.cluster
        .new_vdi(
            now,
            name,
            NewVdi {
                vdi_size: size,
                store_policy: 1,
                block_size_shift: 22,
                ..NewVdi::default()
            },
        )
        .unwrap()
}

/// Data object `idx` of hyper volume `vid`, holding `bytes` (from 0).
fn put_object(w: &mut Wire, vid: u32, idx: u32, bytes: &[u8]) {
    let now = w.now;
    let req = Request::create_and_write(1, data(vid, idx), None, 0, bytes.len() as u32, 0);
    w.cluster.handle(now, &req, bytes);
}

/// Leaf `n` of hyper volume `vid` with `entries`; its indirect entry.
fn put_leaf(w: &mut Wire, vid: u32, n: u32, entries: &[(u32, u32)]) -> Vec<u8> {
    let now = w.now;
    let leaf = Oid::btree(Vid::new(vid).unwrap(), n);
    let mut bytes = btree::MAGIC.to_le_bytes().to_vec();
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&leaf_bytes(entries));
    let req = Request::create_and_write(1, leaf, None, 0, bytes.len() as u32, 0);
    w.cluster.handle(now, &req, &bytes);
    let mut indirect = entries.last().map_or(0, |e| e.0).to_le_bytes().to_vec();
    indirect.extend_from_slice(&[0; 4]);
    indirect.extend_from_slice(&leaf.0.to_le_bytes());
    indirect
}

#[test]
fn a_hyper_volume_reads_through_its_b_tree_and_refuses_writes() {
    // An index cache for 2^20 objects: a 4 TiB hyper volume.
    let mut w = Wire::new(
        Cluster::new(ClusterConfig::default().with_locking(true)),
        1,
        1 << 20,
    );
    // Depth 1: objects 0 and 3 in the root.
    let v = new_hyper(&mut w, 1 << 40);
    let (a, b) = (pattern(1, OBJ), pattern(2, 4096));
    put_object(&mut w, v, 0, &a);
    put_object(&mut w, v, 3, &b);
    put_root(&mut w, v, 1, 2, &leaf_bytes(&[(0, v), (3, v)]));
    open(&mut w, "hyper");
    assert_eq!(read(&mut w, 0, OBJ).unwrap(), a);
    assert_eq!(read(&mut w, 3 * OBJ, 4096).unwrap(), b);
    assert!(
        read(&mut w, OBJ, 4096).unwrap().iter().all(|&x| x == 0),
        "a hole"
    );
    assert_eq!(
        w.engine.write(token(), 0, 512),
        Err(Error::Size(SizeError::HyperVolume)),
        "refused unless the caller commits the tree"
    );
    assert_eq!(read(&mut w, 0, OBJ).unwrap(), a, "nothing written");
    // A caller that commits: a new object is written, its range noted,
    // the write done with its data; the tree is not touched.
    w.engine.accept_hyper_writes();
    assert_eq!(
        w.engine.discard(token(), 0, OBJ),
        Err(Error::Size(SizeError::HyperVolume)),
        "the tree takes no removals"
    );
    let c = pattern(9, 4096);
    write(&mut w, 5 * OBJ, &c).unwrap();
    write(&mut w, 0, &c).unwrap();
    assert_eq!(
        w.engine.take_uncommitted(),
        Some((5, 5)),
        "object 0 was there"
    );
    assert_eq!(w.engine.take_uncommitted(), None);
    assert_eq!(read(&mut w, 5 * OBJ, 4096).unwrap(), c);
    assert_eq!(w.cluster.hyper_lookup(v, 5), Some(0), "not in the tree yet");
    assert_eq!(w.cluster.hyper_lookup(v, 3), Some(v));
    close(&mut w);

    // Depth 2: two leaves; object 200,000 in the second.
    let d = new_hyper_named(&mut w, "deep", 1 << 40);
    let c = pattern(3, 8192);
    put_object(&mut w, d, 1, &c);
    put_object(&mut w, d, 200_000, &c);
    let mut root = put_leaf(&mut w, d, 0, &[(1, d)]);
    // The second leaf also holds a stale copy of index 1 naming another
    // VID, and index 250,000 past its root entry, as a split stopped
    // halfway can leave them: sheep's lookup never reads either.
    let stale = [(1, v), (200_000, d), (250_000, d)];
    let mut second = put_leaf(&mut w, d, 1, &stale);
    second[..4].copy_from_slice(&200_000u32.to_le_bytes());
    root.extend_from_slice(&second);
    put_root(&mut w, d, 2, 2, &root);
    open(&mut w, "deep");
    assert_eq!(read(&mut w, OBJ, 8192).unwrap(), c);
    assert_eq!(w.engine.entry(1), Some(d), "the first leaf's entry");
    assert_eq!(w.engine.entry(250_000), Some(0), "past the root entry");
    assert_eq!(read(&mut w, 200_000 * OBJ, 8192).unwrap(), c);
    assert!(read(&mut w, 2 * OBJ, 4096).unwrap().iter().all(|&x| x == 0));
    close(&mut w);

    // A tree that cannot be: refused, and a lock taken is given back.
    for (depth, body) in [(3u16, Vec::new()), (1, leaf_bytes(&[(300_000, v)]))] {
        put_root(&mut w, v, depth, (body.len() / 8) as u32, &body);
        match open_at(&mut w, "hyper", None, true) {
            ControlDone::Failed(Error::BadReply(_)) => {}
            other => panic!("depth {depth}: {other:?}"),
        }
        assert!(w.engine.volume().is_none());
        assert_eq!(w.cluster.vdi_state(v).unwrap().lock, LockState::Unlocked);
    }
}

#[test]
fn deleting_a_hyper_volume_never_writes_its_b_tree() {
    // `dog vdi delete` zeroes a hyper volume's index as if it were flat,
    // which zeroes the B-tree header and aborts the gateway sheep in its
    // deletion walk. Ours sends DEL_VDI as it is.
    let mut w = wire();
    let now = w.now;
    let vid = new_hyper(&mut w, 5 << 40);
    // Object 5 and its root entry, written from offset 0 as dog does.
    let create = Request::create_and_write(1, data(vid, 5), None, 0, 1, 0);
    w.cluster.handle(now, &create, b"x");
    let len = inode::HEADER_LEN as u32 + 16;
    let read = w
        .cluster
        .read_object(inode_of(vid), 0, len as usize)
        .unwrap();
    let mut head = read;
    let at = inode::HEADER_LEN;
    head[at + 4..at + 8].copy_from_slice(&1u32.to_le_bytes());
    head[at + 8..at + 12].copy_from_slice(&5u32.to_le_bytes());
    head[at + 12..at + 16].copy_from_slice(&vid.to_le_bytes());
    let put = Request::write_obj(2, inode_of(vid), 0, len, 0);
    w.cluster.handle(now, &put, &head);

    record(&mut w);
    assert_eq!(
        control(&mut w, |e| e.delete("hyper", None)),
        ControlDone::Deleted { vid }
    );
    let seen = recorded(&mut w);
    assert_eq!(
        opcodes(&seen),
        [Opcode::GetVdiInfo, Opcode::ReadObj, Opcode::DelVdi],
        "a lookup, the header, DEL_VDI: nothing written"
    );
    assert!(
        !w.cluster.object_exists(data(vid, 5)),
        "the server's walk removed it"
    );
    assert!(w.cluster.inode_header(vid).unwrap().is_deleted());
}

#[test]
fn a_vm_state_is_recorded_only_on_the_vid_that_holds_it() {
    let mut w = wire();
    let v = create(&mut w, "vm", 4 * OBJ);
    open(&mut w, "vm");
    // The state's objects were written under `v`: it becomes the snapshot,
    // with the size and clock in its inode; the new working VDI has none.
    match control(&mut w, |e| e.snapshot_with_vmstate("saved", 12345, 77, v)) {
        ControlDone::Snapshot { snapshot, .. } => assert_eq!(snapshot, v),
        other => panic!("{other:?}"),
    }
    let h = w.cluster.inode_header(v).unwrap();
    assert_eq!(
        (h.vm_state_size, h.vm_clock_nsec, h.tag()),
        (12345, 77, &b"saved"[..])
    );
    assert!(h.is_snapshot());
    let working = w.engine.volume().unwrap().vid;
    assert_eq!(w.cluster.inode_header(working).unwrap().vm_state_size, 0);

    // Prepared for `v`, which is no longer the working VDI: refused, with
    // nothing written to any inode and no snapshot taken.
    record(&mut w);
    assert_eq!(
        control(&mut w, |e| e.snapshot_with_vmstate("late", 1, 1, v)),
        ControlDone::Failed(Error::WorkingVdiMoved { vid: working })
    );
    let seen = recorded(&mut w);
    assert!(
        !opcodes(&seen)
            .iter()
            .any(|o| matches!(o, Opcode::WriteObj | Opcode::NewVdi)),
        "{:?}",
        opcodes(&seen)
    );
    assert_eq!(w.engine.volume().unwrap().vid, working);
    assert_eq!(w.cluster.inode_header(working).unwrap().vm_state_size, 0);
}

/// Write `root` (a B-tree header and its entries) into `vid`'s inode
/// from offset 0, header included, as dog does.
fn put_root(w: &mut Wire, vid: u32, depth: u16, entries: u32, body: &[u8]) {
    let now = w.now;
    let mut b = w
        .cluster
        .read_object(inode_of(vid), 0, inode::HEADER_LEN)
        .unwrap();
    b.extend_from_slice(&btree::MAGIC.to_le_bytes());
    b.extend_from_slice(&depth.to_le_bytes());
    b.extend_from_slice(&entries.to_le_bytes());
    b.extend_from_slice(body);
    let req = Request::write_obj(1, inode_of(vid), 0, b.len() as u32, 0);
    w.cluster.handle(now, &req, &b);
}

fn leaf_bytes(entries: &[(u32, u32)]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|(i, v)| [i.to_le_bytes(), v.to_le_bytes()].concat())
        .collect()
}

#[test]
fn listing_counts_a_hyper_volumes_objects_at_depth_1_and_2() {
    let mut w = wire();
    let now = w.now;
    // Depth 1: three own objects and one shared, in the root.
    let a = new_hyper_named(&mut w, "ha", 5 << 40);
    let root = leaf_bytes(&[(0, a), (5, a), (9, 77), (1_300_000, a)]);
    put_root(&mut w, a, 1, 4, &root);
    // Depth 2: two leaves, of 20,000 and 3 entries (several reads each).
    let b = new_hyper_named(&mut w, "hb", 5 << 40);
    let mut indirect = Vec::new();
    for (n, range) in [(0u32, 0..20_000u32), (1, 20_000..20_003)] {
        let leaf = Oid::btree(Vid::new(b).unwrap(), n);
        let e: Vec<(u32, u32)> = range.clone().map(|i| (i, b)).collect();
        let mut bytes = btree::MAGIC.to_le_bytes().to_vec();
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(&(e.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&leaf_bytes(&e));
        let req = Request::create_and_write(1, leaf, None, 0, bytes.len() as u32, 0);
        w.cluster.handle(now, &req, &bytes);
        indirect.extend_from_slice(&(range.end - 1).to_le_bytes());
        indirect.extend_from_slice(&[0; 4]);
        indirect.extend_from_slice(&leaf.0.to_le_bytes());
    }
    put_root(&mut w, b, 2, 2, &indirect);
    // An empty hyper volume, as the server makes it.
    let c = new_hyper_named(&mut w, "hc", 1 << 40);
    let got = list(&mut w.cluster);
    let of = |v: u32| {
        got.iter()
            .find(|e| e.header.vdi_id == v)
            .map(|e| (e.used, e.shared))
    };
    assert_eq!(of(a), Some((3, 1)));
    assert_eq!(of(b), Some((20_003, 0)));
    assert_eq!(of(c), Some((0, 0)));

    // A root of depth 3 cannot be: the listing ends with a bad reply
    // rather than show the volume wrong.
    put_root(&mut w, c, 3, 0, &[]);
    assert!(
        matches!(list_with(&mut w.cluster, |_, r| r), Err(Error::BadReply(_))),
        "a depth-3 root is refused"
    );
}

#[test]
fn lock_is_taken_on_open_and_released_on_close() {
    let mut w = wire_on(ClusterConfig::default().with_locking(true));
    let vid = create(&mut w, "vm", OBJ);
    let lock_state = |w: &Wire| w.cluster.vdi_state(vid).unwrap().lock;

    // Without asking for the lock, none is taken.
    open(&mut w, "vm");
    assert_eq!(lock_state(&w), LockState::Unlocked);
    close(&mut w);

    record(&mut w);
    assert!(matches!(
        open_at(&mut w, "vm", None, true),
        ControlDone::Opened(_)
    ));
    assert_eq!(recorded(&mut w)[0].req.opcode, Opcode::LockVdi);
    assert_eq!(lock_state(&w), LockState::Locked);

    // Another client cannot lock it meanwhile.
    let mut name = [0u8; NAME_TAG_LEN];
    encode_name_tag(b"vm", b"", &mut name);
    let now = w.now;
    let other = w
        .cluster
        .handle(now, &Request::lock_vdi(1, 0, LockType::Normal), &name);
    assert_eq!(other.result(), ResultCode::VdiLocked);

    close(&mut w);
    let seen = recorded(&mut w);
    assert_eq!(opcodes(&seen), [Opcode::ReleaseVdi]);
    let a = seen[0].req.vdi().unwrap();
    assert_eq!((a.base_vdi_id, a.lock_type), (vid, 0));
    assert_eq!(lock_state(&w), LockState::Unlocked);

    // Locked by someone else: the engine's open fails and holds nothing.
    let now = w.now;
    let r = w
        .cluster
        .handle(now, &Request::lock_vdi(2, 0, LockType::Normal), &name);
    assert_eq!(r.result(), ResultCode::Success);
    assert_eq!(
        open_at(&mut w, "vm", None, true),
        ControlDone::Failed(Error::Server {
            opcode: Opcode::LockVdi,
            result: ResultCode::VdiLocked
        })
    );
    assert!(w.engine.volume().is_none());
    let now = w.now;
    w.cluster
        .handle(now, &Request::release_vdi(3, vid, LockType::Normal), &[]);
    assert!(matches!(
        open_at(&mut w, "vm", None, true),
        ControlDone::Opened(_)
    ));
}

// ===== control operations ==============================================================

#[test]
fn cluster_default_reports_the_servers_defaults() {
    let mut w = wire_on(
        ClusterConfig::default()
            .with_copies(2)
            .with_block_size_shift(23),
    );
    assert_eq!(
        control(&mut w, |e| e.cluster_default()),
        ControlDone::ClusterDefault {
            copies: 2,
            copy_policy: 0,
            block_size_shift: 23
        }
    );
    // A create that leaves them to the cluster gets them.
    create(&mut w, "d", 64 * MIB);
    let info = open(&mut w, "d");
    assert_eq!((info.copies, info.object_size), (2, 8 << 20));
}

#[test]
fn create_refuses_sizes_past_the_limit_for_its_object_size() {
    let mut w = small_objects(1);
    let max = MIB << 20; // 1 TiB with 1 MiB objects
    let explicit = |size| CreateOptions {
        block_size_shift: 20,
        ..opts(size)
    };
    // Known object size: refused before anything is sent.
    record(&mut w);
    assert_eq!(
        w.engine.create("big", explicit(max + 1)),
        Err(Error::Size(SizeError::TooLarge { size: max + 1, max }))
    );
    assert_eq!(
        w.engine.create("big", explicit(0)),
        Err(Error::Size(SizeError::Zero))
    );
    assert!(recorded(&mut w).is_empty());
    // The cluster's object size: refused after asking for it, before
    // NEW_VDI.
    assert_eq!(
        control(&mut w, |e| e.create("big", opts(max + 1))),
        ControlDone::Failed(Error::Size(SizeError::TooLarge { size: max + 1, max }))
    );
    assert_eq!(opcodes(&recorded(&mut w)), [Opcode::GetClusterDefault]);
    assert!(w.cluster.lookup("big", "", 0).is_err());
    // Exactly the limit is fine, and so is more with bigger objects.
    create(&mut w, "big", max);
    let huge = CreateOptions {
        block_size_shift: 31,
        ..opts(2 << 50)
    };
    assert!(matches!(
        control(&mut w, |e| e.create("huge", huge)),
        ControlDone::Created { .. }
    ));
}

#[test]
fn prealloc_allocates_every_object() {
    let mut w = small_objects(1);
    record(&mut w);
    let size = 5 * MIB + MIB / 2;
    let vid = match control(&mut w, |e| {
        e.create(
            "full",
            CreateOptions {
                prealloc: true,
                ..opts(size)
            },
        )
    }) {
        ControlDone::Created { vid } => vid,
        other => panic!("{other:?}"),
    };
    let seen = recorded(&mut w);
    let creates: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.req.opcode == Opcode::CreateAndWriteObj)
        .collect();
    assert_eq!(creates.len(), 6);
    for (i, c) in creates.iter().enumerate() {
        assert_eq!(c.oid(), Some(data(vid, i as u32)));
        assert_eq!(c.req.data_length, 0, "allocate, send no zeros");
    }
    let last_create = seen
        .iter()
        .rposition(|s| s.req.opcode == Opcode::CreateAndWriteObj)
        .unwrap();
    let first_index = seen
        .iter()
        .position(|s| s.index_update(vid).is_some())
        .unwrap();
    assert!(last_create < first_index, "objects first, then the index");
    for idx in 0..6 {
        assert!(w.cluster.object_exists(data(vid, idx)));
        assert_eq!(w.cluster.index_entry(vid, idx), Some(vid));
    }
    open(&mut w, "full");
    record(&mut w);
    assert!(read(&mut w, 0, size).unwrap().iter().all(|&b| b == 0));
    assert_eq!(recorded(&mut w).len(), 6, "allocated objects are read");
}

#[test]
fn resize_grows_only() {
    let mut w = wire();
    let vid = create(&mut w, "disk", 2 * OBJ);
    open(&mut w, "disk");
    assert_eq!(
        w.engine.resize(OBJ),
        Err(Error::Shrink {
            size: 2 * OBJ,
            new_size: OBJ
        })
    );
    assert_eq!(
        w.engine.resize((OBJ << 20) + 1),
        Err(Error::Size(SizeError::TooLarge {
            size: (OBJ << 20) + 1,
            max: OBJ << 20
        }))
    );
    assert!(matches!(
        w.engine.resize(OBJ << 20),
        Err(Error::IndexBufferTooSmall { .. })
    ));
    assert_eq!(
        w.engine.write(token(), 3 * OBJ, 1),
        Err(Error::OutOfRange {
            offset: 3 * OBJ,
            len: 1,
            size: 2 * OBJ
        })
    );

    record(&mut w);
    assert_eq!(
        control(&mut w, |e| e.resize(4 * OBJ)),
        ControlDone::Resized { size: 4 * OBJ }
    );
    let writes: Vec<Seen> = recorded(&mut w)
        .into_iter()
        // Empty writes are the engine's writability probes.
        .filter(|s| matches!(s.req.opcode, Opcode::WriteObj | Opcode::CreateAndWriteObj))
        .filter(|s| s.req.data_length > 0)
        .collect();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(writes[0].is(Opcode::WriteObj, inode_of(vid)));
    assert_eq!(
        (
            writes[0].req.obj().unwrap().offset,
            writes[0].req.data_length
        ),
        (inode::field::VDI_SIZE as u32, 8),
        "just vdi_size"
    );
    assert_eq!(writes[0].payload, (4 * OBJ).to_le_bytes());
    assert_eq!(w.engine.volume().unwrap().size, 4 * OBJ);
    assert_eq!(w.cluster.inode_header(vid).unwrap().vdi_size, 4 * OBJ);

    let bytes = pattern(20, 4096);
    write(&mut w, 4 * OBJ - 4096, &bytes).unwrap();
    close(&mut w);
    assert_eq!(open(&mut w, "disk").size, 4 * OBJ);
    assert_eq!(read(&mut w, 4 * OBJ - 4096, 4096).unwrap(), bytes);
    assert!(read(&mut w, 2 * OBJ, OBJ).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn discard_releases_whole_objects() {
    let mut w = small_objects(1);
    let size = 4 * MIB + MIB / 2; // the last object is partial
    create(&mut w, "disk", size);
    open(&mut w, "disk");
    let before = pattern(21, size);
    write(&mut w, 0, &before).unwrap();
    let (snap, working) = snapshot(&mut w, "s");
    // Object 3 becomes the working VDI's own; 1 and 2 stay shared.
    write(&mut w, 3 * MIB, &[9; 512]).unwrap();
    assert!(w.cluster.object_exists(data(working, 3)));

    assert!(matches!(
        w.engine.discard(token(), 512, MIB),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        w.engine.discard(token(), MIB, MIB + 1),
        Err(Error::OutOfRange { .. })
    ));

    record(&mut w);
    discard(&mut w, MIB, 3 * MIB).unwrap();
    discard(&mut w, 4 * MIB, MIB / 2).unwrap(); // up to the end of the VDI
    let seen = recorded(&mut w);
    assert!(
        seen.iter()
            .all(|s| !s.oid().is_some_and(|o| o.is_data()) || s.req.data_length == 0),
        "no data is sent (empty writes are writability probes): {seen:?}"
    );
    let zeroed: Vec<u32> = seen
        .iter()
        .filter_map(|s| s.index_update(working))
        .flat_map(|(r, v)| {
            assert!(v.iter().all(|&e| e == 0));
            r
        })
        .collect();
    assert_eq!(zeroed, [1, 2, 3, 4]);

    let mut want = before.clone();
    want[MIB as usize..].fill(0);
    assert_same(&read(&mut w, 0, size).unwrap(), &want, "read back");
    for idx in 1..5 {
        assert_eq!(w.cluster.index_entry(working, idx), Some(0));
    }
    assert!(
        !w.cluster.object_exists(data(working, 3)),
        "own object freed"
    );
    assert_same(
        &server_contents(&w.cluster, snap),
        &before,
        "the snapshot keeps the shared objects",
    );
    // Reads of discarded objects send nothing.
    record(&mut w);
    read(&mut w, MIB, 3 * MIB).unwrap();
    assert!(recorded(&mut w).is_empty());
}

#[test]
fn delete_zeroes_the_index_before_del_vdi() {
    let mut w = wire();
    let first = create(&mut w, "d", 4 * OBJ);
    open(&mut w, "d");
    let before = pattern(22, 3 * OBJ);
    write(&mut w, 0, &before).unwrap();
    let (snap, working) = snapshot(&mut w, "s");
    assert_eq!(snap, first);
    write(&mut w, 0, &[1; 4096]).unwrap(); // COW: object 0 now own
    write(&mut w, 3 * OBJ, &[2; 4096]).unwrap(); // new own object 3
    close(&mut w);

    record(&mut w);
    assert_eq!(
        control(&mut w, |e| e.delete("d", None)),
        ControlDone::Deleted { vid: working }
    );
    let seen = recorded(&mut w);
    let ops = opcodes(&seen);
    assert_eq!(ops.first(), Some(&Opcode::GetVdiInfo));
    assert_eq!(ops.last(), Some(&Opcode::DelVdi), "{ops:?}");
    let zeroed: Vec<u32> = seen
        .iter()
        .filter_map(|s| s.index_update(working))
        .flat_map(|(r, v)| {
            assert!(v.iter().all(|&e| e == 0));
            r
        })
        .collect();
    assert_eq!(zeroed, [0, 1, 2, 3], "every entry zeroed before DEL_VDI");

    assert!(w.cluster.is_deleted(working));
    assert!(w.cluster.inode_header(working).unwrap().is_deleted());
    assert!(
        !w.cluster.object_exists(data(working, 0)),
        "not shared: gone"
    );
    assert!(
        !w.cluster.object_exists(data(working, 3)),
        "not shared: gone"
    );
    assert_same(
        &server_contents(&w.cluster, snap)[..3 * OBJ as usize],
        &before,
        "the snapshot keeps its objects",
    );
    // The name is free again: the inode was tombstoned.
    let again = create(&mut w, "d", OBJ);
    assert!(![snap, working].contains(&again));
    // The snapshot can still be opened and read.
    assert_eq!(open_snapshot(&mut w, "d", "s").vid, snap);
    assert_same(&read(&mut w, 0, 3 * OBJ).unwrap(), &before, "snapshot");
}

#[test]
fn rollback_restores_the_snapshot_contents() {
    let mut w = wire();
    create(&mut w, "d", 4 * OBJ);
    open(&mut w, "d");
    let mut before = pattern(23, 2 * OBJ);
    write(&mut w, 0, &before).unwrap();
    before.resize(4 * OBJ as usize, 0);
    let (snap, working) = snapshot(&mut w, "s");
    write(&mut w, 0, &pattern(24, 4 * OBJ)).unwrap();
    close(&mut w);

    open_snapshot(&mut w, "d", "s");
    let rolled = match control(&mut w, |e| e.rollback()) {
        ControlDone::RolledBack { vid } => vid,
        other => panic!("{other:?}"),
    };
    assert!(![snap, working].contains(&rolled));
    close(&mut w);
    let info = open(&mut w, "d");
    assert_eq!((info.vid, info.parent), (rolled, snap));
    assert_same(&read(&mut w, 0, 4 * OBJ).unwrap(), &before, "rolled back");
    assert_same(&server_contents(&w.cluster, rolled), &before, "server");
    for idx in 0..4 {
        assert!(
            !w.cluster.object_exists(data(working, idx)),
            "the discarded working VDI's object {idx} is freed"
        );
    }
    assert_same(&server_contents(&w.cluster, snap), &before, "snapshot");
}

// ===== listing ========================================================================

#[test]
fn list_finds_every_vdi_without_assuming_vid_equals_hash() {
    // Two names with the same hash: the second one's VID is not its hash.
    let mut seen_hash: HashMap<u32, String> = HashMap::new();
    let (a, b) = (0u32..)
        .find_map(|n| {
            let name = format!("vm{n}");
            let h = vid_hash(name.as_bytes());
            seen_hash.insert(h, name.clone()).map(|other| (other, name))
        })
        .unwrap();
    let mut w = small_objects(1);
    let a_first = create(&mut w, &a, 8 * MIB);
    let b_vid = create(&mut w, &b, 8 * MIB);
    assert_eq!(a_first, vid_hash(a.as_bytes()));
    assert_ne!(b_vid, vid_hash(b.as_bytes()), "collision: probed on");

    open(&mut w, &a);
    write(&mut w, 0, &pattern(25, 2 * MIB)).unwrap(); // objects 0, 1
    let (a_snap, a_work) = snapshot(&mut w, "s");
    write(&mut w, 0, &[1; 512]).unwrap(); // COW object 0
    write(&mut w, 2 * MIB, &[2; 512]).unwrap(); // new object 2
    close(&mut w);
    open(&mut w, &b);
    write(&mut w, 5 * MIB, &[3; 512]).unwrap();
    close(&mut w);
    open_snapshot(&mut w, &a, "s");
    let clone = match control(&mut w, |e| e.clone_snapshot("copy")) {
        ControlDone::Cloned { vid } => vid,
        other => panic!("{other:?}"),
    };
    close(&mut w);
    let gone = create(&mut w, "gone", MIB);
    control(&mut w, |e| e.delete("gone", None));

    let entries = list(&mut w.cluster);
    let by_vid: HashMap<u32, &ListEntry> = entries.iter().map(|e| (e.header.vdi_id, e)).collect();
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert!(!by_vid.contains_key(&gone), "deleted VDIs are not listed");
    let check = |vid: u32, name: &str, snapshot: bool, used: u32, shared: u32| {
        let e = by_vid
            .get(&vid)
            .unwrap_or_else(|| panic!("{name} ({vid:#x}) listed"));
        assert_eq!(e.header.name(), name.as_bytes(), "{vid:#x}");
        assert_eq!(e.header.is_snapshot(), snapshot, "{name} snapshot flag");
        assert_eq!((e.used, e.shared), (used, shared), "{name} used/shared");
    };
    check(a_snap, &a, true, 2, 0);
    check(a_work, &a, false, 2, 1);
    check(b_vid, &b, false, 1, 0);
    check(clone, "copy", false, 0, 2);
    assert_eq!(by_vid[&a_snap].header.tag(), b"s");
    assert_eq!(by_vid[&a_work].header.parent_vdi_id, a_snap);
    assert_eq!(by_vid[&clone].header.parent_vdi_id, a_snap);
}

#[test]
fn a_released_object_is_recreated_only_once_the_cluster_has_reclaimed_it() {
    // A real cluster reclaims a released object asynchronously: a CREATE of
    // the same oid that lands before the reclaim is deleted by it. The
    // engine asks whether the object is gone before creating it again.
    let mut w = small_objects(3);
    let vid = create(&mut w, "disk", 4 * MIB);
    open(&mut w, "disk");
    write(&mut w, 2 * MIB, &pattern(1, MIB)).unwrap();
    discard(&mut w, 2 * MIB, MIB).unwrap();
    assert!(!w.cluster.object_exists(data(vid, 2)));
    // The reclaim is "still under way" for two probes.
    w.cluster.inject(
        Matcher::opcode(Opcode::ReadObj).oid(data(vid, 2)),
        FaultAction::Fail(ResultCode::Success),
        2,
    );
    record(&mut w);
    let again = pattern(2, 4096);
    write(&mut w, 2 * MIB + 512, &again).unwrap();
    let seen = recorded(&mut w);
    let on_object: Vec<Opcode> = seen
        .iter()
        .filter(|s| s.oid() == Some(data(vid, 2)))
        .map(|s| s.req.opcode)
        .collect();
    assert_eq!(
        on_object,
        [
            Opcode::ReadObj,
            Opcode::ReadObj,
            Opcode::ReadObj,
            Opcode::CreateAndWriteObj
        ],
        "probe until gone, then create"
    );
    let mut want = vec![0u8; MIB as usize];
    want[512..512 + 4096].copy_from_slice(&again);
    assert_same(&read(&mut w, 2 * MIB, MIB).unwrap(), &want, "read back");
}

#[test]
fn a_discard_then_rewrite_survives_a_late_reclaim() {
    // The server applies released references three requests late, as a
    // real cluster's queued reclaim does: the engine's new object must not
    // be the one the late reclaim deletes.
    let config = ClusterConfig::default()
        .with_block_size_shift(20)
        .with_reclaim_delay(3);
    let mut w = Wire::new(Cluster::new(config), 5, INDEX_ENTRIES);
    let vid = create(&mut w, "disk", 4 * MIB);
    open(&mut w, "disk");
    for round in 0..5u64 {
        let bytes = pattern(round, MIB);
        write(&mut w, MIB, &bytes).unwrap();
        assert_same(&read(&mut w, MIB, MIB).unwrap(), &bytes, "after write");
        discard(&mut w, MIB, MIB).unwrap();
        assert!(read(&mut w, MIB, MIB).unwrap().iter().all(|&b| b == 0));
    }
    let last = pattern(99, 4096);
    write(&mut w, MIB, &last).unwrap();
    // Let any late reclaim run, then check the object is still there.
    for _ in 0..8 {
        read(&mut w, 0, 512).unwrap();
    }
    assert!(
        w.cluster.object_exists(data(vid, 1)),
        "the new object survived"
    );
    assert_same(&read(&mut w, MIB, 4096).unwrap(), &last, "read back");
}
