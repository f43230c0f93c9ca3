//! Foundation check: a real Envoy loads the real plugin `.wasm` in front of a real
//! tansu broker, and a real Kafka client (librdkafka) produces and consumes through
//! it. Fails if the filter is not loaded: its own counters must be on Envoy's admin
//! endpoint and must have seen exactly the client's bytes. (The thorough metering
//! checks are in `metering.rs`.)

use host_tests::metering::{envoy_json, parse_stats, tally_stats, MListener};
use host_tests::{free_port, plugin_wasm, run_with_timeout, Envoy, Tansu, Tools, Workdir};
use serde_json::json;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

#[test]
fn real_client_produces_and_consumes_through_envoy_running_the_plugin() {
    let tools = Tools::locate();
    let dir = Workdir::new("envoy_smoke");
    let (admin_port, listener_port) = (free_port(), free_port());
    let tansu = Tansu::start(&tools, &dir, listener_port, &[]);
    let config = envoy_json(
        admin_port,
        &plugin_wasm(),
        &[MListener {
            name: "kafka_plain".into(),
            port: listener_port,
            plugin: Some(json!({"cluster": "smoke"})),
            tls: None,
            cluster: "kafka".into(),
        }],
        &[("kafka", tansu.port)],
    );
    let envoy = Envoy::start(&tools, &dir, &config, admin_port);

    let (ok, out, err) = run_with_timeout(
        &dir,
        "client",
        Command::new(&tools.python)
            .arg(host_tests::repo_root().join("host-tests/clients/smoke.py"))
            .arg(format!("127.0.0.1:{listener_port}"))
            .arg("smoke")
            .arg("50"),
        Duration::from_secs(90),
    );
    assert!(ok, "client failed:\n{out}\n{err}");
    let result: serde_json::Value =
        serde_json::from_str(out.trim().lines().last().unwrap_or("")).unwrap();
    assert_eq!(result["produced"], 50);
    assert_eq!(
        result["consumed"], 50,
        "every produced message is consumed back through Envoy"
    );

    // The filter is loaded: its own counters exist and saw exactly the client's
    // traffic. It folds a connection's counts into Envoy's counters as the
    // connection goes and when it closes, so poll briefly for the last close.
    let records = |stats: &BTreeMap<String, u64>, direction: &str| {
        tally_sum(stats, "tally_records", direction)
    };
    let mut stats = parse_stats(&envoy.stats());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while records(&stats, "consumed") < 50 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        stats = parse_stats(&envoy.stats());
    }
    assert!(
        stats
            .get("wasmcustom.tally_connections.cluster.smoke")
            .is_some_and(|c| *c >= 1),
        "tally's connection counter missing from /stats: {stats:?}"
    );
    assert_eq!(
        records(&stats, "produced"),
        50,
        "records produced, per the filter"
    );
    assert_eq!(
        records(&stats, "consumed"),
        50,
        "records consumed, per the filter"
    );
    let request_bytes = tally_sum(&stats, "tally_wire_bytes", "request");
    assert_eq!(
        request_bytes, stats["tcp.kafka_plain.downstream_cx_rx_bytes_total"],
        "the filter counts exactly the bytes Envoy received from the client"
    );
}

/// The sum of one tally metric in one direction over all its labelled series.
fn tally_sum(stats: &BTreeMap<String, u64>, metric: &str, direction: &str) -> u64 {
    tally_stats(stats)
        .iter()
        .filter(|(s, _)| {
            s.metric == metric && s.tags.get("direction").map(String::as_str) == Some(direction)
        })
        .map(|(_, v)| v)
        .sum()
}
