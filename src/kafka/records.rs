//! Walking a record set (the `records` field of Produce and Fetch) by its batch
//! headers only.
//!
//! A record set is a run of record batches. Of each batch tally copies at most its
//! first [`BATCH_HEADER_BYTES`] bytes (enough for magic, attributes and
//! records_count) and skips the rest by count, so the payload is never buffered.
//! A batch that does not fit in what is left of the set is the truncated last
//! batch a broker may return to a Fetch: its bytes are counted, its records are not.
//! Batches in the legacy message formats (magic 0 and 1) and anything unreadable
//! are counted in bytes only: a record set never makes the connection fail.

use super::Codec;

/// Bytes of a magic-2 batch header up to and including `records_count`.
pub(crate) const BATCH_HEADER_BYTES: usize = 61;
/// baseOffset (8) + batchLength (4): enough to know a batch's size.
const LENGTH_PREFIX_BYTES: usize = 12;
const MAGIC_OFFSET: usize = 16;
const ATTRIBUTES_OFFSET: usize = 21;
const RECORDS_COUNT_OFFSET: usize = 57;
const CURRENT_MAGIC: u8 = 2;

/// What a record set held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RecordStats {
    pub(crate) bytes: u64,
    pub(crate) records: u64,
    pub(crate) batches: u32,
    pub(crate) codecs: u8,
}

/// Where the walker is inside the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Copying the first bytes of a batch into `header`.
    Header,
    /// Skipping the rest of the current batch.
    Payload { left: u32 },
    /// Counting the rest of the set without reading it (truncated or unreadable).
    Opaque,
}

/// Streaming walker over one record set.
#[derive(Debug, Clone)]
pub(crate) struct RecordWalker {
    /// Bytes of the set not yet consumed.
    left: u32,
    position: Position,
    header: [u8; BATCH_HEADER_BYTES],
    header_len: usize,
    stats: RecordStats,
}

impl Default for RecordWalker {
    fn default() -> Self {
        Self::new(0)
    }
}

impl RecordWalker {
    /// A walker over a set of `len` bytes.
    pub(crate) fn new(len: u32) -> Self {
        RecordWalker {
            left: len,
            position: Position::Header,
            header: [0; BATCH_HEADER_BYTES],
            header_len: 0,
            stats: RecordStats {
                bytes: u64::from(len),
                ..RecordStats::default()
            },
        }
    }

    /// Whether the whole set has been consumed.
    pub(crate) fn is_done(&self) -> bool {
        self.left == 0
    }

    /// What the set held (complete once [`is_done`](Self::is_done)).
    pub(crate) fn stats(&self) -> RecordStats {
        self.stats
    }

    /// Consumes up to the end of the set from `input`; returns how many bytes.
    pub(crate) fn feed(&mut self, input: &[u8]) -> usize {
        let mut consumed = 0;
        while self.left > 0 {
            let rest = input.get(consumed..).unwrap_or_default();
            if rest.is_empty() {
                break;
            }
            let step = if self.position == Position::Header {
                let step = self.copy_header(rest);
                self.left -= step.min(self.left);
                step
            } else {
                // What is skipped is never looked at: the same as passing it unread.
                self.skip_unread(len_u32(rest.len()))
            };
            consumed += step as usize;
        }
        consumed
    }

    /// Bytes from here on that [`feed`](Self::feed) would step over without
    /// looking at them: the rest of the current batch's payload, or of an
    /// opaque set.
    pub(crate) fn skippable(&self) -> u32 {
        match self.position {
            Position::Header => 0,
            Position::Payload { left } => left.min(self.left),
            Position::Opaque => self.left,
        }
    }

    /// Accounts for up to `n` bytes passed without their content, exactly as
    /// [`feed`](Self::feed) would; returns how many were taken (at most
    /// [`skippable`](Self::skippable)).
    pub(crate) fn skip_unread(&mut self, n: u32) -> u32 {
        let step = match self.position {
            Position::Header => 0,
            Position::Payload { left } => self.skip_payload(n as usize, left),
            Position::Opaque => self.left.min(n),
        };
        self.left -= step.min(self.left);
        step
    }

    /// What a whole record set, all at hand, holds: the same as feeding it to
    /// [`RecordWalker::new`] in pieces, read in place without copying headers.
    pub(crate) fn whole(set: &[u8]) -> RecordStats {
        let mut walker = RecordWalker::new(len_u32(set.len()));
        let mut rest = set;
        while let Some(prefix) = rest.get(..LENGTH_PREFIX_BYTES) {
            let size = read_i32(prefix, 8)
                .and_then(|length| u64::try_from(length).ok())
                .map(|length| length + LENGTH_PREFIX_BYTES as u64);
            let size = match size {
                Some(size) if size <= rest.len() as u64 && size > LENGTH_PREFIX_BYTES as u64 => {
                    size as usize
                }
                // Truncated or unreadable: the rest counts in bytes only.
                _ => break,
            };
            if let Some(header) = rest
                .get(..BATCH_HEADER_BYTES)
                .filter(|_| size >= BATCH_HEADER_BYTES)
            {
                if header.get(MAGIC_OFFSET) == Some(&CURRENT_MAGIC) {
                    walker.count_batch_of(header);
                }
            }
            rest = rest.get(size..).unwrap_or_default();
        }
        walker.stats
    }

    /// Skips the current batch's payload; returns the bytes skipped.
    fn skip_payload(&mut self, available: usize, left: u32) -> u32 {
        let step = left.min(len_u32(available));
        let left = left - step;
        self.position = if left == 0 {
            Position::Header
        } else {
            Position::Payload { left }
        };
        step
    }

    /// Copies header bytes; returns how many were taken from `rest`.
    fn copy_header(&mut self, rest: &[u8]) -> u32 {
        let wanted = self.header_wanted();
        let room = wanted.saturating_sub(self.header_len);
        let take = room.min(rest.len()).min(self.left as usize);
        if let (Some(dst), Some(src)) = (
            self.header.get_mut(self.header_len..self.header_len + take),
            rest.get(..take),
        ) {
            dst.copy_from_slice(src);
        }
        self.header_len += take;
        // `left` still includes the bytes just taken (the caller subtracts them).
        let left_after = self.left.saturating_sub(len_u32(take));
        if self.header_len == LENGTH_PREFIX_BYTES {
            self.check_batch_fits(left_after);
        }
        if self.position == Position::Header && self.header_len == self.header_wanted() {
            self.finish_header();
        }
        len_u32(take)
    }

    /// How many leading bytes of the current batch to copy.
    fn header_wanted(&self) -> usize {
        match self.batch_size() {
            Some(size) if self.header_len >= LENGTH_PREFIX_BYTES => {
                BATCH_HEADER_BYTES.min(usize::try_from(size).unwrap_or(usize::MAX))
            }
            _ => LENGTH_PREFIX_BYTES,
        }
    }

    /// The whole batch's size (length prefix included), once known and sane.
    fn batch_size(&self) -> Option<u64> {
        let length = read_i32(&self.header, 8)?;
        let length = u64::try_from(length).ok()?;
        Some(length + LENGTH_PREFIX_BYTES as u64)
    }

    /// A batch that does not fit in the rest of the set is truncated: count the
    /// rest of the set in bytes only.
    fn check_batch_fits(&mut self, left_after_prefix: u32) {
        let available = u64::from(left_after_prefix) + LENGTH_PREFIX_BYTES as u64;
        match self.batch_size() {
            Some(size) if size <= available && size > LENGTH_PREFIX_BYTES as u64 => {}
            _ => self.position = Position::Opaque,
        }
    }

    /// Reads magic, codec and record count, then skips the batch's payload.
    fn finish_header(&mut self) {
        let size = self.batch_size().unwrap_or(0);
        if self.header.get(MAGIC_OFFSET) == Some(&CURRENT_MAGIC)
            && self.header_len == BATCH_HEADER_BYTES
        {
            self.count_batch();
        }
        let left = size.saturating_sub(self.header_len as u64);
        self.header_len = 0;
        self.position = match u32::try_from(left) {
            Ok(0) => Position::Header,
            Ok(left) => Position::Payload { left },
            Err(_) => Position::Opaque,
        };
    }

    fn count_batch(&mut self) {
        let header = self.header;
        self.count_batch_of(&header);
    }

    /// Counts a magic-2 batch from its first [`BATCH_HEADER_BYTES`] bytes.
    fn count_batch_of(&mut self, header: &[u8]) {
        let records = read_i32(header, RECORDS_COUNT_OFFSET).unwrap_or(0);
        self.stats.records += u64::try_from(records).unwrap_or(0);
        self.stats.batches = self.stats.batches.saturating_add(1);
        let attributes = read_i16(header, ATTRIBUTES_OFFSET).unwrap_or(0);
        if let Some(codec) = codec_of(attributes) {
            self.stats.codecs |= 1 << (codec as u8);
        }
    }
}

/// The codec in attribute bits 0-2, if it is one Kafka defines.
pub(crate) fn codec_of(attributes: i16) -> Option<Codec> {
    match attributes & 0x7 {
        0 => Some(Codec::None),
        1 => Some(Codec::Gzip),
        2 => Some(Codec::Snappy),
        3 => Some(Codec::Lz4),
        4 => Some(Codec::Zstd),
        _ => None,
    }
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(i32::from_be_bytes(raw))
}

fn read_i16(bytes: &[u8], at: usize) -> Option<i16> {
    let raw: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
    Some(i16::from_be_bytes(raw))
}
