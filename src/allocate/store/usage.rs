//! Usage aggregated by [`UsageKey`], with each series' latest bucket kept
//! apart from the rest.
//!
//! ## Design
//!
//! A usage file comes in time order per series (the plugin flushes every series
//! once per interval), so a series' consecutive rows mostly fall in the same
//! bucket, while the rows in between touch every other series. The map of all
//! slots (one per series and bucket: hundreds of thousands) outgrows the caches,
//! and a row folded straight into it costs a cache miss; the table of each
//! series' *open* bucket (one per series: thousands) stays in cache. A row
//! therefore folds into its series' open bucket, the latest bucket the series
//! has had a row for. A row for a later bucket closes the open one: its slot
//! joins the `closed` slots, and the later bucket opens at zero (no slot of it
//! can exist yet). Closed slots are added in batches ([`Slots::fold_batch`]:
//! each is new, and a batch's cache misses overlap), so a closed slot waits in
//! `closing` until its batch is full.
//!
//! The open bucket holds the slot's whole value, not a partial sum: every slot
//! sees the same operations in the same order as a plain map would give it
//! (`checked_add`, or the maximum for a gauge), so the result is the same to the
//! last digit and scale even where addition rounds, and an overflow fails the
//! same row. A row for an earlier bucket than the open one (out of time order)
//! folds straight into its closed slot, created at zero when new, after the
//! waiting batch is added. A slot is in exactly one of `open`, `closing` and
//! `closed`, so reading is the three chained.

use super::slots::{Slots, BATCH};
use super::{pair, HashMap, Sym, UsageKey};
use crate::error::Error;
use crate::time::Timestamp;
use rust_decimal::Decimal;
use std::hash::{Hash, Hasher};

/// A [`UsageKey`] without its bucket: what a plugin meters over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Series {
    /// Organization.
    pub org: Sym,
    /// Resource (cluster).
    pub resource: Sym,
    /// Principal.
    pub principal: Sym,
    /// Topic (may be the empty string's id).
    pub topic: Sym,
    /// Metric.
    pub metric: Sym,
}

impl Series {
    /// The key of this series' slot in `bucket`.
    fn key(self, bucket: Timestamp) -> UsageKey {
        UsageKey {
            org: self.org,
            bucket,
            resource: self.resource,
            principal: self.principal,
            topic: self.topic,
            metric: self.metric,
        }
    }
}

impl Hash for Series {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Packed as for `UsageKey`: one Fx round per word.
        state.write_u64(pair(self.org, self.resource));
        state.write_u64(pair(self.principal, self.topic));
        state.write_u32(self.metric);
    }
}

/// How far [`Usage::guess`] follows last time's order.
const GUESSES_AFTER: usize = 3;

/// A series' open bucket and its slot's value.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// The series.
    series: Series,
    /// The index of the series whose row followed this one's last time.
    after: u32,
    /// The latest bucket the series has had a row for.
    bucket: Timestamp,
    /// Its slot's value.
    value: Decimal,
}

/// Usage by key (see the module docs).
#[derive(Debug, Default)]
pub struct Usage {
    /// The slots of earlier buckets than their series' open one.
    closed: Slots<UsageKey, Decimal>,
    /// Closed slots not yet added to `closed` (at most a batch; none of them
    /// is in `closed`).
    closing: Vec<(UsageKey, Decimal)>,
    /// Each series' open bucket, in order of first sight.
    open: Vec<Open>,
    /// Each series' index in `open`.
    index: HashMap<Series, u32>,
    /// The index of the last row's series. A file lists its series in much
    /// the same order every interval, so the next row's series is mostly the
    /// one that followed it last time, or one of the next few in that order
    /// (a series without traffic in an interval is left out), found by
    /// comparing, without hashing ([`Usage::guess`]).
    last: usize,
}

impl Usage {
    /// Folds `value` into the slot of `series` in `bucket`: summed, or the
    /// maximum for a gauge. A slot is created (at zero) even when the sum
    /// overflows, as a plain map's `entry(..).or_insert(0)` would.
    pub fn add(
        &mut self,
        series: Series,
        bucket: Timestamp,
        value: Decimal,
        gauge: bool,
    ) -> Result<(), Error> {
        let slot = self.slot(series, bucket)?;
        *slot = if gauge {
            (*slot).max(value)
        } else {
            slot.checked_add(value)
                .ok_or_else(|| Error::overflow("summing usage"))?
        };
        Ok(())
    }

    /// The index in `open` of `series`, opened at `bucket` for a new series.
    #[inline(always)]
    fn find(&mut self, series: Series, bucket: Timestamp) -> usize {
        let last = self.last;
        let found = self.guess(last, series);
        let at = match found {
            Some(at) => at,
            None => self.look_up(series, bucket),
        };
        if let Some(previous) = self.open.get_mut(last) {
            previous.after = u32::try_from(at).unwrap_or(u32::MAX);
        }
        self.last = at;
        at
    }

    /// The index in `open` of `series` when it is one of the few likely to
    /// follow the series at `last`: the next ones in last time's order (a
    /// series without traffic in an interval is left out of it, so the one
    /// after it is next), else the next in first-seen order.
    #[inline(always)]
    fn guess(&self, last: usize, series: Series) -> Option<usize> {
        let mut at = last;
        for _ in 0..GUESSES_AFTER {
            // A series with no row after it yet ends the chain.
            let Some(next) = self.open.get(at).map(|o| o.after as usize) else {
                break;
            };
            match self.open.get(next) {
                Some(open) if open.series == series => return Some(next),
                Some(_) => at = next,
                None => break,
            }
        }
        let next = last.checked_add(1)?;
        self.open
            .get(next)
            .is_some_and(|o| o.series == series)
            .then_some(next)
    }

    /// The index in `open` of `series` from the map, opened at `bucket` for a
    /// new series.
    #[inline(never)]
    fn look_up(&mut self, series: Series, bucket: Timestamp) -> usize {
        let next = u32::try_from(self.open.len()).unwrap_or(u32::MAX);
        let at = *self.index.entry(series).or_insert(next);
        if at == next {
            // A new series has no slot in `closed`.
            self.open.push(Open {
                series,
                after: u32::MAX,
                bucket,
                value: Decimal::ZERO,
            });
        }
        usize::try_from(at).unwrap_or(usize::MAX)
    }

    /// The slot of `series` in `bucket`: the series' open one, a new open one
    /// for a later bucket (the open one closed), or a closed one.
    #[inline(always)]
    fn slot(&mut self, series: Series, bucket: Timestamp) -> Result<&mut Decimal, Error> {
        let at = self.find(series, bucket);
        let Usage {
            open,
            closing,
            closed,
            ..
        } = self;
        // Not expected to fail: every index in `index` is one of `open`'s.
        let open = open
            .get_mut(at)
            .ok_or_else(|| Error::overflow("indexing usage series"))?;
        if open.bucket == bucket {
            return Ok(&mut open.value);
        }
        if bucket > open.bucket {
            closing.push((series.key(open.bucket), open.value));
            if closing.len() >= BATCH {
                close(closed, closing)?;
            }
            open.bucket = bucket;
            open.value = Decimal::ZERO;
            return Ok(&mut open.value);
        }
        close(closed, closing)?;
        closed.slot(series.key(bucket), || Decimal::ZERO)
    }

    /// How many slots there are.
    pub fn slot_count(&self) -> usize {
        self.closed.len() + self.closing.len() + self.open.len()
    }

    /// Every slot and its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (UsageKey, Decimal)> + '_ {
        let closed = self
            .closed
            .iter()
            .chain(self.closing.iter().map(|(key, value)| (key, value)))
            .map(|(key, value)| (*key, *value));
        let open = self
            .open
            .iter()
            .map(|open| (open.series.key(open.bucket), open.value));
        closed.chain(open)
    }
}

/// Adds the slots waiting in `closing` to `closed`: each is new there.
fn close(
    closed: &mut Slots<UsageKey, Decimal>,
    closing: &mut Vec<(UsageKey, Decimal)>,
) -> Result<(), Error> {
    let added = closed.fold_batch(closing, |_, _| {
        Err(Error::overflow("closing a usage slot twice"))
    });
    closing.clear();
    added
}

impl UsageKey {
    /// The series of this key.
    pub fn series(&self) -> Series {
        Series {
            org: self.org,
            resource: self.resource,
            principal: self.principal,
            topic: self.topic,
            metric: self.metric,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain map's fold of one value (see [`Usage::add`]): false on overflow.
    fn fold(plain: &mut HashMap<UsageKey, Decimal>, key: UsageKey, value: Decimal) -> bool {
        let slot = plain.entry(key).or_insert(Decimal::ZERO);
        // Series with metric 1 are the gauges.
        let folded = if key.metric == 1 {
            Some((*slot).max(value))
        } else {
            slot.checked_add(value)
        };
        folded.map(|sum| *slot = sum).is_some()
    }

    /// Slots with their values' exact representation (digits and scale), sorted.
    fn exact(slots: impl Iterator<Item = (UsageKey, Decimal)>) -> Vec<(UsageKey, [u8; 16])> {
        let mut slots: Vec<_> = slots.map(|(k, v)| (k, v.serialize())).collect();
        slots.sort_unstable();
        slots
    }

    proptest::proptest! {
        /// Slots take exactly a plain map's values, digits and scale, whatever
        /// the order of buckets within a series and of the series: rows going
        /// back to an earlier bucket, several buckets per series, gauges, sums
        /// that round (28 decimal places) and sums that overflow (failing the
        /// same row and leaving the same slots). Folding one `Usage`'s slots
        /// into another (as [`super::super::Store::merge`] does) is a plain
        /// map's fold of the slots too. With many series and rows mostly in
        /// time order (as a plugin writes them), closed slots wait and are
        /// added in full batches.
        #[test]
        fn slots_are_a_plain_maps(
            mut rows in proptest::collection::vec(
                (0u32..4, 0i64..5, 0u8..4, -1_000i64..1_000, 0u32..29, proptest::bool::ANY),
                0..300,
            ),
            cut in 0usize..300,
            many_series in proptest::bool::ANY,
            in_time_order in 0usize..300,
        ) {
            if many_series {
                // Up to 300 series × 5 buckets, sorted by bucket but for the
                // rows from `in_time_order` on.
                for (n, row) in rows.iter_mut().enumerate() {
                    row.0 = u32::try_from(n % 300).unwrap() * 7 % 300;
                }
                let sorted = in_time_order.min(rows.len());
                rows[..sorted].sort_by_key(|row| row.1);
            }
            let mut whole = (Usage::default(), HashMap::default());
            let mut parts = [(Usage::default(), HashMap::default()), (Usage::default(), HashMap::default())];
            for (n, (series, bucket, size, mantissa, scale, gauge)) in rows.into_iter().enumerate() {
                let series = Series { org: 0, resource: 1, principal: series, topic: 2, metric: u32::from(gauge) };
                let bucket = Timestamp(bucket * 3_600);
                // Small values, values with many places (sums round), and
                // values near the largest (sums overflow).
                let value = match size {
                    0 => Decimal::new(mantissa, 0),
                    1 => Decimal::new(mantissa, scale),
                    2 => Decimal::MAX,
                    _ => Decimal::from_i128_with_scale(i128::from(mantissa) * 10i128.pow(25), scale.min(3)),
                };
                let part = &mut parts[usize::from(n >= cut)];
                for (usage, plain) in [&mut whole, part] {
                    let folded = fold(plain, series.key(bucket), value);
                    proptest::prop_assert_eq!(usage.add(series, bucket, value, gauge).is_ok(), folded);
                }
            }
            proptest::prop_assert_eq!(exact(whole.0.iter()), exact(whole.1.into_iter()));
            let [(mut usage, mut plain), (later, later_plain)] = parts;
            // The merge of parts is compared only when it does not overflow:
            // which slot fails first then depends on the maps' orders.
            if later_plain.into_iter().all(|(key, value)| fold(&mut plain, key, value)) {
                for (key, value) in later.iter() {
                    proptest::prop_assert!(usage.add(key.series(), key.bucket, value, key.metric == 1).is_ok());
                }
                proptest::prop_assert_eq!(exact(usage.iter()), exact(plain.into_iter()));
            }
        }
    }
}
