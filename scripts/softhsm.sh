#!/usr/bin/env bash
# A throw-away SoftHSM2 token for the demo and for trying the PKCS#11 security
# module by hand (the Rust tests make their own: cardpay_pkcs11::softhsm).
#
#   scripts/softhsm.sh up   [--dir DIR] [--label LABEL]   private SOFTHSM2_CONF + token
#   scripts/softhsm.sh env  [--dir DIR]                    print the exports to use it
#   scripts/softhsm.sh down [--dir DIR]                    delete the token directory
#
# DIR (default /tmp/cardpay-softhsm) holds softhsm2.conf, tokens/ and pin (0600,
# a random user PIN; the SO PIN is random and not kept). LABEL defaults to
# "cardpay". Then, e.g.:
#   eval "$(scripts/softhsm.sh env)"
#   payment-server hsm import --key-version 1 ...   (PIN from $CARDPAY_HSM_PIN_FILE)
set -euo pipefail

cmd="${1:-}"
shift || true
DIR=/tmp/cardpay-softhsm
LABEL=cardpay
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) DIR="$2"; shift 2 ;;
        --label) LABEL="$2"; shift 2 ;;
        *) echo "softhsm.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
MODULE=/usr/lib/softhsm/libsofthsm2.so

case "$cmd" in
    up)
        if ! command -v softhsm2-util >/dev/null || [ ! -f "$MODULE" ]; then
            echo "softhsm.sh: installing softhsm2 and opensc" >&2
            SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
            $SUDO apt-get install -y -q --no-install-recommends softhsm2 opensc >&2
        fi
        if [ -f "$DIR/softhsm2.conf" ]; then
            echo "softhsm.sh: $DIR exists already (down first to start over)" >&2
            exit 1
        fi
        mkdir -p "$DIR/tokens"
        chmod 700 "$DIR"
        printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
            "$DIR" > "$DIR/softhsm2.conf"
        (umask 077; head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/pin")
        so_pin="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        SOFTHSM2_CONF="$DIR/softhsm2.conf" softhsm2-util --init-token --free --label "$LABEL" \
            --so-pin "$so_pin" --pin "$(cat "$DIR/pin")" >&2
        echo "softhsm.sh: token \"$LABEL\" in $DIR; PIN in $DIR/pin" >&2
        ;;
    env)
        [ -f "$DIR/softhsm2.conf" ] || { echo "softhsm.sh: no token in $DIR (run up)" >&2; exit 1; }
        echo "export SOFTHSM2_CONF=$DIR/softhsm2.conf"
        echo "export CARDPAY_HSM_MODULE=$MODULE"
        echo "export CARDPAY_HSM_PIN_FILE=$DIR/pin"
        ;;
    down)
        case "$DIR" in /|"") echo "softhsm.sh: refusing to delete '$DIR'" >&2; exit 2 ;; esac
        rm -rf -- "$DIR"
        ;;
    *)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
