//! UTC timestamps and calendar buckets.
//!
//! Every bucket in tally is UTC, as in Confluent's export: hours, days, ISO weeks
//! starting on Monday, and calendar months starting on the 1st. A [`Timestamp`] is
//! whole seconds since the Unix epoch; civil-date conversion uses Howard Hinnant's
//! `days_from_civil` algorithm, so no time-zone database is needed and the code
//! behaves identically natively, in Envoy and in the browser.

use std::fmt;

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// The size of a time bucket.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// One UTC hour.
    Hourly,
    /// One UTC day.
    Daily,
    /// One ISO week, Monday 00:00 UTC to the next Monday.
    Weekly,
    /// One calendar month, the 1st 00:00 UTC to the next 1st.
    Monthly,
}

impl Granularity {
    /// Parses `hourly`, `daily`, `weekly` or `monthly` (also `hour`, `day`, `week`, `month`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "hourly" | "hour" => Some(Granularity::Hourly),
            "daily" | "day" => Some(Granularity::Daily),
            "weekly" | "week" => Some(Granularity::Weekly),
            "monthly" | "month" => Some(Granularity::Monthly),
            _ => None,
        }
    }
}

const SECONDS_PER_DAY: i64 = 86_400;

/// Days since the epoch of a proleptic Gregorian civil date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month 1-12, day 1-31) of a day count since the epoch.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl Timestamp {
    /// The timestamp of a civil UTC date and time, or `None` if any field is out of range.
    pub fn from_civil(
        year: i64,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
    ) -> Option<Self> {
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(Timestamp(
            days * SECONDS_PER_DAY
                + i64::from(hour) * 3600
                + i64::from(minute) * 60
                + i64::from(second),
        ))
    }

    /// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.fff]]` followed by `Z`, `+00:00`,
    /// `-00:00` or nothing (read as UTC), or `YYYY-MM-DD HH:MM:SS` (space separator),
    /// or an explicit offset `±HH:MM` which is applied. Returns `None` on anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let s = text.trim();
        let b = s.as_bytes();
        let num = |from: usize, len: usize| -> Option<u32> {
            let part = s.get(from..from + len)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        if b.len() < 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
            return None;
        }
        let year = i64::from(num(0, 4)?);
        let month = num(5, 2)?;
        let day = num(8, 2)?;
        if b.len() == 10 {
            return Timestamp::from_civil(year, month, day, 0, 0, 0);
        }
        if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
            return None;
        }
        let hour = num(11, 2)?;
        let minute = num(14, 2)?;
        let mut i = 16;
        let mut second = 0;
        if b.get(i) == Some(&b':') {
            second = num(17, 2)?;
            i = 19;
            if b.get(i) == Some(&b'.') {
                i += 1;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
        }
        let base = Timestamp::from_civil(year, month, day, hour, minute, second)?;
        let rest = s.get(i..)?;
        let offset = match rest {
            "" | "Z" | "z" => 0,
            _ => {
                let rb = rest.as_bytes();
                let sign = match rb.first() {
                    Some(b'+') => 1,
                    Some(b'-') => -1,
                    _ => return None,
                };
                if rb.len() != 6 || rb.get(3) != Some(&b':') {
                    return None;
                }
                let oh = num(i + 1, 2)?;
                let om = num(i + 4, 2)?;
                if oh > 23 || om > 59 {
                    return None;
                }
                sign * (i64::from(oh) * 3600 + i64::from(om) * 60)
            }
        };
        Some(Timestamp(base.0 - offset))
    }

    /// Days since the epoch and seconds into that day.
    fn split(self) -> (i64, i64) {
        (
            self.0.div_euclid(SECONDS_PER_DAY),
            self.0.rem_euclid(SECONDS_PER_DAY),
        )
    }

    /// The civil date (year, month, day) in UTC.
    pub fn date(self) -> (i64, u32, u32) {
        civil_from_days(self.split().0)
    }

    /// The start of the bucket of `granularity` that contains this instant.
    pub fn floor(self, granularity: Granularity) -> Timestamp {
        let (days, secs) = self.split();
        match granularity {
            Granularity::Hourly => Timestamp(self.0 - secs % 3600),
            Granularity::Daily => Timestamp(days * SECONDS_PER_DAY),
            Granularity::Weekly => {
                // 1970-01-01 was a Thursday: Monday-based weekday is (days + 3) mod 7.
                let monday = days - (days + 3).rem_euclid(7);
                Timestamp(monday * SECONDS_PER_DAY)
            }
            Granularity::Monthly => {
                let (y, m, _) = civil_from_days(days);
                Timestamp(days_from_civil(y, m, 1) * SECONDS_PER_DAY)
            }
        }
    }

    /// The start of the bucket that follows the one containing this instant.
    pub fn next_bucket(self, granularity: Granularity) -> Timestamp {
        let start = self.floor(granularity);
        match granularity {
            Granularity::Hourly => Timestamp(start.0 + 3600),
            Granularity::Daily => Timestamp(start.0 + SECONDS_PER_DAY),
            Granularity::Weekly => Timestamp(start.0 + 7 * SECONDS_PER_DAY),
            Granularity::Monthly => {
                let (y, m, _) = start.date();
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                Timestamp(days_from_civil(ny, nm, 1) * SECONDS_PER_DAY)
            }
        }
    }

    /// `YYYY-MM-DD`.
    pub fn date_string(self) -> String {
        let (y, m, d) = self.date();
        format!("{y:04}-{m:02}-{d:02}")
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with a `Z`: `2026-04-01T00:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (days, secs) = self.split();
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format_round_trip() {
        for (text, shown) in [
            ("2026-04-01", "2026-04-01T00:00:00Z"),
            ("2026-04-01T12:34:56Z", "2026-04-01T12:34:56Z"),
            ("2026-04-01T12:34:56.789+00:00", "2026-04-01T12:34:56Z"),
            ("2026-04-01 12:34:56", "2026-04-01T12:34:56Z"),
            ("2026-04-01T02:00:00+02:00", "2026-04-01T00:00:00Z"),
            ("2024-02-29T00:00", "2024-02-29T00:00:00Z"),
        ] {
            assert_eq!(Timestamp::parse(text).unwrap().to_string(), shown, "{text}");
        }
        for bad in [
            "",
            "2026-13-01",
            "2025-02-29",
            "2026/04/01",
            "2026-04-01T25:00",
            "2026-04-01Tx",
            "2026-04-01T00:00:00+0200",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn buckets_are_utc_iso_weeks_and_calendar_months() {
        let t = Timestamp::parse("2026-11-25T13:45:00Z").unwrap(); // a Wednesday
        let cases = [
            (
                Granularity::Hourly,
                "2026-11-25T13:00:00Z",
                "2026-11-25T14:00:00Z",
            ),
            (
                Granularity::Daily,
                "2026-11-25T00:00:00Z",
                "2026-11-26T00:00:00Z",
            ),
            (
                Granularity::Weekly,
                "2026-11-23T00:00:00Z",
                "2026-11-30T00:00:00Z",
            ),
            (
                Granularity::Monthly,
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
        ];
        for (g, start, next) in cases {
            assert_eq!(t.floor(g).to_string(), start, "{g:?}");
            assert_eq!(t.next_bucket(g).to_string(), next, "{g:?}");
        }
        let dec = Timestamp::parse("2026-12-31T23:59:59Z").unwrap();
        assert_eq!(
            dec.next_bucket(Granularity::Monthly).to_string(),
            "2027-01-01T00:00:00Z"
        );
        let monday = Timestamp::parse("2026-11-23T00:00:00Z").unwrap();
        assert_eq!(monday.floor(Granularity::Weekly), monday);
        let before_epoch = Timestamp::parse("1969-12-31T23:00:00Z").unwrap();
        assert_eq!(
            before_epoch.floor(Granularity::Weekly).to_string(),
            "1969-12-29T00:00:00Z"
        );
    }

    #[test]
    fn civil_round_trip_over_four_centuries() {
        for days in (-200_000..200_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
