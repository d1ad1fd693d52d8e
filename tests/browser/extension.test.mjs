// Headless Chromium + the Cardpay extension as shipped (scripts/build-extension.sh
// for the test's payment origin) + the bridge (installed into a throw-away profile
// by `bridge install --profile`) + real pcscd/vpcd + the virtual card.
// Run: node --test tests/browser/extension.test.mjs
// (The shopper-facing tests that run in Chromium and Firefox alike are in
// browsers.test.mjs.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, rm } from 'node:fs/promises';
import path from 'node:path';
import * as h from './lib/index.mjs';

let bins, stack, site, other, browser;

const PAGE = '<!doctype html><title>pay</title><h1>Cardpay payment page</h1>';

before(async () => {
  bins = await h.buildRust();
  stack = await h.startStack({ bins });
  site = await h.serve({
    '/': PAGE,
    '/frame': PAGE,
  });
  other = await h.serve({ '/': PAGE }); // another 127.0.0.1 port: another origin
  browser = await h.launchBrowser({ bins, origins: [site.origin] });
});

after(async () => {
  if (browser) await browser.close();
  if (site) await site.close();
  if (other) await other.close();
  if (stack) await stack.stop();
});

async function openPage(url) {
  const page = await browser.context.newPage();
  await page.goto(url);
  return page;
}

async function readBalance(frame) {
  const readers = await h.cardpayRequest(frame, { type: 'readers' });
  assert.ok(readers.result, JSON.stringify(readers));
  const r = readers.result.readers.find((x) => x.name === stack.reader);
  assert.ok(r && r.card_present, JSON.stringify(readers));
  const c = await h.cardpayRequest(frame, { type: 'connect', reader: stack.reader });
  assert.ok(c.result, JSON.stringify(c));
  const handle = c.result.handle;
  const sel = await h.transmit(frame, handle, h.SELECT_CARDPAY);
  assert.match(sel, /9000$/);
  const bal = await h.transmit(frame, handle, h.GET_BALANCE_MONEY);
  assert.match(bal, /^[0-9A-F]{8}9000$/);
  const d = await h.cardpayRequest(frame, { type: 'disconnect', handle });
  assert.deepEqual(d.result, {});
  return parseInt(bal.slice(0, 8), 16);
}

test('the extension ID is fixed by the manifest key', async () => {
  assert.equal(await h.extensionIdOf(), h.EXTENSION_ID);
  assert.equal(await h.extensionIdOf(browser.extensionDir), h.EXTENSION_ID);
  const w = await browser.serviceWorker();
  assert.equal(new URL(w.url()).host, h.EXTENSION_ID);
  const manifest = JSON.parse(
    await readFile(path.join(browser.userDataDir, 'NativeMessagingHosts', `${h.HOST_NAME}.json`), 'utf8'),
  );
  assert.deepEqual(manifest.allowed_origins, [`chrome-extension://${h.EXTENSION_ID}/`]);
});

test('a page on an allowed origin reads the balance through extension + bridge', async () => {
  const page = await openPage(site.url('/'));
  const det = await h.detectExtension(page, { timeoutMs: 5000 });
  assert.equal(det.present, true);
  assert.equal(det.reply.result.version, 1, JSON.stringify(det.reply));
  const st = await h.cardpayRequest(page, { type: 'status' });
  assert.equal(st.result.state, 'ready', JSON.stringify(st));
  assert.equal(await readBalance(page), 10000);
  // the guard still applies: nothing before SELECT, no other application
  const c = await h.cardpayRequest(page, { type: 'connect', reader: stack.reader });
  const handle = c.result.handle;
  const early = await h.cardpayRequest(page, { type: 'transmit', handle, apdu: h.GET_BALANCE_MONEY });
  assert.equal(early.error.code, 'forbidden_apdu');
  const piv = await h.cardpayRequest(page, { type: 'transmit', handle, apdu: '00A4040009A00000030800001000' });
  assert.equal(piv.error.code, 'forbidden_apdu');
  // a page cannot claim another origin: the field is dropped, the browser's origin is used
  const spoof = await h.cardpayRequest(page, { type: 'readers', origin: 'https://evil.example' });
  assert.ok(spoof.result, JSON.stringify(spoof));
  await h.cardpayRequest(page, { type: 'disconnect', handle });
  await page.close();
});

test('the payment iframe in a merchant page gets the card, the merchant page does not', async () => {
  const merchant = await h.serve(
    { '/': `<!doctype html><h1>shop</h1><iframe id="pay" src="${site.url('/frame')}"></iframe>` },
    { host: 'localhost' },
  );
  try {
    const page = await openPage(merchant.url('/'));
    const frame = page.frames().find((f) => f.url() === site.url('/frame'))
      || (await (await page.waitForSelector('#pay')).contentFrame());
    await frame.waitForLoadState();
    assert.equal(await readBalance(frame), 10000);
    const top = await h.detectExtension(page.mainFrame(), { timeoutMs: 1500 });
    assert.equal(top.present, false);
    // the merchant page cannot drive the payment frame's channel by posting into it
    await frame.evaluate(() => {
      window.seen = [];
      window.addEventListener('message', (ev) => { if (ev.data && ev.data.dir === 'from-extension') window.seen.push(ev.data); });
    });
    await page.evaluate(() => {
      const w = document.getElementById('pay').contentWindow;
      w.postMessage({ channel: 'cardpay', dir: 'to-extension', id: 'evil1', type: 'readers' }, '*');
    });
    await new Promise((r) => setTimeout(r, 1000));
    const seen = await frame.evaluate(() => window.seen);
    assert.deepEqual(seen.filter((m) => m.id === 'evil1'), []);
    // (and the same request from the frame itself is answered)
    const own = await h.cardpayRequest(frame, { type: 'readers' });
    assert.ok(own.result, JSON.stringify(own));
    await page.close();
  } finally {
    await merchant.close();
  }
});

test('the built manifest injects into the payment origin only', async () => {
  const m = JSON.parse(await readFile(path.join(browser.extensionDir, 'manifest.json'), 'utf8'));
  assert.deepEqual(m.content_scripts.map((c) => c.matches), [[`${site.origin}/*`]]);
  assert.match(await readFile(path.join(browser.extensionDir, 'config.js'), 'utf8'),
    new RegExp(`"paymentOrigins":\\["${site.origin}"\\]`));
});

test('pages on other origins get nothing: no greeting, no reply', async () => {
  for (const url of [`https://localhost:${site.port}/`, other.url('/')]) {
    const p = await browser.context.newPage();
    await p.addInitScript(h.pageClientSource);
    await p.goto(url);
    const reqs = [{ type: 'hello' }, { type: 'readers' }, { type: 'status' }, { type: 'connect', reader: stack.reader }];
    const rs = await Promise.all(reqs.map((req) => h.cardpayRequest(p, req, { timeoutMs: 1000 })));
    for (const r of rs) assert.equal(r.timeout, true, `${url}: ${JSON.stringify(r)}`);
    assert.deepEqual(await h.cardpayEvents(p), [], url);
    await p.close();
  }
});

test('where a match pattern cannot pin the origin, the origin check does: other ports get nothing', async () => {
  // The build for `site`, its content script widened to every port of the host (as
  // Firefox's patterns are): the script runs in `other`, the background script hangs up.
  const wide = await h.buildExtension({ origins: [site.origin] });
  const m = JSON.parse(await readFile(path.join(wide, 'manifest.json'), 'utf8'));
  m.content_scripts[0].matches = ['https://127.0.0.1:*/*'];
  await writeFile(path.join(wide, 'manifest.json'), JSON.stringify(m));
  const b = await h.launchBrowser({ bins, origins: [site.origin, other.origin], extension: wide });
  try {
    const p = await b.context.newPage();
    await p.addInitScript(h.pageClientSource);
    // the content script does run in `other`: its isolated world appears there ...
    const cdp = await b.context.newCDPSession(p);
    const worlds = [];
    cdp.on('Runtime.executionContextCreated', (e) => worlds.push(e.context));
    await cdp.send('Runtime.enable');
    await p.goto(other.url('/'));
    await p.waitForFunction(() => true);
    assert.ok(worlds.some((c) => c.auxData?.type === 'isolated' && c.name === 'Cardpay' &&
      c.origin === `chrome-extension://${h.EXTENSION_ID}`), JSON.stringify(worlds));
    assert.ok(worlds.some((c) => c.auxData?.type === 'default' && c.origin === other.origin),
      JSON.stringify(worlds));
    // ... but `other` (allowed by the bridge, not by the extension) hears nothing
    const reqs = [{ type: 'hello' }, { type: 'readers' }, { type: 'status' }, { type: 'connect', reader: stack.reader }];
    const rs = await Promise.all(reqs.map((req) => h.cardpayRequest(p, req, { timeoutMs: 1000 })));
    for (const r of rs) assert.equal(r.timeout, true, JSON.stringify(r));
    assert.deepEqual(await h.cardpayEvents(p), []);
  } finally {
    await b.close();
    await rm(wide, { recursive: true, force: true });
  }
});

test('an origin the extension serves but the bridge does not: forbidden_origin, and no card events', async () => {
  // Extension built for both origins, bridge installed for `site` only: the bridge's
  // allowlist is the second gate, for events as for replies.
  const b = await h.launchBrowser({ bins, origins: [site.origin], extensionOrigins: [site.origin, other.origin] });
  try {
    const open = async (url) => {
      const p = await b.context.newPage();
      await p.addInitScript(h.pageClientSource);
      await p.goto(url);
      return p;
    };
    const ok = await open(site.url('/'));
    const refused = await open(other.url('/'));
    for (const req of [{ type: 'hello' }, { type: 'readers' }, { type: 'status' }, { type: 'connect', reader: stack.reader }]) {
      const r = await h.cardpayRequest(refused, req);
      assert.equal(r.error?.code, 'forbidden_origin', JSON.stringify(r));
      assert.equal(r.result, undefined);
    }
    assert.ok((await h.cardpayRequest(ok, { type: 'hello' })).result);
    await stack.removeCard();
    try {
      await ok.waitForFunction(() => window.cardpayTest.events.some((e) => e.event === 'card_removed'), null, { timeout: 5000 });
    } finally {
      await stack.insertCard();
    }
    await ok.waitForFunction(() => window.cardpayTest.events.some((e) => e.event === 'card_inserted'), null, { timeout: 5000 });
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual((await h.cardpayEvents(refused)).map((e) => e.event), ['extension_ready']);
  } finally {
    await b.close();
  }
});

test('card events reach the payment page', async () => {
  const page = await openPage(site.url('/'));
  assert.equal((await h.detectExtension(page, { timeoutMs: 5000 })).present, true); // hello opens the bridge
  await stack.removeCard();
  try {
    await page.waitForFunction(() => window.cardpayTest.events.some((e) => e.event === 'card_removed'), null, { timeout: 5000 });
    const st = await h.cardpayRequest(page, { type: 'status' });
    assert.equal(st.result.state, 'no_card');
  } finally {
    await stack.insertCard();
  }
  await page.waitForFunction(() => window.cardpayTest.events.some((e) => e.event === 'card_inserted'), null, { timeout: 5000 });
  const ev = (await h.cardpayEvents(page)).find((e) => e.event === 'card_inserted');
  assert.equal(ev.reader, stack.reader);
  assert.equal(await readBalance(page), 10000);
  await page.close();
});

test('pcscd restarted: the page recovers without restarting the browser', async () => {
  const page = await openPage(site.url('/'));
  assert.equal((await h.detectExtension(page, { timeoutMs: 5000 })).present, true);
  const c = await h.cardpayRequest(page, { type: 'connect', reader: stack.reader });
  const handle = c.result.handle;
  await h.transmit(page, handle, h.SELECT_CARDPAY);
  await stack.restartPcscd();
  await page.waitForFunction(() => window.cardpayTest.events.some((e) => e.event === 'service' && e.state === 'ok'), null, { timeout: 10000 });
  const old = await h.cardpayRequest(page, { type: 'transmit', handle, apdu: h.GET_BALANCE_MONEY });
  assert.equal(old.error && old.error.code, 'card_removed', JSON.stringify(old));
  assert.equal(await readBalance(page), 10000);
  await page.close();
});

test('the toolbar popup shows bridge, reader and card status', async () => {
  const page = await openPage(`chrome-extension://${browser.extensionId}/popup.html`);
  await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 10000 });
  assert.match(await page.textContent('#bridge'), /^v\d/);
  assert.equal(await page.textContent('#reader'), stack.reader);
  assert.equal(await page.textContent('#card'), 'ready');
  await page.close();
});

test('without the bridge installed a page learns it (no_bridge)', async () => {
  const b2 = await h.launchBrowser({ origins: [site.origin], install: false });
  try {
    const page = await b2.context.newPage();
    await page.goto(site.url('/'));
    const r = await h.cardpayRequest(page, { type: 'hello' }, { timeoutMs: 5000 });
    assert.equal(r.error && r.error.code, 'no_bridge', JSON.stringify(r));
  } finally {
    await b2.close();
  }
});

test('rate limits set by `bridge install` flags: rate_limited with a retry hint reaches the page', async () => {
  const b3 = await h.launchBrowser({
    bins, origins: [site.origin],
    installArgs: ['--apdu-burst', '5', '--apdu-per-sec', '1', '--verify-burst', '1', '--verify-refill-secs', '600'],
  });
  try {
    const cfg = JSON.parse(await readFile(path.join(b3.userDataDir, 'NativeMessagingHosts', 'cardpay-bridge.config.json'), 'utf8'));
    assert.deepEqual(
      [cfg.apdu_burst, cfg.apdu_per_sec, cfg.verify_burst, cfg.verify_refill_secs, cfg.origins],
      [5, 1, 1, 600, [site.origin]],
    );
    const page = await b3.context.newPage();
    await page.goto(site.url('/'));
    const c = await h.cardpayRequest(page, { type: 'connect', reader: stack.reader });
    assert.ok(c.result, JSON.stringify(c));
    const handle = c.result.handle;
    await h.transmit(page, handle, h.SELECT_CARDPAY); // APDU 1
    const VERIFY_1234 = '002000000431323334';
    assert.match(await h.transmit(page, handle, VERIFY_1234), /9000$/); // APDU 2, PIN attempt 1 of 1
    // the second PIN attempt within 600 s: refused before the card, not forbidden_apdu
    const pin = await h.cardpayRequest(page, { type: 'transmit', handle, apdu: VERIFY_1234 }); // APDU 3
    assert.equal(pin.error?.code, 'rate_limited', JSON.stringify(pin));
    assert.match(pin.error.message, /PIN attempts/);
    assert.ok(pin.error.retry_after_ms > 590_000 && pin.error.retry_after_ms <= 600_000, JSON.stringify(pin));
    // the general APDU limit (burst 5, 1/s): GET BALANCE until it applies
    let limited;
    for (let i = 0; i < 10 && !limited; i++) {
      const r = await h.cardpayRequest(page, { type: 'transmit', handle, apdu: h.GET_BALANCE_MONEY });
      if (r.error) limited = r;
      else assert.match(r.result.rapdu, /9000$/);
    }
    assert.equal(limited?.error.code, 'rate_limited', JSON.stringify(limited));
    assert.match(limited.error.message, /too many APDUs/);
    assert.ok(limited.error.retry_after_ms >= 1 && limited.error.retry_after_ms <= 1000, JSON.stringify(limited));
    // the card's PIN counter is untouched (the refused VERIFY never reached it)
    await new Promise((r) => setTimeout(r, 1100));
    assert.match(await h.transmit(page, handle, '00200000'), /9000$|63C3$/);
    await h.cardpayRequest(page, { type: 'disconnect', handle });
    await page.close();
  } finally {
    await b3.close();
  }
});

test('bridge doctor explains what is there and what is missing', async () => {
  const ok = await h.runBridge(bins.bridge, ['doctor', '--profile', browser.userDataDir]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /Everything is in place/);
  const missing = await h.runBridge(bins.bridge, ['doctor', '--profile', path.join(browser.userDataDir, 'nope')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stdout, /not registered with chromium/);
});

test('the bridge is stopped 30 s after the last payment frame is gone', async () => {
  for (const p of browser.context.pages()) if (!p.url().startsWith('about:')) await p.close();
  const before = (await browser.bridgeLog()).split('browser closed the port').length;
  const page = await openPage(site.url('/'));
  assert.equal((await h.detectExtension(page, { timeoutMs: 5000 })).present, true);
  await page.close();
  const deadline = Date.now() + 45_000;
  let after = before;
  while (Date.now() < deadline && after === before) {
    await new Promise((r) => setTimeout(r, 1000));
    after = (await browser.bridgeLog()).split('browser closed the port').length;
  }
  assert.ok(after > before, 'the bridge did not see EOF after the idle time');
  // and the next request starts it again
  const again = await openPage(site.url('/'));
  assert.equal((await h.detectExtension(again, { timeoutMs: 5000 })).present, true);
  await again.close();
});
