//! The records every reader produces and the allocator consumes.
//!
//! Readers in [`crate::formats`] turn files into these; [`crate::allocate`] turns
//! cost lines plus usage into allocation rows; [`crate::report`] rolls rows up;
//! writers turn rows back into files. Money is always [`Decimal`], never a float.

use crate::time::Timestamp;
use rust_decimal::Decimal;
use std::sync::Arc;

/// A shared, immutable string: the names in an [`AllocationRow`] and its
/// [`AllocatedLine`].
///
/// An allocation writes hundreds of thousands of rows over a few thousand
/// distinct names (owners, resources, products, ...). Each name is made once
/// and rows clone a pointer to it, so making a row allocates nothing and
/// dropping it frees nothing. The pointer is thin (an `Arc` of a `Box<str>`,
/// 8 bytes rather than 16), which keeps rows and lines small; the extra
/// indirection is paid only when the text is read. Compares, hashes and
/// serializes as the text itself.
#[derive(Clone, Default)]
pub struct Name(Arc<Box<str>>);

impl Name {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are the same shared copy (then their texts are equal; the
    /// converse does not hold: equal texts may be separate copies).
    pub fn same(&self, other: &Name) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The shared copy's address: an identity to hash rows' names by without
    /// reading their text. Equal addresses mean equal texts (not the converse),
    /// so a map keyed by it must still merge equal texts.
    pub fn addr(&self) -> usize {
        Arc::as_ptr(&self.0).addr()
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Self {
        Name(Arc::new(Box::from(text)))
    }
}

impl From<String> for Name {
    fn from(text: String) -> Self {
        Name(Arc::new(text.into_boxed_str()))
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        // Rows share their names: the same pointer is the common case.
        self.same(other) || self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == other.as_str()
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.same(other) {
            return std::cmp::Ordering::Equal;
        }
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that maps keyed by names can be looked up by `&str`.
        self.as_str().hash(state);
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

/// Where a record came from, for error messages and audit trails.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize)]
pub struct Source {
    /// The file name as the user gave it.
    pub file: String,
    /// 1-based line (CSV) or item index (JSON) in that file.
    pub line: u64,
}

/// One line of a bill: a cost for one product metric on one resource over a period.
///
/// Read from Confluent's Billing API costs (JSON or CSV), WarpStream invoices,
/// FOCUS charges, or reconstructed from a Confluent cost-allocation export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Default)]
pub struct CostLine {
    /// Where the line was read.
    pub source: Source,
    /// Organization the bill belongs to (added at ingest when combining orgs; may be empty).
    pub org_id: String,
    /// The provider's line id, if any.
    pub id: String,
    /// Product category, lowercase: `kafka`, `connect`, `flink`, `schema_registry`,
    /// `cluster_linking`, `ksqldb`, `audit_log`, `support`, `tableflow`, `credit`, ...
    pub product: String,
    /// Billable metric / line type, CamelCase as Confluent writes it
    /// (`KafkaNetworkRead`, `KafkaNumCKUs`, `ConnectNumTasks`, `Support`, ...), or the
    /// provider's own name (WarpStream `Cluster minutes`, FOCUS `ChargeDescription`).
    pub line_type: String,
    /// The logical resource (cluster `lkc-…`, connector cluster `lcc-…`, pool `lfcp-…`).
    pub resource_id: String,
    /// The environment (`env-…`); empty for organization-level lines such as Support.
    pub environment_id: String,
    /// Inclusive start of the period the line covers (UTC).
    pub start: Timestamp,
    /// Exclusive end of the period (UTC).
    pub end: Timestamp,
    /// The amount billed for this line (what must be allocated), in `currency`.
    /// Negative for credits and refunds.
    pub amount: Decimal,
    /// The amount before discounts, as the provider reports it (informational).
    pub original_amount: Decimal,
    /// Quantity of `unit` consumed.
    pub quantity: Decimal,
    /// Unit of measure (`GB`, `CKU-hour`, `Partition-hour`, `USD`, ...).
    pub unit: String,
    /// Unit price.
    pub price: Decimal,
    /// ISO 4217 currency code; `USD` unless the input says otherwise.
    pub currency: String,
    /// When set, the resource existed only for this fraction (0..=1) of the line's
    /// period and usage-based splits are prorated by it.
    pub active_fraction: Option<Decimal>,
    /// The owner of record named by the bill itself (e.g. the Kafka cluster a
    /// Connect cluster belongs to, a Flink pool's environment), if the input has it.
    pub owner_of_record: String,
    /// FOCUS `ChargeCategory` (`Usage`, `Purchase`, `Tax`, `Credit`,
    /// `Adjustment`) as the bill gives it; empty for inputs without one.
    pub charge_category: String,
    /// FOCUS `ChargeFrequency` (`One-Time`, `Recurring`, `Usage-Based`) as the
    /// bill gives it; empty for inputs without one.
    pub charge_frequency: String,
    /// The bill's own FOCUS columns naming who billed the charge and for what
    /// (provider, account, invoice, service, resource name and type); empty
    /// for inputs without them.
    pub bill_columns: BillColumns,
    /// A FOCUS charge's summable columns as the bill gives them; `None` for
    /// inputs that have only `amount` (boxed: most lines have none).
    pub charge_columns: Option<Box<ChargeColumns>>,
}

/// The cost columns of a FOCUS charge, in [`ChargeColumns::costs`]' order.
pub const CHARGE_COST_COLUMNS: [&str; 4] =
    ["BilledCost", "EffectiveCost", "ListCost", "ContractedCost"];

/// The quantity columns of a FOCUS charge, in [`ChargeColumns::quantities`]' order.
pub const CHARGE_QUANTITY_COLUMNS: [&str; 2] = ["PricingQuantity", "ConsumedQuantity"];

/// A FOCUS charge's summable columns: the cost column tally allocates is one
/// of them (its `amount`), and a FOCUS output splits every one of them over
/// the charge's parts by the allocation's ratios, so that none is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ChargeColumns {
    /// [`CHARGE_COST_COLUMNS`]; a null in the bill is the allocated amount.
    pub costs: [Decimal; 4],
    /// [`CHARGE_QUANTITY_COLUMNS`]; `None` where the bill has a null.
    pub quantities: [Option<Decimal>; 2],
}

impl ChargeColumns {
    /// The columns of two charges that are one line (`None` on overflow); a
    /// quantity is null only when it is null in both.
    pub fn checked_add(&self, other: &ChargeColumns) -> Option<ChargeColumns> {
        let mut sum = *self;
        for (total, part) in sum.costs.iter_mut().zip(other.costs) {
            *total = total.checked_add(part)?;
        }
        for (total, part) in sum.quantities.iter_mut().zip(other.quantities) {
            *total = match (*total, part) {
                (Some(a), Some(b)) => Some(a.checked_add(b)?),
                (a, b) => a.or(b),
            };
        }
        Some(sum)
    }
}

/// The FOCUS columns [`BillColumns`] keeps: who billed a charge (provider,
/// invoice issuer, billing and sub account, invoice), for which service, the
/// resource's name and type, where it ran (region, availability zone) and its
/// tags. The allocation changes none of them, so a FOCUS bill written back
/// says what the bill said rather than what tally would make up for a
/// Confluent line.
pub const BILL_COLUMN_NAMES: [&str; 18] = [
    "ServiceProviderName",
    "HostProviderName",
    "InvoiceIssuerName",
    "InvoiceId",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "SubAccountName",
    "SubAccountType",
    "ServiceName",
    "ServiceCategory",
    "ServiceSubcategory",
    "ResourceName",
    "ResourceType",
    "RegionId",
    "RegionName",
    "AvailabilityZone",
    "Tags",
];

/// A bill's values of the [`BILL_COLUMN_NAMES`], as read.
///
/// Held as one text (each value preceded by its length in bytes and `:`) so
/// that the store keys a cost line by it as one interned string: charges of
/// two billing accounts or two invoices stay two lines. Any text is a valid
/// value (the lengths delimit them, not a separator).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BillColumns(String);

impl BillColumns {
    /// The values of the [`BILL_COLUMN_NAMES`], in that order (missing ones
    /// empty), written over `self` (reusing its buffer). All empty is the
    /// empty text.
    pub fn set<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) {
        self.0.clear();
        let mut any = false;
        for value in values.into_iter().take(BILL_COLUMN_NAMES.len()) {
            push_decimal(&mut self.0, value.len());
            self.0.push(':');
            self.0.push_str(value);
            any |= !value.is_empty();
        }
        if !any {
            self.0.clear();
        }
    }

    /// The columns of an encoded text ([`BillColumns::as_text`]).
    pub fn from_text(text: &str) -> Self {
        BillColumns(text.to_string())
    }

    /// The encoded text (empty when no column has a value).
    pub fn as_text(&self) -> &str {
        &self.0
    }

    /// The value of `column` (one of the [`BILL_COLUMN_NAMES`]), if not empty.
    pub fn get(&self, column: &str) -> Option<&str> {
        BillValues::of(&self.0).get(column)
    }

    /// The part of an encoded text ([`BillColumns::as_text`]) that names the
    /// bill a charge is on: its `InvoiceIssuerName`, `InvoiceId` and
    /// `BillingAccountId` (adjacent columns, [`BILL_KEY_COLUMNS`]), still
    /// encoded. Two charges are on the same bill exactly when these are equal;
    /// charges without the columns (Confluent, WarpStream) share the empty one.
    pub fn bill_key(text: &str) -> &str {
        let mut spans = value_spans(text).skip(BILL_KEY_COLUMNS.start);
        let first = spans.next();
        let last = spans.nth(BILL_KEY_COLUMNS.len().saturating_sub(2));
        match (first, last) {
            (Some((start, _)), Some((_, end))) => text.get(start..end).unwrap_or(""),
            _ => "",
        }
    }
}

/// The values of an encoded text in order; stops at the first that is not
/// well encoded.
fn encoded_values(text: &str) -> impl Iterator<Item = &str> {
    value_spans(text).map(|(start, end)| {
        let value = text.get(start..end).unwrap_or("");
        value.split_once(':').map_or("", |(_, value)| value)
    })
}

/// The values of a [`BillColumns`], decoded ([`BillValues::of`]); all
/// empty by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct BillValues<'a>([&'a str; BILL_COLUMN_NAMES.len()]);

impl<'a> BillValues<'a> {
    /// The values of an encoded text ([`BillColumns::as_text`], as an
    /// allocated line carries it).
    pub fn of(text: &'a str) -> Self {
        let mut values = BillValues::default();
        for (slot, value) in values.0.iter_mut().zip(encoded_values(text)) {
            *slot = value;
        }
        values
    }

    /// The value of `column` (one of the [`BILL_COLUMN_NAMES`]), if not empty.
    pub fn get(&self, column: &str) -> Option<&'a str> {
        let at = BILL_COLUMN_NAMES.iter().position(|name| *name == column)?;
        self.0.get(at).copied().filter(|value| !value.is_empty())
    }
}

/// Appends `n` in decimal digits (without the formatting machinery: the
/// FOCUS reader encodes a length per bill column of every row).
fn push_decimal(out: &mut String, n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at = at.saturating_sub(1);
        if let Some(digit) = digits.get_mut(at) {
            *digit = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 || at == 0 {
            break;
        }
    }
    out.extend(
        digits
            .get(at..)
            .unwrap_or_default()
            .iter()
            .map(|&d| char::from(d)),
    );
}

/// The [`BILL_COLUMN_NAMES`] that say which bill a charge is on
/// ([`BillColumns::bill_key`]).
pub const BILL_KEY_COLUMNS: std::ops::Range<usize> = 2..5;

/// The byte range of each encoded value in `text`, its length prefix
/// included; stops at the first that is not well encoded.
fn value_spans(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = text.get(at..)?;
        let (len, tail) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        tail.get(..len)?;
        let start = at;
        at = at.checked_add(rest.len() - tail.len())?.checked_add(len)?;
        Some((start, at))
    })
}

impl serde::Serialize for BillColumns {
    /// As an object of the columns that have a value.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in BILL_COLUMN_NAMES.iter().zip(encoded_values(&self.0)) {
            if !value.is_empty() {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

/// How much of a usage metric one principal (and optionally topic) used.
///
/// Read from tally's usage CSV, a Prometheus `query_range` export of tally's
/// counters, WarpStream's per-entity rollups, or the usage side of a Confluent export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageSample {
    /// Where the sample was read.
    pub source: Source,
    /// Organization (may be empty).
    pub org_id: String,
    /// Inclusive start of the interval the usage was measured in (UTC).
    pub start: Timestamp,
    /// Exclusive end (UTC).
    pub end: Timestamp,
    /// The resource the usage happened on (Kafka cluster id).
    pub resource_id: String,
    /// Who used it: principal id (service account, user, pool, client.id, ...).
    pub principal: String,
    /// How the principal was identified (see [`crate::usage::UsageRow::principal_source`]).
    pub principal_source: String,
    /// The topic (or subject, table); empty for per-principal metrics.
    pub topic: String,
    /// Metric name: a [`crate::usage::Metric`] name, or a provider metric such as
    /// `uncompressed_bytes_written`, `retention_seconds`, `lifetime_seconds`.
    pub metric: String,
    /// Non-negative quantity.
    pub value: Decimal,
}

/// The fields of a [`UsageSample`], borrowed (from a reader's record, or from a
/// sample): the usage CSV reader hands each row over without copying its six
/// texts into owned strings first, and the store copies a text only the first
/// time it sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRef<'a> {
    /// The file the sample was read from.
    pub file: &'a str,
    /// The sample's line in that file.
    pub line: u64,
    /// Organization (may be empty).
    pub org_id: &'a str,
    /// Inclusive start of the interval (UTC).
    pub start: Timestamp,
    /// Exclusive end (UTC).
    pub end: Timestamp,
    /// The resource the usage happened on.
    pub resource_id: &'a str,
    /// Who used it.
    pub principal: &'a str,
    /// How the principal was identified.
    pub principal_source: &'a str,
    /// The topic; empty for per-principal metrics.
    pub topic: &'a str,
    /// Metric name.
    pub metric: &'a str,
    /// Non-negative quantity.
    pub value: Decimal,
}

impl UsageSample {
    /// The sample's fields, borrowed.
    pub fn as_ref(&self) -> UsageRef<'_> {
        UsageRef {
            file: &self.source.file,
            line: self.source.line,
            org_id: &self.org_id,
            start: self.start,
            end: self.end,
            resource_id: &self.resource_id,
            principal: &self.principal,
            principal_source: &self.principal_source,
            topic: &self.topic,
            metric: &self.metric,
            value: self.value,
        }
    }
}

impl UsageRef<'_> {
    /// An owned copy, for sinks that keep samples.
    pub fn to_sample(&self) -> UsageSample {
        UsageSample {
            source: Source {
                file: self.file.to_string(),
                line: self.line,
            },
            org_id: self.org_id.to_string(),
            start: self.start,
            end: self.end,
            resource_id: self.resource_id.to_string(),
            principal: self.principal.to_string(),
            principal_source: self.principal_source.to_string(),
            topic: self.topic.to_string(),
            metric: self.metric.to_string(),
            value: self.value,
        }
    }
}

/// The level at which costs are attributed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum EntityLevel {
    /// Service account, user, identity pool, or a resource id standing in for one.
    Principal,
    /// Kafka topic (WarpStream-style; also derived from tally's per-topic usage).
    Topic,
}

/// One allocated amount: the cost of one line, in one bucket, attributed to one owner.
///
/// The fields are those of Confluent's cost-allocation export, so that what
/// tally writes reads like the native export, plus the *why* (method, chain
/// step, reason). What every row of one cost line in one bucket has in common
/// is held once, in a shared [`AllocatedLine`]: an allocation makes hundreds of
/// thousands of rows from a few thousand lines, and a row is then a pointer,
/// an owner and two amounts (48 bytes rather than 168), which is most of the
/// memory an allocation writes. Serializes flat, as one object
/// with the line's fields in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRow {
    /// The cost line (in its bucket) this row is a part of.
    pub line: Arc<AllocatedLine>,
    /// Who is charged: principal, topic, resource id, or `unallocated`.
    pub owner_id: Name,
    /// The part of the line charged to `owner_id` (exact, at the output precision).
    pub chargeback_cost: Decimal,
    /// This owner's share of the usage that drove the split (0 for unallocated).
    pub usage_share: Decimal,
}

/// The fields an [`AllocationRow`] shares with every other row of its cost
/// line in its bucket. (Rows rolled up from an export each have their own:
/// their sources differ.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatedLine {
    /// Bucket start (UTC).
    pub bucket_start: Timestamp,
    /// Bucket end (UTC, exclusive).
    pub bucket_end: Timestamp,
    /// Whether the bucket is cut by a custom range boundary.
    pub partial_bucket: bool,
    /// Organization (may be empty).
    pub org_id: Name,
    /// Whether the rows' owners are principals or topics.
    pub level: EntityLevel,
    /// Environment of the charged resource.
    pub environment_id: Name,
    /// The resource whose cost this is.
    pub resource_id: Name,
    /// Product category (lowercase).
    pub product: Name,
    /// Billable metric (CamelCase).
    pub line_type: Name,
    /// Unit of the line.
    pub unit: Name,
    /// The line's whole amount in this bucket, before the split.
    pub original_amount: Decimal,
    /// The line's quantity in this bucket: its charges' quantities, split over
    /// the buckets as their amounts are (zero for rows of exports).
    pub quantity: Decimal,
    /// Currency of the amounts.
    pub currency: Name,
    /// The allocation method that produced the rows (`usage_ratio`, `even_split`, ...).
    pub method: Name,
    /// 0-based index of the step in the rule's fallback chain that produced them.
    pub chain_step: u32,
    /// Why that step applied (`usage_found`, `no_usage_found`, `no_active_principals`, ...).
    pub reason: Name,
    /// The cost line(s) the rows came from.
    pub source: RowSource,
    /// The bill's own columns of the charge ([`BillColumns`], encoded; empty
    /// for lines without them: Confluent, WarpStream, exports). Its
    /// [`BillColumns::bill_key`] tells which bill the rows are on.
    pub bill_columns: Name,
}

/// How the engine allocated one line of one bucket that came from a FOCUS
/// bill (one with [`ChargeColumns`]), including those no row shows: a line
/// left unallocated is only part of its bill's `unallocated` row, and a line
/// whose allocated cost is zero (a usage charge a commitment covers, by
/// `BilledCost`; the commitment's purchase, by `EffectiveCost`) has no rows
/// at all. The FOCUS writer needs each to write every column of the bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatedCharge {
    /// What the line's rows share (its `original_amount` is the line's
    /// amount in the bucket); for a line no step split, method `unallocated`
    /// and the reason.
    pub line: Arc<AllocatedLine>,
    /// The line's columns in the bucket: split over buckets as its amount is,
    /// costs rounded to the output precision, quantities to
    /// [`crate::money::MAX_SCALE`] places.
    pub columns: ChargeColumns,
    /// The part of the line's amount in its bill's `unallocated` row: all of
    /// it when no step split the line, else zero.
    pub unallocated: Decimal,
}

impl serde::Serialize for AllocationRow {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let line = &*self.line;
        let mut row = serializer.serialize_struct("AllocationRow", 19)?;
        row.serialize_field("bucket_start", &line.bucket_start)?;
        row.serialize_field("bucket_end", &line.bucket_end)?;
        row.serialize_field("partial_bucket", &line.partial_bucket)?;
        row.serialize_field("org_id", &line.org_id)?;
        row.serialize_field("owner_id", &self.owner_id)?;
        row.serialize_field("level", &line.level)?;
        row.serialize_field("environment_id", &line.environment_id)?;
        row.serialize_field("resource_id", &line.resource_id)?;
        row.serialize_field("product", &line.product)?;
        row.serialize_field("line_type", &line.line_type)?;
        row.serialize_field("unit", &line.unit)?;
        row.serialize_field("chargeback_cost", &self.chargeback_cost)?;
        row.serialize_field("original_amount", &line.original_amount)?;
        row.serialize_field("usage_share", &self.usage_share)?;
        row.serialize_field("currency", &line.currency)?;
        row.serialize_field("method", &line.method)?;
        row.serialize_field("chain_step", &line.chain_step)?;
        row.serialize_field("reason", &line.reason)?;
        row.serialize_field("source", &line.source)?;
        row.end()
    }
}

/// Where an [`AllocationRow`] came from: a [`Source`] whose file name is shared
/// (every row of a file points to one copy of its name). Serializes as a [`Source`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize)]
pub struct RowSource {
    /// The file name as the user gave it.
    pub file: Name,
    /// 1-based line (CSV) or item index (JSON) in that file.
    pub line: u64,
}

impl From<&Source> for RowSource {
    fn from(source: &Source) -> Self {
        RowSource {
            file: source.file.as_str().into(),
            line: source.line,
        }
    }
}

/// The fields of an already-allocated input row that the aggregation keeps,
/// borrowed (from a reader's record, or from an [`AllocationRow`]): a reader can
/// hand a row over without copying each field into an owned string first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatedRef<'a> {
    /// Bucket start (UTC).
    pub bucket_start: Timestamp,
    /// Organization (may be empty).
    pub org_id: &'a str,
    /// Who is charged.
    pub owner_id: &'a str,
    /// Whether `owner_id` is a principal or a topic.
    pub level: EntityLevel,
    /// Environment of the charged resource.
    pub environment_id: &'a str,
    /// The resource whose cost this is.
    pub resource_id: &'a str,
    /// Product category.
    pub product: &'a str,
    /// Billable metric.
    pub line_type: &'a str,
    /// Unit of the line.
    pub unit: &'a str,
    /// The part of the line charged to `owner_id`.
    pub chargeback_cost: Decimal,
    /// The line's whole amount, as the input gives it.
    pub original_amount: Decimal,
    /// The owner's usage share, as the input gives it.
    pub usage_share: Decimal,
    /// Currency of the amount.
    pub currency: &'a str,
    /// The allocation method.
    pub method: &'a str,
    /// Step of the fallback chain.
    pub chain_step: u32,
    /// Why that step applied.
    pub reason: &'a str,
    /// The file the row came from.
    pub file: &'a str,
    /// The row's line in that file.
    pub line: u64,
}

impl AllocationRow {
    /// The row's aggregated fields, borrowed.
    pub fn as_ref(&self) -> AllocatedRef<'_> {
        let line = &*self.line;
        AllocatedRef {
            bucket_start: line.bucket_start,
            org_id: &line.org_id,
            owner_id: &self.owner_id,
            level: line.level,
            environment_id: &line.environment_id,
            resource_id: &line.resource_id,
            product: &line.product,
            line_type: &line.line_type,
            unit: &line.unit,
            chargeback_cost: self.chargeback_cost,
            original_amount: line.original_amount,
            usage_share: self.usage_share,
            currency: &line.currency,
            method: &line.method,
            chain_step: line.chain_step,
            reason: &line.reason,
            file: &line.source.file,
            line: line.source.line,
        }
    }
}

/// What a crosswalk pattern row matches on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PatternOn {
    /// The topic name (topic-level entities).
    Topic,
    /// The principal (service account, user, ...).
    Principal,
    /// Any `owner_id` (principal, topic or resource id).
    Owner,
}

impl PatternOn {
    /// Parses `topic`, `principal` or `owner` (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "topic" => Some(PatternOn::Topic),
            "principal" => Some(PatternOn::Principal),
            "owner" | "owner_id" => Some(PatternOn::Owner),
            _ => None,
        }
    }
}

/// One row of the crosswalk CSV: either a direct owner → team mapping, or a
/// pattern (a regex whose named capture `team`, or the row's `team` value, names
/// the team) for naming conventions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CrosswalkEntry {
    /// Where the row was read.
    pub source: Source,
    /// Organization (empty: any organization).
    pub org_id: String,
    /// The owner id mapped (empty for pattern rows).
    pub owner_id: String,
    /// The team (for a pattern row: used when the regex has no `team` capture).
    pub team: String,
    /// The cost center (optional).
    pub cost_center: String,
    /// For a pattern row: what the pattern matches on.
    pub pattern_on: Option<PatternOn>,
    /// For a pattern row: the regular expression.
    pub pattern: String,
}

/// An input row (or document) that was refused, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    /// The file name as the user gave it.
    pub file: String,
    /// 1-based line (0 when not tied to a line).
    pub line: u64,
    /// The column (or JSON field) at fault; empty when not one column.
    pub column: String,
    /// Why it was refused.
    pub reason: String,
}

impl Rejection {
    /// The rejection an [`crate::Error`] describes.
    pub fn from_error(file: &str, error: &crate::Error) -> Self {
        use crate::Error;
        match error {
            Error::Input { at, reason } => Rejection {
                file: at.file.clone(),
                line: at.line,
                column: at.column.clone(),
                reason: reason.clone(),
            },
            // A JSON item names its path (`data.result[3]`); a CSV record none.
            Error::TooLarge { at, limit } => Rejection {
                file: at.file.clone(),
                line: at.line,
                column: at.column.clone(),
                reason: format!("record longer than the {limit}-byte limit; refused"),
            },
            other => Rejection {
                file: file.to_string(),
                line: 0,
                column: String::new(),
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AllocationRow, BillColumns, Name, BILL_COLUMN_NAMES, BILL_KEY_COLUMNS};
    use proptest::prelude::*;
    use std::hash::{BuildHasher, RandomState};

    #[test]
    fn bill_columns_give_back_each_value_whatever_it_holds() {
        let values = [
            "AWS",
            "",
            "Amazon Web Services, Inc.",
            "INV:2026:05",
            "100000000002",
            "3:ab",
            "",
            "ünïcode",
            "",
            "AmazonEC2",
            "Compute",
            "",
            "with,comma \"quoted\"",
            "EC2 Instance",
        ];
        let mut columns = BillColumns::default();
        columns.set(values);
        for (name, value) in BILL_COLUMN_NAMES.iter().zip(values) {
            let expected = (!value.is_empty()).then_some(value);
            assert_eq!(columns.get(name), expected, "{name}");
        }
        assert_eq!(BillColumns::from_text(columns.as_text()), columns);
        assert_eq!(columns.get("NoSuchColumn"), None);
        let json = serde_json::to_value(&columns).unwrap();
        assert_eq!(json["ResourceName"], "with,comma \"quoted\"");
        assert_eq!(json.as_object().unwrap().len(), 10);
        // The bill: issuer, invoice and account, still encoded.
        assert_eq!(
            BILL_COLUMN_NAMES.get(BILL_KEY_COLUMNS),
            Some(&["InvoiceIssuerName", "InvoiceId", "BillingAccountId"][..])
        );
        assert_eq!(
            BillColumns::bill_key(columns.as_text()),
            "25:Amazon Web Services, Inc.11:INV:2026:0512:100000000002"
        );
        assert_eq!(BillColumns::bill_key(""), "");
        // No value at all is the empty text, the same as a line of another format.
        columns.set(["", ""]);
        assert_eq!(columns, BillColumns::default());
        // Lengths of any number of digits.
        let long = "x".repeat(1234);
        columns.set(["", long.as_str(), "0123456789"]);
        assert_eq!(columns.get("HostProviderName"), Some(long.as_str()));
        assert_eq!(columns.get("InvoiceIssuerName"), Some("0123456789"));
        assert!(columns.as_text().starts_with("0:1234:x"));
        // A text that is not well encoded gives no values rather than wrong ones.
        assert_eq!(
            BillColumns::from_text("9:AWS").get("ServiceProviderName"),
            None
        );
    }

    #[test]
    fn a_row_is_a_line_pointer_an_owner_and_two_amounts() {
        // The bulk of an allocation's memory: keep it lean (see AllocationRow).
        assert_eq!(std::mem::size_of::<AllocationRow>(), 48);
    }

    #[test]
    fn a_name_is_its_text() {
        for text in ["", "sa-1", "lkc-00001", "ünïcode", "with,comma"] {
            let name = Name::from(text);
            assert_eq!(name, text);
            assert_eq!(&*name, text);
            assert_eq!(name.to_string(), text);
            assert_eq!(format!("{name:?}"), format!("{text:?}"));
            assert_eq!(
                serde_json::to_string(&name).unwrap(),
                serde_json::to_string(text).unwrap()
            );
            assert_eq!(Name::from(text.to_string()), name);
        }
        // Borrow<str>: a map keyed by names is looked up by text.
        let map: std::collections::HashMap<Name, u32> = [(Name::from("a"), 1)].into();
        assert_eq!(map.get("a"), Some(&1));
    }

    /// Rows are many (hundreds of thousands per run): their names are thin
    /// shared pointers, so a row holds no text of its own.
    #[test]
    fn a_row_is_small() {
        assert_eq!(std::mem::size_of::<Name>(), 8);
        assert!(std::mem::size_of::<super::AllocationRow>() <= 176);
    }

    proptest! {
        /// Shared or not, names compare and hash as their texts do.
        #[test]
        fn names_order_and_hash_as_text(a in ".{0,12}", b in ".{0,12}") {
            let (x, y) = (Name::from(a.as_str()), Name::from(b.as_str()));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            prop_assert_eq!(x == y, a == b);
            prop_assert_eq!(x.cmp(&x.clone()), std::cmp::Ordering::Equal);
            let state = RandomState::new();
            prop_assert_eq!(state.hash_one(&x), state.hash_one(a.as_str()));
        }
    }
}
