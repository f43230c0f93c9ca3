//! The shared entry point of the command line and the browser.
//!
//! ## Design
//!
//! A [`Session`] is fed files as chunks of bytes — the command line reads them
//! from disk, the page from `File.stream()` in a Web Worker — and both call the
//! same methods, so both give identical results for the same inputs:
//!
//! ```text
//! new(options) → [set_rules_toml] → { begin_file → feed* → end_file }* → allocate → Report
//! ```
//!
//! The format of each file is detected from its first bytes (up to
//! [`crate::formats::DETECT_BYTES`], buffered only until the decision); its
//! reader then streams, folding every record into the aggregates of
//! [`crate::allocate::store::Store`], so memory is bounded by the distinct keys
//! (owner × resource × metric × bucket), not by the rows. Bad rows are counted
//! and the first [`Options::max_rejections`] of each file kept with their file,
//! line, column and reason. `feed` fails only for what stops a whole file (an
//! unknown format, a missing required column); the file is then closed and the
//! session goes on with the other files.

use crate::allocate::rules::{Rules, DEFAULT_RULES_TOML};
use crate::allocate::store::{Store, PAST_96_BITS};
use crate::allocate::{allocate, Settings};
use crate::error::Error;
use crate::formats::focus::CostColumn;
use crate::formats::warpstream::{ExcludedCluster, ReadCluster, TruncatedCluster};
use crate::formats::{detect, Format, InputNote, Reader, Sink, DETECT_BYTES};
use crate::model::{
    AllocatedRef, AllocationRow, CostLine, CrosswalkEntry, EntityLevel, Rejection, UsageRef,
    UsageSample,
};
use crate::report::{Crosswalk, Filters, Report, ReportSettings, UnallocatedPolicy};
use crate::time::{Granularity, Timestamp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

mod options_json;
pub mod parallel;

/// Options of a session (the page sends them as JSON, read by
/// [`Options::from_json`]; every field has a default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Bucket size (default monthly).
    pub granularity: Granularity,
    /// A custom range `[start, end)` (JSON: two date strings); boundary buckets are partial.
    pub range: Option<(Timestamp, Timestamp)>,
    /// Decimal places of the output amounts (default 2).
    pub precision: u32,
    /// Where unallocated costs go in the team roll-up.
    pub unallocated_policy: UnallocatedPolicy,
    /// The team name of the shared cost center (default `shared`).
    pub shared_cost_center: String,
    /// The invoice's usage subtotal to reconcile against.
    pub invoice_subtotal: Option<Decimal>,
    /// Principal- or topic-level entities (rules may pin their own).
    pub entity_level: EntityLevel,
    /// Filters of the entity view.
    pub filters: Filters,
    /// Rejections kept per file (all are counted).
    pub max_rejections: usize,
    /// The longest CSV record or JSON item accepted, in bytes.
    pub max_record_bytes: usize,
    /// The cost a FOCUS bill's charges are allocated by: `BilledCost` (what the
    /// invoice charges; the default) or `EffectiveCost` (amortized: commitment
    /// purchases spread over the usage they cover).
    pub focus_cost: CostColumn,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            granularity: Granularity::Monthly,
            range: None,
            precision: 2,
            unallocated_policy: UnallocatedPolicy::SharedCostCenter,
            shared_cost_center: "shared".into(),
            invoice_subtotal: None,
            entity_level: EntityLevel::Principal,
            filters: Filters::default(),
            max_rejections: 100,
            max_record_bytes: crate::formats::csv::DEFAULT_MAX_RECORD,
            focus_cost: CostColumn::Billed,
        }
    }
}

/// Parses a range from two timestamps; the end must be after the start.
pub fn parse_range(from: &str, to: &str) -> Result<(Timestamp, Timestamp), Error> {
    let refused = |reason: String| Error::invalid_value("range", reason);
    let start =
        Timestamp::parse(from).ok_or_else(|| refused(format!("start `{from}` is not a date")))?;
    let end = Timestamp::parse(to).ok_or_else(|| refused(format!("end `{to}` is not a date")))?;
    if end <= start {
        return Err(refused(format!("end {end} is not after its start {start}")));
    }
    Ok((start, end))
}

/// A file of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId(pub u32);

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct FileSummary {
    /// The name given.
    pub name: String,
    /// The organization its rows were tagged with (unless they carry their own).
    pub org_id: String,
    /// The detected format (empty when not recognised).
    pub format: String,
    /// Rows (records, JSON items) read.
    pub rows_read: u64,
    /// Rows accepted.
    pub rows_accepted: u64,
    /// Rows rejected.
    pub rows_rejected: u64,
    /// The first rejections (up to `max_rejections`).
    pub rejections: Vec<Rejection>,
    /// Cost lines accepted.
    pub cost_lines: u64,
    /// Usage samples accepted.
    pub usage_samples: u64,
    /// Already-allocated rows accepted.
    pub allocated_rows: u64,
    /// Crosswalk rows accepted.
    pub crosswalk_rows: u64,
    /// Sum of the accepted money amounts (bill lines, or export rows' chargeback_cost).
    pub amount_total: Decimal,
    /// Bytes fed.
    pub bytes: u64,
    /// The fatal error that stopped the file, if any.
    pub error: Option<String>,
    /// WarpStream clusters the response truncated: their totals miss entities.
    pub truncated_clusters: Vec<TruncatedCluster>,
    /// WarpStream clusters whose charges were not apportioned.
    pub excluded_clusters: Vec<ExcludedCluster>,
    /// The WarpStream clusters read, for the WarpStream writer: their
    /// tenants, names, and line items' quantities and unit prices (not in
    /// the report's JSON, which shows the rows, not where they came from).
    /// Shared, since summaries are copied: one line item per row of the
    /// file, as many as the store keeps of them.
    #[serde(skip)]
    pub warpstream_clusters: Vec<std::sync::Arc<ReadCluster>>,
    /// The first warnings of the reader (up to `max_rejections`).
    pub warnings: Vec<String>,
    /// All its warnings.
    pub warnings_count: u64,
}

impl FileSummary {
    /// Counts a rejected row, keeping it while fewer than `max` are kept.
    fn count_rejection(&mut self, error: &Error, max: usize) {
        self.rows_rejected += 1;
        if self.rejections.len() < max {
            self.rejections
                .push(Rejection::from_error(&self.name, error));
        }
    }

    /// Turns an accepted crosswalk row into a rejected one: the report found
    /// it in conflict with other rows (see [`Crosswalk::build`]).
    fn refuse_crosswalk_row(&mut self, error: &Error, max: usize) {
        self.rows_accepted = self.rows_accepted.saturating_sub(1);
        self.crosswalk_rows = self.crosswalk_rows.saturating_sub(1);
        self.count_rejection(error, max);
    }
}

struct FileState {
    summary: FileSummary,
    /// The crosswalk rows the file gave, checked against each other's when
    /// the report is built (a conflict refuses rows of any file).
    crosswalk: Vec<CrosswalkEntry>,
    head: Vec<u8>,
    reader: Option<Box<dyn Reader>>,
    closed: bool,
}

/// The shared entry point (see the module docs).
pub struct Session {
    options: Options,
    rules: Rules,
    store: Store,
    files: Vec<FileState>,
}

/// The sink readers write into: the store, the crosswalk and a file's counters.
/// Lives for one call that feeds rows; when it is dropped, the file's amount
/// total is finished (see [`RunningTotal`]) and the already-allocated rows the
/// store kept back are folded ([`Store::defer_allocated`]): nothing reads the
/// store while a sink holds it.
struct Ingest<'a> {
    store: &'a mut Store,
    crosswalk: &'a mut Vec<CrosswalkEntry>,
    summary: &'a mut FileSummary,
    max_rejections: usize,
    /// The part of `summary.amount_total` not yet written into it.
    total: RunningTotal,
}

impl<'a> Ingest<'a> {
    /// The sink of one call feeding rows of the file of `summary`.
    fn new(
        store: &'a mut Store,
        crosswalk: &'a mut Vec<CrosswalkEntry>,
        summary: &'a mut FileSummary,
        max_rejections: usize,
    ) -> Self {
        Ingest {
            store,
            crosswalk,
            summary,
            max_rejections,
            total: RunningTotal::default(),
        }
    }

    /// Counts a row `result` accepted (its `amount`, if it carries one, added
    /// to the file's total) or rejected.
    fn accepted(&mut self, result: Result<(), Error>, amount: Option<Decimal>) -> bool {
        match result {
            Ok(()) => {
                self.summary.rows_read += 1;
                self.summary.rows_accepted += 1;
                // A row without an amount (a usage sample, a crosswalk entry)
                // leaves the total alone: adding a zero is not free per row,
                // and on a zero total it would only reset the total's scale.
                if let Some(amount) = amount {
                    self.total.add(&mut self.summary.amount_total, amount);
                }
                true
            }
            Err(error) => {
                self.reject(error);
                false
            }
        }
    }

    /// Writes the running total into the summary (for a caller that reads
    /// the summary while this sink lives).
    fn finish_total(&mut self) {
        self.total.finish(&mut self.summary.amount_total);
    }
}

impl Drop for Ingest<'_> {
    fn drop(&mut self) {
        self.finish_total();
        // Fails only past 2^32 slots, more than any memory holds.
        let _ = self.store.fold_deferred();
    }
}

/// `Decimal::saturating_add` of one term per row, at the cost of an integer
/// add: while the terms have the total's scale and every partial sum stays a
/// non-zero mantissa of at most 96 bits, each `saturating_add` would be exact
/// and keep that scale, so the total is kept as that mantissa and written back
/// as a `Decimal` only when a term breaks the run (another scale, a zero, a
/// partial sum of zero or past 96 bits: those take `saturating_add` itself)
/// or when the sink ends. Zeros stay on the general path because `Decimal`
/// addition gives a zero operand's other operand as it is (scale and sign
/// included), which an integer sum does not track.
#[derive(Debug, Default, Clone, Copy)]
struct RunningTotal {
    /// The total's mantissa while a run is open; zero when none is.
    mantissa: i128,
    /// The scale of the run.
    scale: u32,
}

impl RunningTotal {
    /// `*total = total.saturating_add(amount)`, deferred while it stays in the run.
    #[inline]
    fn add(&mut self, total: &mut Decimal, amount: Decimal) {
        let term = amount.mantissa();
        if self.mantissa != 0 && term != 0 && amount.scale() == self.scale {
            let sum = self.mantissa + term;
            if sum != 0 && sum.unsigned_abs() < PAST_96_BITS {
                self.mantissa = sum;
                return;
            }
        }
        self.add_outside_run(total, amount);
    }

    /// [`RunningTotal::add`] of a term that ends the run: the run is written
    /// back, the term added by `saturating_add`, and a run opened at the result.
    #[inline(never)]
    fn add_outside_run(&mut self, total: &mut Decimal, amount: Decimal) {
        self.finish(total);
        *total = total.saturating_add(amount);
        self.mantissa = total.mantissa();
        self.scale = total.scale();
    }

    /// Writes the run into `total` and closes it.
    fn finish(&mut self, total: &mut Decimal) {
        if self.mantissa != 0 {
            if let Ok(value) = Decimal::try_from_i128_with_scale(self.mantissa, self.scale) {
                *total = value;
            }
            self.mantissa = 0;
        }
    }
}

impl Sink for Ingest<'_> {
    fn cost_line(&mut self, line: &CostLine) {
        let result = self.store.add_line(line);
        if self.accepted(result, Some(line.amount)) {
            self.summary.cost_lines += 1;
        }
    }

    fn usage(&mut self, sample: &UsageSample) {
        self.usage_ref(&sample.as_ref());
    }

    fn usage_ref(&mut self, sample: &UsageRef<'_>) {
        let result = self.store.add_usage_ref(sample);
        if self.accepted(result, None) {
            self.summary.usage_samples += 1;
        }
    }

    fn allocated(&mut self, row: &AllocationRow) {
        self.allocated_ref(&row.as_ref());
    }

    fn allocated_ref(&mut self, row: &AllocatedRef<'_>) {
        let result = self.store.defer_allocated(row);
        if self.accepted(result, Some(row.chargeback_cost)) {
            self.summary.allocated_rows += 1;
        }
    }

    fn crosswalk(&mut self, entry: &CrosswalkEntry) {
        self.crosswalk.push(entry.clone());
        self.accepted(Ok(()), None);
        self.summary.crosswalk_rows += 1;
    }

    fn reject(&mut self, error: Error) {
        self.summary.rows_read += 1;
        self.summary.count_rejection(&error, self.max_rejections);
    }

    fn note(&mut self, note: InputNote) {
        let summary = &mut *self.summary;
        match note {
            // Clusters are few and all kept: the WarpStream writer marks each,
            // and writes a read one back as it was read.
            InputNote::Truncated(cluster) => summary.truncated_clusters.push(cluster),
            InputNote::Excluded(cluster) => summary.excluded_clusters.push(cluster),
            InputNote::Cluster(cluster) => summary.warpstream_clusters.push(cluster),
            InputNote::Warning(warning) => {
                summary.warnings_count += 1;
                if summary.warnings.len() < self.max_rejections {
                    summary.warnings.push(warning);
                }
            }
        }
    }
}

impl Session {
    /// A session with `options` and the default rules.
    pub fn new(options: Options) -> Session {
        let store = Store::new(options.granularity, options.range);
        Session {
            rules: Rules::defaults().unwrap_or_else(|_| Rules {
                credits_unallocated: true,
                resource_owners: Default::default(),
                default_chain: vec![],
                rules: vec![],
            }),
            options,
            store,
            files: Vec::new(),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Sets the invoice's usage subtotal the report reconciles against. It
    /// changes only the report, so the files need not be read again.
    pub fn set_invoice_subtotal(&mut self, subtotal: Option<Decimal>) {
        self.options.invoice_subtotal = subtotal;
    }

    /// Replaces the rules by a rules file (TOML); on error the rules are unchanged.
    pub fn set_rules_toml(&mut self, text: &str) -> Result<(), Error> {
        self.rules = Rules::from_toml(text)?;
        Ok(())
    }

    /// The default rules file (Confluent's product table and a WarpStream set).
    pub fn default_rules_toml() -> String {
        DEFAULT_RULES_TOML.to_string()
    }

    /// Starts a file; its rows are tagged with `org_id` (may be empty) unless they carry one.
    pub fn begin_file(&mut self, name: &str, org_id: &str) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).unwrap_or(u32::MAX));
        self.files.push(FileState {
            summary: FileSummary {
                name: name.to_string(),
                org_id: org_id.to_string(),
                ..FileSummary::default()
            },
            crosswalk: Vec::new(),
            head: Vec::new(),
            reader: None,
            closed: false,
        });
        id
    }

    /// Feeds the next chunk of a file. `Err` only when the file cannot be read at
    /// all (unknown format, missing column); the file is then closed.
    pub fn feed(&mut self, file: FileId, chunk: &[u8]) -> Result<(), Error> {
        let options = &self.options;
        let state = file_state(&mut self.files, file)?;
        state.summary.bytes = state.summary.bytes.saturating_add(chunk.len() as u64);
        let result = match state.reader.as_mut() {
            Some(reader) => {
                let mut ingest = Ingest::new(
                    &mut self.store,
                    &mut state.crosswalk,
                    &mut state.summary,
                    options.max_rejections,
                );
                reader.feed(chunk, &mut ingest)
            }
            None => {
                state.head.extend_from_slice(chunk);
                if state.head.len() < DETECT_BYTES {
                    return Ok(());
                }
                start_reader(state, options, &mut self.store)
            }
        };
        fail_file(state, result)
    }

    /// Ends a file and returns what happened to it.
    pub fn end_file(&mut self, file: FileId) -> Result<FileSummary, Error> {
        let options = &self.options;
        let state = file_state(&mut self.files, file)?;
        let mut result = Ok(());
        if state.reader.is_none() {
            if state.head.is_empty() {
                result = Err(Error::input(&state.summary.name, 0, "", "empty file"));
            } else {
                result = start_reader(state, options, &mut self.store);
            }
        }
        if result.is_ok() {
            if let Some(reader) = state.reader.as_mut() {
                let mut ingest = Ingest::new(
                    &mut self.store,
                    &mut state.crosswalk,
                    &mut state.summary,
                    options.max_rejections,
                );
                result = reader.finish(&mut ingest);
            }
        }
        let result = fail_file(state, result);
        state.closed = true;
        state.reader = None;
        result.map(|()| state.summary.clone())
    }

    /// The summaries of the files so far.
    pub fn files(&self) -> Vec<FileSummary> {
        self.files.iter().map(|f| f.summary.clone()).collect()
    }

    /// A file refused after some of its rows were taken (a JSON document cut
    /// short, or with text after its end). Its rows are folded into the
    /// session's totals and cannot be taken back out, so the session will not
    /// allocate; a new session without the file will.
    pub fn partly_read_file(&self) -> Option<&FileSummary> {
        self.files
            .iter()
            .map(|f| &f.summary)
            .find(|f| f.error.is_some() && f.rows_accepted > 0)
    }

    /// Allocates everything read and builds the report.
    pub fn allocate(&self) -> Result<Report, Error> {
        self.allocate_on(1)
    }

    /// [`Session::allocate`] with the buckets allocated on up to `threads`
    /// threads (natively; one after the other on wasm32): the same report.
    pub fn allocate_on(&self, threads: usize) -> Result<Report, Error> {
        if let Some(file) = self.partly_read_file() {
            return Err(Error::input(
                &file.name,
                0,
                "",
                format!(
                    "the file was refused after {} of its rows were read; nothing is \
                     allocated, since those rows would count for a file reported as \
                     not read: fix the file or leave it out",
                    file.rows_accepted
                ),
            ));
        }
        let settings = Settings {
            rules: &self.rules,
            level: self.options.entity_level,
            precision: self.options.precision,
            threads,
        };
        let allocation = allocate(&self.store, settings)?;
        // Each crosswalk row with the index of its file.
        let entries: Vec<(usize, &CrosswalkEntry)> = self
            .files
            .iter()
            .enumerate()
            .flat_map(|(file, state)| state.crosswalk.iter().map(move |entry| (file, entry)))
            .collect();
        let crosswalk = Crosswalk::build(entries.iter().map(|(_, entry)| *entry));
        let mut files = self.files();
        for (at, error) in &crosswalk.rejected {
            let summary = entries.get(*at).and_then(|(file, _)| files.get_mut(*file));
            if let Some(summary) = summary {
                summary.refuse_crosswalk_row(error, self.options.max_rejections);
            }
        }
        let report_settings = ReportSettings {
            precision: self.options.precision,
            policy: self.options.unallocated_policy,
            shared_cost_center: &self.options.shared_cost_center,
            invoice_subtotal: self.options.invoice_subtotal,
            filters: &self.options.filters,
            threads,
        };
        let mut report = Report::build(allocation, &crosswalk, files, &report_settings)?;
        report.lines = self.store.cost_lines();
        Ok(report)
    }
}

fn file_state(files: &mut [FileState], file: FileId) -> Result<&mut FileState, Error> {
    let state = usize::try_from(file.0)
        .ok()
        .and_then(|i| files.get_mut(i))
        .ok_or_else(|| Error::config(format!("no file with id {}", file.0)))?;
    if state.closed {
        return Err(Error::config(format!(
            "file `{}` is already ended",
            state.summary.name
        )));
    }
    Ok(state)
}

/// Detects the format from the buffered head, builds the reader and feeds it the head.
fn start_reader(state: &mut FileState, options: &Options, store: &mut Store) -> Result<(), Error> {
    let format: Format = detect(&state.summary.name, &state.head)?;
    state.summary.format = format.name().to_string();
    let mut reader = format.reader(
        &state.summary.name,
        &state.summary.org_id,
        options.max_record_bytes,
        options.focus_cost,
    );
    let head = std::mem::take(&mut state.head);
    let mut ingest = Ingest::new(
        store,
        &mut state.crosswalk,
        &mut state.summary,
        options.max_rejections,
    );
    let result = reader.feed(&head, &mut ingest);
    state.reader = Some(reader);
    result
}

/// Closes a file on a fatal error, recording it.
fn fail_file(state: &mut FileState, result: Result<(), Error>) -> Result<(), Error> {
    if let Err(error) = &result {
        state.summary.error = Some(error.to_string());
        state.reader = None;
        state.closed = true;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A term: a small or a near-limit mantissa (or zero, of either sign) at a
    /// few scales, so that runs open, break on scale changes, zeros, partial
    /// sums of zero and the 96-bit limit, and saturate.
    fn term() -> impl Strategy<Value = Decimal> {
        let mantissa = prop_oneof![
            -300i128..300,
            Just(0i128),
            (1i128 << 96) - 300..(1i128 << 96),
            -(1i128 << 96) + 1..-(1i128 << 96) + 300,
        ];
        (mantissa, prop_oneof![0u32..3, 0u32..29], any::<bool>()).prop_map(
            |(mantissa, scale, negative_zero)| {
                let mut value = Decimal::from_i128_with_scale(mantissa, scale);
                if mantissa == 0 && negative_zero {
                    value.set_sign_negative(true);
                }
                value
            },
        )
    }

    proptest! {
        /// The running total gives what a `saturating_add` per term gives, to
        /// the scale and sign (`serialize` compares every bit), whether it is
        /// finished once at the end or after any term.
        #[test]
        fn the_running_total_is_saturating_add_term_by_term(
            terms in proptest::collection::vec(term(), 0..60),
            finish_every in 1usize..80,
        ) {
            let mut expected = Decimal::ZERO;
            let mut total = Decimal::ZERO;
            let mut running = RunningTotal::default();
            for (at, term) in terms.iter().enumerate() {
                expected = expected.saturating_add(*term);
                running.add(&mut total, *term);
                if (at + 1) % finish_every == 0 {
                    running.finish(&mut total);
                    prop_assert_eq!(total.serialize(), expected.serialize());
                }
            }
            running.finish(&mut total);
            prop_assert_eq!(total.serialize(), expected.serialize());
        }
    }
}
