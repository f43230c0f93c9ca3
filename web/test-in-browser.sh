#!/usr/bin/env bash
# Runs the wasm module's API tests (web/tests/*.rs, #[wasm_bindgen_test]) in
# headless Chromium through chromedriver and wasm-bindgen-test-runner.
# Chrome's flags (headless, --no-sandbox for root, ...) come from web/webdriver.json,
# which the runner reads from the crate directory.
# Usage: web/test-in-browser.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.cargo/bin:$PATH"
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-120}"
unset WASM_BINDGEN_TEST_ONLY_NODE WASM_BINDGEN_TEST_ONLY_WEB NO_HEADLESS || true
# The runner needs the wasm-bindgen-cli version that matches the crate (Cargo.lock).
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' ../Cargo.lock)
have=$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $2}')
if [ "$want" != "$have" ]; then
  echo "wasm-bindgen-test-runner $have does not match wasm-bindgen $want: run scripts/setup" >&2
  exit 1
fi
exec cargo test -p tally-web --target wasm32-unknown-unknown "$@"
