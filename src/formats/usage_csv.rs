//! Reader of tally's usage CSV ([`crate::usage`]) into usage samples, handed
//! to the sink borrowed ([`Sink::usage_ref`]).
//!
//! Columns are found by name; `version` is optional (absent means 1) and a row of
//! a newer version is rejected with a message saying so. `bucket_end` is optional
//! (a sample without it is an instant at `bucket_start`). Quantities are
//! non-negative decimals (the plugin writes integers). An `org_id` column, when
//! present, overrides the organization given for the file.

use super::csv::{word8, ColumnMap, ColumnSpec, CsvReader, ParseRow, Record};
use super::{parse_decimal, parse_time, Sink};
use crate::error::Error;
use crate::model::UsageRef;
use crate::time::Timestamp;
use crate::usage::USAGE_CSV_VERSION;

/// The usage CSV's columns and accepted names, in the order `parse_row` takes
/// their values.
pub const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::optional("version", &["version"]),
    ColumnSpec::required(
        "bucket_start",
        &["bucket_start", "start", "timestamp", "interval_start"],
    ),
    ColumnSpec::optional("bucket_end", &["bucket_end", "end", "interval_end"]),
    ColumnSpec::required(
        "cluster",
        &["cluster", "cluster_id", "resource_id", "resource"],
    ),
    ColumnSpec::required("principal", &["principal", "owner_id", "principal_id"]),
    ColumnSpec::optional("principal_source", &["principal_source"]),
    ColumnSpec::optional("topic", &["topic", "entity"]),
    ColumnSpec::required("metric", &["metric"]),
    ColumnSpec::required("value", &["value", "quantity"]),
    ColumnSpec::optional("org_id", &["org_id", "organization_id"]),
];

/// Streaming reader of a usage CSV.
pub type UsageReader = CsvReader<UsageRows>;

/// The row parser of [`UsageReader`]: each row goes to the sink as a
/// [`UsageRef`] borrowed from the record, so no text is copied per row.
pub struct UsageRows {
    file: String,
    org_id: String,
    interval: LastInterval,
}

/// A usage CSV reader for `file`, rows tagged with `org_id` unless the file has its own.
pub fn reader(file: &str, org_id: &str, max_record: usize) -> UsageReader {
    CsvReader::new(
        file,
        COLUMNS,
        max_record,
        UsageRows {
            file: file.to_string(),
            org_id: org_id.to_string(),
            interval: LastInterval::default(),
        },
    )
}

impl ParseRow for UsageRows {
    fn parse_row(
        &mut self,
        cols: &ColumnMap,
        r: &Record<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), Error> {
        parse_row(&self.file, &mut self.interval, &self.org_id, cols, r, sink)
    }
}

/// The last row's interval (`bucket_start`, `bucket_end`) by its texts: the rows
/// of one plugin flush share it, and comparing the texts a word at a time
/// ([`same_bytes`]) costs less than a library comparison of each column. A new
/// interval is parsed with [`parse_time`].
#[derive(Debug, Default)]
struct LastInterval {
    /// `bucket_start`'s text followed by `bucket_end`'s.
    texts: String,
    /// The length of `bucket_start`'s text in `texts`.
    start_len: usize,
    /// The two times, once `texts` holds an interval that parsed.
    times: Option<(Timestamp, Timestamp)>,
}

impl LastInterval {
    /// The times of `start_text` and `end_text` (`end` = `start` when
    /// `end_text` is empty), or the input error of the first that is no date.
    #[inline]
    fn parse(
        &mut self,
        file: &str,
        line: u64,
        start_text: &str,
        end_text: &str,
    ) -> Result<(Timestamp, Timestamp), Error> {
        if let Some(times) = self.times {
            let same_lengths = self.start_len == start_text.len()
                && self.texts.len() == start_text.len() + end_text.len();
            let texts = self.texts.as_bytes().split_at_checked(self.start_len);
            if let (true, Some((start, end))) = (same_lengths, texts) {
                if same_bytes(start, start_text.as_bytes()) && same_bytes(end, end_text.as_bytes())
                {
                    return Ok(times);
                }
            }
        }
        self.remember(file, line, start_text, end_text)
    }

    /// Parses a new interval and keeps it (out of line: most rows repeat one).
    #[inline(never)]
    fn remember(
        &mut self,
        file: &str,
        line: u64,
        start_text: &str,
        end_text: &str,
    ) -> Result<(Timestamp, Timestamp), Error> {
        self.times = None;
        let start = parse_time(file, line, "bucket_start", start_text)?;
        let end = if end_text.is_empty() {
            start
        } else {
            parse_time(file, line, "bucket_end", end_text)?
        };
        self.texts.clear();
        self.texts.push_str(start_text);
        self.texts.push_str(end_text);
        self.start_len = start_text.len();
        self.times = Some((start, end));
        Ok((start, end))
    }
}

/// Whether `a` and `b` hold the same bytes, compared a word at a time inline
/// (a timestamp is three words), where slice equality calls the library.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (Some(last), Some(last_b)) = (a.len().checked_sub(8), b.len().checked_sub(8)) else {
        return a.iter().zip(b).all(|(x, y)| x == y);
    };
    // Whole words from the start, then the last 8 bytes (overlapping the
    // words before them) for the tail.
    let mut from = 0;
    while from < last {
        if word8(a, from) != word8(b, from) {
            return false;
        }
        from += 8;
    }
    word8(a, last) == word8(b, last_b)
}

/// The version number in a `version` field: every row carries one, so a single
/// digit is read directly; anything else goes to the standard parser.
#[inline]
fn version_number(text: &str) -> Option<u32> {
    match text.as_bytes() {
        [digit @ b'0'..=b'9'] => Some(u32::from(digit - b'0')),
        _ => text.parse().ok(),
    }
}

/// The error of a row whose first empty column among `required` (named) is
/// one that may not be empty (out of line: rows rarely have one).
#[cold]
#[inline(never)]
fn empty_required(file: &str, line: u64, required: [(&str, &str); 3]) -> Error {
    let what = required
        .into_iter()
        .find(|(text, _)| text.is_empty())
        .map_or("", |(_, what)| what);
    Error::input(file, line, what, "empty; required")
}

/// Parses one row of `file` and hands it to `sink`, borrowing its texts
/// from the record (built in place for the sink, not returned and copied).
#[inline]
fn parse_row(
    file: &str,
    interval: &mut LastInterval,
    org: &str,
    cols: &ColumnMap,
    r: &Record<'_>,
    sink: &mut dyn Sink,
) -> Result<(), Error> {
    let line = r.line;
    // Every column in one pass over the fields ([`ColumnMap::values`]), not a
    // lookup per column: the row is short and each field is wanted.
    let [version, start_text, end_text, cluster, principal, principal_source, topic, metric, value_text, row_org] =
        cols.values::<{ COLUMNS.len() }>(r);
    if !version.is_empty() {
        let v = version_number(version).ok_or_else(|| {
            Error::input(
                file,
                line,
                "version",
                format!("`{version}` is not a version number"),
            )
        })?;
        if v > USAGE_CSV_VERSION {
            return Err(Error::input(
                file,
                line,
                "version",
                format!(
                    "usage CSV version {v} is newer than this tally reads ({USAGE_CSV_VERSION})"
                ),
            ));
        }
    }
    let (start, end) = interval.parse(file, line, start_text, end_text)?;
    if end < start {
        return Err(Error::input(
            file,
            line,
            "bucket_end",
            "ends before bucket_start",
        ));
    }
    let value = parse_decimal(file, line, "value", value_text)?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(Error::input(file, line, "value", "negative usage"));
    }
    if cluster.is_empty() || principal.is_empty() || metric.is_empty() {
        return Err(empty_required(
            file,
            line,
            [
                (cluster, "cluster"),
                (principal, "principal"),
                (metric, "metric"),
            ],
        ));
    }
    sink.usage_ref(&UsageRef {
        file,
        line,
        org_id: if row_org.is_empty() { org } else { row_org },
        start,
        end,
        resource_id: cluster,
        principal,
        principal_source,
        topic,
        metric,
        value,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::Reader;
    use crate::model::{AllocationRow, CostLine, CrosswalkEntry, UsageSample};
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    /// A sink keeping what it is given, in order: samples through the default
    /// [`Sink::usage_ref`] (an owned copy), rejections as errors.
    #[derive(Default)]
    struct Kept {
        rows: Vec<Result<UsageSample, Error>>,
    }

    impl Sink for Kept {
        fn cost_line(&mut self, _: &CostLine) {}
        fn usage(&mut self, sample: &UsageSample) {
            self.rows.push(Ok(sample.clone()));
        }
        fn allocated(&mut self, _: &AllocationRow) {}
        fn crosswalk(&mut self, _: &CrosswalkEntry) {}
        fn reject(&mut self, error: Error) {
            self.rows.push(Err(error));
        }
    }

    /// Interval texts: repeated, changed, an instant, and unreadable ones.
    const TIMES: &[&str] = &[
        "2026-04-01T00:00:00Z",
        "2026-04-01T04:00:00Z",
        "2026-04-01T04:00:00.5Z",
        "",
        "2026-04-01",
        "yesterday",
    ];

    proptest! {
        #[test]
        fn same_bytes_is_equality(a in "[ab]{0,20}", b in "[ab]{0,20}") {
            prop_assert_eq!(same_bytes(a.as_bytes(), b.as_bytes()), a == b);
            prop_assert!(same_bytes(a.as_bytes(), a.as_bytes()));
        }

        #[test]
        fn version_numbers_are_what_the_standard_parser_reads(text in "[0-9+ a-]{0,4}") {
            prop_assert_eq!(version_number(&text), text.parse::<u32>().ok());
        }

        /// Each row's times (or error) are what parsing its two texts anew
        /// gives, whatever the previous rows' intervals: the reuse of the last
        /// interval only skips the parse of a repeat. The sample handed over
        /// borrowed converts to the owned sample with the row's fields.
        #[test]
        fn rows_read_as_their_own_texts_say(
            intervals in proptest::collection::vec((0..TIMES.len(), 0..TIMES.len()), 1..40),
        ) {
            let texts = |(s, e): (usize, usize)| {
                (TIMES.get(s).copied().unwrap_or(""), TIMES.get(e).copied().unwrap_or(""))
            };
            let mut input = String::from("version,bucket_start,bucket_end,cluster,principal,topic,metric,value\n");
            for &interval in &intervals {
                let (start, end) = texts(interval);
                input.push_str(&format!("1,{start},{end},lkc-1,sa-1,orders,produced_bytes,7\n"));
            }
            let mut reader = reader("u.csv", "org", 1 << 20);
            let mut kept = Kept::default();
            prop_assert!(reader.feed(input.as_bytes(), &mut kept).is_ok());
            prop_assert!(reader.finish(&mut kept).is_ok());
            prop_assert_eq!(kept.rows.len(), intervals.len());
            for (at, (&interval, got)) in intervals.iter().zip(&kept.rows).enumerate() {
                let line = at as u64 + 2;
                let (start_text, end_text) = texts(interval);
                let start = parse_time("u.csv", line, "bucket_start", start_text);
                let end = match end_text {
                    "" => start.clone(),
                    text => parse_time("u.csv", line, "bucket_end", text),
                };
                let expected = match (start, end) {
                    (Err(error), _) | (_, Err(error)) => Err(error),
                    (Ok(start), Ok(end)) if end < start => Err(Error::input(
                        "u.csv",
                        line,
                        "bucket_end",
                        "ends before bucket_start",
                    )),
                    (Ok(start), Ok(end)) => Ok(UsageSample {
                        source: crate::model::Source { file: "u.csv".into(), line },
                        org_id: "org".into(),
                        start,
                        end,
                        resource_id: "lkc-1".into(),
                        principal: "sa-1".into(),
                        principal_source: String::new(),
                        topic: "orders".into(),
                        metric: "produced_bytes".into(),
                        value: Decimal::from(7),
                    }),
                };
                prop_assert_eq!(got, &expected);
            }
        }
    }

    #[test]
    fn an_empty_required_column_is_named() {
        let input = "version,bucket_start,cluster,principal,metric,value\n\
                     1,2026-04-01T00:00:00Z,lkc-1,,produced_bytes,7\n\
                     1,2026-04-01T00:00:00Z,,,,7\n";
        let mut reader = reader("u.csv", "", 1 << 20);
        let mut kept = Kept::default();
        reader.feed(input.as_bytes(), &mut kept).unwrap();
        reader.finish(&mut kept).unwrap();
        assert_eq!(
            kept.rows,
            [
                Err(Error::input("u.csv", 2, "principal", "empty; required")),
                Err(Error::input("u.csv", 3, "cluster", "empty; required")),
            ]
        );
    }
}
