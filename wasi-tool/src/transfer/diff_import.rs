//! Applying an `rbd diff` stream (v1 or v2) or a `dog vdi backup` stream,
//! told apart by their first bytes, to a VDI, as `rbd import-diff` does;
//! the caller then snapshots it as the diff's TO (a dog stream names no
//! snapshots: it is applied without either).
//!
//! The diff's FROM snapshot must be on the VDI (by tag) unless forced. `w`
//! records are written; `z` records release whole objects and write zeros
//! into partial ones that hold data; the size record grows the VDI. Each
//! record is gathered whole before any of it is written (up to
//! [`RECORD_HELD`]; larger ones are written as they arrive), so a stream
//! that breaks leaves the VDI as it was after the last whole record, and
//! the error names the byte where the stream broke.

use std::io::Read;

use sheepdog_core::dog_backup;
use sheepdog_core::engine::ControlDone;
use sheepdog_core::rbd_diff::{Decoder, DiffError, Item, Record, MAX_RECORD_HEADER, V1_MAGIC};
use sheepdog_core::sparse::is_zero;
use sheepdog_core::stream::StreamDecoder;

use super::pipe::Pipe;
use crate::cluster::session::{run, unexpected};
use crate::cluster::{btree, Client};
use crate::error::{self, CliError};
use crate::io::input::read_some;

/// The most bytes of one `w` record held back until it is whole: rbd's
/// largest object (order 25); our own records are at most a read part.
const RECORD_HELD: usize = 32 << 20;
/// Bytes read from the stream at a time.
const READ_LEN: usize = 1 << 20;

/// How a stream is applied.
pub struct Options<'a> {
    /// The stream's name in messages.
    pub file: &'a str,
    /// Apply it even if the VDI lacks the diff's FROM snapshot.
    pub force: bool,
    /// The tags of the VDI's snapshots (FROM must be among them).
    pub snapshots: &'a [String],
    /// Writes in flight.
    pub depth: usize,
    /// Say nothing of what was noticed on the way.
    pub quiet: bool,
}

/// What applying a stream did.
pub struct Applied {
    /// The snapshot the diff names as its TO, for the caller to take (none
    /// for a dog stream, or a hyper volume).
    pub to: Option<String>,
    /// Bytes of data written.
    pub written: u64,
}

/// Apply the stream `input` to the VDI open on `client` (named `name`),
/// as far as it goes: the writes of every whole record are done, and a
/// hyper volume's B-tree holds them, before this returns, whether the
/// stream was whole or not.
pub fn apply(
    client: &mut Client,
    name: &str,
    input: &mut dyn Read,
    opts: &Options<'_>,
) -> Result<Applied, CliError> {
    let info = client
        .engine
        .volume()
        .ok_or_else(|| CliError::msg("internal error: the VDI is not open"))?;
    // A hyper volume's entries are committed to its B-tree below.
    client.engine.accept_hyper_writes();
    let mut a = Apply {
        client: &mut *client,
        pipe: Pipe::new(opts.depth),
        name: name.to_owned(),
        size: info.size,
        os: u64::from(info.object_size),
        held: Vec::new(),
        held_bytes: 0,
        to: None,
        written: 0,
        quiet: opts.quiet,
        hyper: info.hyper,
    };
    let res = a.stream(input, opts.file, opts.force, opts.snapshots);
    if res.is_err() {
        // The record that broke is not applied, not even in part.
        a.held.clear();
        a.held_bytes = 0;
    }
    let drained = a.drain();
    let to = a.to.take();
    let written = a.written;
    let mut res = res.and(drained);
    if res.is_ok() || client.engine.in_flight() == 0 {
        // A hyper volume's new entries go into its B-tree now that every
        // write is done (those written before a failure too).
        let committed = btree::commit(client, name).map(|_| ());
        res = res.and(committed);
    }
    res?;
    let to = match to {
        Some(tag) if info.hyper => {
            if !opts.quiet {
                eprintln!("{name}: hyper volumes have no snapshots; {tag} is not made");
            }
            None
        }
        to => to,
    };
    Ok(Applied { to, written })
}

/// Applying one stream.
struct Apply<'a> {
    client: &'a mut Client,
    /// A hyper volume: zeros are written, not released.
    hyper: bool,
    pipe: Pipe,
    name: String,
    size: u64,
    os: u64,
    /// The current `w` record's data so far, an object's part each:
    /// offset and bytes.
    held: Vec<(u64, Vec<u8>)>,
    held_bytes: usize,
    to: Option<String>,
    written: u64,
    quiet: bool,
}

impl Apply<'_> {
    fn stream(
        &mut self,
        input: &mut dyn Read,
        file: &str,
        force: bool,
        snapshots: &[String],
    ) -> Result<(), CliError> {
        let mut buf = vec![0u8; READ_LEN + MAX_RECORD_HEADER];
        let (mut lo, mut hi) = (0usize, 0usize);
        // Enough of the start to tell the formats apart.
        while hi < V1_MAGIC.len() {
            let n = read_some(input, &mut buf[hi..]).map_err(|e| error::file(file, "read", &e))?;
            if n == 0 {
                break;
            }
            hi += n;
        }
        let mut d = if hi >= dog_backup::HEADER_LEN && dog_backup::is_backup(&buf[..hi]) {
            if !self.quiet {
                eprintln!(
                    "sheep-tool: {file} is a dog vdi backup stream, which names no snapshots: \
                     applied to {} without checking its base, and no snapshot is made",
                    self.name
                );
            }
            Stream::Dog(dog_backup::Decoder::new(self.os as u32))
        } else {
            Stream::Rbd(Decoder::new())
        };
        let mut eof = false;
        let vdi = self.name.clone();
        let broke = |at: u64, e: &dyn std::fmt::Display| {
            CliError::msg(if at == 0 {
                format!("cannot apply {file}: {e}; {vdi} is unchanged")
            } else {
                format!(
                    "the diff {file} is broken at byte {at}: {e}; {vdi} holds what the records before it wrote",
                )
            })
        };
        loop {
            let (used, item) = d.next(&buf[lo..hi]).map_err(|e| broke(d.position(), &e))?;
            lo += used;
            match item {
                Some(Item::Header(_)) | Some(Item::Skipped(_)) => {}
                Some(Item::Record(r)) => {
                    self.flush_held()?;
                    self.record(r, force, snapshots)?;
                }
                Some(Item::Data { offset, bytes }) => {
                    self.check_range(offset, bytes.len() as u64)?;
                    self.hold(offset, bytes)?;
                }
                None if used == 0 => {
                    if d.is_done() {
                        return Ok(());
                    }
                    if eof {
                        let why = d.finish().err().unwrap_or_default();
                        return Err(broke(d.position(), &why));
                    }
                    // More bytes: keep what is left at the front.
                    buf.copy_within(lo..hi, 0);
                    hi -= lo;
                    lo = 0;
                    let n = read_some(input, &mut buf[hi..])
                        .map_err(|e| error::file(file, "read", &e))?;
                    if n == 0 {
                        eof = true;
                    }
                    hi += n;
                }
                None => {}
            }
        }
    }

    /// A record of the stream (its data, if any, follows as `Item::Data`).
    fn record(&mut self, r: Record<'_>, force: bool, snapshots: &[String]) -> Result<(), CliError> {
        match r {
            Record::From(name) => {
                let name = String::from_utf8_lossy(name).into_owned();
                if !force && !snapshots.contains(&name) {
                    return Err(CliError::msg(format!(
                        "the diff starts from snapshot {name}, which {} does not have (--force applies it anyway)",
                        self.name
                    )));
                }
            }
            Record::To(name) => {
                let name = String::from_utf8_lossy(name).into_owned();
                // Refused before anything is written.
                if snapshots.contains(&name) {
                    return Err(CliError::msg(format!(
                        "snapshot exists: {}@{name} (the diff's TO)",
                        self.name
                    )));
                }
                self.to = Some(name);
            }
            Record::Size(s) => self.grow(s)?,
            Record::Write { offset, len } => self.check_range(offset, len)?,
            Record::Zero { offset, len } => self.zero(offset, len)?,
            Record::End => {}
        }
        Ok(())
    }
    fn check_range(&self, offset: u64, len: u64) -> Result<(), CliError> {
        if offset.saturating_add(len) > self.size {
            return Err(CliError::msg(format!(
                "the diff writes bytes {offset}..{} past the end of {} ({} bytes)",
                offset + len,
                self.name,
                self.size
            )));
        }
        Ok(())
    }

    /// The size record: grow the VDI (Sheepdog VDIs cannot shrink).
    fn grow(&mut self, size: u64) -> Result<(), CliError> {
        if size <= self.size {
            return Ok(());
        }
        self.drain()?;
        let name = self.name.clone();
        match run(self.client, &name, |e| e.resize(size))? {
            ControlDone::Resized { size } => self.size = size,
            other => return Err(unexpected(&other)),
        }
        Ok(())
    }

    /// Keep `bytes` (at `offset`) until their record is whole, cut at
    /// object boundaries as they arrive, so that writing them copies
    /// nothing again.
    fn hold(&mut self, offset: u64, bytes: &[u8]) -> Result<(), CliError> {
        let mut at = 0usize;
        while at < bytes.len() {
            let start = offset + at as u64;
            let obj_end = (start / self.os + 1) * self.os;
            let n = ((obj_end - start) as usize).min(bytes.len() - at);
            let piece = &bytes[at..at + n];
            match self.held.last_mut() {
                // The same object, right after what is held of it.
                Some((o, b)) if *o + b.len() as u64 == start && *o / self.os == start / self.os => {
                    b.extend_from_slice(piece)
                }
                _ => {
                    let mut b = Vec::with_capacity((obj_end - start) as usize);
                    b.extend_from_slice(piece);
                    self.held.push((start, b));
                }
            }
            self.held_bytes += n;
            at += n;
        }
        if self.held_bytes >= RECORD_HELD {
            self.flush_held()?;
        }
        Ok(())
    }

    /// Write the data held, an object's part per request.
    fn flush_held(&mut self) -> Result<(), CliError> {
        self.held_bytes = 0;
        for (start, chunk) in std::mem::take(&mut self.held) {
            self.written += chunk.len() as u64;
            if is_zero(&chunk) {
                // Zeros as data (dog's backup of an object TO released):
                // as a `z` record, so that nothing is allocated for them.
                self.zero(start, chunk.len() as u64)?;
            } else {
                self.submit_write(start, chunk)?;
            }
        }
        Ok(())
    }

    fn submit_write(&mut self, start: u64, chunk: Vec<u8>) -> Result<(), CliError> {
        while !self.pipe.has_room() {
            self.collect()?;
        }
        let len = chunk.len() as u64;
        let name = self.name.clone();
        self.pipe
            .submit(self.client, chunk, &name, |e, t| e.write(t, start, len))?;
        Ok(())
    }

    /// A `z` record: release whole objects, zero partial ones that hold
    /// data (an unallocated one reads as zeros already).
    fn zero(&mut self, offset: u64, len: u64) -> Result<(), CliError> {
        self.check_range(offset, len)?;
        let end = offset + len;
        let mut at = offset;
        while at < end {
            let idx = (at / self.os) as u32;
            let obj_start = u64::from(idx) * self.os;
            let obj_end = (obj_start + self.os).min(self.size);
            let n = obj_end.min(end) - at;
            let allocated = self.client.engine.entry(idx).unwrap_or(0) != 0;
            if allocated {
                let whole = at == obj_start && at + n == obj_end;
                while !self.pipe.has_room() {
                    self.collect()?;
                }
                let name = self.name.clone();
                // A hyper volume's tree takes no removals: zeros it is.
                if whole && !self.hyper {
                    self.pipe
                        .submit(self.client, Vec::new(), &name, |e, t| e.discard(t, at, n))?;
                } else {
                    self.submit_write(at, vec![0u8; n as usize])?;
                }
            }
            at += n;
        }
        Ok(())
    }

    fn collect(&mut self) -> Result<(), CliError> {
        for (_, _, result) in self.pipe.wait(self.client)? {
            result.map_err(|e| error::engine(&self.name, e))?;
        }
        Ok(())
    }

    /// Write what is held and wait for everything in flight.
    fn drain(&mut self) -> Result<(), CliError> {
        let mut first = self.flush_held().err();
        while self.pipe.open() > 0 {
            if let Err(e) = self.collect() {
                first.get_or_insert(e);
                if self.pipe.open() > 0
                    && matches!(first, Some(ref e) if e.kind() == error::Kind::Lost)
                {
                    break;
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The two kinds of stream, told apart by their first bytes, read as one:
/// a dog backup record is a `w` record of an rbd diff.
enum Stream {
    Rbd(Decoder),
    Dog(dog_backup::Decoder),
}

impl Stream {
    fn next<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<Item<'a>>), String> {
        match self {
            Stream::Rbd(d) => d.next(input).map_err(|e| match e {
                DiffError::NotADiff => {
                    "neither an rbd diff stream nor a dog vdi backup stream".to_owned()
                }
                e => e.to_string(),
            }),
            Stream::Dog(d) => {
                let (used, item) = d.next(input).map_err(|e| e.to_string())?;
                let item = match item {
                    Some(dog_backup::Item::Record { offset, len, .. }) => {
                        Some(Item::Record(Record::Write {
                            offset,
                            len: u64::from(len),
                        }))
                    }
                    Some(dog_backup::Item::Data { offset, bytes }) => {
                        Some(Item::Data { offset, bytes })
                    }
                    Some(dog_backup::Item::End) => Some(Item::Record(Record::End)),
                    Some(dog_backup::Item::Header { .. }) | None => None,
                };
                Ok((used, item))
            }
        }
    }

    fn position(&self) -> u64 {
        match self {
            Stream::Rbd(d) => d.position(),
            Stream::Dog(d) => d.position(),
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Stream::Rbd(d) => d.is_done(),
            Stream::Dog(d) => d.is_done(),
        }
    }

    fn finish(&self) -> Result<(), String> {
        match self {
            Stream::Rbd(d) => d.finish().map_err(|e| e.to_string()),
            Stream::Dog(d) => d.finish().map_err(|e| e.to_string()),
        }
    }
}
