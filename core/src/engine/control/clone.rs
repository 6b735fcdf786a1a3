//! Clone the open snapshot into a new writable VDI that shares its
//! objects (NEW_VDI with the snapshot as base, PROTOCOL.md §9.3).

use super::super::{ControlDone, Engine, Error, Expect, Inline, Name};
use super::exist::{self, Exist};
use super::{current, Next};
use crate::wire::{Request, Response};

/// The steps of a clone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// NEW_VDI from the open snapshot.
    NewVdi,
    /// The NEW_VDI resent after a lost reply answered VDI_EXIST.
    Exist(Exist),
}

#[derive(Clone, Debug)]
pub(in crate::engine) struct Clone {
    name: Name,
    pub(super) step: Step,
}

impl Clone {
    pub(super) fn new(name: Name) -> Clone {
        Clone {
            name,
            step: Step::NewVdi,
        }
    }

    pub(super) fn expect(&self) -> Expect {
        match self.step {
            Step::Exist(Exist::Header(_)) => super::HEADER,
            _ => Expect::Nothing,
        }
    }

    pub(super) fn failed(&mut self, lost: bool, e: Error) -> Next {
        if self.step == Step::NewVdi && exist::after_lost_reply(lost, &e) {
            self.step = Step::Exist(Exist::Lookup);
            return Next::Send;
        }
        Next::Fail(e)
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    pub(super) fn clone_request(&self, c: &Clone, id: u32) -> Option<(Request, Inline)> {
        match c.step {
            Step::NewVdi => self.new_vdi_from(&c.name, self.volume.as_ref()?.vid(), false, id),
            Step::Exist(e) => self.exist_request(e, &c.name, id),
        }
    }

    pub(super) fn clone_advance(&mut self, c: &mut Clone, rsp: &Response, payload: &[u8]) -> Next {
        match c.step {
            Step::NewVdi => Next::Done(ControlDone::Cloned {
                vid: rsp.vdi_id().unwrap_or(0),
            }),
            Step::Exist(mut e) => {
                let base = current(self.volume.as_ref());
                let ours =
                    |h: &crate::inode::InodeHeader| !h.is_snapshot() && h.parent_vdi_id == base;
                match self.exist_advance(&mut e, rsp, payload, ours) {
                    Ok(None) => {
                        c.step = Step::Exist(e);
                        Next::Send
                    }
                    Ok(Some(vid)) => Next::Done(ControlDone::Cloned { vid }),
                    Err(e) => Next::Fail(e),
                }
            }
        }
    }
}
