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

use sheepdog_core::engine::{Error as EngineError, Event, VolumeInfo};
use sheepdog_core::wire::ResultCode;

use crate::cli::{Global, IoOpts};
use crate::cluster::session::{close, open};
use crate::cluster::Client;
use crate::error::{self, CliError};
use crate::io::output::{write_sparse, Output, OutputPath};
use crate::target::Target;
use crate::transfer::pipeline::{self, Side, Slots};
use crate::transfer::progress::Progress;
use crate::transfer::{requests, verify};

/// Arguments of `export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// VDI[@SNAP]
    vdi: String,
    /// Output file, or - for stdout
    file: String,
    /// Write zeros where the cluster cannot read an object (it has
    /// lost it, or answers EIO), list each on stderr, go on, and exit
    /// with status 3
    #[arg(long)]
    salvage: bool,
    #[command(flatten)]
    io: IoOpts,
}

/// What comes next in the output, in order (stream output only).
enum Pending {
    Zeros(u64),
    Slot(usize),
}

/// Objects that could not be read and were written as zeros, by index,
/// with their bytes in the VDI.
type Lost = BTreeMap<u32, Range<u64>>;

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let t = Target::parse(&a.vdi)?;
    let qd = a.io.queue_depth()?;
    let request = a.io.request_size(requests::EXPORT_REQUEST)?;
    let mut client = g.connect(&t)?;
    let info = open(&mut client, &t, a.io.lock)?;
    let path = OutputPath::new(&a.file);
    let job = Job {
        g,
        name: t.display(),
        path: &path,
        info,
        qd,
        request,
        salvage: a.salvage,
    };
    let res = job.run(&mut client, a.io.verify);
    let closed = close(&mut client, &t.display());
    if res.is_err() {
        // A file this export made and cannot finish is removed, so that
        // it is never taken for a copy of the VDI.
        path.abandon();
    }
    let lost = res.map_err(|e| {
        e.during(
            &format!("export of {}", t.display()),
            "run the same export again",
        )
    })?;
    if !lost.is_empty() {
        closed?;
        return Err(job.salvaged(&lost));
    }
    closed?;
    if !path.is_stdout() {
        g.note(format!("exported {} to {}", t.display(), a.file));
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

/// One export: what is read, where it goes, how it is cut.
struct Job<'a> {
    g: &'a Global,
    name: String,
    path: &'a OutputPath,
    info: VolumeInfo,
    qd: usize,
    request: u64,
    salvage: bool,
}

impl Job<'_> {
    /// Copy the open VDI out, then with `verify` read it again; returns
    /// the objects salvaged.
    fn run(&self, client: &mut Client, verify: bool) -> Result<Lost, CliError> {
        let mut out = self.path.image(self.info.size)?;
        let os = u64::from(self.info.object_size);
        let mut crcs = verify.then(|| verify::Crcs::new(os, self.info.size));
        let lost = self.copy(client, &mut out, crcs.as_mut())?;
        if let Some(c) = &crcs {
            let part = requests::part_len(os, self.request);
            let v = verify::check(client, &self.name, c, "written out", part, self.qd)?;
            self.g.note(format!(
                "verified {} objects ({} bytes) of {}: read again, the cluster returned what was written out",
                v.objects, v.bytes, self.name
            ));
        }
        Ok(lost)
    }

    /// The pipeline from the VDI into `out`.
    fn copy(
        &self,
        client: &mut Client,
        out: &mut Output,
        crcs: Option<&mut verify::Crcs>,
    ) -> Result<Lost, CliError> {
        let os = u64::from(self.info.object_size);
        let chunk = requests::part_len(os, self.request);
        let mut slots = Slots::new(self.qd, chunk as usize);
        let size = self.info.size;
        let mut progress = Progress::new("export", size, self.g.progress, self.g.quiet);
        let mut side = Reading {
            out,
            path: self.path,
            name: &self.name,
            size,
            os,
            chunk,
            offset: 0,
            order: VecDeque::new(),
            salvage: self.salvage,
            lost: BTreeMap::new(),
            crcs,
        };
        let res = pipeline::run(client, &mut slots, &mut progress, &mut side);
        if let (Output::Stream(w), Ok(())) = (&mut *side.out, &res) {
            w.flush().map_err(|e| self.path.error(&e))?;
        }
        res.map(|()| side.lost)
    }

    /// The error of an export that wrote zeros for `lost` objects, each
    /// listed on stderr first.
    fn salvaged(&self, lost: &Lost) -> CliError {
        for (idx, r) in lost {
            eprintln!(
                "sheep-tool: object {idx} of {} (bytes {}..{}) could not be read; written as zeros",
                self.name, r.start, r.end
            );
        }
        let bytes: u64 = lost.values().map(|r| r.end - r.start).sum();
        CliError::partial(format!(
            "exported {} to {} with {} unreadable object{} ({bytes} bytes) written as zeros",
            self.name,
            self.path.path(),
            lost.len(),
            if lost.len() == 1 { "" } else { "s" },
        ))
    }
}

/// The export side of a transfer: reads of allocated objects into slots,
/// written out sparse to a file, or in order (with zeros for holes) to a
/// stream.
struct Reading<'a> {
    out: &'a mut Output,
    path: &'a OutputPath,
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
    lost: Lost,
    /// With --verify: the CRC32 of each object's bytes written out.
    crcs: Option<&'a mut verify::Crcs>,
}

impl Reading<'_> {
    fn werr(&self, e: io::Error) -> CliError {
        self.path.error(&e)
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
