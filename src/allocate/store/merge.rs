//! Folding the store of one part of a file into the store of the whole, with
//! the result a serial read would have given (see [`crate::session::parallel`]).
//!
//! ## Design
//!
//! A part's [`Store`] has its own [`Interner`], so
//! [`Store::merge`] first maps each of the part's ids to the whole's, interning
//! the part's strings in the part's order of first sight: merging parts in file
//! order therefore gives every string the id a serial read gives it. Amounts
//! and quantities are summed, usage gauges take the maximum (the later of equal
//! values, as [`Ord::max`] does when a serial read meets them), row counts add
//! up, and a slot keeps the smallest (line, file name) as its provenance after
//! the part's lines are shifted by the part's line offset.
//!
//! Sums of `Decimal`s are exact — and so independent of the order of the terms —
//! only while no result needs more than 28 digits at the largest scale of its
//! terms; past that `rust_decimal` rounds or overflows, and a parallel read
//! could differ from a serial one in a last digit or in a rejected row. [`Terms`]
//! records the largest term and scale a part added, and
//! [`Store::sums_stay_exact`] checks, before anything is merged, that every sum
//! a serial read could form stays within the exact range: the caller reads the
//! file serially otherwise.

use super::{Amount, Interner, Store, Sym};
use crate::error::Error;
use rust_decimal::Decimal;

/// The largest digits-at-scale a `Decimal` holds exactly: `10^28 < 2^96`.
const EXACT_DIGITS: u32 = 28;

/// What a part added to sums: how many rows, the largest absolute value and
/// the largest scale of their terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Terms {
    /// Rows that added terms (each adds at most one term to any one sum).
    pub rows: u64,
    /// The largest absolute value of a term.
    pub largest: Decimal,
    /// The largest scale of a term.
    pub scale: u32,
}

impl Terms {
    /// Notes one row's terms.
    pub fn row(&mut self, values: &[Decimal]) {
        self.rows = self.rows.saturating_add(1);
        for value in values {
            let magnitude = value.abs();
            if magnitude > self.largest {
                self.largest = magnitude;
            }
            self.scale = self.scale.max(value.scale());
        }
    }

    /// Notes terms of up to `scale` decimal places (a usage sample split over
    /// buckets by time: its shares are divisions, up to 28 places).
    pub fn widen_scale(&mut self, scale: u32) {
        self.scale = self.scale.max(scale);
    }

    /// The terms of `self` and `other` together.
    pub fn join(&mut self, other: &Terms) {
        self.rows = self.rows.saturating_add(other.rows);
        self.largest = self.largest.max(other.largest);
        self.scale = self.scale.max(other.scale);
    }
}

impl Store {
    /// Whether adding `terms` to this store, in any order and grouping, only
    /// forms exact sums: the sum of the absolute values of everything stored,
    /// plus `rows` times the largest term, fits in 28 digits at the largest
    /// scale of all of them. It bounds every sum a serial read forms — a slot's
    /// running total, a file's amount total — and every sum over slots the
    /// allocation forms from the result (in hash-map order) until more is added.
    pub fn sums_stay_exact(&self, terms: &Terms) -> bool {
        let mut total = Some(Decimal::ZERO);
        let mut scale = terms.scale;
        let mut add = |value: &Decimal| {
            scale = scale.max(value.scale());
            total = total.and_then(|t| t.checked_add(value.abs()));
        };
        for amount in self.lines.values().chain(self.allocated.values()) {
            add(&amount.amount);
            add(&amount.quantity);
        }
        for columns in self.charge_columns.values() {
            columns.costs.iter().for_each(&mut add);
            columns.quantities.iter().flatten().for_each(&mut add);
        }
        self.deferred.iter().for_each(|row| add(&row.amount));
        self.usage.iter().for_each(|(_, value)| add(&value));
        let limit = EXACT_DIGITS
            .checked_sub(scale)
            .and_then(|digits| 10i128.checked_pow(digits))
            .and_then(|limit| Decimal::try_from_i128_with_scale(limit, 0).ok());
        let bound = total.and_then(|t| {
            Decimal::from(terms.rows)
                .checked_mul(terms.largest)
                .and_then(|added| t.checked_add(added))
        });
        matches!((bound, limit), (Some(bound), Some(limit)) if bound < limit)
    }

    /// Folds in `other`, the aggregates of the rows that follow this store's
    /// (see the module docs); `other`'s lines are shifted by `line_offset`.
    pub fn merge(&mut self, mut other: Store, line_offset: u64) -> Result<(), Error> {
        self.fold_deferred()?;
        other.fold_deferred()?;
        let Store {
            strings,
            granularity: _,
            range: _,
            lines,
            charge_columns,
            usage,
            last_usage_span: _,
            allocated,
            deferred: _,
            allocated_bound,
            last_bucket: _,
            steady: _,
        } = other;
        // The merged slots join the sums later deferred rows may add to.
        self.allocated_bound = self.allocated_bound.saturating_add(allocated_bound);
        let ids = Remap::new(&mut self.strings, &strings);
        for ((key, period), amount) in lines {
            let amount = ids.amount(amount, line_offset);
            let slot = self.lines.entry((ids.line_key(key), period));
            super::add_amount(slot, amount, &self.strings)?;
        }
        for ((key, period), columns) in charge_columns {
            let key = (ids.line_key(key), period);
            super::add_charge_columns(&mut self.charge_columns, key, &columns)?;
        }
        for (key, value) in usage.iter() {
            let series = super::usage::Series {
                org: ids.id(key.org),
                resource: ids.id(key.resource),
                principal: ids.id(key.principal),
                topic: ids.id(key.topic),
                metric: ids.id(key.metric),
            };
            let gauge = super::is_gauge(self.strings.name(series.metric));
            self.usage.add(series, key.bucket, value, gauge)?;
        }
        let parts = allocated.into_entries().map(|(key, amount)| {
            let key = super::AllocatedKey {
                org: ids.id(key.org),
                owner: ids.id(key.owner),
                environment: ids.id(key.environment),
                resource: ids.id(key.resource),
                product: ids.id(key.product),
                line_type: ids.id(key.line_type),
                unit: ids.id(key.unit),
                currency: ids.id(key.currency),
                method: ids.id(key.method),
                reason: ids.id(key.reason),
                ..key
            };
            (key, ids.amount(amount, line_offset))
        });
        let strings = &self.strings;
        self.allocated.add_all(parts, |slot, part| {
            super::fold_amount(slot, part.clone(), strings)
        })?;
        Ok(())
    }
}

/// The whole's id of each of a part's ids.
struct Remap(Vec<Sym>);

impl Remap {
    /// Interns `part`'s strings into `whole` in `part`'s id order.
    fn new(whole: &mut Interner, part: &Interner) -> Remap {
        Remap(part.names.iter().map(|name| whole.id(name)).collect())
    }

    fn id(&self, part_id: Sym) -> Sym {
        usize::try_from(part_id)
            .ok()
            .and_then(|i| self.0.get(i))
            .copied()
            .unwrap_or(Sym::MAX)
    }

    /// A part's line identity in the whole's ids.
    fn line_key(&self, key: super::LineKey) -> super::LineKey {
        super::LineKey {
            org: self.id(key.org),
            product: self.id(key.product),
            line_type: self.id(key.line_type),
            resource: self.id(key.resource),
            environment: self.id(key.environment),
            unit: self.id(key.unit),
            currency: self.id(key.currency),
            owner_of_record: self.id(key.owner_of_record),
            charge_category: self.id(key.charge_category),
            charge_frequency: self.id(key.charge_frequency),
            bill_columns: self.id(key.bill_columns),
        }
    }

    /// `amount` with its provenance in the whole's ids and lines.
    fn amount(&self, amount: Amount, line_offset: u64) -> Amount {
        Amount {
            file: self.id(amount.file),
            line: amount.line.saturating_add(line_offset),
            ..amount
        }
    }
}
