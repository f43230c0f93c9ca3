//! Real client traffic: librdkafka (confluent-kafka) and kafka-python producing
//! then consuming through a recording relay in front of a tansu broker.
//!
//! Each `data/*.kafka` file is one connection: segments of `[direction u8 (0
//! request, 1 response)][length u32 BE][bytes]` in the order the relay saw them.
//! The librdkafka run produced 300 records of 100 bytes with lz4 to `orders`; the
//! kafka-python run 200 records with gzip to `clicks`; each consumed them back.
//! The `sasl-*` recordings add real SASL logins (see the test that reads them).

use std::collections::BTreeMap;

use super::{Event, Recorder};
use crate::kafka::{ConnectionDecoder, DecoderConfig, Direction, Mechanism};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/kafka/tests/data");

/// Replays one recorded connection, its decoder taught `known` topic ids first;
/// returns the events and the bytes per direction.
fn replay(log: &[u8], known: &[([u8; 16], String)]) -> (Recorder, [u64; 2]) {
    replay_with(log, known, false)
}

/// As [`replay`]; with `windows`, each segment goes through `on_chunk` as the
/// plugin feeds it (skippable bytes passed unread, the rest read in windows).
fn replay_with(log: &[u8], known: &[([u8; 16], String)], windows: bool) -> (Recorder, [u64; 2]) {
    let mut decoder = ConnectionDecoder::new(DecoderConfig::default());
    for (id, name) in known {
        decoder.learn_topic(*id, name);
    }
    let mut sink = Recorder::default();
    let mut fed = [0u64; 2];
    let mut rest = log;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let bytes = &rest[5..5 + len];
        let direction = if rest[0] == 0 {
            Direction::Request
        } else {
            Direction::Response
        };
        if windows {
            decoder.on_chunk(direction, len, &mut sink, |offset, len| {
                Some(&bytes[offset..offset + len])
            });
        } else {
            super::feed(&mut decoder, direction, bytes, &mut sink);
        }
        fed[usize::from(rest[0] != 0)] += len as u64;
        rest = &rest[5 + len..];
    }
    decoder.on_close(&mut sink);
    (sink, fed)
}

/// Per client library: topic → (produced bytes, records, consumed bytes, records).
type Totals = BTreeMap<String, (u64, u64, u64, u64)>;

fn recordings(library: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(DATA)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(library)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no recordings for {library}");
    files
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect()
}

/// Topic ids the Metadata responses of all the library's connections named.
fn learned_ids(library: &str) -> Vec<([u8; 16], String)> {
    recordings(library)
        .iter()
        .flat_map(|log| replay(log, &[]).0.events)
        .filter_map(|event| match event {
            Event::TopicIdLearned(id, name) => Some((id, name)),
            _ => None,
        })
        .collect()
}

/// Replays every connection of a library's run, each decoder taught `known`.
fn recorded(library: &str, known: &[([u8; 16], String)]) -> Totals {
    let mut totals = Totals::new();
    for (index, log) in recordings(library).iter().enumerate() {
        let (sink, fed) = replay(log, known);
        let path = format!("{library} connection {index}");
        assert_eq!(sink.errors(), Vec::<&str>::new(), "{path}");
        assert_eq!(sink.accounted(Direction::Request), fed[0], "{path}");
        assert_eq!(sink.accounted(Direction::Response), fed[1], "{path}");
        for set in sink.produced() {
            let entry = totals.entry(set.topic).or_default();
            entry.0 += set.bytes;
            entry.1 += set.records;
        }
        for set in sink.consumed() {
            let entry = totals.entry(set.topic).or_default();
            entry.2 += set.bytes;
            entry.3 += set.records;
        }
    }
    totals
}

#[test]
fn every_recording_read_in_windows_decodes_the_same() {
    let mut files: Vec<_> = std::fs::read_dir(DATA)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "kafka"))
        .collect();
    files.sort();
    assert!(files.len() > 8, "{files:?}");
    for path in files {
        let log = std::fs::read(&path).unwrap();
        let (fed, fed_bytes) = replay_with(&log, &[], false);
        let (windowed, windowed_bytes) = replay_with(&log, &[], true);
        assert_eq!(windowed.events, fed.events, "{path:?}");
        assert_eq!(windowed_bytes, fed_bytes, "{path:?}");
    }
}

#[test]
fn librdkafka_traffic_decodes_exactly() {
    let known = learned_ids("confluent");
    assert!(known.iter().any(|(_, name)| name == "orders"), "{known:?}");
    let totals = recorded("confluent", &known);
    let (produced_bytes, produced, consumed_bytes, consumed) = totals["orders"];
    assert_eq!((produced, consumed), (300, 300), "{totals:?}");
    assert_eq!(produced_bytes, consumed_bytes, "{totals:?}");
}

#[test]
fn librdkafka_fetches_by_topic_id_learned_on_another_connection() {
    // librdkafka sends Metadata on its bootstrap connection and Fetch v13+
    // (topic ids only) on the broker connection: alone, that connection can
    // only name the topic by its id.
    let totals = recorded("confluent", &[]);
    let hex: Vec<_> = totals.keys().filter(|topic| topic.len() == 32).collect();
    assert_eq!(hex.len(), 1, "{totals:?}");
    assert_eq!(totals[hex[0]].3, 300);
}

#[test]
fn kafka_python_traffic_decodes_exactly() {
    let totals = recorded("kafka-python", &[]);
    let (produced_bytes, produced, consumed_bytes, consumed) = totals["clicks"];
    assert_eq!((produced, consumed), (200, 200), "{totals:?}");
    assert_eq!(produced_bytes, consumed_bytes, "{totals:?}");
}

/// The SASL recordings (`data/sasl-<library>-<mechanism>-<user>-<n>.kafka`): the
/// same clients through a SASL-answering front (host-tests'
/// `clients/sasl_front.py`, real server-side PLAIN and SCRAM) in front of tansu,
/// each producing then consuming 5 records; and one librdkafka PLAIN login with a
/// wrong password.
#[test]
fn real_sasl_logins_are_attributed_after_the_brokers_success() {
    let cases = [
        ("sasl-confluent-plain-alice", Mechanism::Plain, "alice"),
        (
            "sasl-confluent-scram-sha-256-bob",
            Mechanism::ScramSha256,
            "bob",
        ),
        ("sasl-kafka-python-plain-bob", Mechanism::Plain, "bob"),
        (
            "sasl-kafka-python-scram-sha-512-alice",
            Mechanism::ScramSha512,
            "alice",
        ),
    ];
    for (prefix, mechanism, user) in cases {
        let (mut produced, mut consumed) = (0, 0);
        for (index, log) in recordings(prefix).iter().enumerate() {
            let (sink, fed) = replay(log, &[]);
            let path = format!("{prefix} connection {index}");
            assert_eq!(sink.errors(), Vec::<&str>::new(), "{path}");
            assert_eq!(sink.accounted(Direction::Request), fed[0], "{path}");
            assert_eq!(sink.accounted(Direction::Response), fed[1], "{path}");
            assert_eq!(
                sink.auth(),
                vec![Event::Authenticated(mechanism, user.into())],
                "{path}"
            );
            produced += sink.produced().iter().map(|set| set.records).sum::<u64>();
            consumed += sink.consumed().iter().map(|set| set.records).sum::<u64>();
        }
        assert_eq!(produced, 5, "{prefix}");
        // Runs of one library share a topic: later runs consume earlier records too.
        assert!(consumed >= 5, "{prefix}");
    }
}

#[test]
fn a_real_failed_login_is_not_attributed() {
    let log = &recordings("sasl-confluent-plain-wrong-password")[0];
    let (sink, _) = replay(log, &[]);
    assert_eq!(sink.errors(), Vec::<&str>::new());
    assert_eq!(
        sink.auth(),
        vec![Event::AuthenticationFailed(Mechanism::Plain)]
    );
}
