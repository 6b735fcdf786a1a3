//! Building requests (PROTOCOL.md §2, §12 steps 1 and 2): one place turns
//! what a flight is for into the request and the small payload the engine
//! writes itself, into the caller's transmit buffer.

use byteorder::{ByteOrder, LittleEndian};

use super::dirty;
use super::flight::{Due, Inflight, Sent};
use super::plan::{read_action, write_action, Piece, ReadAction, WriteAction};
use super::readonly::Resolve;
use super::{DataRange, Engine, Error, Name, Token, Transmit};
use crate::address::{encode_name, encode_name_tag};
use crate::inode::{self, InodeRange};
use crate::oid::{Oid, Vid};
use crate::reply::Asked;
use crate::wire::{Frame, LockType, Request, HEADER_LEN, NAME_LEN, NAME_TAG_LEN, TAG_LEN};

/// A request as built: its header, the small payload the engine writes
/// itself, and the range of the caller's data that follows.
type Built = (Request, Inline, Option<DataRange>);

/// Small payloads the engine writes after a header. Short-lived, so the
/// size of the name variants does not matter.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Inline {
    None,
    Name(Name),
    NameTag(Name, Name),
    Tag(Name),
    U64(u64),
    IndexFromCache(dirty::Run),
    Repeat { value: u32, count: u32 },
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    /// Build the request for `sent`, write it into `buf`, record it. A
    /// request that cannot be built (the state it needs is gone) fails its
    /// operation: nothing is ever dropped silently.
    pub(super) fn send(&mut self, buf: &mut [u8], sent: Sent, attempt: u8) -> Option<Transmit> {
        if let Some(t) = self.build(buf, sent, attempt) {
            return Some(t);
        }
        let nothing_to_do = match sent {
            // A local step carried out, or a control operation that ended.
            Sent::Control => self.control.as_ref().is_none_or(|c| c.sent),
            Sent::Resolve => self.resolve == Resolve::Idle,
            _ => false,
        };
        if !nothing_to_do {
            self.unsendable = self.unsendable.wrapping_add(1);
            let flight = Inflight::queued(sent, attempt, Due::At(self.now));
            self.on_failure(flight, Error::Internal("a request could not be built"));
        }
        None
    }

    /// Build the request for `sent` with a new id into `buf`, and record
    /// it as on the wire.
    pub(super) fn build(&mut self, buf: &mut [u8], sent: Sent, attempt: u8) -> Option<Transmit> {
        let id = self.take_id();
        let mut sent = sent;
        let (request, inline, data) = self.request_for(id, &mut sent)?;
        let header_len = self.emit(buf, &request, inline)?;
        match sent {
            Sent::Write { action, .. } if action.creates() => self.creates_in_flight += 1,
            Sent::Control => {
                if let Some(c) = self.control.as_mut() {
                    c.sent = true;
                }
            }
            _ => {}
        }
        let data_len = data
            .as_ref()
            .map_or(0, |d: &DataRange| d.range.end - d.range.start);
        debug_assert_eq!(
            (header_len - HEADER_LEN) as u64 + data_len,
            u64::from(request.payload_len())
        );
        self.push_flight(Inflight {
            id,
            sent,
            attempt,
            due: Due::OnWire,
            asked: Asked::of(&request),
        });
        Some(Transmit {
            id,
            header_len,
            data,
        })
    }

    /// The request `sent` stands for now, with id `id`: its header, the
    /// small payload the engine writes itself, and the caller's data that
    /// follows. `sent` records what it was built as (a write's action, the
    /// VID an index run went to).
    fn request_for(&mut self, id: u32, sent: &mut Sent) -> Option<Built> {
        let none = |req| Some((req, Inline::None, None));
        match sent {
            Sent::Read { piece, .. } => {
                let entry = self.entry(piece.idx).unwrap_or(0);
                let oid = match read_action(entry, piece.idx) {
                    ReadAction::Read(oid) => oid,
                    // The entry was cleared meanwhile: read our own object,
                    // which answers NO_OBJ rather than stale data.
                    ReadAction::Zeros => {
                        Oid::data(Vid::new(self.volume.as_ref()?.vid()).ok()?, piece.idx)
                    }
                };
                none(Request::read_obj(id, oid, piece.offset, piece.len))
            }
            Sent::Write {
                token,
                piece,
                action,
            } => self.write_request(id, *token, piece, action),
            Sent::IndexRun { run, vid, .. } => {
                let vol = self.volume.as_ref()?;
                *vid = vol.vid();
                let range = InodeRange::index_run(run.first, run.count).ok()?;
                let inode = Oid::inode(Vid::new(*vid).ok()?);
                let copies = vol.header.nr_copies;
                let req = Request::write_obj(id, inode, range.offset, range.len, copies);
                Some((req, Inline::IndexFromCache(*run), None))
            }
            Sent::IndexCheck { run, vid, .. } => {
                *vid = self.volume.as_ref()?.vid();
                let range = InodeRange::index_run(run.first, run.count).ok()?;
                let inode = Oid::inode(Vid::new(*vid).ok()?);
                none(Request::read_obj(id, inode, range.offset, range.len))
            }
            Sent::Probe { piece, .. } => {
                let oid = Oid::data(Vid::new(self.volume.as_ref()?.vid()).ok()?, piece.idx);
                none(Request::read_obj(id, oid, 0, 1))
            }
            Sent::Rehome { idx, vid, .. } => {
                let vol = self.volume.as_ref()?;
                *vid = vol.vid();
                let owner = Vid::new(self.entry(*idx)?).ok()?;
                let oid = Oid::data(Vid::new(*vid).ok()?, *idx);
                let cow = Oid::data(owner, *idx);
                let copies = vol.header.nr_copies;
                none(Request::create_and_write(id, oid, Some(cow), 0, 0, copies))
            }
            Sent::Verify { vid, .. } | Sent::Precheck { vid, .. } => {
                // An empty write to a data object of `vid`: READONLY once
                // the VID is a snapshot (or becoming one), else harmless
                // (NO_OBJ if the object does not exist).
                let copies = self.volume.as_ref()?.header.nr_copies;
                let oid = Oid::data(Vid::new(*vid).ok()?, 0);
                none(Request::write_obj(id, oid, 0, 0, copies))
            }
            Sent::Resolve => self.resolve_request(id),
            Sent::Control => {
                let (req, inline) = self.control_request(id)?;
                Some((req, inline, None))
            }
        }
    }

    /// A piece of a write, planned again from the cache: a resend after
    /// READONLY or a lost connection becomes a copy-on-write or a plain
    /// write (`action` says which).
    fn write_request(
        &self,
        id: u32,
        token: Token,
        piece: &Piece,
        action: &mut WriteAction,
    ) -> Option<Built> {
        let vol = self.volume.as_ref()?;
        let entry = self.entry(piece.idx).unwrap_or(0);
        *action = write_action(Vid::new(vol.vid()).ok()?, entry, piece.idx);
        let copies = vol.header.nr_copies;
        let (offset, len) = (piece.offset, piece.len);
        let req = match *action {
            WriteAction::Write(oid) => Request::write_obj(id, oid, offset, len, copies),
            WriteAction::Create(oid) => {
                Request::create_and_write(id, oid, None, offset, len, copies)
            }
            WriteAction::CreateCow { oid, cow } => {
                Request::create_and_write(id, oid, Some(cow), offset, len, copies)
            }
        };
        let data = DataRange {
            token,
            range: piece.data_offset..piece.data_offset + u64::from(len),
        };
        Some((req, Inline::None, Some(data)))
    }

    /// The step of a re-resolution after READONLY (readonly.rs): look the
    /// working VDI up, read its header, take its lock, release the old.
    fn resolve_request(&self, id: u32) -> Option<Built> {
        let vol = self.volume.as_ref()?;
        let name_only = || Inline::NameTag(vol.name.clone(), Name::new());
        Some(match self.resolve {
            Resolve::Lookup => (Request::get_vdi_info(id, 0), name_only(), None),
            Resolve::Header(vid) => {
                let inode = Oid::inode(Vid::new(vid).ok()?);
                let req = Request::read_obj(id, inode, 0, inode::HEADER_LEN as u32);
                (req, Inline::None, None)
            }
            Resolve::Lock { .. } => (
                Request::lock_vdi(id, 0, LockType::Normal),
                name_only(),
                None,
            ),
            Resolve::Unlock { old, .. } => (
                Request::release_vdi(id, old, LockType::Normal),
                Inline::None,
                None,
            ),
            Resolve::Idle => return None,
        })
    }

    pub(super) fn emit(&self, buf: &mut [u8], request: &Request, inline: Inline) -> Option<usize> {
        let mut frame = Frame::new_checked(&mut buf[..HEADER_LEN]).ok()?;
        request.emit(&mut frame);
        let body = &mut buf[HEADER_LEN..];
        let n = match inline {
            Inline::None => 0,
            Inline::Name(name) => {
                let out: &mut [u8; NAME_LEN] = (&mut body[..NAME_LEN]).try_into().ok()?;
                encode_name(&name, out);
                NAME_LEN
            }
            Inline::NameTag(name, tag) => {
                let out: &mut [u8; NAME_TAG_LEN] = (&mut body[..NAME_TAG_LEN]).try_into().ok()?;
                encode_name_tag(&name, &tag, out);
                NAME_TAG_LEN
            }
            Inline::Tag(tag) => {
                let out: &mut [u8; TAG_LEN] = (&mut body[..TAG_LEN]).try_into().ok()?;
                inode::encode_tag(&tag, out);
                TAG_LEN
            }
            Inline::U64(v) => {
                LittleEndian::write_u64(&mut body[..8], v);
                8
            }
            Inline::IndexFromCache(run) => {
                let start = run.first as usize * 4;
                let len = run.count as usize * 4;
                body[..len].copy_from_slice(&self.index.as_ref()[start..start + len]);
                len
            }
            Inline::Repeat { value, count } => {
                for chunk in body[..count as usize * 4].chunks_exact_mut(4) {
                    LittleEndian::write_u32(chunk, value);
                }
                count as usize * 4
            }
        };
        Some(HEADER_LEN + n)
    }
}
