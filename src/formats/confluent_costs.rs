//! Confluent Cloud Billing API costs (`/billing/v1/costs`): the per-resource cost
//! lines a customer-run chargeback starts from, as the API's JSON list
//! (`{"data":[{...}, ...]}`) or as a CSV with the same columns.
//!
//! Fields (seeds/README.md): `id, amount, original_amount, discount_amount, price,
//! quantity, unit, product, line_type, network_access_type, description,
//! resource{id, display_name, environment{id}}, start_date, end_date, granularity`.
//! tally adds optional `owner_of_record` (e.g. the Kafka cluster a Connect cluster
//! belongs to), `active_fraction`, `currency` and `org_id` columns.
//!
//! The JSON reader is streaming too: [`JsonItems`] splits the `data` array into
//! its items, so only one item (bounded by the record limit; a longer one is
//! refused and skipped) is held at a time; each is parsed with
//! [`super::exact_json`], so a number keeps every digit it was written with
//! (`"quantity": 12345678901234567.891` is that quantity, not the nearest
//! `f64`) and goes through the readers' one spelling of numbers. A field may
//! be a string or a number; absent or `null` it is empty; of any other JSON
//! type (`true`, an object, an array) the item is refused, naming the field.
//! Of duplicate keys the first is read, as in the other JSON readers.
//!
//! A bad item is rejected alone, with its field as the column
//! (`data[3].amount`, `data[3].resource.id`; `data[3]` for invalid JSON) and the
//! line of the error: where the JSON breaks, or the line of the field's value
//! (the item's first line when the field is absent). The cost line's own
//! line is the item's first.

use super::csv::{ColumnMap, ColumnSpec, CsvReader, ParseRow, Record};
use super::exact_json::{self, Kind, Value};
use super::json_items::{Event, JsonItems, Step};
use super::{parse_decimal, parse_time, set, Reader, Sink};
use crate::error::Error;
use crate::model::{CostLine, Source};
use crate::time::Timestamp;
use rust_decimal::Decimal;

const ID: usize = 0;
const AMOUNT: usize = 1;
const ORIGINAL: usize = 2;
const PRICE: usize = 3;
const QUANTITY: usize = 4;
const UNIT: usize = 5;
const PRODUCT: usize = 6;
const LINE_TYPE: usize = 7;
const RESOURCE: usize = 8;
const ENVIRONMENT: usize = 9;
const START: usize = 10;
const END: usize = 11;
const OWNER: usize = 12;
const ACTIVE: usize = 13;
const CURRENCY: usize = 14;
const ORG: usize = 15;

/// The CSV's columns and the header names accepted for each.
pub const COLUMNS: &[ColumnSpec] = &[
    ColumnSpec::optional("id", &["id", "line_id"]),
    ColumnSpec::required("amount", &["amount", "cost"]),
    ColumnSpec::optional("original_amount", &["original_amount"]),
    ColumnSpec::optional("price", &["price", "unit_price"]),
    ColumnSpec::optional("quantity", &["quantity"]),
    ColumnSpec::optional("unit", &["unit"]),
    ColumnSpec::required("product", &["product"]),
    ColumnSpec::required("line_type", &["line_type", "metric", "billable_metric"]),
    ColumnSpec::required(
        "resource_id",
        &["resource_id", "resource", "resource_id_", "resource_id_id"],
    ),
    ColumnSpec::optional(
        "environment_id",
        &["environment_id", "environment", "resource_environment_id"],
    ),
    ColumnSpec::required(
        "start_date",
        &["start_date", "start", "interval_start", "timestamp"],
    ),
    ColumnSpec::optional("end_date", &["end_date", "end", "interval_end"]),
    ColumnSpec::optional(
        "owner_of_record",
        &["owner_of_record", "parent_resource_id", "kafka_cluster_id"],
    ),
    ColumnSpec::optional("active_fraction", &["active_fraction"]),
    ColumnSpec::optional("currency", &["currency"]),
    ColumnSpec::optional("org_id", &["org_id", "organization_id"]),
];

/// A blank cost line with `file` as its source (the readers' scratch record).
pub fn empty_line(file: &str) -> CostLine {
    CostLine {
        source: Source {
            file: file.to_string(),
            line: 0,
        },
        ..CostLine::default()
    }
}

/// The text fields of one cost line, however the input spells them.
#[derive(Debug, Default)]
pub struct LineFields<'a> {
    /// Provider line id.
    pub id: &'a str,
    /// Amount (required).
    pub amount: &'a str,
    /// Amount before discounts.
    pub original_amount: &'a str,
    /// Unit price.
    pub price: &'a str,
    /// Quantity.
    pub quantity: &'a str,
    /// Unit.
    pub unit: &'a str,
    /// Product (required).
    pub product: &'a str,
    /// Line type (required).
    pub line_type: &'a str,
    /// Resource id.
    pub resource_id: &'a str,
    /// Environment id.
    pub environment_id: &'a str,
    /// Start (required).
    pub start: &'a str,
    /// End (defaults to start + 1 day, the API's granularity).
    pub end: &'a str,
    /// Owner of record.
    pub owner_of_record: &'a str,
    /// Active fraction.
    pub active_fraction: &'a str,
    /// Currency.
    pub currency: &'a str,
    /// Organization.
    pub org_id: &'a str,
}

/// Fills `s` from `f`; an error names the field as [`LineFields`] does (the
/// JSON reader makes it the item's member path): nothing is built per field
/// unless it fails.
pub fn fill_line(s: &mut CostLine, org: &str, line: u64, f: &LineFields<'_>) -> Result<(), Error> {
    let file = s.source.file.as_str();
    let opt = |name: &str, text: &str| -> Result<Decimal, Error> {
        if text.is_empty() {
            Ok(Decimal::ZERO)
        } else {
            parse_decimal(file, line, name, text)
        }
    };
    let amount = parse_decimal(file, line, "amount", f.amount)?;
    let original = if f.original_amount.is_empty() {
        amount
    } else {
        opt("original_amount", f.original_amount)?
    };
    let start = parse_time(file, line, "start_date", f.start)?;
    let end = if f.end.is_empty() {
        Timestamp(start.0.saturating_add(86_400))
    } else {
        parse_time(file, line, "end_date", f.end)?
    };
    if end <= start {
        return Err(Error::input(
            file,
            line,
            "end_date",
            "end_date is not after start_date",
        ));
    }
    if f.product.is_empty() {
        return Err(Error::input(file, line, "product", "empty; required"));
    }
    let active_fraction = if f.active_fraction.is_empty() {
        None
    } else {
        let v = parse_decimal(file, line, "active_fraction", f.active_fraction)?;
        if v.is_sign_negative() || v > Decimal::ONE {
            return Err(Error::input(
                file,
                line,
                "active_fraction",
                format!("{v} is not between 0 and 1"),
            ));
        }
        Some(v)
    };
    s.source.line = line;
    s.amount = amount;
    s.original_amount = original;
    s.price = opt("price", f.price)?;
    s.quantity = opt("quantity", f.quantity)?;
    s.start = start;
    s.end = end;
    s.active_fraction = active_fraction;
    set(
        &mut s.org_id,
        if f.org_id.is_empty() { org } else { f.org_id },
    );
    set(&mut s.id, f.id);
    set(&mut s.unit, f.unit);
    set(&mut s.product, &f.product.to_ascii_lowercase());
    set(&mut s.line_type, f.line_type);
    set(&mut s.resource_id, f.resource_id);
    set(&mut s.environment_id, f.environment_id);
    set(&mut s.owner_of_record, f.owner_of_record);
    set(
        &mut s.currency,
        if f.currency.is_empty() {
            "USD"
        } else {
            f.currency
        },
    );
    Ok(())
}

/// Streaming reader of the costs CSV.
pub type CostsCsvReader = CsvReader<CostRows>;

/// The row parser of [`CostsCsvReader`].
pub struct CostRows {
    org_id: String,
    scratch: CostLine,
}

/// A costs CSV reader for `file`.
pub fn csv_reader(file: &str, org_id: &str, max_record: usize) -> CostsCsvReader {
    CsvReader::new(
        file,
        COLUMNS,
        max_record,
        CostRows {
            org_id: org_id.to_string(),
            scratch: empty_line(file),
        },
    )
}

impl ParseRow for CostRows {
    fn parse_row(
        &mut self,
        cols: &ColumnMap,
        r: &Record<'_>,
        sink: &mut dyn Sink,
    ) -> Result<(), Error> {
        let g = |i| cols.get(r, i);
        let fields = LineFields {
            id: g(ID),
            amount: g(AMOUNT),
            original_amount: g(ORIGINAL),
            price: g(PRICE),
            quantity: g(QUANTITY),
            unit: g(UNIT),
            product: g(PRODUCT),
            line_type: g(LINE_TYPE),
            resource_id: g(RESOURCE),
            environment_id: g(ENVIRONMENT),
            start: g(START),
            end: g(END),
            owner_of_record: g(OWNER),
            active_fraction: g(ACTIVE),
            currency: g(CURRENCY),
            org_id: g(ORG),
        };
        fill_line(&mut self.scratch, &self.org_id, r.line, &fields)?;
        sink.cost_line(&self.scratch);
        Ok(())
    }
}

/// Streaming reader of the Billing API's JSON.
pub struct JsonReader {
    items: JsonItems,
    org_id: String,
    scratch: CostLine,
}

impl JsonReader {
    /// A reader for `file`, lines tagged with `org_id` unless an item has its own.
    pub fn new(file: &str, org_id: &str, max_record: usize) -> Self {
        JsonReader {
            items: JsonItems::new(file, &["data"], max_record),
            org_id: org_id.to_string(),
            scratch: empty_line(file),
        }
    }
}

/// Where each field of [`LineFields`] is in a Billing API item, in its order.
const ITEM_FIELDS: [&[&str]; 16] = [
    &["id"],
    &["amount"],
    &["original_amount"],
    &["price"],
    &["quantity"],
    &["unit"],
    &["product"],
    &["line_type"],
    &["resource", "id"],
    &["resource", "environment", "id"],
    &["start_date"],
    &["end_date"],
    &["owner_of_record"],
    &["active_fraction"],
    &["currency"],
    &["org_id"],
];

/// `data[3].resource.id`: the field at `path` in item `index`.
fn item_column(index: u64, path: &[&str]) -> String {
    let mut column = format!("data[{index}]");
    for key in path {
        column.push('.');
        column.push_str(key);
    }
    column
}

/// The text of the field at `path` in `item` (element `index` of `data`): a
/// string as it is, a number as written, every digit kept; "" when the field,
/// or an object on its way, is absent or null. Any other JSON type is refused,
/// naming the field and the line of its value: a `true` or an object where a
/// string or number belongs is no empty field.
fn field_text<'v>(
    file: &str,
    index: u64,
    item: &'v Value,
    path: &[&str],
) -> Result<&'v str, Error> {
    let mut value = item;
    for (depth, key) in path.iter().enumerate() {
        match &value.kind {
            Kind::Object(_) => {}
            Kind::Null => return Ok(""),
            other => {
                return Err(Error::input(
                    file,
                    value.line,
                    &item_column(index, path.get(..depth).unwrap_or_default()),
                    format!("expected an object, found {}", other.name()),
                ))
            }
        }
        match value.get(key) {
            Some(member) => value = member,
            None => return Ok(""),
        }
    }
    match &value.kind {
        Kind::Null => Ok(""),
        Kind::String(text) | Kind::Number(text) => Ok(text),
        other => Err(Error::input(
            file,
            value.line,
            &item_column(index, path),
            format!("expected a string or a number, found {}", other.name()),
        )),
    }
}

/// Reads `item`, element `index` (0-based) of `data`, which starts on `line`.
fn parse_item(
    scratch: &mut CostLine,
    org: &str,
    index: u64,
    line: u64,
    item: &str,
) -> Result<(), Error> {
    let file = scratch.source.file.clone();
    let value = exact_json::parse_at(item, &file, line).map_err(|mut e| {
        // The error names its line; the item is the column.
        if let Error::Input { at, .. } = &mut e {
            at.column = item_column(index, &[]);
        }
        e
    })?;
    if !matches!(value.kind, Kind::Object(_)) {
        return Err(Error::input(
            &file,
            line,
            &item_column(index, &[]),
            format!("expected an object, found {}", value.kind.name()),
        ));
    }
    let mut texts = [""; ITEM_FIELDS.len()];
    for (text, path) in texts.iter_mut().zip(ITEM_FIELDS) {
        *text = field_text(&file, index, &value, path)?;
    }
    let [id, amount, original_amount, price, quantity, unit, product, line_type, resource_id, environment_id, start, end, owner_of_record, active_fraction, currency, org_id] =
        texts;
    let fields = LineFields {
        id,
        amount,
        original_amount,
        price,
        quantity,
        unit,
        product,
        line_type,
        resource_id,
        environment_id,
        start,
        end,
        owner_of_record,
        active_fraction,
        currency,
        org_id,
    };
    fill_line(scratch, org, line, &fields).map_err(|mut e| {
        // The fields `fill_line` names are top-level members: the error takes
        // the line of the member's value (the item's first when it is absent)
        // and its path in the document.
        if let Error::Input { at, .. } = &mut e {
            if let Some(member) = value.get(&at.column) {
                at.line = member.line;
            }
            at.column = format!("{}.{}", item_column(index, &[]), at.column);
        }
        e
    })
}

impl Reader for JsonReader {
    fn feed(&mut self, chunk: &[u8], sink: &mut dyn Sink) -> Result<(), Error> {
        let JsonReader {
            items,
            org_id,
            scratch,
        } = self;
        items.feed(chunk, &mut |event| {
            if let Event::Item { path, line, text } = event {
                let index = match path.last() {
                    Some(Step::Index(i)) => *i,
                    _ => 0,
                };
                match text.and_then(|text| parse_item(scratch, org_id, index, line, text)) {
                    Ok(()) => sink.cost_line(scratch),
                    Err(error) => sink.reject(error),
                }
            }
            Ok(())
        })
    }

    fn finish(&mut self, _sink: &mut dyn Sink) -> Result<(), Error> {
        self.items.finish()
    }
}
