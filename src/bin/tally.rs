//! `tally`: the command-line front of the allocation core, for finance pipelines.
//!
//! It reads files in chunks into the same [`tally::session::Session`] the page
//! uses, so both give identical results for the same inputs, then writes the
//! requested outputs. Argument parsing is by hand (no dependency). Rejected rows
//! are printed to stderr as `file:line column `c`: reason`, followed by the totals
//! of accepted and rejected rows; the exit code is 0 on success, 1 on a fatal
//! error (an unreadable file, an unknown format, a missing column, invalid
//! options or rules), 2 on a usage error.

use rust_decimal::Decimal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use tally::formats::warpstream::WriteOptions;
use tally::model::EntityLevel;
use tally::report::{Report, UnallocatedPolicy};
use tally::session::parallel::Split;
use tally::session::{parse_range, FileSummary, Options, Session};
use tally::time::Granularity;

const HELP: &str = "\
tally — exact, reconciled Kafka chargeback from bills and usage

USAGE:
    tally allocate [OPTIONS] FILES...
    tally rules            print the default rules file (TOML)
    tally --help | -h      this help
    tally --version | -V

INPUT FILES (format detected from the first bytes):
    Confluent cost-allocation export CSV (already allocated: rolled up, reconciled)
    Confluent Billing API costs: JSON {\"data\":[...]} or CSV with the same columns
    tally usage CSV, Prometheus query_range JSON of tally's counters, FOCUS 1.2/1.3 CSV
    WarpStream chargebacks JSON, crosswalk CSV (owner_id/pattern -> team)

OPTIONS:
    --granularity G         hourly | daily | weekly | monthly (default monthly; UTC, ISO weeks)
    --range START,END       custom range [START, END) (ISO dates); boundary buckets are partial
    --precision N           decimal places of the amounts (default 2, at most 12)
    --rules FILE            rules file (TOML) replacing the defaults (see `tally rules`)
    --crosswalk FILE        crosswalk CSV (owner_id -> team; pattern rows)
    --org ORG=FILE          read FILE tagging its rows with org_id ORG (repeatable)
    --entity-level L        principal | topic (default principal; rules may pin their own)
    --focus-cost C          billed | effective: a FOCUS bill's BilledCost (default; what the
                            invoice charges) or EffectiveCost (amortized commitments)
    --unallocated P         shared | pro-rata: unallocated costs to one shared cost center
                            (default) or pro rata to each team's total on the
                            same bill
    --shared-cost-center T  the shared cost center's team name (default shared)
    --invoice-subtotal N    the invoice's usage subtotal to reconcile against
    --entity-kind K         entity view: principal | topic (the FOCUS output has every
                            row, each at its own level); the WarpStream output holds
                            topic-level results only (topics, subjects, tables), so it
                            takes topic (the same as no kind) and refuses principal
    --min-total N           entity view / WarpStream output: omit entities whose total
                            is below N
    --max-entities-per-cluster N   entity view / WarpStream output: at most N per
                            cluster, largest first (default 500; `truncated` set when
                            cut); with --out-warpstream, N over 5000 (WarpStream's own
                            maximum) or 0 is refused before any file is read
    --max-rejections N      rejections kept (and printed) per file (default 100)
    --chunk-bytes N         read files in chunks of N bytes (default 1 MiB)
    --threads N             read a big CSV file in up to N parts at once, and allocate
                            the buckets on up to N threads (default: the cores available;
                            1 does all on one thread; same results either way)
    --out-confluent FILE    write the allocation as a Confluent-style export CSV
    --out-team-summary FILE write the per-team summary CSV
    --out-json FILE         write the whole report as JSON (what the page shows)
    --out-warpstream FILE   write topic-level rows as WarpStream chargebacks JSON (a
                            cluster read from a WarpStream response is written as read:
                            its tenant_id, names, regions, type, and its line items'
                            quantities and unit prices)
    --out-focus FILE        write FOCUS 1.3 CSV with split cost allocation columns
    -q, --quiet             do not print the summary to stdout

An input FILE of `-` is standard input; an --out-* FILE of `-` is standard output.
Output files are written all or none (each beside itself, then renamed into place);
a named pipe or /dev/stdout is written directly. Without any --out-*, the team
summary is printed.
Exit codes: 0 success, 1 fatal error, 2 usage error.
";

/// What the command line asked for.
#[derive(Debug, Default)]
struct Args {
    options: Options,
    rules: Option<String>,
    inputs: Vec<(String, String)>,
    out_confluent: Option<String>,
    out_team_summary: Option<String>,
    out_json: Option<String>,
    /// The WarpStream output's path and its filters, checked before any file is read.
    out_warpstream: Option<(String, WriteOptions)>,
    out_focus: Option<String>,
    chunk_bytes: usize,
    threads: usize,
    quiet: bool,
}

/// A command-line failure: a message and the exit code.
struct Failure(String, u8);

fn usage(message: impl Into<String>) -> Failure {
    Failure(
        format!("{}\n(run `tally --help` for the options)", message.into()),
        2,
    )
}

fn fatal(message: impl std::fmt::Display) -> Failure {
    Failure(message.to_string(), 1)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message, 0)) => {
            print!("{message}");
            ExitCode::SUCCESS
        }
        Err(Failure(message, code)) => {
            eprintln!("tally: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(argv: &[String]) -> Result<(), Failure> {
    match argv.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            print!("{HELP}");
            Ok(())
        }
        Some("-V" | "--version") => {
            println!("tally {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("rules") => {
            print!("{}", Session::default_rules_toml());
            Ok(())
        }
        Some("allocate") => {
            let args = parse_args(argv.get(1..).unwrap_or_default())?;
            allocate(&args)
        }
        Some(other) => Err(usage(format!("unknown command `{other}`"))),
    }
}

/// The value following a flag.
fn value<'a>(flag: &str, rest: &mut impl Iterator<Item = &'a String>) -> Result<&'a str, Failure> {
    rest.next()
        .map(String::as_str)
        .ok_or_else(|| usage(format!("{flag} needs a value")))
}

fn number<T: FromStr>(flag: &str, text: &str) -> Result<T, Failure> {
    text.parse()
        .map_err(|_| usage(format!("{flag}: `{text}` is not a valid number")))
}

/// A decimal flag value, in the one spelling the readers take (no `$`, `_`,
/// `+` or digit separator: an invoice subtotal is not guessed at).
fn decimal(flag: &str, text: &str) -> Result<Decimal, Failure> {
    tally::money::parse_amount(flag, text).map_err(|e| usage(e.to_string()))
}

fn level(flag: &str, text: &str) -> Result<EntityLevel, Failure> {
    match text {
        "principal" => Ok(EntityLevel::Principal),
        "topic" => Ok(EntityLevel::Topic),
        _ => Err(usage(format!("{flag}: `{text}` is not principal or topic"))),
    }
}

fn parse_args(argv: &[String]) -> Result<Args, Failure> {
    let mut args = Args {
        chunk_bytes: 1 << 20,
        threads: std::thread::available_parallelism().map_or(1, usize::from),
        ..Args::default()
    };
    let mut out_warpstream = None;
    let mut rest = argv.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") && f != "--org" => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut take = || -> Result<String, Failure> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => value(flag, &mut rest).map(str::to_string),
            }
        };
        let o = &mut args.options;
        match flag {
            "--granularity" => {
                let g = take()?;
                o.granularity = Granularity::parse(&g).ok_or_else(|| {
                    usage(format!(
                        "--granularity: `{g}` is not hourly, daily, weekly or monthly"
                    ))
                })?;
            }
            "--range" => {
                let r = take()?;
                let (from, to) = r
                    .split_once(',')
                    .ok_or_else(|| usage("--range needs START,END"))?;
                o.range = Some(parse_range(from, to).map_err(|e| usage(e.to_string()))?);
            }
            "--precision" => o.precision = number(flag, &take()?)?,
            "--rules" => args.rules = Some(take()?),
            "--crosswalk" => args.inputs.push((String::new(), take()?)),
            "--org" => {
                let spec = take()?;
                let (org, file) = spec
                    .split_once('=')
                    .ok_or_else(|| usage("--org needs ORG=FILE"))?;
                args.inputs.push((org.to_string(), file.to_string()));
            }
            "--entity-level" => o.entity_level = level(flag, &take()?)?,
            "--focus-cost" => {
                o.focus_cost = match take()?.as_str() {
                    "billed" => tally::formats::focus::CostColumn::Billed,
                    "effective" => tally::formats::focus::CostColumn::Effective,
                    other => {
                        return Err(usage(format!(
                            "--focus-cost: `{other}` is not billed or effective"
                        )))
                    }
                }
            }
            "--unallocated" => {
                o.unallocated_policy = match take()?.as_str() {
                    "shared" | "shared-cost-center" | "shared_cost_center" => {
                        UnallocatedPolicy::SharedCostCenter
                    }
                    "pro-rata" | "pro_rata" | "prorata" => UnallocatedPolicy::ProRata,
                    other => {
                        return Err(usage(format!(
                            "--unallocated: `{other}` is not shared or pro-rata"
                        )))
                    }
                }
            }
            "--shared-cost-center" => o.shared_cost_center = take()?,
            "--invoice-subtotal" => o.invoice_subtotal = Some(decimal(flag, &take()?)?),
            "--entity-kind" => o.filters.entity_kind = Some(level(flag, &take()?)?),
            "--min-total" => o.filters.min_total = Some(decimal(flag, &take()?)?),
            "--max-entities-per-cluster" => {
                o.filters.max_entities_per_cluster = number(flag, &take()?)?
            }
            "--max-rejections" => o.max_rejections = number(flag, &take()?)?,
            "--chunk-bytes" => args.chunk_bytes = number::<usize>(flag, &take()?)?.max(1),
            "--threads" => args.threads = number::<usize>(flag, &take()?)?.max(1),
            "--out-confluent" => args.out_confluent = Some(take()?),
            "--out-team-summary" => args.out_team_summary = Some(take()?),
            "--out-json" => args.out_json = Some(take()?),
            "--out-warpstream" => out_warpstream = Some(take()?),
            "--out-focus" => args.out_focus = Some(take()?),
            "-q" | "--quiet" => args.quiet = true,
            "-h" | "--help" => return Err(Failure(HELP.to_string(), 0)),
            f if f.starts_with('-') && f != "-" => {
                return Err(usage(format!("unknown option `{f}`")))
            }
            file => args.inputs.push((String::new(), file.to_string())),
        }
    }
    if args.inputs.is_empty() {
        return Err(usage("no input files"));
    }
    // Refused here, not after the allocation: a filter the WarpStream output
    // cannot take (a principal kind, a limit over WarpStream's 5000) fails
    // the run before a file is read, as a bad flag value does.
    if let Some(path) = out_warpstream {
        let options = args
            .options
            .filters
            .warpstream_options()
            .map_err(|e| usage(format!("--out-warpstream: {e}")))?;
        args.out_warpstream = Some((path, options));
    }
    Ok(args)
}

fn allocate(args: &Args) -> Result<(), Failure> {
    let mut session = Session::new(args.options.clone());
    if let Some(path) = &args.rules {
        let text = std::fs::read_to_string(path).map_err(|e| fatal(format!("{path}: {e}")))?;
        session
            .set_rules_toml(&text)
            .map_err(|e| fatal(format!("{path}: {e}")))?;
    }
    let mut fatal_files = Vec::new();
    for (org, path) in &args.inputs {
        if let Err(message) = read_file(&mut session, org, path, args) {
            fatal_files.push(message);
        }
    }
    let report = session.allocate_on(args.threads);
    // The report's summaries count the crosswalk rows it refused as well.
    let files = match &report {
        Ok(report) => report.files.clone(),
        Err(_) => session.files(),
    };
    let read: Vec<FileSummary> = files.into_iter().filter(|f| f.error.is_none()).collect();
    print_rejections(&read);
    for message in &fatal_files {
        eprintln!("tally: {message}");
    }
    let report = report.map_err(fatal)?;
    write_outputs(args, &report)?;
    if !args.quiet {
        print_summary(args, &report);
    }
    if fatal_files.is_empty() {
        Ok(())
    } else {
        Err(fatal(format!(
            "{} file(s) could not be read",
            fatal_files.len()
        )))
    }
}

/// Streams one file into the session in chunks (a big CSV file in parts on up
/// to `--threads` cores; standard input serially). Its summary is read from
/// the report, which may refuse more of its rows.
fn read_file(session: &mut Session, org: &str, path: &str, args: &Args) -> Result<(), String> {
    let read = if path == "-" {
        session.read(path, org, std::io::stdin(), args.chunk_bytes)
    } else {
        let split = Split::new(args.threads, args.chunk_bytes);
        session.read_file(path, org, || std::fs::File::open(path), split)
    };
    read.map(drop).map_err(|e| e.to_string())
}

fn print_rejections(summaries: &[FileSummary]) {
    for file in summaries {
        for r in &file.rejections {
            let column = if r.column.is_empty() {
                String::new()
            } else {
                format!(" column `{}`", r.column)
            };
            eprintln!("{}:{}{}: {}", r.file, r.line, column, r.reason);
        }
        if file.rows_rejected > file.rejections.len() as u64 {
            eprintln!(
                "{}: … and {} more rejected rows",
                file.name,
                file.rows_rejected - file.rejections.len() as u64
            );
        }
        eprintln!(
            "{}: {} rows read, {} accepted, {} rejected ({})",
            file.name, file.rows_read, file.rows_accepted, file.rows_rejected, file.format
        );
    }
}

/// Renders every requested output, then writes them in two steps: each file
/// to a `.partial` beside it, and only when all are written, each renamed in
/// place. An output that cannot be made (a FOCUS bill the writer refuses) or
/// written (a missing directory, a full disk) leaves no output of the run
/// written and the previous files untouched, and a reader never sees half a
/// file (only a failing rename, after every file was written, leaves the
/// outputs renamed before it in place).
fn write_outputs(args: &Args, report: &Report) -> Result<(), Failure> {
    let mut outputs: Vec<(&str, String)> = Vec::new();
    if let Some(path) = &args.out_confluent {
        outputs.push((path, report.confluent_csv()));
    }
    if let Some(path) = &args.out_team_summary {
        outputs.push((path, report.team_summary_csv()));
    }
    if let Some(path) = &args.out_json {
        outputs.push((path, report.to_json()));
    }
    if let Some((path, options)) = &args.out_warpstream {
        let json = report.warpstream_json(options.clone()).map_err(fatal)?;
        outputs.push((path, json));
    }
    if let Some(path) = &args.out_focus {
        outputs.push((path, report.focus_csv().map_err(fatal)?));
    }
    let mut files = Vec::new();
    let mut streams = Vec::new();
    let mut stdout = Vec::new();
    for (path, text) in &outputs {
        match output_target(path).map_err(fatal)? {
            Target::Stdout => stdout.push(text),
            Target::File(file) => files.push((file, text)),
            Target::Stream(stream) => streams.push((stream, text)),
        }
    }
    let partial = |path: &Path| {
        let mut name = path.as_os_str().to_owned();
        name.push(".partial");
        PathBuf::from(name)
    };
    let remove_partials = |written: &[(PathBuf, &String)]| {
        for (path, _) in written {
            let _ = std::fs::remove_file(partial(path));
        }
    };
    for (done, (path, text)) in files.iter().enumerate() {
        if let Err(e) = std::fs::write(partial(path), text) {
            remove_partials(files.get(..=done).unwrap_or_default());
            return Err(fatal(format!("{}: {e}", path.display())));
        }
    }
    for (done, (path, _)) in files.iter().enumerate() {
        if let Err(e) = std::fs::rename(partial(path), path) {
            remove_partials(files.get(done..).unwrap_or_default());
            return Err(fatal(format!("{}: {e}", path.display())));
        }
    }
    for (path, text) in streams {
        std::fs::write(&path, text).map_err(|e| fatal(format!("{}: {e}", path.display())))?;
    }
    for text in stdout {
        print!("{text}");
    }
    Ok(())
}

/// Where an output goes.
enum Target {
    /// `-`.
    Stdout,
    /// A regular file, new or existing (through its symlinks, which stay):
    /// written beside itself and renamed into place, so that a run writes
    /// all its files or none.
    File(PathBuf),
    /// Something else that exists (`/dev/stdout`, a named pipe, the
    /// `/dev/fd/N` of a shell's process substitution): renaming over it would
    /// replace it with a file, so it is written directly, after the files.
    Stream(PathBuf),
}

/// Where `path` points; a directory is refused before anything is written.
fn output_target(path: &str) -> Result<Target, String> {
    if path == "-" {
        return Ok(Target::Stdout);
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(format!("{path}: is a directory")),
        Ok(meta) if meta.is_file() => std::fs::canonicalize(path)
            .map(Target::File)
            .map_err(|e| format!("{path}: {e}")),
        Ok(_) => Ok(Target::Stream(PathBuf::from(path))),
        Err(_) => Ok(Target::File(PathBuf::from(path))),
    }
}

fn print_summary(args: &Args, report: &Report) {
    let r = &report.reconciliation;
    let nothing_written = args.out_confluent.is_none()
        && args.out_team_summary.is_none()
        && args.out_json.is_none()
        && args.out_warpstream.is_none()
        && args.out_focus.is_none();
    if nothing_written {
        print!("{}", report.team_summary_csv());
    }
    eprintln!(
        "total: {} rows accepted, {} rejected; bill {} = allocated {} + unallocated {}{}",
        r.rows_accepted,
        r.rows_rejected,
        r.bill_total,
        r.allocated_total,
        r.unallocated_total,
        if r.balanced {
            " (balanced)"
        } else {
            " (NOT balanced)"
        }
    );
    for line in &r.explanations {
        eprintln!("  - {line}");
    }
    for note in &report.crosswalk_notes {
        eprintln!("crosswalk: {note}");
    }
    if !report.unmatched_owners.is_empty() {
        eprintln!(
            "owners without a team: {}",
            report.unmatched_owners.join(", ")
        );
    }
}
