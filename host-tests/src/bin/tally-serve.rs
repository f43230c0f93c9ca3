//! `tally-serve`: serves the static page (and extra directories) on 127.0.0.1 and
//! collects POSTed usage flushes into a file. Used by `scripts/demo`.
//!
//! ```text
//! tally-serve --port 8080 --dir dist/web [--mount /demo/=out/demo] [--collect-posts-to out/usage.csv]
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use host_tests::http::{Server, ServerConfig};
use std::path::PathBuf;

fn main() {
    let mut port = 0u16;
    let mut config = ServerConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--port" => {
                port = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--port needs a number"))
            }
            "--dir" => config.static_root = Some(PathBuf::from(value())),
            "--mount" => {
                let v = value();
                let (prefix, dir) = v
                    .split_once('=')
                    .unwrap_or_else(|| usage("--mount takes /prefix/=dir"));
                config.mounts.push((prefix.to_string(), PathBuf::from(dir)));
            }
            "--collect-posts-to" => config.collect_posts_to = Some(PathBuf::from(value())),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let server =
        Server::start(port, config).unwrap_or_else(|e| usage(&format!("cannot listen: {e}")));
    println!("listening on http://127.0.0.1:{}/", server.port);
    loop {
        std::thread::park();
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("tally-serve: {problem}");
    }
    eprintln!("usage: tally-serve [--port N] [--dir DIR] [--mount /prefix/=DIR]... [--collect-posts-to FILE]");
    std::process::exit(if problem.is_empty() { 0 } else { 2 })
}
