//! Allocation rows grouped by the charge they came from, for the writers that
//! express an allocation per original charge (FOCUS's split cost allocation,
//! WarpStream's line items).
//!
//! The engine leaves one `unallocated` row per bucket and bill, with no
//! resource or line type; both writers need it split back over the charges it
//! came from ([`attribute_remainders`]), and both look up the cost line a row
//! was allocated from for its quantity, unit and price (`CostLines`).

use crate::allocate::UNALLOCATED;
use crate::error::Error;
use crate::model::{
    AllocatedLine, AllocationRow, BillColumns, CostLine, EntityLevel, Name, RowSource,
};
use crate::money;
use crate::time::Timestamp;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One origin charge: a resource's line type in one bucket, at one level, as
/// one bill describes it (bucket start, end, level, org, environment,
/// resource, product, line type, bill columns: charges with different tags or
/// on two invoices are two).
pub(crate) type OriginKey = (
    Timestamp,
    Timestamp,
    EntityLevel,
    Name,
    Name,
    Name,
    Name,
    Name,
    Name,
);

/// The origin charge of `line`'s rows.
pub(crate) fn origin_key(line: &AllocatedLine) -> OriginKey {
    (
        line.bucket_start,
        line.bucket_end,
        line.level,
        line.org_id.clone(),
        line.environment_id.clone(),
        line.resource_id.clone(),
        line.product.clone(),
        line.line_type.clone(),
        line.bill_columns.clone(),
    )
}

/// Whether `row` is the engine's unallocated row of a bucket and bill (no
/// resource, no line type), as opposed to an origin's own unallocated part.
pub(crate) fn is_bill_remainder(row: &AllocationRow) -> bool {
    row.owner_id == UNALLOCATED && row.line.resource_id.is_empty() && row.line.line_type.is_empty()
}

/// The bill an unallocated row of a bucket is for: bucket start, end,
/// organization and [`BillColumns::bill_key`].
pub(crate) type BillBucket<'l> = (Timestamp, Timestamp, Name, &'l str);

/// The bill and bucket of `line`.
pub(crate) fn bill_bucket(line: &AllocatedLine) -> BillBucket<'_> {
    (
        line.bucket_start,
        line.bucket_end,
        line.org_id.clone(),
        BillColumns::bill_key(line.bill_columns.as_str()),
    )
}

/// Rows with each origin charge's unallocated remainder made explicit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Remainders {
    /// The input rows (without the per-bucket unallocated rows), plus one
    /// `unallocated` row inside each origin whose allocated rows fall short of
    /// its amount.
    pub rows: Vec<AllocationRow>,
    /// What is left of each unallocated row of a bucket and bill once the
    /// remainders are taken out (credits, lines with no usage at all): not
    /// tied to a resource.
    pub unattributed: Vec<AllocationRow>,
}

/// Splits the engine's one `unallocated` row per bucket and bill (no resource,
/// no line type) back over the origin charges it came from, each from its own
/// bill's row.
///
/// An origin charge is a resource's line type in one bucket at one level, as
/// one bill describes it (its bill columns: charges with different tags or on
/// two invoices are two); its amount is the sum of `original_amount` over the
/// distinct cost lines ([`Source`](crate::model::Source)s) that fed it. When
/// its rows sum to less (part of the line found no owner), the difference is
/// taken out of the unallocated row of its bucket and bill and becomes an
/// `unallocated` row of the origin (same resource, line type and level). Money
/// only moves between rows: the output sums exactly to the input. Without
/// such an unallocated row nothing is moved.
pub fn attribute_remainders(rows: &[AllocationRow]) -> Result<Remainders, Error> {
    let mut pools: BTreeMap<BillBucket<'_>, (Decimal, AllocationRow)> = BTreeMap::new();
    for row in rows.iter().filter(|r| is_bill_remainder(r)) {
        let key = bill_bucket(&row.line);
        match pools.get_mut(&key) {
            Some((total, _)) => {
                *total = total
                    .checked_add(row.chargeback_cost)
                    .ok_or_else(|| Error::overflow("unallocated pool"))?;
            }
            None => {
                pools.insert(key, (row.chargeback_cost, row.clone()));
            }
        }
    }
    let mut origins: BTreeMap<OriginKey, Vec<&AllocationRow>> = BTreeMap::new();
    for row in rows.iter().filter(|r| !is_bill_remainder(r)) {
        origins.entry(origin_key(&row.line)).or_default().push(row);
    }
    let mut out = Remainders::default();
    for group in origins.into_values() {
        let mut line_amounts: BTreeMap<&RowSource, Decimal> = BTreeMap::new();
        for r in &group {
            line_amounts
                .entry(&r.line.source)
                .or_insert(r.line.original_amount);
        }
        let origin_amount = money::checked_sum(line_amounts.values().copied(), "origin amount")?;
        let allocated = money::checked_sum(group.iter().map(|r| r.chargeback_cost), "origin")?;
        let remainder = origin_amount
            .checked_sub(allocated)
            .ok_or_else(|| Error::overflow("origin remainder"))?;
        let has_unallocated = group.iter().any(|r| r.owner_id == UNALLOCATED);
        out.rows.extend(group.iter().map(|r| (*r).clone()));
        let Some(first) = group.first() else {
            continue;
        };
        if remainder.is_zero() || has_unallocated {
            continue;
        }
        if let Some((pool, template)) = pools.get_mut(&bill_bucket(&first.line)) {
            let line = AllocatedLine {
                level: first.line.level,
                environment_id: first.line.environment_id.clone(),
                resource_id: first.line.resource_id.clone(),
                product: first.line.product.clone(),
                line_type: first.line.line_type.clone(),
                unit: first.line.unit.clone(),
                original_amount: first.line.original_amount,
                quantity: first.line.quantity,
                source: first.line.source.clone(),
                bill_columns: first.line.bill_columns.clone(),
                ..(*template.line).clone()
            };
            let rest = AllocationRow {
                line: Arc::new(line),
                chargeback_cost: remainder,
                ..template.clone()
            };
            *pool = pool
                .checked_sub(remainder)
                .ok_or_else(|| Error::overflow("unallocated pool"))?;
            out.rows.push(rest);
        }
    }
    for (left, template) in pools.into_values() {
        if !left.is_zero() {
            let line = AllocatedLine {
                original_amount: left,
                quantity: Decimal::ZERO,
                ..(*template.line).clone()
            };
            out.unattributed.push(AllocationRow {
                line: Arc::new(line),
                chargeback_cost: left,
                ..template
            });
        }
    }
    Ok(out)
}

/// The cost lines rows were allocated from, found by a row's line: by its
/// source when that line has the row's resource and line type, else by
/// resource and line type.
pub(crate) struct CostLines<'a> {
    by_source: BTreeMap<(&'a str, u64), &'a CostLine>,
    by_key: BTreeMap<(&'a str, &'a str), &'a CostLine>,
}

impl<'a> CostLines<'a> {
    /// Indexes `lines`.
    pub(crate) fn new(lines: &'a [CostLine]) -> Self {
        CostLines {
            by_source: lines
                .iter()
                .map(|l| ((l.source.file.as_str(), l.source.line), l))
                .collect(),
            by_key: lines
                .iter()
                .map(|l| ((l.resource_id.as_str(), l.line_type.as_str()), l))
                .collect(),
        }
    }

    /// The cost line `line`'s rows came from, if among them.
    pub(crate) fn of(&self, line: &AllocatedLine) -> Option<&'a CostLine> {
        self.by_source
            .get(&(line.source.file.as_str(), line.source.line))
            .filter(|l| l.resource_id == line.resource_id && l.line_type == line.line_type)
            .or_else(|| {
                self.by_key
                    .get(&(line.resource_id.as_str(), line.line_type.as_str()))
            })
            .copied()
    }
}
