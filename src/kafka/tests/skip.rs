//! Passing skippable bytes unread (`skippable`, `on_skipped_bytes`, `on_chunk`)
//! gives exactly the events and counts of feeding every byte, in any chunking.

use proptest::prelude::*;

use super::encode::{self, batch, TopicRef};
use super::framing::{everything, everything_with, pipelined};
use super::{req, resp, run, Conversation, Event, Recorder};
use crate::kafka::decoder::{FIRST_WINDOW_BYTES, SPARSE_SKIP_BYTES};
use crate::kafka::{ConnectionDecoder, DecoderConfig, Direction};

/// Every decoded API with large batches (64 KiB of 1 KiB records, as in
/// `bench-envoy`'s large scenario), then a follower's fetch, whose response is
/// skipped whole.
fn large_batches() -> Conversation {
    let records = batch(64, 3, 64 * 1024 - 61);
    let partitions = [(0, Some(&records[..])), (1, Some(&records[..]))];
    let mut conversation = everything_with(&records);
    conversation.extend([
        req(encode::fetch_request(
            11,
            9,
            2,
            &[(TopicRef::Name("logs"), &[0, 1])],
        )),
        resp(encode::fetch_response(
            11,
            9,
            &[(TopicRef::Name("logs"), &partitions)],
        )),
    ]);
    conversation
}

/// Feeds the pipelined conversation with piece sizes cycling through `sizes`;
/// before each piece, passes unread up to the next of `skips` bytes of what the
/// decoder says it skips.
fn run_skipping(conversation: &Conversation, sizes: &[usize], skips: &[u64]) -> Recorder {
    run_skipping_counted(conversation, sizes, skips).0
}

/// As [`run_skipping`], also returning the bytes passed unread.
fn run_skipping_counted(
    conversation: &Conversation,
    sizes: &[usize],
    skips: &[u64],
) -> (Recorder, u64) {
    let mut decoder = ConnectionDecoder::new(DecoderConfig::default());
    let mut sink = Recorder::default();
    let mut size = sizes.iter().cycle();
    let mut skip = skips.iter().cycle();
    let mut unread = 0;
    for (direction, bytes) in pipelined(conversation) {
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let passed = decoder
                .skippable(direction)
                .min(*skip.next().unwrap())
                .min(rest.len() as u64);
            decoder.on_skipped_bytes(direction, passed, &mut sink);
            unread += passed;
            rest = &rest[passed as usize..];
            let n = (*size.next().unwrap()).min(rest.len());
            super::feed(&mut decoder, direction, &rest[..n], &mut sink);
            rest = &rest[n..];
        }
    }
    decoder.on_close(&mut sink);
    assert!(decoder.state_bytes() <= decoder.max_state_bytes());
    (sink, unread)
}

/// What `on_chunk` read of each chunk.
#[derive(Debug, Default)]
struct Reads {
    calls: usize,
    bytes: usize,
}

/// Feeds the pipelined conversation through `on_chunk` in chunks of the sizes
/// cycling through `sizes`, reads served from the chunk (checked in bounds and
/// in order).
fn run_chunks(conversation: &Conversation, sizes: &[usize]) -> (Recorder, Reads) {
    let mut decoder = ConnectionDecoder::new(DecoderConfig::default());
    let mut sink = Recorder::default();
    let mut reads = Reads::default();
    let mut size = sizes.iter().cycle();
    for (direction, bytes) in pipelined(conversation) {
        for chunk in chunks(&bytes, &mut size) {
            let mut next = 0;
            decoder.on_chunk(direction, chunk.len(), &mut sink, |offset, len| {
                assert!(offset >= next && offset + len <= chunk.len() && len > 0);
                next = offset + len;
                reads.calls += 1;
                reads.bytes += len;
                Some(chunk[offset..offset + len].to_vec())
            });
        }
    }
    decoder.on_close(&mut sink);
    (sink, reads)
}

fn chunks<'a, 'b>(bytes: &'a [u8], size: &mut impl Iterator<Item = &'b usize>) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = (*size.next().unwrap()).min(rest.len());
        pieces.push(&rest[..n]);
        rest = &rest[n..];
    }
    pieces
}

/// One corrupted byte (or none) in a copy of `conversation`.
fn corrupted(
    mut conversation: Conversation,
    index: prop::sample::Index,
    byte: u8,
    corrupt: bool,
) -> Conversation {
    if corrupt {
        let message = index.index(conversation.len());
        let position = index.index(conversation[message].1.len());
        conversation[message].1[position] = byte;
    }
    conversation
}

#[test]
fn large_batches_decode_cleanly_and_are_mostly_skipped() {
    let conversation = large_batches();
    let whole = run(&conversation);
    super::assert_clean(&conversation, &whole);
    assert_eq!(whole.produced().len(), 4);
    assert_eq!(whole.consumed().len(), 4);
    let total: usize = conversation.iter().map(|(_, b)| b.len()).sum();
    // Chunks as Envoy hands them over (16 KiB socket reads) or larger.
    for chunk in [1000, 16 * 1024, 100_000, usize::MAX] {
        let (sink, reads) = run_chunks(&conversation, &[chunk]);
        assert_eq!(sink.events, whole.events, "chunks of {chunk}");
        // What is read is headers plus at most one first window per payload.
        assert!(
            reads.bytes * 10 < total,
            "chunks of {chunk}: read {} of {total} bytes",
            reads.bytes
        );
    }
}

#[test]
fn everything_skippable_can_be_passed_unread() {
    let conversation = large_batches();
    let total: usize = conversation.iter().map(|(_, b)| b.len()).sum();
    // Fed a byte at a time between skips: the decoder reads only what it needs.
    let (sink, unread) = run_skipping_counted(&conversation, &[1], &[u64::MAX]);
    assert_eq!(sink.events, run(&conversation).events);
    let read = total as u64 - unread;
    assert!(read < 2000, "read {read} of {total} bytes");
}

#[test]
fn many_small_frames_are_read_in_one_window_per_chunk() {
    // The small scenario: Produce requests of one ~100-byte record, pipelined.
    let records = batch(1, 3, 100);
    let partitions = [(0, Some(&records[..]))];
    let produce = |id| encode::produce_request(9, id, 1, &[(TopicRef::Name("small"), &partitions)]);
    let conversation: Conversation = (0..2000).map(|id| req(produce(id))).collect();
    let frame = conversation[0].1.len();
    let chunk = 64 * frame;
    let (sink, reads) = run_chunks(&conversation, &[chunk]);
    assert_eq!(sink.events, run(&conversation).events);
    let chunks = (2000 * frame).div_ceil(chunk);
    // The window grows to the chunk within the first chunks, then stays.
    let warmup = (chunk / FIRST_WINDOW_BYTES).ilog2() as usize + 1;
    assert!(
        reads.calls <= chunks + warmup,
        "{} reads for {chunks} chunks",
        reads.calls
    );
}

#[test]
fn the_window_shrinks_after_a_long_skip() {
    let small = encode::api_versions_request(1);
    let records = batch(64, 0, 2 * SPARSE_SKIP_BYTES);
    let partitions = [(0, Some(&records[..]))];
    let large = encode::produce_request(9, 2, 1, &[(TopicRef::Name("big"), &partitions)]);
    let mut stream: Vec<u8> = std::iter::repeat_n(small, 200).flatten().collect();
    let small_bytes = stream.len();
    stream.extend(&large);
    let conversation = vec![req(stream.clone())];
    let mut reads = Vec::new();
    let mut decoder = ConnectionDecoder::new(DecoderConfig::default());
    let mut sink = Recorder::default();
    decoder.on_chunk(
        Direction::Request,
        stream.len(),
        &mut sink,
        |offset, len| {
            reads.push((offset, len));
            Some(&stream[offset..offset + len])
        },
    );
    decoder.on_close(&mut sink);
    assert_eq!(sink.events, run(&conversation).events);
    // Small frames: growing windows. The large frame: the payload is skipped.
    let read: usize = reads.iter().map(|(_, len)| len).sum();
    assert!(read < small_bytes + large.len() / 2, "{reads:?}");
    assert!(reads.len() <= 8, "{reads:?}");
}

#[test]
fn passing_bytes_the_decoder_reads_fails_open_and_counts_them() {
    let conversation = everything();
    let mut decoder = ConnectionDecoder::new(DecoderConfig::default());
    let mut sink = Recorder::default();
    let (direction, first) = &conversation[0];
    assert_eq!(decoder.skippable(*direction), 0);
    decoder.on_skipped_bytes(*direction, 3, &mut sink);
    assert!(decoder.is_failed_open());
    assert_eq!(decoder.skippable(*direction), u64::MAX);
    super::feed(&mut decoder, *direction, &first[3..], &mut sink);
    decoder.on_close(&mut sink);
    assert_eq!(
        sink.events,
        vec![
            Event::DecodeError(
                Direction::Request,
                "bytes passed unread where the decoder reads them"
            ),
            Event::Unparsed(Direction::Request, first.len() as u64),
        ]
    );
}

#[test]
fn unreadable_bytes_are_counted_and_fail_open_when_needed() {
    let conversation = large_batches();
    let (direction, first) = &conversation[0];
    let mut decoder = ConnectionDecoder::new(DecoderConfig::default());
    let mut sink = Recorder::default();
    decoder.on_chunk(*direction, first.len(), &mut sink, |_, _| None::<Vec<u8>>);
    decoder.on_close(&mut sink);
    assert!(decoder.is_failed_open());
    assert_eq!(sink.accounted(*direction), first.len() as u64);
    assert_eq!(sink.errors().len(), 1);
}

proptest! {
    /// Any chunking, any amount passed unread (up to what is skippable): the
    /// same events, in the same order, as feeding every byte at once.
    #[test]
    fn skipping_yields_identical_events(sizes in prop::collection::vec(1usize..3000, 1..40), skips in prop::collection::vec(0u64..70_000, 1..40), large in any::<bool>()) {
        let conversation = if large { large_batches() } else { everything() };
        let whole = run(&conversation);
        prop_assert_eq!(run_skipping(&conversation, &sizes, &skips).events, whole.events);
    }

    #[test]
    fn on_chunk_yields_identical_events(sizes in prop::collection::vec(1usize..40_000, 1..40), large in any::<bool>()) {
        let conversation = if large { large_batches() } else { everything() };
        let whole = run(&conversation);
        prop_assert_eq!(run_chunks(&conversation, &sizes).0.events, whole.events);
    }

    /// Valid or corrupted, skipping gives the same decoded events (decode error
    /// reasons included) and byte counts as feeding every byte.
    #[test]
    fn skipping_corrupted_traffic_counts_the_same(index in any::<prop::sample::Index>(), byte in any::<u8>(), corrupt in any::<bool>(), large in any::<bool>(), sizes in prop::collection::vec(1usize..3000, 1..10), skips in prop::collection::vec(0u64..70_000, 1..10)) {
        let conversation = if large { large_batches() } else { everything() };
        let conversation = corrupted(conversation, index, byte, corrupt);
        let whole = run(&conversation);
        prop_assert_eq!(run_skipping(&conversation, &sizes, &skips).normalized(), whole.normalized());
        prop_assert_eq!(run_chunks(&conversation, &sizes).0.normalized(), whole.normalized());
        super::assert_all_accounted(&conversation, &whole);
    }
}
