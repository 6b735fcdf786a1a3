//! Dispatching replies (PROTOCOL.md §1, §12 steps 2, 3 and 9): match each
//! to its request by id, check it (`crate::reply::check`), say where its payload
//! goes, and hand the outcome to the concern that owns the request;
//! transient results are retried with backoff, and a lost connection
//! sends everything on the wire again.

use super::flight::{Due, Inflight, Receiving, Sent};
use super::readonly::Resolve;
use super::{DataRange, Engine, Error, Incoming, Receive, Volume};
use crate::inode::{self, INDEX_ENTRY_LEN};
use crate::reply::check::{self as reply, Want};
use crate::wire::{Response, ResultClass, ResultCode};
use byteorder::{ByteOrder, LittleEndian};

/// Where a control step's reply payload goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Expect {
    Nothing,
    Scratch(u32),
    Index(core::ops::Range<usize>),
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    /// A response header arrived. Says where its payload goes; then read
    /// it there and call [`Engine::handle_payload`].
    ///
    /// An error means the connection is out of step and must be dropped
    /// without reading the payload: then reconnect and call
    /// [`Engine::handle_connection_lost`]. A header that names no request
    /// in flight gives [`Error::UnexpectedReply`]; one that does not fit
    /// its request (another opcode, a payload of the wrong length, a VID
    /// out of range) gives [`Error::BadReply`]: nothing the reply claimed
    /// is believed, and its request goes out again on the next connection
    /// (the caller's to choose: another node), counting as an attempt;
    /// once tried as often as the retry policy allows, its operation ends
    /// with that error.
    pub fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        if let Some(r) = self.receiving.take() {
            // The payload of the previous header never came: its request
            // goes out again, as after a lost connection.
            self.requeue_lost(r.flight);
        }
        let response = Response::parse_bytes(header)?;
        let on_wire = |f: &Inflight| f.id == response.id && f.due.on_wire();
        let flight = match self.flights.iter().position(on_wire) {
            Some(pos) => self.flights.swap_remove(pos),
            None => self
                .resolving
                .take_if(|f| on_wire(f))
                .ok_or(Error::UnexpectedReply { id: response.id })?,
        };
        let (want, into) = self.payload_of(&flight);
        if let Err(problem) = reply::check_header(&flight.asked, &response, want) {
            // A node that answers out of shape is a broken node: nothing
            // it said is believed, the connection goes, and the request
            // is sent again (to whichever node the caller connects to
            // next), as after a lost connection; tried as often as the
            // retry policy allows, it ends with this error.
            let e = Error::BadReply(flight.asked.bad(problem));
            self.requeue(flight, e);
            return Err(e);
        }
        let len = response.data_length;
        let into = if response.result.is_success() {
            into
        } else {
            Receive::Discard
        };
        self.receiving = Some(Receiving {
            flight,
            response,
            into_scratch: into == Receive::Scratch,
        });
        Ok(Incoming { len, into })
    }

    /// The payload a success to `flight` must carry, and where it goes.
    pub(super) fn payload_of(&self, flight: &Inflight) -> (Want, Receive) {
        let scratch = |n: u32| (Want::Exact(n), Receive::Scratch);
        match flight.sent {
            Sent::Read { token, piece } => (
                Want::Exact(piece.len),
                Receive::Data(DataRange {
                    token,
                    range: piece.data_offset..piece.data_offset + u64::from(piece.len),
                }),
            ),
            Sent::IndexCheck { run, .. } => scratch(run.count * INDEX_ENTRY_LEN),
            Sent::Resolve => match self.resolve {
                Resolve::Header(_) => scratch(inode::HEADER_LEN as u32),
                _ => (Want::Ignored, Receive::Discard),
            },
            Sent::Probe { .. } => (Want::Exact(1), Receive::Discard),
            Sent::Control => match self.control_expect() {
                Expect::Scratch(n) => scratch(n),
                Expect::Index(range) => (Want::Exact(range.len() as u32), Receive::Own(range)),
                Expect::Nothing => (Want::Ignored, Receive::Discard),
            },
            _ => (Want::Ignored, Receive::Discard),
        }
    }

    /// The payload of the last response header has been read. `scratch`
    /// holds it when [`Receive::Scratch`] was asked for (ignored otherwise).
    /// A payload whose content cannot be (an inode header of another VDI,
    /// an index entry out of range) fails the operation that asked for it;
    /// the stream is still in step.
    pub fn handle_payload(&mut self, now: u64, scratch: &[u8]) {
        self.now = self.now.max(now);
        let Some(r) = self.receiving.take() else {
            return;
        };
        let payload = if r.into_scratch { scratch } else { &[][..] };
        self.complete(r.flight, r.response, payload);
    }

    /// The connection dropped: everything in flight is resent once a new
    /// connection is up (re-planned from the cached index). Each loss
    /// counts as an attempt of every request it caught; one that has had
    /// as many as the retry policy allows fails with
    /// [`Error::ConnectionLost`].
    pub fn handle_connection_lost(&mut self) {
        if let Some(r) = self.receiving.take() {
            self.requeue_lost(r.flight);
        }
        if let Some(f) = self.resolving.take_if(|f| f.due.on_wire()) {
            self.requeue_lost(f);
        }
        let mut i = 0;
        while i < self.flights.len() {
            if self.flights[i].due.on_wire() {
                let f = self.flights.swap_remove(i);
                self.requeue_lost(f);
            } else {
                i += 1;
            }
        }
    }

    /// `flight` was on the wire when its connection failed (or its reply
    /// was cut short): send it again, or fail it once it has been tried as
    /// often as the retry policy allows.
    pub(super) fn requeue_lost(&mut self, flight: Inflight) {
        self.requeue(flight, Error::ConnectionLost);
    }

    /// Send `flight` again on the next connection, or, once it has been
    /// tried as often as the retry policy allows, fail it with `why`.
    fn requeue(&mut self, flight: Inflight, why: Error) {
        let mut f = flight;
        if let Sent::Write { action, .. } = f.sent {
            if action.creates() {
                self.creates_in_flight -= 1;
            }
        }
        let attempt = f.attempt.saturating_add(1);
        if attempt > self.retry.max_retries {
            return self.on_failure(f, why);
        }
        if let Sent::IndexRun { key, run, vid } = f.sent {
            // Maybe applied: read back before writing again.
            f.sent = Sent::IndexCheck { key, run, vid };
        }
        if let Sent::Control = f.sent {
            self.control_lost();
        }
        self.push_flight(Inflight::queued(f.sent, attempt, Due::At(self.now)));
    }

    pub(super) fn complete(&mut self, flight: Inflight, response: Response, payload: &[u8]) {
        if let Sent::Probe { token, piece } = flight.sent {
            return self.probed(flight, token, piece, response.result);
        }
        if let Sent::Verify { .. } | Sent::Precheck { .. } = flight.sent {
            let readonly = match response.result {
                ResultCode::Success | ResultCode::NoObj => false,
                ResultCode::Readonly => true,
                r if r.class() == ResultClass::Transient => {
                    return self.retry_or_fail(flight, response.opcode, r);
                }
                r => {
                    let e = Error::Server {
                        opcode: response.opcode,
                        result: r,
                    };
                    return self.on_failure(flight, e);
                }
            };
            return self.writable_checked(flight, readonly);
        }
        if let Sent::Write { action, .. } = flight.sent {
            if action.creates() {
                self.creates_in_flight -= 1;
            }
        }
        let result = response.result;
        match result.class() {
            ResultClass::Success => self.on_success(flight, &response, payload),
            ResultClass::Transient => {
                let mut flight = flight;
                if let Sent::IndexRun { key, run, vid } = flight.sent {
                    // It may have been applied: rewriting unchanged
                    // entries would reset their reference counts, so
                    // read them back before writing again.
                    self.dirty
                        .failed_once(key, flight.attempt.saturating_add(1));
                    flight.sent = Sent::IndexCheck { key, run, vid };
                }
                self.retry_or_fail(flight, response.opcode, result)
            }
            _ if result == ResultCode::Readonly => self.on_readonly(flight, &response),
            _ => self.on_failure(
                flight,
                Error::Server {
                    opcode: response.opcode,
                    result,
                },
            ),
        }
    }

    /// Park `flight` for the retry policy's next backoff; `Err` gives it
    /// back when the policy allows no more attempts.
    pub(super) fn retry_later(&mut self, flight: Inflight) -> Result<(), Inflight> {
        let attempt = flight.attempt.saturating_add(1);
        let wait = self.retry.backoff(attempt).ok_or(flight)?;
        let due = Due::At(self.now.saturating_add(wait));
        self.park(flight, due, attempt);
        Ok(())
    }

    /// A transient `result`: try `flight` again later, or fail it once the
    /// retry policy is exhausted.
    pub(super) fn retry_or_fail(
        &mut self,
        flight: Inflight,
        opcode: crate::wire::Opcode,
        result: ResultCode,
    ) {
        if let Err(flight) = self.retry_later(flight) {
            self.on_failure(flight, Error::RetriesExhausted { opcode, result });
        }
    }

    pub(super) fn park(&mut self, flight: Inflight, due: Due, attempt: u8) {
        self.push_flight(Inflight::queued(flight.sent, attempt, due));
    }

    /// Record `flight` as sent or waiting to be sent.
    pub(super) fn push_flight(&mut self, flight: Inflight) {
        if let Sent::Resolve = flight.sent {
            self.resolving = Some(flight);
        } else if let Err(f) = self.flights.push(flight) {
            // Callers make room first (a flight replaces one that just
            // left, or the table was checked not to be full); should that
            // ever fail, the operation ends rather than wait forever.
            self.unsendable = self.unsendable.wrapping_add(1);
            self.on_failure(f, Error::Internal("no slot for a request"));
        }
    }

    pub(super) fn on_success(&mut self, flight: Inflight, response: &Response, payload: &[u8]) {
        match flight.sent {
            Sent::Read { token, .. } => {
                if let Some(io) = self.io_mut(token) {
                    io.outstanding -= 1;
                    io.settle();
                }
            }
            Sent::Write {
                token,
                piece,
                action,
            } => {
                // Once the index is unsettled, a new object is not indexed
                // (its write has failed): the cache must not claim it.
                let index = action.creates() && !self.index_unsettled();
                let hyper = self.volume.as_ref().is_some_and(|v| v.header.is_hyper());
                if index && hyper {
                    // The entry goes into the B-tree when the caller
                    // commits it; the write is done once its data is.
                    self.set_entry(piece.idx, action.oid().vid_bits());
                    if let Some(v) = self.volume.as_mut() {
                        v.widen_uncommitted(piece.idx);
                    }
                    if let Some(io) = self.io_mut(token) {
                        io.outstanding -= 1;
                        io.settle();
                    }
                    return;
                }
                if index {
                    self.set_entry(piece.idx, action.oid().vid_bits());
                    // Room was reserved when the create was planned.
                    let _ = self.dirty.push(piece.idx, token);
                }
                if let Some(io) = self.io_mut(token) {
                    io.outstanding -= 1;
                    if index {
                        io.unindexed += 1;
                    }
                    io.settle();
                }
            }
            Sent::IndexRun { key, vid, .. } => {
                if self.volume.as_ref().map(Volume::vid) == Some(vid) {
                    self.verify(key, vid);
                } else {
                    // Written to the old inode: the new one may hold it.
                    self.dirty.requeue(key, true);
                }
            }
            Sent::IndexCheck { key, run, vid } => {
                if self.volume.as_ref().map(Volume::vid) != Some(vid) {
                    self.dirty.requeue(key, true);
                    return;
                }
                let index = self.index.as_ref();
                let cached = |idx: u32| {
                    LittleEndian::read_u32(&index[idx as usize * 4..idx as usize * 4 + 4])
                };
                let on_inode = |idx: u32| {
                    let at = (idx - run.first) as usize * 4;
                    payload.get(at..at + 4).map(LittleEndian::read_u32)
                };
                let stayed = self
                    .dirty
                    .checked(key, |idx| on_inode(idx) == Some(cached(idx)));
                if stayed {
                    // On the inode; but a snapshot being taken may still
                    // overwrite it with its copy: done once the VID is
                    // known to be writable, as after an index write.
                    self.verify(key, vid);
                }
            }
            Sent::Rehome { key, idx, vid } => {
                if self.volume.as_ref().map(Volume::vid) == Some(vid) {
                    self.set_entry(idx, vid);
                    self.dirty.release(key);
                } else {
                    self.dirty.requeue(key, true);
                }
            }
            // Answered in `writable_checked`.
            Sent::Verify { .. } | Sent::Precheck { .. } => {}
            Sent::Resolve => self.resolve_advance(response, payload),
            // Answered in `probed`.
            Sent::Probe { .. } => {}
            Sent::Control => self.control_advance(response, payload),
        }
    }

    pub(super) fn on_failure(&mut self, flight: Inflight, e: Error) {
        match flight.sent {
            Sent::Read { token, .. } | Sent::Write { token, .. } | Sent::Probe { token, .. } => {
                if let Some(io) = self.io_mut(token) {
                    io.outstanding -= 1;
                    io.fail(e);
                    io.settle();
                }
            }
            Sent::IndexRun { key, .. }
            | Sent::IndexCheck { key, .. }
            | Sent::Verify { key, .. }
            | Sent::Precheck { key, .. }
            | Sent::Rehome { key, .. } => self.index_failed(key, e),
            Sent::Resolve => {
                self.resolve = Resolve::Idle;
                // Whatever waited for the new VID fails.
                let mut i = 0;
                while i < self.flights.len() {
                    if self.flights[i].due == Due::AfterResolve {
                        let f = self.flights.swap_remove(i);
                        self.on_failure(f, e);
                    } else {
                        i += 1;
                    }
                }
            }
            Sent::Control => self.control_failed(e),
        }
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> crate::reply::Replies for Engine<S, N> {
    fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        Engine::handle_header(self, header)
    }
    fn handle_payload(&mut self, now: u64, scratch: &[u8]) {
        Engine::handle_payload(self, now, scratch)
    }
    fn own_bytes_mut(&mut self) -> &mut [u8] {
        self.index_bytes_mut()
    }
}
