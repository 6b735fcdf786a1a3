//! Create a VDI (PROTOCOL.md §9.3): the cluster's default object size if
//! none was given, NEW_VDI, and with preallocation every object created
//! and the whole index written.

use super::super::{ControlDone, CreateOptions, Engine, Error, Expect, Inline, Name, Target};
use super::exist::{self, Exist};
use super::{fill_run, vid, Next};
use crate::error::SizeError;
use crate::inode::InodeHeader;
use crate::object_size::{ObjectSize, DEFAULT_BLOCK_SIZE_SHIFT, MAX_HYPER_VDI_SIZE};
use crate::oid::Oid;
use crate::reply::check as reply;
use crate::wire::{NewVdi, Request, Response, ResponseArgs};

/// The steps of a create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// GET_CLUSTER_DEFAULT, for the object size.
    Defaults,
    /// NEW_VDI.
    NewVdi,
    /// CREATE_AND_WRITE of object `next` (preallocation).
    Prealloc { next: u32 },
    /// The index entries from `next` on, set to the VDI's own VID.
    Index { next: u32 },
    /// The NEW_VDI resent after a lost reply answered VDI_EXIST.
    Exist(Exist),
}

#[derive(Clone, Debug)]
pub(in crate::engine) struct Create {
    name: Name,
    size: u64,
    copies: u8,
    policy: u8,
    shift: u8,
    prealloc: bool,
    /// 1 for a hyper volume.
    store_policy: u8,
    /// The new VDI's VID, once NEW_VDI answered.
    vid: u32,
    /// Objects it has (preallocation).
    count: u32,
    pub(super) step: Step,
}

impl Create {
    pub(super) fn new(name: Name, opts: CreateOptions) -> Result<Create, Error> {
        let (copies, policy) = opts.redundancy.to_wire();
        if opts.hyper {
            // dog forces 4 MiB objects; the server would take any, so the
            // shift is sent rather than left to the cluster's default.
            if opts.prealloc || !matches!(opts.block_size_shift, 0 | DEFAULT_BLOCK_SIZE_SHIFT) {
                return Err(SizeError::HyperVolume.into());
            }
            if opts.size == 0 || opts.size > MAX_HYPER_VDI_SIZE {
                return Err(SizeError::TooLarge {
                    size: opts.size,
                    max: MAX_HYPER_VDI_SIZE,
                }
                .into());
            }
            return Ok(Create {
                name,
                size: opts.size,
                copies,
                policy,
                shift: DEFAULT_BLOCK_SIZE_SHIFT,
                prealloc: false,
                store_policy: 1,
                vid: 0,
                count: 0,
                step: Step::NewVdi,
            });
        }
        let step = if opts.block_size_shift == 0 {
            Step::Defaults
        } else {
            ObjectSize::from_shift(opts.block_size_shift)?.check_vdi_size(opts.size)?;
            Step::NewVdi
        };
        Ok(Create {
            name,
            size: opts.size,
            copies,
            policy,
            shift: opts.block_size_shift,
            prealloc: opts.prealloc,
            store_policy: 0,
            vid: 0,
            count: 0,
            step,
        })
    }

    pub(super) fn request(&self, id: u32) -> Option<(Request, Inline)> {
        match self.step {
            Step::Defaults => Some((Request::get_cluster_default(id), Inline::None)),
            Step::NewVdi => {
                let req = Request::new_vdi(
                    id,
                    NewVdi {
                        vdi_size: self.size,
                        base_vdi_id: 0,
                        copies: self.copies,
                        copy_policy: self.policy,
                        store_policy: self.store_policy,
                        block_size_shift: self.shift,
                        snapshot: false,
                    },
                );
                Some((req, Inline::Name(self.name.clone())))
            }
            Step::Prealloc { next } => Some((
                Request::create_and_write(id, Oid::data(vid(self.vid)?, next), None, 0, 0, 0),
                Inline::None,
            )),
            Step::Index { next } => fill_run(id, self.vid, next, self.count, self.vid),
            Step::Exist(_) => None,
        }
    }

    pub(super) fn expect(&self) -> Expect {
        match self.step {
            Step::Exist(Exist::Header(_)) => super::HEADER,
            _ => Expect::Nothing,
        }
    }

    /// Whether `h` is the VDI this create asked for.
    fn is_ours(&self, h: &InodeHeader) -> bool {
        !h.is_snapshot()
            && h.parent_vdi_id == 0
            && h.vdi_size == self.size
            && h.block_size_shift == self.shift
            && h.store_policy == self.store_policy
            && h.copy_policy == self.policy
            && (self.copies == 0 || h.nr_copies == self.copies)
    }

    /// NEW_VDI made `vid`: done, or preallocate.
    fn created(&mut self, vid: u32) -> Next {
        self.vid = vid;
        if !self.prealloc {
            return Next::Done(ControlDone::Created { vid });
        }
        let os = ObjectSize::from_shift(self.shift).unwrap_or_default();
        self.count = os.object_count(self.size) as u32;
        if self.count == 0 {
            return Next::Done(ControlDone::Created { vid });
        }
        self.step = Step::Prealloc { next: 0 };
        Next::Send
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
    pub(super) fn create_request(&self, c: &Create, id: u32) -> Option<(Request, Inline)> {
        match c.step {
            Step::Exist(e) => self.exist_request(e, &c.name, id),
            _ => c.request(id),
        }
    }

    pub(super) fn create_advance(
        &mut self,
        c: &mut Create,
        rsp: &Response,
        payload: &[u8],
    ) -> Next {
        match c.step {
            Step::Defaults => {
                let shift = match rsp.args {
                    ResponseArgs::ClusterDefault {
                        block_size_shift, ..
                    } if block_size_shift != 0 => block_size_shift,
                    _ => DEFAULT_BLOCK_SIZE_SHIFT,
                };
                if let Err(p) = reply::cluster_default(0, shift) {
                    let asked = self.asked_of_step(rsp, Target::Cluster);
                    return Next::Fail(Error::BadReply(asked.bad(p)));
                }
                c.shift = shift;
                match ObjectSize::from_shift(shift).and_then(|os| os.check_vdi_size(c.size)) {
                    Ok(()) => {
                        c.step = Step::NewVdi;
                        Next::Send
                    }
                    Err(e) => Next::Fail(e.into()),
                }
            }
            Step::NewVdi => c.created(rsp.vdi_id().unwrap_or(0)),
            Step::Prealloc { next } => {
                c.step = if next + 1 == c.count {
                    Step::Index { next: 0 }
                } else {
                    Step::Prealloc { next: next + 1 }
                };
                Next::Send
            }
            Step::Index { next } => {
                let next = next + (c.count - next).min(super::MAX_RUN);
                if next == c.count {
                    return Next::Done(ControlDone::Created { vid: c.vid });
                }
                c.step = Step::Index { next };
                Next::Send
            }
            Step::Exist(mut e) => {
                let found = self.exist_advance(&mut e, rsp, payload, |h| c.is_ours(h));
                match found {
                    Ok(None) => {
                        c.step = Step::Exist(e);
                        Next::Send
                    }
                    Ok(Some(vid)) => c.created(vid),
                    Err(e) => Next::Fail(e),
                }
            }
        }
    }
}
