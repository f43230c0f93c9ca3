//! The session's options as the page sends them: a JSON object.
//!
//! Each member is read on its own, so that a refused one is named by its path
//! in the JSON (`filters.min_total`) with the reason, as the command line names
//! the flag it refuses; the page adds its control's label. The document is read
//! with [`crate::formats::exact_json`], so an amount given as a JSON number
//! keeps its digits (`0.10` is not a binary float first) and `1e400` is refused
//! as that option's value, not as the whole document.

use super::{parse_range, Options};
use crate::error::Error;
use crate::formats::exact_json::{self, Kind, Value};
use crate::report::Filters;
use rust_decimal::Decimal;
use serde::de::value::{Error as ValueError, StrDeserializer};
use serde::de::DeserializeOwned;
use std::str::FromStr;

impl Options {
    /// Reads the options JSON: an object whose members are this struct's
    /// fields (`filters` an object of [`Filters`]' fields, `range` two dates
    /// or null, the amounts a number or its text); a member left out keeps its
    /// default. A refused member is an [`Error::InvalidValue`] naming its path.
    pub fn from_json(text: &str) -> Result<Options, Error> {
        let json = exact_json::parse(text, "options")?;
        let mut options = Options::default();
        for (name, value) in members("", &json)? {
            let path = name.as_str();
            match path {
                "granularity" => options.granularity = variant(path, value)?,
                "range" => options.range = range(path, value)?,
                "precision" => options.precision = whole_number(path, value)?,
                "unallocated_policy" => options.unallocated_policy = variant(path, value)?,
                "shared_cost_center" => options.shared_cost_center = string(path, value)?,
                "invoice_subtotal" => options.invoice_subtotal = optional_amount(path, value)?,
                "entity_level" => options.entity_level = variant(path, value)?,
                "filters" => options.filters = filters(value)?,
                "max_rejections" => options.max_rejections = whole_number(path, value)?,
                "max_record_bytes" => options.max_record_bytes = whole_number(path, value)?,
                "focus_cost" => options.focus_cost = variant(path, value)?,
                _ => return Err(unknown(path, OPTIONS)),
            }
        }
        Ok(options)
    }
}

/// The members [`Options::from_json`] reads, for the error naming an unknown one.
const OPTIONS: &str = "granularity, range, precision, unallocated_policy, shared_cost_center, \
invoice_subtotal, entity_level, filters, max_rejections, max_record_bytes, focus_cost";
/// The members of `filters`.
const FILTERS: &str = "entity_kind, min_total, max_entities_per_cluster";

fn filters(json: &Value) -> Result<Filters, Error> {
    let mut filters = Filters::default();
    for (name, value) in members("filters", json)? {
        let path = format!("filters.{name}");
        match name.as_str() {
            "entity_kind" => {
                filters.entity_kind = if value.is_null() {
                    None
                } else {
                    Some(variant(&path, value)?)
                }
            }
            "min_total" => filters.min_total = optional_amount(&path, value)?,
            "max_entities_per_cluster" => {
                filters.max_entities_per_cluster = whole_number(&path, value)?
            }
            _ => return Err(unknown(&path, FILTERS)),
        }
    }
    Ok(filters)
}

/// The members of an object; `path` names it when it is something else.
fn members<'a>(path: &str, json: &'a Value) -> Result<&'a [(String, Value)], Error> {
    match &json.kind {
        Kind::Object(members) => Ok(members),
        other if path.is_empty() => Err(Error::config(format!(
            "options: expected a JSON object, found {}",
            other.name()
        ))),
        other => Err(Error::invalid_value(
            path,
            format!("expected an object, found {}", other.name()),
        )),
    }
}

fn unknown(path: &str, known: &str) -> Error {
    Error::invalid_value(path, format!("unknown option (known: {known})"))
}

/// The text of a string or a number, as written.
fn scalar<'a>(path: &str, value: &'a Value, expected: &str) -> Result<&'a str, Error> {
    match &value.kind {
        Kind::String(text) | Kind::Number(text) => Ok(text),
        other => Err(Error::invalid_value(
            path,
            format!("expected {expected}, found {}", other.name()),
        )),
    }
}

fn string(path: &str, value: &Value) -> Result<String, Error> {
    match &value.kind {
        Kind::String(text) => Ok(text.clone()),
        other => Err(Error::invalid_value(
            path,
            format!("expected a string, found {}", other.name()),
        )),
    }
}

/// One of an enum's names, in the spelling its serde derive gives it
/// (`weekly`, `pro_rata`); the error lists them.
fn variant<T: DeserializeOwned>(path: &str, value: &Value) -> Result<T, Error> {
    let name = scalar(path, value, "a name")?;
    T::deserialize(StrDeserializer::<ValueError>::new(name))
        .map_err(|e| Error::invalid_value(path, e.to_string()))
}

/// A count: digits only, as a JSON number or its text (the command line
/// reads the same digits from its flags).
fn whole_number<T: FromStr>(path: &str, value: &Value) -> Result<T, Error> {
    let text = scalar(path, value, "a whole number")?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid_value(
            path,
            format!("`{text}` is not a whole number"),
        ));
    }
    text.parse()
        .map_err(|_| Error::invalid_value(path, format!("`{text}` is too large")))
}

/// An amount as a JSON number or its text, or null for none.
fn optional_amount(path: &str, value: &Value) -> Result<Option<Decimal>, Error> {
    if value.is_null() {
        return Ok(None);
    }
    crate::money::parse_amount(path, scalar(path, value, "an amount")?).map(Some)
}

/// `["2026-04-01", "2026-05-01"]`, or null for none.
fn range(
    path: &str,
    value: &Value,
) -> Result<Option<(crate::time::Timestamp, crate::time::Timestamp)>, Error> {
    match &value.kind {
        Kind::Null => Ok(None),
        Kind::Array(ends) => match ends.as_slice() {
            [from, to] => {
                let (from, to) = (string(path, from)?, string(path, to)?);
                parse_range(&from, &to).map(Some)
            }
            _ => Err(Error::invalid_value(
                path,
                format!("expected two dates, found {} values", ends.len()),
            )),
        },
        other => Err(Error::invalid_value(
            path,
            format!("expected two dates, found {}", other.name()),
        )),
    }
}
