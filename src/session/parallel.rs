//! Reading a whole file from the host: serially in chunks ([`Session::read`]),
//! or — one big CSV file — in parts on several cores ([`Session::read_file`]),
//! with the very result of the serial read.
//!
//! ## Design
//!
//! A file of a row-by-row CSV format (Confluent export, usage CSV, costs CSV)
//! is cut into byte ranges: part 0 starts at byte 0, every later part just after
//! the first `\n` at or after its nominal start (`len × k / parts`). Each part
//! opens its own handle on the file, seeks to its start and streams its range in
//! chunks (memory stays one chunk plus the part's aggregates). Part 0 is read on
//! the calling thread straight into the session's store — it *is* the start of
//! the serial read. Every later part is read on a scoped thread of its own
//! (natively; one after the other on wasm32, which has no threads) into its own
//! reader and [`Store`], fed the file's first line — the header, with the BOM if
//! any — before its range, so its tokenizer and column map start in the state
//! the serial read has at a record boundary.
//!
//! A `\n` may sit inside a quoted field, so a cut is checked, not assumed. Part
//! 0 starts at a true record boundary; if a part's tokenizer ends its range
//! between records with nothing buffered
//! ([`crate::formats::csv::Tokenizer::record_boundary`]), the serial tokenizer —
//! in the same state at the part's start, fed the same bytes — is between
//! records there too, so the next part starts at a true boundary (induction). A
//! part's lines count from its own start; the serial line of a part's first
//! record is the line where the previous part's tokenizer stopped, shifted in
//! turn, which gives each part its line offset. Rejections and provenance lines
//! are shifted by it when the later parts are merged in file order
//! ([`Store::merge`]); the first `max_rejections` rejections are kept.
//!
//! Whatever cannot be proved equal is read serially: when a check fails, a later
//! part had an error, or the sums could leave the exact range of `Decimal`
//! ([`Store::sums_stay_exact`]: past 28 digits addition rounds, and the order of
//! the terms would show), the later parts are dropped and part 0's reader goes
//! on through the rest of the file — the serial read, with nothing read twice.
//! A file whose first line is not its header, or whose part 0 stops before any
//! row reached the store (a refused header), is read serially from its start.
//! Small files, JSON and crosswalks are read serially.

use super::{fail_file, file_state, FileSummary, Ingest, Session};
use crate::allocate::store::merge::Terms;
use crate::allocate::store::Store;
use crate::error::Error;
use crate::formats::csv::{CsvReader, ParseRow};
use crate::formats::{confluent, confluent_costs, detect, usage_csv};
use crate::formats::{Format, InputNote, Reader, Sink, DETECT_BYTES};
use crate::model::{AllocatedRef, AllocationRow, CostLine, CrosswalkEntry, UsageRef, UsageSample};
use crate::threads::run_beside;
use rust_decimal::Decimal;
use std::io::{ErrorKind, Read, Seek, SeekFrom};

/// The fewest bytes worth a part (and a thread) of their own.
pub const MIN_PART_BYTES: u64 = 2 << 20;

/// How [`Session::read_file`] may cut a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// At most this many parts, read at once (1: serially).
    pub threads: usize,
    /// At least this many bytes per part.
    pub min_part_bytes: u64,
    /// The size of the chunks each part reads.
    pub chunk_bytes: usize,
}

impl Split {
    /// Up to `threads` parts of at least [`MIN_PART_BYTES`], read in chunks of `chunk_bytes`.
    pub fn new(threads: usize, chunk_bytes: usize) -> Split {
        Split {
            threads,
            min_part_bytes: MIN_PART_BYTES,
            chunk_bytes,
        }
    }

    /// How many parts a file of `len` bytes is cut into.
    fn parts(&self, len: u64) -> usize {
        let worth = usize::try_from(len / self.min_part_bytes.max(1)).unwrap_or(usize::MAX);
        worth.min(self.threads).max(1)
    }
}

impl Session {
    /// Reads `input` to its end into a new file of the session, in chunks of
    /// `chunk_bytes`: [`Session::begin_file`], [`Session::feed`]…,
    /// [`Session::end_file`]. A read error stops the file like a fatal format
    /// error does (it is recorded in the file's summary).
    pub fn read(
        &mut self,
        name: &str,
        org_id: &str,
        input: impl Read,
        chunk_bytes: usize,
    ) -> Result<FileSummary, Error> {
        let id = self.begin_file(name, org_id);
        let mut buffer = vec![0u8; chunk_bytes.max(1)];
        let streamed = each_chunk(name, input, &mut buffer, |chunk| self.feed(id, chunk));
        if let Err(error) = streamed {
            // A feed error has closed the file already; a read error closes it here.
            let state = file_state(&mut self.files, id).map_err(|_| error.clone())?;
            fail_file(state, Err(error))?;
        }
        self.end_file(id)
    }

    /// Reads the file `open` opens (each call a new handle) into a new file of
    /// the session, in parts on up to `split.threads` cores when it is a big CSV
    /// file of a row-by-row format, else serially; the result is the serial
    /// one either way (see the module docs). A file that cannot be opened (or
    /// rewound after its length is taken) is not begun; one that cannot be
    /// sought at all (a pipe) is read serially.
    pub fn read_file<R, F>(
        &mut self,
        name: &str,
        org_id: &str,
        open: F,
        split: Split,
    ) -> Result<FileSummary, Error>
    where
        R: Read + Seek,
        F: Fn() -> std::io::Result<R> + Sync,
    {
        let mut first = open().map_err(|e| read_error(name, &e))?;
        let Ok(len) = first.seek(SeekFrom::End(0)) else {
            // A pipe: nothing to cut.
            return self.read(name, org_id, first, split.chunk_bytes);
        };
        let parts = split.parts(len);
        if parts > 1 {
            let whole = File {
                name,
                org_id,
                len,
                chunk_bytes: split.chunk_bytes.max(1),
            };
            if let Some((summary, _)) = self.read_parts(&whole, &open, parts) {
                return summary;
            }
        }
        first.rewind().map_err(|e| read_error(name, &e))?;
        self.read(name, org_id, first, split.chunk_bytes)
    }

    /// Reads `file` in up to `parts` parts; `None` when it is to be read
    /// serially from its start (nothing of it is in the session then), else the
    /// result and how many parts were merged (1: part 0 went on serially).
    fn read_parts<R, F>(
        &mut self,
        file: &File<'_>,
        open: &F,
        parts: usize,
    ) -> Option<(Result<FileSummary, Error>, usize)>
    where
        R: Read + Seek,
        F: Fn() -> std::io::Result<R> + Sync,
    {
        let mut handle = open().ok()?;
        let (format, header) = splittable_head(file.name, &mut handle)?;
        let ranges = ranges(&mut handle, file.len, parts, header.len()).ok()?;
        handle.rewind().ok()?;
        let plan = Plan {
            file,
            format,
            header: &header,
            ranges: &ranges,
        };
        let (name, org, limit) = (file.name, file.org_id, self.options.max_record_bytes);
        match format {
            Format::ConfluentExport => {
                self.read_split(&plan, handle, open, &|| confluent::reader(name, org, limit))
            }
            Format::UsageCsv => {
                self.read_split(&plan, handle, open, &|| usage_csv::reader(name, org, limit))
            }
            Format::ConfluentCostsCsv => self.read_split(&plan, handle, open, &|| {
                confluent_costs::csv_reader(name, org, limit)
            }),
            _ => None,
        }
    }

    /// [`Session::read_parts`] with the readers `make` builds. Part 0 is read on
    /// this thread straight into the session — it is the start of the serial
    /// read — while the other parts are read on threads of their own; when they
    /// cannot be merged, part 0's reader goes on through the rest of the file,
    /// which is the serial read.
    fn read_split<P, R, F, M>(
        &mut self,
        plan: &Plan<'_>,
        mut handle: R,
        open: &F,
        make: &M,
    ) -> Option<(Result<FileSummary, Error>, usize)>
    where
        P: ParseRow,
        R: Read + Seek,
        F: Fn() -> std::io::Result<R> + Sync,
        M: Fn() -> CsvReader<P> + Sync,
    {
        let file = plan.file;
        let (&(_, first_end), others) = plan.ranges.split_first()?;
        let Session { options, store, .. } = self;
        let options = &*options;
        let jobs = others
            .iter()
            .map(|&(start, end)| {
                let job = Job {
                    file,
                    options,
                    start,
                    end,
                    header: plan.header,
                    last: end == file.len,
                };
                move || job.read(make(), open().ok()?)
            })
            .collect();
        let mut summary = FileSummary {
            name: file.name.to_string(),
            org_id: file.org_id.to_string(),
            format: plan.format.name().to_string(),
            ..FileSummary::default()
        };
        let mut crosswalk = Vec::new();
        let mut sink = Counted::new(Ingest::new(
            store,
            &mut crosswalk,
            &mut summary,
            options.max_rejections,
        ));
        let mut reader = make();
        let mut buffer = vec![0u8; file.chunk_bytes];
        let (own, done) = run_beside(jobs, || {
            let input = (&mut handle).take(first_end);
            feed_all(file.name, input, &mut buffer, &mut reader, &mut sink)
        });
        let mut merged = 1;
        let result = match own {
            Err(error) => Err(error),
            Ok(()) => match verified(sink.ingest.store, reader.record_boundary(), done) {
                Some((parts, offsets)) => {
                    merged += parts.len();
                    sink.ingest.summary.bytes = file.len;
                    absorb(&mut sink.ingest, parts, &offsets)
                }
                None => {
                    // Part 0 ended where the serial read is: it goes on serially.
                    feed_all(file.name, handle, &mut buffer, &mut reader, &mut sink)
                        .and_then(|()| reader.finish(&mut sink))
                }
            },
        };
        if result.is_err() && sink.terms.rows == 0 {
            // Nothing reached the store (a refused header, a read error before
            // the first row): the serial read from the start says what happened,
            // byte counts included.
            return None;
        }
        // The file's amount total is finished when its sink ends.
        drop(sink);
        let id = self.begin_file(file.name, file.org_id);
        let state = match file_state(&mut self.files, id) {
            Ok(state) => state,
            Err(error) => return Some((Err(error), merged)),
        };
        state.summary = summary;
        state.crosswalk = crosswalk;
        let result = fail_file(state, result);
        state.closed = true;
        Some((result.map(|()| state.summary.clone()), merged))
    }
}

/// The parts after part 0 with their line offsets, when they can be merged:
/// part 0 ended between records (on serial line `first_end`), every other part
/// was read and checked, and the sums stay exact.
fn verified(
    store: &Store,
    first_end: Option<u64>,
    done: Vec<Option<Part>>,
) -> Option<(Vec<Part>, Vec<u64>)> {
    let parts: Vec<Part> = done.into_iter().collect::<Option<_>>()?;
    // The serial line where the next part starts.
    let mut next = first_end?;
    let mut offsets = Vec::with_capacity(parts.len());
    let mut terms = Terms::default();
    for part in &parts {
        let offset = next.checked_sub(part.first_line)?;
        offsets.push(offset);
        if let Some(end) = part.end_line {
            next = end.checked_add(offset)?;
        }
        terms.join(&part.terms);
    }
    store.sums_stay_exact(&terms).then_some((parts, offsets))
}

/// Merges the parts after part 0, in file order, into the session through
/// part 0's sink.
fn absorb(ingest: &mut Ingest<'_>, parts: Vec<Part>, offsets: &[u64]) -> Result<(), Error> {
    // The parts' totals follow part 0's, which is finished first.
    ingest.finish_total();
    for (part, &offset) in parts.into_iter().zip(offsets) {
        // Not expected to fail: `sums_stay_exact` rules overflow out beforehand.
        ingest.store.merge(part.store, offset)?;
        absorb_summary(ingest.summary, part.summary, offset, ingest.max_rejections)?;
        ingest
            .crosswalk
            .extend(part.crosswalk.into_iter().map(|mut entry| {
                entry.source.line = shifted(entry.source.line, offset);
                entry
            }));
    }
    Ok(())
}

/// Feeds `input` to its end to `reader`, counting the bytes as [`Session::feed`] does.
fn feed_all<P: ParseRow>(
    name: &str,
    input: impl Read,
    buffer: &mut [u8],
    reader: &mut CsvReader<P>,
    sink: &mut Counted<'_>,
) -> Result<(), Error> {
    each_chunk(name, input, buffer, |chunk| {
        let bytes = &mut sink.ingest.summary.bytes;
        *bytes = bytes.saturating_add(chunk.len() as u64);
        reader.feed(chunk, sink)
    })
}

/// How a file is cut.
struct Plan<'a> {
    file: &'a File<'a>,
    format: Format,
    /// The first line (the header).
    header: &'a [u8],
    /// The parts' byte ranges.
    ranges: &'a [(u64, u64)],
}

/// The file being read in parts.
struct File<'a> {
    name: &'a str,
    org_id: &'a str,
    len: u64,
    chunk_bytes: usize,
}

/// One part after part 0 to read: the header line, then the bytes `[start, end)` of `file`.
struct Job<'a> {
    file: &'a File<'a>,
    options: &'a super::Options,
    start: u64,
    end: u64,
    header: &'a [u8],
    last: bool,
}

/// What one part read.
struct Part {
    store: Store,
    summary: FileSummary,
    crosswalk: Vec<CrosswalkEntry>,
    terms: Terms,
    /// The part's own line number of its first record (after the header).
    first_line: u64,
    /// The part's own line number where its range ended (`None` for the last part).
    end_line: Option<u64>,
}

/// Reads `input`'s head; `Some((format, first line))` when the file is of a
/// format read row by row and its first line is in the head (so the serial
/// read, whose head starts with the same bytes, detects the same format).
fn splittable_head(name: &str, input: &mut impl Read) -> Option<(Format, Vec<u8>)> {
    let mut head = Vec::with_capacity(DETECT_BYTES);
    input
        .take(DETECT_BYTES as u64)
        .read_to_end(&mut head)
        .ok()?;
    let line_end = head.iter().position(|b| *b == b'\n')?;
    let format = detect(name, &head).ok()?;
    let splittable = matches!(
        format,
        Format::ConfluentExport | Format::UsageCsv | Format::ConfluentCostsCsv
    );
    head.truncate(line_end.checked_add(1)?);
    splittable.then_some((format, head))
}

/// The parts' byte ranges (see the module docs); cuts that would leave a part
/// empty are dropped, and no cut falls inside the first line.
fn ranges(
    input: &mut (impl Read + Seek),
    len: u64,
    parts: usize,
    first_line: usize,
) -> std::io::Result<Vec<(u64, u64)>> {
    let parts = u64::try_from(parts).unwrap_or(u64::MAX);
    let mut starts = vec![0u64];
    let mut from = u64::try_from(first_line).unwrap_or(u64::MAX);
    for k in 1..parts {
        let nominal = u64::try_from(u128::from(len) * u128::from(k) / u128::from(parts))
            .unwrap_or(u64::MAX)
            .max(from);
        match next_line_start(input, nominal)? {
            Some(start) if start < len => {
                starts.push(start);
                from = start;
            }
            _ => break,
        }
    }
    let ends = starts.iter().skip(1).copied().chain([len]);
    Ok(starts.iter().copied().zip(ends).collect())
}

/// The offset just after the first `\n` at or after `from`, if any.
fn next_line_start(input: &mut (impl Read + Seek), from: u64) -> std::io::Result<Option<u64>> {
    input.seek(SeekFrom::Start(from))?;
    let mut buffer = [0u8; 8192];
    let mut at = from;
    loop {
        let n = match input.read(&mut buffer) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let read = buffer.get(..n).unwrap_or_default();
        if let Some(pos) = read.iter().position(|b| *b == b'\n') {
            return Ok(Some(at.saturating_add(pos as u64).saturating_add(1)));
        }
        at = at.saturating_add(n as u64);
    }
}

impl Job<'_> {
    /// Feeds the header line and then the part's bytes to `reader`, checking
    /// that the header is exactly the first line and that the bytes end between
    /// records (all parts but the last).
    fn read<P: ParseRow>(
        &self,
        mut reader: CsvReader<P>,
        mut input: impl Read + Seek,
    ) -> Option<Part> {
        let (file, options) = (self.file, self.options);
        let mut store = Store::new(options.granularity, options.range);
        let mut summary = FileSummary {
            name: file.name.to_string(),
            org_id: file.org_id.to_string(),
            ..FileSummary::default()
        };
        let mut crosswalk = Vec::new();
        let mut sink = Counted::new(Ingest::new(
            &mut store,
            &mut crosswalk,
            &mut summary,
            options.max_rejections,
        ));
        reader.feed(self.header, &mut sink).ok()?;
        // Only the header may be in the first line (not a row after a lone `\r`).
        let first_line = reader
            .record_boundary()
            .filter(|_| sink.ingest.summary.rows_read == 0)?;
        input.seek(SeekFrom::Start(self.start)).ok()?;
        let bytes = input.take(self.end.saturating_sub(self.start));
        let mut buffer = vec![0u8; file.chunk_bytes];
        each_chunk(file.name, bytes, &mut buffer, |chunk| {
            reader.feed(chunk, &mut sink)
        })
        .ok()?;
        let end_line = if self.last {
            reader.finish(&mut sink).ok()?;
            None
        } else {
            Some(reader.record_boundary()?)
        };
        let terms = sink.terms;
        // The part's amount total is finished when its sink ends.
        drop(sink);
        Some(Part {
            store,
            summary,
            crosswalk,
            terms,
            first_line,
            end_line,
        })
    }
}

/// A line of a part in the whole file (0, "no line", stays 0).
fn shifted(line: u64, offset: u64) -> u64 {
    if line == 0 {
        0
    } else {
        line.saturating_add(offset)
    }
}

/// Adds a part's counters and first rejections to the whole file's.
fn absorb_summary(
    whole: &mut FileSummary,
    part: FileSummary,
    offset: u64,
    max_rejections: usize,
) -> Result<(), Error> {
    // Destructured in full so that a new counter cannot be forgotten here.
    let FileSummary {
        name: _,
        org_id: _,
        format: _,
        rows_read,
        rows_accepted,
        rows_rejected,
        rejections,
        cost_lines,
        usage_samples,
        allocated_rows,
        crosswalk_rows,
        amount_total,
        bytes: _,
        error: _,
        truncated_clusters,
        excluded_clusters,
        warpstream_clusters,
        warnings,
        warnings_count,
    } = part;
    whole.truncated_clusters.extend(truncated_clusters);
    whole.excluded_clusters.extend(excluded_clusters);
    whole.warpstream_clusters.extend(warpstream_clusters);
    let room = max_rejections.saturating_sub(whole.warnings.len());
    whole.warnings.extend(warnings.into_iter().take(room));
    whole.warnings_count = whole.warnings_count.saturating_add(warnings_count);
    whole.rows_read = whole.rows_read.saturating_add(rows_read);
    whole.rows_accepted = whole.rows_accepted.saturating_add(rows_accepted);
    whole.rows_rejected = whole.rows_rejected.saturating_add(rows_rejected);
    whole.cost_lines = whole.cost_lines.saturating_add(cost_lines);
    whole.usage_samples = whole.usage_samples.saturating_add(usage_samples);
    whole.allocated_rows = whole.allocated_rows.saturating_add(allocated_rows);
    whole.crosswalk_rows = whole.crosswalk_rows.saturating_add(crosswalk_rows);
    whole.amount_total = whole
        .amount_total
        .checked_add(amount_total)
        .ok_or_else(|| Error::overflow("merging a file's amount total"))?;
    let room = max_rejections.saturating_sub(whole.rejections.len());
    whole
        .rejections
        .extend(rejections.into_iter().take(room).map(|mut rejection| {
            rejection.line = shifted(rejection.line, offset);
            rejection
        }));
    Ok(())
}

/// Reads `input` to its end in chunks handed to `feed`; a read error becomes
/// an error of file `name`.
fn each_chunk(
    name: &str,
    mut input: impl Read,
    buffer: &mut [u8],
    mut feed: impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    loop {
        match input.read(buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => feed(buffer.get(..n).unwrap_or_default())?,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(name, &e)),
        }
    }
}

/// A read error of file `name` (shown as `name: error`).
fn read_error(name: &str, error: &std::io::Error) -> Error {
    Error::input(name, 0, "", error.to_string())
}

/// The session's sink for one part, noting the terms its rows add to sums
/// (and so whether any row reached the store).
struct Counted<'a> {
    ingest: Ingest<'a>,
    terms: Terms,
}

impl<'a> Counted<'a> {
    fn new(ingest: Ingest<'a>) -> Self {
        Counted {
            ingest,
            terms: Terms::default(),
        }
    }
}

impl Sink for Counted<'_> {
    fn cost_line(&mut self, line: &CostLine) {
        self.terms.row(&[line.amount, line.quantity]);
        self.ingest.cost_line(line);
    }

    fn usage(&mut self, sample: &UsageSample) {
        self.usage_ref(&sample.as_ref());
    }

    fn usage_ref(&mut self, sample: &UsageRef<'_>) {
        self.terms.row(&[sample.value]);
        // A sample over several buckets is split by time: shares of up to 28
        // places. The store's own check, which keeps its last answer for the
        // fold that follows (the rows of one plugin flush share their interval).
        if self
            .ingest
            .store
            .usage_bucket(sample.start, sample.end)
            .is_none()
        {
            self.terms.widen_scale(Decimal::MAX_SCALE);
        }
        self.ingest.usage_ref(sample);
    }

    fn allocated(&mut self, row: &AllocationRow) {
        self.terms.row(&[row.chargeback_cost]);
        self.ingest.allocated(row);
    }

    fn allocated_ref(&mut self, row: &AllocatedRef<'_>) {
        self.terms.row(&[row.chargeback_cost]);
        self.ingest.allocated_ref(row);
    }

    fn crosswalk(&mut self, entry: &CrosswalkEntry) {
        self.terms.row(&[]);
        self.ingest.crosswalk(entry);
    }

    fn reject(&mut self, error: Error) {
        self.ingest.reject(error);
    }

    fn note(&mut self, note: InputNote) {
        self.ingest.note(note);
    }
}

#[cfg(test)]
mod tests;
