//! Benchmark of the tally filter inside a real Envoy (scripts/bench-envoy).
//!
//! 1. **Record** real Kafka traffic once: librdkafka (confluent-kafka) produces
//!    to a real tansu through a recording TCP relay; the busiest connection's
//!    request frames and response frames are kept. Two scenarios: large batches
//!    (64 KiB of 1 KiB records per Produce) and many small requests (one 100-byte
//!    record per Produce).
//! 2. **Replay** the same recording through three Envoys in the same run, one at a
//!    time, each with one listener in front of a replay sink (reads each request
//!    frame, answers with the recorded response of the same index: the decoder
//!    sees a coherent conversation): plain `tcp_proxy`, + a no-op wasm filter that
//!    only counts bytes (`plugin-noop/`), + tally.
//! 3. **Measure** throughput (MB/s of request bytes, requests/s), Envoy CPU per GB
//!    moved (utime+stime of the Envoy process from `/proc/<pid>/stat` over the
//!    replay, per GB of request+response bytes), and memory per connection
//!    (Envoy's `server.memory_allocated` with 200 open connections that each did
//!    a few requests, minus before, divided by 200). Each figure is the median of
//!    `--rounds` interleaved rounds (default 6, so that with three variants
//!    each comes first, second and last in two rounds). Prints a Markdown table and ratios.
//!
//! Usage: `bench-envoy [--reps-large N] [--reps-small N] [--rounds N] [--tally-wasm PATH]
//! [--compare-wasm PATH]` (a second tally build in the same rounds, e.g. the one
//! before a change).
//!
//! `bench-envoy --native SCENARIO [--reps N]` instead runs the filter's core
//! natively over a recording a previous run left in `target/host-tests/bench-envoy/`
//! (`SCENARIO.requests.bin` / `.responses.bin`), as the plugin drives it: requests
//! and responses in [`WINDOW`]-frame chunks, each read through
//! `ConnectionDecoder::on_chunk` (the bytes it reads copied, as `get_buffer`
//! copies them into the VM; skipped bytes passed unread) into one decoder with its
//! `ConnectionMeter`, absorbed into a worker `Meter` once per replay. Meant for
//! `valgrind --tool=callgrind` (instruction counts are stable on a noisy machine);
//! prints instructions-free figures: frames, and wall time per frame.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use host_tests::metering::{envoy_json, parse_stats, MListener};
use host_tests::{
    free_port, plugin_wasm, repo_root, run_with_timeout, wait_for_port, Envoy, Tansu, Tools,
    Workdir,
};
use serde_json::json;

type Frames = Vec<Vec<u8>>;
/// One recorded connection: (client→broker bytes, broker→client bytes).
type Recorded = (Arc<Mutex<Vec<u8>>>, Arc<Mutex<Vec<u8>>>);
/// Per variant: MB/s, requests/s, CPU s per GB of each round, heap per connection.
type Results = (Vec<f64>, Vec<f64>, Vec<f64>, f64);

/// Reads one size-prefixed frame (prefix included).
fn read_frame(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).ok()?;
    let n = i32::from_be_bytes(size);
    if n < 0 {
        return None;
    }
    let mut frame = vec![0u8; 4 + n as usize];
    frame[..4].copy_from_slice(&size);
    s.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}

/// Splits a byte stream into frames (a trailing partial frame is dropped).
fn split_frames(mut data: &[u8]) -> Frames {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let n = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        if n < 0 || data.len() < 4 + n as usize {
            break;
        }
        out.push(data[..4 + n as usize].to_vec());
        data = &data[4 + n as usize..];
    }
    out
}

/// A relay that records each connection's two byte streams.
fn record(tools: &Tools, dir: &Workdir, scenario: &str, client_args: &[&str]) -> (Frames, Frames) {
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    let tansu = Tansu::start_named(
        tools,
        dir,
        &format!("tansu-record-{scenario}"),
        relay_port,
        &[],
    );
    let mut create = Command::new(&tools.tansu);
    create
        .args(["topic", "create", "bench", "--partitions", "1", "--broker"])
        .arg(format!("tcp://127.0.0.1:{}", tansu.port));
    run_with_timeout(
        dir,
        &format!("topic-{scenario}"),
        &mut create,
        Duration::from_secs(30),
    );
    let upstream = tansu.port;
    let conns: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let conns2 = conns.clone();
    std::thread::spawn(move || {
        for client in relay.incoming().flatten() {
            let server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
            let (req, resp) = (
                Arc::new(Mutex::new(Vec::new())),
                Arc::new(Mutex::new(Vec::new())),
            );
            conns2.lock().unwrap().push((req.clone(), resp.clone()));
            for (mut from, mut to, log) in [
                (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    req,
                ),
                (server, client, resp),
            ] {
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    let mut cmd = Command::new(&tools.python);
    cmd.arg(repo_root().join("host-tests/clients/kafka_client.py"))
        .args([
            "--lib",
            "confluent",
            "--topic",
            "bench",
            "--produce-only",
            "--client-id",
            "bench-producer",
        ])
        .arg("--bootstrap")
        .arg(format!("127.0.0.1:{relay_port}"))
        .args(client_args);
    let (ok, out, err) = run_with_timeout(
        dir,
        &format!("record-{scenario}"),
        &mut cmd,
        Duration::from_secs(300),
    );
    assert!(ok, "recording client failed: {out}\n{err}");
    std::thread::sleep(Duration::from_millis(500));
    let conns = conns.lock().unwrap();
    let (req, resp) = conns
        .iter()
        .max_by_key(|(r, _)| r.lock().unwrap().len())
        .expect("a recorded connection");
    let requests = split_frames(&req.lock().unwrap());
    let mut responses = split_frames(&resp.lock().unwrap());
    let n = requests.len().min(responses.len());
    responses.truncate(n);
    (requests[..n].to_vec(), responses)
}

/// The replay sink: answers request frame i with recorded response i (mod n).
fn start_sink(responses: Arc<Frames>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let responses = responses.clone();
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut r = std::io::BufReader::with_capacity(1 << 16, s.try_clone().unwrap());
                let mut w = s;
                let mut i = 0usize;
                while read_frame(&mut r).is_some() {
                    if w.write_all(&responses[i % responses.len()]).is_err() {
                        break;
                    }
                    i += 1;
                }
            });
        }
    });
    port
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0, so utime (14) is 11, stime (15) is 12.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn clk_tck() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().ok();
    out.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

struct Sample {
    mb_s: f64,
    req_s: f64,
    cpu_s_per_gb: f64,
}

/// Most requests in flight on the replay connection (a client's window; the
/// decoder's in-flight FIFO holds 256 by default, beyond which it fails open).
const WINDOW: usize = 64;

/// Replays `reps` times the recorded requests on one connection, at most
/// [`WINDOW`] requests ahead of the responses; waits for all responses.
fn replay(envoy: &Envoy, port: u16, requests: &Frames, responses: &Frames, reps: usize) -> Sample {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let total = requests.len() * reps;
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).ok();
    let mut reader = std::io::BufReader::with_capacity(1 << 16, s.try_clone().unwrap());
    let received = Arc::new(AtomicUsize::new(0));
    let pid = envoy.process.pid();
    let t0 = cpu_ticks(pid);
    let start = Instant::now();
    let writer = {
        let received = received.clone();
        let requests = requests.clone();
        let mut s = s;
        std::thread::spawn(move || {
            let mut sent = 0usize;
            let mut buf = Vec::with_capacity(1 << 20);
            while sent < total {
                let outstanding = sent - received.load(Ordering::Acquire);
                if outstanding >= WINDOW {
                    std::thread::yield_now();
                    continue;
                }
                buf.clear();
                for i in sent..(sent + WINDOW - outstanding).min(total) {
                    buf.extend_from_slice(&requests[i % requests.len()]);
                }
                sent = (sent + WINDOW - outstanding).min(total);
                s.write_all(&buf).unwrap();
            }
            s
        })
    };
    let mut resp_bytes = 0usize;
    for n in 1..=total {
        let frame = read_frame(&mut reader).expect("a response frame");
        resp_bytes += frame.len();
        received.store(n, Ordering::Release);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let t1 = cpu_ticks(pid);
    drop(writer.join().unwrap());
    let req_bytes = (requests.iter().map(Vec::len).sum::<usize>() * reps) as f64;
    let total_bytes = req_bytes + resp_bytes as f64;
    let _ = responses;
    Sample {
        mb_s: req_bytes / elapsed / 1e6,
        req_s: total as f64 / elapsed,
        cpu_s_per_gb: (t1 - t0) as f64 / clk_tck() / (total_bytes / 1e9),
    }
}

/// Envoy's allocated heap per open connection that did `warm` requests.
fn memory_per_connection(
    envoy: &Envoy,
    port: u16,
    requests: &Frames,
    responses: &Frames,
    conns: usize,
    warm: usize,
) -> f64 {
    // `/memory` is computed on request (the `server.memory_allocated` gauge only
    // moves on a stats flush).
    let allocated = || {
        let body = host_tests::http::get(envoy.admin_port, "/memory")
            .map(|r| r.body_text())
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["allocated"]
            .as_str()
            .and_then(|a| a.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = allocated();
    let warm = warm.min(requests.len());
    let expect: usize = responses[..warm].iter().map(Vec::len).sum();
    let mut open = Vec::new();
    for _ in 0..conns {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&requests[..warm].concat()).unwrap();
        let mut got = 0;
        let mut buf = vec![0u8; 1 << 16];
        while got < expect {
            got += s.read(&mut buf).unwrap();
        }
        open.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = allocated();
    drop(open);
    (after - before) / conns as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The filter's core over a recorded conversation, natively (see the module doc).
fn native(scenario: &str, reps: usize) {
    use tally::kafka::{ConnectionDecoder, DecoderConfig, Direction};
    use tally::meter::{Meter, MeterConfig, NoCounters};
    use tally::time::Timestamp;
    let dir = repo_root().join("target/host-tests/bench-envoy");
    let read = |what: &str| {
        let path = dir.join(format!("{scenario}.{what}.bin"));
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run scripts/bench-envoy once to record)",
                path.display()
            )
        })
    };
    let (requests, responses) = (
        split_frames(&read("requests")),
        split_frames(&read("responses")),
    );
    let n = requests.len().min(responses.len());
    let chunks =
        |frames: &[Vec<u8>]| -> Frames { frames[..n].chunks(WINDOW).map(|c| c.concat()).collect() };
    let (req_chunks, resp_chunks) = (chunks(&requests), chunks(&responses));
    let mut meter = Meter::new(MeterConfig {
        cluster: "bench".into(),
        ..MeterConfig::default()
    });
    // (reads, bytes copied) over all reps.
    let mut copied = (0usize, 0usize);
    let start = Instant::now();
    for _ in 0..reps {
        let mut decoder = ConnectionDecoder::new(DecoderConfig::default());
        let mut conn = meter.connection(Timestamp(1_700_000_000));
        for (req, resp) in req_chunks.iter().zip(&resp_chunks) {
            for (direction, chunk) in [(Direction::Request, req), (Direction::Response, resp)] {
                conn.set_now(Timestamp(1_700_000_000));
                // As the plugin's `get_buffer(buffer, offset, len)`: a fresh copy per read.
                decoder.on_chunk(direction, chunk.len(), &mut conn, |offset, len| {
                    copied = (copied.0 + 1, copied.1 + len);
                    chunk.get(offset..offset + len).map(<[u8]>::to_vec)
                });
            }
        }
        decoder.on_close(&mut conn);
        conn.finish();
        meter.absorb(&mut conn, &mut NoCounters);
        assert_eq!(meter.stats().decode_errors, 0, "decoded without errors");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let frames = (2 * n * reps) as f64;
    let bytes: usize = req_chunks.iter().chain(&resp_chunks).map(Vec::len).sum();
    println!(
        "native {scenario}: {reps} x {n} request/response pairs in {} chunks each way; {:.0} ns per frame (wall), {} series; {:.2} reads per chunk, {:.1}% of the bytes copied",
        req_chunks.len(),
        elapsed * 1e9 / frames,
        meter.series(),
        copied.0 as f64 / (2 * req_chunks.len() * reps).max(1) as f64,
        100.0 * copied.1 as f64 / (bytes * reps).max(1) as f64,
    );
}

fn main() {
    if let Some(scenario) = std::env::args().skip_while(|a| a != "--native").nth(1) {
        native(&scenario, arg("--reps", 10));
        return;
    }
    let tools = Tools::locate();
    let dir = Workdir::new("bench-envoy");
    // `--tally-wasm PATH`: another build of the filter (e.g. a before/after pair).
    let tally = std::env::args()
        .skip_while(|a| a != "--tally-wasm")
        .nth(1)
        .map_or_else(plugin_wasm, std::path::PathBuf::from);
    let noop = repo_root().join("dist/tally_plugin_noop.wasm");
    assert!(
        noop.exists(),
        "{} is missing: run scripts/build",
        noop.display()
    );
    let rounds = arg("--rounds", 6);
    let scenarios = [
        (
            "large batches (64 KiB of 1 KiB records)",
            "large",
            vec![
                "--count",
                "19200",
                "--size",
                "1024",
                "--linger-ms",
                "200",
                "--batch-bytes",
                "65536",
                "--codec",
                "none",
            ],
            arg("--reps-large", 40),
        ),
        (
            "many small requests (one 100-byte record each)",
            "small",
            vec![
                "--count",
                "3000",
                "--size",
                "100",
                "--linger-ms",
                "0",
                "--one-record-per-request",
                "--codec",
                "none",
            ],
            arg("--reps-small", 150),
        ),
    ];
    // `--compare-wasm PATH`: a second tally build run in the same rounds
    // (variant "tally (compare)"), e.g. the build before a change.
    let compare = std::env::args()
        .skip_while(|a| a != "--compare-wasm")
        .nth(1)
        .map(std::path::PathBuf::from);
    let mut variants = vec!["plain tcp_proxy", "no-op wasm", "tally"];
    if compare.is_some() {
        variants.push("tally (compare)");
    }
    let mut report = String::new();
    report.push_str("| scenario | Envoy | MB/s (requests) | requests/s | CPU s per GB | heap per connection |\n|---|---|---:|---:|---:|---:|\n");
    let mut ratios = String::new();
    for (title, short, client_args, reps) in scenarios {
        let args: Vec<&str> = client_args.to_vec();
        let (requests, responses) = record(&tools, &dir, short, &args);
        // Kept for native profiling of the same traffic (frames concatenated).
        std::fs::write(
            dir.join(&format!("{short}.requests.bin")),
            requests.concat(),
        )
        .ok();
        std::fs::write(
            dir.join(&format!("{short}.responses.bin")),
            responses.concat(),
        )
        .ok();
        let req_bytes: usize = requests.iter().map(Vec::len).sum();
        eprintln!(
            "{title}: recorded {} request frames ({} bytes), replayed {reps}x per round",
            requests.len(),
            req_bytes
        );
        let sink = start_sink(Arc::new(responses.clone()));
        let mut results: BTreeMap<&str, Results> = BTreeMap::new();
        for round in 0..rounds {
            // Each round starts with the next variant: on this shared VM the
            // first Envoy of a round tends to meet a different machine than
            // the last, and a fixed order would charge that to one variant.
            let mut order = variants.clone();
            order.rotate_left(round % variants.len());
            for &variant in &order {
                let (admin, port) = (free_port(), free_port());
                let plugin = match variant {
                    "tally" | "tally (compare)" => {
                        Some(json!({"cluster": "bench", "flush_interval_seconds": 300}))
                    }
                    "no-op wasm" => Some(json!({})),
                    _ => None,
                };
                let wasm = match (variant, &compare) {
                    ("no-op wasm", _) => noop.clone(),
                    ("tally (compare)", Some(path)) => path.clone(),
                    _ => tally.clone(),
                };
                let listeners = vec![MListener {
                    name: "bench".into(),
                    port,
                    plugin,
                    tls: None,
                    cluster: "sink".into(),
                }];
                let config = envoy_json(admin, &wasm, &listeners, &[("sink", sink)]);
                let envoy = Envoy::start(&tools, &dir, &config, admin);
                wait_for_port(port, Duration::from_secs(10), "the bench listener");
                replay(&envoy, port, &requests, &responses, 1); // warm-up
                let s = replay(&envoy, port, &requests, &responses, reps);
                let mem = if round == 0 {
                    memory_per_connection(&envoy, port, &requests, &responses, 200, 3)
                } else {
                    0.0
                };
                let e = results
                    .entry(variant)
                    .or_insert((Vec::new(), Vec::new(), Vec::new(), 0.0));
                e.0.push(s.mb_s);
                e.1.push(s.req_s);
                e.2.push(s.cpu_s_per_gb);
                if round == 0 {
                    e.3 = mem;
                }
                if variant.starts_with("tally") {
                    // Honest figures: tally decoded everything (no fail-open to raw counting).
                    let stats = parse_stats(&envoy.stats());
                    let sum = |prefix: &str| {
                        stats
                            .iter()
                            .filter(|(k, _)| k.starts_with(prefix))
                            .map(|(_, v)| *v)
                            .sum::<u64>()
                    };
                    assert!(
                        sum("wasmcustom.tally_requests") > 0,
                        "tally metered nothing: is the filter loaded?"
                    );
                    assert_eq!(
                        sum("wasmcustom.tally_decode_errors"),
                        0,
                        "tally failed open during the replay"
                    );
                }
            }
        }
        let m = |v: &str| {
            let r = &results[v];
            (
                median(r.0.clone()),
                median(r.1.clone()),
                median(r.2.clone()),
                r.3,
            )
        };
        for &v in &variants {
            let (mb, rq, cpu, mem) = m(v);
            report.push_str(&format!(
                "| {title} | {v} | {mb:.1} | {rq:.0} | {cpu:.2} | {:.1} KiB |\n",
                mem / 1024.0
            ));
        }
        let (p, n, t) = (m("plain tcp_proxy"), m("no-op wasm"), m("tally"));
        // Paired per round (the three Envoys of a round run back to back, so a
        // burst of load from elsewhere on the machine hits them alike).
        let paired = |a: &Vec<f64>, b: &Vec<f64>| -> Vec<f64> {
            a.iter().zip(b).map(|(x, y)| x / y).collect()
        };
        let cpu_rounds = paired(&results["tally"].2, &results["no-op wasm"].2);
        let tput_rounds = paired(&results["tally"].0, &results["plain tcp_proxy"].0);
        let list = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        ratios.push_str(&format!(
            "- {title}: tally throughput = {:.1}% of plain tcp_proxy ({:.1}% of no-op wasm); tally CPU per GB = {:.2}x no-op wasm ({:.2}x plain); paired per round: CPU {:.2}x no-op wasm (rounds {}), throughput {:.1}% of plain (rounds {})\n",
            100.0 * t.0 / p.0,
            100.0 * t.0 / n.0,
            t.2 / n.2,
            t.2 / p.2,
            median(cpu_rounds.clone()),
            list(&cpu_rounds),
            100.0 * median(tput_rounds.clone()),
            list(&tput_rounds),
        ));
        if variants.contains(&"tally (compare)") {
            let c = m("tally (compare)");
            let rounds = paired(&results["tally"].2, &results["tally (compare)"].2);
            ratios.push_str(&format!(
                "- {title}: tally (compare) CPU per GB = {:.2}x no-op wasm; tally / tally (compare) CPU per GB paired per round: {:.2}x (rounds {})\n",
                c.2 / n.2,
                median(rounds.clone()),
                list(&rounds),
            ));
        }
    }
    let out = format!("{report}\n{ratios}");
    println!("{out}");
    std::fs::write(repo_root().join("target/bench-envoy.md"), &out).ok();
}
