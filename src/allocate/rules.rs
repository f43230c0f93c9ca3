//! The rules file (TOML): which allocation method applies to which product and
//! line type, with weights, as a fallback chain.
//!
//! ```toml
//! credits_unallocated = true                 # negative lines go to `unallocated`
//! [resource_owners]                          # owner of record per resource
//! "lcc-456" = "lkc-123"
//!
//! [[rule]]
//! products = ["kafka"]
//! line_types = ["KafkaNumCKUs", "KafkaCKUs"]
//! chain = [
//!   { method = "weighted", components = [
//!       { metrics = ["produced_bytes", "consumed_bytes"], weight = "0.7" },
//!       { even = true, weight = "0.3" } ] },
//!   { method = "even_active" },
//!   { method = "even_period" },
//!   { method = "resource_owner" },
//! ]
//! ```
//!
//! Rules are tried in file order; the first whose `products` (lower-case; a
//! trailing `*` matches a prefix; empty matches any) and `line_types` (empty
//! matches any; case-insensitive) match a cost line applies, else
//! `default_chain`. Every chain implicitly ends with `unallocated`. A rule may
//! pin the entity `level` (`topic` for WarpStream's per-topic chargebacks);
//! otherwise the session's level applies. Weights are decimals (strings or
//! numbers); a weighted mix must sum to 1 and fixed shares to 100 (percent).

use crate::error::Error;
use crate::model::EntityLevel;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// One step of a fallback chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Fixed percentages per owner (must total 100).
    Fixed {
        /// Owner → percent.
        #[serde(deserialize_with = "de_decimal_map")]
        shares: BTreeMap<String, Decimal>,
    },
    /// Proportional to the sum of these usage metrics per entity.
    UsageRatio {
        /// Metric names (usage CSV `metric` values).
        metrics: Vec<String>,
    },
    /// A weighted mix of usage ratios and an even split over active entities.
    Weighted {
        /// The components; weights sum to 1.
        components: Vec<Component>,
    },
    /// Even split over the entities active on the resource in the bucket.
    EvenActive,
    /// Even split over the entities seen on the resource in the whole period.
    EvenPeriod,
    /// Proportional to how long each entity existed (WarpStream cluster minutes).
    Lifetime {
        /// The metric holding each entity's lifetime in the bucket.
        #[serde(default = "lifetime_metric")]
        metric: String,
    },
    /// Storage: each entity's write bytes × retention (WarpStream Kafka topics).
    Storage {
        /// Bytes written.
        #[serde(default = "write_metric")]
        write_metric: String,
        /// Retention (seconds).
        #[serde(default = "retention_metric")]
        retention_metric: String,
    },
    /// The owner of record named by the bill line or by `[resource_owners]`.
    OwnerOfRecord,
    /// The line's environment (Flink → environment).
    Environment,
    /// The resource itself (`owner_id` = resource id).
    ResourceOwner,
    /// In proportion to each entity's total from all other lines of the bucket
    /// on the same bill ([`crate::model::BillColumns::bill_key`]).
    AllocatedLast,
    /// Not allocated: the bucket's `unallocated` row.
    Unallocated,
}

/// One component of a weighted mix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Usage metrics summed per entity (ignored when `even`).
    #[serde(default)]
    pub metrics: Vec<String>,
    /// An even split over active entities instead of a usage ratio.
    #[serde(default)]
    pub even: bool,
    /// This component's weight (the weights sum to 1).
    #[serde(deserialize_with = "de_decimal")]
    pub weight: Decimal,
}

/// A rule: which lines, which chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Products matched (lower-case; trailing `*` = prefix; empty = any).
    #[serde(default)]
    pub products: Vec<String>,
    /// Line types matched (case-insensitive; empty = any).
    #[serde(default)]
    pub line_types: Vec<String>,
    /// Entity level for this rule (default: the session's).
    #[serde(default)]
    pub level: Option<EntityLevel>,
    /// The fallback chain.
    pub chain: Vec<Step>,
}

/// A complete rules file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Negative lines (credits, refunds) go to `unallocated` whatever the rule.
    #[serde(default = "yes")]
    pub credits_unallocated: bool,
    /// Owner of record per resource id (e.g. Connect cluster → Kafka cluster).
    #[serde(default)]
    pub resource_owners: BTreeMap<String, String>,
    /// The chain for lines no rule matches.
    #[serde(default = "default_chain")]
    pub default_chain: Vec<Step>,
    /// The rules, tried in order.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

fn yes() -> bool {
    true
}
fn lifetime_metric() -> String {
    "lifetime_seconds".into()
}
fn write_metric() -> String {
    "uncompressed_bytes_written".into()
}
fn retention_metric() -> String {
    "retention_seconds".into()
}
fn default_chain() -> Vec<Step> {
    vec![
        Step::UsageRatio {
            metrics: vec!["produced_bytes".into(), "consumed_bytes".into()],
        },
        Step::EvenActive,
        Step::EvenPeriod,
        Step::ResourceOwner,
    ]
}

/// A decimal given as a string, integer or float (rules TOML, the options'
/// JSON; floats through their shortest text, so `0.7` is exactly 0.7), in the
/// readers' one spelling of numbers.
pub(crate) fn de_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Text(String),
        Int(i64),
        Float(f64),
    }
    let text = match Num::deserialize(d)? {
        Num::Text(s) => s,
        Num::Int(i) => i.to_string(),
        Num::Float(f) => f.to_string(),
    };
    crate::money::parse_amount("weight", &text).map_err(serde::de::Error::custom)
}

fn de_decimal_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Decimal>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "de_decimal")] Decimal);
    let map = BTreeMap::<String, Wrap>::deserialize(d)?;
    Ok(map.into_iter().map(|(k, Wrap(v))| (k, v)).collect())
}

/// The default rules: Confluent's published product table (seed 001), and a
/// WarpStream set allocating to topics (seed 002).
pub const DEFAULT_RULES_TOML: &str = include_str!("default_rules.toml");

impl Rules {
    /// Parses and validates a rules file.
    pub fn from_toml(text: &str) -> Result<Rules, Error> {
        let rules: Rules =
            toml::from_str(text).map_err(|e| Error::config(format!("rules file: {e}")))?;
        rules.validate()?;
        Ok(rules)
    }

    /// The default rules.
    pub fn defaults() -> Result<Rules, Error> {
        Rules::from_toml(DEFAULT_RULES_TOML)
    }

    /// Checks weights and shares, and that every owner named is one.
    pub fn validate(&self) -> Result<(), Error> {
        // An empty owner would be written out and refused when read back.
        if let Some(resource) = self
            .resource_owners
            .iter()
            .find_map(|(resource, owner)| owner.trim().is_empty().then_some(resource))
        {
            return Err(Error::config(format!(
                "resource_owners: resource `{resource}` is given an empty owner"
            )));
        }
        let chains = self
            .rules
            .iter()
            .map(|r| &r.chain)
            .chain(std::iter::once(&self.default_chain));
        for (index, chain) in chains.enumerate() {
            if chain.is_empty() {
                return Err(Error::config(format!(
                    "rule {} has an empty chain",
                    index + 1
                )));
            }
            for step in chain {
                validate_step(index, step)?;
            }
        }
        Ok(())
    }

    /// The rule for a line (None: the default chain).
    pub fn find(&self, product: &str, line_type: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|rule| rule.matches(product, line_type))
    }
}

fn validate_step(index: usize, step: &Step) -> Result<(), Error> {
    let rule = index + 1;
    match step {
        Step::Fixed { shares } => {
            if shares.keys().any(|owner| owner.trim().is_empty()) {
                return Err(Error::config(format!(
                    "rule {rule}: a fixed share names an empty owner; every share needs an owner id"
                )));
            }
            let total: Decimal = shares.values().copied().sum();
            if total != Decimal::ONE_HUNDRED || shares.values().any(|v| v.is_sign_negative()) {
                return Err(Error::config(format!(
                    "rule {rule}: fixed shares must be non-negative percentages totalling 100, not {total}"
                )));
            }
        }
        Step::Weighted { components } => {
            let total: Decimal = components.iter().map(|c| c.weight).sum();
            if total != Decimal::ONE || components.iter().any(|c| c.weight.is_sign_negative()) {
                return Err(Error::config(format!(
                    "rule {rule}: weighted components must have non-negative weights summing to 1, not {total}"
                )));
            }
            if components.iter().any(|c| !c.even && c.metrics.is_empty()) {
                return Err(Error::config(format!(
                    "rule {rule}: a weighted component needs metrics or even = true"
                )));
            }
        }
        Step::UsageRatio { metrics } if metrics.is_empty() => {
            return Err(Error::config(format!(
                "rule {rule}: usage_ratio needs at least one metric"
            )));
        }
        _ => {}
    }
    Ok(())
}

impl Rule {
    /// Whether this rule applies to a line of `product` / `line_type`, names
    /// compared whatever their case and word separators: the Billing API writes `KAFKA_NUM_CKUS` where the
    /// cost-allocation export writes `KafkaNumCKUs`.
    pub fn matches(&self, product: &str, line_type: &str) -> bool {
        let product_ok = self.products.is_empty()
            || self.products.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => starts_with_folded(product, prefix),
                None => same_folded(p, product),
            });
        let line_ok =
            self.line_types.is_empty() || self.line_types.iter().any(|l| same_folded(l, line_type));
        product_ok && line_ok
    }
}

/// A name's bytes as rules compare them: ASCII lowercase, without the `_`, `-`
/// and spaces that separate its words.
fn folded(name: &str) -> impl Iterator<Item = u8> + '_ {
    name.bytes()
        .filter(|b| !matches!(b, b'_' | b'-' | b' '))
        .map(|b| b.to_ascii_lowercase())
}

/// Whether `a` and `b` are the same name, [`folded`].
fn same_folded(a: &str, b: &str) -> bool {
    folded(a).eq(folded(b))
}

/// Whether `name` starts with `prefix`, both [`folded`].
fn starts_with_folded(name: &str, prefix: &str) -> bool {
    let mut name = folded(name);
    folded(prefix).all(|p| name.next() == Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_whatever_their_case_and_separators() {
        // (rule's name, line's name, matches)
        let cases = [
            ("KafkaNumCKUs", "KAFKA_NUM_CKUS", true),
            ("KafkaNetworkWrite", "kafka-network-write", true),
            ("KafkaNetworkWrite", "KafkaNetworkRead", false),
            ("KafkaBase", "KafkaBases", false),
            ("schema_registry", "SCHEMA REGISTRY", true),
        ];
        for (rule, line, expected) in cases {
            assert_eq!(same_folded(rule, line), expected, "{rule} / {line}");
        }
        let prefixes = [
            ("support*", "SUPPORT_CLOUD_BASIC", true),
            ("support*", "sup", false),
            ("cluster_link*", "ClusterLinkingPerLink", true),
            ("cluster_link*", "CLUSTER_LIN", false),
            ("cluster_link*", "CLUSTER_LINK_READ", true),
        ];
        for (prefix, name, expected) in prefixes {
            let prefix = prefix.trim_end_matches('*');
            assert_eq!(
                starts_with_folded(name, prefix),
                expected,
                "{prefix} / {name}"
            );
        }
        let rules = Rules::defaults().unwrap();
        let method = |p: &str, l: &str| rules.find(p, l).map(|r| r.chain[0].clone());
        assert_eq!(
            method("KAFKA", "KAFKA_NETWORK_WRITE"),
            method("kafka", "KafkaNetworkWrite")
        );
        assert_eq!(
            method("KAFKA", "KAFKA_NUM_CKUS"),
            method("kafka", "KafkaNumCKUs")
        );
    }

    #[test]
    fn defaults_parse_and_match_the_seed_table() {
        let rules = Rules::defaults().unwrap();
        let method = |p: &str, l: &str| rules.find(p, l).map(|r| r.chain[0].clone());
        assert!(matches!(
            method("kafka", "KafkaNetworkWrite"),
            Some(Step::UsageRatio { .. })
        ));
        assert!(matches!(
            method("kafka", "KafkaNumCKUs"),
            Some(Step::Weighted { .. })
        ));
        assert!(matches!(
            method("kafka", "KafkaStorage"),
            Some(Step::EvenActive)
        ));
        assert!(matches!(
            method("connect", "ConnectNumTasks"),
            Some(Step::OwnerOfRecord)
        ));
        assert!(matches!(
            method("flink", "FlinkNumCFUs"),
            Some(Step::Environment)
        ));
        assert!(matches!(
            method("support", "Support"),
            Some(Step::AllocatedLast)
        ));
        assert!(matches!(
            method("tableflow", "TableflowStorage"),
            Some(Step::Unallocated)
        ));
    }

    #[test]
    fn bad_weights_are_refused() {
        let bad = r#"
[[rule]]
products = ["kafka"]
chain = [{ method = "weighted", components = [{ even = true, weight = 0.5 }, { metrics = ["a"], weight = "0.4" }] }]
"#;
        let err = Rules::from_toml(bad).unwrap_err().to_string();
        assert!(err.contains("sum"), "{err}");
        let fixed = r#"
[[rule]]
chain = [{ method = "fixed", shares = { a = 60, b = "30" } }]
"#;
        assert!(Rules::from_toml(fixed).is_err());
        assert!(Rules::from_toml("[[rule]]\nchain = [{ method = \"nope\" }]").is_err());
    }

    #[test]
    fn weights_are_numbers_in_the_readers_one_spelling() {
        let fixed = |a: &str| {
            format!(
                "[[rule]]\nchain = [{{ method = \"fixed\", shares = {{ a = {a}, b = 50 }} }}]\n"
            )
        };
        for good in ["50", "50.0", "\"50\"", "\"5e1\"", "\" 50 \""] {
            assert!(Rules::from_toml(&fixed(good)).is_ok(), "{good}");
        }
        for bad in ["5_0", "+50", "$50", "50.", "50%"] {
            let err = Rules::from_toml(&fixed(&format!("\"{bad}\""))).unwrap_err();
            let reason = format!("\nweight: `{bad}` is not a decimal number\n");
            assert!(err.to_string().ends_with(&reason), "{bad}: {err}");
        }
    }

    #[test]
    fn an_empty_owner_is_refused() {
        let fixed = |owner: &str| {
            format!("[[rule]]\nchain = [{{ method = \"fixed\", shares = {{ \"{owner}\" = 50, b = 50 }} }}]\n")
        };
        let empty_share =
            "invalid configuration: rule 1: a fixed share names an empty owner; every share needs an owner id";
        let cases = [
            (fixed(""), empty_share),
            (fixed(" "), empty_share),
            (
                "[resource_owners]\nlcc-1 = \"\"\n".to_string(),
                "invalid configuration: resource_owners: resource `lcc-1` is given an empty owner",
            ),
        ];
        for (text, want) in &cases {
            let err = Rules::from_toml(text).unwrap_err();
            assert_eq!(err.to_string(), *want, "{text}");
        }
        assert!(Rules::from_toml(&fixed("a")).is_ok());
    }
}
