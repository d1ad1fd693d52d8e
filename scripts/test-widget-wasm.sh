#!/usr/bin/env bash
# wasm-bindgen-test of the widget in headless Chromium (chromedriver from Debian's chromium-driver).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
command -v wasm-bindgen-test-runner >/dev/null || "$ROOT/scripts/build-widget.sh" --dev
export CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-120}"
# the runner reads webdriver.json (headless, --no-sandbox) from the crate directory
cd widget
exec cargo test -p widget --target wasm32-unknown-unknown "$@"
