//! Property tests of the whole pipeline (bill + usage → session → report):
//! parts sum to the whole per line and bucket, input order changes nothing,
//! buckets sum to the period, each entity's buckets stay within the rounding
//! bound of its whole-period allocation, all-zero usage falls back, credits
//! stay negative, and allocating the buckets on several threads gives the
//! one-thread report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{run_bytes, session_of};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use tally::session::Options;
use tally::time::Granularity;

const PRODUCTS: [(&str, &str); 6] = [
    ("kafka", "KafkaNetworkWrite"),
    ("kafka", "KafkaNetworkRead"),
    ("kafka", "KafkaNumCKUs"),
    ("kafka", "KafkaStorage"),
    ("support", "Support"),
    ("tableflow", "TableflowStorage"),
];

#[derive(Debug, Clone)]
struct Line {
    product: usize,
    cluster: u8,
    start_day: u8,
    days: u8,
    cents: i64,
}

#[derive(Debug, Clone)]
struct Use {
    cluster: u8,
    principal: u8,
    day: u8,
    produced: bool,
    value: u64,
}

fn lines() -> impl Strategy<Value = Vec<Line>> {
    proptest::collection::vec(
        (
            0..PRODUCTS.len(),
            0u8..3,
            0u8..20,
            1u8..10,
            -5_000i64..100_000,
        )
            .prop_map(|(product, cluster, start_day, days, cents)| Line {
                product,
                cluster,
                start_day,
                days,
                cents,
            }),
        1..12,
    )
}

fn usage() -> impl Strategy<Value = Vec<Use>> {
    proptest::collection::vec(
        (0u8..3, 0u8..6, 0u8..28, any::<bool>(), 0u64..1_000_000).prop_map(
            |(cluster, principal, day, produced, value)| Use {
                cluster,
                principal,
                day,
                produced,
                value,
            },
        ),
        0..30,
    )
}

fn date(day: u8) -> String {
    format!("2026-04-{:02}", day + 1)
}

fn bill_csv(lines: &[Line]) -> String {
    let mut out =
        String::from("start_date,end_date,product,line_type,resource_id,environment_id,amount\n");
    for l in lines {
        // Credits get their own line type, so they never net against a charge.
        let (product, line_type) = if l.cents < 0 {
            ("kafka", "KafkaRefund")
        } else {
            PRODUCTS[l.product]
        };
        let end = l.start_day + l.days;
        let end = if end >= 30 {
            "2026-05-01".to_string()
        } else {
            date(end)
        };
        let resource = if product == "support" {
            String::new()
        } else {
            format!("lkc-{}", l.cluster)
        };
        out.push_str(&format!(
            "{},{end},{product},{line_type},{resource},env-1,{}\n",
            date(l.start_day),
            Decimal::new(l.cents, 2)
        ));
    }
    out
}

/// One usage row: `u` in the five minutes from `hour` on `day` of April.
fn usage_row(u: &Use, day: u8, hour: u8) -> String {
    let metric = if u.produced {
        "produced_bytes"
    } else {
        "consumed_bytes"
    };
    format!(
        "1,{d}T{hour:02}:00:00Z,{d}T{hour:02}:05:00Z,lkc-{},sa-{},mtls,t{},{metric},{}\n",
        u.cluster,
        u.principal,
        u.principal % 2,
        u.value,
        d = date(day)
    )
}

fn usage_csv(rows: &[Use]) -> String {
    let mut out = String::from(common::USAGE_HEADER);
    for u in rows {
        out.push_str(&usage_row(u, u.day, 1));
    }
    out
}

fn run(lines: &[Line], usage: &[Use], granularity: Granularity) -> tally::report::Report {
    let options = Options {
        granularity,
        ..Options::default()
    };
    run_bytes(
        options,
        &[
            ("bill.csv", bill_csv(lines).into_bytes()),
            ("usage.csv", usage_csv(usage).into_bytes()),
        ],
        64,
    )
    .0
}

/// The same usage in each hour of the first `days` days of April: each of
/// `profile`'s rows in every hour (their days are not used).
fn steady_usage_csv(profile: &[Use], days: u8) -> String {
    let mut out = String::from(common::USAGE_HEADER);
    for day in 0..days {
        for hour in 0..24 {
            for u in profile {
                out.push_str(&usage_row(u, day, hour));
            }
        }
    }
    out
}

/// Line identities: (product, line type, resource).
type LineIds = BTreeSet<(String, String, String)>;

/// Each owner's total in a report, and the line identities it has rows of.
fn owner_totals(report: &tally::report::Report) -> BTreeMap<String, (Decimal, LineIds)> {
    let mut out: BTreeMap<String, (Decimal, LineIds)> = BTreeMap::new();
    for r in &report.rows {
        let slot = out.entry(r.owner_id.to_string()).or_default();
        slot.0 += r.chargeback_cost;
        slot.1.insert((
            r.line.product.to_string(),
            r.line.line_type.to_string(),
            r.line.resource_id.to_string(),
        ));
    }
    out
}

proptest! {
    // Small inputs (well under a millisecond a case), and a rounding slip
    // shows only with enough principals on a line: more cases than the others.
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Summing an entity's buckets gives its whole-period allocation to
    /// within the rounding: hourly or daily buckets against one monthly
    /// bucket, the same bill and usage.
    ///
    /// The wording, "within one minimal unit per bucket" of the
    /// buckets the entity appears in, cannot hold as such, for three reasons
    /// found by this property (minimal cases; amounts at cents):
    /// - A bucket's split follows that bucket's usage: a 2-day line of 2.00,
    ///   sa-1 producing only on day 1 and sa-2 only on day 2, is 1.00 each by
    ///   day and whatever the month's bytes say by month. So the inputs here
    ///   have the same usage in every hour and every line spans the whole
    ///   period (the buckets' shares are the period's).
    /// - A sub-unit part goes to the largest remainder: KafkaNetworkWrite 0.46
    ///   over 72 hours is 0.0064 an hour, a cent every hour or two; each cent
    ///   goes to the principal with the larger share (rotation is for equal
    ///   remainders only), so sa-5 with 30% of the bytes has no hourly row at
    ///   all (0 buckets) and 0.14 for the month. The bound counts every
    ///   bucket of the period, not only those the entity has rows in.
    /// - A weighted rule rounds each component on its own: a CKU line (70%
    ///   by bytes, 30% even) of 44.52 over 3 days gave sa-0 21.33 by day and
    ///   21.29 by month, 4 cents over 3 buckets. Each line the entity shares
    ///   counts once per split (two for the CKU rule's components).
    ///
    /// So the bound is one unit per bucket (plus one for the monthly
    /// figure's own rounding), per line identity the entity has rows of in
    /// either run, per split of that line's rule. Allocated-last lines
    /// (Support) are left out: their weights are the bucket's rounded owner
    /// totals, so in the hours where the other lines round to nothing they
    /// go unallocated (Support 9.34 + KafkaNetworkRead 0.24 over 3 days,
    /// sa-3 alone using the cluster: 3.12 of Support to sa-3 hourly, 9.34
    /// monthly, the rest unallocated).
    #[test]
    fn each_entity_sums_over_buckets_to_its_whole_period_allocation(
        lines in proptest::collection::vec(
            (0..PRODUCTS.len(), 0u8..3, -500i64..5_000)
                .prop_filter("allocated last", |(product, _, _)| PRODUCTS[*product].1 != "Support"),
            1..6,
        ),
        usage in usage(),
        days in 1u8..4,
        hourly in any::<bool>(),
    ) {
        let lines: Vec<Line> = lines
            .into_iter()
            .map(|(product, cluster, cents)| Line { product, cluster, start_day: 0, days, cents })
            .collect();
        let inputs = [
            ("bill.csv", bill_csv(&lines).into_bytes()),
            ("usage.csv", steady_usage_csv(&usage, days).into_bytes()),
        ];
        let (granularity, buckets) = if hourly {
            (Granularity::Hourly, 24 * u64::from(days))
        } else {
            (Granularity::Daily, u64::from(days))
        };
        let report = |granularity| run_bytes(Options { granularity, ..Options::default() }, &inputs, 4096).0;
        let by_bucket = owner_totals(&report(granularity));
        let whole = owner_totals(&report(Granularity::Monthly));
        let owners: BTreeSet<&String> = by_bucket.keys().chain(whole.keys()).collect();
        let nothing = (Decimal::ZERO, BTreeSet::new());
        for owner in owners {
            let (summed, lines_a) = by_bucket.get(owner).unwrap_or(&nothing);
            let (period, lines_b) = whole.get(owner).unwrap_or(&nothing);
            let units: u64 = lines_a
                .union(lines_b)
                .map(|(_, line_type, _)| if line_type == "KafkaNumCKUs" { 2 } else { 1 })
                .sum::<u64>()
                * (buckets + 1);
            let bound = Decimal::new(i64::try_from(units).unwrap(), 2);
            prop_assert!(
                (summed - period).abs() <= bound,
                "{owner}: {summed} over {buckets} buckets, {period} for the period (bound {bound})"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn parts_sum_per_line_and_bucket_and_buckets_sum_to_the_period(lines in lines(), usage in usage()) {
        let report = run(&lines, &usage, Granularity::Daily);
        let bill: Decimal = lines.iter().map(|l| Decimal::new(l.cents, 2)).sum();
        let charged: Decimal = report.rows.iter().map(|r| r.chargeback_cost).sum();
        prop_assert_eq!(charged, bill);
        prop_assert!(report.reconciliation.balanced);
        for b in &report.buckets {
            let in_bucket: Decimal = report.rows.iter().filter(|r| r.line.bucket_start == b.bucket_start).map(|r| r.chargeback_cost).sum();
            prop_assert_eq!(in_bucket, b.bill_total);
        }
        let mut per_line: BTreeMap<(String, String, String), (Decimal, Decimal)> = BTreeMap::new();
        for r in report.rows.iter().filter(|r| r.owner_id != "unallocated") {
            let slot = per_line.entry((r.line.bucket_start.to_string(), r.line.line_type.to_string(), r.line.resource_id.to_string())).or_default();
            slot.0 += r.chargeback_cost;
            slot.1 = r.line.original_amount;
        }
        for (key, (sum, original)) in per_line {
            prop_assert_eq!(sum, original, "{:?}", key);
        }
        prop_assert!(report.rows.iter().all(|r| !r.chargeback_cost.is_zero()));
        let monthly = run(&lines, &usage, Granularity::Monthly);
        let monthly_total: Decimal = monthly.rows.iter().map(|r| r.chargeback_cost).sum();
        prop_assert_eq!(monthly_total, bill);
    }

    #[test]
    fn input_order_changes_nothing(lines in lines(), usage in usage(), seed in any::<u64>()) {
        let a = run(&lines, &usage, Granularity::Daily);
        let mut lines2 = lines.clone();
        let mut usage2 = usage.clone();
        lines2.reverse();
        if !usage2.is_empty() {
            let len = usage2.len();
            usage2.rotate_left((seed as usize) % len);
        }
        let b = run(&lines2, &usage2, Granularity::Daily);
        prop_assert_eq!(a.confluent_csv(), b.confluent_csv());
        prop_assert_eq!(a.team_summary_csv(), b.team_summary_csv());
    }

    #[test]
    fn threads_change_nothing(lines in lines(), usage in usage(), threads in 2usize..40) {
        let options = Options { granularity: Granularity::Daily, ..Options::default() };
        let inputs = [
            ("bill.csv", bill_csv(&lines).into_bytes()),
            ("usage.csv", usage_csv(&usage).into_bytes()),
        ];
        let (session, _) = session_of(options, &inputs, 64);
        let serial = session.allocate().unwrap();
        let parallel = session.allocate_on(threads).unwrap();
        prop_assert_eq!(serial.to_json(), parallel.to_json());
        prop_assert_eq!(serial.confluent_csv(), parallel.confluent_csv());
    }

    #[test]
    fn credits_stay_negative(lines in lines(), usage in usage()) {
        let report = run(&lines, &usage, Granularity::Monthly);
        let credits: Decimal = lines.iter().filter(|l| l.cents < 0).map(|l| Decimal::new(l.cents, 2)).sum();
        let entity_negative = report.rows.iter().any(|r| r.owner_id != "unallocated" && r.chargeback_cost.is_sign_negative());
        prop_assert!(!entity_negative, "a credit was split onto an entity");
        if credits < Decimal::ZERO {
            prop_assert!(report.reconciliation.credits_total <= Decimal::ZERO);
            prop_assert!(report.rows.iter().any(|r| r.owner_id == "unallocated" && r.line.reason.contains("credit")));
        }
    }
}

#[test]
fn all_zero_usage_falls_back_along_the_chain() {
    let lines = [Line {
        product: 0,
        cluster: 1,
        start_day: 0,
        days: 30,
        cents: 600,
    }];
    let zero = [Use {
        cluster: 1,
        principal: 1,
        day: 3,
        produced: true,
        value: 0,
    }];
    let report = run(&lines, &zero, Granularity::Monthly);
    assert_eq!(report.rows.len(), 1);
    let row = &report.rows[0];
    assert_eq!(
        (
            row.owner_id.as_str(),
            row.line.method.as_str(),
            row.line.chain_step
        ),
        ("lkc-1", "resource_owner", 2)
    );
    assert_eq!(row.line.reason, "no_active_principals");
    // Usage on another day of the period: even split over the principals seen in it.
    let other = [Use {
        cluster: 1,
        principal: 2,
        day: 3,
        produced: false,
        value: 5,
    }];
    let report = run(&lines, &other, Granularity::Monthly);
    assert_eq!(report.rows[0].line.method, "even_active");
    assert_eq!(report.rows[0].line.reason, "no_usage_found");
    // Daily: the one day with a principal splits over it; each other day had no
    // active principal, so its cost goes to the resource owner (the seed: "the
    // base cost on a cluster with no service-account activity for the bucket
    // would be attributed to the resource owner"), not over the period's principals.
    let report = run(&lines, &other, Granularity::Daily);
    let mut methods: Vec<(&str, &str, &str)> = report
        .rows
        .iter()
        .map(|r| {
            (
                r.owner_id.as_str(),
                r.line.method.as_str(),
                r.line.reason.as_str(),
            )
        })
        .collect();
    methods.sort();
    methods.dedup();
    assert_eq!(
        methods,
        [
            ("lkc-1", "resource_owner", "no_active_principals"),
            ("sa-2", "even_active", "no_usage_found"),
        ]
    );
}
