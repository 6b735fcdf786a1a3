//! Control operations, one at a time: cluster defaults, create, open and
//! close, snapshot, clone, resize, delete and rollback (PROTOCOL.md §9.3,
//! §9.6, §9.7, §12). Each is a short sequence of steps; a step sends one
//! request, or acts locally when it needs none.

use super::dirty::MAX_RUN;
use super::event::{ControlDone, Error, Target, Transmit};
use super::flight::Sent;
use super::io::Io;
use super::readonly::Resolve;
use super::reply::{self, Asked};
use super::{name_from, tag_from, Engine, Expect, Inline, Name, Volume};
use crate::address::Snapshot;
use crate::error::SizeError;
use crate::inode::{self, InodeHeader, InodeRange};
use crate::object_size::{ObjectSize, DEFAULT_BLOCK_SIZE_SHIFT};
use crate::oid::{Oid, Vid};
use crate::redundancy::Redundancy;
use crate::wire::{LockType, NewVdi, Request, Response, ResponseArgs, ResultCode};

/// Index entries read per request when opening (1 MiB of index).
const INDEX_CHUNK: u32 = 1 << 18;
/// First step of operations on the working VDI: look its name up again.
const SYNC: u8 = 10;
/// Then, if its VID changed, read the new header.
const SYNC_HEADER: u8 = 11;
/// The connection was lost with a snapshot's NEW_VDI on the wire: look the
/// working VDI up to learn whether the snapshot was taken (sending it
/// again would take a second one).
const LOST_SYNC: u8 = 12;
/// It was: read the new working VDI's header and adopt it.
const LOST_HEADER: u8 = 13;
/// A NEW_VDI sent again after a lost connection answered VDI_EXIST: look
/// the name up, for the first one may have created it.
const EXIST_LOOKUP: u8 = 14;
/// Then read its header: ours if it is exactly what was asked for.
const EXIST_HEADER: u8 = 15;

/// How to create a VDI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateOptions {
    /// Virtual size in bytes.
    pub size: u64,
    /// Copies or erasure code.
    pub redundancy: Redundancy,
    /// log2 of the object size; 0 takes the cluster's default.
    pub block_size_shift: u8,
    /// Allocate every object now.
    pub prealloc: bool,
}

/// Which VDI a lookup names: the working one, or a snapshot by tag or id.
pub type SnapshotSelector<'a> = Option<Snapshot<'a>>;

#[derive(Clone, Debug)]
pub(super) enum Op {
    ClusterDefault,
    Create {
        name: Name,
        size: u64,
        copies: u8,
        policy: u8,
        shift: u8,
        prealloc: bool,
        vid: u32,
        next: u32,
        count: u32,
    },
    Open {
        name: Name,
        tag: Name,
        snapid: u32,
        lock: bool,
        vid: u32,
        next: u32,
        failure: Option<Error>,
    },
    Close,
    /// Steps 10 and 11 first make sure the open VID is still the working
    /// one (another client may have snapshotted it), adopting the new one.
    Snapshot {
        tag: Name,
        sync: u32,
    },
    Clone {
        name: Name,
    },
    Resize {
        size: u64,
        sync: u32,
    },
    /// Delete (zero the index, then DEL_VDI); a rollback then clones the
    /// open snapshot under the same name.
    Delete {
        name: Name,
        tag: Name,
        snapid: u32,
        vid: u32,
        count: u32,
        next: u32,
        then_clone: Option<u32>,
    },
}

impl Op {
    /// Whether reads and writes must be done before it runs, and wait
    /// while it runs.
    pub(super) fn quiesces(&self) -> bool {
        matches!(
            self,
            Op::Open { .. } | Op::Close | Op::Snapshot { .. } | Op::Resize { .. }
        )
    }
}

#[derive(Clone, Debug)]
pub(super) struct Control {
    pub(super) op: Op,
    pub(super) step: u8,
    /// The step's request is in flight (or parked for a retry).
    pub(super) sent: bool,
    /// Times the working VDI was looked up again (it kept changing): the
    /// retry policy bounds them.
    pub(super) syncs: u8,
    /// The step's NEW_VDI was on the wire when the connection was lost:
    /// it may have been carried out.
    pub(super) lost: bool,
    /// The VID that [`EXIST_LOOKUP`] found.
    pub(super) found: u32,
}

/// Whether `step` of `op` sends NEW_VDI.
fn creates_vdi(op: &Op, step: u8) -> bool {
    matches!(
        (op, step),
        (Op::Create { .. }, 1)
            | (Op::Clone { .. }, 0)
            | (Op::Snapshot { .. }, 2)
            | (
                Op::Delete {
                    then_clone: Some(_),
                    ..
                },
                4
            )
    )
}

fn selector(s: SnapshotSelector<'_>) -> Result<(Name, u32), Error> {
    match s {
        None => Ok((Name::new(), 0)),
        Some(Snapshot::Tag(t)) => Ok((tag_from(t)?, 0)),
        Some(Snapshot::Id(id)) => Ok((Name::new(), id)),
    }
}

fn vid(v: u32) -> Option<Vid> {
    Vid::new(v).ok()
}

/// The next batch of index entries `next..count` of `v`'s inode, all set
/// to `value`: the index of a preallocated VDI (its own VID), or of one
/// being deleted (0).
fn fill_run(id: u32, v: u32, next: u32, count: u32, value: u32) -> Option<(Request, Inline)> {
    let n = (count - next).min(MAX_RUN);
    let r = InodeRange::index_run(next, n).ok()?;
    let req = Request::write_obj(id, Oid::inode(vid(v)?), r.offset, r.len, 0);
    Some((req, Inline::Repeat { value, count: n }))
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    fn start(&mut self, op: Op, step: u8) -> Result<(), Error> {
        if self.control.is_some() || self.control_done.is_some() {
            return Err(Error::Busy);
        }
        self.control = Some(Control {
            op,
            step,
            sent: false,
            syncs: 0,
            lost: false,
            found: 0,
        });
        Ok(())
    }

    /// Ask for the cluster's default copies, policy and object size.
    pub fn cluster_default(&mut self) -> Result<(), Error> {
        self.start(Op::ClusterDefault, 0)
    }

    /// Create a VDI (NEW_VDI), optionally allocating every object.
    pub fn create(&mut self, name: &str, opts: CreateOptions) -> Result<(), Error> {
        let name = name_from(name)?;
        let (copies, policy) = opts.redundancy.to_wire();
        let step = if opts.block_size_shift == 0 {
            0
        } else {
            ObjectSize::from_shift(opts.block_size_shift)?.check_vdi_size(opts.size)?;
            1
        };
        let op = Op::Create {
            name,
            size: opts.size,
            copies,
            policy,
            shift: opts.block_size_shift,
            prealloc: opts.prealloc,
            vid: 0,
            next: 0,
            count: 0,
        };
        self.start(op, step)
    }

    /// Open a VDI or one of its snapshots: look it up (taking the lock if
    /// asked), read its header, then only the part of the index its size
    /// covers.
    pub fn open(
        &mut self,
        name: &str,
        snapshot: SnapshotSelector<'_>,
        lock: bool,
    ) -> Result<(), Error> {
        if self.volume.is_some() {
            return Err(Error::AlreadyOpen);
        }
        let name = name_from(name)?;
        let (tag, snapid) = selector(snapshot)?;
        let op = Op::Open {
            name,
            tag,
            snapid,
            lock,
            vid: 0,
            next: 0,
            failure: None,
        };
        self.start(op, 0)
    }

    /// Close the open VDI once its reads and writes are done, releasing
    /// its lock if it holds one.
    pub fn close(&mut self) -> Result<(), Error> {
        if self.volume.is_none() {
            return Err(Error::NotOpen);
        }
        self.start(Op::Close, 0)
    }

    /// Snapshot the open working VDI: check the tag is free, write it, then
    /// NEW_VDI with the snapshot flag. The open VDI continues as the new
    /// working VDI.
    pub fn snapshot(&mut self, tag: &str) -> Result<(), Error> {
        let vol = self.volume.as_ref().ok_or(Error::NotOpen)?;
        if vol.header.is_snapshot() {
            return Err(Error::ReadOnly);
        }
        if vol.header.is_hyper() {
            return Err(Error::Size(SizeError::HyperVolume));
        }
        let tag = tag_from(tag)?;
        self.start(Op::Snapshot { tag, sync: 0 }, SYNC)
    }

    /// Clone the open snapshot into a new VDI called `name`.
    pub fn clone_snapshot(&mut self, name: &str) -> Result<(), Error> {
        let vol = self.volume.as_ref().ok_or(Error::NotOpen)?;
        if !vol.header.is_snapshot() {
            return Err(Error::NotSnapshot);
        }
        let name = name_from(name)?;
        self.start(Op::Clone { name }, 0)
    }

    /// Grow the open working VDI to `size` bytes.
    pub fn resize(&mut self, size: u64) -> Result<(), Error> {
        let vol = self.volume.as_ref().ok_or(Error::NotOpen)?;
        if vol.header.is_snapshot() {
            return Err(Error::ReadOnly);
        }
        if size < vol.header.vdi_size {
            return Err(Error::Shrink {
                size: vol.header.vdi_size,
                new_size: size,
            });
        }
        vol.object_size.check_vdi_size(size)?;
        let need = vol.object_size.object_count(size) * 4;
        if need > self.index.as_ref().len() as u64 {
            return Err(Error::IndexBufferTooSmall { need });
        }
        self.start(Op::Resize { size, sync: 0 }, SYNC)
    }

    /// Delete a VDI or a snapshot: zero its index in batches (so the
    /// cluster frees its objects), then DEL_VDI.
    pub fn delete(&mut self, name: &str, snapshot: SnapshotSelector<'_>) -> Result<(), Error> {
        let name = name_from(name)?;
        let (tag, snapid) = selector(snapshot)?;
        let op = Op::Delete {
            name,
            tag,
            snapid,
            vid: 0,
            count: 0,
            next: 0,
            then_clone: None,
        };
        self.start(op, 0)
    }

    /// Roll the working VDI back to the open snapshot: delete the working
    /// VDI, then clone the snapshot under its name.
    pub fn rollback(&mut self) -> Result<(), Error> {
        let vol = self.volume.as_ref().ok_or(Error::NotOpen)?;
        if !vol.header.is_snapshot() {
            return Err(Error::NotSnapshot);
        }
        let op = Op::Delete {
            name: vol.name.clone(),
            tag: Name::new(),
            snapid: 0,
            vid: 0,
            count: 0,
            next: 0,
            then_clone: Some(vol.vid()),
        };
        self.start(op, 0)
    }

    fn finish(&mut self, done: ControlDone) {
        self.control = None;
        self.control_done = Some(done);
    }

    fn goto(&mut self, step: u8) {
        let max = self.retry.max_retries;
        let Some(c) = self.control.as_mut() else {
            return;
        };
        if step == SYNC {
            // Operations start at SYNC without coming here: this is a
            // lookup again, after the VDI changed under the operation.
            c.syncs = c.syncs.saturating_add(1);
            if c.syncs > max {
                let e = Error::RetriesExhausted {
                    opcode: crate::wire::Opcode::GetVdiInfo,
                    result: ResultCode::Readonly,
                };
                return self.finish(ControlDone::Failed(e));
            }
        }
        c.step = step;
        c.sent = false;
        c.lost = false;
    }

    /// The connection was lost with the current step's request on the
    /// wire; it goes out again, unless it was a NEW_VDI that must not be
    /// repeated blindly.
    pub(super) fn control_lost(&mut self) {
        let Some(c) = self.control.as_mut() else {
            return;
        };
        match (&c.op, c.step) {
            (Op::Snapshot { .. }, 2) => c.step = LOST_SYNC,
            // NEW_VDI and DEL_VDI are not idempotent: note that this one
            // may have been carried out.
            (op, step) if creates_vdi(op, step) => c.lost = true,
            (Op::Delete { .. }, 3) => c.lost = true,
            _ => {}
        }
    }

    /// Whether `h`, the header of the VDI found under the name after
    /// VDI_EXIST, is the one the lost NEW_VDI would have made.
    fn made_by_us(&self, op: &Op, h: &InodeHeader) -> bool {
        let fresh = !h.is_snapshot();
        match op {
            Op::Create {
                size,
                copies,
                policy,
                shift,
                ..
            } => {
                fresh
                    && h.parent_vdi_id == 0
                    && h.vdi_size == *size
                    && h.block_size_shift == *shift
                    && h.copy_policy == *policy
                    && (*copies == 0 || h.nr_copies == *copies)
            }
            Op::Clone { .. } => self
                .volume
                .as_ref()
                .is_some_and(|v| fresh && h.parent_vdi_id == v.vid()),
            Op::Delete {
                then_clone: Some(base),
                ..
            } => fresh && h.parent_vdi_id == *base,
            _ => false,
        }
    }

    /// What the current step's request asked, for an error about its
    /// reply's payload.
    fn asked_of_step(&self, rsp: &Response, target: Target) -> Asked {
        Asked {
            opcode: rsp.opcode,
            len: rsp.data_length,
            target,
        }
    }

    fn new_vdi_from(
        &self,
        name: &Name,
        base: u32,
        snapshot: bool,
        id: u32,
    ) -> Option<(Request, Inline)> {
        let h = &self.volume.as_ref()?.header;
        let req = Request::new_vdi(
            id,
            NewVdi {
                vdi_size: h.vdi_size,
                base_vdi_id: base,
                copies: h.nr_copies,
                copy_policy: h.copy_policy,
                store_policy: 0,
                block_size_shift: h.block_size_shift,
                snapshot,
            },
        );
        Some((req, Inline::Name(name.clone())))
    }

    /// WRITE_OBJ of `range` of the open VDI's inode with `inline`.
    fn own_inode_write(
        &self,
        id: u32,
        range: InodeRange,
        inline: Inline,
    ) -> Option<(Request, Inline)> {
        let vol = self.volume.as_ref()?;
        let oid = Oid::inode(vid(vol.vid())?);
        let req = Request::write_obj(id, oid, range.offset, range.len, vol.header.nr_copies);
        Some((req, inline))
    }

    /// The request of the current step, or `None` if the step is local (it
    /// is then carried out here).
    pub(super) fn control_request(&mut self, id: u32) -> Option<(Request, Inline)> {
        let ctl = self.control.clone()?;
        let header_read = |v: u32| {
            Some((
                Request::read_obj(id, Oid::inode(vid(v)?), 0, inode::HEADER_LEN as u32),
                Inline::None,
            ))
        };
        match (&ctl.op, ctl.step) {
            (_, EXIST_LOOKUP) => {
                let name = match &ctl.op {
                    Op::Create { name, .. } | Op::Clone { name } | Op::Delete { name, .. } => {
                        name.clone()
                    }
                    _ => return None,
                };
                Some((
                    Request::get_vdi_info(id, 0),
                    Inline::NameTag(name, Name::new()),
                ))
            }
            (_, EXIST_HEADER) => header_read(ctl.found),
            (Op::Snapshot { sync, .. }, LOST_HEADER) => header_read(*sync),
            (Op::ClusterDefault, _) | (Op::Create { .. }, 0) => {
                Some((Request::get_cluster_default(id), Inline::None))
            }
            (
                Op::Create {
                    name,
                    size,
                    copies,
                    policy,
                    shift,
                    ..
                },
                1,
            ) => {
                let req = Request::new_vdi(
                    id,
                    NewVdi {
                        vdi_size: *size,
                        base_vdi_id: 0,
                        copies: *copies,
                        copy_policy: *policy,
                        store_policy: 0,
                        block_size_shift: *shift,
                        snapshot: false,
                    },
                );
                Some((req, Inline::Name(name.clone())))
            }
            (Op::Create { vid: v, next, .. }, 2) => Some((
                Request::create_and_write(id, Oid::data(vid(*v)?, *next), None, 0, 0, 0),
                Inline::None,
            )),
            (
                Op::Create {
                    vid: v,
                    next,
                    count,
                    ..
                },
                _,
            ) => fill_run(id, *v, *next, *count, *v),
            (
                Op::Open {
                    name,
                    tag,
                    snapid,
                    lock,
                    ..
                },
                0,
            ) => {
                let req = if *lock {
                    Request::lock_vdi(id, *snapid, LockType::Normal)
                } else {
                    Request::get_vdi_info(id, *snapid)
                };
                Some((req, Inline::NameTag(name.clone(), tag.clone())))
            }
            (Op::Open { vid: v, .. }, 1) => header_read(*v),
            (Op::Open { vid: v, next, .. }, 2) => {
                let count = self.volume.as_ref()?.count;
                let n = (count - next).min(INDEX_CHUNK);
                let r = InodeRange::index_run(*next, n).ok()?;
                Some((
                    Request::read_obj(id, Oid::inode(vid(*v)?), r.offset, r.len),
                    Inline::None,
                ))
            }
            (Op::Open { vid: v, .. }, _) => {
                Some((Request::release_vdi(id, *v, LockType::Normal), Inline::None))
            }
            (Op::Close, _) => {
                let vol = self.volume.as_ref()?;
                if vol.locked {
                    Some((
                        Request::release_vdi(id, vol.vid(), LockType::Normal),
                        Inline::None,
                    ))
                } else {
                    self.volume = None;
                    self.finish(ControlDone::Closed);
                    None
                }
            }
            (Op::Snapshot { .. } | Op::Resize { .. }, SYNC | LOST_SYNC) => {
                let name = self.volume.as_ref()?.name.clone();
                Some((
                    Request::get_vdi_info(id, 0),
                    Inline::NameTag(name, Name::new()),
                ))
            }
            (Op::Snapshot { sync, .. } | Op::Resize { sync, .. }, SYNC_HEADER) => {
                header_read(*sync)
            }
            // Is the VID still writable? (READONLY once a snapshot of it is
            // under way, which could drop the size just written.)
            (Op::Resize { .. }, 1) => {
                let vol = self.volume.as_ref()?;
                let oid = Oid::data(vid(vol.vid())?, 0);
                let req = Request::write_obj(id, oid, 0, 0, vol.header.nr_copies);
                Some((req, Inline::None))
            }
            (Op::Snapshot { tag, .. }, 0) => {
                let name = self.volume.as_ref()?.name.clone();
                Some((
                    Request::get_vdi_info(id, 0),
                    Inline::NameTag(name, tag.clone()),
                ))
            }
            (Op::Snapshot { tag, .. }, 1) => {
                self.own_inode_write(id, InodeRange::TAG, Inline::Tag(tag.clone()))
            }
            (Op::Snapshot { .. }, _) => {
                let vol = self.volume.as_ref()?;
                self.new_vdi_from(&vol.name, vol.vid(), true, id)
            }
            (Op::Clone { name }, _) => {
                self.new_vdi_from(name, self.volume.as_ref()?.vid(), false, id)
            }
            (Op::Resize { size, .. }, _) => {
                self.own_inode_write(id, InodeRange::VDI_SIZE, Inline::U64(*size))
            }
            (
                Op::Delete {
                    name, tag, snapid, ..
                },
                0,
            ) => Some((
                Request::get_vdi_info(id, *snapid),
                Inline::NameTag(name.clone(), tag.clone()),
            )),
            (Op::Delete { vid: v, .. }, 1) => header_read(*v),
            (
                Op::Delete {
                    vid: v,
                    count,
                    next,
                    ..
                },
                2,
            ) => fill_run(id, *v, *next, *count, 0),
            (
                Op::Delete {
                    name, tag, snapid, ..
                },
                3,
            ) => Some((
                Request::del_vdi(id, *snapid),
                Inline::NameTag(name.clone(), tag.clone()),
            )),
            (
                Op::Delete {
                    name, then_clone, ..
                },
                _,
            ) => self.new_vdi_from(name, (*then_clone)?, false, id),
        }
    }

    /// Where the reply payload of the current step goes.
    pub(super) fn control_expect(&self) -> Expect {
        let Some(ctl) = self.control.as_ref() else {
            return Expect::Nothing;
        };
        match (&ctl.op, ctl.step) {
            (Op::Snapshot { .. } | Op::Resize { .. }, SYNC_HEADER)
            | (Op::Snapshot { .. }, LOST_HEADER)
            | (_, EXIST_HEADER) => Expect::Scratch(inode::HEADER_LEN as u32),
            (Op::Open { .. }, 1) | (Op::Delete { .. }, 1) => {
                Expect::Scratch(inode::HEADER_LEN as u32)
            }
            (Op::Open { next, .. }, 2) => {
                let count = self.volume.as_ref().map_or(0, |v| v.count);
                let n = (count - next).min(INDEX_CHUNK);
                Expect::Index(*next as usize * 4..(*next + n) as usize * 4)
            }
            _ => Expect::Nothing,
        }
    }

    /// The current step succeeded.
    pub(super) fn control_advance(&mut self, rsp: &Response, payload: &[u8]) {
        let Some(mut ctl) = self.control.take() else {
            return;
        };
        ctl.sent = false;
        let step = ctl.step;
        let rsp_vid = rsp.vdi_id().unwrap_or(0);
        if matches!(step, LOST_SYNC | LOST_HEADER | EXIST_LOOKUP | EXIST_HEADER) {
            return self.after_lost_new_vdi(ctl, rsp, payload);
        }
        let next: Result<Option<u8>, Error> = match &mut ctl.op {
            Op::ClusterDefault => {
                let done = match rsp.args {
                    ResponseArgs::ClusterDefault {
                        nr_copies,
                        copy_policy,
                        block_size_shift,
                    } => match reply::cluster_default(nr_copies, block_size_shift) {
                        Ok(()) => ControlDone::ClusterDefault {
                            copies: nr_copies,
                            copy_policy,
                            block_size_shift,
                        },
                        Err(p) => ControlDone::Failed(Error::BadReply(
                            self.asked_of_step(rsp, Target::Cluster).bad(p),
                        )),
                    },
                    _ => ControlDone::Failed(Error::UnexpectedReply { id: rsp.id }),
                };
                self.finish(done);
                return;
            }
            Op::Create {
                size,
                shift,
                prealloc,
                vid: v,
                next,
                count,
                ..
            } => match step {
                0 => {
                    let s = match rsp.args {
                        ResponseArgs::ClusterDefault {
                            block_size_shift, ..
                        } if block_size_shift != 0 => block_size_shift,
                        _ => DEFAULT_BLOCK_SIZE_SHIFT,
                    };
                    if let Err(p) = reply::cluster_default(0, s) {
                        let asked = self.asked_of_step(rsp, Target::Cluster);
                        self.control = Some(ctl);
                        return self.finish(ControlDone::Failed(Error::BadReply(asked.bad(p))));
                    }
                    *shift = s;
                    match ObjectSize::from_shift(s).and_then(|os| os.check_vdi_size(*size)) {
                        Ok(()) => Ok(Some(1)),
                        Err(e) => Err(e.into()),
                    }
                }
                1 => {
                    *v = rsp_vid;
                    if *prealloc {
                        let os = ObjectSize::from_shift(*shift).unwrap_or_default();
                        *count = os.object_count(*size) as u32;
                        *next = 0;
                        Ok(if *count == 0 { None } else { Some(2) })
                    } else {
                        Ok(None)
                    }
                }
                2 => {
                    *next += 1;
                    if *next == *count {
                        *next = 0;
                        Ok(Some(3))
                    } else {
                        Ok(Some(2))
                    }
                }
                _ => {
                    *next += (*count - *next).min(MAX_RUN);
                    Ok(if *next == *count { None } else { Some(3) })
                }
            },
            Op::Open {
                vid: v,
                next,
                lock,
                failure,
                ..
            } => match step {
                0 => {
                    *v = rsp_vid;
                    Ok(Some(1))
                }
                1 => match self.adopt_header(rsp, payload, *v, *lock) {
                    Ok(0) => Ok(None),
                    Ok(_) => {
                        *next = 0;
                        Ok(Some(2))
                    }
                    Err(e) if *lock => {
                        *failure = Some(e);
                        Ok(Some(3))
                    }
                    Err(e) => Err(e),
                },
                2 => {
                    let count = self.volume.as_ref().map_or(0, |v| v.count);
                    let n = (count - *next).min(INDEX_CHUNK);
                    let read = *next as usize * 4..(*next + n) as usize * 4;
                    match reply::index_entries(&self.index.as_ref()[read]) {
                        Ok(()) => {
                            *next += n;
                            Ok(if *next >= count { None } else { Some(2) })
                        }
                        Err(p) => {
                            // Nothing read from this inode is believed.
                            self.volume = None;
                            let e =
                                Error::BadReply(self.asked_of_step(rsp, Target::Vdi(*v)).bad(p));
                            if *lock {
                                *failure = Some(e);
                                Ok(Some(3))
                            } else {
                                Err(e)
                            }
                        }
                    }
                }
                _ => Err(failure.unwrap_or(Error::NotOpen)),
            },
            Op::Close => {
                self.volume = None;
                Ok(None)
            }
            Op::Snapshot { tag, sync } => match step {
                SYNC | SYNC_HEADER => {
                    let first = if tag.is_empty() { 1 } else { 0 };
                    self.sync_working(rsp, step, rsp_vid, sync, payload, first)
                }
                0 => Err(Error::TagExists),
                1 => Ok(Some(2)),
                _ => {
                    if let Some(vol) = self.volume.as_mut() {
                        let old = vol.vid();
                        vol.header.parent_vdi_id = old;
                        vol.header.vdi_id = rsp_vid;
                        vol.header.snap_id += 1;
                        vol.header.tag = [0; crate::wire::TAG_LEN];
                    }
                    Ok(None)
                }
            },
            Op::Clone { .. } => Ok(None),
            Op::Resize { size, sync } => match step {
                SYNC | SYNC_HEADER => self.sync_working(rsp, step, rsp_vid, sync, payload, 0),
                0 => Ok(Some(1)),
                _ => {
                    self.apply_size(*size);
                    Ok(None)
                }
            },
            Op::Delete {
                vid: v,
                count,
                next,
                then_clone,
                ..
            } => match step {
                0 => {
                    *v = rsp_vid;
                    Ok(Some(1))
                }
                1 => match reply::inode_header(payload, *v) {
                    Err(p) => Err(Error::BadReply(
                        self.asked_of_step(rsp, Target::Vdi(*v)).bad(p),
                    )),
                    // A hyper volume's objects are removed by the server.
                    Ok(h) if h.is_hyper() => Ok(Some(3)),
                    Ok(h) => match h.index_len() {
                        Ok(0) => Ok(Some(3)),
                        Ok(n) => {
                            *count = n;
                            *next = 0;
                            Ok(Some(2))
                        }
                        Err(e) => Err(e.into()),
                    },
                },
                2 => {
                    *next += (*count - *next).min(MAX_RUN);
                    Ok(Some(if *next == *count { 3 } else { 2 }))
                }
                3 if then_clone.is_some() => Ok(Some(4)),
                _ => Ok(None),
            },
        };
        let op = ctl.op.clone();
        self.control = Some(ctl);
        match next {
            Ok(Some(step)) => self.goto(step),
            Ok(None) => self.finish(done_of(&op, self.volume.as_ref(), rsp_vid)),
            Err(e) => self.finish(ControlDone::Failed(e)),
        }
    }

    /// The steps that find out what a NEW_VDI whose reply was lost did.
    fn after_lost_new_vdi(&mut self, mut ctl: Control, rsp: &Response, payload: &[u8]) {
        let rsp_vid = rsp.vdi_id().unwrap_or(0);
        let current = self.volume.as_ref().map_or(0, Volume::vid);
        let step = ctl.step;
        let next: Result<Option<u8>, Error> = match step {
            // Still ours: the snapshot was not taken; take it now.
            LOST_SYNC if rsp_vid == current => Ok(Some(2)),
            LOST_SYNC => {
                if let Op::Snapshot { sync, .. } = &mut ctl.op {
                    *sync = rsp_vid;
                }
                Ok(Some(LOST_HEADER))
            }
            LOST_HEADER => {
                let Op::Snapshot { sync, .. } = ctl.op else {
                    return;
                };
                match reply::inode_header(payload, sync) {
                    Err(p) => Err(Error::BadReply(
                        self.asked_of_step(rsp, Target::Vdi(sync)).bad(p),
                    )),
                    // Our snapshot: the open VDI goes on as its child.
                    Ok(h) if !h.is_snapshot() && h.parent_vdi_id == current => {
                        if let Some(vol) = self.volume.as_mut() {
                            vol.header = h;
                        }
                        self.control = Some(ctl);
                        return self.finish(ControlDone::Snapshot {
                            snapshot: current,
                            working: sync,
                        });
                    }
                    // Someone else's: start again from the new working VDI.
                    Ok(_) => Ok(Some(SYNC)),
                }
            }
            EXIST_LOOKUP => {
                ctl.found = rsp_vid;
                Ok(Some(EXIST_HEADER))
            }
            _ => {
                let found = ctl.found;
                match reply::inode_header(payload, found) {
                    Err(p) => Err(Error::BadReply(
                        self.asked_of_step(rsp, Target::Vdi(found)).bad(p),
                    )),
                    Ok(h) if self.made_by_us(&ctl.op, &h) => {
                        let op = ctl.op.clone();
                        self.control = Some(ctl);
                        return self.created_after_all(op, found);
                    }
                    Ok(_) => Err(Error::Server {
                        opcode: crate::wire::Opcode::NewVdi,
                        result: ResultCode::VdiExist,
                    }),
                }
            }
        };
        self.control = Some(ctl);
        match next {
            Ok(Some(step)) => self.goto(step),
            Ok(None) => {}
            Err(e) => self.finish(ControlDone::Failed(e)),
        }
    }

    /// The NEW_VDI whose reply was lost created `vid` after all: go on as
    /// if its reply had come.
    fn created_after_all(&mut self, op: Op, vid: u32) {
        match op {
            Op::Create {
                prealloc: true,
                size,
                shift,
                ..
            } => {
                let count = ObjectSize::from_shift(shift)
                    .unwrap_or_default()
                    .object_count(size) as u32;
                if let Some(Control {
                    op:
                        Op::Create {
                            vid: v,
                            next,
                            count: c,
                            ..
                        },
                    ..
                }) = self.control.as_mut()
                {
                    *v = vid;
                    *next = 0;
                    *c = count;
                }
                if count == 0 {
                    self.finish(ControlDone::Created { vid });
                } else {
                    self.goto(2);
                }
            }
            Op::Create { .. } => self.finish(ControlDone::Created { vid }),
            Op::Clone { .. } => self.finish(ControlDone::Cloned { vid }),
            _ => self.finish(ControlDone::RolledBack { vid }),
        }
    }

    /// The sync steps: after the lookup, go on at `first` if the VID is
    /// still ours, else read the new working VDI's header; after that read,
    /// adopt it (the cached index stays valid: the new VDI started with a
    /// copy of it, and nothing was written since).
    fn sync_working(
        &mut self,
        rsp: &Response,
        step: u8,
        rsp_vid: u32,
        sync: &mut u32,
        payload: &[u8],
        first: u8,
    ) -> Result<Option<u8>, Error> {
        let current = self.volume.as_ref().map_or(0, Volume::vid);
        if step == SYNC {
            if rsp_vid == current {
                return Ok(Some(first));
            }
            *sync = rsp_vid;
            return Ok(Some(SYNC_HEADER));
        }
        let header = reply::inode_header(payload, *sync)
            .map_err(|p| Error::BadReply(self.asked_of_step(rsp, Target::Vdi(*sync)).bad(p)))?;
        let shift = self.volume.as_ref().map(|v| v.header.block_size_shift);
        if header.is_hyper() || Some(header.block_size_shift) != shift {
            // The working VDI started as a copy of ours: it cannot have
            // another layout.
            let p = crate::engine::Problem::Field {
                name: "block_size_shift",
                got: header.block_size_shift.into(),
                expected: shift.unwrap_or(0).into(),
            };
            return Err(Error::BadReply(
                self.asked_of_step(rsp, Target::Vdi(*sync)).bad(p),
            ));
        }
        if header.is_snapshot() {
            // Snapshotted again since the lookup: look again.
            return Ok(Some(SYNC));
        }
        if let Some(vol) = self.volume.as_mut() {
            vol.header = header;
            vol.header.vdi_id = *sync;
        }
        Ok(Some(first))
    }

    /// Parse and adopt an opened VDI's header; returns its index length.
    fn adopt_header(
        &mut self,
        rsp: &Response,
        payload: &[u8],
        v: u32,
        locked: bool,
    ) -> Result<u32, Error> {
        let header = reply::inode_header(payload, v)
            .map_err(|p| Error::BadReply(self.asked_of_step(rsp, Target::Vdi(v)).bad(p)))?;
        if header.is_hyper() {
            return Err(SizeError::HyperVolume.into());
        }
        let object_size = header.object_size()?;
        let count = header.index_len()?;
        let need = u64::from(count) * 4;
        if need > self.index.as_ref().len() as u64 {
            return Err(Error::IndexBufferTooSmall { need });
        }
        let name = Name::from_slice(header.name()).unwrap_or_default();
        let mut header = header;
        header.vdi_id = v;
        self.volume = Some(Volume {
            name,
            header,
            object_size,
            count,
            locked,
            index_unsettled: false,
        });
        self.readonly_vid = 0;
        self.resolve_waits = 0;
        Ok(count)
    }

    /// The open VDI is now `size` bytes.
    fn apply_size(&mut self, size: u64) {
        if let Some(vol) = self.volume.as_mut() {
            let count = vol.object_size.object_count(size) as u32;
            let old = vol.count;
            vol.header.vdi_size = size;
            vol.count = count;
            self.index.as_mut()[old as usize * 4..count as usize * 4].fill(0);
        }
    }

    /// The current step failed with `e`.
    pub(super) fn control_failed(&mut self, e: Error) {
        let Some(ctl) = self.control.clone() else {
            return;
        };
        let no = |r: ResultCode| matches!(e, Error::Server { result, .. } if result == r);
        if ctl.lost && no(ResultCode::VdiExist) && creates_vdi(&ctl.op, ctl.step) {
            // Maybe the NEW_VDI whose reply was lost made it.
            return self.goto(EXIST_LOOKUP);
        }
        if let (
            Op::Delete {
                vid, then_clone, ..
            },
            3,
        ) = (&ctl.op, ctl.step)
        {
            if ctl.lost && no(ResultCode::NoVdi) {
                // The DEL_VDI whose reply was lost deleted it: go on.
                return match then_clone {
                    Some(_) => self.goto(4),
                    None => self.finish(ControlDone::Deleted { vid: *vid }),
                };
            }
        }
        match (&ctl.op, ctl.step) {
            // The writability probe after a resize: no object 0 is fine;
            // read-only means a snapshot may have dropped the new size, so
            // find the working VDI and write it again.
            (Op::Resize { size, .. }, 1) if no(ResultCode::NoObj) => {
                self.apply_size(*size);
                let done = ControlDone::Resized { size: *size };
                self.finish(done);
            }
            (Op::Resize { .. }, 1) if no(ResultCode::Readonly) => self.goto(SYNC),
            // The tag is free: go on.
            (Op::Snapshot { .. }, 0) if no(ResultCode::NoTag) => self.goto(1),
            // Rollback with no working VDI left: just clone.
            (
                Op::Delete {
                    then_clone: Some(_),
                    ..
                },
                0,
            ) if no(ResultCode::NoVdi) => self.goto(4),
            (
                Op::Open {
                    lock: true, vid: v, ..
                },
                1 | 2,
            ) if *v != 0 => {
                self.volume = None;
                if let Some(Control {
                    op: Op::Open { failure, .. },
                    ..
                }) = self.control.as_mut()
                {
                    *failure = Some(e);
                }
                self.goto(3);
            }
            (Op::Open { .. }, _) => {
                self.volume = None;
                self.finish(ControlDone::Failed(e));
            }
            // The VDI is closed either way: its lock, if the release did
            // not land, stays with the gateway (PROTOCOL.md §9.8).
            (Op::Close, _) => {
                self.volume = None;
                self.finish(ControlDone::Failed(e));
            }
            _ => self.finish(ControlDone::Failed(e)),
        }
    }
}

fn done_of(op: &Op, vol: Option<&Volume>, rsp_vid: u32) -> ControlDone {
    match op {
        Op::ClusterDefault => ControlDone::Failed(Error::NotOpen),
        Op::Create { vid, .. } => ControlDone::Created { vid: *vid },
        Op::Open { .. } => match vol {
            Some(v) => ControlDone::Opened(v.info()),
            None => ControlDone::Failed(Error::NotOpen),
        },
        Op::Close => ControlDone::Closed,
        Op::Snapshot { .. } => ControlDone::Snapshot {
            snapshot: vol.map_or(0, |v| v.header.parent_vdi_id),
            working: rsp_vid,
        },
        Op::Clone { .. } => ControlDone::Cloned { vid: rsp_vid },
        Op::Resize { size, .. } => ControlDone::Resized { size: *size },
        Op::Delete {
            then_clone: Some(_),
            ..
        } => ControlDone::RolledBack { vid: rsp_vid },
        Op::Delete { vid, .. } => ControlDone::Deleted { vid: *vid },
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    pub(super) fn poll_control(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let ctl = self.control.as_ref()?;
        if ctl.sent {
            return None;
        }
        if ctl.op.quiesces()
            && (self.ios.iter().any(Io::active)
                || !self.dirty.is_empty()
                || self.resolve != Resolve::Idle)
        {
            return None;
        }
        if ctl.op.quiesces()
            && self
                .flights
                .iter()
                .any(|f| !matches!(f.sent, Sent::Control))
        {
            return None;
        }
        self.send(buf, Sent::Control, 0)
    }
}
