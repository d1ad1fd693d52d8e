#!/usr/bin/env bash
# Widget benchmark: gzipped download size, script tag → ready, Approve → result (p50/p99)
# and a trace of where the milliseconds go, in headless Chromium on the real stack.
# Usage: scripts/bench-widget.sh [N] [--compare OTHER_WWW [--compare-extension OTHER_TREE]
#                                  [--compare-bridge OTHER_BRIDGE_BIN] [--compare-server BIN]]
#                                  [--floor] [--cross-site] [--debug] [--press MS]
#   --compare: A/B against another build's www/ (e.g. of an older commit), page loads
#   alternating in one browser so both see the same machine load.
#   --compare-extension / --compare-bridge: the compared side also runs the extension
#   of OTHER_TREE (a tree with extension/ and scripts/build-extension.sh, e.g.
#   `git archive OLD extension scripts/build-extension.sh | tar -x -C DIR`) and/or
#   another bridge binary, in a browser of its own (page loads still alternate).
#   --compare-server: the compared side's payment server is another binary (what it
#   serves beside the files counts too, e.g. headers).
#   --cross-site: the test shop on https://localhost:PORT, cross-site to the payment
#   origin as a merchant's page is in production (the frame gets a process of its own).
#   Run with CARDPAY_BRIDGE_LOG=debug for the bridge's per-request timings in its log,
#   and CARDPAY_KEEP_BRIDGE_LOG=FILE to keep that log (the browser's profile is deleted).
#   The card, bridge and payment server run as release builds (--debug: debug builds).
#   --press MS: Approve is pressed with the mouse and let go MS ms later, as a person
#   does (the widget asks the card's proof at the press); default: a click dispatched
#   in the frame with no press before it.
#   --floor: A/B against the floor (tests/browser/floor-frame.js): a frame that does only
#   the round trips any widget of DESIGN's architecture waits for (the page's handshake,
#   the bridge's `readers` and `connect` before `ready`; three card commands and two
#   POSTs from Approve to `result`), no wasm: what no build can go below on this
#   machine at this hour.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
bash "$ROOT/scripts/build-widget.sh"
cd "$ROOT/tests/browser"
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund
CARDPAY_SKIP_WIDGET_BUILD=1 exec node checkout-bench.mjs "$@"
