//! How import and export cut a VDI into requests: how many are in flight
//! (`--queue-depth`) and how large each is (`--request-size`).

use crate::error::CliError;
use crate::size::parse_size;

/// Largest request either command sends, and the default of import: a
/// whole object up to this size, as `dog` writes them.
pub const MAX_REQUEST: u64 = 4 << 20;

/// Default largest read of export. `sheep` sets glibc's mmap threshold to
/// 512 KiB (`mallopt(M_MMAP_THRESHOLD, 512 * 1024)` in sheep.c) and
/// allocates every request's buffer with `valloc(data_length)`: a larger
/// read gets a fresh mapping that faults in and zeroes every page before
/// the object is read into it, which costs the cluster more CPU than the
/// read itself. Below the threshold, less valloc's page of alignment
/// slack, the buffer comes from the heap and is reused. Measured in
/// BENCHMARKS.md: it halves the time of a dense export.
pub const EXPORT_REQUEST: u64 = 504 << 10;

/// Requests are cut at this alignment.
const ALIGN: u64 = 4096;

/// The largest request: `request_size` (`--request-size`) if given (a
/// multiple of 4K, at most 4M), else `default`.
pub fn request_size(request_size: Option<&str>, default: u64) -> Result<u64, CliError> {
    let Some(s) = request_size else {
        return Ok(default);
    };
    match parse_size(s) {
        Ok(n) if n != 0 && n % ALIGN == 0 && n <= MAX_REQUEST => Ok(n),
        _ => Err(CliError::msg(format!(
            "bad --request-size {s}: use a multiple of 4K from 4K to 4M"
        ))),
    }
}

/// The length of the requests that cover an object of `object_size` bytes
/// in equal parts of at most `max` bytes (the last part may be shorter),
/// 4 KiB aligned. `max` is a multiple of 4 KiB.
pub fn part_len(object_size: u64, max: u64) -> u64 {
    if object_size <= max {
        return object_size;
    }
    let parts = object_size.div_ceil(max);
    object_size.div_ceil(parts).next_multiple_of(ALIGN).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_split_into_equal_aligned_parts() {
        // 4 MiB objects: nine reads of 456 KiB (the last 448 KiB).
        assert_eq!(part_len(4 << 20, EXPORT_REQUEST), 456 << 10);
        assert_eq!(part_len(4 << 20, MAX_REQUEST), 4 << 20);
        assert_eq!(part_len(1 << 20, EXPORT_REQUEST), 344 << 10);
        assert_eq!(part_len(8 << 20, EXPORT_REQUEST), 484 << 10);
        assert_eq!(part_len(8 << 20, MAX_REQUEST), 4 << 20);
        assert_eq!(part_len(4 << 20, 4096), 4096);
        // Smaller objects than the limit are one request.
        assert_eq!(part_len(1 << 20, 4 << 20), 1 << 20);
        for os in [1u64 << 20, 4 << 20, 8 << 20, 1 << 31] {
            for max in [
                4096,
                12 << 10,
                456 << 10,
                EXPORT_REQUEST,
                1 << 20,
                MAX_REQUEST,
            ] {
                let p = part_len(os, max);
                assert!(p <= max && p % ALIGN == 0, "{os} {max} -> {p}");
                // No more requests than the fewest that could do it.
                assert_eq!(os.div_ceil(p), os.div_ceil(max), "{os} {max} -> {p}");
            }
        }
    }
}
