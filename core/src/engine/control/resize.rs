//! Grow the open working VDI (PROTOCOL.md §9.7): make sure it is still the
//! working VDI, write the new size into its inode (8 bytes, the smallest
//! range), then probe that the VID is still writable: a snapshot taken
//! meanwhile copies the inode and could drop the new size, so READONLY
//! means look the working VDI up and write it again.

use super::super::{ControlDone, Engine, Error, Expect, Inline};
use super::sync::Sync;
use super::{is, vid, Next};
use crate::inode::InodeRange;
use crate::oid::Oid;
use crate::wire::{Request, Response, ResultCode};

/// The steps of a resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Is the open VDI still the working one?
    Sync(Sync),
    /// Write `vdi_size` into the inode.
    WriteSize,
    /// An empty write to object 0: is the VID still writable?
    Probe,
}

#[derive(Clone, Debug)]
pub(in crate::engine) struct Resize {
    size: u64,
    step: Step,
}

impl Resize {
    pub(super) fn new(size: u64) -> Resize {
        Resize {
            size,
            step: Step::Sync(Sync::Lookup),
        }
    }

    pub(super) fn expect(&self) -> Expect {
        match self.step {
            Step::Sync(Sync::Header(_)) => super::HEADER,
            _ => Expect::Nothing,
        }
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    pub(super) fn resize_request(&self, r: &Resize, id: u32) -> Option<(Request, Inline)> {
        match r.step {
            Step::Sync(sync) => self.sync_request(sync, id),
            Step::WriteSize => self.own_inode_write(id, InodeRange::VDI_SIZE, Inline::U64(r.size)),
            Step::Probe => {
                let vol = self.volume.as_ref()?;
                let oid = Oid::data(vid(vol.vid())?, 0);
                let req = Request::write_obj(id, oid, 0, 0, vol.header.nr_copies);
                Some((req, Inline::None))
            }
        }
    }

    pub(super) fn resize_advance(
        &mut self,
        r: &mut Resize,
        rsp: &Response,
        payload: &[u8],
    ) -> Next {
        match r.step {
            Step::Sync(mut sync) => match self.sync_advance(&mut sync, rsp, payload) {
                None => {
                    r.step = Step::WriteSize;
                    Next::Send
                }
                Some(next) => {
                    r.step = Step::Sync(sync);
                    next
                }
            },
            Step::WriteSize => {
                r.step = Step::Probe;
                Next::Send
            }
            Step::Probe => self.resized(r.size),
        }
    }

    pub(super) fn resize_failed(&mut self, r: &mut Resize, e: Error) -> Next {
        match r.step {
            // No object 0 is fine: the VID is writable.
            Step::Probe if is(&e, ResultCode::NoObj) => self.resized(r.size),
            // A snapshot may have dropped the new size: find the working
            // VDI and write it again.
            Step::Probe if is(&e, ResultCode::Readonly) => {
                r.step = Step::Sync(Sync::Lookup);
                Next::Resync
            }
            _ => Next::Fail(e),
        }
    }

    fn resized(&mut self, size: u64) -> Next {
        self.apply_size(size);
        Next::Done(ControlDone::Resized { size })
    }
}
