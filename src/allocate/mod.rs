//! Allocation rules and the engine that applies them.
//!
//! ## Design
//!
//! Readers fold records into a [`store::Store`] while the files stream by. At the
//! end, [`allocate`] turns the store into [`AllocationRow`]s:
//!
//! 1. **Time split.** Each cost line is split over the UTC buckets its period
//!    overlaps, by seconds of overlap (exact apportionment, so the parts sum to the
//!    line). A custom range cuts boundary buckets, which are flagged `partial`; the
//!    part of a line outside the range is reported, not allocated. A line with an
//!    `active_fraction` below 1 is prorated onto the buckets in which its resource
//!    was active (had usage), when there are any.
//! 2. **Merge.** Within a bucket, lines with the same identity (org, product, line
//!    type, resource, environment, unit) are summed: one allocation per metric ×
//!    resource × bucket, as in Confluent's export.
//! 3. **Rules.** Each line's rule ([`rules::Rules::find`]) gives a fallback chain;
//!    the first step that can split the line does, and each row records the
//!    method, the chain step and a reason code (why that step applied). A chain
//!    that runs out ends in `unallocated`; credits (negative lines) go there
//!    directly unless the rules say otherwise. Rows are at the rule's level,
//!    except those of the steps that charge a resource, an environment or an
//!    owner of record, which are principal-level (`step_level`).
//! 4. **Allocated last.** Lines whose chain holds `allocated_last` (Support) are
//!    split after all others, in proportion to each entity's total in the bucket
//!    on the same bill ([`BillColumns::bill_key`]: a FOCUS charge's issuer,
//!    invoice and billing account; lines without them are one bill), each
//!    entity's part at the level it was charged at.
//! 5. **Unallocated.** Everything unallocated in a bucket becomes one
//!    `unallocated` row (`chargeback_cost = original_amount`, `usage_share = 0`)
//!    per bill: Confluent's and WarpStream's lines are one bill, so one row per
//!    bucket as the seeds say; FOCUS bills of two invoices keep theirs apart.
//! 6. **FOCUS charges.** A line read from a FOCUS bill carries its other
//!    summable columns ([`ChargeColumns`]), split over the buckets as its
//!    amount is; each such line of a bucket is also reported as an
//!    [`AllocatedCharge`] (its rows' line, or, for a line left unallocated or
//!    whose amount is zero, which no row shows, why), for the FOCUS writer.
//!
//! Every split goes through [`crate::money::apportion`], keyed by names, so the
//! parts of each line sum exactly to it and nothing depends on input order. Per
//! bucket the sum of `chargeback_cost` is checked against the bucket's bill total
//! (an [`Error::Reconciliation`] otherwise). Zero rows are dropped.
//!
//! Rows name their owner, resource, product, ... with shared
//! [`crate::model::Name`]s: each interned string becomes a `Name` once, on first
//! use, and a row clones pointers, so making and dropping rows allocates and
//! frees nothing per row.

pub mod rules;
pub mod store;

use crate::error::Error;
use crate::model::{
    AllocatedCharge, AllocatedLine, AllocationRow, BillColumns, ChargeColumns, EntityLevel, Name,
    RowSource,
};
use crate::money::{
    apportion_with_shares, checked_sum, mixed_shares, round, rounded_ratio, split_units, Sign,
    UnitSplit,
};
use crate::time::{Granularity, Timestamp};
use rules::{Component, Rules, Step};
use rust_decimal::Decimal;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use store::slots;
use store::HashMap;
use store::{bucket_overlaps, Amount, BuildFx, LineKey, Period, Store, Sym};

/// The owner id of the unallocated row.
pub const UNALLOCATED: &str = "unallocated";

/// What the engine needs besides the store.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// The rules.
    pub rules: &'a Rules,
    /// Entity level for rules that do not pin one.
    pub level: EntityLevel,
    /// Decimal places of the output amounts.
    pub precision: u32,
    /// Threads the buckets may be allocated on (1: this one; wasm32 has no
    /// threads and runs the pieces one after the other).
    pub threads: usize,
}

/// Totals of one bucket of one organization.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BucketTotal {
    /// Organization.
    pub org_id: String,
    /// Bucket start.
    pub bucket_start: Timestamp,
    /// Bucket end (exclusive).
    pub bucket_end: Timestamp,
    /// Cut by the custom range.
    pub partial: bool,
    /// What the bill says for this bucket (for an export: the sum of its rows).
    pub bill_total: Decimal,
    /// Allocated to entities.
    pub allocated: Decimal,
    /// On the unallocated row.
    pub unallocated: Decimal,
}

/// The engine's result.
#[derive(Debug, Clone, Default)]
pub struct Allocation {
    /// The rows, sorted by org, bucket, product, line type, resource, owner.
    pub rows: Vec<AllocationRow>,
    /// Per bucket totals.
    pub buckets: Vec<BucketTotal>,
    /// Bill amounts outside the custom range (not allocated).
    pub outside_range: Decimal,
    /// Bill amounts lost to rounding at the output precision (input minus output).
    pub rounding: Decimal,
    /// The negative bill lines (credits, refunds) and negative already-allocated
    /// rows, at the output precision: in the totals, wherever they were charged.
    pub credits: Decimal,
    /// How each line read from a FOCUS bill was allocated in each bucket, in
    /// bucket order (see [`AllocatedCharge`]).
    pub charges: Vec<AllocatedCharge>,
}

/// Entity → (metric, value) pairs (few metrics per entity: a vector), sorted by
/// the entity's name (its rank): every line of a bucket on the resource splits
/// over these entities in name order, so they are sorted once here rather than
/// once per line.
type EntityMetrics = Vec<(Sym, Metrics)>;

/// An entity's (metric, value) pairs.
type Metrics = Vec<(Sym, Decimal)>;

/// The value of `metric` among an entity's pairs.
fn metric_value(values: &[(Sym, Decimal)], metric: Sym) -> Option<Decimal> {
    values.iter().find(|(m, _)| *m == metric).map(|(_, v)| *v)
}

/// (org, bucket) → line identity → its amount, quantity and first source in
/// the bucket, and a FOCUS line's columns.
type BucketLines = HashMap<(Sym, Timestamp), HashMap<LineKey, MergedLine>>;

/// The lines of one identity in one bucket, merged.
struct MergedLine {
    amount: Decimal,
    /// [`BucketLine::exact`].
    exact: Decimal,
    quantity: Decimal,
    /// [`BucketLine::first_tie`].
    first_tie: i128,
    file: Sym,
    line: u64,
    /// A FOCUS line's columns in the bucket, rounded as `amount` is.
    columns: Option<Box<ChargeColumns>>,
}

/// The names rows are made of, as shared [`Name`]s: each interned string is
/// made a `Name` once, on first use, and every row that names it clones a
/// pointer (no allocation per row, nothing to free per row when it is dropped).
/// Shared by the threads that allocate buckets: each name is made once, by
/// whichever thread needs it first.
struct Names<'s> {
    strings: &'s store::Interner,
    /// Each interned string's rank in name order ([`store::Interner::ranks`]).
    ranks: Vec<u32>,
    /// The interned strings' names, by rank (an [`Owner`] knows its rank).
    shared: Vec<OnceLock<Name>>,
    /// Names that are not interned strings: method names, reason codes, the
    /// unallocated row's fixed values, owners named by the rules (looked up
    /// once per line, not per row).
    other: Mutex<HashMap<String, Name>>,
}

impl<'s> Names<'s> {
    fn new(strings: &'s store::Interner) -> Self {
        Names {
            strings,
            ranks: strings.ranks(),
            shared: (0..strings.len()).map(|_| OnceLock::new()).collect(),
            other: Mutex::default(),
        }
    }

    /// The rank of interned string `id` ([`NOT_INTERNED`] for an unknown id).
    fn rank(&self, id: Sym) -> u32 {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.ranks.get(i))
            .copied()
            .unwrap_or(NOT_INTERNED)
    }

    /// The name of the interned string `id`.
    fn of(&self, id: Sym) -> Name {
        self.ranked(self.rank(id), self.strings.name(id))
    }

    /// The name of an owner.
    fn owner(&self, owner: &Owner<'_>) -> Name {
        self.ranked(owner.rank, owner.name)
    }

    /// The name of `text`, whose rank among the interned strings is `rank`.
    fn ranked(&self, rank: u32, text: &str) -> Name {
        match usize::try_from(rank).ok().and_then(|r| self.shared.get(r)) {
            Some(cell) => cell.get_or_init(|| Name::from(text)).clone(),
            None => self.text(text),
        }
    }

    /// The name of a string that is not interned (made once per distinct text).
    fn text(&self, text: &str) -> Name {
        // A poisoned lock (a thread panicked) still gives a correct name.
        let Ok(mut other) = self.other.lock() else {
            return Name::from(text);
        };
        if let Some(name) = other.get(text) {
            return name.clone();
        }
        let name = Name::from(text);
        other.insert(text.to_string(), name.clone());
        name
    }

    /// The first source of an aggregate (a shared file name).
    fn source(&self, file: Sym, line: u64) -> RowSource {
        RowSource {
            file: self.of(file),
            line,
        }
    }
}

/// Usage of one level, indexed for the methods.
#[derive(Debug, Default)]
struct UsageIndex {
    /// (org, bucket, resource) → entity → metric → value.
    by_bucket: HashMap<(Sym, Timestamp, Sym), EntityMetrics>,
    /// (org, resource) → entities seen in the period.
    period: HashMap<(Sym, Sym), std::collections::HashSet<Sym, BuildFx>>,
    /// (org, resource) → buckets with any usage.
    active: HashMap<(Sym, Sym), std::collections::HashSet<Timestamp, BuildFx>>,
}

impl UsageIndex {
    /// The index of `level`'s usage, each bucket's entities in name order.
    ///
    /// The usage slots are sorted once by (org, bucket, resource, entity rank,
    /// metric) and the index is cut from runs of that order: each bucket's
    /// entities arrive in name order and each entity's metrics together, with
    /// no map per bucket or per entity.
    fn build(
        store: &Store,
        level: EntityLevel,
        names: &Names<'_>,
        threads: usize,
    ) -> Result<UsageIndex, Error> {
        let empty = store.strings.find("").unwrap_or(0);
        let mut slots: Vec<IndexedUsage> = Vec::new();
        crate::memory::reserve_large(&mut slots, store.usage.slot_count());
        slots.extend(store.usage.iter().filter_map(|(key, value)| {
            let (entity, other) = match level {
                EntityLevel::Principal => (key.principal, key.topic),
                EntityLevel::Topic => (key.topic, key.principal),
            };
            (entity != empty && !value.is_zero()).then(|| {
                IndexedUsage::new(
                    (key.org, key.bucket, key.resource),
                    (names.rank(entity), entity),
                    (key.metric, other),
                    value,
                )
            })
        }));
        // `other` last: the slots one sum folds are added in one order whatever
        // order the store holds them in.
        crate::threads::sort_by_key_on(threads, &mut slots, |u| (u.group, u.rest));
        let mut index = UsageIndex::default();
        for group in slots.chunk_by(|a, b| a.group == b.group) {
            let Some(first) = group.first() else {
                continue;
            };
            let (org, bucket, resource) = first.group();
            index
                .active
                .entry((org, resource))
                .or_default()
                .insert(bucket);
            let seen = index.period.entry((org, resource)).or_default();
            let mut entities: EntityMetrics = Vec::new();
            for entity in group.chunk_by(|a, b| a.entity() == b.entity()) {
                let mut metrics: Metrics = Vec::with_capacity(entity.len());
                // Slots of one metric are several where the other level's
                // entities differ.
                for metric in entity.chunk_by(|a, b| a.metric() == b.metric()) {
                    let mut sum = Decimal::ZERO;
                    for slot in metric {
                        sum = sum
                            .checked_add(slot.value)
                            .ok_or_else(|| Error::overflow("indexing usage"))?;
                    }
                    if let Some(slot) = metric.first() {
                        metrics.push((slot.metric(), sum));
                    }
                }
                if let Some(slot) = entity.first() {
                    let entity = slot.entity().1;
                    seen.insert(entity);
                    entities.push((entity, metrics));
                }
            }
            index.by_bucket.insert((org, bucket, resource), entities);
        }
        Ok(index)
    }
}

/// One usage slot on its way into a [`UsageIndex`]: its sort key (group,
/// entity, metric, other) packed into two integers in the tuple's order, so
/// that sorting compares two words instead of seven fields one by one.
struct IndexedUsage {
    /// (org, bucket, resource): org in the top 32 bits, the bucket (sign bit
    /// flipped, which maps i64 order onto u64 order) in the next 64, the
    /// resource in the low 32.
    group: u128,
    /// The entity's (rank, id) in the top 64 bits (rank first: name order,
    /// ids apart for names not interned), the metric in the next 32, the
    /// entity of the other level (the topic of a principal's slot, the
    /// principal of a topic's) in the low 32.
    rest: u128,
    /// Value.
    value: Decimal,
}

/// The sign bit of an `i64` as a `u64`.
const SIGN_BIT: u64 = 1 << 63;

impl IndexedUsage {
    fn new(
        (org, bucket, resource): (Sym, Timestamp, Sym),
        (rank, entity): (u32, Sym),
        (metric, other): (Sym, Sym),
        value: Decimal,
    ) -> Self {
        let bucket = u64::from_ne_bytes(bucket.0.to_ne_bytes()) ^ SIGN_BIT;
        IndexedUsage {
            group: u128::from(org) << 96 | u128::from(bucket) << 32 | u128::from(resource),
            rest: u128::from(rank) << 96
                | u128::from(entity) << 64
                | u128::from(metric) << 32
                | u128::from(other),
            value,
        }
    }

    /// The 32-bit field of `word` starting at bit `shift`.
    fn field(word: u128, shift: u32) -> u32 {
        u32::try_from((word >> shift) & u128::from(u32::MAX)).unwrap_or(u32::MAX)
    }

    /// (org, bucket, resource).
    fn group(&self) -> (Sym, Timestamp, Sym) {
        let bucket = u64::try_from((self.group >> 32) & u128::from(u64::MAX)).unwrap_or(0);
        let bucket = Timestamp(i64::from_ne_bytes((bucket ^ SIGN_BIT).to_ne_bytes()));
        (
            Self::field(self.group, 96),
            bucket,
            Self::field(self.group, 0),
        )
    }

    /// The entity's (rank, id).
    fn entity(&self) -> (u32, Sym) {
        (Self::field(self.rest, 96), Self::field(self.rest, 64))
    }

    /// The metric.
    fn metric(&self) -> Sym {
        Self::field(self.rest, 32)
    }
}

/// One line of one bucket, ready to allocate.
#[derive(Debug, Clone)]
struct BucketLine {
    key: LineKey,
    /// Its amount in the bucket, rounded to the output precision.
    amount: Decimal,
    /// Its amount in the bucket before rounding: what allocated-last lines
    /// weigh, so that an hour in which it rounds to nothing still counts.
    exact: Decimal,
    quantity: Decimal,
    /// The minimal units its identity got in the buckets before this one:
    /// where its split starts giving the units ties leave ([`apportion_units`]),
    /// so that they go round the owners over the buckets of a period (three
    /// equal principals of an hourly 10.00 got 7.20, 2.80 and 0.00 when every
    /// bucket gave its ties to the first name).
    first_tie: i128,
    source: RowSource,
    /// A FOCUS line's columns in the bucket (boxed: most lines have none).
    charge_columns: Option<Box<ChargeColumns>>,
}

/// An owner in a split, ordered by name: through its rank among the interned
/// strings when both sides have one (an integer comparison, where splits order
/// and merge thousands of owners per line), else by the names themselves. Ranks
/// follow the names' order, so both ways agree.
#[derive(Debug, Clone, Copy)]
struct Owner<'a> {
    /// [`NOT_INTERNED`] for names from the rules.
    rank: u32,
    name: &'a str,
}

/// The rank of an [`Owner`] that is not an interned string.
const NOT_INTERNED: u32 = u32::MAX;

impl<'a> Owner<'a> {
    /// An owner named by the rules (not interned).
    fn named(name: &'a str) -> Self {
        Owner {
            rank: NOT_INTERNED,
            name,
        }
    }
}

impl Ord for Owner<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        if self.rank != NOT_INTERNED && other.rank != NOT_INTERNED {
            self.rank.cmp(&other.rank)
        } else {
            self.name.cmp(other.name)
        }
    }
}

impl PartialOrd for Owner<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Owner<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Owner<'_> {}

/// What a step produced.
enum Outcome<'a> {
    /// The step split the line; why.
    Split(Parts<'a>, &'static str),
    /// The step does not apply; why.
    Fail(&'static str),
}

/// How a step split a line.
struct Parts<'a> {
    /// Owner, amount (rounded: a row's), usage share.
    rounded: Vec<(Owner<'a>, Decimal, Decimal)>,
    /// The line's exact amount in the bucket split in the same proportions,
    /// unrounded, when the bucket has an allocated-last line ([`Ctx::weighs`]);
    /// else empty.
    exact: Vec<(Owner<'a>, Decimal)>,
}

/// Per (org, bucket) context of the methods.
struct Ctx<'a> {
    store: &'a Store,
    settings: Settings<'a>,
    principal: &'a UsageIndex,
    topic: &'a UsageIndex,
    org: Sym,
    bucket: Timestamp,
    /// The bucket's start, end and partial flag (computed once: every row needs them).
    bounds: (Timestamp, Timestamp, bool),
    /// The names rows are made of, and their ranks.
    names: &'a Names<'a>,
    /// Whether a line of the bucket is allocated last: only then are the
    /// exact parts of the others kept (most buckets have none).
    weighs: bool,
    /// Every exact part ([`Parts::exact`]) given so far in the bucket, as made
    /// (an owner may appear many times): what an allocated-last line sums per
    /// owner. Exact, not rounded: in an hour where a line rounds to 0.00 its
    /// users still weigh what they used.
    parts: Vec<(Owner<'a>, Decimal)>,
    /// The bill ([`BillColumns::bill_key`]) and the entity level of the parts
    /// from each index on, noted when either changes (once per line at most,
    /// not per part).
    part_bills: Vec<(usize, &'a str, EntityLevel)>,
}

impl<'a> Ctx<'a> {
    /// The bill ([`BillColumns::bill_key`]) of the interned bill columns
    /// `bill_columns` (a line's, or an unallocated part's).
    fn bill_of(&self, bill_columns: Sym) -> &'a str {
        BillColumns::bill_key(self.store.strings.name(bill_columns))
    }

    /// Keeps `line`'s exact parts, given at `level`, for the allocated-last
    /// lines of its bill.
    fn keep_exact(
        &mut self,
        line: &BucketLine,
        exact: Vec<(Owner<'a>, Decimal)>,
        level: EntityLevel,
    ) {
        if exact.is_empty() {
            return;
        }
        let bill = self.bill_of(line.key.bill_columns);
        if self
            .part_bills
            .last()
            .is_none_or(|(_, last, at)| *last != bill || *at != level)
        {
            self.part_bills.push((self.parts.len(), bill, level));
        }
        self.parts.extend(exact);
    }

    /// The runs of parts given so far on `bill`, each with its level.
    fn runs_on<'s>(
        &'s self,
        bill: &'s str,
    ) -> impl Iterator<Item = (&'s [(Owner<'a>, Decimal)], EntityLevel)> + 's {
        let ends = self.part_bills.iter().skip(1).map(|(start, _, _)| *start);
        let ends = ends.chain(std::iter::once(self.parts.len()));
        self.part_bills
            .iter()
            .zip(ends)
            .filter(move |((_, b, _), _)| *b == bill)
            .map(|((start, _, level), end)| {
                (self.parts.get(*start..end).unwrap_or_default(), *level)
            })
    }

    /// The parts given so far on `bill`.
    fn parts_on<'s>(&'s self, bill: &'s str) -> impl Iterator<Item = (Owner<'a>, Decimal)> + 's {
        self.runs_on(bill).flat_map(|(parts, _)| parts).copied()
    }

    /// The level at which each owner was given its parts on `bill` (the
    /// first, for a name given parts at both levels): an allocated-last line's
    /// rows follow their owners' levels, as its weights follow their totals.
    /// Empty when every part is at `level` (a run at one level), which then
    /// holds for every owner.
    fn levels_on(&self, bill: &str, level: EntityLevel) -> BTreeMap<Owner<'a>, EntityLevel> {
        let mut levels = BTreeMap::new();
        if self.runs_on(bill).all(|(_, at)| at == level) {
            return levels;
        }
        for (parts, level) in self.runs_on(bill) {
            for (owner, _) in parts {
                levels.entry(*owner).or_insert(level);
            }
        }
        levels
    }

    /// The interned string `id` as an owner.
    fn owner(&self, id: Sym) -> Owner<'a> {
        Owner {
            rank: self.names.rank(id),
            name: self.store.strings.name(id),
        }
    }
}

/// Allocates everything in `store` (see the module docs).
pub fn allocate(store: &Store, settings: Settings<'_>) -> Result<Allocation, Error> {
    let names = Names::new(&store.strings);
    let principal = UsageIndex::build(store, EntityLevel::Principal, &names, settings.threads)?;
    let topic = if needs_topics(store, settings) {
        UsageIndex::build(store, EntityLevel::Topic, &names, settings.threads)?
    } else {
        UsageIndex::default()
    };
    let mut result = Allocation::default();
    let by_bucket = split_lines(store, settings, &principal, &mut result)?;
    let buckets = sorted_buckets(store, &names, by_bucket);
    let shared = Shared {
        store,
        settings,
        principal: &principal,
        topic: &topic,
        names: &names,
    };
    // Buckets are independent: each piece of consecutive buckets is allocated
    // on its own thread, and the pieces' rows follow each other in bucket order.
    // (In one buffer: see `room_for_all`.)
    let pieces = balanced_pieces(&buckets, settings.threads);
    let room = room_for_all(pieces.iter().map(|p| expected_rows(&shared, p)).collect());
    let jobs: Vec<_> = pieces.into_iter().zip(room).collect();
    let allocated = crate::threads::map_beside(jobs, &|(piece, room)| {
        allocate_buckets(&shared, piece, room)
    });
    for piece in allocated {
        let piece = piece?;
        append_rows(&mut result.rows, piece.rows);
        result.buckets.extend(piece.buckets);
        result.charges.extend(piece.charges);
    }
    // Each bucket's rows are sorted as they are added, in bucket order, and the
    // already-allocated rows come in output order: only a mix of both needs a sort.
    let from_lines = !result.rows.is_empty();
    add_allocated_rows(store, &names, &mut result, settings)?;
    if from_lines && !store.allocated.is_empty() {
        sort_rows(&mut result.rows);
    }
    result
        .buckets
        .sort_by(|a, b| (&a.org_id, a.bucket_start).cmp(&(&b.org_id, b.bucket_start)));
    Ok(result)
}

/// What every bucket's allocation reads.
struct Shared<'a> {
    store: &'a Store,
    settings: Settings<'a>,
    principal: &'a UsageIndex,
    topic: &'a UsageIndex,
    names: &'a Names<'a>,
}

/// The lines of one (org, bucket).
type Bucket = ((Sym, Timestamp), Vec<BucketLine>);

/// `buckets` cut into at most `pieces` runs of consecutive buckets with about
/// the same number of lines each (the work of a bucket grows with its lines).
fn balanced_pieces(buckets: &[Bucket], pieces: usize) -> Vec<&[Bucket]> {
    let total: usize = buckets.iter().map(|(_, lines)| lines.len()).sum();
    let pieces = pieces.clamp(1, buckets.len().max(1));
    let mut out = Vec::with_capacity(pieces);
    let (mut start, mut lines) = (0, 0usize);
    for (i, (_, bucket_lines)) in buckets.iter().enumerate() {
        lines += bucket_lines.len();
        // Piece k ends once the lines so far reach k/pieces of the total.
        if lines.saturating_mul(pieces) >= total.saturating_mul(out.len() + 1) {
            out.push(buckets.get(start..=i).unwrap_or_default());
            start = i + 1;
        }
    }
    if start < buckets.len() {
        out.push(buckets.get(start..).unwrap_or_default());
    }
    out
}

/// Allocates consecutive buckets: their rows and totals, in bucket order.
fn allocate_buckets(
    shared: &Shared<'_>,
    buckets: &[Bucket],
    room: usize,
) -> Result<Allocation, Error> {
    let mut result = Allocation::default();
    crate::memory::reserve_large(&mut result.rows, room);
    for ((org, bucket), lines) in buckets {
        let mut ctx = Ctx {
            store: shared.store,
            settings: shared.settings,
            principal: shared.principal,
            topic: shared.topic,
            org: *org,
            bucket: *bucket,
            bounds: bucket_bounds(shared.store, *bucket),
            names: shared.names,
            weighs: false,
            parts: Vec::new(),
            part_bills: Vec::new(),
        };
        let total = checked_sum(lines.iter().map(|l| l.amount), "a bucket's bill total")?;
        let first = result.rows.len();
        let (rows, charges) = (&mut result.rows, &mut result.charges);
        let (unallocated, sorted) = allocate_bucket(&mut ctx, lines, rows, charges)?;
        push_bucket(&mut result, &ctx, total, first, unallocated, sorted)?;
    }
    Ok(result)
}

/// The rows to make room for in each piece's buffer, from each piece's own:
/// the first piece's rows are made with room for all the pieces' (their sum),
/// and the others are moved in after them ([`append_rows`]), so the big buffer
/// is made once and no growing copies it.
fn room_for_all(mut rows: Vec<usize>) -> Vec<usize> {
    let all = rows.iter().fold(0, |sum: usize, &r| sum.saturating_add(r));
    if let Some(first) = rows.first_mut() {
        *first = all;
    }
    rows
}

/// Moves a piece's `rows` after `all`'s (taking their buffer when `all` has none yet).
fn append_rows(all: &mut Vec<AllocationRow>, rows: Vec<AllocationRow>) {
    if all.is_empty() {
        *all = rows;
    } else {
        all.extend(rows);
    }
}

/// About how many rows `buckets` make: a line mostly splits over the principals
/// active on its resource in its bucket, and a bucket may add its unallocated
/// row. Reserving them up front spares growing (and copying) the rows many times.
fn expected_rows(shared: &Shared<'_>, buckets: &[Bucket]) -> usize {
    buckets
        .iter()
        .map(|((org, bucket), lines)| {
            let active = |line: &BucketLine| {
                shared
                    .principal
                    .by_bucket
                    .get(&(*org, *bucket, line.key.resource))
                    .map_or(1, Vec::len)
            };
            lines.iter().map(active).fold(1, usize::saturating_add)
        })
        .fold(0, usize::saturating_add)
}

/// Whether any line is allocated at topic level (else the topic index is not built).
fn needs_topics(store: &Store, settings: Settings<'_>) -> bool {
    let s = &store.strings;
    settings.level == EntityLevel::Topic
        || store.lines.keys().any(|(k, _)| {
            chain_for(settings.rules, s.name(k.product), s.name(k.line_type)).1
                == Some(EntityLevel::Topic)
        })
}

/// Splits every line over its buckets, merges the lines of one identity per
/// bucket, and rounds them to the output precision.
///
/// A line is split and its parts summed exactly; only then is each identity
/// rounded, bucket after bucket in time order, by cumulative rounding (a
/// bucket gets the rounded running total less what the buckets before it got).
/// So a bill of many sub-unit lines (an hourly line of 0.004, 720 times a
/// month) loses nothing to rounding; a line at the output precision that spans
/// several buckets has parts that sum exactly to it, spread evenly over time;
/// and an identity's rounded total is its exact total rounded (what rounding
/// loses is at most half a unit per identity, reported as `rounding`).
fn split_lines(
    store: &Store,
    settings: Settings<'_>,
    usage: &UsageIndex,
    result: &mut Allocation,
) -> Result<BucketLines, Error> {
    let mut exact: HashMap<LineKey, Vec<ExactPart>> = HashMap::default();
    for ((key, period), amount) in &store.lines {
        let parts = exact.entry(*key).or_default();
        let seconds = time_weights(store, usage, key, period);
        let amounts = split_by_seconds(amount.amount, &seconds)?;
        let quantities = split_by_seconds(amount.quantity, &seconds)?;
        // (Looked up only when a FOCUS bill was read: most runs have none.)
        let columns = if store.charge_columns.is_empty() {
            None
        } else {
            store.charge_columns.get(&(*key, *period))
        };
        let mut columns = match columns {
            Some(columns) => split_columns_by_seconds(columns, &seconds)?,
            None => Vec::new(),
        }
        .into_iter();
        for ((bucket, _), (part, quantity)) in
            seconds.iter().zip(amounts.into_iter().zip(quantities))
        {
            parts.push(ExactPart {
                bucket: *bucket,
                amount: part,
                quantity,
                columns: columns.next(),
                file: amount.file,
                line: amount.line,
            });
        }
    }
    let mut by_bucket: BucketLines = HashMap::default();
    let s = &store.strings;
    for (key, mut parts) in exact {
        // Time order, and in one bucket the first source in (file name, line)
        // order first: it is the merged line's source.
        parts.sort_unstable_by(|a, b| {
            (a.bucket, s.name(a.file), a.line).cmp(&(b.bucket, s.name(b.file), b.line))
        });
        let mut running = Decimal::ZERO;
        let mut rounded_before = Decimal::ZERO;
        let mut columns = RoundedColumns::default();
        for same_bucket in parts.chunk_by(|a, b| a.bucket == b.bucket) {
            let bucket_columns = columns.next(same_bucket, settings.precision)?;
            let total = checked_sum(same_bucket.iter().map(|p| p.amount), "merging lines")?;
            let quantity = checked_sum(same_bucket.iter().map(|p| p.quantity), "merging lines")?;
            running = running
                .checked_add(total)
                .ok_or_else(|| Error::overflow("merging lines"))?;
            let rounded = round(running, settings.precision);
            let part = rounded
                .checked_sub(rounded_before)
                .ok_or_else(|| Error::overflow("rounding lines"))?;
            // Rounded to the precision: its mantissa counts minimal units.
            let first_tie = rounded_before.mantissa();
            rounded_before = rounded;
            let Some(first) = same_bucket.first() else {
                continue;
            };
            match first.bucket {
                None => {
                    result.outside_range = result
                        .outside_range
                        .checked_add(part)
                        .ok_or_else(|| Error::overflow("outside range"))?;
                }
                Some(bucket) => {
                    by_bucket.entry((key.org, bucket)).or_default().insert(
                        key,
                        MergedLine {
                            amount: part,
                            exact: total,
                            quantity,
                            first_tie,
                            file: first.file,
                            line: first.line,
                            columns: bucket_columns.map(Box::new),
                        },
                    );
                }
            }
        }
        result.rounding = running
            .checked_sub(rounded_before)
            .and_then(|lost| result.rounding.checked_add(lost))
            .ok_or_else(|| Error::overflow("rounding total"))?;
        if rounded_before.is_sign_negative() {
            result.credits = checked_sum([result.credits, rounded_before], "credits")?;
        }
    }
    Ok(by_bucket)
}

/// A line's exact part in a bucket (`None`: outside the custom range), and the line's source.
struct ExactPart {
    bucket: Option<Timestamp>,
    amount: Decimal,
    quantity: Decimal,
    /// A FOCUS line's columns in the bucket, exactly.
    columns: Option<ChargeColumns>,
    file: Sym,
    line: u64,
}

/// The seconds of a line's period in each bucket it is split over (`None`:
/// outside the custom range); only the buckets with activity on its resource
/// when its cost line says the resource was active part of the time.
fn time_weights(
    store: &Store,
    usage: &UsageIndex,
    key: &LineKey,
    period: &Period,
) -> Vec<(Option<Timestamp>, i64)> {
    let granularity = store.granularity;
    let overlaps = bucket_overlaps(period.start, period.end, granularity);
    let active = usage.active.get(&(key.org, key.resource));
    let prorate = period.active_fraction.is_some_and(|f| f < Decimal::ONE)
        && overlaps
            .iter()
            .any(|(b, _)| active.is_some_and(|a| a.contains(b)));
    let mut weights: Vec<(Option<Timestamp>, i64)> = Vec::with_capacity(overlaps.len() + 1);
    let mut outside = 0i64;
    for (bucket, seconds) in overlaps {
        let inside = inside_seconds(store, bucket, granularity, period);
        outside += seconds - inside;
        let counts = !prorate || active.is_some_and(|a| a.contains(&bucket));
        if counts && inside > 0 {
            weights.push((Some(bucket), inside));
        }
    }
    if outside > 0 {
        weights.push((None, outside));
    }
    if weights.is_empty() {
        // An instant: all of it in the bucket it falls in.
        return vec![(Some(period.start.floor(granularity)), 1)];
    }
    weights
}

/// `value` split exactly in proportion to `seconds`: each part the difference
/// of two running totals, the last of which is `value` itself, so the parts
/// sum to it whatever the division rounds.
fn split_by_seconds(
    value: Decimal,
    seconds: &[(Option<Timestamp>, i64)],
) -> Result<Vec<Decimal>, Error> {
    let total: i64 = seconds.iter().map(|(_, s)| s).sum();
    let whole = Decimal::from(total);
    let mut parts = Vec::with_capacity(seconds.len());
    let (mut seconds_before, mut value_before) = (0i64, Decimal::ZERO);
    for (_, s) in seconds {
        seconds_before += s;
        let running = if seconds_before == total {
            value
        } else {
            Decimal::from(seconds_before)
                .checked_div(whole)
                .and_then(|ratio| value.checked_mul(ratio))
                .ok_or_else(|| Error::overflow("splitting a line over buckets"))?
        };
        parts.push(
            running
                .checked_sub(value_before)
                .ok_or_else(|| Error::overflow("splitting a line over buckets"))?,
        );
        value_before = running;
    }
    Ok(parts)
}

/// A FOCUS line's columns split exactly over its buckets as its amount is
/// ([`split_by_seconds`]), in the order of `seconds`.
fn split_columns_by_seconds(
    columns: &ChargeColumns,
    seconds: &[(Option<Timestamp>, i64)],
) -> Result<Vec<ChargeColumns>, Error> {
    let mut by_bucket = vec![*columns; seconds.len()];
    for (column, value) in columns.costs.iter().enumerate() {
        for (bucket, part) in by_bucket.iter_mut().zip(split_by_seconds(*value, seconds)?) {
            if let Some(cost) = bucket.costs.get_mut(column) {
                *cost = part;
            }
        }
    }
    for (column, value) in columns.quantities.iter().enumerate() {
        let Some(value) = value else {
            continue;
        };
        for (bucket, part) in by_bucket.iter_mut().zip(split_by_seconds(*value, seconds)?) {
            if let Some(quantity) = bucket.quantities.get_mut(column) {
                *quantity = Some(part);
            }
        }
    }
    Ok(by_bucket)
}

/// The FOCUS columns of one line identity bucket after bucket, each cost
/// rounded on its running total as the line's amount is, so that each sums
/// over the buckets to its exact total rounded once; quantities stay exact.
#[derive(Default)]
struct RoundedColumns {
    running: Option<ChargeColumns>,
    rounded: [Decimal; 4],
}

impl RoundedColumns {
    /// The columns of the next bucket's parts (`None` when none has any).
    fn next(
        &mut self,
        parts: &[ExactPart],
        precision: u32,
    ) -> Result<Option<ChargeColumns>, Error> {
        let mut exact: Option<ChargeColumns> = None;
        for columns in parts.iter().filter_map(|p| p.columns.as_ref()) {
            exact = Some(match exact {
                Some(sum) => sum
                    .checked_add(columns)
                    .ok_or_else(|| Error::overflow("merging FOCUS columns"))?,
                None => *columns,
            });
        }
        let Some(mut bucket) = exact else {
            return Ok(None);
        };
        let running = match self.running {
            Some(before) => before
                .checked_add(&bucket)
                .ok_or_else(|| Error::overflow("merging FOCUS columns"))?,
            None => bucket,
        };
        self.running = Some(running);
        for ((cost, total), before) in bucket
            .costs
            .iter_mut()
            .zip(running.costs)
            .zip(self.rounded.iter_mut())
        {
            let rounded = round(total, precision);
            *cost = rounded
                .checked_sub(*before)
                .ok_or_else(|| Error::overflow("rounding FOCUS columns"))?;
            *before = rounded;
        }
        Ok(Some(bucket))
    }
}

/// Seconds of `bucket` ∩ the line's period ∩ the custom range.
fn inside_seconds(
    store: &Store,
    bucket: Timestamp,
    granularity: Granularity,
    period: &Period,
) -> i64 {
    let (mut from, mut to) = (
        bucket.0.max(period.start.0),
        bucket.next_bucket(granularity).0.min(period.end.0),
    );
    if let Some((start, end)) = store.range {
        from = from.max(start.0);
        to = to.min(end.0);
    }
    (to - from).max(0)
}

/// Buckets in a deterministic order (organization name, bucket start), lines sorted by names.
fn sorted_buckets(store: &Store, names: &Names<'_>, by_bucket: BucketLines) -> Vec<Bucket> {
    let s = &store.strings;
    let mut out: Vec<_> = by_bucket
        .into_iter()
        .map(|(k, lines)| {
            let mut lines: Vec<BucketLine> = lines
                .into_iter()
                .map(|(key, merged)| BucketLine {
                    key,
                    amount: merged.amount,
                    exact: merged.exact,
                    quantity: merged.quantity,
                    first_tie: merged.first_tie,
                    source: names.source(merged.file, merged.line),
                    charge_columns: merged.columns,
                })
                .collect();
            lines.sort_by_key(|l| line_ranks(names, &l.key));
            (k, lines)
        })
        .collect();
    out.sort_by(|a, b| (s.name(a.0 .0), a.0 .1).cmp(&(s.name(b.0 .0), b.0 .1)));
    out
}

/// A line's order by its names, as integers (ranks follow the names' order:
/// no text is compared; a bill's lines can number hundreds of thousands).
fn line_ranks(names: &Names<'_>, k: &LineKey) -> [u32; 10] {
    [
        k.product,
        k.line_type,
        k.resource,
        k.environment,
        k.unit,
        k.currency,
        k.owner_of_record,
        k.charge_category,
        k.charge_frequency,
        k.bill_columns,
    ]
    .map(|id| names.rank(id))
}

fn chain_for<'r>(
    rules: &'r Rules,
    product: &str,
    line_type: &str,
) -> (&'r [Step], Option<EntityLevel>) {
    match rules.find(product, line_type) {
        Some(rule) => (&rule.chain, rule.level),
        None => (&rules.default_chain, None),
    }
}

/// What one line leaves unallocated in its bucket.
struct Unallocated {
    amount: Decimal,
    /// The line's currency: each currency gets its own row.
    currency: Sym,
    reason: &'static str,
    source: RowSource,
    /// The line's bill columns ([`BillColumns`]): each bill gets its own row.
    bill_columns: Sym,
}

impl Unallocated {
    /// All of `line`, for `reason`.
    fn all_of(line: &BucketLine, reason: &'static str) -> Self {
        Unallocated {
            amount: line.amount,
            currency: line.key.currency,
            reason,
            source: line.source.clone(),
            bill_columns: line.key.bill_columns,
        }
    }
}

/// Allocates the lines of one bucket, ordinary lines first, then allocated-last
/// ones, appending the bucket's rows to `rows` (no copy per bucket); returns its
/// unallocated contributions and whether the rows it added are in output order.
///
/// Lines come sorted by names and each line's parts by owner, so the rows are
/// mostly made in output order; checking that per line (one comparison at each
/// line's first row, owners within it) spares sorting every bucket's rows.
fn allocate_bucket<'a>(
    ctx: &mut Ctx<'a>,
    lines: &[BucketLine],
    rows: &mut Vec<AllocationRow>,
    charges: &mut Vec<AllocatedCharge>,
) -> Result<(Vec<Unallocated>, bool), Error> {
    let first = rows.len();
    let mut unallocated = Vec::new();
    let mut sorted = true;
    let (s, rules) = (&ctx.store.strings, ctx.settings.rules);
    let chains: Vec<(&[Step], EntityLevel, bool)> = lines
        .iter()
        .map(|line| {
            let (chain, pinned) =
                chain_for(rules, s.name(line.key.product), s.name(line.key.line_type));
            let last = chain.iter().any(|s| matches!(s, Step::AllocatedLast));
            (chain, pinned.unwrap_or(ctx.settings.level), last)
        })
        .collect();
    ctx.weighs = chains.iter().any(|(_, _, last)| *last);
    for pass in [false, true] {
        for (line, (chain, level, last)) in lines.iter().zip(&chains) {
            if *last != pass {
                continue;
            }
            if line.amount.is_zero() {
                // Nothing to split; a FOCUS line's other columns still are
                // (a usage charge a commitment covers is billed zero).
                if let Some(columns) = &line.charge_columns {
                    let not_split = LineOutcome::Unallocated {
                        level: *level,
                        step: 0,
                        reason: "zero_amount",
                    };
                    charges.push(charge(ctx, line, columns, not_split));
                }
                // What it would have been split by still weighs.
                if ctx.weighs && !line.exact.is_zero() {
                    if let ChainEnd::Split(parts, _, at) = run_chain(ctx, line, chain, *level)? {
                        ctx.keep_exact(line, parts.exact, at);
                    }
                }
                continue;
            }
            let before = rows.len();
            let outcome = allocate_line(ctx, line, (chain, *level), rows, &mut unallocated)?;
            if let Some(columns) = &line.charge_columns {
                charges.push(charge(ctx, line, columns, outcome));
            }
            let previous = before
                .checked_sub(1)
                .filter(|i| *i >= first)
                .and_then(|i| rows.get(i));
            let added = rows.get(before..).unwrap_or_default();
            sorted = sorted
                && ordered_run(added)
                && match (previous, added.first()) {
                    (Some(a), Some(b)) => row_order(a, b) != Ordering::Greater,
                    _ => true,
                };
        }
    }
    Ok((unallocated, sorted))
}

/// Whether one line's rows, as made, are in output order: they share every
/// sort field but the owner, so their owners must increase (and none may be
/// [`UNALLOCATED`], which sorts last).
fn ordered_run(rows: &[AllocationRow]) -> bool {
    rows.iter().all(|r| r.owner_id != UNALLOCATED)
        && rows
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.owner_id < b.owner_id))
}

/// How [`allocate_line`] left a line.
enum LineOutcome {
    /// A step split it: what its rows share.
    Split(Arc<AllocatedLine>),
    /// All of it went to the bucket's unallocated row.
    Unallocated {
        level: EntityLevel,
        /// The step of the chain that gave up.
        step: u32,
        reason: &'static str,
    },
}

/// What the writers need of a FOCUS line beyond its rows.
fn charge(
    ctx: &Ctx<'_>,
    line: &BucketLine,
    columns: &ChargeColumns,
    outcome: LineOutcome,
) -> AllocatedCharge {
    let (shared, unallocated) = match outcome {
        LineOutcome::Split(shared) => (shared, Decimal::ZERO),
        LineOutcome::Unallocated {
            level,
            step,
            reason,
        } => {
            let method = (UNALLOCATED, step, reason);
            let shared = Arc::new(allocated_line(ctx, line, method, level));
            (shared, line.amount)
        }
    };
    AllocatedCharge {
        line: shared,
        columns: *columns,
        unallocated,
    }
}

/// Runs `line`'s `chain` at `level` and records its rows.
fn allocate_line<'a>(
    ctx: &mut Ctx<'a>,
    line: &BucketLine,
    (chain, level): (&'a [Step], EntityLevel),
    rows: &mut Vec<AllocationRow>,
    unallocated: &mut Vec<Unallocated>,
) -> Result<LineOutcome, Error> {
    match run_chain(ctx, line, chain, level)? {
        ChainEnd::Unallocated { step, reason } => {
            unallocated.push(Unallocated::all_of(line, reason));
            Ok(LineOutcome::Unallocated {
                level,
                step,
                reason,
            })
        }
        ChainEnd::Split(parts, method, at) => {
            // Once per line, not per row: what its rows share.
            let shared = Arc::new(allocated_line(ctx, line, method, at));
            // Allocated last, each row is at the level its owner was charged at.
            let levels = if method.0 == method_name(&Step::AllocatedLast) {
                ctx.levels_on(ctx.bill_of(line.key.bill_columns), at)
            } else {
                BTreeMap::new()
            };
            let mut at_other_level: Option<Arc<AllocatedLine>> = None;
            ctx.keep_exact(line, parts.exact, at);
            for (owner, cost, share) in parts.rounded {
                if cost.is_zero() {
                    continue;
                }
                let row_line = match levels.get(&owner) {
                    Some(other) if *other != at => at_other_level
                        .get_or_insert_with(|| {
                            Arc::new(AllocatedLine {
                                level: *other,
                                ..AllocatedLine::clone(&shared)
                            })
                        })
                        .clone(),
                    _ => shared.clone(),
                };
                rows.push(AllocationRow {
                    line: row_line,
                    owner_id: ctx.names.owner(&owner),
                    chargeback_cost: cost,
                    usage_share: share,
                });
            }
            Ok(LineOutcome::Split(shared))
        }
    }
}

/// Where a line's chain ended.
enum ChainEnd<'a> {
    /// A step split it, recorded as (method, chain step, reason), with the
    /// level of its rows ([`step_level`]).
    Split(Parts<'a>, (&'static str, u32, &'static str), EntityLevel),
    /// No step took it: all of it is unallocated, for `reason`, at chain
    /// step `step`.
    Unallocated { step: u32, reason: &'static str },
}

/// Runs `line`'s `chain` at `level` up to the first step that splits it.
fn run_chain<'a>(
    ctx: &Ctx<'a>,
    line: &BucketLine,
    chain: &'a [Step],
    level: EntityLevel,
) -> Result<ChainEnd<'a>, Error> {
    // (The exact amount's sign for a line that rounds to nothing in the bucket.)
    let sign = if line.amount.is_zero() {
        line.exact
    } else {
        line.amount
    };
    if sign.is_sign_negative() && ctx.settings.rules.credits_unallocated {
        return Ok(ChainEnd::Unallocated {
            step: 0,
            reason: "credit",
        });
    }
    let mut last_failure = "no_rule_step_applied";
    for (index, step) in chain.iter().enumerate() {
        let step_no = u32::try_from(index).unwrap_or(u32::MAX);
        if matches!(step, Step::Unallocated) {
            let reason = if index == 0 {
                "not_attributable"
            } else {
                last_failure
            };
            return Ok(ChainEnd::Unallocated {
                step: step_no,
                reason,
            });
        }
        match run_step(ctx, line, level, step)? {
            Outcome::Fail(reason) => last_failure = reason,
            Outcome::Split(parts, success) => {
                let reason = if index == 0 { success } else { last_failure };
                let method = (method_name(step), step_no, reason);
                return Ok(ChainEnd::Split(parts, method, step_level(step, level)));
            }
        }
    }
    Ok(ChainEnd::Unallocated {
        // Past the chain's last step.
        step: u32::try_from(chain.len()).unwrap_or(u32::MAX),
        reason: last_failure,
    })
}

/// The level of the rows `step` makes in a chain run at `level`: the line's
/// resource, environment or owner of record is no topic, so those steps make
/// principal-level rows (the level of resource ids, as of service accounts)
/// even in a topic-level chain.
fn step_level(step: &Step, level: EntityLevel) -> EntityLevel {
    match step {
        Step::OwnerOfRecord | Step::Environment | Step::ResourceOwner => EntityLevel::Principal,
        _ => level,
    }
}

/// The name a step is recorded under.
pub fn method_name(step: &Step) -> &'static str {
    match step {
        Step::Fixed { .. } => "fixed",
        Step::UsageRatio { .. } => "usage_ratio",
        Step::Weighted { .. } => "weighted",
        Step::EvenActive => "even_active",
        Step::EvenPeriod => "even_period",
        Step::Lifetime { .. } => "lifetime",
        Step::Storage { .. } => "storage",
        Step::OwnerOfRecord => "owner_of_record",
        Step::Environment => "environment",
        Step::ResourceOwner => "resource_owner",
        Step::AllocatedLast => "allocated_last",
        Step::Unallocated => "unallocated",
    }
}

/// What every row of `line` shares, allocated by `(method, chain step,
/// reason)` at `level`.
fn allocated_line(
    ctx: &Ctx<'_>,
    line: &BucketLine,
    (method, chain_step, reason): (&str, u32, &str),
    level: EntityLevel,
) -> AllocatedLine {
    let (names, key) = (ctx.names, &line.key);
    let (start, end, partial) = ctx.bounds;
    AllocatedLine {
        bucket_start: start,
        bucket_end: end,
        partial_bucket: partial,
        org_id: names.of(key.org),
        level,
        environment_id: names.of(key.environment),
        resource_id: names.of(key.resource),
        product: names.of(key.product),
        line_type: names.of(key.line_type),
        unit: names.of(key.unit),
        original_amount: line.amount,
        quantity: line.quantity,
        currency: names.of(key.currency),
        method: names.text(method),
        chain_step,
        reason: names.text(reason),
        source: line.source.clone(),
        bill_columns: names.of(key.bill_columns),
    }
}

/// A bucket's start, end and whether the custom range cuts it.
pub fn bucket_bounds(store: &Store, bucket: Timestamp) -> (Timestamp, Timestamp, bool) {
    let end = bucket.next_bucket(store.granularity);
    let partial = store
        .range
        .is_some_and(|(from, to)| from > bucket || to < end);
    (bucket, end, partial)
}

fn run_step<'a>(
    ctx: &Ctx<'a>,
    line: &BucketLine,
    level: EntityLevel,
    step: &'a Step,
) -> Result<Outcome<'a>, Error> {
    match step {
        Step::Fixed { shares } => {
            let weights = shares.iter().map(|(k, v)| (Owner::named(k), *v)).collect();
            split(ctx, line, weights, "fixed_shares", "no_shares")
        }
        Step::UsageRatio { metrics } => split(
            ctx,
            line,
            usage_weights(ctx, line, level, metrics),
            "usage_found",
            "no_usage_found",
        ),
        Step::Lifetime { metric } => {
            let weights = usage_weights(ctx, line, level, std::slice::from_ref(metric));
            split(ctx, line, weights, "lifetime_found", "no_lifetime_data")
        }
        Step::Storage {
            write_metric,
            retention_metric,
        } => {
            let weights = storage_weights(ctx, line, level, write_metric, retention_metric)?;
            split(ctx, line, weights, "storage_found", "no_storage_data")
        }
        Step::EvenActive => split(
            ctx,
            line,
            even(active_entities(ctx, line, level)),
            "active_principals",
            "no_active_principals",
        ),
        Step::EvenPeriod => split(
            ctx,
            line,
            even(period_entities(ctx, line, level)),
            "principals_in_period",
            "no_principals_in_period",
        ),
        Step::Weighted { components } => weighted(ctx, line, level, components),
        Step::OwnerOfRecord => single(
            ctx,
            line,
            owner_of_record(ctx, line),
            "owner_of_record",
            "no_owner_of_record",
        ),
        Step::Environment => {
            let env = ctx.owner(line.key.environment);
            single(
                ctx,
                line,
                Some(env).filter(|e| !e.name.is_empty()),
                "environment",
                "no_environment",
            )
        }
        Step::ResourceOwner => {
            let resource = ctx.owner(line.key.resource);
            single(
                ctx,
                line,
                Some(resource).filter(|r| !r.name.is_empty()),
                "resource_owner",
                "no_resource",
            )
        }
        Step::AllocatedLast => {
            // In proportion to the owners' totals on the same bill: a tax
            // follows the charges of its invoice, not another provider's.
            let weights = owner_totals(ctx.parts_on(ctx.bill_of(line.key.bill_columns)))?
                .into_iter()
                .filter(|(_, v)| v.is_sign_positive() && !v.is_zero())
                .collect();
            split(ctx, line, weights, "other_totals", "nothing_allocated_yet")
        }
        Step::Unallocated => Ok(Outcome::Fail("unallocated")),
    }
}

/// Each owner's total of `parts`, in owner order.
fn owner_totals<'a>(
    parts: impl Iterator<Item = (Owner<'a>, Decimal)>,
) -> Result<Vec<(Owner<'a>, Decimal)>, Error> {
    let mut sorted: Vec<_> = parts.collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut totals: Vec<(Owner<'a>, Decimal)> = Vec::new();
    for (owner, amount) in sorted {
        match totals.last_mut() {
            Some((last, total)) if *last == owner => {
                *total = total
                    .checked_add(amount)
                    .ok_or_else(|| Error::overflow("entity totals"))?;
            }
            _ => totals.push((owner, amount)),
        }
    }
    Ok(totals)
}

/// The whole line to one owner, if there is one.
fn single<'a>(
    ctx: &Ctx<'a>,
    line: &BucketLine,
    owner: Option<Owner<'a>>,
    success: &'static str,
    failure: &'static str,
) -> Result<Outcome<'a>, Error> {
    let Some(owner) = owner else {
        return Ok(Outcome::Fail(failure));
    };
    let parts = Parts {
        rounded: vec![(owner, line.amount, round(Decimal::ONE, SHARE_DECIMALS))],
        exact: exact_parts(ctx, line.exact, &[(owner, Decimal::ONE)])?,
    };
    Ok(Outcome::Split(parts, success))
}

/// `amount` split in exact proportion to `weights` (unrounded: 28 significant
/// digits) when the bucket keeps exact parts ([`Ctx::weighs`]); else nothing.
fn exact_parts<'a>(
    ctx: &Ctx<'a>,
    amount: Decimal,
    weights: &[(Owner<'a>, Decimal)],
) -> Result<Vec<(Owner<'a>, Decimal)>, Error> {
    if !ctx.weighs {
        return Ok(Vec::new());
    }
    let total = checked_sum(weights.iter().map(|(_, w)| *w), "weights")?;
    weights
        .iter()
        .map(|(owner, weight)| {
            share(*weight, total)?
                .checked_mul(amount)
                .map(|part| (*owner, part))
                .ok_or_else(|| Error::overflow("exact parts"))
        })
        .collect()
}

/// Apportions `amount` over `weights` (distinct keys), with usage shares.
fn split<'a>(
    ctx: &Ctx<'a>,
    line: &BucketLine,
    mut weights: Vec<(Owner<'a>, Decimal)>,
    success: &'static str,
    failure: &'static str,
) -> Result<Outcome<'a>, Error> {
    weights.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let precision = ctx.settings.precision;
    let rounded = apportion_with_shares(
        line.amount,
        weights.iter().copied(),
        precision,
        SHARE_DECIMALS,
        line.first_tie,
    )?;
    match rounded {
        Some(rounded) => {
            let exact = exact_parts(ctx, line.exact, &weights)?;
            Ok(Outcome::Split(Parts { rounded, exact }, success))
        }
        None => Ok(Outcome::Fail(failure)),
    }
}

/// Decimal places of `usage_share` (display only).
pub const SHARE_DECIMALS: u32 = 6;

/// `weight / total` (unrounded; zero when the total is zero).
fn share(weight: Decimal, total: Decimal) -> Result<Decimal, Error> {
    if total.is_zero() {
        return Ok(Decimal::ZERO);
    }
    weight
        .checked_div(total)
        .ok_or_else(|| Error::overflow("usage share"))
}

fn index<'c>(ctx: &'c Ctx<'_>, level: EntityLevel) -> &'c UsageIndex {
    match level {
        EntityLevel::Principal => ctx.principal,
        EntityLevel::Topic => ctx.topic,
    }
}

/// Entities and their metric maps on the line's resource in the bucket, in name order.
fn bucket_usage<'a>(
    ctx: &Ctx<'a>,
    line: &BucketLine,
    level: EntityLevel,
) -> Option<&'a EntityMetrics> {
    let usage: &'a UsageIndex = match level {
        EntityLevel::Principal => ctx.principal,
        EntityLevel::Topic => ctx.topic,
    };
    usage
        .by_bucket
        .get(&(line.key.org, ctx.bucket, line.key.resource))
}

/// The ids of the metrics that were seen (one that never was weighs nothing).
fn metric_ids(names: &store::Interner, metrics: &[String]) -> Vec<Sym> {
    metrics.iter().filter_map(|m| names.find(m)).collect()
}

/// The sum of an entity's values of the metrics `ids`.
fn metric_sum(values: &[(Sym, Decimal)], ids: &[Sym]) -> Decimal {
    ids.iter()
        .filter_map(|m| metric_value(values, *m))
        .fold(Decimal::ZERO, |acc, v| acc.saturating_add(v))
}

/// Sum of `metrics` per entity.
fn usage_weights<'a>(
    ctx: &Ctx<'a>,
    line: &BucketLine,
    level: EntityLevel,
    metrics: &[String],
) -> Vec<(Owner<'a>, Decimal)> {
    let ids = metric_ids(&ctx.store.strings, metrics);
    let Some(entities) = bucket_usage(ctx, line, level) else {
        return Vec::new();
    };
    entities
        .iter()
        .map(|(entity, values)| (ctx.owner(*entity), metric_sum(values, &ids)))
        .collect()
}

/// Write bytes × retention per entity.
fn storage_weights<'a>(
    ctx: &Ctx<'a>,
    line: &BucketLine,
    level: EntityLevel,
    write: &str,
    retention: &str,
) -> Result<Vec<(Owner<'a>, Decimal)>, Error> {
    let names: &'a store::Interner = &ctx.store.strings;
    let (Some(w), Some(r)) = (names.find(write), names.find(retention)) else {
        return Ok(Vec::new());
    };
    let Some(entities) = bucket_usage(ctx, line, level) else {
        return Ok(Vec::new());
    };
    entities
        .iter()
        .map(|(entity, values)| {
            let bytes = metric_value(values, w).unwrap_or_default();
            let seconds = metric_value(values, r).unwrap_or_default();
            bytes
                .checked_mul(seconds)
                .map(|p| (ctx.owner(*entity), p))
                .ok_or_else(|| Error::overflow("write bytes × retention"))
        })
        .collect()
}

/// Entities with any usage on the resource in the bucket.
fn active_entities<'a>(ctx: &Ctx<'a>, line: &BucketLine, level: EntityLevel) -> Vec<Owner<'a>> {
    bucket_usage(ctx, line, level)
        .map(|e| e.iter().map(|(k, _)| ctx.owner(*k)).collect())
        .unwrap_or_default()
}

/// Entities seen on the resource in the whole period.
fn period_entities<'a>(ctx: &Ctx<'a>, line: &BucketLine, level: EntityLevel) -> Vec<Owner<'a>> {
    index(ctx, level)
        .period
        .get(&(line.key.org, line.key.resource))
        .map(|e| e.iter().map(|k| ctx.owner(*k)).collect())
        .unwrap_or_default()
}

fn even(entities: Vec<Owner<'_>>) -> Vec<(Owner<'_>, Decimal)> {
    entities.into_iter().map(|e| (e, Decimal::ONE)).collect()
}

/// The owner of record from the bill, else from `[resource_owners]`.
fn owner_of_record<'a>(ctx: &Ctx<'a>, line: &BucketLine) -> Option<Owner<'a>> {
    let named = ctx.owner(line.key.owner_of_record);
    if !named.name.is_empty() {
        return Some(named);
    }
    ctx.settings
        .rules
        .resource_owners
        .get(ctx.store.strings.name(line.key.resource))
        .map(|o| Owner::named(o.as_str()))
}

/// A weighted mix: the amount is first split over the components by their
/// weights, then each component's part over its own weights; parts are summed
/// per entity. Fails when there is no active entity or a usage component has no usage.
///
/// Every component splits over the same entities, those active on the line's
/// resource in the bucket (a usage component weighs each of them, zero when it
/// has none of the metrics), in name order: the splits are in minimal units,
/// by index, and an entity's parts are summed as integers. Its share is the
/// exact mix of its component shares ([`mixed_shares`]), else a sum of decimal
/// quotients ([`decimal_shares`]).
fn weighted<'a>(
    ctx: &Ctx<'a>,
    line: &BucketLine,
    level: EntityLevel,
    components: &[Component],
) -> Result<Outcome<'a>, Error> {
    let precision = ctx.settings.precision;
    let Some(entities) = bucket_usage(ctx, line, level).filter(|e| !e.is_empty()) else {
        return Ok(Outcome::Fail("no_active_principals"));
    };
    let component_weights: Vec<Decimal> = components.iter().map(|c| c.weight).collect();
    let (units, sign) = Sign::units(line.amount, precision)?;
    let Some(by_component) = split_units(units, &component_weights, 0)? else {
        return Ok(Outcome::Fail("no_weights"));
    };
    let names = &ctx.store.strings;
    let mut weights: Vec<Vec<Decimal>> = Vec::with_capacity(components.len());
    let mut splits: Vec<UnitSplit> = Vec::with_capacity(components.len());
    for (component, part) in components.iter().zip(&by_component.parts) {
        let entity_weights: Vec<Decimal> = if component.even {
            vec![Decimal::ONE; entities.len()]
        } else {
            let ids = metric_ids(names, &component.metrics);
            entities
                .iter()
                .map(|(_, values)| metric_sum(values, &ids))
                .collect()
        };
        let Some(split) = split_units(*part, &entity_weights, line.first_tie)? else {
            return Ok(Outcome::Fail("no_usage_found"));
        };
        weights.push(entity_weights);
        splits.push(split);
    }
    let mix: Vec<(Decimal, &UnitSplit)> = component_weights.iter().copied().zip(&splits).collect();
    let shares = match mixed_shares(&mix, SHARE_DECIMALS) {
        Some(shares) => shares,
        None => decimal_shares(&component_weights, &weights)?,
    };
    let mut parts = Vec::with_capacity(entities.len());
    for (i, ((entity, _), share)) in entities.iter().zip(shares).enumerate() {
        let units = splits
            .iter()
            .try_fold(0u128, |sum, split| sum.checked_add(*split.parts.get(i)?))
            .ok_or_else(|| Error::overflow("weighted parts"))?;
        parts.push((ctx.owner(*entity), sign.amount(units, precision)?, share));
    }
    let mut exact = Vec::new();
    if ctx.weighs {
        let whole = checked_sum(component_weights.iter().copied(), "weights")?;
        for (k, component) in component_weights.iter().zip(&weights) {
            let amount = share(*k, whole)?
                .checked_mul(line.exact)
                .ok_or_else(|| Error::overflow("exact parts"))?;
            let owners = parts.iter().map(|(owner, _, _)| *owner);
            let component: Vec<_> = owners.zip(component.iter().copied()).collect();
            exact.extend(exact_parts(ctx, amount, &component)?);
        }
    }
    let parts = Parts {
        rounded: parts,
        exact,
    };
    Ok(Outcome::Split(parts, "usage_found"))
}

/// Each entity's share of a weighted mix as a sum of decimal quotients,
/// `Σ_c k_c · (w_ic / W_c)`, rounded to [`SHARE_DECIMALS`] places: for weights
/// [`mixed_shares`] cannot take exactly.
fn decimal_shares(mix: &[Decimal], weights: &[Vec<Decimal>]) -> Result<Vec<Decimal>, Error> {
    let entities = weights.first().map_or(0, Vec::len);
    let mut shares = vec![Decimal::ZERO; entities];
    for (k, component) in mix.iter().zip(weights) {
        let total = checked_sum(component.iter().copied(), "weights")?;
        for (slot, weight) in shares.iter_mut().zip(component) {
            let term = share(*weight, total)?.checked_mul(*k).unwrap_or_default();
            *slot = slot
                .checked_add(term)
                .ok_or_else(|| Error::overflow("usage share"))?;
        }
    }
    Ok(shares
        .into_iter()
        .map(|s| round(s, SHARE_DECIMALS))
        .collect())
}

/// Completes a bucket whose rows start at `first`: its unallocated rows (one
/// per bill) and its totals, checking they reconcile.
fn push_bucket(
    result: &mut Allocation,
    ctx: &Ctx<'_>,
    total: Decimal,
    first: usize,
    unallocated: Vec<Unallocated>,
    sorted: bool,
) -> Result<(), Error> {
    let s = &ctx.store.strings;
    let org = s.name(ctx.org).to_string();
    let (start, end, partial) = ctx.bounds;
    let rows = result.rows.get(first..).unwrap_or_default();
    let allocated = checked_sum(rows.iter().map(|r| r.chargeback_cost), "allocated total")?;
    let unallocated_total = checked_sum(unallocated.iter().map(|u| u.amount), "unallocated total")?;
    if allocated.checked_add(unallocated_total) != Some(total) {
        return Err(Error::Reconciliation {
            reason: format!("bucket {start} of `{org}`: allocated {allocated} + unallocated {unallocated_total} ≠ bill {total}"),
        });
    }
    // Two providers' credits must not be written as one provider's: one row
    // per bill, in the order of the bills' keys (so the same for any input order).
    // A bill in two currencies gets a row per currency.
    let mut bills: BTreeMap<(&str, &str), Vec<&Unallocated>> = BTreeMap::new();
    for part in &unallocated {
        let currency = ctx.store.strings.name(part.currency);
        bills
            .entry((ctx.bill_of(part.bill_columns), currency))
            .or_default()
            .push(part);
    }
    for parts in bills.into_values() {
        let amount = checked_sum(parts.iter().map(|u| u.amount), "unallocated total")?;
        let Some(earliest) = parts.iter().min_by(|a, b| a.source.cmp(&b.source)) else {
            continue;
        };
        if amount.is_zero() {
            continue;
        }
        let reasons: BTreeSet<&str> = parts.iter().map(|u| u.reason).collect();
        result
            .rows
            .push(unallocated_row(ctx, amount, &reasons, earliest));
    }
    // Sorted per bucket (buckets come in output order), when not made sorted:
    // the same order as one stable sort of all rows, without its scratch copy
    // of half of them. The unallocated row sorts last, where it is pushed.
    if !sorted {
        if let Some(bucket_rows) = result.rows.get_mut(first..) {
            sort_rows(bucket_rows);
        }
    }
    result.buckets.push(BucketTotal {
        org_id: org,
        bucket_start: start,
        bucket_end: end,
        partial,
        bill_total: total,
        allocated,
        unallocated: unallocated_total,
    });
    Ok(())
}

/// The unallocated row of a bill in a bucket, named after its earliest part.
fn unallocated_row(
    ctx: &Ctx<'_>,
    amount: Decimal,
    reasons: &BTreeSet<&str>,
    earliest: &Unallocated,
) -> AllocationRow {
    let n = ctx.names;
    let (start, end, partial) = ctx.bounds;
    let (empty, unallocated) = (n.text(""), n.text(UNALLOCATED));
    let currency = n.of(earliest.currency);
    let line = AllocatedLine {
        bucket_start: start,
        bucket_end: end,
        partial_bucket: partial,
        org_id: n.of(ctx.org),
        level: EntityLevel::Principal,
        environment_id: empty.clone(),
        resource_id: empty.clone(),
        product: empty.clone(),
        line_type: empty,
        unit: currency.clone(),
        original_amount: amount,
        // Lines of different units merge here: no one quantity.
        quantity: Decimal::ZERO,
        currency,
        method: unallocated.clone(),
        chain_step: 0,
        reason: n.text(&reasons.iter().copied().collect::<Vec<_>>().join("+")),
        source: earliest.source.clone(),
        bill_columns: n.of(earliest.bill_columns),
    };
    AllocationRow {
        line: Arc::new(line),
        owner_id: unallocated,
        chargeback_cost: amount,
        usage_share: round(Decimal::ZERO, SHARE_DECIMALS),
    }
}

/// The totals of one (org, bucket) of already-allocated rows.
struct ExportBucket {
    org: Sym,
    bucket: Timestamp,
    bounds: (Timestamp, Timestamp, bool),
    allocated: Decimal,
    unallocated: Decimal,
}

/// Turns already-allocated input rows (exports) into rows and bucket totals.
fn add_allocated_rows(
    store: &Store,
    names: &Names<'_>,
    result: &mut Allocation,
    settings: Settings<'_>,
) -> Result<(), Error> {
    let s = &store.strings;
    let threads = settings.threads;
    // In output order (by names, through integer ranks), so the final sort is a merge.
    let rank = |id: Sym| names.rank(id);
    let unallocated_id = s.find(UNALLOCATED);
    let entries: Vec<(&store::AllocatedKey, &Amount)> = store.allocated.iter().collect();
    let buckets = distinct_sorted(entries.iter().map(|(k, _)| k.bucket));
    let steps = distinct_sorted(entries.iter().map(|(k, _)| k.chain_step));
    // The sort key, field by field (each an integer that orders as the field).
    let keys: Vec<[u32; EXPORT_KEY_COLUMNS]> = entries
        .iter()
        .map(|(k, _)| {
            [
                rank(k.org),
                position(&buckets, &k.bucket),
                u32::from(Some(k.owner) == unallocated_id),
                rank(k.product),
                rank(k.line_type),
                rank(k.resource),
                rank(k.environment),
                rank(k.owner),
                rank(k.method),
                k.level as u32,
                rank(k.unit),
                rank(k.currency),
                position(&steps, &k.chain_step),
                rank(k.reason),
            ]
        })
        .collect();
    let rounded = rounded_entries(&entries, &keys, settings.precision, result)?;
    let entries: Vec<(&store::AllocatedKey, &Amount)> = match &rounded {
        Some(amounts) => entries.iter().map(|(k, _)| *k).zip(amounts).collect(),
        None => entries,
    };
    // original_amount = the line's total over all its owners in the bucket.
    let mut line_totals: HashMap<(Sym, Timestamp, Sym, Sym, Sym), Decimal> = HashMap::default();
    for (k, v) in &entries {
        let slot = line_totals
            .entry((k.org, k.bucket, k.resource, k.product, k.line_type))
            .or_insert(Decimal::ZERO);
        *slot = slot
            .checked_add(v.amount)
            .ok_or_else(|| Error::overflow("export totals"))?;
        if v.amount.is_sign_negative() {
            result.credits = checked_sum([result.credits, v.amount], "credits")?;
        }
    }
    let order = order_keys(&keys, threads);
    // The rows are built in runs of the order on their own threads, each a
    // function of its entries alone (in one buffer: see `room_for_all`).
    let exported = ExportedEntries {
        store,
        names,
        entries: &entries,
        line_totals: &line_totals,
        unallocated: unallocated_id,
    };
    let runs: Vec<&[usize]> = order
        .chunks(order.len().div_ceil(threads.max(1)).max(1))
        .collect();
    let room = room_for_all(runs.iter().map(|run| run.len()).collect());
    let jobs: Vec<(&[usize], usize)> = runs.into_iter().zip(room).collect();
    let built = crate::threads::map_beside(jobs, &|(run, room)| exported.rows(run, room));
    let mut groups: Vec<ExportBucket> = Vec::new();
    for run in built {
        let (rows, run_groups) = run?;
        append_rows(&mut result.rows, rows);
        for group in run_groups {
            match groups.last_mut() {
                // A bucket cut between two runs.
                Some(last) if (last.org, last.bucket) == (group.org, group.bucket) => {
                    last.allocated =
                        checked_sum([last.allocated, group.allocated], "export totals")?;
                    last.unallocated =
                        checked_sum([last.unallocated, group.unallocated], "export totals")?;
                }
                _ => groups.push(group),
            }
        }
    }
    for group in groups {
        let (start, end, partial) = group.bounds;
        let total = group
            .allocated
            .checked_add(group.unallocated)
            .ok_or_else(|| Error::overflow("export totals"))?;
        result.buckets.push(BucketTotal {
            org_id: s.name(group.org).to_string(),
            bucket_start: start,
            bucket_end: end,
            partial,
            bill_total: total,
            allocated: group.allocated,
            unallocated: group.unallocated,
        });
    }
    Ok(())
}

/// The already-allocated entries' amounts at the output precision, in the
/// order of `entries` (`None` when every amount already is): each line
/// (organization, bucket, resource, product, line type) is rounded by
/// cumulative rounding over its owners in output order (`keys`), so its rows
/// sum to its exact total rounded and a team's sum of rows adds up, where
/// rounding rows one by one would make 1.005 + 1.005 = 2.02 of a 2.01 line.
/// What rounding moves is added to `result.rounding`.
fn rounded_entries(
    entries: &[(&store::AllocatedKey, &Amount)],
    keys: &[[u32; EXPORT_KEY_COLUMNS]],
    precision: u32,
    result: &mut Allocation,
) -> Result<Option<Vec<Amount>>, Error> {
    if entries.iter().all(|(_, a)| a.amount.scale() <= precision) {
        return Ok(None);
    }
    // (org, bucket, product, line type, resource): the line, as key columns.
    let line_of = |key: &[u32; EXPORT_KEY_COLUMNS]| [key[0], key[1], key[3], key[4], key[5]];
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by_key(|&i| keys.get(i).map(|k| (line_of(k), *k)));
    let mut amounts: Vec<Amount> = entries.iter().map(|(_, a)| (*a).clone()).collect();
    let same_line = |a: &usize, b: &usize| keys.get(*a).map(line_of) == keys.get(*b).map(line_of);
    for line in order.chunk_by(same_line) {
        let mut running = Decimal::ZERO;
        let mut rounded_before = Decimal::ZERO;
        for &i in line {
            let Some(entry) = amounts.get_mut(i) else {
                continue;
            };
            running = checked_sum([running, entry.amount], "rounding export rows")?;
            let rounded = round(running, precision);
            entry.amount = rounded
                .checked_sub(rounded_before)
                .ok_or_else(|| Error::overflow("rounding export rows"))?;
            rounded_before = rounded;
        }
        let lost = running
            .checked_sub(rounded_before)
            .ok_or_else(|| Error::overflow("rounding total"))?;
        result.rounding = checked_sum([result.rounding, lost], "rounding total")?;
    }
    Ok(Some(amounts))
}

/// What the rows of already-allocated entries are built from.
struct ExportedEntries<'a, 'n> {
    store: &'a Store,
    names: &'a Names<'n>,
    entries: &'a [(&'a store::AllocatedKey, &'a Amount)],
    /// (org, bucket, resource, product, line type) → the line's total.
    line_totals: &'a HashMap<(Sym, Timestamp, Sym, Sym, Sym), Decimal>,
    /// The id of `unallocated`, if interned.
    unallocated: Option<Sym>,
}

impl ExportedEntries<'_, '_> {
    /// The rows of the entries at `run` (indexes in output order), in that
    /// order, with room for `room` rows, and the totals of each (org, bucket)
    /// they cover.
    fn rows(
        &self,
        run: &[usize],
        room: usize,
    ) -> Result<(Vec<AllocationRow>, Vec<ExportBucket>), Error> {
        let mut rows = Vec::new();
        crate::memory::reserve_large(&mut rows, room);
        let ExportedEntries {
            store,
            names,
            entries,
            line_totals,
            unallocated,
        } = *self;
        let entries = touched_in_order(entries, run, |(k, a)| u64::from(k.owner) ^ a.rows);
        // Entries come grouped by (org, bucket), in output order: one total per
        // group, and the bucket's bounds computed once.
        let mut groups: Vec<ExportBucket> = Vec::new();
        // An export names no bill: one shared empty name, not one per row.
        let no_bill = names.text("");
        for (k, a) in entries {
            let amount = &a.amount;
            if groups
                .last()
                .is_none_or(|g| (g.org, g.bucket) != (k.org, k.bucket))
            {
                groups.push(ExportBucket {
                    org: k.org,
                    bucket: k.bucket,
                    bounds: bucket_bounds(store, k.bucket),
                    allocated: Decimal::ZERO,
                    unallocated: Decimal::ZERO,
                });
            }
            let Some(totals) = groups.last_mut() else {
                continue;
            };
            let (start, end, partial) = totals.bounds;
            let is_unallocated = Some(k.owner) == unallocated;
            let original = if is_unallocated {
                *amount
            } else {
                line_totals
                    .get(&(k.org, k.bucket, k.resource, k.product, k.line_type))
                    .copied()
                    .unwrap_or(*amount)
            };
            // Zero for the unallocated row, and where the division cannot be done.
            let share = if is_unallocated {
                None
            } else {
                rounded_ratio(*amount, original, SHARE_DECIMALS).ok()
            }
            .unwrap_or_else(|| round(Decimal::ZERO, SHARE_DECIMALS));
            let slot = if is_unallocated {
                &mut totals.unallocated
            } else {
                &mut totals.allocated
            };
            *slot = slot
                .checked_add(*amount)
                .ok_or_else(|| Error::overflow("export totals"))?;
            if amount.is_zero() {
                continue;
            }
            let line = AllocatedLine {
                bucket_start: start,
                bucket_end: end,
                partial_bucket: partial,
                org_id: names.of(k.org),
                level: k.level,
                environment_id: names.of(k.environment),
                resource_id: names.of(k.resource),
                product: names.of(k.product),
                line_type: names.of(k.line_type),
                unit: names.of(k.unit),
                original_amount: original,
                quantity: Decimal::ZERO,
                currency: names.of(k.currency),
                method: names.of(k.method),
                chain_step: k.chain_step,
                reason: names.of(k.reason),
                source: names.source(a.file, a.line),
                bill_columns: no_bill.clone(),
            };
            rows.push(AllocationRow {
                line: Arc::new(line),
                owner_id: names.of(k.owner),
                chargeback_cost: *amount,
                usage_share: share,
            });
        }
        Ok((rows, groups))
    }
}

/// `items` in `order`, each run of [`slots::BATCH`] read ahead through `touch`
/// before it is yielded: the slots an export's rows are built from lie in
/// insertion order, far from their output order, and the reads of a run
/// overlap their cache misses (see [`slots`]) where the row-building loop would
/// wait for each in turn.
fn touched_in_order<'a, T: Copy>(
    items: &'a [T],
    order: &'a [usize],
    touch: impl Fn(&T) -> u64 + 'a,
) -> impl Iterator<Item = T> + 'a {
    order.chunks(slots::BATCH).flat_map(move |run| {
        let seen = run
            .iter()
            .filter_map(|&i| items.get(i))
            .fold(0, |seen, item| seen ^ touch(item));
        std::hint::black_box(seen);
        run.iter().filter_map(|&i| items.get(i).copied())
    })
}

/// Columns of the already-allocated rows' sort key: org, bucket, unallocated
/// last, product, line type, resource, environment, owner, method, level,
/// unit, currency, chain step, reason (every field of the key: keys are distinct).
const EXPORT_KEY_COLUMNS: usize = 14;

/// The distinct values, sorted.
fn distinct_sorted<T: Ord + Copy + std::hash::Hash>(values: impl Iterator<Item = T>) -> Vec<T> {
    let set: std::collections::HashSet<T, BuildFx> = values.collect();
    let mut out: Vec<T> = set.into_iter().collect();
    out.sort_unstable();
    out
}

/// The index of `value` in `sorted`, which holds it.
fn position<T: Ord>(sorted: &[T], value: &T) -> u32 {
    u32::try_from(sorted.binary_search(value).unwrap_or(0)).unwrap_or(u32::MAX)
}

/// The permutation that sorts `keys` (distinct, so any sort gives the same order).
///
/// Each column is replaced by its dense rank among the values it takes, which
/// orders the same and needs few bits (one organization, a few products,
/// thousands of owners; a column with one value needs none); when the columns
/// fit in 128 bits together, the sort compares one packed integer per key
/// instead of up to 14 columns (in halves on two threads when `threads` allows).
fn order_keys<const N: usize>(keys: &[[u32; N]], threads: usize) -> Vec<usize> {
    let Some(columns) = dense_columns(keys) else {
        return order_by_comparing(keys);
    };
    let mut packed: Vec<(u128, usize)> = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let mut bits = 0u128;
        for (value, (ranks, width)) in key.iter().zip(&columns) {
            if *width > 0 {
                let rank = usize::try_from(*value)
                    .ok()
                    .and_then(|v| ranks.get(v))
                    .copied()
                    .unwrap_or(0);
                bits = (bits << *width) | u128::from(rank);
            }
        }
        packed.push((bits, i));
    }
    crate::threads::sort_by_key_on(threads, &mut packed, |p| p.0);
    packed.into_iter().map(|p| p.1).collect()
}

/// Per column: each value's rank among the column's distinct values (indexed
/// by value) and the bits those ranks need; `None` when the columns need more
/// than 128 bits, or a value is too large to index.
fn dense_columns<const N: usize>(keys: &[[u32; N]]) -> Option<Vec<(Vec<u32>, u32)>> {
    let limit = keys.len().saturating_mul(4).saturating_add(1 << 16);
    let mut columns: Vec<(Vec<u32>, u32)> = Vec::with_capacity(N);
    for c in 0..N {
        let max = keys
            .iter()
            .filter_map(|k| k.get(c))
            .max()
            .map_or(Some(0), |m| usize::try_from(*m).ok())?;
        if max > limit {
            return None;
        }
        columns.push((vec![0u32; max + 1], 0));
    }
    for key in keys {
        for (value, (ranks, _)) in key.iter().zip(&mut columns) {
            if let Some(seen) = usize::try_from(*value).ok().and_then(|v| ranks.get_mut(v)) {
                *seen = 1;
            }
        }
    }
    let mut total = 0u32;
    for (ranks, width) in &mut columns {
        let mut distinct = 0u32;
        for slot in ranks.iter_mut() {
            let seen = *slot;
            *slot = distinct;
            distinct += seen;
        }
        *width = u32::BITS - distinct.saturating_sub(1).leading_zeros();
        total += *width;
    }
    (total <= u128::BITS).then_some(columns)
}

/// [`order_keys`] by comparing the keys themselves.
fn order_by_comparing<const N: usize>(keys: &[[u32; N]]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_unstable_by(|a, b| keys.get(*a).cmp(&keys.get(*b)));
    order
}

/// Sorts rows by org, bucket, product, line type, resource, owner (unallocated last per bucket).
pub fn sort_rows(rows: &mut [AllocationRow]) {
    rows.sort_by(row_order);
}

/// The output order of rows (see [`sort_rows`]).
fn row_order(a: &AllocationRow, b: &AllocationRow) -> Ordering {
    (
        &a.line.org_id,
        a.line.bucket_start,
        a.owner_id == UNALLOCATED,
        &a.line.product,
        &a.line.line_type,
        &a.line.resource_id,
        &a.line.environment_id,
        &a.owner_id,
        &a.line.method,
    )
        .cmp(&(
            &b.line.org_id,
            b.line.bucket_start,
            b.owner_id == UNALLOCATED,
            &b.line.product,
            &b.line.line_type,
            &b.line.resource_id,
            &b.line.environment_id,
            &b.owner_id,
            &b.line.method,
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Keys of 14 columns, distinct, from a small or a wide range of values.
    fn keys() -> impl Strategy<Value = Vec<[u32; 14]>> {
        prop_oneof![Just(0u32), Just(3), Just(5000), Just(u32::MAX)].prop_flat_map(|top| {
            proptest::collection::vec(proptest::array::uniform14(0..=top), 0..60)
        })
    }

    /// Buckets with these numbers of lines (no line's content matters here).
    fn buckets(lines: &[usize]) -> Vec<Bucket> {
        let line = BucketLine {
            key: LineKey {
                org: 0,
                product: 0,
                line_type: 0,
                resource: 0,
                environment: 0,
                unit: 0,
                currency: 0,
                owner_of_record: 0,
                charge_category: 0,
                charge_frequency: 0,
                bill_columns: 0,
            },
            amount: Decimal::ONE,
            exact: Decimal::ONE,
            quantity: Decimal::ZERO,
            first_tie: 0,
            source: RowSource::default(),
            charge_columns: None,
        };
        lines
            .iter()
            .enumerate()
            .map(|(i, n)| ((0, Timestamp(i as i64)), vec![line.clone(); *n]))
            .collect()
    }

    #[test]
    fn pieces_are_consecutive_runs_of_about_equal_lines() {
        let cases: &[(&[usize], usize, &[usize])] = &[
            (&[], 4, &[]),
            (&[3], 1, &[1]),
            (&[3], 8, &[1]),
            (&[1, 1, 1, 1], 2, &[2, 2]),
            (&[1, 1, 1, 1, 1], 2, &[3, 2]),
            (&[10, 1, 1], 2, &[1, 2]),
            (&[1, 1, 10], 2, &[3]),
            (&[5, 5, 5, 5, 5, 5], 3, &[2, 2, 2]),
            (&[2, 2, 2], 0, &[3]),
        ];
        for (lines, threads, sizes) in cases {
            let all = buckets(lines);
            let pieces = balanced_pieces(&all, *threads);
            let got: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
            assert_eq!(&got, sizes, "{lines:?} on {threads}");
            let joined: Vec<Timestamp> = pieces
                .iter()
                .flat_map(|p| p.iter().map(|b| b.0 .1))
                .collect();
            let expected: Vec<Timestamp> = all.iter().map(|b| b.0 .1).collect();
            assert_eq!(joined, expected, "every bucket once, in order");
        }
    }

    proptest! {
        /// Packed or compared, the order is the keys' lexicographic order.
        #[test]
        fn order_keys_sorts_keys(mut keys in keys()) {
            keys.sort();
            keys.dedup();
            let mut shuffled = keys.clone();
            shuffled.reverse();
            let third = shuffled.len() / 3;
            shuffled.rotate_left(third);
            for threads in [1, 2] {
                let order = order_keys(&shuffled, threads);
                let sorted: Vec<[u32; 14]> = order.iter().map(|i| shuffled[*i]).collect();
                prop_assert_eq!(&sorted, &keys);
            }
        }

        /// A usage slot's packed sort key orders slots as its fields' tuple
        /// does and gives the fields back, negative buckets and extreme ids
        /// included.
        #[test]
        fn packed_usage_order_is_the_tuple_order(
            a in (any::<[u32; 6]>(), any::<i64>()),
            b in (any::<[u32; 6]>(), any::<i64>()),
            same in 0usize..7,
        ) {
            type Fields = ((u32, Timestamp, u32), (u32, u32), (u32, u32));
            let fields = |([org, resource, rank, entity, metric, other], bucket): ([u32; 6], i64)| -> Fields {
                ((org, Timestamp(bucket), resource), (rank, entity), (metric, other))
            };
            // Equal leading fields up to `same`, so that later fields decide.
            let mut b = b;
            for field in 0..same.min(6) {
                b.0[field] = a.0[field];
            }
            if same > 2 {
                b.1 = a.1;
            }
            let (fa, fb) = (fields(a), fields(b));
            let slot = |(group, entity, rest): Fields| IndexedUsage::new(group, entity, rest, Decimal::ONE);
            let (x, y) = (slot(fa), slot(fb));
            prop_assert_eq!((x.group, x.rest).cmp(&(y.group, y.rest)), fa.cmp(&fb));
            prop_assert_eq!((x.group(), x.entity(), x.metric()), (fa.0, fa.1, fa.2 .0));
        }
    }
}
