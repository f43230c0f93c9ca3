//! WarpStream chargebacks JSON: reader and writer.
//!
//! ## The format
//!
//! `POST /api/v1/billing/chargebacks/get_past` and `get_pending` return one JSON
//! document for a billing month (see `shared/seeds/002_…`):
//!
//! ```text
//! { date_from, date_to, covers_products: [product…],
//!   tenants: [ { tenant_id, workspaces: [ { workspace_id, workspace_name,
//!     clusters: [ { virtual_cluster_id, cluster_name, cluster_regions, cluster_type,
//!                   entity_kind, storage_attribution_method?, excluded_reason?, truncated?,
//!                   entities: [ { name, total,
//!                     chargebacks: [ { product, unit_price, quantity, total } ] } ] } ] } ] } ] }
//! ```
//!
//! WarpStream has already apportioned the covered invoice line items (`Cluster
//! minutes`, `Uncompressed GiB written`, `GiB minutes`, `Network ingress`,
//! `Network egress`) over the entities of each cluster: topics on Kafka clusters,
//! subjects on Schema Registry clusters, tables on Tableflow clusters. So this is
//! an *already allocated* input, like Confluent's cost-allocation export.
//!
//! Details read from the seed and its example, and how tally treats them:
//!
//! * **Units of `unit_price`.** In the published example `Cluster minutes` has
//!   `unit_price 0.23148`, `quantity 2340`, `total 5.42`: 2340 × 0.23148 = 541.66,
//!   which is the total in *cents*. The other lines agree (110.256 GiB × 1 → 1.10;
//!   1343.7 × 0.00000463 → 0.00). tally therefore reads `unit_price` as US cents per
//!   unit, `total` as USD, and reports a cost line's [`CostLine::price`] in USD
//!   (`unit_price / 100`). A line whose total is further than one cent from
//!   `unit_price × quantity / 100` is reported as a warning, not rejected: the seed
//!   warns that small rounding differences occur and tiered prices may not be
//!   linear.
//! * **Entity totals** must equal the sum of their line-item totals exactly (the
//!   seed says so); an entity whose total does not is *rejected* with its field
//!   path, and its rows are not used. Other entities go on.
//! * **Excluded clusters** (`excluded_reason`: `no_rollup`, `cluster_not_found`, or
//!   any other text) carry no entities: their invoice charges were not apportioned.
//!   They are listed in [`Chargebacks::excluded`], never apportioned by tally, and
//!   the session's reader hands each to [`Sink::note`]: the report's
//!   reconciliation names the cluster and its reason, since its charges are not
//!   in the totals.
//! * **`truncated: true`** means more entities matched than were returned; such
//!   clusters are listed in [`Chargebacks::truncated_clusters`], a warning says
//!   that their cost lines cover only the returned entities, and the reader
//!   notes each ([`TruncatedCluster`]) for the report's reconciliation and for
//!   the writer, which writes them `truncated` again. `min_total` filtering on
//!   the request side has a like effect, and is invisible in the response.
//! * **Streaming**: entities are read one at a time, fields in WarpStream's
//!   order (see [`ChargebacksReader`]).
//! * **`covers_products`**: a line item whose product is not listed there is kept
//!   and reported as a warning.
//! * Numbers are read exactly ([`super::exact_json`]); strings holding numbers are
//!   accepted too.
//!
//! ## What the reader produces
//!
//! * One [`AllocationRow`] per entity × line item, at [`EntityLevel::Topic`]
//!   (subjects and tables too: the entity is what the bill is split over):
//!   `owner_id` = entity name, `resource_id` = `virtual_cluster_id`,
//!   `environment_id` = `workspace_id`, `product` = `kafka` / `schema_registry` /
//!   `tableflow` (from `entity_kind`), `line_type` = the WarpStream product name,
//!   `chargeback_cost` = the line's `total`, `original_amount` = that product's
//!   total over the cluster's returned entities, `usage_share` = the entity's share
//!   of the quantity, `method` = the seed's allocation method for the product
//!   (`entity_lifetime`, `write_bytes_share`, or the cluster's
//!   `storage_attribution_method`), `reason` = `allocated_by_warpstream`. The
//!   bucket is the billing period `[date_from, date_to)`. `source.line` is the
//!   JSON line of the line item.
//! * One [`CostLine`] per cluster × product: the sum of the entity totals (the
//!   "cluster-level line totals"), with summed quantity and the unit price in USD.
//! * [`Chargebacks::rejected`]: one [`Error`] per refused item, naming file, line
//!   and field path (`tenants[0].workspaces[0].clusters[0].entities[3].total`);
//!   an entity over the record limit is refused at the line it starts on.
//!
//! ## The writer
//!
//! [`write_chargebacks`] turns tally's topic-level [`AllocationRow`]s back into the
//! same hierarchy (workspace = `environment_id`, cluster = `resource_id`,
//! entity = `owner_id`; tenant = the `tenant_id` the cluster was read under
//! when it came from a WarpStream response, else `org_id`, else
//! [`WriteOptions::default_tenant_id`]), summing buckets over the period, and
//! honours WarpStream's request filters `entity_kind`, `min_total` and
//! `max_entities_per_cluster` (1 to [`MAX_ENTITIES_PER_CLUSTER`], as WarpStream's
//! API takes it), setting `truncated` when that filter cuts a
//! cluster or when the input's response had truncated it
//! ([`WriteOptions::truncated_clusters`]; [`crate::report::Report::warpstream_json`]
//! passes the input's, its excluded clusters and the clusters as read).
//!
//! A cluster read from a response ([`WriteOptions::read`]) is written as it
//! was read: its name, regions, type, workspace name, `entity_kind` and
//! `storage_attribution_method` (an excluded one too), and each entity's
//! line items with the `quantity` and `unit_price` WarpStream wrote, those
//! whose total is zero (which make no row: tally drops zero rows) included,
//! and `covers_products` lists what the responses covered. So a response
//! read through the session (`tally allocate --out-warpstream`, the page's
//! download) and written back is the response, field by field and exactly
//! (its entities ordered by total, its line items in `covers_products`' order,
//! and less the entities the reader refused), at any output precision that
//! keeps its totals' places (and at monthly granularity, the default: the
//! period written is the run's buckets', so a finer one gives the bucket
//! holding `date_from`). Entities tally allocated itself (a bill + usage
//! at topic level) get quantities apportioned from their rows' [`CostLine`]s
//! and the lines' unit prices.
//!
//! Rows keep the file's `org_id` (the user's `--org`, for the organization
//! roll-ups) and, of a line item, its total only: the reader notes each
//! cluster as read ([`ReadCluster`], through [`Sink::note`]; the session keeps
//! it beside its rows, one line item per row it already holds), and the
//! writer puts a cluster's rows back under its tenant, with its fields and
//! its line items' quantities and prices.

use super::exact_json::{self, number, v, Kind, Value};
use super::json_items::{path_is, path_text, Drained, Event, JsonItems, Step, ANY_INDEX};
use super::{InputNote, Sink};
use crate::error::Error;
use crate::model::{
    AllocatedLine, AllocationRow, BillColumns, CostLine, EntityLevel, RowSource, Source,
};
use crate::time::Timestamp;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The name [`sniff`] returns.
pub const FORMAT_NAME: &str = "warpstream_chargebacks";

/// The products WarpStream's chargebacks cover, in the order of its documentation.
pub const COVERED_PRODUCTS: [&str; 5] = [
    "Cluster minutes",
    "Uncompressed GiB written",
    "GiB minutes",
    "Network ingress",
    "Network egress",
];

/// The default of WarpStream's `max_entities_per_cluster`.
pub const DEFAULT_MAX_ENTITIES_PER_CLUSTER: u32 = 500;
/// The largest `max_entities_per_cluster` WarpStream allows.
pub const MAX_ENTITIES_PER_CLUSTER: u32 = 5000;

/// `max_entities_per_cluster` as the writer takes it: 1 to
/// [`MAX_ENTITIES_PER_CLUSTER`], as WarpStream's API does. The one check of
/// the limit, for the writer and for [`crate::report::Filters::warpstream_options`]
/// (whose limit is the entity view's, which takes any).
pub fn entities_per_cluster(max: usize) -> Result<u32, Error> {
    u32::try_from(max)
        .ok()
        .filter(|m| (1..=MAX_ENTITIES_PER_CLUSTER).contains(m))
        .ok_or_else(|| {
            Error::config(format!(
                "max_entities_per_cluster must be between 1 and {MAX_ENTITIES_PER_CLUSTER} \
                 for the WarpStream output (WarpStream's own maximum), not {max}"
            ))
        })
}

/// Whether the first bytes (up to a KiB or so) look like a WarpStream chargebacks
/// response; returns [`FORMAT_NAME`] if so.
pub fn sniff(first_bytes: &[u8]) -> Option<&'static str> {
    let t = exact_json::object_head(first_bytes)?;
    let has = |k: &str| t.contains(k);
    let yes = has("\"covers_products\"")
        || (has("\"tenants\"") && (has("\"workspaces\"") || has("\"date_from\"")))
        || (has("\"virtual_cluster_id\"") && has("\"chargebacks\""));
    yes.then_some(FORMAT_NAME)
}

/// One line-item chargeback of an entity, as in the response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineChargeback {
    /// The invoice line item (`Cluster minutes`, ...).
    pub product: String,
    /// Unit price as WarpStream writes it (US cents per unit; see the module docs).
    pub unit_price: Decimal,
    /// The apportioned quantity.
    pub quantity: Decimal,
    /// The apportioned total, USD.
    pub total: Decimal,
    /// JSON line of the item.
    pub line: u64,
}

/// One entity (topic, subject or table) of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entity {
    /// Topic, subject or table name.
    pub name: String,
    /// Its line-item chargebacks.
    pub chargebacks: Vec<LineChargeback>,
    /// Its total, USD (equal to the sum of `chargebacks[].total`).
    pub total: Decimal,
    /// JSON line of the entity.
    pub line: u64,
}

/// One cluster of the response, with its tenant and workspace.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Cluster {
    /// Tenant (WarpStream account) id.
    pub tenant_id: String,
    /// Workspace id.
    pub workspace_id: String,
    /// Workspace display name.
    pub workspace_name: String,
    /// The virtual cluster id (`vci_…`).
    pub virtual_cluster_id: String,
    /// The cluster's name.
    pub cluster_name: String,
    /// Its regions.
    pub cluster_regions: Vec<String>,
    /// `byoc`, `serverless`, ...
    pub cluster_type: String,
    /// `topic`, `subject` or `table`.
    pub entity_kind: String,
    /// Present when storage charges were apportioned.
    pub storage_attribution_method: Option<String>,
    /// Present when the cluster could not be broken down.
    pub excluded_reason: Option<String>,
    /// More entities matched than were returned.
    pub truncated: bool,
    /// The entities that were read without error.
    pub entities: Vec<Entity>,
    /// JSON line of the cluster.
    pub line: u64,
}

/// A cluster whose charges WarpStream did not apportion.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExcludedCluster {
    /// Tenant id.
    pub tenant_id: String,
    /// Workspace id.
    pub workspace_id: String,
    /// Virtual cluster id.
    pub virtual_cluster_id: String,
    /// Cluster name.
    pub cluster_name: String,
    /// `no_rollup`, `cluster_not_found`, ...
    pub reason: String,
    /// Where it was read.
    pub source: Source,
}

impl ExcludedCluster {
    /// What it means for the totals, in words (for the report).
    pub fn describe(&self) -> String {
        format!(
            "{}:{}: WarpStream cluster `{}`{} is excluded ({}): its invoice charges were not \
             apportioned to entities, so they are not in these totals",
            self.source.file,
            self.source.line,
            self.virtual_cluster_id,
            named(&self.cluster_name, &self.virtual_cluster_id),
            self.reason
        )
    }
}

/// A cluster of a WarpStream response as it was read, for the writer
/// ([`WriteOptions::read`]). Its rows carry the file's `org_id` (the
/// organization roll-ups are the user's) and, of each line item, only its
/// total, so what else the response said of the cluster goes beside them:
/// its tenant, names, regions and type, and each entity's line items with
/// the quantity and unit price WarpStream wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadCluster {
    /// The `org_id` of the cluster's rows (the file's).
    pub org_id: String,
    /// The response's `date_from`: its rows' bucket is the one holding it.
    pub date_from: Timestamp,
    /// The response's `covers_products`.
    pub covers_products: Vec<String>,
    /// The cluster as read: tenant, workspace, its own fields, and the
    /// entities accepted (none when it is excluded).
    pub cluster: Cluster,
}

impl ReadCluster {
    /// `cluster` of a response of `date_from` covering `covers_products`,
    /// its rows read with `org_id`.
    pub fn new(
        org_id: &str,
        date_from: Timestamp,
        covers_products: &[String],
        cluster: Cluster,
    ) -> Arc<Self> {
        Arc::new(ReadCluster {
            org_id: org_id.to_string(),
            date_from,
            covers_products: covers_products.to_vec(),
            cluster,
        })
    }
}

/// A cluster with `truncated: true`: more entities matched than the response returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TruncatedCluster {
    /// Tenant id.
    pub tenant_id: String,
    /// Workspace id.
    pub workspace_id: String,
    /// Virtual cluster id.
    pub virtual_cluster_id: String,
    /// Cluster name.
    pub cluster_name: String,
    /// The entities returned (and read).
    pub entities: usize,
    /// Where it was read.
    pub source: Source,
}

impl TruncatedCluster {
    /// The truncation of `cluster`, read from `file`.
    pub fn of(cluster: &Cluster, file: &str) -> Self {
        TruncatedCluster {
            tenant_id: cluster.tenant_id.clone(),
            workspace_id: cluster.workspace_id.clone(),
            virtual_cluster_id: cluster.virtual_cluster_id.clone(),
            cluster_name: cluster.cluster_name.clone(),
            entities: cluster.entities.len(),
            source: Source {
                file: file.to_string(),
                line: cluster.line,
            },
        }
    }

    /// What it means for the totals, in words (for the report and warnings).
    pub fn describe(&self) -> String {
        format!(
            "{}:{}: WarpStream cluster `{}`{} is truncated: more entities matched than were \
             returned, so its totals cover only the {} returned entities, not the cluster's \
             whole bill (raise max_entities_per_cluster or filter by virtual_cluster_id)",
            self.source.file,
            self.source.line,
            self.virtual_cluster_id,
            named(&self.cluster_name, &self.virtual_cluster_id),
            self.entities
        )
    }
}

/// ` (name)` when a cluster's name says more than its id.
fn named(name: &str, id: &str) -> String {
    if name.is_empty() || name == id {
        String::new()
    } else {
        format!(" ({name})")
    }
}

/// Everything read from one chargebacks response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chargebacks {
    /// Start of the billing period (inclusive, UTC).
    pub date_from: Timestamp,
    /// End of the billing period (exclusive, UTC).
    pub date_to: Timestamp,
    /// The invoice line items the chargebacks include.
    pub covers_products: Vec<String>,
    /// The clusters as read (excluded ones included, with no entities).
    pub clusters: Vec<Cluster>,
    /// Per entity × line item, already allocated, at [`EntityLevel::Topic`].
    pub rows: Vec<AllocationRow>,
    /// Per cluster × product: the sum of the returned entities' totals.
    pub cost_lines: Vec<CostLine>,
    /// Clusters not apportioned, with the reason.
    pub excluded: Vec<ExcludedCluster>,
    /// `virtual_cluster_id`s of clusters with `truncated: true`.
    pub truncated_clusters: Vec<String>,
    /// One error per refused item (tenant, workspace, cluster or entity).
    pub rejected: Vec<Error>,
    /// The stated totals of rejected entities (where readable), USD.
    pub rejected_total: Decimal,
    /// Non-fatal observations (price × quantity off by more than a cent, a product
    /// not in `covers_products`, truncated clusters).
    pub warnings: Vec<String>,
}

impl Chargebacks {
    /// The sum of every allocated row (equal to the sum of the cost lines).
    pub fn allocated_total(&self) -> Result<Decimal, Error> {
        self.rows.iter().try_fold(Decimal::ZERO, |acc, r| {
            acc.checked_add(r.chargeback_cost)
                .ok_or_else(|| Error::overflow("WarpStream allocated total"))
        })
    }

    /// Its clusters as the writer takes them ([`WriteOptions::read`]), for
    /// its rows read with `org_id`: what [`ChargebacksReader`] notes of each
    /// for the session.
    pub fn read_clusters(&self, org_id: &str) -> Vec<Arc<ReadCluster>> {
        self.clusters
            .iter()
            .map(|c| ReadCluster::new(org_id, self.date_from, &self.covers_products, c.clone()))
            .collect()
    }
}

/// The lowercase product category of an `entity_kind`.
pub fn product_of_kind(entity_kind: &str) -> String {
    match entity_kind {
        "topic" => "kafka".to_string(),
        "subject" => "schema_registry".to_string(),
        "table" => "tableflow".to_string(),
        other => other.to_ascii_lowercase(),
    }
}

/// The `entity_kind` of a product category (inverse of [`product_of_kind`]; `topic`
/// for anything else).
pub fn kind_of_product(product: &str) -> &'static str {
    match product {
        "schema_registry" => "subject",
        "tableflow" => "table",
        _ => "topic",
    }
}

/// The unit of a WarpStream product, inferred from its name (empty if unknown).
pub fn unit_of(product: &str) -> &'static str {
    match product {
        "Cluster minutes" => "minute",
        "Uncompressed GiB written" | "Network ingress" | "Network egress" => "GiB",
        "GiB minutes" => "GiB-minute",
        _ => "",
    }
}

/// The allocation method the seed documents for a product.
fn method_of(product: &str, storage_method: Option<&str>) -> String {
    match product {
        "Cluster minutes" => "entity_lifetime".to_string(),
        "Uncompressed GiB written" | "Network ingress" | "Network egress" => {
            "write_bytes_share".to_string()
        }
        "GiB minutes" => storage_method.unwrap_or("storage_attribution").to_string(),
        _ => "allocated_by_warpstream".to_string(),
    }
}

const HUNDRED: Decimal = Decimal::ONE_HUNDRED;

// ---------------------------------------------------------------- field access

struct Fields<'a> {
    file: &'a str,
}

impl Fields<'_> {
    fn err(&self, at: &Value, path: &str, reason: impl Into<String>) -> Error {
        Error::input(self.file, at.line, path, reason)
    }

    fn req<'v>(&self, obj: &'v Value, key: &str, path: &str) -> Result<&'v Value, Error> {
        if !matches!(obj.kind, Kind::Object(_)) {
            return Err(self.err(
                obj,
                path,
                format!("expected an object, found {}", obj.kind.name()),
            ));
        }
        match obj.get(key) {
            Some(v) if !v.is_null() => Ok(v),
            _ => Err(self.err(
                obj,
                &join(path, key),
                format!("missing required field `{key}`"),
            )),
        }
    }

    fn string(&self, obj: &Value, key: &str, path: &str) -> Result<String, Error> {
        let val = self.req(obj, key, path)?;
        match &val.kind {
            Kind::String(s) => Ok(s.clone()),
            other => Err(self.err(
                val,
                &join(path, key),
                format!("expected a string, found {}", other.name()),
            )),
        }
    }

    fn opt_string(&self, obj: &Value, key: &str, path: &str) -> Result<Option<String>, Error> {
        match obj.get(key) {
            None => Ok(None),
            Some(val) => match &val.kind {
                Kind::Null => Ok(None),
                Kind::String(s) => Ok(Some(s.clone())),
                other => Err(self.err(
                    val,
                    &join(path, key),
                    format!("expected a string, found {}", other.name()),
                )),
            },
        }
    }

    fn decimal(&self, obj: &Value, key: &str, path: &str) -> Result<Decimal, Error> {
        let val = self.req(obj, key, path)?;
        let text = match &val.kind {
            Kind::Number(n) => n.as_str(),
            Kind::String(s) => s.trim(),
            other => {
                return Err(self.err(
                    val,
                    &join(path, key),
                    format!("expected a number, found {}", other.name()),
                ))
            }
        };
        exact_json::decimal_from_number(text).ok_or_else(|| {
            self.err(
                val,
                &join(path, key),
                format!("`{text}` is not a number that fits a 28-digit decimal"),
            )
        })
    }

    fn array<'v>(&self, obj: &'v Value, key: &str, path: &str) -> Result<&'v [Value], Error> {
        let val = self.req(obj, key, path)?;
        match &val.kind {
            Kind::Array(items) => Ok(items),
            other => Err(self.err(
                val,
                &join(path, key),
                format!("expected an array, found {}", other.name()),
            )),
        }
    }

    fn opt_array<'v>(&self, obj: &'v Value, key: &str, path: &str) -> Result<&'v [Value], Error> {
        match obj.get(key) {
            None => Ok(&[]),
            Some(val) if val.is_null() => Ok(&[]),
            Some(_) => self.array(obj, key, path),
        }
    }

    fn strings(&self, obj: &Value, key: &str, path: &str) -> Result<Vec<String>, Error> {
        let items = self.opt_array(obj, key, path)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match &item.kind {
                Kind::String(s) => out.push(s.clone()),
                other => {
                    return Err(self.err(
                        item,
                        &format!("{}[{i}]", join(path, key)),
                        format!("expected a string, found {}", other.name()),
                    ))
                }
            }
        }
        Ok(out)
    }

    fn opt_bool(&self, obj: &Value, key: &str, path: &str) -> Result<bool, Error> {
        match obj.get(key) {
            None => Ok(false),
            Some(val) => match val.kind {
                Kind::Null => Ok(false),
                Kind::Bool(b) => Ok(b),
                ref other => Err(self.err(
                    val,
                    &join(path, key),
                    format!("expected true or false, found {}", other.name()),
                )),
            },
        }
    }

    fn date(&self, obj: &Value, key: &str, path: &str) -> Result<Timestamp, Error> {
        let text = self.string(obj, key, path)?;
        let at = obj.get(key).map_or(obj.line, |x| x.line);
        Timestamp::parse(&text).ok_or_else(|| {
            Error::input(
                self.file,
                at,
                &join(path, key),
                format!("`{text}` is not a date (expected YYYY-MM-DD)"),
            )
        })
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn add(a: Decimal, b: Decimal, what: &str) -> Result<Decimal, Error> {
    a.checked_add(b).ok_or_else(|| Error::overflow(what))
}

// ---------------------------------------------------------------- reading

/// Reads a whole `get_past` / `get_pending` response with [`ChargebacksReader`]
/// (entities over [`crate::formats::csv::DEFAULT_MAX_RECORD`] refused), keeping
/// everything: the clusters with their entities, their cost lines, and a
/// warning per truncated cluster. `file` names the input in errors and sources;
/// `org_id` is stamped on every row and line (empty unless several
/// organizations are combined).
///
/// `Err` only when the document as a whole is unusable (not JSON, cut short, no
/// `date_from` / `date_to` / `tenants`, fields out of the order the reader
/// needs: see [`ChargebacksReader`]); bad items are listed in
/// [`Chargebacks::rejected`] and the rest is read.
pub fn read_chargebacks(input: &[u8], file: &str, org_id: &str) -> Result<Chargebacks, Error> {
    let mut reader = ChargebacksReader::new(file, org_id, crate::formats::csv::DEFAULT_MAX_RECORD);
    reader.parse(input)?;
    reader.end()?;
    let mut out = reader.stream.out;
    for cluster in &out.clusters {
        if cluster.truncated && cluster.excluded_reason.is_none() {
            out.warnings
                .push(TruncatedCluster::of(cluster, file).describe());
        }
    }
    Ok(out)
}

/// The entities' path in a response: the items [`ChargebacksReader`] cuts out.
const ENTITIES: &[&str] = &[
    "tenants",
    ANY_INDEX,
    "workspaces",
    ANY_INDEX,
    "clusters",
    ANY_INDEX,
    "entities",
];

/// The objects around the entities, outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Document,
    Tenant,
    Workspace,
    Cluster,
}

impl Level {
    /// The length of its path.
    fn depth(self) -> usize {
        match self {
            Level::Document => 0,
            Level::Tenant => 2,
            Level::Workspace => 4,
            Level::Cluster => 6,
        }
    }

    /// The member holding its children.
    fn children(self) -> &'static str {
        match self {
            Level::Document => "tenants",
            Level::Tenant => "workspaces",
            Level::Workspace => "clusters",
            Level::Cluster => "entities",
        }
    }

    /// The members its children need, which must come before them. A
    /// cluster's may come anywhere: its entities wait for its end.
    fn needed_first(self) -> &'static [&'static str] {
        match self {
            Level::Document => &["date_from", "date_to", "covers_products"],
            Level::Tenant => &["tenant_id"],
            Level::Workspace => &["workspace_id", "workspace_name"],
            Level::Cluster => &[],
        }
    }

    /// The members read (others are not kept), and of those the arrays
    /// whose elements are.
    fn fields(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Level::Document => (
                &["date_from", "date_to", "covers_products", "tenants"],
                &["covers_products"],
            ),
            Level::Tenant => (&["tenant_id", "workspaces"], &[]),
            Level::Workspace => (&["workspace_id", "workspace_name", "clusters"], &[]),
            Level::Cluster => (
                &[
                    "virtual_cluster_id",
                    "cluster_name",
                    "cluster_regions",
                    "cluster_type",
                    "entity_kind",
                    "storage_attribution_method",
                    "excluded_reason",
                    "truncated",
                    "entities",
                ],
                &["cluster_regions"],
            ),
        }
    }

    /// Whether a path within the level's object is in a member it reads.
    fn reads(self, rel: &[Step]) -> bool {
        matches!(rel.first(), Some(Step::Key(key)) if self.fields().0.contains(&key.as_str()))
    }

    /// The innermost level a path is in, and the path within it.
    fn of(path: &[Step]) -> (Level, &[Step]) {
        for level in [Level::Cluster, Level::Workspace, Level::Tenant] {
            let depth = level.depth();
            if let (Some(head), Some(rest)) = (path.get(..depth), path.get(depth..)) {
                if path_is(head, ENTITIES.get(..depth).unwrap_or_default()) {
                    return (level, rest);
                }
            }
        }
        (Level::Document, path)
    }
}

/// An object around the entities as far as the reader needs it: the members
/// it reads ([`Level::fields`]) and the elements of its lists; any other
/// array or object is kept as an empty stand-in of its kind, which is all the
/// checks look at (the first of repeated keys, as [`exact_json`] keeps). So
/// it stays small whatever else the object holds.
#[derive(Debug, Default)]
struct Shell {
    line: u64,
    /// An array where an object belongs.
    array: bool,
    members: Vec<(String, Value)>,
    /// The member array being filled.
    filling: Option<usize>,
    /// The array of its children began.
    children_began: bool,
}

fn stand_in(line: u64, array: bool) -> Value {
    Value {
        line,
        kind: if array {
            Kind::Array(Vec::new())
        } else {
            Kind::Object(Vec::new())
        },
    }
}

impl Shell {
    fn has(&self, key: &str) -> bool {
        self.members.iter().any(|(k, _)| k == key)
    }

    /// A value at `rel` within the object.
    fn take(&mut self, rel: &[Step], value: Value) {
        match rel {
            [Step::Key(key)] if !self.has(key) => self.members.push((key.clone(), value)),
            [Step::Key(_), Step::Index(_)] => {
                let member = self.filling.and_then(|i| self.members.get_mut(i));
                if let Some((
                    _,
                    Value {
                        kind: Kind::Array(items),
                        ..
                    },
                )) = member
                {
                    items.push(value);
                }
            }
            _ => {}
        }
    }

    /// An object or array beginning at `rel`; the elements of a `list` are kept.
    fn open(&mut self, rel: &[Step], line: u64, array: bool, list: bool) {
        if let [Step::Key(key)] = rel {
            self.filling = None;
            if !self.has(key) {
                self.filling = (array && list).then_some(self.members.len());
                self.members.push((key.clone(), stand_in(line, array)));
            }
        } else {
            self.take(rel, stand_in(line, array));
        }
    }

    fn close(&mut self, rel: &[Step]) {
        if let [Step::Key(_)] = rel {
            self.filling = None;
        }
    }

    /// The object as a value (an empty array when it is one).
    fn value(&self) -> Value {
        if self.array {
            stand_in(self.line, true)
        } else {
            Value {
                line: self.line,
                kind: Kind::Object(self.members.clone()),
            }
        }
    }
}

/// An entity as read from its item (with its path), or why it was refused
/// and its stated total when readable.
type EntityRead = (String, Result<Entity, (Error, Option<Decimal>)>);

/// What [`ChargebacksReader`] keeps between events.
#[derive(Debug)]
struct Stream {
    file: String,
    org_id: String,
    document: Shell,
    tenant: Shell,
    workspace: Shell,
    cluster: Shell,
    /// `date_from`, `date_to` and `covers_products` are read.
    head_read: bool,
    /// Read when the tenant's workspaces began.
    tenant_id: String,
    /// Read when the workspace's clusters began.
    workspace_id: String,
    workspace_name: String,
    /// The current tenant or workspace was refused: what is inside is skipped.
    skip_tenant: bool,
    skip_workspace: bool,
    /// The current cluster's entities, until its end.
    entities: Vec<EntityRead>,
    out: Chargebacks,
}

impl Stream {
    fn shell(&mut self, level: Level) -> &mut Shell {
        match level {
            Level::Document => &mut self.document,
            Level::Tenant => &mut self.tenant,
            Level::Workspace => &mut self.workspace,
            Level::Cluster => &mut self.cluster,
        }
    }

    /// Whether what is in `level` is skipped (a tenant or workspace around it was refused).
    fn skipped(&self, level: Level) -> bool {
        match level {
            Level::Document => false,
            Level::Tenant => self.skip_tenant,
            Level::Workspace | Level::Cluster => self.skip_tenant || self.skip_workspace,
        }
    }

    fn event(&mut self, event: Event<'_>) -> Result<(), Error> {
        match event {
            Event::Item { path, line, text } => {
                if !self.skipped(Level::Cluster) {
                    let entity = self.read_entity_item(path, line, text);
                    self.entities.push(entity);
                }
                Ok(())
            }
            Event::Open { path, line, array } => {
                let (level, rel) = Level::of(path);
                if rel.is_empty() {
                    self.begin(level, line, array);
                    return Ok(());
                }
                if self.skipped(level) || !level.reads(rel) {
                    return Ok(());
                }
                self.check_order(level, rel, line)?;
                let list = matches!(rel, [Step::Key(k)] if level.fields().1.contains(&k.as_str()));
                self.shell(level).open(rel, line, array, list);
                if array && matches!(rel, [Step::Key(k)] if k == level.children()) {
                    self.shell(level).children_began = true;
                    self.children_begin(level, path)?;
                }
                Ok(())
            }
            Event::Scalar { path, value } => {
                let (level, rel) = Level::of(path);
                if rel.is_empty() {
                    // A tenant, workspace or cluster that is not an object.
                    self.begin(level, value.line, false);
                    return self.end(level, path, value);
                }
                if self.skipped(level) || !level.reads(rel) {
                    return Ok(());
                }
                self.check_order(level, rel, value.line)?;
                self.shell(level).take(rel, value);
                Ok(())
            }
            Event::Close { path, .. } => {
                let (level, rel) = Level::of(path);
                if rel.is_empty() {
                    let value = self.shell(level).value();
                    return self.end(level, path, value);
                }
                if !self.skipped(level) {
                    self.shell(level).close(rel);
                }
                Ok(())
            }
        }
    }

    fn read_entity_item(&self, path: &[Step], line: u64, text: Result<&str, Error>) -> EntityRead {
        let f = Fields { file: &self.file };
        let epath = path_text(path);
        let read = match text.and_then(|text| exact_json::parse_at(text, &self.file, line)) {
            Ok(value) => read_entity(&f, &value, &epath)
                .map_err(|e| (e, f.decimal(&value, "total", &epath).ok())),
            Err(e) => Err((e, None)),
        };
        (epath, read)
    }

    fn begin(&mut self, level: Level, line: u64, array: bool) {
        *self.shell(level) = Shell {
            line,
            array,
            ..Shell::default()
        };
        match level {
            Level::Document => {}
            Level::Tenant => self.skip_tenant = false,
            Level::Workspace => self.skip_workspace = false,
            Level::Cluster => self.entities.clear(),
        }
    }

    /// Refuses a member its level's children need when it comes after them.
    fn check_order(&mut self, level: Level, rel: &[Step], line: u64) -> Result<(), Error> {
        let shell = self.shell(level);
        if let [Step::Key(key)] = rel {
            if shell.children_began
                && !shell.has(key)
                && level.needed_first().contains(&key.as_str())
            {
                return Err(Error::input(
                    &self.file,
                    line,
                    key,
                    format!(
                        "`{key}` comes after `{}`: tally reads the response as a stream and \
                         needs it first, in the order WarpStream writes it",
                        level.children()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The array of a level's children begins: what they need is read.
    fn children_begin(&mut self, level: Level, path: &[Step]) -> Result<(), Error> {
        let f = Fields { file: &self.file };
        let at = path_text(path.get(..level.depth()).unwrap_or_default());
        match level {
            Level::Document => {
                let doc = self.document.value();
                self.read_head(&doc)?;
            }
            Level::Tenant => match tenant_head(&f, &self.tenant.value(), &at) {
                Ok(id) => self.tenant_id = id,
                Err(e) => {
                    self.out.rejected.push(e);
                    self.skip_tenant = true;
                }
            },
            Level::Workspace => match workspace_head(&f, &self.workspace.value(), &at) {
                Ok((id, name)) => {
                    self.workspace_id = id;
                    self.workspace_name = name;
                }
                Err(e) => {
                    self.out.rejected.push(e);
                    self.skip_workspace = true;
                }
            },
            Level::Cluster => {}
        }
        Ok(())
    }

    /// Takes the document's dates and covered products (an error stops the file).
    fn read_head(&mut self, doc: &Value) -> Result<(), Error> {
        let (date_from, date_to, covers_products) = document_head(&self.file, doc)?;
        self.out.date_from = date_from;
        self.out.date_to = date_to;
        self.out.covers_products = covers_products;
        self.head_read = true;
        Ok(())
    }

    /// The end of a level's object (or of what stands where one belongs):
    /// what its children did not check is checked, and a cluster is read.
    fn end(&mut self, level: Level, path: &[Step], value: Value) -> Result<(), Error> {
        let check_head = !self.shell(level).children_began && !self.skipped(level);
        let f = Fields { file: &self.file };
        let at = path_text(path);
        let refused = match level {
            Level::Document if !self.head_read => {
                self.read_head(&value)?;
                return Fields { file: &self.file }
                    .array(&value, "tenants", "")
                    .map(drop);
            }
            Level::Document => None,
            Level::Tenant if check_head => tenant_head(&f, &value, &at).err(),
            Level::Workspace if check_head => workspace_head(&f, &value, &at).err(),
            Level::Tenant | Level::Workspace => None,
            Level::Cluster => {
                let entities = std::mem::take(&mut self.entities);
                if self.skipped(level) {
                    return Ok(());
                }
                match read_cluster(&f, &value, &at, entities, &mut self.out) {
                    Ok(mut cluster) => {
                        cluster.tenant_id.clone_from(&self.tenant_id);
                        cluster.workspace_id.clone_from(&self.workspace_id);
                        cluster.workspace_name.clone_from(&self.workspace_name);
                        derive_cluster(&mut self.out, &cluster, &self.file, &self.org_id)?;
                        self.out.clusters.push(cluster);
                        None
                    }
                    Err(e) => Some(e),
                }
            }
        };
        self.out.rejected.extend(refused);
        Ok(())
    }
}

/// A document's dates and covered products.
fn document_head(file: &str, doc: &Value) -> Result<(Timestamp, Timestamp, Vec<String>), Error> {
    let f = Fields { file };
    let date_from = f.date(doc, "date_from", "")?;
    let date_to = f.date(doc, "date_to", "")?;
    if date_to <= date_from {
        return Err(Error::input(
            file,
            doc.get("date_to").map_or(1, |x| x.line),
            "date_to",
            "date_to is not after date_from",
        ));
    }
    Ok((date_from, date_to, f.strings(doc, "covers_products", "")?))
}

/// A tenant's id (and the check that it has workspaces).
fn tenant_head(f: &Fields, tenant: &Value, tpath: &str) -> Result<String, Error> {
    let id = f
        .opt_string(tenant, "tenant_id", tpath)?
        .unwrap_or_default();
    f.array(tenant, "workspaces", tpath)?;
    Ok(id)
}

/// A workspace's id and name (and the check that it has clusters).
fn workspace_head(f: &Fields, ws: &Value, wpath: &str) -> Result<(String, String), Error> {
    let id = f.opt_string(ws, "workspace_id", wpath)?.unwrap_or_default();
    let name = f
        .opt_string(ws, "workspace_name", wpath)?
        .unwrap_or_default();
    f.array(ws, "clusters", wpath)?;
    Ok((id, name))
}

/// A cluster from its fields and its entities as read.
fn read_cluster(
    f: &Fields,
    cl: &Value,
    cpath: &str,
    entities: Vec<EntityRead>,
    out: &mut Chargebacks,
) -> Result<Cluster, Error> {
    let mut cluster = Cluster {
        virtual_cluster_id: f.string(cl, "virtual_cluster_id", cpath)?,
        cluster_name: f.opt_string(cl, "cluster_name", cpath)?.unwrap_or_default(),
        cluster_regions: f.strings(cl, "cluster_regions", cpath)?,
        cluster_type: f.opt_string(cl, "cluster_type", cpath)?.unwrap_or_default(),
        entity_kind: f
            .opt_string(cl, "entity_kind", cpath)?
            .unwrap_or_else(|| "topic".to_string()),
        storage_attribution_method: f.opt_string(cl, "storage_attribution_method", cpath)?,
        excluded_reason: f.opt_string(cl, "excluded_reason", cpath)?,
        truncated: f.opt_bool(cl, "truncated", cpath)?,
        line: cl.line,
        ..Cluster::default()
    };
    if let Some(reason) = &cluster.excluded_reason {
        f.opt_array(cl, "entities", cpath)?;
        if !entities.is_empty() {
            out.warnings.push(format!(
                "{}:{}: cluster `{}` is excluded ({reason}) but lists entities; they are ignored",
                f.file, cl.line, cluster.virtual_cluster_id
            ));
        }
        return Ok(cluster);
    }
    f.array(cl, "entities", cpath).map_err(|_| {
        f.err(
            cl,
            &join(cpath, "entities"),
            "a cluster needs either `entities` or an `excluded_reason`",
        )
    })?;
    // Which entities repeat the name of one accepted before them (a refused
    // entity takes no name), in O(n log n): scanning the accepted ones for
    // each entity was quadratic (100,000 entities took 21 s).
    let repeated = exact_json::repeated(&entities, |(_, read)| {
        read.as_ref().ok().map(|entity| entity.name.as_str())
    });
    for ((epath, read), repeated) in entities.into_iter().zip(repeated) {
        match read {
            Ok(entity) => {
                if repeated {
                    out.rejected_total = add(out.rejected_total, entity.total, "rejected total")?;
                    out.rejected.push(Error::input(
                        f.file,
                        entity.line,
                        &join(&epath, "name"),
                        format!(
                            "entity `{}` appears twice in cluster `{}`; the second is refused",
                            entity.name, cluster.virtual_cluster_id
                        ),
                    ));
                } else {
                    cluster.entities.push(entity);
                }
            }
            Err((e, total)) => {
                if let Some(total) = total {
                    out.rejected_total = add(out.rejected_total, total, "rejected total")?;
                }
                out.rejected.push(e);
            }
        }
    }
    Ok(cluster)
}

fn read_entity(f: &Fields, ent: &Value, epath: &str) -> Result<Entity, Error> {
    let name = f.string(ent, "name", epath)?;
    if name.trim().is_empty() {
        // It would become an empty owner, which no output can carry.
        return Err(f.err(
            ent.get("name").unwrap_or(ent),
            &join(epath, "name"),
            "empty; an entity needs a name",
        ));
    }
    let total = f.decimal(ent, "total", epath)?;
    let items = f.array(ent, "chargebacks", epath)?;
    let mut chargebacks = Vec::with_capacity(items.len());
    // The products seen, in a set as the cluster's entity names are: a scan
    // of the line items before each was quadratic in an entity's items.
    let mut products = BTreeSet::new();
    let mut sum = Decimal::ZERO;
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{epath}.chargebacks[{i}]");
        let c = LineChargeback {
            product: f.string(item, "product", &ipath)?,
            unit_price: f.decimal(item, "unit_price", &ipath)?,
            quantity: f.decimal(item, "quantity", &ipath)?,
            total: f.decimal(item, "total", &ipath)?,
            line: item.line,
        };
        if !products.insert(c.product.clone()) {
            return Err(f.err(
                item,
                &join(&ipath, "product"),
                format!("product `{}` appears twice in entity `{name}`", c.product),
            ));
        }
        sum = add(sum, c.total, "entity total")?;
        chargebacks.push(c);
    }
    if sum != total {
        return Err(f.err(
            ent.get("total").unwrap_or(ent),
            &join(epath, "total"),
            format!(
                "entity `{name}` states total {total} but its chargebacks sum to {sum}; refused"
            ),
        ));
    }
    Ok(Entity {
        name,
        chargebacks,
        total,
        line: ent.line,
    })
}

/// The rows and cost lines of one cluster (none for an excluded one, which is
/// listed in [`Chargebacks::excluded`]).
fn derive_cluster(
    out: &mut Chargebacks,
    cluster: &Cluster,
    file: &str,
    org_id: &str,
) -> Result<(), Error> {
    let cent = Decimal::new(1, 2);
    if let Some(reason) = &cluster.excluded_reason {
        out.excluded.push(ExcludedCluster {
            tenant_id: cluster.tenant_id.clone(),
            workspace_id: cluster.workspace_id.clone(),
            virtual_cluster_id: cluster.virtual_cluster_id.clone(),
            cluster_name: cluster.cluster_name.clone(),
            reason: reason.clone(),
            source: Source {
                file: file.to_string(),
                line: cluster.line,
            },
        });
        return Ok(());
    }
    if cluster.truncated {
        out.truncated_clusters
            .push(cluster.virtual_cluster_id.clone());
    }
    // Per product: (amount, quantity, its one unit price or `None` once two
    // differ, first line). Only whether there is one price is used: a list
    // of the distinct prices, searched and cloned per line item, made a
    // cluster whose entities all have their own price quadratic.
    let mut per_product: BTreeMap<&str, (Decimal, Decimal, Option<Decimal>, u64)> = BTreeMap::new();
    for entity in &cluster.entities {
        for c in &entity.chargebacks {
            let e = per_product.entry(c.product.as_str()).or_insert((
                Decimal::ZERO,
                Decimal::ZERO,
                Some(c.unit_price),
                c.line,
            ));
            e.0 = add(e.0, c.total, "cluster line total")?;
            e.1 = add(e.1, c.quantity, "cluster line quantity")?;
            if e.2 != Some(c.unit_price) {
                e.2 = None;
            }
            if let Some(expected) = c
                .unit_price
                .checked_mul(c.quantity)
                .and_then(|x| x.checked_div(HUNDRED))
            {
                let diff = expected.checked_sub(c.total).map(|d| d.abs());
                if diff.is_some_and(|d| d > cent) {
                    out.warnings.push(format!(
                        "{file}:{}: `{}` of `{}`: unit_price {} × quantity {} = {} cents, \
                         but total is {} USD",
                        c.line,
                        c.product,
                        entity.name,
                        c.unit_price,
                        c.quantity,
                        expected
                            .checked_mul(HUNDRED)
                            .unwrap_or(expected)
                            .round_dp(4),
                        c.total
                    ));
                }
            }
            if !out.covers_products.is_empty() && !out.covers_products.contains(&c.product) {
                out.warnings.push(format!(
                    "{file}:{}: product `{}` is not in covers_products",
                    c.line, c.product
                ));
            }
        }
    }
    let product = product_of_kind(&cluster.entity_kind);
    for entity in &cluster.entities {
        for c in &entity.chargebacks {
            let (amount, quantity, _, _) = per_product
                .get(c.product.as_str())
                .cloned()
                .unwrap_or((c.total, c.quantity, None, c.line));
            let usage_share = if quantity.is_zero() {
                Decimal::ZERO
            } else {
                c.quantity
                    .checked_div(quantity)
                    .map(|s| s.round_dp(12).normalize())
                    .unwrap_or_default()
            };
            let line = AllocatedLine {
                bucket_start: out.date_from,
                bucket_end: out.date_to,
                partial_bucket: false,
                org_id: org_id.into(),
                level: EntityLevel::Topic,
                environment_id: cluster.workspace_id.as_str().into(),
                resource_id: cluster.virtual_cluster_id.as_str().into(),
                product: product.as_str().into(),
                line_type: c.product.as_str().into(),
                unit: unit_of(&c.product).into(),
                original_amount: amount,
                quantity,
                currency: "USD".into(),
                method: method_of(&c.product, cluster.storage_attribution_method.as_deref()).into(),
                chain_step: 0,
                reason: "allocated_by_warpstream".into(),
                source: RowSource {
                    file: file.into(),
                    line: c.line,
                },
                bill_columns: crate::model::Name::default(),
            };
            out.rows.push(AllocationRow {
                line: std::sync::Arc::new(line),
                owner_id: entity.name.as_str().into(),
                chargeback_cost: c.total,
                usage_share,
            });
        }
    }
    for (name, (amount, quantity, price, line)) in per_product {
        let price = match price {
            Some(one) => one.checked_div(HUNDRED).unwrap_or_default(),
            None if !quantity.is_zero() => amount
                .checked_div(quantity)
                .map(|p| p.round_dp(10).normalize())
                .unwrap_or_default(),
            None => Decimal::ZERO,
        };
        out.cost_lines.push(CostLine {
            source: Source {
                file: file.to_string(),
                line,
            },
            org_id: org_id.to_string(),
            id: format!("{}/{name}", cluster.virtual_cluster_id),
            product: product.clone(),
            line_type: name.to_string(),
            resource_id: cluster.virtual_cluster_id.clone(),
            environment_id: cluster.workspace_id.clone(),
            start: out.date_from,
            end: out.date_to,
            amount,
            original_amount: amount,
            quantity,
            unit: unit_of(name).to_string(),
            price,
            currency: "USD".to_string(),
            active_fraction: None,
            owner_of_record: String::new(),
            charge_category: String::new(),
            charge_frequency: String::new(),
            bill_columns: BillColumns::default(),
            charge_columns: None,
        });
    }

    Ok(())
}

/// The streaming [`super::Reader`] (through [`Drained`]) of a chargebacks response.
///
/// Each entity is cut out of the stream ([`JsonItems`]), parsed and checked on
/// its own, so no entity longer than `max_record` bytes is held: a longer one
/// (a 100 MB name) is refused with its line and skipped, and the rest of the
/// document is read. A cluster's rows need its totals over all its returned
/// entities (their `original_amount` and `usage_share`) and its fields, which
/// may come after its entities, so the entities read are kept until the
/// cluster's end, then handed to [`Sink::allocated`]: memory is one entity's
/// text plus one cluster's parsed entities (WarpStream returns at most 5000),
/// not the file. The fields the entities need from further out must come
/// before them, as WarpStream writes them: `date_from`, `date_to` and
/// `covers_products` before `tenants`, `tenant_id` before `workspaces`,
/// `workspace_id` and `workspace_name` before `clusters`; one that comes after
/// stops the file with a clear error (holding every cluster until the end of
/// its workspace would be holding the file).
///
/// Refused items go to [`Sink::reject`]; truncated and excluded clusters, each
/// cluster as read ([`ReadCluster`]: its tenant, names and line items'
/// quantities and unit prices, which its rows do not carry) and the warnings
/// to [`Sink::note`], for the report and the writer. A sink that keeps the
/// read clusters keeps each line item's quantity and price beside its row.
/// The cluster totals ([`Chargebacks::cost_lines`]) are not sent as cost
/// lines, which the session would allocate a second time; the writer takes
/// the line items' own quantities and prices from the read clusters instead.
pub struct ChargebacksReader {
    items: JsonItems,
    stream: Stream,
}

impl ChargebacksReader {
    /// A reader of `file`, stamping `org_id` on every row, refusing entities
    /// over `max_record` bytes.
    pub fn new(file: &str, org_id: &str, max_record: usize) -> Self {
        ChargebacksReader {
            items: JsonItems::new(file, ENTITIES, max_record),
            stream: Stream {
                file: file.to_string(),
                org_id: org_id.to_string(),
                document: Shell::default(),
                tenant: Shell::default(),
                workspace: Shell::default(),
                cluster: Shell::default(),
                head_read: false,
                tenant_id: String::new(),
                workspace_id: String::new(),
                workspace_name: String::new(),
                skip_tenant: false,
                skip_workspace: false,
                entities: Vec::new(),
                out: Chargebacks {
                    date_from: Timestamp(0),
                    date_to: Timestamp(0),
                    covers_products: Vec::new(),
                    clusters: Vec::new(),
                    rows: Vec::new(),
                    cost_lines: Vec::new(),
                    excluded: Vec::new(),
                    truncated_clusters: Vec::new(),
                    rejected: Vec::new(),
                    rejected_total: Decimal::ZERO,
                    warnings: Vec::new(),
                },
            },
        }
    }
}

impl Drained for ChargebacksReader {
    /// Reads a chunk into the reader's [`Chargebacks`].
    fn parse(&mut self, chunk: &[u8]) -> Result<(), Error> {
        let ChargebacksReader { items, stream } = self;
        items.feed(chunk, &mut |event| stream.event(event))
    }

    /// Hands what was read to `sink`, keeping nothing of it.
    fn drain(&mut self, sink: &mut dyn Sink) {
        let (file, org_id) = (&self.stream.file, &self.stream.org_id);
        let out = &mut self.stream.out;
        for row in out.rows.drain(..) {
            sink.allocated(&row);
        }
        for error in out.rejected.drain(..) {
            sink.reject(error);
        }
        for cluster in out.clusters.drain(..) {
            if cluster.truncated && cluster.excluded_reason.is_none() {
                sink.note(InputNote::Truncated(TruncatedCluster::of(&cluster, file)));
            }
            sink.note(InputNote::Cluster(ReadCluster::new(
                org_id,
                out.date_from,
                &out.covers_products,
                cluster,
            )));
        }
        for excluded in out.excluded.drain(..) {
            sink.note(InputNote::Excluded(excluded));
        }
        for warning in out.warnings.drain(..) {
            sink.note(InputNote::Warning(warning));
        }
        out.cost_lines.clear();
        out.truncated_clusters.clear();
    }

    fn end(&mut self) -> Result<(), Error> {
        self.items.finish()
    }
}

// ---------------------------------------------------------------- writing

/// Options of [`write_chargebacks`]: WarpStream's request filters plus metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// Only entities of this kind (`topic`, `subject`, `table`); all if `None`.
    pub entity_kind: Option<String>,
    /// Omit entities whose total is below this (USD).
    pub min_total: Option<Decimal>,
    /// At most this many entities per cluster (largest totals first); 1..=5000
    /// ([`entities_per_cluster`]).
    pub max_entities_per_cluster: u32,
    /// The billing period; default: the rows' earliest bucket start and latest end.
    pub period: Option<(Timestamp, Timestamp)>,
    /// `tenant_id` for rows with an empty `org_id` and no tenant in `read`.
    pub default_tenant_id: String,
    /// The clusters of WarpStream responses the rows were read from
    /// ([`Chargebacks::read_clusters`]; the session notes them). The rows of
    /// a listed (`org_id`, workspace, cluster) are written under its
    /// `tenant_id` rather than their `org_id` (one listed under two tenants
    /// takes the first by name); the cluster is written with its name,
    /// regions, type, workspace name, `entity_kind` and
    /// `storage_attribution_method` as read; and an entity's line items in
    /// the bucket holding the response's `date_from` are written with the
    /// quantity and unit price read, those with a zero total (which make no
    /// row) included. Other clusters are written with their id as name and
    /// no regions or type.
    pub read: Vec<Arc<ReadCluster>>,
    /// Clusters to list with their `excluded_reason` (an empty `tenant_id`
    /// is `default_tenant_id`, as for rows).
    pub excluded: Vec<ExcludedCluster>,
    /// `virtual_cluster_id`s of clusters the input truncated: written with
    /// `truncated: true` whatever `max_entities_per_cluster` keeps.
    pub truncated_clusters: Vec<String>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            entity_kind: None,
            min_total: None,
            max_entities_per_cluster: DEFAULT_MAX_ENTITIES_PER_CLUSTER,
            period: None,
            default_tenant_id: String::new(),
            read: Vec::new(),
            excluded: Vec::new(),
            truncated_clusters: Vec::new(),
        }
    }
}

#[derive(Default)]
struct Acc {
    total: Decimal,
    quantity: Decimal,
    prices: Vec<Decimal>,
    /// Some of `quantity` was apportioned from a cost line (then rounded to
    /// 12 places when written), not read as WarpStream wrote it.
    apportioned: bool,
}

impl Acc {
    /// Adds a quantity and its unit price in cents.
    fn add_quantity(
        &mut self,
        quantity: Decimal,
        unit_price: Option<Decimal>,
    ) -> Result<(), Error> {
        self.quantity = add(self.quantity, quantity, "WarpStream entity quantity")?;
        if let Some(price) = unit_price {
            if !self.prices.contains(&price) {
                self.prices.push(price);
            }
        }
        Ok(())
    }
}

type EntityKey = (String, String, String, String); // tenant, workspace, cluster, entity

/// An entity of a read cluster in one response: (`org_id`, workspace,
/// cluster, entity, the response's `date_from`).
type ReadEntityKey<'a> = (&'a str, &'a str, &'a str, &'a str, Timestamp);

/// [`WriteOptions::read`], indexed for the writer.
struct ReadIndex<'a> {
    /// (`org_id`, workspace, cluster) → the tenant read, the first by name.
    tenants: BTreeMap<(&'a str, &'a str, &'a str), &'a str>,
    /// (written tenant, workspace, cluster) → the cluster as read (one with
    /// entities before an excluded one, else the first listed).
    clusters: BTreeMap<(&'a str, &'a str, &'a str), &'a Cluster>,
    /// Each entity's line items as read, those of a response read twice
    /// both (as its rows are summed).
    entities: BTreeMap<ReadEntityKey<'a>, Vec<&'a LineChargeback>>,
    default_tenant_id: &'a str,
}

impl<'a> ReadIndex<'a> {
    fn new(options: &'a WriteOptions) -> Self {
        let mut index = ReadIndex {
            tenants: BTreeMap::new(),
            clusters: BTreeMap::new(),
            entities: BTreeMap::new(),
            default_tenant_id: &options.default_tenant_id,
        };
        for read in &options.read {
            let c = &read.cluster;
            if !c.tenant_id.is_empty() {
                let key = (
                    read.org_id.as_str(),
                    c.workspace_id.as_str(),
                    c.virtual_cluster_id.as_str(),
                );
                let tenant = index.tenants.entry(key).or_insert(&c.tenant_id);
                *tenant = (*tenant).min(&c.tenant_id);
            }
        }
        for read in &options.read {
            let c = &read.cluster;
            let (ws, id) = (c.workspace_id.as_str(), c.virtual_cluster_id.as_str());
            let tenant = index.tenant_of(&read.org_id, ws, id);
            let kept = index.clusters.entry((tenant, ws, id)).or_insert(c);
            if kept.excluded_reason.is_some() && c.excluded_reason.is_none() {
                *kept = c;
            }
            for entity in &c.entities {
                index
                    .entities
                    .entry((&read.org_id, ws, id, &entity.name, read.date_from))
                    .or_default()
                    .extend(&entity.chargebacks);
            }
        }
        index
    }

    /// The tenant the rows of (`org_id`, workspace, cluster) are written
    /// under: the one they were read under, else `org_id`, else the default.
    fn tenant_of<'s>(&self, org_id: &'s str, workspace: &str, cluster: &str) -> &'s str
    where
        'a: 's,
    {
        match self.tenants.get(&(org_id, workspace, cluster)) {
            Some(tenant) => tenant,
            None if org_id.is_empty() => self.default_tenant_id,
            None => org_id,
        }
    }
}

/// Writes topic-level allocation rows as a WarpStream-shaped chargebacks response.
///
/// Only rows at [`EntityLevel::Topic`] are written (others are skipped). A
/// row of an entity of a read cluster ([`WriteOptions::read`]) takes its
/// line item's quantity and `unit_price` as read. Any other row's quantity is
/// apportioned: its cost line's quantity × `chargeback_cost` / line amount
/// (or × `usage_share` for a zero-amount line); its `unit_price` is the
/// line's price in US cents, as WarpStream writes it. Rows whose cost line is
/// not among `lines` (matched by [`Source`], then by resource and line type)
/// get quantity 0 and unit price 0. Entity totals are exact sums of their
/// line totals.
///
/// The engine's one `unallocated` row per bucket (WarpStream's lines are one
/// bill) is split back over the cluster
/// lines whose topics did not take all of their amount
/// ([`super::origins::attribute_remainders`]): each such cluster gets an entity
/// named `unallocated` with that remainder, so a cluster's totals match its
/// invoice lines. What is left of it (credits, products with no topic usage) is
/// not tied to a cluster and is not written, as WarpStream's own chargebacks
/// cover only the cluster line items in `covers_products`.
///
/// Memory: one accumulator per entity × product written, and an index of
/// the read clusters' line items (as many as their rows), not the rows.
pub fn write_chargebacks(
    rows: &[AllocationRow],
    lines: &[CostLine],
    options: &WriteOptions,
) -> Result<String, Error> {
    // u32 → usize is lossless on every target tally builds for (32 and 64 bits).
    let max_entities = entities_per_cluster(options.max_entities_per_cluster as usize)? as usize;
    if let Some(kind) = &options.entity_kind {
        if !matches!(kind.as_str(), "topic" | "subject" | "table") {
            return Err(Error::config(format!(
                "entity_kind must be topic, subject or table, not `{kind}`"
            )));
        }
    }
    let cost_lines = super::origins::CostLines::new(lines);
    let read = ReadIndex::new(options);
    // The read entities whose line items are in the output already: an
    // entity's first row in a bucket takes them all, its zero-total items
    // (which make no row) included.
    let mut taken: BTreeSet<ReadEntityKey<'_>> = BTreeSet::new();

    let mut period: Option<(Timestamp, Timestamp)> = options.period;
    let mut kinds: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut storage: BTreeMap<String, String> = BTreeMap::new();
    let mut products: Vec<String> = options
        .read
        .iter()
        .flat_map(|r| r.covers_products.iter().cloned())
        .collect();
    let mut acc: BTreeMap<EntityKey, BTreeMap<String, Acc>> = BTreeMap::new();

    // The engine's per-bucket unallocated row goes back into the clusters it
    // came from (as an `unallocated` entity), so cluster totals match the bill.
    let split = super::origins::attribute_remainders(rows)?;
    for row in &split.rows {
        if row.line.level != EntityLevel::Topic {
            continue;
        }
        let kind = kind_of_product(&row.line.product);
        if options.entity_kind.as_deref().is_some_and(|k| k != kind) {
            continue;
        }
        if options.period.is_none() {
            period = Some(match period {
                None => (row.line.bucket_start, row.line.bucket_end),
                Some((a, b)) => (a.min(row.line.bucket_start), b.max(row.line.bucket_end)),
            });
        }
        kinds.insert(row.line.resource_id.to_string(), kind);
        if row.line.line_type == "GiB minutes" {
            let m = match row.line.method.as_str() {
                m @ ("write_bytes_times_retention" | "bytes_seconds_stored") => m,
                _ if kind == "table" => "bytes_seconds_stored",
                _ => "write_bytes_times_retention",
            };
            storage.insert(row.line.resource_id.to_string(), m.to_string());
        }
        let (org, ws, cluster, entity) = (
            row.line.org_id.as_str(),
            row.line.environment_id.as_str(),
            row.line.resource_id.as_str(),
            row.owner_id.as_str(),
        );
        let key = (
            read.tenant_of(org, ws, cluster).to_string(),
            ws.to_string(),
            cluster.to_string(),
            entity.to_string(),
        );
        let per_product = acc.entry(key).or_default();
        // The entity's line items read in this row's bucket: quantities and
        // prices as WarpStream wrote them, once per response.
        let mut read_here = false;
        let bucket = (org, ws, cluster, entity, row.line.bucket_start)
            ..(org, ws, cluster, entity, row.line.bucket_end);
        for (read_key, items) in read.entities.range(bucket) {
            let first = taken.insert(*read_key);
            for item in items {
                read_here |= item.product == row.line.line_type.as_str();
                if first {
                    per_product
                        .entry(item.product.clone())
                        .or_default()
                        .add_quantity(item.quantity, Some(item.unit_price))?;
                }
            }
        }
        let a = per_product
            .entry(row.line.line_type.to_string())
            .or_default();
        a.total = add(a.total, row.chargeback_cost, "WarpStream entity total")?;
        if !read_here {
            let line = cost_lines.of(&row.line);
            let quantity = match line {
                Some(l) if !l.amount.is_zero() => l
                    .quantity
                    .checked_mul(row.chargeback_cost)
                    .and_then(|x| x.checked_div(l.amount))
                    .ok_or_else(|| Error::overflow("WarpStream apportioned quantity"))?,
                Some(l) => l
                    .quantity
                    .checked_mul(row.usage_share)
                    .ok_or_else(|| Error::overflow("WarpStream apportioned quantity"))?,
                None => Decimal::ZERO,
            };
            a.apportioned = true;
            a.add_quantity(quantity, line.and_then(|l| l.price.checked_mul(HUNDRED)))?;
        }
    }
    products.extend(
        acc.values()
            .flat_map(|per_product| per_product.keys().cloned()),
    );
    products.sort();
    products.dedup();
    let Some((date_from, date_to)) = period else {
        return Err(Error::config(
            "no topic-level rows to write and no period given for the WarpStream chargebacks",
        ));
    };
    // covers_products: WarpStream's order first, then any others by name.
    let mut covers: Vec<String> = COVERED_PRODUCTS
        .iter()
        .filter(|p| products.iter().any(|q| q == *p))
        .map(|p| p.to_string())
        .collect();
    let mut others: Vec<String> = products
        .iter()
        .filter(|p| !COVERED_PRODUCTS.contains(&p.as_str()))
        .cloned()
        .collect();
    others.sort();
    covers.extend(others);
    let order = |p: &str| covers.iter().position(|c| c == p).unwrap_or(usize::MAX);

    // tenant → workspace → cluster → entities (name, total, chargebacks).
    type Ent = (String, Decimal, Vec<(String, Acc)>);
    let mut tree: BTreeMap<String, BTreeMap<String, BTreeMap<String, Vec<Ent>>>> = BTreeMap::new();
    for ((tenant, ws, cluster, entity), per_product) in acc {
        let mut items: Vec<(String, Acc)> = per_product.into_iter().collect();
        items.sort_by_key(|(p, _)| (order(p), p.clone()));
        let total = items.iter().try_fold(Decimal::ZERO, |s, (_, a)| {
            add(s, a.total, "WarpStream entity total")
        })?;
        tree.entry(tenant)
            .or_default()
            .entry(ws)
            .or_default()
            .entry(cluster)
            .or_default()
            .push((entity, total, items));
    }
    let tenant_of = |ex: &ExcludedCluster| {
        if ex.tenant_id.is_empty() {
            options.default_tenant_id.clone()
        } else {
            ex.tenant_id.clone()
        }
    };
    for ex in &options.excluded {
        tree.entry(tenant_of(ex))
            .or_default()
            .entry(ex.workspace_id.clone())
            .or_default()
            .entry(ex.virtual_cluster_id.clone())
            .or_default();
    }

    let mut tenants = Vec::new();
    for (tenant, workspaces) in tree {
        let mut ws_values = Vec::new();
        for (ws, clusters) in workspaces {
            let mut cl_values = Vec::new();
            let mut ws_name = String::new();
            for (cluster, mut entities) in clusters {
                // The cluster as read, when it was: its own fields.
                let info = read
                    .clusters
                    .get(&(tenant.as_str(), ws.as_str(), cluster.as_str()))
                    .copied();
                if let Some(i) = info {
                    if ws_name.is_empty() {
                        ws_name.clone_from(&i.workspace_name);
                    }
                }
                let mut members = vec![
                    (
                        "virtual_cluster_id".to_string(),
                        v(Kind::String(cluster.clone())),
                    ),
                    (
                        "cluster_name".to_string(),
                        v(Kind::String(
                            info.map(|i| i.cluster_name.clone())
                                .filter(|n| !n.is_empty())
                                .unwrap_or_else(|| cluster.clone()),
                        )),
                    ),
                    (
                        "cluster_regions".to_string(),
                        v(Kind::Array(
                            info.map(|i| i.cluster_regions.clone())
                                .unwrap_or_default()
                                .into_iter()
                                .map(|r| v(Kind::String(r)))
                                .collect(),
                        )),
                    ),
                ];
                if let Some(t) = info.map(|i| &i.cluster_type).filter(|t| !t.is_empty()) {
                    members.push(("cluster_type".to_string(), v(Kind::String(t.clone()))));
                }
                // Its kind as read; else the kind of its rows' product.
                let kind = match info {
                    Some(i) => i.entity_kind.clone(),
                    None => kinds.get(&cluster).copied().unwrap_or("topic").to_string(),
                };
                let excluded = options.excluded.iter().find(|e| {
                    e.virtual_cluster_id == cluster
                        && tenant_of(e) == tenant
                        && e.workspace_id == ws
                });
                if let (Some(ex), true) = (excluded, entities.is_empty()) {
                    if info.is_some() {
                        members.push(("entity_kind".to_string(), v(Kind::String(kind))));
                    }
                    members.push((
                        "excluded_reason".to_string(),
                        v(Kind::String(ex.reason.clone())),
                    ));
                    cl_values.push(v(Kind::Object(members)));
                    continue;
                }
                members.push(("entity_kind".to_string(), v(Kind::String(kind))));
                // Its storage attribution as read (none when WarpStream
                // apportioned no storage); else as its rows' method says.
                let storage = match info {
                    Some(i) => i.storage_attribution_method.as_ref(),
                    None => storage.get(&cluster),
                };
                if let Some(m) = storage {
                    members.push((
                        "storage_attribution_method".to_string(),
                        v(Kind::String(m.clone())),
                    ));
                }
                if let Some(min) = options.min_total {
                    entities.retain(|(_, total, _)| *total >= min);
                }
                entities.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let truncated =
                    entities.len() > max_entities || options.truncated_clusters.contains(&cluster);
                entities.truncate(max_entities);
                let mut ent_values = Vec::with_capacity(entities.len());
                for (name, total, items) in entities {
                    let mut cbs = Vec::with_capacity(items.len());
                    for (product, a) in items {
                        // Apportioned quantities hold up to 28 places;
                        // quantities read are written as they were.
                        let quantity = if a.apportioned {
                            a.quantity.round_dp(12)
                        } else {
                            a.quantity
                        };
                        let unit_price = match a.prices.as_slice() {
                            [one] => *one,
                            _ if !a.quantity.is_zero() => a
                                .total
                                .checked_mul(HUNDRED)
                                .and_then(|t| t.checked_div(a.quantity))
                                .map(|p| p.round_dp(10))
                                .unwrap_or_default(),
                            _ => Decimal::ZERO,
                        };
                        cbs.push(v(Kind::Object(vec![
                            ("product".to_string(), v(Kind::String(product))),
                            ("unit_price".to_string(), v(number(unit_price))),
                            ("quantity".to_string(), v(number(quantity))),
                            ("total".to_string(), v(number(a.total))),
                        ])));
                    }
                    ent_values.push(v(Kind::Object(vec![
                        ("name".to_string(), v(Kind::String(name))),
                        ("chargebacks".to_string(), v(Kind::Array(cbs))),
                        ("total".to_string(), v(number(total))),
                    ])));
                }
                members.push(("entities".to_string(), v(Kind::Array(ent_values))));
                if truncated {
                    members.push(("truncated".to_string(), v(Kind::Bool(true))));
                }
                cl_values.push(v(Kind::Object(members)));
            }
            let mut ws_members = vec![("workspace_id".to_string(), v(Kind::String(ws)))];
            if !ws_name.is_empty() {
                ws_members.push(("workspace_name".to_string(), v(Kind::String(ws_name))));
            }
            ws_members.push(("clusters".to_string(), v(Kind::Array(cl_values))));
            ws_values.push(v(Kind::Object(ws_members)));
        }
        tenants.push(v(Kind::Object(vec![
            ("tenant_id".to_string(), v(Kind::String(tenant))),
            ("workspaces".to_string(), v(Kind::Array(ws_values))),
        ])));
    }
    let doc = Kind::Object(vec![
        (
            "date_from".to_string(),
            v(Kind::String(date_from.date_string())),
        ),
        (
            "date_to".to_string(),
            v(Kind::String(date_to.date_string())),
        ),
        (
            "covers_products".to_string(),
            v(Kind::Array(
                covers.into_iter().map(|p| v(Kind::String(p))).collect(),
            )),
        ),
        ("tenants".to_string(), v(Kind::Array(tenants))),
    ]);
    let mut out = String::with_capacity(4096);
    exact_json::push_pretty(&mut out, &doc, 0);
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_responses_only() {
        for (head, yes) in [
            (
                &b"{\n  \"date_from\": \"2026-05-01\", \"covers_products\": []"[..],
                true,
            ),
            (b"\xef\xbb\xbf {\"tenants\": [{\"workspaces\": []}]}", true),
            (
                b"{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\"}}",
                false,
            ),
            (b"{\"data\": []}", false),
            (b"date_from,covers_products", false),
        ] {
            assert_eq!(
                sniff(head).is_some(),
                yes,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn units_methods_and_kinds() {
        assert_eq!(unit_of("GiB minutes"), "GiB-minute");
        assert_eq!(
            method_of("GiB minutes", Some("bytes_seconds_stored")),
            "bytes_seconds_stored"
        );
        for kind in ["topic", "subject", "table"] {
            assert_eq!(kind_of_product(&product_of_kind(kind)), kind);
        }
    }
}
