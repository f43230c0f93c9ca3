//! The per-connection decoder: framing, request/response matching, fail-open.
//!
//! # State machine
//!
//! Each direction is a `Stream` that cycles through
//!
//! ```text
//!  Size (4 bytes) ─► Header (8 bytes request / 4 bytes response) ─► Walk ─► Skip ─► Size …
//!        └──────────► RawToken (a SASL token after SaslHandshake v0) ───────────────┘
//! ```
//!
//! * `Header` reads api_key, api_version and correlation_id of a request, or the
//!   correlation_id of a response, which must be the oldest request in flight
//!   (Kafka answers in order on a connection; Produce with `acks=0` is never
//!   answered and is not queued).
//! * `Walk` runs the schema `Walker` over the header's tail (client.id, tagged
//!   fields) and the body of the APIs tally decodes; `Skip` steps over the rest of
//!   the frame by count. Frames of other APIs are only counted.
//!
//! Both directions share the in-flight FIFO, the learned topic ids and the SASL
//! state of the connection.
//!
//! # Bytes passed unread
//!
//! What a direction steps over by count — `Skip`, and inside `Walk` the
//! walker's skipped fields and record batch payloads — need not be copied to
//! the decoder at all: [`ConnectionDecoder::skippable`] says how many of the
//! next bytes it will not look at, and [`ConnectionDecoder::on_skipped_bytes`]
//! accounts for them without their content, through the same steps as feeding
//! them (frame sizes, record set sizes and every event are the same; the
//! property tests compare the two). A host that copies bytes on demand (the
//! proxy-wasm plugin) uses [`ConnectionDecoder::on_chunk`], which reads only
//! what the decoder needs, in windows (see there), and passes the rest unread.
//! Passing more than is skippable fails the connection open (the decoder
//! would have lost its place).
//!
//! # What is buffered
//!
//! Only what a header needs, at most [`MAX_BUFFER_BYTES`] (< 4 KiB) per
//! connection whatever the input: the size prefix and fixed header (8 bytes), one
//! integer being read (16), one short string being read (topic name, client.id,
//! SASL mechanism: 255), the current topic name per direction (255), the last
//! client.id (255), the first 61 bytes of the record batch being walked, and for
//! SASL a bounded, secret-free prefix of the client's first message (2 KiB) and
//! the candidate principal (255). Record payloads and every field tally does not
//! use are skipped by count. Bookkeeping besides the buffers is bounded too: a
//! stack of at most 8 struct levels, the in-flight FIFO
//! ([`DecoderConfig::max_in_flight`] entries of 12 bytes) and the learned topic
//! ids ([`DecoderConfig::max_learned_topics`]); see
//! [`ConnectionDecoder::max_state_bytes`].
//!
//! # Fail-open
//!
//! A negative size, a frame over [`DecoderConfig::max_frame_bytes`], more than
//! [`DecoderConfig::max_in_flight`] requests waiting for a response, or any decode
//! error switches the **whole connection** (both directions: their state depends
//! on each other, e.g. responses are decoded by what was requested) to raw
//! counting. The sink gets `decode_error` once, then every byte not already
//! reported in a complete frame — the partial frames of both directions and all
//! later bytes — through `unparsed`. Buffers are released then. A frame still
//! incomplete when the connection closes is reported as `unparsed` by
//! [`ConnectionDecoder::on_close`] (without a decode error). So for each
//! direction the `frame` bytes plus the `unparsed` bytes equal the bytes fed
//! (read or passed unread).
//!
//! # Reporting
//!
//! * `frame` for each complete frame with the request's api key (responses carry
//!   their request's); raw SASL tokens are frames with api key `None`.
//! * `client_id` when a request's client.id differs from the previous request's
//!   on this connection (clients send the same one on every request).
//! * `produced` / `consumed` per partition with a non-empty record set; Fetch
//!   responses to follower replicas (replica id >= 0) are not reported. Produce
//!   is counted as the client sent it, whether or not the broker then accepted
//!   it (the Produce response is not decoded).
//! * `topic_id_learned` when a Metadata response names a topic id new to the
//!   connection.
//! * `authenticated` / `authentication_failed` when the broker answers SASL.

use std::collections::VecDeque;

use super::records::{RecordStats, BATCH_HEADER_BYTES};
use super::sasl::{Sasl, MAX_EXTRACT_BYTES, MAX_PRINCIPAL_BYTES};
use super::schema::{self, api, Decoded, EndAction, Role};
use super::topics::{TopicId, TopicTable};
use super::walker::{Reason, Visitor, Walker, MAX_CAPTURE};
use super::{Direction, RecordSet, Sink};

/// Limits of one connection's decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Largest frame (size prefix excluded) decoded; larger ones fail open.
    /// Default 100 MiB, the broker's default `socket.request.max.bytes`.
    pub max_frame_bytes: u32,
    /// Most requests waiting for a response; more fail open. Default 256
    /// (clients default to 5 in flight per connection).
    pub max_in_flight: usize,
    /// Most topic ids remembered from Metadata responses; the oldest is replaced
    /// when full. Default 128 (each entry costs at most ~290 bytes).
    pub max_learned_topics: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            max_frame_bytes: 100 * 1024 * 1024,
            max_in_flight: 256,
            max_learned_topics: 128,
        }
    }
}

/// A request waiting for its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    correlation_id: i32,
    api_key: i16,
    api_version: i16,
    /// A Fetch from a follower broker: its response is not consumption.
    replica_fetch: bool,
}

/// Connection state both directions share.
#[derive(Debug, Default)]
struct Shared {
    in_flight: VecDeque<InFlight>,
    topics: TopicTable,
    sasl: Sasl,
    last_client_id: Option<String>,
    learned_topics_capacity: usize,
}

/// Where a direction is in its current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Header,
    Walk,
    Skip,
    RawToken,
}

/// What tally learned of the frame being decoded.
#[derive(Debug)]
struct FrameInfo {
    api_key: Option<i16>,
    correlation_id: i32,
    api_version: i16,
    acks: i16,
    replica_id: i64,
    error_code: i64,
    partition: i32,
    /// The current topic's name (or the hex of an unknown id); at most
    /// [`MAX_CAPTURE`] bytes, allocated once.
    topic: String,
    /// The current topic was null or unreadable (Metadata only).
    topic_unnamed: bool,
    learn_id: Option<TopicId>,
}

impl FrameInfo {
    fn new() -> Self {
        FrameInfo {
            api_key: None,
            correlation_id: 0,
            api_version: 0,
            acks: -1,
            replica_id: -1,
            error_code: 0,
            partition: 0,
            topic: String::new(),
            topic_unnamed: false,
            learn_id: None,
        }
    }

    fn reset(&mut self, api_key: Option<i16>, api_version: i16) {
        self.api_key = api_key;
        self.api_version = api_version;
        self.acks = -1;
        self.replica_id = -1;
        self.error_code = 0;
        self.partition = 0;
        self.topic.clear();
        self.topic_unnamed = false;
        self.learn_id = None;
    }
}

/// One direction of the connection.
#[derive(Debug)]
struct Stream {
    direction: Direction,
    state: State,
    /// The size prefix or header being accumulated.
    fixed: [u8; 8],
    fixed_len: usize,
    /// Body bytes of the current frame not yet consumed.
    frame_left: u32,
    /// Bytes of the current frame consumed so far (size prefix included).
    frame_bytes: u64,
    frame: FrameInfo,
    walker: Walker,
    /// How many bytes [`ConnectionDecoder::on_chunk`] reads next when it must
    /// read: doubles with each read, back to [`FIRST_WINDOW_BYTES`] after a
    /// skip of at least [`SPARSE_SKIP_BYTES`].
    window: usize,
}

/// Bytes of the request header's fixed part: api_key, api_version, correlation_id.
const REQUEST_HEADER_FIXED: usize = 8;
/// Bytes of the response header's fixed part: correlation_id.
const RESPONSE_HEADER_FIXED: usize = 4;
const SIZE_PREFIX: usize = 4;
/// A TLS record header's first bytes (handshake, version 3.x): read as a Kafka
/// size, ~369 MB, so TLS traffic fails open; this names the likely cause.
const TLS_HANDSHAKE_RECORD: [u8; 2] = [0x16, 0x03];

/// The first read of [`ConnectionDecoder::on_chunk`] after a long skip: enough
/// for the headers between two record batches' payloads.
pub const FIRST_WINDOW_BYTES: usize = 1024;
/// A skip this long makes `on_chunk` read small windows again: the traffic has
/// payloads worth a read of their own (a host call costs about as much as
/// copying several KiB).
pub const SPARSE_SKIP_BYTES: usize = 16 * 1024;

/// A decode failure: the reason, and the bytes of the chunk not yet accounted for.
type Failure = (Reason, u64);

impl Stream {
    fn new(direction: Direction) -> Self {
        Stream {
            direction,
            state: State::Size,
            fixed: [0; 8],
            fixed_len: 0,
            frame_left: 0,
            frame_bytes: 0,
            frame: FrameInfo::new(),
            walker: Walker::default(),
            window: FIRST_WINDOW_BYTES,
        }
    }

    fn header_len(&self) -> usize {
        match self.direction {
            Direction::Request => REQUEST_HEADER_FIXED,
            Direction::Response => RESPONSE_HEADER_FIXED,
        }
    }

    /// Decodes a chunk; on failure, returns the reason and the unaccounted bytes.
    fn feed(
        &mut self,
        data: &[u8],
        shared: &mut Shared,
        config: &DecoderConfig,
        sink: &mut impl Sink,
    ) -> Result<(), Failure> {
        let mut rest = data;
        while !rest.is_empty() {
            let state_before = self.state;
            let taken = self
                .step(rest, shared, config, sink)
                .map_err(|reason| (reason, rest.len() as u64))?;
            if taken == 0 && self.state == state_before && self.frame_left > 0 {
                // Cannot happen by construction; failing open beats spinning.
                return Err(("decoder made no progress", rest.len() as u64));
            }
            self.frame_bytes += taken as u64;
            rest = rest.get(taken..).unwrap_or_default();
            if self.state != State::Size && self.frame_left == 0 {
                self.complete_frame(shared, config, sink)
                    .map_err(|reason| (reason, rest.len() as u64))?;
            }
        }
        Ok(())
    }

    /// Bytes from here on this direction steps over without looking at them:
    /// the rest of a frame not decoded, or what the walker skips (an unused
    /// field, a record batch's payload). Zero when the next byte is read.
    fn skippable(&self) -> u32 {
        match self.state {
            State::Skip => self.frame_left,
            State::Walk => self.walker.skippable().min(self.frame_left),
            State::Size | State::Header | State::RawToken => 0,
        }
    }

    /// Accounts for `n` bytes (at most [`skippable`](Self::skippable)) passed
    /// without their content, exactly as [`feed`](Self::feed) would.
    fn pass(
        &mut self,
        n: u32,
        shared: &mut Shared,
        config: &DecoderConfig,
        sink: &mut impl Sink,
    ) -> Result<(), Failure> {
        if n == 0 {
            return Ok(());
        }
        if self.state == State::Walk {
            self.with_walker(shared, sink, |walker, semantics| {
                walker.skip_unread(n, semantics)
            })
            .map_err(|reason| (reason, u64::from(n)))?;
        }
        self.skip(n as usize);
        self.frame_bytes += u64::from(n);
        if self.frame_left == 0 {
            self.complete_frame(shared, config, sink)
                .map_err(|reason| (reason, 0))?;
        }
        Ok(())
    }

    /// One step of the state machine; returns the bytes consumed (zero only when
    /// the state changed without needing input).
    fn step(
        &mut self,
        rest: &[u8],
        shared: &mut Shared,
        config: &DecoderConfig,
        sink: &mut impl Sink,
    ) -> Result<usize, Reason> {
        let in_frame = rest
            .get(..rest.len().min(self.frame_left as usize))
            .unwrap_or_default();
        match self.state {
            State::Size => self.read_size(rest, shared, config),
            State::Header => self.read_header(in_frame, shared),
            State::Walk => self.walk(in_frame, shared, sink),
            State::Skip => Ok(self.skip(in_frame.len())),
            State::RawToken => {
                match self.direction {
                    Direction::Request => shared.sasl.client_message_piece(in_frame),
                    Direction::Response => shared.sasl.answer_piece(in_frame),
                }
                Ok(self.skip(in_frame.len()))
            }
        }
    }

    fn skip(&mut self, n: usize) -> usize {
        self.frame_left -= u32::try_from(n).unwrap_or(u32::MAX).min(self.frame_left);
        n
    }

    /// Copies up to `want` bytes of `rest` into `fixed`; true once complete.
    fn accumulate(&mut self, rest: &[u8], want: usize) -> (usize, bool) {
        let take = want.saturating_sub(self.fixed_len).min(rest.len());
        if let (Some(dst), Some(src)) = (
            self.fixed.get_mut(self.fixed_len..self.fixed_len + take),
            rest.get(..take),
        ) {
            dst.copy_from_slice(src);
        }
        self.fixed_len += take;
        (take, self.fixed_len == want)
    }

    fn read_size(
        &mut self,
        rest: &[u8],
        shared: &mut Shared,
        config: &DecoderConfig,
    ) -> Result<usize, Reason> {
        let (taken, complete) = self.accumulate(rest, SIZE_PREFIX);
        if !complete {
            return Ok(taken);
        }
        self.fixed_len = 0;
        let size = i32::from_be_bytes([self.fixed[0], self.fixed[1], self.fixed[2], self.fixed[3]]);
        let size = u32::try_from(size).map_err(|_| "negative frame size")?;
        if size > config.max_frame_bytes {
            return Err(if self.fixed.starts_with(&TLS_HANDSHAKE_RECORD) {
                "TLS handshake: terminate TLS before the filter to meter this connection"
            } else {
                "frame larger than max_frame_bytes"
            });
        }
        self.frame_left = size;
        self.frame.reset(None, 0);
        if self.take_raw_token(shared) {
            self.state = State::RawToken;
        } else if (size as usize) < self.header_len() {
            return Err("frame shorter than its header");
        } else {
            self.state = State::Header;
        }
        Ok(taken)
    }

    /// Whether the frame starting now is a raw SASL token (after SaslHandshake v0).
    fn take_raw_token(&mut self, shared: &mut Shared) -> bool {
        let raw = &mut shared.sasl.raw;
        match self.direction {
            Direction::Request if raw.requests > 0 => {
                raw.requests -= 1;
                shared.sasl.client_message_start();
                true
            }
            Direction::Response if raw.responses > 0 => {
                raw.responses -= 1;
                shared.sasl.answer_start();
                true
            }
            _ => false,
        }
    }

    fn read_header(&mut self, in_frame: &[u8], shared: &mut Shared) -> Result<usize, Reason> {
        let (taken, complete) = self.accumulate(in_frame, self.header_len());
        self.skip(taken);
        if complete {
            self.fixed_len = 0;
            match self.direction {
                Direction::Request => self.begin_request(),
                Direction::Response => self.begin_response(shared)?,
            }
            // The walk starts with the next byte of the frame (or at its end,
            // in `complete_frame`): starting it here on no input would only cost
            // the walker's whole-frame fast path.
        }
        Ok(taken)
    }

    fn begin_request(&mut self) {
        let [k0, k1, v0, v1, c0, c1, c2, c3] = self.fixed;
        let api_key = i16::from_be_bytes([k0, k1]);
        let api_version = i16::from_be_bytes([v0, v1]);
        self.frame.reset(Some(api_key), api_version);
        self.frame.correlation_id = i32::from_be_bytes([c0, c1, c2, c3]);
        let body = schema::decoded(api_key, api_version)
            .and_then(|d| d.request.map(|body| (body, d.flexible)));
        let tail = schema::request_header_has_client_id(api_key, api_version)
            .then_some(&schema::REQUEST_HEADER_TAIL);
        let flexible = body.is_some_and(|(_, flexible)| flexible);
        self.start_walk(api_version, flexible, body.map(|(body, _)| body), tail);
    }

    fn begin_response(&mut self, shared: &mut Shared) -> Result<(), Reason> {
        let [c0, c1, c2, c3, ..] = self.fixed;
        let correlation_id = i32::from_be_bytes([c0, c1, c2, c3]);
        let request = shared
            .in_flight
            .pop_front()
            .ok_or("response without a request in flight")?;
        if request.correlation_id != correlation_id {
            return Err("response correlation id does not match the oldest request");
        }
        self.frame.reset(Some(request.api_key), request.api_version);
        let body = schema::decoded(request.api_key, request.api_version)
            .filter(|_| !request.replica_fetch)
            .and_then(|d: Decoded| d.response.map(|body| (body, d.flexible)));
        match body {
            Some((body, flexible)) => {
                let tail = flexible.then_some(&schema::RESPONSE_HEADER_TAIL);
                self.start_walk(request.api_version, flexible, Some(body), tail);
            }
            None => self.state = State::Skip,
        }
        Ok(())
    }

    fn start_walk(
        &mut self,
        version: i16,
        flexible: bool,
        body: Option<&'static schema::Struct>,
        tail: Option<&'static schema::Struct>,
    ) {
        if body.is_none() && tail.is_none() {
            self.state = State::Skip;
            return;
        }
        self.walker
            .start(version, flexible, body, tail, self.frame_left);
        self.state = State::Walk;
    }

    fn walk(
        &mut self,
        in_frame: &[u8],
        shared: &mut Shared,
        sink: &mut impl Sink,
    ) -> Result<usize, Reason> {
        let taken = self.with_walker(shared, sink, |walker, semantics| {
            walker.feed(in_frame, semantics)
        })?;
        Ok(self.skip(taken))
    }

    /// Runs the walker with this frame's semantics; once it is done, the rest of
    /// the frame is skipped.
    fn with_walker<S: Sink, T>(
        &mut self,
        shared: &mut Shared,
        sink: &mut S,
        run: impl FnOnce(&mut Walker, &mut Semantics<'_, S>) -> Result<T, Reason>,
    ) -> Result<T, Reason> {
        let mut semantics = Semantics {
            direction: self.direction,
            frame: &mut self.frame,
            shared,
            sink,
        };
        let result = run(&mut self.walker, &mut semantics)?;
        if self.walker.is_done() {
            self.state = State::Skip;
        }
        Ok(result)
    }

    /// The frame's last byte was consumed.
    fn complete_frame(
        &mut self,
        shared: &mut Shared,
        config: &DecoderConfig,
        sink: &mut impl Sink,
    ) -> Result<(), Reason> {
        if self.state == State::Walk {
            self.with_walker(shared, sink, |walker, semantics| walker.finish(semantics))?;
        }
        let api_key = match (self.state, self.direction) {
            (State::RawToken, Direction::Request) => {
                shared.sasl.client_message_end();
                None
            }
            (State::RawToken, Direction::Response) => {
                shared.sasl.on_answer(0, sink);
                None
            }
            (_, Direction::Request) => {
                self.queue_request(shared, config)?;
                self.frame.api_key
            }
            (_, Direction::Response) => self.frame.api_key,
        };
        sink.frame(self.direction, api_key, self.frame_bytes);
        self.frame_bytes = 0;
        self.state = State::Size;
        Ok(())
    }

    /// Puts a complete request in the in-flight FIFO, unless it gets no response.
    fn queue_request(&self, shared: &mut Shared, config: &DecoderConfig) -> Result<(), Reason> {
        let Some(api_key) = self.frame.api_key else {
            return Ok(());
        };
        if api_key == api::PRODUCE && self.frame.acks == 0 {
            return Ok(());
        }
        if shared.in_flight.len() >= config.max_in_flight {
            return Err("too many requests in flight");
        }
        shared.in_flight.push_back(InFlight {
            correlation_id: self.frame.correlation_id,
            api_key,
            api_version: self.frame.api_version,
            replica_fetch: api_key == api::FETCH && self.frame.replica_id >= 0,
        });
        Ok(())
    }

    /// Heap bytes held.
    fn heap_bytes(&self) -> usize {
        self.walker.heap_bytes() + self.frame.topic.capacity()
    }
}

/// Gives meaning to the walker's values for the frame being decoded.
struct Semantics<'a, S: Sink> {
    direction: Direction,
    frame: &'a mut FrameInfo,
    shared: &'a mut Shared,
    sink: &'a mut S,
}

impl<S: Sink> Semantics<'_, S> {
    fn report_client_id(&mut self, client_id: &[u8]) {
        // Every request repeats it: compare the bytes before validating UTF-8.
        if self
            .shared
            .last_client_id
            .as_deref()
            .is_some_and(|last| last.as_bytes() == client_id)
        {
            return;
        }
        let Ok(client_id) = std::str::from_utf8(client_id) else {
            return;
        };
        self.sink.client_id(client_id);
        let last = self
            .shared
            .last_client_id
            .get_or_insert_with(|| String::with_capacity(MAX_CAPTURE));
        last.clear();
        last.push_str(client_id);
    }

    /// The topic buffer, cleared, with room for any topic name (allocated once).
    fn topic_buffer(&mut self) -> &mut String {
        let topic = &mut self.frame.topic;
        topic.clear();
        topic.reserve_exact(MAX_CAPTURE);
        topic
    }

    fn set_topic_name(&mut self, name: Option<&[u8]>) -> Result<(), Reason> {
        self.topic_buffer();
        match name.map(std::str::from_utf8) {
            Some(Ok(name)) => {
                self.frame.topic.push_str(name);
                self.frame.topic_unnamed = false;
                Ok(())
            }
            // Metadata names non-existing topics queried by id with null.
            _ if self.frame.api_key == Some(api::METADATA) => {
                self.frame.topic_unnamed = true;
                Ok(())
            }
            None => Err("topic name null or longer than 255 bytes"),
            Some(Err(_)) => Err("topic name not UTF-8"),
        }
    }
}

impl<S: Sink> Visitor for Semantics<'_, S> {
    fn integer(&mut self, role: Role, value: i64) -> Result<(), Reason> {
        match role {
            Role::Acks => self.frame.acks = i16::try_from(value).unwrap_or(-1),
            Role::Partition => self.frame.partition = i32::try_from(value).unwrap_or(-1),
            Role::ReplicaId => self.frame.replica_id = value,
            Role::ErrorCode => self.frame.error_code = value,
            _ => {}
        }
        Ok(())
    }

    fn uuid(&mut self, role: Role, value: [u8; 16]) -> Result<(), Reason> {
        match role {
            Role::TopicId => {
                self.topic_buffer();
                self.shared.topics.name_into(&value, &mut self.frame.topic);
            }
            Role::LearnTopicId => self.frame.learn_id = Some(value),
            _ => {}
        }
        Ok(())
    }

    fn string(&mut self, role: Role, value: Option<&[u8]>) -> Result<(), Reason> {
        match role {
            Role::ClientId => {
                if let Some(client_id) = value {
                    self.report_client_id(client_id);
                }
                Ok(())
            }
            Role::TopicName => self.set_topic_name(value),
            Role::Mechanism => self
                .shared
                .sasl
                .on_handshake_request(self.frame.api_version, value),
            _ => Ok(()),
        }
    }

    fn bytes_start(&mut self, role: Role, _len: Option<u32>) {
        match role {
            Role::ClientAuthBytes => self.shared.sasl.client_message_start(),
            Role::ServerAuthBytes => self.shared.sasl.answer_start(),
            _ => {}
        }
    }

    fn bytes_piece(&mut self, role: Role, piece: &[u8]) {
        match role {
            Role::ClientAuthBytes => self.shared.sasl.client_message_piece(piece),
            Role::ServerAuthBytes => self.shared.sasl.answer_piece(piece),
            _ => {}
        }
    }

    fn bytes_end(&mut self, role: Role) -> Result<(), Reason> {
        if role == Role::ClientAuthBytes {
            self.shared.sasl.client_message_end();
        }
        Ok(())
    }

    fn records(&mut self, stats: RecordStats) -> Result<(), Reason> {
        if stats.bytes == 0 {
            return Ok(());
        }
        let set = RecordSet {
            topic: &self.frame.topic,
            partition: self.frame.partition,
            bytes: stats.bytes,
            records: stats.records,
            batches: stats.batches,
            codecs: stats.codecs,
        };
        match self.direction {
            Direction::Request => self.sink.produced(&set),
            // Responses to replica fetches are skipped before their body is read.
            Direction::Response => self.sink.consumed(&set),
        }
        Ok(())
    }

    fn struct_end(&mut self, action: EndAction) -> Result<(), Reason> {
        match action {
            EndAction::LearnTopic => {
                let id = self.frame.learn_id.take();
                if let Some(id) = id.filter(|id| *id != [0; 16] && !self.frame.topic_unnamed) {
                    let capacity = self.shared.learned_topics_capacity;
                    if self.shared.topics.learn(id, &self.frame.topic, capacity) {
                        self.sink.topic_id_learned(id, &self.frame.topic);
                    }
                }
            }
            EndAction::HandshakeResponse => {
                let error_code = i16::try_from(self.frame.error_code).unwrap_or(-1);
                self.shared.sasl.on_handshake_response(error_code);
            }
            EndAction::AuthenticateResponse => {
                let error_code = i16::try_from(self.frame.error_code).unwrap_or(-1);
                self.shared.sasl.on_answer(error_code, self.sink);
            }
            EndAction::None | EndAction::HandshakeRequest | EndAction::AuthenticateRequest => {}
        }
        Ok(())
    }
}

/// Decodes one proxied connection's Kafka traffic, both directions, and pushes
/// what it learns into a [`Sink`]. Never fails, never panics: malformed input
/// switches the connection to raw byte counting (see the module docs).
#[derive(Debug)]
pub struct ConnectionDecoder {
    config: DecoderConfig,
    request: Stream,
    response: Stream,
    shared: Shared,
    failed: bool,
}

/// Upper bound of the bytes buffered per connection (copied header fields,
/// strings, batch headers and the SASL candidate), whatever the input.
pub const MAX_BUFFER_BYTES: usize = 2 * MAX_CAPTURE // walker captures
    + 2 * MAX_CAPTURE // current topic names
    + MAX_CAPTURE // last client.id
    + MAX_EXTRACT_BYTES // SASL message prefix
    + MAX_PRINCIPAL_BYTES // SASL candidate principal
    + 2 * BATCH_HEADER_BYTES // record batch headers
    + 2 * (16 + 8); // integer and header accumulators

const _: () = assert!(MAX_BUFFER_BYTES <= 4096);

impl ConnectionDecoder {
    /// A decoder for a new connection.
    pub fn new(config: DecoderConfig) -> Self {
        ConnectionDecoder {
            config,
            request: Stream::new(Direction::Request),
            response: Stream::new(Direction::Response),
            shared: Shared {
                learned_topics_capacity: config.max_learned_topics,
                ..Shared::default()
            },
            failed: false,
        }
    }

    /// Client → broker bytes, in any chunking.
    pub fn on_request_bytes(&mut self, data: &[u8], sink: &mut impl Sink) {
        self.on_bytes(Direction::Request, data, sink);
    }

    /// Broker → client bytes, in any chunking.
    pub fn on_response_bytes(&mut self, data: &[u8], sink: &mut impl Sink) {
        self.on_bytes(Direction::Response, data, sink);
    }

    /// Teaches the decoder a topic id's name learned elsewhere (e.g. from a
    /// Metadata response on another connection, see `Sink::topic_id_learned`),
    /// within [`DecoderConfig::max_learned_topics`].
    pub fn learn_topic(&mut self, topic_id: [u8; 16], name: &str) {
        if name.len() <= MAX_CAPTURE && !self.failed {
            let capacity = self.shared.learned_topics_capacity;
            // Taught, not learned here: no `topic_id_learned` to echo back.
            let _news = self.shared.topics.learn(topic_id, name, capacity);
        }
    }

    /// The connection closed: bytes of frames left incomplete in either
    /// direction are reported through `Sink::unparsed` (not as a decode error: a
    /// peer may close mid-frame), so that every byte fed is reported once.
    /// Feed nothing after this.
    pub fn on_close(&mut self, sink: &mut impl Sink) {
        for stream in [&self.request, &self.response] {
            if stream.frame_bytes > 0 {
                sink.unparsed(stream.direction, stream.frame_bytes);
            }
        }
        self.release_state();
    }

    /// Whether the connection was switched to raw byte counting.
    pub fn is_failed_open(&self) -> bool {
        self.failed
    }

    /// Upper bound of this decoder's memory (its struct and everything it
    /// allocates), whatever the input: [`MAX_BUFFER_BYTES`] of buffers plus the
    /// bookkeeping, the in-flight FIFO and the learned-topic table as configured.
    pub fn max_state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + MAX_BUFFER_BYTES
            + 2 * Walker::max_bookkeeping_bytes()
            // The FIFO's capacity doubles as it grows.
            + self.config.max_in_flight.next_power_of_two() * std::mem::size_of::<InFlight>()
            + self.config.max_learned_topics
                * (std::mem::size_of::<(TopicId, Box<str>)>() + MAX_CAPTURE)
    }

    /// Memory this decoder holds now (at most [`max_state_bytes`](Self::max_state_bytes)).
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.request.heap_bytes()
            + self.response.heap_bytes()
            + self.shared.in_flight.capacity() * std::mem::size_of::<InFlight>()
            + self.shared.topics.heap_bytes()
            + self.shared.sasl.heap_bytes()
            + self
                .shared
                .last_client_id
                .as_ref()
                .map_or(0, String::capacity)
    }

    /// Bytes of `direction` from here on that the decoder steps over without
    /// looking at them (the rest of an undecoded frame, an unused field, a
    /// record batch's payload): a host may pass them with
    /// [`on_skipped_bytes`](Self::on_skipped_bytes) instead of copying them.
    /// Zero when the next byte is read; `u64::MAX` once failed open.
    pub fn skippable(&self, direction: Direction) -> u64 {
        if self.failed {
            return u64::MAX;
        }
        u64::from(self.stream(direction).skippable())
    }

    /// `n` bytes of `direction` passed without their content. Up to
    /// [`skippable`](Self::skippable) they are accounted exactly as if fed
    /// (frames, record set sizes and events are the same); more than that and
    /// the decoder has lost its place: the connection fails open, and every
    /// byte is still counted.
    pub fn on_skipped_bytes(&mut self, direction: Direction, n: u64, sink: &mut impl Sink) {
        if n == 0 {
            return;
        }
        if self.failed {
            sink.unparsed(direction, n);
            return;
        }
        let (stream, shared, config) = self.parts(direction);
        let result = match u32::try_from(n).ok().filter(|n| *n <= stream.skippable()) {
            Some(n) => stream.pass(n, shared, config, sink),
            None => Err(("bytes passed unread where the decoder reads them", n)),
        };
        if let Err(failure) = result {
            self.fail(direction, failure, sink);
        }
    }

    /// A chunk of `size` bytes of `direction` that the host copies on demand:
    /// `read(offset, len)` returns up to `len` bytes from `offset` in the chunk
    /// (`None` if they cannot be read). Bytes the decoder would skip are passed
    /// unread; the rest is read in windows that grow while the traffic leaves
    /// nothing worth skipping, and shrink back after a skip of at least
    /// [`SPARSE_SKIP_BYTES`]. Unreadable bytes are passed unread (the
    /// connection fails open if they were needed). Events and counts are the
    /// same as feeding the whole chunk.
    pub fn on_chunk<B: AsRef<[u8]>>(
        &mut self,
        direction: Direction,
        size: usize,
        sink: &mut impl Sink,
        mut read: impl FnMut(usize, usize) -> Option<B>,
    ) {
        let mut offset = 0;
        while offset < size {
            let left = size - offset;
            let skip = usize::try_from(self.skippable(direction))
                .unwrap_or(usize::MAX)
                .min(left);
            if skip > 0 {
                self.on_skipped_bytes(direction, skip as u64, sink);
                offset += skip;
                if skip >= SPARSE_SKIP_BYTES {
                    self.stream_mut(direction).window = FIRST_WINDOW_BYTES;
                }
                continue;
            }
            let len = left.min(self.stream(direction).window);
            let data = read(offset, len);
            let bytes = data.as_ref().map_or(&[][..], AsRef::as_ref);
            let bytes = bytes.get(..len).unwrap_or(bytes);
            if bytes.is_empty() {
                self.on_skipped_bytes(direction, left as u64, sink);
                return;
            }
            self.on_bytes(direction, bytes, sink);
            offset += bytes.len();
            let stream = self.stream_mut(direction);
            stream.window = stream.window.saturating_mul(2);
        }
    }

    fn stream(&self, direction: Direction) -> &Stream {
        match direction {
            Direction::Request => &self.request,
            Direction::Response => &self.response,
        }
    }

    fn stream_mut(&mut self, direction: Direction) -> &mut Stream {
        self.parts(direction).0
    }

    /// A direction's stream with what its decoding borrows besides.
    fn parts(&mut self, direction: Direction) -> (&mut Stream, &mut Shared, &DecoderConfig) {
        let stream = match direction {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        };
        (stream, &mut self.shared, &self.config)
    }

    // Not inlined into `on_chunk`'s loop: there it cost ~50 more instructions
    // per frame (callgrind, `bench-envoy --native small`).
    #[inline(never)]
    fn on_bytes(&mut self, direction: Direction, data: &[u8], sink: &mut impl Sink) {
        if data.is_empty() {
            return;
        }
        if self.failed {
            sink.unparsed(direction, data.len() as u64);
            return;
        }
        let (stream, shared, config) = self.parts(direction);
        if let Err(failure) = stream.feed(data, shared, config, sink) {
            self.fail(direction, failure, sink);
        }
    }

    /// A decode failure in `direction`: reports it and every byte not yet in a
    /// complete frame (both directions), then fails open.
    fn fail(&mut self, direction: Direction, (reason, unaccounted): Failure, sink: &mut impl Sink) {
        sink.decode_error(direction, reason);
        let (stream, other) = match direction {
            Direction::Request => (&self.request, &self.response),
            Direction::Response => (&self.response, &self.request),
        };
        sink.unparsed(direction, stream.frame_bytes + unaccounted);
        if other.frame_bytes > 0 {
            sink.unparsed(other.direction, other.frame_bytes);
        }
        self.fail_open();
    }

    /// Drops all decoding state: from now on bytes are only counted.
    fn fail_open(&mut self) {
        self.failed = true;
        self.release_state();
    }

    /// Frees every buffer and forgets partial frames.
    fn release_state(&mut self) {
        self.request = Stream::new(Direction::Request);
        self.response = Stream::new(Direction::Response);
        self.shared = Shared::default();
    }
}
