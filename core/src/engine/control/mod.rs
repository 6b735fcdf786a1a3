//! Control operations, one at a time (PROTOCOL.md §9.3, §9.6, §9.7, §9.8,
//! §12 steps 4, 7 and 8): cluster defaults, create, open and close,
//! snapshot, clone, resize, delete and rollback. Each lives in its own
//! file as a state with a step enum; a step sends one request (or acts
//! locally), and its answer says which step comes next. This file holds
//! what they share and runs them.
//!
//! Two sequences are shared: [`sync`] (look the working VDI up again and
//! adopt it if another client snapshotted it, before a snapshot or a
//! resize) and [`exist`] (after a lost NEW_VDI reply, find out whether the
//! VDI the resend was refused for is the one asked for).

mod clone;
mod cluster_default;
mod create;
mod delete;
mod exist;
mod open;
mod resize;
mod snapshot;
mod sync;

use super::dirty::MAX_RUN;
use super::event::{ControlDone, Transmit};
use super::flight::Sent;
use super::io::Io;
use super::readonly::Resolve;
use super::{name_from, tag_from, Engine, Expect, Inline, Name, Volume};
use crate::address::Snapshot;
use crate::error::SizeError;
use crate::inode::{self, InodeRange};
use crate::oid::{Oid, Vid};
use crate::redundancy::Redundancy;
use crate::reply::Asked;
use crate::reply::{Error, Target};
use crate::wire::{LockType, NewVdi, Opcode, Request, Response, ResultCode};

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
    /// A hyper volume (store_policy 1, a B-tree index; PROTOCOL.md §7.5):
    /// up to 16 PiB, 4 MiB objects, no preallocation.
    pub hyper: bool,
}

/// Which VDI a lookup names: the working one, or a snapshot by tag or id.
pub type SnapshotSelector<'a> = Option<Snapshot<'a>>;

/// The control operation under way, with its own state and step.
#[derive(Clone, Debug)]
pub(super) enum Op {
    ClusterDefault,
    Create(create::Create),
    Open(open::Open),
    Close,
    Snapshot(snapshot::Snapshot),
    Clone(clone::Clone),
    Resize(resize::Resize),
    /// Delete; a rollback is a delete that then clones.
    Delete(delete::Delete),
}

impl Op {
    /// Whether reads and writes must be done before it runs, and wait
    /// while it runs.
    pub(super) fn quiesces(&self) -> bool {
        matches!(
            self,
            Op::Open(_) | Op::Close | Op::Snapshot(_) | Op::Resize(_)
        )
    }

    /// Whether the current step's request is not idempotent (NEW_VDI,
    /// DEL_VDI): after a lost connection its resend may be refused for
    /// what the first one did.
    fn not_idempotent(&self) -> bool {
        match self {
            Op::Create(c) => c.step == create::Step::NewVdi,
            Op::Clone(c) => c.step == clone::Step::NewVdi,
            Op::Delete(d) => matches!(d.step, delete::Step::DelVdi | delete::Step::Clone),
            _ => false,
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Control {
    pub(super) op: Op,
    /// The step's request is in flight (or parked for a retry).
    pub(super) sent: bool,
    /// Times the working VDI was looked up again (it kept changing): the
    /// retry policy bounds them.
    syncs: u8,
    /// The step's request was on the wire when the connection was lost:
    /// it may have been carried out.
    lost: bool,
}

/// What a step's answer leads to.
pub(super) enum Next {
    /// The operation's step was moved on: send its request.
    Send,
    /// The working VDI changed under the operation: it looks it up again
    /// (bounded by the retry policy).
    Resync,
    /// Finished.
    Done(ControlDone),
    /// Failed.
    Fail(Error),
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

/// READ_OBJ of `v`'s inode header.
fn header_read(id: u32, v: u32) -> Option<(Request, Inline)> {
    let req = Request::read_obj(id, Oid::inode(vid(v)?), 0, inode::HEADER_LEN as u32);
    Some((req, Inline::None))
}

/// GET_VDI_INFO of `name` (and `tag`, or snapshot id `snapid`).
fn lookup(id: u32, name: &Name, tag: &Name, snapid: u32) -> Option<(Request, Inline)> {
    let req = Request::get_vdi_info(id, snapid);
    Some((req, Inline::NameTag(name.clone(), tag.clone())))
}

/// Whether `e` is the server's `r`.
fn is(e: &Error, r: ResultCode) -> bool {
    matches!(e, Error::Server { result, .. } if *result == r)
}

/// Where a header read's payload goes.
const HEADER: Expect = Expect::Scratch(inode::HEADER_LEN as u32);

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    fn start(&mut self, op: Op) -> Result<(), Error> {
        if self.control.is_some() || self.control_done.is_some() {
            return Err(Error::Busy);
        }
        self.control = Some(Control {
            op,
            sent: false,
            syncs: 0,
            lost: false,
        });
        Ok(())
    }

    /// Ask for the cluster's default copies, policy and object size.
    pub fn cluster_default(&mut self) -> Result<(), Error> {
        self.start(Op::ClusterDefault)
    }

    /// Create a VDI (NEW_VDI), optionally allocating every object.
    pub fn create(&mut self, name: &str, opts: CreateOptions) -> Result<(), Error> {
        let c = create::Create::new(name_from(name)?, opts)?;
        self.start(Op::Create(c))
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
        let (tag, snapid) = selector(snapshot)?;
        let o = open::Open::new(name_from(name)?, tag, snapid, lock);
        self.start(Op::Open(o))
    }

    /// Close the open VDI once its reads and writes are done, releasing
    /// its lock if it holds one.
    pub fn close(&mut self) -> Result<(), Error> {
        if self.volume.is_none() {
            return Err(Error::NotOpen);
        }
        self.start(Op::Close)
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
        let s = snapshot::Snapshot::new(tag_from(tag)?, None);
        self.start(Op::Snapshot(s))
    }

    /// Snapshot the open working VDI as [`Engine::snapshot`] does, recording
    /// a VM state of `size` bytes and the VM clock `clock_nsec` in its
    /// inode first, as QEMU's savevm did (PROTOCOL.md §9.9). The state is
    /// in the vmstate objects of `vid`, which must still be the working
    /// VDI: else [`Error::WorkingVdiMoved`], with nothing written.
    pub fn snapshot_with_vmstate(
        &mut self,
        tag: &str,
        size: u64,
        clock_nsec: u64,
        vid: u32,
    ) -> Result<(), Error> {
        let vol = self.volume.as_ref().ok_or(Error::NotOpen)?;
        if vol.header.is_snapshot() {
            return Err(Error::ReadOnly);
        }
        if vol.header.is_hyper() {
            return Err(Error::Size(SizeError::HyperVolume));
        }
        let s = snapshot::Snapshot::new(tag_from(tag)?, Some((size, clock_nsec, vid)));
        self.start(Op::Snapshot(s))
    }

    /// Clone the open snapshot into a new VDI called `name`.
    pub fn clone_snapshot(&mut self, name: &str) -> Result<(), Error> {
        let vol = self.volume.as_ref().ok_or(Error::NotOpen)?;
        if !vol.header.is_snapshot() {
            return Err(Error::NotSnapshot);
        }
        let c = clone::Clone::new(name_from(name)?);
        self.start(Op::Clone(c))
    }

    /// Grow the open working VDI to `size` bytes.
    pub fn resize(&mut self, size: u64) -> Result<(), Error> {
        let vol = self.volume.as_ref().ok_or(Error::NotOpen)?;
        if vol.header.is_hyper() {
            return Err(Error::Size(SizeError::HyperVolume));
        }
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
        self.start(Op::Resize(resize::Resize::new(size)))
    }

    /// Delete a VDI or a snapshot: zero its index in batches (so the
    /// cluster frees its objects), then DEL_VDI.
    pub fn delete(&mut self, name: &str, snapshot: SnapshotSelector<'_>) -> Result<(), Error> {
        let (tag, snapid) = selector(snapshot)?;
        let d = delete::Delete::new(name_from(name)?, tag, snapid, None);
        self.start(Op::Delete(d))
    }

    /// Roll the working VDI back to the open snapshot: delete the working
    /// VDI, then clone the snapshot under its name.
    pub fn rollback(&mut self) -> Result<(), Error> {
        let vol = self.volume.as_ref().ok_or(Error::NotOpen)?;
        if !vol.header.is_snapshot() {
            return Err(Error::NotSnapshot);
        }
        let d = delete::Delete::new(vol.name.clone(), Name::new(), 0, Some(vol.vid()));
        self.start(Op::Delete(d))
    }

    fn finish(&mut self, done: ControlDone) {
        self.control = None;
        self.control_done = Some(done);
    }

    /// Carry out what a step's answer leads to; `ctl` was taken out of
    /// `self.control` while its operation ran.
    fn apply(&mut self, mut ctl: Control, next: Next) {
        match next {
            Next::Done(done) => self.finish(done),
            Next::Fail(e) => self.finish(ControlDone::Failed(e)),
            Next::Resync if ctl.syncs >= self.retry.max_retries => {
                let e = Error::RetriesExhausted {
                    opcode: Opcode::GetVdiInfo,
                    result: ResultCode::Readonly,
                };
                self.finish(ControlDone::Failed(e));
            }
            Next::Send | Next::Resync => {
                if matches!(next, Next::Resync) {
                    ctl.syncs += 1;
                }
                ctl.sent = false;
                ctl.lost = false;
                self.control = Some(ctl);
            }
        }
    }

    /// The connection was lost with the current step's request on the
    /// wire; it goes out again, unless it must not be repeated blindly.
    pub(super) fn control_lost(&mut self) {
        let Some(c) = self.control.as_mut() else {
            return;
        };
        if let Op::Snapshot(s) = &mut c.op {
            s.lost();
        } else if c.op.not_idempotent() {
            c.lost = true;
        }
    }

    /// The request of the current step, or `None` if the step is local (it
    /// is then carried out here).
    pub(super) fn control_request(&mut self, id: u32) -> Option<(Request, Inline)> {
        let ctl = self.control.clone()?;
        match &ctl.op {
            Op::ClusterDefault => Some((Request::get_cluster_default(id), Inline::None)),
            Op::Create(c) => self.create_request(c, id),
            Op::Open(o) => self.open_request(o, id),
            Op::Close => {
                let vol = self.volume.as_ref()?;
                if vol.locked {
                    let req = Request::release_vdi(id, vol.lock_vid, LockType::Normal);
                    Some((req, Inline::None))
                } else {
                    self.volume = None;
                    self.finish(ControlDone::Closed);
                    None
                }
            }
            Op::Snapshot(s) => self.snapshot_request(s, id),
            Op::Clone(c) => self.clone_request(c, id),
            Op::Resize(r) => self.resize_request(r, id),
            Op::Delete(d) => self.delete_request(d, id),
        }
    }

    /// Where the reply payload of the current step goes.
    pub(super) fn control_expect(&self) -> Expect {
        match self.control.as_ref().map(|c| &c.op) {
            Some(Op::Create(c)) => c.expect(),
            Some(Op::Open(o)) => self.open_expect(o),
            Some(Op::Snapshot(s)) => s.expect(),
            Some(Op::Clone(c)) => c.expect(),
            Some(Op::Resize(r)) => r.expect(),
            Some(Op::Delete(d)) => d.expect(),
            _ => Expect::Nothing,
        }
    }

    /// The current step succeeded.
    pub(super) fn control_advance(&mut self, rsp: &Response, payload: &[u8]) {
        let Some(mut ctl) = self.control.take() else {
            return;
        };
        let next = match &mut ctl.op {
            Op::ClusterDefault => self.cluster_default_advance(rsp),
            Op::Create(c) => self.create_advance(c, rsp, payload),
            Op::Open(o) => self.open_advance(o, rsp, payload),
            Op::Close => {
                self.volume = None;
                Next::Done(ControlDone::Closed)
            }
            Op::Snapshot(s) => self.snapshot_advance(s, rsp, payload),
            Op::Clone(c) => self.clone_advance(c, rsp, payload),
            Op::Resize(r) => self.resize_advance(r, rsp, payload),
            Op::Delete(d) => self.delete_advance(d, rsp, payload),
        };
        self.apply(ctl, next);
    }

    /// The current step failed with `e`.
    pub(super) fn control_failed(&mut self, e: Error) {
        let Some(mut ctl) = self.control.take() else {
            return;
        };
        let lost = ctl.lost;
        let next = match &mut ctl.op {
            Op::Create(c) => c.failed(lost, e),
            Op::Open(o) => self.open_failed(o, e),
            // The VDI is closed either way: its lock, if the release did
            // not land, stays with the gateway (PROTOCOL.md §9.8).
            Op::Close => {
                self.volume = None;
                Next::Fail(e)
            }
            Op::Snapshot(s) => s.failed(e),
            Op::Clone(c) => c.failed(lost, e),
            Op::Resize(r) => self.resize_failed(r, e),
            Op::Delete(d) => d.failed(lost, e),
            Op::ClusterDefault => Next::Fail(e),
        };
        self.apply(ctl, next);
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

    /// NEW_VDI of a VDI like the open one, from `base`.
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

/// The open VDI's VID, or 0.
fn current(vol: Option<&Volume>) -> u32 {
    vol.map_or(0, Volume::vid)
}
