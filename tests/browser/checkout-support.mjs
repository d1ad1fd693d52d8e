// Support for the checkout widget's browser tests and benchmark:
// - build the widget (scripts/build-widget.sh), the payment server, bridge + teststack;
// - run the real payment server (SQLite in a temp dir, serving www/);
// - a test merchant in Node that mints widget sessions exactly as merchant-kit does
//   (HKDF → DK, AES-256-GCM ETSK, HMAC session MAC) and serves a checkout page that
//   embeds the widget with one SRI-pinned <script> tag under a strict CSP;
// - signed merchant-API calls (GET /v1/transactions/{id});
// - reading the card over PC/SC through the extension and bridge.
// Everything over https with this process's test CA (lib/tls.mjs): the servers
// get its certificate and trust it for their own calls (ca_file / DEMO_CA_FILE).
//
// TEST KEYS ONLY (docs/TEAM.md).

import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { createHash, createHmac, createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile, readFile, access } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import * as h from './lib/index.mjs';

const execFileP = promisify(execFile);
export const repoRoot = h.repoRoot;
export const wwwDir = path.join(repoRoot, 'www');
export const TEST_MKP = '404142434445464748494A4B4C4D4E4F';
export const TEST_MKL = '505152535455565758595A5B5C5D5E5F';
export const TERMINAL = '000000000001';
export const PIN = '1234';

/** The widget tests' card: 500.00 EUR (the testbed default of 100.00 is too little
 * for a whole test file), the default no-PIN limit 20.00, PIN 1234. */
export const CARD_BALANCE = 50_000;
export const NO_PIN_LIMIT = 2_000;

/** Every verify mode: what a test merchant may use unless it names its own. */
export const ALL_VERIFY_MODES = ['payment_server', 'security_module', 'client', 'merchant'];

/** The https origin of a loopback port (what every test server serves). */
export function localOrigin(port, host = '127.0.0.1') {
  return `https://${host}:${port}`;
}

/** `bridge install` arguments for tests that enter the PIN many times in a row:
 * relax the bridge's per-origin VERIFY rate (test profiles only). */
export const MANY_PINS = ['--verify-burst', '100', '--verify-refill-secs', '1'];

/** The test stack with the widget tests' card ({@link CARD_BALANCE} unless given). */
export async function startCardStack({ bins, balance = CARD_BALANCE, noPinLimit = NO_PIN_LIMIT } = {}) {
  const stack = await h.startStack({ bins, balance, noPinLimit });
  if (stack.balance !== balance || stack.noPinLimit !== noPinLimit) {
    await stack.stop();
    throw new Error(`teststack ignored --balance/--no-pin-limit: ${stack.balance}, ${stack.noPinLimit}`);
  }
  return stack;
}

export function targetDir() {
  return process.env.CARGO_TARGET_DIR || path.join(repoRoot, 'target');
}

/**
 * Build the widget (unless CARDPAY_SKIP_WIDGET_BUILD=1 and it exists) and every binary
 * the checkout tests run; `release: true` for the
 * benchmarks (see `h.buildRust`). `CARDPAY_CARD_BIN` / `CARDPAY_BRIDGE_BIN` override.
 */
export async function buildAll({ log = false, release = false } = {}) {
  const env = { ...process.env, CARGO_TARGET_DIR: targetDir() };
  // Everything the build writes: every mode's and language's wasm in the build's folder
  // and the loader (a tree built before the split, versioned folders or the builds per
  // language lacks some of them).
  const dir = await buildDir().catch(() => null);
  const built = dir ? [...buildNames().map((n) => `${dir}${n}_bg.wasm`),
    'checkout.js'] : [];
  const have = dir != null && (await Promise.all(built.map((f) => access(path.join(wwwDir, f)).then(() => true, () => false))))
    .every(Boolean);
  if (!(have && process.env.CARDPAY_SKIP_WIDGET_BUILD === '1')) {
    const r = await execFileP(path.join(repoRoot, 'scripts', 'build-widget.sh'), [], { cwd: repoRoot, env, maxBuffer: 64 << 20 });
    if (log) process.stderr.write(r.stderr);
  }
  const r = await execFileP('cargo', ['build', ...(release ? ['--release'] : []),
    '-p', 'payment-server', '--bin', 'payment-server', '-p', 'card', '--bin', 'card',
    '-p', 'demo-merchant', '--bin', 'demo-merchant'],
    { cwd: repoRoot, env, maxBuffer: 64 << 20 });
  if (log) process.stderr.write(r.stderr);
  const profile = release ? 'release' : 'debug';
  // The test stack (testbed) runs this card binary instead of building its own.
  process.env.CARDPAY_CARD_BIN ||= path.join(targetDir(), profile, 'card');
  const bins = await h.buildRust({ target: targetDir(), log, release });
  bins.paymentServer = path.join(targetDir(), profile, 'payment-server');
  bins.demoMerchant = path.join(targetDir(), profile, 'demo-merchant');
  return bins;
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

async function waitHttp(url, ms = 30_000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
      last = new Error(`HTTP ${r.status}`);
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up: ${last}`);
}

/**
 * Start the payment server over https (the test CA's certificate; its webhooks
 * trust the test CA). `merchants`: [{id, name, key (64 hex), origins?,
 * verifyModes? (default all four), webhookUrl?}]. Returns { origin, url(p), dir, stop() }.
 */
export async function startPaymentServer({ bin, merchants, port, www = wwwDir, env = {}, corsOrigins = [], extraToml = (dir) => '' }) {
  const dir = await mkdtemp(path.join(tmpdir(), 'cardpay-pay-'));
  port = port || (await freePort());
  const toml = [
    `listen = "127.0.0.1:${port}"`,
    `ca_file = "${h.testCa.caFile}"`,
    `db_path = "${path.join(dir, 'payments.sqlite')}"`,
    `www_dir = "${www}"`,
    'operator_token = "test-operator-token"',
    // checkout.js is loaded cross-origin with SRI (crossorigin=anonymous): it needs CORS.
    `cors_origins = ${JSON.stringify(corsOrigins)}`,
    '[security_module]',
    `terminal = "${TERMINAL}"`,
    '[[security_module.keys]]',
    'version = 1',
    `mkp = "${TEST_MKP}"`,
    `mkl = "${TEST_MKL}"`,
    ...merchants.flatMap((m) => [
      '[[merchants]]',
      `id = "${m.id}"`,
      `name = "${m.name}"`,
      `key = "${m.key}"`,
      `origins = ${JSON.stringify(m.origins || [])}`,
      `verify_modes = ${JSON.stringify(m.verifyModes || ALL_VERIFY_MODES)}`,
      ...(m.webhookUrl ? [`webhook_url = "${m.webhookUrl}"`] : []),
    ]),
    // Further sections (e.g. `[clearing]`), given the server's temp dir.
    extraToml(dir),
    '[tls]',
    `cert_file = "${h.testCa.certFile}"`,
    `key_file = "${h.testCa.keyFile}"`,
  ].join('\n');
  const config = path.join(dir, 'payment-server.toml');
  await writeFile(config, toml + '\n');
  const child = spawn(bin, ['--config', config], {
    env: { ...process.env, RUST_LOG: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  const keep = (d) => { stderr += d; if (stderr.length > 100_000) stderr = stderr.slice(-50_000); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const origin = localOrigin(port);
  await Promise.race([
    waitHttp(origin + '/healthz'),
    exited.then((c) => { throw new Error(`payment server exited ${c}: ${stderr}`); }),
  ]);
  return {
    origin,
    dir,
    config,
    url: (p = '/') => origin + p,
    log: () => stderr,
    async stop() {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Start the demo store (demo-merchant) for merchant `m` ({id, name, key}) on `port`
 * over https (the test CA's certificate), paying through `pay` (trusting the test
 * CA). Returns { origin, url(p), stop() }.
 */
export async function startDemoMerchant({ bin, pay, m, port, verifyMode = 'payment_server' }) {
  const dir = await mkdtemp(path.join(tmpdir(), 'cardpay-demo-'));
  port = port || (await freePort());
  const origin = localOrigin(port);
  const child = spawn(bin, [], {
    env: {
      ...process.env,
      RUST_LOG: 'warn',
      DEMO_LISTEN: `127.0.0.1:${port}`,
      DEMO_DB: path.join(dir, 'demo.sqlite'),
      DEMO_PAYMENT_URL: pay.origin,
      DEMO_PUBLIC_ORIGIN: origin,
      DEMO_MERCHANT_ID: m.id,
      DEMO_MERCHANT_NAME: m.name,
      DEMO_MERCHANT_KEY: m.key,
      DEMO_VERIFY_MODE: verifyMode,
      DEMO_TLS_CERT: h.testCa.certFile,
      DEMO_TLS_KEY: h.testCa.keyFile,
      DEMO_CA_FILE: h.testCa.caFile,
      // For the store's <script integrity=…> once it takes it (see docs/widget.md).
      DEMO_CHECKOUT_SRI: await sri(path.join(wwwDir, 'checkout.js')),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (d) => { out += d; if (out.length > 100_000) out = out.slice(-50_000); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await Promise.race([
    waitHttp(origin + '/healthz'),
    exited.then((c) => { throw new Error(`demo merchant exited ${c}: ${out}`); }),
  ]);
  return {
    origin,
    url: (p = '/') => origin + p,
    log: () => out,
    async stop() {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Records the widget's DOM events (`cardpay:*` CustomEvents bubble from the mount
 *  element) into `window.cardpayLog` on any merchant page, e.g. the demo store's. */
export const recordEventsScript = `
  window.cardpayLog = [];
  for (const e of ['ready', 'capability', 'result', 'cancel', 'error']) {
    document.addEventListener('cardpay:' + e, (ev) => window.cardpayLog.push({ event: e, t: performance.now(), detail: ev.detail }));
  }`;

// ---- merchant side (mirrors payment-server/merchant-kit) ----

function u32be(n) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** purse::session::Session::canonical_bytes (`cardpay/session/v2`, with the order reference) */
export function canonicalSession(s) {
  const fields = [
    s.merchant_id, s.merchant_name, s.txn_id, s.order_ref ?? '', String(s.amount), String(s.currency), String(s.exponent),
    s.purse === 'points' ? '1' : '0', String(s.expires_at), s.verify_mode, s.result_url, s.origin, s.terminal,
  ];
  const parts = [Buffer.from('cardpay/session/v2')];
  for (const f of fields) {
    const b = Buffer.from(f, 'utf8');
    parts.push(u32be(b.length), b);
  }
  return Buffer.concat(parts);
}

/** Open what {@link sealGcm} made; throws if it does not authenticate. */
export function openGcm(key, aadStr, sealed) {
  const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
  d.setAAD(Buffer.from(aadStr));
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  return Buffer.concat([d.update(sealed.subarray(12, sealed.length - 16)), d.final()]);
}

/** `K_wh = HKDF-SHA256(K_mp, salt "", info "cardpay/webhook" || merchant id)`. */
export function webhookKey(kmpHex, merchantId) {
  const info = Buffer.concat([Buffer.from('cardpay/webhook'), Buffer.from(merchantId)]);
  return Buffer.from(hkdfSync('sha256', Buffer.from(kmpHex, 'hex'), Buffer.alloc(0), info, 32));
}

/** The `cardpay-signature` of a webhook delivery. */
export function webhookSignature(kwh, timestamp, eventId, body) {
  return 'v1=' + createHmac('sha256', kwh).update(`cardpay/webhook/v1\n${timestamp}\n${eventId}\n`).update(body).digest('hex');
}

/** The merchant API request signature (merchant-kit `auth::sign`). */
export function merchantApiSignature(kmpHex, method, pathAndQuery, ts, body = '') {
  const bodyHash = createHash('sha256').update(body).digest('hex');
  const msg = `cardpay/merchant-api/v1\n${method}\n${pathAndQuery}\n${ts}\n${bodyHash}`;
  return createHmac('sha256', Buffer.from(kmpHex, 'hex')).update(msg).digest('hex');
}

export function deriveDk(kmpHex, txnId, merchantId) {
  const info = Buffer.concat([Buffer.from('cardpay/dk'), Buffer.from(merchantId)]);
  return Buffer.from(hkdfSync('sha256', Buffer.from(kmpHex, 'hex'), Buffer.from(txnId), info, 32));
}

/** AES-256-GCM `nonce || ciphertext || tag` (docs/protocol.md "Sealing"). */
export function sealGcm(key, aadStr, plain, nonce = randomBytes(12)) {
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(Buffer.from(aadStr));
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([nonce, ct, c.getAuthTag()]);
}

/** merchant-kit `build_session`: {session, session_mac, etsk, tsk} for the widget. */
export function buildSession(m, p) {
  const session = {
    merchant_id: m.id,
    merchant_name: m.name,
    txn_id: p.txnId,
    // One order per transaction unless the test says otherwise.
    order_ref: p.orderRef ?? p.txnId,
    amount: p.amount,
    currency: p.currency ?? 978,
    exponent: p.exponent ?? 2,
    purse: p.purse ?? 'money',
    expires_at: p.expiresAt ?? Math.floor(Date.now() / 1000) + 900,
    verify_mode: p.verifyMode ?? 'payment_server',
    result_url: p.resultUrl,
    origin: p.origin,
    terminal: TERMINAL,
  };
  const dk = deriveDk(m.key, session.txn_id, m.id);
  const tsk = randomBytes(32);
  const etsk = sealGcm(dk, `cardpay/etsk/${session.txn_id}`, tsk);
  const mac = createHmac('sha256', Buffer.from(m.key, 'hex')).update(canonicalSession(session)).update(etsk).digest();
  return { session, session_mac: mac.toString('hex'), etsk: etsk.toString('hex'), tsk: tsk.toString('hex') };
}

/** Signed merchant-API GET (merchant-kit `auth::sign`). */
export async function merchantGet(pay, m, p) {
  const ts = Math.floor(Date.now() / 1000);
  const sig = merchantApiSignature(m.key, 'GET', p, ts);
  const r = await fetch(pay.url(p), {
    headers: { 'x-cardpay-merchant': m.id, 'x-cardpay-timestamp': String(ts), 'x-cardpay-signature': sig },
  });
  return { status: r.status, body: await r.json().catch(() => null) };
}

export async function sri(file) {
  return 'sha384-' + createHash('sha384').update(await readFile(file)).digest('base64');
}

/**
 * A test merchant page server: GET /checkout?amount=…&txn=…&timeout=… renders a page that
 * mounts the widget; widget events land in `window.cardpayLog` (with timestamps).
 * Results posted by the page to /result are kept in `results`.
 */
export async function startTestMerchant({ pay, merchant, port, www = wwwDir, host = '127.0.0.1' }) {
  const integrity = await sri(path.join(www, 'checkout.js'));
  const results = [];
  const sessions = new Map();
  port = port || (await freePort());
  const origin = localOrigin(port, host);
  merchant.origin = origin;
  const pageJs = `
    window.cardpayLog = [];
    const data = JSON.parse(document.getElementById('cardpay-session').textContent);
    const opts = { session: data.session, lang: data.lang || undefined, timeoutMs: data.timeoutMs || undefined };
    performance.mark('mount');
    const w = Cardpay.mount('#cardpay', opts);
    for (const e of ['ready', 'capability', 'result', 'cancel', 'error']) {
      w.on(e, (d) => {
        const entry = { event: e, t: performance.now(), detail: d };
        window.cardpayLog.push(entry);
        // checkout-bench.mjs listens on the console instead of polling the log: a poll
        // runs on this page's main thread, which the widget frame shares (same site).
        if (window.cardpayBenchConsole) console.debug('cardpay-bench ' + JSON.stringify(entry));
        if (e === 'result') {
          fetch('/result', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(d.result) })
            .then((r) => r.text()).then(() => { document.getElementById('status').textContent = 'paid'; });
        }
        if (e === 'cancel') document.getElementById('status').textContent = 'cancelled: ' + d.reason;
      });
    }`;
  const site = await h.serve({
    '/page.js': (req, res) => {
      res.writeHead(200, { 'content-type': 'text/javascript', 'cache-control': 'no-store' });
      res.end(pageJs);
    },
    '/checkout': (req, res) => {
      const q = new URL(req.url, origin).searchParams;
      const txnId = q.get('txn') || 'T-' + randomBytes(6).toString('hex');
      const ws = buildSession(merchant, {
        txnId,
        amount: Number(q.get('amount') || 1250),
        origin,
        resultUrl: origin + '/result',
        verifyMode: q.get('mode') || undefined,
      });
      sessions.set(txnId, ws);
      const data = { session: ws, timeoutMs: Number(q.get('timeout') || 0), lang: q.get('lang') || '' };
      const csp = [
        "default-src 'self'",
        `script-src 'self' ${pay.origin}`,
        `frame-src ${pay.origin}`,
        "style-src 'self' 'unsafe-inline'",
        "object-src 'none'",
        "base-uri 'none'",
      ].join('; ');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': csp, 'cache-control': 'no-store' });
      res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test shop checkout</title>
<style>#cardpay { --cp-accent: #7a1fa2; max-width: 420px; }</style>
<script src="${pay.origin}/checkout.js" integrity="${integrity}" crossorigin="anonymous"></script></head>
<body><h1>Checkout</h1><p id="status">open</p><div id="cardpay"></div>
<script type="application/json" id="cardpay-session">${JSON.stringify(data).replace(/</g, '\\u003c')}</script>
<script src="/page.js"></script></body></html>`);
    },
    '/result': (req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => {
        try { results.push(JSON.parse(body)); } catch { /* ignore */ }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      });
    },
  }, { port, host });
  return { ...site, merchant, results, sessions, integrity };
}

// ---- the card over PC/SC (extension → bridge → pcscd → vpcd → card) ----

/** Money balance of the card in `reader`, read from a page of the payment origin
 *  (or the balance `apdu` asks for, e.g. GET BALANCE of the points purse). */
export async function readBalance(context, pay, reader, apdu = h.GET_BALANCE_MONEY) {
  const page = await context.newPage();
  try {
    await page.goto(pay.url('/install.html'));
    const c = await h.cardpayRequest(page, { type: 'connect', reader });
    if (!c.result) throw new Error('connect: ' + JSON.stringify(c));
    const handle = c.result.handle;
    const sel = await h.transmit(page, handle, h.SELECT_CARDPAY);
    if (!sel.endsWith('9000')) throw new Error('SELECT ' + sel);
    const bal = await h.transmit(page, handle, apdu);
    await h.cardpayRequest(page, { type: 'disconnect', handle });
    if (!bal.endsWith('9000')) throw new Error('GET BALANCE ' + bal);
    return parseInt(bal.slice(0, 8), 16);
  } finally {
    await page.close();
  }
}

/** What the widget frame of `page` fetched (Navigation and Resource Timing: widget.html
 *  first): each entry's path, `initiatorType`, body sizes as sent (`enc`, compressed)
 *  and decoded (`dec`), and the bytes that crossed the network (`net`: 0 when the
 *  browser's cache answered without asking the server). A file served from the preload
 *  that widget.html's `Link` header asked for is one entry, from the link; a preload
 *  the frame did not use leaves a second entry for the same file. */
export async function widgetFiles(page) {
  const frame = await widgetFrameHandle(page);
  return frame.evaluate(() => [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
    .map((e) => ({ path: new URL(e.name).pathname, by: e.initiatorType, enc: e.encodedBodySize, dec: e.decodedBodySize, net: e.transferSize })));
}

/** The folder of the frame's files (boot script, style sheet, glue, wasm) as the
 *  payment server serves it, `/pkg/<version>/` (`pkg/manifest.json`, written by
 *  scripts/build-widget.sh). */
export async function buildDir(www = wwwDir) {
  const { version } = JSON.parse(await readFile(path.join(www, 'pkg', 'manifest.json'), 'utf8'));
  if (!/^[0-9a-f]{16}$/.test(version)) throw new Error(`pkg/manifest.json: bad version ${version}`);
  return `/pkg/${version}/`;
}

/** A page's widget frame that is not the first in its browser: the build's files came
 *  from the browser's cache without asking the payment server (they are `immutable`:
 *  their folder is the build's; sent `no-cache`, they would be asked for again).
 *  widget.html always comes from the server: its URL carries the mount's nonce. */
export async function expectBuildFromCache(page, mode = 'purchase', lang = 'en') {
  const files = await widgetFiles(page);
  const dir = await buildDir();
  const mine = buildName(mode, lang);
  for (const f of [`${dir}widget-boot.js`, `${dir}widget.css`, `${dir}${mine}.js`, `${dir}${mine}_bg.wasm`]) {
    const got = files.filter((e) => e.path === f);
    assert.equal(got.length, 1, `${f} fetched once: ${JSON.stringify(files)}`);
    assert.equal(got[0].net, 0, `${f} from the cache, the server not asked: ${JSON.stringify(got[0])}`);
    assert.ok(got[0].dec > 0, `${f} from the cache: ${JSON.stringify(got[0])}`);
  }
}

/** The shopper languages the build has a wasm for (scripts/build-widget.sh). */
export const LANGS = ['en', 'de'];

/** The name of a mode's and shopper language's glue and wasm (scripts/build-widget.sh;
 *  English has no suffix). */
export function buildName(mode, lang = 'en') {
  return (mode === 'load' ? 'widget-load' : 'widget') + (lang === 'en' ? '' : `-${lang}`);
}

/** Every build's name: each mode in each shopper language ([`buildName`]). */
export function buildNames() {
  return ['purchase', 'load'].flatMap((m) => LANGS.map((l) => buildName(m, l)));
}

// Each file the frame loads, by the frame's mode and the shopper's language: the first
// name a build has counts. The boot script and style sheet are in pkg/ (minified by the
// build) since wsize2, at the top of www/ before; each mode has its own glue and wasm
// since wsplit, one wasm served both before; each language its own since the builds
// per language (`-de`; English has no suffix), one wasm served every language before;
// all are in the build's folder pkg/<version>/ (`B/` here) since versioned folders, in
// pkg/ before (a --compare build may be older).
const common = [['checkout.js'], ['widget.html'], ['B/widget-boot.js', 'pkg/widget-boot.js', 'widget-boot.js'],
  ['B/widget.css', 'pkg/widget.css', 'widget.css']];
const MODES = {
  purchase: (l) => [...common, [`B/${buildName('purchase', l)}.js`, 'B/widget.js', 'pkg/widget.js'],
    [`B/${buildName('purchase', l)}_bg.wasm`, 'B/widget_bg.wasm', 'pkg/widget_bg.wasm']],
  load: (l) => [...common, [`B/${buildName('load', l)}.js`, 'B/widget-load.js', 'pkg/widget-load.js', 'pkg/widget.js'],
    [`B/${buildName('load', l)}_bg.wasm`, 'B/widget-load_bg.wasm', 'pkg/widget-load_bg.wasm', 'pkg/widget_bg.wasm']],
};
/** What a shopper downloads for a frame of `mode` in `lang` from the build in `www`:
 *  each file's raw size, its gzip size (the build's gzip copy, `copy: true`, as the
 *  payment server sends it to a browser that takes gzip; else node's gzip -9) and its
 *  brotli copy's size (null without one). Used by the bench and the download budget. */
export async function sizesOf(www, mode, lang) {
  const out = [];
  const build = (await buildDir(www).catch(() => null))?.slice(1);
  for (const names of MODES[mode](lang)) {
    for (const name of names) {
      if (name.startsWith('B/') && !build) continue;
      const f = name.replace(/^B\//, build);
      const b = await readFile(path.join(www, f)).catch(() => null);
      if (b) {
        // What the payment server sends: the build's precompressed copies, if the build
        // wrote them (since 2026-11-30): the brotli one to Chromium (it accepts brotli
        // over HTTPS), the gzip one to a browser that takes gzip only (by zopfli since
        // 2026-12-02). Without a gzip copy: node's gzip -9, as the bench always computed.
        const br = await readFile(path.join(www, f + '.br')).catch(() => null);
        const gz = await readFile(path.join(www, f + '.gz')).catch(() => null);
        const gz9 = gzipSync(b, { level: 9 }).length;
        out.push({ f: name.replace(/^B\//, 'pkg/<v>/'), raw: b.length, gz: gz ? gz.length : gz9, gz9, br: br ? br.length : null, copy: !!gz });
        break;
      }
    }
  }
  return out;
}

// What a shopper of each language downloads: the six files of the mode, the glue and
// the wasm the language's own (a build before the builds per language: the same for
// every language). The headline figure is the largest.
export async function perLanguage(www, mode = 'purchase') {
  const out = [];
  for (const l of LANGS) out.push({ l, sizes: await sizesOf(www, mode, l) });
  return out;
}

/** The widget frame of `page` fetched each file of its mode and language once, the wasm
 *  and the style sheet from widget.html's preloads (a preload of the wrong name, mode
 *  or language would be fetched a second time, or be there unused), and none of another
 *  mode's or language's. */
export async function expectModeFilesPreloaded(page, mode, lang = 'en') {
  const files = await widgetFiles(page);
  const mine = buildName(mode, lang);
  const others = buildNames().filter((n) => n !== mine);
  const dir = await buildDir();
  const want = { [`${dir}widget-boot.js`]: null, [`${dir}${mine}.js`]: null, [`${dir}${mine}_bg.wasm`]: 'link', [`${dir}widget.css`]: 'link' };
  for (const [file, by] of Object.entries(want)) {
    const got = files.filter((e) => e.path === file);
    assert.equal(got.length, 1, `${file} fetched once: ${JSON.stringify(files)}`);
    if (by) assert.equal(got[0].by, by, `${file} from the preload: ${JSON.stringify(files)}`);
    // Sent as the build's precompressed copy (the wasm's brotli copy is 2.7× smaller),
    // decoded by the browser, and the widget ran on it.
    assert.ok(got[0].enc > 0 && got[0].enc < got[0].dec, `${file} sent compressed: ${JSON.stringify(got[0])}`);
  }
  for (const f of others.flatMap((o) => [`${dir}${o}.js`, `${dir}${o}_bg.wasm`])) {
    assert.ok(!files.some((e) => e.path === f), `${f} is another mode's or language's: ${JSON.stringify(files)}`);
  }
}

/** The widget iframe of a page (a Playwright FrameLocator). */
export function widgetFrame(page) {
  return page.frameLocator('iframe[data-cardpay]');
}

/**
 * Wait until Approve counts: the widget takes it only once its whole frame has been
 * seen, unobscured and opaque, for half a second (its clickjacking guard, docs/widget.md),
 * and says so with `aria-disabled` until then; a press, a key or a click on it before
 * then does nothing. While Approve is on screen the widget has Chromium watch whether
 * the frame is seen, and Chromium then ignores a click at a point the frame did not
 * cover throughout the last 200 ms (the frame grows with a new screen or the expiry
 * warning): a click on Cancel or "not mine" right after the confirm screen appears
 * waits here too.
 * `frame`: a FrameLocator or a Frame.
 */
export async function approveCounts(frame, { timeoutMs = 15_000 } = {}) {
  // Approve counts only with the whole frame in view: scroll to it, as a shopper does.
  const owner = typeof frame.owner === 'function' ? frame.owner() : await frame.frameElement();
  await owner.scrollIntoViewIfNeeded();
  await frame.locator('[data-action=approve]:not([aria-disabled=true])').waitFor({ timeout: timeoutMs });
}

/** Click the frame's Approve (`name`: its label, e.g. 'Load my card') once it counts
 *  ([`approveCounts`]), with real input events; `timeout` (ms) for each wait. */
export async function approve(frame, name = 'Approve payment', { timeout = 15_000 } = {}) {
  await approveCounts(frame, { timeoutMs: timeout });
  await frame.getByRole('button', { name }).click({ timeout });
}

/** `bridge install` limits for the benchmarks' browsers: the card's APDU rate and
 *  transactions an hour are not what they measure. */
export const BENCH_INSTALL_ARGS = ['--apdu-burst', '100000', '--apdu-per-sec', '100000', '--initialize-burst', '1000'];

/** For the benches (an init script): timestamps (epoch ms) of the widget frame's traffic,
 *  recorded in the frame itself in `window.__cpTrace` (`boot`: the boot script runs, its
 *  first act being the wasm's fetch; `wasm-start`/`wasm-ready`; bridge `send`/`reply`;
 *  `loaded`, `init`; `body` of a response read).
 *  In the shop page it only notes when the frame's `cardpay:loaded` reaches it
 *  (`window.__cpLoadedAt`). */
export const frameTraceScript = `(() => {
  const t = () => performance.timeOrigin + performance.now();
  if (!location.pathname.endsWith('/widget.html')) {
    addEventListener('message', (e) => {
      if (e.data && e.data.type === 'cardpay:loaded' && !window.__cpLoadedAt) window.__cpLoadedAt = t();
    }, true);
    return;
  }
  const log = window.__cpTrace = [];
  // The boot script's first act is the wasm's fetch: the first fetch is when it runs.
  const fetch0 = window.fetch;
  window.fetch = function (...a) {
    if (!log.some((x) => x.ev === 'boot')) log.push({ t: t(), ev: 'boot' });
    return fetch0.apply(this, a);
  };
  const post = window.postMessage.bind(window);
  window.postMessage = function (m, o) {
    if (m && m.dir === 'to-extension') log.push({ t: t(), ev: 'send', type: m.type, id: m.id, apdu: m.apdu && m.apdu.slice(0, 4), p1: m.apdu && m.apdu.slice(4, 6) });
    return post(m, o);
  };
  window.addEventListener('message', (e) => {
    const m = e.data;
    if (m && m.dir === 'from-extension' && m.id != null) log.push({ t: t(), ev: 'reply', id: m.id });
    else if (m && m.type === 'cardpay:loaded') log.push({ t: t(), ev: 'loaded' });
    else if (m && m.type === 'cardpay:init') log.push({ t: t(), ev: 'init' });
  }, true);
  const text = Response.prototype.text;
  Response.prototype.text = function () {
    const url = this.url;
    return text.call(this).then((b) => { log.push({ t: t(), ev: 'body', url }); return b; });
  };
  for (const k of ['instantiate', 'instantiateStreaming']) {
    const f = WebAssembly[k];
    WebAssembly[k] = function (...a) {
      log.push({ t: t(), ev: 'wasm-start' });
      return f.apply(this, a).then((r) => { log.push({ t: t(), ev: 'wasm-ready' }); return r; });
    };
  }
})();`;

/** Make the shop pages of `context` tell their widget events on the console too (see
 *  `consoleEvents`). */
export async function tellEventsOnConsole(context) {
  await context.addInitScript('window.cardpayBenchConsole = true;');
}

/** The widget events of `page` as the shop page tells them, without polling the page:
 *  Playwright's waitForFunction polls on every animation frame, on the main thread the
 *  widget frame shares with its same-site shop page, and so delayed the widget's own
 *  messages (a Chromium trace showed the extension's `hello` waiting 7 ms behind it). */
export function consoleEvents(page) {
  const seen = [];
  const waiting = [];
  page.on('console', (m) => {
    const text = m.text();
    if (!text.startsWith('cardpay-bench ')) return;
    const entry = JSON.parse(text.slice('cardpay-bench '.length));
    seen.push(entry);
    for (const w of waiting.splice(0)) if (!w(entry)) waiting.push(w);
  });
  return (event, timeoutMs = 30_000) => new Promise((resolve, reject) => {
    const found = seen.find((x) => x.event === event);
    if (found) return resolve(found);
    const timer = setTimeout(() => reject(new Error(`no ${event} event in ${timeoutMs} ms: ${JSON.stringify(seen)}`)), timeoutMs);
    waiting.push((x) => {
      if (x.event !== event) return false;
      clearTimeout(timer);
      resolve(x);
      return true;
    });
  });
}

/** Wait for a widget event in the page's log; returns its detail. */
export async function waitEvent(page, event, { timeoutMs = 30_000, count = 1 } = {}) {
  await page.waitForFunction(([e, n]) => (window.cardpayLog || []).filter((x) => x.event === e).length >= n, [event, count], { timeout: timeoutMs });
  return page.evaluate((e) => window.cardpayLog.filter((x) => x.event === e).pop(), event);
}

/** Type a PIN on the scrambled keypad, finding each key by its accessible name. */
export async function typePin(frame, pin) {
  for (const d of pin) {
    await frame.getByRole('button', { name: d, exact: true }).click();
  }
  await frame.getByRole('button', { name: 'OK', exact: true }).click();
}

/** The keypad's visual digit order and geometry (to compare layouts). */
export async function keypadLayout(frame) {
  const pad = frame.locator('[data-testid=keypad]');
  await pad.waitFor();
  return pad.evaluate((el) => {
    const keys = [...el.querySelectorAll('button')].map((b) => {
      const r = b.getBoundingClientRect();
      return { label: b.getAttribute('aria-label'), x: Math.round(r.x), y: Math.round(r.y), w: Math.round(r.width), h: Math.round(r.height) };
    });
    return { order: el.getAttribute('data-order'), style: el.getAttribute('style'), keys };
  });
}

export { h };

// ---- accessibility (axe-core in the widget frame, and what axe cannot see) ----

/** The widget iframe of a page as a Playwright Frame (for evaluate). */
export async function widgetFrameHandle(page, { timeoutMs = 15_000 } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const f = page.frames().find((x) => x.url().includes('/widget.html'));
    if (f) return f;
    if (Date.now() > end) throw new Error('no widget frame');
    await new Promise((r) => setTimeout(r, 20));
  }
}

let axeSourceText;
/** WCAG 2.0–2.2 A/AA and best practices. */
export const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'];

/**
 * Run axe-core (npm `axe-core`, injected into the widget frame through the driver, so
 * the frame's CSP needs no change) and return its violations as short strings.
 */
export async function axeViolations(page) {
  const frame = await widgetFrameHandle(page);
  if (!axeSourceText) {
    const { createRequire } = await import('node:module');
    const require = createRequire(import.meta.url);
    axeSourceText = await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
  }
  if (!(await frame.evaluate(() => typeof window.axe === 'object'))) await frame.evaluate(axeSourceText);
  return frame.evaluate(async (tags) => {
    const r = await window.axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] });
    return r.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
  }, AXE_TAGS);
}

/** What has focus in the widget frame: {tag, id, action, testid, label, text}. */
export async function focusedInWidget(page) {
  const frame = await widgetFrameHandle(page);
  return frame.evaluate(() => {
    const e = document.activeElement;
    if (!e) return { tag: 'none' };
    return {
      tag: e.tagName.toLowerCase(), id: e.id, action: e.getAttribute('data-action'),
      testid: e.getAttribute('data-testid'), label: e.getAttribute('aria-label'), text: (e.textContent || '').trim().slice(0, 80),
    };
  });
}

/** Record every text the widget's live region takes (and that it is one stable node). */
export async function recordLiveRegion(page, { timeoutMs = 30_000 } = {}) {
  const frame = await widgetFrameHandle(page);
  await frame.waitForSelector('#cp-live', { state: 'attached', timeout: timeoutMs });
  await frame.evaluate(() => {
    const live = document.getElementById('cp-live');
    window.cardpayLive = { node: live, texts: [live.textContent].filter(Boolean) };
    new MutationObserver(() => window.cardpayLive.texts.push(live.textContent))
      .observe(live, { childList: true, characterData: true, subtree: true });
  });
}

/** The live region's texts so far; throws if the region was replaced (it must stay). */
export async function liveTexts(page) {
  const frame = await widgetFrameHandle(page);
  return frame.evaluate(() => {
    const live = document.getElementById('cp-live');
    if (!window.cardpayLive) throw new Error('no live region was recorded (is there a #cp-live?)');
    if (live !== window.cardpayLive.node) throw new Error('the live region was replaced');
    if (live.getAttribute('aria-live') !== 'polite' || live.getAttribute('role') !== 'status') throw new Error('not a polite status region');
    return window.cardpayLive.texts.map((t) => t.replace(/\u00a0$/, ''));
  });
}

/**
 * Layout facts axe cannot see: horizontal overflow inside the frame (px past the
 * frame's width, from the page and from any element), and whether the iframe's height
 * matches its content (clipped px).
 */
export async function layoutFacts(page) {
  const frame = await widgetFrameHandle(page);
  const inner = await frame.evaluate(() => {
    const de = document.documentElement;
    let widest = 0;
    let culprit = '';
    for (const el of document.querySelectorAll('#cardpay-root *')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || el.closest('.cp-sr')) continue;
      if (r.right > widest) { widest = r.right; culprit = el.tagName + '.' + el.className; }
    }
    const root = document.getElementById('cardpay-root').getBoundingClientRect();
    return {
      clientWidth: de.clientWidth, scrollWidth: de.scrollWidth, widest, culprit,
      contentHeight: Math.ceil(root.height), viewportHeight: window.innerHeight, scrollHeight: de.scrollHeight,
    };
  });
  const iframeHeight = await page.evaluate(() => document.querySelector('iframe[data-cardpay]').getBoundingClientRect().height);
  return {
    ...inner,
    overflowX: Math.max(0, inner.scrollWidth - inner.clientWidth, Math.ceil(inner.widest - inner.clientWidth)),
    clippedY: Math.max(0, inner.contentHeight - Math.floor(iframeHeight)),
    iframeHeight,
  };
}

/** WCAG contrast ratio of two CSS colours `rgb(r, g, b)` / `rgba(…)`. */
export function contrast(a, b) {
  const lum = (c) => {
    const [r, g, bl] = c.match(/[\d.]+/g).slice(0, 3).map((x) => Number(x) / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

/**
 * Enter `pin` on the scrambled keypad with the keyboard only: arrow keys move the
 * focus to each digit, Enter or Space presses it, then OK. Returns the keys pressed.
 */
export async function keyboardPin(page, pin, { ok = true } = {}) {
  const frame = await widgetFrameHandle(page);
  const pressed = [];
  const focusedKey = () => frame.evaluate(() => document.activeElement?.closest?.('[data-testid=keypad] .cp-key') ? (document.activeElement.getAttribute('aria-label') || document.activeElement.textContent) : null);
  const goTo = async (label) => {
    for (let i = 0; i < 13; i++) {
      if ((await focusedKey()) === label) return;
      await page.keyboard.press('ArrowRight');
      pressed.push('ArrowRight');
    }
    throw new Error(`could not reach key ${label} with the arrow keys`);
  };
  let n = 0;
  for (const d of pin) {
    await goTo(d);
    const key = n++ % 2 ? 'Space' : 'Enter';
    await page.keyboard.press(key);
    pressed.push(key);
    await frame.waitForFunction((c) => document.querySelector('[data-testid=pin-count]')?.getAttribute('data-count') === String(c), n);
  }
  if (ok) {
    await goTo('OK');
    await page.keyboard.press('Enter');
    pressed.push('Enter');
  }
  return pressed;
}

/**
 * The widget tests' whole stack: built binaries, the card stack (widget tests' card),
 * the payment server, the Node test shop and a browser with the extension and the
 * bridge (VERIFY rate relaxed: several PIN entries in a row). `stop()` ends it all.
 */
export async function startWidgetStack({ id, name }) {
  const bins = await buildAll();
  const started = [];
  const stop = async () => {
    for (const f of started.reverse()) await f().catch(() => {});
  };
  try {
    const stack = await startCardStack({ bins });
    started.push(() => stack.stop());
    const merchant = { id, name, key: randomBytes(32).toString('hex') };
    const shopPort = await freePort();
    const pay = await startPaymentServer({ bin: bins.paymentServer, merchants: [{ ...merchant, origins: [localOrigin(shopPort)] }], corsOrigins: [localOrigin(shopPort)] });
    started.push(() => pay.stop());
    const shop = await startTestMerchant({ pay, merchant, port: shopPort });
    started.push(() => shop.close());
    const br = await h.launchBrowser({ bins, origins: [pay.origin], install: true, installArgs: MANY_PINS });
    started.push(() => br.close());
    return { bins, stack, merchant, pay, shop, br, stop };
  } catch (e) {
    await stop(); // what did start must not outlive a failed start (pcscd is one per machine)
    throw e;
  }
}
