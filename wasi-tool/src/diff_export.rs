//! `export-diff VDI@TO [--from SNAP] FILE|-`: the changes from snapshot
//! FROM to TO as an `rbd diff v1` stream (`core::rbd_diff`).
//!
//! Two snapshots share every object whose index entry names the same VID,
//! so the changed objects are found from the two indexes alone, and only
//! those are read. A changed object goes out as `w` records without its
//! all-zero blocks (as `z` records where FROM had the object, since there
//! the zeros are news); an object allocated in FROM and not in TO is one
//! `z` record. Without `--from`, everything TO holds is sent.
//!
//! `--exact` also reads FROM's copy of each changed object and sends only
//! the sectors that differ: smaller diffs for twice the reads (dog's
//! backup trims only the equal sectors at an object's two ends).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};

use sheepdog_core::engine::Token;
use sheepdog_core::rbd_diff::{encode, magic, Record, Version, MAX_RECORD_HEADER};
use sheepdog_core::sparse::is_zero;

use crate::cli::Cli;
use crate::client::Client;
use crate::error::{self, CliError};
use crate::pipe::Pipe;
use crate::requests;
use crate::session::{self, close, open};
use crate::target::{Snap, Target};

/// Blocks this large that are all zeros are not sent as data.
const BLOCK: usize = 4096;
/// What `--exact` compares: a sector, as dog's backup does.
const SECTOR: usize = 512;

/// `export-diff VDI[@TO] [--from SNAP] [--exact] FILE|-`
pub fn export_diff(
    cli: &Cli,
    vdi: &str,
    from: Option<&str>,
    exact: bool,
    file: &str,
    depth: usize,
) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    if exact && from.is_none() {
        return Err(CliError::msg(
            "--exact compares with the FROM snapshot: name it with --from",
        ));
    }
    // FROM's index; with --exact, its objects are read too.
    let mut from_side = match from {
        Some(f) => {
            let mut ft = t.clone();
            ft.snapshot = Some(parse_snap(f));
            let mut c = session::connect(&ft, cli)?;
            let info = open(&mut c, &ft, false)?;
            let n = info.size.div_ceil(u64::from(info.object_size)) as u32;
            let entries: Vec<u32> = (0..n).map(|i| c.engine.entry(i).unwrap_or(0)).collect();
            let client = if exact {
                Some(c)
            } else {
                close(&mut c, &ft.display())?;
                None
            };
            Some(From {
                entries,
                size: info.size,
                client,
                name: ft.display(),
            })
        }
        None => None,
    };
    let mut client = session::connect(&t, cli)?;
    let info = open(&mut client, &t, false)?;
    let os = u64::from(info.object_size);
    let mut out: Box<dyn Write> = if file == "-" {
        Box::new(io::BufWriter::with_capacity(1 << 20, io::stdout().lock()))
    } else {
        let f = std::fs::File::create(file).map_err(|e| error::file(file, "write", &e))?;
        Box::new(io::BufWriter::with_capacity(1 << 20, f))
    };
    let werr = |e: io::Error| error::file(file, "write", &e);
    let mut w = Writer { out: &mut *out };
    let name = t.display();
    let res = (|| -> Result<Stats, CliError> {
        w.raw(magic(Version::V1)).map_err(werr)?;
        if let Some(f) = from {
            w.record(&Record::From(f.as_bytes())).map_err(werr)?;
        }
        if let Some(s) = &t.snapshot {
            let name = match s {
                Snap::Tag(tag) => tag.clone(),
                Snap::Id(i) => i.to_string(),
            };
            w.record(&Record::To(name.as_bytes())).map_err(werr)?;
        }
        w.record(&Record::Size(info.size)).map_err(werr)?;
        let (from_index, from_client) = match from_side.as_mut() {
            Some(f) => (Some((f.entries.as_slice(), f.size)), f.client.as_mut()),
            None => (None, None),
        };
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
        let stats = pump(&mut client, from_client, &mut plan, &mut w, &name, depth)?;
        w.record(&Record::End).map_err(werr)?;
        w.out.flush().map_err(werr)?;
        Ok(stats)
    })();
    let closed = close(&mut client, &name);
    let from_closed = match from_side.as_mut() {
        Some(From {
            client: Some(c),
            name,
            ..
        }) => close(c, name),
        _ => Ok(()),
    };
    if res.is_err() && file != "-" {
        // A diff cut short is never left to be taken for a whole one.
        let _ = std::fs::remove_file(file);
    }
    let stats: Stats =
        res.map_err(|e| e.during(&format!("export-diff of {name}"), "run it again"))?;
    closed?;
    from_closed?;
    if !cli.quiet && file != "-" {
        eprintln!(
            "exported the diff of {name}{} to {file}: {} object{} read ({} read requests{}), {} released",
            from.map_or(String::new(), |f| format!(" from {f}")),
            stats.read,
            if stats.read == 1 { "" } else { "s" },
            stats.requests,
            if exact { ", FROM's copies included" } else { "" },
            stats.released
        );
    }
    Ok(())
}

/// The FROM snapshot: its index and size, and (with `--exact`) a
/// connection on which it is open.
struct From {
    entries: Vec<u32>,
    size: u64,
    client: Option<Client>,
    name: String,
}

/// A snapshot named by tag, or by id when it is all digits.
fn parse_snap(s: &str) -> Snap {
    match s.parse::<u32>() {
        Ok(i) => Snap::Id(i),
        Err(_) => Snap::Tag(s.to_owned()),
    }
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

#[derive(Default)]
struct Stats {
    /// Objects read, and the last one counted.
    read: u32,
    last: Option<u32>,
    /// READ_OBJ requests made for data.
    requests: u64,
    released: u32,
}

/// Read the changed objects, a few at a time, and write the records in
/// order.
fn pump(
    client: &mut Client,
    mut from: Option<&mut Client>,
    plan: &mut Plan<'_>,
    w: &mut Writer<'_>,
    name: &str,
    depth: usize,
) -> Result<Stats, CliError> {
    let mut pipe = Pipe::new(depth);
    let mut from_pipe = Pipe::new(depth);
    let mut ready: HashMap<Token, Vec<u8>> = HashMap::new();
    let mut from_ready: HashMap<Token, Vec<u8>> = HashMap::new();
    let mut queue: VecDeque<Step> = VecDeque::new();
    let mut stats = Stats::default();
    let werr = |e: io::Error| CliError::msg(format!("cannot write the diff: {e}"));
    // Which object a failed read was of: the two pipes number their
    // tokens alike, so `of_from` says which one it came from.
    let failed = |queue: &VecDeque<Step>, token: Token, of_from: bool, e| {
        let idx = queue.iter().find_map(|s| match s {
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
        error::engine(&format!("{name} (object {})", idx.unwrap_or(0)), e)
    };
    loop {
        // The next steps, a few reads ahead.
        while queue.len() < 2 * depth.max(1) {
            match plan.next(client) {
                Some(s) => queue.push_back(s),
                None => break,
            }
        }
        // Submit the reads of the next objects, while there is room.
        for s in queue.iter_mut() {
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
            if token.is_none() && pipe.has_room() {
                let t = pipe.submit(client, vec![0u8; len as usize], name, |e, t| {
                    e.read(t, start, len)
                })?;
                *token = Some(t);
                stats.requests += 1;
            }
            if let (Some((flen, ftoken @ None)), Some(fc)) = (f.as_mut(), from.as_deref_mut()) {
                if from_pipe.has_room() {
                    let flen = *flen;
                    // Past FROM's end the buffer stays zeros.
                    let t = from_pipe.submit(fc, vec![0u8; len as usize], name, |e, t| {
                        e.read(t, start, flen)
                    })?;
                    *ftoken = Some(t);
                    stats.requests += 1;
                }
            }
            if !pipe.has_room() && !from_pipe.has_room() {
                break;
            }
        }
        // Both connections send what they were given now, so that TO's and
        // FROM's reads overlap rather than take turns.
        if let Some(fc) = from.as_deref_mut() {
            client.transmit(&pipe)?;
            fc.transmit(&from_pipe)?;
        }
        // Write out what is ready, in order; else wait for what the next
        // step lacks.
        let mut wait_from = false;
        while let Some(front) = queue.front() {
            match *front {
                Step::Zero { start, len } => {
                    w.record(&Record::Zero { offset: start, len })
                        .map_err(werr)?;
                    stats.released += 1;
                }
                Step::Read {
                    idx,
                    start,
                    had,
                    token: Some(t),
                    from: f,
                    ..
                } => {
                    if !ready.contains_key(&t) {
                        break;
                    }
                    match f {
                        None => {
                            let buf = ready.remove(&t).unwrap_or_default();
                            w.object(start, &buf, had).map_err(werr)?;
                        }
                        Some((_, Some(ft))) if from_ready.contains_key(&ft) => {
                            let buf = ready.remove(&t).unwrap_or_default();
                            let was = from_ready.remove(&ft).unwrap_or_default();
                            w.exact(start, &buf, &was).map_err(werr)?;
                        }
                        Some(_) => {
                            wait_from = true;
                            break;
                        }
                    }
                    if stats.last != Some(idx) {
                        stats.read += 1;
                        stats.last = Some(idx);
                    }
                }
                Step::Read { token: None, .. } => break,
            }
            queue.pop_front();
        }
        if queue.is_empty() {
            match plan.next(client) {
                Some(s) => {
                    queue.push_back(s);
                    continue;
                }
                None => return Ok(stats),
            }
        }
        if wait_from {
            let Some(fc) = from.as_deref_mut() else {
                return Err(CliError::msg("export-diff: FROM is not open"));
            };
            for (token, buf, result) in from_pipe.wait(fc)? {
                result.map_err(|e| failed(&queue, token, true, e))?;
                from_ready.insert(token, buf);
            }
        } else {
            for (token, buf, result) in pipe.wait(client)? {
                result.map_err(|e| failed(&queue, token, false, e))?;
                ready.insert(token, buf);
            }
        }
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
