use super::*;
use crate::kafka::{Direction, Mechanism, RecordSet, Sink};
use std::collections::BTreeMap;

const T0: i64 = 1_795_400_000;

/// Events fed by hand, as the decoder would push them.
#[derive(Debug, Clone)]
enum Ev {
    Req(i16, u64),
    Resp(i16, u64),
    ClientId(&'static str),
    Auth(Mechanism, &'static str),
    AuthFailed(Mechanism),
    Produce(&'static str, u64, u64),
    Consume(&'static str, u64, u64),
    Raw(Direction, u64),
    DecodeError,
    Now(i64),
}

fn set(topic: &str, bytes: u64, records: u64) -> RecordSet<'_> {
    RecordSet {
        topic,
        partition: 0,
        bytes,
        records,
        batches: 1,
        codecs: 0,
    }
}

fn feed(conn: &mut ConnectionMeter, events: &[Ev]) {
    for e in events {
        match e {
            Ev::Req(k, b) => conn.frame(Direction::Request, Some(*k), *b),
            Ev::Resp(k, b) => conn.frame(Direction::Response, Some(*k), *b),
            Ev::ClientId(c) => conn.client_id(c),
            Ev::Auth(m, p) => conn.authenticated(*m, p),
            Ev::AuthFailed(m) => conn.authentication_failed(*m),
            Ev::Produce(t, b, r) => conn.produced(&set(t, *b, *r)),
            Ev::Consume(t, b, r) => conn.consumed(&set(t, *b, *r)),
            Ev::Raw(d, b) => conn.unparsed(*d, *b),
            Ev::DecodeError => conn.decode_error(Direction::Request, "test"),
            Ev::Now(t) => conn.set_now(Timestamp(*t)),
        }
    }
}

/// Records everything a CounterSink is told.
#[derive(Default)]
struct Recorder {
    series: BTreeMap<(String, String, String, &'static str), u64>,
    stats: BTreeMap<String, u64>,
}

impl CounterSink for Recorder {
    fn add(&mut self, s: &Series<'_>, metric: Metric, value: u64) {
        let slot = self
            .series
            .entry((
                s.principal.to_string(),
                s.source.to_string(),
                s.topic.to_string(),
                metric.as_str(),
            ))
            .or_default();
        *slot = slot.saturating_add(value);
    }
    fn add_stat(&mut self, stat: MeterStat, value: u64) {
        *self.stats.entry(format!("{stat:?}")).or_default() += value;
    }
}

/// (principal, source, topic, metric) -> value, summed over buckets.
fn totals(rows: &[UsageRow]) -> BTreeMap<(String, String, String, &'static str), u64> {
    let mut out = BTreeMap::new();
    for r in rows {
        *out.entry((
            r.principal.clone(),
            r.principal_source.clone(),
            r.topic.clone(),
            r.metric.as_str(),
        ))
        .or_default() += r.value;
    }
    out
}

fn run(config: MeterConfig, mtls: Option<&str>, events: &[Ev]) -> (Vec<UsageRow>, Recorder, Meter) {
    let mut meter = Meter::new(config);
    let mut conn = meter.connection(Timestamp(T0));
    conn.set_mtls(mtls);
    let mut rec = Recorder::default();
    feed(&mut conn, events);
    conn.finish();
    meter.absorb(&mut conn, &mut rec);
    let rows = meter.drain(Timestamp(T0 + 100_000));
    (rows, rec, meter)
}

fn key(p: &str, s: &str, t: &str, m: &'static str) -> (String, String, String, &'static str) {
    (p.to_string(), s.to_string(), t.to_string(), m)
}

/// (name, config, mtls, events, expected principal, source, request_bytes)
type Case<'a> = (
    &'a str,
    MeterConfig,
    Option<&'a str>,
    &'a Vec<Ev>,
    &'a str,
    &'a str,
    u64,
);

#[test]
fn principal_resolution_follows_the_configured_order() {
    use Ev::*;
    let sasl_then_traffic = vec![
        Req(18, 50),
        ClientId("app-1"),
        Resp(18, 300),
        Req(17, 30),
        Resp(17, 20),
        Req(36, 60),
        Auth(Mechanism::ScramSha256, "alice"),
        Resp(36, 40),
        Req(0, 1000),
        Produce("orders", 900, 10),
        Resp(0, 60),
    ];
    let no_sasl = vec![
        Req(18, 50),
        ClientId("app-1"),
        Resp(18, 300),
        Req(3, 40),
        Resp(3, 200),
    ];
    let failed = vec![
        Req(18, 50),
        ClientId("app-1"),
        Resp(18, 300),
        Req(17, 30),
        Resp(17, 20),
        Req(36, 60),
        AuthFailed(Mechanism::ScramSha256),
        Resp(36, 40),
    ];
    let order = |o: &[PrincipalSource]| MeterConfig {
        principal_sources: o.to_vec(),
        ..MeterConfig::default()
    };
    use PrincipalSource as S;
    // (name, config, mtls, events, expected principal, source, request_bytes)
    let cases: Vec<Case> = vec![
        (
            "sasl wins, pre-auth bytes held and attributed",
            MeterConfig::default(),
            Some("CN=x"),
            &sasl_then_traffic,
            "alice",
            "sasl_scram_sha_256",
            1140,
        ),
        (
            "mtls first",
            order(&[S::Mtls, S::Sasl]),
            Some("CN=x"),
            &sasl_then_traffic,
            "CN=x",
            "mtls",
            1140,
        ),
        (
            "no sasl: mtls",
            MeterConfig::default(),
            Some("svc-a"),
            &no_sasl,
            "svc-a",
            "mtls",
            90,
        ),
        (
            "no sasl, no mtls: client.id",
            MeterConfig::default(),
            None,
            &no_sasl,
            "app-1",
            "client_id",
            90,
        ),
        (
            "client.id not configured: anonymous",
            order(&[S::Sasl, S::Mtls, S::Anonymous]),
            None,
            &no_sasl,
            "ANONYMOUS",
            "anonymous",
            90,
        ),
        (
            "failed sasl is not attributed",
            MeterConfig::default(),
            None,
            &failed,
            "app-1",
            "client_id",
            140,
        ),
        (
            "failed sasl falls to mtls",
            MeterConfig::default(),
            Some("CN=y"),
            &failed,
            "CN=y",
            "mtls",
            140,
        ),
        (
            "empty order: anonymous",
            order(&[]),
            None,
            &sasl_then_traffic,
            "ANONYMOUS",
            "anonymous",
            1140,
        ),
    ];
    for (name, config, mtls, events, principal, source, request_bytes) in cases {
        let (rows, rec, _) = run(config, mtls, events);
        let t = totals(&rows);
        assert_eq!(
            t.get(&key(principal, source, "", "request_bytes")),
            Some(&request_bytes),
            "{name}: {t:?}"
        );
        // Every row belongs to the one principal; nothing is attributed twice.
        assert!(
            rows.iter()
                .all(|r| r.principal == principal && r.principal_source == source),
            "{name}: {rows:?}"
        );
        // The counter sink saw exactly the rows.
        assert_eq!(rec.series, t, "{name}");
        assert!(!rows.iter().any(|r| r.principal == "nobody"));
    }
}

#[test]
fn counts_are_exact_per_topic_and_per_principal() {
    use Ev::*;
    let events = vec![
        ClientId("c"),
        Req(0, 1000),
        Produce("a", 600, 6),
        Produce("b", 300, 3),
        Resp(0, 50),
        Req(1, 70),
        Resp(1, 2000),
        Consume("a", 600, 6),
        Consume("b", 1200, 12),
        Raw(Direction::Response, 77),
        DecodeError,
    ];
    let (rows, rec, meter) = run(MeterConfig::default(), None, &events);
    let t = totals(&rows);
    let expected = [
        (key("c", "client_id", "", "request_bytes"), 1070),
        (key("c", "client_id", "", "response_bytes"), 2127),
        (key("c", "client_id", "", "requests"), 2),
        (key("c", "client_id", "a", "produced_bytes"), 600),
        (key("c", "client_id", "a", "produced_records"), 6),
        (key("c", "client_id", "a", "consumed_bytes"), 600),
        (key("c", "client_id", "a", "consumed_records"), 6),
        (key("c", "client_id", "b", "produced_bytes"), 300),
        (key("c", "client_id", "b", "produced_records"), 3),
        (key("c", "client_id", "b", "consumed_bytes"), 1200),
        (key("c", "client_id", "b", "consumed_records"), 12),
    ];
    assert_eq!(t, expected.into_iter().collect::<BTreeMap<_, _>>());
    assert_eq!(meter.stats().unparsed_bytes, 77);
    assert_eq!(meter.stats().decode_errors, 1);
    assert_eq!(rec.stats.get("UnparsedBytes"), Some(&77));
    assert_eq!(rec.stats.get("DecodeErrors"), Some(&1));
    // Rows carry the cluster and 300 s buckets.
    assert!(rows
        .iter()
        .all(|r| r.cluster == "kafka" && r.bucket_end.0 - r.bucket_start.0 == 300));
}

#[test]
fn buckets_split_at_the_boundary() {
    use Ev::*;
    let start = 1_795_399_800; // a multiple of 300
    let mut meter = Meter::new(MeterConfig::default());
    let mut conn = meter.connection(Timestamp(start + 299));
    feed(
        &mut conn,
        &[
            ClientId("c"),
            Req(0, 100),
            Produce("a", 80, 1),
            Now(start + 300),
            Req(0, 200),
            Produce("a", 180, 2),
        ],
    );
    meter.absorb(&mut conn, &mut NoCounters);
    let rows = meter.drain(Timestamp(start + 1000));
    let produced: Vec<(i64, u64)> = rows
        .iter()
        .filter(|r| r.metric == Metric::ProducedBytes)
        .map(|r| (r.bucket_start.0, r.value))
        .collect();
    assert_eq!(produced, vec![(start, 80), (start + 300, 180)]);
}

#[test]
fn holding_is_bounded() {
    use Ev::*;
    let config = MeterConfig {
        max_pending_requests: 3,
        ..MeterConfig::default()
    };
    // Only SASL-ish requests, never finishing: decided after 3 held requests.
    let events: Vec<Ev> = (0..5).map(|_| Req(18, 10)).collect();
    let mut meter = Meter::new(config);
    let mut conn = meter.connection(Timestamp(T0));
    feed(&mut conn, &events[..3]);
    assert_eq!(conn.principal(), None);
    feed(&mut conn, &events[3..]);
    assert_eq!(conn.principal(), Some((ANONYMOUS, "anonymous")));
    meter.absorb(&mut conn, &mut NoCounters);
    let t = totals(&meter.drain(Timestamp(T0 + 1000)));
    assert_eq!(
        t.get(&key(ANONYMOUS, "anonymous", "", "request_bytes")),
        Some(&50)
    );
}

#[test]
fn undecided_bytes_stay_in_the_connection_until_decided() {
    use Ev::*;
    let mut meter = Meter::new(MeterConfig::default());
    let mut conn = meter.connection(Timestamp(T0));
    feed(&mut conn, &[Req(18, 10), Resp(18, 20), Req(17, 5)]);
    meter.absorb(&mut conn, &mut NoCounters);
    assert_eq!(meter.series(), 0, "nothing attributed yet");
    feed(&mut conn, &[Auth(Mechanism::Plain, "bob"), Resp(17, 7)]);
    meter.absorb(&mut conn, &mut NoCounters);
    let t = totals(&meter.drain(Timestamp(T0 + 1000)));
    assert_eq!(
        t.get(&key("bob", "sasl_plain", "", "request_bytes")),
        Some(&15)
    );
    assert_eq!(
        t.get(&key("bob", "sasl_plain", "", "response_bytes")),
        Some(&27)
    );
}

#[test]
fn reauthentication_switches_principal_for_later_traffic() {
    use Ev::*;
    let (rows, _, _) = run(
        MeterConfig::default(),
        None,
        &[
            Req(17, 1),
            Auth(Mechanism::ScramSha512, "u1"),
            Req(0, 100),
            Produce("t", 90, 1),
            Req(17, 1),
            Auth(Mechanism::ScramSha512, "u2"),
            Req(0, 200),
            Produce("t", 190, 2),
        ],
    );
    let t = totals(&rows);
    assert_eq!(
        t.get(&key("u1", "sasl_scram_sha_512", "t", "produced_bytes")),
        Some(&90)
    );
    assert_eq!(
        t.get(&key("u2", "sasl_scram_sha_512", "t", "produced_bytes")),
        Some(&190)
    );
}

#[test]
fn series_cap_folds_into_other_and_counts() {
    let config = MeterConfig {
        max_series: 3,
        ..MeterConfig::default()
    };
    let mut meter = Meter::new(config);
    let mut rec = Recorder::default();
    for i in 0..5 {
        let mut conn = meter.connection(Timestamp(T0));
        let id = format!("client-{i}");
        conn.client_id(&id);
        conn.frame(Direction::Request, Some(0), 10);
        conn.produced(&set("t", 7, 1));
        conn.finish();
        meter.absorb(&mut conn, &mut rec);
    }
    // 3 series fit (client-0 principal, client-0/t, client-1 principal); the rest fold.
    let rows = meter.drain(Timestamp(T0 + 1000));
    let t = totals(&rows);
    let total_req: u64 = t
        .iter()
        .filter(|(k, _)| k.3 == "request_bytes")
        .map(|(_, v)| v)
        .sum();
    let total_prod: u64 = t
        .iter()
        .filter(|(k, _)| k.3 == "produced_bytes")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total_req, 50, "folding keeps totals exact");
    assert_eq!(total_prod, 35);
    assert!(t.contains_key(&key(OTHER, OTHER, "", "request_bytes")));
    assert!(t.contains_key(&key(OTHER, OTHER, OTHER, "produced_bytes")));
    assert_eq!(meter.stats().folded_updates, 7);
    assert_eq!(rec.stats.get("FoldedUpdates"), Some(&7));
    // After a drain the table is empty again.
    assert_eq!(meter.series(), 0);
}

#[test]
fn per_connection_topic_cap_folds() {
    let config = MeterConfig {
        max_topics_per_connection: 2,
        ..MeterConfig::default()
    };
    let mut meter = Meter::new(config);
    let mut conn = meter.connection(Timestamp(T0));
    conn.client_id("c");
    conn.frame(Direction::Request, Some(0), 1);
    for t in ["a", "b", "c", "d"] {
        conn.produced(&set(t, 10, 1));
    }
    assert!(conn.wants_absorb());
    meter.absorb(&mut conn, &mut NoCounters);
    let t = totals(&meter.drain(Timestamp(T0 + 1000)));
    assert_eq!(
        t.get(&key("c", "client_id", OTHER, "produced_bytes")),
        Some(&20)
    );
    assert_eq!(meter.stats().folded_updates, 2);
}

#[test]
fn overflow_saturates_and_is_counted() {
    let mut meter = Meter::new(MeterConfig::default());
    let mut rec = Recorder::default();
    for _ in 0..2 {
        let mut conn = meter.connection(Timestamp(T0));
        conn.client_id("c");
        conn.frame(Direction::Request, Some(0), u64::MAX - 1);
        conn.frame(Direction::Request, Some(0), 5); // overflows within the connection
        conn.finish();
        meter.absorb(&mut conn, &mut rec); // and again in the table
    }
    let t = totals(&meter.drain(Timestamp(T0 + 1000)));
    assert_eq!(
        t.get(&key("c", "client_id", "", "request_bytes")),
        Some(&u64::MAX)
    );
    assert_eq!(meter.stats().overflows, 3);
}

#[test]
fn drain_keeps_future_buckets() {
    let mut meter = Meter::new(MeterConfig::default());
    let mut conn = meter.connection(Timestamp(T0 + 10_000));
    conn.client_id("c");
    conn.frame(Direction::Request, Some(0), 9);
    meter.absorb(&mut conn, &mut NoCounters);
    assert!(meter.drain(Timestamp(T0)).is_empty());
    assert_eq!(meter.drain(Timestamp(T0 + 20_000)).len(), 2);
}

#[test]
fn principal_sources_parse() {
    for (text, want) in [
        ("sasl", Some(PrincipalSource::Sasl)),
        ("mTLS", Some(PrincipalSource::Mtls)),
        ("client.id", Some(PrincipalSource::ClientId)),
        ("client_id", Some(PrincipalSource::ClientId)),
        ("anonymous", Some(PrincipalSource::Anonymous)),
        ("kerberos", None),
    ] {
        assert_eq!(PrincipalSource::parse(text), want, "{text}");
    }
}

#[test]
fn any_interleaving_of_absorbs_gives_the_same_rows() {
    use Ev::*;
    let events = vec![
        Req(18, 11),
        ClientId("c"),
        Resp(18, 13),
        Req(17, 5),
        Auth(Mechanism::ScramSha256, "alice"),
        Req(0, 1000),
        Produce("a", 900, 9),
        Resp(0, 40),
        Req(1, 60),
        Consume("a", 900, 9),
        Resp(1, 1000),
    ];
    let (expected, _, _) = run(MeterConfig::default(), None, &events);
    for every in 1..events.len() {
        let mut meter = Meter::new(MeterConfig::default());
        let mut conn = meter.connection(Timestamp(T0));
        for chunk in events.chunks(every) {
            feed(&mut conn, chunk);
            meter.absorb(&mut conn, &mut NoCounters);
        }
        conn.finish();
        meter.absorb(&mut conn, &mut NoCounters);
        assert_eq!(
            totals(&meter.drain(Timestamp(T0 + 1000))),
            totals(&expected),
            "absorb every {every}"
        );
    }
}

#[test]
fn topic_ids_learned_on_one_connection_name_another() {
    let id = [
        0x01, 0xa2, 0x07, 0x2e, 0x3d, 0xbd, 0x7c, 0x20, 0xbe, 0xd0, 0x83, 0x40, 0x11, 0x3b, 0x7d,
        0xab,
    ];
    let hex = topic_id_hex(id);
    assert_eq!(hex, "01a2072e3dbd7c20bed08340113b7dab");
    let mut meter = Meter::new(MeterConfig::default());
    // Connection A: Metadata names the id.
    let mut a = meter.connection(Timestamp(T0));
    a.topic_id_learned(id, "audit_log");
    a.topic_id_learned(id, "audit_log");
    let learned = a.take_learned_topics();
    assert_eq!(learned, vec![(id, "audit_log".to_string())]);
    assert!(a.take_learned_topics().is_empty());
    assert!(meter.learn_topic(id, "audit_log"));
    assert!(!meter.learn_topic(id, "audit_log"));
    // Connection B: a Fetch v13 record set labelled by the id.
    let mut b = meter.connection(Timestamp(T0));
    b.client_id("c");
    b.frame(Direction::Request, Some(1), 10);
    b.consumed(&set(&hex, 500, 5));
    // An id nobody named, but the host (another worker) knows.
    struct Host;
    impl CounterSink for Host {
        fn add(&mut self, _: &Series<'_>, _: Metric, _: u64) {}
        fn topic_name(&mut self, id: &str) -> Option<String> {
            (id == "ffffffffffffffffffffffffffffffff").then(|| "from-elsewhere".to_string())
        }
    }
    b.consumed(&set("ffffffffffffffffffffffffffffffff", 7, 1));
    b.consumed(&set("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", 3, 1));
    meter.absorb(&mut b, &mut Host);
    let t = totals(&meter.drain(Timestamp(T0 + 1000)));
    assert_eq!(
        t.get(&key("c", "client_id", "audit_log", "consumed_bytes")),
        Some(&500)
    );
    assert_eq!(
        t.get(&key("c", "client_id", "from-elsewhere", "consumed_bytes")),
        Some(&7)
    );
    assert_eq!(
        t.get(&key(
            "c",
            "client_id",
            "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
            "consumed_bytes"
        )),
        Some(&3),
        "unknown ids stay as they are"
    );
}
