//! Topic ids learned from Metadata responses on one connection, so that Produce
//! v13+ and Fetch v13+ (which name topics by id only) can be reported by name.
//!
//! The table is bounded ([`DecoderConfig::max_learned_topics`](super::DecoderConfig));
//! when full, the oldest entry is replaced. An id that is not (or no longer) known
//! is reported as its 32 lowercase hex digits, so bytes are never lost, only
//! labelled less helpfully.

/// A Kafka topic id.
pub(crate) type TopicId = [u8; 16];

/// Bounded id → name table, replaced oldest-first.
#[derive(Debug, Default)]
pub(crate) struct TopicTable {
    entries: Vec<(TopicId, Box<str>)>,
    /// The slot to replace next once full.
    oldest: usize,
}

impl TopicTable {
    /// Remembers `id` → `name`, within `capacity` entries; true when that is
    /// news (the id was unknown or had another name).
    pub(crate) fn learn(&mut self, id: TopicId, name: &str, capacity: usize) -> bool {
        if let Some(entry) = self.entries.iter_mut().find(|(known, _)| *known == id) {
            if &*entry.1 == name {
                return false;
            }
            entry.1 = name.into();
            return true;
        }
        if self.entries.len() < capacity {
            self.grow_within(capacity);
            self.entries.push((id, name.into()));
        } else if let Some(slot) = self.entries.get_mut(self.oldest) {
            *slot = (id, name.into());
            self.oldest = (self.oldest + 1) % self.entries.len().max(1);
        }
        true
    }

    /// Makes room for one more entry: doubling, but never past `capacity`.
    fn grow_within(&mut self, capacity: usize) {
        let len = self.entries.len();
        if len == self.entries.capacity() {
            self.entries.reserve_exact(len.max(4).min(capacity - len));
        }
    }

    /// Writes the name of `id` (or its hex form) into `out`.
    pub(crate) fn name_into(&self, id: &TopicId, out: &mut String) {
        out.clear();
        match self.entries.iter().find(|(known, _)| known == id) {
            Some((_, name)) => out.push_str(name),
            None => push_hex(id, out),
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(TopicId, Box<str>)>()
            + self
                .entries
                .iter()
                .map(|(_, name)| name.len())
                .sum::<usize>()
    }
}

/// 32 lowercase hex digits.
pub(crate) fn push_hex(id: &TopicId, out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in id {
        for nibble in [byte >> 4, byte & 0xf] {
            if let Some(&digit) = DIGITS.get(usize::from(nibble)) {
                out.push(char::from(digit));
            }
        }
    }
}
