#!/usr/bin/env bash
# Install what a fresh Debian machine lacks to build, test and demo Cardpay.
# Idempotent: every step checks first. Uses only Debian, crates.io and npm.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(pcscd vsmartcard-vpcd libpcsclite-dev pkg-config pcsc-tools chromium chromium-driver g++ curl)
# The PKCS#11 security module tests (softhsm2); pkcs11-tool for diagnostics (opensc).
APT_PACKAGES+=(softhsm2 opensc)
# PostgreSQL for the second store backend: scripts/pg.sh runs a throw-away server
# from its binaries (initdb + pg_ctl as an unprivileged user) for tests and the demo.
APT_PACKAGES+=(postgresql)
# Firefox for the browser tests (puppeteer-core drives it over WebDriver BiDi, no driver binary).
APT_PACKAGES+=(firefox-esr)
# TLS for the demo and the browser tests: openssl makes the local TEST CA
# (scripts/certs.sh); certutil puts it into the browsers' NSS databases.
APT_PACKAGES+=(openssl libnss3-tools)
# The widget's gzip copies (scripts/build-widget.sh): zopfli writes gzip that any
# browser reads, 5 % smaller than gzip -9.
APT_PACKAGES+=(zopfli)
WASM_BINDGEN_VERSION=0.2.130
WASM_PACK_VERSION=0.15.1
CARGO_FUZZ_VERSION=0.13.2

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js runs the browser tests (playwright-core) and npm's binaryen; Debian's is new enough.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding rustup target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION\$"; then
  echo "setup: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes)"
  # Not --locked: the registry lacks one locked dependency version (ENVIRONMENT.md).
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# The widget is built with wasm-pack (settings in widget/Cargo.toml); it uses the
# wasm-bindgen-cli above and npm binaryen's wasm-opt, downloading nothing itself.
if ! wasm-pack --version 2>/dev/null | grep -q " $WASM_PACK_VERSION\$"; then
  echo "setup: installing wasm-pack $WASM_PACK_VERSION (about 2 minutes)"
  cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked
fi

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "setup: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# Node packages for the browser tests (playwright-core drives Debian's chromium;
# binaryen's wasm-opt, because Debian's corrupts wasm-bindgen output).
# puppeteer-core drives Debian's chromium and firefox-esr: never download a browser.
export PUPPETEER_SKIP_DOWNLOAD=1
if [ -f tests/browser/package.json ]; then
  (cd tests/browser && { [ -f package-lock.json ] && npm ci --no-audit --no-fund || npm install --no-audit --no-fund; })
fi
echo "setup: ok"
