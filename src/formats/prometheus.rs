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
//!
//! ## Streaming
//!
//! Each series is read on its own as it streams by ([`QueryRangeReader`]): a
//! series over the record limit is refused at the line it starts on, and the
//! others are read. `status` and `data.resultType` are checked when the series
//! begin if they came first, as Prometheus writes them, and at the end of the
//! document otherwise (a `jq -S` key-sorted copy has `data` before `status`
//! and `result` before `resultType`): a response found at its end not to be a
//! successful matrix refuses the file, and the session then allocates nothing
//! from the series already read.

use super::exact_json::{self, Kind, Value};
use super::json_items::{path_is, path_text, Drained, Event, JsonItems, Step};
use super::Sink;
use crate::error::Error;
use crate::model::{Source, UsageSample};
use crate::time::Timestamp;
use crate::usage::Metric;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// The name [`sniff`] returns.
pub const FORMAT_NAME: &str = "prometheus_query_range";

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

/// Reads a whole `query_range` response (see [`QueryRangeReader`]; items over
/// [`crate::formats::csv::DEFAULT_MAX_RECORD`] are refused). `default_cluster`
/// names the cluster of series without a cluster label; `org_id` is stamped on
/// every sample.
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
    let mut reader = QueryRangeReader::new(
        file,
        org_id,
        default_cluster,
        crate::formats::csv::DEFAULT_MAX_RECORD,
    );
    reader.parse(input)?;
    reader.end()?;
    Ok(reader.read)
}

/// The response's fields around the series, kept as they stream by (the
/// first of repeated keys, as [`exact_json`] does).
#[derive(Debug, Default)]
struct Head {
    status: Option<Value>,
    error: Option<Value>,
    error_type: Option<Value>,
    /// `data`, when it is an object: its line.
    data_line: Option<u64>,
    result_type: Option<Value>,
    /// The `data.result` array began.
    result_began: bool,
}

impl Head {
    /// Takes the fields it keeps.
    fn field(&mut self, path: &[Step], value: Value) {
        let slot = if path_is(path, &["status"]) {
            &mut self.status
        } else if path_is(path, &["error"]) {
            &mut self.error
        } else if path_is(path, &["errorType"]) {
            &mut self.error_type
        } else if path_is(path, &["data", "resultType"]) {
            &mut self.result_type
        } else {
            return;
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }

    /// Whether the response is a successful matrix, checked when its series
    /// begin (`before_result`: only what came before them, since the series
    /// are read as they stream by, not held) and at its end (everything).
    fn check(&self, file: &str, before_result: bool) -> Result<(), Error> {
        let text = |v: &Option<Value>| match v.as_ref().map(|v| &v.kind) {
            Some(Kind::String(s)) => Some(s.clone()),
            _ => None,
        };
        if before_result && self.status.is_none() {
            // `status` may come after `data`, as in a key-sorted copy.
            return self.check_result_type(file, true);
        }
        let Some(status) = text(&self.status) else {
            return Err(Error::input(file, 1, "status", "missing `status`"));
        };
        if status != "success" {
            let why = text(&self.error).unwrap_or_else(|| "no error message".into());
            let kind = text(&self.error_type).unwrap_or_else(|| "unknown".into());
            return Err(Error::input(
                file,
                self.status.as_ref().map_or(1, |s| s.line),
                "status",
                format!("the query failed ({status}, {kind}): {why}"),
            ));
        }
        self.check_result_type(file, before_result)?;
        if !before_result && !self.result_began {
            let line = self.data_line.unwrap_or(1);
            return Err(Error::input(
                file,
                line,
                "data.result",
                "missing `result` array",
            ));
        }
        Ok(())
    }

    /// Whether `data.resultType` is `matrix`; when the series begin, only if
    /// it came before them.
    fn check_result_type(&self, file: &str, before_result: bool) -> Result<(), Error> {
        let Some(data_line) = self.data_line else {
            return Err(Error::input(file, 1, "data", "missing `data`"));
        };
        match self.result_type.as_ref().map(|r| (&r.kind, r.line)) {
            Some((Kind::String(t), _)) if t == "matrix" => {}
            Some((Kind::String(t), line)) => {
                return Err(Error::input(
                    file,
                    line,
                    "data.resultType",
                    format!(
                        "`{t}` result: a query_range (matrix) of a counter is needed, \
                         since usage is the increase between points"
                    ),
                ))
            }
            None if before_result => {}
            _ => {
                return Err(Error::input(
                    file,
                    data_line,
                    "data.resultType",
                    "missing `resultType`",
                ))
            }
        }
        Ok(())
    }
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
    let value = exact_json::decimal_from_number(text)
        .ok_or_else(|| err(format!("value `{text}` is not a finite number")))?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(err(format!(
            "value `{text}` is negative; a counter never is"
        )));
    }
    Ok((ts, value))
}

/// The streaming [`super::Reader`] (through [`Drained`]) of a `query_range` response: each series of
/// `data.result` is cut out of the stream ([`JsonItems`]), parsed and read on
/// its own, so memory is bounded by the largest series (`max_record` bytes; a
/// longer one is refused with its line and skipped), not by the file. Samples
/// go to [`Sink::usage`], refused series and points to [`Sink::reject`].
pub struct QueryRangeReader {
    items: JsonItems,
    org_id: String,
    default_cluster: String,
    head: Head,
    /// What was read and not yet handed to a sink.
    read: UsageRead,
}

impl QueryRangeReader {
    /// A reader of `file`; series without a cluster label get `default_cluster`.
    pub fn new(file: &str, org_id: &str, default_cluster: &str, max_record: usize) -> Self {
        QueryRangeReader {
            items: JsonItems::new(file, &["data", "result"], max_record),
            org_id: org_id.to_string(),
            default_cluster: default_cluster.to_string(),
            head: Head::default(),
            read: UsageRead {
                samples: Vec::new(),
                rejected: Vec::new(),
                skipped: Vec::new(),
                series: 0,
                resets: 0,
            },
        }
    }
}

impl Drained for QueryRangeReader {
    /// Reads a chunk into `self.read`.
    fn parse(&mut self, chunk: &[u8]) -> Result<(), Error> {
        let QueryRangeReader {
            items,
            org_id,
            default_cluster,
            head,
            read,
        } = self;
        let file = items.file().to_string();
        items.feed(chunk, &mut |event| {
            match event {
                Event::Scalar { path, value } => head.field(path, value),
                Event::Open { path, line, array } => {
                    if path_is(path, &["data"]) && !array && head.data_line.is_none() {
                        head.data_line = Some(line);
                    }
                    if path_is(path, &["data", "result"]) && array {
                        head.check(&file, true)?;
                        head.result_began = true;
                    }
                }
                Event::Close { .. } => {}
                Event::Item { path, line, text } => {
                    let path = path_text(path);
                    let series = text.and_then(|text| exact_json::parse_at(text, &file, line));
                    let result = series.and_then(|series| {
                        read_series(&series, &path, &file, org_id, default_cluster, read)
                    });
                    if let Err(e) = result {
                        read.rejected.push(e);
                    }
                }
            }
            Ok(())
        })
    }

    /// The end of the document.
    fn end(&mut self) -> Result<(), Error> {
        self.items.finish()?;
        self.head.check(self.items.file(), false)
    }

    /// Hands what was read to `sink`.
    fn drain(&mut self, sink: &mut dyn Sink) {
        for s in self.read.samples.drain(..) {
            sink.usage(&s);
        }
        for e in self.read.rejected.drain(..) {
            sink.reject(e);
        }
        // Skipped series are not rows: they are listed by `read_query_range` only.
        self.read.skipped.clear();
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
