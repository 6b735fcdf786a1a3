//! The plain in-memory model of every disk that simulated reads are
//! checked against.
//!
//! Next to the bytes, the model keeps which of them it knows: a write or
//! discard that ended in an error (against a hostile server) may have left
//! old bytes, new bytes or a mix per object, so its range is unknown until
//! a write that succeeds covers it again. Unknown bytes are kept as a set
//! of ranges, which stays empty unless something failed.

use std::collections::BTreeMap;
use std::ops::Range;

/// A set of disjoint, non-adjacent byte ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges {
    /// Start → end.
    map: BTreeMap<u64, u64>,
}

impl Ranges {
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes in the set.
    pub fn total(&self) -> u64 {
        self.map.iter().map(|(s, e)| e - s).sum()
    }

    /// Add `r`.
    pub fn insert(&mut self, r: Range<u64>) {
        if r.is_empty() {
            return;
        }
        let (mut start, mut end) = (r.start, r.end);
        // Merge with every range that overlaps or touches `start..end`.
        let touching: Vec<(u64, u64)> = self
            .map
            .range(..=end)
            .rev()
            .take_while(|&(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.map.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.map.insert(start, end);
    }

    /// Take `r` out.
    pub fn remove(&mut self, r: Range<u64>) {
        if r.is_empty() {
            return;
        }
        let hit: Vec<(u64, u64)> = self
            .map
            .range(..r.end)
            .rev()
            .take_while(|&(_, &e)| e > r.start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in hit {
            self.map.remove(&s);
            if s < r.start {
                self.map.insert(s, r.start);
            }
            if e > r.end {
                self.map.insert(r.end, e);
            }
        }
    }

    /// The parts of the set inside `r`, in order.
    pub fn within(&self, r: Range<u64>) -> Vec<Range<u64>> {
        let mut out: Vec<Range<u64>> = self
            .map
            .range(..r.end)
            .rev()
            .take_while(|&(_, &e)| e > r.start)
            .map(|(&s, &e)| s.max(r.start)..e.min(r.end))
            .collect();
        out.reverse();
        out
    }

    /// The parts of `r` outside the set, in order.
    pub fn gaps(&self, r: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut at = r.start;
        for hole in self.within(r.clone()) {
            if hole.start > at {
                out.push(at..hole.start);
            }
            at = hole.end;
        }
        if at < r.end {
            out.push(at..r.end);
        }
        out
    }
}

/// The contents of one VDI as far as the model knows them.
#[derive(Clone, Debug, Default)]
pub struct Contents {
    /// The bytes; those in `unknown` are whatever was last written there.
    pub bytes: Vec<u8>,
    /// Bytes whose value on the cluster is not known.
    unknown: Ranges,
}

impl Contents {
    /// `size` known zero bytes.
    pub fn zeros(size: u64) -> Contents {
        Contents {
            bytes: vec![0u8; size as usize],
            unknown: Ranges::default(),
        }
    }

    /// `size` bytes, none of them known.
    pub fn unknown(size: u64) -> Contents {
        let mut c = Contents::zeros(size);
        c.forget(0..size);
        c
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether the VDI is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes of `r`.
    pub fn slice(&self, r: Range<u64>) -> &[u8] {
        &self.bytes[r.start as usize..r.end as usize]
    }

    /// Put `data` at `off` (known or not is decided separately, by
    /// [`Contents::learn`] or [`Contents::forget`]).
    pub fn put(&mut self, off: u64, data: &[u8]) {
        self.bytes[off as usize..off as usize + data.len()].copy_from_slice(data);
    }

    /// Zero `r`.
    pub fn zero(&mut self, r: Range<u64>) {
        self.bytes[r.start as usize..r.end as usize].fill(0);
    }

    /// The bytes of `r` are now known to be what the model holds.
    pub fn learn(&mut self, r: Range<u64>) {
        self.unknown.remove(r);
    }

    /// The bytes of `r` are no longer known.
    pub fn forget(&mut self, r: Range<u64>) {
        let end = r.end.min(self.len());
        self.unknown.insert(r.start..end);
    }

    /// Grow (or keep) to `size` bytes; the new ones are zeros, known or not.
    pub fn grow(&mut self, size: u64, known: bool) {
        let old = self.len();
        if size <= old {
            return;
        }
        self.bytes.resize(size as usize, 0);
        if !known {
            self.forget(old..size);
        }
    }

    /// The unknown parts of `r`.
    pub fn unknown_in(&self, r: Range<u64>) -> Vec<Range<u64>> {
        self.unknown.within(r)
    }

    /// Bytes not known.
    pub fn unknown_bytes(&self) -> u64 {
        self.unknown.total()
    }

    /// Whether every byte is known.
    pub fn all_known(&self) -> bool {
        self.unknown.is_empty()
    }

    /// The first known byte of `r` (an offset into the VDI) where `got`
    /// (the bytes of `r` as read) differs from the model.
    pub fn first_mismatch(&self, r: Range<u64>, got: &[u8]) -> Option<u64> {
        first_mismatch(self.slice(r.clone()), got, r.start, &self.unknown)
    }
}

/// The first offset (counted from `base`) of a byte outside `skip` (ranges
/// counted from `base` too) where `got` differs from `expected`.
pub fn first_mismatch(expected: &[u8], got: &[u8], base: u64, skip: &Ranges) -> Option<u64> {
    let len = expected.len().min(got.len()) as u64;
    if expected.len() != got.len() {
        return Some(base + len);
    }
    for part in skip.gaps(base..base + len) {
        let (s, e) = ((part.start - base) as usize, (part.end - base) as usize);
        if expected[s..e] != got[s..e] {
            let at = (s..e).find(|&i| expected[i] != got[i]).unwrap_or(s);
            return Some(base + at as u64);
        }
    }
    None
}

/// A snapshot as the model knows it.
#[derive(Clone, Debug)]
pub struct SnapModel {
    /// Its VID.
    pub vid: u32,
    /// Its contents, when known: a snapshot taken by another client while
    /// writes were in flight may hold any of them, and is not checked.
    pub data: Option<Contents>,
}

/// A disk: its working VDI (if not deleted) and its snapshots.
#[derive(Clone, Debug)]
pub struct DiskModel {
    /// VDI name.
    pub name: String,
    /// Contents of the working VDI.
    pub working: Option<Contents>,
    /// Snapshots, oldest first.
    pub snapshots: Vec<SnapModel>,
}

impl DiskModel {
    /// A fresh disk of `size` zero bytes.
    pub fn new(name: String, size: u64) -> DiskModel {
        DiskModel {
            name,
            working: Some(Contents::zeros(size)),
            snapshots: Vec::new(),
        }
    }

    /// Size of the working VDI.
    pub fn size(&self) -> u64 {
        self.working.as_ref().map_or(0, Contents::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(r: &Ranges) -> Vec<Range<u64>> {
        r.within(0..u64::MAX)
    }

    #[test]
    fn ranges_merge_and_split() {
        let mut r = Ranges::default();
        r.insert(10..20);
        r.insert(30..40);
        r.insert(20..25);
        assert_eq!(list(&r), vec![10..25, 30..40]);
        r.insert(5..35);
        assert_eq!(list(&r), vec![5..40]);
        r.remove(10..12);
        assert_eq!(list(&r), vec![5..10, 12..40]);
        r.remove(0..6);
        r.remove(39..100);
        assert_eq!(list(&r), vec![6..10, 12..39]);
        assert_eq!(r.total(), 4 + 27);
        assert_eq!(r.within(8..13), vec![8..10, 12..13]);
        assert_eq!(r.gaps(0..50), vec![0..6, 10..12, 39..50]);
        r.remove(0..100);
        assert!(r.is_empty());
        assert_eq!(r.gaps(3..7), vec![3..7]);
    }

    #[test]
    fn contents_compare_known_bytes_only() {
        let mut c = Contents::zeros(100);
        c.put(10, &[1; 10]);
        c.forget(10..15);
        let mut got = c.slice(0..100).to_vec();
        got[12] = 9;
        assert_eq!(c.first_mismatch(0..100, &got), None);
        got[17] = 9;
        assert_eq!(c.first_mismatch(0..100, &got), Some(17));
        assert_eq!(c.first_mismatch(16..20, &got[16..20]), Some(17));
        c.learn(0..100);
        assert_eq!(c.first_mismatch(0..100, &got), Some(12));
        c.grow(120, false);
        assert_eq!(c.unknown_in(0..200), vec![100..120]);
        assert_eq!(Contents::unknown(8).unknown_bytes(), 8);
    }
}
