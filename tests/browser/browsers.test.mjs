// The same shopper tests in Chromium and in Firefox, one test body for both
// (puppeteer-core: CDP for Debian's chromium, WebDriver BiDi for Debian's
// firefox-esr), on the real stack: the extension as shipped
// (scripts/build-extension.sh, for the payment origins only), the bridge as native
// host (`bridge install`; for Firefox in $HOME/.mozilla/native-messaging-hosts of a
// throw-away HOME), pcscd + vpcd + the virtual card, the payment server (SQLite),
// the demo store and a test merchant (checkout-support.mjs).
//
//   cd tests/browser && node --test browsers.test.mjs
//   CARDPAY_BROWSERS=firefox node --test browsers.test.mjs     (one browser)
//
// - readiness: ready (payee, amount, balance), no card then inserted, no extension
//   then (extension installed) no bridge;
// - a German shopper: the German build's words, and only its glue and wasm fetched;
// - purchases through the demo store, without PIN (1.99) and with the PIN on the
//   scrambled keypad (24.95): receipt, order paid, the card's balance over PC/SC;
// - the card pulled and re-inserted: the payment frame hears it, while the merchant
//   page, a page of another origin (another port, another host) and a frame of
//   another origin inside the payment page hear nothing at all — no greeting, no
//   reply, no event — although they ask.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as s from './checkout-support.mjs';

const { h } = s;
let bins, stack, pay, demo, shop, site, foreign;
const demoM = { id: 'demo-store', name: 'Cardpay Demo Store', key: randomBytes(32).toString('hex') };
const shopM = { id: 'e2e-shop', name: 'E2E Shop', key: randomBytes(32).toString('hex') };

// Every page of another origin records whatever the extension might post to it.
const RECORDER = `window.seen = [];
  window.addEventListener('message', (e) => {
    const m = e.data;
    if (m && typeof m === 'object' && m.channel === 'cardpay' && m.dir === 'from-extension') window.seen.push(m);
  });`;
const recorderPage = (title, body = '') =>
  `<!doctype html><html><head><title>${title}</title><script>${RECORDER}</script></head><body><h1>${title}</h1>${body}</body></html>`;

before(async () => {
  bins = await s.buildAll();
  stack = await s.startCardStack({ bins });
  const demoPort = await s.freePort();
  const shopPort = await s.freePort();
  const demoOrigin = s.localOrigin(demoPort);
  const shopOrigin = s.localOrigin(shopPort);
  pay = await s.startPaymentServer({
    bin: bins.paymentServer,
    merchants: [{ ...demoM, origins: [demoOrigin] }, { ...shopM, origins: [shopOrigin] }],
    corsOrigins: [demoOrigin, shopOrigin],
  });
  demo = await s.startDemoMerchant({ bin: bins.demoMerchant, pay, m: demoM, port: demoPort });
  shop = await s.startTestMerchant({ pay, merchant: shopM, port: shopPort });
  // Pages of another origin (another port on the same host), and a second payment
  // origin whose page frames one of them.
  foreign = await h.serve({ '/': recorderPage('another origin') });
  site = await h.serve({
    '/pay': (req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(recorderPage('payment page', `<iframe id="foreign" src="${foreign.url('/')}"></iframe>` +
        '<iframe id="sandboxed" sandbox="allow-scripts" src="/sandboxed"></iframe>'));
    },
    // the payment origin's URL, but an opaque origin (sandboxed frame)
    '/sandboxed': recorderPage('sandboxed'),
  });
}, { timeout: 900_000 });

after(async () => {
  await site?.close();
  await foreign?.close();
  await shop?.close();
  await demo?.stop();
  await pay?.stop();
  await stack?.stop();
});

async function newPage(br, { record = false } = {}) {
  const page = await br.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.evaluateOnNewDocument(s.recordEventsScript);
  if (record) await page.evaluateOnNewDocument(RECORDER);
  return { page, errors };
}

/** A new page at `url` (a checkout) whose widget told `ready`; the widget's frame. */
async function openReady(br, url) {
  const { page, errors } = await newPage(br);
  await page.goto(url);
  const widget = await h.widgetFrameOf(page);
  const ready = await h.waitWidgetEvent(page, 'ready');
  assert.equal(ready.detail.capability, 'ready');
  return { page, errors, widget };
}

/** The card's money balance over PC/SC, asked from a payment-origin page. */
function balance(br) {
  return h.readCardBalance(br.newPage, pay.url('/install.html'), stack.reader);
}

/** Demo store: put `n` × the product named `name` in the cart, then "Pay with Cardpay". */
async function buyAtDemoStore(page, name, n) {
  for (let i = 0; i < n; i++) {
    await page.goto(demo.url('/'));
    const button = await page.evaluateHandle((title) => {
      const p = [...document.querySelectorAll('.p')].find((x) => x.querySelector('h3')?.textContent === title);
      return p && p.querySelector('form[action="/cart/add"] button');
    }, name);
    assert.ok(button.asElement(), `no "Add to cart" for ${name}`);
    await Promise.all([page.waitForNavigation(), button.asElement().click()]);
    await button.dispose();
  }
  await Promise.all([page.waitForNavigation(), h.clickByName(page, 'Pay with Cardpay')]);
  const m = new URL(page.url()).pathname.match(/^\/orders\/([^/]+)\/pay$/);
  assert.ok(m, page.url());
  return m[1];
}

/** The rest of a demo-store purchase: widget ready, approve, (PIN), receipt, paid. */
async function payAtDemoStore(br, { name, n, price, pin }) {
  const before = await balance(br);
  const { page, errors } = await newPage(br);
  const orderId = await buyAtDemoStore(page, name, n);
  const widget = await h.widgetFrameOf(page);
  const ready = await h.waitWidgetEvent(page, 'ready');
  assert.equal(ready.detail.capability, 'ready');
  assert.equal(await h.textOf(widget, '[data-testid=payee]'), 'Cardpay Demo Store');
  assert.equal(await h.textOf(widget, '[data-testid=amount]'), `€${(price / 100).toFixed(2)}`);
  await h.clickByName(widget, 'Approve payment');
  if (pin) {
    await h.waitFor(widget, () => !!document.querySelector('[data-testid=keypad]'), null, { what: 'the PIN keypad' });
    await h.typePin(widget, s.PIN);
  }
  assert.equal(await h.textOf(widget, '[data-testid=receipt-amount]', { timeoutMs: 30_000 }), `€${(price / 100).toFixed(2)}`);
  const result = await h.waitWidgetEvent(page, 'result');
  assert.equal(result.detail.result.kind, 'result_m');
  // The store keeps the receipt in view, then opens the order page: paid.
  await h.waitFor(page, (id) => location.pathname === `/orders/${id}` && document.querySelector('#status')?.textContent === 'paid',
    orderId, { timeoutMs: 30_000, what: 'the order page saying paid' });
  assert.equal(await balance(br), before - price, 'the card balance read over PC/SC dropped by exactly the price');
  const order = await (await fetch(demo.url(`/orders/${orderId}/json`))).json();
  assert.equal(order.status, 'paid');
  const v = await s.merchantGet(pay, demoM, `/v1/transactions/${encodeURIComponent(order.paid_txn)}`);
  assert.equal(v.status, 200, JSON.stringify(v.body));
  assert.ok(['debited', 'confirmed', 'settled'].includes(v.body.state), v.body.state);
  assert.equal(v.body.amount, price);
  assert.deepEqual(errors, []);
  await page.close();
}

/** Wait until the widget's latest `capability` event says `cap`. */
function capabilityBecomes(page, cap) {
  return h.waitFor(page, (c) => (window.cardpayLog || []).filter((x) => x.event === 'capability').at(-1)?.detail.capability === c,
    cap, { timeoutMs: 15_000, what: `capability ${cap}` });
}

/** Fire every request a page could make, without waiting: nothing may answer. */
function probe(frame, tag) {
  return frame.evaluate(([t, reader]) => {
    for (const [i, req] of [{ type: 'hello' }, { type: 'status' }, { type: 'readers' }, { type: 'connect', reader }].entries()) {
      window.postMessage({ ...req, channel: 'cardpay', dir: 'to-extension', id: `${t}-${i}` }, window.location.origin);
    }
  }, [tag, stack.reader]);
}

for (const name of h.browsersToRun()) {
  describe(name, () => {
    let br;
    before(async () => {
      br = await h.openBrowser({
        browser: name, bins, origins: [pay.origin, site.origin], installArgs: s.MANY_PINS,
      });
    }, { timeout: 120_000 });
    after(async () => { await br?.close(); });

    test('readiness: ready, with payee, amount and the card balance', async () => {
      const before = await balance(br);
      const { page, errors, widget } = await openReady(br, shop.url('/checkout?amount=300'));
      assert.equal(await h.textOf(widget, '[data-testid=payee]'), 'E2E Shop');
      assert.equal(await h.textOf(widget, '[data-testid=amount]'), '€3.00');
      assert.equal(await h.textOf(widget, '[data-testid=balance]'), `€${(before / 100).toFixed(2)}`);
      // the extension's readiness answer, from a payment-origin page
      const st = await h.cardpayRequest(await h.widgetFrameOf(page), { type: 'status' });
      assert.equal(st.result?.state, 'ready', JSON.stringify(st));
      assert.equal(st.result.reader, stack.reader);
      // Approve counts (and Chromium takes clicks on the confirm screen again): docs/widget.md.
      await h.showFrame(widget);
      await h.waitFor(widget, () => !!document.querySelector('[data-action=approve]:not([aria-disabled=true])'), undefined, { what: 'Approve to count' });
      await h.clickByName(widget, 'Cancel');
      assert.equal((await h.waitWidgetEvent(page, 'cancel')).detail.reason, 'user');
      assert.deepEqual(errors, []);
      await page.close();
    });

    test('a German shopper gets the German build: its words, and no other build\'s files', async () => {
      const { page, errors, widget } = await openReady(br, shop.url('/checkout?amount=2010&lang=de'));
      assert.equal(await h.textOf(widget, '[data-testid=amount]'), '20,10 €');
      await h.waitFor(widget, () => [...document.querySelectorAll('[data-action=approve]')]
        .some((b) => b.textContent.trim() === 'Zahlung freigeben'), null, { what: 'Approve, in German' });
      // The frame fetched one build's glue and wasm: the German checkout's.
      const fetched = await widget.evaluate(() => performance.getEntriesByType('resource')
        .map((e) => new URL(e.name).pathname.split('/').pop()));
      const builds = fetched.filter((f) => s.buildNames().some((n) => f === `${n}.js` || f === `${n}_bg.wasm`));
      const mine = s.buildName('purchase', 'de');
      assert.deepEqual(builds.sort(), [`${mine}.js`, `${mine}_bg.wasm`], fetched.join(', '));
      assert.deepEqual(errors, []);
      await page.close();
    });

    test('purchase without PIN through the demo store', async () => {
      await payAtDemoStore(br, { name: 'Smart-card wallpaper pack', n: 1, price: 199, pin: false });
    });

    test('purchase with the PIN on the scrambled keypad through the demo store', async () => {
      await payAtDemoStore(br, { name: 'E-book: Stored value, explained', n: 5, price: 2495, pin: true });
    });

    test('card pulled and re-inserted: the payment frame hears it, other origins hear nothing', async () => {
      // The payment page (a payment origin) with a frame of another origin inside.
      const payPage = (await newPage(br)).page;
      await payPage.goto(site.url('/pay'));
      const inner = await h.findFrame(payPage, (u) => u.startsWith(foreign.origin));
      await h.waitFor(inner, () => Array.isArray(window.seen), null);
      // The merchant's checkout page (the widget's parent), a page on another port of
      // the same host (Firefox injects the content script there: match patterns
      // cannot pin a port), and a page on another host name.
      const merchant = (await newPage(br, { record: true })).page;
      await merchant.goto(shop.url('/checkout?amount=400'));
      const otherPort = (await newPage(br)).page;
      await otherPort.goto(foreign.url('/'));
      const otherHost = (await newPage(br)).page;
      await otherHost.goto(`https://localhost:${site.port}/pay`);
      const silent = [
        ['the merchant page', merchant.mainFrame()],
        ['a page of another port', otherPort.mainFrame()],
        ['a page of another host', otherHost.mainFrame()],
        ['a frame of another origin in the payment page', inner],
        ['a sandboxed frame (opaque origin) at a payment-origin URL', await h.findFrame(payPage, (u) => u.endsWith('/sandboxed'))],
        ['a frame of another origin in the other-host page', await h.findFrame(otherHost, (u) => u.startsWith(foreign.origin))],
      ];
      for (const [what, f] of silent) await probe(f, 'before').catch((e) => assert.fail(`${what}: ${e.message}`));

      // The payment page asks (so the bridge runs and accepts its origin).
      const hello = await h.cardpayRequest(payPage, { type: 'hello' });
      assert.equal(hello.result?.version, 1, JSON.stringify(hello));
      const widget = await h.widgetFrameOf(merchant);
      assert.equal((await h.waitWidgetEvent(merchant, 'ready')).detail.capability, 'ready');

      await stack.removeCard();
      try {
        await h.waitFor(payPage, () => window.seen.some((m) => m.event === 'card_removed'), null, { what: 'card_removed' });
        await capabilityBecomes(merchant, 'no_card');
        await h.waitFor(widget, () => /Insert your Cardpay card/.test(document.body.textContent), null, { what: 'insert your card' });
        for (const [, f] of silent) await probe(f, 'removed');
      } finally {
        await stack.insertCard();
      }
      await h.waitFor(payPage, () => window.seen.some((m) => m.event === 'card_inserted'), null, { what: 'card_inserted' });
      await capabilityBecomes(merchant, 'ready');
      for (const [, f] of silent) await probe(f, 'inserted');
      await new Promise((r) => setTimeout(r, 1500)); // time for any (wrong) answer to arrive

      // The payment frame heard the greeting, its reply and both card events ...
      const heard = await payPage.evaluate(() => window.seen);
      assert.equal(heard.filter((m) => m.event === 'extension_ready').length, 1, JSON.stringify(heard));
      const removed = heard.find((m) => m.event === 'card_removed');
      const inserted = heard.find((m) => m.event === 'card_inserted');
      assert.equal(removed.reader, stack.reader);
      assert.equal(inserted.reader, stack.reader);
      // ... and nobody else heard anything at all.
      for (const [what, f] of silent) {
        assert.deepEqual(await f.evaluate(() => window.seen), [], `${what} heard the extension`);
      }
      for (const p of [payPage, merchant, otherPort, otherHost]) await p.close();
    });

    test('readiness: no extension, then no bridge (a shopper who installs only the extension)', async () => {
      const fresh = await h.openBrowser({ browser: name, bins, origins: [pay.origin], extension: false, install: false });
      try {
        const { page } = await newPage(fresh);
        await page.goto(shop.url('/checkout?amount=300'));
        assert.equal((await h.waitWidgetEvent(page, 'ready')).detail.capability, 'no_extension');
        assert.match(await h.textOf(await h.widgetFrameOf(page), '[data-testid=install]'), /Install the Cardpay extension/);
        await page.close();

        await fresh.installExtension();
        const again = (await newPage(fresh)).page;
        await again.goto(shop.url('/checkout?amount=300'));
        assert.equal((await h.waitWidgetEvent(again, 'ready')).detail.capability, 'no_bridge');
        const widget = await h.widgetFrameOf(again);
        assert.match(await h.textOf(widget, '[data-testid=capability]'), /reader software is not/);
        await h.waitFor(widget, () => !!document.querySelector('[data-testid=install]'), null, { what: 'the install link' });
      } finally {
        await fresh.close();
      }
    });
  });
}
