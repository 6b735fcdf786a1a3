//! Every reply checked against the request it answers, before anything in
//! it is believed (PROTOCOL.md §1, §2.4, §8).
//!
//! The server copies `id` and `opcode` into the reply, and sends exactly
//! `data_length` payload bytes, never more than the buffer the request
//! offered (sheep allocates `data_length` bytes for every request). Where
//! the request fixes the payload (a read of N bytes, an inode header, a run
//! of index entries) a successful reply must carry exactly that; a VDI
//! operation that succeeds names a VID in 1..2^24; an inode header names
//! the VID it was read from, a valid object size and copy count. A reply
//! that does not fit is a [`Problem`]: the operation that owns it fails
//! and the connection, out of step, is dropped.

use byteorder::{ByteOrder, LittleEndian};

use super::error::{BadReply, Problem, Target};
use crate::inode::InodeHeader;
use crate::object_size::ObjectSize;
use crate::oid::{Vid, NR_VDIS};
use crate::redundancy::MAX_COPIES;
use crate::wire::{Opcode, Request, Response};

/// What a request asked for, kept while it is in flight to judge its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Asked {
    /// The request's opcode.
    pub opcode: Opcode,
    /// Its `data_length`: the payload sent, or the reply buffer offered.
    pub len: u32,
    /// What it was about.
    pub target: Target,
}

impl Asked {
    /// Not sent yet (a retry or a follow-up waiting to go out).
    pub const NONE: Asked = Asked {
        opcode: Opcode::Unknown(0),
        len: 0,
        target: Target::Cluster,
    };

    /// What `req` asks.
    pub fn of(req: &Request) -> Asked {
        let target = match (req.obj(), req.vdi()) {
            (Some(a), _) => Target::Oid(a.oid),
            (_, Some(v)) => Target::Vdi(v.base_vdi_id),
            _ => Target::Cluster,
        };
        Asked {
            opcode: req.opcode,
            len: req.data_length,
            target,
        }
    }

    /// `problem` as the error of this request's reply.
    pub fn bad(&self, problem: Problem) -> BadReply {
        BadReply {
            opcode: self.opcode,
            target: self.target,
            problem,
        }
    }
}

/// The payload a successful reply must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Exactly this many bytes, all of them used.
    Exact(u32),
    /// Nothing the engine uses: read and dropped, within the buffer the
    /// request offered.
    Ignored,
}

/// Check the header of `rsp`, the reply to `asked`, given the payload a
/// success must carry.
pub(crate) fn check_header(asked: &Asked, rsp: &Response, want: Want) -> Result<(), Problem> {
    if rsp.opcode != asked.opcode {
        return Err(Problem::Opcode {
            got: rsp.opcode.to_u8(),
        });
    }
    let got = rsp.data_length;
    match want {
        Want::Exact(expected) if rsp.result.is_success() && got != expected => {
            return Err(Problem::Length { got, expected })
        }
        _ if got > asked.len => {
            return Err(Problem::TooLong {
                got,
                max: asked.len,
            })
        }
        _ => {}
    }
    let names_vdi = matches!(
        asked.opcode,
        Opcode::GetVdiInfo | Opcode::LockVdi | Opcode::NewVdi
    );
    if names_vdi && rsp.result.is_success() {
        let vid = rsp.vdi_id().unwrap_or(0);
        if Vid::new(vid).is_err() {
            return Err(Problem::Vid { got: vid });
        }
    }
    Ok(())
}

/// An inode header read from VID `vid`: parsed, and refused when it names
/// another VID or a store policy, copy count or object size that cannot be.
/// A hyper volume (store policy 1) passes; callers refuse it where they
/// cannot handle it.
pub(crate) fn inode_header(payload: &[u8], vid: u32) -> Result<InodeHeader, Problem> {
    let header = InodeHeader::parse(payload).map_err(|_| Problem::Length {
        got: payload.len() as u32,
        expected: crate::inode::HEADER_LEN as u32,
    })?;
    let field = |name, got: u64, expected: u64| Problem::Field {
        name,
        got,
        expected,
    };
    if header.vdi_id != vid {
        return Err(field("vdi_id", header.vdi_id.into(), vid.into()));
    }
    if header.store_policy > 1 {
        return Err(field("store_policy", header.store_policy.into(), 0));
    }
    if header.nr_copies == 0 || header.nr_copies > MAX_COPIES {
        return Err(field("nr_copies", header.nr_copies.into(), 0));
    }
    if ObjectSize::from_shift(header.block_size_shift).is_err() {
        return Err(field("block_size_shift", header.block_size_shift.into(), 0));
    }
    if header.parent_vdi_id >= NR_VDIS {
        return Err(field("parent_vdi_id", header.parent_vdi_id.into(), 0));
    }
    if !header.is_hyper() && header.index_len().is_err() {
        return Err(field("vdi_size", header.vdi_size, 0));
    }
    Ok(header)
}

/// The header of `vid`, the working VDI that replaced an open one whose
/// object size shift is `shift`: as [`inode_header`], and it cannot be a
/// hyper volume or have another layout, for it started as a copy of the
/// open one's inode.
pub(crate) fn successor_header(
    payload: &[u8],
    vid: u32,
    shift: u8,
) -> Result<InodeHeader, Problem> {
    let header = inode_header(payload, vid)?;
    if header.is_hyper() || header.block_size_shift != shift {
        return Err(Problem::Field {
            name: "block_size_shift",
            got: header.block_size_shift.into(),
            expected: shift.into(),
        });
    }
    Ok(header)
}

/// Index entries as read from an inode: each 0 or a VID below 2^24.
pub(crate) fn index_entries(entries: &[u8]) -> Result<(), Problem> {
    match entries
        .chunks_exact(4)
        .map(LittleEndian::read_u32)
        .find(|&e| e >= NR_VDIS)
    {
        Some(e) => Err(Problem::Vid { got: e }),
        None => Ok(()),
    }
}

/// The cluster's defaults: a copy count of 1 to 31 (0 when the cluster is
/// not formatted) and an object size shift of 0 (none set) or 20 to 31.
pub(crate) fn cluster_default(copies: u8, block_size_shift: u8) -> Result<(), Problem> {
    if copies > MAX_COPIES {
        return Err(Problem::Field {
            name: "nr_copies",
            got: copies.into(),
            expected: 0,
        });
    }
    if block_size_shift != 0 && ObjectSize::from_shift(block_size_shift).is_err() {
        return Err(Problem::Field {
            name: "block_size_shift",
            got: block_size_shift.into(),
            expected: 0,
        });
    }
    Ok(())
}
