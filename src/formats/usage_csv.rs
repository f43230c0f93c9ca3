//! Reader of tally's usage CSV ([`crate::usage`]) into [`UsageSample`]s.
//!
//! Columns are found by name; `version` is optional (absent means 1) and a row of
//! a newer version is rejected with a message saying so. `bucket_end` is optional
//! (a sample without it is an instant at `bucket_start`). Quantities are
//! non-negative decimals (the plugin writes integers). An `org_id` column, when
//! present, overrides the organization given for the file.

use super::csv::{ColumnMap, ColumnSpec, CsvReader, ParseRow, Record};
use super::{parse_decimal, set, Sink, TimeCache};
use crate::error::Error;
use crate::model::{Source, UsageSample};
use crate::time::Timestamp;
use crate::usage::USAGE_CSV_VERSION;
use rust_decimal::Decimal;

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

/// The row parser of [`UsageReader`].
pub struct UsageRows {
    org_id: String,
    scratch: UsageSample,
    starts: TimeCache,
    ends: TimeCache,
}

/// A usage CSV reader for `file`, rows tagged with `org_id` unless the file has its own.
pub fn reader(file: &str, org_id: &str, max_record: usize) -> UsageReader {
    CsvReader::new(
        file,
        COLUMNS,
        max_record,
        UsageRows {
            org_id: org_id.to_string(),
            scratch: UsageSample {
                source: Source {
                    file: file.to_string(),
                    line: 0,
                },
                org_id: String::new(),
                start: Timestamp(0),
                end: Timestamp(0),
                resource_id: String::new(),
                principal: String::new(),
                principal_source: String::new(),
                topic: String::new(),
                metric: String::new(),
                value: Decimal::ZERO,
            },
            starts: TimeCache::default(),
            ends: TimeCache::default(),
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
        let times = (&mut self.starts, &mut self.ends);
        parse_row(&mut self.scratch, times, &self.org_id, cols, r)?;
        sink.usage(&self.scratch);
        Ok(())
    }
}

/// Parses one row into `s` (reusing its strings).
fn parse_row(
    s: &mut UsageSample,
    (starts, ends): (&mut TimeCache, &mut TimeCache),
    org: &str,
    cols: &ColumnMap,
    r: &Record<'_>,
) -> Result<(), Error> {
    let file = s.source.file.as_str();
    let line = r.line;
    // Every column in one pass over the fields ([`ColumnMap::values`]), not a
    // lookup per column: the row is short and each field is wanted.
    let [version, start_text, end_text, cluster, principal, principal_source, topic, metric, value_text, row_org] =
        cols.values::<{ COLUMNS.len() }>(r);
    if !version.is_empty() {
        let v: u32 = version.parse().map_err(|_| {
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
    let start = starts.parse(file, line, "bucket_start", start_text)?;
    let end = if end_text.is_empty() {
        start
    } else {
        ends.parse(file, line, "bucket_end", end_text)?
    };
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
    for (text, what) in [
        (cluster, "cluster"),
        (principal, "principal"),
        (metric, "metric"),
    ] {
        if text.is_empty() {
            return Err(Error::input(file, line, what, "empty; required"));
        }
    }
    s.source.line = line;
    s.start = start;
    s.end = end;
    s.value = value;
    set(
        &mut s.org_id,
        if row_org.is_empty() { org } else { row_org },
    );
    set(&mut s.resource_id, cluster);
    set(&mut s.principal, principal);
    set(&mut s.principal_source, principal_source);
    set(&mut s.topic, topic);
    set(&mut s.metric, metric);
    Ok(())
}
