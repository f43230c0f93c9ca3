//! Streaming Kafka wire-protocol decoder.
//!
//! A [`ConnectionDecoder`] (one per proxied
//! connection) is fed the client→broker and broker→client byte streams in
//! whatever chunks the host delivers, and pushes what it learns into a [`Sink`].
//! It never buffers more than a header needs: record payloads are skipped by
//! count. Any malformed or oversized frame switches that connection to raw byte
//! counting (fail open): the traffic is never stopped or altered, and the sink is
//! told ([`Sink::unparsed`], [`Sink::decode_error`]).
//!
//! The seam (events and [`Sink`]) is defined here; the decoder lives in
//! submodules:
//!
//! * [`decoder`]: framing, the per-connection state machine, request/response
//!   matching and the fail-open policy.
//! * `walker`: a resumable walker over the static message schemas of `schema`.
//! * `records`: record sets read by their batch headers only.
//! * `sasl`: following SASL to name the principal without keeping secrets.
//! * `topics`: topic ids learned from Metadata responses.

pub mod decoder;
mod records;
mod sasl;
mod schema;
mod topics;
mod walker;

#[cfg(test)]
mod tests;

pub use decoder::{ConnectionDecoder, DecoderConfig, MAX_BUFFER_BYTES};

/// Which way bytes flow on a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Client → broker (requests).
    Request,
    /// Broker → client (responses).
    Response,
}

/// The SASL mechanism that authenticated a principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// `PLAIN`: the authcid.
    Plain,
    /// `SCRAM-SHA-256`: the `n=` user of client-first, unescaped.
    ScramSha256,
    /// `SCRAM-SHA-512`: the `n=` user of client-first, unescaped.
    ScramSha512,
    /// `OAUTHBEARER`: the JWT `sub` claim, **not verified** (the broker verified it).
    OAuthBearer,
}

impl Mechanism {
    /// The name used in usage rows' `principal_source` column.
    pub fn source_label(self) -> &'static str {
        match self {
            Mechanism::Plain => "sasl_plain",
            Mechanism::ScramSha256 => "sasl_scram_sha_256",
            Mechanism::ScramSha512 => "sasl_scram_sha_512",
            Mechanism::OAuthBearer => "sasl_oauthbearer",
        }
    }
}

/// Compression codec of a record batch (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Codec {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

/// One partition's record set inside a Produce request or a Fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSet<'a> {
    /// The topic name; for topic-id-only requests whose id was not learned from a
    /// Metadata response on this connection, the id as 32 lowercase hex digits.
    pub topic: &'a str,
    /// The partition index.
    pub partition: i32,
    /// Bytes of the record set as on the wire (compressed), excluding its length prefix.
    pub bytes: u64,
    /// Records counted from the batch headers (`records_count`), complete batches only.
    pub records: u64,
    /// Number of complete record batches.
    pub batches: u32,
    /// Codecs seen, as a bit set indexed by `Codec as u8`.
    pub codecs: u8,
}

/// Where the decoder pushes what it learns. All methods have empty defaults so a
/// consumer implements only what it needs.
pub trait Sink {
    /// A whole frame (4-byte size prefix included) crossed the connection.
    /// `api_key` is the request's (responses are matched to their request); `None`
    /// for a response with no matching request or bytes counted raw.
    fn frame(&mut self, _direction: Direction, _api_key: Option<i16>, _wire_bytes: u64) {}
    /// The client.id of a request header (clients choose it: a labelled fallback).
    fn client_id(&mut self, _client_id: &str) {}
    /// The broker accepted a SASL authentication: the principal is now known.
    fn authenticated(&mut self, _mechanism: Mechanism, _principal: &str) {}
    /// The broker rejected a SASL authentication (the principal is NOT attributed).
    fn authentication_failed(&mut self, _mechanism: Mechanism) {}
    /// A Produce request carried this record set.
    fn produced(&mut self, _set: &RecordSet<'_>) {}
    /// A Fetch response to a consumer (not a follower replica) carried this record set.
    fn consumed(&mut self, _set: &RecordSet<'_>) {}
    /// Bytes passed through without decoding (after fail-open, or unknown framing).
    fn unparsed(&mut self, _direction: Direction, _bytes: u64) {}
    /// A decode error switched the connection to raw counting; `reason` is static text.
    fn decode_error(&mut self, _direction: Direction, _reason: &'static str) {}
    /// A Metadata response on this connection named the topic with this id
    /// (reported when new to this connection, not on every Metadata refresh).
    /// Clients often send Metadata on another connection than their Produce or
    /// Fetch v13+ (which name topics by id only): a host can collect these and
    /// seed other connections' decoders (`ConnectionDecoder::learn_topic`), or
    /// rename the hex ids it was given.
    fn topic_id_learned(&mut self, _topic_id: [u8; 16], _name: &str) {}
}
