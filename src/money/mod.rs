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
//! Weights are converted to integers at a common scale. When that does not fit in
//! 128 bits (e.g. weights with 28 decimals), each weight is first normalised to a
//! share with 18 decimals — still deterministic, and the parts still sum exactly.
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
/// exactly in integers ([`small_ratio`]); anything else goes through decimal
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
    if scale > MAX_SCALE {
        return Err(Error::config(format!(
            "precision {scale} is above the maximum of {MAX_SCALE} decimal places"
        )));
    }
    let merged = merge(weights)?;
    let (keys, weights): (Vec<K>, Vec<Decimal>) = merged.into_iter().unzip();
    let Some(int_weights) = integer_weights(&weights)? else {
        return Ok(None);
    };
    let rounded = round(amount, scale);
    let units = to_units(rounded.abs(), scale)?;
    let parts = apportion_units(units, &int_weights)?;
    let negative = rounded.is_sign_negative();
    keys.into_iter()
        .zip(parts)
        .map(|(key, part)| {
            let value = from_units(part, scale)?;
            Ok((key, if negative { -value } else { value }))
        })
        .collect::<Result<Vec<_>, Error>>()
        .map(Some)
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
        if weight.is_sign_negative() && !weight.is_zero() {
            return Err(Error::config(format!(
                "negative weight {weight} in an apportionment"
            )));
        }
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

/// The weights as integers proportional to them, or `None` if they are all zero.
fn integer_weights(weights: &[Decimal]) -> Result<Option<Vec<u128>>, Error> {
    if weights.iter().all(Decimal::is_zero) {
        return Ok(None);
    }
    if let Some(exact) = exact_integer_weights(weights) {
        return Ok(Some(exact));
    }
    normalised_weights(weights).map(Some)
}

/// Exact integers at the weights' common scale, when they fit comfortably
/// (below 2^96 each, so `units × weight` fits in 128 bits for sane amounts).
fn exact_integer_weights(weights: &[Decimal]) -> Option<Vec<u128>> {
    let scale = weights.iter().map(Decimal::scale).max().unwrap_or(0);
    let limit: u128 = 1 << 96;
    weights
        .iter()
        .map(|w| {
            let mantissa = u128::try_from(w.mantissa()).ok()?;
            let factor = 10u128.checked_pow(scale.checked_sub(w.scale())?)?;
            mantissa.checked_mul(factor).filter(|v| *v < limit)
        })
        .collect()
}

/// Each weight as its share of the total with 18 decimals, as an integer.
fn normalised_weights(weights: &[Decimal]) -> Result<Vec<u128>, Error> {
    let total = weights
        .iter()
        .try_fold(Decimal::ZERO, |acc, w| acc.checked_add(*w))
        .ok_or_else(|| Error::overflow("summing apportionment weights"))?;
    let scale = Decimal::from(1_000_000_000_000_000_000u64);
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
/// ties go to the lower index (the caller orders indices by key).
pub fn apportion_units(units: u128, weights: &[u128]) -> Result<Vec<u128>, Error> {
    let total = weights
        .iter()
        .try_fold(0u128, |acc, w| acc.checked_add(*w))
        .ok_or_else(|| Error::overflow("summing weights"))?;
    if total == 0 {
        return Err(Error::overflow("apportioning over zero total weight"));
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut given = 0u128;
    for (index, weight) in weights.iter().enumerate() {
        let (part, remainder) = units
            .checked_mul(*weight)
            .and_then(|product| div_rem(product, total))
            .ok_or_else(|| Error::overflow("amount × weight in an apportionment"))?;
        parts.push(part);
        remainders.push((remainder, index));
        given = given
            .checked_add(part)
            .ok_or_else(|| Error::overflow("apportioned parts"))?;
    }
    let left = units
        .checked_sub(given)
        .ok_or_else(|| Error::overflow("apportioned parts"))?;
    // Largest remainder first; equal remainders by ascending index (= key
    // order). Only which `left` come first matters, not their order: a
    // selection, linear, rather than a sort (the order is total: indices differ).
    let left = usize::try_from(left).unwrap_or(usize::MAX);
    if left > 0 && left < remainders.len() {
        remainders.select_nth_unstable_by(left - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    }
    for &(_, index) in remainders.iter().take(left) {
        if let Some(part) = parts.get_mut(index) {
            *part = part
                .checked_add(1)
                .ok_or_else(|| Error::overflow("apportioned parts"))?;
        }
    }
    Ok(parts)
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
    }
}
