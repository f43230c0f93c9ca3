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
//! [`Error::TooLarge`] *as soon as it crosses the limit*: the tokenizer discards
//! bytes up to the next line break and goes on, so memory stays bounded by the
//! limit whatever the input. Invalid UTF-8 rejects that record only.
//!
//! [`ColumnMap`] maps a header record to column indices through an alias table
//! ([`ColumnSpec`]), so files are read by column *name*, never by position, and a
//! missing required column is an [`Error::MissingColumn`] naming the aliases.

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
    /// Discarding an oversized record up to the next line break.
    Skipping,
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
    after_cr: bool,
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
            after_cr: false,
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
        let mut i = 0;
        while let Some(&byte) = chunk.get(i) {
            if self.state == State::FieldStart
                && self.buf.is_empty()
                && self.ends.is_empty()
                && !self.after_cr
            {
                if let Some(consumed) =
                    self.quick_record(chunk.get(i..).unwrap_or_default(), on_record)?
                {
                    i += consumed;
                    continue;
                }
            }
            i += 1;
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    self.line += 1;
                    self.record_line = self.line;
                    continue;
                }
            }
            match self.state {
                State::Skipping => {
                    if let Some(pos) = chunk
                        .get(i - 1..)
                        .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
                    {
                        i += pos;
                        self.line += 1;
                        self.reset();
                    } else {
                        i = chunk.len();
                    }
                }
                State::FieldStart | State::Unquoted => match byte {
                    b',' => self.end_field(),
                    b'\n' => {
                        self.end_record(on_record)?;
                        self.line += 1;
                        self.record_line = self.line;
                    }
                    b'\r' => {
                        self.end_record(on_record)?;
                        self.after_cr = true;
                    }
                    b'"' if self.state == State::FieldStart => self.state = State::Quoted,
                    _ => {
                        self.state = State::Unquoted;
                        // Fast path: copy the run of plain bytes up to the next special one.
                        let rest = chunk.get(i - 1..).unwrap_or_default();
                        let run = rest
                            .iter()
                            .position(|b| matches!(b, b',' | b'\n' | b'\r'))
                            .unwrap_or(rest.len());
                        self.push_run(rest.get(..run).unwrap_or_default(), on_record)?;
                        i += run.saturating_sub(1);
                    }
                },
                State::Quoted => {
                    if byte == b'"' {
                        self.state = State::QuoteInQuoted;
                    } else {
                        if byte == b'\n' {
                            self.line += 1;
                        }
                        self.push_run(&[byte], on_record)?;
                    }
                }
                State::QuoteInQuoted => match byte {
                    b'"' => {
                        self.state = State::Quoted;
                        self.push_run(b"\"", on_record)?;
                    }
                    b',' => self.end_field(),
                    b'\n' => {
                        self.end_record(on_record)?;
                        self.line += 1;
                        self.record_line = self.line;
                    }
                    b'\r' => {
                        self.end_record(on_record)?;
                        self.after_cr = true;
                    }
                    other => {
                        self.state = State::Unquoted;
                        self.push_run(&[other], on_record)?;
                    }
                },
            }
        }
        Ok(())
    }

    /// The fast path for the common record: no quotes, ending (`\n` or `\r\n`)
    /// inside this chunk, not over the limit. It is emitted straight from the
    /// chunk, without copying; returns the bytes consumed, or `None` to leave the
    /// record to the byte-wise path.
    fn quick_record(
        &mut self,
        rest: &[u8],
        on_record: &mut impl OnRecord,
    ) -> Result<Option<usize>, Error> {
        self.ends.clear();
        let window = rest.get(..self.limit.saturating_add(2)).unwrap_or(rest);
        for (pos, &b) in window.iter().enumerate() {
            // The bytes that matter (`,` `"` `\r` `\n`) are all at most `,`:
            // one comparison passes over the letters and digits of a field.
            if b > b',' {
                continue;
            }
            match b {
                b',' => self.ends.push(pos),
                b'\n' | b'\r' => {
                    let consumed = match (b, rest.get(pos + 1)) {
                        (b'\n', _) => pos + 1,
                        (_, Some(b'\n')) => pos + 2,
                        _ => break,
                    };
                    if pos + self.ends.len() > self.limit {
                        break;
                    }
                    let result =
                        self.emit_line(rest.get(..pos).unwrap_or_default(), pos, on_record);
                    self.ends.clear();
                    self.line += 1;
                    self.record_line = self.line;
                    return result.map(|()| Some(consumed));
                }
                b'"' => break,
                _ => {}
            }
        }
        self.ends.clear();
        Ok(None)
    }

    /// Emits a raw line whose comma positions are in `ends` (blank lines are skipped).
    fn emit_line(
        &mut self,
        line: &[u8],
        end: usize,
        on_record: &mut impl OnRecord,
    ) -> Result<(), Error> {
        if line.is_empty() {
            return Ok(());
        }
        self.ends.push(end);
        match std::str::from_utf8(line) {
            Ok(text) => on_record(Ok(Record {
                line: self.line,
                text,
                ends: &self.ends,
                sep: 1,
            })),
            Err(_) => on_record(Err(Error::input(
                &self.file,
                self.line,
                "",
                "not valid UTF-8",
            ))),
        }
    }

    /// Ends the input: a last record without a line break is emitted. An
    /// unterminated quoted field is an error for that record.
    pub fn finish(&mut self, on_record: &mut impl OnRecord) -> Result<(), Error> {
        if self.state == State::Quoted {
            let error = Error::input(
                &self.file,
                self.record_line,
                "",
                "unterminated quoted field at end of file",
            );
            self.reset();
            return on_record(Err(error));
        }
        if self.state != State::Skipping {
            self.end_record(on_record)?;
        }
        self.reset();
        Ok(())
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

    fn push_run(&mut self, run: &[u8], on_record: &mut impl OnRecord) -> Result<(), Error> {
        if self.buf.len() + run.len() + self.ends.len() > self.limit {
            let error = Error::TooLarge {
                at: Location {
                    file: self.file.clone(),
                    line: self.record_line,
                    column: String::new(),
                },
                limit: self.limit as u64,
            };
            self.buf.clear();
            self.ends.clear();
            self.state = State::Skipping;
            return on_record(Err(error));
        }
        self.buf.extend_from_slice(run);
        Ok(())
    }

    fn end_field(&mut self) {
        self.ends.push(self.buf.len());
        self.state = State::FieldStart;
    }

    fn end_record(&mut self, on_record: &mut impl OnRecord) -> Result<(), Error> {
        let blank = self.ends.is_empty() && self.buf.is_empty() && self.state == State::FieldStart;
        if blank {
            self.reset();
            return Ok(());
        }
        self.ends.push(self.buf.len());
        let result = match std::str::from_utf8(&self.buf) {
            Ok(text) => on_record(Ok(Record {
                line: self.record_line,
                text,
                ends: &self.ends,
                sep: 0,
            })),
            Err(_) => on_record(Err(Error::input(
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
            && self.bom_done;
        clean.then_some(self.line)
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
    index: Vec<Option<usize>>,
    names: Vec<&'static str>,
}

impl ColumnMap {
    /// Maps `header` through `specs`; a missing required column is an error.
    pub fn new(file: &str, header: &Record<'_>, specs: &[ColumnSpec]) -> Result<Self, Error> {
        let normalized: Vec<String> = header.fields().map(normalize_header).collect();
        let mut index = Vec::with_capacity(specs.len());
        for spec in specs {
            let found = spec
                .aliases
                .iter()
                .find_map(|alias| normalized.iter().position(|h| h == alias));
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
        Ok(ColumnMap {
            index,
            names: specs.iter().map(|s| s.name).collect(),
        })
    }

    /// Whether the column of spec `which` is present.
    pub fn has(&self, which: usize) -> bool {
        matches!(self.index.get(which), Some(Some(_)))
    }

    /// The canonical name of spec `which`.
    pub fn name(&self, which: usize) -> &'static str {
        self.names.get(which).copied().unwrap_or("")
    }

    /// The trimmed value of spec `which` in `record` (empty when absent).
    pub fn get<'a>(&self, record: &Record<'a>, which: usize) -> &'a str {
        match self.index.get(which) {
            Some(Some(i)) => trim(record.get(*i).unwrap_or("")),
            _ => "",
        }
    }
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
            .feed(chunk, sink, &mut |c, r, s| parser.parse_row(c, r, s))
    }

    fn finish(&mut self, sink: &mut dyn crate::formats::Sink) -> Result<(), Error> {
        let parser = &mut self.parser;
        self.rows
            .finish(sink, &mut |c, r, s| parser.parse_row(c, r, s))
    }
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
        assert_eq!(tokenize(&[input], DEFAULT_MAX_RECORD), want);
        // Any chunking gives the same records.
        for size in 1..8 {
            let chunks: Vec<&[u8]> = input.chunks(size).collect();
            assert_eq!(
                tokenize(&chunks, DEFAULT_MAX_RECORD),
                want,
                "chunk size {size}"
            );
        }
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

    proptest::proptest! {
        #[test]
        fn the_trim_shortcut_agrees_with_str_trim(field in "[ \t\r\n\u{a0}\u{2003}a-z0-9.,~!-]{0,8}") {
            proptest::prop_assert_eq!(trim(&field), field.trim());
        }

        #[test]
        fn any_quoting_and_chunking_round_trips(
            rows in proptest::collection::vec(proptest::collection::vec("[a-c,\"\r\n ]{0,6}", 1..5), 1..8),
            crlf in proptest::bool::ANY,
            chunk in 1usize..40,
        ) {
            let mut text = String::new();
            for row in &rows {
                let fields: Vec<String> = row.iter().map(|f| {
                    let mut out = String::new();
                    crate::usage::push_csv_field(&mut out, f);
                    if out.is_empty() && row.len() == 1 { "\"\"".to_string() } else { out }
                }).collect();
                text.push_str(&fields.join(","));
                text.push_str(if crlf { "\r\n" } else { "\n" });
            }
            let chunks: Vec<&[u8]> = text.as_bytes().chunks(chunk).collect();
            let got: Vec<Vec<String>> = tokenize(&chunks, DEFAULT_MAX_RECORD).into_iter().map(|r| r.unwrap().1).collect();
            proptest::prop_assert_eq!(got, rows);
        }
    }
}
