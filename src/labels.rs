//! Escaping of label values inside Envoy stat names: the contract between the
//! plugin's labelled counters (writer) and the Prometheus reader of
//! [`crate::formats::prometheus`] (and anything else that reads the stats back).
//!
//! Envoy stats are flat dotted names; labels are cut out of them by tag-extraction
//! regexes that match `[^.]+`. Label values are principals and topics, user text
//! that may hold dots, dashes, commas, `=`, `/`, `:`, anything. A value keeps the
//! ASCII letters, digits and `-` as they are and writes every other byte of its
//! UTF-8 as `_` followed by two upper-case hex digits (`.` → `_2E`, `=` → `_3D`,
//! `,` → `_2C`, `_` → `_5F`); the empty value is `_`. The escaped text never holds
//! a dot, and [`unescape`] gives back the original exactly.

use std::fmt::Write;

/// Escapes a label value for use inside a stat name (see the module docs).
pub fn escape(value: &str) -> String {
    if value.is_empty() {
        return "_".to_string();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "_{b:02X}");
        }
    }
    out
}

/// Reverses [`escape`]; `None` if `text` is not an escaped value.
pub fn unescape(text: &str) -> Option<String> {
    if text == "_" {
        return Some(String::new());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'_' {
            let hex = text.get(i + 1..i + 3)?;
            if !hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
            {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_and_never_leaves_a_dot() {
        for value in [
            "",
            "orders",
            "orders.v1",
            "CN=orders-svc,OU=payments,O=acme",
            "spiffe://acme/ns/a b",
            "_5F",
            "_",
            "ünïcode-τοπικό",
            "a.b-c,d=e",
        ] {
            let e = escape(value);
            assert!(!e.contains('.') && !e.is_empty(), "{e}");
            assert!(
                e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{e}"
            );
            assert_eq!(unescape(&e).as_deref(), Some(value), "{value} -> {e}");
        }
    }

    #[test]
    fn known_values_and_malformed_escapes() {
        for (escaped, raw) in [
            ("orders_2Ev1", Some("orders.v1")),
            ("CN_3Da_2CO_3Db", Some("CN=a,O=b")),
            ("_5Fother", Some("_other")),
            ("_", Some("")),
            ("plain-name", Some("plain-name")),
            ("caf_C3_A9", Some("café")),
            ("bad.dot", None),
            ("_2", None),
            ("_2e", None),
            ("_zz", None),
            ("_FF", None),
        ] {
            assert_eq!(unescape(escaped).as_deref(), raw, "{escaped}");
            if let Some(raw) = raw {
                assert_eq!(escape(raw), escaped);
            }
        }
    }
}
