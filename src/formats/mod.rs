//! Readers and writers of every supported file format.
//!
//! ## Design
//!
//! Every reader is a push parser implementing [`Reader`]: it is fed chunks of a
//! file in order and hands what it parses to a [`Sink`] — cost lines, usage
//! samples, already-allocated rows (a Confluent cost-allocation export, WarpStream
//! chargebacks), crosswalk rows — and each bad row as an [`Error`] for
//! [`Sink::reject`]; the other rows go on; what the rows do not show (a
//! WarpStream cluster truncated or excluded, a warning) goes to [`Sink::note`].
//! Readers keep no rows: memory is bounded by one record (or one JSON item,
//! [`json_items`]) plus the sink's aggregates (and, for WarpStream, one
//! cluster's parsed entities). The sink receives
//! borrowed records so a reader can reuse one scratch record per file (no
//! allocation per row).
//!
//! [`detect`] picks the format from a file's first bytes (a CSV header, or the
//! first keys of a JSON document); [`Format::reader`] builds its reader. Readers
//! of the second formats engineer (WarpStream, FOCUS, Prometheus) plug in here
//! through the same two hooks.
//!
//! Writers live next to their readers (the Confluent export writer in
//! [`confluent`], the team summary in [`team_summary`]) and take a
//! [`crate::report::Report`].

pub mod confluent;
pub mod confluent_costs;
pub mod crosswalk;
pub mod csv;
pub mod exact_json;
pub mod focus;
pub mod json_items;
pub mod origins;
pub mod prometheus;
pub mod team_summary;
pub mod usage_csv;
pub mod warpstream;

use crate::error::Error;
use crate::model::{AllocatedRef, AllocationRow, CostLine, CrosswalkEntry, UsageRef, UsageSample};
use rust_decimal::Decimal;

/// Where readers put what they parse.
pub trait Sink {
    /// A line of a bill, to be allocated by the rules.
    fn cost_line(&mut self, line: &CostLine);
    /// A usage sample, to drive the allocation of cost lines.
    fn usage(&mut self, sample: &UsageSample);
    /// The same as [`Sink::usage`], borrowed from the reader's record (the usage
    /// CSV's per-row path). Sinks that keep samples get an owned copy.
    fn usage_ref(&mut self, sample: &UsageRef<'_>) {
        self.usage(&sample.to_sample());
    }
    /// A row that is already allocated (Confluent export, WarpStream chargebacks).
    fn allocated(&mut self, row: &AllocationRow);
    /// The same as [`Sink::allocated`], borrowed from the reader's record (the
    /// Confluent export's per-row path). Sinks that keep rows get an owned copy.
    fn allocated_ref(&mut self, row: &AllocatedRef<'_>) {
        self.allocated(&owned_row(row));
    }
    /// A crosswalk row (owner → team, or a pattern).
    fn crosswalk(&mut self, entry: &CrosswalkEntry);
    /// A refused row; reading goes on.
    fn reject(&mut self, error: Error);
    /// Something about the input that its rows do not show (a WarpStream
    /// cluster truncated or excluded, or as read; a reader's warning). Sinks
    /// that make no report ignore it.
    fn note(&mut self, note: InputNote) {
        let _ = note;
    }
}

/// What a reader says about its input besides its rows (see [`Sink::note`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputNote {
    /// A WarpStream cluster with `truncated: true`: its totals miss the
    /// entities the response left out.
    Truncated(warpstream::TruncatedCluster),
    /// A WarpStream cluster with an `excluded_reason`: its charges were not
    /// apportioned, so none of its rows are in the totals.
    Excluded(warpstream::ExcludedCluster),
    /// A WarpStream cluster as read: what its rows do not carry (its tenant,
    /// names, and line items' quantities and unit prices), for the
    /// WarpStream writer.
    Cluster(std::sync::Arc<warpstream::ReadCluster>),
    /// Something read that deserves a look (`file:line: what`).
    Warning(String),
}

/// An [`AllocationRow`] holding the fields of `row` (bucket end = start, as readers set it).
pub fn owned_row(row: &AllocatedRef<'_>) -> AllocationRow {
    let line = crate::model::AllocatedLine {
        bucket_start: row.bucket_start,
        bucket_end: row.bucket_start,
        partial_bucket: false,
        org_id: row.org_id.into(),
        level: row.level,
        environment_id: row.environment_id.into(),
        resource_id: row.resource_id.into(),
        product: row.product.into(),
        line_type: row.line_type.into(),
        unit: row.unit.into(),
        original_amount: row.original_amount,
        quantity: Decimal::ZERO,
        currency: row.currency.into(),
        method: row.method.into(),
        chain_step: row.chain_step,
        reason: row.reason.into(),
        source: crate::model::RowSource {
            file: row.file.into(),
            line: row.line,
        },
        bill_columns: crate::model::Name::default(),
    };
    AllocationRow {
        line: std::sync::Arc::new(line),
        owner_id: row.owner_id.into(),
        chargeback_cost: row.chargeback_cost,
        usage_share: row.usage_share,
    }
}

/// A streaming reader of one file.
pub trait Reader {
    /// Parses the next chunk. `Err` only for what stops the whole file (an
    /// unusable header); bad rows go to [`Sink::reject`].
    fn feed(&mut self, chunk: &[u8], sink: &mut dyn Sink) -> Result<(), Error>;
    /// The end of the file.
    fn finish(&mut self, sink: &mut dyn Sink) -> Result<(), Error>;
}

/// The formats tally reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Confluent Cloud cost-allocation export (CSV, already allocated).
    ConfluentExport,
    /// Confluent Billing API costs, JSON `{"data":[...]}`.
    ConfluentCostsJson,
    /// Confluent Billing API costs as CSV with the same columns.
    ConfluentCostsCsv,
    /// tally's usage CSV ([`crate::usage`]).
    UsageCsv,
    /// Crosswalk CSV: owner → team, plus pattern rows.
    Crosswalk,
    /// WarpStream chargebacks JSON (already allocated, per topic) — [`warpstream`].
    WarpStreamJson,
    /// Prometheus `query_range` JSON of tally's counters (usage) — [`prometheus`].
    PrometheusJson,
    /// FOCUS 1.2 / 1.3 cost and usage CSV (a generic bill) — [`focus`].
    FocusCsv,
}

impl Format {
    /// The name shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Format::ConfluentExport => "confluent_export",
            Format::ConfluentCostsJson => "confluent_costs_json",
            Format::ConfluentCostsCsv => "confluent_costs_csv",
            Format::UsageCsv => "usage_csv",
            Format::Crosswalk => "crosswalk",
            Format::WarpStreamJson => warpstream::FORMAT_NAME,
            Format::PrometheusJson => prometheus::FORMAT_NAME,
            Format::FocusCsv => focus::FORMAT_NAME,
        }
    }

    /// A reader of this format for `file`, tagging rows with `org_id`; a FOCUS
    /// file's rows are charged by `focus_cost`.
    pub fn reader(
        self,
        file: &str,
        org_id: &str,
        max_record: usize,
        focus_cost: focus::CostColumn,
    ) -> Box<dyn Reader> {
        match self {
            Format::ConfluentExport => Box::new(confluent::reader(file, org_id, max_record)),
            Format::ConfluentCostsJson => {
                Box::new(confluent_costs::JsonReader::new(file, org_id, max_record))
            }
            Format::ConfluentCostsCsv => {
                Box::new(confluent_costs::csv_reader(file, org_id, max_record))
            }
            Format::UsageCsv => Box::new(usage_csv::reader(file, org_id, max_record)),
            Format::Crosswalk => Box::new(crosswalk::reader(file, org_id, max_record)),
            Format::WarpStreamJson => {
                Box::new(warpstream::ChargebacksReader::new(file, org_id, max_record))
            }
            Format::PrometheusJson => Box::new(prometheus::QueryRangeReader::new(
                file, org_id, "", max_record,
            )),
            Format::FocusCsv => Box::new(focus::reader_with(file, org_id, max_record, focus_cost)),
        }
    }
}

/// How many bytes [`detect`] wants before deciding (less at end of file is fine).
pub const DETECT_BYTES: usize = 4096;

/// Recognises the format of a file from its first bytes.
pub fn detect(file: &str, head: &[u8]) -> Result<Format, Error> {
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        if warpstream::sniff(head).is_some() {
            return Ok(Format::WarpStreamJson);
        }
        if prometheus::sniff(head).is_some() {
            return Ok(Format::PrometheusJson);
        }
        if trimmed.contains("\"data\"") {
            return Ok(Format::ConfluentCostsJson);
        }
        return Err(Error::UnknownFormat {
            file: file.to_string(),
            reason:
                "a JSON document that is none of: Confluent Billing API costs ({\"data\":[...]}), \
                 WarpStream chargebacks (tenants, covers_products), Prometheus query_range (resultType)"
                    .into(),
        });
    }
    if focus::sniff(head).is_some() {
        return Ok(Format::FocusCsv);
    }
    let header = csv::sniff_header(head);
    let has = |names: &[&str]| csv::header_has(&header, names);
    if has(&["chargeback_cost"]) {
        return Ok(Format::ConfluentExport);
    }
    if has(&["team", "pattern"]) && !has(&["amount", "value"]) {
        return Ok(Format::Crosswalk);
    }
    if has(&["metric"]) && has(&["value"]) && has(&["principal"]) {
        return Ok(Format::UsageCsv);
    }
    if has(&["amount"]) && has(&["product", "line_type"]) {
        return Ok(Format::ConfluentCostsCsv);
    }
    Err(Error::UnknownFormat {
        file: file.to_string(),
        reason: format!(
            "header [{}] matches none of: Confluent cost-allocation export (chargeback_cost), \
             Confluent costs CSV (product, line_type, amount), tally usage CSV (metric, principal, value), \
             crosswalk (owner_id, team / pattern)",
            header.join(", ")
        ),
    })
}

/// Parses a decimal amount or quantity (`12.5`, `-3`, `1.5E-3`; spaces around
/// it are trimmed, as from every CSV field), exactly, or an input error naming
/// the column. Only the spelling of [`exact_json::is_number`] is read:
/// `$5.00`, `1_000`, `+5`, `.5` and `5.` are rejected as not numbers, and
/// more than 28 significant digits as not exact, rather than guessed at or
/// rounded.
#[inline]
pub fn parse_decimal(file: &str, line: u64, column: &str, text: &str) -> Result<Decimal, Error> {
    // `plain_decimal` accepts no space, so trying it first on the field as it
    // comes gives what it would give after trimming.
    match plain_decimal(text) {
        Some(value) => Ok(value),
        None => general_decimal(file, line, column, text),
    }
}

/// [`parse_decimal`] for what the fast path declines (out of line: the
/// per-row caller stays small).
#[cold]
#[inline(never)]
fn general_decimal(file: &str, line: u64, column: &str, text: &str) -> Result<Decimal, Error> {
    let t = csv::trim(text);
    if t.is_empty() {
        return Err(Error::input(
            file,
            line,
            column,
            "empty; a number is required",
        ));
    }
    if !exact_json::is_number(t) {
        return Err(Error::input(
            file,
            line,
            column,
            format!(
                "not a number: `{text}` (digits with an optional leading `-`, one `.` between \
                 digits and an optional exponent, such as `-1234.50` or `1.5E-3`; no currency \
                 sign, digit separator or `+`)"
            ),
        ));
    }
    exact_json::decimal_from_number(t).ok_or_else(|| {
        Error::input(
            file,
            line,
            column,
            format!("`{text}` does not fit an exact decimal (at most 28 significant digits)"),
        )
    })
}

/// The fast path of [`parse_decimal`]: `-?digits(.digits)?` with at most 19
/// digits, read straight into a mantissa and scale (`Decimal::from_str` is several
/// times slower, and this is the shape of nearly every amount). 19 digits fit a
/// `u64` unchecked, and the 96-bit mantissa of a [`Decimal`] takes any `u64`.
/// `None`: use the general parser.
#[inline]
pub fn plain_decimal(text: &str) -> Option<Decimal> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, bytes),
    };
    if digits.len() > 20 {
        return None;
    }
    // A digit first: neither an empty text, nor `-`, nor `.5` is a number
    // (see `parse_decimal`).
    let (&first, rest) = digits.split_first()?;
    let mut mantissa = u64::from(first.wrapping_sub(b'0'));
    if mantissa >= 10 {
        return None;
    }
    // Bytes of `rest` before the dot, once one is seen.
    let mut dot: Option<usize> = None;
    for (at, &b) in rest.iter().enumerate() {
        let digit = b.wrapping_sub(b'0');
        if digit < 10 {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(digit));
        } else if b == b'.' && dot.is_none() {
            dot = Some(at);
        } else {
            return None;
        }
    }
    let count = digits.len() - usize::from(dot.is_some());
    let scale = dot.map_or(0, |at| rest.len() - at - 1);
    // A dot ending the number (`5.` is not one either), or more digits than
    // the unchecked mantissa holds.
    if (dot.is_some() && scale == 0) || count > 19 {
        return None;
    }
    Some(Decimal::from_parts(
        mantissa as u32,
        (mantissa >> 32) as u32,
        0,
        negative && mantissa != 0,
        scale as u32,
    ))
}

/// Parses a UTC timestamp, or an input error naming the column.
#[inline(never)]
pub fn parse_time(
    file: &str,
    line: u64,
    column: &str,
    text: &str,
) -> Result<crate::time::Timestamp, Error> {
    crate::time::Timestamp::parse(text).ok_or_else(|| {
        Error::input(
            file,
            line,
            column,
            format!("`{text}` is not a date (expected ISO 8601 UTC, e.g. 2026-04-01T00:00:00Z)"),
        )
    })
}

/// The last timestamp parsed in a column: consecutive rows mostly repeat it.
#[derive(Debug, Default)]
pub struct TimeCache {
    text: String,
    value: Option<crate::time::Timestamp>,
}

impl TimeCache {
    /// [`parse_time`], reusing the previous result when the text repeats.
    #[inline]
    pub fn parse(
        &mut self,
        file: &str,
        line: u64,
        column: &str,
        text: &str,
    ) -> Result<crate::time::Timestamp, Error> {
        match self.value {
            Some(value) if self.text == text => Ok(value),
            _ => Ok(self.remember(text, parse_time(file, line, column, text)?)),
        }
    }

    /// Keeps `value` as the time of `text`.
    #[inline(never)]
    fn remember(&mut self, text: &str, value: crate::time::Timestamp) -> crate::time::Timestamp {
        set(&mut self.text, text);
        self.value = Some(value);
        value
    }
}

/// Replaces `target`'s text by `text`, reusing its allocation.
pub fn set(target: &mut String, text: &str) {
    target.clear();
    target.push_str(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    #[test]
    fn a_borrowed_export_row_converts_to_an_owned_row_and_back() {
        let borrowed = AllocatedRef {
            bucket_start: crate::time::Timestamp(1_775_001_600),
            org_id: "org-1",
            owner_id: "sa-1",
            level: crate::model::EntityLevel::Topic,
            environment_id: "env-1",
            resource_id: "lkc-1",
            product: "kafka",
            line_type: "KafkaNetworkRead",
            unit: "GB",
            chargeback_cost: Decimal::new(-1234, 2),
            original_amount: Decimal::new(5000, 2),
            usage_share: Decimal::new(25, 2),
            currency: "EUR",
            method: "usage_ratio",
            chain_step: 2,
            reason: "usage_found",
            file: "export.csv",
            line: 7,
        };
        let owned = owned_row(&borrowed);
        assert_eq!(owned.line.bucket_end, owned.line.bucket_start);
        assert_eq!(owned.as_ref(), borrowed);
    }

    /// The spellings of a number read, with their exact values, and those
    /// refused. `1_000`, `$5.00`, `+5`, `.5`, `5.` and `-.5` were read (as
    /// 1000, 5.00, 5, 0.5, 5 and -0.5), and 32 digits were rounded to 28.
    #[test]
    fn numbers_are_read_in_one_spelling_and_anything_else_is_refused() {
        let read = [
            ("0", "0"),
            ("12.50", "12.50"),
            ("-3", "-3"),
            ("-0.001", "-0.001"),
            ("-0", "0"),
            ("007.10", "7.10"),
            (" 5 ", "5"),
            ("\t-1.25\u{a0}", "-1.25"),
            ("12345678901234567890.5", "12345678901234567890.5"),
            ("1e3", "1000"),
            ("1.5E-3", "0.0015"),
            ("-2.5e+2", "-250"),
            ("1.25e-05", "0.0000125"),
        ];
        for (text, value) in read {
            let got = parse_decimal("f.csv", 2, "amount", text).map(|d| d.to_string());
            assert_eq!(got.as_deref(), Ok(value), "{text:?}");
        }
        let not_numbers = [
            "$5.00", "5.00$", "€5", "1_000", "1,000", "1 000", "+5", ".5", "-.5", "5.", "1.e3",
            "1e", "e3", "1e3.5", "--5", "-", "1.2.3", "NaN", "inf", "0x10", "(5.00)", "5 USD",
            "\u{663}",
        ];
        for text in not_numbers {
            let got = parse_decimal("f.csv", 2, "amount", text).map_err(|e| e.to_string());
            assert_eq!(
                got,
                Err(format!(
                    "f.csv:2 column `amount`: not a number: `{text}` (digits with an optional \
                     leading `-`, one `.` between digits and an optional exponent, such as \
                     `-1234.50` or `1.5E-3`; no currency sign, digit separator or `+`)"
                )),
            );
        }
        let refused = [
            ("", "empty; a number is required"),
            (
                "0.12345678901234567890123456789012",
                "`0.12345678901234567890123456789012` does not fit an exact decimal (at most \
                 28 significant digits)",
            ),
        ];
        for (text, reason) in refused {
            let got = parse_decimal("f.csv", 2, "amount", text).map_err(|e| e.to_string());
            assert_eq!(got, Err(format!("f.csv:2 column `amount`: {reason}")));
        }
    }

    #[test]
    fn plain_decimals_agree_with_the_general_parser() {
        for text in [
            "0",
            "12.50",
            "-3",
            "-0.001",
            ".5",
            "1.",
            "9223372036854775807",
            "99999999999999999999",
            "1e3",
            "1.2.3",
            "",
            "-",
            "+1",
            "00.10",
        ] {
            let general = Decimal::from_str(text).ok();
            // When the fast path declines, the general parser decides.
            if let Some(quick) = plain_decimal(text) {
                assert_eq!(Some(quick), general, "{text}");
            }
        }
        assert_eq!(
            plain_decimal("12.50").map(|d| d.to_string()).as_deref(),
            Some("12.50")
        );
    }

    proptest! {
        #[test]
        fn plain_decimal_matches_from_str(text in "-?[0-9]{0,20}(\\.[0-9]{0,20})?") {
            if let Some(quick) = plain_decimal(&text) {
                prop_assert_eq!(Some(quick), Decimal::from_str(&text).ok());
            }
        }

        #[test]
        fn plain_decimal_takes_every_plain_amount_with_its_scale(
            text in "-?[0-9]{0,19}(\\.[0-9]{0,19})?|[-+_.0-9$ eE]{0,22}",
        ) {
            let digits = text.bytes().filter(u8::is_ascii_digit).count();
            let plain = !text.is_empty()
                && !text.ends_with('.')
                && !text.trim_start_matches('-').starts_with('.')
                && digits > 0
                && digits <= 19
                && text.bytes().skip(usize::from(text.starts_with('-'))).all(|b| b.is_ascii_digit() || b == b'.')
                && text.bytes().filter(|b| *b == b'.').count() <= 1;
            let quick = plain_decimal(&text);
            prop_assert_eq!(quick.is_some(), plain);
            if let Some(quick) = quick {
                let general = Decimal::from_str(&text).unwrap();
                prop_assert_eq!(quick, general);
                prop_assert_eq!(quick.scale(), general.scale());
                prop_assert_eq!(quick.is_sign_negative(), general.is_sign_negative() && !general.is_zero());
            }
            // Against the spelling's regular expression and rust_decimal's own
            // parsers: the same numbers are accepted, with the same values.
            let t = text.trim();
            let number = regex_lite::Regex::new(r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$").unwrap();
            let general = number.is_match(t).then(|| {
                if t.contains(['e', 'E']) { Decimal::from_scientific(t) } else { Decimal::from_str_exact(t) }.ok()
            }).flatten();
            prop_assert_eq!(parse_decimal("f", 1, "c", &text).ok(), general);
        }
    }
}
