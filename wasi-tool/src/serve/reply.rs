//! A finished request as the bytes its client gets: a simple reply, or
//! with structured replies OFFSET_DATA and OFFSET_HOLE chunks for a read
//! (holes are never sent as zeros), BLOCK_STATUS, and ERROR chunks.

use std::ops::Range;
use std::rc::Rc;

use sheepdog_core::nbd::base_allocation;
use sheepdog_core::nbd::handshake::Negotiated;
use sheepdog_core::nbd::reply;
use sheepdog_core::nbd::request::{Command, Request};
use sheepdog_core::nbd::{cmd_flags, Errno, MAX_STRING};

use super::conn::Sink;

/// What a successful request hands back.
pub enum Payload<'a> {
    /// Nothing (writes, flushes, trims).
    None,
    /// Read data, with the ranges (relative to the request) that are holes:
    /// zeros in `data` as well.
    Read {
        data: Rc<Vec<u8>>,
        holes: &'a mut [Range<u64>],
    },
    /// Block status extents.
    Status(&'a [(u32, u32)]),
}

/// Append the reply to `req` to `out`.
pub fn answer(
    out: &mut impl Sink,
    neg: &Negotiated,
    req: &Request,
    result: Result<Payload<'_>, (Errno, &str)>,
) {
    encode(
        out,
        neg,
        req.cookie,
        req.command,
        req.flags,
        req.offset,
        result,
    );
}

/// Append the reply to request `cookie` (a `command` with `flags` at
/// `offset`) to `out`.
pub fn encode(
    out: &mut impl Sink,
    neg: &Negotiated,
    cookie: u64,
    command: Command,
    flags: u16,
    offset: u64,
    result: Result<Payload<'_>, (Errno, &str)>,
) {
    let chunked = neg.structured && matches!(command, Command::Read | Command::BlockStatus);
    match result {
        Err((errno, message)) if chunked => {
            let mut b = [0u8; reply::CHUNK_LEN + 6 + MAX_STRING];
            // The buffer holds any message, which is cut to MAX_STRING.
            if let Ok(n) = reply::error(&mut b, cookie, errno, message) {
                out.put(&b[..n]);
            }
        }
        Err((errno, _)) => out.put(&reply::simple(cookie, Some(errno))),
        Ok(Payload::Read { data, holes }) if neg.structured => read_chunks(
            out,
            cookie,
            offset,
            &data,
            holes,
            flags & cmd_flags::DF != 0,
        ),
        Ok(Payload::Read { data, .. }) => {
            out.put(&reply::simple(cookie, None));
            let n = data.len();
            out.data(&data, 0..n);
        }
        Ok(Payload::Status(extents)) => {
            let mut b = vec![0u8; reply::CHUNK_LEN + 4 + extents.len() * reply::EXTENT_LEN];
            if let Ok(n) = reply::block_status(&mut b, cookie, base_allocation::ID, extents) {
                out.put(&b[..n]);
            }
        }
        Ok(Payload::None) => out.put(&reply::simple(cookie, None)),
    }
}

/// A read as chunks: data between the holes, a hole chunk for each hole
/// (one data chunk for all with DF, which forbids fragments).
fn read_chunks(
    out: &mut impl Sink,
    cookie: u64,
    offset: u64,
    data: &Rc<Vec<u8>>,
    holes: &mut [Range<u64>],
    df: bool,
) {
    let len = data.len() as u64;
    if len == 0 {
        out.put(&reply::none(cookie));
        return;
    }
    if df || holes.is_empty() {
        out.put(&reply::offset_data(cookie, true, offset, len as u32));
        out.data(data, 0..len as usize);
        return;
    }
    holes.sort_by_key(|h| h.start);
    // Pieces: (start, end, is_hole), adjacent holes merged.
    let mut pieces: Vec<(u64, u64, bool)> = Vec::new();
    let mut pos = 0;
    for h in holes.iter() {
        let (start, end) = (h.start.max(pos).min(len), h.end.min(len));
        if start >= end {
            continue;
        }
        if pos < start {
            pieces.push((pos, start, false));
        }
        match pieces.last_mut() {
            Some((_, e, true)) if *e == start => *e = end,
            _ => pieces.push((start, end, true)),
        }
        pos = end;
    }
    if pos < len {
        pieces.push((pos, len, false));
    }
    let last = pieces.len() - 1;
    for (i, &(start, end, hole)) in pieces.iter().enumerate() {
        let n = (end - start) as u32;
        if hole {
            out.put(&reply::offset_hole(cookie, i == last, offset + start, n));
        } else {
            out.put(&reply::offset_data(cookie, i == last, offset + start, n));
            out.data(data, start as usize..end as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg() -> Negotiated {
        Negotiated {
            structured: true,
            base_allocation: true,
            flags: 0,
        }
    }

    #[test]
    fn a_read_with_a_hole_in_the_middle_is_three_chunks() {
        let mut data = vec![7u8; 12];
        data[4..8].fill(0);
        let mut holes = vec![4..6, 6..8];
        let mut out = Vec::new();
        let p = Payload::Read {
            data: Rc::new(data.clone()),
            holes: &mut holes,
        };
        encode(&mut out, &neg(), 9, Command::Read, 0, 100, Ok(p));
        let mut want = Vec::new();
        want.extend_from_slice(&reply::offset_data(9, false, 100, 4));
        want.extend_from_slice(&[7; 4]);
        want.extend_from_slice(&reply::offset_hole(9, false, 104, 4));
        want.extend_from_slice(&reply::offset_data(9, true, 108, 4));
        want.extend_from_slice(&[7; 4]);
        assert_eq!(out, want);
    }

    #[test]
    fn a_read_that_is_all_hole_sends_no_data() {
        let data = vec![0u8; 1 << 20];
        let mut holes = vec![Range {
            start: 0,
            end: 1 << 20,
        }];
        let mut out = Vec::new();
        let p = Payload::Read {
            data: Rc::new(data.clone()),
            holes: &mut holes,
        };
        encode(&mut out, &neg(), 1, Command::Read, 0, 0, Ok(p));
        assert_eq!(out, reply::offset_hole(1, true, 0, 1 << 20));
    }

    #[test]
    fn df_and_simple_replies_carry_the_zeros() {
        let data = vec![0u8; 8];
        let mut out = Vec::new();
        let p = Payload::Read {
            data: Rc::new(data.clone()),
            holes: &mut [Range { start: 0, end: 8 }],
        };
        encode(&mut out, &neg(), 1, Command::Read, cmd_flags::DF, 0, Ok(p));
        assert_eq!(out.len(), reply::OFFSET_DATA_LEN + 8);
        let simple = Negotiated {
            structured: false,
            ..neg()
        };
        let mut out = Vec::new();
        let p = Payload::Read {
            data: Rc::new(data.clone()),
            holes: &mut [Range { start: 0, end: 8 }],
        };
        encode(&mut out, &simple, 1, Command::Read, 0, 0, Ok(p));
        assert_eq!(out.len(), reply::SIMPLE_LEN + 8);
    }

    #[test]
    fn errors_are_chunks_for_reads_and_simple_for_writes() {
        let mut out = Vec::new();
        encode(
            &mut out,
            &neg(),
            1,
            Command::Read,
            0,
            0,
            Err((Errno::Io, "x")),
        );
        assert_eq!(out.len(), reply::CHUNK_LEN + 6 + 1);
        let mut out = Vec::new();
        encode(
            &mut out,
            &neg(),
            1,
            Command::Write,
            0,
            0,
            Err((Errno::Perm, "x")),
        );
        assert_eq!(out, reply::simple(1, Some(Errno::Perm)));
    }
}
