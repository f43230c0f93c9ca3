//! Foundation check: a real Envoy loads the real plugin `.wasm` in front of a real
//! tansu broker, and a real Kafka client (librdkafka) produces and consumes through
//! it. Fails if the filter is not loaded: its own counters must be on Envoy's admin
//! endpoint and must have seen the client's bytes.

use host_tests::envoy_config::{EnvoyConfig, Listener};
use host_tests::{free_port, plugin_wasm, run_with_timeout, Envoy, Tansu, Tools, Workdir};
use std::process::Command;
use std::time::Duration;

#[test]
fn real_client_produces_and_consumes_through_envoy_running_the_plugin() {
    let tools = Tools::locate();
    let dir = Workdir::new("envoy_smoke");
    let (admin_port, listener_port) = (free_port(), free_port());
    let tansu = Tansu::start(&tools, &dir, listener_port, &[]);
    let wasm = plugin_wasm();
    let config = EnvoyConfig {
        admin_port,
        upstream_port: tansu.port,
        wasm: &wasm,
        listeners: vec![Listener {
            name: "kafka_plain".into(),
            port: listener_port,
            plugin_config: Some(r#"{"cluster":"smoke"}"#.into()),
            transport_socket: None,
        }],
        extra_clusters: String::new(),
        extra_top_level: String::new(),
    };
    let envoy = Envoy::start(&tools, &dir, &config.render(), admin_port);

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

    // The filter is loaded: its own counters exist and saw the client's traffic.
    let connections = envoy.stat("wasmcustom.tally_connections_total");
    assert!(
        connections.is_some_and(|c| c >= 1),
        "tally's counter missing from /stats:\n{}",
        envoy.stats()
    );
    let seen = envoy
        .stat("wasmcustom.tally_downstream_bytes_total")
        .unwrap_or(0);
    let envoy_rx = envoy
        .stat("tcp.kafka_plain.downstream_cx_rx_bytes_total")
        .unwrap_or(0);
    assert!(
        seen > u64::from(result["value_bytes"].as_u64().unwrap() as u32),
        "filter saw {seen} bytes"
    );
    assert_eq!(
        seen, envoy_rx,
        "the filter sees exactly the bytes Envoy received from clients"
    );
}
