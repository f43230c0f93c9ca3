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

use common::{read, records, run_bytes, run_files, tally, tally_ok, testdata};
use rust_decimal::Decimal;
use std::collections::BTreeSet;
use tally::model::EntityLevel;
use tally::session::Options;

#[test]
fn cli_and_session_give_identical_outputs() {
    let dir = common::scratch_dir("cli");
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

/// `--out-warpstream` of a run with no topic-level rows writes an empty
/// response over the run's period, as the page's download does (it failed
/// with exit 1: "no topic-level rows to write and no period given").
#[test]
fn warpstream_output_without_topic_rows_is_empty_over_the_period() {
    let dir = common::scratch_dir("cli-ws");
    let out = dir.join("ws.json");
    tally_ok(&[
        "allocate".to_string(),
        testdata("seed33/bill.csv").display().to_string(),
        testdata("seed33/usage.csv").display().to_string(),
        "--out-warpstream".to_string(),
        out.display().to_string(),
    ]);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "{\n  \"date_from\": \"2026-04-01\",\n  \"date_to\": \"2026-05-01\",\n  \"covers_products\": [],\n  \"tenants\": []\n}\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tally allocate --out-warpstream` writes WarpStream responses back as
/// they were read (`common::warpstream_exactly`: every tenant, workspace,
/// cluster, entity and line item, field by field, exact decimals; truncated
/// and excluded clusters as they were), files read in small chunks, one of
/// them under an organization. It wrote `unit_price` 0 and `quantity` 0 on
/// every line item, left out those with a zero total, and named clusters by
/// their ids without regions, type or workspace name.
#[test]
fn warpstream_output_writes_the_responses_read_back_as_they_were() {
    let dir = common::scratch_dir("cli-ws-back");
    let out = dir.join("ws.json");
    let (example, two_tenants) = (
        "warpstream/example_get_past.json",
        "warpstream/two_tenants_get_past.json",
    );
    let file = |f: &str| testdata(f).display().to_string();
    // (inputs as arguments) → the responses written
    let cases: [(Vec<String>, Vec<&str>); 3] = [
        (vec![file(example)], vec![example]),
        (vec![file(two_tenants)], vec![two_tenants]),
        (
            vec![
                "--org".to_string(),
                format!("acme={}", file(example)),
                file(two_tenants),
            ],
            vec![example, two_tenants],
        ),
    ];
    for (inputs, expected) in cases {
        let mut args = vec!["allocate".to_string(), "--quiet".to_string()];
        args.extend(["--chunk-bytes", "11", "--out-warpstream"].map(String::from));
        args.push(out.display().to_string());
        args.extend(inputs.iter().cloned());
        tally_ok(&args);
        let written = std::fs::read_to_string(&out).unwrap();
        let expected: Vec<String> = expected.iter().map(|f| read(f)).collect();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        assert_eq!(
            common::warpstream_exactly(&[&written]),
            common::warpstream_exactly(&expected),
            "{inputs:?}\n{written}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The WarpStream output's filters are checked before any file is read:
/// `--entity-kind principal` (no principal is a WarpStream entity) and a
/// limit outside WarpStream's 1 to 5000 are refused as a bad flag value is
/// (exit 2, nothing written, no file read), and only with
/// `--out-warpstream`: the entity view takes them. `principal` wrote the
/// file `topic` writes (exit 0); 5001 was refused after the allocation,
/// exit 1, with the writer's message after the files' summaries.
#[test]
fn warpstream_output_filters_are_refused_before_anything_is_read() {
    let dir = common::scratch_dir("cli-ws-filters");
    let (ws, json) = (dir.join("ws.json"), dir.join("report.json"));
    let path = |p: &std::path::Path| p.display().to_string();
    let usage_error = |reason: &str| {
        format!(
            "tally: --out-warpstream: invalid configuration: {reason}\n\
             (run `tally --help` for the options)\n"
        )
    };
    let principal = usage_error(
        "entity_kind principal has no WarpStream output: WarpStream chargebacks hold \
         topic-level results (topics, subjects, tables); ask for entity_kind topic, or none",
    );
    let limit = |n: &str| {
        usage_error(&format!(
            "max_entities_per_cluster must be between 1 and 5000 for the WarpStream output \
             (WarpStream's own maximum), not {n}"
        ))
    };
    // (flags, --out-warpstream?, exit code, standard error when refused)
    let cases: [(&[&str], bool, i32, Option<String>); 8] = [
        (
            &["--entity-kind", "principal"],
            true,
            2,
            Some(principal.clone()),
        ),
        (
            &[
                "--entity-kind",
                "principal",
                "--max-entities-per-cluster",
                "9",
            ],
            true,
            2,
            Some(principal),
        ),
        (
            &["--max-entities-per-cluster", "5001"],
            true,
            2,
            Some(limit("5001")),
        ),
        (
            &["--max-entities-per-cluster", "0"],
            true,
            2,
            Some(limit("0")),
        ),
        (&["--entity-kind", "topic"], true, 0, None),
        (&["--max-entities-per-cluster", "5000"], true, 0, None),
        (&["--entity-kind", "principal"], false, 0, None),
        (&["--max-entities-per-cluster", "5001"], false, 0, None),
    ];
    for (flags, warpstream, code, refused) in cases {
        let _ = std::fs::remove_file(&ws);
        let _ = std::fs::remove_file(&json);
        let mut args = vec!["allocate".to_string(), "-q".to_string()];
        args.extend(flags.iter().map(|f| f.to_string()));
        args.extend(["--out-json".to_string(), path(&json)]);
        if warpstream {
            args.extend(["--out-warpstream".to_string(), path(&ws)]);
        }
        args.push(
            testdata("warpstream/example_get_past.json")
                .display()
                .to_string(),
        );
        let out = tally(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{flags:?}: {stderr}");
        match refused {
            Some(message) => {
                assert_eq!(stderr, message, "{flags:?}");
                assert!(!ws.exists() && !json.exists(), "{flags:?}: written");
            }
            None => {
                assert!(json.exists(), "{flags:?}");
                assert_eq!(ws.exists(), warpstream, "{flags:?}");
            }
        }
    }
    // `topic` writes what no kind writes.
    let written = |flags: &[&str]| {
        let mut args = vec!["allocate".to_string(), "-q".to_string()];
        args.extend(flags.iter().map(|f| f.to_string()));
        args.extend(["--out-warpstream".to_string(), path(&ws)]);
        args.push(
            testdata("warpstream/example_get_past.json")
                .display()
                .to_string(),
        );
        tally_ok(&args);
        std::fs::read_to_string(&ws).unwrap()
    };
    assert_eq!(written(&["--entity-kind", "topic"]), written(&[]));
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
    let dir = common::scratch_dir("cli-bad");
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
    // Flag amounts have the readers' one spelling too.
    for subtotal in ["1_000", "+5", "$5.00", "5.", " 1,000 "] {
        let out = tally(&["allocate", "--invoice-subtotal", subtotal, "x"]);
        assert_eq!(out.status.code(), Some(2), "{subtotal}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "tally: --invoice-subtotal: `{subtotal}` is not a decimal number\n\
                 (run `tally --help` for the options)\n"
            ),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn threads_give_the_serial_outputs_byte_for_byte() {
    let dir = common::scratch_dir("cli-threads");
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

#[test]
fn focus_output_is_the_pages_and_sums_to_the_bill_whatever_the_levels() {
    // Every row is written at the level its line was allocated at: the
    // WarpStream rules pin theirs to topics. The command line once kept only
    // the session's level (or --entity-kind's): 33.00 and 19.00 of a 52.00
    // bill, and a header without rows for a WarpStream response alone. The
    // page writes the same file (Report::focus_csv), which once held both.
    let dir = common::scratch_dir("cli-focus");
    let mixed = [
        "seed33/bill.csv",
        "seed33/usage.csv",
        "warpstream-rules/bill.csv",
        "warpstream-rules/usage.csv",
    ];
    let topic = EntityLevel::Topic;
    // (files, --entity-level, --entity-kind, bill, levels written)
    type Case<'a> = (
        &'a [&'a str],
        Option<EntityLevel>,
        Option<EntityLevel>,
        &'a str,
        &'a [&'a str],
    );
    let cases: [Case; 4] = [
        (&mixed, None, None, "52.00", &["principal", "topic"]),
        (&mixed, None, Some(topic), "52.00", &["principal", "topic"]),
        (
            &["warpstream/example_get_past.json"],
            None,
            None,
            "6.52",
            &["topic"],
        ),
        // At topic level, the lines charged to their resource, environment
        // or owner of record (Connect, Flink, …) stay principal-level.
        (
            &mixed[..2],
            Some(topic),
            None,
            "33.00",
            &["principal", "topic"],
        ),
    ];
    for (files, level, kind, bill, levels) in cases {
        let focus = dir.join("focus.csv");
        let mut args = vec!["allocate".to_string()];
        args.extend(files.iter().map(|f| testdata(f).display().to_string()));
        args.extend(["--out-focus".to_string(), focus.display().to_string()]);
        let name = |l: EntityLevel| format!("{l:?}").to_lowercase();
        if let Some(l) = level {
            args.extend(["--entity-level".to_string(), name(l)]);
        }
        if let Some(k) = kind {
            args.extend(["--entity-kind".to_string(), name(k)]);
        }
        let stderr = String::from_utf8_lossy(&tally_ok(&args).stderr).into_owned();
        assert!(stderr.contains(&format!("bill {bill} = ")), "{stderr}");
        let written = std::fs::read_to_string(&focus).unwrap();

        let mut options = Options::default();
        options.entity_level = level.unwrap_or(options.entity_level);
        options.filters.entity_kind = kind;
        let paths: Vec<String> = files
            .iter()
            .map(|f| testdata(f).display().to_string())
            .collect();
        let inputs: Vec<(&str, Vec<u8>)> = paths
            .iter()
            .map(|p| (p.as_str(), std::fs::read(p).unwrap()))
            .collect();
        let (report, _) = run_bytes(options, &inputs, 4096);
        assert!(
            written == report.focus_csv().unwrap(),
            "{files:?}: the command line's FOCUS file is not the session's"
        );

        let mut rows = records(&written).into_iter();
        let header = rows.next().unwrap();
        let col = |name: &str| header.iter().position(|c| c == name).unwrap();
        let rows: Vec<Vec<String>> = rows.collect();
        let total: Decimal = rows
            .iter()
            .map(|r| r[col("BilledCost")].parse::<Decimal>().unwrap())
            .sum();
        assert_eq!(total.to_string(), bill, "{files:?} {level:?} {kind:?}");
        let written_levels: BTreeSet<String> = rows
            .iter()
            .map(|r| {
                let tags: serde_json::Value =
                    serde_json::from_str(&r[col("AllocatedTags")]).unwrap();
                tags["tally/level"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            written_levels
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            levels,
            "{files:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn outputs_are_written_all_or_none() {
    let dir = common::scratch_dir("cli-outputs");
    let bill = testdata("seed33/bill.csv").display().to_string();
    let usage = testdata("seed33/usage.csv").display().to_string();
    let team = dir.join("teams.csv");
    let confluent = dir.join("allocation.csv");
    std::fs::write(&team, "previous run\n").unwrap();
    let missing = dir.join("no-such-dir").join("focus.csv");
    let path = |p: &std::path::Path| p.display().to_string();
    let args = [
        "allocate".to_string(),
        bill.clone(),
        usage.clone(),
        "--out-team-summary".into(),
        path(&team),
        "--out-confluent".into(),
        path(&confluent),
        "--out-focus".into(),
        path(&missing),
    ];
    let out = tally(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-dir"));
    // The run failed on its last output: the first two are not written either.
    assert_eq!(std::fs::read_to_string(&team).unwrap(), "previous run\n");
    assert!(!confluent.exists());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        [std::ffi::OsString::from("teams.csv")],
        "partial files left behind"
    );

    // A FOCUS output alone is the only thing written: the team summary is not
    // printed after it (to a file or to standard output).
    let focus = dir.join("focus.csv");
    let out = tally_ok(&["allocate", &bill, &usage, "--out-focus", &path(&focus)]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let out = tally_ok(&["allocate", &bill, &usage, "--out-focus", "-"]);
    let written = std::fs::read_to_string(&focus).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), written);
    assert!(written.starts_with("ServiceProviderName,"), "{written}");
    assert_eq!(written.lines().count(), 19);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rows_after_an_oversized_quoted_field_are_all_read_and_counted() {
    // A Confluent export whose third record has a quoted `reason` of over 4
    // MiB (over the 1 MiB limit; the file is long enough for a two-thread
    // read to cut it into two parts, inside the field), made of lines that look like rows of 1000.00 each. The
    // reader once refused the record and went on at the first line break
    // after the limit, inside the field: 43,391 rows read, 43,388 accepted,
    // 3 rejected, and a bill of 43,386,005.25 instead of 11.00.
    let dir = common::scratch_dir("cli-huge");
    let export = dir.join("export.csv");
    let row = |owner: &str, cost: &str, reason: &str| {
        format!(
            "2026-04-01T00:00:00Z,{owner},env-1,lkc-1,kafka,KafkaNetworkRead,GB,{cost},{reason}\n"
        )
    };
    let inside = row("sa-inside", "1000.00", "\"\"ok\"\"").repeat((9 << 20) / 2 / 84);
    let text = [
        "timestamp,owner_id,environment_id,resource_id,product,line_type,unit,chargeback_cost,reason\n"
            .to_string(),
        row("sa-1", "1.25", "ok"),
        row("sa-big", "7.00", &format!("\"{inside}\"")),
        row("sa-2", "2.50", "ok"),
        row("sa-3", "3.25", "\"two\nlines\""),
        row("sa-4", "4.00", "ok"),
    ]
    .concat();
    assert!(text.len() > 2 * tally::session::parallel::MIN_PART_BYTES as usize);
    std::fs::write(&export, text).unwrap();
    let path = export.display().to_string();
    for (threads, chunk) in [("1", "7"), ("1", "65536"), ("2", "1048576")] {
        let out = tally_ok(&[
            "allocate",
            &path,
            "--threads",
            threads,
            "--chunk-bytes",
            chunk,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        for want in [
            format!("{path}:3: record longer than the 1048576-byte limit; refused"),
            format!("{path}: 5 rows read, 4 accepted, 1 rejected"),
            "total: 4 rows accepted, 1 rejected; bill 11.00 = allocated 11.00".to_string(),
        ] {
            assert!(
                stderr.contains(&want),
                "threads {threads}, chunks of {chunk}: no `{want}` in\n{stderr}"
            );
        }
        assert_eq!(stderr.matches("refused").count(), 1, "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn outputs_through_symlinks_and_pipes_keep_them() {
    // `--out-x /dev/stdout`, a named pipe or a symlink to the real report:
    // renaming a finished file over them replaced them (as root, /dev/stdout
    // itself became a regular file).
    use std::os::unix::fs::FileTypeExt;
    let dir = common::scratch_dir("cli-targets");
    let bill = testdata("seed33/bill.csv").display().to_string();
    let (pipe, real, link) = (dir.join("pipe"), dir.join("real.csv"), dir.join("link.csv"));
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink(&real, &link).unwrap();
    std::fs::write(&real, "previous run\n").unwrap();
    let reader = {
        let pipe = pipe.clone();
        std::thread::spawn(move || std::fs::read_to_string(pipe).unwrap())
    };
    let path = |p: &std::path::Path| p.display().to_string();
    let expected =
        String::from_utf8(tally_ok(&["allocate", &bill, "--out-team-summary", "-"]).stdout)
            .unwrap();
    let out = tally(&[
        "allocate".to_string(),
        bill.clone(),
        "--out-team-summary".into(),
        path(&pipe),
        "--out-confluent".into(),
        path(&link),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let still_a_pipe = std::fs::metadata(&pipe).unwrap().file_type().is_fifo();
    let still_a_link = std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink();
    // (On failure the reader may wait on a pipe nobody opens: not joined then.)
    assert!(out.status.success(), "{stderr}");
    assert!(
        still_a_pipe && still_a_link,
        "{still_a_pipe} {still_a_link}"
    );
    assert_eq!(reader.join().unwrap(), expected);
    let written = std::fs::read_to_string(&real).unwrap();
    assert!(written.starts_with("timestamp,owner_id,"), "{written}");
    // A directory is refused before anything is written.
    std::fs::write(&real, "previous run\n").unwrap();
    let out = tally(&[
        "allocate".to_string(),
        bill,
        "--out-confluent".into(),
        path(&link),
        "--out-json".into(),
        path(&dir),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "previous run\n");
    let _ = std::fs::remove_dir_all(&dir);
}
