//! The JSON readers (WarpStream chargebacks, Prometheus query_range, Confluent
//! Billing API costs) stream: an item over the limit is refused with its line
//! and the rest is read, rejections name real lines, trailing text and cut
//! documents are refused, and any chunking gives the same result. What a
//! WarpStream response says about truncated and excluded clusters reaches the
//! report and the WarpStream writer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use rust_decimal::Decimal;
use std::str::FromStr;
use tally::formats::warpstream::{read_chargebacks, WriteOptions};
use tally::session::{FileSummary, Options, Session};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// A WarpStream entity on one line: one `Cluster minutes` item of `total` USD.
fn entity(name: &str, total: &str) -> String {
    let quantity = d(total) * Decimal::ONE_HUNDRED;
    format!(
        "{{\"name\": \"{name}\", \"chargebacks\": [{{\"product\": \"Cluster minutes\", \
         \"unit_price\": 1, \"quantity\": {quantity}, \"total\": {total}}}], \"total\": {total}}}"
    )
}

/// A response whose second entity (line 5) is named `big`: cluster `vci_a`
/// (lines 3–7), the truncated `vci_b` (8–10) and the excluded `vci_gone` (11).
fn warpstream(big: &str) -> String {
    [
        r#"{"date_from": "2026-05-01", "date_to": "2026-06-01", "covers_products": ["Cluster minutes"],"#.to_string(),
        r#""tenants": [{"tenant_id": "ti", "workspaces": [{"workspace_id": "wi", "clusters": ["#.to_string(),
        r#"{"virtual_cluster_id": "vci_a", "cluster_name": "prod", "entity_kind": "topic", "entities": ["#.to_string(),
        format!("{},", entity("orders", "1.25")),
        format!("{},", entity(big, "2")),
        entity("payments", "0.75"),
        "]},".to_string(),
        r#"{"virtual_cluster_id": "vci_b", "cluster_name": "events", "truncated": true, "entities": ["#.to_string(),
        entity("clicks", "3"),
        "]},".to_string(),
        r#"{"virtual_cluster_id": "vci_gone", "cluster_name": "old", "excluded_reason": "no_rollup"}"#.to_string(),
        "]}]}]}".to_string(),
    ]
    .join("\n")
}

/// A Prometheus series on one line: `value` bytes produced by `principal`.
fn series(principal: &str, value: u64) -> String {
    format!(
        "{{\"metric\": {{\"__name__\": \"tally_produced_bytes_total\", \"principal\": \"{principal}\", \
         \"topic\": \"t\", \"cluster\": \"c\"}}, \"values\": [[1779606000, \"0\"], [1779606300, \"{value}\"]]}}"
    )
}

/// A query_range response whose second series (line 3) has the principal `big`.
fn prometheus(big: &str) -> String {
    [
        r#"{"status": "success", "data": {"resultType": "matrix", "result": ["#.to_string(),
        format!("{},", series("sa-a", 100)),
        format!("{},", series(big, 200)),
        series("sa-c", 300),
        "]}}".to_string(),
    ]
    .join("\n")
}

/// A Billing API costs list whose second item (line 3) has amount `amount`.
fn confluent(amount: &str) -> String {
    let item = |amount: &str| {
        format!(
            "{{\"amount\": \"{amount}\", \"product\": \"KAFKA\", \"line_type\": \"KAFKA_NUM_CKUS\", \
             \"resource\": {{\"id\": \"lkc-1\"}}, \"start_date\": \"2026-04-01T00:00:00Z\"}}"
        )
    };
    [
        "{\"data\": [".to_string(),
        format!("{},", item("10.00")),
        format!("{},", item(amount)),
        item("5.50"),
        "]}".to_string(),
    ]
    .join("\n")
}

/// Feeds `bytes` to a session in chunks of `chunk` bytes: the file's summary,
/// or the error that stopped it.
fn read(name: &str, bytes: &[u8], chunk: usize) -> Result<FileSummary, String> {
    let mut session = Session::new(Options::default());
    let id = session.begin_file(name, "");
    for part in bytes.chunks(chunk) {
        if let Err(e) = session.feed(id, part) {
            return Err(e.to_string());
        }
    }
    session.end_file(id).map_err(|e| e.to_string())
}

/// What a case must give: rows accepted, their amount total, and the one
/// rejection (line, column, part of the reason); or the fatal error.
enum Expect {
    Read(u64, &'static str, (u64, &'static str, &'static str)),
    Fatal(&'static str),
}

#[test]
fn oversized_malformed_and_cut_json_gives_lines_and_reads_the_rest_at_any_chunking() {
    let two_mib = "x".repeat(2 << 20);
    let cut = |text: String, at: &str| text[..text.find(at).unwrap()].to_string();
    let cases: Vec<(&str, String, Expect)> = vec![
        (
            "2 MiB entity name",
            warpstream(&two_mib),
            Expect::Read(
                3,
                "5.00",
                (
                    5,
                    "tenants[0].workspaces[0].clusters[0].entities[1]",
                    "limit",
                ),
            ),
        ),
        (
            "bad entity total",
            warpstream("fine").replace("\"total\": 2},\n", "\"total\": 9},\n"),
            Expect::Read(
                3,
                "5.00",
                (
                    5,
                    "tenants[0].workspaces[0].clusters[0].entities[1].total",
                    "states total 9 but its chargebacks sum to 2",
                ),
            ),
        ),
        (
            "WarpStream trailing text",
            warpstream("fine") + "\n garbage",
            Expect::Fatal("w.json:13: unexpected text after the JSON document"),
        ),
        (
            "WarpStream cut short",
            cut(warpstream("fine"), "\"payments\""),
            Expect::Fatal("w.json:6: the JSON document is truncated"),
        ),
        (
            "WarpStream fields after what needs them",
            warpstream("fine")
                .replace(
                    "{\"workspace_id\": \"wi\", \"clusters\": [",
                    "{\"clusters\": [",
                )
                .replace("]}]}]}", "], \"workspace_id\": \"wi\"}]}]}"),
            Expect::Fatal("w.json:12 column `workspace_id`: `workspace_id` comes after `clusters`"),
        ),
        (
            "2 MiB label value",
            prometheus(&two_mib),
            Expect::Read(2, "0", (3, "data.result[1]", "limit")),
        ),
        (
            "bad point",
            prometheus("fine").replace("\"200\"", "\"-5\""),
            Expect::Read(2, "0", (3, "data.result[1].values[1]", "negative")),
        ),
        (
            "Prometheus trailing text",
            prometheus("fine") + "garbage",
            Expect::Fatal("w.json:5: unexpected text after the JSON document"),
        ),
        (
            "Prometheus cut short",
            cut(prometheus("fine"), "\"sa-c\""),
            Expect::Fatal("w.json:4: the JSON document is truncated"),
        ),
        (
            "Billing API bad amount",
            confluent("abc"),
            Expect::Read(2, "15.50", (3, "data[1].amount", "not a number")),
        ),
        (
            "Billing API trailing text",
            confluent("1") + " {}",
            Expect::Fatal("w.json:5: unexpected text after the JSON document"),
        ),
        (
            "Billing API cut short",
            cut(confluent("1"), "\"5.50\""),
            Expect::Fatal("w.json:4: the JSON document is truncated"),
        ),
    ];
    for (name, text, expect) in &cases {
        let whole = read("w.json", text.as_bytes(), text.len());
        for chunk in [1, 7, 64 << 10] {
            assert_eq!(
                read("w.json", text.as_bytes(), chunk),
                whole,
                "{name}: chunks of {chunk}"
            );
        }
        match (expect, whole) {
            (Expect::Read(accepted, total, (line, column, reason)), Ok(s)) => {
                assert_eq!(
                    (s.rows_accepted, s.rows_rejected, s.amount_total),
                    (*accepted, 1, d(total)),
                    "{name}"
                );
                let r = &s.rejections[0];
                assert_eq!((r.line, r.column.as_str()), (*line, *column), "{name}");
                assert!(r.reason.contains(reason), "{name}: {}", r.reason);
            }
            (Expect::Fatal(fragment), Err(error)) => {
                assert!(error.contains(fragment), "{name}: {error}");
            }
            (_, other) => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn truncated_and_excluded_clusters_reach_the_report_and_the_writer() {
    let text = warpstream("fine");
    let report = common::report_of(Options::default(), &[("ws.json", "", &text)]);
    let file = &report.files[0];
    assert_eq!(
        file.truncated_clusters
            .iter()
            .map(|c| (c.virtual_cluster_id.as_str(), c.entities, c.source.line))
            .collect::<Vec<_>>(),
        [("vci_b", 1, 8)]
    );
    assert_eq!(
        file.excluded_clusters
            .iter()
            .map(|c| (
                c.virtual_cluster_id.as_str(),
                c.reason.as_str(),
                c.source.line
            ))
            .collect::<Vec<_>>(),
        [("vci_gone", "no_rollup", 11)]
    );
    let explanations = &report.reconciliation.explanations;
    assert!(
        explanations.iter().any(|e| e
            .starts_with("ws.json:8: WarpStream cluster `vci_b` (events) is truncated")
            && e.contains("only the 1 returned entities")),
        "{explanations:?}"
    );
    assert!(
        explanations.iter().any(|e| e.starts_with(
            "ws.json:11: WarpStream cluster `vci_gone` (old) is excluded (no_rollup)"
        ) && e.contains("not in these totals")),
        "{explanations:?}"
    );
    // The writer marks the input's truncated cluster (its one entity is under
    // the default limit of 500) and lists the excluded one.
    let written = report.warpstream_json(WriteOptions::default()).unwrap();
    let back = read_chargebacks(written.as_bytes(), "back.json", "").unwrap();
    assert_eq!(back.truncated_clusters, ["vci_b"]);
    assert_eq!(
        back.excluded
            .iter()
            .map(|c| (c.virtual_cluster_id.as_str(), c.reason.as_str()))
            .collect::<Vec<_>>(),
        [("vci_gone", "no_rollup")]
    );
    assert_eq!(back.allocated_total().unwrap(), d("7.00"));
    // The command line prints the same explanations.
    let path =
        std::env::temp_dir().join(format!("tally-json-streaming-{}.json", std::process::id()));
    std::fs::write(&path, &text).unwrap();
    let out = common::tally_ok(&[
        "allocate",
        "--entity-level",
        "topic",
        path.to_str().unwrap(),
    ]);
    std::fs::remove_file(&path).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WarpStream cluster `vci_b` (events) is truncated"),
        "{stderr}"
    );
    assert!(
        stderr.contains("WarpStream cluster `vci_gone` (old) is excluded (no_rollup)"),
        "{stderr}"
    );
}

#[test]
fn reader_warnings_reach_the_report() {
    // 1 cent × 100 is 1.00, not the 5 stated; `Support` is not covered.
    let text = r#"{"date_from": "2026-05-01", "date_to": "2026-06-01", "covers_products": ["Cluster minutes"],
      "tenants": [{"tenant_id": "t", "workspaces": [{"workspace_id": "w", "clusters": [{"virtual_cluster_id": "v",
        "entities": [{"name": "a", "total": 7, "chargebacks": [
          {"product": "Cluster minutes", "unit_price": 1, "quantity": 100, "total": 5},
          {"product": "Support", "unit_price": 200, "quantity": 1, "total": 2}]}]}]}]}]}"#;
    let report = common::report_of(Options::default(), &[("w.json", "", text)]);
    assert_eq!(report.files[0].warnings_count, 2);
    let warnings: Vec<&String> = report
        .reconciliation
        .explanations
        .iter()
        .filter(|e| e.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0]
        .starts_with("warning: w.json:4: `Cluster minutes` of `a`: unit_price 1 × quantity 100"));
    assert!(
        warnings[1].starts_with("warning: w.json:5: product `Support` is not in covers_products")
    );
}

#[test]
fn the_writer_marks_clusters_the_input_truncated() {
    // Its own max_entities_per_cluster cut, the input's flag, or neither.
    let text = warpstream("fine");
    let first = read_chargebacks(text.as_bytes(), "ws.json", "").unwrap();
    for (max, from_input, truncated) in [
        (500, false, vec![]),
        (500, true, vec!["vci_b"]),
        (2, false, vec!["vci_a"]),
        (2, true, vec!["vci_a", "vci_b"]),
    ] {
        let options = WriteOptions {
            max_entities_per_cluster: max,
            truncated_clusters: if from_input {
                first.truncated_clusters.clone()
            } else {
                Vec::new()
            },
            ..WriteOptions::default()
        };
        let written =
            tally::formats::warpstream::write_chargebacks(&first.rows, &first.cost_lines, &options)
                .unwrap();
        let back = read_chargebacks(written.as_bytes(), "back.json", "").unwrap();
        assert_eq!(back.truncated_clusters, truncated, "{max} {from_input}");
    }
}

/// `prometheus("fine")` with its keys sorted, as `jq -S` writes it: `data`
/// before `status`, `result` before `resultType`.
fn prometheus_key_sorted(status: &str, result_type: &str) -> String {
    let original = prometheus("fine");
    let series = &original[original.find('[').unwrap()..original.rfind(']').unwrap() + 1];
    format!(
        "{{\"data\": {{\"result\": {series},\n\"resultType\": \"{result_type}\"}},\n\"status\": \"{status}\"}}"
    )
}

#[test]
fn a_key_sorted_query_range_reads_as_prometheus_wrote_it_and_its_status_is_checked_at_the_end() {
    let original = read("w.json", prometheus("fine").as_bytes(), 1 << 16).unwrap();
    assert_eq!((original.rows_accepted, original.rows_rejected), (3, 0));
    let cases = [
        ("success", "matrix", None),
        ("error", "matrix", Some("w.json:7 column `status`: the query failed (error, unknown): no error message")),
        ("success", "vector", Some("w.json:6 column `data.resultType`: `vector` result: a query_range (matrix) of a counter is needed")),
    ];
    for (status, result_type, refusal) in cases {
        let sorted = prometheus_key_sorted(status, result_type);
        for chunk in [1, 7, 1 << 16] {
            let read = read("w.json", sorted.as_bytes(), chunk);
            match refusal {
                None => assert_eq!(read.as_ref(), Ok(&original), "chunks of {chunk}"),
                Some(reason) => {
                    let error = read.unwrap_err();
                    assert!(error.starts_with(reason), "{status} {result_type}: {error}");
                }
            }
        }
    }
    // Found failed at its end, the response's series were already read:
    // nothing is allocated.
    let mut session = Session::new(Options::default());
    let id = session.begin_file("w.json", "");
    session
        .feed(id, prometheus_key_sorted("error", "matrix").as_bytes())
        .unwrap();
    assert!(session.end_file(id).is_err());
    assert!(session
        .allocate()
        .unwrap_err()
        .to_string()
        .starts_with("w.json: the file was refused after 3 of its rows were read"));
}

#[test]
fn a_file_refused_after_some_of_its_rows_stops_the_allocation() {
    let whole = confluent("1");
    let cut = &whole[..whole.find("\"5.50\"").unwrap()];
    let good = confluent("2");
    let session_of = |second: (&str, &str)| {
        let mut session = Session::new(Options::default());
        for (name, text) in [("good.json", good.as_str()), second] {
            let id = session.begin_file(name, "");
            let fed = session.feed(id, text.as_bytes());
            let ended = session.end_file(id);
            assert_eq!(fed.is_ok() && ended.is_ok(), name == "good.json", "{name}");
        }
        session
    };
    // Two of its rows (10.00 and 1) were taken before the cut: allocating
    // would charge them for a file reported as not read.
    let error = session_of(("cut.json", cut)).allocate().unwrap_err();
    assert_eq!(
        error.to_string(),
        "cut.json: the file was refused after 2 of its rows were read; nothing is \
         allocated, since those rows would count for a file reported as not read: \
         fix the file or leave it out"
    );
    // A file refused before any row still leaves the others to allocate.
    let report = session_of(("notes.txt", "not a bill\n"))
        .allocate()
        .unwrap();
    assert_eq!(report.reconciliation.bill_total, d("17.50"));
    // The command line writes nothing and exits 1.
    let dir = common::scratch_dir("partly-read");
    let (good_path, cut_path, out) = (
        dir.join("good.json"),
        dir.join("cut.json"),
        dir.join("out.csv"),
    );
    std::fs::write(&good_path, &good).unwrap();
    std::fs::write(&cut_path, cut).unwrap();
    let run = common::tally(&[
        "allocate".as_ref(),
        good_path.as_os_str(),
        cut_path.as_os_str(),
        "--out-confluent".as_ref(),
        out.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    let written = out.exists();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(!written, "{stderr}");
    assert!(
        stderr.contains("refused after 2 of its rows were read"),
        "{stderr}"
    );
}
