//! WarpStream chargebacks JSON: the seed's example read and rolled up, a mixed
//! response (excluded, truncated, mismatched entity, subjects), malformed input,
//! and the writer's round trip and filters.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;
use tally::error::Error;
use tally::formats::warpstream::{self, read_chargebacks, write_chargebacks, WriteOptions};
use tally::model::EntityLevel;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/testdata/warpstream/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn seed_example_is_read_exactly_and_rolls_up() {
    let r = read_chargebacks(
        &testdata("example_get_past.json"),
        "example_get_past.json",
        "",
    )
    .unwrap();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.date_from.to_string(), "2026-05-01T00:00:00Z");
    assert_eq!(r.date_to.to_string(), "2026-06-01T00:00:00Z");
    assert_eq!(r.covers_products.len(), 5);
    assert_eq!(r.clusters.len(), 1);
    let c = &r.clusters[0];
    assert_eq!(
        (
            c.tenant_id.as_str(),
            c.workspace_id.as_str(),
            c.workspace_name.as_str()
        ),
        ("ti_xxx", "wi_xxx", "Production")
    );
    assert_eq!(c.cluster_regions, vec!["us-east-1".to_string()]);
    assert_eq!(
        c.entities[0].chargebacks[1].quantity,
        d("110.25601800903678")
    );
    assert_eq!(c.entities[0].chargebacks[2].unit_price, d("0.00000463"));

    // Rows: orders × 3 products, at topic level, exact totals.
    let got: Vec<(&str, &str, &str, Decimal, &str)> = r
        .rows
        .iter()
        .map(|x| {
            assert_eq!(x.line.level, EntityLevel::Topic);
            assert_eq!(x.line.resource_id, "vci_xxx");
            assert_eq!(x.line.environment_id, "wi_xxx");
            assert_eq!(x.line.product, "kafka");
            assert_eq!(x.usage_share, Decimal::ONE);
            assert_eq!(x.chargeback_cost, x.line.original_amount);
            (
                x.owner_id.as_str(),
                x.line.line_type.as_str(),
                x.line.unit.as_str(),
                x.chargeback_cost,
                x.line.method.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "orders",
                "Cluster minutes",
                "minute",
                d("5.42"),
                "entity_lifetime"
            ),
            (
                "orders",
                "Uncompressed GiB written",
                "GiB",
                d("1.1"),
                "write_bytes_share"
            ),
            (
                "orders",
                "GiB minutes",
                "GiB-minute",
                d("0"),
                "write_bytes_times_retention"
            ),
        ]
    );
    assert_eq!(r.allocated_total().unwrap(), d("6.52"));
    // Roll-up by topic equals the entity total.
    let mut by_topic: BTreeMap<&str, Decimal> = BTreeMap::new();
    for row in &r.rows {
        *by_topic.entry(&row.owner_id).or_default() += row.chargeback_cost;
    }
    assert_eq!(by_topic, BTreeMap::from([("orders", d("6.52"))]));
    // Cluster-level lines: unit price read as cents → USD.
    let lines: Vec<(&str, Decimal, Decimal, Decimal)> = r
        .cost_lines
        .iter()
        .map(|l| (l.line_type.as_str(), l.amount, l.quantity, l.price))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("Cluster minutes", d("5.42"), d("2340"), d("0.0023148")),
            (
                "GiB minutes",
                d("0"),
                d("1343.727466603741"),
                d("0.0000000463")
            ),
            (
                "Uncompressed GiB written",
                d("1.1"),
                d("110.25601800903678"),
                d("0.01")
            ),
        ]
    );
    assert!(r.excluded.is_empty() && r.truncated_clusters.is_empty());
}

#[test]
fn mixed_response_excluded_truncated_mismatch_and_subjects() {
    let r = read_chargebacks(&testdata("mixed_get_pending.json"), "mixed.json", "org-1").unwrap();
    // The mismatched entity is refused with its path and line; the rest is read.
    assert_eq!(r.rejected.len(), 1);
    match &r.rejected[0] {
        Error::Input { at, reason } => {
            assert_eq!(at.file, "mixed.json");
            assert_eq!(
                at.column,
                "tenants[0].workspaces[0].clusters[0].entities[2].total"
            );
            assert_eq!(at.line, 43); // the `total` field
            assert!(
                reason.contains("9.99") && reason.contains("bad-topic"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.rejected_total, d("9.99"));
    assert_eq!(r.rows.len(), 8);
    assert!(r.rows.iter().all(|x| x.line.org_id == "org-1"));
    assert_eq!(r.allocated_total().unwrap(), d("175.68"));
    let line_sum: Decimal = r.cost_lines.iter().map(|l| l.amount).sum();
    assert_eq!(line_sum, d("175.68"));
    assert_eq!(r.cost_lines.len(), 6);
    let minutes_a = r
        .cost_lines
        .iter()
        .find(|l| l.resource_id == "vci_a" && l.line_type == "Cluster minutes")
        .unwrap();
    assert_eq!(minutes_a.amount, d("108.75"));
    assert_eq!(minutes_a.quantity, d("46980"));
    // usage_share within the cluster's product.
    let payments = r
        .rows
        .iter()
        .find(|x| x.owner_id == "payments" && x.line.line_type == "Cluster minutes")
        .unwrap();
    assert_eq!(payments.line.original_amount, d("108.75"));
    assert_eq!(
        payments.usage_share,
        (d("44640") / d("46980")).round_dp(12).normalize()
    );
    // Excluded and truncated clusters are reported, not apportioned.
    assert_eq!(r.excluded.len(), 1);
    assert_eq!(r.excluded[0].virtual_cluster_id, "vci_gone");
    assert_eq!(r.excluded[0].reason, "no_rollup");
    assert!(r.rows.iter().all(|x| x.line.resource_id != "vci_gone"));
    assert_eq!(r.truncated_clusters, vec!["vci_b".to_string()]);
    assert!(r
        .warnings
        .iter()
        .any(|w| w.contains("vci_b") && w.contains("truncated")));
    // Subjects map to schema_registry.
    let subject = r
        .rows
        .iter()
        .find(|x| x.owner_id == "orders-value")
        .unwrap();
    assert_eq!(
        (
            subject.line.product.as_str(),
            subject.line.environment_id.as_str()
        ),
        ("schema_registry", "wi_staging")
    );
    // Network lines are allocated by write-byte share.
    assert!(r
        .rows
        .iter()
        .filter(|x| x.line.line_type.starts_with("Network"))
        .all(|x| x.line.method == "write_bytes_share"));
}

#[test]
fn malformed_documents_and_items_give_clear_errors() {
    // (document, fatal?, expected field path, expected line)
    let cases: &[(&str, bool, &str, u64)] = &[
        ("", true, "", 1),
        ("not json", true, "", 1),
        ("{\"date_to\": \"2026-06-01\", \"tenants\": []}", true, "date_from", 1),
        ("{\"date_from\": \"2026-13-01\", \"date_to\": \"2026-06-01\", \"tenants\": []}", true, "date_from", 1),
        ("{\"date_from\": \"2026-06-01\", \"date_to\": \"2026-05-01\", \"tenants\": []}", true, "date_to", 1),
        ("{\"date_from\": \"2026-05-01\", \"date_to\": \"2026-06-01\"}", true, "tenants", 1),
        ("{\"date_from\": \"2026-05-01\", \"date_to\": \"2026-06-01\", \"tenants\": {}}", true, "tenants", 1),
        (
            "{\"date_from\": \"2026-05-01\", \"date_to\": \"2026-06-01\", \"tenants\": [{\"tenant_id\": 5, \"workspaces\": []}]}",
            false,
            "tenants[0].tenant_id",
            1,
        ),
        (
            "{\"date_from\": \"2026-05-01\", \"date_to\": \"2026-06-01\", \"tenants\": [{\"workspaces\": [{\"clusters\": [\n{\"cluster_name\": \"x\", \"entities\": []}]}]}]}",
            false,
            "tenants[0].workspaces[0].clusters[0].virtual_cluster_id",
            2,
        ),
        (
            "{\"date_from\": \"2026-05-01\", \"date_to\": \"2026-06-01\", \"tenants\": [{\"workspaces\": [{\"clusters\": [\n{\"virtual_cluster_id\": \"v\"}]}]}]}",
            false,
            "tenants[0].workspaces[0].clusters[0].entities",
            2,
        ),
        (
            "{\"date_from\": \"2026-05-01\", \"date_to\": \"2026-06-01\", \"tenants\": [{\"workspaces\": [{\"clusters\": [{\"virtual_cluster_id\": \"v\", \"entities\": [\n{\"name\": \"t\", \"total\": 1, \"chargebacks\": [\n{\"product\": \"Cluster minutes\", \"unit_price\": \"abc\", \"quantity\": 1, \"total\": 1}]}]}]}]}]}",
            false,
            "tenants[0].workspaces[0].clusters[0].entities[0].chargebacks[0].unit_price",
            3,
        ),
        (
            "{\"date_from\": \"2026-05-01\", \"date_to\": \"2026-06-01\", \"tenants\": [{\"workspaces\": [{\"clusters\": [{\"virtual_cluster_id\": \"v\", \"entities\": [\n{\"name\": \"t\", \"total\": 1e400, \"chargebacks\": []}]}]}]}]}",
            false,
            "tenants[0].workspaces[0].clusters[0].entities[0].total",
            2,
        ),
        (
            "{\"date_from\": \"2026-05-01\", \"date_to\": \"2026-06-01\", \"tenants\": [{\"workspaces\": [{\"clusters\": [{\"virtual_cluster_id\": \"v\", \"entities\": [\n{\"name\": \"t\", \"total\": 2, \"chargebacks\": [{\"product\": \"p\", \"unit_price\": 1, \"quantity\": 1, \"total\": 1},\n{\"product\": \"p\", \"unit_price\": 1, \"quantity\": 1, \"total\": 1}]}]}]}]}]}",
            false,
            "tenants[0].workspaces[0].clusters[0].entities[0].chargebacks[1].product",
            3,
        ),
    ];
    for (doc, fatal, path, line) in cases {
        let (at, _) = match read_chargebacks(doc.as_bytes(), "in.json", "") {
            Err(Error::Input { at, reason }) => {
                assert!(*fatal, "unexpectedly fatal: {doc}: {reason}");
                (at, reason)
            }
            Err(other) => panic!("{doc}: {other:?}"),
            Ok(r) => {
                assert!(!fatal, "expected a fatal error for {doc}");
                assert_eq!(r.rejected.len(), 1, "{doc}: {:?}", r.rejected);
                assert!(r.rows.is_empty());
                match r.rejected.into_iter().next().unwrap() {
                    Error::Input { at, reason } => (at, reason),
                    other => panic!("{other:?}"),
                }
            }
        };
        assert_eq!(at.file, "in.json");
        assert_eq!(at.column, *path, "{doc}");
        assert_eq!(at.line, *line, "{doc}");
    }
    // Not UTF-8.
    assert!(matches!(
        read_chargebacks(b"{\"date_from\": \"\xff\"}", "bin.json", ""),
        Err(Error::Input { .. })
    ));
}

#[test]
fn price_times_quantity_mismatch_and_uncovered_product_are_warnings() {
    let doc = r#"{"date_from": "2026-05-01", "date_to": "2026-06-01", "covers_products": ["Cluster minutes"],
      "tenants": [{"tenant_id": "t", "workspaces": [{"workspace_id": "w", "clusters": [{"virtual_cluster_id": "v",
        "entities": [{"name": "a", "total": 7, "chargebacks": [
          {"product": "Cluster minutes", "unit_price": 1, "quantity": 100, "total": 5},
          {"product": "Support", "unit_price": 200, "quantity": 1, "total": 2}]}]}]}]}]}"#;
    let r = read_chargebacks(doc.as_bytes(), "w.json", "").unwrap();
    assert!(r.rejected.is_empty());
    assert_eq!(r.rows.len(), 2);
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("unit_price 1 × quantity 100"));
    assert!(r.warnings[1].contains("`Support` is not in covers_products"));
}

#[test]
fn writer_round_trips_totals_and_structure() {
    let first = read_chargebacks(&testdata("mixed_get_pending.json"), "mixed.json", "").unwrap();
    let options = WriteOptions {
        read: first.read_clusters(""),
        excluded: first.excluded.clone(),
        ..WriteOptions::default()
    };
    let json = write_chargebacks(&first.rows, &first.cost_lines, &options).unwrap();
    assert_eq!(
        warpstream::sniff(json.as_bytes()),
        Some("warpstream_chargebacks")
    );
    let second = read_chargebacks(json.as_bytes(), "written.json", "").unwrap();
    assert!(second.rejected.is_empty(), "{:?}\n{json}", second.rejected);
    assert!(second.warnings.is_empty(), "{:?}\n{json}", second.warnings);
    assert_eq!(second.date_from, first.date_from);
    assert_eq!(second.date_to, first.date_to);
    assert_eq!(
        second.allocated_total().unwrap(),
        first.allocated_total().unwrap()
    );
    assert_eq!(second.excluded.len(), 1);
    assert_eq!(second.excluded[0].reason, "no_rollup");
    let key = |r: &tally::model::AllocationRow| {
        (
            r.line.resource_id.clone(),
            r.owner_id.clone(),
            r.line.line_type.clone(),
            r.chargeback_cost,
            r.line.product.clone(),
            r.line.method.clone(),
        )
    };
    let mut a: Vec<_> = first.rows.iter().map(key).collect();
    let mut b: Vec<_> = second.rows.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // Prices and quantities survive exactly: the line items' own, read.
    let strip = |l: &tally::model::CostLine| {
        (
            l.resource_id.clone(),
            l.line_type.clone(),
            l.amount,
            l.quantity,
            l.price,
        )
    };
    let mut la: Vec<_> = first.cost_lines.iter().map(strip).collect();
    let mut lb: Vec<_> = second.cost_lines.iter().map(strip).collect();
    la.sort();
    lb.sort();
    assert_eq!(la, lb);
    // Cluster metadata went through the options.
    let sr = second
        .clusters
        .iter()
        .find(|c| c.virtual_cluster_id == "vci_sr")
        .unwrap();
    assert_eq!(
        (
            sr.cluster_name.as_str(),
            sr.entity_kind.as_str(),
            sr.workspace_name.as_str()
        ),
        ("schemas", "subject", "Staging")
    );
    assert_eq!(
        second
            .clusters
            .iter()
            .find(|c| c.virtual_cluster_id == "vci_a")
            .unwrap()
            .storage_attribution_method
            .as_deref(),
        Some("write_bytes_times_retention")
    );
}

#[test]
fn writer_filters_entity_kind_min_total_and_max_entities() {
    let r = read_chargebacks(&testdata("mixed_get_pending.json"), "mixed.json", "").unwrap();
    // (entity_kind, min_total, max, expected (cluster, entity) list, truncated clusters)
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        u32,
        Vec<(&'a str, &'a str)>,
        Vec<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            None,
            None,
            500,
            vec![
                ("vci_a", "payments"),
                ("vci_a", "orders"),
                ("vci_b", "events"),
                ("vci_sr", "orders-value"),
            ],
            vec![],
        ),
        (
            Some("subject"),
            None,
            500,
            vec![("vci_sr", "orders-value")],
            vec![],
        ),
        (
            Some("topic"),
            Some("1"),
            500,
            vec![("vci_a", "payments"), ("vci_a", "orders")],
            vec![],
        ),
        (
            None,
            None,
            1,
            vec![
                ("vci_a", "payments"),
                ("vci_b", "events"),
                ("vci_sr", "orders-value"),
            ],
            vec!["vci_a"],
        ),
        (Some("table"), None, 500, vec![], vec![]),
    ];
    for (kind, min, max, expected, truncated) in cases {
        let options = WriteOptions {
            entity_kind: kind.map(str::to_string),
            min_total: min.map(d),
            max_entities_per_cluster: max,
            period: Some((r.date_from, r.date_to)),
            ..WriteOptions::default()
        };
        let json = write_chargebacks(&r.rows, &r.cost_lines, &options).unwrap();
        let back = read_chargebacks(json.as_bytes(), "w.json", "").unwrap();
        assert!(back.rejected.is_empty(), "{:?}", back.rejected);
        let got: Vec<(&str, &str)> = back
            .clusters
            .iter()
            .flat_map(|c| {
                c.entities
                    .iter()
                    .map(move |e| (c.virtual_cluster_id.as_str(), e.name.as_str()))
            })
            .collect();
        assert_eq!(got, expected, "{kind:?} {min:?} {max}");
        assert_eq!(back.truncated_clusters, truncated, "{kind:?} {min:?} {max}");
    }
    for bad in [0, 5001] {
        let options = WriteOptions {
            max_entities_per_cluster: bad,
            ..WriteOptions::default()
        };
        assert!(matches!(
            write_chargebacks(&r.rows, &r.cost_lines, &options),
            Err(Error::Config { .. })
        ));
    }
    let options = WriteOptions {
        entity_kind: Some("topics".into()),
        ..WriteOptions::default()
    };
    assert!(matches!(
        write_chargebacks(&r.rows, &r.cost_lines, &options),
        Err(Error::Config { .. })
    ));
    assert!(matches!(
        write_chargebacks(&[], &[], &WriteOptions::default()),
        Err(Error::Config { .. })
    ));
}

#[test]
fn writer_apportions_quantity_from_cost_lines_across_buckets() {
    use std::sync::Arc;
    use tally::model::{AllocatedLine, AllocationRow, CostLine, RowSource, Source};
    use tally::time::Timestamp;
    let t = |s: &str| Timestamp::parse(s).unwrap();
    let line = CostLine {
        source: Source {
            file: "bill.json".into(),
            line: 7,
        },
        org_id: String::new(),
        id: "l1".into(),
        product: "kafka".into(),
        line_type: "Uncompressed GiB written".into(),
        resource_id: "vci_x".into(),
        environment_id: "wi_x".into(),
        start: t("2026-05-01"),
        end: t("2026-06-01"),
        amount: d("30"),
        original_amount: d("30"),
        quantity: d("3000"),
        unit: "GiB".into(),
        price: d("0.01"),
        currency: "USD".into(),
        active_fraction: None,
        owner_of_record: String::new(),
        charge_category: String::new(),
        charge_frequency: String::new(),
        bill_columns: Default::default(),
        charge_columns: None,
    };
    let row = |owner: &str, start: &str, end: &str, cost: &str| AllocationRow {
        line: Arc::new(AllocatedLine {
            bucket_start: t(start),
            bucket_end: t(end),
            partial_bucket: false,
            org_id: "ti".into(),
            level: EntityLevel::Topic,
            environment_id: "wi_x".into(),
            resource_id: "vci_x".into(),
            product: "kafka".into(),
            line_type: "Uncompressed GiB written".into(),
            unit: "GiB".into(),
            original_amount: d("15"),
            quantity: Decimal::ZERO,
            currency: "USD".into(),
            method: "usage_ratio".into(),
            chain_step: 0,
            reason: "usage_found".into(),
            source: RowSource {
                file: "bill.json".into(),
                line: 7,
            },
            bill_columns: Default::default(),
        }),
        owner_id: owner.into(),
        chargeback_cost: d(cost),
        usage_share: Decimal::ZERO,
    };
    let mut principal_row = row("sa-x", "2026-05-01", "2026-05-16", "99");
    Arc::make_mut(&mut principal_row.line).level = EntityLevel::Principal;
    let rows = vec![
        row("a", "2026-05-01", "2026-05-16", "10"),
        row("b", "2026-05-01", "2026-05-16", "5"),
        row("a", "2026-05-16", "2026-06-01", "15"),
        principal_row,
    ];
    let json = write_chargebacks(&rows, &[line], &WriteOptions::default()).unwrap();
    let back = read_chargebacks(json.as_bytes(), "w.json", "").unwrap();
    assert!(
        back.rejected.is_empty() && back.warnings.is_empty(),
        "{json}"
    );
    assert_eq!(back.date_from, t("2026-05-01"));
    assert_eq!(back.date_to, t("2026-06-01"));
    let got: Vec<(String, Decimal, Decimal, Decimal)> = back.clusters[0]
        .entities
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.total,
                e.chargebacks[0].quantity,
                e.chargebacks[0].unit_price,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".into(), d("25"), d("2500"), d("1")),
            ("b".into(), d("5"), d("500"), d("1"))
        ]
    );
    assert_eq!(back.clusters[0].tenant_id, "ti");
    assert!(
        json.contains("\"covers_products\": [\n    \"Uncompressed GiB written\"\n  ]"),
        "{json}"
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn example() -> Vec<u8> {
        testdata("mixed_get_pending.json")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = read_chargebacks(&bytes, "fuzz.json", "");
        }

        #[test]
        fn on_a_mutated_or_cut_response(at in 0usize..6000, byte in any::<u8>(), cut in 0usize..6000) {
            let mut doc = example();
            let len = doc.len();
            doc[at % len] = byte;
            doc.truncate(cut % (len + 1));
            if let Ok(r) = read_chargebacks(&doc, "fuzz.json", "") {
                // Whatever was read still adds up.
                let rows = r.allocated_total().unwrap();
                let lines: Decimal = r.cost_lines.iter().map(|l| l.amount).sum();
                prop_assert_eq!(rows, lines);
            }
        }
    }
}

#[test]
fn writer_puts_a_clusters_unallocated_remainder_back_into_the_cluster() {
    use std::sync::Arc;
    use tally::model::{AllocatedLine, AllocationRow, CostLine, Name, Source};
    use tally::time::Timestamp;
    let t = |s: &str| Timestamp::parse(s).unwrap();
    let line = CostLine {
        source: Source {
            file: "bill.csv".into(),
            line: 2,
        },
        org_id: String::new(),
        id: "l".into(),
        product: "kafka".into(),
        line_type: "Cluster minutes".into(),
        resource_id: "vci_x".into(),
        environment_id: "wi_x".into(),
        start: t("2026-05-01"),
        end: t("2026-06-01"),
        amount: d("10.00"),
        original_amount: d("10.00"),
        quantity: d("44640"),
        unit: "minute".into(),
        price: d("0.000224014"),
        currency: "USD".into(),
        active_fraction: None,
        owner_of_record: String::new(),
        charge_category: String::new(),
        charge_frequency: String::new(),
        bill_columns: Default::default(),
        charge_columns: None,
    };
    let topic_line = Arc::new(AllocatedLine {
        bucket_start: t("2026-05-01"),
        bucket_end: t("2026-06-01"),
        partial_bucket: false,
        org_id: Name::default(),
        level: EntityLevel::Topic,
        environment_id: "wi_x".into(),
        resource_id: "vci_x".into(),
        product: "kafka".into(),
        line_type: "Cluster minutes".into(),
        unit: "minute".into(),
        original_amount: d("10.00"),
        quantity: Decimal::ZERO,
        currency: "USD".into(),
        method: "lifetime".into(),
        chain_step: 0,
        reason: "usage_found".into(),
        source: (&line.source).into(),
        bill_columns: Name::default(),
    });
    let topic = |owner: &str, cost: &str| AllocationRow {
        line: topic_line.clone(),
        owner_id: owner.into(),
        chargeback_cost: d(cost),
        usage_share: Decimal::ZERO,
    };
    // The engine's one unallocated row for the bucket: 0.50 of this line that
    // found no topic, plus a -5.00 credit.
    let pool = AllocationRow {
        line: Arc::new(AllocatedLine {
            level: EntityLevel::Principal,
            environment_id: Name::default(),
            resource_id: Name::default(),
            product: Name::default(),
            line_type: Name::default(),
            original_amount: d("-4.50"),
            quantity: Decimal::ZERO,
            method: "unallocated".into(),
            ..(*topic_line).clone()
        }),
        owner_id: "unallocated".into(),
        chargeback_cost: d("-4.50"),
        usage_share: Decimal::ZERO,
    };
    let rows = vec![topic("orders", "7.50"), topic("payments", "2.00"), pool];
    let json = write_chargebacks(&rows, &[line], &WriteOptions::default()).unwrap();
    let back = read_chargebacks(json.as_bytes(), "w.json", "").unwrap();
    assert!(
        back.rejected.is_empty() && back.warnings.is_empty(),
        "{json}"
    );
    let got: Vec<(String, Decimal, Decimal)> = back.clusters[0]
        .entities
        .iter()
        .map(|e| (e.name.clone(), e.total, e.chargebacks[0].quantity))
        .collect();
    assert_eq!(
        got,
        vec![
            ("orders".into(), d("7.5"), d("33480")),
            ("payments".into(), d("2"), d("8928")),
            ("unallocated".into(), d("0.5"), d("2232")),
        ]
    );
    // The cluster line is whole again; the credit is not a cluster charge.
    assert_eq!(back.cost_lines[0].amount, d("10.00"));
}

/// A response with one cluster, `vci_1`, whose entities are `(name,
/// unit_price, total)`, the first on line 3 and each on a line of its own,
/// each with one `Cluster minutes` line item of quantity 1.
fn one_cluster<S: AsRef<str>>(entities: &[(S, S, S)]) -> String {
    let mut json = String::from(
        "{\"date_from\":\"2026-05-01\",\"date_to\":\"2026-06-01\",\"covers_products\":[\"Cluster minutes\"],\n\
         \"tenants\":[{\"tenant_id\":\"t1\",\"workspaces\":[{\"workspace_id\":\"w1\",\"clusters\":[{\"virtual_cluster_id\":\"vci_1\",\"cluster_name\":\"c\",\"entity_kind\":\"topic\",\"entities\":[",
    );
    for (i, (name, unit_price, total)) in entities.iter().enumerate() {
        let (name, unit_price, total) = (name.as_ref(), unit_price.as_ref(), total.as_ref());
        json.push_str(if i == 0 { "\n" } else { ",\n" });
        json.push_str(&format!(
            "{{\"name\":\"{name}\",\"chargebacks\":[{{\"product\":\"Cluster minutes\",\"unit_price\":{unit_price},\"quantity\":1,\"total\":{total}}}],\"total\":{total}}}"
        ));
    }
    json.push_str("]}]}]}]}");
    json
}

#[test]
fn an_entity_without_a_name_is_rejected_with_its_position() {
    let json = one_cluster(&[("orders", "100", "1"), ("", "100", "1"), ("  ", "100", "1")]);
    let r = read_chargebacks(json.as_bytes(), "ws.json", "").unwrap();
    let rejected: Vec<String> = r.rejected.iter().map(Error::to_string).collect();
    let at = "tenants[0].workspaces[0].clusters[0].entities";
    assert_eq!(
        rejected,
        [
            format!("ws.json:4 column `{at}[1].name`: empty; an entity needs a name"),
            format!("ws.json:5 column `{at}[2].name`: empty; an entity needs a name"),
        ]
    );
    let names: Vec<&str> = r.clusters[0]
        .entities
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["orders"]);
    assert_eq!(r.rejected_total, d("2"));
}

/// Entities as (name, unit_price, total).
type Entities = Vec<(String, String, String)>;

/// [`Entities`] from text.
fn entities(list: &[(&str, &str, &str)]) -> Entities {
    list.iter()
        .map(|(name, price, total)| (name.to_string(), price.to_string(), total.to_string()))
        .collect()
}

/// An entity whose name an earlier entity of its cluster has is refused. The
/// check compared each entity with every one before it: 100,000 entities in
/// one cluster took seconds (see the commit); the last case is that cluster.
#[test]
fn an_entity_named_twice_in_a_cluster_is_refused_with_its_line() {
    let at = "tenants[0].workspaces[0].clusters[0].entities";
    let twice = |i: usize, name: &str| {
        format!(
            "ws.json:{} column `{at}[{i}].name`: entity `{name}` appears twice in cluster `vci_1`; the second is refused",
            i + 3
        )
    };
    let topics: Vec<String> = (0..100_000).map(|i| format!("topic-{i}")).collect();
    let many: Entities = topics
        .iter()
        .chain([&topics[99_998]])
        .map(|name| (name.clone(), "100".into(), "1".into()))
        .collect();
    let not_a_number = format!("ws.json:3 column `{at}[0].chargebacks[0].unit_price`: `x` is not a number that fits a 28-digit decimal");
    // (entities; names accepted, in order; rejections; rejected total)
    let cases: [(Entities, Vec<String>, Vec<String>, &str); 4] = [
        (
            entities(&[("a", "100", "1"), ("b", "100", "1"), ("a", "100", "1")]),
            vec!["a".into(), "b".into()],
            vec![twice(2, "a")],
            "1",
        ),
        (
            entities(&[("a", "100", "1"), ("a", "100", "1"), ("a", "100", "1")]),
            vec!["a".into()],
            vec![twice(1, "a"), twice(2, "a")],
            "2",
        ),
        // A refused entity does not take its name: the next one is the first.
        (
            entities(&[("a", "\"x\"", "1"), ("a", "100", "1"), ("a", "100", "1")]),
            vec!["a".into()],
            vec![not_a_number, twice(2, "a")],
            "2",
        ),
        (many, topics, vec![twice(100_000, "topic-99998")], "1"),
    ];
    for (entities, accepted, rejected, rejected_total) in cases {
        let r = read_chargebacks(one_cluster(&entities).as_bytes(), "ws.json", "").unwrap();
        let names: Vec<&str> = r.clusters[0]
            .entities
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, accepted);
        let got: Vec<String> = r.rejected.iter().map(Error::to_string).collect();
        assert_eq!(got, rejected);
        assert_eq!(r.rejected_total, d(rejected_total));
    }
}

/// A cluster line's unit price is its product's one unit price in USD, or
/// amount ÷ quantity when its entities' prices differ. The distinct prices
/// were kept in a list searched and cloned per line item: 100,000 entities
/// each with its own price took 20 s (see the commit); the last case.
#[test]
fn a_cluster_lines_price_is_its_one_unit_price_or_the_average() {
    let many: Entities = (0..100_000)
        .map(|i| {
            (
                format!("topic-{i}"),
                format!("100.{i:06}"),
                format!("1.{i:08}"),
            )
        })
        .collect();
    // (entities; the cluster line's amount, quantity and price)
    let cases: [(Entities, [&str; 3]); 4] = [
        (
            entities(&[("a", "100", "1"), ("b", "100.0", "1")]),
            ["2", "2", "1"],
        ),
        (
            entities(&[("a", "100", "1"), ("b", "150", "1.5")]),
            ["2.5", "2", "1.25"],
        ),
        // Once two differ, a third like the first makes no one price.
        (
            entities(&[("a", "100", "1"), ("b", "150", "1.5"), ("c", "100", "1")]),
            ["3.5", "3", "1.1666666667"],
        ),
        (many, ["100049.9995", "100000", "1.000499995"]),
    ];
    for (entities, [amount, quantity, price]) in cases {
        let r = read_chargebacks(one_cluster(&entities).as_bytes(), "ws.json", "").unwrap();
        assert!(r.rejected.is_empty() && r.warnings.is_empty(), "{r:?}");
        let got: Vec<(Decimal, Decimal, Decimal)> = r
            .cost_lines
            .iter()
            .map(|l| (l.amount, l.quantity, l.price))
            .collect();
        assert_eq!(got, [(d(amount), d(quantity), d(price))]);
    }
}

/// A testdata file as text.
fn text(path: &str) -> String {
    common::read(path)
}

/// What a written response holds, read back: per cluster (tenant,
/// cluster, entity_kind or excluded_reason, [(entity, total)]).
type Written = Vec<(String, String, String, Vec<(String, String)>)>;

fn written(json: &str) -> Written {
    let back = read_chargebacks(json.as_bytes(), "written.json", "").unwrap();
    assert!(back.rejected.is_empty(), "{:?}\n{json}", back.rejected);
    back.clusters
        .iter()
        .map(|c| {
            (
                c.tenant_id.clone(),
                c.virtual_cluster_id.clone(),
                c.excluded_reason
                    .clone()
                    .unwrap_or_else(|| c.entity_kind.clone()),
                c.entities
                    .iter()
                    .map(|e| (e.name.clone(), e.total.to_string()))
                    .collect(),
            )
        })
        .collect()
}

/// A cluster as [`written`] gives it, spelled with string slices.
type Cluster<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);

/// `mixed_get_pending.json` as the writer writes it back: its tenant, its
/// excluded cluster, its subjects; not its entity whose total was refused.
const MIXED_WRITTEN: [Cluster<'static>; 4] = [
    (
        "ti_acme",
        "vci_a",
        "topic",
        &[("payments", "123.82"), ("orders", "6.52")],
    ),
    ("ti_acme", "vci_b", "topic", &[("events", "0.7")]),
    ("ti_acme", "vci_gone", "no_rollup", &[]),
    ("ti_acme", "vci_sr", "subject", &[("orders-value", "44.64")]),
];

fn owned(list: &[Cluster<'_>]) -> Written {
    list.iter()
        .map(|(tenant, cluster, kind, entities)| {
            (
                tenant.to_string(),
                cluster.to_string(),
                kind.to_string(),
                entities
                    .iter()
                    .map(|(n, t)| (n.to_string(), t.to_string()))
                    .collect(),
            )
        })
        .collect()
}

/// A WarpStream response's `tenant_id` survives read → allocate → write
/// through the session (as the page and the command line write it), under
/// whatever organization its file is read: its clusters, the excluded one
/// too, are written under it, other inputs' topic-level rows under their
/// organization (principal-level rows are not written), and the
/// organization roll-up stays the user's. The writer wrote every
/// row under its `org_id` (`""` for a file read without one) and an
/// excluded cluster under its file's organization, so `ti_xxx` came back
/// as `""` or `acme`.
#[test]
fn a_responses_tenant_survives_the_session_and_the_writer() {
    let example = text("warpstream/example_get_past.json");
    let mixed = text("warpstream/mixed_get_pending.json");
    let bill = text("warpstream-rules/bill.csv");
    let usage = text("warpstream-rules/usage.csv");
    let (seed_bill, seed_usage) = (text("seed33/bill.csv"), text("seed33/usage.csv"));
    let orders: &[(&str, &str)] = &[("orders", "6.52")];
    // (files: name, organization, text) → written clusters, organizations' totals
    type Case<'a> = (
        Vec<(&'a str, &'a str, &'a str)>,
        Written,
        Vec<(&'a str, &'a str)>,
    );
    let cases: Vec<Case> = vec![
        (
            vec![("example.json", "", &example)],
            owned(&[("ti_xxx", "vci_xxx", "topic", orders)]),
            vec![("", "6.52")],
        ),
        (
            vec![("example.json", "acme", &example)],
            owned(&[("ti_xxx", "vci_xxx", "topic", orders)]),
            vec![("acme", "6.52")],
        ),
        (
            vec![
                ("example.json", "org-a", &example),
                ("mixed.json", "org-b", &mixed),
                ("bill.csv", "org-c", &bill),
                ("usage.csv", "org-c", &usage),
                // Principal-level rows: in the organizations, not written.
                ("seed-bill.csv", "org-d", &seed_bill),
                ("seed-usage.csv", "org-d", &seed_usage),
            ],
            owned(&[(
                "org-c",
                "vci_1",
                "topic",
                &[("orders", "10.83"), ("payments", "8.17")],
            )])
            .into_iter()
            .chain(owned(&MIXED_WRITTEN))
            .chain(owned(&[("ti_xxx", "vci_xxx", "topic", orders)]))
            .collect(),
            vec![
                ("org-a", "6.52"),
                ("org-b", "175.68"),
                ("org-c", "19.00"),
                ("org-d", "33.00"),
            ],
        ),
    ];
    for (files, expected, organizations) in cases {
        let report = common::report_of(tally::session::Options::default(), &files);
        let names: Vec<&str> = files.iter().map(|f| f.0).collect();
        let json = report
            .warpstream_json(
                tally::report::Filters::default()
                    .warpstream_options()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(written(&json), expected, "{names:?}\n{json}");
        let orgs: Vec<(&str, String)> = report
            .organizations
            .iter()
            .map(|o| (o.org_id.as_str(), o.total.to_string()))
            .collect();
        let want: Vec<(&str, String)> = organizations
            .iter()
            .map(|(o, t)| (*o, t.to_string()))
            .collect();
        assert_eq!(orgs, want, "{names:?}");
    }
}

/// The WarpStream output holds what the entity view's `topic` holds: every
/// topic-level entity, a Schema Registry cluster's subjects with their kind
/// `subject` included. The filter `topic` became WarpStream's kind `topic`,
/// which left `vci_sr` out of the file (and `principal` gave that same file;
/// it is refused now, see `tests/report.rs`).
#[test]
fn the_entity_kind_topic_writes_every_topic_level_entity_with_its_kind() {
    let mixed = text("warpstream/mixed_get_pending.json");
    let everything = owned(&MIXED_WRITTEN);
    for kind in [None, Some(EntityLevel::Topic)] {
        let mut options = tally::session::Options::default();
        options.filters.entity_kind = kind;
        let report = common::report_of(options.clone(), &[("mixed.json", "", &mixed)]);
        let json = report
            .warpstream_json(options.filters.warpstream_options().unwrap())
            .unwrap();
        assert_eq!(written(&json), everything, "{kind:?}\n{json}");
        // The entity view shows the same entities.
        let view: Vec<(&str, Vec<&str>)> = report
            .clusters
            .iter()
            .map(|c| {
                (
                    c.cluster_id.as_str(),
                    c.entities.iter().map(|e| e.name.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                ("vci_a", vec!["payments", "orders"]),
                ("vci_b", vec!["events"]),
                ("vci_sr", vec!["orders-value"]),
            ],
            "{kind:?}"
        );
    }
}

/// The writer's tenant of a row: the tenant its (organization, workspace,
/// cluster) was read under, the first by name when listed under two; else
/// its organization; else `default_tenant_id`.
#[test]
fn the_writer_puts_rows_under_the_tenant_they_were_read_under() {
    use std::sync::Arc;
    use warpstream::ReadCluster;
    let read_under = |org: &str, tenant: &str| {
        Arc::new(ReadCluster {
            org_id: org.into(),
            cluster: warpstream::Cluster {
                workspace_id: "wi_xxx".into(),
                virtual_cluster_id: "vci_xxx".into(),
                tenant_id: tenant.into(),
                ..warpstream::Cluster::default()
            },
            ..ReadCluster::default()
        })
    };
    // (rows' organization, clusters read) → the tenant written
    let cases: [(&str, Vec<Arc<ReadCluster>>, &str); 5] = [
        ("", vec![], "ti_default"),
        ("org-a", vec![], "org-a"),
        ("org-a", vec![read_under("org-a", "ti_xxx")], "ti_xxx"),
        ("org-a", vec![read_under("org-b", "ti_xxx")], "org-a"),
        (
            "org-a",
            vec![read_under("org-a", "ti_b"), read_under("org-a", "ti_a")],
            "ti_a",
        ),
    ];
    for (org, read, expected) in cases {
        let r = read_chargebacks(&testdata("example_get_past.json"), "example.json", org).unwrap();
        let options = WriteOptions {
            default_tenant_id: "ti_default".into(),
            read,
            ..WriteOptions::default()
        };
        let json = write_chargebacks(&r.rows, &r.cost_lines, &options).unwrap();
        let back = read_chargebacks(json.as_bytes(), "w.json", "").unwrap();
        let got: Vec<&str> = back.clusters.iter().map(|c| c.tenant_id.as_str()).collect();
        assert_eq!(got, [expected], "{org} {:?}", options.read);
    }
}

/// A WarpStream response read through the session (as the page and the
/// command line read it, fed in chunks) and written back
/// (`Report::warpstream_json`) is the response: every tenant, workspace
/// (with its name), cluster (name, regions, type, `entity_kind`,
/// `storage_attribution_method`, `truncated`, `excluded_reason`), entity and
/// line item (`unit_price`, `quantity` and `total` exactly, those with a zero
/// total included), whatever organization its file is read under and
/// whatever else the session read. The session wrote `unit_price` 0 and
/// `quantity` 0 on every line item, dropped the zero-total ones (and with
/// them `covers_products` entries and the storage attribution), named each
/// cluster by its id, with no regions, type or workspace name, and wrote
/// no `entity_kind` on an excluded cluster.
#[test]
fn a_response_read_through_the_session_is_written_back_as_it_was() {
    let example = text("warpstream/example_get_past.json");
    let two_tenants = text("warpstream/two_tenants_get_past.json");
    // (files: name, organization, text; chunk bytes) → the responses written
    type Case<'a> = (Vec<(&'a str, &'a str, &'a str)>, usize, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec![("example.json", "", &example)],
            1 << 20,
            vec![&example],
        ),
        (vec![("example.json", "acme", &example)], 7, vec![&example]),
        (
            vec![("two_tenants.json", "", &two_tenants)],
            1 << 20,
            vec![&two_tenants],
        ),
        (
            vec![("two_tenants.json", "", &two_tenants)],
            13,
            vec![&two_tenants],
        ),
        (
            vec![
                ("example.json", "org-a", &example),
                ("two_tenants.json", "org-b", &two_tenants),
            ],
            64,
            vec![&example, &two_tenants],
        ),
    ];
    for (files, chunk, expected) in cases {
        let mut session = tally::session::Session::new(tally::session::Options::default());
        for (name, org, text) in &files {
            let id = session.begin_file(name, org);
            for part in text.as_bytes().chunks(chunk) {
                session.feed(id, part).unwrap();
            }
            session.end_file(id).unwrap();
        }
        let report = session.allocate().unwrap();
        let options = tally::report::Filters::default()
            .warpstream_options()
            .unwrap();
        let json = report.warpstream_json(options).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.0).collect();
        assert_eq!(
            common::warpstream_exactly(&[&json]),
            common::warpstream_exactly(&expected),
            "{names:?} in chunks of {chunk}\n{json}"
        );
    }
}
