//! READONLY recovery (PROTOCOL.md §9.3, §9.5, §12 step 6.4): the open VDI
//! was snapshotted behind our back; look the working VDI up again, adopt
//! its VID and send the waiting writes there as copy-on-write. sheep marks
//! the VDI read-only before it copies the inode, so a lookup that still
//! names the read-only VID waits and looks again.

use super::flight::{Due, Inflight, Sent};
use super::{Engine, Error, Target, Transmit, Volume};
use crate::inode;
use crate::reply::check::{self as reply, Asked};
use crate::wire::{Response, ResultCode};

/// Re-resolution of the working VDI after READONLY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Resolve {
    Idle,
    /// GET_VDI_INFO of the name to send or in flight.
    Lookup,
    /// READ_OBJ of the new inode header to send or in flight.
    Header(u32),
    /// LOCK_VDI of the name: the old working VDI was locked, so the new
    /// one must be too (sheep leaves the lock on the VID that became the
    /// snapshot), or another client could write it.
    Lock {
        /// The VID adopted.
        vid: u32,
        /// The VID locked before, now a snapshot.
        old: u32,
    },
    /// RELEASE_VDI of a VID no longer ours to hold: the old one, so that
    /// the snapshot is not left locked; or one the lock landed on that was
    /// snapshotted meanwhile, then look again.
    Unlock {
        /// The VID to release.
        old: u32,
        /// Look the working VDI up again afterwards.
        relookup: bool,
    },
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    pub(super) fn poll_resolve(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if self.resolve == Resolve::Idle || self.now < self.resolve_due {
            return None;
        }
        let attempt = match self.resolving {
            None => 0,
            Some(f) if f.due.ready(self.now) => f.attempt,
            Some(_) => return None,
        };
        self.resolving = None;
        self.send(buf, Sent::Resolve, attempt)
    }

    pub(super) fn on_readonly(&mut self, flight: Inflight, response: &Response) {
        if let Sent::Rehome { key, vid, .. } = flight.sent {
            // The VID we copied into became a snapshot too: find the new
            // working VDI, then check and copy again.
            self.dirty.requeue(key, true);
            self.readonly_vid = vid;
            if self.volume.as_ref().map(Volume::vid) == Some(vid) && self.resolve == Resolve::Idle {
                self.resolve = Resolve::Lookup;
            }
            return;
        }
        let Sent::Write { action, .. } = flight.sent else {
            let e = Error::Server {
                opcode: response.opcode,
                result: ResultCode::Readonly,
            };
            return self.on_failure(flight, e);
        };
        // Each READONLY counts as an attempt: a server that answers it
        // forever ends the write instead of holding it.
        let attempt = flight.attempt.saturating_add(1);
        if attempt > self.retry.max_retries {
            let e = Error::RetriesExhausted {
                opcode: response.opcode,
                result: ResultCode::Readonly,
            };
            return self.on_failure(flight, e);
        }
        let vid = self.volume.as_ref().map(Volume::vid);
        if Some(action.oid().vid_bits()) == vid {
            // Our VDI became a snapshot: find the new working VDI first.
            self.readonly_vid = action.oid().vid_bits();
            if self.resolve == Resolve::Idle {
                self.resolve = Resolve::Lookup;
            }
            self.park(flight, Due::AfterResolve, attempt);
        } else if self.resolve != Resolve::Idle {
            self.park(flight, Due::AfterResolve, attempt);
        } else {
            // Sent to the old VID before we adopted the new one: resend now.
            self.park(flight, Due::At(self.now), attempt);
        }
    }

    pub(super) fn resolve_advance(&mut self, response: &Response, payload: &[u8]) {
        match self.resolve {
            Resolve::Lookup => {
                let vid = response.vdi_id().unwrap_or(0);
                if vid != 0 && vid == self.readonly_vid {
                    // Its snapshot has not made the new working VDI yet:
                    // what we would read back from this inode may still
                    // be overwritten by the snapshot's copy. Look again.
                    self.resolve_waits = self.resolve_waits.saturating_add(1);
                    let Some(wait) = self.retry.backoff(self.resolve_waits) else {
                        self.resolve_waits = 0;
                        return self.resolve_failed(Error::Server {
                            opcode: response.opcode,
                            result: ResultCode::Readonly,
                        });
                    };
                    self.resolve_due = self.now.saturating_add(wait);
                    return;
                }
                self.resolve_waits = 0;
                self.resolve = Resolve::Header(vid);
            }
            Resolve::Header(vid) => {
                let asked = Asked {
                    opcode: response.opcode,
                    len: inode::HEADER_LEN as u32,
                    target: Target::Vdi(vid),
                };
                let shift = self
                    .volume
                    .as_ref()
                    .map_or(0, |v| v.header.block_size_shift);
                let header = match reply::successor_header(payload, vid, shift) {
                    Ok(h) => h,
                    Err(problem) => {
                        return self.resolve_failed(Error::BadReply(asked.bad(problem)));
                    }
                };
                if header.is_snapshot() {
                    // Snapshotted again since the lookup: look again, a
                    // bounded number of times.
                    self.resolve_waits = self.resolve_waits.saturating_add(1);
                    if self.retry.backoff(self.resolve_waits).is_none() {
                        self.resolve_waits = 0;
                        return self.resolve_failed(Error::RetriesExhausted {
                            opcode: crate::wire::Opcode::GetVdiInfo,
                            result: ResultCode::Readonly,
                        });
                    }
                    self.resolve = Resolve::Lookup;
                    return;
                }
                let mut relock = None;
                if let Some(vol) = self.volume.as_mut() {
                    // The cached index stays valid: the new working VDI
                    // started with a copy of ours; our own entries now name
                    // the snapshot's objects, so writes become COW.
                    let size = vol.header.vdi_size;
                    vol.header = header;
                    vol.header.vdi_id = vid;
                    vol.header.vdi_size = size.max(header.vdi_size);
                    if vol.locked && vol.lock_vid != vid {
                        let old = vol.lock_vid;
                        relock = Some(Resolve::Lock { vid, old });
                    }
                }
                match relock {
                    Some(lock) => self.resolve = lock,
                    None => self.resolved(),
                }
            }
            Resolve::Lock { vid, old } => match response.vdi_id() {
                Some(got) if got == vid => {
                    if let Some(vol) = self.volume.as_mut() {
                        vol.lock_vid = vid;
                    }
                    self.resolve = Resolve::Unlock {
                        old,
                        relookup: false,
                    };
                }
                // Snapshotted again meanwhile: the lock is on that VID,
                // which is not ours to hold; release it and look again.
                Some(got) => {
                    self.resolve = Resolve::Unlock {
                        old: got,
                        relookup: true,
                    }
                }
                None => self.resolve = Resolve::Lookup,
            },
            Resolve::Unlock { relookup: true, .. } => self.resolve = Resolve::Lookup,
            Resolve::Unlock { .. } => self.resolved(),
            Resolve::Idle => {}
        }
    }

    /// The new working VDI is adopted: the writes that waited for it go.
    fn resolved(&mut self) {
        self.resolve = Resolve::Idle;
        self.dirty.requeue_all();
        for f in self.flights.iter_mut() {
            if f.due == Due::AfterResolve {
                f.due = Due::At(self.now);
            }
        }
    }

    pub(super) fn resolve_failed(&mut self, e: Error) {
        self.on_failure(Inflight::queued(Sent::Resolve, 0, Due::At(self.now)), e);
    }
}
