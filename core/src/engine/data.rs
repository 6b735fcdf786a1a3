//! The data path (PROTOCOL.md §9.4, §9.7, §12 steps 5 and 6): reads,
//! writes and discards submitted by the caller, planned object by object
//! from the cached index, with at most one CREATE in flight per object and
//! a probe before re-creating an object whose release the cluster may
//! still be reclaiming.

use super::flight::{Due, Inflight, Sent};
use super::io::{DataDone, Io, IoKind};
use super::plan::{self, pieces, read_action, write_action, ReadAction, WriteAction};
use super::{DataRange, Engine, Error, Token, Transmit, DIRTY_CAP};
use crate::oid::{Oid, Vid};
use crate::wire::{ResultClass, ResultCode};

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    pub(super) fn submit(
        &mut self,
        token: Token,
        offset: u64,
        len: u64,
        kind: IoKind,
    ) -> Result<(), Error> {
        let (write, discard) = (kind != IoKind::Read, kind == IoKind::Discard);
        if self.control.as_ref().is_some_and(|c| c.op.quiesces()) {
            return Err(Error::Busy);
        }
        let vol = self.volume.as_ref().ok_or(Error::NotOpen)?;
        if write && vol.header.is_snapshot() {
            return Err(Error::ReadOnly);
        }
        // A hyper volume's B-tree, loaded at open, is rebuilt by a caller
        // that said it commits it (accept_hyper_writes); a discard would
        // have to take entries out of it, which is not done.
        if write && vol.header.is_hyper() && (discard || !vol.hyper_writes) {
            return Err(Error::Size(crate::error::SizeError::HyperVolume));
        }
        if write && vol.index_unsettled {
            return Err(Error::IndexUnsettled);
        }
        let size = vol.header.vdi_size;
        let end = offset.checked_add(len);
        if len == 0 || end.is_none_or(|e| e > size) {
            return Err(Error::OutOfRange { offset, len, size });
        }
        let os = vol.object_size;
        let whole = u64::from(os.bytes()) - 1;
        if discard && (offset & whole != 0 || (len & whole != 0 && end != Some(size))) {
            return Err(Error::OutOfRange { offset, len, size });
        }
        let io = Io {
            token,
            kind,
            offset,
            len,
            cursor: 0,
            outstanding: 0,
            unindexed: 0,
            error: None,
            first_idx: os.locate(offset).0,
            last_idx: os.locate(offset + len - 1).0,
            finished: false,
            data_done: DataDone::No,
        };
        self.ios.push(io).map_err(|_| Error::Busy)
    }

    /// Read `len` bytes at `offset` of the open VDI into the caller's
    /// buffer for `token`. Ranges of unallocated objects come as
    /// [`super::Event::Zeros`]; the rest as [`super::Receive::Data`].
    pub fn read(&mut self, token: Token, offset: u64, len: u64) -> Result<(), Error> {
        self.submit(token, offset, len, IoKind::Read)
    }

    /// Write `len` bytes of the caller's data for `token` at `offset`.
    pub fn write(&mut self, token: Token, offset: u64, len: u64) -> Result<(), Error> {
        self.submit(token, offset, len, IoKind::Write)
    }

    /// Release the whole objects of `offset..offset + len` (object aligned;
    /// the end may be the end of the VDI): their index entries become 0 and
    /// the cluster frees what no snapshot shares. Reads there give zeros.
    pub fn discard(&mut self, token: Token, offset: u64, len: u64) -> Result<(), Error> {
        self.submit(token, offset, len, IoKind::Discard)
    }

    pub(super) fn poll_io(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let vol = self.volume.as_ref()?;
        let (vid, os) = (vol.vid(), vol.object_size);
        for i in 0..self.ios.len() {
            let io = self.ios[i];
            if io.finished || io.cursor >= io.len {
                continue;
            }
            if self.ios[..i].iter().any(|e| e.active() && e.conflicts(&io)) {
                continue;
            }
            while self.ios[i].cursor < self.ios[i].len {
                let io = self.ios[i];
                let start = io.offset + io.cursor;
                let mut piece = pieces(os, start, io.len - io.cursor).next()?;
                piece.data_offset = io.cursor;
                let entry = self.entry(piece.idx).unwrap_or(0);
                if io.kind == IoKind::Discard {
                    if entry != 0 {
                        if self.dirty.len() + self.creates_in_flight >= DIRTY_CAP {
                            break;
                        }
                        if entry == vid {
                            let oid = Oid::data(Vid::new(vid).ok()?, piece.idx);
                            if self.reclaiming.is_full() {
                                self.reclaiming.remove(0);
                            }
                            let _ = self.reclaiming.push(oid);
                        }
                        self.set_entry(piece.idx, 0);
                        let _ = self.dirty.push(piece.idx, io.token);
                        self.ios[i].unindexed += 1;
                    }
                    self.ios[i].cursor += u64::from(piece.len);
                    self.ios[i].settle();
                    continue;
                }
                if io.kind == IoKind::Write {
                    let action = write_action(Vid::new(vid).ok()?, entry, piece.idx);
                    if action.creates() && self.dirty.len() + self.creates_in_flight >= DIRTY_CAP {
                        break;
                    }
                    self.ios[i].cursor += u64::from(piece.len);
                    self.ios[i].outstanding += 1;
                    let reclaiming = matches!(action, WriteAction::Create(oid) if self.reclaiming.contains(&oid));
                    let sent = if reclaiming {
                        Sent::Probe {
                            token: io.token,
                            piece,
                        }
                    } else {
                        Sent::Write {
                            token: io.token,
                            piece,
                            action,
                        }
                    };
                    return self.send(buf, sent, 0);
                }
                match read_action(entry, piece.idx) {
                    ReadAction::Zeros => {
                        if self.zeros.is_full() {
                            break;
                        }
                        let range = piece.data_offset..piece.data_offset + u64::from(piece.len);
                        let _ = self.zeros.push_back(DataRange {
                            token: io.token,
                            range,
                        });
                        self.ios[i].cursor += u64::from(piece.len);
                        self.ios[i].settle();
                    }
                    ReadAction::Read(_) => {
                        self.ios[i].cursor += u64::from(piece.len);
                        self.ios[i].outstanding += 1;
                        let sent = Sent::Read {
                            token: io.token,
                            piece,
                        };
                        return self.send(buf, sent, 0);
                    }
                }
            }
        }
        None
    }

    /// The answer to a probe of a released object: gone (or given up on
    /// waiting) sends the CREATE; still there waits and asks again.
    pub(super) fn probed(
        &mut self,
        flight: Inflight,
        token: Token,
        piece: plan::Piece,
        result: ResultCode,
    ) {
        let Some(vid) = self.volume.as_ref().and_then(|v| Vid::new(v.vid()).ok()) else {
            return self.on_failure(flight, Error::NotOpen);
        };
        let oid = Oid::data(vid, piece.idx);
        let waiting = match result.class() {
            ResultClass::Success | ResultClass::Transient => true,
            _ if result == ResultCode::NoObj => false,
            _ => {
                let e = Error::Server {
                    opcode: crate::wire::Opcode::ReadObj,
                    result,
                };
                return self.on_failure(flight, e);
            }
        };
        if waiting && self.retry_later(flight).is_ok() {
            return;
        }
        // Gone, or waited as long as the retry policy allows.
        self.reclaiming.retain(|&o| o != oid);
        let sent = Sent::Write {
            token,
            piece,
            action: WriteAction::Create(oid),
        };
        self.push_flight(Inflight::queued(sent, 0, Due::At(self.now)));
    }

    pub(super) fn io_mut(&mut self, token: Token) -> Option<&mut Io> {
        self.ios
            .iter_mut()
            .find(|io| io.token == token && !io.finished)
    }
}
