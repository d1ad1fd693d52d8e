#!/usr/bin/env bash
# Build the Cardpay checkout widget (Rust → wasm) with wasm-pack into www/pkg, and
# print SRI hashes. One wasm per mode and shopper language, from one source
# (widget/Cargo.toml's features): pkg/<version>/widget.js + widget_bg.wasm (features
# `purchase`, `en`: a merchant's checkout in English), widget-de.js + widget-de_bg.wasm
# (`purchase`, `de`), and pkg/<version>/widget-load.js + widget-load_bg.wasm (`load`,
# `en`: a bank's load page), widget-load-de.js + widget-load-de_bg.wasm (`load`, `de`);
# pkg/<version>/widget-boot.js loads the one for the frame's `mode` and `lang`. <version> is
# a hash of the folder's files (named in pkg/manifest.json): the payment server has
# browsers keep what is in it for a year (docs/payment-server.md, "Static files"). Also
# writes www/widget.html and www/install.html from widget/web/ (naming the folder) and
# the loader www/checkout.js (minified) from its source widget/web/checkout.js.
# wasm-pack's settings (wasm-opt flags, wasm-bindgen options) are in
# widget/Cargo.toml, [package.metadata.wasm-pack].
#
# Installs what a fresh machine lacks, from the project's registries only:
#   - rustup target wasm32-unknown-unknown
#   - wasm-bindgen-cli 0.2.130 (cargo install; must equal the wasm-bindgen crate pin,
#     so wasm-pack uses it instead of downloading one)
#   - wasm-pack 0.15.1 (cargo install --locked)
#   - wasm-opt from the npm package binaryen@132 (into widget/.tools), first on PATH so
#     wasm-pack takes it. Debian's wasm-opt (binaryen 108) corrupts wasm-bindgen
#     output: it is never used.
#   - esbuild 0.28.2 (npm, into widget/.tools): minifies wasm-bindgen's JS glue.
# Nothing is downloaded at build time (wasm-pack only asks crates.io, in the
# background, whether a newer wasm-pack exists).
# Options: --no-opt (skip wasm-opt), --dev (debug build, no wasm-opt).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
WASM_BINDGEN_VERSION=0.2.130
WASM_PACK_VERSION=0.15.1
BINARYEN_VERSION=132.0.0
ESBUILD_VERSION=0.28.2
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
MODE=(--release)
for a in "$@"; do
  case "$a" in
    --no-opt) MODE=(--release --no-opt) ;;
    --dev) MODE=(--dev) ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
log() { echo "build-widget: $*" >&2; }

# 1. toolchain
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  log "adding rustup target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
WB="$(command -v wasm-bindgen || true)"
if [ -z "$WB" ] || [ "$("$WB" --version | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (cargo install, ~3 min)"
  # no --locked: the registry mirror lacks one locked dependency version
  CARGO_TARGET_DIR="$ROOT/target/tools" cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi
if ! wasm-pack --version 2>/dev/null | grep -q " $WASM_PACK_VERSION\$"; then
  log "installing wasm-pack $WASM_PACK_VERSION (cargo install, ~2 min)"
  CARGO_TARGET_DIR="$ROOT/target/tools" cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked --force
fi
TOOLS="$ROOT/widget/.tools"
WASM_OPT="$TOOLS/node_modules/.bin/wasm-opt"
ESBUILD="$TOOLS/node_modules/.bin/esbuild"
if ! { [ -x "$WASM_OPT" ] && "$WASM_OPT" --version | grep -q "version ${BINARYEN_VERSION%%.*}" \
  && [ -x "$ESBUILD" ] && [ "$("$ESBUILD" --version)" = "$ESBUILD_VERSION" ]; }; then
  log "installing npm binaryen@$BINARYEN_VERSION and esbuild@$ESBUILD_VERSION into widget/.tools"
  mkdir -p "$TOOLS"
  printf '{ "name": "cardpay-widget-tools", "private": true, "dependencies": { "binaryen": "%s", "esbuild": "%s" } }\n' "$BINARYEN_VERSION" "$ESBUILD_VERSION" > "$TOOLS/package.json"
  (cd "$TOOLS" && npm install --no-audit --no-fund --silent)
fi
# wasm-pack finds wasm-bindgen and wasm-opt on PATH: ours first.
export PATH="$TOOLS/node_modules/.bin:$(dirname "$(command -v wasm-bindgen)"):$PATH"

# 2. build. Size over speed for every crate in the wasm (the workspace profile sets
# opt-level z for the widget crate only). `trap-on-panic`: the wasm without std (a
# panic traps; docs/widget.md, "no_std"); the build fails if anything links std again.
OUT="$ROOT/www/pkg"
rm -rf "$OUT.tmp" "$OUT".tmp-*
# No cipher or hash in the wasm: the browser's WebCrypto seals, opens and hashes
# (docs/widget.md, "Code").
# Each build after the first reuses its dependency artifacts (only the widget crate's
# features differ): it costs the widget crate, the link and wasm-opt again. A build
# speaks one language: a shopper downloads no other language's words (docs/widget.md,
# "Build").
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
# wasm-opt ran with --low-memory-unused (widget/Cargo.toml): it may fold `p + c` (c below
# 1 KiB) into a load's offset, which is only the same where no address below 1 KiB is in
# use. Stop if the linker's layout no longer gives that: data below 1 KiB, or a stack
# under 1 MiB (Rust puts the stack first, from 1 MiB down to 0; the stack pointer is the
# first mutable i32 global).
check_low_memory() {
  local printed sp low
  printed=$("$WASM_OPT" --all-features --print "$1")
  sp=$(sed -n 's/^ *(global [^ ]* (mut i32) (i32.const \([0-9]*\)))$/\1/p' <<< "$printed" | awk 'NR == 1')
  low=$(sed -n 's/^ *(data [^ ]* (i32.const \([0-9]*\)).*/\1/p' <<< "$printed" | sort -n | awk 'NR == 1')
  if [ -z "$sp" ] || [ -z "$low" ] || [ "$sp" -lt 1048576 ] || [ "$low" -lt 1024 ]; then
    log "$1: stack pointer ${sp:-?}, lowest data ${low:-?}: the lowest KiB may be in use; drop --low-memory-unused from widget/Cargo.toml"
    exit 1
  fi
}
NAMES=()
# The wasm features wasm-opt may use: the list in widget/Cargo.toml.
mapfile -t ENABLE < <(sed -n '/^wasm-opt = \[/,/\]/p' widget/Cargo.toml | grep -o '"--enable-[^"]*"' | tr -d '"')
# mode:language:name (widget-boot.js and the payment server's preload use the names)
for m in purchase:en:widget purchase:de:widget-de load:en:widget-load load:de:widget-load-de; do
  IFS=: read -r feature lang name <<< "$m"
  wasm-pack --log-level warn build "${MODE[@]}" --target web --no-typescript --no-pack \
    --out-dir "$OUT.tmp-$name" --out-name "$name" widget -- --no-default-features --features "$feature,$lang,trap-on-panic"
  mkdir -p "$OUT.tmp"
  mv "$OUT.tmp-$name/$name.js" "$OUT.tmp-$name/${name}_bg.wasm" "$OUT.tmp/"
  rm -rf "$OUT.tmp-$name"
  # Short names between glue and wasm (wasm-bindgen's are hashed paths, which do not
  # compress): scripts/shorten-wasm-names.mjs, with the features of the wasm-opt above.
  if [ "${MODE[*]}" = "--release" ]; then
    node scripts/shorten-wasm-names.mjs "$WASM_OPT" "$OUT.tmp/$name.js" "$OUT.tmp/${name}_bg.wasm" "${ENABLE[@]}"
    check_low_memory "$OUT.tmp/${name}_bg.wasm"
  fi
  NAMES+=("$name")
done
# Minified (names, whitespace, comments), what the shopper downloads: the glue, and the
# frame's boot script and style sheet from their sources in widget/web/.
if [ "${MODE[*]}" != "--dev" ]; then
  MIN=(--minify --log-level=warning)
  for name in "${NAMES[@]}"; do
    # Only what widget-boot.js imports (the default init and `run`): the glue's other
    # exports (`initSync`) are left out.
    echo "export { default, run } from './$name.js';" > "$OUT.tmp/$name.entry.js"
    "$ESBUILD" "$OUT.tmp/$name.entry.js" --bundle "${MIN[@]}" --format=esm --outfile="$OUT.tmp/$name.min.js"
    mv "$OUT.tmp/$name.min.js" "$OUT.tmp/$name.js"
    rm "$OUT.tmp/$name.entry.js"
  done
  "$ESBUILD" widget/web/widget-boot.js "${MIN[@]}" --format=esm --outfile="$OUT.tmp/widget-boot.js"
  "$ESBUILD" widget/web/widget.css "${MIN[@]}" --outfile="$OUT.tmp/widget.css"
  # A classic script (document.currentScript): no module wrapper; the /*! line stays.
  "$ESBUILD" widget/web/checkout.js "${MIN[@]}" --outfile="$OUT.tmp/checkout.js"
else
  cp widget/web/widget-boot.js widget/web/widget.css widget/web/checkout.js "$OUT.tmp/"
fi
# The build's version: a hash of what the frame loads (boot script, style sheet, every
# mode's and language's glue and wasm). They go into pkg/<version>/, which the payment server serves
# as never changing (cached for a year, `immutable`): a new build is a new folder, so
# no browser mixes one build's glue with another's wasm. The boot script finds the
# glue and wasm beside it; widget.html and install.html, written from widget/web/ with
# their `pkg/` references pointing into the folder, are asked for again on each load.
FRAME=(widget-boot.js widget.css)
for name in "${NAMES[@]}"; do FRAME+=("$name.js" "${name}_bg.wasm"); done
VERSION="$(for f in "${FRAME[@]}"; do
  printf '%s %s\n' "$f" "$(sha256sum < "$OUT.tmp/$f" | cut -d' ' -f1)"; done | sha256sum | cut -c1-16)"
mkdir "$OUT.tmp/$VERSION"
for f in "${FRAME[@]}"; do mv "$OUT.tmp/$f" "$OUT.tmp/$VERSION/"; done
printf '{ "version": "%s" }\n' "$VERSION" > "$OUT.tmp/manifest.json"
for page in widget.html:2 install.html:1; do
  f="${page%%:*}" want="${page#*:}"
  got="$(grep -o '\(src\|href\)="pkg/' "widget/web/$f" | wc -l)"
  [ "$got" = "$want" ] || { log "widget/web/$f: $got references into pkg/, expected $want"; exit 1; }
  # One-line comments are the sources' notes for developers: the shopper's copy goes
  # without them.
  sed -e 's#\(src\|href\)="pkg/#\1="pkg/'"$VERSION"'/#g' \
    -e '/^[[:space:]]*<!--.*-->[[:space:]]*$/d' "widget/web/$f" > "$OUT.tmp/$f"
done
# Precompressed copies of every built file (the payment server sends them, with
# Content-Encoding, to a browser that accepts it: docs/payment-server.md, "Static
# files"): gzip by zopfli (Debian's package, scripts/setup.sh: the same gzip format
# any browser reads, 5 % smaller than GNU gzip -9 on the wasm; without it, gzip -9)
# and brotli at quality 11 (node's zlib). Each gzip copy is unpacked again and
# compared with its file. Written after the file they compress, so they are never
# older (the server refuses to start with a stale one).
BUILT=("$OUT.tmp/checkout.js" "$OUT.tmp/widget.html" "$OUT.tmp/install.html"
  "$OUT.tmp/$VERSION"/*.js "$OUT.tmp/$VERSION"/*.css "$OUT.tmp/$VERSION"/*.wasm)
if command -v zopfli >/dev/null; then
  GZIP_WITH=(zopfli -c)
else
  log "zopfli not found (scripts/setup.sh installs it): gzip copies by gzip -9, about 5 % larger"
  GZIP_WITH=(gzip -9 -n -c)
fi
for f in "${BUILT[@]}"; do
  "${GZIP_WITH[@]}" "$f" > "$f.gz"
  gzip -dc "$f.gz" | cmp -s - "$f" || { log "$f.gz does not unpack to $f"; exit 1; }
done
node -e '
  const fs = require("fs"), zlib = require("zlib");
  for (const f of process.argv.slice(1)) {
    const data = fs.readFileSync(f);
    fs.writeFileSync(f + ".br", zlib.brotliCompressSync(data, { params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length } }));
  }' "${BUILT[@]}"
# The previous build's folder stays one build longer: a frame whose widget.html came
# just before this build still finds the files it names.
OLD_VERSION="$(sed -n 's/.*"version": *"\([0-9a-f]\{16\}\)".*/\1/p' "$OUT/manifest.json" 2>/dev/null || true)"
if [ -n "$OLD_VERSION" ] && [ "$OLD_VERSION" != "$VERSION" ] && [ -d "$OUT/$OLD_VERSION" ]; then
  mv "$OUT/$OLD_VERSION" "$OUT.tmp/"
fi
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
# Then the pages that name the new folder, and the loader.
for f in checkout.js widget.html install.html; do
  for g in "$f" "$f.gz" "$f.br"; do mv "$OUT/$g" "$ROOT/www/$g"; done
done

# 3. SRI: the merchant's <script integrity> for checkout.js, and hashes of the rest
sri() {
  if command -v openssl >/dev/null; then
    echo "sha384-$(openssl dgst -sha384 -binary "$1" | openssl base64 -A)"
  else
    node -e 'const c=require("crypto"),f=require("fs");console.log("sha384-"+c.createHash("sha384").update(f.readFileSync(process.argv[1])).digest("base64"))' "$1"
  fi
}
{
  echo "{"
  echo "  \"checkout.js\": \"$(sri www/checkout.js)\","
  for f in "${FRAME[@]}"; do
    echo "  \"pkg/$VERSION/$f\": \"$(sri "$OUT/$VERSION/$f")\"$([ "$f" = "${FRAME[-1]}" ] || echo ,)"
  done
  echo "}"
} > "$OUT/sri.json"
for name in "${NAMES[@]}"; do
  w="$OUT/$VERSION/${name}_bg.wasm"
  log "built $(du -b "$w" | cut -f1) bytes ${name}_bg.wasm ($(du -b "$w.gz" | cut -f1) gzipped, $(du -b "$w.br" | cut -f1) brotli) into www/pkg/$VERSION"
done
log "checkout.js integrity: $(sri www/checkout.js)  (also in www/pkg/sri.json)"
