//! Framing, fail-open accounting, memory bounds, and chunking independence.

use proptest::prelude::*;

use super::encode::{self, batch, TopicRef};
use super::{feed, req, resp, run, run_chunked, Conversation, Event, Recorder};
use crate::kafka::{ConnectionDecoder, DecoderConfig, Direction};

/// A conversation exercising every decoded API.
pub(super) fn everything() -> Conversation {
    everything_with(&batch(3, 1, 300))
}

/// [`everything`], with `records` as each partition's record set.
pub(super) fn everything_with(records: &[u8]) -> Conversation {
    let partitions = [(0, Some(records)), (1, Some(records))];
    let id = [7; 16];
    vec![
        req(encode::api_versions_request(1)),
        resp(encode::api_versions_response(1)),
        req(encode::sasl_handshake_request(1, 2, "PLAIN")),
        resp(encode::sasl_handshake_response(2, 0)),
        req(encode::sasl_authenticate_request(2, 3, b"\0carol\0pw")),
        resp(encode::sasl_authenticate_response(2, 3, 0, b"")),
        req(encode::metadata_request(12, 4)),
        resp(encode::metadata_response(12, 4, &[(Some("events"), id)])),
        req(encode::produce_request(
            13,
            5,
            -1,
            &[(TopicRef::Id(id), &partitions)],
        )),
        req(encode::produce_request(
            7,
            6,
            1,
            &[(TopicRef::Name("logs"), &partitions)],
        )),
        resp(encode::produce_response(13, 5)),
        resp(encode::produce_response(7, 6)),
        req(encode::fetch_request(
            16,
            7,
            -1,
            &[(TopicRef::Id(id), &[0, 1])],
        )),
        resp(encode::fetch_response(
            16,
            7,
            &[(TopicRef::Id(id), &partitions)],
        )),
        req(encode::fetch_request(
            11,
            8,
            -1,
            &[(TopicRef::Name("logs"), &[0, 1])],
        )),
        resp(encode::fetch_response(
            11,
            8,
            &[(TopicRef::Name("logs"), &partitions)],
        )),
    ]
}

#[test]
fn the_whole_conversation_decodes_cleanly() {
    let conversation = everything();
    let sink = run(&conversation);
    super::assert_clean(&conversation, &sink);
    assert_eq!(sink.produced().len(), 4);
    assert_eq!(sink.consumed().len(), 4);
    assert_eq!(sink.consumed()[0].topic, "events");
}

fn fail_open_case(conversation: &Conversation, config: DecoderConfig) -> (Recorder, bool) {
    let mut decoder = ConnectionDecoder::new(config);
    let mut sink = Recorder::default();
    for (direction, bytes) in conversation {
        feed(&mut decoder, *direction, bytes, &mut sink);
    }
    let failed = decoder.is_failed_open();
    decoder.on_close(&mut sink);
    super::assert_all_accounted(conversation, &sink);
    (sink, failed)
}

#[test]
fn malformed_input_fails_open_and_counts_every_byte() {
    let good = encode::api_versions_request(1);
    let mut oversized = 1_000_001_i32.to_be_bytes().to_vec();
    oversized.extend([0; 64]);
    let cases: Vec<(&str, Conversation)> = vec![
        (
            "negative size",
            vec![
                req(good.clone()),
                req(vec![0xff, 0xff, 0xff, 0xf0, 1, 2, 3]),
                resp(vec![1; 9]),
            ],
        ),
        ("oversized", vec![req(oversized)]),
        (
            "TLS",
            vec![req(vec![
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ])],
        ),
        ("short frame", vec![req(encode::frame(&[0, 1, 0]))]),
        (
            "unmatched response",
            vec![resp(encode::api_versions_response(5))],
        ),
        (
            "wrong correlation",
            vec![req(good.clone()), resp(encode::api_versions_response(2))],
        ),
        (
            "lying array length",
            vec![req(encode::frame(&[
                0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff,
            ]))],
        ),
    ];
    let config = DecoderConfig {
        max_frame_bytes: 1_000_000,
        ..DecoderConfig::default()
    };
    for (name, conversation) in cases {
        let (sink, failed) = fail_open_case(&conversation, config);
        assert!(failed, "{name}");
        assert_eq!(sink.errors().len(), 1, "{name}: {:#?}", sink.events);
    }
}

#[test]
fn failure_mid_frame_counts_the_other_directions_partial_frame() {
    let response = encode::api_versions_response(1);
    let conversation = vec![
        req(encode::api_versions_request(1)),
        resp(response[..6].to_vec()),
        req(vec![0x80, 0, 0, 0]),
        resp(response[6..].to_vec()),
    ];
    let (sink, failed) = fail_open_case(&conversation, DecoderConfig::default());
    assert!(failed);
    assert!(sink
        .events
        .contains(&Event::Unparsed(Direction::Response, response.len() as u64)));
}

#[test]
fn too_many_requests_in_flight_fails_open() {
    let config = DecoderConfig {
        max_in_flight: 3,
        ..DecoderConfig::default()
    };
    let conversation: Conversation = (0..4)
        .map(|i| req(encode::api_versions_request(i)))
        .collect();
    let (sink, failed) = fail_open_case(&conversation, config);
    assert!(failed);
    assert_eq!(sink.errors(), vec!["too many requests in flight"]);
}

#[test]
fn buffers_fit_in_4_kib_and_state_stays_bounded() {
    let decoder = ConnectionDecoder::new(DecoderConfig::default());
    assert!(decoder.state_bytes() <= decoder.max_state_bytes());
    // Many Metadata topics: the learned table stays within its bound.
    let topics: Vec<(Option<&str>, [u8; 16])> = (0..600u16)
        .map(|i| {
            let mut id = [1; 16];
            id[..2].copy_from_slice(&i.to_be_bytes());
            (Some("a-topic-name-of-some-length"), id)
        })
        .collect();
    let conversation = vec![
        req(encode::metadata_request(12, 1)),
        resp(encode::metadata_response(12, 1, &topics)),
    ];
    run(&conversation); // asserts state_bytes <= max_state_bytes
}

fn chunking() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..700, 1..40)
}

/// Joins consecutive messages of one direction, so that chunks can straddle
/// frames as pipelined requests do.
pub(super) fn pipelined(conversation: &Conversation) -> Conversation {
    let mut joined: Conversation = Vec::new();
    for (direction, bytes) in conversation {
        match joined.last_mut() {
            Some((last, buffer)) if last == direction => buffer.extend(bytes),
            _ => joined.push((*direction, bytes.clone())),
        }
    }
    joined
}

/// Feeds the conversation with chunk sizes cycling through `sizes`; a chunk may
/// span frames of one direction but never runs ahead into the other's turn.
fn run_with_sizes(conversation: &Conversation, sizes: &[usize]) -> Recorder {
    let mut decoder = ConnectionDecoder::new(DecoderConfig::default());
    let mut sink = Recorder::default();
    let mut size = sizes.iter().cycle();
    for (direction, bytes) in pipelined(conversation) {
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = (*size.next().unwrap()).min(rest.len());
            feed(&mut decoder, direction, &rest[..n], &mut sink);
            rest = &rest[n..];
        }
    }
    decoder.on_close(&mut sink);
    assert!(decoder.state_bytes() <= decoder.max_state_bytes());
    sink
}

proptest! {
    #[test]
    fn any_chunking_yields_identical_events(sizes in chunking()) {
        let conversation = everything();
        let whole = run(&conversation);
        prop_assert_eq!(run_with_sizes(&conversation, &sizes).events, whole.events);
    }

    #[test]
    fn any_chunking_of_garbage_counts_the_same(bytes in prop::collection::vec(any::<u8>(), 0..600), sizes in chunking()) {
        let conversation = vec![req(bytes.clone()), resp(bytes)];
        let whole = run(&conversation);
        prop_assert_eq!(run_with_sizes(&conversation, &sizes).normalized(), whole.normalized());
        for direction in [Direction::Request, Direction::Response] {
            prop_assert_eq!(whole.accounted(direction), conversation[0].1.len() as u64);
        }
    }

    /// Whole messages at once take the walker's whole-frame fast path; one byte
    /// at a time never does. Valid or corrupted, the events (decode error reasons
    /// included) and the byte accounting must be the same.
    #[test]
    fn the_whole_frame_fast_path_equals_the_resumable_walk(index in any::<prop::sample::Index>(), byte in any::<u8>(), corrupt in any::<bool>()) {
        let mut conversation = everything();
        if corrupt {
            let message = index.index(conversation.len());
            let position = index.index(conversation[message].1.len());
            conversation[message].1[position] = byte;
        }
        let whole = run(&conversation);
        let bytewise = run_chunked(&conversation, 1);
        prop_assert_eq!(whole.normalized(), bytewise.normalized());
    }

    /// A record set read whole, in place, holds what the streaming walk finds.
    #[test]
    fn a_whole_record_set_reads_as_streamed(batches in prop::collection::vec((0usize..200, 0i32..5, 0u8..4, any::<bool>()), 0..5), garbage in prop::collection::vec(any::<u8>(), 0..80), cut in any::<prop::sample::Index>(), chunk in 1usize..70) {
        use super::super::records::RecordWalker;
        let mut set = Vec::new();
        for (payload, records, magic, sane) in batches {
            let mut batch = encode::batch(records.max(1), i16::from(magic), payload);
            if !sane {
                batch[16] = magic; // another magic: bytes only
            }
            set.extend(batch);
        }
        set.extend(garbage);
        set.truncate(cut.index(set.len() + 1));
        let mut streamed = RecordWalker::new(set.len() as u32);
        for piece in set.chunks(chunk) {
            streamed.feed(piece);
        }
        prop_assert_eq!(RecordWalker::whole(&set), streamed.stats());
    }

    #[test]
    fn corrupting_one_byte_never_loses_count(index in any::<prop::sample::Index>(), byte in any::<u8>(), chunk in 1usize..64) {
        let mut conversation = everything();
        let message = index.index(conversation.len());
        let position = index.index(conversation[message].1.len());
        conversation[message].1[position] = byte;
        let sink = run_chunked(&conversation, chunk);
        super::assert_all_accounted(&conversation, &sink);
    }
}

/// Writes the conversations of these tests as fuzz seeds, in the fuzz target's
/// input format (control byte: bit 0 direction, bits 1-7 length - 1):
/// `TALLY_FUZZ_SEEDS=fuzz/corpus/decoder cargo test -p tally write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes files; run by hand to seed the fuzzer"]
fn write_fuzz_seeds() {
    let dir = std::env::var("TALLY_FUZZ_SEEDS").expect("TALLY_FUZZ_SEEDS");
    std::fs::create_dir_all(&dir).unwrap();
    let sasl_v0 = vec![
        req(encode::sasl_handshake_request(0, 1, "SCRAM-SHA-256")),
        resp(encode::sasl_handshake_response(1, 0)),
        req(encode::frame(b"n,,n=user,r=abc")),
        resp(encode::frame(b"r=abc,s=x,i=4096")),
        req(encode::frame(b"c=biws,r=abc,p=x")),
        resp(encode::frame(b"v=x")),
    ];
    for (index, conversation) in [everything(), sasl_v0].iter().enumerate() {
        let mut seed = Vec::new();
        for (direction, bytes) in conversation {
            for piece in bytes.chunks(128) {
                let bit = u8::from(*direction == Direction::Response);
                seed.push(((piece.len() as u8 - 1) << 1) | bit);
                seed.extend_from_slice(piece);
            }
        }
        std::fs::write(format!("{dir}/seed-{index}"), seed).unwrap();
    }
}

#[test]
fn after_failing_open_every_byte_is_unparsed_and_the_error_reported_once() {
    let mut decoder = ConnectionDecoder::new(DecoderConfig::default());
    let mut sink = Recorder::default();
    feed(
        &mut decoder,
        Direction::Request,
        &[0xff, 0xff, 0xff, 0xff],
        &mut sink,
    );
    feed(
        &mut decoder,
        Direction::Request,
        &encode::api_versions_request(1),
        &mut sink,
    );
    feed(
        &mut decoder,
        Direction::Response,
        &encode::api_versions_response(1),
        &mut sink,
    );
    assert!(decoder.is_failed_open());
    assert_eq!(
        sink.events,
        vec![
            Event::DecodeError(Direction::Request, "negative frame size"),
            Event::Unparsed(
                Direction::Request,
                4 + encode::api_versions_request(1).len() as u64
            ),
            Event::Unparsed(
                Direction::Response,
                encode::api_versions_response(1).len() as u64
            ),
        ]
    );
}
