//! A streaming CSV tokenizer and header → column mapping.
//!
//! ## Design
//!
//! [`Tokenizer`] is a push parser: the caller feeds chunks of bytes of any size
//! ([`Tokenizer::feed`]) and calls [`Tokenizer::finish`] at the end; each complete
//! record is handed to a callback as a borrowed [`Record`] (fields plus the 1-based
//! line it starts on), so no allocation happens per row once the buffers are warm.
//!
//! It follows RFC 4180 and the habits of real exports: a UTF-8 byte-order mark is
//! dropped, `\r\n`, `\n` and lone `\r` all end a record, quoted fields may hold
//! commas, doubled quotes and line breaks, blank lines are skipped, and a stray
//! quote inside an unquoted field is kept as a character (lenient, like
//! spreadsheets). A record longer than the limit (default 1 MiB) is refused with
//! [`Error::TooLarge`], once, at the line it starts on: from the byte that
//! crosses the limit the tokenizer keeps nothing of it, but reads on through
//! the same states (quoted fields, doubled quotes and their line breaks
//! included) to where the record truly ends, and refuses it there. Memory
//! stays bounded by the limit whatever the input, and the records after it
//! are read as they are: resuming at the next line break instead would land
//! inside an oversized quoted field and read its lines as records. A quote
//! never closed puts the rest of the file in one field: refused once, as
//! unterminated. Invalid UTF-8 rejects that record only (each field must be
//! valid by itself).
//!
//! ### Two paths, one behaviour
//!
//! Nearly every record of a real export is plain: no quote, ending in `\n` or
//! `\r\n` inside the chunk at hand. Those take the fast path, which emits them
//! straight from the chunk without copying. It reads the chunk eight bytes at
//! a time (SWAR on a `u64`, portable to wasm32; no unsafe code), one pass for
//! all its records: a leaf loop (`plain_words`) passes over the words whose
//! bytes are all ASCII and at least `,` (two words per test), writing their
//! comma positions into a field-end buffer kept at full length (one bounds
//! check per comma, no length update); each other word (about one per record,
//! the one with its line break) has its flagged bytes handled in order: commas,
//! line breaks (which emit the record and start the next in the same word),
//! whitespace and non-ASCII bytes (which only clear the record's `bare` flag).
//! UTF-8 is validated once per chunk, up to its last line break, not record by
//! record. Any other record (a quote, a lone `\r`, a line cut by the end of the
//! chunk, one over the limit) is left to the byte-wise state machine (at its
//! first quote, with the fields read before it handed over), which copies
//! fields into a buffer a run at a time: up to the next `,` or line break, or
//! inside quotes up to the next quote (a FOCUS bill's quoted JSON fields are
//! hundreds of bytes), each found a word at a time. Tests feed arbitrary bytes
//! in arbitrary chunks (wide and long records among them) and compare with the
//! byte-wise path alone (fed a byte at a time), so the two cannot drift apart.
//!
//! [`ColumnMap`] maps a header record to column indices through an alias table
//! ([`ColumnSpec`]), so files are read by column *name*, never by position, and a
//! missing required column is an [`Error::MissingColumn`] naming the aliases. A
//! column found twice (one name twice, or two aliases of one spec, such as
//! `owner_id` and `principal`) refuses the file too: which of the two was meant
//! cannot be known. A column no spec reads may repeat.
//! [`ColumnMap::get`] fetches one column; [`ColumnMap::values`] fetches all of
//! a reader's columns in one walk over the record, for the per-row hot path.
//!
//! Every record must have as many fields as the header ([`ColumnMap::fits`],
//! checked by [`CsvReader`] before its row parser sees the record): a field
//! too many (an unquoted `1,250.00`) or too few shifts the columns after it,
//! so the record is rejected naming both counts. A row leaving out trailing
//! optional columns is rejected as well: it cannot be told from one that lost
//! a field in the middle, and CSV writers (tally's among them) write every
//! field of every row.

use crate::error::{Error, Location};

/// The default maximum record length in bytes (1 MiB).
pub const DEFAULT_MAX_RECORD: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field.
    FieldStart,
    /// Inside an unquoted field.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just saw a quote inside a quoted field (end of field or an escaped quote).
    QuoteInQuoted,
}

/// One CSV record, borrowed from the tokenizer's buffers.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// 1-based line the record starts on.
    pub line: u64,
    text: &'a str,
    ends: &'a [usize],
    /// Bytes between fields in `text`: 0 when fields were copied out (the
    /// byte-wise path), 1 when `text` is the raw line (the fast path).
    sep: usize,
    /// Known to hold no whitespace at all (no ASCII byte below `,` but the
    /// separators, no byte of a multi-byte character): no field needs trimming.
    bare: bool,
}

impl<'a> Record<'a> {
    /// The number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the record has no fields (never true for an emitted record).
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Field `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Option<&'a str> {
        let end = *self.ends.get(index)?;
        let start = match index.checked_sub(1) {
            Some(prev) => self.ends.get(prev)?.checked_add(self.sep)?,
            None => 0,
        };
        self.text.get(start..end)
    }

    /// All fields in order.
    pub fn fields(&self) -> impl Iterator<Item = &'a str> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// The streaming tokenizer (see the module docs).
#[derive(Debug)]
pub struct Tokenizer {
    file: String,
    limit: usize,
    state: State,
    line: u64,
    record_line: u64,
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// The fast path's field ends, kept at full length (see [`put`]).
    fast_ends: Vec<usize>,
    after_cr: bool,
    /// The current record crossed the limit: its bytes are read on through
    /// the same states (quotes and all, so that it ends where it truly ends)
    /// but not kept, and it is refused when it ends.
    oversized: bool,
    bom_seen: usize,
    bom_done: bool,
}

/// A callback receiving each record, or the error that refused one.
pub trait OnRecord: FnMut(Result<Record<'_>, Error>) -> Result<(), Error> {}
impl<F: FnMut(Result<Record<'_>, Error>) -> Result<(), Error>> OnRecord for F {}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

impl Tokenizer {
    /// A tokenizer for `file` (used in error locations) with the default limit.
    pub fn new(file: &str) -> Self {
        Tokenizer::with_limit(file, DEFAULT_MAX_RECORD)
    }

    /// A tokenizer refusing records longer than `limit` bytes.
    pub fn with_limit(file: &str, limit: usize) -> Self {
        Tokenizer {
            file: file.to_string(),
            limit: limit.max(1),
            state: State::FieldStart,
            line: 1,
            record_line: 1,
            buf: Vec::with_capacity(256),
            ends: Vec::with_capacity(16),
            fast_ends: vec![0; 16],
            after_cr: false,
            oversized: false,
            bom_seen: 0,
            bom_done: false,
        }
    }

    /// The file name given at construction.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Feeds the next chunk; complete records go to `on_record`. An `Err` returned
    /// by the callback stops the feed and is returned.
    pub fn feed(&mut self, chunk: &[u8], on_record: &mut impl OnRecord) -> Result<(), Error> {
        let chunk = self.strip_bom(chunk);
        let mut utf8 = Utf8Region::new(chunk);
        let mut i = 0;
        loop {
            if self.state == State::FieldStart
                && self.buf.is_empty()
                && self.ends.is_empty()
                && !self.after_cr
                && !self.oversized
            {
                i = self.quick_records(chunk, i, &mut utf8, on_record)?;
            }
            let Some(&byte) = chunk.get(i) else {
                break;
            };
            i += 1;
            if self.after_cr {
                // The `\r` counted the line break already: `\r\n` is one.
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match self.state {
                State::FieldStart | State::Unquoted => match byte {
                    b',' => self.end_field(),
                    b'\n' => {
                        self.end_record(on_record)?;
                        self.line += 1;
                        self.record_line = self.line;
                    }
                    b'\r' => {
                        self.end_record(on_record)?;
                        self.line += 1;
                        self.record_line = self.line;
                        self.after_cr = true;
                    }
                    b'"' if self.state == State::FieldStart => {
                        self.state = State::Quoted;
                        i = self.quoted(chunk, i);
                    }
                    _ => {
                        self.state = State::Unquoted;
                        // Copy the run of plain bytes up to the next special one at once.
                        let rest = chunk.get(i - 1..).unwrap_or_default();
                        let run = find_first(rest, [b',', b'\n', b'\r']);
                        self.push_run(rest.get(..run).unwrap_or_default());
                        i += run.saturating_sub(1);
                    }
                },
                State::Quoted => i = self.quoted(chunk, i - 1),
                State::QuoteInQuoted => match byte {
                    b'"' => {
                        self.state = State::Quoted;
                        self.push_run(b"\"");
                    }
                    b',' => self.end_field(),
                    b'\n' => {
                        self.end_record(on_record)?;
                        self.line += 1;
                        self.record_line = self.line;
                    }
                    b'\r' => {
                        self.end_record(on_record)?;
                        self.line += 1;
                        self.record_line = self.line;
                        self.after_cr = true;
                    }
                    other => {
                        self.state = State::Unquoted;
                        self.push_run(&[other]);
                    }
                },
            }
        }
        Ok(())
    }

    /// The fast path (see the module docs): emits the plain records starting at
    /// `start` straight from the chunk; returns where the first other record
    /// starts, left to the byte-wise path.
    fn quick_records(
        &mut self,
        chunk: &[u8],
        start: usize,
        utf8: &mut Utf8Region<'_>,
        on_record: &mut impl OnRecord,
    ) -> Result<usize, Error> {
        // A local vector stays in registers across the scan; `self.fast_ends`
        // keeps its allocation for the next call.
        let mut ends = std::mem::take(&mut self.fast_ends);
        let result = self.scan(chunk, start, utf8, &mut ends, on_record);
        self.fast_ends = ends;
        result
    }

    /// [`Tokenizer::quick_records`] with the field ends in `ends`, which is
    /// kept at its full length (see [`put`]). [`plain_words`] passes over the
    /// words with nothing but commas to note; each other word's flagged bytes
    /// are handled here in order: about one word per record, the one with its
    /// line break (which emits the record and starts the next).
    fn scan(
        &mut self,
        chunk: &[u8],
        mut start: usize,
        utf8: &mut Utf8Region<'_>,
        ends: &mut Vec<usize>,
        on_record: &mut impl OnRecord,
    ) -> Result<usize, Error> {
        let limit = self.limit;
        let mut at = start;
        let mut fields = 0;
        let mut bare = true;
        loop {
            (at, fields) = plain_words(chunk, at, start, ends, fields);
            let word = match chunk.get(at..) {
                Some(rest) if rest.len() >= 8 => word8(rest, 0),
                // The chunk's last, short word, padded with bytes never flagged.
                Some(rest) if !rest.is_empty() => {
                    let mut word = [b'a'; 8];
                    for (slot, byte) in word.iter_mut().zip(rest) {
                        *slot = *byte;
                    }
                    u64::from_le_bytes(word)
                }
                _ => return Ok(start),
            };
            if plain_commas(word).is_some() {
                // Its commas did not all fit: note them again, after the
                // field ends before the word.
                while fields > 0 && ends.get(fields - 1).is_some_and(|end| *end >= at - start) {
                    fields -= 1;
                }
            }
            let mut flags = flagged_bytes(word);
            while flags != 0 {
                let bit = flags.trailing_zeros();
                flags &= flags - 1;
                let pos = at + (bit / 8) as usize;
                match (word >> (bit & 0x38)) as u8 {
                    b',' => {
                        if !put(ends, fields, pos - start, limit) {
                            return Ok(start);
                        }
                        fields += 1;
                    }
                    b'\n' => {
                        // The `\r` of a `\r\n` in this record was passed over.
                        let crlf = pos > start && chunk.get(pos - 1) == Some(&b'\r');
                        let len = pos - start - usize::from(crlf);
                        if len > limit || !put(ends, fields, len, limit) {
                            return Ok(start);
                        }
                        let line = self.line;
                        self.line += 1;
                        self.record_line = self.line;
                        // An empty line is a blank line, skipped.
                        if len > 0 {
                            let ends = ends.get(..=fields).unwrap_or_default();
                            let result = match utf8.text(start, start + len) {
                                Some(text) => on_record(Ok(Record {
                                    line,
                                    text,
                                    ends,
                                    sep: 1,
                                    bare,
                                })),
                                None => on_record(Err(Error::input(
                                    &self.file,
                                    line,
                                    "",
                                    "not valid UTF-8",
                                ))),
                            };
                            result?;
                        }
                        start = pos + 1;
                        fields = 0;
                        bare = true;
                    }
                    b'\r' if chunk.get(pos + 1) == Some(&b'\n') => {}
                    b'"' => {
                        let commas = ends.get(..fields).unwrap_or_default();
                        return Ok(self.hand_over(chunk, start, pos, commas));
                    }
                    // A lone `\r` (or one ending the chunk).
                    b'\r' => return Ok(start),
                    // Other ASCII bytes up to `,` (whitespace among them) and
                    // bytes of multi-byte characters.
                    _ => bare = false,
                }
            }
            at += 8;
        }
    }
    /// Hands the record at `start`, in which the fast path met a quote at
    /// `quote`, over to the byte-wise states with what was read of it (its
    /// fields before the quote, split at `commas`, their positions from
    /// `start`), so that they go on at the quote rather than read the record
    /// again. Returns where they go on: `start` itself when that much is over
    /// the limit (they refuse it, as they would have).
    fn hand_over(&mut self, chunk: &[u8], start: usize, quote: usize, commas: &[usize]) -> usize {
        let Some(read) = chunk
            .get(start..quote)
            .filter(|read| read.len() <= self.limit)
        else {
            return start;
        };
        let mut from = 0;
        for &comma in commas {
            self.buf
                .extend_from_slice(read.get(from..comma).unwrap_or_default());
            self.ends.push(self.buf.len());
            from = comma + 1;
        }
        self.buf
            .extend_from_slice(read.get(from..).unwrap_or_default());
        // A quote opening a field starts a quoted one; inside a field it is a
        // character of it (see the module docs).
        self.state = if from >= read.len() {
            State::FieldStart
        } else {
            State::Unquoted
        };
        quote
    }

    /// Ends the input: a last record without a line break is emitted. An
    /// unterminated quoted field is an error for that record, over the limit
    /// or not: the one rejection says what swallowed the lines after it.
    pub fn finish(&mut self, on_record: &mut impl OnRecord) -> Result<(), Error> {
        if self.state == State::Quoted {
            let error = Error::input(
                &self.file,
                self.record_line,
                "",
                "unterminated quoted field: its quote is never closed, so the rest of the \
                 file is inside it; refused",
            );
            self.reset();
            return on_record(Err(error));
        }
        self.end_record(on_record)
    }

    /// Drops a UTF-8 byte-order mark at the very start (even split over chunks).
    fn strip_bom<'c>(&mut self, chunk: &'c [u8]) -> &'c [u8] {
        let mut chunk = chunk;
        while !self.bom_done {
            let Some((&first, rest)) = chunk.split_first() else {
                return chunk;
            };
            if BOM.get(self.bom_seen) == Some(&first) {
                self.bom_seen += 1;
                chunk = rest;
                if self.bom_seen == BOM.len() {
                    self.bom_done = true;
                }
            } else {
                // Not a BOM after all: give back any partial prefix as content.
                self.bom_done = true;
                let seen = BOM.get(..self.bom_seen).unwrap_or_default().to_vec();
                self.buf.extend_from_slice(&seen);
                if !seen.is_empty() {
                    self.state = State::Unquoted;
                }
            }
        }
        chunk
    }

    /// Appends a run of bytes to the current field, or drops it when the
    /// record is (or with it becomes) over the limit.
    fn push_run(&mut self, run: &[u8]) {
        if self.oversized || self.buf.len() + run.len() + self.ends.len() > self.limit {
            self.drop_record();
        } else {
            self.buf.extend_from_slice(run);
        }
    }

    /// Reads on inside a quoted field from `at`, a run and a doubled quote at
    /// a time (a JSON object in a FOCUS bill's field has dozens), as the
    /// byte-wise states would. Returns where those go on: past the closing
    /// quote (in [`State::QuoteInQuoted`], which the next byte settles) or at
    /// the end of the chunk. A field over the limit is read to its closing
    /// quote all the same (not kept), so the record ends where it truly ends.
    /// Not inlined: inlined into [`Tokenizer::feed`], it cost the plain-row
    /// fast path there about ten instructions a row (callgrind).
    #[inline(never)]
    fn quoted(&mut self, chunk: &[u8], mut at: usize) -> usize {
        loop {
            let rest = chunk.get(at..).unwrap_or_default();
            let run = rest.get(..find_first(rest, [b'"'])).unwrap_or_default();
            self.line += run.iter().filter(|b| **b == b'\n').count() as u64;
            self.push_run(run);
            at += run.len();
            if at >= chunk.len() {
                return at;
            }
            if chunk.get(at + 1) != Some(&b'"') {
                self.state = State::QuoteInQuoted;
                return at + 1;
            }
            at += 2;
            self.push_run(b"\"");
        }
    }

    fn end_field(&mut self) {
        // The comma counts too: a line of commas alone must not grow `ends`
        // past the limit.
        if self.oversized || self.buf.len() + self.ends.len() + 1 > self.limit {
            self.drop_record();
        } else {
            self.ends.push(self.buf.len());
        }
        self.state = State::FieldStart;
    }

    /// Drops what was kept of a record over the limit; the states read it on
    /// to its end without keeping it, and [`Tokenizer::end_record`] refuses
    /// it there: memory stays bounded by the limit, and the bytes after it
    /// are read as what they are (not, say, as the middle of a quoted field).
    fn drop_record(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.oversized = true;
    }

    fn end_record(&mut self, on_record: &mut impl OnRecord) -> Result<(), Error> {
        if self.oversized {
            let error = Error::TooLarge {
                at: Location {
                    file: self.file.clone(),
                    line: self.record_line,
                    column: String::new(),
                },
                limit: self.limit as u64,
            };
            self.reset();
            return on_record(Err(error));
        }
        let blank = self.ends.is_empty() && self.buf.is_empty() && self.state == State::FieldStart;
        if blank {
            self.reset();
            return Ok(());
        }
        self.ends.push(self.buf.len());
        // Each field must be valid on its own: the halves of a character cut by
        // a comma are invalid in the line even though they join up in `buf`.
        let text = std::str::from_utf8(&self.buf)
            .ok()
            .filter(|text| self.ends.iter().all(|end| text.is_char_boundary(*end)));
        let result = match text {
            Some(text) => on_record(Ok(Record {
                line: self.record_line,
                text,
                ends: &self.ends,
                sep: 0,
                bare: false,
            })),
            None => on_record(Err(Error::input(
                &self.file,
                self.record_line,
                "",
                "not valid UTF-8",
            ))),
        };
        self.reset();
        result
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.oversized = false;
        self.state = State::FieldStart;
        self.record_line = self.line;
    }

    /// The line the next record starts on when the tokenizer is between records
    /// with nothing buffered (the last byte read ended a record outside quotes);
    /// `None` anywhere else. A parallel read checks with it that a part ended
    /// where the serial read is at a record boundary too.
    pub fn record_boundary(&self) -> Option<u64> {
        let clean = self.state == State::FieldStart
            && self.buf.is_empty()
            && self.ends.is_empty()
            && !self.after_cr
            && !self.oversized
            && self.bom_done;
        clean.then_some(self.line)
    }
}

/// Scans the words of `chunk` from `at` on while they are plain (see
/// [`plain_commas`]), writing the positions of their commas, from `start`, into
/// `ends` from index `n` on. Returns where it stopped (a word that is not
/// plain, a word whose commas did not all fit in `ends`, or the chunk's last,
/// short word) and the new `n` (which may count some commas of the word it
/// stopped at). Not inlined: alone, its loop keeps everything in registers.
#[inline(never)]
fn plain_words(
    chunk: &[u8],
    at: usize,
    start: usize,
    ends: &mut [usize],
    mut n: usize,
) -> (usize, usize) {
    // `start` is at most `at`: a record starts in a word scanned before.
    let mut offset = at - start;
    let rest = chunk.get(at..).unwrap_or_default();
    // Two words a step: one test for both when they are plain.
    let mut pairs = rest.chunks_exact(16);
    for pair in &mut pairs {
        let (first, second) = (word8(pair, 0), word8(pair, 8));
        let (Some(commas), Some(next)) = (plain_commas(first), plain_commas(second)) else {
            break;
        };
        if !note_commas(ends, &mut n, offset, commas)
            || !note_commas(ends, &mut n, offset + 8, next)
        {
            return (start + offset, n);
        }
        offset += 16;
    }
    // The first word of the pair that stopped the loop, or the last single word.
    if let Some(commas) = plain_commas(word8(rest, offset - (at - start))) {
        if note_commas(ends, &mut n, offset, commas) {
            offset += 8;
        }
    }
    (start + offset, n)
}

/// Writes the positions of the commas flagged in `commas` (of the word at
/// `offset`) into `ends` from `n` on; `false` if they do not all fit.
#[inline(always)]
fn note_commas(ends: &mut [usize], n: &mut usize, offset: usize, mut commas: u64) -> bool {
    while commas != 0 {
        let Some(slot) = ends.get_mut(*n) else {
            return false;
        };
        *slot = offset + (commas.trailing_zeros() / 8) as usize;
        *n += 1;
        commas &= commas - 1;
    }
    true
}

/// The eight bytes of `bytes` from `from` as a little-endian word (0 if fewer
/// remain; callers stay inside).
#[inline]
pub(crate) fn word8(bytes: &[u8], from: usize) -> u64 {
    bytes
        .get(from..from.saturating_add(8))
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map_or(0, u64::from_le_bytes)
}

/// Writes `end` as field end number `n`, growing `ends` (kept at its full
/// length, so that [`plain_words`] needs no capacity check or length update)
/// when it is full; `false` when a record that long is over the limit, which
/// keeps `ends` within twice the limit.
#[inline]
fn put(ends: &mut Vec<usize>, n: usize, end: usize, limit: usize) -> bool {
    match ends.get_mut(n) {
        Some(slot) => {
            *slot = end;
            true
        }
        None => grow(ends, n, end, limit),
    }
}

/// [`put`] when `ends` is full.
#[cold]
#[inline(never)]
fn grow(ends: &mut Vec<usize>, n: usize, end: usize, limit: usize) -> bool {
    if end > limit {
        return false;
    }
    ends.resize(n.saturating_mul(2).max(16), 0);
    match ends.get_mut(n) {
        Some(slot) => {
            *slot = end;
            true
        }
        None => false,
    }
}

const ONES: u64 = u64::from_le_bytes([1; 8]);
const LOW7: u64 = u64::from_le_bytes([0x7f; 8]);
const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
/// Added to a byte from `,` to 0x7f, sets its high bit without a carry; added
/// to a byte below `,`, leaves it clear.
const PLAIN_ADD: u64 = u64::from_le_bytes([0x80 - b','; 8]);
/// Added to the seven low bits of a byte, sets the high bit iff they are above `,`.
const ABOVE_COMMA_ADD: u64 = u64::from_le_bytes([0x80 - b',' - 1; 8]);

/// The high bit of each comma of a word whose bytes are all ASCII and at least
/// `,` (a plain word: most words of a plain record); `None` for any other word.
///
/// Exact without masking off high bits first: in a plain word no byte carries
/// into the next, so each sum byte has its high bit set and the word none; in
/// any other word, the lowest byte that is below `,` or not ASCII gets no carry
/// from below, so its sum byte has the high bit clear (below `,`) or the word
/// byte has it set (not ASCII), and the test fails. In a plain word the sum's
/// complement is `0x7f` at a comma and less elsewhere: adding one sets the high
/// bit of the commas alone.
#[inline]
fn plain_commas(word: u64) -> Option<u64> {
    let not_sum = !word.wrapping_add(PLAIN_ADD);
    if (not_sum | word) & HIGH != 0 {
        return None;
    }
    Some(not_sum.wrapping_add(ONES) & HIGH)
}

/// The high bit of each byte of `word` that is ASCII and at most `,` (which
/// covers `,` `"` `\r` `\n` and whitespace) or not ASCII: the bytes
/// [`Tokenizer::scan`] looks at. Exact per byte: the seven low bits plus
/// [`ABOVE_COMMA_ADD`] never carry into the next byte.
fn flagged_bytes(word: u64) -> u64 {
    (!((word & LOW7) + ABOVE_COMMA_ADD) | word) & HIGH
}

/// The high bit of each byte of `word` equal to `byte`, exact for the lowest
/// one: a borrow can flag a byte above a match, never one below.
#[inline]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGH
}

/// The position of the first byte of `bytes` that is one of `needles`, or
/// `bytes.len()`. A word at a time, for the byte-wise path's runs (a quoted
/// field of a FOCUS bill is a JSON object of hundreds of bytes).
#[inline]
fn find_first<const N: usize>(bytes: &[u8], needles: [u8; N]) -> usize {
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    let mut at = 0;
    for word in words {
        let word = <[u8; 8]>::try_from(word).map_or(0, u64::from_le_bytes);
        let hits = needles
            .iter()
            .fold(0, |hits, needle| hits | bytes_equal(word, *needle));
        if hits != 0 {
            return at + (hits.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + tail
        .iter()
        .position(|b| needles.contains(b))
        .unwrap_or(tail.len())
}

/// The part of a chunk known to be valid UTF-8, validated once up to the
/// chunk's last line break (a line break is ASCII, so a chunk that ends inside
/// a character never taints it) rather than record by record. Only a record
/// with invalid bytes makes it validate again, from the next record on, so the
/// work stays linear in the chunk.
struct Utf8Region<'c> {
    chunk: &'c [u8],
    /// Where `text` starts in `chunk`.
    from: usize,
    text: &'c str,
    /// One past the chunk's last `\n` (found on first use).
    stop: Option<usize>,
}

impl<'c> Utf8Region<'c> {
    fn new(chunk: &'c [u8]) -> Self {
        Utf8Region {
            chunk,
            from: 0,
            text: "",
            stop: None,
        }
    }

    /// The bytes `start..end` of the chunk as text, or `None` if they are not
    /// valid UTF-8. `start` must not be before a previous call's.
    #[inline]
    fn text(&mut self, start: usize, end: usize) -> Option<&'c str> {
        let known = start
            .checked_sub(self.from)
            .zip(end.checked_sub(self.from))
            .and_then(|(s, e)| self.text.get(s..e));
        if known.is_some() {
            return known;
        }
        self.validate_from(start, end);
        end.checked_sub(start).and_then(|len| self.text.get(..len))
    }

    /// Validates from `start` up to the last line break (at least to `end`).
    #[inline(never)]
    fn validate_from(&mut self, start: usize, end: usize) {
        let chunk = self.chunk;
        let stop = *self.stop.get_or_insert_with(|| {
            chunk
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |pos| pos + 1)
        });
        let bytes = chunk.get(start..stop.max(end)).unwrap_or_default();
        self.from = start;
        self.text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => bytes
                .get(..error.valid_up_to())
                .and_then(|valid| std::str::from_utf8(valid).ok())
                .unwrap_or_default(),
        };
    }
}

/// One column a reader wants: its canonical name, the header names accepted for
/// it (compared after [`normalize_header`]) and whether it is required.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    /// The canonical name (used in error messages).
    pub name: &'static str,
    /// Accepted header names, canonical first.
    pub aliases: &'static [&'static str],
    /// Whether a header without it is refused.
    pub required: bool,
}

impl ColumnSpec {
    /// A required column.
    pub const fn required(name: &'static str, aliases: &'static [&'static str]) -> Self {
        ColumnSpec {
            name,
            aliases,
            required: true,
        }
    }

    /// An optional column.
    pub const fn optional(name: &'static str, aliases: &'static [&'static str]) -> Self {
        ColumnSpec {
            name,
            aliases,
            required: false,
        }
    }
}

/// Lower-cases a header name and turns spaces, dashes and dots into underscores.
pub fn normalize_header(name: &str) -> String {
    name.trim()
        .trim_start_matches('\u{feff}')
        .chars()
        .map(|c| match c {
            ' ' | '-' | '.' => '_',
            other => other.to_ascii_lowercase(),
        })
        .collect()
}

/// Column indices of a header, in the order of the specs given.
#[derive(Debug, Clone, Default)]
pub struct ColumnMap {
    /// The file, for the errors of [`ColumnMap::width_error`].
    file: String,
    /// The header's names as written (trimmed): their count is the number of
    /// fields every record must have.
    header: Vec<String>,
    index: Vec<Option<usize>>,
    names: Vec<&'static str>,
    /// Per column up to the last one wanted: the spec it feeds, or `usize::MAX`
    /// (for [`ColumnMap::values`], which walks a record's fields in order).
    slots: Vec<usize>,
    /// (spec, earlier spec) pairs of specs that found the same column.
    shared: Vec<(usize, usize)>,
}

impl ColumnMap {
    /// Maps `header` through `specs`; a missing required column is an error,
    /// and so is a column found twice (the same name twice, or two names of
    /// one spec): which of the two a reader should take cannot be known.
    pub fn new(file: &str, header: &Record<'_>, specs: &[ColumnSpec]) -> Result<Self, Error> {
        let normalized: Vec<String> = header.fields().map(normalize_header).collect();
        let mut index = Vec::with_capacity(specs.len());
        for spec in specs {
            let mut matching = normalized
                .iter()
                .enumerate()
                .filter(|(_, name)| spec.aliases.contains(&name.as_str()))
                .map(|(at, _)| at);
            let found = matching.next();
            if let Some((first, second)) = found.zip(matching.next()) {
                return Err(duplicate_column(file, header, spec, first, second));
            }
            if found.is_none() && spec.required {
                return Err(Error::MissingColumn {
                    at: Location {
                        file: file.to_string(),
                        line: header.line,
                        column: String::new(),
                    },
                    column: spec.name.to_string(),
                    accepted: spec.aliases.iter().map(|a| (*a).to_string()).collect(),
                });
            }
            index.push(found);
        }
        let mut slots = vec![usize::MAX; index.iter().flatten().max().map_or(0, |last| last + 1)];
        let mut shared = Vec::new();
        for (spec, column) in index.iter().enumerate() {
            let Some(slot) = column.and_then(|c| slots.get_mut(c)) else {
                continue;
            };
            if *slot == usize::MAX {
                *slot = spec;
            } else {
                shared.push((spec, *slot));
            }
        }
        Ok(ColumnMap {
            file: file.to_string(),
            header: header.fields().map(|name| trim(name).to_string()).collect(),
            index,
            names: specs.iter().map(|s| s.name).collect(),
            slots,
            shared,
        })
    }

    /// Whether `record` has as many fields as the header. A field too many (an
    /// unquoted `1,250.00`) or one lost anywhere in the row shifts every
    /// column after it, and nothing in the record tells where: none of its
    /// values can be trusted, even when only trailing optional columns seem
    /// to be missing. [`CsvReader`] rejects such a record with
    /// [`ColumnMap::width_error`] before its row parser sees it.
    #[inline]
    pub fn fits(&self, record: &Record<'_>) -> bool {
        record.len() == self.header.len()
    }

    /// The rejection of a record that does not [`ColumnMap::fits`] its
    /// header. It names no column: which field was added or lost cannot be
    /// known.
    #[cold]
    #[inline(never)]
    pub fn width_error(&self, record: &Record<'_>) -> Error {
        let (fields, header) = (record.len(), self.header.len());
        let reason = match self.header.get(fields) {
            Some(first_missing) => format!(
                "{fields} fields, but the header has {header}: the row ends before \
                 `{first_missing}`, and a field lost anywhere in it shifts the columns after \
                 it; refused"
            ),
            None => format!(
                "{fields} fields, but the header has {header}: a comma inside an unquoted \
                 value (such as `1,250.00`) shifts the columns after it; refused"
            ),
        };
        Error::input(&self.file, record.line, "", reason)
    }

    /// Whether the column of spec `which` is present.
    pub fn has(&self, which: usize) -> bool {
        matches!(self.index.get(which), Some(Some(_)))
    }

    /// The canonical name of spec `which`.
    pub fn name(&self, which: usize) -> &'static str {
        self.names.get(which).copied().unwrap_or("")
    }

    /// The trimmed values of the first `N` specs in `record`, in spec order
    /// (empty when absent): one pass over the fields for a reader that wants
    /// most columns, cheaper than a lookup per column.
    pub fn values<'a, const N: usize>(&self, record: &Record<'a>) -> [&'a str; N] {
        let mut values = [""; N];
        let mut start = 0;
        for (&end, &slot) in record.ends.iter().zip(&self.slots) {
            if let Some(value) = values.get_mut(slot) {
                let field = record.text.get(start..end).unwrap_or("");
                *value = if record.bare { field } else { trim(field) };
            }
            start = end + record.sep;
        }
        for &(spec, from) in &self.shared {
            if let Some(&value) = values.get(from) {
                if let Some(slot) = values.get_mut(spec) {
                    *slot = value;
                }
            }
        }
        values
    }

    /// The trimmed value of spec `which` in `record` (empty when absent).
    pub fn get<'a>(&self, record: &Record<'a>, which: usize) -> &'a str {
        match self.index.get(which) {
            Some(Some(i)) => trim(record.get(*i).unwrap_or("")),
            _ => "",
        }
    }
}

/// The error for a header in which `spec` finds two columns, fields `first`
/// and `second` (0-based).
fn duplicate_column(
    file: &str,
    header: &Record<'_>,
    spec: &ColumnSpec,
    first: usize,
    second: usize,
) -> Error {
    let name = |at: usize| trim(header.get(at).unwrap_or_default());
    let (a, b) = (name(first), name(second));
    let (first, second) = (first + 1, second + 1);
    let reason = if normalize_header(a) == normalize_header(b) {
        format!(
            "the header names `{a}` twice (fields {first} and {second}); refused rather \
             than reading one of them"
        )
    } else {
        format!(
            "the header has both `{a}` (field {first}) and `{b}` (field {second}), two \
             names of the column {}; refused rather than reading one of them",
            spec.name
        )
    };
    Error::input(file, header.line, spec.name, reason)
}

/// [`str::trim`], with a shortcut for the common field that starts and ends with
/// a printable ASCII byte: such a field has no whitespace to trim (a Unicode
/// space would begin or end with a byte of 0x80 or more), and the general trim,
/// which decodes characters from both ends, is a noticeable part of each row.
pub fn trim(field: &str) -> &str {
    let printable = |b: Option<&u8>| b.is_some_and(|b| (0x21..=0x7e).contains(b));
    let bytes = field.as_bytes();
    if printable(bytes.first()) && printable(bytes.last()) {
        field
    } else {
        field.trim()
    }
}

/// Whether `header` has a column accepted by `aliases` (after normalisation).
pub fn header_has(header: &[String], aliases: &[&str]) -> bool {
    header.iter().any(|h| aliases.contains(&h.as_str()))
}

/// Splits the first line of `head` into normalised header names (for format
/// detection; good enough for a header line, which holds no quoted line breaks).
pub fn sniff_header(head: &[u8]) -> Vec<String> {
    let head = head.strip_prefix(&BOM).unwrap_or(head);
    let line_end = head
        .iter()
        .position(|b| *b == b'\n' || *b == b'\r')
        .unwrap_or(head.len());
    let line = String::from_utf8_lossy(head.get(..line_end).unwrap_or_default()).into_owned();
    line.split(',')
        .map(|f| normalize_header(f.trim_matches('"')))
        .collect()
}

/// A CSV file read through a header: the tokenizer, the alias table and, once
/// the header line is read, the column map. Readers wrap it and parse rows.
#[derive(Debug)]
pub struct CsvRows {
    tokenizer: Tokenizer,
    specs: &'static [ColumnSpec],
    columns: Option<ColumnMap>,
}

/// What a reader's row parser gets: the column map, the record, the sink.
pub type RowParser<'p> =
    dyn FnMut(&ColumnMap, &Record<'_>, &mut dyn crate::formats::Sink) -> Result<(), Error> + 'p;

impl CsvRows {
    /// Rows of `file` with the columns `specs`, refusing records over `limit` bytes.
    pub fn new(file: &str, specs: &'static [ColumnSpec], limit: usize) -> Self {
        CsvRows {
            tokenizer: Tokenizer::with_limit(file, limit),
            specs,
            columns: None,
        }
    }

    /// The file name.
    pub fn file(&self) -> &str {
        self.tokenizer.file()
    }

    /// Feeds a chunk: the first record is the header (a missing required column
    /// is returned as the fatal error); each later record goes to `parse`, whose
    /// `Err` is a rejection of that row only.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        sink: &mut dyn crate::formats::Sink,
        parse: &mut RowParser<'_>,
    ) -> Result<(), Error> {
        let CsvRows {
            tokenizer,
            specs,
            columns,
        } = self;
        let file = tokenizer.file().to_string();
        let mut on_record = |record: Result<Record<'_>, Error>| {
            dispatch(&file, specs, columns, record, sink, parse)
        };
        tokenizer.feed(chunk, &mut on_record)
    }

    /// The end of the file; an empty file is an error naming the first column.
    pub fn finish(
        &mut self,
        sink: &mut dyn crate::formats::Sink,
        parse: &mut RowParser<'_>,
    ) -> Result<(), Error> {
        let CsvRows {
            tokenizer,
            specs,
            columns,
        } = self;
        let file = tokenizer.file().to_string();
        let mut on_record = |record: Result<Record<'_>, Error>| {
            dispatch(&file, specs, columns, record, sink, parse)
        };
        tokenizer.finish(&mut on_record)?;
        if columns.is_none() {
            return Err(Error::input(&file, 0, "", "empty file: no header line"));
        }
        Ok(())
    }
}

/// The per-row half of a CSV reader: turns one record into sink calls.
pub trait ParseRow {
    /// Parses one data record; an `Err` rejects that row only.
    fn parse_row(
        &mut self,
        cols: &ColumnMap,
        record: &Record<'_>,
        sink: &mut dyn crate::formats::Sink,
    ) -> Result<(), Error>;
}

/// A complete streaming CSV [`crate::formats::Reader`] made of [`CsvRows`] and a row parser.
pub struct CsvReader<P> {
    rows: CsvRows,
    parser: P,
}

impl<P: ParseRow> CsvReader<P> {
    /// A reader of `file` with the columns `specs` and the row parser `parser`.
    pub fn new(file: &str, specs: &'static [ColumnSpec], limit: usize, parser: P) -> Self {
        CsvReader {
            rows: CsvRows::new(file, specs, limit),
            parser,
        }
    }

    /// [`Tokenizer::record_boundary`], once the header is read (`None` before).
    pub fn record_boundary(&self) -> Option<u64> {
        self.rows.columns.as_ref()?;
        self.rows.tokenizer.record_boundary()
    }
}

impl<P: ParseRow> crate::formats::Reader for CsvReader<P> {
    fn feed(&mut self, chunk: &[u8], sink: &mut dyn crate::formats::Sink) -> Result<(), Error> {
        let parser = &mut self.parser;
        self.rows
            .feed(chunk, sink, &mut |c, r, s| parse_fitting(parser, c, r, s))
    }

    fn finish(&mut self, sink: &mut dyn crate::formats::Sink) -> Result<(), Error> {
        let parser = &mut self.parser;
        self.rows
            .finish(sink, &mut |c, r, s| parse_fitting(parser, c, r, s))
    }
}

/// Hands `record` to `parser`, or rejects it when its field count is not the
/// header's ([`ColumnMap::fits`]). Checked here, in the row parser's call,
/// rather than in [`dispatch`]: there it cost a call per row, as the
/// tokenizer's callback was no longer inlined.
#[inline]
fn parse_fitting<P: ParseRow>(
    parser: &mut P,
    cols: &ColumnMap,
    record: &Record<'_>,
    sink: &mut dyn crate::formats::Sink,
) -> Result<(), Error> {
    if !cols.fits(record) {
        return Err(cols.width_error(record));
    }
    parser.parse_row(cols, record, sink)
}

/// Routes one tokenizer result: header, row, or rejection.
fn dispatch(
    file: &str,
    specs: &'static [ColumnSpec],
    columns: &mut Option<ColumnMap>,
    record: Result<Record<'_>, Error>,
    sink: &mut dyn crate::formats::Sink,
    parse: &mut RowParser<'_>,
) -> Result<(), Error> {
    let record = match record {
        Ok(record) => record,
        // A header that cannot be read (over the limit, not UTF-8) refuses
        // the file: taking the next record for it would read every row by
        // the wrong columns.
        Err(error) if columns.is_none() => return Err(error),
        Err(error) => {
            sink.reject(error);
            return Ok(());
        }
    };
    match columns {
        None => {
            *columns = Some(ColumnMap::new(file, &record, specs)?);
            Ok(())
        }
        Some(map) => {
            if let Err(error) = parse(map, &record, sink) {
                sink.reject(error);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenize(chunks: &[&[u8]], limit: usize) -> Vec<Result<(u64, Vec<String>), String>> {
        let mut out = Vec::new();
        let mut t = Tokenizer::with_limit("t.csv", limit);
        let mut cb = |r: Result<Record<'_>, Error>| {
            out.push(
                r.map(|r| (r.line, r.fields().map(String::from).collect()))
                    .map_err(|e| e.to_string()),
            );
            Ok(())
        };
        for c in chunks {
            t.feed(c, &mut cb).unwrap();
        }
        t.finish(&mut cb).unwrap();
        out
    }

    fn ok(line: u64, fields: &[&str]) -> Result<(u64, Vec<String>), String> {
        Ok((line, fields.iter().map(|s| s.to_string()).collect()))
    }

    #[test]
    fn quotes_crlf_bom_and_blank_lines() {
        let input = b"\xEF\xBB\xBFa,b,c\r\n1,\"x,y\",\"he said \"\"hi\"\"\"\r\n\r\n2,\"multi\nline\",3\n4,,\n5";
        let want = vec![
            ok(1, &["a", "b", "c"]),
            ok(2, &["1", "x,y", "he said \"hi\""]),
            ok(4, &["2", "multi\nline", "3"]),
            ok(6, &["4", "", ""]),
            ok(7, &["5"]),
        ];
        // Any chunking gives the same records.
        tokenizes_in_chunks(input, (1..8).chain([input.len()]), &want);
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line() {
        // Old Mac line endings: every record is a line of its own, and a
        // `\r\n` among them is still one line break.
        let input = b"a,b\r1,2\r\"q\"\r\r\n3,4\r\n5,\"x\ny\"\r6";
        let want = vec![
            ok(1, &["a", "b"]),
            ok(2, &["1", "2"]),
            ok(3, &["q"]),
            ok(5, &["3", "4"]),
            ok(6, &["5", "x\ny"]),
            ok(8, &["6"]),
        ];
        tokenizes_in_chunks(input, (1..8).chain([input.len()]), &want);
    }

    #[test]
    fn oversized_record_is_refused_and_parsing_goes_on() {
        let long = "x".repeat(100);
        let input = format!("a,b\n{long},1\nc,d\n");
        let got = tokenize(&[input.as_bytes()], 50);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], ok(1, &["a", "b"]));
        assert!(got[1].as_ref().unwrap_err().contains("t.csv:2"));
        assert_eq!(got[2], ok(3, &["c", "d"]));
    }

    /// Asserts that `input`, fed in chunks of each of `sizes`, gives `want`
    /// (at the default limit).
    fn tokenizes_in_chunks(
        input: &[u8],
        sizes: impl IntoIterator<Item = usize>,
        want: &[Result<(u64, Vec<String>), String>],
    ) {
        for size in sizes {
            let chunks: Vec<&[u8]> = input.chunks(size).collect();
            assert_eq!(
                tokenize(&chunks, DEFAULT_MAX_RECORD),
                want,
                "chunk size {size}"
            );
        }
    }

    /// A header, a row, a record whose quoted field is 2 MiB of lines (some
    /// of them rows of their own, with commas and doubled quotes), then rows:
    /// the record is refused once, at the line it starts on, and the rows
    /// after it are read, whatever the chunks. The tokenizer once resumed at
    /// the first line break after the limit, inside the field: thousands of
    /// bogus records, the row-like lines among them accepted.
    #[test]
    fn an_oversized_quoted_field_with_line_breaks_is_skipped_to_its_closing_quote() {
        let line = "2,a,\"\"b\"\"\n";
        let lines = (2 << 20) / line.len();
        let field = line.repeat(lines);
        let input = format!("a,b,c\n1,x,y\n3,\"{field}\",rest\r\n4,z,w\n5,\"v\n\",u");
        let after = 3 + lines as u64 + 1;
        let want = vec![
            ok(1, &["a", "b", "c"]),
            ok(2, &["1", "x", "y"]),
            Err("t.csv:3: longer than the 1048576-byte limit; refused".to_string()),
            ok(after, &["4", "z", "w"]),
            ok(after + 1, &["5", "v\n", "u"]),
        ];
        tokenizes_in_chunks(input.as_bytes(), [1, 7, 64 << 10, input.len()], &want);
    }

    /// A quote never closed holds the rest of the file, however long: one
    /// rejection, at the line it opens on, saying so (the rows inside it are
    /// not rows). The tokenizer once refused it as too large and read on
    /// inside it.
    #[test]
    fn an_unterminated_quote_is_one_rejection_however_long_the_rest() {
        let rest = "2,a,b\n".repeat((2 << 20) / 6);
        let input = format!("a,b,c\n1,x,y\n3,\"{rest}");
        let want = vec![
            ok(1, &["a", "b", "c"]),
            ok(2, &["1", "x", "y"]),
            Err(
                "t.csv:3: unterminated quoted field: its quote is never closed, so the rest \
                 of the file is inside it; refused"
                    .to_string(),
            ),
        ];
        tokenizes_in_chunks(input.as_bytes(), [1, 7, 64 << 10, input.len()], &want);
    }

    #[test]
    fn invalid_utf8_and_unterminated_quote() {
        let got = tokenize(&[b"a\n\xff\xfe\nb\n\"open"], 100);
        assert_eq!(got[0], ok(1, &["a"]));
        assert!(got[1].as_ref().unwrap_err().contains("UTF-8"));
        assert_eq!(got[2], ok(3, &["b"]));
        assert!(got[3].as_ref().unwrap_err().contains("unterminated"));
    }

    #[test]
    fn column_map_by_alias_and_missing_column() {
        const SPECS: &[ColumnSpec] = &[
            ColumnSpec {
                name: "owner_id",
                aliases: &["owner_id", "principal"],
                required: true,
            },
            ColumnSpec {
                name: "org_id",
                aliases: &["org_id"],
                required: false,
            },
        ];
        let mut t = Tokenizer::new("h.csv");
        let mut maps = Vec::new();
        let mut cb = |r: Result<Record<'_>, Error>| {
            let r = r.unwrap();
            maps.push(ColumnMap::new("h.csv", &r, SPECS).map(|m| (m.has(0), m.has(1))));
            Ok(())
        };
        t.feed(b"Principal,x\nfoo,bar\n", &mut cb).unwrap();
        assert_eq!(maps[0], Ok((true, false)));
        let err = maps[1].clone().unwrap_err().to_string();
        assert!(
            err.contains("owner_id") && err.contains("principal"),
            "{err}"
        );
    }

    #[test]
    fn a_line_of_commas_alone_is_held_to_the_limit() {
        let commas = ",".repeat(100);
        let input = format!("a,b\n{commas}\nc,d\n");
        for chunk in [1, 7, input.len()] {
            let chunks: Vec<&[u8]> = input.as_bytes().chunks(chunk).collect();
            let got = tokenize(&chunks, 50);
            assert_eq!(got.len(), 3, "chunk size {chunk}");
            assert!(got[1].as_ref().unwrap_err().contains("t.csv:2"));
            assert_eq!(got[2], ok(3, &["c", "d"]));
        }
    }

    #[test]
    fn invalid_utf8_in_the_fast_path_rejects_that_record_only() {
        // Valid records before and after, a multi-byte character split over two
        // chunks, and invalid bytes in two records of one chunk.
        let input = "a,\u{e9}\nb,\u{e9}\n".as_bytes();
        let mut bad = input.to_vec();
        bad.extend_from_slice(b"x,\xff\ny\nz,\xc3\n\xe9t\xc3\xa9\nw\n");
        for chunk in 1..bad.len() {
            let chunks: Vec<&[u8]> = bad.chunks(chunk).collect();
            let got = tokenize(&chunks, 100);
            assert_eq!(got.len(), 7, "chunk size {chunk}");
            assert_eq!(got[0], ok(1, &["a", "\u{e9}"]));
            assert_eq!(got[1], ok(2, &["b", "\u{e9}"]));
            assert!(got[2].as_ref().unwrap_err().contains("t.csv:3"));
            assert_eq!(got[3], ok(4, &["y"]));
            assert!(got[4].as_ref().unwrap_err().contains("t.csv:5"));
            assert!(got[5].as_ref().unwrap_err().contains("t.csv:6"));
            assert_eq!(got[6], ok(7, &["w"]));
        }
    }

    /// Bytes a CSV parser must tell apart: the specials, bytes the word test
    /// flags without being special (space, `!`, `+`, NUL, tab), ordinary ones,
    /// the parts of `é`, a byte never valid in UTF-8, and `-` (just above `,`).
    const ALPHABET: &[u8] = b"\n\r,\",\",  !+\0\tab-\xc3\xa9\xff";

    /// Pieces of CSV text, whitespace of both kinds among them (ASCII and
    /// Unicode, such as a no-break space), for the trimming of fields.
    const TOKENS: &[&[u8]] = &[
        b",",
        b",",
        b"\"",
        b"\n",
        b"\r\n",
        b" ",
        b"\t",
        b"ab",
        b"1.5",
        b"-",
        b"\xc3\xa9",
        b"\xc2\xa0",
        b"\xe2\x80\x83",
        b"\xff",
    ];

    fn arbitrary_input() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::sample::select(ALPHABET), 0..120)
    }

    #[test]
    fn values_agree_with_get_even_for_a_column_two_specs_share() {
        const SPECS: &[ColumnSpec] = &[
            ColumnSpec::optional("b", &["b"]),
            ColumnSpec::optional("missing", &["zzz"]),
            ColumnSpec::optional("d", &["d"]),
            ColumnSpec::optional("also_b", &["b"]),
            ColumnSpec::optional("a", &["a"]),
        ];
        let mut maps = Vec::new();
        let mut t = Tokenizer::new("v.csv");
        let mut cb = |r: Result<Record<'_>, Error>| {
            let r = r.unwrap();
            match maps.first() {
                None => maps.push(ColumnMap::new("v.csv", &r, SPECS).unwrap()),
                Some(map) => {
                    let one_by_one: Vec<&str> = (0..SPECS.len()).map(|i| map.get(&r, i)).collect();
                    assert_eq!(map.values::<5>(&r).to_vec(), one_by_one);
                    assert_eq!(map.values::<3>(&r).to_vec(), one_by_one[..3]);
                    assert_eq!(one_by_one, ["2", "", "4", "2", "1"]);
                }
            }
            Ok(())
        };
        t.feed(b"a,b,c,d,e\n1, 2 ,3,4,5\n\"1\",2,3,4\n", &mut cb)
            .unwrap();
    }

    proptest::proptest! {
        #[test]
        fn flagged_bytes_flags_exactly_the_bytes_up_to_a_comma_or_not_ascii(word in proptest::num::u64::ANY) {
            let flags = flagged_bytes(word);
            for (k, byte) in word.to_le_bytes().into_iter().enumerate() {
                let flagged = byte <= b',' || byte >= 0x80;
                proptest::prop_assert_eq!(flags >> (8 * k) & 0xff, if flagged { 0x80 } else { 0 });
            }
        }

        #[test]
        fn find_first_agrees_with_position(bytes in proptest::collection::vec(proptest::sample::select(ALPHABET), 0..40)) {
            let specials = bytes.iter().position(|b| matches!(b, b',' | b'\n' | b'\r')).unwrap_or(bytes.len());
            proptest::prop_assert_eq!(find_first(&bytes, [b',', b'\n', b'\r']), specials);
            let quote = bytes.iter().position(|b| *b == b'"').unwrap_or(bytes.len());
            proptest::prop_assert_eq!(find_first(&bytes, [b'"']), quote);
        }

        #[test]
        fn plain_commas_is_exact(
            word in proptest::num::u64::ANY,
            plain in proptest::collection::vec(b','..0x80u8, 8),
            mut_at in proptest::collection::vec((0usize..8, proptest::num::u8::ANY), 0..3),
        ) {
            // Words of bytes drawn from anywhere, and plain words with some
            // bytes replaced (by commas or by anything).
            let mut bytes: [u8; 8] = plain.try_into().unwrap();
            for (at, byte) in mut_at {
                bytes[at] = if byte % 2 == 0 { b',' } else { byte };
            }
            for bytes in [bytes, word.to_le_bytes()] {
                let is_plain = bytes.iter().all(|b| (b','..0x80).contains(b));
                let want = is_plain.then(|| {
                    bytes.iter().enumerate().map(|(k, b)| if *b == b',' { 0x80 << (8 * k) } else { 0 }).sum::<u64>()
                });
                proptest::prop_assert_eq!(plain_commas(u64::from_le_bytes(bytes)), want, "{:?}", bytes);
            }
        }

        #[test]
        fn values_agree_with_trimmed_gets_on_any_input(
            tokens in proptest::collection::vec(proptest::sample::select(TOKENS), 0..80),
            chunk in 1usize..50,
        ) {
            const SPECS: &[ColumnSpec] = &[
                ColumnSpec::optional("a", &["a"]),
                ColumnSpec::optional("b", &["b"]),
                ColumnSpec::optional("c", &["c"]),
            ];
            let input: Vec<u8> = [b"a,b,c\n".as_slice()].into_iter().chain(tokens).flatten().copied().collect();
            let mut map: Option<ColumnMap> = None;
            let mut disagreements = Vec::new();
            let mut t = Tokenizer::new("p.csv");
            let mut cb = |r: Result<Record<'_>, Error>| {
                let Ok(r) = r else { return Ok(()) };
                match &map {
                    None => map = Some(ColumnMap::new("p.csv", &r, SPECS).unwrap()),
                    Some(m) => {
                        let one_by_one = [m.get(&r, 0), m.get(&r, 1), m.get(&r, 2)];
                        if m.values::<3>(&r) != one_by_one {
                            disagreements.push((r.line, one_by_one.map(String::from)));
                        }
                    }
                }
                Ok(())
            };
            for piece in input.chunks(chunk) {
                t.feed(piece, &mut cb).unwrap();
            }
            t.finish(&mut cb).unwrap();
            proptest::prop_assert!(disagreements.is_empty(), "{:?}", disagreements);
        }

        #[test]
        fn the_fast_path_agrees_with_the_byte_wise_path(
            input in arbitrary_input(),
            cuts in proptest::collection::vec(0usize..120, 0..4),
            limit in 1usize..60,
        ) {
            // Fed a byte at a time, no record but a blank line ends inside its
            // chunk, so the byte-wise path does all the work: the reference.
            let reference = tokenize(&input.chunks(1).collect::<Vec<_>>(), limit);
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c < input.len()).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut chunks = Vec::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([input.len()]) {
                chunks.push(&input[from..cut]);
                from = cut;
            }
            proptest::prop_assert_eq!(tokenize(&chunks, limit), reference);
        }

        #[test]
        fn wide_and_long_records_agree_with_the_byte_wise_path(
            rows in proptest::collection::vec((0usize..70, 0usize..40, proptest::bool::ANY), 1..6),
            chunk in 1usize..=17,
            limit in proptest::sample::select(vec![30usize, 200, DEFAULT_MAX_RECORD]),
        ) {
            // Records with more fields than the first field-end buffer holds,
            // longer than a chunk, with spaces, CRLF and non-ASCII text.
            let mut input = Vec::new();
            for (fields, width, crlf) in rows {
                let field = if width % 3 == 0 { "\u{e9} x".repeat(width) } else { "ab".repeat(width) };
                input.extend_from_slice(vec![field; fields.max(1)].join(",").as_bytes());
                input.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            let reference = tokenize(&input.chunks(1).collect::<Vec<_>>(), limit);
            proptest::prop_assert_eq!(tokenize(&input.chunks(chunk).collect::<Vec<_>>(), limit), reference.clone());
            proptest::prop_assert_eq!(tokenize(&[&input[..]], limit), reference);
        }

        #[test]
        fn the_trim_shortcut_agrees_with_str_trim(field in "[ \t\r\n\u{a0}\u{2003}a-z0-9.,~!-]{0,8}") {
            proptest::prop_assert_eq!(trim(&field), field.trim());
        }

        #[test]
        fn any_quoting_and_chunking_round_trips(
            rows in proptest::collection::vec(proptest::collection::vec("[a-c,\"\r\n ]{0,6}", 1..5), 1..8),
            crlf in proptest::bool::ANY,
            chunk in 1usize..40,
            limit in proptest::sample::select(vec![3usize, 8, 20, DEFAULT_MAX_RECORD]),
        ) {
            // Each row comes back, or is refused once at the line it starts
            // on when its fields and separators are over the limit: one over
            // it inside a quoted line break must not cost the rows after it.
            let mut text = String::new();
            let mut want = Vec::new();
            for row in &rows {
                let line = 1 + text.bytes().filter(|b| *b == b'\n').count() as u64;
                let size = row.iter().map(String::len).sum::<usize>() + row.len() - 1;
                want.push(if size > limit {
                    Err(format!("t.csv:{line}: longer than the {limit}-byte limit; refused"))
                } else {
                    Ok((line, row.clone()))
                });
                let fields: Vec<String> = row.iter().map(|f| {
                    let mut out = String::new();
                    crate::usage::push_csv_field(&mut out, f);
                    if out.is_empty() && row.len() == 1 { "\"\"".to_string() } else { out }
                }).collect();
                text.push_str(&fields.join(","));
                text.push_str(if crlf { "\r\n" } else { "\n" });
            }
            for chunk in [chunk, text.len()] {
                let chunks: Vec<&[u8]> = text.as_bytes().chunks(chunk).collect();
                proptest::prop_assert_eq!(tokenize(&chunks, limit), want.clone(), "chunk size {}", chunk);
            }
        }
    }
}
