// One way to drive Chromium and Firefox with the Cardpay extension and the bridge,
// so that a test body runs unchanged in both: puppeteer-core over CDP (Debian's
// chromium) and over WebDriver BiDi (Debian's firefox-esr), no driver binary and no
// browser download (PUPPETEER_SKIP_DOWNLOAD=1).
//
//   const br = await openBrowser({ browser: 'firefox', bins, origins: [pay.origin] });
//   const page = await br.newPage(); await page.goto(pay.url('/install.html'));
//   await cardpayRequest(page, { type: 'hello' });           // from ./index.mjs: works on both
//   await clickByName(widget, 'Approve payment');            // real input events in both
//   await br.close();
//
// The extension is built for `extensionOrigins` (default: `origins`) by
// scripts/build-extension.sh. The bridge is registered for `origins` by
// `bridge install`: Chromium per profile (`--profile`), Firefox in
// `$HOME/.mozilla/native-messaging-hosts` of a throw-away HOME that the browser is
// started with (Firefox reads host manifests only there or system-wide).
// Both trust the test CA of ./tls.mjs for real: Chromium through the NSS database
// of its throw-away HOME, Firefox through cert9.db in its throw-away profile.

import { describe, before, after } from 'node:test';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { HOST_NAME, chromiumPath, buildExtension, installHost, extensionIdOf } from './index.mjs';
import { trustChromiumHome, trustFirefoxProfile } from './tls.mjs';

const execFileP = promisify(execFile);

export const BROWSERS = ['chromium', 'firefox'];
export const firefoxPath = process.env.FIREFOX || '/usr/bin/firefox-esr';
/** The add-on id of the Firefox build (`browser_specific_settings.gecko.id`). */
export const FIREFOX_ADDON_ID = 'cardpay@cardpay.example';


/** openBrowser options that send `shop.example` to 127.0.0.1 in either browser (a
 *  name that is not loopback: not a secure context over http, not covered by the
 *  test CA's name constraints): Chromium's resolver rules, Firefox's local domains. */
export const MAP_SHOP_EXAMPLE = {
  chromiumArgs: ['--host-resolver-rules=MAP shop.example 127.0.0.1'],
  firefoxPrefs: { 'network.dns.localDomains': 'shop.example' },
};

/** One `describe` per browser to run, named after it: a browser opened with `opts`
 *  (openBrowser's) before its tests and closed after them; `body(browser)` declares
 *  the tests, `browser()` giving that browser's handle. */
export function describeEachBrowser(opts, body) {
  for (const name of browsersToRun()) {
    describe(name, () => {
      let br;
      before(async () => { br = await openBrowser({ browser: name, ...opts }); }, { timeout: 120_000 });
      after(async () => { await br?.close(); });
      body(() => br);
    });
  }
}

/** Browsers to run (`CARDPAY_BROWSERS=chromium,firefox`, default both). */
export function browsersToRun() {
  const v = (process.env.CARDPAY_BROWSERS || BROWSERS.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  for (const b of v) if (!BROWSERS.includes(b)) throw new Error(`CARDPAY_BROWSERS: unknown browser ${b}`);
  return v;
}

/**
 * `bridge install --browser firefox` into `home` (HOME and XDG_CONFIG_HOME point there,
 * so nothing lands in the real user's folders). Returns the host manifest path.
 */
export async function installFirefoxHost({ bridgeBin, home, origins = [], extraArgs = [] }) {
  const args = ['install', '--browser', 'firefox'];
  for (const o of origins) args.push('--origin', o);
  args.push(...extraArgs);
  await execFileP(bridgeBin, args, {
    env: { ...process.env, HOME: home, XDG_CONFIG_HOME: path.join(home, '.config'), CARDPAY_BRIDGE_LOG: 'warn' },
  });
  const manifest = path.join(home, '.mozilla', 'native-messaging-hosts', `${HOST_NAME}.json`);
  const m = JSON.parse(await readFile(manifest, 'utf8'));
  if (JSON.stringify(m.allowed_extensions) !== JSON.stringify([FIREFOX_ADDON_ID])) {
    throw new Error(`bridge install --browser firefox allowed ${JSON.stringify(m.allowed_extensions)}, not the add-on ${FIREFOX_ADDON_ID}`);
  }
  return manifest;
}

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/**
 * Launch `browser` ('chromium' | 'firefox') headless through puppeteer-core, with the
 * bridge registered for `origins` (`install: false`: not registered; `installArgs` go
 * to `bridge install`, e.g. rate limits; `firefoxPrefs`: extra about:config prefs;
 * `chromiumArgs`: extra Chromium flags), and
 * the Cardpay extension built for `extensionOrigins` installed into the running browser
 * (`extension: false`: not yet — `installExtension()` later, as a shopper would;
 * a folder: that build as it is). Both browsers take the extension the same way:
 * puppeteer's `browser.installExtension` (Chromium: CDP Extensions.loadUnpacked over
 * the pipe; Firefox: BiDi webExtension.install, a temporary add-on).
 * Returns { name, browser, extensionDir, extensionId, installExtension(), newPage(),
 * bridgeLog(), close() }.
 */
export async function openBrowser({
  browser = 'chromium', bins, bridgeBin = bins && bins.bridge, origins = [], extensionOrigins = origins,
  extension = true, install = true, installArgs = [], env = {}, firefoxPrefs = {}, chromiumArgs = [],
} = {}) {
  const { default: puppeteer } = await import('puppeteer-core');
  const dir = await mkdtemp(path.join(tmpdir(), `cardpay-${browser}-`));
  const bridgeLogFile = path.join(dir, 'bridge.log');
  const cleanup = () => rm(dir, { recursive: true, force: true });
  let b;
  const handle = {
    name: browser,
    browser: null,
    extensionDir: null,
    extensionId: null,
    /** Build (unless `extension` is a folder) and install the extension; its id. */
    async installExtension() {
      const ext = typeof extension === 'string' ? extension
        : await buildExtension({ browser, origins: extensionOrigins, out: path.join(dir, 'extension') });
      const id = await b.installExtension(ext);
      const want = browser === 'chromium' ? await extensionIdOf(ext) : FIREFOX_ADDON_ID;
      if (id !== want) throw new Error(`${browser} installed the extension as ${id}, not ${want}`);
      handle.extensionDir = ext;
      handle.extensionId = id;
      return id;
    },
    newPage: () => b.newPage(),
    bridgeLog: () => readFile(bridgeLogFile, 'utf8').catch(() => ''),
    async close() {
      await b?.close().catch(() => {});
      await cleanup();
    },
  };
  try {
    if (install && !bridgeBin) throw new Error('openBrowser needs bins or bridgeBin to install the host');
    const childEnv = { ...process.env, CARDPAY_BRIDGE_LOG_FILE: bridgeLogFile, ...env };
    const home = path.join(dir, 'home');
    if (browser === 'chromium') {
      const userDataDir = path.join(dir, 'profile');
      await trustChromiumHome(home);
      if (install) await installHost({ bridgeBin, userDataDir, origins, extraArgs: installArgs });
      b = await puppeteer.launch({
        browser: 'chrome',
        executablePath: chromiumPath,
        headless: true, // the new headless mode: extensions and native messaging work there
        userDataDir,
        args: [...CHROMIUM_ARGS, ...chromiumArgs],
        enableExtensions: true, // --enable-unsafe-extension-debugging, over a pipe
        pipe: true,
        env: { ...childEnv, HOME: home },
      });
    } else if (browser === 'firefox') {
      const profile = path.join(dir, 'firefox-profile');
      await trustFirefoxProfile(profile);
      if (install) await installFirefoxHost({ bridgeBin, home, origins, extraArgs: installArgs });
      b = await puppeteer.launch({
        browser: 'firefox',
        executablePath: firefoxPath,
        headless: true,
        userDataDir: profile,
        extraPrefsFirefox: firefoxPrefs,
        env: { ...childEnv, HOME: home, XDG_CONFIG_HOME: path.join(home, '.config') },
      });
    } else {
      throw new Error(`unknown browser ${browser}`);
    }
    handle.browser = b;
    if (extension) await handle.installExtension();
  } catch (e) {
    await handle.close();
    throw e;
  }
  return handle;
}

// ---- page helpers that behave the same in both browsers ----

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Poll `fn(arg)` in `frame` (a page or frame) until it returns something truthy; return
 * that. (puppeteer's and Playwright's waitForFunction differ in signature; this works
 * on either.)
 */
export async function waitFor(frame, fn, arg, { timeoutMs = 15_000, intervalMs = 50, what } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await frame.evaluate(fn, arg);
      if (v) return v;
    } catch (e) {
      last = e; // a navigation in between: try again
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what || fn.toString().slice(0, 120)}${last ? ` (${last.message})` : ''}`);
    await sleep(intervalMs);
  }
}

/** The first frame of `page` whose URL satisfies `pred`, waiting for it to appear. */
export async function findFrame(page, pred, { timeoutMs = 15_000 } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const f = page.frames().find((x) => pred(x.url()));
    if (f) return f;
    if (Date.now() > end) throw new Error(`no frame matched in ${timeoutMs} ms: ${page.frames().map((x) => x.url()).join(', ')}`);
    await sleep(50);
  }
}

/** The widget iframe of a merchant page (served by the payment origin). */
export function widgetFrameOf(page, opts) {
  return findFrame(page, (u) => u.includes('/widget.html'), opts);
}

/**
 * Scroll the page to `frame`'s iframe so that all of it is in view (the widget's
 * Approve counts only then, docs/widget.md); nothing for a page.
 */
export async function showFrame(frame) {
  const el = typeof frame.frameElement === 'function' ? await frame.frameElement() : null;
  if (!el) return;
  try {
    await el.evaluate((e) => e.scrollIntoView({ block: 'nearest' }));
  } finally {
    await el.dispose();
  }
}

/**
 * Click the visible, enabled element whose accessible name (aria-label, else its
 * text) is `name`, among `selector` (default: buttons and links), with real input
 * events. Waits for it to appear.
 */
export async function clickByName(frame, name, { selector = 'button, a, [role=button]', timeoutMs = 15_000 } = {}) {
  await showFrame(frame);
  await waitFor(frame, ([sel, n]) => [...document.querySelectorAll(sel)].some((e) =>
    ((e.getAttribute('aria-label') || e.textContent || '').trim() === n) && !e.disabled && e.getAttribute('aria-disabled') !== 'true' && e.getClientRects().length > 0),
  [selector, name], { timeoutMs, what: `"${name}"` });
  const handle = await frame.evaluateHandle(([sel, n]) => [...document.querySelectorAll(sel)].find((e) =>
    ((e.getAttribute('aria-label') || e.textContent || '').trim() === n) && !e.disabled && e.getAttribute('aria-disabled') !== 'true' && e.getClientRects().length > 0),
  [selector, name]);
  try {
    await handle.asElement().click();
  } finally {
    await handle.dispose();
  }
}

/** The text of the first element matching `selector`, waiting for it. */
export function textOf(frame, selector, opts) {
  return waitFor(frame, (sel) => {
    const e = document.querySelector(sel);
    return e ? e.textContent : null;
  }, selector, { what: selector, ...opts });
}

/** Wait for the widget event `event` in `window.cardpayLog` (see recordEventsScript); its record. */
export async function waitWidgetEvent(page, event, { count = 1, timeoutMs = 30_000 } = {}) {
  return waitFor(page, ([e, n]) => {
    const xs = (window.cardpayLog || []).filter((x) => x.event === e);
    return xs.length >= n ? xs[xs.length - 1] : null;
  }, [event, count], { timeoutMs, what: `widget event ${event}` });
}

/** Type a PIN on the widget's scrambled keypad (keys found by their labels), then OK. */
export async function typePin(widget, pin) {
  for (const d of pin) await clickByName(widget, d, { selector: '[data-testid=keypad] button' });
  await clickByName(widget, 'OK', { selector: '[data-testid=keypad] button' });
}
