//! Foundation check: real headless Chromium opens the built page from a local static
//! server and the page's wasm module answers; only the page's own files are fetched.

use host_tests::http::{Server, ServerConfig};
use host_tests::{repo_root, run_with_timeout, web_dist, Tools, Workdir};
use std::process::Command;
use std::time::Duration;

#[test]
fn chromium_loads_the_page_and_its_wasm_module() {
    let tools = Tools::locate();
    let dir = Workdir::new("browser_smoke");
    let server = Server::start(
        0,
        ServerConfig {
            static_root: Some(web_dist()),
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{}/", server.port);
    let (ok, out, err) = run_with_timeout(
        &dir,
        "chromium",
        Command::new(&tools.node)
            .arg(repo_root().join("host-tests/browser/smoke.mjs"))
            .arg(&url)
            .arg(dir.path()),
        Duration::from_secs(60),
    );
    assert!(ok, "browser script failed:\n{out}\n{err}");
    let result: serde_json::Value =
        serde_json::from_str(out.trim().lines().last().unwrap_or("")).unwrap();
    assert_eq!(
        result["version"],
        format!("tally {}", env!("CARGO_PKG_VERSION"))
    );
    let own_origin = url.trim_end_matches('/');
    for request in result["requests"].as_array().unwrap() {
        let request = request.as_str().unwrap();
        assert!(
            request.starts_with(own_origin),
            "the page fetched {request}, not one of its own files"
        );
    }
    let served = server.requests();
    assert!(
        served.iter().any(|r| r.contains("tally_web_bg.wasm")),
        "wasm not fetched: {served:?}"
    );
}
