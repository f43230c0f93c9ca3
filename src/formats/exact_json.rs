//! A small, strict JSON reader that keeps numbers exact.
//!
//! `serde_json` without its `arbitrary_precision` feature turns every non-integer
//! number into an `f64`, so `0.23148` or `110.25601800903678` would reach a
//! `Decimal` through a binary float. Enabling that feature is a workspace-wide
//! switch (Cargo unifies features) that changes `serde_json::Number` for every
//! crate and adapter, so the money-carrying JSON readers (WarpStream chargebacks,
//! Prometheus `query_range`) use this reader instead: numbers are kept as their
//! source text and converted with [`rust_decimal::Decimal::from_str_exact`] (or
//! `from_scientific` for exponents), so no digit is lost. It is pure Rust with no
//! host calls, identical natively and in WebAssembly.
//!
//! Design: one pass over the bytes, recursive descent with a depth limit (no stack
//! exhaustion on `[[[[…`), each value tagged with the 1-based line it starts on, so
//! an error can name the file, the line and the field path. Strings are decoded per
//! RFC 8259 (escapes, surrogate pairs); duplicate object keys keep the first value
//! and are otherwise ignored ([`last_member`] takes the last, for a JWT's
//! claims). What is parsed is held in memory whole: the readers parse one item
//! at a time ([`super::json_items`]), each bounded by the record limit, never a
//! whole document.

use crate::error::Error;
use rust_decimal::Decimal;
use std::collections::BTreeSet;

/// Deepest nesting accepted. WarpStream's hierarchy is 8 levels deep.
pub const MAX_DEPTH: usize = 64;

/// A JSON value with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// 1-based line of the value's first byte.
    pub line: u64,
    /// The value itself.
    pub kind: Kind,
}

/// The kinds of JSON values; numbers keep their exact text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number, as written (validated against the JSON grammar).
    Number(String),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object's members in document order.
    Object(Vec<(String, Value)>),
}

impl Kind {
    /// A short name of the kind, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Number(_) => "a number",
            Kind::String(_) => "a string",
            Kind::Array(_) => "an array",
            Kind::Object(_) => "an object",
        }
    }
}

impl Value {
    /// The member `key` of an object (`None` if absent or not an object).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match &self.kind {
            Kind::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }
}

/// Converts a number's text ([`is_number`]: a JSON number, or a CSV field or
/// JSON string holding one) to an exact [`Decimal`]; `None` when it is not a
/// number or does not fit in a `Decimal` (more than 28 significant digits, or
/// out of range).
pub fn decimal_from_number(text: &str) -> Option<Decimal> {
    if !is_number(text) {
        return None;
    }
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str_exact(text).ok()
    }
}

/// Whether `text` is a number in the one spelling tally reads, in CSV fields
/// and JSON alike: an optional `-`, digits, optionally a `.` and digits,
/// optionally `e` or `E`, a sign and digits — a JSON number, leading zeros
/// allowed. Exponents are in: FOCUS allows them (its Numeric Format), and
/// Python, pandas and jq write `1e-05`. Anything else (`$5.00`, `1_000`,
/// `1,000`, `+5`, `.5`, `5.`) is not read as a number: each has a meaning
/// a reader would have to guess, and a bill is no place for guesses.
pub fn is_number(text: &str) -> bool {
    /// `bytes` after a run of at least one digit, or `None` without one.
    fn after_digits(bytes: &[u8]) -> Option<&[u8]> {
        let count = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        bytes.get(count..).filter(|_| count > 0)
    }
    let bytes = text.as_bytes();
    let Some(mut rest) = after_digits(bytes.strip_prefix(b"-").unwrap_or(bytes)) else {
        return false;
    };
    if let Some(fraction) = rest.strip_prefix(b".") {
        let Some(after) = after_digits(fraction) else {
            return false;
        };
        rest = after;
    }
    if let Some(exponent) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let unsigned = exponent
            .strip_prefix(b"-")
            .or_else(|| exponent.strip_prefix(b"+"))
            .unwrap_or(exponent);
        let Some(after) = after_digits(unsigned) else {
            return false;
        };
        rest = after;
    }
    rest.is_empty()
}

/// Parses one JSON document (surrounding whitespace allowed, a UTF-8 BOM skipped).
/// `file` names the input in errors.
pub fn parse(text: &str, file: &str) -> Result<Value, Error> {
    parse_at(text, file, 1)
}

/// [`parse`] of a text that starts on line `first_line` of `file` (an item cut
/// out of a document): values and errors carry the file's lines.
pub fn parse_at(text: &str, file: &str, first_line: u64) -> Result<Value, Error> {
    Parser::new(text, file, first_line).document(|p| p.value(0))
}

/// The member `key` of the object that the JSON document `text` is, the
/// last one when the key repeats (as RFC 7519 reads a JWT's repeated claim);
/// `None` when the document is not an object or has no such member. The
/// whole document is checked as [`parse`] checks it.
pub fn last_member(text: &str, file: &str, key: &str) -> Result<Option<Value>, Error> {
    let members = Parser::new(text, file, 1).document(|p| match p.peek() {
        Some(b'{') => p.members(0).map(Some),
        _ => p.value(0).map(|_| None),
    })?;
    Ok(members
        .and_then(|members| members.into_iter().rev().find(|(name, _)| name == key))
        .map(|(_, value)| value))
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u64,
    file: &'a str,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, file: &'a str, first_line: u64) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Parser {
            bytes: text.as_bytes(),
            pos: 0,
            line: first_line,
            file,
        }
    }

    /// One whole document read by `read`: whitespace around it, nothing after.
    fn document<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.skip_ws();
        let read = read(self)?;
        self.skip_ws();
        if self.pos < self.bytes.len() {
            return Err(self.err("unexpected text after the JSON document"));
        }
        Ok(read)
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::input(self.file, self.line, "", reason)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b'\n' => self.line = self.line.saturating_add(1),
                b' ' | b'\t' | b'\r' => {}
                _ => return,
            }
            self.pos += 1;
        }
    }

    fn expect_literal(&mut self, word: &str) -> Result<(), Error> {
        let end = self.pos.saturating_add(word.len());
        if self.bytes.get(self.pos..end) == Some(word.as_bytes()) {
            self.pos = end;
            Ok(())
        } else {
            Err(self.err(format!("invalid JSON: expected `{word}`")))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("JSON nested deeper than {MAX_DEPTH} levels")));
        }
        let line = self.line;
        let kind = match self.peek() {
            None => return Err(self.err("unexpected end of the JSON document")),
            Some(b'n') => {
                self.expect_literal("null")?;
                Kind::Null
            }
            Some(b't') => {
                self.expect_literal("true")?;
                Kind::Bool(true)
            }
            Some(b'f') => {
                self.expect_literal("false")?;
                Kind::Bool(false)
            }
            Some(b'"') => Kind::String(self.string()?),
            Some(b'-' | b'0'..=b'9') => Kind::Number(self.number()?),
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                } else {
                    loop {
                        self.skip_ws();
                        items.push(self.value(depth + 1)?);
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(self.err("invalid JSON: expected `,` or `]`")),
                        }
                    }
                }
                Kind::Array(items)
            }
            Some(b'{') => Kind::Object(without_repeated_keys(self.members(depth)?)),
            Some(other) => {
                return Err(self.err(format!(
                    "invalid JSON: unexpected character `{}`",
                    char::from(other).escape_default()
                )))
            }
        };
        Ok(Value { line, kind })
    }

    /// An object's members in document order, repeated keys and all (at `{`).
    fn members(&mut self, depth: usize) -> Result<Vec<(String, Value)>, Error> {
        self.pos += 1;
        let mut members: Vec<(String, Value)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(members);
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("invalid JSON: expected a member name"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err("invalid JSON: expected `:`"));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.value(depth + 1)?;
            members.push((key, v));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(members);
                }
                _ => return Err(self.err("invalid JSON: expected `,` or `}`")),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<String, Error> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid JSON number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid JSON number: no digit after `.`"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid JSON number: no digit in the exponent"));
            }
        }
        let text = self.bytes.get(start..self.pos).unwrap_or_default();
        Ok(String::from_utf8_lossy(text).into_owned())
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let mut v: u32 = 0;
        for _ in 0..4 {
            let d = self
                .peek()
                .and_then(|b| char::from(b).to_digit(16))
                .ok_or_else(|| self.err("invalid JSON string: bad `\\u` escape"))?;
            v = v * 16 + d;
            self.pos += 1;
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<String, Error> {
        // Opening quote.
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err("invalid JSON: unterminated string"));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.err("invalid JSON: unterminated string"));
                    };
                    self.pos += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if self.bytes.get(self.pos..self.pos.saturating_add(2))
                                    != Some(b"\\u".as_slice())
                                {
                                    return Err(self.err("invalid JSON string: lone surrogate"));
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("invalid JSON string: lone surrogate"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code)
                                .ok_or_else(|| self.err("invalid JSON string: lone surrogate"))?
                        }
                        _ => return Err(self.err("invalid JSON string: unknown escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0x00..=0x1f => {
                    return Err(self.err("invalid JSON string: unescaped control character"))
                }
                _ => out.push(b),
            }
        }
        // The input is a `&str`, and escapes produce whole characters, so this is UTF-8.
        String::from_utf8(out).map_err(|_| self.err("invalid UTF-8 in a JSON string"))
    }
}

/// For each of `items`, whether its key is that of an earlier item (an item
/// whose key is `None` takes none): one pass with a set of the keys, so
/// O(n log n) where comparing each with those before it was quadratic (an
/// object of 80,000 members, under a MiB, took 8 s).
pub fn repeated<T>(items: &[T], key: impl Fn(&T) -> Option<&str>) -> Vec<bool> {
    let mut seen = BTreeSet::new();
    items
        .iter()
        .map(|item| key(item).is_some_and(|key| !seen.insert(key)))
        .collect()
}

/// An object's members with only the first of each key.
fn without_repeated_keys(members: Vec<(String, Value)>) -> Vec<(String, Value)> {
    let repeated = repeated(&members, |(key, _)| Some(key.as_str()));
    if !repeated.contains(&true) {
        return members;
    }
    members
        .into_iter()
        .zip(repeated)
        .filter_map(|(member, repeated)| (!repeated).then_some(member))
        .collect()
}

/// Appends `s` to `out` as a JSON string literal (quoted and escaped).
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The start of a document with a BOM and leading whitespace removed, if it is a
/// JSON object (`{`): what the format sniffers look at.
pub fn object_head(first_bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(first_bytes);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    t.starts_with('{').then(|| t.to_string())
}

/// Appends `value` as indented JSON (two spaces, like the WarpStream examples).
/// Numbers are written as their text, so exact decimals stay exact.
pub fn push_pretty(out: &mut String, value: &Kind, indent: usize) {
    fn pad(out: &mut String, n: usize) {
        for _ in 0..n {
            out.push_str("  ");
        }
    }
    match value {
        Kind::Null => out.push_str("null"),
        Kind::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Kind::Number(n) => out.push_str(n),
        Kind::String(s) => push_string(out, s),
        Kind::Array(items) if items.is_empty() => out.push_str("[]"),
        Kind::Array(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                pad(out, indent + 1);
                push_pretty(out, &item.kind, indent + 1);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            pad(out, indent);
            out.push(']');
        }
        Kind::Object(members) if members.is_empty() => out.push_str("{}"),
        Kind::Object(members) => {
            out.push_str("{\n");
            for (i, (key, v)) in members.iter().enumerate() {
                pad(out, indent + 1);
                push_string(out, key);
                out.push_str(": ");
                push_pretty(out, &v.kind, indent + 1);
                out.push_str(if i + 1 < members.len() { ",\n" } else { "\n" });
            }
            pad(out, indent);
            out.push('}');
        }
    }
}

/// A value without a meaningful line (for documents being written).
pub fn v(kind: Kind) -> Value {
    Value { line: 0, kind }
}

/// A JSON number holding `d` exactly, without trailing zeros (`1.10` → `1.1`).
pub fn number(d: rust_decimal::Decimal) -> Kind {
    if d.is_zero() {
        Kind::Number("0".into())
    } else {
        Kind::Number(d.normalize().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_numbers_exact_and_lines() {
        let v = parse(
            "{\n \"a\": 0.23148,\n \"b\": [110.25601800903678, -1e-3, 0],\n \"c\": \"x\\u00e9\\ud83d\\ude00\"\n}",
            "f.json",
        )
        .unwrap();
        let a = v.get("a").unwrap();
        assert_eq!(a.kind, Kind::Number("0.23148".into()));
        assert_eq!(a.line, 2);
        let Kind::Array(b) = &v.get("b").unwrap().kind else {
            panic!()
        };
        assert_eq!(
            decimal_from_number("110.25601800903678")
                .unwrap()
                .to_string(),
            "110.25601800903678"
        );
        assert_eq!(b[1].kind, Kind::Number("-1e-3".into()));
        assert_eq!(decimal_from_number("-1e-3").unwrap().to_string(), "-0.001");
        assert_eq!(v.get("c").unwrap().kind, Kind::String("xé😀".into()));
    }

    /// A number's text in a JSON string (WarpStream's amounts may come as
    /// strings) went to rust_decimal's parser, which reads `1_000`, `+5`,
    /// `.5` and `5.` (as 1000, 5, 0.5 and 5): they are not numbers.
    #[test]
    fn number_text_is_converted_in_one_spelling_only() {
        for (text, want) in [
            ("12.50", Some("12.50")),
            ("-1E-3", Some("-0.001")),
            ("1_000", None),
            ("+5", None),
            (".5", None),
            ("5.", None),
            ("$5", None),
            (" 5", None),
        ] {
            let got = decimal_from_number(text).map(|d| d.to_string());
            assert_eq!(got.as_deref(), want, "{text:?}");
        }
    }

    #[test]
    fn rejects_malformed_documents_without_panicking() {
        for (bad, line) in [
            ("", 1),
            ("{", 1),
            ("{\"a\" 1}", 1),
            ("[1,]", 1),
            ("[01]", 1),
            ("[1.]", 1),
            ("\"\\x\"", 1),
            ("\"\\ud800\"", 1),
            ("{}\n{}", 2),
            ("\n\ntru", 3),
            ("\"a\nb\"", 1),
        ] {
            let e = parse(bad, "bad.json").unwrap_err();
            match e {
                Error::Input { at, .. } => assert_eq!(at.line, line, "{bad:?}"),
                other => panic!("{other:?}"),
            }
        }
        let deep = "[".repeat(10_000);
        assert!(parse(&deep, "deep.json").is_err());
    }

    /// Of repeated keys the first is kept. Each key was compared with every
    /// one before it: an object of 80,000 members (under a MiB, so one item
    /// the readers take) took 8 s; the last case is that object.
    #[test]
    fn keeps_the_first_of_repeated_keys() {
        let many: Vec<String> = (0..80_000).map(|i| format!("\"k{i}\":{i}")).collect();
        let large = format!("{{{},\"k79998\":-1}}", many.join(","));
        // (document, its members' keys and values; or how many and the last)
        for (text, want) in [
            (r#"{"a":1,"b":2,"a":3}"#.to_string(), vec!["a=1", "b=2"]),
            (r#"{"a":1,"a":{"a":2},"a":3}"#.to_string(), vec!["a=1"]),
            (r#"{"a":{"b":1,"b":2}}"#.to_string(), vec!["a={b}"]),
            (large, vec!["80000 members", "k79998=79998", "k79999=79999"]),
        ] {
            let Kind::Object(members) = parse(&text, "f.json").unwrap().kind else {
                panic!("{text}")
            };
            let shown: Vec<String> = members
                .iter()
                .map(|(key, v)| match &v.kind {
                    Kind::Number(n) => format!("{key}={n}"),
                    Kind::Object(inner) => {
                        let keys: Vec<&str> = inner.iter().map(|(k, _)| k.as_str()).collect();
                        format!("{key}={{{}}}", keys.join(","))
                    }
                    other => format!("{key}={}", other.name()),
                })
                .collect();
            let got = if shown.len() > 3 {
                let k79998 = shown.iter().find(|s| s.starts_with("k79998=")).unwrap();
                vec![
                    format!("{} members", shown.len()),
                    k79998.clone(),
                    shown[shown.len() - 1].clone(),
                ]
            } else {
                shown
            };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn writes_escaped_strings() {
        let mut s = String::new();
        push_string(&mut s, "a\"b\\c\nd\u{1}");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\u0001\"");
        assert_eq!(
            parse(&s, "x").unwrap().kind,
            Kind::String("a\"b\\c\nd\u{1}".into())
        );
    }
}
