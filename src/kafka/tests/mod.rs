//! Decoder tests: hand-built frames per API and version family, SASL exchanges,
//! fail-open accounting, and chunking independence (proptest).

mod encode;
mod fetch;
mod framing;
mod produce;
mod recorded;
mod sasl;
mod skip;

use super::{Codec, ConnectionDecoder, DecoderConfig, Direction, Mechanism, RecordSet, Sink};

/// One sink event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Frame(Direction, Option<i16>, u64),
    ClientId(String),
    Authenticated(Mechanism, String),
    AuthenticationFailed(Mechanism),
    Produced(Set),
    Consumed(Set),
    Unparsed(Direction, u64),
    DecodeError(Direction, &'static str),
    TopicIdLearned([u8; 16], String),
}

/// An owned [`RecordSet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub topic: String,
    pub partition: i32,
    pub bytes: u64,
    pub records: u64,
    pub batches: u32,
    pub codecs: u8,
}

impl Set {
    pub fn new(
        topic: &str,
        partition: i32,
        bytes: usize,
        records: u64,
        batches: u32,
        codecs: &[Codec],
    ) -> Self {
        Set {
            topic: topic.to_string(),
            partition,
            bytes: bytes as u64,
            records,
            batches,
            codecs: codecs
                .iter()
                .fold(0, |bits, codec| bits | 1 << (*codec as u8)),
        }
    }

    fn from(set: &RecordSet<'_>) -> Self {
        Set {
            topic: set.topic.to_string(),
            partition: set.partition,
            bytes: set.bytes,
            records: set.records,
            batches: set.batches,
            codecs: set.codecs,
        }
    }
}

/// Records every event; merges consecutive `Unparsed` of one direction so that
/// chunking does not change the sequence.
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Vec<Event>,
}

impl Sink for Recorder {
    fn frame(&mut self, direction: Direction, api_key: Option<i16>, wire_bytes: u64) {
        self.events
            .push(Event::Frame(direction, api_key, wire_bytes));
    }
    fn client_id(&mut self, client_id: &str) {
        self.events.push(Event::ClientId(client_id.to_string()));
    }
    fn authenticated(&mut self, mechanism: Mechanism, principal: &str) {
        self.events
            .push(Event::Authenticated(mechanism, principal.to_string()));
    }
    fn authentication_failed(&mut self, mechanism: Mechanism) {
        self.events.push(Event::AuthenticationFailed(mechanism));
    }
    fn produced(&mut self, set: &RecordSet<'_>) {
        self.events.push(Event::Produced(Set::from(set)));
    }
    fn consumed(&mut self, set: &RecordSet<'_>) {
        self.events.push(Event::Consumed(Set::from(set)));
    }
    fn unparsed(&mut self, direction: Direction, bytes: u64) {
        if let Some(Event::Unparsed(last_direction, total)) = self.events.last_mut() {
            if *last_direction == direction {
                *total += bytes;
                return;
            }
        }
        self.events.push(Event::Unparsed(direction, bytes));
    }
    fn decode_error(&mut self, direction: Direction, reason: &'static str) {
        self.events.push(Event::DecodeError(direction, reason));
    }
    fn topic_id_learned(&mut self, topic_id: [u8; 16], name: &str) {
        self.events
            .push(Event::TopicIdLearned(topic_id, name.to_string()));
    }
}

impl Recorder {
    pub fn produced(&self) -> Vec<Set> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Produced(set) => Some(set.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn consumed(&self) -> Vec<Set> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Consumed(set) => Some(set.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn frames(&self) -> Vec<(Direction, Option<i16>, u64)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Frame(d, k, n) => Some((*d, *k, *n)),
                _ => None,
            })
            .collect()
    }

    pub fn auth(&self) -> Vec<Event> {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Authenticated(..) | Event::AuthenticationFailed(_)))
            .cloned()
            .collect()
    }

    pub fn errors(&self) -> Vec<&'static str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::DecodeError(_, reason) => Some(*reason),
                _ => None,
            })
            .collect()
    }

    /// The events without `Unparsed`, then the unparsed totals per direction
    /// (after a failure, how raw bytes split into calls depends on chunking).
    pub fn normalized(&self) -> (Vec<Event>, u64, u64) {
        let decoded = self
            .events
            .iter()
            .filter(|e| !matches!(e, Event::Unparsed(..)))
            .cloned()
            .collect();
        let unparsed = |direction| {
            self.events
                .iter()
                .map(|e| match e {
                    Event::Unparsed(d, n) if *d == direction => *n,
                    _ => 0,
                })
                .sum()
        };
        (
            decoded,
            unparsed(Direction::Request),
            unparsed(Direction::Response),
        )
    }

    /// Frame bytes plus unparsed bytes of one direction.
    pub fn accounted(&self, direction: Direction) -> u64 {
        self.events
            .iter()
            .map(|e| match e {
                Event::Frame(d, _, n) | Event::Unparsed(d, n) if *d == direction => *n,
                _ => 0,
            })
            .sum()
    }
}

/// A conversation: messages in causal order, each one direction's bytes.
pub type Conversation = Vec<(Direction, Vec<u8>)>;

pub fn req(bytes: Vec<u8>) -> (Direction, Vec<u8>) {
    (Direction::Request, bytes)
}

pub fn resp(bytes: Vec<u8>) -> (Direction, Vec<u8>) {
    (Direction::Response, bytes)
}

/// Feeds a conversation whole, message by message.
pub fn run(conversation: &[(Direction, Vec<u8>)]) -> Recorder {
    run_chunked(conversation, usize::MAX)
}

/// Feeds a conversation in chunks of at most `chunk` bytes.
pub fn run_chunked(conversation: &[(Direction, Vec<u8>)], chunk: usize) -> Recorder {
    let mut decoder = ConnectionDecoder::new(DecoderConfig::default());
    let mut sink = Recorder::default();
    for (direction, bytes) in conversation {
        for piece in bytes.chunks(chunk.max(1)) {
            feed(&mut decoder, *direction, piece, &mut sink);
        }
    }
    decoder.on_close(&mut sink);
    assert!(decoder.state_bytes() <= decoder.max_state_bytes());
    sink
}

pub fn feed(
    decoder: &mut ConnectionDecoder,
    direction: Direction,
    bytes: &[u8],
    sink: &mut Recorder,
) {
    match direction {
        Direction::Request => decoder.on_request_bytes(bytes, sink),
        Direction::Response => decoder.on_response_bytes(bytes, sink),
    }
}

/// Asserts the conversation decodes without errors and with every byte in a frame.
pub fn assert_clean(conversation: &[(Direction, Vec<u8>)], sink: &Recorder) {
    assert_eq!(
        sink.errors(),
        Vec::<&str>::new(),
        "events: {:#?}",
        sink.events
    );
    assert_all_accounted(conversation, sink);
}

/// Asserts that every byte fed was reported once, in a frame or as unparsed.
pub fn assert_all_accounted(conversation: &[(Direction, Vec<u8>)], sink: &Recorder) {
    for direction in [Direction::Request, Direction::Response] {
        let fed: usize = conversation
            .iter()
            .filter(|(d, _)| *d == direction)
            .map(|(_, b)| b.len())
            .sum();
        assert_eq!(
            sink.accounted(direction),
            fed as u64,
            "{direction:?}: {:#?}",
            sink.events
        );
    }
}
