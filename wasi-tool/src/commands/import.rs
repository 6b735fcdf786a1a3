//! `import FILE|- VDI [--size SIZE]`: copy a raw image into a VDI,
//! pipelined and sparse. All-zero chunks are never sent: where the VDI holds
//! nothing they are skipped, where it holds data whole objects are released
//! and partial ones are written with zeros. The engine writes data before
//! index entries, so an interrupted import never shows garbage and running
//! it again completes it.

use sheepdog_core::engine::{ControlDone, CreateOptions, Event, VolumeInfo};
use sheepdog_core::redundancy::Redundancy;
use sheepdog_core::sparse::{self, is_zero, trim_zeros, Action, Under};

use crate::cli::{Global, IoOpts};
use crate::cluster::client::QUEUE_MAX;
use crate::cluster::session::{close, open, run, unexpected};
use crate::cluster::{btree, Client};
use crate::error::{self, CliError, Kind};
use crate::io::input::{self, Image};
use crate::size::parse_size;
use crate::target::Target;
use crate::transfer::pipeline::{self, Side, Slot, Slots};
use crate::transfer::progress::Progress;
use crate::transfer::reader::Input;
use crate::transfer::{requests, verify};

/// Arguments of `import`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Raw image file, or - for stdin
    file: String,
    /// VDI name
    vdi: String,
    /// Size of the VDI to create (default: the file's size rounded up to 512 bytes)
    #[arg(long)]
    size: Option<String>,
    #[command(flatten)]
    io: IoOpts,
}

pub fn exec(g: &Global, a: &Args) -> Result<(), CliError> {
    let t = Target::parse_plain(&a.vdi)?;
    let qd = a.io.queue_depth()?;
    let request = a.io.request_size(requests::MAX_REQUEST)?;
    let want = a.size.as_deref().map(parse_size).transpose()?;
    // Open the input first: no VDI is created when it cannot be read.
    // --verify hashes every byte sent, so none may bypass the buffers.
    let image = input::image(&a.file, !a.io.verify)?;
    let mut client = g.connect(&t)?;
    let info = open_or_create(&mut client, &t, a, want, image.len)?;
    // A hyper volume's entries are committed to its B-tree below.
    client.engine.accept_hyper_writes();
    if let Some(len) = image.len.filter(|&l| l > info.size) {
        let _ = close(&mut client, &t.name);
        return Err(CliError::msg(format!(
            "VDI too small for the file: {} is {} bytes, {} is {len} bytes",
            t.name, info.size, a.file
        )));
    }
    let job = Job {
        g,
        name: &t.name,
        file: &a.file,
        info,
        qd,
        request,
    };
    let res = job.run(&mut client, image, a.io.verify);
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
    g.note(format!("imported {} into {}", a.file, t.name));
    Ok(())
}

/// Open the VDI `t`; create it first when it does not exist, of `want`
/// bytes or the input's length rounded up to a sector.
fn open_or_create(
    client: &mut Client,
    t: &Target,
    a: &Args,
    want: Option<u64>,
    file_len: Option<u64>,
) -> Result<VolumeInfo, CliError> {
    match open(client, t, a.io.lock) {
        Err(e) if e.kind() == Kind::NoSuchVdi => {}
        opened => return opened,
    }
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
            "VDI too small for the file: {} would be {size} bytes (--size), {} is {len} bytes",
            t.name, a.file
        )));
    }
    let opts = CreateOptions {
        size,
        redundancy: Redundancy::ClusterDefault,
        block_size_shift: 0,
        prealloc: false,
        hyper: false,
    };
    match run(client, &t.name, |e| e.create(&t.name, opts))? {
        ControlDone::Created { .. } => {}
        other => return Err(unexpected(&other)),
    }
    open(client, t, a.io.lock)
}

/// One import: where it goes and how it is cut.
struct Job<'a> {
    g: &'a Global,
    name: &'a str,
    file: &'a str,
    info: VolumeInfo,
    qd: usize,
    request: u64,
}

impl Job<'_> {
    /// Copy `image` into the open VDI, commit a hyper volume's B-tree,
    /// and with `verify` read every object back.
    fn run(&self, client: &mut Client, mut image: Image, verify: bool) -> Result<(), CliError> {
        let os = u64::from(self.info.object_size);
        let mut crcs = verify.then(|| verify::Crcs::new(os, self.info.size));
        let end = self.copy(client, &mut image, crcs.as_mut())?;
        // A hyper volume's new entries go into its B-tree once every write
        // is done.
        let c = btree::commit(client, self.name)?;
        if c.requests > 0 {
            self.g.note(format!(
                "B-tree of {}: {} requests, {} new leaves, depth {}",
                self.name, c.requests, c.leaves_made, c.depth
            ));
        }
        if let Some(c) = crcs.as_mut() {
            c.end_at(end);
            let part = requests::part_len(os, requests::EXPORT_REQUEST);
            let v = verify::check(client, self.name, c, "sent", part, self.qd)?;
            self.g.note(format!(
                "verified {} objects ({} bytes) of {}: the cluster holds what was sent",
                v.objects, v.bytes, self.name
            ));
        }
        Ok(())
    }

    /// The pipeline from the input into the VDI; returns where the input
    /// ended.
    fn copy(
        &self,
        client: &mut Client,
        image: &mut Image,
        crcs: Option<&mut verify::Crcs>,
    ) -> Result<u64, CliError> {
        let os = u64::from(self.info.object_size);
        let chunk = requests::part_len(os, self.request);
        let mut slots = Slots::new(self.qd, chunk as usize);
        slots.source = image
            .source
            .as_ref()
            .and_then(|s| s.file().try_clone().ok());
        let total = image.len.unwrap_or(self.info.size);
        let mut progress = Progress::new("import", total, self.g.progress, self.g.quiet);
        let mut side = Writing {
            input: Input::new(&mut *image.read, image.holes.take(), image.source.as_ref()),
            file: self.file,
            name: self.name,
            vdi_size: self.info.size,
            os,
            chunk,
            offset: 0,
            eof: false,
            open_ops: 0,
            next_token: 0,
            crcs,
        };
        pipeline::run(client, &mut slots, &mut progress, &mut side)?;
        Ok(side.offset)
    }
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

/// The next chunk of the input, as it came.
struct Chunk {
    /// Bytes taken from the input.
    n: usize,
    /// A hole: known to be zeros, and not copied into the slot.
    hole: bool,
}

impl Writing<'_, '_> {
    fn read_error(&self, e: &std::io::Error) -> CliError {
        error::file(self.file, "read", e)
    }

    /// The end of the object `offset` is in (never past the VDI's end).
    fn object_end(&self) -> u64 {
        ((self.offset / self.os + 1) * self.os).min(self.vdi_size)
    }

    /// Take up to `want` bytes of the input into `slot` (or leave them in
    /// the file, when they are dense and can be sent from there). With
    /// `want` 0 the VDI is full: anything more in the input is too much.
    fn take(&mut self, slot: &mut Slot, want: usize) -> Result<Chunk, CliError> {
        if want == 0 {
            let mut probe = [0u8; 1];
            return match self.input.fill(&mut probe) {
                Ok((0, _)) => Ok(Chunk { n: 0, hole: false }),
                Ok(_) => Err(CliError::msg(format!(
                    "VDI too small for the input: {} is {} bytes",
                    self.name, self.vdi_size
                ))),
                Err(e) => Err(self.read_error(&e)),
            };
        }
        let got = match self.input.take_dense(self.offset, want) {
            Ok(Some(n)) => Ok((n, false)),
            Ok(None) => self.input.fill(&mut slot.buf[..want]),
            Err(e) => Err(e),
        };
        let (n, hole) = got.map_err(|e| self.read_error(&e))?;
        Ok(Chunk { n, hole })
    }

    /// A zero chunk at the start of an allocated object larger than a
    /// chunk: look ahead, and return the length of the zeros from here to
    /// the object's end if the whole object is zeros, else `len`.
    fn whole_zero_object(&mut self, len: u64, obj_end: u64) -> Result<u64, CliError> {
        let more = self
            .input
            .zeros_ahead(obj_end - self.offset - len, self.chunk)
            .map_err(|e| self.read_error(&e))?;
        if self.offset + len + more == obj_end {
            self.input.drop_ahead();
            return Ok(len + more);
        }
        Ok(len)
    }

    /// Send the chunk in `slot` (`n` bytes of input, `len` of the VDI at
    /// `offset`) as the sparse rule says: a write, a release, or nothing.
    /// Returns the bytes that go on the wire, at what offset, or `None`
    /// when nothing does.
    fn submit_chunk(
        &mut self,
        client: &mut Client,
        slot: &mut Slot,
        token: u64,
        (n, len, zero, hole): (usize, u64, bool, bool),
    ) -> Result<Option<(u64, u64)>, CliError> {
        let idx = (self.offset / self.os) as u32;
        let allocated = client.engine.entry(idx).is_some_and(|e| e != 0);
        // A hyper volume's objects are not released (its B-tree takes no
        // removals): zeros over data are written as zeros.
        let hyper = client.engine.volume().is_some_and(|v| v.hyper);
        let whole_object = self.offset % self.os == 0 && self.offset + len == self.object_end();
        slot.start = 0;
        let under = Under {
            allocated,
            whole_object,
        };
        let (at, sent, submitted) = match sparse::decide(zero, under) {
            Action::Write { trim } => {
                // Into an unallocated object the CREATE zeroes what it is
                // not given. (A chunk sent from the file as it is was not
                // looked at.)
                let (skip, keep) = if trim && !slot.in_file {
                    trim_zeros(&slot.buf[..n])
                } else {
                    (0, n)
                };
                slot.start = skip;
                let at = self.offset + skip as u64;
                (at, keep as u64, client.engine.write(token, at, keep as u64))
            }
            Action::Skip => return Ok(None),
            Action::Release if !hyper => {
                let d = client.engine.discard(token, self.offset, len);
                (self.offset, len, d)
            }
            Action::Release | Action::WriteZeros => {
                if hole {
                    // A hole was not copied into the buffer.
                    slot.buf[..n].fill(0);
                }
                let w = client.engine.write(token, self.offset, len);
                (self.offset, len, w)
            }
        };
        submitted.map_err(|e| error::engine(self.name, e))?;
        Ok(Some((at, sent)))
    }
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
            let obj_end = self.object_end();
            let want = self.chunk.min(obj_end.saturating_sub(self.offset)) as usize;
            let Chunk { n, hole } = self.take(slot, want)?;
            // Dense, and still in the file: sent from there as it is.
            slot.in_file = self.input.took_dense;
            if n == 0 {
                self.eof = true;
                break;
            }
            if n < want {
                self.eof = true;
            }
            let mut len = n as u64;
            let zero = !slot.in_file && (hole || is_zero(&slot.buf[..n]));
            let idx = (self.offset / self.os) as u32;
            let allocated = client.engine.entry(idx).is_some_and(|e| e != 0);
            let hyper = client.engine.volume().is_some_and(|v| v.hyper);
            if zero
                && !hyper
                && allocated
                && self.offset % self.os == 0
                && len < obj_end - self.offset
                && !self.eof
            {
                len = self.whole_zero_object(len, obj_end)?;
            }
            if let Some(c) = self.crcs.as_deref_mut() {
                if zero {
                    c.add_zeros(self.offset, len);
                } else {
                    c.add(self.offset, &slot.buf[..n]);
                }
            }
            let token = self.next_token;
            match self.submit_chunk(client, slot, token, (n, len, zero, hole))? {
                None => progress.add(len),
                Some((at, sent)) => {
                    slot.busy = true;
                    slot.len = sent as usize;
                    slot.offset = at;
                    slot.token = token;
                    self.next_token += 1;
                    self.open_ops += 1;
                    // Zeros trimmed off count as done now; what is sent
                    // counts when it is on the cluster.
                    progress.add(len - sent.min(len));
                    // Send it now rather than after every slot is full.
                    client.transmit(slots)?;
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
