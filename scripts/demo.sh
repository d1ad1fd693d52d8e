#!/usr/bin/env bash
# The whole Cardpay demo on this machine, over https, in one command:
#
#   scripts/demo.sh            install what is missing, build, start everything, wait (Ctrl-C stops)
#   scripts/demo.sh --detach   same, but return once everything runs
#   scripts/demo.sh stop       stop what the demo started
#   scripts/demo.sh reset      stop, then a fresh card (100.00 EUR, PIN 1234) and empty
#                              databases, and start again in the background
#   scripts/demo.sh --postgres [--detach]   the payment server's store on a throw-away
#                              PostgreSQL (scripts/pg.sh, in $DEMO_DIR/pg) instead of SQLite
#
# Starts: pcscd + vpcd + the virtual card (scripts/pcsc-stack.sh; TEST keys, PIN 1234,
# 100.00 EUR, no-PIN limit 20.00), the payment server on https://127.0.0.1:8440 (SQLite;
# serves the widget from www/), the demo store on https://127.0.0.1:8450, the demo bank on
# https://127.0.0.1:8460, and prepares a
# Chromium and a Firefox profile: the extension built for the payment origin
# (scripts/build-extension.sh), the bridge registered (`bridge install`), and the demo's
# TEST certificate authority trusted. Then it prints how to open the store.
#
# TLS: scripts/certs.sh makes a local TEST CA in $DEMO_DIR/certs (name-constrained: it
# can vouch only for localhost, 127.0.0.0/8 and ::1) and the servers' certificate. The
# servers trust it for their calls to each other (`ca_file`, DEMO_CA_FILE). The demo
# browsers trust it for real, in their own NSS databases (certutil, Debian's
# libnss3-tools): Firefox in its profile (cert9.db), Chromium in $DEMO_DIR/home/.pki/nssdb
# (Chromium on Linux reads locally trusted roots from $HOME/.pki/nssdb, not from the
# profile; the launcher sets HOME). No certificate error is ignored anywhere.
#
# Every key used is a TEST key (docs/TEAM.md).
#
# Env: DEMO_DIR (default /tmp/cardpay-demo), CARDPAY_PAY_PORT (8440),
#      CARDPAY_SHOP_PORT (8450), CARDPAY_BANK_PORT (8460), CARGO_TARGET_DIR (default ./target),
#      CARDPAY_SKIP_SETUP=1 (skip scripts/setup.sh on a machine already set up).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
DIR="${DEMO_DIR:-/tmp/cardpay-demo}"
PAY_PORT="${CARDPAY_PAY_PORT:-8440}"
SHOP_PORT="${CARDPAY_SHOP_PORT:-8450}"
BANK_PORT="${CARDPAY_BANK_PORT:-8460}"
PAY="https://127.0.0.1:$PAY_PORT"
SHOP="https://127.0.0.1:$SHOP_PORT"
BANK="https://127.0.0.1:$BANK_PORT"
CERTS="$DIR/certs"
HOMEDIR="$DIR/home"
CHROMIUM_PROFILE="$DIR/chromium-profile"
FIREFOX_PROFILE="$DIR/firefox-profile"
# TEST KEY (K_mp of merchant "demo-store", as in payment-server/payment-server.example.toml).
DEMO_KMP=d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5
# TEST KEYS: K_bl of the demo bank, and of the demo store's loyalty program (points).
DEMO_KBL=dbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdb
DEMO_KLOYALTY=1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c
BIN="$CARGO_TARGET_DIR/debug"

log() { printf 'demo: %s\n' "$*" >&2; }
usage() { sed -n '4,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
alive() { [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1 | grep -q '[ZX]'; }
stop_pid() {
  local f="$DIR/$1.pid" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    log "$1 stopped (pid $pid)"
  fi
  rm -f "$f"
}
stop_all() {
  stop_pid demo-bank
  stop_pid demo-merchant
  stop_pid payment-server
  if [ -f "$DIR/pg.started" ]; then
    CARDPAY_PG_DIR="$DIR/pg" CARDPAY_PG_PORT="$(cat "$DIR/pg.started")" bash scripts/pg.sh down || true
    rm -f "$DIR/pg.started"
  fi
  if [ -d "$DIR/stack" ]; then bash scripts/pcsc-stack.sh down --state-dir "$DIR/stack" || true; fi
}
# wait_https URL NAME LOGFILE PID: up (verified against the demo CA), or show why not.
wait_https() {
  for _ in $(seq 150); do
    curl -fsS --cacert "$CERTS/ca.pem" -o /dev/null "$1" 2>/dev/null && return 0
    alive "$4" || break
    sleep 0.2
  done
  log "$2 did not come up; last lines of $3:"; tail -20 "$3" >&2; exit 1
}

CMD=start DETACH=0 POSTGRES=0
for a in "$@"; do
  case "$a" in
    stop) CMD=stop ;;
    reset) CMD=reset; DETACH=1 ;;
    --detach) DETACH=1 ;;
    --postgres) POSTGRES=1 ;;
    -h|--help) usage ;;
    *) echo "demo.sh: unknown argument '$a'" >&2; usage ;;
  esac
done
if [ "$CMD" = stop ]; then stop_all; exit 0; fi
if [ "$CMD" = reset ]; then
  stop_all
  # A fresh card (personalised again by pcsc-stack.sh), empty databases, logs, and
  # the bridge's per-origin budgets (they count for the card). The CA, the browser
  # profiles and what trusts the CA stay.
  rm -f "$DIR/stack/card.json" "$DIR"/*.sqlite "$DIR"/*.sqlite-wal "$DIR"/*.sqlite-shm "$DIR"/*.log
  find "$DIR" -name '*.state.json' -delete 2>/dev/null || true
  rm -rf "$DIR/pg"
  log "reset: fresh card and databases; starting again"
fi

mkdir -p "$DIR"
if [ "${CARDPAY_SKIP_SETUP:-0}" != 1 ]; then
  log "1/7 installing what is missing (apt, rustup target, wasm-bindgen-cli, npm)"
  bash scripts/setup.sh
fi
for tool in curl openssl certutil; do
  command -v "$tool" >/dev/null || { log "$tool is missing: run scripts/setup.sh"; exit 1; }
done

log "2/7 building the widget (wasm) and the binaries"
bash scripts/build-widget.sh
cargo build -q -p payment-server --bin payment-server -p demo-merchant --bin demo-merchant --bin demo-bank \
  -p bridge --bin bridge -p card --bin card

log "3/7 TEST certificate authority and server certificate in $CERTS"
bash scripts/certs.sh "$CERTS" >/dev/null

log "4/7 PC/SC stack: pcscd + vpcd + virtual card"
CARD_BIN="$BIN/card" bash scripts/pcsc-stack.sh up --state-dir "$DIR/stack"

log "5/7 payment server on $PAY"
stop_pid payment-server
# The store: a SQLite file, or (--postgres) a throw-away PostgreSQL (scripts/pg.sh).
DB_LINE="db_path = \"$DIR/payments.sqlite\""
if [ "$POSTGRES" = 1 ]; then
  PG_PORT="${CARDPAY_PG_PORT:-55442}"
  PG_URL="$(CARDPAY_PG_DIR="$DIR/pg" CARDPAY_PG_PORT="$PG_PORT" bash scripts/pg.sh up)"
  echo "$PG_PORT" > "$DIR/pg.started"
  DB_LINE="database_url = \"$PG_URL\""
  log "   store on PostgreSQL: $PG_URL"
fi
cat > "$DIR/payment-server.toml" <<TOML
# Demo configuration written by scripts/demo.sh. TEST KEYS ONLY (docs/TEAM.md).
listen = "127.0.0.1:$PAY_PORT"
$DB_LINE
www_dir = "$ROOT/www"
# checkout.js is served with Access-Control-Allow-Origin: * (SRI from any store);
# the widget page may be framed only by the merchants' origins below.
cors_origins = []
operator_token = "test-operator-token"
# Webhooks go to the store over https: trust the demo's TEST CA for them.
ca_file = "$CERTS/ca.pem"
[tls]
cert_file = "$CERTS/server.pem"
key_file = "$CERTS/server.key"
[security_module]
terminal = "000000000001"
[[security_module.keys]]
version = 1
mkp = "404142434445464748494A4B4C4D4E4F"
mkl = "505152535455565758595A5B5C5D5E5F"
[[merchants]]
id = "demo-store"
name = "Cardpay Demo Store"
key = "$DEMO_KMP"
origins = ["$SHOP"]
verify_modes = ["payment_server"]
webhook_url = "$SHOP/webhooks/cardpay"
[[banks]]
id = "demo-bank"
name = "Cardpay Demo Bank"
key = "$DEMO_KBL"
origins = ["$BANK"]
webhook_url = "$BANK/webhooks/cardpay"
[[banks]]
id = "demo-store-loyalty"
name = "Cardpay Demo Store points"
key = "$DEMO_KLOYALTY"
origins = ["$SHOP"]
purses = ["points"]
webhook_url = "$SHOP/webhooks/loyalty"
card_refs_of = "demo-store"
TOML
setsid "$BIN/payment-server" --config "$DIR/payment-server.toml" >>"$DIR/payment-server.log" 2>&1 </dev/null &
echo $! > "$DIR/payment-server.pid"
wait_https "$PAY/healthz" "payment server" "$DIR/payment-server.log" "$(cat "$DIR/payment-server.pid")"

log "6/7 demo store on $SHOP"
stop_pid demo-merchant
# The store pins checkout.js with SRI (<script integrity>) from the widget build's sri.json.
DEMO_LISTEN="127.0.0.1:$SHOP_PORT" DEMO_DB="$DIR/demo-merchant.sqlite" DEMO_PAYMENT_URL="$PAY" \
  DEMO_PUBLIC_ORIGIN="$SHOP" DEMO_MERCHANT_KEY="$DEMO_KMP" DEMO_CHECKOUT_SRI_FILE="$ROOT/www/pkg/sri.json" \
  DEMO_TLS_CERT="$CERTS/server.pem" DEMO_TLS_KEY="$CERTS/server.key" DEMO_CA_FILE="$CERTS/ca.pem" \
  DEMO_LOYALTY_KEY="$DEMO_KLOYALTY" \
  setsid "$BIN/demo-merchant" >>"$DIR/demo-merchant.log" 2>&1 </dev/null &
echo $! > "$DIR/demo-merchant.pid"
wait_https "$SHOP/healthz" "demo store" "$DIR/demo-merchant.log" "$(cat "$DIR/demo-merchant.pid")"
stop_pid demo-bank
BANK_LISTEN="127.0.0.1:$BANK_PORT" BANK_DB="$DIR/demo-bank.sqlite" BANK_PAYMENT_URL="$PAY" \
  BANK_PUBLIC_ORIGIN="$BANK" BANK_KEY="$DEMO_KBL" BANK_CHECKOUT_SRI_FILE="$ROOT/www/pkg/sri.json" \
  BANK_TLS_CERT="$CERTS/server.pem" BANK_TLS_KEY="$CERTS/server.key" BANK_CA_FILE="$CERTS/ca.pem" \
  setsid "$BIN/demo-bank" >>"$DIR/demo-bank.log" 2>&1 </dev/null &
echo $! > "$DIR/demo-bank.pid"
wait_https "$BANK/healthz" "demo bank" "$DIR/demo-bank.log" "$(cat "$DIR/demo-bank.pid")"

log "7/7 browsers: the extension for $PAY, the bridge, trust in the TEST CA"
bash scripts/build-extension.sh --browser chromium --origin "$PAY" --out "$DIR/extension-chromium" >/dev/null
bash scripts/build-extension.sh --browser firefox --origin "$PAY" --out "$DIR/extension-firefox" >/dev/null
# The CA, trusted by NSS databases of the demo's own (a fresh db each time: idempotent).
trust() { # trust NSSDB_DIR
  mkdir -p "$1"
  rm -f "$1/cert9.db" "$1/key4.db" "$1/pkcs11.txt"
  certutil -d "sql:$1" -N --empty-password
  certutil -d "sql:$1" -A -t "C,," -n "Cardpay demo TEST CA" -i "$CERTS/ca.pem"
}
trust "$HOMEDIR/.pki/nssdb"
trust "$FIREFOX_PROFILE"
# The demo's Firefox profile: a quiet first start, and the add-on installed in the
# profile. It is not signed by Mozilla: Firefox ESR (not release Firefox) loads it when
# xpinstall.signatures.required is false; that holds for this demo profile only.
cat > "$FIREFOX_PROFILE/user.js" <<'JS'
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.aboutwelcome.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("trailhead.firstrun.didSeeAboutWelcome", true);
user_pref("xpinstall.signatures.required", false);
user_pref("extensions.autoDisableScopes", 0);
user_pref("extensions.enabledScopes", 15);
JS
FIREFOX_ADDON=0
if command -v python3 >/dev/null; then
  mkdir -p "$FIREFOX_PROFILE/extensions"
  (cd "$DIR/extension-firefox" && python3 -m zipfile -c "$FIREFOX_PROFILE/extensions/cardpay@cardpay.example.xpi" ./*)
  FIREFOX_ADDON=1
fi
mkdir -p "$CHROMIUM_PROFILE"
"$BIN/bridge" install --browser chromium --profile "$CHROMIUM_PROFILE" --origin "$PAY" >/dev/null
# Firefox reads host manifests only from $HOME/.mozilla: the demo HOME's.
HOME="$HOMEDIR" XDG_CONFIG_HOME="$HOMEDIR/.config" \
  "$BIN/bridge" install --browser firefox --origin "$PAY" >/dev/null
"$BIN/bridge" doctor --browser chromium --profile "$CHROMIUM_PROFILE" | sed 's/^/    /' || true

# Launchers: the demo HOME (its NSS database trusts the CA; Firefox finds the bridge
# there), the display settings of the caller kept.
launcher() { # launcher FILE COMMAND...
  local file="$1"; shift
  {
    echo '#!/bin/sh'
    echo '# Written by scripts/demo.sh: a browser for the Cardpay demo (its own HOME and profile).'
    echo "export XAUTHORITY=\"\${XAUTHORITY:-\$HOME/.Xauthority}\""
    echo "export HOME='$HOMEDIR' XDG_CONFIG_HOME='$HOMEDIR/.config'"
    echo "exec $* \"\$@\""
  } > "$file"
  chmod +x "$file"
}
CHROMIUM_BIN="$(command -v chromium || echo chromium)"
FIREFOX_BIN="$(command -v firefox-esr || command -v firefox || echo firefox-esr)"
launcher "$DIR/open-chromium" "'$CHROMIUM_BIN' --user-data-dir='$CHROMIUM_PROFILE' --no-first-run --load-extension='$DIR/extension-chromium' '$SHOP/'"
launcher "$DIR/open-firefox" "'$FIREFOX_BIN' --profile '$FIREFOX_PROFILE' '$SHOP/'"

FIREFOX_NOTE=""
if [ "$FIREFOX_ADDON" = 0 ]; then
  FIREFOX_NOTE="
  (python3 is missing, so the add-on is not in the profile: open about:debugging#/runtime/this-firefox,
   \"Load Temporary Add-on…\", pick $DIR/extension-firefox/manifest.json, then reload the store.)"
fi
cat <<TXT

  Cardpay demo is running, over https.

  Open the store in Chromium (the extension loaded, the bridge registered, the demo CA trusted):

    $DIR/open-chromium

  Or in Firefox ESR (the add-on installed in the demo profile, bridge registered, demo CA trusted):

    $DIR/open-firefox
$FIREFOX_NOTE
  Store:            $SHOP/          (add goods over 20.00 EUR, e.g. 5 × the e-book, to see the PIN keypad)
  Bank:             $BANK/          (load your card; TEST logins alice / alice-test-password,
                                     bob / bob-test-password)
  Payment server:   $PAY/           (widget: $PAY/widget.html, loader: $PAY/checkout.js)
  Card:             Virtual PCD 00 00, 100.00 EUR, PIN 1234 (TEST card)
                    pull / insert it: scripts/pcsc-stack.sh remove|insert --state-dir $DIR/stack
  TEST CA:          $CERTS/ca.pem (trusted only by the demo's profiles; for curl: --cacert)
  Logs and state:   $DIR
  Payments store:   ${DB_LINE#* = }
  Fresh card and empty databases: scripts/demo.sh reset
TXT

if [ "$DETACH" = 1 ]; then
  echo "  Stop with: scripts/demo.sh stop"
  exit 0
fi
echo "  Press Ctrl-C to stop everything (or run scripts/demo.sh stop)."
trap 'echo; stop_all; exit 0' INT TERM
while alive "$(cat "$DIR/payment-server.pid" 2>/dev/null)" && alive "$(cat "$DIR/demo-merchant.pid" 2>/dev/null)"; do sleep 2; done
log "a server exited; see $DIR/*.log"
stop_all
exit 1
