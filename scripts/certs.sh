#!/usr/bin/env bash
# A local TEST certificate authority and a server certificate for this machine's
# loopback names, made with Debian's openssl CLI (nothing downloaded):
#
#   scripts/certs.sh DIR            make what is missing in DIR, print DIR's files
#   scripts/certs.sh DIR --spki     also print the CA's SPKI hash (base64 sha256)
#
# Writes (PEM):
#   DIR/ca.pem      the CA certificate: what browsers and clients are told to trust
#   DIR/ca.key      the CA's private key (mode 0600; never leaves DIR)
#   DIR/server.pem  the server certificate, then the CA (the chain a server sends)
#   DIR/server.key  the server's private key (mode 0600)
#
# The CA is name-constrained: it can vouch only for localhost, 127.0.0.0/8 and ::1,
# so a profile that trusts it trusts nothing else, even if ca.key leaks. The server
# certificate names localhost, 127.0.0.1 and ::1. Both are EC P-256.
#
# Run it again and it keeps the CA (so the browsers that trust it keep trusting it)
# and the server certificate, unless that expires within 30 days or the CA changed.
# Delete DIR to start over.
set -euo pipefail
usage() { sed -n '5,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
DIR="$1"; shift
SPKI=0
for a in "$@"; do
  case "$a" in
    --spki) SPKI=1 ;;
    *) usage ;;
  esac
done
command -v openssl >/dev/null || { echo "certs.sh: needs openssl (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$DIR"
cd "$DIR"
umask 077

# Name constraints of the CA (critical: a client that cannot check them must refuse).
CA_EXT="basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
nameConstraints=critical,permitted;DNS:localhost,permitted;IP:127.0.0.0/255.0.0.0,permitted;IP:0:0:0:0:0:0:0:1/FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF"
SERVER_EXT="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"

new_ca=0
if [ ! -s ca.pem ] || [ ! -s ca.key ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -sha256 -days 1825 \
    -subj "/O=Cardpay TEST/CN=Cardpay local TEST CA $(hostname -s 2>/dev/null || echo host) $(date -u +%Y%m%d%H%M%S)" \
    -config <(printf '[req]\ndistinguished_name=dn\nx509_extensions=v3\n[dn]\n[v3]\n%s\n' "$CA_EXT") \
    -out ca.pem
  new_ca=1
fi

# The server certificate: (re)made if missing, expiring, or not issued by this CA.
fresh=0
if [ "$new_ca" = 0 ] && [ -s server.pem ] && [ -s server.key ] \
  && openssl x509 -in server.pem -noout -checkend $((30 * 86400)) >/dev/null \
  && openssl verify -CAfile ca.pem server.pem >/dev/null 2>&1; then
  fresh=1
fi
if [ "$fresh" = 0 ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key 2>/dev/null
  openssl req -new -key server.key -subj "/O=Cardpay TEST/CN=localhost" -out server.csr
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 397 \
    -extfile <(printf '%s\n' "$SERVER_EXT") -out server.leaf.pem 2>/dev/null
  cat server.leaf.pem ca.pem > server.pem
  rm -f server.csr server.leaf.pem ca.srl
  openssl verify -CAfile ca.pem server.pem >/dev/null
fi
chmod 600 ca.key server.key
chmod 644 ca.pem server.pem
echo "$PWD/ca.pem"
echo "$PWD/server.pem"
echo "$PWD/server.key"
if [ "$SPKI" = 1 ]; then
  openssl x509 -in ca.pem -noout -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64
fi
