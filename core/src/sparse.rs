//! The sparse rule (PROTOCOL.md §9.4, §9.7): what to do with a range of
//! data bound for a VDI so that it reads back equal while allocating as
//! little as it can. Import follows it for every chunk of a file; NBD's
//! WRITE_ZEROES and TRIM need the same decision.
//!
//! - Data that is not all zeros is written. Into an unallocated object, a
//!   CREATE zeroes what it is not given, so only the part between the
//!   first and last non-zero [`BLOCK`] needs to go ([`trim_zeros`]).
//! - Zeros over an unallocated object are already there: nothing to send.
//! - Zeros over a whole allocated object release it (its index entry
//!   becomes 0; the cluster frees what no snapshot shares).
//! - Zeros over part of an allocated object are written as zeros.

/// The block at which zeros are found and trimmed: 4 KiB, the page size,
/// so that a trimmed write and a hole in a file line up.
pub const BLOCK: usize = 4096;

/// Whether every byte is zero (16 bytes at a time).
pub fn is_zero(buf: &[u8]) -> bool {
    let chunks = buf.chunks_exact(16);
    let tail = chunks.remainder();
    chunks
        .map(|c| u128::from_ne_bytes(c.try_into().unwrap_or([1; 16])))
        .all(|w| w == 0)
        && tail.iter().all(|&b| b == 0)
}

/// The part of `buf` between its first and last non-zero [`BLOCK`]s, as
/// (offset, length); all of `buf` when it holds no zero block at either
/// end, `(0, 0)` when it is all zeros.
pub fn trim_zeros(buf: &[u8]) -> (usize, usize) {
    let blocks = buf.len().div_ceil(BLOCK);
    let block = |i: usize| &buf[i * BLOCK..((i + 1) * BLOCK).min(buf.len())];
    let Some(first) = (0..blocks).find(|&i| !is_zero(block(i))) else {
        return (0, 0);
    };
    let last = (first..blocks)
        .rev()
        .find(|&i| !is_zero(block(i)))
        .unwrap_or(first);
    let start = first * BLOCK;
    let end = ((last + 1) * BLOCK).min(buf.len());
    (start, end - start)
}

/// What the range under the object it falls in holds now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Under {
    /// The object is allocated (its index entry is not 0): it holds data
    /// of its own or shared with a snapshot.
    pub allocated: bool,
    /// The range covers the whole object (or the part of it up to the end
    /// of the VDI).
    pub whole_object: bool,
}

/// What to do with a range of data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write it; into an unallocated object, only its [`trim_zeros`] part.
    Write {
        /// Whether leading and trailing zero blocks may be left out.
        trim: bool,
    },
    /// Write zeros over it (part of an allocated object).
    WriteZeros,
    /// Release the whole object (discard).
    Release,
    /// Nothing: it reads as zeros already.
    Skip,
}

/// The sparse rule for a range whose bytes are all zeros or not (`zero`),
/// over an object as `under` says.
pub fn decide(zero: bool, under: Under) -> Action {
    match (zero, under.allocated, under.whole_object) {
        (false, allocated, _) => Action::Write { trim: !allocated },
        (true, false, _) => Action::Skip,
        (true, true, true) => Action::Release,
        (true, true, false) => Action::WriteZeros,
    }
}
