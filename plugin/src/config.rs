//! The filter's JSON configuration (the `configuration` of the Envoy Wasm
//! filter), parsed and checked at load: a bad configuration is refused with a
//! message naming the key, and Envoy rejects the listener.

use regex_lite::Regex;
use serde::Deserialize;
use tally::kafka::DecoderConfig;
use tally::meter::{MeterConfig, PrincipalSource};

/// Which certificate field the mTLS principal is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertField {
    /// `connection.subject_peer_certificate` (RFC 2253 subject, e.g. `CN=orders,O=acme`).
    Subject,
    /// `connection.uri_san_peer_certificate` (the first URI SAN, e.g. a SPIFFE id).
    UriSan,
    /// `connection.dns_san_peer_certificate` (the first DNS SAN).
    DnsSan,
}

impl CertField {
    /// The Envoy connection property path.
    pub fn property(self) -> [&'static str; 2] {
        match self {
            CertField::Subject => ["connection", "subject_peer_certificate"],
            CertField::UriSan => ["connection", "uri_san_peer_certificate"],
            CertField::DnsSan => ["connection", "dns_san_peer_certificate"],
        }
    }
}

/// Where usage rows are POSTed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlushTarget {
    /// The Envoy cluster (must exist in the bootstrap config).
    pub cluster: String,
    /// The request path. Default `/usage`.
    #[serde(default = "default_path")]
    pub path: String,
    /// The `:authority` header. Default: the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    /// How long one POST may take, in milliseconds. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_path() -> String {
    "/usage".to_string()
}
fn default_timeout_ms() -> u64 {
    5000
}

/// The configuration as written (JSON), before checking.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    cluster: String,
    #[serde(default)]
    principal_sources: Option<Vec<String>>,
    #[serde(default)]
    mtls_fields: Option<Vec<CertField>>,
    #[serde(default)]
    mtls_regex: Option<String>,
    #[serde(default)]
    max_series: Option<usize>,
    #[serde(default)]
    max_stat_series: Option<u64>,
    #[serde(default)]
    flush_interval_seconds: Option<u64>,
    #[serde(default)]
    bucket_seconds: Option<u64>,
    #[serde(default)]
    flush: Option<FlushTarget>,
    #[serde(default)]
    retry_buffer_rows: Option<usize>,
    #[serde(default)]
    broker_metric_names: Option<bool>,
    #[serde(default)]
    max_frame_bytes: Option<u32>,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What the meter needs (cluster, sources, caps, bucket width).
    pub meter: MeterConfig,
    /// What the decoder needs.
    pub decoder: DecoderConfig,
    /// Certificate fields tried in order for the mTLS principal.
    pub mtls_fields: Vec<CertField>,
    /// Applied to the certificate field: capture group 1 (or the whole match)
    /// is the principal; no match = no mTLS principal.
    pub mtls_regex: Option<Regex>,
    /// Most labelled Envoy stats, across all workers. Default 2000.
    pub max_stat_series: u64,
    /// Seconds between flushes. Default 300.
    pub flush_interval_seconds: u64,
    /// Where to POST usage rows; `None` = no flush (counters only).
    pub flush: Option<FlushTarget>,
    /// Most usage rows waiting for a successful POST; older ones beyond it are dropped (counted).
    pub retry_buffer_rows: usize,
    /// Also name byte counters like broker-side metrics.
    pub broker_metric_names: bool,
}

/// The default regex: the CN of an RFC 2253 subject.
pub const DEFAULT_MTLS_REGEX: &str = "(?:^|,)CN=([^,]+)";

fn bad(reason: impl Into<String>) -> String {
    format!("tally: invalid filter configuration: {}", reason.into())
}

/// Parses and checks the JSON configuration.
pub fn parse(json: &[u8]) -> Result<Config, String> {
    let raw: Raw = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    if raw.cluster.trim().is_empty() {
        return Err(bad("`cluster` must name the Kafka cluster (non-empty)"));
    }
    let sources = match raw.principal_sources {
        None => PrincipalSource::DEFAULT_ORDER.to_vec(),
        Some(list) => {
            let mut out = Vec::new();
            for s in &list {
                let source = PrincipalSource::parse(s).ok_or_else(|| {
                    bad(format!(
                        "`principal_sources`: unknown source `{s}` (use sasl, mtls, client_id, anonymous)"
                    ))
                })?;
                if out.contains(&source) {
                    return Err(bad(format!("`principal_sources`: `{s}` given twice")));
                }
                out.push(source);
            }
            if out.is_empty() {
                return Err(bad("`principal_sources` is empty"));
            }
            out
        }
    };
    let mtls_regex = match raw.mtls_regex.as_deref() {
        Some("") => None,
        Some(text) => Some(Regex::new(text).map_err(|e| bad(format!("`mtls_regex`: {e}")))?),
        None => Regex::new(DEFAULT_MTLS_REGEX).ok(),
    };
    let flush_interval_seconds = raw.flush_interval_seconds.unwrap_or(300);
    if flush_interval_seconds == 0 || flush_interval_seconds > 86_400 {
        return Err(bad("`flush_interval_seconds` must be 1..=86400"));
    }
    let bucket_seconds = raw.bucket_seconds.unwrap_or(300);
    if bucket_seconds == 0 || bucket_seconds > 86_400 || 86_400 % bucket_seconds != 0 {
        return Err(bad(
            "`bucket_seconds` must divide a day (e.g. 60, 300, 3600, 86400)",
        ));
    }
    let max_series = raw.max_series.unwrap_or(10_000);
    if max_series == 0 {
        return Err(bad("`max_series` must be at least 1"));
    }
    if let Some(f) = &raw.flush {
        if f.cluster.trim().is_empty() {
            return Err(bad("`flush.cluster` must name an Envoy cluster"));
        }
        if !f.path.starts_with('/') {
            return Err(bad("`flush.path` must start with `/`"));
        }
        if f.timeout_ms == 0 {
            return Err(bad("`flush.timeout_ms` must be at least 1"));
        }
    }
    let mut decoder = DecoderConfig::default();
    if let Some(max) = raw.max_frame_bytes {
        if max < 1024 {
            return Err(bad("`max_frame_bytes` must be at least 1024"));
        }
        decoder.max_frame_bytes = max;
    }
    Ok(Config {
        meter: MeterConfig {
            cluster: raw.cluster.trim().to_string(),
            bucket_seconds: bucket_seconds as i64,
            principal_sources: sources,
            max_series,
            ..MeterConfig::default()
        },
        decoder,
        mtls_fields: raw
            .mtls_fields
            .unwrap_or_else(|| vec![CertField::Subject, CertField::UriSan, CertField::DnsSan]),
        mtls_regex,
        max_stat_series: raw.max_stat_series.unwrap_or(2000),
        flush_interval_seconds,
        flush: raw.flush,
        retry_buffer_rows: raw.retry_buffer_rows.unwrap_or(100_000),
        broker_metric_names: raw.broker_metric_names.unwrap_or(false),
    })
}

impl Config {
    /// The mTLS principal from a certificate field's text, per `mtls_regex`.
    pub fn mtls_principal(&self, field: &str) -> Option<String> {
        let field = field.trim();
        if field.is_empty() {
            return None;
        }
        match &self.mtls_regex {
            None => Some(field.to_string()),
            Some(re) => {
                let caps = re.captures(field)?;
                let m = caps.get(1).or_else(|| caps.get(0))?;
                let text = m.as_str().trim();
                (!text.is_empty()).then(|| text.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_configurations_parse() {
        let c = parse(br#"{"cluster":"prod"}"#).unwrap();
        assert_eq!(c.meter.cluster, "prod");
        assert_eq!(c.flush_interval_seconds, 300);
        assert_eq!(
            c.meter.principal_sources,
            PrincipalSource::DEFAULT_ORDER.to_vec()
        );
        assert!(c.flush.is_none());
        let c = parse(
            br#"{"cluster":"prod","principal_sources":["mtls","client.id"],"mtls_fields":["uri_san"],
                "mtls_regex":"^spiffe://[^/]+/(.+)$","max_series":5,"max_stat_series":7,
                "flush_interval_seconds":2,"bucket_seconds":60,"retry_buffer_rows":3,
                "flush":{"cluster":"sink","path":"/u"},"broker_metric_names":true,"max_frame_bytes":4096}"#,
        )
        .unwrap();
        assert_eq!(
            c.meter.principal_sources,
            vec![PrincipalSource::Mtls, PrincipalSource::ClientId]
        );
        assert_eq!(
            c.mtls_principal("spiffe://acme/ns/orders").as_deref(),
            Some("ns/orders")
        );
        assert_eq!(c.flush.as_ref().map(|f| f.timeout_ms), Some(5000));
        assert_eq!(c.decoder.max_frame_bytes, 4096);
        assert!(c.broker_metric_names);
    }

    #[test]
    fn bad_configurations_are_refused_naming_the_key() {
        for (json, key) in [
            (&br#"{}"#[..], "cluster"),
            (br#"{"cluster":""}"#, "cluster"),
            (
                br#"{"cluster":"a","principal_sources":["kerberos"]}"#,
                "principal_sources",
            ),
            (
                br#"{"cluster":"a","principal_sources":[]}"#,
                "principal_sources",
            ),
            (
                br#"{"cluster":"a","principal_sources":["sasl","sasl"]}"#,
                "principal_sources",
            ),
            (br#"{"cluster":"a","mtls_regex":"("}"#, "mtls_regex"),
            (
                br#"{"cluster":"a","flush_interval_seconds":0}"#,
                "flush_interval_seconds",
            ),
            (br#"{"cluster":"a","bucket_seconds":7}"#, "bucket_seconds"),
            (br#"{"cluster":"a","max_series":0}"#, "max_series"),
            (
                br#"{"cluster":"a","flush":{"cluster":"s","path":"x"}}"#,
                "flush.path",
            ),
            (
                br#"{"cluster":"a","max_frame_bytes":10}"#,
                "max_frame_bytes",
            ),
            (br#"{"cluster":"a","typo":1}"#, "typo"),
            (br#"not json"#, "invalid filter configuration"),
        ] {
            let err = parse(json).unwrap_err();
            assert!(err.contains(key), "{err} should name {key}");
            assert!(
                err.starts_with("tally: invalid filter configuration"),
                "{err}"
            );
        }
    }

    #[test]
    fn default_mtls_regex_takes_the_cn() {
        let c = parse(br#"{"cluster":"a"}"#).unwrap();
        for (subject, want) in [
            ("CN=orders-svc,OU=payments,O=acme", Some("orders-svc")),
            ("O=acme,CN=billing.svc", Some("billing.svc")),
            ("O=acme", None),
            ("", None),
        ] {
            assert_eq!(c.mtls_principal(subject).as_deref(), want, "{subject}");
        }
    }
}
