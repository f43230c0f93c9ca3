//! The seed's worked example ($33 across lkc-123, lcc-456, lfcp-789, Cluster
//! Linking, Schema Registry and Support, four service accounts), reproduced row by
//! row against expected files written by hand from the rules (see
//! testdata/seed33/README.md for the arithmetic).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{read, run_files};
use rust_decimal::Decimal;
use tally::model::EntityLevel;
use tally::session::Options;

const FILES: [&str; 3] = [
    "seed33/bill.csv",
    "seed33/usage.csv",
    "seed33/crosswalk.csv",
];

#[test]
fn confluent_export_matches_the_hand_written_golden() {
    let (report, files) = run_files(Options::default(), &FILES, 1 << 16);
    for f in &files {
        assert_eq!(f.rows_rejected, 0, "{f:?}");
    }
    assert_eq!(
        report.confluent_csv(),
        read("seed33/expected_confluent.csv")
    );
    let total: Decimal = report.rows.iter().map(|r| r.chargeback_cost).sum();
    assert_eq!(total, Decimal::from(33));
    assert!(report.reconciliation.balanced);
}

#[test]
fn team_summary_matches_the_hand_written_golden() {
    let (report, _) = run_files(Options::default(), &FILES, 7);
    assert_eq!(
        report.team_summary_csv(),
        read("seed33/expected_team_summary.csv")
    );
    assert!(
        report.unmatched_owners.is_empty(),
        "{:?}",
        report.unmatched_owners
    );
}

#[test]
fn any_chunking_and_file_order_give_the_same_report() {
    let (a, _) = run_files(Options::default(), &FILES, 1 << 16);
    let reversed: Vec<&str> = FILES.iter().rev().copied().collect();
    for chunk in [1, 3, 64, 4096] {
        let (b, _) = run_files(Options::default(), &reversed, chunk);
        assert_eq!(a.confluent_csv(), b.confluent_csv(), "chunk {chunk}");
        assert_eq!(a.team_summary_csv(), b.team_summary_csv(), "chunk {chunk}");
    }
}

#[test]
fn topic_level_splits_the_same_bill_over_topics() {
    let options = Options {
        entity_level: EntityLevel::Topic,
        ..Options::default()
    };
    let (report, _) = run_files(options, &FILES, 1 << 16);
    let write: Vec<(String, String)> = report
        .rows
        .iter()
        .filter(|r| r.line.line_type == "KafkaNetworkWrite")
        .map(|r| (r.owner_id.to_string(), r.chargeback_cost.to_string()))
        .collect();
    assert_eq!(
        write,
        [
            ("orders.events".to_string(), "2.00".to_string()),
            ("payments.orders".into(), "1.50".into()),
            ("payments.refunds".into(), "2.50".into())
        ]
    );
    // The rows of the steps that charge the line's resource, environment or
    // owner of record are principal-level (their owner is no topic), and
    // Support, allocated last, follows each owner's level.
    let (p, t) = ("principal", "topic");
    let levels: Vec<(&str, &str, &str)> = report
        .rows
        .iter()
        .map(|r| {
            let level = match r.line.level {
                EntityLevel::Principal => p,
                EntityLevel::Topic => t,
            };
            (&*r.owner_id, &*r.line.method, level)
        })
        .collect();
    assert_eq!(
        levels,
        [
            ("lkc-123", "owner_of_record", p),
            ("lkc-123", "owner_of_record", p),
            ("env-xxx", "environment", p),
            ("orders.events", "usage_ratio", t),
            ("payments.orders", "usage_ratio", t),
            ("orders.events", "usage_ratio", t),
            ("payments.orders", "usage_ratio", t),
            ("payments.refunds", "usage_ratio", t),
            ("orders.events", "weighted", t),
            ("payments.orders", "weighted", t),
            ("payments.refunds", "weighted", t),
            ("lkc-123", "owner_of_record", p),
            ("env-xxx", "allocated_last", p),
            ("lkc-123", "allocated_last", p),
            ("orders.events", "allocated_last", t),
            ("payments.orders", "allocated_last", t),
            ("payments.refunds", "allocated_last", t),
        ]
    );
    let total: Decimal = report.rows.iter().map(|r| r.chargeback_cost).sum();
    assert_eq!(total, Decimal::from(33));
}

#[test]
fn the_rows_of_one_cost_line_share_one_line_record() {
    // What keeps rows small (see `AllocationRow`): a line's rows point to one
    // shared `AllocatedLine`, and rows of different lines never do.
    let (report, _) = run_files(Options::default(), &FILES, 1 << 16);
    let key = |r: &tally::model::AllocationRow| {
        let l = &r.line;
        (
            l.bucket_start,
            l.resource_id.to_string(),
            l.line_type.to_string(),
            l.source.clone(),
        )
    };
    let mut shared = 0;
    for (i, a) in report.rows.iter().enumerate() {
        for b in &report.rows[i + 1..] {
            let same_line = key(a) == key(b) && a.owner_id != "unallocated";
            assert_eq!(
                std::sync::Arc::ptr_eq(&a.line, &b.line),
                same_line,
                "{a:?} / {b:?}"
            );
            shared += usize::from(same_line);
        }
    }
    // lkc-123's CKU line alone is split over four principals.
    assert!(shared >= 6, "{shared} pairs share a line");
}
