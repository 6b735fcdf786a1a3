//! Sizes as users write them (`512`, `4M`, `1.5G` is refused) and as
//! `dog` prints them; copies as `--copies` takes them.

use sheepdog_core::redundancy::Redundancy;

/// Parse plain bytes or a number with a binary suffix K, M, G, T or P
/// (optionally followed by `B` or `iB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("bad size '{s}': use bytes or a number with K, M, G, T or P");
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let (num, suffix) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit = suffix.trim_start();
    let unit = unit
        .strip_suffix("iB")
        .or_else(|| unit.strip_suffix('B').filter(|u| !u.is_empty()))
        .unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        "P" | "p" => 50,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

/// Copies (`N`) or an erasure code (`D:P`), as `--copies` and a backup
/// set's manifest write them.
pub fn parse_copies(s: &str) -> Result<Redundancy, String> {
    let num = |x: &str| {
        x.parse::<u8>()
            .map_err(|_| format!("bad --copies '{s}': use N or D:P"))
    };
    let bad = |e: sheepdog_core::error::SizeError| format!("bad --copies '{s}': {e}");
    match s.split_once(':') {
        Some((d, p)) => Redundancy::erasure_code(num(d)?, num(p)?).map_err(bad),
        None => Redundancy::copies(num(s)?).map_err(bad),
    }
}

/// `dog`'s way of printing sizes: MiB and up, one decimal below 10.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["MB", "GB", "TB", "PB", "EB"];
    let mut size = bytes as f64 / (1024.0 * 1024.0);
    let mut i = 0;
    while i < UNITS.len() - 1 && size >= 1024.0 {
        size /= 1024.0;
        i += 1;
    }
    if size >= 10.0 {
        format!("{size:.0} {}", UNITS[i])
    } else {
        format!("{size:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("12M"), Ok(12 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("1P"), Ok(1 << 50));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("4MB"), Ok(4 << 20));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("4X").is_err());
        assert!(parse_size("99999999999P").is_err());
    }

    #[test]
    fn human_sizes_match_dog() {
        assert_eq!(human(12 << 20), "12 MB");
        assert_eq!(human(4 << 20), "4.0 MB");
        assert_eq!(human(0), "0.0 MB");
        assert_eq!(human(1 << 30), "1.0 GB");
        assert_eq!(human(4 << 40), "4.0 TB");
    }
}
