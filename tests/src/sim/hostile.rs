//! A hostile or broken server: after the reference server has handled a
//! request, its reply is changed so that it no longer fits the request.
//! The engine must turn each of these into an error (or a resend), never
//! into a success it did not get, and never stop making progress.
//!
//! Only what a client can tell is changed: a reply whose payload is the
//! right length but holds other bytes, or a success claimed for a write
//! that was never applied, cannot be told from the truth by any client of
//! this protocol, and is not a fault this module makes.

use sheepdog_core::inode::{self, field};
use sheepdog_core::oid::{OidKind, NR_VDIS};
use sheepdog_core::wire::{ArgsKind, Opcode, Request, HEADER_LEN};

use super::rng::Rng;

/// Header offsets of a reply (PROTOCOL.md §2.4).
const ID: usize = 8;
const DATA_LENGTH: usize = 12;
const RESULT: usize = 16;
const VDI_ID: usize = 24;

/// What the hostile server does with one reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hostile {
    /// Sends these bytes instead of the reply (header and payload).
    Reply(Vec<u8>),
    /// Sends these bytes, a reply cut short, and closes the connection.
    CutShort(Vec<u8>),
    /// Sends nothing: the client's reply timeout drops the connection.
    Silent,
}

/// The kinds of hostile reply, counted by the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `data_length` other than the request fixes (with that many bytes).
    Length,
    /// An id no request in flight has.
    Id,
    /// The id of a request answered a moment ago.
    RepeatedId,
    /// The opcode of another request.
    Opcode,
    /// A VDI operation's success naming VID 0 or one of 2^24 and more.
    Vid,
    /// An inode header with a field that cannot be.
    InodeHeader,
    /// A result code that is not in the table.
    UnknownResult,
    /// The reply cut short by a closed connection.
    CutShort,
    /// No reply.
    Silent,
    /// A header of arbitrary bytes (with an id no request in flight has).
    Garbage,
}

/// Every kind, to pick from.
pub const KINDS: [Kind; 10] = [
    Kind::Length,
    Kind::Id,
    Kind::RepeatedId,
    Kind::Opcode,
    Kind::Vid,
    Kind::InodeHeader,
    Kind::UnknownResult,
    Kind::CutShort,
    Kind::Silent,
    Kind::Garbage,
];

fn set_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Whether `req` reads an inode header (the whole payload is one).
fn reads_inode_header(req: &Request) -> bool {
    let Some(obj) = req.obj() else { return false };
    req.opcode == Opcode::ReadObj
        && obj.oid.kind() == OidKind::Inode
        && obj.offset == 0
        && req.data_length == inode::HEADER_LEN as u32
}

/// Change `reply`, the true answer to `req`, as a hostile server would.
/// `in_flight` says whether an id belongs to a request the client still
/// waits for (a reply must never carry one of those by mistake: that
/// would be another request's answer, which no client can tell);
/// `answered` is the id of a request answered earlier on this connection.
pub fn tamper(
    rng: &mut Rng,
    req: &Request,
    reply: &[u8],
    in_flight: impl Fn(u32) -> bool,
    answered: Option<u32>,
) -> (Kind, Hostile) {
    let mut kind = KINDS[rng.below(KINDS.len() as u64) as usize];
    let success = u32_at(reply, RESULT) == 0;
    let names_vdi = req.opcode.args_kind() == ArgsKind::Vdi;
    // Fall back to a kind that applies to this reply.
    if kind == Kind::Vid && !(names_vdi && success) {
        kind = Kind::Length;
    }
    if kind == Kind::InodeHeader && !(reads_inode_header(req) && success) {
        kind = Kind::UnknownResult;
    }
    if kind == Kind::RepeatedId && answered.is_none_or(&in_flight) {
        kind = Kind::Id;
    }
    let mut bytes = reply.to_vec();
    let hostile = match kind {
        Kind::Length => {
            let len = u32_at(&bytes, DATA_LENGTH);
            let new = match rng.below(3) {
                // (Nothing to take from an empty payload: grow it.)
                _ if len == 0 => 1 + rng.below(4096) as u32,
                0 => len / 2,
                1 => len + 1 + rng.below(4096) as u32,
                _ => len.saturating_sub(1 + rng.below(u64::from(len.max(1))) as u32),
            };
            set_u32(&mut bytes, DATA_LENGTH, new);
            bytes.resize(HEADER_LEN + new as usize, 0xA5);
            Hostile::Reply(bytes)
        }
        Kind::Id | Kind::RepeatedId => {
            let id = match answered {
                Some(a) if kind == Kind::RepeatedId => a,
                _ => loop {
                    let id = rng.next_u64() as u32;
                    if !in_flight(id) {
                        break id;
                    }
                },
            };
            set_u32(&mut bytes, ID, id);
            Hostile::Reply(bytes)
        }
        Kind::Opcode => {
            bytes[1] = bytes[1].wrapping_add(1 + rng.below(250) as u8);
            Hostile::Reply(bytes)
        }
        Kind::Vid => {
            let vid = if rng.chance(500) {
                0
            } else {
                NR_VDIS + rng.below(u64::from(u32::MAX - NR_VDIS)) as u32
            };
            set_u32(&mut bytes, VDI_ID, vid);
            Hostile::Reply(bytes)
        }
        Kind::InodeHeader => {
            let h = HEADER_LEN;
            match rng.below(4) {
                0 => {
                    let at = h + field::VDI_ID;
                    let vid = u32_at(&bytes, at);
                    set_u32(&mut bytes, at, vid ^ (1 + rng.below(0xff_ffff) as u32));
                }
                1 => bytes[h + field::STORE_POLICY] = 2 + rng.below(250) as u8,
                2 => bytes[h + field::NR_COPIES] = [0, 32, 255][rng.below(3) as usize],
                _ => bytes[h + field::BLOCK_SIZE_SHIFT] = [0, 9, 19, 32, 64][rng.below(5) as usize],
            }
            Hostile::Reply(bytes)
        }
        Kind::UnknownResult => {
            set_u32(&mut bytes, RESULT, 0x1000 + rng.below(0xffff) as u32);
            set_u32(&mut bytes, DATA_LENGTH, 0);
            bytes.truncate(HEADER_LEN);
            Hostile::Reply(bytes)
        }
        Kind::CutShort => {
            let cut = rng.below(bytes.len() as u64) as usize;
            bytes.truncate(cut);
            Hostile::CutShort(bytes)
        }
        Kind::Silent => Hostile::Silent,
        Kind::Garbage => {
            let mut header = [0u8; HEADER_LEN];
            rng.fill(&mut header);
            let id = loop {
                let id = rng.next_u64() as u32;
                if !in_flight(id) {
                    break id;
                }
            };
            set_u32(&mut header, ID, id);
            // Whatever length it announces, a closed connection ends it.
            Hostile::CutShort(header.to_vec())
        }
    };
    (kind, hostile)
}
