//! tally's browser module: the allocation core behind wasm-bindgen.
//!
//! A thin wrapper over [`tally::session::Session`], the entry point the command
//! line uses too, so the page and `tally allocate` give identical results. The
//! page's worker (`web/www/worker.js`) drives it:
//!
//! ```js
//! const s = new WebSession('{"granularity":"monthly"}');
//! s.set_rules(tomlText);                          // optional; defaults otherwise
//! const f = s.begin_file('bill.csv', 'org-a');    // org id may be ''
//! s.feed(f, uint8ArrayChunk);                     // any number of chunks, any size
//! const summary = JSON.parse(s.end_file(f));      // format, rows, rejections
//! const report = JSON.parse(s.allocate());        // totals, teams, reconciliation
//! const csv = s.output('confluent_csv');          // or focus_csv, warpstream_json, team_summary_csv
//! ```
//!
//! The options' `filters` (`{"entity_kind":"topic","min_total":"0.10",
//! "max_entities_per_cluster":2}`; default: every kind, no minimum, 500) are
//! the command line's `--entity-kind`, `--min-total` and
//! `--max-entities-per-cluster`: they filter the report's entity view and the
//! `warpstream_json` output, as they do there; that output refuses
//! `entity_kind` principal and a limit outside 1 to 5000 with the command
//! line's message (the entity view takes them).
//!
//! Errors are thrown as JS `Error`s whose message is the core's message (it names
//! the file, line, column and reason). Results cross as JSON strings. Nothing
//! here panics: the workspace denies `unwrap`, `expect`, `panic` and indexing.

use tally::report::Report;
use tally::session::{FileId, Options, Session};
use wasm_bindgen::prelude::*;

/// The version of the tally core compiled into this module.
#[wasm_bindgen]
pub fn version() -> String {
    format!("tally {}", env!("CARGO_PKG_VERSION"))
}

/// The default rules file (TOML): Confluent's published methodology.
#[wasm_bindgen]
pub fn default_rules_toml() -> String {
    Session::default_rules_toml()
}

/// Parses and validates a rules file with the core's parser; returns it as JSON
/// (the rules editor's model), or throws the parse / validation error.
#[wasm_bindgen]
pub fn rules_toml_to_json(toml: &str) -> Result<String, JsError> {
    let rules = tally::allocate::rules::Rules::from_toml(toml).map_err(js)?;
    serde_json::to_string(&rules).map_err(js)
}

/// The size of this module's linear memory in bytes (the wasm heap).
#[wasm_bindgen]
pub fn wasm_memory_bytes() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        (core::arch::wasm32::memory_size::<0>() as f64) * 65536.0
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0.0
    }
}

fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// The label of the page's control for each option the page sets
/// (`web/www/index.html`), so that a refused option is named as the user sees
/// it; the options the page has no control for are named by their path only.
const OPTION_LABELS: [(&str, &str); 11] = [
    ("granularity", "Time buckets"),
    ("entity_level", "Entities"),
    ("unallocated_policy", "Unallocated cost"),
    ("focus_cost", "FOCUS bills by"),
    ("precision", "Decimal places of amounts"),
    ("range", "Custom range"),
    ("shared_cost_center", "Shared cost center"),
    ("filters.entity_kind", "Entity kind"),
    ("filters.min_total", "Minimum total per entity"),
    (
        "filters.max_entities_per_cluster",
        "At most entities per cluster",
    ),
    // Set by `set_invoice_subtotal`, read as the options' `invoice_subtotal`.
    ("invoice_subtotal", "Invoice usage subtotal for the period"),
];

/// Reads the options JSON (blank: the defaults). A refused option is named
/// by its path in the options JSON and its control's label, e.g.
/// ``invalid option filters.min_total (Minimum total per entity): `abc` is not a decimal number``.
fn read_options(options_json: &str) -> Result<Options, String> {
    let text = if options_json.trim().is_empty() {
        "{}"
    } else {
        options_json
    };
    Options::from_json(text).map_err(option_error)
}

fn option_error(error: tally::error::Error) -> String {
    match error {
        tally::error::Error::InvalidValue { what, reason } => {
            match OPTION_LABELS.iter().find(|(path, _)| *path == what) {
                Some((_, label)) => format!("invalid option {what} ({label}): {reason}"),
                None => format!("invalid option {what}: {reason}"),
            }
        }
        other => format!("invalid options: {other}"),
    }
}

/// One allocation session: files in, report and outputs out.
#[wasm_bindgen]
pub struct WebSession {
    inner: Session,
    files: Vec<FileId>,
    report: Option<Report>,
}

#[wasm_bindgen]
impl WebSession {
    /// A new session; `options_json` is the core's `Options` as JSON (`{}` for
    /// the defaults: monthly buckets, principals, cents).
    #[wasm_bindgen(constructor)]
    pub fn new(options_json: &str) -> Result<WebSession, JsError> {
        Ok(WebSession {
            inner: Session::new(read_options(options_json).map_err(js)?),
            files: Vec::new(),
            report: None,
        })
    }

    /// Replaces the rules with a rules file (TOML); throws when it is invalid.
    pub fn set_rules(&mut self, toml: &str) -> Result<(), JsError> {
        self.report = None;
        self.inner.set_rules_toml(toml).map_err(js)
    }

    /// Starts a file; returns its handle for `feed` / `end_file`. `org_id` may be
    /// empty; it tags every row of the file (multi-organization roll-ups).
    pub fn begin_file(&mut self, name: &str, org_id: &str) -> u32 {
        self.report = None;
        let id = self.inner.begin_file(name, org_id);
        let handle = u32::try_from(self.files.len()).unwrap_or(u32::MAX);
        self.files.push(id);
        handle
    }

    fn file(&self, handle: u32) -> Result<FileId, JsError> {
        usize::try_from(handle)
            .ok()
            .and_then(|i| self.files.get(i))
            .copied()
            .ok_or_else(|| js(format!("no file with handle {handle}")))
    }

    /// Feeds the next chunk of a file (a `Uint8Array`, any size; a few MB is best).
    /// Throws only for what stops the whole file (unknown format, unusable header).
    pub fn feed(&mut self, file: u32, chunk: &[u8]) -> Result<(), JsError> {
        let id = self.file(file)?;
        self.inner.feed(id, chunk).map_err(js)
    }

    /// Ends a file; returns its summary as JSON (format, rows read / accepted /
    /// rejected, rejections with file, line, column and reason).
    pub fn end_file(&mut self, file: u32) -> Result<String, JsError> {
        let id = self.file(file)?;
        let summary = self.inner.end_file(id).map_err(js)?;
        serde_json::to_string(&summary).map_err(js)
    }

    /// Whether a file was refused after some of its rows were read (a JSON
    /// document cut short): the session then will not allocate, and a new one
    /// must read the other files again without it.
    pub fn partly_read(&self) -> bool {
        self.inner.partly_read_file().is_some()
    }

    /// Sets the invoice's usage subtotal the next report reconciles against
    /// (empty: none), read as the command line's `--invoice-subtotal` is.
    pub fn set_invoice_subtotal(&mut self, text: &str) -> Result<(), JsError> {
        let subtotal = if text.trim().is_empty() {
            None
        } else {
            let amount = tally::money::parse_amount("invoice_subtotal", text);
            Some(amount.map_err(|e| js(option_error(e)))?)
        };
        self.inner.set_invoice_subtotal(subtotal);
        self.report = None;
        Ok(())
    }

    /// Allocates everything fed so far; returns the report as JSON.
    pub fn allocate(&mut self) -> Result<String, JsError> {
        let report = self.inner.allocate().map_err(js)?;
        let json = report.to_json();
        self.report = Some(report);
        Ok(json)
    }

    /// One of the writers' outputs of the last report: `confluent_csv`,
    /// `focus_csv`, `warpstream_json`, `team_summary_csv` or `report_json`.
    pub fn output(&mut self, kind: &str) -> Result<String, JsError> {
        if self.report.is_none() {
            self.allocate()?;
        }
        let Some(report) = self.report.as_ref() else {
            return Err(js("nothing allocated yet"));
        };
        match kind {
            "confluent_csv" => Ok(report.confluent_csv()),
            "team_summary_csv" => Ok(report.team_summary_csv()),
            "focus_csv" => report.focus_csv().map_err(js),
            // Filtered as the command line filters it: by the session's
            // options, refused with its message when it refuses them (a
            // principal kind, a limit over 5000), for this download only.
            "warpstream_json" => self
                .inner
                .options()
                .filters
                .warpstream_options()
                .and_then(|options| report.warpstream_json(options))
                .map_err(js),
            "report_json" => Ok(report.to_json()),
            other => Err(js(format!(
                "unknown output `{other}` (confluent_csv, focus_csv, warpstream_json, team_summary_csv, report_json)"
            ))),
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// One refused option of each kind, with the message the page shows.
    #[test]
    fn a_refused_option_is_named_with_its_control() {
        let cases = [
            (
                r#"{"filters":{"min_total":"abc"}}"#,
                "invalid option filters.min_total (Minimum total per entity): `abc` is not a decimal number",
            ),
            (
                r#"{"filters":{"max_entities_per_cluster":"ten"}}"#,
                "invalid option filters.max_entities_per_cluster (At most entities per cluster): `ten` is not a whole number",
            ),
            (
                r#"{"precision":-1}"#,
                "invalid option precision (Decimal places of amounts): `-1` is not a whole number",
            ),
            (
                r#"{"granularity":"fortnightly"}"#,
                "invalid option granularity (Time buckets): unknown variant `fortnightly`, expected one of `hourly`, `daily`, `weekly`, `monthly`",
            ),
            (
                r#"{"range":["2026-04-01","someday"]}"#,
                "invalid option range (Custom range): end `someday` is not a date",
            ),
            (
                r#"{"max_rejections":true}"#,
                "invalid option max_rejections: expected a whole number, found a boolean",
            ),
            (
                r#"{"granularity":"weekly",}"#,
                "invalid options: options:1: invalid JSON: expected a member name",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(read_options(json).unwrap_err(), want, "{json}");
        }
    }

    /// Each label is that of a control of the page.
    #[test]
    fn option_labels_are_the_pages() {
        let page = include_str!("../www/index.html");
        for (path, label) in OPTION_LABELS {
            assert!(page.contains(&format!("\">{label}")), "{path}: {label}");
        }
    }
}
