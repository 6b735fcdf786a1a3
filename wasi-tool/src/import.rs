//! `import FILE|- VDI [--size SIZE]`: copy a raw image into a VDI,
//! pipelined and sparse. All-zero chunks are never sent: where the VDI holds
//! nothing they are skipped, where it holds data whole objects are released
//! and partial ones are written with zeros. The engine writes data before
//! index entries, so an interrupted import never shows garbage and running
//! it again completes it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek};

use sheepdog_core::engine::{ControlDone, CreateOptions, Event};
use sheepdog_core::redundancy::Redundancy;

use crate::btree;
use crate::cli::{Cli, IoOpts};
use crate::client::{Client, QUEUE_MAX};
use crate::error::{self, CliError};
use crate::holes;
use crate::progress::Progress;
use crate::requests;
use crate::sendfile::Source;
use crate::session::{self, close, open, run, unexpected};
use crate::size::parse_size;
use crate::target::Target;
use crate::transfer::{self, Side, Slots};
use crate::verify;
use sheepdog_core::sparse::{self, is_zero, trim_zeros, Action, Under};

/// Fill `buf` from `r` until it is full or the input ends.
pub fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `import FILE|- VDI`
pub fn import(
    cli: &Cli,
    file: &str,
    vdi: &str,
    size: Option<&str>,
    io: &IoOpts,
) -> Result<(), CliError> {
    let t = Target::parse_plain(vdi)?;
    let qd = requests::queue_depth(io)?;
    let request = requests::request_size(io, requests::MAX_REQUEST)?;
    let want = size.map(parse_size).transpose()?;
    // Open the input first: no VDI is created when it cannot be read.
    let (mut input, file_len, holes, source): (Box<dyn Read>, Option<u64>, _, _) = if file == "-" {
        (Box::new(io::stdin().lock()), None, None, None)
    } else {
        let f = File::open(file).map_err(|e| error::file(file, "open", &e))?;
        let meta = f.metadata().map_err(|e| error::file(file, "read", &e))?;
        if meta.is_dir() {
            return Err(CliError::msg(format!(
                "cannot read {file}: it is a directory"
            )));
        }
        let len = meta.is_file().then_some(meta.len());
        let holes = len.and_then(|_| holes::Holes::of(&f));
        // --verify hashes every byte sent, so none may bypass the buffers.
        let source = if io.verify { None } else { Source::of(&f) };
        (Box::new(f), len, holes, source)
    };
    let mut client = session::connect(&t, cli)?;
    let info = match open(&mut client, &t, io.lock) {
        Ok(info) => info,
        Err(e) if e.kind() == error::Kind::NoSuchVdi => {
            let size = match (want, file_len) {
                (Some(s), _) => s,
                (None, Some(len)) => len.div_ceil(512) * 512,
                (None, None) => {
                    return Err(CliError::msg(format!(
                        "{} does not exist: importing from stdin needs --size to create it",
                        t.name
                    )))
                }
            };
            if size == 0 {
                return Err(CliError::msg(format!(
                    "cannot create {}: the input is empty",
                    t.name
                )));
            }
            if let Some(len) = file_len.filter(|&l| l > size) {
                return Err(CliError::msg(format!(
                    "VDI too small for the file: {} would be {size} bytes (--size), {file} is {len} bytes",
                    t.name
                )));
            }
            let opts = CreateOptions {
                size,
                redundancy: Redundancy::ClusterDefault,
                block_size_shift: 0,
                prealloc: false,
                hyper: false,
            };
            match run(&mut client, &t.name, |e| e.create(&t.name, opts))? {
                ControlDone::Created { .. } => {}
                other => return Err(unexpected(&other)),
            }
            open(&mut client, &t, io.lock)?
        }
        Err(e) => return Err(e),
    };
    // A hyper volume's entries are committed to its B-tree below.
    client.engine.accept_hyper_writes();
    if let Some(len) = file_len.filter(|&l| l > info.size) {
        let _ = close(&mut client, &t.name);
        return Err(CliError::msg(format!(
            "VDI too small for the file: {} is {} bytes, {file} is {len} bytes",
            t.name, info.size
        )));
    }
    let total = file_len.unwrap_or(info.size);
    let os = u64::from(info.object_size);
    let mut crcs = io.verify.then(|| verify::Crcs::new(os, info.size));
    let res = pump(
        cli,
        &mut client,
        &mut *input,
        holes,
        source.as_ref(),
        file,
        &t.name,
        info.size,
        info.object_size,
        qd,
        request,
        total,
        crcs.as_mut(),
    )
    .and_then(|end| {
        // A hyper volume's new entries go into its B-tree once every
        // write is done.
        let c = btree::commit(&mut client, &t.name)?;
        if c.requests > 0 && !cli.quiet {
            eprintln!(
                "B-tree of {}: {} requests, {} new leaves, depth {}",
                t.name, c.requests, c.leaves_made, c.depth
            );
        }
        Ok(end)
    })
    .and_then(|end| match crcs.as_mut() {
        Some(c) => {
            c.end_at(end);
            let part = requests::part_len(os, requests::EXPORT_REQUEST);
            let v = verify::check(&mut client, &t.name, c, "sent", part, qd)?;
            if !cli.quiet {
                eprintln!(
                    "verified {} objects ({} bytes) of {}: the cluster holds what was sent",
                    v.objects, v.bytes, t.name
                );
            }
            Ok(())
        }
        None => Ok(()),
    });
    if res.is_err() && client.engine.in_flight() == 0 {
        // What was written before the failure is indexed too, so that the
        // volume does not show some of the import and hide the rest.
        let _ = btree::commit(&mut client, &t.name);
    }
    let closed = close(&mut client, &t.name);
    res.map_err(|e| {
        e.during(
            &format!("import of {}", t.name),
            "nothing acknowledged was lost; run the same import again to finish it",
        )
    })?;
    closed?;
    if !cli.quiet {
        eprintln!("imported {file} into {}", t.name);
    }
    Ok(())
}

/// What was read ahead of the chunk being sent: runs of zeros are only
/// counted, the first chunk with data is kept.
enum Ahead {
    Zeros(usize),
    Data(Vec<u8>),
}

/// The input, with chunks read ahead to learn whether a whole object larger
/// than a chunk is zeros, and the holes of a sparse regular file skipped
/// without reading them.
struct Input<'a> {
    read: &'a mut dyn Read,
    ahead: VecDeque<Ahead>,
    holes: Option<holes::Holes>,
    /// A regular file whose dense chunks are sent straight from it.
    source: Option<&'a Source>,
    /// Whether the last chunk taken was dense (left in the file).
    took_dense: bool,
}

impl Input<'_> {
    /// If the next chunk, of up to `want` bytes at `pos` in the file, is
    /// dense and nothing was read ahead, move past it and return its
    /// length: it is sent from the file without being read.
    fn take_dense(&mut self, pos: u64, want: usize) -> io::Result<Option<usize>> {
        self.took_dense = false;
        let Some(src) = self.source else {
            return Ok(None);
        };
        if !self.ahead.is_empty() {
            return Ok(None);
        }
        let Some(n) = src.dense(pos, want)? else {
            return Ok(None);
        };
        // The handle shares the input's position: the next read follows.
        let mut f = src.file();
        f.seek(io::SeekFrom::Current(n as i64))?;
        if let Some(h) = self.holes.as_mut() {
            h.advance(n as u64);
        }
        self.took_dense = true;
        Ok(Some(n))
    }

    /// Fill `buf` from what was read ahead, else from the input. Returns the
    /// bytes filled, and true when they are known to be zeros: a hole, which
    /// is then not copied into `buf` at all.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        match self.ahead.pop_front() {
            Some(Ahead::Zeros(n)) => {
                buf[..n].fill(0);
                Ok((n, true))
            }
            Some(Ahead::Data(v)) => {
                buf[..v.len()].copy_from_slice(&v);
                Ok((v.len(), false))
            }
            None => {
                if let Some(h) = self.holes.as_mut() {
                    if let Some(n) = h.skip_hole(buf.len() as u64)? {
                        return Ok((n as usize, true));
                    }
                }
                let n = read_full(self.read, buf)?;
                if let Some(h) = self.holes.as_mut() {
                    h.advance(n as u64);
                }
                Ok((n, false))
            }
        }
    }

    /// Read ahead up to `limit` bytes in chunks of `chunk` while they are
    /// zeros; returns how many zero bytes follow (the first chunk with data,
    /// if any, is kept for later).
    fn zeros_ahead(&mut self, limit: u64, chunk: u64) -> io::Result<u64> {
        let mut zeros = 0;
        while zeros < limit {
            let want = chunk.min(limit - zeros) as usize;
            let mut buf = vec![0u8; want];
            let (n, hole) = self.fill(&mut buf)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if !hole && !is_zero(&buf) {
                self.ahead.push_back(Ahead::Data(buf));
                break;
            }
            self.ahead.push_back(Ahead::Zeros(n));
            zeros += n as u64;
            if n < want {
                break;
            }
        }
        Ok(zeros)
    }
}

#[allow(clippy::too_many_arguments)]
fn pump(
    cli: &Cli,
    client: &mut Client,
    input: &mut dyn Read,
    holes: Option<holes::Holes>,
    source: Option<&Source>,
    file: &str,
    name: &str,
    vdi_size: u64,
    object_size: u32,
    qd: usize,
    request: u64,
    total: u64,
    crcs: Option<&mut verify::Crcs>,
) -> Result<u64, CliError> {
    let os = u64::from(object_size);
    let chunk = requests::part_len(os, request);
    let mut slots = Slots::new(qd, chunk as usize);
    slots.source = source.and_then(|s| s.file().try_clone().ok());
    let mut progress = Progress::new("import", total, cli.progress, cli.quiet);
    let mut side = Writing {
        input: Input {
            read: input,
            ahead: VecDeque::new(),
            holes,
            source,
            took_dense: false,
        },
        file,
        name,
        vdi_size,
        os,
        chunk,
        offset: 0,
        eof: false,
        open_ops: 0,
        next_token: 0,
        crcs,
    };
    transfer::run(client, &mut slots, &mut progress, &mut side)?;
    Ok(side.offset)
}

/// The import side of a transfer: chunks of the input into slots, each
/// written, released or skipped as the sparse rule says.
struct Writing<'a, 'r> {
    input: Input<'r>,
    file: &'a str,
    name: &'a str,
    vdi_size: u64,
    os: u64,
    chunk: u64,
    /// Where the next chunk goes in the VDI.
    offset: u64,
    /// The input ended.
    eof: bool,
    /// Writes not yet Done, some of them past their data and only waiting
    /// for their index entries (their slots are free again).
    open_ops: usize,
    next_token: u64,
    /// With --verify: the CRC32 of each object's bytes.
    crcs: Option<&'a mut verify::Crcs>,
}

impl Side for Writing<'_, '_> {
    fn submit(
        &mut self,
        client: &mut Client,
        slots: &mut Slots,
        progress: &mut Progress,
    ) -> Result<(), CliError> {
        while !self.eof && self.open_ops < QUEUE_MAX {
            let Some(i) = slots.free() else { break };
            let slot = &mut slots.slots[i];
            // Up to a chunk, never across an object's end.
            let obj_end = ((self.offset / self.os + 1) * self.os).min(self.vdi_size);
            let want = self.chunk.min(obj_end.saturating_sub(self.offset)) as usize;
            let n = if want == 0 {
                // The VDI is full: anything more in the input is too much.
                let mut probe = [0u8; 1];
                match self.input.fill(&mut probe) {
                    Ok((0, _)) => (0, false),
                    Ok(_) => {
                        return Err(CliError::msg(format!(
                            "VDI too small for the input: {} is {} bytes",
                            self.name, self.vdi_size
                        )));
                    }
                    Err(e) => {
                        return Err(error::file(self.file, "read", &e));
                    }
                }
            } else {
                let got = match self.input.take_dense(self.offset, want) {
                    Ok(Some(n)) => Ok((n, false)),
                    Ok(None) => self.input.fill(&mut slot.buf[..want]),
                    Err(e) => Err(e),
                };
                match got {
                    Ok(got) => got,
                    Err(e) => {
                        return Err(error::file(self.file, "read", &e));
                    }
                }
            };
            let (n, hole) = n;
            // Dense, and still in the file: sent from there as it is.
            slot.in_file = self.input.took_dense;
            if n == 0 {
                self.eof = true;
                break;
            }
            if n < want {
                self.eof = true;
            }
            let token = self.next_token;
            let idx = (self.offset / self.os) as u32;
            let mut len = n as u64;
            let zero = !slot.in_file && (hole || is_zero(&slot.buf[..n]));
            let allocated = client.engine.entry(idx).is_some_and(|e| e != 0);
            // A hyper volume's objects are not released (its B-tree takes
            // no removals): zeros over data are written as zeros.
            let hyper = client.engine.volume().is_some_and(|v| v.hyper);
            // A zero chunk at the start of an allocated object larger than a
            // chunk: look ahead to see whether the whole object is zeros.
            if zero
                && !hyper
                && allocated
                && self.offset % self.os == 0
                && len < obj_end - self.offset
                && !self.eof
            {
                match self
                    .input
                    .zeros_ahead(obj_end - self.offset - len, self.chunk)
                {
                    Ok(more) if self.offset + len + more == obj_end => {
                        self.input.ahead.clear();
                        len += more;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(error::file(self.file, "read", &e));
                    }
                }
            }
            if let Some(c) = self.crcs.as_deref_mut() {
                if zero {
                    c.add_zeros(self.offset, len);
                } else {
                    c.add(self.offset, &slot.buf[..n]);
                }
            }
            let whole_object = self.offset % self.os == 0 && self.offset + len == obj_end;
            slot.start = 0;
            let (mut sent_at, mut sent_len) = (self.offset, len);
            let under = Under {
                allocated,
                whole_object,
            };
            let submitted = match sparse::decide(zero, under) {
                Action::Write { trim } => {
                    // Into an unallocated object the CREATE zeroes what it
                    // is not given. (A chunk sent from the file as it is
                    // was not looked at.)
                    let (skip, keep) = if trim && !slot.in_file {
                        trim_zeros(&slot.buf[..n])
                    } else {
                        (0, n)
                    };
                    slot.start = skip;
                    (sent_at, sent_len) = (self.offset + skip as u64, keep as u64);
                    Some(client.engine.write(token, sent_at, sent_len))
                }
                Action::Skip => None,
                Action::Release if !hyper => Some(client.engine.discard(token, self.offset, len)),
                Action::Release | Action::WriteZeros => {
                    if hole {
                        // A hole was not copied into the buffer.
                        slot.buf[..n].fill(0);
                    }
                    Some(client.engine.write(token, self.offset, len))
                }
            };
            match submitted {
                None => progress.add(len),
                Some(Ok(())) => {
                    slot.busy = true;
                    slot.len = sent_len as usize;
                    slot.offset = sent_at;
                    slot.token = token;
                    self.next_token += 1;
                    self.open_ops += 1;
                    // Zeros trimmed off count as done now; what is sent
                    // counts when it is on the cluster.
                    progress.add(len - sent_len.min(len));
                    // Send it now rather than after every slot is full.
                    client.transmit(slots)?;
                }
                Some(Err(e)) => {
                    return Err(error::engine(self.name, e));
                }
            }
            self.offset += len;
        }
        Ok(())
    }

    fn exhausted(&self) -> bool {
        self.eof
    }

    fn open(&self, _slots: &Slots) -> usize {
        self.open_ops
    }

    fn event(
        &mut self,
        ev: Event,
        slots: &mut Slots,
        progress: &mut Progress,
    ) -> Result<(), CliError> {
        match ev {
            // The data is on the cluster: the buffer can take the next
            // chunk while the index entries follow.
            Event::DataDone { token } => {
                if let Some(slot) = slots.of(token) {
                    slot.busy = false;
                    progress.add(slot.len as u64);
                }
            }
            Event::Done { token, result } => {
                self.open_ops -= 1;
                if let Some(slot) = slots.of(token) {
                    slot.busy = false;
                    progress.add(slot.len as u64);
                }
                result.map_err(|e| error::engine(self.name, e))?;
            }
            Event::Zeros(_) | Event::Control(_) => {}
        }
        Ok(())
    }
}
