//! Native throughput of the Kafka wire decoder (`cargo bench --bench decoder`).
//!
//! Two synthetic streams, fed in 16 KiB chunks as a proxy would deliver them:
//! (a) large Produce v9 requests, each one 64 KiB record batch of 64 records of
//! 1 KiB, with their responses; (b) many small requests: Produce v9 with one
//! 100-byte batch, alternating with Fetch v12 requests and their responses.
//! Requests are pipelined five at a time (the clients' default in-flight window).
//! Prints GB/s of wire bytes and requests/s. A plain harness keeps it to seconds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tally::kafka::{ConnectionDecoder, DecoderConfig, RecordSet, Sink};

const CHUNK: usize = 16 * 1024;

/// Counts what the decoder reports, so none of it is optimised away.
#[derive(Default)]
struct Counter {
    frames: u64,
    record_bytes: u64,
    records: u64,
}

impl Sink for Counter {
    fn frame(
        &mut self,
        _direction: tally::kafka::Direction,
        _api_key: Option<i16>,
        _wire_bytes: u64,
    ) {
        self.frames += 1;
    }
    fn produced(&mut self, set: &RecordSet<'_>) {
        self.record_bytes += set.bytes;
        self.records += set.records;
    }
    fn consumed(&mut self, set: &RecordSet<'_>) {
        self.record_bytes += set.bytes;
        self.records += set.records;
    }
}

/// Big-endian and compact (flexible) encodings, just enough for the streams.
struct Out(Vec<u8>);

impl Out {
    fn put(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn compact_len(&mut self, len: usize) -> &mut Self {
        let mut value = len as u32 + 1;
        while value >= 0x80 {
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
        self
    }
    fn framed(self) -> Vec<u8> {
        let mut frame = (self.0.len() as i32).to_be_bytes().to_vec();
        frame.extend(self.0);
        frame
    }
}

/// A record batch header (61 bytes) announcing `records` records, then `payload` bytes.
fn batch(records: i32, payload: usize) -> Vec<u8> {
    let mut out = Out(Vec::with_capacity(61 + payload));
    out.put(&0i64.to_be_bytes())
        .put(&(49 + payload as i32).to_be_bytes())
        .put(&[0; 4])
        .put(&[2])
        .put(&[0; 4])
        .put(&4i16.to_be_bytes())
        .put(&(records - 1).to_be_bytes())
        .put(&[0; 8 + 8 + 8 + 2 + 4])
        .put(&records.to_be_bytes());
    out.0.resize(61 + payload, 0x5a);
    out.0
}

/// Request header v2 for a flexible version.
fn header(api_key: i16, version: i16, correlation_id: i32) -> Out {
    let mut out = Out(Vec::new());
    out.put(&api_key.to_be_bytes())
        .put(&version.to_be_bytes())
        .put(&correlation_id.to_be_bytes())
        .put(&8i16.to_be_bytes())
        .put(b"bench-01")
        .put(&[0]);
    out
}

fn produce_v9(correlation_id: i32, records: &[u8]) -> Vec<u8> {
    let mut out = header(0, 9, correlation_id);
    out.put(&[0]) // null transactional id
        .put(&(-1i16).to_be_bytes())
        .put(&30_000i32.to_be_bytes())
        .compact_len(1)
        .compact_len(6)
        .put(b"orders")
        .compact_len(1)
        .put(&0i32.to_be_bytes())
        .compact_len(records.len())
        .put(records)
        .put(&[0, 0, 0]);
    out.framed()
}

fn fetch_v12(correlation_id: i32) -> Vec<u8> {
    let mut out = header(1, 12, correlation_id);
    out.put(&(-1i32).to_be_bytes())
        .put(&500i32.to_be_bytes())
        .put(&1i32.to_be_bytes())
        .put(&i32::MAX.to_be_bytes())
        .put(&[0])
        .put(&0i32.to_be_bytes())
        .put(&(-1i32).to_be_bytes())
        .compact_len(1)
        .compact_len(6)
        .put(b"orders")
        .compact_len(1)
        .put(&[0; 4 + 4 + 8 + 4 + 8])
        .put(&(1i32 << 20).to_be_bytes())
        .put(&[0, 0])
        .compact_len(0)
        .compact_len(0)
        .put(&[0]);
    out.framed()
}

fn response(correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Out(correlation_id.to_be_bytes().to_vec());
    out.put(&[0]).put(body);
    out.framed()
}

fn fetch_v12_response(correlation_id: i32, records: &[u8]) -> Vec<u8> {
    let mut body = Out(Vec::new());
    body.put(&[0; 4 + 2 + 4])
        .compact_len(1)
        .compact_len(6)
        .put(b"orders")
        .compact_len(1)
        .put(&[0; 4 + 2 + 8 + 8 + 8])
        .compact_len(0)
        .put(&(-1i32).to_be_bytes())
        .compact_len(records.len())
        .put(records)
        .put(&[0, 0, 0]);
    response(correlation_id, &body.0)
}

/// Requests pipelined together (a client's in-flight window), then their responses.
const PIPELINE: i32 = 5;

/// Rounds of (pipelined requests, their responses), and how many requests.
struct Workload {
    name: &'static str,
    rounds: Vec<(Vec<u8>, Vec<u8>)>,
    count: u64,
}

impl Workload {
    fn new(name: &'static str) -> Self {
        Workload {
            name,
            rounds: Vec::new(),
            count: 0,
        }
    }

    fn add(&mut self, request: Vec<u8>, response: Vec<u8>) {
        if self.count % PIPELINE as u64 == 0 {
            self.rounds.push((Vec::new(), Vec::new()));
        }
        if let Some((requests, responses)) = self.rounds.last_mut() {
            requests.extend(request);
            responses.extend(response);
        }
        self.count += 1;
    }

    fn bytes(&self) -> usize {
        self.rounds.iter().map(|(a, b)| a.len() + b.len()).sum()
    }
}

fn large_produce(count: i32) -> Workload {
    let records = batch(64, 64 * 1024 - 61);
    let mut workload = Workload::new("large Produce (64 KiB sets of 1 KiB records)");
    for id in 0..count {
        workload.add(produce_v9(id, &records), response(id, &[1, 0, 0, 0, 0, 0]));
    }
    workload
}

fn small_requests(count: i32) -> Workload {
    let records = batch(1, 100 - 61);
    let mut workload = Workload::new("small requests (Produce 100 B / Fetch)");
    for id in 0..count {
        if id % 2 == 0 {
            workload.add(produce_v9(id, &records), response(id, &[1, 0, 0, 0, 0, 0]));
        } else {
            workload.add(fetch_v12(id), fetch_v12_response(id, &records));
        }
    }
    workload
}

/// Decodes the workload once (each round's requests, then its responses, in
/// chunks); returns the time.
fn decode(workload: &Workload, counter: &mut Counter) -> Duration {
    let started = Instant::now();
    let mut decoder = ConnectionDecoder::new(DecoderConfig::default());
    for (requests, responses) in &workload.rounds {
        for chunk in requests.chunks(CHUNK) {
            decoder.on_request_bytes(black_box(chunk), counter);
        }
        for chunk in responses.chunks(CHUNK) {
            decoder.on_response_bytes(black_box(chunk), counter);
        }
    }
    assert!(
        !decoder.is_failed_open(),
        "the synthetic stream must decode"
    );
    started.elapsed()
}

fn report(workload: &Workload) {
    let bytes = workload.bytes() as f64;
    let mut counter = Counter::default();
    decode(workload, &mut counter); // warm-up
    let runs = 5;
    let best = (0..runs)
        .map(|_| decode(workload, &mut counter))
        .min()
        .unwrap_or_default()
        .as_secs_f64()
        .max(1e-9);
    println!(
        "{:<48} {:>8.2} GB/s {:>12.0} requests/s  ({} requests, {:.1} MB, best of {runs})",
        workload.name,
        bytes / best / 1e9,
        workload.count as f64 / best,
        workload.count,
        bytes / 1e6,
    );
    assert!(
        counter.records > 0 && counter.frames > 0,
        "records must be counted"
    );
    black_box(counter.frames + counter.record_bytes + counter.records);
}

/// Per-connection memory: what a decoder holds after a workload, and its bound.
fn report_memory(workload: &Workload) {
    let mut decoder = ConnectionDecoder::new(DecoderConfig::default());
    let mut counter = Counter::default();
    for (requests, responses) in &workload.rounds {
        decoder.on_request_bytes(requests, &mut counter);
        decoder.on_response_bytes(responses, &mut counter);
    }
    println!(
        "per-connection memory: {} bytes held after the small-request stream, {} bytes bound \
         (buffers <= {} bytes)",
        decoder.state_bytes(),
        decoder.max_state_bytes(),
        tally::kafka::MAX_BUFFER_BYTES,
    );
}

fn main() {
    report(&large_produce(2_000));
    let small = small_requests(400_000);
    report(&small);
    report_memory(&small);
}
