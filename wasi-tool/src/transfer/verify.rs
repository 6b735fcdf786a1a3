//! `--verify` for import and export: the CRC32 (crc32fast) of each
//! object's bytes as they were sent (import) or written out (export), kept
//! as four bytes per object; then every object is read again, a part at a
//! time, and its CRC32 compared. No second copy of the data is held.

use std::collections::{BTreeSet, HashMap};

use crc32fast::Hasher;

use super::pipe::Pipe;
use crate::cluster::Client;
use crate::error::{self, CliError};

/// Zeros to hash holes and unallocated objects with.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The CRC32 of each object's bytes in `0..end`, from pieces that arrive
/// in any order.
pub struct Crcs {
    os: u64,
    end: u64,
    /// Finished objects.
    done: Vec<Option<u32>>,
    /// Pieces of objects not yet whole: start, length, CRC state.
    partial: HashMap<u32, Vec<(u64, u64, Hasher)>>,
    /// Objects left out (salvaged: the cluster could not read them).
    skipped: BTreeSet<u32>,
}

impl Crcs {
    /// For objects of `os` bytes, covering bytes up to `end`.
    pub fn new(os: u64, end: u64) -> Crcs {
        Crcs {
            os,
            end,
            done: vec![None; end.div_ceil(os) as usize],
            partial: HashMap::new(),
            skipped: BTreeSet::new(),
        }
    }

    /// `bytes` at `offset`.
    pub fn add(&mut self, offset: u64, bytes: &[u8]) {
        let mut at = 0usize;
        while at < bytes.len() {
            let start = offset + at as u64;
            let n = ((self.object_end(start) - start) as usize).min(bytes.len() - at);
            let mut h = Hasher::new();
            h.update(&bytes[at..at + n]);
            self.piece(start, n as u64, h);
            at += n;
        }
    }

    /// `len` zeros at `offset`.
    pub fn add_zeros(&mut self, offset: u64, len: u64) {
        let mut at = offset;
        while at < offset + len {
            let n = (self.object_end(at) - at).min(offset + len - at);
            self.piece(at, n, zeros_hasher(n));
            at += n;
        }
    }

    /// Leave object `idx` out.
    pub fn skip(&mut self, idx: u32) {
        self.skipped.insert(idx);
        self.partial.remove(&idx);
        if let Some(d) = self.done.get_mut(idx as usize) {
            *d = None;
        }
    }

    /// The bytes end at `end` after all (an input shorter than the VDI):
    /// the last object is whole with what it has.
    pub fn end_at(&mut self, end: u64) {
        self.end = end.min(self.end);
        self.done.truncate(self.end.div_ceil(self.os) as usize);
        let idxs: Vec<u32> = self.partial.keys().copied().collect();
        for idx in idxs {
            if u64::from(idx) * self.os >= self.end {
                self.partial.remove(&idx);
            } else {
                self.settle(idx);
            }
        }
    }

    /// Bytes `start..end` of object `idx` that are counted.
    pub fn range(&self, idx: u32) -> (u64, u64) {
        let start = u64::from(idx) * self.os;
        (start, (start + self.os).min(self.end))
    }

    /// Object `idx`'s CRC32, if it is whole.
    pub fn get(&self, idx: u32) -> Option<u32> {
        self.done.get(idx as usize).copied().flatten()
    }

    /// Whether object `idx` is left out.
    pub fn is_skipped(&self, idx: u32) -> bool {
        self.skipped.contains(&idx)
    }

    /// Objects counted.
    pub fn objects(&self) -> u32 {
        self.done.len() as u32
    }

    fn object_end(&self, at: u64) -> u64 {
        (at / self.os + 1) * self.os
    }

    fn piece(&mut self, start: u64, len: u64, h: Hasher) {
        let idx = (start / self.os) as u32;
        if start >= self.end || self.skipped.contains(&idx) {
            return;
        }
        self.partial.entry(idx).or_default().push((start, len, h));
        self.settle(idx);
    }

    /// Combine object `idx`'s pieces, in order, once they cover it.
    fn settle(&mut self, idx: u32) {
        let (start, end) = self.range(idx);
        let Some(pieces) = self.partial.get_mut(&idx) else {
            return;
        };
        let covered: u64 = pieces.iter().map(|p| p.1).sum();
        if covered < end - start {
            return;
        }
        pieces.sort_by_key(|p| p.0);
        let mut pieces = self.partial.remove(&idx).unwrap_or_default().into_iter();
        let Some((_, _, mut h)) = pieces.next() else {
            return;
        };
        for (_, _, next) in pieces {
            h.combine(&next);
        }
        if let Some(d) = self.done.get_mut(idx as usize) {
            *d = Some(h.finalize());
        }
    }
}

/// What was verified.
pub struct Verified {
    /// Objects read again and found equal.
    pub objects: u32,
    /// Their bytes.
    pub bytes: u64,
}

/// Read every object `want` has a CRC32 for again, `part` bytes at a time
/// with `depth` reads in flight, and compare. `what` says where `want`'s
/// bytes came from ("sent", "written out").
/// A CRC32 hasher that has seen `len` zero bytes.
pub fn zeros_hasher(len: u64) -> Hasher {
    let mut h = Hasher::new();
    let mut left = len;
    while left > 0 {
        let k = left.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..k]);
        left -= k as u64;
    }
    h
}

pub fn check(
    client: &mut Client,
    name: &str,
    want: &Crcs,
    what: &str,
    part: u64,
    depth: usize,
) -> Result<Verified, CliError> {
    let mut got = Crcs::new(want.os, want.end);
    let mut pipe = Pipe::new(depth);
    let mut starts: HashMap<u64, u64> = HashMap::new();
    let mut next = 0u32;
    let mut at: Option<u64> = None;
    let mut checked = 0u32;
    let mut verified = Verified {
        objects: 0,
        bytes: 0,
    };
    let objects = want.objects();
    while checked < objects {
        // Submit the next parts while there is room.
        while pipe.has_room() && next < objects {
            if want.get(next).is_none() {
                if !want.is_skipped(next) {
                    // Never claimed as checked when it was not hashed.
                    let (start, end) = want.range(next);
                    return Err(CliError::msg(format!(
                        "verify of {name}: object {next} (bytes {start}..{end}) was not {what} whole, so it cannot be checked"
                    )));
                }
                next += 1;
                continue;
            }
            let (start, end) = want.range(next);
            let from = at.unwrap_or(start);
            let n = part.min(end - from);
            let t = pipe.submit(client, vec![0u8; n as usize], name, |e, t| {
                e.read(t, from, n)
            })?;
            starts.insert(t, from);
            if from + n >= end {
                at = None;
                next += 1;
            } else {
                at = Some(from + n);
            }
        }
        // Objects done: compare those that are whole, in order.
        while checked < next {
            let Some(w) = want.get(checked) else {
                checked += 1;
                continue;
            };
            let Some(g) = got.get(checked) else { break };
            let (start, end) = want.range(checked);
            if g != w {
                return Err(CliError::msg(format!(
                    "verify failed: object {checked} of {name} (bytes {start}..{end}) \
                     holds data of CRC32 {g:08x}, but what was {what} has {w:08x}"
                )));
            }
            verified.objects += 1;
            verified.bytes += end - start;
            checked += 1;
        }
        if checked >= objects {
            break;
        }
        if pipe.open() == 0 {
            if next >= objects {
                return Err(CliError::msg(format!(
                    "verify of {name}: object {checked} was read again but not whole"
                )));
            }
            continue;
        }
        for (token, buf, result) in pipe.wait(client)? {
            let start = starts.remove(&token).unwrap_or(0);
            result.map_err(|e| {
                let idx = start / want.os;
                error::engine(&format!("{name} (verifying object {idx})"), e)
            })?;
            got.add(start, &buf);
        }
    }
    Ok(verified)
}
