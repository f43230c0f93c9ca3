//! Prometheus `query_range` JSON → usage samples: increases, resets, names,
//! labels, and malformed input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use rust_decimal::Decimal;
use std::str::FromStr;
use tally::error::Error;
use tally::formats::prometheus::{read_query_range, sniff};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const T0: i64 = 1_779_606_000;

#[test]
fn counters_become_increases_per_interval() {
    let input = std::fs::read(format!(
        "{}/testdata/prometheus/query_range.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert_eq!(sniff(&input), Some("prometheus_query_range"));
    let r = read_query_range(&input, "q.json", "org-a", "dflt").unwrap();
    // (start offset, end offset, cluster, principal, principal_source, topic, metric, value)
    type Row<'a> = (
        i64,
        i64,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        Decimal,
    );
    let got: Vec<Row> = r
        .samples
        .iter()
        .map(|s| {
            assert_eq!(s.org_id, "org-a");
            assert_eq!(s.source.file, "q.json");
            (
                s.start.0 - T0,
                s.end.0 - T0,
                s.resource_id.as_str(),
                s.principal.as_str(),
                s.principal_source.as_str(),
                s.topic.as_str(),
                s.metric.as_str(),
                s.value,
            )
        })
        .collect();
    let want: Vec<Row> = vec![
        (
            0,
            300,
            "kafka-prod",
            "sa-orders",
            "sasl_plain",
            "orders",
            "produced_bytes",
            d("500"),
        ),
        // 300 → 600 is flat: no sample. 600 → 900 drops: a reset, the new value counts.
        (
            600,
            900,
            "kafka-prod",
            "sa-orders",
            "sasl_plain",
            "orders",
            "produced_bytes",
            d("200"),
        ),
        (
            900,
            1200,
            "kafka-prod",
            "sa-orders",
            "sasl_plain",
            "orders",
            "produced_bytes",
            d("1000"),
        ),
        // The NaN point is refused; the increase spans the gap.
        (
            0,
            600,
            "kafka-prod",
            "sa-analytics",
            "",
            "orders",
            "consumed_bytes",
            d("4096"),
        ),
        // Per-principal metric: no topic; no cluster label: the default.
        (0, 300, "dflt", "sa-orders", "", "", "requests", d("15")),
        // Broker-side metric: topic only.
        (
            0,
            300,
            "dflt",
            "",
            "broker_metrics",
            "payments",
            "produced_bytes",
            d("1048576"),
        ),
        // The plugin's own series: escaped label values come back as written.
        (
            0,
            300,
            "kafka-prod",
            "CN=orders,O=acme",
            "mtls",
            "orders.v1",
            "produced_bytes",
            d("300"),
        ),
        (
            0,
            300,
            "kafka-prod",
            "billing.svc",
            "client_id",
            "",
            "response_bytes",
            d("20"),
        ),
        // The plugin's broker-style names carry the principal (escaped).
        (
            0,
            300,
            "dflt",
            "billing.svc",
            "",
            "billing-events",
            "produced_bytes",
            d("7"),
        ),
    ];
    assert_eq!(got, want);
    assert_eq!(r.series, 7);
    assert_eq!(r.resets, 1);
    assert_eq!(r.rejected.len(), 1);
    match &r.rejected[0] {
        Error::Input { at, reason } => {
            assert_eq!(at.column, "data.result[1].values[1]");
            assert_eq!(at.line, 12);
            assert!(reason.contains("NaN"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.skipped.len(), 2, "{:?}", r.skipped);
    assert!(r.skipped[0].contains("all-topics"));
    assert!(r.skipped[1].contains("process_cpu_seconds_total"));
}

fn doc(series: &str) -> String {
    format!(
        "{{\"status\":\"success\",\"data\":{{\"resultType\":\"matrix\",\"result\":[{series}]}}}}"
    )
}

#[test]
fn bad_series_and_points_are_refused_one_by_one() {
    let ok_metric =
        r#""metric":{"__name__":"tally_produced_bytes_total","principal":"p","topic":"t"}"#;
    // (series JSON, expected field path, reason fragment)
    let cases: Vec<(String, &str, &str)> = vec![
        (r#"{"values":[]}"#.into(), "data.result[0].metric", "missing `metric`"),
        (r#"{"metric":{"principal":"p"},"values":[]}"#.into(), "data.result[0].metric.__name__", "metric name"),
        (
            r#"{"metric":{"__name__":"tally_produced_bytes_total","topic":"t"},"values":[]}"#.into(),
            "data.result[0].metric.principal",
            "no `principal`",
        ),
        (
            r#"{"metric":{"__name__":"tally_produced_bytes_total","principal":"p"},"values":[]}"#.into(),
            "data.result[0].metric.topic",
            "per topic",
        ),
        (
            r#"{"metric":{"__name__":"tally_bytes_total","principal":"p","topic":"t"},"values":[]}"#.into(),
            "data.result[0].metric",
            "direction",
        ),
        (
            r#"{"metric":{"__name__":"tally_widgets_total","principal":"p"},"values":[]}"#.into(),
            "data.result[0].metric",
            "not a tally usage counter",
        ),
        (format!("{{{ok_metric}}}"), "data.result[0].values", "missing `values`"),
        (format!("{{{ok_metric},\"values\":[[1,\"1\"],[2]]}}"), "data.result[0].values[1]", "1 items"),
        (format!("{{{ok_metric},\"values\":[[1,\"1\"],5]}}"), "data.result[0].values[1]", "found a number"),
        (format!("{{{ok_metric},\"values\":[[1,\"1\"],[\"2\",\"3\"]]}}"), "data.result[0].values[1]", "timestamp must be"),
        (format!("{{{ok_metric},\"values\":[[1,\"1\"],[1e30,\"3\"]]}}"), "data.result[0].values[1]", "out of range"),
        (format!("{{{ok_metric},\"values\":[[1,\"1\"],[2,\"+Inf\"]]}}"), "data.result[0].values[1]", "not a finite"),
        (format!("{{{ok_metric},\"values\":[[1,\"1\"],[2,\"-5\"]]}}"), "data.result[0].values[1]", "negative"),
        // Prometheus writes Go's shortest float: no sign on a positive value,
        // no padding; the readers' one spelling of numbers refuses the rest.
        (format!("{{{ok_metric},\"values\":[[1,\"1\"],[2,\"+5\"]]}}"), "data.result[0].values[1]", "not a finite"),
        (format!("{{{ok_metric},\"values\":[[1,\"1\"],[2,\" 5\"]]}}"), "data.result[0].values[1]", "not a finite"),
        (format!("{{{ok_metric},\"values\":[[1,\"1\"],[2,true]]}}"), "data.result[0].values[1]", "string number"),
        (format!("{{{ok_metric},\"values\":[[5,\"1\"],[5,\"3\"]]}}"), "data.result[0].values[1]", "does not follow"),
    ];
    for (series, path, fragment) in cases {
        let r = read_query_range(doc(&series).as_bytes(), "bad.json", "", "c").unwrap();
        assert_eq!(r.rejected.len(), 1, "{series}: {:?}", r.rejected);
        match &r.rejected[0] {
            Error::Input { at, reason } => {
                assert_eq!(at.file, "bad.json");
                assert_eq!(at.column, path, "{series}");
                assert!(reason.contains(fragment), "{series}: {reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(r.samples.is_empty(), "{series}");
    }
}

#[test]
fn unusable_documents_are_fatal_with_a_reason() {
    let cases: &[(&str, &str)] = &[
        ("", "empty file"),
        ("[1,2]", "not a JSON object"),
        (
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#,
            "parse error at char 5",
        ),
        (r#"{"status":"success"}"#, "missing `data`"),
        (
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            "`vector` result",
        ),
        (
            r#"{"status":"success","data":{"resultType":"matrix"}}"#,
            "missing `result`",
        ),
    ];
    for (input, fragment) in cases {
        match read_query_range(input.as_bytes(), "x.json", "", "") {
            Err(e) => assert!(e.to_string().contains(fragment), "{input}: {e}"),
            Ok(r) => panic!("{input}: {r:?}"),
        }
    }
    assert!(read_query_range(b"\xff\xfe", "x.json", "", "").is_err());
    let empty = read_query_range(doc("").as_bytes(), "x.json", "", "").unwrap();
    assert!(empty.samples.is_empty() && empty.rejected.is_empty());
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = read_query_range(&bytes, "fuzz.json", "", "c");
        }

        #[test]
        fn on_a_mutated_or_cut_response(at in 0usize..4000, byte in any::<u8>(), cut in 0usize..4000) {
            let mut doc = std::fs::read(format!(
                "{}/testdata/prometheus/query_range.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            let len = doc.len();
            doc[at % len] = byte;
            doc.truncate(cut % (len + 1));
            if let Ok(r) = read_query_range(&doc, "fuzz.json", "", "c") {
                prop_assert!(r.samples.iter().all(|s| s.value > Decimal::ZERO && s.end > s.start));
            }
        }

        #[test]
        fn increases_sum_to_the_counter_growth_without_resets(
            steps in proptest::collection::vec(0u64..1_000_000, 1..40)
        ) {
            let mut value = 0u64;
            let mut points = vec![format!("[{T0},\"0\"]")];
            for (i, step) in steps.iter().enumerate() {
                value += step;
                points.push(format!("[{},\"{value}\"]", T0 + 60 * (i as i64 + 1)));
            }
            let series = format!(
                "{{\"metric\":{{\"__name__\":\"tally_bytes\",\"principal\":\"p\",\"topic\":\"t\",\"direction\":\"produced\"}},\"values\":[{}]}}",
                points.join(",")
            );
            let r = read_query_range(doc(&series).as_bytes(), "p.json", "", "c").unwrap();
            let total: Decimal = r.samples.iter().map(|s| s.value).sum();
            prop_assert_eq!(total, Decimal::from(value));
            prop_assert_eq!(r.resets, 0);
        }
    }
}
