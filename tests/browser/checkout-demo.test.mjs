// The QA path, end to end in headless Chromium against the demo store:
// browse → add to cart → check out → widget ready → approve → PIN on the scrambled
// keypad (keys found by their labels) → receipt → order paid → goods released; then
// the card's balance read over PC/SC is lower by exactly the price and the payment
// server shows the transaction debited/confirmed.
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
  const demoOrigin = `http://127.0.0.1:${demoPort}`;
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
  await page.addInitScript(s.recordEventsScript);
  // The store moves on to the order page as soon as it has the result; hold its
  // result POST a moment so the test can look at the widget's receipt first.
  await page.route('**/orders/*/result', async (route) => {
    await new Promise((r) => setTimeout(r, 1500));
    await route.continue();
  });

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

  // The widget: ready, payee and amount, approve.
  const frame = s.widgetFrame(page);
  const ready = await s.waitEvent(page, 'ready');
  assert.equal(ready.detail.capability, 'ready');
  assert.equal(await frame.getByTestId('payee').textContent(), 'Cardpay Demo Store');
  assert.equal(await frame.getByTestId('amount').textContent(), '€24.95');
  await frame.getByRole('button', { name: 'Approve payment' }).click();

  // PIN on the scrambled keypad, keys found by their accessible names.
  await frame.getByRole('group', { name: 'Enter your PIN' }).waitFor();
  await s.typePin(frame, s.PIN);

  // Receipt in the widget, then the store takes result M and shows the order paid.
  const receipt = frame.getByTestId('receipt');
  await receipt.waitFor({ timeout: 30_000 });
  assert.equal(await frame.getByTestId('receipt-amount').textContent(), '€24.95');
  const result = await s.waitEvent(page, 'result');
  assert.equal(result.detail.result.kind, 'result_m');
  await page.waitForURL(new RegExp(`/orders/${orderId}$`), { timeout: 30_000 });
  assert.equal(await page.locator('#status').textContent(), 'paid');

  // Goods released: the download link works.
  const link = page.getByRole('link', { name: 'download' }).first();
  const dl = await page.request.get(new URL(await link.getAttribute('href'), demo.origin).href);
  assert.equal(dl.status(), 200);
  assert.match(await dl.text(), /Stored value, explained/);

  // The card, read over PC/SC through extension + bridge + pcscd: exactly the price less.
  assert.equal(await s.readBalance(br.context, pay, stack.reader), before - 2495);

  // The payment server's view of the transaction.
  const order = await (await fetch(demo.url(`/orders/${orderId}/json`))).json();
  assert.equal(order.status, 'paid');
  const v = await s.merchantGet(pay, m, `/v1/transactions/${encodeURIComponent(order.txn_id)}`);
  assert.equal(v.status, 200, JSON.stringify(v.body));
  assert.ok(['debited', 'confirmed'].includes(v.body.state), v.body.state);
  assert.equal(v.body.amount, 2495);
  assert.deepEqual(errors, []);
  await page.close();
});
