//! `import FILE|- VDI [--size SIZE]`: copy a raw image into a VDI,
//! pipelined and sparse. All-zero chunks are never sent: where the VDI holds
//! nothing they are skipped, where it holds data whole objects are released
//! and partial ones are written with zeros. The engine writes data before
//! index entries, so an interrupted import never shows garbage and running
//! it again completes it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};

use sheepdog_core::engine::{ControlDone, CreateOptions, Event};
use sheepdog_core::redundancy::Redundancy;

use crate::cli::{Cli, IoOpts};
use crate::client::{Client, QUEUE_MAX};
use crate::error::{self, CliError};
use crate::progress::Progress;
use crate::session::{self, close, open, run, unexpected};
use crate::size::parse_size;
use crate::target::Target;
use crate::transfer::{is_zero, Slots};

/// Largest chunk per request.
pub const MAX_CHUNK: u64 = 4 << 20;

/// Check `--queue-depth`.
pub fn queue_depth(io: &IoOpts) -> Result<usize, CliError> {
    if io.queue_depth == 0 || io.queue_depth > QUEUE_MAX {
        return Err(CliError(format!(
            "bad --queue-depth {}: use 1 to {QUEUE_MAX}",
            io.queue_depth
        )));
    }
    Ok(io.queue_depth)
}

/// Fill `buf` from `r` until it is full or the input ends.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
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
    let qd = queue_depth(io)?;
    let want = size.map(parse_size).transpose()?;
    // Open the input first: no VDI is created when it cannot be read.
    let (mut input, file_len): (Box<dyn Read>, Option<u64>) = if file == "-" {
        (Box::new(io::stdin().lock()), None)
    } else {
        let f = File::open(file).map_err(|e| error::file(file, "open", &e))?;
        let meta = f.metadata().map_err(|e| error::file(file, "read", &e))?;
        if meta.is_dir() {
            return Err(CliError(format!("cannot read {file}: it is a directory")));
        }
        let len = meta.is_file().then_some(meta.len());
        (Box::new(f), len)
    };
    let mut client = session::connect(&t, &cli.address)?;
    let info = match open(&mut client, &t, io.lock) {
        Ok(info) => info,
        Err(e) if e.0.starts_with("no such VDI") => {
            let size = match (want, file_len) {
                (Some(s), _) => s,
                (None, Some(len)) => len.div_ceil(512) * 512,
                (None, None) => {
                    return Err(CliError(format!(
                        "{} does not exist: importing from stdin needs --size to create it",
                        t.name
                    )))
                }
            };
            if size == 0 {
                return Err(CliError(format!(
                    "cannot create {}: the input is empty",
                    t.name
                )));
            }
            if let Some(len) = file_len.filter(|&l| l > size) {
                return Err(CliError(format!(
                    "VDI too small for the file: {} would be {size} bytes (--size), {file} is {len} bytes",
                    t.name
                )));
            }
            let opts = CreateOptions {
                size,
                redundancy: Redundancy::ClusterDefault,
                block_size_shift: 0,
                prealloc: false,
            };
            match run(&mut client, &t.name, |e| e.create(&t.name, opts))? {
                ControlDone::Created { .. } => {}
                other => return Err(unexpected(&other)),
            }
            open(&mut client, &t, io.lock)?
        }
        Err(e) => return Err(e),
    };
    if let Some(len) = file_len.filter(|&l| l > info.size) {
        let _ = close(&mut client, &t.name);
        return Err(CliError(format!(
            "VDI too small for the file: {} is {} bytes, {file} is {len} bytes",
            t.name, info.size
        )));
    }
    let total = file_len.unwrap_or(info.size);
    let res = pump(
        cli,
        &mut client,
        &mut *input,
        file,
        &t.name,
        info.size,
        info.object_size,
        qd,
        total,
    );
    let closed = close(&mut client, &t.name);
    res?;
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
/// than a chunk is zeros.
struct Input<'a> {
    read: &'a mut dyn Read,
    ahead: VecDeque<Ahead>,
}

impl Input<'_> {
    /// Fill `buf` from what was read ahead, else from the input.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.ahead.pop_front() {
            Some(Ahead::Zeros(n)) => {
                buf[..n].fill(0);
                Ok(n)
            }
            Some(Ahead::Data(v)) => {
                buf[..v.len()].copy_from_slice(&v);
                Ok(v.len())
            }
            None => read_full(self.read, buf),
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
            let n = read_full(self.read, &mut buf)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if !is_zero(&buf) {
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
    file: &str,
    name: &str,
    vdi_size: u64,
    object_size: u32,
    qd: usize,
    total: u64,
) -> Result<(), CliError> {
    let os = u64::from(object_size);
    let chunk = os.min(MAX_CHUNK);
    let mut input = Input {
        read: input,
        ahead: VecDeque::new(),
    };
    let mut slots = Slots::new(qd, chunk as usize);
    let mut progress = Progress::new("import", total, cli.progress, cli.quiet);
    let mut offset = 0u64;
    let mut eof = false;
    let mut failure: Option<CliError> = None;
    let mut events = Vec::new();
    loop {
        while !eof && failure.is_none() {
            let Some(i) = slots.free() else { break };
            let slot = &mut slots.slots[i];
            let want = chunk.min(vdi_size.saturating_sub(offset)) as usize;
            let n = if want == 0 {
                // The VDI is full: anything more in the input is too much.
                let mut probe = [0u8; 1];
                match input.fill(&mut probe) {
                    Ok(0) => 0,
                    Ok(_) => {
                        failure = Some(CliError(format!(
                            "VDI too small for the input: {name} is {vdi_size} bytes"
                        )));
                        break;
                    }
                    Err(e) => {
                        failure = Some(error::file(file, "read", &e));
                        break;
                    }
                }
            } else {
                match input.fill(&mut slot.buf[..want]) {
                    Ok(n) => n,
                    Err(e) => {
                        failure = Some(error::file(file, "read", &e));
                        break;
                    }
                }
            };
            if n == 0 {
                eof = true;
                break;
            }
            if n < want {
                eof = true;
            }
            let token = i as u64;
            let idx = (offset / os) as u32;
            let obj_end = ((offset / os + 1) * os).min(vdi_size);
            let mut len = n as u64;
            let zero = is_zero(&slot.buf[..n]);
            let allocated = client.engine.entry(idx).is_some_and(|e| e != 0);
            // A zero chunk at the start of an allocated object larger than a
            // chunk: look ahead to see whether the whole object is zeros.
            if zero && allocated && offset % os == 0 && len < obj_end - offset && !eof {
                match input.zeros_ahead(obj_end - offset - len, chunk) {
                    Ok(more) if offset + len + more == obj_end => {
                        input.ahead.clear();
                        len += more;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failure = Some(error::file(file, "read", &e));
                        break;
                    }
                }
            }
            let whole_object = offset % os == 0 && offset + len == obj_end;
            let submitted = if !zero {
                Some(client.engine.write(token, offset, len))
            } else if !allocated {
                None
            } else if whole_object {
                Some(client.engine.discard(token, offset, len))
            } else {
                Some(client.engine.write(token, offset, len))
            };
            match submitted {
                None => progress.add(len),
                Some(Ok(())) => {
                    slot.busy = true;
                    slot.len = len as usize;
                    slot.offset = offset;
                }
                Some(Err(e)) => {
                    failure = Some(error::engine(name, e));
                    break;
                }
            }
            offset += len;
        }
        if !slots.any_busy() && (eof || failure.is_some()) {
            break;
        }
        client.step(&mut slots, &mut events)?;
        for ev in events.drain(..) {
            if let Event::Done { token, result } = ev {
                let slot = &mut slots.slots[token as usize];
                slot.busy = false;
                progress.add(slot.len as u64);
                if let Err(e) = result {
                    failure.get_or_insert_with(|| error::engine(name, e));
                }
            }
        }
    }
    progress.finish();
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
