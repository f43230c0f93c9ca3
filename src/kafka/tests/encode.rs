//! A small test-only encoder for Kafka frames, written from the message JSON
//! definitions independently of the decoder's schema tables.

/// Names a topic by name or by id.
#[derive(Debug, Clone, Copy)]
pub enum TopicRef<'a> {
    Name(&'a str),
    Id([u8; 16]),
}

/// A partition and its record set (`None` = null records).
pub type PartitionData<'a> = (i32, Option<&'a [u8]>);

/// Writes primitive types, compact when flexible.
pub struct W {
    pub buf: Vec<u8>,
    pub flexible: bool,
}

impl W {
    pub fn new(flexible: bool) -> Self {
        W {
            buf: Vec::new(),
            flexible,
        }
    }
    pub fn i8(&mut self, v: i8) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn uuid(&mut self, v: [u8; 16]) -> &mut Self {
        self.buf.extend_from_slice(&v);
        self
    }
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    pub fn uvarint(&mut self, mut v: u32) -> &mut Self {
        while v >= 0x80 {
            self.buf.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
        self
    }
    pub fn string(&mut self, v: Option<&str>) -> &mut Self {
        match (v, self.flexible) {
            (None, true) => self.uvarint(0),
            (None, false) => self.i16(-1),
            (Some(s), true) => self.uvarint(s.len() as u32 + 1).raw(s.as_bytes()),
            (Some(s), false) => self.i16(s.len() as i16).raw(s.as_bytes()),
        }
    }
    pub fn legacy_string(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            None => self.i16(-1),
            Some(s) => self.i16(s.len() as i16).raw(s.as_bytes()),
        }
    }
    pub fn bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        match (v, self.flexible) {
            (None, true) => self.uvarint(0),
            (None, false) => self.i32(-1),
            (Some(b), true) => self.uvarint(b.len() as u32 + 1).raw(b),
            (Some(b), false) => self.i32(b.len() as i32).raw(b),
        }
    }
    /// An array length (`None` = null array).
    pub fn len(&mut self, n: Option<usize>) -> &mut Self {
        match (n, self.flexible) {
            (None, true) => self.uvarint(0),
            (None, false) => self.i32(-1),
            (Some(n), true) => self.uvarint(n as u32 + 1),
            (Some(n), false) => self.i32(n as i32),
        }
    }
    /// A tagged-field section (only in flexible versions).
    pub fn tags(&mut self, tags: &[(u32, &[u8])]) -> &mut Self {
        if self.flexible {
            self.uvarint(tags.len() as u32);
            for (tag, data) in tags {
                self.uvarint(*tag).uvarint(data.len() as u32).raw(data);
            }
        }
        self
    }
    pub fn no_tags(&mut self) -> &mut Self {
        self.tags(&[])
    }
    pub fn topic(&mut self, topic: TopicRef<'_>) -> &mut Self {
        match topic {
            TopicRef::Name(name) => self.string(Some(name)),
            TopicRef::Id(id) => self.uuid(id),
        }
    }
}

/// Prefixes `body` with its 4-byte size.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// A request header v1 (or v2 when `flexible`), followed by the body writer.
pub fn request(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    flexible: bool,
) -> W {
    let mut w = W::new(flexible);
    w.i16(api_key)
        .i16(version)
        .i32(correlation_id)
        .legacy_string(client_id);
    // Header v2: tagged fields, here one unknown tag the decoder must skip.
    w.tags(&[(7, b"hdr")]);
    w
}

/// A response header v0 (or v1 when `flexible`).
pub fn response(correlation_id: i32, flexible: bool) -> W {
    let mut w = W::new(flexible);
    w.i32(correlation_id).no_tags();
    w
}

/// A magic-2 record batch of `records` records, codec `codec`, and `payload`
/// bytes after the 61-byte header.
pub fn batch(records: i32, codec: i16, payload: usize) -> Vec<u8> {
    let mut w = W::new(false);
    w.i64(0) // base offset
        .i32(49 + payload as i32) // batch length
        .i32(0) // partition leader epoch
        .i8(2) // magic
        .i32(0x1234_5678) // crc
        .i16(codec) // attributes
        .i32(records - 1) // last offset delta
        .i64(1_700_000_000_000)
        .i64(1_700_000_000_001)
        .i64(42) // producer id
        .i16(0) // producer epoch
        .i32(0) // base sequence
        .i32(records);
    w.buf.extend(std::iter::repeat_n(0xab, payload));
    w.buf
}

pub fn produce_request(
    version: i16,
    correlation_id: i32,
    acks: i16,
    topics: &[(TopicRef<'_>, &[PartitionData<'_>])],
) -> Vec<u8> {
    let flexible = version >= 9;
    let mut w = request(0, version, correlation_id, Some("producer-1"), flexible);
    w.string(Some("txn-1"))
        .i16(acks)
        .i32(30_000)
        .len(Some(topics.len()));
    for (topic, partitions) in topics {
        w.topic(*topic).len(Some(partitions.len()));
        for (partition, records) in *partitions {
            w.i32(*partition).bytes(*records).no_tags();
        }
        w.no_tags();
    }
    w.no_tags();
    frame(&w.buf)
}

/// A plausible Produce response (its body is not decoded).
pub fn produce_response(version: i16, correlation_id: i32) -> Vec<u8> {
    let mut w = response(correlation_id, version >= 9);
    w.len(Some(0)).i32(0).no_tags();
    frame(&w.buf)
}

/// FetchRequest with every field of its version.
pub fn fetch_request(
    version: i16,
    correlation_id: i32,
    replica_id: i32,
    topics: &[(TopicRef<'_>, &[i32])],
) -> Vec<u8> {
    let flexible = version >= 12;
    let mut w = request(1, version, correlation_id, Some("consumer-1"), flexible);
    if version <= 14 {
        w.i32(replica_id);
    }
    w.i32(500).i32(1);
    if version >= 3 {
        w.i32(52_428_800);
    }
    if version >= 4 {
        w.i8(0);
    }
    if version >= 7 {
        w.i32(0).i32(-1);
    }
    w.len(Some(topics.len()));
    for (topic, partitions) in topics {
        w.topic(*topic).len(Some(partitions.len()));
        for partition in *partitions {
            w.i32(*partition);
            if version >= 9 {
                w.i32(5);
            }
            w.i64(100);
            if version >= 12 {
                w.i32(4);
            }
            if version >= 5 {
                w.i64(0);
            }
            w.i32(1_048_576);
            if version >= 17 {
                w.tags(&[(0, &[7; 16])]); // replica directory id
            } else {
                w.no_tags();
            }
        }
        w.no_tags();
    }
    if version >= 7 {
        w.len(Some(1));
        match topics.first().map(|t| t.0) {
            Some(TopicRef::Id(id)) if version >= 13 => w.uuid(id),
            _ if version >= 13 => w.uuid([9; 16]),
            _ => w.string(Some("forgotten")),
        };
        w.len(Some(2)).i32(1).i32(2).no_tags();
    }
    if version >= 11 {
        w.string(Some("rack-a"));
    }
    let mut cluster_id = W::new(true);
    cluster_id.string(Some("cluster-xyz"));
    let mut replica_state = W::new(true);
    replica_state.i32(replica_id).i64(3).no_tags();
    if version >= 15 {
        w.tags(&[(0, &cluster_id.buf), (1, &replica_state.buf)]);
    } else {
        w.tags(&[(0, &cluster_id.buf)]);
    }
    frame(&w.buf)
}

/// FetchResponse with every field of its version.
pub fn fetch_response(
    version: i16,
    correlation_id: i32,
    topics: &[(TopicRef<'_>, &[PartitionData<'_>])],
) -> Vec<u8> {
    let flexible = version >= 12;
    let mut w = response(correlation_id, flexible);
    w.i32(0);
    if version >= 7 {
        w.i16(0).i32(77);
    }
    w.len(Some(topics.len()));
    for (topic, partitions) in topics {
        w.topic(*topic).len(Some(partitions.len()));
        for (index, (partition, records)) in partitions.iter().enumerate() {
            w.i32(*partition).i16(0).i64(1000);
            if version >= 4 {
                w.i64(1000);
            }
            if version >= 5 {
                w.i64(0);
            }
            if version >= 4 {
                if index % 2 == 0 {
                    w.len(None);
                } else {
                    w.len(Some(1)).i64(9).i64(10).no_tags();
                }
            }
            if version >= 11 {
                w.i32(-1);
            }
            w.bytes(*records);
            // current_leader (tag 1): skipped by size.
            w.tags(&[(1, &[0, 0, 0, 1, 0, 0, 0, 2])]);
        }
        w.no_tags();
    }
    if version >= 16 {
        w.tags(&[(0, &[1, 2, 3, 4, 5])]); // node_endpoints, skipped
    } else {
        w.no_tags();
    }
    frame(&w.buf)
}

/// MetadataResponse (v10+) naming `topics` (name, id), each with one partition.
pub fn metadata_response(
    version: i16,
    correlation_id: i32,
    topics: &[(Option<&str>, [u8; 16])],
) -> Vec<u8> {
    let mut w = response(correlation_id, true);
    w.i32(0);
    w.len(Some(2));
    for node in 0..2 {
        w.i32(node)
            .string(Some("broker.example"))
            .i32(9092)
            .string(None)
            .no_tags();
    }
    w.string(Some("cluster-xyz")).i32(1);
    w.len(Some(topics.len()));
    for (name, id) in topics {
        w.i16(0).string(*name).uuid(*id).i8(0);
        w.len(Some(1));
        w.i16(0).i32(0).i32(1).i32(5);
        w.len(Some(2)).i32(0).i32(1);
        w.len(Some(1)).i32(0);
        w.len(Some(0));
        w.no_tags();
        w.i32(-2_147_483_648).no_tags();
    }
    if version <= 10 {
        w.i32(0);
    }
    if version >= 13 {
        w.i16(0);
    }
    w.no_tags();
    frame(&w.buf)
}

pub fn metadata_request(version: i16, correlation_id: i32) -> Vec<u8> {
    let mut w = request(3, version, correlation_id, Some("producer-1"), true);
    w.len(None).i8(1).i8(0).no_tags();
    frame(&w.buf)
}

pub fn sasl_handshake_request(version: i16, correlation_id: i32, mechanism: &str) -> Vec<u8> {
    let mut w = request(17, version, correlation_id, Some("client"), false);
    w.string(Some(mechanism));
    frame(&w.buf)
}

pub fn sasl_handshake_response(correlation_id: i32, error_code: i16) -> Vec<u8> {
    let mut w = response(correlation_id, false);
    w.i16(error_code).len(Some(1)).string(Some("PLAIN"));
    frame(&w.buf)
}

pub fn sasl_authenticate_request(version: i16, correlation_id: i32, auth: &[u8]) -> Vec<u8> {
    let mut w = request(36, version, correlation_id, Some("client"), version >= 2);
    w.bytes(Some(auth)).no_tags();
    frame(&w.buf)
}

pub fn sasl_authenticate_response(
    version: i16,
    correlation_id: i32,
    error_code: i16,
    auth: &[u8],
) -> Vec<u8> {
    let mut w = response(correlation_id, version >= 2);
    w.i16(error_code)
        .string((error_code != 0).then_some("Authentication failed"))
        .bytes(Some(auth));
    if version >= 1 {
        w.i64(3_600_000);
    }
    w.no_tags();
    frame(&w.buf)
}

/// A request of an api tally does not decode (ApiVersions v3, flexible).
pub fn api_versions_request(correlation_id: i32) -> Vec<u8> {
    let mut w = request(18, 3, correlation_id, Some("client"), true);
    w.string(Some("librdkafka")).string(Some("2.3.0")).no_tags();
    frame(&w.buf)
}

/// ApiVersions response: always header v0.
pub fn api_versions_response(correlation_id: i32) -> Vec<u8> {
    let mut w = response(correlation_id, false);
    w.i16(0).raw(&[2, 0, 0, 0, 0, 0, 9, 0]).i32(0).raw(&[0]);
    frame(&w.buf)
}
