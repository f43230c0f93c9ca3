//! The parts of the Kafka message schemas tally decodes, as static tables.
//!
//! Each table mirrors a message definition of Apache Kafka's
//! `clients/src/main/resources/common/message/*.json`: fields in wire order, each
//! with the API versions it exists in and a [`Role`] saying what the decoder does
//! with its value (most fields: nothing, they are stepped over). Tagged fields are
//! not listed unless tally needs one; unknown tags are skipped by their size.
//!
//! A struct marked `stop_after` is a prefix of the real message: once its listed
//! fields are read the rest of the frame is skipped by count, so a field tally
//! does not need can never make it fail.

/// Inclusive range of API versions a field exists in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Versions {
    min: i16,
    max: i16,
}

impl Versions {
    /// Whether `version` lies in the range.
    pub(crate) fn contains(self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }
}

/// Versions `min` and later.
const fn since(min: i16) -> Versions {
    Versions { min, max: i16::MAX }
}

/// Versions `min` to `max`, both included.
const fn between(min: i16, max: i16) -> Versions {
    Versions { min, max }
}

/// Every version.
const ALL: Versions = since(0);

/// What the decoder does with a field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Stepped over.
    Skip,
    /// The request header's client.id.
    ClientId,
    /// Produce `acks` (0 means the broker sends no response).
    Acks,
    /// A topic name (Produce, Fetch response, Metadata response).
    TopicName,
    /// A topic id to resolve to a name (Produce v13+, Fetch response v13+).
    TopicId,
    /// A Metadata response topic id: learned, not resolved.
    LearnTopicId,
    /// A partition index.
    Partition,
    /// A record set: batch headers are read, payloads skipped.
    Records,
    /// Fetch request replica id (>= 0 for a follower broker).
    ReplicaId,
    /// SaslHandshake request mechanism.
    Mechanism,
    /// A response error code (SaslHandshake, SaslAuthenticate).
    ErrorCode,
    /// SaslAuthenticate request auth bytes (the client's SASL message).
    ClientAuthBytes,
    /// SaslAuthenticate response auth bytes (the server's SASL message).
    ServerAuthBytes,
}

/// Something to do when a struct has been read completely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndAction {
    /// Nothing.
    None,
    /// A Metadata response topic: remember its id → name.
    LearnTopic,
    /// A SaslHandshake request: the mechanism is chosen.
    HandshakeRequest,
    /// A SaslHandshake response: the broker accepted or refused the mechanism.
    HandshakeResponse,
    /// A SaslAuthenticate request: the client's message is complete.
    AuthenticateRequest,
    /// A SaslAuthenticate response: the broker's answer is complete.
    AuthenticateResponse,
}

/// The wire type of a field.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Int8,
    Int16,
    Int32,
    Int64,
    Uuid,
    /// `string` (compact in flexible versions), nullable or not.
    String,
    /// A string that is never compact (the request header's client.id).
    LegacyString,
    /// `bytes` (compact in flexible versions), nullable or not.
    Bytes,
    /// `records`: length-prefixed like `bytes`.
    Records,
    /// An array (compact in flexible versions) of the struct.
    Array(&'static Struct),
}

/// One field of a struct.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub(crate) kind: Kind,
    pub(crate) versions: Versions,
    pub(crate) role: Role,
}

/// A tagged field tally reads (all others are skipped by size).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tagged {
    pub(crate) tag: u64,
    pub(crate) versions: Versions,
    pub(crate) schema: &'static Struct,
}

/// A struct: its fields in wire order, and how it ends.
#[derive(Debug)]
pub(crate) struct Struct {
    pub(crate) fields: &'static [Field],
    /// Tagged fields tally reads.
    pub(crate) tagged: &'static [Tagged],
    /// False for the elements of a primitive array (`[]int32`): those carry no
    /// tagged-field section in flexible versions.
    pub(crate) has_tags: bool,
    /// The listed fields are a prefix: after them the frame's rest is skipped.
    pub(crate) stop_after: bool,
    pub(crate) end: EndAction,
}

const fn field(kind: Kind, versions: Versions) -> Field {
    Field {
        kind,
        versions,
        role: Role::Skip,
    }
}

const fn role(kind: Kind, versions: Versions, role: Role) -> Field {
    Field {
        kind,
        versions,
        role,
    }
}

/// A plain struct with a tagged-field section in flexible versions.
const fn plain(fields: &'static [Field]) -> Struct {
    Struct {
        fields,
        tagged: &[],
        has_tags: true,
        stop_after: false,
        end: EndAction::None,
    }
}

/// A top-level prefix: the rest of the frame is skipped after these fields.
const fn prefix(fields: &'static [Field], end: EndAction) -> Struct {
    Struct {
        fields,
        tagged: &[],
        has_tags: false,
        stop_after: true,
        end,
    }
}

/// `[]int32` elements.
static INT32_ELEMENT: Struct = Struct {
    fields: &[field(Kind::Int32, ALL)],
    tagged: &[],
    has_tags: false,
    stop_after: false,
    end: EndAction::None,
};

/// The request header after api_key, api_version and correlation_id (header v1
/// and v2: v2 adds the tagged-field section, read when the body is flexible).
pub(crate) static REQUEST_HEADER_TAIL: Struct =
    plain(&[role(Kind::LegacyString, ALL, Role::ClientId)]);

/// The response header v1 after correlation_id: only its tagged-field section.
pub(crate) static RESPONSE_HEADER_TAIL: Struct = plain(&[]);

// ---- Produce (api key 0) -------------------------------------------------

static PRODUCE_PARTITION: Struct = plain(&[
    role(Kind::Int32, ALL, Role::Partition),
    role(Kind::Records, ALL, Role::Records),
]);

static PRODUCE_TOPIC: Struct = plain(&[
    role(Kind::String, between(0, 12), Role::TopicName),
    role(Kind::Uuid, since(13), Role::TopicId),
    field(Kind::Array(&PRODUCE_PARTITION), ALL),
]);

/// ProduceRequest v3+.
pub(crate) static PRODUCE_REQUEST: Struct = prefix(
    &[
        field(Kind::String, since(3)), // transactional_id
        role(Kind::Int16, ALL, Role::Acks),
        field(Kind::Int32, ALL), // timeout_ms
        field(Kind::Array(&PRODUCE_TOPIC), ALL),
    ],
    EndAction::None,
);

// ---- Fetch (api key 1) ---------------------------------------------------

/// FetchRequest v4–v14: the replica id is the first field.
pub(crate) static FETCH_REQUEST_UP_TO_14: Struct = prefix(
    &[role(Kind::Int32, between(0, 14), Role::ReplicaId)],
    EndAction::None,
);

static FETCH_REPLICA_STATE: Struct = plain(&[
    role(Kind::Int32, ALL, Role::ReplicaId),
    field(Kind::Int64, ALL), // replica_epoch
]);

static FETCH_REQUEST_PARTITION: Struct = plain(&[
    field(Kind::Int32, ALL),       // partition
    field(Kind::Int32, since(9)),  // current_leader_epoch
    field(Kind::Int64, ALL),       // fetch_offset
    field(Kind::Int32, since(12)), // last_fetched_epoch
    field(Kind::Int64, since(5)),  // log_start_offset
    field(Kind::Int32, ALL),       // partition_max_bytes
]);

static FETCH_REQUEST_TOPIC: Struct = plain(&[
    field(Kind::String, between(0, 12)),
    field(Kind::Uuid, since(13)),
    field(Kind::Array(&FETCH_REQUEST_PARTITION), ALL),
]);

static FETCH_FORGOTTEN_TOPIC: Struct = plain(&[
    field(Kind::String, between(7, 12)),
    field(Kind::Uuid, since(13)),
    field(Kind::Array(&INT32_ELEMENT), since(7)),
]);

/// FetchRequest v15+: the replica id moved into the tagged ReplicaState (tag 1)
/// at the very end, so the whole request is walked.
pub(crate) static FETCH_REQUEST_FROM_15: Struct = Struct {
    fields: &[
        field(Kind::Int32, ALL),      // max_wait_ms
        field(Kind::Int32, ALL),      // min_bytes
        field(Kind::Int32, since(3)), // max_bytes
        field(Kind::Int8, since(4)),  // isolation_level
        field(Kind::Int32, since(7)), // session_id
        field(Kind::Int32, since(7)), // session_epoch
        field(Kind::Array(&FETCH_REQUEST_TOPIC), ALL),
        field(Kind::Array(&FETCH_FORGOTTEN_TOPIC), since(7)),
        field(Kind::String, since(11)), // rack_id
    ],
    tagged: &[Tagged {
        tag: 1,
        versions: since(15),
        schema: &FETCH_REPLICA_STATE,
    }],
    has_tags: true,
    stop_after: false,
    end: EndAction::None,
};

static FETCH_ABORTED_TRANSACTION: Struct = plain(&[
    field(Kind::Int64, ALL), // producer_id
    field(Kind::Int64, ALL), // first_offset
]);

static FETCH_RESPONSE_PARTITION: Struct = plain(&[
    role(Kind::Int32, ALL, Role::Partition),
    field(Kind::Int16, ALL),                                  // error_code
    field(Kind::Int64, ALL),                                  // high_watermark
    field(Kind::Int64, since(4)),                             // last_stable_offset
    field(Kind::Int64, since(5)),                             // log_start_offset
    field(Kind::Array(&FETCH_ABORTED_TRANSACTION), since(4)), // nullable
    field(Kind::Int32, since(11)),                            // preferred_read_replica
    role(Kind::Records, ALL, Role::Records),
]);

static FETCH_RESPONSE_TOPIC: Struct = plain(&[
    role(Kind::String, between(0, 12), Role::TopicName),
    role(Kind::Uuid, since(13), Role::TopicId),
    field(Kind::Array(&FETCH_RESPONSE_PARTITION), ALL),
]);

/// FetchResponse v4+ (the top-level node_endpoints of v16+ is tagged: skipped).
pub(crate) static FETCH_RESPONSE: Struct = prefix(
    &[
        field(Kind::Int32, since(1)), // throttle_time_ms
        field(Kind::Int16, since(7)), // error_code
        field(Kind::Int32, since(7)), // session_id
        field(Kind::Array(&FETCH_RESPONSE_TOPIC), ALL),
    ],
    EndAction::None,
);

// ---- Metadata (api key 3) ------------------------------------------------

static METADATA_BROKER: Struct = plain(&[
    field(Kind::Int32, ALL),       // node_id
    field(Kind::String, ALL),      // host
    field(Kind::Int32, ALL),       // port
    field(Kind::String, since(1)), // rack (nullable)
]);

static METADATA_PARTITION: Struct = plain(&[
    field(Kind::Int16, ALL),                      // error_code
    field(Kind::Int32, ALL),                      // partition_index
    field(Kind::Int32, ALL),                      // leader_id
    field(Kind::Int32, since(7)),                 // leader_epoch
    field(Kind::Array(&INT32_ELEMENT), ALL),      // replica_nodes
    field(Kind::Array(&INT32_ELEMENT), ALL),      // isr_nodes
    field(Kind::Array(&INT32_ELEMENT), since(5)), // offline_replicas
]);

static METADATA_TOPIC: Struct = Struct {
    fields: &[
        field(Kind::Int16, ALL),                  // error_code
        role(Kind::String, ALL, Role::TopicName), // nullable in v12+
        role(Kind::Uuid, since(10), Role::LearnTopicId),
        field(Kind::Int8, since(1)), // is_internal
        field(Kind::Array(&METADATA_PARTITION), ALL),
        field(Kind::Int32, since(8)), // topic_authorized_operations
    ],
    tagged: &[],
    has_tags: true,
    stop_after: false,
    end: EndAction::LearnTopic,
};

/// MetadataResponse v10+ (the versions that carry topic ids), up to the topics.
pub(crate) static METADATA_RESPONSE: Struct = prefix(
    &[
        field(Kind::Int32, since(3)), // throttle_time_ms
        field(Kind::Array(&METADATA_BROKER), ALL),
        field(Kind::String, since(2)), // cluster_id (nullable)
        field(Kind::Int32, since(1)),  // controller_id
        field(Kind::Array(&METADATA_TOPIC), ALL),
    ],
    EndAction::None,
);

// ---- SASL (api keys 17 and 36) --------------------------------------------

/// SaslHandshakeRequest v0–v1.
pub(crate) static SASL_HANDSHAKE_REQUEST: Struct = prefix(
    &[role(Kind::String, ALL, Role::Mechanism)],
    EndAction::HandshakeRequest,
);

/// SaslHandshakeResponse v0–v1, up to the error code.
pub(crate) static SASL_HANDSHAKE_RESPONSE: Struct = prefix(
    &[role(Kind::Int16, ALL, Role::ErrorCode)],
    EndAction::HandshakeResponse,
);

/// SaslAuthenticateRequest v0–v2.
pub(crate) static SASL_AUTHENTICATE_REQUEST: Struct = prefix(
    &[role(Kind::Bytes, ALL, Role::ClientAuthBytes)],
    EndAction::AuthenticateRequest,
);

/// SaslAuthenticateResponse v0–v2, up to the auth bytes.
pub(crate) static SASL_AUTHENTICATE_RESPONSE: Struct = prefix(
    &[
        role(Kind::Int16, ALL, Role::ErrorCode),
        field(Kind::String, ALL), // error_message (nullable)
        role(Kind::Bytes, ALL, Role::ServerAuthBytes),
    ],
    EndAction::AuthenticateResponse,
);

// ---- Which APIs and versions are decoded ------------------------------------

/// Api keys tally decodes the body of.
pub(crate) mod api {
    pub(crate) const PRODUCE: i16 = 0;
    pub(crate) const FETCH: i16 = 1;
    pub(crate) const METADATA: i16 = 3;
    pub(crate) const CONTROLLED_SHUTDOWN: i16 = 7;
    // ApiVersions (18) responses always use header v0 whatever the version; tally
    // does not decode ApiVersions, so only its correlation id is ever read.
    pub(crate) const SASL_HANDSHAKE: i16 = 17;
    pub(crate) const SASL_AUTHENTICATE: i16 = 36;
}

/// The body schemas of one decoded request/response pair at one version.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decoded {
    /// The request body to walk, if tally reads anything from it.
    pub(crate) request: Option<&'static Struct>,
    /// The response body to walk, if tally reads anything from it.
    pub(crate) response: Option<&'static Struct>,
    /// Whether this version uses flexible encoding (and header v2 / v1).
    pub(crate) flexible: bool,
}

/// The schemas tally decodes for `(api_key, api_version)`, or `None` when the
/// frame is only counted.
pub(crate) fn decoded(api_key: i16, version: i16) -> Option<Decoded> {
    let entry = |request, response, flexible_from: i16| Decoded {
        request,
        response,
        flexible: version >= flexible_from,
    };
    match (api_key, version) {
        (api::PRODUCE, 3..=13) => Some(entry(Some(&PRODUCE_REQUEST), None, 9)),
        (api::FETCH, 4..=14) => Some(entry(
            Some(&FETCH_REQUEST_UP_TO_14),
            Some(&FETCH_RESPONSE),
            12,
        )),
        (api::FETCH, 15..=18) => Some(entry(
            Some(&FETCH_REQUEST_FROM_15),
            Some(&FETCH_RESPONSE),
            12,
        )),
        (api::METADATA, 10..=14) => Some(entry(None, Some(&METADATA_RESPONSE), 9)),
        (api::SASL_HANDSHAKE, 0..=1) => Some(entry(
            Some(&SASL_HANDSHAKE_REQUEST),
            Some(&SASL_HANDSHAKE_RESPONSE),
            i16::MAX,
        )),
        (api::SASL_AUTHENTICATE, 0..=2) => Some(entry(
            Some(&SASL_AUTHENTICATE_REQUEST),
            Some(&SASL_AUTHENTICATE_RESPONSE),
            2,
        )),
        _ => None,
    }
}

/// Whether a request header carries client.id: every header but v0, which only
/// ControlledShutdown v0 uses.
pub(crate) fn request_header_has_client_id(api_key: i16, version: i16) -> bool {
    !(api_key == api::CONTROLLED_SHUTDOWN && version == 0)
}
