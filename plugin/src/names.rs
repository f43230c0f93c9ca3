//! Envoy stat names that carry labels, and the tag-extraction rules that turn
//! them back into Prometheus labels.
//!
//! Envoy stats are flat dotted names; labels come from `stats_config.stats_tags`
//! regexes that cut a part out of the name and keep it as a tag. A stat is named
//!
//! ```text
//! <metric>.<tag>.<value>.<tag>.<value>…       e.g.
//! tally_bytes.cluster.prod.principal.CN_3Dorders.source.mtls.topic.orders_2Ev1.direction.produced
//! ```
//!
//! (Envoy adds `wasmcustom.` in front; on `/stats/prometheus` that namespace is
//! dropped, so the series is `tally_bytes{cluster="prod",principal="CN_3Dorders",…}`.)
//!
//! **Escaping** of values is the core's [`tally::labels`]: the escaped text never
//! contains a dot, so the tag regexes below can match `[^.]+` and always cut
//! exactly one value, and [`unescape`] gives back the original text exactly.

use std::fmt::Write;

/// The tag names, in the order they appear in a stat name.
pub const TAGS: [&str; 5] = ["cluster", "principal", "source", "topic", "direction"];

pub use tally::labels::{escape, unescape};

/// Builds `<metric>.<tag>.<escaped value>…` from (tag, raw value) pairs.
pub fn stat_name(metric: &str, tags: &[(&str, &str)]) -> String {
    let mut name = String::with_capacity(64);
    name.push_str(metric);
    for (tag, value) in tags {
        name.push('.');
        name.push_str(tag);
        name.push('.');
        name.push_str(&escape(value));
    }
    name
}

/// The tag-extraction regex of `tag` for stats named by [`stat_name`] under
/// Envoy's `wasmcustom.` namespace: it skips whole `.<tag>.<value>` pairs from
/// the metric name on, so a value equal to a tag name cannot confuse it; group 1
/// (`.<tag>.<value>`) is cut from the name, group 2 is the label value.
pub fn tag_regex(tag: &str) -> String {
    format!(r"^wasmcustom\.(?:tally|kafka)_[a-z_]+(?:\.[a-z]+\.[^.]+)*?(\.{tag}\.([^.]+))(?:\.|$)")
}

/// The `stats_config` YAML (top level of the Envoy bootstrap) that makes the labels.
pub fn stats_config_yaml() -> String {
    let mut y = String::from("stats_config:\n  stats_tags:\n");
    for tag in TAGS {
        let regex = tag_regex(tag).replace('\\', "\\\\");
        let _ = writeln!(y, "  - tag_name: {tag}\n    regex: \"{regex}\"");
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_lite::Regex;

    /// Applies the tag regexes the way Envoy does: each on the full name; group 1
    /// is cut out, group 2 is the value.
    fn extract(name: &str) -> (String, Vec<(String, String)>) {
        let mut cuts = Vec::new();
        let mut tags = Vec::new();
        for tag in TAGS {
            let re = Regex::new(&tag_regex(tag)).unwrap();
            if let Some(c) = re.captures(name) {
                let g1 = c.get(1).unwrap();
                cuts.push((g1.start(), g1.end()));
                tags.push((
                    tag.to_string(),
                    unescape(c.get(2).unwrap().as_str()).unwrap(),
                ));
            }
        }
        cuts.sort();
        let mut rest = String::new();
        let mut at = 0;
        for (s, e) in cuts {
            rest.push_str(&name[at..s]);
            at = e;
        }
        rest.push_str(&name[at..]);
        (rest, tags)
    }

    #[test]
    fn tag_regexes_round_trip_every_label() {
        let tricky = ["principal", "topic", "a.b", "x=y,z", "", "cluster"];
        for p in tricky {
            for t in tricky {
                let name = format!(
                    "wasmcustom.{}",
                    stat_name(
                        "tally_bytes",
                        &[
                            ("cluster", "topic"),
                            ("principal", p),
                            ("source", "mtls"),
                            ("topic", t),
                            ("direction", "produced")
                        ]
                    )
                );
                let (rest, tags) = extract(&name);
                assert_eq!(rest, "wasmcustom.tally_bytes", "{name}");
                let want: Vec<(String, String)> = [
                    ("cluster", "topic"),
                    ("principal", p),
                    ("source", "mtls"),
                    ("topic", t),
                    ("direction", "produced"),
                ]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
                assert_eq!(tags, want, "{name}");
            }
        }
        let (rest, tags) = extract(&format!(
            "wasmcustom.{}",
            stat_name(
                "kafka_server_brokertopicmetrics_bytesin_total",
                &[("principal", "CN=a"), ("topic", "t.1")]
            )
        ));
        assert_eq!(
            rest,
            "wasmcustom.kafka_server_brokertopicmetrics_bytesin_total"
        );
        assert_eq!(tags.len(), 2);
    }

    #[test]
    fn docs_ship_exactly_this_stats_config() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metering.md"))
                .unwrap_or_default();
        let snippet = format!("```yaml\n{}```", stats_config_yaml());
        assert!(
            doc.contains(&snippet),
            "docs/metering.md must contain:\n{snippet}"
        );
    }

    #[test]
    fn stats_config_is_yaml_with_every_tag() {
        let y = stats_config_yaml();
        for tag in TAGS {
            assert!(y.contains(&format!("tag_name: {tag}")));
        }
        assert!(y.contains(r"^wasmcustom\\.(?:tally|kafka)_"));
    }
}
