//! The input of an import, chunk by chunk: chunks are read ahead to learn
//! whether a whole object larger than a chunk is zeros, the holes of a
//! sparse regular file are skipped without reading them, and dense chunks
//! of a regular file can be left in it, to be sent from there.

use std::collections::VecDeque;
use std::io::{self, Read, Seek};

use sheepdog_core::sparse::is_zero;

use crate::io::holes::Holes;
use crate::io::input::read_full;
use crate::io::sendfile::Source;

/// What was read ahead of the chunk being sent: runs of zeros are only
/// counted, the first chunk with data is kept.
enum Ahead {
    Zeros(usize),
    Data(Vec<u8>),
}

/// The input, with chunks read ahead to learn whether a whole object larger
/// than a chunk is zeros, and the holes of a sparse regular file skipped
/// without reading them.
pub struct Input<'a> {
    read: &'a mut dyn Read,
    ahead: VecDeque<Ahead>,
    holes: Option<Holes>,
    /// A regular file whose dense chunks are sent straight from it.
    source: Option<&'a Source>,
    /// Whether the last chunk taken was dense (left in the file).
    pub took_dense: bool,
}

impl<'a> Input<'a> {
    /// `read`, with its holes and the file to send from, when known.
    pub fn new(
        read: &'a mut dyn Read,
        holes: Option<Holes>,
        source: Option<&'a Source>,
    ) -> Input<'a> {
        Input {
            read,
            ahead: VecDeque::new(),
            holes,
            source,
            took_dense: false,
        }
    }

    /// Forget what was read ahead: it was all zeros, and taken as such.
    pub fn drop_ahead(&mut self) {
        self.ahead.clear();
    }

    /// If the next chunk, of up to `want` bytes at `pos` in the file, is
    /// dense and nothing was read ahead, move past it and return its
    /// length: it is sent from the file without being read.
    pub fn take_dense(&mut self, pos: u64, want: usize) -> io::Result<Option<usize>> {
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
    pub fn fill(&mut self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
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
    pub fn zeros_ahead(&mut self, limit: u64, chunk: u64) -> io::Result<u64> {
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
