//! `export-diff VDI@TO [--from SNAP] FILE|-`: the changes from snapshot
//! FROM to TO as an `rbd diff v1` stream (`core::rbd_diff`).
//!
//! Two snapshots share every object whose index entry names the same VID,
//! so the changed objects are found from the two indexes alone, and only
//! those are read. A changed object goes out as `w` records without its
//! all-zero blocks (as `z` records where FROM had the object, since there
//! the zeros are news); an object allocated in FROM and not in TO is one
//! `z` record. Without `--from`, everything TO holds is sent.

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

/// `export-diff VDI[@TO] [--from SNAP] FILE|-`
pub fn export_diff(
    cli: &Cli,
    vdi: &str,
    from: Option<&str>,
    file: &str,
    depth: usize,
) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let from_entries = match from {
        Some(f) => {
            let mut ft = t.clone();
            ft.snapshot = Some(parse_snap(f));
            Some(entries_of(cli, &ft)?)
        }
        None => None,
    };
    let mut client = session::connect(&t, cli)?;
    let info = open(&mut client, &t, false)?;
    let os = u64::from(info.object_size);
    let objects = info.size.div_ceil(os) as u32;
    let mut out: Box<dyn Write> = if file == "-" {
        Box::new(io::BufWriter::with_capacity(1 << 20, io::stdout().lock()))
    } else {
        let f = std::fs::File::create(file).map_err(|e| error::file(file, "write", &e))?;
        Box::new(io::BufWriter::with_capacity(1 << 20, f))
    };
    let werr = |e: io::Error| error::file(file, "write", &e);
    let mut w = Writer { out: &mut *out };
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

    // What each object of TO is: unchanged, released, or changed.
    let mut queue: VecDeque<Step> = VecDeque::new();
    for idx in 0..objects {
        let to = client.engine.entry(idx).unwrap_or(0);
        let was = from_entries
            .as_ref()
            .map_or(0, |e| e.get(idx as usize).copied().unwrap_or(0));
        if to == was && from_entries.is_some() || to == 0 && was == 0 {
            continue;
        }
        let start = u64::from(idx) * os;
        let len = os.min(info.size - start);
        if to == 0 {
            queue.push_back(Step::Zero { start, len });
            continue;
        }
        // Read as export does: in equal parts below sheep's mmap
        // threshold (BENCHMARKS.md).
        let part = requests::part_len(os, requests::EXPORT_REQUEST);
        let mut at = start;
        while at < start + len {
            let n = part.min(start + len - at);
            queue.push_back(Step::Read {
                idx,
                start: at,
                len: n,
                had: was != 0,
                token: None,
            });
            at += n;
        }
    }
    let name = t.display();
    let res = pump(&mut client, &mut queue, &mut w, &name, depth).and_then(|stats| {
        w.record(&Record::End).map_err(werr)?;
        w.out.flush().map_err(werr)?;
        Ok(stats)
    });
    let closed = close(&mut client, &name);
    if res.is_err() && file != "-" {
        // A diff cut short is never left to be taken for a whole one.
        let _ = std::fs::remove_file(file);
    }
    let stats = res.map_err(|e| e.during(&format!("export-diff of {name}"), "run it again"))?;
    closed?;
    if !cli.quiet && file != "-" {
        eprintln!(
            "exported the diff of {name}{} to {file}: {} objects read, {} released",
            from.map_or(String::new(), |f| format!(" from {f}")),
            stats.read,
            stats.released
        );
    }
    Ok(())
}

/// A snapshot named by tag, or by id when it is all digits.
fn parse_snap(s: &str) -> Snap {
    match s.parse::<u32>() {
        Ok(i) => Snap::Id(i),
        Err(_) => Snap::Tag(s.to_owned()),
    }
}

/// The index entries of `t`, one per object.
pub fn entries_of(cli: &Cli, t: &Target) -> Result<Vec<u32>, CliError> {
    let mut c = session::connect(t, cli)?;
    let info = open(&mut c, t, false)?;
    let n = info.size.div_ceil(u64::from(info.object_size)) as u32;
    let entries = (0..n).map(|i| c.engine.entry(i).unwrap_or(0)).collect();
    close(&mut c, &t.display())?;
    Ok(entries)
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
    },
}

#[derive(Default)]
struct Stats {
    /// Objects read, and the last one counted.
    read: u32,
    last: Option<u32>,
    released: u32,
}

/// Read the changed objects, a few at a time, and write the records in
/// order.
fn pump(
    client: &mut Client,
    queue: &mut VecDeque<Step>,
    w: &mut Writer<'_>,
    name: &str,
    depth: usize,
) -> Result<Stats, CliError> {
    let mut pipe = Pipe::new(depth);
    let mut ready: HashMap<Token, Vec<u8>> = HashMap::new();
    let mut stats = Stats::default();
    let werr = |e: io::Error| CliError::msg(format!("cannot write the diff: {e}"));
    loop {
        // Submit reads of the next objects, while there is room.
        for s in queue.iter_mut() {
            if !pipe.has_room() {
                break;
            }
            if let Step::Read {
                start, len, token, ..
            } = s
            {
                if token.is_none() {
                    let (start, len) = (*start, *len);
                    let t = pipe.submit(client, vec![0u8; len as usize], name, |e, t| {
                        e.read(t, start, len)
                    })?;
                    *token = Some(t);
                }
            }
        }
        // Write out what is ready, in order.
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
                    ..
                } => {
                    let Some(buf) = ready.remove(&t) else { break };
                    w.object(start, &buf, had).map_err(werr)?;
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
            return Ok(stats);
        }
        for (token, buf, result) in pipe.wait(client)? {
            if let Err(e) = result {
                let idx = queue.iter().find_map(|s| match s {
                    Step::Read {
                        idx,
                        token: Some(t),
                        ..
                    } if *t == token => Some(*idx),
                    _ => None,
                });
                return Err(error::engine(
                    &format!("{name} (object {})", idx.unwrap_or(0)),
                    e,
                ));
            }
            ready.insert(token, buf);
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
}
