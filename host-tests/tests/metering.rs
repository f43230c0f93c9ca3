//! The tally filter metering real Kafka traffic in a real Envoy (`--concurrency 2`)
//! in front of real tansu brokers, driven by two real client libraries
//! (librdkafka through confluent-kafka, and kafka-python), checked against
//! independent truths: Envoy's own byte counters, the clients' record counts,
//! produced-versus-consumed record-set bytes, the flushed usage CSV, and a real
//! Prometheus scraping Envoy.
//!
//! Principals: three mTLS client certificates (TLS listener), two client.id-only
//! clients (plaintext listener), and on the SASL listener four SASL logins —
//! PLAIN (librdkafka), SCRAM-SHA-256 (kafka-python), SCRAM-SHA-512 (librdkafka),
//! OAUTHBEARER (librdkafka's unsecured JWT) — plus a login with a wrong password.
//!
//! **The SASL answers come from a stand-in.** tansu 0.6.0 cannot complete a SASL
//! login of any mechanism (its SaslHandshake answers UNSUPPORTED_SASL_MECHANISM;
//! with `--authentication` it refuses even `tansu user create`), so the SASL
//! listener's upstream is `host-tests/clients/sasl_front.py`, which plays the
//! broker's SASL part: it answers SaslHandshake and SaslAuthenticate itself with a
//! real server side (PLAIN password check, SCRAM-SHA-256/512 with salted PBKDF2,
//! proof checked and server signature returned, OAUTHBEARER unsecured JWT `sub`)
//! and forwards every other byte, both ways, unchanged to and from the real tansu.
//! The clients and the SASL exchanges crossing the filter are the real ones; only
//! the broker's SASL verdicts are the front's. The front logs one line per finished
//! login, which the test counts against `tally_authentication_failures`.
//!
//! See `docs/metering.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use host_tests::http::{Server, ServerConfig};
use host_tests::metering::{
    envoy_json, parse_stats, sum_usage, tally_stats, Certs, MListener, Prometheus, TallyStat,
};
use host_tests::{
    free_port, plugin_wasm, repo_root, run_with_timeout, wait_for_port, Envoy, Process, Tansu,
    Tools, Workdir,
};
use serde_json::json;

const CLUSTER: &str = "kafka-test";

/// The SASL front's users (`user:password`); `mallory` is the one who gets her password wrong.
const SASL_USERS: [&str; 5] = [
    "sa-payments.writer:plain-secret",
    "ledger_scram256:scram256-secret",
    "analytics.scram512:scram512-secret",
    "mallory:the-real-one",
    // OAUTHBEARER needs no password (unsecured JWT); listed for the record only.
    "oauth-clicks-svc:unused",
];

fn tansu(
    tools: &Tools,
    dir: &Workdir,
    name: &str,
    advertised: u16,
    extra: &[&str],
) -> (u16, Process) {
    let t = Tansu::start_named(tools, dir, name, advertised, extra);
    (t.port, t.process)
}

fn create_topic(tools: &Tools, dir: &Workdir, port: u16, topic: &str) {
    let mut cmd = Command::new(&tools.tansu);
    cmd.args(["topic", "create", topic, "--partitions", "1", "--broker"])
        .arg(format!("tcp://127.0.0.1:{port}"));
    let (ok, out, err) = run_with_timeout(
        dir,
        &format!("topic-{topic}"),
        &mut cmd,
        Duration::from_secs(30),
    );
    assert!(ok, "create topic {topic}: {out} {err}");
}

/// One client run: library, listener port, TLS client cert stem, client.id, topic, codec, count, size.
struct Run {
    lib: &'static str,
    port: u16,
    cert: Option<&'static str>,
    client_id: &'static str,
    topic: &'static str,
    codec: &'static str,
    count: u64,
    size: u64,
    /// Expected principal and source.
    principal: &'static str,
    source: &'static str,
    /// SASL login: (mechanism, user, password).
    sasl: Option<(&'static str, &'static str, &'static str)>,
}

fn client(
    tools: &Tools,
    dir: &Workdir,
    certs: &Certs,
    r: &Run,
) -> std::thread::JoinHandle<(bool, String, String)> {
    let script = repo_root().join("host-tests/clients/kafka_client.py");
    let mut cmd = Command::new(&tools.python);
    cmd.arg(script)
        .args([
            "--lib",
            r.lib,
            "--topic",
            r.topic,
            "--codec",
            r.codec,
            "--client-id",
            r.client_id,
        ])
        .arg("--bootstrap")
        .arg(format!("127.0.0.1:{}", r.port))
        .arg("--count")
        .arg(r.count.to_string())
        .arg("--size")
        .arg(r.size.to_string());
    if let Some(stem) = r.cert {
        let (cert, key) = &certs.clients[stem];
        cmd.arg("--ca")
            .arg(&certs.ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key);
    }
    if let Some((mechanism, user, password)) = r.sasl {
        cmd.args(["--sasl", mechanism, user, password]);
    }
    let log = format!("client-{}-{}", r.lib, r.topic);
    let dir_path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let dir = WorkdirRef(dir_path);
        dir.run(&log, &mut cmd)
    })
}

/// `run_with_timeout` needs a `Workdir`; threads get a path and write their own log.
struct WorkdirRef(std::path::PathBuf);
impl WorkdirRef {
    fn run(&self, name: &str, cmd: &mut Command) -> (bool, String, String) {
        let out = cmd.output().expect("run a client");
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        let _ = std::fs::write(
            self.0.join(format!("{name}.log")),
            format!("{o}\n--- stderr\n{e}"),
        );
        (out.status.success(), o, e)
    }
}

fn stat(stats: &[(TallyStat, u64)], metric: &str, want: &[(&str, &str)]) -> u64 {
    stats
        .iter()
        .filter(|(s, _)| {
            s.metric == metric
                && want
                    .iter()
                    .all(|(k, v)| s.tags.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .sum()
}

/// Sum of a tally stat over every principal in `principals`.
fn stat_over(
    stats: &[(TallyStat, u64)],
    metric: &str,
    direction: &str,
    principals: &BTreeSet<&str>,
) -> u64 {
    stats
        .iter()
        .filter(|(s, _)| {
            s.metric == metric
                && s.tags.get("direction").map(String::as_str) == Some(direction)
                && s.tags
                    .get("principal")
                    .is_some_and(|p| principals.contains(p.as_str()))
        })
        .map(|(_, v)| *v)
        .sum()
}

/// The usage rows the stats imply: (principal, source, topic, metric) -> value.
fn usage_from_stats(stats: &[(TallyStat, u64)]) -> BTreeMap<(String, String, String, String), u64> {
    let mut out = BTreeMap::new();
    for (s, v) in stats {
        let dir = s.tags.get("direction").map(String::as_str).unwrap_or("");
        let metric = match (s.metric.as_str(), dir) {
            ("tally_bytes", "produced") => "produced_bytes",
            ("tally_bytes", "consumed") => "consumed_bytes",
            ("tally_records", "produced") => "produced_records",
            ("tally_records", "consumed") => "consumed_records",
            ("tally_wire_bytes", "request") => "request_bytes",
            ("tally_wire_bytes", "response") => "response_bytes",
            ("tally_requests", _) => "requests",
            _ => continue,
        };
        let t = |k: &str| s.tags.get(k).cloned().unwrap_or_default();
        *out.entry((t("principal"), t("source"), t("topic"), metric.to_string()))
            .or_insert(0) += v;
    }
    out
}

/// Polls Envoy's stats until `ok` holds for them twice in a row 300 ms apart.
fn settle(
    envoy: &Envoy,
    what: &str,
    ok: impl Fn(&BTreeMap<String, u64>) -> bool,
) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = BTreeMap::new();
    while Instant::now() < deadline {
        // Only the metering-relevant stats must be still (flush counters move on).
        let now: BTreeMap<String, u64> = parse_stats(&envoy.stats())
            .into_iter()
            .filter(|(k, _)| {
                (k.starts_with("wasmcustom.") && !k.contains("tally_flush"))
                    || k.starts_with("tcp.")
                    || k.starts_with("cluster.up_")
                    || (k.starts_with("listener.") && !k.starts_with("listener.admin"))
            })
            .collect();
        if ok(&now) && now == last {
            return now;
        }
        if Instant::now() + Duration::from_millis(400) > deadline {
            let moving: Vec<_> = now
                .iter()
                .filter(|(k, v)| last.get(*k) != Some(v))
                .collect();
            eprintln!("still moving: {moving:?}; condition holds: {}", ok(&now));
        }
        last = now;
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "Envoy stats did not settle ({what}); last:\n{}",
        last.iter()
            .filter(|(k, _)| k.starts_with("wasmcustom") || k.contains("bytes_total"))
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect::<String>()
    );
}

fn plugin_config(flush_port_cluster: &str) -> serde_json::Value {
    json!({
        "cluster": CLUSTER,
        "flush_interval_seconds": 1,
        "bucket_seconds": 60,
        "flush": {"cluster": flush_port_cluster, "path": "/usage", "timeout_ms": 1000},
        "broker_metric_names": true,
        "max_frame_bytes": 8 * 1024 * 1024,
        "max_stat_series": 500
    })
}

#[test]
fn metering_end_to_end() {
    let tools = Tools::locate();
    let dir = Workdir::new("metering");
    let wasm = plugin_wasm();
    let certs = Certs::generate(
        &dir,
        &[
            ("orders", "/CN=orders-svc/OU=payments/O=acme"),
            ("billing", "/O=acme/CN=billing.svc"),
            ("audit", "/CN=audit-ops/O=acme"),
        ],
    );
    let (admin, plain, tls, auth, flush_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    // One broker per listener: each advertises its own listener so clients stay on it.
    let (plain_up, _t1) = tansu(&tools, &dir, "tansu-plain", plain, &[]);
    let (tls_up, _t2) = tansu(&tools, &dir, "tansu-tls", tls, &[]);
    // The SASL listener's broker sits behind the SASL front (see the module doc).
    let (auth_broker, _t3) = tansu(&tools, &dir, "tansu-auth", auth, &[]);
    let auth_up = free_port();
    let front = Process::spawn(
        &dir,
        "sasl-front",
        Command::new(&tools.python)
            .arg(repo_root().join("host-tests/clients/sasl_front.py"))
            .arg(auth_up.to_string())
            .arg(auth_broker.to_string())
            .args(SASL_USERS),
    );
    wait_for_port(auth_up, Duration::from_secs(15), "the SASL front to listen");
    for t in ["reports.daily", "legacy-events"] {
        create_topic(&tools, &dir, plain_up, t);
    }
    for t in ["orders.v1", "billing-events", "audit_log"] {
        create_topic(&tools, &dir, tls_up, t);
    }
    for t in [
        "payments.v2",
        "ledger-entries",
        "clicks_raw",
        "search.queries",
    ] {
        create_topic(&tools, &dir, auth_broker, t);
    }
    let cfg = plugin_config("usage_sink");
    let listeners = vec![
        MListener {
            name: "kafka_plain".into(),
            port: plain,
            plugin: Some(cfg.clone()),
            tls: None,
            cluster: "up_plain".into(),
        },
        MListener {
            name: "kafka_tls".into(),
            port: tls,
            plugin: Some(cfg.clone()),
            tls: Some((
                certs.server.0.clone(),
                certs.server.1.clone(),
                certs.ca.clone(),
            )),
            cluster: "up_tls".into(),
        },
        MListener {
            name: "kafka_auth".into(),
            port: auth,
            plugin: Some(cfg),
            tls: None,
            cluster: "up_auth".into(),
        },
    ];
    let config = envoy_json(
        admin,
        &wasm,
        &listeners,
        &[
            ("up_plain", plain_up),
            ("up_tls", tls_up),
            ("up_auth", auth_up),
            ("usage_sink", flush_port),
        ],
    );
    let envoy = Envoy::start(&tools, &dir, &config, admin);
    assert!(
        envoy
            .process
            .log()
            .contains(&format!("tally: metering Kafka cluster `{CLUSTER}`")),
        "the tally filter must be loaded (its start-up line is missing from Envoy's log)"
    );

    // 1. A malformed frame on a raw socket: a size prefix of 16 MiB (over max_frame_bytes).
    let junk: Vec<u8> = [&[0x01u8, 0, 0, 0][..], &[0xAB; 96][..]].concat();
    {
        let mut s =
            TcpStream::connect(("127.0.0.1", plain)).expect("connect to the plain listener");
        s.write_all(&junk).expect("send junk");
        std::thread::sleep(Duration::from_millis(300));
    }
    settle(&envoy, "the junk connection metered", |s| {
        s.get("tcp.kafka_plain.downstream_cx_rx_bytes_total")
            .copied()
            == Some(junk.len() as u64)
            && s.keys()
                .any(|k| k.starts_with("wasmcustom.tally_decode_errors"))
    });
    assert_eq!(
        host_tests::http::get(admin, "/ready")
            .map(|r| r.status)
            .ok(),
        Some(200),
        "Envoy healthy after junk"
    );

    // 2. Real clients: two libraries, four codecs, three mTLS principals, two client.id-only clients.
    let runs = [
        Run {
            lib: "confluent",
            port: plain,
            cert: None,
            client_id: "reporting-app",
            topic: "reports.daily",
            codec: "zstd",
            count: 400,
            size: 200,
            principal: "reporting-app",
            source: "client_id",
            sasl: None,
        },
        Run {
            lib: "kafka-python",
            port: plain,
            cert: None,
            client_id: "legacy.py",
            topic: "legacy-events",
            codec: "lz4",
            count: 150,
            size: 300,
            principal: "legacy.py",
            source: "client_id",
            sasl: None,
        },
        Run {
            lib: "confluent",
            port: tls,
            cert: Some("orders"),
            client_id: "orders-producer",
            topic: "orders.v1",
            codec: "gzip",
            count: 512,
            size: 1024,
            principal: "orders-svc",
            source: "mtls",
            sasl: None,
        },
        Run {
            lib: "kafka-python",
            port: tls,
            cert: Some("billing"),
            client_id: "billing",
            topic: "billing-events",
            codec: "snappy",
            count: 200,
            size: 500,
            principal: "billing.svc",
            source: "mtls",
            sasl: None,
        },
        Run {
            lib: "confluent",
            port: tls,
            cert: Some("audit"),
            client_id: "audit",
            topic: "audit_log",
            codec: "lz4",
            count: 100,
            size: 64,
            principal: "audit-ops",
            source: "mtls",
            sasl: None,
        },
        Run {
            lib: "confluent",
            port: auth,
            cert: None,
            client_id: "payments-writer",
            topic: "payments.v2",
            codec: "zstd",
            count: 300,
            size: 256,
            principal: "sa-payments.writer",
            source: "sasl_plain",
            sasl: Some(("PLAIN", "sa-payments.writer", "plain-secret")),
        },
        Run {
            lib: "kafka-python",
            port: auth,
            cert: None,
            client_id: "ledger",
            topic: "ledger-entries",
            codec: "gzip",
            count: 120,
            size: 400,
            principal: "ledger_scram256",
            source: "sasl_scram_sha_256",
            sasl: Some(("SCRAM-SHA-256", "ledger_scram256", "scram256-secret")),
        },
        Run {
            lib: "confluent",
            port: auth,
            cert: None,
            client_id: "analytics",
            topic: "clicks_raw",
            codec: "snappy",
            count: 250,
            size: 150,
            principal: "analytics.scram512",
            source: "sasl_scram_sha_512",
            sasl: Some(("SCRAM-SHA-512", "analytics.scram512", "scram512-secret")),
        },
        Run {
            lib: "confluent",
            port: auth,
            cert: None,
            client_id: "search",
            topic: "search.queries",
            codec: "lz4",
            count: 180,
            size: 120,
            principal: "oauth-clicks-svc",
            source: "sasl_oauthbearer",
            sasl: Some(("OAUTHBEARER", "oauth-clicks-svc", "-")),
        },
    ];
    let handles: Vec<_> = runs
        .iter()
        .map(|r| client(&tools, &dir, &certs, r))
        .collect();
    // A failed SASL login (a real user, the wrong password, answered by the SASL
    // front): never attributed to the name it tried.
    let mut fail = Command::new(&tools.python);
    fail.arg(repo_root().join("host-tests/clients/kafka_client.py"))
        .args([
            "--lib",
            "confluent",
            "--topic",
            "x",
            "--client-id",
            "sasl-fail-client",
            "--expect-auth-failure",
        ])
        .args(["--sasl", "SCRAM-SHA-256", "mallory", "not-the-real-one"])
        .arg("--bootstrap")
        .arg(format!("127.0.0.1:{auth}"));
    let (failed_ok, out, err) =
        run_with_timeout(&dir, "client-sasl-fail", &mut fail, Duration::from_secs(60));
    assert!(
        failed_ok && err.contains("SASL authentication error"),
        "the SASL login must fail: {out}\n{err}"
    );
    for (h, r) in handles.into_iter().zip(&runs) {
        let (ok, out, err) = h.join().expect("client thread");
        assert!(ok, "client {} {} failed: {out}\n{err}", r.lib, r.topic);
        let v: serde_json::Value =
            serde_json::from_str(out.trim().lines().last().unwrap_or("{}")).expect("client JSON");
        assert_eq!(v["consumed"].as_u64(), Some(r.count), "{}: {out}", r.topic);
    }
    let stats_map = settle(&envoy, "all connections closed and metered", |s| {
        ["kafka_plain", "kafka_tls", "kafka_auth"].iter().all(|l| {
            let active = s
                .iter()
                .filter(|(k, _)| k.ends_with("downstream_cx_active") && k.starts_with("listener."))
                .map(|(_, v)| *v)
                .sum::<u64>();
            active == 0
                && s.get(&format!("tcp.{l}.downstream_cx_total"))
                    .copied()
                    .unwrap_or(0)
                    > 0
        })
    });
    let stats = tally_stats(&stats_map);
    std::fs::write(
        dir.join("tally-stats.txt"),
        stats
            .iter()
            .map(|(s, v)| format!("{s:?} = {v}\n"))
            .collect::<String>(),
    )
    .ok();

    // 3. Per (principal, topic): record counts equal what the client sent and read;
    //    record-set bytes produced equal those consumed for the same batches.
    for r in &runs {
        let sel = |d: &'static str| {
            [
                ("principal", r.principal),
                ("source", r.source),
                ("topic", r.topic),
                ("direction", d),
                ("cluster", CLUSTER),
            ]
        };
        let produced = stat(&stats, "tally_bytes", &sel("produced"));
        assert!(produced > 0, "{}: produced bytes counted", r.topic);
        assert_eq!(
            stat(&stats, "tally_records", &sel("produced")),
            r.count,
            "{}: produced records",
            r.topic
        );
        // Each client consumed only its own topic, from offset 0, with one consumer.
        // Fetch v13+ names topics by id, and librdkafka fetches on another
        // connection than its bootstrap Metadata (possibly on the other worker):
        // the id learned there must name the topic here.
        let consumed_sets: Vec<(String, u64, u64)> = stats
            .iter()
            .filter(|(s, _)| {
                s.metric == "tally_bytes"
                    && s.tags.get("direction").map(String::as_str) == Some("consumed")
                    && s.tags.get("principal").map(String::as_str) == Some(r.principal)
            })
            .map(|(s, v)| {
                let topic = s.tags["topic"].clone();
                let mut rec_sel: Vec<(&str, &str)> =
                    vec![("principal", r.principal), ("direction", "consumed")];
                rec_sel.push(("topic", topic.as_str()));
                (topic.clone(), *v, stat(&stats, "tally_records", &rec_sel))
            })
            .collect();
        assert_eq!(
            consumed_sets.len(),
            1,
            "{}: one consumed topic: {consumed_sets:?}",
            r.topic
        );
        let (label, consumed, records) = consumed_sets[0].clone();
        assert_eq!(
            label, r.topic,
            "{} ({}): the consumed topic is named, not left as an id",
            r.topic, r.lib
        );
        assert_eq!(
            produced, consumed,
            "{} ({} {}): record-set bytes produced == consumed",
            r.topic, r.lib, r.codec
        );
        assert_eq!(records, r.count, "{}: consumed records", r.topic);
        // The broker-style twins carry the same numbers.
        let broker = stat(
            &stats,
            "kafka_server_brokertopicmetrics_bytesin_total",
            &[("principal", r.principal), ("topic", r.topic)],
        );
        assert_eq!(broker, produced, "{}: broker-style bytesin", r.topic);
        let out = stat(
            &stats,
            "kafka_server_brokertopicmetrics_bytesout_total",
            &[("principal", r.principal), ("topic", label.as_str())],
        );
        assert_eq!(out, consumed, "{}: broker-style bytesout", r.topic);
    }

    // 4. Wire bytes equal Envoy's own counters, per listener (plaintext side).
    let plain_principals: BTreeSet<&str> = ["reporting-app", "legacy.py", "ANONYMOUS"].into();
    let tls_principals: BTreeSet<&str> = ["orders-svc", "billing.svc", "audit-ops"].into();
    // A SASL client's connection that closes before its login is answered (e.g.
    // librdkafka dropping a connection it no longer needs mid-handshake) is never
    // attributed to the login: it falls through to client.id (checked below).
    let auth_principals: BTreeSet<&str> = runs
        .iter()
        .filter(|r| r.sasl.is_some())
        .flat_map(|r| [r.principal, r.client_id])
        .chain(["sasl-fail-client"])
        .collect();
    let envoy_stat = |k: &str| {
        stats_map
            .get(k)
            .copied()
            .unwrap_or_else(|| panic!("Envoy stat {k} missing"))
    };
    // Requests: what Envoy read from the client (TLS: what it wrote upstream, the
    // plaintext). Responses: what Envoy read from the broker, which is what the
    // filter sees; Envoy writes less downstream when the client closed first
    // (a response still in flight is discarded), so downstream tx is a bound.
    for (principals, rx, up_rx, down_tx, what) in [
        (
            &plain_principals,
            "tcp.kafka_plain.downstream_cx_rx_bytes_total",
            "cluster.up_plain.upstream_cx_rx_bytes_total",
            "tcp.kafka_plain.downstream_cx_tx_bytes_total",
            "plain listener",
        ),
        (
            &tls_principals,
            "cluster.up_tls.upstream_cx_tx_bytes_total",
            "cluster.up_tls.upstream_cx_rx_bytes_total",
            "",
            "TLS listener (plaintext side)",
        ),
        (
            &auth_principals,
            "tcp.kafka_auth.downstream_cx_rx_bytes_total",
            "cluster.up_auth.upstream_cx_rx_bytes_total",
            "tcp.kafka_auth.downstream_cx_tx_bytes_total",
            "SASL listener",
        ),
    ] {
        let request = stat_over(&stats, "tally_wire_bytes", "request", principals);
        let response = stat_over(&stats, "tally_wire_bytes", "response", principals);
        assert_eq!(request, envoy_stat(rx), "{what}: request bytes == {rx}");
        assert_eq!(
            response,
            envoy_stat(up_rx),
            "{what}: response bytes == {up_rx}"
        );
        if !down_tx.is_empty() {
            assert!(
                response >= envoy_stat(down_tx),
                "{what}: {down_tx} <= response bytes"
            );
            eprintln!(
                "{what}: request {request} == {rx}; response {response} == {up_rx}; {down_tx} = {}",
                envoy_stat(down_tx)
            );
        }
    }

    // 5. The failed SASL login is not attributed to the name it tried.
    assert!(
        !stats.iter().any(|(s, _)| s
            .tags
            .get("principal")
            .is_some_and(|p| p.contains("mallory"))),
        "a failed login must not name a principal"
    );
    assert!(
        stat(
            &stats,
            "tally_wire_bytes",
            &[("principal", "sasl-fail-client"), ("source", "client_id")]
        ) > 0
    );

    // Each SASL principal's wire bytes and requests carry its mechanism's source
    // label only (no connection of theirs fell through to client.id or ANONYMOUS),
    // and the failed client's only `client_id`.
    for (principal, source) in runs
        .iter()
        .filter(|r| r.sasl.is_some())
        .map(|r| (r.principal, r.source))
        .chain([("sasl-fail-client", "client_id")])
    {
        for metric in ["tally_wire_bytes", "tally_requests"] {
            let all = stat(&stats, metric, &[("principal", principal)]);
            assert!(all > 0, "{principal}: {metric} counted");
            assert_eq!(
                stat(
                    &stats,
                    metric,
                    &[("principal", principal), ("source", source)]
                ),
                all,
                "{principal}: every {metric} labelled source={source}"
            );
        }
    }
    // Whatever of a SASL client is named by its client.id (connections closed
    // before their login was answered) carries no Kafka traffic: every record
    // set went to the login, as the exact counts above already require.
    for r in runs.iter().filter(|r| r.sasl.is_some()) {
        let by_client_id: Vec<_> = stats
            .iter()
            .filter(|(s, _)| s.tags.get("principal").map(String::as_str) == Some(r.client_id))
            .collect();
        for (s, v) in &by_client_id {
            assert!(
                matches!(s.metric.as_str(), "tally_wire_bytes" | "tally_requests")
                    && s.tags.get("source").map(String::as_str) == Some("client_id"),
                "{}: only unauthenticated handshakes may be named by client.id `{}`: {s:?} = {v}",
                r.principal,
                r.client_id
            );
        }
        if !by_client_id.is_empty() {
            eprintln!(
                "{}: connections closed before their login was answered, named by client.id: {by_client_id:?}",
                r.principal
            );
        }
    }

    // The broker's (front's) rejections, one per failed connection (librdkafka
    // retries until its metadata timeout), are each counted, and the successful
    // logins are not.
    let front_log = front.log();
    let rejected = front_log
        .lines()
        .filter(|l| *l == "sasl_front: SCRAM-SHA-256 failed")
        .count() as u64;
    assert!(rejected >= 1, "the front rejected mallory: {front_log}");
    assert!(
        front_log.lines().filter(|l| l.contains(" ok ")).count() >= 4,
        "the four SASL principals logged in: {front_log}"
    );
    assert_eq!(
        stat(
            &stats,
            "tally_authentication_failures",
            &[("cluster", CLUSTER)]
        ),
        rejected,
        "every rejected login is counted in tally_authentication_failures, and only those"
    );

    // 6. The junk frame was counted as a decode error and raw bytes.
    assert!(
        stat(&stats, "tally_decode_errors", &[("cluster", CLUSTER)]) >= 1,
        "decode error counted"
    );
    assert!(
        stat(&stats, "tally_unparsed_bytes", &[("cluster", CLUSTER)]) >= junk.len() as u64 - 4,
        "junk counted raw"
    );

    // 7. The flush: the sink was down so far (posts failed and were kept); start it now.
    let expected_usage = usage_from_stats(&stats);
    let server = Server::start(
        flush_port,
        ServerConfig {
            collect_posts_to: Some(dir.join("usage-posts.csv")),
            ..ServerConfig::default()
        },
    )
    .expect("start the usage sink");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = BTreeMap::new();
    while Instant::now() < deadline {
        got = sum_usage(&server.posts());
        if got == expected_usage {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        got, expected_usage,
        "flushed usage rows == the counters, no row lost or counted twice"
    );
    let after = tally_stats(&parse_stats(&envoy.stats()));
    assert!(
        stat(&after, "tally_flush_failures", &[]) >= 1,
        "posts failed while the sink was down"
    );
    assert_eq!(stat(&after, "tally_flush_rows_dropped", &[]), 0);
    assert_eq!(
        stat(&after, "tally_flush_rows_posted", &[]),
        server
            .posts()
            .iter()
            .map(|b| String::from_utf8_lossy(b).lines().count() as u64 - 1)
            .sum::<u64>()
    );

    // 8. A real Prometheus scrapes Envoy; the labelled series are queryable.
    let prom = Prometheus::start(&tools, &dir, admin);
    let orders = &runs[2];
    let want = stat(
        &stats,
        "tally_bytes",
        &[
            ("principal", orders.principal),
            ("topic", orders.topic),
            ("direction", "produced"),
        ],
    );
    let q = r#"tally_bytes{cluster="kafka-test",principal="orders-svc",source="mtls",topic="orders_2Ev1",direction="produced"}"#;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut result = Vec::new();
    while Instant::now() < deadline && result.is_empty() {
        result = prom.query(q);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(result.len(), 1, "{q}: {result:?}");
    assert_eq!(
        result[0]["value"][1].as_str(),
        Some(want.to_string().as_str()),
        "{q}"
    );
    let broker = prom.query(r#"kafka_server_brokertopicmetrics_bytesin_total{principal="billing_2Esvc",topic="billing-events"}"#);
    assert_eq!(
        broker.len(),
        1,
        "broker-style series in Prometheus: {broker:?}"
    );
}

#[test]
fn a_bad_configuration_is_refused_at_load() {
    let tools = Tools::locate();
    let dir = Workdir::new("metering-bad-config");
    let wasm = plugin_wasm();
    let (admin, port) = (free_port(), free_port());
    let listeners = vec![MListener {
        name: "kafka".into(),
        port,
        plugin: Some(json!({"cluster": "x", "principal_sources": ["kerberos"]})),
        tls: None,
        cluster: "up".into(),
    }];
    let config = dir.write(
        "envoy.yaml",
        envoy_json(admin, &wasm, &listeners, &[("up", free_port())]),
    );
    let mut cmd = Command::new(&tools.envoy);
    cmd.arg("-c")
        .arg(&config)
        .args(["--concurrency", "1", "--disable-hot-restart", "--base-id"])
        .arg(admin.to_string());
    let (ok, out, err) = run_with_timeout(&dir, "envoy", &mut cmd, Duration::from_secs(60));
    assert!(!ok, "Envoy must refuse the listener");
    let log = format!("{out}{err}");
    assert!(
        log.contains(
            "tally: invalid filter configuration: `principal_sources`: unknown source `kerberos`"
        ),
        "clear log line expected:\n{log}"
    );
}
