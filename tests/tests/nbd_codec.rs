//! Golden bytes for the NBD codec, written from the published protocol
//! (`doc/proto.md` of NetworkBlockDevice/nbd; `docs/NBD.md` here): the
//! greeting, option requests and replies, the EXPORT_NAME fallback,
//! transmission requests and every reply the server sends.

use sheepdog_core::nbd::handshake::{
    Answer, Export, Handshake, InfoWanted, Outcome, Question, Refusal, Step,
};
use sheepdog_core::nbd::request::{Command, Limits, Parse, Request};
use sheepdog_core::nbd::{reply, Errno, Error};

/// Hex to bytes, spaces ignored.
fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const IHAVEOPT: &str = "49484156454f5054";
const REPLY: &str = "0003e889045565a9";

fn option(opt: u32, data: &[u8]) -> Vec<u8> {
    let mut b = hex(IHAVEOPT);
    b.extend_from_slice(&opt.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

/// A handshake past the greeting and the client flags.
fn negotiating(client_flags: &str) -> Handshake {
    let mut hs = Handshake::new();
    let mut out = [0u8; 64];
    hs.greeting(&mut out).unwrap();
    let step = hs.parse(&hex(client_flags), &mut out).unwrap();
    assert_eq!(
        step,
        Step::Answered {
            consumed: 4,
            reply: 0
        }
    );
    hs
}

fn export() -> Export<'static> {
    Export {
        name: b"vm1",
        description: b"",
        size: 0x4000_0000,
        flags: 0x0004,
        min_block: 1,
        preferred_block: 0x40_0000,
        max_block: 0x200_0000,
    }
}

/// Parse one whole option; its reply bytes or its question.
fn send(hs: &mut Handshake, bytes: &[u8]) -> Result<Vec<u8>, Box<Question>> {
    let mut out = vec![0u8; 8192];
    match hs.parse(bytes, &mut out).unwrap() {
        Step::Answered { consumed, reply }
        | Step::Close { consumed, reply }
        | Step::StartTls { consumed, reply } => {
            assert_eq!(consumed, bytes.len());
            Ok(out[..reply].to_vec())
        }
        Step::Ask { consumed, question } => {
            assert_eq!(consumed, bytes.len());
            Err(Box::new(question))
        }
        Step::NeedMore { need } => panic!("needs {need} of {} bytes", bytes.len()),
    }
}

#[test]
fn greeting_is_nbdmagic_ihaveopt_and_the_flags() {
    let mut hs = Handshake::new();
    let mut out = [0u8; 18];
    assert_eq!(hs.greeting(&mut out), Ok(18));
    assert_eq!(out.to_vec(), hex("4e42444d41474943 49484156454f5054 0003"));
    // A second greeting is out of phase.
    assert_eq!(hs.greeting(&mut out), Err(Error::OutOfPhase));
}

#[test]
fn client_flags_without_fixed_newstyle_or_unknown_close() {
    for bad in ["00000000", "00000004", "80000001"] {
        let mut hs = Handshake::new();
        let mut out = [0u8; 18];
        hs.greeting(&mut out).unwrap();
        assert!(matches!(
            hs.parse(&hex(bad), &mut out),
            Err(Error::ClientFlags(_))
        ));
    }
}

#[test]
fn go_answers_export_name_block_size_then_ack() {
    let mut hs = negotiating("00000003");
    // GO "vm1", asking for NAME and BLOCK_SIZE.
    let go = option(7, &hex("00000003 766d31 0002 0001 0003"));
    let q = send(&mut hs, &go).unwrap_err();
    assert_eq!(
        *q,
        Question::Go {
            name: sheepdog_core::nbd::handshake::Name::from_slice(b"vm1").unwrap(),
            info: InfoWanted {
                name: true,
                description: false,
                block_size: true
            }
        }
    );
    let mut out = vec![0u8; 8192];
    let Answer { reply, outcome } = hs.answer_export(&mut out, &q, Ok(&export())).unwrap();
    let want = hex(&format!(
        "{REPLY} 00000007 00000003 0000000c  0000 0000000040000000 0005
         {REPLY} 00000007 00000003 00000005  0001 766d31
         {REPLY} 00000007 00000003 0000000e  0003 00000001 00400000 02000000
         {REPLY} 00000007 00000001 00000000"
    ));
    assert_eq!(out[..reply].to_vec(), want);
    let Outcome::Transmission(neg) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(!neg.structured && !neg.base_allocation);
    assert_eq!(neg.flags, 0x0005, "HAS_FLAGS added to SEND_FLUSH");
    assert!(hs.in_transmission());
}

#[test]
fn info_does_not_start_transmission_and_refusals_are_errors() {
    let mut hs = negotiating("00000001");
    let info = option(6, &hex("00000000 0000"));
    let q = send(&mut hs, &info).unwrap_err();
    let mut out = vec![0u8; 8192];
    let a = hs
        .answer_export(&mut out, &q, Err((Refusal::Unknown, "no")))
        .unwrap();
    // NBD_REP_ERR_UNKNOWN = 2^31 + 6, with the message.
    assert_eq!(
        out[..a.reply].to_vec(),
        hex(&format!("{REPLY} 00000006 80000006 00000002 6e6f"))
    );
    assert_eq!(a.outcome, Outcome::Continue);
    let a = hs.answer_export(&mut out, &q, Ok(&export())).unwrap();
    assert_eq!(a.outcome, Outcome::Continue);
    assert!(!hs.in_transmission());
}

#[test]
fn export_name_fallback_with_and_without_zero_padding() {
    for (flags, len) in [("00000003", 10), ("00000001", 134)] {
        let mut hs = negotiating(flags);
        let q = send(&mut hs, &option(1, b"vm1")).unwrap_err();
        let mut out = vec![0u8; 8192];
        let a = hs.answer_export(&mut out, &q, Ok(&export())).unwrap();
        assert_eq!(a.reply, len);
        assert_eq!(out[..10].to_vec(), hex("0000000040000000 0005"));
        assert!(out[10..len].iter().all(|&b| b == 0));
        assert!(matches!(a.outcome, Outcome::Transmission(_)));
    }
    // An unknown export closes: EXPORT_NAME has no error reply.
    let mut hs = negotiating("00000003");
    let q = send(&mut hs, &option(1, b"nope")).unwrap_err();
    let mut out = vec![0u8; 8192];
    let a = hs
        .answer_export(&mut out, &q, Err((Refusal::Unknown, "no")))
        .unwrap();
    assert_eq!((a.reply, a.outcome), (0, Outcome::Close));
}

#[test]
fn structured_replies_then_base_allocation_is_selected_for_that_export() {
    let mut hs = negotiating("00000003");
    // SET_META_CONTEXT before STRUCTURED_REPLY is invalid.
    let set = option(
        10,
        &hex("00000003 766d31 00000001 0000000f 626173653a616c6c6f636174696f6e"),
    );
    let r = send(&mut hs, &set).unwrap();
    assert_eq!(r[12..16].to_vec(), hex("80000003"), "ERR_INVALID");
    assert_eq!(
        send(&mut hs, &option(8, b"")).unwrap(),
        hex(&format!("{REPLY} 00000008 00000001 00000000"))
    );
    let r = send(&mut hs, &set).unwrap();
    let want = hex(&format!(
        "{REPLY} 0000000a 00000004 00000013 00000001 626173653a616c6c6f636174696f6e
         {REPLY} 0000000a 00000001 00000000"
    ));
    assert_eq!(r, want);
    let q = send(&mut hs, &option(7, &hex("00000003 766d31 0000"))).unwrap_err();
    let mut out = vec![0u8; 8192];
    let a = hs.answer_export(&mut out, &q, Ok(&export())).unwrap();
    let Outcome::Transmission(neg) = a.outcome else {
        panic!()
    };
    assert!(neg.structured && neg.base_allocation);
}

#[test]
fn a_failed_set_meta_context_clears_the_selection() {
    let mut hs = negotiating("00000003");
    send(&mut hs, &option(8, b"")).unwrap();
    let set = option(
        10,
        &hex("00000003 766d31 00000001 0000000f 626173653a616c6c6f636174696f6e"),
    );
    send(&mut hs, &set).unwrap();
    // Malformed: the query count does not fit.
    let r = send(&mut hs, &option(10, &hex("00000003 766d31 00000002"))).unwrap();
    assert_eq!(r[12..16].to_vec(), hex("80000003"));
    let q = send(&mut hs, &option(7, &hex("00000003 766d31 0000"))).unwrap_err();
    let mut out = vec![0u8; 8192];
    let a = hs.answer_export(&mut out, &q, Ok(&export())).unwrap();
    assert!(matches!(a.outcome, Outcome::Transmission(n) if !n.base_allocation));
}

#[test]
fn a_context_chosen_for_another_export_does_not_count() {
    let mut hs = negotiating("00000003");
    send(&mut hs, &option(8, b"")).unwrap();
    // LIST with `base:` lists it; SET with `base:` selects nothing.
    let list = option(9, &hex("00000003 766d31 00000001 00000005 626173653a"));
    let r = send(&mut hs, &list).unwrap();
    assert_eq!(r[12..16].to_vec(), hex("00000004"), "base: lists it");
    let set = option(10, &hex("00000003 766d31 00000001 00000005 626173653a"));
    let r = send(&mut hs, &set).unwrap();
    assert_eq!(r[12..16].to_vec(), hex("00000001"), "only the ACK");
    // Selected for another export.
    let set = option(
        10,
        &hex("00000001 78 00000001 0000000f 626173653a616c6c6f636174696f6e"),
    );
    let r = send(&mut hs, &set).unwrap();
    assert_eq!(r[12..16].to_vec(), hex("00000004"));
    let q = send(&mut hs, &option(7, &hex("00000003 766d31 0000"))).unwrap_err();
    let mut out = vec![0u8; 8192];
    let a = hs.answer_export(&mut out, &q, Ok(&export())).unwrap();
    assert!(matches!(a.outcome, Outcome::Transmission(n) if !n.base_allocation));
}

#[test]
fn unsupported_too_big_and_malformed_options_leave_the_handshake_going() {
    let mut hs = negotiating("00000003");
    // STARTTLS and EXTENDED_HEADERS: ERR_UNSUP (2^31 + 1).
    for opt in [5u32, 11, 12345] {
        let r = send(&mut hs, &option(opt, b"")).unwrap();
        assert_eq!(
            r[8..16].to_vec(),
            [opt.to_be_bytes(), 0x8000_0001u32.to_be_bytes()].concat()
        );
    }
    // GO whose request count does not fit: ERR_INVALID.
    let r = send(&mut hs, &option(7, &hex("00000003 766d31 0005 0001"))).unwrap();
    assert_eq!(r[12..16].to_vec(), hex("80000003"));
    // A 100000-byte option: ERR_TOO_BIG, then its bytes are skipped.
    let mut big = hex(IHAVEOPT);
    big.extend_from_slice(&hex("00000006 000186a0"));
    let mut out = vec![0u8; 8192];
    let Step::Answered { consumed, reply } = hs.parse(&big, &mut out).unwrap() else {
        panic!()
    };
    assert_eq!(consumed, 16);
    assert_eq!(out[12..16].to_vec(), hex("80000009"));
    assert!(reply > 20);
    let junk = vec![0x55u8; 100_000];
    let mut at = 0;
    while at < junk.len() {
        let end = (at + 4096).min(junk.len());
        match hs.parse(&junk[at..end], &mut out).unwrap() {
            Step::Answered { consumed, reply: 0 } => at += consumed,
            other => panic!("{other:?}"),
        }
    }
    // Then LIST asks.
    assert_eq!(*send(&mut hs, &option(3, b"")).unwrap_err(), Question::List);
    let n = hs.answer_list_entry(&mut out, b"vm1").unwrap();
    assert_eq!(
        out[..n].to_vec(),
        hex(&format!(
            "{REPLY} 00000003 00000002 00000007 00000003 766d31"
        ))
    );
}

#[test]
fn abort_is_acknowledged_then_closes() {
    let mut hs = negotiating("00000003");
    let mut out = vec![0u8; 64];
    let step = hs.parse(&option(2, b""), &mut out).unwrap();
    assert_eq!(
        step,
        Step::Close {
            consumed: 16,
            reply: 20
        }
    );
    assert_eq!(
        out[..20].to_vec(),
        hex(&format!("{REPLY} 00000002 00000001 00000000"))
    );
    assert_eq!(hs.parse(&option(3, b""), &mut out), Err(Error::OutOfPhase));
}

#[test]
fn options_in_pieces_ask_for_the_rest() {
    let mut hs = negotiating("00000003");
    let go = option(7, &hex("00000003 766d31 0000"));
    let mut out = vec![0u8; 64];
    for cut in 0..go.len() {
        let step = hs.parse(&go[..cut], &mut out).unwrap();
        let Step::NeedMore { need } = step else {
            panic!("{cut}: {step:?}")
        };
        assert!(need > cut);
    }
    assert!(matches!(hs.parse(&go, &mut out), Ok(Step::Ask { .. })));
    // A bad magic closes.
    let mut hs = negotiating("00000003");
    let mut bad = go.clone();
    bad[0] ^= 1;
    assert!(matches!(
        hs.parse(&bad, &mut out),
        Err(Error::BadMagic { .. })
    ));
}

fn limits(read_only: bool) -> Limits {
    Limits {
        size: 1 << 20,
        read_only,
        structured: true,
        base_allocation: true,
    }
}

fn req(hexs: &str) -> Request {
    match Request::parse(&hex(hexs)).unwrap() {
        Parse::Complete(r) => r,
        p => panic!("{p:?}"),
    }
}

#[test]
fn requests_parse_from_their_28_bytes() {
    let r = req("25609513 0001 0001 0102030405060708 0000000000001000 00000200");
    assert_eq!(
        r,
        Request {
            flags: 1,
            command: Command::Write,
            cookie: 0x0102_0304_0506_0708,
            offset: 0x1000,
            len: 0x200
        }
    );
    assert_eq!(r.payload_len(), 512);
    assert_eq!(
        Request::parse(&hex("25609513 0000")),
        Ok(Parse::Partial { need: 28 })
    );
    assert!(matches!(
        Request::parse(&hex(
            "25609514 0000 0000 0000000000000000 0000000000000000 00000000"
        )),
        Err(Error::BadMagic { .. })
    ));
    // A write larger than 32 MiB cannot be taken: the connection closes.
    assert_eq!(
        Request::parse(&hex(
            "25609513 0000 0001 0000000000000000 0000000000000000 02000001"
        )),
        Err(Error::PayloadTooLarge(0x0200_0001))
    );
}

#[test]
fn checks_give_eperm_einval_and_eoverflow() {
    // A write to a read-only export: EPERM, before the range is looked at.
    let w = req("25609513 0000 0001 0000000000000001 00000000ffffffff 00000200");
    assert_eq!(w.check(&limits(true)), Err(Errno::Perm));
    assert_eq!(w.check(&limits(false)), Err(Errno::Inval));
    // A read past the end, a read ending at the end.
    let r = req("25609513 0000 0000 0000000000000001 00000000000ffe00 00000400");
    assert_eq!(r.check(&limits(true)), Err(Errno::Inval));
    let r = req("25609513 0000 0000 0000000000000001 00000000000ffc00 00000400");
    assert_eq!(r.check(&limits(true)), Ok(()));
    // An offset that overflows.
    let r = req("25609513 0000 0000 0000000000000001 ffffffffffffff00 00000400");
    assert_eq!(r.check(&limits(true)), Err(Errno::Inval));
    // FUA on a read, REQ_ONE on a write, an unknown command.
    let r = req("25609513 0001 0000 0000000000000001 0000000000000000 00000200");
    assert_eq!(r.check(&limits(false)), Err(Errno::Inval));
    let r = req("25609513 0008 0001 0000000000000001 0000000000000000 00000200");
    assert_eq!(r.check(&limits(false)), Err(Errno::Inval));
    let r = req("25609513 0000 0009 0000000000000001 0000000000000000 00000200");
    assert_eq!(r.check(&limits(false)), Err(Errno::Inval));
    // Block status without base:allocation.
    let r = req("25609513 0000 0007 0000000000000001 0000000000000000 00000200");
    let mut l = limits(false);
    assert_eq!(r.check(&l), Ok(()));
    l.base_allocation = false;
    assert_eq!(r.check(&l), Err(Errno::Inval));
    // A read longer than 32 MiB.
    let r = req("25609513 0000 0000 0000000000000001 0000000000000000 02000001");
    l.size = 1 << 40;
    assert_eq!(r.check(&l), Err(Errno::Overflow));
}

#[test]
fn replies_are_the_spec_layouts() {
    assert_eq!(
        reply::simple(0x0102_0304_0506_0708, None).to_vec(),
        hex("67446698 00000000 0102030405060708")
    );
    assert_eq!(
        reply::simple(1, Some(Errno::Perm)).to_vec(),
        hex("67446698 00000001 0000000000000001")
    );
    assert_eq!(
        reply::offset_data(7, true, 0x1000, 512).to_vec(),
        hex("668e33ef 0001 0001 0000000000000007 00000208 0000000000001000")
    );
    assert_eq!(
        reply::offset_hole(7, false, 0x2000, 0x40_0000).to_vec(),
        hex("668e33ef 0000 0002 0000000000000007 0000000c 0000000000002000 00400000")
    );
    assert_eq!(
        reply::none(7).to_vec(),
        hex("668e33ef 0001 0000 0000000000000007 00000000")
    );
    let mut b = [0u8; 64];
    let n = reply::error(&mut b, 7, Errno::Io, "bad").unwrap();
    assert_eq!(
        b[..n].to_vec(),
        hex("668e33ef 0001 8001 0000000000000007 00000009 00000005 0003 626164")
    );
    let n = reply::block_status(&mut b, 7, 1, &[(0x40_0000, 0), (0x80_0000, 3)]).unwrap();
    assert_eq!(
        b[..n].to_vec(),
        hex("668e33ef 0001 0005 0000000000000007 00000014 00000001
             00400000 00000000 00800000 00000003")
    );
    assert_eq!(
        reply::block_status(&mut b[..20], 7, 1, &[(1, 0)]),
        Err(Error::BufferTooSmall { need: 24 })
    );
}
