//! Allocation benchmark: streaming throughput and peak memory.
//!
//! Generates (streaming, to files) a 1,000,000-row Confluent-style cost-allocation
//! export with a crosswalk, and a bill + usage of similar size (with the same
//! crosswalk: both roll up to teams), then feeds each
//! through a [`Session`] in 1 MiB chunks exactly as the command line does, and
//! prints rows/s, MiB/s and the process's peak resident memory (`VmHWM` from
//! `/proc/self/status`) after each phase. Peak memory is bounded by the distinct
//! owners × buckets, not by the rows: the 1M-row phases stay near the footprint
//! of their aggregates.
//!
//! The usage file is what tally's plugin writes for a fixed population: 5,000
//! principals on 20 clusters of 25 topics each, half of them producing to one
//! topic and consuming another, the other half consuming one (7,500
//! (cluster, principal, topic, metric) series). The plugin flushes one row per
//! series with traffic per interval, so a bigger file is the same series over
//! finer intervals (a `bucket_seconds` dividing a day, the coarsest with room
//! for the rows), not new keys: from 225,000 rows on every series has a row on
//! every day, and the daily aggregates and output rows no longer depend on the
//! number of rows. The bill has one line per cluster × day × line type (3,000).
//!
//! Each phase runs twice in the same process: serially (`--threads 1` of the
//! command line), then with the big files cut into parts read on `--threads`
//! cores (default: the cores available; see [`tally::session::parallel`]).
//! Each of those runs `--repeat` times (default 3) and the run with the median
//! wall time is printed, with the range of the others: a shared VM's speed
//! drifts by tens of percent within a minute, and one run says little.
//!
//! ```text
//! cargo bench --bench allocate -- [--rows N] [--dir DIR] [--generate-only] [--only export|usage] [--threads N] [--repeat N] [--reuse]
//! ```
//!
//! `--reuse` skips generating: `--dir` holds the files of an earlier run with
//! the same `--rows` (`scripts/bench` generates once, then alternates rounds
//! of this benchmark and of pandas on the same files).
//!
//! `--only` runs one phase (for instruction counts under `valgrind
//! --tool=callgrind`, with `--repeat 1`).
//!
//! `--dir` keeps the generated files (`export.csv`, `crosswalk.csv`, `bill.csv`,
//! `usage.csv`) so `scripts/bench-pandas.py DIR` can do the same roll-up on the
//! same files.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tally::session::parallel::Split;
use tally::session::{Options, Session};
use tally::time::Granularity;

const OWNERS: usize = 5_000;
const TEAMS: usize = 50;
const CLUSTERS: usize = 20;
const DAYS: usize = 30;
const LINE_TYPES: [(&str, &str, &str); 5] = [
    ("kafka", "KafkaNetworkWrite", "GB"),
    ("kafka", "KafkaNetworkRead", "GB"),
    ("kafka", "KafkaNumCKUs", "CKU-hour"),
    ("kafka", "KafkaStorage", "GB-hour"),
    ("kafka", "KafkaPartition", "Partition-hour"),
];

struct Config {
    rows: usize,
    dir: PathBuf,
    keep: bool,
    generate_only: bool,
    reuse: bool,
    only: Option<String>,
    threads: usize,
    repeat: usize,
}

fn config() -> Config {
    let mut args = std::env::args().skip(1);
    let mut config = Config {
        rows: 1_000_000,
        dir: std::env::temp_dir().join(format!("tally-bench-{}", std::process::id())),
        keep: false,
        generate_only: false,
        reuse: false,
        only: None,
        threads: std::thread::available_parallelism().map_or(1, usize::from),
        repeat: 3,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rows" => {
                config.rows = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(config.rows)
            }
            "--dir" => {
                config.dir = PathBuf::from(args.next().expect("--dir needs a path"));
                config.keep = true;
            }
            "--generate-only" => config.generate_only = true,
            "--reuse" => config.reuse = true,
            "--only" => config.only = args.next(),
            "--threads" => {
                config.threads = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(config.threads)
            }
            "--repeat" => {
                config.repeat = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .map_or(config.repeat, |n: usize| n.max(1))
            }
            _ => {} // cargo passes --bench
        }
    }
    config
}

fn day(d: usize) -> String {
    format!("2026-04-{:02}", d + 1)
}

/// Writes lines produced by `line(i, &mut buf)` for i in 0..n (none when it
/// writes nothing), after `header`.
fn write_csv(path: &Path, header: &str, n: usize, mut line: impl FnMut(usize, &mut String)) -> u64 {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut buf = String::with_capacity(256);
    out.write_all(header.as_bytes()).unwrap();
    out.write_all(b"\n").unwrap();
    for i in 0..n {
        buf.clear();
        line(i, &mut buf);
        out.write_all(buf.as_bytes()).unwrap();
    }
    out.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

fn generate(config: &Config) {
    std::fs::create_dir_all(&config.dir).unwrap();
    let days: Vec<String> = (0..DAYS).map(day).collect();
    // Export: owner × cluster × line type × day, cents amounts.
    write_csv(
        &config.dir.join("export.csv"),
        "timestamp,owner_id,environment_id,resource_id,product,line_type,unit,chargeback_cost,original_amount,usage_share",
        config.rows,
        |i, b| {
            let (product, line_type, unit) = LINE_TYPES[i % LINE_TYPES.len()];
            let owner = (i / 7) % OWNERS;
            let cluster = (i / 3) % CLUSTERS;
            let cents = 1 + (i * 7919) % 100_000;
            let _ = writeln!(
                b,
                "{}T00:00:00Z,sa-{owner:05},env-{},lkc-{cluster:03},{product},{line_type},{unit},{}.{:02},{}.00,0.01",
                days[(i / 11) % DAYS],
                cluster % 4,
                cents / 100,
                cents % 100,
                cents / 10 + 1
            );
        },
    );
    write_csv(
        &config.dir.join("crosswalk.csv"),
        "owner_id,team,cost_center",
        OWNERS,
        |i, b| {
            let _ = writeln!(b, "sa-{i:05},team-{:02},CC-{:02}", i % TEAMS, i % TEAMS);
        },
    );
    write_usage(config);
    // Bill: cluster × day × line type.
    let bill_rows = CLUSTERS * DAYS * LINE_TYPES.len();
    write_csv(
        &config.dir.join("bill.csv"),
        "start_date,end_date,product,line_type,resource_id,environment_id,unit,quantity,amount",
        bill_rows,
        |i, b| {
            let (product, line_type, unit) = LINE_TYPES[i % LINE_TYPES.len()];
            let cluster = (i / LINE_TYPES.len()) % CLUSTERS;
            let d = i / (LINE_TYPES.len() * CLUSTERS);
            let _ = writeln!(
                b,
                "{}T00:00:00Z,{}T00:00:00Z,{product},{line_type},lkc-{cluster:03},env-{},{unit},{},{}.{:02}",
                days[d],
                if d + 1 < DAYS { day(d + 1) } else { "2026-05-01".into() },
                cluster % 4,
                1000 + i,
                10 + i % 500,
                i % 100
            );
        },
    );
}

/// Topics per cluster (`TOPICS` in all, topic `t` on cluster `t % CLUSTERS`).
const TOPICS: usize = 500;
/// Flush widths the generator picks from: the plugin's `bucket_seconds` must
/// divide a day.
const BUCKET_WIDTHS: [usize; 11] = [
    86_400, 43_200, 21_600, 14_400, 7_200, 3_600, 1_800, 900, 600, 300, 60,
];

/// The usage series of the population, as the plugin would meter them:
/// (cluster, principal, topic, metric). Principal `p` talks to cluster
/// `p % CLUSTERS`; half of each cluster's principals produce to one of its
/// topics and consume another (stream processors), the other half only consume.
fn usage_series() -> Vec<(usize, usize, usize, &'static str)> {
    let per_cluster = TOPICS / CLUSTERS;
    let mut series = Vec::new();
    for p in 0..OWNERS {
        let cluster = p % CLUSTERS;
        let topic = |j: usize| cluster + CLUSTERS * (j % per_cluster);
        let k = p / CLUSTERS;
        if k % 2 == 0 {
            series.push((cluster, p, topic(k), "produced_bytes"));
            series.push((cluster, p, topic(k + 7), "consumed_bytes"));
        } else {
            series.push((cluster, p, topic(k + 3), "consumed_bytes"));
        }
    }
    series
}

/// `2026-04-01T00:00:00Z` plus `seconds`.
fn stamp(seconds: usize) -> String {
    let (d, rest) = (seconds / 86_400, seconds % 86_400);
    let date = if d < DAYS {
        day(d)
    } else {
        "2026-05-01".into()
    };
    format!(
        "{date}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Writes `usage.csv`: `config.rows` rows of a fixed population, as the plugin
/// flushes them (one row per series with traffic per flush interval, in time
/// order). The series are the same whatever the size: more rows mean finer
/// intervals (the coarsest width with room for them) and more of the series
/// active in each; rows are spread evenly over (day, series, interval of the
/// day), so every series has a row every day once `rows >= 30 × series`
/// (225,000), and the aggregates (series × days) stop growing there.
fn write_usage(config: &Config) {
    let series = usage_series();
    let per_day_needed = config.rows.div_ceil(series.len() * DAYS).max(1);
    let width = BUCKET_WIDTHS
        .into_iter()
        .find(|w| 86_400 / w >= per_day_needed)
        .unwrap_or(60);
    let per_day = 86_400 / width;
    let slots = series.len() * DAYS * per_day;
    // Slot q (in (day, series, interval) order) holds a row when the `rows`
    // evenly spaced picks over the slots step past it: exactly `rows` rows,
    // and at least one in each run of `per_day` slots when `rows >= slots / per_day`.
    let picked = |q: usize| (q + 1) * config.rows / slots > q * config.rows / slots;
    let bounds: Vec<(String, String)> = (0..DAYS * per_day)
        .map(|i| (stamp(i * width), stamp((i + 1) * width)))
        .collect();
    write_csv(
        &config.dir.join("usage.csv"),
        "version,bucket_start,bucket_end,cluster,principal,principal_source,topic,metric,value",
        slots,
        |i, b| {
            // Written in time order: interval by interval, series by series.
            let (interval, s) = (i / series.len(), i % series.len());
            let (d, k) = (interval / per_day, interval % per_day);
            if !picked((d * series.len() + s) * per_day + k) {
                return;
            }
            let (cluster, principal, topic, metric) = series[s];
            // Bytes per second of the series, varied per interval.
            let rate = 1 + (s * 7919 + interval * 104_729) % 2_000;
            let (start, end) = &bounds[interval];
            let _ = writeln!(
                b,
                "1,{start},{end},lkc-{cluster:03},sa-{principal:05},sasl_plain,topic-{topic:03},{metric},{}",
                rate * width
            );
        },
    );
}

/// Peak resident memory (VmHWM) in MiB, if the kernel says.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat`:
/// on a shared machine wall time includes other processes; CPU time does not.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Streams files into a session as the command line does with `--threads`;
/// returns (rows read, bytes).
fn feed(session: &mut Session, paths: &[PathBuf], threads: usize) -> (u64, u64) {
    let mut rows = 0;
    let mut bytes = 0;
    for path in paths {
        let open = || std::fs::File::open(path);
        let split = Split::new(threads, 1 << 20);
        let summary = session
            .read_file(&path.display().to_string(), "", open, split)
            .unwrap();
        assert_eq!(summary.rows_rejected, 0, "{:?}", summary.rejections.first());
        rows += summary.rows_read;
        bytes += summary.bytes;
    }
    (rows, bytes)
}

/// Runs [`phase`] `repeat` times and prints the run with the median wall time,
/// followed by the fastest and slowest wall times.
fn measured(
    name: &str,
    options: &Options,
    paths: &[PathBuf],
    counted: usize,
    threads: usize,
    repeat: usize,
) {
    let mut runs: Vec<(f64, String)> = (0..repeat)
        .map(|_| phase(name, options.clone(), paths, counted, threads))
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (fastest, slowest) = (runs[0].0, runs[runs.len() - 1].0);
    let (_, line) = &runs[runs.len() / 2];
    if repeat == 1 {
        println!("{line}");
    } else {
        println!("{line} [median of {repeat} runs; wall {fastest:.2}-{slowest:.2}s]");
    }
}

/// One run of a phase: (wall seconds, the line that reports it). Never
/// inlined: `valgrind --tool=callgrind --toggle-collect='*allocate::phase*'`
/// counts the instructions of exactly this.
#[inline(never)]
fn phase(
    name: &str,
    options: Options,
    paths: &[PathBuf],
    counted: usize,
    threads: usize,
) -> (f64, String) {
    let name = match threads {
        1 => format!("{name} (serial)"),
        n => format!("{name} ({n} threads)"),
    };
    let started = Instant::now();
    let cpu_started = cpu_seconds();
    let mut session = Session::new(options);
    let (rows, bytes) = feed(&mut session, paths, threads);
    let read = started.elapsed().as_secs_f64();
    let report = session.allocate_on(threads).unwrap();
    let total = started.elapsed().as_secs_f64();
    let cpu = (cpu_seconds() - cpu_started).max(0.01);
    let counted_rows: u64 = session
        .files()
        .iter()
        .take(counted)
        .map(|f| f.rows_read)
        .sum();
    assert!(report.reconciliation.balanced || report.reconciliation.invoice_subtotal.is_some());
    let line = format!(
        "{name}: {rows} rows, {:.1} MiB: wall {total:.3}s (read {read:.3}s), CPU {cpu:.2}s; \
         {:.2} M rows/s and {:.0} MiB/s per wall second, {:.2} M rows/s and {:.0} MiB/s per CPU second; \
         {} output rows, {} teams; peak memory {:.0} MiB",
        bytes as f64 / 1048576.0,
        counted_rows as f64 / total / 1e6,
        bytes as f64 / 1048576.0 / total,
        counted_rows as f64 / cpu / 1e6,
        bytes as f64 / 1048576.0 / cpu,
        report.rows.len(),
        report.teams.len(),
        peak_mib()
    );
    (total, line)
}

fn main() {
    let config = config();
    let started = Instant::now();
    if config.reuse && config.keep {
        println!("reusing the files in {}", config.dir.display());
    } else {
        generate(&config);
        println!(
            "generated {} rows per input in {:.2}s into {} (peak memory {:.0} MiB)",
            config.rows,
            started.elapsed().as_secs_f64(),
            config.dir.display(),
            peak_mib()
        );
    }
    if !config.generate_only {
        let daily = Options {
            granularity: Granularity::Daily,
            ..Options::default()
        };
        let d = &config.dir;
        let wanted = |name: &str| config.only.as_deref().is_none_or(|o| o == name);
        // Each phase serially, then in parts (when there is more than one core to use).
        let mut runs = vec![1];
        if config.threads > 1 {
            runs.push(config.threads);
        }
        if wanted("export") {
            for &threads in &runs {
                measured(
                    "confluent export + crosswalk",
                    &Options::default(),
                    &[d.join("export.csv"), d.join("crosswalk.csv")],
                    1,
                    threads,
                    config.repeat,
                );
            }
        }
        if wanted("usage") {
            for &threads in &runs {
                measured(
                    "bill + usage + crosswalk (daily)",
                    &daily,
                    &[
                        d.join("bill.csv"),
                        d.join("usage.csv"),
                        d.join("crosswalk.csv"),
                    ],
                    2,
                    threads,
                    config.repeat,
                );
            }
        }
    }
    if !config.keep {
        let _ = std::fs::remove_dir_all(&config.dir);
    }
}
