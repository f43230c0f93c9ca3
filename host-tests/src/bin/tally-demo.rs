//! `tally-demo`: the whole product on one machine (what `scripts/demo` runs).
//!
//! 1. A tansu Kafka broker behind a SASL front (see `host-tests/clients/sasl_front.py`
//!    for why), and a real Envoy whose one listener serves plaintext/SASL clients and
//!    mTLS clients (TLS inspector picks the filter chain); both chains run the tally
//!    filter, which flushes usage rows every few seconds to a local collector.
//! 2. Five demo applications, each a different principal (SASL PLAIN, SCRAM-SHA-512,
//!    SCRAM-SHA-256, an mTLS certificate, a client.id-only legacy client), produce
//!    and consume on four topics at different rates with all four codecs.
//! 3. The flushed usage becomes `out/demo/usage.csv`; Envoy's counters are printed
//!    per principal and topic; a sample Confluent bill and a WarpStream invoice for
//!    the same day are allocated against that usage by the `tally` command line.
//! 4. The page is served on localhost with the demo's files one click away.
//!
//! ```text
//! tally-demo [--duration SECONDS] [--port PORT] [--flush-seconds N] [--no-serve] [--out DIR]
//! ```
//! Ctrl-C stops everything: every process is in a guard that kills its group.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use host_tests::http::{Server, ServerConfig};
use host_tests::metering::{envoy_json, parse_stats, tally_stats, Certs, MListener};
use host_tests::{
    free_port, plugin_wasm, repo_root, run_with_timeout, tally_cli, wait_for_port, web_dist, Envoy,
    Process, Tansu, Tools, Workdir,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLUSTER: &str = "lkc-demo";
const TOPICS: [&str; 4] = [
    "orders.created",
    "orders.shipped",
    "clicks.pageviews",
    "invoices.issued",
];

struct Args {
    duration: u64,
    port: u16,
    flush_seconds: u64,
    serve: bool,
    out: std::path::PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        duration: 90,
        port: 8080,
        flush_seconds: 10,
        serve: true,
        out: repo_root().join("out/demo"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{flag} needs a number")))
        };
        match flag.as_str() {
            "--duration" => args.duration = number(),
            "--port" => args.port = number() as u16,
            "--flush-seconds" => args.flush_seconds = number().max(1),
            "--no-serve" => args.serve = false,
            "--out" => {
                args.out = it
                    .next()
                    .map(Into::into)
                    .unwrap_or_else(|| usage("--out needs a directory"))
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    args
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("tally-demo: {problem}");
    }
    eprintln!("usage: tally-demo [--duration SECONDS (90)] [--port PORT (8080)] [--flush-seconds N (10)] [--no-serve] [--out DIR (out/demo)]");
    std::process::exit(if problem.is_empty() { 0 } else { 2 })
}

/// One demo application: who it is and what it does.
struct App {
    name: &'static str,
    args: Vec<String>,
}

fn apps(bootstrap: &str, certs: &Certs) -> Vec<App> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let (cert, key) = &certs.clients["payments-gateway"];
    vec![
        App {
            name: "sa-orders-writer (SASL PLAIN)",
            args: s(&[
                "--client-id",
                "orders-service",
                "--sasl",
                "PLAIN",
                "sa-orders-writer",
                "orders-secret",
                "--produce",
                "orders.created:40:1024:lz4",
                "--produce",
                "orders.shipped:15:512:zstd",
            ]),
        },
        App {
            name: "sa-analytics-reader (SCRAM-SHA-512)",
            args: s(&[
                "--client-id",
                "analytics-etl",
                "--sasl",
                "SCRAM-SHA-512",
                "sa-analytics-reader",
                "analytics-secret",
                "--consume",
                "orders.created",
                "--consume",
                "clicks.pageviews",
            ]),
        },
        App {
            name: "scram-billing (SCRAM-SHA-256)",
            args: s(&[
                "--client-id",
                "billing-batch",
                "--sasl",
                "SCRAM-SHA-256",
                "scram-billing",
                "billing-secret",
                "--produce",
                "invoices.issued:8:2048:gzip",
                "--consume",
                "orders.shipped",
            ]),
        },
        App {
            name: "payments-gateway (mTLS certificate)",
            args: vec![
                "--client-id".into(),
                "payments-gw".into(),
                "--tls".into(),
                certs.ca.display().to_string(),
                cert.display().to_string(),
                key.display().to_string(),
                "--produce".into(),
                "clicks.pageviews:60:300:snappy".into(),
            ],
        },
        App {
            name: "legacy-reporter (client.id only)",
            args: s(&[
                "--client-id",
                "legacy-reporter",
                "--consume",
                "invoices.issued",
            ]),
        },
    ]
    .into_iter()
    .map(|mut app| {
        app.args
            .splice(0..0, ["--bootstrap".to_string(), bootstrap.to_string()]);
        app
    })
    .collect()
}

/// The Envoy bootstrap: one listener, a TLS chain (mTLS, straight to tansu) chosen
/// by the TLS inspector and a plaintext chain (through the SASL front).
fn envoy_config(
    admin: u16,
    listener: u16,
    tansu: u16,
    front: u16,
    sink: u16,
    flush_seconds: u64,
    certs: &Certs,
) -> String {
    let plugin = json!({
        "cluster": CLUSTER,
        "flush_interval_seconds": flush_seconds,
        "bucket_seconds": 60,
        "flush": {"cluster": "tally_usage", "path": "/usage"}
    });
    let wasm = plugin_wasm();
    let chain = |name: &str, tls: bool, upstream: &str| MListener {
        name: name.into(),
        port: listener,
        plugin: Some(plugin.clone()),
        tls: tls.then(|| {
            (
                certs.server.0.clone(),
                certs.server.1.clone(),
                certs.ca.clone(),
            )
        }),
        cluster: upstream.into(),
    };
    let rendered = envoy_json(
        admin,
        &wasm,
        &[
            chain("kafka_tls", true, "kafka_direct"),
            chain("kafka_plain", false, "kafka_sasl"),
        ],
        &[
            ("kafka_direct", tansu),
            ("kafka_sasl", front),
            ("tally_usage", sink),
        ],
    );
    // Merge the two generated listeners into one port: TLS chain first (matched on
    // transport protocol), plaintext chain as the default.
    let mut config: Value = serde_json::from_str(&rendered).expect("generated Envoy JSON");
    let listeners = config["static_resources"]["listeners"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut tls_chain = listeners[0]["filter_chains"][0].clone();
    tls_chain["filter_chain_match"] = json!({"transport_protocol": "tls"});
    let plain_chain = listeners[1]["filter_chains"][0].clone();
    config["static_resources"]["listeners"] = json!([{
        "name": "kafka",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener}},
        "listener_filters": [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}
        }],
        "filter_chains": [tls_chain, plain_chain]
    }]);
    serde_json::to_string_pretty(&config).expect("render Envoy JSON")
}

fn render_bill(template: &Path, out: &Path, day: &str, next_day: &str) {
    let text = fs::read_to_string(template).expect("read a bill template");
    fs::write(out, text.replace("{START}", day).replace("{END}", next_day)).expect("write a bill");
}

/// Joins the flushed POST bodies into one usage CSV (one header line).
fn write_usage(posts: &[Vec<u8>], out: &Path) -> usize {
    let mut csv = String::from(tally::usage::USAGE_CSV_HEADER);
    csv.push('\n');
    let mut rows = 0;
    for body in posts {
        for line in String::from_utf8_lossy(body).lines() {
            if line.is_empty() || line.starts_with("version,") {
                continue;
            }
            csv.push_str(line);
            csv.push('\n');
            rows += 1;
        }
    }
    fs::write(out, csv).expect("write usage.csv");
    rows
}

fn print_counters(envoy: &Envoy) {
    let stats = parse_stats(&envoy.stats());
    let mut table: BTreeMap<(String, String), [u64; 4]> = BTreeMap::new();
    for (stat, value) in tally_stats(&stats) {
        let column = match (
            stat.metric.as_str(),
            stat.tags.get("direction").map(String::as_str),
        ) {
            ("tally_bytes", Some("produced")) => 0,
            ("tally_bytes", Some("consumed")) => 1,
            ("tally_records", Some("produced")) => 2,
            ("tally_records", Some("consumed")) => 3,
            _ => continue,
        };
        let tag = |t: &str| stat.tags.get(t).cloned().unwrap_or_default();
        let key = (tag("principal"), tag("topic"));
        table.entry(key).or_default()[column] += value;
    }
    println!("\nEnvoy counters (tally filter), per principal and topic:");
    println!(
        "  {:<34} {:<18} {:>14} {:>14} {:>10} {:>10}",
        "principal", "topic", "produced B", "consumed B", "prod rec", "cons rec"
    );
    for ((principal, topic), v) in &table {
        println!(
            "  {principal:<34} {topic:<18} {:>14} {:>14} {:>10} {:>10}",
            v[0], v[1], v[2], v[3]
        );
    }
}

/// Runs the `tally` command line; its summary (files read, reconciliation) goes to stderr.
fn run_tally(dir: &Workdir, name: &str, args: &[String]) {
    let (ok, out, err) = run_with_timeout(
        dir,
        name,
        Command::new(tally_cli()).args(args),
        Duration::from_secs(120),
    );
    assert!(ok, "tally {args:?} failed:\n{out}\n{err}");
    eprint!("{err}");
}

fn main() {
    let args = parse_args();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .expect("install the Ctrl-C handler");
    }
    let tools = Tools::locate();
    let out_dir = args.out.clone();
    let dir = Workdir::at(&out_dir);
    println!("tally demo: working in {}", out_dir.display());

    // 1. Broker, SASL front, collector, Envoy.
    let (admin, listener, front_port) = (free_port(), free_port(), free_port());
    let tansu = Tansu::start(&tools, &dir, listener, &[]);
    let users = [
        "sa-orders-writer:orders-secret",
        "sa-analytics-reader:analytics-secret",
        "scram-billing:billing-secret",
    ];
    let front_script = repo_root().join("host-tests/clients/sasl_front.py");
    let _front = Process::spawn(
        &dir,
        "sasl-front",
        Command::new(&tools.python)
            .arg(&front_script)
            .arg(front_port.to_string())
            .arg(tansu.port.to_string())
            .args(users),
    );
    wait_for_port(front_port, Duration::from_secs(15), "the SASL front");
    for topic in TOPICS {
        let mut cmd = Command::new(&tools.tansu);
        cmd.args(["topic", "create", topic, "--partitions", "1", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", tansu.port));
        let (ok, out, err) = run_with_timeout(
            &dir,
            &format!("topic-{topic}"),
            &mut cmd,
            Duration::from_secs(30),
        );
        assert!(ok, "create topic {topic}: {out}{err}");
    }
    let collector = Server::start(0, ServerConfig::default()).expect("start the usage collector");
    let certs = Certs::generate(&dir, &[("payments-gateway", "/CN=payments-gateway/O=acme")]);
    let envoy = Envoy::start(
        &tools,
        &dir,
        &envoy_config(
            admin,
            listener,
            tansu.port,
            front_port,
            collector.port,
            args.flush_seconds,
            &certs,
        ),
        admin,
    );
    println!(
        "Envoy with the tally filter on 127.0.0.1:{listener} (admin {admin}); broker tansu on {}",
        tansu.port
    );

    // 2. Demo applications.
    let bootstrap = format!("127.0.0.1:{listener}");
    let traffic = repo_root().join("demo/apps/traffic.py");
    let started = Instant::now();
    let mut running: Vec<(String, Process)> = apps(&bootstrap, &certs)
        .into_iter()
        .enumerate()
        .map(|(i, app)| {
            let mut cmd = Command::new(&tools.python);
            cmd.arg(&traffic)
                .args(&app.args)
                .arg("--duration")
                .arg(args.duration.to_string());
            println!("  app {}: {}", i + 1, app.name);
            (
                app.name.to_string(),
                Process::spawn(&dir, &format!("app-{}", i + 1), &mut cmd),
            )
        })
        .collect();
    println!(
        "metering real traffic for {} s (Ctrl-C stops)…",
        args.duration
    );
    while started.elapsed() < Duration::from_secs(args.duration + 30)
        && !stop.load(Ordering::SeqCst)
    {
        if running.iter_mut().all(|(_, p)| p.has_exited()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (name, p) in &mut running {
        if !p.has_exited() {
            eprintln!("  {name} did not finish; stopping it");
        }
    }
    drop(running);
    if stop.load(Ordering::SeqCst) {
        println!("stopped.");
        return;
    }

    // 3. Let the filter flush what it counted, then collect.
    let flushed_bytes = |c: &Server| c.posts().iter().map(|b| b.len()).sum::<usize>();
    let mut last = usize::MAX;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(3 * args.flush_seconds + 10)
        && !stop.load(Ordering::SeqCst)
    {
        std::thread::sleep(Duration::from_secs(args.flush_seconds + 1));
        let now = flushed_bytes(&collector);
        if now == last && now > 0 {
            break;
        }
        last = now;
    }
    let usage_csv = out_dir.join("usage.csv");
    let rows = write_usage(&collector.posts(), &usage_csv);
    print_counters(&envoy);
    println!(
        "\nusage flushed by the filter: {rows} rows in {} POSTs → {}",
        collector.posts().len(),
        usage_csv.display()
    );

    // 4. Bills for the same UTC day, allocated against the metered usage.
    let today = tally::time::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    );
    let day = today.floor(tally::time::Granularity::Daily);
    let (start, end) = (
        day.date_string(),
        day.next_bucket(tally::time::Granularity::Daily)
            .date_string(),
    );
    let demo = repo_root().join("demo");
    render_bill(
        &demo.join("bill-confluent.csv.tmpl"),
        &out_dir.join("bill-confluent.csv"),
        &start,
        &end,
    );
    render_bill(
        &demo.join("bill-warpstream.csv.tmpl"),
        &out_dir.join("bill-warpstream.csv"),
        &start,
        &end,
    );
    fs::copy(demo.join("crosswalk.csv"), out_dir.join("crosswalk.csv"))
        .expect("copy the crosswalk");
    let p = |name: &str| out_dir.join(name).display().to_string();
    run_tally(
        &dir,
        "tally-allocate",
        &[
            "allocate".into(),
            "--granularity".into(),
            "daily".into(),
            "--crosswalk".into(),
            p("crosswalk.csv"),
            "--out-confluent".into(),
            p("allocation-confluent.csv"),
            "--out-team-summary".into(),
            p("team-summary.csv"),
            "--out-json".into(),
            p("report.json"),
            "--out-focus".into(),
            p("allocation-focus.csv"),
            p("bill-confluent.csv"),
            p("usage.csv"),
        ],
    );
    run_tally(
        &dir,
        "tally-allocate-topics",
        &[
            "allocate".into(),
            "--granularity".into(),
            "daily".into(),
            "--entity-level".into(),
            "topic".into(),
            "--crosswalk".into(),
            p("crosswalk.csv"),
            "--out-warpstream".into(),
            p("chargebacks-warpstream.json"),
            "--out-team-summary".into(),
            p("team-summary-topics.csv"),
            p("bill-warpstream.csv"),
            p("usage.csv"),
        ],
    );
    let team_summary = fs::read_to_string(out_dir.join("team-summary.csv")).unwrap_or_default();
    println!("\nConfluent-style bill for {start} allocated to principals, rolled up by team:\n");
    for line in team_summary.lines() {
        println!("  {line}");
    }
    let topic_summary =
        fs::read_to_string(out_dir.join("team-summary-topics.csv")).unwrap_or_default();
    println!("\nWarpStream-style invoice allocated to topics, rolled up by team:\n");
    for line in topic_summary.lines() {
        println!("  {line}");
    }
    fs::write(
        out_dir.join("manifest.json"),
        serde_json::to_string_pretty(
            &json!({"files": ["bill-confluent.csv", "usage.csv", "crosswalk.csv"]}),
        )
        .unwrap_or_default(),
    )
    .expect("write manifest.json");
    println!("\noutputs in {}:", out_dir.display());
    for f in [
        "usage.csv",
        "bill-confluent.csv",
        "bill-warpstream.csv",
        "allocation-confluent.csv",
        "allocation-focus.csv",
        "team-summary.csv",
        "report.json",
        "chargebacks-warpstream.json",
    ] {
        println!("  {f}");
    }
    drop(envoy);
    drop(tansu);

    // 5. The page.
    if !args.serve {
        return;
    }
    let page = ServerConfig {
        static_root: Some(web_dist()),
        mounts: vec![("/demo/".into(), out_dir.clone())],
        collect_posts_to: None,
    };
    // The asked-for port, else any free one (the URL printed below says which).
    let server = Server::start(args.port, page.clone())
        .or_else(|_| Server::start(0, page))
        .expect("serve the page");
    println!(
        "\nthe page: http://127.0.0.1:{port}/  (press “Load demo files”, or open http://127.0.0.1:{port}/?load=demo/bill-confluent.csv,demo/usage.csv,demo/crosswalk.csv)\nCtrl-C to stop.",
        port = server.port
    );
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("stopped.");
}
