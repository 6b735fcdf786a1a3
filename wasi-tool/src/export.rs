//! `export VDI[@SNAP] FILE|-`: copy a VDI or snapshot into a raw image,
//! pipelined. Into a regular file, unallocated and all-zero chunks become
//! holes; into a pipe they are written as zeros, in order.

use std::collections::VecDeque;
use std::io::{self, Write};

use sheepdog_core::engine::Event;

use crate::cli::{Cli, IoOpts};
use crate::client::Client;
use crate::error::{self, CliError};
use crate::outfile::OutFile;
use crate::progress::Progress;
use crate::requests;
use crate::session::{self, close, open};
use crate::target::Target;
use crate::transfer::Slots;
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
pub fn export(cli: &Cli, vdi: &str, file: &str, io: &IoOpts) -> Result<(), CliError> {
    let t = Target::parse(vdi)?;
    let qd = requests::queue_depth(io)?;
    let request = requests::request_size(io, requests::EXPORT_REQUEST)?;
    let mut client = session::connect(&t, &cli.address)?;
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
        ),
        Err(e) => Err(e),
    };
    let closed = close(&mut client, &t.display());
    if res.is_err() && created {
        let _ = std::fs::remove_file(file);
    }
    res.map_err(|e| {
        e.during(
            &format!("export of {}", t.display()),
            "run the same export again",
        )
    })?;
    closed?;
    if !cli.quiet && file != "-" {
        eprintln!("exported {} to {file}", t.display());
    }
    Ok(())
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
) -> Result<(), CliError> {
    let os = u64::from(object_size);
    let chunk = requests::part_len(os, request);
    let mut slots = Slots::new(qd, chunk as usize);
    let mut progress = Progress::new("export", size, cli.progress, cli.quiet);
    let mut order: VecDeque<Pending> = VecDeque::new();
    let mut offset = 0u64;
    let mut failure: Option<CliError> = None;
    let mut events = Vec::new();
    let werr = |e: io::Error| error::file(file, "write", &e);
    loop {
        while offset < size && failure.is_none() {
            // Up to a chunk, never across an object's end.
            let obj_end = ((offset / os + 1) * os).min(size);
            let idx = (offset / os) as u32;
            if client.engine.entry(idx).unwrap_or(0) == 0 {
                let n = obj_end - offset;
                // Unallocated: a hole, or zeros in a stream.
                if let Output::Stream(_) = out {
                    order.push_back(Pending::Zeros(n));
                } else {
                    progress.add(n);
                }
                offset += n;
                continue;
            }
            let n = chunk.min(obj_end - offset);
            let Some(i) = slots.free() else { break };
            match client.engine.read(i as u64, offset, n) {
                Ok(()) => {
                    let slot = &mut slots.slots[i];
                    slot.busy = true;
                    slot.token = i as u64;
                    slot.len = n as usize;
                    slot.offset = offset;
                    if let Output::Stream(_) = out {
                        order.push_back(Pending::Slot(i));
                    }
                }
                Err(e) => failure = Some(error::engine(name, e)),
            }
            offset += n;
        }
        // Write out what is ready, in order for streams.
        if let Output::Stream(w) = out {
            while let Some(p) = order.front() {
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
                order.pop_front();
                if let Err(e) = written {
                    // Stop reading; what is in flight drains below.
                    failure.get_or_insert_with(|| werr(e));
                    order.clear();
                    offset = size;
                }
            }
        }
        if !slots.any_busy() && order.is_empty() && (offset >= size || failure.is_some()) {
            break;
        }
        if !slots.any_busy() {
            if failure.is_some() {
                break;
            }
            continue;
        }
        client.step(&mut slots, &mut events)?;
        for ev in events.drain(..) {
            match ev {
                Event::Zeros(z) => {
                    let s = &mut slots.slots[z.token as usize];
                    s.buf[z.range.start as usize..z.range.end as usize].fill(0);
                }
                Event::Done { token, result } => {
                    let i = token as usize;
                    slots.slots[i].busy = false;
                    if let Err(e) = result {
                        failure.get_or_insert_with(|| error::engine(name, e));
                        continue;
                    }
                    match out {
                        Output::Stream(_) => slots.slots[i].ready = true,
                        Output::File(f) => {
                            let s = &slots.slots[i];
                            if let Err(e) = write_sparse(f, s.offset, &s.buf[..s.len]) {
                                failure.get_or_insert_with(|| werr(e));
                                offset = size;
                            }
                            progress.add(s.len as u64);
                        }
                    }
                }
                Event::Control(_) | Event::DataDone { .. } => {}
            }
        }
    }
    if let (Output::Stream(w), None) = (&mut *out, &failure) {
        w.flush().map_err(werr)?;
    }
    progress.finish();
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
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
