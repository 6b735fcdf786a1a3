//! Inputs named on the command line: a file, or stdin for `-`.

use std::fs::File;
use std::io::{self, Read};

use super::holes::Holes;
use super::sendfile::Source;
use super::STDIO;
use crate::error::{self, CliError};

/// A reader over `path`, or over stdin for `-`.
pub fn reader(path: &str) -> Result<Box<dyn Read>, CliError> {
    if path == STDIO {
        return Ok(Box::new(io::stdin().lock()));
    }
    Ok(Box::new(open(path)?))
}

/// An image to import: its bytes, its length when it is a regular file,
/// its holes, and the file to send dense chunks from without reading them.
pub struct Image {
    /// The bytes, in order.
    pub read: Box<dyn Read>,
    /// The length of a regular file (stdin and devices: unknown).
    pub len: Option<u64>,
    /// The holes of a sparse regular file.
    pub holes: Option<Holes>,
    /// The regular file, for sending from; `None` when every byte must
    /// go through the tool (`direct` false).
    pub source: Option<Source>,
}

/// Open the image `path` (stdin for `-`); `direct`: dense chunks may go
/// from the file to the socket without being read.
pub fn image(path: &str, direct: bool) -> Result<Image, CliError> {
    if path == STDIO {
        return Ok(Image {
            read: Box::new(io::stdin().lock()),
            len: None,
            holes: None,
            source: None,
        });
    }
    let f = open(path)?;
    let meta = f.metadata().map_err(|e| error::file(path, "read", &e))?;
    let len = meta.is_file().then_some(meta.len());
    let holes = len.and_then(|_| Holes::of(&f));
    let source = if direct { Source::of(&f) } else { None };
    Ok(Image {
        read: Box::new(f),
        len,
        holes,
        source,
    })
}

/// Open `path` for reading; a directory is refused by name.
fn open(path: &str) -> Result<File, CliError> {
    let f = File::open(path).map_err(|e| error::file(path, "open", &e))?;
    let meta = f.metadata().map_err(|e| error::file(path, "read", &e))?;
    if meta.is_dir() {
        return Err(CliError::msg(format!(
            "cannot read {path}: it is a directory"
        )));
    }
    Ok(f)
}

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

/// Read what is there (at least a byte, unless at the end).
pub fn read_some(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            res => return res,
        }
    }
}
