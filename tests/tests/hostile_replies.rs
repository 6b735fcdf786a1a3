//! The engine against a server that answers wrongly: every case below once
//! made the engine report a success it did not get, or stop making
//! progress. Each reply that does not fit its request must end the
//! operation that owns it with an error naming what was wrong (and get
//! the connection dropped), or be sent again; never a silent hole, never
//! a stall. The set-up is the scenario tests' (`scenario/mod.rs`).

mod scenario;

use sheepdog_core::engine::{
    ControlDone, Engine, Error, Event, Problem, Receive, RetryPolicy, TRANSMIT_BUF_LEN,
};
use sheepdog_core::inode::{self, field};
use sheepdog_core::oid::{OidKind, NR_VDIS};
use sheepdog_core::wire::{Opcode, Request, Response, HEADER_LEN};
use sheepdog_tests::server::{FaultAction, Matcher};
use sheepdog_tests::sim::hostile::Hostile;
use sheepdog_tests::sim::wire::Wire;

use scenario::*;

/// Replace the reply to the first `times` requests that `pick` selects
/// with `change(true reply)`.
fn tamper(
    w: &mut Wire,
    times: u32,
    pick: impl Fn(&Request) -> bool + 'static,
    change: impl Fn(&[u8]) -> Hostile + 'static,
) {
    let mut left = times;
    w.tamper = Some(Box::new(move |req, reply| {
        if left == 0 || !pick(req) {
            return None;
        }
        left -= 1;
        Some(change(reply))
    }));
}

fn set_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// The reply with `data_length` set to `len` and exactly that many bytes.
fn with_length(reply: &[u8], len: u32) -> Hostile {
    let mut b = reply.to_vec();
    set_u32(&mut b, 12, len);
    b.resize(HEADER_LEN + len as usize, 0x5A);
    Hostile::Reply(b)
}

fn is_data_read(req: &Request) -> bool {
    req.opcode == Opcode::ReadObj && req.obj().is_some_and(|a| a.oid.kind() == OidKind::Data)
}

/// A READ_OBJ of index entries of an inode (past its header).
fn is_index_read(req: &Request) -> bool {
    req.opcode == Opcode::ReadObj
        && req
            .obj()
            .is_some_and(|a| a.oid.kind() == OidKind::Inode && a.offset >= inode::INDEX_OFFSET)
}

fn is_header_read(req: &Request) -> bool {
    req.opcode == Opcode::ReadObj
        && req
            .obj()
            .is_some_and(|a| a.oid.kind() == OidKind::Inode && a.offset == 0)
}

/// A VDI of two objects with data, closed.
fn disk_with_data(w: &mut Wire) -> (u32, Vec<u8>) {
    let vid = create(w, "disk", 2 * OBJ);
    open(w, "disk");
    let bytes = pattern(7, 2 * OBJ);
    write(w, 0, &bytes).unwrap();
    close(w);
    (vid, bytes)
}

fn bad_reply(e: &Error) -> Problem {
    match e {
        Error::BadReply(b) => b.problem,
        other => panic!("expected a bad reply, got {other:?}"),
    }
}

fn failed(done: ControlDone) -> Error {
    match done {
        ControlDone::Failed(e) => e,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// More bad replies than the retry policy has attempts: every one of them.
const ALWAYS: u32 = 1000;

#[test]
fn a_read_reply_of_the_wrong_length_is_sent_again_on_a_new_connection() {
    // A node that answers out of shape is a broken node: the connection
    // goes and the read goes out again, as after a lost connection.
    let mut w = wire();
    let (_, bytes) = disk_with_data(&mut w);
    open(&mut w, "disk");
    tamper(&mut w, 1, is_data_read, |r| with_length(r, 4096));
    let back = read(&mut w, 0, 65536).unwrap();
    assert_same(&back, &bytes[..65536], "read after the bad reply");
    assert_eq!(w.stats.disconnects, 1, "the connection is dropped");
}

#[test]
fn a_read_answered_with_the_wrong_length_every_time_fails_naming_it() {
    let mut w = wire();
    let (vid, _) = disk_with_data(&mut w);
    open(&mut w, "disk");
    tamper(&mut w, ALWAYS, is_data_read, |r| with_length(r, 4096));
    let e = read(&mut w, 0, 65536).expect_err("the read must not succeed");
    assert_eq!(
        bad_reply(&e),
        Problem::Length {
            got: 4096,
            expected: 65536
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "bad reply to READ_OBJ of oid {}: 4096 bytes, expected 65536",
            data(vid, 0)
        )
    );
    // The wire's retry policy allows 12 retries: 13 sends, each answered
    // out of shape and its connection dropped.
    assert_eq!(w.stats.refused, 13, "one connection per attempt");
    // Once the server answers properly, the read is whole.
    w.tamper = None;
    let back = read(&mut w, 0, 65536).unwrap();
    assert_same(&back, &pattern(7, 2 * OBJ)[..65536], "read after");
}

#[test]
fn an_index_chunk_of_the_wrong_length_fails_the_open() {
    // Before: the index stayed zeros, the VDI opened, and a write would
    // have created new objects over the live ones.
    let mut w = wire();
    let (vid, bytes) = disk_with_data(&mut w);
    tamper(&mut w, 1, is_index_read, |r| with_length(r, 4));
    // Once: read again on a new connection.
    open(&mut w, "disk");
    assert_same(&read(&mut w, 0, 2 * OBJ).unwrap(), &bytes, "read");
    close(&mut w);
    tamper(&mut w, ALWAYS, is_index_read, |r| with_length(r, 4));
    let e = failed(open_at(&mut w, "disk", None, false));
    assert!(
        matches!(bad_reply(&e), Problem::Length { got: 4, .. }),
        "{e}"
    );
    assert!(w.engine.volume().is_none());
    w.tamper = None;
    open(&mut w, "disk");
    assert_same(
        &read(&mut w, 0, 2 * OBJ).unwrap(),
        &bytes,
        "after reopening",
    );
    assert_same(&server_contents(&w.cluster, vid), &bytes, "on the server");
}

#[test]
fn an_index_entry_out_of_range_fails_the_open() {
    // Before: the entry read as unallocated, a silent hole of zeros.
    let mut w = wire();
    disk_with_data(&mut w);
    tamper(&mut w, 1, is_index_read, |r| {
        let mut b = r.to_vec();
        set_u32(&mut b, HEADER_LEN + 4, NR_VDIS + 5);
        Hostile::Reply(b)
    });
    let e = failed(open_at(&mut w, "disk", None, false));
    assert_eq!(bad_reply(&e), Problem::Vid { got: NR_VDIS + 5 });
    assert!(w.engine.volume().is_none());
}

#[test]
fn a_lookup_naming_vid_0_or_one_past_2_24_fails_instead_of_hanging() {
    // Before: nothing was sent after such a lookup, and drive_until
    // panicked with "engine stalled".
    for bad in [0, NR_VDIS, u32::MAX] {
        let mut w = wire();
        create(&mut w, "disk", OBJ);
        tamper(
            &mut w,
            ALWAYS,
            |q| q.opcode == Opcode::GetVdiInfo,
            move |r| {
                let mut b = r.to_vec();
                set_u32(&mut b, 24, bad);
                Hostile::Reply(b)
            },
        );
        let e = failed(open_at(&mut w, "disk", None, false));
        assert_eq!(bad_reply(&e), Problem::Vid { got: bad });
        // Once only: the lookup is asked again, and the VDI opens.
        tamper(
            &mut w,
            1,
            |q| q.opcode == Opcode::GetVdiInfo,
            move |r| {
                let mut b = r.to_vec();
                set_u32(&mut b, 24, bad);
                Hostile::Reply(b)
            },
        );
        open(&mut w, "disk");
    }
}

#[test]
fn a_re_resolution_naming_a_vid_out_of_range_fails_the_writes_waiting_for_it() {
    // A snapshot behind our back makes the write READONLY; the lookup of
    // the new working VDI names VID 2^24. Before: the header read for it
    // could not be built, so it was never sent and the write waited
    // forever.
    let mut w = wire();
    create(&mut w, "disk", 2 * OBJ);
    open(&mut w, "disk");
    write(&mut w, 0, &pattern(1, 4096)).unwrap();
    let now = w.now;
    w.cluster.snapshot_behind_back(now, "disk", "s1").unwrap();
    tamper(
        &mut w,
        ALWAYS,
        |q| q.opcode == Opcode::GetVdiInfo,
        |r| {
            let mut b = r.to_vec();
            set_u32(&mut b, 24, NR_VDIS);
            Hostile::Reply(b)
        },
    );
    let e = write(&mut w, 0, &pattern(2, 4096)).expect_err("the write cannot succeed");
    assert_eq!(bad_reply(&e), Problem::Vid { got: NR_VDIS });
    // Once the server answers properly, writes go to the new working VDI.
    w.tamper = None;
    write(&mut w, 0, &pattern(3, 4096)).unwrap();
    assert_same(&read(&mut w, 0, 4096).unwrap(), &pattern(3, 4096), "read");
}

#[test]
fn a_reply_cut_short_by_a_dropped_connection_is_resent() {
    // Before: the request whose payload was cut was already out of the
    // table, so it was never resent and the read hung forever.
    let mut w = wire();
    let (_, bytes) = disk_with_data(&mut w);
    open(&mut w, "disk");
    tamper(&mut w, 1, is_data_read, |r| {
        Hostile::CutShort(r[..HEADER_LEN + (r.len() - HEADER_LEN) / 2].to_vec())
    });
    let back = read(&mut w, 0, OBJ).unwrap();
    assert_same(&back, &bytes[..OBJ as usize], "read across the cut");
    assert_eq!(w.stats.cut_short, 1);
}

#[test]
fn a_reply_that_never_comes_is_resent_on_a_new_connection() {
    let mut w = wire();
    let (_, bytes) = disk_with_data(&mut w);
    open(&mut w, "disk");
    tamper(&mut w, 2, is_data_read, |_| Hostile::Silent);
    let back = read(&mut w, 0, 2 * OBJ).unwrap();
    assert_same(&back, &bytes, "read");
}

#[test]
fn a_reply_with_an_unknown_id_drops_the_connection_and_everything_is_resent() {
    let mut w = wire();
    let (_, bytes) = disk_with_data(&mut w);
    open(&mut w, "disk");
    tamper(&mut w, 1, is_data_read, |r| {
        let mut b = r.to_vec();
        set_u32(&mut b, 8, 0xdead_beef);
        Hostile::Reply(b)
    });
    let back = read(&mut w, 0, 2 * OBJ).unwrap();
    assert_same(&back, &bytes, "read");
    assert_eq!(w.stats.refused, 1);
}

#[test]
fn a_reply_with_another_opcode_is_sent_again_then_fails_its_operation() {
    let mut w = wire();
    let (_, bytes) = disk_with_data(&mut w);
    open(&mut w, "disk");
    let other_opcode = |r: &[u8]| {
        let mut b = r.to_vec();
        b[1] = Opcode::WriteObj.to_u8();
        Hostile::Reply(b)
    };
    tamper(&mut w, 1, is_data_read, other_opcode);
    assert_same(&read(&mut w, 0, 4096).unwrap(), &bytes[..4096], "read");
    tamper(&mut w, ALWAYS, is_data_read, other_opcode);
    let e = read(&mut w, 0, 4096).expect_err("must fail");
    assert_eq!(
        bad_reply(&e),
        Problem::Opcode {
            got: Opcode::WriteObj.to_u8()
        }
    );
}

#[test]
fn a_write_answered_with_a_result_not_in_the_table_fails() {
    let mut w = wire();
    create(&mut w, "disk", OBJ);
    open(&mut w, "disk");
    tamper(
        &mut w,
        1,
        |q| q.opcode == Opcode::CreateAndWriteObj,
        |r| {
            let mut b = r[..HEADER_LEN].to_vec();
            set_u32(&mut b, 16, 0x4321);
            set_u32(&mut b, 12, 0);
            Hostile::Reply(b)
        },
    );
    let e = write(&mut w, 0, &pattern(1, 4096)).expect_err("must fail");
    assert!(e.to_string().contains("(0x4321)"), "{e}");
}

#[test]
fn a_corrupt_inode_header_fails_the_open_naming_the_field() {
    let cases: [(usize, u8, &str); 3] = [
        (field::STORE_POLICY, 7, "store_policy"),
        (field::NR_COPIES, 0, "nr_copies"),
        (field::BLOCK_SIZE_SHIFT, 40, "block_size_shift"),
    ];
    for (at, value, name) in cases {
        let mut w = wire();
        disk_with_data(&mut w);
        tamper(&mut w, 1, is_header_read, move |r| {
            let mut b = r.to_vec();
            b[HEADER_LEN + at] = value;
            Hostile::Reply(b)
        });
        let e = failed(open_at(&mut w, "disk", None, false));
        assert!(
            matches!(bad_reply(&e), Problem::Field { name: n, .. } if n == name),
            "{name}: {e}"
        );
    }
    // An inode header of another VDI.
    let mut w = wire();
    let (vid, _) = disk_with_data(&mut w);
    tamper(&mut w, 1, is_header_read, move |r| {
        let mut b = r.to_vec();
        set_u32(&mut b, HEADER_LEN + field::VDI_ID, vid + 1);
        Hostile::Reply(b)
    });
    let e = failed(open_at(&mut w, "disk", None, false));
    assert_eq!(
        bad_reply(&e),
        Problem::Field {
            name: "vdi_id",
            got: u64::from(vid + 1),
            expected: u64::from(vid)
        }
    );
}

#[test]
fn writes_filling_every_slot_and_answered_readonly_still_find_the_new_vdi() {
    // Sixteen writes in flight (every slot of the simulated engine) all
    // meet a snapshot taken behind our back. Before: each waited for the
    // lookup of the new working VDI, which had no slot left to go out in.
    let mut w = wire();
    let vid = create(&mut w, "disk", 16 * OBJ);
    open(&mut w, "disk");
    let first = pattern(1, 16 * OBJ);
    write(&mut w, 0, &first).unwrap();
    let now = w.now;
    w.cluster.snapshot_behind_back(now, "disk", "s1").unwrap();
    let second = pattern(2, 16 * OBJ);
    write(&mut w, 0, &second).unwrap();
    let working = w.engine.volume().unwrap().vid;
    assert_ne!(working, vid);
    assert_same(&server_contents(&w.cluster, working), &second, "working");
    assert_same(&server_contents(&w.cluster, vid), &first, "snapshot");
}

#[test]
fn an_index_write_that_fails_for_good_refuses_further_writes_until_reopened() {
    // The inode may or may not hold the entries the cache has: a later
    // write reported done could otherwise sit in an object no index
    // entry names.
    let mut w = wire();
    create(&mut w, "disk", 2 * OBJ);
    open(&mut w, "disk");
    let index_write = |q: &Request| {
        q.opcode == Opcode::WriteObj
            && q.obj()
                .is_some_and(|a| a.oid.kind() == OidKind::Inode && a.offset >= inode::INDEX_OFFSET)
    };
    tamper(&mut w, 1, index_write, |r| {
        let mut b = r[..HEADER_LEN].to_vec();
        set_u32(&mut b, 16, 0x4321);
        Hostile::Reply(b)
    });
    assert!(write(&mut w, 0, &pattern(1, 4096)).is_err());
    let t = u64::MAX;
    assert_eq!(w.engine.write(t, OBJ, 4096), Err(Error::IndexUnsettled));
    // Reads still work; a reopened VDI takes writes again.
    read(&mut w, 0, 4096).unwrap();
    close(&mut w);
    open(&mut w, "disk");
    write(&mut w, OBJ, &pattern(2, 4096)).unwrap();
    close(&mut w);
    open(&mut w, "disk");
    assert_same(
        &read(&mut w, OBJ, 4096).unwrap(),
        &pattern(2, 4096),
        "after",
    );
}

#[test]
fn a_second_header_before_the_first_payload_loses_no_request() {
    // A caller that reads a header, never reads its payload and reads the
    // next header has lost the first payload: that request goes out
    // again. Before: it was forgotten, and its read never completed.
    let mut w = wire();
    let (_, bytes) = disk_with_data(&mut w);
    open(&mut w, "disk");
    let (a, b) = (token(), token());
    w.engine.read(a, 0, 4096).unwrap();
    w.engine.read(b, OBJ, 4096).unwrap();
    let mut buf = vec![0u8; TRANSMIT_BUF_LEN];
    let mut replies = Vec::new();
    while let Some(t) = w.engine.poll_transmit(&mut buf).unwrap() {
        let req = Request::parse_bytes(&buf[..t.header_len]).unwrap();
        let now = w.now;
        replies.push(w.cluster.handle(now, &req, &[]).to_bytes());
    }
    assert_eq!(replies.len(), 2);
    w.engine.handle_header(&replies[0][..HEADER_LEN]).unwrap();
    let second = w.engine.handle_header(&replies[1][..HEADER_LEN]).unwrap();
    let Receive::Data(d) = second.into else {
        panic!("data expected")
    };
    let mut got_b = vec![0u8; 4096];
    got_b.copy_from_slice(&replies[1][HEADER_LEN..]);
    w.engine.handle_payload(w.now, &[]);
    assert_eq!(d.token, b);
    w.bufs.insert(a, vec![0xA5; 4096]);
    w.bufs.insert(b, got_b);
    let done = finish(&mut w, &[a, b]);
    assert_eq!(done[&a], Ok(()));
    assert_eq!(done[&b], Ok(()));
    assert_same(
        &w.bufs[&a],
        &bytes[..4096],
        "the read whose payload was lost",
    );
}

#[test]
fn poll_transmit_says_how_large_a_buffer_it_needs() {
    // Before: a small buffer got `None`, which looks like "nothing to
    // send", and the caller waited forever.
    let mut e: Engine<Vec<u8>, 4> = Engine::new(vec![0; 4096], RetryPolicy::default());
    e.cluster_default().unwrap();
    let mut small = [0u8; HEADER_LEN];
    assert_eq!(
        e.poll_transmit(&mut small),
        Err(Error::BufferTooSmall {
            need: TRANSMIT_BUF_LEN
        })
    );
    let mut buf = vec![0u8; TRANSMIT_BUF_LEN];
    assert!(e.poll_transmit(&mut buf).unwrap().is_some());
}

#[test]
fn a_server_that_drops_every_connection_ends_the_operation_with_an_error() {
    // Liveness: every loss counts as an attempt of what was in flight.
    let mut w = wire();
    disk_with_data(&mut w);
    open(&mut w, "disk");
    tamper(&mut w, u32::MAX, is_data_read, |_| Hostile::Silent);
    let e = read(&mut w, 0, 4096).expect_err("must give up");
    assert_eq!(e, Error::ConnectionLost);
}

#[test]
fn cluster_defaults_that_cannot_be_are_refused() {
    let mut w = wire();
    tamper(
        &mut w,
        1,
        |q| q.opcode == Opcode::GetClusterDefault,
        |r| {
            let mut b = r.to_vec();
            b[22] = 7; // block_size_shift
            Hostile::Reply(b)
        },
    );
    let e = failed(cluster_default_outcome(&mut w));
    assert!(matches!(
        bad_reply(&e),
        Problem::Field {
            name: "block_size_shift",
            got: 7,
            ..
        }
    ));
}

fn cluster_default_outcome(w: &mut Wire) -> ControlDone {
    w.engine.cluster_default().unwrap();
    let mut out = None;
    w.drive_until(|_, ev| match ev {
        Event::Control(done) => {
            out = Some(done.clone());
            true
        }
        _ => false,
    });
    out.expect("outcome")
}

#[test]
fn reply_headers_are_judged_before_the_payload_is_read() {
    // A 48-byte header announcing far more than the request offered is
    // refused as soon as it arrives: the caller never reads the payload.
    let mut w = wire();
    disk_with_data(&mut w);
    open(&mut w, "disk");
    w.engine.read(token(), 0, 4096).unwrap();
    let mut buf = vec![0u8; TRANSMIT_BUF_LEN];
    let t = w.engine.poll_transmit(&mut buf).unwrap().unwrap();
    let req = Request::parse_bytes(&buf[..t.header_len]).unwrap();
    let mut rsp = Response::to_request(&req, sheepdog_core::wire::ResultCode::Success, 0);
    rsp.data_length = u32::MAX;
    let e = w.engine.handle_header(&rsp.to_bytes()).unwrap_err();
    assert_eq!(
        bad_reply(&e),
        Problem::Length {
            got: u32::MAX,
            expected: 4096
        }
    );
}

#[test]
fn a_listing_with_a_bad_reply_ends_in_an_error_rather_than_leave_a_vdi_out() {
    // Before: a header read that failed, or came back of another length,
    // skipped its VDI and the listing ended as if whole.
    let mut w = wire();
    create(&mut w, "a", OBJ);
    let b = create(&mut w, "b", OBJ);
    create(&mut w, "c", OBJ);
    assert_eq!(list(&mut w.cluster).len(), 3);
    let header_of =
        move |q: &Request| is_header_read(q) && q.obj().is_some_and(|a| a.oid.vid_bits() == b);
    // Another VDI's header.
    let e = list_with(&mut w.cluster, |q, mut reply| {
        if header_of(q) {
            set_u32(&mut reply, HEADER_LEN + field::VDI_ID, b ^ 1);
        }
        reply
    })
    .expect_err("a corrupt header");
    assert!(
        matches!(bad_reply(&e), Problem::Field { name: "vdi_id", .. }),
        "{e}"
    );
    // A header of the wrong length.
    let e = list_with(&mut w.cluster, |q, reply| {
        if header_of(q) {
            let mut b = reply;
            set_u32(&mut b, 12, 100);
            b.truncate(HEADER_LEN + 100);
            b
        } else {
            reply
        }
    })
    .expect_err("a short header");
    assert!(
        matches!(bad_reply(&e), Problem::Length { got: 100, .. }),
        "{e}"
    );
    // A transient failure is an error too, not a VDI left out.
    let e = list_with(&mut w.cluster, |q, reply| {
        if header_of(q) {
            let mut b = reply[..HEADER_LEN].to_vec();
            set_u32(&mut b, 12, 0);
            set_u32(
                &mut b,
                16,
                sheepdog_core::wire::ResultCode::NetworkError.to_u32(),
            );
            b
        } else {
            reply
        }
    })
    .expect_err("a failed header read");
    assert!(matches!(e, Error::Server { .. }), "{e}");
}

#[test]
fn writes_queued_behind_a_failed_index_write_fail_too() {
    // A write that waits behind another to the same object is planned from
    // the cache once the first ends. If the first one's index write failed
    // without landing, the cache names an object the inode does not: the
    // second write would go to it as a plain WRITE_OBJ and be reported
    // done, with its data in an object no index entry names.
    let mut w = wire();
    let vid = create(&mut w, "disk", 2 * OBJ);
    open(&mut w, "disk");
    w.cluster.inject(
        Matcher::object(inode_of(vid)).with_opcode(Opcode::WriteObj),
        FaultAction::Fail(sheepdog_core::wire::ResultCode::from_u32(0x4321)),
        1,
    );
    let first = submit_write(&mut w, 0, &pattern(1, 4096));
    let second = submit_write(&mut w, 8192, &pattern(2, 4096));
    let done = finish(&mut w, &[first, second]);
    assert!(done[&first].is_err());
    match done[&second] {
        Err(e) => assert_eq!(e, Error::IndexUnsettled),
        Ok(()) => {
            let on_server = server_contents(&w.cluster, vid);
            assert_same(&on_server[8192..12288], &pattern(2, 4096), "reported done");
        }
    }
}

// ----- a NEW_VDI whose reply was lost -----------------------------------------
//
// NEW_VDI is not idempotent: sent again after a lost connection, a create
// or clone that landed answers VDI_EXIST, and a snapshot that landed would
// be taken twice. (Seen on a real cluster through a proxy that cut the
// reply.)

fn is_new_vdi(q: &Request) -> bool {
    q.opcode == Opcode::NewVdi
}

/// VDIs of `name` on the server: (snapshots, working ones).
fn vdis_named(w: &mut Wire, name: &str) -> (Vec<u32>, Option<u32>) {
    let working = w.cluster.lookup(name, "", 0).ok();
    let snaps = (1..16)
        .filter_map(|id| w.cluster.lookup(name, "", id).ok())
        .filter(|&v| Some(v) != working)
        .collect();
    (snaps, working)
}

#[test]
fn a_create_whose_reply_was_lost_is_found_rather_than_refused() {
    let mut w = wire();
    tamper(&mut w, 1, is_new_vdi, |_| Hostile::Silent);
    let vid = create(&mut w, "disk", 3 * OBJ);
    assert_eq!(w.cluster.lookup("disk", "", 0), Ok(vid));
    assert!(w.stats.disconnects >= 1);
    // With preallocation, the objects are made after all.
    tamper(&mut w, 1, is_new_vdi, |_| Hostile::Silent);
    let done = control(&mut w, |e| {
        e.create(
            "pre",
            sheepdog_core::engine::CreateOptions {
                prealloc: true,
                ..opts(2 * OBJ)
            },
        )
    });
    let ControlDone::Created { vid } = done else {
        panic!("{done:?}")
    };
    assert!(w.cluster.object_exists(data(vid, 1)));
}

#[test]
fn a_create_over_someone_elses_vdi_is_still_refused_after_a_lost_reply() {
    let mut w = wire();
    create(&mut w, "disk", OBJ);
    tamper(&mut w, 1, is_new_vdi, |_| Hostile::Silent);
    let e = failed(control(&mut w, |e| e.create("disk", opts(2 * OBJ))));
    assert!(matches!(e, Error::Server { .. }), "{e}");
    assert!(
        e.to_string().contains("VDI_EXIST") || e.to_string().contains("exists"),
        "{e}"
    );
}

#[test]
fn a_snapshot_whose_reply_was_lost_is_taken_once() {
    let mut w = wire();
    let vid = create(&mut w, "disk", OBJ);
    open(&mut w, "disk");
    write(&mut w, 0, &pattern(1, 4096)).unwrap();
    tamper(&mut w, 1, is_new_vdi, |_| Hostile::Silent);
    let (snap, working) = snapshot(&mut w, "s1");
    assert_eq!(snap, vid);
    let (snaps, now_working) = vdis_named(&mut w, "disk");
    assert_eq!(snaps, vec![vid], "exactly one snapshot");
    assert_eq!(now_working, Some(working));
    assert_eq!(w.engine.volume().unwrap().vid, working);
    assert_eq!(w.cluster.lookup("disk", "s1", 0), Ok(vid));
    // The open VDI goes on writing to the new working VDI.
    write(&mut w, 0, &pattern(2, 4096)).unwrap();
    assert_same(
        &server_contents(&w.cluster, working)[..4096],
        &pattern(2, 4096),
        "working",
    );
    assert_same(
        &server_contents(&w.cluster, vid)[..4096],
        &pattern(1, 4096),
        "snapshot",
    );
}

#[test]
fn a_clone_and_a_rollback_whose_replies_were_lost_succeed() {
    let mut w = wire();
    create(&mut w, "disk", OBJ);
    open(&mut w, "disk");
    write(&mut w, 0, &pattern(1, 4096)).unwrap();
    snapshot(&mut w, "s1");
    close(&mut w);
    open_snapshot(&mut w, "disk", "s1");
    tamper(&mut w, 1, is_new_vdi, |_| Hostile::Silent);
    let done = control(&mut w, |e| e.clone_snapshot("copy"));
    let ControlDone::Cloned { vid } = done else {
        panic!("{done:?}")
    };
    assert_eq!(w.cluster.lookup("copy", "", 0), Ok(vid));
    tamper(&mut w, 1, is_new_vdi, |_| Hostile::Silent);
    let done = control(&mut w, |e| e.rollback());
    let ControlDone::RolledBack { vid } = done else {
        panic!("{done:?}")
    };
    assert_eq!(w.cluster.lookup("disk", "", 0), Ok(vid));
    assert_same(
        &server_contents(&w.cluster, vid)[..4096],
        &pattern(1, 4096),
        "rolled back",
    );
}

#[test]
fn a_delete_and_a_rollback_whose_del_vdi_reply_was_lost_succeed() {
    // DEL_VDI sent again after the first one landed answers NO_VDI: the
    // VDI is gone, as asked. (Seen on a real cluster through a proxy that
    // dropped the reply.)
    let is_del_vdi = |q: &Request| q.opcode == Opcode::DelVdi;
    let mut w = wire();
    let vid = create(&mut w, "disk", OBJ);
    tamper(&mut w, 1, is_del_vdi, |_| Hostile::Silent);
    let done = control(&mut w, |e| e.delete("disk", None));
    assert_eq!(done, ControlDone::Deleted { vid });
    assert!(w.cluster.lookup("disk", "", 0).is_err());

    create(&mut w, "vm", OBJ);
    open(&mut w, "vm");
    write(&mut w, 0, &pattern(1, 4096)).unwrap();
    snapshot(&mut w, "s1");
    write(&mut w, 0, &pattern(2, 4096)).unwrap();
    close(&mut w);
    open_snapshot(&mut w, "vm", "s1");
    tamper(&mut w, 1, is_del_vdi, |_| Hostile::Silent);
    let done = control(&mut w, |e| e.rollback());
    let ControlDone::RolledBack { vid } = done else {
        panic!("{done:?}")
    };
    assert_eq!(w.cluster.lookup("vm", "", 0), Ok(vid));
    assert_same(
        &server_contents(&w.cluster, vid)[..4096],
        &pattern(1, 4096),
        "rolled back",
    );
}

#[test]
fn a_listing_handed_a_short_payload_ends_in_an_error() {
    // A caller whose scratch could not hold an inode header hands over
    // fewer bytes: the lister must not take that VDI for deleted and
    // finish as if the listing were whole.
    use sheepdog_core::list::{ListEvent, Lister};
    use sheepdog_core::wire::VDI_BITMAP_LEN;
    let mut w = wire();
    create(&mut w, "a", OBJ);
    let mut lister = Lister::new(
        vec![0u8; VDI_BITMAP_LEN],
        vec![0u8; VDI_BITMAP_LEN],
        1 << 16,
    )
    .unwrap();
    let mut buf = [0u8; HEADER_LEN];
    for _ in 0..10 {
        if let Some(ev) = lister.poll_event() {
            assert_eq!(
                ev,
                ListEvent::Done(Err(Error::BufferTooSmall {
                    need: inode::HEADER_LEN
                }))
            );
            return;
        }
        let n = lister.poll_transmit(&mut buf).unwrap().expect("a request");
        let req = Request::parse_bytes(&buf[..n]).unwrap();
        let bytes = w.cluster.handle(0, &req, &[]).to_bytes();
        let incoming = lister.handle_header(&bytes[..HEADER_LEN]).unwrap();
        let payload = &bytes[HEADER_LEN..];
        match incoming.into {
            Receive::Own(r) => {
                lister.bitmap_mut()[r].copy_from_slice(payload);
                lister.handle_payload(&[]);
            }
            // Only part of the header.
            Receive::Scratch => lister.handle_payload(&payload[..100]),
            _ => lister.handle_payload(&[]),
        }
    }
    panic!("the listing did not end");
}
