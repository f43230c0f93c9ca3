#!/usr/bin/env bash
# Builds only the page into dist/web (the web half of scripts/build): for quick
# iteration on web/ when the rest of the workspace is mid-change.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
T=wasm32-unknown-unknown
cargo build --release --target $T -p tally-web
rm -rf dist/web && mkdir -p dist/web target/web-opt
cp -r web/www/. dist/web/
# wasm-opt runs BEFORE wasm-bindgen: Debian's binaryen 108, run on wasm-bindgen's
# output, re-points the `__wbindgen_externrefs` export at the funcref table and
# the module then fails to start ("WebAssembly.Table.set(): Argument 1 is invalid").
wasm-opt -O3 --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int \
  --enable-reference-types target/$T/release/tally_web.wasm -o target/web-opt/tally_web.wasm
wasm-bindgen --target web --no-typescript --out-dir dist/web/pkg target/web-opt/tally_web.wasm
printf 'dist/web/pkg/tally_web_bg.wasm %s bytes (%s gzip)\n' \
  "$(stat -c %s dist/web/pkg/tally_web_bg.wasm)" "$(gzip -9c dist/web/pkg/tally_web_bg.wasm | wc -c)"
