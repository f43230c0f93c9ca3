//! Helpers shared by the integration tests: run a session over files.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tally::report::Report;
use tally::session::{FileSummary, Options, Session};

/// The header of tally's usage CSV, with its line break.
pub const USAGE_HEADER: &str =
    "version,bucket_start,bucket_end,cluster,principal,principal_source,topic,metric,value\n";

/// A directory of this test process under the system's temporary directory
/// (`tally-NAME-PID`), created; the test removes it when done.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tally-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The path of a file under `testdata/`.
pub fn testdata(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(path)
}

/// Reads a testdata file to a string.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(testdata(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Feeds `(name, bytes)` inputs in chunks of `chunk` bytes and allocates.
pub fn run_bytes(
    options: Options,
    inputs: &[(&str, Vec<u8>)],
    chunk: usize,
) -> (Report, Vec<FileSummary>) {
    let (session, summaries) = session_of(options, inputs, chunk);
    (session.allocate().unwrap(), summaries)
}

/// A session that has read `(name, bytes)` inputs in chunks of `chunk` bytes.
pub fn session_of(
    options: Options,
    inputs: &[(&str, Vec<u8>)],
    chunk: usize,
) -> (Session, Vec<FileSummary>) {
    let mut session = Session::new(options);
    let mut summaries = Vec::new();
    for (name, bytes) in inputs {
        let id = session.begin_file(name, "");
        for part in bytes.chunks(chunk.max(1)) {
            session
                .feed(id, part)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        summaries.push(
            session
                .end_file(id)
                .unwrap_or_else(|e| panic!("{name}: {e}")),
        );
    }
    (session, summaries)
}

/// Runs testdata files through a session.
pub fn run_files(options: Options, files: &[&str], chunk: usize) -> (Report, Vec<FileSummary>) {
    let inputs: Vec<(&str, Vec<u8>)> = files.iter().map(|f| (*f, read(f).into_bytes())).collect();
    run_bytes(options, &inputs, chunk)
}

/// A CSV text's records (the header first), each as its fields.
pub fn records(csv: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut tok = tally::formats::csv::Tokenizer::new("out.csv");
    let mut cb = |r: Result<tally::formats::csv::Record<'_>, tally::error::Error>| {
        out.push(r.unwrap().fields().map(String::from).collect());
        Ok(())
    };
    tok.feed(csv.as_bytes(), &mut cb).unwrap();
    tok.finish(&mut cb).unwrap();
    out
}

/// Runs the command line (`tally`) with `args`.
pub fn tally<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs the command line with `args`; the test fails, showing its standard
/// error, unless it succeeds.
pub fn tally_ok<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let out = tally(args);
    assert!(
        out.status.success(),
        "tally failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The report of `files` (name, organization, text), each fed whole.
pub fn report_of(options: Options, files: &[(&str, &str, &str)]) -> Report {
    let mut session = Session::new(options);
    for (name, org, text) in files {
        let id = session.begin_file(name, org);
        session.feed(id, text.as_bytes()).unwrap();
        session.end_file(id).unwrap();
    }
    session.allocate().unwrap()
}

/// This process's peak resident memory so far (Linux; 0 elsewhere).
pub fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// WarpStream chargebacks JSON documents, exactly, as one comparable text:
/// every number as the exact decimal it holds (`1.00` and `1.10` as `1`
/// and `1.1`), each object's members by name (the writer puts `truncated`
/// after `entities`; member order means nothing in JSON), arrays in their
/// order. The tenants of all `documents` are put together, by `tenant_id`
/// (which must differ), as one session writes the responses it read; the
/// other members are the first document's.
pub fn warpstream_exactly(documents: &[&str]) -> String {
    use tally::formats::exact_json::{self, Kind, Value};
    fn canonical(value: Value) -> Value {
        let kind = match value.kind {
            Kind::Number(text) => {
                let exact = exact_json::decimal_from_number(&text).unwrap();
                exact_json::number(exact)
            }
            Kind::Array(items) => Kind::Array(items.into_iter().map(canonical).collect()),
            Kind::Object(members) => {
                let mut members: Vec<(String, Value)> = members
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect();
                members.sort_by(|a, b| a.0.cmp(&b.0));
                Kind::Object(members)
            }
            other => other,
        };
        Value { line: 0, kind }
    }
    let mut parsed: Vec<Value> = documents
        .iter()
        .map(|d| canonical(exact_json::parse(d, "document.json").unwrap()))
        .collect();
    let mut tenants: Vec<Value> = Vec::new();
    for document in &mut parsed {
        let Kind::Object(members) = &mut document.kind else {
            panic!("not an object: {document:?}")
        };
        let (_, list) = members.iter_mut().find(|(k, _)| k == "tenants").unwrap();
        let Kind::Array(list) = std::mem::replace(&mut list.kind, Kind::Null) else {
            panic!("tenants is not an array")
        };
        tenants.extend(list);
    }
    let id = |t: &Value| format!("{:?}", t.get("tenant_id").unwrap().kind);
    tenants.sort_by_key(id);
    let ids: Vec<String> = tenants.iter().map(id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] != w[1]),
        "tenants twice: {ids:?}"
    );
    let mut whole = parsed.swap_remove(0);
    if let Kind::Object(members) = &mut whole.kind {
        if let Some((_, list)) = members.iter_mut().find(|(k, _)| k == "tenants") {
            list.kind = Kind::Array(tenants);
        }
    }
    let mut out = String::new();
    exact_json::push_pretty(&mut out, &whole.kind, 0);
    out
}
