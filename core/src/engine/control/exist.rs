//! A NEW_VDI sent again after a lost connection answered VDI_EXIST: the
//! first one may have created the VDI. Look the name up and read the
//! header of what is there: it is ours if it is exactly what was asked
//! for, else the VDI really exists (PROTOCOL.md §9.2, §9.3).

use super::super::{Engine, Error, Inline, Name, Target};
use super::{header_read, lookup};
use crate::inode::InodeHeader;
use crate::reply::check as reply;
use crate::wire::{Opcode, Request, Response, ResultCode};

/// The step of the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Exist {
    /// GET_VDI_INFO of the name.
    Lookup,
    /// Read the header of the VID found.
    Header(u32),
}

/// Whether `e`, the failure of a NEW_VDI, is the VDI_EXIST a resend gets
/// after a lost reply (`lost`): then look for what the first one made.
pub(super) fn after_lost_reply(lost: bool, e: &Error) -> bool {
    lost && matches!(
        e,
        Error::Server {
            result: ResultCode::VdiExist,
            ..
        }
    )
}

/// The error when the VDI found is not ours.
pub(super) const EXISTS: Error = Error::Server {
    opcode: Opcode::NewVdi,
    result: ResultCode::VdiExist,
};

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    pub(super) fn exist_request(
        &self,
        e: Exist,
        name: &Name,
        id: u32,
    ) -> Option<(Request, Inline)> {
        match e {
            Exist::Lookup => lookup(id, name, &Name::new(), 0),
            Exist::Header(v) => header_read(id, v),
        }
    }

    /// The answer to a step: `Ok(None)` to send the next one, `Ok(Some)`
    /// with the VID when the VDI found is the one `ours` recognises.
    pub(super) fn exist_advance(
        &self,
        e: &mut Exist,
        rsp: &Response,
        payload: &[u8],
        ours: impl Fn(&InodeHeader) -> bool,
    ) -> Result<Option<u32>, Error> {
        match *e {
            Exist::Lookup => {
                *e = Exist::Header(rsp.vdi_id().unwrap_or(0));
                Ok(None)
            }
            Exist::Header(found) => match reply::inode_header(payload, found) {
                Err(p) => Err(Error::BadReply(
                    self.asked_of_step(rsp, Target::Vdi(found)).bad(p),
                )),
                Ok(h) if ours(&h) => Ok(Some(found)),
                Ok(_) => Err(EXISTS),
            },
        }
    }
}
