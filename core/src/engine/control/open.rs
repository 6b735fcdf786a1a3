//! Open a VDI or a snapshot (PROTOCOL.md §9.2, §9.8, §12 step 4): look it
//! up (LOCK_VDI when a lock is asked for), read and check its header, then
//! only the part of the index its size covers, in chunks checked as they
//! arrive. A failure after the lock was taken releases it first.

use super::super::{
    ControlDone, Engine, Error, Expect, Inline, Name, Problem, Target, Volume, SCRATCH_LEN,
};
use super::{header_read, vid, Next};
use crate::btree;
use crate::inode::InodeRange;
use crate::oid::Oid;
use crate::oid::Vid;
use crate::reply::check as reply;
use crate::wire::{LockType, Request, Response};

/// Index entries read per request when opening (1 MiB of index).
const INDEX_CHUNK: u32 = 1 << 18;

/// The steps of an open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// GET_VDI_INFO, or LOCK_VDI.
    Lookup,
    /// READ_OBJ of the inode header.
    Header,
    /// READ_OBJ of the index entries from `next` on.
    Index { next: u32 },
    /// A hyper volume: its B-tree, walked into the index cache.
    Hyper(btree::Walk),
    /// RELEASE_VDI after a failure with the lock held; then fail with it.
    Release(Error),
}

#[derive(Clone, Debug)]
pub(in crate::engine) struct Open {
    name: Name,
    tag: Name,
    snapid: u32,
    lock: bool,
    /// The VID the lookup found.
    vid: u32,
    step: Step,
}

impl Open {
    pub(super) fn new(name: Name, tag: Name, snapid: u32, lock: bool) -> Open {
        Open {
            name,
            tag,
            snapid,
            lock,
            vid: 0,
            step: Step::Lookup,
        }
    }

    /// `e` ends the open: after releasing the lock if one was taken.
    fn fail(&mut self, e: Error) -> Next {
        if self.lock && self.vid != 0 {
            self.step = Step::Release(e);
            Next::Send
        } else {
            Next::Fail(e)
        }
    }
}

/// What a hyper volume's open step reads: object, offset, length
/// (`None` for the other steps).
fn hyper_read(o: &Open) -> Option<(Oid, u32, u32)> {
    match o.step {
        Step::Hyper(w) => w.read(),
        _ => None,
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    /// The index entries the open reads next: `next..next + n`.
    fn open_chunk(&self, next: u32) -> u32 {
        let count = self.volume.as_ref().map_or(0, |v| v.count);
        count.saturating_sub(next).min(INDEX_CHUNK)
    }

    pub(super) fn open_request(&self, o: &Open, id: u32) -> Option<(Request, Inline)> {
        match o.step {
            Step::Lookup => {
                let req = if o.lock {
                    Request::lock_vdi(id, o.snapid, LockType::Normal)
                } else {
                    Request::get_vdi_info(id, o.snapid)
                };
                Some((req, Inline::NameTag(o.name.clone(), o.tag.clone())))
            }
            Step::Header => header_read(id, o.vid),
            Step::Index { next } => {
                let r = InodeRange::index_run(next, self.open_chunk(next)).ok()?;
                let req = Request::read_obj(id, Oid::inode(vid(o.vid)?), r.offset, r.len);
                Some((req, Inline::None))
            }
            Step::Release(_) => {
                let req = Request::release_vdi(id, o.vid, LockType::Normal);
                Some((req, Inline::None))
            }
            _ => {
                let (oid, offset, len) = hyper_read(o)?;
                Some((Request::read_obj(id, oid, offset, len), Inline::None))
            }
        }
    }

    pub(super) fn open_expect(&self, o: &Open) -> Expect {
        if let Some((_, _, len)) = hyper_read(o) {
            return Expect::Scratch(len);
        }
        match o.step {
            Step::Header => super::HEADER,
            Step::Index { next } => {
                let n = self.open_chunk(next);
                Expect::Index(next as usize * 4..(next + n) as usize * 4)
            }
            _ => Expect::Nothing,
        }
    }

    pub(super) fn open_advance(&mut self, o: &mut Open, rsp: &Response, payload: &[u8]) -> Next {
        match o.step {
            Step::Lookup => {
                o.vid = rsp.vdi_id().unwrap_or(0);
                o.step = Step::Header;
                Next::Send
            }
            Step::Header => match self.adopt_header(rsp, payload, o.vid, o.lock) {
                Ok(_) if self.volume.as_ref().is_some_and(|v| v.header.is_hyper()) => {
                    o.step = Step::Hyper(btree::Walk::new(o.vid, SCRATCH_LEN as u32));
                    Next::Send
                }
                Ok(0) => self.opened(),
                Ok(_) => {
                    o.step = Step::Index { next: 0 };
                    Next::Send
                }
                Err(e) => o.fail(e),
            },
            Step::Index { next } => {
                let n = self.open_chunk(next);
                let read = next as usize * 4..(next + n) as usize * 4;
                if let Err(p) = reply::index_entries(&self.index.as_ref()[read]) {
                    // Nothing read from this inode is believed.
                    self.volume = None;
                    let e = Error::BadReply(self.asked_of_step(rsp, Target::Vdi(o.vid)).bad(p));
                    return o.fail(e);
                }
                let next = next + n;
                if next >= self.volume.as_ref().map_or(0, |v| v.count) {
                    return self.opened();
                }
                o.step = Step::Index { next };
                Next::Send
            }
            Step::Release(e) => Next::Fail(e),
            _ => match self.hyper_advance(o, payload) {
                Ok(Some(step)) => {
                    o.step = step;
                    Next::Send
                }
                Ok(None) => self.opened(),
                Err(p) => {
                    // Nothing read from this tree is believed.
                    self.volume = None;
                    let e = Error::BadReply(self.asked_of_step(rsp, Target::Vdi(o.vid)).bad(p));
                    o.fail(e)
                }
            },
        }
    }

    /// A step of a hyper volume's B-tree is in `payload`: its entries go
    /// into the index cache, which then reads like a flat index. Returns
    /// the next step, or `None` when the tree is read.
    fn hyper_advance(&mut self, o: &Open, payload: &[u8]) -> Result<Option<Step>, Problem> {
        let count_objects = self.volume.as_ref().map_or(0, |v| v.count);
        let index = self.index.as_mut();
        let mut fill = |b: &[u8], (low, high): (u32, u32)| -> Result<(), Problem> {
            for (idx, vid) in btree::leaf_entries(b) {
                if idx < low || idx > high {
                    // Where sheep's lookup never looks.
                    continue;
                }
                if idx >= count_objects || (vid != 0 && Vid::new(vid).is_err()) {
                    return Err(Problem::Field {
                        name: "btree entry",
                        got: (u64::from(idx) << 32) | u64::from(vid),
                        expected: 0,
                    });
                }
                let at = idx as usize * 4;
                index[at..at + 4].copy_from_slice(&vid.to_le_bytes());
            }
            Ok(())
        };
        let Step::Hyper(mut walk) = o.step else {
            return Ok(None);
        };
        let range = walk.range();
        fill(walk.advance(payload)?, range)?;
        Ok((!walk.is_done()).then_some(Step::Hyper(walk)))
    }

    pub(super) fn open_failed(&mut self, o: &mut Open, e: Error) -> Next {
        self.volume = None;
        match o.step {
            Step::Lookup | Step::Release(_) => Next::Fail(e),
            _ => o.fail(e),
        }
    }

    fn opened(&self) -> Next {
        match self.volume.as_ref() {
            Some(v) => Next::Done(ControlDone::Opened(v.info())),
            None => Next::Fail(Error::NotOpen),
        }
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
        let object_size = header.object_size()?;
        let count = if header.is_hyper() {
            // Its B-tree is loaded into the index cache: one entry per
            // object of its size, all unallocated until the tree says.
            let n = object_size.object_count(header.vdi_size);
            u32::try_from(n).map_err(|_| Error::IndexBufferTooSmall { need: n * 4 })?
        } else {
            header.index_len()?
        };
        let need = u64::from(count) * 4;
        if need > self.index.as_ref().len() as u64 {
            return Err(Error::IndexBufferTooSmall { need });
        }
        if header.is_hyper() {
            self.index.as_mut()[..need as usize].fill(0);
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
            lock_vid: if locked { v } else { 0 },
            index_unsettled: false,
            uncommitted: None,
            hyper_writes: false,
        });
        self.readonly_vid = 0;
        self.resolve_waits = 0;
        Ok(count)
    }
}
