//! The default WarpStream rules allocate a WarpStream bill to topics (lifetime,
//! write bytes, write bytes × retention), and the result reads back as a
//! WarpStream chargebacks response. Expected numbers: testdata/warpstream-rules/README.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::run_files;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use tally::formats::warpstream::{read_chargebacks, write_chargebacks, WriteOptions};
use tally::model::EntityLevel;
use tally::session::Options;

const FILES: [&str; 2] = ["warpstream-rules/bill.csv", "warpstream-rules/usage.csv"];

#[test]
fn allocates_to_topics_by_lifetime_write_bytes_and_storage() {
    let (report, _) = run_files(Options::default(), &FILES, 1 << 16);
    let got: Vec<(String, String, String, String)> = report
        .rows
        .iter()
        .map(|r| {
            (
                r.line.line_type.to_string(),
                r.owner_id.to_string(),
                r.chargeback_cost.to_string(),
                r.line.method.to_string(),
            )
        })
        .collect();
    let want = [
        ("Cluster minutes", "orders", "7.50", "lifetime"),
        ("Cluster minutes", "payments", "2.50", "lifetime"),
        ("GiB minutes", "orders", "1.33", "storage"),
        ("GiB minutes", "payments", "4.67", "storage"),
        ("Uncompressed GiB written", "orders", "2.00", "usage_ratio"),
        (
            "Uncompressed GiB written",
            "payments",
            "1.00",
            "usage_ratio",
        ),
    ];
    let want: Vec<(String, String, String, String)> = want
        .iter()
        .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        .collect();
    assert_eq!(got, want);
    assert!(report
        .rows
        .iter()
        .all(|r| r.line.level == EntityLevel::Topic));
}

#[test]
fn written_back_as_warpstream_chargebacks_with_the_same_totals() {
    let (report, _) = run_files(Options::default(), &FILES, 1 << 16);
    let json = write_chargebacks(&report.rows, &report.lines, &WriteOptions::default()).unwrap();
    let back = read_chargebacks(json.as_bytes(), "back.json", "").unwrap();
    assert!(back.rejected.is_empty(), "{:?}", back.rejected);
    let mut totals: BTreeMap<String, Decimal> = BTreeMap::new();
    for row in &back.rows {
        *totals.entry(row.owner_id.to_string()).or_default() += row.chargeback_cost;
    }
    assert_eq!(
        totals.get("orders").map(ToString::to_string).as_deref(),
        Some("10.83")
    );
    assert_eq!(
        totals.get("payments").map(ToString::to_string).as_deref(),
        Some("8.17")
    );
}
