// Reusable browser harness for Cardpay tests: headless Chromium through
// playwright-core (launchBrowser), and Chromium or Firefox through puppeteer-core
// (openBrowser, ./browsers.mjs: the same test body for both browsers).
//
//   import * as h from './lib/index.mjs';
//   const bins  = await h.buildRust();                       // bridge + teststack
//   const stack = await h.startStack({ bins });              // pcscd + vpcd + virtual card (flock held)
//   const site  = await h.serve({ '/': '<h1>pay</h1>' });    // https://127.0.0.1:PORT (test CA, ./tls.mjs)
//   const br    = await h.launchBrowser({ bins, origins: [site.origin] });
//   const page  = await br.context.newPage(); await page.goto(site.url('/'));
//   const hello = await h.cardpayRequest(page, { type: 'hello' });
//   ... await br.close(); await site.close(); await stack.stop();
//
// Everything is torn down by the returned close()/stop() functions; the
// browser profile is a throw-away temp dir with the native host manifest
// installed by `bridge install --profile`. Everything runs over https with this
// process's test CA, which the browsers and Node's fetch trust (./tls.mjs). The extension is built for the
// payment origins by scripts/build-extension.sh (as shipped: its content script
// matches only those origins and it admits only frames of those origins).

import { spawn, execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, rm, readFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { testCa, trustChromiumHome } from './tls.mjs';

const execFileP = promisify(execFile);

export const HOST_NAME = 'com.cardpay.bridge';
/** The extension's fixed ID (from the `key` in extension/manifest.json). */
export const EXTENSION_ID = 'balkbpnchocdfjmodhmppaobcgfpdlih';
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
/** The extension's sources (a development build; tests and the demo build theirs with build-extension.sh). */
export const extensionDir = path.join(repoRoot, 'extension');
export const buildExtensionScript = path.join(repoRoot, 'scripts', 'build-extension.sh');
export const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

/** Extension ID from a base64 DER public key (Chrome's rule: sha256, first 32 hex, 0-f → a-p). */
export function extensionIdFromKey(b64) {
  const hex = createHash('sha256').update(Buffer.from(b64, 'base64')).digest('hex').slice(0, 32);
  return [...hex].map((c) => String.fromCharCode(97 + parseInt(c, 16))).join('');
}

/** The ID the manifest in `dir` yields. */
export async function extensionIdOf(dir = extensionDir) {
  const m = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
  return extensionIdFromKey(m.key);
}

/**
 * `scripts/build-extension.sh --browser B --origin O… --out DIR`: the extension as
 * shipped, for `origins` only. `out` defaults to a new temp dir. Returns the folder.
 */
export async function buildExtension({ browser = 'chromium', origins, out } = {}) {
  if (!origins || origins.length === 0) throw new Error('buildExtension needs the payment origins');
  out ||= await mkdtemp(path.join(tmpdir(), `cardpay-ext-${browser}-`));
  const args = ['--browser', browser, ...origins.flatMap((o) => ['--origin', o]), '--out', out];
  await execFileP(buildExtensionScript, args);
  return out;
}

export function targetDir() {
  return process.env.CARGO_TARGET_DIR || path.join(repoRoot, 'target');
}

/**
 * Build the bridge binary and the `teststack` example and return their paths:
 * debug by default (the tests), `release: true` for benchmarks (what a shopper
 * installs is a release build; a debug bridge or card measures the debug build's
 * unoptimised DES and JSON, not the product).
 * `CARDPAY_BRIDGE_BIN` overrides the bridge path (then nothing is built for it).
 */
export async function buildRust({ target = targetDir(), log = false, release = false } = {}) {
  const args = ['build', ...(release ? ['--release'] : []), '-p', 'bridge', '--bin', 'bridge', '--example', 'teststack'];
  const r = await execFileP('cargo', args, {
    cwd: repoRoot,
    env: { ...process.env, CARGO_TARGET_DIR: target },
    maxBuffer: 64 << 20,
  });
  if (log) process.stderr.write(r.stderr);
  const profile = release ? 'release' : 'debug';
  return {
    bridge: process.env.CARDPAY_BRIDGE_BIN || path.join(target, profile, 'bridge'),
    teststack: path.join(target, profile, 'examples', 'teststack'),
    target,
    profile,
  };
}

/**
 * Start pcscd + vpcd + the virtual card (testbed, holding /tmp/cardpay-pcscd.lock).
 * `balance` / `noPinLimit` (minor units) personalise the card (defaults: 10000 = 100.00
 * and 2000 = 20.00). Returns { reader, dir, balance, noPinLimit, removeCard(),
 * insertCard(), restartPcscd(), inspect(), stop() }.
 */
export async function startStack({ bins, timeoutMs = 300_000, balance, noPinLimit } = {}) {
  const b = bins || (await buildRust());
  const args = [];
  if (balance !== undefined) args.push('--balance', String(balance));
  if (noPinLimit !== undefined) args.push('--no-pin-limit', String(noPinLimit));
  const child = spawn(b.teststack, args, {
    cwd: repoRoot,
    env: { ...process.env, CARGO_TARGET_DIR: b.target },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = readline.createInterface({ input: child.stdout });
  const queue = [];
  const waiters = [];
  lines.on('line', (l) => {
    let v;
    try { v = JSON.parse(l); } catch { return; }
    const w = waiters.shift();
    if (w) w(v); else queue.push(v);
  });
  const next = (ms) => new Promise((resolve, reject) => {
    if (queue.length) return resolve(queue.shift());
    const t = setTimeout(() => reject(new Error('teststack did not answer')), ms);
    waiters.push((v) => { clearTimeout(t); resolve(v); });
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const ready = await Promise.race([next(timeoutMs), exited.then((c) => ({ ready: false, error: `exited ${c}` }))]);
  if (!ready.ready) {
    child.kill('SIGKILL');
    throw new Error(`test stack did not start: ${ready.error}`);
  }
  const command = async (cmd) => {
    child.stdin.write(cmd + '\n');
    const r = await next(60_000);
    if (!r.ok) throw new Error(`teststack ${cmd}: ${r.error}`);
    return r.output;
  };
  return {
    reader: ready.reader,
    dir: ready.dir,
    balance: ready.balance,
    noPinLimit: ready.no_pin_limit,
    command,
    removeCard: () => command('remove'),
    /** The card applies the next DEBIT ('debit') or CREDIT ('credit'), then is pulled before it answers. */
    tearNext: (what) => command('tear ' + what),
    insertCard: () => command('insert'),
    restartPcscd: () => command('restart_pcscd'),
    inspect: () => command('inspect'),
    async stop() {
      child.stdin.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * A tiny web server, https with the test CA's certificate (`tls: false`: plain
 * http). `routes` maps a path to an HTML string or to `(req, res) => void`.
 * Returns { origin, port, url(path), close() }.
 */
export async function serve(routes, { host = '127.0.0.1', port = 0, tls = true } = {}) {
  const handler = (req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    const r = routes[p];
    if (typeof r === 'function') return r(req, res);
    if (typeof r === 'string') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      return res.end(r);
    }
    res.writeHead(404).end('not found');
  };
  const server = tls
    ? createHttpsServer({ cert: testCa.cert, key: testCa.key }, handler)
    : createHttpServer(handler);
  await new Promise((resolve) => server.listen(port, host, resolve));
  const actual = server.address().port;
  const origin = `${tls ? 'https' : 'http'}://${host}:${actual}`;
  return {
    origin,
    port: actual,
    url: (p = '/') => origin + p,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}

/** `bridge install --browser chromium --profile DIR --origin …` (host manifest into the profile). */
export async function installHost({ bridgeBin, userDataDir, origins = [], extraArgs = [] }) {
  const args = ['install', '--browser', 'chromium', '--profile', userDataDir];
  for (const o of origins) args.push('--origin', o);
  args.push(...extraArgs);
  const r = await execFileP(bridgeBin, args, { env: { ...process.env, CARDPAY_BRIDGE_LOG: 'warn' } });
  return r.stdout;
}

/** Run `bridge <args>` and return { code, stdout, stderr } (never throws on exit code). */
export async function runBridge(bridgeBin, args) {
  try {
    const r = await execFileP(bridgeBin, args);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    return { code: e.code, stdout: e.stdout || '', stderr: e.stderr || '' };
  }
}

/**
 * Launch Debian's chromium headless with the extension built for
 * `extensionOrigins` (default `origins`; or the folder `extension`) and a fresh
 * profile where the bridge is installed for `origins` (`installArgs` go to
 * `bridge install`, e.g. ['--apdu-burst', '100000'] for benchmarks or
 * ['--verify-burst', '100', '--verify-refill-secs', '1'] for many PIN entries).
 * Returns { context, userDataDir, extensionId, serviceWorker(), close() }.
 */
export async function launchBrowser({
  bins, bridgeBin = bins && bins.bridge, origins = [], extensionOrigins = origins, extension,
  headless = true, env = {}, install = true, installArgs = [],
} = {}) {
  const { chromium } = await import('playwright-core');
  const userDataDir = await mkdtemp(path.join(tmpdir(), 'cardpay-chromium-'));
  // A HOME of its own whose NSS database trusts the test CA (the profile stays in userDataDir).
  const home = await mkdtemp(path.join(tmpdir(), 'cardpay-chromium-home-'));
  await trustChromiumHome(home);
  let builtExtension = null;
  if (!extension) extension = builtExtension = await buildExtension({ browser: 'chromium', origins: extensionOrigins });
  if (install) {
    if (!bridgeBin) throw new Error('launchBrowser needs bins or bridgeBin to install the host');
    await installHost({ bridgeBin, userDataDir, origins, extraArgs: installArgs });
  }
  const args = [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--load-extension=${extension}`, `--disable-extensions-except=${extension}`,
  ];
  if (headless) args.unshift('--headless=new');
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath,
    headless: false, // we pass --headless=new ourselves (extensions need the new headless)
    args,
    ignoreDefaultArgs: ['--disable-extensions'],
    env: { ...process.env, HOME: home, CARDPAY_BRIDGE_LOG_FILE: path.join(userDataDir, 'bridge.log'), ...env },
  });
  const extensionId = await extensionIdOf(extension);
  const serviceWorker = async (ms = 10_000) => {
    const found = context.serviceWorkers().find((w) => w.url().startsWith(`chrome-extension://${extensionId}/`));
    return found || context.waitForEvent('serviceworker', { timeout: ms });
  };
  return {
    context,
    userDataDir,
    extensionId,
    serviceWorker,
    bridgeLog: () => readFile(path.join(userDataDir, 'bridge.log'), 'utf8').catch(() => ''),
    extensionDir: extension,
    async close() {
      await context.close().catch(() => {});
      // CARDPAY_KEEP_BRIDGE_LOG=FILE: the bridge's log outlives the profile (benches)
      const keep = process.env.CARDPAY_KEEP_BRIDGE_LOG;
      if (keep) await copyFile(path.join(userDataDir, 'bridge.log'), keep).catch(() => {});
      await rm(userDataDir, { recursive: true, force: true });
      await rm(home, { recursive: true, force: true });
      if (builtExtension) await rm(builtExtension, { recursive: true, force: true });
    },
  };
}

// ---- page side: the page ↔ extension postMessage protocol (docs/bridge.md) ----

/** Source of the page-side client, usable in any frame (`page.addInitScript` or a <script>). */
export const pageClientSource = `
(() => {
  if (window.cardpayTest) return;
  let n = 0;
  const events = [];
  window.addEventListener('message', (ev) => {
    const m = ev.data;
    if (ev.source === window && m && m.channel === 'cardpay' && m.dir === 'from-extension' && m.event) events.push(m);
  });
  function request(req, timeoutMs = 15000) {
    const id = 'p' + (++n);
    return new Promise((resolve) => {
      const t = setTimeout(() => { window.removeEventListener('message', on); resolve({ id, timeout: true }); }, timeoutMs);
      function on(ev) {
        const m = ev.data;
        if (ev.source !== window || !m || m.channel !== 'cardpay' || m.dir !== 'from-extension' || m.id !== id) return;
        clearTimeout(t); window.removeEventListener('message', on); resolve(m);
      }
      window.addEventListener('message', on);
      window.postMessage(Object.assign({}, req, { channel: 'cardpay', dir: 'to-extension', id }), window.location.origin);
    });
  }
  window.cardpayTest = { request, events };
})();`;

async function ensureClient(frame) {
  await frame.evaluate(pageClientSource);
}

/** Send one request from the page (or frame) and return the extension's reply
 *  (`{id, result}` / `{id, error}`), or `{timeout: true}` if nothing answered. */
export async function cardpayRequest(frame, req, { timeoutMs = 15000 } = {}) {
  await ensureClient(frame);
  return frame.evaluate(([r, ms]) => window.cardpayTest.request(r, ms), [req, timeoutMs]);
}

/** Is the extension present in this frame? `cardpay:hello` ping with a timeout. */
export async function detectExtension(frame, { timeoutMs = 1000 } = {}) {
  const r = await cardpayRequest(frame, { type: 'hello' }, { timeoutMs });
  return r.timeout ? { present: false } : { present: true, reply: r };
}

/** Card events (`{event, reader}`) the frame has seen since the client was installed. */
export async function cardpayEvents(frame) {
  await ensureClient(frame);
  return frame.evaluate(() => window.cardpayTest.events.slice());
}

/** Transmit a hex APDU on `handle`; returns the hex response or throws with the error code. */
export async function transmit(frame, handle, apdu) {
  const r = await cardpayRequest(frame, { type: 'transmit', handle, apdu });
  if (r.error || r.timeout) throw Object.assign(new Error(`transmit ${apdu}: ${JSON.stringify(r.error || r)}`), { reply: r });
  return r.result.rapdu;
}

/**
 * The card's money balance over PC/SC through the extension and the bridge, read
 * from a new page at `url` (a payment-origin page) made by `newPage()` (Playwright's
 * `context.newPage` or puppeteer's `browser.newPage`: both work).
 */
export async function readCardBalance(newPage, url, reader) {
  const page = await newPage();
  try {
    await page.goto(url);
    const c = await cardpayRequest(page, { type: 'connect', reader });
    if (!c.result) throw new Error(`connect: ${JSON.stringify(c)}`);
    const sel = await transmit(page, c.result.handle, SELECT_CARDPAY);
    if (!sel.endsWith('9000')) throw new Error(`SELECT ${sel}`);
    const bal = await transmit(page, c.result.handle, GET_BALANCE_MONEY);
    await cardpayRequest(page, { type: 'disconnect', handle: c.result.handle });
    if (!/^[0-9A-F]{8}9000$/.test(bal)) throw new Error(`GET BALANCE ${bal}`);
    return parseInt(bal.slice(0, 8), 16);
  } finally {
    await page.close();
  }
}

/** SELECT of the Cardpay AID, as hex. */
export const SELECT_CARDPAY = '00A4040008F04341524450415900';
export const GET_BALANCE_MONEY = '805C000004';

export function percentile(values, q) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.round((s.length - 1) * q)];
}

export * from './browsers.mjs';
export * from './tls.mjs';
