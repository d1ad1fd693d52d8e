#!/usr/bin/env bash
# Build the Cardpay browser extension for one browser and the payment origin(s)
# it may serve, from the sources in extension/:
#
#   scripts/build-extension.sh [--browser chromium|firefox] --origin ORIGIN [--origin ORIGIN…] --out DIR
#
#   --browser  chromium (default; also Chrome, Edge, Brave) or firefox
#   --origin   a payment origin, exactly scheme://host[:port] (e.g. https://pay.cardpay.example);
#              https, or http for a loopback test origin (127.0.0.1, localhost, [::1]) only
#   --out      the folder to write (replaced if it holds an earlier build)
#
# What it writes: the extension files, a manifest whose content script matches exactly
# the given origins, and config.js with the same origins for the background script's
# runtime check. Match patterns cannot always pin an origin: Chromium pins the port;
# Firefox cannot (http://127.0.0.1/* covers every port, and a pattern with a port
# matches nothing), so its build names the host only. The background script
# therefore admits a frame only if the origin the browser reports for it is one of
# the list; any other frame the script lands in hears nothing (docs/bridge.md).
#
# Chromium: the manifest keeps the `key`, so the ID stays balkbpnchocdfjmodhmppaobcgfpdlih.
# Firefox: Manifest V3 with background.scripts (an event page) as well as
# service_worker, and the fixed add-on id cardpay@cardpay.example
# (browser_specific_settings.gecko.id), which `bridge install --browser firefox` allows.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

usage() { sed -n '4,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
BROWSER=chromium
OUT=""
ORIGINS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --browser) [ $# -ge 2 ] || usage; BROWSER="$2"; shift 2 ;;
    --browser=*) BROWSER="${1#*=}"; shift ;;
    --origin) [ $# -ge 2 ] || usage; ORIGINS+=("$2"); shift 2 ;;
    --origin=*) ORIGINS+=("${1#*=}"); shift ;;
    --out) [ $# -ge 2 ] || usage; OUT="$2"; shift 2 ;;
    --out=*) OUT="${1#*=}"; shift ;;
    -h|--help) usage ;;
    *) echo "build-extension: unknown argument '$1'" >&2; usage ;;
  esac
done
case "$BROWSER" in chromium|firefox) ;; *) echo "build-extension: --browser must be chromium or firefox (got '$BROWSER')" >&2; exit 2 ;; esac
[ ${#ORIGINS[@]} -gt 0 ] || { echo "build-extension: give at least one --origin (the payment origin, e.g. https://pay.cardpay.example)" >&2; exit 2; }
[ -n "$OUT" ] || { echo "build-extension: give --out DIR" >&2; exit 2; }
command -v node >/dev/null || { echo "build-extension: needs node (scripts/setup.sh installs it)" >&2; exit 1; }

exec node - "$ROOT/extension" "$BROWSER" "$OUT" "${ORIGINS[@]}" <<'JS'
const fs = require('node:fs');
const path = require('node:path');
const [src, browser, out, ...origins] = process.argv.slice(2);
const GECKO_ID = 'cardpay@cardpay.example';
const FILES = ['content.js', 'sw.js', 'popup.html', 'popup.js'];
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

function fail(msg) {
  process.stderr.write(`build-extension: ${msg}\n`);
  process.exit(2);
}

const clean = [];
for (const o of origins) {
  let u;
  try {
    u = new URL(o);
  } catch {
    fail(`--origin '${o}' is not an origin; write scheme://host[:port], e.g. https://pay.cardpay.example`);
  }
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && LOOPBACK.has(u.hostname))) {
    fail(`--origin '${o}': a payment origin must be https (plain http only for a loopback test origin such as http://127.0.0.1:8440)`);
  }
  if (u.origin !== o) {
    fail(`--origin '${o}' must be exactly scheme://host[:port], without path, wildcard or trailing slash (did you mean '${u.origin}'?)`);
  }
  if (!clean.includes(o)) clean.push(o);
}

// Chromium pins the port (the effective one, also when it is the scheme's default);
// a Firefox pattern with a port matches nothing, so there the pattern names the host
// only and the runtime check on the sender's origin pins the port.
function matchPattern(o) {
  const u = new URL(o);
  if (browser === 'firefox') return `${u.protocol}//${u.hostname}/*`;
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  return `${u.protocol}//${u.hostname}:${port}/*`;
}

const manifest = JSON.parse(fs.readFileSync(path.join(src, 'manifest.json'), 'utf8'));
manifest.content_scripts = [{
  matches: [...new Set(clean.map(matchPattern))],
  js: ['content.js'],
  all_frames: true,
  run_at: 'document_start',
}];
if (browser === 'firefox') {
  delete manifest.key;
  delete manifest.minimum_chrome_version;
  // Firefox runs MV3 background scripts as an event page (`scripts`); a browser that
  // runs service workers takes `service_worker`, which loads config.js itself.
  manifest.background = { scripts: ['config.js', 'sw.js'], service_worker: 'sw.js' };
  manifest.browser_specific_settings = { gecko: { id: GECKO_ID, strict_min_version: '128.0' } };
} else {
  manifest.background = { service_worker: 'sw.js' };
}

// Write into a fresh folder next to OUT, then swap it in: a failed build leaves OUT as it was.
const target = path.resolve(out);
if (fs.existsSync(target) && !fs.existsSync(path.join(target, 'manifest.json')) && fs.readdirSync(target).length > 0) {
  fail(`--out ${out} exists and is not an extension build; refusing to replace it`);
}
fs.mkdirSync(path.dirname(target), { recursive: true });
const tmp = fs.mkdtempSync(path.join(path.dirname(target), `.${path.basename(target)}.tmp-`));
for (const f of FILES) fs.copyFileSync(path.join(src, f), path.join(tmp, f));
fs.writeFileSync(path.join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
fs.writeFileSync(path.join(tmp, 'config.js'),
  `// Written by scripts/build-extension.sh: the payment origins this ${browser} build serves.\n` +
  `globalThis.CARDPAY_CONFIG = ${JSON.stringify({ browser, paymentOrigins: clean })};\n`);
fs.rmSync(target, { recursive: true, force: true });
fs.renameSync(tmp, target);
process.stdout.write(`${target}\n`);
JS
