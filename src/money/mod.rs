//! Exact apportionment of money.
//!
//! ## Design
//!
//! A cost is split over keyed, non-negative weights so that the parts add up to
//! the cost *exactly*, at a chosen precision (`scale` decimal places: 2 for cents,
//! up to [`MAX_SCALE`]). The method is largest remainder (Hamilton):
//!
//! 1. the amount is expressed in minimal units (`|amount| × 10^scale`, an integer;
//!    an amount with more decimals than `scale` is first rounded half away from
//!    zero — see [`round`]);
//! 2. each key gets `floor(units × wᵢ / W)` units, computed in exact integers;
//! 3. the units left over go one each to the keys with the largest remainders,
//!    ties broken by **key order** (ascending), never by input order.
//!
//! Weights are first merged by key (sorted, equal keys summed), so the result is a function
//! of the (key → weight) map alone: permuting the input changes nothing.
//!
//! Negative amounts (credits, refunds) are apportioned by absolute value and the
//! parts keep the sign. When every weight is zero there is nothing to split by:
//! [`apportion`] returns `None` and the caller picks its fallback (an allocation
//! rule's next step).
//!
//! Weights are converted to integers at a common scale. When that, or a
//! product `units × weight`, does not fit in 128 bits (e.g. weights with 28
//! decimals), each weight is first normalised to a share with 18 decimals
//! (fewer for amounts past 10^20 units, at least 9) — still deterministic, and
//! the parts still sum exactly.
//! All arithmetic is `checked_*`; anything that cannot be represented is an
//! [`Error::Overflow`].

use crate::error::Error;
use rust_decimal::{Decimal, RoundingStrategy};

/// The largest supported precision (decimal places of the parts).
pub const MAX_SCALE: u32 = 12;

/// Rounds `amount` to `scale` decimal places, half away from zero, and writes it
/// with exactly `scale` decimals (`4` at scale 2 is `4.00`).
pub fn round(amount: Decimal, scale: u32) -> Decimal {
    let mut rounded = amount.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    if rounded.scale() < scale {
        rounded.rescale(scale);
    }
    rounded
}

/// `part / whole` rounded to `scale` places like [`round`] (zero when `whole`
/// is zero), e.g. an owner's usage share, computed once per output row.
///
/// A share of non-negative integers-at-a-scale whose whole is small is rounded
/// exactly in integers (`small_ratio`); anything else goes through decimal
/// division, with the same result.
pub fn rounded_ratio(part: Decimal, whole: Decimal, scale: u32) -> Result<Decimal, Error> {
    if whole.is_zero() {
        return Ok(round(Decimal::ZERO, scale));
    }
    if let Some(ratio) = small_ratio(part, whole, scale) {
        return Ok(ratio);
    }
    part.checked_div(whole)
        .map(|q| round(q, scale))
        .ok_or_else(|| Error::overflow("ratio"))
}

/// `part / whole` rounded half up to `scale` places in integers, when
/// `0 ≤ part ≤ whole`, `scale ≤ MAX_SCALE` and `whole` (at the common scale of
/// both) is below `10^(22 − scale)`.
///
/// Why it equals decimal division then [`round`]: for a ratio below 1 the
/// division keeps 28 decimals, so it is within `10^-28` of the true value, while
/// a true value that is not itself a rounding midpoint lies at least
/// `1 / (2 · 10^scale · whole) > 10^-22` away from every midpoint. Both values
/// therefore round the same way; a true midpoint has few decimals and is exact.
fn small_ratio(part: Decimal, whole: Decimal, scale: u32) -> Option<Decimal> {
    if scale > MAX_SCALE || part.is_sign_negative() || whole.is_sign_negative() {
        return None;
    }
    let common = part.scale().max(whole.scale());
    let at_common = |d: Decimal| {
        let factor = 10u128.checked_pow(common.checked_sub(d.scale())?)?;
        u128::try_from(d.mantissa()).ok()?.checked_mul(factor)
    };
    let (a, b) = (at_common(part)?, at_common(whole)?);
    let limit = 10u128.checked_pow(22u32.checked_sub(scale)?)?;
    if b == 0 || b >= limit || a > b {
        return None;
    }
    half_up_ratio(a, b, scale)
}

/// `a / b` rounded half up to `scale` places, in integers (`None` when `b` is
/// zero or a product does not fit 128 bits).
fn half_up_ratio(a: u128, b: u128, scale: u32) -> Option<Decimal> {
    // round(a / b · 10^scale) = floor((2 · a · 10^scale + b) / (2 · b)).
    let scaled = a.checked_mul(10u128.checked_pow(scale)?)?.checked_mul(2)?;
    let (quotient, _) = div_rem(scaled.checked_add(b)?, b.checked_mul(2)?)?;
    Decimal::try_from_i128_with_scale(i128::try_from(quotient).ok()?, scale).ok()
}

/// Splits `amount` over `weights` (merged by key) at `scale` decimal places.
///
/// Returns the parts in key order, one per key (zero parts included, so a caller
/// can see who got nothing), or `None` when the total weight is zero. The parts sum
/// exactly to `round(amount, scale)`.
pub fn apportion<K, I>(
    amount: Decimal,
    weights: I,
    scale: u32,
) -> Result<Option<Vec<(K, Decimal)>>, Error>
where
    K: Ord,
    I: IntoIterator<Item = (K, Decimal)>,
{
    let Some(split) = Split::new(amount, weights, scale, 0)? else {
        return Ok(None);
    };
    split
        .keys
        .into_iter()
        .zip(split.parts)
        .map(|(key, part)| Ok((key, split.sign.amount(part, scale)?)))
        .collect::<Result<Vec<_>, Error>>()
        .map(Some)
}

/// A key's part of an amount and its share of the weights.
pub type SharedPart<K> = (K, Decimal, Decimal);

/// [`apportion`] with ties from the `first_tie`-th key ([`apportion_units`]),
/// and each key's share of the weights (`weight / total`)
/// rounded like [`rounded_ratio`] to `share_scale` places: the same shares,
/// computed from the integer weights the split already made when they are
/// exact and small enough (see `small_ratio`), without a decimal division.
pub fn apportion_with_shares<K, I>(
    amount: Decimal,
    weights: I,
    scale: u32,
    share_scale: u32,
    first_tie: i128,
) -> Result<Option<Vec<SharedPart<K>>>, Error>
where
    K: Ord,
    I: IntoIterator<Item = (K, Decimal)>,
{
    let Some(split) = Split::new(amount, weights, scale, first_tie)? else {
        return Ok(None);
    };
    let total = checked_sum(split.weights.iter().copied(), "weights")?;
    let limit = 10u128
        .checked_pow(22u32.saturating_sub(share_scale))
        .unwrap_or(0);
    // `small_ratio` of a weight and the total at their common scale, which
    // exact integer weights are (the total's scale is the largest weight's).
    // (A weight of -0 is left to the division, as `small_ratio` does.)
    let exact = split.exact && split.weights.iter().all(|w| !w.is_sign_negative());
    let integer_total = exact
        .then(|| {
            split
                .integers
                .iter()
                .try_fold(0u128, |a, w| a.checked_add(*w))
        })
        .flatten()
        .filter(|t| *t > 0 && *t < limit && share_scale <= MAX_SCALE);
    let share = |weight: Decimal, integer: u128| match integer_total {
        Some(whole) => {
            half_up_ratio(integer, whole, share_scale).ok_or_else(|| Error::overflow("ratio"))
        }
        None => rounded_ratio(weight, total, share_scale),
    };
    let mut out = Vec::with_capacity(split.parts.len());
    let weights = split.weights.iter().zip(&split.integers);
    for ((key, part), (weight, integer)) in split.keys.into_iter().zip(split.parts).zip(weights) {
        out.push((
            key,
            split.sign.amount(part, scale)?,
            share(*weight, *integer)?,
        ));
    }
    Ok(Some(out))
}

/// The sign of the amount being split: the parts keep it.
#[derive(Debug, Clone, Copy)]
pub struct Sign {
    negative: bool,
}

impl Sign {
    /// `amount` rounded to `scale` places ([`round`]) as minimal units of its
    /// absolute value, and its sign.
    pub fn units(amount: Decimal, scale: u32) -> Result<(u128, Sign), Error> {
        let rounded = round(amount, scale);
        let units = to_units(rounded.abs(), scale)?;
        let negative = rounded.is_sign_negative();
        Ok((units, Sign { negative }))
    }

    /// A part of `units` minimal units as a signed amount.
    pub fn amount(self, units: u128, scale: u32) -> Result<Decimal, Error> {
        let value = from_units(units, scale)?;
        Ok(if self.negative { -value } else { value })
    }
}

/// Minimal units split over weights, in the weights' order.
#[derive(Debug, Clone)]
pub struct UnitSplit {
    /// Each weight's part.
    pub parts: Vec<u128>,
    /// The weights as integers proportional to them.
    pub weights: Vec<u128>,
    /// Whether `weights` are the decimal weights at their common scale (else
    /// shares normalised to 18 decimals).
    pub exact: bool,
}

/// Splits `units` over `weights` (largest remainder, ties by index from
/// `first_tie`: [`apportion_units`]), or `None` when they are all zero; a
/// negative weight is refused. The step [`apportion`] takes once its weights
/// are merged by key, for callers whose weights are already one per key in
/// key order.
pub fn split_units(
    units: u128,
    weights: &[Decimal],
    first_tie: i128,
) -> Result<Option<UnitSplit>, Error> {
    for weight in weights {
        refuse_negative(*weight)?;
    }
    let Some((integers, exact)) = integer_weights(units, weights)? else {
        return Ok(None);
    };
    Ok(Some(UnitSplit {
        parts: apportion_units(units, &integers, first_tie)?,
        weights: integers,
        exact,
    }))
}

/// Each key's share of a weighted mix, `Σ_c k_c · w_ic / W_c` (component `c`
/// of weight `k_c` split over the keys by integer weights `w_ic` summing to
/// `W_c`), rounded half up to `scale` places: exactly, in integers over the
/// common denominator `Π_c 10^e_c · W_c` (`k_c = K_c / 10^e_c`).
///
/// `None` when a component's weights are not exact, a component weight is
/// negative, or a product does not fit 128 bits: the caller then sums decimal
/// quotients (28 significant digits, so the same result unless the exact share
/// lies within 10^-27 of a rounding midpoint).
pub fn mixed_shares(components: &[(Decimal, &UnitSplit)], scale: u32) -> Option<Vec<Decimal>> {
    let keys = components.first()?.1.weights.len();
    // Each component's denominator 10^e_c · W_c, and their product.
    let mut denominators = Vec::with_capacity(components.len());
    for (k, split) in components {
        if !split.exact || k.is_sign_negative() || split.weights.len() != keys {
            return None;
        }
        let total = split
            .weights
            .iter()
            .try_fold(0u128, |a, w| a.checked_add(*w))?;
        denominators.push(10u128.checked_pow(k.scale())?.checked_mul(total)?);
    }
    let common = denominators
        .iter()
        .try_fold(1u128, |a, d| a.checked_mul(*d))?;
    // Component c's numerator factor K_c · (common / its denominator).
    let factors: Vec<u128> = components
        .iter()
        .zip(&denominators)
        .map(|((k, _), d)| {
            u128::try_from(k.mantissa())
                .ok()?
                .checked_mul(common.checked_div(*d)?)
        })
        .collect::<Option<_>>()?;
    (0..keys)
        .map(|i| {
            let numerator =
                components
                    .iter()
                    .zip(&factors)
                    .try_fold(0u128, |acc, ((_, split), factor)| {
                        acc.checked_add(split.weights.get(i)?.checked_mul(*factor)?)
                    })?;
            half_up_ratio(numerator, common, scale)
        })
        .collect()
}

/// A negative weight is a configuration error (zero, even `-0`, is a weight).
fn refuse_negative(weight: Decimal) -> Result<(), Error> {
    if weight.is_sign_negative() && !weight.is_zero() {
        return Err(Error::config(format!(
            "negative weight {weight} in an apportionment"
        )));
    }
    Ok(())
}

/// An amount split over merged weights, in units (see the module docs).
struct Split<K> {
    /// The keys, sorted and distinct.
    keys: Vec<K>,
    /// Each key's weight.
    weights: Vec<Decimal>,
    /// The weights as integers proportional to them.
    integers: Vec<u128>,
    /// Whether `integers` are the weights at their common scale (else shares
    /// normalised to 18 decimals).
    exact: bool,
    /// Each key's part of the rounded amount, in minimal units.
    parts: Vec<u128>,
    /// The rounded amount's sign.
    sign: Sign,
}

impl<K: Ord> Split<K> {
    /// The split, or `None` when the weights are all zero.
    fn new<I: IntoIterator<Item = (K, Decimal)>>(
        amount: Decimal,
        weights: I,
        scale: u32,
        first_tie: i128,
    ) -> Result<Option<Split<K>>, Error> {
        if scale > MAX_SCALE {
            return Err(Error::config(format!(
                "precision {scale} is above the maximum of {MAX_SCALE} decimal places"
            )));
        }
        let merged = merge(weights)?;
        let (keys, weights): (Vec<K>, Vec<Decimal>) = merged.into_iter().unzip();
        let (units, sign) = Sign::units(amount, scale)?;
        let Some(split) = split_units(units, &weights, first_tie)? else {
            return Ok(None);
        };
        Ok(Some(Split {
            keys,
            weights,
            integers: split.weights,
            exact: split.exact,
            parts: split.parts,
            sign,
        }))
    }
}

/// Merges weights by key (summing, from zero, in input order), refusing
/// negative weights; the result is sorted by key.
///
/// A stable sort then one pass, rather than a map: callers mostly pass keys
/// already sorted and distinct, which is checked first and then taken as is
/// (a weight summed from zero alone is that weight, to the digit and scale).
fn merge<K: Ord, I: IntoIterator<Item = (K, Decimal)>>(
    weights: I,
) -> Result<Vec<(K, Decimal)>, Error> {
    let mut list: Vec<(K, Decimal)> = Vec::new();
    for (key, weight) in weights {
        refuse_negative(weight)?;
        list.push((key, weight));
    }
    if list
        .windows(2)
        .all(|pair| matches!(pair, [a, b] if a.0 < b.0))
    {
        return Ok(list);
    }
    list.sort_by(|a, b| a.0.cmp(&b.0));
    let mut merged: Vec<(K, Decimal)> = Vec::with_capacity(list.len());
    for (key, weight) in list {
        let slot = match merged.last_mut() {
            Some((last, slot)) if *last == key => slot,
            _ => {
                merged.push((key, Decimal::ZERO));
                match merged.last_mut() {
                    Some((_, slot)) => slot,
                    None => continue,
                }
            }
        };
        *slot = slot
            .checked_add(weight)
            .ok_or_else(|| Error::overflow("summing apportionment weights"))?;
    }
    Ok(merged)
}

/// The weights as integers proportional to them, and whether they are exact
/// (the weights at their common scale), or `None` if they are all zero.
fn integer_weights(units: u128, weights: &[Decimal]) -> Result<Option<(Vec<u128>, bool)>, Error> {
    if weights.iter().all(Decimal::is_zero) {
        return Ok(None);
    }
    if let Some(exact) = exact_integer_weights(units, weights) {
        return Ok(Some((exact, true)));
    }
    normalised_weights(units, weights).map(|n| Some((n, false)))
}

/// Exact integers at the weights' common scale, when each is below 2^96 and
/// every product `units × weight` of the split fits 128 bits. Weights that
/// are quotients (28 significant digits) seldom do: 10^27 at the common scale
/// times 10^14 units is past 2^128.
fn exact_integer_weights(units: u128, weights: &[Decimal]) -> Option<Vec<u128>> {
    let scale = weights.iter().map(Decimal::scale).max().unwrap_or(0);
    let limit: u128 = 1 << 96;
    let exact: Vec<u128> = weights
        .iter()
        .map(|w| {
            let mantissa = u128::try_from(w.mantissa()).ok()?;
            let factor = 10u128.checked_pow(scale.checked_sub(w.scale())?)?;
            mantissa.checked_mul(factor).filter(|v| *v < limit)
        })
        .collect::<Option<_>>()?;
    let largest = exact.iter().copied().max().unwrap_or(0);
    units.checked_mul(largest).map(|_| exact)
}

/// Each weight as its share of the total with 18 decimals, as an integer;
/// with fewer when `units × 10^18` would not fit 128 bits (from 10^20 units
/// on, e.g. 10^8 at 12 decimals), so that no product of the split overflows.
/// At least 9 remain for any amount a `Decimal` holds at [`MAX_SCALE`].
fn normalised_weights(units: u128, weights: &[Decimal]) -> Result<Vec<u128>, Error> {
    let total = weights
        .iter()
        .try_fold(Decimal::ZERO, |acc, w| acc.checked_add(*w))
        .ok_or_else(|| Error::overflow("summing apportionment weights"))?;
    let decimals = (0..=NORMALISED_DECIMALS)
        .rev()
        .find(|d| {
            10u128
                .checked_pow(*d)
                .and_then(|f| units.checked_mul(f))
                .is_some()
        })
        .unwrap_or(0);
    let scale = Decimal::from(10u64.checked_pow(decimals).unwrap_or(1));
    weights
        .iter()
        .map(|w| {
            let share = w
                .checked_div(total)
                .and_then(|s| s.checked_mul(scale))
                .ok_or_else(|| Error::overflow("normalising apportionment weights"))?;
            u128::try_from(share.trunc().mantissa())
                .map_err(|_| Error::overflow("normalising apportionment weights"))
        })
        .collect()
}

/// Decimal places of a normalised weight (see `normalised_weights`).
const NORMALISED_DECIMALS: u32 = 18;

/// `amount × 10^scale` as an integer (amount non-negative, at most `scale` decimals).
fn to_units(amount: Decimal, scale: u32) -> Result<u128, Error> {
    let factor = Decimal::from(
        10u64
            .checked_pow(scale)
            .ok_or_else(|| Error::overflow("precision"))?,
    );
    let units = amount
        .checked_mul(factor)
        .ok_or_else(|| Error::overflow(format!("amount {amount} at {scale} decimals")))?;
    let units = units.trunc();
    let mantissa = units.mantissa();
    let divisor = 10i128
        .checked_pow(units.scale())
        .ok_or_else(|| Error::overflow("amount scale"))?;
    u128::try_from(mantissa / divisor).map_err(|_| Error::overflow("negative amount units"))
}

/// Minimal units back to a decimal amount.
fn from_units(units: u128, scale: u32) -> Result<Decimal, Error> {
    let value = i128::try_from(units).map_err(|_| Error::overflow("apportioned part"))?;
    Decimal::try_from_i128_with_scale(value, scale).map_err(|_| Error::overflow("apportioned part"))
}

/// Largest-remainder split of `units` over integer `weights` (not all zero);
/// equal remainders go by index (the caller orders indices by key), starting
/// at `first_tie` and wrapping round: a caller that turns `first_tie` from
/// one split to the next (by the units given before) hands the units ties
/// leave round the keys instead of always to the first.
pub fn apportion_units(units: u128, weights: &[u128], first_tie: i128) -> Result<Vec<u128>, Error> {
    let total = weights
        .iter()
        .try_fold(0u128, |acc, w| acc.checked_add(*w))
        .ok_or_else(|| Error::overflow("summing weights"))?;
    if total == 0 {
        return Err(Error::overflow("apportioning over zero total weight"));
    }
    let mut parts = Vec::with_capacity(weights.len());
    // Equal remainders go by index (= key order) from `first_tie` round: each
    // remainder is kept with its index's rank in that order.
    let count = weights.len();
    let first_tie = tie_offset(first_tie, count);
    let mut remainders = Vec::with_capacity(count);
    let mut given = 0u128;
    for (index, weight) in weights.iter().enumerate() {
        let (part, remainder) = units
            .checked_mul(*weight)
            .and_then(|product| div_rem(product, total))
            .ok_or_else(|| Error::overflow("amount × weight in an apportionment"))?;
        parts.push(part);
        let rank = if index >= first_tie {
            index - first_tie
        } else {
            index + count - first_tie
        };
        remainders.push((remainder, rank));
        given = given
            .checked_add(part)
            .ok_or_else(|| Error::overflow("apportioned parts"))?;
    }
    let left = units
        .checked_sub(given)
        .ok_or_else(|| Error::overflow("apportioned parts"))?;
    // Largest remainder first, then by rank. Only which `left` come first
    // matters, not their order: a selection, linear, rather than a sort (the
    // order is total: ranks differ).
    let left = usize::try_from(left).unwrap_or(usize::MAX);
    if left > 0 && left < count {
        remainders.select_nth_unstable_by(left - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    }
    for &(_, rank) in remainders.iter().take(left) {
        let index = rank + first_tie;
        let index = if index >= count { index - count } else { index };
        if let Some(part) = parts.get_mut(index) {
            *part = part
                .checked_add(1)
                .ok_or_else(|| Error::overflow("apportioned parts"))?;
        }
    }
    Ok(parts)
}

/// `first_tie` modulo `count` (0 when `count` is 0), in 64 bits when it fits,
/// as unit counts do: a 128-bit remainder per split costs more than the split's
/// own arithmetic.
fn tie_offset(first_tie: i128, count: usize) -> usize {
    let offset = match (i64::try_from(first_tie), i64::try_from(count)) {
        (Ok(first), Ok(n)) => first.checked_rem_euclid(n).map(i128::from),
        _ => i128::try_from(count)
            .ok()
            .and_then(|n| first_tie.checked_rem_euclid(n)),
    };
    offset.and_then(|o| usize::try_from(o).ok()).unwrap_or(0)
}

/// `a / b` and `a % b` (`None` when `b` is zero), in one 64-bit division when
/// both fit, as they mostly do (cents × bytes), rather than two 128-bit calls.
fn div_rem(a: u128, b: u128) -> Option<(u128, u128)> {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => Some((a.checked_div(b)?.into(), a.checked_rem(b)?.into())),
        _ => Some((a.checked_div(b)?, a.checked_rem(b)?)),
    }
}

/// Sums decimals with overflow checking.
pub fn checked_sum<I: IntoIterator<Item = Decimal>>(
    values: I,
    what: &str,
) -> Result<Decimal, Error> {
    values
        .into_iter()
        .try_fold(Decimal::ZERO, |acc, v| acc.checked_add(v))
        .ok_or_else(|| Error::overflow(what.to_string()))
}

/// Reads an amount a person or a configuration gives as text: a command-line
/// flag, the page's invoice subtotal or an option of the page, a rules
/// weight. Spaces around it are ignored; the rest must be a number in the
/// readers' one spelling ([`crate::formats::exact_json::is_number`]) that a
/// `Decimal` holds exactly. `what` names what is read (the flag, the option)
/// in the error, an [`Error::InvalidValue`].
pub fn parse_amount(what: &str, text: &str) -> Result<Decimal, Error> {
    crate::formats::exact_json::decimal_from_number(text.trim())
        .ok_or_else(|| Error::invalid_value(what, format!("`{text}` is not a decimal number")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn split(
        amount: &str,
        weights: &[(&'static str, &str)],
        scale: u32,
    ) -> Vec<(&'static str, String)> {
        apportion(d(amount), weights.iter().map(|(k, w)| (*k, d(w))), scale)
            .unwrap()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect()
    }

    #[test]
    fn table() {
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            u32,
            &'a [(&'a str, &'a str)],
        );
        let cases: &[Case<'_>] = &[
            (
                "1.00",
                &[("a", "1"), ("b", "1"), ("c", "1")],
                2,
                &[("a", "0.34"), ("b", "0.33"), ("c", "0.33")],
            ),
            // Tie-break by key order, not input order.
            (
                "1.00",
                &[("c", "1"), ("b", "1"), ("a", "1")],
                2,
                &[("a", "0.34"), ("b", "0.33"), ("c", "0.33")],
            ),
            (
                "6",
                &[("sa-abc", "2"), ("sa-def", "1")],
                2,
                &[("sa-abc", "4.00"), ("sa-def", "2.00")],
            ),
            (
                "-562.29",
                &[("x", "1"), ("y", "1")],
                2,
                &[("x", "-281.15"), ("y", "-281.14")],
            ),
            (
                "0.01",
                &[("a", "1"), ("b", "100")],
                2,
                &[("a", "0.00"), ("b", "0.01")],
            ),
            (
                "10",
                &[("a", "0"), ("b", "3")],
                2,
                &[("a", "0.00"), ("b", "10.00")],
            ),
            (
                "1",
                &[("a", "1"), ("b", "1"), ("c", "1")],
                6,
                &[("a", "0.333334"), ("b", "0.333333"), ("c", "0.333333")],
            ),
            ("2.005", &[("a", "1")], 2, &[("a", "2.01")]),
            (
                "100",
                &[("a", "0.7"), ("b", "0.3")],
                0,
                &[("a", "70"), ("b", "30")],
            ),
            (
                "1",
                &[("a", "1"), ("a", "1"), ("b", "1")],
                2,
                &[("a", "0.67"), ("b", "0.33")],
            ),
            // Quotient weights (28 decimals) fit 96 bits, but 10^14 units
            // times the larger does not fit 128: normalised to 18-decimal
            // shares (…333 and …666 truncated), the unit left to b.
            (
                "181.2724714",
                &[
                    ("a", "0.3333333333333333333333333333"),
                    ("b", "0.6666666666666666666666666667"),
                ],
                12,
                &[("a", "60.424157133333"), ("b", "120.848314266667")],
            ),
        ];
        for (amount, weights, scale, want) in cases {
            let got = split(amount, weights, *scale);
            let want: Vec<_> = want.iter().map(|(k, v)| (*k, v.to_string())).collect();
            assert_eq!(got, want, "{amount} over {weights:?}");
        }
    }

    #[test]
    fn zero_weights_leave_the_choice_to_the_caller() {
        assert_eq!(
            apportion(d("5"), [("a", d("0")), ("b", d("0"))], 2).unwrap(),
            None
        );
        assert_eq!(apportion::<&str, _>(d("5"), [], 2).unwrap(), None);
    }

    #[test]
    fn refuses_negative_weights_and_huge_scales() {
        assert!(apportion(d("5"), [("a", d("-1"))], 2).is_err());
        assert!(apportion(d("5"), [("a", d("1"))], 40).is_err());
    }

    #[test]
    fn tiny_weights_at_28_decimals_are_normalised() {
        let w = [
            ("a", d("0.0000000000000000000000000001")),
            ("b", d("123456789012345678901234567")),
        ];
        let parts = apportion(d("1"), w, 2).unwrap().unwrap();
        assert_eq!(parts.iter().map(|p| p.1).sum::<Decimal>(), d("1.00"));
    }

    proptest! {
        #[test]
        fn div_rem_agrees_with_128_bit_division(
            a in prop_oneof![any::<u64>().prop_map(u128::from), any::<u128>()],
            b in prop_oneof![any::<u64>().prop_map(u128::from), any::<u128>()],
        ) {
            let expected = (b != 0).then(|| (a / b, a % b));
            prop_assert_eq!(div_rem(a, b), expected);
        }

        #[test]
        fn shares_agree_with_rounded_ratios_of_the_total(
            cents in -1_000_000i64..1_000_000,
            weights in proptest::collection::vec(
                (prop_oneof![0u64..1000, any::<u64>()], 0u32..6, 0u32..2),
                1..12,
            ),
        ) {
            let weights: Vec<(usize, Decimal)> = weights
                .into_iter()
                .enumerate()
                .map(|(i, (m, scale, wide))| {
                    // Some weights past 2^64 (and past the integer shortcut's limit).
                    let m = i128::from(m) * if wide == 1 { 1_000_000_007 } else { 1 };
                    (i, Decimal::from_i128_with_scale(m, scale))
                })
                .collect();
            let amount = Decimal::new(cents, 2);
            let parts = apportion(amount, weights.clone(), 2).unwrap();
            let with_shares = apportion_with_shares(amount, weights.clone(), 2, 6, 0).unwrap();
            let total = checked_sum(weights.iter().map(|w| w.1), "t").unwrap();
            let expected = parts.map(|parts| {
                parts
                    .into_iter()
                    .zip(&weights)
                    .map(|((k, part), (_, w))| (k, part, rounded_ratio(*w, total, 6).unwrap()))
                    .collect::<Vec<_>>()
            });
            prop_assert_eq!(with_shares.clone(), expected.clone());
            let text = |v: Option<Vec<(usize, Decimal, Decimal)>>| {
                v.map(|v| v.iter().map(|(_, p, s)| format!("{p} {s}")).collect::<Vec<_>>())
            };
            prop_assert_eq!(text(with_shares), text(expected));
        }

        #[test]
        fn mixed_shares_agree_with_summed_decimal_quotients(
            mix in proptest::collection::vec(
                (0i64..=1000, proptest::collection::vec(0u64..1_000_000_000_000, 4)),
                1..4,
            ),
        ) {
            let splits: Vec<(Decimal, Vec<Decimal>)> = mix
                .iter()
                .map(|(k, w)| (Decimal::new(*k, 3), w.iter().map(|v| Decimal::from(*v)).collect()))
                .collect();
            let made: Option<Vec<UnitSplit>> = splits
                .iter()
                .map(|(_, w)| split_units(100, w, 0).unwrap())
                .collect();
            let Some(made) = made else { return Ok(()) };
            let components: Vec<(Decimal, &UnitSplit)> =
                splits.iter().map(|(k, _)| *k).zip(&made).collect();
            // Two components of these sizes always fit 128 bits; three may not.
            let Some(exact) = mixed_shares(&components, 6) else {
                prop_assert!(components.len() > 2);
                return Ok(());
            };
            for (i, share) in exact.iter().enumerate() {
                let mut sum = Decimal::ZERO;
                for (k, weights) in &splits {
                    let total: Decimal = weights.iter().sum();
                    sum += weights[i] / total * k;
                }
                prop_assert_eq!(share.to_string(), round(sum, 6).to_string());
            }
        }

        #[test]
        fn the_integer_ratio_agrees_with_decimal_division(
            whole in 1u64..10_000_000_000_000,
            numerator in 0u64..=1_000_000,
            part_scale in 0u32..4,
            whole_scale in 0u32..4,
            scale in 0u32..8,
        ) {
            let part = u128::from(whole) * u128::from(numerator) / 1_000_000;
            let part = Decimal::from_i128_with_scale(part as i128, part_scale);
            let whole = Decimal::from_i128_with_scale(i128::from(whole), whole_scale);
            let decimal = round(part.checked_div(whole).unwrap(), scale);
            let ratio = rounded_ratio(part, whole, scale).unwrap();
            prop_assert_eq!(ratio.to_string(), decimal.to_string());
        }

        #[test]
        fn parts_sum_and_permutation_invariance(
            cents in -10_000_000i64..10_000_000,
            weights in proptest::collection::vec(0u64..1_000_000, 1..12),
            scale in 0u32..7,
            rotate in 0usize..12,
        ) {
            let amount = Decimal::new(cents, 2);
            let keyed: Vec<(usize, Decimal)> = weights.iter().enumerate().map(|(i, w)| (i, Decimal::from(*w))).collect();
            let mut permuted = keyed.clone();
            let len = permuted.len();
            permuted.rotate_left(rotate % len);
            permuted.reverse();
            let a = apportion(amount, keyed, scale).unwrap();
            let b = apportion(amount, permuted, scale).unwrap();
            prop_assert_eq!(&a, &b);
            if let Some(parts) = a {
                let sum: Decimal = parts.iter().map(|p| p.1).sum();
                prop_assert_eq!(sum, round(amount, scale));
                for (_, p) in &parts {
                    prop_assert!(p.is_zero() || p.is_sign_negative() == amount.is_sign_negative());
                }
            } else {
                prop_assert!(weights.iter().all(|w| *w == 0));
            }
        }

        /// Any weights a `Decimal` can hold (up to 28 significant digits, as
        /// quotients have) split any amount below 10^12 at any precision: the
        /// exact integers when their products fit, else normalised shares,
        /// never an overflow, and the parts add up.
        #[test]
        fn any_decimal_weights_split_without_overflow(
            mantissa in -100_000_000_000_000_000_000i128..100_000_000_000_000_000_000,
            amount_scale in 0u32..21,
            // Below 2^93, so that 7 of them sum inside a `Decimal` (2^96).
            weights in proptest::collection::vec((0u128..(1 << 93), 0u32..29), 1..8),
            scale in 0u32..13,
        ) {
            // Up to 10^12 (at 12 decimals, 10^24 units: shares of 14 decimals).
            let amount = Decimal::from_i128_with_scale(mantissa, amount_scale + 8);
            let keyed: Vec<(usize, Decimal)> = weights
                .iter()
                .enumerate()
                .map(|(i, (m, e))| (i, Decimal::from_i128_with_scale(*m as i128, *e)))
                .collect();
            match apportion(amount, keyed, scale) {
                Ok(Some(parts)) => {
                    let sum: Decimal = parts.iter().map(|p| p.1).sum();
                    prop_assert_eq!(sum, round(amount, scale));
                }
                Ok(None) => prop_assert!(weights.iter().all(|(m, _)| *m == 0)),
                Err(e) => prop_assert!(false, "{amount} at {scale}: {e}"),
            }
        }
    }

    /// One reading of a typed amount for the command line, the page and the
    /// rules: what each took before, it takes now.
    #[test]
    fn typed_amounts() {
        // Decimal's largest is 79228162514264337593543950335 (29 digits).
        let too_many_digits = "123456789012345678901234567890";
        let cases: [(&str, Result<&str, String>); 14] = [
            ("12.5", Ok("12.5")),
            (" 12.5 ", Ok("12.5")),
            ("\t12.50\n", Ok("12.50")),
            ("1e3", Ok("1000")),
            ("-0.5", Ok("-0.5")),
            (
                "0.000000000000000000000000001",
                Ok("0.000000000000000000000000001"),
            ),
            (
                "12345678901234567890123456789",
                Ok("12345678901234567890123456789"),
            ),
            ("+1", Err("`+1`".into())),
            ("1,000", Err("`1,000`".into())),
            ("", Err("``".into())),
            ("NaN", Err("`NaN`".into())),
            ("1e400", Err("`1e400`".into())),
            (
                "0.00000000000000000000000000001",
                Err("`0.00000000000000000000000000001`".into()),
            ),
            (too_many_digits, Err(format!("`{too_many_digits}`"))),
        ];
        for (text, want) in cases {
            let read = parse_amount("--min-total", text)
                .map(|amount| amount.to_string())
                .map_err(|e| e.to_string());
            let want = want
                .map(str::to_string)
                .map_err(|shown| format!("--min-total: {shown} is not a decimal number"));
            assert_eq!(read, want, "{text:?}");
        }
    }
}
