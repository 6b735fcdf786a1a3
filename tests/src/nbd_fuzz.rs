//! The NBD codec against an arbitrary client, for the `nbd` fuzz target
//! and the smoke test: [`nbd`] builds a client's byte stream from the
//! input (mostly well-framed options and requests with arbitrary fields,
//! sometimes raw bytes), feeds it to the server side in arbitrary pieces
//! and answers every question, checking that:
//!
//! - nothing panics, and every step makes progress: a `NeedMore` asks for
//!   more than the input holds, everything else consumes at least a byte
//!   and no more than there is, so a loop over it never spins;
//! - every reply fits the output buffer, and every option reply starts
//!   with the option reply magic and names the option it answers;
//! - once transmission starts, requests parse or ask for more, their
//!   checks give an errno or pass, and passing ones lie within the export;
//! - with TLS required, no question about an export is asked before
//!   STARTTLS (whose upgrade is taken to succeed).

use arbitrary::Unstructured;
use sheepdog_core::nbd::handshake::{
    Answer, Export, Handshake, Negotiated, Outcome, Question, Refusal, Step, Tls, INPUT_BUF_LEN,
    REPLY_BUF_LEN,
};
use sheepdog_core::nbd::request::{Command, Limits, Parse, Request, REQUEST_LEN};
use sheepdog_core::nbd::{opt, reply, Errno, IHAVEOPT, REPLY_MAGIC, REQUEST_MAGIC};

const EXPORT_SIZE: u64 = 1 << 30;

/// Run the codec on a client stream made from `data`. Panics when a
/// property does not hold.
pub fn nbd(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let raw = u.ratio(1, 8).unwrap_or(false);
    let stream = if raw {
        u.bytes(u.len()).unwrap_or_default().to_vec()
    } else {
        client_stream(&mut u)
    };
    let cuts: Vec<usize> = (0..16)
        .map(|_| u.int_in_range(1..=64).unwrap_or(7))
        .collect();
    let tls = match u.int_in_range(0..=2).unwrap_or(0) {
        0 => Tls::Off,
        1 => Tls::On,
        _ => Tls::Require,
    };
    serve(&stream, &cuts, u.ratio(1, 2).unwrap_or(true), tls);
}

/// A client's bytes: client flags, options, then requests.
fn client_stream(u: &mut Unstructured<'_>) -> Vec<u8> {
    let mut s = Vec::new();
    let flags: u32 = if u.ratio(1, 16).unwrap_or(false) {
        u.arbitrary().unwrap_or(0)
    } else {
        u.int_in_range(1..=3).unwrap_or(3)
    };
    s.extend_from_slice(&flags.to_be_bytes());
    let options = u.int_in_range(0..=8).unwrap_or(0);
    for _ in 0..options {
        option(u, &mut s);
    }
    // Usually enter transmission.
    if u.ratio(3, 4).unwrap_or(true) {
        let name = name(u);
        let mut d = Vec::new();
        d.extend_from_slice(&(name.len() as u32).to_be_bytes());
        d.extend_from_slice(&name);
        d.extend_from_slice(&0u16.to_be_bytes());
        push_option(&mut s, opt::GO, &d);
    }
    let requests = u.int_in_range(0..=16).unwrap_or(0);
    for _ in 0..requests {
        request(u, &mut s);
    }
    s
}

fn name(u: &mut Unstructured<'_>) -> Vec<u8> {
    match u.int_in_range(0..=3).unwrap_or(0) {
        0 => Vec::new(),
        1 => b"vm1".to_vec(),
        _ => {
            let n = u.int_in_range(0..=40).unwrap_or(0);
            u.bytes(n).unwrap_or_default().to_vec()
        }
    }
}

fn push_option(s: &mut Vec<u8>, option: u32, data: &[u8]) {
    s.extend_from_slice(&IHAVEOPT.to_be_bytes());
    s.extend_from_slice(&option.to_be_bytes());
    s.extend_from_slice(&(data.len() as u32).to_be_bytes());
    s.extend_from_slice(data);
}

fn option(u: &mut Unstructured<'_>, s: &mut Vec<u8>) {
    let option = match u.int_in_range(0..=11).unwrap_or(0) {
        0 => u.arbitrary().unwrap_or(99),
        n => n,
    };
    let mut d = Vec::new();
    match u.int_in_range(0..=3).unwrap_or(0) {
        // Well formed for GO, INFO and the metadata options.
        0 | 1 => {
            let n = name(u);
            d.extend_from_slice(&(n.len() as u32).to_be_bytes());
            d.extend_from_slice(&n);
            if option == opt::LIST_META_CONTEXT || option == opt::SET_META_CONTEXT {
                let queries: Vec<&[u8]> = match u.int_in_range(0..=2).unwrap_or(0) {
                    0 => vec![],
                    1 => vec![b"base:allocation"],
                    _ => vec![b"qemu:dirty-bitmap:x", b"base:"],
                };
                d.extend_from_slice(&(queries.len() as u32).to_be_bytes());
                for q in queries {
                    d.extend_from_slice(&(q.len() as u32).to_be_bytes());
                    d.extend_from_slice(q);
                }
            } else {
                let k = u.int_in_range(0..=4).unwrap_or(0);
                d.extend_from_slice(&(k as u16).to_be_bytes());
                for _ in 0..k {
                    let i: u16 = u.int_in_range(0..=4).unwrap_or(0);
                    d.extend_from_slice(&i.to_be_bytes());
                }
            }
        }
        // Empty (LIST, ABORT, STRUCTURED_REPLY take none).
        2 => {}
        // Arbitrary bytes, sometimes claiming to be very long.
        _ => {
            let n = u.int_in_range(0..=64).unwrap_or(0);
            d.extend_from_slice(u.bytes(n).unwrap_or_default());
            if u.ratio(1, 4).unwrap_or(false) {
                s.extend_from_slice(&IHAVEOPT.to_be_bytes());
                s.extend_from_slice(&option.to_be_bytes());
                s.extend_from_slice(&100_000u32.to_be_bytes());
                s.extend_from_slice(&d);
                return;
            }
        }
    }
    push_option(s, option, &d);
}

fn request(u: &mut Unstructured<'_>, s: &mut Vec<u8>) {
    let magic = if u.ratio(1, 32).unwrap_or(false) {
        u.arbitrary().unwrap_or(0)
    } else {
        REQUEST_MAGIC
    };
    let flags: u16 = if u.ratio(1, 2).unwrap_or(true) {
        0
    } else {
        u.arbitrary().unwrap_or(0)
    };
    let command: u16 = u.int_in_range(0..=9).unwrap_or(0);
    let cookie: u64 = u.arbitrary().unwrap_or(0);
    let offset: u64 = match u.int_in_range(0..=2).unwrap_or(0) {
        0 => u.int_in_range(0..=EXPORT_SIZE).unwrap_or(0),
        1 => u.arbitrary().unwrap_or(0),
        _ => EXPORT_SIZE - 512,
    };
    let len: u32 = match u.int_in_range(0..=2).unwrap_or(0) {
        0 => u.int_in_range(0..=4096).unwrap_or(0),
        1 => u.arbitrary().unwrap_or(0),
        _ => 512,
    };
    s.extend_from_slice(&magic.to_be_bytes());
    s.extend_from_slice(&flags.to_be_bytes());
    s.extend_from_slice(&command.to_be_bytes());
    s.extend_from_slice(&cookie.to_be_bytes());
    s.extend_from_slice(&offset.to_be_bytes());
    s.extend_from_slice(&len.to_be_bytes());
    if command == 1 && len <= 4096 {
        s.extend(std::iter::repeat_n(0xa5, len as usize));
    }
}

/// Feed `stream` to a server in pieces of the sizes `cuts` gives (cycled).
fn serve(stream: &[u8], cuts: &[usize], accept: bool, tls: Tls) {
    let mut hs = Handshake::with_tls(tls);
    let mut out = vec![0u8; REPLY_BUF_LEN];
    let n = hs.greeting(&mut out).expect("greeting fits");
    assert_eq!(n, 18);
    let mut input: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut cut = 0;
    let mut neg: Option<Negotiated> = None;
    loop {
        // One more piece of the stream.
        if fed < stream.len() {
            let n = cuts[cut % cuts.len()].min(stream.len() - fed);
            cut += 1;
            input.extend_from_slice(&stream[fed..fed + n]);
            fed += n;
        } else {
            // Everything was fed and parsed as far as it goes.
            return;
        }
        // Parse all that is whole.
        loop {
            if let Some(neg) = neg {
                match Request::parse(&input) {
                    Err(_) => return,
                    Ok(Parse::Partial { need }) => {
                        assert!(need > input.len(), "Partial asks for what is there");
                        break;
                    }
                    Ok(Parse::Complete(req)) => {
                        let need = REQUEST_LEN + req.payload_len();
                        if input.len() < need {
                            break;
                        }
                        input.drain(..need);
                        transmission(&req, &neg);
                    }
                }
                continue;
            }
            let step = match hs.parse(&input, &mut out) {
                Err(_) => return,
                Ok(step) => step,
            };
            match step {
                Step::NeedMore { need } => {
                    assert!(need > input.len(), "NeedMore asks for what is there");
                    assert!(need <= INPUT_BUF_LEN, "NeedMore beyond the input buffer");
                    break;
                }
                Step::Answered { consumed, reply } | Step::Close { consumed, reply } => {
                    assert!(consumed > 0 && consumed <= input.len());
                    assert!(reply <= out.len());
                    replies_well_formed(&out[..reply]);
                    input.drain(..consumed);
                    if matches!(step, Step::Close { .. }) {
                        return;
                    }
                }
                Step::StartTls { consumed, reply } => {
                    assert_ne!(tls, Tls::Off, "STARTTLS where TLS is off");
                    assert!(consumed > 0 && consumed <= input.len());
                    replies_well_formed(&out[..reply]);
                    input.drain(..consumed);
                    // The TLS handshake, taken to succeed: what follows is
                    // its plain text.
                    hs.tls_started();
                    assert!(hs.tls_active());
                }
                Step::Ask { consumed, question } => {
                    assert!(
                        tls != Tls::Require || hs.tls_active(),
                        "{question:?} asked before TLS, which is required"
                    );
                    assert!(consumed > 0 && consumed <= input.len());
                    input.drain(..consumed);
                    match answer(&mut hs, &mut out, &question, accept) {
                        Some(Outcome::Transmission(n)) => neg = Some(n),
                        Some(Outcome::Continue) => {}
                        Some(Outcome::Close) | None => return,
                    }
                }
            }
        }
    }
}

fn answer(hs: &mut Handshake, out: &mut [u8], q: &Question, accept: bool) -> Option<Outcome> {
    if *q == Question::List {
        for name in [&b"vm1"[..], b"vm1@snap"] {
            let n = hs.answer_list_entry(out, name).ok()?;
            replies_well_formed(&out[..n]);
        }
        let n = hs.answer_list_end(out).ok()?;
        replies_well_formed(&out[..n]);
        return Some(Outcome::Continue);
    }
    let export = Export {
        name: b"vm1",
        description: b"a volume",
        size: EXPORT_SIZE,
        flags: 0x0d6d,
        min_block: 1,
        preferred_block: 4 << 20,
        max_block: 32 << 20,
    };
    let result = if accept {
        Ok(&export)
    } else {
        Err((Refusal::Unknown, "no such VDI"))
    };
    let Answer { reply, outcome } = hs.answer_export(out, q, result).ok()?;
    assert!(reply <= out.len());
    if !matches!(q, Question::ExportName { .. }) {
        replies_well_formed(&out[..reply]);
    } else if let Outcome::Transmission(_) = outcome {
        assert!(
            reply == 10 || reply == 134,
            "EXPORT_NAME reply of {reply} bytes"
        );
    }
    Some(outcome)
}

/// Option replies back to back: magic, option, type, length, data.
fn replies_well_formed(mut b: &[u8]) {
    while !b.is_empty() {
        assert!(b.len() >= 20, "a reply shorter than its header");
        assert_eq!(u64::from_be_bytes(b[0..8].try_into().unwrap()), REPLY_MAGIC);
        let len = u32::from_be_bytes(b[16..20].try_into().unwrap()) as usize;
        assert!(b.len() >= 20 + len, "a reply shorter than its length");
        b = &b[20 + len..];
    }
}

fn transmission(req: &Request, neg: &Negotiated) {
    let limits = Limits {
        size: EXPORT_SIZE,
        read_only: neg.flags & 2 != 0,
        structured: neg.structured,
        base_allocation: neg.base_allocation,
    };
    match req.check(&limits) {
        Ok(()) if matches!(req.command, Command::Flush | Command::Disc) => {}
        Ok(()) => {
            let end = req.offset.checked_add(u64::from(req.len));
            assert!(
                end.is_some_and(|e| e <= EXPORT_SIZE),
                "a checked request out of range"
            );
        }
        Err(e) => assert_ne!(e.code(), 0),
    }
    let mut b = vec![0u8; 8192];
    let _ = reply::simple(req.cookie, Some(Errno::Inval));
    assert!(reply::error(&mut b, req.cookie, Errno::Io, "x").is_ok());
    let ext = [(req.len.max(1), 3)];
    assert!(reply::block_status(&mut b, req.cookie, 1, &ext).is_ok());
}
