//! Delete a VDI or a snapshot (PROTOCOL.md §9.6, §12 step 7): look it up,
//! read its header, zero its index in batches so that the cluster frees
//! its objects, then DEL_VDI. A rollback is a delete of the working VDI
//! followed by a clone of the open snapshot under the same name.
//!
//! DEL_VDI is not idempotent either: resent after a lost reply, NO_VDI
//! means the first one deleted it.

use super::super::{ControlDone, Engine, Error, Expect, Inline, Name, Target};
use super::exist::{self, Exist};
use super::{fill_run, header_read, is, lookup, Next};
use crate::reply::check as reply;
use crate::wire::{Request, Response, ResultCode};

/// The steps of a delete (and a rollback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// GET_VDI_INFO of the name (and tag or snapshot id).
    Lookup,
    /// READ_OBJ of its inode header.
    Header,
    /// Zero the index entries from `next` on.
    Zero { next: u32 },
    /// DEL_VDI.
    DelVdi,
    /// Rollback: NEW_VDI from the snapshot, under the same name.
    Clone,
    /// The clone's NEW_VDI resent after a lost reply answered VDI_EXIST.
    Exist(Exist),
}

#[derive(Clone, Debug)]
pub(in crate::engine) struct Delete {
    name: Name,
    tag: Name,
    snapid: u32,
    /// The VID found.
    vid: u32,
    /// Index entries to zero.
    count: u32,
    /// A rollback: clone this snapshot afterwards.
    then_clone: Option<u32>,
    pub(super) step: Step,
}

impl Delete {
    pub(super) fn new(name: Name, tag: Name, snapid: u32, then_clone: Option<u32>) -> Delete {
        Delete {
            name,
            tag,
            snapid,
            vid: 0,
            count: 0,
            then_clone,
            step: Step::Lookup,
        }
    }

    pub(super) fn expect(&self) -> Expect {
        match self.step {
            Step::Header | Step::Exist(Exist::Header(_)) => super::HEADER,
            _ => Expect::Nothing,
        }
    }

    /// DEL_VDI done: a rollback goes on to the clone.
    fn deleted(&mut self) -> Next {
        match self.then_clone {
            Some(_) => {
                self.step = Step::Clone;
                Next::Send
            }
            None => Next::Done(ControlDone::Deleted { vid: self.vid }),
        }
    }

    pub(super) fn failed(&mut self, lost: bool, e: Error) -> Next {
        match self.step {
            // Rollback with no working VDI left: just clone.
            Step::Lookup if self.then_clone.is_some() && is(&e, ResultCode::NoVdi) => {
                self.step = Step::Clone;
                Next::Send
            }
            // The DEL_VDI whose reply was lost deleted it: go on.
            Step::DelVdi if lost && is(&e, ResultCode::NoVdi) => self.deleted(),
            // Maybe the NEW_VDI whose reply was lost made the clone.
            Step::Clone if exist::after_lost_reply(lost, &e) => {
                self.step = Step::Exist(Exist::Lookup);
                Next::Send
            }
            _ => Next::Fail(e),
        }
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    pub(super) fn delete_request(&self, d: &Delete, id: u32) -> Option<(Request, Inline)> {
        match d.step {
            Step::Lookup => lookup(id, &d.name, &d.tag, d.snapid),
            Step::Header => header_read(id, d.vid),
            Step::Zero { next } => fill_run(id, d.vid, next, d.count, 0),
            Step::DelVdi => Some((
                Request::del_vdi(id, d.snapid),
                Inline::NameTag(d.name.clone(), d.tag.clone()),
            )),
            Step::Clone => self.new_vdi_from(&d.name, d.then_clone?, false, id),
            Step::Exist(e) => self.exist_request(e, &d.name, id),
        }
    }

    pub(super) fn delete_advance(
        &mut self,
        d: &mut Delete,
        rsp: &Response,
        payload: &[u8],
    ) -> Next {
        match d.step {
            Step::Lookup => {
                d.vid = rsp.vdi_id().unwrap_or(0);
                d.step = Step::Header;
                Next::Send
            }
            Step::Header => match reply::inode_header(payload, d.vid) {
                Err(p) => Next::Fail(Error::BadReply(
                    self.asked_of_step(rsp, Target::Vdi(d.vid)).bad(p),
                )),
                Ok(h) => {
                    // A hyper volume's objects are removed by the server.
                    let count = if h.is_hyper() { Ok(0) } else { h.index_len() };
                    match count {
                        Ok(0) => d.step = Step::DelVdi,
                        Ok(n) => {
                            d.count = n;
                            d.step = Step::Zero { next: 0 };
                        }
                        Err(e) => return Next::Fail(e.into()),
                    }
                    Next::Send
                }
            },
            Step::Zero { next } => {
                let next = next + (d.count - next).min(super::MAX_RUN);
                d.step = if next == d.count {
                    Step::DelVdi
                } else {
                    Step::Zero { next }
                };
                Next::Send
            }
            Step::DelVdi => d.deleted(),
            Step::Clone => Next::Done(ControlDone::RolledBack {
                vid: rsp.vdi_id().unwrap_or(0),
            }),
            Step::Exist(mut e) => {
                let base = d.then_clone.unwrap_or(0);
                let ours =
                    |h: &crate::inode::InodeHeader| !h.is_snapshot() && h.parent_vdi_id == base;
                match self.exist_advance(&mut e, rsp, payload, ours) {
                    Ok(None) => {
                        d.step = Step::Exist(e);
                        Next::Send
                    }
                    Ok(Some(vid)) => Next::Done(ControlDone::RolledBack { vid }),
                    Err(e) => Next::Fail(e),
                }
            }
        }
    }
}
