//! Fuzzes `ConnectionDecoder` with arbitrary bytes split into both directions.
//!
//! The input is a sequence of segments: one control byte (bit 0: direction,
//! bits 1-7: length - 1) followed by that many bytes, handed over as the plugin
//! does (`on_chunk`: what the decoder skips is passed unread, the rest read
//! from the segment). Besides "never panics", it
//! checks the accounting invariant (every byte fed is reported once, in a frame
//! or as unparsed) and the memory bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally::kafka::{ConnectionDecoder, DecoderConfig, Direction, RecordSet, Sink};

#[derive(Default)]
struct Totals {
    reported: [u64; 2],
}

fn index(direction: Direction) -> usize {
    match direction {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

impl Sink for Totals {
    fn frame(&mut self, direction: Direction, _api_key: Option<i16>, wire_bytes: u64) {
        self.reported[index(direction)] += wire_bytes;
    }
    fn unparsed(&mut self, direction: Direction, bytes: u64) {
        self.reported[index(direction)] += bytes;
    }
    // Record counts are what batch headers claim (compressed records can be
    // tiny), but a batch is only counted once its whole 61-byte header is in
    // the set.
    fn produced(&mut self, set: &RecordSet<'_>) {
        assert!(u64::from(set.batches) * 61 <= set.bytes);
    }
    fn consumed(&mut self, set: &RecordSet<'_>) {
        assert!(u64::from(set.batches) * 61 <= set.bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    let config = DecoderConfig {
        max_frame_bytes: 1 << 20,
        max_in_flight: 16,
        max_learned_topics: 8,
    };
    let mut decoder = ConnectionDecoder::new(config);
    let mut sink = Totals::default();
    let mut fed = [0u64; 2];
    let mut rest = data;
    while let Some((&control, tail)) = rest.split_first() {
        let direction = if control & 1 == 0 {
            Direction::Request
        } else {
            Direction::Response
        };
        let len = usize::from(control >> 1) + 1;
        let (segment, tail) = tail.split_at(len.min(tail.len()));
        // As the plugin feeds it: skippable bytes passed unread, the rest read.
        decoder.on_chunk(direction, segment.len(), &mut sink, |offset, len| {
            segment.get(offset..offset + len)
        });
        fed[index(direction)] += segment.len() as u64;
        assert!(decoder.state_bytes() <= decoder.max_state_bytes());
        rest = tail;
    }
    decoder.on_close(&mut sink);
    assert_eq!(sink.reported, fed);
});
