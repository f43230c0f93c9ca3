//! Produce v3–v13, Metadata-learned topic ids, acks=0.

use super::encode::{self, batch, TopicRef};
use super::{assert_clean, req, resp, run, run_chunked, Event, Recorder, Set};
use crate::kafka::{Codec, ConnectionDecoder, DecoderConfig, Direction};

const TOPIC_ID: [u8; 16] = [0x5a, 0x1b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0xff];
const TOPIC_ID_HEX: &str = "5a1b00010203040506070809 0a0b0cff";

fn hex_of_topic_id() -> String {
    TOPIC_ID_HEX.replace(' ', "")
}

/// Two partitions: p0 two gzip batches (3 + 2 records), p1 one zstd batch.
fn two_partitions() -> (Vec<u8>, Vec<u8>) {
    let mut p0 = batch(3, 1, 1024);
    p0.extend(batch(2, 1, 100));
    let p1 = batch(7, 4, 0);
    (p0, p1)
}

#[test]
fn produce_versions_report_each_partition_exactly() {
    let (p0, p1) = two_partitions();
    for version in [3, 4, 5, 6, 7, 8, 9, 10, 11, 12] {
        let partitions = [(0, Some(&p0[..])), (1, Some(&p1[..]))];
        let request =
            encode::produce_request(version, 11, 1, &[(TopicRef::Name("orders"), &partitions)]);
        let conversation = vec![
            req(request.clone()),
            resp(encode::produce_response(version, 11)),
        ];
        let sink = run(&conversation);
        assert_clean(&conversation, &sink);
        assert_eq!(
            sink.produced(),
            vec![
                Set::new("orders", 0, p0.len(), 5, 2, &[Codec::Gzip]),
                Set::new("orders", 1, p1.len(), 7, 1, &[Codec::Zstd]),
            ],
            "Produce v{version}"
        );
        assert_eq!(
            sink.frames(),
            vec![
                (Direction::Request, Some(0), request.len() as u64),
                (
                    Direction::Response,
                    Some(0),
                    encode::produce_response(version, 11).len() as u64
                ),
            ],
            "Produce v{version}"
        );
        assert_eq!(
            sink.events.first(),
            Some(&Event::ClientId("producer-1".into()))
        );
    }
}

#[test]
fn produce_several_topics_and_codecs_in_one_request() {
    let mut mixed = batch(1, 0, 10);
    mixed.extend(batch(1, 2, 10));
    mixed.extend(batch(1, 3, 10));
    let single = batch(4, 0, 64);
    let a = [(2, Some(&mixed[..]))];
    let b = [(0, Some(&single[..])), (1, None)];
    let request = encode::produce_request(
        9,
        1,
        -1,
        &[(TopicRef::Name("a"), &a), (TopicRef::Name("b"), &b)],
    );
    let conversation = vec![req(request)];
    let sink = run(&conversation);
    assert_clean(&conversation, &sink);
    assert_eq!(
        sink.produced(),
        vec![
            Set::new(
                "a",
                2,
                mixed.len(),
                3,
                3,
                &[Codec::None, Codec::Snappy, Codec::Lz4]
            ),
            Set::new("b", 0, single.len(), 4, 1, &[Codec::None]),
        ]
    );
}

#[test]
fn produce_v13_names_topics_learned_from_metadata() {
    let records = batch(2, 0, 50);
    let partitions = [(3, Some(&records[..]))];
    let conversation = vec![
        req(encode::metadata_request(12, 1)),
        resp(encode::metadata_response(
            12,
            1,
            &[(Some("payments"), TOPIC_ID), (None, [1; 16])],
        )),
        req(encode::produce_request(
            13,
            2,
            -1,
            &[(TopicRef::Id(TOPIC_ID), &partitions)],
        )),
        resp(encode::produce_response(13, 2)),
    ];
    let sink = run(&conversation);
    assert_clean(&conversation, &sink);
    assert_eq!(
        sink.produced(),
        vec![Set::new("payments", 3, records.len(), 2, 1, &[Codec::None])]
    );
    // The null-named topic (an unknown id) is not learned.
    let learned: Vec<_> = sink
        .events
        .iter()
        .filter(|e| matches!(e, Event::TopicIdLearned(..)))
        .collect();
    assert_eq!(
        learned,
        vec![&Event::TopicIdLearned(TOPIC_ID, "payments".into())]
    );
}

#[test]
fn topic_ids_learned_on_another_connection_can_be_taught() {
    let records = batch(2, 0, 50);
    let partitions = [(0, Some(&records[..]))];
    let mut decoder = ConnectionDecoder::new(DecoderConfig::default());
    decoder.learn_topic(TOPIC_ID, "payments");
    let mut sink = Recorder::default();
    let request = encode::produce_request(13, 2, -1, &[(TopicRef::Id(TOPIC_ID), &partitions)]);
    decoder.on_request_bytes(&request, &mut sink);
    assert_eq!(sink.produced()[0].topic, "payments");
}

#[test]
fn produce_v13_with_an_unknown_topic_id_reports_its_hex() {
    let records = batch(2, 0, 50);
    let partitions = [(0, Some(&records[..]))];
    let conversation = vec![req(encode::produce_request(
        13,
        2,
        -1,
        &[(TopicRef::Id(TOPIC_ID), &partitions)],
    ))];
    let sink = run(&conversation);
    assert_clean(&conversation, &sink);
    assert_eq!(
        sink.produced(),
        vec![Set::new(
            &hex_of_topic_id(),
            0,
            records.len(),
            2,
            1,
            &[Codec::None]
        )]
    );
}

#[test]
fn metadata_versions_10_to_14_teach_topic_ids() {
    let records = batch(1, 0, 5);
    let partitions = [(0, Some(&records[..]))];
    for version in 10..=14 {
        let conversation = vec![
            req(encode::metadata_request(version, 1)),
            resp(encode::metadata_response(
                version,
                1,
                &[(Some("t"), TOPIC_ID)],
            )),
            req(encode::produce_request(
                13,
                2,
                -1,
                &[(TopicRef::Id(TOPIC_ID), &partitions)],
            )),
        ];
        let sink = run(&conversation);
        assert_clean(&conversation, &sink);
        assert_eq!(sink.produced()[0].topic, "t", "Metadata v{version}");
    }
}

#[test]
fn produce_with_acks_0_expects_no_response() {
    let records = batch(1, 0, 5);
    let partitions = [(0, Some(&records[..]))];
    let conversation = vec![
        req(encode::produce_request(
            9,
            1,
            0,
            &[(TopicRef::Name("fire"), &partitions)],
        )),
        req(encode::produce_request(
            9,
            2,
            1,
            &[(TopicRef::Name("acked"), &partitions)],
        )),
        resp(encode::produce_response(9, 2)),
    ];
    let sink = run(&conversation);
    assert_clean(&conversation, &sink);
    assert_eq!(sink.produced().len(), 2);
}

#[test]
fn undecoded_apis_are_counted_and_matched() {
    let conversation = vec![
        req(encode::api_versions_request(1)),
        resp(encode::api_versions_response(1)),
        req(encode::metadata_request(12, 2)),
        resp(encode::metadata_response(12, 2, &[])),
    ];
    let sink = run(&conversation);
    assert_clean(&conversation, &sink);
    let keys: Vec<_> = sink.frames().iter().map(|f| f.1).collect();
    assert_eq!(keys, vec![Some(18), Some(18), Some(3), Some(3)]);
    // client.id is reported when it changes only.
    let ids: Vec<_> = sink
        .events
        .iter()
        .filter(|e| matches!(e, Event::ClientId(_)))
        .collect();
    assert_eq!(
        ids,
        vec![
            &Event::ClientId("client".into()),
            &Event::ClientId("producer-1".into())
        ]
    );
}

#[test]
fn one_byte_chunks_give_the_same_events() {
    let (p0, p1) = two_partitions();
    let partitions = [(0, Some(&p0[..])), (1, Some(&p1[..]))];
    let conversation = vec![
        req(encode::produce_request(
            9,
            11,
            1,
            &[(TopicRef::Name("orders"), &partitions)],
        )),
        resp(encode::produce_response(9, 11)),
    ];
    assert_eq!(
        run_chunked(&conversation, 1).events,
        run(&conversation).events
    );
}
