#!/usr/bin/env bash
# The whole Cardpay test suite, on the real stack (pcscd + vpcd + virtual card,
# Chromium + extension + bridge, payment server on SQLite, and again on a
# throw-away PostgreSQL). This is the command README.md gives and CI runs.
# Installs what a fresh Debian machine lacks first.
#
#   FUZZ_SECONDS=N   length of each bounded fuzz run (default 30)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
export CARGO_TERM_COLOR=never
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
step() { printf '\n==== %s (%ss)\n' "$*" "$SECONDS"; }

step "setup"
bash scripts/setup.sh

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "a throw-away PostgreSQL (scripts/pg.sh), stopped when this script ends"
export CARDPAY_PG_DIR="${CARDPAY_PG_DIR:-$(mktemp -d /tmp/cardpay-pg-test.XXXXXX)}"
if [ -z "${CARDPAY_PG_PORT:-}" ]; then # a free port: a developer's own pg.sh may hold the default
  for p in $(seq 55433 55499); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { CARDPAY_PG_PORT=$p; break; }; done
  export CARDPAY_PG_PORT
fi
trap 'bash scripts/pg.sh down' EXIT
bash scripts/pg.sh up
eval "$(bash scripts/pg.sh env)"

step "build the binaries the tests start"
cargo build --workspace --bins --examples --locked
export CARDPAY_CARD_BIN="$CARGO_TARGET_DIR/debug/card"
export CARDPAY_BRIDGE_BIN="$CARGO_TARGET_DIR/debug/bridge"

step "unit, property and integration tests (real pcscd, vpcd, SQLite, HTTP; several instances on PostgreSQL)"
cargo test --workspace --locked

step "payment server and loading suites again with the store on PostgreSQL (a schema per test)"
CARDPAY_TEST_DB=postgres cargo test --locked -p payment-server -p payment-testkit -p demo-merchant

step "payment server suites again with the security module in a PKCS#11 token (SoftHSM2)"
CARDPAY_TEST_SM=pkcs11 cargo test --locked -p payment-server \
  --test purchase_modes --test attacks --test recovery --test crash --test webhooks \
  --test loads --test load_attacks --test load_conservation

step "widget and purse tests again with the browser's JSON format (purse/lite-json, what the wasm build uses)"
cargo test --locked -p purse -p widget --features purse/lite-json

step "bounded fuzz runs (${FUZZ_SECONDS}s each)"
card/fuzz/run.sh "$FUZZ_SECONDS"
bridge/fuzz/run.sh "$FUZZ_SECONDS"

step "widget: wasm build and wasm-bindgen tests in headless Chromium"
bash scripts/build-widget.sh
# Each wasm is built from the widget with one mode and one language (docs/widget.md,
# "Build"): those feature sets linted and unit-tested too, natively and for wasm32.
for f in purchase load; do
  cargo clippy --locked -p widget --all-targets --no-default-features --features "$f,en,de" -- -D warnings
  cargo clippy --locked -p widget --all-targets --no-default-features --features "$f,en,de" \
    --target wasm32-unknown-unknown -- -D warnings
  for lang in en de; do
    # the shipped wasm's lib (no std; its tests bring std, so the lib alone)
    cargo clippy --locked -p widget --lib --no-default-features --features "$f,$lang,trap-on-panic" \
      --target wasm32-unknown-unknown -- -D warnings
    cargo test --locked -p widget --lib --no-default-features --features "$f,$lang"
  done
done
bash scripts/test-widget-wasm.sh

step "browser tests: Chromium + extension + bridge + card + servers"
# browsers.test.mjs runs the shopper tests (readiness, purchases, other origins hear
# nothing) in Firefox (firefox-esr, puppeteer-core over WebDriver BiDi) as in Chromium.
(cd tests/browser && node --test --test-concurrency=1 ./*.test.mjs)

step "all tests passed"
