//! The proxy-wasm host glue (compiled for wasm32 only).
//!
//! Every host call goes through `proxy_wasm::hostcalls` with its `Result`
//! handled (the SDK's trait helpers unwrap), and every stream callback returns
//! `Action::Continue`: tally never closes, pauses or alters a connection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{
    Action, BufferType, ContextType, LogLevel, MapType, MetricType, PeerType, Status,
};
use tally::kafka::{ConnectionDecoder, Direction};
use tally::meter::{topic_id_hex, ConnectionMeter, CounterSink, Meter, MeterStat, Series, OTHER};
use tally::time::Timestamp;
use tally::usage::Metric;

use crate::config::{self, Config};
use crate::flush::{FlushStats, Outbox};
use crate::names::stat_name;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

fn now() -> Timestamp {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| Timestamp(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
        .unwrap_or_default()
}

/// Shared-data prefix of topic id → name (learned from Metadata on any connection
/// of any worker: clients fetch by id on other connections than their Metadata).
const TOPIC_ID_PREFIX: &str = "tally.topic_id.";

/// Shared-data key of the number of labelled stats defined (all workers).
const SERIES_COUNT_KEY: &str = "tally.stat_series.count";
/// Prefix of the shared-data marker of one defined labelled stat.
const SERIES_MARK_PREFIX: &str = "tally.stat_series.name.";

/// Reserves a slot for the labelled stat `name` under the global cap, with a
/// compare-and-swap on shared data (the stat store is shared by all workers,
/// and Envoy never frees a stat). True if `name` is (now) allowed.
fn reserve_stat(name: &str, cap: u64) -> bool {
    let mark = format!("{SERIES_MARK_PREFIX}{name}");
    if let Ok((Some(_), _)) = hostcalls::get_shared_data(&mark) {
        return true;
    }
    for _ in 0..16 {
        let Ok((value, cas)) = hostcalls::get_shared_data(SERIES_COUNT_KEY) else {
            return false;
        };
        let count = value
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_le_bytes);
        if count >= cap {
            return false;
        }
        let next = count.saturating_add(1).to_le_bytes();
        match hostcalls::set_shared_data(SERIES_COUNT_KEY, Some(&next), cas) {
            Ok(()) => {
                let _ = hostcalls::set_shared_data(&mark, Some(b"1"), None);
                return true;
            }
            Err(Status::CasMismatch) => continue,
            Err(_) => return false,
        }
    }
    false
}

/// The plugin's Envoy counters: a [`CounterSink`] for the meter.
struct Stats {
    cluster: String,
    broker_names: bool,
    cap: u64,
    ids: HashMap<String, u32>,
    posted: FlushStats,
}

impl Stats {
    fn id(&mut self, name: String) -> Option<u32> {
        if let Some(id) = self.ids.get(&name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(MetricType::Counter, &name).ok()?;
        self.ids.insert(name, id);
        Some(id)
    }

    fn bump(&mut self, name: String, value: u64) {
        if value == 0 {
            return;
        }
        if let Some(id) = self.id(name) {
            let mut left = value;
            while left > 0 {
                let step = left.min(i64::MAX as u64);
                let _ = hostcalls::increment_metric(id, i64::try_from(step).unwrap_or(i64::MAX));
                left -= step;
            }
        }
    }

    /// Increments a labelled stat under the global cap, else its `_other` twin
    /// (`other_name`), counting the fold.
    fn bump_capped(&mut self, name: String, other_name: impl FnOnce() -> String, value: u64) {
        if self.ids.contains_key(&name) || reserve_stat(&name, self.cap) {
            self.bump(name, value);
        } else {
            self.bump(other_name(), value);
            let folded = stat_name("tally_stat_series_folded", &[("cluster", &self.cluster)]);
            self.bump(folded, 1);
        }
    }

    fn meter_stat(&mut self, name: &str, value: u64) {
        let full = stat_name(name, &[("cluster", &self.cluster)]);
        self.bump(full, value);
    }

    fn sync_flush(&mut self, now: FlushStats) {
        let before = self.posted;
        self.meter_stat(
            "tally_flush_rows_posted",
            now.rows_posted.saturating_sub(before.rows_posted),
        );
        self.meter_stat(
            "tally_flush_rows_dropped",
            now.rows_dropped.saturating_sub(before.rows_dropped),
        );
        self.meter_stat(
            "tally_flush_failures",
            now.failures.saturating_sub(before.failures),
        );
        self.posted = now;
    }
}

fn labelled(
    metric: &str,
    cluster: &str,
    principal: &str,
    source: &str,
    topic: Option<&str>,
    direction: Option<&str>,
) -> String {
    let mut tags: Vec<(&str, &str)> = vec![
        ("cluster", cluster),
        ("principal", principal),
        ("source", source),
    ];
    if let Some(t) = topic {
        tags.push(("topic", t));
    }
    if let Some(d) = direction {
        tags.push(("direction", d));
    }
    stat_name(metric, &tags)
}

impl CounterSink for Stats {
    fn add(&mut self, s: &Series<'_>, metric: Metric, value: u64) {
        let (name, direction) = match metric {
            Metric::ProducedBytes => ("tally_bytes", Some("produced")),
            Metric::ConsumedBytes => ("tally_bytes", Some("consumed")),
            Metric::ProducedRecords => ("tally_records", Some("produced")),
            Metric::ConsumedRecords => ("tally_records", Some("consumed")),
            Metric::RequestBytes => ("tally_wire_bytes", Some("request")),
            Metric::ResponseBytes => ("tally_wire_bytes", Some("response")),
            Metric::Requests => ("tally_requests", None),
        };
        let topic = metric.per_topic().then_some(s.topic);
        let full = labelled(name, s.cluster, s.principal, s.source, topic, direction);
        let cluster = s.cluster.to_string();
        let other_topic = topic.map(|_| OTHER);
        self.bump_capped(
            full,
            || labelled(name, &cluster, OTHER, OTHER, other_topic, direction),
            value,
        );
        if self.broker_names {
            let broker = match metric {
                Metric::ProducedBytes => Some("kafka_server_brokertopicmetrics_bytesin_total"),
                Metric::ConsumedBytes => Some("kafka_server_brokertopicmetrics_bytesout_total"),
                _ => None,
            };
            if let Some(b) = broker {
                let full = stat_name(b, &[("principal", s.principal), ("topic", s.topic)]);
                self.bump_capped(
                    full,
                    || stat_name(b, &[("principal", OTHER), ("topic", OTHER)]),
                    value,
                );
            }
        }
    }

    fn topic_name(&mut self, id_hex: &str) -> Option<String> {
        let (value, _) = hostcalls::get_shared_data(&format!("{TOPIC_ID_PREFIX}{id_hex}")).ok()?;
        String::from_utf8(value?).ok()
    }

    fn add_stat(&mut self, stat: MeterStat, value: u64) {
        let name = match stat {
            MeterStat::UnparsedBytes => "tally_unparsed_bytes",
            MeterStat::DecodeErrors => "tally_decode_errors",
            MeterStat::FoldedUpdates => "tally_folded_updates",
            MeterStat::Overflows => "tally_overflows",
            MeterStat::AuthenticationFailures => "tally_authentication_failures",
        };
        self.meter_stat(name, value);
    }
}

/// One worker VM's state, shared by its root and stream contexts.
struct Worker {
    config: Rc<Config>,
    meter: Meter,
    stats: Stats,
    outbox: Outbox,
}

impl Worker {
    /// Posts the next batch of waiting rows if idle.
    fn post(&mut self) {
        let Some(target) = self.config.flush.clone() else {
            return;
        };
        if let Some((body, rows)) = self.outbox.next_body() {
            let authority = target
                .authority
                .clone()
                .unwrap_or_else(|| target.cluster.clone());
            let headers = vec![
                (":method", "POST"),
                (":path", target.path.as_str()),
                (":authority", authority.as_str()),
                ("content-type", "text/csv; charset=utf-8"),
            ];
            match hostcalls::dispatch_http_call(
                &target.cluster,
                headers,
                Some(body.as_bytes()),
                vec![],
                Duration::from_millis(target.timeout_ms),
            ) {
                Ok(token) => self.outbox.sent(token, rows),
                Err(status) => {
                    log(
                        LogLevel::Warn,
                        &format!("tally: usage flush to cluster `{}` not dispatched ({status:?}); will retry", target.cluster),
                    );
                    self.outbox.refused(rows);
                }
            }
        }
        let stats = self.outbox.stats();
        self.stats.sync_flush(stats);
    }

    fn flush(&mut self) {
        let rows = self.meter.drain(now());
        if self.config.flush.is_some() {
            self.outbox.push(rows);
            self.post();
        }
    }
}

type Shared = Rc<RefCell<Worker>>;

#[derive(Default)]
struct Root {
    worker: Option<Shared>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.trim().parse::<u16>().ok());
        if let Some(worker) = &self.worker {
            if let Ok(mut w) = worker.try_borrow_mut() {
                if w.outbox.answered(token, status) {
                    if !matches!(status, Some(200..=299)) {
                        log(
                            LogLevel::Warn,
                            &format!("tally: usage flush answered {status:?}; rows kept for retry"),
                        );
                        let stats = w.outbox.stats();
                        w.stats.sync_flush(stats);
                    } else {
                        // Drain a backlog without waiting a whole interval.
                        w.post();
                    }
                }
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let config = match config::parse(&bytes) {
            Ok(c) => c,
            Err(message) => {
                log(LogLevel::Critical, &message);
                return false;
            }
        };
        let _ = hostcalls::set_tick_period(Duration::from_secs(config.flush_interval_seconds));
        log(
            LogLevel::Info,
            &format!(
                "tally: metering Kafka cluster `{}`; flush every {} s to {}",
                config.meter.cluster,
                config.flush_interval_seconds,
                config
                    .flush
                    .as_ref()
                    .map_or("nowhere (counters only)".to_string(), |f| format!(
                        "cluster `{}` {}",
                        f.cluster, f.path
                    )),
            ),
        );
        let stats = Stats {
            cluster: config.meter.cluster.clone(),
            broker_names: config.broker_metric_names,
            cap: config.max_stat_series,
            ids: HashMap::new(),
            posted: FlushStats::default(),
        };
        let worker = Worker {
            meter: Meter::new(config.meter.clone()),
            outbox: Outbox::new(config.retry_buffer_rows),
            stats,
            config: Rc::new(config),
        };
        self.worker = Some(Rc::new(RefCell::new(worker)));
        true
    }

    fn on_tick(&mut self) {
        if let Some(worker) = &self.worker {
            if let Ok(mut w) = worker.try_borrow_mut() {
                w.flush();
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        let Some(worker) = self.worker.clone() else {
            return Some(Box::new(PassThrough));
        };
        let t = now();
        let (decoder, meter) = match worker.try_borrow_mut() {
            Ok(mut w) => {
                w.stats.meter_stat("tally_connections", 1);
                (
                    ConnectionDecoder::new(w.config.decoder),
                    w.meter.connection(t),
                )
            }
            Err(_) => return Some(Box::new(PassThrough)),
        };
        Some(Box::new(Connection {
            worker,
            decoder,
            meter,
            mtls_checked: false,
            last_absorb: t.0,
            closed: false,
        }))
    }
}

/// Used only if the root was never configured: counts nothing, passes all.
struct PassThrough;
impl Context for PassThrough {}
impl StreamContext for PassThrough {}

struct Connection {
    worker: Shared,
    decoder: ConnectionDecoder,
    meter: ConnectionMeter,
    mtls_checked: bool,
    last_absorb: i64,
    closed: bool,
}

impl Connection {
    fn mtls(&self) -> Option<String> {
        let config = self.worker.try_borrow().ok()?.config.clone();
        config.mtls_fields.iter().find_map(|field| {
            let value = hostcalls::get_property(field.property().to_vec())
                .ok()
                .flatten()?;
            let text = String::from_utf8(value).ok()?;
            config.mtls_principal(&text)
        })
    }

    fn feed(&mut self, direction: Direction, size: usize) {
        if !self.mtls_checked {
            // Read once the TLS handshake is done (data flows only after it).
            self.mtls_checked = true;
            let principal = self.mtls();
            self.meter.set_mtls(principal.as_deref());
        }
        let t = now();
        self.meter.set_now(t);
        let buffer = match direction {
            Direction::Request => BufferType::DownstreamData,
            Direction::Response => BufferType::UpstreamData,
        };
        // Only the bytes the decoder reads are copied into the VM: record
        // payloads and other skipped bytes are passed by count. Unreadable
        // bytes are still counted, undecoded.
        self.decoder
            .on_chunk(direction, size, &mut self.meter, |offset, len| {
                hostcalls::get_buffer(buffer, offset, len).ok().flatten()
            });
        let learned = self.meter.take_learned_topics();
        if !learned.is_empty() {
            if let Ok(mut w) = self.worker.try_borrow_mut() {
                for (id, name) in learned {
                    if w.meter.learn_topic(id, &name) {
                        let key = format!("{TOPIC_ID_PREFIX}{}", topic_id_hex(id));
                        let _ = hostcalls::set_shared_data(&key, Some(name.as_bytes()), None);
                    }
                }
            }
        }
        if self.meter.wants_absorb() || t.0.saturating_sub(self.last_absorb) >= 1 {
            self.absorb(t.0);
        }
    }

    fn absorb(&mut self, at: i64) {
        self.last_absorb = at;
        if let Ok(mut w) = self.worker.try_borrow_mut() {
            let Worker { meter, stats, .. } = &mut *w;
            meter.absorb(&mut self.meter, stats);
        }
    }

    fn close(&mut self) {
        if !self.closed {
            // Bytes of a frame cut short by the close are counted, undecoded.
            self.closed = true;
            self.decoder.on_close(&mut self.meter);
        }
        self.meter.finish();
        self.absorb(now().0);
    }
}

impl Context for Connection {
    fn on_done(&mut self) -> bool {
        self.close();
        true
    }
}

impl StreamContext for Connection {
    fn on_new_connection(&mut self) -> Action {
        Action::Continue
    }

    fn on_downstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        self.feed(Direction::Request, data_size);
        Action::Continue
    }

    fn on_upstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        self.feed(Direction::Response, data_size);
        Action::Continue
    }

    fn on_downstream_close(&mut self, _peer_type: PeerType) {
        self.close();
    }

    fn on_upstream_close(&mut self, _peer_type: PeerType) {
        self.close();
    }

    fn on_log(&mut self) {
        self.close();
    }
}
