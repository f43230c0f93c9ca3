//! The page in real headless Chromium: files picked as a person would, the
//! worker reads them in chunks, the results are read back from the page and from
//! the downloaded files. Each test also checks that the page fetched nothing but
//! its own static files (Playwright's request listener and the server's log),
//! and keeps a screenshot of the results in `target/host-tests/<test>/`.
//!
//! Needs `scripts/build` (dist/web) and `scripts/setup` (Chromium, node modules).

use host_tests::http::{Server, ServerConfig};
use host_tests::{repo_root, run_with_timeout, tally_cli, web_dist, Tools, Workdir};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn testdata(path: &str) -> String {
    repo_root()
        .join("testdata")
        .join(path)
        .display()
        .to_string()
}

fn fixture(name: &str) -> String {
    repo_root()
        .join("host-tests/browser/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Serves dist/web, runs `page.mjs` with `scenario`, checks the requests, returns what the page showed.
fn run_page(dir: &Workdir, scenario: Value) -> Value {
    run_page_with(dir, scenario, Vec::new(), "")
}

/// [`run_page`] with extra directories mounted (e.g. `/demo/`) and a query string.
fn run_page_with(
    dir: &Workdir,
    scenario: Value,
    mounts: Vec<(String, PathBuf)>,
    query: &str,
) -> Value {
    let tools = Tools::locate();
    let server = Server::start(
        0,
        ServerConfig {
            static_root: Some(web_dist()),
            mounts: mounts.clone(),
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{}/", server.port);
    let scenario_path = dir.write(
        "scenario.json",
        serde_json::to_vec_pretty(&scenario).unwrap(),
    );
    let (ok, out, err) = run_with_timeout(
        dir,
        "chromium",
        Command::new(&tools.node)
            .arg(repo_root().join("host-tests/browser/page.mjs"))
            .arg(format!("{url}{query}"))
            .arg(dir.path())
            .arg(&scenario_path),
        Duration::from_secs(120),
    );
    assert!(ok, "browser script failed:\n{out}\n{err}");
    let seen: Value = serde_json::from_str(out.trim().lines().last().unwrap_or("")).unwrap();
    assert_only_own_files(&url, &seen, &server.requests(), &mounts);
    seen
}

/// Nothing but the page's own static files was requested: by the browser's own
/// account (every request URL on the page's origin) and by the server's log (only
/// GETs of files under dist/web, or the optional demo manifest).
fn assert_only_own_files(url: &str, seen: &Value, served: &[String], mounts: &[(String, PathBuf)]) {
    let origin = url.trim_end_matches('/');
    let requests = seen["requests"].as_array().unwrap();
    assert!(!requests.is_empty());
    for r in requests {
        let r = r.as_str().unwrap();
        assert!(
            r.starts_with(&format!("{origin}/"))
                || r.starts_with("blob:")
                || r.starts_with("data:"),
            "the page requested {r}, which is not one of its own files"
        );
    }
    let dist = web_dist();
    for line in served {
        let (method, path) = line.split_once(' ').unwrap();
        assert_eq!(method, "GET", "unexpected request {line}");
        let file = path.split('?').next().unwrap().trim_start_matches('/');
        let file = if file.is_empty() { "index.html" } else { file };
        let mounted = mounts.iter().any(|(prefix, dir)| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| dir.join(rest.split('?').next().unwrap()).is_file())
        });
        assert!(
            dist.join(file).is_file() || file == "demo/manifest.json" || mounted,
            "the server was asked for {path}, which is not a file of the page"
        );
    }
    assert!(
        served.iter().any(|r| r.ends_with("/pkg/tally_web_bg.wasm")),
        "wasm never fetched: {served:?}"
    );
    assert!(
        served.iter().any(|r| r.ends_with("/worker.js")),
        "worker never started: {served:?}"
    );
}

/// team → exact total shown in the page's team table (data-value), checking the
/// formatted text shows the same digits.
fn page_teams(seen: &Value) -> BTreeMap<String, String> {
    seen["teams"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(team, cell)| {
            let value = cell["value"].as_str().unwrap().to_string();
            let text = cell["text"].as_str().unwrap();
            let digits: String = text
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
                .collect();
            let digits = digits.replace("-$", "-");
            assert_eq!(
                digits.trim_start_matches('-'),
                value.trim_start_matches('-'),
                "{team}: shown `{text}` for {value}"
            );
            (team.clone(), value)
        })
        .collect()
}

/// The seed's worked example ($33) rolled up by its crosswalk.
const SEED_TEAMS: &[(&str, &str)] = &[
    ("analytics", "16.81"),
    ("data", "3.09"),
    ("payments", "6.91"),
    ("platform", "6.19"),
];

fn teams(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(t, v)| (t.to_string(), v.to_string()))
        .collect()
}

/// team → total from a downloaded team summary CSV (org_id,team,cost_center,direct,shared,unallocated,total,owners).
fn csv_teams(path: &PathBuf) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let team = header.iter().position(|h| *h == "team").unwrap();
    let total = header.iter().position(|h| *h == "total").unwrap();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            (cells[team].to_string(), cells[total].to_string())
        })
        .collect()
}

/// The page's team totals and the downloaded team summary's are both `pairs`.
fn assert_teams(seen: &Value, pairs: &[(&str, &str)]) {
    let expected = teams(pairs);
    assert_eq!(page_teams(seen), expected);
    assert_eq!(csv_teams(&download(seen, "team_summary_csv")), expected);
}

/// Two string fields of each object of a list the page showed, as pairs.
fn field_pairs(list: &Value, key: &str, value: &str) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let field = |name: &str| o[name].as_str().unwrap().to_string();
            (field(key), field(value))
        })
        .collect()
}

fn download(seen: &Value, kind: &str) -> PathBuf {
    PathBuf::from(
        seen["downloads"][kind]
            .as_str()
            .unwrap_or_else(|| panic!("no {kind} download: {seen}")),
    )
}

fn assert_screenshot(dir: &Workdir) {
    let png = std::fs::read(dir.join("results.png")).expect("results.png was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "results.png looks empty"
    );
}

/// The seed's $33 worked example as a bill (Confluent billing costs CSV) + tally
/// usage + crosswalk: the page shows the seed's team totals, and its downloads are
/// exactly the golden files of the core (the page and the command line agree).
#[test]
fn seed_example_bill_and_usage_gives_the_exact_team_totals() {
    let dir = Workdir::new("browser_seed33");
    let seen = run_page(
        &dir,
        json!({
            "steps": [{"files": [testdata("seed33/bill.csv"), testdata("seed33/usage.csv"), testdata("seed33/crosswalk.csv")]}],
            "applyRulesFromTable": true,
            "invoice": "33.00",
            "downloads": ["confluent_csv", "team_summary_csv", "warpstream_json", "report_json"],
            "screenshot": "results.png",
        }),
    );
    let formats: Vec<(&str, &str)> = seen["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["format"].as_str().unwrap()))
        .collect();
    assert_eq!(
        formats,
        [
            ("bill.csv", "confluent_costs_csv"),
            ("usage.csv", "usage_csv"),
            ("crosswalk.csv", "crosswalk")
        ]
    );
    assert_eq!(
        seen["files"][0]["formatShown"],
        "Confluent billing costs (CSV)"
    );
    assert_eq!(seen["errors"], json!([]), "{seen}");
    let expected = teams(SEED_TEAMS);
    assert_eq!(page_teams(&seen), expected);
    assert_eq!(seen["teams"]["analytics"]["text"], "$16.81");
    assert_eq!(csv_teams(&download(&seen, "team_summary_csv")), expected);
    // Identical to the core's golden files (what `tally allocate` writes).
    for (kind, golden) in [
        ("team_summary_csv", "seed33/expected_team_summary.csv"),
        ("confluent_csv", "seed33/expected_confluent.csv"),
    ] {
        let got = std::fs::read_to_string(download(&seen, kind)).unwrap();
        let want = std::fs::read_to_string(testdata(golden)).unwrap();
        assert_eq!(
            got.trim_end(),
            want.trim_end(),
            "{kind} differs from testdata/{golden}"
        );
    }
    // The rules were applied from the editor's table (TOML written by the page,
    // parsed by the core) and the results did not move: the round trip is exact.
    assert_eq!(seen["rulesStatus"], "Rules applied.");
    let toml = seen["rulesToml"].as_str().unwrap();
    assert!(
        toml.contains("[[rule]]") && toml.contains("method = \"weighted\""),
        "{toml}"
    );
    assert_reconciliation_shows(&seen, "Bill total (usage charges)", "$33.00");
    assert_reconciliation_shows(&seen, "Invoice − bill", "$0.00");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(download(&seen, "report_json")).unwrap())
            .unwrap();
    assert_eq!(report["reconciliation"]["bill_total"], "33.00");
    assert_eq!(report["reconciliation"]["balanced"], true);
    assert_screenshot(&dir);
}

/// What the page downloads (its `data-output`), the file it names it, and the
/// command line's flag that writes the same output.
const OUTPUTS: &[(&str, &str, &str)] = &[
    (
        "confluent_csv",
        "tally-cost-allocation.csv",
        "--out-confluent",
    ),
    (
        "team_summary_csv",
        "tally-team-summary.csv",
        "--out-team-summary",
    ),
    (
        "warpstream_json",
        "tally-chargebacks.json",
        "--out-warpstream",
    ),
    ("focus_csv", "tally-focus.csv", "--out-focus"),
    ("report_json", "tally-report.json", "--out-json"),
];

/// One input set given to both the page and the command line.
struct Round {
    name: &'static str,
    /// Input files (under the repository), dropped on the page together and
    /// given to the command line in this order.
    files: &'static [&'static str],
    /// The page's options (element id → value) and the command line's flags
    /// that say the same.
    options: &'static [(&'static str, &'static str)],
    flags: &'static [&'static str],
}

const ROUNDS: &[Round] = &[
    Round {
        name: "costs_bill_and_usage",
        files: &[
            "testdata/seed33/bill.csv",
            "testdata/seed33/usage.csv",
            "testdata/seed33/crosswalk.csv",
        ],
        options: &[("opt-granularity", "daily"), ("opt-precision", "3")],
        flags: &["--granularity", "daily", "--precision", "3"],
    },
    Round {
        name: "export_and_crosswalk",
        files: &[
            "host-tests/browser/fixtures/confluent_export_april.csv",
            "host-tests/browser/fixtures/export_crosswalk.csv",
        ],
        options: &[("opt-unallocated", "pro_rata")],
        flags: &["--unallocated", "pro-rata"],
    },
    Round {
        // The credit (-3.00) to a shared cost center named by the user.
        name: "export_to_a_named_shared_cost_center",
        files: &[
            "host-tests/browser/fixtures/confluent_export_april.csv",
            "host-tests/browser/fixtures/export_crosswalk.csv",
        ],
        // And an invoice subtotal, which the core reconciles (1.25 more than the bill).
        options: &[
            ("opt-shared-cost-center", "platform-shared"),
            (INVOICE, "31.25"),
        ],
        flags: &[
            "--shared-cost-center",
            "platform-shared",
            "--invoice-subtotal",
            "31.25",
        ],
    },
    Round {
        // Weekly buckets cut by a custom range: the two boundary weeks partial.
        name: "costs_in_a_custom_range",
        files: &[
            "testdata/seed33/bill.csv",
            "testdata/seed33/usage.csv",
            "testdata/seed33/crosswalk.csv",
        ],
        options: &[
            ("opt-granularity", "weekly"),
            ("opt-range-from", "2026-04-10"),
            ("opt-range-to", "2026-04-20"),
        ],
        flags: &[
            "--granularity",
            "weekly",
            "--range",
            "2026-04-10,2026-04-20",
        ],
    },
    Round {
        name: "warpstream_chargebacks",
        files: &["testdata/warpstream/example_get_past.json"],
        options: &[],
        flags: &[],
    },
    Round {
        name: "warpstream_bill_and_topic_usage",
        files: &[
            "testdata/warpstream-rules/bill.csv",
            "testdata/warpstream-rules/usage.csv",
        ],
        options: &[("opt-entity", "topic")],
        flags: &["--entity-level", "topic"],
    },
    Round {
        name: "focus_bill",
        files: &["testdata/focus/toolkit_1_3_azure.csv"],
        options: &[("opt-focus-cost", "effective")],
        flags: &["--focus-cost", "effective"],
    },
    Round {
        name: FILTERED_ROUND,
        files: &[
            "host-tests/browser/fixtures/warpstream_four_topics.json",
            "testdata/seed33/bill.csv",
            "testdata/seed33/usage.csv",
            "testdata/seed33/crosswalk.csv",
        ],
        options: &[
            ("opt-entity-kind", "topic"),
            ("opt-min-total", "0.10"),
            ("opt-max-per-cluster", "2"),
        ],
        flags: &[
            "--entity-kind",
            "topic",
            "--min-total",
            "0.10",
            "--max-entities-per-cluster",
            "2",
        ],
    },
];

/// The page's invoice subtotal field, typed in a round's options.
const INVOICE: &str = "invoice";

/// The round with non-default entity-view filters: seed33's principals and a
/// WarpStream cluster of four topics (orders 6.00, payments 3.00, clicks 1.75,
/// audit 0.05), filtered to topics of at least 0.10, at most 2 per cluster.
const FILTERED_ROUND: &str = "entity_kind_min_total_max_per_cluster";

/// The page and the command line write the same bytes for the same inputs
/// and options: every download the page offers, for each kind of input (a
/// billing costs bill + tally usage + crosswalk, a cost-allocation export +
/// crosswalk, WarpStream chargebacks, a WarpStream bill + topic usage, a FOCUS
/// bill), in one browser (one fresh page per input set).
#[test]
fn page_downloads_are_byte_identical_to_the_command_line_files() {
    let dir = Workdir::new("browser_page_equals_cli");
    // Each round's inputs copied to one directory, so that the command line,
    // run there, names the files as the page does (by their base names).
    let inputs = |round: &Round| dir.join(&format!("inputs/{}", round.name));
    let mut rounds = Vec::new();
    for round in ROUNDS {
        std::fs::create_dir_all(inputs(round)).unwrap();
        let mut files = Vec::new();
        for file in round.files {
            let name = file.rsplit('/').next().unwrap();
            let copy = inputs(round).join(name);
            std::fs::copy(repo_root().join(file), &copy).unwrap();
            files.push(copy.display().to_string());
        }
        // The invoice field is typed once the results are shown; the rest before.
        let (invoice, options): (Vec<_>, Vec<_>) =
            round.options.iter().partition(|(id, _)| *id == INVOICE);
        let options: serde_json::Map<String, Value> = options
            .iter()
            .map(|(id, value)| (id.to_string(), json!(value)))
            .collect();
        rounds.push(json!({
            "name": round.name,
            "options": options,
            "steps": [{"files": files}],
            "invoice": invoice.first().map(|(_, value)| value),
            "downloads": OUTPUTS.iter().map(|(kind, _, _)| kind).collect::<Vec<_>>(),
        }));
    }
    let seen = run_page(&dir, json!({ "rounds": rounds }));
    for round in ROUNDS {
        let page = &seen["rounds"][round.name];
        assert_eq!(page["errors"], json!([]), "{}: {page}", round.name);
        let cli = dir.join(&format!("cli/{}", round.name));
        std::fs::create_dir_all(&cli).unwrap();
        let mut args: Vec<String> = vec!["allocate".into(), "--quiet".into()];
        args.extend(round.flags.iter().map(|f| f.to_string()));
        for (_, file, flag) in OUTPUTS {
            args.push(flag.to_string());
            args.push(cli.join(file).display().to_string());
        }
        args.extend(
            round
                .files
                .iter()
                .map(|f| f.rsplit('/').next().unwrap().to_string()),
        );
        let (ok, out, err) = run_with_timeout(
            &dir,
            &format!("cli_{}", round.name),
            Command::new(tally_cli())
                .args(&args)
                .current_dir(inputs(round)),
            Duration::from_secs(60),
        );
        assert!(ok, "{}: tally {args:?} failed:\n{out}\n{err}", round.name);
        for (kind, file, _) in OUTPUTS {
            let from_page = std::fs::read_to_string(download(page, kind)).unwrap();
            let from_cli = std::fs::read_to_string(cli.join(file)).unwrap();
            assert!(
                from_page == from_cli,
                "{}: the page's {kind} differs from the command line's {file}:\n{}",
                round.name,
                first_difference(&from_page, &from_cli)
            );
        }
    }
    assert_filtered_round(&seen["rounds"][FILTERED_ROUND]);
    // Pro-rated, the credit is no team's in April's column: the chart draws it
    // in a column of its own, below zero, and the month's net is the bill.
    let chart = &seen["rounds"]["export_and_crosswalk"]["chart"];
    assert_eq!(
        chart["segments"].as_array().unwrap().last().unwrap(),
        &json!({"title": "unallocated (pro-rated in the team totals), 2026-04: -$3.00", "below": true}),
        "{chart}"
    );
    assert_eq!(chart["nets"], json!(["net, 2026-04: $30.00"]), "{chart}");
    let teams = |round: &str| {
        std::fs::read_to_string(download(&seen["rounds"][round], "team_summary_csv")).unwrap()
    };
    assert!(
        teams("export_to_a_named_shared_cost_center")
            .ends_with("\n,platform-shared,platform-shared,0.00,0.00,-3.00,-3.00,0\n"),
        "{}",
        teams("export_to_a_named_shared_cost_center")
    );
    // 10.99 of the 33.00 lies in the range (22.01 outside).
    assert_eq!(
        teams("costs_in_a_custom_range"),
        "org_id,team,cost_center,direct,shared,unallocated,total,owners\n\
         ,analytics,CC-200,1.50,0.87,0.00,2.37,1\n\
         ,data,CC-400,1.00,0.03,0.00,1.03,1\n\
         ,payments,CC-100,1.40,4.14,0.00,5.54,1\n\
         ,platform,CC-300,1.99,0.06,0.00,2.05,1\n"
    );
}

/// What the filters of [`FILTERED_ROUND`] keep, in the page's report and
/// WarpStream downloads and on the page: only the topics (seed33's principal
/// clusters are gone), audit below the minimum total, clicks cut by the limit
/// of 2 (`truncated`); the principals keep their teams in the page's tables.
fn assert_filtered_round(page: &Value) {
    let read = |kind: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(download(page, kind)).unwrap()).unwrap()
    };
    let report = read("report_json");
    let clusters: Vec<Value> = report["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            json!({
                "cluster_id": c["cluster_id"],
                "entities": c["entities"].as_array().unwrap().iter()
                    .map(|e| json!([e["name"], e["level"], e["total"]]))
                    .collect::<Vec<_>>(),
                "truncated": c["truncated"],
                "below_min_total": c["below_min_total"],
            })
        })
        .collect();
    assert_eq!(
        clusters,
        vec![json!({
            "cluster_id": "vci_shop",
            "entities": [["orders", "topic", "6.0"], ["payments", "topic", "3.0"]],
            "truncated": true,
            "below_min_total": 1,
        })]
    );
    let warpstream = read("warpstream_json");
    let cluster = &warpstream["tenants"][0]["workspaces"][0]["clusters"][0];
    assert_eq!(cluster["virtual_cluster_id"], "vci_shop");
    let names: Vec<&str> = cluster["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders", "payments"]);
    assert_eq!(cluster["truncated"], true);
    assert_eq!(
        page["entityNotes"],
        json!([
            "Entity view, cluster vci_shop: truncated to its 2 largest entities by the \
             per-cluster limit; 1 entity below the minimum total left out."
        ])
    );
    let principal_teams = field_pairs(&page["principals"], "owner_id", "team");
    assert_eq!(
        principal_teams.into_iter().collect::<BTreeMap<_, _>>(),
        teams(&[
            ("env-xxx", "data"),
            ("lkc-123", "platform"),
            ("sa-abc", "payments"),
            ("sa-def", "payments"),
            ("sa-ghi", "analytics"),
            ("sa-jkl", "analytics"),
        ])
    );
}

/// What the WarpStream output refuses, the page's download refuses with the
/// command line's message, and only that download: the entity kind
/// *principals* (no principal is a WarpStream entity; it gave the topics'
/// file) and a per-cluster limit over WarpStream's 5000 (the command line
/// failed only after the allocation, exit 1). The entity view takes both,
/// and the page's report download is the command line's `--out-json`.
#[test]
fn the_warpstream_download_refuses_what_the_command_line_refuses() {
    let dir = Workdir::new("browser_warpstream_refused");
    let example = testdata("warpstream/example_get_past.json");
    let core = |reason: &str| format!("invalid configuration: {reason}");
    // (round, page option, the command line's flags, the refusal's reason)
    let cases = [
        (
            "principal",
            ("opt-entity-kind", "principal"),
            ["--entity-kind", "principal"],
            core(
                "entity_kind principal has no WarpStream output: WarpStream chargebacks hold \
                 topic-level results (topics, subjects, tables); ask for entity_kind topic, \
                 or none",
            ),
        ),
        (
            "over_5000",
            ("opt-max-per-cluster", "5001"),
            ["--max-entities-per-cluster", "5001"],
            core(
                "max_entities_per_cluster must be between 1 and 5000 for the WarpStream \
                 output (WarpStream's own maximum), not 5001",
            ),
        ),
    ];
    let rounds: Vec<Value> = cases
        .iter()
        .map(|(name, (id, value), _, _)| {
            let mut options = serde_json::Map::new();
            options.insert(id.to_string(), json!(value));
            json!({
                "name": name,
                "options": options,
                "steps": [{"files": [example]}],
                "downloads": ["report_json"],
                "refusedDownloads": ["warpstream_json"],
            })
        })
        .collect();
    let seen = run_page(&dir, json!({ "rounds": rounds }));
    for (name, _, flags, reason) in &cases {
        let page = &seen["rounds"][*name];
        assert_eq!(page["errors"], json!([]), "{name}: {page}");
        assert_eq!(
            page["refused"]["warpstream_json"],
            format!("tally-chargebacks.json: {reason}"),
            "{name}"
        );
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(download(page, "report_json")).unwrap())
                .unwrap();
        assert_eq!(report["reconciliation"]["bill_total"], "6.52", "{name}");
        let out = dir.join(&format!("cli-{name}.json"));
        let mut args: Vec<String> = vec!["allocate".into()];
        args.extend(flags.iter().map(|f| f.to_string()));
        args.extend([
            "--out-warpstream".into(),
            out.display().to_string(),
            example.clone(),
        ]);
        let (ok, _, err) = run_with_timeout(
            &dir,
            &format!("cli_{name}"),
            Command::new(tally_cli()).args(&args),
            Duration::from_secs(60),
        );
        assert!(
            !ok && !out.exists(),
            "{name}: tally {args:?} wrote its output"
        );
        assert_eq!(
            err,
            format!("tally: --out-warpstream: {reason}\n(run `tally --help` for the options)\n"),
            "{name}"
        );
    }
}

/// The first line where `page` and `cli` differ, for the failure message.
fn first_difference(page: &str, cli: &str) -> String {
    let page: Vec<&str> = page.lines().collect();
    let cli: Vec<&str> = cli.lines().collect();
    match (0..page.len().max(cli.len())).find(|i| page.get(*i) != cli.get(*i)) {
        Some(i) => format!(
            "line {}:\n  page: {:?}\n  cli:  {:?}",
            i + 1,
            page.get(i),
            cli.get(i)
        ),
        None => "(only line endings differ)".into(),
    }
}

/// A Confluent cost-allocation export (header aliases, a negative promotional
/// credit on the unallocated row) + crosswalk CSV: team totals, the credit goes to
/// the shared cost center, and the invoice difference is explained.
#[test]
fn confluent_export_and_crosswalk_give_team_totals_with_the_credit_unallocated() {
    let dir = Workdir::new("browser_confluent_export");
    let seen = run_page(
        &dir,
        json!({
            "steps": [{"files": [fixture("confluent_export_april.csv"), fixture("export_crosswalk.csv")]}],
            "invoice": "31.25",
            "downloads": ["team_summary_csv", "confluent_csv"],
            "screenshot": "results.png",
        }),
    );
    assert_eq!(seen["files"][0]["format"], "confluent_export", "{seen}");
    assert_eq!(seen["files"][1]["format"], "crosswalk", "{seen}");
    assert_teams(
        &seen,
        &[
            ("analytics", "16.81"),
            ("data", "3.09"),
            ("payments", "6.91"),
            ("platform", "6.19"),
            ("shared", "-3.00"),
        ],
    );
    // The downloaded export sums to the bill, credit included.
    let text = std::fs::read_to_string(download(&seen, "confluent_csv")).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let cost = header.iter().position(|h| *h == "chargeback_cost").unwrap();
    let cents: i64 = text
        .lines()
        .skip(1)
        .map(|l| {
            let v = l.split(',').nth(cost).unwrap();
            let (units, frac) = v.split_once('.').unwrap_or((v, "0"));
            let sign = if units.starts_with('-') { -1 } else { 1 };
            let frac: i64 = format!("{frac:0<2}")[..2].parse().unwrap();
            units.parse::<i64>().unwrap() * 100 + sign * frac
        })
        .sum();
    assert_eq!(
        cents, 3000,
        "the export's chargeback_cost must sum to the bill (33.00 − 3.00 credit)"
    );
    assert_reconciliation_shows(&seen, "Bill total (usage charges)", "$30.00");
    assert_reconciliation_shows(&seen, "Unallocated (credits included)", "-$3.00");
    // The chart draws the credit below zero in the shared cost center's
    // column, and marks the month's net: the bill.
    assert_eq!(
        seen["chart"],
        json!({
            "segments": [
                {"title": "analytics, 2026-04: $16.81", "below": false},
                {"title": "payments, 2026-04: $6.91", "below": false},
                {"title": "platform, 2026-04: $6.19", "below": false},
                {"title": "data, 2026-04: $3.09", "below": false},
                {"title": "shared, 2026-04: -$3.00", "below": true},
            ],
            "nets": ["net, 2026-04: $30.00"],
        }),
        "{seen}"
    );
    assert_reconciliation_shows(&seen, "Invoice − bill", "$1.25");
    let explain = seen["explain"].to_string();
    assert!(
        explain.contains("the invoice subtotal differs by 1.25") && explain.contains("48 hours"),
        "{explain}"
    );
    assert_screenshot(&dir);
}

/// A malformed file next to good ones: the bad row is listed with its file, line
/// and column, an unreadable file is named with the reason, and the good files
/// are still allocated to the cent.
#[test]
fn a_malformed_file_is_named_with_its_line_and_the_good_files_still_allocate() {
    let dir = Workdir::new("browser_malformed");
    let seen = run_page(
        &dir,
        json!({
            "steps": [
                {"files": [testdata("seed33/bill.csv"), fixture("broken_usage.csv"), testdata("seed33/usage.csv"), fixture("notes.txt"), fixture("cut_costs.json")]},
                {"files": [testdata("seed33/crosswalk.csv"), fixture("conflicting_crosswalk.csv")]},
            ],
            "downloads": ["team_summary_csv"],
            "screenshot": "results.png",
        }),
    );
    // The file that is not a known format: named, with the reason, in the alert region.
    let errors = seen["errors"].to_string();
    assert!(
        errors.contains("notes.txt") && errors.contains("unrecognised format"),
        "{errors}"
    );
    let notes = seen["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "notes.txt")
        .unwrap();
    assert_eq!(
        notes["status"], "not loaded (see the message above)",
        "{notes}"
    );
    assert_eq!(notes["format"], "not recognised", "{notes}");
    // A Billing API list cut short after two lines (7.00 and 3.00 on lkc-123):
    // refused, and its two lines are not in the totals below.
    assert!(
        errors.contains("cut_costs.json") && errors.contains("truncated"),
        "{errors}"
    );
    // The bad row: file, line 2, column `value`, and why; then the two
    // crosswalk rows that give sa-nobody two teams, refused by the allocation
    // after they were read (listed and counted all the same).
    let rejections = seen["rejections"].as_array().unwrap();
    assert_eq!(rejections.len(), 3, "{rejections:?}");
    let r = &rejections[0];
    assert_eq!(r["0"]["text"], "broken_usage.csv");
    assert_eq!(r["1"]["text"], "2");
    assert_eq!(r["2"]["text"], "value");
    assert!(r["3"]["text"].as_str().unwrap().contains("12x"), "{r}");
    for (r, line) in rejections[1..].iter().zip(["2", "3"]) {
        assert_eq!(r["0"]["text"], "conflicting_crosswalk.csv", "{r}");
        assert_eq!(r["1"]["text"], line, "{r}");
        assert!(
            r["3"]["text"].as_str().unwrap().contains("sa-nobody"),
            "{r}"
        );
    }
    let conflicting = seen["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "conflicting_crosswalk.csv")
        .unwrap();
    // Rows read, accepted, rejected.
    assert_eq!(
        conflicting["cells"].as_array().unwrap()[4..7],
        [json!("2"), json!("0"), json!("2")],
        "{conflicting}"
    );
    let broken = seen["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "broken_usage.csv")
        .unwrap();
    assert_eq!(broken["format"], "usage_csv");
    // The good files: the seed's totals, unchanged.
    assert_teams(&seen, SEED_TEAMS);
    assert_screenshot(&dir);
}

/// A big file is read in chunks with a progress bar and can be cancelled: the
/// page stops between chunks, says so, and restores the results of the files
/// that had loaded before (the seed's totals, to the cent).
#[test]
fn a_big_file_shows_progress_and_cancel_restores_the_other_files() {
    let dir = Workdir::new("browser_cancel");
    let tools = Tools::locate();
    let big = dir.join("big_export.csv");
    let crosswalk = dir.join("big_crosswalk.csv");
    let (ok, out, err) = run_with_timeout(
        &dir,
        "generate",
        Command::new(&tools.node)
            .arg(repo_root().join("host-tests/browser/gen-confluent.mjs"))
            .arg(&big)
            .arg(&crosswalk)
            .arg("1000000"),
        Duration::from_secs(120),
    );
    assert!(ok, "generator failed:\n{out}\n{err}");
    let seen = run_page(
        &dir,
        json!({
            "steps": [
                {"files": [testdata("seed33/bill.csv"), testdata("seed33/usage.csv"), testdata("seed33/crosswalk.csv")]},
                {"files": [big.display().to_string()], "cancel": true, "timeout": 120000},
            ],
            "screenshot": "results.png",
        }),
    );
    assert_eq!(seen["cancelled"], 1, "{seen}");
    // The last progress message is the restore's (the files that had loaded, read again).
    assert_eq!(
        seen["progressSeen"]["job"], "restore",
        "{}",
        seen["progressSeen"]
    );
    let big_row = seen["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "big_export.csv")
        .unwrap();
    assert_eq!(big_row["status"], "cancelled", "{big_row}");
    assert!(
        seen["status"]
            .as_str()
            .unwrap()
            .starts_with("Cancelled: big_export.csv not loaded"),
        "{}",
        seen["status"]
    );
    let expected = teams(SEED_TEAMS);
    assert_eq!(page_teams(&seen), expected);
    // Progress reached the page at least every 250 ms while reading.
    let gaps: Vec<f64> = seen["progressIntervals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        gaps.len() >= 3 && gaps.iter().all(|g| *g < 1000.0),
        "a progress gap over a second: {gaps:?}"
    );
}

/// The demo's one-click load (`demo/manifest.json` next to the page) and the
/// `?load=` parameter (same-origin URLs only) load files like a drop does.
#[test]
fn demo_manifest_button_and_load_parameter_load_same_origin_files() {
    let dir = Workdir::new("browser_demo_load");
    let demo = dir.join("demo");
    std::fs::create_dir_all(&demo).unwrap();
    for f in ["bill.csv", "usage.csv", "crosswalk.csv"] {
        std::fs::copy(testdata(&format!("seed33/{f}")), demo.join(f)).unwrap();
    }
    std::fs::write(
        demo.join("manifest.json"),
        r#"{"files": ["bill.csv", {"url": "usage.csv"}, "crosswalk.csv"]}"#,
    )
    .unwrap();
    let expected = teams(SEED_TEAMS);
    let mounts = vec![("/demo/".to_string(), demo.clone())];
    let seen = run_page_with(&dir, json!({"clickDemo": true}), mounts.clone(), "");
    assert_eq!(page_teams(&seen), expected, "{seen}");
    // ?load= with two same-origin files and one from elsewhere, which is refused.
    let seen = run_page_with(
        &dir,
        json!({"waitLoad": true}),
        mounts,
        "?load=demo/bill.csv,demo/usage.csv,demo/crosswalk.csv,http://example.com/x.csv",
    );
    assert_eq!(page_teams(&seen), expected, "{seen}");
    let errors = seen["errors"].to_string();
    assert!(
        errors.contains("http://example.com/x.csv") && errors.contains("own origin"),
        "{errors}"
    );
}

/// Exports of two organizations (tagged at ingest with the org id typed before
/// the drop): totals per organization, and each team's total summed exactly
/// over both.
#[test]
fn two_organizations_roll_up_per_org_and_per_team() {
    let dir = Workdir::new("browser_two_orgs");
    let seen = run_page(
        &dir,
        json!({
            "steps": [
                {"files": [fixture("confluent_export_april.csv")], "org": "org-eu"},
                {"files": [fixture("confluent_export_april.csv")], "org": "org-us"},
                {"files": [fixture("export_crosswalk.csv")]},
            ],
        }),
    );
    assert_eq!(
        field_pairs(&seen["orgs"], "org_id", "total"),
        [
            ("org-eu".to_string(), "30.00".to_string()),
            ("org-us".to_string(), "30.00".to_string())
        ]
    );
    let expected = teams(&[
        ("analytics", "33.62"),
        ("data", "6.18"),
        ("payments", "13.82"),
        ("platform", "12.38"),
        ("shared", "-6.00"),
    ]);
    assert_eq!(page_teams(&seen), expected);
}

/// The page's reconciliation panel shows `label` followed by `value`.
fn assert_reconciliation_shows(seen: &Value, label: &str, value: &str) {
    let shown: Vec<&str> = seen["reconciliation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        shown.windows(2).any(|w| w == [label, value]),
        "reconciliation should show {label} = {value}: {shown:?}"
    );
}

/// A FOCUS bill (the AWS provider sample) with *FOCUS bills by* set to
/// EffectiveCost: the fleets covered by commitments carry their amortized cost
/// and the commitments what went unused, as `tally allocate --focus-cost
/// effective` gives (tests/formats_focus.rs); by BilledCost the fleets would
/// carry nothing and the commitments 128.08.
#[test]
fn a_focus_bill_by_effective_cost_charges_the_covered_usage() {
    let dir = Workdir::new("browser_focus_effective");
    let fleet =
        "urn:focus-sample:aws:us-east-1:200000000011:compute-fleet:3dc0516cd214197aca19b57c";
    let fleet2 =
        "urn:focus-sample:aws:us-west-2:200000000013:compute-fleet:3b5d0eb84395c9587250cecb";
    let plan = "arn:aws:savingsplans:us-east-1::savingsplan/5a4fd12aabfe228f";
    let reservation = "arn:aws:ec2:us-west-2::reservation/a767c76fb008f86b";
    let seen = run_page(
        &dir,
        json!({
            "options": {"opt-focus-cost": "effective"},
            "crosswalk": [
                {"owner_id": fleet, "team": "compute"},
                {"owner_id": fleet2, "team": "compute"},
                {"owner_id": plan, "team": "commitments"},
                {"owner_id": reservation, "team": "commitments"},
            ],
            "steps": [{"files": [testdata("focus/toolkit_1_3_aws.csv")]}],
            "downloads": ["team_summary_csv", "focus_csv"],
            "screenshot": "results.png",
        }),
    );
    assert_eq!(seen["errors"], json!([]), "{seen}");
    assert_eq!(seen["files"][0]["format"], "focus", "{seen}");
    // 52.85 + 43.80 (each hourly charge rounded alone); 11.18 + 20.23; the
    // bucket and three EKS workloads 181.77.
    assert_teams(
        &seen,
        &[
            ("(unmatched)", "181.77"),
            ("commitments", "31.41"),
            ("compute", "96.65"),
        ],
    );
    // The page's FOCUS download says who billed each charge as the bill did
    // (ServiceProviderName, HostProviderName, InvoiceIssuerName, InvoiceId
    // first), not the Confluent defaults.
    let focus = std::fs::read_to_string(download(&seen, "focus_csv")).unwrap();
    let mut rows = focus.lines();
    assert!(rows
        .next()
        .unwrap()
        .starts_with("ServiceProviderName,HostProviderName,InvoiceIssuerName,InvoiceId,"));
    let charges: Vec<&str> = rows.collect();
    // Each charge with its own tags: the fleets' eight hourly charges stay
    // eight (they were once merged per hour into four). The two commitments'
    // purchases (EffectiveCost 0: nothing to allocate) are written whole,
    // unallocated, with their BilledCost (64.04 each; once left out).
    assert_eq!(charges.len(), 16, "{focus}");
    let purchases = charges.iter().filter(|r| r.contains(",Purchase,,"));
    assert_eq!(purchases.count(), 2, "{focus}");
    assert!(
        charges
            .iter()
            .all(|r| r.starts_with("AWS,AWS,AWS,INV-2026-05-000")),
        "{focus}"
    );
    assert_screenshot(&dir);
}
