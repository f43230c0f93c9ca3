//! The main job end to end, in a short mode: `tally-demo` meters real traffic of
//! five principals through a real Envoy, and allocates the demo bill to teams. The
//! team totals it writes must add up exactly to the bill total (credits included),
//! and more than one team must be charged.

use host_tests::{repo_root, run_with_timeout, Workdir};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

fn money(text: &str) -> Decimal {
    Decimal::from_str(text.trim()).unwrap_or_else(|e| panic!("amount `{text}`: {e}"))
}

/// team → total, from a team summary CSV (columns found by header name).
fn team_totals(csv: &str) -> BTreeMap<String, Decimal> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no `{name}` in {header:?}"))
    };
    let (team, total) = (col("team"), col("total"));
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[team].to_string(), money(f[total]))
        })
        .collect()
}

/// Sum of the `amount` column of a bill CSV.
fn bill_total(csv: &str) -> Decimal {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let amount = header.iter().position(|h| *h == "amount").unwrap();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| money(l.split(',').nth(amount).unwrap()))
        .sum()
}

#[test]
fn short_demo_meters_traffic_and_charges_several_teams_exactly_the_bill() {
    let dir = Workdir::new("demo");
    let out = dir.join("out");
    let (ok, stdout, stderr) = run_with_timeout(
        &dir,
        "tally-demo",
        Command::new(repo_root().join("target/release/tally-demo"))
            .args([
                "--duration",
                "15",
                "--flush-seconds",
                "3",
                "--no-serve",
                "--out",
            ])
            .arg(&out),
        Duration::from_secs(240),
    );
    assert!(ok, "the demo failed:\n{stdout}\n{stderr}");

    // Every principal's traffic was metered and flushed.
    let usage = std::fs::read_to_string(out.join("usage.csv")).unwrap();
    for principal in [
        "sa-orders-writer",
        "sa-analytics-reader",
        "scram-billing",
        "payments-gateway",
        "legacy-reporter",
    ] {
        assert!(
            usage.contains(&format!(",{principal},")),
            "no usage rows for {principal}:\n{usage}"
        );
    }
    for source in [
        "sasl_plain",
        "sasl_scram_sha_512",
        "sasl_scram_sha_256",
        "mtls",
        "client_id",
    ] {
        assert!(
            usage.contains(&format!(",{source},")),
            "no usage rows named by {source}"
        );
    }

    // The Confluent-style bill: team totals sum exactly to the bill, several teams charged.
    let bill = bill_total(&std::fs::read_to_string(out.join("bill-confluent.csv")).unwrap());
    assert_eq!(bill, money("183.85"), "the demo bill's total");
    let teams = team_totals(&std::fs::read_to_string(out.join("team-summary.csv")).unwrap());
    assert_eq!(
        teams.values().copied().sum::<Decimal>(),
        bill,
        "team totals {teams:?} must add up to the bill"
    );
    let charged = teams
        .iter()
        .filter(|(t, v)| t.as_str() != "shared" && **v > Decimal::ZERO)
        .count();
    assert!(charged >= 4, "several teams charged: {teams:?}");
    assert!(
        !teams.contains_key("(unmatched)"),
        "every demo owner maps to a team: {teams:?}"
    );
    assert_eq!(
        teams["shared"],
        money("-19.00"),
        "credit -25.00 and Tableflow 6.00 stay unallocated"
    );
    assert!(
        stderr.contains("bill 183.85 = allocated 202.85 + unallocated -19.00 (balanced)"),
        "the demo prints the reconciliation:\n{stderr}"
    );

    // The WarpStream invoice allocated to topics adds up to its total too.
    let ws_bill = bill_total(&std::fs::read_to_string(out.join("bill-warpstream.csv")).unwrap());
    let ws_teams =
        team_totals(&std::fs::read_to_string(out.join("team-summary-topics.csv")).unwrap());
    assert_eq!(
        ws_teams.values().copied().sum::<Decimal>(),
        ws_bill,
        "{ws_teams:?}"
    );
    assert!(
        ws_teams.len() >= 3,
        "topic-level charges reach several teams: {ws_teams:?}"
    );
}
