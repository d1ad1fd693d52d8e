#!/usr/bin/env bash
# Bounded fuzz run of the bridge's message parser (for CI): bridge/fuzz/run.sh SECONDS
# Needs cargo-fuzz (cargo install cargo-fuzz --version 0.13.2 --locked). There is
# no nightly toolchain here: RUSTC_BOOTSTRAP=1 lets stable rustc take the
# sanitizer flags cargo-fuzz passes.
set -euo pipefail
secs="${1:-30}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
# its own target dir: the sanitizer flags would otherwise rebuild the main one
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz"
else
  export CARGO_TARGET_DIR="$here/target"
fi
# work on a copy so CI runs do not grow the committed seed corpus
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r corpus/message_parser "$work/corpus"
RUSTC_BOOTSTRAP=1 cargo fuzz run message_parser "$work/corpus" -- \
  -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1
echo "fuzz: message_parser ran ${secs}s without a crash"
