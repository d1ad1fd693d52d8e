#!/usr/bin/env bash
# The real PC/SC stack for humans and the demo, without systemd:
#   pcscd (started by hand, -c with our own reader.conf) + vsmartcard-vpcd
#   + the Cardpay virtual card (`card run`) in reader "Virtual PCD 00 00".
#
#   scripts/pcsc-stack.sh up     [--state-dir DIR]   install what is missing, start, wait
#   scripts/pcsc-stack.sh down   [--state-dir DIR]   stop the card and pcscd by PID
#   scripts/pcsc-stack.sh status [--state-dir DIR]   what runs, readers, balances
#   scripts/pcsc-stack.sh remove|insert [--state-dir DIR]   pull the card out / put it back
#
# DIR (default /tmp/cardpay-stack) holds reader.conf.d/, card.json (the demo
# card, personalised with the TEST keys of docs/TEAM.md if absent), *.pid, *.log.
# pcscd inherits the exclusive flock on /tmp/cardpay-pcscd.lock and holds it
# for its whole life (team rule: one pcscd per machine).
# Env: CARD_BIN (a prebuilt `card` binary; else built with cargo),
#      CARDPAY_VPCD (default 127.0.0.1:27771: below the ephemeral port range, so no
#      outgoing connection holds it or the next port, vpcd's second reader).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
LOCK=/tmp/cardpay-pcscd.lock
READER="Virtual PCD 00 00"
VPCD="${CARDPAY_VPCD:-127.0.0.1:27771}"
VPCD_SO=/usr/lib/pcsc/drivers/serial/libifdvpcd.so

cmd="${1:-}"
shift || true
DIR=/tmp/cardpay-stack
while [ $# -gt 0 ]; do
    case "$1" in
        --state-dir) DIR="$2"; shift 2 ;;
        --state-dir=*) DIR="${1#*=}"; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

log() { echo "pcsc-stack: $*" >&2; }
die() { log "$*"; exit 1; }

# alive PID: exists and is not a zombie
alive() {
    local pid="$1"
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    local st
    st="$(sed 's/.*) //' "/proc/$pid/stat" | cut -c1)"
    [ "$st" != Z ] && [ "$st" != X ]
}
pid_of() { [ -f "$DIR/$1.pid" ] && cat "$DIR/$1.pid" || true; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root for: $*"
    fi
}

install_missing() {
    local need=()
    [ -x /usr/sbin/pcscd ] || command -v pcscd >/dev/null || need+=(pcscd)
    [ -e "$VPCD_SO" ] || need+=(vsmartcard-vpcd)
    command -v pkg-config >/dev/null || need+=(pkg-config)
    pkg-config --exists libpcsclite 2>/dev/null || need+=(libpcsclite-dev)
    command -v pcsc_scan >/dev/null || need+=(pcsc-tools)
    command -v flock >/dev/null || need+=(util-linux)
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
    fi
}

card_bin() {
    if [ -n "${CARD_BIN:-}" ]; then echo "$CARD_BIN"; return; fi
    log "building the card binary (cargo build -p card)"
    local exe
    exe="$(cd "$ROOT" && cargo build -q -p card --bin card --message-format=json \
        | grep -o '"executable":"[^"]*/card"' | tail -1 | sed 's/"executable":"//; s/"$//')"
    [ -x "$exe" ] || die "could not build the card binary"
    echo "$exe"
}

readers() { timeout 5 pcsc_scan -r 2>/dev/null || true; }
card_present() {
    timeout 5 pcsc_scan -c -t 1 2>/dev/null | awk -v r="$READER" '
        /Reader [0-9]+:/ { f = index($0, r) > 0; next }
        f && /Card inserted/ { found = 1 }
        END { exit !found }'
}

wait_for() { # wait_for SECONDS what cmd...
    local secs="$1" what="$2"; shift 2
    local end=$((SECONDS + secs))
    until "$@"; do
        [ $SECONDS -lt $end ] || die "timed out waiting for $what"
        sleep 0.1
    done
}

up() {
    install_missing
    mkdir -p "$DIR/reader.conf.d"
    if alive "$(pid_of pcscd)" && alive "$(pid_of card)"; then
        log "already up (pcscd $(pid_of pcscd), card $(pid_of card))"
        return 0
    fi
    local bin
    bin="$(card_bin)"
    echo "$bin" > "$DIR/card.bin"
    if [ ! -f "$DIR/card.json" ]; then
        log "personalising the demo card (TEST keys) in $DIR/card.json"
        "$bin" personalise --state "$DIR/card.json" --id 6280000000000001 --expiry 301231 \
            --currency 978 --exponent 2 --balance 10000 --max 100000 --points 500 \
            --pin 1234 --no-pin-limit 2000 --key-version 1 \
            --mkp 404142434445464748494A4B4C4D4E4F --mkl 505152535455565758595A5B5C5D5E5F
    fi
    if ! alive "$(pid_of pcscd)"; then
        cat > "$DIR/reader.conf.d/vpcd" <<EOF
FRIENDLYNAME "Virtual PCD"
DEVICENAME /dev/null:$(printf '0x%04X' "${VPCD##*:}")
LIBPATH $VPCD_SO
EOF
        exec 9>"$LOCK"
        flock -n 9 || die "$LOCK is held: another pcscd (test or stack) is running"
        local pcscd
        pcscd="$(command -v pcscd || echo /usr/sbin/pcscd)"
        # pcscd inherits fd 9 and with it the lock; it lives until `down`.
        setsid "$pcscd" -f -i -c "$DIR/reader.conf.d" >>"$DIR/pcscd.log" 2>&1 < /dev/null &
        echo $! > "$DIR/pcscd.pid"
        exec 9>&-
        log "pcscd started (pid $(pid_of pcscd))"
        wait_for 10 "reader '$READER'" sh -c "pcsc_scan -r 2>/dev/null | grep -q '$READER'"
    fi
    if ! alive "$(pid_of card)"; then
        setsid "$bin" run --state "$DIR/card.json" --vpcd "$VPCD" >>"$DIR/card.log" 2>&1 < /dev/null &
        echo $! > "$DIR/card.pid"
        log "card started (pid $(pid_of card))"
    fi
    wait_for 10 "the card in '$READER'" card_present
    log "up: reader '$READER' has the Cardpay card (state $DIR/card.json)"
}

stop_pid() { # stop_pid NAME
    local pid
    pid="$(pid_of "$1")"
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
        log "$1 (pid $pid) stopped"
    fi
    rm -f "$DIR/$1.pid"
}

down() {
    stop_pid card
    stop_pid pcscd
}

status() {
    local rc=0
    for p in pcscd card; do
        if alive "$(pid_of $p)"; then echo "$p: running (pid $(pid_of $p))"; else echo "$p: not running"; rc=1; fi
    done
    echo "readers:"; readers | sed 's/^/  /'
    if [ -f "$DIR/card.json" ] && [ -f "$DIR/card.bin" ]; then
        "$(cat "$DIR/card.bin")" inspect --state "$DIR/card.json" | sed 's/^/  /'
    fi
    return $rc
}

card_absent() { ! card_present; }

signal_card() { # signal_card SIG present(0/1)
    local pid
    pid="$(pid_of card)"
    alive "$pid" || die "the card is not running"
    kill "-$1" "$pid"
    if [ "$2" = 1 ]; then wait_for 10 "the card in '$READER'" card_present
    else wait_for 10 "'$READER' to be empty" card_absent; fi
}

case "$cmd" in
    up) up ;;
    remove) signal_card USR1 0 ;;
    insert) signal_card USR2 1 ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status|remove|insert [--state-dir DIR]" >&2; exit 2 ;;
esac
