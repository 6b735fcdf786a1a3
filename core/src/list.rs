//! Listing every VDI and snapshot (PROTOCOL.md §9.11): read the in-use and
//! deleted bitmaps, then the header of every VID in use and not deleted,
//! and the part of its index its size covers for the used and shared
//! counts. VIDs are never assumed to equal the name's hash.
//!
//! The lister is sans-IO like the engine: [`Lister::poll_transmit`] gives
//! requests, [`Lister::handle_header`] says where a reply's payload goes
//! (the caller's bitmaps, a scratch buffer, or nowhere) and
//! [`Lister::handle_payload`] consumes it. One request is in flight at a
//! time.
//!
//! Replies are checked as the engine checks them: a reply of another
//! opcode or length, or an inode header that cannot be, ends the listing
//! with [`Error::BadReply`] rather than leave a VDI out of it. Only a VDI
//! whose inode is gone (NO_OBJ: deleted meanwhile) is skipped, as dog does.

use crate::btree;
use crate::index::IndexView;
use crate::inode::{self, InodeHeader, InodeRange};
use crate::oid::{Oid, OidKind, Vid, NR_VDIS};
use crate::reply::check::{self as reply, Asked, Want};
use crate::reply::{Error, Incoming, Receive, Replies, Target};
use crate::wire::{Frame, Request, Response, ResultCode, HEADER_LEN, VDI_BITMAP_LEN};

/// One VDI or snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// Its header.
    pub header: InodeHeader,
    /// Objects it owns.
    pub used: u32,
    /// Objects it shares with ancestors.
    pub shared: u32,
}

/// What the lister reports (a header inline: there is no allocator).
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum ListEvent {
    /// A VDI or snapshot.
    Vdi(ListEntry),
    /// The listing finished.
    Done(Result<(), Error>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    InUse,
    Deleted,
    /// Read the header of this VID.
    Header(u32),
    /// Read index entries `next..count` of the entry's VID.
    Index {
        next: u32,
        count: u32,
    },
    /// A hyper volume: its B-tree, walked for the counts.
    Hyper(btree::Walk),
    Finished,
}

/// Lists VDIs; the caller owns the two 2 MiB bitmaps (`B`).
#[derive(Debug)]
pub struct Lister<B> {
    inuse: B,
    deleted: B,
    step: Step,
    /// The request on the wire: its id, and what it asked.
    in_flight: Option<(u32, Asked)>,
    entry: Option<ListEntry>,
    next_id: u32,
    /// Largest index read, in bytes (the caller's scratch size).
    chunk: u32,
    pending: Option<ListEvent>,
    done: Option<ListEvent>,
    /// The last reply failed: its payload is dropped, not consumed.
    skip_payload: bool,
    /// Bytes the scratch payload of the reply being read must have.
    want: Option<u32>,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Lister<B> {
    /// A lister over two 2 MiB buffers; index reads are at most
    /// `scratch_len` bytes (at least 4664, the header).
    ///
    /// [`Lister::poll_transmit`] needs a buffer of [`HEADER_LEN`] bytes.
    pub fn new(inuse: B, deleted: B, scratch_len: usize) -> Result<Lister<B>, Error> {
        for b in [&inuse, &deleted] {
            if b.as_ref().len() != VDI_BITMAP_LEN {
                return Err(crate::error::DecodeError::BadLength {
                    what: "VDI bitmap",
                    expected: VDI_BITMAP_LEN,
                    got: b.as_ref().len(),
                }
                .into());
            }
        }
        let chunk = scratch_len.clamp(inode::HEADER_LEN, 1 << 22) as u32 & !3;
        Ok(Lister {
            inuse,
            deleted,
            step: Step::InUse,
            in_flight: None,
            entry: None,
            next_id: 1,
            chunk,
            pending: None,
            done: None,
            skip_payload: false,
            want: None,
        })
    }

    /// The next request, written into `buf` (48 bytes at least).
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::BufferTooSmall { need: HEADER_LEN });
        }
        Ok(self.next_request(buf))
    }

    fn next_request(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.in_flight.is_some() || self.pending.is_some() || self.done.is_some() {
            return None;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let req = match self.step {
            Step::InUse => Request::read_vdis(id),
            Step::Deleted => Request::read_del_vdis(id),
            Step::Header(vid) => Request::read_obj(
                id,
                Oid::inode(Vid::new(vid).ok()?),
                0,
                inode::HEADER_LEN as u32,
            ),
            Step::Index { next, count } => {
                let vid = self.entry.as_ref()?.header.vdi_id;
                let n = (count - next).min(self.chunk / 4);
                let r = InodeRange::index_run(next, n).ok()?;
                Request::read_obj(id, Oid::inode(Vid::new(vid).ok()?), r.offset, r.len)
            }
            Step::Hyper(w) => {
                let (oid, offset, len) = w.read()?;
                Request::read_obj(id, oid, offset, len)
            }
            Step::Finished => return None,
        };
        let mut frame = Frame::new_checked(buf.get_mut(..HEADER_LEN)?).ok()?;
        req.emit(&mut frame);
        self.in_flight = Some((id, Asked::of(&req)));
        Some(HEADER_LEN)
    }

    fn expected(&self) -> Option<(u32, Receive)> {
        match self.step {
            Step::InUse | Step::Deleted => {
                Some((VDI_BITMAP_LEN as u32, Receive::Own(0..VDI_BITMAP_LEN)))
            }
            Step::Header(_) => Some((inode::HEADER_LEN as u32, Receive::Scratch)),
            Step::Index { next, count } => {
                Some(((count - next).min(self.chunk / 4) * 4, Receive::Scratch))
            }
            Step::Hyper(w) => w.read().map(|(_, _, len)| (len, Receive::Scratch)),
            Step::Finished => None,
        }
    }

    /// A response header arrived: where its payload goes. `Receive::Own`
    /// here means the bitmap buffer given by [`Lister::bitmap_mut`]. An
    /// error means the connection is out of step (the listing has ended
    /// with it): drop the connection without reading the payload.
    pub fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        let rsp = Response::parse_bytes(header)?;
        let asked = match self.in_flight {
            Some((id, asked)) if id == rsp.id => asked,
            _ => return Err(Error::UnexpectedReply { id: rsp.id }),
        };
        self.in_flight = None;
        let (len, into) = self.expected().unwrap_or((0, Receive::Discard));
        self.want = (into == Receive::Scratch).then_some(len);
        if let Err(p) = reply::check_header(&asked, &rsp, Want::Exact(len)) {
            let e = Error::BadReply(asked.bad(p));
            self.finish(Err(e));
            return Err(e);
        }
        let into = if rsp.result.is_success() {
            into
        } else {
            let e = Error::Server {
                opcode: rsp.opcode,
                result: rsp.result,
            };
            self.fail_step(e);
            self.skip_payload = true;
            Receive::Discard
        };
        Ok(Incoming {
            len: rsp.data_length,
            into,
        })
    }

    fn finish(&mut self, result: Result<(), Error>) {
        self.step = Step::Finished;
        self.entry = None;
        self.done = Some(ListEvent::Done(result));
    }

    /// The bitmap that a `Receive::Own` payload goes into.
    pub fn bitmap_mut(&mut self) -> &mut [u8] {
        match self.step {
            Step::Deleted => self.deleted.as_mut(),
            _ => self.inuse.as_mut(),
        }
    }

    fn fail_step(&mut self, e: Error) {
        let gone = matches!(
            e,
            Error::Server {
                result: ResultCode::NoObj,
                ..
            }
        );
        match self.step {
            // A VDI deleted since the bitmaps were read is skipped, as dog
            // does; any other failure ends the listing, which would
            // otherwise look whole without it.
            Step::Header(vid) if gone => {
                self.entry = None;
                self.advance_from(vid + 1);
            }
            // Deleted between its header and its index: skipped too (a
            // missing B-tree leaf of a live volume is not: it ends the
            // listing).
            Step::Index { .. } if gone => {
                let vid = self.entry.take().map_or(0, |e| e.header.vdi_id);
                self.advance_from(vid + 1);
            }
            Step::Hyper(w)
                if gone
                    && w.read()
                        .is_some_and(|(oid, _, _)| oid.kind() == OidKind::Inode) =>
            {
                let vid = self.entry.take().map_or(0, |e| e.header.vdi_id);
                self.advance_from(vid + 1);
            }
            _ => self.finish(Err(e)),
        }
    }

    /// The next VID in use and not deleted, at or after `from`.
    fn advance_from(&mut self, from: u32) {
        let (inuse, deleted) = (self.inuse.as_ref(), self.deleted.as_ref());
        let from = from.max(1);
        let next = if from >= NR_VDIS {
            None
        } else {
            let first = (from >> 3) as usize;
            (first..VDI_BITMAP_LEN).find_map(|i| {
                let mut live = inuse[i] & !deleted[i];
                if i == first {
                    live &= 0xffu8 << (from & 7);
                }
                (live != 0).then(|| ((i as u32) << 3) | live.trailing_zeros())
            })
        };
        match next {
            Some(v) => self.step = Step::Header(v),
            None => {
                self.step = Step::Finished;
                self.done = Some(ListEvent::Done(Ok(())));
            }
        }
    }

    /// The payload has been read (into `scratch` for `Receive::Scratch`).
    pub fn handle_payload(&mut self, scratch: &[u8]) {
        if core::mem::take(&mut self.skip_payload) {
            return;
        }
        match self.step {
            Step::InUse if self.done.is_none() => self.step = Step::Deleted,
            Step::Deleted if self.done.is_none() => self.advance_from(1),
            Step::Header(_) | Step::Index { .. } if Some(scratch.len() as u32) != self.want => {
                // The caller's scratch could not hold the payload: nothing
                // of this VDI is known, so the listing cannot claim to be
                // whole.
                let need = self.want.unwrap_or(0) as usize;
                self.finish(Err(Error::BufferTooSmall { need }));
            }
            Step::Header(vid) => match InodeHeader::parse(scratch) {
                Ok(h) if h.is_deleted() => self.advance_from(vid + 1),
                _ => match reply::inode_header(scratch, vid) {
                    Err(p) => {
                        let asked = Asked {
                            opcode: crate::wire::Opcode::ReadObj,
                            len: inode::HEADER_LEN as u32,
                            target: Target::Vdi(vid),
                        };
                        self.finish(Err(Error::BadReply(asked.bad(p))))
                    }
                    Ok(header) => {
                        let count = if header.is_hyper() {
                            0
                        } else {
                            header.index_len().unwrap_or(0)
                        };
                        self.entry = Some(ListEntry {
                            header,
                            used: 0,
                            shared: 0,
                        });
                        if header.is_hyper() {
                            self.step = Step::Hyper(btree::Walk::new(vid, self.chunk));
                        } else if count == 0 {
                            self.pending = self.entry.take().map(ListEvent::Vdi);
                            self.advance_from(vid + 1);
                        } else {
                            self.step = Step::Index { next: 0, count };
                        }
                    }
                },
            },
            Step::Index { next, count } => {
                let Some(entry) = self.entry.as_mut() else {
                    return;
                };
                let (used, shared) = IndexView::new(scratch, next).usage(entry.header.vdi_id);
                entry.used += used;
                entry.shared += shared;
                let next = next + (scratch.len() / 4) as u32;
                if next >= count || scratch.is_empty() {
                    let vid = entry.header.vdi_id;
                    self.pending = self.entry.take().map(ListEvent::Vdi);
                    self.advance_from(vid + 1);
                } else {
                    self.step = Step::Index { next, count };
                }
            }
            Step::Hyper(_) => self.hyper_payload(scratch),
            _ => {}
        }
    }

    /// A read of a hyper volume's B-tree is in `scratch`: count the
    /// objects its leaf entries name.
    fn hyper_payload(&mut self, scratch: &[u8]) {
        let (Step::Hyper(mut walk), Some(vid)) =
            (self.step, self.entry.as_ref().map(|e| e.header.vdi_id))
        else {
            return;
        };
        let Some((oid, _, len)) = walk.read() else {
            return;
        };
        match walk.advance(scratch) {
            Err(p) => {
                let asked = Asked {
                    opcode: crate::wire::Opcode::ReadObj,
                    len,
                    target: Target::Oid(oid),
                };
                self.finish(Err(Error::BadReply(asked.bad(p))));
            }
            Ok(entries) => {
                if let Some(e) = self.entry.as_mut() {
                    let (used, shared) = btree::usage(entries, vid);
                    e.used += used;
                    e.shared += shared;
                }
                if walk.is_done() {
                    self.pending = self.entry.take().map(ListEvent::Vdi);
                    self.advance_from(vid + 1);
                } else {
                    self.step = Step::Hyper(walk);
                }
            }
        }
    }

    /// The next VDI, or the end of the listing.
    pub fn poll_event(&mut self) -> Option<ListEvent> {
        self.pending.take().or_else(|| self.done.take())
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Replies for Lister<B> {
    fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        Lister::handle_header(self, header)
    }
    fn handle_payload(&mut self, _now: u64, scratch: &[u8]) {
        Lister::handle_payload(self, scratch)
    }
    fn own_bytes_mut(&mut self) -> &mut [u8] {
        self.bitmap_mut()
    }
}
