//! Prometheus `query_range` JSON of Kafka byte counters, read as usage.
//!
//! ## The format
//!
//! `GET /api/v1/query_range?query=<counter>&start=…&end=…&step=…` answers
//!
//! ```text
//! {"status":"success","data":{"resultType":"matrix","result":[
//!   {"metric":{"__name__":"tally_produced_bytes_total","principal":"sa-orders",
//!              "topic":"orders","cluster":"kafka-prod"},
//!    "values":[[1779606000,"1048576"],[1779606300,"2097152"],…]}, …]}}
//! ```
//!
//! Each `result` entry is one time series; each point is `[unix_seconds, "value"]`
//! with the value as a string (Prometheus writes `NaN`, `+Inf` and exponents such
//! as `1.5e+06` there). Query the raw counter, not `rate()` or `increase()`: the
//! reader computes increases itself.
//!
//! ## From counters to usage
//!
//! Counters are cumulative. The usage of an interval is the increase between two
//! consecutive points of a series, attributed to `[t_prev, t_next)`. A value lower
//! than the previous one means the counter was reset (the process restarted), and
//! the new value itself is the increase since the reset (Prometheus' `increase()`
//! rule). The first point of a series is its baseline: what was counted before it
//! is not attributed. Zero increases produce no sample. Points whose value is not a
//! finite non-negative number, or whose timestamp does not increase, are refused
//! one by one (the next increase is then taken from the last good point).
//! Timestamps are truncated to whole seconds.
//!
//! ## Metric names accepted
//!
//! An optional `envoy_` and/or `wasmcustom_` prefix is ignored (Envoy drops its
//! `wasmcustom.` namespace on `/stats/prometheus`, other exporters may keep it),
//! and so is a `_total` suffix.
//!
//! | name | metric | labels read |
//! |---|---|---|
//! | `tally_bytes` | `produced_bytes` / `consumed_bytes` by `direction` | `cluster`, `principal`, `source`, `topic`, `direction` |
//! | `tally_records` | `produced_records` / `consumed_records` by `direction` | as above |
//! | `tally_wire_bytes` | `request_bytes` / `response_bytes` by `direction` | as above, no `topic` |
//! | `tally_requests` | `requests` | as above, no `topic` |
//! | `tally_<metric>` for each [`Metric`] name (`tally_produced_bytes`, …) | that metric | as above, no `direction` |
//! | `kafka_server_brokertopicmetrics_bytesin_total` (also `…_bytesinpersec_count`) | `produced_bytes` | `topic`, `cluster`, `principal` if present |
//! | `kafka_server_brokertopicmetrics_bytesout_total` (also `…_bytesoutpersec_count`) | `consumed_bytes` | as above |
//! | `kafka_server_brokertopicmetrics_messagesin_total` (also `…_messagesinpersec_count`) | `produced_records` | as above |
//!
//! The first four are the counters the plugin defines (`plugin/src/host.rs`).
//! `direction` values: `produced`, `produce`, `in`, `ingress`, `write` → produced;
//! `consumed`, `consume`, `out`, `egress`, `read`, `fetch` → consumed; `request`
//! / `response` for `tally_wire_bytes`. The principal's source may be labelled
//! `source` (the plugin) or `principal_source`. The cluster label may be
//! `cluster`, `kafka_cluster` or `cluster_id`; when absent, the reader's default
//! cluster is used.
//!
//! **Escaped label values.** The plugin carries labels inside Envoy stat names,
//! so it escapes them: ASCII letters, digits and `-` stay, every other byte is
//! `_` + two upper-case hex digits (`.` → `_2E`, `_` → `_5F`), and `_` alone is
//! the empty value (`plugin/src/names.rs`). Series named `tally_*`, and
//! broker-style series that carry a `principal` label (the plugin's
//! `broker_metric_names` option; a real broker's exporter has no principal),
//! have their `cluster`, `principal`, `source` and `topic` values unescaped with
//! [`crate::labels::unescape`]; a value that is not validly escaped is kept as it is.
//!
//! A real broker's `BrokerTopicMetrics` know no principal: their samples have an
//! empty `principal` and `principal_source` `broker_metrics`, so they drive
//! topic-level allocation only; a broker series without a `topic` label (the
//! all-topics aggregate) is skipped, as it would count the per-topic series
//! twice. Series of other names are skipped and listed in [`UsageRead::skipped`].

use super::exact_json::{self, Kind, Value};
use super::{Reader, Sink};
use crate::error::Error;
use crate::model::{Source, UsageSample};
use crate::time::Timestamp;
use crate::usage::Metric;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// The name [`sniff`] returns.
pub const FORMAT_NAME: &str = "prometheus_query_range";

/// Largest document accepted (bytes).
pub const MAX_DOCUMENT_BYTES: usize = 256 << 20;

/// `principal_source` of samples read from broker-side metrics.
pub const BROKER_PRINCIPAL_SOURCE: &str = "broker_metrics";

/// Whether the first bytes look like a Prometheus query API response.
pub fn sniff(first_bytes: &[u8]) -> Option<&'static str> {
    let t = exact_json::object_head(first_bytes)?;
    let has = |k: &str| t.contains(k);
    let yes = has("\"resultType\"") || (has("\"status\"") && has("\"data\"") && has("\"result\""));
    yes.then_some(FORMAT_NAME)
}

/// Where a series' metric name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// tally's own counters: principal, topic, direction.
    Tally,
    /// Kafka broker `BrokerTopicMetrics` via the JMX exporter: topic only.
    Broker,
}

fn direction_is_produce(direction: &str) -> Option<bool> {
    match direction.to_ascii_lowercase().as_str() {
        "produce" | "produced" | "in" | "ingress" | "write" => Some(true),
        "consume" | "consumed" | "out" | "egress" | "read" | "fetch" => Some(false),
        _ => None,
    }
}

/// The usage metric a series counts, from its `__name__` and `direction` label;
/// `Err` with the reason when the name is not one of those in the module docs.
fn classify(name: &str, direction: Option<&str>) -> Result<(Metric, Origin), String> {
    let mut n = name;
    n = n.strip_prefix("envoy_").unwrap_or(n);
    n = n.strip_prefix("wasmcustom_").unwrap_or(n);
    if let Some(rest) = n.strip_prefix("tally_") {
        let base = rest.strip_suffix("_total").unwrap_or(rest);
        if let Some(m) = Metric::parse(base) {
            return Ok((m, Origin::Tally));
        }
        if !matches!(base, "bytes" | "records" | "wire_bytes") {
            return Err(format!("`{name}` is not a tally usage counter"));
        }
        let d = direction.ok_or_else(|| format!("`{name}` needs a `direction` label"))?;
        let m = match (base, d.to_ascii_lowercase().as_str()) {
            ("wire_bytes", "request") => Metric::RequestBytes,
            ("wire_bytes", "response") => Metric::ResponseBytes,
            ("wire_bytes", _) => {
                return Err(format!(
                    "`{name}`: direction `{d}` is neither request nor response"
                ))
            }
            (_, _) => {
                let produce = direction_is_produce(d)
                    .ok_or_else(|| format!("`{name}`: unknown direction `{d}`"))?;
                match (base, produce) {
                    ("bytes", true) => Metric::ProducedBytes,
                    ("bytes", false) => Metric::ConsumedBytes,
                    (_, true) => Metric::ProducedRecords,
                    (_, false) => Metric::ConsumedRecords,
                }
            }
        };
        return Ok((m, Origin::Tally));
    }
    if let Some(rest) = n.strip_prefix("kafka_server_brokertopicmetrics_") {
        let m = match rest {
            "bytesin_total" | "bytesinpersec_count" | "bytesinpersec_total" => {
                Metric::ProducedBytes
            }
            "bytesout_total" | "bytesoutpersec_count" | "bytesoutpersec_total" => {
                Metric::ConsumedBytes
            }
            "messagesin_total" | "messagesinpersec_count" | "messagesinpersec_total" => {
                Metric::ProducedRecords
            }
            _ => {
                return Err(format!(
                    "`{name}` is not a per-topic byte or message counter"
                ))
            }
        };
        return Ok((m, Origin::Broker));
    }
    Err(format!("`{name}` is not a usage counter tally reads"))
}

/// What was read from one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRead {
    /// Per series and interval: the counter's increase.
    pub samples: Vec<UsageSample>,
    /// One error per refused series or point.
    pub rejected: Vec<Error>,
    /// Series skipped on purpose (other metrics, all-topics aggregates), with why.
    pub skipped: Vec<String>,
    /// Series read.
    pub series: usize,
    /// Counter resets seen.
    pub resets: u64,
}

fn label<'v>(metric: &'v Value, key: &str) -> Option<&'v str> {
    match &metric.get(key)?.kind {
        Kind::String(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Reads a `query_range` response. `default_cluster` names the cluster of series
/// without a cluster label; `org_id` is stamped on every sample.
///
/// `Err` only when the document as a whole is unusable (not JSON, `status` not
/// `success`, not a matrix); bad series and points are listed in
/// [`UsageRead::rejected`].
pub fn read_query_range(
    input: &[u8],
    file: &str,
    org_id: &str,
    default_cluster: &str,
) -> Result<UsageRead, Error> {
    let text = exact_json::document_text(input, file, MAX_DOCUMENT_BYTES, "a Prometheus response")?;
    let doc = exact_json::parse(text, file)?;
    let status = match doc.get("status").map(|s| &s.kind) {
        Some(Kind::String(s)) => s.as_str(),
        _ => return Err(Error::input(file, doc.line, "status", "missing `status`")),
    };
    if status != "success" {
        let why = label(&doc, "error").unwrap_or("no error message");
        let kind = label(&doc, "errorType").unwrap_or("unknown");
        return Err(Error::input(
            file,
            doc.line,
            "status",
            format!("the query failed ({status}, {kind}): {why}"),
        ));
    }
    let data = doc
        .get("data")
        .ok_or_else(|| Error::input(file, doc.line, "data", "missing `data`"))?;
    match data.get("resultType").map(|r| &r.kind) {
        Some(Kind::String(t)) if t == "matrix" => {}
        Some(Kind::String(t)) => {
            return Err(Error::input(
                file,
                data.line,
                "data.resultType",
                format!(
                    "`{t}` result: a query_range (matrix) of a counter is needed, \
                     since usage is the increase between points"
                ),
            ))
        }
        _ => {
            return Err(Error::input(
                file,
                data.line,
                "data.resultType",
                "missing `resultType`",
            ))
        }
    }
    let result = match data.get("result").map(|r| &r.kind) {
        Some(Kind::Array(items)) => items,
        _ => {
            return Err(Error::input(
                file,
                data.line,
                "data.result",
                "missing `result` array",
            ))
        }
    };
    let mut out = UsageRead {
        samples: Vec::new(),
        rejected: Vec::new(),
        skipped: Vec::new(),
        series: 0,
        resets: 0,
    };
    for (i, series) in result.iter().enumerate() {
        let path = format!("data.result[{i}]");
        if let Err(e) = read_series(series, &path, file, org_id, default_cluster, &mut out) {
            out.rejected.push(e);
        }
    }
    Ok(out)
}

fn read_series(
    series: &Value,
    path: &str,
    file: &str,
    org_id: &str,
    default_cluster: &str,
    out: &mut UsageRead,
) -> Result<(), Error> {
    let metric = series
        .get("metric")
        .filter(|m| matches!(m.kind, Kind::Object(_)))
        .ok_or_else(|| {
            Error::input(
                file,
                series.line,
                &format!("{path}.metric"),
                "missing `metric` object",
            )
        })?;
    let Some(name) = label(metric, "__name__") else {
        return Err(Error::input(
            file,
            metric.line,
            &format!("{path}.metric.__name__"),
            "missing metric name: query the bare counter so `__name__` is kept",
        ));
    };
    let (usage_metric, origin) = match classify(name, label(metric, "direction")) {
        Ok(x) => x,
        Err(why) => {
            if name.starts_with("tally_") || label(metric, "direction").is_some() {
                // A tally counter we should understand but do not: an error.
                return Err(Error::input(
                    file,
                    metric.line,
                    &format!("{path}.metric"),
                    why,
                ));
            }
            out.skipped.push(format!("{file}:{}: {why}", metric.line));
            return Ok(());
        }
    };
    // Values the plugin wrote are escaped; a real broker's are not.
    let escaped = origin == Origin::Tally || label(metric, "principal").is_some();
    let get = |key: &str| -> Option<String> {
        let raw = label(metric, key)?;
        Some(if escaped {
            crate::labels::unescape(raw).unwrap_or_else(|| raw.to_string())
        } else {
            raw.to_string()
        })
    };
    let topic = get("topic").unwrap_or_default();
    let source = get("source")
        .or_else(|| get("principal_source"))
        .unwrap_or_default();
    let (principal, principal_source) = match (origin, get("principal")) {
        (_, Some(p)) => (p, source),
        (Origin::Tally, None) => {
            return Err(Error::input(
                file,
                metric.line,
                &format!("{path}.metric.principal"),
                format!("`{name}` series has no `principal` label"),
            ));
        }
        (Origin::Broker, None) => {
            if topic.is_empty() {
                out.skipped.push(format!(
                    "{file}:{}: `{name}` without a `topic` label is the all-topics total; skipped",
                    metric.line
                ));
                return Ok(());
            }
            (String::new(), BROKER_PRINCIPAL_SOURCE.to_string())
        }
    };
    if usage_metric.per_topic() && origin == Origin::Tally && topic.is_empty() {
        return Err(Error::input(
            file,
            metric.line,
            &format!("{path}.metric.topic"),
            format!("`{name}` is counted per topic but the series has no `topic` label"),
        ));
    }
    let cluster = ["cluster", "kafka_cluster", "cluster_id"]
        .iter()
        .find_map(|k| get(k))
        .unwrap_or_else(|| default_cluster.to_string());
    let values = match series.get("values").map(|v| &v.kind) {
        Some(Kind::Array(items)) => items,
        _ => {
            return Err(Error::input(
                file,
                series.line,
                &format!("{path}.values"),
                "missing `values` array",
            ))
        }
    };
    out.series = out.series.saturating_add(1);
    let mut prev: Option<(i64, Decimal)> = None;
    for (j, point) in values.iter().enumerate() {
        let ppath = format!("{path}.values[{j}]");
        let (ts, value) = match parse_point(point, &ppath, file) {
            Ok(x) => x,
            Err(e) => {
                out.rejected.push(e);
                continue;
            }
        };
        let Some((pts, pvalue)) = prev else {
            prev = Some((ts, value));
            continue;
        };
        if ts <= pts {
            out.rejected.push(Error::input(
                file,
                point.line,
                &ppath,
                format!("timestamp {ts} does not follow the previous point's {pts}"),
            ));
            continue;
        }
        let increase = if value >= pvalue {
            value
                .checked_sub(pvalue)
                .ok_or_else(|| Error::overflow("counter increase"))?
        } else {
            out.resets = out.resets.saturating_add(1);
            value
        };
        prev = Some((ts, value));
        if increase.is_zero() {
            continue;
        }
        out.samples.push(UsageSample {
            source: Source {
                file: file.to_string(),
                line: point.line,
            },
            org_id: org_id.to_string(),
            start: Timestamp(pts),
            end: Timestamp(ts),
            resource_id: cluster.clone(),
            principal: principal.clone(),
            principal_source: principal_source.clone(),
            topic: if usage_metric.per_topic() {
                topic.clone()
            } else {
                String::new()
            },
            metric: usage_metric.as_str().to_string(),
            value: increase,
        });
    }
    Ok(())
}

fn parse_point(point: &Value, path: &str, file: &str) -> Result<(i64, Decimal), Error> {
    let err = |reason: String| Error::input(file, point.line, path, reason);
    let Kind::Array(pair) = &point.kind else {
        return Err(err(format!(
            "expected [timestamp, \"value\"], found {}",
            point.kind.name()
        )));
    };
    let [ts, val] = pair.as_slice() else {
        return Err(err(format!(
            "expected [timestamp, \"value\"], found {} items",
            pair.len()
        )));
    };
    let ts = match &ts.kind {
        Kind::Number(n) => exact_json::decimal_from_number(n)
            .and_then(|d| d.floor().to_i64())
            .ok_or_else(|| err(format!("timestamp `{n}` is out of range")))?,
        other => {
            return Err(err(format!(
                "timestamp must be a number, found {}",
                other.name()
            )))
        }
    };
    let text = match &val.kind {
        Kind::String(s) => s.as_str(),
        Kind::Number(n) => n.as_str(),
        other => {
            return Err(err(format!(
                "value must be a string number, found {}",
                other.name()
            )))
        }
    };
    let value = exact_json::decimal_from_number(text.trim().trim_start_matches('+'))
        .ok_or_else(|| err(format!("value `{text}` is not a finite number")))?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(err(format!(
            "value `{text}` is negative; a counter never is"
        )));
    }
    Ok((ts, value))
}

/// The streaming [`Reader`] for the session: buffers the document (at most
/// [`MAX_DOCUMENT_BYTES`]) and at the end sends each sample to [`Sink::usage`]
/// and each refused series or point to [`Sink::reject`].
pub struct QueryRangeReader {
    file: String,
    org_id: String,
    default_cluster: String,
    doc: exact_json::DocumentBuffer,
}

impl QueryRangeReader {
    /// A reader of `file`; series without a cluster label get `default_cluster`.
    pub fn new(file: &str, org_id: &str, default_cluster: &str) -> Self {
        QueryRangeReader {
            file: file.to_string(),
            org_id: org_id.to_string(),
            default_cluster: default_cluster.to_string(),
            doc: exact_json::DocumentBuffer::default(),
        }
    }
}

impl Reader for QueryRangeReader {
    fn feed(&mut self, chunk: &[u8], _sink: &mut dyn Sink) -> Result<(), Error> {
        self.doc.push(chunk, &self.file, MAX_DOCUMENT_BYTES)
    }

    fn finish(&mut self, sink: &mut dyn Sink) -> Result<(), Error> {
        let read = read_query_range(
            &self.doc.take(),
            &self.file,
            &self.org_id,
            &self.default_cluster,
        )?;
        for s in &read.samples {
            sink.usage(s);
        }
        for e in read.rejected {
            sink.reject(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_metric_names() {
        type Case<'a> = (&'a str, Option<&'a str>, Option<(Metric, Origin)>);
        let cases: &[Case] = &[
            (
                "tally_produced_bytes_total",
                None,
                Some((Metric::ProducedBytes, Origin::Tally)),
            ),
            (
                "envoy_wasmcustom_tally_consumed_bytes_total",
                None,
                Some((Metric::ConsumedBytes, Origin::Tally)),
            ),
            (
                "tally_requests",
                None,
                Some((Metric::Requests, Origin::Tally)),
            ),
            (
                "tally_bytes_total",
                Some("fetch"),
                Some((Metric::ConsumedBytes, Origin::Tally)),
            ),
            (
                "tally_records_total",
                Some("produce"),
                Some((Metric::ProducedRecords, Origin::Tally)),
            ),
            ("tally_bytes_total", None, None),
            ("tally_bytes_total", Some("sideways"), None),
            ("tally_connections_total", None, None),
            (
                "kafka_server_brokertopicmetrics_bytesin_total",
                None,
                Some((Metric::ProducedBytes, Origin::Broker)),
            ),
            (
                "kafka_server_brokertopicmetrics_bytesoutpersec_count",
                None,
                Some((Metric::ConsumedBytes, Origin::Broker)),
            ),
            (
                "kafka_server_brokertopicmetrics_totalfetchrequests_total",
                None,
                None,
            ),
            ("up", None, None),
        ];
        for (name, dir, want) in cases {
            assert_eq!(classify(name, *dir).ok(), *want, "{name} {dir:?}");
        }
    }

    #[test]
    fn sniffs_query_api_responses() {
        assert!(sniff(
            b" {\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[]}}"
        )
        .is_some());
        assert!(sniff(b"{\"data\":[{\"amount\":1}]}").is_none());
        assert!(sniff(b"# HELP tally_produced_bytes_total").is_none());
    }
}
