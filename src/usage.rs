//! The usage CSV: the contract between the metering side (plugin flush, demo) and
//! the allocation side (readers in [`crate::formats`]).
//!
//! One row per (bucket, cluster, principal, topic, metric), UTC buckets, integer
//! quantities. The first line is a header naming the columns; every row carries
//! the format `version` (currently `1`), so a reader can accept older files and
//! refuse newer ones with a clear message. Per-principal metrics (`request_bytes`,
//! `response_bytes`, `requests`) have an empty `topic`.
//!
//! ```text
//! version,bucket_start,bucket_end,cluster,principal,principal_source,topic,metric,value
//! 1,2026-11-23T06:00:00Z,2026-11-23T06:05:00Z,kafka-prod,sa-orders,sasl_plain,orders,produced_bytes,104857
//! ```

use crate::time::Timestamp;

/// The version this crate writes and the newest it reads.
pub const USAGE_CSV_VERSION: u32 = 1;

/// The header line (without the line break).
pub const USAGE_CSV_HEADER: &str =
    "version,bucket_start,bucket_end,cluster,principal,principal_source,topic,metric,value";

/// What a usage row counts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Record-set bytes produced (as on the wire, compressed), per topic.
    ProducedBytes,
    /// Record-set bytes consumed by consumers (not replicas), per topic.
    ConsumedBytes,
    /// Records produced, per topic.
    ProducedRecords,
    /// Records consumed, per topic.
    ConsumedRecords,
    /// All client→broker wire bytes including protocol overhead, per principal.
    RequestBytes,
    /// All broker→client wire bytes including protocol overhead, per principal.
    ResponseBytes,
    /// Requests sent, per principal.
    Requests,
}

impl Metric {
    /// Every metric, in the order rows are written.
    pub const ALL: [Metric; 7] = [
        Metric::ProducedBytes,
        Metric::ConsumedBytes,
        Metric::ProducedRecords,
        Metric::ConsumedRecords,
        Metric::RequestBytes,
        Metric::ResponseBytes,
        Metric::Requests,
    ];

    /// The name in the `metric` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ProducedBytes => "produced_bytes",
            Metric::ConsumedBytes => "consumed_bytes",
            Metric::ProducedRecords => "produced_records",
            Metric::ConsumedRecords => "consumed_records",
            Metric::RequestBytes => "request_bytes",
            Metric::ResponseBytes => "response_bytes",
            Metric::Requests => "requests",
        }
    }

    /// Parses the `metric` column.
    pub fn parse(text: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == text)
    }

    /// Whether this metric is counted per topic (else per principal, empty topic).
    pub fn per_topic(self) -> bool {
        !matches!(
            self,
            Metric::RequestBytes | Metric::ResponseBytes | Metric::Requests
        )
    }
}

/// One usage row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageRow {
    /// Inclusive bucket start (UTC).
    pub bucket_start: Timestamp,
    /// Exclusive bucket end (UTC).
    pub bucket_end: Timestamp,
    /// The Kafka cluster (logical resource id) the traffic went to.
    pub cluster: String,
    /// Who: a SASL/mTLS identity, a client.id, or `ANONYMOUS`.
    pub principal: String,
    /// How the principal was learned: `sasl_plain`, `sasl_scram_sha_256`,
    /// `sasl_scram_sha_512`, `sasl_oauthbearer`, `mtls`, `client_id`, `anonymous`.
    pub principal_source: String,
    /// The topic; empty for per-principal metrics.
    pub topic: String,
    /// What is counted.
    pub metric: Metric,
    /// How much.
    pub value: u64,
}

/// Appends `field` to `out`, quoted per RFC 4180 when it contains a comma, quote,
/// or line break (principals and topics are user-chosen text).
pub fn push_csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

impl UsageRow {
    /// Appends this row as one CSV line (with `\n`) to `out`.
    pub fn write_csv_line(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "{USAGE_CSV_VERSION},{},{},",
            self.bucket_start, self.bucket_end
        );
        for field in [
            &self.cluster,
            &self.principal,
            &self.principal_source,
            &self.topic,
        ] {
            push_csv_field(out, field);
            out.push(',');
        }
        let _ = writeln!(out, "{},{}", self.metric.as_str(), self.value);
    }
}

/// Writes a header line and the rows as a complete usage CSV document.
pub fn write_usage_csv<'a>(rows: impl IntoIterator<Item = &'a UsageRow>) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str(USAGE_CSV_HEADER);
    out.push('\n');
    for row in rows {
        row.write_csv_line(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_header_and_quotes_user_text() {
        let row = UsageRow {
            bucket_start: Timestamp::parse("2026-11-23T06:00:00Z").unwrap(),
            bucket_end: Timestamp::parse("2026-11-23T06:05:00Z").unwrap(),
            cluster: "kafka-prod".into(),
            principal: "CN=orders,O=acme".into(),
            principal_source: "mtls".into(),
            topic: "orders.v1".into(),
            metric: Metric::ProducedBytes,
            value: 104_857,
        };
        assert_eq!(
            write_usage_csv([&row]),
            "version,bucket_start,bucket_end,cluster,principal,principal_source,topic,metric,value\n\
             1,2026-11-23T06:00:00Z,2026-11-23T06:05:00Z,kafka-prod,\"CN=orders,O=acme\",mtls,orders.v1,produced_bytes,104857\n"
        );
    }

    #[test]
    fn metric_names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.as_str()), Some(m));
        }
        assert_eq!(Metric::parse("bytes"), None);
    }
}
