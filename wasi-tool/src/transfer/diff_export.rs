//! The changes from snapshot FROM to TO as an `rbd diff v1` stream
//! (`core::rbd_diff`): what `export-diff` writes, and what a migration
//! ships.
//!
//! Two snapshots share every object whose index entry names the same VID,
//! so the changed objects are found from the two indexes alone, and only
//! those are read. A changed object goes out as `w` records without its
//! all-zero blocks (as `z` records where FROM had the object, since there
//! the zeros are news); an object allocated in FROM and not in TO is one
//! `z` record. Without FROM, everything TO holds is sent.
//!
//! Exact mode also reads FROM's copy of each changed object and sends only
//! the sectors that differ: smaller diffs for twice the reads (dog's
//! backup trims only the equal sectors at an object's two ends).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};

use sheepdog_core::engine::Token;
use sheepdog_core::rbd_diff::{encode, magic, Record, Version, MAX_RECORD_HEADER};
use sheepdog_core::sparse::is_zero;

use super::pipe::{Finished, Pipe};
use super::requests;
use crate::cluster::session::{close, open};
use crate::cluster::Client;
use crate::error::{self, CliError};
use crate::target::Target;

/// Blocks this large that are all zeros are not sent as data.
const BLOCK: usize = 4096;
/// What exact mode compares: a sector, as dog's backup does.
const SECTOR: usize = 512;

/// The FROM snapshot: its index and size, and (in exact mode) a
/// connection on which it is open.
pub struct From {
    entries: Vec<u32>,
    size: u64,
    client: Option<Client>,
    /// How messages name it.
    pub name: String,
}

impl From {
    /// Read the index of the snapshot `t` over `c`; in exact mode keep it
    /// open there, for its objects are read too.
    pub fn read(mut c: Client, t: &Target, exact: bool) -> Result<From, CliError> {
        let info = open(&mut c, t, false)?;
        let n = info.size.div_ceil(u64::from(info.object_size)) as u32;
        let entries: Vec<u32> = (0..n).map(|i| c.engine.entry(i).unwrap_or(0)).collect();
        let client = if exact {
            Some(c)
        } else {
            close(&mut c, &t.display())?;
            None
        };
        Ok(From {
            entries,
            size: info.size,
            client,
            name: t.display(),
        })
    }

    /// `from` (none: nothing), with the objects `forced` counted as
    /// changed whatever the indexes say: each goes out whole (its zeros as
    /// `z` records), or as one `z` record where TO has none. A target
    /// whose image holds writes the diff does not know of (a run killed
    /// mid-diff) is made equal to TO by them.
    pub fn forcing(from: Option<From>, forced: &[u32]) -> Option<From> {
        if forced.is_empty() {
            return from;
        }
        let mut f = from.unwrap_or(From {
            entries: Vec::new(),
            size: 0,
            client: None,
            name: "(nothing)".to_owned(),
        });
        for &idx in forced {
            let i = idx as usize;
            if f.entries.len() <= i {
                f.entries.resize(i + 1, 0);
            }
            // No VID is this large: no object of TO is this one.
            f.entries[i] = u32::MAX;
        }
        Some(f)
    }

    /// Close the snapshot where it is still open.
    pub fn close(&mut self) -> Result<(), CliError> {
        match self.client.as_mut() {
            Some(c) => close(c, &self.name),
            None => Ok(()),
        }
    }
}

/// What a diff says of itself: the snapshots it goes from and to (by
/// name), and TO's size.
pub struct Names<'a> {
    /// FROM, when the diff is incremental.
    pub from: Option<&'a str>,
    /// TO, when it is a snapshot.
    pub to: Option<&'a str>,
}

/// Sees each object's bytes as they go into the diff, in order: what a
/// migration's checksums are made of.
pub trait Observer {
    /// Bytes of TO at `start` (a part of a changed object, zeros included),
    /// each object's parts in order.
    fn data(&mut self, start: u64, bytes: &[u8]);
    /// An object of TO at `start`, `len` bytes long, is unallocated now.
    fn released(&mut self, start: u64, len: u64);
}

/// What writing a diff cost.
#[derive(Debug, Default)]
pub struct Stats {
    /// Objects read.
    pub read: u32,
    /// The last object counted.
    last: Option<u32>,
    /// READ_OBJ requests made for data.
    pub requests: u64,
    /// Objects released (`z` records of whole objects).
    pub released: u32,
}

/// Write the diff from `from` (none: everything) to the VDI open on
/// `client`, named `name`, to `out`: the header records, every changed
/// object, the end record; `depth` reads in flight per connection.
pub fn write(
    client: &mut Client,
    from: Option<&mut From>,
    names: &Names<'_>,
    depth: usize,
    out: &mut dyn Write,
    name: &str,
) -> Result<Stats, CliError> {
    write_observed(client, from, names, depth, out, name, None)
}

/// [`write`], showing `observer` every object's bytes as they go.
pub fn write_observed<'n>(
    client: &mut Client,
    from: Option<&mut From>,
    names: &Names<'_>,
    depth: usize,
    out: &mut dyn Write,
    name: &'n str,
    observer: Option<&'n mut dyn Observer>,
) -> Result<Stats, CliError> {
    let info = client
        .engine
        .volume()
        .ok_or_else(|| CliError::msg("internal error: TO is not open"))?;
    let werr = |e: io::Error| CliError::msg(format!("cannot write the diff: {e}"));
    let mut w = Writer { out };
    w.raw(magic(Version::V1)).map_err(werr)?;
    if let Some(f) = names.from {
        w.record(&Record::From(f.as_bytes())).map_err(werr)?;
    }
    if let Some(t) = names.to {
        w.record(&Record::To(t.as_bytes())).map_err(werr)?;
    }
    w.record(&Record::Size(info.size)).map_err(werr)?;
    let os = u64::from(info.object_size);
    let (from_index, from_client) = match from {
        Some(f) => (Some((f.entries.as_slice(), f.size)), f.client.as_mut()),
        None => (None, None),
    };
    let exact = from_client.is_some();
    let mut plan = Plan {
        idx: 0,
        objects: info.size.div_ceil(os) as u32,
        at: None,
        os,
        size: info.size,
        // Read as export does: in equal parts below sheep's mmap
        // threshold (BENCHMARKS.md).
        part: requests::part_len(os, requests::EXPORT_REQUEST),
        from: from_index,
        exact,
    };
    let mut shipper = Shipper::new(depth, name);
    shipper.observer = observer;
    let stats = shipper.run(client, from_client, &mut plan, &mut w)?;
    w.record(&Record::End).map_err(werr)?;
    w.out.flush().map_err(werr)?;
    Ok(stats)
}

/// What each object of TO is (unchanged, released or changed), a step at
/// a time, so that a diff of any size holds only the steps in flight.
struct Plan<'a> {
    idx: u32,
    objects: u32,
    /// Where the next part of object `idx` starts, once it is known to
    /// be read.
    at: Option<u64>,
    os: u64,
    size: u64,
    part: u64,
    /// FROM's index entries and size.
    from: Option<(&'a [u32], u64)>,
    exact: bool,
}

impl Plan<'_> {
    fn next(&mut self, client: &Client) -> Option<Step> {
        while self.idx < self.objects {
            let idx = self.idx;
            let start = u64::from(idx) * self.os;
            let end = (start + self.os).min(self.size);
            if let Some(at) = self.at {
                let n = self.part.min(end - at);
                let had = self.was(idx) != 0;
                // FROM's copy of these bytes, where FROM has them.
                let from_len = match self.from {
                    Some((_, size)) if self.exact && had && at < size => Some(n.min(size - at)),
                    _ => None,
                };
                if at + n >= end {
                    self.at = None;
                    self.idx += 1;
                } else {
                    self.at = Some(at + n);
                }
                return Some(Step::Read {
                    idx,
                    start: at,
                    len: n,
                    had,
                    token: None,
                    from: from_len.map(|len| (len, None)),
                });
            }
            let to = client.engine.entry(idx).unwrap_or(0);
            let was = self.was(idx);
            if to == was && self.from.is_some() || to == 0 && was == 0 {
                self.idx += 1;
                continue;
            }
            if to == 0 {
                self.idx += 1;
                return Some(Step::Zero {
                    start,
                    len: end - start,
                });
            }
            self.at = Some(start);
        }
        None
    }

    fn was(&self, idx: u32) -> u32 {
        self.from
            .map_or(0, |(e, _)| e.get(idx as usize).copied().unwrap_or(0))
    }
}

/// One object's part of the diff, in order.
enum Step {
    Zero {
        start: u64,
        len: u64,
    },
    Read {
        idx: u32,
        start: u64,
        len: u64,
        had: bool,
        token: Option<Token>,
        /// With `--exact`: how many bytes of FROM's copy to read, and the
        /// read.
        from: Option<(u64, Option<Token>)>,
    },
}

/// The reads in flight on TO's connection (and FROM's, in exact mode),
/// what came back, and the steps not yet written, in order.
struct Shipper<'n> {
    observer: Option<&'n mut dyn Observer>,
    pipe: Pipe,
    from_pipe: Pipe,
    ready: HashMap<Token, Vec<u8>>,
    from_ready: HashMap<Token, Vec<u8>>,
    queue: VecDeque<Step>,
    stats: Stats,
    depth: usize,
    name: &'n str,
}

/// Why writing out stopped.
enum Blocked {
    /// The next step's read of TO is not back.
    OnTo,
    /// Its read of FROM is not back.
    OnFrom,
    /// Nothing is left to write.
    Empty,
}

impl<'n> Shipper<'n> {
    fn new(depth: usize, name: &'n str) -> Shipper<'n> {
        Shipper {
            observer: None,
            pipe: Pipe::new(depth),
            from_pipe: Pipe::new(depth),
            ready: HashMap::new(),
            from_ready: HashMap::new(),
            queue: VecDeque::new(),
            stats: Stats::default(),
            depth,
            name,
        }
    }

    /// Read the changed objects, a few at a time, and write the records in
    /// order.
    fn run(
        &mut self,
        client: &mut Client,
        mut from: Option<&mut Client>,
        plan: &mut Plan<'_>,
        w: &mut Writer<'_>,
    ) -> Result<Stats, CliError> {
        loop {
            // The next steps, a few reads ahead.
            while self.queue.len() < 2 * self.depth.max(1) {
                match plan.next(client) {
                    Some(s) => self.queue.push_back(s),
                    None => break,
                }
            }
            self.submit(client, from.as_deref_mut())?;
            if let Some(fc) = from.as_deref_mut() {
                // Both connections send what they were given now, so that
                // TO's and FROM's reads overlap rather than take turns.
                client.transmit(&self.pipe)?;
                fc.transmit(&self.from_pipe)?;
            }
            match self.write_ready(w)? {
                Blocked::Empty => match plan.next(client) {
                    Some(s) => self.queue.push_back(s),
                    None => return Ok(std::mem::take(&mut self.stats)),
                },
                Blocked::OnFrom => {
                    let Some(fc) = from.as_deref_mut() else {
                        return Err(CliError::msg("export-diff: FROM is not open"));
                    };
                    let done = self.from_pipe.wait(fc)?;
                    self.collect(done, true)?;
                }
                Blocked::OnTo => {
                    let done = self.pipe.wait(client)?;
                    self.collect(done, false)?;
                }
            }
        }
    }

    /// Submit the reads of the next objects, while there is room.
    fn submit(
        &mut self,
        client: &mut Client,
        mut from: Option<&mut Client>,
    ) -> Result<(), CliError> {
        let name = self.name;
        for s in self.queue.iter_mut() {
            let Step::Read {
                start,
                len,
                token,
                from: f,
                ..
            } = s
            else {
                continue;
            };
            let (start, len) = (*start, *len);
            if token.is_none() && self.pipe.has_room() {
                let t = self
                    .pipe
                    .submit(client, vec![0u8; len as usize], name, |e, t| {
                        e.read(t, start, len)
                    })?;
                *token = Some(t);
                self.stats.requests += 1;
            }
            if let (Some((flen, ftoken @ None)), Some(fc)) = (f.as_mut(), from.as_deref_mut()) {
                if self.from_pipe.has_room() {
                    let flen = *flen;
                    // Past FROM's end the buffer stays zeros.
                    let t = self
                        .from_pipe
                        .submit(fc, vec![0u8; len as usize], name, |e, t| {
                            e.read(t, start, flen)
                        })?;
                    *ftoken = Some(t);
                    self.stats.requests += 1;
                }
            }
            if !self.pipe.has_room() && !self.from_pipe.has_room() {
                break;
            }
        }
        Ok(())
    }

    /// Write out what is ready, in order, up to the first step whose
    /// reads are not back.
    fn write_ready(&mut self, w: &mut Writer<'_>) -> Result<Blocked, CliError> {
        let werr = |e: io::Error| CliError::msg(format!("cannot write the diff: {e}"));
        while let Some(front) = self.queue.front() {
            match *front {
                Step::Zero { start, len } => {
                    w.record(&Record::Zero { offset: start, len })
                        .map_err(werr)?;
                    self.stats.released += 1;
                    if let Some(o) = self.observer.as_deref_mut() {
                        o.released(start, len);
                    }
                }
                Step::Read {
                    idx,
                    start,
                    had,
                    token: Some(t),
                    from: f,
                    ..
                } => {
                    if !self.ready.contains_key(&t) {
                        return Ok(Blocked::OnTo);
                    }
                    match f {
                        None => {
                            let buf = self.ready.remove(&t).unwrap_or_default();
                            w.object(start, &buf, had).map_err(werr)?;
                            if let Some(o) = self.observer.as_deref_mut() {
                                o.data(start, &buf);
                            }
                        }
                        Some((_, Some(ft))) if self.from_ready.contains_key(&ft) => {
                            let buf = self.ready.remove(&t).unwrap_or_default();
                            let was = self.from_ready.remove(&ft).unwrap_or_default();
                            w.exact(start, &buf, &was).map_err(werr)?;
                            if let Some(o) = self.observer.as_deref_mut() {
                                o.data(start, &buf);
                            }
                        }
                        Some(_) => return Ok(Blocked::OnFrom),
                    }
                    if self.stats.last != Some(idx) {
                        self.stats.read += 1;
                        self.stats.last = Some(idx);
                    }
                }
                Step::Read { token: None, .. } => return Ok(Blocked::OnTo),
            }
            self.queue.pop_front();
        }
        Ok(Blocked::Empty)
    }

    /// Reads that finished, of FROM's connection (`of_from`) or TO's: kept
    /// until their step is written, or the error naming their object.
    fn collect(&mut self, done: Vec<Finished>, of_from: bool) -> Result<(), CliError> {
        for (token, buf, result) in done {
            if let Err(e) = result {
                // Which object the read was of: the two pipes number their
                // tokens alike, so `of_from` says which one it came from.
                let idx = self.queue.iter().find_map(|s| match s {
                    Step::Read {
                        idx,
                        token: t,
                        from,
                        ..
                    } if (!of_from && *t == Some(token))
                        || (of_from && from.is_some_and(|f| f.1 == Some(token))) =>
                    {
                        Some(*idx)
                    }
                    _ => None,
                });
                let what = format!("{} (object {})", self.name, idx.unwrap_or(0));
                return Err(error::engine(&what, e));
            }
            if of_from {
                self.from_ready.insert(token, buf);
            } else {
                self.ready.insert(token, buf);
            }
        }
        Ok(())
    }
}

/// Records into the output.
struct Writer<'a> {
    out: &'a mut dyn Write,
}

impl Writer<'_> {
    fn raw(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)
    }

    fn record(&mut self, r: &Record<'_>) -> io::Result<()> {
        let mut buf = [0u8; MAX_RECORD_HEADER];
        let n = encode(Version::V1, r, &mut buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e:?}")))?;
        self.out.write_all(&buf[..n])
    }

    /// A part of an object's bytes at `start`: `w` records for its blocks that hold
    /// data, and `z` records for its zero blocks if FROM had the object.
    fn object(&mut self, start: u64, buf: &[u8], had: bool) -> io::Result<()> {
        let mut at = 0;
        while at < buf.len() {
            let zero = is_zero(&buf[at..(at + BLOCK).min(buf.len())]);
            let mut end = at;
            while end < buf.len() && is_zero(&buf[end..(end + BLOCK).min(buf.len())]) == zero {
                end = (end + BLOCK).min(buf.len());
            }
            let (offset, len) = (start + at as u64, (end - at) as u64);
            if !zero {
                self.record(&Record::Write { offset, len })?;
                self.raw(&buf[at..end])?;
            } else if had {
                self.record(&Record::Zero { offset, len })?;
            }
            at = end;
        }
        Ok(())
    }

    /// `--exact`: only the sectors of `buf` (at `start`) that differ from
    /// FROM's copy `was`, as `w` records, or `z` records where they are
    /// zeros now.
    fn exact(&mut self, start: u64, buf: &[u8], was: &[u8]) -> io::Result<()> {
        // 0 the same, 1 zeros now, 2 other data now.
        let class = |at: usize| {
            let end = (at + SECTOR).min(buf.len());
            let now = &buf[at..end];
            if was.get(at..end) == Some(now) {
                0
            } else if is_zero(now) {
                1
            } else {
                2
            }
        };
        let mut at = 0;
        while at < buf.len() {
            let c = class(at);
            let mut end = at;
            while end < buf.len() && class(end) == c {
                end = (end + SECTOR).min(buf.len());
            }
            let (offset, len) = (start + at as u64, (end - at) as u64);
            match c {
                2 => {
                    self.record(&Record::Write { offset, len })?;
                    self.raw(&buf[at..end])?;
                }
                1 => self.record(&Record::Zero { offset, len })?,
                _ => {}
            }
            at = end;
        }
        Ok(())
    }
}
