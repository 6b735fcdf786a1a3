//! Outputs named on the command line: a file, or stdout for `-`. A
//! command that fails removes the file it created or truncated, so that
//! what it left is never taken for a whole copy; a device, a pipe or
//! stdout is never removed.

use std::cell::Cell;
use std::io::{self, Write};

use super::outfile::OutFile;
use super::STDIO;
use crate::error::{self, CliError};
use sheepdog_core::sparse::is_zero;

/// Buffered writes to a stream go out in pieces this large.
const STREAM_BUF: usize = 1 << 20;

/// Where a command writes.
pub struct OutputPath {
    path: String,
    /// The path is a regular file, or nothing yet.
    regular: bool,
    /// This command made or emptied the file.
    touched: Cell<bool>,
}

impl OutputPath {
    /// The output `path` (stdout for `-`), as it is before the command
    /// writes.
    pub fn new(path: &str) -> OutputPath {
        let regular = path != STDIO
            && match std::fs::symlink_metadata(path) {
                Err(_) => true,
                Ok(m) => m.is_file(),
            };
        OutputPath {
            path: path.to_owned(),
            regular,
            touched: Cell::new(false),
        }
    }

    /// Whether it is stdout.
    pub fn is_stdout(&self) -> bool {
        self.path == STDIO
    }

    /// The path as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Written in order: a buffered stdout, or the file (created, or
    /// truncated).
    pub fn writer(&self) -> Result<Box<dyn Write>, CliError> {
        if self.is_stdout() {
            return Ok(Box::new(io::BufWriter::with_capacity(
                STREAM_BUF,
                io::stdout().lock(),
            )));
        }
        let f = std::fs::File::create(&self.path).map_err(|e| self.error(&e))?;
        self.touched.set(self.regular);
        Ok(Box::new(io::BufWriter::with_capacity(STREAM_BUF, f)))
    }

    /// An image of `size` bytes: a regular file (new or existing) is
    /// sized and written at offsets with holes; a device, pipe or stdout
    /// is written in order.
    pub fn image(&self, size: u64) -> Result<Output, CliError> {
        if self.is_stdout() {
            return Ok(Output::Stream(self.writer()?));
        }
        let opened = match std::fs::metadata(&self.path) {
            Ok(meta) if !meta.is_file() => std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)
                .map(|f| Output::Stream(Box::new(io::BufWriter::with_capacity(STREAM_BUF, f)))),
            _ => OutFile::create(&self.path, size).map(|f| {
                self.touched.set(self.regular);
                Output::File(f)
            }),
        };
        opened.map_err(|e| self.error(&e))
    }

    /// The error of a failed write.
    pub fn error(&self, e: &io::Error) -> CliError {
        error::file(&self.path, "write", e)
    }

    /// The command failed: remove the file if it made or emptied it.
    pub fn abandon(&self) {
        if self.touched.get() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An image being written out.
pub enum Output {
    /// A regular file: random access, holes.
    File(OutFile),
    /// A pipe, a device or stdout: in order, zeros written out.
    Stream(Box<dyn Write>),
}

/// Blocks of this size (aligned in the file) that are all zeros stay holes
/// in a regular file.
const HOLE_BLOCK: u64 = 64 << 10;

/// Write `data` at `offset`, leaving all-zero blocks as holes (the file
/// was sized up front, so they read as zeros). Blocks are aligned to the
/// file, not to `data`, so that where reads are cut makes no difference.
pub fn write_sparse(f: &mut OutFile, offset: u64, data: &[u8]) -> io::Result<()> {
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
