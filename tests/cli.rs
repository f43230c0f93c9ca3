//! The command line gives the same results as the session (what the page uses),
//! documents every flag, prints rejections with file:line, and exits non-zero on
//! fatal errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{read, run_files, tally, tally_ok, testdata};
use tally::session::Options;

#[test]
fn cli_and_session_give_identical_outputs() {
    let dir = std::env::temp_dir().join(format!("tally-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (confluent, team) = (dir.join("c.csv"), dir.join("t.csv"));
    let p = |f: &str| testdata(f).display().to_string();
    let out = tally_ok(&[
        "allocate",
        &p("seed33/bill.csv"),
        &p("seed33/usage.csv"),
        "--crosswalk",
        &p("seed33/crosswalk.csv"),
        "--out-confluent",
        &confluent.display().to_string(),
        "--out-team-summary",
        &team.display().to_string(),
        "--chunk-bytes",
        "13",
    ]);
    let (report, _) = run_files(
        Options::default(),
        &[
            "seed33/bill.csv",
            "seed33/usage.csv",
            "seed33/crosswalk.csv",
        ],
        4096,
    );
    assert_eq!(
        std::fs::read_to_string(&confluent).unwrap(),
        report.confluent_csv()
    );
    assert_eq!(
        std::fs::read_to_string(&team).unwrap(),
        read("seed33/expected_team_summary.csv")
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bill 33.00 = allocated 33.00"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_documents_every_flag() {
    let out = tally_ok(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    let source = include_str!("../src/bin/tally.rs");
    for flag in source
        .split('"')
        .filter(|s| s.starts_with("--") && s.len() > 2 && !s.contains(' '))
    {
        assert!(help.contains(flag), "--help does not document {flag}");
    }
}

#[test]
fn rejections_go_to_stderr_and_fatal_errors_exit_non_zero() {
    let dir = std::env::temp_dir().join(format!("tally-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bill.csv");
    std::fs::write(&bad, "start_date,end_date,product,line_type,resource_id,amount\n2026-04-01,2026-05-01,kafka,KafkaBase,lkc-1,x\n").unwrap();
    let out = tally(&["allocate", &bad.display().to_string()]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bill.csv:2 column `amount`"), "{stderr}");
    assert!(stderr.contains("1 rejected"), "{stderr}");
    let unknown = dir.join("x.csv");
    std::fs::write(&unknown, "a,b\n1,2\n").unwrap();
    assert_eq!(
        tally(&["allocate", &unknown.display().to_string()])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        tally(&["allocate", "--granularity", "yearly", "x"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(tally(&["allocate"]).status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn threads_give_the_serial_outputs_byte_for_byte() {
    let dir = std::env::temp_dir().join(format!("tally-cli-threads-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Big enough to be cut in parts (over 2 × MIN_PART_BYTES), with bad rows and
    // quoted line breaks throughout.
    let export = dir.join("export.csv");
    let mut text = String::from(
        "timestamp,owner_id,environment_id,resource_id,product,line_type,unit,chargeback_cost,reason\n",
    );
    let mut i = 0u64;
    while text.len() < 5 << 20 {
        let cost = match i % 1000 {
            7 => "x".to_string(),
            _ => format!("{}.{:02}", i % 977, i % 100),
        };
        let reason = if i % 13 == 0 { "\"two\nlines\"" } else { "ok" };
        text.push_str(&format!(
            "2026-04-{:02}T00:00:00Z,sa-{},env-1,lkc-{},kafka,KafkaNetworkRead,GB,{cost},{reason}\r\n",
            1 + i % 28,
            i % 101,
            i % 7
        ));
        i += 1;
    }
    std::fs::write(&export, text).unwrap();
    let run = |threads: &str| {
        let json = dir.join(format!("report-{threads}.json"));
        let out = tally_ok(&[
            "allocate",
            &export.display().to_string(),
            "--threads",
            threads,
            "--max-rejections",
            "20",
            "--out-json",
            &json.display().to_string(),
        ]);
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            std::fs::read_to_string(json).unwrap(),
        )
    };
    let serial = run("1");
    assert!(
        serial.1.contains("column `chargeback_cost`"),
        "{}",
        serial.1
    );
    assert_eq!(run("2"), serial);
    assert_eq!(run("3"), serial);
    let _ = std::fs::remove_dir_all(&dir);
}
