//! Rounding to the output precision: a bill of many sub-cent lines keeps its
//! money, already-allocated rows add up by team, credits and the rounding
//! are reported for what they are, and currencies are never merged.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::report_of;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;
use tally::session::Options;
use tally::time::Granularity;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const COSTS_HEADER: &str =
    "start_date,end_date,product,line_type,resource_id,environment_id,currency,amount\n";

/// April 2026 billed hour by hour: 720 lines of 0.004 on one cluster.
fn hourly_bill() -> String {
    let start = tally::time::Timestamp::parse("2026-04-01T00:00:00Z").unwrap();
    let mut text = COSTS_HEADER.to_string();
    for hour in 0..720 {
        let from = tally::time::Timestamp(start.0 + hour * 3600);
        let to = tally::time::Timestamp(from.0 + 3600);
        text.push_str(&format!(
            "{from},{to},KAFKA,KafkaBase,lkc-1,env-1,USD,0.004\n"
        ));
    }
    text
}

#[test]
fn sub_cent_lines_are_summed_before_they_are_rounded() {
    // (granularity, how many rows of each amount). Rounded line by line, every
    // one of the 720 lines was 0.00 and the whole 2.88 was lost.
    let cases: [(Granularity, &[(&str, usize)]); 3] = [
        (Granularity::Monthly, &[("2.88", 1)]),
        // 0.096 a day, rounded on the running total: 0.10 or 0.09.
        (Granularity::Daily, &[("0.09", 12), ("0.10", 18)]),
        // 0.004 an hour: a cent every 2 or 3 hours (the hours of 0.00 make no row).
        (Granularity::Hourly, &[("0.01", 288)]),
    ];
    for (granularity, expected) in cases {
        let options = Options {
            granularity,
            ..Options::default()
        };
        let report = report_of(options, &[("hourly.csv", "", &hourly_bill())]);
        let r = &report.reconciliation;
        assert_eq!(r.bill_total, d("2.88"), "{granularity:?}");
        assert_eq!(r.rounding, Decimal::ZERO, "{granularity:?}");
        assert!(r.balanced, "{granularity:?}: {:?}", r.explanations);
        let mut rows: BTreeMap<String, usize> = BTreeMap::new();
        for row in &report.rows {
            *rows.entry(row.chargeback_cost.to_string()).or_default() += 1;
        }
        let expected: BTreeMap<String, usize> =
            expected.iter().map(|(a, n)| (a.to_string(), *n)).collect();
        assert_eq!(rows, expected, "{granularity:?}");
    }
}

#[test]
fn exported_rows_are_rounded_so_that_teams_add_up_to_the_line() {
    // Two owners' halves of a 2.01 line, written with three decimals.
    let export =
        "timestamp,owner_id,environment_id,resource_id,product,line_type,unit,chargeback_cost\n\
        2026-04-01T00:00:00Z,sa-a,env-1,lkc-1,kafka,KafkaNetworkWrite,GB,1.005\n\
        2026-04-01T00:00:00Z,sa-b,env-1,lkc-1,kafka,KafkaNetworkWrite,GB,1.005\n";
    let crosswalk = "owner_id,team\nsa-a,alpha\nsa-b,beta\n";
    let report = report_of(
        Options::default(),
        &[("export.csv", "", export), ("crosswalk.csv", "", crosswalk)],
    );
    let rows: Vec<(String, String)> = report
        .rows
        .iter()
        .map(|r| (r.owner_id.to_string(), r.chargeback_cost.to_string()))
        .collect();
    // Cumulative over the line's owners in name order: 1.005 -> 1.01, 2.010 -> 2.01.
    assert_eq!(
        rows,
        [("sa-a", "1.01"), ("sa-b", "1.00")].map(|(o, a)| (o.to_string(), a.to_string()))
    );
    let teams: Vec<(String, String)> = report
        .teams
        .iter()
        .map(|t| (t.team.clone(), t.total.to_string()))
        .collect();
    assert_eq!(
        teams,
        [("alpha", "1.01"), ("beta", "1.00")].map(|(t, a)| (t.to_string(), a.to_string()))
    );
    assert_eq!(report.reconciliation.bill_total, d("2.01"));
    assert_eq!(report.reconciliation.rounding, Decimal::ZERO);
}

#[test]
fn credits_and_rounding_are_reported_as_what_they_are() {
    let line = |resource: &str, currency: &str, amount: &str| {
        format!("2026-04-01T00:00:00Z,2026-05-01T00:00:00Z,KAFKA,KafkaBase,{resource},env-1,{currency},{amount}\n")
    };
    // (lines, invoice subtotal, bill total, credits, rounding, an explanation expected)
    let cases = [
        // Two credits on the unallocated row with a charge that no usage claims.
        (
            vec![
                line("lkc-1", "USD", "1.00"),
                line("", "USD", "-0.01"),
                line("", "USD", "-0.07"),
            ],
            None,
            "0.92",
            "-0.08",
            "0",
            "credits and refunds of -0.08",
        ),
        // Three lines of 0.333: 0.99 once each is rounded; the invoice says the exact 0.999 rounded.
        (
            vec![
                line("lkc-1", "USD", "0.333"),
                line("lkc-2", "USD", "0.333"),
                line("lkc-3", "USD", "0.333"),
            ],
            Some("1.00"),
            "0.99",
            "0",
            "0.009",
            "the invoice subtotal differs by 0.01: the rounding above",
        ),
    ];
    for (lines, invoice, bill, credits, rounding, explanation) in cases {
        let options = Options {
            invoice_subtotal: invoice.map(d),
            ..Options::default()
        };
        let report = report_of(
            options,
            &[("bill.csv", "", &format!("{COSTS_HEADER}{}", lines.concat()))],
        );
        let r = &report.reconciliation;
        assert_eq!(
            (r.bill_total, r.credits_total, r.rounding),
            (d(bill), d(credits), d(rounding)),
            "{lines:?}"
        );
        assert!(
            r.explanations.iter().any(|e| e.contains(explanation)),
            "{lines:?}: {:?}",
            r.explanations
        );
    }
}

#[test]
fn unallocated_amounts_keep_their_currency() {
    let bill = format!(
        "{COSTS_HEADER}\
         2026-04-01T00:00:00Z,2026-05-01T00:00:00Z,KAFKA,KafkaBase,,,USD,-3.00\n\
         2026-04-01T00:00:00Z,2026-05-01T00:00:00Z,KAFKA,KafkaBase,,,EUR,-2.00\n"
    );
    let report = report_of(Options::default(), &[("bill.csv", "", &bill)]);
    let unallocated: Vec<(String, String)> = report
        .rows
        .iter()
        .map(|r| (r.line.currency.to_string(), r.chargeback_cost.to_string()))
        .collect();
    assert_eq!(
        unallocated,
        [("EUR", "-2.00"), ("USD", "-3.00")].map(|(c, a)| (c.to_string(), a.to_string()))
    );
}

#[test]
fn ties_turn_from_bucket_to_bucket() {
    // 10.00 of cluster base for April, three principals active every hour.
    let bill = format!(
        "{COSTS_HEADER}2026-04-01T00:00:00Z,2026-05-01T00:00:00Z,KAFKA,KafkaBase,lkc-1,env-1,USD,10.00\n"
    );
    let usage = hourly_usage(720, &["sa-a", "sa-b", "sa-c"], "produced_bytes");
    // (granularity, each principal's total): a bucket's split hands the cents
    // ties leave on from where the line's earlier buckets stopped, so over the
    // month they go round, however the month is cut. With ties to the first
    // name in every bucket, hourly made 7.20, 2.80, 0.00 (each hour's 0.01 or
    // 0.02 to sa-a first) and daily 3.40, 3.30, 3.30.
    let cases: [(Granularity, [&str; 3]); 3] = [
        (Granularity::Monthly, ["3.34", "3.33", "3.33"]),
        (Granularity::Daily, ["3.34", "3.33", "3.33"]),
        (Granularity::Hourly, ["3.34", "3.33", "3.33"]),
    ];
    for (granularity, expected) in cases {
        let report = bill_and_usage(granularity, &bill, &usage);
        let mut totals: BTreeMap<String, Decimal> = BTreeMap::new();
        for row in &report.rows {
            *totals.entry(row.owner_id.to_string()).or_default() += row.chargeback_cost;
        }
        let totals: Vec<String> = totals.values().map(|t| t.to_string()).collect();
        assert_eq!(totals, expected, "{granularity:?}");
    }
}

#[test]
fn support_follows_exact_usage_in_buckets_where_other_lines_round_to_nothing() {
    // 9.34 of Support and 0.24 of network over three days, one principal
    // active every hour. An hour's share of the network line is 0.00333: weighed
    // by rounded parts, the hours where it rounded to 0.00 left Support
    // unallocated (hourly: 3.12 to sa-3, 6.22 unallocated).
    let bill = format!(
        "{COSTS_HEADER}\
         2026-04-01T00:00:00Z,2026-04-04T00:00:00Z,SUPPORT,Support,,,USD,9.34\n\
         2026-04-01T00:00:00Z,2026-04-04T00:00:00Z,KAFKA,KafkaNetworkRead,lkc-1,env-1,USD,0.24\n"
    );
    let usage = hourly_usage(72, &["sa-3"], "consumed_bytes");
    for granularity in [
        Granularity::Monthly,
        Granularity::Daily,
        Granularity::Hourly,
    ] {
        let report = bill_and_usage(granularity, &bill, &usage);
        let mut totals: BTreeMap<(String, String), Decimal> = BTreeMap::new();
        for row in &report.rows {
            let key = (row.owner_id.to_string(), row.line.product.to_string());
            *totals.entry(key).or_default() += row.chargeback_cost;
        }
        let totals: Vec<(String, String, String)> = totals
            .into_iter()
            .map(|((owner, product), total)| (owner, product, total.to_string()))
            .collect();
        let expected = [("sa-3", "kafka", "0.24"), ("sa-3", "support", "9.34")]
            .map(|(o, p, t)| (o.to_string(), p.to_string(), t.to_string()));
        assert_eq!(totals, expected, "{granularity:?}");
    }
}

/// Usage of 100 of `metric` on lkc-1 by each of `principals`, every hour of
/// `hours` from April 1st, 2026.
fn hourly_usage(hours: i64, principals: &[&str], metric: &str) -> String {
    let start = tally::time::Timestamp::parse("2026-04-01T00:00:00Z").unwrap();
    let mut usage = common::USAGE_HEADER.to_string();
    for hour in 0..hours {
        let from = tally::time::Timestamp(start.0 + hour * 3600);
        let to = tally::time::Timestamp(from.0 + 3600);
        for principal in principals {
            usage.push_str(&format!(
                "1,{from},{to},lkc-1,{principal},sasl_plain,,{metric},100\n"
            ));
        }
    }
    usage
}

/// The report of `bill` and `usage` at `granularity`.
fn bill_and_usage(granularity: Granularity, bill: &str, usage: &str) -> tally::report::Report {
    let options = Options {
        granularity,
        ..Options::default()
    };
    report_of(options, &[("bill.csv", "", bill), ("usage.csv", "", usage)])
}
