//! One exported volume: its gateway connection and engine, shared by every
//! NBD connection to it, so that the engine's ordering (one CREATE per
//! object, data before index, conflicting requests in arrival order) holds
//! across connections, which is what makes CAN_MULTI_CONN true.
//!
//! An NBD request becomes one or more engine operations ("parts"): a read
//! or a write is one; a TRIM or WRITE_ZEROES releases the whole objects it
//! covers (one discard) and writes zeros over the parts of objects that
//! hold data, skipping parts of unallocated objects, which read as zeros
//! already (the sparse rule import follows).

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant};

use sheepdog_core::engine::{ControlDone, Error as EngineError, Event, Token, VolumeInfo};
use sheepdog_core::nbd::request::{Command, Request as NbdRequest};
use sheepdog_core::nbd::{cmd_flags, Errno};
use sheepdog_core::wire::ResultCode;

use super::Config;
use crate::cluster::client::{Buffers, Client, QUEUE_MAX};
use crate::cluster::session::{self, MAX_INDEX_CACHE};
use crate::error::{self, CliError};
use crate::io::readiness::Want;
use crate::target::Target;
use crate::transfer::requests;

/// A client connection, by number.
pub type ConnId = u64;

/// The largest zero write, and the zero buffer it comes from.
const ZERO_CHUNK: u64 = 4 << 20;

/// Where the export is in its life.
#[derive(Debug)]
pub enum State {
    /// The VDI is being opened (and locked).
    Opening,
    /// Open.
    Open(VolumeInfo),
    /// Being closed (its lock released).
    Closing,
    /// Closed: remove it.
    Closed,
    /// It could not be opened, or its gateway failed: the reason.
    Failed(CliError),
}

/// An NBD request being carried out.
pub struct Pending {
    /// The connection it came on.
    pub conn: ConnId,
    /// The request.
    pub req: NbdRequest,
    /// A write's payload, or a read's buffer (zeros where holes are).
    pub buf: Vec<u8>,
    /// Ranges of a read (relative to its offset) that are holes.
    pub holes: Vec<Range<u64>>,
    /// The first failure.
    pub error: Option<(Errno, String)>,
    parts_left: usize,
    seq: u64,
}

/// What an engine operation does for its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PartKind {
    Read,
    Write,
    /// A write of zeros from the shared zero buffer.
    Zeros,
    Discard,
}

#[derive(Clone, Copy, Debug)]
struct Part {
    /// The request (its sequence number).
    seq: u64,
    kind: PartKind,
    /// Offset in the volume.
    offset: u64,
    len: u64,
    /// Offset of the part within its request's range.
    rel: u64,
}

/// Contiguous writes sent as one.
struct Merged {
    members: Vec<Token>,
    buf: Vec<u8>,
}

/// One exported VDI or snapshot.
pub struct Export {
    /// The export name (`vm1`, `vm1@snap`).
    pub name: String,
    /// Whether clients may write.
    pub writable: bool,
    /// Where it is in its life.
    pub state: State,
    /// Connections in transmission on it.
    pub users: usize,
    /// Since when nothing uses it (it is closed after a while).
    pub idle_since: Option<Instant>,
    client: Client,
    /// What is being opened: opened again with a larger index cache if a
    /// hyper volume's B-tree needs one.
    opening: Option<(Target, bool)>,
    pending: HashMap<u64, Pending>,
    parts: HashMap<Token, Part>,
    /// Parts not yet given to the engine, in arrival order.
    queue: VecDeque<Token>,
    /// Flushes, waiting for the writes that came before them.
    flushes: Vec<u64>,
    next: u64,
    submitted: usize,
    depth: usize,
    zeros: Vec<u8>,
    /// Parts given to the engine: the objects they touch, and whether
    /// they write.
    flying: HashMap<Token, (u64, u64, bool)>,
    /// Writes joined into one engine write: the parts, and the data.
    merged: HashMap<Token, Merged>,
    /// Objects this export created, by index: bit `b` is set once block
    /// `b` (1/64 of the object) may hold data. sheep creates an object
    /// with zeros around what the CREATE writes, so zeroing the rest of
    /// it needs no request (clients zero what follows their data, as
    /// nbdcopy does).
    fresh: HashMap<u32, u64>,
    /// Buffer bytes held by requests.
    pub held: usize,
    finished: Vec<Pending>,
}

impl Export {
    /// Connect to the cluster's nodes and start opening `target` (locked
    /// if `lock`).
    pub fn open(
        name: String,
        target: Target,
        writable: bool,
        lock: bool,
        cfg: &Config,
    ) -> Result<Export, CliError> {
        let mut client = Client::connect(cfg.gateways.clone(), cfg.quiet)?;
        client
            .engine
            .open(&target.name, target.selector(), lock)
            .map_err(|e| error::engine(&name, e))?;
        Ok(Export {
            name,
            writable,
            state: State::Opening,
            users: 0,
            idle_since: None,
            client,
            opening: Some((target.clone(), lock)),
            pending: HashMap::new(),
            parts: HashMap::new(),
            queue: VecDeque::new(),
            flushes: Vec::new(),
            next: 1,
            submitted: 0,
            depth: cfg.queue_depth.clamp(1, QUEUE_MAX),
            zeros: Vec::new(),
            flying: HashMap::new(),
            merged: HashMap::new(),
            fresh: HashMap::new(),
            held: 0,
            finished: Vec::new(),
        })
    }

    /// The open volume.
    pub fn info(&self) -> Option<VolumeInfo> {
        match self.state {
            State::Open(i) => Some(i),
            _ => None,
        }
    }

    /// The cached index entry of object `idx` is non-zero.
    pub fn allocated(&self, idx: u32) -> bool {
        self.client.engine.entry(idx).is_some_and(|e| e != 0)
    }

    /// Nothing is in flight or waiting.
    pub fn quiet(&self) -> bool {
        self.pending.is_empty() && self.finished.is_empty()
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next;
        self.next += 1;
        s
    }

    /// Carry out a checked READ, WRITE, TRIM, WRITE_ZEROES or FLUSH of
    /// connection `conn`; `buf` is a write's payload (empty otherwise).
    pub fn start(&mut self, conn: ConnId, req: NbdRequest, buf: Vec<u8>) {
        let seq = self.take_seq();
        let buf = match req.command {
            Command::Read => vec![0u8; req.len as usize],
            _ => buf,
        };
        self.held += buf.len();
        let mut p = Pending {
            conn,
            req,
            buf,
            holes: Vec::new(),
            error: None,
            parts_left: 0,
            seq,
        };
        let (offset, len) = (req.offset, u64::from(req.len));
        let plan = match req.command {
            Command::Flush => {
                self.flushes.push(seq);
                Ok(Vec::new())
            }
            _ if len == 0 => Ok(Vec::new()),
            Command::Read => Ok(self.plan_read(offset, len)),
            Command::Write => Ok(self.plan_write(offset, len, &p.buf)),
            Command::Trim | Command::WriteZeroes => self.plan_zero(&req),
            _ => Err(Errno::Inval),
        };
        if let Ok(parts) = &plan {
            self.forget_zeroed(parts);
        }
        match plan {
            Ok(parts) => {
                for (kind, at, n) in parts {
                    let token = self.take_seq();
                    let part = Part {
                        seq,
                        kind,
                        offset: at,
                        len: n,
                        rel: at - offset,
                    };
                    self.parts.insert(token, part);
                    self.queue.push_back(token);
                    p.parts_left += 1;
                }
            }
            Err(errno) => {
                p.error = Some((errno, "zeroing would write data (not fast)".into()));
            }
        }
        let idle = p.parts_left == 0 && req.command != Command::Flush;
        self.pending.insert(seq, p);
        if idle {
            self.finish(seq);
        }
        self.settle_flushes();
    }

    /// The parts of a READ: cut at object boundaries, and a piece larger
    /// than sheep's mmap threshold cut in equal reads below it, as export
    /// cuts objects (see [`requests::EXPORT_REQUEST`]), so that a
    /// client's large reads cost the cluster what export's do. Smaller
    /// pieces go as they are: each request costs sheep as much as a
    /// larger one below the threshold.
    fn plan_read(&self, offset: u64, len: u64) -> Vec<(PartKind, u64, u64)> {
        let os = self.info().map_or(4 << 20, |i| u64::from(i.object_size));
        let end = offset + len;
        let mut parts = Vec::new();
        let mut pos = offset;
        while pos < end {
            let piece_end = ((pos / os + 1) * os).min(end);
            let piece = piece_end - pos;
            let part = requests::part_len(piece, requests::EXPORT_REQUEST);
            while pos < piece_end {
                let n = part.min(piece_end - pos);
                parts.push((PartKind::Read, pos, n));
                pos += n;
            }
        }
        parts
    }

    /// The parts of a TRIM or WRITE_ZEROES: whole objects released, the
    /// parts of objects with data (or about to get some) zeroed; with
    /// NO_HOLE everything zeroed; with FAST_ZERO ENOTSUP if a write is
    /// needed.
    fn plan_zero(&self, req: &NbdRequest) -> Result<Vec<(PartKind, u64, u64)>, Errno> {
        let Some(info) = self.info() else {
            return Err(Errno::Io);
        };
        let zeroes = req.command == Command::WriteZeroes;
        let no_hole = zeroes && req.flags & cmd_flags::NO_HOLE != 0;
        let fast = zeroes && req.flags & cmd_flags::FAST_ZERO != 0;
        let os = u64::from(info.object_size);
        let end = req.offset + u64::from(req.len);
        let mut parts: Vec<(PartKind, u64, u64)> = Vec::new();
        let mut pos = req.offset;
        while pos < end {
            let idx = pos / os;
            let obj_start = idx * os;
            let obj_end = (obj_start + os).min(info.size);
            let piece_end = obj_end.min(end);
            let whole = pos == obj_start && piece_end == obj_end;
            let zero_already = self.fresh.get(&(idx as u32)).is_some_and(|&bits| {
                bits & blocks(os, pos - obj_start, piece_end - pos, false) == 0
            });
            if whole && !no_hole {
                match parts.last_mut() {
                    Some((PartKind::Discard, at, n)) if *at + *n == pos => *n += piece_end - pos,
                    _ => parts.push((PartKind::Discard, pos, piece_end - pos)),
                }
            } else if zero_already {
                // Created here and never written there: zeros already.
            } else if no_hole || self.holds_data(idx as u32) {
                if fast {
                    return Err(Errno::NotSup);
                }
                let mut at = pos;
                while at < piece_end {
                    let n = (piece_end - at).min(ZERO_CHUNK);
                    parts.push((PartKind::Zeros, at, n));
                    at += n;
                }
            }
            pos = piece_end;
        }
        Ok(parts)
    }

    /// The parts of a WRITE: where the object holds nothing there (never
    /// allocated, or created here and not written there), all-zero blocks
    /// at either end of each object's piece are left out and an all-zero
    /// piece is not sent at all, as import does: clients write whole
    /// blocks of zeros around their data (nbdcopy writes 4 MiB requests
    /// with 1 MiB in them).
    fn plan_write(&mut self, offset: u64, len: u64, buf: &[u8]) -> Vec<(PartKind, u64, u64)> {
        let os = self.info().map_or(4 << 20, |i| u64::from(i.object_size));
        let end = offset + len;
        let mut parts: Vec<(PartKind, u64, u64)> = Vec::new();
        let mut pos = offset;
        while pos < end {
            let idx = pos / os;
            let obj_start = idx * os;
            let piece_end = (obj_start + os).min(end);
            let Some(piece) = buf.get((pos - offset) as usize..(piece_end - offset) as usize)
            else {
                break;
            };
            let zero_there = match u32::try_from(idx) {
                Ok(i) => match self.fresh.get(&i) {
                    Some(&bits) => bits & blocks(os, pos - obj_start, piece_end - pos, false) == 0,
                    None => !self.holds_data(i),
                },
                Err(_) => false,
            };
            let (skip, n) = if zero_there {
                sheepdog_core::sparse::trim_zeros(piece)
            } else {
                (0, piece.len())
            };
            if n > 0 {
                let (at, n) = (pos + skip as u64, n as u64);
                self.mark_written(at, n);
                match parts.last_mut() {
                    Some((_, a, l)) if *a + *l == at => *l += n,
                    _ => parts.push((PartKind::Write, at, n)),
                }
            }
            pos = piece_end;
        }
        parts
    }

    /// A write of `offset..offset + len` is planned: objects it creates
    /// become fresh, and the blocks it writes may hold data from now on.
    fn mark_written(&mut self, offset: u64, len: u64) {
        let Some(info) = self.info() else { return };
        let os = u64::from(info.object_size);
        let mut pos = offset;
        while pos < offset + len {
            let idx = pos / os;
            let obj_start = idx * os;
            let piece_end = (obj_start + os).min(offset + len);
            let Ok(i) = u32::try_from(idx) else { return };
            if !self.fresh.contains_key(&i) && !self.holds_data(i) {
                self.fresh.insert(i, 0);
            }
            if let Some(bits) = self.fresh.get_mut(&i) {
                *bits |= blocks(os, pos - obj_start, piece_end - pos, false);
            }
            pos = piece_end;
        }
    }

    /// The objects `offset..offset + len` touches are fresh no more.
    fn forget_fresh(&mut self, offset: u64, len: u64) {
        let os = self.info().map_or(4 << 20, |i| u64::from(i.object_size));
        for idx in offset / os..=(offset + len.max(1) - 1) / os {
            if let Ok(i) = u32::try_from(idx) {
                self.fresh.remove(&i);
            }
        }
    }

    /// Released objects are fresh no more; blocks zeroed whole hold no
    /// data again.
    fn forget_zeroed(&mut self, parts: &[(PartKind, u64, u64)]) {
        let Some(info) = self.info() else { return };
        let os = u64::from(info.object_size);
        for &(kind, at, n) in parts {
            let (first, last) = (at / os, (at + n.max(1) - 1) / os);
            for idx in first..=last {
                let Ok(i) = u32::try_from(idx) else { continue };
                match kind {
                    PartKind::Discard => {
                        self.fresh.remove(&i);
                    }
                    PartKind::Zeros if first == last => {
                        if let Some(bits) = self.fresh.get_mut(&i) {
                            *bits &= !blocks(os, at - idx * os, n, true);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Object `idx` has data, or a write queued or in flight will give it
    /// some.
    fn holds_data(&self, idx: u32) -> bool {
        if self.allocated(idx) {
            return true;
        }
        let Some(info) = self.info() else {
            return true;
        };
        let os = u64::from(info.object_size);
        let (start, end) = (u64::from(idx) * os, (u64::from(idx) + 1) * os);
        self.parts.values().any(|p| {
            matches!(p.kind, PartKind::Write | PartKind::Zeros)
                && p.offset < end
                && start < p.offset + p.len
        })
    }

    /// Flushes whose writes are all done reply now: every write replied to
    /// before is on the cluster already (a write is acknowledged only
    /// after its data and index are), so a flush waits only for the writes
    /// that arrived before it and are still running.
    fn settle_flushes(&mut self) {
        let mut i = 0;
        while i < self.flushes.len() {
            let seq = self.flushes[i];
            let blocked = self
                .pending
                .values()
                .any(|p| p.seq < seq && p.req.command.writes());
            if blocked {
                i += 1;
            } else {
                self.flushes.swap_remove(i);
                self.finish(seq);
            }
        }
    }

    fn finish(&mut self, seq: u64) {
        if let Some(p) = self.pending.remove(&seq) {
            self.finished.push(p);
        }
    }

    /// Requests finished since the last call; their buffers are the
    /// caller's to release.
    pub fn take_finished(&mut self) -> Vec<Pending> {
        let done = std::mem::take(&mut self.finished);
        for p in &done {
            self.held = self.held.saturating_sub(p.buf.len());
        }
        done
    }

    /// What to wait for on the gateway socket.
    pub fn want(&self) -> Want {
        Want {
            fd: self.client.fd(),
            read: self.client.awaiting(),
            write: self.client.wants_write(),
        }
    }

    /// Its gateway connection was said readable: the next pump reads it.
    pub fn readable(&mut self) {
        self.client.readable();
    }

    /// How long the loop may sleep before [`Export::pump`] must run.
    pub fn next_wake(&self) -> Option<Duration> {
        self.client.next_wake()
    }

    /// Give queued parts to the engine, send, receive and hand events
    /// over, as far as that goes without waiting. An error means the
    /// gateway connection failed for good.
    pub fn pump(&mut self) -> Result<(), CliError> {
        self.client.tick()?;
        // Bounded, so that one busy export cannot starve the others.
        for _ in 0..256 {
            self.submit();
            let Export {
                client,
                pending,
                parts,
                merged,
                zeros,
                ..
            } = self;
            let mut bufs = Bufs {
                pending,
                parts,
                merged,
                zeros,
            };
            client.transmit(&bufs)?;
            let got = client.awaiting() && client.read_available(&mut bufs)?;
            let events = self.events();
            if !got && !events {
                break;
            }
        }
        Ok(())
    }

    /// The objects a part touches, and whether it changes them.
    fn footprint(&self, part: &Part) -> (u64, u64, bool) {
        let os = self.info().map_or(4 << 20, |i| u64::from(i.object_size));
        let last = (part.offset + part.len.max(1) - 1) / os;
        (part.offset / os, last, part.kind != PartKind::Read)
    }

    /// Give queued parts to the engine, in arrival order among those that
    /// touch a common object (one of them writing): a part waits while an
    /// earlier one on its objects is queued or in flight, which is what
    /// the engine would make it do anyway. Meanwhile the writes queued
    /// behind it pile up, and contiguous ones within one object go out as
    /// one write, so that a client's 256 KiB writes reach the cluster as
    /// whole objects where they can (one CREATE instead of sixteen
    /// requests one after the other).
    fn submit(&mut self) {
        let mut waiting: Vec<(u64, u64, bool)> = Vec::new();
        let mut i = 0;
        while self.submitted < self.depth && i < self.queue.len() && i < 1024 {
            let token = self.queue[i];
            let Some(part) = self.parts.get(&token).copied() else {
                self.queue.remove(i);
                continue;
            };
            let (first, last, writes) = self.footprint(&part);
            let meets = |&(f, l, w): &(u64, u64, bool)| f <= last && first <= l && (w || writes);
            if waiting.iter().any(meets) || self.flying.values().any(meets) {
                waiting.push((first, last, writes));
                i += 1;
                continue;
            }
            self.queue.remove(i);
            let (token, part) = match part.kind {
                PartKind::Write => self.merge_writes(token, part, i),
                _ => (token, part),
            };
            if part.kind == PartKind::Zeros && self.zeros.len() < part.len as usize {
                self.zeros = vec![0u8; ZERO_CHUNK as usize];
            }
            let e = &mut self.client.engine;
            let r = match part.kind {
                PartKind::Read => e.read(token, part.offset, part.len),
                PartKind::Write | PartKind::Zeros => e.write(token, part.offset, part.len),
                PartKind::Discard => e.discard(token, part.offset, part.len),
            };
            match r {
                Ok(()) => {
                    self.submitted += 1;
                    self.flying.insert(token, (first, last, writes));
                }
                Err(EngineError::Busy) => {
                    self.unmerge(token);
                    return;
                }
                Err(err) => self.engine_done(token, Err(err), false),
            }
        }
    }

    /// An engine operation ended (or could not start): its part, or
    /// every part of a merged write, is done.
    fn engine_done(&mut self, token: Token, result: Result<(), EngineError>, submitted: bool) {
        self.flying.remove(&token);
        if submitted {
            self.submitted = self.submitted.saturating_sub(1);
        }
        match self.merged.remove(&token) {
            Some(m) => {
                for t in m.members {
                    self.part_done(t, result);
                }
            }
            None => self.part_done(token, result),
        }
    }

    /// Join to the write `token` (just taken off the queue, which went on
    /// at `at`) the queued writes that continue it within its object, as
    /// long as nothing else queued before them touches that object.
    fn merge_writes(&mut self, token: Token, part: Part, at: usize) -> (Token, Part) {
        let (obj, _, _) = self.footprint(&part);
        let os = self.info().map_or(4 << 20, |i| u64::from(i.object_size));
        let (obj_start, obj_end) = (obj * os, (obj + 1) * os);
        let (mut start, mut end) = (part.offset, part.offset + part.len);
        // (offset, token): clients send in any order (QEMU's coroutines
        // often in reverse), so the run grows at either end.
        let mut members = vec![(part.offset, token)];
        let mut j = at;
        while j < self.queue.len() && j < at + 256 && end - start < obj_end - obj_start {
            let t = self.queue[j];
            let Some(p) = self.parts.get(&t).copied() else {
                j += 1;
                continue;
            };
            let (f, l, _) = self.footprint(&p);
            let write = p.kind == PartKind::Write && f == obj && l == obj;
            if write && p.offset == end {
                end += p.len;
            } else if write && p.offset + p.len == start {
                start = p.offset;
            } else if f <= obj && obj <= l {
                // Something else on this object came first: keep order.
                break;
            } else {
                j += 1;
                continue;
            }
            members.push((p.offset, t));
            self.queue.remove(j);
        }
        if members.len() == 1 {
            return (token, part);
        }
        members.sort_unstable();
        let members: Vec<Token> = members.into_iter().map(|(_, t)| t).collect();
        let mut buf = Vec::with_capacity((end - start) as usize);
        for m in &members {
            let Some(p) = self.parts.get(m) else { continue };
            let range = p.rel as usize..(p.rel + p.len) as usize;
            if let Some(src) = self.pending.get(&p.seq).and_then(|r| r.buf.get(range)) {
                buf.extend_from_slice(src);
            }
        }
        let merged = self.take_seq();
        let whole = Part {
            seq: 0,
            kind: PartKind::Write,
            offset: start,
            len: end - start,
            rel: 0,
        };
        self.merged.insert(merged, Merged { members, buf });
        (merged, whole)
    }

    /// Put a merged write's members back at the front of the queue.
    fn unmerge(&mut self, token: Token) {
        match self.merged.remove(&token) {
            Some(m) => {
                for t in m.members.into_iter().rev() {
                    self.queue.push_front(t);
                }
            }
            None => self.queue.push_front(token),
        }
    }

    /// Hand the engine's events over; true if there were any.
    fn events(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.client.engine.poll_event() {
            any = true;
            match ev {
                Event::Zeros(z) => {
                    if let Some(part) = self.parts.get(&z.token) {
                        let rel = part.rel;
                        if let Some(p) = self.pending.get_mut(&part.seq) {
                            p.holes.push(z.range.start + rel..z.range.end + rel);
                        }
                    }
                }
                Event::DataDone { .. } => {}
                Event::Done { token, result } => self.engine_done(token, result, true),
                Event::Control(done) => self.control(done),
            }
        }
        any
    }

    fn part_done(&mut self, token: Token, result: Result<(), EngineError>) {
        let Some(part) = self.parts.remove(&token) else {
            return;
        };
        if result.is_err() && matches!(part.kind, PartKind::Write | PartKind::Zeros) {
            // What the object holds there is not known any more.
            self.forget_fresh(part.offset, part.len);
        }
        let Some(p) = self.pending.get_mut(&part.seq) else {
            return;
        };
        if let Err(e) = result {
            if p.error.is_none() {
                let why = error::engine(&self.name, e).to_string();
                p.error = Some((errno(&e), why));
            }
        }
        p.parts_left = p.parts_left.saturating_sub(1);
        if p.parts_left == 0 {
            self.finish(part.seq);
            self.settle_flushes();
        }
    }

    fn control(&mut self, done: ControlDone) {
        if let (State::Opening, ControlDone::Failed(EngineError::IndexBufferTooSmall { need })) =
            (&self.state, &done)
        {
            if let Some((t, lock)) = self.opening.take() {
                if *need <= MAX_INDEX_CACHE
                    && self
                        .client
                        .engine
                        .replace_index(vec![0u8; *need as usize])
                        .is_ok()
                    && self.client.engine.open(&t.name, t.selector(), lock).is_ok()
                {
                    return;
                }
            }
        }
        self.state = match (&self.state, done) {
            (State::Opening, ControlDone::Opened(info)) => State::Open(info),
            (State::Opening, ControlDone::Failed(e)) => State::Failed(error::engine(&self.name, e)),
            (State::Closing, _) => State::Closed,
            // A control outcome nothing asked for: keep the state.
            (_, _) => return,
        };
    }

    /// Release the lock and close, once nothing is in flight.
    pub fn start_close(&mut self) {
        if matches!(self.state, State::Open(_))
            && self.quiet()
            && self.client.engine.close().is_ok()
        {
            self.state = State::Closing;
        }
    }

    /// The gateway failed for good: every request fails with EIO.
    pub fn fail_all(&mut self, why: CliError) {
        let msg = why.to_string();
        let seqs: Vec<u64> = self.pending.keys().copied().collect();
        for seq in seqs {
            if let Some(p) = self.pending.get_mut(&seq) {
                p.error.get_or_insert((Errno::Io, msg.clone()));
            }
            self.finish(seq);
        }
        self.parts.clear();
        self.merged.clear();
        self.flying.clear();
        self.queue.clear();
        self.flushes.clear();
        self.state = State::Failed(why);
    }

    /// Close now, waiting for the cluster (at shutdown).
    pub fn close_now(&mut self) -> Result<(), CliError> {
        match self.state {
            State::Open(_) => session::close(&mut self.client, &self.name)?,
            // Closing when nobody used it any more: the release of its
            // lock is under way; see it through, or the lock stays.
            State::Closing => {
                if let ControlDone::Failed(e) = self.client.control()? {
                    return Err(error::engine(&self.name, e));
                }
            }
            _ => {}
        }
        self.state = State::Closed;
        Ok(())
    }
}

/// The bits of the blocks (1/64 of an object of `os` bytes each) that
/// `at..at + len` (within the object) touches, or with `whole` covers
/// entirely.
fn blocks(os: u64, at: u64, len: u64, whole: bool) -> u64 {
    let block = (os / 64).max(1);
    if len == 0 {
        return 0;
    }
    let (first, last) = if whole {
        (at.div_ceil(block), (at + len) / block)
    } else {
        (at / block, (at + len - 1) / block + 1)
    };
    (first.min(64)..last.min(64)).fold(0, |bits, b| bits | 1 << b)
}

/// The NBD errno for an engine error.
fn errno(e: &EngineError) -> Errno {
    match e {
        EngineError::ReadOnly => Errno::Perm,
        EngineError::OutOfRange { .. } => Errno::Inval,
        EngineError::Server { result, .. } | EngineError::RetriesExhausted { result, .. }
            if *result == ResultCode::NoSpace =>
        {
            Errno::NoSpc
        }
        _ => Errno::Io,
    }
}

/// The buffers of an export's parts, for the client.
struct Bufs<'a> {
    pending: &'a mut HashMap<u64, Pending>,
    parts: &'a HashMap<Token, Part>,
    merged: &'a HashMap<Token, Merged>,
    zeros: &'a [u8],
}

impl Buffers for Bufs<'_> {
    fn data(&self, token: Token) -> &[u8] {
        if let Some(m) = self.merged.get(&token) {
            return &m.buf;
        }
        let Some(part) = self.parts.get(&token) else {
            return &[];
        };
        let range = part.rel as usize..(part.rel + part.len) as usize;
        match part.kind {
            PartKind::Write => self
                .pending
                .get(&part.seq)
                .and_then(|p| p.buf.get(range))
                .unwrap_or(&[]),
            PartKind::Zeros => self.zeros.get(..part.len as usize).unwrap_or(&[]),
            PartKind::Read | PartKind::Discard => &[],
        }
    }

    fn data_mut(&mut self, token: Token) -> &mut [u8] {
        let Some(part) = self.parts.get(&token) else {
            return &mut [];
        };
        let range = part.rel as usize..(part.rel + part.len) as usize;
        match (part.kind, self.pending.get_mut(&part.seq)) {
            (PartKind::Read, Some(p)) => p.buf.get_mut(range).unwrap_or(&mut []),
            _ => &mut [],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::blocks;

    const OS: u64 = 4 << 20;
    const B: u64 = OS / 64;

    #[test]
    fn blocks_touched_and_covered() {
        assert_eq!(blocks(OS, 0, B, false), 1);
        assert_eq!(blocks(OS, 0, B + 1, false), 0b11);
        assert_eq!(blocks(OS, B - 1, 2, false), 0b11);
        assert_eq!(blocks(OS, 0, OS, false), u64::MAX);
        assert_eq!(blocks(OS, 1, B, true), 0, "covers no block whole");
        assert_eq!(blocks(OS, 1, 2 * B, true), 0b10);
        assert_eq!(blocks(OS, 0, OS, true), u64::MAX);
        assert_eq!(blocks(OS, 5, 0, false), 0);
    }
}
