//! Report features: Confluent export roll-up by team and organization,
//! unallocated policies, entity filters, reconciliation against an invoice,
//! custom ranges, active-fraction proration, options from JSON.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{report_of, run_bytes};
use rust_decimal::Decimal;
use std::str::FromStr;
use tally::model::EntityLevel;
use tally::report::UnallocatedPolicy;
use tally::session::{Options, Session};
use tally::time::Granularity;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const EXPORT: &str = "interval_start,principal,environment,resource,product,metric,unit,chargeback_cost,original_amount,usage_share\n\
2026-04-01T00:00:00Z,sa-a,env-1,lkc-1,kafka,KafkaNetworkWrite,GB,6.00,9.00,0.666667\n\
2026-04-01T00:00:00Z,sa-b,env-1,lkc-1,kafka,KafkaNetworkWrite,GB,3.00,9.00,0.333333\n\
2026-04-02T00:00:00Z,sa-a,env-1,lkc-1,kafka,KafkaNetworkWrite,GB,1.00,1.00,1.0\n\
2026-04-01T00:00:00Z,unallocated,,,,,USD,-2.00,-2.00,0\n";

const CROSSWALK: &str =
    "org_id,owner_id,team,cost_center\norg-1,sa-a,alpha,CC-1\n,sa-b,beta,CC-2\n";

fn export_report(options: Options) -> tally::report::Report {
    let files = [
        ("export.csv", "org-1", EXPORT),
        ("crosswalk.csv", "", CROSSWALK),
    ];
    report_of(options, &files)
}

/// Each team's name, unallocated share and total.
fn team_totals(report: &tally::report::Report) -> Vec<[String; 3]> {
    let amounts = |t: &tally::report::TeamSummary| [t.unallocated, t.total].map(|a| a.to_string());
    report
        .teams
        .iter()
        .map(|t| {
            let [unallocated, total] = amounts(t);
            [t.team.clone(), unallocated, total]
        })
        .collect()
}

#[test]
fn export_rolls_up_by_team_and_org_with_shared_unallocated() {
    let report = export_report(Options::default());
    assert_eq!(
        team_totals(&report),
        [
            ["alpha", "0.00", "7.00"],
            ["beta", "0.00", "3.00"],
            ["shared", "-2.00", "-2.00"]
        ]
        .map(|t| t.map(String::from))
    );
    // The owners by name: the page shows each principal's team from these.
    let owners: Vec<(&str, Vec<&str>)> = report
        .teams
        .iter()
        .map(|t| {
            let names = t.owner_ids.iter().map(String::as_str).collect();
            (t.team.as_str(), names)
        })
        .collect();
    assert_eq!(
        owners,
        [
            ("alpha", vec!["sa-a"]),
            ("beta", vec!["sa-b"]),
            ("shared", vec![])
        ]
    );
    assert_eq!(report.organizations.len(), 1);
    assert_eq!(report.organizations[0].org_id, "org-1");
    assert_eq!(report.organizations[0].total, d("8.00"));
    // Monthly buckets: both days' rows in one April bucket, one row per owner and line.
    let a: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.owner_id == "sa-a")
        .collect();
    assert_eq!(
        (a.len(), a[0].chargeback_cost, a[0].line.original_amount),
        (1, d("7.00"), d("10.00"))
    );
}

#[test]
fn unallocated_pro_rata_and_invoice_reconciliation() {
    let options = Options {
        unallocated_policy: UnallocatedPolicy::ProRata,
        invoice_subtotal: Some(d("9.50")),
        ..Options::default()
    };
    let report = export_report(options);
    let teams: Vec<(String, String)> = report
        .teams
        .iter()
        .map(|t| (t.team.clone(), t.total.to_string()))
        .collect();
    // -2.00 over alpha 7 : beta 3 → -1.40 / -0.60.
    assert_eq!(
        teams,
        [
            ("alpha".into(), "5.60".into()),
            ("beta".into(), "2.40".into())
        ]
    );
    let r = &report.reconciliation;
    assert_eq!(
        (r.bill_total, r.credits_total, r.difference),
        (d("8.00"), d("-2.00"), Some(d("1.50")))
    );
    assert!(!r.balanced);
    assert!(
        r.explanations.iter().any(|e| e.contains("tax")),
        "{:?}",
        r.explanations
    );
}

#[test]
fn pro_rata_shares_each_bills_unallocated_by_the_teams_on_that_bill() {
    // Two FOCUS invoices read together, each with a credit, and a credit alone
    // on a third invoice. AWS's -10.00 goes to the teams AWS charged (alpha 60 :
    // beta 40), Microsoft's -9.00 to gamma alone; the lone credit, on a bill
    // no team has charges on, by the organization's totals (60 : 40 : 50).
    // Shared by the organization's totals, all -22.00 went 60 : 40 : 50 (alpha
    // -8.80, beta -5.87, gamma -7.33), so AWS credits lowered gamma's Azure bill.
    let start = "2026-05-01T00:00:00Z,2026-05-02T00:00:00Z,USD";
    let bill = format!(
        "BilledCost,ChargePeriodStart,ChargePeriodEnd,BillingCurrency,ChargeCategory,ResourceId,InvoiceIssuerName,InvoiceId,BillingAccountId\n\
         60.00,{start},Usage,vm-a,AWS,INV-A,111\n\
         40.00,{start},Usage,vm-b,AWS,INV-A,111\n\
         50.00,{start},Usage,vm-c,Microsoft,INV-M,222\n\
         -10.00,{start},Credit,,AWS,INV-A,111\n\
         -9.00,{start},Credit,,Microsoft,INV-M,222\n\
         -3.00,{start},Credit,,AWS,INV-C,111\n"
    );
    let crosswalk = "owner_id,team\nvm-a,alpha\nvm-b,beta\nvm-c,gamma\n";
    let options = Options {
        unallocated_policy: UnallocatedPolicy::ProRata,
        ..Options::default()
    };
    let files = [
        ("bill.csv", "", bill.as_str()),
        ("crosswalk.csv", "", crosswalk),
    ];
    let report = report_of(options, &files);
    assert_eq!(
        team_totals(&report),
        [
            ["alpha", "-7.20", "52.80"],
            ["beta", "-4.80", "35.20"],
            ["gamma", "-10.00", "40.00"]
        ]
        .map(|t| t.map(String::from))
    );
    // The engine keeps one unallocated row per bill, each with its own amount.
    let mut pools: Vec<Decimal> = report
        .rows
        .iter()
        .filter(|r| r.owner_id == "unallocated")
        .map(|r| r.chargeback_cost)
        .collect();
    pools.sort();
    assert_eq!(pools, [d("-10.00"), d("-9.00"), d("-3.00")]);
}

#[test]
fn entity_filters_min_total_and_truncation() {
    let mut options = Options::default();
    options.filters.min_total = Some(d("3.50"));
    options.filters.entity_kind = Some(EntityLevel::Principal);
    let report = export_report(options.clone());
    let cluster = report
        .clusters
        .iter()
        .find(|c| c.cluster_id == "lkc-1")
        .unwrap();
    assert_eq!(
        cluster
            .entities
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        ["sa-a"]
    );
    assert_eq!((cluster.below_min_total, cluster.truncated), (1, false));
    options.filters.min_total = None;
    options.filters.max_entities_per_cluster = 1;
    let report = export_report(options);
    let cluster = report
        .clusters
        .iter()
        .find(|c| c.cluster_id == "lkc-1")
        .unwrap();
    assert!(cluster.truncated);
    assert_eq!(cluster.entities[0].team, "alpha");
}

/// The WarpStream writer's request filters from the entity view's, for the
/// page and the command line alike. WarpStream's chargebacks are topic-level
/// results (topics, subjects, tables): the level `topic` keeps them all, as
/// no kind does, and `principal` is refused, as is a limit WarpStream's API
/// refuses. Before, any level became WarpStream's kind `topic` (principal
/// gave topic's file; topic dropped subjects and tables), and a limit over
/// 5000 went through to fail when the file was written.
#[test]
fn entity_filters_as_warpstream_request_filters() {
    use tally::report::Filters;
    const PRINCIPAL: &str = "invalid configuration: entity_kind principal has no WarpStream \
        output: WarpStream chargebacks hold topic-level results (topics, subjects, tables); \
        ask for entity_kind topic, or none";
    let limit = |n: &str| {
        format!(
            "invalid configuration: max_entities_per_cluster must be between 1 and 5000 for \
             the WarpStream output (WarpStream's own maximum), not {n}"
        )
    };
    // (entity kind, min total, max per cluster) → (entity_kind, min_total, max) or the error
    type Given = (Option<EntityLevel>, Option<&'static str>, usize);
    type Written = Result<(Option<&'static str>, Option<&'static str>, u32), String>;
    let topic = Some(EntityLevel::Topic);
    let principal = Some(EntityLevel::Principal);
    let cases: [(Given, Written); 9] = [
        ((None, None, 500), Ok((None, None, 500))),
        ((topic, Some("0.10"), 2), Ok((None, Some("0.10"), 2))),
        ((topic, None, 5000), Ok((None, None, 5000))),
        ((None, None, 1), Ok((None, None, 1))),
        ((principal, None, 500), Err(PRINCIPAL.to_string())),
        ((principal, None, 5001), Err(PRINCIPAL.to_string())),
        ((topic, None, 5001), Err(limit("5001"))),
        ((None, None, 0), Err(limit("0"))),
        (
            (None, None, usize::MAX),
            Err(limit(&usize::MAX.to_string())),
        ),
    ];
    for ((kind, min_total, max), expected) in cases {
        let filters = Filters {
            entity_kind: kind,
            min_total: min_total.map(d),
            max_entities_per_cluster: max,
        };
        let written = filters.warpstream_options().map_err(|e| e.to_string());
        let min_total = written
            .as_ref()
            .ok()
            .and_then(|o| o.min_total.map(|m| m.to_string()));
        let got = written
            .as_ref()
            .map(|o| {
                (
                    o.entity_kind.as_deref(),
                    min_total.as_deref(),
                    o.max_entities_per_cluster,
                )
            })
            .map_err(String::clone);
        assert_eq!(got, expected, "{filters:?}");
    }
}

/// The page's minimum total and invoice subtotal (options JSON) are read in
/// the one spelling of numbers the command line's `--min-total` and
/// `--invoice-subtotal` take: `+5` and `1_000` were taken for 5 and 1000 from
/// the page and refused by the command line.
#[test]
fn the_pages_amounts_take_the_command_lines_spelling() {
    let cases: [(&str, Option<Option<&str>>); 10] = [
        (r#""0.10""#, Some(Some("0.10"))),
        (r#"" 0.10 ""#, Some(Some("0.10"))),
        ("0.1", Some(Some("0.1"))),
        ("5", Some(Some("5"))),
        (r#""1e1""#, Some(Some("10"))),
        ("null", Some(None)),
        (r#""+5""#, None),
        (r#""1_000""#, None),
        (r#""$5.00""#, None),
        (r#""5.""#, None),
    ];
    type Field = fn(&Options) -> Option<rust_decimal::Decimal>;
    let fields: [(&str, &str, Field); 2] = [
        ("min_total", r#"{"filters":{"min_total":X}}"#, |o| {
            o.filters.min_total
        }),
        ("invoice_subtotal", r#"{"invoice_subtotal":X}"#, |o| {
            o.invoice_subtotal
        }),
    ];
    for (name, template, field) in fields {
        for (given, expected) in cases {
            let json = template.replace('X', given);
            let read = Options::from_json(&json)
                .ok()
                .map(|o| field(&o).map(|m| m.to_string()));
            assert_eq!(
                read.as_ref().map(|m| m.as_deref()),
                expected,
                "{name} {given}"
            );
        }
    }
}

const BILL: &str =
    "start_date,end_date,product,line_type,resource_id,environment_id,amount,active_fraction\n";
const USAGE: &str =
    "version,bucket_start,bucket_end,cluster,principal,principal_source,topic,metric,value\n\
1,2026-04-05T00:00:00Z,2026-04-05T01:00:00Z,lkc-1,sa-a,mtls,t,produced_bytes,10\n";

#[test]
fn custom_range_flags_partial_buckets_and_reports_what_is_outside() {
    let bill = format!("{BILL}2026-04-01,2026-04-11,kafka,KafkaStorage,lkc-1,env-1,10.00,\n");
    let options = Options {
        granularity: Granularity::Weekly,
        range: Some(tally::session::parse_range("2026-04-03", "2026-04-10").unwrap()),
        ..Options::default()
    };
    let (report, _) = run_bytes(
        options,
        &[
            ("bill.csv", bill.into_bytes()),
            ("usage.csv", USAGE.as_bytes().to_vec()),
        ],
        64,
    );
    // 10 days at 1.00/day; 7 inside the range: Apr 3-5 (week of Mar 30, partial), Apr 6-9 (partial).
    let buckets: Vec<(String, bool, String)> = report
        .buckets
        .iter()
        .map(|b| {
            (
                b.bucket_start.to_string(),
                b.partial,
                b.bill_total.to_string(),
            )
        })
        .collect();
    assert_eq!(
        buckets,
        [
            ("2026-03-30T00:00:00Z".into(), true, "3.00".into()),
            ("2026-04-06T00:00:00Z".into(), true, "4.00".into())
        ]
    );
    assert_eq!(report.reconciliation.outside_range, d("3.00"));
    assert!(report.rows.iter().all(|r| r.line.partial_bucket));
}

#[test]
fn active_fraction_prorates_onto_buckets_with_activity() {
    let bill = format!("{BILL}2026-04-01,2026-04-11,kafka,KafkaStorage,lkc-1,env-1,10.00,0.1\n");
    let options = Options {
        granularity: Granularity::Daily,
        ..Options::default()
    };
    let (report, _) = run_bytes(
        options,
        &[
            ("bill.csv", bill.into_bytes()),
            ("usage.csv", USAGE.as_bytes().to_vec()),
        ],
        64,
    );
    assert_eq!(report.rows.len(), 1);
    assert_eq!(
        (
            report.rows[0].line.bucket_start.to_string().as_str(),
            report.rows[0].chargeback_cost
        ),
        ("2026-04-05T00:00:00Z", d("10.00"))
    );
}

#[test]
fn options_come_from_the_page_as_json() {
    let json = r#"{"granularity":"weekly","range":["2026-04-01","2026-05-01"],"precision":4,
        "unallocated_policy":"pro_rata","invoice_subtotal":"12.5","entity_level":"topic",
        "filters":{"entity_kind":"topic","min_total":"1","max_entities_per_cluster":10},
        "focus_cost":"effective"}"#;
    let options = Options::from_json(json).unwrap();
    assert_eq!(options.granularity, Granularity::Weekly);
    assert_eq!(options.precision, 4);
    assert_eq!(options.invoice_subtotal, Some(d("12.5")));
    assert_eq!(options.filters.max_entities_per_cluster, 10);
    assert_eq!(
        options.focus_cost,
        tally::formats::focus::CostColumn::Effective
    );
    assert!(Options::from_json(r#"{"focus_cost":"amortized"}"#).is_err());
    assert!(Options::from_json(r#"{"range":["2026-05-01","2026-04-01"]}"#).is_err());
    assert!(Options::from_json(r#"{"bogus":1}"#).is_err());
    let defaults = Options::from_json("{}").unwrap();
    assert_eq!(defaults, Options::default());
}

#[test]
fn rules_can_be_replaced_and_bad_rules_refused() {
    let mut session = Session::new(Options::default());
    assert!(session.set_rules_toml("[[rule]]\nchain = []").is_err());
    let rules = r#"
[resource_owners]
"lcc-9" = "lkc-1"
[[rule]]
products = ["connect"]
chain = [{ method = "owner_of_record" }]
[[rule]]
chain = [{ method = "fixed", shares = { "team-a" = 75, "team-b" = 25 } }]
"#;
    session.set_rules_toml(rules).unwrap();
    let bill = format!("{BILL}2026-04-01,2026-05-01,connect,ConnectNumTasks,lcc-9,env-1,4.00,\n2026-04-01,2026-05-01,kafka,KafkaBase,lkc-1,env-1,1.00,\n");
    let id = session.begin_file("bill.csv", "");
    session.feed(id, bill.as_bytes()).unwrap();
    session.end_file(id).unwrap();
    let report = session.allocate().unwrap();
    let got: Vec<(String, String)> = report
        .rows
        .iter()
        .map(|r| (r.owner_id.to_string(), r.chargeback_cost.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("lkc-1".into(), "4.00".into()),
            ("team-a".into(), "0.75".into()),
            ("team-b".into(), "0.25".into())
        ]
    );
    assert!(Session::default_rules_toml().contains("KafkaNumCKUs"));
}

#[test]
fn a_bad_pattern_row_is_rejected_and_an_empty_team_capture_leaves_the_owner_unmatched() {
    let export =
        "interval_start,principal,environment,resource,product,metric,unit,chargeback_cost\n\
        2026-04-01T00:00:00Z,sa-a,env-1,lkc-1,kafka,KafkaNetworkWrite,GB,6.00\n\
        2026-04-01T00:00:00Z,sa-b,env-1,lkc-1,kafka,KafkaNetworkWrite,GB,3.00\n";
    let crosswalk = "owner_id,team,cost_center,pattern_on,pattern\n\
        ,bad,CC4,principal,^sa-(\n\
        ,,CC6,principal,^sa-(?P<teams>b)\n\
        ,,CC5,principal,^sa-(?P<team>[0-9]*)\n\
        sa-b,beta,CC2,,\n";
    let mut session = Session::new(Options::default());
    let mut summaries = Vec::new();
    for (name, text) in [("export.csv", export), ("crosswalk.csv", crosswalk)] {
        let id = session.begin_file(name, "");
        session.feed(id, text.as_bytes()).unwrap();
        summaries.push(session.end_file(id).unwrap());
    }
    let rejections: Vec<(u64, &str, &str)> = summaries[1]
        .rejections
        .iter()
        .map(|r| (r.line, r.column.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        rejections,
        [
            (
                2,
                "pattern",
                "invalid regular expression: found open group without closing ')'"
            ),
            (3, "team", "empty, and the pattern has no `team` capture"),
        ]
    );
    let report = session.allocate().unwrap();
    let teams: Vec<(&str, &str, String)> = report
        .teams
        .iter()
        .map(|t| (t.team.as_str(), t.cost_center.as_str(), t.total.to_string()))
        .collect();
    assert_eq!(
        teams,
        [
            ("(unmatched)", "", "6.00".into()),
            ("beta", "CC2", "3.00".into())
        ]
    );
    assert_eq!(report.unmatched_owners, ["sa-a"]);
}

/// Each team's name, cost center, total and owners.
fn team_rows(report: &tally::report::Report) -> Vec<(String, String, String, usize)> {
    report
        .teams
        .iter()
        .map(|t| {
            let total = t.total.to_string();
            (t.team.clone(), t.cost_center.clone(), total, t.owners)
        })
        .collect()
}

#[test]
fn crosswalk_conflicts_are_refused_whatever_the_row_order() {
    let export =
        "interval_start,principal,environment,resource,product,metric,unit,chargeback_cost\n\
        2026-04-01T00:00:00Z,sa-a,env-1,lkc-1,kafka,KafkaNetworkWrite,GB,6.00\n\
        2026-04-01T00:00:00Z,sa-b,env-1,lkc-1,kafka,KafkaNetworkWrite,GB,3.00\n\
        2026-04-01T00:00:00Z,sa-c,env-1,lkc-1,kafka,KafkaNetworkWrite,GB,1.00\n";
    let header = "org_id,owner_id,team,cost_center,pattern_on,pattern\n";
    let team = |name: &str, cc: &str, total: &str, owners: usize| {
        (name.to_string(), cc.to_string(), total.to_string(), owners)
    };
    // (crosswalk rows, teams, rows refused, notes)
    let cases = [
        // An owner mapped to two teams goes unmatched, not to the pattern.
        (
            vec![
                "org-1,sa-a,payments,CC1,,",
                "org-1,sa-a,analytics,CC2,,",
                ",,,CC3,principal,^sa-(?P<team>[a-z]+)$",
            ],
            vec![
                team("(unmatched)", "", "6.00", 1),
                team("b", "CC3", "3.00", 1),
                team("c", "CC3", "1.00", 1),
            ],
            2,
            vec!["owner `sa-a` in organization `org-1` is mapped to different teams: `payments` (cw.csv:2), `analytics` (cw.csv:3); those rows are refused and the owner goes to (unmatched)"],
        ),
        // The same mapping twice is no conflict; another organization's neither.
        (
            vec![",sa-a,x,,,", ",sa-a,x,,,", "org-2,sa-b,y,,,"],
            vec![team("(unmatched)", "", "4.00", 2), team("x", "", "6.00", 1)],
            0,
            vec![],
        ),
        // A team given two cost centers: those rows refused; `Pay` is another team.
        (
            vec![",sa-a,pay,CC1,,", ",sa-b,pay,CC2,,", ",sa-c,Pay,CC1,,"],
            vec![team("(unmatched)", "", "9.00", 2), team("Pay", "CC1", "1.00", 1)],
            2,
            vec!["team `pay` is given different cost centers: `CC1` (cw.csv:2), `CC2` (cw.csv:3); those rows are refused"],
        ),
        // Overlapping patterns: the longest match, said in the summary.
        (
            vec![",,alpha,,principal,^sa-", ",,beta,,principal,^sa-a$"],
            vec![team("alpha", "", "4.00", 2), team("beta", "", "6.00", 1)],
            0,
            vec!["patterns with different teams matched `sa-a`: `^sa-a$` → `beta` (cw.csv:3) over `^sa-` → `alpha` (cw.csv:2); the longest match is taken (of equally long ones, the first by pattern text)"],
        ),
    ];
    for (rows, teams, refused, notes) in &cases {
        let forward = format!("{header}{}\n", rows.join("\n"));
        let reversed: Vec<&str> = rows.iter().rev().copied().collect();
        let backward = format!("{header}{}\n", reversed.join("\n"));
        for (order, crosswalk) in [("forward", &forward), ("backward", &backward)] {
            let report = report_of(
                Options::default(),
                &[("export.csv", "org-1", export), ("cw.csv", "", crosswalk)],
            );
            assert_eq!(team_rows(&report), *teams, "{order}: {crosswalk}");
            let summary = &report.files[1];
            assert_eq!(
                (
                    summary.rows_accepted,
                    summary.rows_rejected,
                    summary.rejections.len() as u64
                ),
                (rows.len() as u64 - refused, *refused, *refused),
                "{order}: {crosswalk}"
            );
            assert_eq!(report.reconciliation.rows_rejected, *refused);
            if *order == *"forward" {
                assert_eq!(report.crosswalk_notes, *notes, "{crosswalk}");
            }
        }
    }
}

#[test]
fn a_conflicting_row_is_refused_naming_the_other_line() {
    let crosswalk =
        "owner_id,team,cost_center\nsa-a,payments,\nsa-b,pay,CC1\nsa-a,analytics,\nsa-c,pay,CC2\n";
    let report = report_of(Options::default(), &[("cw.csv", "", crosswalk)]);
    let got: Vec<(u64, &str, &str)> = report.files[0]
        .rejections
        .iter()
        .map(|r| (r.line, r.column.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (2, "team", "owner `sa-a` is mapped to team `payments` here and to `analytics` at cw.csv:4: every row of an owner mapped to two teams is refused, and the owner goes to (unmatched)"),
            (3, "cost_center", "team `pay` is given cost center `CC1` here and `CC2` at cw.csv:5: every row giving a team two cost centers is refused"),
            (4, "team", "owner `sa-a` is mapped to team `analytics` here and to `payments` at cw.csv:2: every row of an owner mapped to two teams is refused, and the owner goes to (unmatched)"),
            (5, "cost_center", "team `pay` is given cost center `CC2` here and `CC1` at cw.csv:3: every row giving a team two cost centers is refused"),
        ]
    );
}
