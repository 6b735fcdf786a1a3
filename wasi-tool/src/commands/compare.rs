//! `compare FILE|VDI[@SNAP] FILE|VDI[@SNAP]`: `qemu-img compare`'s
//! contract. Exit 0 when the two hold the same bytes, 1 when they differ
//! (with the first differing offset on stdout), 2 on an error. As with
//! qemu-img, sizes may differ if the larger one holds only zeros past the
//! smaller's end.
//!
//! Both sides are read chunk by chunk (a part of an object of the VDI
//! side, as export cuts them),
//! pipelined; a VDI's unallocated objects are zeros without a read, and a
//! chunk unallocated on both sides is not read at all. An argument that
//! names an existing file is the file; anything else is a VDI.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};

use sheepdog_core::engine::Token;

use crate::cli::Global;
use crate::cluster::session::{close, open};
use crate::cluster::{Client, DEFAULT_QUEUE_DEPTH};
use crate::error::{self, CliError};
use crate::target::Target;
use crate::transfer::pipe::Pipe;
use crate::transfer::requests;

/// Arguments of `compare`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A file, or VDI[@SNAP]
    a: String,
    /// A file, or VDI[@SNAP]
    b: String,
    /// Reads in flight per VDI
    #[arg(long, default_value_t = DEFAULT_QUEUE_DEPTH)]
    queue_depth: usize,
}

/// Chunk size when both sides are files.
const FILE_CHUNK: u64 = 4 << 20;

pub fn exec(g: &Global, args: &Args) -> Result<(), CliError> {
    let mut a = Side::open(g, &args.a, args.queue_depth)?;
    let mut b = Side::open(g, &args.b, args.queue_depth)?;
    let chunk = a.chunk().or(b.chunk()).unwrap_or(FILE_CHUNK);
    let size = a.size().max(b.size());
    let res = run(&mut a, &mut b, chunk, size);
    a.close()?;
    b.close()?;
    match res? {
        None => {
            g.say("Images are identical.");
            Ok(())
        }
        Some(at) => Err(CliError::different(format!(
            "Content mismatch at offset {at}!"
        ))),
    }
}

/// The first offset where `a` and `b` differ, if any.
fn run(a: &mut Side, b: &mut Side, chunk: u64, size: u64) -> Result<Option<u64>, CliError> {
    let chunks = size.div_ceil(chunk);
    a.plan(chunk, chunks);
    b.plan(chunk, chunks);
    for i in 0..chunks {
        let start = i * chunk;
        let x = a.next(start, chunk)?;
        let y = b.next(start, chunk)?;
        let differ = match (&x, &y) {
            (None, None) => None,
            (Some(x), None) | (None, Some(x)) => x.iter().position(|&c| c != 0),
            (Some(x), Some(y)) => {
                let n = x.len().max(y.len());
                (0..n).find(|&k| x.get(k).copied().unwrap_or(0) != y.get(k).copied().unwrap_or(0))
            }
        };
        if let Some(k) = differ {
            return Ok(Some(start + k as u64));
        }
    }
    Ok(None)
}

/// One side of the comparison.
enum Side {
    File {
        f: File,
        size: u64,
        path: String,
    },
    Vdi {
        client: Box<Client>,
        name: String,
        size: u64,
        os: u64,
        pipe: Pipe,
        /// Chunk indices still to submit, and those submitted in order.
        todo: VecDeque<u64>,
        flying: VecDeque<(u64, Token)>,
        done: Vec<(Token, Vec<u8>)>,
        chunk: u64,
    },
}

impl Side {
    fn open(g: &Global, arg: &str, depth: usize) -> Result<Side, CliError> {
        if std::fs::metadata(arg).is_ok() {
            let f = File::open(arg).map_err(|e| error::file(arg, "read", &e))?;
            let size = f
                .metadata()
                .map_err(|e| error::file(arg, "read", &e))?
                .len();
            return Ok(Side::File {
                f,
                size,
                path: arg.to_owned(),
            });
        }
        let t = Target::parse(arg)?;
        let mut client = g.connect(&t)?;
        let info = open(&mut client, &t, false)?;
        Ok(Side::Vdi {
            client: Box::new(client),
            name: t.display(),
            size: info.size,
            os: u64::from(info.object_size),
            pipe: Pipe::new(depth),
            todo: VecDeque::new(),
            flying: VecDeque::new(),
            done: Vec::new(),
            chunk: u64::from(info.object_size),
        })
    }

    fn size(&self) -> u64 {
        match self {
            Side::File { size, .. } | Side::Vdi { size, .. } => *size,
        }
    }

    fn chunk(&self) -> Option<u64> {
        match self {
            Side::File { .. } => None,
            // As export reads: equal parts below sheep's mmap threshold.
            Side::Vdi { os, .. } => Some(requests::part_len(*os, requests::EXPORT_REQUEST)),
        }
    }

    /// The chunks of `chunk` bytes this side will be asked for, in order:
    /// a VDI reads ahead those that hold data.
    fn plan(&mut self, chunk: u64, chunks: u64) {
        if let Side::Vdi { todo, chunk: c, .. } = self {
            *c = chunk;
            todo.extend(0..chunks);
        }
    }

    /// The bytes of `start..start + len` (cut at this side's end), or
    /// `None` where they are known to be zeros without a read.
    fn next(&mut self, start: u64, len: u64) -> Result<Option<Vec<u8>>, CliError> {
        match self {
            Side::File { f, size, path } => {
                if start >= *size {
                    return Ok(None);
                }
                let n = len.min(*size - start) as usize;
                let mut buf = vec![0u8; n];
                f.read_exact(&mut buf)
                    .map_err(|e: io::Error| error::file(path, "read", &e))?;
                Ok(Some(buf))
            }
            Side::Vdi {
                client,
                name,
                size,
                pipe,
                todo,
                flying,
                done,
                chunk,
                ..
            } => {
                let want = start / *chunk;
                loop {
                    // Read ahead the chunks that hold data.
                    while pipe.has_room() {
                        let Some(&i) = todo.front() else { break };
                        todo.pop_front();
                        let s = i * *chunk;
                        if s >= *size || !allocated(client, s, *chunk, *size) {
                            continue;
                        }
                        let n = (*chunk).min(*size - s);
                        let t = pipe
                            .submit(client, vec![0u8; n as usize], name, |e, t| e.read(t, s, n))?;
                        flying.push_back((i, t));
                    }
                    match flying.front() {
                        Some(&(i, t)) if i == want => {
                            if let Some(k) = done.iter().position(|(d, _)| *d == t) {
                                flying.pop_front();
                                return Ok(Some(done.swap_remove(k).1));
                            }
                        }
                        // Not read: past the end, or nothing allocated.
                        _ => return Ok(None),
                    }
                    for (t, buf, result) in pipe.wait(client)? {
                        result.map_err(|e| error::engine(name, e))?;
                        done.push((t, buf));
                    }
                }
            }
        }
    }

    fn close(self) -> Result<(), CliError> {
        match self {
            Side::File { .. } => Ok(()),
            Side::Vdi {
                mut client, name, ..
            } => close(&mut client, &name),
        }
    }
}

/// Whether any object of `start..start + len` is allocated.
fn allocated(client: &Client, start: u64, len: u64, size: u64) -> bool {
    let Some(info) = client.engine.volume() else {
        return true;
    };
    let os = u64::from(info.object_size);
    let end = (start + len).min(size);
    (start / os..end.div_ceil(os)).any(|i| client.engine.entry(i as u32).unwrap_or(0) != 0)
}
