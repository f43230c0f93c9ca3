//! The wasm module's API, run in headless Chromium (`web/test-in-browser.sh`):
//! the same calls the page's worker makes, on the seed's $33 example.

#![cfg(target_arch = "wasm32")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;
use tally_web::{default_rules_toml, rules_toml_to_json, version, wasm_memory_bytes, WebSession};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const BILL: &str = include_str!("../../testdata/seed33/bill.csv");
const USAGE: &str = include_str!("../../testdata/seed33/usage.csv");
const CROSSWALK: &str = include_str!("../../testdata/seed33/crosswalk.csv");
const TEAM_SUMMARY: &str = include_str!("../../testdata/seed33/expected_team_summary.csv");

/// Feeds `text` in chunks of `chunk` bytes (chunk boundaries anywhere, even inside a row).
fn feed(s: &mut WebSession, name: &str, text: &str, chunk: usize) -> Value {
    let f = s.begin_file(name, "");
    for piece in text.as_bytes().chunks(chunk) {
        s.feed(f, piece).map_err(JsValue::from).unwrap();
    }
    serde_json::from_str(&s.end_file(f).map_err(JsValue::from).unwrap()).unwrap()
}

/// The message of a thrown JS error.
fn message(e: wasm_bindgen::JsError) -> String {
    let v = JsValue::from(e);
    js_sys::Reflect::get(&v, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default()
}

#[wasm_bindgen_test]
fn version_and_default_rules() {
    assert!(version().starts_with("tally "));
    let rules: Value = serde_json::from_str(
        &rules_toml_to_json(&default_rules_toml())
            .map_err(JsValue::from)
            .unwrap(),
    )
    .unwrap();
    assert!(rules["rule"].as_array().unwrap().len() > 5);
    assert!(wasm_memory_bytes() > 0.0);
}

#[wasm_bindgen_test]
fn seed_example_in_small_chunks_gives_the_golden_team_summary() {
    for chunk in [1, 7, 4096] {
        let mut s = WebSession::new("{}").map_err(JsValue::from).unwrap();
        let bill = feed(&mut s, "bill.csv", BILL, chunk);
        assert_eq!(bill["format"], "confluent_costs_csv");
        assert_eq!(bill["rows_accepted"], 8);
        assert_eq!(
            feed(&mut s, "usage.csv", USAGE, chunk)["format"],
            "usage_csv"
        );
        assert_eq!(
            feed(&mut s, "crosswalk.csv", CROSSWALK, chunk)["format"],
            "crosswalk"
        );
        let report: Value =
            serde_json::from_str(&s.allocate().map_err(JsValue::from).unwrap()).unwrap();
        assert_eq!(report["reconciliation"]["bill_total"], "33.00");
        assert_eq!(report["reconciliation"]["balanced"], true);
        let summary = s.output("team_summary_csv").map_err(JsValue::from).unwrap();
        assert_eq!(
            summary.trim_end(),
            TEAM_SUMMARY.trim_end(),
            "chunk size {chunk}"
        );
        let confluent = s.output("confluent_csv").map_err(JsValue::from).unwrap();
        assert!(confluent.starts_with("timestamp,owner_id,"));
    }
}

#[wasm_bindgen_test]
fn every_output_is_written() {
    let mut s = WebSession::new(r#"{"granularity":"monthly","precision":2}"#)
        .map_err(JsValue::from)
        .unwrap();
    feed(&mut s, "bill.csv", BILL, 64);
    feed(&mut s, "usage.csv", USAGE, 64);
    s.allocate().map_err(JsValue::from).unwrap();
    for kind in [
        "confluent_csv",
        "focus_csv",
        "warpstream_json",
        "team_summary_csv",
        "report_json",
    ] {
        let out = s
            .output(kind)
            .unwrap_or_else(|e| panic!("{kind}: {}", message(e)));
        assert!(!out.is_empty(), "{kind}");
    }
    assert!(message(s.output("pdf").unwrap_err()).contains("unknown output `pdf`"));
}

#[wasm_bindgen_test]
fn errors_are_thrown_with_the_core_message() {
    // Unknown format: the file name and the reason.
    let mut s = WebSession::new("{}").map_err(JsValue::from).unwrap();
    let f = s.begin_file("notes.txt", "");
    let _ = s.feed(f, b"hello, world\nnothing here\n");
    let e = message(s.end_file(f).unwrap_err());
    assert!(
        e.contains("notes.txt") && e.contains("unrecognised format"),
        "{e}"
    );
    // A bad row is a rejection with file, line, column and reason; the file still loads.
    let summary = feed(
        &mut s,
        "usage.csv",
        "version,bucket_start,bucket_end,cluster,principal,principal_source,topic,metric,value\n\
         1,2026-04-02T10:00:00Z,2026-04-02T10:05:00Z,lkc-123,sa-abc,sasl_plain,t,produced_bytes,12x\n",
        5,
    );
    assert_eq!(summary["rows_rejected"], 1);
    let r = &summary["rejections"][0];
    assert_eq!(
        (r["file"].as_str(), r["line"].as_u64(), r["column"].as_str()),
        (Some("usage.csv"), Some(2), Some("value"))
    );
    // Bad options, bad rules, a bad handle: thrown, nothing panics.
    assert!(message(
        WebSession::new(r#"{"granularity":"fortnightly"}"#)
            .err()
            .unwrap()
    )
    .contains("invalid option granularity (Time buckets): unknown variant `fortnightly`"));
    assert!(message(
        s.set_rules("[[rule]]\nchain = [{ method = \"nope\" }]")
            .unwrap_err()
    )
    .contains("rules file"));
    assert!(message(s.feed(99, b"x").unwrap_err()).contains("no file with handle 99"));
    assert_eq!(
        message(s.set_invoice_subtotal(" 1,000 ").unwrap_err()),
        "invalid option invoice_subtotal (Invoice usage subtotal for the period): \
         ` 1,000 ` is not a decimal number"
    );
    assert!(rules_toml_to_json("not = [toml").is_err());
}
