#!/usr/bin/env bash
# Bounded fuzz run of the card's APDU entry point, for CI and humans.
#   card/fuzz/run.sh [SECONDS]      (default 30)
# Needs cargo-fuzz (installed here, pinned, if missing). There is no nightly
# toolchain on these machines: RUSTC_BOOTSTRAP=1 lets stable rustc accept the
# -Z flags cargo-fuzz passes (sanitizer, coverage options).
set -euo pipefail
secs="${1:-30}"
here="$(cd "$(dirname "$0")" && pwd)"
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
cd "$here"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_FUZZ_TARGET_DIR:-$here/target}"
mkdir -p corpus/apdu
# seed corpus: a SELECT, GET BALANCE, VERIFY, INITIALIZE in the chunked format
printf '\x01\x0e\x00\xa4\x04\x00\x08\xf0\x43\x41\x52\x44\x50\x41\x59\x00\x05\x80\x5c\x00\x00\x04\x09\x00\x20\x00\x00\x04\x31\x32\x33\x34\x10\x80\x50\x01\x00\x0a\x00\x00\x00\x64\x00\x00\x00\x00\x00\x01\x0c' > corpus/apdu/seed-purchase
exec cargo fuzz run apdu corpus/apdu -- -max_total_time="$secs" -max_len=512 -print_final_stats=1
