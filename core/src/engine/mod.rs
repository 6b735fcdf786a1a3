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
//! - A hyper volume (B-tree index) is the exception: a CREATE's entry goes
//!   into the cache and a range the caller takes with
//!   [`Engine::take_uncommitted`], and the write is done once its data is.
//!   The caller commits the entries to the tree with
//!   [`crate::btree::commit::Commit`] after its writes, as the tool's import
//!   does; until then readers of the cluster do not see the new objects.
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
//! entries below 2^24. Nothing a reply that does not fit claims is used.
//! A header that does not fit its request ("bad reply to READ_OBJ of oid
//! ...: 4096 bytes, expected 65536") comes from a broken node: the caller
//! drops the connection and the request goes out again on the next one,
//! as after a lost connection, until the retry policy's attempts are
//! spent and its operation ends with [`Error::BadReply`]. A payload whose
//! content cannot be (an inode header of another VDI, an index entry out
//! of range) ends the operation that asked for it at once. An index write
//! that fails for good leaves the inode unknown: the open VDI then refuses
//! writes ([`Error::IndexUnsettled`]) until it is opened again.
//!
//! # Liveness
//! Every operation the engine accepts ends in exactly one event
//! ([`Event::Done`] or [`Event::Control`]), success or error, within a
//! bounded number of replies, retries and lost connections:
//! - a transient result, a READONLY that sends a write to a new working
//!   VDI, a lookup that finds the VDI still being snapshotted, an index
//!   write sent again because the VDI changed, a reply header that does
//!   not fit, and a lost connection each count as an attempt, and
//!   [`RetryPolicy::max_retries`] bounds them;
//! - a request that cannot be built fails its operation instead of being
//!   dropped; the lookup of a new working VDI has a slot of its own, so
//!   writes that fill every other slot cannot hold it back;
//! - a reply whose payload never came (a second header, a lost
//!   connection) sends its request again.
//!
//! So whenever an operation is pending, the engine has a request to send,
//! one on the wire, or a time in [`Engine::poll_timeout`]. A reply that
//! never comes is the caller's to time out (drop the connection).
//!
//! # Where each concern lives
//! | file | what | PROTOCOL.md |
//! |---|---|---|
//! | `data.rs` | reads, writes, discards planned from the cached index; reclaim probes | §9.4, §9.7, §12.5-6 |
//! | `writeback.rs` | index entries to the inode in runs, checks, copies, writability probes | §8, §9.4, §12.6 |
//! | `readonly.rs` | READONLY: look the working VDI up again, adopt it | §9.3, §9.5, §12.6.4 |
//! | `control/` | control operations, one at a time, one file each with its step enum (`create.rs`, `open.rs`, `snapshot.rs`, `clone.rs`, `resize.rs`, `delete.rs`, `cluster_default.rs`; `sync.rs` and `exist.rs` shared) | §9.2, §9.3, §9.6, §9.7, §9.8, §12.4, §12.7 |
//! | `request.rs` | every request built in one place | §2, §12.1-2 |
//! | `dispatch.rs` | replies matched, retried, handed to their concern; lost connections | §1, §12.2-3, §12.9 |
//! //! | `flight.rs`, `io.rs`, `dirty.rs`, `plan.rs`, `retry.rs` | what is in flight, submitted, unindexed; object planning; backoff | |

mod control;
mod data;
mod dirty;
mod dispatch;
pub mod event;
mod flight;
mod io;
pub mod plan;
mod readonly;
mod request;
pub mod retry;
mod writeback;

use byteorder::{ByteOrder, LittleEndian};
use heapless::{Deque, Vec};

use crate::address::{check_name, check_tag};
use crate::inode::{self, InodeHeader, INDEX_ENTRY_LEN};
use crate::object_size::ObjectSize;
use crate::oid::Oid;
use crate::wire::{HEADER_LEN, NAME_LEN};

pub use crate::reply::{
    BadReply, DataRange, Error, Incoming, Problem, Receive, Replies, Target, Token,
};
use control::Control;
pub use control::{CreateOptions, SnapshotSelector};
use dirty::{Dirty, DIRTY_CAP, MAX_RUN};
use dispatch::Expect;
pub use event::{ControlDone, Event, Transmit, VolumeInfo};
use flight::{Due, Inflight, Receiving};
use io::{DataDone, Io};
use readonly::Resolve;
use request::Inline;
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
    /// The VID whose lock is held (0: none). It stays that of the VDI
    /// opened until a snapshot behind our back moves it (readonly.rs).
    lock_vid: u32,
    /// An index write failed for good: the inode may differ from the
    /// cache, so writes are refused until the VDI is opened again.
    index_unsettled: bool,
    /// A hyper volume: the lowest and highest index whose entry a CREATE
    /// set in the cache and that the caller has not taken to commit to the
    /// B-tree yet ([`Engine::take_uncommitted`]).
    uncommitted: Option<(u32, u32)>,
    /// A hyper volume's writes are taken: the caller said it commits
    /// them ([`Engine::accept_hyper_writes`]).
    hyper_writes: bool,
}

impl Volume {
    fn vid(&self) -> u32 {
        self.header.vdi_id
    }

    fn widen_uncommitted(&mut self, idx: u32) {
        self.uncommitted = Some(match self.uncommitted {
            None => (idx, idx),
            Some((lo, hi)) => (lo.min(idx), hi.max(idx)),
        });
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
            hyper: self.header.is_hyper(),
        }
    }
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
    /// Requests sent, or waiting to be sent (a retry's time, or the new
    /// working VDI).
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

    /// The open VDI's index entries as cached (4 bytes per object, every
    /// object of the VDI): what a hyper volume's B-tree is rebuilt from
    /// ([`crate::btree::commit`]).
    pub fn index_entries(&self) -> &[u8] {
        let count = self.volume.as_ref().map_or(0, |v| v.count) as usize;
        &self.index.as_ref()[..count * 4]
    }

    /// A hyper volume's entries that writes set and that are not in its
    /// B-tree yet: the lowest and highest index, taken (so the next call
    /// says `None` until more are set). The caller commits them with
    /// [`crate::btree::commit::Commit`] while nothing else writes; until
    /// then the data is on the cluster but no reader finds it.
    pub fn take_uncommitted(&mut self) -> Option<(u32, u32)> {
        self.volume.as_mut()?.uncommitted.take()
    }

    /// Take writes to the open hyper volume, whose entries the caller
    /// commits to its B-tree ([`Engine::take_uncommitted`]); without this
    /// they are refused, so that no caller that does not commit has a
    /// write reported done that no reader will find.
    pub fn accept_hyper_writes(&mut self) {
        if let Some(v) = self.volume.as_mut() {
            v.hyper_writes = true;
        }
    }

    /// Give back what [`Engine::take_uncommitted`] took, after a commit
    /// that failed, so that a later one covers it again.
    pub fn restore_uncommitted(&mut self, lo: u32, hi: u32) {
        if let Some(v) = self.volume.as_mut() {
            v.widen_uncommitted(lo);
            v.widen_uncommitted(hi);
        }
    }

    /// The index cache, for reading index payloads into
    /// ([`Receive::Own`]).
    pub fn index_bytes_mut(&mut self) -> &mut [u8] {
        self.index.as_mut()
    }

    /// Give the engine another index cache (say, a larger one after an
    /// open failed with [`Error::IndexBufferTooSmall`]), and get the old
    /// one back. Refused, with `index` handed back, while a VDI is open or
    /// anything is under way.
    pub fn replace_index(&mut self, index: S) -> Result<S, S> {
        if self.volume.is_some() || self.control.is_some() || !self.is_idle() {
            return Err(index);
        }
        Ok(core::mem::replace(&mut self.index, index))
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

    /// Requests sent and not yet answered (a reply whose header came but
    /// whose payload is still on its way counts as not yet answered).
    pub fn in_flight(&self) -> usize {
        let on_wire = self
            .flights
            .iter()
            .chain(self.resolving.as_ref())
            .filter(|f| f.due.on_wire())
            .count();
        on_wire + usize::from(self.receiving.is_some())
    }

    /// The requests on the wire and their bytes (what a write sends, or
    /// the reply a read asks for): what a lost connection makes the caller
    /// send again.
    pub fn on_wire(&self) -> (u32, u64) {
        self.flights
            .iter()
            .chain(self.resolving.as_ref())
            .filter(|f| f.due.on_wire())
            .chain(self.receiving.as_ref().map(|r| &r.flight))
            .fold((0, 0), |(n, b), f| (n + 1, b + u64::from(f.asked.len)))
    }

    pub(super) fn index_unsettled(&self) -> bool {
        self.volume.as_ref().is_some_and(|v| v.index_unsettled)
    }

    pub(super) fn set_entry(&mut self, idx: u32, value: u32) {
        let at = idx as usize * 4;
        LittleEndian::write_u32(&mut self.index.as_mut()[at..at + 4], value);
    }

    pub(super) fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

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

    pub(super) fn next_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        // Retries whose time has come.
        let now = self.now;
        if let Some(pos) = self.flights.iter().position(|f| f.due.ready(now)) {
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
            .filter_map(|f| match f.due {
                Due::At(t) => Some(t),
                Due::OnWire | Due::AfterResolve => None,
            })
            .chain(lookup)
            .min()
    }

    /// Tell the engine the time; retries that are due become sendable.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
    }
}
