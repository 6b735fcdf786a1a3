//! `export VDI[@SNAP] FILE|-`: copy a VDI or snapshot into a raw image,
//! pipelined. Into a regular file, unallocated and all-zero chunks become
//! holes; into a pipe they are written as zeros, in order.
//!
//! An object the cluster cannot read (NO_OBJ: every copy lost; EIO: the
//! gateway found no copy it could read) ends the export with an error that
//! names the object and its bytes. With `--salvage` its bytes are written
//! as zeros instead, the export goes on, each such object is listed on
//! stderr, and the exit status is 3: scripts can tell a partial copy from
//! a whole one and from a failure.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::ops::Range;

use sheepdog_core::engine::{Error as EngineError, Event};
use sheepdog_core::wire::ResultCode;

use crate::cli::{Cli, IoOpts};
use crate::client::Client;
use crate::error::{self, CliError};
use crate::outfile::OutFile;
use crate::progress::Progress;
use crate::requests;
use crate::session::{self, close, open};
use crate::target::Target;
use crate::transfer::{self, Side, Slots};
use crate::verify;
use sheepdog_core::sparse::is_zero;

enum Output {
    /// A regular file: random access, holes.
    File(OutFile),
    /// A pipe or stdout: in order, zeros written out.
    Stream(Box<dyn Write>),
}

/// What comes next in the output, in order (stream output only).
enum Pending {
    Zeros(u64),
    Slot(usize),
}

/// `export VDI[@SNAP] FILE|-`
pub fn export(
    cli: &Cli,
    vdi: &str,
    file: &str,
    salvage: bool,
    io: &IoOpts,
) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let qd = requests::queue_depth(io)?;
    let request = requests::request_size(io, requests::EXPORT_REQUEST)?;
    let mut client = session::connect(&t, cli)?;
    let info = open(&mut client, &t, io.lock)?;
    // A file this export creates and cannot finish is removed, so that it
    // is never taken for a copy of the VDI.
    let created = file != "-" && std::fs::symlink_metadata(file).is_err();
    let out = if file == "-" {
        Ok(Output::Stream(Box::new(io::BufWriter::with_capacity(
            1 << 20,
            io::stdout().lock(),
        ))))
    } else {
        open_output(file, info.size).map_err(|e| error::file(file, "write", &e))
    };
    let os = u64::from(info.object_size);
    let mut crcs = io.verify.then(|| verify::Crcs::new(os, info.size));
    let res = match out {
        Ok(mut out) => pump(
            cli,
            &mut client,
            &mut out,
            file,
            &t.display(),
            info.size,
            info.object_size,
            qd,
            request,
            salvage,
            crcs.as_mut(),
        ),
        Err(e) => Err(e),
    };
    let res = res.and_then(|lost| {
        if let Some(c) = &crcs {
            let part = requests::part_len(os, request);
            let v = verify::check(&mut client, &t.display(), c, "written out", part, qd)?;
            if !cli.quiet {
                eprintln!(
                    "verified {} objects ({} bytes) of {}: read again, the cluster returned what was written out",
                    v.objects,
                    v.bytes,
                    t.display()
                );
            }
        }
        Ok(lost)
    });
    let closed = close(&mut client, &t.display());
    if res.is_err() && created {
        let _ = std::fs::remove_file(file);
    }
    let lost = res.map_err(|e| {
        e.during(
            &format!("export of {}", t.display()),
            "run the same export again",
        )
    })?;
    if !lost.is_empty() {
        for (idx, r) in &lost {
            eprintln!(
                "sheep-tool: object {idx} of {} (bytes {}..{}) could not be read; written as zeros",
                t.display(),
                r.start,
                r.end
            );
        }
        closed?;
        let bytes: u64 = lost.values().map(|r| r.end - r.start).sum();
        return Err(CliError::partial(format!(
            "exported {} to {file} with {} unreadable object{} ({bytes} bytes) written as zeros",
            t.display(),
            lost.len(),
            if lost.len() == 1 { "" } else { "s" },
        )));
    }
    closed?;
    if !cli.quiet && file != "-" {
        eprintln!("exported {} to {file}", t.display());
    }
    Ok(())
}

/// Whether a read failed because the cluster cannot read the object
/// (rather than because the connection or the request failed).
fn unreadable(e: &EngineError) -> Option<ResultCode> {
    match *e {
        EngineError::Server { result, .. } | EngineError::RetriesExhausted { result, .. }
            if matches!(result, ResultCode::NoObj | ResultCode::Eio) =>
        {
            Some(result)
        }
        _ => None,
    }
}

/// A regular file (new or existing) is sized and written with holes; a
/// device, pipe or socket is written in order.
fn open_output(path: &str, size: u64) -> io::Result<Output> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => {
            let f = std::fs::OpenOptions::new().write(true).open(path)?;
            Ok(Output::Stream(Box::new(io::BufWriter::with_capacity(
                1 << 20,
                f,
            ))))
        }
        _ => Ok(Output::File(OutFile::create(path, size)?)),
    }
}

#[allow(clippy::too_many_arguments)]
fn pump(
    cli: &Cli,
    client: &mut Client,
    out: &mut Output,
    file: &str,
    name: &str,
    size: u64,
    object_size: u32,
    qd: usize,
    request: u64,
    salvage: bool,
    crcs: Option<&mut verify::Crcs>,
) -> Result<BTreeMap<u32, Range<u64>>, CliError> {
    let os = u64::from(object_size);
    let chunk = requests::part_len(os, request);
    let mut slots = Slots::new(qd, chunk as usize);
    let mut progress = Progress::new("export", size, cli.progress, cli.quiet);
    let mut side = Reading {
        out,
        file,
        name,
        size,
        os,
        chunk,
        offset: 0,
        order: VecDeque::new(),
        salvage,
        lost: BTreeMap::new(),
        crcs,
    };
    let res = transfer::run(client, &mut slots, &mut progress, &mut side);
    if let (Output::Stream(w), Ok(())) = (&mut *side.out, &res) {
        w.flush().map_err(|e| error::file(file, "write", &e))?;
    }
    res.map(|()| side.lost)
}

/// The export side of a transfer: reads of allocated objects into slots,
/// written out sparse to a file, or in order (with zeros for holes) to a
/// stream.
struct Reading<'a> {
    out: &'a mut Output,
    file: &'a str,
    name: &'a str,
    size: u64,
    os: u64,
    chunk: u64,
    /// Where the next read starts.
    offset: u64,
    /// What a stream gets next, in order.
    order: VecDeque<Pending>,
    /// Write zeros for objects that cannot be read.
    salvage: bool,
    /// Those objects, by index, and their bytes in the VDI.
    lost: BTreeMap<u32, Range<u64>>,
    /// With --verify: the CRC32 of each object's bytes written out.
    crcs: Option<&'a mut verify::Crcs>,
}

impl Reading<'_> {
    fn werr(&self, e: io::Error) -> CliError {
        error::file(self.file, "write", &e)
    }

    /// The bytes of object `idx` in the VDI.
    fn object_bytes(&self, idx: u32) -> Range<u64> {
        let start = u64::from(idx) * self.os;
        start..(start + self.os).min(self.size)
    }

    /// The read of `range` failed with `e`: salvage it (zeros, and a note
    /// of the object), or the error naming the object.
    fn failed(&mut self, range: Range<u64>, e: EngineError) -> Result<(), CliError> {
        let idx = (range.start / self.os) as u32;
        let Some(result) = unreadable(&e) else {
            return Err(error::engine(self.name, e));
        };
        if !self.salvage {
            let r = self.object_bytes(idx);
            return Err(CliError::msg(format!(
                "cannot read object {idx} of {} (bytes {}..{}): {result} ({}); \
                 --salvage writes zeros for it and goes on",
                self.name,
                r.start,
                r.end,
                result.name(),
            )));
        }
        let seen = self.lost.entry(idx).or_insert(range.clone());
        seen.start = seen.start.min(range.start);
        seen.end = seen.end.max(range.end);
        Ok(())
    }
}

impl Side for Reading<'_> {
    fn submit(
        &mut self,
        client: &mut Client,
        slots: &mut Slots,
        progress: &mut Progress,
    ) -> Result<(), CliError> {
        let os = self.os;
        while self.offset < self.size {
            // Up to a chunk, never across an object's end.
            let obj_end = ((self.offset / os + 1) * os).min(self.size);
            let idx = (self.offset / os) as u32;
            if client.engine.entry(idx).unwrap_or(0) == 0 {
                let n = obj_end - self.offset;
                if let Some(c) = self.crcs.as_deref_mut() {
                    c.add_zeros(self.offset, n);
                }
                // Unallocated: a hole, or zeros in a stream.
                if let Output::Stream(_) = self.out {
                    self.order.push_back(Pending::Zeros(n));
                } else {
                    progress.add(n);
                }
                self.offset += n;
                continue;
            }
            let n = self.chunk.min(obj_end - self.offset);
            let Some(i) = slots.free() else { break };
            client
                .engine
                .read(i as u64, self.offset, n)
                .map_err(|e| error::engine(self.name, e))?;
            let slot = &mut slots.slots[i];
            slot.busy = true;
            slot.token = i as u64;
            slot.len = n as usize;
            slot.offset = self.offset;
            if let Output::Stream(_) = self.out {
                self.order.push_back(Pending::Slot(i));
            }
            self.offset += n;
        }
        Ok(())
    }

    fn exhausted(&self) -> bool {
        self.offset >= self.size
    }

    /// A stream gets what is ready, in order.
    fn flush(&mut self, slots: &mut Slots, progress: &mut Progress) -> Result<(), CliError> {
        let Output::Stream(w) = &mut *self.out else {
            return Ok(());
        };
        while let Some(p) = self.order.front() {
            let written = match *p {
                Pending::Zeros(n) => {
                    progress.add(n);
                    io::copy(&mut io::Read::take(io::repeat(0), n), w).map(|_| ())
                }
                Pending::Slot(i) if slots.slots[i].ready => {
                    let s = &mut slots.slots[i];
                    s.ready = false;
                    progress.add(s.len as u64);
                    w.write_all(&s.buf[..s.len])
                }
                Pending::Slot(_) => break,
            };
            self.order.pop_front();
            if let Err(e) = written {
                // The transfer stops submitting; what is in flight drains.
                self.order.clear();
                return Err(self.werr(e));
            }
        }
        Ok(())
    }

    fn backlog(&self) -> bool {
        !self.order.is_empty()
    }

    fn open(&self, slots: &Slots) -> usize {
        // A read holds its slot until it is Done.
        slots.slots.iter().filter(|s| s.busy).count()
    }

    fn event(
        &mut self,
        ev: Event,
        slots: &mut Slots,
        progress: &mut Progress,
    ) -> Result<(), CliError> {
        match ev {
            Event::Zeros(z) => {
                let s = &mut slots.slots[z.token as usize];
                s.buf[z.range.start as usize..z.range.end as usize].fill(0);
            }
            Event::Done { token, result } => {
                let i = token as usize;
                slots.slots[i].busy = false;
                if let Err(e) = result {
                    let s = &mut slots.slots[i];
                    let range = s.offset..s.offset + s.len as u64;
                    self.failed(range, e)?;
                    // Salvaged: the slot goes out as zeros, and is not
                    // read again.
                    let s = &mut slots.slots[i];
                    s.buf[..s.len].fill(0);
                    if let Some(c) = self.crcs.as_deref_mut() {
                        c.skip((s.offset / self.os) as u32);
                    }
                } else if let Some(c) = self.crcs.as_deref_mut() {
                    let s = &slots.slots[i];
                    c.add(s.offset, &s.buf[..s.len]);
                }
                match &mut *self.out {
                    Output::Stream(_) => slots.slots[i].ready = true,
                    Output::File(f) => {
                        let s = &slots.slots[i];
                        if let Err(e) = write_sparse(f, s.offset, &s.buf[..s.len]) {
                            return Err(self.werr(e));
                        }
                        progress.add(s.len as u64);
                    }
                }
            }
            Event::Control(_) | Event::DataDone { .. } => {}
        }
        Ok(())
    }
}

/// Blocks of this size (aligned in the file) that are all zeros stay holes
/// in a regular file.
const HOLE_BLOCK: u64 = 64 << 10;

/// Write `data` at `offset`, leaving all-zero blocks as holes (the file
/// was sized up front, so they read as zeros). Blocks are aligned to the
/// file, not to `data`, so that where reads are cut makes no difference.
fn write_sparse(f: &mut OutFile, offset: u64, data: &[u8]) -> io::Result<()> {
    // The end (in `data`) of the block that holds data[at].
    let block_end = |at: usize| {
        let next = ((offset + at as u64) / HOLE_BLOCK + 1) * HOLE_BLOCK;
        ((next - offset) as usize).min(data.len())
    };
    let mut at = 0;
    while at < data.len() {
        // Find the next run of non-zero blocks and write it in one go.
        while at < data.len() && is_zero(&data[at..block_end(at)]) {
            at = block_end(at);
        }
        let start = at;
        while at < data.len() && !is_zero(&data[at..block_end(at)]) {
            at = block_end(at);
        }
        if start < at {
            f.write_all_at(&data[start..at], offset + start as u64)?;
        }
    }
    Ok(())
}
