//! Streaming aggregation of what the readers produce.
//!
//! Memory is bounded by the number of distinct keys, never by the number of
//! rows: strings are interned once ([`Interner`]) and every record is folded into
//! a hash map keyed by small integer tuples. Usage is bucketed as it arrives (the
//! granularity is fixed per session), each series' current bucket kept apart
//! in a map small enough for the caches ([`usage::Usage`]); cost lines keep their own period, because
//! splitting a line over buckets may depend on where usage was seen (a resource
//! active for only part of the line's period), which is only known at the end.
//!
//! The per-row cost is what bounds throughput, so each step of a row is kept to
//! a few word operations: a field's id comes from a table keyed by the
//! string's first words, compared in place ([`Interner::id`]); keys hash as a
//! few packed words; the first source of a slot is compared by name only when
//! two rows share a line number, as rows read in order never do.

use crate::error::Error;
use crate::formats::csv::word8;
use crate::model::{
    AllocatedRef, BillColumns, ChargeColumns, CostLine, EntityLevel, Source, UsageRef, UsageSample,
};
use crate::time::{Granularity, Timestamp};
use rust_decimal::Decimal;
use std::hash::{BuildHasherDefault, Hash, Hasher};

pub mod merge;
pub mod slots;
pub mod usage;

use slots::{Batched, Slots};
use usage::{Series, Usage};

/// A fast, non-cryptographic hasher (the Fx hash of rustc) for the aggregates'
/// small integer keys and interned strings: hashing dominates the per-row cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Whole words are read directly (the interner hashes a string per new
        // field value); the tail is zero-padded. Same words, same hash, as a
        // byte-by-byte copy of every chunk.
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 8];
            for (d, s) in word.iter_mut().zip(tail) {
                *d = *s;
            }
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        // A final mix (MurmurHash3's fmix64): Fx alone leaves the low bits, which
        // pick the bucket, depending only on the low bits of the last word.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

/// The [`FxHasher`] builder.
pub type BuildFx = BuildHasherDefault<FxHasher>;

/// A `HashMap` with [`FxHasher`].
pub type HashMap<K, V> = std::collections::HashMap<K, V, BuildFx>;

/// Two words that, with the length, determine a string of up to 16 bytes: its
/// first, middle and last bytes (up to 3: together every byte, without a loop
/// over them), or its first and last 4 or 8 bytes (overlapping, so together
/// they cover every byte). Longer strings share them with others.
fn words(text: &str) -> (u64, u64) {
    let b = text.as_bytes();
    let len = b.len();
    match len {
        0..=3 => (b.iter().fold(0u64, |w, c| w << 8 | u64::from(*c)), 0),
        4..=7 => (u64::from(word4(b, 0)), u64::from(word4(b, len - 4))),
        _ => (word8(b, 0), word8(b, len - 8)),
    }
}

/// The 4 bytes of `s` from `from` (zero past the end; callers stay inside).
fn word4(s: &[u8], from: usize) -> u32 {
    s.get(from..from.saturating_add(4))
        .and_then(|w| <[u8; 4]>::try_from(w).ok())
        .map_or(0, u32::from_le_bytes)
}

/// An interned string's id.
pub type Sym = u32;

/// Strings stored once, referred to by [`Sym`].
///
/// The ids live in an open-addressing table (linear probing, at most half
/// full) keyed by a string's length and two words (`key_words`): up to 16
/// bytes they *are* the string, so a lookup compares two words and a length
/// in one entry and never reads a name; a longer string's words are a hash of
/// all its bytes and its first 8, and a match is confirmed on the text.
/// Nothing is evicted, so a known string is always found in the table: a
/// usage file's rows go round thousands of principals, which a cache in front
/// of a map kept missing (one lookup in twenty, each a hash of the text, a
/// probe and a comparison with a string elsewhere in memory).
#[derive(Debug)]
pub struct Interner {
    names: Vec<String>,
    /// The table; its length is a power of two, at least twice `names`'.
    table: Vec<Entry>,
}

/// A table entry: the id of the string of `len` bytes with these [`key_words`].
#[derive(Debug, Clone, Copy)]
struct Entry {
    words: (u64, u64),
    len: u32,
    id: Sym,
}

/// An empty entry (no string has this id).
const VACANT: Entry = Entry {
    words: (0, 0),
    len: 0,
    id: Sym::MAX,
};

/// The table's first length (4096 entries, 96 KiB).
const FIRST_ENTRIES: usize = 1 << 12;

/// The words a string is keyed by with its length: the string itself up to
/// 16 bytes ([`words`]); beyond, a hash of every byte (so that names differing
/// only in their middle do not pile up in one probe chain) and the first word.
#[inline(always)]
fn key_words(text: &str) -> (u64, u64) {
    let bytes = text.as_bytes();
    if bytes.len() <= 16 {
        return words(text);
    }
    let mut hasher = FxHasher::default();
    hasher.write(bytes);
    (hasher.finish(), word8(bytes, 0))
}

/// The first slot, in a table of `1 << bits` entries, of a string of `len`
/// bytes with these [`key_words`].
#[inline(always)]
fn first_slot(len: usize, (head, tail): (u64, u64), bits: u32) -> usize {
    // The top bits of a product depend on all the bits below them.
    let mixed = (head ^ tail.rotate_left(29) ^ len as u64).wrapping_mul(FX_SEED);
    usize::try_from(mixed.checked_shr(64 - bits).unwrap_or(0)).unwrap_or(0)
}

/// Walks the probe chain from slot `first` (linear, wrapping): the first entry
/// `wanted` accepts, or the vacant slot that ends the chain. The table is
/// never full, so a chain always ends.
#[inline(always)]
fn walk(table: &[Entry], first: usize, wanted: impl Fn(&Entry) -> bool) -> Result<&Entry, usize> {
    let mask = table.len().wrapping_sub(1);
    let mut slot = first;
    while let Some(entry) = table.get(slot) {
        if entry.id == Sym::MAX {
            return Err(slot);
        }
        if wanted(entry) {
            return Ok(entry);
        }
        slot = (slot + 1) & mask;
    }
    Err(slot)
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            names: Vec::new(),
            table: vec![VACANT; FIRST_ENTRIES],
        }
    }
}

impl Interner {
    /// The id of `text`, adding it when new. Inlined into each call site (a
    /// dozen per row): a hit in the first entry is a few instructions.
    #[inline(always)]
    pub fn id(&mut self, text: &str) -> Sym {
        let key = key_words(text);
        match self.probe(text, key) {
            Ok(id) => id,
            Err(vacant) => self.add(text, key, vacant),
        }
    }

    /// The id of `text` (keyed by `key`), or the vacant slot that ends its
    /// probe chain. The table is never full, so a chain always ends.
    #[inline(always)]
    fn probe(&self, text: &str, key: (u64, u64)) -> Result<Sym, usize> {
        let len = text.len();
        let first = first_slot(len, key, self.table.len().trailing_zeros());
        // Up to 16 bytes, the length and the words are the string.
        walk(&self.table, first, |entry| {
            usize::try_from(entry.len).ok() == Some(len)
                && entry.words == key
                && (len <= 16 || self.name(entry.id) == text)
        })
        .map(|entry| entry.id)
    }

    /// Stores `text` under the next id in the `vacant` slot, the table doubled
    /// when that makes it more than half full.
    #[inline(never)]
    fn add(&mut self, text: &str, words: (u64, u64), vacant: usize) -> Sym {
        let id = Sym::try_from(self.names.len()).unwrap_or(Sym::MAX);
        self.names.push(text.to_string());
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        if let Some(entry) = self.table.get_mut(vacant) {
            *entry = Entry { words, len, id };
        }
        if self.names.len().saturating_mul(2) > self.table.len() {
            self.grow();
        }
        id
    }

    /// Doubles the table, each entry moved to its slot in the larger one (its
    /// length and words are its key: no name is read).
    fn grow(&mut self) {
        let larger = vec![VACANT; self.table.len().saturating_mul(2)];
        let old = std::mem::replace(&mut self.table, larger);
        let bits = self.table.len().trailing_zeros();
        for entry in old.into_iter().filter(|e| e.id != Sym::MAX) {
            let len = usize::try_from(entry.len).unwrap_or(usize::MAX);
            let first = first_slot(len, entry.words, bits);
            if let Err(vacant) = walk(&self.table, first, |_| false) {
                if let Some(taken) = self.table.get_mut(vacant) {
                    *taken = entry;
                }
            }
        }
    }

    /// The id of `text` if it was seen.
    pub fn find(&self, text: &str) -> Option<Sym> {
        self.probe(text, key_words(text)).ok()
    }

    /// The text of `id` (empty for an unknown id).
    pub fn name(&self, id: Sym) -> &str {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.names.get(i))
            .map_or("", String::as_str)
    }

    /// Each id's rank in the sorted order of the strings, so that keys can be
    /// ordered by name with integer comparisons.
    pub fn ranks(&self) -> Vec<u32> {
        let mut order: Vec<usize> = (0..self.names.len()).collect();
        order.sort_unstable_by(|a, b| self.names.get(*a).cmp(&self.names.get(*b)));
        let mut ranks = vec![0u32; self.names.len()];
        for (rank, id) in order.into_iter().enumerate() {
            if let Some(slot) = ranks.get_mut(id) {
                *slot = u32::try_from(rank).unwrap_or(u32::MAX);
            }
        }
        ranks
    }

    /// How many distinct strings are stored.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The identity of a cost line (everything but the amounts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LineKey {
    /// Organization.
    pub org: Sym,
    /// Product.
    pub product: Sym,
    /// Line type.
    pub line_type: Sym,
    /// Resource.
    pub resource: Sym,
    /// Environment.
    pub environment: Sym,
    /// Unit.
    pub unit: Sym,
    /// Currency.
    pub currency: Sym,
    /// Owner of record given by the bill.
    pub owner_of_record: Sym,
    /// The bill's charge category (FOCUS), if any.
    pub charge_category: Sym,
    /// The bill's charge frequency (FOCUS), if any.
    pub charge_frequency: Sym,
    /// The bill's own columns ([`crate::model::BillColumns`]'s text), if any.
    pub bill_columns: Sym,
}

/// A line's period and active fraction (the part of the key that time-splitting uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    /// Inclusive start.
    pub start: Timestamp,
    /// Exclusive end.
    pub end: Timestamp,
    /// Active fraction, if the line gives one.
    pub active_fraction: Option<Decimal>,
}

/// Amount and provenance of aggregated lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount {
    /// Sum of the amounts.
    pub amount: Decimal,
    /// Sum of the quantities (cost lines; zero for allocated rows).
    pub quantity: Decimal,
    /// How many input rows were folded in.
    pub rows: u64,
    /// The first source's file (smallest line, then file), for the audit trail.
    pub file: Sym,
    /// The first source's line.
    pub line: u64,
}

impl Amount {
    /// The amount of one input row from `(file, line)`.
    fn one(amount: Decimal, quantity: Decimal, (file, line): (Sym, u64)) -> Amount {
        Amount {
            amount,
            quantity,
            rows: 1,
            file,
            line,
        }
    }

    /// The first source, as a [`Source`].
    pub fn source(&self, strings: &Interner) -> Source {
        Source {
            file: strings.name(self.file).to_string(),
            line: self.line,
        }
    }
}

/// Usage key: who used which resource how much, in which bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UsageKey {
    /// Organization.
    pub org: Sym,
    /// Bucket start.
    pub bucket: Timestamp,
    /// Resource (cluster).
    pub resource: Sym,
    /// Principal.
    pub principal: Sym,
    /// Topic (may be the empty string's id).
    pub topic: Sym,
    /// Metric.
    pub metric: Sym,
}

/// Key of an already-allocated row (Confluent export, WarpStream chargebacks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AllocatedKey {
    /// Organization.
    pub org: Sym,
    /// Bucket start (at the session's granularity).
    pub bucket: Timestamp,
    /// Who is charged.
    pub owner: Sym,
    /// Entity level.
    pub level: EntityLevel,
    /// Environment.
    pub environment: Sym,
    /// Resource.
    pub resource: Sym,
    /// Product.
    pub product: Sym,
    /// Line type.
    pub line_type: Sym,
    /// Unit.
    pub unit: Sym,
    /// Currency.
    pub currency: Sym,
    /// Method.
    pub method: Sym,
    /// Chain step.
    pub chain_step: u32,
    /// Reason.
    pub reason: Sym,
}

/// Two ids as one word to hash: the keys below are hashed once per input row,
/// and the Fx hash costs one round per word written, whatever its width.
fn pair(a: u32, b: u32) -> u64 {
    u64::from(a) << 32 | u64::from(b)
}

impl Hash for UsageKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(pair(self.org, self.resource));
        state.write_i64(self.bucket.0);
        state.write_u64(pair(self.principal, self.topic));
        state.write_u32(self.metric);
    }
}

impl Hash for AllocatedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(pair(self.org, self.owner));
        state.write_i64(self.bucket.0);
        state.write_u64(pair(self.environment, self.resource));
        state.write_u64(pair(self.product, self.line_type));
        state.write_u64(pair(self.unit, self.currency));
        state.write_u64(pair(self.method, self.reason));
        state.write_u64(pair(self.chain_step, self.level as u32));
    }
}

/// Everything read so far, aggregated.
#[derive(Debug)]
pub struct Store {
    /// Interned strings.
    pub strings: Interner,
    /// The bucket size.
    pub granularity: Granularity,
    /// The custom range, if any: input outside it is refused.
    pub range: Option<(Timestamp, Timestamp)>,
    /// Cost lines by identity and period.
    pub lines: HashMap<(LineKey, Period), Amount>,
    /// The summed [`ChargeColumns`] of the `lines` read from a FOCUS bill
    /// (apart: the other lines, most of them, have none).
    pub charge_columns: HashMap<(LineKey, Period), ChargeColumns>,
    /// Usage by key.
    pub usage: Usage,
    /// The last usage interval seen and its bucket ([`Store::usage_bucket`]).
    last_usage_span: Option<(Timestamp, Timestamp, Option<Timestamp>)>,
    /// Already-allocated rows by key (those [`Store::defer_allocated`] keeps
    /// back are in it once [`Store::fold_deferred`] ran).
    pub allocated: Slots<AllocatedKey, Amount>,
    /// Already-allocated rows keyed but not yet folded into `allocated`, at
    /// most [`DEFERRED_ROWS`] (see [`Store::defer_allocated`]).
    deferred: Vec<DeferredRow>,
    /// The sum of the absolute mantissas of every amount folded into
    /// `allocated` (saturating): while it is below 2^96, no sum of those
    /// amounts can overflow.
    allocated_bound: u128,
    /// The last (timestamp, its bucket) computed by [`Store::bucket_of`]:
    /// consecutive export rows mostly share a timestamp.
    last_bucket: Option<(Timestamp, Timestamp)>,
    /// The last ids of the already-allocated rows' steady fields.
    steady: SteadyIds,
}

/// The ids an already-allocated row's steady fields had last: a file's rows
/// mostly share their organization, currency, method, reason and file name,
/// and comparing with the last one's name is cheaper than hashing (a file
/// name is longer than the 16 bytes the interner keys without hashing).
#[derive(Debug, Default, Clone, Copy)]
struct SteadyIds {
    org: Sym,
    currency: Sym,
    method: Sym,
    reason: Sym,
    file: Sym,
}

/// The id of `text`, `last` when it is `last`'s name (then updated to it).
#[inline(always)]
fn steady_id(strings: &mut Interner, last: &mut Sym, text: &str) -> Sym {
    if !same_text(strings.name(*last), text) {
        *last = strings.id(text);
    }
    *last
}

/// `a == b`, up to 16 bytes by their [`words`] (no call to `memcmp`).
#[inline(always)]
fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && if a.len() <= 16 {
            words(a) == words(b)
        } else {
            a == b
        }
}

/// Whether a metric is a level (aggregated by maximum) rather than a count (summed).
pub fn is_gauge(metric: &str) -> bool {
    metric.starts_with("retention")
}

impl Store {
    /// An empty store bucketing at `granularity`, limited to `range`.
    pub fn new(granularity: Granularity, range: Option<(Timestamp, Timestamp)>) -> Self {
        let mut strings = Interner::default();
        strings.id("");
        Store {
            strings,
            granularity,
            range,
            lines: HashMap::default(),
            charge_columns: HashMap::default(),
            usage: Usage::default(),
            last_usage_span: None,
            allocated: Slots::default(),
            deferred: Vec::with_capacity(DEFERRED_ROWS),
            allocated_bound: 0,
            last_bucket: None,
            steady: SteadyIds::default(),
        }
    }

    /// Whether `[start, end)` (or the instant `start` when equal) lies outside the range.
    fn outside(&self, start: Timestamp, end: Timestamp) -> bool {
        match self.range {
            Some((from, to)) => {
                if start == end {
                    start < from || start >= to
                } else {
                    end <= from || start >= to
                }
            }
            None => false,
        }
    }

    /// Folds in a cost line.
    pub fn add_line(&mut self, line: &CostLine) -> Result<(), Error> {
        if self.outside(line.start, line.end) {
            return Err(Error::input(
                &line.source.file,
                line.source.line,
                "start_date",
                "outside the requested range",
            ));
        }
        let s = &mut self.strings;
        let key = LineKey {
            org: s.id(&line.org_id),
            product: s.id(&line.product),
            line_type: s.id(&line.line_type),
            resource: s.id(&line.resource_id),
            environment: s.id(&line.environment_id),
            unit: s.id(&line.unit),
            currency: s.id(&line.currency),
            owner_of_record: s.id(&line.owner_of_record),
            charge_category: s.id(&line.charge_category),
            charge_frequency: s.id(&line.charge_frequency),
            bill_columns: s.id(line.bill_columns.as_text()),
        };
        let period = Period {
            start: line.start,
            end: line.end,
            active_fraction: line.active_fraction,
        };
        let part = Amount::one(
            line.amount,
            line.quantity,
            (s.id(&line.source.file), line.source.line),
        );
        if let Some(columns) = &line.charge_columns {
            add_charge_columns(&mut self.charge_columns, (key, period), columns)?;
        }
        add_amount(self.lines.entry((key, period)), part, &self.strings)
    }

    /// Folds in a usage sample, split over the buckets it spans by time.
    pub fn add_usage(&mut self, sample: &UsageSample) -> Result<(), Error> {
        self.add_usage_ref(&sample.as_ref())
    }

    /// [`Store::add_usage`] of a borrowed sample (the usage CSV's per-row
    /// path): its texts are copied only the first time they are seen.
    pub fn add_usage_ref(&mut self, sample: &UsageRef<'_>) -> Result<(), Error> {
        if self.outside(sample.start, sample.end) {
            return Err(Error::input(
                sample.file,
                sample.line,
                "bucket_start",
                "outside the requested range",
            ));
        }
        let one_bucket = self.usage_bucket(sample.start, sample.end);
        let s = &mut self.strings;
        let org = usage_field_id(s, sample.org_id);
        let resource = s.id(sample.resource_id);
        let principal = s.id(sample.principal);
        let topic = usage_field_id(s, sample.topic);
        let metric = s.id(sample.metric);
        let gauge = is_gauge(sample.metric);
        let series = Series {
            org,
            resource,
            principal,
            topic,
            metric,
        };
        if let Some(bucket) = one_bucket {
            // The common case: the sample lies inside one bucket.
            return self.usage.add(series, bucket, sample.value, gauge);
        }
        for (bucket, value) in split_by_time(
            sample.start,
            sample.end,
            sample.value,
            self.granularity,
            gauge,
        )? {
            self.usage.add(series, bucket, value, gauge)?;
        }
        Ok(())
    }

    /// The bucket of a usage sample over `[start, end)` when it lies inside one,
    /// `None` when it spans several (to be split by time). The last answer is
    /// reused: the rows of one plugin flush share their interval, and flooring
    /// plus the next bucket's start cost more than comparing two timestamps.
    pub(crate) fn usage_bucket(&mut self, start: Timestamp, end: Timestamp) -> Option<Timestamp> {
        if let Some((last_start, last_end, bucket)) = self.last_usage_span {
            if last_start == start && last_end == end {
                return bucket;
            }
        }
        let first = start.floor(self.granularity);
        let bucket = (end <= first.next_bucket(self.granularity)).then_some(first);
        self.last_usage_span = Some((start, end, bucket));
        bucket
    }

    /// The bucket of `at` at the session's granularity (the last answer reused).
    fn bucket_of(&mut self, at: Timestamp) -> Timestamp {
        if let Some((last, bucket)) = self.last_bucket {
            if last == at {
                return bucket;
            }
        }
        let bucket = at.floor(self.granularity);
        self.last_bucket = Some((at, bucket));
        bucket
    }

    /// Folds in an already-allocated row (re-bucketed at the session's granularity).
    /// The row is borrowed: strings are copied only the first time they are seen.
    pub fn add_allocated(&mut self, row: &AllocatedRef<'_>) -> Result<(), Error> {
        let result = self.defer_allocated(row);
        self.fold_deferred()?;
        result
    }

    /// [`Store::add_allocated`], except that the row may be kept back, keyed,
    /// until [`Store::fold_deferred`] (at the latest when `DEFERRED_ROWS`
    /// are waiting). An export's rows hit their slots in no useful order, and
    /// slots of a hundred thousand entries miss the cache on every probe:
    /// folded as a batch ([`Slots::fold_batch`]), their misses overlap instead
    /// of each stalling the parsing of the next row. A row is kept back only
    /// while no sum of the amounts can overflow (`Store::allocated_bound`),
    /// so folding it later cannot fail on its amount and gives what folding it
    /// now would: a row that could fail is folded now and its error returned
    /// for it.
    pub fn defer_allocated(&mut self, row: &AllocatedRef<'_>) -> Result<(), Error> {
        if self.outside(row.bucket_start, row.bucket_start) {
            return Err(Error::input(
                row.file,
                row.line,
                "timestamp",
                "outside the requested range",
            ));
        }
        let bucket = self.bucket_of(row.bucket_start);
        let s = &mut self.strings;
        let steady = &mut self.steady;
        let deferred = DeferredRow {
            key: AllocatedKey {
                org: steady_id(s, &mut steady.org, row.org_id),
                bucket,
                owner: s.id(row.owner_id),
                level: row.level,
                environment: s.id(row.environment_id),
                resource: s.id(row.resource_id),
                product: s.id(row.product),
                line_type: s.id(row.line_type),
                unit: s.id(row.unit),
                currency: steady_id(s, &mut steady.currency, row.currency),
                method: steady_id(s, &mut steady.method, row.method),
                chain_step: row.chain_step,
                reason: steady_id(s, &mut steady.reason, row.reason),
            },
            amount: row.chargeback_cost,
            file: steady_id(s, &mut steady.file, row.file),
            line: row.line,
        };
        let magnitude = row.chargeback_cost.mantissa().unsigned_abs();
        self.allocated_bound = self.allocated_bound.saturating_add(magnitude);
        if self.allocated_bound >= PAST_96_BITS {
            self.fold_deferred()?;
            let part = Amount::one(
                deferred.amount,
                Decimal::ZERO,
                (deferred.file, deferred.line),
            );
            let strings = &self.strings;
            return self
                .allocated
                .fold_batch(&[(deferred.key, part)], |slot, (_, part)| {
                    fold_amount(slot, part.clone(), strings)
                });
        }
        self.deferred.push(deferred);
        if self.deferred.len() >= DEFERRED_ROWS {
            self.fold_deferred()?;
        }
        Ok(())
    }

    /// Folds the rows [`Store::defer_allocated`] kept back into `allocated`,
    /// in the order they came. Their sums cannot overflow (see there), so
    /// `saturating_add` is `checked_add` here; the only error is more slots
    /// than [`Slots`] indexes (2^32), which no memory holds.
    pub fn fold_deferred(&mut self) -> Result<(), Error> {
        let Store {
            deferred,
            allocated,
            strings,
            ..
        } = self;
        let folded = allocated.fold_batch(deferred, |slot, row| {
            slot.amount = slot.amount.saturating_add(row.amount);
            slot.rows = slot.rows.saturating_add(1);
            take_earlier_source(slot, (row.file, row.line), strings);
            Ok(())
        });
        deferred.clear();
        folded
    }
}

/// Rows [`Store::defer_allocated`] keeps back at most: enough misses to
/// overlap, few enough to stay in the first-level cache.
const DEFERRED_ROWS: usize = 32;

/// The first mantissa past the 96 bits of a `Decimal`.
pub const PAST_96_BITS: u128 = 1 << 96;

impl Batched<AllocatedKey, Amount> for DeferredRow {
    fn key(&self) -> &AllocatedKey {
        &self.key
    }

    fn part(&self) -> Amount {
        Amount::one(self.amount, Decimal::ZERO, (self.file, self.line))
    }
}

/// An already-allocated row, keyed, waiting to be folded.
#[derive(Debug, Clone, Copy)]
struct DeferredRow {
    /// Its slot.
    key: AllocatedKey,
    /// Its amount.
    amount: Decimal,
    /// Its file.
    file: Sym,
    /// Its line.
    line: u64,
}

/// The id [`Store::new`] gives the empty string, interned first.
const EMPTY_ID: Sym = 0;

/// The id of a usage field that is often empty (the organization of a file
/// given none, the topic of a per-principal metric): the empty string's id
/// without the interner's cache, else [`Interner::id`].
#[inline(always)]
fn usage_field_id(strings: &mut Interner, text: &str) -> Sym {
    if text.is_empty() {
        EMPTY_ID
    } else {
        strings.id(text)
    }
}

/// Adds a FOCUS line's `columns` to those of its identity and period.
fn add_charge_columns(
    all: &mut HashMap<(LineKey, Period), ChargeColumns>,
    key: (LineKey, Period),
    columns: &ChargeColumns,
) -> Result<(), Error> {
    use std::collections::hash_map::Entry;
    match all.entry(key) {
        Entry::Occupied(mut slot) => {
            let sum = slot.get().checked_add(columns);
            *slot.get_mut() = sum.ok_or_else(|| Error::overflow("summing FOCUS columns"))?;
        }
        Entry::Vacant(slot) => {
            slot.insert(*columns);
        }
    }
    Ok(())
}

/// Folds `part` (one input row's amount, or a part's whole slot when a file read
/// in parts is merged) into an aggregate slot: amounts, quantities and row counts
/// summed; the slot keeps the smallest (line, file name) as its source, which is
/// order-independent and cheap for rows read in order.
fn add_amount<K>(
    entry: std::collections::hash_map::Entry<'_, K, Amount>,
    part: Amount,
    strings: &Interner,
) -> Result<(), Error> {
    use std::collections::hash_map::Entry;
    match entry {
        Entry::Occupied(mut slot) => fold_amount(slot.get_mut(), part, strings),
        Entry::Vacant(slot) => {
            slot.insert(part);
            Ok(())
        }
    }
}

/// Folds `part` into an existing slot (see [`add_amount`]).
fn fold_amount(slot: &mut Amount, part: Amount, strings: &Interner) -> Result<(), Error> {
    // The row that overflowed is rejected, by its file and line: the slot
    // keeps the sum before it.
    let overflow = |what: &str| {
        Error::input(
            strings.name(part.file),
            part.line,
            "",
            format!(
                "its {what} added to the rows before it of the same line and bucket \
                 is past the largest decimal (about 7.9e28)"
            ),
        )
    };
    let amount = slot
        .amount
        .checked_add(part.amount)
        .ok_or_else(|| overflow("amounts"))?;
    // Allocated rows have no quantity: their zero is not added to the slot's
    // same zero. Only then: a zero added to a zero of another scale or sign
    // would give the added one's, which the slot must keep.
    let same_zero =
        part.quantity.is_zero() && part.quantity.serialize() == slot.quantity.serialize();
    if !same_zero {
        slot.quantity = slot
            .quantity
            .checked_add(part.quantity)
            .ok_or_else(|| overflow("quantities"))?;
    }
    slot.amount = amount;
    slot.rows = slot.rows.saturating_add(part.rows);
    take_earlier_source(slot, (part.file, part.line), strings);
    Ok(())
}

/// Makes `(file, line)` the slot's source when it comes first (smallest line,
/// then file name).
fn take_earlier_source(slot: &mut Amount, (file, line): (Sym, u64), strings: &Interner) {
    // Rows read in order come after the slot's first source: the names
    // are compared only on a tie of lines between different files.
    let earlier = line < slot.line
        || (line == slot.line && file != slot.file && strings.name(file) < strings.name(slot.file));
    if earlier {
        slot.file = file;
        slot.line = line;
    }
}

impl Store {
    /// The cost lines read, one per identity and period (amounts and quantities
    /// summed; price = amount / quantity), sorted by source.
    pub fn cost_lines(&self) -> Vec<CostLine> {
        let s = &self.strings;
        let mut lines: Vec<CostLine> = self
            .lines
            .iter()
            .map(|((k, p), a)| CostLine {
                source: a.source(s),
                org_id: s.name(k.org).to_string(),
                id: String::new(),
                product: s.name(k.product).to_string(),
                line_type: s.name(k.line_type).to_string(),
                resource_id: s.name(k.resource).to_string(),
                environment_id: s.name(k.environment).to_string(),
                start: p.start,
                end: p.end,
                amount: a.amount,
                original_amount: a.amount,
                quantity: a.quantity,
                unit: s.name(k.unit).to_string(),
                price: a.amount.checked_div(a.quantity).unwrap_or_default(),
                currency: s.name(k.currency).to_string(),
                active_fraction: p.active_fraction,
                owner_of_record: s.name(k.owner_of_record).to_string(),
                charge_category: s.name(k.charge_category).to_string(),
                charge_frequency: s.name(k.charge_frequency).to_string(),
                bill_columns: BillColumns::from_text(s.name(k.bill_columns)),
                charge_columns: self.charge_columns.get(&(*k, *p)).copied().map(Box::new),
            })
            .collect();
        // Two slots share a source when records share a line (after a lone `\r`):
        // their identity breaks the tie, not the hash map's order.
        lines.sort_by(|a, b| line_order(a).cmp(&line_order(b)));
        lines
    }
}

/// The order of [`Store::cost_lines`]: by source, then by identity and period.
fn line_order(l: &CostLine) -> (&Source, [&str; 11], Timestamp, Timestamp, Option<Decimal>) {
    let names = [
        l.org_id.as_str(),
        &l.product,
        &l.line_type,
        &l.resource_id,
        &l.environment_id,
        &l.unit,
        &l.currency,
        &l.owner_of_record,
        &l.charge_category,
        &l.charge_frequency,
        l.bill_columns.as_text(),
    ];
    (&l.source, names, l.start, l.end, l.active_fraction)
}

/// The buckets `[start, end)` overlaps, with the seconds of overlap each.
pub fn bucket_overlaps(
    start: Timestamp,
    end: Timestamp,
    granularity: Granularity,
) -> Vec<(Timestamp, i64)> {
    let mut out = Vec::new();
    let mut bucket = start.floor(granularity);
    while bucket < end {
        let next = bucket.next_bucket(granularity);
        let overlap = next.0.min(end.0) - bucket.0.max(start.0);
        if overlap > 0 {
            out.push((bucket, overlap));
        }
        bucket = next;
    }
    out
}

/// A value over `[start, end)` split over buckets by time (gauges are not split).
fn split_by_time(
    start: Timestamp,
    end: Timestamp,
    value: Decimal,
    granularity: Granularity,
    gauge: bool,
) -> Result<Vec<(Timestamp, Decimal)>, Error> {
    let first = start.floor(granularity);
    if end <= first.next_bucket(granularity) || end <= start {
        return Ok(vec![(first, value)]);
    }
    let overlaps = bucket_overlaps(start, end, granularity);
    if gauge {
        return Ok(overlaps.into_iter().map(|(b, _)| (b, value)).collect());
    }
    let total = Decimal::from(end.0 - start.0);
    overlaps
        .into_iter()
        .map(|(bucket, seconds)| {
            value
                .checked_mul(Decimal::from(seconds))
                .and_then(|v| v.checked_div(total))
                .map(|v| (bucket, v))
                .ok_or_else(|| Error::overflow("splitting usage over buckets"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot's quantity is what `checked_add` gives, to the scale and sign,
    /// whether or not the fold skips adding a zero.
    #[test]
    fn quantities_fold_as_checked_add() {
        let d = |text: &str| text.parse::<Decimal>().unwrap();
        let cases = [
            ("0", "0"),
            ("0", "0.00"),
            ("0.00", "0"),
            ("-0.0", "0"),
            ("0.00", "0.00"),
            ("1.5", "0"),
            ("1.5", "0.000"),
            ("0", "2.25"),
            ("3", "-0.0"),
        ];
        let strings = Interner::default();
        for (sum, part) in cases {
            let mut slot = Amount::one(Decimal::ZERO, d(sum), (0, 1));
            let expected = d(sum).checked_add(d(part)).unwrap();
            fold_amount(
                &mut slot,
                Amount::one(Decimal::ZERO, d(part), (0, 2)),
                &strings,
            )
            .unwrap();
            assert_eq!(
                slot.quantity.serialize(),
                expected.serialize(),
                "{sum} + {part}"
            );
        }
    }

    /// An export row of `owner` on `line_type` at `start` costing `cost`,
    /// from `(file, line)`.
    fn export_row<'a>(
        (owner, line_type, start): (&'a str, &'a str, Timestamp),
        cost: Decimal,
        (file, line): (&'a str, u64),
    ) -> AllocatedRef<'a> {
        AllocatedRef {
            bucket_start: start,
            org_id: "org",
            owner_id: owner,
            level: crate::model::EntityLevel::Principal,
            environment_id: "env-1",
            resource_id: "lkc-1",
            product: "kafka",
            line_type,
            unit: "GB",
            chargeback_cost: cost,
            original_amount: Decimal::ZERO,
            usage_share: Decimal::ZERO,
            currency: "USD",
            method: "confluent_export",
            chain_step: 0,
            reason: "",
            file,
            line,
        }
    }

    /// A FOCUS bill's columns read in two parts and merged are the serial
    /// read's: summed per line, a quantity null only where every charge has
    /// it null. (FOCUS files are read serially today; a part must not drop
    /// them should that change.)
    #[test]
    fn charge_columns_merge_as_read_serially() {
        let d = |text: &str| text.parse::<Decimal>().unwrap();
        let line = |n: u64, billed: &str, list: &str, consumed: Option<&str>| CostLine {
            source: Source {
                file: "bill.csv".into(),
                line: n,
            },
            product: "kafka".into(),
            line_type: "KafkaBase".into(),
            resource_id: "lkc-1".into(),
            start: Timestamp::parse("2026-04-01").unwrap(),
            end: Timestamp::parse("2026-05-01").unwrap(),
            amount: d(billed),
            currency: "USD".into(),
            charge_columns: Some(Box::new(ChargeColumns {
                costs: [d(billed), d(billed), d(list), d(list)],
                quantities: [None, consumed.map(d)],
            })),
            ..CostLine::default()
        };
        let lines = [
            line(2, "1.00", "1.50", None),
            line(3, "2.00", "2.50", Some("7")),
            line(4, "3.00", "3.50", None),
        ];
        let store = || Store::new(Granularity::Monthly, None);
        let mut serial = store();
        lines.iter().for_each(|l| serial.add_line(l).unwrap());
        // The second part numbers its lines from 1 (after its first line, 2).
        let (mut whole, mut part) = (store(), store());
        whole.add_line(&lines[0]).unwrap();
        for l in &lines[1..] {
            let mut shifted = l.clone();
            shifted.source.line -= 2;
            part.add_line(&shifted).unwrap();
        }
        whole.merge(part, 2).unwrap();
        let merged = whole.cost_lines();
        assert_eq!(merged, serial.cost_lines());
        let columns = ChargeColumns {
            costs: [d("6.00"), d("6.00"), d("7.50"), d("7.50")],
            quantities: [None, Some(d("7"))],
        };
        assert_eq!(merged[0].charge_columns.as_deref(), Some(&columns));
    }

    proptest::proptest! {
        #[test]
        fn up_to_16_bytes_the_length_and_words_are_the_string(
            a in "[ab]{0,18}",
            b in "[ab]{0,18}",
        ) {
            let same_words = a.len() == b.len() && words(&a) == words(&b);
            if a.len() <= 16 {
                proptest::prop_assert_eq!(same_words, a == b);
            }
            proptest::prop_assert!(a != b || same_words);
        }

        /// The interner gives one id per distinct text whatever the order,
        /// through probe chains, long texts sharing their length and first and
        /// last 8 bytes, and the table's growth (thousands of names); a text
        /// never seen is not found.
        #[test]
        fn the_interner_is_a_plain_map(
            texts in proptest::collection::vec("[ab]{0,3}|x{8}[ab]{0,4}x{8}|p[0-9]{1,5}", 1..400),
            repeat in 1usize..12,
        ) {
            let mut interner = Interner::default();
            let mut plain: HashMap<String, Sym> = HashMap::default();
            // `repeat` rounds over the texts, each with a suffix of its round:
            // up to 4,800 names, past the first cache size.
            for round in 0..repeat {
                for text in &texts {
                    let text = format!("{text}{round}");
                    let next = Sym::try_from(plain.len()).unwrap();
                    let expected = *plain.entry(text.clone()).or_insert(next);
                    proptest::prop_assert_eq!(interner.id(&text), expected);
                    proptest::prop_assert_eq!(interner.name(expected), text.as_str());
                }
            }
            for (text, id) in &plain {
                proptest::prop_assert_eq!(interner.id(text), *id);
                proptest::prop_assert_eq!(interner.find(text), Some(*id));
                proptest::prop_assert_eq!(interner.find(&format!("{text}?")), None);
            }
            proptest::prop_assert_eq!(interner.len(), plain.len());
        }

        /// Long names that differ only in their middle (same length, same
        /// first and last 8 bytes: topic names around a number) start their
        /// probes in different slots: they do not pile up in one chain.
        #[test]
        fn long_names_alike_at_both_ends_spread_over_the_table(
            numbers in proptest::collection::btree_set(0u32..100_000, 1000),
        ) {
            let bits = FIRST_ENTRIES.trailing_zeros();
            let slots: std::collections::BTreeSet<usize> = numbers
                .iter()
                .map(|n| format!("com.acme.{n:05}.payments.events"))
                .map(|name| first_slot(name.len(), key_words(&name), bits))
                .collect();
            // 1,000 random slots of 4,096 would give about 890 distinct ones.
            proptest::prop_assert!(slots.len() > 800, "{} distinct first slots", slots.len());
        }

        /// Usage samples aggregate as a plain map of their texts does, each
        /// split over its buckets by [`split_by_time`] (summed, or the maximum
        /// for a gauge), to the digit and scale: whatever the order of
        /// intervals — in time order, as a plugin writes them, or going back
        /// to a series' earlier bucket — the series' open buckets
        /// ([`usage::Usage`]) and the reuse of the last interval's bucket
        /// ([`Store::usage_bucket`]) give what a plain map does; and an owned
        /// sample adds what its borrowed fields do.
        #[test]
        fn usage_aggregates_as_a_plain_map(
            mut rows in proptest::collection::vec(
                (0usize..3, 0usize..3, 0usize..3, 0i64..6, 0i64..3, 0i64..1_000_000, proptest::bool::ANY),
                0..200,
            ),
            in_time_order in proptest::bool::ANY,
        ) {
            use std::collections::BTreeMap;
            /// (principal, topic, metric, bucket) -> value's digits and scale.
            type Aggregate = BTreeMap<(String, String, String, Timestamp), [u8; 16]>;
            if in_time_order {
                rows.sort_by_key(|row| row.3);
            }
            let granularity = Granularity::Hourly;
            let mut borrowed = Store::new(granularity, None);
            let mut owned = Store::new(granularity, None);
            let mut expected: BTreeMap<_, Decimal> = BTreeMap::new();
            for (principal, topic, metric, start, hours, value, instant) in rows {
                let principal = ["sa-1", "a-much-longer-principal-name", ""].get(principal).copied().unwrap_or("");
                let topic = ["orders", "", "payments"].get(topic).copied().unwrap_or("");
                let metric = ["produced_bytes", "retention_bytes", "requests"]
                    .get(metric)
                    .copied()
                    .unwrap_or("");
                // Starts on and off the hour; samples over up to three hours, or instants.
                let start = Timestamp(1_775_001_600 + start * 1_800);
                let end = if instant { start } else { Timestamp(start.0 + 1 + hours * 3_600) };
                let value = Decimal::new(value, 1);
                let sample = UsageSample {
                    source: Source { file: "usage.csv".into(), line: 2 },
                    org_id: "org".into(),
                    start,
                    end,
                    resource_id: "lkc-1".into(),
                    principal: principal.into(),
                    principal_source: "sasl_plain".into(),
                    topic: topic.into(),
                    metric: metric.into(),
                    value,
                };
                proptest::prop_assert!(borrowed.add_usage_ref(&sample.as_ref()).is_ok());
                proptest::prop_assert!(owned.add_usage(&sample.as_ref().to_sample()).is_ok());
                let gauge = is_gauge(metric);
                for (bucket, part) in split_by_time(start, end, value, granularity, gauge).unwrap_or_default() {
                    let slot = expected
                        .entry((principal.to_string(), topic.to_string(), metric.to_string(), bucket))
                        .or_insert(Decimal::ZERO);
                    *slot = if gauge { (*slot).max(part) } else { slot.checked_add(part).unwrap_or_default() };
                }
            }
            let by_text = |store: &Store| -> Aggregate {
                let s = &store.strings;
                store
                    .usage
                    .iter()
                    .map(|(k, v)| {
                        let name = |id| s.name(id).to_string();
                        ((name(k.principal), name(k.topic), name(k.metric), k.bucket), v.serialize())
                    })
                    .collect()
            };
            let expected: Aggregate = expected.into_iter().map(|(k, v)| (k, v.serialize())).collect();
            proptest::prop_assert_eq!(borrowed.strings.find(""), Some(EMPTY_ID));
            proptest::prop_assert_eq!(by_text(&borrowed), expected.clone());
            proptest::prop_assert_eq!(by_text(&owned), expected);
        }

        /// Allocated rows aggregate as a plain map of their texts does: amounts
        /// summed, rows counted, the smallest (line, file name) kept, whatever
        /// the order of lines and files (the file's id is looked up lazily).
        #[test]
        fn allocated_rows_aggregate_as_a_plain_map(
            rows in proptest::collection::vec(
                (0usize..3, 0usize..2, 0i64..40, -10_000i64..10_000, 0usize..2, 1u64..30),
                0..200,
            ),
            deferred in proptest::bool::ANY,
        ) {
            use std::collections::BTreeMap;
            /// (owner, line type, bucket) -> (amount, rows, first source).
            type Aggregate = BTreeMap<(String, String, Timestamp), (Decimal, u64, (u64, String))>;
            let mut store = Store::new(Granularity::Monthly, None);
            let mut expected: Aggregate = BTreeMap::new();
            for (owner, line_type, day, cents, file, line) in rows {
                let owner = ["sa-1", "sa-2", ""].get(owner).copied().unwrap_or("");
                let line_type = ["KafkaNetworkWrite", "KafkaNetworkRead"]
                    .get(line_type)
                    .copied()
                    .unwrap_or("");
                let file = ["b.csv", "a.csv"].get(file).copied().unwrap_or("");
                let start = Timestamp(1_775_001_600 + day * 86_400);
                let cost = Decimal::new(cents, 2);
                let row = export_row((owner, line_type, start), cost, (file, line));
                let added = if deferred {
                    store.defer_allocated(&row)
                } else {
                    store.add_allocated(&row)
                };
                proptest::prop_assert!(added.is_ok());
                let key = (owner.to_string(), line_type.to_string(), start.floor(Granularity::Monthly));
                let slot = expected
                    .entry(key)
                    .or_insert((Decimal::ZERO, 0, (line, file.to_string())));
                slot.0 = slot.0.checked_add(cost).unwrap_or_default();
                slot.1 += 1;
                slot.2 = slot.2.clone().min((line, file.to_string()));
            }
            store.fold_deferred().unwrap();
            let s = &store.strings;
            let got: Aggregate = store
                .allocated
                .iter()
                .map(|(k, a)| {
                    (
                        (s.name(k.owner).to_string(), s.name(k.line_type).to_string(), k.bucket),
                        (a.amount, a.rows, (a.line, s.name(a.file).to_string())),
                    )
                })
                .collect();
            proptest::prop_assert_eq!(got, expected);
            proptest::prop_assert!(store.allocated.values().all(|a| a.quantity.is_zero()));
        }

        /// Rows kept back and folded later give what `checked_add` row by row
        /// gives: an overflow fails the same row, and every slot is the same
        /// to the digit and scale where huge sums round.
        #[test]
        fn deferred_rows_fold_as_rows_folded_at_once(
            rows in proptest::collection::vec(
                (0usize..2, 0u32..3, -1_000_000i64..1_000_000, 0u32..4, 1u64..50),
                0..120,
            ),
        ) {
            use std::collections::BTreeMap;
            // owner -> (sum, rows), by `checked_add` row by row.
            let mut at_once: BTreeMap<&str, (Decimal, u64)> = BTreeMap::new();
            let mut deferred = Store::new(Granularity::Monthly, None);
            for (owner, size, mantissa, scale, line) in rows {
                let owner = ["sa-1", "sa-2"].get(owner).copied().unwrap_or("");
                // A few amounts near `Decimal::MAX`, so that sums overflow or round.
                let cost = match size {
                    0 => Decimal::MAX / Decimal::from(3 + mantissa.rem_euclid(5)),
                    _ => Decimal::new(mantissa, scale),
                };
                let at = Timestamp(1_775_001_600);
                let row = export_row((owner, "KafkaNetworkWrite", at), cost, ("a.csv", line));
                let slot = at_once.entry(owner).or_insert((Decimal::ZERO, 0));
                let now = slot.0.checked_add(cost);
                if let Some(sum) = now {
                    *slot = (sum, slot.1 + 1);
                }
                let later = deferred.defer_allocated(&row);
                proptest::prop_assert_eq!(now.is_some(), later.is_ok());
            }
            deferred.fold_deferred().unwrap();
            let s = &deferred.strings;
            let got: BTreeMap<&str, ([u8; 16], u64)> = deferred
                .allocated
                .iter()
                .map(|(k, a)| (s.name(k.owner), (a.amount.serialize(), a.rows)))
                .collect();
            let expected: BTreeMap<&str, ([u8; 16], u64)> = at_once
                .into_iter()
                .map(|(owner, (sum, rows))| (owner, (sum.serialize(), rows)))
                .collect();
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
