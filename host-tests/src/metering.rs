//! Helpers of the metering host tests: TLS certificates made with `openssl`,
//! an Envoy configuration (JSON, which is YAML) with several listeners and
//! upstream clusters, the `stats_config` snippet read from `docs/metering.md`
//! exactly as documented, parsers of Envoy's `/stats` and of usage CSV bodies,
//! a Prometheus started on a free port, and a TCP discard sink.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::{free_port, http, repo_root, run_with_timeout, wait_until, Process, Tools, Workdir};

/// A CA, a server certificate for 127.0.0.1, and client certificates.
pub struct Certs {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server certificate (PEM) and key.
    pub server: (PathBuf, PathBuf),
    /// Client certificates by name: (cert, key).
    pub clients: BTreeMap<String, (PathBuf, PathBuf)>,
}

fn openssl(dir: &Workdir, name: &str, args: &[&str]) {
    let mut cmd = Command::new("openssl");
    cmd.args(args).current_dir(dir.path());
    let (ok, _, err) = run_with_timeout(dir, name, &mut cmd, Duration::from_secs(60));
    assert!(ok, "openssl {args:?} failed: {err}");
}

impl Certs {
    /// Generates everything into the workdir; `clients` are (file stem, subject).
    pub fn generate(dir: &Workdir, clients: &[(&str, &str)]) -> Certs {
        let p = |s: &str| dir.join(s).display().to_string();
        openssl(
            dir,
            "openssl-ca",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=tally-test-ca",
                "-keyout",
                &p("ca.key"),
                "-out",
                &p("ca.pem"),
            ],
        );
        dir.write(
            "server.ext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        dir.write("client.ext", "extendedKeyUsage=clientAuth\n");
        let sign = |stem: &str, subject: &str, ext: &str| {
            openssl(
                dir,
                &format!("openssl-{stem}-req"),
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    subject,
                    "-keyout",
                    &p(&format!("{stem}.key")),
                    "-out",
                    &p(&format!("{stem}.csr")),
                ],
            );
            openssl(
                dir,
                &format!("openssl-{stem}-sign"),
                &[
                    "x509",
                    "-req",
                    "-in",
                    &p(&format!("{stem}.csr")),
                    "-CA",
                    &p("ca.pem"),
                    "-CAkey",
                    &p("ca.key"),
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &p(ext),
                    "-out",
                    &p(&format!("{stem}.pem")),
                ],
            );
            (
                dir.join(&format!("{stem}.pem")),
                dir.join(&format!("{stem}.key")),
            )
        };
        let server = sign("server", "/CN=localhost", "server.ext");
        let clients = clients
            .iter()
            .map(|(stem, subject)| (stem.to_string(), sign(stem, subject, "client.ext")))
            .collect();
        Certs {
            ca: dir.join("ca.pem"),
            server,
            clients,
        }
    }
}

/// One Envoy listener of the metering tests.
pub struct MListener {
    /// Name; also the `tcp_proxy` stat prefix.
    pub name: String,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// The tally filter's JSON configuration; `None` = plain `tcp_proxy`.
    pub plugin: Option<Value>,
    /// TLS termination requiring a client certificate: (cert, key, ca).
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// The upstream cluster name.
    pub cluster: String,
}

/// The `stats_config` tag specifiers as documented in `docs/metering.md`
/// (the ```yaml block that starts with `stats_config:`), as JSON.
pub fn documented_stats_config() -> Value {
    let doc = std::fs::read_to_string(repo_root().join("docs/metering.md"))
        .expect("read docs/metering.md");
    let start = doc
        .find("```yaml\nstats_config:")
        .expect("docs/metering.md has a ```yaml stats_config: block");
    let block = &doc[start + 8..];
    let block = &block[..block.find("```").expect("closed block")];
    let mut tags = Vec::new();
    let mut name = None;
    for line in block.lines() {
        let t = line.trim().trim_start_matches("- ");
        if let Some(v) = t.strip_prefix("tag_name:") {
            name = Some(v.trim().to_string());
        } else if let Some(v) = t.strip_prefix("regex:") {
            let quoted = v.trim().trim_matches('"');
            let regex = quoted.replace("\\\\", "\\");
            tags.push(
                json!({"tag_name": name.take().expect("tag_name before regex"), "regex": regex}),
            );
        }
    }
    assert!(tags.len() >= 5, "stats_tags in docs/metering.md: {tags:?}");
    json!({ "stats_tags": tags })
}

/// Renders an Envoy bootstrap (JSON) with the listeners, one STATIC cluster per
/// (name, port) upstream, and the documented `stats_config`.
pub fn envoy_json(
    admin_port: u16,
    wasm: &Path,
    listeners: &[MListener],
    clusters: &[(&str, u16)],
) -> String {
    let listeners: Vec<Value> = listeners
        .iter()
        .map(|l| {
            let mut filters = Vec::new();
            if let Some(cfg) = &l.plugin {
                filters.push(json!({
                    "name": "envoy.filters.network.wasm",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm",
                        "config": {
                            "name": "tally",
                            "root_id": "tally",
                            "configuration": {
                                "@type": "type.googleapis.com/google.protobuf.StringValue",
                                "value": cfg.to_string()
                            },
                            "vm_config": {
                                "vm_id": "tally",
                                "runtime": "envoy.wasm.runtime.v8",
                                "code": {"local": {"filename": wasm.display().to_string()}}
                            }
                        }
                    }
                }));
            }
            filters.push(json!({
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": l.name,
                    "cluster": l.cluster
                }
            }));
            let mut chain = json!({ "filters": filters });
            if let Some((cert, key, ca)) = &l.tls {
                chain["transport_socket"] = json!({
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                        "require_client_certificate": true,
                        "common_tls_context": {
                            "tls_certificates": [{
                                "certificate_chain": {"filename": cert.display().to_string()},
                                "private_key": {"filename": key.display().to_string()}
                            }],
                            "validation_context": {"trusted_ca": {"filename": ca.display().to_string()}}
                        }
                    }
                });
            }
            json!({
                "name": l.name,
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": l.port}},
                "filter_chains": [chain]
            })
        })
        .collect();
    let clusters: Vec<Value> = clusters
        .iter()
        .map(|(name, port)| {
            json!({
                "name": name,
                "connect_timeout": "1s",
                "type": "STATIC",
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]
                }
            })
        })
        .collect();
    let config = json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "stats_config": documented_stats_config(),
        "static_resources": {"listeners": listeners, "clusters": clusters}
    });
    serde_json::to_string_pretty(&config).unwrap_or_default()
}

/// Envoy's `/stats` (text) as name → value (counters and gauges).
pub fn parse_stats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (n, v) = line.split_once(": ")?;
            Some((n.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// A labelled tally stat, parsed back from its flat name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TallyStat {
    /// `tally_bytes`, `tally_wire_bytes`, ...
    pub metric: String,
    /// Tag → unescaped value.
    pub tags: BTreeMap<String, String>,
}

/// Every `wasmcustom.tally_*` / `wasmcustom.kafka_*` stat in `/stats`, with labels.
pub fn tally_stats(stats: &BTreeMap<String, u64>) -> Vec<(TallyStat, u64)> {
    stats
        .iter()
        .filter_map(|(name, v)| {
            let rest = name.strip_prefix("wasmcustom.")?;
            let mut parts = rest.split('.');
            let metric = parts.next()?.to_string();
            let mut tags = BTreeMap::new();
            while let (Some(k), Some(val)) = (parts.next(), parts.next()) {
                tags.insert(k.to_string(), tally::labels::unescape(val)?);
            }
            Some((TallyStat { metric, tags }, *v))
        })
        .collect()
}

/// Usage CSV bodies summed per (principal, source, topic, metric).
pub fn sum_usage(bodies: &[Vec<u8>]) -> BTreeMap<(String, String, String, String), u64> {
    let mut out = BTreeMap::new();
    for body in bodies {
        let text = String::from_utf8_lossy(body);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("version,bucket_start,bucket_end,cluster,principal,principal_source,topic,metric,value"),
            "usage CSV header (src/usage.rs)"
        );
        for line in lines {
            let f = split_csv(line);
            assert_eq!(f.len(), 9, "usage row {line}");
            assert_eq!(f[0], "1");
            let key = (f[4].clone(), f[5].clone(), f[6].clone(), f[7].clone());
            *out.entry(key).or_insert(0) += f[8].parse::<u64>().expect("integer value");
        }
    }
    out
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// A real Prometheus scraping Envoy's `/stats/prometheus` every second.
pub struct Prometheus {
    /// Its web port.
    pub port: u16,
    /// The process.
    pub process: Process,
}

impl Prometheus {
    /// Starts Prometheus with a generated config and storage in the workdir.
    pub fn start(tools: &Tools, dir: &Workdir, envoy_admin_port: u16) -> Prometheus {
        let port = free_port();
        let config = dir.write(
            "prometheus.yml",
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: envoy\n  metrics_path: /stats/prometheus\n  static_configs:\n  - targets: ['127.0.0.1:{envoy_admin_port}']\n"
            ),
        );
        let mut cmd = Command::new(&tools.prometheus);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let mut process = Process::spawn(dir, "prometheus", &mut cmd);
        wait_until(Duration::from_secs(30), "Prometheus /-/ready", || {
            process.assert_running();
            http::get(port, "/-/ready").is_ok_and(|r| r.status == 200)
        });
        Prometheus { port, process }
    }

    /// Runs an instant query; returns the `data.result` array.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let Ok(r) = http::get(self.port, &path) else {
            return Vec::new();
        };
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A TCP sink that accepts connections and reads and discards everything.
pub struct DiscardSink {
    /// Its port.
    pub port: u16,
}

impl DiscardSink {
    /// Starts the sink on a free port (threads end with the test process).
    pub fn start() -> DiscardSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the discard sink");
        let port = listener.local_addr().expect("sink address").port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut s = stream;
                    let mut buf = vec![0u8; 1 << 16];
                    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                });
            }
        });
        DiscardSink { port }
    }
}
