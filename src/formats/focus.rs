//! FOCUS (FinOps Open Cost and Usage Specification) CSV: reader and writer.
//!
//! ## The format
//!
//! A FOCUS *Cost and Usage* dataset has one row per charge, with PascalCase
//! column names: `BilledCost`, `EffectiveCost`, `ListCost`, `ContractedCost`,
//! `ChargePeriodStart` / `ChargePeriodEnd` (UTC, end exclusive), `BillingCurrency`,
//! `ChargeCategory` (`Usage`, `Purchase`, `Tax`, `Credit`, `Adjustment`),
//! `ServiceName`, `ResourceId`, `SubAccountId`, `SkuId`, `PricingQuantity` /
//! `PricingUnit`, `ListUnitPrice`, `Tags` (a JSON object), and from 1.3 the split
//! cost allocation columns `AllocatedMethodId`, `AllocatedMethodDetails`,
//! `AllocatedResourceId`, `AllocatedResourceName`, `AllocatedTags`. A null is an
//! empty field.
//!
//! ## Reading (any provider's FOCUS 1.0–1.3 export → [`CostLine`]s)
//!
//! Columns are found by name (case and `_` insensitive). Required:
//! `ChargePeriodStart`, `ChargePeriodEnd`, `BillingCurrency` and the cost column.
//! **The allocated amount is `BilledCost`** by default — what the invoice charges,
//! so that allocations reconcile to the invoice — or `EffectiveCost` (amortized,
//! after commitment discounts) when the reader is built with
//! [`CostColumn::Effective`]. A charge is mapped as:
//!
//! | CostLine | FOCUS |
//! |---|---|
//! | `amount` | `BilledCost` (or `EffectiveCost`) |
//! | `original_amount` | `ListCost`, else `amount` |
//! | `product` | `credit` / `tax` for those `ChargeCategory`s, else `ServiceName` lower-cased with non-alphanumerics as `_` (`unknown` if null) |
//! | `line_type` | `ChargeDescription`, else `SkuMeter`, else `SkuId` |
//! | `resource_id`, `environment_id` | `ResourceId`, `SubAccountId` |
//! | `start`, `end` | `ChargePeriodStart`, `ChargePeriodEnd` |
//! | `quantity`, `unit` | `PricingQuantity`/`PricingUnit`, else `ConsumedQuantity`/`ConsumedUnit` (0 and empty if null) |
//! | `price` | `ContractedUnitPrice`, else `ListUnitPrice`, else 0 |
//! | `currency` | `BillingCurrency` |
//! | `owner_of_record` | `AllocatedResourceId` (a provider's own split already names the owner) |
//! | `charge_category`, `charge_frequency` | `ChargeCategory`, `ChargeFrequency` (a `Purchase` or `Adjustment` is written back as such) |
//! | `charge_columns` | `BilledCost`, `EffectiveCost`, `ListCost`, `ContractedCost` (a null one: `amount`), `PricingQuantity`, `ConsumedQuantity` (kept null), for the writer to split |
//! | `bill_columns` | the [`BILL_COLUMN_NAMES`] (`ServiceProviderName`, `InvoiceId`, `BillingAccountId`, `ServiceName`, `ResourceName`, …; a 1.0–1.2 bill's `ProviderName` for the service and host providers), written back as read |
//! | `id` | `InvoiceDetailId` if present, else `line-<n>` |
//!
//! A row with a bad number, a bad or inverted period, or no currency is rejected
//! with file, line, column and reason; the other rows go on.
//!
//! ## Writing (tally's allocation → FOCUS 1.3)
//!
//! [`write_focus`] expresses the allocation as FOCUS *data generator-calculated
//! split cost allocation*: each origin charge (one resource's line type in one
//! bucket — the cost lines that fed it — at one entity level) is replaced by its
//! allocated charges, one per owner and cost line, which carry the origin's
//! dimensions. Every row of an allocation is written, each at the level its
//! line was allocated at (rules may pin a product to topics, as WarpStream's
//! do, while the run allocates by principal), so the file sums to the bill.
//!
//! The summable columns of a charge read from a FOCUS bill (`BilledCost`,
//! `EffectiveCost`, `ListCost`, `ContractedCost`, `PricingQuantity`,
//! `ConsumedQuantity`) are the bill's: each is split over the charge's parts in
//! proportion to the allocated column (the one `--focus-cost` picks), by
//! largest remainder, so each column's parts add up exactly to the charge's
//! value at the run's precision (quantities at [`WriteOptions::quantity_scale`]
//! places; a null quantity stays null, and none is written on a `Credit` or
//! `Tax` charge). A charge whose allocated column is zero has nothing to split
//! by (a usage charge a commitment covers, by `BilledCost`; the commitment's
//! purchase, by `EffectiveCost`): it is written whole, unallocated (reason
//! `zero_amount`), with its other columns. For a Confluent or WarpStream line,
//! which has only its amount, the allocated cost is written in all four cost
//! columns (but a `Purchase`'s `EffectiveCost`, zero as FOCUS requires: it is
//! amortized over the charges it covers) and the line's quantity is split in
//! proportion to cost. Amounts are written with at least the run's precision
//! (`10.00`).
//!
//! * `AllocatedMethodId` = `tally:<method>` (`tally:usage_ratio`,
//!   `tally:even_split`, `tally:unallocated`, ...).
//! * `AllocatedMethodDetails` = `{"Elements":[{"AllocatedRatio": r, "x_UsageShare":
//!   …, "x_ChainStep": n, "x_Reason": "…"}]}`; the ratios of one origin charge sum
//!   to exactly 1 (largest remainder at 12 decimals).
//! * `AllocatedResourceId` / `AllocatedResourceName` = the owner (principal or
//!   topic); **null on the unallocated remainder** (`owner_id` `unallocated`).
//! * `AllocatedTags` = `{"tally/level": "principal"|"topic", "tally/method": …}`.
//! * `Tags` = `{"tally/product": …, "tally/line_type": …}` followed by the
//!   bill's own tags, as the bill wrote them, when they are a JSON object (a
//!   key of both is the bill's).
//! * `ChargeDescription` = `<line type> (<product>) on <resource>`, without
//!   what is empty (`Support (support)`, `kafka on lkc-1`).
//!
//! An origin charge is a resource's line type in one bucket as one bill
//! describes it: two charges of a resource with different tags, regions or
//! invoices are two origins, each split on its own. The engine writes one
//! `unallocated` row per bucket and bill (no resource, no line type), as
//! Confluent does per bucket. The writer treats it as a pool: a charge read
//! from a FOCUS bill takes back what the engine left of it unallocated
//! ([`AllocatedCharge::unallocated`]: all of a credit, of a charge no step
//! could split); any other origin whose allocated charges fall short of its
//! amount (`original_amount`) gets its remainder back. Each is an allocated
//! charge with a null `AllocatedResourceId`, so every origin's ratios sum to 1
//! over all of it; what stays in the pool (a Confluent credit, lines with no
//! usage at all) is one charge of its own, described `Unallocated
//! (<reasons>)`. The written costs always sum exactly to the rows'.
//!
//! A charge read from a FOCUS bill is written with the bill's own
//! [`BILL_COLUMN_NAMES`] (its provider, accounts, invoice, service, resource,
//! region and tags); a Confluent or WarpStream line, which has none, with the
//! [`WriteOptions`] provider and account and the service tally names after its
//! product.
//!
//! Columns written: the FOCUS 1.3 Cost and Usage columns tally can fill, without
//! `ProviderName` and `PublisherName` (deprecated in 1.3 for `ServiceProviderName`
//! and `HostProviderName`, removed in 1.4), and without commitment-discount,
//! capacity-reservation and pricing-currency columns (conditional columns that
//! do not apply to Kafka bills); `RegionId`, `RegionName` and
//! `AvailabilityZone` are written from a FOCUS bill, null for Kafka lines. See
//! [`WRITE_COLUMNS`].

use super::csv::{ColumnMap, ColumnSpec, CsvReader, ParseRow, Record};
use super::origins::{
    attribute_remainders, bill_bucket, is_bill_remainder, origin_key, BillBucket, CostLines,
    OriginKey,
};
use super::{parse_decimal, parse_time, set, Sink};
use crate::allocate::UNALLOCATED;
use crate::error::Error;
use crate::model::{
    AllocatedCharge, AllocatedLine, AllocationRow, BillValues, ChargeColumns, CostLine,
    EntityLevel, Name, RowSource, BILL_COLUMN_NAMES, CHARGE_COST_COLUMNS,
};
use crate::money;
use crate::time::{Granularity, Timestamp};
use crate::usage::push_csv_field;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The name [`sniff`] returns.
pub const FORMAT_NAME: &str = "focus";

/// Whether the first bytes look like a FOCUS CSV (a header with `BilledCost` and
/// `ChargePeriodStart`, any case).
pub fn sniff(first_bytes: &[u8]) -> Option<&'static str> {
    let header = super::csv::sniff_header(first_bytes);
    let has = |name: &str| header.iter().any(|h| h.replace('_', "") == name);
    (has("billedcost") && has("chargeperiodstart")).then_some(FORMAT_NAME)
}

/// Which FOCUS cost column the reader allocates (session option `focus_cost`:
/// `"billed"` or `"effective"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CostColumn {
    /// `BilledCost`: what the invoice charges (the default; reconciles to it).
    #[default]
    Billed,
    /// `EffectiveCost`: amortized cost after commitment discounts.
    Effective,
}

const BILLED: usize = 0;
const EFFECTIVE: usize = 1;
const LIST_COST: usize = 2;
const START: usize = 3;
const END: usize = 4;
const CURRENCY: usize = 5;
const CATEGORY: usize = 6;
const SERVICE: usize = 7;
const DESCRIPTION: usize = 8;
const SKU_METER: usize = 9;
const SKU_ID: usize = 10;
const RESOURCE: usize = 11;
const SUB_ACCOUNT: usize = 12;
const PRICING_QTY: usize = 13;
const PRICING_UNIT: usize = 14;
const CONSUMED_QTY: usize = 15;
const CONSUMED_UNIT: usize = 16;
const CONTRACTED_PRICE: usize = 17;
const LIST_PRICE: usize = 18;
const ALLOCATED_RESOURCE: usize = 19;
const DETAIL_ID: usize = 20;
const FREQUENCY: usize = 21;
const CONTRACTED_COST: usize = 22;
/// The first of the [`BILL_COLUMN_NAMES`], in their order.
const BILL_FIRST: usize = 23;
/// `ProviderName` (FOCUS 1.0–1.2): the service and host provider of a bill
/// without `ServiceProviderName` and `HostProviderName`.
const PROVIDER: usize = BILL_FIRST + BILL_COLUMN_NAMES.len();
const COLUMN_COUNT: usize = PROVIDER + 1;

const fn spec(name: &'static str, aliases: &'static [&'static str], required: bool) -> ColumnSpec {
    ColumnSpec {
        name,
        aliases,
        required,
    }
}

const fn columns(billed: bool) -> [ColumnSpec; COLUMN_COUNT] {
    [
        spec("BilledCost", &["billedcost", "billed_cost"], billed),
        spec(
            "EffectiveCost",
            &["effectivecost", "effective_cost"],
            !billed,
        ),
        spec("ListCost", &["listcost", "list_cost"], false),
        spec(
            "ChargePeriodStart",
            &["chargeperiodstart", "charge_period_start"],
            true,
        ),
        spec(
            "ChargePeriodEnd",
            &["chargeperiodend", "charge_period_end"],
            true,
        ),
        spec(
            "BillingCurrency",
            &["billingcurrency", "billing_currency"],
            true,
        ),
        spec(
            "ChargeCategory",
            &["chargecategory", "charge_category"],
            false,
        ),
        spec("ServiceName", &["servicename", "service_name"], false),
        spec(
            "ChargeDescription",
            &["chargedescription", "charge_description"],
            false,
        ),
        spec("SkuMeter", &["skumeter", "sku_meter"], false),
        spec("SkuId", &["skuid", "sku_id"], false),
        spec("ResourceId", &["resourceid", "resource_id"], false),
        spec("SubAccountId", &["subaccountid", "sub_account_id"], false),
        spec(
            "PricingQuantity",
            &["pricingquantity", "pricing_quantity"],
            false,
        ),
        spec("PricingUnit", &["pricingunit", "pricing_unit"], false),
        spec(
            "ConsumedQuantity",
            &["consumedquantity", "consumed_quantity"],
            false,
        ),
        spec("ConsumedUnit", &["consumedunit", "consumed_unit"], false),
        spec(
            "ContractedUnitPrice",
            &["contractedunitprice", "contracted_unit_price"],
            false,
        ),
        spec(
            "ListUnitPrice",
            &["listunitprice", "list_unit_price"],
            false,
        ),
        spec(
            "AllocatedResourceId",
            &["allocatedresourceid", "allocated_resource_id"],
            false,
        ),
        spec(
            "InvoiceDetailId",
            &["invoicedetailid", "invoice_detail_id"],
            false,
        ),
        spec(
            "ChargeFrequency",
            &["chargefrequency", "charge_frequency"],
            false,
        ),
        spec(
            "ContractedCost",
            &["contractedcost", "contracted_cost"],
            false,
        ),
        // From BILL_FIRST: the bill's own columns (BILL_COLUMN_NAMES' order).
        spec(
            "ServiceProviderName",
            &["serviceprovidername", "service_provider_name"],
            false,
        ),
        spec(
            "HostProviderName",
            &["hostprovidername", "host_provider_name"],
            false,
        ),
        spec(
            "InvoiceIssuerName",
            &["invoiceissuername", "invoice_issuer_name"],
            false,
        ),
        spec("InvoiceId", &["invoiceid", "invoice_id"], false),
        spec(
            "BillingAccountId",
            &["billingaccountid", "billing_account_id"],
            false,
        ),
        spec(
            "BillingAccountName",
            &["billingaccountname", "billing_account_name"],
            false,
        ),
        spec(
            "BillingAccountType",
            &["billingaccounttype", "billing_account_type"],
            false,
        ),
        spec(
            "SubAccountName",
            &["subaccountname", "sub_account_name"],
            false,
        ),
        spec(
            "SubAccountType",
            &["subaccounttype", "sub_account_type"],
            false,
        ),
        spec("ServiceName", &["servicename", "service_name"], false),
        spec(
            "ServiceCategory",
            &["servicecategory", "service_category"],
            false,
        ),
        spec(
            "ServiceSubcategory",
            &["servicesubcategory", "service_subcategory"],
            false,
        ),
        spec("ResourceName", &["resourcename", "resource_name"], false),
        spec("ResourceType", &["resourcetype", "resource_type"], false),
        spec("RegionId", &["regionid", "region_id"], false),
        spec("RegionName", &["regionname", "region_name"], false),
        spec(
            "AvailabilityZone",
            &["availabilityzone", "availability_zone"],
            false,
        ),
        spec("Tags", &["tags"], false),
        spec("ProviderName", &["providername", "provider_name"], false),
    ]
}

const BILLED_COLUMNS: [ColumnSpec; COLUMN_COUNT] = columns(true);
const EFFECTIVE_COLUMNS: [ColumnSpec; COLUMN_COUNT] = columns(false);

/// The columns the reader uses when allocating `BilledCost` (names compared
/// lower-cased; `BilledCost` required).
pub const COLUMNS: &[ColumnSpec] = &BILLED_COLUMNS;
/// The same, allocating `EffectiveCost` (`EffectiveCost` required).
pub const COLUMNS_EFFECTIVE: &[ColumnSpec] = &EFFECTIVE_COLUMNS;

/// The row parser behind [`reader`].
pub struct FocusRows {
    org_id: String,
    cost: CostColumn,
    scratch: CostLine,
}

/// A streaming FOCUS CSV reader (see the module docs).
pub type FocusReader = CsvReader<FocusRows>;

/// A reader of `file` allocating [`CostColumn::Billed`].
pub fn reader(file: &str, org_id: &str, max_record: usize) -> FocusReader {
    reader_with(file, org_id, max_record, CostColumn::Billed)
}

/// A reader of `file` allocating the chosen cost column.
pub fn reader_with(file: &str, org_id: &str, max_record: usize, cost: CostColumn) -> FocusReader {
    let specs = match cost {
        CostColumn::Billed => COLUMNS,
        CostColumn::Effective => COLUMNS_EFFECTIVE,
    };
    CsvReader::new(
        file,
        specs,
        max_record,
        FocusRows {
            org_id: org_id.to_string(),
            cost,
            scratch: super::confluent_costs::empty_line(file),
        },
    )
}

fn optional_decimal(
    file: &str,
    line: u64,
    cols: &ColumnMap,
    record: &Record<'_>,
    which: usize,
) -> Result<Option<Decimal>, Error> {
    let text = cols.get(record, which);
    if text.is_empty() || text.eq_ignore_ascii_case("null") {
        return Ok(None);
    }
    parse_decimal(file, line, cols.name(which), text).map(Some)
}

/// Writes the product category of a charge into `out` (reusing its buffer).
fn product_of(out: &mut String, category: &str, service: &str) {
    out.clear();
    if category.eq_ignore_ascii_case("credit") {
        out.push_str("credit");
        return;
    }
    if category.eq_ignore_ascii_case("tax") {
        out.push_str("tax");
        return;
    }
    if service.is_empty() {
        out.push_str("unknown");
        return;
    }
    for c in service.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
}

impl ParseRow for FocusRows {
    fn parse_row(
        &mut self,
        cols: &ColumnMap,
        record: &Record<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), Error> {
        let line = record.line;
        let s = &mut self.scratch;
        let file = s.source.file.as_str();
        let cost_col = match self.cost {
            CostColumn::Billed => BILLED,
            CostColumn::Effective => EFFECTIVE,
        };
        let amount = parse_decimal(file, line, cols.name(cost_col), cols.get(record, cost_col))?;
        let start = parse_time(file, line, cols.name(START), cols.get(record, START))?;
        let end = parse_time(file, line, cols.name(END), cols.get(record, END))?;
        if end <= start {
            return Err(Error::input(
                file,
                line,
                cols.name(END),
                format!("ChargePeriodEnd {end} is not after ChargePeriodStart {start}"),
            ));
        }
        let currency = cols.get(record, CURRENCY);
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(Error::input(
                file,
                line,
                cols.name(CURRENCY),
                format!("`{currency}` is not an ISO 4217 currency code"),
            ));
        }
        // The summable columns, in ChargeColumns' order; a null cost is the
        // allocated amount (what tally wrote for all of them before it read them).
        let mut costs = [amount; CHARGE_COST_COLUMNS.len()];
        let columns = [BILLED, EFFECTIVE, LIST_COST, CONTRACTED_COST];
        for (cost, column) in costs.iter_mut().zip(columns) {
            if column == cost_col {
                continue;
            }
            if let Some(value) = optional_decimal(file, line, cols, record, column)? {
                *cost = value;
            }
        }
        let pricing_quantity = optional_decimal(file, line, cols, record, PRICING_QTY)?;
        let consumed_quantity = optional_decimal(file, line, cols, record, CONSUMED_QTY)?;
        let (quantity, unit) = match (pricing_quantity, consumed_quantity) {
            (Some(q), _) => (q, cols.get(record, PRICING_UNIT)),
            (None, Some(q)) => (q, cols.get(record, CONSUMED_UNIT)),
            (None, None) => (Decimal::ZERO, ""),
        };
        let [_, _, list_cost, _] = costs;
        let price = match optional_decimal(file, line, cols, record, CONTRACTED_PRICE)? {
            Some(p) => p,
            None => optional_decimal(file, line, cols, record, LIST_PRICE)?.unwrap_or_default(),
        };
        let line_type = [DESCRIPTION, SKU_METER, SKU_ID]
            .iter()
            .map(|&c| cols.get(record, c))
            .find(|t| !t.is_empty())
            .unwrap_or("");
        s.source.line = line;
        set(&mut s.org_id, &self.org_id);
        let detail = cols.get(record, DETAIL_ID);
        if detail.is_empty() {
            use std::fmt::Write;
            s.id.clear();
            let _ = write!(s.id, "line-{line}");
        } else {
            set(&mut s.id, detail);
        }
        product_of(
            &mut s.product,
            cols.get(record, CATEGORY),
            cols.get(record, SERVICE),
        );
        set(&mut s.line_type, line_type);
        set(&mut s.resource_id, cols.get(record, RESOURCE));
        set(&mut s.environment_id, cols.get(record, SUB_ACCOUNT));
        s.start = start;
        s.end = end;
        s.amount = amount;
        s.original_amount = list_cost;
        s.quantity = quantity;
        set(&mut s.unit, unit);
        s.price = price;
        s.currency.clear();
        s.currency
            .extend(currency.chars().map(|c| c.to_ascii_uppercase()));
        s.active_fraction = None;
        set(&mut s.owner_of_record, cols.get(record, ALLOCATED_RESOURCE));
        set(&mut s.charge_category, cols.get(record, CATEGORY));
        set(&mut s.charge_frequency, cols.get(record, FREQUENCY));
        s.bill_columns.set(bill_values(cols, record));
        let columns = ChargeColumns {
            costs,
            quantities: [pricing_quantity, consumed_quantity],
        };
        // The scratch line's box is reused: no allocation per row.
        match &mut s.charge_columns {
            Some(kept) => **kept = columns,
            None => s.charge_columns = Some(Box::new(columns)),
        }
        sink.cost_line(s);
        Ok(())
    }
}

/// A row's values of the [`BILL_COLUMN_NAMES`]; a FOCUS 1.0–1.2 bill's
/// `ProviderName` stands for the service and host providers it has no columns for.
fn bill_values<'a, 'r>(
    cols: &'a ColumnMap,
    record: &'a Record<'r>,
) -> impl Iterator<Item = &'r str> + 'a {
    let provider = cols.get(record, PROVIDER);
    let columns = BILL_COLUMN_NAMES.iter().zip(BILL_FIRST..PROVIDER);
    columns.map(move |(name, column)| match cols.get(record, column) {
        "" if matches!(*name, "ServiceProviderName" | "HostProviderName") => provider,
        value => value,
    })
}

/// What [`read_focus`] collected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FocusRead {
    /// The charges read.
    pub lines: Vec<CostLine>,
    /// One error per refused row.
    pub rejected: Vec<Error>,
}

impl Sink for FocusRead {
    fn cost_line(&mut self, line: &CostLine) {
        self.lines.push(line.clone());
    }
    fn usage(&mut self, _sample: &crate::model::UsageSample) {}
    fn allocated(&mut self, _row: &AllocationRow) {}
    fn crosswalk(&mut self, _entry: &crate::model::CrosswalkEntry) {}
    fn reject(&mut self, error: Error) {
        self.rejected.push(error);
    }
}

/// Reads a whole FOCUS CSV in memory (tests, small files): the lines and the
/// rejected rows. `Err` when the header is unusable or the file is empty.
pub fn read_focus(
    input: &[u8],
    file: &str,
    org_id: &str,
    cost: CostColumn,
) -> Result<FocusRead, Error> {
    use super::Reader;
    let mut out = FocusRead::default();
    let mut r = reader_with(file, org_id, super::csv::DEFAULT_MAX_RECORD, cost);
    r.feed(input, &mut out)?;
    r.finish(&mut out)?;
    Ok(out)
}

// ---------------------------------------------------------------- writing

/// The columns [`write_focus`] writes, in order.
pub const WRITE_COLUMNS: [&str; 46] = [
    "ServiceProviderName",
    "HostProviderName",
    "InvoiceIssuerName",
    "InvoiceId",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "ListUnitPrice",
    "ContractedUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "BillingCurrency",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ServiceName",
    "ServiceCategory",
    "ServiceSubcategory",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "RegionId",
    "RegionName",
    "AvailabilityZone",
    "AllocatedMethodId",
    "AllocatedMethodDetails",
    "AllocatedResourceId",
    "AllocatedResourceName",
    "AllocatedTags",
    "Tags",
    "x_TallySource",
];

/// Options of [`write_focus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// `ServiceProviderName` / `HostProviderName` / `InvoiceIssuerName` for
    /// Confluent-style lines (WarpStream products are written as `WarpStream`).
    pub provider_name: String,
    /// `BillingAccountId` of rows with an empty `org_id`.
    pub billing_account_id: String,
    /// Decimal places of the split quantities.
    pub quantity_scale: u32,
    /// Decimal places of the amounts (the run's precision).
    pub precision: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            provider_name: "Confluent".to_string(),
            billing_account_id: "default".to_string(),
            quantity_scale: 6,
            precision: 2,
        }
    }
}

/// FOCUS `ServiceName`, `ServiceCategory`, `ServiceSubcategory` of a product.
fn service_of(product: &str) -> (String, &'static str, &'static str) {
    match product {
        "kafka" => ("Kafka".into(), "Integration", "Messaging"),
        "connect" => ("Connect".into(), "Integration", "Other (Integration)"),
        "schema_registry" => (
            "Schema Registry".into(),
            "Integration",
            "Other (Integration)",
        ),
        "cluster_linking" => ("Cluster Linking".into(), "Integration", "Messaging"),
        "flink" => ("Flink".into(), "Analytics", "Streaming Analytics"),
        "ksqldb" => ("ksqlDB".into(), "Analytics", "Streaming Analytics"),
        "tableflow" => ("Tableflow".into(), "Analytics", "Data Processing"),
        "audit_log" => ("Audit Log".into(), "Security", "Other (Security)"),
        "support" => ("Support".into(), "Other", "Other (Other)"),
        "" => ("Unknown".into(), "Other", "Other (Other)"),
        other => (other.replace('_', " "), "Other", "Other (Other)"),
    }
}

/// A unit in FOCUS UnitFormat: a time unit after `-` or `/` is capitalised (and
/// plural after `-`): `CKU-hour` → `CKU-Hours`, `GiB-minute` → `GiB-Minutes`,
/// `GB/month` → `GB/Month`; an empty unit is `Units`.
pub fn focus_unit(unit: &str) -> String {
    const TIME: [(&str, &str); 6] = [
        ("year", "Year"),
        ("month", "Month"),
        ("day", "Day"),
        ("hour", "Hour"),
        ("minute", "Minute"),
        ("second", "Second"),
    ];
    let unit = unit.trim();
    if unit.is_empty() {
        return "Units".to_string();
    }
    let Some(at) = unit.rfind(['-', '/']) else {
        return unit.to_string();
    };
    let (head, sep_tail) = unit.split_at(at);
    let mut chars = sep_tail.chars();
    let sep = chars.next().unwrap_or('-');
    let tail = chars.as_str().to_ascii_lowercase();
    let singular = tail.strip_suffix('s').unwrap_or(&tail);
    match TIME.iter().find(|(word, _)| *word == singular) {
        Some((_, name)) if sep == '-' => format!("{head}-{name}s"),
        Some((_, name)) => format!("{head}/{name}"),
        None => unit.to_string(),
    }
}

fn is_warpstream_product(line_type: &str) -> bool {
    super::warpstream::COVERED_PRODUCTS.contains(&line_type)
}

fn json_tags(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        super::exact_json::push_string(&mut out, k);
        out.push(':');
        super::exact_json::push_string(&mut out, v);
    }
    out.push('}');
    out
}

/// The written `Tags`: tally's `pairs`, then the bill's own tags when they are
/// a JSON object (written as the bill wrote them; a key of both is the bill's).
fn with_bill_tags(pairs: &[(&str, &str)], bill: Option<&str>) -> String {
    // Parsed with `exact_json`, which takes every JSON number (serde_json
    // refused `1e400`, past an f64, and the bill's tags were lost).
    let bill = bill.map(str::trim).and_then(|text| {
        let object = super::exact_json::parse(text, "").ok()?;
        let inner = text.strip_prefix('{')?.strip_suffix('}')?.trim();
        (!inner.is_empty()).then_some((object, inner))
    });
    let Some((object, inner)) = bill else {
        return json_tags(pairs);
    };
    let own: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(key, _)| object.get(key).is_none())
        .copied()
        .collect();
    let mut tags = json_tags(&own);
    tags.pop();
    if !own.is_empty() {
        tags.push(',');
    }
    tags.push_str(inner);
    tags.push('}');
    tags
}

fn decimal_text(d: Decimal) -> String {
    if d.is_zero() {
        "0".to_string()
    } else {
        d.normalize().to_string()
    }
}

/// An amount with at least `precision` decimals (`10` at 2 is `10.00`), the
/// run's precision whatever scale the input wrote it at; digits past it (an
/// export's row, read as it was written) are kept, trailing zeros are not.
fn amount_text(amount: Decimal, precision: u32) -> String {
    let mut amount = amount.normalize();
    if amount.scale() < precision {
        amount.rescale(precision);
    }
    amount.to_string()
}

/// One written row: an allocation row and, for a part of a charge read from
/// a FOCUS bill, its part of each of the charge's columns.
struct Part {
    row: AllocationRow,
    columns: Option<ChargeColumns>,
    /// What is left of a bill's unallocated row of a bucket once the charges
    /// took their parts back: tied to no charge.
    rest_of_bill: bool,
}

impl Part {
    /// The order of an origin's rows: by owner, source, method.
    fn order(&self) -> (&str, &RowSource, &str) {
        let line = &self.row.line;
        (
            self.row.owner_id.as_str(),
            &line.source,
            line.method.as_str(),
        )
    }

    /// A row with no columns of its own (not read from a FOCUS bill).
    fn of(row: AllocationRow) -> Part {
        Part {
            row,
            columns: None,
            rest_of_bill: false,
        }
    }
}

/// Writes allocation rows as a FOCUS 1.3 Cost and Usage CSV with split cost
/// allocation columns (see the module docs). `lines` are the cost lines the
/// rows were allocated from (matched by [`Source`](crate::model::Source), then
/// by resource and line type); they give units, prices and, for lines not read
/// from a FOCUS bill, quantities. `charges` are the lines read from FOCUS
/// bills as the engine allocated them ([`crate::report::Report::charges`]):
/// each is written with its own columns, split over its parts. Rows of both
/// levels are written, each level as its own split: pass rows that allocate
/// each line once (a report's do), or the bill is counted twice.
pub fn write_focus(
    rows: &[AllocationRow],
    lines: &[CostLine],
    charges: &[AllocatedCharge],
    options: &WriteOptions,
) -> Result<String, Error> {
    for (name, scale) in [
        ("precision", options.precision),
        ("quantity_scale", options.quantity_scale),
    ] {
        if scale > money::MAX_SCALE {
            return Err(Error::config(format!(
                "{name} must be at most {}",
                money::MAX_SCALE
            )));
        }
    }
    let cost_lines = CostLines::new(lines);

    let (charge_parts, other_rows) = split_charges(rows, charges, options)?;
    let split = attribute_remainders(&other_rows)?;
    let mut origins: BTreeMap<OriginKey, Vec<Part>> = BTreeMap::new();
    for part in charge_parts
        .into_iter()
        .chain(split.rows.into_iter().map(Part::of))
    {
        origins
            .entry(origin_key(&part.row.line))
            .or_default()
            .push(part);
    }
    let mut groups: Vec<Vec<Part>> = Vec::with_capacity(origins.len());
    for mut group in origins.into_values() {
        group.sort_by(|a, b| a.order().cmp(&b.order()));
        groups.push(group);
    }
    for left in split.unattributed {
        groups.push(vec![Part {
            rest_of_bill: true,
            ..Part::of(left)
        }]);
    }

    let mut out = String::with_capacity(256 * rows.len().saturating_add(1));
    out.push_str(&WRITE_COLUMNS.join(","));
    out.push('\n');
    for group in groups {
        let Some(first) = group.first() else {
            continue;
        };
        let origin = OriginCharge::of(&first.row.line);
        let costs: Vec<Decimal> = group.iter().map(|p| p.row.chargeback_cost).collect();
        // Ratios: each row's share of the origin's cost, summing to exactly 1.
        let ratios = split_by_cost(Decimal::ONE, &costs, money::MAX_SCALE)?;
        let lines: Vec<Option<&CostLine>> =
            group.iter().map(|p| cost_lines.of(&p.row.line)).collect();
        let quantities = quantities_by_cost(&group, options.quantity_scale)?;
        for (i, part) in group.iter().enumerate() {
            let ratio = ratios.get(i).copied().unwrap_or_default();
            let quantity = quantities.get(i).copied().unwrap_or_default();
            let line = lines.get(i).copied().flatten();
            write_row(&mut out, part, line, &origin, ratio, quantity, options);
        }
    }
    Ok(out)
}

/// `value` split over parts in proportion to their allocated `costs` (evenly
/// when they cost nothing) at `scale` places, exactly: the parts sum to
/// `value` rounded to `scale`.
fn split_by_cost(value: Decimal, costs: &[Decimal], scale: u32) -> Result<Vec<Decimal>, Error> {
    let by_cost = money::apportion(value, costs.iter().map(|c| c.abs()).enumerate(), scale)?;
    let parts = match by_cost {
        Some(parts) => parts,
        None => money::apportion(value, (0..costs.len()).map(|i| (i, Decimal::ONE)), scale)?
            .unwrap_or_default(),
    };
    Ok(parts.into_iter().map(|(_, part)| part).collect())
}

/// The parts of the charges read from FOCUS bills, each with its part of
/// every column of its charge — the charge's rows, else the part it left
/// unallocated, else (nothing to allocate: a zero allocated cost) the whole
/// of it — and the other rows, with each bill's unallocated row of a bucket
/// less what those charges left in it (they write it themselves).
fn split_charges(
    rows: &[AllocationRow],
    charges: &[AllocatedCharge],
    options: &WriteOptions,
) -> Result<(Vec<Part>, Vec<AllocationRow>), Error> {
    // A charge's rows share its line. (Two lines that only their charge
    // category tells apart, from one source line, are one charge here:
    // their columns add up, so nothing is counted twice.)
    let mut by_line: BTreeMap<(OriginKey, &RowSource), ChargeRows> = BTreeMap::new();
    let mut left_in_bill: BTreeMap<BillBucket<'_>, (Decimal, &AllocatedLine)> = BTreeMap::new();
    for charge in charges {
        let key = (origin_key(&charge.line), &charge.line.source);
        let slot = by_line.entry(key).or_insert_with(|| ChargeRows {
            line: charge.line.clone(),
            amount: Decimal::ZERO,
            unallocated: Decimal::ZERO,
            columns: ChargeColumns::default(),
            rows: Vec::new(),
        });
        slot.add(charge)?;
        if !charge.unallocated.is_zero() {
            let left = left_in_bill
                .entry(bill_bucket(&charge.line))
                .or_insert((Decimal::ZERO, &charge.line));
            left.0 = left
                .0
                .checked_add(charge.unallocated)
                .ok_or_else(|| Error::overflow("FOCUS unallocated parts"))?;
        }
    }
    let mut others = Vec::new();
    for row in rows {
        if is_bill_remainder(row) {
            // The charges take their parts out of their bill's row (once).
            match left_in_bill.remove(&bill_bucket(&row.line)) {
                None => others.push(row.clone()),
                Some((taken, _)) => {
                    let rest = row.chargeback_cost.checked_sub(taken);
                    let rest = rest.ok_or_else(|| Error::overflow("unallocated row"))?;
                    if !rest.is_zero() {
                        others.push(unallocated_rest(row, rest));
                    }
                }
            }
            continue;
        }
        match by_line.get_mut(&(origin_key(&row.line), &row.line.source)) {
            Some(charge) => charge.rows.push(row.clone()),
            None => others.push(row.clone()),
        }
    }
    // A bill whose unallocated parts cancel out has no row: what its other
    // lines left unallocated is then the opposite of the charges' parts.
    for (taken, line) in left_in_bill.into_values() {
        let rest = Decimal::ZERO
            .checked_sub(taken)
            .ok_or_else(|| Error::overflow("unallocated row"))?;
        if rest.is_zero() {
            continue;
        }
        others.push(AllocationRow {
            line: Arc::new(AllocatedLine {
                environment_id: Name::default(),
                resource_id: Name::default(),
                product: Name::default(),
                line_type: Name::default(),
                original_amount: rest,
                method: UNALLOCATED.into(),
                chain_step: 0,
                reason: "other_unallocated_lines".into(),
                ..line.clone()
            }),
            owner_id: UNALLOCATED.into(),
            chargeback_cost: rest,
            usage_share: Decimal::ZERO,
        });
    }
    let mut parts = Vec::new();
    for charge in by_line.into_values() {
        parts.extend(charge.into_parts(options)?);
    }
    Ok((parts, others))
}

/// A bill's unallocated row of a bucket holding `rest`.
fn unallocated_rest(row: &AllocationRow, rest: Decimal) -> AllocationRow {
    let mut line = (*row.line).clone();
    line.original_amount = rest;
    AllocationRow {
        line: Arc::new(line),
        chargeback_cost: rest,
        ..row.clone()
    }
}

/// A FOCUS charge and the rows it was split into.
struct ChargeRows {
    line: Arc<AllocatedLine>,
    amount: Decimal,
    unallocated: Decimal,
    columns: ChargeColumns,
    rows: Vec<AllocationRow>,
}

impl ChargeRows {
    /// Adds `charge` (one more line of the same source line and origin).
    fn add(&mut self, charge: &AllocatedCharge) -> Result<(), Error> {
        let overflow = || Error::overflow("FOCUS charge");
        self.amount = self
            .amount
            .checked_add(charge.line.original_amount)
            .ok_or_else(overflow)?;
        self.unallocated = self
            .unallocated
            .checked_add(charge.unallocated)
            .ok_or_else(overflow)?;
        self.columns = self
            .columns
            .checked_add(&charge.columns)
            .ok_or_else(overflow)?;
        Ok(())
    }

    /// The charge's parts, each with its part of every column.
    fn into_parts(self, options: &WriteOptions) -> Result<Vec<Part>, Error> {
        let mut rows = self.rows;
        let rest = |cost: Decimal| AllocationRow {
            line: self.line.clone(),
            owner_id: UNALLOCATED.into(),
            chargeback_cost: cost,
            usage_share: Decimal::ZERO,
        };
        if !self.unallocated.is_zero() {
            rows.push(rest(self.unallocated));
        }
        if rows.is_empty() {
            if !self.amount.is_zero() {
                return Err(Error::Reconciliation {
                    reason: format!(
                        "FOCUS charge `{}` on `{}` ({}:{}): its {} is in no row",
                        self.line.line_type,
                        self.line.resource_id,
                        self.line.source.file,
                        self.line.source.line,
                        self.amount
                    ),
                });
            }
            rows.push(rest(Decimal::ZERO));
        }
        let costs: Vec<Decimal> = rows.iter().map(|r| r.chargeback_cost).collect();
        let mut columns = vec![ChargeColumns::default(); rows.len()];
        for (i, total) in self.columns.costs.into_iter().enumerate() {
            let split = split_by_cost(total, &costs, options.precision)?;
            for (part, value) in columns.iter_mut().zip(split) {
                if let Some(cost) = part.costs.get_mut(i) {
                    *cost = value;
                }
            }
        }
        for (i, total) in self.columns.quantities.into_iter().enumerate() {
            // A null quantity stays null.
            let Some(total) = total else {
                continue;
            };
            let split = split_by_cost(total, &costs, options.quantity_scale)?;
            for (part, value) in columns.iter_mut().zip(split) {
                if let Some(quantity) = part.quantities.get_mut(i) {
                    *quantity = Some(value);
                }
            }
        }
        Ok(rows
            .into_iter()
            .zip(columns)
            .map(|(row, columns)| Part {
                columns: Some(columns),
                ..Part::of(row)
            })
            .collect())
    }
}

/// The quantities of the parts without columns of their own (lines not read
/// from a FOCUS bill): each its cost line's quantity in proportion to its
/// cost ([`split_quantity`]), re-apportioned so that they sum exactly to
/// their total at `scale` places; zero for the others.
fn quantities_by_cost(group: &[Part], scale: u32) -> Result<Vec<Decimal>, Error> {
    let mut raw = Vec::with_capacity(group.len());
    for (i, part) in group.iter().enumerate() {
        if part.columns.is_some() {
            continue;
        }
        raw.push((i, split_quantity(&part.row)?));
    }
    let total = money::checked_sum(raw.iter().map(|(_, q)| *q), "FOCUS origin quantity")?;
    let weights = raw.iter().map(|(i, q)| (*i, q.abs()));
    let mut quantities = vec![Decimal::ZERO; group.len()];
    for (i, quantity) in money::apportion(total, weights, scale)?.unwrap_or_default() {
        if let Some(slot) = quantities.get_mut(i) {
            *slot = quantity;
        }
    }
    Ok(quantities)
}

/// `row`'s part of its line's quantity in its bucket (the quantities of the
/// charges merged into the line, [`AllocatedLine::quantity`]): the quantity
/// times the row's share of the line's amount as the rows split it (rounded
/// to the output precision). Against the exact amount, a row that is a whole
/// line of 0.125856 written as 0.13 would carry 3% more than the line's
/// quantity. A line that costs nothing is split by usage share.
fn split_quantity(row: &AllocationRow) -> Result<Decimal, Error> {
    let line = &row.line;
    let quantity = if line.original_amount.is_zero() {
        line.quantity.checked_mul(row.usage_share)
    } else {
        line.quantity
            .checked_mul(row.chargeback_cost)
            .and_then(|q| q.checked_div(line.original_amount))
    };
    quantity.ok_or_else(|| Error::overflow("FOCUS split quantity"))
}

/// What the written rows of one origin charge share: its bucket, its bill's
/// own columns and its `Tags` (its rows share product, line type and bill
/// columns, [`OriginKey`]), made once rather than per row.
struct OriginCharge<'a> {
    bucket_start: Timestamp,
    bucket_end: Timestamp,
    billed_by: BillValues<'a>,
    tags: String,
}

impl<'a> OriginCharge<'a> {
    /// The origin of `line`'s rows.
    fn of(line: &'a AllocatedLine) -> Self {
        let billed_by = BillValues::of(&line.bill_columns);
        let tags = with_bill_tags(
            &[
                ("tally/product", &line.product),
                ("tally/line_type", &line.line_type),
            ],
            billed_by.get("Tags"),
        );
        OriginCharge {
            bucket_start: line.bucket_start,
            bucket_end: line.bucket_end,
            billed_by,
            tags,
        }
    }
}

/// `ChargeDescription`: the line type and product, and the resource when
/// there is one (`KafkaNumCKUs (kafka) on lkc-1`, `Support (support)`, `kafka
/// on lkc-1` for a charge its bill does not describe); `Unallocated (<reasons>)`
/// for what is left of a bill's unallocated row, which no charge took back.
fn charge_description(part: &Part) -> String {
    let line = &part.row.line;
    if part.rest_of_bill {
        return format!("Unallocated ({})", line.reason);
    }
    let mut description = if line.line_type.is_empty() {
        line.product.to_string()
    } else {
        format!("{} ({})", line.line_type, line.product)
    };
    if !line.resource_id.is_empty() {
        description.push_str(" on ");
        description.push_str(&line.resource_id);
    }
    description
}

fn write_row(
    out: &mut String,
    part: &Part,
    line: Option<&CostLine>,
    origin: &OriginCharge<'_>,
    ratio: Decimal,
    quantity: Decimal,
    options: &WriteOptions,
) {
    let row = &part.row;
    let (bucket_start, bucket_end) = (origin.bucket_start, origin.bucket_end);
    let provider = if is_warpstream_product(&row.line.line_type) {
        "WarpStream"
    } else {
        options.provider_name.as_str()
    };
    let account = if row.line.org_id.is_empty() {
        options.billing_account_id.as_str()
    } else {
        row.line.org_id.as_str()
    };
    let (charge_start, charge_end) = match line {
        Some(l) => (bucket_start.max(l.start), bucket_end.min(l.end)),
        None => (bucket_start, bucket_end),
    };
    let (charge_start, charge_end) = if charge_end > charge_start {
        (charge_start, charge_end)
    } else {
        (bucket_start, bucket_end)
    };
    let period_start = charge_start.floor(Granularity::Monthly);
    let mut period_end = period_start.next_bucket(Granularity::Monthly);
    while period_end < charge_end {
        period_end = period_end.next_bucket(Granularity::Monthly);
    }
    let credit = row.line.product == "credit"
        || row.line.original_amount.is_sign_negative() && !row.line.original_amount.is_zero();
    // The reader keeps a charge's Tax category as its product (see the table above).
    let tax = row.line.product == "tax";
    // A purchase or an adjustment keeps the bill's category and frequency
    // (never Usage-Based, which FOCUS reserves for usage).
    let billed_as =
        line.filter(|l| matches!(l.charge_category.as_str(), "Purchase" | "Adjustment"));
    let (category, frequency) = match (credit, tax, billed_as) {
        (true, _, _) => ("Credit", "One-Time"),
        (_, true, _) => ("Tax", "One-Time"),
        (_, _, Some(l)) => (
            l.charge_category.as_str(),
            match l.charge_frequency.as_str() {
                "One-Time" | "Recurring" => l.charge_frequency.as_str(),
                _ => "One-Time",
            },
        ),
        _ => ("Usage", "Usage-Based"),
    };
    // What the bill itself says of these columns wins over what tally
    // derives for a Confluent or WarpStream line.
    let bill = |column: &str| origin.billed_by.get(column);
    let (service, service_category, subcategory) = service_of(&row.line.product);
    let service = bill("ServiceName").unwrap_or(&service);
    let (service_category, subcategory) = match bill("ServiceCategory") {
        Some(category) => (
            category,
            bill("ServiceSubcategory").map_or_else(|| format!("Other ({category})"), String::from),
        ),
        None => (service_category, subcategory.to_string()),
    };
    let unallocated = row.owner_id == UNALLOCATED || row.owner_id.is_empty();
    let level = match row.line.level {
        EntityLevel::Principal => "principal",
        EntityLevel::Topic => "topic",
    };
    let usage = !credit && !tax;
    let amount = |value: Decimal| amount_text(value, options.precision);
    // Each column its charge's part, for a FOCUS bill's; else the allocated
    // cost in every one (and the quantity in proportion to it).
    let (costs, quantities) = match &part.columns {
        Some(columns) => (
            columns.costs.map(amount),
            columns
                .quantities
                .map(|q| q.filter(|_| usage).map(decimal_text)),
        ),
        None => {
            let cost = amount(row.chargeback_cost);
            // A purchase's cost is amortized over the charges it covers:
            // FOCUS wants its own EffectiveCost zero.
            let effective = match category {
                "Purchase" => amount(Decimal::ZERO),
                _ => cost.clone(),
            };
            let q = usage.then(|| decimal_text(quantity));
            (
                [cost.clone(), effective, cost.clone(), cost],
                [q.clone(), q],
            )
        }
    };
    let [billed_cost, effective_cost, list_cost, contracted_cost] = &costs;
    let [pricing_quantity, consumed_quantity] = &quantities;
    let unit = focus_unit(
        line.map(|l| l.unit.as_str())
            .unwrap_or(row.line.unit.as_str()),
    );
    // A unit only with its quantity.
    let unit_of = |quantity: &Option<String>| match quantity {
        Some(_) => unit.as_str(),
        None => "",
    };
    let price = line.map(|l| decimal_text(l.price));
    let sub_type = if row.line.environment_id.is_empty() {
        ""
    } else if provider == "WarpStream" {
        "Workspace"
    } else {
        "Environment"
    };
    let chain_step = row.line.chain_step.to_string();
    let mut details = String::from("{\"Elements\":[{\"AllocatedRatio\":");
    details.push_str(&decimal_text(ratio));
    details.push_str(",\"x_UsageShare\":");
    details.push_str(&decimal_text(row.usage_share));
    details.push_str(",\"x_ChainStep\":");
    details.push_str(&chain_step);
    details.push_str(",\"x_Reason\":");
    super::exact_json::push_string(&mut details, &row.line.reason);
    details.push_str("}]}");
    let allocated_tags = json_tags(&[
        ("tally/level", level),
        ("tally/method", &row.line.method),
        ("tally/reason", &row.line.reason),
    ]);
    let source = format!("{}:{}", row.line.source.file, row.line.source.line);
    let account_id = bill("BillingAccountId").unwrap_or(account);
    let fields: [&str; 46] = [
        bill("ServiceProviderName").unwrap_or(provider),
        bill("HostProviderName").unwrap_or(provider),
        bill("InvoiceIssuerName").unwrap_or(provider),
        bill("InvoiceId").unwrap_or(""),
        account_id,
        bill("BillingAccountName").unwrap_or(account_id),
        bill("BillingAccountType").unwrap_or(""),
        &row.line.environment_id,
        bill("SubAccountName").unwrap_or(&row.line.environment_id),
        bill("SubAccountType").unwrap_or(sub_type),
        &period_start.to_string(),
        &period_end.to_string(),
        &charge_start.to_string(),
        &charge_end.to_string(),
        category,
        "",
        &charge_description(part),
        frequency,
        billed_cost,
        effective_cost,
        list_cost,
        contracted_cost,
        if usage {
            price.as_deref().unwrap_or("")
        } else {
            ""
        },
        if usage {
            price.as_deref().unwrap_or("")
        } else {
            ""
        },
        if usage { "Standard" } else { "" },
        pricing_quantity.as_deref().unwrap_or(""),
        unit_of(pricing_quantity),
        &row.line.currency,
        consumed_quantity.as_deref().unwrap_or(""),
        unit_of(consumed_quantity),
        service,
        service_category,
        &subcategory,
        &row.line.resource_id,
        bill("ResourceName").unwrap_or(&row.line.resource_id),
        bill("ResourceType").unwrap_or(""),
        bill("RegionId").unwrap_or(""),
        bill("RegionName").unwrap_or(""),
        bill("AvailabilityZone").unwrap_or(""),
        &format!("tally:{}", row.line.method),
        &details,
        if unallocated { "" } else { &row.owner_id },
        if unallocated { "" } else { &row.owner_id },
        &allocated_tags,
        &origin.tags,
        &source,
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_csv_field(out, field);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::with_bill_tags;

    #[test]
    fn the_bills_tags_follow_tallys_as_written() {
        let own = [("tally/product", "kafka"), ("tally/line_type", "KafkaBase")];
        let tally = r#"{"tally/product":"kafka","tally/line_type":"KafkaBase""#;
        for (bill, written) in [
            (None, format!("{tally}}}")),
            (Some(""), format!("{tally}}}")),
            (Some("{}"), format!("{tally}}}")),
            // Not a JSON object: only tally's own.
            (Some("team=payments"), format!("{tally}}}")),
            (Some(r#"["a"]"#), format!("{tally}}}")),
            // As the bill wrote them (a number stays a number, spacing kept).
            (
                Some(r#" {"Owner": "team-data", "Size":500} "#),
                format!(r#"{tally},"Owner": "team-data", "Size":500}}"#),
            ),
            // A number past f64's range is a JSON number all the same.
            (
                Some(r#"{"Size":1e400}"#),
                format!(r#"{tally},"Size":1e400}}"#),
            ),
            // A key of both is the bill's alone.
            (
                Some(r#"{"tally/product":"billing"}"#),
                r#"{"tally/line_type":"KafkaBase","tally/product":"billing"}"#.to_string(),
            ),
        ] {
            assert_eq!(with_bill_tags(&own, bill), written, "{bill:?}");
        }
    }
}
