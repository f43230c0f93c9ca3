//! Streams a JSON document as events, cutting the elements of one array path
//! into items: what keeps the JSON readers bounded by their largest item.
//!
//! ## Design
//!
//! The Confluent Billing API's `data[*]`, Prometheus' `data.result[*]` and
//! WarpStream's `tenants[*].workspaces[*].clusters[*].entities[*]` are each
//! one array of items inside a few small objects. [`JsonItems`] is fed the
//! document in chunks of any size and hands out, in document order:
//!
//! * [`Event::Item`]: each element of the arrays at the item path, as the text
//!   of one JSON value with the 1-based line it starts on, or — when it is
//!   longer than the limit — a [`Error::TooLarge`] at that line. An item over
//!   the limit is skipped with bounded memory (a depth counter and whether a
//!   string is open), so the rest of the document is read. The item's text is
//!   not checked here beyond its brackets and strings: the reader parses it
//!   ([`super::exact_json::parse_at`]) and refuses it alone if it is bad.
//! * [`Event::Open`] / [`Event::Close`] of every object and array outside the
//!   items, and [`Event::Scalar`] for every string, number, boolean and null
//!   outside them, parsed, each with its path (`tenants[0].tenant_id`): the
//!   reader picks the fields it needs. A key or scalar outside the items longer
//!   than the limit stops the file (no reader needs one).
//!
//! Outside the items the grammar is checked as the bytes come: the document
//! must be one object (a UTF-8 BOM before it is skipped) with nothing but
//! whitespace after it, nested at most [`MAX_DEPTH`] deep; anything else stops
//! the file with its line. A document that ends early is refused at
//! [`JsonItems::finish`]. When an object repeats the key that leads to the
//! items, the first member is read and the later ones are skipped unread, as
//! [`super::exact_json`] keeps the first of duplicate keys.
//!
//! Memory: the open objects' path, and one key, scalar or item of at most the
//! limit.

use super::exact_json::{self, Value, MAX_DEPTH};
use super::{Reader, Sink};
use crate::error::{Error, Location};

/// In an item path, the step that matches any array index.
pub const ANY_INDEX: &str = "[]";

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object member.
    Key(String),
    /// An array element (0-based).
    Index(u64),
}

impl Step {
    fn matches(&self, pattern: &str) -> bool {
        match self {
            Step::Key(key) => key == pattern,
            Step::Index(_) => pattern == ANY_INDEX,
        }
    }
}

/// Whether `path` is `pattern` (`"[]"` matching any index).
pub fn path_is(path: &[Step], pattern: &[&str]) -> bool {
    path.len() == pattern.len() && path.iter().zip(pattern).all(|(s, p)| s.matches(p))
}

/// A path as the readers name fields: `tenants[0].workspaces[1].clusters`.
pub fn path_text(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// What [`JsonItems`] hands out (see the module docs).
#[derive(Debug)]
pub enum Event<'a> {
    /// An object or array outside the items begins.
    Open {
        /// Its path (empty for the document).
        path: &'a [Step],
        /// The line of its `{` or `[`.
        line: u64,
        /// An array (else an object).
        array: bool,
    },
    /// It ends.
    Close {
        /// Its path.
        path: &'a [Step],
        /// An array (else an object).
        array: bool,
    },
    /// A string, number, boolean or null outside the items.
    Scalar {
        /// Its path.
        path: &'a [Step],
        /// The value, with its line.
        value: Value,
    },
    /// An element of an array at the item path.
    Item {
        /// Its path (ending with its index).
        path: &'a [Step],
        /// The line it starts on.
        line: u64,
        /// Its text, or why it was not kept (over the limit, not UTF-8).
        text: Result<&'a str, Error>,
    },
}

/// Receives the events; an `Err` stops the file.
pub type OnEvent<'a> = dyn FnMut(Event<'_>) -> Result<(), Error> + 'a;

/// What the next structural byte may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The document's `{` (after an optional BOM and whitespace).
    Document,
    /// A value (after `:` or an array's `,`).
    Value,
    /// A value or `]` (after `[`).
    ValueOrEnd,
    /// A member name (after an object's `,`).
    Key,
    /// A member name or `}` (after `{`).
    KeyOrEnd,
    /// `:` after a member name.
    Colon,
    /// `,` or the end of the open container.
    CommaOrEnd,
    /// Whitespace after the document.
    Nothing,
}

/// What the bytes are inside of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Between tokens.
    Structure,
    /// A string outside the items: a member name or a value.
    Text { key: bool, escaped: bool },
    /// A number or `true` / `false` / `null` outside the items.
    Literal,
    /// An item, or a member skipped unread (`keep` false).
    Item {
        depth: u64,
        in_string: bool,
        escaped: bool,
        over_limit: bool,
        keep: bool,
    },
}

/// An open object or array outside the items.
#[derive(Debug)]
struct Frame {
    array: bool,
    /// Elements of this array are items.
    items: bool,
    /// The key of this object that leads towards the items, and whether it was seen.
    items_key: Option<&'static str>,
    items_key_seen: bool,
    /// The index of the next element (arrays).
    next_index: u64,
    /// The current member's value is a repeated items key: skipped unread.
    skip_member: bool,
}

/// Splits a JSON document into events and items (see the module docs).
#[derive(Debug)]
pub struct JsonItems {
    file: String,
    items_at: &'static [&'static str],
    limit: usize,
    line: u64,
    /// Bytes seen, and how many of the first were a UTF-8 BOM.
    offset: u64,
    bom_skipped: u64,
    expect: Expect,
    lex: Lex,
    frames: Vec<Frame>,
    path: Vec<Step>,
    /// The key, scalar or item being read, and the line it started on.
    buf: Vec<u8>,
    buf_line: u64,
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl JsonItems {
    /// A splitter of `file` whose items are the elements of the arrays at
    /// `items_at` (keys, and [`ANY_INDEX`] for any index), refusing items
    /// (and keys or scalars outside them) over `limit` bytes.
    pub fn new(file: &str, items_at: &'static [&'static str], limit: usize) -> Self {
        JsonItems {
            file: file.to_string(),
            items_at,
            limit,
            line: 1,
            offset: 0,
            bom_skipped: 0,
            expect: Expect::Document,
            lex: Lex::Structure,
            frames: Vec::new(),
            path: Vec::new(),
            buf: Vec::new(),
            buf_line: 1,
        }
    }

    /// The file's name, as given.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// An input error at the current line.
    fn error(&self, reason: impl Into<String>) -> Error {
        Error::input(&self.file, self.line, "", reason)
    }

    /// The refusal of something over the limit that started on `line`.
    fn too_large(&self, line: u64) -> Error {
        Error::TooLarge {
            at: Location {
                file: self.file.clone(),
                line,
                column: path_text(&self.path),
            },
            limit: self.limit as u64,
        }
    }

    /// Feeds the next chunk; events go to `on`.
    pub fn feed(&mut self, chunk: &[u8], on: &mut OnEvent<'_>) -> Result<(), Error> {
        for &b in chunk {
            self.offset = self.offset.saturating_add(1);
            if b == b'\n' {
                self.line = self.line.saturating_add(1);
            }
            // A byte that ends a number or an item is then read as structure.
            while !self.byte(b, on)? {}
        }
        Ok(())
    }

    /// Reads one byte; `false` when it ended a token and must be read again.
    fn byte(&mut self, b: u8, on: &mut OnEvent<'_>) -> Result<bool, Error> {
        match self.lex {
            Lex::Structure => self.structure(b, on).map(|()| true),
            Lex::Text { key, escaped } => {
                self.keep_outside(b)?;
                if escaped {
                    self.lex = Lex::Text {
                        key,
                        escaped: false,
                    };
                } else if b == b'\\' {
                    self.lex = Lex::Text { key, escaped: true };
                } else if b == b'"' {
                    self.lex = Lex::Structure;
                    if key {
                        self.end_key()?;
                    } else {
                        self.end_scalar(on)?;
                    }
                }
                Ok(true)
            }
            Lex::Literal => {
                if is_space(b) || matches!(b, b',' | b']' | b'}') {
                    self.lex = Lex::Structure;
                    self.end_scalar(on)?;
                    return Ok(false);
                }
                self.keep_outside(b)?;
                Ok(true)
            }
            Lex::Item {
                mut depth,
                mut in_string,
                mut escaped,
                mut over_limit,
                keep,
            } => {
                // Whether the item ends at this byte, and whether the byte is its own.
                let (ends, own) = if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                    (!in_string && depth == 0, true)
                } else {
                    match b {
                        b'"' => {
                            in_string = true;
                            (false, true)
                        }
                        b'{' | b'[' => {
                            depth = depth.saturating_add(1);
                            (false, true)
                        }
                        b'}' | b']' if depth == 0 => (true, false),
                        b'}' | b']' => {
                            depth -= 1;
                            (depth == 0, true)
                        }
                        b',' if depth == 0 => (true, false),
                        _ if depth == 0 && is_space(b) => (true, false),
                        _ => (false, true),
                    }
                };
                if own && keep && !over_limit {
                    if self.buf.len() >= self.limit {
                        over_limit = true;
                        self.buf = Vec::new();
                    } else {
                        self.buf.push(b);
                    }
                }
                if ends {
                    self.lex = Lex::Structure;
                    if keep {
                        self.end_item(over_limit, on)?;
                    }
                    self.value_done();
                } else {
                    self.lex = Lex::Item {
                        depth,
                        in_string,
                        escaped,
                        over_limit,
                        keep,
                    };
                }
                Ok(own)
            }
        }
    }

    /// Keeps a byte of a key or scalar outside the items, within the limit.
    fn keep_outside(&mut self, b: u8) -> Result<(), Error> {
        if self.buf.len() >= self.limit {
            return Err(self.too_large(self.buf_line));
        }
        self.buf.push(b);
        Ok(())
    }

    fn structure(&mut self, b: u8, on: &mut OnEvent<'_>) -> Result<(), Error> {
        if is_space(b) {
            return Ok(());
        }
        let array = self.frames.last().is_some_and(|f| f.array);
        match (self.expect, b) {
            (Expect::Document, _)
                if self.bom_skipped + 1 == self.offset
                    && BOM.get(self.bom_skipped as usize) == Some(&b) =>
            {
                self.bom_skipped += 1;
                Ok(())
            }
            (Expect::Document, b'{') => self.open(false, on),
            (Expect::Document, _) => Err(self.error("not a JSON object")),
            (Expect::Nothing, _) => Err(self.error("unexpected text after the JSON document")),
            (Expect::KeyOrEnd, b'}') | (Expect::ValueOrEnd, b']') => self.close(on),
            (Expect::KeyOrEnd | Expect::Key, b'"') => {
                self.start_buf(b);
                self.lex = Lex::Text {
                    key: true,
                    escaped: false,
                };
                Ok(())
            }
            (Expect::KeyOrEnd | Expect::Key, _) => {
                Err(self.error("invalid JSON: expected a member name"))
            }
            (Expect::Colon, b':') => {
                self.expect = Expect::Value;
                Ok(())
            }
            (Expect::Colon, _) => Err(self.error("invalid JSON: expected `:`")),
            (Expect::CommaOrEnd, b',') => {
                self.expect = if array { Expect::Value } else { Expect::Key };
                Ok(())
            }
            (Expect::CommaOrEnd, b']') if array => self.close(on),
            (Expect::CommaOrEnd, b'}') if !array => self.close(on),
            (Expect::CommaOrEnd, _) if array => {
                Err(self.error("invalid JSON: expected `,` or `]`"))
            }
            (Expect::CommaOrEnd, _) => Err(self.error("invalid JSON: expected `,` or `}`")),
            (Expect::Value | Expect::ValueOrEnd, _) => self.value(b, on),
        }
    }

    /// The first byte of a value.
    fn value(&mut self, b: u8, on: &mut OnEvent<'_>) -> Result<(), Error> {
        let Some(frame) = self.frames.last_mut() else {
            return Err(self.error("unexpected text after the JSON document"));
        };
        let (item, skip) = (frame.items, frame.skip_member);
        if frame.array {
            self.path.push(Step::Index(frame.next_index));
            frame.next_index = frame.next_index.saturating_add(1);
        }
        if matches!(b, b',' | b']' | b'}') {
            return Err(self.error("invalid JSON: expected a value"));
        }
        if item || skip {
            self.buf.clear();
            self.buf_line = self.line;
            self.lex = Lex::Item {
                depth: 0,
                in_string: false,
                escaped: false,
                over_limit: false,
                keep: item && !skip,
            };
            // Not a delimiter (checked above), so the byte is the item's own.
            return self.byte(b, on).map(drop);
        }
        match b {
            b'{' => self.open(false, on),
            b'[' => self.open(true, on),
            b'"' => {
                self.start_buf(b);
                self.lex = Lex::Text {
                    key: false,
                    escaped: false,
                };
                Ok(())
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                self.start_buf(b);
                self.lex = Lex::Literal;
                Ok(())
            }
            other => Err(self.error(format!(
                "invalid JSON: unexpected character `{}`",
                char::from(other).escape_default()
            ))),
        }
    }

    fn start_buf(&mut self, b: u8) {
        self.buf.clear();
        self.buf.push(b);
        self.buf_line = self.line;
    }

    /// Opens an object or array at the current path.
    fn open(&mut self, array: bool, on: &mut OnEvent<'_>) -> Result<(), Error> {
        if self.frames.len() >= MAX_DEPTH {
            return Err(self.error(format!("JSON nested deeper than {MAX_DEPTH} levels")));
        }
        let depth = self.path.len();
        // This container's path is the item path or leads to it.
        let towards_items = depth <= self.items_at.len()
            && self
                .path
                .iter()
                .zip(self.items_at)
                .all(|(step, pattern)| step.matches(pattern));
        let next_step = self.items_at.get(depth).copied();
        self.frames.push(Frame {
            array,
            items: array && towards_items && depth == self.items_at.len(),
            items_key: next_step.filter(|k| towards_items && !array && *k != ANY_INDEX),
            items_key_seen: false,
            next_index: 0,
            skip_member: false,
        });
        self.expect = if array {
            Expect::ValueOrEnd
        } else {
            Expect::KeyOrEnd
        };
        on(Event::Open {
            path: &self.path,
            line: self.line,
            array,
        })
    }

    /// Closes the innermost object or array.
    fn close(&mut self, on: &mut OnEvent<'_>) -> Result<(), Error> {
        let array = self.frames.last().is_some_and(|f| f.array);
        on(Event::Close {
            path: &self.path,
            array,
        })?;
        self.frames.pop();
        self.value_done();
        Ok(())
    }

    /// After a value: leave its path step and expect what follows it.
    fn value_done(&mut self) {
        if self.frames.is_empty() {
            self.expect = Expect::Nothing;
            return;
        }
        self.path.pop();
        if let Some(frame) = self.frames.last_mut() {
            frame.skip_member = false;
        }
        self.expect = Expect::CommaOrEnd;
    }

    /// The text of `buf` parsed as one JSON value starting on `buf_line`.
    fn parse_buf(&self) -> Result<Value, Error> {
        let text = std::str::from_utf8(&self.buf)
            .map_err(|_| Error::input(&self.file, self.buf_line, "", "not UTF-8 text"))?;
        exact_json::parse_at(text, &self.file, self.buf_line)
    }

    fn end_key(&mut self) -> Result<(), Error> {
        let key = match self.parse_buf()?.kind {
            exact_json::Kind::String(key) => key,
            _ => return Err(self.error("invalid JSON: expected a member name")),
        };
        if let Some(frame) = self.frames.last_mut() {
            if frame.items_key == Some(key.as_str()) {
                frame.skip_member = frame.items_key_seen;
                frame.items_key_seen = true;
            }
        }
        self.path.push(Step::Key(key));
        self.expect = Expect::Colon;
        Ok(())
    }

    fn end_scalar(&mut self, on: &mut OnEvent<'_>) -> Result<(), Error> {
        let value = self.parse_buf()?;
        on(Event::Scalar {
            path: &self.path,
            value,
        })?;
        self.value_done();
        Ok(())
    }

    fn end_item(&mut self, over_limit: bool, on: &mut OnEvent<'_>) -> Result<(), Error> {
        let line = self.buf_line;
        let text = if over_limit {
            Err(self.too_large(line))
        } else {
            std::str::from_utf8(&self.buf).map_err(|_| {
                Error::input(&self.file, line, &path_text(&self.path), "not UTF-8 text")
            })
        };
        on(Event::Item {
            path: &self.path,
            line,
            text,
        })
    }

    /// The end of the document: refused if it was empty or is incomplete.
    pub fn finish(&mut self) -> Result<(), Error> {
        match self.expect {
            Expect::Nothing => Ok(()),
            Expect::Document => Err(self.error("empty file")),
            _ => Err(self.error(format!(
                "the JSON document is truncated: it ends inside `{}`",
                if self.path.is_empty() {
                    "the document".to_string()
                } else {
                    path_text(&self.path)
                }
            ))),
        }
    }
}

/// A JSON reader that parses each chunk into what it read (rows, rejections,
/// notes) and hands that to the sink after the chunk, keeping none of it: a
/// [`Reader`].
pub trait Drained {
    /// Reads a chunk, keeping what it read until [`Drained::drain`].
    fn parse(&mut self, chunk: &[u8]) -> Result<(), Error>;
    /// Hands what was read to `sink`.
    fn drain(&mut self, sink: &mut dyn Sink);
    /// The end of the document (what is read at its end is kept too).
    fn end(&mut self) -> Result<(), Error>;
}

impl<T: Drained> Reader for T {
    fn feed(&mut self, chunk: &[u8], sink: &mut dyn Sink) -> Result<(), Error> {
        let parsed = self.parse(chunk);
        self.drain(sink);
        parsed
    }

    fn finish(&mut self, sink: &mut dyn Sink) -> Result<(), Error> {
        let ended = self.end();
        self.drain(sink);
        ended
    }
}
