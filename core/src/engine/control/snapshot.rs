//! Snapshot the open working VDI (PROTOCOL.md §9.3, §8 partial updates):
//! make sure it is still the working VDI, check that the tag is free,
//! write the tag into our inode, then NEW_VDI with the snapshot flag. The
//! open VDI goes on as the new working VDI.
//!
//! NEW_VDI is not idempotent: if the connection is lost with it on the
//! wire, look the working VDI up first. A new one whose parent is ours is
//! our snapshot, taken; only if the VID is unchanged is it sent again.

use super::super::{ControlDone, Engine, Error, Expect, Inline, Name, Target};
use super::sync::Sync;
use super::{current, header_read, is, lookup, Next};
use crate::inode::InodeRange;
use crate::reply::check as reply;
use crate::wire::{Request, Response, ResultCode, TAG_LEN};

/// The steps of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Is the open VDI still the working one?
    Sync(Sync),
    /// Look the tag up: NO_TAG means it is free.
    TagFree,
    /// Write the tag into the open VDI's inode.
    WriteTag,
    /// With a vmstate: write `vm_clock_nsec`, then `vm_state_size`.
    WriteVmClock,
    WriteVmSize,
    /// NEW_VDI with the snapshot flag.
    NewVdi,
    /// The connection was lost with NEW_VDI on the wire: was it taken?
    Lost(Lost),
}

/// Finding out whether a NEW_VDI whose reply was lost took the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lost {
    /// Look the working VDI up.
    Lookup,
    /// It changed to this VID: read its header.
    Header(u32),
}

#[derive(Clone, Debug)]
pub(in crate::engine) struct Snapshot {
    tag: Name,
    step: Step,
    /// The vmstate saved in the vmstate objects of VID `.2`: its size and
    /// the VM's clock, recorded in the inode as QEMU's savevm did. Only
    /// that VID may become the snapshot.
    vmstate: Option<(u64, u64, u32)>,
}

impl Snapshot {
    pub(super) fn new(tag: Name, vmstate: Option<(u64, u64, u32)>) -> Snapshot {
        Snapshot {
            tag,
            step: Step::Sync(Sync::Lookup),
            vmstate,
        }
    }

    /// The connection was lost with this step's request on the wire.
    pub(super) fn lost(&mut self) {
        if self.step == Step::NewVdi {
            self.step = Step::Lost(Lost::Lookup);
        }
    }

    /// The first step after the sync: an empty tag needs no check.
    fn first(&mut self) -> Next {
        self.step = if self.tag.is_empty() {
            Step::WriteTag
        } else {
            Step::TagFree
        };
        Next::Send
    }

    pub(super) fn expect(&self) -> Expect {
        match self.step {
            Step::Sync(Sync::Header(_)) | Step::Lost(Lost::Header(_)) => super::HEADER,
            _ => Expect::Nothing,
        }
    }

    pub(super) fn failed(&mut self, e: Error) -> Next {
        if self.step == Step::TagFree && is(&e, ResultCode::NoTag) {
            // The tag is free: go on.
            self.step = Step::WriteTag;
            return Next::Send;
        }
        Next::Fail(e)
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    pub(super) fn snapshot_request(&self, s: &Snapshot, id: u32) -> Option<(Request, Inline)> {
        let vol = self.volume.as_ref()?;
        match s.step {
            Step::Sync(sync) => self.sync_request(sync, id),
            Step::TagFree => lookup(id, &vol.name, &s.tag, 0),
            Step::WriteTag => self.own_inode_write(id, InodeRange::TAG, Inline::Tag(s.tag.clone())),
            Step::WriteVmClock => self.own_inode_write(
                id,
                InodeRange::VM_CLOCK_NSEC,
                Inline::U64(s.vmstate.map_or(0, |v| v.1)),
            ),
            Step::WriteVmSize => self.own_inode_write(
                id,
                InodeRange::VM_STATE_SIZE,
                Inline::U64(s.vmstate.map_or(0, |v| v.0)),
            ),
            Step::NewVdi => self.new_vdi_from(&vol.name, vol.vid(), true, id),
            Step::Lost(Lost::Lookup) => lookup(id, &vol.name, &Name::new(), 0),
            Step::Lost(Lost::Header(v)) => header_read(id, v),
        }
    }

    pub(super) fn snapshot_advance(
        &mut self,
        s: &mut Snapshot,
        rsp: &Response,
        payload: &[u8],
    ) -> Next {
        let rsp_vid = rsp.vdi_id().unwrap_or(0);
        let here = current(self.volume.as_ref());
        match s.step {
            Step::Sync(mut sync) => match self.sync_advance(&mut sync, rsp, payload) {
                // The vmstate objects belong to the VID they were written
                // under: no other may take the state.
                None => match s.vmstate {
                    Some((_, _, v)) if current(self.volume.as_ref()) != v => {
                        Next::Fail(Error::WorkingVdiMoved {
                            vid: current(self.volume.as_ref()),
                        })
                    }
                    _ => s.first(),
                },
                Some(next) => {
                    s.step = Step::Sync(sync);
                    next
                }
            },
            // The tag names a VDI already.
            Step::TagFree => Next::Fail(Error::TagExists),
            Step::WriteTag if s.vmstate.is_some() => {
                s.step = Step::WriteVmClock;
                Next::Send
            }
            Step::WriteVmClock => {
                s.step = Step::WriteVmSize;
                Next::Send
            }
            Step::WriteTag | Step::WriteVmSize => {
                s.step = Step::NewVdi;
                Next::Send
            }
            Step::NewVdi => {
                if let Some(vol) = self.volume.as_mut() {
                    vol.header.parent_vdi_id = here;
                    vol.header.vdi_id = rsp_vid;
                    vol.header.snap_id += 1;
                    vol.header.tag = [0; TAG_LEN];
                    // sheep makes the new working inode afresh.
                    vol.header.vm_state_size = 0;
                    vol.header.vm_clock_nsec = 0;
                }
                Next::Done(ControlDone::Snapshot {
                    snapshot: here,
                    working: rsp_vid,
                })
            }
            // Still ours: the snapshot was not taken; take it now.
            Step::Lost(Lost::Lookup) if rsp_vid == here => {
                s.step = Step::NewVdi;
                Next::Send
            }
            Step::Lost(Lost::Lookup) => {
                s.step = Step::Lost(Lost::Header(rsp_vid));
                Next::Send
            }
            Step::Lost(Lost::Header(v)) => match reply::inode_header(payload, v) {
                Err(p) => Next::Fail(Error::BadReply(
                    self.asked_of_step(rsp, Target::Vdi(v)).bad(p),
                )),
                // Our snapshot: the open VDI goes on as its child.
                Ok(h) if !h.is_snapshot() && h.parent_vdi_id == here => {
                    if let Some(vol) = self.volume.as_mut() {
                        vol.header = h;
                    }
                    Next::Done(ControlDone::Snapshot {
                        snapshot: here,
                        working: v,
                    })
                }
                // Someone else's: start again from the new working VDI.
                Ok(_) => {
                    s.step = Step::Sync(Sync::Lookup);
                    Next::Resync
                }
            },
        }
    }
}
