//! Principal × topic × bucket counters fed by the Kafka decoder.
//!
//! Two parts, both host-agnostic:
//!
//! * [`ConnectionMeter`] (one per proxied connection) implements [`Sink`]: it
//!   collects what the decoder reports into small per-connection accumulators and
//!   decides *who* the connection is, walking the configured
//!   [`PrincipalSource`] order (SASL → mTLS → client.id → `ANONYMOUS` by default).
//!   Until the principal is decided (e.g. the SASL exchange has not finished yet)
//!   the bytes are **held**, not attributed: they go to whoever the connection
//!   turns out to be. Holding is bounded ([`MeterConfig::max_pending_requests`]):
//!   past it, the connection is decided with what is known.
//! * [`Meter`] (one per Envoy worker VM) absorbs connections' accumulators into
//!   counters per (bucket, principal, principal source, topic), bounded by
//!   [`MeterConfig::max_series`] (the rest is folded into an `_other` series and
//!   counted), reports every increment to a [`CounterSink`] (the plugin's Envoy
//!   counters), and [`Meter::drain`]s usage rows for the flush.
//!
//! Every counter is exact: additions are checked; an addition that would
//! overflow saturates and is counted in [`MeterStats::overflows`] (never
//! expected with `u64`, but never a wrap-around or a panic).
//!
//! ```text
//! decoder ──Sink──► ConnectionMeter ──absorb()──► Meter ──drain()──► UsageRow
//!                                                   └──► CounterSink (Envoy stats)
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use crate::kafka::{Direction, Mechanism, RecordSet, Sink};
use crate::time::Timestamp;
use crate::usage::{Metric, UsageRow};

/// The principal name used when no source names the connection.
pub const ANONYMOUS: &str = "ANONYMOUS";
/// The principal, source and topic of the series everything past the cap is folded into.
pub const OTHER: &str = "_other";

/// Kafka API keys that may precede or make up a SASL exchange.
const API_SASL_HANDSHAKE: i16 = 17;
const API_API_VERSIONS: i16 = 18;
const API_SASL_AUTHENTICATE: i16 = 36;

/// Where a connection's principal may come from, in the configured order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrincipalSource {
    /// The SASL identity the broker accepted (PLAIN, SCRAM, OAUTHBEARER).
    Sasl,
    /// The client certificate Envoy verified (TLS termination), see [`ConnectionMeter::set_mtls`].
    Mtls,
    /// The client.id of the request headers (chosen by the client: labelled as such).
    ClientId,
    /// Nobody: `ANONYMOUS`.
    Anonymous,
}

impl PrincipalSource {
    /// Parses `sasl`, `mtls`, `client_id` (also `client.id`) or `anonymous`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "sasl" => Some(PrincipalSource::Sasl),
            "mtls" | "tls" => Some(PrincipalSource::Mtls),
            "client_id" | "client.id" | "clientid" => Some(PrincipalSource::ClientId),
            "anonymous" => Some(PrincipalSource::Anonymous),
            _ => None,
        }
    }

    /// The default order: SASL, mTLS, client.id, anonymous.
    pub const DEFAULT_ORDER: [PrincipalSource; 4] = [
        PrincipalSource::Sasl,
        PrincipalSource::Mtls,
        PrincipalSource::ClientId,
        PrincipalSource::Anonymous,
    ];
}

/// The meter's limits and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterConfig {
    /// The logical Kafka cluster name written in every row.
    pub cluster: String,
    /// Bucket width in seconds (UTC, aligned on the epoch). Default 300.
    pub bucket_seconds: i64,
    /// Principal sources in order of preference.
    pub principal_sources: Vec<PrincipalSource>,
    /// Most distinct (bucket, principal, source, topic) series held between two
    /// drains; the rest is folded into the `_other` series. Default 10 000.
    pub max_series: usize,
    /// Most distinct topics a connection accumulates between two absorptions;
    /// more are folded into the connection's `_other` topic. Default 64.
    pub max_topics_per_connection: usize,
    /// Most requests held while the principal is undecided; past it the
    /// connection is decided with what is known. Default 32.
    pub max_pending_requests: u64,
}

impl Default for MeterConfig {
    fn default() -> Self {
        MeterConfig {
            cluster: "kafka".to_string(),
            bucket_seconds: 300,
            principal_sources: PrincipalSource::DEFAULT_ORDER.to_vec(),
            max_series: 10_000,
            max_topics_per_connection: 64,
            max_pending_requests: 32,
        }
    }
}

/// A host capability: the current time.
pub trait Clock {
    /// Now, in whole UTC seconds.
    fn now(&self) -> Timestamp;
}

/// One series as reported to a [`CounterSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Series<'a> {
    /// The cluster label.
    pub cluster: &'a str,
    /// The principal.
    pub principal: &'a str,
    /// How the principal was learned (`sasl_plain`, `mtls`, `client_id`, `anonymous`, `_other`).
    pub source: &'a str,
    /// The topic; empty for per-principal metrics.
    pub topic: &'a str,
}

/// Meter-wide counters (not per series).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterStat {
    /// Bytes passed through undecoded (after fail-open).
    UnparsedBytes,
    /// Decode errors (each switched a connection to raw counting).
    DecodeErrors,
    /// Updates folded into an `_other` series by a cap.
    FoldedUpdates,
    /// Additions that would have overflowed (saturated instead).
    Overflows,
    /// SASL authentications the broker rejected (never attributed).
    AuthenticationFailures,
}

/// A host capability: a place to put counters (the plugin's Envoy stats).
pub trait CounterSink {
    /// `value` was added to `metric` of `series`.
    fn add(&mut self, series: &Series<'_>, metric: Metric, value: u64);
    /// `value` was added to a meter-wide counter.
    fn add_stat(&mut self, _stat: MeterStat, _value: u64) {}
    /// Host capability: the name of a topic id (32 lowercase hex digits) learned
    /// elsewhere (another worker), if known. The meter asks only for ids its own
    /// connections have not named.
    fn topic_name(&mut self, _id_hex: &str) -> Option<String> {
        None
    }
}

/// A topic id as the decoder writes an unresolved one: 32 lowercase hex digits.
pub fn topic_id_hex(id: [u8; 16]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(32);
    for b in id {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn is_topic_id_hex(topic: &str) -> bool {
    topic.len() == 32
        && topic
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Most topic ids a connection keeps for the host between two takes, and most a
/// meter remembers.
const MAX_LEARNED_PER_CONNECTION: usize = 64;
const MAX_TOPIC_NAMES: usize = 4096;

/// A [`CounterSink`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCounters;

impl CounterSink for NoCounters {
    fn add(&mut self, _: &Series<'_>, _: Metric, _: u64) {}
}

/// Meter-wide totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MeterStats {
    /// Bytes passed through undecoded.
    pub unparsed_bytes: u64,
    /// Decode errors.
    pub decode_errors: u64,
    /// Updates folded into `_other` by the series or per-connection topic cap.
    pub folded_updates: u64,
    /// Additions that saturated instead of overflowing.
    pub overflows: u64,
    /// SASL authentications the broker rejected.
    pub authentication_failures: u64,
}

/// Adds with saturation; counts an overflow.
fn add_to(counter: &mut u64, value: u64, overflows: &mut u64) {
    match counter.checked_add(value) {
        Some(sum) => *counter = sum,
        None => {
            *counter = u64::MAX;
            *overflows = overflows.saturating_add(1);
        }
    }
}

/// The principal a connection was attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    principal: Arc<str>,
    source: &'static str,
}

/// Per-topic accumulators of one window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TopicCounts {
    topic: String,
    produced_bytes: u64,
    produced_records: u64,
    consumed_bytes: u64,
    consumed_records: u64,
}

/// What a connection did in one (bucket, principal) window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Window {
    bucket: i64,
    principal: Option<Resolved>,
    request_bytes: u64,
    response_bytes: u64,
    requests: u64,
    topics: Vec<TopicCounts>,
}

impl Window {
    fn is_empty(&self) -> bool {
        self.request_bytes == 0
            && self.response_bytes == 0
            && self.requests == 0
            && self.topics.is_empty()
    }
}

/// Most windows a connection keeps between two absorptions (a window closes
/// when the bucket or the principal changes). Past it, windows are merged.
const MAX_CLOSED_WINDOWS: usize = 8;

/// One connection's meter: a [`Sink`] for its decoder.
#[derive(Debug, Clone)]
pub struct ConnectionMeter {
    sources: Vec<PrincipalSource>,
    bucket_seconds: i64,
    max_topics: usize,
    max_pending_requests: u64,
    now: Timestamp,
    sasl: Option<(Mechanism, Arc<str>)>,
    sasl_failed: bool,
    non_sasl_request_seen: bool,
    mtls: Option<Arc<str>>,
    client_id: Option<Arc<str>>,
    requests_seen: u64,
    decided: Option<Resolved>,
    current: Window,
    closed: Vec<Window>,
    unparsed_bytes: u64,
    decode_errors: u64,
    authentication_failures: u64,
    folded_updates: u64,
    overflows: u64,
    learned: Vec<([u8; 16], String)>,
}

fn bucket_of(now: Timestamp, width: i64) -> i64 {
    let w = width.max(1);
    now.0.div_euclid(w).saturating_mul(w)
}

impl ConnectionMeter {
    /// A new connection's meter at time `now`.
    pub fn new(config: &MeterConfig, now: Timestamp) -> Self {
        let mut meter = ConnectionMeter {
            sources: config.principal_sources.clone(),
            bucket_seconds: config.bucket_seconds.max(1),
            max_topics: config.max_topics_per_connection.max(1),
            max_pending_requests: config.max_pending_requests,
            now,
            sasl: None,
            sasl_failed: false,
            non_sasl_request_seen: false,
            mtls: None,
            client_id: None,
            requests_seen: 0,
            decided: None,
            current: Window::default(),
            closed: Vec::new(),
            unparsed_bytes: 0,
            decode_errors: 0,
            authentication_failures: 0,
            folded_updates: 0,
            overflows: 0,
            learned: Vec::new(),
        };
        meter.current.bucket = bucket_of(now, meter.bucket_seconds);
        meter.decide(false);
        meter
    }

    /// The verified client certificate's principal (from the host), if any.
    pub fn set_mtls(&mut self, principal: Option<&str>) {
        self.mtls = principal.filter(|p| !p.is_empty()).map(Arc::from);
        self.decide(false);
    }

    /// Sets the time of the bytes about to be fed; a new bucket starts a new window.
    pub fn set_now(&mut self, now: Timestamp) {
        self.now = now;
        let bucket = bucket_of(now, self.bucket_seconds);
        if bucket != self.current.bucket {
            if self.decided.is_none() {
                // Do not hold bytes across buckets: decide with what is known.
                self.decide(true);
            }
            self.rotate(bucket, self.decided.clone());
        }
    }

    /// The principal and its source label, once decided.
    pub fn principal(&self) -> Option<(&str, &'static str)> {
        self.decided.as_ref().map(|r| (&*r.principal, r.source))
    }

    /// Whether the host should call [`Meter::absorb`] soon (windows closed, or
    /// the topic accumulators are half full).
    pub fn wants_absorb(&self) -> bool {
        !self.closed.is_empty() || self.current.topics.len() * 2 >= self.max_topics
    }

    /// Topic ids this connection's Metadata responses named since the last take
    /// (for the host to share with other connections and workers).
    pub fn take_learned_topics(&mut self) -> Vec<([u8; 16], String)> {
        std::mem::take(&mut self.learned)
    }

    /// The connection ends: decide with what is known, so nothing stays held.
    pub fn finish(&mut self) {
        if self.decided.is_none() {
            self.decide(true);
        }
    }

    fn rotate(&mut self, bucket: i64, principal: Option<Resolved>) {
        let next = Window {
            bucket,
            principal,
            ..Window::default()
        };
        let old = std::mem::replace(&mut self.current, next);
        if old.is_empty() {
            return;
        }
        if self.closed.len() >= MAX_CLOSED_WINDOWS {
            // Bounded: merge into the newest closed window (counted as folded).
            if let Some(last) = self.closed.last_mut() {
                self.folded_updates = self.folded_updates.saturating_add(1);
                merge_window(
                    last,
                    old,
                    self.max_topics,
                    &mut self.folded_updates,
                    &mut self.overflows,
                );
                return;
            }
        }
        self.closed.push(old);
    }

    /// Walks the source order. `force`: do not wait for a source that may still
    /// answer (SASL not finished, no request seen yet).
    fn decide(&mut self, force: bool) {
        if self.decided.is_some() {
            return;
        }
        let mut chosen: Option<Resolved> = None;
        for source in &self.sources {
            match source {
                PrincipalSource::Sasl => {
                    if let Some((mechanism, principal)) = &self.sasl {
                        chosen = Some(Resolved {
                            principal: principal.clone(),
                            source: mechanism.source_label(),
                        });
                        break;
                    }
                    if !force && !self.sasl_failed && !self.non_sasl_request_seen {
                        return; // wait: SASL may still name the connection
                    }
                }
                PrincipalSource::Mtls => {
                    if let Some(principal) = &self.mtls {
                        chosen = Some(Resolved {
                            principal: principal.clone(),
                            source: "mtls",
                        });
                        break;
                    }
                }
                PrincipalSource::ClientId => {
                    if let Some(id) = &self.client_id {
                        chosen = Some(Resolved {
                            principal: id.clone(),
                            source: "client_id",
                        });
                        break;
                    }
                    if !force && self.requests_seen == 0 {
                        return; // wait: the first request header carries it
                    }
                }
                PrincipalSource::Anonymous => break,
            }
        }
        let resolved = chosen.unwrap_or_else(|| Resolved {
            principal: Arc::from(ANONYMOUS),
            source: "anonymous",
        });
        // Held bytes go to whoever the connection turned out to be.
        for window in self
            .closed
            .iter_mut()
            .chain(std::iter::once(&mut self.current))
        {
            if window.principal.is_none() {
                window.principal = Some(resolved.clone());
            }
        }
        self.decided = Some(resolved);
    }

    fn topic_mut(&mut self, topic: &str) -> Option<&mut TopicCounts> {
        topic_slot(
            &mut self.current.topics,
            topic,
            self.max_topics,
            &mut self.folded_updates,
        )
    }
}

/// The accumulator of `topic`, created if there is room, else the `_other`
/// accumulator (the fold is counted in `folded`).
fn topic_slot<'a>(
    topics: &'a mut Vec<TopicCounts>,
    topic: &str,
    max_topics: usize,
    folded: &mut u64,
) -> Option<&'a mut TopicCounts> {
    let mut name = topic;
    let mut index = topics.iter().position(|t| t.topic == name);
    if index.is_none() && topics.len() >= max_topics {
        *folded = folded.saturating_add(1);
        name = OTHER;
        index = topics.iter().position(|t| t.topic == name);
    }
    let index = match index {
        Some(i) => i,
        None => {
            topics.push(TopicCounts {
                topic: name.to_string(),
                ..TopicCounts::default()
            });
            topics.len() - 1
        }
    };
    topics.get_mut(index)
}

fn merge_window(
    into: &mut Window,
    from: Window,
    max_topics: usize,
    folded: &mut u64,
    overflows: &mut u64,
) {
    add_to(&mut into.request_bytes, from.request_bytes, overflows);
    add_to(&mut into.response_bytes, from.response_bytes, overflows);
    add_to(&mut into.requests, from.requests, overflows);
    for t in from.topics {
        if let Some(dst) = topic_slot(&mut into.topics, &t.topic, max_topics, folded) {
            add_to(&mut dst.produced_bytes, t.produced_bytes, overflows);
            add_to(&mut dst.produced_records, t.produced_records, overflows);
            add_to(&mut dst.consumed_bytes, t.consumed_bytes, overflows);
            add_to(&mut dst.consumed_records, t.consumed_records, overflows);
        }
    }
}

impl Sink for ConnectionMeter {
    fn frame(&mut self, direction: Direction, api_key: Option<i16>, wire_bytes: u64) {
        match direction {
            Direction::Request => {
                add_to(
                    &mut self.current.request_bytes,
                    wire_bytes,
                    &mut self.overflows,
                );
                add_to(&mut self.current.requests, 1, &mut self.overflows);
                self.requests_seen = self.requests_seen.saturating_add(1);
                if !matches!(
                    api_key,
                    Some(API_SASL_HANDSHAKE | API_API_VERSIONS | API_SASL_AUTHENTICATE)
                ) {
                    self.non_sasl_request_seen = true;
                }
            }
            Direction::Response => {
                add_to(
                    &mut self.current.response_bytes,
                    wire_bytes,
                    &mut self.overflows,
                );
            }
        }
        if self.decided.is_none() {
            let force = self.requests_seen > self.max_pending_requests;
            self.decide(force);
        }
    }

    fn client_id(&mut self, client_id: &str) {
        if self.client_id.is_none() && !client_id.is_empty() {
            self.client_id = Some(Arc::from(client_id));
        }
        self.decide(false);
    }

    fn authenticated(&mut self, mechanism: Mechanism, principal: &str) {
        if principal.is_empty() {
            return;
        }
        let same = self
            .sasl
            .as_ref()
            .is_some_and(|(m, p)| *m == mechanism && &**p == principal);
        self.sasl = Some((mechanism, Arc::from(principal)));
        match &self.decided {
            None => self.decide(false),
            Some(current) if !same => {
                // Re-authentication, or SASL finishing after another source decided:
                // switch when SASL ranks above the current source.
                let sasl_rank = self
                    .sources
                    .iter()
                    .position(|s| *s == PrincipalSource::Sasl);
                let current_rank = self.sources.iter().position(|s| match s {
                    PrincipalSource::Sasl => current.source.starts_with("sasl_"),
                    PrincipalSource::Mtls => current.source == "mtls",
                    PrincipalSource::ClientId => current.source == "client_id",
                    PrincipalSource::Anonymous => current.source == "anonymous",
                });
                let better = match (sasl_rank, current_rank) {
                    (Some(s), Some(c)) => s <= c,
                    (Some(_), None) => true,
                    _ => false,
                };
                if better {
                    let resolved = Resolved {
                        principal: Arc::from(principal),
                        source: mechanism.source_label(),
                    };
                    self.decided = Some(resolved.clone());
                    let bucket = self.current.bucket;
                    self.rotate(bucket, Some(resolved));
                }
            }
            Some(_) => {}
        }
    }

    fn authentication_failed(&mut self, _mechanism: Mechanism) {
        self.sasl_failed = true;
        self.authentication_failures = self.authentication_failures.saturating_add(1);
        self.decide(false);
    }

    fn produced(&mut self, set: &RecordSet<'_>) {
        let mut overflows = 0;
        if let Some(t) = self.topic_mut(set.topic) {
            add_to(&mut t.produced_bytes, set.bytes, &mut overflows);
            add_to(&mut t.produced_records, set.records, &mut overflows);
        }
        self.overflows = self.overflows.saturating_add(overflows);
    }

    fn consumed(&mut self, set: &RecordSet<'_>) {
        let mut overflows = 0;
        if let Some(t) = self.topic_mut(set.topic) {
            add_to(&mut t.consumed_bytes, set.bytes, &mut overflows);
            add_to(&mut t.consumed_records, set.records, &mut overflows);
        }
        self.overflows = self.overflows.saturating_add(overflows);
    }

    fn unparsed(&mut self, direction: Direction, bytes: u64) {
        add_to(&mut self.unparsed_bytes, bytes, &mut self.overflows);
        // Raw bytes are wire bytes too: request_bytes + response_bytes cover all traffic.
        let counter = match direction {
            Direction::Request => &mut self.current.request_bytes,
            Direction::Response => &mut self.current.response_bytes,
        };
        add_to(counter, bytes, &mut self.overflows);
        if self.decided.is_none() && direction == Direction::Request {
            // Nothing more will be decoded on this side: SASL cannot finish.
            self.non_sasl_request_seen = true;
            self.decide(false);
        }
    }

    fn decode_error(&mut self, _direction: Direction, _reason: &'static str) {
        self.decode_errors = self.decode_errors.saturating_add(1);
    }

    fn topic_id_learned(&mut self, topic_id: [u8; 16], name: &str) {
        if self.learned.len() < MAX_LEARNED_PER_CONNECTION
            && !self.learned.iter().any(|(id, _)| *id == topic_id)
        {
            self.learned.push((topic_id, name.to_string()));
        }
    }
}

/// The key of a series in the meter's table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    bucket: i64,
    principal: Arc<str>,
    source: &'static str,
    topic: String,
}

/// One worker's meter: bounded counters per (bucket, principal, source, topic).
#[derive(Debug, Clone)]
pub struct Meter {
    config: MeterConfig,
    table: HashMap<Key, [u64; 7]>,
    stats: MeterStats,
    topic_names: HashMap<String, String>,
}

fn metric_index(metric: Metric) -> usize {
    match metric {
        Metric::ProducedBytes => 0,
        Metric::ConsumedBytes => 1,
        Metric::ProducedRecords => 2,
        Metric::ConsumedRecords => 3,
        Metric::RequestBytes => 4,
        Metric::ResponseBytes => 5,
        Metric::Requests => 6,
    }
}

impl Meter {
    /// A meter with `config`.
    pub fn new(config: MeterConfig) -> Self {
        Meter {
            config,
            table: HashMap::new(),
            stats: MeterStats::default(),
            topic_names: HashMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MeterConfig {
        &self.config
    }

    /// A new connection's meter.
    pub fn connection(&self, now: Timestamp) -> ConnectionMeter {
        ConnectionMeter::new(&self.config, now)
    }

    /// Meter-wide totals so far.
    pub fn stats(&self) -> MeterStats {
        self.stats
    }

    /// Remembers a topic id's name (learned on any connection): record sets
    /// labelled by that id are counted under the name from then on. Bounded:
    /// when full, the memory starts afresh. True if it was new.
    pub fn learn_topic(&mut self, topic_id: [u8; 16], name: &str) -> bool {
        let hex = topic_id_hex(topic_id);
        if self.topic_names.get(&hex).is_some_and(|n| n == name) {
            return false;
        }
        if self.topic_names.len() >= MAX_TOPIC_NAMES {
            self.topic_names.clear();
        }
        self.topic_names.insert(hex, name.to_string());
        true
    }

    /// Number of series held (until the next drain).
    pub fn series(&self) -> usize {
        self.table.len()
    }

    /// Moves what `conn` attributed so far into the table, reporting every
    /// increment to `counters`. Held (undecided) bytes stay in the connection.
    pub fn absorb(&mut self, conn: &mut ConnectionMeter, counters: &mut impl CounterSink) {
        let mut windows = std::mem::take(&mut conn.closed);
        if conn.current.principal.is_some() && !conn.current.is_empty() {
            let fresh = Window {
                bucket: conn.current.bucket,
                principal: conn.current.principal.clone(),
                ..Window::default()
            };
            windows.push(std::mem::replace(&mut conn.current, fresh));
        }
        let mut held = Vec::new();
        for window in windows {
            match window.principal.clone() {
                Some(resolved) => self.add_window(&window, &resolved, counters),
                None => held.push(window),
            }
        }
        conn.closed = held;
        let deltas = [
            (
                MeterStat::UnparsedBytes,
                std::mem::take(&mut conn.unparsed_bytes),
            ),
            (
                MeterStat::DecodeErrors,
                std::mem::take(&mut conn.decode_errors),
            ),
            (
                MeterStat::FoldedUpdates,
                std::mem::take(&mut conn.folded_updates),
            ),
            (MeterStat::Overflows, std::mem::take(&mut conn.overflows)),
            (
                MeterStat::AuthenticationFailures,
                std::mem::take(&mut conn.authentication_failures),
            ),
        ];
        for (stat, value) in deltas {
            self.add_stat(stat, value, counters);
        }
    }

    fn add_stat(&mut self, stat: MeterStat, value: u64, counters: &mut impl CounterSink) {
        if value == 0 {
            return;
        }
        let mut overflows = 0;
        let slot = match stat {
            MeterStat::UnparsedBytes => &mut self.stats.unparsed_bytes,
            MeterStat::DecodeErrors => &mut self.stats.decode_errors,
            MeterStat::FoldedUpdates => &mut self.stats.folded_updates,
            MeterStat::Overflows => &mut self.stats.overflows,
            MeterStat::AuthenticationFailures => &mut self.stats.authentication_failures,
        };
        add_to(slot, value, &mut overflows);
        self.stats.overflows = self.stats.overflows.saturating_add(overflows);
        counters.add_stat(stat, value);
        if overflows > 0 {
            counters.add_stat(MeterStat::Overflows, overflows);
        }
    }

    fn add_window(&mut self, window: &Window, who: &Resolved, counters: &mut impl CounterSink) {
        let per_principal = [
            (Metric::RequestBytes, window.request_bytes),
            (Metric::ResponseBytes, window.response_bytes),
            (Metric::Requests, window.requests),
        ];
        if per_principal.iter().any(|(_, v)| *v > 0) {
            self.add_series(window.bucket, who, "", &per_principal, counters);
        }
        for t in &window.topics {
            let resolved;
            let topic = if is_topic_id_hex(&t.topic) {
                resolved = match self.topic_names.get(&t.topic) {
                    Some(name) => Some(name.clone()),
                    None => counters.topic_name(&t.topic),
                };
                resolved.as_deref().unwrap_or(&t.topic)
            } else {
                &t.topic
            };
            let per_topic = [
                (Metric::ProducedBytes, t.produced_bytes),
                (Metric::ConsumedBytes, t.consumed_bytes),
                (Metric::ProducedRecords, t.produced_records),
                (Metric::ConsumedRecords, t.consumed_records),
            ];
            if per_topic.iter().any(|(_, v)| *v > 0) {
                self.add_series(window.bucket, who, topic, &per_topic, counters);
            }
        }
    }

    fn add_series(
        &mut self,
        bucket: i64,
        who: &Resolved,
        topic: &str,
        values: &[(Metric, u64)],
        counters: &mut impl CounterSink,
    ) {
        let key = Key {
            bucket,
            principal: who.principal.clone(),
            source: who.source,
            topic: topic.to_string(),
        };
        let key = if self.table.contains_key(&key) || self.table.len() < self.config.max_series {
            key
        } else {
            self.stats.folded_updates = self.stats.folded_updates.saturating_add(1);
            counters.add_stat(MeterStat::FoldedUpdates, 1);
            Key {
                bucket,
                principal: Arc::from(OTHER),
                source: OTHER,
                topic: if topic.is_empty() {
                    String::new()
                } else {
                    OTHER.to_string()
                },
            }
        };
        let mut overflows = 0;
        {
            let row = self.table.entry(key.clone()).or_insert([0; 7]);
            for (metric, value) in values {
                if *value > 0 {
                    if let Some(slot) = row.get_mut(metric_index(*metric)) {
                        add_to(slot, *value, &mut overflows);
                    }
                }
            }
        }
        let series = Series {
            cluster: &self.config.cluster,
            principal: &key.principal,
            source: key.source,
            topic: &key.topic,
        };
        for (metric, value) in values {
            if *value > 0 {
                counters.add(&series, *metric, *value);
            }
        }
        if overflows > 0 {
            self.stats.overflows = self.stats.overflows.saturating_add(overflows);
            counters.add_stat(MeterStat::Overflows, overflows);
        }
    }

    /// Takes every row counted so far (all buckets up to `now`), sorted, and
    /// starts afresh. Rows are additive: a reader sums rows with the same key
    /// (several flushes, several Envoy workers).
    pub fn drain(&mut self, now: Timestamp) -> Vec<UsageRow> {
        let width = self.config.bucket_seconds.max(1);
        let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.table)
            .into_iter()
            .partition(|(key, _)| key.bucket <= now.0);
        self.table = later.into_iter().collect();
        let mut rows = Vec::new();
        for (key, values) in ready {
            for metric in Metric::ALL {
                let value = values.get(metric_index(metric)).copied().unwrap_or(0);
                if value == 0 || metric.per_topic() == key.topic.is_empty() {
                    continue;
                }
                rows.push(UsageRow {
                    bucket_start: Timestamp(key.bucket),
                    bucket_end: Timestamp(key.bucket.saturating_add(width)),
                    cluster: self.config.cluster.clone(),
                    principal: key.principal.to_string(),
                    principal_source: key.source.to_string(),
                    topic: key.topic.clone(),
                    metric,
                    value,
                });
            }
        }
        rows.sort();
        rows
    }
}

#[cfg(test)]
mod tests;
