//! Fetch v4–v18: consumers counted, follower replicas not, truncated batches.

use super::encode::{self, batch, TopicRef};
use super::{assert_clean, req, resp, run, Set};
use crate::kafka::Codec;

const TOPIC_ID: [u8; 16] = [0xc0, 0xff, 0xee, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn records() -> Vec<u8> {
    let mut records = batch(10, 3, 2000);
    records.extend(batch(5, 3, 700));
    records
}

fn fetch(version: i16, replica_id: i32, records: &[u8]) -> Vec<Set> {
    let topic = if version >= 13 {
        TopicRef::Id(TOPIC_ID)
    } else {
        TopicRef::Name("clicks")
    };
    let partitions = [(0, Some(records)), (1, Some(&[][..])), (2, None)];
    let conversation = vec![
        req(encode::metadata_request(12, 1)),
        resp(encode::metadata_response(
            12,
            1,
            &[(Some("clicks"), TOPIC_ID)],
        )),
        req(encode::fetch_request(
            version,
            2,
            replica_id,
            &[(topic, &[0, 1, 2])],
        )),
        resp(encode::fetch_response(version, 2, &[(topic, &partitions)])),
    ];
    let sink = run(&conversation);
    assert_clean(&conversation, &sink);
    sink.consumed()
}

#[test]
fn consumer_fetch_reports_every_version() {
    let records = records();
    for version in 4..=18 {
        assert_eq!(
            fetch(version, -1, &records),
            vec![Set::new("clicks", 0, records.len(), 15, 2, &[Codec::Lz4])],
            "Fetch v{version}"
        );
    }
}

#[test]
fn replica_fetch_is_not_consumption() {
    let records = records();
    for version in 4..=18 {
        assert_eq!(fetch(version, 3, &records), vec![], "Fetch v{version}");
    }
}

#[test]
fn truncated_last_batch_counts_bytes_not_records() {
    let mut records = records();
    let whole = records.len();
    let partial = batch(99, 3, 4000);
    records.extend(&partial[..1500]);
    for version in [4, 11, 12, 13, 16] {
        assert_eq!(
            fetch(version, -1, &records),
            vec![Set::new("clicks", 0, whole + 1500, 15, 2, &[Codec::Lz4])],
            "Fetch v{version}"
        );
    }
    // Cut inside the 12-byte length prefix, and inside the 61-byte header.
    for cut in [5, 30] {
        let mut records = batch(1, 0, 0);
        records.extend(&partial[..cut]);
        assert_eq!(fetch(12, -1, &records)[0].records, 1);
    }
}

#[test]
fn legacy_message_sets_count_bytes_only() {
    // A magic-1 message: offset, size, crc, magic 1, attributes, timestamp, key, value.
    let mut legacy = encode::W::new(false);
    legacy
        .i64(0)
        .i32(22)
        .i32(0)
        .i8(1)
        .i8(0)
        .i64(0)
        .i32(-1)
        .i32(0);
    assert_eq!(
        fetch(4, -1, &legacy.buf),
        vec![Set::new("clicks", 0, legacy.buf.len(), 0, 0, &[])]
    );
}

#[test]
fn fetch_v13_with_an_unlearned_topic_id_reports_its_hex() {
    let records = records();
    let partitions = [(4, Some(&records[..]))];
    let conversation = vec![
        req(encode::fetch_request(
            13,
            1,
            -1,
            &[(TopicRef::Id(TOPIC_ID), &[4])],
        )),
        resp(encode::fetch_response(
            13,
            1,
            &[(TopicRef::Id(TOPIC_ID), &partitions)],
        )),
    ];
    let sink = run(&conversation);
    assert_clean(&conversation, &sink);
    assert_eq!(
        sink.consumed(),
        vec![Set::new(
            "c0ffee00000000000000000000000001",
            4,
            records.len(),
            15,
            2,
            &[Codec::Lz4]
        )]
    );
}
