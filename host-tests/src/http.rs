//! A minimal HTTP/1.1 client and server over `std::net`, enough for the host tests
//! and the demo: GET/POST to Envoy's admin port, and a server that serves a static
//! directory (the page) and collects POSTed bodies (the plugin's usage flush).
//!
//! The server answers one request per connection (`Connection: close`) on a small
//! thread per connection, records every request line it saw (so a browser test can
//! assert the page fetched only its own files), and sends the page's
//! Content-Security-Policy header on every response.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A response read by the client.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Raw body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as (lossy) UTF-8.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET http://127.0.0.1:<port><path>`.
pub fn get(port: u16, path: &str) -> std::io::Result<Response> {
    request(port, "GET", path, &[])
}

/// `POST http://127.0.0.1:<port><path>` with `body`.
pub fn post(port: u16, path: &str, body: &[u8]) -> std::io::Result<Response> {
    request(port, "POST", path, body)
}

fn request(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || data.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[(eol + 4 + size).min(data.len())..];
    }
    out
}

/// The Content-Security-Policy sent with every page response: the page may load
/// only its own files and run its own wasm; it may connect nowhere.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; \
style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'";

/// What the server does with requests.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Serve files under this directory for GET (no directory listing; `/` → `index.html`).
    pub static_root: Option<PathBuf>,
    /// Extra directories mounted under a URL prefix, e.g. (`/demo/`, dir).
    pub mounts: Vec<(String, PathBuf)>,
    /// Append every POST body to this file (each body as sent).
    pub collect_posts_to: Option<PathBuf>,
}

/// A running server; stops when dropped.
pub struct Server {
    /// The port it listens on.
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    posts: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Starts on `port` (0 = a free one) on 127.0.0.1.
    pub fn start(port: u16, config: ServerConfig) -> std::io::Result<Server> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let posts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = (
            requests.clone(),
            posts.clone(),
            stop.clone(),
            Arc::new(config),
        );
        std::thread::spawn(move || {
            let (requests, posts, stop, config) = shared;
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (requests, posts, config) = (requests.clone(), posts.clone(), config.clone());
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &config, &requests, &posts);
                });
            }
        });
        Ok(Server {
            port,
            requests,
            posts,
            stop,
        })
    }

    /// Every request line seen so far (`GET /index.html`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Every POST body received so far.
    pub fn posts(&self) -> Vec<Vec<u8>> {
        self.posts.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // unblock accept()
    }
}

fn serve_one(
    stream: TcpStream,
    config: &ServerConfig,
    requests: &Mutex<Vec<String>>,
    posts: &Mutex<Vec<Vec<u8>>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        // Closed before any request: a browser's speculative preconnect that
        // went unused. Nothing was requested.
        return Ok(());
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let mut content_length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    if let Ok(mut r) = requests.lock() {
        r.push(format!("{method} {target}"));
    }
    let mut out = stream;
    match method {
        "POST" => {
            let mut body = vec![0; content_length];
            reader.read_exact(&mut body)?;
            if let Some(path) = &config.collect_posts_to {
                let mut f = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                f.write_all(&body)?;
            }
            if let Ok(mut p) = posts.lock() {
                p.push(body);
            }
            respond(&mut out, 200, "text/plain", b"ok")
        }
        "GET" | "HEAD" => match resolve(config, target) {
            Some(file) => match fs::read(&file) {
                Ok(bytes) => respond(&mut out, 200, content_type(&file), &bytes),
                Err(_) => respond(&mut out, 404, "text/plain", b"not found"),
            },
            None => respond(&mut out, 404, "text/plain", b"not found"),
        },
        _ => respond(&mut out, 405, "text/plain", b"method not allowed"),
    }
}

/// Maps a URL path to a file, refusing anything that climbs out of the root.
fn resolve(config: &ServerConfig, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let (root, rest) = config
        .mounts
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        .map(|(prefix, dir)| (dir.clone(), &path[prefix.len()..]))
        .or_else(|| {
            config
                .static_root
                .clone()
                .map(|r| (r, path.trim_start_matches('/')))
        })?;
    let rest = if rest.is_empty() || rest.ends_with('/') {
        format!("{rest}index.html")
    } else {
        rest.to_string()
    };
    let relative = Path::new(&rest);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let file = root.join(relative);
    file.is_file().then_some(file)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "csv" => "text/csv; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "toml" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn respond(
    out: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Error",
    };
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Content-Security-Policy: {PAGE_CSP}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(body)?;
    out.flush()
}
