//! Index write-back (PROTOCOL.md §8 "Reference counting", §9.4, §12 step
//! 6.3): entries that CREATEs set in the cache go to the inode in runs of
//! changed entries only, after the data; entries that may already be there
//! are read back first; objects created under an earlier VID are copied to
//! the new one; and a run counts as written only once the VID it went to
//! is known to be still writable.

use super::flight::{Due, Inflight, Sent};
use super::{Engine, Error, Resolve, Token, Transmit, Volume, DIRTY_CAP};
use crate::wire::ResultCode;
use byteorder::{ByteOrder, LittleEndian};
use heapless::Vec;

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    pub(super) fn poll_flush(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let vid = self.volume.as_ref()?.vid();
        let key = self.next_key;
        if self.dirty.take_exhausted(key, self.retry.max_retries) {
            // The VDI kept changing under these entries (or the server
            // kept failing them): they fail rather than loop.
            self.next_key = self.next_key.wrapping_add(1).max(1);
            let e = Error::RetriesExhausted {
                opcode: crate::wire::Opcode::WriteObj,
                result: ResultCode::Readonly,
            };
            self.index_failed(key, e);
            self.unsendable = self.unsendable.wrapping_add(1);
            return None;
        }
        let index = self.index.as_ref();
        let foreign = |idx: u32| {
            let e = LittleEndian::read_u32(&index[idx as usize * 4..idx as usize * 4 + 4]);
            e != 0 && e != vid
        };
        if let Some(idx) = self.dirty.take_one(key, foreign) {
            self.next_key = self.next_key.wrapping_add(1).max(1);
            return self.send(buf, Sent::Rehome { key, idx, vid }, 0);
        }
        let run = self.dirty.take_run(key)?;
        self.next_key = self.next_key.wrapping_add(1).max(1);
        let clears = (run.first..run.first + run.count).any(|i| self.entry(i) == Some(0));
        let sent = if run.recheck {
            Sent::IndexCheck { key, run, vid }
        } else if clears {
            Sent::Precheck { key, run, vid }
        } else {
            Sent::IndexRun { key, run, vid }
        };
        self.send(buf, sent, run.attempt)
    }

    /// The answer to a Verify or Precheck: whether `vid` had become
    /// read-only.
    pub(super) fn writable_checked(&mut self, flight: Inflight, readonly: bool) {
        let current_vid = self.volume.as_ref().map(Volume::vid);
        match flight.sent {
            Sent::Precheck { key, run, vid } => {
                let current = current_vid == Some(vid);
                if !readonly && current {
                    let write = Inflight::queued(
                        Sent::IndexRun { key, run, vid },
                        flight.attempt,
                        Due::At(self.now),
                    );
                    self.push_flight(write);
                } else {
                    self.not_written(key, vid, readonly, current);
                }
            }
            Sent::Verify { key, vid } => {
                let current = current_vid == Some(vid);
                if !readonly && current {
                    self.run_done(key, None);
                } else {
                    // The VDI became a snapshot around our index write:
                    // the entries go to the new working VDI, unless it
                    // copied them already.
                    self.not_written(key, vid, readonly, current);
                }
            }
            _ => {}
        }
    }

    /// Run `key` for `vid` cannot count as written (`vid` answered
    /// READONLY, or is no longer the open VID): its entries are checked
    /// and written again, after looking up the working VDI when `vid` is
    /// still the open one.
    pub(super) fn not_written(&mut self, key: u32, vid: u32, readonly: bool, current: bool) {
        self.dirty.requeue(key, true);
        if readonly {
            self.readonly_vid = vid;
        }
        if current && self.resolve == Resolve::Idle {
            self.resolve = Resolve::Lookup;
        }
    }

    /// The entries of run `key` are on the inode of `vid`: probe whether
    /// `vid` is still writable before they count as written. (The flight
    /// that answered has just left `flights`, so there is room.)
    pub(super) fn verify(&mut self, key: u32, vid: u32) {
        let verify = Inflight::queued(Sent::Verify { key, vid }, 0, Due::At(self.now));
        self.push_flight(verify);
    }

    /// The index write, check or copy carrying run `key` failed for good:
    /// the operations waiting for its entries fail, and since the inode
    /// may or may not hold them now, the cache cannot be trusted to plan
    /// writes: the open VDI takes no more, and every write not yet done
    /// fails (one planned from a stale entry could be reported done with
    /// its data in an object no index entry names).
    pub(super) fn index_failed(&mut self, key: u32, e: Error) {
        self.run_done(key, Some(e));
        if let Some(vol) = self.volume.as_mut() {
            vol.index_unsettled = true;
        }
        for io in self.ios.iter_mut().filter(|io| io.writes() && !io.finished) {
            io.fail(Error::IndexUnsettled);
            io.settle();
        }
    }

    /// Run `key` is over: its entries leave the dirty set, and each
    /// operation waiting for one has one entry less to wait for (failing
    /// with `failure`, if set).
    pub(super) fn run_done(&mut self, key: u32, failure: Option<Error>) {
        let mut tokens: Vec<Token, DIRTY_CAP> = Vec::new();
        self.dirty.complete(key, |t| {
            let _ = tokens.push(t);
        });
        for t in tokens {
            if let Some(io) = self.io_mut(t) {
                io.unindexed -= 1;
                if let Some(e) = failure {
                    io.fail(e);
                }
                io.settle();
            }
        }
    }
}
