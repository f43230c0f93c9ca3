//! The crosswalk CSV: who owns what, for roll-ups by team.
//!
//! Direct rows map `owner_id` (within `org_id`, optional: empty matches any
//! organization) to a `team` and optional `cost_center`. Pattern rows leave
//! `owner_id` empty and give `pattern_on` (`topic`, `principal` or `owner`) and a
//! `pattern` (a regular expression; a named capture `team` names the team,
//! otherwise the row's `team` column does). A row whose pattern is not a valid
//! regular expression, or that names no team (an empty `team` and no `team`
//! capture), is rejected; the report compiles the patterns again to match
//! them (see [`crate::report`]).

use super::csv::{ColumnMap, ColumnSpec, CsvReader, ParseRow, Record};
use super::{set, Sink};
use crate::error::Error;
use crate::model::{CrosswalkEntry, PatternOn, Source};

const ORG: usize = 0;
const OWNER: usize = 1;
const TEAM: usize = 2;
const COST_CENTER: usize = 3;
const PATTERN_ON: usize = 4;
const PATTERN: usize = 5;

/// The crosswalk's columns and the header names accepted for each.
pub const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::optional("org_id", &["org_id", "organization_id", "org"]),
    ColumnSpec::optional("owner_id", &["owner_id", "principal", "entity_id", "owner"]),
    ColumnSpec::required("team", &["team", "team_name", "business_unit"]),
    ColumnSpec::optional("cost_center", &["cost_center", "costcenter", "cost_centre"]),
    ColumnSpec::optional("pattern_on", &["pattern_on", "match_on"]),
    ColumnSpec::optional("pattern", &["pattern", "regex"]),
];

/// Streaming reader of a crosswalk CSV.
pub type CrosswalkReader = CsvReader<CrosswalkRows>;

/// The row parser of [`CrosswalkReader`].
pub struct CrosswalkRows {
    org_id: String,
    scratch: CrosswalkEntry,
}

/// A crosswalk reader for `file`; rows without `org_id` get `org_id` (may be empty).
pub fn reader(file: &str, org_id: &str, max_record: usize) -> CrosswalkReader {
    CsvReader::new(
        file,
        COLUMNS,
        max_record,
        CrosswalkRows {
            org_id: org_id.to_string(),
            scratch: CrosswalkEntry {
                source: Source {
                    file: file.to_string(),
                    line: 0,
                },
                org_id: String::new(),
                owner_id: String::new(),
                team: String::new(),
                cost_center: String::new(),
                pattern_on: None,
                pattern: String::new(),
            },
        },
    )
}

impl ParseRow for CrosswalkRows {
    fn parse_row(
        &mut self,
        cols: &ColumnMap,
        r: &Record<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), Error> {
        let s = &mut self.scratch;
        let file = s.source.file.as_str();
        let owner = cols.get(r, OWNER);
        let pattern = cols.get(r, PATTERN);
        let team = cols.get(r, TEAM);
        if owner.is_empty() && pattern.is_empty() {
            return Err(Error::input(
                file,
                r.line,
                "owner_id",
                "neither owner_id nor pattern is given",
            ));
        }
        let pattern_on = if pattern.is_empty() {
            None
        } else {
            let on = cols.get(r, PATTERN_ON);
            let parsed = if on.is_empty() {
                Some(PatternOn::Owner)
            } else {
                PatternOn::parse(on)
            };
            Some(parsed.ok_or_else(|| {
                Error::input(
                    file,
                    r.line,
                    "pattern_on",
                    format!("`{on}` is not topic, principal or owner"),
                )
            })?)
        };
        // A bad pattern rejects its row here, like any other bad value,
        // rather than stopping the report that compiles it.
        let has_team_group = if pattern.is_empty() {
            false
        } else {
            let regex = regex_lite::Regex::new(pattern).map_err(|e| {
                Error::input(
                    file,
                    r.line,
                    "pattern",
                    format!("invalid regular expression: {e}"),
                )
            })?;
            regex.capture_names().any(|name| name == Some("team"))
        };
        if team.is_empty() && !has_team_group {
            return Err(Error::input(
                file,
                r.line,
                "team",
                "empty, and the pattern has no `team` capture",
            ));
        }
        s.source.line = r.line;
        s.pattern_on = pattern_on;
        let org = cols.get(r, ORG);
        set(
            &mut s.org_id,
            if org.is_empty() { &self.org_id } else { org },
        );
        set(&mut s.owner_id, owner);
        set(&mut s.team, team);
        set(&mut s.cost_center, cols.get(r, COST_CENTER));
        set(&mut s.pattern, pattern);
        sink.crosswalk(s);
        Ok(())
    }
}
