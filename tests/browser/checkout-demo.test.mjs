// The QA path, end to end in headless Chromium against the demo store:
// browse → add to cart → check out → widget ready → approve → PIN on the scrambled
// keypad (keys found by their labels) → receipt → order paid → goods released; then
// the card's balance read over PC/SC is lower by exactly the price and the payment
// server shows the transaction debited/confirmed.
// Under the store's Content-Security-Policy with checkout.js pinned by Subresource
// Integrity: the test asserts both are in force (the header, the integrity attribute,
// an inline script and a tampered checkout.js refused, the widget page refusing a
// frame on a foreign origin) and that the purchase itself triggers no CSP violation.
// Then the store's pages: quantities in the catalog and the cart, a cancelled payment
// that keeps the cart, the same order paid with the PIN emptying it, the favicon,
// and not one console error or warning, failed request or HTTP error on any page.
// Everything over https with the test CA (lib/tls.mjs).
//
// Real parts only: pcscd + vpcd + virtual card (testbed), the bridge as native host
// in a throw-away Chromium profile with the unpacked extension, the payment server
// (SQLite, serving www/), the demo merchant (demo-merchant).
//
//   cd tests/browser && node --test checkout-demo.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as s from './checkout-support.mjs';

const { h } = s;
let bins, stack, pay, demo, br;
const m = { id: 'demo-store', name: 'Cardpay Demo Store', key: randomBytes(32).toString('hex') };

before(async () => {
  bins = await s.buildAll();
  stack = await h.startStack({ bins });
  const demoPort = await s.freePort();
  const demoOrigin = s.localOrigin(demoPort);
  pay = await s.startPaymentServer({
    bin: bins.paymentServer,
    merchants: [{ ...m, origins: [demoOrigin] }],
    corsOrigins: [demoOrigin],
  });
  demo = await s.startDemoMerchant({ bin: bins.demoMerchant, pay, m, port: demoPort });
  br = await h.launchBrowser({ bins, origins: [pay.origin] });
}, { timeout: 900_000 });

after(async () => {
  await br?.close();
  await demo?.stop();
  await pay?.stop();
  await stack?.stop();
});

test('QA path: browse, cart, checkout, PIN on the scrambled keypad, receipt, paid, goods, balance, server', async () => {
  const before = await s.readBalance(br.context, pay, stack.reader);
  const page = await br.context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // CSP / SRI refusals in any frame (store page or widget iframe), across navigations.
  const violations = [];
  await page.exposeFunction('reportCspViolation', (v) => violations.push(v));
  page.on('console', (msg) => {
    if (/Content Security Policy|integrity|Refused to/i.test(msg.text())) violations.push({ console: msg.text() });
  });
  await page.addInitScript(`document.addEventListener('securitypolicyviolation', (e) =>
    window.reportCspViolation({ directive: e.violatedDirective, blocked: e.blockedURI, doc: e.documentURI }));`);
  await page.addInitScript(s.recordEventsScript);

  // Browse and fill the cart: 5 × the e-book (4.99) = 24.95, above the card's no-PIN limit.
  await page.goto(demo.url('/'));
  for (let i = 0; i < 5; i++) {
    await page.locator('.p', { hasText: 'E-book' }).getByRole('button', { name: 'Add to cart' }).click();
    await page.waitForURL(/\/cart$/);
    if (i < 4) await page.goto(demo.url('/'));
  }
  await page.getByRole('button', { name: 'Pay with Cardpay' }).click();
  await page.waitForURL(/\/orders\/[^/]+\/pay$/);
  const orderId = page.url().split('/').at(-2);

  // The checkout page is under the store's CSP, and checkout.js is pinned by SRI.
  // (Node's fetch, which trusts the test CA: lib/tls.mjs.)
  const payResp = await fetch(page.url());
  const csp = payResp.headers.get('content-security-policy') || '';
  assert.match(csp, new RegExp(`script-src 'self' ${pay.origin}(;|$)`), csp);
  assert.match(csp, new RegExp(`frame-src ${pay.origin}(;|$)`), csp);
  assert.match(csp, /default-src 'self'/, csp);
  const loader = page.locator(`script[src="${pay.origin}/checkout.js"]`);
  assert.equal(await loader.count(), 1);
  assert.equal(await loader.getAttribute('integrity'), await s.sri(`${s.wwwDir}/checkout.js`));
  assert.equal(await loader.getAttribute('crossorigin'), 'anonymous');
  // No inline script on the page: every script is external or JSON data.
  assert.deepEqual(await page.$$eval('script', (ss) => ss.filter((x) => !x.src && x.type !== 'application/json').length), 0);

  // The widget: ready, payee and amount, approve.
  const frame = s.widgetFrame(page);
  const ready = await s.waitEvent(page, 'ready');
  assert.equal(ready.detail.capability, 'ready');
  assert.equal(await frame.getByTestId('payee').textContent(), 'Cardpay Demo Store');
  assert.equal(await frame.getByTestId('amount').textContent(), '€24.95');
  await s.approve(frame);

  // PIN on the scrambled keypad, keys found by their accessible names.
  await frame.getByRole('group', { name: 'Enter your PIN' }).waitFor();
  await s.typePin(frame, s.PIN);

  // Receipt in the widget, then the store takes result M and shows the order paid.
  // The store keeps the receipt in view about 1.5 s before it opens the order page.
  const receipt = frame.getByTestId('receipt');
  await receipt.waitFor({ timeout: 30_000 });
  assert.equal(await frame.getByTestId('receipt-amount').textContent(), '€24.95');
  const result = await s.waitEvent(page, 'result');
  assert.equal(result.detail.result.kind, 'result_m');
  const resultAt = await page.evaluate((t) => performance.timeOrigin + t, result.t);
  await page.waitForURL(new RegExp(`/orders/${orderId}$`), { timeout: 30_000 });
  const orderPageAt = await page.evaluate(() => performance.timeOrigin);
  assert.ok(orderPageAt - resultAt >= 1400, `receipt shown only ${Math.round(orderPageAt - resultAt)} ms`);
  assert.equal(await page.locator('#status').textContent(), 'paid');
  // The whole purchase ran without a single CSP or SRI refusal.
  assert.deepEqual(violations, []);

  // Goods released: the download link works.
  const link = page.getByRole('link', { name: 'download' }).first();
  const dl = await fetch(new URL(await link.getAttribute('href'), demo.origin).href);
  assert.equal(dl.status, 200);
  assert.match(await dl.text(), /Stored value, explained/);

  // The card, read over PC/SC through extension + bridge + pcscd: exactly the price less.
  assert.equal(await s.readBalance(br.context, pay, stack.reader), before - 2495);

  // The payment server's view of the transaction.
  const order = await (await fetch(demo.url(`/orders/${orderId}/json`))).json();
  assert.equal(order.status, 'paid');
  const v = await s.merchantGet(pay, m, `/v1/transactions/${encodeURIComponent(order.paid_txn)}`);
  assert.equal(v.status, 200, JSON.stringify(v.body));
  assert.ok(['debited', 'confirmed'].includes(v.body.state), v.body.state);
  assert.equal(v.body.amount, 2495);
  assert.deepEqual(errors, []);

  // CSP and SRI are enforced, not just declared, on the store's page: an inline
  // script is refused (and reported), and checkout.js with a wrong hash does not run.
  const inline = await page.evaluate(() => new Promise((resolve) => {
    document.addEventListener('securitypolicyviolation', (e) => resolve(e.violatedDirective), { once: true });
    const x = document.createElement('script');
    x.textContent = 'window.inlineRan = true';
    document.body.appendChild(x);
    setTimeout(() => resolve('no violation'), 3000);
  }));
  assert.match(inline, /^script-src/);
  assert.equal(await page.evaluate(() => window.inlineRan), undefined);
  const tampered = await page.evaluate((src) => new Promise((resolve) => {
    delete window.Cardpay;
    const x = document.createElement('script');
    x.src = src + '?tampered';
    x.crossOrigin = 'anonymous';
    x.integrity = 'sha384-' + btoa('x'.repeat(48));
    x.onload = () => resolve('loaded');
    x.onerror = () => resolve('refused');
    document.head.appendChild(x);
  }), `${pay.origin}/checkout.js`);
  assert.equal(tampered, 'refused');
  assert.equal(await page.evaluate(() => typeof window.Cardpay), 'undefined');
  await page.close();

  // The widget page refuses to be framed by an origin that is no merchant's (frame-ancestors).
  const widgetUrl = `${pay.origin}/widget.html?nonce=00`;
  const foreign = await h.serve({ '/': `<!doctype html><iframe id="w" src="${widgetUrl}"></iframe>` });
  try {
    const p2 = await br.context.newPage();
    const refusals = [];
    p2.on('console', (m) => { if (/frame-ancestors/.test(m.text())) refusals.push(m.text()); });
    await p2.addInitScript(`window.widgetMessages = [];
      window.addEventListener('message', (e) => {
        if (e.data && typeof e.data.type === 'string' && e.data.type.startsWith('cardpay:')) window.widgetMessages.push(e.origin + ' ' + e.data.type);
      });`);
    await p2.goto(foreign.url('/'));
    const end = Date.now() + 10_000;
    const errorPage = () => p2.frames().some((f) => f !== p2.mainFrame() && f.url().startsWith('chrome-error:'));
    while (!refusals.length && !errorPage() && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    assert.ok(refusals.length || errorPage(), 'the widget page was framed by a foreign origin');
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(await p2.evaluate(() => window.widgetMessages), []);
    await p2.close();
  } finally {
    await foreign.close();
  }
});

test('store pages: quantities, a cancelled payment keeps the cart, paying empties it, favicon, no console error anywhere', async () => {
  const page = await br.context.newPage();
  // Every console error or warning of any frame (store page or widget iframe), page
  // errors, failed requests and HTTP errors of the store, on every page visited.
  const problems = [];
  page.on('console', (m) => { if (['error', 'warning'].includes(m.type())) problems.push(`console ${m.type()} on ${page.url()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error on ${page.url()}: ${e}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  await page.addInitScript(s.recordEventsScript);
  const total = () => page.locator('#total').textContent();

  // Two wallpaper packs through the catalog's quantity field, then 11 in the cart:
  // 21.89 EUR, over the demo card's no-PIN limit, as the store says.
  await page.goto(demo.url('/'));
  assert.match(await page.locator('main').textContent(), /over 20\.00 EUR the payment window asks for your PIN/);
  const item = page.locator('.p', { hasText: 'wallpaper pack' });
  await item.getByLabel('Quantity').fill('2');
  await item.getByRole('button', { name: 'Add to cart' }).click();
  await page.waitForURL(/\/cart$/);
  assert.equal(await total(), '3.98 EUR');
  assert.match(await page.locator('main').textContent(), /add goods over 20\.00 EUR to see the PIN keypad/);
  const row = page.locator('tr[data-product=wallpaper]');
  await row.getByLabel('Quantity of Smart-card wallpaper pack').fill('11');
  await row.getByRole('button', { name: 'Update' }).click();
  await page.waitForURL(/\/cart$/);
  assert.equal(await total(), '21.89 EUR');
  assert.match(await page.locator('main').textContent(), /will ask for your PIN/);

  // Pay, then cancel in the widget: nothing charged, the cart is kept.
  const before = await s.readBalance(br.context, pay, stack.reader);
  await page.getByRole('button', { name: 'Pay with Cardpay' }).click();
  await page.waitForURL(/\/orders\/[^/]+\/pay$/);
  const orderId = page.url().split('/').at(-2);
  assert.equal((await s.waitEvent(page, 'ready')).detail.capability, 'ready');
  await s.approveCounts(s.widgetFrame(page));
  await s.widgetFrame(page).getByRole('button', { name: 'Cancel' }).click();
  await s.waitEvent(page, 'cancel');
  await page.locator('#cardpay-status', { hasText: 'Your cart is kept' }).waitFor();
  await page.getByRole('link', { name: 'Back to the cart' }).click();
  await page.waitForURL(/\/cart$/);
  assert.equal(await total(), '21.89 EUR');

  // Pay again: the same order (the cart is unchanged), now with the PIN; once it is
  // paid the cart is empty.
  await page.getByRole('button', { name: 'Pay with Cardpay' }).click();
  await page.waitForURL(new RegExp(`/orders/${orderId}/pay$`));
  const frame = s.widgetFrame(page);
  await s.waitEvent(page, 'ready');
  await s.approve(frame);
  await frame.getByRole('group', { name: 'Enter your PIN' }).waitFor();
  await s.typePin(frame, s.PIN);
  await page.waitForURL(new RegExp(`/orders/${orderId}$`), { timeout: 30_000 });
  assert.equal(await page.locator('#status').textContent(), 'paid');
  await page.goto(demo.url('/cart'));
  assert.match(await page.locator('main').textContent(), /Your cart is empty/);
  assert.equal(await s.readBalance(br.context, pay, stack.reader), before - 2189);

  // The favicon the pages link, and the one browsers ask for by default.
  for (const p of ['/favicon.svg', '/favicon.ico']) {
    const r = await fetch(demo.url(p));
    assert.equal(r.status, 200, p);
    assert.equal(r.headers.get('content-type'), 'image/svg+xml', p);
  }
  await page.goto(demo.url(`/orders/${orderId}`));
  await page.goto(demo.url('/'));
  assert.deepEqual(problems, []);
  await page.close();
});
