#!/usr/bin/env bash
# The whole Cardpay demo on this machine, in one command:
#
#   scripts/demo.sh            install what is missing, build, start everything, wait (Ctrl-C stops)
#   scripts/demo.sh --detach   same, but return after start; stop later with: scripts/demo.sh stop
#   scripts/demo.sh stop       stop what a detached demo started
#   scripts/demo.sh --postgres [--detach]   the same with the payment server's store on a
#                              throw-away PostgreSQL (scripts/pg.sh, in $DEMO_DIR/pg)
#
# Starts: pcscd + vpcd + the virtual card (scripts/pcsc-stack.sh; TEST keys, PIN 1234,
# 100.00 EUR, no-PIN limit 20.00), the payment server on :8440 (SQLite; serves the
# widget from www/), the demo store on :8450, and registers the bridge (native host)
# for a Chromium profile in $DEMO_DIR/chromium-profile. Then prints where to point
# the browser. Every key used is a TEST key (docs/TEAM.md).
#
# Env: DEMO_DIR (default /tmp/cardpay-demo), CARDPAY_PAY_PORT (8440),
#      CARDPAY_SHOP_PORT (8450), CARGO_TARGET_DIR (default ./target),
#      CARDPAY_SKIP_SETUP=1 (skip scripts/setup.sh on a machine already set up).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
DIR="${DEMO_DIR:-/tmp/cardpay-demo}"
PAY_PORT="${CARDPAY_PAY_PORT:-8440}"
SHOP_PORT="${CARDPAY_SHOP_PORT:-8450}"
BANK_PORT="${CARDPAY_BANK_PORT:-8460}"
BANK="http://127.0.0.1:$BANK_PORT"
PAY="http://127.0.0.1:$PAY_PORT"
SHOP="http://127.0.0.1:$SHOP_PORT"
PROFILE="$DIR/chromium-profile"
# TEST KEY (K_mp of merchant "demo-store", as in payment-server/payment-server.example.toml).
DEMO_KMP=d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5
# TEST KEYS: K_bl of the demo bank, and of the demo store's loyalty program (points).
DEMO_KBL=dbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdb
DEMO_KLOYALTY=1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c
BIN="$CARGO_TARGET_DIR/debug"

log() { printf 'demo: %s\n' "$*" >&2; }
alive() { [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" | cut -c1 | grep -q '[ZX]'; }
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
  bash scripts/pcsc-stack.sh down --state-dir "$DIR/stack" || true
}
wait_http() { # wait_http URL NAME LOGFILE
  for _ in $(seq 150); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  log "$2 did not come up; last lines of $3:"; tail -20 "$3" >&2; exit 1
}

DETACH=0; POSTGRES=0
for a in "$@"; do
  case "$a" in
    stop) stop_all; exit 0 ;;
    --detach) DETACH=1 ;;
    --postgres) POSTGRES=1 ;;
    *) echo "usage: $0 [--detach] [--postgres] | stop" >&2; exit 2 ;;
  esac
done

mkdir -p "$DIR"
if [ "${CARDPAY_SKIP_SETUP:-0}" != 1 ]; then
  log "1/6 installing what is missing (apt, rustup target, wasm-bindgen-cli, npm)"
  bash scripts/setup.sh
fi
command -v curl >/dev/null || { log "installing curl"; apt-get install -y -q curl >/dev/null; }

log "2/6 building the widget (wasm) and the binaries"
bash scripts/build-widget.sh
cargo build -q -p payment-server --bin payment-server -p demo-merchant --bin demo-merchant --bin demo-bank \
  -p bridge --bin bridge -p card --bin card

log "3/6 PC/SC stack: pcscd + vpcd + virtual card"
CARD_BIN="$BIN/card" bash scripts/pcsc-stack.sh up --state-dir "$DIR/stack"

log "4/6 payment server on $PAY"
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
TOML
setsid "$BIN/payment-server" --config "$DIR/payment-server.toml" >>"$DIR/payment-server.log" 2>&1 </dev/null &
echo $! > "$DIR/payment-server.pid"
wait_http "$PAY/healthz" "payment server" "$DIR/payment-server.log"

log "5/6 demo store on $SHOP"
stop_pid demo-merchant
# The store pins checkout.js with SRI (<script integrity>) from the widget build's sri.json.
DEMO_LISTEN="127.0.0.1:$SHOP_PORT" DEMO_DB="$DIR/demo-merchant.sqlite" DEMO_PAYMENT_URL="$PAY" \
  DEMO_PUBLIC_ORIGIN="$SHOP" DEMO_MERCHANT_KEY="$DEMO_KMP" DEMO_CHECKOUT_SRI_FILE="$ROOT/www/pkg/sri.json" \
  DEMO_LOYALTY_KEY="$DEMO_KLOYALTY" \
  setsid "$BIN/demo-merchant" >>"$DIR/demo-merchant.log" 2>&1 </dev/null &
echo $! > "$DIR/demo-merchant.pid"
wait_http "$SHOP/healthz" "demo store" "$DIR/demo-merchant.log"
stop_pid demo-bank
BANK_LISTEN="127.0.0.1:$BANK_PORT" BANK_DB="$DIR/demo-bank.sqlite" BANK_PAYMENT_URL="$PAY" \
  BANK_PUBLIC_ORIGIN="$BANK" BANK_KEY="$DEMO_KBL" BANK_CHECKOUT_SRI_FILE="$ROOT/www/pkg/sri.json" \
  setsid "$BIN/demo-bank" >>"$DIR/demo-bank.log" 2>&1 </dev/null &
echo $! > "$DIR/demo-bank.pid"
wait_http "$BANK/healthz" "demo bank" "$DIR/demo-bank.log"

log "6/6 registering the bridge for the browser profile $PROFILE"
mkdir -p "$PROFILE"
"$BIN/bridge" install --browser chromium --profile "$PROFILE" --origin "$PAY" >/dev/null
"$BIN/bridge" doctor --browser chromium --profile "$PROFILE" | sed 's/^/    /' || true

cat <<TXT

  Cardpay demo is running.

  Open the store in Chromium with the extension and the prepared profile:

    chromium --user-data-dir=$PROFILE \\
             --load-extension=$ROOT/extension $SHOP/

  (or, in your own Chromium: load $ROOT/extension unpacked via chrome://extensions,
   then run: $BIN/bridge install --origin $PAY)

  Or in Firefox (firefox-esr): register the bridge for Firefox and build the add-on once,

    $BIN/bridge install --browser firefox --origin $PAY
    $ROOT/scripts/build-extension.sh --browser firefox --origin $PAY --out $DIR/extension-firefox

  then start Firefox, open about:debugging#/runtime/this-firefox, choose
  "Load Temporary Add-on…", pick $DIR/extension-firefox/manifest.json
  (it stays until Firefox closes) and open $SHOP/

  Store:            $SHOP/          (add goods over 20.00 EUR to see the PIN keypad)
  Bank:             $BANK/          (load your card; TEST logins alice / alice-test-password,
                                     bob / bob-test-password; the widget's load mode comes with the widget)
  Payment server:   $PAY/           (widget: $PAY/widget.html, loader: $PAY/checkout.js)
  Card:             Virtual PCD 00 00, 100.00 EUR, PIN 1234 (TEST card)
                    pull / insert it: scripts/pcsc-stack.sh remove|insert --state-dir $DIR/stack
  Logs and state:   $DIR
  Payments store:   ${DB_LINE#* = }
TXT

if [ "$DETACH" = 1 ]; then
  echo "  Stop with: scripts/demo.sh stop"
  exit 0
fi
echo "  Press Ctrl-C to stop everything."
trap 'echo; stop_all; exit 0' INT TERM
while alive "$(cat "$DIR/payment-server.pid")" && alive "$(cat "$DIR/demo-merchant.pid")"; do sleep 2; done
log "a server exited; see $DIR/*.log"
stop_all
exit 1
