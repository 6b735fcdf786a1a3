//! Dates in UTC from seconds since 1970, with no time zone database: as
//! `dog` prints them in a listing, and as a backup set's manifest and
//! migrate's snapshot tags write them.

/// `(year, month, day, hour, minute, second)` of `secs` (the civil date
/// from days since 1970-01-01, H. Hinnant's algorithm).
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `YYYY-MM-DD HH:MM`, as dog's listing.
pub fn minutes(secs: u64) -> String {
    let (y, m, d, hh, mm, _) = civil(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}")
}

/// `YYYY-MM-DD HH:MM:SS`, as dog's epoch history.
pub fn seconds(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
}

/// `Www Mmm dd HH:MM:SS YYYY`, as C's `ctime` (dog's "created at").
pub fn ctime(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss) = civil(secs);
    let day = DAYS[(secs / 86_400 % 7) as usize];
    let month = MONTHS[(m - 1).clamp(0, 11) as usize];
    format!("{day} {month} {d:>2} {hh:02}:{mm:02}:{ss:02} {y}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` (ISO 8601).
pub fn iso(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dog_dates() {
        // dog cluster info on a real cluster: "Cluster created at Sat Dec
        // 5 20:33:30 2026" and an epoch at "2026-12-05 20:33:30".
        assert_eq!(ctime(1_796_502_810), "Sat Dec  5 20:33:30 2026");
        assert_eq!(seconds(1_796_502_810), "2026-12-05 20:33:30");
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(minutes(0), "1970-01-01 00:00");
        assert_eq!(minutes(1_764_072_000), "2025-11-25 12:00");
        assert_eq!(minutes(951_782_400), "2000-02-29 00:00");
        assert_eq!(iso(1_764_072_059), "2025-11-25T12:00:59Z");
    }
}
