//! The Confluent Cloud cost-allocation export: reader and writer.
//!
//! The export has one row per owner × billable metric × resource × UTC bucket,
//! already allocated (see `shared/seeds/001_…`). Its exact header is not public,
//! so the reader finds columns by name through an alias table ([`COLUMNS`]) and a
//! missing one is an error naming the names accepted. Rows are handed to the sink
//! as borrowed [`AllocatedRef`]s (no copy or allocation per row); the
//! session rolls them up by team and organization and reconciles them.
//!
//! The writer ([`write()`]) emits the same ten columns first, in the order the
//! seed describes them, followed by tally's explanation columns (method, chain
//! step, reason, bucket end, partial flag, organization, entity level), so a
//! reader of Confluent's export reads tally's output and tally reads it back.

use super::csv::{ColumnMap, ColumnSpec, CsvReader, ParseRow, Record};
use super::{parse_decimal, Sink, TimeCache};
use crate::error::Error;
use crate::model::{AllocatedRef, AllocationRow, EntityLevel};
use crate::usage::push_csv_field;
use rust_decimal::Decimal;

/// The export's columns and the header names accepted for each.
pub const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::required(
        "timestamp",
        &[
            "timestamp",
            "interval_start",
            "start_date",
            "bucket_start",
            "start_time",
            "date",
        ],
    ),
    ColumnSpec::required(
        "owner_id",
        &["owner_id", "principal", "entity_id", "principal_id"],
    ),
    ColumnSpec::required(
        "environment_id",
        &["environment_id", "environment", "env_id"],
    ),
    ColumnSpec::required(
        "resource_id",
        &[
            "resource_id",
            "resource",
            "logical_cluster_id",
            "cluster_id",
        ],
    ),
    ColumnSpec::required("product", &["product", "product_category"]),
    ColumnSpec::required("line_type", &["line_type", "metric", "billable_metric"]),
    ColumnSpec::optional("unit", &["unit", "units"]),
    ColumnSpec::required("chargeback_cost", &["chargeback_cost"]),
    ColumnSpec::optional("original_amount", &["original_amount"]),
    ColumnSpec::optional("usage_share", &["usage_share"]),
    ColumnSpec::optional("org_id", &["org_id", "organization_id"]),
    ColumnSpec::optional("method", &["method", "allocation_method"]),
    ColumnSpec::optional("chain_step", &["chain_step"]),
    ColumnSpec::optional("reason", &["reason", "reason_code"]),
    ColumnSpec::optional("entity_level", &["entity_level", "level"]),
    ColumnSpec::optional("currency", &["currency"]),
];

/// Streaming reader of a Confluent cost-allocation export.
pub type ExportReader = CsvReader<ExportRows>;

/// The row parser of [`ExportReader`].
pub struct ExportRows {
    file: String,
    org_id: String,
    times: TimeCache,
}

/// An export reader for `file`, rows tagged with `org_id` unless the file has its own.
pub fn reader(file: &str, org_id: &str, max_record: usize) -> ExportReader {
    CsvReader::new(
        file,
        COLUMNS,
        max_record,
        ExportRows {
            file: file.to_string(),
            org_id: org_id.to_string(),
            times: TimeCache::default(),
        },
    )
}

impl ParseRow for ExportRows {
    fn parse_row(
        &mut self,
        cols: &ColumnMap,
        r: &Record<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), Error> {
        parse_row(&self.file, &mut self.times, &self.org_id, cols, r, sink)
    }
}

/// Parses an optional decimal column (empty → zero).
#[inline]
fn optional_decimal(file: &str, line: u64, column: &str, text: &str) -> Result<Decimal, Error> {
    if text.is_empty() {
        Ok(Decimal::ZERO)
    } else {
        parse_decimal(file, line, column, text)
    }
}

/// `text`, or `default` when it is empty.
fn or_default<'a>(text: &'a str, default: &'a str) -> &'a str {
    if text.is_empty() {
        default
    } else {
        text
    }
}

/// Parses one row and hands it to `sink`, borrowed from the record: no field
/// is copied unless the store meets it for the first time (and the row is
/// built where the sink reads it, not returned and moved).
fn parse_row(
    file: &str,
    times: &mut TimeCache,
    org: &str,
    cols: &ColumnMap,
    r: &Record<'_>,
    sink: &mut dyn Sink,
) -> Result<(), Error> {
    let line = r.line;
    // In the order of [`COLUMNS`].
    let [timestamp, owner, environment, resource, product, line_type, unit, cost, original, share, org_id, method, step, reason, level, currency] =
        cols.values(r);
    let start = times.parse(file, line, "timestamp", timestamp)?;
    let cost = parse_decimal(file, line, "chargeback_cost", cost)?;
    let original = optional_decimal(file, line, "original_amount", original)?;
    let share = optional_decimal(file, line, "usage_share", share)?;
    if owner.is_empty() {
        return Err(Error::input(file, line, "owner_id", "empty; required"));
    }
    let chain_step = if step.is_empty() {
        0
    } else {
        step.parse().map_err(|_| {
            Error::input(
                file,
                line,
                "chain_step",
                format!("`{step}` is not a step number"),
            )
        })?
    };
    let level = match level {
        "" | "principal" => EntityLevel::Principal,
        "topic" => EntityLevel::Topic,
        other => {
            return Err(Error::input(
                file,
                line,
                "entity_level",
                format!("`{other}` is not principal or topic"),
            ))
        }
    };
    sink.allocated_ref(&AllocatedRef {
        bucket_start: start,
        org_id: or_default(org_id, org),
        owner_id: owner,
        level,
        environment_id: environment,
        resource_id: resource,
        product,
        line_type,
        unit,
        chargeback_cost: cost,
        original_amount: original,
        usage_share: share,
        currency: or_default(currency, "USD"),
        method: or_default(method, "confluent_export"),
        chain_step,
        reason,
        file,
        line,
    });
    Ok(())
}

/// The header [`write()`] emits.
pub const HEADER: &str = "timestamp,owner_id,environment_id,resource_id,product,line_type,unit,\
chargeback_cost,original_amount,usage_share,org_id,bucket_end,partial_bucket,entity_level,method,chain_step,reason";

/// Writes `rows` as a Confluent-style cost-allocation export (header included).
pub fn write<'a>(rows: impl IntoIterator<Item = &'a AllocationRow>) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(4096);
    out.push_str(HEADER);
    out.push('\n');
    for row in rows {
        let _ = write!(out, "{},", row.line.bucket_start);
        for field in [
            &row.owner_id,
            &row.line.environment_id,
            &row.line.resource_id,
            &row.line.product,
            &row.line.line_type,
            &row.line.unit,
        ] {
            push_csv_field(&mut out, field);
            out.push(',');
        }
        let _ = write!(
            out,
            "{},{},{},",
            row.chargeback_cost, row.line.original_amount, row.usage_share
        );
        push_csv_field(&mut out, &row.line.org_id);
        let level = match row.line.level {
            EntityLevel::Principal => "principal",
            EntityLevel::Topic => "topic",
        };
        let _ = write!(
            out,
            ",{},{},{level},",
            row.line.bucket_end, row.line.partial_bucket
        );
        push_csv_field(&mut out, &row.line.method);
        let _ = write!(out, ",{},", row.line.chain_step);
        push_csv_field(&mut out, &row.line.reason);
        out.push('\n');
    }
    out
}
