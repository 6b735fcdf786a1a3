//! The volume engine: a sans-IO state machine that turns a user's
//! operations on Sheepdog volumes into requests and the server's responses
//! into completions (PROTOCOL.md §9 and §12).
//!
//! It does no I/O, reads no clock, and allocates nothing: requests are
//! written into a buffer the caller hands in, payload data is named by range
//! and never copied, and time is an argument (nanoseconds from any origin).
//!
//! # Run loop
//! 1. Submit operations: [`Engine::open`], [`Engine::read`],
//!    [`Engine::write`], [`Engine::create`], [`Engine::snapshot`] ...
//! 2. While [`Engine::poll_transmit`] gives a [`Transmit`], send its
//!    `header_len` bytes of your buffer, then the range of your data it names.
//! 3. When a response header (48 bytes) arrives, pass it to
//!    [`Engine::handle_header`]. Read the payload that follows where the
//!    returned [`Incoming`] says (your read buffer, the engine's index, your
//!    scratch buffer of [`SCRATCH_LEN`] bytes, or nowhere), then call
//!    [`Engine::handle_payload`]. If it returns an error instead, the
//!    connection is out of step: drop it without reading the payload, and
//!    go on as in step 5.
//! 4. Take completions from [`Engine::poll_event`].
//! 5. When [`Engine::poll_timeout`] says a time has come, call
//!    [`Engine::handle_timeout`] (retries after transient failures wait for
//!    their backoff). If the connection drops, reconnect and call
//!    [`Engine::handle_connection_lost`]: everything in flight is resent.
//!
//! # What it guarantees
//! - At most `N` requests are outstanding (sent, or waiting for a retry).
//! - Reads and writes that touch a common object, one of them a write, run
//!   one after the other in submission order; so there is never more than
//!   one CREATE in flight per object.
//! - Data goes first, then the index: a CREATE's index entry is written
//!   (batched with others into range writes) only after the CREATE
//!   succeeded, and a write completes only after its entries are on the
//!   inode and the inode was checked not to have become a snapshot meanwhile.
//! - READONLY (someone took a snapshot): the engine looks the working VDI up
//!   again, adopts its VID, and resends the write as copy-on-write; index
//!   entries not yet on the new inode are written there.
//! - Transient results are retried with bounded exponential backoff.
//!
//! # Replies are checked, not believed
//! Each reply must fit its request (PROTOCOL.md §1, §2.4, §8): the id of a
//! request on the wire, its opcode, a payload no longer than the buffer the
//! request offered and exactly as long as a read asked for, a VID in
//! 1..2^24 from a lookup, an inode header that names the VID it was read
//! from with a valid store policy, copy count and object size, index
//! entries below 2^24. A reply that does not fit ends the operation that
//! owns it with [`Error::BadReply`] ("bad reply to READ_OBJ of oid ...:
//! 4096 bytes, expected 65536"), and nothing it claimed is used. An index
//! write that fails for good leaves the inode unknown: the open VDI then
//! refuses writes ([`Error::IndexUnsettled`]) until it is opened again.
//!
//! # Liveness
//! Every operation the engine accepts ends in exactly one event
//! ([`Event::Done`] or [`Event::Control`]), success or error, within a
//! bounded number of replies, retries and lost connections:
//! - a transient result, a READONLY that sends a write to a new working
//!   VDI, a lookup that finds the VDI still being snapshotted, an index
//!   write sent again because the VDI changed, and a lost connection each
//!   count as an attempt, and [`RetryPolicy::max_retries`] bounds them;
//! - a request that cannot be built fails its operation instead of being
//!   dropped; the lookup of a new working VDI has a slot of its own, so
//!   writes that fill every other slot cannot hold it back;
//! - a reply whose payload never came (a second header, a lost
//!   connection) sends its request again.
//!
//! So whenever an operation is pending, the engine has a request to send,
//! one on the wire, or a time in [`Engine::poll_timeout`]. A reply that
//! never comes is the caller's to time out (drop the connection).

mod control;
mod dirty;
pub mod event;
mod io;
pub mod plan;
pub(crate) mod reply;
pub mod retry;

use byteorder::{ByteOrder, LittleEndian};
use heapless::{Deque, Vec};

use crate::address::{check_name, check_tag, encode_name, encode_name_tag};
use crate::inode::{self, InodeHeader, InodeRange, INDEX_ENTRY_LEN};
use crate::object_size::ObjectSize;
use crate::oid::{Oid, Vid};
use crate::wire::{
    Frame, Request, Response, ResultClass, ResultCode, HEADER_LEN, NAME_LEN, NAME_TAG_LEN, TAG_LEN,
};

use control::Control;
pub use control::{CreateOptions, SnapshotSelector};
use dirty::{Dirty, DIRTY_CAP, MAX_RUN};
pub use event::{
    BadReply, ControlDone, DataRange, Error, Event, Incoming, Problem, Receive, Target, Token,
    Transmit, VolumeInfo,
};
use io::{DataDone, Io};
use plan::{pieces, read_action, write_action, ReadAction, WriteAction};
use reply::{Asked, Want};
pub use retry::RetryPolicy;

/// The smallest transmit buffer: a header and the largest payload the
/// engine writes itself (a 1024-entry index run).
pub const TRANSMIT_BUF_LEN: usize = HEADER_LEN + (MAX_RUN * INDEX_ENTRY_LEN) as usize;
/// The largest payload the engine asks to be read into the caller's
/// scratch buffer ([`Receive::Scratch`]): an inode header, or a run of
/// index entries read back.
pub const SCRATCH_LEN: usize = if inode::HEADER_LEN > (MAX_RUN * INDEX_ENTRY_LEN) as usize {
    inode::HEADER_LEN
} else {
    (MAX_RUN * INDEX_ENTRY_LEN) as usize
};
/// Unsent dirty entries that trigger an index write even while data waits.
const FLUSH_AT: usize = 64;
/// Room for hole notices before planning pauses.
const ZEROS_CAP: usize = 8;
/// Released objects remembered until they are seen gone.
const RECLAIMING_CAP: usize = 64;

/// The VDI name as stored: 1 to 255 bytes.
type Name = Vec<u8, { NAME_LEN - 1 }>;

fn name_from(s: &str) -> Result<Name, Error> {
    check_name(s)?;
    Name::from_slice(s.as_bytes())
        .map_err(|_| Error::Address(crate::error::AddressError::NameTooLong(s.len())))
}

fn tag_from(s: &str) -> Result<Name, Error> {
    if s.is_empty() {
        return Ok(Name::new());
    }
    check_tag(s)?;
    Name::from_slice(s.as_bytes())
        .map_err(|_| Error::Address(crate::error::AddressError::TagTooLong(s.len())))
}

/// The open VDI.
#[derive(Clone, Debug)]
struct Volume {
    name: Name,
    header: InodeHeader,
    object_size: ObjectSize,
    /// Index entries held in the cache.
    count: u32,
    locked: bool,
    /// An index write failed for good: the inode may differ from the
    /// cache, so writes are refused until the VDI is opened again.
    index_unsettled: bool,
}

impl Volume {
    fn vid(&self) -> u32 {
        self.header.vdi_id
    }

    fn info(&self) -> VolumeInfo {
        VolumeInfo {
            vid: self.header.vdi_id,
            size: self.header.vdi_size,
            object_size: self.object_size.bytes(),
            copies: self.header.nr_copies,
            copy_policy: self.header.copy_policy,
            snapshot: self.header.is_snapshot(),
            snap_id: self.header.snap_id,
            parent: self.header.parent_vdi_id,
        }
    }
}

/// What a request in flight was for.
#[derive(Clone, Copy, Debug)]
enum Sent {
    /// A piece of a read.
    Read { token: Token, piece: plan::Piece },
    /// A piece of a write, and what it was sent as.
    Write {
        token: Token,
        piece: plan::Piece,
        action: WriteAction,
    },
    /// A run of index entries, written to the inode of `vid`.
    IndexRun { key: u32, run: dirty::Run, vid: u32 },
    /// Reading a run of entries of `vid`'s inode before writing them.
    IndexCheck { key: u32, run: dirty::Run, vid: u32 },
    /// Before a run that clears entries: is `vid` still writable? So that a
    /// discard never clears a snapshot's entries.
    Precheck { key: u32, run: dirty::Run, vid: u32 },
    /// An object we created under an earlier VID of this VDI whose index
    /// entry did not reach the new working inode: copy it (CREATE with COW,
    /// no payload) into the new VID, whose entry is then written. Writing
    /// the old VID into the new inode would give one object two owners with
    /// one reference, and the cluster would free it under one of them.
    Rehome { key: u32, idx: u32, vid: u32 },
    /// After run `key` landed: is `vid` still writable? A snapshot marks the
    /// old VID read-only before it reads the inode it copies, so if a data
    /// write to `vid` is still accepted after our index write, the copy
    /// will include it. (`snap_ctime` is written last: reading it would
    /// miss a snapshot under way.)
    Verify { key: u32, vid: u32 },
    /// Before re-creating an object this engine released: is it gone yet?
    /// The cluster reclaims released objects asynchronously, and a reclaim
    /// that lands after a new CREATE of the same oid deletes the new data.
    Probe { token: Token, piece: plan::Piece },
    /// Looking the working VDI up again after READONLY.
    Resolve,
    /// The current step of the control operation.
    Control,
}

#[derive(Clone, Copy, Debug)]
struct Inflight {
    id: u32,
    sent: Sent,
    attempt: u8,
    /// Whether the request went out on the current connection (a retry
    /// parked for later is not in flight).
    due: Option<u64>,
    /// What the request on the wire asked, to judge its reply.
    asked: Asked,
}

impl Inflight {
    /// `sent`, to go out at `due` (not on the wire yet).
    fn queued(sent: Sent, attempt: u8, due: u64) -> Inflight {
        Inflight {
            id: 0,
            sent,
            attempt,
            due: Some(due),
            asked: Asked::NONE,
        }
    }
}

/// Re-resolution of the working VDI after READONLY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolve {
    Idle,
    /// GET_VDI_INFO of the name to send or in flight.
    Lookup,
    /// READ_OBJ of the new inode header to send or in flight.
    Header(u32),
}

/// The response whose header arrived and whose payload is being read.
#[derive(Clone, Copy, Debug)]
struct Receiving {
    flight: Inflight,
    response: Response,
    into_scratch: bool,
}

/// The volume engine; `S` holds the cached index (4 bytes per object of the
/// largest VDI to open), `N` is the number of requests outstanding at once.
#[derive(Debug)]
pub struct Engine<S, const N: usize = 16> {
    retry: RetryPolicy,
    now: u64,
    next_id: u32,
    next_key: u32,
    index: S,
    volume: Option<Volume>,
    ios: Vec<Io, N>,
    /// Requests sent, or parked waiting for a retry (`due` set), or for
    /// re-resolution (`due` = u64::MAX).
    flights: Vec<Inflight, N>,
    dirty: Dirty,
    creates_in_flight: usize,
    zeros: Deque<DataRange, ZEROS_CAP>,
    control: Option<Control>,
    control_done: Option<ControlDone>,
    resolve: Resolve,
    /// A VID that answered READONLY: a snapshot, or on its way to become
    /// one. sheep marks the VDI read-only before it copies the inode into
    /// the new working VDI, so a lookup may still name it for a while; it
    /// is not adopted again (0: none).
    readonly_vid: u32,
    /// When the next lookup may go out (after one named `readonly_vid`).
    resolve_due: u64,
    /// Lookups that named `readonly_vid` in a row.
    resolve_waits: u8,
    receiving: Option<Receiving>,
    /// The lookup or header read of a re-resolution, in a slot of its
    /// own: it must go out even when every slot of `flights` holds a write
    /// that waits for it.
    resolving: Option<Inflight>,
    /// Own objects released by a discard whose reclaim may still be under
    /// way on the cluster (oldest first).
    reclaiming: Vec<Oid, RECLAIMING_CAP>,
    /// Requests that failed instead of going out (they could not be built,
    /// or were tried too often), counted so that `poll_transmit` knows to
    /// look again.
    unsendable: u32,
}

/// `due` of a request that waits for re-resolution.
const AFTER_RESOLVE: u64 = u64::MAX;

impl<S: AsRef<[u8]> + AsMut<[u8]>, const N: usize> Engine<S, N> {
    /// An engine whose index cache is `index` (4 bytes per object).
    pub fn new(index: S, retry: RetryPolicy) -> Engine<S, N> {
        Engine {
            retry,
            now: 0,
            next_id: 1,
            next_key: 1,
            index,
            volume: None,
            ios: Vec::new(),
            flights: Vec::new(),
            dirty: Dirty::default(),
            creates_in_flight: 0,
            zeros: Deque::new(),
            control: None,
            control_done: None,
            resolve: Resolve::Idle,
            readonly_vid: 0,
            resolve_due: 0,
            resolve_waits: 0,
            reclaiming: Vec::new(),
            receiving: None,
            resolving: None,
            unsendable: 0,
        }
    }

    // ----- getters -------------------------------------------------------

    /// The open VDI, if any.
    pub fn volume(&self) -> Option<VolumeInfo> {
        self.volume.as_ref().map(Volume::info)
    }

    /// The open VDI's inode header as last read (name, tag, times ...).
    pub fn header(&self) -> Option<&InodeHeader> {
        self.volume.as_ref().map(|v| &v.header)
    }

    /// The cached index entry of object `idx` of the open VDI (0 for
    /// unallocated).
    pub fn entry(&self, idx: u32) -> Option<u32> {
        let vol = self.volume.as_ref()?;
        if idx >= vol.count {
            return None;
        }
        let at = idx as usize * 4;
        Some(LittleEndian::read_u32(&self.index.as_ref()[at..at + 4]))
    }

    /// The index cache, for reading index payloads into
    /// ([`Receive::Index`]).
    pub fn index_bytes_mut(&mut self) -> &mut [u8] {
        self.index.as_mut()
    }

    /// Whether nothing is submitted, in flight or waiting.
    pub fn is_idle(&self) -> bool {
        self.ios.is_empty()
            && self.flights.is_empty()
            && self.resolving.is_none()
            && self.control.is_none()
            && self.dirty.is_empty()
            && self.zeros.is_empty()
            && self.control_done.is_none()
            && self.resolve == Resolve::Idle
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.flights
            .iter()
            .chain(self.resolving.as_ref())
            .filter(|f| f.due.is_none())
            .count()
    }

    fn index_unsettled(&self) -> bool {
        self.volume.as_ref().is_some_and(|v| v.index_unsettled)
    }

    fn set_entry(&mut self, idx: u32, value: u32) {
        let at = idx as usize * 4;
        LittleEndian::write_u32(&mut self.index.as_mut()[at..at + 4], value);
    }

    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    // ----- operations: reads and writes ------------------------------------

    fn submit(
        &mut self,
        token: Token,
        offset: u64,
        len: u64,
        write: bool,
        discard: bool,
    ) -> Result<(), Error> {
        if self.control.as_ref().is_some_and(|c| c.op.quiesces()) {
            return Err(Error::Busy);
        }
        let vol = self.volume.as_ref().ok_or(Error::NotOpen)?;
        if write && vol.header.is_snapshot() {
            return Err(Error::ReadOnly);
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
            write,
            discard,
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
    /// [`Event::Zeros`]; the rest as [`Receive::Data`].
    pub fn read(&mut self, token: Token, offset: u64, len: u64) -> Result<(), Error> {
        self.submit(token, offset, len, false, false)
    }

    /// Write `len` bytes of the caller's data for `token` at `offset`.
    pub fn write(&mut self, token: Token, offset: u64, len: u64) -> Result<(), Error> {
        self.submit(token, offset, len, true, false)
    }

    /// Release the whole objects of `offset..offset + len` (object aligned;
    /// the end may be the end of the VDI): their index entries become 0 and
    /// the cluster frees what no snapshot shares. Reads there give zeros.
    pub fn discard(&mut self, token: Token, offset: u64, len: u64) -> Result<(), Error> {
        self.submit(token, offset, len, true, true)
    }

    // ----- output ----------------------------------------------------------

    /// The next request to send, written into `buf`, or `None` when
    /// nothing can go now. `buf` must hold [`TRANSMIT_BUF_LEN`] bytes;
    /// a smaller one gets [`Error::BufferTooSmall`] with the size needed.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Result<Option<Transmit>, Error> {
        if buf.len() < TRANSMIT_BUF_LEN {
            return Err(Error::BufferTooSmall {
                need: TRANSMIT_BUF_LEN,
            });
        }
        // A request that cannot be built fails its operation instead of
        // going out; then look again. Each failure ends one request, so
        // this ends.
        loop {
            let failed = self.unsendable;
            if let Some(t) = self.next_transmit(buf) {
                return Ok(Some(t));
            }
            if self.unsendable == failed {
                return Ok(None);
            }
        }
    }

    fn next_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        // Retries whose time has come.
        let now = self.now;
        if let Some(pos) = self
            .flights
            .iter()
            .position(|f| f.due.is_some_and(|d| d <= now))
        {
            let flight = self.flights[pos];
            let _ = self.flights.swap_remove(pos);
            return self.send(buf, flight.sent, flight.attempt);
        }
        // Before the check for a free slot: the re-resolution has its own,
        // and the writes that fill the others wait for it.
        if let Some(t) = self.poll_resolve(buf) {
            return Some(t);
        }
        if self.flights.len() >= N {
            return None;
        }
        if let Some(t) = self.poll_control(buf) {
            return Some(t);
        }
        if self.resolve != Resolve::Idle {
            return None;
        }
        if self.dirty.unsent() >= FLUSH_AT {
            if let Some(t) = self.poll_flush(buf) {
                return Some(t);
            }
        }
        if let Some(t) = self.poll_io(buf) {
            return Some(t);
        }
        self.poll_flush(buf)
    }

    /// The next completion or notice.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(z) = self.zeros.pop_front() {
            return Some(Event::Zeros(z));
        }
        if let Some(done) = self.control_done.take() {
            return Some(Event::Control(done));
        }
        if let Some(io) = self
            .ios
            .iter_mut()
            .find(|io| !io.finished && io.data_done == DataDone::Pending)
        {
            io.data_done = DataDone::Told;
            return Some(Event::DataDone { token: io.token });
        }
        let pos = self.ios.iter().position(|io| io.finished)?;
        let io = self.ios.remove(pos);
        Some(Event::Done {
            token: io.token,
            result: io.error.map_or(Ok(()), Err),
        })
    }

    /// When [`Engine::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let lookup = (self.resolve == Resolve::Lookup && self.resolve_due > self.now)
            .then_some(self.resolve_due);
        self.flights
            .iter()
            .chain(self.resolving.as_ref())
            .filter_map(|f| f.due)
            .filter(|&d| d != AFTER_RESOLVE)
            .chain(lookup)
            .min()
    }

    /// Tell the engine the time; retries that are due become sendable.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
    }

    fn poll_io(&mut self, buf: &mut [u8]) -> Option<Transmit> {
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
                if io.discard {
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
                if io.write {
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

    fn poll_flush(&mut self, buf: &mut [u8]) -> Option<Transmit> {
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

    fn poll_resolve(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if self.resolve == Resolve::Idle || self.now < self.resolve_due {
            return None;
        }
        let attempt = match self.resolving {
            None => 0,
            Some(f) if f.due.is_some_and(|d| d <= self.now) => f.attempt,
            Some(_) => return None,
        };
        self.resolving = None;
        self.send(buf, Sent::Resolve, attempt)
    }

    /// Record `flight` as sent or waiting to be sent.
    fn push_flight(&mut self, flight: Inflight) {
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

    fn poll_control(&mut self, buf: &mut [u8]) -> Option<Transmit> {
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

    /// Build the request for `sent`, write it into `buf`, record it. A
    /// request that cannot be built (the state it needs is gone) fails its
    /// operation: nothing is ever dropped silently.
    fn send(&mut self, buf: &mut [u8], sent: Sent, attempt: u8) -> Option<Transmit> {
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
            let flight = Inflight::queued(sent, attempt, self.now);
            self.on_failure(flight, Error::Internal("a request could not be built"));
        }
        None
    }

    fn build(&mut self, buf: &mut [u8], sent: Sent, attempt: u8) -> Option<Transmit> {
        let id = self.take_id();
        let mut sent = sent;
        let (request, inline, data) = match &mut sent {
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
                let req = Request::read_obj(id, oid, piece.offset, piece.len);
                (req, Inline::None, None)
            }
            Sent::Write {
                token,
                piece,
                action,
            } => {
                // Re-plan from the cache: a resend after READONLY or a lost
                // connection becomes a copy-on-write or a plain write.
                let vol = self.volume.as_ref()?;
                let entry = self.entry(piece.idx).unwrap_or(0);
                *action = write_action(Vid::new(vol.vid()).ok()?, entry, piece.idx);
                let copies = vol.header.nr_copies;
                let req = match *action {
                    WriteAction::Write(oid) => {
                        Request::write_obj(id, oid, piece.offset, piece.len, copies)
                    }
                    WriteAction::Create(oid) => {
                        Request::create_and_write(id, oid, None, piece.offset, piece.len, copies)
                    }
                    WriteAction::CreateCow { oid, cow } => Request::create_and_write(
                        id,
                        oid,
                        Some(cow),
                        piece.offset,
                        piece.len,
                        copies,
                    ),
                };
                let data = DataRange {
                    token: *token,
                    range: piece.data_offset..piece.data_offset + u64::from(piece.len),
                };
                (req, Inline::None, Some(data))
            }
            Sent::IndexRun { run, vid, .. } => {
                let vol = self.volume.as_ref()?;
                *vid = vol.vid();
                let range = InodeRange::index_run(run.first, run.count).ok()?;
                let req = Request::write_obj(
                    id,
                    Oid::inode(Vid::new(*vid).ok()?),
                    range.offset,
                    range.len,
                    vol.header.nr_copies,
                );
                (req, Inline::IndexFromCache(*run), None)
            }
            Sent::IndexCheck { run, vid, .. } => {
                *vid = self.volume.as_ref()?.vid();
                let range = InodeRange::index_run(run.first, run.count).ok()?;
                let req = Request::read_obj(
                    id,
                    Oid::inode(Vid::new(*vid).ok()?),
                    range.offset,
                    range.len,
                );
                (req, Inline::None, None)
            }
            Sent::Probe { piece, .. } => {
                let oid = Oid::data(Vid::new(self.volume.as_ref()?.vid()).ok()?, piece.idx);
                (Request::read_obj(id, oid, 0, 1), Inline::None, None)
            }
            Sent::Rehome { idx, vid, .. } => {
                let vol = self.volume.as_ref()?;
                *vid = vol.vid();
                let owner = Vid::new(self.entry(*idx)?).ok()?;
                let oid = Oid::data(Vid::new(*vid).ok()?, *idx);
                let cow = Oid::data(owner, *idx);
                let req = Request::create_and_write(id, oid, Some(cow), 0, 0, vol.header.nr_copies);
                (req, Inline::None, None)
            }
            Sent::Verify { vid, .. } | Sent::Precheck { vid, .. } => {
                // An empty write to a data object of `vid`: READONLY once
                // the VID is a snapshot (or becoming one), else harmless
                // (NO_OBJ if the object does not exist).
                let copies = self.volume.as_ref()?.header.nr_copies;
                let req = Request::write_obj(id, Oid::data(Vid::new(*vid).ok()?, 0), 0, 0, copies);
                (req, Inline::None, None)
            }
            Sent::Resolve => {
                let vol = self.volume.as_ref()?;
                match self.resolve {
                    Resolve::Lookup => (
                        Request::get_vdi_info(id, 0),
                        Inline::NameTag(vol.name.clone(), Name::new()),
                        None,
                    ),
                    Resolve::Header(vid) => {
                        let req = Request::read_obj(
                            id,
                            Oid::inode(Vid::new(vid).ok()?),
                            0,
                            inode::HEADER_LEN as u32,
                        );
                        (req, Inline::None, None)
                    }
                    Resolve::Idle => return None,
                }
            }
            Sent::Control => {
                let (req, inline) = self.control_request(id)?;
                (req, inline, None)
            }
        };
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
            due: None,
            asked: Asked::of(&request),
        });
        Some(Transmit {
            id,
            header_len,
            data,
        })
    }

    fn emit(&self, buf: &mut [u8], request: &Request, inline: Inline) -> Option<usize> {
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

    // ----- input -------------------------------------------------------------

    /// A response header arrived. Says where its payload goes; then read
    /// it there and call [`Engine::handle_payload`].
    ///
    /// An error means the connection is out of step and must be dropped
    /// without reading the payload: then reconnect and call
    /// [`Engine::handle_connection_lost`]. A header that names no request
    /// in flight gives [`Error::UnexpectedReply`]; one that does not fit
    /// its request (another opcode, a payload of the wrong length, a VID
    /// out of range) gives [`Error::BadReply`], and the operation that
    /// owns the request has already ended with that error (its event
    /// follows): nothing the reply claimed is believed.
    pub fn handle_header(&mut self, header: &[u8]) -> Result<Incoming, Error> {
        if let Some(r) = self.receiving.take() {
            // The payload of the previous header never came: its request
            // goes out again, as after a lost connection.
            self.requeue_lost(r.flight);
        }
        let response = Response::parse_bytes(header)?;
        let on_wire = |f: &Inflight| f.id == response.id && f.due.is_none();
        let flight = match self.flights.iter().position(on_wire) {
            Some(pos) => self.flights.swap_remove(pos),
            None => self
                .resolving
                .take_if(|f| on_wire(f))
                .ok_or(Error::UnexpectedReply { id: response.id })?,
        };
        let (want, into) = self.payload_of(&flight);
        if let Err(problem) = reply::check_header(&flight.asked, &response, want) {
            let e = Error::BadReply(flight.asked.bad(problem));
            self.fail_flight(flight, e);
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
    fn payload_of(&self, flight: &Inflight) -> (Want, Receive) {
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
                Expect::Index(range) => (Want::Exact(range.len() as u32), Receive::Index(range)),
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
        if let Some(f) = self.resolving.take_if(|f| f.due.is_none()) {
            self.requeue_lost(f);
        }
        let mut i = 0;
        while i < self.flights.len() {
            if self.flights[i].due.is_none() {
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
    fn requeue_lost(&mut self, flight: Inflight) {
        let mut f = flight;
        if let Sent::Write { action, .. } = f.sent {
            if action.creates() {
                self.creates_in_flight -= 1;
            }
        }
        let attempt = f.attempt.saturating_add(1);
        if attempt > self.retry.max_retries {
            return self.on_failure(f, Error::ConnectionLost);
        }
        if let Sent::IndexRun { key, run, vid } = f.sent {
            // Maybe applied: read back before writing again.
            f.sent = Sent::IndexCheck { key, run, vid };
        }
        if let Sent::Control = f.sent {
            self.control_lost();
        }
        self.push_flight(Inflight::queued(f.sent, attempt, self.now));
    }

    /// `flight` ends with `e` before its reply was used.
    fn fail_flight(&mut self, flight: Inflight, e: Error) {
        if let Sent::Write { action, .. } = flight.sent {
            if action.creates() {
                self.creates_in_flight -= 1;
            }
        }
        self.on_failure(flight, e);
    }

    fn complete(&mut self, flight: Inflight, response: Response, payload: &[u8]) {
        if let Sent::Probe { token, piece } = flight.sent {
            return self.probed(flight, token, piece, response.result);
        }
        if let Sent::Verify { .. } | Sent::Precheck { .. } = flight.sent {
            let readonly = match response.result {
                ResultCode::Success | ResultCode::NoObj => false,
                ResultCode::Readonly => true,
                r if r.class() == ResultClass::Transient => {
                    return match self.retry.backoff(flight.attempt + 1) {
                        Some(wait) => {
                            let due = self.now.saturating_add(wait);
                            self.park(flight, due, flight.attempt + 1)
                        }
                        None => self.on_failure(
                            flight,
                            Error::RetriesExhausted {
                                opcode: response.opcode,
                                result: r,
                            },
                        ),
                    };
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
            ResultClass::Transient => match self.retry.backoff(flight.attempt + 1) {
                Some(wait) => {
                    let due = self.now.saturating_add(wait);
                    let mut flight = flight;
                    if let Sent::IndexRun { key, run, vid } = flight.sent {
                        // It may have been applied: rewriting unchanged
                        // entries would reset their reference counts, so
                        // read them back before writing again.
                        self.dirty.failed_once(key, flight.attempt + 1);
                        flight.sent = Sent::IndexCheck { key, run, vid };
                    }
                    self.park(flight, due, flight.attempt + 1)
                }
                None => self.on_failure(
                    flight,
                    Error::RetriesExhausted {
                        opcode: response.opcode,
                        result,
                    },
                ),
            },
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

    /// Keep a request to send again at `due` (a control step stays "sent":
    /// the parked request carries it).
    /// The answer to a probe of a released object: gone (or given up on
    /// waiting) sends the CREATE; still there waits and asks again.
    fn probed(&mut self, flight: Inflight, token: Token, piece: plan::Piece, result: ResultCode) {
        let Some(vid) = self.volume.as_ref().and_then(|v| Vid::new(v.vid()).ok()) else {
            return;
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
        if waiting {
            if let Some(wait) = self.retry.backoff(flight.attempt + 1) {
                let due = self.now.saturating_add(wait);
                return self.park(flight, due, flight.attempt + 1);
            }
        }
        // Gone, or waited as long as the retry policy allows.
        self.reclaiming.retain(|&o| o != oid);
        let sent = Sent::Write {
            token,
            piece,
            action: WriteAction::Create(oid),
        };
        self.push_flight(Inflight::queued(sent, 0, self.now));
    }

    /// The answer to a Verify or Precheck: whether `vid` had become
    /// read-only.
    fn writable_checked(&mut self, flight: Inflight, readonly: bool) {
        let current_vid = self.volume.as_ref().map(Volume::vid);
        match flight.sent {
            Sent::Precheck { key, run, vid } => {
                let current = current_vid == Some(vid);
                if !readonly && current {
                    let write = Inflight::queued(
                        Sent::IndexRun { key, run, vid },
                        flight.attempt,
                        self.now,
                    );
                    self.push_flight(write);
                } else {
                    self.not_written(key, vid, readonly, current);
                }
            }
            Sent::Verify { key, vid } => {
                let current = current_vid == Some(vid);
                if !readonly && current {
                    let mut done: Vec<Token, DIRTY_CAP> = Vec::new();
                    self.dirty.complete(key, |t| {
                        let _ = done.push(t);
                    });
                    for t in done {
                        if let Some(io) = self.io_mut(t) {
                            io.unindexed -= 1;
                            io.settle();
                        }
                    }
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
    fn not_written(&mut self, key: u32, vid: u32, readonly: bool, current: bool) {
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
    fn verify(&mut self, key: u32, vid: u32) {
        let verify = Inflight::queued(Sent::Verify { key, vid }, 0, self.now);
        self.push_flight(verify);
    }

    fn park(&mut self, flight: Inflight, due: u64, attempt: u8) {
        self.push_flight(Inflight::queued(flight.sent, attempt, due));
    }

    fn on_readonly(&mut self, flight: Inflight, response: &Response) {
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
            self.park(flight, AFTER_RESOLVE, attempt);
        } else if self.resolve != Resolve::Idle {
            self.park(flight, AFTER_RESOLVE, attempt);
        } else {
            // Sent to the old VID before we adopted the new one: resend now.
            self.park(flight, self.now, attempt);
        }
    }

    fn io_mut(&mut self, token: Token) -> Option<&mut Io> {
        self.ios
            .iter_mut()
            .find(|io| io.token == token && !io.finished)
    }

    fn on_success(&mut self, flight: Inflight, response: &Response, payload: &[u8]) {
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

    fn on_failure(&mut self, flight: Inflight, e: Error) {
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
                    if self.flights[i].due == Some(AFTER_RESOLVE) {
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

    /// The index write, check or copy carrying run `key` failed for good:
    /// the operations waiting for its entries fail, and since the inode
    /// may or may not hold them now, the cache cannot be trusted to plan
    /// writes: the open VDI takes no more, and every write not yet done
    /// fails (one planned from a stale entry could be reported done with
    /// its data in an object no index entry names).
    fn index_failed(&mut self, key: u32, e: Error) {
        let mut failed: Vec<Token, DIRTY_CAP> = Vec::new();
        self.dirty.fail(key, |t| {
            let _ = failed.push(t);
        });
        for t in failed {
            if let Some(io) = self.io_mut(t) {
                io.unindexed -= 1;
                io.fail(e);
                io.settle();
            }
        }
        if let Some(vol) = self.volume.as_mut() {
            vol.index_unsettled = true;
        }
        for io in self.ios.iter_mut().filter(|io| io.write && !io.finished) {
            io.fail(Error::IndexUnsettled);
            io.settle();
        }
    }

    fn resolve_advance(&mut self, response: &Response, payload: &[u8]) {
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
                let header = match reply::inode_header(payload, vid) {
                    Ok(h) => h,
                    Err(problem) => {
                        return self.resolve_failed(Error::BadReply(asked.bad(problem)));
                    }
                };
                let shift = self.volume.as_ref().map(|v| v.header.block_size_shift);
                if header.is_hyper() || Some(header.block_size_shift) != shift {
                    // The new working VDI started as a copy of ours: it
                    // cannot have another layout.
                    let problem = Problem::Field {
                        name: "block_size_shift",
                        got: header.block_size_shift.into(),
                        expected: shift.unwrap_or(0).into(),
                    };
                    return self.resolve_failed(Error::BadReply(asked.bad(problem)));
                }
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
                if let Some(vol) = self.volume.as_mut() {
                    // The cached index stays valid: the new working VDI
                    // started with a copy of ours; our own entries now name
                    // the snapshot's objects, so writes become COW.
                    let size = vol.header.vdi_size;
                    vol.header = header;
                    vol.header.vdi_id = vid;
                    vol.header.vdi_size = size.max(header.vdi_size);
                }
                self.resolve = Resolve::Idle;
                self.dirty.requeue_all();
                for f in self.flights.iter_mut() {
                    if f.due == Some(AFTER_RESOLVE) {
                        f.due = Some(self.now);
                    }
                }
            }
            Resolve::Idle => {}
        }
    }

    fn resolve_failed(&mut self, e: Error) {
        self.on_failure(Inflight::queued(Sent::Resolve, 0, self.now), e);
    }
}

/// Small payloads the engine writes after a header. Short-lived, so the
/// size of the name variants does not matter.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
enum Inline {
    None,
    Name(Name),
    NameTag(Name, Name),
    Tag(Name),
    U64(u64),
    IndexFromCache(dirty::Run),
    Repeat { value: u32, count: u32 },
}

/// Where a control step's reply payload goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    Nothing,
    Scratch(u32),
    Index(core::ops::Range<usize>),
}
