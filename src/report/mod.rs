//! Roll-ups, filters, reconciliation.
//!
//! ## Design
//!
//! A [`Report`] is built from the allocation rows ([`crate::allocate`]) and what
//! the session knows about its inputs:
//!
//! * **Teams** through the crosswalk ([`Crosswalk`]): a direct `(org_id,
//!   owner_id)` match first, then one for any organization (an entry without
//!   an org), then the pattern row with the longest match (of equally long
//!   ones, the first by pattern text); owners nothing matches are charged to
//!   the team [`UNMATCHED_TEAM`] and listed in `unmatched_owners`. Rows that
//!   disagree are refused together, whatever their order: every row of an
//!   owner mapped to two teams in one organization (the owner is then
//!   unmatched) and every row giving a team two cost centers; they join their
//!   files' rejections and `crosswalk_notes`, which also names the owners
//!   that patterns with different teams matched. Each team's total is
//!   split into what it caused directly (usage- or owner-driven methods), the
//!   shared costs it received (even splits, weighted mixes, allocated-last), and
//!   its share of the unallocated rows, which go either to one shared cost center
//!   or pro rata to each team's total, per organization (exact apportionment).
//! * **Organizations**: totals per `org_id`.
//! * **Entities** (WarpStream-like view): totals per cluster × entity with the
//!   `entity_kind`, `min_total` and `max_entities_per_cluster` filters and a
//!   `truncated` flag; filters never change the totals above.
//! * **Reconciliation**: the bill total, what was allocated and left unallocated,
//!   an optional invoice subtotal, and the difference explained line by line.

use crate::allocate::{Allocation, BucketTotal, UNALLOCATED};
use crate::error::Error;
use crate::model::{AllocationRow, BillColumns, CrosswalkEntry, EntityLevel, Name, PatternOn};
use crate::money::{apportion, checked_sum, round};
use crate::session::FileSummary;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
// The Fx hasher: these maps are keyed by short strings per output row, where
// SipHash dominated the report's cost (iteration order was never relied on).
use crate::allocate::store::HashMap;
use std::collections::{BTreeMap, BTreeSet};

/// The team of owners no crosswalk row matches.
pub const UNMATCHED_TEAM: &str = "(unmatched)";

/// Where the unallocated rows go in the team roll-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnallocatedPolicy {
    /// To one shared cost center (the team named by `Options::shared_cost_center`).
    #[default]
    SharedCostCenter,
    /// Pro rata to each team's total on the same bill (a FOCUS invoice; all of
    /// Confluent's or WarpStream's lines are one), or within its organization
    /// when no team has charges on that bill.
    ProRata,
}

/// WarpStream-like filters of the entity view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filters {
    /// Only entities of this level.
    pub entity_kind: Option<EntityLevel>,
    /// Omit entities whose total is below this (JSON: a number or its text,
    /// in the readers' one spelling of numbers, as the command line's flag).
    pub min_total: Option<Decimal>,
    /// At most this many entities per cluster (largest first); `truncated` set when cut.
    pub max_entities_per_cluster: usize,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            entity_kind: None,
            min_total: None,
            max_entities_per_cluster: 500,
        }
    }
}

impl Filters {
    /// WarpStream's request filters that say what these say, for
    /// [`Report::warpstream_json`]; the page and the command line both take
    /// them from here, so both refuse the same filters with the same message
    /// (the command line before it reads a file). The entity view takes
    /// what is refused here.
    ///
    /// WarpStream's chargebacks are topic-level results: topics, subjects
    /// and tables, each written with its own `entity_kind`. So the level
    /// `topic` keeps them all, as no kind does and as the entity view's
    /// `topic` does; `principal` is refused, since no principal is a
    /// WarpStream entity (the writer writes topic-level rows only, so it gave
    /// the file `topic` gives). A limit outside 1 to 5000 is refused, as
    /// WarpStream's API refuses it ([`crate::formats::warpstream::entities_per_cluster`]).
    pub fn warpstream_options(&self) -> Result<crate::formats::warpstream::WriteOptions, Error> {
        if self.entity_kind == Some(EntityLevel::Principal) {
            return Err(Error::config(
                "entity_kind principal has no WarpStream output: WarpStream chargebacks \
                 hold topic-level results (topics, subjects, tables); ask for entity_kind \
                 topic, or none",
            ));
        }
        Ok(crate::formats::warpstream::WriteOptions {
            entity_kind: None,
            min_total: self.min_total,
            max_entities_per_cluster: crate::formats::warpstream::entities_per_cluster(
                self.max_entities_per_cluster,
            )?,
            ..crate::formats::warpstream::WriteOptions::default()
        })
    }
}

/// A compiled crosswalk (see the module docs for its precedence).
///
/// What a set of rows says never depends on their order: rows that disagree
/// are refused together ([`Crosswalk::rejected`]), and equally long pattern
/// matches are taken in an order of their own.
#[derive(Debug, Default)]
pub struct Crosswalk {
    /// org → owner → (team, cost center); `None` for an owner whose rows were
    /// refused as conflicting: it goes to [`UNMATCHED_TEAM`], whatever a less
    /// specific row or a pattern would say.
    direct: HashMap<String, HashMap<String, Option<(String, String)>>>,
    /// In the order equally long matches are taken: by pattern text, then
    /// what it matches on, team and cost center.
    patterns: Vec<Pattern>,
    /// The entries refused (their index in the entries given) and why, in
    /// the entries' order.
    pub rejected: Vec<(usize, Error)>,
    /// The conflicts that refused rows, in words, for the report's summary.
    pub notes: Vec<String>,
}

/// A pattern row, compiled.
#[derive(Debug)]
struct Pattern {
    on: PatternOn,
    regex: regex_lite::Regex,
    team: String,
    cost_center: String,
    /// `file:line`, for the summary.
    at: String,
}

/// What the crosswalk gives an owner.
#[derive(Debug, Default)]
struct Resolved<'c> {
    /// The team and cost center, if any row gives one.
    team: Option<(String, String)>,
    /// When patterns decided: the one taken and those that matched too with
    /// another team.
    pattern: Option<&'c Pattern>,
    rivals: Vec<(&'c Pattern, String)>,
}

/// `file:line` of a crosswalk row.
fn row_at(entry: &CrosswalkEntry) -> String {
    format!("{}:{}", entry.source.file, entry.source.line)
}

impl Crosswalk {
    /// Compiles crosswalk entries. Nothing stops it: a row that cannot be
    /// used is refused, with why, in [`Crosswalk::rejected`]: a pattern that
    /// is not a regular expression (the reader refuses those first), every
    /// row of an owner mapped to two teams within one organization, and every
    /// row giving one team two cost centers.
    pub fn build<'e>(entries: impl IntoIterator<Item = &'e CrosswalkEntry>) -> Crosswalk {
        let entries: Vec<&CrosswalkEntry> = entries.into_iter().collect();
        let mut refused: BTreeMap<usize, Error> = BTreeMap::new();
        let mut notes = Vec::new();
        let mut compiled: BTreeMap<usize, regex_lite::Regex> = BTreeMap::new();
        for (at, entry) in entries.iter().enumerate() {
            if entry.pattern_on.is_some() {
                match regex_lite::Regex::new(&entry.pattern) {
                    Ok(regex) => {
                        compiled.insert(at, regex);
                    }
                    Err(e) => {
                        let reason = format!("invalid regular expression: {e}");
                        refused.insert(at, refusal(entry, "pattern", reason));
                    }
                }
            }
        }
        let mut conflicted = owner_conflicts(&entries, &mut refused, &mut notes);
        // A pattern row names its team literally unless its regex captures one.
        let literal_team = |at: &usize| {
            compiled
                .get(at)
                .is_none_or(|regex| !regex.capture_names().any(|n| n == Some("team")))
        };
        conflicted.extend(cost_center_conflicts(
            &entries,
            &literal_team,
            &mut refused,
            &mut notes,
        ));
        let mut crosswalk = Crosswalk::default();
        for (at, entry) in entries.iter().enumerate() {
            if refused.contains_key(&at) {
                continue;
            }
            match (entry.pattern_on, compiled.remove(&at)) {
                (Some(on), Some(regex)) => crosswalk.patterns.push(Pattern {
                    on,
                    regex,
                    team: entry.team.clone(),
                    cost_center: entry.cost_center.clone(),
                    at: row_at(entry),
                }),
                _ => {
                    crosswalk
                        .direct
                        .entry(entry.org_id.clone())
                        .or_default()
                        .insert(
                            entry.owner_id.clone(),
                            Some((entry.team.clone(), entry.cost_center.clone())),
                        );
                }
            }
        }
        for (org, owner) in conflicted {
            crosswalk
                .direct
                .entry(org.to_string())
                .or_default()
                .insert(owner.to_string(), None);
        }
        crosswalk.patterns.sort_by(|a, b| {
            (a.regex.as_str(), a.on, &a.team, &a.cost_center).cmp(&(
                b.regex.as_str(),
                b.on,
                &b.team,
                &b.cost_center,
            ))
        });
        crosswalk.rejected = refused.into_iter().collect();
        crosswalk.notes = notes;
        crosswalk
    }

    /// The (team, cost center) of an owner, if any row matches.
    pub fn team_of(&self, org: &str, owner: &str, level: EntityLevel) -> Option<(String, String)> {
        self.resolve(org, owner, level).team
    }

    /// The team of an owner: its own row in `org`, else its row for any
    /// organization, else the pattern with the longest match (the first of
    /// equally long ones in [`Crosswalk::patterns`]' order). An owner whose
    /// rows conflicted has none.
    fn resolve(&self, org: &str, owner: &str, level: EntityLevel) -> Resolved<'_> {
        let direct = |org: &str| self.direct.get(org).and_then(|owners| owners.get(owner));
        if let Some(found) = direct(org).or_else(|| direct("")) {
            return Resolved {
                team: found.clone(),
                ..Resolved::default()
            };
        }
        let mut matched: Vec<(usize, &Pattern, &str)> = Vec::new();
        for pattern in &self.patterns {
            let applies = match pattern.on {
                PatternOn::Topic => level == EntityLevel::Topic,
                PatternOn::Principal => level == EntityLevel::Principal,
                PatternOn::Owner => true,
            };
            let Some(captures) = applies.then(|| pattern.regex.captures(owner)).flatten() else {
                continue;
            };
            let team = captures
                .name("team")
                .map(|m| m.as_str())
                .filter(|t| !t.is_empty())
                .unwrap_or(&pattern.team);
            // An empty capture and no `team` column name no team: the row
            // does not match (a team named "" would be written out).
            if team.is_empty() {
                continue;
            }
            let length = captures.get(0).map_or(0, |m| m.len());
            matched.push((length, pattern, team));
        }
        // The longest match; `max_by_key` would take the last of equals.
        let Some(&(_, taken, team)) = matched.iter().rev().max_by_key(|(length, ..)| *length)
        else {
            return Resolved::default();
        };
        let rivals = matched
            .iter()
            .filter(|(.., other)| *other != team)
            .map(|&(_, pattern, other)| (pattern, other.to_string()))
            .collect();
        Resolved {
            team: Some((team.to_string(), taken.cost_center.clone())),
            pattern: Some(taken),
            rivals,
        }
    }
}

/// An input error at a crosswalk row.
fn refusal(entry: &CrosswalkEntry, column: &str, reason: String) -> Error {
    Error::input(&entry.source.file, entry.source.line, column, reason)
}

/// How a note names an owner's organization.
fn in_org(org: &str) -> String {
    if org.is_empty() {
        String::new()
    } else {
        format!(" in organization `{org}`")
    }
}

/// The rows not yet refused that `keep` takes, with their positions, sorted
/// by `key` and then position: grouped by sorting rather than in a map, one
/// allocation for all of them.
fn sorted_rows<'e, K: Ord>(
    entries: &[&'e CrosswalkEntry],
    refused: &BTreeMap<usize, Error>,
    keep: impl Fn(usize, &CrosswalkEntry) -> bool,
    key: impl Fn(&'e CrosswalkEntry) -> K,
) -> Vec<(usize, &'e CrosswalkEntry)> {
    let mut rows: Vec<(usize, &CrosswalkEntry)> = entries
        .iter()
        .enumerate()
        .filter(|&(at, entry)| !refused.contains_key(&at) && keep(at, entry))
        .map(|(at, entry)| (at, *entry))
        .collect();
    rows.sort_by(|(a_at, a), (b_at, b)| (key(a), a_at).cmp(&(key(b), b_at)));
    rows
}

/// Refuses every owner row (not yet refused) of an owner mapped to two
/// teams within one organization; returns those (organization, owner).
fn owner_conflicts<'e>(
    entries: &[&'e CrosswalkEntry],
    refused: &mut BTreeMap<usize, Error>,
    notes: &mut Vec<String>,
) -> BTreeSet<(&'e str, &'e str)> {
    let rows = sorted_rows(
        entries,
        refused,
        |_, entry| entry.pattern_on.is_none(),
        |entry| (&entry.org_id, &entry.owner_id),
    );
    let mut conflicted = BTreeSet::new();
    let same_owner = |(_, a): &(usize, &CrosswalkEntry), (_, b): &(usize, &CrosswalkEntry)| {
        a.org_id == b.org_id && a.owner_id == b.owner_id
    };
    for group in rows.chunk_by(same_owner) {
        let Some(&(_, first)) = group.first() else {
            continue;
        };
        if group.iter().all(|(_, entry)| entry.team == first.team) {
            continue;
        }
        let (org, owner) = (first.org_id.as_str(), first.owner_id.as_str());
        for &(at, entry) in group {
            let others: Vec<String> = group
                .iter()
                .filter(|(_, other)| other.team != entry.team)
                .map(|(_, other)| format!("`{}` at {}", other.team, row_at(other)))
                .collect();
            let reason = format!(
                "owner `{owner}`{} is mapped to team `{}` here and to {}: every row of an owner \
                 mapped to two teams is refused, and the owner goes to {UNMATCHED_TEAM}",
                in_org(org),
                entry.team,
                others.join(", ")
            );
            refused.insert(at, refusal(entry, "team", reason));
        }
        let lines: Vec<String> = group
            .iter()
            .map(|(_, e)| format!("`{}` ({})", e.team, row_at(e)))
            .collect();
        notes.push(format!(
            "owner `{owner}`{} is mapped to different teams: {}; those rows are refused and \
             the owner goes to {UNMATCHED_TEAM}",
            in_org(org),
            lines.join(", ")
        ));
        conflicted.insert((org, owner));
    }
    conflicted
}

/// Refuses every row (not yet refused) giving a team a cost center that
/// another row gives it differently, within one organization (a row for any
/// organization meets every organization's); returns the (organization,
/// owner) of the owner rows refused. Rows without a cost center give none.
/// Pattern rows whose regex captures the team are left out: their teams are
/// known only when they match.
fn cost_center_conflicts<'e>(
    entries: &[&'e CrosswalkEntry],
    literal_team: &dyn Fn(&usize) -> bool,
    refused: &mut BTreeMap<usize, Error>,
    notes: &mut Vec<String>,
) -> BTreeSet<(&'e str, &'e str)> {
    let rows = sorted_rows(
        entries,
        refused,
        |at, entry| !entry.cost_center.is_empty() && literal_team(&at),
        |entry| (&entry.team, &entry.org_id, &entry.cost_center),
    );
    let mut conflicted = BTreeSet::new();
    let same_team =
        |(_, a): &(usize, &CrosswalkEntry), (_, b): &(usize, &CrosswalkEntry)| a.team == b.team;
    for team_rows in rows.chunk_by(same_team) {
        let Some(&(_, first)) = team_rows.first() else {
            continue;
        };
        if team_rows
            .iter()
            .all(|(_, entry)| entry.cost_center == first.cost_center)
        {
            continue;
        }
        // Each (organization, cost center) the team is given, by its first row.
        let given: Vec<&CrosswalkEntry> = team_rows
            .chunk_by(|(_, a), (_, b)| a.org_id == b.org_id && a.cost_center == b.cost_center)
            .filter_map(|rows| rows.first().map(|(_, entry)| *entry))
            .collect();
        let mut clashed = false;
        for &(at, entry) in team_rows {
            // The other cost centers this team is given where this row applies.
            let others: Vec<String> = given
                .iter()
                .filter(|other| {
                    other.cost_center != entry.cost_center
                        && (entry.org_id.is_empty()
                            || other.org_id.is_empty()
                            || other.org_id == entry.org_id)
                })
                .map(|other| format!("`{}` at {}", other.cost_center, row_at(other)))
                .collect();
            if others.is_empty() {
                continue;
            }
            clashed = true;
            let reason = format!(
                "team `{}`{} is given cost center `{}` here and {}: every row giving a team \
                 two cost centers is refused",
                entry.team,
                in_org(&entry.org_id),
                entry.cost_center,
                others.join(", ")
            );
            refused.insert(at, refusal(entry, "cost_center", reason));
            if entry.pattern_on.is_none() {
                conflicted.insert((entry.org_id.as_str(), entry.owner_id.as_str()));
            }
        }
        if clashed {
            let lines: Vec<String> = given
                .iter()
                .map(|e| format!("`{}`{} ({})", e.cost_center, in_org(&e.org_id), row_at(e)))
                .collect();
            notes.push(format!(
                "team `{}` is given different cost centers: {}; those rows are refused",
                first.team,
                lines.join(", ")
            ));
        }
    }
    conflicted
}

/// One team's roll-up.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct TeamSummary {
    /// Organization.
    pub org_id: String,
    /// Team.
    pub team: String,
    /// Cost center (where patterns capturing the team gave several, the first by text).
    pub cost_center: String,
    /// Costs the team's entities caused (usage- or owner-driven).
    pub direct: Decimal,
    /// Shared costs received (even splits, weighted mixes, allocated last).
    pub shared: Decimal,
    /// Unallocated costs received (shared cost center or pro rata).
    pub unallocated: Decimal,
    /// direct + shared + unallocated.
    pub total: Decimal,
    /// Distinct owners charged to the team.
    pub owners: usize,
    /// Those owners by name, in order (the page shows each principal's and
    /// topic's team from these: the entity view's filters leave owners out).
    pub owner_ids: Vec<String>,
}

/// One organization's totals.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct OrgTotal {
    /// Organization.
    pub org_id: String,
    /// Allocated to entities.
    pub allocated: Decimal,
    /// Unallocated.
    pub unallocated: Decimal,
    /// Both.
    pub total: Decimal,
}

/// One line item of an entity (WarpStream-like).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntityCharge {
    /// Product.
    pub product: Name,
    /// Line type.
    pub line_type: Name,
    /// Amount.
    pub total: Decimal,
}

/// One entity of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntityTotal {
    /// The entity (principal, topic or resource id).
    pub name: Name,
    /// Its level.
    pub level: EntityLevel,
    /// Its team.
    pub team: Name,
    /// Line items.
    pub chargebacks: Vec<EntityCharge>,
    /// Their sum.
    pub total: Decimal,
}

/// The entities of one cluster (resource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterEntities {
    /// Organization.
    pub org_id: String,
    /// The resource (cluster) id; empty for organization-level lines.
    pub cluster_id: String,
    /// Entities, largest total first.
    pub entities: Vec<EntityTotal>,
    /// Whether entities were cut by `max_entities_per_cluster`.
    pub truncated: bool,
    /// How many entities were omitted by `min_total`.
    pub below_min_total: usize,
}

/// Totals compared, with the differences explained.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Reconciliation {
    /// The bill lines' total inside the range (exports: the sum of their rows).
    pub bill_total: Decimal,
    /// Allocated to entities.
    pub allocated_total: Decimal,
    /// On unallocated rows (credits included).
    pub unallocated_total: Decimal,
    /// Negative amounts (credits, refunds) within the totals.
    pub credits_total: Decimal,
    /// Bill amounts outside the custom range.
    pub outside_range: Decimal,
    /// Bill amounts lost to rounding at the output precision.
    pub rounding: Decimal,
    /// Input rows accepted / rejected, over all files.
    pub rows_accepted: u64,
    /// Rows rejected.
    pub rows_rejected: u64,
    /// The invoice's usage subtotal, when given.
    pub invoice_subtotal: Option<Decimal>,
    /// invoice_subtotal − (allocated + unallocated), when given.
    pub difference: Option<Decimal>,
    /// Whether allocated + unallocated equals the bill (and the invoice, when given).
    pub balanced: bool,
    /// The differences, in words.
    pub explanations: Vec<String>,
}

/// Everything the page and the command line show.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Decimal places of the amounts.
    pub precision: u32,
    /// The input files.
    pub files: Vec<FileSummary>,
    /// Allocation rows (Confluent export columns plus the why).
    pub rows: Vec<AllocationRow>,
    /// Per bucket totals.
    pub buckets: Vec<BucketTotal>,
    /// Per team roll-up.
    pub teams: Vec<TeamSummary>,
    /// Per organization totals.
    pub organizations: Vec<OrgTotal>,
    /// Filtered entity view per cluster.
    pub clusters: Vec<ClusterEntities>,
    /// Owners no crosswalk row matched.
    pub unmatched_owners: Vec<String>,
    /// What the crosswalk's rows disagreed on: the conflicts that refused
    /// rows, owners that patterns with different teams matched, teams given
    /// different cost centers.
    pub crosswalk_notes: Vec<String>,
    /// The reconciliation.
    pub reconciliation: Reconciliation,
    /// The bill's cost lines (for writers that need quantities and prices).
    #[serde(skip)]
    pub lines: Vec<crate::model::CostLine>,
    /// How the lines read from FOCUS bills were allocated, those no row shows
    /// included (for the FOCUS writer).
    #[serde(skip)]
    pub charges: Vec<crate::model::AllocatedCharge>,
}

/// How a report is built.
#[derive(Debug, Clone)]
pub struct ReportSettings<'a> {
    /// Decimal places.
    pub precision: u32,
    /// Where unallocated goes.
    pub policy: UnallocatedPolicy,
    /// The shared cost center's team name.
    pub shared_cost_center: &'a str,
    /// The invoice subtotal.
    pub invoice_subtotal: Option<Decimal>,
    /// Entity-view filters.
    pub filters: &'a Filters,
    /// Threads the report may use: the team roll-up and the entity view are
    /// two passes over the rows that need not wait for each other.
    pub threads: usize,
}

/// Whether a row's method spreads a shared cost (else the owner caused it).
pub fn is_shared(row: &AllocationRow) -> bool {
    match row.line.method.as_str() {
        "even_active" | "even_period" | "weighted" | "allocated_last" | "fixed" => true,
        "confluent_export" => {
            row.line.product.starts_with("support")
                || ["CKU", "Storage", "Partition", "Base"]
                    .iter()
                    .any(|k| row.line.line_type.contains(k))
        }
        _ => false,
    }
}

impl Report {
    /// Builds a report from an allocation, the crosswalk and the file summaries.
    pub fn build(
        allocation: Allocation,
        crosswalk: &Crosswalk,
        files: Vec<FileSummary>,
        settings: &ReportSettings<'_>,
    ) -> Result<Report, Error> {
        let rows = &allocation.rows;
        let (team_roll_up, entity_view) = crate::threads::both(
            settings.threads,
            || team_summaries(rows, crosswalk, settings),
            || cluster_entities(rows, crosswalk, settings.filters),
        );
        let (teams, unmatched, pattern_notes) = team_roll_up?;
        let clusters = entity_view?;
        let organizations = org_totals(&allocation.buckets)?;
        let reconciliation = reconcile(
            &allocation,
            &files,
            settings.invoice_subtotal,
            settings.precision,
        )?;
        Ok(Report {
            precision: settings.precision,
            files,
            rows: allocation.rows,
            buckets: allocation.buckets,
            teams,
            organizations,
            clusters,
            unmatched_owners: unmatched,
            crosswalk_notes: crosswalk
                .notes
                .iter()
                .cloned()
                .chain(pattern_notes)
                .collect(),
            reconciliation,
            lines: Vec::new(),
            charges: allocation.charges,
        })
    }

    /// The rows as a Confluent-style cost-allocation export CSV.
    pub fn confluent_csv(&self) -> String {
        crate::formats::confluent::write(&self.rows)
    }

    /// The allocation as a FOCUS 1.3 CSV: every row, each at the level its
    /// line was allocated at, so that it sums to the bill (the page and the
    /// command line both write this).
    pub fn focus_csv(&self) -> Result<String, Error> {
        let options = crate::formats::focus::WriteOptions {
            precision: self.precision,
            ..Default::default()
        };
        crate::formats::focus::write_focus(&self.rows, &self.lines, &self.charges, &options)
    }

    /// The topic-level rows as a WarpStream chargebacks response (`options`
    /// filter them), with the input's excluded clusters listed and its
    /// truncated ones marked `truncated` (besides those
    /// `options.max_entities_per_cluster` cuts). A cluster read from a
    /// WarpStream response is written under the `tenant_id` it was read
    /// under, its rows and, when excluded, the cluster itself; other rows
    /// under their organization (the file's, for an excluded cluster without
    /// a tenant); it keeps its name, regions, type, workspace name,
    /// `entity_kind` and `storage_attribution_method`, and its line items
    /// their quantities and unit prices as read (those with a zero total, which
    /// make no row, too: [`crate::formats::warpstream::WriteOptions::read`]).
    /// Its period is the report's, its buckets' first start to last end,
    /// unless `options` names one: a run without topic rows writes an empty
    /// response for its period rather than failing (the page and the command
    /// line both write this).
    pub fn warpstream_json(
        &self,
        mut options: crate::formats::warpstream::WriteOptions,
    ) -> Result<String, Error> {
        for file in &self.files {
            options
                .excluded
                .extend(file.excluded_clusters.iter().map(|c| {
                    let mut c = c.clone();
                    if c.tenant_id.is_empty() {
                        c.tenant_id.clone_from(&file.org_id);
                    }
                    c
                }));
            options
                .read
                .extend(file.warpstream_clusters.iter().cloned());
            options.truncated_clusters.extend(
                file.truncated_clusters
                    .iter()
                    .map(|c| c.virtual_cluster_id.clone()),
            );
        }
        let start = self.buckets.iter().map(|b| b.bucket_start).min();
        let end = self.buckets.iter().map(|b| b.bucket_end).max();
        options.period = options.period.or(start.zip(end));
        crate::formats::warpstream::write_chargebacks(&self.rows, &self.lines, &options)
    }

    /// The per-team summary CSV.
    pub fn team_summary_csv(&self) -> String {
        crate::formats::team_summary::write(&self.teams)
    }

    /// The whole report as JSON (what the page renders).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn add(slot: &mut Decimal, amount: Decimal) -> Result<(), Error> {
    *slot = slot
        .checked_add(amount)
        .ok_or_else(|| Error::overflow("report totals"))?;
    Ok(())
}

/// The teams, the owners no crosswalk row matched, and the notes on patterns
/// that disagreed.
type TeamRollUp = (Vec<TeamSummary>, Vec<String>, Vec<String>);

/// Team roll-up, the owners no crosswalk row matched, and notes on patterns
/// that disagreed (an owner matched with different teams, a team given
/// different cost centers).
fn team_summaries<'r>(
    rows: &'r [AllocationRow],
    crosswalk: &Crosswalk,
    settings: &ReportSettings<'_>,
) -> Result<TeamRollUp, Error> {
    // First per owner (few) rather than per row (many), then per team. Per
    // row, owners are told apart by their shared names' addresses (two words
    // to hash, no text to compare); then equal texts are merged. Pro rata, each
    // bill's unallocated amount goes by the teams' totals on that bill, so
    // owners are also told apart by bill then.
    type Totals<'r> = (&'r str, &'r str, &'r str, Decimal, Decimal);
    let by_bill = settings.policy == UnallocatedPolicy::ProRata;
    let bill_of = |row: &'r AllocationRow| {
        if by_bill {
            BillColumns::bill_key(&row.line.bill_columns)
        } else {
            ""
        }
    };
    let mut by_addr: HashMap<(usize, usize, usize, EntityLevel), Totals<'_>> = HashMap::default();
    let mut unallocated: BTreeMap<(&str, &str), Decimal> = BTreeMap::new();
    // Rows come sorted by product and line type: `is_shared` (substring
    // searches, dearer than the rest of a row) is decided once per run of rows
    // with the same method, product and line type.
    let mut last: Option<(&Name, &Name, &Name, bool)> = None;
    for row in rows {
        if row.owner_id == UNALLOCATED {
            add(
                unallocated
                    .entry((&row.line.org_id, bill_of(row)))
                    .or_default(),
                row.chargeback_cost,
            )?;
            continue;
        }
        let bill = if by_bill {
            row.line.bill_columns.addr()
        } else {
            0
        };
        let slot = by_addr
            .entry((
                row.line.org_id.addr(),
                row.owner_id.addr(),
                bill,
                row.line.level,
            ))
            .or_insert((
                &row.line.org_id,
                &row.owner_id,
                bill_of(row),
                Decimal::ZERO,
                Decimal::ZERO,
            ));
        let shared = match last {
            Some((method, product, line_type, shared))
                if *method == row.line.method
                    && *product == row.line.product
                    && *line_type == row.line.line_type =>
            {
                shared
            }
            _ => {
                let shared = is_shared(row);
                last = Some((
                    &row.line.method,
                    &row.line.product,
                    &row.line.line_type,
                    shared,
                ));
                shared
            }
        };
        add(
            if shared { &mut slot.4 } else { &mut slot.3 },
            row.chargeback_cost,
        )?;
    }
    // (org, owner, level) → direct, shared and the total on each bill.
    type OwnerTotals<'r> = (Decimal, Decimal, BTreeMap<&'r str, Decimal>);
    let mut by_owner: HashMap<(&str, &str, EntityLevel), OwnerTotals<'_>> = HashMap::default();
    for ((.., level), (org, owner, bill, direct, shared)) in by_addr {
        let slot = by_owner.entry((org, owner, level)).or_default();
        add(&mut slot.0, direct)?;
        add(&mut slot.1, shared)?;
        add(
            slot.2.entry(bill).or_default(),
            checked_sum([direct, shared], "owner total")?,
        )?;
    }
    let mut teams: BTreeMap<(String, String), TeamSummary> = BTreeMap::new();
    let mut owners: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    let mut unmatched = BTreeSet::new();
    // (org, bill) → each team's total on it: the weights of the pro rata policy.
    let mut on_bills: BTreeMap<(&str, &str), BTreeMap<String, Decimal>> = BTreeMap::new();
    // Patterns that disagreed on an owner (the one taken, the others) → the
    // owners; and each team's cost centers, which patterns capturing the
    // team's name may disagree on: both for the summary.
    let mut disputed: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut cost_centers: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for ((org, owner, level), (direct, shared, bills)) in by_owner {
        let resolved = crosswalk.resolve(org, owner, level);
        if let (Some(taken), Some((team, _))) = (resolved.pattern, &resolved.team) {
            if !resolved.rivals.is_empty() {
                let others: Vec<String> = resolved
                    .rivals
                    .iter()
                    .map(|(other, other_team)| pattern_gives(other, other_team))
                    .collect();
                let dispute = format!("{} over {}", pattern_gives(taken, team), others.join(", "));
                disputed.entry(dispute).or_default().insert(owner);
            }
        }
        let (team, cost_center) = resolved.team.unwrap_or_else(|| {
            unmatched.insert(owner.to_string());
            (UNMATCHED_TEAM.to_string(), String::new())
        });
        let key = (org.to_string(), team.clone());
        let summary = teams.entry(key.clone()).or_insert_with(|| TeamSummary {
            org_id: org.to_string(),
            team,
            cost_center: cost_center.clone(),
            ..TeamSummary::default()
        });
        // The team's cost center so far is the least of those given: any
        // other one given is noted with it, so all of them are, in any order.
        let known = &summary.cost_center;
        if !cost_center.is_empty() && !known.is_empty() && cost_center != *known {
            let given = cost_centers.entry(key.clone()).or_default();
            given.extend([cost_center.clone(), known.clone()]);
        }
        if summary.cost_center.is_empty()
            || (!cost_center.is_empty() && cost_center < summary.cost_center)
        {
            summary.cost_center = cost_center;
        }
        add(&mut summary.direct, direct)?;
        add(&mut summary.shared, shared)?;
        for (bill, total) in bills {
            let team = on_bills.entry((org, bill)).or_default();
            add(team.entry(summary.team.clone()).or_default(), total)?;
        }
        owners.entry(key).or_default().insert(owner);
    }
    for ((org, bill), amount) in unallocated {
        let on_bill = on_bills.get(&(org, bill));
        distribute_unallocated(&mut teams, org, on_bill, amount, settings)?;
    }
    let mut out = Vec::with_capacity(teams.len());
    for (key, mut summary) in teams {
        summary.owner_ids = owners
            .get(&key)
            .map(|names| names.iter().map(|name| name.to_string()).collect())
            .unwrap_or_default();
        summary.owners = summary.owner_ids.len();
        summary.total = checked_sum(
            [summary.direct, summary.shared, summary.unallocated],
            "team total",
        )?;
        for amount in [
            &mut summary.direct,
            &mut summary.shared,
            &mut summary.unallocated,
            &mut summary.total,
        ] {
            *amount = round(*amount, settings.precision);
        }
        out.push(summary);
    }
    let mut notes: Vec<String> = disputed
        .into_iter()
        .map(|(dispute, owners)| {
            let owners: Vec<&str> = owners.into_iter().collect();
            format!(
                "patterns with different teams matched {}: {dispute}; the longest match is \
                 taken (of equally long ones, the first by pattern text)",
                listed(&owners)
            )
        })
        .collect();
    for ((org, team), given) in cost_centers {
        let given: Vec<String> = given.into_iter().map(|cc| format!("`{cc}`")).collect();
        notes.push(format!(
            "team `{team}`{} is given cost centers {} by patterns that capture its name; \
             its summary shows the first",
            in_org(&org),
            given.join(", ")
        ));
    }
    Ok((out, unmatched.into_iter().collect(), notes))
}

/// A pattern and the team it gives, for the summary.
fn pattern_gives(pattern: &Pattern, team: &str) -> String {
    format!("`{}` → `{team}` ({})", pattern.regex.as_str(), pattern.at)
}

/// Up to five owners by name, then how many more.
fn listed(owners: &[&str]) -> String {
    const SHOWN: usize = 5;
    let named: Vec<String> = owners
        .iter()
        .take(SHOWN)
        .map(|o| format!("`{o}`"))
        .collect();
    match owners.len().checked_sub(SHOWN).filter(|more| *more > 0) {
        Some(more) => format!("{} and {more} more", named.join(", ")),
        None => named.join(", "),
    }
}

/// Gives an unallocated amount of an organization's bill to the shared cost
/// center, or pro rata: by the teams' totals on that bill (`on_bill`), else,
/// when no team has charges on it (a credit alone on its invoice), by their
/// totals in the organization.
fn distribute_unallocated(
    teams: &mut BTreeMap<(String, String), TeamSummary>,
    org: &str,
    on_bill: Option<&BTreeMap<String, Decimal>>,
    amount: Decimal,
    settings: &ReportSettings<'_>,
) -> Result<(), Error> {
    if settings.policy == UnallocatedPolicy::ProRata {
        let positive = |total: Decimal| total.max(Decimal::ZERO);
        let bill_weights = on_bill
            .into_iter()
            .flatten()
            .map(|(team, total)| (team.clone(), positive(*total)));
        let org_weights = teams
            .iter()
            .filter(|((o, _), _)| o == org)
            .map(|((_, team), s)| (team.clone(), positive(s.direct.saturating_add(s.shared))));
        let parts = match apportion(amount, bill_weights, settings.precision)? {
            Some(parts) => Some(parts),
            None => apportion(amount, org_weights, settings.precision)?,
        };
        if let Some(parts) = parts {
            for (team, part) in parts {
                if let Some(summary) = teams.get_mut(&(org.to_string(), team)) {
                    add(&mut summary.unallocated, part)?;
                }
            }
            return Ok(());
        }
    }
    let team = settings.shared_cost_center.to_string();
    let summary = teams
        .entry((org.to_string(), team.clone()))
        .or_insert_with(|| TeamSummary {
            org_id: org.to_string(),
            team: team.clone(),
            cost_center: team,
            ..TeamSummary::default()
        });
    add(&mut summary.unallocated, amount)
}

/// Totals per organization.
fn org_totals(buckets: &[BucketTotal]) -> Result<Vec<OrgTotal>, Error> {
    let mut orgs: BTreeMap<String, OrgTotal> = BTreeMap::new();
    for bucket in buckets {
        let org = orgs
            .entry(bucket.org_id.clone())
            .or_insert_with(|| OrgTotal {
                org_id: bucket.org_id.clone(),
                ..OrgTotal::default()
            });
        add(&mut org.allocated, bucket.allocated)?;
        add(&mut org.unallocated, bucket.unallocated)?;
        add(&mut org.total, bucket.bill_total)?;
    }
    Ok(orgs.into_values().collect())
}

/// The filtered entity view.
///
/// Two passes over the rows: totals per cluster × entity (each row remembers
/// its entity's index, so the second pass does no lookup), then the filters
/// pick entities, then the line items of the picked ones. Rows come grouped by
/// cluster, so a row's cluster is first compared with the previous row's.
fn cluster_entities(
    rows: &[AllocationRow],
    crosswalk: &Crosswalk,
    filters: &Filters,
) -> Result<Vec<ClusterEntities>, Error> {
    type Entity<'r> = (&'r str, EntityLevel);
    type Cluster<'r> = (&'r str, &'r str);
    // An entity's line items: few, found by the rows' shared names first.
    type Items<'r> = Vec<(&'r Name, &'r Name, Decimal)>;
    let shown = |row: &&AllocationRow| {
        row.owner_id != UNALLOCATED && filters.entity_kind.is_none_or(|k| k == row.line.level)
    };
    // Pass 1: totals per cluster × entity.
    let mut cluster_ids: HashMap<Cluster<'_>, usize> = HashMap::default();
    let mut clusters: Vec<(Cluster<'_>, Vec<usize>)> = Vec::new();
    let mut entity_ids: HashMap<(usize, Entity<'_>), usize> = HashMap::default();
    // In front of `entity_ids`: by the owner name's address (no text to hash
    // or compare per row); a miss falls back to the text.
    let mut entity_addrs: HashMap<(usize, usize, EntityLevel), usize> = HashMap::default();
    let mut entities: Vec<(Decimal, &Name, EntityLevel)> = Vec::new();
    let mut row_entity: Vec<usize> = Vec::new();
    let mut last: Option<(&Name, &Name, usize)> = None;
    for row in rows.iter().filter(shown) {
        let cluster = match last {
            Some((org, resource, c))
                if *org == row.line.org_id && *resource == row.line.resource_id =>
            {
                c
            }
            _ => {
                let key = (row.line.org_id.as_str(), row.line.resource_id.as_str());
                let next = clusters.len();
                let c = *cluster_ids.entry(key).or_insert(next);
                if c == next {
                    clusters.push((key, Vec::new()));
                }
                last = Some((&row.line.org_id, &row.line.resource_id, c));
                c
            }
        };
        let next = entities.len();
        let id = *entity_addrs
            .entry((cluster, row.owner_id.addr(), row.line.level))
            .or_insert_with(|| {
                *entity_ids
                    .entry((cluster, (row.owner_id.as_str(), row.line.level)))
                    .or_insert(next)
            });
        if id == next {
            entities.push((Decimal::ZERO, &row.owner_id, row.line.level));
            if let Some((_, members)) = clusters.get_mut(cluster) {
                members.push(id);
            }
        }
        if let Some((total, _, _)) = entities.get_mut(id) {
            add(total, row.chargeback_cost)?;
        }
        row_entity.push(id);
    }
    // The filters pick entities per cluster: largest total first, then by entity
    // (a total order: entities differ), at most `max_entities_per_cluster`.
    clusters.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let order = |a: &usize, b: &usize| match (entities.get(*a), entities.get(*b)) {
        (Some(x), Some(y)) => {
            y.0.cmp(&x.0)
                .then_with(|| (x.1.as_str(), x.2).cmp(&(y.1.as_str(), y.2)))
        }
        _ => a.cmp(b),
    };
    let max = filters.max_entities_per_cluster;
    let mut items: Vec<Option<Items<'_>>> = vec![None; entities.len()];
    let mut picked: Vec<(Cluster<'_>, Vec<usize>, bool, usize)> =
        Vec::with_capacity(clusters.len());
    for (cluster, mut list) in clusters {
        let before = list.len();
        list.retain(|id| {
            filters
                .min_total
                .is_none_or(|m| entities.get(*id).is_some_and(|e| e.0 >= m))
        });
        let below = before - list.len();
        let truncated = list.len() > max;
        if truncated {
            // Only which entities are kept matters before their sort: a selection.
            match max.checked_sub(1) {
                Some(nth) => {
                    list.select_nth_unstable_by(nth, order);
                }
                None => list.clear(),
            }
            list.truncate(max);
        }
        list.sort_unstable_by(order);
        for id in &list {
            if let Some(slot) = items.get_mut(*id) {
                *slot = Some(Items::new());
            }
        }
        picked.push((cluster, list, truncated, below));
    }
    // Pass 2: line-item breakdown of the picked entities only.
    for (row, id) in rows.iter().filter(shown).zip(&row_entity) {
        if let Some(Some(items)) = items.get_mut(*id) {
            let found = items
                .iter()
                .position(|(p, l, _)| p.same(&row.line.product) && l.same(&row.line.line_type))
                .or_else(|| {
                    items
                        .iter()
                        .position(|(p, l, _)| **p == row.line.product && **l == row.line.line_type)
                });
            let slot = match found {
                Some(i) => i,
                None => {
                    items.push((&row.line.product, &row.line.line_type, Decimal::ZERO));
                    items.len() - 1
                }
            };
            if let Some((_, _, total)) = items.get_mut(slot) {
                add(total, row.chargeback_cost)?;
            }
        }
    }
    // An owner is in many clusters: its team is looked up once (by the
    // addresses of its shared name's copies).
    let mut teams: HashMap<(&str, usize, EntityLevel), Name> = HashMap::default();
    let mut out = Vec::with_capacity(picked.len());
    for ((org_id, cluster_id), list, truncated, below) in picked {
        let mut shown_entities = Vec::with_capacity(list.len());
        for id in list {
            let Some(&(total, name, level)) = entities.get(id) else {
                continue;
            };
            // Items are distinct by text: ordered by it.
            let mut picked_items = items.get_mut(id).and_then(Option::take).unwrap_or_default();
            picked_items.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            let chargebacks = picked_items
                .into_iter()
                .map(|(product, line_type, total)| EntityCharge {
                    product: product.clone(),
                    line_type: line_type.clone(),
                    total,
                })
                .collect();
            let team = teams
                .entry((org_id, name.addr(), level))
                .or_insert_with(|| {
                    crosswalk
                        .team_of(org_id, name, level)
                        .map_or_else(|| UNMATCHED_TEAM.into(), |t| t.0.into())
                })
                .clone();
            shown_entities.push(EntityTotal {
                name: name.clone(),
                level,
                team,
                chargebacks,
                total,
            });
        }
        out.push(ClusterEntities {
            org_id: org_id.to_string(),
            cluster_id: cluster_id.to_string(),
            entities: shown_entities,
            truncated,
            below_min_total: below,
        });
    }
    Ok(out)
}

/// What the readers said about their inputs that the totals do not show:
/// WarpStream clusters truncated (the totals miss entities) or excluded (not
/// apportioned), then each file's warnings.
fn input_notes(files: &[FileSummary]) -> Vec<String> {
    let mut notes: Vec<String> = files
        .iter()
        .flat_map(|f| f.truncated_clusters.iter().map(|c| c.describe()))
        .chain(
            files
                .iter()
                .flat_map(|f| f.excluded_clusters.iter().map(|c| c.describe())),
        )
        .collect();
    for file in files {
        notes.extend(file.warnings.iter().map(|w| format!("warning: {w}")));
        let more = file
            .warnings_count
            .saturating_sub(file.warnings.len() as u64);
        if more > 0 {
            notes.push(format!("{}: … and {more} more warnings", file.name));
        }
    }
    notes
}

/// Compares the totals and explains differences.
fn reconcile(
    allocation: &Allocation,
    files: &[FileSummary],
    invoice: Option<Decimal>,
    precision: u32,
) -> Result<Reconciliation, Error> {
    let bill_total = checked_sum(
        allocation.buckets.iter().map(|b| b.bill_total),
        "bill total",
    )?;
    let allocated_total = checked_sum(
        allocation.buckets.iter().map(|b| b.allocated),
        "allocated total",
    )?;
    let unallocated_total = checked_sum(
        allocation.buckets.iter().map(|b| b.unallocated),
        "unallocated total",
    )?;
    let credits_total = allocation.credits;
    let rows_accepted = files.iter().map(|f| f.rows_accepted).sum();
    let rows_rejected = files.iter().map(|f| f.rows_rejected).sum();
    let charged = allocated_total
        .checked_add(unallocated_total)
        .ok_or_else(|| Error::overflow("charged total"))?;
    let difference = match invoice {
        Some(i) => Some(
            i.checked_sub(charged)
                .ok_or_else(|| Error::overflow("invoice difference"))?,
        ),
        None => None,
    };
    let mut explanations = Vec::new();
    if charged != bill_total {
        explanations.push(format!("allocated + unallocated ({charged}) differs from the bill total ({bill_total}): an internal error"));
    }
    if !credits_total.is_zero() {
        explanations.push(format!(
            "credits and refunds of {credits_total} are included (negative amounts, on the rows their rules charged them to)"
        ));
    }
    if rows_rejected > 0 {
        explanations.push(format!("{rows_rejected} input rows were rejected and are not in the totals (see the files' rejections)"));
    }
    explanations.extend(input_notes(files));
    if !allocation.outside_range.is_zero() {
        explanations.push(format!(
            "{} of the bill lies outside the requested range and was not allocated",
            allocation.outside_range
        ));
    }
    let exact = checked_sum(
        [charged, allocation.outside_range, allocation.rounding],
        "exact bill total",
    )?;
    if !allocation.rounding.is_zero() {
        let (size, direction) = if allocation.rounding.is_sign_negative() {
            (-allocation.rounding, "higher")
        } else {
            (allocation.rounding, "lower")
        };
        let size = size.normalize();
        explanations.push(format!(
            "rounding each bill line to {precision} decimals (once per line, over all its buckets) makes the total \
             {size} {direction} than the exact {}",
            exact.normalize()
        ));
    }
    let invoice_is_exact = invoice.is_some_and(|i| i == exact || i == round(exact, precision));
    if let Some(diff) = difference.filter(|d| !d.is_zero() && invoice_is_exact) {
        explanations.push(format!(
            "the invoice subtotal differs by {diff}: the rounding above (the invoice is the bill's exact total, rounded once)"
        ));
    } else if let Some(diff) = difference.filter(|d| !d.is_zero()) {
        explanations.push(format!(
            "the invoice subtotal differs by {diff}: tax, marketplace pass-through and prior-period adjustments are invoiced \
             but not in usage exports; usage data can also arrive up to 48 hours late (re-run the export after the period closes)"
        ));
    }
    let p = |d: Decimal| round(d, precision);
    Ok(Reconciliation {
        bill_total: p(bill_total),
        allocated_total: p(allocated_total),
        unallocated_total: p(unallocated_total),
        credits_total: p(credits_total),
        outside_range: p(allocation.outside_range),
        // Normalized: its scale follows the divisions that split lines over buckets.
        rounding: allocation.rounding.normalize(),
        rows_accepted,
        rows_rejected,
        invoice_subtotal: invoice,
        difference,
        balanced: charged == bill_total && difference.is_none_or(|d| d.is_zero()),
        explanations,
    })
}
