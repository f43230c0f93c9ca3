//! Slots of aggregates by key, for the maps a read folds rows into in no
//! useful order: an open-addressing hash table of positions over a dense
//! vector of entries.
//!
//! ## Design
//!
//! An export of a million rows folds into about a hundred thousand slots whose
//! entries (key and amount) take ~12 MB: far more than a core's caches, and the
//! rows come in no order that keeps a slot's neighbours close. Each row's fold
//! is then a wait on memory, and a hash map's probe, which reads the entry to
//! compare keys and branches on it, leaves little for the processor to overlap.
//! (A usage file's closed buckets are the same: hundreds of thousands of
//! slots, each added once.)
//!
//! Rows are therefore folded in batches ([`Slots::fold_batch`]) in three
//! passes: the first reads each row's table position (a word of a compact
//! array), the second the entry that position names, and only the third probes
//! and folds. The first two passes only *read* what the third will need, with no
//! branch on it, so their cache misses are independent and the processor
//! waits for many at once instead of one after the other; the third finds the
//! lines in the cache. They are hints only: the third pass probes from scratch
//! and is what decides, so the result is the same whatever they read.
//!
//! A table position holds 0 when empty, else the entry's index plus one in its
//! low 32 bits and the top 32 bits of the entry's hash above them, so that a
//! probe passes over other keys' positions without reading their entries. The
//! table keeps at least twice as many positions as entries (linear probing
//! stays short), and grows by doubling, placing each entry again by its stored
//! hash. Entries stay in insertion order; there is no removal.

use super::BuildFx;
use crate::error::Error;
use std::hash::{BuildHasher, Hash};

/// One slot: its key's hash, its key and its aggregate.
#[derive(Debug, Clone)]
struct Entry<K, V> {
    hash: u64,
    key: K,
    value: V,
}

/// Aggregates by key (see the module docs).
#[derive(Debug, Clone)]
pub struct Slots<K, V> {
    /// Positions: 0 when empty, else `hash >> 32 << 32 | (index + 1)`.
    table: Vec<u64>,
    /// The entries, in insertion order.
    entries: Vec<Entry<K, V>>,
}

impl<K, V> Default for Slots<K, V> {
    fn default() -> Self {
        Slots {
            table: Vec::new(),
            entries: Vec::new(),
        }
    }
}

/// The table's size when the first entry arrives.
const FIRST_POSITIONS: usize = 64;

/// Rows per pass of [`Slots::fold_batch`]: enough misses to overlap, few
/// enough for the processor to keep them in flight.
pub const BATCH: usize = 32;

/// A row waiting to be folded into its slot by [`Slots::fold_batch`].
pub trait Batched<K, V> {
    /// The slot's key.
    fn key(&self) -> &K;
    /// The row as a slot's first value.
    fn part(&self) -> V;
}

impl<K, V: Clone> Batched<K, V> for (K, V) {
    fn key(&self) -> &K {
        &self.0
    }

    fn part(&self) -> V {
        self.1.clone()
    }
}

impl<K: Hash + Eq + Clone, V> Slots<K, V> {
    /// How many slots there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every slot, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|e| (&e.key, &e.value))
    }

    /// Every slot's value, in insertion order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|e| &e.value)
    }

    /// Every slot, taken out in insertion order.
    pub fn into_entries(self) -> impl Iterator<Item = (K, V)> {
        self.entries.into_iter().map(|e| (e.key, e.value))
    }

    /// The value of `key`'s slot, made `first` when it has none.
    pub fn slot(&mut self, key: K, first: impl FnOnce() -> V) -> Result<&mut V, Error> {
        let hash = hash_of(&key);
        let index = match self.find(hash, &key) {
            Ok(index) => index,
            Err(position) => self.insert(position, hash, key, first())?,
        };
        self.entries
            .get_mut(index)
            .map(|e| &mut e.value)
            .ok_or_else(|| Error::overflow("indexing slots"))
    }

    /// [`Slots::fold_batch`] of every `(key, part)` in turn, a batch at a time
    /// (a part's slots merged into the whole's).
    pub fn add_all(
        &mut self,
        parts: impl IntoIterator<Item = (K, V)>,
        mut fold: impl FnMut(&mut V, &V) -> Result<(), Error>,
    ) -> Result<(), Error>
    where
        V: Clone,
    {
        let mut batch = Vec::with_capacity(BATCH);
        let mut parts = parts.into_iter().peekable();
        while parts.peek().is_some() {
            batch.clear();
            batch.extend(parts.by_ref().take(BATCH));
            self.fold_batch(&batch, |slot, (_, part)| fold(slot, part))?;
        }
        Ok(())
    }

    /// Folds every row of `batch` in turn, with their memory reads overlapped
    /// (see the module docs): `fold` folds a row into its key's existing slot
    /// (an error stops the batch there), and a row whose key has none makes
    /// the slot, of its [`Batched::part`].
    pub fn fold_batch<R: Batched<K, V>>(
        &mut self,
        batch: &[R],
        mut fold: impl FnMut(&mut V, &R) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut hashes = [0u64; BATCH];
        for chunk in batch.chunks(BATCH) {
            for (hash, row) in hashes.iter_mut().zip(chunk) {
                *hash = hash_of(row.key());
            }
            let hashes = hashes.get(..chunk.len()).unwrap_or_default();
            self.touch(hashes);
            for (&hash, row) in hashes.iter().zip(chunk) {
                match self.find(hash, row.key()) {
                    Ok(index) => {
                        if let Some(entry) = self.entries.get_mut(index) {
                            fold(&mut entry.value, row)?;
                        }
                    }
                    Err(position) => {
                        self.insert(position, hash, row.key().clone(), row.part())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads, without deciding anything, the table positions of `hashes` and
    /// the entries they name first: the misses of one pass overlap, and the
    /// probes that follow find the lines cached.
    fn touch(&self, hashes: &[u64]) {
        let mask = self.table.len().wrapping_sub(1);
        let mut seen = 0u64;
        let mut firsts = [0u64; BATCH];
        for (first, &hash) in firsts.iter_mut().zip(hashes) {
            *first = self.table.get(position(hash, mask)).copied().unwrap_or(0);
        }
        for first in firsts.iter().take(hashes.len()) {
            let index = (*first as u32 as usize).wrapping_sub(1);
            if let Some(entry) = self.entries.get(index) {
                seen ^= entry.hash;
            }
        }
        std::hint::black_box(seen);
    }

    /// `Ok(index)` of `key`'s entry, or `Err(position)` where it would go.
    fn find(&self, hash: u64, key: &K) -> Result<usize, usize> {
        let mask = self.table.len().wrapping_sub(1);
        let tag = hash >> 32 << 32;
        let mut at = position(hash, mask);
        // Not expected to run out: the table is never more than half full.
        for _ in 0..self.table.len() {
            let Some(&held) = self.table.get(at) else {
                break;
            };
            if held == 0 {
                return Err(at);
            }
            if held >> 32 << 32 == tag {
                let index = (held as u32 as usize).wrapping_sub(1);
                if self.entries.get(index).is_some_and(|e| e.key == *key) {
                    return Ok(index);
                }
            }
            at = (at + 1) & mask;
        }
        Err(usize::MAX)
    }

    /// Adds a slot for `key` at table `position` (from [`Slots::find`]),
    /// growing the table first when it would be more than half full; its index.
    fn insert(&mut self, position: usize, hash: u64, key: K, value: V) -> Result<usize, Error> {
        let index = self.entries.len();
        let held = u32::try_from(index + 1)
            .map(|i| hash >> 32 << 32 | u64::from(i))
            .map_err(|_| Error::overflow("more than 2^32 slots"))?;
        // Grown as `push` would, but into memory advised onto huge pages.
        crate::memory::reserve_large(&mut self.entries, 1);
        self.entries.push(Entry { hash, key, value });
        if (index + 1) * 2 > self.table.len() {
            self.grow();
            return Ok(index);
        }
        match self.table.get_mut(position) {
            Some(slot) => *slot = held,
            None => self.grow(),
        }
        Ok(index)
    }

    /// Doubles the table (or sizes it for the first entries) and places every
    /// entry again.
    fn grow(&mut self) {
        let size = (self.entries.len() * 2)
            .next_power_of_two()
            .max(FIRST_POSITIONS)
            * 2;
        self.table = crate::memory::zeroed_large(size);
        let mask = size - 1;
        for (index, entry) in self.entries.iter().enumerate() {
            let held = entry.hash >> 32 << 32 | (index as u64 + 1);
            let mut at = position(entry.hash, mask);
            while self.table.get(at).is_some_and(|h| *h != 0) {
                at = (at + 1) & mask;
            }
            if let Some(slot) = self.table.get_mut(at) {
                *slot = held;
            }
        }
    }
}

/// The hash of a key.
fn hash_of<K: Hash>(key: &K) -> u64 {
    BuildFx::default().hash_one(key)
}

/// A hash's first table position.
fn position(hash: u64, mask: usize) -> usize {
    (hash as usize) & mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocate::store::{fold_amount, AllocatedKey, Amount, Interner};
    use crate::model::EntityLevel;
    use crate::time::Timestamp;
    use rust_decimal::Decimal;
    use std::collections::HashMap;

    /// A row for [`Slots::fold_batch`].
    struct Row(AllocatedKey, Amount);

    impl Batched<AllocatedKey, Amount> for Row {
        fn key(&self) -> &AllocatedKey {
            &self.0
        }
        fn part(&self) -> Amount {
            self.1.clone()
        }
    }

    fn key(owner: u32, bucket: i64) -> AllocatedKey {
        AllocatedKey {
            org: 0,
            bucket: Timestamp(bucket),
            owner,
            level: EntityLevel::Principal,
            environment: 1,
            resource: 2,
            product: 3,
            line_type: 4,
            unit: 5,
            currency: 6,
            method: 7,
            chain_step: 0,
            reason: 0,
        }
    }

    proptest::proptest! {
        /// Slots hold what a plain map does, through table growth (thousands
        /// of keys) and long probe runs, whether rows come one by one, in
        /// batches, or as a merged part's slots; entries keep the order of
        /// their first rows.
        #[test]
        fn slots_are_a_plain_map(
            rows in proptest::collection::vec((0u32..3_000, 0i64..3, -500i64..500, 1u64..1_000), 0..4_000),
            batch in 1usize..80,
        ) {
            let strings = Interner::default();
            let mut slots: Slots<AllocatedKey, Amount> = Slots::default();
            let mut plain: HashMap<AllocatedKey, Amount> = HashMap::new();
            let mut first_seen = Vec::new();
            let parts: Vec<Row> = rows
                .iter()
                .map(|&(owner, bucket, cents, line)| {
                    Row(key(owner, bucket), Amount::one(Decimal::new(cents, 2), Decimal::ZERO, (0, line)))
                })
                .collect();
            for (n, chunk) in parts.chunks(batch).enumerate() {
                for row in chunk {
                    match plain.get_mut(&row.0) {
                        Some(slot) => fold_amount(slot, row.part(), &strings).unwrap(),
                        None => {
                            first_seen.push(row.0);
                            plain.insert(row.0, row.part());
                        }
                    }
                }
                match n % 3 {
                    0 => slots
                        .fold_batch(chunk, |slot, row| {
                            fold_amount(slot, row.part(), &strings)
                        })
                        .unwrap(),
                    1 => slots
                        .add_all(chunk.iter().map(|row| (row.0, row.part())), |slot, part| {
                            fold_amount(slot, part.clone(), &strings)
                        })
                        .unwrap(),
                    _ => {
                        for row in chunk {
                            slots
                                .fold_batch(std::slice::from_ref(row), |slot, row| {
                                    fold_amount(slot, row.part(), &strings)
                                })
                                .unwrap();
                        }
                    }
                }
            }
            proptest::prop_assert_eq!(slots.len(), plain.len());
            let order: Vec<AllocatedKey> = slots.iter().map(|(k, _)| *k).collect();
            proptest::prop_assert_eq!(order, first_seen);
            for (k, amount) in slots.iter() {
                proptest::prop_assert_eq!(Some(amount), plain.get(k));
            }
        }
    }
}
