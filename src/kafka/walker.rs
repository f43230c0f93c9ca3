//! A resumable walker over one frame's header tail and body, driven by the static
//! schemas of [`super::schema`].
//!
//! The walker keeps an explicit stack of the structs it is inside (at most
//! [`MAX_DEPTH`]) and one pending [`Step`]. Input arrives in arbitrary pieces; a
//! step that needs more bytes than are at hand keeps what it has (an integer in a
//! 16-byte accumulator, a short string in a bounded capture buffer) and resumes
//! with the next piece. Everything else — unneeded strings, unknown tagged fields,
//! record payloads — is skipped by count. What the fields mean is not the walker's
//! business: it hands values to a [`Visitor`] by [`Role`].

use super::records::{RecordStats, RecordWalker};
use super::schema::{EndAction, Field, Kind, Role, Struct};

/// Deepest nesting of structs the schemas use, with room to spare.
pub(crate) const MAX_DEPTH: usize = 8;
/// Longest string the walker captures (topic names are at most 249 bytes).
pub(crate) const MAX_CAPTURE: usize = 255;

/// A decode error: a static reason, reported once through `Sink::decode_error`.
pub(crate) type Reason = &'static str;

/// Receives the values of fields that have a role.
pub(crate) trait Visitor {
    /// An integer field (int8/16/32/64), sign-extended.
    fn integer(&mut self, role: Role, value: i64) -> Result<(), Reason>;
    /// A uuid field.
    fn uuid(&mut self, role: Role, value: [u8; 16]) -> Result<(), Reason>;
    /// A captured string; `None` when null or too long to capture.
    fn string(&mut self, role: Role, value: Option<&[u8]>) -> Result<(), Reason>;
    /// A `bytes` field starts (`None` when null); its content follows in pieces.
    fn bytes_start(&mut self, role: Role, len: Option<u32>);
    /// A piece of a `bytes` field's content.
    fn bytes_piece(&mut self, role: Role, piece: &[u8]);
    /// A `bytes` field ended.
    fn bytes_end(&mut self, role: Role) -> Result<(), Reason>;
    /// A record set ended.
    fn records(&mut self, stats: RecordStats) -> Result<(), Reason>;
    /// A struct was read completely.
    fn struct_end(&mut self, action: EndAction) -> Result<(), Reason>;
}

/// How an integer is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// Big-endian, this many bytes (1, 2, 4, 8 or 16).
    Fixed(u8),
    /// Unsigned LEB128 varint (at most 5 bytes: lengths and tags are u32).
    UnsignedVarint,
}

/// What an integer being read is for.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    Value(Role),
    Uuid(Role),
    StringLength {
        role: Role,
        compact: bool,
    },
    BytesLength {
        role: Role,
        compact: bool,
    },
    RecordsLength {
        compact: bool,
    },
    ArrayLength {
        element: &'static Struct,
        compact: bool,
    },
    TagCount,
    Tag,
    TagSize {
        tag: u64,
    },
}

/// The step the walker is in.
#[derive(Debug, Clone)]
enum Step {
    /// Decide the next step from the schema (needs no input).
    Next,
    /// Reading an integer.
    Integer {
        encoding: Encoding,
        purpose: Purpose,
    },
    /// Copying a string of `len` bytes into the capture buffer.
    Capture { len: u32, role: Role },
    /// Passing `left` bytes of a `bytes` field to the visitor.
    Pass { left: u32, role: Role },
    /// Skipping `left` bytes.
    Skip { left: u32 },
    /// Walking a record set.
    Records(Box<RecordWalker>),
    /// Nothing more to read: the rest of the frame is skipped by the caller.
    Done,
}

/// Where the walker is inside one struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading fields, next is `Level::field`.
    Fields,
    /// Reading the tagged-field section, this many tags left.
    Tags(u64),
    /// The element is complete.
    End,
}

/// One struct on the stack (an array's elements share one level).
#[derive(Debug, Clone, Copy)]
struct Level {
    schema: &'static Struct,
    field: usize,
    phase: Phase,
    /// Elements of the array still to read after this one.
    elements_after: u32,
    /// For a tagged field's struct: frame bytes left where the tag's data ends.
    ends_at_left: Option<u32>,
}

impl Level {
    fn new(schema: &'static Struct, elements_after: u32, ends_at_left: Option<u32>) -> Self {
        Level {
            schema,
            field: 0,
            phase: Phase::Fields,
            elements_after,
            ends_at_left,
        }
    }
}

/// The resumable schema walker for one frame at a time.
#[derive(Debug)]
pub(crate) struct Walker {
    version: i16,
    flexible: bool,
    stack: Vec<Level>,
    step: Step,
    /// Bytes of the frame not yet consumed.
    left: u32,
    integer: [u8; 16],
    integer_len: usize,
    varint: u64,
    varint_shift: u32,
    capture: Vec<u8>,
    /// A reusable record walker, so record sets do not allocate.
    spare_records: Option<Box<RecordWalker>>,
    /// The structs the frame started with (header tail first), for the
    /// whole-frame fast path ([`Walker::feed_whole`]).
    roots: [Option<&'static Struct>; 2],
    /// Nothing of the frame consumed and nothing reported yet: the fast path may
    /// still start from `roots`.
    pristine: bool,
}

impl Default for Walker {
    fn default() -> Self {
        Walker {
            version: 0,
            flexible: false,
            stack: Vec::new(),
            step: Step::Done,
            left: 0,
            integer: [0; 16],
            integer_len: 0,
            varint: 0,
            varint_shift: 0,
            capture: Vec::new(),
            spare_records: None,
            roots: [None, None],
            pristine: false,
        }
    }
}

impl Walker {
    /// Starts walking a frame with `left` bytes to go: `outer` is read after
    /// `inner` (e.g. the body after the header tail).
    pub(crate) fn start(
        &mut self,
        version: i16,
        flexible: bool,
        outer: Option<&'static Struct>,
        inner: Option<&'static Struct>,
        left: u32,
    ) {
        self.version = version;
        self.flexible = flexible;
        self.stack.clear();
        self.stack.extend(outer.map(|s| Level::new(s, 0, None)));
        self.stack.extend(inner.map(|s| Level::new(s, 0, None)));
        self.step = Step::Next;
        self.left = left;
        self.integer_len = 0;
        self.varint = 0;
        self.varint_shift = 0;
        self.capture.clear();
        self.roots = [inner, outer];
        self.pristine = true;
    }

    /// Whether nothing more is to be read (the rest of the frame is skippable).
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.step, Step::Done)
    }

    /// Most heap bytes the walker holds besides its capture buffer: the struct
    /// stack and one record walker.
    pub(crate) fn max_bookkeeping_bytes() -> usize {
        MAX_DEPTH * std::mem::size_of::<Level>() + std::mem::size_of::<RecordWalker>()
    }

    /// Heap bytes held (for the decoder's memory bound).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.stack.capacity() * std::mem::size_of::<Level>()
            + self.capture.capacity()
            + self
                .spare_records
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<RecordWalker>())
    }

    /// Consumes as much of `input` (never beyond the frame) as the schema reads;
    /// returns the bytes consumed. Stops early only when done.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        visitor: &mut impl Visitor,
    ) -> Result<usize, Reason> {
        if self.pristine && !input.is_empty() && input.len() >= self.left as usize {
            return self.feed_whole(input, visitor);
        }
        let mut consumed = 0;
        loop {
            let rest = input.get(consumed..).unwrap_or_default();
            let rest = rest
                .get(..rest.len().min(self.left as usize))
                .unwrap_or_default();
            let taken = match &self.step {
                Step::Done => break,
                Step::Next => {
                    self.advance(visitor)?;
                    continue;
                }
                _ if rest.is_empty() => break,
                _ => self.consume(rest, visitor)?,
            };
            consumed += taken;
        }
        Ok(consumed)
    }

    /// Bytes from here on the walker steps over without looking at them (an
    /// unused field's content, a record batch's payload); zero when the next
    /// byte is read.
    pub(crate) fn skippable(&self) -> u32 {
        let skippable = match &self.step {
            Step::Skip { left } => *left,
            Step::Records(walker) => walker.skippable(),
            _ => 0,
        };
        skippable.min(self.left)
    }

    /// Accounts for `n` bytes (at most [`skippable`](Self::skippable)) passed
    /// without their content, with the same visitor calls as feeding them, then
    /// moves on to the next step that needs input, as feeding does (so that
    /// `skippable` at once sees a skip that follows, or the walk's end).
    pub(crate) fn skip_unread(&mut self, n: u32, visitor: &mut impl Visitor) -> Result<(), Reason> {
        self.pristine = false;
        match std::mem::replace(&mut self.step, Step::Next) {
            Step::Skip { left } => {
                self.skipped(left, n as usize);
            }
            Step::Records(mut walker) => {
                let taken = walker.skip_unread(n);
                self.records_took(walker, taken as usize, visitor)?;
            }
            step => self.step = step,
        }
        self.feed(&[], visitor).map(|_| ())
    }

    /// Called at the end of the frame: fails if a field was cut off.
    pub(crate) fn finish(&mut self, visitor: &mut impl Visitor) -> Result<(), Reason> {
        self.feed(&[], visitor)?;
        if self.is_done() {
            Ok(())
        } else {
            Err("frame ended inside a field")
        }
    }

    /// Consumes bytes for the current step; returns how many.
    fn consume(&mut self, rest: &[u8], visitor: &mut impl Visitor) -> Result<usize, Reason> {
        self.pristine = false;
        match std::mem::replace(&mut self.step, Step::Next) {
            Step::Integer { encoding, purpose } => {
                self.read_integer(rest, encoding, purpose, visitor)
            }
            Step::Capture { len, role } => self.read_capture(rest, len, role, visitor),
            Step::Pass { left, role } => self.pass(rest, left, role, visitor),
            Step::Skip { left } => Ok(self.skipped(left, rest.len())),
            Step::Records(mut walker) => {
                let taken = walker.feed(rest);
                self.records_took(walker, taken, visitor)?;
                Ok(taken)
            }
            step @ (Step::Next | Step::Done) => {
                self.step = step;
                Ok(0)
            }
        }
    }

    /// Steps over up to `available` bytes of a `Skip { left }` step; returns how
    /// many.
    fn skipped(&mut self, left: u32, available: usize) -> usize {
        let taken = left.min(u32::try_from(available).unwrap_or(u32::MAX));
        self.took(taken as usize);
        if left > taken {
            self.step = Step::Skip { left: left - taken };
        }
        taken as usize
    }

    /// The record set's walker took `taken` bytes: reports the set once complete.
    fn records_took(
        &mut self,
        walker: Box<RecordWalker>,
        taken: usize,
        visitor: &mut impl Visitor,
    ) -> Result<(), Reason> {
        self.took(taken);
        if walker.is_done() {
            visitor.records(walker.stats())?;
            self.spare_records = Some(walker);
        } else {
            self.step = Step::Records(walker);
        }
        Ok(())
    }

    fn read_integer(
        &mut self,
        rest: &[u8],
        encoding: Encoding,
        purpose: Purpose,
        visitor: &mut impl Visitor,
    ) -> Result<usize, Reason> {
        let (taken, value) = match encoding {
            Encoding::Fixed(width) => self.read_fixed(rest, usize::from(width)),
            Encoding::UnsignedVarint => self.read_varint(rest)?,
        };
        self.took(taken);
        match value {
            Some(value) => self.on_integer(value, purpose, visitor)?,
            None => self.step = Step::Integer { encoding, purpose },
        }
        Ok(taken)
    }

    /// Accumulates a big-endian integer; the value once all `width` bytes are in
    /// (uuids are left in `self.integer`).
    fn read_fixed(&mut self, rest: &[u8], width: usize) -> (usize, Option<i64>) {
        // Fast path: the whole integer is at hand (the usual case), read in place.
        if self.integer_len == 0 && width <= 8 {
            if let Some(bytes) = rest.get(..width) {
                let mut value: i64 = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                    -1
                } else {
                    0
                };
                for byte in bytes {
                    value = (value << 8) | i64::from(*byte);
                }
                return (width, Some(value));
            }
        }
        let take = width.saturating_sub(self.integer_len).min(rest.len());
        if let (Some(dst), Some(src)) = (
            self.integer
                .get_mut(self.integer_len..self.integer_len + take),
            rest.get(..take),
        ) {
            dst.copy_from_slice(src);
        }
        self.integer_len += take;
        if self.integer_len < width {
            return (take, None);
        }
        self.integer_len = 0;
        let bytes = self.integer.get(..width).unwrap_or_default();
        let mut value: i64 = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
            -1
        } else {
            0
        };
        if width <= 8 {
            for byte in bytes {
                value = (value << 8) | i64::from(*byte);
            }
        }
        (take, Some(value))
    }

    fn read_varint(&mut self, rest: &[u8]) -> Result<(usize, Option<i64>), Reason> {
        for (index, byte) in rest.iter().enumerate() {
            if self.varint_shift > 28 {
                return Err("unsigned varint longer than 5 bytes");
            }
            self.varint |= u64::from(byte & 0x7f) << self.varint_shift;
            self.varint_shift += 7;
            if byte & 0x80 == 0 {
                let value = i64::try_from(self.varint).unwrap_or(i64::MAX);
                self.varint = 0;
                self.varint_shift = 0;
                return Ok((index + 1, Some(value)));
            }
        }
        Ok((rest.len(), None))
    }

    fn read_capture(
        &mut self,
        rest: &[u8],
        len: u32,
        role: Role,
        visitor: &mut impl Visitor,
    ) -> Result<usize, Reason> {
        if self.capture.is_empty() {
            // Fast path: the whole string is at hand; no copy into the buffer.
            if let Some(whole) = rest.get(..len as usize) {
                self.took(whole.len());
                visitor.string(role, Some(whole))?;
                return Ok(whole.len());
            }
        }
        let want = (len as usize).saturating_sub(self.capture.len());
        let take = want.min(rest.len());
        self.capture
            .extend_from_slice(rest.get(..take).unwrap_or_default());
        self.took(take);
        if self.capture.len() < len as usize {
            self.step = Step::Capture { len, role };
        } else {
            visitor.string(role, Some(&self.capture))?;
            self.capture.clear();
        }
        Ok(take)
    }

    fn pass(
        &mut self,
        rest: &[u8],
        left: u32,
        role: Role,
        visitor: &mut impl Visitor,
    ) -> Result<usize, Reason> {
        let take = (left as usize).min(rest.len());
        visitor.bytes_piece(role, rest.get(..take).unwrap_or_default());
        self.took(take);
        let left = left - u32::try_from(take).unwrap_or(left);
        if left > 0 {
            self.step = Step::Pass { left, role };
        } else {
            visitor.bytes_end(role)?;
        }
        Ok(take)
    }

    /// Accounts for `n` bytes consumed from the frame (before acting on them, so
    /// lengths and tagged-field ends are checked against what truly remains).
    fn took(&mut self, n: usize) {
        self.left -= u32::try_from(n).unwrap_or(u32::MAX).min(self.left);
    }

    /// Acts on a complete integer.
    fn on_integer(
        &mut self,
        value: i64,
        purpose: Purpose,
        visitor: &mut impl Visitor,
    ) -> Result<(), Reason> {
        match purpose {
            Purpose::Value(role) => visitor.integer(role, value),
            Purpose::Uuid(role) => {
                let uuid = self.integer;
                visitor.uuid(role, uuid)
            }
            Purpose::StringLength { role, compact } => {
                let len = self.length(value, compact, "negative string length")?;
                self.begin_string(len, role, visitor)
            }
            Purpose::BytesLength { role, compact } => {
                let len = self.length(value, compact, "negative bytes length")?;
                visitor.bytes_start(role, len);
                match len {
                    Some(left) if left > 0 => self.step = Step::Pass { left, role },
                    _ => visitor.bytes_end(role)?,
                }
                Ok(())
            }
            Purpose::RecordsLength { compact } => {
                let len = self.length(value, compact, "negative records length")?;
                self.begin_records(len.unwrap_or(0), visitor)
            }
            Purpose::ArrayLength { element, compact } => {
                let count = self.length(value, compact, "negative array length")?;
                self.begin_array(element, count.unwrap_or(0))
            }
            Purpose::TagCount => {
                let count = u64::try_from(value).unwrap_or(0);
                if let Some(level) = self.stack.last_mut() {
                    level.phase = Phase::Tags(count);
                }
                Ok(())
            }
            Purpose::Tag => {
                let tag = u64::try_from(value).unwrap_or(u64::MAX);
                self.step = Step::Integer {
                    encoding: Encoding::UnsignedVarint,
                    purpose: Purpose::TagSize { tag },
                };
                Ok(())
            }
            Purpose::TagSize { tag } => {
                let size = u32::try_from(value).map_err(|_| "tagged field too large")?;
                self.begin_tagged(tag, size)
            }
        }
    }

    /// Decodes a length prefix: `None` for null; fails when it exceeds the frame.
    fn length(&self, value: i64, compact: bool, negative: Reason) -> Result<Option<u32>, Reason> {
        let len = if compact { value - 1 } else { value };
        if len == -1 {
            return Ok(None);
        }
        let len = u32::try_from(len).map_err(|_| negative)?;
        if len > self.left {
            return Err("length exceeds the frame");
        }
        Ok(Some(len))
    }

    fn begin_string(
        &mut self,
        len: Option<u32>,
        role: Role,
        visitor: &mut impl Visitor,
    ) -> Result<(), Reason> {
        match len {
            None => visitor.string(role, None),
            Some(len) if role == Role::Skip => {
                self.skip(len);
                Ok(())
            }
            Some(len) if len as usize > MAX_CAPTURE => {
                self.skip(len);
                visitor.string(role, None)
            }
            Some(0) => visitor.string(role, Some(&[])),
            Some(len) => {
                self.capture.reserve_exact(MAX_CAPTURE);
                self.step = Step::Capture { len, role };
                Ok(())
            }
        }
    }

    fn begin_records(&mut self, len: u32, visitor: &mut impl Visitor) -> Result<(), Reason> {
        if len == 0 {
            return visitor.records(RecordStats::default());
        }
        let mut walker = self.spare_records.take().unwrap_or_default();
        *walker = RecordWalker::new(len);
        self.step = Step::Records(walker);
        Ok(())
    }

    fn begin_array(&mut self, element: &'static Struct, count: u32) -> Result<(), Reason> {
        if count == 0 {
            return Ok(());
        }
        // Every element takes at least one byte: a larger count is malformed, and
        // rejecting it keeps the work per frame proportional to its bytes.
        if count > self.left {
            return Err("array longer than the frame");
        }
        self.push(Level::new(element, count - 1, None))
    }

    fn begin_tagged(&mut self, tag: u64, size: u32) -> Result<(), Reason> {
        if size > self.left {
            return Err("tagged field exceeds the frame");
        }
        let version = self.version;
        let known = self.stack.last().and_then(|level| {
            level
                .schema
                .tagged
                .iter()
                .find(|t| t.tag == tag && t.versions.contains(version))
        });
        match known {
            Some(tagged) if size > 0 => {
                let schema = tagged.schema;
                self.push(Level::new(schema, 0, Some(self.left - size)))
            }
            _ => {
                self.skip(size);
                Ok(())
            }
        }
    }

    fn skip(&mut self, len: u32) {
        if len > 0 {
            self.step = Step::Skip { left: len };
        }
    }

    fn push(&mut self, level: Level) -> Result<(), Reason> {
        if self.stack.len() >= MAX_DEPTH {
            return Err("structs nested too deeply");
        }
        self.stack.push(level);
        Ok(())
    }

    /// Decides the next step from the schema, without consuming input.
    fn advance(&mut self, visitor: &mut impl Visitor) -> Result<(), Reason> {
        let Some(level) = self.stack.last_mut() else {
            self.step = Step::Done;
            return Ok(());
        };
        match level.phase {
            Phase::Fields => {
                let schema = level.schema;
                let version = self.version;
                let next = schema
                    .fields
                    .iter()
                    .enumerate()
                    .skip(level.field)
                    .find(|(_, f)| f.versions.contains(version));
                match next {
                    Some((index, field)) => {
                        level.field = index + 1;
                        self.begin_field(*field);
                    }
                    None if self.flexible && schema.has_tags => {
                        level.field = schema.fields.len();
                        self.step = Step::Integer {
                            encoding: Encoding::UnsignedVarint,
                            purpose: Purpose::TagCount,
                        };
                    }
                    None => level.phase = Phase::End,
                }
                Ok(())
            }
            Phase::Tags(0) => {
                level.phase = Phase::End;
                Ok(())
            }
            Phase::Tags(count) => {
                level.phase = Phase::Tags(count - 1);
                self.step = Step::Integer {
                    encoding: Encoding::UnsignedVarint,
                    purpose: Purpose::Tag,
                };
                Ok(())
            }
            Phase::End => self.end_element(visitor),
        }
    }

    /// A struct element is complete: act on it, then go to the next element, the
    /// end of a tagged field's data, or the enclosing struct.
    fn end_element(&mut self, visitor: &mut impl Visitor) -> Result<(), Reason> {
        self.pristine = false;
        let left = self.left;
        let Some(level) = self.stack.last_mut() else {
            return Ok(());
        };
        if let Some(ends_at_left) = level.ends_at_left.take() {
            visitor.struct_end(level.schema.end)?;
            // A tagged struct may carry fields newer than tally knows: skip them.
            let extra = left
                .checked_sub(ends_at_left)
                .ok_or("tagged field overran its size")?;
            self.stack.pop();
            self.skip(extra);
            return Ok(());
        }
        let schema = level.schema;
        if level.elements_after > 0 {
            level.elements_after -= 1;
            level.field = 0;
            level.phase = Phase::Fields;
        } else {
            self.stack.pop();
        }
        visitor.struct_end(schema.end)?;
        if schema.stop_after {
            self.stack.clear();
            self.step = Step::Done;
        }
        Ok(())
    }

    /// Sets the step that reads `field`.
    fn begin_field(&mut self, field: Field) {
        let compact = self.flexible;
        let fixed = |width: u8, purpose| Step::Integer {
            encoding: Encoding::Fixed(width),
            purpose,
        };
        let length = |compact: bool, width: u8, purpose| Step::Integer {
            encoding: if compact {
                Encoding::UnsignedVarint
            } else {
                Encoding::Fixed(width)
            },
            purpose,
        };
        let role = field.role;
        self.step = match field.kind {
            Kind::Int8 => fixed(1, Purpose::Value(role)),
            Kind::Int16 => fixed(2, Purpose::Value(role)),
            Kind::Int32 => fixed(4, Purpose::Value(role)),
            Kind::Int64 => fixed(8, Purpose::Value(role)),
            Kind::Uuid => fixed(16, Purpose::Uuid(role)),
            Kind::String => length(compact, 2, Purpose::StringLength { role, compact }),
            Kind::LegacyString => fixed(
                2,
                Purpose::StringLength {
                    role,
                    compact: false,
                },
            ),
            Kind::Bytes => length(compact, 4, Purpose::BytesLength { role, compact }),
            Kind::Records => length(compact, 4, Purpose::RecordsLength { compact }),
            Kind::Array(element) => length(compact, 4, Purpose::ArrayLength { element, compact }),
        };
    }
}

/// The rest of a frame, all at hand: the whole-frame fast path reads it with a
/// cursor instead of the resumable state machine.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

/// Whether the walk goes on after a struct (false: a `stop_after` prefix ended).
type Go = bool;

const CUT: Reason = "frame ended inside a field";

impl<'a> Cursor<'a> {
    /// Bytes of the frame not yet read (the resumable walker's `left`).
    fn left(&self) -> u32 {
        u32::try_from(self.data.len().saturating_sub(self.pos)).unwrap_or(u32::MAX)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Reason> {
        let bytes = self
            .data
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or(CUT)?;
        self.pos += n;
        Ok(bytes)
    }

    fn fixed(&mut self, width: usize) -> Result<i64, Reason> {
        let bytes = self.take(width)?;
        let mut value: i64 = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
            -1
        } else {
            0
        };
        for byte in bytes {
            value = (value << 8) | i64::from(*byte);
        }
        Ok(value)
    }

    fn varint(&mut self) -> Result<i64, Reason> {
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let byte = *self.data.get(self.pos).ok_or(CUT)?;
            if shift > 28 {
                return Err("unsigned varint longer than 5 bytes");
            }
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                return Ok(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
    }

    /// A length prefix: compact (varint) or fixed `width` bytes.
    fn length_prefix(&mut self, compact: bool, width: usize) -> Result<i64, Reason> {
        if compact {
            self.varint()
        } else {
            self.fixed(width)
        }
    }

    /// As [`Walker::length`]: `None` for null; fails when it exceeds the frame.
    fn length(&self, value: i64, compact: bool, negative: Reason) -> Result<Option<u32>, Reason> {
        let len = if compact { value - 1 } else { value };
        if len == -1 {
            return Ok(None);
        }
        let len = u32::try_from(len).map_err(|_| negative)?;
        if len > self.left() {
            return Err("length exceeds the frame");
        }
        Ok(Some(len))
    }
}

impl Walker {
    /// The whole-frame fast path: `input` holds the rest of the frame and nothing
    /// of it was read yet. Makes exactly the visitor calls, in the same order, and
    /// fails with the same reasons as the resumable walk over the same bytes (the
    /// chunking property tests compare the two), without its per-step state.
    fn feed_whole(&mut self, input: &[u8], visitor: &mut impl Visitor) -> Result<usize, Reason> {
        self.pristine = false;
        self.step = Step::Done;
        self.stack.clear();
        let mut cursor = Cursor {
            data: input.get(..self.left as usize).unwrap_or_default(),
            pos: 0,
        };
        // The inner root (the header tail) sits on top of the outer one: its
        // level is as deep as the roots on the stack.
        let roots = self.roots;
        let mut depth = roots.iter().flatten().count();
        let mut result = Ok(());
        for schema in roots.into_iter().flatten() {
            match self.whole_element(schema, &mut cursor, depth, visitor) {
                Ok(true) => depth -= 1,
                Ok(false) => break,
                Err(reason) => {
                    result = Err(reason);
                    break;
                }
            }
        }
        self.took(cursor.pos);
        result.map(|()| cursor.pos)
    }

    /// One element of `schema`, whose level is `depth` deep on the stack.
    fn whole_element(
        &mut self,
        schema: &'static Struct,
        cursor: &mut Cursor<'_>,
        depth: usize,
        visitor: &mut impl Visitor,
    ) -> Result<Go, Reason> {
        if !self.whole_fields(schema, cursor, depth, visitor)? {
            return Ok(false);
        }
        visitor.struct_end(schema.end)?;
        Ok(!schema.stop_after)
    }

    /// The fields and the tagged-field section of one element.
    fn whole_fields(
        &mut self,
        schema: &'static Struct,
        cursor: &mut Cursor<'_>,
        depth: usize,
        visitor: &mut impl Visitor,
    ) -> Result<Go, Reason> {
        let (version, compact) = (self.version, self.flexible);
        for field in schema
            .fields
            .iter()
            .filter(|f| f.versions.contains(version))
        {
            let role = field.role;
            match field.kind {
                Kind::Int8 => visitor.integer(role, cursor.fixed(1)?)?,
                Kind::Int16 => visitor.integer(role, cursor.fixed(2)?)?,
                Kind::Int32 => visitor.integer(role, cursor.fixed(4)?)?,
                Kind::Int64 => visitor.integer(role, cursor.fixed(8)?)?,
                Kind::Uuid => {
                    let mut uuid = [0u8; 16];
                    uuid.copy_from_slice(cursor.take(16)?);
                    visitor.uuid(role, uuid)?;
                }
                Kind::String | Kind::LegacyString => {
                    let compact = compact && matches!(field.kind, Kind::String);
                    let value = cursor.length_prefix(compact, 2)?;
                    let len = cursor.length(value, compact, "negative string length")?;
                    match len {
                        None => visitor.string(role, None)?,
                        Some(len) if role == Role::Skip => {
                            cursor.take(len as usize)?;
                        }
                        Some(len) if len as usize > MAX_CAPTURE => {
                            cursor.take(len as usize)?;
                            visitor.string(role, None)?;
                        }
                        Some(len) => visitor.string(role, Some(cursor.take(len as usize)?))?,
                    }
                }
                Kind::Bytes => {
                    let value = cursor.length_prefix(compact, 4)?;
                    let len = cursor.length(value, compact, "negative bytes length")?;
                    visitor.bytes_start(role, len);
                    if let Some(len) = len.filter(|l| *l > 0) {
                        visitor.bytes_piece(role, cursor.take(len as usize)?);
                    }
                    visitor.bytes_end(role)?;
                }
                Kind::Records => {
                    let value = cursor.length_prefix(compact, 4)?;
                    let len = cursor.length(value, compact, "negative records length")?;
                    let len = len.unwrap_or(0);
                    if len == 0 {
                        visitor.records(RecordStats::default())?;
                    } else {
                        let set = cursor.take(len as usize)?;
                        visitor.records(RecordWalker::whole(set))?;
                    }
                }
                Kind::Array(element) => {
                    let value = cursor.length_prefix(compact, 4)?;
                    let count = cursor
                        .length(value, compact, "negative array length")?
                        .unwrap_or(0);
                    if count > 0 {
                        if count > cursor.left() {
                            return Err("array longer than the frame");
                        }
                        if depth >= MAX_DEPTH {
                            return Err("structs nested too deeply");
                        }
                        for _ in 0..count {
                            if !self.whole_element(element, cursor, depth + 1, visitor)? {
                                return Ok(false);
                            }
                        }
                    }
                }
            }
        }
        if compact && schema.has_tags {
            let count = u64::try_from(cursor.varint()?).unwrap_or(0);
            for _ in 0..count {
                let tag = u64::try_from(cursor.varint()?).unwrap_or(u64::MAX);
                let size = u32::try_from(cursor.varint()?).map_err(|_| "tagged field too large")?;
                if size > cursor.left() {
                    return Err("tagged field exceeds the frame");
                }
                let known = schema
                    .tagged
                    .iter()
                    .find(|t| t.tag == tag && t.versions.contains(version));
                match known {
                    Some(tagged) if size > 0 => {
                        if depth >= MAX_DEPTH {
                            return Err("structs nested too deeply");
                        }
                        let ends_at = cursor.pos + size as usize;
                        if !self.whole_fields(tagged.schema, cursor, depth + 1, visitor)? {
                            return Ok(false);
                        }
                        visitor.struct_end(tagged.schema.end)?;
                        let extra = ends_at
                            .checked_sub(cursor.pos)
                            .ok_or("tagged field overran its size")?;
                        cursor.take(extra)?;
                    }
                    _ => {
                        cursor.take(size as usize)?;
                    }
                }
            }
        }
        Ok(true)
    }
}
