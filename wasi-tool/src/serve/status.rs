//! `base:allocation` from the cached index: an unallocated object is a
//! hole that reads as zeros, an allocated one is data. No request to the
//! cluster is needed.

use sheepdog_core::nbd::base_allocation::{HOLE, ZERO};

/// The extents (length, flags) of `offset..offset + len` of a volume of
/// `size` bytes in objects of `object_size` bytes, where `allocated(idx)`
/// says whether object `idx` has data; runs of one status are merged, and
/// `req_one` stops after the first. `len` is non-zero and the range
/// within the volume (the request was checked).
pub fn extents(
    offset: u64,
    len: u32,
    size: u64,
    object_size: u32,
    req_one: bool,
    allocated: impl Fn(u32) -> bool,
) -> Vec<(u32, u32)> {
    let os = u64::from(object_size.max(1));
    let end = (offset + u64::from(len)).min(size);
    let mut out: Vec<(u32, u32)> = Vec::new();
    let mut pos = offset;
    while pos < end {
        let idx = pos / os;
        let piece_end = ((idx + 1) * os).min(end);
        let flags = match u32::try_from(idx) {
            Ok(i) if allocated(i) => 0,
            _ => HOLE | ZERO,
        };
        // The whole range fits in u32 (len does), so every piece does.
        let piece = (piece_end - pos) as u32;
        match out.last_mut() {
            Some((l, f)) if *f == flags => *l += piece,
            Some(_) if req_one => break,
            _ => out.push((piece, flags)),
        }
        pos = piece_end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u32 = 1 << 20;

    #[test]
    fn holes_and_data_are_merged_by_status() {
        // Objects 0, 1 allocated, 2 not, 3 allocated; 4 MiB objects.
        let alloc = |i: u32| i != 2;
        let e = extents(0, 16 * MIB, 16 << 20, 4 * MIB, false, alloc);
        assert_eq!(e, [(8 * MIB, 0), (4 * MIB, HOLE | ZERO), (4 * MIB, 0)]);
        // Unaligned start and end inside objects.
        let e = extents(6 << 20, 4 * MIB, 16 << 20, 4 * MIB, false, alloc);
        assert_eq!(e, [(2 * MIB, 0), (2 * MIB, HOLE | ZERO)]);
    }

    #[test]
    fn req_one_gives_one_extent_within_the_request() {
        let e = extents(0, 16 * MIB, 16 << 20, 4 * MIB, true, |i| i != 2);
        assert_eq!(e, [(8 * MIB, 0)]);
        let e = extents(8 << 20, 8 * MIB, 16 << 20, 4 * MIB, true, |i| i != 2);
        assert_eq!(e, [(4 * MIB, HOLE | ZERO)]);
    }

    #[test]
    fn the_end_of_an_unaligned_volume_is_an_extent() {
        let size = (8 << 20) + 512;
        let e = extents(0, size as u32, size, 4 * MIB, false, |_| false);
        assert_eq!(e, [(size as u32, HOLE | ZERO)]);
    }
}
